/*
 * spec.h - the model language: layers written as PyTorch's constructors,
 * and blocks with skip paths, as a tree of sequences.
 *
 * A SPEC is a comma-separated list of items, each a layer or a block, with
 * the input sizes inferred from the data (doc/models.md has the grammar):
 *   layers  flatten, identity, linear(OUT[,bias=false]), relu, leakyrelu([S]),
 *           tanh, sigmoid, silu, gelu, softplus([beta=B][,threshold=T]),
 *           dropout([P]), batchnorm1d, batchnorm2d,
 *           conv2d(OUT,K[,stride=S][,padding=P][,dilation=D][,groups=G][,bias=false]),
 *           maxpool2d(K[,stride=S][,padding=P]), avgpool2d(K[,stride=S]),
 *           adaptiveavgpool2d(H[,W]), upsample(SCALE)
 *   sequences (doc/sequences.md)
 *           embedding(NUM,DIM[,padding_idx=P]), posembedding([NUM]),
 *           lstm(H[,layers=L][,dropout=P]), gru(H[,layers=L][,dropout=P]), last,
 *           layernorm, multiheadattention(E,HEADS[,causal][,dropout=P]),
 *           transformer_encoder_layer(E,HEADS,FF[,dropout=P][,norm_first=B][,causal=B])
 *   blocks  residual(BODY[; shortcut=SHORTCUT])   body(x) + shortcut(x); no
 *                                                  shortcut: + x
 *           concat(BRANCH; BRANCH[; ...])           torch.cat([b(x) ...], dim=1)
 * where BODY, SHORTCUT and BRANCH are SPECs themselves (blocks nest). Or a
 * named architecture, which expands to a SPEC:
 *   mlp       flatten,linear(H1),relu,...,linear(CLASSES) from the config's hidden widths
 *   lenet5    conv2d(6,5,padding=2),relu,maxpool2d(2),conv2d(16,5),relu,maxpool2d(2),
 *             flatten,linear(120),relu,linear(84),relu,linear(CLASSES)
 *   resnet20, resnet32, resnet56   He et al.'s CIFAR ResNets (6n+2 layers)
 *   resnet18, resnet18_cifar       torchvision's ResNet-18; _cifar: the 3x3
 *                                  stem without max pooling, for small images
 *   char_lstm([embed=E][,hidden=H][,layers=L][,dropout=P])
 *             embedding(V,E),lstm(H,layers=L,dropout=P),linear(V)
 *   gpt([layers=N][,dim=E][,heads=A][,ff=F][,dropout=P])
 *             embedding(V,E),posembedding, N x transformer_encoder_layer(E,A,F,
 *             dropout=P,norm_first=true,causal=true),layernorm,linear(V); GPT-2's
 *             initialisation (SPEC_INIT_GPT)
 *
 * The tree is stored flat, in the order of the text (a block before its
 * children): each item knows its block (parent), which branch of it it is
 * in, and its place in that branch (pos). A top-level item at pos i is
 * nn.Sequential's index i: its tensors are net.{i}.weight ...; a block's
 * branches are nn.Sequential modules too, named body / shortcut (residual)
 * and branches.{b} (concat): net.3.body.0.weight, net.5.branches.1.2.bias.
 * A SPEC without blocks keeps the names (and the bits) it always had.
 *
 * Shapes: the per-sample tensor an item takes and gives. Layers interpret
 * it (an image C x H x W, a flat vector of C features, a sequence of T
 * positions of E features, or T token ids); the graph itself
 * only needs its size in floats, equality (residual) and the first axis
 * (concat). doc/models.md says how a layer kind, or a shape kind such as a
 * sequence (T, E), is added.
 *
 * spec_parse checks the grammar and each layer's arguments; spec_shapes then
 * walks the shapes from the data's (C, H, W) and names the block, the layer
 * and the shapes when something does not fit.
 *
 * Thread: plain data and pure functions; any thread.
 */
#ifndef TRAIND_SPEC_H
#define TRAIND_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"

#define SPEC_MAX_LAYERS 256    /* items (layers and blocks) of one model */
#define SPEC_MAX_BRANCHES 8    /* branches of one block */
#define SPEC_MAX_DEPTH 4       /* blocks inside blocks (tensor names stay under 128 bytes) */
#define SPEC_TEXT_MAX 1024     /* a SPEC's text, with NUL */

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
	LAYER_ADAPTIVEAVGPOOL2D,
	LAYER_IDENTITY,
	LAYER_LEAKYRELU,
	LAYER_SIGMOID,
	LAYER_SILU,
	LAYER_SOFTPLUS,
	LAYER_UPSAMPLE,
	/* sequences (doc/sequences.md) */
	LAYER_EMBEDDING,
	LAYER_POSEMBEDDING,
	LAYER_LSTM,
	LAYER_GRU,
	LAYER_LAST,
	LAYER_LAYERNORM,
	LAYER_MHA,
	LAYER_TRANSFORMER,
	/* blocks: their children follow them in the array */
	LAYER_RESIDUAL,
	LAYER_CONCAT,
};

/* How a model's weights start (the architecture decides; see net.h). */
enum spec_init {
	SPEC_INIT_DEFAULT,      /* every module's reset_parameters */
	SPEC_INIT_TORCHVISION,  /* torchvision's ResNet: conv kaiming_normal_(fan_out, relu) */
	SPEC_INIT_GPT,          /* GPT-2's: Linear and Embedding weights N(0, 0.02), biases 0 */
};

