/*
 * ds-st.c - safetensors datasets: train.safetensors and test.safetensors,
 * each with exactly the tensors "images" (U8 or F32, [N,H,W] or [N,C,H,W];
 * NHWC only when dataset.json says "layout": "NHWC") and "labels" (an integer
 * dtype, [N]: classes; or float targets, F32/F64 [N] or [N,K], or 0/1
 * integers [N,K]: multi-label; the tensor may then be named "targets"). The file is parsed by traind's strict safetensors parser
 * (engine/core/safetensors.c: header, offsets, sizes, no gaps or overlaps); the
 * checks on top are ds.h's. See include/traind/dataset.h.
 */
#include "engine/data/ds.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "traind/safetensors.h"

#define ST_FILE_MAX ((size_t)1 << 36)   /* 64 GiB: the caps on N and images bound it anyway */

static enum ds_num num_of(enum st_dtype t)
{
	switch (t) {
	case ST_F32: return NUM_F32;
	case ST_F64: return NUM_F64;
	case ST_I32: return NUM_I32;
	case ST_I64: return NUM_I64;
	case ST_U8: return NUM_U8;
	case ST_U32: return NUM_U32;
	default: return NUM_U64;
	}
}

static void view(struct ds_array *a, const struct st_tensor *t)
{
	memset(a, 0, sizeof(*a));
	a->type = num_of(t->dtype);
	a->ndim = t->ndim;
	for (int i = 0; i < t->ndim && i < 8; i++)
		a->shape[i] = t->shape[i];
}

int ds_st_parse(struct dataset *ds, struct ds_split *set, bool first, const uint8_t *buf,
		size_t len, const struct ds_meta *m, const char *what, struct tr_err *err)
{
	const struct st_tensor *ti, *tl;
	struct ds_array img, lab;
	struct ds_meta mm = *m;
	struct ds_split shape;
	enum ds_layout layout;
	struct st_file *f = NULL;
	char iwhat[4400], lwhat[4400];
	const char *lname = "labels", *iname = "images";
	int rc;

	if (!mm.has_layout) {
		mm.has_layout = true;
		mm.layout = DS_NCHW;
	}
	rc = st_parse(&f, buf, len, err);
	if (rc < 0) {
		tr_err_prefix(err, "%s", what);
		return rc;
	}
	ti = st_find(f, "images");
	if (!ti && (ti = st_find(f, "tokens")))
		iname = "tokens";
	snprintf(iwhat, sizeof(iwhat), "%s: tensor '%s'", what, iname);
	tl = st_find(f, "labels");
	if (!tl && (tl = st_find(f, "targets")))
		lname = "targets";
	snprintf(lwhat, sizeof(lwhat), "%s: tensor '%s'", what, lname);
	if (!ti || !tl) {
		rc = tr_err_set(err, -EINVAL, "%s: no tensor '%s' (a dataset file has 'images' (or 'tokens') and 'labels')",
				what, ti ? "labels" : "images");
		goto out;
	}
	if (f->ntensors != 2) {
		for (size_t i = 0; i < f->ntensors; i++)
			if (strcmp(f->tensors[i].name, iname) && strcmp(f->tensors[i].name, lname)) {
				rc = tr_err_set(err, -EINVAL,
						"%s: unexpected tensor '%s' (a dataset file has only 'images' and 'labels')",
						what, f->tensors[i].name);
				goto out;
			}
	}
	view(&img, ti);
	view(&lab, tl);
	if (strcmp(iname, "tokens") == 0 || ds_is_tokens(&img)) {
		if (!ds_is_tokens(&img)) {
			rc = tr_err_set(err, -EINVAL, "%s: token ids must be I32 or I64 of shape [N, T]", iwhat);
			goto out;
		}
		img.data = (void *)ti->data;   /* read only: converted to ids */
		lab.data = (void *)tl->data;
		rc = ds_split_from_arrays(ds, set, first, &img, &lab, &mm, iwhat, lwhat, err);
		goto out;
	}
	if (!m->has_layout && img.ndim == 4 && (img.shape[3] == 1 || img.shape[3] == 3 || img.shape[3] == 4) &&
	    !(img.shape[1] == 1 || img.shape[1] == 3 || img.shape[1] == 4)) {
		/* [N,C,H,W] is the rule; an NHWC-looking tensor needs saying so. */
		rc = tr_err_set(err, -EINVAL,
				"%s: shape [%llu, %llu, %llu, %llu] looks like NHWC, not [N,C,H,W]; state \"layout\": \"NHWC\" in dataset.json",
				iwhat, (unsigned long long)img.shape[0], (unsigned long long)img.shape[1],
				(unsigned long long)img.shape[2], (unsigned long long)img.shape[3]);
		goto out;
	}
	rc = ds_check_images(&img, &mm, iwhat, &shape, &layout, err);
	if (rc == 0)
		rc = ds_check_labels(&lab, shape.count, lwhat, err);
	if (rc < 0)
		goto out;
	img.data = malloc(ti->nbytes ? ti->nbytes : 1);
	if (!img.data) {
		rc = tr_err_set(err, -ENOMEM, "%s: out of memory", iwhat);
		goto out;
	}
	memcpy(img.data, ti->data, ti->nbytes);
	lab.data = (void *)tl->data;   /* read only by ds_labels_to_u8 */
	rc = ds_split_from_arrays(ds, set, first, &img, &lab, &mm, iwhat, lwhat, err);
	free(img.data);
out:
	st_file_free(f);
	return rc;
}

static int load_one(struct dataset *ds, struct ds_split *set, bool first, const char *dir,
		    const char *name, const struct ds_meta *m, struct tr_err *err)
{
	char path[4400];
	uint8_t *buf = NULL;
	size_t len = 0;
	struct stat st;
	int rc;

	/* the file is read whole, and the split keeps about as much */
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (stat(path, &st) == 0) {
		rc = ds_budget_charge(m, (uint64_t)st.st_size, false, path, "the file, read whole,", err);
		if (rc == 0)
			rc = ds_budget_charge(m, (uint64_t)st.st_size, true, path, "its tensors", err);
		if (rc < 0)
			return rc;
	}
	rc = ds_read_file(dir, name, ST_FILE_MAX, path, sizeof(path), &buf, &len, err);
	if (rc == 0)
		rc = ds_st_parse(ds, set, first, buf, len, m, path, err);
	free(buf);
	return rc;
}

int ds_load_safetensors(struct dataset *ds, const char *dir, const struct ds_meta *m,
			struct tr_err *err)
{
	int rc = load_one(ds, &ds->train, true, dir, "train.safetensors", m, err);

	if (rc == 0)
		rc = load_one(ds, &ds->test, false, dir, "test.safetensors", m, err);
	return rc;
}
