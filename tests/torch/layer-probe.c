/*
 * layer-probe.c - run one forward (and backward) of a model SPEC on given
 * tensors, for the PyTorch parity tests (tests/torch/test_layers.py).
 *
 *   layer-probe IN.safetensors OUT.safetensors
 *
 * IN holds "x" F32 [N, ...] (the input batch, NCHW or N x features), every
 * tensor of the model's state_dict (net.*), and for a training pass "dy" F32
 * [N, ...] (the gradient at the output). Its metadata: "model" (the SPEC),
 * "input" ("C,H,W"), "flat" ("1": the input is a vector of C features),
 * "seq" ("1": a sequence of H positions of C features), "vocab" (V > 0:
 * H token ids below V, given as floats), "train" ("1" or "0"), "threads",
 * "seed" and "step" (Dropout's stream), "seq_kernels" (the sequence
 * layers' arithmetic, config.h: 1, 2 or 3, the default), "precision" ("fp32", the
 * default, or "bf16": exits 77 naming what the CPU lacks when it cannot),
 * and "conv" ("gemm", the default, or "onednn": net_set_conv).
 * OUT gets "y" (the output), and after a training pass "dx" (the gradient at
 * the input), "grad.<name>" for every parameter, the model's tensors as they
 * are after the pass (BatchNorm's running statistics), and "mask.<i>" U8 for
 * each Dropout layer i (1 = kept).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/fileio.h"
#include "traind/kernels.h"
#include "traind/net.h"
#include "traind/portable.h"
#include "traind/safetensors.h"
#include "traind/spec.h"
#include "traind/team.h"

static int fail(const char *what, const char *msg)
{
	fprintf(stderr, "layer-probe: %s: %s\n", what, msg);
	return 1;
}

static unsigned meta_uint(const struct st_file *f, const char *key, unsigned dflt)
{
	const char *v = st_meta_get(f, key);

	return v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

int main(int argc, char **argv)
{
	struct tr_err err = { 0 };
	struct st_file *f = NULL;
	struct st_writer *w = NULL;
	struct model_spec spec;
	struct team *team = NULL;
	struct net n;
	struct shape in = { 0 };
	const struct st_tensor *x, *dy;
	uint8_t *buf = NULL, *out = NULL;
	size_t len = 0, out_len = 0;
	unsigned batch, threads;
	bool train;
	enum k_precision prec = K_FP32;
	char name[NET_TENSOR_NAME + 16];
	int rc;

	memset(&n, 0, sizeof(n));
	if (argc != 3)
		return fail("usage", "layer-probe IN.safetensors OUT.safetensors");
	kernels_global_init();
	if (file_read_all(argv[1], 1u << 30, &buf, &len, &err) < 0)
		return fail(argv[1], err.msg);
	if (st_parse(&f, buf, len, &err) < 0)
		return fail(argv[1], err.msg);
	if (!st_meta_get(f, "model") || !st_meta_get(f, "input") ||
	    sscanf(st_meta_get(f, "input"), "%u,%u,%u", &in.c, &in.h, &in.w) != 3)
		return fail(argv[1], "metadata model and input (C,H,W) are required");
	in.flat = meta_uint(f, "flat", 0) == 1;
	in.seq = meta_uint(f, "seq", 0) == 1 || meta_uint(f, "vocab", 0) > 0;
	in.vocab = meta_uint(f, "vocab", 0);
	train = meta_uint(f, "train", 0) == 1;
	threads = meta_uint(f, "threads", 1);
	if (spec_parse(&spec, st_meta_get(f, "model"), NULL, 0, 10, &err) < 0 ||
	    spec_shapes(&spec, in, 0, NULL, NULL, &err) < 0)
		return fail("model", err.msg);
	x = st_find(f, "x");
	if (!x || x->dtype != ST_F32 || x->ndim < 2)
		return fail(argv[1], "tensor x (F32, [N, ...]) is required");
	batch = (unsigned)x->shape[0];
	if (st_meta_get(f, "precision") && strcmp(st_meta_get(f, "precision"), "fp32") != 0) {
		if (strcmp(st_meta_get(f, "precision"), "bf16") != 0)
			return fail("precision", "expected fp32 or bf16");
		prec = K_BF16;
		if (k_precision_check(prec, &err) < 0) {
			fprintf(stderr, "layer-probe: %s\n", err.msg);
			return 77;
		}
	}
	if (team_new(&team, threads) < 0 || net_init(&n, &spec, in, 0, batch, team) < 0 ||
	    net_set_precision(&n, prec) < 0)
		return fail("net", "cannot build the model");
	/* kernels=portable: the portable kernels (TRAIND_ISA picks the path) */
	if (st_meta_get(f, "kernels") && strcmp(st_meta_get(f, "kernels"), "openblas") != 0) {
		if (strcmp(st_meta_get(f, "kernels"), "portable") != 0)
			return fail("kernels", "expected openblas or portable");
		if (pk_init(&err) < 0)
			return fail("kernels", err.msg);
		if (net_set_kernels(&n, KERNELS_PORTABLE) < 0)
			return fail("net", "out of memory");
	}
	if (st_meta_get(f, "conv") && strcmp(st_meta_get(f, "conv"), "gemm") != 0) {
		if (strcmp(st_meta_get(f, "conv"), "onednn") != 0)
			return fail("conv", "expected gemm or onednn");
		if (net_set_conv(&n, CONV_ONEDNN, &err) < 0)
			return fail("conv", err.msg);
	}
	if (x->nbytes != (uint64_t)batch * n.in_size * sizeof(float))
		return fail("x", "its size does not match the input shape");
	memcpy(n.x, x->data, x->nbytes);
	n.seq_kernels = meta_uint(f, "seq_kernels", 3);
	n.dropout_key = strtoull(st_meta_get(f, "seed") ? st_meta_get(f, "seed") : "0", NULL, 10);
	if (net_set_input_grad(&n, true) < 0)
		return fail("net", "out of memory");
	for (uint32_t i = 0; i < n.ntensors; i++) {
		const struct net_tensor *t = &n.tensors[i];
		const struct st_tensor *s = st_find(f, t->name);
		size_t elem = t->kind == TENSOR_COUNT ? sizeof(int64_t) : sizeof(float);

		if (!s || s->nbytes != t->len * elem)
			return fail(t->name, "missing, or not the size the model needs");
		memcpy(net_tensor_data(&n, t, NULL), s->data, s->nbytes);
	}
	net_forward(&n, batch, train, meta_uint(f, "step", 0));

	rc = st_writer_new(&w);
	{
		uint64_t shape[2] = { batch, (uint64_t)n.positions * n.classes };

		if (rc == 0)
			rc = st_writer_add(w, "y", ST_F32, 2, shape, net_output(&n));
	}
	if (train) {
		uint64_t shape[2] = { batch, n.in_size };

		dy = st_find(f, "dy");
		if (!dy || dy->dtype != ST_F32 ||
		    dy->nbytes != (uint64_t)batch * n.positions * n.classes * sizeof(float))
			return fail(argv[1], "tensor dy (F32, the output's shape) is required for train=1");
		memcpy(net_dout(&n), dy->data, dy->nbytes);
		net_backward(&n, batch);
		if (rc == 0)
			rc = st_writer_add(w, "dx", ST_F32, 2, shape, n.dx);
		for (uint32_t i = 0; rc == 0 && i < n.ntensors; i++) {
			const struct net_tensor *t = &n.tensors[i];

			if (t->kind == TENSOR_PARAM) {
				snprintf(name, sizeof(name), "grad.%s", t->name);
				rc = st_writer_add(w, name, ST_F32, t->ndim, t->shape, n.grads + t->off);
			}
		}
		for (uint32_t i = 0; rc == 0 && i < spec.n; i++) {
			uint64_t mshape[2] = { batch, n.layers[i].out_size };

			if (spec.layers[i].kind != LAYER_DROPOUT)
				continue;
			snprintf(name, sizeof(name), "mask.%u", i);
			rc = st_writer_add(w, name, ST_U8, 2, mshape, n.layers[i].mask);
		}
	}
	for (uint32_t i = 0; rc == 0 && i < n.ntensors; i++) {
		const struct net_tensor *t = &n.tensors[i];

		rc = st_writer_add(w, t->name, t->kind == TENSOR_COUNT ? ST_I64 : ST_F32, t->ndim,
				   t->shape, net_tensor_data(&n, t, NULL));
	}
	if (rc == 0)
		rc = st_writer_finish(w, &out, &out_len);
	if (rc < 0)
		return fail("output", "cannot serialize");
	if (file_write_atomic(argv[2], out, out_len, &err) < 0)
		return fail(argv[2], err.msg);
	st_writer_free(w);
	st_file_free(f);
	net_deinit(&n);
	team_free(team);
	free(buf);
	free(out);
	return 0;
}
