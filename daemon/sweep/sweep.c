/*
 * sweep.c - the sweep registry and the scheduler's gate. See
 * daemon/sweep/sweep.h.
 */
#include "daemon/sweep/sweep.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "traind/sched.h"
#include "daemon/core/log.h"
#include "daemon/sweep/pbt.h"

struct sweep {
	int64_t id;
	uint32_t max_parallel;
	bool killed, paused;
	int64_t *jobs;               /* the trials' jobs, in trial order, owned */
	size_t njobs;
	struct sweep_spec spec;      /* parsed from the store's (or the start's) */
	struct sweep_result *res;    /* njobs: each trial's metric at the rungs' epochs, owned */
	struct sweep_decision *dec;  /* njobs: scratch for sweep_decide, owned */
	char name[STORE_NAME_MAX];   /* the spec's: its exploits' jobs are named after it */
	uid_t uid;                   /* the spec's: whose share its background work takes */
	/* pbt: the members are the trials; jobs[k] is member k's current job */
	uint32_t decided;            /* decisions recorded (sweep_lineage) */
	bool busy;                   /* a decision on its way to the store */
	bool stalled;                /* a decision could not be stored: none until resume or restart */
	char **params;               /* njobs: each member's parameters now (JSON text), owned */
	uint32_t *bepoch;            /* njobs: the last segment boundary its current job committed */
	double *bmetric;             /* njobs: its metric there */
	int64_t *past;               /* the members' earlier jobs (an exploit's prev_job), owned */
	size_t npast, cappast;
};

struct sweeps {
	struct jobs *js;
	struct sweeps_pool pool;     /* pbt: where exploits are built */
	struct dscache *dsc;
	const char *db_path;
	struct storeq *sq;
	struct sweep *v;
	size_t n, cap;
};

int sweeps_new(struct sweeps **out, struct jobs *js, const struct sweeps_pool *pool, struct dscache *dsc,
	       const char *db_path)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->js = js;
	(*out)->pool = *pool;
	(*out)->dsc = dsc;
	(*out)->db_path = db_path;
	return 0;
}

static void sweep_clear(struct sweep *s)
{
	free(s->jobs);
	free(s->res);
	free(s->dec);
	for (size_t k = 0; s->params && k < s->njobs; k++)
		free(s->params[k]);
	free(s->params);
	free(s->bepoch);
	free(s->bmetric);
	free(s->past);
	sweep_spec_clear(&s->spec);
}

void sweeps_set_store(struct sweeps *sw, struct storeq *sq)
{
	sw->sq = sq;
}

void sweeps_free(struct sweeps *sw)
{
	if (!sw)
		return;
	for (size_t i = 0; i < sw->n; i++)
		sweep_clear(&sw->v[i]);
	free(sw->v);
	free(sw);
}

static struct sweep *find(struct sweeps *sw, int64_t id)
{
	for (size_t i = 0; i < sw->n; i++)
		if (sw->v[i].id == id)
			return &sw->v[i];
	return NULL;
}

bool sweeps_exists(struct sweeps *sw, int64_t id)
{
	return find(sw, id) != NULL;
}

/* Takes what spec owns, always. */
/* pbt: each member's first parameters (a pure function of the spec) and
 * no boundary reported yet. */
