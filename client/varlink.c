/*
 * varlink.c - a small blocking varlink client. See varlink.h.
 *
 * Framing: received bytes collect in one buffer, buf[start, len). A reply is
 * complete once a NUL is among them; the bytes after that NUL (the start of a
 * stream's next reply, read in the same recv) stay for the next vl_recv.
 * `scanned` counts the bytes after `start` already known to hold no NUL, so a
 * large reply arriving in many pieces is searched once. The buffer grows as a
 * reply needs, but never beyond one maximal message plus one read, so a
 * daemon that sends endless bytes without a NUL gets -EMSGSIZE, not our memory.
 *
 * Timeouts: the socket stays blocking for connect (bounded by SO_SNDTIMEO,
 * which Linux applies to a Unix stream connect); every later read and write
 * first polls with what is left of the deadline.
 */
#include "varlink.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "traind/jsonfmt.h"

#define VL_READ_CHUNK 65536

struct vl_conn {
	int fd;
	int timeout_ms;             /* per reply; < 0 none */
	char *buf;                  /* received bytes; the unread ones are [start, len) */
	size_t start, len, cap;
	size_t scanned;             /* bytes after start known to hold no NUL */
	bool in_call;               /* replies are still due */
	bool more;                  /* the call in flight asked for a stream */
	bool broken;                /* a transport or protocol error happened */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until `deadline` (-1: none) for poll(); 0 once past it. */
static int remaining_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ms();
	if (left <= 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

static int64_t deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Mark the connection unusable and record the error. */
static int fail(struct vl_conn *c, struct tr_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct vl_conn *c, struct tr_err *err, int code, const char *fmt, ...)
{
	char msg[TR_ERR_MSG_MAX];
	va_list ap;

	c->broken = true;
	c->in_call = false;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return tr_err_set(err, code, "%s", msg);
}

static void describe_timeout(char *out, size_t n, int timeout_ms)
{
	snprintf(out, n, "no reply from traind within %.3g s", timeout_ms / 1000.0);
}

int vl_connect(struct vl_conn **out, const char *path, int timeout_ms, struct tr_err *err)
{
	struct sockaddr_un sa;
	struct vl_conn *c;
	int rc;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return tr_err_set(err, -ENAMETOOLONG, "cannot connect to %s: the path is longer than %zu bytes",
				  path, sizeof(sa.sun_path) - 1);
	if (!*path)
		return tr_err_set(err, -EINVAL, "cannot connect: the socket path is empty");
	c = calloc(1, sizeof(*c));
	if (!c)
		return tr_err_set(err, -ENOMEM, "out of memory");
	c->timeout_ms = timeout_ms;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		rc = -errno;
		free(c);
		return tr_err_set(err, rc, "cannot create a socket: %s", strerror(-rc));
	}
	if (timeout_ms >= 0) {
		struct timeval tv = {
			.tv_sec = timeout_ms / 1000,
			.tv_usec = (timeout_ms % 1000) * 1000,
		};

		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	while (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EINTR)
			continue;
		rc = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
		close(c->fd);
		free(c);
		return tr_err_set(err, rc, "cannot connect to %s: %s", path, strerror(-rc));
	}
	*out = c;
	return 0;
}

void vl_free(struct vl_conn *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c->buf);
	free(c);
}

void vl_set_timeout(struct vl_conn *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms;
}

/* Write all of data[0, len), waiting for room at most until `deadline`.
 * -EPIPE (connection not marked broken) when traind has hung up: what it
 * sent before (a refusal) may still be waiting to be read. */
static int send_all(struct vl_conn *c, const char *data, size_t len, const int *fds, size_t nfds,
		    struct tr_err *err)
{
	int64_t deadline = deadline_after(c->timeout_ms);
	size_t off = 0;

