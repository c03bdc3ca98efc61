/*
 * store.c - traind's SQLite database. See daemon/store/store.h.
 *
 * Design
 *
 * One struct store is one SQLite connection (opened SQLITE_OPEN_NOMUTEX: the
 * caller guarantees one thread at a time). The daemon has one writer
 * connection; readers open their own read-only connections, which WAL lets
 * run next to the writer without blocking it or seeing its uncommitted work.
 *
 * Open: busy_timeout and foreign_keys on every connection. A writer first
 * refuses, before changing anything, a database of a newer schema or one with
 * tables but user_version 0 (not ours). Then it sets auto_vacuum=INCREMENTAL
 * on a database without any schema object (with a VACUUM when the file
 * already has pages and so ignores the pragma), journal_mode=WAL (verified: a
 * file system without shared memory would silently keep the rollback
 * journal), synchronous=FULL (a commit survives power loss), a cap on the idle
 * WAL file and secure_delete=FAST (Debian builds SQLite with SECURE_DELETE;
 * zeroing every freed page of a pruned blob just before incremental_vacuum
 * truncates it would double the I/O). A writer checkpoints its WAL in
 * store_maintain, which its owner calls between requests (the store thread:
 * after it has reported the commit), instead of inside the commit that
 * crossed the threshold: that copy of ~1000 pages plus an fsync of the
 * database doubled an epoch commit's latency every other epoch. The commit
 * itself is durable once its WAL frames are synced (synchronous=FULL); the
 * checkpoint only moves them into the database file, itself crash-safe.
 *
 * Epoch commits write the new blob last in their transaction, after the
 * position and retention deletes, so it fills the pages those just freed:
 * the file does not grow by a blob and shrink back, and the incremental
 * vacuum after it has nothing to move (it used to move the new blob, ~650
 * pages, into the old one's place, in a second synced transaction).
 *
 * Migrations (tools/embed-migrations.py embeds migrations/NNNN_*.sql as
 * store_migrations[], version i + 1 at index i): each pending one runs in its
 * own BEGIN IMMEDIATE transaction together with PRAGMA user_version = N, and
 * the version is re-read inside the transaction, so concurrent openers and a
 * crash mid-migration are both harmless. A version above the known one is
 * refused; a read-only connection migrates nothing and wants the exact version.
 * Migrations run with foreign_keys=ON (it cannot change inside a transaction):
 * a table rebuild must use PRAGMA defer_foreign_keys.
 *
 * Invariants (per job), kept by doing every change in one transaction:
 *   - jobs.epoch == number of history rows == the highest history epoch, and
 *     the history epochs are 1..jobs.epoch (store_commit_epoch only appends
 *     jobs.epoch + 1; store_drop_checkpoint only truncates);
 *   - epoch checkpoint N exists only together with history row N, and the
 *     newest epoch checkpoint is never pruned (retention keeps at least one
 *     even with keep = 0), so the history ends at the newest checkpoint;
 *   - at most one position checkpoint, at epoch == jobs.epoch; the next epoch
 *     commit deletes it.
 *
 * Removal (store_job_delete): the job's history, checkpoints and row in one
 * transaction, then an incremental vacuum, so the file shrinks back (at the
 * next WAL checkpoint) instead of keeping the free pages. Ids come from
 * job_id_high (migration 0003), never from SQLite's max(id) + 1, so a
 * removed job's id is never given again.
 *
 * A full disk: the write that records a job's state (failed, above all, so
 * that a restart does not run again a job that cannot run) has a reserve.
 * A writer keeps a file of STORE_RESERVE_BYTES beside the database
 * (DB-reserve, allocated with posix_fallocate, so not sparse); when a state
 * write finds the disk full, the reserve is deleted, which gives its blocks
 * back for the write-ahead log's few frames, and the write is retried once.
 * store_maintain allocates it again once there is room (at most every
 * STORE_RESERVE_RETRY_S). Epoch commits never touch it: they fail first.
 * This is CockroachDB's emergency ballast (auxiliary/EMERGENCY_BALLAST),
 * sized for one small transaction.
 *
 * Errors: SQLite result codes never leave this file. errno_of() maps them;
 * every failure fills tr_err with "what we were doing: sqlite3_errmsg()".
 * The message is taken before any ROLLBACK, which would overwrite it.
 *
 * Style: values only ever reach SQL as bound parameters; the one formatted
 * statement is PRAGMA user_version = N with N from the embedded table. Every
 * function finalizes its statements at its single exit label, and a function
 * that opens a transaction ends it there too (txn_end: COMMIT on success,
 * ROLLBACK otherwise).
 */
#include "daemon/store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "migrations.h"

#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_RESERVE_BYTES (256u << 10)   /* a state write's WAL frames, many times over */
#define STORE_RESERVE_RETRY_S 10

struct store {
	sqlite3 *db;             /* the connection; owned */
	sqlite3_stmt *rollback;  /* "ROLLBACK", prepared once opened: undoing a failed
				  * transaction must not need memory; owned */
	bool readonly;           /* opened SQLITE_OPEN_READONLY: no migrations, writes fail -EROFS */
	int wal_frames;          /* frames in the WAL after the last commit (wal_hook) */
	char *reserve;           /* writers: DB-reserve, the full disk's reserve (see the top); owned */
	bool reserved;           /* it is there, whole */
	bool reserve_spent;      /* a state write used it (store_reserve_spent) */
	int64_t reserve_tried;   /* when it was last allocated (unix seconds) */
};

/* WAL checkpoints: store_maintain copies the WAL into the database once it
 * holds this many frames (SQLite's own default threshold), after the commit
 * its caller reported; the hook does it inside the commit only past the hard
 * cap, for a writer whose owner never calls store_maintain. */
#define STORE_WAL_CHECKPOINT_FRAMES 1000
#define STORE_WAL_HARD_FRAMES 8000

/* Column lists shared by the queries and the row readers below. */
#define JOB_COLUMNS \
	"id, name, state, config, last_error, keep, epochs, epoch, created_at, updated_at, kill_after, " \
	"dataset_digest, origin, started_at"
#define CHECKPOINT_COLUMNS \
	"id, job_id, epoch, step, kind, val_loss, size, checksum, created_at, score"
#define HISTORY_COLUMNS \
	"epoch, train_loss, train_acc, train_macro_acc, val_loss, val_acc, val_macro_acc, " \
	"seconds, note, lr, grad_norm, val_mae, val_rmse, val_ppl"

/* ---- errors ------------------------------------------------------------ */

/* The project's errno code for an SQLite (extended) result code. */
static int errno_of(sqlite3 *db, int rc)
{
	int sys = db ? sqlite3_system_errno(db) : 0;

	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_IOERR:
		return sys == ENOSPC || sys == EDQUOT ? -ENOSPC : -EIO;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_PROTOCOL:
		return -EIO;
	case SQLITE_CANTOPEN:
		return sys == ENOENT || sys == EACCES || sys == EPERM || sys == EROFS ||
				       sys == ENOTDIR || sys == EISDIR
			       ? -sys
			       : -EIO;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_INTERRUPT:
		return -EINTR;
	case SQLITE_CONSTRAINT:
		switch (rc) {
		case SQLITE_CONSTRAINT_UNIQUE:
		case SQLITE_CONSTRAINT_PRIMARYKEY:
		case SQLITE_CONSTRAINT_ROWID:
			return -EEXIST;
		case SQLITE_CONSTRAINT_FOREIGNKEY:
			return -ENOENT;
		default:   /* CHECK, NOT NULL, a trigger's RAISE, ... */
			return -EINVAL;
		}
	case SQLITE_TOOBIG:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
	case SQLITE_MISUSE:
		return -EINVAL;
	default:   /* SQLITE_ERROR (e.g. a table missing), SQLITE_SCHEMA, ... */
		return -EIO;
	}
}

/* Fill err from the connection's last error; returns the errno code. */
static int db_fail(struct store *s, int rc, struct tr_err *err, const char *ctx)
{
	return tr_err_set(err, errno_of(s->db, rc), "%s: %s", ctx, sqlite3_errmsg(s->db));
}

/* ---- statements -------------------------------------------------------- */

static int prepare(struct store *s, sqlite3_stmt **st, const char *sql, struct tr_err *err,
		   const char *ctx)
{
	int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);

	if (rc != SQLITE_OK)
		return db_fail(s, rc, err, ctx);
	return 0;
}

/* Step a statement: 1 for a row, 0 when done, else a negative errno. */
static int next_row(struct store *s, sqlite3_stmt *st, struct tr_err *err, const char *ctx)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return db_fail(s, rc, err, ctx);
}

/* Bind int64 parameters ?1..?n. */
static int bind_i64s(struct store *s, sqlite3_stmt *st, const int64_t *args, int n,
		     struct tr_err *err, const char *ctx)
{
	for (int i = 0; i < n; i++) {
		int rc = sqlite3_bind_int64(st, i + 1, args[i]);

		if (rc != SQLITE_OK)
			return db_fail(s, rc, err, ctx);
	}
	return 0;
}

/* A statement parameter's value, for bind_values: SQLV_I64, SQLV_REAL (NaN
 * binds NULL), SQLV_TEXT (NULL binds NULL; SQLV_TEXTN: at most n bytes),
 * SQLV_BLOB (NULL binds an empty blob), SQLV_NULL. Text and blobs are bound
 * SQLITE_STATIC: they must outlive the statement's step. */
struct sqlv {
	enum { SQLV_NULL_, SQLV_INT_, SQLV_REAL_, SQLV_TEXT_, SQLV_BLOB_ } kind;
	int64_t i;
	double r;
	const void *p;
	int n;   /* text: -1 up to the NUL, else that many bytes; blob: its size */
};

#define SQLV_NULL { .kind = SQLV_NULL_ }
#define SQLV_I64(x) { .kind = SQLV_INT_, .i = (int64_t)(x) }
#define SQLV_REAL(x) { .kind = SQLV_REAL_, .r = (x) }
#define SQLV_TEXT(x) { .kind = SQLV_TEXT_, .p = (x), .n = -1 }
#define SQLV_TEXTN(x, len) { .kind = SQLV_TEXT_, .p = (x), .n = (int)(len) }
#define SQLV_BLOB(x, len) { .kind = SQLV_BLOB_, .p = (x), .n = (int)(len) }

/* Bind v[0..n) to parameters ?first..?first+n-1. */
static int bind_values(struct store *s, sqlite3_stmt *st, int first, const struct sqlv *v, int n,
		       struct tr_err *err, const char *ctx)
{
	for (int k = 0; k < n; k++) {
		int col = first + k, rc;

		switch (v[k].kind) {
		case SQLV_INT_:
			rc = sqlite3_bind_int64(st, col, v[k].i);
			break;
		case SQLV_REAL_:
			rc = isnan(v[k].r) ? sqlite3_bind_null(st, col) : sqlite3_bind_double(st, col, v[k].r);
			break;
		case SQLV_TEXT_:
			rc = v[k].p ? sqlite3_bind_text(st, col, v[k].p, v[k].n, SQLITE_STATIC)
				    : sqlite3_bind_null(st, col);
			break;
		case SQLV_BLOB_:
			rc = v[k].p ? sqlite3_bind_blob64(st, col, v[k].p, (sqlite3_uint64)v[k].n, SQLITE_STATIC)
				    : sqlite3_bind_zeroblob(st, col, 0);
			break;
		default:
			rc = sqlite3_bind_null(st, col);
			break;
		}
		if (rc != SQLITE_OK)
			return db_fail(s, rc, err, ctx);
	}
	return 0;
}

