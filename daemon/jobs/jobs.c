/*
 * jobs.c - registry, recovery, scheduler, state machine and verbs. See
 * daemon/jobs/jobs.h for the design; this file is in parts: the answers
 * (jobs_done), the state writes and the events of a run (runner.h) and of
 * the store thread, the scheduler, the registry and recovery, the verbs,
 * and removal.
 */
#include "daemon/jobs/jobs.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "traind/checkpoint.h"
#include "traind/trainer.h"
#include "daemon/core/log.h"

/* The registry (see jobs.h). */
struct jobs {
	struct jobs_config cfg;      /* cfg.env is what the runs see (run_ctx.env) */
	struct job **jobs;           /* by id */
	size_t njobs, cap;
	size_t creating;             /* Starts being stored, each with a slot in `jobs` reserved */
	unsigned running;            /* runs in progress */
	uint64_t next_seq;           /* the next queue_seq */
	bool shutting_down;
};

static const char *state_names[] = { "queued", "running", "paused", "killed", "failed", "done" };

const char *job_state_name(enum job_state s)
{
	return state_names[s];
}

int job_state_parse(const char *name)
{
	for (int i = 0; i <= JOB_DONE; i++)
		if (strcmp(name, state_names[i]) == 0)
			return i;
	return -1;
}

static int64_t now_unix(void)
{
	return (int64_t)time(NULL);
}

void job_progress_get(struct job *j, struct run_progress *out)
{
	run_progress_get(&j->run, out);
}

int64_t job_kill_after(struct job *j)
{
	return run_kill_after(&j->run);
}

bool job_settled(const struct job *j)
{
	return !j->worker_alive && !j->finalize_pending && j->state_writes == 0;
}

bool job_resumable(const struct job *j)
{
	return j->target == JOB_PAUSED || j->target == JOB_KILLED || j->target == JOB_FAILED ||
	       j->target == JOB_DONE;
}

/* ==== answers =========================================================== */

/* Pending answers live in the module's records (a state write, a removal,
 * a stop wait...) as a pointer to the caller's struct jobs_done, which
 * points back at it (done->held), so that either side can let go. */

static void done_hold(struct jobs_done **slot, struct jobs_done *done)
{
	*slot = done;
	if (done)
		done->held = slot;
}

void jobs_done_cancel(struct jobs_done *done)
{
	if (done->held)
		*done->held = NULL;
	done->held = NULL;
}

/* Answer the caller held in *slot, if it is still there: fn runs. */
static void done_answer(struct jobs_done **slot, const struct jobs_result *r)
{
	struct jobs_done *done = *slot;

	if (!done)
		return;
	*slot = NULL;
	done->held = NULL;
	done->result = *r;
	done->fn(done);
}

/* The answer of a verb that answers at once: written to done, returned. */
static int done_now(struct jobs_done *done, const struct jobs_result *r)
{
	if (done->held)
		jobs_done_cancel(done);
	done->result = *r;
	return r->code;
}

/* Done: the job's id and committed state. */
static struct jobs_result result_state(const struct job *j)
{
	return (struct jobs_result){ .code = JOBS_OK, .id = j->id, .state = j->state };
}

/* Refused or failed, with a message. */
static struct jobs_result result_error(const struct job *j, int code, const char *param,
				       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static struct jobs_result result_error(const struct job *j, int code, const char *param,
				       const char *fmt, ...)
{
	struct jobs_result r = { .code = code, .param = param };
	va_list ap;

	if (j) {
		r.id = j->id;
		r.state = j->state;
	}
	va_start(ap, fmt);
	vsnprintf(r.message, sizeof(r.message), fmt, ap);
	va_end(ap);
	return r;
}

/* A pending Pause or Kill of a running job: answered once it has stopped
 * (job_settled). */
struct stop_wait {
	struct jobs_done *done;      /* NULL once the caller has gone */
	bool pause;                  /* a failed job answers a Pause with JOBS_E_CHECKPOINT */
	struct stop_wait *next;
};

static int stop_wait_add(struct job *j, struct jobs_done *done, bool pause)
{
	struct stop_wait *w = calloc(1, sizeof(*w));

	if (!w)
		return done_now(done, &(struct jobs_result){ .code = JOBS_E_STORAGE, .id = j->id,
							     .state = j->state,
							     .message = "out of memory" });
	w->pause = pause;
	w->next = j->stops;
	j->stops = w;
	done_hold(&w->done, done);
	return JOBS_PENDING;
}

/* Once the job has settled, answer every stop wait. */
static void stops_answer(struct job *j)
{
	if (!job_settled(j))
		return;
	while (j->stops) {
		struct stop_wait *w = j->stops;
		struct jobs_result r = result_state(j);

		j->stops = w->next;
		if (j->state == JOB_FAILED && w->pause)
			r = result_error(j, JOBS_E_CHECKPOINT, NULL, "%s",
					 j->error ? j->error : "the pause checkpoint failed");
		done_answer(&w->done, &r);
		free(w);
	}
}

/* The job leaves: every stop wait ends with JOBS_E_REMOVED (answer) or
 * without a word (!answer: the loop has stopped). */
static void stops_end(struct job *j, bool answer)
{
	while (j->stops) {
		struct stop_wait *w = j->stops;
		struct jobs_result r = { .code = JOBS_E_REMOVED, .id = j->id, .state = j->state };

		j->stops = w->next;
		if (answer)
			done_answer(&w->done, &r);
		else if (w->done)
			jobs_done_cancel(w->done);
		free(w);
	}
}

/* The hooks of the registry's owner. */
static void changed(struct job *j)
{
	const struct jobs_config *c = &j->js->cfg;

	stops_answer(j);
	if (c->observer && c->observer->changed)
		c->observer->changed(c->ctx, j);
}

static void on_change(struct jobs *js)
{
	if (js->cfg.on_change)
		js->cfg.on_change(js->cfg.ctx);
}

/* ==== loop side: bookkeeping ============================================ */

/* The job whose run ctx is ctx. */
static struct job *job_of(struct run_ctx *ctx)
{
	return (struct job *)((char *)ctx - offsetof(struct job, run));
}

static void on_run_restored(struct run_ctx *ctx, const struct run_restored *r);
static void on_run_commit(struct run_ctx *ctx, const struct run_commit *c);
static void on_run_exit(struct run_ctx *ctx, const struct run_exit *ex);

/* What the jobs' runs tell the loop (runner.h). */
static const struct run_events job_run_events = {
	.restored = on_run_restored,
	.commit = on_run_commit,
	.exit = on_run_exit,
};

static void schedule(struct jobs *js);
static int removal_submit(struct removal *r, bool now);

/* A target state on its way to the database. */
struct state_write {
	struct job *j;
	struct jobs_done *done;      /* answered once the write completes; NULL: nobody */
	int64_t id;
	enum job_state st;
	uint32_t seq;                /* the decision's number (j->state_seq) */
	char *error;                 /* last_error to record with it, owned */
};

static int state_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct state_write *w = arg;
	int rc = store_job_set_state(s, w->id, w->st, w->error, err);

	if (rc == 0 && store_reserve_spent(s))
		log_warn("job %" PRId64 ": the disk is full: its state %s was recorded in the room reserved "
			 "beside the database; free some space", w->id, job_state_name(w->st));
	return rc;
}

