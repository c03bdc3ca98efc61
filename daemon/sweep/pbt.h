/*
 * pbt.h - a PBT exploit's new job, built off the loop (doc/sweeps.md).
 *
 * An exploit continues a top member's checkpoint at a decision's epoch as
 * a new job, exactly as `trainctl start --from JOB@EPOCH` with the
 * perturbed parameters as its configuration would (methods-jobs.c's
 * start_from without weights_only): the checkpoint's full state with the
 * configuration keys that may change applied (the lr, the epochs of the
 * next segment), its history before it and its origin ("job 3 epoch 2").
 * pbt_build reads the checkpoint with a read-only connection of its own,
 * loads the dataset through the cache and serializes the new first
 * checkpoint: seconds for a big model, so never on the loop.
 *
 * Thread: pbt_build on any thread but the loop (libuv's pool: sweep.c's
 * uv_queue_work); the struct is one thread's at a time.
 */
#ifndef TRAIND_SWEEP_PBT_H
#define TRAIND_SWEEP_PBT_H

#include <stdint.h>

#include "traind/error.h"
#include "daemon/data/dscache.h"
#include "daemon/jobs/jobs.h"

struct pbt_exploit {
	/* in */
	int64_t from_job;            /* the source member's job */
	uint32_t epoch;              /* its epoch checkpoint at the decision */
	uint32_t epochs;             /* the new job's: the next segment's end */
	char *params_json;           /* the perturbed parameters, a JSON object (owned) */
	char digest[DSCACHE_DIGEST_MAX];   /* the source job's dataset files */
	/* out: the job to store (its name and keep are the caller's) */
	struct job_spec spec;
	int rc;
	struct tr_err err;
};

/* Build x->spec (x->rc 0), or fail with x->rc < 0 and x->err. */
void pbt_build(struct pbt_exploit *x, const char *db_path, struct dscache *dsc);
/* Release what x owns (the spec's dataset reference into dsc). */
void pbt_exploit_clear(struct pbt_exploit *x, struct dscache *dsc);

#endif
