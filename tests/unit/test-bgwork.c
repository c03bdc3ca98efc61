/*
 * test-bgwork.c - the background work's queues (daemon/proto/bgwork.c) on a
 * real libuv loop and a real control socket (daemon/proto/server.c), in
 * process: a dispatch function of the test's own submits heavy tasks
 * ("t.Heavy", held on a gate until the test opens it) and reads ("t.Read"),
 * and a client in this thread drives them through the socket; each wait
 * for a reply runs the loop.
 *
 * All the connections are of one uid (the test's), so this checks what
 * one uid gets: the slots (at most 2 heavy tasks at once of libuv's 4
 * threads, 3 in all), a read answered while every heavy slot is held, the
 * uid's queue capped at BG_MAX_UID_QUEUED (TooManyRequests naming it), a
 * closed connection's waiting task released without running, every other
 * task answered in order once the gate opens, the loop closing clean. The
 * round robin across uids needs other uids: tests/daemon/test_starve.py
 * (the Eval flood, as nobody).
 *
 * Work that answers no call (bg_post, a PBT sweep's exploits) takes the
 * uid it is given: 72 posted for another uid hold both heavy slots and
 * wait past BG_MAX_UID_QUEUED without a refusal; a call of the test's uid
 * behind them runs in its round-robin turn (the fourth to start), not
 * after them; every posted task's done runs once, on the loop.
 */
#include <errno.h>
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
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/proto/bgwork.h"
#include "daemon/proto/server.h"

#define NCONN (BG_MAX_UID_QUEUED + 6)   /* 2 running + 64 waiting + 4 refused */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static atomic_int running_heavy, running_all, max_heavy, max_all, works;
/* test_posted: its own gate, and the order the tasks started in */
static pthread_mutex_t post_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t post_cv = PTHREAD_COND_INITIALIZER;
static bool post_open;
static atomic_int started;

static struct {
	uv_loop_t loop;
	struct server *srv;
	struct bgwork *bg;
	char path[108];
	int dispatched, released;
} T;

static void note_max(atomic_int *max, int v)
{
	int m = atomic_load(max);

	while (v > m && !atomic_compare_exchange_weak(max, &m, v))
		;
}

static void heavy_work(struct bg_task *t)
{
	note_max(&max_heavy, atomic_fetch_add(&running_heavy, 1) + 1);
	note_max(&max_all, atomic_fetch_add(&running_all, 1) + 1);
	atomic_fetch_add(&works, 1);
	pthread_mutex_lock(&gate_mu);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	t->result = json_pack("{s:b}", "heavy", 1);
	atomic_fetch_sub(&running_all, 1);
	atomic_fetch_sub(&running_heavy, 1);
}

static void read_work(struct bg_task *t)
{
	note_max(&max_all, atomic_fetch_add(&running_all, 1) + 1);
	t->result = json_pack("{s:b}", "read", 1);
	atomic_fetch_sub(&running_all, 1);
}

/* t.Mark: when it started, among test_posted's tasks. */
static void mark_work(struct bg_task *t)
{
	t->result = json_pack("{s:i}", "started", atomic_fetch_add(&started, 1));
}

static void task_release(struct bg_task *t)
{
	T.released++;
	free(t);
}

static void dispatch(void *ctx, struct call *c, const char *method)
{
	bool heavy = strcmp(method, "t.Heavy") == 0, mark = strcmp(method, "t.Mark") == 0;
	struct bg_task *t;

	(void)ctx;
	T.dispatched++;
	t = bg_task_new(c, sizeof(*t), mark ? mark_work : heavy ? heavy_work : read_work, NULL, task_release);
	if (!t)
		return;
	t->cls = heavy || mark ? BG_HEAVY : BG_READ;
	bg_submit(T.bg, t);
}

static void open_gate(void)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = true;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

/* ---- the client ------------------------------------------------------------ */

static int client_call(const char *method)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char msg[128];
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int n = snprintf(msg, sizeof(msg), "{\"method\":\"%s\"}", method);

	assert_true(fd >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", T.path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(send(fd, msg, (size_t)n + 1, MSG_NOSIGNAL), n + 1);
	return fd;
}

