/* error.c - see include/traind/error.h. */
#include "traind/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The length of the UTF-8 sequence starting at s (1 for ASCII and for any
 * byte that does not start a valid sequence: it then counts on its own). */
static size_t utf8_seq_len(const unsigned char *s)
{
	size_t n;
	unsigned min;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2, min = 0x80, cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3, min = 0x800, cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4, min = 0x10000, cp = s[0] & 0x07;
	} else {
		return 1;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)  /* also stops at the NUL */
			return 1;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 1;
	return n;
}

int tr_utf8_cut(const char *s, size_t max)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	if (max > (size_t)0x7fffffff)
		max = 0x7fffffff;
	while (u[i]) {
		size_t n = utf8_seq_len(u + i);

		if (i + n > max)
			break;
		i += n;
	}
	return (int)i;
}

/* After a truncating vsnprintf into buf: drop a character split at the
 * end (a lead byte whose sequence the cut left short). */
static void trim_cut(char *buf, int printed, size_t size)
{
	size_t len, i;
	unsigned char lead;
	size_t need;

	if (printed >= 0 && (size_t)printed < size)
		return;
	len = strlen(buf);
	for (i = len; i > 0 && len - i < 4; i--) {
		if (((unsigned char)buf[i - 1] & 0xc0) != 0x80)
			break;
	}
	if (i == 0)
		return;
	lead = (unsigned char)buf[i - 1];
	need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	if (need > 1 && len - (i - 1) < need)
		buf[i - 1] = '\0';
}

static int set_v(struct tr_err *err, int code, const char *key, const char *fmt, va_list ap)
{
	size_t off = 0;
	int n;

	err->code = code;
	err->key[0] = '\0';
	if (key) {
		off = (size_t)tr_utf8_cut(key, sizeof(err->msg) - 3);
		memcpy(err->msg, key, off);
		memcpy(err->msg + off, ": ", 2);
		off += 2;
		tr_err_key(err, key);
	}
	n = vsnprintf(err->msg + off, sizeof(err->msg) - off, fmt, ap);
	trim_cut(err->msg, n < 0 ? n : n + (int)off, sizeof(err->msg));
	return code;
}

int tr_err_set(struct tr_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	va_start(ap, fmt);
	set_v(err, code, NULL, fmt, ap);
	va_end(ap);
	return code;
}

int tr_err_set_key(struct tr_err *err, int code, const char *key, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	va_start(ap, fmt);
	set_v(err, code, key, fmt, ap);
	va_end(ap);
	return code;
}

int tr_err_key(struct tr_err *err, const char *key)
{
	int n;

	if (!err)
		return -EIO;
	n = tr_utf8_cut(key, sizeof(err->key) - 1);
	memcpy(err->key, key, (size_t)n);
	err->key[n] = '\0';
	return err->code ? err->code : -EIO;
}

int tr_err_prefix(struct tr_err *err, const char *fmt, ...)
{
	char prefix[TR_ERR_MSG_MAX];
	char old[TR_ERR_MSG_MAX];
	va_list ap;
	int n;

	if (!err)
		return -EIO;
	va_start(ap, fmt);
	n = vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	trim_cut(prefix, n, sizeof(prefix));
	memcpy(old, err->msg, sizeof(old));
	/* Keep as much of both as fits; truncation of a long message is fine,
	 * as long as it does not split a character. */
	{
		size_t p = (size_t)tr_utf8_cut(prefix, sizeof(err->msg) - 3);
		size_t m = (size_t)tr_utf8_cut(old, sizeof(err->msg) - p - 3);

		memcpy(err->msg, prefix, p);
		memcpy(err->msg + p, ": ", 2);
		memcpy(err->msg + p + 2, old, m);
		err->msg[p + 2 + m] = '\0';
	}
	return err->code ? err->code : -EIO;
}

void tr_err_clear(struct tr_err *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
	err->key[0] = '\0';
}
