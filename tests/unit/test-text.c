/*
 * test-text.c - token data (engine/data/ds-text.c, ds.c's token arrays) and
 * the trainer on it (doc/sequences.md): a text's vocabulary built from its
 * files (sorted, the same ids for the same text), UTF-8 refused naming the
 * file and the byte offset, the test fraction, the windows split by
 * position, prompts encoded and decoded; token arrays with a class per
 * position and per sequence; a per-token job's checkpoint mid-epoch
 * restored == never stopped; the context key; vocabularies past 256 (a
 * text of 600 characters, token arrays of 3000 ids), texts charged to the
 * load's budget.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "traind/checkpoint.h"
#include "traind/config.h"
#include "traind/dataset.h"
#include "traind/generate.h"
#include "traind/safetensors.h"
#include "traind/trainer.h"

static char g_root[512];

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char path[PATH_MAX + 256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A fresh directory under the run's root. */
static void make_dir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", g_root, name);
	mkdir(out, 0755);
}

/* dir's dataset.json for files[0..n) built by the engine (as an import). */
static int text_meta(const char *dir, const char *const *files, size_t n, enum ds_vocab v,
		     struct tr_err *err)
{
	char *json = NULL;
	int rc = dataset_text_meta(dir, files, n, v, 0.1, &json, err);

	if (rc == 0)
		write_file(dir, "dataset.json", json, strlen(json));
	free(json);
	return rc;
}

static const char *words =
	"the cat sat on a mat. a dog ran to the red house.\n"
	"café crème über alles. the fish swam in the blue sea!\n";

static char *corpus(size_t n)
{
	char *s = malloc(n + strlen(words) + 1);
	size_t len = 0;

	while (len < n) {
		memcpy(s + len, words, strlen(words));
		len += strlen(words);
	}
	s[len] = '\0';
	return s;
}

/* The char vocabulary is the text's characters sorted by code point; the
 * same text in two files gives the same ids; the last tenth is the test
 * split. */
