/*
 * test-sched.c - learning-rate schedules, the best epoch, early stopping and
 * gradient clipping inside the trainer: a job with any of them, stopped at
 * any position (the middle of an epoch, an epoch's last batch before it
 * ended, an epoch end) and restored from its checkpoint, ends with the bits,
 * the history (lr and grad_norm included) and the schedule state of the run
 * that never stopped. That is what PyTorch Lightning's scheduler bugs broke:
 * #5455 (CosineAnnealingLR not restored), #4655 (MultiStepLR a step behind
 * after resume), #1772 (checkpoint saved before the scheduler stepped),
 * #15462 (OneCycleLR not restored). Also: the bad values refused naming
 * their key, early stopping's note, the best epoch, old checkpoints.
 * (tests/torch/test_sched.py checks the rates themselves against PyTorch.)
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tests/lib/testutil.h"
#include "traind/checkpoint.h"
#include "traind/safetensors.h"
#include "traind/sha256.h"

static struct dataset *ds;

struct run {
	char hash[65];
	struct history_row rows[16];
	uint32_t nrows;
	double values[SCHED_NVALUES];
	int64_t counts[SCHED_NCOUNTS];
	bool finished;
	uint32_t epoch;
};

static void finish(struct trainer *t, struct run *r)
{
	run_trainer(t, -1);
	assert_true(trainer_finished(t));
	trainer_params_hash(t, r->hash);
	r->nrows = t->nhistory;
	memcpy(r->rows, t->history, t->nhistory * sizeof(t->history[0]));
	sched_save(&t->sched, r->values, r->counts);
	r->finished = trainer_finished(t);
	r->epoch = t->epoch;
}

static void assert_same_run(const struct run *a, const struct run *b, const char *what)
{
	if (strcmp(a->hash, b->hash) != 0)
		fail_msg("%s: parameters differ (%.12s... vs %.12s...)", what, a->hash, b->hash);
	if (a->nrows != b->nrows)
		fail_msg("%s: %u history rows, expected %u", what, b->nrows, a->nrows);
	for (uint32_t i = 0; i < a->nrows; i++) {
		const struct history_row *x = &a->rows[i], *y = &b->rows[i];

		if (memcmp(&x->train_loss, &y->train_loss, sizeof(double)) ||
		    memcmp(&x->val_loss, &y->val_loss, sizeof(double)) ||
		    memcmp(&x->val_acc, &y->val_acc, sizeof(double)) ||
		    memcmp(&x->lr, &y->lr, sizeof(double)) ||
		    memcmp(&x->grad_norm, &y->grad_norm, sizeof(double)) || strcmp(x->note, y->note))
			fail_msg("%s: history row %u differs (lr %.17g vs %.17g, grad_norm %.17g vs %.17g, note '%s' vs '%s')",
				 what, i + 1, x->lr, y->lr, x->grad_norm, y->grad_norm, x->note, y->note);
	}
	if (memcmp(a->values, b->values, sizeof(a->values)) || memcmp(a->counts, b->counts, sizeof(a->counts)))
		fail_msg("%s: the final schedule state differs", what);
	assert_int_equal(a->epoch, b->epoch);
}

static void uninterrupted(const struct train_config *cfg, struct run *r)
{
	struct trainer *t = NULL;
	struct tr_err err = { 0 };

	if (trainer_new(&t, cfg, ds, &err) != 0)
		fail_msg("trainer_new: %s", err.msg);
	finish(t, r);
	trainer_free(t);
}

/* Train `steps` batches (ending epochs on the way), save, free, restore, finish. */
static void interrupted(const struct train_config *cfg, long steps, struct run *r)
{
	struct trainer *t = NULL;
	uint8_t *blob = NULL;
	size_t len = 0;
	struct tr_err err = { 0 };

	assert_int_equal(trainer_new(&t, cfg, ds, NULL), 0);
	run_trainer(t, steps);
	assert_int_equal(checkpoint_save(t, &blob, &len, &err), 0);
	trainer_free(t);
	t = NULL;
	if (checkpoint_restore(&t, blob, len, ds, false, &err) != 0)
		fail_msg("restore: %s", err.msg);
	finish(t, r);
	trainer_free(t);
	free(blob);
}

