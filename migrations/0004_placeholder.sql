-- 0004_placeholder.sql - PLACEHOLDER on branch rng only: stands for another
-- branch's migration 0004 (dsd: 0004_dataset_digest.sql), so that this
-- branch's 0006 can be numbered as assigned. Drop this file when merging.
SELECT 1;
