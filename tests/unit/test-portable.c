/*
 * test-portable.c - the portable kernels (engine/core/portable.c) keep their
 * arithmetic contract (doc/portable.md): every operation gives the same bits
 * on each instruction-set path this CPU runs (AVX-512, AVX2+FMA, plain C), at
 * 1, 2 and 3 threads, with FTZ/DAZ off and on, on shapes with ragged edges;
 * the bits are those of the contract written out here as plain scalar loops
 * (an independent reference: a chain of fmaf per GEMM element, 16 lanes and
 * a tree per reduction); and the results are within the stated error bounds
 * of a float64 reference (GEMM, reductions) or of glibc's double functions
 * (exp, log, tanh, erf, sigmoid). Also: TRAIND_ISA's parsing and refusals,
 * and that no path's compiled code contracts x * y + z into an FMA.
 *
 * A path this CPU cannot run is skipped with the reason printed.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "traind/numerics.h"
#include "traind/portable.h"
#include "traind/team.h"
#include "engine/core/portable-isa.h"

#define U (0x1p-24)   /* float's unit roundoff */

static enum pk_isa paths[PK_ISA_COUNT];
static int npaths;
static struct team *teams[4];   /* teams[t]: t members (teams[1] NULL: the caller) */

/* xorshift64*: the test's own inputs */
static uint64_t rs = 0x9e3779b97f4a7c15ull;

static uint64_t rnd64(void)
{
	rs ^= rs >> 12;
	rs ^= rs << 25;
	rs ^= rs >> 27;
	return rs * 0x2545f4914f6cdd1dull;
}

/* A float in [-1, 1) scaled by 2^e, e in [-6, 6]: values of different
 * magnitudes, so that the order of the roundings matters. */
static float rndf(void)
{
	float v = (float)((double)(rnd64() >> 40) / (double)(1ull << 24) * 2.0 - 1.0);

	return ldexpf(v, (int)(rnd64() % 13) - 6);
}

static float *rnd_array(size_t n)
{
	float *x = malloc((n ? n : 1) * sizeof(float));

	assert_non_null(x);
	for (size_t i = 0; i < n; i++)
		x[i] = rndf();
	return x;
}

static void use_path(enum pk_isa isa)
{
	struct tr_err err = { 0 };

	assert_int_equal(pk_isa_set(isa, &err), 0);
	assert_int_equal(pk_isa_active(), isa);
}

static int setup(void **state)
{
	(void)state;
	for (int i = 0; i < PK_ISA_COUNT; i++) {
		if (pk_isa_supported((enum pk_isa)i))
			paths[npaths++] = (enum pk_isa)i;
		else
			print_message("[  SKIP    ] the %s path: this CPU cannot run it\n",
				      pk_isa_name((enum pk_isa)i));
	}
	for (unsigned t = 2; t <= 3; t++)
		if (team_new(&teams[t], t) < 0)
			return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	team_free(teams[2]);
	team_free(teams[3]);
	use_path(pk_isa_best());
	return 0;
}

/* ---- GEMM ------------------------------------------------------------------ */

/* The contract, written out: one fmaf chain per element. */
static void contract_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
			  const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
			  size_t ldc)
{
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++) {
			float s = beta == 0.0f ? 0.0f : beta == 1.0f ? c[i * ldc + j] : beta * c[i * ldc + j];

			for (size_t p = 0; p < k; p++) {
				float av = ta ? a[p * lda + i] : a[i * lda + p];

				if (alpha != 1.0f)
					av = alpha * av;
				s = fmaf(av, tb ? b[j * ldb + p] : b[p * ldb + j], s);
			}
			c[i * ldc + j] = s;
		}
}

/* In float64, with the bound of a chain of k roundings (k + 2 with alpha's
 * and beta's): |c - exact| <= (k + 2) u (sum |a b| + |beta c|). */
static void check_against_f64(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
			      const float *a, size_t lda, const float *b, size_t ldb, float beta,
			      const float *c0, const float *c, size_t ldc)
{
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++) {
			double s = beta == 0.0f ? 0.0 : (double)beta * c0[i * ldc + j], mag = fabs(s);

			for (size_t p = 0; p < k; p++) {
				double t = (double)alpha * (ta ? a[p * lda + i] : a[i * lda + p]) *
					   (tb ? b[j * ldb + p] : b[p * ldb + j]);

				s += t;
				mag += fabs(t);
			}
			if (fabs((double)c[i * ldc + j] - s) > (double)(k + 2) * U * mag + 0x1p-149)
				fail_msg("gemm %zux%zux%zu (%d%d): c[%zu][%zu] = %a, float64 %a: off by more than %zu roundings",
					 m, n, k, ta, tb, i, j, c[i * ldc + j], s, k + 2);
		}
}

struct gcase {
	size_t m, n, k;
};

/* Every layout, beta 0/1/0.5 (beta 0 with NaN in C: not read), alpha 1 or
 * 0.75, padded leading dimensions whose padding must stay untouched; each
 * path at 1, 2, 3 threads against the contract, bit for bit. */
