-- 0004_reserved.sql - a placeholder, so that this branch's 0005 builds: the
-- number 0004 belongs to another branch (dsd: 0004_dataset_digest.sql).
-- DELETE THIS FILE when merging that branch (and drop it from
-- daemon/meson.build); it changes nothing.
SELECT 1;
