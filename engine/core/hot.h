/*
 * hot.h - marks the engine's elementwise hot loops to be compiled for AVX-512,
 * AVX2 and baseline x86-64, picked at load time (GCC target_clones). The build
 * disables FMA contraction, so every variant computes the same bits.
 *
 * Sanitizer builds use the baseline loop only. Under ThreadSanitizer the
 * clones' ifunc resolvers are instrumented and run while the dynamic loader
 * relocates the executable, before the TSan runtime is initialized: traind
 * died with SIGSEGV in k_gather's resolver before main.
 */
#ifndef TRAIND_HOT_H
#define TRAIND_HOT_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define HOT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT_CLONES
#endif

#endif
