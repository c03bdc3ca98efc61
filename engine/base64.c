/* base64.c - see include/traind/base64.h. */
#include "traind/base64.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A NUL-terminated encoding of in[0, n); NULL on ENOMEM. */
char *base64_encode(const uint8_t *in, size_t n)
{
	size_t olen = (n + 2) / 3 * 4;
	char *out = malloc(olen + 1);
	char *o = out;
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		*o++ = alphabet[v >> 18];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = alphabet[(v >> 6) & 63];
		*o++ = alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		*o++ = alphabet[v >> 18];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		*o++ = alphabet[v >> 18];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = alphabet[(v >> 6) & 63];
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

static int value_of(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict decode: length a multiple of 4, only alphabet characters, '=' only
 * as the final one or two, and the bits padding leaves over zero (so each
 * byte string has exactly one accepted encoding). -EINVAL or -ENOMEM. */
int base64_decode(const char *in, size_t n, uint8_t **out, size_t *outlen)
{
	size_t pad = 0, olen, i, o = 0;
	uint8_t *buf;

	if (n % 4)
		return -EINVAL;
	if (n >= 1 && in[n - 1] == '=')
		pad = n >= 2 && in[n - 2] == '=' ? 2 : 1;
	olen = n / 4 * 3 - pad;
	buf = malloc(olen ? olen : 1);
	if (!buf)
		return -ENOMEM;
	for (i = 0; i < n; i += 4) {
		bool last = i + 4 == n;
		int v[4];

		for (int k = 0; k < 4; k++) {
			if (last && k >= 4 - (int)pad) {
				v[k] = 0;
				continue;
			}
			v[k] = value_of(in[i + (size_t)k]);
			if (v[k] < 0)
				goto bad;
		}
		if (last && pad == 2 && (v[1] & 0x0f))
			goto bad;
		if (last && pad == 1 && (v[2] & 0x03))
			goto bad;
		{
			uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
				     (uint32_t)v[3];

			buf[o++] = (uint8_t)(w >> 16);
			if (!last || pad < 2)
				buf[o++] = (uint8_t)(w >> 8);
			if (!last || pad < 1)
				buf[o++] = (uint8_t)w;
		}
	}
	*out = buf;
	*outlen = olen;
	return 0;
bad:
	free(buf);
	return -EINVAL;
}
