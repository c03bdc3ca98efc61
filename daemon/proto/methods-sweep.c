/*
 * methods-sweep.c - SweepStart, SweepStatus, SweepList, SweepKill: the
 * sweeps (daemon/sweep/, doc/sweeps.md). See daemon/proto/methods.h.
 *
 * SweepStart checks the sweep (searcher.h: the space, the searcher, the
 * seed, the metric) and every trial as Start checks a job (methods_new_job:
 * the shared configuration with the trial's parameters, against the
 * dataset), on the thread pool; then the jobs module stores the sweep and
 * all its trials' jobs in one transaction (jobs_start_group with
 * store_sweep_create), and the sweep registry gates them. Nothing is stored
 * when anything is refused. Status and List read the store on the pool.
 */
#include "daemon/proto/methods.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/loss.h"
#include "traind/sched.h"
#include "traind/trainer.h"
#include "daemon/core/log.h"
#include "daemon/jobs/jobs.h"
#include "daemon/sweep/searcher.h"
#include "daemon/sweep/sweep.h"

/* ---- SweepStart -------------------------------------------------------- */

/* A sweep on its way to the store: lives until the jobs module answers. */
struct sweep_req {
	struct jobs_done done;       /* first */
	struct jobs_group g;
	struct daemon *d;
	struct call *c;              /* NULL once the client has gone */
	struct job_spec *specs;      /* n, owned (the jobs module takes what they own) */
	char **params;               /* n trial parameters (JSON text), owned */
	int64_t *ids;
	char *spec_json;             /* what sweeps.spec keeps, owned */
	char name[STORE_NAME_MAX];
	uint32_t max_parallel;
	int64_t sweep_id;            /* written on the store thread */
};

struct sweep_task {
	struct bg_task t;            /* first */
	struct daemon *d;
	json_t *in;                  /* the call's parameters (a reference) */
	uid_t uid;                   /* the caller's: the sweep's background work is charged to it */
	struct sweep_req *req;       /* built by the work, taken by after */
	const char *bad_param;
	char param[METHODS_PARAM_MAX];
	char dataset[CFG_NAME_MAX];   /* what a DatasetError names */
};

static void req_free(struct sweep_req *r)
{
	if (!r)
		return;
	for (size_t i = 0; r->specs && i < r->g.n; i++)
		job_spec_clear(r->d->dsc, &r->specs[i]);
	for (size_t i = 0; r->params && i < r->g.n; i++)
		free(r->params[i]);
	free(r->specs);
	free(r->params);
	free(r->ids);
	free(r->spec_json);
	free(r);
}

static void sweep_task_release(struct bg_task *t)
{
	struct sweep_task *s = (struct sweep_task *)t;

	json_decref(s->in);
	req_free(s->req);
	free(s);
}

static int create_fn(struct store *s, struct jobs_group *g, struct tr_err *err)
{
	struct sweep_req *r = g->arg;
	struct store_new_job *nj = calloc(g->n, sizeof(*nj));
	int rc;

	if (!nj)
		return tr_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < g->n; i++)
		nj[i] = (struct store_new_job){
			.name = g->specs[i].name, .config_json = g->config_json[i],
			.epochs = g->specs[i].cfg.epochs, .keep = g->specs[i].keep,
			.digest = g->specs[i].dataset_digest,
		};
	rc = store_sweep_create(s, r->name, r->spec_json, nj, (const char *const *)r->params, g->n,
				&r->sweep_id, g->ids, err);
	free(nj);
	return rc;
}

static void created(struct jobs_group *g)
{
	struct sweep_req *r = g->arg;

	if (sweeps_add(r->d->sweeps, r->sweep_id, r->spec_json, g->ids, g->n) < 0)
		log_err("sweep %" PRId64 ": out of memory: its trials run without max_parallel until "
			"traind restarts", r->sweep_id);
}

static void sweep_answered(struct jobs_done *done)
{
	struct sweep_req *r = (struct sweep_req *)done;

	if (r->c) {
		call_on_cancel(r->c, NULL, NULL);
		if (done->result.code == JOBS_OK) {
			call_reply(r->c, json_pack("{s:I}", "id", (json_int_t)r->sweep_id), false);
		} else {
			struct proto_detail dt;
			enum proto_error e = proto_jobs_error(&done->result, &dt);

			call_error(r->c, e, &dt);
		}
	}
	req_free(r);   /* the specs are empty: the jobs module took what they owned */
}

static void sweep_call_gone(void *arg)
{
	struct sweep_req *r = arg;

	r->c = NULL;   /* the sweep is stored all the same */
}

