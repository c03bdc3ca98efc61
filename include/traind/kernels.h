/*
 * kernels.h - the numeric building blocks of one training step, each a plain
 * loop over row-major float buffers, plus the one GEMM wrapper every matrix
 * product goes through: by the job's kernels (OpenBLAS's sgemm or the
 * portable GEMM) and its precision (float32, or bfloat16 inputs with float32
 * accumulation: engine/core/bf16.h, on AMX or AVX-512-BF16; doc/precision.md).
 *
 * Shapes are written (rows, cols); every matrix is row-major with an explicit
 * leading dimension (the row stride in floats). All functions are pure with
 * respect to their arguments and may run concurrently on disjoint outputs.
 */
#ifndef TRAIND_KERNELS_H
#define TRAIND_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"

/* Whose arithmetic a wrapper runs: a job's `kernels` (config.h; doc/portable.md). */
enum kernels_kind {
	KERNELS_OPENBLAS,  /* OpenBLAS's sgemm and libm (every job stored before the key):
			      the bits depend on the BLAS kernel and on `threads` */
	KERNELS_PORTABLE,  /* traind's portable kernels (portable.h): the same bits on every
			      CPU, instruction-set path and thread count */
};

/* Set OpenBLAS to one thread (once per process). The engine splits work across
 * its own teams, so BLAS's process-wide pool must not: results would otherwise
 * depend on what else the process runs. Thread: any; idempotent. */
void kernels_global_init(void);

/* n zeroed floats, 64-byte aligned (a cache line, an AVX-512 vector); free()
 * them. NULL on ENOMEM. */
float *k_alloc_floats(size_t n);

/* The arithmetic of a job's matrix products (config `precision`). */
enum k_precision {
	K_FP32,   /* float32 throughout, by the job's kernels (every job stored before the key) */
	K_BF16,   /* inputs rounded to bfloat16 (round to nearest even), float32 accumulation */
};

/* "fp32", "bf16". */
const char *k_precision_name(enum k_precision p);
/* 0 when this process can compute in p; else -EINVAL with err (key
 * "precision") naming what the CPU lacks. The first call for bf16 decides
 * the process's bf16 path (bf16.h: cpuid, AMX permission, TRAIND_BF16).
 * Thread: any. */
int k_precision_check(enum k_precision p, struct tr_err *err);

/* What a job of precision p (and kernels openblas) records as its numeric
 * environment (numerics.h): numerics_blas for fp32; "traind-bf16 1 amx" for
 * bf16 (the bf16 kernels' version, bf16.h's BF16_KERNELS_VERSION, and the
 * process's path: amx or avx512-bf16; no BLAS computes any of a bf16 job's
 * products). Thread: any. */
void k_precision_numerics(enum k_precision p, char *buf, size_t len);

/* How one team member's products run: the precision and, for bf16, the
 * member's own scratch for the packed operands. */
struct k_gemm_mode {
	enum k_precision prec;
	void *scratch;        /* bf16: k_gemm_scratch_len(prec, kmax) bytes, 64-byte aligned; not owned */
	size_t scratch_len;
};

/* The scratch bytes a member needs for products whose k is at most kmax (0 for fp32). */
size_t k_gemm_scratch_len(enum k_precision p, size_t kmax);

/* C (m, n) = alpha * op(A) op(B) + beta * C, row-major, by OpenBLAS's sgemm on one thread.
 * op(A) is (m, k): A itself when !ta (lda >= k), else A^T with A stored (k, m) (lda >= m).
 * op(B) is (k, n): B itself when !tb (ldb >= n), else B^T with B stored (n, k) (ldb >= k). */
void k_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
	    const float *a, size_t lda, const float *b, size_t ldb,
	    float beta, float *c, size_t ldc);
/* The same by `kernels`: OpenBLAS (k_gemm) or the portable GEMM (pk_gemm:
 * each element one fmaf chain over k in order, the same bits anywhere). */
void k_gemm_by(enum kernels_kind kernels, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
	       const float *a, size_t lda, const float *b, size_t ldb,
	       float beta, float *c, size_t ldc);
/* A job's product: mode NULL or K_FP32, k_gemm_by(kernels). K_BF16 (kernels
 * ignored: a bf16 job has kernels openblas, config_validate): every element
 * of op(A) and op(B) rounded to bfloat16, the products summed in float32 over
 * k in a fixed order, then alpha and beta applied in float32 (bf16.h); the
 * bits depend only on the operands and the process's bf16 path, which
 * k_precision_check must have accepted. Thread: any, with its own mode's scratch. */
