/*
 * describe.c - a daemon error reply in words (see describe.h), shared by
 * trainctl (rpc.c adds its flags' names) and traind-web.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "describe.h"
#include "reply.h"

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
		/* "config.batch_size" with "batch_size: 1000 is ...": the key once */
		const char *pkey = strrchr(param, '.') ? strrchr(param, '.') + 1 : param;
		size_t kl = strlen(pkey);

		if (msg && strncmp(msg, pkey, kl) == 0 && msg[kl] == ':')
			msg += kl + 1 + (msg[kl + 1] == ' ');
		snprintf(out, n, "invalid parameter %s%s%s", param, msg ? ": " : "", msg ? msg : "");
	} else if (ours && strcmp(last, "NoSuchSweep") == 0 && has_id) {
		snprintf(out, n, "no such sweep %lld", id);
	} else if (ours && strcmp(last, "InvalidState") == 0 && msg && strncmp(msg, "sweep ", 6) == 0) {
		snprintf(out, n, "invalid state: %s", msg);   /* a sweep's (SweepPause...): it names it */
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