static int pbt_init(struct sweep *s)
{
	size_t n = s->njobs ? s->njobs : 1;

	s->params = calloc(n, sizeof(*s->params));
	s->bepoch = calloc(n, sizeof(*s->bepoch));
	s->bmetric = calloc(n, sizeof(*s->bmetric));
	if (!s->params || !s->bepoch || !s->bmetric)
		return -ENOMEM;
	for (size_t k = 0; k < s->njobs; k++) {
		json_t *p = sweep_trial_params(&s->spec, (uint32_t)k);

		s->params[k] = p ? json_dumps(p, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
		json_decref(p);
		if (!s->params[k])
			return -ENOMEM;
	}
	return 0;
}

static int push_past(struct sweep *s, int64_t job)
{
	if (s->npast == s->cappast) {
		size_t cap = s->cappast ? s->cappast * 2 : 8;
		int64_t *v = realloc(s->past, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->past = v;
		s->cappast = cap;
	}
	s->past[s->npast++] = job;
	return 0;
}

/* The uid a stored spec (its JSON) names, or the daemon's own. */
static uid_t spec_uid(const json_t *spec)
{
	const json_t *u = json_object_get(spec, "uid");

	if (json_is_integer(u) && json_integer_value(u) >= 0 && json_integer_value(u) <= (json_int_t)UINT32_MAX)
		return (uid_t)json_integer_value(u);
	return geteuid();
}

static struct sweep *add(struct sweeps *sw, int64_t id, const char *name, uid_t uid, struct sweep_spec *spec,
			 bool killed, bool paused, const int64_t *job_ids, size_t n)
{
	struct sweep *s;

	if (sw->n == sw->cap) {
		size_t cap = sw->cap ? sw->cap * 2 : 8;
		struct sweep *v = realloc(sw->v, cap * sizeof(*v));

		if (!v) {
			sweep_spec_clear(spec);
			return NULL;
		}
		sw->v = v;
		sw->cap = cap;
	}
	s = &sw->v[sw->n];
	memset(s, 0, sizeof(*s));
	s->jobs = malloc((n ? n : 1) * sizeof(*s->jobs));
	s->res = calloc(n ? n : 1, sizeof(*s->res));
	s->dec = calloc(n ? n : 1, sizeof(*s->dec));
	if (!s->jobs || !s->res || !s->dec) {
		free(s->jobs);
		free(s->res);
		free(s->dec);
		sweep_spec_clear(spec);
		return NULL;
	}
	if (n)
		memcpy(s->jobs, job_ids, n * sizeof(*s->jobs));
	s->njobs = n;
	s->id = id;
	s->spec = *spec;
	memset(spec, 0, sizeof(*spec));
	snprintf(s->name, sizeof(s->name), "%s", name ? name : "sweep");
	s->uid = uid;
	if (s->spec.searcher == SWEEP_PBT && pbt_init(s) < 0) {
		sweep_clear(s);
		return NULL;
	}
	s->max_parallel = s->spec.max_parallel ? s->spec.max_parallel : 1;
	s->killed = killed;
	s->paused = paused;
	sw->n++;
	return s;
}

int sweeps_add(struct sweeps *sw, int64_t id, const char *spec_json, const int64_t *job_ids, size_t n)
{
	json_t *j = json_loads(spec_json, 0, NULL);
	struct sweep_spec sp;
	struct tr_err err = { 0 };
	int rc = sweep_spec_parse(j, &sp, &err);

	if (rc < 0) {
		json_decref(j);
		return rc;
	}
	rc = add(sw, id, json_string_value(json_object_get(j, "name")), spec_uid(j), &sp, false, false, job_ids, n)
		     ? 0 : -ENOMEM;
	json_decref(j);
	return rc;
}

/* Record row's metric for trial k of s when its epoch is a rung's. */
static void note_row(struct sweep *s, size_t k, const struct history_row *row)
{
	uint32_t rungs[SWEEP_RUNGS_MAX];
	uint32_t nr = sweep_trial_rungs(&s->spec, (uint32_t)k, rungs);

	if (s->spec.searcher == SWEEP_PBT) {   /* a segment's end: what a decision ranks */
		if (row->epoch % s->spec.interval == 0 || row->epoch == s->spec.max_epochs) {
			s->bepoch[k] = row->epoch;
			s->bmetric[k] = sched_monitored(s->spec.metric, row->val_loss, row->val_acc,
							row->val_macro_acc, row->val_mae, row->val_rmse);
		}
		return;
	}

	for (uint32_t r = 0; r < nr; r++)
		if (rungs[r] == row->epoch) {
			s->res[k].has[r] = true;
			s->res[k].metric[r] = sched_monitored(s->spec.metric, row->val_loss, row->val_acc,
							      row->val_macro_acc, row->val_mae, row->val_rmse);
		}
}

/* pbt: the decisions recorded, each member's parameters now and its
 * earlier jobs, from the lineage. */
static int pbt_recover(struct sweep *w, struct store *s, struct tr_err *err)
{
	struct store_pbt_row *rows = NULL;
	size_t n = 0;
	int rc = store_pbt_lineage(s, w->id, &rows, &n, err);

	for (size_t i = 0; rc == 0 && i < n; i++) {
		const struct store_pbt_row *r = &rows[i];
		char *p;

		if (r->trial >= w->njobs)
			continue;
		if (r->interval > w->decided)
			w->decided = r->interval;
		if (!(p = strdup(r->params)) || (r->exploit && push_past(w, r->prev_job) < 0)) {
			free(p);
			rc = tr_err_set(err, -ENOMEM, "out of memory");
			break;
		}
		free(w->params[r->trial]);
		w->params[r->trial] = p;
	}
	store_pbt_rows_free(rows, n);
	return rc;
}

int sweeps_recover(struct sweeps *sw, struct store *s, struct tr_err *err)
{
	struct store_sweep *list = NULL;
	size_t n = 0;
	int rc;

	rc = store_sweep_list(s, &list, &n, err);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct store_trial *t = NULL;
		size_t nt = 0;
		struct sweep_spec sp;
		json_t *spec = json_loads(list[i].spec, 0, NULL);
		uid_t uid = spec_uid(spec);
		int64_t *ids = NULL;

		rc = sweep_spec_parse(spec, &sp, err);
		json_decref(spec);
		if (rc < 0) {
			tr_err_prefix(err, "sweep %" PRId64 "'s stored spec", list[i].id);
			break;
		}
		rc = store_sweep_trials(s, list[i].id, monitor_name(sp.metric), &t, &nt, err);
		if (rc == 0 && !(ids = malloc((nt ? nt : 1) * sizeof(*ids))))
			rc = tr_err_set(err, -ENOMEM, "out of memory");
		for (size_t k = 0; rc == 0 && k < nt; k++)
			ids[k] = t[k].job;
		if (rc == 0) {
			struct sweep *w = add(sw, list[i].id, list[i].name, uid, &sp, list[i].killed, list[i].paused, ids,
					      nt);

			if (!w)
				rc = tr_err_set(err, -ENOMEM, "out of memory");
			if (rc == 0 && w->spec.searcher == SWEEP_PBT)
				rc = pbt_recover(w, s, err);
			/* the rungs' metrics (pbt: the segments' ends) from the trials' histories */
			for (size_t k = 0; rc == 0 && (sweep_adaptive(&w->spec) || w->spec.searcher == SWEEP_PBT) &&
					   k < nt; k++) {
				struct history_row *rows = NULL;
				size_t nrows = 0;

				rc = store_history(s, ids[k], &rows, &nrows, err);
				for (size_t h = 0; rc == 0 && h < nrows; h++)
					note_row(w, k, &rows[h]);
				free(rows);
			}
		} else {
			sweep_spec_clear(&sp);
		}
		free(ids);
		store_trials_free(t, nt);
	}
	store_sweeps_free(list, n);
	return rc;
}

static struct sweep *sweep_of_job(struct sweeps *sw, int64_t job, size_t *trial)
{
	for (size_t i = 0; i < sw->n; i++)
		for (size_t k = 0; k < sw->v[i].njobs; k++)
			if (sw->v[i].jobs[k] == job) {
				if (trial)
					*trial = k;
				return &sw->v[i];
			}
	return NULL;
}

void sweeps_epoch(struct sweeps *sw, const struct job *j, const struct history_row *row)
{
	size_t k;
	struct sweep *s = sweep_of_job(sw, j->id, &k);

	if (s)
		note_row(s, k, row);
}

/* ---- the searcher's decisions, acted on ---------------------------------- */

enum trial_act { ACT_KILL, ACT_PAUSE, ACT_RESUME, ACT_DELETE };

static void evaluate_pbt(struct sweeps *sw, struct sweep *s);
static void act_trials(struct sweeps *sw, struct sweep *s, enum trial_act act);

struct resume_one {
	struct jobs_done done;       /* first */
	int64_t sweep, job;
	uint32_t epochs;
};

static void resume_one_done(struct jobs_done *done)
{
	struct resume_one *r = (struct resume_one *)done;

	if (done->result.code != JOBS_OK)
		log_err("sweep %" PRId64 ": job %" PRId64 " not promoted to %u epochs: %s", r->sweep, r->job,
			r->epochs, done->result.message);
	free(r);
}

/* Decide s's rungs from what has committed, and continue each promoted
 * trial's own job to its new rung (resume --epochs). Idempotent: a trial
 * whose job already trains to those epochs is left alone, so a decision
 * lost in a crash (the job done, its epochs not yet raised) is taken
 * again at the next start. */
static void evaluate(struct sweeps *sw, struct sweep *s)
{
	if (s->spec.searcher == SWEEP_PBT) {
		evaluate_pbt(sw, s);
		return;
	}
	if (s->killed || s->paused || !sweep_adaptive(&s->spec))
		return;
	for (size_t k = 0; k < s->njobs; k++) {
		struct job *j = jobs_find(sw->js, s->jobs[k]);

		s->res[k].stopped = !j || j->state == JOB_FAILED || j->state == JOB_KILLED;
	}
	sweep_decide(&s->spec, s->res, (uint32_t)s->njobs, s->dec);
	for (size_t k = 0; k < s->njobs; k++) {
		struct job *j = jobs_find(sw->js, s->jobs[k]);
		struct resume_one *r;
		int rc;

		if (!j || s->dec[k].epochs <= j->committed_epoch || j->state != JOB_DONE || !job_settled(j) ||
		    jobs_shutting_down(sw->js))
			continue;
		r = calloc(1, sizeof(*r));
		if (!r) {
			log_err("sweep %" PRId64 ": out of memory promoting job %" PRId64, s->id, j->id);
			continue;
		}
		r->done.fn = resume_one_done;
		r->sweep = s->id;
		r->job = j->id;
		r->epochs = s->dec[k].epochs;
		log_notice("sweep %" PRId64 ": trial %zu (job %" PRId64 ") promoted to rung %u: %u epochs (rank %u of %u)",
			   s->id, k, j->id, s->dec[k].rung, s->dec[k].epochs, s->dec[k].rank, s->dec[k].of);
		rc = jobs_resume(sw->js, j, false, s->dec[k].epochs, 0, &r->done);
		if (rc != JOBS_PENDING)
			resume_one_done(&r->done);
	}
}


/* ---- pbt: decisions, exploits ------------------------------------------- */

/* A decision on its way: built off the loop (the exploits' jobs: the
 * pool's post), stored in one transaction with the jobs (jobs_start_group,
 * store_pbt_record). */
struct pbt_req {
	struct jobs_done done;
	struct jobs_group g;
	struct sweeps *sw;
	int64_t sweep;
	uint32_t k;                  /* the decision, from 1 */
	uint32_t n;                  /* members with a row (those not stopped) */
	struct store_pbt_row *rows;  /* n */
	char **row_params;           /* n, owned */
	struct pbt_exploit *x;       /* nx, in the order of the exploit rows, owned until their specs go to g */
	uint32_t nx;
	struct job_spec *specs;      /* nx: g's (those built, g.n of them) */
	int64_t *ids;                /* nx */
	int32_t keep;
	bool group;                  /* handed to jobs_start_group */
};

static void pbt_req_free(struct pbt_req *r)
{
	for (uint32_t i = 0; r->row_params && i < r->n; i++)
		free(r->row_params[i]);
	for (uint32_t i = 0; r->x && i < r->nx; i++)
		pbt_exploit_clear(&r->x[i], r->sw->dsc);
	if (!r->group)
		for (uint32_t i = 0; r->specs && i < r->nx; i++)
			job_spec_clear(r->sw->dsc, &r->specs[i]);
	free(r->row_params);
	free(r->rows);
	free(r->x);
	free(r->specs);
	free(r->ids);
	free(r);
}

/* The store thread: decision k with its exploits' jobs, one transaction. */
static int pbt_store_fn(struct store *st, struct jobs_group *g, struct tr_err *err)
{
	struct pbt_req *r = g->arg;
	struct store_pbt_job *pj = calloc(g->n ? g->n : 1, sizeof(*pj));
	int rc;

	if (!pj)
		return tr_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < g->n; i++) {
		const struct job_spec *sp = &g->specs[i];

		pj[i] = (struct store_pbt_job){
			.job = { .name = sp->name, .config_json = g->config_json[i], .epochs = sp->cfg.epochs,
				 .keep = sp->keep, .digest = sp->dataset_digest },
			.blob = sp->init_ckpt, .len = sp->init_len, .checksum = sp->init_checksum,
			.origin = { .text = sp->origin, .epoch = sp->origin_epoch, .step = sp->origin_step,
				    .is_epoch = sp->origin_is_epoch, .val_loss = sp->origin_val_loss,
				    .rows = sp->origin_rows, .nrows = sp->origin_epoch },
		};
	}
	rc = store_pbt_record(st, r->sweep, r->k, r->rows, r->n, pj, g->n, g->ids, err);
	free(pj);
	return rc;
}

