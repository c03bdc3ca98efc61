/*
 * params.c - checking a call's parameters. See daemon/proto/params.h.
 */
#include "daemon/proto/params.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool params_only(struct call *c, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(call_params(c), key, v) {
		bool ok = false;

		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				ok = true;
		if (!ok) {
			char name[TR_QUOTE_MAX + 1];
			int n = tr_utf8_cut(key, TR_QUOTE_MAX);

			snprintf(name, sizeof(name), "%.*s", n, key);
			call_invalid_parameter(c, name, "unknown parameter '%s' for %s", name, call_method(c));
			return false;
		}
	}
	return true;
}

bool params_int(struct call *c, const char *key, bool required, int64_t min, int64_t max,
		int64_t *out)
{
	json_t *v = json_object_get(call_params(c), key);

	if (!v || json_is_null(v)) {
		if (required) {
			call_invalid_parameter(c, key, "missing parameter '%s'", key);
			return false;
		}
		return true;
	}
	if (!json_is_integer(v)) {
		call_invalid_parameter(c, key, "'%s' must be an integer", key);
		return false;
	}
	if (json_integer_value(v) < min || json_integer_value(v) > max) {
		call_invalid_parameter(c, key, "'%s' is %" JSON_INTEGER_FORMAT ", out of range [%" PRId64
				       ", %" PRId64 "]", key, json_integer_value(v), min, max);
		return false;
	}
	*out = json_integer_value(v);
	return true;
}

bool params_bool(struct call *c, const char *key, bool *out)
{
	json_t *v = json_object_get(call_params(c), key);

	if (!v || json_is_null(v))
		return true;
	if (!json_is_boolean(v)) {
		call_invalid_parameter(c, key, "'%s' must be true or false", key);
		return false;
	}
	*out = json_is_true(v);
	return true;
}

bool params_states(struct call *c, const char *key, unsigned *mask)
{
	json_t *states = json_object_get(call_params(c), key);
	unsigned m = 0;
	size_t i;
	json_t *s;

	if (!states || json_is_null(states))
		return true;
	if (!json_is_array(states) || json_array_size(states) == 0) {
		call_invalid_parameter(c, key, "'%s' must be a non-empty array of state names", key);
		return false;
	}
	json_array_foreach(states, i, s) {
		int st = json_is_string(s) ? job_state_parse(json_string_value(s)) : -1;

		if (st < 0) {
			call_invalid_parameter(c, key, "'%s' holds an unknown state (expected queued, running, paused, "
				  "killed, failed or done)", key);
			return false;
		}
		m |= 1u << st;
	}
	*mask = m;
	return true;
}

struct job *params_job(struct daemon *d, struct call *c)
{
	int64_t id = 0;
	struct job *j;

	if (!params_int(c, "id", true, 1, INT64_MAX, &id))
		return NULL;
	j = jobs_find(d->jobs, id);
	if (!j)
		call_error(c, PROTO_NO_SUCH_JOB, &(struct proto_detail){ .has_id = true, .id = id });
	return j;
}

bool params_files_count(struct call *c, json_t *files, size_t *n)
{
	*n = json_is_array(files) ? json_array_size(files) : 0;
	if (*n == 0 || *n > DSIMPORT_MAX_FILES) {
		call_invalid_parameter(c, "files", "'files' must be an array of 1 to %d files", DSIMPORT_MAX_FILES);
		return false;
	}
	return true;
}

void params_take_fds(struct call *c, struct call_fds *fds)
{
	fds->n = call_take_fds(c, fds->fd, SERVER_MAX_FDS);
}

void params_close_fds(struct call_fds *fds)
{
	for (int k = 0; k < fds->n; k++)
		close(fds->fd[k]);
	fds->n = 0;
}

bool params_enough_fds(struct call *c, size_t nfiles, const struct call_fds *fds)
{
	if ((size_t)fds->n >= nfiles)
		return true;
	call_invalid_parameter(c, "files", "%zu files named but %d file descriptors passed with the call "
			       "(send them with SCM_RIGHTS)", nfiles, fds->n);
	return false;
}

void params_take_files(json_t *files, struct call_fds *fds, struct call_files *out)
{
	size_t nfiles = json_array_size(files), i;
	json_t *f;

	out->n = nfiles;
	memcpy(out->fds, fds->fd, nfiles * sizeof(int));
	for (int k = (int)nfiles; k < fds->n; k++)
		close(fds->fd[k]);
	fds->n = 0;
	json_array_foreach(files, i, f)
		snprintf(out->names[i], sizeof(out->names[i]), "%s",
			 json_string_value(json_object_get(f, "name")));
}

void params_files_close(struct call_files *f)
{
	for (size_t i = 0; i < f->n; i++)
		close(f->fds[i]);
	f->n = 0;
}
