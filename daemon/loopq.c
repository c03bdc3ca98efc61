/* loopq.c - see include/traind/loopq.h. */
#include "traind/loopq.h"

#include <errno.h>
#include <stdlib.h>

struct loopq_item {
	void (*fn)(void *arg);
	void *arg;
	struct loopq_item *next;
};

static void drain(struct loopq *q)
{
	struct loopq_item *it;

	pthread_mutex_lock(&q->mu);
	it = q->head;
	q->head = q->tail = NULL;
	pthread_mutex_unlock(&q->mu);
	while (it) {
		struct loopq_item *next = it->next;

		it->fn(it->arg);
		free(it);
		it = next;
	}
}

static void on_async(uv_async_t *a)
{
	drain(a->data);
}

int loopq_init(struct loopq *q, uv_loop_t *loop)
{
	int rc;

	q->head = q->tail = NULL;
	pthread_mutex_init(&q->mu, NULL);
	rc = uv_async_init(loop, &q->async, on_async);
	q->async.data = q;
	return rc;
}

void loopq_close(struct loopq *q)
{
	drain(q);
	uv_close((uv_handle_t *)&q->async, NULL);
}

int loopq_post(struct loopq *q, void (*fn)(void *arg), void *arg)
{
	struct loopq_item *it = malloc(sizeof(*it));

	if (!it)
		return -ENOMEM;
	it->fn = fn;
	it->arg = arg;
	it->next = NULL;
	pthread_mutex_lock(&q->mu);
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	pthread_mutex_unlock(&q->mu);
	uv_async_send(&q->async);
	return 0;
}