/* The one place `state` changes after recovery: decision seq, st (with its
 * error, which this takes), is what the database holds now. Writes complete
 * in order; only a decision that could not be queued at all (see set_state)
 * is shown before those queued earlier, which then must not undo it. */
static void commit_state(struct job *j, uint32_t seq, enum job_state st, char *error)
{
	if ((int32_t)(seq - j->state_shown) < 0) {
		free(error);
		return;
	}
	j->state_shown = seq;
	j->state = st;
	free(j->state_error);
	j->state_error = error;
	j->updated = now_unix();
	if (st == JOB_RUNNING && !j->started)
		j->started = j->updated;   /* as the store recorded it */
}

static void state_done(void *arg, int rc, const struct tr_err *err)
{
	struct state_write *w = arg;
	struct job *j = w->j;
	struct jobs_result r;

	j->state_writes--;
	if (rc < 0)
		log_err("job %" PRId64 ": cannot record state %s: %s", w->id, job_state_name(w->st),
			err ? err->msg : "?");
	commit_state(j, w->seq, w->st, w->error);
	r = result_state(j);
	done_answer(&w->done, &r);
	free(w);
	changed(j);
	on_change(j->js);
}

/* ---- a pending kill after epoch N, recorded with the job ---- */

struct kill_after_write {
	struct job *j;
	struct jobs_done *done;     /* answered once durable; NULL: nobody waits */
	int64_t id, epoch;          /* epoch -1: clear */
};

static int kill_after_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct kill_after_write *w = arg;

	return store_job_set_kill_after(s, w->id, w->epoch, err);
}

static void kill_after_done(void *arg, int rc, const struct tr_err *err)
{
	struct kill_after_write *w = arg;
	struct job *j = w->j;
	struct jobs_result r;

	if (rc < 0) {
		log_err("job %" PRId64 ": cannot record the kill after epoch %" PRId64 ": %s", w->id,
			w->epoch, err ? err->msg : "?");
		/* Not durable: do not pretend it is pending. */
		if (w->epoch >= 1)
			run_drop_kill_after(&j->run, w->epoch);
		r = result_error(j, JOBS_E_STORAGE, NULL, "%s", err ? err->msg : "cannot record the kill");
	} else {
		r = result_state(j);
	}
	done_answer(&w->done, &r);
	free(w);
	changed(j);
}

/* Set the job's kill_after (epoch >= 1, or -1 to clear) and record it;
 * answer done, if given, once it is durable (JOBS_PENDING), or now when it
 * cannot be recorded. */
static int set_kill_after(struct job *j, int64_t epoch, struct jobs_done *done)
{
	struct kill_after_write *w = calloc(1, sizeof(*w));

	run_set_kill_after(&j->run, epoch);
	if (w) {
		w->j = j;
		w->id = j->id;
		w->epoch = epoch;
		done_hold(&w->done, done);
		if (storeq_submit(j->js->cfg.env.sq, kill_after_fn, w, kill_after_done) == 0)
			return JOBS_PENDING;
		free(w);
	}
	log_err("job %" PRId64 ": cannot record the kill after epoch %" PRId64, j->id, epoch);
	if (!done)
		return JOBS_E_STORAGE;
	return done_now(done, &(struct jobs_result){ .code = JOBS_E_STORAGE, .id = j->id,
						     .state = j->state,
						     .message = "cannot record the kill" });
}

/* Decide the job's next state: the target changes now; the committed state
 * (what clients see) once the store thread has recorded it, in order, when
 * state_done runs. done, if given, is answered then (id and state):
 * JOBS_PENDING; or at once when the write cannot even be queued (0). */
static int set_state(struct job *j, enum job_state st, const char *error, struct jobs_done *done)
{
	struct jobs *js = j->js;
	struct state_write *w = calloc(1, sizeof(*w));
	char *old_error = j->error;   /* `error` may be j->error itself (finalize) */
	struct jobs_result r;

	if (st == JOB_FAILED)
		js->cfg.counters->jobs_failed++;
	j->target = st;
	j->state_seq++;
	j->error = error ? strdup(error) : NULL;
	free(old_error);
	if (w) {
		w->j = j;
		w->id = j->id;
		w->st = st;
		w->seq = j->state_seq;
		w->error = j->error ? strdup(j->error) : NULL;
		if ((!j->error || w->error) && storeq_submit(js->cfg.env.sq, state_fn, w, state_done) == 0) {
			j->state_writes++;
			done_hold(&w->done, done);
			return JOBS_PENDING;
		}
		free(w->error);
		free(w);
	}
	/* Not even queued (out of memory, or the store thread has stopped):
	 * as for a write the database refused, see jobs.h. */
	log_err("job %" PRId64 ": cannot record state %s", j->id, job_state_name(st));
	commit_state(j, j->state_seq, st, j->error ? strdup(j->error) : NULL);
	r = result_state(j);
	changed(j);
	on_change(js);
	return done ? done_now(done, &r) : JOBS_OK;
}

static void finalize(struct job *j)
{
	struct jobs *js = j->js;
	enum job_state st = (enum job_state)j->exit_outcome;

	j->finalize_pending = false;
	if (js->cfg.on_run_end)
		js->cfg.on_run_end(js->cfg.ctx, j);   /* ahead of the state it ended in (the step series) */
	if (j->commit_failed && st != JOB_FAILED && st != JOB_RUNNING)
		st = JOB_FAILED;
	if (st == JOB_RUNNING) {
		struct run_progress p;

		/* shutdown: stays running in the database, continues at next start */
		run_progress_get(&j->run, &p);
		log_notice("job %" PRId64 ": checkpointed for shutdown at epoch %u step %u", j->id,
			   p.epoch, p.step);
		j->target = JOB_RUNNING;   /* what the database says already */
		changed(j);
	} else if (st == JOB_FAILED && j->exit_restartable && !j->commit_failed && !j->removal &&
		   !js->shutting_down && j->restarts < j->cfg.max_restarts) {
		/* A rank, a host or the launcher failed: again from the newest
		 * checkpoint, which gives the same bits as never failing. */
		j->restarts++;
		free(j->last_failure);
		j->last_failure = j->error ? strdup(j->error) : NULL;
		log_err("job %" PRId64 ": failed: %s; restart %u of %u from its newest checkpoint", j->id,
			j->error ? j->error : "?", j->restarts, j->cfg.max_restarts);
		j->queue_seq = js->next_seq++;
		set_state(j, JOB_QUEUED, NULL, NULL);
	} else {
		if (st == JOB_FAILED)
			log_err("job %" PRId64 ": failed: %s", j->id, j->error ? j->error : "?");
		else
			log_notice("job %" PRId64 ": %s at epoch %u", j->id, job_state_name(st),
				   j->committed_epoch);
		set_state(j, st, st == JOB_FAILED ? j->error : NULL, NULL);
	}
	if (j->removal)
		removal_submit(j->removal, false);   /* after the state write: the store runs them in order */
	schedule(js);
	if (js->shutting_down && js->running == 0 && js->cfg.on_drained)
		js->cfg.on_drained(js->cfg.ctx);
}

