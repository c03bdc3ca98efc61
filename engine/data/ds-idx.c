/*
 * ds-idx.c - the IDX format (MNIST, Fashion-MNIST). See include/traind/dataset.h.
 *
 * Design
 * ------
 * An IDX file is a big-endian header (magic, then one uint32 per dimension)
 * followed by the raw uint8 payload. We read the header, validate it, work out
 * the exact payload size, and then read the payload straight into the buffer
 * the caller ends up owning: no intermediate copy and no float conversion.
 *
 * Files are read through a tiny "source" (struct src) that hides whether the
 * bytes come from a plain file (read(2)) or a gzip stream (zlib inflate over
 * read(2)). Gzip is chosen by the magic bytes 1f 8b; a file named *.gz without
 * that magic is rejected rather than guessed at. inflate() is used directly
 * instead of gzread() because gzread() silently ignores garbage after the
 * gzip member; we want to reject it.
 *
 * Invariants and limits
 * - Every size is computed in uint64_t from values already bounded by the
 *   limits below (count <= 10,000,000, rows and cols <= 4096), so nothing
 *   overflows; the result is checked against SIZE_MAX before allocation.
 * - A plain file's size is compared with header + payload before anything
 *   large is allocated. A gzip file's decompressed size is unknown until the
 *   end, so its payload buffer starts at most GZ_FIRST_ALLOC bytes and grows
 *   by doubling (capped at the expected size) as data actually arrives: a
 *   small corrupt file that claims a huge payload cannot make us reserve it.
 *   The payload the header claims is charged to the load's budget (ds.h)
 *   first: a small gzip file of a huge, valid payload (zeros compress a
 *   thousandfold) is refused before it is inflated.
 * - After the payload, the source must be exactly at its end: no trailing
 *   bytes in a plain file, no extra decompressed bytes, the gzip stream must
 *   finish (inflate checks CRC-32 and length) and nothing may follow it.
 *   Concatenated gzip members count as trailing data.
 * - Error codes: missing file -ENOENT (other open/stat errors pass errno
 *   through); read errors, truncation, trailing data and corrupt gzip -EIO;
 *   a well-formed file with a bad header or contents -EINVAL; -ENOMEM.
 *   Every message starts with the path of the file at fault.
 * - Each function has one cleanup chain; on failure outputs are left empty.
 */
#include "engine/data/ds.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#define IDX_IMAGES_MAGIC 0x00000803u    /* ubyte, 3 dimensions */
#define IDX_LABELS_MAGIC 0x00000801u    /* ubyte, 1 dimension */
#define IDX_MAX_COUNT    DATASET_MAX_COUNT  /* sanity bound on images per file */
#define IDX_MAX_SIDE     DATASET_MAX_SIDE   /* sanity bound on rows and cols */

#define GZ_IN_SIZE       (256u * 1024u)        /* compressed read buffer */
#define GZ_FIRST_ALLOC   ((size_t)16 << 20)    /* first payload buffer, gzip */

/* A byte source: a plain file or a gzip stream over a file. */
struct src {
	const char *path;       /* for error messages; not owned */
	int fd;                 /* open file, -1 if none */
	uint64_t file_size;     /* size on disk (compressed size for gzip) */
	bool gz;                /* true: bytes are inflated from the file */
	bool zs_ready;          /* zs was initialised and needs inflateEnd */
	bool gz_end;            /* inflate reported the end of the gzip stream */
	z_stream zs;            /* inflate state (gz only) */
	unsigned char *in;      /* (GZ_IN_SIZE) compressed input (gz only) */
};