/* As interrupted, but stopping right after the epoch `epochs` ended. */
static void interrupted_at_epoch_end(const struct train_config *cfg, uint32_t epochs, struct run *r)
{
	struct trainer *t = NULL;
	uint8_t *blob = NULL;
	size_t len = 0;
	struct tr_err err = { 0 };

	assert_int_equal(trainer_new(&t, cfg, ds, NULL), 0);
	while (!trainer_finished(t) && t->epoch < epochs) {
		if (trainer_epoch_done(t))
			assert_int_equal(trainer_end_epoch(t, NULL), 0);
		else
			assert_int_equal(trainer_step(t), 0);
	}
	assert_int_equal(checkpoint_save(t, &blob, &len, &err), 0);
	trainer_free(t);
	t = NULL;
	if (checkpoint_restore(&t, blob, len, ds, false, &err) != 0)
		fail_msg("restore: %s", err.msg);
	finish(t, r);
	trainer_free(t);
	free(blob);
}

static void sched_config(struct train_config *cfg, const char *spec)
{
	small_config(cfg);
	cfg->epochs = 5;
	cfg->train_size = 320;       /* 20 steps an epoch */
	cfg->hidden[0] = 32;
	snprintf(cfg->lr_scheduler, sizeof(cfg->lr_scheduler), "%s", spec);
}

static const char *const specs[] = {
	"step(step_size=2,gamma=0.5)",
	"multistep(milestones=1:3,gamma=0.3)",
	"exponential(gamma=0.7)",
	"cosine(t_max=3,eta_min=1e-5)",
	"linear(start_factor=0.2,total_iters=3)",
	"onecycle(max_lr=0.01)",
	"plateau(patience=0,factor=0.5)",
	"linear(start_factor=0.1,total_iters=2) then cosine(t_max=3)",
	"cosine(t_max=2)",   /* the rate is 0 after epoch 2, then rises again */
};

/* Each schedule, with and without early stopping and clipping, resumed from
 * the middle of epochs, an epoch's last batch and epoch ends. */
static void test_resume_each_schedule(void **state)
{
	const uint32_t spe = 20;
	const long stops[] = { 0, 7, spe, spe + 1, 2 * spe + 13, 4 * spe - 1 };
	struct train_config cfg;
	struct run ref, got;
	char what[256];

	(void)state;
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		for (int extras = 0; extras < 2; extras++) {
			bool varies = false;

			sched_config(&cfg, specs[i]);
			if (extras) {
				cfg.early_stop_patience = 2;
				cfg.early_stop_min_delta = 0.002;
				cfg.clip_grad_norm = 0.5;
			}
			uninterrupted(&cfg, &ref);
			for (uint32_t r = 1; r < ref.nrows; r++)
				varies |= ref.rows[r].lr != ref.rows[0].lr;
			if (!varies && strncmp(specs[i], "plateau", 7) != 0 && strncmp(specs[i], "onecycle", 8) != 0)
				fail_msg("%s: the rate never changed", specs[i]);
			if (extras) {
				bool clipped = false;

				for (uint32_t r = 0; r < ref.nrows; r++) {
					assert_false(isnan(ref.rows[r].grad_norm));
					clipped |= ref.rows[r].grad_norm > cfg.clip_grad_norm;
				}
				if (!clipped)
					fail_msg("%s: no step was clipped: the test would not see clipping", specs[i]);
			} else {
				assert_true(isnan(ref.rows[0].grad_norm));
			}
			for (size_t s = 0; s < sizeof(stops) / sizeof(stops[0]); s++) {
				snprintf(what, sizeof(what), "%s%s, stopped after %ld steps", specs[i],
					 extras ? " (early stop, clip)" : "", stops[s]);
				interrupted(&cfg, stops[s], &got);
				assert_same_run(&ref, &got, what);
			}
			for (uint32_t e = 1; e < ref.nrows; e++) {
				snprintf(what, sizeof(what), "%s%s, stopped after epoch %u ended", specs[i],
					 extras ? " (early stop, clip)" : "", e);
				interrupted_at_epoch_end(&cfg, e, &got);
				assert_same_run(&ref, &got, what);
			}
		}
	}
}

/* With a schedule the bits differ from the constant rate; without one, a job
 * trains exactly as before schedules existed (lr = cfg.lr every step). */