/* Run SQL without parameters or results (may hold several statements). */
static int exec(struct store *s, const char *sql, struct tr_err *err, const char *ctx)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return db_fail(s, rc, err, ctx);
	return 0;
}

/* Step a prepared statement that returns no rows, once its parameters are
 * bound (bound: 0, or the binding's negative errno), and finalize it. The
 * number of rows it changed, or a negative errno. */
static int step_done(struct store *s, sqlite3_stmt *st, int bound, struct tr_err *err,
		     const char *ctx)
{
	int rc = bound;

	if (rc == 0) {
		rc = next_row(s, st, err, ctx);
		if (rc == 0)
			rc = sqlite3_changes(s->db);
		else if (rc > 0)
			rc = tr_err_set(err, -EIO, "%s: unexpected result row", ctx);
	}
	sqlite3_finalize(st);
	return rc;
}

/* Run one statement with int64 parameters ?1..?n and no result rows.
 * Returns the number of rows it changed, or a negative errno. */
static int exec_i64(struct store *s, const char *sql, const int64_t *args, int n,
		    struct tr_err *err, const char *ctx)
{
	sqlite3_stmt *st = NULL;
	int rc = prepare(s, &st, sql, err, ctx);

	return rc < 0 ? rc : step_done(s, st, bind_i64s(s, st, args, n, err, ctx), err, ctx);
}

/* The same with parameters of any type (struct sqlv). */
static int exec_values(struct store *s, const char *sql, const struct sqlv *v, int n,
		       struct tr_err *err, const char *ctx)
{
	sqlite3_stmt *st = NULL;
	int rc = prepare(s, &st, sql, err, ctx);

	return rc < 0 ? rc : step_done(s, st, bind_values(s, st, 1, v, n, err, ctx), err, ctx);
}

/* The first column of the first row of a query with int64 parameters.
 * -ENOENT (message not set) when there is no row. */
static int query_i64(struct store *s, const char *sql, const int64_t *args, int n, int64_t *out,
		     struct tr_err *err, const char *ctx)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prepare(s, &st, sql, err, ctx);
	if (rc < 0)
		goto out;
	rc = bind_i64s(s, st, args, n, err, ctx);
	if (rc < 0)
		goto out;
	rc = next_row(s, st, err, ctx);
	if (rc == 0) {
		rc = -ENOENT;
	} else if (rc > 0) {
		*out = sqlite3_column_int64(st, 0);
		rc = 0;
	}
out:
	sqlite3_finalize(st);
	return rc;
}

/* The first column of a pragma's first row, as text. */
static int pragma_text(struct store *s, const char *sql, char *buf, size_t size, struct tr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prepare(s, &st, sql, err, sql);
	if (rc < 0)
		goto out;
	rc = next_row(s, st, err, sql);
	if (rc == 0) {
		rc = tr_err_set(err, -EIO, "%s: returned nothing", sql);
	} else if (rc > 0) {
		const unsigned char *t = sqlite3_column_text(st, 0);

		snprintf(buf, size, "%s", t ? (const char *)t : "");
		rc = 0;
	}
out:
	sqlite3_finalize(st);
	return rc;
}

static int pragma_i64(struct store *s, const char *sql, int64_t *out, struct tr_err *err)
{
	int rc = query_i64(s, sql, NULL, 0, out, err, sql);

	if (rc == -ENOENT)
		rc = tr_err_set(err, -EIO, "%s: returned nothing", sql);
	return rc;
}

static double column_real(sqlite3_stmt *st, int col)
{
	return sqlite3_column_type(st, col) == SQLITE_NULL ? NAN : sqlite3_column_double(st, col);
}

static int64_t now_unix(void)
{
	return (int64_t)time(NULL);
}

/* ---- transactions ------------------------------------------------------ */

static void txn_rollback(struct store *s)
{
	/* After SQLITE_FULL, IOERR, NOMEM, ... SQLite may have rolled back
	 * already; ROLLBACK would then only fail. */
	if (sqlite3_get_autocommit(s->db))
		return;
	if (s->rollback) {
		sqlite3_step(s->rollback);
		sqlite3_reset(s->rollback);
	} else {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	}
}

/* Before a write outside txn_begin (one autocommit statement): a failed
 * ROLLBACK (out of memory) may have left the last transaction open, and the
 * write would join it and be rolled back with it at the next txn_begin. */
static void autocommit_begin(struct store *s)
{
	txn_rollback(s);
}

/* Writing on into a deleted or replaced file would lose every commit. */
static int check_not_moved(struct store *s, struct tr_err *err, const char *ctx)
{
	int moved = 0;

	if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK && moved)
		return tr_err_set(err, -EIO, "%s: the database file was deleted or replaced while "
				  "traind had it open; restart traind", ctx);
	return 0;
}

static int txn_begin(struct store *s, struct tr_err *err, const char *ctx)
{
	txn_rollback(s);   /* no-op, unless a failed ROLLBACK left one open */
	if (check_not_moved(s, err, ctx) < 0)
		return -EIO;
	return exec(s, "BEGIN IMMEDIATE", err, ctx);
}

/* End the transaction begun by txn_begin: COMMIT when rc == 0 (rolling back
 * if that fails), else ROLLBACK. Returns the final result. */
static int txn_end(struct store *s, int rc, struct tr_err *err, const char *ctx)
{
	if (rc == 0)
		rc = exec(s, "COMMIT", err, ctx);
	if (rc < 0)
		txn_rollback(s);
	return rc;
}

/* Give the free pages back to the file system. Its own small write
 * transaction, after the commit that freed them; failure only leaves them in
 * the free list for the next insert, so it is ignored. */
static void vacuum_free_pages(struct store *s)
{
	sqlite3_exec(s->db, "PRAGMA incremental_vacuum", NULL, NULL, NULL);
	txn_rollback(s);
}

/* ---- open, migrations -------------------------------------------------- */

int store_schema_version_known(void)
{
	return store_migration_count;
}

static int version_refused(int64_t v, struct tr_err *err)
{
	return tr_err_set(err, -EINVAL,
			  "database schema version %" PRId64
			  " is newer than this traind (knows up to %d); upgrade traind",
			  v, store_schema_version_known());
}

/* Apply migration m (version m->version) if the database is still just below
 * it, in one transaction with the version bump. */
static int apply_migration(struct store *s, const struct store_migration *m, struct tr_err *err)
{
	char ctx[96];
	char bump[48];
	int64_t v = 0;
	int rc;

	snprintf(ctx, sizeof(ctx), "schema migration %s", m->name);
	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	/* Re-read under the write lock: another opener may have been first. */
	rc = pragma_i64(s, "PRAGMA user_version", &v, err);
	if (rc < 0 || v >= m->version)
		goto out;
	if (v != m->version - 1) {
		rc = tr_err_set(err, -EINVAL, "%s: database is at schema version %" PRId64
				", expected %d", ctx, v, m->version - 1);
		goto out;
	}
	rc = exec(s, m->sql, err, ctx);
	if (rc < 0)
		goto out;
	if (sqlite3_get_autocommit(s->db)) {
		/* Only a migration that ends the transaction itself gets here
		 * (embed-migrations.py refuses those). */
		rc = tr_err_set(err, -EINVAL, "%s: the migration ended its transaction", ctx);
		goto out;
	}
	snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", m->version);
	rc = exec(s, bump, err, ctx);
out:
	return txn_end(s, rc, err, ctx);
}

static int migrate(struct store *s, struct tr_err *err)
{
	int known = store_schema_version_known();
	int64_t v = 0;
	int rc;

	rc = pragma_i64(s, "PRAGMA user_version", &v, err);
	if (rc < 0)
		return rc;
	if (v > known)
		return version_refused(v, err);
	if (v < 0)
		return tr_err_set(err, -EINVAL, "database schema version %" PRId64 " is not traind's", v);
	for (int64_t i = v; i < known; i++) {
		rc = apply_migration(s, &store_migrations[i], err);
		if (rc < 0)
			return rc;
	}
	/* Someone may have moved it on between our checks. */
	rc = pragma_i64(s, "PRAGMA user_version", &v, err);
	if (rc == 0 && v != known)
		rc = v > known ? version_refused(v, err)
			       : tr_err_set(err, -EIO, "database schema version %" PRId64
					    " after migrating to %d", v, known);
	return rc;
}

static int check_version(struct store *s, struct tr_err *err)
{
	int known = store_schema_version_known();
	int64_t v = 0;
	int rc;

	rc = pragma_i64(s, "PRAGMA user_version", &v, err);
	if (rc < 0)
		return rc;
	if (v > known)
		return version_refused(v, err);
	if (v != known)
		return tr_err_set(err, -EINVAL,
				  "database schema version %" PRId64 " is older than this traind's %d; "
				  "open it read-write (start traind) to migrate it",
				  v, known);
	return 0;
}

/* Before a writer changes anything: refuse a newer schema, and a file with
 * tables but no schema version (someone else's database). *objects: the
 * number of schema objects. */
static int preflight(struct store *s, int64_t *objects, struct tr_err *err)
{
	int64_t v = 0;
	int rc;

	rc = pragma_i64(s, "PRAGMA user_version", &v, err);
	if (rc == 0)
		rc = pragma_i64(s, "SELECT count(*) FROM sqlite_master", objects, err);
	if (rc < 0)
		return rc;
	if (v > store_schema_version_known())
		return version_refused(v, err);
	if (v == 0 && *objects > 0)
		return tr_err_set(err, -EINVAL, "database has %" PRId64 " schema objects but no "
				  "schema version: not a traind database", *objects);
	return 0;
}

/* auto_vacuum can only be chosen before the first table exists. */
static int set_auto_vacuum(struct store *s, struct tr_err *err)
{
	int64_t mode = 0;
	int rc;

	rc = exec(s, "PRAGMA auto_vacuum = INCREMENTAL", err, "PRAGMA auto_vacuum");
	if (rc == 0)
		rc = pragma_i64(s, "PRAGMA auto_vacuum", &mode, err);
	if (rc < 0 || mode == 2)
		return rc;
	/* The file has pages already (it was created, but never given a
	 * table): the mode only changes by rebuilding it, cheap while empty. */
	rc = exec(s, "VACUUM", err, "VACUUM (to set auto_vacuum)");
	if (rc == 0)
		rc = pragma_i64(s, "PRAGMA auto_vacuum", &mode, err);
	if (rc == 0 && mode != 2)
		rc = tr_err_set(err, -EIO, "PRAGMA auto_vacuum is %" PRId64 " after VACUUM, not 2", mode);
	return rc;
}