/* "config.KEY" for a key that is one of the sweep's parameters: "params.KEY". */
static const char *trial_param(struct sweep_task *s, const struct sweep_spec *sp)
{
	if (s->bad_param == s->param && strncmp(s->param, "config.", 7) == 0)
		for (size_t i = 0; i < sp->nparams; i++)
			if (strcmp(s->param + 7, sp->params[i].key) == 0) {
				snprintf(s->param, sizeof(s->param), "params.%s", sp->params[i].key);
				break;
			}
	return s->bad_param;
}

static void sweep_start_work(struct bg_task *t)
{
	struct sweep_task *s = (struct sweep_task *)t;
	struct tr_err *err = &t->err;
	json_t *config = json_object_get(s->in, "config"), *name = json_object_get(s->in, "name");
	json_t *keep = json_object_get(s->in, "keep");
	struct sweep_spec sp;
	struct sweep_req *r = NULL;
	json_t *stored = NULL;
	int rc;

	rc = sweep_spec_parse(s->in, &sp, err);
	if (rc < 0) {
		snprintf(s->param, sizeof(s->param), "%s", err->key[0] ? err->key : "params");
		s->bad_param = s->param;
		t->detail.parameter = s->bad_param;
		bg_fail(t, PROTO_FROM_CONFIG, rc);
		return;
	}
	if (sp.searcher == SWEEP_PBT && !sp.max_epochs) {   /* the shared configuration's epochs */
		const json_t *e = json_object_get(config, "epochs");
		struct train_config dc;

		config_defaults(&dc);
		sp.max_epochs = json_is_integer(e) && json_integer_value(e) > 0 && json_integer_value(e) <= 100000
					? (uint32_t)json_integer_value(e) : dc.epochs;
		if (sp.interval > sp.max_epochs) {
			s->bad_param = "interval";
			t->detail.parameter = s->bad_param;
			bg_fail(t, PROTO_FROM_CONFIG, tr_err_set_key(err, -EINVAL, "interval", "%u is more than the trials' %u epochs",
								   sp.interval, sp.max_epochs));
			sweep_spec_clear(&sp);
			return;
		}
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->specs = calloc(sp.trials, sizeof(*r->specs))) ||
	    !(r->params = calloc(sp.trials, sizeof(*r->params))) || !(r->ids = calloc(sp.trials, sizeof(*r->ids)))) {
		bg_fail(t, PROTO_FROM_DAEMON, tr_err_set(err, -ENOMEM, "out of memory"));
		goto out;
	}
	r->d = s->d;
	r->g.n = sp.trials;
	r->max_parallel = sp.max_parallel;
	snprintf(r->name, sizeof(r->name), "%s", json_is_string(name) ? json_string_value(name) : "sweep");
	for (uint32_t i = 0; i < sp.trials; i++) {
		json_t *p = sweep_trial_params(&sp, i);
		json_t *cfg = json_is_object(config) ? json_deep_copy(config) : json_object();
		struct job_spec *js = &r->specs[i];

		if (!p || !cfg || json_object_update(cfg, p) < 0 ||
		    !(r->params[i] = json_dumps(p, JSON_COMPACT | JSON_REAL_PRECISION(17)))) {
			json_decref(p);
			json_decref(cfg);
			bg_fail(t, PROTO_FROM_DAEMON, tr_err_set(err, -ENOMEM, "out of memory"));
			goto out;
		}
		if (sweep_adaptive(&sp)) {   /* its first rung's; promotions continue the job */
			uint32_t rungs[SWEEP_RUNGS_MAX];

			sweep_trial_rungs(&sp, i, rungs);
			json_object_set_new(cfg, "epochs", json_integer(rungs[0]));
		}
		if (sp.searcher == SWEEP_PBT)   /* its first segment's; decisions continue or replace the job */
			json_object_set_new(cfg, "epochs", json_integer(sweep_pbt_boundary(&sp, 0)));
		snprintf(js->name, sizeof(js->name), "%.40s-t%u", r->name, i);
		js->keep = json_is_integer(keep) ? (int32_t)json_integer_value(keep) : 3;
		rc = methods_new_job(t, s->d, cfg, true, js, s->param, &s->bad_param);
		snprintf(s->dataset, sizeof(s->dataset), "%s", js->cfg.dataset);
		json_decref(p);
		json_decref(cfg);
		if (rc < 0) {
			trial_param(s, &sp);
			tr_err_prefix(err, "trial %u", i);
			goto out;
		}
		if (i == 0) {
			bool regression = js->cfg.loss == LOSS_MSE || js->cfg.loss == LOSS_L1 ||
					  js->cfg.loss == LOSS_HUBER;

			if (regression ? monitor_is_accuracy(sp.metric) : monitor_is_regression(sp.metric)) {
				s->bad_param = "metric";
				bg_fail(t, PROTO_FROM_CONFIG,
					tr_err_set_key(err, -EINVAL, "metric", "the task (loss %s) has no %s",
						       regression ? "for a regression" : "for classes",
						       monitor_name(sp.metric)));
				goto out;
			}
		}
	}
	stored = sweep_spec_to_json(&sp);
	if (!stored || json_object_set(stored, "config", json_is_object(config) ? config : json_object()) < 0 ||
	    json_object_set_new(stored, "name", json_string(r->name)) < 0 ||
	    json_object_set_new(stored, "uid", json_integer((json_int_t)s->uid)) < 0 ||
	    !(r->spec_json = json_dumps(stored, JSON_COMPACT | JSON_REAL_PRECISION(17)))) {
		bg_fail(t, PROTO_FROM_DAEMON, tr_err_set(err, -ENOMEM, "out of memory"));
		goto out;
	}
	s->req = r;
	r = NULL;
