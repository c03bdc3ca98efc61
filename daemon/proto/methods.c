/*
 * methods.c - io.traind.* and org.varlink.service.* methods. See
 * daemon/proto/methods.h.
 */
#include "daemon/proto/methods.h"

#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "traind-config.h"
#include "traind/base64.h"
#include "traind/checkpoint.h"
#include "traind/generate.h"
#include "daemon/core/counters.h"
#include "daemon/data/dsimport.h"
#include "daemon/core/log.h"
#include "daemon/data/predict.h"
#include "traind/sha256.h"
#include "daemon/proto/waiters.h"
#include "daemon/proto/wire.h"

extern const char traind_interface_description[];
extern const char varlink_service_description[];

/* ---- parameter helpers ------------------------------------------------ */

/* Only the listed keys may appear. Returns false after replying. */
static bool only_keys(struct call *c, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(call_params(c), key, v) {
		bool ok = false;

		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				ok = true;
		if (!ok) {
			char name[TR_QUOTE_MAX + 1];
			int n = tr_utf8_cut(key, TR_QUOTE_MAX);

			snprintf(name, sizeof(name), "%.*s", n, key);
			call_invalid_parameter(c, name, "unknown parameter '%s' for %s", name, call_method(c));
			return false;
		}
	}
	return true;
}

/* An optional integer parameter in [min, max]. Returns false after replying. */
static bool get_int(struct call *c, const char *key, bool required, int64_t min, int64_t max,
		    int64_t *out)
{
	json_t *v = json_object_get(call_params(c), key);

	if (!v || json_is_null(v)) {
		if (required) {
			call_invalid_parameter(c, key, "missing parameter '%s'", key);
			return false;
		}
		return true;
	}
	if (!json_is_integer(v)) {
		call_invalid_parameter(c, key, "'%s' must be an integer", key);
		return false;
	}
	if (json_integer_value(v) < min || json_integer_value(v) > max) {
		call_invalid_parameter(c, key, "'%s' is %" JSON_INTEGER_FORMAT ", out of range [%" PRId64
				       ", %" PRId64 "]", key, json_integer_value(v), min, max);
		return false;
	}
	*out = json_integer_value(v);
	return true;
}

static bool get_bool(struct call *c, const char *key, bool *out)
{
	json_t *v = json_object_get(call_params(c), key);

	if (!v || json_is_null(v))
		return true;
	if (!json_is_boolean(v)) {
		call_invalid_parameter(c, key, "'%s' must be true or false", key);
		return false;
	}
	*out = json_is_true(v);
	return true;
}

/* The job named by "id", or NULL after replying. */
static struct job *get_job(struct daemon *d, struct call *c)
{
	int64_t id = 0;
	struct job *j;

	if (!get_int(c, "id", true, 1, INT64_MAX, &id))
		return NULL;
	j = jobs_find(d, id);
	if (!j)
		call_error(c, PROTO_NO_SUCH_JOB, json_pack("{s:I}", "id", (json_int_t)id));
	return j;
}

/* ---- background work (libuv thread pool) ------------------------------ */

struct bg {
	uv_work_t req;
	struct daemon *d;
	struct call *c;
	bool gone;                 /* the client went away */
	int64_t id;
	int64_t epoch;             /* -1: newest */
	bool best;                 /* Eval/Export best: the best epoch checkpoint instead */
	bool pytorch;              /* Export: also the model's PyTorch code */
	enum eval_split split;
	bool per_class;            /* Eval: add the per-class counts */
	/* Start */
	json_t *config_in;         /* config, as sent (a reference taken on the loop) */
	json_t *init_b64;          /* init_from, as sent (a reference taken on the loop) */
	int64_t from_job;          /* from_job (then id/epoch name its checkpoint), 0: none */
	bool weights_only;         /* with from_job: the model alone */
	uint32_t resume_epochs;    /* Resume epochs: the epochs in all (0: as configured) */
	uint32_t resume_ranks;     /* Resume ranks (0: as configured) */
	struct train_config cfg;
	struct job_spec spec;      /* the job the check made, for jobs_start_job */
	char param[80];            /* InvalidParameter "config.KEY" */
	/* Resume, Eval: the dataset's digest (Resume: weights_only above too) */
	bool allow_data_change;
	char recorded[DSCACHE_DIGEST_MAX];   /* the job's ("": none recorded) */
	char current[DSCACHE_DIGEST_MAX];    /* the files' now ("": unknown) */
	/* DatasetImport, DatasetRemove (name in cfg.dataset) */
	int fds[DSIMPORT_MAX_FILES];       /* the passed files, owned (closed by bg_after) */
	size_t nfds;
	char fnames[DSIMPORT_MAX_FILES][DSIMPORT_NAME_MAX + 1];
	size_t nfiles;                     /* how many files the import had */
	bool replace;
	enum ds_vocab vocab;               /* import as a text with this vocabulary (none: not a text) */
	char tmp[PATH_MAX];                /* the copy, to commit or discard */
	uint64_t bytes;
	/* Generate */
	char *prompt;                      /* owned */
	size_t prompt_len;
	struct gen_opts gen;
	/* Predict */
	int64_t top;
	char file[DSIMPORT_NAME_MAX + 1];   /* ImageError, ImageSizeMismatch: which */
	char size[32], expected[32];
	/* results */
	int rc;
	struct tr_err err;
	enum proto_error error;    /* protocol error on failure */
	const char *bad_param;     /* PROTO_INVALID_PARAMETER: which one */
	json_t *result;            /* reply parameters on success */
};

static void bg_cancel(void *arg)
{
	struct bg *b = arg;

	b->gone = true;
	b->c = NULL;
}

/* The parameters of the error reply for a failed background call. */
static json_t *bg_error_params(struct bg *b)
{
	switch (b->error) {
	case PROTO_NO_SUCH_CHECKPOINT:
		return b->epoch >= 0 ? json_pack("{s:I,s:I}", "id", (json_int_t)b->id, "epoch",
						 (json_int_t)b->epoch)
				     : json_pack("{s:I}", "id", (json_int_t)b->id);
	case PROTO_DATASET_ERROR:
		return json_pack("{s:s,s:s}", "dataset", b->cfg.dataset, "message", b->err.msg);
	case PROTO_INVALID_PARAMETER:
		return json_pack("{s:s,s:s}", "parameter", b->bad_param ? b->bad_param : "config",
				 "message", b->err.msg);
	case PROTO_CHECKPOINT_ERROR:
		return json_pack("{s:I,s:s}", "id", (json_int_t)b->id, "message", b->err.msg);
	case PROTO_IMAGE_ERROR:
		return json_pack("{s:s,s:s}", "file", b->file, "message", b->err.msg);
	case PROTO_IMAGE_SIZE_MISMATCH:
		return json_pack("{s:s,s:s,s:s,s:s}", "file", b->file, "size", b->size, "expected", b->expected,
				 "message", b->err.msg);
	case PROTO_NO_SUCH_DATASET:
	case PROTO_DATASET_EXISTS:
	case PROTO_DATASET_IN_USE:
		return json_pack("{s:s,s:s}", "dataset", b->cfg.dataset, "message", b->err.msg);
	case PROTO_DATASET_TOO_BIG:
		return json_pack("{s:s,s:I,s:I,s:s}", "dataset", b->cfg.dataset, "size", (json_int_t)b->bytes,
				 "limit", (json_int_t)b->d->max_dataset_bytes, "message", b->err.msg);
	case PROTO_DATASET_CHANGED:
		return json_pack("{s:s,s:I,s:s,s:s,s:s}", "dataset", b->cfg.dataset, "id", (json_int_t)b->id,
				 "recorded", b->recorded, "current", b->current, "message", b->err.msg);
	default:
		return json_pack("{s:s}", "message", b->err.msg);
	}
}

static void bg_after(uv_work_t *req, int status)
{
	struct bg *b = req->data;

	(void)status;
	if (b->c) {
		call_on_cancel(b->c, NULL, NULL);
		if (b->rc < 0) {
			call_error(b->c, b->error, bg_error_params(b));
		} else {
			call_reply(b->c, b->result, false);
			b->result = NULL;
		}
	}
	json_decref(b->result);
	json_decref(b->config_in);
	json_decref(b->init_b64);
	job_spec_clear(b->d, &b->spec);
	for (size_t i = 0; i < b->nfds; i++)
		close(b->fds[i]);
	free(b->prompt);
	free(b);
}

static void bg_after_start(uv_work_t *req, int status)
{
	struct bg *b = req->data;

	(void)status;
	if (b->rc == 0 && b->c && b->d->shutting_down) {
		b->rc = -ESHUTDOWN;
		b->error = PROTO_SHUTTING_DOWN;
		tr_err_set(&b->err, -ESHUTDOWN, "traind is shutting down");
	} else if (b->rc == 0 && b->c) {
		call_on_cancel(b->c, NULL, NULL);
		jobs_start_job(b->d, b->c, &b->spec);   /* takes what spec owns */
		b->c = NULL;
	}
	bg_after(req, status);
}

static struct bg *bg_new(struct daemon *d, struct call *c)
{
	struct bg *b = calloc(1, sizeof(*b));

	if (!b) {
		call_error(c, PROTO_STORAGE_ERROR, json_pack("{s:s}", "message", "out of memory"));
		return NULL;
	}
	b->d = d;
	b->c = c;
	b->epoch = -1;
	b->error = PROTO_STORAGE_ERROR;
	b->req.data = b;
	return b;
}

static void bg_queue(struct bg *b, uv_work_cb work, uv_after_work_cb after)
{
	call_on_cancel(b->c, bg_cancel, b);
	if (uv_queue_work(b->d->loop, &b->req, work, after) < 0) {
		call_on_cancel(b->c, NULL, NULL);
		call_error(b->c, PROTO_STORAGE_ERROR, json_pack("{s:s}", "message", "cannot queue work"));
		json_decref(b->config_in);
		json_decref(b->init_b64);
		for (size_t i = 0; i < b->nfds; i++)
			close(b->fds[i]);
		free(b->prompt);
		free(b);
	}
}

static int bg_fail(struct bg *b, enum proto_error e, int rc)
{
	b->rc = rc < 0 ? rc : -EIO;
	b->error = e;
	return b->rc;
}

/* A stored checkpoint blob: the given epoch's, else the newest epoch
 * checkpoint, else (a job that has finished no epoch) the newest of any kind. */
