/*
 * test-sha256.c - SHA-256 against the FIPS 180-2/NIST example vectors, plus
 * checks that how the input is split across sha256_update calls never changes
 * the digest (the block-buffer logic is where implementations go wrong),
 * that a failed or discarded context behaves as sha256.h says, and
 * that every message length around the padding boundaries (55/56/64 bytes
 * mod 64) hashes right.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "traind/sha256.h"

static void digest_of(const void *data, size_t len, uint8_t out[SHA256_DIGEST_LEN])
{
	struct sha256_ctx ctx;

	assert_int_equal(sha256_init(&ctx), 0);
	sha256_update(&ctx, data, len);
	assert_int_equal(sha256_final(&ctx, out), 0);
}

static void assert_hex(const char *msg, size_t len, const char *expect)
{
	char hex[SHA256_HEX_LEN + 1];

	assert_int_equal(sha256_hex(msg, len, hex), 0);
	assert_string_equal(hex, expect);
}

static void test_empty(void **state)
{
	(void)state;
	assert_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	/* A NULL pointer with length 0 is a valid empty message. */
	assert_hex(NULL, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_abc(void **state)
{
	(void)state;
	assert_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_448_bits(void **state)
{
	static const char msg[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

	(void)state;
	assert_int_equal(strlen(msg) * 8, 448);
	assert_hex(msg, strlen(msg), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_896_bits(void **state)
{
	static const char msg[] = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
				  "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";

	(void)state;
	assert_int_equal(strlen(msg) * 8, 896);
	assert_hex(msg, strlen(msg), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_million_a(void **state)
{
	static const char expect[] = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
	char chunk[1000];
	char hex[SHA256_HEX_LEN + 1];
	uint8_t digest[SHA256_DIGEST_LEN];
	struct sha256_ctx ctx;
	char *all;

	(void)state;
	/* One shot. */
	all = malloc(1000000);
	assert_non_null(all);
	memset(all, 'a', 1000000);
	assert_int_equal(sha256_hex(all, 1000000, hex), 0);
	assert_string_equal(hex, expect);
	free(all);

	/* As the standard's test describes it: 1000 updates of 1000 bytes. */
	memset(chunk, 'a', sizeof(chunk));
	assert_int_equal(sha256_init(&ctx), 0);
	for (int i = 0; i < 1000; i++)
		sha256_update(&ctx, chunk, sizeof(chunk));
	assert_int_equal(sha256_final(&ctx, digest), 0);
	sha256_to_hex(digest, hex);
	assert_string_equal(hex, expect);
}

/* A fixed, non-repeating byte pattern. */
static void fill_pattern(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + 3);
}

/*
 * Every prefix length 0..299 of a pattern: hash each, then hash the 300
 * concatenated digests. The expected value was computed with Python's
 * hashlib (OpenSSL). This covers all padding cases: 55 bytes (length fits
 * the last block), 56..63 (needs an extra block), 64 (empty last block), ...
 */
static void test_all_lengths(void **state)
{
	uint8_t msg[300];
	uint8_t digest[SHA256_DIGEST_LEN];
	char hex[SHA256_HEX_LEN + 1];
	struct sha256_ctx outer;

	(void)state;
	fill_pattern(msg, sizeof(msg));
	assert_int_equal(sha256_init(&outer), 0);
	for (size_t n = 0; n < sizeof(msg); n++) {
		digest_of(msg, n, digest);
		sha256_update(&outer, digest, sizeof(digest));
	}
	assert_int_equal(sha256_final(&outer, digest), 0);
	sha256_to_hex(digest, hex);
	assert_string_equal(hex, "7b074096cabb18dd0d1b468a173cb2f97f80e952525bca29542e606fd6d0753a");
}

/* Three updates split at every pair of points i <= j equal one shot. */
static void test_split_points(void **state)
{
	uint8_t msg[200];
	uint8_t one_shot[SHA256_DIGEST_LEN];
	uint8_t split[SHA256_DIGEST_LEN];
	struct sha256_ctx ctx;

	(void)state;
	fill_pattern(msg, sizeof(msg));
	digest_of(msg, sizeof(msg), one_shot);
	for (size_t i = 0; i <= sizeof(msg); i++) {
		for (size_t j = i; j <= sizeof(msg); j++) {
			assert_int_equal(sha256_init(&ctx), 0);
			sha256_update(&ctx, msg, i);
			sha256_update(&ctx, msg + i, j - i);
			sha256_update(&ctx, msg + j, sizeof(msg) - j);
			assert_int_equal(sha256_final(&ctx, split), 0);
			assert_memory_equal(split, one_shot, sizeof(one_shot));
		}
	}
}

/* Byte at a time, and chunk sizes from 1 to 130, over a message of 1000 bytes. */
static void test_chunk_sizes(void **state)
{
	uint8_t msg[1000];
	uint8_t one_shot[SHA256_DIGEST_LEN];
	uint8_t chunked[SHA256_DIGEST_LEN];
	struct sha256_ctx ctx;

	(void)state;
	fill_pattern(msg, sizeof(msg));
	digest_of(msg, sizeof(msg), one_shot);
	for (size_t chunk = 1; chunk <= 130; chunk++) {
		assert_int_equal(sha256_init(&ctx), 0);
		for (size_t off = 0; off < sizeof(msg); off += chunk) {
			size_t n = sizeof(msg) - off < chunk ? sizeof(msg) - off : chunk;

			sha256_update(&ctx, msg + off, n);
		}
		assert_int_equal(sha256_final(&ctx, chunked), 0);
		assert_memory_equal(chunked, one_shot, sizeof(one_shot));
	}
}

/* A context can be reused after sha256_init, and the input is not modified. */
static void test_reinit(void **state)
{
	uint8_t digest[SHA256_DIGEST_LEN];
	char hex[SHA256_HEX_LEN + 1];
	struct sha256_ctx ctx;

	(void)state;
	assert_int_equal(sha256_init(&ctx), 0);
	sha256_update(&ctx, "something else entirely", 23);
	assert_int_equal(sha256_final(&ctx, digest), 0);
	assert_int_equal(sha256_init(&ctx), 0);
	sha256_update(&ctx, "abc", 3);
	assert_int_equal(sha256_final(&ctx, digest), 0);
	sha256_to_hex(digest, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* A discarded context (final with NULL) frees it; a context whose init
 * failed (md NULL, as after an allocation failure) ignores updates and its
 * final reports the failure with a zeroed digest, never a wrong one. */
static void test_discard_and_failed(void **state)
{
	static const uint8_t zero[SHA256_DIGEST_LEN];
	uint8_t digest[SHA256_DIGEST_LEN];
	struct sha256_ctx ctx;

	(void)state;
	assert_int_equal(sha256_init(&ctx), 0);
	sha256_update(&ctx, "abc", 3);
	assert_int_equal(sha256_final(&ctx, NULL), 0);
	assert_null(ctx.md);
	sha256_update(&ctx, "abc", 3);
	memset(digest, 0xaa, sizeof(digest));
	assert_int_equal(sha256_final(&ctx, digest), -ENOMEM);
	assert_memory_equal(digest, zero, sizeof(zero));
}

static void test_to_hex(void **state)
{
	uint8_t digest[SHA256_DIGEST_LEN];
	char hex[SHA256_HEX_LEN + 1];

	(void)state;
	for (int i = 0; i < SHA256_DIGEST_LEN; i++)
		digest[i] = (uint8_t)(i * 8 + 1);
	memset(hex, 'x', sizeof(hex));
	sha256_to_hex(digest, hex);
	assert_int_equal(strlen(hex), SHA256_HEX_LEN);
	assert_string_equal(hex, "0109111921293139414951596169717981899199a1a9b1b9c1c9d1d9e1e9f1f9");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_abc),
		cmocka_unit_test(test_448_bits),
		cmocka_unit_test(test_896_bits),
		cmocka_unit_test(test_million_a),
		cmocka_unit_test(test_all_lengths),
		cmocka_unit_test(test_split_points),
		cmocka_unit_test(test_chunk_sizes),
		cmocka_unit_test(test_reinit),
		cmocka_unit_test(test_discard_and_failed),
		cmocka_unit_test(test_to_hex),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
