/*
 * test-kernels.c - the convolution and pooling kernels (kernels.c) against
 * plain loops written here from kernels.h's definitions, bit for bit, on
 * random data with NaNs, signed zeros, denormals and ties, for the shapes
 * of the AVX-512 row paths (stride 1, rows up to 32 floats) and around
 * them (wider rows, stride 2, padding larger than the kernel's reach): the
 * fast paths must give exactly the bits of the loops they replace. The same
 * for BatchNorm's sums and passes (channels in vector lanes, whole and
 * partial blocks of 8, a member's channel range).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "traind/kernels.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t next(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

/* Mostly ordinary values, with the awkward ones among them. */
static float value(void)
{
	switch (next() % 16) {
	case 0: return NAN;
	case 1: return -0.0f;
	case 2: return 0.0f;
	case 3: return 1e-40f;          /* denormal */
	case 4: return 1.0f;            /* ties */
	default: return ((float)(next() % 20001) - 10000.0f) / 997.0f;
	}
}

static float *random_floats(size_t n)
{
	float *p = malloc(n * sizeof(float));

	for (size_t i = 0; i < n; i++)
		p[i] = value();
	return p;
}

static void ref_im2col(float *col, const float *x, size_t c, size_t h, size_t w, size_t k, size_t s, size_t pad,
		       size_t oh, size_t ow)
{
	for (size_t ch = 0; ch < c; ch++)
		for (size_t i = 0; i < k; i++)
			for (size_t j = 0; j < k; j++)
				for (size_t oy = 0; oy < oh; oy++)
					for (size_t ox = 0; ox < ow; ox++) {
						long iy = (long)(oy * s + i) - (long)pad, ix = (long)(ox * s + j) - (long)pad;

						col[(((ch * k + i) * k + j) * oh + oy) * ow + ox] =
							iy < 0 || ix < 0 || iy >= (long)h || ix >= (long)w
								? 0.0f
								: x[(ch * h + (size_t)iy) * w + (size_t)ix];
					}
}

static void ref_col2im(float *dx, const float *col, size_t c, size_t h, size_t w, size_t k, size_t s, size_t pad,
		       size_t oh, size_t ow)
{
	memset(dx, 0, c * h * w * sizeof(float));
	for (size_t ch = 0; ch < c; ch++)
		for (size_t i = 0; i < k; i++)
			for (size_t j = 0; j < k; j++)
				for (size_t oy = 0; oy < oh; oy++)
					for (size_t ox = 0; ox < ow; ox++) {
						long iy = (long)(oy * s + i) - (long)pad, ix = (long)(ox * s + j) - (long)pad;

						if (iy >= 0 && ix >= 0 && iy < (long)h && ix < (long)w)
							dx[(ch * h + (size_t)iy) * w + (size_t)ix] +=
								col[(((ch * k + i) * k + j) * oh + oy) * ow + ox];
					}
}

static void ref_maxpool(float *y, uint32_t *argmax, const float *x, size_t c, size_t h, size_t w, size_t k,
			size_t s, size_t oh, size_t ow)
{
	for (size_t ch = 0; ch < c; ch++)
		for (size_t oy = 0; oy < oh; oy++)
			for (size_t ox = 0; ox < ow; ox++) {
				size_t best = (oy * s) * w + ox * s;
				float m = x[ch * h * w + best];

				for (size_t i = 0; i < k; i++)
					for (size_t j = 0; j < k; j++) {
						size_t at = (oy * s + i) * w + ox * s + j;
						float v = x[ch * h * w + at];

						if (v > m || isnan(v)) {
							m = v;
							best = at;
						}
					}
				y[(ch * oh + oy) * ow + ox] = m;
				argmax[(ch * oh + oy) * ow + ox] = (uint32_t)(ch * h * w + best);
			}
}

struct conv_shape {
	size_t c, h, w, k, s, pad;
};

static const struct conv_shape shapes[] = {
	{ 1, 28, 28, 5, 1, 2 },         /* lenet5's conv1 */
	{ 6, 14, 14, 5, 1, 0 },         /* lenet5's conv2 */
	{ 3, 9, 7, 3, 1, 1 },
	{ 2, 5, 5, 3, 1, 4 },           /* padding wider than the kernel reaches */
	{ 2, 12, 32, 3, 1, 1 },         /* 32 floats: the widest AVX-512 row */
	{ 2, 6, 33, 3, 1, 1 },          /* 33: the loops again */
	{ 1, 16, 17, 1, 1, 0 },
	{ 4, 11, 11, 3, 2, 1 },         /* stride 2: the loops */
	{ 1, 40, 40, 5, 1, 2 },         /* 40 wide: the loops */
	{ 1, 3, 3, 35, 1, 17 },         /* a kernel 35 wide on a small image: the loops */
};

