/*
 * store.h - traind's SQLite database: jobs, per-epoch checkpoint blobs and
 * history rows, committed transactionally.
 *
 * Schema: migrations/NNNN_name.sql, embedded at build time, applied in order
 * at open, each in its own transaction together with its PRAGMA user_version
 * bump (so a crash mid-migration leaves the previous version intact and the
 * migration is re-applied). A database from a newer version is refused.
 * Connection settings: WAL, synchronous=FULL, foreign_keys=ON, busy_timeout,
 * auto_vacuum=INCREMENTAL (set when the file is created).
 *
 * Invariant: epoch N's checkpoint and its history row are written in one
 * transaction (store_commit_epoch), so after any crash the history ends
 * exactly at the newest epoch checkpoint, and UNIQUE(job, epoch) makes a
 * duplicated epoch impossible.
 *
 * Job ids: store_job_create assigns the next id above the highest ever
 * assigned (table job_id_high, migration 0003), so a removed job's id is
 * never reused; a trigger refuses any insert that would reuse one.
 *
 * Retention (store_commit_epoch): keep the newest `keep` epoch checkpoints plus
 * the best one, with the lowest score (val_loss, or minus the accuracy the
 * job's monitor names: migration 0005) (keep < 0: all); an epoch commit deletes the
 * job's position (mid-epoch) checkpoints, which it supersedes; freed pages are
 * given back with PRAGMA incremental_vacuum. History rows are never pruned.
 *
 * Errors: SQLite result codes stay inside store.c; callers get -ENOENT (no such
 * job/checkpoint), -EINVAL (bad argument, or a database traind cannot use,
 * such as a newer schema), -EBUSY (locked too long), -ENOSPC (disk full),
 * -EROFS (read-only), -EIO (I/O error or corruption), -ENOMEM, with a message
 * in tr_err that includes SQLite's explanation.
 *
 * Thread: a struct store is one SQLite connection; use it from one thread at a
 * time. The daemon has exactly one writer connection (its store thread) and
 * separate read connections.
 */
#ifndef TRAIND_STORE_H
#define TRAIND_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"
#include "daemon/store/jobstate.h"
#include "traind/trainer.h"   /* struct history_row */

#define STORE_NAME_MAX 64
#define STORE_CHECKSUM_MAX 72

struct store;

/* A job row. config_json and last_error are malloc'ed (free with store_job_clear). */
struct store_job {
	int64_t id;
	char name[STORE_NAME_MAX];
	enum job_state state;          /* the jobs.state column, read as the enum */
	char *config_json;             /* the job's configuration (config.h keys) */
	char *last_error;              /* NULL when none */
	int32_t keep;                  /* retention: newest K epoch checkpoints; -1 = all */
	uint32_t epochs;               /* planned */
	uint32_t epoch;                /* committed epochs (== history rows) */
	int64_t created_at;            /* unix seconds */
	int64_t updated_at;
	int64_t kill_after;            /* kill right after this epoch commits; -1 none */
	char dataset_digest[STORE_CHECKSUM_MAX]; /* "sha256:..." of its dataset's files; "" not yet
	                                            recorded (migration 0004) */
	char *origin;                  /* where it came from ("job 3 epoch 2"), NULL when none */
	int64_t started_at;            /* its first move to running (unix seconds); 0: not yet
	                                  (migration 0008) */
};

/* A checkpoint row's description; blob is malloc'ed when requested. */
struct store_checkpoint {
	int64_t id;
	int64_t job_id;
	uint32_t epoch;                /* completed epochs at this position */
	uint32_t step;                 /* batches into the next epoch (0 for epoch checkpoints) */
	bool is_epoch;                 /* true: end of epoch `epoch`; false: a mid-epoch position */
	double val_loss;               /* epoch checkpoints; NAN for positions */
	double score;                  /* what "best" minimizes: val_loss or -accuracy (the job's
					  monitor); NAN for positions and NaN metrics */
	bool best;                     /* store_checkpoint_list: the job's best checkpoint */
	int64_t size;
	char checksum[STORE_CHECKSUM_MAX];
	int64_t created_at;
	uint8_t *blob;                 /* NULL unless loaded */
};

/* Open (creating if needed) the database at `path`. With readonly false,
 * applies pending migrations; with readonly true, opens SQLITE_OPEN_READONLY
 * and only checks the schema version. */
int store_open(struct store **out, const char *path, bool readonly, struct tr_err *err);
void store_close(struct store *s);

