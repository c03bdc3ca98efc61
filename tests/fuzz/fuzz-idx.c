/*
 * fuzz-idx.c - libFuzzer harness for idx_set_load (the IDX image/label loader,
 * plain and gzip).
 *
 * Input layout: the first two bytes (little-endian) are the length of the
 * images file; the images bytes follow, then the labels file is the rest
 * (a split point past the end gives an empty labels file). Both go into
 * memfd files and are loaded through /proc/self/fd/N, so the loader reads
 * real files (read(2), its size checks, gzip by magic bytes).
 *
 * Checks beyond "no crash":
 *   - a failure returns a negative code with a non-empty message and leaves
 *     the set zeroed (nothing to free);
 *   - a success is self-consistent: rows and cols in [1, 4096], pixels and
 *     labels allocated for `count` images, every pixel and label readable
 *     (ASan checks the bounds), one channel, and for a plain images
 *     file the pixels equal its payload bytes.
 * Any violation calls __builtin_trap(), which libFuzzer reports as a crash.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "traind/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* A memfd holding `len` bytes, or -1. */
static int memfd_with(const char *name, const uint8_t *buf, size_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	size_t off = 0;

	if (fd < 0)
		return -1;
	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);

		if (n <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	return fd;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void check_set(const struct ds_split *s, const uint8_t *img, size_t img_len)
{
	size_t dim = (size_t)s->rows * s->cols;
	volatile uint8_t sink = 0;

	CHECK(s->rows >= 1 && s->rows <= 4096 && s->cols >= 1 && s->cols <= 4096);
	CHECK(s->count == 0 || (s->pixels != NULL && s->labels != NULL));
	for (size_t i = 0; i < (size_t)s->count * dim; i++)
		sink ^= s->pixels[i];
	CHECK(s->channels == 1);
	/* A plain images file: header (magic, count, rows, cols) then the pixels. */
	if (img_len >= 16 && !(img[0] == 0x1f && img[1] == 0x8b)) {
		CHECK(be32(img) == 0x00000803 && be32(img + 4) == s->count);
		CHECK(be32(img + 8) == s->rows && be32(img + 12) == s->cols);
		CHECK(img_len == 16 + (size_t)s->count * dim);
		CHECK(s->count == 0 || memcmp(s->pixels, img + 16, (size_t)s->count * dim) == 0);
	}
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ds_split set;
	struct tr_err err;
	char ipath[64], lpath[64];
	size_t split;
	int ifd, lfd, rc;

	if (size < 2)
		return 0;
	split = (size_t)data[0] | (size_t)data[1] << 8;
	data += 2;
	size -= 2;
	if (split > size)
		split = size;
	ifd = memfd_with("images", data, split);
	lfd = memfd_with("labels", data + split, size - split);
	if (ifd < 0 || lfd < 0)
		goto out;
	snprintf(ipath, sizeof(ipath), "/proc/self/fd/%d", ifd);
	snprintf(lpath, sizeof(lpath), "/proc/self/fd/%d", lfd);

	memset(&set, 0xa5, sizeof(set));
	tr_err_clear(&err);
	rc = idx_set_load(&set, ipath, lpath, &err);
	if (rc == 0) {
		check_set(&set, data, split);
		ds_split_deinit(&set);
		CHECK(set.pixels == NULL && set.labels == NULL);
	} else {
		CHECK(rc < 0);
		CHECK(err.code == rc && err.msg[0] != '\0');
		CHECK(set.pixels == NULL && set.labels == NULL);
	}
out:
	if (ifd >= 0)
		close(ifd);
	if (lfd >= 0)
		close(lfd);
	return 0;
}
