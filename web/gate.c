/*
 * gate.c - see gate.h.
 *
 * The table: one entry per connection handed to libmicrohttpd, from the
 * accept until libmicrohttpd says it closed (gate_connection, after the
 * connection's thread has ended, before it closes the socket). An entry is
 * `live` (counted against the limits) until the gate closes it; one being
 * closed still holds a thread and a socket until libmicrohttpd notices, so
 * the gate takes no more than twice max_connections in all, and twice
 * max_per_client of one client (one that churns connections waits for its
 * own to close, not everyone).
 *
 * Phases of a live entry: waiting (no request begun: a new connection, or
 * one kept alive after a response), receiving (request line seen, headers
 * or body still coming), handling. `since` is when it began waiting: the
 * request deadline runs from there through receiving.
 *
 * A refused connection gets a 503 and a half-close, then its input is
 * drained for up to GATE_LINGER_MS before it is closed, so that closing with
 * unread input does not reset the connection before the client reads the
 * answer (nginx's lingering_close). At most GATE_LINGER_MAX linger; more
 * are closed at once.
 */
#include "gate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define GATE_ACCEPT_BATCH 64      /* connections accepted per wake-up */
#define GATE_LINGER_MAX 128
#define GATE_LINGER_MS 1000
#define GATE_UNSTARTED_MS 10000   /* an entry libmicrohttpd never started: dropped */
#define GATE_LOG_EVERY_MS 1000

enum phase { PH_WAITING, PH_RECEIVING, PH_HANDLING };

/* Who a connection is: a uid, or an address. */
struct client {
	bool is_uid;
	uid_t uid;
	int family;
	unsigned char ip[16];
	char name[64];            /* "uid 1000", "10.1.2.3" */
	unsigned live;            /* its live connections */
	unsigned all;             /* and those being closed */
	struct client *next;
};

struct entry {
	struct gate *g;
	int fd;                   /* the socket's number as libmicrohttpd has it (a key until closed) */
	int dup;                  /* the gate's duplicate: shutdown(2) closes the connection */
	struct client *client;
	struct MHD_Connection *conn;   /* once started */
	enum phase phase;
	uint64_t since;           /* ms: when it began waiting */
	uint64_t added;           /* ms: handed to libmicrohttpd */
	bool live;
	struct entry *prev, *next;
};

struct lingering {
	int fd;
	uint64_t until;
};

struct ratelim {
	uint64_t next;
	unsigned skipped;
};

struct gate {
	struct gate_config cfg;
	struct MHD_Daemon *mhd;
	pthread_mutex_t mu;
	pthread_t thread;
	bool running;
	int wake[2];              /* the thread's wake-up (stop) */
	int nl;                   /* NETLINK_SOCK_DIAG, or -1: loopback peers are then addresses */
	uint32_t nl_seq;
	struct entry *entries;
	unsigned live, all;       /* entries live, and all of them */
	struct client *clients;
	struct lingering lingers[GATE_LINGER_MAX];
	unsigned nlinger;
	struct ratelim log_refuse, log_evict, log_slow, log_diag;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool ratelim_ok(struct ratelim *r, unsigned *skipped)
{
	uint64_t now = now_ms();

	if (now < r->next) {
		r->skipped++;
		return false;
	}
	r->next = now + GATE_LOG_EVERY_MS;
	*skipped = r->skipped;
	r->skipped = 0;
	return true;
}

/* ---- who it is ------------------------------------------------------------- */

static bool loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* The uid owning the TCP socket at the other end of a loopback connection
 * (its local end is `peer`, its remote one `local`), asked of the kernel's
 * sock_diag as ss(8) asks it. -1 when it cannot say. */
static int diag_uid(struct gate *g, const struct sockaddr_storage *peer, const struct sockaddr_storage *local,
		    uid_t *uid)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	char buf[4096];
	ssize_t n;

