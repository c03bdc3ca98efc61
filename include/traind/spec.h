/*
 * spec.h - the layer language: a model written as PyTorch's nn.Sequential.
 *
 * A SPEC is a comma-separated list of layers named as PyTorch's constructors,
 * lower-case, with the input sizes inferred from the data:
 *   flatten, linear(OUT[,bias=false]), relu, tanh, gelu, dropout([P]),
 *   batchnorm1d, batchnorm2d, conv2d(OUT,K[,stride=S][,padding=P][,bias=false]),
 *   maxpool2d(K[,stride=S]), avgpool2d(K[,stride=S])
 * or a named architecture, which expands to a SPEC:
 *   mlp     flatten,linear(H1),relu,...,linear(CLASSES) from the config's hidden widths
 *   lenet5  conv2d(6,5,padding=2),relu,maxpool2d(2),conv2d(16,5),relu,maxpool2d(2),
 *           flatten,linear(120),relu,linear(84),relu,linear(CLASSES)
 * Layer i (0-based) is the nn.Sequential index: its tensors are net.{i}.weight,
 * net.{i}.bias and, for BatchNorm, net.{i}.running_mean, .running_var and
 * .num_batches_tracked.
 *
 * spec_parse checks the grammar and each layer's arguments; spec_shapes then
 * walks the shapes from the data's (C, H, W) and names the layer and the
 * shapes when something does not fit.
 *
 * Thread: plain data and pure functions; any thread.
 */
#ifndef TRAIND_SPEC_H
#define TRAIND_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"

#define SPEC_MAX_LAYERS 64
#define SPEC_TEXT_MAX 1024   /* a SPEC's text, with NUL */

enum layer_kind {
	LAYER_FLATTEN,
	LAYER_LINEAR,
	LAYER_RELU,
	LAYER_TANH,
	LAYER_GELU,
	LAYER_DROPOUT,
	LAYER_BATCHNORM1D,
	LAYER_BATCHNORM2D,
	LAYER_CONV2D,
	LAYER_MAXPOOL2D,
	LAYER_AVGPOOL2D,
};

struct layer_spec {
	enum layer_kind kind;
	uint32_t out;        /* linear: out features; conv2d: out channels */
	uint32_t k;          /* conv2d, pools: kernel size */
	uint32_t stride;     /* conv2d (1), pools (k) */
	uint32_t padding;    /* conv2d (0) */
	bool bias;           /* linear, conv2d (true) */
	double p;            /* dropout (0.5) */
};

struct model_spec {
	uint32_t n;
	struct layer_spec layers[SPEC_MAX_LAYERS];
};

/* A per-sample shape: C x H x W, or a flat vector of C features (h = w = 1). */
struct shape {
	uint32_t c, h, w;
	bool flat;
};

/* Parse text (a SPEC or a named architecture). `hidden`/`n_hidden` and
 * `classes` expand "mlp". Errors name the layer (1-based position) and what is
 * wrong with it. */
int spec_parse(struct model_spec *out, const char *text, const uint32_t *hidden, uint32_t n_hidden,
	       uint32_t classes, struct tr_err *err);

/* The MLP of `hidden` ending in `classes` outputs (what --hidden builds). */
void spec_mlp(struct model_spec *out, const uint32_t *hidden, uint32_t n_hidden, uint32_t classes);

/* Walk the shapes from `in`: shapes[i] is layer i's output (shapes has
 * spec->n entries; NULL to only check). Checks each layer fits its input, the
 * last layer gives a flat vector of `classes` (classes 0: any output, for
 * tests of single layers), and counts the parameters (weights and biases;
 * buffers not counted) into *params. */
int spec_shapes(const struct model_spec *spec, struct shape in, uint32_t classes,
		struct shape *shapes, uint64_t *params, struct tr_err *err);

/* The canonical text of one layer ("conv2d(6,5,padding=2)") and of a model. */
void spec_layer_text(const struct layer_spec *l, char *buf, size_t len);
void spec_text(const struct model_spec *spec, char *buf, size_t len);

/* "linear", "conv2d", ... */
const char *spec_kind_name(enum layer_kind k);
/* True for layers with a weight (and maybe a bias) tensor. */
bool spec_has_params(enum layer_kind k);
/* True for BatchNorm layers (running statistics buffers). */
bool spec_is_batchnorm(enum layer_kind k);

#endif
