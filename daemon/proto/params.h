/*
 * params.h - checking a call's parameters, for the methods.
 *
 * Every parameter is checked before anything happens; a bad one gets
 * InvalidParameter naming it (call_invalid_parameter), and the helper
 * returns false (or NULL) after that reply: the method just returns. Also
 * here: the files a call passes (DatasetImport, Predict), as descriptors
 * with SCM_RIGHTS and names in "files".
 *
 * Thread: loop thread.
 */
#ifndef TRAIND_PARAMS_H
#define TRAIND_PARAMS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/daemon.h"
#include "daemon/data/dsimport.h"
#include "daemon/jobs/jobs.h"
#include "daemon/proto/server.h"

/* Only the listed keys (NULL-terminated) may appear. */
bool params_only(struct call *c, const char *const *allowed);
/* An integer parameter in [min, max] into *out (absent or null: *out
 * unchanged, unless required). */
bool params_int(struct call *c, const char *key, bool required, int64_t min, int64_t max,
		int64_t *out);
/* A boolean parameter into *out (absent or null: unchanged). */
bool params_bool(struct call *c, const char *key, bool *out);
/* A non-empty array of state names as a mask of enum job_state bits into
 * *mask (absent or null: unchanged). */
bool params_states(struct call *c, const char *key, unsigned *mask);
/* The job named by "id" (required), or NULL after replying (NoSuchJob). */
struct job *params_job(struct daemon *d, struct call *c);

/* The descriptors passed with a call (all of them: a refused call leaves
 * none behind for the next one). */
struct call_fds {
	int fd[SERVER_MAX_FDS];
	int n;
};

/* A call's files: its first descriptors and the names of "files". */
struct call_files {
	int fds[DSIMPORT_MAX_FILES];       /* owned (params_files_close) */
	char names[DSIMPORT_MAX_FILES][DSIMPORT_NAME_MAX + 1];
	size_t n;
};

/* "files", an array of 1 to DSIMPORT_MAX_FILES entries: their count. */
bool params_files_count(struct call *c, json_t *files, size_t *n);
/* Take every descriptor passed with c. */
void params_take_fds(struct call *c, struct call_fds *fds);
/* Close those still in fds (the method took none, or the rest). */
void params_close_fds(struct call_fds *fds);
/* At least as many descriptors passed as files named. */
bool params_enough_fds(struct call *c, size_t nfiles, const struct call_fds *fds);
/* Move the first json_array_size(files) descriptors of fds, with the
 * files' names (already checked), into out; the rest are closed. fds is
 * empty afterwards. */
void params_take_files(json_t *files, struct call_fds *fds, struct call_files *out);
void params_files_close(struct call_files *f);

#endif
