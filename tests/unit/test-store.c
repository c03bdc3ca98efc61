/*
 * test-store.c - the SQLite store (daemon/store/store.c): connection settings,
 * migrations (fresh, old, newer, crashed half-way), jobs, the atomic epoch
 * commit and its retention, position checkpoints, dropping a corrupt
 * checkpoint, incremental vacuum, removing jobs (rows, space, ids never
 * reused), a read-only connection next to a writer,
 * a full disk, running out of memory and corruption. Faults are injected
 * from outside the store: a trigger that fails the history insert, a child
 * process that dies in the middle of a migration, a 2 MB tmpfs, an SQLite
 * allocator that starts failing at the Nth allocation, an overwritten page.
 *
 * Each test gets a fresh directory under $TRAIND_TEST_TMP (or /tmp), removed
 * afterwards. Raw sqlite3 connections look at the file from the side.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "daemon/store/store.h"

#ifndef TRAIND_MIGRATIONS_DIR
#error "TRAIND_MIGRATIONS_DIR must name the source tree's migrations/ directory"
#endif

#define MB (1024 * 1024)

struct fx {
	char dir[512];   /* the test's own directory */
	char db[600];    /* dir/traind.db */
	char mnt[600];   /* a tmpfs mounted inside dir, or "" */
};

/* ---- fixture ----------------------------------------------------------- */

static int setup(void **state)
{
	const char *base = getenv("TRAIND_TEST_TMP");
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (!base || !*base)
		base = "/tmp";
	if (strlen(base) > sizeof(f->dir) - 16 ||
	    snprintf(f->dir, sizeof(f->dir), "%s/store-XXXXXX", base) < 0 || !mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->db, sizeof(f->db), "%s/traind.db", f->dir);
	*state = f;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->mnt[0])
		umount2(f->mnt, MNT_DETACH);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* ---- out-of-memory injection -------------------------------------------- */

/* SQLite's allocator, wrapped: once armed, allocation number fault_at and
 * every one after it fail (a persistent shortage, as SQLite's own malloc
 * tests do). Installed in main() before SQLite initializes. */
static sqlite3_mem_methods real_mem;
static long fault_at = -1;   /* < 0: off */
static long fault_count;
static long fault_hits;

static bool fault_now(void)
{
	if (fault_at < 0 || fault_count++ < fault_at)
		return false;
	fault_hits++;
	return true;
}

static void *fault_malloc(int n)
{
	return fault_now() ? NULL : real_mem.xMalloc(n);
}

static void *fault_realloc(void *p, int n)
{
	return fault_now() ? NULL : real_mem.xRealloc(p, n);
}

static void install_fault_allocator(void)
{
	sqlite3_mem_methods m;

	if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem) != SQLITE_OK)
		abort();
	m = real_mem;
	m.xMalloc = fault_malloc;
	m.xRealloc = fault_realloc;
	if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK)
		abort();
}

static void fault_arm(long at)
{
	fault_count = 0;
	fault_hits = 0;
	fault_at = at;
}

/* Returns whether any allocation failed while armed. */
static bool fault_disarm(void)
{
	fault_at = -1;
	return fault_hits > 0;
}

/* ---- helpers ----------------------------------------------------------- */

static struct store *open_store(const char *path, bool readonly)
{
	struct store *s = NULL;
	struct tr_err err = { 0 };
	int rc = store_open(&s, path, readonly, &err);

	if (rc != 0)
		fail_msg("store_open(%s): %d %s", path, rc, err.msg);
	return s;
}

static sqlite3 *raw_open(const char *path)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
			 SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static void raw_exec_db(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, msg);
		sqlite3_free(msg);
		fail();
	}
}

static void raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = raw_open(path);

	raw_exec_db(db, sql);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int64_t raw_i64_db(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int64_t raw_i64(const char *path, const char *sql)
{
	sqlite3 *db = raw_open(path);
	int64_t v = raw_i64_db(db, sql);

	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return v;
}

static void raw_text(const char *path, const char *sql, char *buf, size_t size)
{
	sqlite3 *db = raw_open(path);
	sqlite3_stmt *st = NULL;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* The number of NNNN_*.sql files in the source tree's migrations/. */
static int count_migration_files(void)
{
	DIR *d = opendir(TRAIND_MIGRATIONS_DIR);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);

		if (len > 9 && e->d_name[4] == '_' && strcmp(e->d_name + len - 4, ".sql") == 0 &&
		    strspn(e->d_name, "0123456789") == 4)
			n++;
	}
	closedir(d);
	return n;
}

static char *read_text(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n > 0);
	rewind(fp);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static int64_t new_job(struct store *s, int32_t keep)
{
	struct tr_err err = { 0 };
	int64_t id = -1;

	assert_int_equal(store_job_create(s, "mlp", "{\"epochs\":50}", 50, keep, JOB_QUEUED, &id, &err),
			 0);
	assert_true(id > 0);
	return id;
}

/* A blob of `size` bytes that says which epoch/step it is. */
static uint8_t *make_blob(uint32_t epoch, uint32_t step, size_t size)
{
	uint8_t *b = malloc(size);

	assert_non_null(b);
	for (size_t i = 0; i < size; i++)
		b[i] = (uint8_t)(i * 31 + epoch * 7 + step * 13);
	return b;
}

static void make_checksum(char *sum, uint32_t epoch, uint32_t step)
{
	snprintf(sum, STORE_CHECKSUM_MAX, "sha256:%08x%08x", epoch, step);
}

static void make_row(struct history_row *r, uint32_t epoch, double val_loss)
{
	memset(r, 0, sizeof(*r));
	r->epoch = epoch;
	r->train_loss = 1.0 / epoch;
	r->train_acc = 0.5 + 0.01 * epoch;
	r->train_macro_acc = 0.49 + 0.01 * epoch;
	r->val_loss = val_loss;
	r->val_acc = 0.6 + 0.01 * epoch;
	r->val_macro_acc = 0.59 + 0.01 * epoch;
	r->seconds = 2.5 * epoch;
	snprintf(r->note, sizeof(r->note), "epoch %u", epoch);
}

static int try_commit(struct store *s, int64_t job, uint32_t epoch, double val_loss, size_t size,
		      struct tr_err *err)
{
	struct history_row row;
	char sum[STORE_CHECKSUM_MAX];
	uint8_t *blob = make_blob(epoch, 0, size);
	int rc;

	make_row(&row, epoch, val_loss);
	make_checksum(sum, epoch, 0);
	rc = store_commit_epoch(s, job, &row, blob, size, sum, err);
	free(blob);
	return rc;
}

static void commit(struct store *s, int64_t job, uint32_t epoch, double val_loss, size_t size)
{
	struct tr_err err = { 0 };
	int rc = try_commit(s, job, epoch, val_loss, size, &err);

	if (rc != 0)
		fail_msg("commit epoch %u: %d %s", epoch, rc, err.msg);
}

static int try_position(struct store *s, int64_t job, uint32_t epoch, uint32_t step,
			struct tr_err *err)
{
	char sum[STORE_CHECKSUM_MAX];
	uint8_t *blob = make_blob(epoch, step, 1000);
	int rc;

	make_checksum(sum, epoch, step);
	rc = store_save_position(s, job, epoch, step, blob, 1000, sum, err);
	free(blob);
	return rc;
}

/* The job's epoch checkpoints (by epoch) are exactly `want`, and no more. */
static void assert_epoch_checkpoints(struct store *s, int64_t job, const uint32_t *want, size_t n)
{
	struct store_checkpoint *cks = NULL;
	size_t nck = 0, k = 0;

	assert_int_equal(store_checkpoint_list(s, job, &cks, &nck, NULL), 0);
	for (size_t i = 0; i < nck; i++) {
		assert_null(cks[i].blob);
		if (!cks[i].is_epoch)
			continue;
		assert_true(k < n);
		assert_int_equal(cks[i].epoch, want[k]);
		k++;
	}
	assert_int_equal(k, n);
	free(cks);
}

static size_t history_len(struct store *s, int64_t job)
{
	struct history_row *rows = NULL;
	size_t n = 0;

	assert_int_equal(store_history(s, job, &rows, &n, NULL), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(rows[i].epoch, i + 1);   /* 1..n, no gaps */
	free(rows);
	return n;
}

static uint32_t job_epoch(struct store *s, int64_t job)
{
	struct store_job j;
	uint32_t e;

	assert_int_equal(store_job_get(s, job, &j, NULL), 0);
	e = j.epoch;
	store_job_clear(&j);
	return e;
}

static void assert_blob_is(const struct store_checkpoint *c, uint32_t epoch, uint32_t step,
			   size_t size)
{
	uint8_t *want = make_blob(epoch, step, size);

	assert_int_equal(c->epoch, epoch);
	assert_int_equal(c->step, step);
	assert_int_equal(c->size, (int64_t)size);
	assert_non_null(c->blob);
	assert_memory_equal(c->blob, want, size);
	free(want);
}

/* ---- open and migrations ----------------------------------------------- */

static void test_fresh_db(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	char mode[16];

	assert_int_equal(store_schema_version_known(), count_migration_files());
	assert_int_equal(store_schema_version(s), store_schema_version_known());
	assert_int_equal(store_integrity_check(s, NULL), 0);
	raw_text(f->db, "PRAGMA journal_mode", mode, sizeof(mode));
	assert_string_equal(mode, "wal");
	assert_int_equal(raw_i64(f->db, "PRAGMA auto_vacuum"), 2);   /* incremental */
	assert_int_equal(raw_i64(f->db, "PRAGMA user_version"), store_schema_version_known());
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
					"name IN ('jobs', 'checkpoints', 'history')"),
			 3);
	store_close(s);
	store_close(NULL);
}

static void test_reopen_idempotent(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	int64_t job = new_job(s, -1);

	commit(s, job, 1, 0.5, 100);
	store_close(s);
	for (int i = 0; i < 3; i++) {
		s = open_store(f->db, i == 2);
		assert_int_equal(store_schema_version(s), store_schema_version_known());
		assert_int_equal(job_epoch(s, job), 1);
		assert_int_equal(history_len(s, job), 1);
		store_close(s);
	}
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM jobs"), 1);
	assert_int_equal(raw_i64(f->db, "PRAGMA auto_vacuum"), 2);
}

