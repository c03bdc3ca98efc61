/*
 * daemon.c - one traind's life cycle. See daemon/daemon.h.
 *
 * The start-up order is main()'s of old: the dataset cache, the job
 * registry, the database (opened, migrated and read by recovery on this
 * thread, before the loop runs, then closed), the loop queue, the store
 * thread on its own connection, the control socket. daemon_free undoes it
 * in reverse once the loop has stopped: the store thread commits what it
 * was given and posts the completions, the loop runs them while every
 * handle closes, and only then is the registry freed.
 *
 * The wiring: the registry's runs share a struct run_env (the store and
 * loop queues, the dataset cache, the MPI launcher, the two runners); the
 * registry's observer is the protocol's waiters; the server dispatches to
 * the methods.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/data/dscache.h"
#include "daemon/data/dsimport.h"
#include "daemon/jobs/jobs.h"
#include "daemon/proto/bgwork.h"
#include "daemon/proto/methods.h"
#include "daemon/proto/server.h"
#include "daemon/proto/waiters.h"
#include "daemon/runner/mpirun.h"
#include "daemon/runner/worker.h"
#include "daemon/store/store.h"
#include "daemon/store/storeq.h"
#include "daemon/sweep/sweep.h"

_Static_assert(DAEMON_MPI_ARGS_MAX <= RUN_MPI_ARGS_MAX, "the runs take every --mpi-arg");

/* The registry: every run has stopped after a daemon_shutdown. */
static void drained(void *ctx)
{
	struct daemon *d = ctx;

	if (d->user_drained)
		d->user_drained(d);
	uv_stop(d->loop);
}

/* The registry: a job's state changed. */
static void changed(void *ctx)
{
	struct daemon *d = ctx;

	if (d->sweeps)
		sweeps_changed(d->sweeps);
	if (d->on_change)
		d->on_change(d);
}

/* The registry: an epoch of j committed. */
static void epoch_committed(void *ctx, struct job *j, const struct history_row *row)
{
	struct daemon *d = ctx;

	if (d->sweeps)
		sweeps_epoch(d->sweeps, j, row);
}

/* The registry: a job's run has ended (before the state it ended in). */
static void run_ended(void *ctx, struct job *j)
{
	struct daemon *d = ctx;

	if (d->on_run_end)
		d->on_run_end(d, j);
}

/* The sweeps' background work (pbt's exploits): bgwork's per-uid shares. */
static int sweeps_post(void *arg, uid_t uid, void (*work)(void *data), void (*done)(void *data), void *data)
{
	return bg_post(arg, uid, work, done, data);
}

/* The scheduler's gate: a sweep's trials start within its max_parallel. */
static bool may_start(void *ctx, const struct job *j)
{
	struct daemon *d = ctx;

	return !d->sweeps || sweeps_may_start(d->sweeps, j);
}

