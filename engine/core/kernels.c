/*
 * kernels.c - numeric building blocks. See include/traind/kernels.h.
 *
 * Everything here is deterministic for a given input and split: fixed loop
 * orders, no FMA contraction (the build passes -ffp-contract=off), and BLAS on
 * one thread per call. The *_by wrappers run a job's kernels: these, or the
 * portable ones (portable.c).
 */
#include "traind/kernels.h"
#include "traind/portable.h"
#include "engine/core/hot.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
	openblas_set_num_threads(1);
}

void kernels_global_init(void)
{
	pthread_once(&global_once, global_init);
}

float *k_alloc_floats(size_t n)
{
	void *p = NULL;

	if (posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)))
		return NULL;
	memset(p, 0, (n ? n : 1) * sizeof(float));
	return p;
}

void k_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
	    const float *a, size_t lda, const float *b, size_t ldb,
	    float beta, float *c, size_t ldc)
{
	if (m == 0 || n == 0)
		return;
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
		    (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void k_gemm_by(enum kernels_kind kernels, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
	       const float *a, size_t lda, const float *b, size_t ldb,
	       float beta, float *c, size_t ldc)
{
	if (kernels == KERNELS_PORTABLE)
		pk_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	else
		k_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

HOT_CLONES
void k_gather(float *x, const uint8_t *pixels, const uint32_t *idx, size_t n, size_t dim)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *src = pixels + (size_t)idx[i] * dim;
		float *dst = x + i * dim;

		for (size_t j = 0; j < dim; j++)
			dst[j] = (float)src[j] / 255.0f;
	}
}

void k_gather_images(float *x, const void *pixels, bool f32, bool nhwc, size_t c, size_t hw,
		     const uint32_t *idx, size_t n, const float *mean, const float *std)
{
	size_t dim = c * hw;

	for (size_t i = 0; i < n; i++) {
		float *dst = x + i * dim;
		size_t base = (size_t)idx[i] * dim;

		for (size_t ch = 0; ch < c; ch++) {
			float *row = dst + ch * hw;

			for (size_t p = 0; p < hw; p++) {
				size_t at = base + (nhwc ? p * c + ch : ch * hw + p);
				float v;

				if (f32)
					memcpy(&v, (const float *)pixels + at, sizeof(v));
				else
					v = (float)((const uint8_t *)pixels)[at] / 255.0f;
				row[p] = mean ? (v - mean[ch]) / std[ch] : v;
			}
		}
	}
}

void k_gather_scaled(float *x, const uint8_t *pixels, const uint32_t *idx, size_t n, size_t dim,
		     float scale)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *src = pixels + (size_t)idx[i] * dim;
		float *dst = x + i * dim;

		for (size_t j = 0; j < dim; j++)
			dst[j] = (float)src[j] * scale;
	}
}

void k_fill_rows(float *z, size_t ld, size_t m, size_t c0, size_t c1, const float *b)
{
	for (size_t i = 0; i < m; i++)
		memcpy(z + i * ld + c0, b + c0, (c1 - c0) * sizeof(float));
}

void k_relu(float *z, size_t ld, size_t m, size_t c0, size_t c1)
{
	for (size_t i = 0; i < m; i++) {
		float *row = z + i * ld;

		for (size_t j = c0; j < c1; j++)
			row[j] = row[j] > 0.0f ? row[j] : 0.0f;
	}
}