static int bg_checkpoint(struct bg *b, struct store *s, struct store_checkpoint *ck)
{
	int64_t epoch = b->epoch;
	int rc;

	if (b->best) {
		rc = store_best_checkpoint(s, b->id, ck, &b->err);
		if (rc == -ENOENT) {
			tr_err_set(&b->err, rc, "job %" PRId64 " has no best checkpoint yet (no epoch with a finite monitored value)",
				   b->id);
			return bg_fail(b, PROTO_NO_SUCH_CHECKPOINT, rc);
		}
		return rc < 0 ? bg_fail(b, PROTO_STORAGE_ERROR, rc) : 0;
	}
	if (epoch < 0) {
		struct store_checkpoint *list = NULL;
		size_t n = 0;

		rc = store_checkpoint_list(s, b->id, &list, &n, &b->err);
		if (rc < 0)
			return bg_fail(b, PROTO_STORAGE_ERROR, rc);
		for (size_t i = 0; i < n; i++) {
			if (list[i].is_epoch && (int64_t)list[i].epoch > epoch)
				epoch = list[i].epoch;
			store_checkpoint_clear(&list[i]);
		}
		free(list);
	}
	rc = epoch >= 0 ? store_epoch_checkpoint(s, b->id, (uint32_t)epoch, ck, &b->err)
			: store_latest_checkpoint(s, b->id, ck, &b->err);

	if (rc == -ENOENT)
		return bg_fail(b, PROTO_NO_SUCH_CHECKPOINT, rc);
	if (rc < 0)
		return bg_fail(b, PROTO_STORAGE_ERROR, rc);
	return 0;
}

/* The digest of the dataset `name` now (dscache_digest), with a read
 * connection of its own. */
static int bg_digest(struct bg *b, const char *name, char out[DSCACHE_DIGEST_MAX])
{
	struct store *rs = NULL;
	int rc;

	/* Without a connection (the database is gone, say) the files are
	 * hashed in full: the store's own error comes with the next write. */
	if (store_open(&rs, b->d->db_path, true, NULL) < 0)
		rs = NULL;
	rc = dscache_digest(b->d->dsc, name, rs, b->d->sq, out, NULL, &b->err);
	store_close(rs);
	return rc;
}

/* The parameter a config error names: "config.KEY" from config.c's
 * "KEY: ..." messages, else "config". */
/* The configuration key the configuration module named, as data (err.key). */
static const char *config_param(struct bg *b)
{
	snprintf(b->param, sizeof(b->param), "config%s%.*s", b->err.key[0] ? "." : "",
		 (int)sizeof(b->param) - 8, b->err.key);
	return b->param;
}

/* With the full state of another job, only the settings that do not change
 * what the state means may differ: the first one that does, or NULL. */
static const char *frozen_key_changed(const struct train_config *a, const struct train_config *b)
{
	if (strcmp(a->dataset, b->dataset) != 0)
		return "dataset";
	if (a->batch_size != b->batch_size)
		return "batch_size";
	if (a->optimizer != b->optimizer)
		return "optimizer";
	if (a->n_hidden != b->n_hidden || memcmp(a->hidden, b->hidden, a->n_hidden * sizeof(a->hidden[0])))
		return "hidden";
	if (strcmp(a->model, b->model) != 0)
		return "model";
	if (a->seed != b->seed)
		return "seed";
	if (a->split_seed != b->split_seed)
		return "split_seed";
	if (a->val_size != b->val_size)
		return "val_size";
	if (a->train_size != b->train_size)
		return "train_size";
	if (a->rng != b->rng)
		return "rng";
	if (a->loss != b->loss)
		return "loss";
	return NULL;
}

/* Start with from_job: the job's checkpoint (b->id, b->epoch) with the
 * settings of config changed, as the new job's first checkpoint (its full
 * state at the checkpoint's position with the history before it, or with
 * weights_only its model in a fresh job at epoch 0). */
static void work_start_from(struct bg *b)
{
	struct job_spec *sp = &b->spec;
	struct store *s = NULL;
	struct store_checkpoint ck;
	struct checkpoint_info info;
	struct trainer *t = NULL;
	uint8_t *model = NULL;
	size_t len = 0;
	const char *frozen;
	int rc;

	memset(&ck, 0, sizeof(ck));
	rc = store_open(&s, b->d->db_path, true, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_STORAGE_ERROR, rc);
		goto out;
	}
	if (bg_checkpoint(b, s, &ck) < 0)
		goto out;
	rc = checkpoint_inspect(ck.blob, (size_t)ck.size, &info, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_CHECKPOINT_ERROR, rc);
		goto out;
	}
	sp->cfg = info.cfg;
	rc = b->config_in ? config_apply_json(&sp->cfg, b->config_in, &b->err) : 0;
	if (rc < 0) {
		b->bad_param = config_param(b);
		bg_fail(b, PROTO_INVALID_PARAMETER, rc);
		goto out;
	}
	if (!b->weights_only && (frozen = frozen_key_changed(&sp->cfg, &info.cfg))) {
		tr_err_set_key(&b->err, -EINVAL, frozen,
			       "cannot change when starting from job %" PRId64 "'s full state (its optimizer state and data order depend on it); add weights_only to keep only its model",
			       b->id);
		b->bad_param = config_param(b);
		bg_fail(b, PROTO_INVALID_PARAMETER, -EINVAL);
		goto out;
	}
	b->cfg = sp->cfg;   /* DatasetError names it */
	if (!sp->name[0])
		snprintf(sp->name, sizeof(sp->name), "%.40s-%s", sp->cfg.dataset,
			 config_optim_name(sp->cfg.optimizer));
	rc = bg_digest(b, sp->cfg.dataset, sp->dataset_digest);
	if (rc == 0)
		rc = dscache_get(b->d->dsc, sp->cfg.dataset, sp->dataset_digest, &sp->ds, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_DATASET_ERROR, rc);
		goto out;
	}
	if (b->weights_only) {
		rc = trainer_new(&t, &sp->cfg, sp->ds, &b->err);
		if (rc < 0) {
			b->bad_param = config_param(b);
			bg_fail(b, rc == -EINVAL ? PROTO_INVALID_PARAMETER : PROTO_STORAGE_ERROR, rc);
			goto out;
		}
		rc = checkpoint_export_from_blob(ck.blob, (size_t)ck.size, &model, &len, &b->err);
		if (rc == 0)
			rc = checkpoint_load_model(t, model, len, &b->err);
		if (rc < 0) {
			tr_err_prefix(&b->err, "job %" PRId64 "'s model does not fit the new job's", b->id);
			b->bad_param = "from_job";
			bg_fail(b, rc == -EINVAL ? PROTO_INVALID_PARAMETER : PROTO_STORAGE_ERROR, rc);
			goto out;
		}
	} else {
		rc = checkpoint_restore(&t, ck.blob, (size_t)ck.size, sp->ds, false, &b->err);
		if (rc < 0) {
			bg_fail(b, PROTO_CHECKPOINT_ERROR, rc);
			goto out;
		}
		rc = trainer_set_epochs(t, sp->cfg.epochs, &b->err);
		if (rc < 0) {
			b->bad_param = config_param(b);
			bg_fail(b, rc == -EINVAL ? PROTO_INVALID_PARAMETER : PROTO_STORAGE_ERROR, rc);
			goto out;
		}
		rc = trainer_set_lr(t, sp->cfg.lr, &b->err);
		if (rc < 0) {
			b->bad_param = config_param(b);
			bg_fail(b, PROTO_INVALID_PARAMETER, rc);
			goto out;
		}
		t->cfg = sp->cfg;   /* what may change: lr, betas, threads...; the next run builds on it */
	}
	if (ck.step)
		snprintf(sp->origin, sizeof(sp->origin), "job %" PRId64 " epoch %u step %u%s", b->id,
			 ck.epoch, ck.step, b->weights_only ? " (weights only)" : "");
	else
		snprintf(sp->origin, sizeof(sp->origin), "job %" PRId64 " epoch %u%s", b->id, ck.epoch,
			 b->weights_only ? " (weights only)" : "");
	snprintf(t->note, sizeof(t->note), "started from %s", sp->origin);
	sp->has_origin = true;
	sp->origin_epoch = t->epoch;
	sp->origin_step = t->step;
	sp->origin_is_epoch = t->step == 0 && t->epoch > 0;
	if (t->nhistory != t->epoch) {
		rc = tr_err_set(&b->err, -EINVAL, "the checkpoint's history has %u rows at epoch %u",
				t->nhistory, t->epoch);
		bg_fail(b, PROTO_CHECKPOINT_ERROR, rc);
		goto out;
	}
	if (t->nhistory) {
		sp->origin_rows = malloc(t->nhistory * sizeof(*sp->origin_rows));
		if (!sp->origin_rows) {
			tr_err_set(&b->err, -ENOMEM, "out of memory");
			bg_fail(b, PROTO_STORAGE_ERROR, -ENOMEM);
			goto out;
		}
		memcpy(sp->origin_rows, t->history, t->nhistory * sizeof(*sp->origin_rows));
		sp->origin_val_loss = t->history[t->nhistory - 1].val_loss;
		sp->origin_val_acc = t->history[t->nhistory - 1].val_acc;
	}
	sp->steps_per_epoch = t->steps_per_epoch;
	sp->params = t->model.nparams;
	rc = checkpoint_serialize(t, &sp->init_ckpt, &sp->init_len, &b->err);
	if (rc == 0)
		rc = checkpoint_seal(sp->init_ckpt, sp->init_len, sp->init_checksum, &b->err);
	if (rc < 0)
		bg_fail(b, PROTO_STORAGE_ERROR, rc);
out:
	trainer_free(t);
	free(model);
	store_checkpoint_clear(&ck);
	store_close(s);
}

/* The one check of a new job, off the loop: the configuration (parsed and
 * checked against the dataset), the dataset (loaded here, and kept for the
 * job's first run), the starting model (decoded and parsed once: a model of
 * many MiB would hold up every other client on the loop). */
