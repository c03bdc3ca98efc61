/*
 * daemon.h - one traind's life cycle: it makes the modules, wires them
 * together and tears them down. main.c, the fuzz harness
 * (tests/fuzz/fuzz-protocol.c) and tests/unit/test-jobs.c build their
 * daemon with these calls:
 *
 *   daemon_new       open and migrate the database, recover the jobs it
 *                    holds (before the loop runs), start the store thread,
 *                    listen on the control socket;
 *   daemon_start     start the scheduler and the watch timer;
 *   daemon_run       run the loop until a daemon_shutdown has drained;
 *   daemon_shutdown  stop accepting calls and checkpoint every running job
 *                    (it stays "running" for the next start); once the last
 *                    run has stopped, cfg->on_drained runs and the loop
 *                    stops;
 *   daemon_free      stop the store thread (it commits what it was given),
 *                    close every handle still open on the loop, free the
 *                    registry. The loop itself is the caller's: it closes it.
 *
 * The struct daemon they work on is core/daemon.h's (what the modules
 * share). This is the top of the daemon's layers: it includes every module,
 * and only main.c and the tests include it.
 *
 * Thread: the loop thread only (daemon_new and daemon_free also before the
 * loop runs and after it has stopped).
 */
#ifndef TRAIND_DAEMON_H
#define TRAIND_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "traind/error.h"
#include "daemon/core/daemon.h"

struct daemon_config {
	uv_loop_t *loop;             /* the loop the daemon runs on (the caller's) */
	const char *db_path;         /* the database (created and migrated if needed) */
	const char *data_dir;        /* datasets, one directory per name */
	unsigned max_running;        /* jobs training at once (0: none start, for tests) */
	uint64_t max_dataset_bytes;  /* the largest dataset DatasetImport takes (0: 4 GiB) */
	int listen_fd;               /* >= 0: listen on this inherited listening socket */
	const char *socket_path;     /* else, if not NULL: bind and listen here */
	unsigned message_timeout_ms; /* a client's time to send one message (0: the server's default) */
	void (*on_drained)(struct daemon *d);   /* shutdown: every run has stopped
	                                           (called just before the loop is stopped) */
	void (*on_change)(struct daemon *d);    /* after any state change (sd_notify STATUS) */
	void (*on_run_end)(struct daemon *d, struct job *j);  /* a job's run has ended, before the
	                                           state it ended in is written (main.c: the step
	                                           series' last points, jobs/stepseries.h); may be NULL */
	const char *mpi_launcher;    /* jobs with ranks > 1: the launcher (NULL: "mpirun") */
	const char *const *mpi_args; /* n_mpi_args more arguments for it, before the program */
	unsigned n_mpi_args;
};

/* Everything daemon_new does, in order (see the top); on failure nothing is
 * left over and err says what failed ("DB: ..." for the database, "recovering
 * jobs from DB: ..." for recovery, the socket's error for listening). */
int daemon_new(struct daemon **out, const struct daemon_config *cfg, struct tr_err *err);
void daemon_start(struct daemon *d);
/* Run the loop until it is stopped (by the end of a shutdown). */
void daemon_run(struct daemon *d);
/* SIGTERM: close the control socket, checkpoint the running jobs; a second
 * call does nothing. */
void daemon_shutdown(struct daemon *d);
/* Accepts NULL. */
void daemon_free(struct daemon *d);

#endif