double k_softmax_xent(const float *logits, const uint8_t *y, size_t m, size_t k,
		      float grad_scale, float *dlogits, uint8_t *pred)
{
	double loss = 0.0;

	for (size_t i = 0; i < m; i++) {
		const float *z = logits + i * k;
		float mx = z[0];
		size_t arg = 0;
		float sum = 0.0f;
		float lse;

		for (size_t j = 1; j < k; j++) {
			if (z[j] > mx) {
				mx = z[j];
				arg = j;
			}
		}
		for (size_t j = 0; j < k; j++)
			sum += expf(z[j] - mx);
		lse = logf(sum);
		loss += (double)(lse - (z[y[i]] - mx));
		if (pred)
			pred[i] = (uint8_t)arg;
		if (dlogits) {
			float *d = dlogits + i * k;

			for (size_t j = 0; j < k; j++) {
				float p = expf(z[j] - mx) / sum;

				d[j] = (p - (j == y[i] ? 1.0f : 0.0f)) * grad_scale;
			}
		}
	}
	return loss;
}

HOT_CLONES
void k_relu_rows(float *restrict y, const float *restrict x, size_t len)
{
	for (size_t e = 0; e < len; e++)
		y[e] = x[e] > 0.0f ? x[e] : 0.0f;
}

HOT_CLONES
void k_relu_backward_rows(float *restrict dx, const float *restrict y, const float *restrict dy,
			  size_t len)
{
	for (size_t e = 0; e < len; e++)
		dx[e] = y[e] > 0.0f ? dy[e] : 0.0f;
}

void k_relu_backward(float *dz, const float *act, size_t ld, size_t m, size_t c0, size_t c1)
{
	for (size_t i = 0; i < m; i++) {
		float *d = dz + i * ld;
		const float *a = act + i * ld;

		for (size_t j = c0; j < c1; j++)
			d[j] = a[j] > 0.0f ? d[j] : 0.0f;
	}
}

void k_colsum(float *db, const float *d, size_t ld, size_t m, size_t c0, size_t c1)
{
	for (size_t j = c0; j < c1; j++)
		db[j] = 0.0f;
	for (size_t i = 0; i < m; i++) {
		const float *row = d + i * ld;

		for (size_t j = c0; j < c1; j++)
			db[j] += row[j];
	}
}

/* ---- convolution and pooling ------------------------------------------ */

/* The output columns [*lo, *hi) whose input column ox*s + j - pad lies in [0, w). */
static void valid_cols(size_t ow, size_t w, size_t s, size_t j, size_t pad, size_t *lo, size_t *hi)
{
	size_t a = j >= pad ? 0 : (pad - j + s - 1) / s;         /* first ox with ox*s + j >= pad */
	size_t b = w + pad > j ? (w + pad - j - 1) / s + 1 : 0;  /* first ox with ox*s + j - pad >= w */

	*lo = a < ow ? a : ow;
	*hi = b < ow ? b : ow;
	if (*hi < *lo)
		*hi = *lo;
}

/* One row segment of k_im2col: lenet5's rows are 24-28 floats, where a
 * call to memcpy cost as much as im2col's own loops (perf: 10% of an epoch
 * in memmove). */
static inline void copy_floats(float *restrict dst, const float *restrict src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = src[i];
}

/* The attribute keeps GCC from turning copy_floats' loop (and the zeroing
 * ones) back into calls to memcpy and memset. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
/* k_im2col of a "same" convolution (stride 1, 2 pad = k - 1, so OW = W):
 * each patch row is the plane shifted by (i - pad, j - pad), copied as one
 * block over the rows that exist, then the columns that wrapped around from
 * the neighbouring image row set to 0. Only data moves: the result is
 * k_im2col's, bit for bit. */
