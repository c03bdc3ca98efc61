/*
 * powercut.c - an LD_PRELOAD shim for scripts/torture --power: makes the
 * process lose power, as far as its SQLite database is concerned.
 *
 * SIGKILL keeps every byte the kernel has accepted; a power cut keeps only
 * what was fsynced. So the shim keeps, per database file, an undo log of every
 * change since that file's last successful fsync/fdatasync: for a write the
 * bytes it overwrote, the file's size before it and the bytes written; for a
 * truncation the size before it and the bytes it cut off. A successful sync
 * of the file empties its log. At the cut it takes the lock every logged call
 * holds, so no change to these files is in progress or can start, rolls each
 * file back to its state at its last sync (the log undone newest first: old
 * bytes back, old size back), lets some of the unsynced changes survive
 * according to POWERCUT_LOSS, appends one line of figures to POWERCUT_REPORT
 * and SIGKILLs the process. The next process reads what the disk would have
 * held after the power came back.
 *
 * Tracked files: POWERCUT_DB, POWERCUT_DB-wal and POWERCUT_DB-journal (by the
 * canonical path /proc/self/fd shows). Not the -shm: SQLite never syncs it
 * and does not trust it after a crash: the first connection to open the
 * database when no other process has it open takes the DMS lock, truncates
 * the -shm and rebuilds the wal-index from the WAL (unixLockSharedMemory).
 * The killed process's -shm, which indexes WAL frames this shim has just
 * thrown away, is left in place: the next opener must ignore it. Creating,
 * deleting and renaming files are treated as durable (SQLite syncs the
 * directory after creating a journal or WAL); a deleted file's log is dropped.
 * Wrapped: write, writev, pwrite(64), ftruncate(64), fsync, fdatasync and
 * unlink, which covers SQLite's unix VFS (Debian's libsqlite3 imports
 * pwrite64, write, ftruncate64, fdatasync and unlink; its memory map of the
 * database is read-only, and off unless mmap_size is set, which traind does
 * not do).
 *
 * Which unsynced changes survive (POWERCUT_LOSS):
 *   drop     none: every file is exactly as it was at its last sync (default)
 *   tear     none, except the last change before the cut (the one in flight),
 *            which keeps a prefix ending on a 512-byte sector boundary of the
 *            file (possibly empty)
 *   reorder  each change independently, in order: lost, kept whole or kept
 *            as a sector-aligned prefix (the disk's cache wrote some of them
 *            in any order); bytes outside the written ranges never change
 *            (SQLite's "powersafe overwrite")
 *
 * Environment:
 *   POWERCUT_DB      the database's canonical path; unset: pass-through
 *   POWERCUT_REPORT  file the cut appends its line of figures to
 *   POWERCUT_AFTER   N > 0: cut right after the Nth write to a tracked file
 *                    since the process started (the write may be torn)
 *   POWERCUT_LOSS    drop | tear | reorder
 *   POWERCUT_SEED    seed of the choices of tear and reorder
 * and the signal SIGUSR2 cuts at once (from any thread, at any moment).
 *
 * The report line: "cut pid=P trigger=signal|after loss=L writes=W syncs=S
 * unsynced_ops=O db_unsynced_ops=DO wal_unsynced_ops=WO lost_ops=LO
 * torn_ops=T lost_bytes=B kept_bytes=K db_lost_bytes=DB wal_lost_bytes=WB":
 * W and S count the process's tracked writes and syncs, O the changes not
 * yet synced at the cut (DO in the database, WO in the WAL), LO and T the
 * writes that were lost whole or torn, B the written bytes the cut threw away
 * and K those it kept.
 *
 * Threads: every wrapper that touches a tracked file holds `lock` around the
 * real call and its log entry; SIGUSR2's handler only posts a semaphore that
 * the shim's own thread (all signals blocked) waits on. An allocation failure
 * in the shim aborts the process (it could no longer model the disk).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#undef _FILE_OFFSET_BITS   /* define ftruncate and ftruncate64 both, as libc does */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define SECTOR 512
#define NFILES 3          /* the database, its -wal, its -journal */