void k_gemm_job(enum kernels_kind kernels, const struct k_gemm_mode *mode, int ta, int tb, size_t m,
		size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b,
		size_t ldb, float beta, float *c, size_t ldc);

/* x (n, dim) = pixels[idx[i]] / 255 for each of the n sample indices. */
void k_gather(float *x, const uint8_t *pixels, const uint32_t *idx, size_t n, size_t dim);
/* Ask for the cache lines of rows idx[0..n) of pixels (n, dim): a hint that
 * changes no value (a later gather of the same rows finds them in cache). */
void k_prefetch_rows(const uint8_t *pixels, const uint32_t *idx, size_t n, size_t dim);
/* The same with pixels[idx[i]] * scale (scale (float)(1/255): torchvision's
 * ToDtype(float32, scale=True), one ulp off x/255 for 126 of the 256 values). */
void k_gather_scaled(float *x, const uint8_t *pixels, const uint32_t *idx, size_t n, size_t dim,
		     float scale);

/* The general gather, for every dataset k_gather does not cover: x (n, C*H*W)
 * in NCHW from images stored as uint8 (f32 false) or float32, NCHW or NHWC
 * (nhwc), of c channels of hw pixels each. uint8 becomes (float)v / 255.0f,
 * float32 stays; then with mean != NULL, torchvision's Normalize in float32:
 * (x - mean[ch]) / std[ch]. */
void k_gather_images(float *x, const void *pixels, bool f32, bool nhwc, size_t c, size_t hw,
		     const uint32_t *idx, size_t n, const float *mean, const float *std);

/* For rows 0..m-1 and columns [c0, c1) of z (ld): z = b[col]. */
void k_fill_rows(float *z, size_t ld, size_t m, size_t c0, size_t c1, const float *b);

/* For rows 0..m-1 and columns [c0, c1) of z (ld): z = max(z, 0). */
void k_relu(float *z, size_t ld, size_t m, size_t c0, size_t c1);

/* Softmax cross-entropy over logits (m, k) with labels y. Writes
 * dlogits (m, k) = (softmax - onehot) * grad_scale (when dlogits is not NULL),
 * pred[i] = argmax (first maximum), and returns the sum over rows of the loss
 * -log softmax[y], computed stably (log-sum-exp around the row maximum). */
double k_softmax_xent(const float *logits, const uint8_t *y, size_t m, size_t k,
		      float grad_scale, float *dlogits, uint8_t *pred);

/* y[e] = x[e] > 0 ? x[e] : 0 and dx[e] = y[e] > 0 ? dy[e] : 0 for e < len
 * (ReLU forward and backward on whole rows; the arrays do not overlap). */
void k_relu_rows(float *y, const float *x, size_t len);
void k_relu_backward_rows(float *dx, const float *y, const float *dy, size_t len);

/* For rows 0..m-1 and columns [c0, c1): dz = act > 0 ? dz : 0 (ReLU backward). */
void k_relu_backward(float *dz, const float *act, size_t ld, size_t m, size_t c0, size_t c1);

/* db[j] = sum over rows i < m of d[i, j], for j in [c0, c1). Row order fixed. */
void k_colsum(float *db, const float *d, size_t ld, size_t m, size_t c0, size_t c1);

/* ---- convolution and pooling on one sample, C x H x W row-major ---- */

/* col (C*K*K, OH*OW) = the K x K patches of x (C, H, W) with zero padding
 * `pad` and stride `s`: col[(c*K + i)*K + j][oy*OW + ox] = x[c][oy*s - pad + i][ox*s - pad + j]. */
void k_im2col(float *col, const float *x, size_t c, size_t h, size_t w, size_t k, size_t s,
	      size_t pad, size_t oh, size_t ow);
/* The adjoint: dx (C, H, W) = sum of col's patches back at their places
 * (dx is overwritten). */
void k_col2im(float *dx, const float *col, size_t c, size_t h, size_t w, size_t k, size_t s,
	      size_t pad, size_t oh, size_t ow);

/* y (C, OH, OW) = max over each K x K window (stride s) of x (C, H, W); argmax
 * gets the offset in x of the first maximum (a NaN wins, as PyTorch's). */
void k_maxpool(float *y, uint32_t *argmax, const float *x, size_t c, size_t h, size_t w, size_t k,
	       size_t s, size_t oh, size_t ow);