static int configure(struct store *s, struct tr_err *err)
{
	int64_t objects = 0;
	char mode[32];
	int rc;

	rc = sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
	if (rc != SQLITE_OK)
		return db_fail(s, rc, err, "busy_timeout");
	rc = exec(s, "PRAGMA foreign_keys = ON", err, "PRAGMA foreign_keys");
	if (rc < 0 || s->readonly)
		return rc;
	rc = preflight(s, &objects, err);
	if (rc == 0 && objects == 0)
		rc = set_auto_vacuum(s, err);
	if (rc < 0)
		return rc;
	rc = pragma_text(s, "PRAGMA journal_mode = WAL", mode, sizeof(mode), err);
	if (rc < 0)
		return rc;
	if (strcasecmp(mode, "wal") != 0)
		return tr_err_set(err, -EINVAL,
				  "journal_mode is '%s', not 'wal' (a file system without shared memory?)",
				  mode);
	rc = exec(s, "PRAGMA synchronous = FULL", err, "PRAGMA synchronous");
	if (rc == 0)
		rc = exec(s, "PRAGMA journal_size_limit = 67108864", err,   /* 64 MiB */
			  "PRAGMA journal_size_limit");
	if (rc == 0)
		rc = exec(s, "PRAGMA secure_delete = FAST", err, "PRAGMA secure_delete");
	return rc;
}

/* SQLite calls this after each commit of the writer (instead of its
 * automatic checkpoint, which it replaces): remember the WAL's size. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct store *s = arg;

	s->wal_frames = frames;
	if (frames >= STORE_WAL_HARD_FRAMES)
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	return SQLITE_OK;
}

/* Allocate the reserve (again); a partial one keeps what it got. */
static void reserve_make(struct store *s)
{
	int fd;

	s->reserve_tried = time(NULL);
	fd = open(s->reserve, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	s->reserved = posix_fallocate(fd, 0, STORE_RESERVE_BYTES) == 0;
	close(fd);
}

/* Give the reserve's blocks back to the file system. */
static bool reserve_release(struct store *s)
{
	if (!s->reserve || !s->reserved)
		return false;
	s->reserved = false;
	return unlink(s->reserve) == 0;
}

void store_maintain(struct store *s)
{
	int log = 0, done = 0;

	if (s && s->reserve && !s->reserved && time(NULL) - s->reserve_tried >= STORE_RESERVE_RETRY_S)
		reserve_make(s);
	if (!s || s->readonly || s->wal_frames < STORE_WAL_CHECKPOINT_FRAMES)
		return;
	/* PASSIVE: never waits for readers; what it could not copy now, the
	 * next call copies. */
	if (sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) == SQLITE_OK &&
	    done >= log)
		s->wal_frames = 0;
}

int store_open(struct store **out, const char *path, bool readonly, struct tr_err *err)
{
	struct store *s = NULL;
	int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
		    SQLITE_OPEN_NOMUTEX;
	int rc;

	if (!out || !path || !*path)
		return tr_err_set(err, -EINVAL, "store_open: no database path");
	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return tr_err_set(err, -ENOMEM, "out of memory");
	s->readonly = readonly;
	rc = sqlite3_open_v2(path, &s->db, flags, NULL);
	if (rc != SQLITE_OK) {
		rc = s->db ? db_fail(s, rc, err, "opening the database")
			   : tr_err_set(err, -ENOMEM, "opening the database: out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	rc = configure(s, err);
	if (rc < 0)
		goto fail;
	rc = readonly ? check_version(s, err) : migrate(s, err);
	if (rc < 0)
		goto fail;
	/* After the migrations, whose schema changes would expire it. */
	rc = prepare(s, &s->rollback, "ROLLBACK", err, "preparing ROLLBACK");
	if (rc < 0)
		goto fail;
	if (!readonly) {
		sqlite3_wal_hook(s->db, wal_hook, s);
		if (asprintf(&s->reserve, "%s-reserve", path) < 0)
			s->reserve = NULL;
		else
			reserve_make(s);
	}
	*out = s;
	return 0;
fail:
	store_close(s);
	return rc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	/* Every other statement is finalized where it was prepared, so this
	 * closes. */
	sqlite3_finalize(s->rollback);
	sqlite3_close(s->db);
	free(s->reserve);
	free(s);
}

int store_schema_version(struct store *s)
{
	int64_t v = 0;
	int rc = pragma_i64(s, "PRAGMA user_version", &v, NULL);

	return rc < 0 ? rc : (int)v;
}

/* ---- jobs -------------------------------------------------------------- */

/* The jobs.state column's text of each enum job_state (the schema's CHECK
 * lists the same): the one place a state is text on its way to SQL. */
static const char *const state_text[JOB_STATE_COUNT] = {
	[JOB_QUEUED] = "queued", [JOB_RUNNING] = "running", [JOB_PAUSED] = "paused",
	[JOB_KILLED] = "killed", [JOB_FAILED] = "failed", [JOB_DONE] = "done",
};

/* The column's text of `st`; NULL for a value that is not a state. */
static const char *state_column(enum job_state st)
{
	return (unsigned)st < JOB_STATE_COUNT ? state_text[st] : NULL;
}

/* The state a column's text holds. The schema's CHECK admits only the
 * texts above; anything else (a database written around it) reads as
 * failed, so the job is shown and can be resumed or removed. */
static enum job_state state_from_column(const unsigned char *text)
{
	for (int i = 0; text && i < JOB_STATE_COUNT; i++)
		if (strcmp((const char *)text, state_text[i]) == 0)
			return (enum job_state)i;
	return JOB_FAILED;
}

static int check_job_args(const char *name, const char *config_json, enum job_state state,
			  struct tr_err *err, const char *ctx)
{
	if (!name || strnlen(name, STORE_NAME_MAX) >= STORE_NAME_MAX)
		return tr_err_set(err, -EINVAL, "%s: the name must be shorter than %d bytes", ctx,
				  STORE_NAME_MAX);
	if (!config_json || !state_column(state))
		return tr_err_set(err, -EINVAL, "%s: no configuration or state", ctx);
	return 0;
}

/* INSERT the job row (arguments checked); its id into *id. */
static int insert_job(struct store *s, const char *name, const char *config_json, uint32_t epochs,
		      int32_t keep, enum job_state state, int64_t *id, struct tr_err *err, const char *ctx)
{
	static const char sql[] =
		"INSERT INTO jobs (id, name, config, state, epochs, epoch, keep, last_error, created_at, "
		"updated_at) VALUES ((SELECT id + 1 FROM job_id_high), ?1, ?2, ?3, ?4, 0, ?5, NULL, ?6, ?6)";
	const struct sqlv v[] = { SQLV_TEXT(name), SQLV_TEXT(config_json), SQLV_TEXT(state_column(state)),
				  SQLV_I64(epochs), SQLV_I64(keep), SQLV_I64(now_unix()) };
	int rc = exec_values(s, sql, v, 6, err, ctx);

	if (rc < 0)
		return rc;
	*id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

int store_job_create(struct store *s, const char *name, const char *config_json, uint32_t epochs,
		     int32_t keep, enum job_state state, int64_t *id, struct tr_err *err)
{
	const char *ctx = "creating a job";
	int64_t new_id = 0;
	int rc;

	rc = check_job_args(name, config_json, state, err, ctx);
	if (rc < 0)
		return rc;
	if (check_not_moved(s, err, ctx) < 0)
		return -EIO;
	autocommit_begin(s);
	rc = insert_job(s, name, config_json, epochs, keep, state, &new_id, err, ctx);
	if (rc == 0 && id)
		*id = new_id;
	return rc;
}

/* Run an UPDATE ... WHERE id = ?1 of one job (v: its parameters from ?1),
 * in whatever transaction is open; -ENOENT when there is no such job. */
static int update_one_job(struct store *s, const char *sql, const struct sqlv *v, int n, int64_t id,
			  struct tr_err *err, const char *ctx)
{
	int rc = exec_values(s, sql, v, n, err, ctx);

	if (rc == 0)
		rc = tr_err_set(err, -ENOENT, "job %" PRId64 ": no such job", id);
	return rc < 0 ? rc : 0;
}

static int set_state_once(struct store *s, int64_t id, enum job_state state, const char *last_error,
			  struct tr_err *err);

/* A full disk gets the reserve's room: see the top. */
int store_job_set_state(struct store *s, int64_t id, enum job_state state, const char *last_error,
			struct tr_err *err)
{
	int rc = set_state_once(s, id, state, last_error, err);

	if (rc == -ENOSPC && reserve_release(s)) {
		rc = set_state_once(s, id, state, last_error, err);
		s->reserve_spent = rc == 0;
	}
	return rc;
}

bool store_reserve_spent(struct store *s)
{
	bool spent = s->reserve_spent;

	s->reserve_spent = false;
	return spent;
}

static int set_state_once(struct store *s, int64_t id, enum job_state state, const char *last_error,
			  struct tr_err *err)
{
	static const char sql[] =
		"UPDATE jobs SET state = ?2, last_error = ?3, updated_at = ?4, "
		"started_at = CASE WHEN ?2 = 'running' THEN coalesce(started_at, ?4) ELSE started_at END "
		"WHERE id = ?1";
	const char *text = state_column(state);
	const struct sqlv v[] = { SQLV_I64(id), SQLV_TEXT(text), SQLV_TEXT(last_error), SQLV_I64(now_unix()) };
	char ctx[96];

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": setting state '%.20s'", id, text ? text : "");
	if (!text)
		return tr_err_set(err, -EINVAL, "%s: no state", ctx);
	autocommit_begin(s);
	return update_one_job(s, sql, v, 4, id, err, ctx);
}

int store_job_set_config(struct store *s, int64_t id, const char *config_json, uint32_t epochs,
			 struct tr_err *err)
{
	static const char sql[] =
		"UPDATE jobs SET config = ?2, epochs = ?3, updated_at = ?4 WHERE id = ?1";
	const struct sqlv v[] = { SQLV_I64(id), SQLV_TEXT(config_json), SQLV_I64(epochs), SQLV_I64(now_unix()) };
	char ctx[96];

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": recording its configuration", id);
	if (!config_json)
		return tr_err_set(err, -EINVAL, "%s: no configuration", ctx);
	autocommit_begin(s);
	return update_one_job(s, sql, v, 4, id, err, ctx);
}

int store_job_set_kill_after(struct store *s, int64_t id, int64_t epoch, struct tr_err *err)
{
	static const char sql[] = "UPDATE jobs SET kill_after = ?2, updated_at = ?3 WHERE id = ?1";
	const struct sqlv none = SQLV_NULL, after = SQLV_I64(epoch);
	const struct sqlv v[] = { SQLV_I64(id), epoch >= 1 ? after : none, SQLV_I64(now_unix()) };
	char ctx[96];

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": recording kill after epoch %" PRId64, id, epoch);
	autocommit_begin(s);
	return update_one_job(s, sql, v, 3, id, err, ctx);
}

