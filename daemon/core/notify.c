/*
 * notify.c - see daemon/core/notify.h.
 *
 * The protocol is libsystemd's: sd_notify() sends one datagram per call to
 * NOTIFY_SOCKET (the manager reads it at once, so the send does not block
 * the loop in practice); sd_watchdog_enabled() and sd_listen_fds() check
 * WATCHDOG_PID / LISTEN_PID against our pid, so variables meant for another
 * process are ignored. Everything that needs libsystemd sits between
 * #ifdef HAVE_SYSTEMD; the rest (timers, change detection) is plain libuv.
 */
#include "daemon/core/notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "traind-config.h"
#include "daemon/core/log.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* Send one notification; a failure is logged once (the manager may be gone). */
static void send_state(struct notify *n, const char *state)
{
#ifdef HAVE_SYSTEMD
	int rc;

	if (!n->enabled)
		return;
	rc = sd_notify(0, state);
	if (rc < 0 && !n->warned) {
		n->warned = true;
		log_warn("cannot notify the service manager: %s", strerror(-rc));
	}
#else
	(void)n;
	(void)state;
#endif
}

void notify_init(struct notify *n, uv_loop_t *loop, notify_status_fn fn, void *ctx)
{
	memset(n, 0, sizeof(*n));
	n->loop = loop;
	n->status_fn = fn;
	n->ctx = ctx;
#ifdef HAVE_SYSTEMD
	{
		const char *sock = getenv("NOTIFY_SOCKET");
		uint64_t usec = 0;

		n->enabled = sock && *sock;
		if (n->enabled && sd_watchdog_enabled(0, &usec) > 0)
			n->watchdog_usec = usec;
	}
#endif
}

static void on_watchdog(uv_timer_t *t)
{
	send_state(t->data, "WATCHDOG=1");
}

static void on_refresh(uv_timer_t *t)
{
	notify_status(t->data);
}

static void close_timer(uv_timer_t *t)
{
	if (!uv_is_closing((uv_handle_t *)t))
		uv_close((uv_handle_t *)t, NULL);
}

void notify_deinit(struct notify *n)
{
	if (!n->timers)
		return;
	close_timer(&n->watchdog);
	close_timer(&n->refresh);
	n->timers = false;
}

int notify_listen_fd(int *fd, struct tr_err *err)
{
	*fd = -1;
#ifdef HAVE_SYSTEMD
	{
		int count = sd_listen_fds(1);
		int rc;

		if (count < 0)
			return tr_err_set(err, count, "socket activation: bad LISTEN_FDS: %s",
					  strerror(-count));
		if (count == 0)
			return 0;
		if (count > 1)
			return tr_err_set(err, -EINVAL,
					  "socket activation passed %d sockets; traind takes exactly one "
					  "(a single ListenStream= in the socket unit)", count);
		rc = sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0);
		if (rc < 0)
			return tr_err_set(err, rc, "socket activation: fd %d: %s", SD_LISTEN_FDS_START,
					  strerror(-rc));
		if (rc == 0)
			return tr_err_set(err, -ENOTSOCK,
					  "socket activation: fd %d is not a listening Unix stream socket",
					  SD_LISTEN_FDS_START);
		*fd = SD_LISTEN_FDS_START;
		return 1;
	}
#else
	{
		const char *pid = getenv("LISTEN_PID");
		const char *fds = getenv("LISTEN_FDS");

		if (pid && fds && atol(pid) == (long)getpid())
			return tr_err_set(err, -ENOTSUP,
					  "socket activation (LISTEN_FDS) needs traind built with libsystemd "
					  "(meson -Dsystemd=enabled)");
		return 0;
	}
#endif
}

static void start_timers(struct notify *n)
{
	uv_timer_init(n->loop, &n->watchdog);
	uv_timer_init(n->loop, &n->refresh);
	n->watchdog.data = n;
	n->refresh.data = n;
	uv_unref((uv_handle_t *)&n->watchdog);
	uv_unref((uv_handle_t *)&n->refresh);
	n->timers = true;
	if (n->watchdog_usec) {
		uint64_t ms = n->watchdog_usec / 2000;

		uv_timer_start(&n->watchdog, on_watchdog, ms ? ms : 1, ms ? ms : 1);
	}
	uv_timer_start(&n->refresh, on_refresh, NOTIFY_REFRESH_MS, NOTIFY_REFRESH_MS);
}

void notify_ready(struct notify *n)
{
	char msg[NOTIFY_STATUS_MAX + 32];

	if (!n->enabled)
		return;
	if (n->status_fn)
		n->status_fn(n->ctx, n->last, sizeof(n->last));
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s%s", n->last,
		 n->watchdog_usec ? "\nWATCHDOG=1" : "");
	send_state(n, msg);
	start_timers(n);
}

void notify_status(struct notify *n)
{
	char now[NOTIFY_STATUS_MAX];
	char msg[NOTIFY_STATUS_MAX + 8];

	if (!n->enabled || n->stopping || !n->status_fn)
		return;
	n->status_fn(n->ctx, now, sizeof(now));
	if (strcmp(now, n->last) == 0)
		return;
	memcpy(n->last, now, sizeof(now));
	snprintf(msg, sizeof(msg), "STATUS=%s", now);
	send_state(n, msg);
}

void notify_stopping(struct notify *n, const char *status)
{
	char msg[NOTIFY_STATUS_MAX + 24];

	if (!n->enabled || n->stopping)
		return;
	n->stopping = true;
	if (n->timers)
		uv_timer_stop(&n->refresh);
	snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s", status);
	send_state(n, msg);
}

bool notify_enabled(const struct notify *n)
{
	return n->enabled;
}

uint64_t notify_watchdog_usec(const struct notify *n)
{
	return n->watchdog_usec;
}
