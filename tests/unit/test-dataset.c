/*
 * test-dataset.c - the IDX loader (engine/data/dataset.c).
 *
 * Every fixture is generated here, into a fresh directory made with mkdtemp
 * under $TRAIND_TEST_TMP (or /tmp) and removed at the end. A "fixture" is the
 * four standard files of a tiny dataset (7 training and 3 test images of
 * 28x28) held in memory; each test writes it out, plain or gzip (zlib's
 * gzopen "wb"), possibly after breaking one file, and loads it.
 *
 * The corruption cases are a table: each names the file it breaks, the error
 * code expected and words the message must contain (besides the file name).
 * Cases about the IDX format itself run twice, once on a plain file and once
 * on the same bytes gzip-compressed ("<name>.gz"); cases about the gzip layer
 * break the compressed bytes on disk.
 *
 * The real MNIST (and Fashion-MNIST) test runs when $TRAIND_DATA_DIR/mnist
 * (or .../fashion-mnist) exists and is skipped otherwise (scripts/fetch-data).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* nftw, mkdtemp */
#endif

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "traind/dataset.h"
#include "traind/kernels.h"

enum { TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS, NFILES };

static const char *const file_names[NFILES] = {
	"train-images-idx3-ubyte",
	"train-labels-idx1-ubyte",
	"t10k-images-idx3-ubyte",
	"t10k-labels-idx1-ubyte",
};

/* A growable byte buffer. */
struct blob {
	uint8_t *data;
	size_t len;
};

/* The four files of a dataset, in memory, and how to write them. */
struct fixture {
	struct blob file[NFILES];   /* file contents (uncompressed) */
	bool gz[NFILES];            /* write as name.gz, gzip-compressed */
	bool absent[NFILES];        /* do not write this file at all */
};

static char g_root[PATH_MAX];   /* temp directory for this run */

/* ---- helpers --------------------------------------------------------- */

static void blob_resize(struct blob *b, size_t len)
{
	uint8_t *p = realloc(b->data, len ? len : 1);

	assert_non_null(p);
	if (len > b->len)
		memset(p + b->len, 0, len - b->len);
	b->data = p;
	b->len = len;
}

