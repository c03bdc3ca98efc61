/*
 * api.c - the JSON API (see api.h): a varlink call per request, through
 * trainctl's client (client/varlink.c) and its error sentences
 * (client/rpc.c describe_error).
 */
#include "api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "traind/base64.h"
#include "traind/jsonfmt.h"
#include "varlink.h"

#define CALL_TIMEOUT_MS (300 * 1000)   /* Pause waits for its checkpoint */

void web_resp_clear(struct web_resp *r)
{
	if (!r->borrowed)
		free(r->body);
	memset(r, 0, sizeof(*r));
}

void web_resp_json(struct web_resp *r, int status, json_t *v)
{
	char *text = v ? jsonfmt_dumps(v, JSON_COMPACT) : NULL;

	json_decref(v);
	web_resp_clear(r);
	r->type = "application/json";
	if (!text) {
		static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";

		r->status = 500;
		r->body = (char *)oom;
		r->len = sizeof(oom) - 1;
		r->borrowed = true;
		return;
	}
	r->status = status ? status : 200;
	r->body = text;
	r->len = strlen(text);
}

static void resp_error_v(struct web_resp *r, int status, const char *name, json_t *params,
			 const char *fmt, va_list ap)
{
	char msg[1024];

	json_t *v;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	v = json_pack("{s:s, s:s}", "error", name, "message", msg);
	if (v && params)
		json_object_set(v, "parameters", params);
	web_resp_json(r, status, v);
}

void web_resp_error(struct web_resp *r, int status, const char *name, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	resp_error_v(r, status, name, NULL, fmt, ap);
	va_end(ap);
}

static void resp_error_params(struct web_resp *r, int status, const char *name, json_t *params,
			      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	resp_error_v(r, status, name, params, fmt, ap);
	va_end(ap);
}

int web_status_for_error(const char *name)
{
	static const struct {
		const char *last;
		int status;
	} map[] = {
		{ "NoSuchJob", 404 }, { "NoSuchSweep", 404 }, { "JobRemoved", 404 }, { "NoSuchCheckpoint", 404 },
		{ "InvalidParameter", 400 }, { "InvalidState", 409 }, { "UnexpectedState", 409 },
		{ "Timeout", 504 }, { "DatasetError", 400 }, { "TooManyRequests", 503 },
		{ "ShuttingDown", 503 }, { "PermissionDenied", 502 }, { "MethodNotFound", 501 },
	};
	const char *dot = strrchr(name, '.');
	const char *last = dot ? dot + 1 : name;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(last, map[i].last) == 0)
			return map[i].status;
	return 500;
}

int web_call(const char *socket, const char *method, json_t *params, int timeout_ms, json_t **out,
	     struct web_resp *err)
{
	struct vl_conn *c = NULL;
	struct vl_reply r = { 0 };
	struct tr_err e = { 0 };
	int rc = -1;

	*out = NULL;
	if (vl_connect(&c, socket, timeout_ms, &e) < 0) {
		web_resp_error(err, 502, "traind-web.Unreachable", "%s (is traind running?)", e.msg);
		goto out;
	}
	if (vl_call(c, method, params, false, &e) < 0 || vl_recv(c, &r, &e) < 0) {
		web_resp_error(err, 502, "traind-web.Unreachable", "%s", e.msg);
		goto out;
	}
	if (r.error) {
		char line[1024];

		describe_error(&r, line, sizeof(line));
		resp_error_params(err, web_status_for_error(r.error), r.error, r.params, "%s", line);
		goto out;
	}
	*out = r.params;
	r.params = NULL;
	rc = 0;
out:
	vl_reply_clear(&r);
	vl_free(c);
	json_decref(params);
	return rc;
}