/* The loop: stored, the new jobs in the registry: the members' jobs now. */
static void pbt_added(struct jobs_group *g)
{
	struct pbt_req *r = g->arg;
	struct sweep *s = find(r->sw, r->sweep);

	if (!s)
		return;
	for (uint32_t i = 0; i < r->n; i++) {
		const struct store_pbt_row *row = &r->rows[i];

		if (row->trial >= s->njobs)
			continue;
		if (row->exploit) {
			s->jobs[row->trial] = row->job;
			if (push_past(s, row->prev_job) < 0)
				log_err("sweep %" PRId64 ": out of memory: job %" PRId64 " stays when the sweep is removed",
					s->id, row->prev_job);
			log_notice("sweep %" PRId64 ": decision %u: trial %u (rank %u of %u) exploits trial %u: job %" PRId64
				   " from job %" PRId64 " epoch %u with %s", s->id, r->k, row->trial, row->rank, row->ranked,
				   row->from_trial, row->job, row->from_job, row->epoch, row->params);
		}
		free(s->params[row->trial]);
		s->params[row->trial] = r->row_params[i];
		r->row_params[i] = NULL;
	}
	s->decided = r->k;
	/* killed or paused while the decision was being stored: its new jobs too */
	if (s->killed)
		act_trials(r->sw, s, ACT_KILL);
	else if (s->paused)
		act_trials(r->sw, s, ACT_PAUSE);
}

