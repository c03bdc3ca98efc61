/*
 * ds.c - what the format loaders (ds-*.c) share: element types, the array
 * checks, building a split from arrays, dataset.json, reading a file. See
 * engine/data/ds.h.
 *
 * The array checks (ds_check_images, ds_check_labels, ds_labels_to_u8,
 * ds_check_finite) live here so that npy, npz, safetensors and CSV say the
 * same things the same way. Each function has one cleanup path; on failure
 * nothing is left allocated.
 *
 * Thread: any; no shared state.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine/data/ds.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "traind/fileio.h"

#define META_MAX_BYTES (1u << 20)   /* dataset.json */

/* ---- element types ---------------------------------------------------- */

size_t ds_num_size(enum ds_num t)
{
	static const size_t sizes[] = {
		[NUM_U8] = 1, [NUM_I8] = 1, [NUM_U16] = 2, [NUM_I16] = 2, [NUM_U32] = 4,
		[NUM_I32] = 4, [NUM_U64] = 8, [NUM_I64] = 8, [NUM_F16] = 2, [NUM_F32] = 4,
		[NUM_F64] = 8, [NUM_BOOL] = 1,
	};

	return sizes[t];
}

const char *ds_num_name(enum ds_num t)
{
	static const char *const names[] = {
		[NUM_U8] = "uint8", [NUM_I8] = "int8", [NUM_U16] = "uint16", [NUM_I16] = "int16",
		[NUM_U32] = "uint32", [NUM_I32] = "int32", [NUM_U64] = "uint64", [NUM_I64] = "int64",
		[NUM_F16] = "float16", [NUM_F32] = "float32", [NUM_F64] = "float64", [NUM_BOOL] = "bool",
	};

	return names[t];
}

bool ds_num_is_int(enum ds_num t)
{
	return t <= NUM_I64;
}

int ds_budget_charge(const struct ds_meta *m, uint64_t bytes, bool keep, const char *what, const char *detail,
		     struct tr_err *err)
{
	struct ds_budget *b = m ? m->budget : NULL;

	if (!b)
		return 0;
	if (bytes <= b->max && b->used <= b->max - bytes) {
		if (keep)
			b->used += bytes;
		return 0;
	}
	b->needed = b->used + bytes < b->used ? UINT64_MAX : b->used + bytes;
	if (b->used)
		return tr_err_set(err, -EFBIG, "%s: %s take %llu bytes in memory, %llu with what the dataset's "
				  "other files take: more than the %llu bytes allowed (%s)", what, detail,
				  (unsigned long long)bytes, (unsigned long long)b->needed,
				  (unsigned long long)b->max, b->limit);
	return tr_err_set(err, -EFBIG, "%s: %s take %llu bytes in memory, more than the %llu bytes allowed (%s)",
			  what, detail, (unsigned long long)bytes, (unsigned long long)b->max, b->limit);
}

uint32_t ds_label_limit(const struct ds_meta *m)
{
	return m && m->nnames ? m->nnames : DATASET_MAX_CLASSES;
}

/* ---- array checks ----------------------------------------------------- */

static bool channel_like(uint64_t v)
{
	return v == 1 || v == 3 || v == 4;
}

int ds_check_images(const struct ds_array *img, const struct ds_meta *m, const char *what,
		    struct ds_split *set, enum ds_layout *layout, struct tr_err *err)
{
	uint64_t n, c, h, w;