	memset(&req, 0, sizeof(req));
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST;
	req.nlh.nlmsg_seq = ++g->nl_seq;
	req.r.sdiag_family = (uint8_t)peer->ss_family;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = ~0u;
	req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (peer->ss_family == AF_INET) {
		const struct sockaddr_in *p = (const void *)peer, *l = (const void *)local;

		req.r.id.idiag_sport = p->sin_port;
		req.r.id.idiag_dport = l->sin_port;
		memcpy(req.r.id.idiag_src, &p->sin_addr, 4);
		memcpy(req.r.id.idiag_dst, &l->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *p = (const void *)peer, *l = (const void *)local;

		req.r.id.idiag_sport = p->sin6_port;
		req.r.id.idiag_dport = l->sin6_port;
		memcpy(req.r.id.idiag_src, &p->sin6_addr, 16);
		memcpy(req.r.id.idiag_dst, &l->sin6_addr, 16);
	}
	if (sendto(g->nl, &req, sizeof(req), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	for (;;) {
		struct nlmsghdr *h;

		n = recv(g->nl, buf, sizeof(buf), 0);
		if (n < 0)
			return -1;
		for (h = (struct nlmsghdr *)(void *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != g->nl_seq)
				continue;     /* the late answer of an earlier question */
			if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
			    h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
				*uid = ((struct inet_diag_msg *)NLMSG_DATA(h))->idiag_uid;
				return 0;
			}
			return -1;    /* NLMSG_ERROR: no such socket */
		}
	}
}

/* The client of a new connection (a reference-less pointer into the table;
 * the caller holds the mutex). NULL: out of memory. */
static struct client *identify(struct gate *g, int fd, const struct sockaddr_storage *ss)
{
	struct client key = { 0 }, *c;

	if (ss->ss_family == AF_UNIX) {
		struct ucred cred;
		socklen_t len = sizeof(cred);

		key.is_uid = true;
		key.uid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.uid : (uid_t)-1;
	} else {
		struct sockaddr_storage local;
		socklen_t len = sizeof(local);

		if (g->nl >= 0 && loopback(ss) && getsockname(fd, (struct sockaddr *)&local, &len) == 0 &&
		    local.ss_family == ss->ss_family && diag_uid(g, ss, &local, &key.uid) == 0) {
			key.is_uid = true;
		} else {
			unsigned skipped;

			if (g->nl >= 0 && loopback(ss) && ratelim_ok(&g->log_diag, &skipped))
				fprintf(stderr, "traind-web: sock_diag did not say whose a loopback connection is "
					"(%s): counted by its address (and %u others not logged)\n", strerror(errno),
					skipped);
			key.family = ss->ss_family;
			if (ss->ss_family == AF_INET)
				memcpy(key.ip, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, 4);
			else if (ss->ss_family == AF_INET6)
				memcpy(key.ip, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, 16);
		}
	}
	for (c = g->clients; c; c = c->next)
		if (c->is_uid == key.is_uid &&
		    (key.is_uid ? c->uid == key.uid : c->family == key.family && !memcmp(c->ip, key.ip, 16)))
			return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	*c = key;
	if (key.is_uid)
		snprintf(c->name, sizeof(c->name), "uid %ld", (long)(int)key.uid);
	else if (!inet_ntop(key.family, key.ip, c->name, sizeof(c->name)))
		snprintf(c->name, sizeof(c->name), "an address");
	c->next = g->clients;
	g->clients = c;
	return c;
}

static void client_drop_if_unused(struct gate *g, struct client *c)
{
	struct client **pp;

	if (c->all)
		return;   /* entries point to it */
	for (pp = &g->clients; *pp && *pp != c; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = c->next;
	free(c);
}

/* ---- closing ------------------------------------------------------------- */

/* Write a whole small response (best effort: the socket's buffer takes it). */
static void send_status(int fd, int status, const char *reason, const char *name, const char *msg,
			bool retry)
{
	char body[512], out[1024];
	int b = snprintf(body, sizeof(body), "{\"error\": \"%s\", \"message\": \"%s\"}\n", name, msg);
	int n = snprintf(out, sizeof(out),
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
			 "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n%s",
			 status, reason, b, retry ? "Retry-After: 1\r\n" : "", body);

	if (b > 0 && n > 0 && n < (int)sizeof(out))
		(void)!send(fd, out, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Close a live entry's connection: its duplicate is shut down, and
 * libmicrohttpd's thread sees the end of the stream and closes it. A
 * request partly come gets `status` first. Mutex held. */
static void close_entry(struct gate *g, struct entry *e, int status, const char *msg)
{
	if (!e->live)
		return;
	if (e->phase == PH_RECEIVING && status)
		send_status(e->dup, status, status == 408 ? "Request Timeout" : "Service Unavailable",
			    status == 408 ? "traind-web.RequestTimeout" : "traind-web.TooManyConnections", msg,
			    status != 408);
	shutdown(e->dup, SHUT_RDWR);
	e->live = false;
	e->client->live--;
	g->live--;
}

/* Answer a connection that will not be served (503) and close it once its
 * input is drained, or at once when too many linger. */
static void refuse(struct gate *g, int fd, const char *msg)
{
	send_status(fd, 503, "Service Unavailable", "traind-web.TooManyConnections", msg, true);
	shutdown(fd, SHUT_WR);
	if (g->nlinger == GATE_LINGER_MAX) {
		close(fd);
		return;
	}
	g->lingers[g->nlinger].fd = fd;
	g->lingers[g->nlinger].until = now_ms() + GATE_LINGER_MS;
	g->nlinger++;
}

static void drain_lingers(struct gate *g)
{
	uint64_t now = now_ms();
	unsigned k = 0;

	for (unsigned i = 0; i < g->nlinger; i++) {
		struct lingering *l = &g->lingers[i];
		char sink[4096];
		ssize_t n;

		do
			n = recv(l->fd, sink, sizeof(sink), MSG_DONTWAIT);
		while (n > 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || now >= l->until)
			close(l->fd);
		else
			g->lingers[k++] = *l;
	}
	g->nlinger = k;
}

/* The oldest connection that may be closed to make room: of client c (its
 * own, to make room for its new one), or of anyone; idle (waiting, no
 * request begun, for GATE_FRESH_MS at least: a new one has its request on
 * the way) before one still receiving its request. None younger than
 * GATE_GRACE_MS in its phase unless it is the same uid's (one client's flood
 * does not close another's request as it arrives; an address may be many
 * users). Mutex held. */
static struct entry *victim(struct gate *g, struct client *c, uint64_t now)
{
	struct entry *best[2] = { NULL, NULL };
	bool grace = !c || !c->is_uid;

	/* one libmicrohttpd has not started yet (a burst) may go too: it
	 * sees the end of the stream when it starts */
	for (struct entry *e = g->entries; e; e = e->next) {
		if (!e->live || (!e->conn && !e->added) || e->phase == PH_HANDLING || (c && e->client != c) ||
		    (grace && now - e->since < GATE_GRACE_MS) ||
		    (e->phase == PH_WAITING && now - e->since < GATE_FRESH_MS))
			continue;
		if (!best[e->phase] || e->since < best[e->phase]->since)
			best[e->phase] = e;
	}
	return best[PH_WAITING] ? best[PH_WAITING] : best[PH_RECEIVING];
}

/* ---- accepting ------------------------------------------------------------- */

static void admit(struct gate *g, int fd, const struct sockaddr_storage *ss, socklen_t sl)
{
	uint64_t now = now_ms();
	struct client *c;
	struct entry *e, *v = NULL;
	const char *why = NULL;
	char msg[256];
	unsigned skipped;
	int dup;

	pthread_mutex_lock(&g->mu);
	c = identify(g, fd, ss);
	if (!c) {
		why = "traind-web is out of memory; try again later";
	} else if (c->live >= g->cfg.max_per_client) {
		v = victim(g, c, now);
		if (!v) {
			snprintf(msg, sizeof(msg), "%s has %u connections open, the most one client may have "
				 "(--max-client-connections), all of them busy", c->name, c->live);
			why = msg;
		}
	} else if (g->live >= g->cfg.max_connections) {
		v = victim(g, NULL, now);
		if (!v) {
			snprintf(msg, sizeof(msg), "all %u connections are busy (--max-connections); try again "
				 "later", g->cfg.max_connections);
			why = msg;
		}
	}
	if (!why && c->all >= 2 * g->cfg.max_per_client) {
		/* a client that churns connections waits for its own to close,
		 * not everyone */
		snprintf(msg, sizeof(msg), "%u connections of %s are still closing; try again later", c->all - c->live,
			 c->name);
		why = msg;
	}
	if (!why && g->all >= 2 * g->cfg.max_connections) {
		snprintf(msg, sizeof(msg), "%u connections are still closing; try again later", g->all - g->live);
		why = msg;
	}
	if (!why && (dup = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
		why = "traind-web is out of file descriptors; try again later";
	if (why) {
		if (ratelim_ok(&g->log_refuse, &skipped))
			fprintf(stderr, "traind-web: refused a connection of %s: %s (and %u refusals not logged)\n",
				c ? c->name : "a client", why, skipped);
		if (c)
			client_drop_if_unused(g, c);
		pthread_mutex_unlock(&g->mu);
		refuse(g, fd, why);
		return;
	}
	if (v) {
		if (ratelim_ok(&g->log_evict, &skipped))
			fprintf(stderr, "traind-web: closed a %s connection of %s (%.1f s) to make room for one of "
				"%s (and %u others not logged)\n", v->phase == PH_WAITING ? "idle" : "slow",
				v->client->name, (double)(now - v->since) / 1000.0, c->name, skipped);
		close_entry(g, v, 503, "closed to make room for another connection");
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		close(dup);
		client_drop_if_unused(g, c);
		pthread_mutex_unlock(&g->mu);
		refuse(g, fd, "traind-web is out of memory; try again later");
		return;
	}
	e->g = g;
	e->fd = fd;
	e->dup = dup;
	e->client = c;
	e->phase = PH_WAITING;
	e->since = e->added = now;
	e->live = true;
	e->next = g->entries;
	if (g->entries)
		g->entries->prev = e;
	g->entries = e;
	c->live++;
	c->all++;
	g->live++;
	g->all++;
	pthread_mutex_unlock(&g->mu);
	if (MHD_add_connection(g->mhd, fd, (const struct sockaddr *)ss, sl) != MHD_YES) {
		/* libmicrohttpd closed fd: forget the entry */
		pthread_mutex_lock(&g->mu);
		if (e->live) {
			e->live = false;
			c->live--;
			g->live--;
		}
		e->added = 0;     /* dropped by the next sweep */
		pthread_mutex_unlock(&g->mu);
	}
}

static void unlink_entry(struct gate *g, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		g->entries = e->next;
	if (e->next)
		e->next->prev = e->prev;
	if (e->live) {
		e->client->live--;
		g->live--;
	}
	g->all--;
	e->client->all--;
	close(e->dup);
	client_drop_if_unused(g, e->client);
	free(e);
}

/* Close what has passed its deadline, drop what libmicrohttpd lost; the
 * time until the next deadline (ms). Mutex held. */
static int sweep(struct gate *g)
{
	uint64_t now = now_ms(), next = UINT64_MAX;
	struct entry *e = g->entries, *n;
	unsigned skipped;

	for (; e; e = n) {
		n = e->next;
		if (!e->conn) {
			if (now - e->added >= GATE_UNSTARTED_MS)
				unlink_entry(g, e);
			continue;
		}
		if (!e->live || e->phase == PH_HANDLING)
			continue;
		if (now - e->since >= g->cfg.request_timeout_ms) {
			char msg[160];

			if (e->phase == PH_RECEIVING && ratelim_ok(&g->log_slow, &skipped))
				fprintf(stderr, "traind-web: closed a connection of %s whose request was not whole "
					"%u ms after it began waiting (and %u others not logged)\n", e->client->name,
					g->cfg.request_timeout_ms, skipped);
			snprintf(msg, sizeof(msg), "the request was not whole within %u s (--request-timeout)",
				 (g->cfg.request_timeout_ms + 999) / 1000);
			close_entry(g, e, 408, msg);
		} else if (e->since + g->cfg.request_timeout_ms < next) {
			next = e->since + g->cfg.request_timeout_ms;
		}
	}
	if (next == UINT64_MAX)
		return 1000;
	return next - now > 1000 ? 1000 : (int)(next - now) + 1;
}

static void *gate_thread(void *arg)
{
	struct gate *g = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = g->cfg.listen_fd, .events = POLLIN }, { .fd = g->wake[0], .events = POLLIN } };
		int timeout;

		pthread_mutex_lock(&g->mu);
		timeout = sweep(g);
		pthread_mutex_unlock(&g->mu);
		if (g->nlinger && timeout > 100)
			timeout = 100;
		if (poll(p, 2, timeout) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN) {
			for (int k = 0; k < GATE_ACCEPT_BATCH; k++) {
				struct sockaddr_storage ss;
				socklen_t sl = sizeof(ss);
				int fd = accept4(g->cfg.listen_fd, (struct sockaddr *)&ss, &sl,
						 SOCK_NONBLOCK | SOCK_CLOEXEC);

				if (fd < 0) {
					if (errno == EMFILE || errno == ENFILE) {
						unsigned skipped;

						if (ratelim_ok(&g->log_refuse, &skipped))
							fprintf(stderr, "traind-web: out of file descriptors: connections wait "
								"in the backlog (and %u not logged)\n", skipped);
						poll(NULL, 0, 50);
					}
					break;
				}
				admit(g, fd, &ss, sl);
			}
		}
		drain_lingers(g);
	}
	return NULL;
}

/* ---- libmicrohttpd's side -------------------------------------------------- */

void gate_connection(struct gate *g, struct MHD_Connection *c, void **socket_context, bool started)
{
	struct entry *e;

	pthread_mutex_lock(&g->mu);
	if (started) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct entry *found = NULL;

		/* the newest unstarted entry of that descriptor (an older one
		 * was lost by libmicrohttpd, and its number reused) */
		for (e = g->entries; ci && e; e = e->next)
			if (!e->conn && e->added && e->fd == ci->connect_fd) {
				found = e;
				break;
			}
		if (found) {
			found->conn = c;
			*socket_context = found;
		} else {
			*socket_context = NULL;
		}
	} else if ((e = *socket_context)) {
		*socket_context = NULL;
		unlink_entry(g, e);
	}
	pthread_mutex_unlock(&g->mu);
}

static struct entry *entry_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

static void set_phase(struct MHD_Connection *c, enum phase ph)
{
	struct entry *e = entry_of(c);

	if (!e)
		return;
	pthread_mutex_lock(&e->g->mu);
	if (ph == PH_WAITING)
		e->since = now_ms();
	e->phase = ph;
	pthread_mutex_unlock(&e->g->mu);
}

void gate_request_begun(struct MHD_Connection *c)
{
	set_phase(c, PH_RECEIVING);
}

void gate_request_handled(struct MHD_Connection *c)
{
	set_phase(c, PH_HANDLING);
}

void gate_request_done(struct MHD_Connection *c)
{
	set_phase(c, PH_WAITING);
}

/* ---- life cycle ------------------------------------------------------------ */

int gate_new(struct gate **out, const struct gate_config *cfg, struct tr_err *err)
{
	struct gate *g = calloc(1, sizeof(*g));
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };

	*out = NULL;
	if (!g)
		return tr_err_set(err, -ENOMEM, "out of memory");
	g->cfg = *cfg;
	/* accept(2) must not block the thread that also keeps the deadlines */
	fcntl(cfg->listen_fd, F_SETFL, fcntl(cfg->listen_fd, F_GETFL) | O_NONBLOCK);
	if (g->cfg.max_per_client == 0 || g->cfg.max_per_client > g->cfg.max_connections)
		g->cfg.max_per_client = g->cfg.max_connections;
	if (pipe2(g->wake, O_CLOEXEC) < 0) {
		int e = errno;

		free(g);
		return tr_err_set(err, -e, "pipe: %s", strerror(e));
	}
	pthread_mutex_init(&g->mu, NULL);
	/* sock_diag for loopback peers' uids; without it (a sandbox without
	 * AF_NETLINK) they count by address */
	g->nl = -1;
	if (!cfg->unix_listen) {
		g->nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
		if (g->nl >= 0)
			setsockopt(g->nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		else
			fprintf(stderr, "traind-web: no sock_diag (%s): local clients are told apart by "
				"address, not by uid\n", strerror(errno));
	}
	*out = g;
	return 0;
}

int gate_start(struct gate *g, struct MHD_Daemon *mhd, struct tr_err *err)
{
	int rc;

	g->mhd = mhd;
	rc = pthread_create(&g->thread, NULL, gate_thread, g);
	if (rc != 0)
		return tr_err_set(err, -rc, "cannot start the accepting thread: %s", strerror(rc));
	g->running = true;
	return 0;
}

void gate_stop_accepting(struct gate *g)
{
	if (!g || !g->running)
		return;
	(void)!write(g->wake[1], "x", 1);
	pthread_join(g->thread, NULL);
	g->running = false;
	for (unsigned i = 0; i < g->nlinger; i++)
		close(g->lingers[i].fd);
	g->nlinger = 0;
	close(g->cfg.listen_fd);
	g->cfg.listen_fd = -1;
}

void gate_free(struct gate *g)
{
	if (!g)
		return;
	gate_stop_accepting(g);
	while (g->entries)
		unlink_entry(g, g->entries);
	while (g->clients) {
		struct client *c = g->clients;

		g->clients = c->next;
		free(c);
	}
	if (g->cfg.listen_fd >= 0)
		close(g->cfg.listen_fd);
	if (g->nl >= 0)
		close(g->nl);
	close(g->wake[0]);
	close(g->wake[1]);
	pthread_mutex_destroy(&g->mu);
	free(g);
}