static void blob_free(struct blob *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Pseudo-random but reproducible pixel value. */
static uint8_t pixel(uint32_t i, uint32_t seed)
{
	uint32_t x = (i + 1) * 2654435761u ^ seed * 40503u;

	return (uint8_t)(x >> 13);
}

static uint8_t label(uint32_t i, uint32_t seed)
{
	return (uint8_t)((i * 3 + seed) % 10);
}

static struct blob make_images(uint32_t count, uint32_t rows, uint32_t cols,
			       uint32_t seed)
{
	struct blob b = { NULL, 0 };
	size_t n = (size_t)count * rows * cols;

	blob_resize(&b, 16 + n);
	put_be32(b.data, 0x00000803);
	put_be32(b.data + 4, count);
	put_be32(b.data + 8, rows);
	put_be32(b.data + 12, cols);
	for (size_t i = 0; i < n; i++)
		b.data[16 + i] = pixel((uint32_t)i, seed);
	return b;
}

static struct blob make_labels(uint32_t count, uint32_t seed)
{
	struct blob b = { NULL, 0 };

	blob_resize(&b, 8 + count);
	put_be32(b.data, 0x00000801);
	put_be32(b.data + 4, count);
	for (uint32_t i = 0; i < count; i++)
		b.data[8 + i] = label(i, seed);
	return b;
}

/* The valid dataset every test starts from. */
static void fixture_init(struct fixture *fx)
{
	memset(fx, 0, sizeof(*fx));
	fx->file[TRAIN_IMAGES] = make_images(7, 28, 28, 1);
	fx->file[TRAIN_LABELS] = make_labels(7, 1);
	fx->file[TEST_IMAGES] = make_images(3, 28, 28, 2);
	fx->file[TEST_LABELS] = make_labels(3, 2);
}

static void fixture_deinit(struct fixture *fx)
{
	for (int i = 0; i < NFILES; i++)
		blob_free(&fx->file[i]);
}

static void write_plain(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	if (len)
		assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *path, const void *data, size_t len)
{
	gzFile gz = gzopen(path, "wb");

	assert_non_null(gz);
	if (len)
		assert_int_equal(gzwrite(gz, data, (unsigned)len), (int)len);
	assert_int_equal(gzclose(gz), Z_OK);
}

static struct blob read_whole(const char *path)
{
	struct blob b = { NULL, 0 };
	FILE *f = fopen(path, "rb");
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	blob_resize(&b, (size_t)n);
	if (n)
		assert_int_equal(fread(b.data, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return b;
}

/* snprintf into a path buffer, failing the test if it does not fit. */
static void __attribute__((format(printf, 3, 4)))
fmt_path(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < size);
}

/* Path of file `i` in `dir`, as fixture_write names it. */
static void file_path(char *out, size_t size, const char *dir,
		      const struct fixture *fx, int i)
{
	fmt_path(out, size, "%s/%s%s", dir, file_names[i],
		 fx->gz[i] ? ".gz" : "");
}

static void fixture_write(const struct fixture *fx, const char *dir)
{
	char path[PATH_MAX];

	for (int i = 0; i < NFILES; i++) {
		if (fx->absent[i])
			continue;
		file_path(path, sizeof(path), dir, fx, i);
		if (fx->gz[i])
			write_gz(path, fx->file[i].data, fx->file[i].len);
		else
			write_plain(path, fx->file[i].data, fx->file[i].len);
	}
}

/* Make (and return in `out`) a fresh directory g_root/name. */
static void make_dir(char *out, size_t size, const char *name)
{
	fmt_path(out, size, "%s/%s", g_root, name);
	assert_int_equal(mkdir(out, 0700), 0);
}

/* Check that `set` holds exactly the images and labels of the two blobs. */
static void assert_set_equals(const struct ds_split *set,
			      const struct blob *images,
			      const struct blob *labels)
{
	uint32_t count = (uint32_t)(labels->len - 8);

	assert_int_equal(set->count, count);
	assert_int_equal(set->rows, 28);
	assert_int_equal(set->cols, 28);
	assert_int_equal(images->len, 16 + (size_t)count * 28 * 28);
	assert_memory_equal(set->pixels, images->data + 16, images->len - 16);
	assert_memory_equal(set->labels, labels->data + 8, count);
}

static void assert_dataset_equals(const struct dataset *ds,
				  const struct fixture *fx)
{
	assert_set_equals(&ds->train, &fx->file[TRAIN_IMAGES],
			  &fx->file[TRAIN_LABELS]);
	assert_set_equals(&ds->test, &fx->file[TEST_IMAGES],
			  &fx->file[TEST_LABELS]);
}

/* `words` is "a|b|c": true if msg contains any of them. */
static bool contains_any(const char *msg, const char *words)
{
	char buf[256];
	char *save = NULL;

	snprintf(buf, sizeof(buf), "%s", words);
	for (char *w = strtok_r(buf, "|", &save); w;
	     w = strtok_r(NULL, "|", &save))
		if (strstr(msg, w))
			return true;
	return false;
}

/* ---- valid data ------------------------------------------------------ */

static void test_load_plain(void **state)
{
	struct fixture fx;
	struct dataset *ds = NULL;
	struct tr_err err;
	char dir[PATH_MAX];

	(void)state;
	fixture_init(&fx);
	make_dir(dir, sizeof(dir), "valid-plain");
	fixture_write(&fx, dir);

	tr_err_clear(&err);
	assert_int_equal(dataset_load(&ds, dir, &err), 0);
	assert_non_null(ds);
	assert_int_equal(err.code, 0);
	assert_dataset_equals(ds, &fx);
	/* A spot check independent of the generator's blobs. */
	assert_int_equal(ds->train.pixels[5], pixel(5, 1));
	assert_int_equal(ds->train.labels[6], label(6, 1));
	assert_int_equal(ds->test.labels[2], label(2, 2));
	assert_int_equal(dataset_bytes(ds), (7 + 3) * (28 * 28 + 1));

	dataset_free(ds);
	fixture_deinit(&fx);
}

/* dataset_probe gives load's shape and classes without the pixels; the
 * loaded dataset says its format and takes its classes from the labels. */
static void test_probe_and_fields(void **state)
{
	struct fixture fx;
	struct dataset *ds = NULL;
	struct dataset_shape sh;
	struct tr_err err;
	char dir[PATH_MAX];
	uint32_t top = 0;

	(void)state;
	fixture_init(&fx);
	make_dir(dir, sizeof(dir), "probe");
	fixture_write(&fx, dir);
	assert_int_equal(dataset_load(&ds, dir, &err), 0);
	assert_int_equal(dataset_probe(&sh, dir, &err), 0);
	assert_string_equal(ds->format, "idx");
	assert_string_equal(sh.format, "idx");
	for (uint32_t i = 0; i < ds->train.count; i++)
		top = ds->train.labels[i] > top ? ds->train.labels[i] : top;
	for (uint32_t i = 0; i < ds->test.count; i++)
		top = ds->test.labels[i] > top ? ds->test.labels[i] : top;
	assert_int_equal(ds->classes, top + 1);
	assert_int_equal(sh.classes, ds->classes);
	assert_int_equal(sh.train_count, 7);
	assert_int_equal(sh.test_count, 3);
	assert_int_equal(sh.channels, 1);
	assert_int_equal(sh.height, 28);
	assert_int_equal(sh.width, 28);
	assert_true(dataset_plain_u8(ds));
	assert_null(ds->class_names);
	dataset_free(ds);
	fixture_deinit(&fx);
}

/* dataset.json's names become the classes (more than the labels need), and
 * a label past them is refused naming the file. */
static void test_idx_with_names(void **state)
{
	static const char json[] =
		"{\"classes\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\"]}";
	struct fixture fx;
	struct dataset *ds = NULL;
	struct tr_err err;
	char dir[PATH_MAX], path[PATH_MAX + 32], buf[16];

	(void)state;
	fixture_init(&fx);
	make_dir(dir, sizeof(dir), "names");
	fixture_write(&fx, dir);
	snprintf(path, sizeof(path), "%s/dataset.json", dir);
	write_plain(path, json, strlen(json));
	assert_int_equal(dataset_load(&ds, dir, &err), 0);
	assert_int_equal(ds->classes, 12);
	assert_string_equal(dataset_class_name(ds, 11, buf), "l");
	dataset_free(ds);
	write_plain(path, "{\"classes\": [\"a\",\"b\"]}", strlen("{\"classes\": [\"a\",\"b\"]}"));
	assert_int_equal(dataset_load(&ds, dir, &err), -EINVAL);
	assert_null(ds);
	assert_non_null(strstr(err.msg, "labels-idx1-ubyte: label "));
	assert_non_null(strstr(err.msg, "must be < 2"));
	fixture_deinit(&fx);
}

/* The general gather: NHWC uint8 to NCHW, (x/255 - mean) / std in float32,
 * and float32 pixels kept as they are. */
static void test_gather_images(void **state)
{
	uint8_t px[2 * 2 * 3 * 3];       /* 2 images, 2x3 pixels, 3 channels, NHWC */
	float fx[2 * 18], x[2 * 18];
	const float mean[3] = { 0.5f, 0.25f, 0.125f }, std[3] = { 0.2f, 0.3f, 0.7f };
	const uint32_t idx[2] = { 1, 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(px); i++)
		px[i] = (uint8_t)(i * 37 + 11);
	k_gather_images(x, px, false, true, 3, 6, idx, 2, mean, std);
	for (size_t n = 0; n < 2; n++)
		for (size_t c = 0; c < 3; c++)
			for (size_t p = 0; p < 6; p++) {
				float v = (float)px[idx[n] * 18 + p * 3 + c] / 255.0f;

				assert_true(x[n * 18 + c * 6 + p] == (v - mean[c]) / std[c]);
			}
	for (size_t i = 0; i < 36; i++)
		fx[i] = (float)i * 0.5f - 3.0f;
	k_gather_images(x, fx, true, false, 3, 6, idx, 2, NULL, NULL);
	assert_memory_equal(x, fx + 18, 18 * sizeof(float));
	assert_memory_equal(x + 18, fx, 18 * sizeof(float));
}

static void test_load_gzip_same_as_plain(void **state)
{
	struct fixture fx;
	struct dataset *plain = NULL, *gz = NULL, *mixed = NULL;
	struct tr_err err;
	char dir[PATH_MAX];

	(void)state;
	fixture_init(&fx);
	make_dir(dir, sizeof(dir), "same-plain");
	fixture_write(&fx, dir);
	assert_int_equal(dataset_load(&plain, dir, &err), 0);

	for (int i = 0; i < NFILES; i++)
		fx.gz[i] = true;
	make_dir(dir, sizeof(dir), "same-gz");
	fixture_write(&fx, dir);
	assert_int_equal(dataset_load(&gz, dir, &err), 0);

	fx.gz[TRAIN_IMAGES] = fx.gz[TEST_LABELS] = false;
	make_dir(dir, sizeof(dir), "same-mixed");
	fixture_write(&fx, dir);
	assert_int_equal(dataset_load(&mixed, dir, &err), 0);

	assert_dataset_equals(gz, &fx);
	assert_dataset_equals(mixed, &fx);
	assert_memory_equal(plain->train.pixels, gz->train.pixels, 7 * 784);
	assert_memory_equal(plain->test.pixels, gz->test.pixels, 3 * 784);
	assert_memory_equal(plain->train.labels, gz->train.labels, 7);
	assert_memory_equal(plain->test.labels, gz->test.labels, 3);
	assert_int_equal(dataset_bytes(plain), dataset_bytes(gz));

	dataset_free(plain);
	dataset_free(gz);
	dataset_free(mixed);
	fixture_deinit(&fx);
}

/* The plain name wins over name.gz; a broken .gz beside it is not read. */
static void test_plain_preferred(void **state)
{
	struct fixture fx;
	struct dataset *ds = NULL;
	struct tr_err err;
	char dir[PATH_MAX], path[PATH_MAX];

	(void)state;
	fixture_init(&fx);
	make_dir(dir, sizeof(dir), "plain-preferred");
	fixture_write(&fx, dir);
	fmt_path(path, sizeof(path), "%s/%s.gz", dir, file_names[TRAIN_IMAGES]);
	write_plain(path, "garbage", 7);

	assert_int_equal(dataset_load(&ds, dir, &err), 0);
	assert_dataset_equals(ds, &fx);
	dataset_free(ds);
	fixture_deinit(&fx);
}

/* Gzip is recognised by its magic even without the .gz suffix. */
static void test_gzip_by_magic(void **state)
{
	struct fixture fx;
	struct dataset *ds = NULL;
	struct tr_err err;
	char dir[PATH_MAX], path[PATH_MAX];

	(void)state;
	fixture_init(&fx);
	make_dir(dir, sizeof(dir), "gzip-by-magic");
	fixture_write(&fx, dir);
	for (int i = 0; i < NFILES; i++) {
		fmt_path(path, sizeof(path), "%s/%s", dir, file_names[i]);
		write_gz(path, fx.file[i].data, fx.file[i].len);
	}
	assert_int_equal(dataset_load(&ds, dir, &err), 0);
	assert_dataset_equals(ds, &fx);
	dataset_free(ds);
	fixture_deinit(&fx);
}

/* idx_set_load with explicit paths; NULL err; deinit and free of NULL. */
static void test_idx_set_load_direct(void **state)
{
	struct fixture fx;
	struct ds_split set;
	struct tr_err err;
	char dir[PATH_MAX], img[PATH_MAX], lab[PATH_MAX];

	(void)state;
	fixture_init(&fx);
	make_dir(dir, sizeof(dir), "direct");
	fixture_write(&fx, dir);
	file_path(img, sizeof(img), dir, &fx, TEST_IMAGES);
	file_path(lab, sizeof(lab), dir, &fx, TEST_LABELS);

	assert_int_equal(idx_set_load(&set, img, lab, &err), 0);
	assert_set_equals(&set, &fx.file[TEST_IMAGES], &fx.file[TEST_LABELS]);
	ds_split_deinit(&set);
	assert_null(set.pixels);
	assert_null(set.labels);
	assert_int_equal(set.count, 0);

	/* Wrong pairing: test images with train labels (7 vs 3). */
	file_path(lab, sizeof(lab), dir, &fx, TRAIN_LABELS);
	assert_int_equal(idx_set_load(&set, img, lab, NULL), -EINVAL);
	assert_null(set.pixels);
	assert_null(set.labels);
	/* Images and labels swapped. */
	assert_int_equal(idx_set_load(&set, lab, img, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "magic"));
	assert_non_null(strstr(err.msg, lab));

	ds_split_deinit(NULL);
	dataset_free(NULL);
	fixture_deinit(&fx);
}

/* Smallest legal file (1 image of 1x1) and largest legal side (4096). */
static void test_size_limits(void **state)
{
	struct blob images, labels;
	struct ds_split set;
	struct tr_err err;
	char dir[PATH_MAX], img[PATH_MAX], lab[PATH_MAX];

	(void)state;
	make_dir(dir, sizeof(dir), "limits");
	fmt_path(img, sizeof(img), "%s/tiny-images", dir);
	fmt_path(lab, sizeof(lab), "%s/tiny-labels", dir);
	images = make_images(1, 1, 1, 3);
	labels = make_labels(1, 9);
	write_plain(img, images.data, images.len);
	write_plain(lab, labels.data, labels.len);
	assert_int_equal(idx_set_load(&set, img, lab, &err), 0);
	assert_int_equal(set.count, 1);
	assert_int_equal(set.rows, 1);
	assert_int_equal(set.cols, 1);
	assert_int_equal(set.pixels[0], images.data[16]);
	assert_int_equal(set.labels[0], 9);
	ds_split_deinit(&set);
	blob_free(&images);
	blob_free(&labels);
}

/*
 * A gzip file bigger than the loader's first buffer (2 images of 4096x4096,
 * 32 MiB), so the payload buffer has to grow while inflating.
 */
static void test_large_gzip(void **state)
{
	const uint32_t side = 4096, count = 2;
	struct blob images = { NULL, 0 }, labels;
	struct ds_split set;
	struct tr_err err;
	char dir[PATH_MAX], img[PATH_MAX], lab[PATH_MAX];
	size_t n = (size_t)count * side * side;
	gzFile gz;

	(void)state;
	make_dir(dir, sizeof(dir), "large-gzip");
	fmt_path(img, sizeof(img), "%s/big-images.gz", dir);
	fmt_path(lab, sizeof(lab), "%s/big-labels.gz", dir);
	blob_resize(&images, 16 + n);
	put_be32(images.data, 0x00000803);
	put_be32(images.data + 4, count);
	put_be32(images.data + 8, side);
	put_be32(images.data + 12, side);
	for (size_t i = 0; i < n; i++)
		images.data[16 + i] = (uint8_t)((i / side) ^ (i % side) ^ (i >> 24));
	labels = make_labels(count, 4);

	gz = gzopen(img, "wb1");        /* fast level: the test stays quick */
	assert_non_null(gz);
	assert_int_equal(gzwrite(gz, images.data, (unsigned)images.len),
			 (int)images.len);
	assert_int_equal(gzclose(gz), Z_OK);
	write_gz(lab, labels.data, labels.len);

	assert_int_equal(idx_set_load(&set, img, lab, &err), 0);
	assert_int_equal(set.count, count);
	assert_int_equal(set.rows, side);
	assert_int_equal(set.cols, side);
	assert_memory_equal(set.pixels, images.data + 16, n);
	assert_memory_equal(set.labels, labels.data + 8, count);
	ds_split_deinit(&set);
	blob_free(&images);
	blob_free(&labels);
}

static void test_not_regular_file(void **state)
{
	struct fixture fx;
	struct dataset *ds = NULL;
	struct tr_err err;
	char dir[PATH_MAX], path[PATH_MAX];

	(void)state;
	fixture_init(&fx);
	fx.absent[TRAIN_LABELS] = true;
	make_dir(dir, sizeof(dir), "not-regular");
	fixture_write(&fx, dir);
	fmt_path(path, sizeof(path), "%s/%s", dir, file_names[TRAIN_LABELS]);
	assert_int_equal(mkdir(path, 0700), 0);

	assert_int_equal(dataset_load(&ds, dir, &err), -EINVAL);
	assert_null(ds);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, "not a regular file"));
	fixture_deinit(&fx);
}

