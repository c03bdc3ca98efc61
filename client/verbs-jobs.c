/*
 * verbs-jobs.c - the verbs that change jobs: start, pause, resume, kill, rm.
 *
 * start checks its configuration flags, and the settings of a --config file
 * (yamlcfg.h), with the engine's own config_set/config_validate (the code the
 * daemon runs), so a bad flag or line never reaches the daemon and its
 * message names the flag or the file's line; it sends only the keys given,
 * a flag winning over the file. `start --init-from` reads the model here and sends its bytes (the
 * daemon never opens client paths).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "traind/base64.h"
#include "traind/config.h"
#include "traind/error.h"
#include "traind/fileio.h"
#include "msg.h"
#include "render.h"
#include "reply.h"
#include "rpc.h"
#include "suggest.h"
#include "verbs.h"
#include "yamlcfg.h"

#define INIT_FROM_MAX ((size_t)(VL_MAX_MESSAGE - 65536) / 4 * 3)  /* fits a call in base64 */

/* One setting for Start's config: its key, its text as a flag or the file
 * has it, and where it came from. */
struct setting {
	const char *key;
	const char *text;       /* NULL: the file's empty value */
	int opt;                /* the flag that gave it, or -1: the file */
	long long line;         /* the file's line */
};

/* The line for error `err` about one setting (err->key names it): "--flag:
 * what" for a flag, "FILE:LINE: key: what" for the file, "key: what"
 * otherwise (a rule between keys). */
static int setting_error(const struct tr_err *err, const struct setting *set, size_t n, const char *file)
{
	const char *msg = err->msg;
	size_t kl = strlen(err->key);
	int o = opt_of_key(err->key);

	/* config.c writes "key: what": the flag or file names the key once */
	if (kl && strncmp(msg, err->key, kl) == 0 && msg[kl] == ':')
		msg += kl + 1 + (msg[kl + 1] == ' ');
	for (size_t i = n; i-- > 0;) {
		if (strcmp(set[i].key, err->key) != 0)
			continue;
		if (set[i].opt >= 0)
			return failf(RC_USAGE, "--%s: %s", opts[set[i].opt].name, msg);
		return failf(RC_USAGE, "%s:%lld: %s: %s", file, set[i].line, err->key, msg);
	}
	if (o >= 0)
		return failf(RC_USAGE, "--%s: %s", opts[o].name, msg);
	return failf(RC_USAGE, "%s%s%s", kl ? err->key : "", kl ? ": " : "", msg);
}

/* "(did you mean batch_size?)" for an unknown key of the file. */
static int unknown_key(const char *file, const struct setting *s, json_t *known)
{
	const char *names[128], *best, *k;
	size_t n = 0;
	json_t *v;
	char dashed[128];

	json_object_foreach(known, k, v)
		if (n < 128)
			names[n++] = k;
	snprintf(dashed, sizeof(dashed), "%s", s->key);
	for (char *p = dashed; *p; p++)
		if (*p == '-')
			*p = '_';
	best = suggest_closest(dashed, names, n);
	if (best)
		return failf(RC_USAGE, "%s:%lld: unknown setting '%.*s' (did you mean %s?)", file, s->line,
			     tr_utf8_cut(s->key, TR_QUOTE_MAX), s->key, best);
	return failf(RC_USAGE, "%s:%lld: unknown setting '%.*s' (the keys are those of `trainctl config JOB`)",
		     file, s->line, tr_utf8_cut(s->key, TR_QUOTE_MAX), s->key);
}

/* A YAML-ish boolean as config_set takes it ("yes" -> "true"). */
static const char *bool_text(const char *t)
{
	static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y" };
	static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (strcmp(t, yes[i]) == 0)
			return "true";
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (strcmp(t, no[i]) == 0)
			return "false";
	return t;
}

/* start --config FILE: its settings into set[] (configuration keys) and
 * its name and keep into *name, *keep (NULL: not there), all pointing into
 * *file_doc. */
