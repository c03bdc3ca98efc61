/*
 * worker.c - the thread runner: each run of a job on a dedicated thread
 * that owns its trainer. See daemon/runner/worker.h, and runner.h for the
 * contract with the loop.
 *
 * A run is one struct worker_run, allocated by the loop before the thread
 * starts and freed by the loop when the run's exit event arrives, so the
 * events the thread posts need no allocation and cannot be lost. The thread
 * builds its trainer (run_base_prepare: the newest checkpoint that
 * verifies, or fresh), posts "restored", trains step by step, publishes
 * progress, hands each epoch's checkpoint to the store thread, and honours
 * ctx->stop between steps. Checkpoints are serialized into a buffer the run
 * keeps and gets back after each commit (blobpool.h), faulted in before
 * training.
 */
#include "daemon/runner/worker.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "traind/checkpoint.h"
#include "traind/clock.h"
#include "daemon/core/log.h"
#include "daemon/runner/blobpool.h"
#include "daemon/store/jobstate.h"

#define WORKER_NICE 5   /* training threads run at this nice value */

/* One run of a worker thread (see the top). */
struct worker_run {
	struct run_base base;            /* first: the exit event frees the run through it */
	struct blob_pool *pool;          /* checkpoint buffers; the worker's reference */
};

/* Serialize the trainer into the pool's spare and hand it to the store
 * thread; with `sync`, wait for the commit (pause, shutdown,
 * kill-after-epoch). Returns the commit's result when sync, else 0 once
 * submitted. */
static int hand_over(struct run_ctx *ctx, struct blob_pool *pool, struct trainer *t,
		     const struct history_row *row, bool sync, struct tr_err *err)
{
	double t0 = clock_seconds();
	uint8_t *blob = NULL;
	size_t cap = 0, len = 0;
	int rc;

	blob_pool_take(pool, &blob, &cap);
	rc = checkpoint_serialize_into(t, &blob, &cap, &len, err);
	if (rc < 0) {
		blob_pool_put(pool, blob, cap);
		return rc;
	}
	return run_hand_over_blob(ctx, pool, blob, cap, len, row, t->epoch, t->step,
				  clock_seconds() - t0, sync, err);
}

/* What the trainer says of its progress, with the recent throughput. */
static void publish(struct run_ctx *ctx, const struct trainer *t, double sps, bool active)
{
	struct run_report r = {
		.epoch = t->epoch, .step = t->step, .steps_per_epoch = t->steps_per_epoch,
		.samples_per_second = sps, .batches = t->sums.batches, .loss_sum = t->sums.loss_sum,
		.lr = t->sched.lr,
	};

	run_publish(ctx, &r, active);
}

static void *worker_main(void *arg)
{
	struct worker_run *run = arg;
	struct run_ctx *ctx = run->base.ctx;
	struct run_exit *ex = &run->base.ex;
	const struct dataset *ds = NULL;
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	struct trainer_rate rate;
	double sps = 0;
	int rc;

	trainer_rate_start(&rate);
	/* Training yields to the loop and the store thread: a checkpoint commit or
	 * a status reply should never queue behind a minibatch. Linux nice values
	 * are per thread and inherited by the team threads created below. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), WORKER_NICE) < 0)
		log_debug("job %" PRId64 ": cannot lower the worker's priority", ctx->id);
	rc = run_base_prepare(&run->base, &ds, &t, &err);
	if (rc < 0)
		goto out;
	blob_pool_prefault(run->pool, t);
	run_base_restored(&run->base, t);
	publish(ctx, t, 0, true);
	for (;;) {
		int stop = atomic_load(&ctx->stop);

		if (stop != STOP_NONE) {
			if (stop == STOP_PAUSE || stop == STOP_SHUTDOWN) {
				/* Save the exact position unless the newest epoch
				 * checkpoint already is it. */
				if (t->step > 0) {
					rc = hand_over(ctx, run->pool, t, NULL, true, &err);
					if (rc < 0)
						goto out;
				}
				ex->outcome = stop == STOP_PAUSE ? JOB_PAUSED : JOB_RUNNING;
			} else {
				ex->outcome = stop == STOP_KILL ? JOB_KILLED : JOB_FAILED;
			}
			rc = 0;
			break;
		}
		if (trainer_finished(t)) {
			ex->outcome = JOB_DONE;
			rc = 0;
			break;
		}
		if (trainer_epoch_done(t)) {
			struct history_row row;
			int64_t kill_after;

			rc = trainer_end_epoch(t, &row);
			if (rc < 0) {
				tr_err_set(&err, rc, "evaluation failed");
				goto out;
			}
			kill_after = atomic_load(&ctx->kill_after);
			if (kill_after == (int64_t)row.epoch) {
				/* The lesson's crash: die right after this commit. */
				rc = hand_over(ctx, run->pool, t, &row, true, &err);
				if (rc < 0)
					goto out;
				ex->outcome = JOB_KILLED;
				break;
			}
			rc = hand_over(ctx, run->pool, t, &row, false, &err);
			if (rc < 0)
				goto out;
			publish(ctx, t, sps, true);
			continue;
		}
		rc = trainer_step(t);
		if (rc < 0) {
			tr_err_set(&err, rc, "training step failed");
			goto out;
		}
		sps = trainer_rate_step(&rate, t);
		publish(ctx, t, sps, true);
	}
out:
	if (t)
		publish(ctx, t, sps, false);
	trainer_free(t);
	if (ds)
		dscache_put(ctx->env->dsc, ds);
	blob_pool_put(run->pool, NULL, 0);   /* commits in flight keep it until the loop hears them */
	run_base_exit(&run->base, rc, &err);   /* the last touch of the run: the loop frees it */
	return NULL;
}

static int thread_start(struct run_ctx *ctx, const struct run_start *how, struct tr_err *err)
{
	struct worker_run *run = calloc(1, sizeof(*run));
	int rc;

	if (run)
		run->pool = blob_pool_new();
	if (!run || !run->pool) {
		free(run);
		return tr_err_set(err, -ENOMEM, "out of memory starting the worker");
	}
	rc = run_base_spawn(&run->base, ctx, how, worker_main);   /* the run is the worker's once it runs */
	if (rc < 0) {
		blob_pool_put(run->pool, NULL, 0);
		free(run);
		return tr_err_set(err, rc, "cannot start a worker thread");
	}
	return 0;
}

const struct runner_ops thread_runner = {
	.name = "thread",
	.start = thread_start,
};
