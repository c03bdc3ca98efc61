/*
 * runner.c - what every run does, whatever its backend. See
 * daemon/runner/runner.h.
 *
 * In parts: the ctx and its progress snapshot (the owner's side), the
 * checkpoints' trip to the store thread and back to the loop, and the run
 * base (a run's start, restore and exit, shared by the thread and the MPI
 * runner).
 */
#include "daemon/runner/runner.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/checkpoint.h"
#include "traind/clock.h"
#include "daemon/core/log.h"
#include "daemon/runner/blobpool.h"
#include "daemon/store/jobstate.h"

/* ==== the ctx (loop side) ============================================== */

void run_ctx_init(struct run_ctx *ctx, const struct train_config *cfg, const struct run_env *env,
		  const struct run_events *events)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->cfg = cfg;
	ctx->env = env;
	ctx->events = events;
	pthread_mutex_init(&ctx->mu, NULL);
	atomic_init(&ctx->stop, STOP_NONE);
	atomic_init(&ctx->kill_after, -1);
	atomic_init(&ctx->commits_inflight, 0);
}

void run_ctx_deinit(struct run_ctx *ctx)
{
	pthread_mutex_destroy(&ctx->mu);
}

int run_start(struct run_ctx *ctx, const struct run_start *how, struct tr_err *err)
{
	const struct runner_ops *ops = ctx->cfg->ranks > 1 ? ctx->env->multi : ctx->env->local;

	return ops->start(ctx, how, err);
}

void run_request_stop(struct run_ctx *ctx, enum run_stop why)
{
	if (why == STOP_PAUSE || why == STOP_SHUTDOWN) {
		if (atomic_load(&ctx->stop) == STOP_NONE)
			atomic_store(&ctx->stop, why);
		return;
	}
	atomic_store(&ctx->stop, why);
}

int64_t run_kill_after(struct run_ctx *ctx)
{
	return atomic_load(&ctx->kill_after);
}

void run_set_kill_after(struct run_ctx *ctx, int64_t epoch)
{
	atomic_store(&ctx->kill_after, epoch);
}

void run_drop_kill_after(struct run_ctx *ctx, int64_t epoch)
{
	atomic_compare_exchange_strong(&ctx->kill_after, &epoch, -1);
}

int run_commits_inflight(struct run_ctx *ctx)
{
	return atomic_load(&ctx->commits_inflight);
}

void run_progress_place(struct run_ctx *ctx, uint32_t epoch, uint32_t step)
{
	pthread_mutex_lock(&ctx->mu);
	ctx->prog.epoch = epoch;
	ctx->prog.step = step;
	pthread_mutex_unlock(&ctx->mu);
}

void run_progress_steps(struct run_ctx *ctx, uint32_t steps_per_epoch, bool only_unknown)
{
	pthread_mutex_lock(&ctx->mu);
	if (!only_unknown || !ctx->prog.steps_per_epoch)
		ctx->prog.steps_per_epoch = steps_per_epoch;
	pthread_mutex_unlock(&ctx->mu);
}

void run_progress_get(struct run_ctx *ctx, struct run_progress *out)
{
	pthread_mutex_lock(&ctx->mu);
	*out = ctx->prog;
	pthread_mutex_unlock(&ctx->mu);
}

void run_publish(struct run_ctx *ctx, const struct run_report *r, bool active)
{
	pthread_mutex_lock(&ctx->mu);
	if (r) {
		ctx->prog.epoch = r->epoch;
		ctx->prog.step = r->step;
		ctx->prog.steps_per_epoch = r->steps_per_epoch;
		if (r->samples_per_second > 0)
			ctx->prog.samples_per_second = r->samples_per_second;
		ctx->prog.has_loss = r->batches > 0;
		ctx->prog.loss = r->batches ? r->loss_sum / (double)r->batches : 0;
		ctx->prog.lr = r->lr;
		ctx->prog.has_lr = true;
	}
	ctx->prog.active = active;
	pthread_mutex_unlock(&ctx->mu);
}