static int read_config_file(struct cli *cli, json_t **file_doc, struct setting *set, size_t *n, size_t cap,
			    const char **name, const char **keep, json_t *defaults)
{
	const char *path = cli->val[O_CONFIG], *key;
	char why[1024];
	json_t *e;

	if (yamlcfg_read(path, file_doc, why, sizeof(why)) < 0)
		return failf(RC_USAGE, "--config: %s", why);
	json_object_foreach(*file_doc, key, e) {
		json_t *t = json_object_get(e, "text");
		long long line = 0;
		struct setting s;

		pint(e, "line", &line);
		s = (struct setting){ key, json_is_string(t) ? json_string_value(t) : NULL, -1, line };
		if (cli->verb->run == cmd_sweep && sweep_file_key(key))
			continue;   /* the sweep's own (verbs-sweep.c reads them) */
		if (strcmp(key, "name") == 0 || strcmp(key, "keep") == 0) {
			if (!s.text)
				return failf(RC_USAGE, "%s:%lld: %s: no value", path, line, key);
			*(strcmp(key, "name") == 0 ? name : keep) = s.text;
			continue;
		}
		if (!json_object_get(defaults, key))
			return unknown_key(path, &s, defaults);
		if (*n == cap)
			return failf(RC_USAGE, "%s: too many settings", path);
		set[(*n)++] = s;
	}
	return RC_OK;
}

/* The "config" parameter of Start: only the keys given (by the file or by
 * flags, flags winning), JSON-typed as config_to_json types them, after
 * checking them as the daemon will (config_set, config_validate). */
int verbs_build_config(struct cli *cli, json_t **out, const char **name, const char **keep)
{
	struct train_config cfg;
	struct tr_err err = { 0 };
	/* the file's settings (at most 127 more than there are flags, which
	 * no configuration has), then room for every flag */
	struct setting set[CONFIG_LAST - CONFIG_FIRST + 128];
	size_t n = 0;
	json_t *file_doc = NULL, *defaults, *cj = NULL, *obj = NULL;
	const char *file = cli->set[O_CONFIG] ? cli->val[O_CONFIG] : NULL;
	int rc;

	*out = NULL;
	config_defaults(&cfg);
	defaults = config_to_json(&cfg);
	if (!defaults)
		return failf(RC_ERROR, "out of memory");
	if (file) {
		rc = read_config_file(cli, &file_doc, set, &n, sizeof(set) / sizeof(set[0]) - (CONFIG_LAST - CONFIG_FIRST + 1),
				      name, keep, defaults);
		if (rc != RC_OK)
			goto out;
	}
	/* flags over the file */
	for (int o = CONFIG_FIRST; o <= CONFIG_LAST; o++) {
		size_t i;

		if (!cli->set[o])
			continue;
		for (i = 0; i < n && strcmp(set[i].key, opts[o].key) != 0; i++)
			;
		set[i] = (struct setting){ opts[o].key, cli->val[o], o, 0 };
		if (i == n)
			n++;
	}
	/* optimizer first: choosing adamw sets a default decay that an
	 * explicit weight_decay then overrides */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			json_t *def = json_object_get(defaults, set[i].key);
			const char *text = set[i].text;

			if ((strcmp(set[i].key, "optimizer") == 0) != (pass == 0))
				continue;
			if (!text && !json_is_string(def)) {
				rc = failf(RC_USAGE, "%s:%lld: %s: no value", file, set[i].line, set[i].key);
				goto out;
			}
			if (!text)
				text = "";   /* an empty string setting: model, lr_scheduler, hosts */
			if (json_is_boolean(def))
				text = bool_text(text);
			if (config_set(&cfg, set[i].key, text, &err) < 0) {
				rc = setting_error(&err, set, n, file);
				goto out;
			}
		}
	}
	/* With --from the rest comes from the other job: the daemon checks the whole. */
	if (!cli->set[O_FROM] && config_validate(&cfg, &err) < 0) {
		rc = setting_error(&err, set, n, file);
		goto out;
	}
	cj = config_to_json(&cfg);
	obj = json_object();
	if (!cj || !obj) {
		rc = failf(RC_ERROR, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_object_get(cj, set[i].key);

		if (!v || json_object_set(obj, set[i].key, v)) {
			rc = failf(RC_ERROR, "out of memory");
			goto out;
		}
	}
	*out = obj;
	obj = NULL;
	rc = RC_OK;
out:
	/* kept for the run: name and keep point into it, and the daemon's
	 * errors about its keys name its lines (rpc.c) */
	cli->config_file = file_doc;
	json_decref(obj);
	json_decref(cj);
	json_decref(defaults);
	return rc;
}

/* The bytes of the file at `path`, base64-encoded, for init_from. */
static int read_init_from(const char *path, char **out)
{
	struct tr_err err = { 0 };
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = RC_OK;

	*out = NULL;
	if (file_read_all(path, INIT_FROM_MAX, &buf, &len, &err) < 0)
		return failf(err.code == -ENOMEM ? RC_ERROR : RC_USAGE, "--init-from: %s", err.msg);
	if (len == 0)
		rc = failf(RC_USAGE, "--init-from: %s: the file is empty", path);
	else if (!(*out = base64_encode(buf, len)))
		rc = failf(RC_ERROR, "out of memory");
	free(buf);
	return rc;
}

