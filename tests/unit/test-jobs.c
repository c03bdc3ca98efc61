/*
 * test-jobs.c - the daemon's jobs module (daemon/jobs/jobs.c with its runs
 * (runner/), the protocol's waiters and wire, the store thread, the loop
 * queue and the control socket around it) on a real libuv loop, in process,
 * training a tiny synthetic dataset in milliseconds.
 *
 * The daemon is built as main() builds it (daemon_new, daemon/daemon.h:
 * store, recovery, store thread, loopq, server on a socket, methods) on a
 * private loop, and driven through
 * its socket by a client in this thread: each wait for a reply runs the loop.
 * Every test tears it all down and ends with uv_loop_close() == 0.
 *
 * Faults are injected from outside the module by the linker (--wrap):
 *   - the allocator of traind's own code (malloc, calloc, realloc, strdup,
 *     posix_memalign): allocation number N after arming fails, once; the
 *     wrapper also tracks every live allocation, so a test can assert that
 *     nothing leaked once the daemon is torn down;
 *   - store_job_set_state: a gate that holds the store thread just before it
 *     records a given state, so a test can look at what clients are told
 *     while that state is not yet in the database.
 *
 * Tests:
 *   - the state clients see is the committed one: with the write of
 *     "paused" (Pause of a queued job), "queued" (Resume), "killed" (Kill of
 *     a queued job) and "done" (a job finishing) held, Status, List and a new
 *     Wait show the previous state, which the database still holds, and the
 *     verb is answered only once the write is done;
 *   - allocation failures: for every N, the Nth allocation on the path
 *     Start -> epochs committed -> finalize fails; the daemon answers with an
 *     error or records the job failed, keeps serving, every job settles (no
 *     event is lost), the jobs it lists are the jobs the database holds,
 *     nothing leaks, the loop closes.
 *
 * TEST_JOBS_FILTER=PATTERN runs only the matching tests; TEST_JOBS_TRACE=1
 * prints the stack of each allocation made to fail.
 */
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "tests/lib/testutil.h"
#include "traind/clock.h"
#include "daemon/daemon.h"
#include "daemon/jobs/jobs.h"
#include "daemon/core/log.h"
#include "daemon/core/loopq.h"
#include "daemon/proto/methods.h"
#include "daemon/proto/server.h"
#include "daemon/store/store.h"
#include "daemon/store/storeq.h"

/* ---- the allocator of traind's code, wrapped ------------------------------ */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
int __real_posix_memalign(void **p, size_t align, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
int __wrap_posix_memalign(void **p, size_t align, size_t n);
void __wrap_free(void *p);

static _Atomic long alloc_count;   /* allocations since fault_arm */
static _Atomic long fail_at = -1;  /* the one that fails; < 0: none */
static _Atomic long fail_hits;

/* Live allocations: an open-addressing set of pointers (linear probing,
 * deletion by backward shift), guarded by live_mu. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t *live;
static size_t live_cap, live_n;

static size_t slot_of(uintptr_t p, size_t cap)
{
	return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull) & (cap - 1);
}

static void live_insert_locked(uintptr_t p)
{
	size_t i = slot_of(p, live_cap);

	while (live[i])
		i = (i + 1) & (live_cap - 1);
	live[i] = p;
	live_n++;
}

static void live_add(void *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&live_mu);
	if ((live_n + 1) * 2 > live_cap) {
		uintptr_t *old = live;
		size_t ocap = live_cap;

		live_cap = ocap ? ocap * 2 : 1u << 14;
		live = __real_calloc(live_cap, sizeof(*live));
		if (!live)
			abort();
		live_n = 0;
		for (size_t i = 0; i < ocap; i++)
			if (old[i])
				live_insert_locked(old[i]);
		__real_free(old);
	}
	live_insert_locked((uintptr_t)p);
	pthread_mutex_unlock(&live_mu);
}

static void live_del(void *p)
{
	size_t i, j;

	if (!p)
		return;
	pthread_mutex_lock(&live_mu);
	if (!live_cap)
		goto out;
	for (i = slot_of((uintptr_t)p, live_cap); live[i] && live[i] != (uintptr_t)p;
	     i = (i + 1) & (live_cap - 1))
		;
	if (!live[i])
		goto out;   /* not ours: allocated inside a library */
	live[i] = 0;
	live_n--;
	/* Shift back the entries that probed past i. */
	for (j = (i + 1) & (live_cap - 1); live[j]; j = (j + 1) & (live_cap - 1)) {
		size_t home = slot_of(live[j], live_cap);

		if (((j - home) & (live_cap - 1)) >= ((j - i) & (live_cap - 1))) {
			live[i] = live[j];
			live[j] = 0;
			i = j;
		}
	}
out:
	pthread_mutex_unlock(&live_mu);
}

