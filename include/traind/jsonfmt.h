/*
 * jsonfmt.h - JSON text with reals as a person writes them.
 *
 * jansson prints a real with 17 significant digits ("%.17g"), which reads
 * back exactly but shows 0.9 as 0.90000000000000002 and 3e-4 as
 * 0.00030000000000000003. These functions print a JSON value as jansson
 * does (same flags, same key order, same escapes) except that every real
 * is the shortest decimal that reads back as the same double (0.9, 0.0003),
 * still written as a real (1.0, not 1; 1e-5 as jansson writes exponents).
 * Nothing is lost: a reader gets the identical double.
 *
 * The one helper for every program that prints JSON to people or over the
 * wire: traind's replies (daemon/proto/server.c), trainctl --json
 * (client/render.c), traind-web's API (web/api.c).
 *
 * Thread: pure functions; any thread.
 */
#ifndef TRAIND_JSONFMT_H
#define TRAIND_JSONFMT_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/* The shortest text of `v` that strtod reads back as exactly `v`, as
 * Python's repr writes a float (positional from 1e-4 to 1e16, else with an
 * exponent) in jansson's notation for reals: "0.9", "10.0", "0.0003",
 * "1e-5", "1e16", "1.5e300". `v` must be finite. n >= 32 suffices. */
void jsonfmt_real(double v, char *out, size_t n);

/* As json_dumps(v, flags) (JSON_REAL_PRECISION in flags is ignored), with
 * every real written by jsonfmt_real. Caller frees; NULL as json_dumps. */
char *jsonfmt_dumps(const json_t *v, size_t flags);

/* As json_dumpf: 0, or -1 when out of memory, v cannot be encoded, or the
 * write fails. */
int jsonfmt_dumpf(const json_t *v, FILE *f, size_t flags);

/* Rewrite, in place, the reals of JSON text `s` as jansson wrote it (valid
 * JSON, reals with 17 digits) with jsonfmt_real; integers, strings and
 * layout untouched. The text only gets shorter. */
void jsonfmt_shorten_inplace(char *s);

#endif
