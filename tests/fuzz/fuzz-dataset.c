/*
 * fuzz-dataset.c - libFuzzer harnesses for the dataset formats, through
 * dataset_load on a real directory (format detection, dataset.json, the
 * parser, the common checks). One source, built once per parser with
 * FUZZ_MODE (tests/fuzz/meson.build):
 *   npy     input = u16 LE length, x_train.npy bytes, then y_train.npy;
 *           x_test.npy and y_test.npy are a fixed valid pair (1 image 2x2)
 *   npz     input = the whole data.npz
 *   dsst    input = train.safetensors; test.safetensors fixed valid
 *   csv     input = first byte picks a dataset.json (none, float32 pixels,
 *           2x3x2 NHWC, 3 class names), the rest is train.csv; test.csv
 *           fixed valid (one 2x2 image; the 2x3x2 variant needs 12 pixels)
 *   dsjson  input = dataset.json; the data is a fixed valid npy dataset of
 *           3-channel 2x2 images (NHWC) labelled 0..2
 * Files are written into one scratch directory (made at the first input
 * under $TMPDIR, removed at exit) and loaded from there.
 *
 * Checks beyond "no crash": a failure returns a negative code with a
 * message and no dataset; a success is self-consistent: a known format,
 * counts >= 1, shape within the caps, both splits the same shape, labels
 * below classes (<= 256), every pixel readable (ASan) and, for float32,
 * finite; class names (if any) non-empty; and dataset_probe agrees with the
 * loaded shape.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "traind/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

#define M_NPY 1
#define M_NPZ 2
#define M_ST 3
#define M_CSV 4
#define M_JSON 5

static char g_dir[256];

static void cleanup(void)
{
	char cmd[300];

	if (g_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "fuzz-dataset: cannot remove %s\n", g_dir);
	}
}

static void put(const char *name, const void *buf, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", g_dir, name);
	f = fopen(path, "wb");
	CHECK(f);
	CHECK(len == 0 || fwrite(buf, 1, len, f) == len);
	CHECK(fclose(f) == 0);
}

static __attribute__((unused)) void drop(const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", g_dir, name);
	unlink(path);
}

/* A .npy file as numpy.save writes it (version 1.0, header to 64 bytes). */
static __attribute__((unused)) void put_npy(const char *name, const char *descr, const char *shape, const void *d, size_t n)
{
	char head[128];
	uint8_t buf[512];
	size_t hl;

	hl = (size_t)snprintf(head, sizeof(head), "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
			      descr, shape);
	while ((10 + hl + 1) % 64)
		head[hl++] = ' ';
	head[hl++] = '\n';
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	buf[8] = (uint8_t)hl;
	buf[9] = (uint8_t)(hl >> 8);
	memcpy(buf + 10, head, hl);
	memcpy(buf + 10 + hl, d, n);
	put(name, buf, 10 + hl + n);
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");

	if (g_dir[0])
		return;
	snprintf(g_dir, sizeof(g_dir), "%s/fuzz-dataset-XXXXXX", tmp ? tmp : "/tmp");
	CHECK(mkdtemp(g_dir));
	atexit(cleanup);
}

/* Token data (doc/sequences.md): every id below the vocabulary, every
 * per-position target below the classes. */
static void check_tokens(const struct dataset *ds, const struct ds_split *s)
{
	size_t n = ds->text ? s->ntokens : (size_t)s->count * ds->seq_len;

	CHECK(ds->vocab >= 1 && ds->vocab <= DATASET_MAX_VOCAB && s->tokens);
	CHECK(ds->text ? s->count == 0 : (s->count >= 1 && s->rows == ds->seq_len));
	for (size_t i = 0; i < n; i++)
		CHECK(s->tokens[i] < ds->vocab);
	if (ds->target == DS_TARGET_TOKENS && !ds->text)
		for (size_t i = 0; i < n; i++)
			CHECK(s->token_targets && s->token_targets[i] < ds->classes);
	if (ds->target == DS_TARGET_CLASS)
		for (uint32_t i = 0; i < s->count; i++)
			CHECK(s->labels && s->labels[i] < ds->classes);
}