/* One change to a tracked file since its last sync. */
struct op {
	bool trunc;             /* a truncation (else a write) */
	off64_t off;            /* write: offset; truncation: the new size */
	size_t len;             /* write: bytes written */
	off64_t old_size;       /* the file's size before the change */
	size_t nold;            /* bytes of old content saved in old */
	unsigned char *old;     /* the bytes the change overwrote or cut off */
	unsigned char *data;    /* write: the bytes written */
	uint64_t seq;           /* order of the change among all files */
};

struct file {
	char path[4096];        /* canonical path */
	struct op *ops;         /* changes since the last sync, oldest first */
	size_t nops, cap;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct file files[NFILES];
static bool active;             /* POWERCUT_DB set */
static uint64_t seq;            /* changes made (under lock) */
static uint64_t nwrites, nsyncs; /* tracked writes and syncs (under lock) */
static uint64_t cut_after;      /* POWERCUT_AFTER */
static uint64_t rng;            /* xorshift state (under lock) */
static sem_t cut_sem;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_unlink)(const char *);

static void resolve(void)
{
	*(void **)&real_write = dlsym(RTLD_NEXT, "write");
	*(void **)&real_writev = dlsym(RTLD_NEXT, "writev");
	*(void **)&real_pwrite = dlsym(RTLD_NEXT, "pwrite");
	*(void **)&real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
	*(void **)&real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
	*(void **)&real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
	*(void **)&real_fsync = dlsym(RTLD_NEXT, "fsync");
	*(void **)&real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
	*(void **)&real_unlink = dlsym(RTLD_NEXT, "unlink");
}

static pthread_once_t resolved = PTHREAD_ONCE_INIT;
#define RESOLVE() pthread_once(&resolved, resolve)

static _Noreturn void die(const char *what)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "powercut: %s: %s\n", what, strerror(errno));

	if (n > 0)
		real_write(2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
	abort();
}