	if (img->type != NUM_U8 && img->type != NUM_F32)
		return tr_err_set(err, -EINVAL, "%s: images must be uint8 or float32, not %s", what,
				  ds_num_name(img->type));
	if (img->ndim == 3) {
		n = img->shape[0];
		c = 1;
		h = img->shape[1];
		w = img->shape[2];
		*layout = DS_NCHW;
	} else if (img->ndim == 4) {
		uint64_t a = img->shape[1], b = img->shape[3];

		if (m->has_layout)
			*layout = m->layout;
		else if (channel_like(b) && !channel_like(a))
			*layout = DS_NHWC;
		else if (channel_like(a) && !channel_like(b))
			*layout = DS_NCHW;
		else if (m->channels && a == m->channels && b != m->channels)
			*layout = DS_NCHW;
		else if (m->channels && b == m->channels && a != m->channels)
			*layout = DS_NHWC;
		else
			return tr_err_set(err, -EINVAL,
					  "%s: images of shape (%llu, %llu, %llu, %llu) could be NHWC or NCHW; state \"layout\" in dataset.json",
					  what, (unsigned long long)img->shape[0], (unsigned long long)a,
					  (unsigned long long)img->shape[2], (unsigned long long)b);
		n = img->shape[0];
		c = *layout == DS_NHWC ? b : a;
		h = *layout == DS_NHWC ? a : img->shape[2];
		w = *layout == DS_NHWC ? img->shape[2] : b;
	} else {
		return tr_err_set(err, -EINVAL,
				  "%s: images must have 3 dimensions (N, H, W) or 4 (N, H, W, C or N, C, H, W), not %d",
				  what, img->ndim);
	}
	if (n == 0 || n > DATASET_MAX_COUNT)
		return tr_err_set(err, -EINVAL, "%s: bad count %llu (must be 1..%u)", what,
				  (unsigned long long)n, DATASET_MAX_COUNT);
	if (c == 0 || c > DATASET_MAX_CHANNELS)
		return tr_err_set(err, -EINVAL, "%s: bad channel count %llu (must be 1..%u)", what,
				  (unsigned long long)c, DATASET_MAX_CHANNELS);
	if (h == 0 || w == 0 || h > DATASET_MAX_SIDE || w > DATASET_MAX_SIDE)
		return tr_err_set(err, -EINVAL,
				  "%s: bad dimensions %llux%llu (rows and cols must be 1..%u)", what,
				  (unsigned long long)h, (unsigned long long)w, DATASET_MAX_SIDE);
	if (c * h * w > DATASET_MAX_IMAGE)
		return tr_err_set(err, -EINVAL, "%s: images of %llux%llux%llu are too large (at most 2^24 values)",
				  what, (unsigned long long)c, (unsigned long long)h,
				  (unsigned long long)w);
	set->count = (uint32_t)n;
	set->channels = (uint32_t)c;
	set->rows = (uint32_t)h;
	set->cols = (uint32_t)w;
	return 0;
}

int ds_check_labels(const struct ds_array *lab, uint32_t count, const char *what,
		    struct tr_err *err)
{
	if (lab->type == NUM_F16)
		return tr_err_set(err, -EINVAL,
				  "%s: labels must be integers (classes) or float32/float64 (targets), not float16",
				  what);
	if (lab->ndim != 1 && lab->ndim != 2)
		return tr_err_set(err, -EINVAL,
				  "%s: labels must have 1 dimension (N: a class or a target per sample) or 2 (N, K targets per sample), not %d",
				  what, lab->ndim);
	if (lab->ndim == 1 && lab->type == NUM_BOOL)
		return tr_err_set(err, -EINVAL, "%s: bool labels of shape (N): save classes as integers", what);
	if (lab->shape[0] != count)
		return tr_err_set(err, -EINVAL, "%s: count mismatch: %llu labels but %u images", what,
				  (unsigned long long)lab->shape[0], count);
	if (lab->ndim == 2 && (lab->shape[1] == 0 || lab->shape[1] > DATASET_MAX_TARGETS))
		return tr_err_set(err, -EINVAL, "%s: %llu targets per sample (must be 1..%u)", what,
				  (unsigned long long)lab->shape[1], DATASET_MAX_TARGETS);
	return 0;
}

bool ds_labels_are_classes(const struct ds_array *lab)
{
	return ds_num_is_int(lab->type) && lab->ndim == 1;
}

/* Element i of a little-endian numeric array, as a double. */
static double elem_double(const struct ds_array *a, size_t i)
{
	const uint8_t *e = (const uint8_t *)a->data + i * ds_num_size(a->type);

	switch (a->type) {
	case NUM_U8: case NUM_BOOL: return e[0];
	case NUM_I8: return (int8_t)e[0];
	case NUM_U16: return (uint16_t)(e[0] | e[1] << 8);
	case NUM_I16: return (int16_t)(e[0] | e[1] << 8);
	case NUM_U32: { uint32_t v; memcpy(&v, e, 4); return v; }
	case NUM_I32: { int32_t v; memcpy(&v, e, 4); return v; }
	case NUM_U64: { uint64_t v; memcpy(&v, e, 8); return (double)v; }
	case NUM_I64: { int64_t v; memcpy(&v, e, 8); return (double)v; }
	case NUM_F32: { float v; memcpy(&v, e, 4); return v; }
	case NUM_F64: { double v; memcpy(&v, e, 8); return v; }
	default: return NAN;
	}
}

