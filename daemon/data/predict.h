/*
 * predict.h - a stored model's classes for images given as files
 * (io.traind.Predict): the images decoded from PGM (P5/P2), PNG (libpng;
 * colour is converted to grey, alpha dropped, 16 bits cut to 8) or an IDX
 * image file (0x00000803, many images), checked against (or, when asked,
 * bilinearly resized to) the model's input, and run through the net in eval
 * mode (net_forward(train=false): BatchNorm's running statistics, no
 * Dropout), pixels scaled as training scales them (k_gather: x/255).
 *
 * Rows (a FILE.csv): samples as the job's dataset stores them, one a line
 * (an optional header line), the model's input size of values each: pixels
 * 0..255 of a uint8 dataset, any finite numbers of a float32 one, in the
 * dataset's layout. They go through the same gather as training (its
 * scaling, the dataset's mean/std, the job's augment normalize), so a
 * regression on tabular data predicts from its feature rows.
 *
 * What comes out follows the job's task: class probabilities (softmax) for
 * classification, the outputs themselves for regression, each label's
 * probability (sigmoid) for multi-label.
 *
 * Every decoder validates what it reads (magic, header fields, sizes, the
 * payload's length, caps on the image count and size) and names the file
 * and the problem; a file whose size is not the model's is refused with a
 * message giving both sizes.
 *
 * Ownership: a struct predict_images owns its pixels (predict_images_free).
 * Thread: any but the loop thread (decoding and inference are work).
 */
#ifndef TRAIND_PREDICT_H
#define TRAIND_PREDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/augment.h"
#include "traind/error.h"
#include "traind/loss.h"
#include "traind/net.h"

#define PREDICT_MAX_FILE (64u << 20)     /* bytes of one file */
#define PREDICT_MAX_IMAGES 100000        /* images in one call */
#define PREDICT_MAX_SIDE 4096            /* pixels of an image side */

/* The images of one file, grey, 8 bits; or the rows of a CSV file. */
struct predict_images {
	uint32_t count, h, w;
	uint8_t *pixels;                 /* (count, h, w), owned; rows: (count, dim) uint8 values, or
					    float32 values' bytes when f32 */
	bool rows;                       /* from predict_decode_rows */
	bool f32;                        /* rows: float32 values */
	uint32_t dim;                    /* rows: values per sample */
};

/* How the job's training made its inputs. */
struct predict_scaling {
	bool torch_scale;                /* uint8: x * (float)(1/255) (rng torch), else x/255 */
	const float *mean, *std;         /* the dataset's mean/std (channels), or NULL */
	bool nhwc;                       /* rows: stored NHWC */
	uint32_t channels, hw;           /* rows: the sample's channels and pixels per channel */
	const struct augment *aug;       /* the job's augment (its normalize applies), or NULL */
	const struct augment_data *augd;
};

/* Decode the rows of a CSV file (named `name`) of samples of `dim` values,
 * uint8 (0..255) or with f32 any finite numbers: -EINVAL naming the line and
 * the field when a row is not that. */
int predict_decode_rows(const uint8_t *buf, size_t len, const char *name, uint32_t dim, bool f32,
			struct predict_images *out, struct tr_err *err);

/* Decode buf (a whole file, named `name` in messages). -EINVAL with the
 * reason when it is none of the formats or malformed. */
int predict_decode(const uint8_t *buf, size_t len, const char *name, struct predict_images *out,
		   struct tr_err *err);
/* Fit the images to h x w: unchanged when they are; resized (bilinear) when
 * `resize`; else -ERANGE naming both sizes. */
int predict_fit(struct predict_images *im, uint32_t h, uint32_t w, bool resize, const char *name,
		struct tr_err *err);
void predict_images_free(struct predict_images *im);

/* What the model gives im's samples: out (count, outputs), malloc'ed, by
 * task: the class probabilities (softmax of the logits, in double), the
 * outputs (regression), each label's sigmoid (multi-label). Pixels become
 * x/255, or with torch_scale x * (float)(1/255) (a job with rng torch), as
 * its training made them; with mean and std (its dataset.json's),
 * (x/255 - mean) / std; then the augment's normalize. */
int predict_run(struct net *n, const struct predict_images *im, const struct predict_scaling *sc,
		enum loss_task task, double **out, struct tr_err *err);

#endif
