/*
 * gate.h - who may hold traind-web's connections, and for how long: the
 * accepting of connections, each client's share of them, the deadline of a
 * request, and closing idle connections to make room (doc/resources.md has
 * the whole model, with traind's).
 *
 * The gate owns the listening socket and accepts on a thread of its own;
 * each connection it admits goes to libmicrohttpd (MHD_add_connection),
 * which serves it on a thread of its own as before. Before that the gate
 * decides, in the manner of nginx's limit_conn and HAProxy's maxconn:
 *   - the client: the peer's uid for a Unix socket (SO_PEERCRED) and for a
 *     loopback TCP peer (sock_diag, as `ss -e` shows it), else its address;
 *   - at most `max_per_client` connections of one client: past it, the
 *     client's own oldest idle connection (no request begun for
 *     GATE_FRESH_MS), else its oldest one still receiving a request, is
 *     closed to make room for the new one; when all of them are being
 *     handled (or are new), the new one is refused with a 503 naming the
 *     limit;
 *   - at most `max_connections` in all: past it, the oldest idle connection
 *     of anyone, else the oldest still receiving its request, is closed,
 *     but only one that has had GATE_GRACE_MS to send it (a flood does not
 *     close another client's request as it arrives); else a 503.
 * Then, for each request (HAProxy's `timeout http-request`, nginx's
 * client_header_timeout, for the whole request: line, headers and body):
 *   - from the connection's start, or the end of its previous response,
 *     to the end of the request's body: at most `request_timeout_ms`. Past
 *     it the connection is closed (a 408 first when part of a request came);
 *     a slow client's threads are back within the deadline, not held by
 *     one byte every few seconds.
 * While a request is handled (traind is asked, the response is written,
 * an event stream runs) the gate leaves it alone: libmicrohttpd's idle
 * timeout and the handlers' own limits bound that.
 *
 * A connection is closed by shutdown(2) of the gate's duplicate of its
 * socket, so the gate never touches a descriptor libmicrohttpd may have
 * closed and reused; libmicrohttpd's thread sees the end of the stream and
 * closes it.
 *
 * Thread: gate_new, gate_start, gate_stop_accepting and gate_free from
 * main's thread; gate_connection (libmicrohttpd's notify-connection
 * callback), gate_request_* from libmicrohttpd's threads; the gate's own
 * thread accepts and enforces the deadlines. A mutex guards the table.
 */
#ifndef TRAIND_WEB_GATE_H
#define TRAIND_WEB_GATE_H

#include <stdbool.h>

#include "traind/error.h"

struct MHD_Daemon;
struct MHD_Connection;

#define GATE_GRACE_MS 1000        /* another client's request is never closed to make room sooner */
#define GATE_FRESH_MS 250         /* nor a new connection, whose request is on the way */

struct gate_config {
	int listen_fd;                /* bound and listening; the gate closes it */
	bool unix_listen;             /* a Unix socket: clients are uids */
	unsigned max_connections;     /* in all */
	unsigned max_per_client;      /* of one client */
	unsigned request_timeout_ms;  /* a whole request, see the top */
};

struct gate;

int gate_new(struct gate **out, const struct gate_config *cfg, struct tr_err *err);
/* Start accepting for `mhd` (started with MHD_USE_NO_LISTEN_SOCKET). */
int gate_start(struct gate *g, struct MHD_Daemon *mhd, struct tr_err *err);
/* Stop accepting (before MHD_stop_daemon, which still calls
 * gate_connection for the connections it closes). */
void gate_stop_accepting(struct gate *g);
/* After MHD_stop_daemon; accepts NULL. */
void gate_free(struct gate *g);

/* From libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION: connection c started
 * (its thread is about to run) or closed. */
void gate_connection(struct gate *g, struct MHD_Connection *c, void **socket_context, bool started);
/* Part of a request has come (its request line). */
void gate_request_begun(struct MHD_Connection *c);
/* The request is whole (its body too): the deadline no longer applies. */
void gate_request_handled(struct MHD_Connection *c);
/* Its response is done: the connection waits for the next one. */
void gate_request_done(struct MHD_Connection *c);

#endif