int ds_labels_to_float(const struct ds_array *lab, uint32_t count, const char *what, float **out,
		       struct tr_err *err)
{
	uint32_t w = lab->ndim == 2 ? (uint32_t)lab->shape[1] : 1;
	bool binary = lab->type != NUM_F32 && lab->type != NUM_F64;   /* integers (N, K): 0/1 */
	size_t n = (size_t)count * w;
	float *y;

	y = malloc((n ? n : 1) * sizeof(*y));
	if (!y)
		return tr_err_set(err, -ENOMEM, "%s: out of memory", what);
	for (size_t i = 0; i < n; i++) {
		double v = elem_double(lab, i);

		if (!isfinite(v) || fabs(v) > 3.4e38) {
			tr_err_set(err, -EINVAL, "%s: target %zu of sample %zu is %s", what, i % w, i / w,
				   isnan(v) ? "NaN" : "not a finite float32");
			free(y);
			return -EINVAL;
		}
		if (binary && v != 0 && v != 1) {
			tr_err_set(err, -EINVAL,
				   "%s: integer labels of shape (N, K) are multi-label targets, 0 or 1; sample %zu has %.0f at %zu",
				   what, i / w, v, i % w);
			free(y);
			return -EINVAL;
		}
		y[i] = (float)v;
	}
	*out = y;
	return 0;
}

int ds_labels_to_u8(const struct ds_array *lab, uint32_t count, uint32_t limit, const char *what,
		    uint8_t **out, struct tr_err *err)
{
	const uint8_t *p = lab->data;
	size_t es = ds_num_size(lab->type);
	uint8_t *y;

	y = malloc(count ? count : 1);
	if (!y)
		return tr_err_set(err, -ENOMEM, "%s: out of memory", what);
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = p + (size_t)i * es;
		int64_t v = 0;
		uint64_t u = 0;
		bool neg = false;

		switch (lab->type) {
		case NUM_U8: u = e[0]; break;
		case NUM_I8: v = (int8_t)e[0]; neg = v < 0; u = (uint64_t)v; break;
		case NUM_U16: u = (uint64_t)e[0] | (uint64_t)e[1] << 8; break;
		case NUM_I16: v = (int16_t)(e[0] | e[1] << 8); neg = v < 0; u = (uint64_t)v; break;
		case NUM_U32: case NUM_I32: {
			uint32_t x;

			memcpy(&x, e, 4);
			u = x;
			if (lab->type == NUM_I32) {
				v = (int32_t)x;
				neg = v < 0;
			}
			break;
		}
		default: {
			memcpy(&u, e, 8);
			if (lab->type == NUM_I64) {
				v = (int64_t)u;
				neg = v < 0;
			}
			break;
		}
		}
		if (neg || u >= limit) {
			if (neg)
				tr_err_set(err, -EINVAL, "%s: label %lld at index %u out of range (must be 0..%u)",
					   what, (long long)v, i, limit - 1);
			else
				tr_err_set(err, -EINVAL, "%s: label %llu at index %u out of range (must be < %u%s)",
					   what, (unsigned long long)u, i, limit,
					   limit == DATASET_MAX_CLASSES ? ": at most 256 classes"
									 : ", the class names' count");
			free(y);
			return -EINVAL;
		}
		y[i] = (uint8_t)u;
	}
	*out = y;
	return 0;
}

int ds_check_finite(const float *px, size_t n, size_t image, const char *what, struct tr_err *err)
{
	for (size_t i = 0; i < n; i++) {
		float v;

		memcpy(&v, px + i, sizeof(v));
		if (!isfinite(v))
			return tr_err_set(err, -EINVAL, "%s: image %zu has a %s pixel (at value %zu of the image)", what,
					  i / image, isnan(v) ? "NaN" : "infinite", i % image);
	}
	return 0;
}

bool ds_is_tokens(const struct ds_array *a)
{
	return (a->type == NUM_I32 || a->type == NUM_I64) && a->ndim == 2;
}

