/*
 * test-team.c - the team (team.c): every share of every phase runs exactly
 * once, whichever thread runs it; the owner takes the shares of helpers that
 * have not started (asleep after an idle spell), helpers take their own when
 * they are there; and a team of one runs inline.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "traind/team.h"

#define PHASES 3000

struct seen {
	unsigned n;
	_Atomic unsigned runs[TEAM_MAX_MEMBERS];        /* shares run, per share */
	_Atomic unsigned by_owner[TEAM_MAX_MEMBERS];    /* ... of which on the owner's thread */
	pthread_t owner;
	unsigned work_us[TEAM_MAX_MEMBERS];             /* busy time of share i */
	double out[TEAM_MAX_MEMBERS];                   /* what share i computed */
};

static void busy(unsigned us)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do
		clock_gettime(CLOCK_MONOTONIC, &t);
	while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < (long)us);
}

static void share(void *arg, unsigned idx, unsigned n)
{
	struct seen *s = arg;
	double v = 0;

	assert_int_equal(n, s->n);
	atomic_fetch_add(&s->runs[idx], 1);
	if (pthread_equal(pthread_self(), s->owner))
		atomic_fetch_add(&s->by_owner[idx], 1);
	busy(s->work_us[idx]);
	for (unsigned k = 1; k <= 100; k++)     /* a result of i and n alone */
		v += (double)(idx + 1) / (double)(k * n);
	s->out[idx] = v;
}

/* Every share once per phase, for teams of 2, 3 and 4, phases back to back
 * and with idle gaps (helpers asleep), and the same results either way. */
static void test_exactly_once(void **state)
{
	(void)state;
	for (unsigned n = 2; n <= 4; n++) {
		struct team *t = NULL;
		struct seen s;
		double first[TEAM_MAX_MEMBERS];

		memset(&s, 0, sizeof(s));
		s.n = n;
		s.owner = pthread_self();
		assert_int_equal(team_new(&t, n), 0);
		for (unsigned p = 0; p < PHASES; p++) {
			if (p % 500 == 0)
				busy(2000);             /* an idle spell: helpers go to sleep */
			team_run(t, share, &s);
			if (p == 0)
				memcpy(first, s.out, sizeof(first));
			assert_memory_equal(s.out, first, sizeof(first));
		}
		for (unsigned i = 0; i < n; i++)
			assert_int_equal(atomic_load(&s.runs[i]), PHASES);
		assert_int_equal(atomic_load(&s.by_owner[0]), PHASES);
		team_free(t);
	}
}

/* After a helper has gone to sleep, a short share 0 finishes before it
 * wakes: the owner runs share 1. With share 0 long and the helper awake
 * (spinning: phases back to back), the helper runs its own. */
static void test_who_runs(void **state)
{
	struct team *t = NULL;
	struct seen s;
	unsigned stolen, helped;
	int p;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.n = 2;
	s.owner = pthread_self();
	assert_int_equal(team_new(&t, 2), 0);
	for (p = 0; p < 20; p++) {
		struct timespec pause = { 0, 5 * 1000 * 1000 };

		nanosleep(&pause, NULL);        /* the helper spins 100-300 us, then sleeps */
		team_run(t, share, &s);
	}
	stolen = atomic_load(&s.by_owner[1]);
	print_message("share 1 run by the owner after idle spells: %u of 20\n", stolen);
	assert_true(stolen >= 1);

	memset(&s, 0, sizeof(s));
	s.n = 2;
	s.owner = pthread_self();
	s.work_us[0] = 1000;
	/* until the helper has run a few (on a busy machine it may wait for a
	 * core for a while) */
	for (p = 0, helped = 0; p < 1000 && helped < 3; p++) {
		team_run(t, share, &s);
		helped = (unsigned)p + 1 - atomic_load(&s.by_owner[1]);
	}
	print_message("share 1 run by its helper with share 0 taking 1 ms: %u of %d\n", helped, p);
	assert_true(helped >= 3);
	assert_int_equal(atomic_load(&s.runs[1]), (unsigned)p);
	team_free(t);
}

static void test_team_of_one(void **state)
{
	struct team *t = NULL;
	struct seen s;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.n = 1;
	s.owner = pthread_self();
	assert_int_equal(team_new(&t, 1), 0);
	team_run(t, share, &s);
	assert_int_equal(atomic_load(&s.runs[0]), 1);
	assert_int_equal(atomic_load(&s.by_owner[0]), 1);
	assert_int_equal(team_size(t), 1);
	team_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exactly_once),
		cmocka_unit_test(test_who_runs),
		cmocka_unit_test(test_team_of_one),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
