/* error.c - see include/traind/error.h. */
#include "traind/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int tr_err_set(struct tr_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

int tr_err_prefix(struct tr_err *err, const char *fmt, ...)
{
	char prefix[TR_ERR_MSG_MAX];
	char old[TR_ERR_MSG_MAX];
	va_list ap;

	if (!err)
		return -EIO;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Keep as much of both as fits; truncation of a long message is fine. */
	{
		size_t n = strnlen(prefix, sizeof(err->msg) - 3);

		memcpy(err->msg, prefix, n);
		memcpy(err->msg + n, ": ", 2);
		size_t room = sizeof(err->msg) - n - 3;
		size_t m = strnlen(old, room);

		memcpy(err->msg + n + 2, old, m);
		err->msg[n + 2 + m] = '\0';
	}
	return err->code ? err->code : -EIO;
}

void tr_err_clear(struct tr_err *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}