int store_job_set_dataset_digest(struct store *s, int64_t id, const char *digest, struct tr_err *err)
{
	static const char sql[] = "UPDATE jobs SET dataset_digest = ?2, updated_at = ?3 WHERE id = ?1";
	const struct sqlv v[] = { SQLV_I64(id), SQLV_TEXT(digest), SQLV_I64(now_unix()) };
	char ctx[96];

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": recording its dataset's digest", id);
	if (digest && (strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 7 + 64))
		return tr_err_set(err, -EINVAL, "%s: '%.80s' is not a sha256: digest", ctx, digest);
	autocommit_begin(s);
	return update_one_job(s, sql, v, 3, id, err, ctx);
}

/* ---- dataset file digests ---------------------------------------------- */

/* A file's identity as parameters ?1..?5 (path, size, mtime_ns, ctime_ns,
 * inode). */
static int bind_file_id(struct store *s, sqlite3_stmt *st, const struct store_file_id *f,
			struct tr_err *err, const char *ctx)
{
	const struct sqlv v[] = { SQLV_TEXT(f->path), SQLV_I64(f->size), SQLV_I64(f->mtime_ns),
				  SQLV_I64(f->ctime_ns), SQLV_I64(f->inode) };

	return bind_values(s, st, 1, v, 5, err, ctx);
}

int store_file_digest_get(struct store *s, const struct store_file_id *f, char hex[65],
			  struct tr_err *err)
{
	static const char sql[] = "SELECT sha256 FROM dataset_files WHERE path = ?1 AND size = ?2 "
				  "AND mtime_ns = ?3 AND ctime_ns = ?4 AND inode = ?5";
	const char *ctx = "reading a dataset file's digest";
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prepare(s, &st, sql, err, ctx);
	if (rc < 0)
		return rc;
	rc = bind_file_id(s, st, f, err, ctx);
	if (rc < 0)
		goto out;
	rc = next_row(s, st, err, ctx);
	if (rc == 1) {
		const unsigned char *t = sqlite3_column_text(st, 0);

		if (t && strlen((const char *)t) == 64) {
			memcpy(hex, t, 65);
			rc = 0;
		} else {
			rc = -ENOENT;
		}
	} else if (rc == 0) {
		rc = -ENOENT;
	}
out:
	sqlite3_finalize(st);
	return rc;
}

/* One INSERT OR REPLACE of a file digest row, in whatever transaction is open. */
static int put_file_digest(struct store *s, const struct store_file_id *f, const char *hex,
			   struct tr_err *err, const char *ctx)
{
	static const char sql[] = "INSERT OR REPLACE INTO dataset_files (path, size, mtime_ns, ctime_ns, "
				  "inode, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
	const struct sqlv sum = SQLV_TEXT(hex);
	sqlite3_stmt *st = NULL;
	int rc = prepare(s, &st, sql, err, ctx);

	if (rc < 0)
		return rc;
	rc = bind_file_id(s, st, f, err, ctx);
	if (rc == 0)
		rc = bind_values(s, st, 6, &sum, 1, err, ctx);
	rc = step_done(s, st, rc, err, ctx);
	return rc < 0 ? rc : 0;
}

int store_file_digest_put(struct store *s, const struct store_file_id *f, const char *hex,
			  struct tr_err *err)
{
	return store_file_digests_put(s, f, &hex, 1, err);
}

int store_file_digests_put(struct store *s, const struct store_file_id *f, const char *const *hex,
			   size_t n, struct tr_err *err)
{
	const char *ctx = "remembering dataset files' digests";
	int rc;

	if (n == 0)
		return 0;
	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = put_file_digest(s, &f[i], hex[i], err, ctx);
	return txn_end(s, rc, err, ctx);
}

static char *dup_column_text(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t ? strdup((const char *)t) : NULL;
}

/* Fill *j from a row of JOB_COLUMNS. */
static int read_job(sqlite3_stmt *st, struct store_job *j, struct tr_err *err)
{
	const unsigned char *name = sqlite3_column_text(st, 1);
	const unsigned char *state = sqlite3_column_text(st, 2);
	bool has_error;

	memset(j, 0, sizeof(*j));
	j->id = sqlite3_column_int64(st, 0);
	snprintf(j->name, sizeof(j->name), "%s", name ? (const char *)name : "");
	j->state = state_from_column(state);
	j->keep = (int32_t)sqlite3_column_int64(st, 5);
	j->epochs = (uint32_t)sqlite3_column_int64(st, 6);
	j->epoch = (uint32_t)sqlite3_column_int64(st, 7);
	j->created_at = sqlite3_column_int64(st, 8);
	j->updated_at = sqlite3_column_int64(st, 9);
	j->kill_after = sqlite3_column_type(st, 10) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 10);
	if (sqlite3_column_type(st, 11) != SQLITE_NULL)
		snprintf(j->dataset_digest, sizeof(j->dataset_digest), "%s",
			 (const char *)sqlite3_column_text(st, 11));
	j->started_at = sqlite3_column_type(st, 13) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 13);
	if (sqlite3_column_type(st, 3) == SQLITE_NULL)
		return tr_err_set(err, -EIO, "job %" PRId64 ": no configuration", j->id);
	has_error = sqlite3_column_type(st, 4) != SQLITE_NULL;
	j->config_json = dup_column_text(st, 3);
	if (has_error)
		j->last_error = dup_column_text(st, 4);
	if (sqlite3_column_type(st, 12) != SQLITE_NULL && !(j->origin = dup_column_text(st, 12))) {
		store_job_clear(j);
		return tr_err_set(err, -ENOMEM, "job %" PRId64 ": out of memory", j->id);
	}
	if (!j->config_json || (has_error && !j->last_error)) {
		store_job_clear(j);
		return tr_err_set(err, -ENOMEM, "job %" PRId64 ": out of memory", j->id);
	}
	return 0;
}

int store_job_get(struct store *s, int64_t id, struct store_job *out, struct tr_err *err)
{
	static const char sql[] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1";
	sqlite3_stmt *st = NULL;
	char ctx[64];
	int rc;

	snprintf(ctx, sizeof(ctx), "job %" PRId64, id);
	memset(out, 0, sizeof(*out));
	rc = prepare(s, &st, sql, err, ctx);
	if (rc < 0)
		goto out;
	rc = bind_i64s(s, st, &id, 1, err, ctx);
	if (rc < 0)
		goto out;
	rc = next_row(s, st, err, ctx);
	if (rc == 0)
		rc = tr_err_set(err, -ENOENT, "%s: no such job", ctx);
	else if (rc > 0)
		rc = read_job(st, out, err);
out:
	sqlite3_finalize(st);
	return rc;
}

/* Room for element `len` of the array at *arr (`cap` elements of `size`
 * bytes): the list functions' one way of growing their result, doubling. */
static int grow_for(void **arr, size_t *cap, size_t len, size_t size, struct tr_err *err, const char *ctx)
{
	size_t ncap;
	void *p;

	if (len < *cap)
		return 0;
	ncap = *cap ? 2 * *cap : 16;
	p = realloc(*arr, ncap * size);
	if (!p)
		return tr_err_set(err, -ENOMEM, "%s: out of memory", ctx);
	*arr = p;
	*cap = ncap;
	return 0;
}

/* One row of a SELECT, read into row (select_rows' element); 0 or a
 * negative code with err set. */
typedef int (*row_reader)(struct store *s, sqlite3_stmt *st, void *row, struct tr_err *err);

/* Runs sql with its int64 parameters bound and reads every row through read
 * into a growing array of size-byte elements. On success *out (the caller's,
 * NULL when no row) and *n; on failure the rows read so far go through clear
 * (NULL: nothing to release inside an element), the array is freed, and *out
 * stays NULL. */
static int select_rows(struct store *s, const char *sql, const int64_t *args, int nargs,
		       size_t size, row_reader read, void (*clear)(void *row), void **out,
		       size_t *n, struct tr_err *err, const char *ctx)
{
	sqlite3_stmt *st = NULL;
	char *rows = NULL;
	size_t len = 0, cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = prepare(s, &st, sql, err, ctx);
	if (rc == 0 && nargs > 0)
		rc = bind_i64s(s, st, args, nargs, err, ctx);
	while (rc == 0 && (rc = next_row(s, st, err, ctx)) > 0) {
		rc = grow_for((void **)&rows, &cap, len, size, err, ctx);
		if (rc == 0)
			rc = read(s, st, rows + len * size, err);
		if (rc == 0)
			len++;
	}
	sqlite3_finalize(st);
	if (rc < 0) {
		for (size_t i = 0; clear && i < len; i++)
			clear(rows + i * size);
		free(rows);
		return rc;
	}
	*out = rows;
	*n = len;
	return 0;
}

static int read_job_row(struct store *s, sqlite3_stmt *st, void *row, struct tr_err *err)
{
	(void)s;
	return read_job(st, row, err);
}

static void clear_job_row(void *row)
{
	store_job_clear(row);
}

int store_job_list(struct store *s, struct store_job **out, size_t *n, struct tr_err *err)
{
	static const char sql[] = "SELECT " JOB_COLUMNS " FROM jobs ORDER BY id";

	return select_rows(s, sql, NULL, 0, sizeof(**out), read_job_row, clear_job_row,
			   (void **)out, n, err, "listing jobs");
}

void store_job_clear(struct store_job *j)
{
	if (!j)
		return;
	free(j->config_json);
	free(j->last_error);
	free(j->origin);
	j->config_json = NULL;
	j->last_error = NULL;
	j->origin = NULL;
}

void store_jobs_free(struct store_job *jobs, size_t n)
{
	if (!jobs)
		return;
	for (size_t i = 0; i < n; i++)
		store_job_clear(&jobs[i]);
	free(jobs);
}

int store_job_delete(struct store *s, int64_t id, struct store_removed *out, struct tr_err *err)
{
	static const char freed_sql[] =
		"SELECT (SELECT count(*) FROM checkpoints WHERE job_id = ?1),"
		"       (SELECT coalesce(sum(size), 0) FROM checkpoints WHERE job_id = ?1),"
		"       (SELECT count(*) FROM history WHERE job_id = ?1)";
	struct store_removed r = { 0 };
	sqlite3_stmt *st = NULL;
	char ctx[64];
	int rc;

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": removing", id);
	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	rc = prepare(s, &st, freed_sql, err, ctx);
	if (rc == 0)
		rc = bind_i64s(s, st, &id, 1, err, ctx);
	if (rc == 0)
		rc = next_row(s, st, err, ctx);
	if (rc > 0) {
		r.checkpoints = sqlite3_column_int64(st, 0);
		r.checkpoint_bytes = sqlite3_column_int64(st, 1);
		r.history_rows = sqlite3_column_int64(st, 2);
		rc = 0;
	}
	sqlite3_finalize(st);
	/* Children first: the rows go whether or not foreign keys cascade. */
	if (rc == 0)
		rc = exec_i64(s, "DELETE FROM history WHERE job_id = ?1", &id, 1, err, ctx);
	if (rc >= 0)
		rc = exec_i64(s, "DELETE FROM checkpoints WHERE job_id = ?1", &id, 1, err, ctx);
	if (rc >= 0)
		rc = exec_i64(s, "DELETE FROM jobs WHERE id = ?1", &id, 1, err, ctx);
	if (rc == 0)
		rc = tr_err_set(err, -ENOENT, "job %" PRId64 ": no such job", id);
	rc = txn_end(s, rc < 0 ? rc : 0, err, ctx);
	if (rc < 0)
		return rc;
	vacuum_free_pages(s);
	if (out)
		*out = r;
	return 0;
}