/* Housekeeping between requests of a writer connection: copy the WAL into
 * the database when it has grown past SQLite's usual checkpoint threshold
 * (a passive checkpoint: it never waits for readers). No-op otherwise and on
 * read connections. Without it the WAL is still checkpointed, inside the
 * commit, past a cap of 8000 frames. */
void store_maintain(struct store *s);

/* Whether the last store_job_set_state needed the full disk's reserve (the
 * writer's DB-reserve file, see store.c) to get through; asking clears it.
 * The reserve is allocated again by store_maintain once there is room. */
bool store_reserve_spent(struct store *s);

/* The schema version this build knows (the highest embedded migration), and
 * the database's current PRAGMA user_version. */
int store_schema_version_known(void);
int store_schema_version(struct store *s);

/* Jobs ------------------------------------------------------------------ */
int store_job_create(struct store *s, const char *name, const char *config_json, uint32_t epochs,
		     int32_t keep, enum job_state state, int64_t *id, struct tr_err *err);
/* One transaction: a new job (as store_job_create) together with its first
 * checkpoint, a position at epoch 0 step 0 (a job started from a given model):
 * after any crash the job exists with its starting model, or not at all. */
int store_job_create_at(struct store *s, const char *name, const char *config_json, uint32_t epochs,
			int32_t keep, enum job_state state, const uint8_t *blob, size_t len,
			const char *checksum, int64_t *id, struct tr_err *err);
/* Where a job created from another's checkpoint begins (start --from). */
struct store_origin {
	const char *text;              /* the jobs.origin column: "job 3 epoch 2" */
	uint32_t epoch, step;          /* the first checkpoint's position */
	bool is_epoch;                 /* it is an epoch's end (step 0, epoch >= 1) */
	double val_loss;               /* that epoch's, for an epoch checkpoint */
	const struct history_row *rows; /* the history up to it (rows 1..epoch) */
	size_t nrows;
};
/* One transaction: a new job with its first checkpoint at o's position, the
 * history before it and its origin (jobs.epoch = o->nrows). */
int store_job_create_from(struct store *s, const char *name, const char *config_json,
			  uint32_t epochs, int32_t keep, enum job_state state, const uint8_t *blob,
			  size_t len, const char *checksum, const struct store_origin *o, int64_t *id,
			  struct tr_err *err);
/* A job's configuration and its epochs column (resume --epochs). */
int store_job_set_config(struct store *s, int64_t id, const char *config_json, uint32_t epochs,
			 struct tr_err *err);
/* Record (epoch >= 1) or clear (-1) a pending kill after `epoch`. */
int store_job_set_kill_after(struct store *s, int64_t id, int64_t epoch, struct tr_err *err);
/* Record the digest of the job's dataset ("sha256:" + 64 hex; NULL clears). */
int store_job_set_dataset_digest(struct store *s, int64_t id, const char *digest, struct tr_err *err);
/* Set the state and last_error (NULL clears it); the first 'running' also
 * records started_at. A state that is not one of enum job_state: -EINVAL. */
int store_job_set_state(struct store *s, int64_t id, enum job_state state, const char *last_error,
			struct tr_err *err);
int store_job_get(struct store *s, int64_t id, struct store_job *out, struct tr_err *err);
/* All jobs ordered by id; *out is a malloc'ed array (free with store_jobs_free). */
int store_job_list(struct store *s, struct store_job **out, size_t *n, struct tr_err *err);
/* What store_job_delete removed with the job. */
struct store_removed {
	int64_t checkpoints;           /* checkpoint rows */
	int64_t checkpoint_bytes;      /* their blobs' total size */
	int64_t history_rows;
};
/* One transaction: delete the job with all its checkpoints and history rows
 * (-ENOENT, nothing changed, if there is no such job); then give the freed
 * pages back (incremental vacuum). The id is never assigned again (migration
 * 0003). *out (may be NULL) says what went. */
int store_job_delete(struct store *s, int64_t id, struct store_removed *out, struct tr_err *err);
void store_job_clear(struct store_job *j);
void store_jobs_free(struct store_job *jobs, size_t n);

/* Checkpoints and history ------------------------------------------------ */

/* One transaction: insert epoch row->epoch's checkpoint blob and its history
 * row, set the job's epoch, delete its position checkpoints, apply retention,
 * and (after commit) run an incremental vacuum. Fails with -EEXIST if that
 * epoch is already committed (nothing changes). */
int store_commit_epoch(struct store *s, int64_t job, const struct history_row *row,
		       const uint8_t *blob, size_t len, const char *checksum, struct tr_err *err);

