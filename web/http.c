/*
 * http.c - the HTTP server (see http.h).
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "api.h"
#include "events.h"
#include "gate.h"
#include "metrics.h"
#include "pages.h"
#include "resp.h"

#define STACK_SIZE (512u << 10)
#define CONN_MEMORY (64u << 10)    /* request line + headers + buffers per connection */
#define GZIP_MIN 1024

struct web_server {
	struct web_config cfg;
	struct MHD_Daemon *mhd;
	struct gate *gate;          /* accepts, and bounds what each client holds and for how long */
};

/* What one request carries between libmicrohttpd's calls. */
struct req_state {
	struct web_route route;
	char *body;                 /* POST body so far */
	size_t len;
	bool too_big;
};

static const char *header(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static bool peer_local(struct web_server *s, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;

	if (s->cfg.unix_listen)
		return true;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (!ci || !ci->client_addr)
		return false;
	sa = ci->client_addr;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
	}
	return sa->sa_family == AF_UNIX;
}

/* Whether Accept-Encoding allows gzip (and not as "gzip;q=0"). */
static bool accepts_gzip(struct MHD_Connection *c)
{
	const char *ae = header(c, "Accept-Encoding");
	const char *g = ae ? strstr(ae, "gzip") : NULL;

	if (!g)
		return false;
	g += 4;
	while (*g == ' ')
		g++;
	return !(strncmp(g, ";q=0", 4) == 0 && (g[4] == '\0' || g[4] == ',' || g[4] == ' ' ||
						 (g[4] == '.' && strspn(g + 5, "0") > 0 &&
						  (g[5 + strspn(g + 5, "0")] == '\0' ||
						   g[5 + strspn(g + 5, "0")] == ','))));
}

static bool compressible(const char *type)
{
	return type && (strncmp(type, "text/", 5) == 0 || strncmp(type, "application/json", 16) == 0);
}

static void add_common_headers(struct MHD_Response *resp, const struct web_resp *r)
{
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Cache-Control", r->cache ? "private, max-age=300" : "no-store");
	if (r->type && strncmp(r->type, "text/html", 9) == 0)
		MHD_add_response_header(resp, "Content-Security-Policy",
					"default-src 'self'; style-src 'self' 'unsafe-inline'; "
					"img-src 'self' data:; frame-ancestors 'none'; form-action 'self'");
}

/* Queue `r` on the connection with `status`; r is cleared (its body moves
 * to libmicrohttpd). */
static enum MHD_Result send_resp(struct web_server *s, struct MHD_Connection *c, struct web_resp *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	bool gz = false;
	char *zbody = NULL;
	size_t zlen = 0;

	if (accepts_gzip(c)) {
		if (r->gz_body)
			gz = true;
		else if (compressible(r->type) && r->len >= GZIP_MIN && web_gzip(r->body, r->len, &zbody, &zlen) == 0)
			gz = true;
	}
	if (zbody) {
		resp = MHD_create_response_from_buffer(zlen, zbody, MHD_RESPMEM_MUST_FREE);
	} else if (gz) {
		resp = MHD_create_response_from_buffer(r->gz_len, (void *)r->gz_body, MHD_RESPMEM_PERSISTENT);
	} else if (r->borrowed) {
		resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_PERSISTENT);
	} else {
		resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
		if (resp)
			r->body = NULL;   /* libmicrohttpd frees it */
	}
	if (!resp) {
		free(zbody);
		web_resp_clear(r);
		return MHD_NO;
	}
	add_common_headers(resp, r);
	if (r->type)
		MHD_add_response_header(resp, "Content-Type", r->type);
	if (gz)
		MHD_add_response_header(resp, "Content-Encoding", "gzip");
	if (compressible(r->type))
		MHD_add_response_header(resp, "Vary", "Accept-Encoding");
	if (r->disposition[0])
		MHD_add_response_header(resp, "Content-Disposition", r->disposition);
	if (r->digest[0])
		MHD_add_response_header(resp, "X-Checksum-Sha256", r->digest);
	if (r->location[0])
		MHD_add_response_header(resp, "Location", r->location);
	if (r->set_cookie) {
		char cookie[160];

		snprintf(cookie, sizeof(cookie), WEB_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict",
			 s->cfg.policy.token);
		MHD_add_response_header(resp, "Set-Cookie", cookie);
	}
	if (r->status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"traind-web\"");
	ret = MHD_queue_response(c, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	web_resp_clear(r);
	return ret;
}

static enum MHD_Result send_error(struct web_server *s, struct MHD_Connection *c, int status,
				  const char *name, const char *msg)
{
	struct web_resp r = { 0 };

	web_resp_error(&r, status, name, "%s", msg);
	return send_resp(s, c, &r);
}

static const char *refusal_name(int status)
{
	switch (status) {
	case 400: return "traind-web.BadRequest";
	case 401: return "traind-web.Unauthorized";
	case 403: return "traind-web.Forbidden";
	case 404: return "traind-web.NotFound";
	case 405: return "traind-web.MethodNotAllowed";
	case 413: return "traind-web.PayloadTooLarge";
	default: return "traind-web.Error";
	}
}