/* -ENOENT with a message unless job `id` exists. */
static int job_exists(struct store *s, int64_t id, struct tr_err *err, const char *ctx)
{
	int64_t one = 0;
	int rc = query_i64(s, "SELECT 1 FROM jobs WHERE id = ?1", &id, 1, &one, err, ctx);

	if (rc == -ENOENT)
		rc = tr_err_set(err, -ENOENT, "job %" PRId64 ": no such job", id);
	return rc;
}

/* ---- checkpoints and history ------------------------------------------- */

static int check_blob(const uint8_t *blob, size_t len, const char *checksum, struct tr_err *err,
		      const char *ctx)
{
	if (!blob || len == 0)
		return tr_err_set(err, -EINVAL, "%s: empty checkpoint", ctx);
	if (!checksum || !*checksum || strnlen(checksum, STORE_CHECKSUM_MAX) >= STORE_CHECKSUM_MAX)
		return tr_err_set(err, -EINVAL, "%s: the checksum must be 1 to %d bytes", ctx,
				  STORE_CHECKSUM_MAX - 1);
	return 0;
}

/* The job's committed epoch count and retention, in the caller's transaction. */
static int job_epoch_keep(struct store *s, int64_t job, int64_t *epoch, int64_t *keep,
			  struct tr_err *err, const char *ctx)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prepare(s, &st, "SELECT epoch, keep FROM jobs WHERE id = ?1", err, ctx);
	if (rc < 0)
		goto out;
	rc = bind_i64s(s, st, &job, 1, err, ctx);
	if (rc < 0)
		goto out;
	rc = next_row(s, st, err, ctx);
	if (rc == 0) {
		rc = tr_err_set(err, -ENOENT, "%s: no such job", ctx);
	} else if (rc > 0) {
		*epoch = sqlite3_column_int64(st, 0);
		*keep = sqlite3_column_int64(st, 1);
		rc = 0;
	}
out:
	sqlite3_finalize(st);
	return rc;
}

/* The job's monitor (config key "monitor"; a job stored without it has
 * val_loss), in the caller's transaction; what an epoch's score is. */
static int job_score(struct store *s, int64_t job, const struct history_row *row, double *score,
		     struct tr_err *err, const char *ctx)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *m;
	int rc;

	rc = prepare(s, &st, "SELECT json_extract(config, '$.monitor') FROM jobs WHERE id = ?1", err, ctx);
	if (rc == 0)
		rc = bind_i64s(s, st, &job, 1, err, ctx);
	if (rc == 0)
		rc = next_row(s, st, err, ctx);
	if (rc == 0)
		rc = tr_err_set(err, -ENOENT, "%s: no such job", ctx);
	if (rc > 0) {
		m = sqlite3_column_text(st, 0);
		if (m && strcmp((const char *)m, "val_acc") == 0)
			*score = -row->val_acc;
		else if (m && strcmp((const char *)m, "val_macro_acc") == 0)
			*score = -row->val_macro_acc;
		else if (m && strcmp((const char *)m, "val_mae") == 0)
			*score = row->val_mae;
		else if (m && strcmp((const char *)m, "val_rmse") == 0)
			*score = row->val_rmse;
		else
			*score = row->val_loss;
		rc = 0;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Insert a checkpoint row; with blob NULL an empty one (size 0) that
 * fill_checkpoint completes later in the same transaction. */
static int insert_checkpoint(struct store *s, int64_t job, uint32_t epoch, uint32_t step,
			     bool is_epoch, double val_loss, double score, const uint8_t *blob,
			     size_t len, const char *checksum, struct tr_err *err, const char *ctx)
{
	static const char sql[] =
		"INSERT INTO checkpoints (job_id, epoch, step, kind, val_loss, size, checksum, "
		"created_at, blob, score) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
	const struct sqlv v[] = {
		SQLV_I64(job), SQLV_I64(epoch), SQLV_I64(step), SQLV_TEXT(is_epoch ? "epoch" : "position"),
		SQLV_REAL(is_epoch ? val_loss : NAN), SQLV_I64(blob ? len : 0), SQLV_TEXT(checksum),
		SQLV_I64(now_unix()), SQLV_BLOB(blob, blob ? len : 0), SQLV_REAL(is_epoch ? score : NAN),
	};
	int rc = exec_values(s, sql, v, 10, err, ctx);

	return rc < 0 ? rc : 0;
}

/* Write the blob of the checkpoint row `id` (inserted empty), in the
 * caller's transaction. */
static int fill_checkpoint(struct store *s, int64_t id, const uint8_t *blob, size_t len,
			   struct tr_err *err, const char *ctx)
{
	const struct sqlv v[] = { SQLV_I64(id), SQLV_I64(len), SQLV_BLOB(blob, len) };
	int rc = exec_values(s, "UPDATE checkpoints SET size = ?2, blob = ?3 WHERE id = ?1", v, 3, err, ctx);

	if (rc >= 0 && rc != 1)
		rc = tr_err_set(err, -EIO, "%s: the new checkpoint row is gone", ctx);
	return rc < 0 ? rc : 0;
}

static int insert_history(struct store *s, int64_t job, const struct history_row *row,
			  struct tr_err *err, const char *ctx)
{
	static const char sql[] =
		"INSERT INTO history (job_id, " HISTORY_COLUMNS ", created_at) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?16, ?15)";
	const struct sqlv v[] = {
		SQLV_I64(job), SQLV_I64(row->epoch), SQLV_REAL(row->train_loss), SQLV_REAL(row->train_acc),
		SQLV_REAL(row->train_macro_acc), SQLV_REAL(row->val_loss), SQLV_REAL(row->val_acc),
		SQLV_REAL(row->val_macro_acc), SQLV_REAL(row->seconds),
		SQLV_TEXTN(row->note, strnlen(row->note, HISTORY_NOTE_MAX)), SQLV_REAL(row->lr),
		SQLV_REAL(row->grad_norm), SQLV_REAL(row->val_mae), SQLV_REAL(row->val_rmse),
		SQLV_I64(now_unix()), SQLV_REAL(row->val_ppl),
	};
	int rc = exec_values(s, sql, v, 16, err, ctx);

	return rc < 0 ? rc : 0;
}

int store_commit_epoch(struct store *s, int64_t job, const struct history_row *row,
		       const uint8_t *blob, size_t len, const char *checksum, struct tr_err *err)
{
	/* Keep the newest max(keep, 1) epoch checkpoints and the best one
	 * (lowest score: val_loss, or minus the monitored accuracy; the
	 * earliest of equals; NULL = NaN never best), and those a PBT exploit
	 * started from (sweep_lineage). */
	static const char retention_sql[] =
		"DELETE FROM checkpoints WHERE job_id = ?1 AND kind = 'epoch'"
		" AND id NOT IN (SELECT id FROM checkpoints WHERE job_id = ?1 AND kind = 'epoch'"
		"                ORDER BY epoch DESC LIMIT ?2)"
		" AND id NOT IN (SELECT id FROM checkpoints WHERE job_id = ?1 AND kind = 'epoch'"
		"                AND score IS NOT NULL ORDER BY score, epoch LIMIT 1)"
		/* PBT: an exploit's source (migration 0011), needed to replay it */
		" AND NOT EXISTS (SELECT 1 FROM sweep_lineage l WHERE l.from_job = ?1"
		"                 AND l.epoch = checkpoints.epoch AND l.action = 'exploit')";
	int64_t committed = 0, keep = -1, ckpt_id = 0;
	double score = NAN;
	char ctx[80];
	int rc;

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": committing epoch %u", job, row ? row->epoch : 0);
	if (!row || row->epoch == 0)
		return tr_err_set(err, -EINVAL, "%s: epochs count from 1", ctx);
	rc = check_blob(blob, len, checksum, err, ctx);
	if (rc < 0)
		return rc;
	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	rc = job_epoch_keep(s, job, &committed, &keep, err, ctx);
	if (rc < 0)
		goto out;
	if (row->epoch <= committed) {
		rc = tr_err_set(err, -EEXIST, "%s: already committed (the job has %" PRId64 ")", ctx,
				committed);
		goto out;
	}
	if (row->epoch != committed + 1) {
		rc = tr_err_set(err, -EINVAL, "%s: the job has committed %" PRId64
				" epochs; the next is %" PRId64, ctx, committed, committed + 1);
		goto out;
	}
	rc = job_score(s, job, row, &score, err, ctx);
	if (rc < 0)
		goto out;
	/* The row first, empty, so that retention sees it; its blob last, into
	 * the pages retention and the position's removal just freed (no file
	 * growth, nothing for the incremental vacuum to move afterwards). */
	rc = insert_checkpoint(s, job, row->epoch, 0, true, row->val_loss, score, NULL, 0, checksum,
			       err, ctx);
	if (rc < 0)
		goto out;
	ckpt_id = sqlite3_last_insert_rowid(s->db);
	rc = insert_history(s, job, row, err, ctx);
	if (rc < 0)
		goto out;
	rc = exec_i64(s, "UPDATE jobs SET epoch = ?2, updated_at = ?3 WHERE id = ?1",
		      (int64_t[]){ job, row->epoch, now_unix() }, 3, err, ctx);
	if (rc < 0)
		goto out;
	rc = exec_i64(s, "DELETE FROM checkpoints WHERE job_id = ?1 AND kind = 'position'",
		      (int64_t[]){ job }, 1, err, ctx);
	if (rc >= 0 && keep >= 0)
		rc = exec_i64(s, retention_sql, (int64_t[]){ job, keep > 1 ? keep : 1 }, 2, err, ctx);
	if (rc >= 0)
		rc = fill_checkpoint(s, ckpt_id, blob, len, err, ctx);
out:
	rc = txn_end(s, rc < 0 ? rc : 0, err, ctx);
	if (rc == 0)
		vacuum_free_pages(s);
	return rc;
}

int store_save_position(struct store *s, int64_t job, uint32_t epoch, uint32_t step,
			const uint8_t *blob, size_t len, const char *checksum, struct tr_err *err)
{
	int64_t committed = 0, keep = -1;
	char ctx[96];
	int rc;

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": saving the position at epoch %u step %u", job,
		 epoch, step);
	rc = check_blob(blob, len, checksum, err, ctx);
	if (rc < 0)
		return rc;
	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	rc = job_epoch_keep(s, job, &committed, &keep, err, ctx);
	if (rc < 0)
		goto out;
	if (epoch != committed) {
		/* Otherwise the history would not end where this position starts. */
		rc = tr_err_set(err, -EINVAL, "%s: the job has committed %" PRId64 " epochs", ctx,
				committed);
		goto out;
	}
	rc = exec_i64(s, "DELETE FROM checkpoints WHERE job_id = ?1 AND kind = 'position'",
		      (int64_t[]){ job }, 1, err, ctx);
	if (rc < 0)
		goto out;
	rc = insert_checkpoint(s, job, epoch, step, false, NAN, NAN, blob, len, checksum, err, ctx);
