/*
 * bgwork.h - the methods' background work: what a call reads or computes
 * off the loop (History, Checkpoints, Eval, Export, Generate, Predict, Datasets,
 * dataset imports and removals, Start's and Resume's checks), on libuv's
 * thread pool, with a read-only connection to the database of its own.
 *
 * A method puts a struct bg_task first in a struct of its own, fills in
 * its hooks and submits it with the call it answers. The module runs
 * work(t) on the pool, then on the loop after(t) (when set), then answers
 * the call from the outcome (t->result, or the error t->error with the
 * fields of t->detail) and releases the task. A task is its method's until
 * submitted, the module's from then on.
 *
 * Fairness (issue 21). bg_submit is the one door to the pool and knows
 * whose call each task answers (the peer uid of the call's connection), so
 * the queueing policy lives here, in one place; doc/resources.md has the
 * figures. Each task is of a class: BG_READ (History, Steps, Checkpoints:
 * a few rows of the database) or BG_HEAVY (the default: Eval, Export,
 * Predict, Datasets, imports and removals, Start's and Resume's checks).
 * Each uid has a FIFO queue per class. At most libuv's threads less one
 * tasks are on the pool at once (one thread is left to the server's parse
 * of large messages), heavy ones at most libuv's threads less two (one
 * thread is always there for reads, so a History never waits behind an
 * Eval); UV_THREADPOOL_SIZE sets them, as it sets libuv's pool. When a
 * task ends, the next is taken from the uids' queues in round robin, reads
 * first: a uid with 64 Evals queued gets one turn in n, not the pool. At
 * most BG_MAX_UID_QUEUED tasks of one uid wait in each class; past it the
 * call gets TooManyRequests naming the limit (the connection stays),
 * logged at most once a second. A task on the pool does not count as
 * waiting (the slots bound those).
 *
 * Work that answers no call (a PBT sweep's exploits, built for the uid
 * that started the sweep) comes through bg_post: the same queues and
 * slots, charged to the uid it is given, as a heavy task. It is never
 * refused (its owner bounds it: a sweep has one decision on its way at a
 * time) and never cancelled; it waits its turn behind the uid's other
 * tasks and beside the other uids'. Its done runs on the loop once work
 * is over. At shutdown the loop's last run (daemon_free) drains it like
 * any task on the pool: a task still waiting is put on the pool when a
 * slot frees, so done always runs before bgwork_free.
 *
 * A client that goes away while its task waits in the queue takes it
 * with it: the task is released without running (nothing it would have
 * done happens). One that goes away while its task works: t->c becomes
 * NULL, the work goes on to its end, nobody is answered, and what the
 * answer would have started does not happen (a Start's job is not
 * stored).
 *
 * Thread: bgwork_*, bg_task_new, bg_submit, bg_resubmit, bg_post and the
 * hooks after, release and done on the loop thread; work and bg_store on
 * the pool;
 * bg_fail in work or after (the task is one thread's at a time).
 */
#ifndef TRAIND_BGWORK_H
#define TRAIND_BGWORK_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "traind/error.h"
#include "daemon/proto/errors.h"
#include "daemon/proto/server.h"
#include "daemon/store/store.h"

#define BG_MAX_UID_QUEUED 64     /* tasks of one uid waiting, per class */

struct bgwork;
struct bg_peer;

/* A task's class (see Fairness above): set t->cls before bg_submit. */
enum bg_class {
	BG_HEAVY,                    /* 0, the default: computes, or reads files */
	BG_READ,                     /* a few rows of the database */
	BG_NCLASSES
};

struct bg_task {
	uv_work_t req;               /* the pool's */
	struct bgwork *q;
	enum bg_class cls;
	/* the module's: the uid's queue, and the task's place in it */
	struct bg_peer *peer;
	struct bg_task *qnext;
	bool waiting;                /* in its uid's queue, not yet on the pool */
	struct call *c;              /* the call it answers; NULL once the client has gone, or
	                                once after() has handed the call on, or (bg_post) none */
	uid_t uid;                   /* whose share it takes: the call's uid, or bg_post's */
	void (*work)(struct bg_task *t);       /* on the pool */
	/* On the loop once work is done (NULL: none): true when it has queued
	 * the task again (bg_resubmit), so that there is no answer yet. */
	bool (*after)(struct bg_task *t);
	void (*release)(struct bg_task *t);    /* frees the method's struct (on the loop) */
	struct store *store;         /* bg_store's connection; closed once work returns */
	/* the outcome */
	int rc;                      /* < 0: failed with t->error */
	enum proto_error error;      /* (PROTO_STORAGE_ERROR until bg_fail says otherwise) */
	struct proto_detail detail;  /* its fields; detail.message is err.msg unless set */
	struct tr_err err;
	json_t *result;              /* on success, the reply's parameters (taken) */
};

/* What Counters tells of it: tasks waiting in the uids' queues and on the
 * pool now, and the calls refused since start (a uid's queue full). */
struct bg_counts {
	unsigned waiting, running;
	uint64_t refused;
};

/* The pool's door for one daemon: its loop, and the database the tasks
 * read. NULL when out of memory. */
struct bgwork *bgwork_new(uv_loop_t *loop, const char *db_path);
void bgwork_free(struct bgwork *q);   /* after the loop has stopped; accepts NULL */
void bgwork_counts(const struct bgwork *q, struct bg_counts *out);

/* A method's task: `size` bytes zeroed (its struct, with the struct
 * bg_task first), the hooks set, to answer c; NULL after answering c
 * (StorageError: out of memory). */
void *bg_task_new(struct call *c, size_t size, void (*work)(struct bg_task *t),
		  bool (*after)(struct bg_task *t), void (*release)(struct bg_task *t));
/* Queue t in its uid's queue of class t->cls (see the top). When it cannot
 * be queued, c gets TooManyRequests (the uid's queue is full) or a
 * StorageError (out of memory) and t is released: false. */
bool bg_submit(struct bgwork *q, struct bg_task *t);
/* From after(): queue t again with other hooks (a second stage: the
 * import's commit); it keeps its slot on the pool, without waiting in its
 * uid's queue. False when it cannot be queued (t unchanged; after() then
 * returns false, and t is answered as it stands). */
bool bg_resubmit(struct bg_task *t, void (*work)(struct bg_task *t), bool (*after)(struct bg_task *t));

/* Work that answers no call (see the top): work(data) on the pool as a
 * heavy task of uid's, then done(data) on the loop. 0, or -ENOMEM (nothing
 * queued, nothing runs). */
int bg_post(struct bgwork *q, uid_t uid, void (*work)(void *data), void (*done)(void *data), void *data);

/* The task's read-only connection to the database, opened on first use
 * (on the pool) and closed when work returns: 0, or an error in err. */
int bg_store(struct bg_task *t, struct store **out, struct tr_err *err);
/* Fail t: what failed (`from`) and its code give the protocol's error
 * (proto_error_of); returns rc (-EIO when rc is not negative). */
int bg_fail(struct bg_task *t, enum proto_source from, int rc);

#endif
