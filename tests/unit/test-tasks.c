/*
 * test-tasks.c - the losses, float targets and augmentation through the
 * trainer (loss.h, augment.h, trainer.h), on synthetic data in memory:
 *   - the plain cross-entropy is k_softmax_xent's arithmetic, bit for bit;
 *   - a regression (mse) and a multi-label job (bce_with_logits) train, with
 *     the task's metrics in their history rows (the others NaN), and resume
 *     from a mid-epoch checkpoint to the same bits and history;
 *   - a loss that does not fit the targets, class_weights or pos_weight of
 *     the wrong length, an output of the wrong width are refused naming the
 *     field;
 *   - augment SPECs: unknown transforms, bad arguments, a crop larger than
 *     the padded image, normalize's channels, refused naming "augment";
 *   - an augmented sample depends on (seed, epoch, image) only: a team of 1
 *     and of 2 threads, and batches of 16 and of 8, gather the same
 *     augmented rows; another epoch draws others; evaluation batches are
 *     not augmented; a job resumed mid-epoch equals one never stopped.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/lib/testutil.h"
#include "traind/augment.h"
#include "traind/checkpoint.h"
#include "traind/kernels.h"
#include "traind/loss.h"

/* The synthetic set with float targets: width values per sample, from its
 * label (one-hot when binary: multi-label; else label/3 and its square). */
static struct dataset *make_targets(uint32_t width, bool binary)
{
	struct dataset *ds = make_synthetic(600, 100, 8, 7);

	for (int s = 0; s < 2; s++) {
		struct ds_split *set = s ? &ds->test : &ds->train;

		set->targets = malloc((size_t)set->count * width * sizeof(float));
		for (uint32_t i = 0; i < set->count; i++)
			for (uint32_t c = 0; c < width; c++) {
				float l = (float)set->labels[i];

				set->targets[i * width + c] = binary ? (float)(set->labels[i] % width == c)
								     : c == 0 ? l / 3.0f : l * l / 27.0f;
			}
		free(set->labels);
		set->labels = NULL;
	}
	ds->target = DS_TARGET_VALUES;
	ds->target_width = width;
	ds->targets_binary = binary;
	ds->classes = 0;
	return ds;
}

static void free_targets(struct dataset *ds)
{
	free(ds->train.targets);
	free(ds->test.targets);
	free_synthetic(ds);
}

static void test_plain_xent_bits(void **state)
{
	float z[7 * 5], d1[7 * 5], d2[7 * 5];
	uint8_t y8[7], pred[7];
	uint32_t y32[7];
	struct loss l = { .kind = LOSS_CROSS_ENTROPY, .width = 5 };
	struct loss_targets t = { y32, NULL };
	double a, b;

	(void)state;
	for (int i = 0; i < 35; i++)
		z[i] = sinf((float)i * 1.7f) * 4.0f;
	for (int i = 0; i < 7; i++)
		y32[i] = y8[i] = (uint8_t)(i * 3 % 5);
	a = k_softmax_xent(z, y8, 7, 5, 1.0f / 7.0f, d1, pred);
	b = loss_batch(&l, z, &t, 7, loss_norm(&l, &t, 7), d2);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_memory_equal(d1, d2, sizeof(d1));
}

struct run {
	char hex[65];
	uint32_t n;
	struct history_row rows[4];
};

static void keep(const struct trainer *t, struct run *r)
{
	trainer_params_hash(t, r->hex);
	r->n = t->nhistory;
	memcpy(r->rows, t->history, t->nhistory * sizeof(r->rows[0]));
}

/* Train cfg whole, and again stopped after `stop` steps, checkpointed and
 * restored: the same bits and history. */
static void train_and_resume(const struct train_config *cfg, const struct dataset *ds, long stop,
			     struct run *ref)
{
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	struct run got;
	uint8_t *blob = NULL;
	size_t len = 0;

	if (trainer_new(&t, cfg, ds, &err) != 0)
		fail_msg("trainer_new: %s", err.msg);
	run_trainer(t, -1);
	keep(t, ref);
	trainer_free(t);