static enum MHD_Result send_page(struct web_server *s, struct MHD_Connection *c, const char *name)
{
	const struct page *p = pages_find(name);
	struct web_resp r = { 0 };

	if (!p)
		return send_error(s, c, 404, "traind-web.NotFound", "no such file");
	r.status = 200;
	r.type = p->type;
	r.body = p->data;
	r.len = p->len;
	r.borrowed = true;
	r.gz_body = p->gz;
	r.gz_len = p->gz_len;
	r.cache = strstr(name, ".html") == NULL;
	return send_resp(s, c, &r);
}

static enum MHD_Result send_events(struct web_server *s, struct MHD_Connection *c, int64_t job)
{
	int quiet_ms = s->cfg.timeout_s * 500 < 15000 ? (int)s->cfg.timeout_s * 500 : 15000;
	struct events *e = events_new(s->cfg.socket, job, header(c, "Last-Event-ID"), quiet_ms);
	struct MHD_Response *resp;
	enum MHD_Result ret;
	struct web_resp r = { 0 };

	if (!e)
		return send_error(s, c, 503, "traind-web.TooManyStreams",
				  "too many event streams are open; try again later");
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, events_read, e, events_free);
	if (!resp) {
		events_free(e);
		return MHD_NO;
	}
	r.type = "text/event-stream";
	add_common_headers(resp, &r);
	MHD_add_response_header(resp, "Content-Type", "text/event-stream; charset=utf-8");
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* The page's URL without its token, for the redirect that sets the cookie:
 * the path and every other query parameter, as they came (percent-encoded
 * again), so /compare?jobs=1,2&token=... lands on /compare?jobs=1,2. */
struct query_out {
	char *buf;
	size_t len, o;
	bool overflow;
};

static void put(struct query_out *q, const char *s, bool encode)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		bool plain = !encode || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			     (ch >= '0' && ch <= '9') || strchr("-._~,:", ch);

		if (q->o + (plain ? 1 : 3) >= q->len) {
			q->overflow = true;
			return;
		}
		if (plain) {
			q->buf[q->o++] = (char)ch;
		} else {
			q->buf[q->o++] = '%';
			q->buf[q->o++] = hex[ch >> 4];
			q->buf[q->o++] = hex[ch & 15];
		}
	}
	q->buf[q->o] = '\0';
}

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct query_out *q = cls;

	(void)kind;
	if (strcmp(key, "token") == 0)
		return MHD_YES;
	put(q, q->buf[0] && strchr(q->buf, '?') ? "&" : "?", false);
	put(q, key, true);
	if (value) {
		put(q, "=", false);
		put(q, value, true);
	}
	return MHD_YES;
}

static void location_without_token(struct MHD_Connection *c, const char *url, char *out, size_t len)
{
	struct query_out q = { out, len, 0, false };

	out[0] = '\0';
	put(&q, url, false);
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, &q);
	if (q.overflow)
		snprintf(out, len, "%s", url);   /* too long to keep: the page alone */
}

/* Log a refusal or a server-side failure, one line on stderr. */
static void log_status(const char *method, const char *url, int status, const char *why)
{
	if (status < 400)
		return;
	fprintf(stderr, "traind-web: %d %s %.200s%s%s\n", status, method, url, why ? ": " : "",
		why ? why : "");
}

