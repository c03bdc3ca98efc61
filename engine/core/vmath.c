/*
 * vmath.c - exp, sigmoid and tanh over arrays. See engine/core/vmath.h.
 *
 * Built with -fno-trapping-math (engine/meson.build): without it GCC keeps
 * the clamps' comparisons as branches and vectorises nothing. It changes
 * no result, only what the compiler may assume of floating-point traps.
 * The baseline x86-64 variant has no vector floor (SSE4.1's) and stays
 * scalar; floor is exact, so it computes the same bits.
 */
#include "engine/core/vmath.h"

#include <math.h>
#include <stdint.h>

#include "engine/core/hot.h"

/* Cephes' expf: exp(x) = 2^n exp(r), n = floor(x / ln 2 + 1/2), r = x - n
 * ln 2 (ln 2 in two parts), exp(r) by its polynomial. */
static inline float fexp(float x)
{
	union {
		int32_t i;
		float f;
	} u;
	float fx, fl, y;

	x = x > 88.0f ? 88.0f : x;
	x = x < -87.0f ? -87.0f : x;
	fx = x * 1.44269504088896341f + 0.5f;
	fl = floorf(fx);   /* vroundps in the AVX2 and AVX-512 variants; exact in all */
	x = x - fl * 0.693359375f;
	x = x - fl * -2.12194440e-4f;
	y = (((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x + 4.1665795894e-2f) * x +
	      1.6666665459e-1f) * x + 5.0000001201e-1f) * x * x + x + 1.0f;
	u.i = ((int32_t)fl + 127) << 23;
	return y * u.f;
}

HOT_CLONES
void vm_exp(float *y, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = fexp(x[i]);
}

HOT_CLONES
void vm_sigmoid(float *y, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = 1.0f / (1.0f + fexp(-x[i]));
}

HOT_CLONES
void vm_tanh(float *y, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		float a = x[i] < 0.0f ? -x[i] : x[i];
		float t = 1.0f - 2.0f / (fexp(2.0f * a) + 1.0f);

		y[i] = x[i] < 0.0f ? -t : t;
	}
}
