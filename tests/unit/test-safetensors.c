/*
 * test-safetensors.c - the safetensors writer and its strict parser.
 *
 *   - round trips: every dtype, a scalar (shape []), zero-size tensors at the
 *     start, middle and end, metadata with quotes, newlines and non-ASCII
 *     text; the data section must start 8-byte aligned;
 *   - the writer refuses what the parser would refuse (bad names, dtypes,
 *     shapes, duplicates, too many tensors) and accepts the limits exactly;
 *   - many hand-made hostile headers, each of which must fail with -EINVAL
 *     and a one-line message that says what is wrong;
 *   - every truncation and many random mutations of a valid blob: st_parse
 *     must either succeed with a self-consistent result or fail cleanly
 *     (run under ASan/UBSan to make "cleanly" mean something; every buffer
 *     is malloc'ed at its exact size so overreads are caught);
 *   - out-of-memory injection into jansson (json_set_alloc_funcs): every
 *     failing allocation must give -ENOMEM and leak nothing.
 *
 * Set ST_SHOW_ERRORS=1 in the environment to print every error message.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "traind/safetensors.h"

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */
/* ---------------------------------------------------------------------- */

static uint64_t rand_state = 0x9e3779b97f4a7c15ull;

/* xorshift64*: a fixed sequence, so failures reproduce. */
static uint64_t rand_next(void)
{
	rand_state ^= rand_state >> 12;
	rand_state ^= rand_state << 25;
	rand_state ^= rand_state >> 27;
	return rand_state * 0x2545f4914f6cdd1dull;
}

