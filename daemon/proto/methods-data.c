/*
 * methods-data.c - Datasets, DatasetImport, DatasetRemove: the data
 * directory, on the thread pool. See daemon/proto/methods.h.
 */
#include "daemon/proto/methods.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/log.h"
#include "daemon/data/dsimport.h"
#include "daemon/jobs/jobs.h"
#include "daemon/proto/wire.h"

int methods_digest(struct bg_task *t, struct daemon *d, const char *name, char out[DSCACHE_DIGEST_MAX])
{
	struct store *rs;

	/* Without a connection (the database is gone, say) the files are
	 * hashed in full: the store's own error comes with the next write. */
	(void)bg_store(t, &rs, NULL);
	return dscache_digest(d->dsc, name, rs, d->sq, out, NULL, &t->err);
}

/* The jobs that use dataset `name` ("3 (paused), 7 (running)"), live ones
 * only (queued or running) if live_only; false when none. */
static bool jobs_using(struct daemon *d, const char *name, bool live_only, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < jobs_count(d->jobs); i++) {
		struct job *j = jobs_at(d->jobs, i);
		bool live = j->target == JOB_QUEUED || j->target == JOB_RUNNING || j->worker_alive;

		if (j->removal || strcmp(j->cfg.dataset, name) != 0 || (live_only && !live))
			continue;
		if (o < len)
			o += (size_t)snprintf(buf + o, len - o, "%s%" PRId64 " (%s)", o ? ", " : "", j->id,
					      job_state_name(j->state));
	}
	return o > 0;
}

/* The ids of the jobs on dataset `name` into the array ids (a Dataset
 * object's "jobs"; from the registry, the loop's). */
static void add_job_ids(struct daemon *d, const char *name, json_t *ids)
{
	for (size_t k = 0; name && ids && k < jobs_count(d->jobs); k++) {
		struct job *j = jobs_at(d->jobs, k);

		if (!j->removal && strcmp(j->cfg.dataset, name) == 0)
			json_array_append_new(ids, json_integer((json_int_t)j->id));
	}
}

/* A dataset's task: Datasets, DatasetImport, DatasetRemove. */
struct data_task {
	struct bg_task t;          /* first */
	struct daemon *d;
	char name[CFG_NAME_MAX];   /* the dataset (Import, Remove) */
	/* DatasetImport */
	struct call_files files;   /* closed once copied, or by the release */
	size_t nfiles;             /* how many files the import had */
	bool replace;
	enum ds_vocab vocab;       /* import as a text with this vocabulary (none: not a text) */
	char tmp[PATH_MAX];        /* the copy, to commit or discard */
	uint64_t bytes;
};

static void data_release(struct bg_task *t)
{
	struct data_task *dt = (struct data_task *)t;

	params_files_close(&dt->files);
	free(dt);
}

/* A task for the call, or NULL after replying. */
static struct data_task *data_task_new(struct daemon *d, struct call *c, const char *name,
				       void (*work)(struct bg_task *t), bool (*after)(struct bg_task *t))
{
	struct data_task *dt = bg_task_new(c, sizeof(*dt), work, after, data_release);

	if (!dt)
		return NULL;
	dt->d = d;
	snprintf(dt->name, sizeof(dt->name), "%s", name ? name : "");
	dt->t.detail = (struct proto_detail){ .dataset = dt->name, .has_size = true,
					      .limit = (int64_t)d->max_dataset_bytes };
	return dt;
}

/* ---- Datasets ---------------------------------------------------------- */

/* Every dataset directory: loaded (shared with the jobs through the
 * cache), its digest and size; one that does not load is listed with its
 * error. */
static void datasets_work(struct bg_task *t)
{
	struct data_task *dt = (struct data_task *)t;
	struct daemon *d = dt->d;
	struct store *rs = NULL;
	char **names = NULL;
	size_t n = 0;
	json_t *a;
	int rc;

	rc = bg_store(t, &rs, &t->err);
	if (rc == 0)
		rc = dscache_list(d->dsc, &names, &n, &t->err);
	if (rc < 0) {
		bg_fail(t, PROTO_FROM_STORE, rc);
		return;
	}
	a = json_array();
	for (size_t i = 0; i < n; i++) {
		char digest[DSCACHE_DIGEST_MAX];
		const struct dataset *ds = NULL;
		struct tr_err e = { 0 };
		uint64_t size = 0;
		bool has_digest;
		json_t *o = NULL;

		has_digest = dscache_digest(d->dsc, names[i], rs, d->sq, digest, &size, &e) == 0;
		/* the same files as last time: the same answer, without a load */
		if (has_digest)
			o = dscache_memo_get(d->dsc, names[i], digest);
		if (!o) {
			if (has_digest)
				dscache_get(d->dsc, names[i], digest, &ds, &e);
			o = dataset_json(names[i], ds, has_digest ? digest : NULL, size, e.msg);
			if (o && ds)
				dscache_memo_set(d->dsc, names[i], digest, o);
			dscache_put(d->dsc, ds);
		}
		json_array_append_new(a, o);
		free(names[i]);
	}
	free(names);
	t->result = json_pack("{s:o}", "datasets", a);
}