static void work_start_check(uv_work_t *req)
{
	struct bg *b = req->data;
	struct job_spec *sp = &b->spec;
	int rc;

	if (b->from_job) {
		work_start_from(b);
		return;
	}
	rc = b->config_in ? config_from_json(&sp->cfg, b->config_in, &b->err) : 0;
	if (!b->config_in)
		config_defaults(&sp->cfg);
	if (rc < 0) {
		b->bad_param = config_param(b);
		bg_fail(b, PROTO_INVALID_PARAMETER, rc);
		return;
	}
	b->cfg = sp->cfg;   /* DatasetError names it */
	if (!sp->name[0])
		snprintf(sp->name, sizeof(sp->name), "%.40s-%s", sp->cfg.dataset,
			 config_optim_name(sp->cfg.optimizer));
	/* The files' identity first, then the data: what the job records is
	 * what it trains on, unless the files change in between. */
	rc = bg_digest(b, sp->cfg.dataset, sp->dataset_digest);
	if (rc == 0)
		rc = dscache_get(b->d->dsc, sp->cfg.dataset, sp->dataset_digest, &sp->ds, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_DATASET_ERROR, rc);
		return;
	}
	/* val_size not given, on a training file too small for the lesson's
	 * 10000 (none left to train on, or less than a batch): a sixth of the
	 * file instead, MNIST's own ratio. It is recorded with the job like any
	 * setting; a job that would have trained with 10000 still does. */
	if (!json_object_get(b->config_in, "val_size") && sp->ds->text) {
		/* a text: a tenth of its windows (doc/sequences.md) */
		uint64_t w = dataset_windows(sp->ds->train.ntokens, sp->cfg.context);

		if (w >= 2)
			sp->cfg.val_size = w / 10 > 0 ? (uint32_t)(w / 10 < 1000000 ? w / 10 : 1000000) : 1;
	} else if (!json_object_get(b->config_in, "val_size")) {
		uint32_t count = sp->ds->train.count;

		if (sp->cfg.val_size >= count || count - sp->cfg.val_size < sp->cfg.batch_size)
			sp->cfg.val_size = count / 6 > 0 ? count / 6 : 1;
	}
	if (!b->init_b64) {
		rc = trainer_check_config(&sp->cfg, sp->ds, &b->err);
		if (rc < 0) {
			b->bad_param = config_param(b);
			bg_fail(b, rc == -EINVAL ? PROTO_INVALID_PARAMETER : PROTO_STORAGE_ERROR, rc);
		}
		sp->steps_per_epoch = jobs_steps_per_epoch(&sp->cfg, trainer_split_samples(&sp->cfg, sp->ds));
		sp->params = trainer_count_params(&sp->cfg, trainer_data_shape(&sp->cfg, sp->ds), dataset_outputs(sp->ds));
		return;
	}
	{
		/* The job's starting point becomes its first checkpoint (epoch 0,
		 * step 0), stored with the job, so a crash before it ever runs
		 * cannot lose the model it was asked to start from. */
		struct trainer *t = NULL;
		uint8_t *model = NULL;
		size_t len = 0;

		if (base64_decode(json_string_value(b->init_b64), json_string_length(b->init_b64), &model,
				  &len) < 0) {
			b->bad_param = "init_from";
			tr_err_set(&b->err, -EINVAL, "'init_from' is not valid base64");
			bg_fail(b, PROTO_INVALID_PARAMETER, -EINVAL);
			return;
		}
		rc = trainer_new(&t, &sp->cfg, sp->ds, &b->err);   /* checks cfg against the dataset */
		if (rc < 0) {
			b->bad_param = config_param(b);
			bg_fail(b, rc == -EINVAL ? PROTO_INVALID_PARAMETER : PROTO_STORAGE_ERROR, rc);
		} else {
			sp->steps_per_epoch = t->steps_per_epoch;
			sp->params = t->model.nparams;
			b->bad_param = "init_from";
			rc = checkpoint_load_model(t, model, len, &b->err);
			if (rc < 0)
				bg_fail(b, rc == -EINVAL ? PROTO_INVALID_PARAMETER : PROTO_STORAGE_ERROR, rc);
		}
		if (rc == 0) {
			b->bad_param = NULL;
			rc = checkpoint_serialize(t, &sp->init_ckpt, &sp->init_len, &b->err);
			if (rc == 0)
				rc = checkpoint_seal(sp->init_ckpt, sp->init_len, sp->init_checksum, &b->err);
			if (rc < 0)
				bg_fail(b, PROTO_STORAGE_ERROR, rc);
		}
		trainer_free(t);
		free(model);
	}
}

static void work_history(uv_work_t *req)
{
	struct bg *b = req->data;
	struct store *s = NULL;
	struct history_row *rows = NULL;
	size_t n = 0;
	json_t *a;

	if (store_open(&s, b->d->db_path, true, &b->err) < 0 ||
	    store_history(s, b->id, &rows, &n, &b->err) < 0) {
		bg_fail(b, PROTO_STORAGE_ERROR, -EIO);
		goto out;
	}
	a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, history_row_json(&rows[i]));
	b->result = json_pack("{s:o}", "rows", a);
out:
	free(rows);
	store_close(s);
}

static void work_steps(uv_work_t *req)
{
	struct bg *b = req->data;
	struct store *s = NULL;
	struct store_step *pts = NULL;
	size_t n = 0;

	if (store_open(&s, b->d->db_path, true, &b->err) < 0 ||
	    store_steps(s, b->id, &pts, &n, &b->err) < 0) {
		bg_fail(b, PROTO_STORAGE_ERROR, -EIO);
		goto out;
	}
	b->result = steps_json((uint32_t)b->epoch, pts, n);
out:
	free(pts);
	store_close(s);
}

static void work_checkpoints(uv_work_t *req)
{
	struct bg *b = req->data;
	struct store *s = NULL;
	struct store_checkpoint *cks = NULL;
	size_t n = 0;
	json_t *a;

	if (store_open(&s, b->d->db_path, true, &b->err) < 0 ||
	    store_checkpoint_list(s, b->id, &cks, &n, &b->err) < 0) {
		bg_fail(b, PROTO_STORAGE_ERROR, -EIO);
		goto out;
	}
	a = json_array();
	for (size_t i = 0; i < n; i++) {
		struct store_checkpoint *k = &cks[i];
		struct job_checkpoint jc;

		job_checkpoint_from_store(&jc, k);
		json_array_append_new(a, checkpoint_json(&jc));
		store_checkpoint_clear(k);
	}
	b->result = json_pack("{s:o}", "checkpoints", a);
out:
	free(cks);
	store_close(s);
}

static void work_eval(uv_work_t *req)
{
	struct bg *b = req->data;
	struct store *s = NULL;
	struct store_checkpoint ck;
	struct checkpoint_info info;
	const struct dataset *ds = NULL;
	struct trainer *t = NULL;
	struct metric_sums *sums = NULL;
	struct metrics m;
	int rc;

	memset(&ck, 0, sizeof(ck));
	rc = store_open(&s, b->d->db_path, true, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_STORAGE_ERROR, rc);
		goto out;
	}
	if (bg_checkpoint(b, s, &ck) < 0)
		goto out;
	if (b->per_class && !(sums = calloc(1, sizeof(*sums)))) {
		tr_err_set(&b->err, -ENOMEM, "out of memory");
		bg_fail(b, PROTO_STORAGE_ERROR, -ENOMEM);
		goto out;
	}
	rc = checkpoint_inspect(ck.blob, (size_t)ck.size, &info, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_CHECKPOINT_ERROR, rc);
		goto out;
	}
	snprintf(b->cfg.dataset, sizeof(b->cfg.dataset), "%s", info.cfg.dataset);
	rc = dscache_digest(b->d->dsc, info.cfg.dataset, s, b->d->sq, b->current, NULL, &b->err);
	if (rc == 0 && b->recorded[0] && strcmp(b->recorded, b->current) != 0 && !b->allow_data_change) {
		dscache_changed_message(b->err.msg, sizeof(b->err.msg), info.cfg.dataset, b->id, b->recorded,
					b->current, "eval");
		bg_fail(b, PROTO_DATASET_CHANGED, -ESTALE);
		goto out;
	}
	if (rc == 0)
		rc = dscache_get(b->d->dsc, info.cfg.dataset, b->current, &ds, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_DATASET_ERROR, rc);
		goto out;
	}
	rc = checkpoint_restore(&t, ck.blob, (size_t)ck.size, ds, false, &b->err);
	if (rc == 0)
		rc = trainer_evaluate_sums(t, b->split, &m, sums);
	if (rc < 0) {
		bg_fail(b, PROTO_CHECKPOINT_ERROR, rc);
		goto out;
	}
	/* acc and macro_acc: null where the task has none (regression;
	 * multi-label's macro); mae and rmse: a regression's */
	b->result = json_pack("{s:o,s:o,s:o,s:I,s:I,s:I,s:s,s:s}", "loss", real_or_null(m.loss), "acc",
			      real_or_null(m.acc), "macro_acc", real_or_null(m.macro_acc), "count",
			      (json_int_t)m.count, "epoch", (json_int_t)ck.epoch, "step", (json_int_t)ck.step,
			      "split", b->split == EVAL_TEST ? "test" : "val", "task",
			      loss_task_name(t->task));
	if (b->result && t->task == TASK_REGRESSION) {
		json_object_set_new(b->result, "mae", real_or_null(m.mae));
		json_object_set_new(b->result, "rmse", real_or_null(m.rmse));
	}
	if (b->result && t->task == TASK_TOKENS)   /* loss: the mean over every position */
		json_object_set_new(b->result, "ppl", real_or_null(m.ppl));
	if (sums && b->result && t->task == TASK_TOKENS) {
		json_object_set_new(b->result, "per_class", json_array());   /* none per token */
	} else if (sums && b->result) {
		/* One row per class of the dataset, named when it has names. */
		json_t *rows = json_array();

		for (uint32_t k = 0; rows && t->task != TASK_REGRESSION && k < t->model.classes; k++) {
			json_t *r = json_pack("{s:I,s:I,s:I,s:I}", "class", (json_int_t)k, "count",
					      (json_int_t)sums->total[k], "correct",
					      (json_int_t)sums->correct[k], "predicted",
					      (json_int_t)sums->predicted[k]);

			if (r && ds->class_names)
				json_object_set_new(r, "name", json_string(ds->class_names[k]));
			else if (r && ds->target_names)   /* multi-label: the label's name */
				json_object_set_new(r, "name", json_string(ds->target_names[k]));
			if (r && sums->total[k])
				json_object_set_new(r, "acc", json_real((double)sums->correct[k] /
									(double)sums->total[k]));
			json_array_append_new(rows, r);
		}
		json_object_set_new(b->result, "per_class", rows);
	}
out:
	free(sums);
	trainer_free(t);
	if (ds)
		dscache_put(b->d->dsc, ds);
	store_checkpoint_clear(&ck);
	store_close(s);
}

