-- 0008_step_series.sql - the running training loss by step, and when a job
-- first started.
--
-- step_series: a bounded sample of each job's running mean train loss (the
-- mean over the batches of the epoch so far, as Watch shows it), taken by
-- traind while the job trains (daemon/jobs/stepseries.c: about one point per
-- steps_per_epoch / P batches, P points per epoch with P * epochs <= 5000,
-- at least one per epoch) and written in small transactions through the
-- store thread, so the dashboard's step curve survives a reload and exists
-- for a finished job. epoch: completed epochs when the point was taken (the
-- point is in epoch `epoch` + 1); step: batches into that epoch (>= 1). A
-- point depends only on the job's arithmetic, so one taken again after a
-- restart (the same epoch trained again from its checkpoint) has the same
-- loss: it replaces the old one. Removed with its job.
--
-- jobs.started_at: unix seconds of the job's first move to 'running'
-- (store_job_set_state), NULL until then. Jobs stored before this migration
-- get the start of their first epoch (its history row's time less its
-- seconds) when they have one.

CREATE TABLE step_series (
	job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	epoch       INTEGER NOT NULL CHECK (epoch >= 0),
	step        INTEGER NOT NULL CHECK (step >= 1),
	loss        REAL    NOT NULL,
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (job_id, epoch, step)
) WITHOUT ROWID;

ALTER TABLE jobs ADD COLUMN started_at INTEGER;

UPDATE jobs SET started_at = (
	SELECT h.created_at - CAST(coalesce(h.seconds, 0) AS INTEGER)
	FROM history h WHERE h.job_id = jobs.id ORDER BY h.epoch LIMIT 1);
