/*
 * verbs-jobs.c - the verbs that change jobs: start, pause, resume, kill, rm.
 *
 * start checks its configuration flags with the engine's own
 * config_set/config_validate (the code the daemon runs), so a bad flag never
 * reaches the daemon and its message names the flag; it sends only the keys
 * given. `start --init-from` reads the model here and sends its bytes (the
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
#include "verbs.h"

#define INIT_FROM_MAX ((size_t)(VL_MAX_MESSAGE - 65536) / 4 * 3)  /* fits a call in base64 */

/* A config_set/config_validate error about key K ("K: what") as
 * "--flag: what", the flag found from the key the error names (err->key). */
static int config_error(const struct tr_err *err)
{
	for (int o = CONFIG_FIRST; o <= CONFIG_LAST; o++) {
		size_t kl = strlen(opts[o].key);

		if (strcmp(err->key, opts[o].key) != 0)
			continue;
		if (strncmp(err->msg, opts[o].key, kl) == 0 && err->msg[kl] == ':')
			return failf(RC_USAGE, "--%s:%s", opts[o].name, err->msg + kl + 1);
		return failf(RC_USAGE, "--%s: %s", opts[o].name, err->msg);
	}
	return failf(RC_USAGE, "%s", err->msg);
}

/* The "config" parameter of Start: only the keys given, JSON-typed, after
 * checking them as the daemon will. */
static int build_config(struct cli *cli, json_t **out)
{
	struct train_config cfg;
	struct tr_err err = { 0 };
	json_t *obj = json_object();

	*out = NULL;
	if (!obj)
		return failf(RC_ERROR, "out of memory");
	config_defaults(&cfg);
	for (int o = CONFIG_FIRST; o <= CONFIG_LAST; o++) {
		if (cli->set[o] && config_set(&cfg, opts[o].key, cli->val[o], &err) < 0) {
			json_decref(obj);
			return config_error(&err);
		}
	}
	/* With --from the rest comes from the other job: the daemon checks the whole. */
	if (!cli->set[O_FROM] && config_validate(&cfg, &err) < 0) {
		json_decref(obj);
		return config_error(&err);
	}
	for (int o = CONFIG_FIRST; o <= CONFIG_LAST; o++) {
		json_t *v = NULL;

		if (!cli->set[o])
			continue;
		switch ((enum opt)o) {
		case O_DATASET: v = json_string(cfg.dataset); break;
		case O_EPOCHS: v = json_integer(cfg.epochs); break;
		case O_BATCH_SIZE: v = json_integer(cfg.batch_size); break;
		case O_EVAL_BATCH_SIZE: v = json_integer(cfg.eval_batch_size); break;
		case O_LR: v = json_real(cfg.lr); break;
		case O_OPTIMIZER: v = json_string(config_optim_name(cfg.optimizer)); break;
		case O_MOMENTUM: v = json_real(cfg.momentum); break;
		case O_WEIGHT_DECAY: v = json_real(cfg.weight_decay); break;
		case O_SEED: v = json_integer((json_int_t)cfg.seed); break;
		case O_SPLIT_SEED: v = json_integer((json_int_t)cfg.split_seed); break;
		case O_VAL_SIZE: v = json_integer(cfg.val_size); break;
		case O_TRAIN_SIZE: v = json_integer(cfg.train_size); break;
		case O_THREADS: v = json_integer(cfg.threads); break;
		case O_MODEL: v = json_string(cfg.model); break;
		case O_FTZ: v = json_boolean(cfg.ftz); break;
		case O_STRICT_NUMERICS: v = json_boolean(cfg.strict_numerics); break;
		case O_LR_SCHEDULER: v = json_string(cfg.lr_scheduler); break;
		case O_MONITOR: v = json_string(monitor_name(cfg.monitor)); break;
		case O_EARLY_STOP_PATIENCE: v = json_integer(cfg.early_stop_patience); break;
		case O_EARLY_STOP_MIN_DELTA: v = json_real(cfg.early_stop_min_delta); break;
		case O_CLIP_GRAD_NORM: v = json_real(cfg.clip_grad_norm); break;
		case O_RNG: v = json_string(config_rng_name(cfg.rng)); break;
		case O_SHARDS: v = json_integer(cfg.shards); break;
		case O_RANKS: v = json_integer(cfg.ranks); break;
		case O_HOSTS: v = json_string(cfg.hosts); break;
		case O_MAX_RESTARTS: v = json_integer(cfg.max_restarts); break;
		case O_LOSS: v = json_string(loss_name(cfg.loss)); break;
		case O_LABEL_SMOOTHING: v = json_real(cfg.label_smoothing); break;
		case O_HUBER_DELTA: v = json_real(cfg.huber_delta); break;
		case O_AUGMENT: v = json_string(cfg.augment); break;
		case O_CLASS_WEIGHTS:
		case O_POS_WEIGHT: {
			const float *w = o == O_CLASS_WEIGHTS ? cfg.class_weights : cfg.pos_weight;
			uint32_t n = o == O_CLASS_WEIGHTS ? cfg.n_class_weights : cfg.n_pos_weight;

			v = json_array();
			for (uint32_t i = 0; v && i < n; i++)
				if (json_array_append_new(v, json_real((double)w[i]))) {
					json_decref(v);
					v = NULL;
				}
			break;
		}
		case O_HIDDEN:
			v = json_array();
			for (uint32_t i = 0; v && i < cfg.n_hidden; i++)
				if (json_array_append_new(v, json_integer(cfg.hidden[i]))) {
					json_decref(v);
					v = NULL;
				}
			break;
		default:
			break;
		}
		if (json_object_set_new(obj, opts[o].key, v)) {
			json_decref(obj);
			return failf(RC_ERROR, "out of memory");
		}
	}
	*out = obj;
	return RC_OK;
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
	char *init = NULL;
	int64_t keep = 0;
	long long id;
	int rc;

	if (cli->set[O_KEEP] && strcmp(cli->val[O_KEEP], "all") != 0 &&
	    !parse_int(cli->val[O_KEEP], 0, INT32_MAX, &keep))
		return failf(RC_USAGE, "--keep: expected a number of checkpoints >= 0 or 'all', got '%.*s'",
			     tr_utf8_cut(cli->val[O_KEEP], TR_QUOTE_MAX), cli->val[O_KEEP]);
	if (cli->set[O_KEEP] && strcmp(cli->val[O_KEEP], "all") == 0)
		keep = -1;
	rc = build_config(cli, &config);
	if (rc != RC_OK)
		return rc;
	params = json_object();
	if (!params || json_object_set_new(params, "config", config)) {
		json_decref(params);
		return failf(RC_ERROR, "out of memory");
	}
	if (cli->set[O_NAME]) {
		json_t *name = json_string(cli->val[O_NAME]);

		if (!name) {
			json_decref(params);
			return failf(RC_USAGE, "--name: not valid UTF-8 text");
		}
		json_object_set_new(params, "name", name);
	}
	if (cli->set[O_KEEP])
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
