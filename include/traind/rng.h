/*
 * rng.h - the job-owned random number generator (xoshiro256**, seeded through
 * splitmix64). Nothing random in traind is global: every job carries its own
 * struct rng, and its four words are part of the checkpoint, so a resumed job
 * draws exactly the numbers it would have drawn.
 *
 * Thread: a struct rng is plain data, used by one thread at a time.
 */
#ifndef TRAIND_RNG_H
#define TRAIND_RNG_H

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

/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
 * 3"): four random words that depend only on the counter and the key. A
 * stateless stream: Dropout masks are a function of (seed, step, layer,
 * element), so they do not depend on how a team splits the work, and a resume
 * reproduces them without storing them. */
void philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

#endif
