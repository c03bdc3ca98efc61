/*
 * rpc.c - trainctl's calls to the daemon (see rpc.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "reply.h"
#include "rpc.h"
#include "suggest.h"

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


/* ---- trainctl's words for the daemon's errors ---------------------------- */

/* Replace, in s (n bytes), each whole-word `from` by `to`. */
static void replace_word(char *s, size_t n, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to);

	for (char *p = strstr(s, from); p; p = strstr(p, from)) {
		bool left = p == s || !(isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '-' || p[-1] == '.');
		bool right = !(isalnum((unsigned char)p[fl]) || p[fl] == '_');
		size_t rest = strlen(p + fl);

		if (!left || !right || (size_t)(p - s) + tl + rest + 1 > n) {
			p += fl;
			continue;
		}
		memmove(p + tl, p + fl, rest + 1);
		memcpy(p, to, tl);
		p += tl;
	}
}

/* The protocol's names for trainctl's flags in a message: weights_only
 * becomes --weights-only, batch_size --batch-size, from_job --from. Only
 * names with an underscore: a plain word ("dataset", "epochs") is as likely
 * English as a key. */
static void flag_words(char *s, size_t n)
{
	replace_word(s, n, "from_job", "--from");
	replace_word(s, n, "from_epoch", "--from JOB@EPOCH");
	for (int o = 0; o < O_COUNT; o++) {
		char key[64], flag[72];

		if (!strchr(opts[o].name, '-'))
			continue;
		snprintf(key, sizeof(key), "%s", opts[o].name);
		for (char *p = key; *p; p++)
			if (*p == '-')
				*p = '_';
		snprintf(flag, sizeof(flag), "--%s", opts[o].name);
		replace_word(s, n, key, flag);
	}
}

/* What named setting `key` of Start's configuration came from, for a line's
 * head: "--batch-size" (a flag, or the flag of a key traind complains about
 * by itself), "run.yaml:4: batch_size" (the --config file), or the key. */
static void setting_head(struct cli *cli, const char *key, char *out, size_t n)
{
	int o = opt_of_key(key);
	json_t *e = json_object_get(cli->config_file, key);
	long long line = 0;

	if (e && !(o >= 0 && cli->set[o]) && pint(e, "line", &line))
		snprintf(out, n, "%s:%lld: %s", cli->val[O_CONFIG], line, key);
	else if (o >= 0)
		snprintf(out, n, "--%s", opts[o].name);
	else
		snprintf(out, n, "%s", key);
}

/* start --dataset NAME that traind does not have: the names it has, and the
 * nearest. false when traind has it (the error is about its files). */
static bool unknown_dataset(struct cli *cli, const char *name, char *out, size_t n)
{
	struct vl_reply r = { 0 };
	struct tr_err err = { 0 };
	const char *names[256], *best;
	char head[160];
	size_t k = 0, used;
	json_t *list, *d;
	size_t i;
	bool found = false;

	if (vl_call(cli->conn, "io.traind.Datasets", NULL, false, &err) < 0 || vl_recv(cli->conn, &r, &err) < 0 ||
	    r.error) {
		vl_reply_clear(&r);
		return false;
	}
	list = json_object_get(r.params, "datasets");
	json_array_foreach(list, i, d)
		if (pstr(d, "name") && k < 256)
			names[k++] = pstr(d, "name");
	for (i = 0; i < k; i++)
		found = found || strcmp(names[i], name) == 0;
	if (!found) {
		setting_head(cli, "dataset", head, sizeof(head));
		used = (size_t)snprintf(out, n, "%s: traind has no dataset '%.*s'", head, tr_utf8_cut(name, TR_QUOTE_MAX),
					name);
		for (i = 0; i < k && used < n; i++)
			used += (size_t)snprintf(out + used, n - used, "%s%s", i ? ", " : " (it has: ", names[i]);
		best = suggest_closest(name, names, k);
		if (used < n)
			snprintf(out + used, n - used, "%s%s%s%s", k ? ")" : " (it has none; trainctl dataset import adds one)",
				 best ? "; did you mean " : "", best ? best : "", best ? "?" : "");
	}
	vl_reply_clear(&r);
	return !found;
}

/* trainctl's line for a daemon error: its flags, not the protocol's names
 * ("--batch-size: ..." for "invalid parameter config.batch_size: ..."), the
 * line of a --config file for a key that came from there, and for a dataset
 * traind does not have, those it has. */
static void cli_words(struct cli *cli, const struct vl_reply *r, char *line, size_t n)
{
	const char *dot = strrchr(r->error, '.');
	const char *last = dot ? dot + 1 : r->error;
	const char *param = pstr(r->params, "parameter"), *msg = pstr(r->params, "message");
	const char *dataset = pstr(r->params, "dataset");

	if (strcmp(last, "InvalidParameter") == 0 && param && msg) {
		const char *key = strrchr(param, '.') ? strrchr(param, '.') + 1 : param;
		size_t kl = strlen(key);
		char head[160], flag[72], body[800];
		int o;

		if (strncmp(msg, key, kl) == 0 && msg[kl] == ':')
			msg += kl + 1 + (msg[kl + 1] == ' ');
		if (strncmp(param, "config.", 7) == 0) {
			setting_head(cli, key, head, sizeof(head));
		} else if (strncmp(param, "params.", 7) == 0) {   /* a sweep's parameter */
			snprintf(head, sizeof(head), "--param %.60s", param + 7);
		} else {
			snprintf(flag, sizeof(flag), "%s", strcmp(key, "from_job") == 0 || strcmp(key, "from_epoch") == 0
							   ? "from" : key);
			for (char *p = flag; *p; p++)
				if (*p == '_')
					*p = '-';
			o = opt_find(flag);
			if (o < 0 || (o != O_FROM && !(cli->verb && (cli->verb->opts & OPT_BIT(o))))) {
				/* not a flag of this verb (a positional NAME): as traind says it */
				flag_words(line, n);
				return;
			}
			snprintf(head, sizeof(head), "--%s", opts[o].name);
		}
		snprintf(body, sizeof(body), "%s", msg);
		flag_words(body, sizeof(body));   /* the message's words only: the head is right */
		snprintf(line, n, "%s: %s", head, body);
		return;
	} else if (strcmp(last, "DatasetError") == 0 && dataset && strcmp(cli->verb->name, "start") == 0 &&
		   unknown_dataset(cli, dataset, line, n)) {
		return;
	}
	flag_words(line, n);
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
		cli_words(cli, &r, line, sizeof(line));
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