static void work_export(uv_work_t *req)
{
	struct bg *b = req->data;
	struct store *s = NULL;
	struct store_checkpoint ck;
	uint8_t *model = NULL;
	size_t len = 0;
	char hex[SHA256_HEX_LEN + 1];
	char *text = NULL, *code = NULL;
	size_t code_len = 0;
	int rc;

	memset(&ck, 0, sizeof(ck));
	rc = store_open(&s, b->d->db_path, true, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_STORAGE_ERROR, rc);
		goto out;
	}
	if (bg_checkpoint(b, s, &ck) < 0)
		goto out;
	rc = checkpoint_export_from_blob(ck.blob, (size_t)ck.size, &model, &len, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_CHECKPOINT_ERROR, rc);
		goto out;
	}
	sha256_hex(model, len, hex);
	text = base64_encode(model, len);
	if (!text) {
		tr_err_set(&b->err, -ENOMEM, "out of memory");
		bg_fail(b, PROTO_STORAGE_ERROR, -ENOMEM);
		goto out;
	}
	b->result = json_pack("{s:I,s:I,s:I,s:s,s:s}", "epoch", (json_int_t)ck.epoch, "step",
			      (json_int_t)ck.step, "size", (json_int_t)len, "sha256", hex, "data", text);
	if (b->result && b->pytorch) {
		rc = checkpoint_pytorch_from_blob(ck.blob, (size_t)ck.size, &code, &code_len, &b->err);
		if (rc < 0) {
			json_decref(b->result);
			b->result = NULL;
			bg_fail(b, PROTO_CHECKPOINT_ERROR, rc);
			goto out;
		}
		json_object_set_new(b->result, "pytorch", json_stringn(code, code_len));
	}
out:
	free(code);
	free(text);
	free(model);
	store_checkpoint_clear(&ck);
	store_close(s);
}

/* Text from a job's language model (generate.h): its checkpoint's model,
 * its dataset's vocabulary (checked as Eval checks the dataset). */
static void work_generate(uv_work_t *req)
{
	struct bg *b = req->data;
	struct store *s = NULL;
	struct store_checkpoint ck;
	struct checkpoint_info info;
	const struct dataset *ds = NULL;
	struct net net;
	uint32_t *prompt = NULL, *out = NULL, *all = NULL;
	size_t np = 0;
	char *text = NULL, *gen = NULL;
	int rc;

	memset(&ck, 0, sizeof(ck));
	memset(&net, 0, sizeof(net));
	rc = store_open(&s, b->d->db_path, true, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_STORAGE_ERROR, rc);
		goto out;
	}
	if (bg_checkpoint(b, s, &ck) < 0)
		goto out;
	rc = checkpoint_inspect(ck.blob, (size_t)ck.size, &info, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_CHECKPOINT_ERROR, rc);
		goto out;
	}
	snprintf(b->cfg.dataset, sizeof(b->cfg.dataset), "%s", info.cfg.dataset);
	rc = dscache_digest(b->d->dsc, info.cfg.dataset, s, b->d->sq, b->current, NULL, &b->err);
	if (rc == 0 && b->recorded[0] && strcmp(b->recorded, b->current) != 0 && !b->allow_data_change) {
		dscache_changed_message(b->err.msg, sizeof(b->err.msg), info.cfg.dataset, b->id, b->recorded,
					b->current, "generate");
		bg_fail(b, PROTO_DATASET_CHANGED, -ESTALE);
		goto out;
	}
	if (rc == 0)
		rc = dscache_get(b->d->dsc, info.cfg.dataset, b->current, &ds, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_DATASET_ERROR, rc);
		goto out;
	}
	if (!ds->text) {
		tr_err_set(&b->err, -EINVAL, "dataset %s is not a text: generate writes text in a text's vocabulary",
			   info.cfg.dataset);
		bg_fail(b, PROTO_DATASET_ERROR, -EINVAL);
		goto out;
	}
	rc = checkpoint_model_net(ck.blob, (size_t)ck.size, 1, &net, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_CHECKPOINT_ERROR, rc);
		goto out;
	}
	rc = generate_check(&net, &b->err);
	if (rc == 0 && net.input.vocab != ds->vocab)
		rc = tr_err_set(&b->err, -EINVAL, "the model takes %u tokens; dataset %s's vocabulary has %u now",
				net.input.vocab, info.cfg.dataset, ds->vocab);
	if (rc < 0) {
		tr_err_prefix(&b->err, "job %" PRId64 " cannot generate", b->id);
		b->bad_param = "id";
		bg_fail(b, PROTO_INVALID_PARAMETER, rc);
		goto out;
	}
	rc = dataset_text_encode(ds, b->prompt, b->prompt_len, &prompt, &np, &b->err);
	if (rc == 0 && np == 0)
		rc = tr_err_set(&b->err, -EINVAL, "prompt: give at least one character");
	if (rc < 0) {
		b->bad_param = "prompt";
		bg_fail(b, rc == -ENOMEM ? PROTO_STORAGE_ERROR : PROTO_INVALID_PARAMETER, rc);
		goto out;
	}
	out = malloc(b->gen.tokens * sizeof(*out));
	all = malloc((np + b->gen.tokens) * sizeof(*all));
	rc = out && all ? generate_tokens(&net, prompt, np, &b->gen, out, &b->err)
			: tr_err_set(&b->err, -ENOMEM, "out of memory");
	if (rc < 0) {
		bg_fail(b, PROTO_STORAGE_ERROR, rc);
		goto out;
	}
	memcpy(all, prompt, np * sizeof(*all));
	memcpy(all + np, out, b->gen.tokens * sizeof(*all));
	text = dataset_text_decode(ds, all, np + b->gen.tokens);
	gen = dataset_text_decode(ds, out, b->gen.tokens);
	if (!text || !gen) {
		tr_err_set(&b->err, -ENOMEM, "out of memory");
		bg_fail(b, PROTO_STORAGE_ERROR, -ENOMEM);
		goto out;
	}
	b->result = json_pack("{s:I,s:I,s:s,s:s,s:I,s:I}", "epoch", (json_int_t)ck.epoch, "step",
			      (json_int_t)ck.step, "text", text, "generated", gen, "tokens",
			      (json_int_t)b->gen.tokens, "seed", (json_int_t)b->gen.seed);
out:
	free(text);
	free(gen);
	free(prompt);
	free(out);
	free(all);
	net_deinit(&net);
	if (ds)
		dscache_put(b->d->dsc, ds);
	store_checkpoint_clear(&ck);
	store_close(s);
}

/* Every dataset directory: loaded (shared with the jobs through the
 * cache), its digest and size; one that does not load is listed with its
 * error. */
static void work_datasets(uv_work_t *req)
{
	struct bg *b = req->data;
	struct store *rs = NULL;
	char **names = NULL;
	size_t n = 0;
	json_t *a;
	int rc;

	rc = store_open(&rs, b->d->db_path, true, &b->err);
	if (rc == 0)
		rc = dscache_list(b->d->dsc, &names, &n, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_STORAGE_ERROR, rc);
		goto out;
	}
	a = json_array();
	for (size_t i = 0; i < n; i++) {
		char digest[DSCACHE_DIGEST_MAX];
		const struct dataset *ds = NULL;
		struct tr_err e = { 0 };
		uint64_t size = 0;
		bool has_digest;

		has_digest = dscache_digest(b->d->dsc, names[i], rs, b->d->sq, digest, &size, &e) == 0;
		if (has_digest)
			dscache_get(b->d->dsc, names[i], digest, &ds, &e);
		json_array_append_new(a, dataset_json(names[i], ds, has_digest ? digest : NULL, size, e.msg));
		dscache_put(b->d->dsc, ds);
		free(names[i]);
	}
	free(names);
	b->result = json_pack("{s:o}", "datasets", a);
out:
	store_close(rs);
}

/* The jobs that use each dataset, from the registry (the loop's). */
static void bg_after_datasets(uv_work_t *req, int status)
{
	struct bg *b = req->data;
	json_t *a = json_object_get(b->result, "datasets"), *o;
	size_t i;

	json_array_foreach(a, i, o) {
		const char *name = json_string_value(json_object_get(o, "name"));
		json_t *ids = json_object_get(o, "jobs");

		for (size_t k = 0; name && k < b->d->njobs; k++) {
			struct job *j = b->d->jobs[k];

			if (!j->removal && strcmp(j->cfg.dataset, name) == 0)
				json_array_append_new(ids, json_integer((json_int_t)j->id));
		}
	}
	bg_after(req, status);
}

/* ---- DatasetImport, DatasetRemove -------------------------------------- */

/* The jobs that use dataset `name` ("job 3, job 7"), live ones only (queued
 * or running) if live_only; false when none. */
static bool jobs_using(struct daemon *d, const char *name, bool live_only, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < d->njobs; i++) {
		struct job *j = d->jobs[i];
		bool live = j->target == JOB_QUEUED || j->target == JOB_RUNNING || j->worker_alive;

		if (j->removal || strcmp(j->cfg.dataset, name) != 0 || (live_only && !live))
			continue;
		if (o < len)
			o += (size_t)snprintf(buf + o, len - o, "%s%" PRId64 " (%s)", o ? ", " : "", j->id,
					      job_state_name(j->state));
	}
	return o > 0;
}

static void work_import_copy(uv_work_t *req)
{
	struct bg *b = req->data;
	const char *names[DSIMPORT_MAX_FILES];
	int rc;

	for (size_t i = 0; i < b->nfds; i++)
		names[i] = b->fnames[i];
	rc = dsimport_copy(dscache_dir(b->d->dsc), b->cfg.dataset, names, b->fds, b->nfds, b->replace,
			   b->vocab, b->d->max_dataset_bytes, b->tmp, &b->bytes, &b->err);
	if (rc == -EEXIST)
		bg_fail(b, PROTO_DATASET_EXISTS, rc);
	else if (rc == -EFBIG)
		bg_fail(b, PROTO_DATASET_TOO_BIG, rc);
	else if (rc == -EINVAL)
		bg_fail(b, PROTO_DATASET_ERROR, rc);
	else if (rc < 0)
		bg_fail(b, PROTO_STORAGE_ERROR, rc);
}

/* Into place, then listed as Datasets lists it; or (rc < 0 already: a
 * live job took the dataset meanwhile, or the client left) discarded. */
