/*
 * server.c - varlink over a Unix stream socket. See daemon/proto/server.h.
 *
 * Connection buffer: bytes are appended as they arrive; complete messages
 * (up to a NUL) are taken from the front one at a time, and only while no call
 * is in flight. While a call is pending and the buffer holds more than a
 * message's worth, reading stops (back-pressure) until the call ends. An
 * empty buffer is freed, so an idle connection holds no buffer at all.
 *
 * Fairness: one turn of a connection handles at most SERVER_TURN_MESSAGES
 * messages; if more are waiting, it goes on the ready list, which an idle
 * handle serves once per loop iteration, after every other connection's I/O
 * has had its turn. A client that pipelines thousands of calls thus delays
 * others by one turn's work, not by its whole pipeline.
 *
 * Memory bounds: the input buffers of all connections together stay under
 * SERVER_MAX_BUFFERED (a connection whose unfinished message would pass it
 * gets a ProtocolError and is closed); the unwritten replies of all
 * connections together stay under SERVER_MAX_QUEUED (past it, the
 * connections with the most unread bytes are closed, largest first).
 */
#include "daemon/proto/server.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/core/log.h"
#include "traind/jsonfmt.h"

struct conn {
	uv_pipe_t pipe;
	struct server *srv;
	char *buf;                /* received bytes not yet consumed */
	size_t len, cap;
	size_t scanned;           /* bytes of buf known to hold no NUL */
	struct call *current;     /* the call in flight, or NULL */
	struct parse *parsing;    /* a large message being parsed off the loop */
	bool closing;
	bool reading;
	bool processing;          /* inside process(): do not re-enter */
	bool ready;               /* on the server's ready list */
	struct conn *prev, *next;
	struct conn *ready_next;
};

struct call {
	struct conn *conn;        /* NULL once the client is gone */
	json_t *msg;              /* the whole call message (owns params) */
	json_t *params;
	char method[128];
	bool more, oneway;
	void (*cancel)(void *arg);
	void *cancel_arg;
};

struct server {
	uv_loop_t *loop;
	uv_pipe_t listener;
	bool listening;
	server_dispatch_fn dispatch;
	void *ctx;
	struct conn *conns;
	unsigned nconns;
	bool closing;
	int open_handles;         /* listener + connections not yet closed */
	uid_t uid;
	gid_t gid;
	bool restrict_access;
	uv_idle_t turn;           /* runs while the ready list is not empty */
	struct conn *ready;       /* connections with messages left after a turn */
	size_t buffered;          /* input buffer bytes beyond the free allowance */
	size_t queued;            /* bytes of replies not yet written */
	bool trim;                /* a burst passed SERVER_TRIM_AFTER: give memory back once it is over */
	uv_pipe_t refuse;         /* takes a connection there is no memory for (refuse_pending) */
	bool refusing;            /* refuse is open or closing */
	bool stalled;             /* a connection waits for refuse to be free */
	uint64_t *errors_sent;    /* counts error replies sent, or NULL (server_count_errors) */
};

static void process(struct conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);
static void conn_close(struct conn *c);
static void start_reading(struct conn *c);
static void conn_close_flush(struct conn *c);
static void conn_free_buffer(struct conn *c);

/* ---- output ----------------------------------------------------------- */

struct wreq {
	uv_write_t req;
	struct server *srv;
	size_t len;
	char *data;
};

/* After a burst of large buffers or backlogs, once all of it is gone,
 * return the freed heap to the system: glibc keeps it otherwise, and a
 * daemon that runs for weeks should not stay at its worst moment's size. */
static void note_memory(struct server *s)
{
	if (s->queued > SERVER_TRIM_AFTER || s->buffered > SERVER_TRIM_AFTER) {
		s->trim = true;
	} else if (s->trim && s->queued == 0 && s->buffered == 0) {
		s->trim = false;
		malloc_trim(0);
	}
}

static void on_write(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct server *s = w->srv;

	(void)status;
	s->queued -= w->len;
	free(w->data);
	free(w);
	note_memory(s);
}

static size_t conn_queued(struct conn *c)
{
	return uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe);
}

