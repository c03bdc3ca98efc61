/*
 * sweep.c - the sweep registry and the scheduler's gate. See
 * daemon/sweep/sweep.h.
 */
#include "daemon/sweep/sweep.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/log.h"
#include "daemon/sweep/searcher.h"

struct sweep {
	int64_t id;
	uint32_t max_parallel;
	bool killed;
	int64_t *jobs;               /* the trials' jobs, in trial order, owned */
	size_t njobs;
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
	for (size_t i = 0; i < sw->n; i++)
		free(sw->v[i].jobs);
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

static struct sweep *add(struct sweeps *sw, int64_t id, uint32_t max_parallel, bool killed,
			 const int64_t *job_ids, size_t n)
{
	struct sweep *s;

	if (sw->n == sw->cap) {
		size_t cap = sw->cap ? sw->cap * 2 : 8;
		struct sweep *v = realloc(sw->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		sw->v = v;
		sw->cap = cap;
	}
	s = &sw->v[sw->n];
	memset(s, 0, sizeof(*s));
	s->jobs = malloc((n ? n : 1) * sizeof(*s->jobs));
	if (!s->jobs)
		return NULL;
	if (n)
		memcpy(s->jobs, job_ids, n * sizeof(*s->jobs));
	s->njobs = n;
	s->id = id;
	s->max_parallel = max_parallel ? max_parallel : 1;
	s->killed = killed;
	sw->n++;
	return s;
}

int sweeps_add(struct sweeps *sw, int64_t id, uint32_t max_parallel, const int64_t *job_ids, size_t n)
{
	return add(sw, id, max_parallel, false, job_ids, n) ? 0 : -ENOMEM;
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
		if (rc == 0 && !add(sw, list[i].id, sp.max_parallel, list[i].killed, ids, nt))
			rc = tr_err_set(err, -ENOMEM, "out of memory");
		free(ids);
		store_trials_free(t, nt);
		sweep_spec_clear(&sp);
	}
	store_sweeps_free(list, n);
	return rc;
}

static struct sweep *sweep_of_job(struct sweeps *sw, int64_t job)
{
	for (size_t i = 0; i < sw->n; i++)
		for (size_t k = 0; k < sw->v[i].njobs; k++)
			if (sw->v[i].jobs[k] == job)
				return &sw->v[i];
	return NULL;
}

bool sweeps_may_start(struct sweeps *sw, const struct job *j)
{
	struct sweep *s = sweep_of_job(sw, j->id);
	uint32_t running = 0;

	if (!s)
		return true;
	if (s->killed)
		return false;
	for (size_t k = 0; k < s->njobs; k++) {
		struct job *t = jobs_find(sw->js, s->jobs[k]);

		if (t && (t->worker_alive || t->target == JOB_RUNNING))
			running++;
	}
	return running < s->max_parallel;
}

/* ---- kill -------------------------------------------------------------- */

struct kill_one {
	struct jobs_done done;       /* first */
};

static void kill_one_done(struct jobs_done *done)
{
	free(done);
}

static void kill_trials(struct sweeps *sw, struct sweep *s)
{
	for (size_t k = 0; k < s->njobs; k++) {
		struct job *j = jobs_find(sw->js, s->jobs[k]);
		struct kill_one *ko;

		if (!j || (j->target != JOB_QUEUED && j->target != JOB_RUNNING))
			continue;
		ko = calloc(1, sizeof(*ko));
		if (!ko) {
			log_err("sweep %" PRId64 ": out of memory killing job %" PRId64, s->id, j->id);
			continue;
		}
		ko->done.fn = kill_one_done;
		if (jobs_kill(sw->js, j, 0, &ko->done) != JOBS_PENDING)
			free(ko);
	}
}

void sweeps_start(struct sweeps *sw)
{
	for (size_t i = 0; i < sw->n; i++)
		if (sw->v[i].killed)
			kill_trials(sw, &sw->v[i]);
}

struct kill_req {
	struct sweeps *sw;
	int64_t id;
	struct sweep_done *done;
};

static int kill_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct kill_req *r = arg;

	return store_sweep_kill(s, r->id, err);
}

static void kill_done(void *arg, int rc, const struct tr_err *err)
{
	struct kill_req *r = arg;
	struct sweep *s = find(r->sw, r->id);

	r->done->id = r->id;
	if (rc < 0) {
		r->done->code = SWEEP_E_STORAGE;
		snprintf(r->done->message, sizeof(r->done->message), "%s", err ? err->msg : "?");
	} else {
		r->done->code = SWEEP_OK;
		log_notice("sweep %" PRId64 ": killed", r->id);
		if (s)
			kill_trials(r->sw, s);
	}
	r->done->fn(r->done);
	free(r);
}

int sweeps_kill(struct sweeps *sw, int64_t id, struct sweep_done *done)
{
	struct sweep *s = find(sw, id);
	struct kill_req *r;

	done->id = id;
	if (!s) {
		done->code = SWEEP_E_NO_SUCH;
		snprintf(done->message, sizeof(done->message), "sweep %" PRId64 ": no such sweep", id);
		return SWEEP_E_NO_SUCH;
	}
	r = calloc(1, sizeof(*r));
	if (r) {
		r->sw = sw;
		r->id = id;
		r->done = done;
	}
	if (!r || storeq_submit(sw->sq, kill_fn, r, kill_done) < 0) {
		free(r);
		done->code = SWEEP_E_STORAGE;
		snprintf(done->message, sizeof(done->message), "cannot record the kill");
		return SWEEP_E_STORAGE;
	}
	s->killed = true;   /* no trial starts from now on; the kill is durable once done->fn runs */
	return 1;
}