out:
	json_decref(stored);
	if (r) {
		if (!r->specs)
			r->g.n = 0;
		req_free(r);
	}
	sweep_spec_clear(&sp);
	t->detail.parameter = s->bad_param ? s->bad_param : "params";
	t->detail.dataset = s->dataset;
}

static bool sweep_start_after(struct bg_task *t)
{
	struct sweep_task *s = (struct sweep_task *)t;
	struct sweep_req *r = s->req;
	int rc;

	if (t->rc == 0 && t->c && s->d->shutting_down) {
		bg_fail(t, PROTO_FROM_DAEMON, tr_err_set(&t->err, -ESHUTDOWN, "traind is shutting down"));
		return false;
	}
	if (t->rc < 0 || !t->c)
		return false;
	s->req = NULL;
	r->c = t->c;
	t->c = NULL;
	r->done.fn = sweep_answered;
	r->g.specs = r->specs;
	r->g.ids = r->ids;
	r->g.store_fn = create_fn;
	r->g.added = created;
	r->g.arg = r;
	call_on_cancel(r->c, sweep_call_gone, r);
	rc = jobs_start_group(s->d->jobs, &r->g, &r->done);
	if (rc != JOBS_PENDING)
		sweep_answered(&r->done);
	return false;
}

void m_sweep_start(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "name", "searcher", "params", "trials", "seed", "metric",
					    "max_parallel", "config", "keep", "grace_epochs", "reduction_factor",
					    "max_epochs", "population", "interval", "quantile", "perturb", NULL };
	json_t *p = call_params(c), *name = json_object_get(p, "name"), *config = json_object_get(p, "config");
	int64_t keep = 3;
	struct sweep_task *s;

	(void)fds;
	if (!params_only(c, keys) || !params_int(c, "keep", false, -1, 1000000, &keep))
		return;
	if (name && !json_is_null(name)) {
		const char *n = json_is_string(name) ? json_string_value(name) : NULL;

		if (!n || !*n || strlen(n) >= 41) {
			call_invalid_parameter(c, "name", "'name' must be a string of 1 to 40 bytes");
			return;
		}
		for (const char *q = n; *q; q++)
			if ((unsigned char)*q < 0x20 || *q == 0x7f) {
				call_invalid_parameter(c, "name", "'name' must not contain control characters");
				return;
			}
	}
	if (config && !json_is_null(config) && !json_is_object(config)) {
		call_invalid_parameter(c, "config", "'config' must be an object");
		return;
	}
	if (!(s = bg_task_new(c, sizeof(*s), sweep_start_work, sweep_start_after, sweep_task_release)))
		return;
	s->d = d;
	s->in = json_incref(p);
	s->uid = call_uid(c);
	bg_submit(d->bg, &s->t);
}

/* ---- SweepStatus, SweepList -------------------------------------------- */

struct sweep_read {
	struct bg_task t;            /* first */
	int64_t id;                  /* 0: every sweep (List) */
};

/* A trial's decision and why: grid and random run every trial to its
 * epochs; sha as the searcher decided its rungs (dec). */
