/*
 * dnnblk.h - the per-sample layers of a conv onednn job on activations kept
 * in a layout oneDNN's convolutions take (nChw16c) between them (doc/models.md,
 * "The conv key": the blocked graph).
 *
 * The layouts: a sample of C channels (C a multiple of 16) and S = H*W
 * positions laid out with width bw is C/bw blocks of S * bw floats, element
 * (c, s) at (c / bw) * S * bw + s * bw + c % bw: bw = 16 is nChw16c (what
 * net.c uses), bw = C would be NHWC, bw = 1 is NCHW.
 * Either has the same number of floats per sample as NCHW, samples one after
 * the other, so that rows split across a team as before. Elementwise layers (ReLU, a residual join, the gradient
 * buffers' additions) read and write it as they read NCHW.
 *
 * What it owns: nothing (functions on the caller's buffers). Each function
 * does exactly the arithmetic of its NCHW counterpart in kernels.c or net.c
 * (the same operations on the same values, each channel's sums in (row,
 * position) order), only reading and writing the elements where nChw16c
 * keeps them, so a job's bits do not depend on the layout: a conv onednn
 * job stored before the blocked graph resumes bit for bit.
 *
 * Thread: any; a team member calls each on its own channels or rows.
 */
#ifndef TRAIND_MODEL_DNNBLK_H
#define TRAIND_MODEL_DNNBLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLK 16   /* channels of a block */

/* Every function takes the layout's width bw (16 or C). */

/* k_bn_sums / k_bn_sqsums (mean) / k_bn_grad_sums (dy, with sq) on channels
 * [c0, c1) of batch rows of size floats: sum[c - c0], sq[c - c0]. */
void blk_bn_sums(double *sum, double *sq, const float *x, const float *dy, const double *mean,
		 const double *invstd, size_t batch, size_t size, size_t S, size_t bw, size_t c0, size_t c1);
/* k_bn_apply for channels [c0, c1): y = x * alpha[c - c0] + beta[c - c0]. */
void blk_bn_apply(float *y, const float *x, size_t batch, size_t size, size_t S, size_t bw, size_t c0,
		  size_t c1, const float *alpha, const float *beta);
/* k_bn_dx for channels [c0, c1), each with its (mean, invstd, k, mdy, mdyx)
 * at index c - c0 of the five arrays. */
void blk_bn_dx(float *dx, const float *dy, const float *x, size_t batch, size_t size, size_t S, size_t bw,
	       size_t c0, size_t c1, const double *mean, const double *invstd, const double *k,
	       const double *mdy, const double *mdyx);
/* k_adaptive_avgpool to 1 x 1 of one sample (C, H, W): y (C). */
void blk_global_avgpool(float *y, const float *x, size_t C, size_t h, size_t w, size_t bw);
/* Its backward: dx (C, H, W) from dy (C). */
void blk_global_avgpool_backward(float *dx, const float *dy, size_t C, size_t h, size_t w, size_t bw);
/* k_maxpool of one sample (no padding) from layout in_bw to layout out_bw
 * (1: NCHW), each window scanned in the same order; argmax[o] is the offset
 * of y[o]'s input in x's layout, so that k_maxpool_backward (dx[argmax[o]]
 * += dy[o] in y's order: for each input element, its windows in (oy, ox)
 * order, as in NCHW) needs no version of its own. */
void blk_maxpool(float *y, uint32_t *argmax, const float *x, size_t C, size_t h, size_t w, size_t k, size_t st,
		 size_t oh, size_t ow, size_t in_bw, size_t out_bw);
/* net.c's conv_bias_sums of one sample's dy (OC, S). */
void blk_bias_sums(float *db, const float *dy, size_t out, size_t S, size_t bw, bool first);

#endif
