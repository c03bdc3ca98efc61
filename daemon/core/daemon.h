/*
 * daemon.h (core) - what one traind's modules share: the loop and its
 * queue, the store thread, the dataset cache, the job registry, the control
 * socket, the settings and the counters. Types only: the life cycle that
 * fills it in and tears it down is daemon/daemon.h's.
 *
 * Who reads it: the protocol layer (proto/: the methods, Wait and Watch)
 * and the life cycle. The modules below it (store, data, runner, jobs) are
 * given what they use when they are made, and never see it.
 *
 * Ownership: the daemon owns everything here except the loop. The registry
 * (`jobs`, jobs.h) is the jobs module's; its jobs are read elsewhere only
 * on the loop thread.
 *
 * Thread: the loop thread only.
 */
#ifndef TRAIND_CORE_DAEMON_H
#define TRAIND_CORE_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/core/counters.h"
#include "daemon/core/loopq.h"

struct daemon;
struct bgwork;
struct dscache;
struct job;
struct jobs;
struct server;
struct storeq;
struct sweeps;

#define DAEMON_MPI_ARGS_MAX 64   /* --mpi-arg, at most (runner.h's RUN_MPI_ARGS_MAX) */

struct daemon {
	uv_loop_t *loop;
	struct loopq lq;
	bool lq_ready;               /* lq is initialised (closed by daemon_free) */
	struct storeq *sq;
	struct dscache *dsc;
	struct jobs *jobs;           /* the registry (jobs.h) */
	struct sweeps *sweeps;       /* the sweeps (sweep/sweep.h): the scheduler's gate for trials */
	struct server *server;       /* NULL once daemon_shutdown has closed it */
	struct bgwork *bg;           /* the methods' door to the thread pool (bgwork.h) */
	char db_path[4096];
	char data_dir[4096];
	char *mpi_launcher;          /* owned copies of daemon_config's */
	char *mpi_args[DAEMON_MPI_ARGS_MAX];
	unsigned n_mpi_args;
	unsigned max_running;
	uint64_t max_dataset_bytes;  /* DatasetImport's cap */
	bool shutting_down;          /* daemon_shutdown was called: calls are refused */
	void (*user_drained)(struct daemon *d); /* daemon_config.on_drained */
	void (*on_change)(struct daemon *d);    /* after any state change (sd_notify STATUS) */
	uv_timer_t watch_timer;      /* Watch's updates (waiters.c) */
	struct counters counters;    /* since this traind started (io.traind.Counters) */
	void (*on_run_end)(struct daemon *d, struct job *j);   /* daemon_config.on_run_end */
};

#endif