static void decision_of(const struct store_trial *tr, bool killed, const struct sweep_spec *sp,
			const struct sweep_decision *dec, const char **d, char *why, size_t n)
{
	uint32_t rungs[SWEEP_RUNGS_MAX];
	uint32_t nrungs = sweep_trial_rungs(sp, tr->trial, rungs);

	if (nrungs >= 2 && dec->verdict == VERDICT_STOPPED) {
		*d = "stopped";
		snprintf(why, n, "rank %u of %u at rung %u (%u epochs): not in the top 1/%u", dec->rank, dec->of,
			 dec->rung, rungs[dec->rung], sp->reduction_factor);
		return;
	}
	if (nrungs >= 2 && tr->state == JOB_DONE && tr->epoch < rungs[nrungs - 1] &&
	    dec->epochs <= tr->epoch) {
		*d = "pending";
		snprintf(why, n, "rung %u (%u epochs) waits for all its trials to report", dec->rung, dec->epochs);
		return;
	}
	if (nrungs >= 2 && tr->state == JOB_DONE && dec->epochs > tr->epoch) {
		*d = "promoted";
		snprintf(why, n, "rank %u of %u at rung %u: on to %u epochs", dec->rank, dec->of, dec->rung - 1,
			 dec->epochs);
		return;
	}
	switch (tr->state) {
	case JOB_DONE:
		*d = "completed";
		if (nrungs >= 2)
			snprintf(why, n, "trained to max_epochs %u (rank %u of %u at rung %u)", tr->epoch, dec->rank,
				 dec->of, dec->rung - 1);
		else
			snprintf(why, n, "trained its %u epochs", tr->epoch);
		break;
	case JOB_QUEUED:
		*d = dec->rung ? "promoted" : "pending";
		if (dec->rung)
			snprintf(why, n, "rank %u of %u at rung %u: on to %u epochs, waiting for a slot", dec->rank,
				 dec->of, dec->rung - 1, dec->epochs);
		else
			snprintf(why, n, "waiting for a slot (max_parallel %u)", sp->max_parallel);
		break;
	case JOB_RUNNING:
		*d = dec->rung ? "promoted" : "running";
		snprintf(why, n, "training (%u of %u epochs)", tr->epoch, tr->epochs);
		break;
	case JOB_KILLED:
		*d = "stopped";
		snprintf(why, n, "%s", killed ? "the sweep was killed" : "its job was killed");
		break;
	case JOB_FAILED:
		*d = "failed";
		snprintf(why, n, "its job failed (trainctl status %" PRId64 ")", tr->job);
		break;
	default:
		*d = "paused";
		snprintf(why, n, "its job is paused (trainctl resume %" PRId64 ")", tr->job);
		break;
	}
}

/* sha: each trial's results from its history, then the searcher's decisions. */
static int decide_from_store(struct store *st, const struct sweep_spec *sp, const struct store_trial *tv, size_t n,
			     struct sweep_decision *dec, struct tr_err *err)
{
	struct sweep_result *res = calloc(n ? n : 1, sizeof(*res));
	int rc = 0;

	if (!res)
		return tr_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct history_row *rows = NULL;
		size_t nrows = 0;
		uint32_t rungs[SWEEP_RUNGS_MAX];
		uint32_t nrungs = sweep_trial_rungs(sp, tv[i].trial, rungs);

		res[i].stopped = tv[i].state == JOB_FAILED || tv[i].state == JOB_KILLED;
		rc = store_history(st, tv[i].job, &rows, &nrows, err);
		for (size_t h = 0; rc == 0 && h < nrows; h++)
			for (uint32_t k = 0; k < nrungs; k++)
				if (rows[h].epoch == rungs[k]) {
					res[i].has[k] = true;
					res[i].metric[k] = sched_monitored(sp->metric, rows[h].val_loss, rows[h].val_acc,
									   rows[h].val_macro_acc, rows[h].val_mae,
									   rows[h].val_rmse);
				}
		free(rows);
	}
	if (rc == 0)
		sweep_decide(sp, res, (uint32_t)n, dec);
	free(res);
	return rc;
}

/* ---- pbt in a status --------------------------------------------------- */

/* Trial t's first job: the prev_job of its first exploit, else its job now. */
static int64_t pbt_first_job(const struct store_pbt_row *rows, size_t nrows, uint32_t t, int64_t now)
{
	for (size_t i = 0; i < nrows; i++)
		if (rows[i].trial == t && rows[i].exploit)
			return rows[i].prev_job;
	return now;
}

/* A member's rows, as its "lineage". */
static json_t *pbt_trial_lineage(const struct store_pbt_row *rows, size_t nrows, uint32_t t)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < nrows; i++) {
		const struct store_pbt_row *r = &rows[i];

		if (r->trial != t)
			continue;
		/* exploit_failed: a continue that names another member, whose exploit could not be built */
		json_array_append_new(a, json_pack("{s:i, s:i, s:s, s:i, s:i, s:o, s:i, s:I, s:I, s:I, s:o, s:b}",
						   "decision", (int)r->interval, "epoch", (int)r->epoch, "action",
						   r->exploit ? "exploit" : "continue", "rank", (int)r->rank, "of",
						   (int)r->ranked, "metric", r->has_metric ? json_real(r->metric) : json_null(),
						   "from_trial", (int)r->from_trial, "from_job", (json_int_t)r->from_job,
						   "job", (json_int_t)r->job, "prev_job", (json_int_t)r->prev_job, "params",
						   json_loads(r->params, 0, NULL), "exploit_failed",
						   !r->exploit && r->from_trial != r->trial));
	}
	return a;
}

/* The segments that made job `job` of trial t, oldest first: each the
 * trial and job that trained epochs [from_epoch, to_epoch] and its
 * parameters (a job's are those it was created with). */