static void test_schedule_changes_training(void **state)
{
	struct train_config cfg;
	struct run a, b;

	(void)state;
	sched_config(&cfg, "");
	uninterrupted(&cfg, &a);
	for (uint32_t r = 0; r < a.nrows; r++)
		assert_true(a.rows[r].lr == cfg.lr);
	sched_config(&cfg, "exponential(gamma=0.5)");
	uninterrupted(&cfg, &b);
	assert_string_not_equal(a.hash, b.hash);
	assert_true(b.rows[1].lr == cfg.lr * 0.5);
	assert_true(b.rows[2].lr == cfg.lr * 0.5 * 0.5);
}

/* Lightning's EarlyStopping: stops after `patience` epochs without an
 * improvement by more than min_delta; the note names the epoch, the metric,
 * the best value and its epoch; a checkpoint after the stop stays stopped. */
static void test_early_stop(void **state)
{
	struct train_config cfg;
	struct trainer *t = NULL;
	struct run ref, got;
	uint8_t *blob = NULL;
	size_t len;
	char want[HISTORY_NOTE_MAX];

	(void)state;
	sched_config(&cfg, "");
	cfg.early_stop_patience = 2;
	cfg.early_stop_min_delta = 10;   /* nothing improves by 10 after epoch 1 */
	uninterrupted(&cfg, &ref);
	assert_int_equal(ref.nrows, 3);
	assert_int_equal(ref.epoch, 3);
	assert_string_equal(ref.rows[1].note, "");
	snprintf(want, sizeof(want), "stopped early after epoch 3: val_loss has not improved on %.4g (epoch 1) for 2 epochs",
		 ref.rows[0].val_loss);
	assert_string_equal(ref.rows[2].note, want);

	/* saved after the stop: restored, it is finished */
	assert_int_equal(trainer_new(&t, &cfg, ds, NULL), 0);
	run_trainer(t, -1);
	assert_true(t->sched.stopped);
	assert_int_equal(checkpoint_save(t, &blob, &len, NULL), 0);
	trainer_free(t);
	t = NULL;
	assert_int_equal(checkpoint_restore(&t, blob, len, ds, false, NULL), 0);
	assert_true(trainer_finished(t));
	assert_int_equal(trainer_step(t), -EINVAL);
	trainer_free(t);
	free(blob);

	/* resumed between, it counts on where it was */
	interrupted_at_epoch_end(&cfg, 2, &got);
	assert_same_run(&ref, &got, "early stop resumed after epoch 2");

	/* a max metric: val_acc must rise by more than 2 (never) */
	cfg.monitor = MONITOR_VAL_ACC;
	cfg.early_stop_patience = 1;
	cfg.early_stop_min_delta = 2;
	uninterrupted(&cfg, &ref);
	assert_int_equal(ref.nrows, 2);
	assert_non_null(strstr(ref.rows[1].note, "stopped early after epoch 2: val_acc has not improved on"));
	assert_non_null(strstr(ref.rows[1].note, "(epoch 1) for 1 epoch"));
}

/* The best epoch by the monitor: the first of the minima (val_loss) or maxima. */
static void test_best_epoch(void **state)
{
	const enum monitor_kind mons[] = { MONITOR_VAL_LOSS, MONITOR_VAL_ACC, MONITOR_VAL_MACRO_ACC };
	struct train_config cfg;
	struct run r;

	(void)state;
	for (size_t m = 0; m < 3; m++) {
		uint32_t best = 0;
		double bv = 0;

		sched_config(&cfg, "");
		cfg.lr = 0.05;      /* noisy enough that the best is not always the last */
		cfg.monitor = mons[m];
		uninterrupted(&cfg, &r);
		for (uint32_t i = 0; i < r.nrows; i++) {
			double v = sched_monitored(mons[m], r.rows[i].val_loss, r.rows[i].val_acc,
						   r.rows[i].val_macro_acc, r.rows[i].val_mae, r.rows[i].val_rmse);

			if (!best || (m == 0 ? v < bv : v > bv)) {
				best = i + 1;
				bv = v;
			}
		}
		assert_int_equal(r.counts[7], best);
		assert_true(r.values[3] == bv);
	}
}

static void expect_refused(const char *key, const char *value, const char *needle)
{
	struct train_config cfg;
	struct tr_err err = { 0 };
	int rc;

	sched_config(&cfg, "");
	rc = config_set(&cfg, key, value, &err);
	if (rc == 0)
		rc = config_validate(&cfg, &err);
	if (rc == 0)
		fail_msg("%s=%s was accepted", key, value);
	assert_string_equal(err.key, key);
	if (!strstr(err.msg, needle))
		fail_msg("%s=%s: '%s' does not say '%s'", key, value, err.msg, needle);
}

