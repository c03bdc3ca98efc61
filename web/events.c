/*
 * events.c - Server-Sent Events from Watch (see events.h).
 */
#include "events.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "traind/jsonfmt.h"
#include "varlink.h"

#define EVENT_MAX 4096

static atomic_int open_streams;

struct events {
	char socket[4096];
	int64_t job;
	int quiet_ms;               /* a keep-alive comment after this long without a reply */
	struct vl_conn *c;          /* the Watch call, NULL between calls */
	long long next_id;
	char *pending;              /* bytes to send, [off, len) */
	size_t off, len;
	bool done;                  /* end the stream once pending is sent */
};

struct events *events_new(const char *socket, int64_t job, const char *last_id, int quiet_ms)
{
	struct events *e;

	if (atomic_fetch_add(&open_streams, 1) >= EVENTS_MAX) {
		atomic_fetch_sub(&open_streams, 1);
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		atomic_fetch_sub(&open_streams, 1);
		return NULL;
	}
	snprintf(e->socket, sizeof(e->socket), "%s", socket);
	e->job = job;
	e->quiet_ms = quiet_ms;
	e->next_id = 1;
	if (last_id) {
		char *end;
		long long v = strtoll(last_id, &end, 10);

		if (*last_id && !*end && v > 0 && v < (1LL << 53))
			e->next_id = v + 1;
	}
	if (asprintf(&e->pending, "retry: 3000\n\n") < 0)
		e->pending = NULL;
	e->len = e->pending ? strlen(e->pending) : 0;
	return e;
}

void events_free(void *cls)
{
	struct events *e = cls;

	if (!e)
		return;
	vl_free(e->c);
	free(e->pending);
	free(e);
	atomic_fetch_sub(&open_streams, 1);
}

/* Make `text` the pending bytes (owned). */
static void set_pending(struct events *e, char *text)
{
	free(e->pending);
	e->pending = text;
	e->off = 0;
	e->len = text ? strlen(text) : 0;
	if (!text)
		e->done = true;
}

/* event: error, data {"error", "message"}; the stream ends. */
static void error_event(struct events *e, const char *name, const char *message)
{
	json_t *v = json_pack("{s:s, s:s}", "error", name, "message", message);
	char *data = v ? jsonfmt_dumps(v, JSON_COMPACT) : NULL;
	char *text = NULL;

	json_decref(v);
	if (data && asprintf(&text, "event: error\ndata: %s\n\n", data) < 0)
		text = NULL;
	free(data);
	set_pending(e, text);
	e->done = true;
}

/* Wait for the next Watch reply and make it the pending event. */
static void next_event(struct events *e)
{
	struct tr_err err = { 0 };
	struct vl_reply r = { 0 };
	char *data = NULL, *text = NULL;
	int rc;

	if (!e->c) {
		json_t *params = json_pack("{s:I}", "id", (json_int_t)e->job);

		rc = vl_connect(&e->c, e->socket, e->quiet_ms, &err);
		if (rc == 0)
			rc = vl_call(e->c, "io.traind.Watch", params, true, &err);
		json_decref(params);
		if (rc < 0) {
			error_event(e, "traind-web.Unreachable", err.msg);
			return;
		}
	}
	rc = vl_recv(e->c, &r, &err);
	if (rc == -ETIMEDOUT) {
		/* quiet: keep the client's connection, call Watch anew next time */
		vl_free(e->c);
		e->c = NULL;
		set_pending(e, strdup(": keepalive\n\n"));
		return;
	}
	if (rc < 0) {
		error_event(e, "traind-web.Unreachable", err.msg);
		return;
	}
	if (r.error) {
		char line[1024];

		describe_error(&r, line, sizeof(line));
		error_event(e, r.error, line);
		goto out;
	}
	data = jsonfmt_dumps(r.params, JSON_COMPACT);
	if (!data || strlen(data) > EVENT_MAX) {
		error_event(e, "traind-web.Internal", "a Watch reply could not be encoded");
		goto out;
	}
	if (r.continues)
		rc = asprintf(&text, "event: progress\nid: %lld\ndata: %s\n\n", e->next_id, data);
	else
		rc = asprintf(&text, "event: progress\nid: %lld\ndata: %s\n\nevent: end\ndata: %s\n\n",
			      e->next_id, data, data);
	e->next_id++;
	set_pending(e, rc < 0 ? NULL : text);
	if (!r.continues)
		e->done = true;
out:
	free(data);
	vl_reply_clear(&r);
}

ssize_t events_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct events *e = cls;
	size_t n;

	if (e->off >= e->len) {
		if (e->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		next_event(e);
		if (e->off >= e->len)
			return MHD_CONTENT_READER_END_OF_STREAM;
	}
	n = e->len - e->off;
	if (n > max)
		n = max;
	memcpy(buf, e->pending + e->off, n);
	e->off += n;
	return (ssize_t)n;
}