int ds_check_tokens(const struct ds_array *a, const char *what, struct tr_err *err)
{
	if (a->shape[0] == 0 || a->shape[0] > DATASET_MAX_COUNT)
		return tr_err_set(err, -EINVAL, "%s: bad count %llu of token sequences (must be 1..%u)", what,
				  (unsigned long long)a->shape[0], DATASET_MAX_COUNT);
	if (a->shape[1] == 0 || a->shape[1] > DATASET_MAX_SEQ)
		return tr_err_set(err, -EINVAL, "%s: sequences of %llu tokens (must be 1..%u)", what,
				  (unsigned long long)a->shape[1], DATASET_MAX_SEQ);
	if (a->shape[0] * a->shape[1] > (1ull << 31))
		return tr_err_set(err, -EINVAL, "%s: %llu x %llu tokens are too many (at most 2^31)", what,
				  (unsigned long long)a->shape[0], (unsigned long long)a->shape[1]);
	return 0;
}

/* n integers of a into uint32 ids, each < limit. */
static int to_ids(const struct ds_array *a, size_t n, uint32_t limit, const char *what,
		  const char *noun, uint32_t **out, struct tr_err *err)
{
	uint32_t *ids = malloc((n ? n : 1) * sizeof(*ids));

	if (!ids)
		return tr_err_set(err, -ENOMEM, "%s: out of memory", what);
	for (size_t i = 0; i < n; i++) {
		double v = elem_double(a, i);

		if (!(v >= 0 && v < limit)) {
			tr_err_set(err, -EINVAL, "%s: %s %.0f at index %zu (sequence %zu, position %zu) is not below %u%s",
				   what, noun, v, i, i / a->shape[1], i % a->shape[1], limit,
				   limit == DATASET_MAX_VOCAB ? "" : " (dataset.json's \"vocab_size\")");
			free(ids);
			return -EINVAL;
		}
		ids[i] = (uint32_t)v;
	}
	*out = ids;
	return 0;
}

/* Token arrays: img (N, T) integer ids; lab a class per sequence (N) or
 * per position (N, T). */
static int split_tokens(struct dataset *ds, struct ds_split *set, bool first,
			const struct ds_array *img, const struct ds_array *lab, const struct ds_meta *m,
			const char *img_what, const char *lab_what, struct tr_err *err)
{
	uint32_t n = (uint32_t)img->shape[0], T = (uint32_t)img->shape[1];
	uint32_t limit = m->vocab_size ? m->vocab_size : DATASET_MAX_VOCAB;
	bool per_position = lab->ndim == 2;
	enum ds_target target = per_position ? DS_TARGET_TOKENS : DS_TARGET_CLASS;
	struct ds_split s = { 0 };
	int rc;

	rc = ds_check_tokens(img, img_what, err);
	if (rc < 0)
		return rc;
	if (!ds_num_is_int(lab->type) || (lab->ndim != 1 && lab->ndim != 2) || lab->shape[0] != n ||
	    (per_position && lab->shape[1] != T))
		return tr_err_set(err, -EINVAL,
				  "%s: the labels of token sequences are integers, a class per sequence (%u) or per position (%u, %u)",
				  lab_what, n, n, T);
	if (!first && (!ds->tokens || T != ds->seq_len || target != ds->target))
		return tr_err_set(err, -EINVAL,
				  "%s: sequences of %u tokens with a class per %s, but the training split has %s",
				  img_what, T, per_position ? "position" : "sequence",
				  !ds->tokens ? "images" : ds->target == DS_TARGET_TOKENS ? "a class per position"
											  : "a class per sequence");
	if (first) {
		ds->tokens = true;
		ds->seq_len = T;
		ds->target = target;
		ds->target_width = 0;
		ds->dtype = DS_U8;
		ds->layout = DS_NCHW;
	}
	s.count = n;
	s.channels = 1;
	s.rows = T;
	s.cols = 1;
	if (img->data)
		rc = to_ids(img, (size_t)n * T, limit, img_what, "token", &s.tokens, err);
	if (rc == 0 && per_position)
		rc = to_ids(lab, (size_t)n * T, limit, lab_what, "target", &s.token_targets, err);
	else if (rc == 0)
		rc = ds_labels_to_u8(lab, n, ds_label_limit(m), lab_what, &s.labels, err);
	if (rc < 0) {
		ds_split_deinit(&s);
		return rc;
	}
	*set = s;
	return 0;
}