static json_t *pbt_best_lineage(const struct store_pbt_row *rows, size_t nrows, const struct store_trial *tv,
				size_t n, uint32_t t, int64_t job, uint32_t to)
{
	json_t *a = json_array();

	for (int guard = 0; a && guard < 100000; guard++) {
		const struct store_pbt_row *made = NULL;
		json_t *seg;

		for (size_t i = 0; i < nrows && !made; i++)
			if (rows[i].exploit && rows[i].job == job)
				made = &rows[i];
		if (made) {
			seg = json_pack("{s:i, s:I, s:i, s:i, s:o}", "trial", (int)t, "job", (json_int_t)job, "from_epoch",
					(int)made->epoch, "to_epoch", (int)to, "params", json_loads(made->params, 0, NULL));
		} else {
			const char *p = "{}";

			for (size_t i = 0; i < n; i++)
				if (tv[i].trial == t)
					p = tv[i].params;
			seg = json_pack("{s:i, s:I, s:i, s:i, s:o}", "trial", (int)t, "job", (json_int_t)job, "from_epoch", 0,
					"to_epoch", (int)to, "params", json_loads(p, 0, NULL));
		}
		json_array_insert_new(a, 0, seg);
		if (!made)
			break;
		t = made->from_trial;
		job = made->from_job;
		to = made->epoch;
	}
	return a;
}

/* A member's decision and why, from its job's state and its last row. */
static void pbt_decision_of(const struct store_trial *tr, const struct sweep_spec *sp, bool killed,
			    const struct store_pbt_row *rows, size_t nrows, uint32_t decided, const char **d,
			    char *why, size_t n)
{
	const struct store_pbt_row *last = NULL;
	uint32_t exploits = 0;

	for (size_t i = 0; i < nrows; i++)
		if (rows[i].trial == tr->trial) {
			last = &rows[i];
			exploits += rows[i].exploit;
		}
	switch (tr->state) {
	case JOB_DONE:
		if (tr->epoch >= sp->max_epochs) {
			*d = "completed";
			snprintf(why, n, "trained to max_epochs %u (exploited %u time%s)", tr->epoch, exploits,
				 exploits == 1 ? "" : "s");
		} else {
			*d = "pending";
			snprintf(why, n, "decision %u (epoch %u) waits for every member to report", decided + 1, tr->epoch);
		}
		return;
	case JOB_QUEUED:
	case JOB_RUNNING:
		if (last && last->exploit) {
			*d = "exploited";
			snprintf(why, n, "rank %u of %u at epoch %u: goes on from trial %u's job %" PRId64 " (epoch %u), perturbed",
				 last->rank, last->ranked, last->epoch, last->from_trial, last->from_job, last->epoch);
		} else if (last && last->from_trial != last->trial) {
			*d = "continued";
			snprintf(why, n, "rank %u of %u at epoch %u: its exploit of trial %u's job %" PRId64 " (epoch %u) could "
				 "not be built (traind's log says why); goes on unchanged to %u epochs", last->rank,
				 last->ranked, last->epoch, last->from_trial, last->from_job, last->epoch, tr->epochs);
		} else if (last) {
			*d = "continued";
			snprintf(why, n, "rank %u of %u at epoch %u: goes on to %u epochs", last->rank, last->ranked,
				 last->epoch, tr->epochs);
		} else {
			*d = tr->state == JOB_RUNNING ? "running" : "pending";
			snprintf(why, n, "%s its first %u epochs", tr->state == JOB_RUNNING ? "training" : "waiting to train",
				 tr->epochs);
		}
		return;
	case JOB_KILLED:
		*d = "stopped";
		snprintf(why, n, "%s", killed ? "the sweep was killed" : "its job was killed");
		return;
	case JOB_FAILED:
		*d = "failed";
		snprintf(why, n, "its job failed (trainctl status %" PRId64 ")", tr->job);
		return;
	default:
		*d = "paused";
		snprintf(why, n, "its job is paused (trainctl resume %" PRId64 ")", tr->job);
		return;
	}
}

/* The sweep as Status shows it (a new object; NULL: out of memory or a
 * bad stored spec, in err). */
