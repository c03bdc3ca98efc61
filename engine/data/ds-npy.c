/*
 * ds-npy.c - NumPy datasets: four .npy files, or one .npz (a zip of them,
 * read with libzip). See include/traind/dataset.h.
 *
 * Design
 * ------
 * A .npy file is the magic "\x93NUMPY", a version (1.0: a 2-byte header
 * length; 2.0 and 3.0: 4 bytes), then a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }
 * padded with spaces and ended by '\n', then the raw C-order data. The dict
 * is parsed strictly (exactly those three keys, once each; nothing after
 * the closing brace but padding). Little-endian ('<' or '|') numeric dtypes
 * only; big-endian, Fortran order, objects, strings and structured dtypes are
 * refused with the reason and how to save the array instead.
 *
 * The header is checked (ds_check_images / ds_check_labels) before any
 * payload is allocated, and the file's size (or the zip entry's uncompressed
 * size) must equal header + payload exactly, so a header that lies about its
 * shape is caught before reading. The payload is read straight into the
 * buffer the dataset keeps. For a zip entry, one more read past the end
 * makes libzip check the entry's CRC-32.
 */
#include "engine/data/ds.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zip.h>

#define NPY_MAX_HEADER (1u << 20)

/* ---- the header ------------------------------------------------------- */

struct lex {
	const char *s;
	size_t n, pos;
	size_t ctrl_at;        /* where a string held a control character (0: none) */
	unsigned char ctrl;
};

static void skip_ws(struct lex *l)
{
	while (l->pos < l->n && (l->s[l->pos] == ' ' || l->s[l->pos] == '\t' || l->s[l->pos] == '\n' ||
				 l->s[l->pos] == '\r'))
		l->pos++;
}

static bool eat(struct lex *l, char c)
{
	skip_ws(l);
	if (l->pos < l->n && l->s[l->pos] == c) {
		l->pos++;
		return true;
	}
	return false;
}

/* A quoted string ('...' or "...", no escapes) into buf. */
static bool str(struct lex *l, char *buf, size_t len)
{
	char q;
	size_t k = 0;

	skip_ws(l);
	if (l->pos >= l->n || (l->s[l->pos] != '\'' && l->s[l->pos] != '"'))
		return false;
	q = l->s[l->pos++];
	while (l->pos < l->n && l->s[l->pos] != q) {
		unsigned char c = (unsigned char)l->s[l->pos];

		if (c < 0x20 || c == 0x7f) {
			/* "|u1\0" would pass for "|u1" once read as a C string */
			l->ctrl_at = l->pos + 1;
			l->ctrl = c;
			return false;
		}
		if (c == '\\' || k + 1 >= len)
			return false;
		buf[k++] = l->s[l->pos++];
	}
	if (l->pos >= l->n)
		return false;
	l->pos++;
	buf[k] = '\0';
	return true;
}

static bool word(struct lex *l, const char *w)
{
	size_t k = strlen(w);

	skip_ws(l);
	if (l->n - l->pos >= k && strncmp(l->s + l->pos, w, k) == 0) {
		l->pos += k;
		return true;
	}
	return false;
}

static int parse_descr(const char *d, enum ds_num *t, const char *what, struct tr_err *err)
{
	static const struct { char kind; char size; enum ds_num t; } known[] = {
		{ 'u', '1', NUM_U8 }, { 'i', '1', NUM_I8 }, { 'b', '1', NUM_BOOL },
		{ 'u', '2', NUM_U16 }, { 'i', '2', NUM_I16 }, { 'u', '4', NUM_U32 },
		{ 'i', '4', NUM_I32 }, { 'u', '8', NUM_U64 }, { 'i', '8', NUM_I64 },
		{ 'f', '2', NUM_F16 }, { 'f', '4', NUM_F32 }, { 'f', '8', NUM_F64 },
	};

	if (strlen(d) != 3 || !strchr("<>|=", d[0]))
		return tr_err_set(err, -EINVAL,
				  "%s: dtype '%.32s' is not supported (numbers only: uint8, float32, integer labels)",
				  what, d);
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (d[1] != known[i].kind || d[2] != known[i].size)
			continue;
		if (d[2] != '1' && d[0] == '>')
			return tr_err_set(err, -EINVAL,
					  "%s: big-endian dtype '%s'; save the array little-endian (a.astype('<%c%c'))",
					  what, d, d[1], d[2]);
		if (d[2] != '1' && d[0] != '<')
			return tr_err_set(err, -EINVAL, "%s: dtype '%s' has no stated byte order ('<' expected)",
					  what, d);
		*t = known[i].t;
		return 0;
	}
	return tr_err_set(err, -EINVAL,
			  "%s: dtype '%.32s' is not supported (numbers only: uint8, float32, integer labels)",
			  what, d);
}