static size_t rand_below(size_t n)
{
	return (size_t)(rand_next() % n);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* A copy of buf[0..len) in a buffer of exactly len bytes (ASan sees overreads). */
static uint8_t *exact_copy(const uint8_t *buf, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	assert_non_null(p);
	if (len)
		memcpy(p, buf, len);
	return p;
}

/* 8-byte length, `hlen` header bytes, then `datalen` bytes of a pattern. */
static uint8_t *make_blob(const char *header, size_t hlen, size_t datalen, size_t *len)
{
	uint8_t *p;

	*len = 8 + hlen + datalen;
	p = malloc(*len);
	assert_non_null(p);
	put_le64(p, hlen);
	memcpy(p + 8, header, hlen);
	for (size_t i = 0; i < datalen; i++)
		p[8 + hlen + i] = (uint8_t)(i * 13 + 1);
	return p;
}

/* The error must be -EINVAL, name the problem (`needle`), and be one line. */
static void check_error(int rc, const struct st_file *f, const struct tr_err *err, const char *needle)
{
	json_t *js;

	if (getenv("ST_SHOW_ERRORS"))
		print_message("  st_parse: %s\n", err->msg);
	assert_int_equal(rc, -EINVAL);
	assert_null(f);
	assert_int_equal(err->code, -EINVAL);
	assert_true(strlen(err->msg) > 0);
	/* One line of valid UTF-8 without control characters. */
	for (const char *c = err->msg; *c; c++)
		assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
	js = json_string(err->msg);
	assert_non_null(js);
	json_decref(js);
	if (needle && !strstr(err->msg, needle))
		fail_msg("message \"%s\" does not contain \"%s\"", err->msg, needle);
}

static void expect_raw_invalid(const uint8_t *buf, size_t len, const char *needle)
{
	struct st_file *f = (struct st_file *)1;
	struct tr_err err;
	uint8_t *copy = exact_copy(buf, len);
	int rc;

	tr_err_clear(&err);
	rc = st_parse(&f, copy, len, &err);
	check_error(rc, f, &err, needle);
	free(copy);
}

/* `header` (NUL-terminated) with `datalen` data bytes must be rejected. */
static void expect_invalid(const char *header, size_t datalen, const char *needle)
{
	size_t len;
	uint8_t *blob = make_blob(header, strlen(header), datalen, &len);

	expect_raw_invalid(blob, len, needle);
	free(blob);
}

/* `header` with `datalen` data bytes must parse; returns the file. */
static struct st_file *expect_valid(const char *header, size_t datalen, uint8_t **blob_out)
{
	struct st_file *f = NULL;
	struct tr_err err;
	size_t len;
	uint8_t *blob = make_blob(header, strlen(header), datalen, &len);
	int rc;

	tr_err_clear(&err);
	rc = st_parse(&f, blob, len, &err);
	if (rc)
		fail_msg("expected \"%s\" to parse, got %d: %s", header, rc, err.msg);
	assert_non_null(f);
	*blob_out = blob;
	return f;
}

static void expect_valid_free(const char *header, size_t datalen)
{
	uint8_t *blob;
	struct st_file *f = expect_valid(header, datalen, &blob);

	st_file_free(f);
	free(blob);
}

/* Invariants every successfully parsed file must satisfy. */
static void check_consistent(const struct st_file *f, const uint8_t *buf, size_t len)
{
	uint64_t hlen = get_le64(buf);
	uint64_t total = 0;

	assert_true(f->header == buf + 8);
	assert_int_equal(f->header_len, hlen);
	assert_true(f->ntensors <= ST_MAX_TENSORS);
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *t = &f->tensors[i];
		uint64_t count = 1;

		assert_true(strlen(t->name) > 0 && strlen(t->name) < ST_MAX_NAME);
		assert_true(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
		for (int d = 0; d < t->ndim; d++)
			count *= t->shape[d];
		assert_int_equal(t->nbytes, count * st_dtype_size(t->dtype));
		assert_true(t->data >= buf + 8 + hlen);
		assert_true(t->nbytes <= (uint64_t)(buf + len - t->data));
		total += t->nbytes;
		assert_true(st_find(f, t->name) != NULL);
	}
	/* The ranges tile the data section, so their sizes add up to it. */
	assert_int_equal(total, len - 8 - hlen);
	for (size_t i = 0; i < f->nmeta; i++)
		assert_non_null(st_meta_get(f, f->meta[i].key));
}

/* ---------------------------------------------------------------------- */
/* Round trips                                                             */
/* ---------------------------------------------------------------------- */

struct spec {
	const char *name;
	enum st_dtype dtype;
	int ndim;
	uint64_t shape[ST_MAX_DIMS];
};

static const struct spec round_trip_specs[] = {
	{ "empty.first", ST_F32, 2, { 0, 5 } },
	{ "net.0.weight", ST_F32, 2, { 3, 4 } },
	{ "net.0.bias", ST_F64, 1, { 3 } },
	{ "step", ST_I64, 0, { 0 } },
	{ "bytes", ST_U8, 1, { 7 } },
	{ "empty.middle", ST_U64, 3, { 2, 0, 9 } },
	{ "counts", ST_U32, 3, { 2, 1, 2 } },
	{ "ids", ST_U64, 1, { 2 } },
	{ "labels", ST_I32, 1, { 5 } },
	{ "d\xc3\xa9j\xc3\xa0 vu \"quoted\"", ST_U8, 1, { 3 } },
	{ "empty.last", ST_U8, 1, { 0 } },
};

#define NSPECS (sizeof(round_trip_specs) / sizeof(round_trip_specs[0]))

static const char *const meta_kv[][2] = {
	{ "config", "{\"lr\": 0.1, \"layers\": [784, 256, 10], \"name\": \"caf\xc3\xa9\"}" },
	{ "history", "" },
	{ "note", "line one\nline two\ttab \\ backslash" },
};

static uint64_t spec_nbytes(const struct spec *s)
{
	uint64_t n = st_dtype_size(s->dtype);

	for (int d = 0; d < s->ndim; d++)
		n *= s->shape[d];
	return n;
}

static void test_round_trip(void **state)
{
	uint8_t *data[NSPECS];
	struct st_writer *w;
	struct st_file *f;
	struct tr_err err;
	uint8_t *buf;
	size_t len;
	uint64_t hlen;

	(void)state;
	assert_int_equal(st_writer_new(&w), 0);
	for (size_t i = 0; i < NSPECS; i++) {
		const struct spec *s = &round_trip_specs[i];
		size_t n = (size_t)spec_nbytes(s);

		data[i] = malloc(n ? n : 1);
		assert_non_null(data[i]);
		for (size_t k = 0; k < n; k++)
			data[i][k] = (uint8_t)(rand_next() >> 56);
		/* Zero-size tensors may pass NULL data. */
		assert_int_equal(st_writer_add(w, s->name, s->dtype, s->ndim, s->shape,
					       n ? data[i] : NULL), 0);
	}
	for (size_t i = 0; i < sizeof(meta_kv) / sizeof(meta_kv[0]); i++)
		assert_int_equal(st_writer_meta(w, meta_kv[i][0], meta_kv[i][1]), 0);
	assert_int_equal(st_writer_finish(w, &buf, &len), 0);
	st_writer_free(w);

	/* Layout: aligned data section, header padded with spaces only. */
	hlen = get_le64(buf);
	assert_int_equal((8 + hlen) % 8, 0);
	assert_true(8 + hlen <= len);
	assert_memory_equal(buf + 8, "{\"__metadata__\":{\"config\":", 26);
	{
		size_t j = 8 + (size_t)hlen;

		while (buf[j - 1] == ' ')
			j--;
		assert_int_equal(buf[j - 1], '}');
		assert_true(8 + hlen - j < 8);
	}

	tr_err_clear(&err);
	assert_int_equal(st_parse(&f, buf, len, &err), 0);
	check_consistent(f, buf, len);
	assert_int_equal(f->ntensors, NSPECS);
	for (size_t i = 0; i < NSPECS; i++) {
		const struct spec *s = &round_trip_specs[i];
		const struct st_tensor *t = &f->tensors[i];

		/* Header order is the order added, and so is the data. */
		assert_string_equal(t->name, s->name);
		assert_ptr_equal(st_find(f, s->name), t);
		assert_int_equal(t->dtype, s->dtype);
		assert_int_equal(t->ndim, s->ndim);
		for (int d = 0; d < s->ndim; d++)
			assert_int_equal(t->shape[d], s->shape[d]);
		assert_int_equal(t->nbytes, spec_nbytes(s));
		if (t->nbytes)
			assert_memory_equal(t->data, data[i], (size_t)t->nbytes);
		if (i > 0)
			assert_ptr_equal(t->data, f->tensors[i - 1].data + f->tensors[i - 1].nbytes);
	}
	assert_ptr_equal(f->tensors[0].data, buf + 8 + hlen);
	assert_int_equal(f->nmeta, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(f->meta[i].key, meta_kv[i][0]);
		assert_string_equal(st_meta_get(f, meta_kv[i][0]), meta_kv[i][1]);
	}
	assert_null(st_find(f, "missing"));
	assert_null(st_find(f, "net.0"));
	assert_null(st_meta_get(f, "missing"));
	assert_int_equal(f->tensors[3].ndim, 0);
	assert_int_equal(f->tensors[3].nbytes, 8);

	st_file_free(f);
	free(buf);
	for (size_t i = 0; i < NSPECS; i++)
		free(data[i]);
}

/* Header lengths 1..40 bytes of JSON: the padding always aligns the data. */
static void test_padding(void **state)
{
	char name[64];

	(void)state;
	for (size_t n = 1; n < 40; n++) {
		struct st_writer *w;
		struct st_file *f;
		uint8_t *buf;
		size_t len;
		uint32_t v = 0xdeadbeef;
		uint64_t one = 1;

		memset(name, 'n', n);
		name[n] = '\0';
		assert_int_equal(st_writer_new(&w), 0);
		assert_int_equal(st_writer_add(w, name, ST_U32, 1, &one, &v), 0);
		assert_int_equal(st_writer_finish(w, &buf, &len), 0);
		st_writer_free(w);
		assert_int_equal((8 + get_le64(buf)) % 8, 0);
		assert_int_equal(len, 8 + get_le64(buf) + 4);
		assert_int_equal(st_parse(&f, buf, len, NULL), 0);
		assert_memory_equal(f->tensors[0].data, &v, 4);
		st_file_free(f);
		free(buf);
	}
}

/* No tensors, no metadata: "{}" padded to 8 bytes, an empty data section. */
static void test_empty_file(void **state)
{
	struct st_writer *w;
	struct st_file *f;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(st_writer_new(&w), 0);
	assert_int_equal(st_writer_finish(w, &buf, &len), 0);
	st_writer_free(w);
	assert_int_equal(len, 16);
	assert_int_equal(get_le64(buf), 8);
	assert_memory_equal(buf + 8, "{}      ", 8);
	assert_int_equal(st_parse(&f, buf, len, NULL), 0);
	assert_int_equal(f->ntensors, 0);
	assert_int_equal(f->nmeta, 0);
	st_file_free(f);
	free(buf);
}

/* The shapes of the MNIST MLP checkpoint, ~0.9 MB of F32. */
static void test_mlp_checkpoint(void **state)
{
	static const uint64_t shapes[4][2] = { { 256, 784 }, { 256, 0 }, { 10, 256 }, { 10, 0 } };
	static const char *const names[4] = { "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias" };
	float *params[4];
	struct st_writer *w;
	struct st_file *f;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(st_writer_new(&w), 0);
	for (int i = 0; i < 4; i++) {
		int ndim = shapes[i][1] ? 2 : 1;
		size_t n = (size_t)(shapes[i][0] * (ndim == 2 ? shapes[i][1] : 1));

		params[i] = malloc(n * sizeof(float));
		assert_non_null(params[i]);
		for (size_t k = 0; k < n; k++)
			params[i][k] = (float)k * 0.001f - (float)i;
		assert_int_equal(st_writer_add(w, names[i], ST_F32, ndim, shapes[i], params[i]), 0);
	}
	assert_int_equal(st_writer_meta(w, "format", "traind-mlp-v1"), 0);
	assert_int_equal(st_writer_finish(w, &buf, &len), 0);
	st_writer_free(w);
	assert_int_equal(st_parse(&f, buf, len, NULL), 0);
	check_consistent(f, buf, len);
	for (int i = 0; i < 4; i++) {
		const struct st_tensor *t = st_find(f, names[i]);

		assert_non_null(t);
		assert_memory_equal(t->data, params[i], (size_t)t->nbytes);
		free(params[i]);
	}
	assert_string_equal(st_meta_get(f, "format"), "traind-mlp-v1");
	st_file_free(f);
	free(buf);
}

/* ---------------------------------------------------------------------- */
/* Writer argument checks and limits                                       */
/* ---------------------------------------------------------------------- */

static void test_writer_rejects(void **state)
{
	uint64_t shape[ST_MAX_DIMS + 1] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
	uint64_t big[2] = { (uint64_t)1 << 40, 1 };
	uint64_t huge[4] = { ((uint64_t)1 << 40) - 1, ((uint64_t)1 << 40) - 1, 2, 2 };
	char name[ST_MAX_NAME + 1];
	float x[4] = { 0 };
	struct st_writer *w;

	(void)state;
	assert_int_equal(st_writer_new(&w), 0);
	assert_int_equal(st_writer_add(w, "a", ST_F32, 1, shape, x), 0);
	assert_int_equal(st_writer_add(w, "a", ST_F32, 1, shape, x), -EEXIST);
	assert_int_equal(st_writer_add(w, "", ST_F32, 1, shape, x), -EINVAL);
	assert_int_equal(st_writer_add(w, NULL, ST_F32, 1, shape, x), -EINVAL);
	assert_int_equal(st_writer_add(w, "__metadata__", ST_F32, 1, shape, x), -EINVAL);
	assert_int_equal(st_writer_add(w, "bad\xff", ST_F32, 1, shape, x), -EINVAL);
	assert_int_equal(st_writer_add(w, "overlong\xc0\x80", ST_F32, 1, shape, x), -EINVAL);
	assert_int_equal(st_writer_add(w, "b", (enum st_dtype)99, 1, shape, x), -EINVAL);
	assert_int_equal(st_writer_add(w, "b", (enum st_dtype)-1, 1, shape, x), -EINVAL);
	assert_int_equal(st_writer_add(w, "b", ST_F32, -1, shape, x), -EINVAL);
	assert_int_equal(st_writer_add(w, "b", ST_F32, ST_MAX_DIMS + 1, shape, x), -EINVAL);
	assert_int_equal(st_writer_add(w, "b", ST_F32, 1, NULL, x), -EINVAL);
	assert_int_equal(st_writer_add(w, "b", ST_F32, 1, shape, NULL), -EINVAL);
	assert_int_equal(st_writer_add(w, "b", ST_U8, 2, big, x), -EINVAL);
	assert_int_equal(st_writer_add(w, "b", ST_U8, 4, huge, x), -EINVAL);

	memset(name, 'x', ST_MAX_NAME);
	name[ST_MAX_NAME] = '\0';
	assert_int_equal(st_writer_add(w, name, ST_F32, 1, shape, x), -EINVAL);
	name[ST_MAX_NAME - 1] = '\0';
	assert_int_equal(st_writer_add(w, name, ST_F32, 1, shape, x), 0);
	/* A zero dimension makes any other dimension (below 2^40) fine. */
	huge[2] = 0;
	assert_int_equal(st_writer_add(w, "zero", ST_U8, 4, huge, NULL), 0);
	assert_int_equal(st_writer_add(w, "max_dims", ST_F32, ST_MAX_DIMS, shape, x), 0);

	assert_int_equal(st_writer_meta(w, "k", "v"), 0);
	assert_int_equal(st_writer_meta(w, "k", "v2"), -EEXIST);
	assert_int_equal(st_writer_meta(w, "", "v"), -EINVAL);
	assert_int_equal(st_writer_meta(w, "k2", NULL), -EINVAL);
	assert_int_equal(st_writer_meta(w, NULL, "v"), -EINVAL);
	assert_int_equal(st_writer_meta(w, "k3", "bad \xed\xa0\x80 surrogate"), -EINVAL);
	assert_int_equal(st_writer_meta(w, name, "v"), 0);
	st_writer_free(w);
	st_writer_free(NULL);
	st_file_free(NULL);
}

static void test_dtypes(void **state)
{
	static const struct {
		enum st_dtype dt;
		const char *name;
		size_t size;
	} expect[] = {
		{ ST_F32, "F32", 4 }, { ST_F64, "F64", 8 }, { ST_I32, "I32", 4 }, { ST_I64, "I64", 8 },
		{ ST_U8, "U8", 1 }, { ST_U32, "U32", 4 }, { ST_U64, "U64", 8 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
		assert_string_equal(st_dtype_name(expect[i].dt), expect[i].name);
		assert_int_equal(st_dtype_size(expect[i].dt), expect[i].size);
	}
	assert_int_equal(st_dtype_size((enum st_dtype)7), 0);
	assert_string_equal(st_dtype_name((enum st_dtype)7), "?");
}

/* Names and values are checked as UTF-8 the way jansson checks them. */
static void test_writer_utf8(void **state)
{
	uint64_t one = 1;
	uint8_t byte = 1;
	struct st_writer *w;
	struct st_file *f;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(st_writer_new(&w), 0);
	assert_int_equal(st_writer_add(w, "emoji \xf0\x9f\x98\x80", ST_U8, 1, &one, &byte), 0);
	assert_int_equal(st_writer_add(w, "\xe2\x82\xac euro", ST_U8, 1, &one, &byte), 0);
	assert_int_equal(st_writer_add(w, "max \xf4\x8f\xbf\xbf", ST_U8, 1, &one, &byte), 0);
	assert_int_equal(st_writer_add(w, "above max \xf4\x90\x80\x80", ST_U8, 1, &one, &byte), -EINVAL);
	assert_int_equal(st_writer_add(w, "lead \xf5\x80\x80\x80", ST_U8, 1, &one, &byte), -EINVAL);
	assert_int_equal(st_writer_add(w, "overlong \xf0\x80\x80\x80", ST_U8, 1, &one, &byte), -EINVAL);
	assert_int_equal(st_writer_add(w, "overlong \xe0\x80\x80", ST_U8, 1, &one, &byte), -EINVAL);
	assert_int_equal(st_writer_add(w, "cut \xf0\x9f\x98", ST_U8, 1, &one, &byte), -EINVAL);
	assert_int_equal(st_writer_add(w, "cut \xf0\x9f\x98x", ST_U8, 1, &one, &byte), -EINVAL);
	assert_int_equal(st_writer_add(w, "lone \x80", ST_U8, 1, &one, &byte), -EINVAL);
	assert_int_equal(st_writer_add(w, "ctrl \x01\x1f\x7f ok", ST_U8, 1, &one, &byte), 0);
	assert_int_equal(st_writer_meta(w, "k", "\xf0\x9f\x98\x80 \xc3\xa9"), 0);
	assert_int_equal(st_writer_finish(w, &buf, &len), 0);
	st_writer_free(w);
	assert_int_equal(st_parse(&f, buf, len, NULL), 0);
	assert_int_equal(f->ntensors, 4);
	assert_non_null(st_find(f, "emoji \xf0\x9f\x98\x80"));
	assert_non_null(st_find(f, "ctrl \x01\x1f\x7f ok"));
	assert_string_equal(st_meta_get(f, "k"), "\xf0\x9f\x98\x80 \xc3\xa9");
	st_file_free(f);
	free(buf);
}

/* Sizes the file format cannot hold are refused, before any data is read. */
static void test_writer_too_big(void **state)
{
	uint64_t half[2] = { (uint64_t)1 << 39, (uint64_t)1 << 24 };  /* 2^63 bytes */
	uint64_t big[2] = { (uint64_t)1 << 39, (uint64_t)1 << 23 };   /* 2^62 bytes */
	size_t n = 3u << 20;
	char *ctrl = malloc(n + 1);
	uint8_t dummy = 0;
	struct st_writer *w;
	uint8_t *buf = (uint8_t *)1;
	size_t len = 1;

	(void)state;
	assert_non_null(ctrl);
	assert_int_equal(st_writer_new(&w), 0);
	/* Data offsets must fit int64. */
	assert_int_equal(st_writer_add(w, "a", ST_U8, 2, half, &dummy), -EINVAL);
	if (sizeof(size_t) == 8) {
		assert_int_equal(st_writer_add(w, "b", ST_U8, 2, big, &dummy), 0);
		assert_int_equal(st_writer_add(w, "c", ST_U8, 2, big, &dummy), -EINVAL);
	}
	st_writer_free(w);

	/* 3 MB of control characters escape to 18 MB of header: too big. */
	memset(ctrl, 1, n);
	ctrl[n] = '\0';
	assert_int_equal(st_writer_new(&w), 0);
	assert_int_equal(st_writer_meta(w, "ctrl", ctrl), 0);
	assert_int_equal(st_writer_finish(w, &buf, &len), -EINVAL);
	assert_null(buf);
	assert_int_equal(len, 0);
	st_writer_free(w);
	free(ctrl);
}

/* The writer takes ST_MAX_TENSORS tensors with the longest names and the
 * most dimensions, and the parser accepts the result; one more is refused. */
static void test_writer_max_tensors(void **state)
{
	uint64_t shape[ST_MAX_DIMS] = { 1, 1, 1, 1, 1, 1, 1, 1 };
	char name[ST_MAX_NAME];
	uint8_t byte = 7;
	struct st_writer *w;
	struct st_file *f;
	struct tr_err err;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(st_writer_new(&w), 0);
	for (int i = 0; i < ST_MAX_TENSORS; i++) {
		snprintf(name, sizeof(name), "%0*d", ST_MAX_NAME - 1, i);
		assert_int_equal(strlen(name), ST_MAX_NAME - 1);
		assert_int_equal(st_writer_add(w, name, ST_U8, ST_MAX_DIMS, shape, &byte), 0);
	}
	assert_int_equal(st_writer_add(w, "one.more", ST_U8, 1, shape, &byte), -EINVAL);
	assert_int_equal(st_writer_meta(w, "k", "v"), 0);
	assert_int_equal(st_writer_finish(w, &buf, &len), 0);
	st_writer_free(w);
	assert_int_equal(st_parse(&f, buf, len, &err), 0);
	assert_int_equal(f->ntensors, ST_MAX_TENSORS);
	check_consistent(f, buf, len);
	st_file_free(f);
	free(buf);
}

/* Metadata up to 8 MB of values in total, as a config/history JSON needs. */
static void test_meta_limits(void **state)
{
	size_t limit = 8u << 20;
	char *value = malloc(limit + 1);
	struct st_writer *w;
	struct st_file *f;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_non_null(value);
	memset(value, 'v', limit);
	value[limit] = '\0';
	assert_int_equal(st_writer_new(&w), 0);
	assert_int_equal(st_writer_meta(w, "big", value), 0);
	assert_int_equal(st_writer_meta(w, "one.more", "x"), -EINVAL);
	assert_int_equal(st_writer_meta(w, "empty", ""), 0);
	assert_int_equal(st_writer_finish(w, &buf, &len), 0);
	st_writer_free(w);
	assert_int_equal(st_parse(&f, buf, len, NULL), 0);
	assert_int_equal(strlen(st_meta_get(f, "big")), limit);
	st_file_free(f);
	free(buf);

	/* At most 1024 entries, in the writer and in the parser. */
	{
		char key[32];
		size_t cap = 32 * 1100 + 64, hlen;
		char *header = malloc(cap);

		assert_non_null(header);
		assert_int_equal(st_writer_new(&w), 0);
		for (int i = 0; i < 1024; i++) {
			snprintf(key, sizeof(key), "k%d", i);
			assert_int_equal(st_writer_meta(w, key, "v"), 0);
		}
		assert_int_equal(st_writer_meta(w, "k1024", "v"), -EINVAL);
		assert_int_equal(st_writer_finish(w, &buf, &len), 0);
		st_writer_free(w);
		assert_int_equal(st_parse(&f, buf, len, NULL), 0);
		assert_int_equal(f->nmeta, 1024);
		assert_string_equal(st_meta_get(f, "k1023"), "v");
		st_file_free(f);
		free(buf);

		hlen = (size_t)sprintf(header, "{\"__metadata__\":{");
		for (int i = 0; i <= 1024; i++)
			hlen += (size_t)sprintf(header + hlen, "%s\"k%d\":\"v\"", i ? "," : "", i);
		strcpy(header + hlen, "}}");
		expect_invalid(header, 0, "__metadata__ has 1025 entries; at most 1024 are allowed");
		free(header);
	}

	/* Two values of 5 MB: each fine alone, too much together. */
	{
		size_t half = 5u << 20;
		size_t hlen = 0;
		char *header = malloc(2 * half + 64);

		assert_non_null(header);
		hlen += (size_t)sprintf(header, "{\"__metadata__\":{\"a\":\"");
		memset(header + hlen, 'a', half);
		hlen += half;
		hlen += (size_t)sprintf(header + hlen, "\",\"b\":\"");
		memset(header + hlen, 'b', half);
		hlen += half;
		hlen += (size_t)sprintf(header + hlen, "\"}}");
		buf = make_blob(header, hlen, 0, &len);
		expect_raw_invalid(buf, len, "__metadata__ values exceed 8388608 bytes in total (at 'b')");
		free(buf);
		free(header);
	}
	free(value);
}

/* ---------------------------------------------------------------------- */
/* Hostile inputs                                                          */
/* ---------------------------------------------------------------------- */

static void test_bad_length_field(void **state)
{
	uint8_t buf[32] = { 0 };

	(void)state;
	for (size_t n = 0; n < 8; n++)
		expect_raw_invalid(buf, n, "too short for the 8-byte header length");

	/* Header length beyond the buffer, by one byte and by far. */
	put_le64(buf, 3);
	memcpy(buf + 8, "{}", 2);
	expect_raw_invalid(buf, 10, "header length 3 runs past the end of the 10-byte buffer");
	put_le64(buf, 100);
	expect_raw_invalid(buf, 32, "runs past the end");

	/* Lengths beyond the cap are refused before anything else. */
	put_le64(buf, (uint64_t)1 << 63);
	expect_raw_invalid(buf, 32, "header length 9223372036854775808 exceeds the limit");
	put_le64(buf, UINT64_MAX);
	expect_raw_invalid(buf, 32, "exceeds the limit");
	put_le64(buf, (uint64_t)ST_MAX_HEADER + 1);
	expect_raw_invalid(buf, 32, "exceeds the limit of 16777216 bytes");

	/* A zero-length header is not a JSON object. */
	put_le64(buf, 0);
	expect_raw_invalid(buf, 8, "does not start with '{'");
}

static void test_bad_json(void **state)
{
	(void)state;
	expect_invalid("hello", 0, "does not start with '{'");
	expect_invalid("[1,2]", 0, "does not start with '{'");
	expect_invalid("[]", 0, "does not start with '{'");
	expect_invalid(" {}", 0, "does not start with '{'");
	expect_invalid("\"str\"", 0, "does not start with '{'");
	expect_invalid("{hello}", 0, "not valid JSON");
	expect_invalid("{", 0, "not valid JSON");
	expect_invalid("{\"a\":{\"dtype\":\"F32\"", 0, "not valid JSON");
	expect_invalid("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "not valid JSON");
	expect_invalid("{\"a\":1,}", 0, "not valid JSON");
	expect_invalid("{} {}", 0, "not valid JSON");
	expect_invalid("{}x", 0, "not valid JSON");
	/* Whitespace other than spaces after the object is not padding. */
	expect_invalid("{}\n", 0, "other than spaces after its JSON object");
	expect_invalid("{}  \t  ", 0, "other than spaces after its JSON object");
	expect_invalid("{}\r", 0, "other than spaces");
	/* Integers beyond int64: jansson refuses them while parsing. */
	expect_invalid("{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616],\"data_offsets\":[0,0]}}", 0,
		       "too big integer");
	/* Deep nesting hits jansson's depth limit (2048), not our stack. */
	{
		size_t depth = 3000;
		char *h = malloc(2 * depth + 16);
		size_t n = 0;

		assert_non_null(h);
		n += (size_t)sprintf(h, "{\"a\":");
		memset(h + n, '[', depth);
		n += depth;
		memset(h + n, ']', depth);
		n += depth;
		strcpy(h + n, "}");
		expect_invalid(h, 0, "maximum parsing depth");
		free(h);
	}
}

static void test_padding_accepted(void **state)
{
	(void)state;
	/* Trailing spaces are padding, any number of them; no alignment needed. */
	expect_valid_free("{}", 0);
	expect_valid_free("{} ", 0);
	expect_valid_free("{}       ", 0);
	expect_valid_free("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}   ", 2);
	/* Whitespace inside the JSON is JSON's business. */
	expect_valid_free("{ \"a\" :\n{\"dtype\":\t\"U8\", \"shape\": [ 2 ], \"data_offsets\": [0, 2] } }", 2);
}

static void test_duplicates(void **state)
{
	(void)state;
	expect_invalid("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
		       "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "duplicate object key");
	expect_invalid("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
		       "duplicate object key");
	expect_invalid("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate object key");
	expect_invalid("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate object key");
}

static void test_bad_dtype(void **state)
{
	(void)state;
	expect_invalid("{\"w\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
		       "tensor 'w': unknown dtype 'BF16'");
	expect_invalid("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'f32'");
	expect_invalid("{\"w\":{\"dtype\":\"\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype ''");
	expect_invalid("{\"w\":{\"dtype\":\"F32 \",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'F32 '");
	expect_invalid("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
		       "tensor 'w': dtype is an integer, not a string");
	expect_invalid("{\"w\":{\"dtype\":null,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is null");
	expect_invalid("{\"w\":{\"dtype\":[\"F32\"],\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is an array");
	/* A long, unprintable dtype is shown cut and sanitized. */
	expect_invalid("{\"w\":{\"dtype\":\"\\u0001\\u001bF32xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\","
		       "\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype '??F32xxx");
}

static void test_bad_shape(void **state)
{
	(void)state;
	expect_invalid("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}", 0,
		       "tensor 'w': shape[1] is negative (-1)");
	expect_invalid("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
		       "shape[0] is a floating-point number, not an integer");
	expect_invalid("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e1],\"data_offsets\":[0,40]}}", 40,
		       "shape[0] is a floating-point number");
	expect_invalid("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
		       "shape[0] is a string, not an integer");
	expect_invalid("{\"w\":{\"dtype\":\"F32\",\"shape\":[true],\"data_offsets\":[0,4]}}", 4, "shape[0] is true");
	expect_invalid("{\"w\":{\"dtype\":\"F32\",\"shape\":[false],\"data_offsets\":[0,4]}}", 4, "shape[0] is false");
	expect_invalid("{\"w\":{\"dtype\":\"F32\",\"shape\":[[2]],\"data_offsets\":[0,8]}}", 8, "shape[0] is an array");
	expect_invalid("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
		       "tensor 'w': shape is an integer, not an array");
	expect_invalid("{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,8]}}", 8, "shape is an object");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
		       "shape has 9 dimensions; at most 8 are supported");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[1099511627776],\"data_offsets\":[0,0]}}", 0,
		       "shape[0] = 1099511627776 is 2^40 or more");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[9223372036854775807],\"data_offsets\":[0,0]}}", 0,
		       "is 2^40 or more");
	/* Products that overflow 64 bits: in the element count, and in the bytes. */
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[1099511627775,1099511627775],\"data_offsets\":[0,0]}}", 0,
		       "shape has too many elements (size overflows 64 bits)");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[65536,65536,65536,65536],\"data_offsets\":[0,0]}}", 0,
		       "overflows 64 bits");
	expect_invalid("{\"w\":{\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,0]}}", 0,
		       "overflows 64 bits");
	/* ... but a zero dimension anywhere makes the product 0. */
	expect_valid_free("{\"w\":{\"dtype\":\"F64\",\"shape\":[1099511627775,1099511627775,0],\"data_offsets\":[0,0]}}", 0);
	expect_valid_free("{\"w\":{\"dtype\":\"F64\",\"shape\":[0,1099511627775,1099511627775],\"data_offsets\":[0,0]}}", 0);
	/* A scalar has shape [] and one element. */
	expect_valid_free("{\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8);
	expect_invalid("{\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,0]}}", 0,
		       "tensor 's': shape [] needs 8 bytes but data_offsets span 0");
}