/* dx (C*H*W) = dy scattered to the argmax offsets (dx is overwritten). */
void k_maxpool_backward(float *dx, const float *dy, const uint32_t *argmax, size_t in_size,
			size_t out_size);
/* y = mean over each window (count_include_pad; no padding here). */
void k_avgpool(float *y, const float *x, size_t c, size_t h, size_t w, size_t k, size_t s,
	       size_t oh, size_t ow);
/* dx = dy / (K*K) spread over each window (dx is overwritten). */
void k_avgpool_backward(float *dx, const float *dy, size_t c, size_t h, size_t w, size_t k,
			size_t s, size_t oh, size_t ow);

/* ---- the layers after LeNet (spec.h), on one sample ---- */

/* k_im2col and k_col2im with dilation d: the patch element (i, j) is
 * x[c][oy*s - pad + i*d][ox*s - pad + j*d]. */
void k_im2col_dil(float *col, const float *x, size_t c, size_t h, size_t w, size_t k, size_t s,
		  size_t pad, size_t d, size_t oh, size_t ow);
void k_col2im_dil(float *dx, const float *col, size_t c, size_t h, size_t w, size_t k, size_t s,
		  size_t pad, size_t d, size_t oh, size_t ow);

/* k_maxpool with zero-cost padding `pad` (PyTorch's: padded places never
 * win; pad <= k/2 so every window holds an input place). */
void k_maxpool_pad(float *y, uint32_t *argmax, const float *x, size_t c, size_t h, size_t w,
		   size_t k, size_t s, size_t pad, size_t oh, size_t ow);

/* PyTorch's adaptive_avg_pool2d: output (oy, ox) is the mean of rows
 * [floor(oy*h/oh), ceil((oy+1)*h/oh)) and the same for columns (the sum in
 * float, then divided by the rows and by the columns); the backward spreads
 * dy the same way (dx is overwritten). */
void k_adaptive_avgpool(float *y, const float *x, size_t c, size_t h, size_t w, size_t oh,
			size_t ow);
void k_adaptive_avgpool_backward(float *dx, const float *dy, size_t c, size_t h, size_t w,
				 size_t oh, size_t ow);

/* Nearest-neighbour upsampling by an integer factor f: y (C, H*f, W*f) =
 * x[c][oy / f][ox / f]; the backward sums each f x f block (dx overwritten). */
void k_upsample_nearest(float *y, const float *x, size_t c, size_t h, size_t w, size_t f);
void k_upsample_nearest_backward(float *dx, const float *dy, size_t c, size_t h, size_t w,
				 size_t f);

/* ---- batch normalisation over x (batch, C, S), channels [c0, c1) ----
 * Element (r, c, s) is x[r*size + c*S + s]. Each channel's sum is one double
 * chain from 0.0 in (r, s) order, as a loop per channel would run it; the
 * AVX-512 path carries 8 channels side by side in the lanes of a vector (a
 * gather across channels per position), each lane that loop's chain, so the
 * bits are the loop's on every path. Outputs are indexed from c0: out[c - c0]. */

/* sum[c - c0] = the sum of x over (r, s) of channel c. */
void k_bn_sums(double *sum, const float *x, size_t batch, size_t size, size_t S, size_t c0,
	       size_t c1);
/* sq[c - c0] = the sum of (x - mean[c - c0])^2, the difference and square in double. */
void k_bn_sqsums(double *sq, const float *x, const double *mean, size_t batch, size_t size,
		 size_t S, size_t c0, size_t c1);
/* sdy[c - c0] = the sum of dy; sdyx[c - c0] = the sum of dy * ((x - mean) * invstd),
 * in double. */
void k_bn_grad_sums(double *sdy, double *sdyx, const float *dy, const float *x, const double *mean,
		    const double *invstd, size_t batch, size_t size, size_t S, size_t c0, size_t c1);
/* One channel: x, y, dy, dx point at its first row's S values, rows `size` apart.
 * y = x * alpha + beta in float; dx = (float)(k * (dy - mdy - xhat * mdyx)) with
 * xhat = (x - mean) * invstd, in double. */
void k_bn_apply(float *y, const float *x, size_t batch, size_t size, size_t S, float alpha,
		float beta);
void k_bn_dx(float *dx, const float *dy, const float *x, size_t batch, size_t size, size_t S,
	     double mean, double invstd, double k, double mdy, double mdyx);

#endif