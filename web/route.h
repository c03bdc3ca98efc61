/*
 * route.h - what an HTTP request asks for and whether it may: the one pure
 * decision traind-web makes before doing anything for a request.
 *
 * web_decide() looks only at the request's method, path and a few headers
 * (struct web_request, all borrowed strings, any may be NULL) and at the
 * policy (the token, whether /metrics needs it), and fills a struct
 * web_route: which handler (enum web_kind) with which job id, or a refusal
 * with its status code and reason. It does no I/O and allocates nothing, so
 * tests/fuzz/fuzz-web.c runs it on arbitrary bytes.
 *
 * Rules, in order:
 *   - only GET, HEAD and POST (405 otherwise); a path that is not one of
 *     ours: 404, but only once the token is shown (401 before); /favicon.ico
 *     is the static favicon.svg (browsers ask for it on every page);
 *   - /metrics: no token needed from a loopback peer (or a Unix socket)
 *     whose Host header is a loopback name or address (or absent), unless
 *     policy->metrics_token;
 *   - everything else needs the token: the cookie traind_token, an
 *     "Authorization: Bearer TOKEN" header, or (GET of a page only) the
 *     query parameter token=..., which is answered by setting the cookie
 *     and redirecting to the same page without it; 401 otherwise;
 *   - POST (control: start, pause, resume, kill, delete) also needs the header
 *     X-Traind-Control: 1 and no foreign Origin (an Origin must be
 *     http(s)://HOST of the request's own Host header) and no
 *     Sec-Fetch-Site: cross-site; 403 otherwise.
 * Tokens are compared in constant time.
 *
 * Thread: any; nothing shared.
 */
#ifndef TRAIND_WEB_ROUTE_H
#define TRAIND_WEB_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum web_kind {
	WEB_REFUSE,          /* status and reason say why */
	WEB_REDIRECT_TOKEN,  /* ?token= was right: set the cookie, 303 to `path` */
	WEB_PAGE_INDEX,      /* GET /            the job table */
	WEB_PAGE_JOB,        /* GET /jobs/N      one job */
	WEB_PAGE_COMPARE,    /* GET /compare     curves of chosen jobs */
	WEB_STATIC,          /* GET /static/NAME (name: the part after /static/) */
	WEB_METRICS,         /* GET /metrics */
	WEB_API_JOBS,        /* GET /api/jobs */
	WEB_API_START,       /* POST /api/jobs */
	WEB_API_JOB,         /* GET /api/jobs/N */
	WEB_API_HISTORY,     /* GET /api/jobs/N/history */
	WEB_API_CHECKPOINTS, /* GET /api/jobs/N/checkpoints */
	WEB_API_EXPORT,      /* GET /api/jobs/N/export[?epoch=E] */
	WEB_API_EVENTS,      /* GET /api/jobs/N/events  (Server-Sent Events) */
	WEB_API_PAUSE,       /* POST /api/jobs/N/pause */
	WEB_API_RESUME,      /* POST /api/jobs/N/resume */
	WEB_API_KILL,        /* POST /api/jobs/N/kill */
	WEB_API_STEPS,       /* GET /api/jobs/N/steps   the running loss by step */
	WEB_API_DELETE,      /* POST /api/jobs/N/delete (a stopped job) */
	WEB_API_SAMPLE,      /* GET /api/jobs/N/sample?prompt=P&tokens=N&temperature=T&seed=S
				text from a language model (Generate) */
	WEB_PAGE_SWEEP,      /* GET /sweeps/N    one sweep (job: its id) */
	WEB_API_SWEEPS,      /* GET /api/sweeps */
	WEB_API_SWEEP,       /* GET /api/sweeps/N (job: its id) */
};

/* The token: 32 random bytes in hex. */
#define WEB_TOKEN_LEN 64
#define WEB_COOKIE "traind_token"
#define WEB_CONTROL_HEADER "X-Traind-Control"

struct web_request {
	const char *method;         /* "GET"... */
	const char *path;           /* without the query */
	const char *query_token;    /* the query parameter token, or NULL */
	const char *cookie;         /* the Cookie header */
	const char *authorization;  /* the Authorization header */
	const char *origin;         /* the Origin header */
	const char *host;           /* the Host header */
	const char *control;        /* the X-Traind-Control header */
	const char *fetch_site;     /* the Sec-Fetch-Site header */
	bool local_peer;            /* loopback address or Unix socket */
};

struct web_policy {
	const char *token;          /* WEB_TOKEN_LEN hex digits */
	bool metrics_token;         /* /metrics needs the token even from loopback */
};

struct web_route {
	enum web_kind kind;
	int status;                 /* WEB_REFUSE: 400, 401, 403, 404, 405 */
	const char *reason;         /* WEB_REFUSE: why, one static sentence */
	int64_t job;                /* the N of /jobs/N and /api/jobs/N/... */
	const char *name;           /* WEB_STATIC: the file's name (points into path) */
	bool head;                  /* a HEAD request: the GET without the body */
};

/* Decide what `req` gets under `policy` (see the top of this file). */
void web_decide(const struct web_request *req, const struct web_policy *policy, struct web_route *out);

/* The path's route ignoring authentication: out->kind, job, name set, or
 * WEB_REFUSE with 404/405. Part of web_decide, exposed for tests. */
void web_route_path(const char *method, const char *path, struct web_route *out);

/* Whether `cookie` (a Cookie header) holds traind_token=TOKEN. */
bool web_cookie_has_token(const char *cookie, const char *token);

/* Whether `a` equals the token, in time independent of where they differ. */
bool web_token_equal(const char *a, const char *token);

/* Strict decimal job id in [1, 2^53]: "12" yes, "012", "+1", "1x" no. */
bool web_parse_id(const char *s, size_t len, int64_t *out);

#endif