static uint64_t rand64(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* The tracked file fd refers to, or NULL. */
static struct file *tracked(int fd)
{
	char link[64], target[4096];
	ssize_t n;

	if (!active || fd < 0)
		return NULL;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return NULL;
	target[n] = 0;
	for (int i = 0; i < NFILES; i++)
		if (strcmp(target, files[i].path) == 0)
			return &files[i];
	return NULL;
}

static struct file *tracked_path(const char *path)
{
	char dir[4096], real[4096];
	const char *slash = strrchr(path, '/');
	size_t dl;

	if (!active)
		return NULL;
	/* the directory canonical, the name as given (it may not exist) */
	if (!slash) {
		snprintf(dir, sizeof(dir), ".");
	} else {
		dl = (size_t)(slash - path);
		if (dl >= sizeof(dir))
			return NULL;
		memcpy(dir, path, dl);
		dir[dl ? dl : 1] = 0;
		if (!dl)
			dir[0] = '/';
	}
	if (!realpath(dir, real))
		return NULL;
	for (int i = 0; i < NFILES; i++) {
		size_t rl = strlen(real);
		const char *p = files[i].path;

		if (strncmp(p, real, rl) == 0 && p[rl] == '/' &&
		    strcmp(p + rl + 1, slash ? slash + 1 : path) == 0)
			return &files[i];
	}
	return NULL;
}

static struct op *op_new(struct file *f)
{
	struct op *o;

	if (f->nops == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 64;
		struct op *ops = realloc(f->ops, cap * sizeof(*ops));

		if (!ops)
			die("out of memory");
		f->ops = ops;
		f->cap = cap;
	}
	o = &f->ops[f->nops++];
	memset(o, 0, sizeof(*o));
	o->seq = ++seq;
	return o;
}

static void ops_clear(struct file *f)
{
	for (size_t i = 0; i < f->nops; i++) {
		free(f->ops[i].old);
		free(f->ops[i].data);
	}
	f->nops = 0;
}

static off64_t file_size(int fd)
{
	struct stat64 st;

	if (fstat64(fd, &st) != 0)
		die("fstat");
	return st.st_size;
}

/* Save what a write of len bytes at off is about to overwrite. */
static struct op *before_write(struct file *f, int fd, size_t len, off64_t off)
{
	struct op *o = op_new(f);
	ssize_t n;

	o->off = off;
	o->old_size = file_size(fd);
	if (off < o->old_size) {
		o->nold = (size_t)(o->old_size - off) < len ? (size_t)(o->old_size - off) : len;
		o->old = malloc(o->nold);
		if (!o->old)
			die("out of memory");
		n = pread64(fd, o->old, o->nold, off);
		if (n != (ssize_t)o->nold)
			die("pread of the bytes a write replaces");
	}
	return o;
}

static void cut(const char *trigger);

/* After the real write returned n: keep the bytes written, or forget the
 * entry if nothing was written. The caller holds lock. */
static void after_write(struct file *f, struct op *o, const void *buf, ssize_t n)
{
	if (n <= 0) {
		free(o->old);
		f->nops--;
		return;
	}
	o->len = (size_t)n;
	o->data = malloc(o->len);
	if (!o->data)
		die("out of memory");
	memcpy(o->data, buf, o->len);
	if (++nwrites == cut_after)
		cut("after");
}

static ssize_t logged_pwrite(struct file *f, int fd, const void *buf, size_t len, off64_t off)
{
	struct op *o;
	ssize_t n;
	int e;

	pthread_mutex_lock(&lock);
	o = before_write(f, fd, len, off);
	n = real_pwrite64(fd, buf, len, off);
	e = errno;
	after_write(f, o, buf, n);
	pthread_mutex_unlock(&lock);
	errno = e;
	return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	struct file *f;

	RESOLVE();
	f = tracked(fd);
	if (!f)
		return real_pwrite64(fd, buf, len, off);
	return logged_pwrite(f, fd, buf, len, off);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	struct file *f;

	RESOLVE();
	f = tracked(fd);
	if (!f)
		return real_pwrite(fd, buf, len, off);
	return logged_pwrite(f, fd, buf, len, off);
}

/* write and writev at the file offset (or its end under O_APPEND). */
static off64_t current_offset(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0 && (fl & O_APPEND))
		return file_size(fd);
	return lseek64(fd, 0, SEEK_CUR);
}

