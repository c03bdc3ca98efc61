/*
 * worker.h - the thread runner: each run of a job on a dedicated thread of
 * traind that owns its trainer (and the trainer's team of threads). See
 * runner.h for what a run sees and how it reports.
 *
 * Thread: thread_runner.start on the loop thread; the run on its own.
 */
#ifndef TRAIND_WORKER_H
#define TRAIND_WORKER_H

#include "daemon/runner/runner.h"

extern const struct runner_ops thread_runner;

#endif
