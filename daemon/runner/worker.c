/*
 * worker.c - the thread runner: each run of a job on a dedicated thread
 * that owns its trainer. See daemon/runner/worker.h for the contract with
 * the loop.
 *
 * A run is one struct worker_run, allocated by the loop before the thread
 * starts and freed by the loop when the run's exit event arrives, so the
 * events the thread posts need no allocation and cannot be lost. The thread
 * builds its trainer (load_trainer: the newest checkpoint that verifies, or
 * fresh), posts "restored", trains step by step, publishes progress, hands
 * each epoch's checkpoint to the store thread, and honours j->stop between
 * steps. Checkpoints are serialized into a buffer the run keeps and gets
 * back after each commit (struct blob_pool), faulted in before training.
 */
#include "daemon/runner/worker.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "daemon/core/daemon.h"
#include "daemon/core/log.h"

#define WORKER_NICE 5   /* training threads run at this nice value */

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A run's spare checkpoint buffer, so that serializing at an epoch's end
 * copies into memory already faulted in instead of fresh pages (10-13 ms
 * for the lesson's 2.6 MB on a VM, against 0.3 ms for the copy). The run
 * takes the spare for each hand-over; the commit gives its buffer back when
 * the loop hears of it. Shared by the run and its commits in flight, which
 * may outlive it: the last reference frees it (refs under mu). */
struct blob_pool {
	pthread_mutex_t mu;
	int refs;                    /* the run + each commit holding a buffer of it */
	uint8_t *spare;              /* NULL while a commit has it */
	size_t cap;
};

/* A checkpoint on its way to the store thread and back to the loop. */
struct commit {
	struct loopq_node node;      /* a synchronous commit's trip to the loop */
	struct job *j;
	int64_t job_id;
	uint8_t *blob;
	size_t cap;                  /* blob's allocated size */
	struct blob_pool *pool;      /* where blob goes back to */
	double submitted;            /* monotonic time of hand-over */
	struct run_commit out;       /* what the loop hears */
};

/* Slack over the first checkpoint's size: the history metadata grows a few
 * hundred bytes an epoch. */
#define BLOB_SLACK (64u << 10)

static struct blob_pool *pool_new(void)
{
	struct blob_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	pthread_mutex_init(&p->mu, NULL);
	p->refs = 1;
	return p;
}

/* Take the spare (NULL, 0 if none) with a reference for the commit. */
static void pool_take(struct blob_pool *p, uint8_t **buf, size_t *cap)
{
	pthread_mutex_lock(&p->mu);
	*buf = p->spare;
	*cap = p->cap;
	p->spare = NULL;
	p->cap = 0;
	p->refs++;
	pthread_mutex_unlock(&p->mu);
}

/* Give a buffer back (kept if the pool has no spare, else freed) and drop a
 * reference; the last one frees the pool. */
static void pool_put(struct blob_pool *p, uint8_t *buf, size_t cap)
{
	bool last;

	pthread_mutex_lock(&p->mu);
	if (buf && !p->spare) {
		p->spare = buf;
		p->cap = cap;
		buf = NULL;
	}
	last = --p->refs == 0;
	pthread_mutex_unlock(&p->mu);
	free(buf);
	if (last) {
		free(p->spare);
		pthread_mutex_destroy(&p->mu);
		free(p);
	}
}

/* A commit's buffer back where it came from: its pool, or the heap for a
 * blob handed over without one (pool NULL: a rank's checkpoint). */
static void give_back(struct blob_pool *p, uint8_t *buf, size_t cap)
{
	if (p)
		pool_put(p, buf, cap);
	else
		free(buf);
}

/* The run's spare, allocated and written once before training starts (a
 * failure only means the first hand-over allocates): by serializing into
 * it, which faults its pages in and leaves them in the cache the way a
 * commit leaves them for the next epoch (a memset of this size did not,
 * probably through glibc's non-temporal stores: the first epoch's copy then
 * took 1.8 ms instead of 0.3), then growing it by BLOB_SLACK. */
static void pool_prefault(struct blob_pool *p, const struct trainer *t)
{
	uint8_t *buf = NULL, *grown;
	size_t cap = 0, len = 0;

	if (checkpoint_serialize_into(t, &buf, &cap, &len, NULL) < 0)
		return;
	grown = realloc(buf, len + BLOB_SLACK);
	if (grown) {
		buf = grown;
		cap = len + BLOB_SLACK;
	}
	pthread_mutex_lock(&p->mu);
	if (!p->spare) {
		p->spare = buf;
		p->cap = cap;
		buf = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	free(buf);
}

/* One run of a worker thread, allocated by the loop before the thread starts
 * (and freed by the loop when the run's exit event arrives), so that the
 * events the thread posts need no allocation and cannot be lost. */
struct worker_run {
	struct job *j;
	bool weights_only;               /* restore the model only */
	bool go_on;                      /* resume --epochs: past an early stop too */
	const struct dataset *ds;        /* the Start check's dataset reference, or NULL: get it */
	char digest[DSCACHE_DIGEST_MAX]; /* the job's dataset digest when it started ("": none yet) */
	pthread_t thread;                /* set by start (before the run can post its exit) */
	struct loopq_node restored_node; /* "the trainer is built": posted at most once */
	struct run_restored restored;
	struct loopq_node exit_node;     /* "I have stopped": the run's last post */
	struct run_exit ex;
	struct blob_pool *pool;          /* checkpoint buffers; the worker's reference */
};

/* The commit's outcome to the loop; the loop has what it needs, the blob goes. */
static void commit_event(struct commit *c)
{
	jobs_on_commit(c->j, &c->out);
	give_back(c->pool, c->blob, c->cap);
	free(c);
}

static void on_commit_node(struct loopq_node *n)
{
	commit_event(loopq_entry(n, struct commit, node));
}

static void on_restored(struct loopq_node *n)
{
	struct worker_run *run = loopq_entry(n, struct worker_run, restored_node);

	jobs_on_restored(run->j, &run->restored);   /* the run stays the worker's */
}

/* The run's last event: join the thread, free the run, tell the loop. */
static void on_worker_exit(struct loopq_node *n)
{
	struct worker_run *run = loopq_entry(n, struct worker_run, exit_node);
	struct job *j = run->j;
	struct run_exit ex = run->ex;

	pthread_join(run->thread, NULL);
	free(run);
	jobs_on_exit(j, &ex);
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
	c->out.durable_after = now_mono() - c->submitted;
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

int run_hand_over_blob(struct job *j, struct blob_pool *pool, uint8_t *blob, size_t cap, size_t len,
		       const struct history_row *row, uint32_t epoch, uint32_t step, double hold_seconds,
		       bool sync, struct tr_err *err)
{
	struct daemon *d = j->d;
	struct commit *c = calloc(1, sizeof(*c));
	int rc;

	if (!c) {
		give_back(pool, blob, cap);
		return tr_err_set(err, -ENOMEM, "out of memory");
	}
	c->j = j;
	c->job_id = j->id;
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
	c->submitted = now_mono();
	atomic_fetch_add(&j->commits_inflight, 1);
	if (!sync) {
		rc = storeq_submit(d->sq, commit_fn, c, commit_done);
		if (rc < 0) {
			atomic_fetch_sub(&j->commits_inflight, 1);
			give_back(pool, c->blob, c->cap);
			free(c);
			return tr_err_set(err, rc, "cannot queue the checkpoint");
		}
		return 0;
	}
	c->out.rc = storeq_call(d->sq, commit_fn, c, &c->out.err);
	rc = c->out.rc;
	if (rc < 0 && err)
		*err = c->out.err;
	c->node.fn = on_commit_node;
	loopq_post(&d->lq, &c->node);
	return rc;
}

/* Serialize the trainer into the pool's spare and hand it to the store
 * thread; with `sync`, wait for the commit (pause, shutdown,
 * kill-after-epoch). Returns the commit's result when sync, else 0 once
 * submitted. */
static int hand_over(struct job *j, struct blob_pool *pool, struct trainer *t,
		     const struct history_row *row, bool sync, struct tr_err *err)
{
	double t0 = now_mono();
	uint8_t *blob = NULL;
	size_t cap = 0, len = 0;
	int rc;

	pool_take(pool, &blob, &cap);
	rc = checkpoint_serialize_into(t, &blob, &cap, &len, err);
	if (rc < 0) {
		pool_put(pool, blob, cap);
		return rc;
	}
	return run_hand_over_blob(j, pool, blob, cap, len, row, t->epoch, t->step, now_mono() - t0,
				  sync, err);
}

static void publish(struct job *j, struct trainer *t, double sps, bool active)
{
	pthread_mutex_lock(&j->mu);
	if (t) {
		j->prog.epoch = t->epoch;
		j->prog.step = t->step;
		j->prog.steps_per_epoch = t->steps_per_epoch;
	}
	if (sps > 0)
		j->prog.samples_per_second = sps;
	j->prog.has_loss = t && t->sums.batches > 0;
	j->prog.loss = j->prog.has_loss ? t->sums.loss_sum / (double)t->sums.batches : 0;
	j->prog.active = active;
	if (t) {
		j->prog.lr = t->sched.lr;
		j->prog.has_lr = true;
	}
	pthread_mutex_unlock(&j->mu);
}

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
int run_load_trainer(struct job *j, const struct dataset *ds, bool weights_only, bool go_on,
		     struct trainer **out, struct run_exit *ex, struct tr_err *err)
{
	struct store *rs = NULL;
	int rc;

	rc = store_open(&rs, j->d->db_path, true, err);
	if (rc < 0)
		return rc;
	for (int tries = 0; tries < 1000; tries++) {
		struct store_checkpoint ck;
		struct checkpoint_info info;
		struct drop_req dr;

		memset(&ck, 0, sizeof(ck));
		rc = store_latest_checkpoint(rs, j->id, &ck, err);
		if (rc == -ENOENT) {
			rc = trainer_new(out, &j->cfg, ds, err);
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
				 j->id, ck.epoch, ck.step, err ? err->msg : "corrupt");
			dr.job_id = j->id;
			dr.ckpt_id = ck.id;
			store_checkpoint_clear(&ck);
			rc = storeq_call(j->d->sq, drop_fn, &dr, err);
			if (rc < 0)
				break;
			continue;
		}
		rc = checkpoint_restore(out, ck.blob, (size_t)ck.size, ds, weights_only, err);
		/* resume --epochs: the job's epochs, not the checkpoint's; it goes
		 * on past an early stop too */
		if (rc == 0 && go_on)
			trainer_go_on(*out);
		if (rc == 0 && (*out)->cfg.epochs != j->cfg.epochs) {
			rc = trainer_set_epochs(*out, j->cfg.epochs, err);
			if (rc < 0) {
				trainer_free(*out);
				*out = NULL;
			}
		}
		if (rc == 0) {
			ex->restored = true;
			ex->restored_epoch = ck.epoch;
			ex->restored_step = ck.step;
			job_checkpoint_from_store(&ex->ck, &ck);
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
 * (stored before digests) records it now. Off the loop: it hashes. */
int run_check_dataset(struct job *j, char digest[DSCACHE_DIGEST_MAX],
		      char recorded[DSCACHE_DIGEST_MAX], struct tr_err *err)
{
	struct daemon *d = j->d;
	char now[DSCACHE_DIGEST_MAX];
	struct store *rs = NULL;
	int rc;

	if (store_open(&rs, d->db_path, true, NULL) < 0)
		rs = NULL;   /* hashed in full; the store's error comes with the run's first read */
	rc = dscache_digest(d->dsc, j->cfg.dataset, rs, d->sq, now, NULL, err);
	store_close(rs);
	if (rc < 0)
		return rc;
	if (digest[0] && strcmp(digest, now) != 0) {
		dscache_changed_message(err->msg, sizeof(err->msg), j->cfg.dataset, j->id, digest,
					now, "resume");
		return err->code = -ESTALE;
	}
	if (!digest[0]) {
		struct digest_req r = { j->id, now };

		struct tr_err werr = { 0 };

		/* Not fatal: without a record the next start tries again. */
		if (storeq_call(d->sq, digest_fn, &r, &werr) < 0) {
			log_warn("job %" PRId64 ": cannot record its dataset's digest: %s", j->id, werr.msg);
			return 0;
		}
		snprintf(recorded, DSCACHE_DIGEST_MAX, "%s", now);
		snprintf(digest, DSCACHE_DIGEST_MAX, "%s", now);
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker_run *run = arg;
	struct job *j = run->j;
	struct daemon *d = j->d;
	struct run_exit *ex = &run->ex;
	const struct dataset *ds = NULL;
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	double window_t = now_mono();
	uint64_t window_samples = 0;
	double sps = 0;
	int rc;

	ex->outcome = JOB_FAILED;
	/* Training yields to the loop and the store thread: a checkpoint commit or
	 * a status reply should never queue behind a minibatch. Linux nice values
	 * are per thread and inherited by the team threads created below. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), WORKER_NICE) < 0)
		log_debug("job %" PRId64 ": cannot lower the worker's priority", j->id);
	publish(j, NULL, 0, false);
	ds = run->ds;   /* a new job's first run: loaded by the Start check */
	run->ds = NULL;
	rc = run_check_dataset(j, run->digest, run->restored.dataset_digest, &err);
	if (rc < 0)
		goto out;
	rc = ds ? 0 : dscache_get(d->dsc, j->cfg.dataset, run->digest, &ds, &err);
	if (rc < 0)
		goto out;
	rc = run_load_trainer(j, ds, run->weights_only, run->go_on, &t, ex, &err);
	if (rc < 0)
		goto out;
	run->restored.from_checkpoint = ex->restored;
	run->restored.ck = ex->ck;
	run->restored.nhistory = t->nhistory;
	run->restored.last_val_acc = t->nhistory ? t->history[t->nhistory - 1].val_acc : 0;
	run->restored.params = t->model.nparams;
	run->restored.best_epoch = t->sched.best_epoch;
	run->restored.best_value = t->sched.best_value;
	run->restored.classes = t->model.classes;
	snprintf(run->restored.numerics, sizeof(run->restored.numerics), "%s", t->numerics_changed);
	pool_prefault(run->pool, t);
	run->restored_node.fn = on_restored;
	loopq_post(&d->lq, &run->restored_node);
	publish(j, t, 0, true);
	for (;;) {
		int stop = atomic_load(&j->stop);

		if (stop != STOP_NONE) {
			if (stop == STOP_PAUSE || stop == STOP_SHUTDOWN) {
				/* Save the exact position unless the newest epoch
				 * checkpoint already is it. */
				if (t->step > 0) {
					rc = hand_over(j, run->pool, t, NULL, true, &err);
					if (rc < 0)
						goto out;
				}
				ex->outcome = stop == STOP_PAUSE ? JOB_PAUSED : JOB_RUNNING;
			} else {
				ex->outcome = stop == STOP_KILL ? JOB_KILLED : JOB_FAILED;
			}
			rc = 0;
			break;
		}
		if (trainer_finished(t)) {
			ex->outcome = JOB_DONE;
			rc = 0;
			break;
		}
		if (trainer_epoch_done(t)) {
			struct history_row row;
			int64_t kill_after;

			rc = trainer_end_epoch(t, &row);
			if (rc < 0) {
				tr_err_set(&err, rc, "evaluation failed");
				goto out;
			}
			kill_after = atomic_load(&j->kill_after);
			if (kill_after == (int64_t)row.epoch) {
				/* The lesson's crash: die right after this commit. */
				rc = hand_over(j, run->pool, t, &row, true, &err);
				if (rc < 0)
					goto out;
				ex->outcome = JOB_KILLED;
				break;
			}
			rc = hand_over(j, run->pool, t, &row, false, &err);
			if (rc < 0)
				goto out;
			publish(j, t, sps, true);
			continue;
		}
		rc = trainer_step(t);
		if (rc < 0) {
			tr_err_set(&err, rc, "training step failed");
			goto out;
		}
		window_samples += t->cfg.batch_size;
		if (window_samples >= 4096) {
			double now = now_mono();

			sps = (double)window_samples / (now - window_t);
			window_t = now;
			window_samples = 0;
		}
		publish(j, t, sps, true);
	}
out:
	if (rc < 0) {
		ex->outcome = JOB_FAILED;
		ex->rc = rc;
		snprintf(ex->msg, sizeof(ex->msg), "%s", err.msg[0] ? err.msg : strerror(-rc));
	}
	if (t)
		publish(j, t, sps, false);
	trainer_free(t);
	if (ds)
		dscache_put(d->dsc, ds);
	pool_put(run->pool, NULL, 0);   /* commits in flight keep it until the loop hears them */
	/* The last touch of the run: the loop frees it. */
	run->exit_node.fn = on_worker_exit;
	loopq_post(&d->lq, &run->exit_node);
	return NULL;
}

void run_reset(struct job *j)
{
	atomic_store(&j->stop, STOP_NONE);
	pthread_mutex_lock(&j->mu);
	{
		uint32_t spe = j->prog.steps_per_epoch;

		memset(&j->prog, 0, sizeof(j->prog));
		j->prog.epoch = j->committed_epoch;
		j->prog.steps_per_epoch = spe;
	}
	pthread_mutex_unlock(&j->mu);
}

void run_request_stop(struct job *j, enum job_stop why)
{
	if (why == STOP_PAUSE || why == STOP_SHUTDOWN) {
		if (atomic_load(&j->stop) == STOP_NONE)
			atomic_store(&j->stop, why);
		return;
	}
	atomic_store(&j->stop, why);
}

static int thread_start(struct job *j, bool weights_only, const struct dataset *ds,
			struct tr_err *err)
{
	struct worker_run *run = calloc(1, sizeof(*run));
	int rc;

	if (run)
		run->pool = pool_new();
	if (!run || !run->pool) {
		free(run);
		return tr_err_set(err, -ENOMEM, "out of memory starting the worker");
	}
	run->j = j;
	run->weights_only = weights_only;   /* run belongs to the worker once it runs */
	run->go_on = j->go_on_next;
	run->ds = ds;
	snprintf(run->digest, sizeof(run->digest), "%s", j->dataset_digest);
	run_reset(j);
	rc = -pthread_create(&run->thread, NULL, worker_main, run);
	if (rc < 0) {
		pool_put(run->pool, NULL, 0);
		free(run);
		return tr_err_set(err, rc, "cannot start a worker thread");
	}
	return 0;
}

const struct runner_ops thread_runner = {
	.name = "thread",
	.start = thread_start,
	.stop = run_request_stop,
};