/* The jobs that use each dataset. */
static bool datasets_after(struct bg_task *t)
{
	struct data_task *dt = (struct data_task *)t;
	json_t *a = json_object_get(t->result, "datasets"), *o;
	size_t i;

	json_array_foreach(a, i, o)
		add_job_ids(dt->d, json_string_value(json_object_get(o, "name")), json_object_get(o, "jobs"));
	return false;
}

void m_datasets(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { NULL };
	struct data_task *dt;

	(void)fds;
	if (!params_only(c, keys) || !(dt = data_task_new(d, c, NULL, datasets_work, datasets_after)))
		return;
	bg_submit(d->bg, &dt->t);
}

/* ---- DatasetImport ----------------------------------------------------- */

static void import_copy_work(struct bg_task *t)
{
	struct data_task *dt = (struct data_task *)t;
	const char *names[DSIMPORT_MAX_FILES];
	int rc;

	for (size_t i = 0; i < dt->files.n; i++)
		names[i] = dt->files.names[i];
	rc = dsimport_copy(dscache_dir(dt->d->dsc), dt->name, names, dt->files.fds, dt->files.n, dt->replace,
			   dt->vocab, dt->d->max_dataset_bytes, dt->tmp, &dt->bytes, &t->err);
	t->detail.size = (int64_t)dt->bytes;
	if (rc < 0)
		bg_fail(t, PROTO_FROM_IMPORT, rc);
}

/* Into place, then listed as Datasets lists it; or (rc < 0 already: a
 * live job took the dataset meanwhile, or the client left) discarded. */
static void import_commit_work(struct bg_task *t)
{
	struct data_task *dt = (struct data_task *)t;
	struct daemon *d = dt->d;
	char digest[DSCACHE_DIGEST_MAX];
	const struct dataset *ds = NULL;
	struct store *rs = NULL;
	struct tr_err e = { 0 };
	uint64_t size = 0;
	int rc;

	if (t->rc < 0 || !t->c) {
		dsimport_discard(dt->tmp);
		return;
	}
	rc = dsimport_commit(dscache_dir(d->dsc), dt->tmp, dt->name, dt->replace, &t->err);
	if (rc < 0) {
		dsimport_discard(dt->tmp);
		bg_fail(t, PROTO_FROM_IMPORT_COMMIT, rc);
		return;
	}
	log_notice("dataset %s: %s (%" PRIu64 " bytes in %zu files)", dt->name,
		   dt->replace ? "imported, replacing any before" : "imported", dt->bytes, dt->nfiles);
	rc = bg_store(t, &rs, &e) == 0 && dscache_digest(d->dsc, dt->name, rs, d->sq, digest, &size, &e) == 0;
	if (rc)
		dscache_get(d->dsc, dt->name, digest, &ds, &e);
	t->result = json_pack("{s:o}", "dataset", dataset_json(dt->name, ds, rc ? digest : NULL, size, e.msg));
	dscache_put(d->dsc, ds);
}

static bool import_commit_after(struct bg_task *t)
{
	struct data_task *dt = (struct data_task *)t;

	add_job_ids(dt->d, dt->name, json_object_get(json_object_get(t->result, "dataset"), "jobs"));
	return false;
}

/* Copied and valid: a replacement still may not go under a live job (one
 * may have started meanwhile); then the rename, off the loop again. */
static bool import_copy_after(struct bg_task *t)
{
	struct data_task *dt = (struct data_task *)t;
	char who[512];

	params_files_close(&dt->files);
	if (t->rc == 0 && dt->replace && jobs_using(dt->d, dt->name, true, who, sizeof(who)))
		bg_fail(t, PROTO_FROM_IMPORT,
			tr_err_set(&t->err, -EBUSY, "dataset %s is used by job %s: it cannot be replaced while a "
				   "queued or running job uses it", dt->name, who));
	if (!dt->tmp[0])   /* nothing to commit or discard */
		return false;
	if (bg_resubmit(t, import_commit_work, import_commit_after))
		return true;
	dsimport_discard(dt->tmp);   /* no thread pool: a rare stall beats a leak */
	if (t->rc == 0)
		bg_fail(t, PROTO_FROM_DAEMON, tr_err_set(&t->err, -ENOMEM, "cannot queue work"));
	return false;
}

