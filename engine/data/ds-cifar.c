/*
 * ds-cifar.c - the CIFAR-10 binary format ("CIFAR-10 binary version" of
 * https://www.cs.toronto.edu/~kriz/cifar.html): data_batch_1.bin ...
 * data_batch_N.bin (the training split, in that order) and test_batch.bin,
 * each a run of 3073-byte records: a label byte, then 3072 pixel bytes, the
 * red, green and blue planes of a 32x32 image, each row-major; and
 * batches.meta.txt, the class names one a line. See include/traind/dataset.h.
 *
 * The images are kept as they are stored: uint8, NCHW, 3 x 32 x 32, so a
 * batch is gathered like IDX's (x/255 per value). The batches must be
 * numbered from 1 without a gap (the real set has 5); each file's size must
 * be a whole number of records; labels must be below the class names' count
 * (batches.meta.txt's, or dataset.json's "classes", which wins), else 256.
 */
#include "engine/data/ds.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_SIDE 32
#define CIFAR_IMAGE (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD (1 + CIFAR_IMAGE)
#define CIFAR_MAX_BATCHES 100
#define CIFAR_FILE_MAX ((size_t)CIFAR_RECORD * DATASET_MAX_COUNT)
#define META_MAX_BYTES (1u << 20)

static bool exists(const char *dir, const char *name)
{
	char path[4400];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

int ds_cifar_meta(struct ds_meta *m, const char *dir, struct tr_err *err)
{
	char path[4400];
	uint8_t *buf = NULL;
	size_t len = 0, n = 0, pos = 0;
	int rc;

	if (m->nnames || !exists(dir, "batches.meta.txt"))
		return 0;   /* dataset.json's names win */
	rc = ds_read_file(dir, "batches.meta.txt", META_MAX_BYTES, path, sizeof(path), &buf, &len, err);
	if (rc < 0)
		return rc;
	m->names = calloc(DATASET_MAX_CLASSES, sizeof(*m->names));
	if (!m->names) {
		free(buf);
		return tr_err_set(err, -ENOMEM, "%s: out of memory", path);
	}
	while (pos < len) {
		const char *ls = (const char *)buf + pos, *nl = memchr(ls, '\n', len - pos);
		size_t l = nl ? (size_t)(nl - ls) : len - pos;

		pos += l + (nl ? 1 : 0);
		while (l && (ls[l - 1] == '\r' || ls[l - 1] == ' ' || ls[l - 1] == '\t'))
			l--;
		if (l == 0)
			continue;   /* the real file ends in blank lines */
		if (n == DATASET_MAX_CLASSES || l >= DATASET_NAME_MAX) {
			rc = tr_err_set(err, -EINVAL, "%s: %s", path,
					n == DATASET_MAX_CLASSES ? "more than 256 class names"
								 : "a class name longer than 63 bytes");
			goto fail;
		}
		for (size_t k = 0; k < l; k++)
			if ((unsigned char)ls[k] < 0x20 || ls[k] == 0x7f) {
				rc = tr_err_set(err, -EINVAL, "%s: class name %zu has a control character", path,
						n + 1);
				goto fail;
			}
		memcpy(m->names[n], ls, l);
		m->names[n][l] = '\0';
		n++;
	}
	if (n == 0) {
		rc = tr_err_set(err, -EINVAL, "%s: no class names", path);
		goto fail;
	}
	m->nnames = (uint32_t)n;
	free(buf);
	return 0;
fail:
	free(buf);
	free(m->names);
	m->names = NULL;
	return rc;
}

/* Append the records of dir/name to the split being built; the file (read
 * whole) and what the split keeps of it are charged to m's budget first. */
static int read_batch(const char *dir, const char *name, uint32_t limit, bool probe, const struct ds_meta *m,
		      uint8_t **px, uint8_t **labels, size_t *count, struct tr_err *err)
{
	char path[4400];
	uint8_t *buf = NULL, *np, *nl;
	size_t len = 0, n;
	struct stat st;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (stat(path, &st) == 0) {
		rc = ds_budget_charge(m, (uint64_t)st.st_size, false, path, "the file, read whole,", err);
		if (rc == 0)
			rc = ds_budget_charge(m, probe ? (uint64_t)st.st_size / CIFAR_RECORD : (uint64_t)st.st_size,
					      true, path, "its images and labels", err);
		if (rc < 0)
			return rc;
	}
	rc = ds_read_file(dir, name, CIFAR_FILE_MAX, path, sizeof(path), &buf, &len, err);
	if (rc < 0)
		return rc;
	if (len == 0 || len % CIFAR_RECORD) {
		free(buf);
		return tr_err_set(err, -EIO,
				  "%s: %zu bytes is not a whole number of %u-byte records (a label byte and 3x32x32 pixels)",
				  path, len, CIFAR_RECORD);
	}
	n = len / CIFAR_RECORD;
	if (*count + n > DATASET_MAX_COUNT) {
		free(buf);
		return tr_err_set(err, -EINVAL, "%s: more than %u images in the split", path, DATASET_MAX_COUNT);
	}
	np = probe ? *px : realloc(*px, (*count + n) * CIFAR_IMAGE);
	nl = (!probe && !np) ? NULL : realloc(*labels, *count + n);
	if ((!probe && !np) || !nl) {
		if (np)
			*px = np;
		free(buf);
		return tr_err_set(err, -ENOMEM, "%s: out of memory", path);
	}
	*px = np;
	*labels = nl;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *rec = buf + i * CIFAR_RECORD;

		if (rec[0] >= limit) {
			free(buf);
			return tr_err_set(err, -EINVAL, "%s: record %zu: label %u out of range (must be < %u, %s)",
					  path, i, rec[0], limit,
					  limit == DATASET_MAX_CLASSES ? "at most 256 classes" : "the class names' count");
		}
		nl[*count + i] = rec[0];
		if (!probe)
			memcpy(np + (*count + i) * CIFAR_IMAGE, rec + 1, CIFAR_IMAGE);
	}
	*count += n;
	free(buf);
	return 0;
}