out:
	return txn_end(s, rc < 0 ? rc : 0, err, ctx);
}

int store_job_create_at(struct store *s, const char *name, const char *config_json, uint32_t epochs,
			int32_t keep, enum job_state state, const uint8_t *blob, size_t len,
			const char *checksum, int64_t *id, struct tr_err *err)
{
	const char *ctx = "creating a job with its first checkpoint";
	int64_t new_id = 0;
	int rc;

	rc = check_job_args(name, config_json, state, err, ctx);
	if (rc == 0)
		rc = check_blob(blob, len, checksum, err, ctx);
	if (rc < 0)
		return rc;
	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	rc = insert_job(s, name, config_json, epochs, keep, state, &new_id, err, ctx);
	if (rc == 0)
		rc = insert_checkpoint(s, new_id, 0, 0, false, NAN, NAN, blob, len, checksum, err, ctx);
	rc = txn_end(s, rc < 0 ? rc : 0, err, ctx);
	if (rc == 0 && id)
		*id = new_id;
	return rc;
}

/* The origin and committed epochs of a job just inserted. */
static int set_origin(struct store *s, int64_t id, const struct store_origin *o, struct tr_err *err,
		      const char *ctx)
{
	const struct sqlv v[] = { SQLV_I64(id), SQLV_TEXT(o->text), SQLV_I64(o->nrows) };
	int rc = exec_values(s, "UPDATE jobs SET origin = ?2, epoch = ?3 WHERE id = ?1", v, 3, err, ctx);

	return rc < 0 ? rc : 0;
}

static int check_from_args(const char *name, const char *config_json, enum job_state state, const uint8_t *blob,
			   size_t len, const char *checksum, const struct store_origin *o, struct tr_err *err,
			   const char *ctx)
{
	int rc = check_job_args(name, config_json, state, err, ctx);

	if (rc == 0)
		rc = check_blob(blob, len, checksum, err, ctx);
	if (rc == 0 && (!o || !o->text || o->nrows != o->epoch || (o->is_epoch && (o->step || !o->epoch))))
		rc = tr_err_set(err, -EINVAL, "%s: the origin's position and history disagree", ctx);
	return rc;
}

/* store_job_create_from's rows, in the caller's transaction. */
static int create_from_in_txn(struct store *s, const char *name, const char *config_json, uint32_t epochs,
			      int32_t keep, enum job_state state, const uint8_t *blob, size_t len,
			      const char *checksum, const struct store_origin *o, int64_t *id, struct tr_err *err,
			      const char *ctx)
{
	int64_t new_id = 0;
	double score = NAN;
	int rc;

	rc = insert_job(s, name, config_json, epochs, keep, state, &new_id, err, ctx);
	if (rc == 0)
		rc = set_origin(s, new_id, o, err, ctx);
	for (size_t i = 0; rc == 0 && i < o->nrows; i++)
		rc = insert_history(s, new_id, &o->rows[i], err, ctx);
	/* An epoch checkpoint's score by the new job's monitor, from its row. */
	if (rc == 0 && o->is_epoch && o->epoch >= 1 && o->epoch <= o->nrows)
		rc = job_score(s, new_id, &o->rows[o->epoch - 1], &score, err, ctx);
	if (rc == 0)
		rc = insert_checkpoint(s, new_id, o->epoch, o->step, o->is_epoch, o->val_loss, score, blob,
				       len, checksum, err, ctx);
	if (rc == 0 && id)
		*id = new_id;
	return rc;
}

int store_job_create_from(struct store *s, const char *name, const char *config_json,
			  uint32_t epochs, int32_t keep, enum job_state state, const uint8_t *blob,
			  size_t len, const char *checksum, const struct store_origin *o, int64_t *id,
			  struct tr_err *err)
{
	const char *ctx = "creating a job from another's checkpoint";
	int64_t new_id = 0;
	int rc;

	rc = check_from_args(name, config_json, state, blob, len, checksum, o, err, ctx);
	if (rc < 0)
		return rc;
	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	rc = create_from_in_txn(s, name, config_json, epochs, keep, state, blob, len, checksum, o, &new_id, err,
				ctx);
	rc = txn_end(s, rc < 0 ? rc : 0, err, ctx);
	if (rc == 0 && id)
		*id = new_id;
	return rc;
}

/* Fill *c from a row of CHECKPOINT_COLUMNS [, blob]. */
static int read_checkpoint(struct store *s, sqlite3_stmt *st, bool with_blob,
			   struct store_checkpoint *c, struct tr_err *err)
{
	const unsigned char *kind = sqlite3_column_text(st, 4);
	const unsigned char *sum = sqlite3_column_text(st, 7);

	memset(c, 0, sizeof(*c));
	c->id = sqlite3_column_int64(st, 0);
	c->job_id = sqlite3_column_int64(st, 1);
	c->epoch = (uint32_t)sqlite3_column_int64(st, 2);
	c->step = (uint32_t)sqlite3_column_int64(st, 3);
	c->is_epoch = kind && strcmp((const char *)kind, "epoch") == 0;
	c->val_loss = column_real(st, 5);
	c->size = sqlite3_column_int64(st, 6);
	snprintf(c->checksum, sizeof(c->checksum), "%s", sum ? (const char *)sum : "");
	c->created_at = sqlite3_column_int64(st, 8);
	c->score = column_real(st, 9);
	if (with_blob) {
		const void *p = sqlite3_column_blob(st, 10);
		int n = sqlite3_column_bytes(st, 10);

		if (!p && sqlite3_errcode(s->db) == SQLITE_NOMEM)
			return tr_err_set(err, -ENOMEM, "checkpoint %" PRId64 ": out of memory", c->id);
		if ((int64_t)n != c->size)
			return tr_err_set(err, -EIO, "checkpoint %" PRId64 ": blob has %d bytes, not %"
					  PRId64, c->id, n, c->size);
		c->blob = malloc(n > 0 ? (size_t)n : 1);
		if (!c->blob)
			return tr_err_set(err, -ENOMEM, "checkpoint %" PRId64 ": out of memory", c->id);
		if (n > 0)
			memcpy(c->blob, p, (size_t)n);
	}
	return 0;
}

/* The one checkpoint a query with int64 parameters finds, blob loaded. */
static int get_checkpoint(struct store *s, const char *sql, const int64_t *args, int n,
			  struct store_checkpoint *out, struct tr_err *err, const char *ctx)
{
	sqlite3_stmt *st = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = prepare(s, &st, sql, err, ctx);
	if (rc < 0)
		goto out;
	rc = bind_i64s(s, st, args, n, err, ctx);
	if (rc < 0)
		goto out;
	rc = next_row(s, st, err, ctx);
	if (rc == 0)
		rc = tr_err_set(err, -ENOENT, "%s: no such checkpoint", ctx);
	else if (rc > 0)
		rc = read_checkpoint(s, st, true, out, err);
out:
	sqlite3_finalize(st);
	return rc;
}

int store_latest_checkpoint(struct store *s, int64_t job, struct store_checkpoint *out,
			    struct tr_err *err)
{
	static const char sql[] = "SELECT " CHECKPOINT_COLUMNS ", blob FROM checkpoints "
				  "WHERE job_id = ?1 ORDER BY epoch DESC, step DESC LIMIT 1";
	char ctx[64];

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": newest checkpoint", job);
	return get_checkpoint(s, sql, &job, 1, out, err, ctx);
}

int store_epoch_checkpoint(struct store *s, int64_t job, uint32_t epoch,
			   struct store_checkpoint *out, struct tr_err *err)
{
	static const char sql[] = "SELECT " CHECKPOINT_COLUMNS ", blob FROM checkpoints "
				  "WHERE job_id = ?1 AND epoch = ?2 AND kind = 'epoch'";
	char ctx[80];

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": checkpoint of epoch %u", job, epoch);
	return get_checkpoint(s, sql, (int64_t[]){ job, epoch }, 2, out, err, ctx);
}

int store_best_checkpoint(struct store *s, int64_t job, struct store_checkpoint *out,
			  struct tr_err *err)
{
	static const char sql[] = "SELECT " CHECKPOINT_COLUMNS ", blob FROM checkpoints "
				  "WHERE job_id = ?1 AND kind = 'epoch' AND score IS NOT NULL "
				  "ORDER BY score, epoch LIMIT 1";
	char ctx[64];

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": best checkpoint", job);
	return get_checkpoint(s, sql, &job, 1, out, err, ctx);
}

int store_drop_checkpoint(struct store *s, int64_t job, int64_t checkpoint_id, struct tr_err *err)
{
	static const char newest_sql[] = "SELECT epoch FROM checkpoints WHERE job_id = ?1 "
					 "ORDER BY epoch DESC, step DESC LIMIT 1";
	int64_t is_epoch = 0, newest = 0;
	char ctx[96];
	int rc;

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": dropping checkpoint %" PRId64, job,
		 checkpoint_id);
	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	rc = query_i64(s, "SELECT kind = 'epoch' FROM checkpoints WHERE id = ?1 AND job_id = ?2",
		       (int64_t[]){ checkpoint_id, job }, 2, &is_epoch, err, ctx);
	if (rc == -ENOENT)
		rc = tr_err_set(err, -ENOENT, "%s: no such checkpoint", ctx);
	if (rc < 0)
		goto out;
	rc = exec_i64(s, "DELETE FROM checkpoints WHERE id = ?1", &checkpoint_id, 1, err, ctx);
	if (rc < 0 || !is_epoch)
		goto out;
	/* Fall back to the newest remaining checkpoint (or the start): the
	 * history and the job's epoch end there again. */
	rc = query_i64(s, newest_sql, &job, 1, &newest, err, ctx);
	if (rc == -ENOENT) {
		newest = 0;
		rc = 0;
	}
	if (rc < 0)
		goto out;
	rc = exec_i64(s, "DELETE FROM history WHERE job_id = ?1 AND epoch > ?2",
		      (int64_t[]){ job, newest }, 2, err, ctx);
	if (rc >= 0)
		rc = exec_i64(s, "DELETE FROM checkpoints WHERE job_id = ?1 AND epoch > ?2",
			      (int64_t[]){ job, newest }, 2, err, ctx);
	if (rc >= 0)
		rc = exec_i64(s, "UPDATE jobs SET epoch = ?2, updated_at = ?3 WHERE id = ?1",
			      (int64_t[]){ job, newest, now_unix() }, 3, err, ctx);
out:
	rc = txn_end(s, rc < 0 ? rc : 0, err, ctx);
	if (rc == 0)
		vacuum_free_pages(s);
	return rc;
}