static void gemm_case(struct gcase gc, bool all_variants)
{
	const size_t m = gc.m, n = gc.n, k = gc.k;

	for (int layout = 0; layout < 4; layout++) {
		int ta = layout & 1, tb = layout >> 1;
		size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
		size_t arows = ta ? k : m, brows = tb ? n : k;
		float *a = rnd_array(lda * arows), *b = rnd_array(ldb * brows);
		float *c0 = rnd_array(ldc * (m ? m : 1)), *want = malloc(ldc * (m ? m : 1) * sizeof(float));
		float *got = malloc(ldc * (m ? m : 1) * sizeof(float));

		assert_non_null(want);
		assert_non_null(got);
		for (int v = 0; v < (all_variants ? 4 : 2); v++) {
			float beta = v == 0 ? 0.0f : v == 1 ? 1.0f : 0.5f, alpha = v == 3 ? 0.75f : 1.0f;

			if (m && n)   /* beta 0: C is not read */
				c0[0] = beta == 0.0f ? __builtin_nanf("") : rndf();
			memcpy(want, c0, ldc * (m ? m : 1) * sizeof(float));
			contract_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, want, ldc);
			check_against_f64(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, want, ldc);
			for (int pi = 0; pi < npaths; pi++) {
				use_path(paths[pi]);
				for (unsigned t = 1; t <= 3; t++) {
					memcpy(got, c0, ldc * (m ? m : 1) * sizeof(float));
					pk_gemm_team(teams[t], ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, got, ldc);
					if (memcmp(got, want, ldc * (m ? m : 1) * sizeof(float)) != 0) {
						size_t e = 0;

						while (memcmp(&got[e], &want[e], sizeof(float)) == 0)
							e++;
						fail_msg("gemm %zux%zux%zu ta %d tb %d alpha %g beta %g on %s at %u threads: element %zu (row %zu col %zu) is %a, the contract %a",
							 m, n, k, ta, tb, alpha, beta, pk_isa_name(paths[pi]), t, e,
							 e / ldc, e % ldc, got[e], want[e]);
					}
				}
			}
		}
		free(a);
		free(b);
		free(c0);
		free(want);
		free(got);
	}
}

/* Ragged shapes: 0 and 1, around the tiles (16-float vectors, 6 and 8 rows,
 * 64-wide panels, 128-long k blocks). */
static void test_gemm_ragged(void **state)
{
	static const size_t dims[] = { 0, 1, 2, 5, 15, 16, 17, 33, 63, 65 };
	static const size_t ks[] = { 0, 1, 3, 17, 127, 128, 129, 300 };

	(void)state;
	for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++)
		for (size_t j = 0; j < sizeof(dims) / sizeof(dims[0]); j++) {
			struct gcase gc = { dims[i], dims[j], ks[(i * 3 + j) % 8] };

			gemm_case(gc, (i + j) % 3 == 0);
		}
}

/* The shapes of training: the lesson MLP's products (batch 64), lenet5's
 * and resnet20's im2col products. */