/* Past the global reply budget: close the connections holding the most
 * unread replies until the rest fits. Their queued writes are cancelled and
 * freed as the handles close. */
static void enforce_queue_budget(struct server *s)
{
	size_t total = 0;

	/* s->queued also counts writes done but not yet called back; the
	 * streams' own queues say what is really unwritten. */
	for (struct conn *c = s->conns; c; c = c->next)
		if (!c->closing)
			total += conn_queued(c);
	while (total > SERVER_MAX_QUEUED) {
		struct conn *worst = NULL;

		for (struct conn *c = s->conns; c; c = c->next)
			if (!c->closing && (!worst || conn_queued(c) > conn_queued(worst)))
				worst = c;
		if (!worst || conn_queued(worst) == 0)
			break;
		log_warn("closing a client holding %zu MiB of unread replies (all clients: %zu MiB)",
			 conn_queued(worst) >> 20, total >> 20);
		total -= conn_queued(worst);
		conn_close(worst);
	}
}

static void send_json(struct conn *c, json_t *msg)
{
	char *text;
	size_t n;
	struct wreq *w;
	uv_buf_t b;

	if (!c || c->closing)
		return;
	/* Checked before adding, so one large reply (an export) always goes
	 * out, but a client that reads nothing cannot pile up more. */
	if (conn_queued(c) > SERVER_MAX_BACKLOG) {
		log_warn("closing a client that does not read its replies (%zu MiB unread)",
			 conn_queued(c) >> 20);
		conn_close(c);
		return;
	}
	text = jsonfmt_dumps(msg, JSON_COMPACT);   /* shortest exact reals: 0.9, not 0.90000000000000002 */
	if (!text) {
		conn_close(c);
		return;
	}
	n = strlen(text) + 1; /* the NUL terminator is the frame */
	w = malloc(sizeof(*w));
	if (!w) {
		free(text);
		conn_close(c);
		return;
	}
	w->data = text;
	w->srv = c->srv;
	w->len = n;
	b = uv_buf_init(text, (unsigned)n);
	if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_write) < 0) {
		free(text);
		free(w);
		conn_close(c);
		return;
	}
	c->srv->queued += n;
	note_memory(c->srv);
	if (c->srv->queued > SERVER_MAX_QUEUED)
		enforce_queue_budget(c->srv);
}

/* The message of a reply naming error `e` with `params`, checked against
 * e's declaration (a mismatch is a bug in traind: logged, sent anyway, so
 * the client still hears what went wrong). Takes params. */
static json_t *error_message(enum proto_error e, json_t *params)
{
	char why[160];
	json_t *m;

	if (!params)
		params = json_object();
	if (!proto_error_check(e, params, why, sizeof(why))) {
		char *text = json_dumps(params, JSON_COMPACT);

		log_err("protocol bug: %s sent with parameters %s not as declared: %s", proto_error_name(e),
			text ? text : "(none)", why);
		free(text);
	}
	m = json_object();
	if (!m || json_object_set_new(m, "error", json_string(proto_error_name(e))) < 0) {
		json_decref(m);
		json_decref(params);
		return NULL;
	}
	if (json_object_set_new(m, "parameters", params) < 0) {
		json_decref(m);
		return NULL;
	}
	return m;
}

/* An error outside any call (the message was not a call; the connection is
 * refused): {"message": ...} for an error that carries just a message. */
static void conn_error(struct conn *c, enum proto_error e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void conn_error(struct conn *c, enum proto_error e, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *m;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(msg))
		msg[tr_utf8_cut(msg, sizeof(msg) - 1)] = '\0';
	m = error_message(e, proto_error_params(e, &(struct proto_detail){ .message = msg }));
	if (m && !c->closing) {
		send_json(c, m);
		if (c->srv->errors_sent)
			(*c->srv->errors_sent)++;
	}
	json_decref(m);
}

/* ---- calls ------------------------------------------------------------ */

json_t *call_params(struct call *c)
{
	return c->params;
}

const char *call_method(struct call *c)
{
	return c->method;
}

bool call_more(struct call *c)
{
	return c->more;
}

bool call_alive(struct call *c)
{
	return c->conn && !c->conn->closing;
}

