/* base64.c - see include/traind/base64.h. */
#include "traind/base64.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const uint8_t *data, size_t len)
{
	size_t n = (len + 2) / 3 * 4;
	char *out = malloc(n + 1), *p = out;
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];

		*p++ = alphabet[v >> 18];
		*p++ = alphabet[(v >> 12) & 63];
		*p++ = alphabet[(v >> 6) & 63];
		*p++ = alphabet[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0);

		*p++ = alphabet[v >> 18];
		*p++ = alphabet[(v >> 12) & 63];
		*p++ = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
		*p++ = '=';
	}
	*p = '\0';
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

int base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len)
{
	size_t pad = 0, n;
	uint8_t *buf, *p;

	if (len % 4)
		return -EINVAL;
	if (len && text[len - 1] == '=')
		pad++;
	if (len > 1 && text[len - 2] == '=')
		pad++;
	n = len / 4 * 3 - pad;
	buf = malloc(n ? n : 1);
	if (!buf)
		return -ENOMEM;
	p = buf;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		bool last = i + 4 == len;

		for (int k = 0; k < 4; k++) {
			v[k] = value_of(text[i + k]);
			if (v[k] < 0 && !(last && text[i + k] == '=' && k >= 4 - (int)pad)) {
				free(buf);
				return -EINVAL;
			}
		}
		*p++ = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (!(last && pad == 2))
			*p++ = (uint8_t)((v[1] & 15) << 4 | v[2] >> 2);
		if (!(last && pad >= 1))
			*p++ = (uint8_t)((v[2] & 3) << 6 | v[3]);
		/* non-canonical trailing bits are malformed */
		if (last && ((pad == 2 && (v[1] & 15)) || (pad == 1 && (v[2] & 3)))) {
			free(buf);
			return -EINVAL;
		}
	}
	*out = buf;
	*out_len = n;
	return 0;
}