/* The bits of a and b, NaNs included. */
static void assert_same_bits(const float *a, const float *b, size_t n, const char *what, size_t shape)
{
	if (memcmp(a, b, n * sizeof(float)) != 0) {
		for (size_t i = 0; i < n; i++) {
			uint32_t ua, ub;

			memcpy(&ua, &a[i], 4);
			memcpy(&ub, &b[i], 4);
			if (ua != ub)
				fail_msg("%s, shape %zu: element %zu is %08x, the loops give %08x", what, shape, i, ua, ub);
		}
	}
}

static void test_im2col_col2im(void **state)
{
	(void)state;
	for (size_t t = 0; t < sizeof(shapes) / sizeof(shapes[0]); t++) {
		const struct conv_shape *sh = &shapes[t];
		size_t oh = (sh->h + 2 * sh->pad - sh->k) / sh->s + 1, ow = (sh->w + 2 * sh->pad - sh->k) / sh->s + 1;
		size_t in = sh->c * sh->h * sh->w, cols = sh->c * sh->k * sh->k * oh * ow;
		float *x = random_floats(in), *col = random_floats(cols), *want = malloc(cols * sizeof(float));
		float *dcol = random_floats(cols), *dx = random_floats(in), *dx_want = malloc(in * sizeof(float));

		/* im2col writes every element: the garbage in col must all go */
		k_im2col(col, x, sh->c, sh->h, sh->w, sh->k, sh->s, sh->pad, oh, ow);
		ref_im2col(want, x, sh->c, sh->h, sh->w, sh->k, sh->s, sh->pad, oh, ow);
		assert_same_bits(col, want, cols, "im2col", t);
		k_col2im(dx, dcol, sh->c, sh->h, sh->w, sh->k, sh->s, sh->pad, oh, ow);
		ref_col2im(dx_want, dcol, sh->c, sh->h, sh->w, sh->k, sh->s, sh->pad, oh, ow);
		assert_same_bits(dx, dx_want, in, "col2im", t);
		free(x);
		free(col);
		free(want);
		free(dcol);
		free(dx);
		free(dx_want);
	}
}

static void test_maxpool(void **state)
{
	static const struct conv_shape pools[] = {
		{ 6, 28, 28, 2, 2, 0 },  /* lenet5's pools */
		{ 16, 10, 10, 2, 2, 0 },
		{ 3, 9, 9, 2, 2, 0 },    /* an odd size: the last row and column are left out */
		{ 2, 4, 70, 2, 2, 0 },   /* 35 outputs: three chunks of 16 */
		{ 2, 9, 9, 3, 2, 0 },    /* 3x3: the general loops */
	};

	(void)state;
	for (size_t t = 0; t < sizeof(pools) / sizeof(pools[0]); t++) {
		const struct conv_shape *p = &pools[t];
		size_t oh = (p->h - p->k) / p->s + 1, ow = (p->w - p->k) / p->s + 1, out = p->c * oh * ow;
		float *x = random_floats(p->c * p->h * p->w), *y = random_floats(out), *y_want = malloc(out * sizeof(float));
		uint32_t *am = calloc(out, sizeof(uint32_t)), *am_want = calloc(out, sizeof(uint32_t));

		k_maxpool(y, am, x, p->c, p->h, p->w, p->k, p->s, oh, ow);
		ref_maxpool(y_want, am_want, x, p->c, p->h, p->w, p->k, p->s, oh, ow);
		assert_same_bits(y, y_want, out, "maxpool", t);
		assert_memory_equal(am, am_want, out * sizeof(uint32_t));
		free(x);
		free(y);
		free(y_want);
		free(am);
		free(am_want);
	}
}

/* BatchNorm's kernels against the loops bn_forward and bn_backward ran
 * before them: per channel, the sums in (row, position) order in double. */
struct bn_shape {
	size_t batch, C, S, c0, c1;
};

