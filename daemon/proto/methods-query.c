/*
 * methods-query.c - Status, List, History, Checkpoints, Wait, Watch: what a
 * client asks of the jobs without changing them. See
 * daemon/proto/methods.h.
 *
 * Status and List answer from the registry (the committed state, jobs.h);
 * History, Steps and Checkpoints read the database on the thread pool; Wait and
 * Watch stay pending on their job (waiters.h).
 */
#include "daemon/proto/methods.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/jobs/jobs.h"
#include "daemon/proto/waiters.h"
#include "daemon/proto/wire.h"

void m_status(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", NULL };
	struct job *j;

	(void)fds;
	if (!params_only(c, keys) || !(j = params_job(d, c)))
		return;
	call_reply(c, json_pack("{s:o}", "job", job_to_json(j)), false);
}

void m_list(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "states", NULL };
	unsigned mask = ~0u;
	json_t *a;

	(void)fds;
	if (!params_only(c, keys) || !params_states(c, "states", &mask))
		return;
	a = json_array();
	for (size_t i = 0; i < jobs_count(d->jobs); i++) {
		struct job *j = jobs_at(d->jobs, i);

		if (!j->removal && ((mask >> j->state) & 1u))
			json_array_append_new(a, job_to_json(j));
	}
	call_reply(c, json_pack("{s:o}", "jobs", a), false);
}

/* ---- History, Checkpoints: a job's rows in the database ----------------- */

struct rows_task {
	struct bg_task t;          /* first */
	int64_t id;
	uint32_t steps_per_epoch;  /* Steps: carried to the reply */
};

static void rows_release(struct bg_task *t)
{
	free(t);
}

static void history_work(struct bg_task *t)
{
	struct rows_task *r = (struct rows_task *)t;
	struct history_row *rows = NULL;
	struct store *s;
	size_t n = 0;
	json_t *a;

	if (bg_store(t, &s, &t->err) < 0 || store_history(s, r->id, &rows, &n, &t->err) < 0) {
		bg_fail(t, PROTO_FROM_STORE, -EIO);
		goto out;
	}
	a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, history_row_json(&rows[i]));
	t->result = json_pack("{s:o}", "rows", a);
out:
	free(rows);
}

/* Steps: the step series (daemon/jobs/stepseries.h), read off the loop. */
static void steps_work(struct bg_task *t)
{
	struct rows_task *r = (struct rows_task *)t;
	struct store_step *pts = NULL;
	struct store *s;
	size_t n = 0;

	if (bg_store(t, &s, &t->err) < 0 || store_steps(s, r->id, &pts, &n, &t->err) < 0) {
		bg_fail(t, PROTO_FROM_STORE, -EIO);
		goto out;
	}
	t->result = steps_json(r->steps_per_epoch, pts, n);
out:
	free(pts);
}

static void checkpoints_work(struct bg_task *t)
{
	struct rows_task *r = (struct rows_task *)t;
	struct store_checkpoint *cks = NULL;
	struct store *s;
	size_t n = 0;
	json_t *a;

	if (bg_store(t, &s, &t->err) < 0 || store_checkpoint_list(s, r->id, &cks, &n, &t->err) < 0) {
		bg_fail(t, PROTO_FROM_STORE, -EIO);
		goto out;
	}
	a = json_array();
	for (size_t i = 0; i < n; i++) {
		struct store_checkpoint *k = &cks[i];
		struct store_ckpt_desc desc;

		store_ckpt_describe(&desc, k);
		json_array_append_new(a, checkpoint_json(&desc));
		store_checkpoint_clear(k);
	}
	t->result = json_pack("{s:o}", "checkpoints", a);
out:
	free(cks);
}

static void rows_submit(struct daemon *d, struct call *c, void (*work)(struct bg_task *t))
{
	static const char *const keys[] = { "id", NULL };
	struct run_progress p;
	struct rows_task *r;
	struct job *j;

	if (!params_only(c, keys) || !(j = params_job(d, c)))
		return;
	if (!(r = bg_task_new(c, sizeof(*r), work, NULL, rows_release)))
		return;
	job_progress_get(j, &p);
	r->id = j->id;
	r->steps_per_epoch = p.steps_per_epoch;
	r->t.cls = BG_READ;   /* never behind another client's Evals (bgwork.h) */
	bg_submit(d->bg, &r->t);
}

void m_history(struct daemon *d, struct call *c, struct call_fds *fds)
{
	(void)fds;
	rows_submit(d, c, history_work);
}

void m_steps(struct daemon *d, struct call *c, struct call_fds *fds)
{
	(void)fds;
	rows_submit(d, c, steps_work);
}

void m_checkpoints(struct daemon *d, struct call *c, struct call_fds *fds)
{
	(void)fds;
	rows_submit(d, c, checkpoints_work);
}

/* ---- Wait, Watch ------------------------------------------------------- */

void m_wait(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", "epoch", "states", "timeout", NULL };
	json_t *states = json_object_get(call_params(c), "states");
	json_t *timeout = json_object_get(call_params(c), "timeout");
	int64_t epoch = 0;
	unsigned mask = 0;
	double t = -1;
	struct job *j;

	(void)fds;
	if (!params_only(c, keys) || !params_int(c, "epoch", false, 1, 100000, &epoch))
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
	if (!(j = params_job(d, c)))
		return;
	if ((uint64_t)epoch > j->cfg.epochs) {
		call_invalid_parameter(c, "epoch", "job %" PRId64 " has only %u epochs", j->id, j->cfg.epochs);
		return;
	}
	waiters_wait(d, c, j, (uint32_t)epoch, mask, t);
}

void m_watch(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", NULL };
	struct job *j;

	(void)fds;
	if (!params_only(c, keys) || !(j = params_job(d, c)))
		return;
	waiters_watch(d, c, j);
}
