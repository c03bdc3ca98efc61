/*
 * jobs.h - the job registry, recovery, the scheduler and the jobs' state
 * machine, and the verbs (Start, Pause, Resume, Kill, Delete) that drive it.
 *
 * DESIGN. The loop thread owns the registry (struct jobs): every struct
 * job, its state, and all decisions (start, pause, kill, resume, fail,
 * finish). A job trains in runs behind the runner interface (runner.h); the
 * module starts and stops runs only through it, hears of them only through
 * the events a run posts (restored, commit, exit), and frees nothing a run
 * may touch before its exit event. A struct job is split in two: what the
 * loop owns (identity, committed state, decisions, what waits on it,
 * removal: the fields below, read on the loop thread only) and what a run
 * shares with it, the struct run_ctx embedded in it (job.run), which the
 * loop reaches only through runner.h's functions (run_start,
 * run_request_stop, run_kill_after, run_progress_get...). A run sees its
 * ctx, nothing else.
 *
 * States: queued -> running -> {paused, killed, failed, done}; resume puts
 * paused/killed/failed back to queued. Delete removes a stopped job (a
 * queued or running one only with force, which kills it first). At most
 * max_running jobs run; the rest wait in order of queueing. A shutdown
 * (SIGTERM) checkpoints every running job and leaves it "running" in the
 * database, so the next start continues it, as it does after a crash.
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
 * Answers. The module speaks no protocol. A verb answers in the module's
 * own codes (JOBS_E_*, with their detail in struct jobs_result); the
 * protocol layer turns them into its errors (proto/errors-map.c). A verb
 * that cannot answer at once (Start once the job is stored; Pause, Kill
 * and Resume once their state is durable; Delete once the job is removed)
 * keeps the caller's struct jobs_done and calls it back, exactly once,
 * unless the caller cancels it first (jobs_done_cancel: its client left).
 *
 * Observers. What waits on a job (Wait, Watch) is the protocol's: the
 * module tells its observer (struct jobs_observer) each time a job changed
 * (a committed state, a committed epoch, a restore, a run gone), and when
 * a job leaves the registry. Each job carries a slot for the observer's
 * own list (job.waiters), which the module never reads.
 *
 * Thread: everything here on the loop thread (jobs_new and jobs_recover
 * also before the loop runs, jobs_free after it has stopped).
 */
#ifndef TRAIND_JOBS_H
#define TRAIND_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/config.h"
#include "traind/error.h"
#include "daemon/core/counters.h"
#include "daemon/data/dscache.h"
#include "daemon/runner/runner.h"
#include "daemon/store/store.h"
#include "daemon/store/storeq.h"

struct jobs;
struct waiter;
struct removal;
struct stop_wait;

/* ---- a job: what the loop owns, and its run ctx ------------------------- */

struct job {
	/* identity */
	int64_t id;
	char name[STORE_NAME_MAX];
	struct train_config cfg;     /* changed only while no run exists (resume) */
	int32_t keep;
	int64_t created, updated;
	char *origin;                /* where it came from (start --from): "job 3 epoch 2", owned; else NULL */
	char dataset_digest[DSCACHE_DIGEST_MAX]; /* its dataset's files when it started
	                                (dscache_digest); "" until recorded. A run refuses other files */

	/* committed: what the database holds, the only state the protocol shows */
	enum job_state state;
	int64_t started;             /* its first move to running (unix seconds), 0: not yet; the
	                                store records it with that state (store_job_set_state) */
	char *state_error;           /* last_error committed with `state`, owned */
	uint32_t committed_epoch;    /* epochs whose checkpoint + history are durable */
	double last_val_acc;
	bool has_val_acc;
	struct store_ckpt_desc newest; /* the newest committed checkpoint */
	uint32_t best_epoch;         /* the best epoch by cfg.monitor so far; 0: none */
	double best_value;           /* its monitored value */
	char *stopped_early;         /* the note of an early stop ("stopped early after epoch 7: ..."),
	                                owned; NULL when the job did not stop early */
	uint64_t params;             /* the model's parameters; 0 until known (its dataset's shape) */
	uint32_t classes;            /* its dataset's classes; 0 until known */
	char *numerics;              /* set when the last restore ran under another BLAS kernel than
	                                the job trained with: what that means, owned; else NULL */
	char *model_text;            /* the model's SPEC written out (mlp, lenet5 expanded), made on
	                                first use by the protocol (wire.c): cfg does not change
	                                while a job shows it; owned */

