/*
 * pages.c - the static files, loaded once (see pages.h), and gzip.
 */
#include "pages.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static struct page pages[] = {
	{ "index.html", "text/html; charset=utf-8", NULL, 0, NULL, 0 },
	{ "job.html", "text/html; charset=utf-8", NULL, 0, NULL, 0 },
	{ "compare.html", "text/html; charset=utf-8", NULL, 0, NULL, 0 },
	{ "sweep.html", "text/html; charset=utf-8", NULL, 0, NULL, 0 },
	{ "app.js", "text/javascript; charset=utf-8", NULL, 0, NULL, 0 },
	{ "style.css", "text/css; charset=utf-8", NULL, 0, NULL, 0 },
	{ "uPlot.iife.min.js", "text/javascript; charset=utf-8", NULL, 0, NULL, 0 },
	{ "uPlot.min.css", "text/css; charset=utf-8", NULL, 0, NULL, 0 },
	{ "favicon.svg", "image/svg+xml", NULL, 0, NULL, 0 },
};

#define NPAGES (sizeof(pages) / sizeof(pages[0]))
#define PAGE_MAX (4u << 20)

int web_gzip(const char *data, size_t len, char **out, size_t *out_len)
{
	z_stream z = { 0 };
	uLong cap = compressBound((uLong)len) + 64;
	char *buf = malloc(cap);
	int rc;

	*out = NULL;
	if (!buf)
		return -ENOMEM;
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(buf);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)data;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)buf;
	z.avail_out = (uInt)cap;
	rc = deflate(&z, Z_FINISH);
	*out_len = z.total_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(buf);
		return -ENOMEM;
	}
	*out = buf;
	return 0;
}

static int load_one(const char *dir, struct page *p, struct tr_err *err)
{
	char path[4096];
	FILE *f;
	long size;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, p->name);
	f = fopen(path, "rb");
	if (!f)
		return tr_err_set(err, -errno, "cannot open %s: %s (is --static-dir right?)", path,
				  strerror(errno));
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		rc = tr_err_set(err, -EIO, "cannot read %s", path);
		goto out;
	}
	if ((size_t)size > PAGE_MAX) {
		rc = tr_err_set(err, -EFBIG, "%s is larger than %u bytes", path, PAGE_MAX);
		goto out;
	}
	p->data = malloc((size_t)size + 1);
	if (!p->data) {
		rc = tr_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if (fread(p->data, 1, (size_t)size, f) != (size_t)size) {
		rc = tr_err_set(err, -EIO, "cannot read %s", path);
		goto out;
	}
	p->len = (size_t)size;
	if (p->len >= 512 && web_gzip(p->data, p->len, &p->gz, &p->gz_len) == 0 && p->gz_len >= p->len) {
		free(p->gz);
		p->gz = NULL;
	}
out:
	fclose(f);
	return rc;
}

int pages_load(const char *dir, struct tr_err *err)
{
	for (size_t i = 0; i < NPAGES; i++) {
		int rc = load_one(dir, &pages[i], err);

		if (rc < 0) {
			pages_free();
			return rc;
		}
	}
	return 0;
}

void pages_free(void)
{
	for (size_t i = 0; i < NPAGES; i++) {
		free(pages[i].data);
		free(pages[i].gz);
		pages[i].data = pages[i].gz = NULL;
		pages[i].len = pages[i].gz_len = 0;
	}
}

const struct page *pages_find(const char *name)
{
	for (size_t i = 0; i < NPAGES; i++)
		if (strcmp(pages[i].name, name) == 0 && pages[i].data)
			return &pages[i];
	return NULL;
}