static void on_run_commit(struct run_ctx *ctx, const struct run_commit *c)
{
	struct job *j = job_of(ctx);

	if (c->rc < 0) {
		log_err("job %" PRId64 ": checkpoint at epoch %u step %u not committed: %s", j->id, c->epoch,
			c->step, c->err.msg);
		j->commit_failed = true;
		free(j->error);
		j->error = strdup(c->err.msg);
		if (j->worker_alive)
			run_request_stop(&j->run, STOP_FAIL);
	} else {
		j->newest.valid = true;
		j->newest.epoch = c->epoch;
		j->newest.step = c->step;
		j->newest.is_epoch = c->is_epoch;
		j->newest.size = (int64_t)c->len;
		j->newest.created = now_unix();
		j->newest.val_loss = c->is_epoch ? c->row.val_loss : NAN;
		snprintf(j->newest.checksum, sizeof(j->newest.checksum), "%s", c->checksum);
		if (c->is_epoch) {
			counters_observe_commit(j->js->cfg.counters, c->durable_after);
			j->committed_epoch = c->row.epoch;
			j->last_val_acc = c->row.val_acc;
			j->has_val_acc = true;
			job_note_row(j, &c->row);
			if (j->js->cfg.on_epoch)
				j->js->cfg.on_epoch(j->js->cfg.ctx, j, &c->row);
			if (!isnan(c->row.val_ppl))   /* a language model's */
				log_info("job %" PRId64 ": epoch %u/%u committed | train_loss %.4f train_acc %.4f | "
					 "val_loss %.4f val_acc %.4f val_ppl %.4f | %.2fs | held %.1f ms, durable after %.1f ms",
					 j->id, c->row.epoch, j->cfg.epochs, c->row.train_loss, c->row.train_acc,
					 c->row.val_loss, c->row.val_acc, c->row.val_ppl, c->row.seconds,
					 c->hold_seconds * 1e3, c->durable_after * 1e3);
			else if (!isnan(c->row.val_rmse))   /* a regression's metrics */
				log_info("job %" PRId64 ": epoch %u/%u committed | train_loss %.4f | "
					 "val_loss %.4f val_mae %.4f val_rmse %.4f | %.2fs | held %.1f ms, durable after %.1f ms",
					 j->id, c->row.epoch, j->cfg.epochs, c->row.train_loss, c->row.val_loss,
					 c->row.val_mae, c->row.val_rmse, c->row.seconds, c->hold_seconds * 1e3,
					 c->durable_after * 1e3);
			else
				log_info("job %" PRId64 ": epoch %u/%u committed | train_loss %.4f train_acc %.4f | "
					 "val_loss %.4f val_acc %.4f | %.2fs | held %.1f ms, durable after %.1f ms",
					 j->id, c->row.epoch, j->cfg.epochs, c->row.train_loss, c->row.train_acc,
					 c->row.val_loss, c->row.val_acc, c->row.seconds, c->hold_seconds * 1e3,
					 c->durable_after * 1e3);
			if (run_kill_after(&j->run) == (int64_t)c->row.epoch && j->worker_alive)
				run_request_stop(&j->run, STOP_KILL);
		} else {
			log_info("job %" PRId64 ": position epoch %u step %u saved", j->id, c->epoch, c->step);
		}
		j->updated = now_unix();
		changed(j);
	}
	if (j->finalize_pending && run_commits_inflight(&j->run) == 0)
		finalize(j);
}

static void on_run_restored(struct run_ctx *ctx, const struct run_restored *r)
{
	struct job *j = job_of(ctx);

	if (r->from_checkpoint)
		j->newest = r->ck;
	else
		j->newest.valid = false;
	j->committed_epoch = r->nhistory;
	j->has_val_acc = r->nhistory > 0;
	j->last_val_acc = r->last_val_acc;
	j->params = r->params;
	j->best_epoch = r->best_epoch;
	j->best_value = r->best_value;
	if (r->classes)
		j->classes = r->classes;
	if (r->dataset_digest[0])   /* recorded by the run: the job had none */
		snprintf(j->dataset_digest, sizeof(j->dataset_digest), "%s", r->dataset_digest);
	if (r->numerics[0]) {
		free(j->numerics);
		j->numerics = strdup(r->numerics);   /* NULL on ENOMEM: the log still says it */
		log_warn("job %" PRId64 ": %s", j->id, r->numerics);
	}
	changed(j);   /* the run stays the runner's until its exit event */
}

static void on_run_exit(struct run_ctx *ctx, const struct run_exit *ex)
{
	struct job *j = job_of(ctx);

	j->worker_alive = false;
	j->js->running--;
	j->exit_outcome = ex->outcome;
	j->exit_restartable = ex->restartable;
	if (ex->restored)
		log_info("job %" PRId64 ": had resumed from epoch %u step %u", j->id, ex->restored_epoch,
			 ex->restored_step);
	if (ex->outcome == JOB_FAILED && ex->msg[0]) {
		free(j->error);
		j->error = strdup(ex->msg);
	}
	j->finalize_pending = true;
	if (run_commits_inflight(&j->run) == 0)
		finalize(j);
}

/* A job that does not run now lets go of the dataset its Start check loaded. */
static void job_drop_dataset(struct job *j)
{
	if (j->ds)
		dscache_put(j->js->cfg.env.dsc, j->ds);
	j->ds = NULL;
}

static void start_run(struct job *j)
{
	bool weights_only = j->weights_only_next;
	struct run_start how = {
		.weights_only = weights_only, .go_on = j->go_on_next, .ds = j->ds,
		.digest = j->dataset_digest, .committed_epoch = j->committed_epoch,
	};
	struct tr_err err = { 0 };

	j->commit_failed = false;
	if (run_start(&j->run, &how, &err) < 0) {
		job_drop_dataset(j);
		set_state(j, JOB_FAILED, err.msg, NULL);
		return;
	}
	j->weights_only_next = false;
	j->go_on_next = false;
	j->ds = NULL;   /* the run's now */
	j->worker_alive = true;
	j->js->running++;
	log_notice("job %" PRId64 " (%s): started%s", j->id, j->name,
		   weights_only ? " (weights-only resume)" : "");
	set_state(j, JOB_RUNNING, NULL, NULL);
}

static void schedule(struct jobs *js)
{
	while (!js->shutting_down && js->running < js->cfg.max_running) {
		struct job *next = NULL;

		for (size_t i = 0; i < js->njobs; i++) {
			struct job *j = js->jobs[i];

			if (j->target == JOB_QUEUED && !j->worker_alive && !j->removal &&
			    (!next || j->queue_seq < next->queue_seq) &&
			    (!js->cfg.may_start || js->cfg.may_start(js->cfg.ctx, j)))
				next = j;
		}
		if (!next)
			break;
		start_run(next);
	}
}

void job_note_row(struct job *j, const struct history_row *r)
{
	double v = sched_monitored(j->cfg.monitor, r->val_loss, r->val_acc, r->val_macro_acc, r->val_mae,
				   r->val_rmse);
	const char *stop = strstr(r->note, "stopped early after epoch");

	/* As the trainer's (sched.c): strictly better, NaN never best. */
	if (!isnan(v) && (j->best_epoch == 0 || monitor_better(j->cfg.monitor, v, j->best_value))) {
		j->best_epoch = r->epoch;
		j->best_value = v;
	}
	if (stop) {
		free(j->stopped_early);
		j->stopped_early = strdup(stop);   /* NULL on ENOMEM: the history still has it */
	}
}

/* ---- the dataset's digest, recorded with the job ---- */

struct digest_write {
	int64_t id;
	char digest[DSCACHE_DIGEST_MAX];
};

static int digest_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct digest_write *w = arg;

	return store_job_set_dataset_digest(s, w->id, w->digest, err);
}

