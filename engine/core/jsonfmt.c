/*
 * jsonfmt.c - JSON text with the shortest exact reals. See
 * include/traind/jsonfmt.h.
 *
 * DESIGN. jansson has no shortest-round-trip mode (JSON_REAL_PRECISION(n)
 * applies one precision to every real), so the text jansson writes with 17
 * digits, which is exact, is rewritten: a scan that skips strings (with
 * their escapes) finds each number token, and a token with '.', 'e' or 'E'
 * (a real: jansson writes every real with one of them) is written again
 * with the fewest of its own digits, rounded either way, that give back
 * the same double (a binary search, each step one or two strtod). Everything else is copied
 * byte for byte, so keys, order, indentation and escapes are jansson's own.
 * It runs on traind's loop (every reply), so it must stay cheap: a computed
 * value that needs all 17 digits costs one strtod after the first failed
 * rounding, no printf.
 */
#include "traind/jsonfmt.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A decimal number as significant digits and the exponent of the first:
 * d[0].d[1]...d[n-1] x 10^e, d[0] != '0'. */
struct decimal {
	char d[40];
	int n, e;
	bool neg;
};

/* The digits of number text (jansson's "%.17g" form of a real, or any
 * JSON number); false for zero or text that is not a plain number. */
static bool parse_decimal(const char *t, size_t len, struct decimal *out)
{
	int point = -1, seen = 0, lead = 0;
	size_t i = 0;

	out->n = 0;
	out->neg = len && t[0] == '-';
	if (out->neg)
		i++;
	for (; i < len && t[i] != 'e' && t[i] != 'E'; i++) {
		if (t[i] == '.') {
			point = seen;
			continue;
		}
		if (t[i] < '0' || t[i] > '9')
			return false;
		seen++;
		if (out->n == 0 && t[i] == '0') {
			lead++;
			continue;
		}
		if (out->n >= (int)sizeof(out->d) - 1)
			return false;
		out->d[out->n++] = t[i];
	}
	while (out->n && out->d[out->n - 1] == '0')
		out->n--;
	if (out->n == 0)
		return false;
	if (point < 0)
		point = seen;
	/* the first significant digit is at position `lead` of the digits */
	out->e = point - lead - 1 + (i < len ? atoi(t + i + 1) : 0);
	return true;
}

static double decimal_value(const struct decimal *x);

/* x cut to p significant digits into r: rounded to the nearest (half up),
 * or with `other`, the other way (the neighbour on the other side). */
static void round_decimal(const struct decimal *x, int p, bool other, struct decimal *r)
{
	bool up;

	*r = *x;
	if (p >= x->n)
		return;
	r->n = p;
	up = (x->d[p] >= '5') != other;
	if (up) {
		int k = p - 1;

		while (k >= 0 && r->d[k] == '9')
			r->d[k--] = '0';
		if (k >= 0) {
			r->d[k]++;
		} else {
			r->d[0] = '1';   /* 999 -> 1000: one digit, the exponent up */
			r->n = 1;
			r->e++;
		}
	}
	while (r->n > 1 && r->d[r->n - 1] == '0')
		r->n--;
}

/* A p-digit cut of x that reads back as v (the nearest first), into r. */
static bool cut_reads_back(const struct decimal *x, int p, double v, struct decimal *r)
{
	round_decimal(x, p, false, r);
	if (decimal_value(r) == v)
		return true;
	round_decimal(x, p, true, r);
	return decimal_value(r) == v;
}

/* As Python's repr writes a float: positional from 1e-4 to 1e16, else an
 * exponent; a real always has a '.' or an exponent. */
static void format_decimal(const struct decimal *x, char *out, size_t n)
{
	size_t o = 0;

#define PUT(c) do { if (o + 1 < n) out[o++] = (c); } while (0)
	if (x->neg)
		PUT('-');
	if (x->e >= -4 && x->e < 16) {
		if (x->e < 0) {
			PUT('0');
			PUT('.');
			for (int k = 0; k < -x->e - 1; k++)
				PUT('0');
			for (int k = 0; k < x->n; k++)
				PUT(x->d[k]);
		} else {
			for (int k = 0; k <= x->e; k++)
				PUT(k < x->n ? x->d[k] : '0');
			PUT('.');
			if (x->n > x->e + 1)
				for (int k = x->e + 1; k < x->n; k++)
					PUT(x->d[k]);
			else
				PUT('0');
		}
		out[o] = '\0';
	} else {
		PUT(x->d[0]);
		if (x->n > 1) {
			PUT('.');
			for (int k = 1; k < x->n; k++)
				PUT(x->d[k]);
		}
		out[o] = '\0';
		snprintf(out + o, n > o ? n - o : 0, "e%d", x->e);
	}
#undef PUT
}

/* What strtod reads x as (its text built by hand: this runs for every
 * real of every reply). */
static double decimal_value(const struct decimal *x)
{
	char buf[64], *p = buf;
	int e = x->e;

	if (x->neg)
		*p++ = '-';
	*p++ = x->d[0];
	*p++ = '.';
	memcpy(p, x->d + 1, (size_t)x->n - 1);
	p += x->n - 1;
	*p++ = 'e';
	if (e < 0) {
		*p++ = '-';
		e = -e;
	}
	if (e >= 100)
		*p++ = (char)('0' + e / 100);
	if (e >= 10)
		*p++ = (char)('0' + e / 10 % 10);
	*p++ = (char)('0' + e % 10);
	*p = '\0';
	return strtod(buf, NULL);
}

/* The shortest form of the real v whose exact text (17 digits or fewer) is
 * t[0, len): the fewest significant digits that read back as v, found by
 * a binary search over the cuts of t's own digits, each checked with
 * strtod; no printf for the digits. */
static void shortest(double v, const char *t, size_t len, char *out, size_t n)
{
	struct decimal x, r, best;
	int lo = 1, hi;

	if (!isfinite(v) || v == 0 || !parse_decimal(t, len, &x)) {
		snprintf(out, n, "%s", v == 0 ? (signbit(v) ? "-0.0" : "0.0") : "");
		return;
	}
	/* Some p-digit cut reads back as v for every p from the fewest up
	 * (the two cuts around v bracket it ever more closely), so the fewest
	 * is found by halving. */
	best = x;
	hi = x.n;
	/* a computed value mostly needs every digit: one step says so */
	if (hi > 1 && !cut_reads_back(&x, hi - 1, v, &r)) {
		format_decimal(&best, out, n);
		return;
	}
	while (lo < hi) {
		int mid = (lo + hi) / 2;

		if (cut_reads_back(&x, mid, v, &r)) {
			best = r;
			hi = mid;
		} else {
			lo = mid + 1;
		}
	}
	format_decimal(&best, out, n);
}

void jsonfmt_real(double v, char *out, size_t n)
{
	char exact[40];

	snprintf(exact, sizeof(exact), "%.17g", v);
	shortest(v, exact, strlen(exact), out, n);
}

void jsonfmt_shorten_inplace(char *s)
{
	bool in_string = false;
	char *o = s;

	/* Each real is written back no longer than it was (a longer form
	 * keeps the original), so the output never overtakes the input. */
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
			char num[48];

			num[0] = '\0';
			if (t < 40 && strcspn(p, ".eE") < t) {
				char tok[48];

				memcpy(tok, p, t);
				tok[t] = '\0';
				shortest(strtod(tok, NULL), tok, t, num, sizeof(num));
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