struct layer_spec {
	enum layer_kind kind;
	uint32_t out;        /* linear: out features; conv2d: out channels; adaptiveavgpool2d: out H */
	uint32_t out_w;      /* adaptiveavgpool2d: out W */
	uint32_t k;          /* conv2d, pools: kernel size; upsample: scale factor */
	uint32_t stride;     /* conv2d (1), pools (k) */
	uint32_t padding;    /* conv2d, maxpool2d (0) */
	uint32_t dilation;   /* conv2d (1) */
	uint32_t groups;     /* conv2d (1) */
	bool bias;           /* linear, conv2d (true) */
	double p;            /* dropout: p (0.5); leakyrelu: negative_slope (0.01); softplus: beta (1) */
	double threshold;    /* softplus (20) */
	/* Sequences (out: embedding DIM, lstm/gru H, multiheadattention and
	 * transformer_encoder_layer E; p: their dropout): */
	uint32_t num;        /* embedding: rows; posembedding: positions (0: the input's) */
	int32_t padding_idx; /* embedding: the row that stays 0 and gets no gradient, -1: none */
	uint32_t layers;     /* lstm, gru: stacked layers (1) */
	uint32_t heads;      /* multiheadattention, transformer_encoder_layer */
	uint32_t ff;         /* transformer_encoder_layer: the feed-forward width */
	bool causal;         /* multiheadattention, transformer_encoder_layer: position t sees 0..t */
	bool norm_first;     /* transformer_encoder_layer: pre-LN (false: post-LN, PyTorch's default) */
	/* Where the item sits in the tree: */
	int32_t parent;      /* index of its block, -1 at the top */
	uint32_t branch;     /* which branch of the parent (residual: 0 body, 1 shortcut) */
	uint32_t pos;        /* its index in that branch (or at the top): nn.Sequential's */
	int32_t src;         /* the item whose output is its input, -1: the model's input */
	/* Blocks: */
	uint32_t end;        /* one past its last descendant */
	uint32_t nbranches;  /* residual: 1 (identity shortcut) or 2; concat: 2.. */
	int32_t last[SPEC_MAX_BRANCHES]; /* each branch's last item (its output); -1: none */
};

struct model_spec {
	uint32_t n;
	enum spec_init init;
	char arch[128];      /* the named architecture it came from ("resnet20", "gpt(layers=4,...)"), "" */
	struct layer_spec layers[SPEC_MAX_LAYERS];
};

/* A per-sample shape: C x H x W, or a flat vector of C features (h = w = 1),
 * or a sequence (seq): h = T positions of c = E features each (w = 1, stored
 * position-major: (T, E), PyTorch's batch_first), or T token ids (seq with
 * vocab > 0, c = 1: ids below vocab, held as floats). */
struct shape {
	uint32_t c, h, w;
	bool flat;
	bool seq;
	uint32_t vocab;
};

/* Parse text (a SPEC or a named architecture). `hidden`/`n_hidden` and
 * `classes` expand "mlp" (and size the named architectures' last layer).
 * Errors name the item (its place in the tree) and what is wrong with it. */
int spec_parse(struct model_spec *out, const char *text, const uint32_t *hidden, uint32_t n_hidden,
	       uint32_t classes, struct tr_err *err);

/* The MLP of `hidden` ending in `classes` outputs (what --hidden builds). */
void spec_mlp(struct model_spec *out, const uint32_t *hidden, uint32_t n_hidden, uint32_t classes);

/* Walk the shapes from `in`: shapes[i] is item i's output (shapes has
 * spec->n entries; NULL to only check). Checks each layer fits its input and
 * each block's branches agree, the model gives a flat vector of `classes`,
 * or a sequence of `classes` per position (a language model's scores over
 * its vocabulary; whether the data has a class per position is the
 * trainer's to check) (classes 0: any output, for tests of single layers),
 * and counts the parameters (weights and biases; buffers not counted) into
 * *params. */
int spec_shapes(const struct model_spec *spec, struct shape in, uint32_t classes,
		struct shape *shapes, uint64_t *params, struct tr_err *err);
/* Item i's input shape, given the output shapes spec_shapes found. */
struct shape spec_input_shape(const struct model_spec *spec, const struct shape *shapes,
			      struct shape in, uint32_t i);

/* The canonical text of one layer ("conv2d(6,5,padding=2)"; a block: its
 * kind), and of a model (a named ResNet: its name). */
void spec_layer_text(const struct layer_spec *l, char *buf, size_t len);
void spec_text(const struct model_spec *spec, char *buf, size_t len);
/* Where item i is, for messages: "layer 4 conv2d(16,5)", "block 3 (residual),
 * body layer 2 conv2d(16,3,padding=1)". */
void spec_where(const struct model_spec *spec, uint32_t i, char *buf, size_t len);
/* Its module path in the state_dict: "net.3" or "net.3.body.1". */
void spec_module_path(const struct model_spec *spec, uint32_t i, char *buf, size_t len);

/* Floats per sample of a shape, its text ("16×28×28", "256", "128×64
 * sequence", "128 tokens"), equality. */
size_t shape_size(struct shape s);
void shape_text(struct shape s, char *buf, size_t len);
bool shape_equal(struct shape a, struct shape b);

/* "linear", "conv2d", ... */
const char *spec_kind_name(enum layer_kind k);
/* True for layers with a weight (and maybe a bias) tensor. */
bool spec_has_params(enum layer_kind k);
/* True for BatchNorm layers (running statistics buffers). */
bool spec_is_batchnorm(enum layer_kind k);
/* True for blocks (residual, concat). */
bool spec_is_block(enum layer_kind k);
/* True for the layers of sequences that the engine runs in a phase of their
 * own, each team member on its samples (lstm, gru, multiheadattention,
 * transformer_encoder_layer, layernorm, posembedding). */
bool spec_is_sequence_layer(enum layer_kind k);

#endif