static void test_char_vocabulary(void **state)
{
	char dir[PATH_MAX], *text = corpus(3000);
	const char *files[2] = { "a.txt", "b.txt" };
	size_t half = 1500;
	struct dataset *ds = NULL;
	struct tr_err err = { 0 };
	uint32_t prev = 0;
	size_t chars = 0;

	(void)state;
	while ((text[half] & 0xc0) == 0x80)   /* a whole character in each file */
		half++;
	make_dir(dir, sizeof(dir), "chars");
	write_file(dir, "a.txt", text, half);
	write_file(dir, "b.txt", text + half, strlen(text) - half);
	assert_int_equal(text_meta(dir, files, 2, DS_VOCAB_CHAR, &err), 0);
	if (dataset_load(&ds, dir, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(ds->format, "text");
	assert_true(ds->tokens && ds->text && ds->target == DS_TARGET_TOKENS);
	assert_int_equal(ds->vocab_kind, DS_VOCAB_CHAR);
	for (uint32_t i = 0; i < ds->vocab; i++) {
		assert_true(i == 0 || ds->code_points[i] > prev);
		prev = ds->code_points[i];
	}
	assert_int_equal(ds->classes, ds->vocab);
	/* every character of the text, in order */
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		chars += (*p & 0xc0) != 0x80;
	assert_int_equal(ds->train.ntokens + ds->test.ntokens, chars);
	assert_int_equal(ds->test.ntokens, (uint64_t)((double)chars * 0.1));
	{
		char one[5];
		size_t w = dataset_token_utf8(ds, ds->train.tokens[0], one);

		assert_int_equal(w, 1);
		assert_int_equal(one[0], 't');
		assert_true(dataset_token_id(ds, 0xe9) >= 0);    /* é */
		assert_int_equal(dataset_token_id(ds, 'Q'), -1);
	}
	/* a prompt: encoded, decoded back; one the vocabulary cannot spell */
	{
		uint32_t *ids = NULL;
		size_t n = 0;
		char *back;

		assert_int_equal(dataset_text_encode(ds, "café über", strlen("café über"), &ids, &n, &err), 0);
		assert_int_equal(n, 9);
		back = dataset_text_decode(ds, ids, n);
		assert_string_equal(back, "café über");
		free(back);
		free(ids);
		assert_int_equal(dataset_text_encode(ds, "QQé€", strlen("QQé€"), &ids, &n, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "'Q' (U+0051)"));
		assert_non_null(strstr(err.msg, "'\xe2\x82\xac' (U+20AC)"));
		assert_null(strstr(err.msg, "U+00E9"));
	}
	dataset_free(ds);
	free(text);
}

/* Text that is not UTF-8: the file and the byte offset named; overlong
 * forms and surrogates are not UTF-8 either; the byte vocabulary takes
 * them. */
static void test_not_utf8(void **state)
{
	static const struct {
		const char *bytes;
		size_t len, at;
	} bad[] = {
		{ "abc\xff" "def", 7, 3 },
		{ "ab\xc0\xaf", 4, 2 },           /* overlong '/' */
		{ "abcd\xed\xa0\x80", 7, 4 },     /* a surrogate */
		{ "a\xf4\x90\x80\x80", 5, 1 },    /* past U+10FFFF */
		{ "abcde\xe2\x82", 7, 5 },        /* cut short */
	};
	char dir[PATH_MAX], want[64];
	const char *files[1] = { "x.txt" };
	struct tr_err err = { 0 };
	struct dataset *ds = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char name[32];

		snprintf(name, sizeof(name), "bad%zu", i);
		make_dir(dir, sizeof(dir), name);
		write_file(dir, "x.txt", bad[i].bytes, bad[i].len);
		assert_int_equal(text_meta(dir, files, 1, DS_VOCAB_CHAR, &err), -EINVAL);
		snprintf(want, sizeof(want), "byte offset %zu", bad[i].at);
		if (!strstr(err.msg, "x.txt: not UTF-8") || !strstr(err.msg, want))
			fail_msg("case %zu: %s", i, err.msg);
		assert_int_equal(text_meta(dir, files, 1, DS_VOCAB_BYTE, &err), 0);
		assert_int_equal(dataset_load(&ds, dir, &err), 0);
		assert_int_equal(ds->vocab, 256);
		assert_int_equal(ds->train.ntokens + ds->test.ntokens, bad[i].len);
		dataset_free(ds);
		ds = NULL;
	}
	/* a text changed after its vocabulary was built */
	make_dir(dir, sizeof(dir), "changed");
	write_file(dir, "x.txt", "abcabcabc", 9);
	assert_int_equal(text_meta(dir, files, 1, DS_VOCAB_CHAR, &err), 0);
	write_file(dir, "x.txt", "abcabcabZ", 9);
	assert_int_equal(dataset_load(&ds, dir, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "U+005A"));
}

static struct dataset *load_text(const char *name, size_t n)
{
	char dir[PATH_MAX], *text = corpus(n);
	const char *files[1] = { "t.txt" };
	struct tr_err err = { 0 };
	struct dataset *ds = NULL;

	make_dir(dir, sizeof(dir), name);
	write_file(dir, "t.txt", text, strlen(text));
	free(text);
	assert_int_equal(text_meta(dir, files, 1, DS_VOCAB_CHAR, &err), 0);
	if (dataset_load(&ds, dir, &err) < 0)
		fail_msg("%s", err.msg);
	return ds;
}

/* A text's load is charged to its budget before anything is read: its
 * token ids (4 bytes a byte of text, the test split's copy besides) and,
 * while they are made, the text. */
static void test_text_budget(void **state)
{
	char dir[PATH_MAX], *text = corpus(4000);
	const char *files[1] = { "t.txt" };
	struct tr_err err = { 0 };
	struct dataset *ds = NULL;
	size_t len = strlen(text);
	uint64_t needed = 0;

	(void)state;
	make_dir(dir, sizeof(dir), "budget");
	write_file(dir, "t.txt", text, len);
	free(text);
	assert_int_equal(text_meta(dir, files, 1, DS_VOCAB_CHAR, &err), 0);
	/* the ids alone: (len + len / 10 + 1) * 4 bytes, the text beside them */
	assert_int_equal(dataset_load_limited(&ds, dir, len * 4, "--max-dataset-bytes", &needed, &err), -EFBIG);
	assert_null(ds);
	assert_non_null(strstr(err.msg, "token ids"));
	assert_non_null(strstr(err.msg, "--max-dataset-bytes"));
	assert_true(needed >= len * 4);
	assert_int_equal(dataset_load_limited(&ds, dir, (len + len / 10 + 1) * 4 + len - 1, "--max-dataset-bytes",
					      &needed, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "bytes of text"));
	if (dataset_load_limited(&ds, dir, (len + len / 10 + 1) * 4 + len, "--max-dataset-bytes", NULL, &err) < 0)
		fail_msg("%s", err.msg);
	/* a token a character: fewer than the bytes (é, è, ü take two) */
	assert_true(ds->train.ntokens + ds->test.ntokens < len);
	assert_true(ds->train.ntokens + ds->test.ntokens > len * 9 / 10);
	dataset_free(ds);
}

static void text_config(struct train_config *cfg, const char *model, uint32_t context, uint32_t val)
{
	config_defaults(cfg);
	snprintf(cfg->dataset, sizeof(cfg->dataset), "t");
	snprintf(cfg->model, sizeof(cfg->model), "%s", model);
	cfg->context = context;
	cfg->val_size = val;
	cfg->batch_size = 8;
	cfg->epochs = 2;
	cfg->threads = 2;
	cfg->lr = 0.01;
}

/* The windows: training ones from the start, validation ones at the end,
 * none across the cut; a context longer than the text and too many
 * validation windows refused naming their key. */
static void test_windows(void **state)
{
	struct dataset *ds = load_text("windows", 4000);
	struct train_config cfg;
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	uint64_t n = ds->train.ntokens;
	uint32_t T = 16, V = 5;

	(void)state;
	text_config(&cfg, "char_lstm(embed=4,hidden=8,layers=1)", T, V);
	assert_int_equal(trainer_new(&t, &cfg, ds, &err), 0);
	/* validation windows end at the last token; training ones before the cut */
	assert_int_equal(t->text_cut, n - 1 - (uint64_t)V * T);
	assert_int_equal(t->text_part, (t->text_cut - 1) / T);
	assert_true((uint64_t)t->text_part * T + 1 <= t->text_cut);
	assert_true((uint64_t)(t->text_part + 1) * T + 1 > t->text_cut);
	assert_int_equal(t->n_split, t->text_part + V);
	for (uint32_t i = 0; i < t->n_split; i++)
		assert_int_equal(t->split[i], i);
	assert_int_equal(trainer_split_samples(&cfg, ds), t->n_split);
	trainer_free(t);

	cfg.context = (uint32_t)n;
	assert_int_equal(trainer_check_config(&cfg, ds, &err), -EINVAL);
	assert_string_equal(err.key, "context");
	assert_non_null(strstr(err.msg, "longer than the text"));
	cfg.context = 0;
	assert_int_equal(trainer_check_config(&cfg, ds, &err), -EINVAL);
	assert_string_equal(err.key, "context");
	cfg.context = T;
	cfg.val_size = (uint32_t)(n / T);
	assert_int_equal(trainer_check_config(&cfg, ds, &err), -EINVAL);
	assert_string_equal(err.key, "val_size");
	/* the embedding must hold the vocabulary; the output must be it */
	cfg.val_size = V;
	snprintf(cfg.model, sizeof(cfg.model), "embedding(3,4),lstm(4),linear(%u)", ds->vocab);
	assert_int_equal(trainer_check_config(&cfg, ds, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "vocabulary has"));
	snprintf(cfg.model, sizeof(cfg.model), "embedding(%u,4),lstm(4),linear(5)", ds->vocab);
	assert_int_equal(trainer_check_config(&cfg, ds, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "end the model with linear"));
	dataset_free(ds);
}

/* A per-token job checkpointed mid-epoch and restored ends with the bits
 * of the job never stopped (gpt and char_lstm, 2 threads). */
static void test_resume_bits(void **state)
{
	static const char *const models[] = { "char_lstm(embed=6,hidden=12,layers=2)",
					       "gpt(layers=1,dim=8,heads=2)" };
	struct dataset *ds = load_text("resume", 6000);

	(void)state;
	for (int m = 0; m < 2; m++) {
		struct train_config cfg;
		struct trainer *a = NULL, *b = NULL;
		struct tr_err err = { 0 };
		uint8_t *blob = NULL;
		size_t len = 0;
		char ha[65], hb[65];

		text_config(&cfg, models[m], 12, 6);
		assert_int_equal(trainer_new(&a, &cfg, ds, &err), 0);
		assert_int_equal(a->task, TASK_TOKENS);
		while (!trainer_finished(a)) {
			while (!trainer_epoch_done(a))
				assert_int_equal(trainer_step(a), 0);
			assert_int_equal(trainer_end_epoch(a, NULL), 0);
		}
		trainer_params_hash(a, ha);
		assert_true(isfinite(a->history[1].val_ppl) &&
			    fabs(a->history[1].val_ppl - exp(a->history[1].val_loss)) < 1e-9 * a->history[1].val_ppl);
		assert_true(isnan(a->history[1].val_macro_acc));
		trainer_free(a);

		assert_int_equal(trainer_new(&b, &cfg, ds, &err), 0);
		for (int k = 0; k < 3; k++)
			assert_int_equal(trainer_step(b), 0);
		if (checkpoint_save(b, &blob, &len, &err) < 0)
			fail_msg("%s", err.msg);
		trainer_free(b);
		b = NULL;
		if (checkpoint_restore(&b, blob, len, ds, false, &err) < 0)
			fail_msg("%s", err.msg);
		free(blob);
		assert_int_equal(b->step, 3);
		assert_int_equal(b->sums.tokens, 3ull * 8 * 12);
		while (!trainer_finished(b)) {
			while (!trainer_epoch_done(b))
				assert_int_equal(trainer_step(b), 0);
			assert_int_equal(trainer_end_epoch(b, NULL), 0);
		}
		trainer_params_hash(b, hb);
		assert_string_equal(ha, hb);
		trainer_free(b);
	}
	dataset_free(ds);
}

/* A .npy file of an integer array. */
static void write_npy(const char *dir, const char *name, const char *descr, const uint64_t *shape, int nd,
		      const void *data, size_t bytes)
{
	char head[256];
	uint8_t *buf;
	size_t hl, len;
	int n;

	n = snprintf(head, sizeof(head), "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
	for (int i = 0; i < nd; i++)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "%llu,%s", (unsigned long long)shape[i],
			      i + 1 < nd ? " " : "");
	n += snprintf(head + n, sizeof(head) - (size_t)n, "), }");
	hl = (size_t)n;
	while ((10 + hl + 1) % 64)
		head[hl++] = ' ';
	head[hl++] = '\n';
	len = 10 + hl + bytes;
	buf = malloc(len);
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	buf[8] = (uint8_t)(hl & 0xff);
	buf[9] = (uint8_t)(hl >> 8);
	memcpy(buf + 10, head, hl);
	memcpy(buf + 10 + hl, data, bytes);
	write_file(dir, name, buf, len);
	free(buf);
}

/* Token arrays: a class per position (a tagger) and per sequence (a
 * classifier); an id past vocab_size refused naming it. */
static void test_token_arrays(void **state)
{
	enum { N = 40, T = 6 };
	int32_t x[N * T], yt[N * T];
	int64_t yc[N];
	uint64_t s2[2] = { N, T }, s1[1] = { N };
	char dir[PATH_MAX];
	struct dataset *ds = NULL;
	struct tr_err err = { 0 };
	struct train_config cfg;
	struct trainer *t = NULL;

	(void)state;
	for (int i = 0; i < N * T; i++) {
		x[i] = (i * 7 + i / T) % 11;
		yt[i] = (x[i] + 1) % 13;
	}
	for (int i = 0; i < N; i++)
		yc[i] = i % 3;
	make_dir(dir, sizeof(dir), "tagged");
	write_npy(dir, "x_train.npy", "<i4", s2, 2, x, sizeof(x));
	write_npy(dir, "y_train.npy", "<i4", s2, 2, yt, sizeof(yt));
	write_npy(dir, "x_test.npy", "<i4", s2, 2, x, sizeof(x));
	write_npy(dir, "y_test.npy", "<i4", s2, 2, yt, sizeof(yt));
	if (dataset_load(&ds, dir, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(ds->tokens && !ds->text && ds->target == DS_TARGET_TOKENS);
	assert_int_equal(ds->seq_len, T);
	assert_int_equal(ds->vocab, 12);   /* ids go to 10, targets to 11 */
	assert_int_equal(ds->classes, 12);
	assert_int_equal(ds->train.tokens[7], (uint32_t)x[7]);
	config_defaults(&cfg);
	snprintf(cfg.model, sizeof(cfg.model), "embedding(12,4),gru(6),linear(12)");
	cfg.val_size = 8;
	cfg.batch_size = 8;
	cfg.epochs = 1;
	assert_int_equal(trainer_new(&t, &cfg, ds, &err), 0);
	while (!trainer_epoch_done(t))
		assert_int_equal(trainer_step(t), 0);
	assert_int_equal(trainer_end_epoch(t, NULL), 0);
	assert_true(isfinite(t->history[0].val_ppl));
	trainer_free(t);
	cfg.context = T + 1;
	assert_int_equal(trainer_check_config(&cfg, ds, &err), -EINVAL);
	assert_string_equal(err.key, "context");
	dataset_free(ds);

	make_dir(dir, sizeof(dir), "classified");
	write_npy(dir, "x_train.npy", "<i4", s2, 2, x, sizeof(x));
	write_npy(dir, "y_train.npy", "<i8", s1, 1, yc, sizeof(yc));
	write_npy(dir, "x_test.npy", "<i4", s2, 2, x, sizeof(x));
	write_npy(dir, "y_test.npy", "<i8", s1, 1, yc, sizeof(yc));
	if (dataset_load(&ds, dir, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(ds->tokens && ds->target == DS_TARGET_CLASS);
	assert_int_equal(ds->classes, 3);
	assert_int_equal(ds->vocab, 11);
	config_defaults(&cfg);
	snprintf(cfg.model, sizeof(cfg.model), "embedding(11,4),lstm(6),last,linear(3)");
	cfg.val_size = 8;
	cfg.batch_size = 8;
	cfg.epochs = 1;
	assert_int_equal(trainer_new(&t, &cfg, ds, &err), 0);
	assert_int_equal(t->task, TASK_CLASSIFICATION);
	while (!trainer_epoch_done(t))
		assert_int_equal(trainer_step(t), 0);
	assert_int_equal(trainer_end_epoch(t, NULL), 0);
	assert_true(isfinite(t->history[0].val_acc) && isnan(t->history[0].val_ppl));
	trainer_free(t);
	dataset_free(ds);

	write_file(dir, "dataset.json", "{\"vocab_size\": 10}", 18);
	assert_int_equal(dataset_load(&ds, dir, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "x_train.npy"));
	assert_non_null(strstr(err.msg, "token 10"));
	assert_non_null(strstr(err.msg, "vocab_size"));
}

/* Vocabularies past a byte's 256 classes: a text of 600 characters
 * (U+4E00..: three UTF-8 bytes each) and token arrays of 3000 ids, each a
 * class at every position, train, and their metrics count every id. */
static void test_large_vocab(void **state)
{
	enum { V = 600, LEN = 9000, N = 48, T = 10, VA = 3000 };
	char dir[PATH_MAX], *text = malloc(3 * LEN + 1), out[16];
	const char *files[1] = { "han.txt" };
	const char *hi = "\xe4\xb8\x80\xe4\xb8\x81\xe4\xb9\x97";   /* U+4E00 U+4E01 U+4E57 */
	int64_t *x = malloc(sizeof(int64_t) * N * T), *y = malloc(sizeof(int64_t) * N * T);
	uint64_t shape[2] = { N, T };
	struct dataset *ds = NULL;
	struct tr_err err = { 0 };
	struct train_config cfg;
	struct trainer *t = NULL;
	uint32_t *ids = NULL, seed = 7;
	size_t n = 0, len = 0;
	char *back;

	(void)state;
	for (int i = 0; i < LEN; i++) {
		/* every character at least once, then a walk that a model can learn */
		uint32_t cp = 0x4E00 + (i < V ? (uint32_t)i : (seed = seed * 1103515245u + 12345u, (uint32_t)(i * 7 + (seed >> 16) % 3) % V));

		text[len++] = (char)(0xE0 | (cp >> 12));
		text[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
		text[len++] = (char)(0x80 | (cp & 0x3F));
	}
	text[len] = '\0';
	make_dir(dir, sizeof(dir), "han");
	write_file(dir, "han.txt", text, len);
	free(text);
	assert_int_equal(text_meta(dir, files, 1, DS_VOCAB_CHAR, &err), 0);
	if (dataset_load(&ds, dir, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(ds->vocab, V);
	assert_int_equal(ds->classes, V);
	assert_int_equal(ds->code_points[0], 0x4E00);
	assert_int_equal(ds->code_points[V - 1], 0x4E00 + V - 1);
	assert_int_equal(ds->train.ntokens + ds->test.ntokens, LEN);
	assert_int_equal(dataset_text_encode(ds, hi, strlen(hi), &ids, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(ids[0], 0);
	assert_int_equal(ids[1], 1);
	assert_int_equal(ids[2], 0x57);
	back = dataset_text_decode(ds, ids, n);
	assert_string_equal(back, hi);
	free(back);
	free(ids);
	snprintf(out, sizeof(out), "%u", V);
	text_config(&cfg, "embedding(600,8),gru(16),linear(600)", 12, 20);
	cfg.epochs = 1;
	assert_int_equal(trainer_new(&t, &cfg, ds, &err), 0);
	assert_int_equal(t->task, TASK_TOKENS);
	while (!trainer_epoch_done(t))
		assert_int_equal(trainer_step(t), 0);
	assert_int_equal(trainer_end_epoch(t, NULL), 0);
	/* a uniform guess is exp(log 600) = 600 */
	assert_true(isfinite(t->history[0].val_ppl) && t->history[0].val_ppl > 1.0);
	assert_true(fabs(t->history[0].val_ppl - exp(t->history[0].val_loss)) < 1e-9 * t->history[0].val_ppl);
	trainer_free(t);
	dataset_free(ds);

	/* token arrays: ids and targets up to 2999; the targets' accuracy counts
	 * ids past 255 (each target is its input: an embedding learns it) */
	for (int i = 0; i < N * T; i++) {
		/* 16 sequences, each three times (the validation ones seen in training) */
		x[i] = (i % (N * T / 3)) == 5 ? VA - 1 : ((i % (N * T / 3)) * 37) % VA;
		y[i] = x[i];
	}
	make_dir(dir, sizeof(dir), "ids3000");
	write_npy(dir, "x_train.npy", "<i8", shape, 2, x, sizeof(int64_t) * N * T);
	write_npy(dir, "y_train.npy", "<i8", shape, 2, y, sizeof(int64_t) * N * T);
	write_npy(dir, "x_test.npy", "<i8", shape, 2, x, sizeof(int64_t) * N * T);
	write_npy(dir, "y_test.npy", "<i8", shape, 2, y, sizeof(int64_t) * N * T);
	if (dataset_load(&ds, dir, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(ds->vocab, VA);
	assert_int_equal(ds->classes, VA);
	assert_int_equal(ds->train.tokens[5], VA - 1);
	config_defaults(&cfg);
	snprintf(cfg.model, sizeof(cfg.model), "embedding(3000,16),linear(3000)");
	cfg.val_size = 8;
	cfg.batch_size = 8;
	cfg.epochs = 30;
	cfg.lr = 0.05;
	assert_int_equal(trainer_new(&t, &cfg, ds, &err), 0);
	assert_int_equal(t->task, TASK_TOKENS);
	while (!trainer_finished(t)) {
		while (!trainer_epoch_done(t))
			assert_int_equal(trainer_step(t), 0);
		assert_int_equal(trainer_end_epoch(t, NULL), 0);
	}
	/* learned, ids past 255 too */
	assert_true(t->history[cfg.epochs - 1].train_acc > 0.9);
	assert_true(t->history[cfg.epochs - 1].val_acc > 0.9);
	/* the model's most likely next token after an id past 255 is that id
	 * (the targets kept it whole) */
	{
		struct gen_opts greedy = { .tokens = 1, .temperature = 0.0, .top_k = 0, .seed = 1 };
		uint32_t prompt[2] = { 37 * 9 % VA, VA - 1 }, next = 0;
		uint8_t *blob = NULL;
		size_t blen = 0;
		struct net net;

		memset(&net, 0, sizeof(net));
		assert_int_equal(checkpoint_save(t, &blob, &blen, &err), 0);
		assert_int_equal(checkpoint_model_net(blob, blen, 1, &net, &err), 0);
		assert_int_equal(generate_check(&net, &err), 0);
		assert_int_equal(generate_tokens(&net, prompt, 2, &greedy, &next, &err), 0);
		assert_int_equal(next, VA - 1);
		assert_int_equal(generate_tokens(&net, prompt, 1, &greedy, &next, &err), 0);
		assert_int_equal(next, 37 * 9 % VA);
		net_deinit(&net);
		free(blob);
	}
	trainer_free(t);
	dataset_free(ds);
	free(x);
	free(y);
}

/* safetensors: a tensor "tokens" I32 [N, T] and "labels" I64 [N, T]. */
static void test_token_safetensors(void **state)
{
	enum { N = 12, T = 5 };
	int32_t x[N * T];
	int64_t y[N * T];
	uint64_t shape[2] = { N, T };
	char dir[PATH_MAX];
	struct dataset *ds = NULL;
	struct tr_err err = { 0 };

	(void)state;
	for (int i = 0; i < N * T; i++) {
		x[i] = i % 9;
		y[i] = (i + 1) % 9;
	}
	make_dir(dir, sizeof(dir), "st");
	for (int s = 0; s < 2; s++) {
		struct st_writer *w = NULL;
		uint8_t *blob = NULL;
		size_t len = 0;

		assert_int_equal(st_writer_new(&w), 0);
		assert_int_equal(st_writer_add(w, "tokens", ST_I32, 2, shape, x), 0);
		assert_int_equal(st_writer_add(w, "labels", ST_I64, 2, shape, y), 0);
		assert_int_equal(st_writer_finish(w, &blob, &len), 0);
		write_file(dir, s ? "test.safetensors" : "train.safetensors", blob, len);
		free(blob);
		st_writer_free(w);
	}
	if (dataset_load(&ds, dir, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(ds->tokens && ds->target == DS_TARGET_TOKENS && ds->seq_len == T && ds->vocab == 9);
	assert_int_equal(ds->train.token_targets[3], 4);
	dataset_free(ds);
}

static void test_context_key(void **state)
{
	struct train_config a, b;
	struct tr_err err = { 0 };
	json_t *j;

	(void)state;
	config_defaults(&a);
	assert_int_equal(a.context, 0);
	assert_int_equal(config_set(&a, "context", "128", &err), 0);
	assert_int_equal(a.context, 128);
	assert_int_equal(config_set(&a, "context", "70000", &err), -EINVAL);
	assert_string_equal(err.key, "context");
	j = config_to_json(&a);
	assert_int_equal(json_integer_value(json_object_get(j, "context")), 128);
	assert_int_equal(config_from_json(&b, j, &err), 0);
	assert_true(config_equal(&a, &b));
	json_decref(j);
}

static int setup(void **state)
{
	const char *base = getenv("TRAIND_TEST_TMP");

	(void)state;
	snprintf(g_root, sizeof(g_root), "%s/test-text-XXXXXX", base ? base : "/tmp");
	return mkdtemp(g_root) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_root);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_char_vocabulary),
		cmocka_unit_test(test_not_utf8),
		cmocka_unit_test(test_text_budget),
		cmocka_unit_test(test_windows),
		cmocka_unit_test(test_resume_bits),
		cmocka_unit_test(test_token_arrays),
		cmocka_unit_test(test_large_vocab),
		cmocka_unit_test(test_token_safetensors),
		cmocka_unit_test(test_context_key),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
