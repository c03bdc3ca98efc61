/*
 * methods-jobs.c - Start, Pause, Resume, Kill, Delete: the jobs module's
 * verbs (jobs.h). See daemon/proto/methods.h.
 *
 * The verbs answer in the jobs module's codes through a struct jobs_done,
 * at once or once their state is durable; struct verb holds the call
 * meanwhile and turns the answer into the reply (proto_jobs_error for a
 * refusal). Start and Resume check on the thread pool first: Start its
 * configuration against the dataset (and the model it starts from),
 * Resume the dataset's files.
 */
#include "daemon/proto/methods.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/base64.h"
#include "traind/checkpoint.h"
#include "traind/trainer.h"
#include "daemon/core/log.h"
#include "daemon/jobs/jobs.h"
#include "daemon/proto/wire.h"

/* ---- a verb's call, while the jobs module works on it ------------------ */

struct verb {
	struct jobs_done done;     /* first: the answer comes back through it */
	struct call *c;
	bool start;                /* Start: answered with the id alone */
};

static void verb_reply(struct call *c, const struct jobs_result *r, bool start)
{
	struct proto_detail dt;
	enum proto_error e;

	if (r->code == JOBS_OK) {
		call_reply(c, start ? json_pack("{s:I}", "id", (json_int_t)r->id)
				    : job_id_state_json(r->id, r->state),
			   false);
		return;
	}
	e = proto_jobs_error(r, &dt);
	call_error(c, e, &dt);
}

static void verb_answered(struct jobs_done *done)
{
	struct verb *v = (struct verb *)done;

	call_on_cancel(v->c, NULL, NULL);
	verb_reply(v->c, &done->result, v->start);
	free(v);
}

static void verb_cancel(void *arg)
{
	struct verb *v = arg;

	jobs_done_cancel(&v->done);   /* the verb goes on; nobody to tell */
	free(v);
}

/* The verb's call, or NULL after replying (out of memory). */
static struct verb *verb_new(struct call *c, bool start)
{
	struct verb *v = calloc(1, sizeof(*v));

	if (!v) {
		call_error(c, PROTO_STORAGE_ERROR, &(struct proto_detail){ .message = "out of memory" });
		return NULL;
	}
	v->done.fn = verb_answered;
	v->c = c;
	v->start = start;
	return v;
}

/* What the verb returned (jobs.h): the call waits for its answer, or gets
 * it now. */
static void verb_started(struct verb *v, int rc)
{
	if (rc == JOBS_PENDING) {
		call_on_cancel(v->c, verb_cancel, v);
		return;
	}
	verb_reply(v->c, &v->done.result, v->start);
	free(v);
}

/* ---- Start ------------------------------------------------------------- */

struct start_task {
	struct bg_task t;          /* first */
	struct daemon *d;
	json_t *config_in;         /* config, as sent (a reference taken on the loop) */
	json_t *init_b64;          /* init_from, as sent (a reference taken on the loop) */
	struct ckpt_ref from;      /* from_job (id 0: none) and from_epoch */
	bool weights_only;         /* with from_job: the model alone */
	struct job_spec spec;      /* the job the check made, for jobs_start_job */
	const char *bad_param;     /* InvalidParameter: which (NULL: "config") */
	char param[METHODS_PARAM_MAX];   /* "config.KEY" */
};

static void start_release(struct bg_task *t)
{
	struct start_task *s = (struct start_task *)t;

	json_decref(s->config_in);
	json_decref(s->init_b64);
	job_spec_clear(s->d->dsc, &s->spec);
	free(s);
}

/* The configuration key the configuration module named, as data (err.key):
 * "config.KEY", else "config". */