static void work_import_commit(uv_work_t *req)
{
	struct bg *b = req->data;
	char digest[DSCACHE_DIGEST_MAX];
	const struct dataset *ds = NULL;
	struct store *rs = NULL;
	struct tr_err e = { 0 };
	uint64_t size = 0;
	int rc;

	if (b->rc < 0 || !b->c) {
		dsimport_discard(b->tmp);
		return;
	}
	rc = dsimport_commit(dscache_dir(b->d->dsc), b->tmp, b->cfg.dataset, b->replace, &b->err);
	if (rc < 0) {
		dsimport_discard(b->tmp);
		bg_fail(b, rc == -EEXIST ? PROTO_DATASET_EXISTS : PROTO_STORAGE_ERROR, rc);
		return;
	}
	log_notice("dataset %s: %s (%" PRIu64 " bytes in %zu files)", b->cfg.dataset,
		   b->replace ? "imported, replacing any before" : "imported", b->bytes, b->nfiles);
	rc = store_open(&rs, b->d->db_path, true, &e) == 0 &&
	     dscache_digest(b->d->dsc, b->cfg.dataset, rs, b->d->sq, digest, &size, &e) == 0;
	store_close(rs);
	if (rc)
		dscache_get(b->d->dsc, b->cfg.dataset, digest, &ds, &e);
	b->result = json_pack("{s:o}", "dataset", dataset_json(b->cfg.dataset, ds, rc ? digest : NULL, size,
								 e.msg));
	dscache_put(b->d->dsc, ds);
}

static void bg_after_import_commit(uv_work_t *req, int status)
{
	struct bg *b = req->data;
	json_t *ids = json_object_get(json_object_get(b->result, "dataset"), "jobs");

	for (size_t k = 0; ids && k < b->d->njobs; k++) {
		struct job *j = b->d->jobs[k];

		if (!j->removal && strcmp(j->cfg.dataset, b->cfg.dataset) == 0)
			json_array_append_new(ids, json_integer((json_int_t)j->id));
	}
	bg_after(req, status);
}

/* Copied and valid: a replacement still may not go under a live job (one
 * may have started meanwhile); then the rename, off the loop again. */
static void bg_after_import_copy(uv_work_t *req, int status)
{
	struct bg *b = req->data;
	char who[512];

	(void)status;
	for (size_t i = 0; i < b->nfds; i++)
		close(b->fds[i]);
	b->nfds = 0;
	if (b->rc == 0 && b->replace && jobs_using(b->d, b->cfg.dataset, true, who, sizeof(who))) {
		tr_err_set(&b->err, -EBUSY, "dataset %s is used by job %s: it cannot be replaced while a "
			   "queued or running job uses it", b->cfg.dataset, who);
		bg_fail(b, PROTO_DATASET_IN_USE, -EBUSY);
	}
	if (!b->tmp[0]) {   /* nothing to commit or discard */
		bg_after(req, status);
		return;
	}
	if (uv_queue_work(b->d->loop, &b->req, work_import_commit, bg_after_import_commit) < 0) {
		dsimport_discard(b->tmp);   /* no thread pool: a rare stall beats a leak */
		if (b->rc == 0) {
			tr_err_set(&b->err, -ENOMEM, "cannot queue work");
			bg_fail(b, PROTO_STORAGE_ERROR, -ENOMEM);
		}
		bg_after(req, status);
	}
}

/* ---- calls that pass files (DatasetImport, Predict) ------------------- */

/* At least as many descriptors passed as files named; else InvalidParameter. */
static bool enough_fds(struct call *c, size_t nfiles, int nfd)
{
	if ((size_t)nfd >= nfiles)
		return true;
	call_invalid_parameter(c, "files", "%zu files named but %d file descriptors passed with the call "
			       "(send them with SCM_RIGHTS)", nfiles, nfd);
	return false;
}

/* The call's files: b owns the first json_array_size(files) descriptors
 * (closed by bg_after) and their names; the rest are closed now. */
static void bg_take_files(struct bg *b, json_t *files, const int *fds, int nfd)
{
	size_t nfiles = json_array_size(files), i;
	json_t *f;

	b->nfds = nfiles;
	memcpy(b->fds, fds, nfiles * sizeof(int));
	for (int k = (int)nfiles; k < nfd; k++)
		close(fds[k]);
	json_array_foreach(files, i, f)
		snprintf(b->fnames[i], sizeof(b->fnames[i]), "%s", json_string_value(json_object_get(f, "name")));
}

/* The descriptors passed with the call are taken first, all of them, so
 * that a refused call leaves none behind for the next one; `call` returns
 * true when it took them (bg_take_files). */
static void with_fds(struct daemon *d, struct call *c,
		     bool (*call)(struct daemon *d, struct call *c, int *fds, int nfd))
{
	int fds[SERVER_MAX_FDS];
	int nfd = call_take_fds(c, fds, SERVER_MAX_FDS);

	if (!call(d, c, fds, nfd))
		for (int k = 0; k < nfd; k++)
			close(fds[k]);
}

/* true: the call owns fds[0, nfd) now (via its bg) */
static bool m_dataset_import_call(struct daemon *d, struct call *c, int *fds, int nfd)
{
	static const char *const keys[] = { "name", "files", "replace", "vocab", NULL };
	json_t *p = call_params(c), *name = json_object_get(p, "name"), *files = json_object_get(p, "files");
	json_t *vocab = json_object_get(p, "vocab");
	const char *fnames[DSIMPORT_MAX_FILES];
	enum ds_vocab vk = DS_VOCAB_NONE;
	bool replace = false;
	char who[512];
	size_t nfiles, i;
	json_t *f;
	struct bg *b;

	if (!only_keys(c, keys) || !get_bool(c, "replace", &replace))
		return false;
	if (vocab && !json_is_null(vocab) && !json_is_string(vocab)) {
		call_invalid_parameter(c, "vocab", "'vocab' must be \"char\" or \"byte\"");
		return false;
	}
	if (!json_is_string(name) || !config_dataset_name_ok(json_string_value(name))) {
		call_invalid_parameter(c, "name", "'name' must be a dataset name (1-63 of A-Z a-z 0-9 . _ -, not "
				       "starting with '.')");
		return false;
	}
	nfiles = json_is_array(files) ? json_array_size(files) : 0;
	if (nfiles == 0 || nfiles > DSIMPORT_MAX_FILES) {
		call_invalid_parameter(c, "files", "'files' must be an array of 1 to %d files", DSIMPORT_MAX_FILES);
		return false;
	}
	json_array_foreach(files, i, f) {
		json_t *fn = json_object_get(f, "name"), *sz = json_object_get(f, "size");
		const char *n = json_is_string(fn) ? json_string_value(fn) : NULL;

		if (!json_is_object(f) || !n || (sz && !json_is_null(sz) && !json_is_integer(sz))) {
			call_invalid_parameter(c, "files", "files[%zu] must be {\"name\": string, \"size\": int}", i);
			return false;
		}
		if (!dsimport_file_name_ok(n) || strlen(n) != json_string_length(fn)) {
			call_invalid_parameter(c, "files", "files[%zu]: '%.*s' is not a safe file name (a base name "
					       "of 1 to %d bytes: no '/', not starting with '.', no control "
					       "characters)", i, tr_utf8_cut(n, TR_QUOTE_MAX), n, DSIMPORT_NAME_MAX);
			return false;
		}
		for (size_t k = 0; k < i; k++) {
			if (strcmp(json_string_value(json_object_get(json_array_get(files, k), "name")), n) == 0) {
				call_invalid_parameter(c, "files", "files[%zu]: '%.*s' is named twice", i,
						       tr_utf8_cut(n, TR_QUOTE_MAX), n);
				return false;
			}
		}
	}
	json_array_foreach(files, i, f)
		fnames[i] = json_string_value(json_object_get(f, "name"));
	if (dsimport_vocab(json_is_string(vocab) ? json_string_value(vocab) : NULL, fnames, nfiles, &vk) < 0) {
		call_invalid_parameter(c, "vocab", "'vocab' must be \"char\" (a token per character) or \"byte\" "
				       "(a token per byte)");
		return false;
	}
	if (!enough_fds(c, nfiles, nfd))
		return false;
	if (replace && jobs_using(d, json_string_value(name), true, who, sizeof(who))) {
		call_error(c, PROTO_DATASET_IN_USE,
			   json_pack("{s:s,s:s+++}", "dataset", json_string_value(name), "message",
				     "dataset ", json_string_value(name), " cannot be replaced while a queued or running "
				     "job uses it: job ", who));
		return false;
	}
	if (!(b = bg_new(d, c)))
		return false;
	snprintf(b->cfg.dataset, sizeof(b->cfg.dataset), "%s", json_string_value(name));
	b->replace = replace;
	b->vocab = vk;
	bg_take_files(b, files, fds, nfd);
	b->nfiles = nfiles;
	bg_queue(b, work_import_copy, bg_after_import_copy);   /* closes the fds, whatever happens */
	return true;
}

static void m_dataset_import(struct daemon *d, struct call *c)
{
	with_fds(d, c, m_dataset_import_call);
}

static void work_dataset_remove(uv_work_t *req)
{
	struct bg *b = req->data;
	int rc = dsimport_remove(dscache_dir(b->d->dsc), b->cfg.dataset, &b->err);

	if (rc == -ENOENT)
		bg_fail(b, PROTO_NO_SUCH_DATASET, rc);
	else if (rc < 0)
		bg_fail(b, PROTO_STORAGE_ERROR, rc);
	else {
		log_notice("dataset %s: removed", b->cfg.dataset);
		b->result = json_pack("{s:s}", "name", b->cfg.dataset);
	}
}

static void m_dataset_remove(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "name", NULL };
	json_t *name = json_object_get(call_params(c), "name");
	char who[512];
	struct bg *b;

	if (!only_keys(c, keys))
		return;
	if (!json_is_string(name) || !config_dataset_name_ok(json_string_value(name))) {
		call_invalid_parameter(c, "name", "'name' must be a dataset name (1-63 of A-Z a-z 0-9 . _ -, not "
				       "starting with '.')");
		return;
	}
	if (jobs_using(d, json_string_value(name), false, who, sizeof(who))) {
		call_error(c, PROTO_DATASET_IN_USE,
			   json_pack("{s:s,s:s++++}", "dataset", json_string_value(name), "message", "dataset ",
				     json_string_value(name), " is used by job ", who,
				     "; remove those jobs first (trainctl rm)"));
		return;
	}
	if (!(b = bg_new(d, c)))
		return;
	snprintf(b->cfg.dataset, sizeof(b->cfg.dataset), "%s", json_string_value(name));
	bg_queue(b, work_dataset_remove, bg_after);
}

/* ---- Predict ----------------------------------------------------------- */

