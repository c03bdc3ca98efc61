/*
 * storeq.c - the single writer thread. See daemon/store/storeq.h.
 *
 * A FIFO of requests guarded by a mutex and a condition variable (Redis
 * bio.c's shape). A synchronous caller waits on its request's own condition;
 * an asynchronous one gets its `done` posted to the loop through the loopq
 * node inside the request, so once a request is queued its completion always
 * runs (posting cannot fail). After each request, once its outcome is
 * out, the thread lets the store checkpoint its WAL (store_maintain).
 */
#include "daemon/store/storeq.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct sreq {
	storeq_fn fn;
	void *arg;
	storeq_done done;       /* async completion, or NULL */
	bool sync;              /* a storeq_call waits on `cond` */
	bool finished;
	int rc;
	struct tr_err err;
	pthread_cond_t cond;
	struct storeq *q;
	struct sreq *next;       /* the store thread's FIFO */
	struct loopq_node node;  /* the completion's trip to the loop */
};

struct storeq {
	struct store *store;        /* the writer connection, used only by the thread */
	struct loopq *lq;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;        /* work arrived / stop */
	struct sreq *head, *tail;
	bool stopping;
};

static void deliver(struct loopq_node *n)
{
	struct sreq *r = loopq_entry(n, struct sreq, node);

	r->done(r->arg, r->rc, &r->err);
	free(r);
}

static void *store_main(void *p)
{
	struct storeq *q = p;

	for (;;) {
		struct sreq *r;

		pthread_mutex_lock(&q->mu);
		while (!q->head && !q->stopping)
			pthread_cond_wait(&q->cond, &q->mu);
		r = q->head;
		if (!r) {
			pthread_mutex_unlock(&q->mu);
			break;
		}
		q->head = r->next;
		if (!q->head)
			q->tail = NULL;
		pthread_mutex_unlock(&q->mu);

		tr_err_clear(&r->err);
		r->rc = r->fn(q->store, r->arg, &r->err);
		if (r->sync) {
			pthread_mutex_lock(&q->mu);
			r->finished = true;
			pthread_cond_broadcast(&r->cond);
			pthread_mutex_unlock(&q->mu);
		} else if (r->done) {
			r->node.fn = deliver;
			loopq_post(q->lq, &r->node);
		} else {
			free(r);
		}
		/* After the request's outcome is out: its caller does not wait
		 * for the WAL checkpoint. */
		store_maintain(q->store);
	}
	return NULL;
}

int storeq_start(struct storeq **out, const char *path, struct loopq *lq, struct tr_err *err)
{
	struct storeq *q = calloc(1, sizeof(*q));
	int rc;

	if (!q)
		return tr_err_set(err, -ENOMEM, "out of memory");
	q->lq = lq;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cond, NULL);
	rc = store_open(&q->store, path, false, err);
	if (rc < 0)
		goto fail;
	rc = -pthread_create(&q->thread, NULL, store_main, q);
	if (rc < 0) {
		tr_err_set(err, rc, "cannot start the store thread");
		goto fail;
	}
	*out = q;
	return 0;
fail:
	store_close(q->store);
	free(q);
	return rc;
}

void storeq_stop(struct storeq *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->stopping = true;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->mu);
	pthread_join(q->thread, NULL);
	store_close(q->store);
	free(q);
}

static void enqueue(struct storeq *q, struct sreq *r)
{
	pthread_mutex_lock(&q->mu);
	if (q->tail)
		q->tail->next = r;
	else
		q->head = r;
	q->tail = r;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->mu);
}

int storeq_submit(struct storeq *q, storeq_fn fn, void *arg, storeq_done done)
{
	struct sreq *r;

	if (!q)
		return -ESHUTDOWN; /* stopped: main() drops it before the last loop run */
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->fn = fn;
	r->arg = arg;
	r->done = done;
	r->q = q;
	enqueue(q, r);
	return 0;
}

int storeq_call(struct storeq *q, storeq_fn fn, void *arg, struct tr_err *err)
{
	struct sreq r;

	memset(&r, 0, sizeof(r));
	r.fn = fn;
	r.arg = arg;
	r.sync = true;
	r.q = q;
	pthread_cond_init(&r.cond, NULL);
	enqueue(q, &r);
	pthread_mutex_lock(&q->mu);
	while (!r.finished)
		pthread_cond_wait(&r.cond, &q->mu);
	pthread_mutex_unlock(&q->mu);
	pthread_cond_destroy(&r.cond);
	if (err && r.rc < 0)
		*err = r.err;
	return r.rc;
}