	while (off < len) {
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		ssize_t n;
		int pr = poll(&p, 1, remaining_ms(deadline));

		if (pr < 0) {
			if (errno == EINTR)
				continue;
			return fail(c, err, -errno, "poll: %s", strerror(errno));
		}
		if (pr == 0)
			return fail(c, err, -ETIMEDOUT, "traind did not take the call within %.3g s",
				    c->timeout_ms / 1000.0);
		if (nfds && off == 0) {
			/* The descriptors ride on the message's first bytes
			 * (SCM_RIGHTS), as systemd's varlink passes them. */
			union {
				char buf[CMSG_SPACE(VL_MAX_FDS * sizeof(int))];
				struct cmsghdr align;
			} u;
			struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
					     .msg_controllen = CMSG_SPACE(nfds * sizeof(int)) };
			struct cmsghdr *cm;

			memset(&u, 0, sizeof(u));
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
			memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
			n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		} else {
			n = send(c->fd, data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		}
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			if (errno == EPIPE || errno == ECONNRESET)
				return tr_err_set(err, -EPIPE, "traind closed the connection");
			return fail(c, err, -errno, "cannot send to traind: %s", strerror(errno));
		}
		off += (size_t)n;
	}
	return 0;
}

int vl_call(struct vl_conn *c, const char *method, json_t *params, bool more, struct tr_err *err)
{
	return vl_call_fds(c, method, params, more, NULL, 0, err);
}

int vl_call_fds(struct vl_conn *c, const char *method, json_t *params, bool more, const int *fds,
		size_t nfds, struct tr_err *err)
{
	json_t *msg, *p;
	char *text;
	size_t len;
	int rc;

	if (c->broken)
		return tr_err_set(err, -EIO, "the connection to traind is broken");
	if (c->in_call)
		return tr_err_set(err, -EBUSY, "a call is already in flight");
	p = params ? json_incref(params) : json_object();
	msg = json_object();
	if (!p || !msg || json_object_set_new(msg, "method", json_string(method)) ||
	    json_object_set_new(msg, "parameters", p) ||
	    (more && json_object_set(msg, "more", json_true()))) {
		if (!msg)
			json_decref(p);
		json_decref(msg);
		return tr_err_set(err, -ENOMEM, "out of memory building the call %s", method);
	}
	text = jsonfmt_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (!text)
		return tr_err_set(err, -ENOMEM, "cannot encode the call %s (out of memory or invalid text)",
				  method);
	len = strlen(text);
	if (len > VL_MAX_MESSAGE) {
		free(text);
		return tr_err_set(err, -EMSGSIZE, "the call %s is %zu bytes, more than traind accepts (%u)",
				  method, len, VL_MAX_MESSAGE);
	}
	/* the NUL that json_dumps put at the end is the frame */
	if (nfds > VL_MAX_FDS) {
		free(text);
		return tr_err_set(err, -E2BIG, "%zu files in one call, at most %d", nfds, VL_MAX_FDS);
	}
	rc = send_all(c, text, len + 1, fds, nfds, err);
	free(text);
	if (rc == -EPIPE) {
		/* traind hung up (it refused the peer, or it is stopping): the
		 * reply, if it sent one before, says why; vl_recv reads it or
		 * reports the hang-up. */
		tr_err_clear(err);
		rc = 0;
	}
	if (rc < 0)
		return rc;
	c->in_call = true;
	c->more = more;
	return 0;
}

void vl_reply_clear(struct vl_reply *r)
{
	json_decref(r->params);
	free(r->error);
	r->params = NULL;
	r->error = NULL;
	r->continues = false;
}

/* Turn one message (NUL excluded) into a reply. */
static int parse_reply(struct vl_conn *c, const char *text, size_t len, struct vl_reply *r,
		       struct tr_err *err)
{
	json_error_t jerr;
	json_t *msg = json_loadb(text, len, 0, &jerr);
	json_t *params, *error, *cont;

