/*
 * runner.h - where a job's training runs, and all that a run may see of it.
 *
 * DESIGN. A run is one training of a job, from its start (a newest
 * checkpoint that verifies, or fresh) until it stops (paused, killed,
 * failed, done, or checkpointed for a shutdown). It sees its struct run_ctx
 * and nothing else of the daemon: never the job registry, never struct job.
 * The jobs module owns each ctx (one per job, embedded in its struct job),
 * starts runs on it with run_start, asks them to stop with
 * run_request_stop, and hears of them only through the three events of its
 * struct run_events, which it implements.
 *
 * What a run shares with the loop (struct run_ctx; the owner goes through
 * the functions below, never at the fields):
 *   - id, cfg, env, events: the owner's, constant while a run exists (the
 *     loop changes cfg and id only while none does);
 *   - stop: written by run_request_stop (loop), read by the run between
 *     steps;
 *   - kill_after: the loop's (run_set_kill_after), read by the run after
 *     each epoch;
 *   - mu / prog: the progress snapshot the run publishes (run_publish) and
 *     the loop copies (run_progress_get), never live buffers;
 *   - commits_inflight: +1 by the run for each checkpoint it hands to the
 *     store thread (run_hand_over_blob), -1 on the loop just before
 *     events->commit; the loop reads it with run_commits_inflight.
 * Checkpoints: at each epoch end a run serializes its trainer to memory and
 * hands the blob to the store thread, which commits checkpoint + history
 * row in one transaction while training goes on; pause, shutdown and
 * kill-after-epoch wait for that commit.
 *
 * Events: a run posts them through the loop queue (env->lq) with nodes
 * embedded in memory allocated before it started, so posting cannot fail
 * and no event is lost. Per run: events->restored at most once (the trainer
 * is built), events->commit once per checkpoint handed over (possibly after
 * the exit), and events->exit last; after events->exit the run holds
 * nothing of the ctx but its commits in flight.
 *
 * Backends (struct runner_ops): the thread runner (worker.h: a dedicated
 * thread of traind owning its trainer) and the MPI runner (mpirun.h: the
 * job's ranks as traind-rank processes). Each embeds a struct run_base,
 * which holds what every run has (its start, its thread, its two event
 * nodes) and does what every run does (check the dataset, build the
 * trainer, report the restore, post the exit).
 *
 * Thread: run_start, run_request_stop and the events on the loop thread;
 * run_publish, run_hand_over_blob, run_base_* on a run's own thread;
 * run_progress_get on any.
 */
#ifndef TRAIND_RUNNER_H
#define TRAIND_RUNNER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/config.h"
#include "traind/dataset.h"
#include "traind/error.h"
#include "traind/trainer.h"
#include "daemon/core/loopq.h"
#include "daemon/data/dscache.h"
#include "daemon/store/store.h"
#include "daemon/store/storeq.h"

/* A request to stop (rankwire's stop words have the same values). */
enum run_stop {
	STOP_NONE,
	STOP_PAUSE,      /* save the exact position, then paused */
	STOP_SHUTDOWN,   /* save the exact position, stay "running" for the next start */
	STOP_KILL,       /* stop at once, save nothing */
	STOP_FAIL,       /* the loop saw a failure (a commit); stop at once */
};

/* The progress snapshot a run publishes (under ctx->mu), for status and watch. */
struct run_progress {
	uint32_t epoch;              /* completed epochs (in memory; may be ahead of the DB) */
	uint32_t step;               /* batches done in the current epoch */
	uint32_t steps_per_epoch;
	double samples_per_second;   /* recent training throughput */
	double loss;                 /* running mean train loss of this epoch */
	bool has_loss;
	bool active;                 /* the run is training (not loading) */
	double lr;                   /* the rate the next step uses (the schedule's) */
	bool has_lr;
};

/* What a run reports of itself to run_publish. */
struct run_report {
	uint32_t epoch, step, steps_per_epoch;
	double samples_per_second;   /* 0: unchanged */
	uint64_t batches;            /* of this epoch, with their loss_sum */
	double loss_sum;
	double lr;
};

/* Where a (re)started run actually continues from: the loop's view of the
 * job may be stale when a corrupt checkpoint was dropped on the way. */
struct run_restored {
	bool from_checkpoint;
	struct store_ckpt_desc ck;
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
	struct store_ckpt_desc ck;   /* the checkpoint it restored */
	bool restartable;            /* a failure of the run's processes (a rank, a host, the
	                                launcher), which a restart may get past */
};

struct run_ctx;
struct runner_ops;

/* The event sink: the owner's callbacks, on the loop thread. */
struct run_events {
	void (*restored)(struct run_ctx *ctx, const struct run_restored *r);
	void (*commit)(struct run_ctx *ctx, const struct run_commit *c);
	void (*exit)(struct run_ctx *ctx, const struct run_exit *ex);
};

#define RUN_MPI_ARGS_MAX 64    /* run_env.mpi_args */

/* What every run of one daemon shares: set up before the first run starts
 * (sq once the store thread runs), constant while runs exist. */
struct run_env {
	struct storeq *sq;           /* the store thread: blobs, and a run's few writes */
	struct loopq *lq;            /* where events are posted */
	struct dscache *dsc;         /* the datasets */
	const char *db_path;         /* a run's own read-only connection */
	const char *data_dir;        /* the ranks' --data-dir */
	const char *mpi_launcher;    /* the MPI runner's launcher and its extra arguments */
	const char *const *mpi_args; /* at most RUN_MPI_ARGS_MAX */
	unsigned n_mpi_args;
	const struct runner_ops *local;   /* jobs with ranks <= 1 (worker.h's thread_runner) */
	const struct runner_ops *multi;   /* ranks > 1 (mpirun.h's mpi_runner) */
};

