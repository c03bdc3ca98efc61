-- 0001_initial.sql - traind's first schema: jobs, their checkpoint blobs and
-- their per-epoch history.
--
-- Applied by daemon/store/store.c inside BEGIN IMMEDIATE ... COMMIT together with
-- PRAGMA user_version = 1, so this file must not contain transaction control
-- or the user_version pragma (tools/embed-migrations.py refuses them).
-- auto_vacuum=INCREMENTAL is set by the store before this runs on a new file.
--
-- Invariants the store keeps (not all expressible here):
--   * jobs.epoch = number of history rows of the job = its highest history
--     epoch; history epochs are 1..jobs.epoch without gaps;
--   * an 'epoch' checkpoint at epoch N exists only together with history row
--     N (written in one transaction); the newest epoch checkpoint is never
--     pruned, so the history ends at the newest checkpoint;
--   * a job has at most one 'position' checkpoint, at epoch = jobs.epoch.
-- Times are unix seconds. Reals that are NaN are stored as NULL.

CREATE TABLE jobs (
	id          INTEGER PRIMARY KEY,
	name        TEXT    NOT NULL,
	config      TEXT    NOT NULL CHECK (json_valid(config)),  -- config.h keys, JSON object
	state       TEXT    NOT NULL
	            CHECK (state IN ('queued', 'running', 'paused', 'killed', 'failed', 'done')),
	epochs      INTEGER NOT NULL CHECK (epochs >= 0),         -- planned
	epoch       INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0),   -- committed
	keep        INTEGER NOT NULL DEFAULT -1 CHECK (keep >= -1),  -- retention; -1 all
	last_error  TEXT,                                         -- NULL when none
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);

CREATE INDEX jobs_state ON jobs (state);

-- The blob is the last column so that listing checkpoints never reads its
-- overflow pages.
CREATE TABLE checkpoints (
	id          INTEGER PRIMARY KEY,
	job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	epoch       INTEGER NOT NULL CHECK (epoch >= 0),          -- completed epochs
	step        INTEGER NOT NULL CHECK (step >= 0),           -- batches into the next epoch
	kind        TEXT    NOT NULL CHECK (kind IN ('epoch', 'position')),
	val_loss    REAL,                                         -- epoch checkpoints only
	size        INTEGER NOT NULL CHECK (size >= 0),
	checksum    TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	blob        BLOB    NOT NULL,
	UNIQUE (job_id, epoch, step),
	CHECK (kind = 'position' OR (step = 0 AND epoch >= 1)),
	CHECK (kind = 'epoch' OR val_loss IS NULL),
	CHECK (size = length(blob))
);

-- Retention and "best checkpoint" queries: a job's epoch checkpoints by val_loss.
CREATE INDEX checkpoints_job_kind ON checkpoints (job_id, kind, val_loss);

CREATE TABLE history (
	job_id          INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	epoch           INTEGER NOT NULL CHECK (epoch >= 1),
	train_loss      REAL,
	train_acc       REAL,
	train_macro_acc REAL,
	val_loss        REAL,
	val_acc         REAL,
	val_macro_acc   REAL,
	seconds         REAL,                                     -- wall time, train + val
	note            TEXT    NOT NULL DEFAULT '',
	created_at      INTEGER NOT NULL,
	PRIMARY KEY (job_id, epoch)
) WITHOUT ROWID;