/* ---- corruption table ------------------------------------------------ */

/* Changes to the uncompressed fixture, before it is written. */
static void drop(struct fixture *fx, int i) { fx->absent[i] = true; }
static void cut(struct fixture *fx, int i, size_t len) { blob_resize(&fx->file[i], len); }
static void set32(struct fixture *fx, int i, size_t off, uint32_t v) { put_be32(fx->file[i].data + off, v); }

static void m_missing_train_images(struct fixture *fx) { drop(fx, TRAIN_IMAGES); }
static void m_missing_test_labels(struct fixture *fx) { drop(fx, TEST_LABELS); }
static void m_empty_images(struct fixture *fx) { cut(fx, TRAIN_IMAGES, 0); }
static void m_empty_labels(struct fixture *fx) { cut(fx, TEST_LABELS, 0); }
static void m_short_magic(struct fixture *fx) { cut(fx, TRAIN_IMAGES, 3); }
static void m_header_images(struct fixture *fx) { cut(fx, TRAIN_IMAGES, 10); }
static void m_header_labels(struct fixture *fx) { cut(fx, TRAIN_LABELS, 5); }
static void m_payload_images(struct fixture *fx) { cut(fx, TRAIN_IMAGES, fx->file[TRAIN_IMAGES].len - 100); }
static void m_payload_images_1(struct fixture *fx) { cut(fx, TEST_IMAGES, fx->file[TEST_IMAGES].len - 1); }
static void m_header_only_images(struct fixture *fx) { cut(fx, TEST_IMAGES, 16); }
static void m_payload_labels(struct fixture *fx) { cut(fx, TRAIN_LABELS, fx->file[TRAIN_LABELS].len - 1); }
static void m_trailing_images(struct fixture *fx) { cut(fx, TRAIN_IMAGES, fx->file[TRAIN_IMAGES].len + 3); }
static void m_trailing_labels(struct fixture *fx) { cut(fx, TEST_LABELS, fx->file[TEST_LABELS].len + 1); }
static void m_magic_images(struct fixture *fx) { set32(fx, TRAIN_IMAGES, 0, 0x00000804); }
static void m_magic_labels(struct fixture *fx) { set32(fx, TRAIN_LABELS, 0, 0x00000901); }
static void m_magic_le(struct fixture *fx) { set32(fx, TEST_IMAGES, 0, 0x03080000); }
static void m_magic_label_in_images(struct fixture *fx) { set32(fx, TRAIN_IMAGES, 0, 0x00000801); }
static void m_magic_image_in_labels(struct fixture *fx) { set32(fx, TEST_LABELS, 0, 0x00000803); }
static void m_rows_zero(struct fixture *fx) { set32(fx, TRAIN_IMAGES, 8, 0); }
static void m_cols_zero(struct fixture *fx) { set32(fx, TRAIN_IMAGES, 12, 0); }
static void m_rows_4097(struct fixture *fx) { set32(fx, TRAIN_IMAGES, 8, 4097); }
static void m_count_zero(struct fixture *fx) { set32(fx, TRAIN_IMAGES, 4, 0); }
static void m_label_count_zero(struct fixture *fx) { set32(fx, TRAIN_LABELS, 4, 0); }
static void m_count_limit(struct fixture *fx) { set32(fx, TRAIN_IMAGES, 4, 10000001); }

