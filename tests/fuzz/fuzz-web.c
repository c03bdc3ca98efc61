/*
 * fuzz-web.c - libFuzzer harness for traind-web's request decision
 * (web/route.c web_decide: routing and the token, control header and
 * Origin checks), its POST body check (web/api.c web_start_params) and its
 * Prometheus writer (web/metrics.c metrics_render).
 *
 * An input is an HTTP request as a client sends it: "METHOD TARGET
 * HTTP/1.1", header lines, an empty line, a body. The harness splits it as
 * libmicrohttpd would (the target's path and its query parameter token,
 * percent-decoded; the headers traind-web reads) and decides it under a
 * fixed token, with the first byte's low bits choosing whether the peer is
 * local and whether /metrics needs the token.
 *
 * Checks beyond "no crash":
 *   - a request let through (anything but a refusal, a redirect or
 *     /metrics from a local peer by a loopback Host) shows the token, by
 *     cookie or bearer;
 *   - a control route (start, pause, resume, kill) came by POST with
 *     X-Traind-Control: 1 and no foreign Origin;
 *   - a redirect is a GET of a page with the right ?token=;
 *   - a refusal's status is 400, 401, 403, 404 or 405 with a reason;
 *   - a job route's id is positive; a static name holds no '/';
 *   - the body, when web_start_params takes it, is an object; and when it
 *     is JSON, metrics_render of it (as List's jobs and as Counters) writes
 *     lines that are comments or start with "traind_", so a label value
 *     can never break a line.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "metrics.h"
#include "route.h"

#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define FIELD_MAX 8192

struct parsed {
	char method[64];
	char path[FIELD_MAX];
	char query_token[FIELD_MAX];
	bool has_query_token;
	char cookie[FIELD_MAX], authorization[FIELD_MAX], origin[FIELD_MAX], host[FIELD_MAX];
	char control[FIELD_MAX], fetch_site[FIELD_MAX];
	bool has_cookie, has_authorization, has_origin, has_host, has_control, has_fetch_site;
	const char *body;
	size_t body_len;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode s[0, n) into out (NUL-terminated; '+' is a space, as in a query). */
static void unescape(const char *s, size_t n, char *out, size_t cap, bool plus)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 1 < cap; i++) {
		if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else if (plus && s[i] == '+') {
			out[o++] = ' ';
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
}

static void copy(const char *s, size_t n, char *out, size_t cap)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(out, s, n);
	out[n] = '\0';
	/* a NUL inside ends the C string, as in libmicrohttpd */
}

static void header(struct parsed *p, const char *name, size_t nlen, const char *v, size_t vlen)
{
	static const struct {
		const char *name;
		size_t off, has;
	} known[] = {
		{ "Cookie", offsetof(struct parsed, cookie), offsetof(struct parsed, has_cookie) },
		{ "Authorization", offsetof(struct parsed, authorization), offsetof(struct parsed, has_authorization) },
		{ "Origin", offsetof(struct parsed, origin), offsetof(struct parsed, has_origin) },
		{ "Host", offsetof(struct parsed, host), offsetof(struct parsed, has_host) },
		{ WEB_CONTROL_HEADER, offsetof(struct parsed, control), offsetof(struct parsed, has_control) },
		{ "Sec-Fetch-Site", offsetof(struct parsed, fetch_site), offsetof(struct parsed, has_fetch_site) },
	};

	while (vlen && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strlen(known[i].name) == nlen && strncasecmp(known[i].name, name, nlen) == 0 &&
		    !*(bool *)((char *)p + known[i].has)) {
			copy(v, vlen, (char *)p + known[i].off, FIELD_MAX);
			*(bool *)((char *)p + known[i].has) = true;
		}
	}
}

/* Split the request; false when it has no request line. */
static bool parse(const char *d, size_t n, struct parsed *p)
{
	const char *end = d + n, *line = d, *eol, *sp1, *sp2, *q;

	memset(p, 0, sizeof(*p));
	eol = memchr(line, '\n', (size_t)(end - line));
	if (!eol)
		return false;
	sp1 = memchr(line, ' ', (size_t)(eol - line));
	if (!sp1 || sp1 - line >= (long)sizeof(p->method))
		return false;
	copy(line, (size_t)(sp1 - line), p->method, sizeof(p->method));
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2)
		sp2 = eol;
	q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
	unescape(sp1 + 1, (size_t)((q ? q : sp2) - sp1 - 1), p->path, sizeof(p->path), false);
	for (const char *a = q ? q + 1 : sp2; a < sp2;) {
		const char *amp = memchr(a, '&', (size_t)(sp2 - a));
		const char *aend = amp ? amp : sp2;

		if (aend - a >= 6 && memcmp(a, "token=", 6) == 0 && !p->has_query_token) {
			unescape(a + 6, (size_t)(aend - a - 6), p->query_token, sizeof(p->query_token), true);
			p->has_query_token = true;
		}
		a = amp ? amp + 1 : sp2;
	}
	line = eol + 1;
	while (line < end) {
		const char *colon;

		eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			eol = end;
		if (eol == line || (eol == line + 1 && *line == '\r')) {
			line = eol + 1;
			break;
		}
		colon = memchr(line, ':', (size_t)(eol - line));
		if (colon)
			header(p, line, (size_t)(colon - line), colon + 1,
			       (size_t)(eol - colon - 1) - (eol[-1] == '\r' ? 1 : 0));
		line = eol + 1;
	}
	p->body = line < end ? line : NULL;
	p->body_len = line < end ? (size_t)(end - line) : 0;
	return true;
}

