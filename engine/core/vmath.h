/*
 * vmath.h - exp, sigmoid and tanh over arrays of floats, in loops the
 * compiler vectorises (AVX-512, AVX2 or SSE, picked at load time: hot.h),
 * for the layers of sequences (engine/model/seq.c). Private to the engine.
 *
 * exp is Cephes' expf (a range reduction by ln 2 in two parts and a degree
 * 6 polynomial, within 2 ulp), inputs clamped to [-87, 88]; sigmoid(x) =
 * 1 / (1 + exp(-x)); tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)) (an
 * absolute error of a few 1e-8 near 0). Every variant of a loop computes
 * the same bits: plain IEEE operations, no FMA contraction (the build's
 * -ffp-contract=off), the same order.
 *
 * Thread: pure functions of their arguments; any thread.
 */
#ifndef TRAIND_ENGINE_CORE_VMATH_H
#define TRAIND_ENGINE_CORE_VMATH_H

#include <stddef.h>

/* y[i] = f(x[i]) for i < n; y may be x. */
void vm_exp(float *y, const float *x, size_t n);
void vm_sigmoid(float *y, const float *x, size_t n);
void vm_tanh(float *y, const float *x, size_t n);

#endif