static void digest_done(void *arg, int rc, const struct tr_err *err)
{
	struct digest_write *w = arg;

	if (rc < 0)
		log_err("job %" PRId64 ": cannot record its dataset's digest: %s", w->id,
			err ? err->msg : "?");
	free(w);
}

void jobs_record_digest(struct job *j, const char *digest)
{
	struct digest_write *w = calloc(1, sizeof(*w));

	snprintf(j->dataset_digest, sizeof(j->dataset_digest), "%s", digest);
	if (w) {
		w->id = j->id;
		snprintf(w->digest, sizeof(w->digest), "%s", digest);
		if (storeq_submit(j->js->cfg.env.sq, digest_fn, w, digest_done) == 0)
			return;
		free(w);
	}
	log_err("job %" PRId64 ": cannot record its dataset's digest", j->id);
}

/* ==== loop side: registry =============================================== */

int jobs_new(struct jobs **out, const struct jobs_config *cfg)
{
	struct jobs *js = calloc(1, sizeof(*js));

	*out = NULL;
	if (!js)
		return -ENOMEM;
	js->cfg = *cfg;
	*out = js;
	return 0;
}

void jobs_set_store(struct jobs *js, struct storeq *sq)
{
	js->cfg.env.sq = sq;
}

bool jobs_shutting_down(const struct jobs *js)
{
	return js->shutting_down;
}

size_t jobs_count(const struct jobs *js)
{
	return js->njobs;
}

struct job *jobs_at(struct jobs *js, size_t i)
{
	return js->jobs[i];
}

unsigned jobs_running(const struct jobs *js)
{
	return js->running;
}

/* Room in the registry for `more` jobs beyond those in it and those being
 * created, so that adding a job stored meanwhile cannot fail. */
static int registry_reserve(struct jobs *js, size_t more)
{
	size_t need = js->njobs + js->creating + more, ncap = js->cap ? js->cap : 16;
	struct job **nj;

	if (need <= js->cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	nj = realloc(js->jobs, ncap * sizeof(*nj));
	if (!nj)
		return -ENOMEM;
	js->jobs = nj;
	js->cap = ncap;
	return 0;
}

/* A job not yet in the registry. */
static struct job *job_alloc(struct jobs *js)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->js = js;
	run_ctx_init(&j->run, &j->cfg, &js->cfg.env, &job_run_events);
	return j;
}

static void job_destroy(struct job *j)
{
	job_drop_dataset(j);
	free(j->error);
	free(j->state_error);
	free(j->numerics);
	free(j->model_text);
	free(j->stopped_early);
	free(j->origin);
	free(j->last_failure);
	free(j->removal);   /* a removal the loop stopped before (its call is gone) */
	run_ctx_deinit(&j->run);
	free(j);
}

static struct job *job_new(struct jobs *js)
{
	struct job *j;

	if (registry_reserve(js, 1) < 0 || !(j = job_alloc(js)))
		return NULL;
	js->jobs[js->njobs++] = j;
	return j;
}

struct job *jobs_find(struct jobs *js, int64_t id)
{
	for (size_t i = 0; i < js->njobs; i++)
		if (js->jobs[i]->id == id && !js->jobs[i]->removal)
			return js->jobs[i];
	return NULL;
}

uint32_t jobs_steps_per_epoch(const struct train_config *cfg, uint32_t train_count)
{
	uint32_t n;

	if (train_count <= cfg->val_size || cfg->batch_size == 0)
		return 0;
	n = cfg->train_size ? cfg->train_size : train_count - cfg->val_size;
	return (uint32_t)(((uint64_t)n + cfg->batch_size - 1) / cfg->batch_size);
}

/* The training images of each dataset recovery has met, so that thousands of
 * jobs on one dataset read its headers once. */
struct train_counts {
	size_t n;
	struct {
		char name[CFG_NAME_MAX];
		struct dataset_shape shape;  /* train_count 0: unreadable */
		int digest_rc;           /* 1: not computed yet; else dscache_digest's result */
		char digest[DSCACHE_DIGEST_MAX];
	} ds[16];
};

/* Steps per epoch and the model's parameter count of a recovered job before
 * it runs in this process, so status can show "step 101/782" and the model
 * for a paused or finished job: from its dataset's headers. Start-up only,
 * before the loop serves anyone (a new job's come from the dataset its Start
 * check loaded, on the thread pool). */
static void recover_steps(struct job *j, struct train_counts *tc)
{
	struct dataset_shape sh = { 0 };
	size_t i;

	for (i = 0; i < tc->n; i++)
		if (strcmp(tc->ds[i].name, j->cfg.dataset) == 0)
			break;
	if (i < tc->n) {
		sh = tc->ds[i].shape;
	} else {
		if (dscache_train_shape(j->js->cfg.env.dsc, j->cfg.dataset, &sh, NULL) < 0)
			memset(&sh, 0, sizeof(sh));
		if (tc->n < sizeof(tc->ds) / sizeof(tc->ds[0])) {
			snprintf(tc->ds[tc->n].name, sizeof(tc->ds[tc->n].name), "%s", j->cfg.dataset);
			tc->ds[tc->n].digest_rc = 1;
			tc->ds[tc->n++].shape = sh;
		}
	}
	run_progress_steps(&j->run, jobs_steps_per_epoch(&j->cfg, trainer_probe_samples(&j->cfg, &sh)), true);
	if (sh.train_count || sh.train_tokens) {
		struct shape in = trainer_probe_shape(&j->cfg, &sh);

		j->classes = sh.target == DS_TARGET_VALUES ? sh.target_width : sh.classes;
		j->params = trainer_count_params(&j->cfg, in, j->classes);
	}
}

/* A job recovered at start-up whose dataset's files are not those it
 * started with must not train on the others: true, with j->error saying
 * so. (A dataset that cannot be read is left to the run, which fails with
 * its error.) */
static bool recover_data_changed(struct job *j, struct store *s, struct train_counts *tc)
{
	char now[DSCACHE_DIGEST_MAX], msg[TR_ERR_MSG_MAX];
	struct tr_err derr = { 0 };
	size_t i;
	int rc;

	if (!j->dataset_digest[0])
		return false;
	for (i = 0; i < tc->n; i++)   /* once per dataset, however many jobs use it */
		if (strcmp(tc->ds[i].name, j->cfg.dataset) == 0)
			break;
	if (i < tc->n && tc->ds[i].digest_rc != 1) {
		rc = tc->ds[i].digest_rc;
		snprintf(now, sizeof(now), "%s", tc->ds[i].digest);
	} else {
		rc = dscache_digest(j->js->cfg.env.dsc, j->cfg.dataset, s, NULL, now, NULL, &derr);
		if (i < tc->n) {
			tc->ds[i].digest_rc = rc;
			snprintf(tc->ds[i].digest, sizeof(tc->ds[i].digest), "%s", rc == 0 ? now : "");
		}
	}
	if (rc < 0 || strcmp(now, j->dataset_digest) == 0)
		return false;
	dscache_changed_message(msg, sizeof(msg), j->cfg.dataset, j->id, j->dataset_digest, now,
				"resume");
	log_err("job %" PRId64 " (%s): not continued at start-up: %s", j->id, j->name, msg);
	free(j->error);
	j->error = strdup(msg);
	return true;
}

