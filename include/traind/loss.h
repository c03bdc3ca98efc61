/*
 * loss.h - the training losses: a batch's loss from the net's outputs and
 * the gradient of the batch mean at the outputs (net_dout), as PyTorch 1.13's
 * torch.nn.functional computes them with reduction='mean'.
 *
 * The loss sits on top of the net: net_output (rows of `width` values) in,
 * net_dout out. Which losses, and the task each one means:
 *   cross_entropy    classification: one class per sample (an index < width);
 *                    F.cross_entropy with label_smoothing and a weight per
 *                    class (the weighted mean divides by the sum of the
 *                    batch's target weights, and label smoothing's part too,
 *                    as ATen's cross_entropy_loss_label_smoothing)
 *   mse, l1, huber   regression: `width` float targets per sample;
 *                    F.mse_loss, F.l1_loss, F.huber_loss(delta): the mean
 *                    over every element of the batch
 *   bce_with_logits  multi-label: `width` targets of 0 or 1 per sample;
 *                    F.binary_cross_entropy_with_logits with pos_weight (one
 *                    per output), the mean over every element
 *
 * A batch may be computed in pieces (the trainer's shards): loss_norm gives
 * the divisor of the whole batch's mean (the samples; the sum of their class
 * weights; the elements), each piece calls loss_batch with it, and the sums
 * the pieces return add up to the batch's; the gradients they write are
 * already the whole batch mean's. Each sample's term is computed in float and
 * the sum in double, in row order.
 *
 * cross_entropy without smoothing and weights is exactly the arithmetic of
 * every job before losses existed (k_softmax_xent's), so stored jobs keep
 * their bits.
 *
 * Thread: pure functions of their arguments; any thread.
 */
#ifndef TRAIND_LOSS_H
#define TRAIND_LOSS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/kernels.h"

enum loss_kind {
	LOSS_CROSS_ENTROPY,
	LOSS_MSE,
	LOSS_L1,
	LOSS_HUBER,
	LOSS_BCE_WITH_LOGITS,
};

/* What a job learns, which decides its targets and metrics. */
enum loss_task {
	TASK_CLASSIFICATION,   /* a class per sample; accuracy, macro accuracy */
	TASK_REGRESSION,       /* floats per sample; MAE, RMSE */
	TASK_MULTILABEL,       /* 0/1 per output; per-label accuracy */
	TASK_TOKENS,           /* a class per position of token data (cross_entropy over the
				  vocabulary at every position: a language model); per-token
				  accuracy, perplexity. The trainer's, from the data: the loss
				  alone says classification */
};

struct loss {
	enum loss_kind kind;
	uint32_t width;               /* outputs per sample: the classes, or the targets per sample */
	float label_smoothing;        /* cross_entropy: 0 <= s <= 1 */
	const float *class_weights;   /* cross_entropy: (width) >= 0, or NULL; borrowed */
	float delta;                  /* huber: > 0 */
	const float *pos_weight;      /* bce_with_logits: (width) >= 0, or NULL; borrowed */
	enum kernels_kind kernels;    /* the exp and log of cross_entropy and bce_with_logits:
	                                 libm's (openblas) or traind's own (portable: the plain
	                                 cross_entropy by pk_softmax_xent); mse, l1, huber: either */
};

/* A batch's targets: classes (n) for cross_entropy, else values (n, width). */
struct loss_targets {
	const uint32_t *classes;
	const float *values;
};

/* "cross_entropy", "mse", "l1", "huber", "bce_with_logits"; loss_parse:
 * -EINVAL for anything else. */
const char *loss_name(enum loss_kind k);
int loss_parse(const char *s, enum loss_kind *out);
enum loss_task loss_task_of(enum loss_kind k);
/* "classification", "regression", "multi-label", "per-token". */
const char *loss_task_name(enum loss_task t);

/* The divisor of the mean over the n samples of y: n (cross_entropy
 * unweighted), the sum of their classes' weights (weighted), or n * width
 * (the element-wise losses). */
double loss_norm(const struct loss *l, const struct loss_targets *y, size_t n);

/* Rows [0, m) of out (m, width) against y: returns the sum of their loss
 * terms (the batch's mean is the sum over all its rows / norm); with dout
 * not NULL writes dout (m, width) = the gradient of that mean at out. */
double loss_batch(const struct loss *l, const float *out, const struct loss_targets *y, size_t m,
		  double norm, float *dout);

/* y advanced by `rows` samples of width w (a shard's part of a batch). */
struct loss_targets loss_targets_at(const struct loss_targets *y, size_t rows, uint32_t w);

#endif
