/*
 * test-checkpoint.c - the training state blob: resuming from an epoch end or
 * from the middle of an epoch gives the bits and the history of never having
 * stopped; weights-only resume gives other bits; model export/import; and
 * corrupt, truncated or hostile blobs give clean errors.
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
};

static void finish(struct trainer *t, struct run *r)
{
	run_trainer(t, -1);
	assert_true(trainer_finished(t));
	trainer_params_hash(t, r->hash);
	r->nrows = t->nhistory;
	memcpy(r->rows, t->history, t->nhistory * sizeof(t->history[0]));
}

static void assert_same_history(const struct run *a, const struct run *b)
{
	assert_int_equal(a->nrows, b->nrows);
	for (uint32_t i = 0; i < a->nrows; i++) {
		const struct history_row *x = &a->rows[i], *y = &b->rows[i];

		/* everything but the wall time, to the bit */
		assert_int_equal(x->epoch, y->epoch);
		assert_memory_equal(&x->train_loss, &y->train_loss, sizeof(double));
		assert_memory_equal(&x->train_acc, &y->train_acc, sizeof(double));
		assert_memory_equal(&x->train_macro_acc, &y->train_macro_acc, sizeof(double));
		assert_memory_equal(&x->val_loss, &y->val_loss, sizeof(double));
		assert_memory_equal(&x->val_acc, &y->val_acc, sizeof(double));
		assert_memory_equal(&x->val_macro_acc, &y->val_macro_acc, sizeof(double));
	}
}

static void uninterrupted(const struct train_config *cfg, struct run *r)
{
	struct trainer *t = NULL;

	assert_int_equal(trainer_new(&t, cfg, ds, NULL), 0);
	finish(t, r);
	trainer_free(t);
}

/* Train `steps` batches, save, free everything, restore, finish. */
static void interrupted(const struct train_config *cfg, long steps, bool weights_only, struct run *r)
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
	if (checkpoint_restore(&t, blob, len, ds, weights_only, &err) != 0)
		fail_msg("restore: %s", err.msg);
	finish(t, r);
	trainer_free(t);
	free(blob);
}

static void test_resume_equivalence(void **state)
{
	const enum optim_kind kinds[] = { OPTIM_ADAM, OPTIM_ADAMW, OPTIM_SGD };
	struct train_config cfg;
	struct run ref, got;

	(void)state;
	/* each optimizer with PyTorch's streams (rng torch, the default: the
	 * mt19937 state is in the blob), and adam with traind's own (xoshiro) */
	for (size_t k = 0; k < 4; k++) {
		small_config(&cfg);
		cfg.optimizer = kinds[k % 3];
		cfg.rng = k < 3 ? RNG_TORCH : RNG_XOSHIRO;
		if (cfg.optimizer == OPTIM_SGD) {
			cfg.lr = 0.05;
			cfg.momentum = 0.9;
			cfg.weight_decay = 1e-4;
		}
		if (cfg.optimizer == OPTIM_ADAMW)
			cfg.weight_decay = 0.01;
		uninterrupted(&cfg, &ref);
		uint32_t spe = (1200 - cfg.val_size + cfg.batch_size - 1) / cfg.batch_size;
		/* at the start, mid-epoch 1, exactly at an epoch's last batch (not
		 * yet ended), after the first epoch ended, mid-epoch 2 */
		long stops[] = { 0, 5, spe, spe + 1, spe + 7 };

		for (size_t s = 0; s < sizeof(stops) / sizeof(stops[0]); s++) {
			interrupted(&cfg, stops[s], false, &got);
			assert_string_equal(ref.hash, got.hash);
			assert_same_history(&ref, &got);
		}
	}
}

static void test_resume_twice_and_with_two_threads(void **state)
{
	struct train_config cfg;
	struct run ref;
	struct trainer *t = NULL;
	uint8_t *blob = NULL;
	size_t len;
	char hex[65];

	(void)state;
	small_config(&cfg);
	cfg.hidden[0] = 512;   /* big enough to split across the team */
	cfg.batch_size = 32;
	uninterrupted(&cfg, &ref);
	assert_int_equal(trainer_new(&t, &cfg, ds, NULL), 0);
	for (int i = 0; i < 4; i++) {
		run_trainer(t, 11);
		assert_int_equal(checkpoint_save(t, &blob, &len, NULL), 0);
		trainer_free(t);
		t = NULL;
		assert_int_equal(checkpoint_restore(&t, blob, len, ds, false, NULL), 0);
		free(blob);
	}
	run_trainer(t, -1);
	trainer_params_hash(t, hex);
	assert_string_equal(ref.hash, hex);
	trainer_free(t);
}

