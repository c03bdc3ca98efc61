/*
 * server.h - the control socket: a Unix stream socket speaking varlink
 * (one JSON object + NUL per message), its connections, and method calls.
 *
 * Each connection runs one call at a time: messages that arrive while a call
 * is in flight wait in the connection's buffer, so replies come in order.
 * Limits: a message is at most SERVER_MAX_MESSAGE bytes (larger: a
 * ProtocolError reply, then the connection is closed); at most
 * SERVER_MAX_CONNECTIONS connections; a client whose unread replies pile up
 * beyond SERVER_MAX_BACKLOG is disconnected (streams skip updates long
 * before that, past SERVER_STREAM_BACKLOG). All connections together hold at
 * most SERVER_MAX_BUFFERED bytes of unfinished messages (past it a
 * connection gets a TooManyRequests error and is closed) and SERVER_MAX_QUEUED bytes
 * of unwritten replies (past it the largest backlogs are closed), so the
 * daemon's memory stays bounded whatever clients send (refusals for load are
 * TooManyRequests). Malformed JSON, a non-object, a missing method: a
 * ProtocolError reply naming the problem; the connection stays usable. A
 * call's "parameters" may be absent or null, both meaning {} (as systemd's
 * varlink and the reference Go client, which sends null, expect).
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
#define SERVER_MAX_CONNECTIONS 4096
#define SERVER_MAX_BACKLOG (16u << 20)
#define SERVER_STREAM_BACKLOG (1u << 20)
#define SERVER_MAX_BUFFERED (256u << 20)
#define SERVER_MAX_QUEUED (256u << 20)
#define SERVER_FREE_BUFFER (16u << 10)
#define SERVER_TURN_MESSAGES 16
#define SERVER_PARSE_OFF_LOOP (256u << 10)
#define SERVER_TRIM_AFTER (32u << 20)
#define SERVER_MAX_FDS 32         /* descriptors passed and not yet taken, per connection */

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
/* File descriptors the client passed (SCM_RIGHTS) with its messages, in
 * order: the number waiting, and take up to max of them (the caller owns
 * and closes them; close-on-exec). Untaken ones close with the
 * connection; a connection holding more than SERVER_MAX_FDS untaken gets a
 * ProtocolError and is closed. */
int call_pending_fds(struct call *c);
int call_take_fds(struct call *c, int *fds, int max);
/* Run fn(arg) if the client disconnects while the call is pending. */
void call_on_cancel(struct call *c, void (*fn)(void *arg), void *arg);

#endif
