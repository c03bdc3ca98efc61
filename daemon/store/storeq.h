/*
 * storeq.h - the store thread: traind's one SQLite writer.
 *
 * Every write (job rows, state changes, epoch commits, position checkpoints)
 * runs on this thread, in submission order, on its own connection, so the
 * loop never waits for a transaction or an fsync, and training threads hand a
 * serialized checkpoint over and go on computing.
 *
 * Thread: storeq_start/storeq_stop on the loop thread (or in main before the
 * loop runs); storeq_submit from any thread, its `done` callback runs on the
 * loop thread; storeq_call from any thread except the loop thread (it blocks).
 */
#ifndef TRAIND_STOREQ_H
#define TRAIND_STOREQ_H

#include "traind/error.h"
#include "daemon/core/loopq.h"
#include "daemon/store/store.h"

struct storeq;

/* fn runs on the store thread with the writer connection. */
typedef int (*storeq_fn)(struct store *s, void *arg, struct tr_err *err);
/* done runs on the loop thread after fn, with fn's result. */
typedef void (*storeq_done)(void *arg, int rc, const struct tr_err *err);

/* Open the writer connection to `path` (which applies migrations) and start
 * the thread. Completions are posted through `lq`. */
int storeq_start(struct storeq **out, const char *path, struct loopq *lq, struct tr_err *err);
/* Run everything queued, stop the thread, close the connection. */
void storeq_stop(struct storeq *q);
/* Queue fn for the store thread; `done` runs on the loop afterwards. -ENOMEM,
 * or -ESHUTDOWN when q is NULL (the queue was stopped); on failure nothing
 * runs. Once it returns 0, `done` is certain to run (unless done is NULL). */
int storeq_submit(struct storeq *q, storeq_fn fn, void *arg, storeq_done done);
/* Run fn on the store thread and wait for it; returns fn's result. */
int storeq_call(struct storeq *q, storeq_fn fn, void *arg, struct tr_err *err);

#endif