int ds_npy_header(const uint8_t *buf, size_t len, const char *what, struct ds_array *a,
		  size_t *data_off, struct tr_err *err)
{
	struct lex l;
	uint32_t hlen;
	size_t pre;
	bool have_descr = false, have_fortran = false, have_shape = false, fortran = false;
	char key[32], descr[64];
	int rc;

	memset(a, 0, sizeof(*a));
	if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
		return tr_err_set(err, len < 10 ? -EIO : -EINVAL, "%s: not a .npy file (%s)", what,
				  len < 10 ? "truncated header" : "no \\x93NUMPY magic");
	if (buf[6] == 1 && buf[7] == 0) {
		hlen = (uint32_t)buf[8] | (uint32_t)buf[9] << 8;
		pre = 10;
	} else if ((buf[6] == 2 || buf[6] == 3) && buf[7] == 0) {
		if (len < 12)
			return tr_err_set(err, -EIO, "%s: truncated header", what);
		hlen = (uint32_t)buf[8] | (uint32_t)buf[9] << 8 | (uint32_t)buf[10] << 16 |
		       (uint32_t)buf[11] << 24;
		pre = 12;
	} else {
		return tr_err_set(err, -EINVAL, "%s: .npy format version %u.%u is not supported (1.0, 2.0, 3.0)",
				  what, buf[6], buf[7]);
	}
	if (hlen > NPY_MAX_HEADER)
		return tr_err_set(err, -EINVAL, "%s: header of %u bytes is too large", what, hlen);
	if (len < pre + hlen)
		return tr_err_set(err, -EIO, "%s: truncated header: expected %zu bytes, got %zu", what,
				  pre + (size_t)hlen, len);
	l.s = (const char *)buf + pre;
	l.n = hlen;
	l.pos = 0;
	l.ctrl_at = 0;
	if (hlen == 0 || l.s[hlen - 1] != '\n')
		goto bad;
	if (!eat(&l, '{'))
		goto bad;
	while (!eat(&l, '}')) {
		if (!str(&l, key, sizeof(key)) || !eat(&l, ':'))
			goto bad;
		if (strcmp(key, "descr") == 0 && !have_descr) {
			if (!str(&l, descr, sizeof(descr))) {
				skip_ws(&l);
				if (l.pos < l.n && l.s[l.pos] == '[')
					return tr_err_set(err, -EINVAL, "%s: structured dtypes are not supported",
							  what);
				goto bad;
			}
			have_descr = true;
		} else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
			if (word(&l, "True"))
				fortran = true;
			else if (!word(&l, "False"))
				goto bad;
			have_fortran = true;
		} else if (strcmp(key, "shape") == 0 && !have_shape) {
			if (!eat(&l, '('))
				goto bad;
			while (!eat(&l, ')')) {
				uint64_t v = 0;
				size_t start;

				if (a->ndim == 8)
					return tr_err_set(err, -EINVAL, "%s: more than 8 dimensions", what);
				skip_ws(&l);
				start = l.pos;
				while (l.pos < l.n && l.s[l.pos] >= '0' && l.s[l.pos] <= '9') {
					if (v > (1ull << 40))
						return tr_err_set(err, -EINVAL, "%s: a dimension is too large", what);
					v = v * 10 + (uint64_t)(l.s[l.pos++] - '0');
				}
				if (l.pos == start)
					goto bad;
				if (l.pos < l.n && l.s[l.pos] == 'L')
					l.pos++;
				a->shape[a->ndim++] = v;
				if (!eat(&l, ',')) {
					if (!eat(&l, ')'))
						goto bad;
					break;
				}
			}
			have_shape = true;
		} else {
			return tr_err_set(err, -EINVAL, "%s: header key '%s' is unknown or repeated", what, key);
		}
		if (!eat(&l, ',')) {
			if (!eat(&l, '}'))
				goto bad;
			break;
		}
	}
	skip_ws(&l);
	if (l.pos != l.n)
		goto bad;
	if (!have_descr || !have_fortran || !have_shape)
		return tr_err_set(err, -EINVAL, "%s: header lacks '%s'", what,
				  !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
	rc = parse_descr(descr, &a->type, what, err);
	if (rc < 0)
		return rc;
	if (fortran)
		return tr_err_set(err, -EINVAL,
				  "%s: Fortran-order array; save it in C order (np.ascontiguousarray)", what);
	*data_off = pre + hlen;
	return 0;
bad:
	if (l.ctrl_at)
		return tr_err_set(err, -EINVAL, "%s: a string in the header dict holds the control character 0x%02x "
				  "(byte %zu): not a dtype or key numpy writes", what, l.ctrl, pre + l.ctrl_at - 1);
	return tr_err_set(err, -EINVAL, "%s: malformed header dict near byte %zu", what, pre + l.pos);
}