static json_t *sweep_json(struct store *st, const struct store_sweep *sw, bool with_trials, struct tr_err *err)
{
	json_t *spec = json_loads(sw->spec, 0, NULL), *o = NULL, *trials = NULL, *best = json_null();
	json_t *by_state = json_object();
	unsigned counts[JOB_STATE_COUNT] = { 0 };
	struct store_trial *tv = NULL;
	struct sweep_spec sp;
	size_t n = 0, stopped = 0, done = 0;
	const struct store_trial *b = NULL;
	const char *state;
	struct sweep_decision *dec = NULL;
	struct store_pbt_row *lin = NULL;
	size_t nlin = 0;
	uint32_t decided = 0;
	bool adaptive;

	memset(&sp, 0, sizeof(sp));
	if (sweep_spec_parse(spec, &sp, err) < 0)
		goto fail;
	if (store_sweep_trials(st, sw->id, monitor_name(sp.metric), &tv, &n, err) < 0)
		goto fail;
	adaptive = sweep_adaptive(&sp);
	dec = calloc(n ? n : 1, sizeof(*dec));
	if (!dec)
		goto oom;
	if (adaptive && decide_from_store(st, &sp, tv, n, dec, err) < 0)
		goto fail;
	if (sp.searcher == SWEEP_PBT && store_pbt_lineage(st, sw->id, &lin, &nlin, err) < 0)
		goto fail;
	for (size_t i = 0; i < nlin; i++)
		if (lin[i].interval > decided)
			decided = lin[i].interval;
	trials = json_array();
	if (!trials)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		const struct store_trial *tr = &tv[i];
		json_t *params = json_loads(tr->params, 0, NULL), *row;
		const char *d;
		char why[160];

		counts[tr->state]++;
		if (tr->state == JOB_DONE)
			done++;
		if (tr->state == JOB_DONE && tr->has_metric &&
		    (!(adaptive || sp.searcher == SWEEP_PBT) || tr->epoch == sp.max_epochs) &&
		    (!b || sweep_metric_better(&sp, tr->metric, b->metric)))
			b = tr;   /* ties: the lower trial number, met first */
		if (sp.searcher == SWEEP_PBT) {
			const char *now = NULL;

			for (size_t k = 0; k < nlin; k++)   /* its parameters now: its last row's */
				if (lin[k].trial == tr->trial)
					now = lin[k].params;
			if (now) {
				json_decref(params);
				params = json_loads(now, 0, NULL);
			}
			pbt_decision_of(tr, &sp, sw->killed, lin, nlin, decided, &d, why, sizeof(why));
		} else {
			decision_of(tr, sw->killed, &sp, &dec[i], &d, why, sizeof(why));
		}
		/* Stopped for good: not queued, running or paused, nor done at a
		 * rung or segment with a promotion, a rung's ranking or a pbt
		 * decision still to come (between a rung's last report and its
		 * promotions, and after a restart, its jobs are all done: the
		 * sweep is not, and `sweep wait` must not return). */
		if (tr->state != JOB_QUEUED && tr->state != JOB_RUNNING && tr->state != JOB_PAUSED &&
		    !(sp.searcher == SWEEP_PBT && tr->state == JOB_DONE && tr->epoch < sp.max_epochs) &&
		    !(tr->state == JOB_DONE && (strcmp(d, "promoted") == 0 || strcmp(d, "pending") == 0)))
			stopped++;
		row = json_pack("{s:i, s:I, s:o, s:s, s:i, s:i, s:o, s:s, s:s}", "trial", (int)tr->trial, "job",
				(json_int_t)tr->job, "params", params ? params : json_object(), "state",
				job_state_name(tr->state), "epochs", (int)tr->epoch, "planned_epochs",
				(int)tr->epochs, "metric", tr->has_metric ? json_real(tr->metric) : json_null(),
				"decision", d, "reason", why);
		if (row && adaptive)
			json_object_set_new(row, "rung", json_integer(dec[i].rung));
		if (row && sp.searcher == SWEEP_HYPERBAND)
			json_object_set_new(row, "bracket", json_integer(sweep_bracket_of(&sp, tr->trial)));
		if (row && sp.searcher == SWEEP_PBT) {   /* its first parameters, its jobs, its rows */
			json_t *jobs = json_array();

			json_object_set_new(row, "initial_params", json_loads(tr->params, 0, NULL));
			json_array_append_new(jobs, json_integer(pbt_first_job(lin, nlin, tr->trial, tr->job)));
			for (size_t k = 0; k < nlin; k++)
				if (lin[k].trial == tr->trial && lin[k].exploit)
					json_array_append_new(jobs, json_integer(lin[k].job));
			json_object_set_new(row, "jobs", jobs);
			json_object_set_new(row, "lineage", pbt_trial_lineage(lin, nlin, tr->trial));
		}
		if (!row || json_array_append_new(trials, row) < 0)
			goto oom;
	}
	if (b) {
		json_decref(best);
		best = json_pack("{s:i, s:I, s:f, s:o}", "trial", (int)b->trial, "job", (json_int_t)b->job, "metric",
				 b->metric, "params", json_loads(b->params, 0, NULL));
		if (best && sp.searcher == SWEEP_PBT) {   /* its parameters now, and how its weights were made */
			json_t *segs = pbt_best_lineage(lin, nlin, tv, n, b->trial, b->job, b->epoch);

			if (segs && json_array_size(segs))
				json_object_set(best, "params",
						json_object_get(json_array_get(segs, json_array_size(segs) - 1), "params"));
			json_object_set_new(best, "lineage", segs ? segs : json_null());
		}
	}
	state = sw->killed ? "killed" : sw->paused ? "paused" : stopped == n ? "done" : "running";
	o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:i, s:i, s:i, s:O, s:O, s:o}", "id", (json_int_t)sw->id,
		      "name", sw->name, "searcher", sweep_searcher_name(sp.searcher), "state", state, "metric",
		      monitor_name(sp.metric), "seed", (json_int_t)sp.seed, "max_parallel", (int)sp.max_parallel,
		      "trials_total", (int)n, "trials_done", (int)done, "params", json_object_get(spec, "params"),
		      "config", json_object_get(spec, "config") ? json_object_get(spec, "config") : json_null(),
		      "best", best);
	best = NULL;
	if (!o)
		goto oom;
	for (int k = 0; by_state && k < JOB_STATE_COUNT; k++)
		json_object_set_new(by_state, job_state_name((enum job_state)k), json_integer(counts[k]));
	json_object_set_new(o, "trials_by_state", by_state ? by_state : json_null());
	by_state = NULL;
	if (adaptive) {   /* sha: "rungs"; hyperband: "brackets", each with its rungs and trials */
		json_t *br = json_array();

		for (uint32_t bk = 0; br && bk < sweep_brackets(&sp); bk++) {
			uint32_t rungs[SWEEP_RUNGS_MAX], nt = 0;
			uint32_t nr = sweep_bracket_rungs(&sp, bk, rungs);
			json_t *r = json_array();

			for (uint32_t k = 0; r && k < nr; k++)
				json_array_append_new(r, json_integer(rungs[k]));
			for (uint32_t t = 0; t < sp.trials; t++)
				nt += sweep_bracket_of(&sp, t) == bk;
			if (sp.searcher == SWEEP_SHA)
				json_object_set_new(o, "rungs", r ? r : json_null());
			else
				json_array_append_new(br, json_pack("{s:o, s:i}", "rungs", r ? r : json_array(),
								    "trials", (int)nt));
		}
		if (sp.searcher == SWEEP_HYPERBAND)
			json_object_set_new(o, "brackets", br ? br : json_null());
		else
			json_decref(br);
		json_object_set_new(o, "reduction_factor", json_integer(sp.reduction_factor));
	}
	if (sp.searcher == SWEEP_PBT) {
		json_object_set_new(o, "population", json_integer(sp.trials));
		json_object_set_new(o, "interval", json_integer(sp.interval));
		json_object_set_new(o, "quantile", json_real(sp.quantile));
		json_object_set_new(o, "perturb", json_real(sp.perturb));
		json_object_set_new(o, "max_epochs", json_integer(sp.max_epochs));
		json_object_set_new(o, "decisions", json_integer(decided));
		json_object_set_new(o, "decisions_total", json_integer(sweep_pbt_decisions(&sp)));
	}
	if (with_trials && json_object_set_new(o, "trials", trials) < 0)
		goto oom_o;
	if (!with_trials)
		json_decref(trials);
	json_decref(spec);
	store_trials_free(tv, n);
	store_pbt_rows_free(lin, nlin);
	sweep_spec_clear(&sp);
	free(dec);
	return o;