static void test_weights_only_differs(void **state)
{
	struct train_config cfg;
	struct run ref, got;

	(void)state;
	small_config(&cfg);
	uninterrupted(&cfg, &ref);
	interrupted(&cfg, 75, true, &got);   /* 6 batches into epoch 2 */
	assert_string_not_equal(ref.hash, got.hash);
	assert_int_equal(got.nrows, ref.nrows);
	assert_string_equal(got.rows[1].note, "resumed weights-only");
	assert_string_equal(got.rows[2].note, "");
}

static void test_export_and_init_from(void **state)
{
	struct train_config cfg;
	struct trainer *a = NULL, *b = NULL;
	uint8_t *model = NULL, *blob = NULL, *model2 = NULL;
	size_t mlen, blen, mlen2;
	struct st_file *f = NULL;
	const struct st_tensor *w;
	char ha[65], hb[65];

	(void)state;
	small_config(&cfg);
	cfg.n_hidden = 2;
	cfg.hidden[0] = 48;
	cfg.hidden[1] = 32;
	assert_int_equal(trainer_new(&a, &cfg, ds, NULL), 0);
	run_trainer(a, 30);
	assert_int_equal(checkpoint_export_model(a, &model, &mlen, NULL), 0);
	assert_int_equal(st_parse(&f, model, mlen, NULL), 0);
	assert_int_equal(f->ntensors, 6);
	w = st_find(f, "net.1.weight");
	assert_non_null(w);
	assert_int_equal(w->shape[0], 48);
	assert_int_equal(w->shape[1], 784);
	assert_non_null(st_find(f, "net.3.bias"));
	assert_non_null(st_find(f, "net.5.weight"));
	assert_int_equal(st_find(f, "net.5.weight")->shape[0], 10);
	assert_string_equal(st_meta_get(f, "format"), "pt");
	st_file_free(f);

	/* export from a checkpoint blob gives the same file */
	assert_int_equal(checkpoint_save(a, &blob, &blen, NULL), 0);
	assert_int_equal(checkpoint_export_from_blob(blob, blen, &model2, &mlen2, NULL), 0);
	assert_int_equal(mlen, mlen2);
	assert_memory_equal(model, model2, mlen);

	/* a new job initialised from the export has the same parameters */
	cfg.seed = 1234;
	assert_int_equal(trainer_new(&b, &cfg, ds, NULL), 0);
	assert_int_equal(checkpoint_load_model(b, model, mlen, NULL), 0);
	trainer_params_hash(a, ha);
	trainer_params_hash(b, hb);
	assert_string_equal(ha, hb);
	trainer_free(b);
	b = NULL;

	/* ...but not into other shapes */
	cfg.hidden[1] = 33;
	assert_int_equal(trainer_new(&b, &cfg, ds, NULL), 0);
	{
		struct tr_err err = { 0 };

		assert_int_equal(checkpoint_load_model(b, model, mlen, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "net.3.weight"));
	}
	trainer_free(b);
	trainer_free(a);
	free(model);
	free(model2);
	free(blob);
}

/* ---- hostile blobs ---------------------------------------------------- */

static uint8_t *good_blob(size_t *len)
{
	struct train_config cfg;
	struct trainer *t = NULL;
	uint8_t *blob = NULL;

	small_config(&cfg);
	cfg.hidden[0] = 16;
	assert_int_equal(trainer_new(&t, &cfg, ds, NULL), 0);
	run_trainer(t, 80);
	assert_int_equal(checkpoint_save(t, &blob, len, NULL), 0);
	trainer_free(t);
	return blob;
}

static void expect_rejected(const uint8_t *blob, size_t len, const char *needle)
{
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	int rc = checkpoint_restore(&t, blob, len, ds, false, &err);

	if (rc == 0)
		fail_msg("a bad blob was accepted (expected an error about '%s')", needle);
	assert_null(t);
	assert_true(err.msg[0] != '\0');
	if (needle && !strstr(err.msg, needle))
		fail_msg("error '%s' does not mention '%s'", err.msg, needle);
}