static size_t live_count(void)
{
	size_t n;

	pthread_mutex_lock(&live_mu);
	n = live_n;
	pthread_mutex_unlock(&live_mu);
	return n;
}

static bool inject(void)
{
	long at = atomic_load(&fail_at);

	if (at < 0 || atomic_fetch_add(&alloc_count, 1) != at)
		return false;
	atomic_fetch_add(&fail_hits, 1);
	if (getenv("TEST_JOBS_TRACE")) {
		void *bt[16];
		int n = backtrace(bt, 16);

		fprintf(stderr, "---- allocation %ld fails:\n", at);
		backtrace_symbols_fd(bt, n, 2);
	}
	return true;
}

void *__wrap_malloc(size_t n)
{
	void *p = inject() ? NULL : __real_malloc(n);

	live_add(p);
	return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
	void *p = inject() ? NULL : __real_calloc(n, size);

	live_add(p);
	return p;
}

void *__wrap_realloc(void *p, size_t n)
{
	void *q;

	if (inject())
		return NULL;
	q = __real_realloc(p, n);
	if (q || n == 0) {
		live_del(p);
		live_add(q);
	}
	return q;
}

char *__wrap_strdup(const char *s)
{
	char *p = inject() ? NULL : __real_strdup(s);

	live_add(p);
	return p;
}

int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
	int rc;

	if (inject())
		return ENOMEM;
	rc = __real_posix_memalign(p, align, n);
	if (rc == 0)
		live_add(*p);
	return rc;
}

void __wrap_free(void *p)
{
	live_del(p);
	__real_free(p);
}

static void fault_arm(long at)
{
	atomic_store(&alloc_count, 0);
	atomic_store(&fail_hits, 0);
	atomic_store(&fail_at, at);
}

/* Whether the armed allocation was reached (and failed). */
static bool fault_disarm(void)
{
	atomic_store(&fail_at, -1);
	return atomic_load(&fail_hits) > 0;
}

/* ---- a gate in front of the store's state writes ---------------------------- */

int __real_store_job_set_state(struct store *s, int64_t id, enum job_state state,
			       const char *last_error, struct tr_err *err);
int __wrap_store_job_set_state(struct store *s, int64_t id, enum job_state state,
			       const char *last_error, struct tr_err *err);

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int state;                     /* hold the write of this enum job_state; -1 = open */
	bool held;                     /* the store thread is waiting at the gate */
	bool release;
} gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, -1, false, false };

int __wrap_store_job_set_state(struct store *s, int64_t id, enum job_state state,
			       const char *last_error, struct tr_err *err)
{
	pthread_mutex_lock(&gate.mu);
	if (gate.state >= 0 && gate.state == (int)state) {
		gate.held = true;
		pthread_cond_broadcast(&gate.cond);
		while (!gate.release)
			pthread_cond_wait(&gate.cond, &gate.mu);
		gate.held = false;
		gate.state = -1;
	}
	pthread_mutex_unlock(&gate.mu);
	return __real_store_job_set_state(s, id, state, last_error, err);
}