	if (!msg)
		return fail(c, err, -EPROTO, "malformed reply from traind: %s (at byte %d)", jerr.text,
			    jerr.position);
	if (!json_is_object(msg)) {
		json_decref(msg);
		return fail(c, err, -EPROTO, "malformed reply from traind: not a JSON object");
	}
	params = json_object_get(msg, "parameters");
	error = json_object_get(msg, "error");
	cont = json_object_get(msg, "continues");
	if (json_is_null(params))
		params = NULL; /* null is no parameters, as an absent field */
	if ((params && !json_is_object(params)) || (error && !json_is_string(error)) ||
	    (cont && !json_is_boolean(cont))) {
		json_decref(msg);
		return fail(c, err, -EPROTO,
			    "malformed reply from traind: \"parameters\", \"error\" or \"continues\" has the wrong type");
	}
	if (json_is_true(cont) && (!c->more || error)) {
		json_decref(msg);
		return fail(c, err, -EPROTO, "malformed reply from traind: \"continues\" on a reply that must be the last");
	}
	r->params = params ? json_incref(params) : json_object();
	r->error = error ? strdup(json_string_value(error)) : NULL;
	r->continues = json_is_true(cont);
	json_decref(msg);
	if (!r->params || (error && !r->error)) {
		vl_reply_clear(r);
		return fail(c, err, -ENOMEM, "out of memory reading a reply");
	}
	if (!r->continues)
		c->in_call = false;
	return 0;
}

/* Make room for one more read at the end of the buffer. */
static int make_room(struct vl_conn *c, struct tr_err *err)
{
	size_t want, ncap;
	char *nb;

	if (c->start > 0) {
		memmove(c->buf, c->buf + c->start, c->len - c->start);
		c->len -= c->start;
		c->start = 0;
	}
	if (c->cap - c->len >= VL_READ_CHUNK)
		return 0;
	want = c->len + VL_READ_CHUNK;
	ncap = c->cap ? c->cap : VL_READ_CHUNK;
	while (ncap < want)
		ncap *= 2;
	if (ncap > (size_t)VL_MAX_MESSAGE + 1 + VL_READ_CHUNK)
		ncap = (size_t)VL_MAX_MESSAGE + 1 + VL_READ_CHUNK;
	nb = realloc(c->buf, ncap);
	if (!nb)
		return fail(c, err, -ENOMEM, "out of memory reading a reply");
	c->buf = nb;
	c->cap = ncap;
	return 0;
}

int vl_recv(struct vl_conn *c, struct vl_reply *r, struct tr_err *err)
{
	int64_t deadline = deadline_after(c->timeout_ms);
	int rc;

	vl_reply_clear(r);
	if (c->broken)
		return tr_err_set(err, -EIO, "the connection to traind is broken");
	if (!c->in_call)
		return tr_err_set(err, -EINVAL, "no call is waiting for a reply");
	for (;;) {
		size_t avail = c->len - c->start;
		char *from = c->buf ? c->buf + c->start : NULL;   /* no buffer before the first read */
		char *nul = avail > c->scanned ? memchr(from + c->scanned, '\0', avail - c->scanned) : NULL;
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		ssize_t n;
		int pr;

		if (nul) {
			size_t mlen = (size_t)(nul - from);

			if (mlen > VL_MAX_MESSAGE)
				return fail(c, err, -EMSGSIZE, "a reply from traind is larger than %u MiB",
					    VL_MAX_MESSAGE >> 20);
			c->start += mlen + 1;
			c->scanned = 0;
			rc = parse_reply(c, from, mlen, r, err);
			if (c->start == c->len)
				c->start = c->len = 0;
			return rc;
		}
		c->scanned = avail;
		if (avail > VL_MAX_MESSAGE)
			return fail(c, err, -EMSGSIZE, "a reply from traind is larger than %u MiB",
				    VL_MAX_MESSAGE >> 20);
		rc = make_room(c, err);
		if (rc < 0)
			return rc;
		pr = poll(&p, 1, remaining_ms(deadline));
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			return fail(c, err, -errno, "poll: %s", strerror(errno));
		}
		if (pr == 0) {
			char msg[128];

			describe_timeout(msg, sizeof(msg), c->timeout_ms);
			return fail(c, err, -ETIMEDOUT, "%s", msg);
		}
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			if (errno == ECONNRESET)
				return fail(c, err, -ECONNRESET, "traind closed the connection");
			return fail(c, err, -errno, "cannot read from traind: %s", strerror(errno));
		}
		if (n == 0)
			return fail(c, err, -ECONNRESET, c->len > c->start
				    ? "traind closed the connection in the middle of a reply"
				    : "traind closed the connection without replying");
		c->len += (size_t)n;
	}
}