static void test_gemm_training_shapes(void **state)
{
	static const struct gcase shapes[] = {
		{ 64, 256, 784 }, { 256, 784, 64 }, { 64, 10, 256 }, { 10, 256, 64 }, { 64, 256, 10 },
		{ 6, 784, 25 }, { 6, 25, 784 }, { 25, 784, 6 }, { 16, 100, 150 }, { 16, 150, 100 },
		{ 16, 1024, 144 }, { 32, 256, 288 }, { 64, 64, 576 }, { 576, 64, 64 }, { 33, 200, 129 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		gemm_case(shapes[i], false);
}

/* FTZ/DAZ on: inputs and products near the denormal range, every path and
 * team size still one set of bits. */
static void test_gemm_ftz(void **state)
{
	const size_t m = 37, n = 70, k = 50;
	float *a = rnd_array(m * k), *b = rnd_array(k * n), *want = calloc(m * n, sizeof(float));
	float *got = calloc(m * n, sizeof(float));
	unsigned saved;

	(void)state;
	for (size_t i = 0; i < m * k; i++)
		a[i] *= 0x1p-60f;
	for (size_t i = 0; i < k * n; i++)
		b[i] = i % 7 == 0 ? b[i] * 0x1p-126f : b[i] * 0x1p-62f;   /* some denormal inputs */
	saved = numerics_enter(true);
	contract_gemm(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, want, n);
	for (int pi = 0; pi < npaths; pi++) {
		use_path(paths[pi]);
		for (unsigned t = 1; t <= 3; t++) {
			memset(got, 0xff, m * n * sizeof(float));
			pk_gemm_team(teams[t], 0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, got, n);
			assert_memory_equal(got, want, m * n * sizeof(float));
		}
	}
	numerics_leave(saved);
	free(a);
	free(b);
	free(want);
	free(got);
}

/* ---- reductions ---------------------------------------------------------------- */

static float contract_tree(float l[16], int max)
{
	for (int h = 8; h >= 1; h /= 2)
		for (int i = 0; i < h; i++) {
			float x = l[i + h];

			l[i] = max ? (x != x ? x : x > l[i] ? x : l[i]) : l[i] + x;
		}
	return l[0];
}

static double contract_tree_d(double l[16])
{
	for (int h = 8; h >= 1; h /= 2)
		for (int i = 0; i < h; i++)
			l[i] += l[i + h];
	return l[0];
}

/* kind: 0 sum, 1 dot, 2 max (float); 3 sum, 4 sum of squares (double) */
static double contract_reduce(int kind, const float *x, const float *y, size_t n)
{
	size_t blocks = n ? (n + PK_BLOCK - 1) / PK_BLOCK : 1;
	float tf = 0.0f;
	double td = 0.0;

	for (size_t bi = 0; bi < blocks; bi++) {
		size_t lo = bi * PK_BLOCK, hi = lo + PK_BLOCK < n ? lo + PK_BLOCK : n;
		float lf[16];
		double ld[16];

		for (int l = 0; l < 16; l++) {
			lf[l] = kind == 2 ? -INFINITY : 0.0f;
			ld[l] = 0.0;
		}
		for (size_t i = lo; i < hi; i++) {
			float *s = &lf[(i - lo) % 16];
			double *d = &ld[(i - lo) % 16];

			switch (kind) {
			case 0: *s = *s + x[i]; break;
			case 1: *s = fmaf(x[i], y[i], *s); break;
			case 2: *s = x[i] != x[i] ? x[i] : x[i] > *s ? x[i] : *s; break;
			case 3: *d = *d + (double)x[i]; break;
			case 4: *d = *d + (double)x[i] * (double)x[i]; break;
			}
		}
		if (kind >= 3) {
			double r = contract_tree_d(ld);

			td = bi ? td + r : r;
		} else {
			float r = contract_tree(lf, kind == 2);

			tf = bi == 0 ? r : kind == 2 ? (r != r ? r : r > tf ? r : tf) : tf + r;
		}
	}
	return kind >= 3 ? td : (double)tf;
}

static void test_reductions(void **state)
{
	static const size_t ns[] = { 0, 1, 15, 16, 17, 100, 16383, 16384, 16385, 50001 };

	(void)state;
	for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
		size_t n = ns[ni];
		float *x = rnd_array(n), *y = rnd_array(n);
		double mag = 0.0, sum64 = 0.0, dot64 = 0.0, sq64 = 0.0, depth;
		float mx = -INFINITY;

		for (size_t i = 0; i < n; i++) {
			sum64 += x[i];
			dot64 += (double)x[i] * y[i];
			sq64 += (double)x[i] * x[i];
			mag += fabs(x[i]) + fabs((double)x[i] * y[i]);
			mx = x[i] > mx ? x[i] : mx;
		}
		/* roundings an element goes through: its lane, the tree, the blocks */
		depth = (double)((n < PK_BLOCK ? n : PK_BLOCK) / 16 + 5 + n / PK_BLOCK);
		for (int pi = 0; pi < npaths; pi++) {
			float f;
			double d;

			use_path(paths[pi]);
			f = pk_sum(x, n);
			assert_true(f == (float)contract_reduce(0, x, NULL, n));
			assert_true(fabs(f - sum64) <= depth * U * mag + 0x1p-149);
			f = pk_dot(x, y, n);
			assert_true(f == (float)contract_reduce(1, x, y, n));
			assert_true(fabs(f - dot64) <= depth * U * mag + 0x1p-149);
			f = pk_max(x, n);
			assert_true(f == mx);
			d = pk_sum_f64(x, n);
			assert_true(d == contract_reduce(3, x, NULL, n));
			assert_true(fabs(d - sum64) <= depth * 0x1p-53 * mag + 1e-300);
			d = pk_sumsq_f64(x, n);
			assert_true(d == contract_reduce(4, x, NULL, n));
			for (unsigned t = 1; t <= 3; t++)
				assert_true(pk_sumsq_f64_team(teams[t], x, n) == d);
		}
		free(x);
		free(y);
	}
}

/* max: a NaN wins wherever it is; -inf for nothing. */
static void test_max_nan(void **state)
{
	float x[40];

	(void)state;
	for (int pi = 0; pi < npaths; pi++) {
		use_path(paths[pi]);
		assert_true(pk_max(x, 0) == -INFINITY);
		for (size_t at = 0; at < 40; at += 13) {
			for (size_t i = 0; i < 40; i++)
				x[i] = (float)i;
			x[at] = NAN;
			assert_true(isnan(pk_max(x, 40)));
		}
	}
}

/* The 2-D statistics: rows of len at a stride (a BatchNorm channel). */
static void test_stats_2d(void **state)
{
	static const size_t lens[] = { 1, 7, 16, 49, 1024 };
	const size_t rows = 11;

	(void)state;
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		size_t len = lens[li], stride = len * 3 + 1;
		float *x = rnd_array(rows * stride), *dy = rnd_array(rows * stride);
		double ls[16] = { 0 }, lq[16] = { 0 }, la[16] = { 0 }, lb[16] = { 0 };
		double sum, mean, sq, a, b, invstd = 1.7;

		for (size_t r = 0; r < rows; r++)
			for (size_t s = 0; s < len; s++)
				ls[s % 16] += (double)x[r * stride + s];
		sum = contract_tree_d(ls);
		mean = sum / (double)(rows * len);
		for (size_t r = 0; r < rows; r++)
			for (size_t s = 0; s < len; s++) {
				double d = (double)x[r * stride + s] - mean;
				double xhat = ((double)x[r * stride + s] - mean) * invstd;

				lq[s % 16] += d * d;
				la[s % 16] += (double)dy[r * stride + s];
				lb[s % 16] += (double)dy[r * stride + s] * xhat;
			}
		sq = contract_tree_d(lq);
		a = contract_tree_d(la);
		b = contract_tree_d(lb);
		for (int pi = 0; pi < npaths; pi++) {
			double g1, g2;

			use_path(paths[pi]);
			assert_true(pk_sum2d_f64(x, rows, len, stride) == sum);
			assert_true(pk_sqdev2d_f64(x, rows, len, stride, mean) == sq);
			pk_bn_sums_f64(dy, x, rows, len, stride, mean, invstd, &g1, &g2);
			assert_true(g1 == a);
			assert_true(g2 == b);
		}
		free(x);
		free(dy);
	}
}

/* Softmax cross-entropy: one set of bits on every path, whole or by rows
 * (a team's split), and the float64 loss and gradient within a few ulp. */