static void gate_arm(enum job_state state)
{
	pthread_mutex_lock(&gate.mu);
	gate.state = (int)state;
	gate.release = false;
	pthread_mutex_unlock(&gate.mu);
}

static bool gate_held(void)
{
	bool h;

	pthread_mutex_lock(&gate.mu);
	h = gate.held;
	pthread_mutex_unlock(&gate.mu);
	return h;
}

static void gate_open(void)
{
	pthread_mutex_lock(&gate.mu);
	gate.release = true;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.mu);
}

/* ---- fixture: a data dir with a tiny dataset, an in-process daemon ----------- */

#define NCLIENTS 3
#define REPLY_TIMEOUT 20.0   /* seconds; a lost event shows as a timeout */

struct client {
	int fd;                 /* -1: not connected */
	char *buf;
	size_t len, cap;
};

struct fx {
	char dir[64];
	char data_dir[300];
	char db[300];
	char sock[100];           /* within sun_path's 108 bytes */
	uv_loop_t loop;
	struct daemon *d;
	struct client cl[NCLIENTS];
};

/* The job's configuration for Start: 40 training images, 5 steps an epoch. */
static json_t *tiny_config(int epochs)
{
	return json_pack("{s:s,s:i,s:i,s:i,s:i,s:[i],s:i}", "dataset", "tiny", "epochs", epochs,
			 "batch_size", 8, "eval_batch_size", 8, "val_size", 8, "hidden", 4, "threads", 1);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct dataset *syn;
	char tiny[400];
	int rc;
	struct stat st;
	/* A short path for the socket (108 bytes at most), and no fsync cost:
	 * /dev/shm when there is one. */
	const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
				   ? "/dev/shm"
				   : "/tmp";

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/test-jobs-XXXXXX", base);
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->data_dir, sizeof(f->data_dir), "%s/data", f->dir);
	snprintf(f->db, sizeof(f->db), "%s/traind.db", f->dir);
	snprintf(f->sock, sizeof(f->sock), "%s/s", f->dir);
	snprintf(tiny, sizeof(tiny), "%s/tiny", f->data_dir);
	if (mkdir(f->data_dir, 0755) < 0 || mkdir(tiny, 0755) < 0)
		return -1;
	syn = make_synthetic(48, 12, 4, 11);
	rc = write_idx_pair(tiny, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", &syn->train) < 0 ||
	     write_idx_pair(tiny, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", &syn->test) < 0;
	free_synthetic(syn);
	if (rc)
		return -1;
	for (int i = 0; i < NCLIENTS; i++)
		f->cl[i].fd = -1;
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

	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* The client's own buffers come from the real allocator: no fault is
 * injected into the test, and they are not the daemon's to leak. */
static void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	__real_free(c->buf);
	c->buf = NULL;
	c->len = c->cap = 0;
}

static void client_connect(struct fx *f, struct client *c)
{
	struct sockaddr_un sa;

	client_close(c);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(c->fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static int noop_fn(struct store *s, void *arg, struct tr_err *err)
{
	(void)s;
	(void)arg;
	(void)err;
	return 0;
}

static void daemon_up(struct fx *f, unsigned max_running)
{
	struct daemon_config cfg = {
		.loop = &f->loop,
		.db_path = f->db,
		.data_dir = f->data_dir,
		.max_running = max_running,
		.listen_fd = -1,
		.socket_path = f->sock,
	};
	struct tr_err err = { 0 };

	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(daemon_new(&f->d, &cfg, &err), 0);
	daemon_start(f->d);
	for (int i = 0; i < NCLIENTS; i++)
		client_connect(f, &f->cl[i]);
	/* Accepted before any fault is armed. */
	while (server_connections(f->d->server) < NCLIENTS)
		uv_run(&f->loop, UV_RUN_NOWAIT);
}

static bool jobs_busy(struct daemon *d)
{
	if (jobs_running(d->jobs))
		return true;
	for (size_t i = 0; i < jobs_count(d->jobs); i++)
		if (jobs_at(d->jobs, i)->worker_alive || jobs_at(d->jobs, i)->finalize_pending)
			return true;
	return false;
}


/* Every job is done or failed, nothing runs, nothing is in flight on the
 * thread pool or the store thread, and the loop has run what they posted. */
static bool settled_final(struct fx *f)
{
	struct daemon *d = f->d;

	if (jobs_busy(d) || f->loop.active_reqs.count > 0)
		return false;
	for (size_t i = 0; i < jobs_count(d->jobs); i++)
		if (jobs_at(d->jobs, i)->state != JOB_DONE && jobs_at(d->jobs, i)->state != JOB_FAILED)
			return false;
	storeq_call(d->sq, noop_fn, NULL, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	return !jobs_busy(d) && f->loop.active_reqs.count == 0;
}

/* Stop every worker, drain the store thread and the loop, close everything;
 * the loop must close with nothing left on it. */
static void daemon_down(struct fx *f)
{
	double deadline = clock_seconds() + REPLY_TIMEOUT;

	for (int i = 0; i < NCLIENTS; i++)
		client_close(&f->cl[i]);
	daemon_shutdown(f->d);
	while (jobs_busy(f->d) || f->loop.active_reqs.count > 0) {
		assert_true(clock_seconds() < deadline);
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(200);
	}
	storeq_call(f->d->sq, noop_fn, NULL, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	daemon_free(f->d);
	f->d = NULL;
	assert_int_equal(uv_loop_close(&f->loop), 0);
	unlink(f->sock);
}

/* Run the loop once and read what the client has; false on EOF. */
static bool pump(struct fx *f, struct client *c)
{
	uv_run(&f->loop, UV_RUN_NOWAIT);
	for (;;) {
		ssize_t n;

		if (c->fd < 0)
			return false;
		if (c->cap - c->len < 4096) {
			size_t ncap = c->cap ? c->cap * 2 : 1 << 16;
			char *nb = __real_realloc(c->buf, ncap);

			assert_non_null(nb);
			c->buf = nb;
			c->cap = ncap;
		}
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n > 0) {
			c->len += (size_t)n;
			continue;
		}
		if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
			return false;
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
		return true;
	}
}

static void send_call(struct client *c, const char *method, json_t *params)
{
	json_t *m = json_pack("{s:s,s:o}", "method", method, "parameters", params ? params : json_object());
	char *text = json_dumps(m, JSON_COMPACT);
	size_t len = strlen(text) + 1, off = 0;

	while (off < len) {
		ssize_t n = send(c->fd, text + off, len - off, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			usleep(100);
			continue;
		}
		if (n < 0)
			break;   /* the server closed: the reply wait sees EOF */
		off += (size_t)n;
	}
	free(text);
	json_decref(m);
}

/* The next complete reply, or NULL when the connection closed or nothing
 * came within `timeout` seconds (*timed_out tells which). */
static json_t *recv_reply(struct fx *f, struct client *c, double timeout, bool *timed_out)
{
	double deadline = clock_seconds() + timeout;

	if (timed_out)
		*timed_out = false;
	for (;;) {
		char *nul = c->len ? memchr(c->buf, '\0', c->len) : NULL;
		bool open;

		if (nul) {
			size_t n = (size_t)(nul - c->buf) + 1;
			json_t *m = json_loadb(c->buf, n - 1, 0, NULL);

			assert_non_null(m);
			memmove(c->buf, c->buf + n, c->len - n);
			c->len -= n;
			return m;
		}
		open = pump(f, c);
		if (!open)
			return NULL;
		if (clock_seconds() > deadline) {
			if (timed_out)
				*timed_out = true;
			return NULL;
		}
		usleep(100);
	}
}

/* A call and its reply; NULL if the server closed the connection (the client
 * is then reconnected). A reply that does not come within REPLY_TIMEOUT fails
 * the test: an event got lost. */
static json_t *rpc(struct fx *f, struct client *c, const char *method, json_t *params)
{
	bool timed_out;
	json_t *r;

	send_call(c, method, params);
	r = recv_reply(f, c, REPLY_TIMEOUT, &timed_out);
	if (timed_out)
		fail_msg("no reply to %s within %.0f s", method, REPLY_TIMEOUT);
	if (!r)
		client_connect(f, c);
	return r;
}

static const char *reply_error(json_t *r)
{
	return json_string_value(json_object_get(r, "error"));
}

static json_t *reply_params(json_t *r)
{
	return json_object_get(r, "parameters");
}

static int64_t start_job(struct fx *f, int epochs)
{
	json_t *r = rpc(f, &f->cl[0], "io.traind.Start", json_pack("{s:o}", "config", tiny_config(epochs)));
	int64_t id;

	assert_non_null(r);
	if (reply_error(r))
		fail_msg("Start: %s", json_dumps(r, 0));
	id = json_integer_value(json_object_get(reply_params(r), "id"));
	json_decref(r);
	assert_true(id > 0);
	return id;
}

/* The state Status shows, into buf. */
static void status_state(struct fx *f, struct client *c, int64_t id, char *buf, size_t len)
{
	json_t *r = rpc(f, c, "io.traind.Status", json_pack("{s:I}", "id", (json_int_t)id));

	assert_non_null(r);
	assert_null(reply_error(r));
	snprintf(buf, len, "%s", json_string_value(json_object_get(json_object_get(reply_params(r), "job"),
								 "state")));
	json_decref(r);
}

/* The state List shows for job id. */
static void list_state(struct fx *f, struct client *c, int64_t id, char *buf, size_t len)
{
	json_t *r = rpc(f, c, "io.traind.List", NULL);
	json_t *jobs, *j;
	size_t i;

	assert_non_null(r);
	assert_null(reply_error(r));
	buf[0] = '\0';
	jobs = json_object_get(reply_params(r), "jobs");
	json_array_foreach(jobs, i, j)
		if (json_integer_value(json_object_get(j, "id")) == id)
			snprintf(buf, len, "%s", json_string_value(json_object_get(j, "state")));
	json_decref(r);
}

/* The state the database holds, read from the side. */
static void db_state(struct fx *f, int64_t id, char *buf, size_t len)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	buf[0] = '\0';
	assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT state FROM jobs WHERE id = ?1", -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static int64_t db_jobs(struct fx *f)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t n = -1;

	assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM jobs", -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* Run the loop until the store thread waits at the gate. */
static void wait_gate(struct fx *f)
{
	double deadline = clock_seconds() + REPLY_TIMEOUT;

	while (!gate_held()) {
		assert_true(clock_seconds() < deadline);
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(200);
	}
}

/* ---- the state clients see is the committed one --------------------------- */

/* With the write of `next` held at the gate: Status, List and the database
 * agree on `before`; a Wait for `next` issued now is not answered; `pending`
 * (a verb's call on client 0, or NULL) is not answered either. Then the gate
 * opens: the verb (if any) answers `next`, the Wait answers, Status says next. */
static void check_held_then_durable(struct fx *f, int64_t id, const char *before, const char *next,
				    const char *pending)
{
	char st[32], lst[32], dbst[32];
	bool timed_out;
	json_t *r;

	wait_gate(f);
	status_state(f, &f->cl[1], id, st, sizeof(st));
	list_state(f, &f->cl[1], id, lst, sizeof(lst));
	db_state(f, id, dbst, sizeof(dbst));
	assert_string_equal(dbst, before);
	if (strcmp(st, before) != 0 || strcmp(lst, before) != 0)
		fail_msg("while '%s' is not yet in the database (it holds '%s'), Status says '%s' and "
			 "List '%s'", next, dbst, st, lst);
	send_call(&f->cl[2], "io.traind.Wait",
		  json_pack("{s:I,s:[s]}", "id", (json_int_t)id, "states", next));
	r = recv_reply(f, &f->cl[2], 0.3, &timed_out);
	if (r)
		fail_msg("a Wait for '%s' was answered before it was durable: %s", next, json_dumps(r, 0));
	assert_true(timed_out);
	if (pending) {
		r = recv_reply(f, &f->cl[0], 0.05, &timed_out);
		if (r)
			fail_msg("%s was answered before its state was durable: %s", pending, json_dumps(r, 0));
	}

	gate_open();
	if (pending) {
		r = recv_reply(f, &f->cl[0], REPLY_TIMEOUT, NULL);
		assert_non_null(r);
		if (reply_error(r))
			fail_msg("%s: %s", pending, json_dumps(r, 0));
		assert_string_equal(json_string_value(json_object_get(reply_params(r), "state")), next);
		json_decref(r);
	}
	r = recv_reply(f, &f->cl[2], REPLY_TIMEOUT, NULL);
	assert_non_null(r);
	assert_null(reply_error(r));
	assert_string_equal(json_string_value(json_object_get(json_object_get(reply_params(r), "job"),
								"state")), next);
	json_decref(r);
	db_state(f, id, dbst, sizeof(dbst));
	assert_string_equal(dbst, next);
	status_state(f, &f->cl[1], id, st, sizeof(st));
	assert_string_equal(st, next);
}

static void test_verbs_answer_durable_states(void **state)
{
	struct fx *f = *state;
	size_t before = live_count();
	int64_t id;

	daemon_up(f, 0);   /* nothing runs: the job stays queued */
	id = start_job(f, 2);

	gate_arm(JOB_PAUSED);
	send_call(&f->cl[0], "io.traind.Pause", json_pack("{s:I}", "id", (json_int_t)id));
	check_held_then_durable(f, id, "queued", "paused", "Pause");

	gate_arm(JOB_QUEUED);
	send_call(&f->cl[0], "io.traind.Resume", json_pack("{s:I}", "id", (json_int_t)id));
	check_held_then_durable(f, id, "paused", "queued", "Resume");

	gate_arm(JOB_KILLED);
	send_call(&f->cl[0], "io.traind.Kill", json_pack("{s:I}", "id", (json_int_t)id));
	check_held_then_durable(f, id, "queued", "killed", "Kill");

	daemon_down(f);
	assert_int_equal(live_count(), before);
}

static void test_done_shown_once_durable(void **state)
{
	struct fx *f = *state;
	size_t before = live_count();
	int64_t id;

	daemon_up(f, 1);
	gate_arm(JOB_DONE);
	id = start_job(f, 2);
	/* The worker trains both epochs, they commit, the loop finalizes and
	 * asks for "done": held. */
	check_held_then_durable(f, id, "running", "done", NULL);
	daemon_down(f);
	assert_int_equal(live_count(), before);
}

/* A connection traind has no memory for is closed at once, and the next one
 * is accepted and served (libuv stops watching the listener until its
 * pending connection is taken: a connection left unaccepted would end all
 * accepting for good). */
static void test_connection_without_memory(void **state)
{
	struct fx *f = *state;
	size_t before = live_count();
	struct client c = { .fd = -1 }, next = { .fd = -1 };
	double deadline;
	json_t *r;

	daemon_up(f, 1);
	for (int round = 0; round < 2; round++) {
		fault_arm(0);   /* the connection's own allocation */
		client_connect(f, &c);
		deadline = clock_seconds() + REPLY_TIMEOUT;
		while (pump(f, &c)) {
			assert_true(clock_seconds() < deadline);
			usleep(100);
		}
		assert_true(fault_disarm());
		client_connect(f, &next);
		send_call(&next, "org.varlink.service.GetInfo", NULL);
		r = recv_reply(f, &next, REPLY_TIMEOUT, NULL);
		if (!r)
			fail_msg("round %d: the connection after a refused one is not served", round);
		assert_non_null(json_object_get(json_object_get(r, "parameters"), "vendor"));
		json_decref(r);
	}
	client_close(&c);
	client_close(&next);
	daemon_down(f);
	assert_int_equal(live_count(), before);
}

/* ---- allocation failures on Start -> commit -> finalize ---------------------- */

static void test_allocation_failures(void **state)
{
	struct fx *f = *state;
	long n, errors = 0, failed_jobs = 0, done_jobs = 0, dropped = 0;

	for (n = 0;; n++) {
		json_t *r, *jobs, *j;
		size_t i, before = live_count();
		double deadline;
		bool hit;

		daemon_up(f, 1);
		fault_arm(n);
		r = rpc(f, &f->cl[0], "io.traind.Start",
			json_pack("{s:o,s:s}", "config", tiny_config(2), "name", "oom"));
		if (!r) {
			dropped++;   /* the server closed the connection: no reply buffer */
		} else if (reply_error(r)) {
			const char *e = reply_error(r);

			if (strcmp(e, "io.traind.StorageError") != 0 && strcmp(e, "io.traind.DatasetError") != 0 &&
			    strcmp(e, "io.traind.InvalidParameter") != 0 && strcmp(e, "io.traind.ProtocolError") != 0)
				fail_msg("allocation %ld: Start answered %s", n, json_dumps(r, 0));
			errors++;
		}
		json_decref(r);
		/* Every job the daemon knows settles in done or failed (a lost
		 * event would leave it running or stopping for ever). The loop is
		 * run here, without client calls that would allocate too. */
		deadline = clock_seconds() + REPLY_TIMEOUT;
		while (!settled_final(f)) {
			if (clock_seconds() > deadline)
				fail_msg("allocation %ld failed: a job never settled", n);
			uv_run(&f->loop, UV_RUN_NOWAIT);
			usleep(200);
		}
		hit = fault_disarm();
		/* The daemon still serves; it knows the jobs the database holds
		 * (at most the one). */
		r = rpc(f, &f->cl[1], "io.traind.List", NULL);
		assert_non_null(r);
		assert_null(reply_error(r));
		jobs = json_object_get(reply_params(r), "jobs");
		assert_true(json_array_size(jobs) <= 1);
		if ((int64_t)json_array_size(jobs) != db_jobs(f))
			fail_msg("allocation %ld failed: the daemon lists %zu jobs, the database holds %" PRId64,
				 n, json_array_size(jobs), db_jobs(f));
		json_array_foreach(jobs, i, j) {
			if (strcmp(json_string_value(json_object_get(j, "state")), "done") == 0)
				done_jobs++;
			else
				failed_jobs++;
		}
		json_decref(r);
		daemon_down(f);
		if (live_count() != before)
			fail_msg("allocation %ld failed: %zu allocations leaked", n, live_count() - before);
		/* A fresh database for the next round. */
		{
			char path[400];

			unlink(f->db);
			snprintf(path, sizeof(path), "%s-wal", f->db);
			unlink(path);
			snprintf(path, sizeof(path), "%s-shm", f->db);
			unlink(path);
		}
		if (!hit)
			break;   /* the whole path ran with fewer than n + 1 allocations */
	}
	print_message("%ld allocations on the path, each failed once: %ld error replies, %ld connections "
		      "closed, %ld jobs failed, %ld done\n", n, errors, dropped, failed_jobs, done_jobs);
	assert_true(n > 50);
	assert_true(errors + dropped + failed_jobs > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_verbs_answer_durable_states, setup, teardown),
		cmocka_unit_test_setup_teardown(test_done_shown_once_durable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_allocation_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_without_memory, setup, teardown),
	};

	log_init();
	log_set_verbose(0);
	if (getenv("TEST_JOBS_FILTER"))
		cmocka_set_test_filter(getenv("TEST_JOBS_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