static void m_swapped(struct fixture *fx)
{
	struct blob t = fx->file[TRAIN_IMAGES];

	fx->file[TRAIN_IMAGES] = fx->file[TRAIN_LABELS];
	fx->file[TRAIN_LABELS] = t;
}

static void m_labels_are_images(struct fixture *fx)
{
	blob_free(&fx->file[TEST_LABELS]);
	fx->file[TEST_LABELS] = make_images(3, 28, 28, 5);
}

/* 2^32-1 everywhere: would overflow any 32- or 64-bit size product. */
static void m_huge_dims(struct fixture *fx)
{
	set32(fx, TRAIN_IMAGES, 8, UINT32_MAX);
	set32(fx, TRAIN_IMAGES, 12, UINT32_MAX);
}

static void m_huge_count(struct fixture *fx)
{
	set32(fx, TRAIN_IMAGES, 4, UINT32_MAX);
	set32(fx, TRAIN_LABELS, 4, UINT32_MAX);
}

/* Within every limit but 160 TiB of payload: must fail without allocating it. */
static void m_huge_legal(struct fixture *fx)
{
	set32(fx, TRAIN_IMAGES, 4, 10000000);
	set32(fx, TRAIN_IMAGES, 8, 4096);
	set32(fx, TRAIN_IMAGES, 12, 4096);
}