static void test_softmax_xent(void **state)
{
	static const size_t ks[] = { 1, 10, 17, 200, 256 };   /* labels are bytes */
	const size_t m = 70;

	(void)state;
	for (size_t ki = 0; ki < sizeof(ks) / sizeof(ks[0]); ki++) {
		size_t k = ks[ki];
		float *z = rnd_array(m * k), *d0 = calloc(m * k, sizeof(float)), *d = calloc(m * k, sizeof(float));
		float *rl = calloc(m, sizeof(float));
		uint32_t y[70], p0[70], p[70];
		double loss0 = 0.0, loss64 = 0.0;

		for (size_t r = 0; r < m; r++) {
			double mx = -INFINITY, s = 0.0;

			y[r] = (uint32_t)(rnd64() % k);
			for (size_t j = 0; j < k; j++)
				z[r * k + j] *= 8.0f;
			for (size_t j = 0; j < k; j++)
				mx = z[r * k + j] > mx ? z[r * k + j] : mx;
			for (size_t j = 0; j < k; j++)
				s += exp(z[r * k + j] - mx);
			loss64 += log(s) - (z[r * k + y[r]] - mx);
		}
		for (int pi = 0; pi < npaths; pi++) {
			double loss, parts;

			use_path(paths[pi]);
			loss = pk_softmax_xent(z, y, m, k, 0.5f, d, p);
			if (pi == 0) {
				loss0 = loss;
				memcpy(d0, d, m * k * sizeof(float));
				memcpy(p0, p, m);
				assert_true(fabs(loss - loss64) <= 1e-5 * (fabs(loss64) + m));
				for (size_t r = 0; r < m; r++) {
					size_t arg = 0;

					for (size_t j = 1; j < k; j++)
						arg = z[r * k + j] > z[r * k + arg] ? j : arg;
					assert_int_equal(p[r], arg);
				}
			}
			assert_true(loss == loss0);
			assert_memory_equal(d, d0, m * k * sizeof(float));
			assert_memory_equal(p, p0, m);
			/* no gradient (evaluation): the same loss */
			assert_true(pk_softmax_xent(z, y, m, k, 0.5f, NULL, NULL) == loss0);
			/* by rows, as a team would: the same bits */
			memset(d, 0, m * k * sizeof(float));
			pk_softmax_xent_rows(z, y, 0, 33, k, 0.5f, d, p, rl);
			pk_softmax_xent_rows(z, y, 33, m, k, 0.5f, d, p, rl);
			parts = pk_sum_f64(rl, m);
			assert_true(parts == loss0);
			assert_memory_equal(d, d0, m * k * sizeof(float));
		}
		free(z);
		free(d0);
		free(d);
		free(rl);
	}
}

/* The batch chunks: a partition of the batch fixed by the batch alone, and
 * the partials added in chunk order. */
static void test_chunks(void **state)
{
	const size_t len = 37;
	float parts[PK_CHUNKS * 37], out[37];

	(void)state;
	for (size_t batch = 0; batch < 100; batch++) {
		size_t next = 0;
		unsigned n = pk_nchunks(batch);

		assert_true(n <= PK_CHUNKS && (batch == 0 || n >= 1) && n <= batch);
		for (unsigned c = 0; c < n; c++) {
			size_t r0, r1;

			pk_chunk(batch, c, &r0, &r1);
			assert_int_equal(r0, next);
			assert_true(r1 > r0);
			next = r1;
		}
		assert_int_equal(next, batch);
	}
	for (size_t i = 0; i < PK_CHUNKS * len; i++)
		parts[i] = rndf();
	pk_add_chunks(out, parts, len, PK_CHUNKS, 3, len);
	for (size_t e = 3; e < len; e++) {
		float s = parts[e];

		for (unsigned c = 1; c < PK_CHUNKS; c++)
			s = s + parts[c * len + e];
		assert_true(out[e] == s);
	}
}

/* ---- convolutions ----------------------------------------------------------- */

/* The input value tap (c, i, j) of output pixel (oy, ox) reads: 0 in the padding. */
static float conv_tap(const struct pk_conv *cv, const float *x, unsigned g, unsigned c, unsigned i,
		      unsigned j, unsigned oy, unsigned ox)
{
	long y = (long)oy * cv->s - cv->p + (long)i * cv->d, xx = (long)ox * cv->s - cv->p + (long)j * cv->d;

	if (y < 0 || y >= (long)cv->h || xx < 0 || xx >= (long)cv->w)
		return 0.0f;
	return x[((size_t)(g * cv->cg + c) * cv->h + (size_t)y) * cv->w + (size_t)xx];
}

/* include/traind/portable.h's definitions of the three, written out. */
static void contract_conv_forward(const struct pk_conv *cv, const float *w, const float *bias,
				  const float *x, float *y)
{
	unsigned k = cv->k;

	for (unsigned o = 0; o < cv->oc; o++) {
		unsigned g = o / cv->og;

		for (unsigned oy = 0; oy < cv->oh; oy++)
			for (unsigned ox = 0; ox < cv->ow; ox++) {
				float acc = bias ? bias[o] : 0.0f;

				for (unsigned c = 0; c < cv->cg; c++)
					for (unsigned i = 0; i < k; i++)
						for (unsigned j = 0; j < k; j++)
							acc = fmaf(w[(size_t)o * cv->ckk + (c * k + i) * k + j],
								   conv_tap(cv, x, g, c, i, j, oy, ox), acc);
				y[((size_t)o * cv->oh + oy) * cv->ow + ox] = acc;
			}
	}
}

static void contract_conv_dw(const struct pk_conv *cv, const float *x, const float *dy, size_t rows,
			     float *dw, float *db)
{
	unsigned k = cv->k;
	size_t xs = (size_t)cv->c * cv->h * cv->w, ys = (size_t)cv->oc * cv->ohw;

	for (unsigned o = 0; o < cv->oc; o++) {
		unsigned g = o / cv->og;
		float lb[16] = { 0 };

		for (size_t q = 0; q < cv->ckk; q++) {
			unsigned c = (unsigned)(q / (k * k)), i = (unsigned)(q / k % k), j = (unsigned)(q % k);
			float l[16] = { 0 };

			for (size_t r = 0; r < rows; r++)
				for (size_t t = 0; t < cv->ohw; t++)
					l[t % 16] = fmaf(dy[r * ys + o * cv->ohw + t],
							 conv_tap(cv, x + r * xs, g, c, i, j, (unsigned)(t / cv->ow),
								  (unsigned)(t % cv->ow)),
							 l[t % 16]);
			dw[o * cv->ckk + q] = contract_tree(l, 0);
		}
		for (size_t r = 0; r < rows; r++)
			for (size_t t = 0; t < cv->ohw; t++)
				lb[t % 16] = lb[t % 16] + dy[r * ys + o * cv->ohw + t];
		db[o] = contract_tree(lb, 0);
	}
}