int cmd_start(struct cli *cli)
{
	json_t *params, *config = NULL, *reply = NULL;
	const char *file_name = NULL, *file_keep = NULL, *keep_text, *name;
	char *init = NULL;
	int64_t keep = 0;
	long long id;
	int rc;

	rc = verbs_build_config(cli, &config, &file_name, &file_keep);
	if (rc != RC_OK)
		return rc;
	keep_text = cli->set[O_KEEP] ? cli->val[O_KEEP] : file_keep;
	if (keep_text && strcmp(keep_text, "all") != 0 && !parse_int(keep_text, 0, INT32_MAX, &keep)) {
		json_decref(config);
		return failf(RC_USAGE, "%s: expected a number of checkpoints >= 0 or 'all', got '%.*s'",
			     cli->set[O_KEEP] ? "--keep" : "keep", tr_utf8_cut(keep_text, TR_QUOTE_MAX), keep_text);
	}
	if (keep_text && strcmp(keep_text, "all") == 0)
		keep = -1;
	name = cli->set[O_NAME] ? cli->val[O_NAME] : file_name;
	params = json_object();
	if (!params || json_object_set_new(params, "config", config)) {
		json_decref(params);
		return failf(RC_ERROR, "out of memory");
	}
	if (name) {
		json_t *jname = json_string(name);

		if (!jname) {
			json_decref(params);
			return failf(RC_USAGE, "--name: not valid UTF-8 text");
		}
		json_object_set_new(params, "name", jname);
	}
	if (keep_text)
		json_object_set_new(params, "keep", json_integer((json_int_t)keep));
	if (cli->set[O_FROM] || cli->set[O_WEIGHTS_ONLY]) {
		int64_t from = 0, epoch = -1;
		char buf[64];
		char *at;

		if (!cli->set[O_FROM] || cli->set[O_INIT_FROM]) {
			json_decref(params);
			return failf(RC_USAGE, cli->set[O_FROM] ? "--from and --init-from cannot both be given"
								 : "--weights-only goes with --from JOB");
		}
		snprintf(buf, sizeof(buf), "%s", cli->val[O_FROM]);
		at = strchr(buf, '@');
		if (at)
			*at++ = '\0';
		if (strlen(cli->val[O_FROM]) >= sizeof(buf) || !parse_int(buf, 1, INT64_MAX, &from) ||
		    (at && !parse_int(at, 0, 100000, &epoch))) {
			json_decref(params);
			return failf(RC_USAGE, "--from: expected JOB or JOB@EPOCH (like 3 or 3@2), got '%.*s'",
				     tr_utf8_cut(cli->val[O_FROM], TR_QUOTE_MAX), cli->val[O_FROM]);
		}
		json_object_set_new(params, "from_job", json_integer((json_int_t)from));
		if (epoch >= 0)
			json_object_set_new(params, "from_epoch", json_integer((json_int_t)epoch));
		if (cli->set[O_WEIGHTS_ONLY])
			json_object_set_new(params, "weights_only", json_true());
	}
	if (cli->set[O_INIT_FROM]) {
		rc = read_init_from(cli->val[O_INIT_FROM], &init);
		if (rc != RC_OK) {
			json_decref(params);
			return rc;
		}
		if (json_object_set_new(params, "init_from", json_stringn_nocheck(init, strlen(init)))) {
			free(init);
			json_decref(params);
			return failf(RC_ERROR, "out of memory");
		}
		free(init);
	}
	rc = rpc(cli, "io.traind.Start", params, &reply);
	if (rc != RC_OK)
		return rc;
	if (!pint(reply, "id", &id)) {
		json_decref(reply);
		return malformed("Start", "id");
	}
	if (cli->json) {
		json_t *doc = json_pack("{s:I}", "id", (json_int_t)id);

		rc = doc ? render_json(stdout, doc) : failf(RC_ERROR, "out of memory");
		json_decref(doc);
	} else {
		printf("%lld\n", id);
	}
	json_decref(reply);
	return rc;
}

/* Pause, Resume, Kill: "job 3: paused". */
static int state_verb(struct cli *cli, const char *method, const char *short_name, json_t *params)
{
	json_t *reply = NULL;
	long long id = cli->job;
	const char *state;
	int rc;

	if (!params)
		return failf(RC_ERROR, "out of memory");
	rc = rpc(cli, method, params, &reply);
	if (rc != RC_OK)
		return rc;
	state = pstr(reply, "state");
	if (!state) {
		rc = malformed(short_name, "state");
	} else if (cli->json) {
		rc = render_json(stdout, reply);
	} else {
		char *s = clean_dup(state);

		pint(reply, "id", &id);
		printf("job %lld: %s\n", id, s ? s : "?");
		free(s);
	}
	json_decref(reply);
	return rc;
}