int ds_split_from_arrays(struct dataset *ds, struct ds_split *set, bool first,
			 struct ds_array *img, const struct ds_array *lab, const struct ds_meta *m,
			 const char *img_what, const char *lab_what, struct tr_err *err)
{
	enum ds_layout layout;
	enum ds_dtype dtype = img->type == NUM_F32 ? DS_F32 : DS_U8;
	bool classes = ds_labels_are_classes(lab);
	enum ds_target target = classes ? DS_TARGET_CLASS : DS_TARGET_VALUES;
	uint32_t width = classes ? 0 : lab->ndim == 2 ? (uint32_t)lab->shape[1] : 1;
	struct ds_split s = { 0 };
	int rc;

	if (ds_is_tokens(img))
		return split_tokens(ds, set, first, img, lab, m, img_what, lab_what, err);
	if (!first && ds->tokens)
		return tr_err_set(err, -EINVAL, "%s: images, but the training split has token sequences",
				  img_what);
	rc = ds_check_images(img, m, img_what, &s, &layout, err);
	if (rc == 0)
		rc = ds_check_labels(lab, s.count, lab_what, err);
	if (rc < 0)
		return rc;
	if (!first && target == ds->target && width != ds->target_width)
		return tr_err_set(err, -EINVAL, "%s: %u targets per sample, but the training split has %u",
				  lab_what, width, ds->target_width);
	if (!first && target != ds->target)
		return tr_err_set(err, -EINVAL,
				  "%s: %s, but the training split has %s (a sample's targets must be alike in both splits)",
				  lab_what, classes ? "classes (integers of shape (N))" : "float targets",
				  ds->target == DS_TARGET_CLASS ? "classes (integers of shape (N))" : "float targets");
	if (first) {
		ds->dtype = dtype;
		ds->layout = layout;
		ds->target = target;
		ds->target_width = width;
	} else if (dtype != ds->dtype) {
		return tr_err_set(err, -EINVAL, "%s: %s images, but the training images are %s", img_what,
				  dtype == DS_F32 ? "float32" : "uint8",
				  ds->dtype == DS_F32 ? "float32" : "uint8");
	} else if (s.channels > 1 && layout != ds->layout) {
		return tr_err_set(err, -EINVAL, "%s: %s images, but the training images are %s", img_what,
				  layout == DS_NHWC ? "NHWC" : "NCHW",
				  ds->layout == DS_NHWC ? "NHWC" : "NCHW");
	}
	if (img->data && dtype == DS_F32) {
		rc = ds_check_finite(img->data, (size_t)s.count * s.channels * s.rows * s.cols,
				     (size_t)s.channels * s.rows * s.cols, img_what, err);
		if (rc < 0)
			return rc;
	}
	if (classes)
		rc = ds_labels_to_u8(lab, s.count, ds_label_limit(m), lab_what, &s.labels, err);
	else
		rc = ds_labels_to_float(lab, s.count, lab_what, &s.targets, err);
	if (rc < 0)
		return rc;
	s.pixels = img->data;
	img->data = NULL;
	*set = s;
	return 0;
}

/* ---- dataset.json ----------------------------------------------------- */

void ds_meta_deinit(struct ds_meta *m)
{
	if (!m)
		return;
	free(m->names);
	free(m->target_names);
	free(m->target_cols);
	free(m->files);
	free(m->code_points);
	memset(m, 0, sizeof(*m));
}

static int meta_dim(const json_t *v, const char *key, uint32_t max, uint32_t *out, const char *what,
		    struct tr_err *err)
{
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
		return tr_err_set(err, -EINVAL, "%s: \"%s\" must be an integer 1..%u", what, key, max);
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

static int meta_floats(const json_t *v, const char *key, bool positive, float *out, uint32_t *n,
		       const char *what, struct tr_err *err)
{
	size_t i;
	json_t *x;

	if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > DATASET_MAX_CHANNELS)
		return tr_err_set(err, -EINVAL, "%s: \"%s\" must be an array of 1..%u numbers (one per channel)",
				  what, key, DATASET_MAX_CHANNELS);
	json_array_foreach(v, i, x) {
		double d;

		if (!json_is_number(x))
			return tr_err_set(err, -EINVAL, "%s: \"%s\"[%zu] is not a number", what, key, i);
		d = json_number_value(x);
		if (!isfinite(d) || fabs(d) > 1e30 || (positive && !((float)d > 0.0f)))
			return tr_err_set(err, -EINVAL, "%s: \"%s\"[%zu] = %g is %s", what, key, i, d,
					  positive ? "not a positive number" : "out of range");
		out[i] = (float)d;
	}
	*n = (uint32_t)json_array_size(v);
	return 0;
}