/* Bytes of an array's payload, or UINT64_MAX when too large to think about. */
static uint64_t payload_bytes(const struct ds_array *a)
{
	uint64_t n = ds_num_size(a->type);

	for (int i = 0; i < a->ndim; i++)
		if (__builtin_mul_overflow(n, a->shape[i], &n) || n > (1ull << 50))
			return UINT64_MAX;
	return n;
}

/* ---- sources: a plain file or a zip entry ----------------------------- */

struct src {
	char what[4352];       /* file name for messages */
	int fd;                /* plain file, or -1 */
	zip_file_t *zf;        /* zip entry, or NULL */
	uint64_t size;         /* bytes of the file or the uncompressed entry */
	uint64_t pos;
};

static int src_read(struct src *s, void *buf, size_t n, struct tr_err *err)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r;

		if (s->zf) {
			zip_int64_t z = zip_fread(s->zf, (char *)buf + done, n - done);

			if (z < 0)
				return tr_err_set(err, -EIO, "%s: cannot read the zip entry: %s", s->what,
						  zip_file_strerror(s->zf));
			r = (ssize_t)z;
		} else {
			r = read(s->fd, (char *)buf + done, n - done);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return tr_err_set(err, -EIO, "%s: read error: %s", s->what, strerror(errno));
		}
		if (r == 0)
			return tr_err_set(err, -EIO, "%s: truncated: ended at byte %llu", s->what,
					  (unsigned long long)(s->pos + done));
		done += (size_t)r;
	}
	s->pos += n;
	return 0;
}

/* For a zip entry: one read past the end, which makes libzip check the CRC. */
static int src_end(struct src *s, struct tr_err *err)
{
	char extra;

	if (!s->zf)
		return 0;
	zip_int64_t z = zip_fread(s->zf, &extra, 1);

	if (z < 0)
		return tr_err_set(err, -EIO, "%s: corrupt zip entry: %s", s->what, zip_file_strerror(s->zf));
	if (z > 0)
		return tr_err_set(err, -EIO, "%s: trailing bytes after the array", s->what);
	return 0;
}

static void src_close(struct src *s)
{
	if (s->zf)
		zip_fclose(s->zf);
	if (s->fd >= 0)
		close(s->fd);
	s->zf = NULL;
	s->fd = -1;
}

