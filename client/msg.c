/*
 * msg.c - trainctl's one error line (see msg.h).
 */
#include <stdarg.h>
#include <stdio.h>

#include "msg.h"

void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

int failf(int rc, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	one_line(buf);
	fflush(stdout);
	fprintf(stderr, "trainctl: %s\n", buf);
	return rc;
}

int malformed(const char *method, const char *field)
{
	return failf(RC_ERROR, "malformed reply from traind: %s reply without a valid \"%s\"", method, field);
}
