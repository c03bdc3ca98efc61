/*
 * jsonfmt.c - JSON text with the shortest exact reals. See
 * include/traind/jsonfmt.h.
 *
 * DESIGN. jansson has no shortest-round-trip mode (JSON_REAL_PRECISION(n)
 * applies one precision to every real), so the text jansson writes with 17
 * digits, which is exact, is rewritten: a scan that skips strings (with
 * their escapes) finds each number token, and a token with '.', 'e' or 'E'
 * (a real: jansson writes every real with one of them) is parsed and written
 * again with the fewest digits that give back the same double. Everything
 * else is copied byte for byte, so keys, order, indentation and escapes are
 * jansson's own.
 */
#include "traind/jsonfmt.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The shortest digits: the fewest significant digits p for which "%.*e"
 * reads back as v. */
static int shortest_digits(double v)
{
	char buf[40];

	for (int p = 1; p < 17; p++) {
		snprintf(buf, sizeof(buf), "%.*e", p - 1, v);
		if (strtod(buf, NULL) == v)
			return p;
	}
	return 17;
}

/* "1e+16" -> "1e16", "1e-05" -> "1e-5" (jansson's form of an exponent). */
static void tidy_exponent(char *s)
{
	char *e = strpbrk(s, "eE"), *p, *digits;

	if (!e)
		return;
	p = e + 1;
	if (*p == '+')
		memmove(p, p + 1, strlen(p + 1) + 1);
	else if (*p == '-')
		p++;
	digits = p;
	while (*p == '0' && p[1])
		p++;
	if (p != digits)
		memmove(digits, p, strlen(p) + 1);
}

/* As Python's repr of a float, which people read every day: the shortest
 * digits, positional from 1e-4 up to 1e16 ("0.0003", "10.0", "123456.5"),
 * in exponent form outside ("1e-5", "1e16", "1.5e300"). */
void jsonfmt_real(double v, char *out, size_t n)
{
	int p = shortest_digits(v), x;
	char buf[40];

	snprintf(buf, sizeof(buf), "%.*e", p - 1, v);
	x = atoi(strpbrk(buf, "eE") + 1);   /* the decimal exponent of the leading digit */
	if (x >= -4 && x < 16) {
		int decimals = p - 1 - x;

		snprintf(out, n, "%.*f", decimals > 0 ? decimals : 0, v);
		if (!strchr(out, '.') && strlen(out) + 3 <= n)
			strcat(out, ".0");
	} else {
		snprintf(out, n, "%s", buf);
		tidy_exponent(out);
	}
}

void jsonfmt_shorten_inplace(char *s)
{
	bool in_string = false;
	char *o = s;

	/* Each real is written back no longer than it was (jansson's 17
	 * digits are never fewer than the shortest ones; a longer form keeps
	 * the original), so the output never overtakes the input. */
	for (const char *p = s; *p;) {
		if (in_string) {
			if (*p == '\\' && p[1])
				*o++ = *p++;
			else if (*p == '"')
				in_string = false;
			*o++ = *p++;
			continue;
		}
		if (*p == '"') {
			in_string = true;
			*o++ = *p++;
			continue;
		}
		if (*p == '-' || (*p >= '0' && *p <= '9')) {
			size_t t = strspn(p, "-+0123456789.eE");
			char tok[64], num[48];

			num[0] = '\0';
			if (t < sizeof(tok) && strcspn(p, ".eE") < t) {
				memcpy(tok, p, t);
				tok[t] = '\0';
				jsonfmt_real(strtod(tok, NULL), num, sizeof(num));
			}
			if (num[0] && strlen(num) <= t) {
				memmove(o, num, strlen(num));
				o += strlen(num);
			} else {
				memmove(o, p, t);
				o += t;
			}
			p += t;
			continue;
		}
		*o++ = *p++;
	}
	*o = '\0';
}

char *jsonfmt_dumps(const json_t *v, size_t flags)
{
	char *text = json_dumps(v, (flags & ~(size_t)JSON_REAL_PRECISION(31)) | JSON_REAL_PRECISION(17));

	if (text)
		jsonfmt_shorten_inplace(text);
	return text;
}

int jsonfmt_dumpf(const json_t *v, FILE *f, size_t flags)
{
	char *text = jsonfmt_dumps(v, flags);
	int rc = 0;

	if (!text)
		return -1;
	if (fputs(text, f) == EOF)
		rc = -1;
	free(text);
	return rc;
}