static int read_checkpoint_row(struct store *s, sqlite3_stmt *st, void *row, struct tr_err *err)
{
	return read_checkpoint(s, st, false, row, err);
}

int store_checkpoint_list(struct store *s, int64_t job, struct store_checkpoint **out, size_t *n,
			  struct tr_err *err)
{
	static const char sql[] = "SELECT " CHECKPOINT_COLUMNS " FROM checkpoints "
				  "WHERE job_id = ?1 ORDER BY epoch, step";
	struct store_checkpoint *best = NULL;
	char ctx[64];
	int rc;

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": listing checkpoints", job);
	/* Descriptions only: no blobs, nothing inside an element to release. */
	rc = select_rows(s, sql, &job, 1, sizeof(**out), read_checkpoint_row, NULL, (void **)out, n,
			 err, ctx);
	if (rc == 0 && *n == 0)
		rc = job_exists(s, job, err, ctx);
	if (rc < 0)
		return rc;
	/* The best: the lowest score, the earliest of equals (as retention). */
	for (size_t i = 0; i < *n; i++) {
		struct store_checkpoint *c = &(*out)[i];

		if (c->is_epoch && !isnan(c->score) && (!best || c->score < best->score))
			best = c;
	}
	if (best)
		best->best = true;
	return 0;
}

void store_checkpoint_clear(struct store_checkpoint *c)
{
	if (!c)
		return;
	free(c->blob);
	c->blob = NULL;
}

void store_ckpt_describe(struct store_ckpt_desc *out, const struct store_checkpoint *c)
{
	out->valid = true;
	out->epoch = c->epoch;
	out->step = c->step;
	out->is_epoch = c->is_epoch;
	out->size = c->size;
	out->created = c->created_at;
	out->val_loss = c->val_loss;
	out->best = c->best;
	memcpy(out->checksum, c->checksum, sizeof(out->checksum));
}

static int read_history_row(struct store *s, sqlite3_stmt *st, void *row, struct tr_err *err)
{
	struct history_row *r = row;
	const unsigned char *note = sqlite3_column_text(st, 8);

	(void)s;
	(void)err;
	memset(r, 0, sizeof(*r));
	r->epoch = (uint32_t)sqlite3_column_int64(st, 0);
	r->train_loss = column_real(st, 1);
	r->train_acc = column_real(st, 2);
	r->train_macro_acc = column_real(st, 3);
	r->val_loss = column_real(st, 4);
	r->val_acc = column_real(st, 5);
	r->val_macro_acc = column_real(st, 6);
	r->seconds = column_real(st, 7);
	snprintf(r->note, sizeof(r->note), "%s", note ? (const char *)note : "");
	r->lr = column_real(st, 9);
	r->grad_norm = column_real(st, 10);
	r->val_mae = column_real(st, 11);
	r->val_rmse = column_real(st, 12);
	r->val_ppl = column_real(st, 13);
	return 0;
}

int store_history(struct store *s, int64_t job, struct history_row **rows, size_t *n,
		  struct tr_err *err)
{
	static const char sql[] = "SELECT " HISTORY_COLUMNS " FROM history WHERE job_id = ?1 "
				  "ORDER BY epoch";
	char ctx[64];
	int rc;

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": reading the history", job);
	rc = select_rows(s, sql, &job, 1, sizeof(**rows), read_history_row, NULL, (void **)rows, n,
			 err, ctx);
	if (rc == 0 && *n == 0)
		rc = job_exists(s, job, err, ctx);
	return rc;
}

/* ---- the step series (migration 0008) ---------------------------------- */

int store_steps_add(struct store *s, int64_t job, const struct store_step *pts, size_t n, size_t cap,
		    struct tr_err *err)
{
	static const char sql[] = "INSERT OR REPLACE INTO step_series (job_id, epoch, step, loss, created_at) "
				  "VALUES (?1, ?2, ?3, ?4, ?5)";
	sqlite3_stmt *st = NULL;
	int64_t have = 0, now = now_unix();
	char ctx[64];
	int rc;

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": adding to the step series", job);
	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	/* A job removed meanwhile took its series with it: nothing to add. */
	rc = job_exists(s, job, err, ctx);
	if (rc == -ENOENT) {
		tr_err_clear(err);
		return txn_end(s, 0, err, ctx);
	}
	if (rc == 0)
		rc = query_i64(s, "SELECT count(*) FROM step_series WHERE job_id = ?1", &job, 1, &have, err, ctx);
	if (rc == 0)
		rc = prepare(s, &st, sql, err, ctx);
	for (size_t i = 0; rc == 0 && i < n && (size_t)have < cap; i++) {
		if (!isfinite(pts[i].loss) || pts[i].step < 1)
			continue;
		const struct sqlv v[] = { SQLV_I64(job), SQLV_I64(pts[i].epoch), SQLV_I64(pts[i].step),
					  SQLV_REAL(pts[i].loss), SQLV_I64(now) };

		sqlite3_reset(st);
		rc = bind_values(s, st, 1, v, 5, err, ctx);
		if (rc == 0)
			rc = next_row(s, st, err, ctx);
		have++;
	}
	sqlite3_finalize(st);
	return txn_end(s, rc < 0 ? rc : 0, err, ctx);
}

static int read_step_row(struct store *s, sqlite3_stmt *st, void *row, struct tr_err *err)
{
	struct store_step *p = row;

	(void)s;
	(void)err;
	p->epoch = (uint32_t)sqlite3_column_int64(st, 0);
	p->step = (uint32_t)sqlite3_column_int64(st, 1);
	p->loss = sqlite3_column_double(st, 2);
	return 0;
}

int store_steps(struct store *s, int64_t job, struct store_step **out, size_t *n, struct tr_err *err)
{
	static const char sql[] = "SELECT epoch, step, loss FROM step_series WHERE job_id = ?1 "
				  "ORDER BY epoch, step";
	char ctx[64];
	int rc;

	snprintf(ctx, sizeof(ctx), "job %" PRId64 ": reading the step series", job);
	*out = NULL;
	*n = 0;
	rc = job_exists(s, job, err, ctx);
	if (rc == 0)
		rc = select_rows(s, sql, &job, 1, sizeof(**out), read_step_row, NULL, (void **)out, n,
				 err, ctx);
	return rc;
}

int store_integrity_check(struct store *s, struct tr_err *err)
{
	char first[TR_ERR_MSG_MAX - 32];
	int rc;

	rc = pragma_text(s, "PRAGMA integrity_check", first, sizeof(first), err);
	if (rc < 0 || strcmp(first, "ok") == 0)
		return rc;
	for (char *p = first; *p; p++)   /* "*** in database main ***\nPage 3: ..." */
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	return tr_err_set(err, -EIO, "integrity check: %s", first);
}

/* ---- sweeps (migration 0009) ------------------------------------------- */

static int insert_trial(struct store *s, int64_t sweep, uint32_t trial, int64_t job, const char *params,
			struct tr_err *err, const char *ctx)
{
	static const char sql[] =
		"INSERT INTO sweep_trials (sweep_id, trial, job_id, params) VALUES (?1, ?2, ?3, ?4)";
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prepare(s, &st, sql, err, ctx);
	if (rc < 0)
		goto out;
	rc = sqlite3_bind_int64(st, 1, sweep);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, trial);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, job);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 4, params, -1, SQLITE_STATIC);
	if (rc != SQLITE_OK) {
		rc = db_fail(s, rc, err, ctx);
		goto out;
	}
	rc = next_row(s, st, err, ctx);
out:
	sqlite3_finalize(st);
	return rc < 0 ? rc : 0;
}

static int set_digest_in_txn(struct store *s, int64_t job, const char *digest, struct tr_err *err,
			     const char *ctx)
{
	static const char sql[] = "UPDATE jobs SET dataset_digest = ?2 WHERE id = ?1";
	const struct sqlv v[] = { SQLV_I64(job), SQLV_TEXT(digest) };

	return update_one_job(s, sql, v, 2, job, err, ctx);
}

int store_sweep_create(struct store *s, const char *name, const char *spec_json,
		       const struct store_new_job *jobs, const char *const *params, size_t n,
		       int64_t *sweep_id, int64_t *job_ids, struct tr_err *err)
{
	static const char sql[] =
		"INSERT INTO sweeps (name, spec, state, created_at, updated_at) VALUES (?1, ?2, 'running', ?3, ?3)";
	const char *ctx = "creating a sweep";
	sqlite3_stmt *st = NULL;
	int64_t sid = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		rc = check_job_args(jobs[i].name, jobs[i].config_json, JOB_QUEUED, err, ctx);
		if (rc < 0)
			return rc;
	}
	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	rc = prepare(s, &st, sql, err, ctx);
	if (rc < 0)
		goto out;
	rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, spec_json, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, now_unix());
	if (rc != SQLITE_OK) {
		rc = db_fail(s, rc, err, ctx);
		goto out;
	}
	rc = next_row(s, st, err, ctx);
	if (rc < 0)
		goto out;
	sid = sqlite3_last_insert_rowid(s->db);
	rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = insert_job(s, jobs[i].name, jobs[i].config_json, jobs[i].epochs, jobs[i].keep, JOB_QUEUED,
				&job_ids[i], err, ctx);
		if (rc == 0 && jobs[i].digest && jobs[i].digest[0])
			rc = set_digest_in_txn(s, job_ids[i], jobs[i].digest, err, ctx);
		if (rc == 0)
			rc = insert_trial(s, sid, (uint32_t)i, job_ids[i], params[i], err, ctx);
	}
out:
	sqlite3_finalize(st);
	rc = txn_end(s, rc < 0 ? rc : 0, err, ctx);
	if (rc == 0)
		*sweep_id = sid;
	return rc;
}

int store_sweep_set_state(struct store *s, int64_t id, const char *state, struct tr_err *err)
{
	static const char sql[] = "UPDATE sweeps SET state = ?2, updated_at = ?3 WHERE id = ?1";
	const char *ctx = "recording a sweep's state";
	sqlite3_stmt *st = NULL;
	int rc;

	if (strcmp(state, "running") != 0 && strcmp(state, "paused") != 0 && strcmp(state, "killed") != 0)
		return tr_err_set(err, -EINVAL, "%s: '%.20s' is not a sweep's state", ctx, state);
	autocommit_begin(s);
	rc = prepare(s, &st, sql, err, ctx);
	if (rc < 0)
		return rc;
	rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, now_unix());
	if (rc != SQLITE_OK)
		rc = db_fail(s, rc, err, ctx);
	else
		rc = next_row(s, st, err, ctx);
	if (rc == 0 && sqlite3_changes(s->db) == 0)
		rc = tr_err_set(err, -ENOENT, "sweep %" PRId64 ": no such sweep", id);
	sqlite3_finalize(st);
	return rc < 0 ? rc : 0;
}

