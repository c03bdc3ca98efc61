/*
 * test-base64.c - RFC 4648 vectors, random round trips, and strict rejection
 * of malformed input (bad characters, bad padding, non-canonical bits).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "traind/base64.h"
#include "traind/rng.h"

static void test_rfc4648_vectors(void **state)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const coded[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
					     "Zm9vYmFy" };

	(void)state;
	for (int i = 0; i < 7; i++) {
		char *e = base64_encode((const uint8_t *)plain[i], strlen(plain[i]));
		uint8_t *d = NULL;
		size_t n = 0;

		assert_string_equal(e, coded[i]);
		assert_int_equal(base64_decode(coded[i], strlen(coded[i]), &d, &n), 0);
		assert_int_equal(n, strlen(plain[i]));
		assert_memory_equal(d, plain[i], n);
		free(e);
		free(d);
	}
}

static void test_round_trips(void **state)
{
	struct rng r;
	uint8_t buf[300];

	(void)state;
	rng_seed(&r, 1);
	for (size_t len = 0; len < sizeof(buf); len++) {
		char *e;
		uint8_t *d = NULL;
		size_t n = 0;

		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rng_next(&r);
		e = base64_encode(buf, len);
		assert_int_equal(base64_decode(e, strlen(e), &d, &n), 0);
		assert_int_equal(n, len);
		assert_memory_equal(d, buf, len);
		free(e);
		free(d);
	}
}

static void test_malformed(void **state)
{
	static const char *const bad[] = { "Z", "Zg=", "Zg", "Z===", "====", "Zm9v!", "Zm 9v", "Zm9\n",
					   "Zh==", "Zm9=", "Zg==Zg==", "=Zg=", "Zm=v" };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *d = NULL;
		size_t n = 0;

		if (base64_decode(bad[i], strlen(bad[i]), &d, &n) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