int web_start_params(const char *body, size_t len, json_t **out, char *why, size_t n)
{
	json_error_t jerr;
	json_t *v, *params = NULL;
	const char *key;

	*out = NULL;
	if (!body || len == 0) {
		snprintf(why, n, "the body is empty: send a JSON object {\"name\", \"config\", \"keep\"}");
		return -1;
	}
	v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!v) {
		snprintf(why, n, "the body is not JSON: %s at line %d column %d", jerr.text, jerr.line,
			 jerr.column);
		return -1;
	}
	if (!json_is_object(v)) {
		snprintf(why, n, "the body must be a JSON object");
		goto fail;
	}
	json_object_foreach(v, key, params) {
		if (strcmp(key, "name") == 0 && !json_is_string(params)) {
			snprintf(why, n, "\"name\" must be a string");
			goto fail;
		} else if (strcmp(key, "keep") == 0 && !json_is_integer(params)) {
			snprintf(why, n, "\"keep\" must be an integer");
			goto fail;
		} else if (strcmp(key, "config") == 0 && !json_is_object(params)) {
			snprintf(why, n, "\"config\" must be an object");
			goto fail;
		} else if (strcmp(key, "name") != 0 && strcmp(key, "keep") != 0 && strcmp(key, "config") != 0) {
			snprintf(why, n, "unknown field \"%.64s\" (name, config and keep are)", key);
			goto fail;
		}
	}
	*out = v;
	return 0;
fail:
	json_decref(v);
	return -1;
}

/* {"id": N} */
static json_t *id_of(const struct web_route *route)
{
	return json_pack("{s:I}", "id", (json_int_t)route->job);
}

/* The list's ?state=running,paused as ["running", "paused"]. */
static json_t *states_of(const char *s)
{
	json_t *a = json_array();

	while (a && s && *s) {
		size_t len = strcspn(s, ",");

		if (len > 0 && len < 32)
			json_array_append_new(a, json_stringn(s, len));
		s += len;
		if (*s == ',')
			s++;
	}
	return a;
}

static void export(const struct web_route *route, const struct api_args *args, struct web_resp *out)
{
	json_t *params = id_of(route), *reply = NULL;
	const char *data, *sha;
	uint8_t *bytes = NULL;
	size_t len = 0;
	long long epoch = 0;

	if (args->epoch) {
		int64_t e = 0;

		if (!web_parse_id(args->epoch, strlen(args->epoch), &e) && strcmp(args->epoch, "0") != 0) {
			json_decref(params);
			web_resp_error(out, 400, "traind-web.InvalidParameter",
				       "epoch must be a decimal number, not \"%.40s\"", args->epoch);
			return;
		}
		json_object_set_new(params, "epoch", json_integer(strcmp(args->epoch, "0") == 0 ? 0 : e));
	}
	if (web_call(args->socket, "io.traind.Export", params, CALL_TIMEOUT_MS, &reply, out) < 0)
		return;
	data = json_string_value(json_object_get(reply, "data"));
	sha = json_string_value(json_object_get(reply, "sha256"));
	epoch = json_integer_value(json_object_get(reply, "epoch"));
	if (!data || base64_decode(data, strlen(data), &bytes, &len) < 0) {
		web_resp_error(out, 502, "traind-web.BadReply", "traind's Export reply has no valid data");
		goto out;
	}
	web_resp_clear(out);
	out->status = 200;
	out->type = "application/octet-stream";
	out->body = (char *)bytes;
	out->len = len;
	snprintf(out->disposition, sizeof(out->disposition),
		 "attachment; filename=\"job-%lld-epoch-%lld.safetensors\"", (long long)route->job, epoch);
	if (sha && strlen(sha) < sizeof(out->digest))
		snprintf(out->digest, sizeof(out->digest), "%s", sha);
out:
	json_decref(reply);
}

/* A language model's text (io.traind.Generate): prompt (default a new
 * line), tokens (default 200, at most 2000 here), temperature (default
 * 0.8), seed (default 1). traind's errors (a prompt with characters the
 * vocabulary lacks, a job that is not a language model) pass through. */