int store_sweep_delete(struct store *s, int64_t id, struct tr_err *err)
{
	const char *ctx = "removing a sweep";
	int rc;

	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	rc = exec_i64(s, "DELETE FROM sweep_trials WHERE sweep_id = ?1", &id, 1, err, ctx);
	if (rc >= 0)
		rc = exec_i64(s, "DELETE FROM sweep_lineage WHERE sweep_id = ?1", &id, 1, err, ctx);
	if (rc >= 0)
		rc = exec_i64(s, "DELETE FROM sweeps WHERE id = ?1", &id, 1, err, ctx);
	if (rc == 0)
		rc = tr_err_set(err, -ENOENT, "sweep %" PRId64 ": no such sweep", id);
	return txn_end(s, rc < 0 ? rc : 0, err, ctx);
}

#define SWEEP_COLUMNS "id, name, spec, state, created_at, updated_at"

/* A row of SWEEP_COLUMNS into the struct store_sweep at row (a row_reader). */
static int read_sweep(struct store *s, sqlite3_stmt *st, void *row, struct tr_err *err)
{
	struct store_sweep *sw = row;
	const unsigned char *name = sqlite3_column_text(st, 1);
	const unsigned char *state = sqlite3_column_text(st, 3);

	(void)s;
	memset(sw, 0, sizeof(*sw));
	sw->id = sqlite3_column_int64(st, 0);
	snprintf(sw->name, sizeof(sw->name), "%s", name ? (const char *)name : "");
	sw->killed = state && strcmp((const char *)state, "killed") == 0;
	sw->paused = state && strcmp((const char *)state, "paused") == 0;
	sw->created_at = sqlite3_column_int64(st, 4);
	sw->updated_at = sqlite3_column_int64(st, 5);
	sw->spec = dup_column_text(st, 2);
	if (!sw->spec)
		return tr_err_set(err, -ENOMEM, "sweep %" PRId64 ": out of memory", sw->id);
	return 0;
}

int store_sweep_get(struct store *s, int64_t id, struct store_sweep *out, struct tr_err *err)
{
	const char *ctx = "reading a sweep";
	sqlite3_stmt *st = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = prepare(s, &st, "SELECT " SWEEP_COLUMNS " FROM sweeps WHERE id = ?1", err, ctx);
	if (rc < 0)
		goto out;
	rc = bind_i64s(s, st, &id, 1, err, ctx);
	if (rc == 0)
		rc = next_row(s, st, err, ctx);
	if (rc == 0)
		rc = tr_err_set(err, -ENOENT, "sweep %" PRId64 ": no such sweep", id);
	else if (rc > 0)
		rc = read_sweep(s, st, out, err);
out:
	sqlite3_finalize(st);
	return rc < 0 ? rc : 0;
}

static void clear_sweep_row(void *row)
{
	store_sweep_clear(row);
}

int store_sweep_list(struct store *s, struct store_sweep **out, size_t *n, struct tr_err *err)
{
	static const char sql[] = "SELECT " SWEEP_COLUMNS " FROM sweeps ORDER BY id";

	return select_rows(s, sql, NULL, 0, sizeof(**out), read_sweep, clear_sweep_row, (void **)out, n,
			   err, "listing sweeps");
}

/* A row of store_sweep_trials' SELECT. */
static int read_trial_row(struct store *s, sqlite3_stmt *st, void *row, struct tr_err *err)
{
	struct store_trial *t = row;

	(void)s;
	memset(t, 0, sizeof(*t));
	t->trial = (uint32_t)sqlite3_column_int64(st, 0);
	t->job = sqlite3_column_int64(st, 1);
	t->state = state_from_column(sqlite3_column_text(st, 3));
	t->epoch = (uint32_t)sqlite3_column_int64(st, 4);
	t->epochs = (uint32_t)sqlite3_column_int64(st, 5);
	t->has_metric = sqlite3_column_type(st, 6) != SQLITE_NULL;
	t->metric = t->has_metric ? sqlite3_column_double(st, 6) : 0;
	t->params = dup_column_text(st, 2);
	if (!t->params)
		return tr_err_set(err, -ENOMEM, "reading a sweep's trials: out of memory");
	return 0;
}

static void clear_trial_row(void *row)
{
	free(((struct store_trial *)row)->params);
}

int store_sweep_trials(struct store *s, int64_t id, const char *metric, struct store_trial **out,
		       size_t *n, struct tr_err *err)
{
	static const char *const columns[] = { "val_loss", "val_acc", "val_macro_acc", "val_mae",
					       "val_rmse", "train_loss", "train_acc" };
	const char *ctx = "reading a sweep's trials";
	char sql[512];
	const char *col = NULL;

	*out = NULL;
	*n = 0;
	for (size_t i = 0; i < sizeof(columns) / sizeof(columns[0]); i++)
		if (strcmp(metric, columns[i]) == 0)
			col = columns[i];
	if (!col)
		return tr_err_set(err, -EINVAL, "%s: unknown metric '%.40s'", ctx, metric);
	/* the column name comes from the table above, never from the caller */
	snprintf(sql, sizeof(sql),
		 "SELECT t.trial, t.job_id, t.params, j.state, j.epoch, j.epochs, "
		 "(SELECT h.%s FROM history h WHERE h.job_id = j.id AND h.epoch = j.epoch) "
		 "FROM sweep_trials t JOIN jobs j ON j.id = t.job_id WHERE t.sweep_id = ?1 ORDER BY t.trial",
		 col);
	return select_rows(s, sql, &id, 1, sizeof(**out), read_trial_row, clear_trial_row, (void **)out, n, err,
			   ctx);
}

void store_sweep_clear(struct store_sweep *sw)
{
	if (!sw)
		return;
	free(sw->spec);
	sw->spec = NULL;
}

void store_sweeps_free(struct store_sweep *sw, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_sweep_clear(&sw[i]);
	free(sw);
}

void store_trials_free(struct store_trial *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].params);
	free(t);
}

/* ---- PBT's lineage (migration 0011) ------------------------------------- */

static int insert_lineage(struct store *s, int64_t sweep, uint32_t k, const struct store_pbt_row *r,
			  struct tr_err *err, const char *ctx)
{
	static const char sql[] =
		"INSERT INTO sweep_lineage (sweep_id, interval, trial, action, rank, ranked, metric, epoch,"
		" from_trial, from_job, job_id, params, prev_job)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
	const struct sqlv v[] = {
		SQLV_I64(sweep), SQLV_I64(k), SQLV_I64(r->trial), SQLV_TEXT(r->exploit ? "exploit" : "continue"),
		SQLV_I64(r->rank), SQLV_I64(r->ranked), SQLV_REAL(r->has_metric ? r->metric : NAN),
		SQLV_I64(r->epoch), SQLV_I64(r->from_trial), SQLV_I64(r->from_job), SQLV_I64(r->job),
		SQLV_TEXT(r->params), SQLV_I64(r->prev_job),
	};
	int rc = exec_values(s, sql, v, 13, err, ctx);

	return rc < 0 ? rc : 0;
}

int store_pbt_record(struct store *s, int64_t sweep, uint32_t k, struct store_pbt_row *rows, size_t n,
		     const struct store_pbt_job *jobs, size_t njobs, int64_t *job_ids, struct tr_err *err)
{
	const char *ctx = "recording a PBT decision";
	size_t next = 0;
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < njobs; i++)
		rc = check_from_args(jobs[i].job.name, jobs[i].job.config_json, JOB_QUEUED, jobs[i].blob,
				     jobs[i].len, jobs[i].checksum, &jobs[i].origin, err, ctx);
	if (rc < 0)
		return rc;
	rc = txn_begin(s, err, ctx);
	if (rc < 0)
		return rc;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct store_pbt_row *r = &rows[i];

		if (r->exploit) {
			const struct store_pbt_job *nj = &jobs[next];

			if (next >= njobs) {
				rc = tr_err_set(err, -EINVAL, "%s: more exploits than jobs", ctx);
				break;
			}
			rc = create_from_in_txn(s, nj->job.name, nj->job.config_json, nj->job.epochs, nj->job.keep,
						JOB_QUEUED, nj->blob, nj->len, nj->checksum, &nj->origin,
						&job_ids[next], err, ctx);
			if (rc >= 0 && nj->job.digest && nj->job.digest[0])
				rc = set_digest_in_txn(s, job_ids[next], nj->job.digest, err, ctx);
			if (rc >= 0)
				rc = exec_i64(s, "UPDATE sweep_trials SET job_id = ?3 WHERE sweep_id = ?1 AND trial = ?2",
					      (int64_t[]){ sweep, r->trial, job_ids[next] }, 3, err, ctx);
			if (rc == 0)   /* the rows it changed */
				rc = tr_err_set(err, -ENOENT, "%s: sweep %" PRId64 " has no trial %u", ctx, sweep, r->trial);
			if (rc < 0)
				break;
			r->job = job_ids[next++];
		}
		rc = insert_lineage(s, sweep, k, r, err, ctx);
	}
	return txn_end(s, rc < 0 ? rc : 0, err, ctx);
}

static int read_lineage_row(struct store *s, sqlite3_stmt *st, void *row, struct tr_err *err)
{
	struct store_pbt_row *r = row;
	const unsigned char *action = sqlite3_column_text(st, 2);

	(void)s;
	memset(r, 0, sizeof(*r));
	r->interval = (uint32_t)sqlite3_column_int64(st, 0);
	r->trial = (uint32_t)sqlite3_column_int64(st, 1);
	r->exploit = action && strcmp((const char *)action, "exploit") == 0;
	r->rank = (uint32_t)sqlite3_column_int64(st, 3);
	r->ranked = (uint32_t)sqlite3_column_int64(st, 4);
	r->has_metric = sqlite3_column_type(st, 5) != SQLITE_NULL;
	r->metric = r->has_metric ? sqlite3_column_double(st, 5) : NAN;
	r->epoch = (uint32_t)sqlite3_column_int64(st, 6);
	r->from_trial = (uint32_t)sqlite3_column_int64(st, 7);
	r->from_job = sqlite3_column_int64(st, 8);
	r->job = sqlite3_column_int64(st, 9);
	r->prev_job = sqlite3_column_int64(st, 11);
	r->params = r->params_owned = dup_column_text(st, 10);
	return r->params_owned ? 0 : tr_err_set(err, -ENOMEM, "reading a sweep's lineage: out of memory");
}

static void clear_lineage_row(void *row)
{
	free(((struct store_pbt_row *)row)->params_owned);
}

int store_pbt_lineage(struct store *s, int64_t sweep, struct store_pbt_row **out, size_t *n, struct tr_err *err)
{
	static const char sql[] =
		"SELECT interval, trial, action, rank, ranked, metric, epoch, from_trial, from_job, job_id, params,"
		" prev_job FROM sweep_lineage WHERE sweep_id = ?1 ORDER BY interval, trial";

	return select_rows(s, sql, &sweep, 1, sizeof(**out), read_lineage_row, clear_lineage_row, (void **)out, n,
			   err, "reading a sweep's lineage");
}

void store_pbt_rows_free(struct store_pbt_row *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(r[i].params_owned);
	free(r);
}
