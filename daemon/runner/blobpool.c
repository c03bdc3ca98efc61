/*
 * blobpool.c - a run's spare checkpoint buffer. See daemon/runner/blobpool.h.
 */
#include "daemon/runner/blobpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "traind/checkpoint.h"

struct blob_pool {
	pthread_mutex_t mu;
	int refs;                    /* the run + each commit holding a buffer of it */
	uint8_t *spare;              /* NULL while a commit has it */
	size_t cap;
};

/* Slack over the first checkpoint's size: the history metadata grows a few
 * hundred bytes an epoch. */
#define BLOB_SLACK (64u << 10)

struct blob_pool *blob_pool_new(void)
{
	struct blob_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	pthread_mutex_init(&p->mu, NULL);
	p->refs = 1;
	return p;
}

void blob_pool_take(struct blob_pool *p, uint8_t **buf, size_t *cap)
{
	pthread_mutex_lock(&p->mu);
	*buf = p->spare;
	*cap = p->cap;
	p->spare = NULL;
	p->cap = 0;
	p->refs++;
	pthread_mutex_unlock(&p->mu);
}

void blob_pool_put(struct blob_pool *p, uint8_t *buf, size_t cap)
{
	bool last;

	if (!p) {
		free(buf);
		return;
	}
	pthread_mutex_lock(&p->mu);
	if (buf && !p->spare) {
		p->spare = buf;
		p->cap = cap;
		buf = NULL;
	}
	last = --p->refs == 0;
	pthread_mutex_unlock(&p->mu);
	free(buf);
	if (last) {
		free(p->spare);
		pthread_mutex_destroy(&p->mu);
		free(p);
	}
}

void blob_pool_prefault(struct blob_pool *p, const struct trainer *t)
{
	uint8_t *buf = NULL, *grown;
	size_t cap = 0, len = 0;

	if (checkpoint_serialize_into(t, &buf, &cap, &len, NULL) < 0)
		return;
	grown = realloc(buf, len + BLOB_SLACK);
	if (grown) {
		buf = grown;
		cap = len + BLOB_SLACK;
	}
	pthread_mutex_lock(&p->mu);
	if (!p->spare) {
		p->spare = buf;
		p->cap = cap;
		buf = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	free(buf);
}