/* Run the loop until fd has a whole reply (into buf) or `ms` pass: its
 * length, or -1. */
static int client_reply(int fd, char *buf, size_t cap, int ms)
{
	size_t len = 0;

	for (int i = 0; i < ms; i++) {
		ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);

		if (r > 0) {
			len += (size_t)r;
			if (memchr(buf, '\0', len))
				return (int)strlen(buf);
		} else if (r == 0) {
			return -1;
		}
		uv_run(&T.loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	return -1;
}

static void run_until(int *counter, int want)
{
	for (int i = 0; i < 5000 && *counter < want; i++) {
		uv_run(&T.loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	assert_int_equal(*counter, want);
}

/* ---- the test -------------------------------------------------------------- */

static void test_queues(void **state)
{
	struct tr_err err = { 0 };
	struct bg_counts n;
	int fds[NCONN], refused = 0, answered = 0, rfd;
	char buf[1024];

	(void)state;
	/* the loop's pool is started on first use: its size from here */
	setenv("UV_THREADPOOL_SIZE", "4", 1);
	assert_int_equal(uv_loop_init(&T.loop), 0);
	snprintf(T.path, sizeof(T.path), "/tmp/test-bgwork-%d.sock", (int)getpid());
	assert_int_equal(server_new(&T.srv, &T.loop, dispatch, NULL), 0);
	assert_int_equal(server_listen_path(T.srv, T.path, &err), 0);
	T.bg = bgwork_new(&T.loop, "/nonexistent.db");
	assert_non_null(T.bg);

	/* one connection at a time, each dispatched before the next: the
	 * first two run (and hold the heavy slots), 64 wait, 4 are refused */
	for (int i = 0; i < NCONN; i++) {
		fds[i] = client_call("t.Heavy");
		run_until(&T.dispatched, i + 1);
	}
	for (int i = 0; i < NCONN; i++) {
		int r = client_reply(fds[i], buf, sizeof(buf), i < 2 + BG_MAX_UID_QUEUED ? 1 : 2000);

		if (r > 0) {
			assert_non_null(strstr(buf, "io.traind.TooManyRequests"));
			assert_non_null(strstr(buf, "background tasks waiting"));
			assert_true(i >= 2 + BG_MAX_UID_QUEUED);
			refused++;
		}
	}
	assert_int_equal(refused, NCONN - 2 - BG_MAX_UID_QUEUED);
	bgwork_counts(T.bg, &n);
	assert_int_equal(n.waiting, BG_MAX_UID_QUEUED);
	assert_int_equal(n.running, 2);
	assert_int_equal((int)n.refused, refused);
	assert_int_equal(atomic_load(&max_heavy), 2);

	/* a read is answered while every heavy slot is held */
	rfd = client_call("t.Read");
	assert_true(client_reply(rfd, buf, sizeof(buf), 5000) > 0);
	assert_non_null(strstr(buf, "\"read\""));
	close(rfd);

	/* 30 of the waiting go away: released at once, never run */
	for (int i = 2 + 10; i < 2 + 40; i++)
		close(fds[i]);
	run_until(&T.released, refused + 1 + 30);
	bgwork_counts(T.bg, &n);
	assert_int_equal(n.waiting, BG_MAX_UID_QUEUED - 30);

	/* the gate opens: the others are all answered */
	open_gate();
	for (int i = 0; i < 2 + BG_MAX_UID_QUEUED; i++) {
		if (i >= 12 && i < 42)
			continue;
		assert_true(client_reply(fds[i], buf, sizeof(buf), 10000) > 0);
		assert_non_null(strstr(buf, "\"heavy\""));
		answered++;
	}
	assert_int_equal(answered, 2 + BG_MAX_UID_QUEUED - 30);
	assert_int_equal(atomic_load(&works), answered);
	assert_int_equal(atomic_load(&max_heavy), 2);
	assert_true(atomic_load(&max_all) <= 3);
	run_until(&T.released, refused + 1 + 30 + answered);
	bgwork_counts(T.bg, &n);
	assert_int_equal(n.waiting, 0);
	assert_int_equal(n.running, 0);

	for (int i = 0; i < NCONN; i++)
		if (i < 12 || i >= 42)
			close(fds[i]);
	server_close(T.srv);
	uv_run(&T.loop, UV_RUN_DEFAULT);
	bgwork_free(T.bg);
	unlink(T.path);
	assert_int_equal(uv_loop_close(&T.loop), 0);
}

/* ---- work that answers no call ------------------------------------------- */

#define NPOST (BG_MAX_UID_QUEUED + 8)

static struct {
	int done;                    /* dones run, on the loop */
	int dones[NPOST];            /* each task's */
} P;

static void posted_work(void *data)
{
	(void)data;
	atomic_fetch_add(&started, 1);
	pthread_mutex_lock(&post_mu);
	while (!post_open)
		pthread_cond_wait(&post_cv, &post_mu);
	pthread_mutex_unlock(&post_mu);
}

static void posted_done(void *data)
{
	P.dones[(int)(intptr_t)data]++;
	P.done++;
}

static void test_posted(void **state)
{
	struct tr_err err = { 0 };
	struct bg_counts n;
	uid_t other = getuid() + 4242;
	char buf[1024];
	const char *at;
	int fd;

	(void)state;
	setenv("UV_THREADPOOL_SIZE", "4", 1);
	memset(&T, 0, sizeof(T));
	memset(&P, 0, sizeof(P));
	post_open = false;   /* (no task holds it: the earlier test's teardown opened it) */
	atomic_store(&started, 0);
	assert_int_equal(uv_loop_init(&T.loop), 0);
	snprintf(T.path, sizeof(T.path), "/tmp/test-bgwork-p%d.sock", (int)getpid());
	assert_int_equal(server_new(&T.srv, &T.loop, dispatch, NULL), 0);
	assert_int_equal(server_listen_path(T.srv, T.path, &err), 0);
	T.bg = bgwork_new(&T.loop, "/nonexistent.db");
	assert_non_null(T.bg);

	/* another uid's posts: two on the heavy slots, the rest waiting past
	 * the calls' limit, none refused */
	for (int i = 0; i < NPOST; i++)
		assert_int_equal(bg_post(T.bg, other, posted_work, posted_done, (void *)(intptr_t)i), 0);
	for (int i = 0; i < 1000 && atomic_load(&started) < 2; i++)
		usleep(1000);
	bgwork_counts(T.bg, &n);
	assert_int_equal(n.running, 2);
	assert_int_equal(n.waiting, NPOST - 2);
	assert_int_equal((int)n.refused, 0);

	/* a call of this uid behind them */
	fd = client_call("t.Mark");
	run_until(&T.dispatched, 1);
	bgwork_counts(T.bg, &n);
	assert_int_equal(n.waiting, NPOST - 1);

	pthread_mutex_lock(&post_mu);
	post_open = true;
	pthread_cond_broadcast(&post_cv);
	pthread_mutex_unlock(&post_mu);
	assert_true(client_reply(fd, buf, sizeof(buf), 10000) > 0);
	at = strstr(buf, "\"started\":");
	assert_non_null(at);
	/* started 0 and 1: the posts on the slots; then the other uid's turn
	 * and this uid's, put on the pool together (2 or 3; a thread slow to
	 * start may let a post or two by): not behind the other 69 */
	assert_true(atoi(at + 10) >= 2 && atoi(at + 10) < 8);
	close(fd);
	run_until(&P.done, NPOST);
	for (int i = 0; i < NPOST; i++)
		assert_int_equal(P.dones[i], 1);
	bgwork_counts(T.bg, &n);
	assert_int_equal(n.waiting, 0);
	assert_int_equal(n.running, 0);

	server_close(T.srv);
	uv_run(&T.loop, UV_RUN_DEFAULT);
	bgwork_free(T.bg);
	unlink(T.path);
	assert_int_equal(uv_loop_close(&T.loop), 0);
}

/* A failed check leaves tasks on the gate, and libuv's destructor joins
 * its threads at exit: open it whatever happened. */
static int teardown(void **state)
{
	(void)state;
	open_gate();
	pthread_mutex_lock(&post_mu);
	post_open = true;
	pthread_cond_broadcast(&post_cv);
	pthread_mutex_unlock(&post_mu);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_queues, teardown),
		cmocka_unit_test_teardown(test_posted, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
