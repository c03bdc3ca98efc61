/*
 * varlink.h - a small blocking varlink client, for trainctl.
 *
 * It owns one Unix stream socket to the daemon and the bytes received on it.
 * A message on the wire is one JSON object followed by a NUL byte. One call
 * is in flight at a time: vl_call sends it, then vl_recv returns its replies
 * one by one; a reply with `continues` set means more follow (a call made
 * with more=true), and the call ends with the first reply without it or with
 * an error reply.
 *
 * Errors: every function returns 0 or a negative errno-style code with one
 * line in the tr_err: -ENOENT, -ECONNREFUSED, -EACCES... (connect),
 * -ETIMEDOUT (no complete reply within the timeout), -ECONNRESET (the daemon
 * closed the connection), -EMSGSIZE (a message over VL_MAX_MESSAGE), -EPROTO
 * (a reply that is not a varlink reply), -ENOMEM, -EIO. After any of these
 * the connection is unusable; only vl_free remains. A daemon error reply is
 * not a failure of vl_recv: it returns 0 with reply->error set.
 *
 * Thread: a connection belongs to one thread.
 */
#ifndef TRAIND_CLIENT_VARLINK_H
#define TRAIND_CLIENT_VARLINK_H

#include <jansson.h>
#include <stdbool.h>

#include "traind/error.h"

/* Largest message either way, NUL excluded (the daemon's limit). */
#define VL_MAX_MESSAGE (16u << 20)

struct vl_conn;

struct vl_reply {
	json_t *params;     /* owned; always an object after a successful vl_recv */
	char *error;        /* owned; the error's name ("io.traind.NoSuchJob"), NULL if none */
	bool continues;     /* more replies to this call follow */
};

/* Connect to the Unix socket at `path`; `timeout_ms` (< 0: none) bounds the
 * connect and is the initial reply timeout. */
int vl_connect(struct vl_conn **out, const char *path, int timeout_ms, struct tr_err *err);

/* Close the socket and free everything; accepts NULL. */
void vl_free(struct vl_conn *c);

/* How long vl_recv waits for one complete reply; < 0: forever. */
void vl_set_timeout(struct vl_conn *c, int timeout_ms);

/* Send {"method": method, "parameters": params[, "more": true]}. params may
 * be NULL ({}); it is borrowed. -EBUSY while the previous call has replies
 * left to read. */
int vl_call(struct vl_conn *c, const char *method, json_t *params, bool more, struct tr_err *err);

/* Read the next reply of the call in flight into *r (cleared first; the
 * caller frees it with vl_reply_clear). -EINVAL when no call is in flight. */
/* vl_call, passing the open file descriptors fds[0, nfds) along with the
 * call (SCM_RIGHTS on its first bytes); at most VL_MAX_FDS. The caller
 * still owns and closes them. */
#define VL_MAX_FDS 32
int vl_call_fds(struct vl_conn *c, const char *method, json_t *params, bool more, const int *fds,
		size_t nfds, struct tr_err *err);
int vl_recv(struct vl_conn *c, struct vl_reply *r, struct tr_err *err);

/* Free what a reply holds and reset it; accepts a zeroed reply. */
void vl_reply_clear(struct vl_reply *r);

#endif
