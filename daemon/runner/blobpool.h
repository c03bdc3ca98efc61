/*
 * blobpool.h - a run's spare checkpoint buffer.
 *
 * Serializing at an epoch's end copies into memory already faulted in
 * instead of fresh pages (10-13 ms for the lesson's 2.6 MB on a VM, against
 * 0.3 ms for the copy). The run takes the spare for each hand-over
 * (run_hand_over_blob); the commit gives its buffer back when the loop
 * hears of it. A pool is shared by its run and the run's commits in
 * flight, which may outlive it: each holds a reference, the last one frees
 * the pool.
 *
 * Thread: any (a mutex guards the pool).
 */
#ifndef TRAIND_BLOBPOOL_H
#define TRAIND_BLOBPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "traind/trainer.h"

struct blob_pool;

/* A pool with one reference (the run's) and no spare; NULL when out of memory. */
struct blob_pool *blob_pool_new(void);
/* Take the spare (NULL, 0 if none) with a reference for the commit. */
void blob_pool_take(struct blob_pool *p, uint8_t **buf, size_t *cap);
/* Give a buffer back (kept if the pool has no spare, else freed) and drop a
 * reference; the last one frees the pool. p NULL (a blob handed over
 * without a pool: a rank's checkpoint): buf is freed. */
void blob_pool_put(struct blob_pool *p, uint8_t *buf, size_t cap);
/* Allocate and write the spare once before training starts (a failure only
 * means the first hand-over allocates): by serializing t into it, which
 * faults its pages in and leaves them in the cache the way a commit leaves
 * them for the next epoch (a memset of this size did not, probably through
 * glibc's non-temporal stores: the first epoch's copy then took 1.8 ms
 * instead of 0.3), then growing it by some slack for the history metadata. */
void blob_pool_prefault(struct blob_pool *p, const struct trainer *t);

#endif