	/* decisions */
	enum job_state target;       /* decided; what the scheduler and the verbs act on */
	unsigned state_writes;       /* state writes submitted and not yet completed */
	uint32_t state_seq;          /* state decisions taken (numbers them) */
	uint32_t state_shown;        /* the decision `state` is */
	char *error;                 /* last failure (working copy, recorded with the next state), owned */
	bool weights_only_next;      /* the next start restores the model only */
	bool go_on_next;             /* the next start goes on past an early stop (resume --epochs) */
	uint32_t restarts;           /* automatic restarts of a failed multi-rank run since the job
	                                was started or resumed (cfg.max_restarts at most) */
	char *last_failure;          /* the failure the newest restart followed, owned; else NULL */
	uint64_t queue_seq;          /* order among queued jobs */
	const struct dataset *ds;    /* the dataset the Start check loaded, for the first run
	                                (a dscache reference, owned; NULL once handed over) */

	/* its runs, as the loop sees them */
	bool worker_alive;           /* a run exists (from its start until its exit event) */
	bool commit_failed;
	bool finalize_pending;       /* run gone, waiting for commits in flight */
	int exit_outcome;            /* enum job_state the run ended in */
	bool exit_restartable;       /* run_exit.restartable */

	/* who waits on it */
	struct stop_wait *stops;     /* Pause and Kill calls answered once it has stopped */
	struct waiter *waiters;      /* the observer's (proto/waiters.c); never read here */
	struct removal *removal;     /* a Delete in progress (jobs_delete), else NULL */

	struct jobs *js;             /* its registry */
	struct run_ctx run;          /* all that a run sees: shared with it (runner.h) */
};

const char *job_state_name(enum job_state s);
int job_state_parse(const char *name);   /* -1 if unknown */

/* Nothing more is going to happen to the job by itself: no run, nothing to
 * finalize, every state write completed (so state == target). */
bool job_settled(const struct job *j);
/* Resume may continue it (a done one only with epochs). */
bool job_resumable(const struct job *j);
/* A copy of the progress the run last published (the loop's view). */
void job_progress_get(struct job *j, struct run_progress *out);
/* The pending kill after an epoch, or -1. */
int64_t job_kill_after(struct job *j);
/* A committed (or recovered) history row's part in the job's status: the
 * best epoch by the job's monitor, an early stop's note. */
void job_note_row(struct job *j, const struct history_row *r);
/* Record `digest` as the job's dataset identity (in memory now, in the
 * store through the store thread, ahead of any later write for the job). */
void jobs_record_digest(struct job *j, const char *digest);

/* Batches per epoch of cfg on a training file of train_count images. */
uint32_t jobs_steps_per_epoch(const struct train_config *cfg, uint32_t train_count);

/* ---- the registry ------------------------------------------------------ */

/* Who hears of the jobs' changes (the protocol's waiters); ctx is
 * jobs_config.ctx. */
struct jobs_observer {
	/* j changed: a committed state or epoch, a restore, a run gone */
	void (*changed)(void *ctx, struct job *j);
	/* j leaves the registry now (removed): whatever waits on it ends */
	void (*removed)(void *ctx, struct job *j);
	/* jobs_free: j goes without a word (the loop has stopped) */
	void (*dropped)(void *ctx, struct job *j);
};