oom_o:
	json_decref(o);
	trials = NULL;
oom:
	tr_err_set(err, -ENOMEM, "out of memory");
fail:
	json_decref(by_state);
	json_decref(best);
	json_decref(trials);
	json_decref(spec);
	store_trials_free(tv, n);
	store_pbt_rows_free(lin, nlin);
	sweep_spec_clear(&sp);
	free(dec);
	return NULL;
}

static void sweep_status_work(struct bg_task *t)
{
	struct sweep_read *r = (struct sweep_read *)t;
	struct store *st;
	struct store_sweep sw;
	json_t *o;
	int rc;

	rc = bg_store(t, &st, &t->err);
	if (rc < 0) {
		bg_fail(t, PROTO_FROM_STORE, rc);
		return;
	}
	rc = store_sweep_get(st, r->id, &sw, &t->err);
	if (rc == -ENOENT) {
		t->detail.has_id = true;
		t->detail.id = r->id;
		bg_fail(t, PROTO_FROM_SWEEP, SWEEP_E_NO_SUCH);
		return;
	}
	if (rc < 0) {
		bg_fail(t, PROTO_FROM_STORE, rc);
		return;
	}
	o = sweep_json(st, &sw, true, &t->err);
	store_sweep_clear(&sw);
	if (!o) {
		bg_fail(t, PROTO_FROM_STORE, t->err.code ? t->err.code : -ENOMEM);
		return;
	}
	t->result = json_pack("{s:o}", "sweep", o);
}