static void test_newer_refused(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	char newer[64], version[32];

	store_close(s);
	/* one past what this build knows, whatever that is */
	snprintf(newer, sizeof(newer), "PRAGMA user_version = %d", store_schema_version_known() + 1);
	snprintf(version, sizeof(version), "version %d", store_schema_version_known() + 1);
	raw_exec(f->db, newer);
	for (int ro = 0; ro < 2; ro++) {
		s = (struct store *)&err;   /* must be reset to NULL */
		tr_err_clear(&err);
		assert_int_equal(store_open(&s, f->db, ro, &err), -EINVAL);
		assert_null(s);
		assert_int_equal(err.code, -EINVAL);
		assert_non_null(strstr(err.msg, "newer"));
		assert_non_null(strstr(err.msg, version));
	}
	assert_int_equal(raw_i64(f->db, "PRAGMA user_version"), store_schema_version_known() + 1);   /* untouched */
}

/* A file that exists, has pages and user_version 0 but no table (so
 * auto_vacuum can no longer be set by the pragma alone), and an empty file. */
static void test_old_db_migrates(void **state)
{
	struct fx *f = *state;
	struct store *s;
	char empty[700];
	int fd;

	raw_exec(f->db, "PRAGMA journal_mode = DELETE; CREATE TABLE t(x); DROP TABLE t;");
	assert_true(file_size(f->db) > 0);
	assert_int_equal(raw_i64(f->db, "PRAGMA user_version"), 0);
	assert_int_equal(raw_i64(f->db, "PRAGMA auto_vacuum"), 0);
	s = open_store(f->db, false);
	assert_int_equal(store_schema_version(s), store_schema_version_known());
	assert_int_equal(store_integrity_check(s, NULL), 0);
	store_close(s);
	assert_int_equal(raw_i64(f->db, "PRAGMA auto_vacuum"), 2);

	snprintf(empty, sizeof(empty), "%s/empty.db", f->dir);
	fd = open(empty, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	s = open_store(empty, false);
	assert_int_equal(store_schema_version(s), store_schema_version_known());
	store_close(s);
	assert_int_equal(raw_i64(empty, "PRAGMA auto_vacuum"), 2);
}

/* A database written by the first schema (migration 0001 only, as a traind
 * of that version left it, with a job and its first epoch): opening it
 * applies the later migrations and keeps every row. */
static void test_v1_db_upgrades(void **state)
{
	struct fx *f = *state;
	char *sql = read_text(TRAIND_MIGRATIONS_DIR "/0001_initial.sql");
	struct store_job *jobs = NULL;
	struct store_checkpoint ck = { 0 };
	struct history_row *h = NULL;
	sqlite3 *db = raw_open(f->db);
	struct store *s;
	size_t n = 0;

	raw_exec_db(db, "PRAGMA auto_vacuum = INCREMENTAL; BEGIN IMMEDIATE");
	raw_exec_db(db, sql);
	raw_exec_db(db, "PRAGMA user_version = 1;"
		    "INSERT INTO jobs (id, name, config, state, epochs, epoch, keep, created_at, updated_at) "
		    "VALUES (7, 'old', '{\"epochs\": 5}', 'running', 5, 1, 3, 100, 200);"
		    "INSERT INTO history (job_id, epoch, train_loss, train_acc, train_macro_acc, val_loss, "
		    "val_acc, val_macro_acc, seconds, created_at) VALUES (7, 1, 0.5, 0.8, 0.8, 0.4, 0.9, 0.9, 1.5, 150);"
		    "INSERT INTO checkpoints (job_id, epoch, step, kind, val_loss, size, checksum, created_at, blob) "
		    "VALUES (7, 1, 0, 'epoch', 0.4, 3, 'sha256:x', 150, x'010203');"
		    "COMMIT");
	sqlite3_close(db);
	free(sql);
	assert_int_equal(raw_i64(f->db, "PRAGMA user_version"), 1);

	s = open_store(f->db, false);
	assert_int_equal(store_schema_version(s), store_schema_version_known());
	assert_true(store_schema_version_known() > 1);
	assert_int_equal(store_job_list(s, &jobs, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_int_equal(jobs[0].id, 7);
	assert_string_equal(jobs[0].name, "old");
	assert_int_equal(jobs[0].state, JOB_RUNNING);
	assert_int_equal(jobs[0].epoch, 1);
	assert_int_equal(jobs[0].kill_after, -1);   /* 0002: none pending */
	store_jobs_free(jobs, n);
	assert_int_equal(store_history(s, 7, &h, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_true(h[0].val_loss == 0.4);
	free(h);
	assert_int_equal(store_epoch_checkpoint(s, 7, 1, &ck, NULL), 0);
	assert_int_equal(ck.size, 3);
	assert_memory_equal(ck.blob, "\x01\x02\x03", 3);
	store_checkpoint_clear(&ck);
	/* 0005: the old checkpoint's score is its val_loss, so it is the best */
	assert_int_equal(store_best_checkpoint(s, 7, &ck, NULL), 0);
	assert_true(ck.score == 0.4);
	assert_int_equal(ck.epoch, 1);
	store_checkpoint_clear(&ck);
	assert_int_equal(store_history(s, 7, &h, &n, NULL), 0);
	assert_true(isnan(h[0].lr) && isnan(h[0].grad_norm));
	free(h);
	/* the new column works */
	assert_int_equal(store_job_set_kill_after(s, 7, 3, NULL), 0);
	assert_int_equal(store_job_list(s, &jobs, &n, NULL), 0);
	assert_int_equal(jobs[0].kill_after, 3);
	store_jobs_free(jobs, n);
	assert_int_equal(store_job_set_kill_after(s, 7, -1, NULL), 0);
	assert_int_equal(store_job_set_kill_after(s, 99, 3, NULL), -ENOENT);
	/* 0003: the next id is above the old job's, also once it is removed */
	assert_int_equal(store_job_delete(s, 7, NULL, NULL), 0);
	assert_int_equal(new_job(s, 1), 8);
	assert_int_equal(store_integrity_check(s, NULL), 0);
	store_close(s);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM jobs WHERE kill_after IS NULL"), 1);
}

/* A child applies migration 0001 the way the store does, makes SQLite write
 * part of it to disk (a small page cache spills), and dies before COMMIT. */
static void crash_mid_migration(const char *path, const char *journal_mode)
{
	pid_t pid;
	int status;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		static const char filler[] =
			"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
			"INSERT INTO jobs (name, config, state, epochs, created_at, updated_at) "
			"SELECT 'filler', json_object('pad', hex(randomblob(400))), 'queued', 1, 0, 0 "
			"FROM n";
		char *sql = read_text(TRAIND_MIGRATIONS_DIR "/0001_initial.sql");
		char mode[64];
		sqlite3 *db = NULL;

		snprintf(mode, sizeof(mode), "PRAGMA journal_mode = %s", journal_mode);
		if (sqlite3_open(path, &db) != SQLITE_OK ||
		    sqlite3_exec(db, mode, NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(db, "PRAGMA cache_size = 10", NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(db, "PRAGMA user_version = 1", NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(db, filler, NULL, NULL, NULL) != SQLITE_OK)
			_exit(3);
		_exit(0);   /* no COMMIT, no close: a crash */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void assert_migrated_empty(const char *path)
{
	struct store *s = open_store(path, false);
	struct store_job *jobs = NULL;
	size_t n = 99;

	assert_int_equal(store_schema_version(s), store_schema_version_known());
	assert_int_equal(store_job_list(s, &jobs, &n, NULL), 0);
	assert_int_equal(n, 0);   /* the filler died with the transaction */
	assert_null(jobs);
	assert_int_equal(store_integrity_check(s, NULL), 0);
	/* and it works */
	commit(s, new_job(s, 1), 1, 0.25, 4096);
	store_close(s);
	assert_int_equal(raw_i64(path, "PRAGMA auto_vacuum"), 2);
}

static void test_half_applied_migration_wal(void **state)
{
	struct fx *f = *state;
	char wal[700];

	struct store *s = NULL;
	struct tr_err err = { 0 };

	crash_mid_migration(f->db, "WAL");
	snprintf(wal, sizeof(wal), "%s-wal", f->db);
	assert_true(file_size(wal) > 100 * 1024);   /* uncommitted frames on disk */
	/* Still version 0, seen by a connection that changes nothing (a
	 * read-write one would clean up the WAL on close). */
	assert_int_equal(store_open(&s, f->db, true, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "version 0 is older"));
	assert_true(file_size(wal) > 100 * 1024);
	assert_migrated_empty(f->db);
}

static void test_half_applied_migration_rollback_journal(void **state)
{
	struct fx *f = *state;
	char journal[700];

	crash_mid_migration(f->db, "DELETE");
	snprintf(journal, sizeof(journal), "%s-journal", f->db);
	/* A hot journal and a database file holding part of the transaction:
	 * the next opener must roll it back before anything else. */
	assert_true(file_size(journal) > 0);
	assert_true(file_size(f->db) > 100 * 1024);
	assert_migrated_empty(f->db);
	assert_false(exists(journal));
}

static void test_open_errors(void **state)
{
	struct fx *f = *state;
	struct store *s = NULL;
	struct tr_err err = { 0 };
	char path[700];
	char mode[16];
	FILE *fp;

	/* read-only: no file; an unmigrated file */
	snprintf(path, sizeof(path), "%s/missing.db", f->dir);
	assert_int_equal(store_open(&s, path, true, &err), -ENOENT);
	assert_null(s);
	assert_false(exists(path));
	raw_exec(f->db, "CREATE TABLE t(x)");
	assert_int_equal(store_open(&s, f->db, true, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "older"));
	/* tables but version 0: someone else's database, left alone */
	assert_int_equal(store_open(&s, f->db, false, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a traind database"));
	assert_null(s);
	assert_int_equal(raw_i64(f->db, "PRAGMA user_version"), 0);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM sqlite_master"), 1);
	raw_text(f->db, "PRAGMA journal_mode", mode, sizeof(mode));
	assert_string_equal(mode, "delete");

	/* not a database */
	snprintf(path, sizeof(path), "%s/garbage.db", f->dir);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	for (int i = 0; i < 4096; i++)
		fputc(i * 7 + 3, fp);
	fclose(fp);
	assert_int_equal(store_open(&s, path, false, &err), -EIO);
	assert_non_null(strstr(err.msg, "not a database"));
	assert_null(s);

	/* a directory */
	assert_true(store_open(&s, f->dir, false, &err) < 0);
	assert_null(s);
	assert_int_equal(store_open(&s, "", false, &err), -EINVAL);
}

/* ---- jobs -------------------------------------------------------------- */

static void test_jobs(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	struct store_job j, *jobs = NULL;
	struct history_row *rows = NULL;
	char long_name[STORE_NAME_MAX + 1];
	char sql[96];
	int64_t a = 0, b = 0, c = 0;
	size_t n = 0;

	assert_int_equal(store_job_list(s, &jobs, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_job_create(s, "first", "{\"lr\":0.001}", 5, 3, JOB_QUEUED, &a, &err), 0);
	assert_int_equal(store_job_create(s, "second", "{}", 7, -1, JOB_PAUSED, &b, &err), 0);
	assert_true(b > a);

	assert_int_equal(store_job_get(s, a, &j, &err), 0);
	assert_int_equal(j.id, a);
	assert_string_equal(j.name, "first");
	assert_int_equal(j.state, JOB_QUEUED);
	assert_string_equal(j.config_json, "{\"lr\":0.001}");
	assert_null(j.last_error);
	assert_int_equal(j.keep, 3);
	assert_int_equal(j.epochs, 5);
	assert_int_equal(j.epoch, 0);
	assert_true(j.created_at > 1600000000);
	assert_int_equal(j.updated_at, j.created_at);
	store_job_clear(&j);
	assert_null(j.config_json);

	assert_int_equal(store_job_set_state(s, a, JOB_FAILED, "dataset missing", &err), 0);
	assert_int_equal(store_job_get(s, a, &j, &err), 0);
	assert_int_equal(j.state, JOB_FAILED);
	assert_string_equal(j.last_error, "dataset missing");
	store_job_clear(&j);
	assert_int_equal(store_job_set_state(s, a, JOB_QUEUED, NULL, &err), 0);
	assert_int_equal(store_job_get(s, a, &j, &err), 0);
	assert_int_equal(j.state, JOB_QUEUED);
	assert_null(j.last_error);
	store_job_clear(&j);

	/* each state is its text in the column, and reads back as itself */
	{
		static const char *const text[JOB_STATE_COUNT] = {
			"queued", "running", "paused", "killed", "failed", "done",
		};

		for (int k = 0; k < JOB_STATE_COUNT; k++) {
			char col[16];

			assert_int_equal(store_job_set_state(s, a, (enum job_state)k, NULL, &err), 0);
			snprintf(sql, sizeof(sql), "SELECT state FROM jobs WHERE id = %" PRId64, a);
			raw_text(f->db, sql, col, sizeof(col));
			assert_string_equal(col, text[k]);
			assert_int_equal(store_job_get(s, a, &j, &err), 0);
			assert_int_equal(j.state, k);
			store_job_clear(&j);
		}
		assert_int_equal(store_job_set_state(s, a, JOB_QUEUED, NULL, &err), 0);
	}

	/* a value that is no state is refused; the CHECK constraint refuses a
	 * text that is none written around the store; nothing changed */
	assert_int_equal(store_job_set_state(s, a, (enum job_state)JOB_STATE_COUNT, NULL, &err),
			 -EINVAL);
	assert_int_equal(store_job_create(s, "bad", "{}", 1, 1, (enum job_state)JOB_STATE_COUNT, &c,
					  &err), -EINVAL);
	{
		sqlite3 *db = raw_open(f->db);

		snprintf(sql, sizeof(sql), "UPDATE jobs SET state = 'exploded' WHERE id = %" PRId64, a);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_CONSTRAINT);
		assert_non_null(strstr(sqlite3_errmsg(db), "CHECK"));
		assert_int_equal(sqlite3_close(db), SQLITE_OK);
	}
	assert_int_equal(store_job_get(s, a, &j, &err), 0);
	assert_int_equal(j.state, JOB_QUEUED);
	store_job_clear(&j);
	assert_int_equal(store_job_create(s, "bad", "{not json", 1, 1, JOB_QUEUED, &c, &err), -EINVAL);
	assert_int_equal(store_job_create(s, "bad", "{}", 1, -2, JOB_QUEUED, &c, &err), -EINVAL);
	memset(long_name, 'x', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_int_equal(store_job_create(s, long_name, "{}", 1, 1, JOB_QUEUED, &c, &err), -EINVAL);
	assert_int_equal(c, 0);

	/* no such job */
	assert_int_equal(store_job_get(s, 999, &j, &err), -ENOENT);
	assert_int_equal(store_job_set_state(s, 999, JOB_DONE, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no such job"));
	assert_int_equal(try_commit(s, 999, 1, 0.5, 10, &err), -ENOENT);
	assert_int_equal(try_position(s, 999, 0, 1, &err), -ENOENT);
	assert_int_equal(store_history(s, 999, &rows, &n, &err), -ENOENT);
	assert_null(rows);

	assert_int_equal(store_job_list(s, &jobs, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(jobs[0].id, a);
	assert_int_equal(jobs[0].state, JOB_QUEUED);
	assert_int_equal(jobs[1].id, b);
	assert_string_equal(jobs[1].name, "second");
	assert_int_equal(jobs[1].state, JOB_PAUSED);
	assert_int_equal(jobs[1].keep, -1);
	store_jobs_free(jobs, n);
	store_jobs_free(NULL, 0);

	/* deleting a job takes its checkpoints and history along (foreign keys) */
	commit(s, b, 1, 0.5, 100);
	store_close(s);
	snprintf(sql, sizeof(sql), "PRAGMA foreign_keys = ON; DELETE FROM jobs WHERE id = %lld",
		 (long long)b);
	raw_exec(f->db, sql);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM checkpoints"), 0);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM history"), 0);
}

/* ---- epoch commits ----------------------------------------------------- */

/* Migration 0004: a job's dataset digest, and the file digest cache keyed
 * by the file's identity: any part of it changed is a miss. */
static void test_dataset_digests(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	struct store_file_id id = { "/data/mnist/train-images-idx3-ubyte", 47040016, 1000000000123,
				    1000000000456, 42 };
	struct store_file_id other;
	const char *hex = "1f0c000000000000000000000000000000000000000000000000000000000001";
	char digest[80], got[65];
	struct store_job j;
	int64_t a = 0;

	assert_int_equal(store_job_create(s, "j", "{}", 1, 3, JOB_QUEUED, &a, &err), 0);
	assert_int_equal(store_job_get(s, a, &j, &err), 0);
	assert_string_equal(j.dataset_digest, "");
	store_job_clear(&j);
	snprintf(digest, sizeof(digest), "sha256:%s", hex);
	assert_int_equal(store_job_set_dataset_digest(s, a, digest, &err), 0);
	assert_int_equal(store_job_get(s, a, &j, &err), 0);
	assert_string_equal(j.dataset_digest, digest);
	store_job_clear(&j);
	assert_int_equal(store_job_set_dataset_digest(s, a, "md5:abc", &err), -EINVAL);
	assert_int_equal(store_job_set_dataset_digest(s, a + 100, digest, &err), -ENOENT);

	assert_int_equal(store_file_digest_get(s, &id, got, &err), -ENOENT);
	assert_int_equal(store_file_digest_put(s, &id, hex, &err), 0);
	assert_int_equal(store_file_digest_get(s, &id, got, &err), 0);
	assert_string_equal(got, hex);
	for (int k = 0; k < 4; k++) {
		other = id;
		if (k == 0)
			other.size++;
		else if (k == 1)
			other.mtime_ns++;
		else if (k == 2)
			other.ctime_ns++;
		else
			other.inode++;
		assert_int_equal(store_file_digest_get(s, &other, got, &err), -ENOENT);
	}
	/* a changed file replaces its row */
	other = id;
	other.mtime_ns += 5;
	assert_int_equal(store_file_digest_put(s, &other, hex, &err), 0);
	assert_int_equal(store_file_digest_get(s, &id, got, &err), -ENOENT);
	assert_int_equal(store_file_digest_get(s, &other, got, &err), 0);
	store_close(s);
}

static void test_commit_epoch(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	struct history_row *rows = NULL, want;
	struct store_checkpoint ck;
	uint8_t one = 1;
	size_t n = 0;
	int64_t job = new_job(s, -1);

	commit(s, job, 1, 0.9, 3000);
	commit(s, job, 2, NAN, 3001);   /* no validation set: NULL in the database */
	commit(s, job, 3, 0.7, 3002);
	assert_int_equal(job_epoch(s, job), 3);
	assert_int_equal(history_len(s, job), 3);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM checkpoints WHERE kind = 'epoch'"), 3);

	assert_int_equal(store_history(s, job, &rows, &n, &err), 0);
	assert_int_equal(n, 3);
	make_row(&want, 3, 0.7);
	assert_true(rows[2].train_loss == want.train_loss);
	assert_true(rows[2].train_acc == want.train_acc);
	assert_true(rows[2].train_macro_acc == want.train_macro_acc);
	assert_true(rows[2].val_loss == want.val_loss);
	assert_true(rows[2].val_acc == want.val_acc);
	assert_true(rows[2].val_macro_acc == want.val_macro_acc);
	assert_true(rows[2].seconds == want.seconds);
	assert_string_equal(rows[2].note, "epoch 3");
	assert_true(isnan(rows[1].val_loss));
	free(rows);

	assert_int_equal(store_epoch_checkpoint(s, job, 2, &ck, &err), 0);
	assert_blob_is(&ck, 2, 0, 3001);
	assert_true(ck.is_epoch);
	assert_true(isnan(ck.val_loss));
	assert_string_equal(ck.checksum, "sha256:0000000200000000");
	assert_int_equal(ck.job_id, job);
	store_checkpoint_clear(&ck);
	assert_null(ck.blob);
	assert_int_equal(store_epoch_checkpoint(s, job, 9, &ck, &err), -ENOENT);

	/* a duplicate: -EEXIST and not a byte changed */
	{
		int64_t before = raw_i64(f->db, "SELECT sum(length(blob)) FROM checkpoints");

		assert_int_equal(try_commit(s, job, 2, 0.1, 5000, &err), -EEXIST);
		assert_int_equal(err.code, -EEXIST);
		assert_int_equal(try_commit(s, job, 3, 0.1, 5000, &err), -EEXIST);
		assert_int_equal(raw_i64(f->db, "SELECT sum(length(blob)) FROM checkpoints"), before);
	}
	assert_int_equal(job_epoch(s, job), 3);
	assert_int_equal(history_len(s, job), 3);

	/* a gap, epoch 0, bad arguments */
	assert_int_equal(try_commit(s, job, 5, 0.1, 10, &err), -EINVAL);
	assert_int_equal(try_commit(s, job, 0, 0.1, 10, &err), -EINVAL);
	make_row(&want, 4, 0.5);
	assert_int_equal(store_commit_epoch(s, job, &want, NULL, 0, "sha256:x", &err), -EINVAL);
	assert_int_equal(store_commit_epoch(s, job, &want, &one, 1, NULL, &err), -EINVAL);
	assert_int_equal(store_commit_epoch(s, job, NULL, &one, 1, "sha256:x", &err), -EINVAL);
	assert_int_equal(job_epoch(s, job), 3);
	commit(s, job, 4, 0.6, 10);
	assert_int_equal(history_len(s, job), 4);
	assert_int_equal(store_integrity_check(s, &err), 0);
	store_close(s);
}

/* A fault in the middle of the commit (the history insert fails after the
 * checkpoint insert succeeded) leaves everything as it was. */
static void test_commit_atomic(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	struct store_checkpoint *cks = NULL;
	size_t n = 0;
	int64_t job = new_job(s, -1);

	commit(s, job, 1, 0.5, 2000);
	commit(s, job, 2, 0.4, 2000);
	assert_int_equal(try_position(s, job, 2, 17, &err), 0);
	raw_exec(f->db, "CREATE TRIGGER fail_history BEFORE INSERT ON history WHEN NEW.epoch = 3 "
			"BEGIN SELECT RAISE(ABORT, 'injected fault'); END");

	assert_int_equal(try_commit(s, job, 3, 0.3, 2000, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "injected fault"));
	assert_non_null(strstr(err.msg, "epoch 3"));
	assert_int_equal(job_epoch(s, job), 2);
	assert_int_equal(history_len(s, job), 2);
	assert_int_equal(store_checkpoint_list(s, job, &cks, &n, &err), 0);
	assert_int_equal(n, 3);   /* epochs 1, 2 and the position, which survived */
	assert_int_equal(cks[2].epoch, 2);
	assert_int_equal(cks[2].step, 17);
	assert_false(cks[2].is_epoch);
	free(cks);

	raw_exec(f->db, "DROP TRIGGER fail_history");
	commit(s, job, 3, 0.3, 2000);
	assert_int_equal(history_len(s, job), 3);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM checkpoints WHERE kind = 'position'"), 0);
	store_close(s);
}

/* A job from another's checkpoint (trainctl start --from): the job with its
 * origin, the history before the checkpoint and the checkpoint at its
 * position, in one transaction; an origin whose history does not match its
 * position is refused; a failing insert leaves nothing. */
static void test_job_create_from(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	struct store_checkpoint ck;
	struct store_job j;
	struct history_row rows[2];
	uint8_t *blob = make_blob(2, 0, 20000);
	char sum[STORE_CHECKSUM_MAX];
	int64_t id = 0, none = -7;
	struct store_origin o = { .text = "job 1 epoch 2", .epoch = 2, .step = 0, .is_epoch = true,
				  .val_loss = 0.25, .rows = rows, .nrows = 2 };

	(void)state;
	memset(rows, 0, sizeof(rows));
	rows[0].epoch = 1;
	rows[0].val_loss = 0.5;
	rows[1].epoch = 2;
	rows[1].val_loss = 0.25;
	make_checksum(sum, 2, 0);
	assert_int_equal(store_job_create_from(s, "from", "{\"epochs\":4}", 4, 3, JOB_QUEUED, blob, 20000,
					       sum, &o, &id, &err), 0);
	assert_int_equal(store_job_get(s, id, &j, &err), 0);
	assert_string_equal(j.origin, "job 1 epoch 2");
	assert_int_equal(j.epoch, 2);
	store_job_clear(&j);
	assert_null(j.origin);
	assert_int_equal(history_len(s, id), 2);
	assert_int_equal(store_latest_checkpoint(s, id, &ck, &err), 0);
	assert_true(ck.is_epoch);
	assert_int_equal(ck.epoch, 2);
	assert_true(ck.val_loss == 0.25);
	store_checkpoint_clear(&ck);
	/* it trains on: epoch 3 */
	commit(s, id, 3, 0.2, 1000);
	assert_int_equal(history_len(s, id), 3);

	/* a job without an origin reads NULL */
	assert_int_equal(store_job_create(s, "plain", "{}", 1, 1, JOB_QUEUED, &none, &err), 0);
	assert_int_equal(store_job_get(s, none, &j, &err), 0);
	assert_null(j.origin);
	store_job_clear(&j);

	/* history and position disagree: refused, nothing written */
	none = -7;
	o.nrows = 1;
	assert_int_equal(store_job_create_from(s, "x", "{}", 4, 3, JOB_QUEUED, blob, 20000, sum, &o,
					       &none, &err), -EINVAL);
	assert_int_equal(none, -7);
	o.nrows = 2;
	o.step = 5;   /* an epoch checkpoint mid-epoch */
	assert_int_equal(store_job_create_from(s, "x", "{}", 4, 3, JOB_QUEUED, blob, 20000, sum, &o,
					       &none, &err), -EINVAL);
	o.step = 0;
	/* the history's insert fails: no job, no checkpoint */
	raw_exec(f->db, "CREATE TRIGGER fail_hist BEFORE INSERT ON history "
			"BEGIN SELECT RAISE(ABORT, 'injected fault'); END");
	assert_int_equal(store_job_create_from(s, "x", "{}", 4, 3, JOB_QUEUED, blob, 20000, sum, &o,
					       &none, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "injected fault"));
	assert_int_equal(none, -7);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM jobs"), 2);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM checkpoints"), 2);
	raw_exec(f->db, "DROP TRIGGER fail_hist");
	free(blob);
	store_close(s);
}

/* A job and its first checkpoint (trainctl start --init-from) in one
 * transaction: both or neither, whatever fails on the way. */
static void test_job_create_at(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	sqlite3 *raw = raw_open(f->db);
	struct tr_err err = { 0 };
	struct store_checkpoint *cks = NULL, ck;
	struct store_job j;
	uint8_t *blob = make_blob(0, 0, 30000);
	char sum[STORE_CHECKSUM_MAX];
	int64_t id = 0, none = -7;
	size_t n = 0;
	long k, failures = 0, dangling = 0;
	int rc;

	sqlite3_busy_timeout(raw, 0);
	make_checksum(sum, 0, 0);
	assert_int_equal(store_job_create_at(s, "init", "{\"epochs\":3}", 3, 2, JOB_QUEUED, blob, 30000, sum,
					     &id, &err), 0);
	assert_true(id > 0);
	assert_int_equal(store_job_get(s, id, &j, &err), 0);
	assert_int_equal(j.state, JOB_QUEUED);
	assert_null(j.last_error);
	assert_int_equal(j.epoch, 0);
	assert_int_equal(j.keep, 2);
	store_job_clear(&j);
	assert_int_equal(store_checkpoint_list(s, id, &cks, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_false(cks[0].is_epoch);
	assert_string_equal(cks[0].checksum, sum);
	free(cks);
	assert_int_equal(store_latest_checkpoint(s, id, &ck, &err), 0);
	assert_blob_is(&ck, 0, 0, 30000);
	store_checkpoint_clear(&ck);
	/* it trains on from there: epoch 1 supersedes the position */
	commit(s, id, 1, 0.5, 1000);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM checkpoints WHERE kind = 'position'"), 0);

	/* bad arguments change nothing */
	assert_int_equal(store_job_create_at(s, "x", "{}", 1, 1, JOB_QUEUED, blob, 0, sum, &none, &err),
			 -EINVAL);
	assert_int_equal(store_job_create_at(s, "x", "{}", 1, 1, JOB_QUEUED, blob, 10, "", &none, &err),
			 -EINVAL);
	assert_int_equal(store_job_create_at(s, "x", "{}", 1, 1, (enum job_state)JOB_STATE_COUNT, blob,
					     10, sum, &none, &err),
			 -EINVAL);
	assert_int_equal(none, -7);

	/* the checkpoint's insert fails: no job either */
	raw_exec(f->db, "CREATE TRIGGER fail_ckpt BEFORE INSERT ON checkpoints "
			"BEGIN SELECT RAISE(ABORT, 'injected fault'); END");
	assert_int_equal(store_job_create_at(s, "x", "{}", 1, 1, JOB_QUEUED, blob, 30000, sum, &none, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "injected fault"));
	assert_int_equal(none, -7);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM jobs"), 1);
	raw_exec(f->db, "DROP TRIGGER fail_ckpt");

	/* out of memory at every allocation on the way */
	for (k = 0;; k++) {
		none = -7;
		fault_arm(k);
		rc = store_job_create_at(s, "oom", "{}", 1, 1, JOB_QUEUED, blob, 30000, sum, &none, &err);
		fault_disarm();
		if (rc == 0)
			break;
		failures++;
		assert_int_equal(none, -7);
		assert_int_equal(raw_i64_db(raw, "SELECT count(*) FROM jobs"), 1);
		/* Under a persistent shortage even ROLLBACK can fail, leaving the
		 * connection in the failed transaction until the next one begins.
		 * A state change made meanwhile must be committed on its own, not
		 * join that transaction and be rolled back with it. */
		if (sqlite3_exec(raw, "BEGIN IMMEDIATE; ROLLBACK;", NULL, NULL, NULL) == SQLITE_BUSY) {
			dangling++;
			assert_int_equal(store_job_set_state(s, id, dangling % 2 ? JOB_PAUSED : JOB_QUEUED, NULL,
							     &err), 0);
			assert_int_equal(store_job_set_kill_after(s, id, dangling % 2 ? 2 : -1, &err), 0);
		}
		assert_int_equal(raw_i64_db(raw, "SELECT count(*) FROM checkpoints WHERE kind = 'position'"),
				 0);
		assert_true(k < 100000);
	}
	assert_true(failures > 5);
	assert_true(none > id);
	/* nothing of a failed attempt was committed with the one that worked,
	 * and the state changes made while one was left open were kept */
	assert_int_equal(raw_i64_db(raw, "SELECT count(*) FROM jobs"), 2);
	if (dangling) {
		char st[16];

		raw_text(f->db, "SELECT state FROM jobs WHERE name = 'init'", st, sizeof(st));
		assert_string_equal(st, dangling % 2 ? "paused" : "queued");
		assert_int_equal(raw_i64_db(raw, "SELECT ifnull(kill_after, -1) FROM jobs WHERE name = 'init'"),
				 dangling % 2 ? 2 : -1);
	}
	print_message("%ld allocation failures, %ld left a transaction open\n", failures, dangling);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM checkpoints WHERE kind = 'position'"), 1);
	raw_exec_db(raw, "BEGIN IMMEDIATE; ROLLBACK;");   /* not left in a transaction */
	free(blob);
	assert_int_equal(sqlite3_close(raw), SQLITE_OK);
	assert_int_equal(store_integrity_check(s, &err), 0);
	store_close(s);
}

/* ---- retention --------------------------------------------------------- */

static void test_retention_keep2(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	/* epoch 2 and 4 tie for the best: the earliest (2) is kept */
	const double loss[] = { 0.9, 0.5, 0.7, 0.5, 0.8, 0.85 };
	const uint32_t after[][4] = {
		{ 1 }, { 1, 2 }, { 2, 3 }, { 2, 3, 4 }, { 2, 4, 5 }, { 2, 5, 6 },
	};
	const size_t nafter[] = { 1, 2, 2, 3, 3, 3 };
	int64_t job = new_job(s, 2);

	for (uint32_t e = 1; e <= 6; e++) {
		commit(s, job, e, loss[e - 1], 500);
		assert_epoch_checkpoints(s, job, after[e - 1], nafter[e - 1]);
		assert_int_equal(history_len(s, job), e);   /* history is never pruned */
	}
	store_close(s);
}

static void test_retention_keep_all_and_zero(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	const uint32_t all[] = { 1, 2, 3, 4, 5, 6 };
	const uint32_t zero[] = { 3, 6 };   /* the best and the newest (the resume point) */
	int64_t a = new_job(s, -1), z = new_job(s, 0);

	for (uint32_t e = 1; e <= 6; e++) {
		double l = e == 3 ? 0.1 : 1.0 + e;

		commit(s, a, e, l, 300);
		commit(s, z, e, l, 300);
	}
	assert_epoch_checkpoints(s, a, all, 6);
	assert_epoch_checkpoints(s, z, zero, 2);
	store_close(s);
}

/* NaN losses are never "best"; with none known only the newest ones stay. */
static void test_retention_nan(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	const uint32_t want[] = { 4, 5 };
	int64_t job = new_job(s, 2);

	for (uint32_t e = 1; e <= 5; e++)
		commit(s, job, e, NAN, 300);
	assert_epoch_checkpoints(s, job, want, 2);
	store_close(s);
}

/* Migration 0005: the best checkpoint by the job's monitor (config key
 * "monitor"): val_acc is maximized (score -val_acc), retention keeps it, the
 * list marks it, store_best_checkpoint finds it; a job without the key goes
 * by val_loss. History rows keep lr and grad_norm (NaN: NULL). */
static void test_best_by_monitor(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	const double acc[] = { 0.7, 0.9, 0.8, 0.9, 0.85 };   /* best: epoch 2 (4 ties, later) */
	const uint32_t kept[] = { 2, 5 };
	struct store_checkpoint ck, *cks = NULL;
	struct history_row *h = NULL;
	size_t n = 0, marked = 0;
	int64_t job = -1, plain;

	assert_int_equal(store_job_create(s, "acc", "{\"epochs\":50,\"monitor\":\"val_acc\"}", 50, 1,
					  JOB_QUEUED, &job, &err), 0);
	for (uint32_t e = 1; e <= 5; e++) {
		struct history_row row;
		char sum[STORE_CHECKSUM_MAX];
		uint8_t *blob = make_blob(e, 0, 200);

		make_row(&row, e, 0.1 * e);   /* val_loss would pick epoch 1 */
		row.val_acc = acc[e - 1];
		row.lr = 1e-3 / e;
		row.grad_norm = e == 3 ? NAN : 0.5 * e;
		make_checksum(sum, e, 0);
		if (store_commit_epoch(s, job, &row, blob, 200, sum, &err) != 0)
			fail_msg("commit %u: %s", e, err.msg);
		free(blob);
	}
	assert_epoch_checkpoints(s, job, kept, 2);
	assert_int_equal(store_checkpoint_list(s, job, &cks, &n, NULL), 0);
	for (size_t i = 0; i < n; i++) {
		if (cks[i].best) {
			marked++;
			assert_int_equal(cks[i].epoch, 2);
			assert_true(cks[i].score == -0.9);
		}
	}
	assert_int_equal(marked, 1);
	free(cks);
	assert_int_equal(store_best_checkpoint(s, job, &ck, NULL), 0);
	assert_int_equal(ck.epoch, 2);
	assert_non_null(ck.blob);
	store_checkpoint_clear(&ck);
	assert_int_equal(store_history(s, job, &h, &n, NULL), 0);
	assert_int_equal(n, 5);
	assert_true(h[1].lr == 1e-3 / 2 && h[1].grad_norm == 1.0 && isnan(h[2].grad_norm));
	free(h);

	plain = new_job(s, 1);   /* no monitor key: val_loss */
	commit(s, plain, 1, 0.3, 100);
	commit(s, plain, 2, 0.2, 100);
	commit(s, plain, 3, 0.4, 100);
	assert_int_equal(store_best_checkpoint(s, plain, &ck, NULL), 0);
	assert_int_equal(ck.epoch, 2);
	store_checkpoint_clear(&ck);
	assert_int_equal(store_best_checkpoint(s, new_job(s, 1), &ck, &err), -ENOENT);
	store_close(s);
}

/* Migration 0007: a regression's rows have val_mae and val_rmse and null
 * accuracies; monitor val_rmse ranks its checkpoints (lowest is best). */
static void test_regression_rows(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	const double rmse[] = { 60, 55, 57 };   /* best: epoch 2 */
	struct store_checkpoint ck;
	struct history_row *h = NULL;
	size_t n = 0;
	int64_t job = -1;

	assert_int_equal(store_job_create(s, "reg", "{\"epochs\":9,\"loss\":\"mse\",\"monitor\":\"val_rmse\"}",
					  9, -1, JOB_QUEUED, &job, &err), 0);
	for (uint32_t e = 1; e <= 3; e++) {
		struct history_row row;
		char sum[STORE_CHECKSUM_MAX];
		uint8_t *blob = make_blob(e, 0, 100);

		make_row(&row, e, 3000.0 / e);   /* val_loss would pick epoch 3 */
		row.train_acc = row.train_macro_acc = row.val_acc = row.val_macro_acc = NAN;
		row.val_mae = rmse[e - 1] * 0.8;
		row.val_rmse = rmse[e - 1];
		row.val_ppl = e == 3 ? 7.25 : NAN;   /* migration 0010: a language model's column */
		make_checksum(sum, e, 0);
		if (store_commit_epoch(s, job, &row, blob, 100, sum, &err) != 0)
			fail_msg("commit %u: %s", e, err.msg);
		free(blob);
	}
	assert_int_equal(store_best_checkpoint(s, job, &ck, NULL), 0);
	assert_int_equal(ck.epoch, 2);
	assert_true(ck.score == 55);
	store_checkpoint_clear(&ck);
	assert_int_equal(store_history(s, job, &h, &n, NULL), 0);
	assert_int_equal(n, 3);
	assert_true(isnan(h[0].val_acc) && isnan(h[0].train_acc) && isnan(h[0].val_macro_acc));
	assert_true(h[1].val_rmse == 55 && h[1].val_mae == 44);
	assert_true(isnan(h[0].val_ppl) && h[2].val_ppl == 7.25);
	free(h);
	store_close(s);
}

/* ---- positions, latest, drop ------------------------------------------- */

static void test_positions_and_latest(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	struct store_checkpoint ck;
	struct store_checkpoint *cks = NULL;
	size_t n = 0;
	int64_t job = new_job(s, -1), other = new_job(s, -1);

	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), -ENOENT);
	assert_null(ck.blob);
	store_checkpoint_clear(&ck);

	/* at epoch 0 (e.g. a job started from a model file) */
	assert_int_equal(try_position(s, job, 0, 0, &err), 0);
	assert_int_equal(try_position(s, job, 0, 5, &err), 0);
	assert_int_equal(try_position(s, job, 0, 9, &err), 0);
	assert_int_equal(store_checkpoint_list(s, job, &cks, &n, &err), 0);
	assert_int_equal(n, 1);   /* replaced, not added */
	assert_int_equal(cks[0].step, 9);
	assert_false(cks[0].is_epoch);
	assert_true(isnan(cks[0].val_loss));
	free(cks);
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
	assert_blob_is(&ck, 0, 9, 1000);
	assert_false(ck.is_epoch);
	assert_string_equal(ck.checksum, "sha256:0000000000000009");
	store_checkpoint_clear(&ck);

	/* the epoch commit supersedes it */
	commit(s, job, 1, 0.5, 700);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM checkpoints WHERE kind = 'position'"), 0);
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
	assert_blob_is(&ck, 1, 0, 700);
	assert_true(ck.is_epoch);
	assert_true(ck.val_loss == 0.5);
	store_checkpoint_clear(&ck);

	/* highest (epoch, step) wins */
	assert_int_equal(try_position(s, job, 1, 3, &err), 0);
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
	assert_blob_is(&ck, 1, 3, 1000);
	store_checkpoint_clear(&ck);
	commit(s, job, 2, 0.6, 700);
	assert_int_equal(try_position(s, job, 2, 1, &err), 0);
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
	assert_blob_is(&ck, 2, 1, 1000);
	store_checkpoint_clear(&ck);

	/* a position must continue the committed history */
	assert_int_equal(try_position(s, job, 1, 3, &err), -EINVAL);
	assert_int_equal(try_position(s, job, 3, 3, &err), -EINVAL);
	/* step 0 of a committed epoch is the epoch checkpoint itself */
	assert_int_equal(try_position(s, job, 2, 0, &err), -EEXIST);
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
	assert_blob_is(&ck, 2, 1, 1000);   /* the failures changed nothing */
	store_checkpoint_clear(&ck);

	/* other jobs are separate */
	assert_int_equal(store_latest_checkpoint(s, other, &ck, &err), -ENOENT);
	assert_int_equal(store_checkpoint_list(s, other, &cks, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_null(cks);
	store_close(s);
}

static void test_drop_checkpoint(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	struct store_checkpoint ck, *cks = NULL;
	size_t n = 0;
	int64_t job = new_job(s, -1), other = new_job(s, -1);
	int64_t id4, id2;

	for (uint32_t e = 1; e <= 4; e++)
		commit(s, job, e, 1.0 / e, 800);
	commit(s, other, 1, 0.5, 800);

	/* the newest epoch checkpoint is corrupt: fall back to epoch 3 */
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
	id4 = ck.id;
	store_checkpoint_clear(&ck);
	assert_int_equal(store_drop_checkpoint(s, other, id4, &err), -ENOENT);   /* not its own */
	assert_int_equal(store_drop_checkpoint(s, job, id4, &err), 0);
	assert_int_equal(job_epoch(s, job), 3);
	assert_int_equal(history_len(s, job), 3);
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
	assert_blob_is(&ck, 3, 0, 800);
	store_checkpoint_clear(&ck);
	assert_int_equal(store_drop_checkpoint(s, job, id4, &err), -ENOENT);   /* gone */

	/* a corrupt position: only it goes */
	assert_int_equal(try_position(s, job, 3, 8, &err), 0);
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
	assert_false(ck.is_epoch);
	assert_int_equal(store_drop_checkpoint(s, job, ck.id, &err), 0);
	store_checkpoint_clear(&ck);
	assert_int_equal(job_epoch(s, job), 3);
	assert_int_equal(history_len(s, job), 3);

	/* an older one: the history stays */
	assert_int_equal(store_epoch_checkpoint(s, job, 2, &ck, &err), 0);
	id2 = ck.id;
	store_checkpoint_clear(&ck);
	assert_int_equal(store_drop_checkpoint(s, job, id2, &err), 0);
	assert_int_equal(history_len(s, job), 3);
	assert_int_equal(job_epoch(s, job), 3);

	/* drop 3 -> back to 1; drop 1 -> nothing left, history empty */
	assert_int_equal(store_epoch_checkpoint(s, job, 3, &ck, &err), 0);
	assert_int_equal(store_drop_checkpoint(s, job, ck.id, &err), 0);
	store_checkpoint_clear(&ck);
	assert_int_equal(job_epoch(s, job), 1);
	assert_int_equal(history_len(s, job), 1);
	assert_int_equal(store_epoch_checkpoint(s, job, 1, &ck, &err), 0);
	assert_int_equal(store_drop_checkpoint(s, job, ck.id, &err), 0);
	store_checkpoint_clear(&ck);
	assert_int_equal(job_epoch(s, job), 0);
	assert_int_equal(history_len(s, job), 0);
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), -ENOENT);
	assert_int_equal(store_checkpoint_list(s, job, &cks, &n, &err), 0);
	assert_int_equal(n, 0);

	/* training resumes from the start; the other job was never touched */
	commit(s, job, 1, 0.9, 800);
	assert_int_equal(history_len(s, job), 1);
	assert_int_equal(history_len(s, other), 1);
	assert_int_equal(job_epoch(s, other), 1);
	assert_int_equal(store_integrity_check(s, &err), 0);
	store_close(s);
}

/* ---- space ------------------------------------------------------------- */

static void test_incremental_vacuum(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	sqlite3 *raw;
	int64_t job = new_job(s, 1);
	int64_t page_size;

	raw = raw_open(f->db);
	page_size = raw_i64_db(raw, "PRAGMA page_size");
	for (uint32_t e = 1; e <= 24; e++) {
		int64_t pages, freelist;

		/* rising loss: epoch 1 stays as the best, plus the newest */
		commit(s, job, e, (double)e, MB);
		pages = raw_i64_db(raw, "PRAGMA page_count");
		freelist = raw_i64_db(raw, "PRAGMA freelist_count");
		assert_int_equal(freelist, 0);
		if (pages * page_size > 3 * MB)
			fail_msg("epoch %u: %lld pages of %lld bytes for 2 MB of checkpoints", e,
				 (long long)pages, (long long)page_size);
	}
	assert_int_equal(raw_i64_db(raw, "SELECT count(*) FROM checkpoints"), 2);
	assert_int_equal(sqlite3_close(raw), SQLITE_OK);
	store_close(s);
	/* the last connection checkpointed the WAL into the file and removed it */
	assert_true(file_size(f->db) > 2 * MB);
	assert_true(file_size(f->db) < 3 * MB);
}

/* An epoch commit is durable without copying the WAL into the database: the
 * writer checkpoints only in store_maintain, which the store thread calls
 * after it has reported the commit. */
static void test_wal_checkpoint_in_maintain(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	int64_t job = new_job(s, -1);
	char wal[sizeof(f->db) + 8];
	off_t before;

	snprintf(wal, sizeof(wal), "%s-wal", f->db);
	before = file_size(f->db);
	/* 6 MB: ~1500 pages, past SQLite's usual threshold of 1000 frames */
	for (uint32_t e = 1; e <= 6; e++)
		commit(s, job, e, 1.0 / e, MB);
	assert_true(file_size(wal) > 6 * MB);
	if (file_size(f->db) > before + MB)
		fail_msg("the commits checkpointed the WAL: the database grew from %lld to %lld bytes",
			 (long long)before, (long long)file_size(f->db));
	store_maintain(s);
	assert_true(file_size(f->db) > before + 6 * MB);
	/* below the threshold it does nothing */
	before = file_size(f->db);
	commit(s, job, 7, 0.1, 1024);
	store_maintain(s);
	assert_int_equal(file_size(f->db), before);
	assert_int_equal(store_integrity_check(s, NULL), 0);
	store_close(s);
}

/* ---- removal ----------------------------------------------------------- */

static int64_t rows_of(const char *db, const char *table, const char *col, int64_t job)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE %s = %lld", table, col, (long long)job);
	return raw_i64(db, sql);
}

/* A job goes with all its rows, in one transaction; the others stay as they
 * were; nothing can write rows for it afterwards. */
static void test_job_delete(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	struct store_removed r = { -1, -1, -1 };
	struct store_checkpoint ck;
	struct store_job j;
	int64_t a = new_job(s, -1), b = new_job(s, -1), c = new_job(s, 2);

	for (uint32_t e = 1; e <= 3; e++) {
		commit(s, a, e, 1.0 / e, 5000);
		commit(s, b, e, 1.0 / e, 7000);
	}
	assert_int_equal(try_position(s, b, 3, 5, &err), 0);
	commit(s, c, 1, 0.5, 3000);
	assert_int_equal(store_job_set_state(s, b, JOB_DONE, NULL, &err), 0);

	assert_int_equal(store_job_delete(s, b, &r, &err), 0);
	assert_int_equal(r.checkpoints, 4);                 /* 3 epochs + the position */
	assert_int_equal(r.checkpoint_bytes, 3 * 7000 + 1000);
	assert_int_equal(r.history_rows, 3);
	assert_int_equal(rows_of(f->db, "jobs", "id", b), 0);
	assert_int_equal(rows_of(f->db, "checkpoints", "job_id", b), 0);
	assert_int_equal(rows_of(f->db, "history", "job_id", b), 0);
	assert_int_equal(store_job_get(s, b, &j, &err), -ENOENT);
	assert_int_equal(store_latest_checkpoint(s, b, &ck, &err), -ENOENT);

	/* the others are untouched */
	assert_int_equal(history_len(s, a), 3);
	assert_int_equal(job_epoch(s, a), 3);
	assert_epoch_checkpoints(s, a, (uint32_t[]){ 1, 2, 3 }, 3);
	assert_int_equal(store_latest_checkpoint(s, a, &ck, &err), 0);
	assert_blob_is(&ck, 3, 0, 5000);
	store_checkpoint_clear(&ck);
	assert_int_equal(history_len(s, c), 1);

	/* gone for good: no second delete, and a late write (a commit that was
	 * in flight, a state change) creates nothing */
	assert_int_equal(store_job_delete(s, b, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no such job"));
	assert_int_equal(try_commit(s, b, 4, 0.1, 7000, &err), -ENOENT);
	assert_int_equal(try_position(s, b, 3, 9, &err), -ENOENT);
	assert_int_equal(store_job_set_state(s, b, JOB_KILLED, NULL, &err), -ENOENT);
	assert_int_equal(store_job_set_kill_after(s, b, 2, &err), -ENOENT);
	assert_int_equal(rows_of(f->db, "checkpoints", "job_id", b), 0);
	assert_int_equal(rows_of(f->db, "history", "job_id", b), 0);
	assert_int_equal(rows_of(f->db, "jobs", "id", b), 0);

	/* a job without any checkpoint or history */
	c = new_job(s, 1);
	assert_int_equal(store_job_delete(s, c, &r, &err), 0);
	assert_int_equal(r.checkpoints, 0);
	assert_int_equal(r.checkpoint_bytes, 0);
	assert_int_equal(r.history_rows, 0);
	assert_int_equal(store_integrity_check(s, &err), 0);
	store_close(s);
}

/* The next id is always above every id ever given, removed or not, across
 * reopening; SQLite's own choice (max(id) + 1) is refused by the trigger. */
static void test_job_ids_never_reused(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	int64_t a = new_job(s, 1), b = new_job(s, 1), c = new_job(s, 1), d;

	assert_true(a < b && b < c);
	assert_int_equal(store_job_delete(s, c, NULL, &err), 0);
	d = new_job(s, 1);
	assert_int_equal(d, c + 1);
	assert_int_equal(store_job_delete(s, a, NULL, &err), 0);
	assert_int_equal(store_job_delete(s, b, NULL, &err), 0);
	assert_int_equal(store_job_delete(s, d, NULL, &err), 0);
	assert_int_equal(raw_i64(f->db, "SELECT count(*) FROM jobs"), 0);
	store_close(s);
	s = open_store(f->db, false);
	assert_int_equal(new_job(s, 1), d + 1);
	assert_int_equal(new_job(s, 1), d + 2);
	assert_int_equal(store_job_delete(s, d + 2, NULL, &err), 0);
	store_close(s);
	/* what SQLite itself would pick now (max(id) + 1) is d + 2 again */

	{
		sqlite3 *db = raw_open(f->db);
		char sql[256];

		assert_int_equal(sqlite3_exec(db, "INSERT INTO jobs (name, config, state, epochs, created_at, "
					      "updated_at) VALUES ('x', '{}', 'queued', 1, 0, 0)",
					      NULL, NULL, NULL),
				 SQLITE_CONSTRAINT);
		assert_non_null(strstr(sqlite3_errmsg(db), "never reused"));
		snprintf(sql, sizeof(sql), "INSERT INTO jobs (id, name, config, state, epochs, created_at, "
			 "updated_at) VALUES (%lld, 'x', '{}', 'queued', 1, 0, 0)", (long long)c);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_CONSTRAINT);
		assert_int_equal(raw_i64_db(db, "SELECT count(*) FROM jobs"), 1);
		assert_int_equal(raw_i64_db(db, "SELECT id FROM job_id_high"), d + 2);
		assert_int_equal(sqlite3_close(db), SQLITE_OK);
	}
}

/* Removing jobs gives their pages back: the file does not keep growing
 * across create/remove cycles and ends near its size before them. */
static void test_delete_gives_space_back(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	sqlite3 *raw = raw_open(f->db);
	int64_t keep = new_job(s, -1);
	int64_t page_size = raw_i64_db(raw, "PRAGMA page_size");
	int64_t base, peak = 0;
	off_t base_file;

	commit(s, keep, 1, 0.5, 100000);
	base = raw_i64_db(raw, "PRAGMA page_count");
	assert_int_equal(sqlite3_close(raw), SQLITE_OK);
	store_close(s);
	base_file = file_size(f->db);
	s = open_store(f->db, false);
	raw = raw_open(f->db);
	for (int round = 0; round < 5; round++) {
		int64_t ids[8], pages;

		for (int i = 0; i < 8; i++) {
			ids[i] = new_job(s, -1);
			for (uint32_t e = 1; e <= 3; e++)
				commit(s, ids[i], e, 1.0, 200000);
		}
		pages = raw_i64_db(raw, "PRAGMA page_count");
		assert_true(pages * page_size > 8 * 3 * 200000);
		if (pages > peak)
			peak = pages;
		for (int i = 0; i < 8; i++)
			assert_int_equal(store_job_delete(s, ids[i], NULL, &err), 0);
		assert_int_equal(raw_i64_db(raw, "PRAGMA freelist_count"), 0);
		pages = raw_i64_db(raw, "PRAGMA page_count");
		if (pages > base + 8)
			fail_msg("round %d: %lld pages after removing, %lld before creating", round,
				 (long long)pages, (long long)base);
	}
	assert_int_equal(history_len(s, keep), 1);
	assert_int_equal(sqlite3_close(raw), SQLITE_OK);
	store_close(s);
	/* the last connection checkpointed the WAL into the file, truncated */
	if (file_size(f->db) > base_file + 8 * page_size)
		fail_msg("%lld bytes after the rounds, %lld before (peak %lld pages)",
			 (long long)file_size(f->db), (long long)base_file, (long long)peak);
}

/* Out of memory at every allocation of a removal: it fails whole (the job
 * and all its rows still there) or succeeds whole. */
static void test_delete_out_of_memory(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	sqlite3 *raw = raw_open(f->db);
	int64_t job = new_job(s, -1);
	long n, failures = 0;
	int rc;

	sqlite3_busy_timeout(raw, 0);
	commit(s, job, 1, 0.5, 20000);
	commit(s, job, 2, 0.6, 20000);
	assert_int_equal(try_position(s, job, 2, 3, &err), 0);
	for (n = 0;; n++) {
		bool hit;

		fault_arm(n);
		rc = store_job_delete(s, job, NULL, &err);
		hit = fault_disarm();
		if (rc == 0)
			break;
		assert_true(hit);
		assert_int_equal(err.code, rc);
		failures++;
		raw_exec_db(raw, "BEGIN IMMEDIATE; ROLLBACK;");   /* not left in a transaction */
		assert_int_equal(rows_of(f->db, "jobs", "id", job), 1);
		assert_int_equal(rows_of(f->db, "checkpoints", "job_id", job), 3);
		assert_int_equal(rows_of(f->db, "history", "job_id", job), 2);
		assert_true(n < 100000);
	}
	assert_true(failures > 5);
	assert_int_equal(rows_of(f->db, "jobs", "id", job), 0);
	assert_int_equal(rows_of(f->db, "checkpoints", "job_id", job), 0);
	assert_int_equal(rows_of(f->db, "history", "job_id", job), 0);
	assert_int_equal(sqlite3_close(raw), SQLITE_OK);
	assert_int_equal(store_integrity_check(s, &err), 0);
	store_close(s);
}

/* ---- concurrency ------------------------------------------------------- */

/* A reader sees the committed state while a writer holds a write
 * transaction; a second writer times out with -EBUSY; a read-only
 * connection cannot write. */
static void test_wal_reader(void **state)
{
	struct fx *f = *state;
	struct store *w = open_store(f->db, false);
	struct store *r;
	struct tr_err err = { 0 };
	struct store_job j;
	struct store_checkpoint ck;
	sqlite3 *raw;
	int64_t job = new_job(w, -1), id = 0;

	commit(w, job, 1, 0.5, 5000);
	raw = raw_open(f->db);
	raw_exec_db(raw, "BEGIN IMMEDIATE; UPDATE jobs SET name = 'uncommitted', epoch = 42;"
			 "DELETE FROM checkpoints;");

	r = open_store(f->db, true);
	assert_int_equal(store_job_get(r, job, &j, &err), 0);
	assert_string_equal(j.name, "mlp");
	assert_int_equal(j.epoch, 1);
	store_job_clear(&j);
	assert_int_equal(store_latest_checkpoint(r, job, &ck, &err), 0);
	assert_blob_is(&ck, 1, 0, 5000);
	store_checkpoint_clear(&ck);
	assert_int_equal(history_len(r, job), 1);

	/* the writer waits out busy_timeout (5 s), then gives up cleanly */
	assert_int_equal(try_commit(w, job, 2, 0.4, 100, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "locked"));

	raw_exec_db(raw, "ROLLBACK");
	assert_int_equal(sqlite3_close(raw), SQLITE_OK);
	commit(w, job, 2, 0.4, 100);
	assert_int_equal(job_epoch(r, job), 2);   /* the reader sees the new commit */

	assert_int_equal(store_job_create(r, "x", "{}", 1, 1, JOB_QUEUED, &id, &err), -EROFS);
	assert_int_equal(try_commit(r, job, 3, 0.3, 100, &err), -EROFS);
	assert_int_equal(store_integrity_check(r, &err), 0);
	store_close(r);
	store_close(w);
}

/* ---- faults ------------------------------------------------------------ */

static void test_disk_full(void **state)
{
	struct fx *f = *state;
	struct store *s;
	struct tr_err err = { 0 };
	struct store_checkpoint ck;
	char db[700];
	int64_t job;
	int rc;

	snprintf(f->mnt, sizeof(f->mnt), "%s/small", f->dir);
	assert_int_equal(mkdir(f->mnt, 0700), 0);
	if (mount("tmpfs", f->mnt, "tmpfs", 0, "size=2m,mode=0700") != 0) {
		fprintf(stderr, "cannot mount a 2 MB tmpfs (%s): skipping the disk-full test\n",
			strerror(errno));
		f->mnt[0] = '\0';
		skip();
	}
	snprintf(db, sizeof(db), "%s/traind.db", f->mnt);
	s = open_store(db, false);
	job = new_job(s, -1);
	for (uint32_t e = 1; e <= 3; e++)
		commit(s, job, e, 1.0 / e, 100 * 1024);
	assert_int_equal(try_position(s, job, 3, 4, &err), 0);

	rc = try_commit(s, job, 4, 0.1, 3 * MB, &err);
	assert_int_equal(rc, -ENOSPC);
	assert_int_equal(err.code, -ENOSPC);
	assert_non_null(strstr(err.msg, "full"));
	/* the connection is still usable and consistent */
	assert_int_equal(job_epoch(s, job), 3);
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
	assert_blob_is(&ck, 3, 4, 1000);
	store_checkpoint_clear(&ck);
	store_close(s);

	s = open_store(db, false);
	assert_int_equal(store_integrity_check(s, &err), 0);
	assert_int_equal(job_epoch(s, job), 3);
	assert_int_equal(history_len(s, job), 3);
	assert_int_equal(store_epoch_checkpoint(s, job, 3, &ck, &err), 0);
	assert_blob_is(&ck, 3, 0, 100 * 1024);
	store_checkpoint_clear(&ck);
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
	assert_blob_is(&ck, 3, 4, 1000);
	store_checkpoint_clear(&ck);
	/* a commit that fits goes through */
	commit(s, job, 4, 0.1, 100 * 1024);
	assert_int_equal(history_len(s, job), 4);
	store_close(s);
}

/* Fill the file system of `path` to the last block with a file there. */
static void fill_fs(const char *path)
{
	static char zeros[1 << 16];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	for (size_t chunk = sizeof(zeros); chunk >= 512; chunk /= 2)
		while (write(fd, zeros, chunk) == (ssize_t)chunk)
			;
	close(fd);
}

/* On a full disk a job's state still gets recorded: the write gives back
 * the reserve traind keeps beside the database (issue 21: "failed" was
 * lost, and a restart ran the job again). */
static void test_disk_full_state(void **state)
{
	struct fx *f = *state;
	struct store *s;
	struct store_job j;
	struct tr_err err = { 0 };
	char db[700], reserve[720], filler[720];
	struct stat st;
	sqlite3 *raw;
	int64_t job;

	snprintf(f->mnt, sizeof(f->mnt), "%s/small", f->dir);
	assert_int_equal(mkdir(f->mnt, 0700), 0);
	if (mount("tmpfs", f->mnt, "tmpfs", 0, "size=2m,mode=0700") != 0) {
		fprintf(stderr, "cannot mount a 2 MB tmpfs (%s): skipping the disk-full state test\n",
			strerror(errno));
		f->mnt[0] = '\0';
		skip();
	}
	snprintf(db, sizeof(db), "%s/traind.db", f->mnt);
	snprintf(reserve, sizeof(reserve), "%s-reserve", db);
	snprintf(filler, sizeof(filler), "%s/filler", f->mnt);
	s = open_store(db, false);
	assert_int_equal(stat(reserve, &st), 0);
	assert_true(st.st_blocks * 512 >= 256 * 1024);   /* allocated, not sparse */
	job = new_job(s, 3);
	/* an empty write-ahead log, so the write needs new blocks */
	raw = raw_open(db);
	raw_exec_db(raw, "PRAGMA wal_checkpoint(TRUNCATE)");
	assert_int_equal(sqlite3_close(raw), SQLITE_OK);
	fill_fs(filler);
	assert_int_equal(store_job_set_state(s, job, JOB_FAILED, "the disk is full", &err), 0);
	assert_true(store_reserve_spent(s));
	assert_false(store_reserve_spent(s));
	assert_int_not_equal(stat(reserve, &st), 0);
	store_close(s);

	/* durable: a new connection reads it */
	s = open_store(db, true);
	assert_int_equal(store_job_get(s, job, &j, &err), 0);
	assert_int_equal(j.state, JOB_FAILED);
	assert_string_equal(j.last_error, "the disk is full");
	store_job_clear(&j);
	store_close(s);

	/* room again: the next writer reserves it anew */
	assert_int_equal(unlink(filler), 0);
	s = open_store(db, false);
	assert_int_equal(stat(reserve, &st), 0);
	store_close(s);
}

static void test_integrity_corrupt(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	uint8_t junk[4096];
	int64_t root, page_size;
	int fd;

	for (int i = 0; i < 50; i++)
		new_job(s, -1);
	assert_int_equal(store_integrity_check(s, &err), 0);
	store_close(s);   /* checkpoints the WAL into the file */

	root = raw_i64(f->db, "SELECT rootpage FROM sqlite_master WHERE name = 'jobs_state'");
	page_size = raw_i64(f->db, "PRAGMA page_size");
	assert_true(root > 1);
	assert_true(page_size <= (int64_t)sizeof(junk));
	memset(junk, 0xa5, sizeof(junk));
	fd = open(f->db, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, junk, (size_t)page_size, (off_t)((root - 1) * page_size)),
			 page_size);
	close(fd);

	s = open_store(f->db, false);
	assert_int_equal(store_integrity_check(s, &err), -EIO);
	assert_int_equal(err.code, -EIO);
	assert_non_null(strstr(err.msg, "integrity check: "));
	store_close(s);
}

/* Every allocation SQLite makes during an epoch commit, a position save,
 * a drop and an open fails in turn: each attempt must fail cleanly (an error,
 * no leak, no transaction left open, nothing half-written) until the memory
 * suffices and it goes through. */
static void test_out_of_memory(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false), *s2;
	struct tr_err err = { 0 };
	struct store_checkpoint ck;
	char fresh[700];
	sqlite3 *raw = raw_open(f->db);
	int64_t job = new_job(s, 1);
	long n, failures = 0;
	int rc;

	sqlite3_busy_timeout(raw, 0);
	commit(s, job, 1, 0.5, 20000);
	commit(s, job, 2, 0.6, 20000);
	assert_int_equal(try_position(s, job, 2, 3, &err), 0);

	for (n = 0;; n++) {
		bool hit;

		fault_arm(n);
		rc = try_commit(s, job, 3, 0.4, 20000, &err);
		hit = fault_disarm();
		if (rc == 0)
			break;
		assert_true(hit);
		assert_true(rc < 0);
		assert_int_equal(err.code, rc);
		failures++;
		/* not stuck in a write transaction, nothing changed */
		raw_exec_db(raw, "BEGIN IMMEDIATE; ROLLBACK;");
		assert_int_equal(job_epoch(s, job), 2);
		assert_int_equal(history_len(s, job), 2);
		assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
		assert_blob_is(&ck, 2, 3, 1000);
		store_checkpoint_clear(&ck);
		assert_true(n < 100000);
	}
	assert_true(failures > 10);
	assert_int_equal(history_len(s, job), 3);

	for (n = 0;; n++) {
		fault_arm(n);
		rc = try_position(s, job, 3, 7, &err);
		fault_disarm();
		if (rc == 0)
			break;
		raw_exec_db(raw, "BEGIN IMMEDIATE; ROLLBACK;");
		assert_int_equal(raw_i64_db(raw, "SELECT count(*) FROM checkpoints WHERE "
						 "kind = 'position'"), 0);
	}
	assert_int_equal(store_latest_checkpoint(s, job, &ck, &err), 0);
	for (n = 0;; n++) {
		fault_arm(n);
		rc = store_drop_checkpoint(s, job, ck.id, &err);
		fault_disarm();
		if (rc == 0)
			break;
		raw_exec_db(raw, "BEGIN IMMEDIATE; ROLLBACK;");
		assert_int_equal(raw_i64_db(raw, "SELECT count(*) FROM checkpoints WHERE "
						 "kind = 'position'"), 1);
	}
	store_checkpoint_clear(&ck);

	snprintf(fresh, sizeof(fresh), "%s/fresh.db", f->dir);
	for (n = 0;; n++) {
		s2 = NULL;
		fault_arm(n);
		rc = store_open(&s2, fresh, false, &err);
		fault_disarm();
		if (rc == 0)
			break;
		assert_null(s2);
		assert_true(rc < 0);
	}
	assert_int_equal(store_schema_version(s2), store_schema_version_known());
	assert_int_equal(store_integrity_check(s2, &err), 0);
	store_close(s2);

	assert_int_equal(sqlite3_close(raw), SQLITE_OK);
	assert_int_equal(store_integrity_check(s, &err), 0);
	store_close(s);
}

/* The sweep section's readers (store_sweep_list, store_sweep_trials, one
 * select_rows each): every sweep by id with its spec and state, a sweep's
 * trials by number with their job's committed state and the metric at its
 * last epoch, an unknown metric refused; under an SQLite allocation
 * failure each fails cleanly (nothing returned) or answers in full. */
static void test_sweep_rows(void **state)
{
	struct fx *f = *state;
	struct store *s = open_store(f->db, false);
	struct tr_err err = { 0 };
	struct store_new_job nj[3];
	const char *params[3] = { "{\"lr\":0.1}", "{\"lr\":0.2}", "{\"lr\":0.3}" };
	struct store_sweep *sw = NULL;
	struct store_trial *tr = NULL;
	int64_t sid[2], jobs[2][3];
	size_t n = 0;
	long k;
	int rc;

	for (int i = 0; i < 3; i++)
		nj[i] = (struct store_new_job){ .name = "t", .config_json = "{}", .epochs = 2, .keep = -1 };
	assert_int_equal(store_sweep_create(s, "a", "{\"searcher\":\"grid\"}", nj, params, 3, &sid[0], jobs[0],
					    &err), 0);
	assert_int_equal(store_sweep_create(s, "b", "{\"searcher\":\"random\"}", nj, params, 2, &sid[1], jobs[1],
					    &err), 0);
	assert_int_equal(store_sweep_set_state(s, sid[1], "paused", &err), 0);
	commit(s, jobs[0][1], 1, 0.75, 1000);

	assert_int_equal(store_sweep_list(s, &sw, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(sw[0].id, sid[0]);
	assert_string_equal(sw[0].name, "a");
	assert_string_equal(sw[0].spec, "{\"searcher\":\"grid\"}");
	assert_false(sw[0].paused || sw[0].killed);
	assert_int_equal(sw[1].id, sid[1]);
	assert_true(sw[1].paused && !sw[1].killed);
	store_sweeps_free(sw, n);

	assert_int_equal(store_sweep_trials(s, sid[0], "val_loss", &tr, &n, &err), 0);
	assert_int_equal(n, 3);
	for (uint32_t i = 0; i < 3; i++) {
		assert_int_equal(tr[i].trial, i);
		assert_int_equal(tr[i].job, jobs[0][i]);
		assert_string_equal(tr[i].params, params[i]);
		assert_int_equal(tr[i].epochs, 2);
		assert_int_equal(tr[i].epoch, i == 1 ? 1 : 0);
		assert_int_equal(tr[i].has_metric, i == 1);
	}
	assert_true(tr[1].metric == 0.75);
	assert_int_equal(tr[0].state, JOB_QUEUED);
	store_trials_free(tr, n);
	assert_int_equal(store_sweep_trials(s, sid[1], "val_acc", &tr, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_false(tr[0].has_metric);
	store_trials_free(tr, n);
	assert_int_equal(store_sweep_trials(s, 999, "val_loss", &tr, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_null(tr);
	tr = (struct store_trial *)&n;
	assert_int_equal(store_sweep_trials(s, sid[0], "epoch; DROP TABLE jobs", &tr, &n, &err), -EINVAL);
	assert_null(tr);
	assert_non_null(strstr(err.msg, "unknown metric"));

	for (k = 0;; k++) {
		fault_arm(k);
		rc = store_sweep_list(s, &sw, &n, &err);
		fault_disarm();
		if (rc == 0)
			break;
		assert_true(rc < 0);
		assert_null(sw);
		assert_int_equal(n, 0);
		assert_true(k < 100000);
	}
	assert_int_equal(n, 2);
	store_sweeps_free(sw, n);
	for (k = 0;; k++) {
		fault_arm(k);
		rc = store_sweep_trials(s, sid[0], "val_loss", &tr, &n, &err);
		fault_disarm();
		if (rc == 0)
			break;
		assert_true(rc < 0);
		assert_null(tr);
		assert_true(k < 100000);
	}
	assert_int_equal(n, 3);
	assert_true(tr[1].has_metric && tr[1].metric == 0.75);
	store_trials_free(tr, n);
	store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fresh_db, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_create_from, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_db_migrates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1_db_upgrades, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_applied_migration_wal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_applied_migration_rollback_journal, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dataset_digests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_epoch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_atomic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_create_at, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_keep2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_keep_all_and_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_nan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_regression_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_best_by_monitor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_positions_and_latest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drop_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incremental_vacuum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_checkpoint_in_maintain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_ids_never_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_gives_space_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_out_of_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_integrity_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
	};

	install_fault_allocator();

	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
