/*
 * errors-map.c - which protocol error each module's failure becomes: the
 * one table of it. See daemon/proto/errors.h.
 *
 * A row is (what failed, its code, the error); ANY matches every code of
 * its source not matched by a row before it, and each source ends with one.
 * The modules return their own codes (the jobs module's JOBS_E_*, negative
 * errnos elsewhere) and never speak the protocol; the methods say what
 * failed, and this table what the client hears.
 */
#include "daemon/proto/errors.h"

#include <errno.h>
#include <limits.h>

#include "daemon/jobs/jobs.h"
#include "daemon/sweep/sweep.h"

#define ANY INT_MIN

static const struct {
	enum proto_source from;
	int code;
	enum proto_error error;
} map[] = {
	{ PROTO_FROM_JOBS, JOBS_E_INVALID_STATE, PROTO_INVALID_STATE },
	{ PROTO_FROM_JOBS, JOBS_E_INVALID_PARAMETER, PROTO_INVALID_PARAMETER },
	{ PROTO_FROM_JOBS, JOBS_E_CHECKPOINT, PROTO_CHECKPOINT_ERROR },
	{ PROTO_FROM_JOBS, JOBS_E_REMOVED, PROTO_JOB_REMOVED },
	{ PROTO_FROM_JOBS, ANY, PROTO_STORAGE_ERROR },          /* JOBS_E_STORAGE */

	{ PROTO_FROM_DAEMON, -ESHUTDOWN, PROTO_SHUTTING_DOWN },
	{ PROTO_FROM_DAEMON, ANY, PROTO_STORAGE_ERROR },        /* out of memory, a queue */

	{ PROTO_FROM_STORE, ANY, PROTO_STORAGE_ERROR },

	{ PROTO_FROM_LOOKUP, -ENOENT, PROTO_NO_SUCH_CHECKPOINT },
	{ PROTO_FROM_LOOKUP, ANY, PROTO_STORAGE_ERROR },

	{ PROTO_FROM_CHECKPOINT, ANY, PROTO_CHECKPOINT_ERROR },

	{ PROTO_FROM_CONFIG, ANY, PROTO_INVALID_PARAMETER },

	{ PROTO_FROM_FIT, -EINVAL, PROTO_INVALID_PARAMETER },
	{ PROTO_FROM_FIT, ANY, PROTO_STORAGE_ERROR },           /* out of memory */

	{ PROTO_FROM_DATASET, -ESTALE, PROTO_DATASET_CHANGED }, /* not the files the job started with */
	{ PROTO_FROM_DATASET, ANY, PROTO_DATASET_ERROR },

	{ PROTO_FROM_IMPORT, -EEXIST, PROTO_DATASET_EXISTS },
	{ PROTO_FROM_IMPORT, -EFBIG, PROTO_DATASET_TOO_BIG },
	{ PROTO_FROM_IMPORT, -EINVAL, PROTO_DATASET_ERROR },
	{ PROTO_FROM_IMPORT, -EBUSY, PROTO_DATASET_IN_USE },    /* a live job uses it */
	{ PROTO_FROM_IMPORT, ANY, PROTO_STORAGE_ERROR },

	{ PROTO_FROM_IMPORT_COMMIT, -EEXIST, PROTO_DATASET_EXISTS },
	{ PROTO_FROM_IMPORT_COMMIT, ANY, PROTO_STORAGE_ERROR },

	{ PROTO_FROM_REMOVE, -ENOENT, PROTO_NO_SUCH_DATASET },
	{ PROTO_FROM_REMOVE, -EBUSY, PROTO_DATASET_IN_USE },    /* a job uses it */
	{ PROTO_FROM_REMOVE, ANY, PROTO_STORAGE_ERROR },

	{ PROTO_FROM_IMAGE, -ERANGE, PROTO_IMAGE_SIZE_MISMATCH },
	{ PROTO_FROM_IMAGE, -ENOMEM, PROTO_STORAGE_ERROR },
	{ PROTO_FROM_IMAGE, ANY, PROTO_IMAGE_ERROR },

	{ PROTO_FROM_SWEEP, SWEEP_E_NO_SUCH, PROTO_NO_SUCH_SWEEP },
	{ PROTO_FROM_SWEEP, SWEEP_E_INVALID_STATE, PROTO_INVALID_STATE },
	{ PROTO_FROM_SWEEP, ANY, PROTO_STORAGE_ERROR },         /* SWEEP_E_STORAGE */
};

enum proto_error proto_error_of(enum proto_source from, int code)
{
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (map[i].from == from && (map[i].code == code || map[i].code == ANY))
			return map[i].error;
	return PROTO_STORAGE_ERROR;
}

enum proto_error proto_jobs_error(const struct jobs_result *r, struct proto_detail *d)
{
	*d = (struct proto_detail){
		.has_id = true, .id = r->id, .state = job_state_name(r->state),
		.parameter = r->param, .message = r->message,
	};
	return proto_error_of(PROTO_FROM_JOBS, r->code);
}
