/*
 * test-mnist.c - the engine end to end on real MNIST (suite 'mnist'; needs
 * the data that scripts/fetch-data puts in $TRAIND_DATA_DIR/mnist).
 *
 *  - one epoch of the lesson's configuration with traind's own stream (rng
 *    xoshiro) reaches val accuracy >= 0.94 for each of three seeds and >=
 *    0.945 on average (measured: 0.9498, 0.9501, 0.9457; PyTorch given the
 *    same initial weights and sample order ends the epoch with the same mean
 *    batch loss to six digits; with rng torch, PyTorch's own draws for these
 *    seeds, 0.9470, 0.9435, 0.9441);
 *  - the lesson's 5 epochs (rng torch, the default) reach test accuracy >=
 *    0.970 for each of five seeds and >= 0.974 on average (measured: 0.9759,
 *    0.9734, 0.9763, 0.9760, 0.9744 for seeds 42, 1..4; with rng xoshiro over
 *    14 seeds the mean is 0.975). rng torch draws what torch.manual_seed(seed)
 *    gives (tests/torch/test_rng.py).
 *  - the lesson's scenario: crash after epoch 3, resume from the checkpoint,
 *    finish: bit-identical weights and history to the uninterrupted run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/lib/testutil.h"
#include "traind/checkpoint.h"

static struct dataset *mnist;

static int setup(void **state)
{
	const char *dir = getenv("TRAIND_DATA_DIR");
	char path[4096];
	struct tr_err err = { 0 };

	(void)state;
	snprintf(path, sizeof(path), "%s/mnist", dir ? dir : TRAIND_DEFAULT_DATA_DIR);
	if (dataset_load(&mnist, path, &err) < 0) {
		fprintf(stderr, "test-mnist: %s (run scripts/fetch-data)\n", err.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dataset_free(mnist);
	return 0;
}

static void test_one_epoch(void **state)
{
	const uint64_t seeds[] = { 42, 1, 2 };
	double sum = 0;

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		struct train_config cfg;
		struct trainer *t = NULL;
		struct history_row row;

		config_defaults(&cfg);
		cfg.epochs = 1;
		cfg.seed = seeds[i];
		cfg.rng = RNG_XOSHIRO;   /* the stream the measured figures above are of */
		assert_int_equal(trainer_new(&t, &cfg, mnist, NULL), 0);
		while (!trainer_epoch_done(t))
			assert_int_equal(trainer_step(t), 0);
		assert_int_equal(trainer_end_epoch(t, &row), 0);
		printf("seed %llu: epoch 1 val_acc %.4f val_macro_acc %.4f\n",
		       (unsigned long long)seeds[i], row.val_acc, row.val_macro_acc);
		assert_true(row.val_acc >= 0.94);
		assert_true(row.train_acc > 0.85 && row.train_loss < 0.5);
		sum += row.val_acc;
		trainer_free(t);
	}
	printf("mean epoch 1 val_acc %.4f\n", sum / 3);
	assert_true(sum / 3 >= 0.945);
}

static void test_lesson_accuracy(void **state)
{
	const uint64_t seeds[] = { 42, 1, 2, 3, 4 };
	double sum = 0;

	(void)state;
	for (size_t i = 0; i < 5; i++) {
		struct train_config cfg;
		struct trainer *t = NULL;
		struct metrics m;

		config_defaults(&cfg);
		cfg.seed = seeds[i];
		assert_int_equal(trainer_new(&t, &cfg, mnist, NULL), 0);
		run_trainer(t, -1);
		assert_int_equal(t->nhistory, 5);
		assert_int_equal(trainer_evaluate(t, EVAL_TEST, &m), 0);
		printf("seed %llu: test_acc %.4f test_loss %.4f\n", (unsigned long long)seeds[i], m.acc,
		       m.loss);
		assert_true(m.acc >= 0.970);
		assert_int_equal(m.count, 10000);
		sum += m.acc;
		trainer_free(t);
	}
	printf("mean test_acc over 5 seeds %.4f\n", sum / 5);
	assert_true(sum / 5 >= 0.974);
}

static void test_lesson_crash_and_resume(void **state)
{
	struct train_config cfg;
	struct trainer *t = NULL;
	uint8_t *blob = NULL;
	size_t len;
	char ref[65], got[65];
	struct history_row rows[5];

	(void)state;
	config_defaults(&cfg);
	assert_int_equal(trainer_new(&t, &cfg, mnist, NULL), 0);
	run_trainer(t, -1);
	trainer_params_hash(t, ref);
	memcpy(rows, t->history, sizeof(rows));
	trainer_free(t);

	/* epochs 1..3, checkpoint after each; "crash" after 3 */
	assert_int_equal(trainer_new(&t, &cfg, mnist, NULL), 0);
	while (t->epoch < 3) {
		while (!trainer_epoch_done(t))
			trainer_step(t);
		trainer_end_epoch(t, NULL);
		free(blob);
		assert_int_equal(checkpoint_save(t, &blob, &len, NULL), 0);
	}
	trainer_free(t);
	t = NULL;
	assert_int_equal(checkpoint_restore(&t, blob, len, mnist, false, NULL), 0);
	assert_int_equal(t->epoch, 3);
	assert_int_equal(t->nhistory, 3);
	run_trainer(t, -1);
	trainer_params_hash(t, got);
	assert_string_equal(ref, got);
	for (int i = 0; i < 5; i++) {
		assert_memory_equal(&rows[i].val_loss, &t->history[i].val_loss, sizeof(double));
		assert_memory_equal(&rows[i].train_loss, &t->history[i].train_loss, sizeof(double));
	}
	trainer_free(t);
	free(blob);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_epoch),
		cmocka_unit_test(test_lesson_accuracy),
		cmocka_unit_test(test_lesson_crash_and_resume),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
