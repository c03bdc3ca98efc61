/*
 * portable.h - traind's portable kernels: a GEMM, reductions and the
 * transcendental functions whose results are the same bits on every CPU, on
 * every instruction-set path and at every thread count (issue 25; the
 * arithmetic contract, exactly, is doc/portable.md).
 *
 * What makes the bits travel:
 *   - GEMM: every output element is one chain of fused multiply-adds over k
 *     in order, c = fmaf(a_k, b_k, c) for k = 0..K-1, starting from beta*C (C
 *     itself when beta is 1, +0 when beta is 0); alpha != 1 scales op(A)'s
 *     elements first (one rounding each). Blocking, packing and register
 *     tiles change only the memory order; threads split the output, never k.
 *   - Reductions: 16 lanes (element i into lane i mod 16) combined by a
 *     fixed tree (lane l += lane l+8, then +4, +2, +1), in blocks of
 *     PK_BLOCK elements whose results are added in block order: the same
 *     association whatever the vector width or the team size.
 *   - exp, log, tanh, erf, sigmoid: traind's own range reductions and
 *     polynomials (tools/portable-poly.py), the same operations on every
 *     path, never libm (whose results differ between glibc versions and
 *     vector variants).
 * The three paths (AVX-512, AVX2+FMA, plain C with fmaf) give bit-identical
 * results; tests/unit/test-portable.c checks it. FTZ/DAZ (numerics.h) are
 * honoured the same way on every x86-64 path. NaN payloads are not part of
 * the contract (a NaN is a NaN).
 *
 * Thread: pk_init, pk_isa_set at start-up or in tests, before any kernel runs
 * (they change the process-wide path). Every other function may be called by
 * any thread at once on disjoint outputs; pk_*_team from the team's owner.
 */
#ifndef TRAIND_PORTABLE_H
#define TRAIND_PORTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"
#include "traind/team.h"

/* The version of the arithmetic contract (doc/portable.md). A job records it
 * in its numeric environment; a change to any defined operation order is a
 * new version, never an edit of this one. */
#define PK_CONTRACT 1

#define PK_LANES 16          /* partial sums of every reduction */
#define PK_BLOCK 16384       /* elements of one block of a 1-D reduction */
#define PK_CHUNKS 16         /* chunks of a batch (pk_chunk) */

enum pk_isa {
	PK_ISA_GENERIC,      /* plain C, fmaf: any CPU */
	PK_ISA_AVX2,         /* x86-64 with AVX2 and FMA */
	PK_ISA_AVX512,       /* x86-64 with AVX-512F */
};
#define PK_ISA_COUNT 3

/* "generic", "avx2", "avx512". */
const char *pk_isa_name(enum pk_isa isa);
/* The path named `name`; -EINVAL for another name. */
int pk_isa_parse(const char *name, enum pk_isa *out);
/* Whether this CPU (and its OS) can run the path. */
bool pk_isa_supported(enum pk_isa isa);
/* The fastest path this CPU runs. */
enum pk_isa pk_isa_best(void);

/* Choose the process's path: TRAIND_ISA=avx512|avx2|generic when set, else
 * the best. -EINVAL naming TRAIND_ISA when it names no path, -ENOTSUP when
 * this CPU cannot run it (the path stays the best one). Idempotent: the
 * environment is read once. */
int pk_init(struct tr_err *err);
/* The path the kernels run on (pk_init's choice; the best before it). */
enum pk_isa pk_isa_active(void);
/* Force a path (tests, benchmarks); -ENOTSUP when the CPU cannot run it. */
int pk_isa_set(enum pk_isa isa, struct tr_err *err);
/* "traind portable 1 avx512": the kernels, the contract version, the path
 * that runs (a job's numeric environment; the path does not change bits). */
void pk_describe(char *buf, size_t len);
/* Whether two numeric environments from pk_describe give the same bits: the
 * same contract version, whatever the paths. */
bool pk_same_bits(const char *a, const char *b);

/* ---- GEMM ------------------------------------------------------------------
 * C (m, n) = alpha op(A) op(B) + beta C, row-major, with the layouts of
 * k_gemm (kernels.h): op(A) is A (m, k) when !ta (lda >= k), else A^T with A
 * stored (k, m) (lda >= m); op(B) is B (k, n) when !tb (ldb >= n), else B^T
 * with B stored (n, k) (ldb >= k). Element (i, j):
 *     c = beta == 0 ? +0 : beta == 1 ? C[i][j] : beta * C[i][j]
 *     for p = 0 .. k-1:  c = fmaf(alpha' op(A)[i][p], op(B)[p][j], c)
 * where alpha' x is x when alpha is 1, else the float product alpha * x. With
 * beta 0, C is not read. A bias enters as the initial C with beta 1. */
void pk_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
	     const float *a, size_t lda, const float *b, size_t ldb,
	     float beta, float *c, size_t ldc);
/* The same computed by the team (members split the output; same bits as
 * pk_gemm at any team size). team NULL runs on the caller. Owner thread. */
void pk_gemm_team(struct team *team, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
		  const float *a, size_t lda, const float *b, size_t ldb,
		  float beta, float *c, size_t ldc);