/* All of the regular file fd, from offset 0, at most PREDICT_MAX_FILE bytes. */
static int read_fd(int fd, const char *name, uint8_t **out, size_t *len, struct tr_err *err)
{
	struct stat st;
	uint8_t *buf;
	size_t off = 0;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return tr_err_set(err, -EINVAL, "file %s: not a regular file", name);
	if ((uint64_t)st.st_size > PREDICT_MAX_FILE)
		return tr_err_set(err, -EINVAL, "file %s: %lld bytes, more than %u", name,
				  (long long)st.st_size, PREDICT_MAX_FILE);
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return tr_err_set(err, -ENOMEM, "out of memory");
	while (off < (size_t)st.st_size) {
		ssize_t got = pread(fd, buf + off, (size_t)st.st_size - off, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			free(buf);
			return tr_err_set(err, -EINVAL, "file %s: cannot read it: %s", name,
					  got < 0 ? strerror(errno) : "it shrank");
		}
		off += (size_t)got;
	}
	*out = buf;
	*len = off;
	return 0;
}

static void work_predict(uv_work_t *req)
{
	struct bg *b = req->data;
	struct store *s = NULL;
	struct store_checkpoint ck;
	struct net net;
	const struct dataset *ds = NULL;   /* the job's: class names, mean/std (a reference) */
	bool have_net = false;
	json_t *preds = NULL;
	uint64_t images = 0;
	enum loss_task task = loss_task_of(b->cfg.loss);
	struct augment aug;            /* the job's: its normalize applies */
	struct augment_data augd;
	struct predict_scaling sc;
	int rc;

	memset(&ck, 0, sizeof(ck));
	rc = store_open(&s, b->d->db_path, true, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_STORAGE_ERROR, rc);
		goto out;
	}
	if (bg_checkpoint(b, s, &ck) < 0)
		goto out;
	rc = checkpoint_model_net(ck.blob, (size_t)ck.size, 256, &net, &b->err);
	if (rc < 0) {
		bg_fail(b, PROTO_CHECKPOINT_ERROR, rc);
		goto out;
	}
	have_net = true;
	if (net.input.seq) {   /* token data (doc/sequences.md) */
		tr_err_set(&b->err, -EINVAL, "job %" PRId64 "'s model takes token ids, not images or rows%s",
			   b->id, net.input.vocab ? " (a language model's text: generate)" : "");
		b->bad_param = "id";
		bg_fail(b, PROTO_INVALID_PARAMETER, -EINVAL);
		goto out;
	}
	/* Its dataset's class names and normalisation: as its training saw them. */
	rc = dscache_get(b->d->dsc, b->cfg.dataset, NULL, &ds, &b->err);
	if (rc < 0) {
		tr_err_prefix(&b->err, "predict needs job %" PRId64 "'s dataset (its classes and "
			      "normalisation)", b->id);
		bg_fail(b, PROTO_DATASET_ERROR, rc);
		goto out;
	}
	if (augment_parse(&aug, b->cfg.augment, &b->err) < 0) {
		bg_fail(b, PROTO_CHECKPOINT_ERROR, -EINVAL);
		goto out;
	}
	augd = (struct augment_data){ ds->channels, ds->height, ds->width, ds->normalize ? ds->mean : NULL,
				      ds->normalize ? ds->std : NULL };
	sc = (struct predict_scaling){ .torch_scale = b->cfg.rng == RNG_TORCH,
				       .mean = ds->normalize ? ds->mean : NULL,
				       .std = ds->normalize ? ds->std : NULL,
				       .nhwc = ds->layout == DS_NHWC, .channels = ds->channels,
				       .hw = ds->height * ds->width, .aug = &aug, .augd = &augd };
	preds = json_array();
	for (size_t i = 0; i < b->nfds && rc == 0; i++) {
		struct predict_images im = { 0 };
		uint8_t *buf = NULL;
		double *probs = NULL;
		size_t len = 0, nl = strlen(b->fnames[i]);
		bool rows = nl > 4 && strcmp(b->fnames[i] + nl - 4, ".csv") == 0;

		snprintf(b->file, sizeof(b->file), "%s", b->fnames[i]);
		rc = read_fd(b->fds[i], b->fnames[i], &buf, &len, &b->err);
		if (rc == 0 && !rows && net.input.c != 1) {
			rc = tr_err_set(&b->err, -EINVAL, "file %s: the model takes %u channels; predict reads "
					"grey images (or its dataset's rows from a .csv file)", b->fnames[i],
					net.input.c);
		} else if (rc == 0 && rows) {
			rc = predict_decode_rows(buf, len, b->fnames[i], (uint32_t)net.in_size,
						 ds->dtype == DS_F32, &im, &b->err);
		} else if (rc == 0) {
			rc = predict_decode(buf, len, b->fnames[i], &im, &b->err);
		}
		free(buf);
		if (rc == 0 && (images += im.count) > PREDICT_MAX_IMAGES)
			rc = tr_err_set(&b->err, -EINVAL, "more than %u images in one call", PREDICT_MAX_IMAGES);
		if (rc < 0) {
			bg_fail(b, rc == -ENOMEM ? PROTO_STORAGE_ERROR : PROTO_IMAGE_ERROR, rc);
			predict_images_free(&im);
			break;
		}
		snprintf(b->size, sizeof(b->size), "%ux%u", im.w, im.h);
		snprintf(b->expected, sizeof(b->expected), "%ux%u", net.input.w, net.input.h);
		rc = rows ? 0 : predict_fit(&im, net.input.h, net.input.w, b->replace, b->fnames[i], &b->err);
		if (rc == 0)
			rc = predict_run(&net, &im, &sc, task, &probs, &b->err);
		if (rc < 0) {
			bg_fail(b, rc == -ERANGE ? PROTO_IMAGE_SIZE_MISMATCH
				   : rc == -ENOMEM ? PROTO_STORAGE_ERROR : PROTO_IMAGE_ERROR, rc);
			predict_images_free(&im);
			break;
		}
		for (uint32_t k = 0; k < im.count; k++) {
			const double *p = probs + (size_t)k * net.classes;
			bool used[DATASET_MAX_CLASSES] = { false };
			char num[16];
			json_t *top;
			int best = 0;

			if (task != TASK_CLASSIFICATION) {
				/* regression: the outputs; multi-label: each label's probability
				 * and the labels above 0.5 */
				json_t *vals = json_array(), *labels = json_array(), *o;

				for (uint32_t c = 0; c < net.classes; c++) {
					json_array_append_new(vals, json_real(p[c]));
					if (task == TASK_MULTILABEL && p[c] > 0.5)
						json_array_append_new(labels, json_integer(c));
				}
				o = json_pack("{s:s,s:I,s:o}", "file", b->fnames[i], "index", (json_int_t)k, "values", vals);
				if (o && task == TASK_MULTILABEL)
					json_object_set_new(o, "labels", labels);
				else
					json_decref(labels);
				json_array_append_new(preds, o);
				continue;
			}
			top = json_array();
			for (int64_t t = 0; t < b->top && t < (int64_t)net.classes; t++) {
				int m = -1;

				for (uint32_t c = 0; c < net.classes; c++)
					if (!used[c] && (m < 0 || p[c] > p[m]))
						m = (int)c;
				used[m] = true;
				if (t == 0)
					best = m;
				json_array_append_new(top, json_pack("{s:i,s:s,s:f}", "class", m, "name",
								     dataset_class_name(ds, (uint32_t)m, num),
								     "prob", p[m]));
			}
			json_array_append_new(preds, json_pack("{s:s,s:I,s:i,s:s,s:f,s:o}", "file", b->fnames[i],
							       "index", (json_int_t)k, "class", best, "name",
							       dataset_class_name(ds, (uint32_t)best, num),
							       "prob", p[best], "top", top));
		}
		free(probs);
		predict_images_free(&im);
	}
	if (rc == 0 && b->rc == 0) {
		b->result = json_pack("{s:I,s:I,s:O}", "epoch", (json_int_t)ck.epoch, "step",
				      (json_int_t)ck.step, "predictions", preds);
	}
out:
	json_decref(preds);
	if (ds)
		dscache_put(b->d->dsc, ds);
	if (have_net)
		net_deinit(&net);
	store_checkpoint_clear(&ck);
	store_close(s);
}

/* true: the call owns fds[0, nfd) now (via its bg) */
static bool m_predict_call(struct daemon *d, struct call *c, int *fds, int nfd)
{
	static const char *const keys[] = { "id", "epoch", "best", "files", "top", "resize", NULL };
	json_t *files = json_object_get(call_params(c), "files"), *f;
	int64_t epoch = -1, top = 3;
	bool resize = false, best = false;
	size_t nfiles, i;
	struct job *j;
	struct bg *b;

	if (!only_keys(c, keys) || !get_int(c, "epoch", false, 0, 100000, &epoch) ||
	    !get_int(c, "top", false, 1, DATASET_MAX_CLASSES, &top) || !get_bool(c, "resize", &resize) ||
	    !get_bool(c, "best", &best))
		return false;
	if (best && epoch >= 0) {
		call_invalid_parameter(c, "best", "give 'epoch' or 'best', not both");
		return false;
	}
	nfiles = json_is_array(files) ? json_array_size(files) : 0;
	if (nfiles == 0 || nfiles > DSIMPORT_MAX_FILES) {
		call_invalid_parameter(c, "files", "'files' must be an array of 1 to %d files", DSIMPORT_MAX_FILES);
		return false;
	}
	json_array_foreach(files, i, f) {
		json_t *fn = json_object_get(f, "name");
		const char *n = json_is_string(fn) ? json_string_value(fn) : NULL;

		if (!json_is_object(f) || !n || !dsimport_file_name_ok(n) || strlen(n) != json_string_length(fn)) {
			call_invalid_parameter(c, "files", "files[%zu] must be {\"name\": a base name of 1 to %d bytes "
					       "(no '/', not starting with '.', no control characters)}", i,
					       DSIMPORT_NAME_MAX);
			return false;
		}
	}
	if (!enough_fds(c, nfiles, nfd))
		return false;
	if (!(j = get_job(d, c)) || !(b = bg_new(d, c)))
		return false;
	b->id = j->id;
	b->epoch = epoch;
	b->top = top;
	b->replace = resize;
	b->best = best;
	b->cfg = j->cfg;   /* its pixels scale as the job's training did */
	bg_take_files(b, files, fds, nfd);
	bg_queue(b, work_predict, bg_after);   /* closes the fds, whatever happens */
	return true;
}

static void m_predict(struct daemon *d, struct call *c)
{
	with_fds(d, c, m_predict_call);
}

/* ---- methods ---------------------------------------------------------- */