	assert_int_equal(trainer_new(&t, cfg, ds, &err), 0);
	run_trainer(t, stop);
	assert_int_equal(checkpoint_save(t, &blob, &len, &err), 0);
	trainer_free(t);
	t = NULL;
	if (checkpoint_restore(&t, blob, len, ds, false, &err) != 0)
		fail_msg("restore: %s", err.msg);
	run_trainer(t, -1);
	keep(t, &got);
	trainer_free(t);
	free(blob);
	assert_string_equal(got.hex, ref->hex);
	assert_int_equal(got.n, ref->n);
	for (uint32_t i = 0; i < ref->n; i++) {
		/* the same numbers (NaN where the task has none), not the time */
		got.rows[i].seconds = ref->rows[i].seconds;
		assert_memory_equal(&got.rows[i], &ref->rows[i], sizeof(ref->rows[i]));
	}
}

static void test_regression(void **state)
{
	struct dataset *ds = make_targets(2, false);
	struct train_config cfg;
	struct run ref;

	(void)state;
	small_config(&cfg);
	cfg.loss = LOSS_MSE;
	cfg.monitor = MONITOR_VAL_RMSE;
	train_and_resume(&cfg, ds, 45, &ref);
	for (uint32_t i = 0; i < ref.n; i++) {
		assert_true(isnan(ref.rows[i].train_acc) && isnan(ref.rows[i].val_acc) &&
			    isnan(ref.rows[i].val_macro_acc) && isnan(ref.rows[i].train_macro_acc));
		assert_true(isfinite(ref.rows[i].val_mae) && isfinite(ref.rows[i].val_rmse));
		assert_true(ref.rows[i].val_rmse >= ref.rows[i].val_mae);
		/* RMSE^2 is the mse loss over the same values (the mean of batch means
		 * differs only by the batches' weights: here all full) */
	}
	assert_true(ref.rows[ref.n - 1].val_rmse < ref.rows[0].val_rmse);
	cfg.loss = LOSS_HUBER;
	cfg.huber_delta = 0.5;
	cfg.threads = 1;
	train_and_resume(&cfg, ds, 20, &ref);
	cfg.loss = LOSS_L1;
	cfg.huber_delta = 1.0;
	cfg.shards = 2;
	train_and_resume(&cfg, ds, 50, &ref);
	free_targets(ds);
}

static void test_multilabel(void **state)
{
	struct dataset *ds = make_targets(4, true);
	struct train_config cfg;
	struct run ref;

	(void)state;
	small_config(&cfg);
	cfg.loss = LOSS_BCE_WITH_LOGITS;
	cfg.n_pos_weight = 4;
	for (int i = 0; i < 4; i++)
		cfg.pos_weight[i] = 1.0f + (float)i;
	train_and_resume(&cfg, ds, 33, &ref);
	for (uint32_t i = 0; i < ref.n; i++) {
		assert_true(ref.rows[i].val_acc > 0 && ref.rows[i].val_acc <= 1);
		assert_true(ref.rows[i].train_acc > 0 && ref.rows[i].train_acc <= 1);
		assert_true(isnan(ref.rows[i].val_macro_acc) && isnan(ref.rows[i].val_mae));
	}
	assert_true(ref.rows[ref.n - 1].val_acc > 0.8);
	cfg.shards = 4;   /* the outputs of every shard count */
	train_and_resume(&cfg, ds, 38, &ref);
	free_targets(ds);
}

static void expect_refused(const struct train_config *cfg, const struct dataset *ds, const char *key,
			   const char *words)
{
	struct tr_err err = { 0 };

	assert_int_equal(trainer_check_config(cfg, ds, &err), -EINVAL);
	if (strcmp(err.key, key) != 0 || !strstr(err.msg, words))
		fail_msg("expected key %s and '%s', got key %s: %s", key, words, err.key, err.msg);
}

