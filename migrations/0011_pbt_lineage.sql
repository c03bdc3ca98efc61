-- 0011_pbt_lineage.sql - PBT's decisions and lineage (daemon/sweep/, doc/sweeps.md).
--
-- sweep_lineage: one row per member of a pbt sweep per decision (interval
-- k >= 1, taken at epoch k * interval once every member not stopped has
-- reported there), written in one transaction with the jobs the exploits
-- start and the members' new current jobs (sweep_trials.job_id): after any
-- crash a decision exists with all it implies, or not at all (and is taken
-- again, the same, from the same durable histories).
--   action 'continue': the member goes on in its own job (job_id = from_job);
--   action 'exploit':  it goes on in a new job (job_id), started as `trainctl
--                      start --from from_job@epoch` from member
--                      from_trial's checkpoint with the perturbed params.
-- prev_job: the job the member trained in up to the decision.
-- rank, ranked, metric: its place (of `ranked` members) and metric at that epoch (metric NULL: none
-- or NaN). params: the member's parameters from then on (a JSON object).
-- Job ids are plain integers, not references: removing a job never
-- rewrites a sweep's history.
--
-- Retention (store_commit_epoch): an epoch checkpoint (from_job, epoch) of
-- an 'exploit' row is never pruned by keep: the exploit needs it until its
-- job is stored, and a replay of the member's lineage after it.
CREATE TABLE sweep_lineage (
	sweep_id    INTEGER NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
	interval    INTEGER NOT NULL CHECK (interval >= 1),
	trial       INTEGER NOT NULL CHECK (trial >= 0),
	action      TEXT    NOT NULL CHECK (action IN ('continue', 'exploit')),
	rank        INTEGER NOT NULL,
	ranked      INTEGER NOT NULL,
	metric      REAL,
	epoch       INTEGER NOT NULL,
	from_trial  INTEGER NOT NULL,
	from_job    INTEGER NOT NULL,
	job_id      INTEGER NOT NULL,
	prev_job    INTEGER NOT NULL,
	params      TEXT    NOT NULL CHECK (json_valid(params)),
	PRIMARY KEY (sweep_id, interval, trial)
) WITHOUT ROWID;

CREATE INDEX sweep_lineage_from ON sweep_lineage (from_job, epoch);
