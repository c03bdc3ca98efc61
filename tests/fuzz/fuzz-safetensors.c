/*
 * fuzz-safetensors.c - libFuzzer harness for st_parse.
 *
 * Each input is handed to st_parse as a whole file. The harness checks more
 * than "no crash":
 *   - a failure must be -EINVAL (or -ENOMEM) with a non-empty message;
 *   - a success must be self-consistent: every tensor's bytes lie inside the
 *     input (they are all read, so ASan checks the pointers), nbytes matches
 *     the shape, and the sizes add up to the data section;
 *   - a success must survive a round trip: writing the parsed tensors and
 *     metadata with st_writer and parsing the result gives the same names,
 *     dtypes, shapes, bytes and metadata. So whatever the parser accepts,
 *     the writer can reproduce.
 * Any violation calls __builtin_trap(), which libFuzzer reports as a crash.
 *
 * Build and run (not part of the meson build):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
 *     tests/fuzz/fuzz-safetensors.c engine/core/safetensors.c \
 *     engine/core/error.c -ljansson -o /tmp/fuzz-st
 *   /tmp/fuzz-st -max_total_time=180 /tmp/st-corpus tests/fuzz/corpus/safetensors
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "traind/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void check_consistent(const struct st_file *f, const uint8_t *buf, size_t len)
{
	uint64_t hlen = le64(buf);
	uint64_t total = 0;
	volatile uint8_t sink = 0;

	CHECK(f->header == buf + 8 && f->header_len == hlen);
	CHECK(f->ntensors <= ST_MAX_TENSORS);
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *t = &f->tensors[i];
		uint64_t count = 1;
		size_t namelen = strnlen(t->name, ST_MAX_NAME);

		CHECK(namelen > 0 && namelen < ST_MAX_NAME);
		CHECK(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
		for (int d = 0; d < t->ndim; d++)
			count *= t->shape[d];
		CHECK(t->nbytes == count * st_dtype_size(t->dtype));
		CHECK(t->data >= buf + 8 + hlen && t->nbytes <= (uint64_t)(buf + len - t->data));
		for (uint64_t k = 0; k < t->nbytes; k++)
			sink ^= t->data[k];
		total += t->nbytes;
		CHECK(st_find(f, t->name) != NULL);
	}
	CHECK(total == len - 8 - hlen);
	for (size_t i = 0; i < f->nmeta; i++)
		CHECK(st_meta_get(f, f->meta[i].key) == f->meta[i].value);
	(void)sink;
}

/* Write f back out, parse that, and compare. */
static void check_round_trip(const struct st_file *f)
{
	struct st_writer *w = NULL;
	struct st_file *g = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc;

	rc = st_writer_new(&w);
	for (size_t i = 0; i < f->ntensors && rc == 0; i++) {
		const struct st_tensor *t = &f->tensors[i];

		rc = st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
	}
	for (size_t i = 0; i < f->nmeta && rc == 0; i++)
		rc = st_writer_meta(w, f->meta[i].key, f->meta[i].value);
	if (rc == 0)
		rc = st_writer_finish(w, &buf, &len);
	if (rc == -ENOMEM)
		goto out;
	CHECK(rc == 0);
	CHECK(len % 8 == 0 || (8 + le64(buf)) % 8 == 0);

	rc = st_parse(&g, buf, len, NULL);
	if (rc == -ENOMEM)
		goto out;
	CHECK(rc == 0);
	check_consistent(g, buf, len);
	CHECK(g->ntensors == f->ntensors && g->nmeta == f->nmeta);
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *a = &f->tensors[i], *b = &g->tensors[i];

		CHECK(strcmp(a->name, b->name) == 0);
		CHECK(a->dtype == b->dtype && a->ndim == b->ndim && a->nbytes == b->nbytes);
		CHECK(memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof(a->shape[0])) == 0);
		CHECK(a->nbytes == 0 || memcmp(a->data, b->data, (size_t)a->nbytes) == 0);
	}
	for (size_t i = 0; i < f->nmeta; i++) {
		CHECK(strcmp(f->meta[i].key, g->meta[i].key) == 0);
		CHECK(strcmp(f->meta[i].value, g->meta[i].value) == 0);
	}
out:
	st_file_free(g);
	free(buf);
	st_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_file *f = NULL;
	struct tr_err err;
	int rc;

	tr_err_clear(&err);
	rc = st_parse(&f, data, size, &err);
	if (rc == 0) {
		CHECK(f != NULL);
		check_consistent(f, data, size);
		check_round_trip(f);
		st_file_free(f);
	} else {
		CHECK(f == NULL);
		CHECK(rc == -EINVAL || rc == -ENOMEM);
		CHECK(err.code == rc && err.msg[0] != '\0');
	}
	return 0;
}