bool call_can_stream(struct call *c)
{
	return call_alive(c) && conn_queued(c->conn) < SERVER_STREAM_BACKLOG;
}

static void on_fd_handle_closed(uv_handle_t *h)
{
	free(h);
}

int call_take_fds(struct call *c, int *fds, int max)
{
	struct conn *conn = c->conn;
	int n = 0;

	while (conn && n < max && uv_pipe_pending_count(&conn->pipe) > 0) {
		/* libuv hands a passed descriptor over only as a handle: take
		 * it into one, keep a duplicate, close the handle. */
		uv_pipe_t *h = malloc(sizeof(*h));
		uv_os_fd_t fd;

		if (!h || uv_pipe_init(conn->srv->loop, h, 0) < 0) {
			free(h);
			break;
		}
		if (uv_accept((uv_stream_t *)&conn->pipe, (uv_stream_t *)h) == 0 &&
		    uv_fileno((uv_handle_t *)h, &fd) == 0) {
			int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);

			if (dup >= 0)
				fds[n++] = dup;
		}
		uv_close((uv_handle_t *)h, on_fd_handle_closed);
	}
	/* uv_accept re-arms the connection's poll for input once the queue is
	 * empty, even when it is not reading (back-pressure): that would spin
	 * the loop. A start and stop disarms it again. */
	if (conn && n > 0 && !conn->reading &&
	    uv_read_start((uv_stream_t *)&conn->pipe, on_alloc, on_read) == 0)
		uv_read_stop((uv_stream_t *)&conn->pipe);
	return n;
}

int call_pending_fds(struct call *c)
{
	return c->conn ? uv_pipe_pending_count(&c->conn->pipe) : 0;
}

void call_on_cancel(struct call *c, void (*fn)(void *arg), void *arg)
{
	c->cancel = fn;
	c->cancel_arg = arg;
}

static void call_end(struct call *c)
{
	struct conn *conn = c->conn;

	json_decref(c->msg);
	free(c);
	if (conn) {
		conn->current = NULL;
		if (!conn->closing)
			process(conn);
	}
}

void call_reply(struct call *c, json_t *params, bool continues)
{
	if (call_alive(c) && !c->oneway) {
		json_t *m = json_object();

		json_object_set_new(m, "parameters", params ? params : json_object());
		params = NULL;
		if (continues)
			json_object_set_new(m, "continues", json_true());
		send_json(c->conn, m);
		json_decref(m);
	}
	json_decref(params);
	if (!continues)
		call_end(c);
}

void call_error(struct call *c, enum proto_error e, const struct proto_detail *d)
{
	json_t *m = error_message(e, proto_error_params(e, d));

	if (m && call_alive(c) && !c->oneway) {
		send_json(c->conn, m);
		if (c->conn->srv->errors_sent)
			(*c->conn->srv->errors_sent)++;
	}
	json_decref(m);
	call_end(c);
}

void call_invalid_parameter(struct call *c, const char *param, const char *fmt, ...)
{
	char msg[TR_ERR_MSG_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(msg))
		msg[tr_utf8_cut(msg, sizeof(msg) - 1)] = '\0';
	call_error(c, PROTO_INVALID_PARAMETER, &(struct proto_detail){ .parameter = param, .message = msg });
}

/* ---- input ------------------------------------------------------------ */

