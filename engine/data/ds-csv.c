/*
 * ds-csv.c - CSV datasets: train.csv and test.csv, one image a row, the
 * label first, then the pixels (Kaggle's MNIST CSV layout), with an optional
 * header row (recognised by a first field that is not a number). See
 * include/traind/dataset.h.
 *
 * The pixel count per row decides the shape: height x width x channels from
 * dataset.json when given (they must multiply to it), else one channel and a
 * square image. Several channels need "layout" in dataset.json (how a row's
 * values are ordered). Pixels are integers 0..255 (uint8), or any finite
 * number with "dtype": "float32". Every row must have the same number of
 * fields; an error names the file, the line and the field.
 */
#include "engine/data/ds.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CSV_FILE_MAX ((size_t)1 << 36)

struct field {
	const char *s;
	size_t n;
};

static void trim(struct field *f)
{
	while (f->n && (f->s[0] == ' ' || f->s[0] == '\t')) {
		f->s++;
		f->n--;
	}
	while (f->n && (f->s[f->n - 1] == ' ' || f->s[f->n - 1] == '\t'))
		f->n--;
}

/* A non-negative decimal integer below 2^32; false if not one. */
static bool field_uint(struct field f, uint64_t *out)
{
	uint64_t v = 0;

	trim(&f);
	if (f.n == 0 || f.n > 10)
		return false;
	for (size_t i = 0; i < f.n; i++) {
		if (f.s[i] < '0' || f.s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(f.s[i] - '0');
	}
	*out = v;
	return true;
}

static bool field_float(struct field f, float *out)
{
	char buf[64], *end;

	trim(&f);
	if (f.n == 0 || f.n >= sizeof(buf))
		return false;
	memcpy(buf, f.s, f.n);
	buf[f.n] = '\0';
	errno = 0;
	*out = strtof(buf, &end);
	return *end == '\0' && end != buf;
}

/* Count the fields of one line [s, s + n). */
static size_t count_fields(const char *s, size_t n)
{
	size_t k = 1;

	for (size_t i = 0; i < n; i++)
		k += s[i] == ',';
	return k;
}

static bool is_square(uint64_t p, uint32_t *side)
{
	uint64_t r = (uint64_t)sqrt((double)p);

	while (r * r > p)
		r--;
	while ((r + 1) * (r + 1) <= p)
		r++;
	*side = (uint32_t)r;
	return r * r == p;
}

/* Shape from the pixel count and dataset.json. */
static int decide_shape(uint64_t p, const struct ds_meta *m, const char *what, size_t line,
			struct ds_split *s, struct tr_err *err)
{
	uint32_t c = m->channels ? m->channels : 1, side;

	if (p == 0)
		return tr_err_set(err, -EINVAL, "%s: line %zu: a label and no pixels", what, line);
	if (m->height && m->width) {
		if ((uint64_t)c * m->height * m->width != p)
			return tr_err_set(err, -EINVAL,
					  "%s: line %zu: %llu pixels, but dataset.json says %ux%ux%u (CxHxW) = %llu",
					  what, line, (unsigned long long)p, c, m->height, m->width,
					  (unsigned long long)c * m->height * m->width);
		s->rows = m->height;
		s->cols = m->width;
	} else {
		if (p % c || !is_square(p / c, &side))
			return tr_err_set(err, -EINVAL,
					  "%s: line %zu: %llu pixels do not make a square image of %u channel%s; give \"height\", \"width\" and \"channels\" in dataset.json",
					  what, line, (unsigned long long)p, c, c == 1 ? "" : "s");
		s->rows = side;
		s->cols = side;
	}
	if (s->rows > DATASET_MAX_SIDE || s->cols > DATASET_MAX_SIDE || p > DATASET_MAX_IMAGE)
		return tr_err_set(err, -EINVAL, "%s: line %zu: images of %llu pixels are too large", what,
				  line, (unsigned long long)p);
	if (c > 1 && !m->has_layout)
		return tr_err_set(err, -EINVAL,
				  "%s: %u channels: state \"layout\" (NHWC or NCHW: how a row's values are ordered) in dataset.json",
				  what, c);
	s->channels = c;
	return 0;
}

int ds_csv_parse(struct dataset *ds, struct ds_split *set, bool first, const char *text,
		 size_t len, const struct ds_meta *m, const char *what, struct tr_err *err)
{
	bool f32 = m->has_dtype && m->dtype == DS_F32;
	size_t esize = f32 ? sizeof(float) : 1, pos = 0, line = 0, nfields = 0, image = 0;
	uint32_t limit = ds_label_limit(m);
	uint8_t *px = NULL, *labels = NULL;
	size_t cap = 0, count = 0;
	struct ds_split s = { 0 };
	int rc = 0;

	while (pos < len) {
		const char *ls = text + pos, *nl = memchr(ls, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - ls) : len - pos, k;
		struct field f;
		uint64_t u;
		const char *p, *end;

		pos += n + (nl ? 1 : 0);
		line++;
		if (n && ls[n - 1] == '\r')
			n--;
		if (n == 0) {
			if (pos >= len)
				break;   /* a final newline */
			rc = tr_err_set(err, -EINVAL, "%s: line %zu: empty line", what, line);
			goto fail;
		}
		k = count_fields(ls, n);
		/* The first line is a header when its first field is not a number. */
		if (line == 1) {
			const char *c = memchr(ls, ',', n);
			struct field first_f = { ls, c ? (size_t)(c - ls) : n };
			float dummy;

			if (!field_uint(first_f, &u) && !field_float(first_f, &dummy)) {
				nfields = k;
				continue;
			}
		}
		if (!nfields)
			nfields = k;
		if (k != nfields) {
			rc = tr_err_set(err, -EINVAL, "%s: line %zu: %zu fields, expected %zu (as on the first line)",
					what, line, k, nfields);
			goto fail;
		}
		if (!image) {
			char detail[160];
			size_t rows = 1;

			rc = decide_shape(nfields - 1, m, what, line, &s, err);
			if (rc < 0)
				goto fail;
			image = nfields - 1;
			/* at most one image a line from here: charged before any is kept */
			for (const char *q = ls; (q = memchr(q, '\n', (size_t)(text + len - q))); q++)
				rows++;
			snprintf(detail, sizeof(detail), "its up to %zu images of %zu %s values", rows, image,
				 f32 ? "float32" : "uint8");
			rc = ds_budget_charge(m, (uint64_t)rows * (image * esize + 1), true, what, detail, err);
			if (rc < 0)
				goto fail;
		}
		if (count == DATASET_MAX_COUNT) {
			rc = tr_err_set(err, -EINVAL, "%s: line %zu: more than %u images", what, line,
					DATASET_MAX_COUNT);
			goto fail;
		}
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 1024;
			uint8_t *np2, *nl2;

			if (ncap > DATASET_MAX_COUNT)
				ncap = DATASET_MAX_COUNT;
			np2 = realloc(px, ncap * image * esize);
			if (np2)
				px = np2;
			nl2 = np2 ? realloc(labels, ncap) : NULL;
			if (nl2)
				labels = nl2;
			if (!np2 || !nl2) {
				rc = tr_err_set(err, -ENOMEM, "%s: out of memory at line %zu", what, line);
				goto fail;
			}
			cap = ncap;
		}
		p = ls;
		end = ls + n;
		for (size_t j = 0; j < nfields; j++) {
			const char *c = memchr(p, ',', (size_t)(end - p));

			f.s = p;
			f.n = c ? (size_t)(c - p) : (size_t)(end - p);
			p = c ? c + 1 : end;
			if (j == 0) {
				if (!field_uint(f, &u) || u >= limit) {
					rc = tr_err_set(err, -EINVAL,
							"%s: line %zu: label '%.*s' is not an integer 0..%u%s", what,
							line, (int)(f.n > 20 ? 20 : f.n), f.s, limit - 1,
							limit == DATASET_MAX_CLASSES ? " (at most 256 classes)"
										      : " (the class names' count)");
					goto fail;
				}
				labels[count] = (uint8_t)u;
			} else if (f32) {
				float v;

				if (!field_float(f, &v) || !isfinite(v)) {
					rc = tr_err_set(err, -EINVAL,
							"%s: line %zu: field %zu '%.*s' is not a finite number%s",
							what, line, j + 1, (int)(f.n > 20 ? 20 : f.n), f.s,
							field_float(f, &v) ? (isnan(v) ? " (NaN)" : " (infinite)") : "");
					goto fail;
				}
				memcpy(px + (count * image + j - 1) * sizeof(float), &v, sizeof(v));
			} else {
				if (!field_uint(f, &u) || u > 255) {
					rc = tr_err_set(err, -EINVAL,
							"%s: line %zu: field %zu '%.*s' is not a pixel 0..255 (for other values set \"dtype\": \"float32\" in dataset.json)",
							what, line, j + 1, (int)(f.n > 20 ? 20 : f.n), f.s);
					goto fail;
				}
				px[count * image + j - 1] = (uint8_t)u;
			}
		}
		count++;
	}
	if (count == 0) {
		rc = tr_err_set(err, -EINVAL, "%s: no images (%s)", what, line ? "only a header" : "empty file");
		goto fail;
	}
	s.count = (uint32_t)count;
	s.pixels = px;
	s.labels = labels;
	if (first) {
		ds->dtype = f32 ? DS_F32 : DS_U8;
		ds->layout = m->has_layout ? m->layout : DS_NCHW;
	}
	*set = s;
	return 0;
fail:
	free(px);
	free(labels);
	return rc;
}

static int load_one(struct dataset *ds, struct ds_split *set, bool first, const char *dir,
		    const char *name, const struct ds_meta *m, struct tr_err *err)
{
	char path[4400];
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc;

	struct stat st;

	/* the text is read whole, beside what is loaded */
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (stat(path, &st) == 0) {
		rc = ds_budget_charge(m, (uint64_t)st.st_size, false, path, "the file, read whole,", err);
		if (rc < 0)
			return rc;
	}
	rc = ds_read_file(dir, name, CSV_FILE_MAX, path, sizeof(path), &buf, &len, err);
	if (rc == 0)
		rc = ds_csv_parse(ds, set, first, (const char *)buf, len, m, path, err);
	free(buf);
	return rc;
}

int ds_load_csv(struct dataset *ds, const char *dir, const struct ds_meta *m, struct tr_err *err)
{
	int rc = load_one(ds, &ds->train, true, dir, "train.csv", m, err);

	if (rc == 0)
		rc = load_one(ds, &ds->test, false, dir, "test.csv", m, err);
	return rc;
}