static void m_fewer_labels(struct fixture *fx)
{
	blob_free(&fx->file[TRAIN_LABELS]);
	fx->file[TRAIN_LABELS] = make_labels(6, 1);
}

static void m_more_labels(struct fixture *fx)
{
	blob_free(&fx->file[TEST_LABELS]);
	fx->file[TEST_LABELS] = make_labels(4, 2);
}


static void m_test_dims(struct fixture *fx)
{
	blob_free(&fx->file[TEST_IMAGES]);
	fx->file[TEST_IMAGES] = make_images(3, 28, 27, 2);
}

static void m_test_dims_swapped(struct fixture *fx)
{
	blob_free(&fx->file[TEST_IMAGES]);
	fx->file[TEST_IMAGES] = make_images(3, 14, 56, 2);
}

/* Changes to a gzip file's compressed bytes on disk. */
static void g_flip_crc(struct blob *b) { b->data[b->len - 8] ^= 0xff; }
static void g_flip_isize(struct blob *b) { b->data[b->len - 1] ^= 0x01; }
static void g_flip_method(struct blob *b) { b->data[2] = 7; }
static void g_flip_magic(struct blob *b) { b->data[1] = 0x8c; }
static void g_cut_half(struct blob *b) { blob_resize(b, b->len / 2); }
static void g_cut_trailer(struct blob *b) { blob_resize(b, b->len - 4); }
static void g_cut_to_header(struct blob *b) { blob_resize(b, 10); }
static void g_cut_to_1(struct blob *b) { blob_resize(b, 1); }
static void g_empty(struct blob *b) { blob_resize(b, 0); }

