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
 *
 * Float targets (regression, multi-label): dataset.json's "targets" names
 * the target columns, by header name (["y"]) or by number from 0 ([10]);
 * every other column is a feature (a "pixel", uint8 or with "dtype":
 * "float32" any finite number), in file order. Without height and width in
 * dataset.json the features of a row are one 1 x F "image" (a table's row).
 * Targets are finite numbers; the names of the target columns (from the
 * header) become the dataset's target names.
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

/* Field j of the line [ls, ls + n). */
static struct field nth_field(const char *ls, size_t n, size_t j)
{
	const char *p = ls, *end = ls + n;
	struct field f = { p, 0 };

	for (size_t k = 0; k <= j; k++) {
		const char *c = memchr(p, ',', (size_t)(end - p));

		f.s = p;
		f.n = c ? (size_t)(c - p) : (size_t)(end - p);
		p = c ? c + 1 : end;
	}
	return f;
}

/* The columns of dataset.json's "targets" in a row of nfields fields
 * (is_target: nfields flags; col: ntargets indices), from the header's names
 * or the numbers given. */
static int target_columns(const struct ds_meta *m, const char *hdr, size_t hn, size_t nfields,
			  const char *what, bool *is_target, uint32_t *col, struct tr_err *err)
{
	for (uint32_t t = 0; t < m->ntargets; t++) {
		size_t c = nfields;

		if (m->target_cols) {
			c = m->target_cols[t];
		} else if (hdr) {
			for (size_t j = 0; j < nfields; j++) {
				struct field f = nth_field(hdr, hn, j);

				trim(&f);
				if (f.n == strlen(m->target_names[t]) && memcmp(f.s, m->target_names[t], f.n) == 0)
					c = j;
			}
		} else {
			return tr_err_set(err, -EINVAL,
					  "%s: dataset.json names the targets (\"%s\"...) but the file has no header row; add one, or give the target columns' numbers",
					  what, m->target_names[0]);
		}
		if (c >= nfields)
			return m->target_cols
				       ? tr_err_set(err, -EINVAL, "%s: target column %u, but a row has %zu fields",
						    what, m->target_cols[t], nfields)
				       : tr_err_set(err, -EINVAL, "%s: no column \"%s\" (dataset.json's targets) in the header",
						    what, m->target_names[t]);
		if (is_target[c])
			return tr_err_set(err, -EINVAL, "%s: target column %zu named twice", what, c);
		is_target[c] = true;
		col[t] = (uint32_t)c;
	}
	if (m->ntargets >= nfields)
		return tr_err_set(err, -EINVAL, "%s: %zu fields a row, all of them targets: no features",
				  what, nfields);
	return 0;
}

/* The names of the target columns from the header, for the dataset. */
static int header_names(struct dataset *ds, const struct ds_meta *m, const char *hdr, size_t hn,
			const uint32_t *col, const char *what, struct tr_err *err)
{
	ds->target_names = calloc(m->ntargets, sizeof(*ds->target_names));
	if (!ds->target_names)
		return tr_err_set(err, -ENOMEM, "%s: out of memory", what);
	for (uint32_t t = 0; t < m->ntargets; t++) {
		struct field f = nth_field(hdr, hn, col[t]);

		trim(&f);
		snprintf(ds->target_names[t], DATASET_NAME_MAX, "%.*s",
			 (int)(f.n < DATASET_NAME_MAX - 1 ? f.n : DATASET_NAME_MAX - 1), f.s);
	}
	return 0;
}

/* One split of a CSV with float targets (see the top). */
static int csv_parse_targets(struct dataset *ds, struct ds_split *set, bool first, const char *text,
			     size_t len, const struct ds_meta *m, const char *what, struct tr_err *err)
{
	bool f32 = m->has_dtype && m->dtype == DS_F32;
	size_t esize = f32 ? sizeof(float) : 1, pos = 0, line = 0, nfields = 0, image = 0, hn = 0;
	uint32_t nt = m->ntargets, *col = NULL;
	const char *hdr = NULL;
	bool *is_target = NULL;
	uint8_t *px = NULL;
	float *tg = NULL;
	size_t cap = 0, count = 0;
	struct ds_split s = { 0 };
	int rc = 0;

	while (pos < len) {
		const char *ls = text + pos, *nl = memchr(ls, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - ls) : len - pos, k, feat = 0;
		uint64_t u;

		pos += n + (nl ? 1 : 0);
		line++;
		if (n && ls[n - 1] == '\r')
			n--;
		if (n == 0) {
			if (pos >= len)
				break;
			rc = tr_err_set(err, -EINVAL, "%s: line %zu: empty line", what, line);
			goto fail;
		}
		k = count_fields(ls, n);
		if (line == 1) {
			struct field f0 = nth_field(ls, n, 0);
			float dummy;

			if (!field_uint(f0, &u) && !field_float(f0, &dummy)) {
				hdr = ls;
				hn = n;
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
		if (!is_target) {
			is_target = calloc(nfields, sizeof(*is_target));
			col = calloc(nt, sizeof(*col));
			if (!is_target || !col) {
				rc = tr_err_set(err, -ENOMEM, "%s: out of memory", what);
				goto fail;
			}
			rc = target_columns(m, hdr, hn, nfields, what, is_target, col, err);
			if (rc < 0)
				goto fail;
			image = nfields - nt;
			if (m->height && m->width) {
				rc = decide_shape(image, m, what, line, &s, err);
				if (rc < 0)
					goto fail;
			} else {
				s.channels = 1;
				s.rows = 1;
				s.cols = (uint32_t)image;
				if (image > DATASET_MAX_SIDE) {
					rc = tr_err_set(err, -EINVAL,
							"%s: %zu features a row, more than %u: give \"height\" and \"width\" in dataset.json",
							what, image, DATASET_MAX_SIDE);
					goto fail;
				}
			}
		}
		if (count == DATASET_MAX_COUNT) {
			rc = tr_err_set(err, -EINVAL, "%s: line %zu: more than %u rows", what, line,
					DATASET_MAX_COUNT);
			goto fail;
		}
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 1024;
			uint8_t *np2;
			float *nt2;

			if (ncap > DATASET_MAX_COUNT)
				ncap = DATASET_MAX_COUNT;
			np2 = realloc(px, ncap * image * esize);
			if (np2)
				px = np2;
			nt2 = np2 ? realloc(tg, ncap * nt * sizeof(float)) : NULL;
			if (nt2)
				tg = nt2;
			if (!np2 || !nt2) {
				rc = tr_err_set(err, -ENOMEM, "%s: out of memory at line %zu", what, line);
				goto fail;
			}
			cap = ncap;
		}
		for (size_t j = 0, t = 0, at = 0; j < nfields; j++) {
			const char *c = memchr(ls + at, ',', n - at);
			struct field f = { ls + at, c ? (size_t)(c - ls) - at : n - at };
			float v = 0;

			at = c ? (size_t)(c - ls) + 1 : n;
			if (is_target[j] || f32) {
				if (!field_float(f, &v) || !isfinite(v)) {
					rc = tr_err_set(err, -EINVAL,
							"%s: line %zu: field %zu '%.*s' is not a finite number%s", what,
							line, j + 1, (int)(f.n > 20 ? 20 : f.n), f.s,
							is_target[j] ? " (a target)" : "");
					goto fail;
				}
			} else if (!field_uint(f, &u) || u > 255) {
				rc = tr_err_set(err, -EINVAL,
						"%s: line %zu: field %zu '%.*s' is not a pixel 0..255 (for other values set \"dtype\": \"float32\" in dataset.json)",
						what, line, j + 1, (int)(f.n > 20 ? 20 : f.n), f.s);
				goto fail;
			}
			if (is_target[j]) {
				for (t = 0; t < nt && col[t] != j; t++)
					;
				tg[count * nt + t] = v;
			} else if (f32) {
				memcpy(px + (count * image + feat++) * sizeof(float), &v, sizeof(v));
			} else {
				px[count * image + feat++] = (uint8_t)u;
			}
		}
		count++;
	}
	if (count == 0) {
		rc = tr_err_set(err, -EINVAL, "%s: no rows (%s)", what, line ? "only a header" : "empty file");
		goto fail;
	}
	if (first) {
		ds->dtype = f32 ? DS_F32 : DS_U8;
		ds->layout = m->has_layout ? m->layout : DS_NCHW;
		ds->target = DS_TARGET_VALUES;
		ds->target_width = nt;
		if (hdr && !ds->target_names) {
			rc = header_names(ds, m, hdr, hn, col, what, err);
			if (rc < 0)
				goto fail;
		}
	}
	s.count = (uint32_t)count;
	s.pixels = px;
	s.targets = tg;
	*set = s;
	free(is_target);
	free(col);
	return 0;
fail:
	free(px);
	free(tg);
	free(is_target);
	free(col);
	return rc;
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

	if (m->ntargets)
		return csv_parse_targets(ds, set, first, text, len, m, what, err);
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
