/*
 * loopq.h - hand work to the event-loop thread from any thread.
 *
 * Workers and the store thread never touch libuv handles or the job registry;
 * they post a function to run on the loop thread. Posts go to a
 * mutex-guarded list and one uv_async_send; the loop swaps the whole list out
 * and runs it unlocked, in posting order (libuv may coalesce many sends into
 * one callback, so one callback drains everything).
 *
 * Thread: loopq_init/loopq_close on the loop thread; loopq_post from any thread.
 */
#ifndef TRAIND_LOOPQ_H
#define TRAIND_LOOPQ_H

#include <pthread.h>
#include <uv.h>

struct loopq_item;

struct loopq {
	uv_async_t async;            /* loop-owned handle */
	pthread_mutex_t mu;
	struct loopq_item *head, *tail;  /* pending posts, guarded by mu */
};

int loopq_init(struct loopq *q, uv_loop_t *loop);
/* Run what is pending, then close the handle. */
void loopq_close(struct loopq *q);
/* Run fn(arg) on the loop thread soon. Returns -ENOMEM when it cannot. */
int loopq_post(struct loopq *q, void (*fn)(void *arg), void *arg);

#endif