static void pbt_stored(struct jobs_done *done)
{
	struct pbt_req *r = (struct pbt_req *)((char *)done - offsetof(struct pbt_req, done));
	struct sweep *s = find(r->sw, r->sweep);
	struct sweeps *sw = r->sw;

	if (s) {
		s->busy = false;
		if (done->result.code != JOBS_OK) {
			log_err("sweep %" PRId64 ": decision %u not recorded: %s", s->id, r->k, done->result.message);
			s->stalled = true;
		}
	}
	pbt_req_free(r);
	if (s && !s->stalled)
		evaluate_pbt(sw, s);   /* the continuing members go on */
}

static void pbt_work(void *data)
{
	struct pbt_req *r = data;

	for (uint32_t i = 0; i < r->nx; i++)
		pbt_build(&r->x[i], r->sw->db_path, r->sw->dsc);
}

/* Store the decision (its exploits built, or none). */
static void pbt_submit(struct pbt_req *r)
{
	struct sweep *s = find(r->sw, r->sweep);
	uint32_t ns = 0;
	int rc;

	if (!s || s->killed || s->paused || jobs_shutting_down(r->sw->js) || !r->sw->sq) {
		if (s)
			s->busy = false;   /* taken again when it may */
		pbt_req_free(r);
		return;
	}
	for (uint32_t i = 0, e = 0; i < r->n; i++) {
		struct store_pbt_row *row = &r->rows[i];
		struct pbt_exploit *x;
		char *own;

		if (!row->exploit)
			continue;
		x = &r->x[e++];
		if (x->rc == 0) {
			struct job_spec *sp = &r->specs[ns++];

			*sp = x->spec;   /* g takes what it owns */
			memset(&x->spec, 0, sizeof(x->spec));
			sp->keep = r->keep;
			snprintf(sp->name, sizeof(sp->name), "%.40s-t%u-d%u", s->name, row->trial, r->k);
			continue;
		}
		/* not built: the member continues unchanged, the row naming whom it
		 * was to copy; out of memory is no such outcome (a rerun would
		 * not run out): the decision waits for resume or a restart */
		if (x->rc == -ENOMEM || !(own = strdup(s->params[row->trial]))) {
			log_err("sweep %" PRId64 ": decision %u: out of memory%s%s; decided at `trainctl sweep resume` or a "
				"restart", s->id, r->k, x->rc == -ENOMEM ? ": " : "", x->rc == -ENOMEM ? x->err.msg : "");
			s->busy = false;
			s->stalled = true;
			pbt_req_free(r);
			return;
		}
		log_warn("sweep %" PRId64 ": decision %u: trial %u's exploit from job %" PRId64 " epoch %u cannot be built: "
			 "%s; it continues unchanged", s->id, r->k, row->trial, x->from_job, x->epoch, x->err.msg);
		free(r->row_params[i]);
		r->row_params[i] = own;
		row->params = own;
		row->exploit = false;
		row->job = row->prev_job;
	}
	r->g = (struct jobs_group){ .specs = r->specs, .n = ns, .ids = r->ids, .store_fn = pbt_store_fn,
				    .added = pbt_added, .arg = r };
	r->done.fn = pbt_stored;
	r->group = true;
	rc = jobs_start_group(r->sw->js, &r->g, &r->done);
	if (rc != JOBS_PENDING)
		pbt_stored(&r->done);
}

