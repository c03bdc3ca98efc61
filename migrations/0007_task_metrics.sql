-- 0007_task_metrics.sql - metrics that follow the job's task (config key
-- "loss": classification, regression, multi-label; include/traind/loss.h).
--
-- history.val_mae, history.val_rmse: a regression's validation mean absolute
-- error and root mean squared error (over every target value); NULL for the
-- other tasks and for rows stored before. A regression's accuracy columns
-- (train_acc, train_macro_acc, val_acc, val_macro_acc) are NULL; a
-- multi-label job's train_acc and val_acc are its per-label accuracy and its
-- macro columns NULL. Rows stored before are unchanged and stay valid.
--
-- checkpoints.score for a job monitoring val_mae or val_rmse is that value
-- (lower is better), as val_loss's.

ALTER TABLE history ADD COLUMN val_mae REAL;
ALTER TABLE history ADD COLUMN val_rmse REAL;
