/*
 * dnnblk.c - per-sample layers on nChw16c activations. See dnnblk.h.
 *
 * Every loop runs over a group of 16 channels at once (16 lanes, contiguous
 * in both layouts): a lane is one channel, and its sum advances in (row, position) order as the NCHW loop's
 * does, so the lanes are 16 independent chains (no reassociation: the build
 * has -ffp-contract=off and no fast-math). Lanes outside [c0, c1) are
 * computed on zeros or left unwritten.
 */
#include "engine/model/dnnblk.h"

#include <math.h>
#include <string.h>

#include "engine/core/hot.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#include <immintrin.h>
#define BLK_AVX512 1
#endif

/* Group b's lanes [lo, hi) within channels [c0, c1). */
static void lanes(size_t b, size_t c0, size_t c1, size_t *lo, size_t *hi)
{
	size_t first = b * BLK;

	*lo = c0 > first ? c0 - first : 0;
	*hi = c1 < first + BLK ? c1 - first : BLK;
}

/* Where group b (channels 16b..16b+15) starts in a sample of S positions
 * laid out with width bw (dnnblk.h). */
static size_t base(size_t b, size_t S, size_t bw)
{
	return b * BLK / bw * S * bw + b * BLK % bw;
}

static void sums_block_loop(double *restrict a, double *restrict q, const float *x, const float *dy,
			    const double *mu, const double *is, size_t batch, size_t size, size_t S, size_t bw,
			    size_t off)
{
	for (size_t r = 0; r < batch; r++) {
		const float *xr = x + r * size + off, *dr = dy ? dy + r * size + off : NULL;

		for (size_t s = 0; s < S; s++, xr += bw) {
			if (dr) {
				for (size_t e = 0; e < BLK; e++) {
					a[e] += dr[e];
					q[e] += dr[e] * ((xr[e] - mu[e]) * is[e]);
				}
				dr += bw;
			} else if (mu) {
				for (size_t e = 0; e < BLK; e++) {
					double d = xr[e] - mu[e];

					a[e] += d * d;
				}
			} else {
				for (size_t e = 0; e < BLK; e++)
					a[e] += xr[e];
			}
		}
	}
}

#ifdef BLK_AVX512
/* The loop's sums, lanes 0-7 and 8-15 in two registers each: every lane
 * the same operations in the same order (no FMA: a product, then a sum). */
__attribute__((target("avx512f")))
static void sums_block_avx512(double *a, double *q, const float *x, const float *dy, const double *mu,
			      const double *is, size_t batch, size_t size, size_t S, size_t bw, size_t off, bool lo_half,
			      bool hi_half)
{
	static const double zero[BLK];
	const double *mz = mu ? mu : zero;
	__m512d a0 = _mm512_setzero_pd(), a1 = a0, q0 = a0, q1 = a0;
	__m512d m0 = _mm512_loadu_pd(mz), m1 = _mm512_loadu_pd(mz + 8);
	__m512d i0 = _mm512_loadu_pd(is), i1 = _mm512_loadu_pd(is + 8);

	for (size_t r = 0; r < batch; r++) {
		const float *xr = x + r * size + off, *dr = dy ? dy + r * size + off : NULL;

		if (dr) {
			for (size_t s = 0; s < S; s++, xr += bw, dr += bw) {
				if (lo_half) {
					__m512d x0 = _mm512_cvtps_pd(_mm256_loadu_ps(xr));
					__m512d d0 = _mm512_cvtps_pd(_mm256_loadu_ps(dr));

					a0 = _mm512_add_pd(a0, d0);
					q0 = _mm512_add_pd(q0, _mm512_mul_pd(d0, _mm512_mul_pd(_mm512_sub_pd(x0, m0), i0)));
				}
				if (hi_half) {
					__m512d x1 = _mm512_cvtps_pd(_mm256_loadu_ps(xr + 8));
					__m512d d1 = _mm512_cvtps_pd(_mm256_loadu_ps(dr + 8));

					a1 = _mm512_add_pd(a1, d1);
					q1 = _mm512_add_pd(q1, _mm512_mul_pd(d1, _mm512_mul_pd(_mm512_sub_pd(x1, m1), i1)));
				}
			}
		} else if (mu) {
			for (size_t s = 0; s < S; s++, xr += bw) {
				if (lo_half) {
					__m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(xr)), m0);

					a0 = _mm512_add_pd(a0, _mm512_mul_pd(d0, d0));
				}
				if (hi_half) {
					__m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(xr + 8)), m1);

					a1 = _mm512_add_pd(a1, _mm512_mul_pd(d1, d1));
				}
			}
		} else {
			for (size_t s = 0; s < S; s++, xr += bw) {
				if (lo_half)
					a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm256_loadu_ps(xr)));
				if (hi_half)
					a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_loadu_ps(xr + 8)));
			}
		}
	}
	_mm512_storeu_pd(a, a0);
	_mm512_storeu_pd(a + 8, a1);
	_mm512_storeu_pd(q, q0);
	_mm512_storeu_pd(q + 8, q1);
}
#endif