static void contract_conv_dx(const struct pk_conv *cv, const float *w, const float *dy, float *dx)
{
	unsigned k = cv->k;

	for (unsigned ch = 0; ch < cv->c; ch++) {
		unsigned g = ch / cv->cg, c = ch % cv->cg;

		for (unsigned y = 0; y < cv->h; y++)
			for (unsigned x = 0; x < cv->w; x++) {
				float acc = 0.0f;

				for (unsigned i = 0; i < k; i++)
					for (unsigned j = 0; j < k; j++) {
						long uy = (long)y + cv->p - (long)(i * cv->d);
						long ux = (long)x + cv->p - (long)(j * cv->d);
						float d = 0.0f;

						for (unsigned oo = 0; oo < cv->og; oo++) {
							unsigned o = g * cv->og + oo;
							float v = 0.0f;

							if (uy >= 0 && ux >= 0 && uy % cv->s == 0 && ux % cv->s == 0 &&
							    uy / cv->s < cv->oh && ux / cv->s < cv->ow)
								v = dy[((size_t)o * cv->oh + (size_t)(uy / cv->s)) * cv->ow +
								       (size_t)(ux / cv->s)];
							d = fmaf(w[(size_t)o * cv->ckk + (c * k + i) * k + j], v, d);
						}
						acc = acc + d;
					}
				dx[((size_t)ch * cv->h + y) * cv->w + x] = acc;
			}
	}
}

/* Every option of conv2d (stride, padding, groups, dilation) and the
 * training shapes (lenet5's, resnet20's 3x3 and 1x1 shortcuts): on every
 * path, the forward, dW, db of a chunk and dx are the contract's bits. */
static void test_conv(void **state)
{
	static const unsigned shapes[][9] = {
		/* c, h, w, oc, k, stride, pad, dil, groups */
		{ 1, 28, 28, 6, 5, 1, 2, 1, 1 },    { 6, 14, 14, 16, 5, 1, 0, 1, 1 },
		{ 16, 8, 8, 16, 3, 1, 1, 1, 1 },    { 16, 16, 16, 32, 3, 2, 1, 1, 1 },
		{ 16, 16, 16, 32, 1, 2, 0, 1, 1 },  { 4, 9, 7, 6, 3, 1, 2, 2, 2 },
		{ 6, 11, 10, 6, 3, 2, 1, 1, 3 },    { 3, 5, 6, 4, 3, 3, 1, 1, 1 },
		{ 2, 7, 13, 3, 2, 2, 0, 3, 1 },     { 5, 6, 6, 7, 3, 1, 0, 1, 1 },
	};
	const size_t rows = 3;

	(void)state;
	for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
		const unsigned *s = shapes[si];
		struct pk_conv cv;
		size_t xs, ys, nw;
		float *x, *w, *b, *dy, *y, *yr, *dw, *dwr, *db, *dbr, *dx, *dxr, *scratch;

		assert_int_equal(pk_conv_init(&cv, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]), 0);
		xs = (size_t)cv.c * cv.h * cv.w;
		ys = (size_t)cv.oc * cv.ohw;
		nw = (size_t)cv.oc * cv.ckk;
		x = rnd_array(rows * xs);
		w = rnd_array(nw);
		b = rnd_array(cv.oc);
		dy = rnd_array(rows * ys);
		y = rnd_array(ys);
		yr = rnd_array(ys);
		dw = rnd_array(nw);
		dwr = rnd_array(nw);
		db = rnd_array(cv.oc);
		dbr = rnd_array(cv.oc);
		dx = rnd_array(xs);
		dxr = rnd_array(xs);
		scratch = malloc(pk_conv_scratch(&cv, rows) * sizeof(float));
		assert_non_null(scratch);
		contract_conv_forward(&cv, w, si % 2 ? NULL : b, x + xs, yr);
		contract_conv_dw(&cv, x, dy, rows, dwr, dbr);
		contract_conv_dx(&cv, w, dy + ys, dxr);
		for (int pi = 0; pi < npaths; pi++) {
			use_path(paths[pi]);
			pk_conv_forward(&cv, w, si % 2 ? NULL : b, x + xs, y, scratch);
			pk_conv_dw(&cv, x, xs, dy, ys, rows, dw, db, scratch);
			pk_conv_dx(&cv, w, dy + ys, dx, scratch);
			if (memcmp(y, yr, ys * sizeof(float)) || memcmp(dw, dwr, nw * sizeof(float)) ||
			    memcmp(db, dbr, cv.oc * sizeof(float)) || memcmp(dx, dxr, xs * sizeof(float)))
				fail_msg("conv %zu (%u,%u,%u oc %u k %u s %u p %u d %u g %u) on %s: y %d dw %d db %d dx %d",
					 si, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8],
					 pk_isa_name(paths[pi]), !!memcmp(y, yr, ys * sizeof(float)),
					 !!memcmp(dw, dwr, nw * sizeof(float)), !!memcmp(db, dbr, cv.oc * sizeof(float)),
					 !!memcmp(dx, dxr, xs * sizeof(float)));
		}
		free(x); free(w); free(b); free(dy); free(y); free(yr); free(dw); free(dwr);
		free(db); free(dbr); free(dx); free(dxr); free(scratch);
		pk_conv_deinit(&cv);
	}
	use_path(pk_isa_best());
}