/* One job's side of its runs (see the top). */
struct run_ctx {
	int64_t id;                  /* the job's */
	const struct train_config *cfg;
	const struct run_env *env;
	const struct run_events *events;
	_Atomic int stop;            /* enum run_stop */
	_Atomic int64_t kill_after;  /* die after this epoch commits; -1 none */
	_Atomic int commits_inflight;
	pthread_mutex_t mu;
	struct run_progress prog;    /* guarded by mu */
};

/* How run_start starts a run. */
struct run_start {
	bool weights_only;           /* restore the model only */
	bool go_on;                  /* resume --epochs: go on past an early stop too */
	const struct dataset *ds;    /* a dscache reference (the run owns it once started), or
	                                NULL: the run gets it */
	const char *digest;          /* the job's dataset digest ("": none recorded yet) */
	uint32_t committed_epoch;    /* where the progress snapshot starts */
};

struct runner_ops {
	const char *name;
	/* Start a run of ctx (run_base_spawn); 0, or an error in err with
	 * nothing started, how->ds untouched and no event to come. */
	int (*start)(struct run_ctx *ctx, const struct run_start *how, struct tr_err *err);
};

/* ---- the owner's side (loop thread) ------------------------------------ */

/* A ctx for a job on cfg (its id comes later: ctx->id, while no run
 * exists), whose runs share env and report to events: no run, no stop
 * request, no kill pending, empty progress. */
void run_ctx_init(struct run_ctx *ctx, const struct train_config *cfg, const struct run_env *env,
		  const struct run_events *events);
void run_ctx_deinit(struct run_ctx *ctx);
/* Start a run of ctx on the runner its configuration calls for (ranks > 1:
 * env->multi, else env->local). 0, or an error in err with nothing started
 * and how->ds untouched. */
int run_start(struct run_ctx *ctx, const struct run_start *how, struct tr_err *err);
/* Ask the run to stop between steps (STOP_NONE is not a request). A pause
 * or a shutdown does not override an earlier request; a kill or a failure
 * does. Returns at once. */
void run_request_stop(struct run_ctx *ctx, enum run_stop why);
/* The kill after an epoch the runs honour (-1: none). Any thread. */
int64_t run_kill_after(struct run_ctx *ctx);
void run_set_kill_after(struct run_ctx *ctx, int64_t epoch);
/* Withdraw the kill after `epoch` if it is still the one set. */
void run_drop_kill_after(struct run_ctx *ctx, int64_t epoch);
/* Checkpoints handed to the store thread whose commit event has not run yet. */
int run_commits_inflight(struct run_ctx *ctx);
/* The progress snapshot, while no run writes it: the position (recovery,
 * a job started from another), and the steps per epoch when not known yet
 * (only_unknown) or always. */
void run_progress_place(struct run_ctx *ctx, uint32_t epoch, uint32_t step);
void run_progress_steps(struct run_ctx *ctx, uint32_t steps_per_epoch, bool only_unknown);

/* A copy of the progress the run last published. Any thread. */
void run_progress_get(struct run_ctx *ctx, struct run_progress *out);

/* ---- a run's side (its own thread) ------------------------------------- */

/* Publish the run's progress: `r` (NULL: only whether it is active). */
void run_publish(struct run_ctx *ctx, const struct run_report *r, bool active);

/* Hand a serialized trainer (blob: `len` bytes of a `cap`-byte buffer,
 * owned from here whatever happens: given back to `pool` after the commit,
 * or freed when pool is NULL) at epoch/step to the store thread (row: an
 * epoch's commit with its history row); events->commit follows. sync: wait
 * for the commit and return its result. */
struct blob_pool;
int run_hand_over_blob(struct run_ctx *ctx, struct blob_pool *pool, uint8_t *blob, size_t cap,
		       size_t len, const struct history_row *row, uint32_t epoch, uint32_t step,
		       double hold_seconds, bool sync, struct tr_err *err);

/* What every backend's run holds: the first member of its run struct,
 * which is allocated with malloc or calloc (the exit event frees it). */
struct run_base {
	struct run_ctx *ctx;
	bool weights_only, go_on;
	const struct dataset *ds;        /* run_start's reference until the run takes it */
	char digest[DSCACHE_DIGEST_MAX]; /* the job's dataset digest when it started ("": none yet) */
	pthread_t thread;                /* set by run_base_spawn (before the run can post its exit) */
	struct loopq_node restored_node; /* "the trainer is built": posted at most once */
	struct run_restored restored;
	struct loopq_node exit_node;     /* "I have stopped": the run's last post */
	struct run_exit ex;
};

/* For a backend's start (loop thread): fill rb in from ctx and how, clear
 * the stop request, put the progress snapshot back to the committed epoch
 * (the epoch's step count kept for status until the run publishes its
 * own), then start the run's thread on main(rb). 0, or -errno with no
 * thread started. */
int run_base_spawn(struct run_base *rb, struct run_ctx *ctx, const struct run_start *how,
		   void *(*main)(void *rb));
/* The start of every run (its thread): the dataset checked (its files must
 * be those the job started with; a job without a digest records it), got
 * (*ds: run_start's reference, or a new one; the caller puts it back), and
 * the trainer built (*t: the newest checkpoint that verifies, dropping those
 * that do not, or fresh; rb->ex says from where). */
int run_base_prepare(struct run_base *rb, const struct dataset **ds, struct trainer **t,
		     struct tr_err *err);
/* Post events->restored with what t says (its history, schedule, model). */
void run_base_restored(struct run_base *rb, const struct trainer *t);
/* The last touch of a run: rc < 0 makes it a failure with err's message;
 * posts events->exit. The loop joins the thread and frees the run. */
void run_base_exit(struct run_base *rb, int rc, const struct tr_err *err);

#endif