/* One complete message (without its NUL): validate and dispatch. */
/* A parsed message (msg NULL: jerr says why): validate and dispatch. */
static void handle_parsed(struct conn *c, json_t *msg, const json_error_t *jerr)
{
	json_t *method, *params, *more, *oneway;
	struct call *call;

	if (!msg) {
		conn_error(c, PROTO_PROTOCOL_ERROR, "malformed JSON at byte %d: %s", jerr->position, jerr->text);
		return;
	}
	if (!json_is_object(msg)) {
		conn_error(c, PROTO_PROTOCOL_ERROR, "a message must be a JSON object");
		goto out;
	}
	method = json_object_get(msg, "method");
	params = json_object_get(msg, "parameters");
	more = json_object_get(msg, "more");
	oneway = json_object_get(msg, "oneway");
	if (!json_is_string(method) || json_string_length(method) == 0 ||
	    json_string_length(method) >= sizeof(call->method)) {
		conn_error(c, PROTO_PROTOCOL_ERROR, "the message has no \"method\" string");
		goto out;
	}
	/* null, as an absent "parameters", is a call without any (the
	 * reference Go client sends it for GetInfo) */
	if (json_is_null(params))
		params = NULL;
	if (params && !json_is_object(params)) {
		conn_error(c, PROTO_PROTOCOL_ERROR, "\"parameters\" must be an object or null");
		goto out;
	}
	if ((more && !json_is_boolean(more)) || (oneway && !json_is_boolean(oneway))) {
		conn_error(c, PROTO_PROTOCOL_ERROR, "\"more\" and \"oneway\" must be booleans");
		goto out;
	}
	call = calloc(1, sizeof(*call));
	if (!call) {
		conn_error(c, PROTO_PROTOCOL_ERROR, "out of memory");
		goto out;
	}
	if (!params) {
		params = json_object();
		if (!params || json_object_set_new(msg, "parameters", params) < 0) {
			free(call);
			conn_error(c, PROTO_PROTOCOL_ERROR, "out of memory");
			goto out;
		}
	}
	call->conn = c;
	call->msg = msg;
	call->params = params;
	call->more = json_is_true(more);
	call->oneway = json_is_true(oneway);
	snprintf(call->method, sizeof(call->method), "%s", json_string_value(method));
	c->current = call;
	c->srv->dispatch(c->srv->ctx, call, call->method);
	return;
out:
	json_decref(msg);
}

/* Large messages are parsed on the threadpool: jansson reads about 50 MB/s,
 * so a 12 MiB model upload would stall every other client for a quarter of
 * a second. The connection takes no further message meanwhile (order kept);
 * if it closes first, the parse is dropped when it ends. */
struct parse {
	uv_work_t req;
	struct conn *conn;        /* NULL once the connection is gone */
	char *text;
	size_t len;
	json_t *msg;
	json_error_t jerr;
};

static void parse_work(uv_work_t *req)
{
	struct parse *p = req->data;

	p->msg = json_loadb(p->text, p->len, JSON_REJECT_DUPLICATES, &p->jerr);
}

static void parse_done(uv_work_t *req, int status)
{
	struct parse *p = req->data;
	struct conn *c = p->conn;

	(void)status;
	free(p->text);
	if (!c) {
		json_decref(p->msg);
		free(p);
		return;
	}
	c->parsing = NULL;
	handle_parsed(c, p->msg, &p->jerr);
	free(p);
	if (!c->closing)
		process(c);
}

static void handle_message(struct conn *c, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *msg;

	if (len >= SERVER_PARSE_OFF_LOOP) {
		struct parse *p = calloc(1, sizeof(*p));

		if (p && (p->text = malloc(len))) {
			memcpy(p->text, text, len);
			p->len = len;
			p->conn = c;
			p->req.data = p;
			if (uv_queue_work(c->srv->loop, &p->req, parse_work, parse_done) == 0) {
				c->parsing = p;
				return;
			}
			free(p->text);
		}
		free(p);
		/* no memory or no threadpool: parse here */
	}
	msg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	handle_parsed(c, msg, &jerr);
}

static void on_turn(uv_idle_t *h)
{
	struct server *s = h->data;
	struct conn *list = s->ready;

	/* Handles are freed only after the loop's close phase, so every
	 * connection on the list is still valid memory here, if closing. */
	s->ready = NULL;
	while (list) {
		struct conn *c = list;

		list = c->ready_next;
		c->ready_next = NULL;
		c->ready = false;
		process(c);
	}
	if (!s->ready)
		uv_idle_stop(h);
}

static void defer_turn(struct conn *c)
{
	struct server *s = c->srv;

	if (c->ready)
		return;
	c->ready = true;
	c->ready_next = s->ready;
	s->ready = c;
	uv_idle_start(&s->turn, on_turn);
}