static void g_flip_middle(struct blob *b)
{
	for (size_t i = b->len / 2; i < b->len / 2 + 4; i++)
		b->data[i] ^= 0x5a;
}

static void g_garbage_after(struct blob *b)
{
	size_t n = b->len;

	blob_resize(b, n + 5);
	memcpy(b->data + n, "junk!", 5);
}

static void g_zero_after(struct blob *b)
{
	blob_resize(b, b->len + 1);         /* one 0x00 byte */
}

/* A second complete gzip member appended after the first. */
static void g_second_member(struct blob *b)
{
	char path[PATH_MAX];
	struct blob extra;
	size_t n = b->len;

	fmt_path(path, sizeof(path), "%s/second-member.gz", g_root);
	write_gz(path, "x", 1);
	extra = read_whole(path);
	unlink(path);
	blob_resize(b, n + extra.len);
	memcpy(b->data + n, extra.data, extra.len);
	blob_free(&extra);
}

/* Not gzip at all, though named .gz. */
static void g_plain_bytes(struct blob *b)
{
	blob_resize(b, 4);
	memcpy(b->data, "\x00\x00\x08\x03", 4);
}

enum form {
	BOTH,       /* run on a plain file and again on a gzip one */
	PLAIN,      /* plain only */
	GZ,         /* gzip only; `gz_mutate` breaks the compressed bytes */
};

struct corrupt_case {
	const char *name;
	enum form form;
	int target;                             /* file named by the error */
	void (*mutate)(struct fixture *fx);     /* may be NULL */
	void (*gz_mutate)(struct blob *b);      /* GZ form only, may be NULL */
	int code;                               /* expected; 0 means any < 0 */
	const char *words;                      /* "a|b": one must appear */
};

