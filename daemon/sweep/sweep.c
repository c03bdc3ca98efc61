/*
 * sweep.c - the sweep registry and the scheduler's gate. See
 * daemon/sweep/sweep.h.
 */
#include "daemon/sweep/sweep.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/sched.h"
#include "daemon/core/log.h"

struct sweep {
	int64_t id;
	uint32_t max_parallel;
	bool killed, paused;
	int64_t *jobs;               /* the trials' jobs, in trial order, owned */
	size_t njobs;
	struct sweep_spec spec;      /* parsed from the store's (or the start's) */
	struct sweep_result *res;    /* njobs: each trial's metric at the rungs' epochs, owned */
	struct sweep_decision *dec;  /* njobs: scratch for sweep_decide, owned */
};

struct sweeps {
	struct jobs *js;
	struct storeq *sq;
	struct sweep *v;
	size_t n, cap;
};

int sweeps_new(struct sweeps **out, struct jobs *js)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->js = js;
	return 0;
}

void sweeps_set_store(struct sweeps *sw, struct storeq *sq)
{
	sw->sq = sq;
}

void sweeps_free(struct sweeps *sw)
{
	if (!sw)
		return;
	for (size_t i = 0; i < sw->n; i++) {
		free(sw->v[i].jobs);
		free(sw->v[i].res);
		free(sw->v[i].dec);
		sweep_spec_clear(&sw->v[i].spec);
	}
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
static struct sweep *add(struct sweeps *sw, int64_t id, struct sweep_spec *spec, bool killed, bool paused,
			 const int64_t *job_ids, size_t n)
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

	json_decref(j);
	if (rc < 0)
		return rc;
	return add(sw, id, &sp, false, false, job_ids, n) ? 0 : -ENOMEM;
}

/* Record row's metric for trial k of s when its epoch is a rung's. */
static void note_row(struct sweep *s, size_t k, const struct history_row *row)
{
	uint32_t rungs[SWEEP_RUNGS_MAX];
	uint32_t nr = sweep_trial_rungs(&s->spec, (uint32_t)k, rungs);

	for (uint32_t r = 0; r < nr; r++)
		if (rungs[r] == row->epoch) {
			s->res[k].has[r] = true;
			s->res[k].metric[r] = sched_monitored(s->spec.metric, row->val_loss, row->val_acc,
							      row->val_macro_acc, row->val_mae, row->val_rmse);
		}
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
			struct sweep *w = add(sw, list[i].id, &sp, list[i].killed, list[i].paused, ids, nt);

			if (!w)
				rc = tr_err_set(err, -ENOMEM, "out of memory");
			/* the rungs' metrics from the trials' histories */
			for (size_t k = 0; rc == 0 && sweep_adaptive(&w->spec) && k < nt; k++) {
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
enum trial_act { ACT_KILL, ACT_PAUSE, ACT_RESUME, ACT_DELETE };

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
	free(s->jobs);
	free(s->res);
	free(s->dec);
	sweep_spec_clear(&s->spec);
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