static void sample(const struct web_route *route, const struct api_args *args, struct web_resp *out)
{
	json_t *params = id_of(route), *reply = NULL;
	int64_t tokens = 200, seed = 1;
	double temp = 0.8;
	char *end = NULL;

	if (args->tokens && (!web_parse_id(args->tokens, strlen(args->tokens), &tokens) || tokens > 2000)) {
		json_decref(params);
		web_resp_error(out, 400, "traind-web.InvalidParameter", "tokens must be a number 1..2000");
		return;
	}
	if (args->seed && !web_parse_id(args->seed, strlen(args->seed), &seed) && strcmp(args->seed, "0") != 0) {
		json_decref(params);
		web_resp_error(out, 400, "traind-web.InvalidParameter", "seed must be a decimal number");
		return;
	}
	if (args->seed && strcmp(args->seed, "0") == 0)
		seed = 0;
	if (args->temperature) {
		temp = strtod(args->temperature, &end);
		if (end == args->temperature || *end || !(temp >= 0.0 && temp <= 100.0)) {
			json_decref(params);
			web_resp_error(out, 400, "traind-web.InvalidParameter", "temperature must be a number 0..100");
			return;
		}
	}
	json_object_set_new(params, "prompt", json_string(args->prompt && args->prompt[0] ? args->prompt : "\n"));
	json_object_set_new(params, "tokens", json_integer((json_int_t)tokens));
	json_object_set_new(params, "temperature", json_real(temp));
	json_object_set_new(params, "seed", json_integer((json_int_t)seed));
	if (!json_object_get(params, "prompt")) {
		json_decref(params);
		web_resp_error(out, 400, "traind-web.InvalidParameter", "prompt must be UTF-8 text");
		return;
	}
	if (web_call(args->socket, "io.traind.Generate", params, CALL_TIMEOUT_MS, &reply, out) < 0)
		return;
	web_resp_json(out, 200, reply);
}

void api_handle(const struct web_route *route, const struct api_args *args, struct web_resp *out)
{
	const char *method = NULL;
	json_t *params = NULL, *reply = NULL;
	char why[256];

	switch (route->kind) {
	case WEB_API_JOBS:
		method = "io.traind.List";
		params = args->states ? json_pack("{s:o}", "states", states_of(args->states)) : NULL;
		break;
	case WEB_API_JOB:
		method = "io.traind.Status";
		params = id_of(route);
		break;
	case WEB_API_HISTORY:
		method = "io.traind.History";
		params = id_of(route);
		break;
	case WEB_API_CHECKPOINTS:
		method = "io.traind.Checkpoints";
		params = id_of(route);
		break;
	case WEB_API_PAUSE:
		method = "io.traind.Pause";
		params = id_of(route);
		break;
	case WEB_API_RESUME:
		method = "io.traind.Resume";
		params = id_of(route);
		break;
	case WEB_API_KILL:
		method = "io.traind.Kill";
		params = id_of(route);
		break;
	case WEB_API_DELETE:
		method = "io.traind.Delete";   /* no force: the page offers it for stopped jobs */
		params = id_of(route);
		break;
	case WEB_API_STEPS:
		method = "io.traind.Steps";
		params = id_of(route);
		break;
	case WEB_API_SWEEPS:
		method = "io.traind.SweepList";
		break;
	case WEB_API_SWEEP:
		method = "io.traind.SweepStatus";
		params = id_of(route);
		break;
	case WEB_API_START:
		method = "io.traind.Start";
		if (web_start_params(args->body, args->body_len, &params, why, sizeof(why)) < 0) {
			web_resp_error(out, 400, "traind-web.InvalidRequest", "%s", why);
			return;
		}
		break;
	case WEB_API_EXPORT:
		export(route, args, out);
		return;
	case WEB_API_SAMPLE:
		sample(route, args, out);
		return;
	default:
		web_resp_error(out, 500, "traind-web.Internal", "not an API route");
		return;
	}
	if (web_call(args->socket, method, params, CALL_TIMEOUT_MS, &reply, out) < 0)
		return;
	web_resp_json(out, route->kind == WEB_API_START ? 201 : 200, reply);
}