struct jobs_config {
	struct run_env env;          /* what the runs share; env.sq may come later (jobs_set_store) */
	unsigned max_running;        /* jobs training at once (0: none start) */
	struct counters *counters;   /* jobs_failed and commit latencies go here */
	const struct jobs_observer *observer;   /* may be NULL */
	void (*on_change)(void *ctx);   /* after any change of a job's state (sd_notify STATUS) */
	void (*on_drained)(void *ctx);  /* after jobs_shutdown, once every run has stopped */
	void (*on_run_end)(void *ctx, struct job *j);   /* a job's run has ended, before the state
	                                it ended in is decided (the step series); may be NULL */
	/* An epoch of j committed (its history row is durable): row. May be
	 * NULL. (A sweep's searcher follows its trials' metrics by it.) */
	void (*on_epoch)(void *ctx, struct job *j, const struct history_row *row);
	/* The scheduler's gate: may this queued job start now (a sweep's
	 * trials, daemon/sweep/sweep.h)? NULL: every job may. */
	bool (*may_start)(void *ctx, const struct job *j);
	void *ctx;                   /* the observer's and the hooks' */
};

int jobs_new(struct jobs **out, const struct jobs_config *cfg);
/* The store thread, once it runs (before jobs_start). */
void jobs_set_store(struct jobs *js, struct storeq *sq);
/* Load jobs from the database (store already migrated). Jobs left running or
 * queued are queued again, in id order, to continue from their newest
 * checkpoints. Runs before the loop starts (uses `s` synchronously; reads
 * each dataset's label header once, for the jobs' steps per epoch). */
int jobs_recover(struct jobs *js, struct store *s, struct tr_err *err);
/* Start the scheduler. */
void jobs_start(struct jobs *js);
/* SIGTERM: checkpoint every running job, then on_drained. */
void jobs_shutdown(struct jobs *js);
bool jobs_shutting_down(const struct jobs *js);
/* Free everything (after the loop has stopped); accepts NULL. */
void jobs_free(struct jobs *js);

/* The job called id, or NULL (none, or it is being removed). */
struct job *jobs_find(struct jobs *js, int64_t id);
/* Every job in the registry, by id (those being removed too), for i <
 * jobs_count. */
size_t jobs_count(const struct jobs *js);
struct job *jobs_at(struct jobs *js, size_t i);
/* Runs in progress. */
unsigned jobs_running(const struct jobs *js);
/* One-line summary for sd_notify STATUS=. */
void jobs_summary(struct jobs *js, char *buf, size_t len);

/* ---- the verbs --------------------------------------------------------- */

/* The module's answers. */
enum jobs_code {
	JOBS_OK = 0,
	JOBS_E_INVALID_STATE = -1,     /* not in a state the verb acts on: id, state, message */
	JOBS_E_INVALID_PARAMETER = -2, /* a parameter does not fit the job: param, message */
	JOBS_E_STORAGE = -3,           /* what the verb had to record could not be: message */
	JOBS_E_CHECKPOINT = -4,        /* a Pause whose checkpoint failed (the job failed): id, message */
	JOBS_E_REMOVED = -5,           /* the job was removed while the call waited: id */
};

/* A verb's answer and its detail. */
struct jobs_result {
	int code;                    /* JOBS_OK or a JOBS_E_* */
	int64_t id;                  /* the job's */
	enum job_state state;        /* its committed state: the new one when done, the one it is
	                                in when refused; Delete: the one it was in */
	const char *param;           /* JOBS_E_INVALID_PARAMETER: which (a constant string) */
	char message[TR_ERR_MSG_MAX];
};

/* A caller waiting for a verb's answer; the caller's memory, valid until
 * fn runs or the caller cancels it. */
struct jobs_done {
	void (*fn)(struct jobs_done *done);   /* the answer is in done->result */
	struct jobs_result result;
	struct jobs_done **held;     /* the module's: where it keeps done while pending */
};

/* What a verb returns: JOBS_PENDING when done->fn will run later (once,
 * on the loop thread, unless cancelled); otherwise the verb has answered
 * already, done->result holds the answer, its code is returned (JOBS_OK or
 * a JOBS_E_*) and fn never runs. */
