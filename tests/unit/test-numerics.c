/*
 * test-numerics.c - the numeric environment: FTZ/DAZ on and off for the
 * calling thread, taken by every member of a team at each phase, given back
 * by numerics_leave; the BLAS kernel's description; Philox4x32-10 against
 * the Random123 known-answer vectors (Dropout's stream).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "traind/numerics.h"
#include "traind/rng.h"
#include "traind/team.h"

/* A denormal result, or 0 when the thread flushes denormals to zero. */
static float tiny_product(void)
{
	volatile float a = 1e-30f, b = 1e-10f;

	return a * b;
}

/* And a denormal input, which DAZ reads as 0. */
static float denormal_input_doubled(void)
{
	volatile float d = 1e-40f;

	return d * 2.0f;
}

struct seen {
	float product[4];
	float input[4];
};

static void phase(void *arg, unsigned idx, unsigned n)
{
	struct seen *s = arg;

	(void)n;
	s->product[idx] = tiny_product();
	s->input[idx] = denormal_input_doubled();
}

static void test_ftz_daz(void **state)
{
	struct team *t = NULL;
	struct seen s;
	unsigned saved;

	(void)state;
	assert_true(tiny_product() > 0.0f);                 /* the default: gradual underflow */
	saved = numerics_enter(true);
	assert_true(tiny_product() == 0.0f);
	assert_true(denormal_input_doubled() == 0.0f);
	assert_int_equal(team_new(&t, 3), 0);
	memset(&s, 0xff, sizeof(s));
	team_run(t, phase, &s);
	for (int i = 0; i < 3; i++) {
		assert_true(s.product[i] == 0.0f);          /* every member flushes */
		assert_true(s.input[i] == 0.0f);
	}
	numerics_leave(saved);
	assert_true(tiny_product() > 0.0f);                 /* given back */
	team_run(t, phase, &s);
	for (int i = 0; i < 3; i++) {
		assert_true(s.product[i] > 0.0f);           /* and the helpers follow the owner */
		assert_true(s.input[i] > 0.0f);
	}
	saved = numerics_enter(false);
	assert_true(tiny_product() > 0.0f);
	numerics_leave(saved);
	team_free(t);
}

static void test_blas_description(void **state)
{
	char buf[NUMERICS_TEXT_MAX];

	(void)state;
	numerics_blas(buf, sizeof(buf));
	assert_memory_equal(buf, "OpenBLAS ", 9);
	assert_non_null(strstr(buf, numerics_core()));
	assert_true(strlen(numerics_core()) > 0);
}

/* Random123's kat_vectors for philox4x32_10. */
static void test_philox_known_answers(void **state)
{
	static const struct {
		uint32_t ctr[4], key[2], out[4];
	} kat[] = {
		{ { 0, 0, 0, 0 }, { 0, 0 }, { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 } },
		{ { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff }, { 0xffffffff, 0xffffffff },
		  { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd } },
		{ { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 }, { 0xa4093822, 0x299f31d0 },
		  { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 } },
	};
	uint32_t out[4];

	(void)state;
	for (size_t i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
		philox4x32(kat[i].ctr, kat[i].key, out);
		assert_memory_equal(out, kat[i].out, sizeof(out));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ftz_daz),
		cmocka_unit_test(test_blas_description),
		cmocka_unit_test(test_philox_known_answers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