/* ==== checkpoints: to the store thread, then to the loop ================ */

/* A checkpoint on its way to the store thread and back to the loop. */
struct commit {
	struct loopq_node node;      /* a synchronous commit's trip to the loop */
	struct run_ctx *ctx;
	int64_t job_id;
	uint8_t *blob;
	size_t cap;                  /* blob's allocated size */
	struct blob_pool *pool;      /* where blob goes back to (NULL: freed) */
	double submitted;            /* monotonic time of hand-over */
	struct run_commit out;       /* what the loop hears */
};

/* The commit's outcome to the loop; the loop has what it needs, the blob goes. */
static void commit_event(struct commit *c)
{
	atomic_fetch_sub(&c->ctx->commits_inflight, 1);
	c->ctx->events->commit(c->ctx, &c->out);
	blob_pool_put(c->pool, c->blob, c->cap);
	free(c);
}

static void on_commit_node(struct loopq_node *n)
{
	commit_event(loopq_entry(n, struct commit, node));
}

static int commit_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct commit *c = arg;
	int rc;

	/* Hash here, off the training thread. */
	rc = checkpoint_seal(c->blob, c->out.len, c->out.checksum, err);
	if (rc < 0)
		return rc;
	if (c->out.is_epoch)
		rc = store_commit_epoch(s, c->job_id, &c->out.row, c->blob, c->out.len, c->out.checksum,
					err);
	else
		rc = store_save_position(s, c->job_id, c->out.epoch, c->out.step, c->blob, c->out.len,
					 c->out.checksum, err);
	c->out.durable_after = clock_seconds() - c->submitted;
	return rc;
}

static void commit_done(void *arg, int rc, const struct tr_err *err)
{
	struct commit *c = arg;

	c->out.rc = rc;
	if (err)
		c->out.err = *err;
	commit_event(c);
}

int run_hand_over_blob(struct run_ctx *ctx, struct blob_pool *pool, uint8_t *blob, size_t cap,
		       size_t len, const struct history_row *row, uint32_t epoch, uint32_t step,
		       double hold_seconds, bool sync, struct tr_err *err)
{
	struct commit *c = calloc(1, sizeof(*c));
	int rc;

	if (!c) {
		blob_pool_put(pool, blob, cap);
		return tr_err_set(err, -ENOMEM, "out of memory");
	}
	c->ctx = ctx;
	c->job_id = ctx->id;
	c->pool = pool;
	c->blob = blob;
	c->cap = cap;
	c->out.is_epoch = row != NULL;
	if (row)
		c->out.row = *row;
	c->out.epoch = epoch;
	c->out.step = step;
	c->out.len = len;
	c->out.hold_seconds = hold_seconds;
	c->submitted = clock_seconds();
	atomic_fetch_add(&ctx->commits_inflight, 1);
	if (!sync) {
		rc = storeq_submit(ctx->env->sq, commit_fn, c, commit_done);
		if (rc < 0) {
			atomic_fetch_sub(&ctx->commits_inflight, 1);
			blob_pool_put(pool, c->blob, c->cap);
			free(c);
			return tr_err_set(err, rc, "cannot queue the checkpoint");
		}
		return 0;
	}
	c->out.rc = storeq_call(ctx->env->sq, commit_fn, c, &c->out.err);
	rc = c->out.rc;
	if (rc < 0 && err)
		*err = c->out.err;
	c->node.fn = on_commit_node;
	loopq_post(ctx->env->lq, &c->node);
	return rc;
}

/* ==== the run base ====================================================== */

struct drop_req {
	int64_t job_id, ckpt_id;
};

static int drop_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct drop_req *r = arg;

	return store_drop_checkpoint(s, r->job_id, r->ckpt_id, err);
}

/* Build the trainer: from the newest checkpoint that verifies (dropping ones
 * that do not, which moves the history back with them), or fresh. */
