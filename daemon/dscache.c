/* dscache.c - see include/traind/dscache.h. */
#include "traind/dscache.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/config.h"

struct entry {
	char name[CFG_NAME_MAX];
	struct dataset *ds;       /* NULL while loading */
	int refs;
	bool loading;
	struct entry *next;
};

struct dscache {
	char dir[PATH_MAX];       /* the data directory, resolved */
	pthread_mutex_t mu;
	pthread_cond_t loaded;
	struct entry *entries;
};

int dscache_new(struct dscache **out, const char *data_dir)
{
	struct dscache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	if (!realpath(data_dir, c->dir))
		snprintf(c->dir, sizeof(c->dir), "%s", data_dir);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->loaded, NULL);
	*out = c;
	return 0;
}

void dscache_free(struct dscache *c)
{
	if (!c)
		return;
	while (c->entries) {
		struct entry *e = c->entries;

		c->entries = e->next;
		dataset_free(e->ds);
		free(e);
	}
	free(c);
}

/* DATA_DIR/name, resolved, must be a directory strictly inside DATA_DIR. */
static int resolve(struct dscache *c, const char *name, char *out, struct tr_err *err)
{
	char path[PATH_MAX + CFG_NAME_MAX + 2];
	size_t n = strlen(c->dir);

	if (!config_dataset_name_ok(name))
		return tr_err_set(err, -EINVAL, "dataset: '%.64s' is not a dataset name", name);
	snprintf(path, sizeof(path), "%s/%s", c->dir, name);
	if (!realpath(path, out))
		return tr_err_set(err, -ENOENT, "dataset '%s': no directory %s", name, path);
	if (strncmp(out, c->dir, n) != 0 || out[n] != '/')
		return tr_err_set(err, -EINVAL, "dataset '%s': %s resolves outside the data directory %s",
				  name, path, c->dir);
	return 0;
}

int dscache_get(struct dscache *c, const char *name, const struct dataset **out, struct tr_err *err)
{
	char real[PATH_MAX];
	struct entry *e;
	struct dataset *ds = NULL;
	int rc;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		for (e = c->entries; e; e = e->next)
			if (strcmp(e->name, name) == 0)
				break;
		if (!e || !e->loading)
			break;
		pthread_cond_wait(&c->loaded, &c->mu);
	}
	if (e) {
		e->refs++;
		*out = e->ds;
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		pthread_mutex_unlock(&c->mu);
		return tr_err_set(err, -ENOMEM, "out of memory");
	}
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->loading = true;
	e->next = c->entries;
	c->entries = e;
	pthread_mutex_unlock(&c->mu);

	rc = resolve(c, name, real, err);
	if (rc == 0)
		rc = dataset_load(&ds, real, err);

	pthread_mutex_lock(&c->mu);
	e->loading = false;
	if (rc < 0) {
		struct entry **pp = &c->entries;

		while (*pp != e)
			pp = &(*pp)->next;
		*pp = e->next;
		free(e);
	} else {
		e->ds = ds;
		e->refs = 1;
		*out = ds;
	}
	pthread_cond_broadcast(&c->loaded);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void dscache_put(struct dscache *c, const struct dataset *ds)
{
	struct entry **pp, *e = NULL;

	if (!ds)
		return;
	pthread_mutex_lock(&c->mu);
	for (pp = &c->entries; *pp; pp = &(*pp)->next) {
		if ((*pp)->ds == ds) {
			e = *pp;
			break;
		}
	}
	if (e && --e->refs == 0)
		*pp = e->next;
	else
		e = NULL;
	pthread_mutex_unlock(&c->mu);
	if (e) {
		dataset_free(e->ds);
		free(e);
	}
}

int dscache_train_shape(struct dscache *c, const char *name, struct dataset_shape *shape,
			struct tr_err *err)
{
	char real[PATH_MAX];
	int rc = resolve(c, name, real, err);

	if (rc < 0)
		return rc;
	return dataset_probe(shape, real, err);
}