/* One decoded IDX file: its dimensions and its payload. */
struct idx_file {
	uint32_t ndims;         /* 1 for labels, 3 for images */
	uint32_t dims[3];       /* dims[0] is the item count */
	uint8_t *data;          /* (dims[0] * dims[1] * dims[2]) payload, owned */
	size_t size;            /* bytes in data */
};

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* read(2) that retries on EINTR. Returns bytes read, 0 at EOF, -errno. */
static ssize_t read_some(int fd, void *buf, size_t n)
{
	ssize_t r;

	do
		r = read(fd, buf, n);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* Open `path` and decide between plain and gzip by its first two bytes. */
static int src_open(struct src *s, const char *path, struct tr_err *err)
{
	unsigned char magic[2];
	struct stat st;
	ssize_t r;
	int rc;

	memset(s, 0, sizeof(*s));
	s->path = path;
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			return tr_err_set(err, rc, "%s: not found", path);
		return tr_err_set(err, rc, "%s: cannot open: %s", path,
				  strerror(-rc));
	}
	if (fstat(s->fd, &st) < 0) {
		rc = tr_err_set(err, -errno, "%s: cannot stat: %s", path,
				strerror(errno));
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = tr_err_set(err, -EINVAL, "%s: not a regular file", path);
		goto close_fd;
	}
	s->file_size = (uint64_t)st.st_size;
	if (s->file_size == 0) {
		rc = tr_err_set(err, -EIO, "%s: empty file", path);
		goto close_fd;
	}

	do
		r = pread(s->fd, magic, sizeof(magic), 0);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		rc = tr_err_set(err, -EIO, "%s: read error: %s", path,
				strerror(errno));
		goto close_fd;
	}
	s->gz = r == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
	if (!s->gz && has_suffix(path, ".gz")) {
		rc = tr_err_set(err, -EINVAL,
				"%s: not a gzip file (no gzip magic 1f 8b)",
				path);
		goto close_fd;
	}
	if (!s->gz)
		return 0;

	s->in = malloc(GZ_IN_SIZE);
	if (!s->in) {
		rc = tr_err_set(err, -ENOMEM, "%s: out of memory", path);
		goto close_fd;
	}
	/* 16 + MAX_WBITS: gzip wrapper only, with CRC-32 and length check. */
	if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK) {
		rc = tr_err_set(err, -ENOMEM, "%s: cannot start zlib", path);
		goto free_in;
	}
	s->zs_ready = true;
	return 0;

free_in:
	free(s->in);
	s->in = NULL;
close_fd:
	close(s->fd);
	s->fd = -1;
	return rc;
}

static void src_close(struct src *s)
{
	if (s->zs_ready)
		inflateEnd(&s->zs);
	free(s->in);
	if (s->fd >= 0)
		close(s->fd);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}

/* Read up to n bytes of a plain file; *got < n only at end of file. */
static int plain_read(struct src *s, uint8_t *buf, size_t n, size_t *got,
		      struct tr_err *err)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = read_some(s->fd, buf + done, n - done);

		if (r < 0)
			return tr_err_set(err, -EIO, "%s: read error: %s",
					  s->path, strerror((int)-r));
		if (r == 0)
			break;
		done += (size_t)r;
	}
	*got = done;
	return 0;
}

/* Inflate up to n bytes; *got < n only at the end of the gzip stream. */
static int gz_read(struct src *s, uint8_t *buf, size_t n, size_t *got,
		   struct tr_err *err)
{
	z_stream *zs = &s->zs;
	size_t done = 0;

	while (done < n && !s->gz_end) {
		size_t want = n - done;
		uInt chunk = want > UINT_MAX ? UINT_MAX : (uInt)want;
		int zr;

		if (zs->avail_in == 0) {
			ssize_t r = read_some(s->fd, s->in, GZ_IN_SIZE);

			if (r < 0)
				return tr_err_set(err, -EIO,
						  "%s: read error: %s",
						  s->path, strerror((int)-r));
			if (r == 0)
				return tr_err_set(err, -EIO,
						  "%s: truncated gzip stream (unexpected end of file)",
						  s->path);
			zs->next_in = s->in;
			zs->avail_in = (uInt)r;
		}
		zs->next_out = buf + done;
		zs->avail_out = chunk;
		zr = inflate(zs, Z_NO_FLUSH);
		done += chunk - zs->avail_out;
		if (zr == Z_STREAM_END) {
			s->gz_end = true;
		} else if (zr == Z_MEM_ERROR) {
			return tr_err_set(err, -ENOMEM,
					  "%s: out of memory in zlib", s->path);
		} else if (zr != Z_OK && !(zr == Z_BUF_ERROR && zs->avail_in == 0)) {
			/* Z_BUF_ERROR with input left would mean no progress
			 * is possible: as corrupt as Z_DATA_ERROR. */
			return tr_err_set(err, -EIO,
					  "%s: corrupt gzip stream: %s", s->path,
					  zs->msg ? zs->msg : zError(zr));
		}
	}
	*got = done;
	return 0;
}