static int load_trainer(struct run_base *rb, const struct dataset *ds, struct trainer **out,
			struct tr_err *err)
{
	struct run_ctx *ctx = rb->ctx;
	struct run_exit *ex = &rb->ex;
	struct store *rs = NULL;
	int rc;

	rc = store_open(&rs, ctx->env->db_path, true, err);
	if (rc < 0)
		return rc;
	for (int tries = 0; tries < 1000; tries++) {
		struct store_checkpoint ck;
		struct checkpoint_info info;
		struct drop_req dr;

		memset(&ck, 0, sizeof(ck));
		rc = store_latest_checkpoint(rs, ctx->id, &ck, err);
		if (rc == -ENOENT) {
			rc = trainer_new(out, ctx->cfg, ds, err);
			break;
		}
		if (rc < 0)
			break;
		rc = checkpoint_inspect(ck.blob, ck.size > 0 ? (size_t)ck.size : 0, &info, err);
		if (rc == 0 && strcmp(info.checksum, ck.checksum) != 0)
			rc = tr_err_set(err, -EINVAL, "checksum %s differs from the stored %s", info.checksum,
					ck.checksum);
		if (rc < 0) {
			log_warn("job %" PRId64 ": checkpoint at epoch %u step %u is unusable (%s); "
				 "falling back to the one before it",
				 ctx->id, ck.epoch, ck.step, err ? err->msg : "corrupt");
			dr.job_id = ctx->id;
			dr.ckpt_id = ck.id;
			store_checkpoint_clear(&ck);
			rc = storeq_call(ctx->env->sq, drop_fn, &dr, err);
			if (rc < 0)
				break;
			continue;
		}
		rc = checkpoint_restore(out, ck.blob, (size_t)ck.size, ds, rb->weights_only, err);
		/* resume --epochs: the job's epochs, not the checkpoint's; it goes
		 * on past an early stop too */
		if (rc == 0 && rb->go_on)
			trainer_go_on(*out);
		if (rc == 0 && (*out)->cfg.epochs != ctx->cfg->epochs) {
			rc = trainer_set_epochs(*out, ctx->cfg->epochs, err);
			if (rc < 0) {
				trainer_free(*out);
				*out = NULL;
			}
		}
		if (rc == 0) {
			ex->restored = true;
			ex->restored_epoch = ck.epoch;
			ex->restored_step = ck.step;
			store_ckpt_describe(&ex->ck, &ck);
		}
		store_checkpoint_clear(&ck);
		break;
	}
	store_close(rs);
	return rc;
}

struct digest_req {
	int64_t id;
	const char *digest;
};

static int digest_fn(struct store *s, void *arg, struct tr_err *err)
{
	struct digest_req *r = arg;

	return store_job_set_dataset_digest(s, r->id, r->digest, err);
}

/* The dataset's files must be those the job started with (a resume was
 * checked when asked, but files can change while it waits in the queue,
 * and a recovered job is checked here too); a job that has no digest yet
 * (stored before digests) records it now (and in rb->restored for the
 * loop). Off the loop: it hashes. */
static int check_dataset(struct run_base *rb, struct tr_err *err)
{
	struct run_ctx *ctx = rb->ctx;
	const struct run_env *env = ctx->env;
	char now[DSCACHE_DIGEST_MAX];
	struct store *rs = NULL;
	int rc;

	if (store_open(&rs, env->db_path, true, NULL) < 0)
		rs = NULL;   /* hashed in full; the store's error comes with the run's first read */
	rc = dscache_digest(env->dsc, ctx->cfg->dataset, rs, env->sq, now, NULL, err);
	store_close(rs);
	if (rc < 0)
		return rc;
	if (rb->digest[0] && strcmp(rb->digest, now) != 0) {
		dscache_changed_message(err->msg, sizeof(err->msg), ctx->cfg->dataset, ctx->id, rb->digest,
					now, "resume");
		return err->code = -ESTALE;
	}
	if (!rb->digest[0]) {
		struct digest_req r = { ctx->id, now };
		struct tr_err werr = { 0 };

		/* Not fatal: without a record the next start tries again. */
		if (storeq_call(env->sq, digest_fn, &r, &werr) < 0) {
			log_warn("job %" PRId64 ": cannot record its dataset's digest: %s", ctx->id, werr.msg);
			return 0;
		}
		snprintf(rb->restored.dataset_digest, sizeof(rb->restored.dataset_digest), "%s", now);
		snprintf(rb->digest, sizeof(rb->digest), "%s", now);
	}
	return 0;
}