static void test_refused(void **state)
{
	struct dataset *cls = make_synthetic(600, 100, 8, 3), *reg = make_targets(2, false);
	struct dataset *bin = make_targets(4, true);
	struct train_config cfg;

	(void)state;
	small_config(&cfg);
	cfg.loss = LOSS_MSE;
	expect_refused(&cfg, cls, "loss", "mse needs float targets; dataset 'mnist' has classes");
	cfg.loss = LOSS_CROSS_ENTROPY;
	expect_refused(&cfg, reg, "loss", "cross_entropy needs class labels");
	cfg.loss = LOSS_BCE_WITH_LOGITS;
	expect_refused(&cfg, reg, "loss", "bce_with_logits needs 0/1 targets");
	cfg.loss = LOSS_CROSS_ENTROPY;
	cfg.n_class_weights = 3;
	expect_refused(&cfg, cls, "class_weights", "3 values, but dataset 'mnist' has 10 classes");
	cfg.n_class_weights = 0;
	cfg.loss = LOSS_BCE_WITH_LOGITS;
	cfg.n_pos_weight = 2;
	expect_refused(&cfg, bin, "pos_weight", "2 values, but dataset 'mnist' has 4 labels");
	cfg.n_pos_weight = 0;
	cfg.loss = LOSS_MSE;
	snprintf(cfg.model, sizeof(cfg.model), "flatten,linear(10)");
	expect_refused(&cfg, reg, "model", "the model's output is 10 wide, the targets 2");
	cfg.model[0] = '\0';
	snprintf(cfg.augment, sizeof(cfg.augment), "random_crop(9,padding=0)");
	expect_refused(&cfg, reg, "augment", "larger than the 8x8 images padded to 8x8");
	snprintf(cfg.augment, sizeof(cfg.augment), "normalize(mean=0.5:0.5,std=1:1)");
	expect_refused(&cfg, reg, "augment", "2 values of mean and std, but the images have 1 channel");
	free_synthetic(cls);
	free_targets(reg);
	free_targets(bin);
}

static void test_augment_parse(void **state)
{
	static const struct {
		const char *spec, *words;
	} bad[] = {
		{ "random_rotation(10)", "unknown transform 'random_rotation'" },
		{ "random_crop", "needs its size" },
		{ "random_crop(28,padding=-1)", "padding must be a whole number" },
		{ "random_crop(28,pad=4)", "unknown argument 'pad'" },
		{ "random_horizontal_flip(1.5)", "p must be a probability" },
		{ "normalize(mean=0.5)", "std must be positive" },
		{ "normalize(0.5,0)", "std must be positive" },
		{ "normalize(0.5,1),random_horizontal_flip", "normalize must come last" },
		{ "random_crop(28,padding=4),,random_horizontal_flip", "an empty transform" },
		{ "random_crop(28", "missing ')'" },
	};
	struct augment a;
	struct tr_err err = { 0 };
	struct augment_data d = { 1, 28, 28, NULL, NULL };
	struct train_config cfg;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tr_err_clear(&err);
		assert_int_equal(augment_parse(&a, bad[i].spec, &err), -EINVAL);
		if (strcmp(err.key, "augment") != 0 || !strstr(err.msg, bad[i].words))
			fail_msg("%s: expected '%s', got %s", bad[i].spec, bad[i].words, err.msg);
	}
	assert_int_equal(augment_parse(&a, "random_crop(28,padding=4) , random_horizontal_flip(p=0.25),"
				       "random_vertical_flip,normalize(mean=0.1307,std=0.3081)", &err), 0);
	assert_int_equal(a.n, 4);
	assert_int_equal(a.ops[0].padding, 4);
	assert_true(a.ops[1].p == 0.25f && a.ops[2].p == 0.5f);
	assert_int_equal(augment_check(&a, &d, &err), 0);
	assert_int_equal(augment_parse(&a, "random_crop(24,padding=4)", &err), 0);
	assert_int_equal(augment_check(&a, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "the crop must be the images' own size"));
	/* through the configuration: the flag names the key */
	config_defaults(&cfg);
	assert_int_equal(config_set(&cfg, "augment", "random_flip", &err), -EINVAL);
	assert_string_equal(err.key, "augment");
	assert_int_equal(config_set(&cfg, "class_weights", "1,x", &err), -EINVAL);
	assert_string_equal(err.key, "class_weights");
	assert_int_equal(config_set(&cfg, "loss", "hinge", &err), -EINVAL);
	assert_string_equal(err.key, "loss");
	assert_int_equal(config_set(&cfg, "class_weights", "1,2,0.5", &err), 0);
	assert_int_equal(cfg.n_class_weights, 3);
	assert_int_equal(config_set(&cfg, "loss", "mse", &err), 0);
	assert_int_equal(config_validate(&cfg, &err), -EINVAL);
	assert_string_equal(err.key, "class_weights");
	assert_int_equal(config_set(&cfg, "class_weights", "", &err), 0);
	assert_int_equal(config_set(&cfg, "monitor", "val_acc", &err), 0);
	assert_int_equal(config_validate(&cfg, &err), -EINVAL);
	assert_string_equal(err.key, "monitor");
}

/* The first training step's gathered rows (the batch's images, augmented):
 * model.x after the step holds them. */