static enum MHD_Result dispatch(struct web_server *s, struct MHD_Connection *c, const char *method,
				const char *url, struct req_state *st)
{
	struct web_route *route = &st->route;
	struct web_resp r = { 0 };
	struct api_args args = {
		.socket = s->cfg.socket,
		.epoch = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "epoch"),
		.states = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state"),
		.prompt = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "prompt"),
		.tokens = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "tokens"),
		.temperature = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "temperature"),
		.seed = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "seed"),
		.body = st->body,
		.body_len = st->len,
	};

	gate_request_handled(c);
	switch (route->kind) {
	case WEB_REFUSE:
		log_status(method, url, route->status, route->reason);
		return send_error(s, c, route->status, refusal_name(route->status), route->reason);
	case WEB_REDIRECT_TOKEN:
		r.status = 303;
		r.type = "text/plain; charset=utf-8";
		r.body = (char *)"the token is set; go on to the page\n";
		r.len = strlen(r.body);
		r.borrowed = true;
		r.set_cookie = true;
		location_without_token(c, url, r.location, sizeof(r.location));
		return send_resp(s, c, &r);
	case WEB_PAGE_INDEX:
		return send_page(s, c, "index.html");
	case WEB_PAGE_JOB:
		return send_page(s, c, "job.html");
	case WEB_PAGE_COMPARE:
		return send_page(s, c, "compare.html");
	case WEB_PAGE_SWEEP:
		return send_page(s, c, "sweep.html");
	case WEB_STATIC:
		return send_page(s, c, route->name);
	case WEB_METRICS:
		metrics_handle(s->cfg.socket, &r);
		return send_resp(s, c, &r);
	case WEB_API_EVENTS:
		return send_events(s, c, route->job);
	default:
		if (st->too_big) {
			log_status(method, url, 413, NULL);
			return send_error(s, c, 413, refusal_name(413), "the request body is too large");
		}
		api_handle(route, &args, &r);
		log_status(method, url, r.status, NULL);
		return send_resp(s, c, &r);
	}
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct web_server *s = cls;
	struct req_state *st = *con_cls;

	if (!st) {
		struct web_request req = {
			.method = method,
			.path = url,
			.query_token = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token"),
			.cookie = header(c, "Cookie"),
			.authorization = header(c, "Authorization"),
			.origin = header(c, "Origin"),
			.host = header(c, "Host"),
			.control = header(c, WEB_CONTROL_HEADER),
			.fetch_site = header(c, "Sec-Fetch-Site"),
			.local_peer = peer_local(s, c),
		};

		st = calloc(1, sizeof(*st));
		if (!st)
			return MHD_NO;
		*con_cls = st;
		web_decide(&req, &s->cfg.policy, &st->route);
		/* A refused POST is answered before its body is read (and the
		 * connection closed); anything else on the next call, since
		 * libmicrohttpd closes a connection whose response was queued
		 * in the first one. */
		if (strcmp(method, "POST") == 0 && st->route.kind == WEB_REFUSE)
			return dispatch(s, c, method, url, st);
		return MHD_YES;
	}
	if (*upload_size) {
		if (!st->too_big && st->len + *upload_size <= API_MAX_BODY) {
			char *b = realloc(st->body, st->len + *upload_size);

			if (!b)
				return MHD_NO;
			memcpy(b + st->len, upload, *upload_size);
			st->body = b;
			st->len += *upload_size;
		} else {
			st->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	return dispatch(s, c, method, url, st);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req_state *st = *con_cls;

	(void)cls;
	(void)toe;
	gate_request_done(c);

	if (st) {
		free(st->body);
		free(st);
		*con_cls = NULL;
	}
}

/* libmicrohttpd's messages, at most one a second (a flood of clients
 * dropped at their deadline must not flood the log), with the count of
 * those left out. Called from any of its threads. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static time_t last;
	static unsigned skipped;
	time_t now = time(NULL);
	char line[512];

	(void)cls;
	pthread_mutex_lock(&mu);
	if (now == last) {
		skipped++;
		pthread_mutex_unlock(&mu);
		return;
	}
	last = now;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	fprintf(stderr, "traind-web: libmicrohttpd: %s%s\n", line, skipped ? " (and more not logged)" : "");
	skipped = 0;
	pthread_mutex_unlock(&mu);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct web_server *s = cls;

	gate_connection(s->gate, c, socket_context, toe == MHD_CONNECTION_NOTIFY_STARTED);
}

/* The request line has come (libmicrohttpd's URI logger, whose return value
 * would be the request's first *con_cls: NULL, as on_request expects). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	(void)cls;
	(void)uri;
	gate_request_begun(c);
	return NULL;
}

int http_start(struct web_server **out, const struct web_config *cfg, struct tr_err *err)
{
	struct web_server *s = calloc(1, sizeof(*s));
	struct gate_config gc = {
		.listen_fd = cfg->listen_fd,
		.unix_listen = cfg->unix_listen,
		.max_connections = cfg->max_connections,
		.max_per_client = cfg->max_per_client,
		.request_timeout_ms = cfg->request_timeout_s * 1000,
	};
	int rc;

	*out = NULL;
	if (!s)
		return tr_err_set(err, -ENOMEM, "out of memory");
	s->cfg = *cfg;
	rc = gate_new(&s->gate, &gc, err);
	if (rc < 0) {
		free(s);
		return rc;
	}
	/* The gate accepts and hands connections over (MHD_add_connection);
	 * libmicrohttpd's own limit only bounds those being closed as well
	 * (the gate keeps at most twice max_connections in all). */
	s->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
				  MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC,
				  0, NULL, NULL, on_request, s,
				  MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned int)(2 * cfg->max_connections + 16),
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->timeout_s,
				  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
				  MHD_OPTION_THREAD_STACK_SIZE, (size_t)STACK_SIZE,
				  MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
				  MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
				  MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
				  MHD_OPTION_END);
	if (!s->mhd) {
		gate_free(s->gate);
		free(s);
		return tr_err_set(err, -EIO, "cannot start the HTTP server (libmicrohttpd)");
	}
	rc = gate_start(s->gate, s->mhd, err);
	if (rc < 0) {
		MHD_stop_daemon(s->mhd);
		gate_free(s->gate);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void http_stop(struct web_server *s)
{
	if (!s)
		return;
	gate_stop_accepting(s->gate);
	MHD_stop_daemon(s->mhd);
	gate_free(s->gate);
	free(s);
}