static void im2col_same(float *col, const float *x, size_t c, size_t h, size_t w, size_t k,
			size_t pad, size_t oh, size_t ow)
{
	for (size_t ch = 0; ch < c; ch++) {
		const float *plane = x + ch * h * w;

		for (size_t i = 0; i < k; i++) {
			ptrdiff_t dy = (ptrdiff_t)i - (ptrdiff_t)pad;
			size_t y0 = dy < 0 ? (size_t)-dy : 0;
			size_t y1 = (ptrdiff_t)oh < (ptrdiff_t)h - dy ? oh : (size_t)((ptrdiff_t)h - dy);

			for (size_t j = 0; j < k; j++) {
				ptrdiff_t dx = (ptrdiff_t)j - (ptrdiff_t)pad;
				float *row = col + ((ch * k + i) * k + j) * oh * ow;
				size_t n, first = dx < 0 ? (size_t)-dx : 0, last = dx > 0 ? (size_t)dx : 0;

				if (y1 <= y0) {
					for (size_t t = 0; t < oh * ow; t++)
						row[t] = 0.0f;
					continue;
				}
				for (size_t t = 0; t < y0 * ow; t++)
					row[t] = 0.0f;
				/* the block, less the ends that would read outside the plane */
				n = (y1 - y0) * ow;
				copy_floats(row + y0 * ow + first,
					    plane + ((ptrdiff_t)y0 + dy) * (ptrdiff_t)w + dx + (ptrdiff_t)first,
					    n - first - last);
				for (size_t oy = y0; oy < y1; oy++) {
					for (size_t ox = 0; ox < first; ox++)
						row[oy * ow + ox] = 0.0f;
					for (size_t ox = ow - last; ox < ow; ox++)
						row[oy * ow + ox] = 0.0f;
				}
				for (size_t t = y1 * ow; t < oh * ow; t++)
					row[t] = 0.0f;
			}
		}
	}
}

void k_im2col(float *col, const float *x, size_t c, size_t h, size_t w, size_t k, size_t s,
	      size_t pad, size_t oh, size_t ow)
{
	if (s == 1 && 2 * pad + 1 == k && ow == w && oh == h) {
		im2col_same(col, x, c, h, w, k, pad, oh, ow);
		return;
	}
	for (size_t ch = 0; ch < c; ch++) {
		const float *plane = x + ch * h * w;

		for (size_t i = 0; i < k; i++) {
			for (size_t j = 0; j < k; j++) {
				float *row = col + ((ch * k + i) * k + j) * oh * ow;
				size_t lo, hi;

				valid_cols(ow, w, s, j, pad, &lo, &hi);
				for (size_t oy = 0; oy < oh; oy++) {
					ptrdiff_t iy = (ptrdiff_t)(oy * s + i) - (ptrdiff_t)pad;
					float *dst = row + oy * ow;
					ptrdiff_t base;   /* x column of ox is plane[base + ox * s] */

					if (iy < 0 || iy >= (ptrdiff_t)h) {
						memset(dst, 0, ow * sizeof(float));
						continue;
					}
					base = iy * (ptrdiff_t)w + (ptrdiff_t)j - (ptrdiff_t)pad;
					for (size_t ox = 0; ox < lo; ox++)
						dst[ox] = 0.0f;
					if (s == 1 && hi > lo)
						copy_floats(dst + lo, plane + base + (ptrdiff_t)lo, hi - lo);
					else
						for (size_t ox = lo; ox < hi; ox++)
							dst[ox] = plane[base + (ptrdiff_t)(ox * s)];
					for (size_t ox = hi; ox < ow; ox++)
						dst[ox] = 0.0f;
				}
			}
		}
	}
}

/* One row segment of k_col2im: dst[x] += src[x], each element one add in
 * the loop order of k_col2im, so vectorising it keeps every bit. */
static inline void add_floats(float *restrict dst, const float *restrict src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] += src[i];
}

