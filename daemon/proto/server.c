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
 *
 * Clients and their shares. Each connection belongs to a peer (struct peer:
 * its uid, from SO_PEERCRED at accept), which counts the connections, the
 * calls in flight and the passed descriptors of that uid against the
 * per-uid limits, as dbus-broker charges each user's resources
 * (src/bus/user.c). traind accepts connections itself (a uv_poll on the
 * listening socket, not uv_listen) so that it decides before a connection
 * costs anything: who it is, whether there is room, and, when accept(2)
 * itself fails for want of descriptors, answering it all the same through
 * a spare descriptor given up for the purpose (the EMFILE "spare fd" trick
 * of libev's documentation; libuv's own closes such connections silently).
 *
 * Every connection not closing is in exactly one state, kept in one of the
 * server's lists (FIFO, so the head is the oldest, as nginx keeps its
 * reusable connections: ngx_reusable_connection, ngx_drain_connections):
 *   idle     no call in flight, nothing buffered or unsent: may be closed to
 *            make room for a new connection, oldest first (also in its
 *            peer's idle list, to free room within one uid);
 *   message  part of a message has come and no call is in flight: the head's
 *            deadline (since + the message timeout) arms the timer;
 *   busy     a call in flight, a parse off the loop or messages waiting for
 *            their turn: in no list;
 *   flush    closing after a last reply: closed at once when it is written,
 *            else when SERVER_FLUSH_TIMEOUT_MS pass (a client that reads
 *            nothing cannot keep it).
 * A connection leaves the counts (of the table and of its peer) as soon as
 * it starts closing; its socket leaves the descriptor count when closed.
 *
 * Passed descriptors. libuv queues the descriptors of each recvmsg in
 * arrival order. Linux ends a stream recvmsg with the skb that carried
 * descriptors, which begins where the sender's sendmsg began, so they came
 * with the message that holds the last byte of that read: a fdmark records
 * the stream offset just past it and their number. When a message is
 * dispatched, the marks within it say how many of the queue's front
 * descriptors are its own; its call may take them during dispatch
 * (call_take_fds), and the rest are closed right after.
 */
#include "daemon/proto/server.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/core/log.h"
#include "traind/jsonfmt.h"

#define ACCEPT_BATCH 64           /* connections accepted per turn of the loop */
#define ACCEPT_RETRY_MS 100       /* out of descriptors and no spare: wait this long */
#define LOG_EVERY_MS 1000         /* each kind of refusal is logged at most this often */

struct conn_list {
	struct conn *head, *tail;
};

/* One peer uid's share of the server. */
struct peer {
	uid_t uid;
	unsigned conns;           /* connections not closing */
	unsigned calls;           /* calls in flight */
	unsigned fds;             /* descriptors passed, not yet taken or closed */
	unsigned refs;            /* connections and calls pointing here */
	struct conn_list idle[2]; /* its fresh and its idle connections (ST_FRESH, ST_IDLE), oldest first */
	struct peer *next;
};

/* Descriptors that came with the read ending at stream offset `at`. */
struct fdmark {
	uint64_t at;
	unsigned n;
};

enum conn_state { ST_BUSY, ST_FRESH, ST_IDLE, ST_MESSAGE, ST_FLUSH, ST_NSTATES };

struct conn {
	uv_pipe_t pipe;
	struct server *srv;
	struct peer *peer;        /* a reference */
	char *buf;                /* received bytes not yet consumed */
	size_t len, cap;
	size_t scanned;           /* bytes of buf known to hold no NUL */
	uint64_t rx;              /* bytes received so far: buf ends at this stream offset */
	struct fdmark marks[SERVER_MAX_FDS + 1];   /* (nmarks) in arrival order */
	unsigned nmarks;
	unsigned npending;        /* passed descriptors libuv holds for us */
	unsigned msg_fds;         /* of those (at the front), the ones of the message being dispatched */
	struct call *current;     /* the call in flight, or NULL */
	struct parse *parsing;    /* a large message being parsed off the loop */
	bool closing;             /* uv_close'd */
	bool leaving;             /* out of the counts: closing, or flushing before it */
	bool reading;
	bool processing;          /* inside process(): do not re-enter */
	bool ready;               /* on the server's ready list */
	bool used;                /* has sent a message */
	enum conn_state state;
	uint64_t since;           /* uv_now when it entered `state`'s list */
	struct conn *sprev, *snext;          /* in the server's list of `state` */
	struct conn *pprev, *pnext;          /* in the peer's list of `state` (fresh, idle) */
	struct conn *prev, *next;            /* all connections */
	struct conn *ready_next;
};

struct call {
	struct conn *conn;        /* NULL once the client is gone */
	struct server *srv;       /* NULL once the server has closed */
	struct peer *peer;        /* a reference: the call is charged to it until it ends */
	struct call *cprev, *cnext;   /* the server's calls */
	json_t *msg;              /* the whole call message (owns params) */
	json_t *params;
	char method[128];
	bool more, oneway;
	void (*cancel)(void *arg);
	void *cancel_arg;
};

/* A log line at most every LOG_EVERY_MS, with the count of those skipped. */
struct ratelim {
	uint64_t next;
	unsigned skipped;
};

struct server {
	uv_loop_t *loop;
	int listen_fd;            /* -1 until listening */
	uv_poll_t listen_poll;
	bool listening;           /* listen_poll is initialised (and closes with the server) */
	int spare_fd;             /* given up to answer a connection when out of descriptors */
	server_dispatch_fn dispatch;
	void *ctx;
	struct conn *conns;
	unsigned nconns;          /* connections not closing */
	struct peer *peers;
	unsigned active;          /* peers with connections not closing */
	struct call *calls;       /* dispatched and not ended (with a client or not) */
	struct conn_list lists[ST_NSTATES];  /* idle, message and flush (busy: none) */
	bool closing;
	int open_handles;         /* handles and connections not yet closed */
	uid_t uid;
	gid_t gid;
	bool restrict_access;
	unsigned message_timeout_ms;
	unsigned client_fds;      /* sockets of connections not yet closed + passed descriptors */
	unsigned fd_budget;       /* what client_fds may reach: RLIMIT_NOFILE less the reserve */
	unsigned max_conns;       /* SERVER_MAX_CONNECTIONS, or less when the budget is smaller */
	uv_idle_t turn;           /* runs while the ready list is not empty */
	struct conn *ready;       /* connections with messages left after a turn */
	uv_timer_t timer;         /* the first deadline of the message and flush lists */
	uv_timer_t retry;         /* accepting again after running out of descriptors */
	size_t buffered;          /* input buffer bytes beyond the free allowance */
	size_t queued;            /* bytes of replies not yet written */
	bool trim;                /* a burst passed SERVER_TRIM_AFTER: give memory back once it is over */
	uint64_t *errors_sent;    /* counts error replies sent, or NULL (server_count_errors) */
	struct ratelim log_evict, log_full, log_uid, log_fds, log_emfile, log_slow, log_calls;
};

static void process(struct conn *c);
static bool quota_ok(unsigned remaining, unsigned users, unsigned share, unsigned charge);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);
static void conn_close(struct conn *c);
static void start_reading(struct conn *c);
static void conn_close_flush(struct conn *c);
static void conn_free_buffer(struct conn *c);
static void conn_update(struct conn *c);

