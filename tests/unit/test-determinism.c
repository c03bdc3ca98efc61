/*
 * test-determinism.c - the same config and seed give bit-identical weights;
 * another seed gives others; and two jobs training side by side in one
 * process give exactly the bits each gives alone (the engine never shares a
 * thread pool between jobs).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tests/lib/testutil.h"

static struct dataset *ds;

static void train_hash(const struct train_config *cfg, char hex[65])
{
	struct trainer *t = NULL;
	struct tr_err err = { 0 };

	assert_int_equal(trainer_new(&t, cfg, ds, &err), 0);
	run_trainer(t, -1);
	assert_true(trainer_finished(t));
	trainer_params_hash(t, hex);
	trainer_free(t);
}

static void test_same_seed_same_bits(void **state)
{
	struct train_config cfg;
	char a[65], b[65];

	(void)state;
	small_config(&cfg);
	for (uint32_t threads = 1; threads <= 2; threads++) {
		cfg.threads = threads;
		train_hash(&cfg, a);
		train_hash(&cfg, b);
		assert_string_equal(a, b);
	}
}

static void test_other_seed_other_bits(void **state)
{
	struct train_config cfg;
	char a[65], b[65], c[65];

	(void)state;
	small_config(&cfg);
	train_hash(&cfg, a);
	cfg.seed = 43;
	train_hash(&cfg, b);
	assert_string_not_equal(a, b);
	/* The split seed alone changes the data order, so the bits too. */
	cfg.seed = 42;
	cfg.split_seed = 7;
	train_hash(&cfg, c);
	assert_string_not_equal(a, c);
}

struct job {
	struct train_config cfg;
	char hex[65];
};

static void *job_main(void *p)
{
	struct job *j = p;

	train_hash(&j->cfg, j->hex);
	return NULL;
}

static void test_side_by_side(void **state)
{
	struct job jobs[2];
	char alone[2][65];
	pthread_t th[2];

	(void)state;
	small_config(&jobs[0].cfg);
	small_config(&jobs[1].cfg);
	/* Bigger layers so both jobs split their work across their teams. */
	jobs[0].cfg.hidden[0] = 512;
	jobs[0].cfg.batch_size = 32;
	jobs[1].cfg.hidden[0] = 384;
	jobs[1].cfg.seed = 5;
	jobs[1].cfg.threads = 1;
	for (int i = 0; i < 2; i++)
		train_hash(&jobs[i].cfg, alone[i]);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, job_main, &jobs[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++)
		assert_string_equal(alone[i], jobs[i].hex);
}

static int setup(void **state)
{
	(void)state;
	ds = make_synthetic(1300, 200, 28, 99);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free_synthetic(ds);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_seed_same_bits),
		cmocka_unit_test(test_other_seed_other_bits),
		cmocka_unit_test(test_side_by_side),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