HOT_CLONES
void k_col2im(float *dx, const float *col, size_t c, size_t h, size_t w, size_t k, size_t s,
	      size_t pad, size_t oh, size_t ow)
{
	memset(dx, 0, c * h * w * sizeof(float));
	for (size_t ch = 0; ch < c; ch++) {
		float *plane = dx + ch * h * w;

		for (size_t i = 0; i < k; i++) {
			for (size_t j = 0; j < k; j++) {
				const float *row = col + ((ch * k + i) * k + j) * oh * ow;
				size_t lo, hi;

				valid_cols(ow, w, s, j, pad, &lo, &hi);
				for (size_t oy = 0; oy < oh; oy++) {
					ptrdiff_t iy = (ptrdiff_t)(oy * s + i) - (ptrdiff_t)pad;
					const float *src = row + oy * ow;
					ptrdiff_t base;

					if (iy < 0 || iy >= (ptrdiff_t)h)
						continue;
					base = iy * (ptrdiff_t)w + (ptrdiff_t)j - (ptrdiff_t)pad;
					if (s == 1 && hi > lo)
						add_floats(plane + base + (ptrdiff_t)lo, src + lo, hi - lo);
					else
						for (size_t ox = lo; ox < hi; ox++)
							plane[base + (ptrdiff_t)(ox * s)] += src[ox];
				}
			}
		}
	}
}

/* The same comparisons for 2 x 2 windows, stride 2, in the same order. */
static void maxpool2(float *y, uint32_t *argmax, const float *x, size_t c, size_t h, size_t w,
		     size_t oh, size_t ow)
{
	for (size_t ch = 0; ch < c; ch++) {
		const float *plane = x + ch * h * w;

		for (size_t oy = 0; oy < oh; oy++) {
			const size_t row = 2 * oy * w;
			float *yr = y + (ch * oh + oy) * ow;
			uint32_t *ar = argmax + (ch * oh + oy) * ow;

			for (size_t ox = 0; ox < ow; ox++) {
				const size_t at = row + 2 * ox, o[3] = { at + 1, at + w, at + w + 1 };
				size_t best = at;
				float m = plane[at];

				for (int q = 0; q < 3; q++) {   /* selects, not branches: maxima are random */
					float v = plane[o[q]];
					bool take = (v > m) | (v != v);

					m = take ? v : m;
					best = take ? o[q] : best;
				}
				yr[ox] = m;
				ar[ox] = (uint32_t)(ch * h * w + best);
			}
		}
	}
}

void k_maxpool(float *y, uint32_t *argmax, const float *x, size_t c, size_t h, size_t w, size_t k,
	       size_t s, size_t oh, size_t ow)
{
	if (k == 2 && s == 2) {
		maxpool2(y, argmax, x, c, h, w, oh, ow);
		return;
	}
	for (size_t ch = 0; ch < c; ch++) {
		const float *plane = x + ch * h * w;

		for (size_t oy = 0; oy < oh; oy++) {
			for (size_t ox = 0; ox < ow; ox++) {
				size_t best = (oy * s) * w + ox * s;
				float m = plane[best];

				for (size_t i = 0; i < k; i++) {
					for (size_t j = 0; j < k; j++) {
						size_t at = (oy * s + i) * w + ox * s + j;
						float v = plane[at];

						if (v > m || isnan(v)) {
							m = v;
							best = at;
						}
					}
				}
				y[(ch * oh + oy) * ow + ox] = m;
				argmax[(ch * oh + oy) * ow + ox] = (uint32_t)(ch * h * w + best);
			}
		}
	}
}

void k_maxpool_backward(float *dx, const float *dy, const uint32_t *argmax, size_t in_size,
			size_t out_size)
{
	memset(dx, 0, in_size * sizeof(float));
	for (size_t o = 0; o < out_size; o++)
		dx[argmax[o]] += dy[o];
}

void k_avgpool(float *y, const float *x, size_t c, size_t h, size_t w, size_t k, size_t s,
	       size_t oh, size_t ow)
{
	float div = (float)(k * k);

	for (size_t ch = 0; ch < c; ch++) {
		const float *plane = x + ch * h * w;

		for (size_t oy = 0; oy < oh; oy++) {
			for (size_t ox = 0; ox < ow; ox++) {
				float sum = 0.0f;

				for (size_t i = 0; i < k; i++)
					for (size_t j = 0; j < k; j++)
						sum += plane[(oy * s + i) * w + ox * s + j];
				y[(ch * oh + oy) * ow + ox] = sum / div;
			}
		}
	}
}