/* ---- reductions ------------------------------------------------------------
 * A 1-D reduction of n elements: blocks of PK_BLOCK elements; in a block,
 * element i goes into lane i mod 16 (lanes start at +0, or -inf for max),
 * then lane l += lane l+8 for l < 8, l += l+4 for l < 4, +2, +1; the result
 * is block 0's, then each next block's added in order. n = 0 gives +0 (max:
 * -inf). A 2-D reduction over `rows` rows of `len` elements (row r at
 * x + r * stride): element (r, s) goes into lane s mod 16, rows in order, one
 * tree at the end (no blocks). */

float pk_sum(const float *x, size_t n);                     /* float lanes: s + x */
float pk_dot(const float *x, const float *y, size_t n);     /* float lanes: fmaf(x, y, s) */
/* max with a NaN winning: s = isnan(x) ? x : x > s ? x : s */
float pk_max(const float *x, size_t n);
double pk_sum_f64(const float *x, size_t n);                /* double lanes: s + (double)x */
double pk_sumsq_f64(const float *x, size_t n);              /* s + (double)x * (double)x (exact product) */
/* pk_sumsq_f64 over the team: members take whole blocks, so the same bits.
 * Owner thread; team NULL runs on the caller. */
double pk_sumsq_f64_team(struct team *team, const float *x, size_t n);

/* 2-D, float lanes: s + x (a convolution's bias gradient over a chunk). */
float pk_sum2d(const float *x, size_t rows, size_t len, size_t stride);
/* 2-D, double lanes (BatchNorm/LayerNorm statistics, two passes):
 * sum: s + (double)x;  sqdev: d = (double)x - mean; s + d * d (two roundings). */
double pk_sum2d_f64(const float *x, size_t rows, size_t len, size_t stride);
double pk_sqdev2d_f64(const float *x, size_t rows, size_t len, size_t stride, double mean);
/* BatchNorm backward's sums: *sdy = sum of dy, *sdyx = sum of dy * xhat with
 * xhat = ((double)x - mean) * invstd; lanes s + (double)dy and
 * s + (double)dy * xhat. dy and x share the layout. */
void pk_bn_sums_f64(const float *dy, const float *x, size_t rows, size_t len, size_t stride,
		    double mean, double invstd, double *sdy, double *sdyx);

/* Softmax cross-entropy over logits (m, k) with labels y, as k_softmax_xent:
 * per row, mx = pk_max(row); e_j = pk_exp(z_j - mx); sum = pk_sum(e);
 * loss = pk_log(sum) - (z_y - mx) (float); dlogits (when not NULL) =
 * (e_j / sum - [j == y]) * grad_scale; pred = the first maximum. Returns
 * the sum of the rows' losses as pk_sum_f64 of them. */
double pk_softmax_xent(const float *logits, const uint32_t *y, size_t m, size_t k,
		       float grad_scale, float *dlogits, uint32_t *pred);
/* Rows [r0, r1) only, each row's loss into row_loss[r] (a team splits the
 * rows; the total is pk_sum_f64(row_loss, m), the same bits). */
void pk_softmax_xent_rows(const float *logits, const uint32_t *y, size_t r0, size_t r1, size_t k,
			  float grad_scale, float *dlogits, uint32_t *pred, float *row_loss);

/* ---- the batch in chunks ---------------------------------------------------
 * A batch-sum of weight gradients independent of the team: the batch is
 * split into pk_nchunks(batch) = min(batch, PK_CHUNKS) chunks (chunk c is
 * rows [c * batch / n, (c + 1) * batch / n)); each chunk's partial sum is a
 * chain over its rows in order; the partials are added in chunk order. A
 * member computes whole chunks. */
unsigned pk_nchunks(size_t batch);
void pk_chunk(size_t batch, unsigned c, size_t *r0, size_t *r1);
/* out[e] = ((part_0[e] + part_1[e]) + part_2[e]) + ... for e in [lo, hi),
 * part_c at parts + c * part_stride. */
void pk_add_chunks(float *out, const float *parts, size_t part_stride, unsigned nchunks,
		   size_t lo, size_t hi);

/* ---- convolution (conv2d of a portable job; doc/portable.md) ---------------
 * For a sample x (C, H, W), weights w (OC, C/G, K, K), stride s, padding p,
 * dilation d, G groups; q = (c, i, j) the taps of a group in that order and
 * xpatch[q][t] the value tap q of output pixel t reads (im2col's: 0 in the
 * padding):
 *   forward: y[o][t] = the chain over q of fmaf(w[o][q], xpatch[q][t], .)
 *            from bias[o] (+0 without a bias), as pk_gemm on im2col;
 *   dW, db of a chunk of samples: for each (o, q), 16 lanes over the
 *            samples (in order) and their pixels, pixel t into lane t mod 16,
 *            lane = fmaf(dy[r][o][t], xpatch_r[q][t], lane); then the tree;
 *            db[o] likewise with lane + dy (pk_sum2d);
 *   dx:      dx[c][y][x] = +0, then for (i, j) in order: dx + d_ij, where
 *            d_ij = the chain over the group's o of fmaf(w[o][c][i][j],
 *            dyz[o][y + p - i d][x + p - j d], .) from +0 and dyz is dy at
 *            (oy s, ox s) and 0 everywhere else (off the map, between strides).
 * A struct pk_conv holds a layer's geometry and tables (pk_conv_init:
 * -EINVAL for a shape that does not fit, -ENOMEM). Thread: init/deinit by
 * the struct's owner; the others from any thread at once, each with its own
 * scratch of pk_conv_scratch(cv, rows) floats (rows: the most samples a
 * pk_conv_dw call takes). */
