/*
 * waiters.h - the calls pending on a job: Wait (an epoch, a set of states,
 * a timeout), Watch (a stream of progress updates, then one final reply) and
 * the Pause and Kill calls answered once the job has stopped.
 *
 * The module owns each struct waiter (linked on its job's `waiters`) and its
 * timeout timer. The jobs module calls waiters_notify after every change a
 * waiter may be waiting for (a committed state, a committed epoch, a worker
 * gone): a waiter is answered from the committed state only (see jobs.h), a
 * "stopped" state only once nothing more will happen to the job by itself.
 * A client that goes away cancels its waiter (the server's cancel hook).
 *
 * Thread: loop thread only.
 */
#ifndef TRAIND_WAITERS_H
#define TRAIND_WAITERS_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/jobs/jobs.h"
#include "daemon/proto/server.h"

/* Start the watch timer (every 100 ms, a streamed update to each Watch
 * whose job has moved). */
void waiters_start(struct daemon *d);
/* Answer each of j's waiters whose condition now holds, or can no longer
 * hold. */
void waiters_notify(struct job *j);
/* Wait: epoch (0 = none), states mask (bit per enum job_state; 0 with no
 * epoch: any stopped state), timeout in seconds (<0 none). Ends `c` at once
 * when already satisfied, or out of memory. */
void waiters_wait(struct daemon *d, struct call *c, struct job *j, uint32_t epoch,
		  unsigned states, double timeout);
/* Watch: updates while the job trains; a job not training gets its one
 * final reply now. */
void waiters_watch(struct call *c, struct job *j);
/* Pause, Kill: answer `c` once the job has settled (a StorageError now when
 * out of memory). */
void waiters_add_stop(struct job *j, struct call *c);
/* The job is being taken out of the registry: every waiter ends with
 * JobRemoved. */
void waiters_remove_all(struct job *j);
/* Free j's waiters without a reply (jobs_free, after the loop has stopped
 * and every handle has been closed). */
void waiters_free_all(struct job *j);

#endif