static void pbt_built(void *data)
{
	pbt_submit(data);
}

/* Continue the members into the segment after the last decision, then
 * take the next decision once every member not stopped has reported at
 * its epoch (its job done there). Idempotent: a member already training
 * there is left alone; a decision is taken once (busy until stored). */
static void evaluate_pbt(struct sweeps *sw, struct sweep *s)
{
	const struct sweep_spec *sp = &s->spec;
	uint32_t n = (uint32_t)s->njobs, b = sweep_pbt_boundary(sp, s->decided), nx = 0, nr = 0;
	struct sweep_pbt_member *m = NULL;
	struct sweep_pbt_choice *c = NULL;
	struct pbt_req *r = NULL;

	if (s->killed || s->paused || s->busy || s->stalled || jobs_shutting_down(sw->js) || !sw->sq)
		return;
	for (uint32_t k = 0; k < n; k++) {
		struct job *j = jobs_find(sw->js, s->jobs[k]);
		struct resume_one *ro;

		if (!j || j->state != JOB_DONE || !job_settled(j) || j->committed_epoch >= b)
			continue;
		if (!(ro = calloc(1, sizeof(*ro)))) {
			log_err("sweep %" PRId64 ": out of memory continuing job %" PRId64, s->id, j->id);
			continue;
		}
		ro->done.fn = resume_one_done;
		ro->sweep = s->id;
		ro->job = j->id;
		ro->epochs = b;
		if (jobs_resume(sw->js, j, false, b, 0, &ro->done) != JOBS_PENDING)
			resume_one_done(&ro->done);
	}
	if (s->decided >= sweep_pbt_decisions(sp))
		return;
	m = calloc(n ? n : 1, sizeof(*m));
	c = calloc(n ? n : 1, sizeof(*c));
	if (!m || !c)
		goto out;
	for (uint32_t k = 0; k < n; k++) {
		struct job *j = jobs_find(sw->js, s->jobs[k]);

		m[k].stopped = !j || j->state == JOB_FAILED || j->state == JOB_KILLED;
		if (m[k].stopped)
			continue;
		if (j->state != JOB_DONE || !job_settled(j) || s->bepoch[k] != b)
			goto out;   /* not every member has reported: undecided */
		m[k].has = true;
		m[k].metric = s->bmetric[k];
	}
	sweep_pbt_decide(sp, s->decided + 1, m, n, c);
	for (uint32_t k = 0; k < n; k++) {
		nr += c[k].ranked;
		nx += c[k].exploit;
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->rows = calloc(nr ? nr : 1, sizeof(*r->rows))) ||
	    !(r->row_params = calloc(nr ? nr : 1, sizeof(*r->row_params))) ||
	    !(r->x = calloc(nx ? nx : 1, sizeof(*r->x))) || !(r->specs = calloc(nx ? nx : 1, sizeof(*r->specs))) ||
	    !(r->ids = calloc(nx ? nx : 1, sizeof(*r->ids))))
		goto oom;
	r->sw = sw;
	r->sweep = s->id;
	r->k = s->decided + 1;
	r->nx = nx;
	for (uint32_t k = 0, e = 0; k < n; k++) {
		struct store_pbt_row *row;
		struct job *src;

		if (!c[k].ranked)
			continue;
		row = &r->rows[r->n];
		src = jobs_find(sw->js, s->jobs[c[k].source]);
		*row = (struct store_pbt_row){
			.trial = k, .exploit = c[k].exploit, .rank = c[k].rank, .ranked = c[k].of,
			.has_metric = !isnan(m[k].metric), .metric = m[k].metric, .epoch = b,
			.from_trial = c[k].source, .from_job = s->jobs[c[k].source], .job = s->jobs[k],
			.prev_job = s->jobs[k],
		};
		if (c[k].exploit) {
			json_t *from = json_loads(s->params[c[k].source], 0, NULL);
			json_t *np = from ? sweep_pbt_perturb(sp, r->k, k, from) : NULL;
			struct pbt_exploit *x = &r->x[e++];

			r->row_params[r->n] = np ? json_dumps(np, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
			json_decref(from);
			json_decref(np);
			x->from_job = row->from_job;
			x->epoch = b;
			x->epochs = sweep_pbt_boundary(sp, r->k);
			x->params_json = r->row_params[r->n] ? strdup(r->row_params[r->n]) : NULL;
			if (src) {
				snprintf(x->digest, sizeof(x->digest), "%s", src->dataset_digest);
				r->keep = src->keep;
			}
			if (!x->params_json)
				goto oom;
		} else {
			r->row_params[r->n] = strdup(s->params[k]);
			if (!r->row_params[r->n])
				goto oom;
			if (src)
				r->keep = src->keep;
		}
		row->params = r->row_params[r->n];
		r->n++;
	}
	s->busy = true;
	log_notice("sweep %" PRId64 ": decision %u at epoch %u: %u of %u members exploit", s->id, r->k, b, nx, nr);
	if (nx == 0) {
		pbt_submit(r);
	} else if (sw->pool.post(sw->pool.arg, s->uid, pbt_work, pbt_built, r) < 0) {
		s->busy = false;
		goto oom;
	}
	r = NULL;
	goto out;
oom:
	log_err("sweep %" PRId64 ": out of memory deciding; decided at the next change", s->id);
out:
	if (r)
		pbt_req_free(r);
	free(m);
	free(c);
}

