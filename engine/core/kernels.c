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
#include "traind/numerics.h"
#include "engine/core/bf16.h"
#include "engine/core/hot.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
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

const char *k_precision_name(enum k_precision p)
{
	switch (p) {
	case K_FP32: return "fp32";
	case K_BF16: return "bf16";
	}
	return "?";
}

int k_precision_check(enum k_precision p, struct tr_err *err)
{
	if (p == K_FP32)
		return 0;
	if (p != K_BF16)
		return tr_err_set_key(err, -EINVAL, "precision", "unknown precision");
	if (bf16_isa() == BF16_NONE)
		return tr_err_set_key(err, -EINVAL, "precision", "%s", bf16_why());
	return 0;
}

void k_precision_numerics(enum k_precision p, char *buf, size_t len)
{
	if (p == K_BF16)
		snprintf(buf, len, "traind-bf16 %d %s", BF16_KERNELS_VERSION, bf16_isa_name(bf16_isa()));
	else
		numerics_blas(buf, len);
}

size_t k_gemm_scratch_len(enum k_precision p, size_t kmax)
{
	return p == K_BF16 ? bf16_scratch_len(kmax) : 0;
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

void k_gemm_job(enum kernels_kind kernels, const struct k_gemm_mode *mode, int ta, int tb, size_t m,
		size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b,
		size_t ldb, float beta, float *c, size_t ldc)
{
	if (mode && mode->prec == K_BF16) {
		if (m && n)
			bf16_gemm(bf16_isa(), mode->scratch, mode->scratch_len, ta, tb, m, n, k, alpha,
				  a, lda, b, ldb, beta, c, ldc);
		return;
	}
	k_gemm_by(kernels, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* The rows a gather reads lie anywhere in a data set of tens of megabytes,
 * one or a few pages each: each row's first cache line was a miss the
 * hardware prefetcher could not foresee (85 % of k_gather_scaled's samples
 * in a perf profile of the lesson's epoch sat on its first load). So the
 * gathers ask for the lines of the row GATHER_AHEAD rows ahead while they
 * convert this one. A prefetch changes no value. */
#define GATHER_AHEAD 4

static inline void prefetch_row(const uint8_t *row, size_t dim)
{
	for (size_t off = 0; off < dim; off += 64)
		__builtin_prefetch(row + off, 0, 3);
	__builtin_prefetch(row + dim - 1, 0, 3);
}

/* Before row i's conversion: the first rows' lines (i = 0), then row i + GATHER_AHEAD's. */
static inline void gather_prefetch(const uint8_t *pixels, const uint32_t *idx, size_t i, size_t n,
				   size_t dim)
{
	if (i == 0)
		for (size_t r = 0; r < n && r < GATHER_AHEAD; r++)
			prefetch_row(pixels + (size_t)idx[r] * dim, dim);
	if (i + GATHER_AHEAD < n)
		prefetch_row(pixels + (size_t)idx[i + GATHER_AHEAD] * dim, dim);
}

void k_prefetch_rows(const uint8_t *pixels, const uint32_t *idx, size_t n, size_t dim)
{
	for (size_t i = 0; i < n; i++)
		prefetch_row(pixels + (size_t)idx[i] * dim, dim);
}

HOT_CLONES
void k_gather(float *x, const uint8_t *pixels, const uint32_t *idx, size_t n, size_t dim)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *src = pixels + (size_t)idx[i] * dim;
		float *dst = x + i * dim;

		gather_prefetch(pixels, idx, i, n, dim);
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

HOT_CLONES
void k_gather_scaled(float *x, const uint8_t *pixels, const uint32_t *idx, size_t n, size_t dim,
		     float scale)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *src = pixels + (size_t)idx[i] * dim;
		float *dst = x + i * dim;

		gather_prefetch(pixels, idx, i, n, dim);
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

/* Stride 1, rows of at most 32 floats (lenet5's 28 and 10; most small
 * images'), on AVX-512: each output row of a (channel, i, j) plane is one or
 * two masked loads and stores, the zero padding included, where the loops
 * below spent their time on loop control around 24-float copies (perf: a
 * quarter of a lenet5 epoch in im2col). The same values land in the same
 * places (im2col copies; col2im adds each element's terms in the same
 * order), so the bits are those of the loops. Masked-off lanes are never
 * read, so the window may hang over the plane's edges. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#include <immintrin.h>
#define ROWS_AVX512 1
#define ROWS_MAX 32

/* Bits [lo, hi) of a 16-lane mask for lanes [base, base + 16). */
static inline __mmask16 lanes(size_t lo, size_t hi, size_t base)
{
	size_t a = lo > base ? lo - base : 0, b = hi > base ? hi - base : 0;

	a = a < 16 ? a : 16;
	b = b < 16 ? b : 16;
	return b > a ? (__mmask16)(((1u << b) - 1u) & ~((1u << a) - 1u)) : 0;
}

__attribute__((target("avx512f")))
static void im2col_s1_avx512(float *col, const float *x, size_t c, size_t h, size_t w, size_t k, size_t pad,
			     size_t oh, size_t ow)
{
	const __mmask16 st0 = lanes(0, ow, 0), st1 = lanes(0, ow, 16);
	const __m512 zero = _mm512_setzero_ps();

	for (size_t ch = 0; ch < c; ch++) {
		const float *plane = x + ch * h * w;

		for (size_t i = 0; i < k; i++) {
			for (size_t j = 0; j < k; j++) {
				float *row = col + ((ch * k + i) * k + j) * oh * ow;
				size_t lo, hi;
				__mmask16 m0, m1;

				valid_cols(ow, w, 1, j, pad, &lo, &hi);
				m0 = lanes(lo, hi, 0);
				m1 = lanes(lo, hi, 16);
				for (size_t oy = 0; oy < oh; oy++) {
					ptrdiff_t iy = (ptrdiff_t)(oy + i) - (ptrdiff_t)pad;
					float *dst = row + oy * ow;
					__m512 v0 = zero, v1 = zero;

					if (iy >= 0 && iy < (ptrdiff_t)h) {
						/* element ox of the window is x column ox + j - pad */
						const char *src = (const char *)plane +
								  (iy * (ptrdiff_t)w + (ptrdiff_t)j - (ptrdiff_t)pad) *
									  (ptrdiff_t)sizeof(float);

						v0 = _mm512_maskz_loadu_ps(m0, src);
						v1 = _mm512_maskz_loadu_ps(m1, src + 16 * sizeof(float));
					}
					_mm512_mask_storeu_ps(dst, st0, v0);
					if (st1)
						_mm512_mask_storeu_ps(dst + 16, st1, v1);
				}
			}
		}
	}
}

/* col2im by output rows: each row of dx (w <= 32 floats) summed in two
 * registers over its terms in the loops' order ((i, j) for the one oy that
 * lands on it), starting from +0.0 as the memset, masked so that a lane
 * takes only its own terms; then stored once. (Adding into dx in memory, row
 * segment by segment, stalled on masked stores that cannot forward to the
 * next load.) */
__attribute__((target("avx512f")))
static void col2im_s1_avx512(float *dx, const float *col, size_t c, size_t h, size_t w, size_t k, size_t pad,
			     size_t oh, size_t ow)
{
	const __mmask16 st0 = lanes(0, w, 0), st1 = lanes(0, w, 16);
	__mmask16 m0[ROWS_MAX], m1[ROWS_MAX];

	/* per kernel column j: the dx columns ix = ox + j - pad it reaches */
	for (size_t j = 0; j < k; j++) {
		size_t lo, hi;

		valid_cols(ow, w, 1, j, pad, &lo, &hi);
		m0[j] = hi > lo ? lanes(lo + j - pad, hi + j - pad, 0) : 0;
		m1[j] = hi > lo ? lanes(lo + j - pad, hi + j - pad, 16) : 0;
	}
	for (size_t ch = 0; ch < c; ch++) {
		for (size_t iy = 0; iy < h; iy++) {
			__m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
			float *dst = dx + (ch * h + iy) * w;

			for (size_t i = 0; i < k; i++) {
				ptrdiff_t oy = (ptrdiff_t)iy + (ptrdiff_t)pad - (ptrdiff_t)i;
				const float *rows;

				if (oy < 0 || oy >= (ptrdiff_t)oh)
					continue;
				rows = col + (ch * k + i) * k * oh * ow + (size_t)oy * ow;
				for (size_t j = 0; j < k; j++) {
					/* dx column ix takes element ix - j + pad of row (i, j) */
					const char *src = (const char *)(rows + j * oh * ow) +
							  ((ptrdiff_t)pad - (ptrdiff_t)j) * (ptrdiff_t)sizeof(float);

					a0 = _mm512_mask_add_ps(a0, m0[j], a0, _mm512_maskz_loadu_ps(m0[j], src));
					if (m1[j])
						a1 = _mm512_mask_add_ps(a1, m1[j], a1,
									_mm512_maskz_loadu_ps(m1[j], src + 16 * sizeof(float)));
				}
			}
			_mm512_mask_storeu_ps(dst, st0, a0);
			if (st1)
				_mm512_mask_storeu_ps(dst + 16, st1, a1);
		}
	}
}

/* AVX-512 F usable (GCC's check includes the OS's XCR0). */
static bool have_avx512(void)
{
	return __builtin_cpu_supports("avx512f");
}

/* Stride 1, rows of at most 32 floats in and out, a kernel at most 32 wide. */
static bool rows_avx512(size_t s, size_t w, size_t ow, size_t k)
{
	return have_avx512() && s == 1 && ow <= ROWS_MAX && w <= ROWS_MAX && k <= ROWS_MAX;
}
#endif

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

HOT_CLONES
void k_im2col(float *col, const float *x, size_t c, size_t h, size_t w, size_t k, size_t s,
	      size_t pad, size_t oh, size_t ow)
{
#ifdef ROWS_AVX512
	if (rows_avx512(s, w, ow, k)) {
		im2col_s1_avx512(col, x, c, h, w, k, pad, oh, ow);
		return;
	}
#endif
	/* (a kernel reaching past a whole row or column of the image takes
	 * the loops: the block copy assumes a shift shorter than a row) */
	if (s == 1 && 2 * pad + 1 == k && ow == w && oh == h && pad < w && pad < h) {
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

/* dst[i] += src[i]: each element's own sum, so a vector of them keeps the
 * bits (the order of the additions into each element is the loops' order). */
static inline void add_floats(float *restrict dst, const float *restrict src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] += src[i];
}

HOT_CLONES
void k_col2im(float *dx, const float *col, size_t c, size_t h, size_t w, size_t k, size_t s,
	      size_t pad, size_t oh, size_t ow)
{
#ifdef ROWS_AVX512
	if (rows_avx512(s, w, ow, k)) {
		col2im_s1_avx512(dx, col, c, h, w, k, pad, oh, ow);
		return;
	}
#endif
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

#ifdef ROWS_AVX512
/* maxpool2 on AVX-512, 16 outputs at a time: the two input rows' 32 floats
 * split into even and odd columns, then the scalar loop's comparisons and
 * selects lane by lane (lenet5's rows, 14 and 5 outputs, never reached the
 * compiler's 16-wide loop). */
__attribute__((target("avx512f")))
static void maxpool2_avx512(float *y, uint32_t *argmax, const float *x, size_t c, size_t h, size_t w,
			    size_t oh, size_t ow)
{
	const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
	const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
	const __m512i twice = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);

	for (size_t ch = 0; ch < c; ch++) {
		for (size_t oy = 0; oy < oh; oy++) {
			const float *r0 = x + ch * h * w + 2 * oy * w, *r1 = r0 + w;
			float *yr = y + (ch * oh + oy) * ow;
			uint32_t *ar = argmax + (ch * oh + oy) * ow;
			const uint32_t at0 = (uint32_t)(ch * h * w + 2 * oy * w);

			for (size_t ox = 0; ox < ow; ox += 16) {
				size_t n = ow - ox < 16 ? ow - ox : 16;
				__mmask16 in0 = lanes(0, 2 * n, 0), in1 = lanes(0, 2 * n, 16), out = lanes(0, n, 0);
				__m512 p0 = _mm512_maskz_loadu_ps(in0, r0 + 2 * ox);
				__m512 p1 = _mm512_maskz_loadu_ps(in1, r0 + 2 * ox + 16);
				__m512 q0 = _mm512_maskz_loadu_ps(in0, r1 + 2 * ox);
				__m512 q1 = _mm512_maskz_loadu_ps(in1, r1 + 2 * ox + 16);
				__m512i at = _mm512_add_epi32(_mm512_set1_epi32((int)(at0 + 2 * (uint32_t)ox)), twice);
				__m512 m = _mm512_permutex2var_ps(p0, even, p1), v;
				__m512i best = at;
				__mmask16 take;

				v = _mm512_permutex2var_ps(p0, odd, p1);
				take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
				m = _mm512_mask_blend_ps(take, m, v);
				best = _mm512_mask_blend_epi32(take, best, _mm512_add_epi32(at, _mm512_set1_epi32(1)));
				v = _mm512_permutex2var_ps(q0, even, q1);
				take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
				m = _mm512_mask_blend_ps(take, m, v);
				best = _mm512_mask_blend_epi32(take, best, _mm512_add_epi32(at, _mm512_set1_epi32((int)w)));
				v = _mm512_permutex2var_ps(q0, odd, q1);
				take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
				m = _mm512_mask_blend_ps(take, m, v);
				best = _mm512_mask_blend_epi32(take, best, _mm512_add_epi32(at, _mm512_set1_epi32((int)w + 1)));
				_mm512_mask_storeu_ps(yr + ox, out, m);
				_mm512_mask_storeu_epi32(ar + ox, out, best);
			}
		}
	}
}
#endif

/* The same comparisons for 2 x 2 windows, stride 2, in the same order:
 * the window's first element, then a NaN or anything larger wins, its
 * offset with it. Selects, not branches (maxima are random), written so
 * that GCC vectorizes the row (stride-2 loads, 32-bit offsets). */
HOT_CLONES
static void maxpool2(float *y, uint32_t *argmax, const float *x, size_t c, size_t h, size_t w,
		     size_t oh, size_t ow)
{
	for (size_t ch = 0; ch < c; ch++) {
		const float *plane = x + ch * h * w;

		for (size_t oy = 0; oy < oh; oy++) {
			const float *restrict r0 = plane + 2 * oy * w, *restrict r1 = r0 + w;
			float *restrict yr = y + (ch * oh + oy) * ow;
			uint32_t *restrict ar = argmax + (ch * oh + oy) * ow;
			const uint32_t at0 = (uint32_t)(ch * h * w + 2 * oy * w), wu = (uint32_t)w;

			for (size_t ox = 0; ox < ow; ox++) {
				const uint32_t at = at0 + 2 * (uint32_t)ox;
				float m = r0[2 * ox], v;
				uint32_t best = at;
				bool take;

				v = r0[2 * ox + 1];
				take = (v > m) | (v != v);
				m = take ? v : m;
				best = take ? at + 1 : best;
				v = r1[2 * ox];
				take = (v > m) | (v != v);
				m = take ? v : m;
				best = take ? at + wu : best;
				v = r1[2 * ox + 1];
				take = (v > m) | (v != v);
				m = take ? v : m;
				best = take ? at + wu + 1 : best;
				yr[ox] = m;
				ar[ox] = best;
			}
		}
	}
}

void k_maxpool(float *y, uint32_t *argmax, const float *x, size_t c, size_t h, size_t w, size_t k,
	       size_t s, size_t oh, size_t ow)
{
	if (k == 2 && s == 2) {
#ifdef ROWS_AVX512
		if (have_avx512()) {
			maxpool2_avx512(y, argmax, x, c, h, w, oh, ow);
			return;
		}
#endif
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

/* ---- batch normalisation ---------------------------------------------- */

/* A loop per channel, as every BatchNorm ran before the vector path: the
 * reference the AVX-512 path matches bit for bit, and the path without it. */
static void bn_sums_loop(double *sum, double *sq, const float *x, const float *dy, const double *mean,
			 const double *invstd, size_t batch, size_t size, size_t S, size_t c0, size_t c1)
{
	for (size_t c = c0; c < c1; c++) {
		double a = 0.0, b = 0.0;

		for (size_t r = 0; r < batch; r++) {
			const float *xr = x + r * size + c * S, *dr = dy ? dy + r * size + c * S : NULL;

			for (size_t s = 0; s < S; s++) {
				if (dy) {
					a += dr[s];
					b += dr[s] * ((xr[s] - mean[c - c0]) * invstd[c - c0]);
				} else if (mean) {
					double d = xr[s] - mean[c - c0];

					a += d * d;
				} else {
					a += xr[s];
				}
			}
		}
		sum[c - c0] = a;
		if (sq)
			sq[c - c0] = b;
	}
}

#ifdef ROWS_AVX512
static bool have_avx512vl(void)
{
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
}

/* The three sums of k_bn_sums, k_bn_sqsums (mean) and k_bn_grad_sums (dy):
 * lanes q < 8 are channels c + q, read by a gather at offsets q*S; each lane
 * adds its channel's terms in (r, s) order, the loop's chain. */
__attribute__((target("avx512f,avx512vl")))
static void bn_sums_avx512(double *sum, double *sq, const float *x, const float *dy, const double *mean,
			   const double *invstd, size_t batch, size_t size, size_t S, size_t c0, size_t c1)
{
	const __m256i off = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
					       _mm256_set1_epi32((int)S));

	for (size_t c = c0; c < c1; c += 8) {
		__mmask8 m = (__mmask8)(c1 - c >= 8 ? 0xff : (1u << (c1 - c)) - 1u);
		__m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd(), mu = a, is = a;

		if (mean)
			mu = _mm512_maskz_loadu_pd(m, mean + (c - c0));
		if (invstd)
			is = _mm512_maskz_loadu_pd(m, invstd + (c - c0));
		for (size_t r = 0; r < batch; r++) {
			const float *xr = x + r * size + c * S;

			if (dy) {
				const float *dr = dy + r * size + c * S;

				for (size_t s = 0; s < S; s++) {
					__m512d xv = _mm512_cvtps_pd(
						_mm256_mmask_i32gather_ps(_mm256_setzero_ps(), m, off, xr + s, 4));
					__m512d dv = _mm512_cvtps_pd(
						_mm256_mmask_i32gather_ps(_mm256_setzero_ps(), m, off, dr + s, 4));

					a = _mm512_add_pd(a, dv);
					b = _mm512_add_pd(b, _mm512_mul_pd(dv, _mm512_mul_pd(_mm512_sub_pd(xv, mu), is)));
				}
			} else if (mean) {
				for (size_t s = 0; s < S; s++) {
					__m512d d = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_mmask_i32gather_ps(
									  _mm256_setzero_ps(), m, off, xr + s, 4)),
								  mu);

					a = _mm512_add_pd(a, _mm512_mul_pd(d, d));
				}
			} else {
				for (size_t s = 0; s < S; s++)
					a = _mm512_add_pd(a, _mm512_cvtps_pd(_mm256_mmask_i32gather_ps(
								     _mm256_setzero_ps(), m, off, xr + s, 4)));
			}
		}
		_mm512_mask_storeu_pd(sum + (c - c0), m, a);
		if (sq)
			_mm512_mask_storeu_pd(sq + (c - c0), m, b);
	}
}
#endif

static void bn_sums(double *sum, double *sq, const float *x, const float *dy, const double *mean,
		    const double *invstd, size_t batch, size_t size, size_t S, size_t c0, size_t c1)
{
#ifdef ROWS_AVX512
	/* the gather's offsets are 32-bit: 7*S must fit */
	if (have_avx512vl() && S <= INT32_MAX / 8) {
		bn_sums_avx512(sum, sq, x, dy, mean, invstd, batch, size, S, c0, c1);
		return;
	}
#endif
	bn_sums_loop(sum, sq, x, dy, mean, invstd, batch, size, S, c0, c1);
}

void k_bn_sums(double *sum, const float *x, size_t batch, size_t size, size_t S, size_t c0,
	       size_t c1)
{
	bn_sums(sum, NULL, x, NULL, NULL, NULL, batch, size, S, c0, c1);
}

void k_bn_sqsums(double *sq, const float *x, const double *mean, size_t batch, size_t size,
		 size_t S, size_t c0, size_t c1)
{
	bn_sums(sq, NULL, x, NULL, mean, NULL, batch, size, S, c0, c1);
}

void k_bn_grad_sums(double *sdy, double *sdyx, const float *dy, const float *x, const double *mean,
		    const double *invstd, size_t batch, size_t size, size_t S, size_t c0, size_t c1)
{
	bn_sums(sdy, sdyx, x, dy, mean, invstd, batch, size, S, c0, c1);
}

HOT_CLONES
static void bn_apply_row(float *restrict y, const float *restrict x, size_t S, float alpha, float beta)
{
	for (size_t s = 0; s < S; s++)
		y[s] = x[s] * alpha + beta;
}

void k_bn_apply(float *y, const float *x, size_t batch, size_t size, size_t S, float alpha,
		float beta)
{
	for (size_t r = 0; r < batch; r++)
		bn_apply_row(y + r * size, x + r * size, S, alpha, beta);
}

HOT_CLONES
static void bn_dx_row(float *restrict dx, const float *restrict dy, const float *restrict x, size_t S,
		      double mean, double invstd, double k, double mdy, double mdyx)
{
	for (size_t s = 0; s < S; s++) {
		double xhat = (x[s] - mean) * invstd;

		dx[s] = (float)(k * (dy[s] - mdy - xhat * mdyx));
	}
}

void k_bn_dx(float *dx, const float *dy, const float *x, size_t batch, size_t size, size_t S,
	     double mean, double invstd, double k, double mdy, double mdyx)
{
	for (size_t r = 0; r < batch; r++)
		bn_dx_row(dx + r * size, dy + r * size, x + r * size, S, mean, invstd, k, mdy, mdyx);
}