/* One transaction: replace the job's position checkpoint (at most one is kept)
 * with this one, at completed epochs `epoch` and `step` batches into the next. */
int store_save_position(struct store *s, int64_t job, uint32_t epoch, uint32_t step,
			const uint8_t *blob, size_t len, const char *checksum, struct tr_err *err);

/* The newest checkpoint of the job (highest (epoch, step)), blob loaded.
 * -ENOENT when it has none. */
int store_latest_checkpoint(struct store *s, int64_t job, struct store_checkpoint *out,
			    struct tr_err *err);
/* The epoch checkpoint at end of `epoch`, blob loaded; -ENOENT if not kept. */
int store_epoch_checkpoint(struct store *s, int64_t job, uint32_t epoch,
			   struct store_checkpoint *out, struct tr_err *err);
/* The job's best epoch checkpoint (lowest score, the earliest of equals;
 * retention always keeps it), blob loaded; -ENOENT when it has none. */
int store_best_checkpoint(struct store *s, int64_t job, struct store_checkpoint *out,
			  struct tr_err *err);
/* Delete one checkpoint by id (a corrupt one, say); if it was an epoch
 * checkpoint, also delete history rows and checkpoints after the newest
 * remaining checkpoint, so the history again ends at it; all in one transaction. */
int store_drop_checkpoint(struct store *s, int64_t job, int64_t checkpoint_id, struct tr_err *err);
/* Descriptions (no blobs) of all checkpoints of the job, oldest first. */
int store_checkpoint_list(struct store *s, int64_t job, struct store_checkpoint **out, size_t *n,
			  struct tr_err *err);
void store_checkpoint_clear(struct store_checkpoint *c);   /* frees blob */

/* What the daemon keeps of a stored checkpoint, without its blob: the
 * loop's copy of a job's newest, what a run says it restored from, the
 * protocol's Checkpoint object. */
struct store_ckpt_desc {
	bool valid;                    /* false: no checkpoint */
	uint32_t epoch, step;
	bool is_epoch;
	int64_t size, created;
	double val_loss;
	bool best;                     /* the job's best checkpoint (store_checkpoint.best) */
	char checksum[STORE_CHECKSUM_MAX];
};

/* The description of c (valid). */
void store_ckpt_describe(struct store_ckpt_desc *out, const struct store_checkpoint *c);

/* The job's history rows, by epoch. *rows malloc'ed (caller frees). */
int store_history(struct store *s, int64_t job, struct history_row **rows, size_t *n,
		  struct tr_err *err);

/* The step series (migration 0008): a bounded sample of a job's running
 * mean train loss, by position. */
struct store_step {
	uint32_t epoch;                /* completed epochs when taken (the point is in epoch + 1) */
	uint32_t step;                 /* batches into that epoch, >= 1 */
	double loss;                   /* the mean train loss of the epoch's batches so far */
};
/* One transaction: add (or replace, at the same position) the points pts[0,
 * n) of the job, as long as the job has fewer than `cap` points; points that
 * are not finite are skipped. A job that no longer exists: 0, nothing
 * written (its series went with it). */
int store_steps_add(struct store *s, int64_t job, const struct store_step *pts, size_t n, size_t cap,
		    struct tr_err *err);
/* The job's points by position; *out malloc'ed (caller frees). -ENOENT: no
 * such job. */
int store_steps(struct store *s, int64_t job, struct store_step **out, size_t *n, struct tr_err *err);

/* Dataset file digests (migration 0004): a file's content SHA-256 (64 hex
 * digits), remembered by the file's identity. */
struct store_file_id {
	const char *path;              /* absolute, resolved */
	int64_t size, mtime_ns, ctime_ns, inode;
};
/* The remembered digest of f; -ENOENT when none, or f has changed since. */
int store_file_digest_get(struct store *s, const struct store_file_id *f, char hex[65],
			  struct tr_err *err);
/* Remember (replacing any older row for the path); the plural form writes
 * n of them in one transaction. */
int store_file_digest_put(struct store *s, const struct store_file_id *f, const char *hex,
			  struct tr_err *err);
int store_file_digests_put(struct store *s, const struct store_file_id *f, const char *const *hex,
			   size_t n, struct tr_err *err);

/* Sweeps (migration 0009, daemon/sweep/) --------------------------------- */

