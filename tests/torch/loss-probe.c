/*
 * loss-probe.c - traind's losses and augmentation transforms on given
 * tensors, for the PyTorch parity tests (tests/torch/test_losses.py).
 *
 *   loss-probe loss IN.safetensors OUT.safetensors
 *     IN: "out" F32 [N, W] (the net's outputs), "classes" I64 [N] or
 *     "values" F32 [N, W] (the targets), optionally "class_weights" and
 *     "pos_weight" F32 [W]; metadata "loss" (a loss name), "label_smoothing",
 *     "delta", "pieces" (the batch computed in that many pieces, as the
 *     trainer's shards, 1 by default), "kernels" (openblas, or portable: a
 *     portable job's exp and log).
 *     OUT: "loss" F64 [1] (the batch mean), "dout" F32 [N, W] (its gradient).
 *
 *   loss-probe augment IN.safetensors OUT.safetensors
 *     IN: "x" F32 [C, H, W]; "draw" I64 [4] (the transform's four draw
 *     words); metadata "spec" (one transform, an augment SPEC).
 *     OUT: "y" F32 [C, H, W] (x transformed with that draw), and "where" I64
 *     [3]: the crop's top and left in the padded image and whether a flip
 *     happened (what a torchvision transform with those choices does).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/augment.h"
#include "traind/fileio.h"
#include "traind/loss.h"
#include "traind/safetensors.h"

static int fail(const char *what, const char *msg)
{
	fprintf(stderr, "loss-probe: %s: %s\n", what, msg);
	return 1;
}

static double meta_double(const struct st_file *f, const char *key, double dflt)
{
	const char *v = st_meta_get(f, key);

	return v ? strtod(v, NULL) : dflt;
}

static int run_loss(const struct st_file *f, struct st_writer *w, float **dout_out)
{
	const struct st_tensor *out = st_find(f, "out"), *cls = st_find(f, "classes");
	const struct st_tensor *val = st_find(f, "values"), *cw = st_find(f, "class_weights");
	const struct st_tensor *pw = st_find(f, "pos_weight");
	struct loss l = { 0 };
	struct loss_targets y = { 0 };
	uint32_t *classes = NULL;
	size_t n, width, pieces = (size_t)meta_double(f, "pieces", 1);
	static double mean;   /* the writer keeps the pointer until it finishes */
	double sum = 0.0, norm;
	float *dout;
	uint64_t shape[2];

	if (!out || out->ndim != 2 || out->dtype != ST_F32 || loss_parse(st_meta_get(f, "loss") ?
									 st_meta_get(f, "loss") : "", &l.kind) < 0)
		return fail("loss", "needs out F32 [N, W] and a loss name");
	n = out->shape[0];
	width = out->shape[1];
	l.width = (uint32_t)width;
	l.label_smoothing = (float)meta_double(f, "label_smoothing", 0);
	l.delta = (float)meta_double(f, "delta", 1);
	l.kernels = st_meta_get(f, "kernels") && strcmp(st_meta_get(f, "kernels"), "portable") == 0
			    ? KERNELS_PORTABLE : KERNELS_OPENBLAS;
	l.class_weights = cw ? (const float *)cw->data : NULL;
	l.pos_weight = pw ? (const float *)pw->data : NULL;
	if (cls) {
		classes = malloc(n * sizeof(*classes));
		for (size_t i = 0; i < n; i++) {
			int64_t c;

			memcpy(&c, (const uint8_t *)cls->data + i * 8, 8);
			classes[i] = (uint32_t)c;
		}
		y.classes = classes;
	}
	y.values = val ? (const float *)val->data : NULL;
	dout = calloc(n * width, sizeof(float));
	norm = loss_norm(&l, &y, n);
	for (size_t p = 0; p < pieces; p++) {
		size_t lo = n * p / pieces, hi = n * (p + 1) / pieces;
		struct loss_targets ys = loss_targets_at(&y, lo, l.width);

		sum += loss_batch(&l, (const float *)out->data + lo * width, &ys, hi - lo, norm,
				  dout + lo * width);
	}
	mean = sum / norm;
	shape[0] = 1;
	st_writer_add(w, "loss", ST_F64, 1, shape, &mean);
	shape[0] = n;
	shape[1] = width;
	*dout_out = dout;
	free(classes);
	return st_writer_add(w, "dout", ST_F32, 2, shape, dout) < 0;
}

