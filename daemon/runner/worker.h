/*
 * worker.h - where a job's training runs, behind a runner interface.
 *
 * The loop side (jobs.c) starts, stops and hears from a run only through
 * struct runner_ops and the three events below; it never touches a run's
 * thread, trainer or buffers. Today's one backend, thread_runner (worker.c),
 * runs each job on a dedicated thread of this process that owns its trainer
 * (and the trainer's team); a later backend may run the ranks of a job in
 * other processes and post the same events.
 *
 * What a run shares with the loop (fields of struct job, jobs.h):
 *   - j->stop: written by runner_ops.stop (loop), read by the run between
 *     steps; only the runner touches it;
 *   - j->kill_after: the loop's, read by the run after each epoch;
 *   - j->mu / j->prog: the progress snapshot the run publishes and the loop
 *     copies (job_progress_get), never live buffers;
 *   - j->commits_inflight: +1 by the run for each checkpoint it hands to the
 *     store thread, -1 by the loop in jobs_on_commit.
 * Checkpoints: at each epoch end the run serializes its trainer to memory and
 * hands the blob to the store thread, which commits checkpoint + history row
 * in one transaction while training goes on; pause, shutdown and
 * kill-after-epoch wait for that commit.
 *
 * Events: a run posts them through the loop queue with nodes embedded in
 * memory allocated before it started, so posting cannot fail and no event
 * is lost. Per run: jobs_on_restored at most once (the trainer is built),
 * jobs_on_commit once per checkpoint handed over (possibly after the exit),
 * and jobs_on_exit last; after jobs_on_exit the run holds nothing of the job.
 *
 * Thread: runner_ops and the events on the loop thread; the run itself on
 * its own thread(s).
 */
#ifndef TRAIND_WORKER_H
#define TRAIND_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/checkpoint.h"
#include "traind/dataset.h"
#include "traind/error.h"
#include "daemon/jobs/jobs.h"
#include "traind/trainer.h"

/* Where a (re)started run actually continues from: the loop's view of the
 * job may be stale when a corrupt checkpoint was dropped on the way. */
struct run_restored {
	bool from_checkpoint;
	struct job_checkpoint ck;
	uint32_t nhistory;
	double last_val_acc;
	uint64_t params;
	uint32_t best_epoch;         /* the restored schedule's best epoch (0: none) */
	double best_value;
	uint32_t classes;            /* the model's outputs: its dataset's classes */
	char dataset_digest[DSCACHE_DIGEST_MAX]; /* the digest the run recorded for a job that had
	                                 none (stored before digests), else "" */
	char numerics[sizeof(((struct trainer *)0)->numerics_changed)]; /* "" or what a
	                                 restore under another BLAS kernel means */
};

/* A checkpoint's commit, done or failed. */
struct run_commit {
	bool is_epoch;
	struct history_row row;      /* epoch commits */
	uint32_t epoch, step;        /* position of the blob */
	size_t len;
	char checksum[STORE_CHECKSUM_MAX];
	double hold_seconds;         /* training held for serialization */
	double durable_after;        /* seconds from hand-over to commit */
	int rc;
	struct tr_err err;
};

/* How a run ended. */
struct run_exit {
	int outcome;                 /* enum job_state; JOB_RUNNING for a shutdown stop */
	int rc;
	char msg[TR_ERR_MSG_MAX];
	uint32_t restored_epoch;     /* where a resume started (for the log) */
	uint32_t restored_step;
	bool restored;
	struct job_checkpoint ck;    /* the checkpoint it restored */
	bool restartable;            /* a failure of the run's processes (a rank, a host, the
	                                launcher), which a restart may get past */
};

struct runner_ops {
	const char *name;
	/* Start a run of j: from its newest checkpoint that verifies (the model
	 * only with weights_only), else fresh; on `ds` (a dscache reference the
	 * run then owns) or, if NULL, the dataset the run gets itself. 0, or an
	 * error in err with nothing started, ds untouched and no event to come. */
	int (*start)(struct job *j, bool weights_only, const struct dataset *ds,
		     struct tr_err *err);
	/* Ask the run to stop between steps (enum job_stop; STOP_NONE is not a
	 * request). A pause or a shutdown does not override an earlier request;
	 * a kill or a failure does. Returns at once. */
	void (*stop)(struct job *j, enum job_stop why);
};

/* The thread backend (worker.c). */
extern const struct runner_ops thread_runner;
/* The MPI backend (mpirun.c): a job with ranks > 1 as processes started by
 * the launcher of mpi_settings (daemon.h). */
extern const struct runner_ops mpi_runner;

/* The runner of j: mpi_runner for ranks > 1, else the daemon's. */
const struct runner_ops *job_runner(const struct job *j);

/* Shared by the runners (worker.c), on a run's own thread. */
/* The trainer of a (re)started run: the newest checkpoint that verifies
 * (dropping those that do not), or fresh; ex->restored and its position
 * filled in. */
int run_load_trainer(struct job *j, const struct dataset *ds, bool weights_only, bool go_on,
		     struct trainer **out, struct run_exit *ex, struct tr_err *err);
/* The dataset's files must be `digest` ("" : none recorded yet, then it is
 * recorded and copied to digest and `recorded`); -ESTALE otherwise. */
int run_check_dataset(struct job *j, char digest[DSCACHE_DIGEST_MAX],
		      char recorded[DSCACHE_DIGEST_MAX], struct tr_err *err);
/* Hand a serialized trainer (blob: `len` bytes of a `cap`-byte buffer,
 * owned from here whatever happens: given back to `pool` after the commit,
 * or freed when pool is NULL) at epoch/step to the store thread (row: an
 * epoch's commit with its history row); jobs_on_commit follows. sync: wait
 * for the commit and return its result. */
struct blob_pool;
int run_hand_over_blob(struct job *j, struct blob_pool *pool, uint8_t *blob, size_t cap, size_t len,
		       const struct history_row *row, uint32_t epoch, uint32_t step, double hold_seconds,
		       bool sync, struct tr_err *err);

/* For a backend's start, on the loop thread before its run begins: no stop
 * request, and the progress snapshot back to the committed epoch (the
 * epoch's step count kept for status until the run publishes its own). */
void run_reset(struct job *j);
/* Every backend's runner_ops.stop: a pause or a shutdown does not override
 * an earlier request; a kill or a failure does. */
void run_request_stop(struct job *j, enum job_stop why);

/* The events, implemented by jobs.c, run on the loop thread. */
void jobs_on_restored(struct job *j, const struct run_restored *r);
void jobs_on_commit(struct job *j, const struct run_commit *c);
void jobs_on_exit(struct job *j, const struct run_exit *ex);

#endif