static void test_bad_offsets(void **state)
{
	(void)state;
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0]}}", 4,
		       "tensor 'w': data_offsets has 1 entries, not 2");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,8]}}", 8,
		       "data_offsets has 3 entries, not 2");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[]}}", 4, "has 0 entries");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,0]}}", 4,
		       "tensor 'w': data_offsets [4,0] end before they begin");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,1000]}}", 4,
		       "tensor 'w': data_offsets [0,1000] run past the 4-byte data section");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],"
		       "\"data_offsets\":[9223372036854775803,9223372036854775807]}}", 4,
		       "run past the 4-byte data section");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 4,
		       "data_offsets[0] is negative (-4)");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4.0]}}", 4,
		       "data_offsets[1] is a floating-point number");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":\"0,4\"}}", 4,
		       "data_offsets is a string, not an array");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":null}}", 4, "data_offsets is null");
}

static void test_size_mismatch(void **state)
{
	(void)state;
	/* The example from the header comment, exactly. */
	{
		const char *h = "{\"net.1.weight\":{\"dtype\":\"F32\",\"shape\":[256,784],\"data_offsets\":[0,802812]}}";
		struct st_file *f = NULL;
		struct tr_err err;
		size_t len;
		uint8_t *blob = make_blob(h, strlen(h), 802812, &len);

		assert_int_equal(st_parse(&f, blob, len, &err), -EINVAL);
		assert_string_equal(err.msg,
				    "tensor 'net.1.weight': shape [256,784] needs 802816 bytes but data_offsets span 802812");
		free(blob);
	}
	expect_invalid("{\"w\":{\"dtype\":\"U32\",\"shape\":[2],\"data_offsets\":[0,9]}}", 9,
		       "shape [2] needs 8 bytes but data_offsets span 9");
	expect_invalid("{\"w\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[0,8]}}", 8,
		       "shape [0] needs 0 bytes but data_offsets span 8");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[2,2]}}", 2, "needs 3 bytes");
}

