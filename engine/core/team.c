/*
 * team.c - fork/join thread team for one job. See include/traind/team.h.
 *
 * Design: a phase starts when the owner bumps `gen`; each helper waits for gen
 * to change, runs the phase function, and decrements `pending`; the owner runs
 * its own share and then waits for pending to reach 0. Waiting is spin-then-
 * futex on both sides. Lost wake-ups are impossible because a sleeper first
 * announces itself (sleepers / owner_sleeping, sequentially consistent) and the
 * futex syscall re-checks the word atomically before sleeping.
 *
 * Shares are claimed: whoever moves claimed[i] from the previous phase's
 * generation to this one's runs share i, fn(arg, i, n). A helper claims its
 * own share when it sees the phase; the owner, done with share 0, claims
 * every share no helper has started and runs it itself. On a machine whose
 * cores other processes hold, a helper that is not running (preempted, or
 * not yet woken) would otherwise stall the whole team until the scheduler
 * gets to it: an epoch took up to twice as long. Share i computes the same
 * thing whichever thread runs it (it depends on i and n only: rows, columns
 * and partial sums by member index, never by thread), so the bits do not
 * change. A share already started is waited for, never taken over.
 */
#include "traind/team.h"

#include "traind/numerics.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPIN_ITERS 20000   /* about 100-300 us of pause instructions */
#define PAUSE_ITERS 2000   /* the first 10-30 us pause only; after that each spin yields the core */

struct team {
	unsigned n;                  /* members, including the owner */
	pthread_t *helpers;          /* (n - 1) */
	unsigned started;            /* helpers actually started */
	_Atomic uint32_t gen;        /* phase generation; futex word for helpers */
	_Atomic uint32_t pending;    /* helpers still in the current phase; futex word for the owner */
	_Atomic uint32_t sleepers;   /* helpers sleeping on gen */
	_Atomic uint32_t owner_sleeping;
	_Atomic uint32_t claimed[TEAM_MAX_MEMBERS];   /* the gen in which share i was last claimed */
	_Atomic int quit;            /* set before the final gen bump */
	team_fn fn;                  /* current phase, written before gen is bumped */
	void *arg;
	unsigned fpmode;             /* the owner's floating-point mode, taken by helpers each phase */
};

struct helper_arg {
	struct team *t;
	unsigned idx;
};

static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* One spin of a waiter. Past PAUSE_ITERS it yields: on a machine where other
 * processes hold the cores, the member it waits for may be queued behind it
 * on the same core, and pausing there would burn that member's time slice
 * (an epoch took 10x longer); on an idle core sched_yield returns at once. */
static inline void cpu_relax(int spins)
{
	if (spins > PAUSE_ITERS) {
		sched_yield();
		return;
	}
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Share i of phase g: taken by the caller if nobody has taken it yet. Every
 * share of phase g - 1 was claimed (the phase ended), so claimed[i] is g - 1
 * until someone claims it for g; a helper that saw g too late finds g, or a
 * later phase's number, and leaves it. */
static bool claim(struct team *t, unsigned i, uint32_t g)
{
	uint32_t prev = g - 1;

	return atomic_compare_exchange_strong(&t->claimed[i], &prev, g);
}

static void *helper_main(void *p)
{
	struct helper_arg *ha = p;
	struct team *t = ha->t;
	unsigned idx = ha->idx;
	uint32_t seen = 0;
	unsigned fpmode = numerics_get();

	free(ha);
	for (;;) {
		uint32_t g;
		int spins = 0;

		while ((g = atomic_load(&t->gen)) == seen) {
			if (spins++ < SPIN_ITERS) {
				cpu_relax(spins);
				continue;
			}
			atomic_fetch_add(&t->sleepers, 1);
			futex_wait(&t->gen, seen);
			atomic_fetch_sub(&t->sleepers, 1);
		}
		seen = g;
		if (atomic_load(&t->quit))
			break;
		if (!claim(t, idx, g))
			continue;            /* the owner ran it: the phase may even be over */
		if (t->fpmode != fpmode) {
			fpmode = t->fpmode;
			numerics_set(fpmode);
		}
		t->fn(t->arg, idx, t->n);
		if (atomic_fetch_sub(&t->pending, 1) == 1 && atomic_load(&t->owner_sleeping))
			futex_wake(&t->pending);
	}
	return NULL;
}

int team_new(struct team **out, unsigned n)
{
	struct team *t;
	int rc = 0;

	if (n < 1)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->n = n;
	if (n > 1) {
		t->helpers = calloc(n - 1, sizeof(*t->helpers));
		if (!t->helpers) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	for (unsigned i = 1; i < n; i++) {
		struct helper_arg *ha = malloc(sizeof(*ha));

		if (!ha) {
			rc = -ENOMEM;
			goto fail;
		}
		ha->t = t;
		ha->idx = i;
		rc = -pthread_create(&t->helpers[i - 1], NULL, helper_main, ha);
		if (rc) {
			free(ha);
			goto fail;
		}
		t->started++;
	}
	*out = t;
	return 0;
fail:
	team_free(t);
	return rc;
}

void team_free(struct team *t)
{
	if (!t)
		return;
	atomic_store(&t->quit, 1);
	atomic_fetch_add(&t->gen, 1);
	futex_wake(&t->gen);
	for (unsigned i = 0; i < t->started; i++)
		pthread_join(t->helpers[i], NULL);
	free(t->helpers);
	free(t);
}

unsigned team_size(const struct team *t)
{
	return t->n;
}

void team_run(struct team *t, team_fn fn, void *arg)
{
	int spins = 0;
	uint32_t g;

	if (t->n == 1) {
		fn(arg, 0, 1);
		return;
	}
	t->fn = fn;
	t->arg = arg;
	t->fpmode = numerics_get();
	atomic_store(&t->pending, t->n - 1);
	g = atomic_fetch_add(&t->gen, 1) + 1;
	if (atomic_load(&t->sleepers))
		futex_wake(&t->gen);
	fn(arg, 0, t->n);
	/* the shares of helpers that have not started yet */
	for (unsigned i = 1; i < t->n; i++) {
		if (claim(t, i, g)) {
			fn(arg, i, t->n);
			atomic_fetch_sub(&t->pending, 1);
		}
	}
	for (;;) {
		uint32_t p = atomic_load(&t->pending);

		if (p == 0)
			break;
		if (spins++ < SPIN_ITERS) {
			cpu_relax(spins);
			continue;
		}
		atomic_store(&t->owner_sleeping, 1);
		futex_wait(&t->pending, p);
		atomic_store(&t->owner_sleeping, 0);
	}
}

void team_split(size_t total, unsigned idx, unsigned n, size_t align, size_t *lo, size_t *hi)
{
	size_t chunks = (total + align - 1) / align;
	size_t base = chunks / n, extra = chunks % n;
	size_t c0 = idx * base + (idx < extra ? idx : extra);
	size_t c1 = c0 + base + (idx < extra ? 1 : 0);

	*lo = c0 * align < total ? c0 * align : total;
	*hi = c1 * align < total ? c1 * align : total;
}
