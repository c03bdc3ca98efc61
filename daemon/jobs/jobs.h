/*
 * jobs.h - the job registry, recovery, the scheduler and the jobs' state
 * machine, and the verbs (Start, Pause, Resume, Kill, Delete) that drive it.
 *
 * DESIGN. The loop thread owns the registry: every struct job, its state, and
 * all decisions (start, pause, kill, resume, fail, finish). A job trains in
 * runs behind the runner interface (runner.h); the loop starts and stops
 * runs only through it and hears of them only through the events a run
 * posts (restored, commit, exit), and frees nothing a run may touch before
 * its exit event. What a run sees of its job is the struct run_ctx embedded
 * in it (job.run), listed in runner.h. The calls
 * pending on a job (Wait, Watch, a Pause or Kill answered once stopped) are
 * waiters.h's; the protocol's JSON shapes wire.h's.
 *
 * States: queued -> running -> {paused, killed, failed, done}; resume puts
 * paused/killed/failed back to queued. Delete removes a stopped job (a
 * queued or running one only with force, which kills it first). At most max_running jobs run; the
 * rest wait in order of queueing. A shutdown (SIGTERM) checkpoints every
 * running job and leaves it "running" in the database, so the next start
 * continues it, as it does after a crash.
 *
 * Two states per job. `target` is where the loop has decided to take the job:
 * the scheduler and the verbs act on it at once. `state` is the committed
 * state: it changes only when the store thread reports the write of a target
 * done, in the order the writes were made, and it is the only state the
 * protocol shows (Status, List, Wait, Watch and every reply), so a client is
 * never told of a state the database does not hold; a Pause, Kill or Resume
 * is answered when its state is durable. (When the database refuses a write
 * (disk full, I/O error) the state is adopted anyway when the write fails,
 * with the error logged: there is nothing more durable to show; the job acts
 * on it (a resumed job runs, and fails at its first checkpoint), and the next
 * start recovers from what the database holds.)
 *
 * Thread: everything here on the loop thread.
 */
#ifndef TRAIND_JOBS_H
#define TRAIND_JOBS_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "traind/config.h"
#include "daemon/core/daemon.h"
#include "daemon/data/dscache.h"
#include "daemon/core/loopq.h"
#include "daemon/proto/server.h"
#include "daemon/store/store.h"
#include "daemon/store/storeq.h"
#include "daemon/runner/runner.h"

struct waiter;
struct daemon;

struct job {
	int64_t id;
	char name[STORE_NAME_MAX];
	struct train_config cfg;
	int32_t keep;
	enum job_state state;        /* committed (durable); the only state the protocol shows */
	char *state_error;           /* last_error committed with `state`, owned */
	enum job_state target;       /* decided; what the scheduler and the verbs act on */
	unsigned state_writes;       /* state writes submitted and not yet completed */
	uint32_t state_seq;          /* state decisions taken (numbers them) */
	uint32_t state_shown;        /* the decision `state` is */
	char *error;                 /* last failure (working copy, recorded with the next state), owned */
	int64_t created, updated;
	uint32_t committed_epoch;    /* epochs whose checkpoint + history are durable */
	double last_val_acc;
	bool has_val_acc;
	struct store_ckpt_desc newest; /* the newest committed checkpoint, loop's copy */
	uint32_t best_epoch;         /* the best epoch by cfg.monitor so far; 0: none */
	double best_value;           /* its monitored value */
	char *stopped_early;         /* the note of an early stop ("stopped early after epoch 7: ..."),
	                                owned; NULL when the job did not stop early */
	uint64_t params;             /* the model's parameters; 0 until known (its dataset's shape) */
	uint32_t classes;            /* its dataset's classes; 0 until known */
	char *model_text;            /* the model's SPEC written out (mlp, lenet5 expanded), made on
	                                first use by wire.c: cfg does not change; owned */
	char *numerics;              /* set when the last restore ran under another BLAS kernel than
	                                the job trained with: what that means, owned; else NULL */
	char dataset_digest[DSCACHE_DIGEST_MAX]; /* its dataset's files when it started
	                                (dscache_digest); "" until recorded. A run refuses other files */
	bool weights_only_next;      /* the next start restores the model only */
	bool go_on_next;             /* the next start goes on past an early stop (resume --epochs) */
	uint32_t restarts;           /* automatic restarts of a failed multi-rank run since the job
	                                was started or resumed (cfg.max_restarts at most) */
	char *last_failure;          /* the failure the newest restart followed, owned; else NULL */
	char *origin;                /* where it came from (start --from): "job 3 epoch 2", owned; else NULL */
	uint64_t queue_seq;          /* order among queued jobs */
	const struct dataset *ds;    /* the dataset the Start check loaded, for the first run
	                                (a dscache reference, owned; NULL once handed over) */