static int run_augment(const struct st_file *f, struct st_writer *w, float **y_out, int64_t *where)
{
	const struct st_tensor *x = st_find(f, "x"), *dr = st_find(f, "draw");
	struct tr_err err = { 0 };
	struct augment a;
	struct augment_data d;
	uint32_t draw[4];
	uint64_t shape[3];
	float *y;

	if (!x || x->ndim != 3 || x->dtype != ST_F32 || !dr || dr->shape[0] != 4)
		return fail("augment", "needs x F32 [C, H, W] and draw I64 [4]");
	if (augment_parse(&a, st_meta_get(f, "spec") ? st_meta_get(f, "spec") : "", &err) < 0 || a.n != 1)
		return fail("augment", a.n != 1 ? "one transform" : err.msg);
	d = (struct augment_data){ (uint32_t)x->shape[0], (uint32_t)x->shape[1], (uint32_t)x->shape[2], NULL,
				   NULL };
	if (augment_check(&a, &d, &err) < 0)
		return fail("augment", err.msg);
	for (int i = 0; i < 4; i++) {
		int64_t v;

		memcpy(&v, (const uint8_t *)dr->data + i * 8, 8);
		draw[i] = (uint32_t)v;
	}
	y = malloc(x->nbytes);
	memcpy(y, x->data, x->nbytes);
	augment_apply(&a.ops[0], &d, y, draw);
	/* where the transform cut and whether it flipped: found by applying it
	 * to a ramp of positions */
	{
		size_t hw = (size_t)d.h * d.w;
		float *pos = malloc(hw * sizeof(float));
		struct augment_data d1 = { 1, d.h, d.w, NULL, NULL };
		struct augment_op op = a.ops[0];

		for (size_t i = 0; i < hw; i++)
			pos[i] = (float)i + 1.0f;   /* 0: padding */
		op.fill = 0;
		augment_apply(&op, &d1, pos, draw);
		where[0] = where[1] = 0;
		where[2] = 0;
		if (op.kind == AUG_RANDOM_CROP) {
			/* the first output pixel that shows the image tells the shift */
			for (size_t i = 0; i < hw; i++)
				if (pos[i] > 0) {
					size_t src = (size_t)pos[i] - 1;
					int64_t oy = (int64_t)(i / d.w), ox = (int64_t)(i % d.w);

					where[0] = (int64_t)(src / d.w) - oy + op.padding;
					where[1] = (int64_t)(src % d.w) - ox + op.padding;
					break;
				}
		} else if (op.kind == AUG_RANDOM_HFLIP || op.kind == AUG_RANDOM_VFLIP) {
			where[2] = pos[0] != 1.0f;
		}
		free(pos);
	}
	shape[0] = x->shape[0];
	shape[1] = x->shape[1];
	shape[2] = x->shape[2];
	*y_out = y;
	if (st_writer_add(w, "y", ST_F32, 3, shape, y) < 0)
		return 1;
	shape[0] = 3;
	return st_writer_add(w, "where", ST_I64, 1, shape, where) < 0;
}

int main(int argc, char **argv)
{
	struct tr_err err = { 0 };
	struct st_file *f = NULL;
	struct st_writer *w = NULL;
	uint8_t *buf = NULL, *out = NULL;
	size_t len = 0, out_len = 0;
	float *keep = NULL;
	int64_t where[3];
	int rc;

	if (argc != 4 || (strcmp(argv[1], "loss") && strcmp(argv[1], "augment")))
		return fail("usage", "loss-probe loss|augment IN.safetensors OUT.safetensors");
	if (file_read_all(argv[2], (size_t)1 << 30, &buf, &len, &err) < 0 || st_parse(&f, buf, len, &err) < 0)
		return fail(argv[2], err.msg);
	if (st_writer_new(&w) < 0)
		return fail("writer", "out of memory");
	rc = strcmp(argv[1], "loss") == 0 ? run_loss(f, w, &keep) : run_augment(f, w, &keep, where);
	if (rc == 0 && (st_writer_finish(w, &out, &out_len) < 0 ||
			file_write_atomic(argv[3], out, out_len, &err) < 0))
		rc = fail(argv[3], err.msg[0] ? err.msg : "cannot write");
	free(out);
	free(keep);
	st_writer_free(w);
	st_file_free(f);
	free(buf);
	return rc;
}