static int load_split(struct ds_split *set, const char *dir, bool train, uint32_t limit, bool probe,
		      const struct ds_meta *m, struct tr_err *err)
{
	uint8_t *px = NULL, *labels = NULL;
	size_t count = 0;
	int rc = 0, batches = 0;
	char name[32];

	if (train) {
		for (int b = 1; b <= CIFAR_MAX_BATCHES && rc == 0; b++) {
			snprintf(name, sizeof(name), "data_batch_%d.bin", b);
			if (!exists(dir, name)) {
				for (int later = b + 1; later <= CIFAR_MAX_BATCHES; later++) {
					snprintf(name, sizeof(name), "data_batch_%d.bin", later);
					if (exists(dir, name)) {
						rc = tr_err_set(err, -ENOENT, "%s/data_batch_%d.bin: not found (but %s is): the batches are numbered from 1 without a gap",
								dir, b, name);
						break;
					}
				}
				break;
			}
			batches++;
			rc = read_batch(dir, name, limit, probe, m, &px, &labels, &count, err);
		}
		if (rc == 0 && batches == 0)
			rc = tr_err_set(err, -ENOENT, "%s/data_batch_1.bin: not found", dir);
	} else {
		rc = read_batch(dir, "test_batch.bin", limit, probe, m, &px, &labels, &count, err);
	}
	if (rc < 0) {
		free(px);
		free(labels);
		return rc;
	}
	set->count = (uint32_t)count;
	set->channels = 3;
	set->rows = CIFAR_SIDE;
	set->cols = CIFAR_SIDE;
	set->pixels = px;
	set->labels = labels;
	return 0;
}

int ds_load_cifar(struct dataset *ds, const char *dir, bool probe, const struct ds_meta *m,
		  struct tr_err *err)
{
	uint32_t limit = ds_label_limit(m);
	int rc;

	if (m->ntargets)
		return tr_err_set(err, -EINVAL, "%s/dataset.json: CIFAR's labels are classes; \"targets\" does not apply",
				  dir);
	ds->dtype = DS_U8;
	ds->layout = DS_NCHW;
	rc = load_split(&ds->train, dir, true, limit, probe, m, err);
	if (rc == 0)
		rc = load_split(&ds->test, dir, false, limit, probe, m, err);
	return rc;
}