/* a, q (16 lanes, from 0): one group's sums (see blk_bn_sums); mu, is its
 * lanes' mean and inverse deviation (mu NULL: plain sums); lanes [lo, hi)
 * are wanted (the vector path skips a half of 8 that holds none: a team
 * member with part of a group). */
static void sums_block(double *a, double *q, const float *x, const float *dy, const double *mu,
		       const double *is, size_t batch, size_t size, size_t S, size_t bw, size_t off, size_t lo,
		       size_t hi)
{
#ifdef BLK_AVX512
	if (__builtin_cpu_supports("avx512f")) {
		sums_block_avx512(a, q, x, dy, mu, is, batch, size, S, bw, off, lo < 8, hi > 8);
		return;
	}
#endif
	sums_block_loop(a, q, x, dy, mu, is, batch, size, S, bw, off);
}

void blk_bn_sums(double *sum, double *sq, const float *x, const float *dy, const double *mean,
		 const double *invstd, size_t batch, size_t size, size_t S, size_t bw, size_t c0, size_t c1)
{
	for (size_t b = c0 / BLK; b * BLK < c1; b++) {
		double a[BLK] = { 0 }, q[BLK] = { 0 }, mu[BLK] = { 0 }, is[BLK] = { 0 };
		size_t lo, hi, at = b * BLK;

		lanes(b, c0, c1, &lo, &hi);
		for (size_t e = lo; e < hi; e++) {
			mu[e] = mean ? mean[at + e - c0] : 0.0;
			is[e] = invstd ? invstd[at + e - c0] : 0.0;
		}
		sums_block(a, q, x, dy, mean ? mu : NULL, is, batch, size, S, bw, base(b, S, bw), lo, hi);
		for (size_t e = lo; e < hi; e++) {
			sum[at + e - c0] = a[e];
			if (sq)
				sq[at + e - c0] = q[e];
		}
	}
}

HOT_CLONES
static void apply_block(float *restrict y, const float *restrict x, size_t S, size_t bw, const float *al,
			const float *be, size_t lo, size_t hi)
{
	if (lo == 0 && hi == BLK) {
		for (size_t s = 0; s < S; s++)
			for (size_t e = 0; e < BLK; e++)
				y[s * bw + e] = x[s * bw + e] * al[e] + be[e];
		return;
	}
	for (size_t s = 0; s < S; s++)
		for (size_t e = lo; e < hi; e++)
			y[s * bw + e] = x[s * bw + e] * al[e] + be[e];
}

void blk_bn_apply(float *y, const float *x, size_t batch, size_t size, size_t S, size_t bw, size_t c0,
		  size_t c1, const float *alpha, const float *beta)
{
	for (size_t b = c0 / BLK; b * BLK < c1; b++) {
		float al[BLK] = { 0 }, be[BLK] = { 0 };
		size_t lo, hi, at = b * BLK, off = base(b, S, bw);

		lanes(b, c0, c1, &lo, &hi);
		for (size_t e = lo; e < hi; e++) {
			al[e] = alpha[at + e - c0];
			be[e] = beta[at + e - c0];
		}
		for (size_t r = 0; r < batch; r++)
			apply_block(y + r * size + off, x + r * size + off, S, bw, al, be, lo, hi);
	}
}

HOT_CLONES
static void dx_block(float *restrict dx, const float *restrict dy, const float *restrict x, size_t S,
		     size_t bw, const double *mu, const double *is, const double *k, const double *mdy, const double *mdyx,
		     size_t lo, size_t hi)
{
	for (size_t s = 0; s < S; s++)
		for (size_t e = lo; e < hi; e++) {
			double xhat = (x[s * bw + e] - mu[e]) * is[e];

			dx[s * bw + e] = (float)(k[e] * (dy[s * bw + e] - mdy[e] - xhat * mdyx[e]));
		}
}