int jobs_recover(struct jobs *js, struct store *s, struct tr_err *err)
{
	struct store_job *rows = NULL;
	struct train_counts tc = { 0 };
	size_t n = 0;
	int rc;

	rc = store_job_list(s, &rows, &n, err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct store_job *r = &rows[i];
		struct job *j = job_new(js);
		struct store_checkpoint *cks = NULL;
		struct history_row *hist = NULL;
		size_t nck = 0, nh = 0;
		json_t *cj;
		json_error_t jerr;
		struct tr_err cerr = { 0 };

		if (!j) {
			rc = tr_err_set(err, -ENOMEM, "out of memory");
			break;
		}
		j->id = j->run.id = r->id;
		snprintf(j->name, sizeof(j->name), "%s", r->name);
		j->keep = r->keep;
		j->created = r->created_at;
		j->updated = r->updated_at;
		j->started = r->started_at;
		j->committed_epoch = r->epoch;
		j->origin = r->origin ? strdup(r->origin) : NULL;
		j->state = r->state;
		j->error = r->last_error ? strdup(r->last_error) : NULL;
		j->state_error = r->last_error ? strdup(r->last_error) : NULL;
		snprintf(j->dataset_digest, sizeof(j->dataset_digest), "%s", r->dataset_digest);
		cj = json_loads(r->config_json ? r->config_json : "", 0, &jerr);
		if (!cj || config_from_stored_json(&j->cfg, cj, &cerr) < 0) {
			config_defaults(&j->cfg);
			j->state = JOB_FAILED;
			free(j->error);
			j->error = strdup("stored configuration is invalid");
			free(j->state_error);
			j->state_error = j->error ? strdup(j->error) : NULL;
		}
		json_decref(cj);
		/* The list is ordered by (epoch, step): the last is the newest. */
		if (store_checkpoint_list(s, j->id, &cks, &nck, NULL) == 0 && nck > 0)
			store_ckpt_describe(&j->newest, &cks[nck - 1]);
		for (size_t k = 0; k < nck; k++)
			store_checkpoint_clear(&cks[k]);
		free(cks);
		if (store_history(s, j->id, &hist, &nh, NULL) == 0 && nh > 0) {
			j->last_val_acc = hist[nh - 1].val_acc;
			j->has_val_acc = true;
			for (size_t h = 0; h < nh; h++)
				job_note_row(j, &hist[h]);
		}
		free(hist);
		run_progress_place(&j->run, j->newest.valid ? j->newest.epoch : 0,
				   j->newest.valid ? j->newest.step : 0);
		recover_steps(j, &tc);
		run_set_kill_after(&j->run, r->kill_after >= 1 ? r->kill_after : -1);
		if ((j->state == JOB_RUNNING || j->state == JOB_QUEUED) && r->kill_after >= 1 &&
		    (uint32_t)r->kill_after <= j->committed_epoch) {
			/* Epoch N committed, traind stopped before recording the kill. */
			log_notice("job %" PRId64 " (%s): killed after epoch %" PRId64 " as requested before "
				   "traind stopped", j->id, j->name, r->kill_after);
			j->state = JOB_KILLED;
			if (store_job_set_state(s, j->id, JOB_KILLED, NULL, &cerr) < 0)
				log_err("job %" PRId64 ": cannot record state killed: %s", j->id, cerr.msg);
		}
		if ((j->state == JOB_RUNNING || j->state == JOB_QUEUED) && recover_data_changed(j, s, &tc)) {
			j->state = JOB_FAILED;
			if (store_job_set_state(s, j->id, JOB_FAILED, j->error, &cerr) < 0)
				log_err("job %" PRId64 ": cannot record state failed: %s", j->id, cerr.msg);
			free(j->state_error);
			j->state_error = j->error ? strdup(j->error) : NULL;
		}
		if (j->state == JOB_RUNNING || j->state == JOB_QUEUED) {
			log_notice("job %" PRId64 " (%s): was %s when traind stopped; continuing from %s "
				   "epoch %u step %u",
				   j->id, j->name, job_state_name(j->state),
				   j->newest.valid ? "its checkpoint at" : "the start,",
				   j->newest.epoch, j->newest.step);
			/* Queued again, in the database too: what status shows is what
			 * the database holds. */
			if (j->state == JOB_RUNNING &&
			    store_job_set_state(s, j->id, JOB_QUEUED, r->last_error, &cerr) < 0)
				log_err("job %" PRId64 ": cannot record state queued: %s", j->id, cerr.msg);
			j->state = JOB_QUEUED;
			j->queue_seq = js->next_seq++;
		}
		j->target = j->state;
	}
	store_jobs_free(rows, n);
	return rc;
}

void jobs_start(struct jobs *js)
{
	schedule(js);
	on_change(js);
}

/* ==== verbs ============================================================= */

int job_spec_take_origin(struct job_spec *sp, const struct trainer *t, struct tr_err *err)
{
	int rc;

	sp->has_origin = true;
	sp->origin_epoch = t->epoch;
	sp->origin_step = t->step;
	sp->origin_is_epoch = t->step == 0 && t->epoch > 0;
	if (t->nhistory) {
		sp->origin_rows = malloc(t->nhistory * sizeof(*sp->origin_rows));
		if (!sp->origin_rows)
			return tr_err_set(err, -ENOMEM, "out of memory");
		memcpy(sp->origin_rows, t->history, t->nhistory * sizeof(*sp->origin_rows));
		sp->origin_val_loss = t->history[t->nhistory - 1].val_loss;
		sp->origin_val_acc = t->history[t->nhistory - 1].val_acc;
	}
	sp->steps_per_epoch = t->steps_per_epoch;
	sp->params = t->model.nparams;
	rc = checkpoint_serialize(t, &sp->init_ckpt, &sp->init_len, err);
	if (rc == 0)
		rc = checkpoint_seal(sp->init_ckpt, sp->init_len, sp->init_checksum, err);
	return rc < 0 ? rc : 0;
}

void job_spec_clear(struct dscache *dsc, struct job_spec *spec)
{
	if (spec->ds)
		dscache_put(dsc, spec->ds);
	spec->ds = NULL;
	free(spec->init_ckpt);
	spec->init_ckpt = NULL;
	free(spec->origin_rows);
	spec->origin_rows = NULL;
}

/* A Start on its way to the database. The job is allocated, and its slot in
 * the registry reserved, before the row is written: once it is durable the
 * job joins the registry without anything left to fail. */
struct create_req {
	struct jobs *js;
	struct jobs_done *done;      /* answered once stored; NULL: the client left (the job
	                                is still created) */
	struct job *j;               /* filled in from the spec, not yet in the registry */
	struct job_spec spec;        /* init_ckpt for the store thread; ds moved to j */
	char *config_json;
	int64_t id;
};