void sweeps_changed(struct sweeps *sw)
{
	for (size_t i = 0; i < sw->n; i++)
		evaluate(sw, &sw->v[i]);
}

bool sweeps_may_start(struct sweeps *sw, const struct job *j)
{
	struct sweep *s = sweep_of_job(sw, j->id, NULL);
	uint32_t running = 0;

	if (!s)
		return true;
	if (s->killed || s->paused)
		return false;
	for (size_t k = 0; k < s->njobs; k++) {
		struct job *t = jobs_find(sw->js, s->jobs[k]);

		if (t && (t->worker_alive || t->target == JOB_RUNNING))
			running++;
	}
	return running < s->max_parallel;
}

/* ---- kill, pause, resume ------------------------------------------------ */

struct one_done {
	struct jobs_done done;       /* first */
};

static void one_done_fn(struct jobs_done *done)
{
	free(done);
}

static struct jobs_done *one_done_new(void)
{
	struct one_done *o = calloc(1, sizeof(*o));

	if (o)
		o->done.fn = one_done_fn;
	return o ? &o->done : NULL;
}

/* Act on every trial in one of the states `mask` (bits of enum job_state,
 * by its target): kill, pause or resume it. */

static void act_trials(struct sweeps *sw, struct sweep *s, enum trial_act act)
{
	for (size_t k = 0; k < s->njobs; k++) {
		struct job *j = jobs_find(sw->js, s->jobs[k]);
		struct jobs_done *d;
		int rc;

		if (!j)
			continue;
		if ((act == ACT_KILL || act == ACT_PAUSE) && j->target != JOB_QUEUED && j->target != JOB_RUNNING)
			continue;
		if (act == ACT_RESUME && j->target != JOB_PAUSED)
			continue;
		d = one_done_new();
		if (!d) {
			log_err("sweep %" PRId64 ": out of memory acting on job %" PRId64, s->id, j->id);
			continue;
		}
		switch (act) {
		case ACT_KILL: rc = jobs_kill(sw->js, j, 0, d); break;
		case ACT_PAUSE: rc = jobs_pause(sw->js, j, d); break;
		case ACT_RESUME: rc = jobs_resume(sw->js, j, false, 0, 0, d); break;
		default: rc = jobs_delete(sw->js, j, true, d); break;
		}
		if (rc != JOBS_PENDING)
			free(d);
	}
}