/* The same bits or both NaN (which NaN is outside the contract). */
static bool same_or_nan(const float *a, const float *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(&a[i], &b[i], sizeof(float)) && !(isnan(a[i]) && isnan(b[i])))
			return false;
	return true;
}

/* The strided dx skips the kernel positions that read only dyz's zeros
 * (portable-conv.c: they add +0). With values of 2^-80, whose products
 * round to -0 or +0, the other positions' chains are signed zeros; and a
 * weight inf or NaN must make the skipped chains NaN, as the contract's
 * are (inf * 0). */
static void test_conv_dx_zeros(void **state)
{
	static const unsigned shapes[][9] = {
		/* c, h, w, oc, k, stride, pad, dil, groups */
		{ 3, 9, 8, 4, 3, 2, 1, 1, 1 }, { 4, 10, 11, 6, 3, 3, 1, 2, 2 }, { 2, 8, 8, 3, 1, 2, 0, 1, 1 },
	};

	(void)state;
	for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++)
		for (int mode = 0; mode < 3; mode++) {
			const unsigned *s = shapes[si];
			struct pk_conv cv;
			size_t xs, ys, nw;
			float *w, *dy, *dx, *dxr, *scratch;

			assert_int_equal(pk_conv_init(&cv, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]), 0);
			xs = (size_t)cv.c * cv.h * cv.w;
			ys = (size_t)cv.oc * cv.ohw;
			nw = (size_t)cv.oc * cv.ckk;
			w = rnd_array(nw);
			dy = rnd_array(ys);
			dx = rnd_array(xs);
			dxr = rnd_array(xs);
			scratch = malloc(pk_conv_scratch(&cv, 1) * sizeof(float));
			assert_non_null(scratch);
			/* mode 0: tiny values, a third of them zeros: chains of -0 and +0 */
			for (size_t i = 0; i < nw; i++)
				w[i] = i % 3 == 0 ? 0.0f : copysignf(0x1p-80f, w[i]);
			for (size_t i = 0; i < ys; i++)
				dy[i] = i % 3 == 1 ? -0.0f : copysignf(0x1p-80f, dy[i]);
			if (mode == 1)
				w[nw / 2] = INFINITY;
			else if (mode == 2)
				w[1] = NAN;
			contract_conv_dx(&cv, w, dy, dxr);
			for (int pi = 0; pi < npaths; pi++) {
				use_path(paths[pi]);
				pk_conv_dx(&cv, w, dy, dx, scratch);
				if (!same_or_nan(dx, dxr, xs))
					fail_msg("conv dx %zu mode %d on %s: not the contract's bits", si, mode,
						 pk_isa_name(paths[pi]));
			}
			free(w); free(dy); free(dx); free(dxr); free(scratch);
			pk_conv_deinit(&cv);
		}
	use_path(pk_isa_best());
}

/* ---- double precision: the schedules' cos and powers, the init's log ----------- */

/* |a - b| in units of b's last place */
static double ulps64(double a, double b)
{
	double u = nextafter(fabs(b), INFINITY) - fabs(b);

	return a == b ? 0.0 : fabs(a - b) / u;   /* inf == inf, 0 == 0 */
}

/* pk_cos64, pk_sincos64, pk_log64 and pk_pown64 against glibc's (nearly
 * correctly rounded) cos, sin, log and pow: within one ulp, equal for
 * almost every argument; the special values as C99's. Their bits are the
 * same on every CPU by construction (IEEE operations and fma only; no
 * path choice). */
static void test_f64(void **state)
{
	size_t differ = 0, n = 20000;

	(void)state;
	for (size_t i = 0; i < n; i++) {
		double x = ((double)(rnd64() >> 11) / 9007199254740992.0 * 2.0 - 1.0) * 200.0;
		double u = (double)(rnd64() >> 11) / 9007199254740992.0 * 1e6 + 1e-300, s, c;
		double g = 0.5 + (double)(rnd64() >> 11) / 9007199254740992.0;
		uint64_t e = rnd64() % 5000;

		pk_sincos64(x, &s, &c);
		assert_true(c == pk_cos64(x));
		assert_true(ulps64(c, cos(x)) <= 1.0 && ulps64(s, sin(x)) <= 1.0);
		assert_true(ulps64(pk_log64(u), log(u)) <= 1.0);
		assert_true(ulps64(pk_pown64(g, e), pow(g, (double)e)) <= 1.0);
		differ += c != cos(x);
		differ += pk_log64(u) != log(u);
		differ += pk_pown64(g, e) != pow(g, (double)e);
	}
	assert_true(differ < n / 100);   /* almost always glibc's own bits */
	assert_true(pk_cos64(0.0) == 1.0 && pk_log64(1.0) == 0.0 && pk_log64(0.0) == -INFINITY);
	assert_true(isnan(pk_log64(-1.0)) && isnan(pk_cos64(INFINITY)) && pk_pown64(3.0, 0) == 1.0);
	assert_true(pk_pown64(2.0, 2000) == INFINITY && pk_pown64(0.5, 2000) == 0.0);
	assert_true(pk_pown64(0.9, 3) == pow(0.9, 3.0) && pk_pown64(5.0, 2) == 25.0);
}

/* ---- exp, log, tanh, erf, sigmoid ------------------------------------------------ */

struct fn {
	const char *name;
	void (*arr)(float *, const float *, size_t);
	float (*one)(float);
	double max_ulp;          /* the bound doc/portable.md states: the maximum over all 2^32
				    floats (bench-portable --ulp 1), rounded up */
};

