/*
 * route.c - the routing and authorization decision (see route.h). Pure:
 * no I/O, no allocation; fuzzed by tests/fuzz/fuzz-web.c.
 */
#include "route.h"

#include <string.h>
#include <strings.h>

bool web_parse_id(const char *s, size_t len, int64_t *out)
{
	int64_t v = 0;

	if (len == 0 || len > 16 || s[0] == '0')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v > ((int64_t)1 << 53))
		return false;
	*out = v;
	return true;
}

bool web_token_equal(const char *a, const char *token)
{
	unsigned char diff = 0;
	size_t n;

	if (!a || !token)
		return false;
	n = strlen(token);
	if (n == 0 || strnlen(a, n + 1) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(a[i] ^ token[i]);
	return diff == 0;
}

bool web_cookie_has_token(const char *cookie, const char *token)
{
	const size_t klen = strlen(WEB_COOKIE);
	size_t n = token ? strlen(token) : 0;
	const char *p = cookie;

	if (!p || n == 0)
		return false;
	/* "a=1; traind_token=...; b=2": pairs separated by ';' and spaces */
	while (*p) {
		const char *end;

		while (*p == ' ' || *p == ';' || *p == '\t')
			p++;
		end = strchr(p, ';');
		if (!end)
			end = p + strlen(p);
		if ((size_t)(end - p) == klen + 1 + n && strncmp(p, WEB_COOKIE, klen) == 0 && p[klen] == '=') {
			char value[WEB_TOKEN_LEN + 1];

			if (n <= WEB_TOKEN_LEN) {
				memcpy(value, p + klen + 1, n);
				value[n] = '\0';
				if (web_token_equal(value, token))
					return true;
			}
		}
		p = end;
	}
	return false;
}

static bool bearer_ok(const char *authorization, const char *token)
{
	if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
		return false;
	authorization += 7;
	while (*authorization == ' ')
		authorization++;
	return web_token_equal(authorization, token);
}

/* An Origin is ours when it is http://HOST or https://HOST for the request's
 * own Host header (a TLS proxy in front keeps Host). "null" is foreign. */
static bool origin_ours(const char *origin, const char *host)
{
	const char *rest;

	if (!origin)
		return true;
	if (!host || !*host)
		return false;
	if (strncmp(origin, "http://", 7) == 0)
		rest = origin + 7;
	else if (strncmp(origin, "https://", 8) == 0)
		rest = origin + 8;
	else
		return false;
	return strcasecmp(rest, host) == 0;
}

/* Whether a Host header names this machine by a loopback name or address
 * ("localhost", "127.0.0.1:8765", "[::1]:8765"), or is absent (HTTP/1.0,
 * a Unix socket client). A browser page from another site that rebinds its
 * DNS name to 127.0.0.1 sends its own name here, so it cannot read
 * /metrics without the token. */
static bool host_loopback(const char *host)
{
	size_t n;

	if (!host || !*host)
		return true;
	if (host[0] == '[')
		return strncmp(host, "[::1]", 5) == 0 && (host[5] == '\0' || host[5] == ':');
	n = strcspn(host, ":");
	if (n == 9 && strncasecmp(host, "localhost", 9) == 0)
		return true;
	if (n >= 7 && strncmp(host, "127.", 4) == 0 && strspn(host, "0123456789.") == n)
		return true;
	return false;
}

static void refuse(struct web_route *out, int status, const char *reason)
{
	out->kind = WEB_REFUSE;
	out->status = status;
	out->reason = reason;
}

/* "/api/jobs/12/pause" after "/api/jobs/": the id, then what follows. */
static void route_api_job(const char *rest, bool post, struct web_route *out)
{
	static const struct {
		const char *sub;
		enum web_kind kind;
		bool post;
	} subs[] = {
		{ "", WEB_API_JOB, false },
		{ "/history", WEB_API_HISTORY, false },
		{ "/checkpoints", WEB_API_CHECKPOINTS, false },
		{ "/export", WEB_API_EXPORT, false },
		{ "/events", WEB_API_EVENTS, false },
		{ "/pause", WEB_API_PAUSE, true },
		{ "/resume", WEB_API_RESUME, true },
		{ "/kill", WEB_API_KILL, true },
		{ "/steps", WEB_API_STEPS, false },
		{ "/delete", WEB_API_DELETE, true },
		{ "/sample", WEB_API_SAMPLE, false },
	};
	size_t idlen = strcspn(rest, "/");

	if (!web_parse_id(rest, idlen, &out->job)) {
		refuse(out, 404, "no such page: a job id is a positive decimal number");
		return;
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(rest + idlen, subs[i].sub) != 0)
			continue;
		if (post != subs[i].post) {
			refuse(out, 405, post ? "this resource is read with GET" : "this action needs POST");
			return;
		}
		out->kind = subs[i].kind;
		return;
	}
	refuse(out, 404, "no such page");
}