static int src_read(struct src *s, uint8_t *buf, size_t n, size_t *got,
		    struct tr_err *err)
{
	return s->gz ? gz_read(s, buf, n, got, err)
		     : plain_read(s, buf, n, got, err);
}

/* Check that `s` is exactly at its end after `expected` bytes were read. */
static int src_expect_end(struct src *s, uint64_t expected, struct tr_err *err)
{
	uint8_t extra[64];
	size_t got;
	ssize_t r;
	int rc;

	rc = src_read(s, extra, sizeof(extra), &got, err);
	if (rc)
		return rc;
	if (got > 0)
		return tr_err_set(err, -EIO,
				  "%s: trailing bytes: expected %llu bytes, %s is longer",
				  s->path, (unsigned long long)expected,
				  s->gz ? "decompressed data" : "file");
	if (!s->gz)
		return 0;
	/* The gzip stream ended cleanly; nothing may follow it. */
	if (s->zs.avail_in == 0) {
		r = read_some(s->fd, extra, 1);
		if (r < 0)
			return tr_err_set(err, -EIO, "%s: read error: %s",
					  s->path, strerror((int)-r));
		if (r == 0)
			return 0;
	}
	return tr_err_set(err, -EIO, "%s: trailing data after the gzip stream",
			  s->path);
}

/*
 * Read exactly `size` payload bytes into a new buffer (*out, owned by the
 * caller on success). For gzip the buffer grows as data arrives; see the top
 * of the file. `total` (header + payload) is only for the message.
 */
/* A buffer of `size` bytes for images that training reads a row at a time
 * in random order: over HUGE_MIN, in transparent huge pages where the
 * kernel grants them (MADV_HUGEPAGE: the machines' default is "madvise").
 * In 4 KiB pages every row of a batch was a TLB miss, and a page walk
 * under a hypervisor costs a few memory reads: the batch gather of the
 * lesson's MLP spent three quarters of its time on each row's first load.
 * free() releases it either way; the contents are the same. */
#define HUGE_PAGE (2u << 20)
#define HUGE_MIN (8u << 20)