int cmd_pause(struct cli *cli)
{
	return state_verb(cli, "io.traind.Pause", "Pause", id_params(cli));
}

int cmd_resume(struct cli *cli)
{
	json_t *p;
	int64_t epochs = 0, ranks = 0;
	int rc;

	if (cli->set[O_EPOCHS]) {
		rc = opt_int(cli, O_EPOCHS, 1, 100000, &epochs);
		if (rc != RC_OK)
			return rc;
	}
	if (cli->set[O_RANKS]) {
		rc = opt_int(cli, O_RANKS, 1, CFG_MAX_RANKS, &ranks);
		if (rc != RC_OK)
			return rc;
	}
	p = id_params(cli);
	if (p && cli->set[O_WEIGHTS_ONLY])
		json_object_set_new(p, "weights_only", json_true());
	if (p && cli->set[O_ALLOW_DATA_CHANGE])
		json_object_set_new(p, "allow_data_change", json_true());
	if (p && epochs)
		json_object_set_new(p, "epochs", json_integer((json_int_t)epochs));
	if (p && ranks)
		json_object_set_new(p, "ranks", json_integer((json_int_t)ranks));
	return state_verb(cli, "io.traind.Resume", "Resume", p);
}

int cmd_kill(struct cli *cli)
{
	json_t *p;
	int64_t after = 0;
	int rc;

	if (cli->set[O_AFTER_EPOCH]) {
		rc = opt_int(cli, O_AFTER_EPOCH, 1, 100000, &after);
		if (rc != RC_OK)
			return rc;
	}
	p = id_params(cli);
	if (p && cli->set[O_AFTER_EPOCH])
		json_object_set_new(p, "after_epoch", json_integer((json_int_t)after));
	return state_verb(cli, "io.traind.Kill", "Kill", p);
}

/* rm JOB... [--force]: one Delete per JOB, in order, each answered on its
 * own line (removed on stdout, refused on stderr); exit 1 if any was
 * refused. --json: one array, an object per JOB answered: {"id", "removed":
 * true, "state"} (the state it was in) or {"id", "removed": false, "error"
 * (the varlink error's name), "message"}. */
int cmd_rm(struct cli *cli)
{
	json_t *doc = NULL;
	int rc, result = RC_OK;

	if (cli->json && !(doc = json_array()))
		return failf(RC_ERROR, "out of memory");
	rc = ensure_connected(cli);
	for (size_t i = 0; rc == RC_OK && i < cli->njobs; i++) {
		struct vl_reply r = { 0 };
		struct tr_err err = { 0 };
		long long id = cli->jobs[i];
		json_t *params = json_pack("{s:I}", "id", (json_int_t)id), *item = NULL;
		const char *state;
		char line[1024];

		if (params && cli->set[O_FORCE] && json_object_set_new(params, "force", json_true())) {
			json_decref(params);
			params = NULL;
		}
		if (!params) {
			rc = failf(RC_ERROR, "out of memory");
			break;
		}
		rc = vl_call(cli->conn, "io.traind.Delete", params, false, &err);
		json_decref(params);
		if (rc == 0)
			rc = vl_recv(cli->conn, &r, &err);
		if (rc < 0) {
			/* the connection is gone: the remaining jobs are not tried */
			rc = failf(RC_ERROR, "%s", err.msg);
			break;
		}
		state = r.error ? NULL : pstr(r.params, "state");
		if (r.error) {
			describe_error(&r, line, sizeof(line));
			failf(RC_ERROR, "%s", line);
			result = RC_ERROR;
			if (doc)
				item = json_pack("{s:I,s:b,s:s,s:s}", "id", (json_int_t)id, "removed", 0, "error",
						 r.error, "message", line);
		} else if (!state) {
			rc = malformed("Delete", "state");
		} else if (doc) {
			item = json_pack("{s:I,s:b,s:s}", "id", (json_int_t)id, "removed", 1, "state", state);
		} else {
			char *st = clean_dup(state);

			printf("job %lld: removed (was %s)\n", id, st ? st : "?");
			free(st);
		}
		if (rc == RC_OK && doc && (!item || json_array_append_new(doc, item)))
			rc = failf(RC_ERROR, "out of memory");
		vl_reply_clear(&r);
	}
	if (doc && json_array_size(doc) > 0) {
		int prc = render_json(stdout, doc);

		if (rc == RC_OK)
			rc = prc;
	}
	json_decref(doc);
	return rc != RC_OK ? rc : result;
}