/* True when a line may be logged now; *skipped gets how many were not since
 * the last one. */
static bool ratelim_ok(struct server *s, struct ratelim *r, unsigned *skipped)
{
	uint64_t now = uv_now(s->loop);

	if (now < r->next) {
		r->skipped++;
		return false;
	}
	r->next = now + LOG_EVERY_MS;
	*skipped = r->skipped;
	r->skipped = 0;
	return true;
}

/* ---- peers --------------------------------------------------------------- */

static struct peer *peer_get(struct server *s, uid_t uid)
{
	struct peer *p;

	for (p = s->peers; p; p = p->next)
		if (p->uid == uid)
			break;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return NULL;
		p->uid = uid;
		p->next = s->peers;
		s->peers = p;
	}
	p->refs++;
	return p;
}

static void peer_put(struct server *s, struct peer *p)
{
	struct peer **pp;

	if (!p || --p->refs > 0)
		return;
	for (pp = &s->peers; *pp && *pp != p; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = p->next;
	free(p);
}

/* ---- the state lists ------------------------------------------------------ */

static void list_remove(struct conn *c)
{
	struct server *s = c->srv;
	struct conn_list *l = &s->lists[c->state];

	if (c->state == ST_BUSY)
		return;
	if (c->sprev)
		c->sprev->snext = c->snext;
	else
		l->head = c->snext;
	if (c->snext)
		c->snext->sprev = c->sprev;
	else
		l->tail = c->sprev;
	c->sprev = c->snext = NULL;
	if (c->state == ST_FRESH || c->state == ST_IDLE) {
		struct conn_list *pl = &c->peer->idle[c->state - ST_FRESH];

		if (c->pprev)
			c->pprev->pnext = c->pnext;
		else
			pl->head = c->pnext;
		if (c->pnext)
			c->pnext->pprev = c->pprev;
		else
			pl->tail = c->pprev;
		c->pprev = c->pnext = NULL;
	}
	c->state = ST_BUSY;
}

static void arm_timer(struct server *s);

/* Move c to the tail of state st's list (since: now). */
static void list_enter(struct conn *c, enum conn_state st)
{
	struct server *s = c->srv;
	struct conn_list *l = &s->lists[st];

	list_remove(c);
	c->state = st;
	c->since = uv_now(s->loop);
	if (st == ST_BUSY)
		return;
	c->sprev = l->tail;
	if (l->tail)
		l->tail->snext = c;
	else
		l->head = c;
	l->tail = c;
	if (st == ST_FRESH || st == ST_IDLE) {
		struct conn_list *pl = &c->peer->idle[st - ST_FRESH];

		c->pprev = pl->tail;
		if (pl->tail)
			pl->tail->pnext = c;
		else
			pl->head = c;
		pl->tail = c;
	}
	if ((st == ST_MESSAGE || st == ST_FLUSH) && l->head == c)
		arm_timer(s);
}

static size_t conn_queued(struct conn *c);

/* Put c in the list its state calls for. A connection that stays in the
 * message state keeps its `since`: the deadline is for the whole message. */
static void conn_update(struct conn *c)
{
	enum conn_state st;

	if (c->leaving)
		return;
	if (c->current || c->parsing || c->ready)
		st = ST_BUSY;
	else if (c->len > 0)
		st = ST_MESSAGE;
	else if (conn_queued(c) == 0)
		st = c->used ? ST_IDLE : ST_FRESH;
	else
		st = ST_BUSY;     /* replies still being written */
	if (st != c->state)
		list_enter(c, st);
}

/* Out of the table's and the peer's counts and the lists: c is closing. */
static void conn_leave(struct conn *c)
{
	struct server *s = c->srv;

	if (c->leaving)
		return;
	list_remove(c);
	c->leaving = true;
	s->nconns--;
	if (--c->peer->conns == 0)
		s->active--;
}

/* ---- output ----------------------------------------------------------- */

struct wreq {
	uv_write_t req;
	struct server *srv;
	struct conn *conn;        /* valid until the callback (a close cancels writes first) */
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
	struct conn *c = w->conn;

	(void)status;
	s->queued -= w->len;
	free(w->data);
	free(w);
	note_memory(s);
	if (!c->closing && !c->processing && conn_queued(c) == 0)
		conn_update(c);
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
		log_warn("closing a client (uid %u) holding %zu MiB of unread replies (all clients: %zu MiB)",
			 (unsigned)worst->peer->uid, conn_queued(worst) >> 20, total >> 20);
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
		log_warn("closing a client (uid %u) that does not read its replies (%zu MiB unread)",
			 (unsigned)c->peer->uid, conn_queued(c) >> 20);
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
	w->conn = c;
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

/* ---- passed descriptors ------------------------------------------------ */

/* n descriptors are no longer held (taken by a call, or closed). */
static void fds_gone(struct conn *c, unsigned n)
{
	c->npending -= n;
	c->peer->fds -= n;
	c->srv->client_fds -= n;
}

/* uv_accept re-arms the connection's poll for input once its queue of
 * descriptors is empty, even when it is not reading (back-pressure): that
 * would spin the loop. A start and stop disarms it again. */
static void rearm_after_accept(struct conn *c)
{
	if (!c->reading && !c->closing &&
	    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0)
		uv_read_stop((uv_stream_t *)&c->pipe);
}

static void on_fd_handle_closed(uv_handle_t *h)
{
	free(h);
}

/* Take the next passed descriptor from libuv's queue: a duplicate (close-on-
 * exec) in *fd, or with fd NULL just closed. False when there is none (or no
 * memory to take it with: it then closes with the connection). */
static bool next_fd(struct conn *c, int *fd)
{
	/* libuv hands a passed descriptor over only as a handle: take it into
	 * one, keep a duplicate, close the handle (which closes it). */
	uv_pipe_t *h;
	uv_os_fd_t raw;
	bool ok = false;

	if (uv_pipe_pending_count(&c->pipe) <= 0 || !(h = malloc(sizeof(*h))))
		return false;
	if (uv_pipe_init(c->srv->loop, h, 0) < 0) {
		free(h);
		return false;
	}
	if (uv_accept((uv_stream_t *)&c->pipe, (uv_stream_t *)h) == 0) {
		ok = true;
		if (fd) {
			*fd = -1;
			if (uv_fileno((uv_handle_t *)h, &raw) == 0)
				*fd = fcntl(raw, F_DUPFD_CLOEXEC, 3);
		}
	}
	uv_close((uv_handle_t *)h, on_fd_handle_closed);
	return ok;
}

/* Close n of the queue's front descriptors. One that cannot be taken (no
 * memory) would be given to the next message's call instead: the
 * connection is closed then. */
static void drop_fds(struct conn *c, unsigned n)
{
	unsigned k = 0;

	while (k < n && next_fd(c, NULL))
		k++;
	fds_gone(c, k);
	if (k < n)
		conn_close(c);
	else if (k)
		rearm_after_accept(c);
}

/* The descriptors the message whose NUL is at stream offset `nul` came with:
 * those of the marks of reads ending within it, the front of the queue. */
static unsigned message_fds(struct conn *c, uint64_t nul)
{
	unsigned n = 0, k = 0;

	while (k < c->nmarks && c->marks[k].at - 1 <= nul)
		n += c->marks[k++].n;
	memmove(c->marks, c->marks + k, (c->nmarks - k) * sizeof(c->marks[0]));
	c->nmarks -= k;
	return n;
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

uid_t call_uid(struct call *c)
{
	return c->peer ? c->peer->uid : (uid_t)-1;
}

bool call_can_stream(struct call *c)
{
	return call_alive(c) && conn_queued(c->conn) < SERVER_STREAM_BACKLOG;
}

int call_take_fds(struct call *c, int *fds, int max)
{
	struct conn *conn = c->conn;
	int n = 0, taken = 0;

	if (!conn || conn->closing)
		return 0;
	while (n < max && (unsigned)taken < conn->msg_fds) {
		int fd;

		if (!next_fd(conn, &fd))
			break;
		taken++;
		if (fd >= 0)
			fds[n++] = fd;
	}
	conn->msg_fds -= (unsigned)taken;
	fds_gone(conn, (unsigned)taken);
	if (taken)
		rearm_after_accept(conn);
	return n;
}

int call_pending_fds(struct call *c)
{
	return c->conn && !c->conn->closing ? (int)c->conn->msg_fds : 0;
}

void call_on_cancel(struct call *c, void (*fn)(void *arg), void *arg)
{
	c->cancel = fn;
	c->cancel_arg = arg;
}

/* Uncharge c's peer and forget c: it has ended, or the server is closing
 * while c lives on without a client (call_end then has nothing to undo). */
static void call_detach(struct call *c)
{
	struct server *s = c->srv;

	if (!s)
		return;
	if (c->cprev)
		c->cprev->cnext = c->cnext;
	else
		s->calls = c->cnext;
	if (c->cnext)
		c->cnext->cprev = c->cprev;
	c->peer->calls--;
	peer_put(s, c->peer);
	c->peer = NULL;
	c->srv = NULL;
}

static void call_end(struct call *c)
{
	struct conn *conn = c->conn;

	call_detach(c);
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

/* A parsed message (msg NULL: jerr says why): validate and dispatch. */
static void handle_call(struct conn *c, json_t *msg, const json_error_t *jerr)
{
	json_t *method, *params, *more, *oneway;
	struct peer *p = c->peer;
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
	if (p->calls >= SERVER_MAX_UID_CALLS) {
		unsigned skipped;

		if (ratelim_ok(c->srv, &c->srv->log_calls, &skipped))
			log_warn("refused a call of uid %u: %u calls of that uid in flight (and %u refusals "
				 "not logged)", (unsigned)p->uid, p->calls, skipped);
		conn_error(c, PROTO_TOO_MANY_REQUESTS, "uid %u has %u calls in flight, the most one user may "
			   "have; wait for some to finish", (unsigned)p->uid, p->calls);
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
	call->srv = c->srv;
	call->peer = p;
	p->refs++;
	p->calls++;
	call->cnext = c->srv->calls;
	if (call->cnext)
		call->cnext->cprev = call;
	c->srv->calls = call;
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

/* The message is dealt with (dispatched, or refused): the descriptors it
 * came with that its call did not take are closed now. */
static void handle_parsed(struct conn *c, json_t *msg, const json_error_t *jerr)
{
	handle_call(c, msg, jerr);
	if (!c->closing)
		drop_fds(c, c->msg_fds);
	c->msg_fds = 0;
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
	/* as inside process(): a call that ends at once must not start the
	 * next message before this one's descriptors are dealt with */
	c->processing = true;
	handle_parsed(c, p->msg, &p->jerr);
	c->processing = false;
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

	if (c->processing || c->closing)
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
		c->used = true;
		/* the next message's deadline starts afresh */
		if (c->state == ST_MESSAGE)
			list_enter(c, ST_BUSY);
		c->msg_fds = message_fds(c, c->rx - c->len + mlen);
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
	if (!c->closing && !c->leaving) {
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
	if (!c->closing)
		conn_update(c);
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

/* Refuse a connection for `why` (a TooManyRequests or ProtocolError reply),
 * closing its descriptors now and the connection once the reply is out. */
static void conn_refuse(struct conn *c, enum proto_error e, const char *why)
{
	conn_error(c, e, "%s", why);
	drop_fds(c, c->npending);
	c->nmarks = 0;
	conn_close_flush(c);
}

/* A read brought `got` descriptors: note them (they belong to the message
 * holding the read's last byte, stream offset at - 1) and check the limits.
 * False when c has been refused. */
static bool note_fds(struct conn *c, unsigned got, uint64_t at)
{
	struct server *s = c->srv;
	struct peer *p = c->peer;
	unsigned skipped;
	char why[256];

	unsigned free_fds = s->client_fds < s->fd_budget ? s->fd_budget - s->client_fds : 0;
	bool share_ok = quota_ok(free_fds, s->active, p->conns + p->fds, got);

	c->npending += got;
	p->fds += got;
	s->client_fds += got;
	if (c->npending > SERVER_MAX_FDS) {
		snprintf(why, sizeof(why), "more than %d file descriptors passed and not taken by a call",
			 SERVER_MAX_FDS);
		conn_refuse(c, PROTO_PROTOCOL_ERROR, why);
		return false;
	}
	if (p->fds > SERVER_MAX_UID_FDS) {
		if (ratelim_ok(s, &s->log_uid, &skipped))
			log_warn("refused a client of uid %u: %u descriptors of that uid passed and not taken "
				 "(and %u refusals not logged)", (unsigned)p->uid, p->fds, skipped);
		snprintf(why, sizeof(why), "uid %u has %u file descriptors passed and not yet taken by a call, "
			 "more than the %d one user may have", (unsigned)p->uid, p->fds, SERVER_MAX_UID_FDS);
		conn_refuse(c, PROTO_TOO_MANY_REQUESTS, why);
		return false;
	}
	if (!share_ok) {
		if (ratelim_ok(s, &s->log_fds, &skipped))
			log_warn("refused a client of uid %u passing %u descriptors: that uid has %u, its share "
				 "of the %u left to clients (and %u refusals not logged)", (unsigned)p->uid, got,
				 p->conns + p->fds - got, free_fds, skipped);
		snprintf(why, sizeof(why), "traind is short of file descriptors: uid %u holds %u (connections "
			 "and descriptors passed), its share of the %u left; try again later", (unsigned)p->uid,
			 p->conns + p->fds - got, free_fds);
		conn_refuse(c, PROTO_TOO_MANY_REQUESTS, why);
		return false;
	}
	c->marks[c->nmarks].at = at;
	c->marks[c->nmarks].n = got;
	c->nmarks++;
	return true;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = st->data;
	int pending;

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
	pending = uv_pipe_pending_count(&c->pipe);
	if (n > 0 && pending > (int)c->npending &&
	    !note_fds(c, (unsigned)pending - c->npending, c->rx + (uint64_t)n))
		return;
	c->rx += (uint64_t)n;
	c->len += (size_t)n;
	if (c->len == 0) {
		conn_free_buffer(c); /* EAGAIN on an idle connection */
		conn_update(c);
	} else {
		process(c);
	}
}

static void start_reading(struct conn *c)
{
	if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0)
		c->reading = true;
}

static void server_maybe_free(struct server *s);

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct server *s = c->srv;

	conn_free_buffer(c);
	peer_put(s, c->peer);
	free(c);
	s->open_handles--;
	server_maybe_free(s);
}

static void conn_close(struct conn *c)
{
	struct server *s = c->srv;

	if (c->closing)
		return;
	conn_leave(c);
	list_remove(c);           /* the flush list */
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
			call_detach(call);
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
	/* the socket and the descriptors libuv still holds close with it */
	fds_gone(c, c->npending);
	s->client_fds--;
	uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

/* Close once the replies already queued have been written (an error sent
 * just before hanging up must reach the client), or after
 * SERVER_FLUSH_TIMEOUT_MS if the client does not read them. */
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

	if (c->closing || c->leaving)
		return;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	}
	conn_leave(c);
	req = malloc(sizeof(*req));
	if (!req) {
		conn_close(c);
		return;
	}
	req->data = c;
	if (uv_shutdown(req, (uv_stream_t *)&c->pipe, on_flushed) < 0) {
		free(req);
		conn_close(c);
		return;
	}
	list_enter(c, ST_FLUSH);
}

/* ---- deadlines ------------------------------------------------------------- */

static void on_deadline(uv_timer_t *t);

/* The timer at the first deadline of the message and flush lists (their
 * heads: each list is in the order of its fixed-length deadlines). */
static void arm_timer(struct server *s)
{
	uint64_t now = uv_now(s->loop), next = UINT64_MAX;
	struct conn *m = s->lists[ST_MESSAGE].head, *f = s->lists[ST_FLUSH].head;

	if (s->closing)
		return;
	if (m)
		next = m->since + s->message_timeout_ms;
	if (f && f->since + SERVER_FLUSH_TIMEOUT_MS < next)
		next = f->since + SERVER_FLUSH_TIMEOUT_MS;
	if (next == UINT64_MAX)
		uv_timer_stop(&s->timer);
	else
		uv_timer_start(&s->timer, on_deadline, next > now ? next - now : 0, 0);
}

static void on_deadline(uv_timer_t *t)
{
	struct server *s = t->data;
	uint64_t now = uv_now(s->loop);
	struct conn *c;

	while ((c = s->lists[ST_FLUSH].head) && c->since + SERVER_FLUSH_TIMEOUT_MS <= now)
		conn_close(c);
	while ((c = s->lists[ST_MESSAGE].head) && c->since + s->message_timeout_ms <= now) {
		unsigned skipped;
		char why[256];

		if (ratelim_ok(s, &s->log_slow, &skipped))
			log_notice("closed a client of uid %u whose message was not complete %u ms after its "
				   "first byte (%zu bytes came; and %u others not logged)", (unsigned)c->peer->uid,
				   s->message_timeout_ms, c->len, skipped);
		snprintf(why, sizeof(why), "the message was not complete within %u ms of its first byte "
			 "(%zu bytes came); a message must be sent whole", s->message_timeout_ms, c->len);
		conn_refuse(c, PROTO_PROTOCOL_ERROR, why);
		if (!c->leaving)   /* out of memory for the flush: closed */
			list_remove(c);
	}
	arm_timer(s);
}

/* ---- accepting ------------------------------------------------------------- */

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 /* Linux 4.13; older libc headers lack it */
#endif

/* Root, the daemon's own user, or a member of its group (primary or
 * supplementary, as the peer had them when it connected: SO_PEERGROUPS). */
static bool peer_allowed(struct server *s, int fd, const struct ucred *cred)
{
	gid_t stack[64], *groups = stack;
	socklen_t glen = sizeof(stack);
	bool ok = false;

	if (!s->restrict_access)
		return true;
	if (cred->uid == (uid_t)-1)
		return false;
	if (cred->uid == 0 || cred->uid == s->uid)
		return true;
	if (s->gid == (gid_t)-1)
		return false;
	if (cred->gid == s->gid)
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

/* Answer a connection that will not be served with error `e` and close it,
 * without a connection object (nothing is allocated: it must work when
 * memory or descriptors are short). The reply fits in any socket buffer.
 * What the client sent already (its first call, often, before the accept)
 * is read and dropped first: a Unix socket closed with unread input resets
 * its peer, which would then lose the reply. */
static void refuse_fd(struct server *s, int fd, enum proto_error e, const char *msg)
{
	char out[512];
	int n = snprintf(out, sizeof(out), "{\"error\":\"%s\",\"parameters\":{\"message\":\"%s\"}}",
			 proto_error_name(e), msg);

	if (n > 0 && n < (int)sizeof(out) &&
	    send(fd, out, (size_t)n + 1, MSG_DONTWAIT | MSG_NOSIGNAL) == n + 1 && s->errors_sent)
		(*s->errors_sent)++;
	shutdown(fd, SHUT_WR);
	for (int k = 0; k < 16 && recv(fd, out, sizeof(out), MSG_DONTWAIT) > 0; k++)
		;
	close(fd);
}

/* Close the oldest idle connection of peer p if given, else of anyone:
 * one that never sent a message first, else the least recently used.
 * False when there is none. */
static bool evict_idle(struct server *s, struct peer *p, const char *why)
{
	struct conn *c = p ? p->idle[0].head : s->lists[ST_FRESH].head;
	unsigned skipped;

	if (!c)
		c = p ? p->idle[1].head : s->lists[ST_IDLE].head;
	if (!c)
		return false;
	if (ratelim_ok(s, &s->log_evict, &skipped))
		log_notice("closed the oldest idle connection (uid %u, idle %.1f s) to make room: %s (and %u "
			 "others not logged)", (unsigned)c->peer->uid,
			 (double)(uv_now(s->loop) - c->since) / 1000.0, why, skipped);
	conn_close(c);
	return true;
}

/* A uid may take `charge` more of a pool with `remaining` units free when,
 * with `users` uids holding some of it (itself included), it then holds at
 * most a (users + 1)th of what the others leave free, as dbus-broker's
 * quotas (src/util/user.c, user_charge_check):
 *     (share + charge) * (users + 1) - share <= remaining
 * A lone uid gets about half of a pool, and whoever comes next still finds
 * room. */
static bool quota_ok(unsigned remaining, unsigned users, unsigned share, unsigned charge)
{
	return ((uint64_t)share + charge) * (users + 1) - share <= remaining;
}

static void on_retry(uv_timer_t *t);

/* accept(2) failed for want of descriptors (it takes one before it looks
 * for a connection): give up the spare one to take the connection, answer
 * it, and take the spare back. True when one was answered (there may be
 * more); false when there was none, or no spare to take it with. */
static bool accept_short(struct server *s, int err)
{
	unsigned skipped;
	char msg[200];
	int fd = -1, why = err;

	if (s->spare_fd >= 0) {
		close(s->spare_fd);
		s->spare_fd = -1;
		fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			why = errno;
		if (fd >= 0) {
			snprintf(msg, sizeof(msg), "traind is out of file descriptors (%s); try again later",
				 strerror(err));
			refuse_fd(s, fd, PROTO_TOO_MANY_REQUESTS, msg);   /* closes fd: room for the spare */
		}
		s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0 && (why == EAGAIN || why == EWOULDBLOCK))
			return false;     /* no connection was waiting after all */
	}
	if (ratelim_ok(s, &s->log_emfile, &skipped))
		log_err("out of file descriptors (%s; clients hold %u): %s a new connection (and %u others "
			"not logged)", strerror(err), s->client_fds,
			fd >= 0 ? "answered TooManyRequests to" : "could not answer", skipped);
	if (fd < 0 || s->spare_fd < 0) {
		/* no way to take more now: stop polling for a moment, not spin */
		uv_poll_stop(&s->listen_poll);
		uv_timer_start(&s->retry, on_retry, ACCEPT_RETRY_MS, 0);
		return false;
	}
	return true;
}

static void on_listen(uv_poll_t *h, int status, int events);

static void on_retry(uv_timer_t *t)
{
	struct server *s = t->data;

	if (s->spare_fd < 0)
		s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!s->closing)
		uv_poll_start(&s->listen_poll, UV_READABLE, on_listen);
}

/* Room for one more connection of peer p. A uid past its cap or its
 * share of the table or of the descriptors may only replace one of its own
 * idle connections; within them, a full table or budget is made room in by
 * closing the oldest idle connection of anyone. NULL, or why not (for the
 * refusal). */
static const char *make_room(struct server *s, struct peer *p, char *why, size_t len)
{
	unsigned users = s->active + (p->conns == 0);
	unsigned free_conns = s->nconns < s->max_conns ? s->max_conns - s->nconns : 0;
	unsigned free_fds = s->client_fds < s->fd_budget ? s->fd_budget - s->client_fds : 0;

	if (p->conns >= SERVER_MAX_UID_CONNECTIONS || !quota_ok(free_conns, users, p->conns, 1) ||
	    !quota_ok(free_fds, users, p->conns + p->fds, 1)) {
		if (evict_idle(s, p, "its uid has its share of connections"))
			return NULL;
		snprintf(why, len, "uid %u has %u connections open, none of them idle: %s", (unsigned)p->uid,
			 p->conns, p->conns >= SERVER_MAX_UID_CONNECTIONS ? "the most one user may have"
			 : "its share of the room left (each of the users connected may take a share of "
			   "what the others leave)");
		return why;
	}
	if (s->nconns >= s->max_conns && !evict_idle(s, NULL, "every connection is taken")) {
		snprintf(why, len, "too many connections (%u)", s->max_conns);
		return why;
	}
	if (s->client_fds >= s->fd_budget && !evict_idle(s, NULL, "traind is short of descriptors")) {
		snprintf(why, len, "traind is short of file descriptors (its clients hold %u of the %u it "
			 "allows them); try again later", s->client_fds, s->fd_budget);
		return why;
	}
	return NULL;
}

/* A new connection on fd: who it is, whether it may connect, whether there
 * is room; then a connection reading its calls. */
static void admit(struct server *s, int fd)
{
	struct ucred cred = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	socklen_t clen = sizeof(cred);
	struct peer *p;
	struct conn *c;
	const char *full;
	unsigned skipped;
	char why[256];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0)
		cred.uid = (uid_t)-1;
	if (!peer_allowed(s, fd, &cred)) {
		snprintf(why, sizeof(why), "uid %ld is not root, traind's user (uid %ld) or in its group (gid %ld)",
			 (long)(int)cred.uid, (long)s->uid, (long)(int)s->gid);
		log_warn("refused a connection from pid %ld: %s", (long)cred.pid, why);
		refuse_fd(s, fd, PROTO_PERMISSION_DENIED, why);
		return;
	}
	p = peer_get(s, cred.uid);
	if (!p) {
		log_warn("out of memory: refused a new connection");
		refuse_fd(s, fd, PROTO_TOO_MANY_REQUESTS, "traind is out of memory; try again later");
		return;
	}
	full = make_room(s, p, why, sizeof(why));
	if (full) {
		struct ratelim *rl = strstr(full, "uid") == full ? &s->log_uid : &s->log_full;

		if (ratelim_ok(s, rl, &skipped))
			log_warn("refused a connection of uid %u: %s (and %u refusals not logged)",
				 (unsigned)p->uid, full, skipped);
		peer_put(s, p);
		refuse_fd(s, fd, PROTO_TOO_MANY_REQUESTS, full);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		log_warn("out of memory: refused a new connection");
		peer_put(s, p);
		refuse_fd(s, fd, PROTO_TOO_MANY_REQUESTS, "traind is out of memory; try again later");
		return;
	}
	/* IPC mode: libuv reads with recvmsg and keeps the descriptors a
	 * client passes (SCM_RIGHTS) until a call takes them (call_take_fds)
	 * or they are closed. */
	uv_pipe_init(s->loop, &c->pipe, 1);
	c->pipe.data = c;
	c->srv = s;
	c->peer = p;
	s->open_handles++;
	if (uv_pipe_open(&c->pipe, fd) < 0) {
		/* the handle does not own fd: close both apart */
		c->closing = c->leaving = true;
		uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
		refuse_fd(s, fd, PROTO_TOO_MANY_REQUESTS, "traind cannot take the connection; try again later");
		return;
	}
	s->nconns++;
	s->client_fds++;
	if (p->conns++ == 0)
		s->active++;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	start_reading(c);
	conn_update(c);
}

static void on_listen(uv_poll_t *h, int status, int events)
{
	struct server *s = h->data;

	(void)events;
	if (status < 0 || s->closing)
		return;
	for (int k = 0; k < ACCEPT_BATCH && !s->closing; k++) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			admit(s, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE) {
			if (accept_short(s, errno))
				continue;
			return;
		}
		return;   /* EAGAIN: none left; anything else: the next turn retries */
	}
}

int server_new(struct server **out, uv_loop_t *loop, server_dispatch_fn fn, void *ctx)
{
	struct server *s = calloc(1, sizeof(*s));
	struct rlimit rl;
	rlim_t reserve;

	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->dispatch = fn;
	s->ctx = ctx;
	s->gid = (gid_t)-1;
	s->listen_fd = -1;
	s->spare_fd = -1;
	s->message_timeout_ms = SERVER_MESSAGE_TIMEOUT_MS;
	/* What clients may hold of the descriptors: the limit less a reserve
	 * for the daemon's own (datasets, the database, jobs, MPI launchers). */
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 30))
		rl.rlim_cur = 1u << 30;
	reserve = rl.rlim_cur / 4 > SERVER_FD_RESERVE ? rl.rlim_cur / 4 : SERVER_FD_RESERVE;
	s->fd_budget = rl.rlim_cur > reserve + 16 ? (unsigned)(rl.rlim_cur - reserve) : 16;
	s->max_conns = s->fd_budget < SERVER_MAX_CONNECTIONS ? s->fd_budget : SERVER_MAX_CONNECTIONS;
	uv_idle_init(loop, &s->turn);
	s->turn.data = s;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	uv_timer_init(loop, &s->retry);
	s->retry.data = s;
	s->open_handles += 3;
	*out = s;
	return 0;
}

