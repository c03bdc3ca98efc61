/*
 * errors.h - every error traind's protocol can send, in one table: its C
 * name (enum proto_error), its varlink name and the parameters it carries;
 * and, beside it (errors-map.c), the one table that says which of them a
 * module's failure becomes.
 *
 * The daemon sends errors only through call_error(c, PROTO_..., &detail)
 * (server.h), so this table is the whole list, and no error's parameters
 * are written by hand: proto_error_params builds them from the table's
 * entry, taking each declared parameter from the struct proto_detail by
 * its name. It is checked against the
 * interface files at build time (tools/check-errors.c, run by meson before
 * the descriptions are embedded): each io.traind error must be declared in
 * daemon/proto/io.traind.varlink exactly as here, each org.varlink.service one in
 * daemon/proto/org.varlink.service.varlink, and every error io.traind.varlink
 * declares must be here. At run time call_error checks the parameters of
 * each error it sends against its entry (proto_error_check) and logs a
 * protocol bug when they differ (the daemon tests fail on that line).
 *
 * Invalid parameters are org.varlink.service.InvalidParameter, the standard
 * error generic varlink clients know, with traind's explanation as one
 * extra parameter, "message" (undeclared, as the standard interface cannot
 * be changed; clients ignore fields they do not know).
 *
 * Thread: any (constant data).
 */
#ifndef TRAIND_ERRORS_H
#define TRAIND_ERRORS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum proto_error {
	/* io.traind */
	PROTO_NO_SUCH_JOB,
	PROTO_JOB_REMOVED,
	PROTO_NO_SUCH_CHECKPOINT,
	PROTO_INVALID_STATE,
	PROTO_UNEXPECTED_STATE,
	PROTO_TIMEOUT,
	PROTO_DATASET_ERROR,
	PROTO_DATASET_CHANGED,
	PROTO_NO_SUCH_DATASET,
	PROTO_DATASET_EXISTS,
	PROTO_DATASET_IN_USE,
	PROTO_DATASET_TOO_BIG,
	PROTO_IMAGE_ERROR,
	PROTO_IMAGE_SIZE_MISMATCH,
	PROTO_CHECKPOINT_ERROR,
	PROTO_STORAGE_ERROR,
	PROTO_SHUTTING_DOWN,
	PROTO_PROTOCOL_ERROR,
	PROTO_TOO_MANY_REQUESTS,
	PROTO_PERMISSION_DENIED,
	PROTO_NO_SUCH_SWEEP,
	/* org.varlink.service */
	PROTO_INTERFACE_NOT_FOUND,
	PROTO_METHOD_NOT_FOUND,
	PROTO_INVALID_PARAMETER,
	PROTO_ERROR_COUNT
};

enum proto_type {
	PROTO_INT,
	PROTO_FLOAT,
	PROTO_STRING,
};

#define PROTO_MAX_PARAMS 5

struct proto_param {
	const char *name;         /* NULL ends the list */
	enum proto_type type;
	bool optional;            /* "?type": may be absent or null */
};

struct proto_error_desc {
	const char *name;         /* full varlink name: "io.traind.NoSuchJob" */
	struct proto_param params[PROTO_MAX_PARAMS + 1];  /* as declared */
	struct proto_param extra; /* an undeclared field it also carries (name NULL: none) */
};

/* The entry of `e` (e < PROTO_ERROR_COUNT). */
const struct proto_error_desc *proto_error_desc(enum proto_error e);
const char *proto_error_name(enum proto_error e);

/* The error called `name` (full varlink name), or -1. */
int proto_error_find(const char *name);

/* Do `params` (an object; NULL counts as {}) match e's entry: every
 * parameter it declares present with its type (optional ones may be absent
 * or null), no other field but its extra? If not, `why` (n bytes) says what
 * differs. */
bool proto_error_check(enum proto_error e, const json_t *params, char *why, size_t n);

/* The fields an error reply may carry, named as the parameters they fill.
 * Each error sends the ones its entry declares (a string left NULL, or an
 * integer without its has_ flag, is left out: an error missing a required
 * parameter is then logged as a protocol bug). */
struct proto_detail {
	bool has_id;
	int64_t id;
	bool has_epoch;              /* NoSuchCheckpoint's optional epoch */
	int64_t epoch;
	bool has_size;               /* DatasetTooBig: its size and the limit, in bytes */
	int64_t size, limit;
	const char *message;
	const char *state;
	const char *parameter;       /* InvalidParameter */
	const char *dataset;
	const char *recorded, *current;   /* DatasetChanged: the digests */
	const char *file;            /* ImageError, ImageSizeMismatch */
	const char *size_text;       /* ImageSizeMismatch's size ("28x28") */
	const char *expected;        /* ImageSizeMismatch */
	const char *interface;       /* InterfaceNotFound */
	const char *method;          /* MethodNotFound */
};

/* The parameters of error e (a new object; NULL only when out of memory),
 * from d (NULL: none). */
json_t *proto_error_params(enum proto_error e, const struct proto_detail *d);

/* What failed, for the map from a module's code to the protocol's error. */
enum proto_source {
	PROTO_FROM_JOBS,             /* the jobs module: a JOBS_E_* (jobs.h) */
	PROTO_FROM_DAEMON,           /* the daemon itself: memory, its queues, a shutdown */
	PROTO_FROM_STORE,            /* reading the database */
	PROTO_FROM_LOOKUP,           /* finding a job's checkpoint in the database */
	PROTO_FROM_CHECKPOINT,       /* a stored checkpoint that does not load or run */
	PROTO_FROM_CONFIG,           /* the configuration the call sent */
	PROTO_FROM_FIT,              /* a parameter checked against the data or a model */
	PROTO_FROM_DATASET,          /* a dataset: its files, its digest, loading it */
	PROTO_FROM_IMPORT,           /* a dataset import, copied and checked (dsimport_copy) */
	PROTO_FROM_IMPORT_COMMIT,    /* an import put in place (dsimport_commit) */
	PROTO_FROM_REMOVE,           /* a dataset removed (dsimport_remove) */
	PROTO_FROM_IMAGE,            /* Predict's images (predict.h) */
	PROTO_FROM_SWEEP,            /* the sweep module: a SWEEP_E_* (daemon/sweep/sweep.h) */
};

/* The error a failure `code` (a negative errno, or a JOBS_E_* from
 * PROTO_FROM_JOBS) of `from` becomes (errors-map.c). */
enum proto_error proto_error_of(enum proto_source from, int code);

/* The error and its detail of the jobs module's answer r (r->code < 0); the
 * detail's strings point into r. */
struct jobs_result;
enum proto_error proto_jobs_error(const struct jobs_result *r, struct proto_detail *d);

/* e's declaration as an interface file writes it, without the interface:
 * "error NoSuchCheckpoint (id: int, epoch: ?int)". Returns the length
 * (snprintf's: >= n means cut). */
int proto_error_declaration(enum proto_error e, char *out, size_t n);

#endif
