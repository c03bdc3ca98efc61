/*
 * dataset.h - IDX image/label sets (MNIST, Fashion-MNIST) held as uint8.
 *
 * A dataset is a directory holding the four standard IDX files, each either
 * plain or gzip-compressed (name + ".gz"):
 *   train-images-idx3-ubyte  train-labels-idx1-ubyte
 *   t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte
 * Pixels stay uint8 in memory (about 55 MB for MNIST); the trainer converts a
 * batch to float when it gathers it.
 *
 * Loading validates everything: magic numbers (0x00000803 images, 0x00000801
 * labels), dimensions (non-zero rows/cols, at most 4096 each), exact file sizes
 * (header + payload, no trailing bytes), image/label count agreement, labels
 * < 10, and gzip stream integrity. Any failure returns a negative code and an
 * error message naming the file and the problem.
 *
 * Ownership: a loaded struct idx_set / struct dataset owns its buffers; free
 * with the matching _free (NULL accepted). Once loaded a dataset is read-only
 * and may be shared by any number of threads.
 */
#ifndef TRAIND_DATASET_H
#define TRAIND_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"

#define DATASET_CLASSES 10

/* One split (train or test): `count` images of rows x cols pixels. */
struct idx_set {
	uint32_t count;     /* number of images (== number of labels) */
	uint32_t rows;      /* image height in pixels */
	uint32_t cols;      /* image width in pixels */
	uint8_t *pixels;    /* (count, rows * cols), row-major, owned */
	uint8_t *labels;    /* (count), each < DATASET_CLASSES, owned */
};

struct dataset {
	struct idx_set train;   /* the 60000-image training file pair (MNIST) */
	struct idx_set test;    /* the 10000-image t10k file pair (MNIST) */
};

/* Load one IDX image file and its label file (paths given exactly; a ".gz"
 * suffix or gzip magic selects decompression). Fills `out` (owned by caller,
 * free with idx_set_deinit). Thread: any. */
int idx_set_load(struct idx_set *out, const char *images_path,
		 const char *labels_path, struct tr_err *err);

/* Release the buffers of `set` and zero it. NULL accepted. */
void idx_set_deinit(struct idx_set *set);

/* Load the dataset in directory `dir` (see the file names above; for each,
 * the plain name is tried first, then name + ".gz"). Both splits must have the
 * same image dimensions. On success *out is a new dataset owned by the caller.
 * Thread: any. */
int dataset_load(struct dataset **out, const char *dir, struct tr_err *err);

/* Free a dataset from dataset_load. NULL accepted. */
void dataset_free(struct dataset *ds);

/* Bytes of pixel and label memory held by `ds` (for memory reports). */
size_t dataset_bytes(const struct dataset *ds);

#endif
