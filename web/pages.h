/*
 * pages.h - the static files traind-web serves (the pages, their script and
 * style, uPlot): a fixed list, read whole from the static directory at
 * start-up and kept in memory with a gzipped copy, so a request never
 * touches the file system and no path from a request is ever opened.
 *
 * Thread: pages_load/pages_free at start-up and exit; pages_find from any
 * connection thread (the table is read-only once loaded).
 */
#ifndef TRAIND_WEB_PAGES_H
#define TRAIND_WEB_PAGES_H

#include <stdbool.h>
#include <stddef.h>

#include "traind/error.h"

struct page {
	const char *name;          /* "app.js" */
	const char *type;          /* Content-Type */
	char *data;                /* the file */
	size_t len;
	char *gz;                  /* gzipped, or NULL where it would not help */
	size_t gz_len;
};

/* Read every file of the list from `dir`; a missing one is an error naming
 * it. */
int pages_load(const char *dir, struct tr_err *err);

void pages_free(void);

/* The file called `name`, or NULL. */
const struct page *pages_find(const char *name);

/* gzip `len` bytes at `data` into a new buffer: 0, or -ENOMEM. */
int web_gzip(const char *data, size_t len, char **out, size_t *out_len);

#endif