static void process(struct conn *c)
{
	unsigned handled = 0;

	if (c->processing)
		return;
	c->processing = true;
	while (!c->current && !c->parsing && !c->closing) {
		char *nul;
		size_t mlen;

		if (handled == SERVER_TURN_MESSAGES) {
			defer_turn(c);
			break;
		}
		if (c->len == c->scanned)
			break;  /* nothing new (c->buf may be NULL) */
		nul = memchr(c->buf + c->scanned, '\0', c->len - c->scanned);
		if (!nul) {
			c->scanned = c->len;
			if (c->len > SERVER_MAX_MESSAGE) {
				conn_error(c, PROTO_PROTOCOL_ERROR, "message larger than %u bytes", SERVER_MAX_MESSAGE);
				c->len = c->scanned = 0;
				conn_close_flush(c);
				c->processing = false;
				return;
			}
			break;
		}
		mlen = (size_t)(nul - c->buf);
		handled++;
		handle_message(c, c->buf, mlen);
		if (c->closing)
			break;
		memmove(c->buf, nul + 1, c->len - mlen - 1);
		c->len -= mlen + 1;
		c->scanned = 0;
	}
	if (c->len == 0)
		conn_free_buffer(c);
	/* back-pressure: read more only while there is room for it */
	if (!c->closing) {
		bool busy = c->current || c->parsing;
		bool want = c->len <= SERVER_MAX_MESSAGE && !c->ready && (!busy || c->len < 65536);

		if (want && !c->reading) {
			start_reading(c);
		} else if (!want && c->reading) {
			uv_read_stop((uv_stream_t *)&c->pipe);
			c->reading = false;
		}
	}
	c->processing = false;
}

/* What a buffer of `cap` bytes counts against SERVER_MAX_BUFFERED: the
 * first SERVER_FREE_BUFFER bytes of every connection are free, so ordinary
 * small calls are served even while large unfinished messages fill the
 * budget (4096 connections x 16 KiB bounds that allowance at 64 MiB). */
static size_t charged(size_t cap)
{
	return cap > SERVER_FREE_BUFFER ? cap - SERVER_FREE_BUFFER : 0;
}

/* Room for the next read: 4 KiB to start with, then as much as the
 * buffer already holds (it doubles), within the global input budget. A
 * connection refused room gets the NULL that on_read reports as
 * UV_ENOBUFS. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct conn *c = h->data;
	struct server *s = c->srv;

	(void)suggested;
	if (c->cap - c->len < 1024) {
		size_t ncap = c->len + (c->len < 4096 ? 4096 : c->len);
		char *nb;

		if (s->buffered - charged(c->cap) + charged(ncap) > SERVER_MAX_BUFFERED) {
			*b = uv_buf_init(NULL, 0);
			return;
		}
		nb = realloc(c->buf, ncap);
		if (!nb) {
			*b = uv_buf_init(NULL, 0);
			return;
		}
		s->buffered = s->buffered - charged(c->cap) + charged(ncap);
		note_memory(s);
		c->buf = nb;
		c->cap = ncap;
	}
	*b = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void conn_free_buffer(struct conn *c)
{
	c->srv->buffered -= charged(c->cap);
	free(c->buf);
	c->buf = NULL;
	c->cap = c->len = c->scanned = 0;
	note_memory(c->srv);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = st->data;

	(void)b;
	if (n == UV_ENOBUFS) {
		log_warn("refusing a message: unfinished messages of all clients hold %zu MiB",
			 c->srv->buffered >> 20);
		conn_error(c, PROTO_TOO_MANY_REQUESTS, "the daemon is out of room for unfinished messages (%u MiB in all); "
			       "try again later", SERVER_MAX_BUFFERED >> 20);
		conn_close_flush(c);
		return;
	}
	if (n < 0) {
		conn_close(c);
		return;
	}
	if (uv_pipe_pending_count(&c->pipe) > SERVER_MAX_FDS) {
		conn_error(c, PROTO_PROTOCOL_ERROR, "more than %d file descriptors passed and not taken by a call",
			   SERVER_MAX_FDS);
		conn_close_flush(c);
		return;
	}
	c->len += (size_t)n;
	if (c->len == 0)
		conn_free_buffer(c); /* EAGAIN on an idle connection */
	else
		process(c);
}

