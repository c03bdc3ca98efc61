/*
 * rng.h - the job-owned random number generators. Nothing random in traind is
 * global: every job carries its own state, and it is part of the checkpoint,
 * so a resumed job draws exactly the numbers it would have drawn.
 *
 * Two streams a job chooses between (config `rng`):
 * - xoshiro: xoshiro256** seeded through splitmix64 (struct rng), traind's
 *   own; the stream of every job stored before `rng` existed.
 * - torch: mt19937 as PyTorch's CPU generator (struct mt19937), with the
 *   draws PyTorch 1.13 makes from it: torch.manual_seed, float uniform_,
 *   int64 random_, randperm. A job's numbers are then the lesson's program's.
 *
 * Thread: a struct rng is plain data, used by one thread at a time.
 */
#ifndef TRAIND_RNG_H
#define TRAIND_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rng {
	uint64_t s[4];  /* xoshiro256** state; never all zero */
};

/* Seed from a 64-bit value (splitmix64 expansion). */
void rng_seed(struct rng *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t rng_next(struct rng *r);
/* Uniform integer in [0, n), unbiased (Lemire's method); n > 0. */
uint32_t rng_below(struct rng *r, uint32_t n);
/* Uniform float in [0, 1) with 24 random bits. */
float rng_uniform(struct rng *r);
/* Fisher-Yates shuffle of v[0..n). */
void rng_shuffle_u32(struct rng *r, uint32_t *v, uint32_t n);

/* ---- mt19937 as PyTorch's CPU generator (aten/src/ATen/core/MT19937RNGEngine.h,
 * CPUGeneratorImpl.cpp, core/TransformationHelper.h, native/cpu/DistributionTemplates.h,
 * native/TensorFactories.cpp randperm_cpu) ---- */

#define MT_N 624

struct mt19937 {
	uint32_t s[MT_N];  /* the state words */
	uint32_t idx;      /* next word to temper, 0..MT_N; MT_N: twist first */
};

/* torch.manual_seed(seed) / Generator.manual_seed(seed): init_genrand with the
 * seed's low 32 bits (PyTorch's mt19937(uint64_t) keeps them). */
void mt_seed(struct mt19937 *m, uint64_t seed);
/* generator->random(): the next 32-bit output. */
uint32_t mt_next32(struct mt19937 *m);
/* torch.empty((), dtype=torch.int64).random_(): random64() =
 * (draw << 32 | draw) taken mod 2^63. */
uint64_t mt_random_i64(struct mt19937 *m);
/* One float of tensor.uniform_(from, to) (from, to as PyTorch gets them, in
 * double): one 32-bit draw x, then in double (x & 0xFFFFFF) * 2^-24 *
 * (double)((float)to - (float)from) + (double)(float)from, rounded to float. */
float mt_uniform_f32(struct mt19937 *m, double from, double to);
/* torch.randperm(n, generator=m) into v[0..n): v[i] = i, then for i in
 * 0..n-2: z = draw32 % (n - i), swap v[i], v[i + z]. */
void mt_randperm(struct mt19937 *m, uint32_t *v, uint32_t n);
/* tensor.normal_(mean, std) of n >= 16 contiguous floats, as PyTorch 1.13's
 * CPU kernel computes it with its AVX2 kernels (every x86-64 CPU since
 * Haswell; DistributionTemplates.h normal_fill_AVX2): n uniform floats
 * (mt_uniform_f32(0, 1)), then each block of 16 by Box-Muller in float with
 * the cephes log and sincos PyTorch vectorises (avx_mathfun.h), here one lane
 * at a time with the same operations; when 16 does not divide n, 16 fresh
 * uniforms for the last 16 places. mean and std are taken as float. */
void mt_normal_fill_f32(struct mt19937 *m, float *data, size_t n, double mean, double std);
/* A state as a checkpoint holds it can be used: idx <= MT_N, words not all 0. */
bool mt_state_ok(const struct mt19937 *m);

/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
 * 3"): four random words that depend only on the counter and the key. A
 * stateless stream: Dropout masks are a function of (seed, step, layer,
 * element), so they do not depend on how a team splits the work, and a resume
 * reproduces them without storing them. */
void philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

#endif
