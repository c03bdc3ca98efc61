/*
 * stepseries.c - the running training loss by step, sampled on the loop and
 * written through the store thread. See daemon/jobs/stepseries.h.
 */
#include "daemon/jobs/stepseries.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "daemon/core/daemon.h"
#include "daemon/core/log.h"
#include "daemon/jobs/jobs.h"
#include "daemon/store/store.h"
#include "daemon/store/storeq.h"

#define TICK_MS 25              /* sampling period: a fast job gets fewer points than `every` allows */
#define FLUSH_POINTS 64          /* write when this many wait */
#define FLUSH_MS 5000            /* or when the oldest write is this old */
#define PENDING_MAX 1024         /* points held for one job at most (a stuck store) */

/* One job's sampling state and the points not yet handed to the store. */
struct series_job {
	int64_t id;
	bool has_last;
	uint32_t last_epoch, last_step;   /* the last point taken */
	struct store_step *pending;       /* (npending) owned */
	size_t npending, cap;
	uint64_t last_write_ms;           /* uv_now of the last hand-over */
};

struct stepseries {
	struct daemon *d;
	uv_timer_t timer;
	struct series_job *jobs;          /* (n) by order of first sight */
	size_t n, cap;
};

/* A write in flight: its own copy of the points. */
struct series_write {
	int64_t id;
	struct store_step *pts;
	size_t n;
};

static int write_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct series_write *w = arg;

	return store_steps_add(s, w->id, w->pts, w->n, STEPSERIES_CAP, err);
}

static void write_done(void *arg, int rc, const struct tr_err *err)
{
	struct series_write *w = arg;

	/* A lost point costs a dot on a chart: say so, go on. */
	if (rc < 0)
		log_warn("job %" PRId64 ": %zu points of its step series not stored: %s", w->id, w->n,
			 err ? err->msg : "?");
	free(w->pts);
	free(w);
}

/* Hand sj's pending points to the store thread (they are the write's now). */
static void flush(struct stepseries *ss, struct series_job *sj)
{
	struct series_write *w;

	if (sj->npending == 0)
		return;
	w = malloc(sizeof(*w));
	if (!w)
		return;   /* kept for the next try */
	w->id = sj->id;
	w->pts = sj->pending;
	w->n = sj->npending;
	if (storeq_submit(ss->d->sq, write_fn, w, write_done) < 0) {
		free(w);
		return;
	}
	sj->pending = NULL;
	sj->npending = sj->cap = 0;
	sj->last_write_ms = uv_now(ss->d->loop);
}

static struct series_job *find(struct stepseries *ss, int64_t id, bool add)
{
	struct series_job *grown;

	for (size_t i = 0; i < ss->n; i++)
		if (ss->jobs[i].id == id)
			return &ss->jobs[i];
	if (!add)
		return NULL;
	if (ss->n == ss->cap) {
		size_t ncap = ss->cap ? 2 * ss->cap : 8;

		grown = realloc(ss->jobs, ncap * sizeof(*grown));
		if (!grown)
			return NULL;
		ss->jobs = grown;
		ss->cap = ncap;
	}
	memset(&ss->jobs[ss->n], 0, sizeof(ss->jobs[0]));
	ss->jobs[ss->n].id = id;
	ss->jobs[ss->n].last_write_ms = uv_now(ss->d->loop);
	return &ss->jobs[ss->n++];
}

/* Batches between two points of a job with `epochs` epochs of `spe`. */
static uint32_t every_of(uint32_t epochs, uint32_t spe)
{
	uint32_t per_epoch = epochs ? STEPSERIES_BUDGET / epochs : 1;

	if (per_epoch < 1)
		per_epoch = 1;
	if (per_epoch > 100)
		per_epoch = 100;
	return spe > per_epoch ? (spe + per_epoch - 1) / per_epoch : 1;
}

/* Take a point of j now if it has moved far enough since the last one
 * (`last`: the run has stopped; its final progress counts too). */
static void sample(struct stepseries *ss, struct job *j, bool last)
{
	struct run_progress p;
	struct series_job *sj;
	uint32_t every;

	job_progress_get(j, &p);
	if ((!p.active && !last) || !p.has_loss || p.steps_per_epoch == 0 || p.step < 1)
		return;
	sj = find(ss, j->id, true);
	if (!sj)
		return;
	every = every_of(j->cfg.epochs, p.steps_per_epoch);
	if (sj->has_last && p.epoch == sj->last_epoch &&
	    (p.step == sj->last_step || (p.step > sj->last_step && p.step - sj->last_step < every)))
		return;
	if (sj->npending == sj->cap) {
		size_t ncap = sj->cap ? 2 * sj->cap : 16;
		struct store_step *grown;

		if (ncap > PENDING_MAX)
			return;
		grown = realloc(sj->pending, ncap * sizeof(*grown));
		if (!grown)
			return;
		sj->pending = grown;
		sj->cap = ncap;
	}
	sj->pending[sj->npending++] = (struct store_step){ .epoch = p.epoch, .step = p.step, .loss = p.loss };
	sj->has_last = true;
	sj->last_epoch = p.epoch;
	sj->last_step = p.step;
}

static void on_tick(uv_timer_t *t)
{
	struct stepseries *ss = t->data;
	struct daemon *d = ss->d;
	uint64_t now = uv_now(d->loop);

	for (size_t i = 0; i < jobs_count(d->jobs); i++) {
		struct job *j = jobs_at(d->jobs, i);

		if (j->state == JOB_RUNNING && j->worker_alive)
			sample(ss, j, false);
	}
	for (size_t i = 0; i < ss->n;) {
		struct series_job *sj = &ss->jobs[i];
		struct job *j = jobs_find(d->jobs, sj->id);
		bool training = j && j->state == JOB_RUNNING && j->worker_alive;

		if (!j) {
			sj->npending = 0;   /* removed: its series went with it */
		} else if (!training || sj->npending >= FLUSH_POINTS ||
			   (sj->npending && now - sj->last_write_ms >= FLUSH_MS)) {
			flush(ss, sj);
		}
		if (!training && sj->npending == 0) {
			free(sj->pending);
			ss->jobs[i] = ss->jobs[--ss->n];
			continue;
		}
		i++;
	}
}

int stepseries_new(struct stepseries **out, struct daemon *d)
{
	struct stepseries *ss = calloc(1, sizeof(*ss));

	*out = NULL;
	if (!ss)
		return -ENOMEM;
	ss->d = d;
	uv_timer_init(d->loop, &ss->timer);
	ss->timer.data = ss;
	uv_timer_start(&ss->timer, on_tick, TICK_MS, TICK_MS);
	*out = ss;
	return 0;
}

void stepseries_job_stopped(struct stepseries *ss, struct job *j)
{
	struct series_job *sj;

	if (!ss)
		return;
	sample(ss, j, true);
	sj = find(ss, j->id, false);
	if (sj)
		flush(ss, sj);
}

void stepseries_flush_all(struct stepseries *ss)
{
	if (!ss)
		return;
	for (size_t i = 0; i < ss->n; i++)
		if (jobs_find(ss->d->jobs, ss->jobs[i].id))
			flush(ss, &ss->jobs[i]);
}

void stepseries_free(struct stepseries *ss)
{
	if (!ss)
		return;
	for (size_t i = 0; i < ss->n; i++)
		free(ss->jobs[i].pending);
	free(ss->jobs);
	free(ss);
}
