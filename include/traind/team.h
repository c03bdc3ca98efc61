/*
 * team.h - a fixed team of threads that computes one training job.
 *
 * A job with `threads` = T owns a team of T members: the thread that calls
 * team_run (member 0) and T-1 helper threads the team starts and owns. Each
 * team_run(fn) runs fn(arg, i, T) once for every share i and returns when all
 * have finished, so the work split is fixed by T alone: results never depend on
 * what else runs in the process. Share i normally runs on member i; when a
 * helper has not started its share by the time the owner is done with its
 * own (preempted on a busy machine, still waking up), the owner runs it. So
 * fn must compute share i from i and T alone (never from the calling
 * thread), and a share must not wait for another share of its phase. Helpers spin briefly between phases (a
 * training step has two phases about 100 us apart) and then sleep on a futex,
 * so an idle or paused job costs no CPU. Helpers compute in the owner's
 * floating-point mode (FTZ/DAZ, numerics.h), taken at each phase.
 *
 * Thread: team_new/team_run/team_free are called by the one thread that owns
 * the team (a job's worker); fn runs on all members concurrently.
 */
#ifndef TRAIND_TEAM_H
#define TRAIND_TEAM_H

#include <stddef.h>

/* The most members a team has (a job's `threads` at most). */
#define TEAM_MAX_MEMBERS 16

struct team;

typedef void (*team_fn)(void *arg, unsigned idx, unsigned n);

/* Start a team of n members (n-1 helper threads). n >= 1. */
int team_new(struct team **out, unsigned n);
/* Stop and join the helpers. NULL accepted. */
void team_free(struct team *t);
/* Number of members. */
unsigned team_size(const struct team *t);
/* Run fn(arg, i, n) for every share i in [0, n): share 0 on the caller, each
 * other on its helper or, if that helper has not started it when share 0 is
 * done, on the caller. */
void team_run(struct team *t, team_fn fn, void *arg);

/* The share [*lo, *hi) of `total` items for member idx of n, in chunks that are
 * multiples of `align` (except the last), balanced. Pure function. */
void team_split(size_t total, unsigned idx, unsigned n, size_t align, size_t *lo, size_t *hi);

#endif