void blk_bn_dx(float *dx, const float *dy, const float *x, size_t batch, size_t size, size_t S, size_t bw,
	       size_t c0, size_t c1, const double *mean, const double *invstd, const double *k, const double *mdy,
	       const double *mdyx)
{
	for (size_t b = c0 / BLK; b * BLK < c1; b++) {
		double mu[BLK] = { 0 }, is[BLK] = { 0 }, kk[BLK] = { 0 }, a[BLK] = { 0 }, q[BLK] = { 0 };
		size_t lo, hi, at = b * BLK, off = base(b, S, bw);

		lanes(b, c0, c1, &lo, &hi);
		for (size_t e = lo; e < hi; e++) {
			mu[e] = mean[at + e - c0];
			is[e] = invstd[at + e - c0];
			kk[e] = k[at + e - c0];
			a[e] = mdy[at + e - c0];
			q[e] = mdyx[at + e - c0];
		}
		for (size_t r = 0; r < batch; r++)
			dx_block(dx + r * size + off, dy + r * size + off, x + r * size + off, S, bw, mu, is, kk, a,
				 q, lo, hi);
	}
}

void blk_global_avgpool(float *y, const float *x, size_t C, size_t h, size_t w, size_t bw)
{
	size_t S = h * w;

	for (size_t b = 0; b < C / BLK; b++) {
		const float *p = x + base(b, S, bw);
		float sum[BLK] = { 0 };

		for (size_t s = 0; s < S; s++)
			for (size_t e = 0; e < BLK; e++)
				sum[e] += p[s * bw + e];
		for (size_t e = 0; e < BLK; e++)
			y[b * BLK + e] = sum[e] / (float)h / (float)w;
	}
}

void blk_global_avgpool_backward(float *dx, const float *dy, size_t C, size_t h, size_t w, size_t bw)
{
	size_t S = h * w;

	for (size_t b = 0; b < C / BLK; b++) {
		float *p = dx + base(b, S, bw);
		float g[BLK];

		for (size_t e = 0; e < BLK; e++)
			g[e] = 0.0f + dy[b * BLK + e] / (float)h / (float)w;   /* kernels.c: a zeroed plane += g */
		for (size_t s = 0; s < S; s++)
			memcpy(p + s * bw, g, sizeof(g));
	}
}

void blk_bias_sums(float *db, const float *dy, size_t out, size_t S, size_t bw, bool first)
{
	for (size_t b = 0; b < out / BLK; b++) {
		const float *p = dy + base(b, S, bw);
		float sum[BLK] = { 0 };

		for (size_t s = 0; s < S; s++)
			for (size_t e = 0; e < BLK; e++)
				sum[e] += p[s * bw + e];
		for (size_t e = 0; e < BLK; e++)
			db[b * BLK + e] = first ? sum[e] : db[b * BLK + e] + sum[e];
	}
}

/* Where channel c's position 0 is in a sample of S positions in the layout
 * of width bw (1: NCHW); position s is bw * s further. */
static size_t chan_of(size_t c, size_t S, size_t bw)
{
	return c / bw * S * bw + c % bw;
}

/* One 16-channel group's window maxima: lanes contiguous in x (in_bw >=
 * 16), each lane's scan as k_maxpool's (the first element, then every
 * element in (i, j) order: a greater one or a NaN takes its place). */
HOT_CLONES
static void maxpool_group(float *restrict m, uint32_t *restrict best, const float *restrict x, size_t ci,
			  size_t w, size_t k, size_t st, size_t oy, size_t ox, size_t in_bw)
{
	size_t p0 = ci + (oy * st * w + ox * st) * in_bw;

	for (size_t e = 0; e < BLK; e++) {
		m[e] = x[p0 + e];
		best[e] = (uint32_t)(p0 + e);
	}
	for (size_t i = 0; i < k; i++)
		for (size_t j = 0; j < k; j++) {
			size_t at = ci + ((oy * st + i) * w + ox * st + j) * in_bw;

			for (size_t e = 0; e < BLK; e++) {
				float v = x[at + e];
				bool take = v > m[e] || v != v;

				m[e] = take ? v : m[e];
				best[e] = take ? (uint32_t)(at + e) : best[e];
			}
		}
}

void blk_maxpool(float *y, uint32_t *argmax, const float *x, size_t C, size_t h, size_t w, size_t k, size_t st,
		 size_t oh, size_t ow, size_t in_bw, size_t out_bw)
{
	for (size_t g = 0; g < C / BLK; g++) {
		size_t ci = chan_of(g * BLK, h * w, in_bw);

		for (size_t oy = 0; oy < oh; oy++)
			for (size_t ox = 0; ox < ow; ox++) {
				float m[BLK];
				uint32_t best[BLK];

				maxpool_group(m, best, x, ci, w, k, st, oy, ox, in_bw);
				for (size_t e = 0; e < BLK; e++) {
					size_t o = chan_of(g * BLK + e, oh * ow, out_bw) + (oy * ow + ox) * out_bw;

					y[o] = m[e];
					argmax[o] = best[e];
				}
			}
	}
}
