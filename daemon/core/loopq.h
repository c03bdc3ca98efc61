/*
 * loopq.h - hand work to the event-loop thread from any thread.
 *
 * Workers and the store thread never touch libuv handles or the job registry;
 * they post a node to run on the loop thread. The node lives inside the
 * structure being handed over (struct commit, a worker's exit event, a store
 * request...), as libuv's threadpool embeds its uv__work in uv_work_t, so
 * posting allocates nothing and cannot fail: an event, once it exists, always
 * reaches the loop. Posts go to a mutex-guarded intrusive list and one
 * uv_async_send; the loop swaps the whole list out and runs it unlocked, in
 * posting order (libuv may coalesce many sends into one callback, so one
 * callback drains everything).
 *
 * Ownership: from loopq_post until its fn runs, the node (and the structure
 * around it) belongs to the queue; fn receives it back and may free it.
 *
 * Thread: loopq_init/loopq_close on the loop thread; loopq_post from any thread.
 */
#ifndef TRAIND_LOOPQ_H
#define TRAIND_LOOPQ_H

#include <pthread.h>
#include <stddef.h>
#include <uv.h>

/* Embed one in each structure that travels to the loop; set fn before posting. */
struct loopq_node {
	struct loopq_node *next;                 /* queue link, owned by the queue while posted */
	void (*fn)(struct loopq_node *node);     /* runs on the loop thread */
};

/* The structure of type `type` whose member `member` is the node `node`. */
#define loopq_entry(node, type, member) ((type *)((char *)(node) - offsetof(type, member)))

struct loopq {
	uv_async_t async;                        /* loop-owned handle */
	pthread_mutex_t mu;
	struct loopq_node *head, *tail;          /* pending posts, guarded by mu */
};

int loopq_init(struct loopq *q, uv_loop_t *loop);
/* Run what is pending, then close the handle. */
void loopq_close(struct loopq *q);
/* Run node->fn(node) on the loop thread soon. Never fails. */
void loopq_post(struct loopq *q, struct loopq_node *node);

#endif
