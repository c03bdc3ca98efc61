/*
 * api.h - the JSON API under /api/: each route of route.h a varlink call to
 * traind (one connection per request, opened and closed here) whose reply's
 * parameters become the response body as they are ({"jobs": [...]},
 * {"job": {...}}, {"rows": [...]}, {"checkpoints": [...]}, {"id": N}...),
 * except the export, which is the safetensors file itself.
 *
 * traind's error replies become HTTP statuses (web_status_for_error) with
 * {"error": "io.traind.NoSuchJob", "message": "no such job 42",
 * "parameters": {...}}: the sentence is trainctl's (client/describe.c).
 *
 * Thread: any connection thread; nothing shared but the socket path.
 */
#ifndef TRAIND_WEB_API_H
#define TRAIND_WEB_API_H

#include <jansson.h>
#include <stddef.h>

#include "resp.h"
#include "route.h"

/* What an API handler reads from the request besides its route. */
struct api_args {
	const char *socket;        /* traind's socket */
	const char *epoch;         /* export: query parameter epoch, or NULL */
	const char *states;        /* list: query parameter state (comma separated), or NULL */
	const char *prompt, *tokens, *temperature, *seed;   /* sample: its query parameters, or NULL */
	const char *body;          /* POST body (not NUL-terminated), may be NULL */
	size_t body_len;
};

/* Largest POST body read (a start form is a few hundred bytes). */
#define API_MAX_BODY (64u << 10)

/* Answer an API route (WEB_API_* but WEB_API_EVENTS) into *out. */
void api_handle(const struct web_route *route, const struct api_args *args, struct web_resp *out);

/* One call to traind: 0 and *out = the reply's parameters (caller owns), or
 * -1 with the error response made in *err (502 when traind cannot be
 * reached, else by web_status_for_error). `params` is stolen. */
int web_call(const char *socket, const char *method, json_t *params, int timeout_ms, json_t **out,
	     struct web_resp *err);

/* The HTTP status for a varlink error name. */
int web_status_for_error(const char *name);

/* The parameters of Start from a POST body: a JSON object with only name
 * (string), keep (integer) and config (object); config's own keys are
 * checked by traind. 0, or -1 with why in `why` (one line). */
int web_start_params(const char *body, size_t len, json_t **out, char *why, size_t n);

#endif
