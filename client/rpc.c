/*
 * rpc.c - trainctl's calls to the daemon (see rpc.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "reply.h"
#include "rpc.h"

#define CALL_TIMEOUT_MS (300 * 1000)   /* any single reply except wait's and watch's */

int ensure_connected(struct cli *cli)
{
	struct tr_err err = { 0 };
	int rc;

	if (cli->conn)
		return RC_OK;
	rc = vl_connect(&cli->conn, cli->socket, CALL_TIMEOUT_MS, &err);
	if (rc < 0)
		return failf(RC_ERROR, "%s%s", err.msg,
			     rc == -ENOENT || rc == -ECONNREFUSED ? " (is traind running?)" : "");
	return RC_OK;
}


/* "NoSuchJob" -> "no such job". */
static void decamel(const char *name, char *out, size_t n)
{
	size_t o = 0;

	for (const char *s = name; *s && o + 2 < n; s++) {
		if (*s >= 'A' && *s <= 'Z') {
			if (o > 0)
				out[o++] = ' ';
			out[o++] = (char)(*s - 'A' + 'a');
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
}

/* One line for a daemon error: its name's last component in words, then
 * what its parameters say ("no such job 42"). */
void describe_error(const struct vl_reply *r, char *out, size_t n)
{
	const char *dot = strrchr(r->error, '.');
	const char *last = dot ? dot + 1 : r->error;
	const char *msg = pstr(r->params, "message");
	const char *state = pstr(r->params, "state");
	const char *param = pstr(r->params, "parameter");
	const char *dataset = pstr(r->params, "dataset");
	char head[128];
	long long id = 0, epoch = 0;
	bool has_id = pint(r->params, "id", &id);
	bool has_epoch = pint(r->params, "epoch", &epoch);
	bool ours = strncmp(r->error, "io.traind.", 10) == 0;
	size_t o;
	const char *key;
	json_t *v;

	decamel(last, head, sizeof(head));
	if (ours && strcmp(last, "NoSuchJob") == 0 && has_id) {
		snprintf(out, n, "no such job %lld", id);
	} else if (ours && strcmp(last, "NoSuchCheckpoint") == 0 && has_id) {
		if (has_epoch)
			snprintf(out, n, "no such checkpoint: job %lld epoch %lld", id, epoch);
		else
			snprintf(out, n, "no such checkpoint: job %lld has none", id);
	} else if (strcmp(last, "InvalidParameter") == 0 && param) {
		snprintf(out, n, "invalid parameter %s%s%s", param, msg ? ": " : "", msg ? msg : "");
	} else if (ours && strcmp(last, "InvalidState") == 0 && has_id && state) {
		snprintf(out, n, "invalid state: job %lld is %s%s%s", id, state, msg ? ": " : "",
			 msg ? msg : "");
	} else if (ours && strcmp(last, "UnexpectedState") == 0 && has_id && state) {
		snprintf(out, n, "unexpected state: job %lld is %s", id, state);
	} else if (ours && strcmp(last, "JobRemoved") == 0 && has_id) {
		snprintf(out, n, "job %lld was removed", id);
	} else if (ours && strcmp(last, "Timeout") == 0 && has_id) {
		snprintf(out, n, "timeout: job %lld", id);
	} else if (ours && strcmp(last, "DatasetError") == 0 && dataset) {
		snprintf(out, n, "dataset error: %s%s%s", dataset, msg ? ": " : "", msg ? msg : "");
	} else if (ours && (strcmp(last, "DatasetExists") == 0 || strcmp(last, "DatasetInUse") == 0 ||
			    strcmp(last, "NoSuchDataset") == 0 || strcmp(last, "DatasetTooBig") == 0 ||
			    strcmp(last, "ImageError") == 0 || strcmp(last, "ImageSizeMismatch") == 0) && msg) {
		snprintf(out, n, "%s", msg);
	} else if (ours && strcmp(last, "DatasetChanged") == 0 && msg) {
		snprintf(out, n, "%s", msg);
	} else if (ours && strcmp(last, "ShuttingDown") == 0 && msg) {
		snprintf(out, n, "%s", msg);
	} else if (ours && strcmp(last, "CheckpointError") == 0 && has_id) {
		snprintf(out, n, "checkpoint error: job %lld%s%s", id, msg ? ": " : "", msg ? msg : "");
	} else {
		/* anything else: "words: key value, key value, message" */
		o = (size_t)snprintf(out, n, "%s", head);
		json_object_foreach(r->params, key, v) {
			char *text;

			if (o >= n || strcmp(key, "message") == 0)
				continue;
			text = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			o += (size_t)snprintf(out + o, n - o, "%s%s %s", o == strlen(head) ? ": " : ", ",
					      key, text ? text : json_is_string(v) ? json_string_value(v) : "?");
			free(text);
		}
		if (msg && o < n)
			snprintf(out + o, n - o, "%s%s", o == strlen(head) ? ": " : ", ", msg);
	}
}

/* Call `method` with `params` (stolen; NULL: none) and read its one reply.
 * On success *out holds the reply's parameters (caller owns). On failure the
 * line is printed and the exit code returned: RC_ERROR, or for Wait RC_TIMEOUT
 * and RC_STATE. */
int rpc(struct cli *cli, const char *method, json_t *params, json_t **out)
{
	return rpc_fds(cli, method, params, NULL, 0, out);
}

int rpc_fds(struct cli *cli, const char *method, json_t *params, const int *fds, size_t nfds,
	    json_t **out)
{
	struct vl_reply r = { 0 };
	struct tr_err err = { 0 };
	bool wait = strcmp(method, "io.traind.Wait") == 0;
	int rc;

	*out = NULL;
	rc = ensure_connected(cli);
	if (rc != RC_OK) {
		json_decref(params);
		return rc;
	}
	rc = vl_call_fds(cli->conn, method, params, false, fds, nfds, &err);
	json_decref(params);
	if (rc < 0)
		return failf(RC_ERROR, "%s", err.msg);
	rc = vl_recv(cli->conn, &r, &err);
	if (rc < 0)
		return failf(wait && rc == -ETIMEDOUT ? RC_TIMEOUT : RC_ERROR, "%s", err.msg);
	if (r.error) {
		char line[1024];

		rc = RC_ERROR;
		if (wait && strcmp(r.error, "io.traind.Timeout") == 0)
			rc = RC_TIMEOUT;
		else if (wait && strcmp(r.error, "io.traind.UnexpectedState") == 0)
			rc = RC_STATE;
		describe_error(&r, line, sizeof(line));
		vl_reply_clear(&r);
		return failf(rc, "%s", line);
	}
	*out = r.params;
	r.params = NULL;
	vl_reply_clear(&r);
	return RC_OK;
}

json_t *id_params(struct cli *cli)
{
	return json_pack("{s:I}", "id", (json_int_t)cli->job);
}

/* rpc() with the parameters {"id": JOB}. */
int rpc_id(struct cli *cli, const char *method, json_t **out)
{
	json_t *params = id_params(cli);

	*out = NULL;
	if (!params)
		return failf(RC_ERROR, "out of memory");
	return rpc(cli, method, params, out);
}
