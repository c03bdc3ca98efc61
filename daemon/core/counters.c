/*
 * counters.c - traind's counters and the commit latency histogram. See
 * daemon/core/counters.h.
 *
 * The histogram keeps a count per bucket (an observation lands in the first
 * bucket whose bound is >= it, as Prometheus' `le`); the reply sums them into
 * the cumulative counts Prometheus' exposition wants.
 */
#include "daemon/core/counters.h"

#include <math.h>

const double counters_commit_buckets[COUNTERS_NBUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

void counters_observe_commit(struct counters *c, double seconds)
{
	if (!(seconds > 0))   /* NaN and clock oddities: as 0 */
		seconds = 0;
	c->epochs_committed++;
	c->commit_count++;
	c->commit_sum += seconds;
	for (size_t i = 0; i < COUNTERS_NBUCKETS; i++) {
		if (seconds <= counters_commit_buckets[i]) {
			c->commit_in[i]++;
			break;
		}
	}
}

json_t *counters_json(const struct counters *c)
{
	json_t *buckets = json_array(), *counts = json_array();
	uint64_t cum = 0;

	if (!buckets || !counts)
		goto fail;
	for (size_t i = 0; i < COUNTERS_NBUCKETS; i++) {
		cum += c->commit_in[i];
		if (json_array_append_new(buckets, json_real(counters_commit_buckets[i])) < 0 ||
		    json_array_append_new(counts, json_integer((json_int_t)cum)) < 0)
			goto fail;
	}
	return json_pack("{s:I,s:I,s:I,s:{s:o,s:o,s:f,s:I}}",
			 "epochs_committed", (json_int_t)c->epochs_committed,
			 "jobs_failed", (json_int_t)c->jobs_failed,
			 "client_errors", (json_int_t)c->client_errors,
			 "commit_seconds", "buckets", buckets, "counts", counts,
			 "sum", c->commit_sum, "count", (json_int_t)c->commit_count);
fail:
	json_decref(buckets);
	json_decref(counts);
	return NULL;
}
