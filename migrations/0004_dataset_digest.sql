-- 0004_dataset_digest.sql - a job's data cannot change under it.
--
-- jobs.dataset_digest: the identity of the dataset directory the job trains
-- on, "sha256:" + 64 hex digits (see daemon/data/dscache.h for how it is
-- computed from the directory's files), recorded when the job is created
-- (or, for a job stored before this migration, at its next start or
-- resume). Resume, the recovery at start-up and Eval compare the files'
-- digest now with it. NULL: not recorded yet.
--
-- dataset_files: the SHA-256 of each dataset file's content, remembered by
-- the file's identity (path, size, modification and change times in
-- nanoseconds, inode), so a dataset is hashed once, not at every resume or
-- start-up. A row whose identity no longer matches the file is stale and
-- replaced.

ALTER TABLE jobs ADD COLUMN dataset_digest TEXT
	CHECK (dataset_digest IS NULL OR (dataset_digest LIKE 'sha256:%' AND length(dataset_digest) = 71));

CREATE TABLE dataset_files (
	path     TEXT PRIMARY KEY,
	size     INTEGER NOT NULL CHECK (size >= 0),
	mtime_ns INTEGER NOT NULL,
	ctime_ns INTEGER NOT NULL,
	inode    INTEGER NOT NULL,
	sha256   TEXT NOT NULL CHECK (length(sha256) = 64)
);