static void *alloc_images(size_t size)
{
	size_t len = (size + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
	void *p;

	if (size < HUGE_MIN)
		return malloc(size);
	p = aligned_alloc(HUGE_PAGE, len);
	if (p)
		(void)madvise(p, len, MADV_HUGEPAGE);   /* advice only: 4 KiB pages otherwise */
	return p;
}

static int read_payload(struct src *s, size_t size, uint64_t total,
			uint8_t **out, struct tr_err *err)
{
	size_t cap = s->gz && size > GZ_FIRST_ALLOC ? GZ_FIRST_ALLOC : size;
	size_t have = 0, got;
	uint8_t *buf, *grown;
	int rc;

	buf = cap == size ? alloc_images(size) : malloc(cap);
	if (!buf)
		return tr_err_set(err, -ENOMEM,
				  "%s: out of memory for %zu bytes", s->path,
				  cap);
	while (have < size) {
		if (have == cap) {
			cap = cap > size / 2 ? size : cap * 2;
			grown = realloc(buf, cap);
			if (!grown) {
				rc = tr_err_set(err, -ENOMEM,
						"%s: out of memory for %zu bytes",
						s->path, cap);
				goto free_buf;
			}
			buf = grown;
		}
		rc = src_read(s, buf + have, cap - have, &got, err);
		if (rc)
			goto free_buf;
		have += got;
		if (have < cap)
			break;          /* end of data */
	}
	if (have < size) {
		rc = tr_err_set(err, -EIO,
				"%s: truncated: expected %llu bytes, got %llu%s",
				s->path, (unsigned long long)total,
				(unsigned long long)(total - size + have),
				s->gz ? " (decompressed)" : "");
		goto free_buf;
	}
	*out = buf;
	return 0;

free_buf:
	free(buf);
	return rc;
}

/* Read the header fields (magic excluded) into `hdr`, which has n bytes. */
static int read_header(struct src *s, unsigned char *hdr, size_t n,
		       size_t already, struct tr_err *err)
{
	size_t got;
	int rc;

	rc = src_read(s, hdr, n, &got, err);
	if (rc)
		return rc;
	if (got == n)
		return 0;
	if (already + got == 0)
		return tr_err_set(err, -EIO, "%s: empty file", s->path);
	return tr_err_set(err, -EIO,
			  "%s: truncated header: expected %zu bytes, got %zu",
			  s->path, already + n, already + got);
}

/* Load one IDX file whose magic must be `magic`, validating everything;
 * its payload is charged to m's budget (m may be NULL) before it is read. */
static int idx_read(struct idx_file *f, const char *path, uint32_t magic,
		    bool header_only, const struct ds_meta *m, struct tr_err *err)
{
	unsigned char hdr[4 * 4];
	uint64_t payload, total;
	uint32_t got_magic;
	struct src s;
	int rc;

	memset(f, 0, sizeof(*f));
	f->ndims = magic & 0xff;

	rc = src_open(&s, path, err);
	if (rc)
		return rc;

	rc = read_header(&s, hdr, 4, 0, err);
	if (rc)
		goto close_src;
	got_magic = be32(hdr);
	if (got_magic != magic) {
		const char *hint = "";

		if (got_magic == IDX_IMAGES_MAGIC)
			hint = " (this is an image file)";
		else if (got_magic == IDX_LABELS_MAGIC)
			hint = " (this is a label file)";
		rc = tr_err_set(err, -EINVAL,
				"%s: bad magic 0x%08x, expected 0x%08x%s",
				path, got_magic, magic, hint);
		goto close_src;
	}
	rc = read_header(&s, hdr + 4, 4 * f->ndims, 4, err);
	if (rc)
		goto close_src;
	for (uint32_t i = 0; i < f->ndims; i++)
		f->dims[i] = be32(hdr + 4 + 4 * i);

	if (f->dims[0] == 0 || f->dims[0] > IDX_MAX_COUNT) {
		rc = tr_err_set(err, -EINVAL,
				"%s: bad count %u (must be 1..%u)", path,
				f->dims[0], IDX_MAX_COUNT);
		goto close_src;
	}
	payload = f->dims[0];
	for (uint32_t i = 1; i < f->ndims; i++) {
		if (f->dims[i] == 0 || f->dims[i] > IDX_MAX_SIDE) {
			rc = tr_err_set(err, -EINVAL,
					"%s: bad dimensions %ux%u (rows and cols must be 1..%u)",
					path, f->dims[1], f->dims[2],
					IDX_MAX_SIDE);
			goto close_src;
		}
		payload *= f->dims[i];  /* < 10^7 * 4096 * 4096 < 2^48 */
	}
	total = 4 + 4 * (uint64_t)f->ndims + payload;
	if (payload > SIZE_MAX) {
		rc = tr_err_set(err, -EINVAL,
				"%s: payload of %llu bytes too large for this machine",
				path, (unsigned long long)payload);
		goto close_src;
	}
	if (!s.gz && s.file_size != total) {
		rc = tr_err_set(err, -EIO, "%s: %s: expected %llu bytes, got %llu",
				path, s.file_size < total ? "truncated"
							   : "trailing bytes",
				(unsigned long long)total,
				(unsigned long long)s.file_size);
		goto close_src;
	}

	if (header_only) {
		src_close(&s);
		return 0;
	}
	{
		char detail[160];

		if (f->ndims == 3)
			snprintf(detail, sizeof(detail), "its %u images of %ux%u%s", f->dims[0], f->dims[1],
				 f->dims[2], s.gz ? " (decompressed)" : "");
		else
			snprintf(detail, sizeof(detail), "its %u labels", f->dims[0]);
		rc = ds_budget_charge(m, payload, true, path, detail, err);
		if (rc)
			goto close_src;
	}
	rc = read_payload(&s, (size_t)payload, total, &f->data, err);
	if (rc)
		goto close_src;
	f->size = (size_t)payload;
	rc = src_expect_end(&s, total, err);
	if (rc)
		goto free_data;
	src_close(&s);
	return 0;

free_data:
	free(f->data);
	f->data = NULL;
	f->size = 0;
close_src:
	src_close(&s);
	return rc;
}

/* Load an image file and its label file; `limit` bounds the labels;
 * header_only leaves the pixels unread (NULL). */
static int idx_pair_load(struct ds_split *out, const char *images_path, const char *labels_path,
			 uint32_t limit, bool header_only, const struct ds_meta *m, struct tr_err *err)
{
	struct idx_file images, labels;
	int rc;

	memset(out, 0, sizeof(*out));

	rc = idx_read(&images, images_path, IDX_IMAGES_MAGIC, header_only, m, err);
	if (rc)
		return rc;
	rc = idx_read(&labels, labels_path, IDX_LABELS_MAGIC, false, m, err);
	if (rc)
		goto free_images;
	if (labels.dims[0] != images.dims[0]) {
		rc = tr_err_set(err, -EINVAL,
				"%s: count mismatch: %u labels but %u images in %s",
				labels_path, labels.dims[0], images.dims[0],
				images_path);
		goto free_labels;
	}
	for (size_t i = 0; i < labels.size; i++) {
		if (labels.data[i] >= limit) {
			rc = tr_err_set(err, -EINVAL,
					"%s: label %u at index %zu out of range (must be < %u)",
					labels_path, labels.data[i], i, limit);
			goto free_labels;
		}
	}

	out->count = images.dims[0];
	out->channels = 1;
	out->rows = images.dims[1];
	out->cols = images.dims[2];
	out->pixels = images.data;
	out->labels = labels.data;
	return 0;

free_labels:
	free(labels.data);
free_images:
	free(images.data);
	return rc;
}

int idx_set_load(struct ds_split *out, const char *images_path,
		 const char *labels_path, struct tr_err *err)
{
	return idx_pair_load(out, images_path, labels_path, DATASET_MAX_CLASSES, false, NULL, err);
}

/*
 * Find `name` in `dir`: the plain file if it exists, else name + ".gz".
 * On success *out is a new string owned by the caller.
 */
static int find_file(char **out, const char *dir, const char *name,
		     struct tr_err *err)
{
	size_t len = strlen(dir) + 1 + strlen(name) + sizeof(".gz");
	struct stat st;
	char *path;
	int rc;

	*out = NULL;
	path = malloc(len);
	if (!path)
		return tr_err_set(err, -ENOMEM, "%s/%s: out of memory", dir,
				  name);
	snprintf(path, len, "%s/%s", dir, name);
	if (stat(path, &st) == 0)
		goto found;
	if (errno != ENOENT)
		goto stat_failed;
	snprintf(path, len, "%s/%s.gz", dir, name);
	if (stat(path, &st) == 0)
		goto found;
	if (errno != ENOENT)
		goto stat_failed;
	free(path);
	return tr_err_set(err, -ENOENT, "%s/%s: not found (nor %s.gz)", dir,
			  name, name);

stat_failed:
	rc = -errno;
	tr_err_set(err, rc, "%s: cannot stat: %s", path, strerror(-rc));
	free(path);
	return rc;

found:
	*out = path;
	return 0;
}

/* Load one split from `dir` given its two file names. */
static int split_load(struct ds_split *set, const char *dir,
		      const char *images_name, const char *labels_name,
		      uint32_t limit, bool probe, const struct ds_meta *m, char **images_path, struct tr_err *err)
{
	char *labels_path;
	int rc;

	rc = find_file(images_path, dir, images_name, err);
	if (rc)
		return rc;
	rc = find_file(&labels_path, dir, labels_name, err);
	if (rc)
		return rc;
	rc = idx_pair_load(set, *images_path, labels_path, limit, probe, m, err);
	free(labels_path);
	return rc;
}

int ds_load_idx(struct dataset *ds, const char *dir, bool probe, const struct ds_meta *m,
		struct tr_err *err)
{
	char *train_images = NULL, *test_images = NULL;
	uint32_t limit = ds_label_limit(m);
	int rc;

	rc = split_load(&ds->train, dir, "train-images-idx3-ubyte",
			"train-labels-idx1-ubyte", limit, probe, m, &train_images, err);
	if (rc)
		goto out;
	rc = split_load(&ds->test, dir, "t10k-images-idx3-ubyte",
			"t10k-labels-idx1-ubyte", limit, probe, m, &test_images, err);
	if (rc)
		goto out;
	if (ds->test.rows != ds->train.rows || ds->test.cols != ds->train.cols) {
		rc = tr_err_set(err, -EINVAL,
				"%s: dimensions mismatch: test images are %ux%u but %s has %ux%u",
				test_images, ds->test.rows, ds->test.cols,
				train_images, ds->train.rows, ds->train.cols);
		goto out;
	}
	ds->dtype = DS_U8;
	ds->layout = DS_NCHW;
out:
	free(train_images);
	free(test_images);
	return rc;
}
