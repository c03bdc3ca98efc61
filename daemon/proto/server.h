/*
 * server.h - the control socket: a Unix stream socket speaking varlink
 * (one JSON object + NUL per message), its connections, and method calls.
 *
 * Each connection runs one call at a time: messages that arrive while a call
 * is in flight wait in the connection's buffer, so replies come in order.
 * Malformed JSON, a non-object, a missing method: a ProtocolError reply
 * naming the problem; the connection stays usable. A call's "parameters"
 * may be absent or null, both meaning {} (as systemd's varlink and the
 * reference Go client, which sends null, expect).
 *
 * Resources (doc/resources.md has the whole model, with traind-web's): every
 * client (a peer uid, as SO_PEERCRED gives it) and every connection has a
 * limit and a deadline, and the daemon as a whole a budget, so one client's
 * misbehaviour costs that client:
 *   - connections: SERVER_MAX_CONNECTIONS in all, SERVER_MAX_UID_CONNECTIONS
 *     per uid, and no more than the descriptor budget (RLIMIT_NOFILE less a
 *     reserve for the daemon's own files). Past a limit the oldest idle
 *     connection (no call in flight, nothing unread or unsent) of that uid,
 *     else of anyone, is closed to make room; only when none is idle is the
 *     new one refused, with a TooManyRequests reply naming the limit.
 *   - calls in flight: one per connection, SERVER_MAX_UID_CALLS per uid
 *     (past it the call gets TooManyRequests; the connection stays).
 *   - passed descriptors (SCM_RIGHTS): they belong to the message they came
 *     with; those its call does not take are closed as soon as it is
 *     dispatched (refused or not). Not yet dispatched: at most
 *     SERVER_MAX_FDS per connection and SERVER_MAX_UID_FDS per uid.
 *   - a message must arrive whole within the message timeout of its first
 *     byte (server_set_message_timeout; not counted while the connection's
 *     previous call is in flight): else a ProtocolError and the connection is
 *     closed. At most SERVER_MAX_MESSAGE bytes (larger: a ProtocolError, then
 *     closed).
 *   - memory: a client whose unread replies pile up beyond SERVER_MAX_BACKLOG
 *     is disconnected (streams skip updates long before that, past
 *     SERVER_STREAM_BACKLOG); all connections together hold at most
 *     SERVER_MAX_BUFFERED bytes of unfinished messages (past it a connection
 *     gets a TooManyRequests error and is closed) and SERVER_MAX_QUEUED bytes
 *     of unwritten replies (past it the largest backlogs are closed).
 *   - when the process runs out of descriptors all the same (accept fails
 *     with EMFILE), a spare descriptor is given up to accept the connection
 *     and answer it TooManyRequests; it is logged.
 * Refusals and closures for load are logged at most once a second each
 * (with the count of those not logged).
 *
 * Ownership: the server owns connections and calls. A call is valid from
 * dispatch until its final reply (call_reply with continues false, or
 * call_error); if the client goes away first, the call's cancel hook runs and
 * the server frees the call (the hook must drop every pointer to it); a call
 * without a hook stays valid, and its replies become no-ops that end it.
 *
 * Thread: loop thread only.
 */
#ifndef TRAIND_SERVER_H
#define TRAIND_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "traind/error.h"
#include "daemon/proto/errors.h"

#define SERVER_MAX_MESSAGE (16u << 20)
#define SERVER_MAX_CONNECTIONS 4096      /* all clients */
#define SERVER_MAX_UID_CONNECTIONS 1024  /* one peer uid */
#define SERVER_MAX_UID_CALLS 256         /* calls in flight of one peer uid */
#define SERVER_MAX_UID_FDS 256           /* descriptors passed and not yet dispatched, one uid */
#define SERVER_FD_RESERVE 256            /* descriptors kept from clients (at least; a quarter of the limit) */
#define SERVER_MESSAGE_TIMEOUT_MS 10000  /* default: a message's first byte to its last */
#define SERVER_FLUSH_TIMEOUT_MS 2000     /* a closing connection's last reply, then closed anyway */
#define SERVER_MAX_BACKLOG (16u << 20)
#define SERVER_STREAM_BACKLOG (1u << 20)
#define SERVER_MAX_BUFFERED (256u << 20)
#define SERVER_MAX_QUEUED (256u << 20)
#define SERVER_FREE_BUFFER (16u << 10)
#define SERVER_TURN_MESSAGES 16
#define SERVER_PARSE_OFF_LOOP (256u << 10)
#define SERVER_TRIM_AFTER (32u << 20)
#define SERVER_MAX_FDS 32         /* descriptors passed and not yet dispatched, per connection */

struct server;
struct call;

/* Called for every well-formed call; must eventually end the call. */
typedef void (*server_dispatch_fn)(void *ctx, struct call *c, const char *method);

int server_new(struct server **out, uv_loop_t *loop, server_dispatch_fn fn, void *ctx);
/* Bind and listen on `path` (mode 0660). A stale socket file (nobody
 * accepting) is replaced; a live one is never stolen (-EADDRINUSE). */
int server_listen_path(struct server *s, const char *path, struct tr_err *err);
/* Listen on an inherited, already listening socket (socket activation). */
int server_listen_fd(struct server *s, int fd, struct tr_err *err);
/* Restrict who may connect: root, `uid`, and members of `gid` (gid -1: none). */
void server_set_access(struct server *s, uid_t uid, gid_t gid);
/* The time a message may take from its first byte to its last (ms, > 0;
 * default SERVER_MESSAGE_TIMEOUT_MS). */
void server_set_message_timeout(struct server *s, unsigned ms);
/* Stop accepting; close all connections (pending calls are cancelled). The
 * server is freed once every handle has closed. */
void server_close(struct server *s);
unsigned server_connections(const struct server *s);
/* Count every error reply sent from now on in *counter (counters.h's
 * client_errors; it must outlive the server). */
void server_count_errors(struct server *s, uint64_t *counter);

json_t *call_params(struct call *c);        /* borrowed; an object (maybe empty) */
const char *call_method(struct call *c);
bool call_more(struct call *c);
bool call_alive(struct call *c);            /* the client is still there */
uid_t call_uid(struct call *c);             /* the peer uid the call is charged to */
/* True when the connection's unread output is small enough for another
 * streamed update. */
bool call_can_stream(struct call *c);
/* Reply; takes ownership of params (NULL = {}). continues = more replies follow. */
void call_reply(struct call *c, json_t *params, bool continues);
/* Error reply `e` (errors.h) with the parameters its entry declares, taken
 * from `d` (NULL: none; proto_error_params); ends the call. Parameters that
 * differ from e's declaration (one missing from d) are sent anyway and
 * logged as a protocol bug ("protocol bug: ... not as declared"). */
void call_error(struct call *c, enum proto_error e, const struct proto_detail *d);
/* org.varlink.service.InvalidParameter naming `param`, with a printf-style
 * message (client text in it cut with tr_utf8_cut); ends the call. */
void call_invalid_parameter(struct call *c, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* File descriptors the client passed (SCM_RIGHTS) with this call's message,
 * in order: the number waiting, and take up to max of them (the caller owns
 * and closes them; close-on-exec). Only during dispatch: the ones not taken
 * when the dispatch function returns are closed then. */
int call_pending_fds(struct call *c);
int call_take_fds(struct call *c, int *fds, int max);
/* Run fn(arg) if the client disconnects while the call is pending. */
void call_on_cancel(struct call *c, void (*fn)(void *arg), void *arg);

#endif