static double sigmoid64(double x)
{
	return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

static double ref64(const char *name, double x)
{
	switch (name[0]) {
	case 'e': return name[1] == 'x' ? exp(x) : erf(x);
	case 'l': return log(x);
	case 't': return tanh(x);
	default: return sigmoid64(x);
	}
}

static const struct fn fns[] = {
	{ "exp", pk_exp, pk_expf, 1.02 },
	{ "log", pk_log, pk_logf, 0.84 },
	{ "tanh", pk_tanh, pk_tanhf, 1.11 },
	{ "erf", pk_erf, pk_erff, 0.991 },
	{ "sigmoid", pk_sigmoid, pk_sigmoidf, 2.41 },
};

/* Sample: every 4099th bit pattern (all signs, exponents, denormals, NaNs,
 * infinities), the boundaries of the ranges, and values of training. */
static float *math_inputs(size_t *count)
{
	static const float edges[] = {
		0.0f, -0.0f, INFINITY, -INFINITY, NAN, 0x1p-149f, -0x1p-149f, 0x1p-126f, 0x1.fffffcp-127f,
		-104.0f, -103.97208f, -87.33655f, 88.72283f, 88.72284f, 89.0f, 1.0f, -1.0f, 0.5f, 2.0f,
		-2.0f, 4.0f, -4.0f, 3.9375f, 9.01f, 10.0f, 0.70710677f, 1.4142135f, FLT_MAX, -FLT_MAX,
	};
	size_t n = (1ull << 32) / 4099 + 1 + sizeof(edges) / sizeof(edges[0]) + 20001, at = 0;
	float *x = malloc(n * sizeof(float));

	assert_non_null(x);
	for (uint64_t u = 0; u < (1ull << 32); u += 4099) {
		uint32_t w = (uint32_t)u;

		memcpy(&x[at++], &w, sizeof(float));
	}
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		x[at++] = edges[i];
	for (int i = -10000; i <= 10000; i++)
		x[at++] = (float)i / 1000.0f;
	*count = at;
	return x;
}

static double ulp_error(float y, double r)
{
	float rf = (float)r;
	double a = fabs((double)rf), ulp;

	if (isnan(r))
		return isnan(y) ? 0.0 : INFINITY;
	if (isinf(rf))
		return y == rf ? 0.0 : INFINITY;
	ulp = a < 0x1p-126 ? 0x1p-149 : (double)(nextafterf((float)a, INFINITY) - (float)a);
	return fabs((double)y - r) / ulp;
}

static void test_math(void **state)
{
	size_t n;
	float *x = math_inputs(&n), *y0 = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));

	(void)state;
	for (size_t f = 0; f < sizeof(fns) / sizeof(fns[0]); f++) {
		double worst = 0.0;
		float at = 0.0f;

		for (int ftz = 0; ftz < 2; ftz++) {
			unsigned saved = numerics_enter(ftz);

			for (int pi = 0; pi < npaths; pi++) {
				use_path(paths[pi]);
				fns[f].arr(pi ? y : y0, x, n);
				if (pi == 0)
					continue;
				for (size_t i = 0; i < n; i++)
					if (memcmp(&y[i], &y0[i], sizeof(float)) != 0 && !(isnan(y[i]) && isnan(y0[i])))
						fail_msg("%s(%a) on %s is %a, on %s %a (ftz %d)", fns[f].name, x[i],
							 pk_isa_name(paths[pi]), y[i], pk_isa_name(paths[0]), y0[i], ftz);
			}
			for (size_t i = 0; i < n; i += 97) {
				float one = fns[f].one(x[i]);

				assert_true(memcmp(&one, &y0[i], sizeof(float)) == 0 || (isnan(one) && isnan(y0[i])));
			}
			if (!ftz)
				for (size_t i = 0; i < n; i++) {
					double e = ulp_error(y0[i], ref64(fns[f].name, x[i]));

					if (e > worst) {
						worst = e;
						at = x[i];
					}
				}
			numerics_leave(saved);
		}
		print_message("%s: max %.3f ulp on %zu inputs (at %a)\n", fns[f].name, worst, n, at);
		if (worst > fns[f].max_ulp)
			fail_msg("%s: %.3f ulp at %a, over the stated %.1f", fns[f].name, worst, at, fns[f].max_ulp);
	}
	free(x);
	free(y0);
	free(y);
}

/* C99's special values. */
static void test_math_specials(void **state)
{
	(void)state;
	for (int pi = 0; pi < npaths; pi++) {
		use_path(paths[pi]);
		assert_true(pk_expf(-INFINITY) == 0.0f && pk_expf(INFINITY) == INFINITY);
		assert_true(pk_expf(0.0f) == 1.0f && pk_expf(-0.0f) == 1.0f && isnan(pk_expf(NAN)));
		assert_true(pk_expf(89.0f) == INFINITY && pk_expf(-104.0f) == 0.0f);
		assert_true(pk_logf(0.0f) == -INFINITY && pk_logf(-0.0f) == -INFINITY);
		assert_true(pk_logf(1.0f) == 0.0f && pk_logf(INFINITY) == INFINITY);
		assert_true(isnan(pk_logf(-1.0f)) && isnan(pk_logf(-INFINITY)) && isnan(pk_logf(NAN)));
		assert_true(pk_logf(0x1p-149f) < -103.0f);
		assert_true(pk_tanhf(INFINITY) == 1.0f && pk_tanhf(-INFINITY) == -1.0f);
		assert_true(pk_tanhf(0.0f) == 0.0f && signbit(pk_tanhf(-0.0f)) && isnan(pk_tanhf(NAN)));
		assert_true(pk_erff(INFINITY) == 1.0f && pk_erff(-INFINITY) == -1.0f);
		assert_true(pk_erff(0.0f) == 0.0f && signbit(pk_erff(-0.0f)) && isnan(pk_erff(NAN)));
		assert_true(pk_sigmoidf(INFINITY) == 1.0f && pk_sigmoidf(-INFINITY) == 0.0f);
		assert_true(pk_sigmoidf(0.0f) == 0.5f && isnan(pk_sigmoidf(NAN)));
		for (float v = 1e-3f; v < 20.0f; v *= 1.37f)   /* odd functions, exactly */
			assert_true(pk_tanhf(-v) == -pk_tanhf(v) && pk_erff(-v) == -pk_erff(v));
	}
}

