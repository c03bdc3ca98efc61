/*
 * predict.h - a stored model's classes for images given as files
 * (io.traind.Predict): the images decoded from PGM (P5/P2), PNG (libpng;
 * colour is converted to grey, alpha dropped, 16 bits cut to 8) or an IDX
 * image file (0x00000803, many images), checked against (or, when asked,
 * bilinearly resized to) the model's input, and run through the net in eval
 * mode (net_forward(train=false): BatchNorm's running statistics, no
 * Dropout), pixels scaled as training scales them (k_gather: x/255).
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

#include "traind/error.h"
#include "traind/net.h"

#define PREDICT_MAX_FILE (64u << 20)     /* bytes of one file */
#define PREDICT_MAX_IMAGES 100000        /* images in one call */
#define PREDICT_MAX_SIDE 4096            /* pixels of an image side */

/* The images of one file, grey, 8 bits. */
struct predict_images {
	uint32_t count, h, w;
	uint8_t *pixels;                 /* (count, h, w), owned */
};

/* Decode buf (a whole file, named `name` in messages). -EINVAL with the
 * reason when it is none of the formats or malformed. */
int predict_decode(const uint8_t *buf, size_t len, const char *name, struct predict_images *out,
		   struct tr_err *err);
/* Fit the images to h x w: unchanged when they are; resized (bilinear) when
 * `resize`; else -ERANGE naming both sizes. */
int predict_fit(struct predict_images *im, uint32_t h, uint32_t w, bool resize, const char *name,
		struct tr_err *err);
void predict_images_free(struct predict_images *im);

/* The class probabilities (softmax of the logits, in double) of im's
 * images: probs (count, classes), malloc'ed. Pixels become x/255, or with
 * torch_scale x * (float)(1/255) (a job with rng torch), as its training made them;
 * with mean and std (its dataset.json's, one channel), (x/255 - mean) / std. */
int predict_run(struct net *n, const struct predict_images *im, bool torch_scale, const float *mean,
		const float *std, double **probs, struct tr_err *err);

#endif