static int src_open_file(struct src *s, const char *dir, const char *name, struct tr_err *err)
{
	struct stat st;

	memset(s, 0, sizeof(*s));
	snprintf(s->what, sizeof(s->what), "%s/%s", dir, name);
	s->fd = open(s->what, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0)
		return tr_err_set(err, -errno, "%s: %s", s->what,
				  errno == ENOENT ? "not found" : strerror(errno));
	if (fstat(s->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		src_close(s);
		return tr_err_set(err, -EINVAL, "%s: not a regular file", s->what);
	}
	s->size = (uint64_t)st.st_size;
	return 0;
}

static int src_open_zip(struct src *s, zip_t *za, const char *zpath, const char *name,
			struct tr_err *err)
{
	zip_stat_t st;
	zip_int64_t i;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	snprintf(s->what, sizeof(s->what), "%s: %s", zpath, name);
	i = zip_name_locate(za, name, 0);
	if (i < 0)
		return tr_err_set(err, -ENOENT, "%s: no entry %s", zpath, name);
	zip_stat_init(&st);
	if (zip_stat_index(za, (zip_uint64_t)i, 0, &st) < 0 || !(st.valid & ZIP_STAT_SIZE))
		return tr_err_set(err, -EIO, "%s: cannot stat the entry: %s", s->what, zip_strerror(za));
	s->size = st.size;
	s->zf = zip_fopen_index(za, (zip_uint64_t)i, 0);
	if (!s->zf)
		return tr_err_set(err, -EIO, "%s: cannot open the entry: %s", s->what, zip_strerror(za));
	return 0;
}

/* Read an array's header from s; the payload size must match the source's. */
static int read_header(struct src *s, struct ds_array *a, uint64_t *payload, struct tr_err *err)
{
	uint8_t pre[12], *hdr = NULL;
	size_t off = 0, need;
	int rc;

	if (s->size < 10)
		return tr_err_set(err, -EIO, "%s: truncated: %llu bytes is not even a .npy header", s->what,
				  (unsigned long long)s->size);
	rc = src_read(s, pre, 10, err);
	if (rc < 0)
		return rc;
	need = 10;
	if (pre[6] >= 2 && s->size >= 12) {
		rc = src_read(s, pre + 10, 2, err);
		if (rc < 0)
			return rc;
		need = 12;
	}
	/* The whole preamble + header, then parse. */
	{
		uint32_t hlen = need == 10 ? (uint32_t)pre[8] | (uint32_t)pre[9] << 8
					   : (uint32_t)pre[8] | (uint32_t)pre[9] << 8 |
					     (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;

		if (memcmp(pre, "\x93NUMPY", 6) != 0 || hlen > NPY_MAX_HEADER || need + hlen > s->size) {
			/* The parser names the problem: magic, version, size. */
			rc = ds_npy_header(pre, need, s->what, a, &off, err);
			return rc < 0 ? rc : tr_err_set(err, -EIO, "%s: truncated header", s->what);
		}
		hdr = malloc(need + hlen);
		if (!hdr)
			return tr_err_set(err, -ENOMEM, "%s: out of memory", s->what);
		memcpy(hdr, pre, need);
		rc = src_read(s, hdr + need, hlen, err);
		if (rc == 0)
			rc = ds_npy_header(hdr, need + hlen, s->what, a, &off, err);
		free(hdr);
		if (rc < 0)
			return rc;
	}
	*payload = payload_bytes(a);
	if (*payload == UINT64_MAX) {
		char shape[8 * 24 + 8];
		size_t o = 0;

		for (int i = 0; i < a->ndim; i++)
			o += (size_t)snprintf(shape + o, sizeof(shape) - o, "%s%llu", i ? ", " : "",
					      (unsigned long long)a->shape[i]);
		return tr_err_set(err, -EINVAL, "%s: the header's shape (%s) of %s takes more than 2^50 bytes "
				  "(the file has %llu)", s->what, shape, ds_num_name(a->type),
				  (unsigned long long)s->size);
	}
	if (off + *payload != s->size)
		return tr_err_set(err, -EIO, "%s: %s: the header's shape needs %llu bytes, the file has %llu",
				  s->what, off + *payload > s->size ? "truncated"
											   : "size mismatch",
				  (unsigned long long)(off + *payload),
				  (unsigned long long)s->size);
	return 0;
}

static int read_payload(struct src *s, struct ds_array *a, uint64_t payload, struct tr_err *err)
{
	int rc;

	a->data = malloc(payload ? (size_t)payload : 1);
	if (!a->data)
		return tr_err_set(err, -ENOMEM, "%s: out of memory for %llu bytes", s->what,
				  (unsigned long long)payload);
	rc = src_read(s, a->data, (size_t)payload, err);
	if (rc == 0)
		rc = src_end(s, err);
	if (rc < 0) {
		free(a->data);
		a->data = NULL;
	}
	return rc;
}

/* One split: images file x, labels file y, from a directory or a zip. */
static int split_load(struct dataset *ds, struct ds_split *set, bool first, const char *dir,
		      zip_t *za, const char *x, const char *y, bool probe, const struct ds_meta *m,
		      struct tr_err *err)
{
	struct ds_array img = { 0 }, lab = { 0 };
	struct ds_split shape = { 0 };
	struct src s = { .fd = -1 }, t = { .fd = -1 };
	enum ds_layout layout;
	uint64_t payload;
	int rc;

	rc = za ? src_open_zip(&s, za, dir, x, err) : src_open_file(&s, dir, x, err);
	if (rc < 0)
		goto out;
	rc = read_header(&s, &img, &payload, err);
	if (rc == 0 && ds_is_tokens(&img)) {
		/* token sequences: their ids are read even by a probe (the vocabulary) */
		rc = ds_check_tokens(&img, s.what, err);
		shape.count = (uint32_t)img.shape[0];
		probe = false;
	} else if (rc == 0) {
		rc = ds_check_images(&img, m, s.what, &shape, &layout, err);
	}
	if (rc == 0 && !probe) {
		char detail[160];

		if (ds_is_tokens(&img))
			snprintf(detail, sizeof(detail), "its %u sequences of %llu %s token ids%s", shape.count,
				 (unsigned long long)img.shape[1], ds_num_name(img.type),
				 za ? " (decompressed)" : "");
		else
			snprintf(detail, sizeof(detail), "its %u images of %ux%ux%u %s%s", shape.count,
				 shape.channels, shape.rows, shape.cols, ds_num_name(img.type),
				 za ? " (decompressed)" : "");
		rc = ds_budget_charge(m, payload, true, s.what, detail, err);
	}
	if (rc == 0 && !probe)
		rc = read_payload(&s, &img, payload, err);
	if (rc < 0)
		goto out;
	rc = za ? src_open_zip(&t, za, dir, y, err) : src_open_file(&t, dir, y, err);
	if (rc < 0)
		goto out;
	rc = read_header(&t, &lab, &payload, err);
	if (rc == 0 && !ds_is_tokens(&img))
		rc = ds_check_labels(&lab, shape.count, t.what, err);
	if (rc == 0) {
		char detail[96];

		/* read as they are; what the split keeps of them (a byte a label,
		 * float32 targets) is no more */
		snprintf(detail, sizeof(detail), "its %u labels", shape.count);
		rc = ds_budget_charge(m, payload, true, t.what, detail, err);
	}
	if (rc == 0)
		rc = read_payload(&t, &lab, payload, err);
	if (rc == 0)
		rc = ds_split_from_arrays(ds, set, first, &img, &lab, m, s.what, t.what, err);
out:
	free(img.data);
	free(lab.data);
	src_close(&s);
	src_close(&t);
	return rc;
}

int ds_load_npy(struct dataset *ds, const char *dir, bool probe, const struct ds_meta *m,
		struct tr_err *err)
{
	int rc = split_load(ds, &ds->train, true, dir, NULL, "x_train.npy", "y_train.npy", probe, m, err);

	if (rc == 0)
		rc = split_load(ds, &ds->test, false, dir, NULL, "x_test.npy", "y_test.npy", probe, m, err);
	return rc;
}

int ds_load_npz(struct dataset *ds, const char *path, bool probe, const struct ds_meta *m,
		struct tr_err *err)
{
	zip_error_t ze;
	zip_t *za;
	int zerr = 0, rc;

	za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
	if (!za) {
		zip_error_init_with_code(&ze, zerr);
		rc = tr_err_set(err, zerr == ZIP_ER_NOENT ? -ENOENT : zerr == ZIP_ER_MEMORY ? -ENOMEM : -EIO,
				"%s: not a readable zip (.npz) file: %s", path, zip_error_strerror(&ze));
		zip_error_fini(&ze);
		return rc;
	}
	rc = split_load(ds, &ds->train, true, path, za, "x_train.npy", "y_train.npy", probe, m, err);
	if (rc == 0)
		rc = split_load(ds, &ds->test, false, path, za, "x_test.npy", "y_test.npy", probe, m, err);
	zip_discard(za);
	return rc;
}