static int create_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct create_req *r = arg;
	const struct job_spec *sp = &r->spec;
	int rc;

	if (!sp->init_ckpt)
		rc = store_job_create(s, sp->name, r->config_json, sp->cfg.epochs, sp->keep, JOB_QUEUED,
				      &r->id, err);
	else if (sp->has_origin) {   /* from another job: its checkpoint, history and origin */
		struct store_origin o = {
			.text = sp->origin, .epoch = sp->origin_epoch, .step = sp->origin_step,
			.is_epoch = sp->origin_is_epoch, .val_loss = sp->origin_val_loss,
			.rows = sp->origin_rows, .nrows = sp->origin_epoch,
		};

		rc = store_job_create_from(s, sp->name, r->config_json, sp->cfg.epochs, sp->keep,
					   JOB_QUEUED, sp->init_ckpt, sp->init_len, sp->init_checksum,
					   &o, &r->id, err);
	} else   /* With a starting model: the job and its first checkpoint, in one transaction. */
		rc = store_job_create_at(s, sp->name, r->config_json, sp->cfg.epochs, sp->keep,
					 JOB_QUEUED, sp->init_ckpt, sp->init_len, sp->init_checksum,
					 &r->id, err);
	/* A crash in between leaves the job without a digest: its first run
	 * records it (as for a job stored before digests). */
	if (rc == 0 && sp->dataset_digest[0] &&
	    store_job_set_dataset_digest(s, r->id, sp->dataset_digest, err) < 0)
		log_err("job %" PRId64 ": cannot record its dataset's digest: %s", r->id, err->msg);
	return rc;
}

static void create_req_free(struct create_req *r)
{
	if (r->j)
		job_destroy(r->j);
	job_spec_clear(r->js->cfg.env.dsc, &r->spec);
	free(r->config_json);
	free(r);
}

/* What a new job's spec says of its first checkpoint (init_from, start
 * --from): the registry's copy of it. */
static void job_take_start(struct job *j, const struct job_spec *spec)
{
	if (spec->init_ckpt) {
		j->newest.valid = true;
		j->newest.is_epoch = false;
		j->newest.size = (int64_t)spec->init_len;
		j->newest.created = j->created;
		j->newest.val_loss = NAN;
		snprintf(j->newest.checksum, sizeof(j->newest.checksum), "%s", spec->init_checksum);
	}
	if (spec->has_origin) {
		j->origin = strdup(spec->origin);   /* shown if it could be kept; stored either way */
		j->newest.epoch = spec->origin_epoch;
		j->newest.step = spec->origin_step;
		j->newest.is_epoch = spec->origin_is_epoch;
		j->newest.val_loss = spec->origin_is_epoch ? spec->origin_val_loss : NAN;
		j->committed_epoch = spec->origin_epoch;
		if (spec->origin_epoch) {
			j->last_val_acc = spec->origin_val_acc;
			j->has_val_acc = true;
		}
		run_progress_place(&j->run, spec->origin_epoch, spec->origin_step);
	}
}

static void create_done(void *arg, int rc, const struct tr_err *err)
{
	struct create_req *r = arg;
	struct jobs *js = r->js;
	struct job *j = r->j;
	struct jobs_result res;

	js->creating--;
	if (rc < 0) {
		res = result_error(NULL, JOBS_E_STORAGE, NULL, "%s", err ? err->msg : "?");
		done_answer(&r->done, &res);
		create_req_free(r);
		return;
	}
	r->j = NULL;
	j->id = j->run.id = r->id;
	j->created = j->updated = now_unix();
	job_take_start(j, &r->spec);
	j->queue_seq = js->next_seq++;
	js->jobs[js->njobs++] = j;   /* reserved by jobs_start_job */
	log_notice("job %" PRId64 " (%s): created: %s, %u epochs, batch %u, %s lr %g", j->id, j->name,
		   j->cfg.dataset, j->cfg.epochs, j->cfg.batch_size, config_optim_name(j->cfg.optimizer),
		   j->cfg.lr);
	res = result_state(j);
	done_answer(&r->done, &res);
	create_req_free(r);
	schedule(js);
	on_change(js);
}

int jobs_start_job(struct jobs *js, struct job_spec *spec, struct jobs_done *done)
{
	struct create_req *r = calloc(1, sizeof(*r));
	json_t *cj = NULL;
	struct job *j;

	if (!r) {
		job_spec_clear(js->cfg.env.dsc, spec);
		return done_now(done, &(struct jobs_result){ .code = JOBS_E_STORAGE,
							     .message = "out of memory" });
	}
	r->js = js;
	r->spec = *spec;   /* r owns what spec owned */
	spec->ds = NULL;
	spec->init_ckpt = NULL;
	spec->origin_rows = NULL;
	cj = config_to_json(&r->spec.cfg);
	if (cj)
		r->config_json = json_dumps(cj, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
	json_decref(cj);
	r->j = j = job_alloc(js);
	if (!r->config_json || !j || registry_reserve(js, 1) < 0) {
		create_req_free(r);
		return done_now(done, &(struct jobs_result){ .code = JOBS_E_STORAGE,
							     .message = "out of memory" });
	}
	snprintf(j->name, sizeof(j->name), "%s", r->spec.name);
	j->cfg = r->spec.cfg;
	j->keep = r->spec.keep;
	j->state = j->target = JOB_QUEUED;   /* the row is created queued */
	j->ds = r->spec.ds;                  /* for its first run */
	r->spec.ds = NULL;
	run_progress_steps(&j->run, r->spec.steps_per_epoch, false);
	j->params = r->spec.params;
	j->classes = j->ds ? dataset_outputs(j->ds) : 0;
	snprintf(j->dataset_digest, sizeof(j->dataset_digest), "%s", r->spec.dataset_digest);
	if (storeq_submit(js->cfg.env.sq, create_fn, r, create_done) < 0) {
		create_req_free(r);
		return done_now(done, &(struct jobs_result){ .code = JOBS_E_STORAGE,
							     .message = "cannot queue the job" });
	}
	js->creating++;
	done_hold(&r->done, done);
	return JOBS_PENDING;
}

/* ---- a group of jobs in one transaction (jobs_start_group) ------------- */

struct grp_req {
	struct jobs *js;
	struct jobs_done *done;
	struct jobs_group *g;
	struct job **j;              /* g->n jobs, not yet in the registry */
};

static void grp_req_free(struct grp_req *r)
{
	struct jobs_group *g = r->g;

	for (size_t i = 0; i < g->n; i++) {
		if (r->j && r->j[i])
			job_destroy(r->j[i]);
		job_spec_clear(r->js->cfg.env.dsc, &g->specs[i]);
		if (g->config_json)
			free(g->config_json[i]);
	}
	free(g->config_json);
	g->config_json = NULL;
	free(r->j);
	free(r);
}

static int grp_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct grp_req *r = arg;

	return r->g->store_fn(s, r->g, err);
}

static void grp_done(void *arg, int rc, const struct tr_err *err)
{
	struct grp_req *r = arg;
	struct jobs *js = r->js;
	struct jobs_group *g = r->g;
	struct jobs_result res;

	js->creating -= g->n;
	if (rc < 0) {
		struct jobs_done *done = r->done;

		res = result_error(NULL, JOBS_E_STORAGE, NULL, "%s", err ? err->msg : "?");
		if (done)
			done->held = &done;   /* r goes first: done_answer may free g */
		grp_req_free(r);
		done_answer(&done, &res);
		return;
	}
	for (size_t i = 0; i < g->n; i++) {
		struct job *j = r->j[i];

		r->j[i] = NULL;
		j->id = j->run.id = g->ids[i];
		j->created = j->updated = now_unix();
		job_take_start(j, &g->specs[i]);   /* a PBT exploit's origin */
		j->queue_seq = js->next_seq++;
		js->jobs[js->njobs++] = j;   /* reserved by jobs_start_group */
		log_notice("job %" PRId64 " (%s): created: %s, %u epochs, batch %u, %s lr %g", j->id, j->name,
			   j->cfg.dataset, j->cfg.epochs, j->cfg.batch_size, config_optim_name(j->cfg.optimizer),
			   j->cfg.lr);
	}
	if (g->added)
		g->added(g);
	res = (struct jobs_result){ .code = JOBS_OK, .id = g->n ? g->ids[0] : 0, .state = JOB_QUEUED };
	{
		struct jobs_done *done = r->done;

		if (done)
			done->held = &done;   /* r goes first: done_answer may free g */
		grp_req_free(r);
		done_answer(&done, &res);
	}
	schedule(js);
	on_change(js);
}