void k_avgpool_backward(float *dx, const float *dy, size_t c, size_t h, size_t w, size_t k,
			size_t s, size_t oh, size_t ow)
{
	float div = (float)(k * k);

	memset(dx, 0, c * h * w * sizeof(float));
	for (size_t ch = 0; ch < c; ch++) {
		float *plane = dx + ch * h * w;

		for (size_t oy = 0; oy < oh; oy++) {
			for (size_t ox = 0; ox < ow; ox++) {
				float g = dy[(ch * oh + oy) * ow + ox] / div;

				for (size_t i = 0; i < k; i++)
					for (size_t j = 0; j < k; j++)
						plane[(oy * s + i) * w + ox * s + j] += g;
			}
		}
	}
}

/* ---- the layers after LeNet ----------------------------------------------- */

void k_im2col_dil(float *col, const float *x, size_t c, size_t h, size_t w, size_t k, size_t s,
		  size_t pad, size_t d, size_t oh, size_t ow)
{
	for (size_t ch = 0; ch < c; ch++) {
		const float *plane = x + ch * h * w;

		for (size_t i = 0; i < k; i++) {
			for (size_t j = 0; j < k; j++) {
				float *row = col + ((ch * k + i) * k + j) * oh * ow;

				for (size_t oy = 0; oy < oh; oy++) {
					ptrdiff_t iy = (ptrdiff_t)(oy * s + i * d) - (ptrdiff_t)pad;

					for (size_t ox = 0; ox < ow; ox++) {
						ptrdiff_t ix = (ptrdiff_t)(ox * s + j * d) - (ptrdiff_t)pad;

						row[oy * ow + ox] = iy < 0 || ix < 0 || iy >= (ptrdiff_t)h ||
									    ix >= (ptrdiff_t)w
									    ? 0.0f
									    : plane[iy * (ptrdiff_t)w + ix];
					}
				}
			}
		}
	}
}

void k_col2im_dil(float *dx, const float *col, size_t c, size_t h, size_t w, size_t k, size_t s,
		  size_t pad, size_t d, size_t oh, size_t ow)
{
	memset(dx, 0, c * h * w * sizeof(float));
	for (size_t ch = 0; ch < c; ch++) {
		float *plane = dx + ch * h * w;

		for (size_t i = 0; i < k; i++) {
			for (size_t j = 0; j < k; j++) {
				const float *row = col + ((ch * k + i) * k + j) * oh * ow;

				for (size_t oy = 0; oy < oh; oy++) {
					ptrdiff_t iy = (ptrdiff_t)(oy * s + i * d) - (ptrdiff_t)pad;

					if (iy < 0 || iy >= (ptrdiff_t)h)
						continue;
					for (size_t ox = 0; ox < ow; ox++) {
						ptrdiff_t ix = (ptrdiff_t)(ox * s + j * d) - (ptrdiff_t)pad;

						if (ix >= 0 && ix < (ptrdiff_t)w)
							plane[iy * (ptrdiff_t)w + ix] += row[oy * ow + ox];
					}
				}
			}
		}
	}
}