void web_route_path(const char *method, const char *path, struct web_route *out)
{
	bool post;

	out->kind = WEB_REFUSE;
	out->job = 0;
	out->name = NULL;
	out->head = false;
	if (!method || !path) {
		refuse(out, 400, "malformed request");
		return;
	}
	if (strcmp(method, "GET") == 0) {
		post = false;
	} else if (strcmp(method, "HEAD") == 0) {
		post = false;
		out->head = true;
	} else if (strcmp(method, "POST") == 0) {
		post = true;
	} else {
		refuse(out, 405, "only GET, HEAD and POST are served");
		return;
	}

	if (strcmp(path, "/api/jobs") == 0) {
		out->kind = post ? WEB_API_START : WEB_API_JOBS;
		return;
	}
	if (strncmp(path, "/api/jobs/", 10) == 0) {
		route_api_job(path + 10, post, out);
		return;
	}
	if (strcmp(path, "/api/sweeps") == 0 || strncmp(path, "/api/sweeps/", 12) == 0) {
		if (post)
			refuse(out, 405, "this resource is read with GET");
		else if (path[11] == '\0')
			out->kind = WEB_API_SWEEPS;
		else if (web_parse_id(path + 12, strlen(path + 12), &out->job))
			out->kind = WEB_API_SWEEP;
		else
			refuse(out, 404, "no such page: a sweep id is a positive decimal number");
		return;
	}
	if (post) {
		if (strcmp(path, "/") == 0 || strcmp(path, "/metrics") == 0 || strcmp(path, "/compare") == 0 ||
		    strncmp(path, "/jobs/", 6) == 0 || strncmp(path, "/sweeps/", 8) == 0 ||
		    strncmp(path, "/static/", 8) == 0 ||
		    strcmp(path, "/favicon.ico") == 0)
			refuse(out, 405, "this page is read with GET");
		else
			refuse(out, 404, "no such page");
		return;
	}
	if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
		out->kind = WEB_PAGE_INDEX;
	} else if (strcmp(path, "/compare") == 0) {
		out->kind = WEB_PAGE_COMPARE;
	} else if (strcmp(path, "/metrics") == 0) {
		out->kind = WEB_METRICS;
	} else if (strncmp(path, "/jobs/", 6) == 0) {
		if (web_parse_id(path + 6, strlen(path + 6), &out->job))
			out->kind = WEB_PAGE_JOB;
		else
			refuse(out, 404, "no such page: a job id is a positive decimal number");
	} else if (strncmp(path, "/sweeps/", 8) == 0) {
		if (web_parse_id(path + 8, strlen(path + 8), &out->job))
			out->kind = WEB_PAGE_SWEEP;
		else
			refuse(out, 404, "no such page: a sweep id is a positive decimal number");
	} else if (strcmp(path, "/favicon.ico") == 0) {
		out->kind = WEB_STATIC;
		out->name = "favicon.svg";
	} else if (strncmp(path, "/static/", 8) == 0 && path[8] && !strchr(path + 8, '/')) {
		out->kind = WEB_STATIC;
		out->name = path + 8;
	} else {
		refuse(out, 404, "no such page");
	}
}

static bool is_page(enum web_kind k)
{
	return k == WEB_PAGE_INDEX || k == WEB_PAGE_JOB || k == WEB_PAGE_COMPARE || k == WEB_PAGE_SWEEP;
}

static bool is_control(enum web_kind k)
{
	return k == WEB_API_START || k == WEB_API_PAUSE || k == WEB_API_RESUME || k == WEB_API_KILL ||
	       k == WEB_API_DELETE;
}

void web_decide(const struct web_request *req, const struct web_policy *policy, struct web_route *out)
{
	bool authed;
	int status;

	web_route_path(req->method, req->path, out);
	status = out->status;
	if (out->kind == WEB_REFUSE && status == 400)
		return;

	if (out->kind == WEB_METRICS && req->local_peer && !policy->metrics_token && host_loopback(req->host))
		return;

	authed = web_cookie_has_token(req->cookie, policy->token) ||
		 bearer_ok(req->authorization, policy->token);
	if (!authed && is_page(out->kind) && web_token_equal(req->query_token, policy->token)) {
		out->kind = WEB_REDIRECT_TOKEN;
		return;
	}
	if (!authed) {
		refuse(out, 401, "this needs traind-web's token: open the URL it printed "
		       "(with ?token=...), or send Authorization: Bearer TOKEN");
		return;
	}
	if (out->kind == WEB_REFUSE)
		return;   /* 404 or 405, now that the token was shown */

	if (is_control(out->kind)) {
		if (!req->control || strcmp(req->control, "1") != 0) {
			refuse(out, 403, "a control request needs the header " WEB_CONTROL_HEADER ": 1");
			return;
		}
		if (!origin_ours(req->origin, req->host) ||
		    (req->fetch_site && strcmp(req->fetch_site, "cross-site") == 0)) {
			refuse(out, 403, "a control request from another site's page is refused");
			return;
		}
	}
}