int jobs_start_group(struct jobs *js, struct jobs_group *g, struct jobs_done *done)
{
	struct grp_req *r = calloc(1, sizeof(*r));
	bool oom = !r;

	if (r) {
		r->js = js;
		r->g = g;
		r->j = calloc(g->n ? g->n : 1, sizeof(*r->j));
		g->config_json = calloc(g->n ? g->n : 1, sizeof(*g->config_json));
		oom = !r->j || !g->config_json || registry_reserve(js, g->n) < 0;
	}
	for (size_t i = 0; r && !oom && i < g->n; i++) {
		struct job_spec *sp = &g->specs[i];
		json_t *cj = config_to_json(&sp->cfg);
		struct job *j;

		if (cj)
			g->config_json[i] = json_dumps(cj, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
		json_decref(cj);
		r->j[i] = j = job_alloc(js);
		if (!g->config_json[i] || !j) {
			oom = true;
			break;
		}
		snprintf(j->name, sizeof(j->name), "%s", sp->name);
		j->cfg = sp->cfg;
		j->keep = sp->keep;
		j->state = j->target = JOB_QUEUED;
		j->ds = sp->ds;
		sp->ds = NULL;
		run_progress_steps(&j->run, sp->steps_per_epoch, false);
		j->params = sp->params;
		j->classes = j->ds ? dataset_outputs(j->ds) : 0;
		snprintf(j->dataset_digest, sizeof(j->dataset_digest), "%s", sp->dataset_digest);
	}
	if (oom || storeq_submit(js->cfg.env.sq, grp_fn, r, grp_done) < 0) {
		if (r)
			grp_req_free(r);
		else
			for (size_t i = 0; i < g->n; i++)
				job_spec_clear(js->cfg.env.dsc, &g->specs[i]);
		return done_now(done, &(struct jobs_result){ .code = JOBS_E_STORAGE,
							     .message = "cannot queue the jobs" });
	}
	js->creating += g->n;
	done_hold(&r->done, done);
	return JOBS_PENDING;
}

static int invalid_state(struct jobs_done *done, struct job *j, const char *msg)
{
	struct jobs_result r = result_error(j, JOBS_E_INVALID_STATE, NULL, "%s", msg);

	return done_now(done, &r);
}

int jobs_pause(struct jobs *js, struct job *j, struct jobs_done *done)
{
	(void)js;
	if (j->target == JOB_QUEUED) {
		job_drop_dataset(j);
		return set_state(j, JOB_PAUSED, NULL, done);   /* answered once durable */
	}
	if (j->target != JOB_RUNNING || !j->worker_alive)
		return invalid_state(done, j, "only a queued or running job can be paused");
	run_request_stop(&j->run, STOP_PAUSE);
	return stop_wait_add(j, done, true);
}

/* ---- a job's configuration, recorded again (resume --epochs) ---- */

struct config_write {
	int64_t id;
	uint32_t epochs;
	char *json;                  /* owned */
};

static int config_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct config_write *w = arg;

	return store_job_set_config(s, w->id, w->json, w->epochs, err);
}

static void config_done(void *arg, int rc, const struct tr_err *err)
{
	struct config_write *w = arg;

	if (rc < 0)
		log_err("job %" PRId64 ": cannot record its %u epochs: %s", w->id, w->epochs,
			err ? err->msg : "?");
	free(w->json);
	free(w);
}

/* Record j->cfg; queued before the state write that follows it, so the store
 * holds the new epochs before the job is queued again. */
static int record_config(struct job *j)
{
	struct config_write *w = calloc(1, sizeof(*w));
	json_t *o = config_to_json(&j->cfg);

	if (w && o && (w->json = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)))) {
		w->id = j->id;
		w->epochs = j->cfg.epochs;
		json_decref(o);
		if (storeq_submit(j->js->cfg.env.sq, config_fn, w, config_done) == 0)
			return 0;
		o = NULL;
	}
	json_decref(o);
	if (w)
		free(w->json);
	free(w);
	return -ENOMEM;
}

int jobs_resume(struct jobs *js, struct job *j, bool weights_only, uint32_t epochs, uint32_t ranks,
		struct jobs_done *done)
{
	bool more = epochs > 0;
	struct jobs_result r;
	int rc;

	if (j->target != JOB_PAUSED && j->target != JOB_KILLED && j->target != JOB_FAILED &&
	    !(more && j->target == JOB_DONE))
		return invalid_state(done, j, j->target == JOB_DONE
					      ? "the job is already done (resume --epochs N trains it on to N epochs)"
					      : "only a paused, killed or failed job can be resumed");
	if (j->worker_alive || j->finalize_pending)
		return invalid_state(done, j, "the job is still stopping");
	if (more && epochs <= j->committed_epoch) {
		r = result_error(j, JOBS_E_INVALID_PARAMETER, "epochs",
				 "job %" PRId64 " has committed %u epoch(s); the epochs in all must be more than that, not %u",
				 j->id, j->committed_epoch, epochs);
		return done_now(done, &r);
	}
	if (ranks && config_shards(&j->cfg) % ranks != 0) {
		r = result_error(j, JOBS_E_INVALID_PARAMETER, "ranks",
				 "%u ranks do not divide job %" PRId64 "'s %u shards", ranks, j->id,
				 config_shards(&j->cfg));
		return done_now(done, &r);
	}
	if ((more && epochs != j->cfg.epochs) || (ranks && ranks != j->cfg.ranks)) {
		uint32_t old = j->cfg.epochs, old_ranks = j->cfg.ranks;

		j->cfg.epochs = more ? epochs : old;
		j->cfg.ranks = ranks ? ranks : old_ranks;
		if (record_config(j) < 0) {
			j->cfg.epochs = old;
			j->cfg.ranks = old_ranks;
			r = result_error(j, JOBS_E_STORAGE, NULL, "cannot record the job's epochs");
			return done_now(done, &r);
		}
		if (more && epochs != old)
			log_notice("job %" PRId64 ": %u epochs in all (was %u)", j->id, epochs, old);
		if (ranks && ranks != old_ranks)
			log_notice("job %" PRId64 ": on %u rank(s) (was %u)", j->id, ranks, old_ranks);
	}
	j->weights_only_next = weights_only;
	j->go_on_next = more;
	j->restarts = 0;
	if (run_kill_after(&j->run) != -1)
		set_kill_after(j, -1, NULL);
	j->queue_seq = js->next_seq++;
	log_notice("job %" PRId64 ": resumed%s", j->id, weights_only ? " (weights only)" : "");
	rc = set_state(j, JOB_QUEUED, NULL, done);   /* answered once durable */
	schedule(js);
	return rc;
}

