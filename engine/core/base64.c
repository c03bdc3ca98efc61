/*
 * base64.c - see include/traind/base64.h.
 *
 * The conversion itself is OpenSSL libcrypto's (EVP_EncodeBlock and
 * EVP_DecodeBlock: 1.3-2.5x and ~15x the portable C this replaced, measured
 * by bench/bench-hash). EVP_DecodeBlock alone is not strict: it skips
 * leading and trailing whitespace and does not check the bits padding leaves
 * over. So decoding first checks the text itself, with a table, exactly as
 * before (tests/unit/test-base64.c), and only hands libcrypto text it has
 * accepted. Both take an int length: longer inputs go in chunks of a whole
 * number of groups (3 bytes / 4 characters).
 */
#include "traind/base64.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include <openssl/evp.h>

/* A multiple of both 3 and 4 below INT_MAX. */
#define CHUNK ((size_t)3 << 28)

/* value + 1 of each alphabet character, 0 for anything else. */
static const uint8_t value1[256] = {
	['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
	['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
	['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
	['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
	['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
	['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
	['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
	['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
	['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
	['/'] = 64,
};

/* A NUL-terminated encoding of in[0, n); NULL on ENOMEM. */
char *base64_encode(const uint8_t *in, size_t n)
{
	size_t olen = (n + 2) / 3 * 4;
	char *out = malloc(olen + 1);
	size_t i = 0, o = 0;

	if (!out)
		return NULL;
	do {
		size_t k = n - i < CHUNK ? n - i : CHUNK;

		o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, in + i, (int)k);
		i += k;
	} while (i < n);
	out[o] = '\0';   /* EVP_EncodeBlock terminates too; n == 0 writes nothing */
	return out;
}

/* Strict: length a multiple of 4, only alphabet characters, '=' only as the
 * final one or two, and the bits padding leaves over zero (so each byte
 * string has exactly one accepted encoding). */
static bool well_formed(const char *in, size_t n, size_t *pad)
{
	const unsigned char *s = (const unsigned char *)in;
	unsigned bad = 0;
	size_t body;

	*pad = 0;
	if (n % 4)
		return false;
	if (n >= 1 && in[n - 1] == '=')
		*pad = n >= 2 && in[n - 2] == '=' ? 2 : 1;
	body = n - *pad;
	for (size_t i = 0; i < body; i++)
		bad |= value1[s[i]] == 0;
	if (bad)
		return false;
	if (*pad == 2 && ((value1[s[n - 3]] - 1) & 0x0f))
		return false;
	if (*pad == 1 && ((value1[s[n - 2]] - 1) & 0x03))
		return false;
	return true;
}

/* -EINVAL if malformed, -ENOMEM. */
int base64_decode(const char *in, size_t n, uint8_t **out, size_t *outlen)
{
	size_t pad, i = 0, o = 0;
	uint8_t *buf;

	if (!well_formed(in, n, &pad))
		return -EINVAL;
	/* EVP_DecodeBlock writes the padding's zero bytes too: room for them. */
	buf = malloc(n ? n / 4 * 3 : 1);
	if (!buf)
		return -ENOMEM;
	while (i < n) {
		size_t k = n - i < CHUNK ? n - i : CHUNK;
		int got = EVP_DecodeBlock(buf + o, (const unsigned char *)in + i, (int)k);

		if (got < 0) {   /* cannot happen for text well_formed accepted */
			free(buf);
			return -EINVAL;
		}
		o += (size_t)got;
		i += k;
	}
	*out = buf;
	*outlen = n / 4 * 3 - pad;
	return 0;
}
