/*
 * numerics.h - the numeric environment that decides a job's bits: the CPU's
 * floating-point mode (flush-to-zero and denormals-are-zero, a job setting)
 * and what computes its matrix products: for precision fp32 the BLAS library
 * and kernel (OpenBLAS picks its kernel by CPU, and the kernel decides how
 * each dot product is summed), for bf16 traind's bf16 kernels and their path
 * (AMX or AVX-512-BF16; the two sum each pair of products in another order).
 *
 * A job records the environment it trained in (kernels.h's k_precision_numerics:
 * numerics_blas, or for bf16 the bf16 kernels and their path); a resume
 * compares it with the current one, so a job that moves to another kernel is
 * told that its bits no longer continue the same run.
 *
 * Thread: numerics_enter/leave change the calling thread's floating-point
 * mode only; the rest is pure or read-only. A team's helpers take the mode of
 * the owner at each phase (team.c).
 */
#ifndef TRAIND_NUMERICS_H
#define TRAIND_NUMERICS_H

#include <stdbool.h>
#include <stddef.h>

#define NUMERICS_TEXT_MAX 96

/* The calling thread's floating-point control word (MXCSR on x86-64). */
unsigned numerics_get(void);
void numerics_set(unsigned mode);

/* Set FTZ and DAZ on (ftz) or off for this thread; returns the mode to give
 * back to numerics_leave. */
unsigned numerics_enter(bool ftz);
void numerics_leave(unsigned saved);

/* "OpenBLAS 0.3.21 Haswell": the BLAS library, its version and the kernel it
 * runs on this CPU. */
void numerics_blas(char *buf, size_t len);
/* The BLAS kernel alone ("Haswell"). */
const char *numerics_core(void);

#endif
