/*
 * waiters.h - the calls pending on a job: Wait (an epoch, a set of states,
 * a timeout) and Watch (a stream of progress updates, then one final reply).
 *
 * The module owns each struct waiter (linked on its job's `waiters` slot)
 * and its timeout timer. It is the jobs module's observer (jobs.h):
 * waiters_observer hears after every change a waiter may be waiting for (a
 * committed state, a committed epoch, a run gone), and when a job leaves the
 * registry; a waiter is answered from the committed state only (see
 * jobs.h), a "stopped" state only once nothing more will happen to the job
 * by itself (job_settled). A client that goes away cancels its waiter (the
 * server's cancel hook). Progress is polled: a Watch gets an update every
 * 100 ms when its job has moved.
 *
 * Thread: loop thread only.
 */
#ifndef TRAIND_WAITERS_H
#define TRAIND_WAITERS_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/core/daemon.h"
#include "daemon/jobs/jobs.h"
#include "daemon/proto/server.h"

/* The jobs module's observer; its ctx is the struct daemon. */
extern const struct jobs_observer waiters_observer;

/* Start the watch timer (every 100 ms, a streamed update to each Watch
 * whose job has moved). */
void waiters_start(struct daemon *d);
/* Wait: epoch (0 = none), states mask (bit per enum job_state; 0 with no
 * epoch: any stopped state), timeout in seconds (<0 none). Ends `c` at once
 * when already satisfied, or out of memory. */
void waiters_wait(struct daemon *d, struct call *c, struct job *j, uint32_t epoch,
		  unsigned states, double timeout);
/* Watch: updates while the job trains; a job not training gets its one
 * final reply now. */
void waiters_watch(struct daemon *d, struct call *c, struct job *j);

#endif
