-- 0006_job_origin.sql - where a job came from (trainctl start --from JOB[@EPOCH]):
-- "job 3 epoch 2", "job 3 epoch 2 (weights only)"; NULL for a job started
-- from scratch or from a model file. Shown as the Job's origin.
ALTER TABLE jobs ADD COLUMN origin TEXT;