void server_set_access(struct server *s, uid_t uid, gid_t gid)
{
	s->uid = uid;
	s->gid = gid;
	s->restrict_access = true;
}

void server_set_message_timeout(struct server *s, unsigned ms)
{
	if (ms > 0)
		s->message_timeout_ms = ms;
}

unsigned server_connections(const struct server *s)
{
	return s->nconns;
}

void server_count_errors(struct server *s, uint64_t *counter)
{
	s->errors_sent = counter;
}

/* Poll the listening socket s->listen_fd (non-blocking). */
static int start_listening(struct server *s, struct tr_err *err, const char *what)
{
	int rc = uv_poll_init(s->loop, &s->listen_poll, s->listen_fd);

	if (rc < 0)
		return tr_err_set(err, rc, "cannot listen on %s: %s", what, uv_strerror(rc));
	s->listen_poll.data = s;
	s->listening = true;
	s->open_handles++;
	s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	rc = uv_poll_start(&s->listen_poll, UV_READABLE, on_listen);
	if (rc < 0)
		return tr_err_set(err, rc, "cannot listen on %s: %s", what, uv_strerror(rc));
	log_info("clients: at most %u connections (%u per uid), %u calls in flight per uid, %u ms to "
		 "send a message; %u descriptors for them", s->max_conns, SERVER_MAX_UID_CONNECTIONS,
		 SERVER_MAX_UID_CALLS, s->message_timeout_ms, s->fd_budget);
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
	struct sockaddr_un sa;
	struct stat st;
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
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
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return tr_err_set(err, -errno, "cannot create a socket: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = tr_err_set(err, -errno, "cannot bind %s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	chmod(path, 0660);
	if (listen(fd, 511) < 0) {
		rc = tr_err_set(err, -errno, "cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	s->listen_fd = fd;
	return start_listening(s, err, path);
}

int server_listen_fd(struct server *s, int fd, struct tr_err *err)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return tr_err_set(err, -errno, "cannot use the inherited socket: %s", strerror(errno));
	s->listen_fd = fd;
	return start_listening(s, err, "the inherited socket");
}

/* Freed once every handle has closed and no connection is left. */
static void server_maybe_free(struct server *s)
{
	if (s->closing && s->open_handles == 0) {
		while (s->peers) {
			struct peer *p = s->peers;

			s->peers = p->next;
			free(p);
		}
		free(s);
	}
}

static void on_server_handle_closed(uv_handle_t *h)
{
	struct server *s = h->data;

	if (h == (uv_handle_t *)&s->listen_poll && s->listen_fd >= 0) {
		close(s->listen_fd);
		s->listen_fd = -1;
	}
	s->open_handles--;
	server_maybe_free(s);
}

void server_close(struct server *s)
{
	if (!s || s->closing)
		return;
	while (s->conns)
		conn_close(s->conns);
	/* calls that live on without a client: nothing more to charge */
	while (s->calls)
		call_detach(s->calls);
	s->closing = true;
	if (s->spare_fd >= 0)
		close(s->spare_fd);
	s->spare_fd = -1;
	uv_close((uv_handle_t *)&s->turn, on_server_handle_closed);
	uv_close((uv_handle_t *)&s->timer, on_server_handle_closed);
	uv_close((uv_handle_t *)&s->retry, on_server_handle_closed);
	if (s->listening)
		uv_close((uv_handle_t *)&s->listen_poll, on_server_handle_closed);
	else if (s->listen_fd >= 0)
		close(s->listen_fd);
}