static int meta_names(struct ds_meta *m, const json_t *v, const char *what, struct tr_err *err)
{
	size_t i, n = json_array_size(v);
	json_t *x;

	if (!json_is_array(v) || n == 0 || n > DATASET_MAX_CLASSES)
		return tr_err_set(err, -EINVAL, "%s: \"classes\" must be an array of 1..%d names", what,
				  DATASET_MAX_CLASSES);
	m->names = calloc(n, sizeof(*m->names));
	if (!m->names)
		return tr_err_set(err, -ENOMEM, "%s: out of memory", what);
	json_array_foreach(v, i, x) {
		const char *s = json_string_value(x);
		size_t len;

		if (!s)
			return tr_err_set(err, -EINVAL, "%s: \"classes\"[%zu] is not a string", what, i);
		len = json_string_length(x);
		if (len == 0 || len >= DATASET_NAME_MAX || strlen(s) != len)
			return tr_err_set(err, -EINVAL, "%s: \"classes\"[%zu] must be 1..%d bytes", what, i,
					  DATASET_NAME_MAX - 1);
		for (size_t k = 0; k < len; k++)
			if ((unsigned char)s[k] < 0x20 || s[k] == 0x7f)
				return tr_err_set(err, -EINVAL, "%s: \"classes\"[%zu] has a control character",
						  what, i);
		for (size_t k = 0; k < i; k++)
			if (strcmp(m->names[k], s) == 0)
				return tr_err_set(err, -EINVAL, "%s: \"classes\"[%zu] \"%s\" is also \"classes\"[%zu]",
						  what, i, s, k);
		memcpy(m->names[i], s, len + 1);
	}
	m->nnames = (uint32_t)n;
	return 0;
}

/* "targets": names (strings) or CSV column indices (integers), 1..DATASET_MAX_TARGETS. */
static int meta_targets(struct ds_meta *m, const json_t *v, const char *what, struct tr_err *err)
{
	size_t i, n = json_array_size(v);
	json_t *x;

	if (!json_is_array(v) || n == 0 || n > DATASET_MAX_TARGETS)
		return tr_err_set(err, -EINVAL,
				  "%s: \"targets\" must be an array of 1..%d names (or CSV column numbers from 0)",
				  what, DATASET_MAX_TARGETS);
	if (json_is_integer(json_array_get(v, 0)))
		m->target_cols = calloc(n, sizeof(*m->target_cols));
	else
		m->target_names = calloc(n, sizeof(*m->target_names));
	if (!m->target_cols && !m->target_names)
		return tr_err_set(err, -ENOMEM, "%s: out of memory", what);
	json_array_foreach(v, i, x) {
		if (m->target_cols) {
			if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 1000000)
				return tr_err_set(err, -EINVAL,
						  "%s: \"targets\"[%zu] is not a column number (all names or all numbers)",
						  what, i);
			m->target_cols[i] = (uint32_t)json_integer_value(x);
			for (size_t k = 0; k < i; k++)
				if (m->target_cols[k] == m->target_cols[i])
					return tr_err_set(err, -EINVAL, "%s: \"targets\"[%zu]: column %u twice", what,
							  i, m->target_cols[i]);
		} else {
			const char *s = json_string_value(x);
			size_t len = s ? json_string_length(x) : 0;

			if (!s || len == 0 || len >= DATASET_NAME_MAX || strlen(s) != len)
				return tr_err_set(err, -EINVAL,
						  "%s: \"targets\"[%zu] must be a name of 1..%d bytes (all names or all numbers)",
						  what, i, DATASET_NAME_MAX - 1);
			for (size_t k = 0; k < i; k++)
				if (strcmp(m->target_names[k], s) == 0)
					return tr_err_set(err, -EINVAL, "%s: \"targets\"[%zu] \"%s\" twice", what, i, s);
			memcpy(m->target_names[i], s, len + 1);
		}
	}
	m->ntargets = (uint32_t)n;
	return 0;
}

