-- 0002_kill_after.sql - a pending `trainctl kill JOB --after-epoch N` is
-- stored with its job, so it survives a crash or reboot: a job that restarts
-- before reaching epoch N is still killed right after epoch N commits.
--
-- NULL: no kill pending. Set by io.traind.Kill with after_epoch, cleared by
-- io.traind.Resume.

ALTER TABLE jobs ADD COLUMN kill_after INTEGER CHECK (kill_after IS NULL OR kill_after >= 1);