/* ---- the build and the paths ------------------------------------------------------ */

/* x * y + z written with C operators in each path's own file: with
 * contraction it would be one fmaf, 2^-24 here; rounded twice it is 0. */
static void test_no_contraction(void **state)
{
	const struct pk_ops *ops[] = {
		&pk_ops_generic,
#if defined(__x86_64__)
		&pk_ops_avx2, &pk_ops_avx512,
#endif
	};
	volatile float x = 1.0f + 0x1p-12f, z = -(1.0f + 0x1p-11f);

	(void)state;
	assert_true(fmaf(x, x, z) == 0x1p-24f);   /* the fused result differs */
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		float r = ops[i]->contract_probe(x, x, z);

		if (r != 0.0f)
			fail_msg("the %s path's file contracts x * y + z into an FMA (%a): it must be compiled with -ffp-contract=off",
				 ops[i]->name, r);
	}
}

static void test_isa_selection(void **state)
{
	struct tr_err err = { 0 };
	enum pk_isa isa;
	char buf[64];

	(void)state;
	assert_int_equal(pk_isa_parse("avx512", &isa), 0);
	assert_int_equal(isa, PK_ISA_AVX512);
	assert_int_equal(pk_isa_parse("avx2", &isa), 0);
	assert_int_equal(isa, PK_ISA_AVX2);
	assert_int_equal(pk_isa_parse("generic", &isa), 0);
	assert_int_equal(isa, PK_ISA_GENERIC);
	assert_int_equal(pk_isa_parse("sse2", &isa), -EINVAL);
	assert_true(pk_isa_supported(PK_ISA_GENERIC));
	assert_true(pk_isa_supported(pk_isa_best()));
	for (int i = 0; i < PK_ISA_COUNT; i++) {
		int rc = pk_isa_set((enum pk_isa)i, &err);

		if (pk_isa_supported((enum pk_isa)i)) {
			assert_int_equal(rc, 0);
			pk_describe(buf, sizeof(buf));
			assert_non_null(strstr(buf, pk_isa_name((enum pk_isa)i)));
			assert_non_null(strstr(buf, "portable"));
		} else {
			assert_int_equal(rc, -ENOTSUP);
			assert_non_null(strstr(err.msg, "cannot run"));
		}
	}
	if (!getenv("TRAIND_ISA"))
		assert_int_equal(pk_init(&err), 0);
}

/* This program run again with TRAIND_ISA=value and --init: what pk_init
 * says (its exit status and output). */
static int run_init(const char *value, char *out, size_t len)
{
	int fd[2], status = 0;
	ssize_t got, used = 0;
	pid_t pid;

	assert_int_equal(pipe(fd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		setenv("TRAIND_ISA", value, 1);
		execl("/proc/self/exe", "test-portable", "--init", (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	while ((got = read(fd[0], out + used, len - 1 - (size_t)used)) > 0)
		used += got;
	out[used] = '\0';
	close(fd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* TRAIND_ISA forces a path, names a path or is refused with a clear error;
 * a path the CPU lacks is refused. */
static void test_isa_env(void **state)
{
	char out[512];

	(void)state;
	for (int pi = 0; pi < npaths; pi++) {
		assert_int_equal(run_init(pk_isa_name(paths[pi]), out, sizeof(out)), 0);
		assert_non_null(strstr(out, pk_isa_name(paths[pi])));
	}
	assert_int_equal(run_init("sse2", out, sizeof(out)), 1);
	assert_non_null(strstr(out, "TRAIND_ISA: 'sse2' is not a path (expected avx512, avx2 or generic)"));
	for (int i = 0; i < PK_ISA_COUNT; i++)
		if (!pk_isa_supported((enum pk_isa)i)) {
			assert_int_equal(run_init(pk_isa_name((enum pk_isa)i), out, sizeof(out)), 1);
			assert_non_null(strstr(out, "cannot run it"));
		}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_isa_selection),
		cmocka_unit_test(test_isa_env),
		cmocka_unit_test(test_no_contraction),
		cmocka_unit_test(test_gemm_ragged),
		cmocka_unit_test(test_gemm_training_shapes),
		cmocka_unit_test(test_gemm_ftz),
		cmocka_unit_test(test_reductions),
		cmocka_unit_test(test_max_nan),
		cmocka_unit_test(test_stats_2d),
		cmocka_unit_test(test_softmax_xent),
		cmocka_unit_test(test_chunks),
		cmocka_unit_test(test_conv),
		cmocka_unit_test(test_conv_dx_zeros),
		cmocka_unit_test(test_f64),
		cmocka_unit_test(test_math),
		cmocka_unit_test(test_math_specials),
	};

	if (argc == 2 && strcmp(argv[1], "--init") == 0) {   /* test_isa_env's child */
		struct tr_err err = { 0 };
		int rc = pk_init(&err);
		char buf[64];

		pk_describe(buf, sizeof(buf));
		printf("%s\n%s\n", rc < 0 ? err.msg : "ok", buf);
		return rc < 0 ? 1 : 0;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