static void test_every_byte_flip_rejected(void **state)
{
	size_t len;
	uint8_t *blob = good_blob(&len);

	(void)state;
	/* every header byte, and a stride through the data */
	for (size_t i = 0; i < len; i += (i < 4096 ? 1 : 97)) {
		blob[i] ^= 0x20;
		expect_rejected(blob, len, NULL);
		blob[i] ^= 0x20;
	}
	free(blob);
}

static void test_truncations_rejected(void **state)
{
	size_t len;
	uint8_t *blob = good_blob(&len);

	(void)state;
	for (size_t n = 0; n < len; n += (n < 4096 ? 1 : 1009))
		expect_rejected(blob, n, NULL);
	free(blob);
}

/* Rebuild a valid blob with one change, and seal it with a correct checksum,
 * so the semantic checks (not the checksum) must catch it. */
enum tamper {
	DROP_TENSOR,
	EXTRA_TENSOR,
	WRONG_DTYPE,
	WRONG_SHAPE,
	BAD_ORDER,
	BAD_VERSION,
	BAD_FORMAT,
	BAD_STEP,
	BAD_EPOCH,
	BAD_CONFIG,
	ZERO_RNG,
	BAD_MT_POS,
	BAD_HISTORY,
};

static uint8_t *tampered(enum tamper what, size_t *out_len)
{
	size_t len;
	uint8_t *blob = good_blob(&len);
	struct st_file *f = NULL;
	struct st_writer *w = NULL;
	uint8_t *out = NULL;
	uint8_t *scratch[4] = { NULL };
	int ns = 0;
	static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";

	assert_int_equal(st_parse(&f, blob, len, NULL), 0);
	assert_int_equal(st_writer_new(&w), 0);
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *x = &f->tensors[i];
		enum st_dtype dt = x->dtype;
		uint64_t shape[ST_MAX_DIMS];
		const void *data = x->data;

		memcpy(shape, x->shape, sizeof(shape));
		if (what == DROP_TENSOR && strcmp(x->name, "optimizer.state.1.exp_avg") == 0)
			continue;
		if (what == WRONG_DTYPE && strcmp(x->name, "net.1.bias") == 0)
			dt = ST_I32;
		if (what == WRONG_SHAPE && strcmp(x->name, "net.3.weight") == 0) {
			shape[0] = 16;
			shape[1] = 10;
		}
		if ((what == BAD_ORDER && strcmp(x->name, "data.order") == 0) ||
		    (what == ZERO_RNG && strcmp(x->name, "rng.mt19937") == 0) ||
		    (what == BAD_MT_POS && strcmp(x->name, "rng.mt19937") == 0)) {
			uint8_t *copy = malloc(x->nbytes);
			uint32_t past_end = 625;

			memcpy(copy, x->data, x->nbytes);
			if (what == BAD_ORDER)
				memcpy(copy, copy + 4, 4);      /* a duplicate position */
			else if (what == BAD_MT_POS)
				memcpy(copy + 624 * 4, &past_end, 4);
			else
				memset(copy, 0, 624 * 4);       /* the words, not the position */
			scratch[ns++] = copy;
			data = copy;
		}
		assert_int_equal(st_writer_add(w, x->name, dt, x->ndim, shape, data), 0);
	}
	if (what == EXTRA_TENSOR) {
		uint64_t shape[1] = { 1 };
		static const float one = 1.0f;

		assert_int_equal(st_writer_add(w, "net.9.weight", ST_F32, 1, shape, &one), 0);
	}
	for (size_t i = 0; i < f->nmeta; i++) {
		const char *k = f->meta[i].key, *v = f->meta[i].value;

		if (strcmp(k, "checksum") == 0)
			v = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
		else if (what == BAD_VERSION && strcmp(k, "format_version") == 0)
			v = "4";
		else if (what == BAD_FORMAT && strcmp(k, "format") == 0)
			v = "pt";
		else if (what == BAD_STEP && strcmp(k, "step") == 0)
			v = "100000";
		else if (what == BAD_EPOCH && strcmp(k, "epoch") == 0)
			v = "7";
		else if (what == BAD_CONFIG && strcmp(k, "config") == 0)
			v = "{\"epochs\": 0}";
		else if (what == BAD_HISTORY && strcmp(k, "history") == 0)
			v = "[{\"epoch\": 1}]";
		assert_int_equal(st_writer_meta(w, k, v), 0);
	}
	assert_int_equal(st_writer_finish(w, &out, out_len), 0);
	/* seal: hash with zeroed digits, write the digits */
	{
		uint8_t *p = memmem(out, *out_len, zeros, 64);
		char hex[65];

		assert_non_null(p);
		sha256_hex(out, *out_len, hex);
		memcpy(p, hex, 64);
	}
	for (int i = 0; i < ns; i++)
		free(scratch[i]);
	st_writer_free(w);
	st_file_free(f);
	free(blob);
	return out;
}