int daemon_new(struct daemon **out, const struct daemon_config *cfg, struct tr_err *err)
{
	struct daemon *d;
	struct jobs_config jc;
	struct store *s = NULL;
	int rc;

	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return tr_err_set(err, -ENOMEM, "out of memory");
	d->loop = cfg->loop;
	d->max_running = cfg->max_running;
	d->max_dataset_bytes = cfg->max_dataset_bytes ? cfg->max_dataset_bytes : UINT64_C(4) << 30;
	snprintf(d->db_path, sizeof(d->db_path), "%s", cfg->db_path);
	snprintf(d->data_dir, sizeof(d->data_dir), "%s", cfg->data_dir);
	d->user_drained = cfg->on_drained;
	d->on_change = cfg->on_change;
	d->on_run_end = cfg->on_run_end;
	d->mpi_launcher = strdup(cfg->mpi_launcher ? cfg->mpi_launcher : "mpirun");
	for (unsigned i = 0; i < cfg->n_mpi_args && i < DAEMON_MPI_ARGS_MAX; i++)
		if ((d->mpi_args[d->n_mpi_args] = strdup(cfg->mpi_args[i])))
			d->n_mpi_args++;
	if (!d->mpi_launcher || d->n_mpi_args != cfg->n_mpi_args) {
		rc = tr_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}

	rc = dscache_new(&d->dsc, cfg->data_dir);
	if (rc < 0) {
		tr_err_set(err, rc, "out of memory");
		goto fail;
	}
	dscache_set_limit(d->dsc, d->max_dataset_bytes, "--max-dataset-bytes");
	/* what an import or a removal cut short by a crash left behind */
	dsimport_sweep(cfg->data_dir);
	d->bg = bgwork_new(d->loop, d->db_path);
	if (!d->bg) {
		rc = tr_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	jc = (struct jobs_config){
		.env = {
			.lq = &d->lq, .dsc = d->dsc, .db_path = d->db_path, .data_dir = d->data_dir,
			.mpi_launcher = d->mpi_launcher,
			.mpi_args = (const char *const *)d->mpi_args, .n_mpi_args = d->n_mpi_args,
			.local = &thread_runner, .multi = &mpi_runner,
		},
		.max_running = d->max_running,
		.counters = &d->counters,
		.observer = &waiters_observer,
		.on_change = changed,
		.on_drained = drained,
		.on_run_end = run_ended,
		.may_start = may_start,
		.on_epoch = epoch_committed,
		.ctx = d,
	};
	rc = jobs_new(&d->jobs, &jc);
	if (rc < 0) {
		tr_err_set(err, rc, "out of memory");
		goto fail;
	}
	rc = sweeps_new(&d->sweeps, d->jobs, &(struct sweeps_pool){ .post = sweeps_post, .arg = d->bg }, d->dsc,
			d->db_path);
	if (rc < 0) {
		tr_err_set(err, rc, "out of memory");
		goto fail;
	}
	rc = store_open(&s, cfg->db_path, false, err);
	if (rc < 0) {
		tr_err_prefix(err, "%s", cfg->db_path);
		goto fail;
	}
	rc = jobs_recover(d->jobs, s, err);
	if (rc < 0) {
		store_close(s);
		tr_err_prefix(err, "recovering jobs from %s", cfg->db_path);
		goto fail;
	}
	rc = sweeps_recover(d->sweeps, s, err);
	store_close(s);
	if (rc < 0) {
		tr_err_prefix(err, "recovering sweeps from %s", cfg->db_path);
		goto fail;
	}
	rc = loopq_init(&d->lq, d->loop);
	if (rc < 0) {
		tr_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	d->lq_ready = true;
	rc = storeq_start(&d->sq, cfg->db_path, &d->lq, err);
	if (rc < 0) {
		tr_err_prefix(err, "%s", cfg->db_path);
		goto fail;
	}
	jobs_set_store(d->jobs, d->sq);
	sweeps_set_store(d->sweeps, d->sq);
	if (cfg->listen_fd >= 0 || cfg->socket_path) {
		err->msg[0] = '\0';
		rc = server_new(&d->server, d->loop, methods_dispatch, d);
		if (rc == 0) {
			server_count_errors(d->server, &d->counters.client_errors);
			server_set_message_timeout(d->server, cfg->message_timeout_ms);
		}
		if (rc == 0)
			rc = cfg->listen_fd >= 0 ? server_listen_fd(d->server, cfg->listen_fd, err)
						 : server_listen_path(d->server, cfg->socket_path, err);
		if (rc < 0) {
			if (!err->msg[0])
				tr_err_set(err, rc, "out of memory");
			goto fail;
		}
	}
	*out = d;
	return 0;

fail:
	daemon_free(d);
	return rc;
}

void daemon_start(struct daemon *d)
{
	waiters_start(d);
	jobs_start(d->jobs);
	sweeps_start(d->sweeps);
}

void daemon_run(struct daemon *d)
{
	uv_run(d->loop, UV_RUN_DEFAULT);
}

void daemon_shutdown(struct daemon *d)
{
	if (d->shutting_down)
		return;
	d->shutting_down = true;
	server_close(d->server);
	d->server = NULL;
	jobs_shutdown(d->jobs);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

void daemon_free(struct daemon *d)
{
	if (!d)
		return;
	/* Drain: the store thread commits what it was given; then close handles. */
	storeq_stop(d->sq);
	d->sq = NULL;
	if (d->jobs)
		jobs_set_store(d->jobs, NULL);   /* later writes fail (-ESHUTDOWN), as the runs' */
	if (d->sweeps)
		sweeps_set_store(d->sweeps, NULL);
	server_close(d->server);
	d->server = NULL;
	if (d->lq_ready)
		loopq_close(&d->lq);
	d->lq_ready = false;
	uv_walk(d->loop, close_walk, NULL);
	uv_run(d->loop, UV_RUN_DEFAULT);
	sweeps_free(d->sweeps);
	jobs_free(d->jobs);
	free(d->mpi_launcher);
	for (unsigned i = 0; i < d->n_mpi_args; i++)
		free(d->mpi_args[i]);
	dscache_free(d->dsc);
	bgwork_free(d->bg);
	free(d);
}