	/* its runs (runner.h) */
	bool worker_alive;           /* a run exists (from its start until its exit event) */
	bool commit_failed;
	bool finalize_pending;       /* worker gone, waiting for commits in flight */
	int exit_outcome;            /* enum job_state the worker ended in */
	bool exit_restartable;       /* run_exit.restartable */
	struct run_ctx run;          /* all that a run sees: shared with it (runner.h) */

	struct waiter *waiters;      /* Wait/Watch/Pause/Kill calls pending on this job */
	struct removal *removal;     /* a Delete in progress (jobs_delete), else NULL */
	struct daemon *d;
};


const char *job_state_name(enum job_state s);
int job_state_parse(const char *name);   /* -1 if unknown */

/* Load jobs from the database (store already migrated). Jobs left running or
 * queued are queued again, in id order, to continue from their newest
 * checkpoints. Runs before the loop starts (uses `s` synchronously; reads
 * each dataset's label header once, for the jobs' steps per epoch). */
int jobs_recover(struct daemon *d, struct store *s, struct tr_err *err);
/* Start the scheduler and the watch timer. */
void jobs_start(struct daemon *d);
struct job *jobs_find(struct daemon *d, int64_t id);

/* Batches per epoch of cfg on a training file of train_count images. */
uint32_t jobs_steps_per_epoch(const struct train_config *cfg, uint32_t train_count);

/* A new job as the Start check made it (methods.c, on the thread pool): the
 * configuration parsed and checked against the dataset once, the dataset
 * loaded once, the starting model parsed once. */
struct job_spec {
	char name[STORE_NAME_MAX];
	struct train_config cfg;     /* checked against ds */
	int32_t keep;
	const struct dataset *ds;    /* a dscache reference (owned): the job's first run trains on it */
	uint32_t steps_per_epoch;
	uint64_t params;             /* the model's parameters */
	char dataset_digest[DSCACHE_DIGEST_MAX]; /* the dataset's files, taken before loading it */
	uint8_t *init_ckpt;          /* owned, or NULL: a sealed checkpoint at epoch 0 step 0 to start
	                                from (--init-from), stored in one transaction with the job */
	size_t init_len;
	char init_checksum[STORE_CHECKSUM_MAX];
	/* start --from: where init_ckpt came from and where it stands */
	bool has_origin;
	char origin[64];             /* "job 3 epoch 2", "... (weights only)" */
	uint32_t origin_epoch, origin_step;   /* init_ckpt's position (0, 0 with weights only) */
	bool origin_is_epoch;
	double origin_val_loss;
	struct history_row *origin_rows;      /* (origin_epoch) the history before it, owned */
	double origin_val_acc;
};

/* Release what a spec owns (the dataset reference, the checkpoint). */
void job_spec_clear(struct daemon *d, struct job_spec *spec);

/* The verbs. Each either ends `c` itself (reply or error) or keeps it pending
 * until the job reaches the awaited point. */
/* Store the job (queued) and answer its id; takes what spec owns, always. */
void jobs_start_job(struct daemon *d, struct call *c, struct job_spec *spec);
void jobs_pause(struct daemon *d, struct call *c, struct job *j);
/* epochs > 0 (resume --epochs): train on to that many epochs in all, also a
 * done job; it must be more than the epochs committed (InvalidParameter
 * epochs). The new count is recorded with the job's configuration. */
/* ranks > 0 (resume --ranks): run on that many ranks from now on (recorded
 * likewise; it must divide the job's shards, InvalidParameter ranks). */
void jobs_resume(struct daemon *d, struct call *c, struct job *j, bool weights_only,
		 uint32_t epochs, uint32_t ranks);
void jobs_kill(struct daemon *d, struct call *c, struct job *j, int64_t after_epoch);
/* Wait and Watch: waiters.h. */
/* Delete: remove the job with its checkpoints and history (one store
 * transaction), then take it out of the registry; its id is never reused.
 * A queued or running job is refused (InvalidState) unless `force`: then it
 * is killed first, as by Kill, and removed once its worker has stopped and
 * its commits in flight have landed. From the call on, jobs_find no longer
 * finds it; calls still waiting on it end with JobRemoved. */
void jobs_delete(struct daemon *d, struct call *c, struct job *j, bool force);

/* A committed (or recovered) history row's part in the job's status: the
 * best epoch by the job's monitor, an early stop's note. */
void job_note_row(struct job *j, const struct history_row *r);
/* Record `digest` as the job's dataset identity (in memory now, in the
 * store through the store thread, ahead of any later write for the job). */
void jobs_record_digest(struct job *j, const char *digest);

/* A copy of the progress the run last published (the loop's view). */
void job_progress_get(struct job *j, struct run_progress *out);

/* SIGTERM: checkpoint every running job, then call d->on_drained. */
void jobs_shutdown(struct daemon *d);
/* Free everything (after the loop has stopped). */
void jobs_free(struct daemon *d);
/* One-line summary for sd_notify STATUS=. */
void jobs_summary(struct daemon *d, char *buf, size_t len);

#endif
