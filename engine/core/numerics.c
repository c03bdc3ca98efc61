/*
 * numerics.c - the floating-point mode and the BLAS kernel. See
 * include/traind/numerics.h.
 */
#include "traind/numerics.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define MXCSR_DAZ 0x0040u
#define MXCSR_FTZ 0x8000u

unsigned numerics_get(void)
{
	return _mm_getcsr();
}

void numerics_set(unsigned mode)
{
	_mm_setcsr(mode);
}

unsigned numerics_enter(bool ftz)
{
	unsigned saved = _mm_getcsr();

	_mm_setcsr(ftz ? saved | MXCSR_DAZ | MXCSR_FTZ : saved & ~(MXCSR_DAZ | MXCSR_FTZ));
	return saved;
}
#else
unsigned numerics_get(void)
{
	return 0;
}

void numerics_set(unsigned mode)
{
	(void)mode;
}

unsigned numerics_enter(bool ftz)
{
	(void)ftz;
	return 0;
}
#endif

void numerics_leave(unsigned saved)
{
	numerics_set(saved);
}

const char *numerics_core(void)
{
	const char *core = openblas_get_corename();

	return core && *core ? core : "unknown";
}

void numerics_blas(char *buf, size_t len)
{
	/* openblas_get_config(): "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64" */
	const char *config = openblas_get_config();
	char version[32] = "";

	if (config && strncmp(config, "OpenBLAS ", 9) == 0)
		sscanf(config + 9, "%31s", version);
	snprintf(buf, len, "OpenBLAS %s %s", *version ? version : "?", numerics_core());
}