static void test_tiling(void **state)
{
	(void)state;
	/* Overlap, whichever is listed first. */
	expect_invalid("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
		       "tensors 'a' [0,8) and 'b' [4,12) overlap");
	expect_invalid("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
		       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12,
		       "tensors 'a' [0,8) and 'b' [4,12) overlap");
	/* Two tensors sharing the same bytes. */
	expect_invalid("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		       "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8, "overlap");
	/* A zero-size tensor inside another's bytes. */
	expect_invalid("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		       "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8,
		       "tensors 'a' [0,8) and 'z' [4,4) overlap");
	/* Gaps. */
	expect_invalid("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20,
		       "gap of 4 bytes between tensor 'a' (ends at 8) and tensor 'b' (begins at 12)");
	expect_invalid("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
		       "data section begins with 4 bytes no tensor uses (first tensor 'a' begins at 4)");
	/* Trailing bytes after the last tensor. */
	expect_invalid("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12,
		       "4 trailing bytes after the last tensor 'a' (tensors end at 8, data section is 12 bytes)");
	expect_invalid("{}", 3, "data section has 3 bytes but the header lists no tensors");
	expect_invalid("{\"__metadata__\":{\"k\":\"v\"}}", 1, "no tensors");
	expect_invalid("{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 1, "1 trailing bytes");
	/* Zero-size tensors at any boundary are fine, in any header order. */
	expect_valid_free("{\"z0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
			  "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},"
			  "\"z1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
			  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
			  "\"z2\":{\"dtype\":\"U64\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
			  "\"z3\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[6,6]}}", 6);
	expect_valid_free("{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0);
	/* Out-of-order entries that tile: data pointers follow the offsets. */
	{
		uint8_t *blob;
		struct st_file *f = expect_valid("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]},"
						 "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}",
						 5, &blob);
		uint64_t hlen = get_le64(blob);

		assert_string_equal(f->tensors[0].name, "b");
		assert_ptr_equal(f->tensors[0].data, blob + 8 + hlen + 3);
		assert_ptr_equal(f->tensors[1].data, blob + 8 + hlen);
		st_file_free(f);
		free(blob);
	}
}

static void test_bad_metadata(void **state)
{
	(void)state;
	expect_invalid("{\"__metadata__\":{\"epoch\":1}}", 0, "__metadata__ 'epoch' is an integer, not a string");
	expect_invalid("{\"__metadata__\":{\"a\":\"x\",\"b\":null}}", 0, "__metadata__ 'b' is null, not a string");
	expect_invalid("{\"__metadata__\":{\"a\":{\"nested\":\"x\"}}}", 0, "'a' is an object, not a string");
	expect_invalid("{\"__metadata__\":\"config\"}", 0, "__metadata__ is a string, not an object");
	expect_invalid("{\"__metadata__\":[]}", 0, "__metadata__ is an array, not an object");
	expect_invalid("{\"__metadata__\":null}", 0, "__metadata__ is null");
	expect_invalid("{\"__metadata__\":{\"\":\"v\"}}", 0, "__metadata__ key '' is 0 bytes");
	expect_invalid("{\"__metadata__\":{\"k\":\"nul \\u0000 inside\"}}", 0, "\\u0000 is not allowed");
	expect_valid_free("{\"__metadata__\":{}}", 0);
	/* Metadata can sit anywhere among the tensors. */
	{
		uint8_t *blob;
		struct st_file *f = expect_valid("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
						 "\"__metadata__\":{\"k\":\"v \\\"q\\\" \\u00e9\"},"
						 "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
						 2, &blob);

		assert_int_equal(f->ntensors, 2);
		assert_string_equal(f->tensors[1].name, "b");
		assert_string_equal(st_meta_get(f, "k"), "v \"q\" \xc3\xa9");
		st_file_free(f);
		free(blob);
	}
}

static void test_bad_encoding(void **state)
{
	const char with_nul[] = "{\"a\0\":{}}";

	(void)state;
	/* Invalid UTF-8 anywhere: lone continuation, 0xff, overlong, surrogate, truncated. */
	expect_invalid("{\"\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
		       "not valid JSON: unable to decode byte 0xff");
	expect_invalid("{\"a\":{\"dtype\":\"U8\x80\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unable to decode byte 0x80");
	expect_invalid("{\"__metadata__\":{\"k\":\"\xc0\x80\"}}", 0, "unable to decode byte 0xc0");
	expect_invalid("{\"__metadata__\":{\"k\":\"\xed\xa0\x80\"}}", 0, "unable to decode byte 0xed");
	expect_invalid("{\"__metadata__\":{\"k\":\"\xe2\x82\"}}", 0, "not valid JSON");
	expect_invalid("{\"__metadata__\":{\"k\":\"\\ud800\"}}", 0, "invalid Unicode");
	/* Raw control characters in strings. */
	expect_invalid("{\"__metadata__\":{\"k\":\"line\nbreak\"}}", 0, "not valid JSON");
	/* NUL bytes: raw in the header, or escaped in a name. */
	{
		size_t len;
		uint8_t *blob = make_blob(with_nul, sizeof(with_nul) - 1, 0, &len);

		expect_raw_invalid(blob, len, "header contains a NUL byte at header offset 3");
		free(blob);
	}
	{
		size_t len;
		uint8_t *blob = make_blob("{}\0     ", 8, 0, &len);

		expect_raw_invalid(blob, len, "NUL byte at header offset 2");
		free(blob);
	}
	expect_invalid("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
		       "NUL byte in object key not supported");
}

static void test_bad_entry(void **state)
{
	char *h;
	char name[5000];

	(void)state;
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":1}}", 1,
		       "tensor 'w': unexpected key 'extra'");
	expect_invalid("{\"w\":{\"Dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unexpected key 'Dtype'");
	expect_invalid("{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "tensor 'w': missing \"dtype\"");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, "missing \"shape\"");
	expect_invalid("{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "missing \"data_offsets\"");
	expect_invalid("{\"w\":{}}", 0, "missing \"dtype\"");
	expect_invalid("{\"w\":[1]}", 0, "tensor 'w': entry is an array, not an object");
	expect_invalid("{\"w\":\"U8\"}", 0, "entry is a string");
	expect_invalid("{\"w\":null}", 0, "entry is null");
	expect_invalid("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "tensor with an empty name");

	/* Names: 127 bytes is the longest accepted; 128 and 4999 are refused. */
	h = malloc(sizeof(name) + 100);
	assert_non_null(h);
	memset(name, 'n', ST_MAX_NAME - 1);
	name[ST_MAX_NAME - 1] = '\0';
	sprintf(h, "{\"%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", name);
	expect_valid_free(h, 1);
	memset(name, 'n', ST_MAX_NAME);
	name[ST_MAX_NAME] = '\0';
	sprintf(h, "{\"%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", name);
	expect_invalid(h, 1, "bytes; at most 127 are allowed");
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	sprintf(h, "{\"%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", name);
	expect_invalid(h, 1, "nnn...' is 4999 bytes; at most 127 are allowed");
	free(h);

	/* A name with control characters is shown on one line. */
	expect_invalid("{\"a\\nb\\tc\":{\"dtype\":\"X\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
		       "tensor 'a?b?c': unknown dtype 'X'");
}

static void test_too_many(void **state)
{
	size_t cap = 64 * (ST_MAX_TENSORS + 2) + 16;
	char *h = malloc(cap);
	size_t n = 0;

	(void)state;
	assert_non_null(h);
	/* ST_MAX_TENSORS + 1 zero-size tensors. */
	n += (size_t)sprintf(h, "{");
	for (int i = 0; i <= ST_MAX_TENSORS; i++)
		n += (size_t)sprintf(h + n, "%s\"t%d\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}",
				     i ? "," : "", i);
	strcpy(h + n, "}");
	expect_invalid(h, 0, "header lists 1025 tensors; at most 1024 are allowed");
	free(h);

	/* A header of 100000 numbers is refused before jansson builds them. */
	cap = 2 * 100000 + 64;
	h = malloc(cap);
	assert_non_null(h);
	n = (size_t)sprintf(h, "{\"a\":[");
	for (int i = 0; i < 100000; i++) {
		h[n++] = '0';
		h[n++] = ',';
	}
	strcpy(h + n - 1, "]}");
	expect_invalid(h, 0, "header has 100001 JSON values");
	free(h);

	/* Commas inside strings are not counted. */
	cap = 200000 + 64;
	h = malloc(cap);
	assert_non_null(h);
	n = (size_t)sprintf(h, "{\"__metadata__\":{\"k\":\"");
	memset(h + n, ',', 200000);
	n += 200000;
	strcpy(h + n, "\\\",\"}}");
	expect_valid_free(h, 0);
	free(h);
}

/* ---------------------------------------------------------------------- */
/* Truncation and random mutation                                          */
/* ---------------------------------------------------------------------- */

/* A small valid blob with a bit of everything. */
static uint8_t *small_blob(size_t *len)
{
	static const float w[6] = { 1, 2, 3, 4, 5, 6 };
	static const int64_t step = 42;
	static const uint8_t b[3] = { 9, 8, 7 };
	uint64_t s23[2] = { 2, 3 }, s3 = 3, s0 = 0;
	struct st_writer *wr;
	uint8_t *buf;

	assert_int_equal(st_writer_new(&wr), 0);
	assert_int_equal(st_writer_add(wr, "w", ST_F32, 2, s23, w), 0);
	assert_int_equal(st_writer_add(wr, "step", ST_I64, 0, NULL, &step), 0);
	assert_int_equal(st_writer_add(wr, "z", ST_U32, 1, &s0, NULL), 0);
	assert_int_equal(st_writer_add(wr, "b", ST_U8, 1, &s3, b), 0);
	assert_int_equal(st_writer_meta(wr, "cfg", "{\"a\":1}"), 0);
	assert_int_equal(st_writer_finish(wr, &buf, len), 0);
	st_writer_free(wr);
	return buf;
}

/* Parse `len` bytes of `buf` from an exact-size copy: success must be
 * self-consistent, failure must be a clean -EINVAL. Returns rc. */
static int parse_any(const uint8_t *buf, size_t len)
{
	uint8_t *copy = exact_copy(buf, len);
	struct st_file *f = NULL;
	struct tr_err err;
	int rc;

	tr_err_clear(&err);
	rc = st_parse(&f, copy, len, &err);
	if (rc == 0) {
		check_consistent(f, copy, len);
		st_file_free(f);
	} else {
		check_error(rc, f, &err, NULL);
	}
	free(copy);
	return rc;
}

static void test_truncation(void **state)
{
	size_t len;
	uint8_t *blob = small_blob(&len);

	(void)state;
	assert_int_equal(parse_any(blob, len), 0);
	/* Every shorter length breaks the length field, the header or the tiling. */
	for (size_t n = 0; n < len; n++)
		assert_int_equal(parse_any(blob, n), -EINVAL);
	free(blob);
}

static void test_random_mutations(void **state)
{
	static const char interesting[] = "{}[]\",:0123456789- \\eE.FUI";
	size_t len;
	uint8_t *blob = small_blob(&len);
	uint8_t *mut = malloc(len);
	size_t hend = 8 + (size_t)get_le64(blob);
	int ok = 0;

	(void)state;
	assert_non_null(mut);
	for (int iter = 0; iter < 30000; iter++) {
		int nflips = 1 + (int)rand_below(4);
		size_t n = len;

		memcpy(mut, blob, len);
		for (int k = 0; k < nflips; k++) {
			/* Mostly the JSON, where the parsing happens. */
			size_t pos = rand_below(4) ? 8 + rand_below(hend - 8) : rand_below(len);

			switch (rand_below(3)) {
			case 0:
				mut[pos] ^= (uint8_t)(1u << rand_below(8));
				break;
			case 1:
				mut[pos] = (uint8_t)rand_next();
				break;
			default:
				mut[pos] = (uint8_t)interesting[rand_below(sizeof(interesting) - 1)];
				break;
			}
		}
		if (rand_below(8) == 0)
			n = rand_below(len + 1);
		if (parse_any(mut, n) == 0)
			ok++;
	}
	/* Flips in the data section and in padding leave the file valid. */
	assert_true(ok > 0);
	free(mut);
	free(blob);
}

/* ---------------------------------------------------------------------- */
/* Out-of-memory injection                                                 */
/* ---------------------------------------------------------------------- */

static long alloc_count;    /* jansson allocations so far */
static long alloc_fail_at;  /* fail the allocation with this number; 0: never */

static void *failing_malloc(size_t n)
{
	if (++alloc_count == alloc_fail_at)
		return NULL;
	return malloc(n);
}

static void plain_free(void *p)
{
	free(p);
}

static void inject_at(long k)
{
	alloc_count = 0;
	alloc_fail_at = k;
	json_set_alloc_funcs(failing_malloc, plain_free);
}

static void inject_off(void)
{
	json_set_alloc_funcs(malloc, free);
}

/*
 * Fail each of jansson's allocations in st_parse in turn: no crash, no leak,
 * no result. jansson 2.14 reports some failed allocations (string copies in
 * its lexer) as syntax errors, so -EINVAL is accepted as well as -ENOMEM.
 */
static void test_oom_parse(void **state)
{
	size_t len;
	uint8_t *blob = small_blob(&len);
	int nomem = 0;
	long k;

	(void)state;
	for (k = 1; k < 10000; k++) {
		struct st_file *f = (struct st_file *)1;
		struct tr_err err;
		int rc;

		tr_err_clear(&err);
		inject_at(k);
		rc = st_parse(&f, blob, len, &err);
		inject_off();
		if (alloc_count < k) {
			/* Nothing failed: parsing needs fewer than k allocations. */
			assert_int_equal(rc, 0);
			st_file_free(f);
			break;
		}
		if (getenv("ST_SHOW_ERRORS"))
			print_message("  allocation %ld fails: %d %s\n", k, rc, err.msg);
		if (rc != -ENOMEM && rc != -EINVAL)
			fail_msg("allocation %ld failed: expected -ENOMEM, got %d (%s)", k, rc, err.msg);
		assert_int_equal(err.code, rc);
		assert_null(f);
		nomem += rc == -ENOMEM;
	}
	assert_true(k > 10);
	assert_true(nomem > 0);
	free(blob);
}

/* The same for the writer: each step fails cleanly and can be retried. */
static void test_oom_writer(void **state)
{
	static const float v[2] = { 1, 2 };
	uint64_t two = 2;
	long k;

	(void)state;
	for (k = 1; k < 10000; k++) {
		struct st_writer *w = NULL;
		uint8_t *buf = NULL;
		size_t len = 0;
		int rc;

		inject_at(k);
		rc = st_writer_new(&w);
		if (!rc)
			rc = st_writer_add(w, "a", ST_F32, 1, &two, v);
		if (!rc)
			rc = st_writer_meta(w, "k", "v");
		if (!rc)
			rc = st_writer_add(w, "b", ST_F32, 1, &two, v);
		if (!rc)
			rc = st_writer_finish(w, &buf, &len);
		inject_off();
		if (alloc_count < k) {
			assert_int_equal(rc, 0);
			assert_int_equal(parse_any(buf, len), 0);
			free(buf);
			st_writer_free(w);
			break;
		}
		assert_int_equal(rc, -ENOMEM);
		assert_null(buf);
		/* After a failed add or meta the writer is still whole. */
		if (w && st_writer_finish(w, &buf, &len) == 0) {
			assert_int_equal(parse_any(buf, len), 0);
			free(buf);
		}
		st_writer_free(w);
	}
	assert_true(k > 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_padding),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_mlp_checkpoint),
		cmocka_unit_test(test_dtypes),
		cmocka_unit_test(test_writer_rejects),
		cmocka_unit_test(test_writer_utf8),
		cmocka_unit_test(test_writer_too_big),
		cmocka_unit_test(test_writer_max_tensors),
		cmocka_unit_test(test_meta_limits),
		cmocka_unit_test(test_bad_length_field),
		cmocka_unit_test(test_bad_json),
		cmocka_unit_test(test_padding_accepted),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_bad_dtype),
		cmocka_unit_test(test_bad_shape),
		cmocka_unit_test(test_bad_offsets),
		cmocka_unit_test(test_size_mismatch),
		cmocka_unit_test(test_tiling),
		cmocka_unit_test(test_bad_metadata),
		cmocka_unit_test(test_bad_encoding),
		cmocka_unit_test(test_bad_entry),
		cmocka_unit_test(test_too_many),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_random_mutations),
		cmocka_unit_test(test_oom_parse),
		cmocka_unit_test(test_oom_writer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