static void start_reading(struct conn *c)
{
	if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0)
		c->reading = true;
}

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct server *s = c->srv;

	conn_free_buffer(c);
	free(c);
	s->open_handles--;
	if (s->closing && s->open_handles == 0)
		free(s);
}

static void conn_close(struct conn *c)
{
	struct server *s = c->srv;

	if (c->closing)
		return;
	c->closing = true;
	if (c->parsing) {
		c->parsing->conn = NULL;
		c->parsing = NULL;
	}
	if (c->current) {
		struct call *call = c->current;

		call->conn = NULL;
		c->current = NULL;
		if (call->cancel) {
			/* The hook drops its owner's pointer to the call, so
			 * nobody will end it: free it here. */
			call->cancel(call->cancel_arg);
			json_decref(call->msg);
			free(call);
		}
	}
	if (c->ready) {
		struct conn **pp = &s->ready;

		while (*pp && *pp != c)
			pp = &(*pp)->ready_next;
		if (*pp)
			*pp = c->ready_next;
		c->ready = false;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

/* Close once the replies already queued have been written (an error sent
 * just before hanging up must reach the client). */
static void on_flushed(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	(void)status;
	free(req);
	conn_close(c);
}

static void conn_close_flush(struct conn *c)
{
	uv_shutdown_t *req;

	if (c->closing)
		return;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	}
	req = malloc(sizeof(*req));
	if (!req) {
		conn_close(c);
		return;
	}
	req->data = c;
	if (uv_shutdown(req, (uv_stream_t *)&c->pipe, on_flushed) < 0) {
		free(req);
		conn_close(c);
	}
}

/* ---- listening -------------------------------------------------------- */

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 /* Linux 4.13; older libc headers lack it */
#endif

/* Root, the daemon's own user, or a member of its group (primary or
 * supplementary, as the peer had them when it connected: SO_PEERGROUPS). */
static bool peer_allowed(struct server *s, int fd, struct ucred *peer)
{
	struct ucred cred = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	socklen_t len = sizeof(cred);
	gid_t stack[64], *groups = stack;
	socklen_t glen = sizeof(stack);
	bool ok = false;

	if (!s->restrict_access)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	*peer = cred;
	if (cred.uid == 0 || cred.uid == s->uid)
		return true;
	if (s->gid == (gid_t)-1)
		return false;
	if (cred.gid == s->gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) < 0) {
		if (errno != ERANGE || !(groups = malloc(glen)))
			return false;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) < 0)
			goto out;
	}
	for (size_t i = 0; i < glen / sizeof(gid_t); i++)
		if (groups[i] == s->gid)
			ok = true;
out:
	if (groups != stack)
		free(groups);
	return ok;
}

static void refuse_pending(struct server *s);

static void on_refused_closed(uv_handle_t *h)
{
	struct server *s = h->data;

	s->refusing = false;
	s->open_handles--;
	if (s->closing) {
		if (s->open_handles == 0)
			free(s);
		return;
	}
	if (s->stalled) {
		s->stalled = false;
		refuse_pending(s);
	}
}

/* Accept the pending connection into s->refuse and close it at once: libuv
 * stops watching the listener until its pending connection is accepted, so
 * one that cannot be served (no memory for it) must still be taken, or
 * traind would never accept another. Allocates nothing. */
static void refuse_pending(struct server *s)
{
	if (s->refusing) {
		s->stalled = true;   /* taken when the handle is free again */
		return;
	}
	log_warn("out of memory: closed a new connection at once");
	uv_pipe_init(s->loop, &s->refuse, 0);
	s->refuse.data = s;
	s->refusing = true;
	s->open_handles++;
	(void)uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&s->refuse);   /* EAGAIN: none left */
	uv_close((uv_handle_t *)&s->refuse, on_refused_closed);
}