static void m_start(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "name", "config", "keep", "init_from", "from_job",
					    "from_epoch", "weights_only", NULL };
	json_t *p = call_params(c), *name = json_object_get(p, "name");
	json_t *config = json_object_get(p, "config"), *init = json_object_get(p, "init_from");
	int64_t keep = 3, from_job = 0, from_epoch = -1;
	bool weights_only = false;
	struct bg *b;

	if (!only_keys(c, keys) || !get_int(c, "keep", false, -1, 1000000, &keep) ||
	    !get_int(c, "from_job", false, 1, INT64_MAX, &from_job) ||
	    !get_int(c, "from_epoch", false, 0, 100000, &from_epoch) ||
	    !get_bool(c, "weights_only", &weights_only))
		return;
	if (!from_job && (from_epoch >= 0 || weights_only)) {
		call_invalid_parameter(c, from_epoch >= 0 ? "from_epoch" : "weights_only",
				       "'%s' goes with from_job", from_epoch >= 0 ? "from_epoch" : "weights_only");
		return;
	}
	if (from_job && init && !json_is_null(init)) {
		call_invalid_parameter(c, "init_from", "'init_from' and 'from_job' cannot both be given");
		return;
	}
	if (from_job && !jobs_find(d, from_job)) {
		call_error(c, PROTO_NO_SUCH_JOB, json_pack("{s:I}", "id", (json_int_t)from_job));
		return;
	}
	if (name && !json_is_null(name)) {
		const char *n = json_is_string(name) ? json_string_value(name) : NULL;

		if (!n || !*n || strlen(n) >= STORE_NAME_MAX) {
			call_invalid_parameter(c, "name", "'name' must be a string of 1 to %d bytes", STORE_NAME_MAX - 1);
			return;
		}
		for (const char *q = n; *q; q++) {
			if ((unsigned char)*q < 0x20 || *q == 0x7f) {
				call_invalid_parameter(c, "name", "'name' must not contain control characters");
				return;
			}
		}
	}
	if (config && !json_is_null(config) && !json_is_object(config)) {
		call_invalid_parameter(c, "config", "'config' must be an object");
		return;
	}
	if (init && !json_is_null(init) && !json_is_string(init)) {
		call_invalid_parameter(c, "init_from", "'init_from' must be a base64 string");
		return;
	}
	b = bg_new(d, c);
	if (!b)
		return;
	/* Everything else is checked once, on the thread pool. */
	if (config && json_is_object(config))
		b->config_in = json_incref(config);
	if (init && json_is_string(init))
		b->init_b64 = json_incref(init);
	b->spec.keep = (int32_t)keep;
	b->from_job = from_job;
	b->weights_only = weights_only;
	if (from_job) {
		b->id = from_job;        /* the checkpoint bg_checkpoint finds */
		b->epoch = from_epoch;
	}
	if (name && json_is_string(name))
		snprintf(b->spec.name, sizeof(b->spec.name), "%s", json_string_value(name));
	bg_queue(b, work_start_check, bg_after_start);
}

static void m_pause(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", NULL };
	struct job *j;

	if (!only_keys(c, keys) || !(j = get_job(d, c)))
		return;
	jobs_pause(d, c, j);
}

/* A job Resume can continue (a done one only with epochs). */
static bool resumable(const struct job *j)
{
	return j->target == JOB_PAUSED || j->target == JOB_KILLED || j->target == JOB_FAILED ||
	       j->target == JOB_DONE;
}

/* Resume, once the dataset's digest is known: refused when the files are
 * not those the job started with (unless allowed: then the new digest is
 * the job's); a job without a digest records it. A dataset that cannot be
 * read is left to the run, which fails with its error. */
static void bg_after_resume(uv_work_t *req, int status)
{
	struct bg *b = req->data;
	struct job *j;

	(void)status;
	if (!b->c)
		goto out;
	call_on_cancel(b->c, NULL, NULL);
	j = jobs_find(b->d, b->id);
	if (!j) {
		call_error(b->c, PROTO_NO_SUCH_JOB, json_pack("{s:I}", "id", (json_int_t)b->id));
		goto out;
	}
	snprintf(b->recorded, sizeof(b->recorded), "%s", j->dataset_digest);
	if (b->current[0] && b->recorded[0] && strcmp(b->current, b->recorded) != 0) {
		if (!b->allow_data_change) {
			dscache_changed_message(b->err.msg, sizeof(b->err.msg), j->cfg.dataset, j->id,
						b->recorded, b->current, "resume");
			b->error = PROTO_DATASET_CHANGED;
			call_error(b->c, PROTO_DATASET_CHANGED, bg_error_params(b));
			goto out;
		}
		if (resumable(j)) {
			log_warn("job %" PRId64 ": resumed on changed data (dataset %s %s, was %s), as "
				 "allowed", j->id, j->cfg.dataset, b->current, b->recorded);
			jobs_record_digest(j, b->current);
		}
	} else if (b->current[0] && !b->recorded[0] && resumable(j)) {
		jobs_record_digest(j, b->current);
	}
	jobs_resume(b->d, b->c, j, b->weights_only, b->resume_epochs, b->resume_ranks);
out:
	b->c = NULL;
	bg_after(req, status);
}

static void work_resume_check(uv_work_t *req)
{
	struct bg *b = req->data;

	if (bg_digest(b, b->cfg.dataset, b->current) < 0)
		b->current[0] = '\0';
}

static void m_resume(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", "weights_only", "allow_data_change", "epochs", "ranks",
					    NULL };
	bool weights_only = false, allow = false;
	int64_t epochs = 0, ranks = 0;
	struct job *j;
	struct bg *b;

	if (!only_keys(c, keys) || !get_bool(c, "weights_only", &weights_only) ||
	    !get_bool(c, "allow_data_change", &allow) ||
	    !get_int(c, "epochs", false, 1, 100000, &epochs) ||
	    !get_int(c, "ranks", false, 1, CFG_MAX_RANKS, &ranks) || !(j = get_job(d, c)))
		return;
	if (!resumable(j) && !(j->target == JOB_DONE && epochs)) {
		jobs_resume(d, c, j, weights_only, (uint32_t)epochs, (uint32_t)ranks);   /* refuses it, as it is */
		return;
	}
	if (!(b = bg_new(d, c)))
		return;
	b->id = j->id;
	b->weights_only = weights_only;
	b->allow_data_change = allow;
	b->resume_epochs = (uint32_t)epochs;
	b->resume_ranks = (uint32_t)ranks;
	snprintf(b->cfg.dataset, sizeof(b->cfg.dataset), "%s", j->cfg.dataset);
	bg_queue(b, work_resume_check, bg_after_resume);
}

static void m_kill(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", "after_epoch", NULL };
	int64_t after = 0;
	struct job *j;

	if (!only_keys(c, keys) || !get_int(c, "after_epoch", false, 1, 100000, &after) ||
	    !(j = get_job(d, c)))
		return;
	jobs_kill(d, c, j, after);
}

static void m_status(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", NULL };
	struct job *j;

	if (!only_keys(c, keys) || !(j = get_job(d, c)))
		return;
	call_reply(c, json_pack("{s:o}", "job", job_to_json(j)), false);
}

/* An optional array of state names, as a mask of enum job_state bits
 * (absent or null: *mask unchanged). Returns false after replying. */
static bool get_states(struct call *c, const char *key, unsigned *mask)
{
	json_t *states = json_object_get(call_params(c), key);
	unsigned m = 0;
	size_t i;
	json_t *s;

	if (!states || json_is_null(states))
		return true;
	if (!json_is_array(states) || json_array_size(states) == 0) {
		call_invalid_parameter(c, key, "'%s' must be a non-empty array of state names", key);
		return false;
	}
	json_array_foreach(states, i, s) {
		int st = json_is_string(s) ? job_state_parse(json_string_value(s)) : -1;

		if (st < 0) {
			call_invalid_parameter(c, key, "'%s' holds an unknown state (expected queued, running, paused, "
				  "killed, failed or done)", key);
			return false;
		}
		m |= 1u << st;
	}
	*mask = m;
	return true;
}

static void m_list(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "states", NULL };
	unsigned mask = ~0u;
	json_t *a;

	if (!only_keys(c, keys) || !get_states(c, "states", &mask))
		return;
	a = json_array();
	for (size_t i = 0; i < d->njobs; i++) {
		struct job *j = d->jobs[i];

		if (!j->removal && ((mask >> j->state) & 1u))
			json_array_append_new(a, job_to_json(j));
	}
	call_reply(c, json_pack("{s:o}", "jobs", a), false);
}

static void m_delete(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", "force", NULL };
	bool force = false;
	struct job *j;

	if (!only_keys(c, keys) || !get_bool(c, "force", &force) || !(j = get_job(d, c)))
		return;
	jobs_delete(d, c, j, force);
}

static void m_history(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", NULL };
	struct job *j;
	struct bg *b;

	if (!only_keys(c, keys) || !(j = get_job(d, c)) || !(b = bg_new(d, c)))
		return;
	b->id = j->id;
	bg_queue(b, work_history, bg_after);
}

/* Steps: the step series (daemon/jobs/stepseries.h), read off the loop. */
static void m_steps(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", NULL };
	struct job_progress p;
	struct job *j;
	struct bg *b;

	if (!only_keys(c, keys) || !(j = get_job(d, c)) || !(b = bg_new(d, c)))
		return;
	job_progress_get(j, &p);
	b->id = j->id;
	b->epoch = p.steps_per_epoch;   /* carried to the reply */
	bg_queue(b, work_steps, bg_after);
}

static void m_checkpoints(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", NULL };
	struct job *j;
	struct bg *b;

	if (!only_keys(c, keys) || !(j = get_job(d, c)) || !(b = bg_new(d, c)))
		return;
	b->id = j->id;
	bg_queue(b, work_checkpoints, bg_after);
}