#define JOBS_PENDING 1

/* The caller goes away: fn will not run. (What the verb started goes on.) */
void jobs_done_cancel(struct jobs_done *done);

/* A new job as the Start check made it (the protocol's methods, on the
 * thread pool): the configuration parsed and checked against the dataset
 * once, the dataset loaded once, the starting model parsed once. */
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

/* A spec started from t (start --from, a pbt exploit), once the caller has
 * written sp->origin and t's note: the origin's position, history and
 * metrics, the steps and parameters, and t's state as the sealed init_ckpt.
 * 0 or a negative code (err set; out of memory, a checkpoint error). */
struct trainer;
int job_spec_take_origin(struct job_spec *sp, const struct trainer *t, struct tr_err *err);

/* Release what a spec owns (the dataset reference into dsc, the checkpoint). */
void job_spec_clear(struct dscache *dsc, struct job_spec *spec);

/* Start: store the job (queued); answered with its id once stored. Takes
 * what spec owns, always. */
int jobs_start_job(struct jobs *js, struct job_spec *spec, struct jobs_done *done);
/* Several new jobs stored in one transaction together with the caller's
 * rows (a sweep's trials: daemon/sweep/). The caller's memory, valid until
 * done->fn runs or the caller cancels it. */
struct jobs_group {
	struct job_spec *specs;      /* n specs: what they own is taken by jobs_start_group */
	size_t n;
	char **config_json;          /* filled in by jobs_start_group: each job's configuration as
	                                Start stores it (owned by the module) */
	int64_t *ids;                /* n, the caller's: filled in by store_fn */
	/* On the store thread: create the n jobs (queued, in order) and the
	 * caller's rows in one transaction, their ids into ids[]. */
	int (*store_fn)(struct store *s, struct jobs_group *g, struct tr_err *err);
	/* On the loop, once stored and in the registry, before the scheduler
	 * looks at them (the caller's gate learns of them here). */
	void (*added)(struct jobs_group *g);
	void *arg;                   /* the caller's */
};

/* Start a group (see struct jobs_group): answered once stored, with the
 * first job's id; the jobs are queued in order. */
int jobs_start_group(struct jobs *js, struct jobs_group *g, struct jobs_done *done);
/* Pause a queued job (answered once "paused" is durable) or a running one
 * (once it has stopped: paused, or JOBS_E_CHECKPOINT when the pause's
 * checkpoint failed). */
int jobs_pause(struct jobs *js, struct job *j, struct jobs_done *done);
/* Resume a paused, killed or failed job (queued again; answered once
 * durable). epochs > 0 (resume --epochs): train on to that many epochs in
 * all, also a done job; it must be more than the epochs committed
 * (JOBS_E_INVALID_PARAMETER epochs). ranks > 0 (resume --ranks): run on
 * that many ranks from now on (it must divide the job's shards,
 * JOBS_E_INVALID_PARAMETER ranks). The new counts are recorded with the
 * job's configuration. */
int jobs_resume(struct jobs *js, struct job *j, bool weights_only, uint32_t epochs, uint32_t ranks,
		struct jobs_done *done);
/* Kill a queued or running job now (answered once killed), or after epoch
 * after_epoch commits (> 0 and not committed yet: answered once the
 * request is recorded). */
int jobs_kill(struct jobs *js, struct job *j, int64_t after_epoch, struct jobs_done *done);
/* Delete: remove the job with its checkpoints and history (one store
 * transaction), then take it out of the registry; its id is never reused.
 * A queued or running job is refused (JOBS_E_INVALID_STATE) unless `force`:
 * then it is killed first, as by Kill, and removed once its run has
 * stopped and its commits in flight have landed. From the call on,
 * jobs_find no longer finds it; what waits on it ends (JOBS_E_REMOVED for
 * a Pause or Kill, the observer's removed for the rest). Answered with the
 * state it was in. */
int jobs_delete(struct jobs *js, struct job *j, bool force, struct jobs_done *done);

#endif
