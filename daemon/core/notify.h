/*
 * notify.h - traind and its service manager (systemd): readiness, status,
 * shutdown and watchdog notifications (sd_notify(3)), and the listening
 * socket that a socket unit hands over (sd_listen_fds(3)).
 *
 * The module owns two timers on the loop: the watchdog ping, sent from the
 * loop itself at half of WATCHDOG_USEC so that a loop that hangs stops
 * pinging and the manager restarts traind; and a status refresh, which
 * re-reads the one-line summary every NOTIFY_REFRESH_MS and sends STATUS=
 * when it changed (epochs and steps advance without a state change).
 * Neither keeps the loop alive.
 *
 * Without a manager (no NOTIFY_SOCKET) nothing is sent and no timer runs.
 * Built without libsystemd (meson -Dsystemd=disabled) every function is a
 * no-op, and an inherited socket is refused with an error that says why.
 *
 * Thread: loop thread only (start-up, before the loop runs, counts as it).
 */
#ifndef TRAIND_NOTIFY_H
#define TRAIND_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "traind/error.h"

#define NOTIFY_REFRESH_MS 1000
#define NOTIFY_STATUS_MAX 512

/* Fills `buf` with the one-line status (jobs_summary). */
typedef void (*notify_status_fn)(void *ctx, char *buf, size_t len);

struct notify {
	uv_loop_t *loop;
	bool enabled;                    /* a manager listens (NOTIFY_SOCKET) */
	uint64_t watchdog_usec;          /* the manager's watchdog timeout; 0 = none */
	bool timers;                     /* the two timers are initialised */
	bool stopping;                   /* STOPPING=1 sent; no more status refreshes */
	bool warned;                     /* a failed send was logged once */
	uv_timer_t watchdog;             /* WATCHDOG=1 every watchdog_usec / 2 */
	uv_timer_t refresh;              /* STATUS= when the summary changed */
	notify_status_fn status_fn;
	void *ctx;
	char last[NOTIFY_STATUS_MAX];    /* the STATUS= last sent */
};

/* Read the environment (NOTIFY_SOCKET; WATCHDOG_USEC, which counts only when
 * WATCHDOG_PID is unset or ours). Sends nothing yet. */
void notify_init(struct notify *n, uv_loop_t *loop, notify_status_fn fn, void *ctx);
/* Close the timers (before the loop closes). Safe to call twice. */
void notify_deinit(struct notify *n);

/* The listening socket passed by socket activation (LISTEN_FDS, for our pid):
 * 1 and *fd set (close-on-exec) when there is one, 0 and *fd = -1 when there
 * is none, a negative code when what was passed is unusable (more than one
 * socket, not a listening Unix stream socket). Unsets LISTEN_* either way. */
int notify_listen_fd(int *fd, struct tr_err *err);

/* READY=1 with the current STATUS=; starts the watchdog and refresh timers.
 * Call once the store is migrated, jobs are recovered and the socket listens. */
void notify_ready(struct notify *n);
/* Re-read the summary; send STATUS= if it changed. */
void notify_status(struct notify *n);
/* STOPPING=1 with a status line; the watchdog keeps pinging until the loop ends. */
void notify_stopping(struct notify *n, const char *status);

/* Whether a manager is listening / wants watchdog pings (for the start-up log). */
bool notify_enabled(const struct notify *n);
uint64_t notify_watchdog_usec(const struct notify *n);

#endif