static void m_wait(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", "epoch", "states", "timeout", NULL };
	json_t *states = json_object_get(call_params(c), "states");
	json_t *timeout = json_object_get(call_params(c), "timeout");
	int64_t epoch = 0;
	unsigned mask = 0;
	double t = -1;
	struct job *j;

	if (!only_keys(c, keys) || !get_int(c, "epoch", false, 1, 100000, &epoch))
		return;
	if (states && !json_is_null(states)) {
		size_t i;
		json_t *s;

		if (!json_is_array(states) || json_array_size(states) == 0) {
			call_invalid_parameter(c, "states", "'states' must be a non-empty array of state names");
			return;
		}
		json_array_foreach(states, i, s) {
			int st = json_is_string(s) ? job_state_parse(json_string_value(s)) : -1;

			if (st < 0) {
				const char *text = json_is_string(s) ? json_string_value(s) : "(not a string)";

				call_invalid_parameter(c, "states", "unknown state %s%.*s%s (expected queued, running, "
						       "paused, killed, failed or done)",
						       json_is_string(s) ? "'" : "", tr_utf8_cut(text, 32), text,
						       json_is_string(s) ? "'" : "");
				return;
			}
			mask |= 1u << st;
		}
	}
	if (timeout && !json_is_null(timeout)) {
		if (!json_is_number(timeout) || !isfinite(json_number_value(timeout)) ||
		    json_number_value(timeout) < 0 || json_number_value(timeout) > 1e7) {
			call_invalid_parameter(c, "timeout", "'timeout' must be a number of seconds in [0, 1e7]");
			return;
		}
		t = json_number_value(timeout);
	}
	if (!(j = get_job(d, c)))
		return;
	if ((uint64_t)epoch > j->cfg.epochs) {
		call_invalid_parameter(c, "epoch", "job %" PRId64 " has only %u epochs", j->id, j->cfg.epochs);
		return;
	}
	waiters_wait(d, c, j, (uint32_t)epoch, mask, t);
}

static void m_eval(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", "split", "epoch", "best", "per_class", "allow_data_change", NULL };
	json_t *split = json_object_get(call_params(c), "split");
	json_t *per_class = json_object_get(call_params(c), "per_class");
	enum eval_split which = EVAL_VAL;
	int64_t epoch = -1;
	bool best = false;
	struct job *j;
	struct bg *b;

	bool allow = false;

	if (!only_keys(c, keys) || !get_int(c, "epoch", false, 0, 100000, &epoch) ||
	    !get_bool(c, "best", &best) || !get_bool(c, "allow_data_change", &allow))
		return;
	if (best && epoch >= 0) {
		call_invalid_parameter(c, "best", "give 'epoch' or 'best', not both");
		return;
	}
	if (split && !json_is_null(split)) {
		const char *s = json_is_string(split) ? json_string_value(split) : "";

		if (strcmp(s, "val") == 0)
			which = EVAL_VAL;
		else if (strcmp(s, "test") == 0)
			which = EVAL_TEST;
		else {
			call_invalid_parameter(c, "split", "'split' must be \"val\" or \"test\"");
			return;
		}
	}
	if (per_class && !json_is_null(per_class) && !json_is_boolean(per_class)) {
		call_invalid_parameter(c, "per_class", "'per_class' must be true or false");
		return;
	}
	if (!(j = get_job(d, c)) || !(b = bg_new(d, c)))
		return;
	b->id = j->id;
	b->epoch = epoch;
	b->best = best;
	b->split = which;
	b->per_class = json_is_true(per_class);
	b->allow_data_change = allow;
	snprintf(b->recorded, sizeof(b->recorded), "%s", j->dataset_digest);
	bg_queue(b, work_eval, bg_after);
}

static void m_export(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", "epoch", "best", "pytorch", NULL };
	int64_t epoch = -1;
	bool best = false, pytorch = false;
	struct job *j;
	struct bg *b;

	if (!only_keys(c, keys) || !get_int(c, "epoch", false, 0, 100000, &epoch) ||
	    !get_bool(c, "best", &best) || !get_bool(c, "pytorch", &pytorch))
		return;
	if (best && epoch >= 0) {
		call_invalid_parameter(c, "best", "give 'epoch' or 'best', not both");
		return;
	}
	if (!(j = get_job(d, c)) || !(b = bg_new(d, c)))
		return;
	b->id = j->id;
	b->epoch = epoch;
	b->best = best;
	b->pytorch = pytorch;
	bg_queue(b, work_export, bg_after);
}

static void m_generate(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", "epoch", "best", "prompt", "tokens", "temperature", "top_k",
					    "seed", "allow_data_change", NULL };
	json_t *p = call_params(c), *prompt = json_object_get(p, "prompt");
	json_t *temp = json_object_get(p, "temperature");
	int64_t epoch = -1, tokens = 0, top_k = 0, seed = 1;
	bool best = false, allow = false;
	double t = 1.0;
	struct job *j;
	struct bg *b;

	if (!only_keys(c, keys) || !get_int(c, "epoch", false, 0, 100000, &epoch) ||
	    !get_bool(c, "best", &best) || !get_int(c, "tokens", true, 1, GENERATE_MAX_TOKENS, &tokens) ||
	    !get_int(c, "top_k", false, 0, 1 << 24, &top_k) || !get_int(c, "seed", false, 0, INT64_MAX, &seed) ||
	    !get_bool(c, "allow_data_change", &allow))
		return;
	if (best && epoch >= 0) {
		call_invalid_parameter(c, "best", "give 'epoch' or 'best', not both");
		return;
	}
	if (!json_is_string(prompt) || json_string_length(prompt) == 0 ||
	    json_string_length(prompt) > 65536) {
		call_invalid_parameter(c, "prompt", "'prompt' must be a string of 1 to 65536 bytes (the text to continue)");
		return;
	}
	if (temp && !json_is_null(temp)) {
		t = json_is_number(temp) ? json_number_value(temp) : -1.0;
		if (!(t >= 0.0 && t <= 100.0)) {
			call_invalid_parameter(c, "temperature", "'temperature' must be a number in [0, 100] (0: the most likely token)");
			return;
		}
	}
	if (!(j = get_job(d, c)) || !(b = bg_new(d, c)))
		return;
	b->prompt = malloc(json_string_length(prompt) + 1);
	if (!b->prompt) {
		call_error(c, PROTO_STORAGE_ERROR, json_pack("{s:s}", "message", "out of memory"));
		free(b);
		return;
	}
	memcpy(b->prompt, json_string_value(prompt), json_string_length(prompt) + 1);
	b->prompt_len = json_string_length(prompt);
	b->id = j->id;
	b->epoch = epoch;
	b->best = best;
	b->allow_data_change = allow;
	b->gen = (struct gen_opts){ .tokens = (uint32_t)tokens, .temperature = t, .top_k = (uint32_t)top_k,
				    .seed = (uint64_t)seed };
	snprintf(b->recorded, sizeof(b->recorded), "%s", j->dataset_digest);
	bg_queue(b, work_generate, bg_after);
}

static void m_datasets(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { NULL };
	struct bg *b;

	if (!only_keys(c, keys) || !(b = bg_new(d, c)))
		return;
	bg_queue(b, work_datasets, bg_after_datasets);
}

static void m_watch(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { "id", NULL };
	struct job *j;

	if (!only_keys(c, keys) || !(j = get_job(d, c)))
		return;
	waiters_watch(c, j);
}

static void m_counters(struct daemon *d, struct call *c)
{
	static const char *const keys[] = { NULL };
	json_t *r;

	if (!only_keys(c, keys))
		return;
	r = counters_json(&d->counters);
	if (!r) {
		call_error(c, PROTO_STORAGE_ERROR, json_pack("{s:s}", "message", "out of memory"));
		return;
	}
	call_reply(c, r, false);
}

static void m_get_info(struct daemon *d, struct call *c)
{
	(void)d;
	call_reply(c, json_pack("{s:s,s:s,s:s,s:s,s:[s,s]}", "vendor", "traind", "product", "traind",
				"version", TRAIND_VERSION, "url", "https://traind.invalid/",
				"interfaces", "org.varlink.service", "io.traind"),
		   false);
}

static void m_get_interface(struct daemon *d, struct call *c)
{
	json_t *iface = json_object_get(call_params(c), "interface");
	static const char *const keys[] = { "interface", NULL };
	const char *name;

	(void)d;
	if (!only_keys(c, keys))
		return;
	if (!json_is_string(iface)) {
		call_invalid_parameter(c, "interface", "'interface' must be an interface name");
		return;
	}
	name = json_string_value(iface);
	if (strcmp(name, "io.traind") == 0) {
		call_reply(c, json_pack("{s:s}", "description", traind_interface_description), false);
	} else if (strcmp(name, "org.varlink.service") == 0) {
		call_reply(c, json_pack("{s:s}", "description", varlink_service_description), false);
	} else {
		char shown[TR_QUOTE_MAX + 1];

		snprintf(shown, sizeof(shown), "%.*s", tr_utf8_cut(name, TR_QUOTE_MAX), name);
		call_error(c, PROTO_INTERFACE_NOT_FOUND, json_pack("{s:s}", "interface", shown));
	}
}

static const struct {
	const char *name;
	void (*fn)(struct daemon *d, struct call *c);
} methods[] = {
	{ "io.traind.Start", m_start },
	{ "io.traind.Pause", m_pause },
	{ "io.traind.Resume", m_resume },
	{ "io.traind.Kill", m_kill },
	{ "io.traind.Status", m_status },
	{ "io.traind.List", m_list },
	{ "io.traind.History", m_history },
	{ "io.traind.Steps", m_steps },
	{ "io.traind.Checkpoints", m_checkpoints },
	{ "io.traind.Wait", m_wait },
	{ "io.traind.Eval", m_eval },
	{ "io.traind.Export", m_export },
	{ "io.traind.Watch", m_watch },
	{ "io.traind.Delete", m_delete },
	{ "io.traind.Counters", m_counters },
	{ "io.traind.Datasets", m_datasets },
	{ "io.traind.DatasetImport", m_dataset_import },
	{ "io.traind.DatasetRemove", m_dataset_remove },
	{ "io.traind.Predict", m_predict },
	{ "io.traind.Generate", m_generate },
	{ "org.varlink.service.GetInfo", m_get_info },
	{ "org.varlink.service.GetInterfaceDescription", m_get_interface },
};

void methods_dispatch(void *ctx, struct call *c, const char *method)
{
	struct daemon *d = ctx;

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (strcmp(methods[i].name, method) == 0) {
			if (d->shutting_down && methods[i].fn != m_status && methods[i].fn != m_list &&
			    methods[i].fn != m_get_info) {
				call_error(c, PROTO_SHUTTING_DOWN,
					   json_pack("{s:s}", "message", "traind is shutting down"));
				return;
			}
			methods[i].fn(d, c);
			return;
		}
	}
	if (strncmp(method, "io.traind.", 10) == 0 || strncmp(method, "org.varlink.service.", 20) == 0)
		call_error(c, PROTO_METHOD_NOT_FOUND, json_pack("{s:s}", "method", method));
	else
		call_error(c, PROTO_INTERFACE_NOT_FOUND,
			   json_pack("{s:s%}", "interface", method,
				     strrchr(method, '.') ? (size_t)(strrchr(method, '.') - method) : strlen(method)));
}
