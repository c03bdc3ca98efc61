-- 0005_placeholder.sql - PLACEHOLDER on branch rng only: stands for another
-- branch's migration 0005, so that this branch's 0006 can be numbered as
-- assigned. Drop this file when merging.
SELECT 1;
