/*
 * waiters.c - Wait and Watch, pending on a job. See daemon/proto/waiters.h.
 */
#include "daemon/proto/waiters.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/proto/wire.h"

enum waiter_kind {
	W_WAIT,
	W_WATCH,
};

struct waiter {
	enum waiter_kind kind;
	struct call *call;
	struct job *job;
	uint32_t epoch;             /* W_WAIT: 0 = none */
	unsigned states;            /* W_WAIT: mask of enum job_state */
	uv_timer_t *timer;          /* W_WAIT timeout, or NULL */
	struct run_progress sent;   /* W_WATCH: last update sent */
	bool sent_any;
	struct waiter *next;
};

#define STOPPED_STATES ((1u << JOB_PAUSED) | (1u << JOB_KILLED) | (1u << JOB_FAILED) | (1u << JOB_DONE))

static void waiter_unlink(struct waiter *w)
{
	struct waiter **pp = &w->job->waiters;

	while (*pp && *pp != w)
		pp = &(*pp)->next;
	if (*pp)
		*pp = w->next;
}

static void on_timer_closed(uv_handle_t *h)
{
	free(h);
}

static void waiter_free(struct waiter *w)
{
	if (w->timer) {
		uv_timer_stop(w->timer);
		uv_close((uv_handle_t *)w->timer, on_timer_closed);
	}
	free(w);
}

static void waiter_cancel(void *arg)
{
	struct waiter *w = arg;

	waiter_unlink(w);
	waiter_free(w);
}

/* 1: satisfied, -1: can no longer be satisfied, 0: keep waiting. */
static int wait_check(struct waiter *w)
{
	struct job *j = w->job;
	bool stopped = (STOPPED_STATES >> j->state) & 1u;

	if (w->epoch && j->committed_epoch >= w->epoch)
		return 1;
	/* a job reported stopped only once its run is gone */
	if ((w->states & (1u << j->state)) && (!stopped || job_settled(j)))
		return 1;
	if (stopped && job_settled(j))
		return -1;
	return 0;
}

static void reply_job(struct call *c, struct job *j)
{
	call_reply(c, json_pack("{s:o}", "job", job_to_json(j)), false);
}

/* Answer each of j's waiters whose condition now holds, or can no longer
 * hold. */
static void notify(struct daemon *d, struct job *j)
{
	struct waiter *w = j->waiters, *next;
	bool stopped = job_settled(j) && j->state != JOB_QUEUED && j->state != JOB_RUNNING;

	for (; w; w = next) {
		int r;

		next = w->next;
		if (j->removal)
			continue;   /* a job being removed: its waiters hear JobRemoved */
		switch (w->kind) {
		case W_WAIT:
			r = wait_check(w);
			if (r == 0)
				continue;
			waiter_unlink(w);
			call_on_cancel(w->call, NULL, NULL);
			if (r > 0)
				reply_job(w->call, j);
			else
				call_error(w->call, PROTO_UNEXPECTED_STATE,
					   &(struct proto_detail){ .has_id = true, .id = j->id,
								   .state = job_state_name(j->state) });
			waiter_free(w);
			break;
		case W_WATCH:
			if (!stopped && !(j->state == JOB_RUNNING && d->shutting_down && job_settled(j)))
				continue;
			waiter_unlink(w);
			call_on_cancel(w->call, NULL, NULL);
			{
				struct run_progress p;

				job_progress_get(j, &p);
				call_reply(w->call, watch_json(j, &p), false);
			}
			waiter_free(w);
			break;
		}
	}
}

static void on_wait_timeout(uv_timer_t *t)
{
	struct waiter *w = t->data;

	waiter_unlink(w);
	call_on_cancel(w->call, NULL, NULL);
	call_error(w->call, PROTO_TIMEOUT, &(struct proto_detail){ .has_id = true, .id = w->job->id });
	waiter_free(w);
}

static struct waiter *add_waiter(struct job *j, struct call *c, enum waiter_kind kind)
{
	struct waiter *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->kind = kind;
	w->call = c;
	w->job = j;
	w->next = j->waiters;
	j->waiters = w;
	call_on_cancel(c, waiter_cancel, w);
	return w;
}

static void on_watch_tick(uv_timer_t *t)
{
	struct daemon *d = t->data;

	for (size_t i = 0; i < jobs_count(d->jobs); i++) {
		struct job *j = jobs_at(d->jobs, i);

		for (struct waiter *w = j->waiters; w; w = w->next) {
			struct run_progress p;

			if (w->kind != W_WATCH || !call_can_stream(w->call))
				continue;
			job_progress_get(j, &p);
			if (w->sent_any && p.epoch == w->sent.epoch && p.step == w->sent.step &&
			    p.active == w->sent.active)
				continue;
			w->sent = p;
			w->sent_any = true;
			call_reply(w->call, watch_json(j, &p), true);
		}
	}
}

void waiters_start(struct daemon *d)
{
	uv_timer_init(d->loop, &d->watch_timer);
	d->watch_timer.data = d;
	uv_timer_start(&d->watch_timer, on_watch_tick, 100, 100);
}

static void out_of_memory(struct call *c)
{
	call_error(c, PROTO_STORAGE_ERROR, &(struct proto_detail){ .message = "out of memory" });
}

void waiters_wait(struct daemon *d, struct call *c, struct job *j, uint32_t epoch,
		  unsigned states, double timeout)
{
	struct waiter *w;
	int r;

	if (!epoch && !states)
		states = STOPPED_STATES;
	w = add_waiter(j, c, W_WAIT);
	if (!w) {
		out_of_memory(c);
		return;
	}
	w->epoch = epoch;
	w->states = states;
	r = wait_check(w);
	if (r != 0) {
		notify(d, j);
		return;
	}
	if (timeout >= 0) {
		w->timer = malloc(sizeof(*w->timer));
		if (w->timer) {
			uv_timer_init(d->loop, w->timer);
			w->timer->data = w;
			uv_timer_start(w->timer, on_wait_timeout, (uint64_t)(timeout * 1000.0), 0);
		}
	}
}

void waiters_watch(struct daemon *d, struct call *c, struct job *j)
{
	struct waiter *w = add_waiter(j, c, W_WATCH);

	if (!w) {
		out_of_memory(c);
		return;
	}
	notify(d, j);   /* a job that is not training gets its one final reply now */
}

/* ---- the jobs module's observer ------------------------------------------ */

static void on_changed(void *ctx, struct job *j)
{
	notify(ctx, j);
}

/* The job is being taken out of the registry: every waiter ends with
 * JobRemoved. */
static void on_removed(void *ctx, struct job *j)
{
	(void)ctx;
	while (j->waiters) {
		struct waiter *w = j->waiters;

		j->waiters = w->next;
		call_on_cancel(w->call, NULL, NULL);
		call_error(w->call, PROTO_JOB_REMOVED, &(struct proto_detail){ .has_id = true, .id = j->id });
		waiter_free(w);
	}
}

/* Free j's waiters without a reply (jobs_free, after the loop has stopped
 * and every handle has been closed). */
static void on_dropped(void *ctx, struct job *j)
{
	(void)ctx;
	while (j->waiters) {
		struct waiter *w = j->waiters;

		j->waiters = w->next;
		free(w->timer);
		free(w);
	}
}

const struct jobs_observer waiters_observer = {
	.changed = on_changed,
	.removed = on_removed,
	.dropped = on_dropped,
};
