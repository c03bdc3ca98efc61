/*
 * dnnconv.h - a conv2d layer's three convolutions (forward, backward data,
 * backward weights) through oneDNN's primitives, for a job with `conv
 * onednn` (doc/models.md, "The conv key").
 *
 * What it owns: a struct dnnctx is one net's oneDNN engine and a stream per
 * team member; a struct dnnconv is one conv2d layer's geometry and its
 * primitives, cached by the rows one call takes (a member's share of a
 * batch: the training batch's, the last batch's, the evaluation's), each
 * made once and kept until the net is freed, with the weights reordered
 * into each primitive's layout once per pass.
 *
 * Arithmetic and threads: each call runs on ONE thread, the team member
 * that makes it, on that member's rows at once (N = rows): oneDNN's OpenMP
 * is held to one thread in the calling thread (omp_set_num_threads(1))
 * before a primitive is made and before each call, so oneDNN never starts
 * a thread team of its own to fight traind's team or OpenBLAS's, and a
 * primitive's split of the work (fixed when it is made, by the thread
 * count) is the same on every run. The bits then depend on oneDNN's
 * version, the ISA it dispatches to (dnnl_get_effective_cpu_isa), the team
 * size and the batch: dnnctx_describe names the first two for the job's
 * numeric environment; the job records the other two. traind's NCHW rows
 * are reordered into the layouts the primitives prefer and back (exact in
 * fp32); rows the caller keeps in nChw16c (x_blk, y_blk: the blocked graph
 * of dnnblk.h) need no reorder when the primitive chose that layout too, and
 * are reordered as exactly when it did not. With bf16, the operands of the products (x, W, dy) are rounded to
 * bfloat16 by oneDNN's reorder (round to nearest even) and everything else
 * stays float32: the outputs, the bias, the gradients, as doc/precision.md
 * defines a bf16 product.
 *
 * Thread: dnnctx_new/free, dnnconv_new/free and dnnconv_prepare on the
 * net's owner thread, between phases; dnnconv_forward and dnnconv_backward
 * on team members during a phase, concurrently, each member with its own
 * index and scratch, for a row count prepared before the phase.
 */
#ifndef TRAIND_MODEL_DNNCONV_H
#define TRAIND_MODEL_DNNCONV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"

struct dnnctx;
struct dnnconv;

struct dnnconv_geom {
	uint32_t c, h, w;                 /* the input (C, H, W) */
	uint32_t oc, oh, ow;              /* the output */
	uint32_t k, stride, padding, dilation, groups;
	bool bias;
	bool bf16;                        /* products on bfloat16 operands */
	bool x_blk, y_blk;                /* the caller's input / output rows (and their gradients)
					   * are nChw16c (engine/model/dnnblk.h), not NCHW */
};

/* A net's engine and `members` streams. -ENOMEM, -ENOTSUP (no CPU engine). */
int dnnctx_new(struct dnnctx **out, unsigned members, struct tr_err *err);
void dnnctx_free(struct dnnctx *c);
/* "oneDNN 2.6.3 avx512_core_amx": what decides the bits besides the team. */
void dnnctx_describe(char *buf, size_t len);

int dnnconv_new(struct dnnconv **out, struct dnnctx *c, const struct dnnconv_geom *g, struct tr_err *err);
void dnnconv_free(struct dnnconv *d);

/* Make ready for a phase whose members take rows[0..nm) rows each (0: none):
 * the primitives for each row count (backward: with backward data when
 * need_dx), and the weights w (OC, C/G, K, K) reordered into their layouts.
 * *scratch grows to the bytes a member's scratch needs. 0, -ENOMEM, or
 * -ENOTSUP (oneDNN has no implementation: err says which). */
int dnnconv_prepare(struct dnnconv *d, bool backward, bool need_dx, const size_t *rows, unsigned nm,
		    const float *w, size_t *scratch, struct tr_err *err);

/* Member idx: y (rows, OC, OH, OW) = conv(x (rows, C, H, W)) + b (NULL: none). */
void dnnconv_forward(struct dnnconv *d, unsigned idx, size_t rows, const float *x, const float *b, float *y,
		     void *scratch);
/* Member idx: dw (OC, C/G, K, K) = the sum over its rows (written, not
 * added); dx (rows, C, H, W) the gradient at the input (NULL: none). The
 * bias's gradient is the caller's (a float32 sum of dy, whatever the
 * precision: doc/precision.md rounds only a product's operands). */
void dnnconv_backward(struct dnnconv *d, unsigned idx, size_t rows, const float *x, const float *dy,
		      float *dx, float *dw, void *scratch);

#endif