int run_base_spawn(struct run_base *rb, struct run_ctx *ctx, const struct run_start *how,
		   void *(*main)(void *rb))
{
	rb->ctx = ctx;
	rb->weights_only = how->weights_only;
	rb->go_on = how->go_on;
	rb->ds = how->ds;
	snprintf(rb->digest, sizeof(rb->digest), "%s", how->digest);
	/* No stop request; the progress back to the committed epoch (the
	 * epoch's step count kept for status until the run publishes its own). */
	atomic_store(&ctx->stop, STOP_NONE);
	pthread_mutex_lock(&ctx->mu);
	{
		uint32_t spe = ctx->prog.steps_per_epoch;

		memset(&ctx->prog, 0, sizeof(ctx->prog));
		ctx->prog.epoch = how->committed_epoch;
		ctx->prog.steps_per_epoch = spe;
	}
	pthread_mutex_unlock(&ctx->mu);
	return -pthread_create(&rb->thread, NULL, main, rb);
}

int run_base_prepare(struct run_base *rb, const struct dataset **ds, struct trainer **t,
		     struct tr_err *err)
{
	int rc;

	rb->ex.outcome = JOB_FAILED;
	run_publish(rb->ctx, NULL, false);
	*ds = rb->ds;   /* a new job's first run: loaded by the Start check */
	rb->ds = NULL;
	rc = check_dataset(rb, err);
	if (rc == 0 && !*ds)
		rc = dscache_get(rb->ctx->env->dsc, rb->ctx->cfg->dataset, rb->digest, ds, err);
	if (rc == 0)
		rc = load_trainer(rb, *ds, t, err);
	return rc;
}

static void on_restored(struct loopq_node *n)
{
	struct run_base *rb = loopq_entry(n, struct run_base, restored_node);

	rb->ctx->events->restored(rb->ctx, &rb->restored);   /* the run stays the runner's */
}

void run_base_restored(struct run_base *rb, const struct trainer *t)
{
	struct run_restored *r = &rb->restored;

	r->from_checkpoint = rb->ex.restored;
	r->ck = rb->ex.ck;
	r->nhistory = t->nhistory;
	r->last_val_acc = t->nhistory ? t->history[t->nhistory - 1].val_acc : 0;
	r->params = t->model.nparams;
	r->best_epoch = t->sched.best_epoch;
	r->best_value = t->sched.best_value;
	r->classes = t->model.classes;
	snprintf(r->numerics, sizeof(r->numerics), "%s", t->numerics_changed);
	rb->restored_node.fn = on_restored;
	loopq_post(rb->ctx->env->lq, &rb->restored_node);
}

/* The run's last event: join its thread, free it, tell the loop. */
static void on_exit_node(struct loopq_node *n)
{
	struct run_base *rb = loopq_entry(n, struct run_base, exit_node);
	struct run_ctx *ctx = rb->ctx;
	struct run_exit ex = rb->ex;

	pthread_join(rb->thread, NULL);
	free(rb);   /* the backend's run: rb is its first member */
	ctx->events->exit(ctx, &ex);
}

void run_base_exit(struct run_base *rb, int rc, const struct tr_err *err)
{
	struct run_exit *ex = &rb->ex;

	if (rc < 0) {
		ex->outcome = JOB_FAILED;
		ex->rc = rc;
		snprintf(ex->msg, sizeof(ex->msg), "%s", err->msg[0] ? err->msg : strerror(-rc));
	}
	rb->exit_node.fn = on_exit_node;
	loopq_post(rb->ctx->env->lq, &rb->exit_node);
}