/* A text's "files": base names (as an import gives them), 1..DSIMPORT's 32. */
static int meta_files(struct ds_meta *m, const json_t *v, const char *what, struct tr_err *err)
{
	size_t i, n = json_array_size(v);
	json_t *x;

	if (!json_is_array(v) || n == 0 || n > 64)
		return tr_err_set(err, -EINVAL, "%s: \"files\" must be an array of 1..64 file names", what);
	m->files = calloc(n, sizeof(*m->files));
	if (!m->files)
		return tr_err_set(err, -ENOMEM, "%s: out of memory", what);
	json_array_foreach(v, i, x) {
		const char *s = json_string_value(x);
		size_t len = s ? json_string_length(x) : 0;

		if (!s || len == 0 || len > 255 || strlen(s) != len || s[0] == '.' || strchr(s, '/'))
			return tr_err_set(err, -EINVAL,
					  "%s: \"files\"[%zu] must be a file name of the dataset's directory", what, i);
		memcpy(m->files[i], s, len + 1);
	}
	m->nfiles = (uint32_t)n;
	return 0;
}

/* A char vocabulary's "code_points": increasing, each a Unicode scalar value. */
static int meta_code_points(struct ds_meta *m, const json_t *v, const char *what, struct tr_err *err)
{
	size_t i, n = json_array_size(v);
	json_t *x;

	if (!json_is_array(v) || n == 0 || n > DATASET_MAX_CHARS)
		return tr_err_set(err, -EINVAL, "%s: \"code_points\" must be an array of 1..%u code points",
				  what, DATASET_MAX_CHARS);
	m->code_points = calloc(n, sizeof(*m->code_points));
	if (!m->code_points)
		return tr_err_set(err, -ENOMEM, "%s: out of memory", what);
	json_array_foreach(v, i, x) {
		json_int_t c = json_is_integer(x) ? json_integer_value(x) : -1;

		if (c < 0 || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff) ||
		    (i && (uint32_t)c <= m->code_points[i - 1]))
			return tr_err_set(err, -EINVAL,
					  "%s: \"code_points\"[%zu] is not a code point above the one before it (the list is sorted)",
					  what, i);
		m->code_points[i] = (uint32_t)c;
	}
	m->ncode_points = (uint32_t)n;
	return 0;
}