void sweeps_start(struct sweeps *sw)
{
	for (size_t i = 0; i < sw->n; i++) {
		if (sw->v[i].killed)
			act_trials(sw, &sw->v[i], ACT_KILL);
		else if (sw->v[i].paused)
			act_trials(sw, &sw->v[i], ACT_PAUSE);
	}
	sweeps_changed(sw);
}

static const char *state_of(const struct sweep *s)
{
	return s->killed ? "killed" : s->paused ? "paused" : "running";
}

struct state_req {
	struct sweeps *sw;
	int64_t id;
	char state[16];              /* what to record: "running", "paused", "killed", or "" to remove */
	struct sweep_done *done;
};

static int state_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct state_req *r = arg;

	if (!r->state[0])
		return store_sweep_delete(s, r->id, err);
	return store_sweep_set_state(s, r->id, r->state, err);
}

static void sweep_remove(struct sweeps *sw, struct sweep *s)
{
	size_t i = (size_t)(s - sw->v);

	act_trials(sw, s, ACT_DELETE);
	for (size_t k = 0; k < s->npast; k++) {   /* pbt: the members' earlier jobs (stopped: done) */
		struct job *j = jobs_find(sw->js, s->past[k]);
		struct jobs_done *d;

		if (j && (d = one_done_new()) && jobs_delete(sw->js, j, true, d) != JOBS_PENDING)
			free(d);
	}
	sweep_clear(s);
	sw->v[i] = sw->v[--sw->n];
}

