-- 0003_job_ids.sql - a job id is never given twice, even after the job is
-- removed (io.traind.Delete, `trainctl rm`).
--
-- jobs.id is an INTEGER PRIMARY KEY without AUTOINCREMENT, for which SQLite
-- picks max(id) + 1: removing the newest job would hand its id to the next
-- one, and a script still holding the old id would act on a stranger.
-- Declaring AUTOINCREMENT means rebuilding jobs, and dropping the old table
-- would cascade into every checkpoint and history row (migrations run with
-- foreign_keys on), so the high-water mark is kept in a table of its own, as
-- AUTOINCREMENT does in sqlite_sequence: job_id_high.id is the highest id
-- ever assigned. store_job_create inserts job_id_high.id + 1; the trigger
-- refuses any other id at or below the mark (an INSERT without an id
-- included) and moves the mark up, in the inserting statement.

CREATE TABLE job_id_high (
	one INTEGER PRIMARY KEY CHECK (one = 1),   -- exactly one row
	id  INTEGER NOT NULL CHECK (id >= 0)       -- the highest job id ever assigned
);

INSERT INTO job_id_high (one, id) VALUES (1, coalesce((SELECT max(id) FROM jobs), 0));

CREATE TRIGGER jobs_id_never_reused AFTER INSERT ON jobs
BEGIN
	SELECT RAISE(ABORT, 'job id already used: ids are never reused')
	WHERE NEW.id <= (SELECT id FROM job_id_high);
	UPDATE job_id_high SET id = NEW.id;
END;