static void test_semantic_checks(void **state)
{
	static const struct {
		enum tamper what;
		const char *needle;
	} cases[] = {
		{ DROP_TENSOR, "optimizer.state.1.exp_avg" },
		{ EXTRA_TENSOR, "unexpected" },
		{ WRONG_DTYPE, "dtype" },
		{ WRONG_SHAPE, "net.3.weight" },
		{ BAD_ORDER, "permutation" },
		{ BAD_VERSION, "version" },
		{ BAD_FORMAT, "not a traind checkpoint" },
		{ BAD_STEP, "step" },
		{ BAD_EPOCH, "epoch" },
		{ BAD_CONFIG, "epochs" },
		{ ZERO_RNG, "rng.mt19937" },
		{ BAD_MT_POS, "position 625" },
		{ BAD_HISTORY, "history" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *b = tampered(cases[i].what, &len);

		expect_rejected(b, len, cases[i].needle);
		free(b);
	}
	/* and the untampered rebuild is accepted: the sealing itself is sound */
	{
		size_t len;
		uint8_t *b = tampered((enum tamper)-1, &len);
		struct trainer *t = NULL;
		struct tr_err err = { 0 };

		if (checkpoint_restore(&t, b, len, ds, false, &err) != 0)
			fail_msg("rebuilt blob rejected: %s", err.msg);
		trainer_free(t);
		free(b);
	}
}

static void test_inspect(void **state)
{
	size_t len;
	uint8_t *blob = good_blob(&len);
	struct checkpoint_info info;

	(void)state;
	assert_int_equal(checkpoint_inspect(blob, len, &info, NULL), 0);
	assert_int_equal(info.epoch, 1);
	assert_int_equal(info.step, 80 - 69);
	assert_int_equal(info.optimizer_step, 80);
	assert_int_equal(info.cfg.hidden[0], 16);
	assert_memory_equal(info.checksum, "sha256:", 7);
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


/* Every layer kind resumes to the bit from any position: BatchNorm's running
 * statistics and num_batches_tracked travel in the blob, Dropout's masks come
 * back from the stream without being stored; on teams of 1 and 2. */
static void test_resume_models(void **state)
{
	static const char *const models[] = {
		"flatten,linear(48),batchnorm1d,relu,dropout(0.2),linear(10)",
		"conv2d(4,5,padding=2),batchnorm2d,relu,maxpool2d(2),conv2d(6,3,stride=2),tanh,"
		"avgpool2d(2),flatten,dropout(0.5),linear(24),gelu,linear(10)",
	};
	struct train_config cfg;
	struct run ref, got;

	(void)state;
	for (size_t m = 0; m < sizeof(models) / sizeof(models[0]); m++) {
		for (uint32_t threads = 1; threads <= 2; threads++) {
			small_config(&cfg);
			cfg.epochs = 2;
			cfg.threads = threads;
			snprintf(cfg.model, sizeof(cfg.model), "%s", models[m]);
			uninterrupted(&cfg, &ref);
			uint32_t spe = (1200 - cfg.val_size + cfg.batch_size - 1) / cfg.batch_size;
			long stops[] = { 3, spe, spe + 5 };

			for (size_t s = 0; s < sizeof(stops) / sizeof(stops[0]); s++) {
				interrupted(&cfg, stops[s], false, &got);
				if (strcmp(ref.hash, got.hash) != 0)
					fail_msg("%s, %u threads, stopped after %ld steps: %s != %s", models[m],
						 threads, stops[s], got.hash, ref.hash);
				assert_same_history(&ref, &got);
			}
		}
	}
}

/* The same blob with one metadata value replaced, sealed again. */
static uint8_t *with_meta(const uint8_t *blob, size_t len, const char *key, const char *value,
			  size_t *out_len)
{
	static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";
	struct st_file *f = NULL;
	struct st_writer *w = NULL;
	uint8_t *out = NULL, *p;
	char hex[65];

	assert_int_equal(st_parse(&f, blob, len, NULL), 0);
	assert_int_equal(st_writer_new(&w), 0);
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *x = &f->tensors[i];

		assert_int_equal(st_writer_add(w, x->name, x->dtype, x->ndim, x->shape, x->data), 0);
	}
	for (size_t i = 0; i < f->nmeta; i++) {
		const char *k = f->meta[i].key, *v = f->meta[i].value;

		if (strcmp(k, "checksum") == 0)
			v = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
		else if (strcmp(k, key) == 0)
			v = value;
		assert_int_equal(st_writer_meta(w, k, v), 0);
	}
	assert_int_equal(st_writer_finish(w, &out, out_len), 0);
	p = memmem(out, *out_len, zeros, 64);
	assert_non_null(p);
	sha256_hex(out, *out_len, hex);
	memcpy(p, hex, 64);
	st_writer_free(w);
	st_file_free(f);
	return out;
}

/* A blob trained under another BLAS kernel: the resume says so in the next
 * history row; with strict_numerics it is refused, naming both kernels. */
static void test_numerics_recorded(void **state)
{
	struct train_config cfg;
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	uint8_t *blob = NULL, *moved;
	size_t len = 0, moved_len = 0;
	struct st_file *f = NULL;
	char here[NUMERICS_TEXT_MAX], other[NUMERICS_TEXT_MAX];
	/* a kernel this machine does not run (its own may be SkylakeX) */
	const char *kernel = strcmp(numerics_core(), "SkylakeX") ? "SkylakeX" : "Prescott";

	(void)state;
	numerics_blas(here, sizeof(here));
	snprintf(other, sizeof(other), "OpenBLAS 0.3.21 %s", kernel);
	assert_non_null(strstr(here, "OpenBLAS "));
	assert_non_null(strstr(here, numerics_core()));
	small_config(&cfg);
	assert_int_equal(trainer_new(&t, &cfg, ds, NULL), 0);
	run_trainer(t, 3);
	assert_int_equal(checkpoint_save(t, &blob, &len, &err), 0);
	trainer_free(t);
	t = NULL;
	assert_int_equal(st_parse(&f, blob, len, NULL), 0);
	assert_string_equal(st_meta_get(f, "numerics"), here);
	assert_string_equal(st_meta_get(f, "format_version"), "3");
	st_file_free(f);

	/* the same environment: nothing to say */
	assert_int_equal(checkpoint_restore(&t, blob, len, ds, false, &err), 0);
	assert_string_equal(t->numerics_changed, "");
	trainer_free(t);
	t = NULL;

	moved = with_meta(blob, len, "numerics", other, &moved_len);
	assert_int_equal(checkpoint_restore(&t, moved, moved_len, ds, false, &err), 0);
	assert_non_null(strstr(t->numerics_changed, "trained with"));
	assert_non_null(strstr(t->numerics_changed, other));
	assert_non_null(strstr(t->numerics_changed, "not bit-identical"));
	assert_non_null(strstr(t->note, kernel));
	run_trainer(t, -1);
	assert_non_null(strstr(t->history[0].note, kernel));
	assert_string_equal(t->history[1].note, "");
	trainer_free(t);
	t = NULL;
	free(moved);
	free(blob);

	cfg.strict_numerics = true;
	assert_int_equal(trainer_new(&t, &cfg, ds, NULL), 0);
	run_trainer(t, 3);
	assert_int_equal(checkpoint_save(t, &blob, &len, &err), 0);
	trainer_free(t);
	t = NULL;
	moved = with_meta(blob, len, "numerics", other, &moved_len);
	assert_int_not_equal(checkpoint_restore(&t, moved, moved_len, ds, false, &err), 0);
	assert_null(t);
	assert_non_null(strstr(err.msg, kernel));
	assert_non_null(strstr(err.msg, here));
	assert_non_null(strstr(err.msg, "strict_numerics"));
	free(moved);
	free(blob);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resume_equivalence),
		cmocka_unit_test(test_resume_twice_and_with_two_threads),
		cmocka_unit_test(test_resume_models),
		cmocka_unit_test(test_numerics_recorded),
		cmocka_unit_test(test_weights_only_differs),
		cmocka_unit_test(test_export_and_init_from),
		cmocka_unit_test(test_every_byte_flip_rejected),
		cmocka_unit_test(test_truncations_rejected),
		cmocka_unit_test(test_semantic_checks),
		cmocka_unit_test(test_inspect),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
