/*
 * test-error.c - the error type: tr_utf8_cut never splits a UTF-8 character
 * (a multi-byte one at the cut is left out whole), the messages tr_err_set
 * and tr_err_prefix truncate stay valid UTF-8, and an error names its key
 * as data.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "traind/error.h"

/* Strict UTF-8 (no overlong forms, no surrogates, at most U+10FFFF). */
static bool valid_utf8(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;

	while (*u) {
		size_t n;
		uint32_t cp, min;

		if (u[0] < 0x80) {
			u++;
			continue;
		}
		if ((u[0] & 0xe0) == 0xc0)
			n = 2, cp = u[0] & 0x1f, min = 0x80;
		else if ((u[0] & 0xf0) == 0xe0)
			n = 3, cp = u[0] & 0x0f, min = 0x800;
		else if ((u[0] & 0xf8) == 0xf0)
			n = 4, cp = u[0] & 0x07, min = 0x10000;
		else
			return false;
		for (size_t i = 1; i < n; i++) {
			if ((u[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (u[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		u += n;
	}
	return true;
}

static void test_cut_ascii(void **state)
{
	(void)state;
	assert_int_equal(tr_utf8_cut("", 64), 0);
	assert_int_equal(tr_utf8_cut("abc", 64), 3);
	assert_int_equal(tr_utf8_cut("abcdef", 4), 4);
	assert_int_equal(tr_utf8_cut("abcdef", 0), 0);
}

/* A 2-, 3- and 4-byte character across the cut: left out whole; ending at
 * the cut: kept. */
static void test_cut_multibyte_at_the_cut(void **state)
{
	static const char *const chars[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };
	char s[128];

	(void)state;
	for (size_t c = 0; c < 3; c++) {
		size_t len = strlen(chars[c]);

		for (size_t split = 1; split < len; split++) {
			/* 64 - split bytes of 'a', then the character across byte 64 */
			size_t pre = 64 - split;
			int n;

			memset(s, 'a', pre);
			snprintf(s + pre, sizeof(s) - pre, "%sz", chars[c]);
			n = tr_utf8_cut(s, 64);
			assert_int_equal(n, (int)pre);
			s[n] = '\0';
			assert_true(valid_utf8(s));
		}
		/* ending exactly at byte 64 */
		memset(s, 'a', 64 - len);
		snprintf(s + 64 - len, sizeof(s) - (64 - len), "%sz", chars[c]);
		assert_int_equal(tr_utf8_cut(s, 64), 64);
	}
	/* all multi-byte: 30 euro signs (90 bytes) cut to 64 keep 21 of them */
	s[0] = '\0';
	for (int i = 0; i < 30; i++)
		strcat(s, "\xe2\x82\xac");
	assert_int_equal(tr_utf8_cut(s, 64), 63);
}

/* What is not UTF-8 counts one byte at a time, so nothing is lost or read
 * past the end. */
static void test_cut_invalid_bytes(void **state)
{
	(void)state;
	assert_int_equal(tr_utf8_cut("\xff\xfe\xfd", 2), 2);
	assert_int_equal(tr_utf8_cut("ab\xc3", 64), 3);        /* lead byte at the end */
	assert_int_equal(tr_utf8_cut("\xc0\xaf", 64), 2);      /* overlong: two single bytes */
	assert_int_equal(tr_utf8_cut("\xed\xa0\x80", 2), 2);   /* a surrogate */
}

/* A message that overflows TR_ERR_MSG_MAX is cut at a character boundary. */
static void test_long_messages_stay_utf8(void **state)
{
	struct tr_err err;
	char text[2 * TR_ERR_MSG_MAX];

	(void)state;
	for (size_t shift = 0; shift < 4; shift++) {
		memset(text, 'x', shift);
		text[shift] = '\0';
		while (strlen(text) + 4 < sizeof(text))
			strcat(text, "\xf0\x9f\x98\x80");
		tr_err_set(&err, -EINVAL, "%s", text);
		assert_true(valid_utf8(err.msg));
		assert_true(strlen(err.msg) >= TR_ERR_MSG_MAX - 4);
		tr_err_set(&err, -EINVAL, "short");
		tr_err_prefix(&err, "%s", text);
		assert_true(valid_utf8(err.msg));
		tr_err_set(&err, -EINVAL, "%s", text);
		tr_err_prefix(&err, "%.*s", (int)shift + 1, "pppp");
		assert_true(valid_utf8(err.msg));
		assert_int_equal(strncmp(err.msg, "pppp", shift + 1), 0);
	}
}

static void test_key(void **state)
{
	struct tr_err err;
	char key[100];

	(void)state;
	assert_int_equal(tr_err_set_key(&err, -EINVAL, "epochs", "%d is out of range", 0), -EINVAL);
	assert_string_equal(err.msg, "epochs: 0 is out of range");
	assert_string_equal(err.key, "epochs");
	tr_err_set(&err, -EIO, "no key");
	assert_string_equal(err.key, "");
	assert_int_equal(tr_err_key(&err, "lr"), -EIO);
	assert_string_equal(err.key, "lr");
	assert_string_equal(err.msg, "no key");
	tr_err_prefix(&err, "job 3");
	assert_string_equal(err.key, "lr");
	/* a long key with a 2-byte character across the key's room */
	memset(key, 'k', TR_ERR_KEY_MAX - 2);
	snprintf(key + TR_ERR_KEY_MAX - 2, sizeof(key) - (TR_ERR_KEY_MAX - 2), "\xc3\xa9");
	tr_err_key(&err, key);
	assert_int_equal(strlen(err.key), TR_ERR_KEY_MAX - 2);
	assert_true(valid_utf8(err.key));
	tr_err_clear(&err);
	assert_int_equal(err.code, 0);
	assert_string_equal(err.key, "");
	assert_int_equal(tr_err_key(NULL, "x"), -EIO);
	assert_int_equal(tr_err_set_key(NULL, -EINVAL, "x", "y"), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cut_ascii),
		cmocka_unit_test(test_cut_multibyte_at_the_cut),
		cmocka_unit_test(test_cut_invalid_bytes),
		cmocka_unit_test(test_long_messages_stay_utf8),
		cmocka_unit_test(test_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
