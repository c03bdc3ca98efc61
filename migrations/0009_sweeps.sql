-- 0009_sweeps.sql - hyperparameter sweeps (daemon/sweep/, doc/sweeps.md).
--
-- sweeps: one row per sweep. spec: the sweep as checked at its start
-- (searcher, parameters and their distributions, seed, metric, trials,
-- max_parallel, the shared configuration), a JSON object; everything a
-- searcher decides is a pure function of it and of the trials' durable
-- results, so it is the searcher's whole stored state for grid and random.
-- state: 'running', 'paused' or 'killed' (a sweep whose trials have all
-- stopped is shown as done; that is derived, never stored).
--
-- sweep_trials: the trials, numbered from 0 in the searcher's order, each an
-- ordinary job (jobs.id) created in the same transaction as the sweep with
-- the configuration `trainctl start` would store for it; params: the
-- trial's parameters (a JSON object, a pure function of the seed and the
-- trial number). A trial's job removed by `trainctl rm` takes its row with
-- it.
CREATE TABLE sweeps (
	id          INTEGER PRIMARY KEY,
	name        TEXT    NOT NULL,
	spec        TEXT    NOT NULL CHECK (json_valid(spec)),
	state       TEXT    NOT NULL CHECK (state IN ('running', 'paused', 'killed')),
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);

CREATE TABLE sweep_trials (
	sweep_id    INTEGER NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
	trial       INTEGER NOT NULL CHECK (trial >= 0),
	job_id      INTEGER NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
	params      TEXT    NOT NULL CHECK (json_valid(params)),
	PRIMARY KEY (sweep_id, trial)
) WITHOUT ROWID;