static float *first_batch(const struct train_config *cfg, const struct dataset *ds, uint32_t epochs_before,
			  uint32_t *idx)
{
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	size_t dim = dataset_image_size(ds);
	float *x;

	if (trainer_new(&t, cfg, ds, &err) != 0)
		fail_msg("trainer_new: %s", err.msg);
	while (t->epoch < epochs_before)
		run_trainer(t, (long)t->steps_per_epoch + 1);
	assert_int_equal(trainer_step(t), 0);
	x = malloc(cfg->batch_size * dim * sizeof(float));
	memcpy(x, t->model.x, cfg->batch_size * dim * sizeof(float));
	memcpy(idx, t->batch_idx, cfg->batch_size * sizeof(uint32_t));
	trainer_free(t);
	return x;
}

static void test_augment_draws(void **state)
{
	struct dataset *ds = make_synthetic(600, 100, 8, 11);
	struct train_config cfg;
	uint32_t i1[16], i2[16], i3[8], i4[16], i5[16], i6[16];
	float *plain, *one, *two, *small, *later, *sharded;
	size_t dim = 64;
	int same = 0;

	(void)state;
	small_config(&cfg);
	cfg.epochs = 2;
	plain = first_batch(&cfg, ds, 0, i5);
	snprintf(cfg.augment, sizeof(cfg.augment),
		 "random_crop(8,padding=3,fill=0.25),random_horizontal_flip,random_vertical_flip(0.3)");
	cfg.threads = 1;
	one = first_batch(&cfg, ds, 0, i1);
	cfg.threads = 2;
	two = first_batch(&cfg, ds, 0, i2);
	cfg.batch_size = 8;
	small = first_batch(&cfg, ds, 0, i3);
	cfg.batch_size = 16;
	later = first_batch(&cfg, ds, 1, i4);
	/* shards of 3: model.x then holds the last shard's rows, images 9..11
	 * of the batch, gathered at other places in other blocks of rows */
	cfg.batch_size = 12;
	cfg.shards = 4;
	sharded = first_batch(&cfg, ds, 0, i6);
	cfg.shards = 0;
	cfg.batch_size = 16;
	assert_memory_equal(i1, i6, 12 * sizeof(uint32_t));
	assert_memory_equal(one + 9 * dim, sharded, 3 * dim * sizeof(float));
	/* 1 and 2 threads: the same rows; batches of 8: the first 8 of 16 */
	assert_memory_equal(i1, i2, sizeof(i1));
	assert_memory_equal(one, two, 16 * dim * sizeof(float));
	assert_memory_equal(i1, i3, sizeof(i3));
	assert_memory_equal(one, small, 8 * dim * sizeof(float));
	/* augmented: differs from the plain gather of the same images */
	assert_memory_equal(i1, i5, sizeof(i1));
	assert_memory_not_equal(one, plain, 16 * dim * sizeof(float));
	/* another epoch: the same image drawn again looks otherwise (mostly) */
	for (int a = 0; a < 16; a++)
		for (int b = 0; b < 16; b++)
			if (i4[b] == i1[a])
				same += memcmp(later + b * dim, one + a * dim, dim * sizeof(float)) == 0;
	assert_true(same <= 2);
	free(plain);
	free(one);
	free(two);
	free(small);
	free(later);
	free(sharded);

	/* evaluation is not augmented; training resumed mid-epoch is exact */
	{
		struct trainer *t = NULL;
		struct metrics m1, m2;
		struct tr_err err = { 0 };
		struct run ref;

		cfg.augment[0] = '\0';
		assert_int_equal(trainer_new(&t, &cfg, ds, &err), 0);
		assert_int_equal(trainer_evaluate(t, EVAL_TEST, &m1), 0);
		snprintf(t->cfg.augment, sizeof(t->cfg.augment), "random_crop(8,padding=3)");
		assert_int_equal(augment_parse(&t->aug, t->cfg.augment, &err), 0);
		assert_int_equal(trainer_evaluate(t, EVAL_TEST, &m2), 0);
		assert_memory_equal(&m1.loss, &m2.loss, sizeof(double));
		trainer_free(t);
		snprintf(cfg.augment, sizeof(cfg.augment), "random_crop(8,padding=2),random_horizontal_flip(0.5)");
		train_and_resume(&cfg, ds, 40, &ref);
		cfg.shards = 2;
		train_and_resume(&cfg, ds, 47, &ref);
	}
	free_synthetic(ds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_xent_bits),
		cmocka_unit_test(test_regression),
		cmocka_unit_test(test_multilabel),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_augment_parse),
		cmocka_unit_test(test_augment_draws),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
