/*
 * counters.h - traind's own counters since it started, for monitoring
 * (io.traind.Counters; traind-web turns them into Prometheus metrics):
 *
 *   epochs_committed  epoch checkpoints (with their history rows) committed
 *   jobs_failed       jobs that went to `failed` (a run that failed, a
 *                     commit the database refused, a worker that would
 *                     not start); a job stored as failed at start-up is
 *                     not counted
 *   client_errors     error replies sent to clients (server.c: every
 *                     call_error, and errors outside a call such as a
 *                     ProtocolError), whatever the error
 *   commit_seconds    a histogram of epoch checkpoint commit latency: from
 *                     the moment the training thread hands the serialized
 *                     checkpoint over to the store thread to the end of its
 *                     durable commit (hashing + transaction + fsync), the
 *                     span bench/bench-daemon.py reports ("durable after")
 *
 * In memory only: they start at zero with every traind process.
 *
 * Ownership: one struct counters is embedded in struct daemon. The server
 * holds a pointer to client_errors (server_count_errors).
 *
 * Thread: loop thread only (the events they count all reach the loop:
 * commits and exits through the loop queue, replies in server.c), so
 * plain integers, no atomics.
 */
#ifndef TRAIND_COUNTERS_H
#define TRAIND_COUNTERS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The histogram's upper bounds in seconds (Prometheus `le`), ascending;
 * +Inf is implied by the total count. */
#define COUNTERS_NBUCKETS 13
extern const double counters_commit_buckets[COUNTERS_NBUCKETS];

struct counters {
	uint64_t epochs_committed;
	uint64_t jobs_failed;
	uint64_t client_errors;
	uint64_t commit_in[COUNTERS_NBUCKETS];  /* observations in (bound[i-1], bound[i]] (not cumulative) */
	uint64_t commit_count;                  /* all observations, +Inf included */
	double commit_sum;                      /* seconds */
};

/* One epoch commit that took `seconds` (negative or NaN counted as 0). */
void counters_observe_commit(struct counters *c, double seconds);

/* The reply of io.traind.Counters: {epochs_committed, jobs_failed,
 * client_errors, commit_seconds: {buckets, counts (cumulative), sum, count}};
 * NULL if out of memory. */
json_t *counters_json(const struct counters *c);

#endif
