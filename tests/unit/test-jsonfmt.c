/*
 * test-jsonfmt.c - JSON with the shortest exact reals (engine/core/jsonfmt.c).
 *
 * Every real comes out in its shortest exact form, as Python's repr writes
 * it, and reads back as the same double (checked over many values, random
 * bit patterns included); integers, strings (with digits, dots and escaped
 * quotes inside) and layout are jansson's own.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "traind/jsonfmt.h"

static void real_is(double v, const char *want)
{
	char out[48];

	jsonfmt_real(v, out, sizeof(out));
	assert_string_equal(out, want);
	assert_true(strtod(out, NULL) == v);
}

static void test_reals(void **state)
{
	(void)state;
	real_is(0.9, "0.9");
	real_is(0.1 + 0.2, "0.30000000000000004");
	real_is(0.0003, "0.0003");
	real_is(0.00030000000000000003, "0.00030000000000000003");
	real_is(1.0, "1.0");
	real_is(10.0, "10.0");
	real_is(-2.5, "-2.5");
	real_is(0.0, "0.0");
	real_is(1e-5, "1e-5");
	real_is(1e-8, "1e-8");
	real_is(1e16, "1e16");
	real_is(123456789.0, "123456789.0");
	real_is(1.5e300, "1.5e300");
	real_is(0.999, "0.999");
	real_is(5e-324, "5e-324");
}

static void test_dumps(void **state)
{
	json_t *v = json_pack("{s:f,s:f,s:I,s:s,s:[f,f],s:f}", "beta1", 0.9, "lr", 0.001, "epochs",
			      (json_int_t)5, "note", "lr 0.90000000000000002 \"1.0\" -3.5e+07", "xs", 1.0, 1e-8,
			      "big", 1e16);
	char *s = jsonfmt_dumps(v, JSON_COMPACT);

	assert_non_null(s);
	assert_string_equal(s, "{\"beta1\":0.9,\"lr\":0.001,\"epochs\":5,"
			       "\"note\":\"lr 0.90000000000000002 \\\"1.0\\\" -3.5e+07\",\"xs\":[1.0,1e-8],\"big\":1e16}");
	free(s);
	s = jsonfmt_dumps(v, JSON_INDENT(2));
	assert_non_null(strstr(s, "\n  \"beta1\": 0.9,\n"));
	free(s);
	json_decref(v);
	/* a scalar, as trainctl prints one with JSON_ENCODE_ANY */
	v = json_real(0.1);
	s = jsonfmt_dumps(v, JSON_ENCODE_ANY);
	assert_string_equal(s, "0.1");
	free(s);
	json_decref(v);
}

/* The significant digits of a number's text. */
static int sig_digits(const char *s)
{
	int n = 0, started = 0, trailing = 0;

	for (; *s && *s != 'e' && *s != 'E'; s++) {
		if (*s < '0' || *s > '9')
			continue;
		if (*s != '0')
			started = 1;
		if (!started)
			continue;
		n++;
		trailing = *s == '0' ? trailing + 1 : 0;
	}
	return n - trailing;
}

/* The fewest significant digits that read back as v, by trying them all. */
static int fewest_digits(double v)
{
	char buf[40];

	for (int p = 1; p < 17; p++) {
		snprintf(buf, sizeof(buf), "%.*e", p - 1, v);
		if (strtod(buf, NULL) == v)
			return p;
	}
	return 17;
}

/* Round trip: whatever the double, the text reads back as it, has the
 * fewest digits that do (as trying every count finds) unless that would be
 * longer than jansson's text, and is never longer than jansson's. */
static void test_round_trip(void **state)
{
	uint64_t x = 0x9e3779b97f4a7c15u;

	(void)state;
	for (int i = 0; i < 200000; i++) {
		double v;
		json_t *a, *b;
		char *s, *plain;
		json_error_t jerr;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(&v, &x, sizeof(v));
		if (!isfinite(v))
			continue;
		if (i & 1)
			v = (double)(x % 100000) / 1000.0;   /* the kind of numbers people type */
		a = json_pack("[f]", v);
		s = jsonfmt_dumps(a, JSON_COMPACT);
		plain = json_dumps(a, JSON_COMPACT | JSON_REAL_PRECISION(17));
		assert_non_null(s);
		assert_true(strlen(s) <= strlen(plain));
		b = json_loads(s, 0, &jerr);
		assert_non_null(b);
		assert_true(json_is_real(json_array_get(b, 0)));
		assert_true(json_real_value(json_array_get(b, 0)) == v);
		/* (where the shortest form would be longer text than jansson's,
		 * 1e16 to 1e17 written positionally, jansson's stays) */
		if (v != 0 && sig_digits(s) != fewest_digits(v) && strcmp(s, plain) != 0)
			fail_msg("%.17g written %s: %d digits, %d would do", v, s, sig_digits(s), fewest_digits(v));
		free(s);
		free(plain);
		json_decref(a);
		json_decref(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reals),
		cmocka_unit_test(test_dumps),
		cmocka_unit_test(test_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