static void state_done(void *arg, int rc, const struct tr_err *err)
{
	struct state_req *r = arg;
	struct sweep *s = find(r->sw, r->id);

	r->done->id = r->id;
	snprintf(r->done->state, sizeof(r->done->state), "%s", r->state[0] ? r->state : "removed");
	if (rc < 0) {
		r->done->code = SWEEP_E_STORAGE;
		snprintf(r->done->message, sizeof(r->done->message), "%s", err ? err->msg : "?");
	} else {
		r->done->code = SWEEP_OK;
		log_notice("sweep %" PRId64 ": %s", r->id, r->state[0] ? r->state : "removed");
		if (s && !r->state[0])
			sweep_remove(r->sw, s);
		else if (s && strcmp(r->state, "killed") == 0)
			act_trials(r->sw, s, ACT_KILL);
		else if (s && strcmp(r->state, "paused") == 0)
			act_trials(r->sw, s, ACT_PAUSE);
		else if (s) {
			s->stalled = false;   /* pbt: try the exploit again */
			act_trials(r->sw, s, ACT_RESUME);
			evaluate(r->sw, s);
		}
	}
	r->done->fn(r->done);
	free(r);
}

static int refuse(struct sweep_done *done, int code, const char *state, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int refuse(struct sweep_done *done, int code, const char *state, const char *fmt, ...)
{
	va_list ap;

	int o = 0;

	done->code = code;
	snprintf(done->state, sizeof(done->state), "%s", state ? state : "");
	if (code == SWEEP_E_INVALID_STATE)   /* the message names the sweep: the error's id is a sweep's */
		o = snprintf(done->message, sizeof(done->message), "sweep %" PRId64 " is %s: ", done->id, state);
	va_start(ap, fmt);
	vsnprintf(done->message + o, sizeof(done->message) - (size_t)o, fmt, ap);
	va_end(ap);
	return code;
}

/* Whether a trial of s is queued or running. */
static bool has_live_trials(struct sweeps *sw, const struct sweep *s)
{
	for (size_t k = 0; k < s->njobs; k++) {
		struct job *j = jobs_find(sw->js, s->jobs[k]);

		if (j && (j->target == JOB_QUEUED || j->target == JOB_RUNNING))
			return true;
	}
	return false;
}

static int change(struct sweeps *sw, int64_t id, const char *to, bool force, struct sweep_done *done)
{
	struct sweep *s = find(sw, id);
	struct state_req *r;

	done->id = id;
	if (!s)
		return refuse(done, SWEEP_E_NO_SUCH, NULL, "sweep %" PRId64 ": no such sweep", id);
	if (strcmp(to, "paused") == 0 && (s->killed || s->paused))
		return refuse(done, SWEEP_E_INVALID_STATE, state_of(s), "only a running sweep can be paused");
	if (strcmp(to, "running") == 0 && !s->paused)
		return refuse(done, SWEEP_E_INVALID_STATE, state_of(s), "only a paused sweep can be resumed");
	if (strcmp(to, "killed") == 0 && s->killed)
		return refuse(done, SWEEP_E_INVALID_STATE, state_of(s), "the sweep was killed already");
	if (!to[0] && !force && has_live_trials(sw, s))
		return refuse(done, SWEEP_E_INVALID_STATE, state_of(s),
			      "trials are queued or running: kill the sweep first, or rm --force");
	r = calloc(1, sizeof(*r));
	if (r) {
		r->sw = sw;
		r->id = id;
		snprintf(r->state, sizeof(r->state), "%s", to);
		r->done = done;
	}
	if (!r || storeq_submit(sw->sq, state_fn, r, state_done) < 0) {
		free(r);
		return refuse(done, SWEEP_E_STORAGE, NULL, "cannot record the sweep's state");
	}
	/* at once, so that no trial starts meanwhile; durable once done->fn runs */
	if (strcmp(to, "killed") == 0 || !to[0])
		s->killed = true;
	else if (strcmp(to, "paused") == 0)
		s->paused = true;
	else
		s->paused = false;
	return 1;
}

int sweeps_kill(struct sweeps *sw, int64_t id, struct sweep_done *done)
{
	return change(sw, id, "killed", false, done);
}

int sweeps_pause(struct sweeps *sw, int64_t id, struct sweep_done *done)
{
	return change(sw, id, "paused", false, done);
}

int sweeps_resume(struct sweeps *sw, int64_t id, struct sweep_done *done)
{
	return change(sw, id, "running", false, done);
}

int sweeps_remove(struct sweeps *sw, int64_t id, bool force, struct sweep_done *done)
{
	return change(sw, id, "", force, done);
}