static void check_split(const struct dataset *ds, const struct ds_split *s)
{
	size_t dim = (size_t)s->channels * s->rows * s->cols;
	volatile uint8_t sink = 0;

	if (ds->tokens) {
		check_tokens(ds, s);
		return;
	}

	CHECK(s->count >= 1 && s->count <= DATASET_MAX_COUNT);
	CHECK(s->channels == ds->channels && s->rows == ds->height && s->cols == ds->width);
	CHECK(s->channels >= 1 && s->channels <= DATASET_MAX_CHANNELS);
	CHECK(s->rows >= 1 && s->rows <= DATASET_MAX_SIDE && s->cols >= 1 && s->cols <= DATASET_MAX_SIDE);
	CHECK(dim <= DATASET_MAX_IMAGE);
	if (ds->target == DS_TARGET_CLASS) {
		CHECK(s->labels && !s->targets);
		for (uint32_t i = 0; i < s->count; i++)
			CHECK(s->labels[i] < ds->classes);
	} else {
		/* float targets: finite, 0/1 when the dataset says so */
		CHECK(!s->labels && s->targets && ds->target_width >= 1 && ds->target_width <= DATASET_MAX_TARGETS);
		for (size_t i = 0; i < (size_t)s->count * ds->target_width; i++)
			CHECK(isfinite(s->targets[i]) &&
			      (!ds->targets_binary || s->targets[i] == 0.0f || s->targets[i] == 1.0f));
	}
	if (ds->dtype == DS_F32) {
		for (size_t i = 0; i < (size_t)s->count * dim; i++) {
			float v;

			memcpy(&v, s->pixels + 4 * i, 4);
			CHECK(isfinite(v));
		}
	} else {
		for (size_t i = 0; i < (size_t)s->count * dim; i++)
			sink ^= s->pixels[i];
	}
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t u8img[4] __attribute__((unused)) = { 0, 64, 128, 255 };
	static const uint8_t one_label[1] __attribute__((unused)) = { 0 };
	struct dataset *ds = (struct dataset *)1;
	struct dataset_shape sh;
	struct tr_err err;
	int rc;

	setup();
#if FUZZ_MODE == M_NPY
	{
		size_t split;

		if (size < 2)
			return 0;
		split = (size_t)data[0] | (size_t)data[1] << 8;
		data += 2;
		size -= 2;
		if (split > size)
			split = size;
		put("x_train.npy", data, split);
		put("y_train.npy", data + split, size - split);
		put_npy("x_test.npy", "|u1", "(1, 2, 2)", u8img, 4);
		put_npy("y_test.npy", "|u1", "(1,)", one_label, 1);
	}
#elif FUZZ_MODE == M_NPZ
	put("data.npz", data, size);
#elif FUZZ_MODE == M_ST
	{
		static const char hdr[] =
			"{\"images\":{\"dtype\":\"U8\",\"shape\":[1,2,2],\"data_offsets\":[0,4]},"
			"\"labels\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[4,5]}}";
		uint8_t buf[256];
		size_t hl = sizeof(hdr) - 1, pad = (8 - hl % 8) % 8;

		memset(buf, ' ', sizeof(buf));
		for (int i = 0; i < 8; i++)
			buf[i] = (uint8_t)((hl + pad) >> (8 * i));
		memcpy(buf + 8, hdr, hl);
		memcpy(buf + 8 + hl + pad, u8img, 4);
		buf[8 + hl + pad + 4] = 0;
		put("test.safetensors", buf, 8 + hl + pad + 5);
		put("train.safetensors", data, size);
	}
#elif FUZZ_MODE == M_CSV
	{
		static const char *const metas[] = {
			NULL,
			"{\"dtype\": \"float32\"}",
			"{\"height\": 2, \"width\": 3, \"channels\": 2, \"layout\": \"NHWC\"}",
			"{\"classes\": [\"a\", \"b\", \"c\"]}",
		};
		const char *meta;

		if (size < 1)
			return 0;
		meta = metas[data[0] % 4];
		if (meta)
			put("dataset.json", meta, strlen(meta));
		else
			drop("dataset.json");
		if (data[0] % 4 == 2)
			put("test.csv", "1,1,2,3,4,5,6,7,8,9,10,11,12\n", 29);
		else
			put("test.csv", "label,a,b,c,d\n0,1,2,3,4\n", 24);
		put("train.csv", data + 1, size - 1);
	}
#elif FUZZ_MODE == M_JSON
	{
		static const uint8_t rgb[2 * 12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
						     13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24 };
		static const uint8_t labels[2] = { 0, 2 };

		put_npy("x_train.npy", "|u1", "(2, 2, 2, 3)", rgb, 24);
		put_npy("y_train.npy", "|u1", "(2,)", labels, 2);
		put_npy("x_test.npy", "|u1", "(1, 2, 2, 3)", rgb, 12);
		put_npy("y_test.npy", "|u1", "(1,)", labels + 1, 1);
		put("dataset.json", data, size);
	}
#else
#error "FUZZ_MODE must be one of the modes above"
#endif
	tr_err_clear(&err);
	rc = dataset_load(&ds, g_dir, &err);
	if (rc < 0) {
		CHECK(ds == NULL && err.code == rc && err.msg[0] != '\0');
		return 0;
	}
	CHECK(rc == 0 && ds);
	CHECK(!strcmp(ds->format, "npy") || !strcmp(ds->format, "npz") ||
	      !strcmp(ds->format, "safetensors") || !strcmp(ds->format, "csv") ||
	      !strcmp(ds->format, "text"));
	CHECK(ds->classes >= 1 &&
	      ds->classes <= (ds->target == DS_TARGET_TOKENS ? DATASET_MAX_VOCAB : DATASET_MAX_CLASSES));
	check_split(ds, &ds->train);
	check_split(ds, &ds->test);
	if (ds->class_names)
		for (uint32_t c = 0; c < ds->classes; c++)
			CHECK(ds->class_names[c][0] != '\0');
	if (ds->normalize)
		for (uint32_t c = 0; c < ds->channels; c++)
			CHECK(ds->std[c] > 0.0f && isfinite(ds->mean[c]));
	CHECK(dataset_probe(&sh, g_dir, &err) == 0);
	CHECK(sh.train_count == ds->train.count && sh.test_count == ds->test.count);
	CHECK(sh.channels == ds->channels && sh.height == ds->height && sh.width == ds->width);
	CHECK(sh.classes == ds->classes);
	dataset_free(ds);
	return 0;
}