static const char *config_param(struct start_task *s)
{
	snprintf(s->param, sizeof(s->param), "config%s%.*s", s->t.err.key[0] ? "." : "",
		 (int)sizeof(s->param) - 8, s->t.err.key);
	return s->param;
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

/* The new job's configuration is known: its name (when none was given)
 * and its dataset, whose files' identity is taken first, then the data:
 * what the job records is what it trains on, unless the files change in
 * between. */
static int job_dataset(struct bg_task *t, struct daemon *d, struct job_spec *sp)
{
	int rc;

	if (!sp->name[0])
		snprintf(sp->name, sizeof(sp->name), "%.40s-%s", sp->cfg.dataset,
			 config_optim_name(sp->cfg.optimizer));
	rc = methods_digest(t, d, sp->cfg.dataset, sp->dataset_digest);
	if (rc == 0)
		rc = dscache_get(d->dsc, sp->cfg.dataset, sp->dataset_digest, &sp->ds, &t->err);
	return rc < 0 ? bg_fail(t, PROTO_FROM_DATASET, rc) : 0;
}

static int start_dataset(struct start_task *s)
{
	return job_dataset(&s->t, s->d, &s->spec);
}

/* Start with from_job: the job's checkpoint (s->from) with the settings of
 * config changed, as the new job's first checkpoint (its full state at the
 * checkpoint's position with the history before it, or with weights_only
 * its model in a fresh job at epoch 0). */
static void start_from(struct start_task *s)
{
	struct bg_task *bt = &s->t;
	struct job_spec *sp = &s->spec;
	struct tr_err *err = &bt->err;
	struct store_checkpoint ck;
	struct checkpoint_info info;
	struct trainer *t = NULL;
	uint8_t *model = NULL;
	size_t len = 0;
	const char *frozen;
	int rc;

	memset(&ck, 0, sizeof(ck));
	if (methods_checkpoint(bt, &s->from, &ck) < 0)
		goto out;
	rc = checkpoint_inspect(ck.blob, (size_t)ck.size, &info, err);
	if (rc < 0) {
		bg_fail(bt, PROTO_FROM_CHECKPOINT, rc);
		goto out;
	}
	sp->cfg = info.cfg;
	rc = s->config_in ? config_apply_json(&sp->cfg, s->config_in, err) : 0;
	if (rc < 0) {
		s->bad_param = config_param(s);
		bg_fail(bt, PROTO_FROM_CONFIG, rc);
		goto out;
	}
	if (!s->weights_only && (frozen = frozen_key_changed(&sp->cfg, &info.cfg))) {
		tr_err_set_key(err, -EINVAL, frozen,
			       "cannot change when starting from job %" PRId64 "'s full state (its optimizer state and data order depend on it); add weights_only to keep only its model",
			       s->from.id);
		s->bad_param = config_param(s);
		bg_fail(bt, PROTO_FROM_CONFIG, -EINVAL);
		goto out;
	}
	/* the full state's trainer below is the old job's: check a new precision here */
	rc = k_precision_check(sp->cfg.precision, err);
	if (rc < 0) {
		s->bad_param = config_param(s);
		bg_fail(bt, PROTO_FROM_CONFIG, rc);
		goto out;
	}
	if (start_dataset(s) < 0)
		goto out;
	if (s->weights_only) {
		rc = trainer_new(&t, &sp->cfg, sp->ds, err);
		if (rc < 0) {
			s->bad_param = config_param(s);
			bg_fail(bt, PROTO_FROM_FIT, rc);
			goto out;
		}
		rc = checkpoint_export_from_blob(ck.blob, (size_t)ck.size, &model, &len, err);
		if (rc == 0)
			rc = checkpoint_load_model(t, model, len, err);
		if (rc < 0) {
			tr_err_prefix(err, "job %" PRId64 "'s model does not fit the new job's", s->from.id);
			s->bad_param = "from_job";
			bg_fail(bt, PROTO_FROM_FIT, rc);
			goto out;
		}
	} else {
		rc = checkpoint_restore(&t, ck.blob, (size_t)ck.size, sp->ds, false, err);
		if (rc < 0) {
			bg_fail(bt, PROTO_FROM_CHECKPOINT, rc);
			goto out;
		}
		rc = trainer_set_epochs(t, sp->cfg.epochs, err);
		if (rc < 0) {
			s->bad_param = config_param(s);
			bg_fail(bt, PROTO_FROM_FIT, rc);
			goto out;
		}
		rc = trainer_set_lr(t, sp->cfg.lr, err);
		if (rc < 0) {
			s->bad_param = config_param(s);
			bg_fail(bt, PROTO_FROM_CONFIG, rc);
			goto out;
		}
		t->cfg = sp->cfg;   /* what may change: lr, betas, threads...; the next run builds on it */
	}
	if (ck.step)
		snprintf(sp->origin, sizeof(sp->origin), "job %" PRId64 " epoch %u step %u%s", s->from.id,
			 ck.epoch, ck.step, s->weights_only ? " (weights only)" : "");
	else
		snprintf(sp->origin, sizeof(sp->origin), "job %" PRId64 " epoch %u%s", s->from.id, ck.epoch,
			 s->weights_only ? " (weights only)" : "");
	snprintf(t->note, sizeof(t->note), "started from %s", sp->origin);
	if (t->nhistory != t->epoch) {
		rc = tr_err_set(err, -EINVAL, "the checkpoint's history has %u rows at epoch %u",
				t->nhistory, t->epoch);
		bg_fail(bt, PROTO_FROM_CHECKPOINT, rc);
		goto out;
	}
	rc = job_spec_take_origin(sp, t, err);
	if (rc < 0)
		bg_fail(bt, PROTO_FROM_DAEMON, rc);
out:
	trainer_free(t);
	free(model);
	store_checkpoint_clear(&ck);
}

/* The configuration key the configuration module named (t->err.key) into
 * param: "config.KEY", else "config". */
static const char *key_param(struct bg_task *t, char param[METHODS_PARAM_MAX])
{
	snprintf(param, METHODS_PARAM_MAX, "config%s%.*s", t->err.key[0] ? "." : "",
		 METHODS_PARAM_MAX - 8, t->err.key);
	return param;
}

int methods_new_job(struct bg_task *bt, struct daemon *d, json_t *config_in, bool fit, struct job_spec *sp,
		    char param[METHODS_PARAM_MAX], const char **bad_param)
{
	struct tr_err *err = &bt->err;
	int rc;

	rc = config_in ? config_from_json(&sp->cfg, config_in, err) : 0;
	if (!config_in)
		config_defaults(&sp->cfg);
	if (rc < 0) {
		*bad_param = key_param(bt, param);
		return bg_fail(bt, PROTO_FROM_CONFIG, rc);
	}
	rc = job_dataset(bt, d, sp);
	if (rc < 0)
		return rc;
	/* val_size not given, on a training file too small for the lesson's
	 * 10000 (none left to train on, or less than a batch): a sixth of the
	 * file instead, MNIST's own ratio. It is recorded with the job like any
	 * setting; a job that would have trained with 10000 still does. */
	if (!json_object_get(config_in, "val_size") && sp->ds->text) {
		/* a text: a tenth of its windows (doc/sequences.md) */
		uint64_t w = dataset_windows(sp->ds->train.ntokens, sp->cfg.context);

		if (w >= 2)
			sp->cfg.val_size = w / 10 > 0 ? (uint32_t)(w / 10 < 1000000 ? w / 10 : 1000000) : 1;
	} else if (!json_object_get(config_in, "val_size")) {
		uint32_t count = sp->ds->train.count;

		if (sp->cfg.val_size >= count || count - sp->cfg.val_size < sp->cfg.batch_size)
			sp->cfg.val_size = count / 6 > 0 ? count / 6 : 1;
	}
	if (!fit)
		return 0;
	rc = trainer_check_config(&sp->cfg, sp->ds, err);
	if (rc < 0) {
		*bad_param = key_param(bt, param);
		bg_fail(bt, PROTO_FROM_FIT, rc);
	}
	sp->steps_per_epoch = jobs_steps_per_epoch(&sp->cfg, trainer_split_samples(&sp->cfg, sp->ds));
	sp->params = trainer_count_params(&sp->cfg, trainer_data_shape(&sp->cfg, sp->ds), dataset_outputs(sp->ds));
	return rc < 0 ? rc : 0;
}

/* A new job's configuration and its dataset (and init_from). */
static void start_fresh(struct start_task *s)
{
	struct bg_task *bt = &s->t;
	struct job_spec *sp = &s->spec;
	struct tr_err *err = &bt->err;
	int rc;

	if (methods_new_job(bt, s->d, s->config_in, !s->init_b64, sp, s->param, &s->bad_param) < 0 ||
	    !s->init_b64)
		return;
	{
		/* The job's starting point becomes its first checkpoint (epoch 0,
		 * step 0), stored with the job, so a crash before it ever runs
		 * cannot lose the model it was asked to start from. */
		struct trainer *t = NULL;
		uint8_t *model = NULL;
		size_t len = 0;

		if (base64_decode(json_string_value(s->init_b64), json_string_length(s->init_b64), &model,
				  &len) < 0) {
			s->bad_param = "init_from";
			bg_fail(bt, PROTO_FROM_CONFIG, tr_err_set(err, -EINVAL, "'init_from' is not valid base64"));
			return;
		}
		rc = trainer_new(&t, &sp->cfg, sp->ds, err);   /* checks cfg against the dataset */
		if (rc < 0) {
			s->bad_param = config_param(s);
			bg_fail(bt, PROTO_FROM_FIT, rc);
		} else {
			sp->steps_per_epoch = t->steps_per_epoch;
			sp->params = t->model.nparams;
			s->bad_param = "init_from";
			rc = checkpoint_load_model(t, model, len, err);
			if (rc < 0)
				bg_fail(bt, PROTO_FROM_FIT, rc);
		}
		if (rc == 0) {
			s->bad_param = NULL;
			rc = checkpoint_serialize(t, &sp->init_ckpt, &sp->init_len, err);
			if (rc == 0)
				rc = checkpoint_seal(sp->init_ckpt, sp->init_len, sp->init_checksum, err);
			if (rc < 0)
				bg_fail(bt, PROTO_FROM_DAEMON, rc);
		}
		trainer_free(t);
		free(model);
	}
}

/* The one check of a new job, off the loop: the configuration (parsed and
 * checked against the dataset), the dataset (loaded here, and kept for the
 * job's first run), the starting model (decoded and parsed once: a model of
 * many MiB would hold up every other client on the loop). */
static void start_work(struct bg_task *t)
{
	struct start_task *s = (struct start_task *)t;

	if (s->from.id)
		start_from(s);
	else
		start_fresh(s);
	/* what a failure names */
	t->detail.parameter = s->bad_param ? s->bad_param : "config";
	t->detail.dataset = s->spec.cfg.dataset;
}

/* Checked: store the job (unless traind began to shut down meanwhile). */
static bool start_after(struct bg_task *t)
{
	struct start_task *s = (struct start_task *)t;
	struct verb *v;

	if (t->rc == 0 && t->c && s->d->shutting_down) {
		bg_fail(t, PROTO_FROM_DAEMON, tr_err_set(&t->err, -ESHUTDOWN, "traind is shutting down"));
	} else if (t->rc == 0 && t->c) {
		call_on_cancel(t->c, NULL, NULL);
		v = verb_new(t->c, true);
		if (v)   /* takes what spec owns */
			verb_started(v, jobs_start_job(s->d->jobs, &s->spec, &v->done));
		t->c = NULL;
	}
	return false;
}

void m_start(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "name", "config", "keep", "init_from", "from_job",
					    "from_epoch", "weights_only", NULL };
	json_t *p = call_params(c), *name = json_object_get(p, "name");
	json_t *config = json_object_get(p, "config"), *init = json_object_get(p, "init_from");
	int64_t keep = 3, from_job = 0, from_epoch = -1;
	bool weights_only = false;
	struct start_task *s;

	(void)fds;
	if (!params_only(c, keys) || !params_int(c, "keep", false, -1, 1000000, &keep) ||
	    !params_int(c, "from_job", false, 1, INT64_MAX, &from_job) ||
	    !params_int(c, "from_epoch", false, 0, 100000, &from_epoch) ||
	    !params_bool(c, "weights_only", &weights_only))
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
	if (from_job && !jobs_find(d->jobs, from_job)) {
		call_error(c, PROTO_NO_SUCH_JOB, &(struct proto_detail){ .has_id = true, .id = from_job });
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
	if (!(s = bg_task_new(c, sizeof(*s), start_work, start_after, start_release)))
		return;
	s->d = d;
	/* Everything else is checked once, on the thread pool. */
	if (config && json_is_object(config))
		s->config_in = json_incref(config);
	if (init && json_is_string(init))
		s->init_b64 = json_incref(init);
	s->spec.keep = (int32_t)keep;
	s->from = (struct ckpt_ref){ .id = from_job, .epoch = from_job ? from_epoch : -1 };
	s->weights_only = weights_only;
	/* NoSuchCheckpoint and CheckpointError name the job started from */
	s->t.detail = (struct proto_detail){ .has_id = true, .id = from_job, .has_epoch = s->from.epoch >= 0,
					     .epoch = s->from.epoch };
	if (name && json_is_string(name))
		snprintf(s->spec.name, sizeof(s->spec.name), "%s", json_string_value(name));
	bg_submit(d->bg, &s->t);
}

/* ---- Pause, Kill, Delete ----------------------------------------------- */

void m_pause(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", NULL };
	struct verb *v;
	struct job *j;

	(void)fds;
	if (!params_only(c, keys) || !(j = params_job(d, c)) || !(v = verb_new(c, false)))
		return;
	verb_started(v, jobs_pause(d->jobs, j, &v->done));
}

void m_kill(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", "after_epoch", NULL };
	int64_t after = 0;
	struct verb *v;
	struct job *j;

	(void)fds;
	if (!params_only(c, keys) || !params_int(c, "after_epoch", false, 1, 100000, &after) ||
	    !(j = params_job(d, c)) || !(v = verb_new(c, false)))
		return;
	verb_started(v, jobs_kill(d->jobs, j, after, &v->done));
}

void m_delete(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", "force", NULL };
	bool force = false;
	struct verb *v;
	struct job *j;

	(void)fds;
	if (!params_only(c, keys) || !params_bool(c, "force", &force) || !(j = params_job(d, c)) ||
	    !(v = verb_new(c, false)))
		return;
	verb_started(v, jobs_delete(d->jobs, j, force, &v->done));
}

/* ---- Resume ------------------------------------------------------------ */

struct resume_task {
	struct bg_task t;          /* first */
	struct daemon *d;
	int64_t id;
	bool weights_only;
	bool allow_data_change;
	uint32_t epochs;           /* the epochs in all (0: as configured) */
	uint32_t ranks;            /* 0: as configured */
	char dataset[CFG_NAME_MAX];
	char recorded[DSCACHE_DIGEST_MAX];   /* the job's ("": none recorded) */
	char current[DSCACHE_DIGEST_MAX];    /* the files' now ("": unknown) */
};

static void resume_release(struct bg_task *t)
{
	free(t);
}

static void resume_work(struct bg_task *t)
{
	struct resume_task *r = (struct resume_task *)t;

	if (methods_digest(t, r->d, r->dataset, r->current) < 0)
		r->current[0] = '\0';
}

/* Resume, once the dataset's digest is known: refused when the files are
 * not those the job started with (unless allowed: then the new digest is
 * the job's); a job without a digest records it. A dataset that cannot be
 * read is left to the run, which fails with its error. */
static bool resume_after(struct bg_task *t)
{
	struct resume_task *r = (struct resume_task *)t;
	struct verb *v;
	struct job *j;

	if (!t->c)
		return false;
	j = jobs_find(r->d->jobs, r->id);
	if (!j) {
		t->error = PROTO_NO_SUCH_JOB;
		t->rc = -ENOENT;
		return false;
	}
	snprintf(r->recorded, sizeof(r->recorded), "%s", j->dataset_digest);
	if (r->current[0] && r->recorded[0] && strcmp(r->current, r->recorded) != 0) {
		if (!r->allow_data_change) {
			dscache_changed_message(t->err.msg, sizeof(t->err.msg), j->cfg.dataset, j->id,
						r->recorded, r->current, "resume");
			bg_fail(t, PROTO_FROM_DATASET, -ESTALE);
			return false;
		}
		if (job_resumable(j)) {
			log_warn("job %" PRId64 ": resumed on changed data (dataset %s %s, was %s), as "
				 "allowed", j->id, j->cfg.dataset, r->current, r->recorded);
			jobs_record_digest(j, r->current);
		}
	} else if (r->current[0] && !r->recorded[0] && job_resumable(j)) {
		jobs_record_digest(j, r->current);
	}
	call_on_cancel(t->c, NULL, NULL);
	v = verb_new(t->c, false);
	if (v)
		verb_started(v, jobs_resume(r->d->jobs, j, r->weights_only, r->epochs, r->ranks, &v->done));
	t->c = NULL;
	return false;
}

void m_resume(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", "weights_only", "allow_data_change", "epochs", "ranks",
					    NULL };
	bool weights_only = false, allow = false;
	int64_t epochs = 0, ranks = 0;
	struct resume_task *r;
	struct verb *v;
	struct job *j;

	(void)fds;
	if (!params_only(c, keys) || !params_bool(c, "weights_only", &weights_only) ||
	    !params_bool(c, "allow_data_change", &allow) ||
	    !params_int(c, "epochs", false, 1, 100000, &epochs) ||
	    !params_int(c, "ranks", false, 1, CFG_MAX_RANKS, &ranks) || !(j = params_job(d, c)))
		return;
	if (!job_resumable(j) && !(j->target == JOB_DONE && epochs)) {
		if ((v = verb_new(c, false)))   /* refused, as it is */
			verb_started(v, jobs_resume(d->jobs, j, weights_only, (uint32_t)epochs,
						    (uint32_t)ranks, &v->done));
		return;
	}
	if (!(r = bg_task_new(c, sizeof(*r), resume_work, resume_after, resume_release)))
		return;
	r->d = d;
	r->id = j->id;
	r->weights_only = weights_only;
	r->allow_data_change = allow;
	r->epochs = (uint32_t)epochs;
	r->ranks = (uint32_t)ranks;
	snprintf(r->dataset, sizeof(r->dataset), "%s", j->cfg.dataset);
	r->t.detail = (struct proto_detail){ .has_id = true, .id = r->id, .dataset = r->dataset,
					     .recorded = r->recorded, .current = r->current };
	bg_submit(d->bg, &r->t);
}
