/*
 * resp.h - one HTTP response as the handlers build it (api.c, metrics.c,
 * pages.c) and http.c sends it: a status, a type, a body and the few extra
 * headers traind-web ever sets.
 *
 * Thread: a response belongs to the connection thread that builds it.
 */
#ifndef TRAIND_WEB_RESP_H
#define TRAIND_WEB_RESP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct web_resp {
	int status;
	const char *type;          /* Content-Type (static string) */
	char *body;                /* owned (malloc) unless `borrowed` */
	size_t len;
	bool borrowed;             /* body is static data (pages.c), not freed */
	const char *gz_body;       /* borrowed: the body already gzipped (pages.c) */
	size_t gz_len;
	bool cache;                /* may be cached (static files); else no-store */
	char disposition[160];     /* Content-Disposition, "" for none */
	char location[600];        /* Location (redirects), "" for none */
	char digest[80];           /* X-Checksum-Sha256 (exports), "" for none */
	bool set_cookie;           /* Set-Cookie: the token (after ?token=) */
};

/* Free the body if owned and reset to zero. */
void web_resp_clear(struct web_resp *r);

/* A JSON body (`v` stolen); status 200 unless given. 500 if it cannot be
 * encoded. */
void web_resp_json(struct web_resp *r, int status, json_t *v);

/* {"error": NAME, "message": MESSAGE} with status. */
void web_resp_error(struct web_resp *r, int status, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