int jobs_kill(struct jobs *js, struct job *j, int64_t after_epoch, struct jobs_done *done)
{
	(void)js;
	if (j->target != JOB_RUNNING && j->target != JOB_QUEUED)
		return invalid_state(done, j, "only a queued or running job can be killed");
	if (after_epoch > 0 && (uint32_t)after_epoch > j->committed_epoch) {
		if ((uint64_t)after_epoch > j->cfg.epochs) {
			struct jobs_result r = result_error(j, JOBS_E_INVALID_PARAMETER, "after_epoch",
							    "after_epoch is beyond the job's last epoch");

			return done_now(done, &r);
		}
		log_notice("job %" PRId64 ": will be killed after epoch %" PRId64 " commits", j->id,
			   after_epoch);
		return set_kill_after(j, after_epoch, done);   /* answered once recorded */
	}
	if (j->target == JOB_QUEUED && !j->worker_alive) {
		log_notice("job %" PRId64 ": killed while queued", j->id);
		job_drop_dataset(j);
		return set_state(j, JOB_KILLED, NULL, done);   /* answered once durable */
	}
	run_request_stop(&j->run, STOP_KILL);
	log_notice("job %" PRId64 ": kill requested", j->id);
	return stop_wait_add(j, done, false);
}

/* ==== removal (Delete) ================================================== */

struct removal {
	struct job *j;
	struct jobs_done *done;      /* answered once removed; NULL when the client left */
	int64_t id;
	enum job_state was;          /* the job's state when Delete was called */
	bool killed;                 /* force stopped its run first */
	struct store_removed removed;
};

static int removal_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct removal *r = arg;

	return store_job_delete(s, r->id, &r->removed, err);
}

/* Take j out of the registry and free it; everything still waiting on it
 * ends (JOBS_E_REMOVED, the observer's removed). Only once its run is gone
 * and all its store work has run (the removal is the last: the store
 * thread keeps the order). */
static void job_remove(struct jobs *js, struct job *j)
{
	const struct jobs_config *c = &js->cfg;

	stops_end(j, true);
	if (c->observer && c->observer->removed)
		c->observer->removed(c->ctx, j);
	for (size_t i = 0; i < js->njobs; i++) {
		if (js->jobs[i] == j) {
			memmove(&js->jobs[i], &js->jobs[i + 1], (js->njobs - i - 1) * sizeof(js->jobs[0]));
			js->njobs--;
			break;
		}
	}
	j->removal = NULL;   /* removal_done's, which frees it */
	job_destroy(j);      /* everything else the job owns: its errors, its dataset reference... */
}

static void removal_done(void *arg, int rc, const struct tr_err *err)
{
	struct removal *r = arg;
	struct job *j = r->j;
	struct jobs *js = j->js;
	struct jobs_result res;

	if (rc < 0) {
		/* Still there: it becomes visible again, as it now is (killed, if
		 * force stopped it; a queued one may run). */
		log_err("job %" PRId64 ": cannot remove it: %s", r->id, err ? err->msg : "?");
		j->removal = NULL;
		res = result_error(j, JOBS_E_STORAGE, NULL, "%s", err ? err->msg : "cannot remove the job");
		done_answer(&r->done, &res);
		free(r);
		changed(j);
		schedule(js);
		return;
	}
	log_notice("job %" PRId64 " (%s): removed (was %s%s) with %" PRId64 " checkpoints (%" PRId64
		   " bytes) and %" PRId64 " history rows",
		   r->id, j->name, job_state_name(r->was), r->killed ? ", killed first" : "",
		   r->removed.checkpoints, r->removed.checkpoint_bytes, r->removed.history_rows);
	res = (struct jobs_result){ .code = JOBS_OK, .id = r->id, .state = r->was };
	done_answer(&r->done, &res);
	job_remove(js, j);
	free(r);
	on_change(js);
}

/* Hand the removal to the store thread: behind every write already queued
 * for the job, so none of them can land after it. JOBS_PENDING; or, when
 * it cannot be queued, the job stays and the caller hears so: now (the
 * verb's return) or through its done. */
static int removal_submit(struct removal *r, bool now)
{
	struct job *j = r->j;
	struct jobs_result res;
	struct jobs_done *done = r->done;
	int rc = JOBS_E_STORAGE;

	if (storeq_submit(j->js->cfg.env.sq, removal_fn, r, removal_done) == 0)
		return JOBS_PENDING;
	j->removal = NULL;
	res = result_error(j, JOBS_E_STORAGE, NULL, "cannot queue the removal");
	if (now && done)
		rc = done_now(done, &res);
	else
		done_answer(&r->done, &res);
	free(r);
	changed(j);
	schedule(j->js);
	return rc;
}

int jobs_delete(struct jobs *js, struct job *j, bool force, struct jobs_done *done)
{
	bool stopping = j->worker_alive || j->finalize_pending;
	struct removal *r;

	(void)js;
	if (!force && (stopping || j->state == JOB_QUEUED || j->state == JOB_RUNNING))
		return invalid_state(done, j, j->state == JOB_QUEUED
					      ? "a queued job is removed only with force (trainctl rm --force)"
					      : "a running job is removed only with force (trainctl rm --force), "
						"which kills it first");
	r = calloc(1, sizeof(*r));
	if (!r) {
		struct jobs_result res = result_error(j, JOBS_E_STORAGE, NULL, "out of memory");

		return done_now(done, &res);
	}
	r->j = j;
	r->id = j->id;
	r->was = j->state;
	j->removal = r;
	done_hold(&r->done, done);
	if (stopping) {
		/* As Kill: the run stops at once and saves nothing more;
		 * finalize() submits the removal once it and its commits are done. */
		r->killed = j->worker_alive;
		run_request_stop(&j->run, STOP_KILL);
		log_notice("job %" PRId64 ": kill requested, to remove it", j->id);
		return JOBS_PENDING;
	}
	return removal_submit(r, true);
}

void jobs_shutdown(struct jobs *js)
{
	js->shutting_down = true;
	for (size_t i = 0; i < js->njobs; i++) {
		struct job *j = js->jobs[i];

		if (j->worker_alive)
			run_request_stop(&j->run, STOP_SHUTDOWN);
	}
	if (js->running == 0 && js->cfg.on_drained)
		js->cfg.on_drained(js->cfg.ctx);
}

void jobs_free(struct jobs *js)
{
	const struct jobs_config *c;

	if (!js)
		return;
	c = &js->cfg;
	for (size_t i = 0; i < js->njobs; i++) {
		struct job *j = js->jobs[i];

		stops_end(j, false);
		if (c->observer && c->observer->dropped)
			c->observer->dropped(c->ctx, j);
		job_destroy(j);
	}
	free(js->jobs);
	free(js);
}

void jobs_summary(struct jobs *js, char *buf, size_t len)
{
	unsigned counts[JOB_DONE + 1] = { 0 };
	size_t used;

	for (size_t i = 0; i < js->njobs; i++)
		counts[js->jobs[i]->state]++;
	used = (size_t)snprintf(buf, len, "%u running, %u queued, %u paused", counts[JOB_RUNNING],
				counts[JOB_QUEUED], counts[JOB_PAUSED]);
	for (size_t i = 0; i < js->njobs && used < len; i++) {
		struct job *j = js->jobs[i];
		struct run_progress p;

		if (j->state != JOB_RUNNING)
			continue;
		run_progress_get(&j->run, &p);
		used += (size_t)snprintf(buf + used, len - used, "; job %" PRId64 " epoch %u/%u step %u",
					 j->id, p.epoch + 1 > j->cfg.epochs ? j->cfg.epochs : p.epoch + 1,
					 j->cfg.epochs, p.step);
	}
}