void k_maxpool_pad(float *y, uint32_t *argmax, const float *x, size_t c, size_t h, size_t w,
		   size_t k, size_t s, size_t pad, size_t oh, size_t ow)
{
	for (size_t ch = 0; ch < c; ch++) {
		const float *plane = x + ch * h * w;

		for (size_t oy = 0; oy < oh; oy++) {
			ptrdiff_t y0 = (ptrdiff_t)(oy * s) - (ptrdiff_t)pad;
			ptrdiff_t y1 = y0 + (ptrdiff_t)k < (ptrdiff_t)h ? y0 + (ptrdiff_t)k : (ptrdiff_t)h;

			y0 = y0 < 0 ? 0 : y0;
			for (size_t ox = 0; ox < ow; ox++) {
				ptrdiff_t x0 = (ptrdiff_t)(ox * s) - (ptrdiff_t)pad;
				ptrdiff_t x1 = x0 + (ptrdiff_t)k < (ptrdiff_t)w ? x0 + (ptrdiff_t)k : (ptrdiff_t)w;
				size_t best;
				float m;

				x0 = x0 < 0 ? 0 : x0;
				best = (size_t)(y0 * (ptrdiff_t)w + x0);
				m = plane[best];
				for (ptrdiff_t iy = y0; iy < y1; iy++) {
					for (ptrdiff_t ix = x0; ix < x1; ix++) {
						size_t at = (size_t)(iy * (ptrdiff_t)w + ix);
						float v = plane[at];

						if (v > m || isnan(v)) {
							m = v;
							best = at;
						}
					}
				}
				y[(ch * oh + oy) * ow + ox] = m;
				argmax[(ch * oh + oy) * ow + ox] = (uint32_t)(ch * h * w + best);
			}
		}
	}
}

void k_adaptive_avgpool(float *y, const float *x, size_t c, size_t h, size_t w, size_t oh,
			size_t ow)
{
	for (size_t ch = 0; ch < c; ch++) {
		const float *plane = x + ch * h * w;

		for (size_t oy = 0; oy < oh; oy++) {
			size_t y0 = oy * h / oh, y1 = ((oy + 1) * h + oh - 1) / oh;

			for (size_t ox = 0; ox < ow; ox++) {
				size_t x0 = ox * w / ow, x1 = ((ox + 1) * w + ow - 1) / ow;
				float sum = 0.0f;

				for (size_t iy = y0; iy < y1; iy++)
					for (size_t ix = x0; ix < x1; ix++)
						sum += plane[iy * w + ix];
				y[(ch * oh + oy) * ow + ox] = sum / (float)(y1 - y0) / (float)(x1 - x0);
			}
		}
	}
}

void k_adaptive_avgpool_backward(float *dx, const float *dy, size_t c, size_t h, size_t w,
				 size_t oh, size_t ow)
{
	memset(dx, 0, c * h * w * sizeof(float));
	for (size_t ch = 0; ch < c; ch++) {
		float *plane = dx + ch * h * w;

		for (size_t oy = 0; oy < oh; oy++) {
			size_t y0 = oy * h / oh, y1 = ((oy + 1) * h + oh - 1) / oh;

			for (size_t ox = 0; ox < ow; ox++) {
				size_t x0 = ox * w / ow, x1 = ((ox + 1) * w + ow - 1) / ow;
				float g = dy[(ch * oh + oy) * ow + ox] / (float)(y1 - y0) / (float)(x1 - x0);

				for (size_t iy = y0; iy < y1; iy++)
					for (size_t ix = x0; ix < x1; ix++)
						plane[iy * w + ix] += g;
			}
		}
	}
}

void k_upsample_nearest(float *y, const float *x, size_t c, size_t h, size_t w, size_t f)
{
	size_t oh = h * f, ow = w * f;

	for (size_t ch = 0; ch < c; ch++)
		for (size_t oy = 0; oy < oh; oy++)
			for (size_t ox = 0; ox < ow; ox++)
				y[(ch * oh + oy) * ow + ox] = x[(ch * h + oy / f) * w + ox / f];
}

void k_upsample_nearest_backward(float *dx, const float *dy, size_t c, size_t h, size_t w,
				 size_t f)
{
	size_t oh = h * f, ow = w * f;

	memset(dx, 0, c * h * w * sizeof(float));
	for (size_t ch = 0; ch < c; ch++)
		for (size_t oy = 0; oy < oh; oy++)
			for (size_t ox = 0; ox < ow; ox++)
				dx[(ch * h + oy / f) * w + ox / f] += dy[(ch * oh + oy) * ow + ox];
}