static bool bearer(const struct parsed *p)
{
	const char *a = p->authorization;

	if (!p->has_authorization || strncasecmp(a, "Bearer ", 7) != 0)
		return false;
	a += 7;
	while (*a == ' ')
		a++;
	return strcmp(a, TOKEN) == 0;
}

static bool cookie_token(const struct parsed *p)
{
	return p->has_cookie && strstr(p->cookie, WEB_COOKIE "=" TOKEN) != NULL;
}

static void check_lines(const char *text, size_t len)
{
	const char *s = text, *end = text + len;

	while (s < end) {
		const char *eol = memchr(s, '\n', (size_t)(end - s));

		if (!eol)
			abort();   /* every line ends with a newline */
		if (*s != '#' && strncmp(s, "traind_", 7) != 0)
			abort();
		s = eol + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct parsed p;
	struct web_policy policy = { .token = TOKEN };
	struct web_request req;
	struct web_route route;
	json_t *params = NULL, *v;
	char why[256];
	bool authed, control;

	if (size < 1)
		return 0;
	policy.metrics_token = data[0] & 2;
	if (!parse((const char *)data + 1, size - 1, &p))
		return 0;
	req = (struct web_request){
		.method = p.method,
		.path = p.path,
		.query_token = p.has_query_token ? p.query_token : NULL,
		.cookie = p.has_cookie ? p.cookie : NULL,
		.authorization = p.has_authorization ? p.authorization : NULL,
		.origin = p.has_origin ? p.origin : NULL,
		.host = p.has_host ? p.host : NULL,
		.control = p.has_control ? p.control : NULL,
		.fetch_site = p.has_fetch_site ? p.fetch_site : NULL,
		.local_peer = data[0] & 1,
	};
	web_decide(&req, &policy, &route);

	authed = bearer(&p) || cookie_token(&p);
	control = route.kind == WEB_API_START || route.kind == WEB_API_PAUSE || route.kind == WEB_API_RESUME ||
		  route.kind == WEB_API_KILL;
	if (route.kind == WEB_REFUSE) {
		if (!route.reason || (route.status != 400 && route.status != 401 && route.status != 403 &&
				      route.status != 404 && route.status != 405))
			abort();
	} else if (route.kind == WEB_REDIRECT_TOKEN) {
		if (strcmp(p.method, "GET") != 0 && strcmp(p.method, "HEAD") != 0)
			abort();
		if (!p.has_query_token || strcmp(p.query_token, TOKEN) != 0)
			abort();
	} else if (!(route.kind == WEB_METRICS && req.local_peer && !policy.metrics_token)) {
		if (!authed)
			abort();
	} else if (!authed && p.has_host && p.host[0] && strncmp(p.host, "127.", 4) != 0 &&
		   strncasecmp(p.host, "localhost", 9) != 0 && strncmp(p.host, "[::1]", 5) != 0) {
		abort();   /* /metrics without the token for a Host that is not loopback */
	}
	if (control) {
		if (strcmp(p.method, "POST") != 0 || !p.has_control || strcmp(p.control, "1") != 0)
			abort();
		if (p.has_origin) {
			char want1[FIELD_MAX + 16], want2[FIELD_MAX + 16];

			snprintf(want1, sizeof(want1), "http://%s", p.host);
			snprintf(want2, sizeof(want2), "https://%s", p.host);
			if (!p.has_host || (strcasecmp(p.origin, want1) != 0 && strcasecmp(p.origin, want2) != 0))
				abort();
		}
	}
	if (route.kind >= WEB_PAGE_JOB && route.kind != WEB_PAGE_COMPARE && route.kind != WEB_STATIC &&
	    route.kind != WEB_METRICS && route.kind != WEB_API_JOBS && route.kind != WEB_API_START &&
	    route.job <= 0)
		abort();
	if (route.kind == WEB_STATIC && (!route.name || strchr(route.name, '/')))
		abort();

	/* the body */
	if (web_start_params(p.body, p.body_len, &params, why, sizeof(why)) == 0) {
		if (!json_is_object(params))
			abort();
		json_decref(params);
	} else if (!why[0]) {
		abort();
	}
	v = p.body ? json_loadb(p.body, p.body_len, 0, NULL) : NULL;
	if (v) {
		char *text = NULL;
		size_t len = 0;
		json_t *histories = json_object();

		if (json_is_array(v)) {
			size_t i;
			json_t *job;

			json_array_foreach(v, i, job) {
				json_t *id = json_object_get(job, "id");

				if (json_is_integer(id)) {
					char key[32];

					snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(id));
					json_object_set(histories, key, json_object_get(job, "rows"));
				}
			}
		}
		if (metrics_render(v, histories, json_is_object(v) ? v : NULL, &text, &len) == 0) {
			check_lines(text, len);
			free(text);
		}
		json_decref(histories);
		json_decref(v);
	}
	return 0;
}
