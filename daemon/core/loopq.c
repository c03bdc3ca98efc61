/* loopq.c - see daemon/core/loopq.h. */
#include "daemon/core/loopq.h"

static void drain(struct loopq *q)
{
	struct loopq_node *n;

	pthread_mutex_lock(&q->mu);
	n = q->head;
	q->head = q->tail = NULL;
	pthread_mutex_unlock(&q->mu);
	while (n) {
		struct loopq_node *next = n->next;   /* fn may free n */

		n->next = NULL;
		n->fn(n);
		n = next;
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

void loopq_post(struct loopq *q, struct loopq_node *node)
{
	node->next = NULL;
	pthread_mutex_lock(&q->mu);
	if (q->tail)
		q->tail->next = node;
	else
		q->head = node;
	q->tail = node;
	pthread_mutex_unlock(&q->mu);
	uv_async_send(&q->async);
}