static void on_connection(uv_stream_t *l, int status)
{
	struct server *s = l->data;
	struct conn *c;
	struct ucred peer = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	uv_os_fd_t fd;

	if (status < 0 || s->closing)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		refuse_pending(s);
		return;
	}
	/* IPC mode: libuv reads with recvmsg and keeps the descriptors a
	 * client passes (SCM_RIGHTS) until a call takes them (call_take_fds)
	 * or the connection closes. */
	uv_pipe_init(s->loop, &c->pipe, 1);
	c->pipe.data = c;
	c->srv = s;
	s->open_handles++;
	if (uv_accept(l, (uv_stream_t *)&c->pipe) < 0) {
		c->closing = true;
		uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
		return;
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	if (s->nconns > SERVER_MAX_CONNECTIONS) {
		conn_error(c, PROTO_TOO_MANY_REQUESTS, "too many connections (%u)", SERVER_MAX_CONNECTIONS);
		conn_close_flush(c);
		return;
	}
	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0 && !peer_allowed(s, fd, &peer)) {
		char msg[160];

		snprintf(msg, sizeof(msg), "uid %ld is not root, traind's user (uid %ld) or in its group (gid %ld)",
			 (long)(int)peer.uid, (long)s->uid, (long)(int)s->gid);
		log_warn("refused a connection from pid %ld: %s", (long)peer.pid, msg);
		conn_error(c, PROTO_PERMISSION_DENIED, "%s", msg);
		conn_close_flush(c);
		return;
	}
	start_reading(c);
}

int server_new(struct server **out, uv_loop_t *loop, server_dispatch_fn fn, void *ctx)
{
	struct server *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->dispatch = fn;
	s->ctx = ctx;
	s->gid = (gid_t)-1;
	uv_idle_init(loop, &s->turn);
	s->turn.data = s;
	s->open_handles++;
	*out = s;
	return 0;
}

void server_set_access(struct server *s, uid_t uid, gid_t gid)
{
	s->uid = uid;
	s->gid = gid;
	s->restrict_access = true;
}

unsigned server_connections(const struct server *s)
{
	return s->nconns;
}

void server_count_errors(struct server *s, uint64_t *counter)
{
	s->errors_sent = counter;
}

static int start_listening(struct server *s, struct tr_err *err, const char *what)
{
	int rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);

	if (rc < 0)
		return tr_err_set(err, rc, "cannot listen on %s: %s", what, uv_strerror(rc));
	s->listening = true;
	return 0;
}

/* Is something accepting connections on `path`? */
static bool socket_alive(const char *path)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive;

	if (fd < 0)
		return false;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return alive;
}

int server_listen_path(struct server *s, const char *path, struct tr_err *err)
{
	struct stat st;
	int rc;

	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return tr_err_set(err, -ENAMETOOLONG, "socket path too long: %s", path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return tr_err_set(err, -EEXIST, "%s exists and is not a socket", path);
		if (socket_alive(path))
			return tr_err_set(err, -EADDRINUSE,
					  "another traind is listening on %s; not taking it over", path);
		log_notice("replacing stale socket %s", path);
		unlink(path);
	}
	uv_pipe_init(s->loop, &s->listener, 0);
	s->listener.data = s;
	s->open_handles++;
	rc = uv_pipe_bind(&s->listener, path);
	if (rc < 0)
		return tr_err_set(err, rc, "cannot bind %s: %s", path, uv_strerror(rc));
	chmod(path, 0660);
	return start_listening(s, err, path);
}

int server_listen_fd(struct server *s, int fd, struct tr_err *err)
{
	int rc;

	uv_pipe_init(s->loop, &s->listener, 0);
	s->listener.data = s;
	s->open_handles++;
	rc = uv_pipe_open(&s->listener, fd);
	if (rc < 0)
		return tr_err_set(err, rc, "cannot use the inherited socket: %s", uv_strerror(rc));
	return start_listening(s, err, "the inherited socket");
}

static void on_server_handle_closed(uv_handle_t *h)
{
	struct server *s = h->data;

	s->open_handles--;
	if (s->open_handles == 0)
		free(s);
}

void server_close(struct server *s)
{
	if (!s || s->closing)
		return;
	s->closing = true;
	while (s->conns)
		conn_close(s->conns);
	uv_close((uv_handle_t *)&s->turn, on_server_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->listener) && s->listener.type == UV_NAMED_PIPE)
		uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
}