int ds_meta_parse(struct ds_meta *m, const char *text, size_t len, const char *what,
		  struct tr_err *err)
{
	json_error_t jerr;
	const char *key;
	json_t *root, *v;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return tr_err_set(err, -EINVAL, "%s: not valid JSON: line %d: %s", what, jerr.line,
				  jerr.text);
	if (!json_is_object(root)) {
		rc = tr_err_set(err, -EINVAL, "%s: must be a JSON object", what);
		goto out;
	}
	m->present = true;
	json_object_foreach(root, key, v) {
		if (strcmp(key, "classes") == 0) {
			rc = meta_names(m, v, what, err);
		} else if (strcmp(key, "layout") == 0) {
			const char *s = json_string_value(v);

			m->has_layout = true;
			if (s && strcmp(s, "NHWC") == 0)
				m->layout = DS_NHWC;
			else if (s && strcmp(s, "NCHW") == 0)
				m->layout = DS_NCHW;
			else
				rc = tr_err_set(err, -EINVAL, "%s: \"layout\" must be \"NHWC\" or \"NCHW\"", what);
		} else if (strcmp(key, "dtype") == 0) {
			const char *s = json_string_value(v);

			m->has_dtype = true;
			if (s && strcmp(s, "uint8") == 0)
				m->dtype = DS_U8;
			else if (s && strcmp(s, "float32") == 0)
				m->dtype = DS_F32;
			else
				rc = tr_err_set(err, -EINVAL, "%s: \"dtype\" must be \"uint8\" or \"float32\"", what);
		} else if (strcmp(key, "height") == 0) {
			rc = meta_dim(v, key, DATASET_MAX_SIDE, &m->height, what, err);
		} else if (strcmp(key, "width") == 0) {
			rc = meta_dim(v, key, DATASET_MAX_SIDE, &m->width, what, err);
		} else if (strcmp(key, "channels") == 0) {
			rc = meta_dim(v, key, DATASET_MAX_CHANNELS, &m->channels, what, err);
		} else if (strcmp(key, "mean") == 0) {
			rc = meta_floats(v, key, false, m->mean, &m->nmean, what, err);
		} else if (strcmp(key, "std") == 0) {
			rc = meta_floats(v, key, true, m->std, &m->nstd, what, err);
		} else if (strcmp(key, "targets") == 0) {
			rc = meta_targets(m, v, what, err);
		} else if (strcmp(key, "vocab") == 0) {
			const char *s = json_string_value(v);

			if (s && strcmp(s, "char") == 0)
				m->vocab_kind = DS_VOCAB_CHAR;
			else if (s && strcmp(s, "byte") == 0)
				m->vocab_kind = DS_VOCAB_BYTE;
			else
				rc = tr_err_set(err, -EINVAL, "%s: \"vocab\" must be \"char\" or \"byte\"", what);
		} else if (strcmp(key, "files") == 0) {
			rc = meta_files(m, v, what, err);
		} else if (strcmp(key, "code_points") == 0) {
			rc = meta_code_points(m, v, what, err);
		} else if (strcmp(key, "test_fraction") == 0) {
			m->has_test_fraction = true;
			m->test_fraction = json_is_number(v) ? json_number_value(v) : -1.0;
			if (!(m->test_fraction >= 0.0 && m->test_fraction < 1.0))
				rc = tr_err_set(err, -EINVAL, "%s: \"test_fraction\" must be a number in [0, 1)", what);
		} else if (strcmp(key, "vocab_size") == 0) {
			rc = meta_dim(v, key, DATASET_MAX_VOCAB, &m->vocab_size, what, err);
		} else {
			rc = tr_err_set(err, -EINVAL,
					"%s: unknown key \"%.64s\" (known: classes, layout, height, width, channels, dtype, mean, std, targets, vocab, files, code_points, test_fraction, vocab_size)",
					what, key);
		}
		if (rc < 0)
			goto out;
	}
	if ((m->nmean != 0) != (m->nstd != 0) || m->nmean != m->nstd)
		rc = tr_err_set(err, -EINVAL, "%s: \"mean\" and \"std\" must come together, with as many values",
				what);
	else if (m->nnames && m->ntargets)
		rc = tr_err_set(err, -EINVAL,
				"%s: \"classes\" (class labels) and \"targets\" (float targets) exclude each other",
				what);
	else if (m->vocab_kind == DS_VOCAB_NONE && (m->nfiles || m->ncode_points || m->has_test_fraction))
		rc = tr_err_set(err, -EINVAL,
				"%s: \"files\", \"code_points\" and \"test_fraction\" describe a text: give \"vocab\" too",
				what);
	else if (m->vocab_kind == DS_VOCAB_BYTE && m->ncode_points)
		rc = tr_err_set(err, -EINVAL, "%s: a byte vocabulary has no \"code_points\"", what);
out:
	json_decref(root);
	if (rc < 0)
		ds_meta_deinit(m);
	return rc;
}

int ds_meta_load(struct ds_meta *m, const char *dir, struct tr_err *err)
{
	char path[4096];
	uint8_t *text = NULL;
	size_t len = 0;
	struct stat st;
	int rc;

	memset(m, 0, sizeof(*m));
	snprintf(path, sizeof(path), "%s/dataset.json", dir);
	if (stat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return tr_err_set(err, -errno, "%s: cannot stat: %s", path, strerror(errno));
	}
	rc = file_read_all(path, META_MAX_BYTES, &text, &len, err);
	if (rc < 0)
		return rc;
	rc = ds_meta_parse(m, (const char *)text, len, path, err);
	free(text);
	return rc;
}

int ds_read_file(const char *dir, const char *name, size_t cap, char *path, size_t path_len,
		 uint8_t **buf, size_t *len, struct tr_err *err)
{
	int rc;

	snprintf(path, path_len, "%s/%s", dir, name);
	rc = file_read_all(path, cap, buf, len, err);
	if (rc == -ENOENT)
		rc = tr_err_set(err, -ENOENT, "%s: not found", path);
	return rc;
}
