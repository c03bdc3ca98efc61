/*
 * waiters.c - Wait, Watch and the stop calls pending on a job. See
 * daemon/proto/waiters.h.
 */
#include "daemon/proto/waiters.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/proto/wire.h"

enum waiter_kind {
	W_WAIT,
	W_WATCH,
	W_STOP,     /* a Pause or Kill call answered when the worker stops */
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

/* Nothing more is going to happen to the job by itself: no worker, nothing
 * to finalize, every state write completed (so state == target). */
static bool settled(const struct job *j)
{
	return !j->worker_alive && !j->finalize_pending && j->state_writes == 0;
}

/* 1: satisfied, -1: can no longer be satisfied, 0: keep waiting. */
static int wait_check(struct waiter *w)
{
	struct job *j = w->job;
	bool stopped = (STOPPED_STATES >> j->state) & 1u;

	if (w->epoch && j->committed_epoch >= w->epoch)
		return 1;
	/* a job reported stopped only once its worker is gone */
	if ((w->states & (1u << j->state)) && (!stopped || settled(j)))
		return 1;
	if (stopped && settled(j))
		return -1;
	return 0;
}

static void reply_job(struct call *c, struct job *j)
{
	call_reply(c, json_pack("{s:o}", "job", job_to_json(j)), false);
}

void waiters_notify(struct job *j)
{
	struct waiter *w = j->waiters, *next;
	bool stopped = settled(j) && j->state != JOB_QUEUED && j->state != JOB_RUNNING;

	for (; w; w = next) {
		int r;

		next = w->next;
		if (j->removal && w->kind != W_STOP)
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
					   json_pack("{s:I,s:s}", "id", (json_int_t)j->id, "state",
						     job_state_name(j->state)));
			waiter_free(w);
			break;
		case W_STOP:
			if (!settled(j))
				continue;
			waiter_unlink(w);
			call_on_cancel(w->call, NULL, NULL);
			if (j->state == JOB_FAILED && strcmp(call_method(w->call), "io.traind.Pause") == 0)
				call_error(w->call, PROTO_CHECKPOINT_ERROR,
					   json_pack("{s:I,s:s}", "id", (json_int_t)j->id, "message",
						     j->error ? j->error : "the pause checkpoint failed"));
			else
				call_reply(w->call, json_pack("{s:I,s:s}", "id", (json_int_t)j->id, "state",
							      job_state_name(j->state)),
					   false);
			waiter_free(w);
			break;
		case W_WATCH:
			if (!stopped && !(j->state == JOB_RUNNING && j->d->shutting_down && settled(j)))
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
	call_error(w->call, PROTO_TIMEOUT, json_pack("{s:I}", "id", (json_int_t)w->job->id));
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

	for (size_t i = 0; i < d->njobs; i++) {
		struct job *j = d->jobs[i];

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

void waiters_wait(struct daemon *d, struct call *c, struct job *j, uint32_t epoch,
		  unsigned states, double timeout)
{
	struct waiter *w;
	int r;

	if (!epoch && !states)
		states = STOPPED_STATES;
	w = add_waiter(j, c, W_WAIT);
	if (!w) {
		call_error(c, PROTO_STORAGE_ERROR, json_pack("{s:s}", "message", "out of memory"));
		return;
	}
	w->epoch = epoch;
	w->states = states;
	r = wait_check(w);
	if (r != 0) {
		waiters_notify(j);
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

void waiters_watch(struct call *c, struct job *j)
{
	struct waiter *w = add_waiter(j, c, W_WATCH);

	if (!w) {
		call_error(c, PROTO_STORAGE_ERROR, json_pack("{s:s}", "message", "out of memory"));
		return;
	}
	waiters_notify(j);   /* a job that is not training gets its one final reply now */
}

void waiters_add_stop(struct job *j, struct call *c)
{
	if (!add_waiter(j, c, W_STOP))
		call_error(c, PROTO_STORAGE_ERROR, json_pack("{s:s}", "message", "out of memory"));
}

void waiters_remove_all(struct job *j)
{
	while (j->waiters) {
		struct waiter *w = j->waiters;

		j->waiters = w->next;
		call_on_cancel(w->call, NULL, NULL);
		call_error(w->call, PROTO_JOB_REMOVED, json_pack("{s:I}", "id", (json_int_t)j->id));
		waiter_free(w);
	}
}

void waiters_free_all(struct job *j)
{
	while (j->waiters) {
		struct waiter *w = j->waiters;

		j->waiters = w->next;
		free(w->timer);
		free(w);
	}
}