static const struct corrupt_case cases[] = {
	{ "missing-train-images", PLAIN, TRAIN_IMAGES, m_missing_train_images, NULL, -ENOENT, "not found" },
	{ "missing-test-labels", PLAIN, TEST_LABELS, m_missing_test_labels, NULL, -ENOENT, "not found" },
	{ "empty-images", BOTH, TRAIN_IMAGES, m_empty_images, NULL, -EIO, "empty" },
	{ "empty-labels", BOTH, TEST_LABELS, m_empty_labels, NULL, -EIO, "empty" },
	{ "truncated-magic", BOTH, TRAIN_IMAGES, m_short_magic, NULL, -EIO, "truncated header" },
	{ "truncated-header-images", BOTH, TRAIN_IMAGES, m_header_images, NULL, -EIO, "truncated header" },
	{ "truncated-header-labels", BOTH, TRAIN_LABELS, m_header_labels, NULL, -EIO, "truncated header" },
	{ "truncated-payload-images", BOTH, TRAIN_IMAGES, m_payload_images, NULL, -EIO, "truncated" },
	{ "truncated-payload-images-1", BOTH, TEST_IMAGES, m_payload_images_1, NULL, -EIO, "truncated" },
	{ "header-only-images", BOTH, TEST_IMAGES, m_header_only_images, NULL, -EIO, "truncated" },
	{ "truncated-payload-labels", BOTH, TRAIN_LABELS, m_payload_labels, NULL, -EIO, "truncated" },
	{ "trailing-images", BOTH, TRAIN_IMAGES, m_trailing_images, NULL, -EIO, "trailing" },
	{ "trailing-labels", BOTH, TEST_LABELS, m_trailing_labels, NULL, -EIO, "trailing" },
	{ "bad-magic-images", BOTH, TRAIN_IMAGES, m_magic_images, NULL, -EINVAL, "magic" },
	{ "bad-magic-labels", BOTH, TRAIN_LABELS, m_magic_labels, NULL, -EINVAL, "magic" },
	{ "little-endian-magic", BOTH, TEST_IMAGES, m_magic_le, NULL, -EINVAL, "magic" },
	{ "label-magic-in-images", BOTH, TRAIN_IMAGES, m_magic_label_in_images, NULL, -EINVAL, "magic" },
	{ "image-magic-in-labels", BOTH, TEST_LABELS, m_magic_image_in_labels, NULL, -EINVAL, "magic" },
	{ "swapped-images-labels", BOTH, TRAIN_IMAGES, m_swapped, NULL, -EINVAL, "magic" },
	{ "labels-file-is-images", BOTH, TEST_LABELS, m_labels_are_images, NULL, -EINVAL, "magic" },
	{ "zero-rows", BOTH, TRAIN_IMAGES, m_rows_zero, NULL, -EINVAL, "dimensions" },
	{ "zero-cols", BOTH, TRAIN_IMAGES, m_cols_zero, NULL, -EINVAL, "dimensions" },
	{ "rows-over-4096", BOTH, TRAIN_IMAGES, m_rows_4097, NULL, -EINVAL, "dimensions" },
	{ "huge-dims", BOTH, TRAIN_IMAGES, m_huge_dims, NULL, -EINVAL, "dimensions" },
	{ "zero-count", BOTH, TRAIN_IMAGES, m_count_zero, NULL, -EINVAL, "count" },
	{ "zero-label-count", BOTH, TRAIN_LABELS, m_label_count_zero, NULL, -EINVAL, "count" },
	{ "huge-count", BOTH, TRAIN_IMAGES, m_huge_count, NULL, -EINVAL, "count" },
	{ "count-over-limit", BOTH, TRAIN_IMAGES, m_count_limit, NULL, -EINVAL, "count" },
	{ "huge-legal-dims", PLAIN, TRAIN_IMAGES, m_huge_legal, NULL, -EIO, "truncated" },
	/* gzip: the size is unknown until inflated, so the claimed payload is
	 * weighed against the memory first (more than any machine's) */
	{ "gz-huge-legal-dims", GZ, TRAIN_IMAGES, m_huge_legal, NULL, -EFBIG, "memory" },
	{ "fewer-labels-than-images", BOTH, TRAIN_LABELS, m_fewer_labels, NULL, -EINVAL, "mismatch" },
	{ "more-labels-than-images", BOTH, TEST_LABELS, m_more_labels, NULL, -EINVAL, "mismatch" },
	{ "split-dims-mismatch", BOTH, TEST_IMAGES, m_test_dims, NULL, -EINVAL, "dimensions" },
	{ "split-dims-transposed", BOTH, TEST_IMAGES, m_test_dims_swapped, NULL, -EINVAL, "dimensions" },
	{ "gz-flip-crc", GZ, TRAIN_IMAGES, NULL, g_flip_crc, -EIO, "corrupt" },
	{ "gz-flip-length", GZ, TRAIN_LABELS, NULL, g_flip_isize, -EIO, "corrupt" },
	{ "gz-flip-method", GZ, TRAIN_IMAGES, NULL, g_flip_method, -EIO, "corrupt" },
	{ "gz-flip-middle", GZ, TRAIN_IMAGES, NULL, g_flip_middle, 0, "corrupt|truncated|trailing" },
	{ "gz-flip-magic", GZ, TEST_IMAGES, NULL, g_flip_magic, -EINVAL, "gzip" },
	{ "gz-not-gzip", GZ, TEST_LABELS, NULL, g_plain_bytes, -EINVAL, "gzip" },
	{ "gz-truncated-half", GZ, TRAIN_IMAGES, NULL, g_cut_half, -EIO, "truncated" },
	{ "gz-truncated-trailer", GZ, TRAIN_IMAGES, NULL, g_cut_trailer, -EIO, "truncated" },
	{ "gz-truncated-header", GZ, TEST_IMAGES, NULL, g_cut_to_header, -EIO, "truncated" },
	{ "gz-one-byte", GZ, TEST_IMAGES, NULL, g_cut_to_1, -EINVAL, "gzip" },
	{ "gz-empty-file", GZ, TRAIN_LABELS, NULL, g_empty, -EIO, "empty" },
	{ "gz-garbage-after-stream", GZ, TRAIN_IMAGES, NULL, g_garbage_after, -EIO, "trailing" },
	{ "gz-zero-after-stream", GZ, TEST_LABELS, NULL, g_zero_after, -EIO, "trailing" },
	{ "gz-second-member", GZ, TRAIN_LABELS, NULL, g_second_member, -EIO, "trailing" },
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* One run of a case: the case and whether the target is written as gzip. */
struct case_run {
	const struct corrupt_case *c;
	bool gz;
	char name[64];
};

static void test_corrupt(void **state)
{
	const struct case_run *run = *state;
	const struct corrupt_case *c = run->c;
	struct fixture fx;
	struct dataset *ds = (struct dataset *)&fx;  /* must come back NULL */
	struct tr_err err;
	char dir[PATH_MAX], path[PATH_MAX];
	int rc;

	fixture_init(&fx);
	fx.gz[c->target] = run->gz;
	if (c->mutate)
		c->mutate(&fx);
	make_dir(dir, sizeof(dir), run->name);
	fixture_write(&fx, dir);
	file_path(path, sizeof(path), dir, &fx, c->target);
	if (c->gz_mutate) {
		struct blob b = read_whole(path);

		c->gz_mutate(&b);
		write_plain(path, b.data, b.len);
		blob_free(&b);
	}

	tr_err_clear(&err);
	rc = dataset_load(&ds, dir, &err);
	print_message("    %s -> %d: %s\n", run->name, rc, err.msg);
	assert_null(ds);
	assert_true(rc < 0);
	if (c->code)
		assert_int_equal(rc, c->code);
	assert_int_equal(err.code, rc);
	assert_non_null(strstr(err.msg, file_names[c->target]));
	assert_true(contains_any(err.msg, c->words));
	assert_null(strchr(err.msg, '\n'));

	/* The same failure without an error struct must not crash. */
	ds = (struct dataset *)&fx;
	assert_int_equal(dataset_load(&ds, dir, NULL), rc);
	assert_null(ds);
	fixture_deinit(&fx);
}

/* ---- real data ------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Load $TRAIND_DATA_DIR/<sub> if present and check its well-known shape. */
static void check_real(const char *sub, uint8_t train0, uint8_t test0)
{
	const char *base = getenv("TRAIND_DATA_DIR");
	char dir[PATH_MAX];
	struct dataset *ds = NULL;
	struct tr_err err;
	struct stat st;
	double t0, t1;
	int rc;

	if (!base || !*base)
		skip();
	fmt_path(dir, sizeof(dir), "%s/%s", base, sub);
	if (stat(dir, &st) != 0)
		skip();

	t0 = now_s();
	rc = dataset_load(&ds, dir, &err);
	t1 = now_s();
	if (rc)
		fail_msg("%s", err.msg);
	print_message("    %s loaded in %.3f s (%zu bytes)\n", dir, t1 - t0,
		      dataset_bytes(ds));
	assert_int_equal(ds->train.count, 60000);
	assert_int_equal(ds->test.count, 10000);
	assert_int_equal(ds->train.rows, 28);
	assert_int_equal(ds->train.cols, 28);
	assert_int_equal(ds->test.rows, 28);
	assert_int_equal(ds->test.cols, 28);
	assert_int_equal(ds->train.labels[0], train0);
	assert_int_equal(ds->test.labels[0], test0);
	assert_int_equal(dataset_bytes(ds), 70000u * (28 * 28 + 1));
	dataset_free(ds);
}

static void test_real_mnist(void **state)
{
	(void)state;
	check_real("mnist", 5, 7);
}

/* Fashion-MNIST (gzip files): first train and test items are ankle boots. */
static void test_real_fashion_mnist(void **state)
{
	(void)state;
	check_real("fashion-mnist", 9, 9);
}

/* ---- setup ----------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int group_setup(void **state)
{
	const char *base = getenv("TRAIND_TEST_TMP");

	(void)state;
	if (!base || !*base)
		base = "/tmp";
	snprintf(g_root, sizeof(g_root), "%s/test-dataset-XXXXXX", base);
	if (!mkdtemp(g_root)) {
		fprintf(stderr, "mkdtemp %s: %s\n", g_root, strerror(errno));
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	return nftw(g_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_load_plain),
		cmocka_unit_test(test_probe_and_fields),
		cmocka_unit_test(test_idx_with_names),
		cmocka_unit_test(test_gather_images),
		cmocka_unit_test(test_load_gzip_same_as_plain),
		cmocka_unit_test(test_plain_preferred),
		cmocka_unit_test(test_gzip_by_magic),
		cmocka_unit_test(test_idx_set_load_direct),
		cmocka_unit_test(test_size_limits),
		cmocka_unit_test(test_large_gzip),
		cmocka_unit_test(test_not_regular_file),
		cmocka_unit_test(test_real_mnist),
		cmocka_unit_test(test_real_fashion_mnist),
	};
	enum { NFIXED = sizeof(fixed) / sizeof(fixed[0]) };
	static struct case_run runs[2 * NCASES];
	static struct CMUnitTest tests[NFIXED + 2 * NCASES];
	size_t n = 0, nruns = 0;

	for (size_t i = 0; i < NFIXED; i++)
		tests[n++] = fixed[i];
	for (size_t i = 0; i < NCASES; i++) {
		for (int gz = 0; gz < 2; gz++) {
			const struct corrupt_case *c = &cases[i];
			struct case_run *run;

			if ((c->form == PLAIN && gz) || (c->form == GZ && !gz))
				continue;
			run = &runs[nruns++];
			run->c = c;
			run->gz = gz;
			snprintf(run->name, sizeof(run->name), "%s%s", c->name,
				 gz && c->form == BOTH ? ".gz" : "");
			tests[n++] = (struct CMUnitTest){
				.name = run->name,
				.test_func = test_corrupt,
				.initial_state = run,
			};
		}
	}
	return _cmocka_run_group_tests("dataset", tests, n, group_setup,
				       group_teardown);
}