static void test_bad_values(void **state)
{
	struct train_config cfg;
	struct tr_err err = { 0 };
	json_t *o;

	(void)state;
	expect_refused("lr_scheduler", "multistep(milestones=2:5)", "milestone 5 is past the last epoch");
	expect_refused("lr_scheduler", "onecycle(pct_start=0.3)", "needs max_lr");
	expect_refused("lr_scheduler", "cosine", "needs t_max");
	expect_refused("lr_scheduler", "warmup(3)", "unknown schedule 'warmup'");
	expect_refused("lr_scheduler", "step(2) then cosine(3)", "must have a length");
	expect_refused("lr_scheduler", "linear(total_iters=5) then cosine(3)", "would never run");
	expect_refused("lr_scheduler", "linear(total_iters=2) then plateau", "join with 'then'");
	expect_refused("lr_scheduler", "cosine(t_max=3,gamma=2)", "does not take 'gamma'");
	expect_refused("lr_scheduler", "cosine(t_max=0)", "t_max must be a whole number");
	expect_refused("lr_scheduler", "step(step_size=2", "expected ',' or ')'");
	expect_refused("early_stop_patience", "-1", "expected a whole number >= 0");
	expect_refused("early_stop_min_delta", "-0.1", "out of range");
	expect_refused("monitor", "val_f1", "unknown metric 'val_f1'");
	expect_refused("clip_grad_norm", "-1", "out of range");
	expect_refused("clip_grad_norm", "nan", "not a finite number");

	/* onecycle cycles SGD's momentum: without one, refused */
	sched_config(&cfg, "onecycle(max_lr=0.1)");
	cfg.optimizer = OPTIM_SGD;
	assert_int_equal(config_validate(&cfg, &err), -EINVAL);
	assert_string_equal(err.key, "lr_scheduler");
	assert_non_null(strstr(err.msg, "momentum"));
	/* the epochs the milestones are checked against may come after them */
	sched_config(&cfg, "");
	assert_int_equal(config_set(&cfg, "lr_scheduler", "multistep(milestones=6)", &err), 0);
	assert_int_equal(config_set(&cfg, "epochs", "8", &err), 0);
	assert_int_equal(config_validate(&cfg, &err), 0);

	/* JSON: a negative patience, a wrong type */
	o = json_pack("{s:i}", "early_stop_patience", -3);
	assert_int_equal(config_from_json(&cfg, o, &err), -EINVAL);
	assert_string_equal(err.key, "early_stop_patience");
	json_decref(o);
	o = json_pack("{s:i}", "lr_scheduler", 3);
	assert_int_equal(config_from_json(&cfg, o, &err), -EINVAL);
	assert_string_equal(err.key, "lr_scheduler");
	json_decref(o);
}

/* The config JSON round trip keeps every new key, and a stored job without
 * them gets the defaults that train as before. */
static void test_config_json(void **state)
{
	struct train_config a, b;
	struct tr_err err = { 0 };
	json_t *o;

	(void)state;
	sched_config(&a, "linear(start_factor=0.1,total_iters=2) then cosine(t_max=3)");
	a.monitor = MONITOR_VAL_MACRO_ACC;
	a.early_stop_patience = 3;
	a.early_stop_min_delta = 1e-3;
	a.clip_grad_norm = 1.5;
	o = config_to_json(&a);
	assert_int_equal(config_from_stored_json(&b, o, &err), 0);
	assert_true(config_equal(&a, &b));
	json_decref(o);

	o = json_pack("{s:s,s:i}", "dataset", "mnist", "epochs", 2);
	assert_int_equal(config_from_stored_json(&b, o, &err), 0);
	assert_string_equal(b.lr_scheduler, "");
	assert_int_equal(b.monitor, MONITOR_VAL_LOSS);
	assert_int_equal(b.early_stop_patience, 0);
	assert_true(b.clip_grad_norm == 0 && b.early_stop_min_delta == 0);
	json_decref(o);
}

/* Rebuild a blob: optionally without the schedule's tensors and as format 2
 * (what traind wrote before schedules), sealed again. */