static void sweep_list_work(struct bg_task *t)
{
	struct store *st;
	struct store_sweep *v = NULL;
	size_t n = 0;
	json_t *arr = json_array();
	int rc;

	rc = bg_store(t, &st, &t->err);
	if (rc == 0)
		rc = store_sweep_list(st, &v, &n, &t->err);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		json_t *o = sweep_json(st, &v[i], false, &t->err);

		if (!o || json_array_append_new(arr, o) < 0)
			rc = t->err.code ? t->err.code : -ENOMEM;
	}
	store_sweeps_free(v, n);
	if (rc < 0 || !arr) {
		json_decref(arr);
		bg_fail(t, PROTO_FROM_STORE, rc < 0 ? rc : -ENOMEM);
		return;
	}
	t->result = json_pack("{s:o}", "sweeps", arr);
}

static void sweep_read_release(struct bg_task *t)
{
	free(t);
}

void m_sweep_status(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", NULL };
	struct sweep_read *r;
	int64_t id = 0;

	(void)fds;
	if (!params_only(c, keys) || !params_int(c, "id", true, 1, INT64_MAX, &id))
		return;
	if (!(r = bg_task_new(c, sizeof(*r), sweep_status_work, NULL, sweep_read_release)))
		return;
	r->id = id;
	bg_submit(d->bg, &r->t);
}

void m_sweep_list(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { NULL };
	struct sweep_read *r;

	(void)fds;
	if (!params_only(c, keys))
		return;
	if (!(r = bg_task_new(c, sizeof(*r), sweep_list_work, NULL, sweep_read_release)))
		return;
	bg_submit(d->bg, &r->t);
}

/* ---- SweepKill, SweepPause, SweepResume, SweepDelete ------------------ */

struct sweep_verb {
	struct sweep_done done;      /* first */
	struct call *c;              /* NULL once the client has gone */
};

static void sweep_verb_reply(struct call *c, const struct sweep_done *done)
{
	if (done->code == SWEEP_OK) {
		call_reply(c, json_pack("{s:I, s:s}", "id", (json_int_t)done->id, "state", done->state), false);
		return;
	}
	call_error(c, proto_error_of(PROTO_FROM_SWEEP, done->code),
		   &(struct proto_detail){ .has_id = true, .id = done->id, .message = done->message,
					   .state = done->state[0] ? done->state : "unknown" });
}

static void sweep_verb_done(struct sweep_done *done)
{
	struct sweep_verb *k = (struct sweep_verb *)done;

	if (k->c) {
		call_on_cancel(k->c, NULL, NULL);
		sweep_verb_reply(k->c, done);
	}
	free(k);
}

static void sweep_verb_gone(void *arg)
{
	struct sweep_verb *k = arg;

	k->c = NULL;   /* what the verb started goes on */
}

enum sweep_op { OP_KILL, OP_PAUSE, OP_RESUME, OP_DELETE };

static void sweep_verb(struct daemon *d, struct call *c, enum sweep_op op)
{
	static const char *const keys[] = { "id", NULL };
	static const char *const delete_keys[] = { "id", "force", NULL };
	struct sweep_verb *k;
	bool force = false;
	int64_t id = 0;
	int rc;

	if (!params_only(c, op == OP_DELETE ? delete_keys : keys) ||
	    !params_int(c, "id", true, 1, INT64_MAX, &id) || !params_bool(c, "force", &force))
		return;
	k = calloc(1, sizeof(*k));
	if (!k) {
		call_error(c, PROTO_STORAGE_ERROR, &(struct proto_detail){ .message = "out of memory" });
		return;
	}
	k->done.fn = sweep_verb_done;
	k->c = c;
	switch (op) {
	case OP_KILL: rc = sweeps_kill(d->sweeps, id, &k->done); break;
	case OP_PAUSE: rc = sweeps_pause(d->sweeps, id, &k->done); break;
	case OP_RESUME: rc = sweeps_resume(d->sweeps, id, &k->done); break;
	default: rc = sweeps_remove(d->sweeps, id, force, &k->done); break;
	}
	if (rc == 1) {
		call_on_cancel(c, sweep_verb_gone, k);
		return;
	}
	sweep_verb_reply(c, &k->done);
	free(k);
}

void m_sweep_kill(struct daemon *d, struct call *c, struct call_fds *fds)
{
	(void)fds;
	sweep_verb(d, c, OP_KILL);
}

void m_sweep_pause(struct daemon *d, struct call *c, struct call_fds *fds)
{
	(void)fds;
	sweep_verb(d, c, OP_PAUSE);
}

void m_sweep_resume(struct daemon *d, struct call *c, struct call_fds *fds)
{
	(void)fds;
	sweep_verb(d, c, OP_RESUME);
}

void m_sweep_delete(struct daemon *d, struct call *c, struct call_fds *fds)
{
	(void)fds;
	sweep_verb(d, c, OP_DELETE);
}