struct pk_conv {
	unsigned c, h, w, oc, k, s, p, d, g;   /* the layer */
	unsigned cg, og, oh, ow;               /* per group; the output map */
	size_t ckk, ohw;                       /* taps of a group (C/G K K), output pixels */
	unsigned hph, wph;                     /* a phase plane of the padded input */
	size_t plane, chs, xph_len, nwide;     /* its floats; a channel's (s s planes); a sample's; the wide map */
	unsigned hq, wq;                       /* dyz's plane (H + d(K-1)) x (W + d(K-1)) */
	size_t qplane, dxwide;
	ptrdiff_t *koff;                       /* (ckk) tap q's offset in the phase planes */
	ptrdiff_t *dx_koff, *dx_gsrc, *dx_gp;  /* dx: per output channel, per (i, j) */
	/* dx at stride s > 1, by output phases (a, b) (portable-conv.c): dy
	 * padded by dq_t rows and dq_l columns into planes of dq_h x dq_w */
	unsigned dq_t, dq_l, dq_h, dq_w, dq_ny, dq_nx;  /* ..., the largest phase map */
	size_t dq_plane;
	ptrdiff_t *dq_koff;                    /* (og) */
	ptrdiff_t *dq_gsrc;                    /* (s s k k): phase (a, b), tap (i, j); PK_GROUP_ZERO: no tap */
};
int pk_conv_init(struct pk_conv *cv, unsigned c, unsigned h, unsigned w, unsigned oc, unsigned k,
		 unsigned stride, unsigned pad, unsigned dil, unsigned groups);
void pk_conv_deinit(struct pk_conv *cv);
size_t pk_conv_scratch(const struct pk_conv *cv, size_t rows);
/* One sample: y (OC, OH, OW); bias (OC) or NULL. */
void pk_conv_forward(const struct pk_conv *cv, const float *w, const float *bias, const float *x,
		     float *y, float *scratch);
/* A chunk of `rows` samples (sample r at x + r x_ld, its dy at dy + r dy_ld):
 * dw (OC, C/G K K) and, when not NULL, db (OC). */
void pk_conv_dw(const struct pk_conv *cv, const float *x, size_t x_ld, const float *dy, size_t dy_ld,
		size_t rows, float *dw, float *db, float *scratch);
/* One sample: dx (C, H, W) from dy (OC, OH, OW). */
void pk_conv_dx(const struct pk_conv *cv, const float *w, const float *dy, float *dx, float *scratch);

/* x^n in double by squaring, low bit first: r = 1; while n: (n odd: r *= x);
 * x *= x; n >>= 1. Adam's bias corrections in a portable job (libm's pow
 * is not the same function on every glibc). */
double pk_powi(double x, uint64_t n);

/* ---- double precision: the schedules' and the initialisation's functions --
 * cos, sin, log and integer powers of doubles, computed in double-double
 * arithmetic from IEEE operations and fma alone and rounded once
 * (portable-f64.c): the correctly rounded result except where the exact
 * value lies within about 2^-95 (relative) of a rounding boundary, so they
 * equal glibc's (nearly correctly rounded) functions almost always, and are
 * the same bits on every CPU. cos and sin as stated for |x| < 2^30; log of
 * x <= 0, inf, NaN and pown's overflow as C99's log and pow. */
double pk_cos64(double x);
void pk_sincos64(double x, double *s, double *c);
double pk_log64(double x);
/* x^n, n >= 0 (x^0 = 1). */
double pk_pown64(double x, uint64_t n);

/* ---- transcendental functions ---------------------------------------------
 * y[i] = f(x[i]) for i < n (y may be x). Errors against the correctly
 * rounded result, over every float (doc/portable.md has the measured
 * figures): exp, log, tanh, erf, sigmoid within a few ulp; special values
 * (+-0, +-inf, NaN, denormals) as C99 says. */
void pk_exp(float *y, const float *x, size_t n);
void pk_log(float *y, const float *x, size_t n);
void pk_tanh(float *y, const float *x, size_t n);
void pk_erf(float *y, const float *x, size_t n);
/* sigmoid(x) = x >= 0 ? 1 / (1 + e) : e / (1 + e), e = pk_exp(-|x|) */
void pk_sigmoid(float *y, const float *x, size_t n);
/* One element: the same bits as the arrays. */
float pk_expf(float x);
float pk_logf(float x);
float pk_tanhf(float x);
float pk_erff(float x);
float pk_sigmoidf(float x);

#endif