ssize_t write(int fd, const void *buf, size_t len)
{
	struct file *f;
	struct op *o;
	ssize_t n;
	int e;

	RESOLVE();
	f = tracked(fd);
	if (!f)
		return real_write(fd, buf, len);
	pthread_mutex_lock(&lock);
	o = before_write(f, fd, len, current_offset(fd));
	n = real_write(fd, buf, len);
	e = errno;
	after_write(f, o, buf, n);
	pthread_mutex_unlock(&lock);
	errno = e;
	return n;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct file *f;
	struct op *o;
	unsigned char *flat;
	size_t len = 0, at = 0;
	ssize_t n;
	int e;

	RESOLVE();
	f = tracked(fd);
	if (!f)
		return real_writev(fd, iov, iovcnt);
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	flat = malloc(len ? len : 1);
	if (!flat)
		die("out of memory");
	for (int i = 0; i < iovcnt; i++) {
		memcpy(flat + at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
	pthread_mutex_lock(&lock);
	o = before_write(f, fd, len, current_offset(fd));
	n = real_writev(fd, iov, iovcnt);
	e = errno;
	after_write(f, o, flat, n);
	pthread_mutex_unlock(&lock);
	free(flat);
	errno = e;
	return n;
}

static int logged_truncate(struct file *f, int fd, off64_t size)
{
	struct op *o;
	int rc, e;

	pthread_mutex_lock(&lock);
	o = op_new(f);
	o->trunc = true;
	o->off = size;
	o->old_size = file_size(fd);
	if (size < o->old_size) {
		o->nold = (size_t)(o->old_size - size);
		o->old = malloc(o->nold);
		if (!o->old)
			die("out of memory");
		if (pread64(fd, o->old, o->nold, size) != (ssize_t)o->nold)
			die("pread of the bytes a truncation cuts off");
	}
	rc = real_ftruncate64(fd, size);
	e = errno;
	if (rc != 0) {
		free(o->old);
		f->nops--;
	}
	pthread_mutex_unlock(&lock);
	errno = e;
	return rc;
}

int ftruncate64(int fd, off64_t size)
{
	struct file *f;

	RESOLVE();
	f = tracked(fd);
	if (!f)
		return real_ftruncate64(fd, size);
	return logged_truncate(f, fd, size);
}

int ftruncate(int fd, off_t size)
{
	struct file *f;

	RESOLVE();
	f = tracked(fd);
	if (!f)
		return real_ftruncate(fd, size);
	return logged_truncate(f, fd, size);
}

/* A successful sync makes the file's changes durable: forget them. */
static int logged_sync(int fd, int (*real)(int))
{
	struct file *f = tracked(fd);
	int rc, e;

	if (!f)
		return real(fd);
	pthread_mutex_lock(&lock);
	rc = real(fd);
	e = errno;
	if (rc == 0) {
		ops_clear(f);
		nsyncs++;
	}
	pthread_mutex_unlock(&lock);
	errno = e;
	return rc;
}

int fsync(int fd)
{
	RESOLVE();
	return logged_sync(fd, real_fsync);
}

int fdatasync(int fd)
{
	RESOLVE();
	return logged_sync(fd, real_fdatasync);
}

int unlink(const char *path)
{
	struct file *f;
	int rc, e;

	RESOLVE();
	f = tracked_path(path);
	if (!f)
		return real_unlink(path);
	pthread_mutex_lock(&lock);
	rc = real_unlink(path);
	e = errno;
	if (rc == 0)
		ops_clear(f);
	pthread_mutex_unlock(&lock);
	errno = e;
	return rc;
}

/* ---- the cut -------------------------------------------------------------- */

struct figures {
	uint64_t unsynced_ops, lost_ops, torn_ops, lost_bytes, kept_bytes;
	uint64_t file_ops[NFILES], file_lost[NFILES];
};

static void put(int fd, const void *buf, size_t len, off64_t off)
{
	if (len && real_pwrite64(fd, buf, len, off) != (ssize_t)len)
		die("restoring a file");
}

static void resize(int fd, off64_t size)
{
	if (real_ftruncate64(fd, size) != 0)
		die("restoring a file's size");
}

/* How many of the write's bytes reach the disk when it is torn: up to a
 * sector boundary of the file inside the write, chosen at random (0 when the
 * write does not cross one). */
static size_t torn_length(const struct op *o)
{
	off64_t first = (o->off / SECTOR + 1) * SECTOR, end = o->off + (off64_t)o->len;
	uint64_t nb;

	if (first >= end)
		return 0;
	nb = (uint64_t)((end - 1 - first) / SECTOR + 1);   /* boundaries in (off, end) */
	return (size_t)(first + (off64_t)(rand64() % nb) * SECTOR - o->off);
}

/* Roll f back to its last sync, then replay the changes that survive. */
static void restore(struct file *f, int which, const char *loss, uint64_t last_seq,
		    struct figures *fig)
{
	bool reorder = strcmp(loss, "reorder") == 0, tear = strcmp(loss, "tear") == 0;
	int fd;

	if (!f->nops)
		return;
	fd = open(f->path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("opening a file to restore");
	/* Newest first, each change undone: the size it found, then the bytes
	 * it overwrote (a write) or cut off (a truncation to o->off). */
	for (size_t i = f->nops; i-- > 0;) {
		const struct op *o = &f->ops[i];

		resize(fd, o->old_size);
		put(fd, o->old, o->nold, o->off);
	}
	for (size_t i = 0; i < f->nops; i++) {
		const struct op *o = &f->ops[i];
		size_t keep = 0;

		fig->unsynced_ops++;
		fig->file_ops[which]++;
		if (o->trunc) {
			if (reorder && rand64() % 2)
				resize(fd, o->off);
			continue;
		}
		if (reorder) {
			switch (rand64() % 3) {
			case 0: keep = 0; break;
			case 1: keep = o->len; break;
			default: keep = torn_length(o); break;
			}
		} else if (tear && o->seq == last_seq) {
			keep = torn_length(o);
		}
		put(fd, o->data, keep, o->off);
		if (keep == 0)
			fig->lost_ops++;
		else if (keep < o->len)
			fig->torn_ops++;
		fig->lost_bytes += o->len - keep;
		fig->file_lost[which] += o->len - keep;
		fig->kept_bytes += keep;
	}
	close(fd);
}

/* The power goes. The caller holds lock (and keeps it: no tracked change
 * can happen any more). */
static void cut(const char *trigger)
{
	const char *loss = getenv("POWERCUT_LOSS"), *report = getenv("POWERCUT_REPORT");
	struct figures fig = { 0 };
	uint64_t last = 0;
	char line[512];
	int n, fd;

	if (!loss || !*loss)
		loss = "drop";
	for (int i = 0; i < NFILES; i++)
		if (files[i].nops && files[i].ops[files[i].nops - 1].seq > last)
			last = files[i].ops[files[i].nops - 1].seq;
	for (int i = 0; i < NFILES; i++)
		restore(&files[i], i, loss, last, &fig);
	n = snprintf(line, sizeof(line),
		     "cut pid=%ld trigger=%s loss=%s writes=%llu syncs=%llu unsynced_ops=%llu "
		     "db_unsynced_ops=%llu wal_unsynced_ops=%llu lost_ops=%llu torn_ops=%llu "
		     "lost_bytes=%llu kept_bytes=%llu db_lost_bytes=%llu wal_lost_bytes=%llu\n",
		     (long)getpid(), trigger, loss, (unsigned long long)nwrites,
		     (unsigned long long)nsyncs, (unsigned long long)fig.unsynced_ops,
		     (unsigned long long)fig.file_ops[0], (unsigned long long)fig.file_ops[1],
		     (unsigned long long)fig.lost_ops, (unsigned long long)fig.torn_ops,
		     (unsigned long long)fig.lost_bytes, (unsigned long long)fig.kept_bytes,
		     (unsigned long long)fig.file_lost[0], (unsigned long long)fig.file_lost[1]);
	if (n > 0 && (size_t)n < sizeof(line)) {
		real_write(2, "powercut: ", 10);
		real_write(2, line, (size_t)n);
		if (report && *report) {
			fd = open(report, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
			if (fd >= 0) {
				real_write(fd, line, (size_t)n);
				close(fd);
			}
		}
	}
	kill(getpid(), SIGKILL);
	for (;;)
		pause();
}

static void on_signal(int sig)
{
	(void)sig;
	sem_post(&cut_sem);   /* async-signal-safe */
}

static void *cut_thread(void *arg)
{
	(void)arg;
	while (sem_wait(&cut_sem) != 0)
		;
	pthread_mutex_lock(&lock);
	cut("signal");
	return NULL;
}

__attribute__((constructor)) static void powercut_init(void)
{
	const char *db = getenv("POWERCUT_DB"), *after = getenv("POWERCUT_AFTER");
	const char *seed = getenv("POWERCUT_SEED");
	static const char *suffix[NFILES] = { "", "-wal", "-journal" };
	struct sigaction sa;
	sigset_t all, old;
	pthread_t t;

	RESOLVE();
	if (!db || !*db)
		return;
	for (int i = 0; i < NFILES; i++)
		if ((size_t)snprintf(files[i].path, sizeof(files[i].path), "%s%s", db, suffix[i]) >=
		    sizeof(files[i].path))
			die("POWERCUT_DB too long");
	cut_after = after ? strtoull(after, NULL, 10) : 0;
	rng = (seed ? strtoull(seed, NULL, 10) : 0) * 0x9e3779b97f4a7c15ull + 1;
	if (sem_init(&cut_sem, 0, 0) != 0)
		die("sem_init");
	/* the thread blocks every signal; the handler only posts */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&t, NULL, cut_thread, NULL) != 0)
		die("pthread_create");
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_detach(t);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR2, &sa, NULL) != 0)
		die("sigaction");
	active = true;
}