static uint8_t *rebuilt(const uint8_t *blob, size_t len, bool drop_values, bool as_v2, size_t *out_len)
{
	static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";
	struct st_file *f = NULL;
	struct st_writer *w = NULL;
	uint8_t *out = NULL, *p;
	char hex[65];
	char *cfgtext = NULL;

	assert_int_equal(st_parse(&f, blob, len, NULL), 0);
	assert_int_equal(st_writer_new(&w), 0);
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *x = &f->tensors[i];

		if ((drop_values && strcmp(x->name, "schedule.values") == 0) ||
		    (as_v2 && strncmp(x->name, "schedule.", 9) == 0))
			continue;
		assert_int_equal(st_writer_add(w, x->name, x->dtype, x->ndim, x->shape, x->data), 0);
	}
	for (size_t i = 0; i < f->nmeta; i++) {
		const char *k = f->meta[i].key, *v = f->meta[i].value;

		if (strcmp(k, "checksum") == 0)
			v = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
		else if (as_v2 && strcmp(k, "format_version") == 0)
			v = "2";
		else if (as_v2 && strcmp(k, "config") == 0) {
			/* a format-2 config: no schedule keys */
			json_t *c = json_loads(v, 0, NULL);
			const char *drop[] = { "lr_scheduler", "monitor", "early_stop_patience",
					       "early_stop_min_delta", "clip_grad_norm" };

			for (size_t d = 0; d < 5; d++)
				json_object_del(c, drop[d]);
			cfgtext = json_dumps(c, JSON_COMPACT | JSON_REAL_PRECISION(17));
			json_decref(c);
			v = cfgtext;
		}
		assert_int_equal(st_writer_meta(w, k, v), 0);
	}
	assert_int_equal(st_writer_finish(w, &out, out_len), 0);
	p = memmem(out, *out_len, zeros, 64);
	assert_non_null(p);
	sha256_hex(out, *out_len, hex);
	memcpy(p, hex, 64);
	free(cfgtext);
	st_writer_free(w);
	st_file_free(f);
	return out;
}

static uint8_t *blob_after(const struct train_config *cfg, long steps, size_t *len)
{
	struct trainer *t = NULL;
	uint8_t *blob = NULL;

	assert_int_equal(trainer_new(&t, cfg, ds, NULL), 0);
	run_trainer(t, steps);
	assert_int_equal(checkpoint_save(t, &blob, len, NULL), 0);
	trainer_free(t);
	return blob;
}

/* Strict loading: format 3 without the schedule's state is refused; format
 * 2 (no schedule) loads and resumes exactly, its best epoch found again from
 * the history. */
static void test_old_and_incomplete_checkpoints(void **state)
{
	struct train_config cfg;
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	struct run ref, got;
	uint8_t *blob, *b;
	size_t len, blen;

	(void)state;
	sched_config(&cfg, "cosine(t_max=4)");
	blob = blob_after(&cfg, 47, &len);
	b = rebuilt(blob, len, true, false, &blen);
	assert_int_not_equal(checkpoint_restore(&t, b, blen, ds, false, &err), 0);
	assert_null(t);
	assert_non_null(strstr(err.msg, "schedule.values"));
	free(b);
	free(blob);

	sched_config(&cfg, "");
	uninterrupted(&cfg, &ref);
	blob = blob_after(&cfg, 47, &len);
	b = rebuilt(blob, len, false, true, &blen);
	if (checkpoint_restore(&t, b, blen, ds, false, &err) != 0)
		fail_msg("format 2: %s", err.msg);
	assert_int_equal(t->sched.best_epoch, 2);   /* 47 steps: two epochs ended */
	finish(t, &got);
	trainer_free(t);
	assert_same_run(&ref, &got, "format 2 resumed");
	free(b);
	free(blob);

	/* a state that contradicts itself is refused */
	sched_config(&cfg, "step(2)");
	blob = blob_after(&cfg, 5, &len);
	{
		struct st_file *f = NULL;
		const struct st_tensor *x;

		assert_int_equal(st_parse(&f, blob, len, NULL), 0);
		x = st_find(f, "schedule.values");
		assert_non_null(x);
		st_file_free(f);
	}
	free(blob);
}

static int setup(void **state)
{
	(void)state;
	ds = make_synthetic(1200, 100, 28, 3);
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
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_config_json),
		cmocka_unit_test(test_schedule_changes_training),
		cmocka_unit_test(test_early_stop),
		cmocka_unit_test(test_best_epoch),
		cmocka_unit_test(test_old_and_incomplete_checkpoints),
		cmocka_unit_test(test_resume_each_schedule),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
