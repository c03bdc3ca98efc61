-- 0005_schedules.sql - learning-rate schedules, the best checkpoint by the
-- job's monitor, gradient clipping (include/traind/sched.h, clip.h).
--
-- history.lr: the rate the epoch began with; history.grad_norm: the mean
-- pre-clip gradient norm of its steps (NULL: the job does not clip). Rows
-- stored before have NULL in both (their rate was the config's lr).
--
-- checkpoints.score: what "best" minimizes for an epoch checkpoint, from the
-- job's monitor: val_loss, or -val_acc, -val_macro_acc (NULL: NaN, never
-- best). Retention keeps the lowest score (the earliest of equals), and the
-- checkpoint with it is the job's best. Epoch checkpoints stored before were
-- kept by val_loss, which their score becomes (monitor val_loss is every
-- stored job's).

ALTER TABLE history ADD COLUMN lr REAL;
ALTER TABLE history ADD COLUMN grad_norm REAL;
ALTER TABLE checkpoints ADD COLUMN score REAL;
UPDATE checkpoints SET score = val_loss WHERE kind = 'epoch';
CREATE INDEX checkpoints_job_score ON checkpoints (job_id, kind, score);