static void test_batchnorm(void **state)
{
	static const struct bn_shape shapes_bn[] = {
		{ 3, 13, 7, 0, 13 },    /* one block of 8 and one of 5 */
		{ 2, 16, 49, 3, 16 },   /* a member's range, starting mid-block */
		{ 1, 5, 1, 1, 4 },      /* one position: batchnorm1d's shape */
		{ 4, 64, 9, 0, 64 },
		{ 5, 8, 33, 0, 8 },
	};

	(void)state;
	for (size_t t = 0; t < sizeof(shapes_bn) / sizeof(shapes_bn[0]); t++) {
		const struct bn_shape *b = &shapes_bn[t];
		size_t size = b->C * b->S, n = b->batch * size, nc = b->c1 - b->c0;
		float *x = random_floats(n), *dy = random_floats(n);
		float *y = random_floats(n), *y_want = random_floats(n), *dx = random_floats(n), *dx_want = random_floats(n);
		double sum[64], sq[64], sdy[64], sdyx[64], want[4][64], invstd[64];

		/* No NaNs (they would make every sum NaN), and magnitudes 2^-24..2^24
		 * apart, so that a double sum of these floats is not exact and
		 * another order of its terms gives other bits. */
		for (size_t i = 0; i < n; i++) {
			if (isnan(x[i]))
				x[i] = 3e30f;
			if (isnan(dy[i]))
				dy[i] = -1e-30f;
			x[i] = ldexpf(x[i], (int)(next() % 48) - 24);
			dy[i] = ldexpf(dy[i], (int)(next() % 48) - 24);
		}
		memcpy(y_want, y, n * sizeof(float));
		memcpy(dx_want, dx, n * sizeof(float));
		k_bn_sums(sum, x, b->batch, size, b->S, b->c0, b->c1);
		for (size_t c = b->c0; c < b->c1; c++) {
			double a = 0.0;

			for (size_t r = 0; r < b->batch; r++)
				for (size_t s = 0; s < b->S; s++)
					a += x[r * size + c * b->S + s];
			want[0][c - b->c0] = a;
		}
		if (memcmp(sum, want[0], nc * sizeof(double)))
			fail_msg("batchnorm sums, shape %zu: not the loops' bits", t);
		for (size_t c = b->c0; c < b->c1; c++) {
			sum[c - b->c0] /= (double)(b->batch * b->S);   /* now the means */
			invstd[c - b->c0] = 1.0 / (double)(c + 1);
		}
		k_bn_sqsums(sq, x, sum, b->batch, size, b->S, b->c0, b->c1);
		k_bn_grad_sums(sdy, sdyx, dy, x, sum, invstd, b->batch, size, b->S, b->c0, b->c1);
		for (size_t c = b->c0; c < b->c1; c++) {
			double q = 0.0, d1 = 0.0, d2 = 0.0, mean = sum[c - b->c0], is = invstd[c - b->c0];

			for (size_t r = 0; r < b->batch; r++)
				for (size_t s = 0; s < b->S; s++) {
					size_t e = r * size + c * b->S + s;
					double d = x[e] - mean;

					q += d * d;
					d1 += dy[e];
					d2 += dy[e] * ((x[e] - mean) * is);
				}
			want[1][c - b->c0] = q;
			want[2][c - b->c0] = d1;
			want[3][c - b->c0] = d2;
			k_bn_apply(y + c * b->S, x + c * b->S, b->batch, size, b->S, (float)is, (float)-mean);
			k_bn_dx(dx + c * b->S, dy + c * b->S, x + c * b->S, b->batch, size, b->S, mean, is, 0.5 * is,
				d1 / 3.0, d2 / 7.0);
			for (size_t r = 0; r < b->batch; r++)
				for (size_t s = 0; s < b->S; s++) {
					size_t e = r * size + c * b->S + s;
					double xhat = (x[e] - mean) * is;

					y_want[e] = x[e] * (float)is + (float)-mean;
					dx_want[e] = (float)(0.5 * is * (dy[e] - d1 / 3.0 - xhat * (d2 / 7.0)));
				}
		}
		if (memcmp(sq, want[1], nc * sizeof(double)) || memcmp(sdy, want[2], nc * sizeof(double)) ||
		    memcmp(sdyx, want[3], nc * sizeof(double)))
			fail_msg("batchnorm deviation and gradient sums, shape %zu: not the loops' bits", t);
		assert_same_bits(y, y_want, n, "batchnorm apply", t);
		assert_same_bits(dx, dx_want, n, "batchnorm dx", t);
		free(x);
		free(dy);
		free(y);
		free(y_want);
		free(dx);
		free(dx_want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_im2col_col2im),
		cmocka_unit_test(test_maxpool),
		cmocka_unit_test(test_batchnorm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