void m_dataset_import(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "name", "files", "replace", "vocab", NULL };
	json_t *p = call_params(c), *name = json_object_get(p, "name"), *files = json_object_get(p, "files");
	json_t *vocab = json_object_get(p, "vocab");
	const char *fnames[DSIMPORT_MAX_FILES];
	enum ds_vocab vk = DS_VOCAB_NONE;
	bool replace = false;
	struct data_task *dt;
	char who[512];
	size_t nfiles, i;
	json_t *f;

	if (!params_only(c, keys) || !params_bool(c, "replace", &replace))
		return;
	if (vocab && !json_is_null(vocab) && !json_is_string(vocab)) {
		call_invalid_parameter(c, "vocab", "'vocab' must be \"char\" or \"byte\"");
		return;
	}
	if (!json_is_string(name) || !config_dataset_name_ok(json_string_value(name))) {
		call_invalid_parameter(c, "name", "'name' must be a dataset name (1-63 of A-Z a-z 0-9 . _ -, not "
				       "starting with '.')");
		return;
	}
	if (!params_files_count(c, files, &nfiles))
		return;
	json_array_foreach(files, i, f) {
		json_t *fn = json_object_get(f, "name"), *sz = json_object_get(f, "size");
		const char *n = json_is_string(fn) ? json_string_value(fn) : NULL;

		if (!json_is_object(f) || !n || (sz && !json_is_null(sz) && !json_is_integer(sz))) {
			call_invalid_parameter(c, "files", "files[%zu] must be {\"name\": string, \"size\": int}", i);
			return;
		}
		if (!dsimport_file_name_ok(n) || strlen(n) != json_string_length(fn)) {
			call_invalid_parameter(c, "files", "files[%zu]: '%.*s' is not a safe file name (a base name "
					       "of 1 to %d bytes: no '/', not starting with '.', no control "
					       "characters)", i, tr_utf8_cut(n, TR_QUOTE_MAX), n, DSIMPORT_NAME_MAX);
			return;
		}
		for (size_t k = 0; k < i; k++) {
			if (strcmp(json_string_value(json_object_get(json_array_get(files, k), "name")), n) == 0) {
				call_invalid_parameter(c, "files", "files[%zu]: '%.*s' is named twice", i,
						       tr_utf8_cut(n, TR_QUOTE_MAX), n);
				return;
			}
		}
	}
	json_array_foreach(files, i, f)
		fnames[i] = json_string_value(json_object_get(f, "name"));
	if (dsimport_vocab(json_is_string(vocab) ? json_string_value(vocab) : NULL, fnames, nfiles, &vk) < 0) {
		call_invalid_parameter(c, "vocab", "'vocab' must be \"char\" (a token per character) or \"byte\" "
				       "(a token per byte)");
		return;
	}
	if (!params_enough_fds(c, nfiles, fds))
		return;
	if (replace && jobs_using(d, json_string_value(name), true, who, sizeof(who))) {
		char msg[1024];   /* a name, and `who` */

		snprintf(msg, sizeof(msg), "dataset %s cannot be replaced while a queued or running job uses "
			 "it: job %s", json_string_value(name), who);
		call_error(c, PROTO_DATASET_IN_USE,
			   &(struct proto_detail){ .dataset = json_string_value(name), .message = msg });
		return;
	}
	dt = data_task_new(d, c, json_string_value(name), import_copy_work, import_copy_after);
	if (!dt)
		return;
	dt->replace = replace;
	dt->vocab = vk;
	dt->nfiles = nfiles;
	params_take_files(files, fds, &dt->files);
	bg_submit(d->bg, &dt->t);   /* the files are closed whatever happens */
}

/* ---- DatasetRemove ----------------------------------------------------- */

static void remove_work(struct bg_task *t)
{
	struct data_task *dt = (struct data_task *)t;
	int rc = dsimport_remove(dscache_dir(dt->d->dsc), dt->name, &t->err);

	if (rc < 0) {
		bg_fail(t, PROTO_FROM_REMOVE, rc);
		return;
	}
	log_notice("dataset %s: removed", dt->name);
	t->result = json_pack("{s:s}", "name", dt->name);
}

void m_dataset_remove(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "name", NULL };
	json_t *name = json_object_get(call_params(c), "name");
	struct data_task *dt;
	char who[512];

	(void)fds;
	if (!params_only(c, keys))
		return;
	if (!json_is_string(name) || !config_dataset_name_ok(json_string_value(name))) {
		call_invalid_parameter(c, "name", "'name' must be a dataset name (1-63 of A-Z a-z 0-9 . _ -, not "
				       "starting with '.')");
		return;
	}
	if (jobs_using(d, json_string_value(name), false, who, sizeof(who))) {
		char msg[1024];   /* a name, and `who` */

		snprintf(msg, sizeof(msg), "dataset %s is used by job %s; remove those jobs first (trainctl rm)",
			 json_string_value(name), who);
		call_error(c, PROTO_DATASET_IN_USE,
			   &(struct proto_detail){ .dataset = json_string_value(name), .message = msg });
		return;
	}
	if (!(dt = data_task_new(d, c, json_string_value(name), remove_work, NULL)))
		return;
	bg_submit(d->bg, &dt->t);
}
