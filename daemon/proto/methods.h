/*
 * methods.h - the io.traind varlink methods (see daemon/proto/io.traind.varlink):
 * parameter checking and replies. Every parameter is checked before anything
 * happens; a bad one gets InvalidParameter naming it. Reads that touch the
 * database or compute (History, Checkpoints, Eval, Export, Start's dataset
 * check) run on libuv's thread pool with their own read-only connection;
 * writes go through the store thread (jobs.c). The loop never blocks.
 *
 * Thread: loop thread.
 */
#ifndef TRAIND_METHODS_H
#define TRAIND_METHODS_H

#include "daemon/jobs/jobs.h"
#include "daemon/proto/server.h"

/* The server's dispatch function; ctx is the struct daemon. */
void methods_dispatch(void *ctx, struct call *c, const char *method);

#endif
