/*
 * rankwire.h - what traind and rank 0 of a multi-rank job (traind-rank) say
 * to each other over the job's contact socket (a Unix socket traind
 * listens on, named to the rank by its command line).
 *
 * Frames: struct rw_head, then `len` bytes of payload. Both ends are this
 * build on one machine (rank 0 runs beside traind), so the payload structs
 * travel as they are in memory.
 *
 *   traind -> rank 0:  RW_INIT (the checkpoint blob to start from), then at
 *                      any time RW_STOP (enum job_stop), and RW_ACK (a u32:
 *                      0 = go on, else enum job_stop) after each RW_CKPT of
 *                      an epoch;
 *   rank 0 -> traind:  RW_PROGRESS after steps, RW_CKPT (struct rw_ckpt then
 *                      the blob) at each epoch end and before a pause or
 *                      shutdown stop, and RW_EXIT last.
 *
 * Thread: any; each fd used by one thread at a time.
 */
#ifndef TRAIND_RANKWIRE_H
#define TRAIND_RANKWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"
#include "traind/trainer.h"

#define RW_MAX_PAYLOAD ((uint64_t)1 << 32)   /* 4 GiB: more than any checkpoint (TRAINER_MAX_PARAMS) */

enum rw_type {
	RW_INIT = 1,
	RW_STOP,
	RW_ACK,
	RW_PROGRESS,
	RW_CKPT,
	RW_EXIT,
};

/* RW_STOP's and RW_ACK's word: enum job_stop's values (checked in
 * mpirun.c), and RW_LOST, which only a rank uses: its contact is gone. */
enum rw_stop {
	RW_GO = 0,
	RW_PAUSE = 1,
	RW_SHUTDOWN = 2,
	RW_KILL = 3,
	RW_FAIL = 4,
	RW_LOST = 100,
};

struct rw_head {
	uint32_t type;
	uint32_t pad;
	uint64_t len;
};

struct rw_progress {
	uint32_t epoch, step, steps_per_epoch, pad;
	uint64_t batches;
	double loss_sum;
	double lr;
	double samples_per_second;
};

struct rw_ckpt {
	uint32_t is_epoch, epoch, step, pad;
	double hold_seconds;
	struct history_row row;
};

struct rw_exit {
	int32_t outcome;             /* enum job_state; JOB_RUNNING for a shutdown stop */
	int32_t rc;
	char msg[TR_ERR_MSG_MAX];
};

/* One frame: 0, or -errno (-EPIPE when the peer is gone). */
int rw_send(int fd, uint32_t type, const void *a, size_t alen, const void *b, size_t blen);
/* The next frame: its head, and its payload in *payload (malloc'd, NULL
 * when len is 0; the caller frees it). -EPIPE at end of file, -EPROTO for
 * an oversized frame, else -errno. */
int rw_recv(int fd, struct rw_head *h, uint8_t **payload);

#endif
