/*
 * errors.h - every error traind's protocol can send, in one table: its C
 * name (enum proto_error), its varlink name and the parameters it carries.
 *
 * The daemon sends errors only through call_error(c, PROTO_..., params)
 * (server.h), so this table is the whole list. It is checked against the
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

/* e's declaration as an interface file writes it, without the interface:
 * "error NoSuchCheckpoint (id: int, epoch: ?int)". Returns the length
 * (snprintf's: >= n means cut). */
int proto_error_declaration(enum proto_error e, char *out, size_t n);

#endif
