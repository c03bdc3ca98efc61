/*
 * augment.h - data augmentation of training batches: an augment SPEC (config
 * key `augment`), parsed and checked against the data, applied to the rows of
 * a gathered batch.
 *
 * A SPEC is a comma-separated list of transforms, written as torchvision's
 * (transforms.v2) in the call syntax of model SPECs, applied in order to each
 * training sample (C x H x W floats, after the gather made the pixels floats
 * and applied dataset.json's mean/std):
 *   random_crop(SIZE[,padding=P][,fill=F])  v2.RandomCrop(SIZE, padding=P, fill=F):
 *       pad each side by P with F (0), then cut a SIZE window at a random
 *       place. SIZE is N or H:W and must be the images' own size (the model's
 *       input does not change between training and evaluation), at most the
 *       padded size. F is in the units of the gathered pixels before any
 *       normalisation (0..1 for uint8 data): with dataset.json's mean/std the
 *       padding is (F - mean[c]) / std[c], as ToTensor, RandomCrop, Normalize.
 *   random_horizontal_flip([p=]P)           v2.RandomHorizontalFlip(P) (0.5)
 *   random_vertical_flip([p=]P)             v2.RandomVerticalFlip(P) (0.5)
 *   normalize(mean=M1:M2..,std=S1:S2..)     v2.Normalize: (x - mean[c]) / std[c]
 *       per channel in float32; last in the list, for data without mean/std
 *       in its dataset.json. Deterministic, so it applies wherever the data
 *       is gathered: training, validation, test, eval, predict.
 * The random transforms apply to training batches only.
 *
 * The draws are traind's own, not PyTorch's (whose come from the global
 * generator in DataLoader worker order and cannot be reproduced from C): a
 * counter-based stream, Philox4x32-10 keyed by the job's seed (xored with a
 * constant, apart from Dropout's) with the counter (sample index in the
 * training file, epoch, transform's position, a tag). An augmented sample is
 * therefore a function of (seed, epoch, sample, transform) alone: it does not
 * depend on the thread count, the batch, the shard, the rank, or where a
 * resume happened; nothing about it is stored in a checkpoint.
 *
 * Thread: pure functions; augment_rows runs on any team member on its rows.
 */
#ifndef TRAIND_AUGMENT_H
#define TRAIND_AUGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/dataset.h"
#include "traind/error.h"

#define AUGMENT_MAX_OPS 8
#define AUGMENT_TEXT_MAX 512   /* a SPEC's text, with NUL (config.h's CFG_AUGMENT_MAX) */

enum augment_kind {
	AUG_RANDOM_CROP,
	AUG_RANDOM_HFLIP,
	AUG_RANDOM_VFLIP,
	AUG_NORMALIZE,
};

struct augment_op {
	enum augment_kind kind;
	uint32_t h, w;                         /* random_crop: the window */
	uint32_t padding;                      /* random_crop: each side */
	float fill;                            /* random_crop: the padding's value */
	float p;                               /* flips: probability */
	uint32_t nch;                          /* normalize: values of mean and std */
	float mean[DATASET_MAX_CHANNELS], std[DATASET_MAX_CHANNELS];
};

struct augment {
	uint32_t n;                            /* 0: no augmentation */
	struct augment_op ops[AUGMENT_MAX_OPS];
};

/* The shape and normalisation of the gathered samples augment_rows sees. */
struct augment_data {
	uint32_t c, h, w;
	const float *mean, *std;               /* dataset.json's (c), or NULL */
};

/* Parse a SPEC ("" is none): the grammar and each argument's range. Errors
 * name "augment" and the transform. */
int augment_parse(struct augment *out, const char *text, struct tr_err *err);

/* Check that a fits data of shape d (crop sizes, normalize's channels, not
 * normalising twice). Errors name "augment", the transform and the shapes. */
int augment_check(const struct augment *a, const struct augment_data *d, struct tr_err *err);

/* True when a has a random transform (training batches differ from the data). */
bool augment_is_random(const struct augment *a);

/* Apply a in place to n samples x (n, C*H*W), NCHW float, sample i being
 * image idx[i] of the training file: with train, every transform with the
 * draws of (seed, epoch, idx[i]); else only normalize. */
void augment_rows(const struct augment *a, const struct augment_data *d, float *x,
		  const uint32_t *idx, size_t n, uint64_t seed, uint64_t epoch, bool train);

/* The draw of transform k for sample `index` in epoch `epoch`: four words
 * (exposed for tests and the PyTorch check). */
void augment_draw(uint64_t seed, uint64_t epoch, uint32_t index, uint32_t k, uint32_t out[4]);

/* Apply one transform to one sample (C x H x W) with the given draw words
 * (the PyTorch check gives them). */
void augment_apply(const struct augment_op *op, const struct augment_data *d, float *x,
		   const uint32_t draw[4]);

#endif