/* A trial's job, as store_job_create takes one. */
struct store_new_job {
	const char *name;
	const char *config_json;
	uint32_t epochs;
	int32_t keep;
	const char *digest;            /* its dataset's ("sha256:..."), or NULL */
};
struct store_sweep {
	int64_t id;
	char name[STORE_NAME_MAX];
	char *spec;                    /* the sweeps.spec JSON, owned */
	bool killed;                   /* state 'killed' */
	bool paused;                   /* state 'paused' (neither: 'running') */
	int64_t created_at, updated_at;
};
/* A trial with its job's committed state, as a status shows it. */
struct store_trial {
	uint32_t trial;
	int64_t job;
	char *params;                  /* JSON object, owned */
	enum job_state state;
	uint32_t epoch, epochs;        /* committed, planned */
	bool has_metric;
	double metric;                 /* the metric at the job's last committed epoch */
};
/* One transaction: the sweep (state 'running'), its n trials' jobs (queued,
 * in trial order, each with its dataset digest) and their sweep_trials rows
 * (params[i]): after any crash all of it exists, or none. *sweep_id and
 * job_ids[0..n) get the new ids. */
int store_sweep_create(struct store *s, const char *name, const char *spec_json,
		       const struct store_new_job *jobs, const char *const *params, size_t n,
		       int64_t *sweep_id, int64_t *job_ids, struct tr_err *err);
/* Record the sweep's state: "running", "paused" or "killed" (-ENOENT: no
 * such sweep). */
int store_sweep_set_state(struct store *s, int64_t id, const char *state, struct tr_err *err);
/* Remove the sweep and its trial rows, one transaction (its trials' jobs
 * stay: the caller removes them, each as Delete does). */
int store_sweep_delete(struct store *s, int64_t id, struct tr_err *err);
int store_sweep_get(struct store *s, int64_t id, struct store_sweep *out, struct tr_err *err);
/* All sweeps by id; *out malloc'ed (store_sweeps_free). */
int store_sweep_list(struct store *s, struct store_sweep **out, size_t *n, struct tr_err *err);
/* The sweep's trials by number, with `metric` (a history column: val_loss,
 * val_acc, val_macro_acc, val_mae, val_rmse, train_loss, train_acc; else
 * -EINVAL) at each job's last committed epoch. */
int store_sweep_trials(struct store *s, int64_t id, const char *metric, struct store_trial **out,
		       size_t *n, struct tr_err *err);
void store_sweep_clear(struct store_sweep *sw);
void store_sweeps_free(struct store_sweep *sw, size_t n);
void store_trials_free(struct store_trial *t, size_t n);

/* PBT (migration 0011): a member's row of a decision (sweep_lineage). */
struct store_pbt_row {
	uint32_t interval;             /* the decision (read back; store_pbt_record takes k) */
	uint32_t trial;
	bool exploit;                  /* else continue */
	uint32_t rank, ranked;
	bool has_metric;
	double metric;
	uint32_t epoch;                /* the decision's */
	uint32_t from_trial;           /* exploit: the member copied; continue: itself, or the member
	                                  it was to copy when that exploit could not be built */
	int64_t from_job;              /* exploit: the job whose checkpoint at epoch it goes on from;
	                                  continue: its own (prev_job), or that member's */
	int64_t job;                   /* the job it trains in next (exploit: set by store_pbt_record) */
	int64_t prev_job;              /* the job it trained in up to the decision */
	const char *params;            /* its parameters from now on (JSON) */
	char *params_owned;            /* store_pbt_lineage's */
};
/* An exploit's new job: as store_job_create_from's arguments. */
struct store_pbt_job {
	struct store_new_job job;
	const uint8_t *blob;
	size_t len;
	const char *checksum;
	struct store_origin origin;
};
/* One transaction: decision k of the sweep: for each exploit row (in
 * order) a new queued job from jobs[] (its id into job_ids[] and the row's
 * job) that becomes the trial's (sweep_trials.job_id), and every row.
 * -EEXIST (a constraint) if decision k is recorded already. */
int store_pbt_record(struct store *s, int64_t sweep, uint32_t k, struct store_pbt_row *rows, size_t n,
		     const struct store_pbt_job *jobs, size_t njobs, int64_t *job_ids, struct tr_err *err);
/* Every row of the sweep's lineage by decision, then trial; *out malloc'ed
 * (store_pbt_rows_free). */
int store_pbt_lineage(struct store *s, int64_t sweep, struct store_pbt_row **out, size_t *n, struct tr_err *err);
void store_pbt_rows_free(struct store_pbt_row *r, size_t n);

/* PRAGMA integrity_check == "ok" -> 0, else -EIO with the first problem. */
int store_integrity_check(struct store *s, struct tr_err *err);

#endif
