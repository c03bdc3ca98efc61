/*
 * net.h - a model as a graph of layers (a struct model_spec: a sequence of
 * layers and blocks) over one tensor table: forward in train or eval mode,
 * backward, and the optimizer step over the flat arrays.
 *
 * The tensor table: each layer declares its tensors (name, shape, kind) in
 * the PyTorch module's state_dict order (spec.h: net.3.weight,
 * net.4.body.0.weight ...). Parameters (weights and biases) are carved from
 * one flat float array, and so are their gradients and the optimizer's
 * moments (optim.h), in the same layout; BatchNorm's running statistics from a
 * flat float array of buffers, its num_batches_tracked from an int64 array.
 * The checkpoint writer and loader, the export, the parameter hash and the
 * optimizer walk the table; nothing outside engine/model knows what a layer
 * is.
 *
 * The graph: every item of the spec is a node with one output (a value);
 * a layer reads one value (its src), a block's join reads its branches' last
 * values (residual: their sum; concat: along the channels). Nodes run in
 * execution order (a block's children before its join); backward in the
 * reverse order. A value read by several nodes (a block's input) gets its
 * gradient from each, added in backward order.
 *
 * Activations: one buffer per node, (max_batch, the node's output size),
 * sized once, so a step allocates nothing (flatten and identity borrow
 * their input's). Samples are rows; an image is stored C x H x W (NCHW), so
 * flatten is free. Gradients flowing down live in a small pool of buffers
 * shared by values whose lifetimes in the backward pass do not overlap
 * (a chain needs two; a residual block three).
 *
 * Work split across the job's team, fixed by the shapes and the team size:
 * linear layers by output features (forward, weight gradients) and input
 * features (the gradient flowing down); conv2d and pools by samples (each
 * member sums its samples' weight gradients, then the partial sums are added
 * in member order); batchnorm by channel; elementwise layers and joins by
 * rows; the layers of sequences (lstm, gru, attention, the transformer
 * layer, layernorm, posembedding) by samples, each member its share at once,
 * with partial sums as conv2d; the embedding's gradient by its columns; the
 * optimizer step by ranges of the flat arrays. A linear layer on a sequence
 * applies at every position: its rows are (sample, position). A portable job
 * (net_set_kernels) splits the samples by whole chunks of the batch
 * (pk_chunk) and adds the conv2d weight gradients chunk by chunk, so its bits
 * do not depend on the team size (doc/portable.md).
 *
 * Thread: every function on the owner thread of the net (it drives the team).
 */
#ifndef TRAIND_NET_H
#define TRAIND_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"
#include "traind/kernels.h"
#include "traind/rng.h"
#include "traind/spec.h"
#include "traind/team.h"

#define NET_MAX_TENSORS (SPEC_MAX_LAYERS * 5)
#define NET_TENSOR_NAME 128  /* safetensors' ST_MAX_NAME */

enum tensor_kind {
	TENSOR_PARAM,     /* F32, in params; has a gradient and optimizer state */
	TENSOR_BUFFER,    /* F32, in buffers (running_mean, running_var) */
	TENSOR_COUNT,     /* I64 scalar, in counts (num_batches_tracked) */
};

struct net_tensor {
	char name[NET_TENSOR_NAME];  /* "net.3.weight", "net.4.body.0.weight" */
	enum tensor_kind kind;
	int ndim;                    /* 0..4 */
	uint64_t shape[4];
	size_t off;                  /* into params, buffers or counts */
	size_t len;                  /* elements */
};

struct net_layer {
	struct layer_spec spec;
	struct shape in, out;        /* per-sample shapes (a join: out; in is its first input's) */
	size_t in_size, out_size;    /* floats per sample */
	size_t w_off, b_off;         /* params offsets (linear, conv2d, batchnorm: weight, bias) */
	size_t part_off;             /* conv2d: its slice of each member's gradient sums (net->part) */
	size_t rm_off, rv_off;       /* batchnorm: buffers offsets of running_mean, running_var */
	size_t nbt;                  /* batchnorm: index in counts of num_batches_tracked */
	bool has_bias;
	bool need_dx;                /* a layer with parameters feeds its input: backward passes a gradient down */
	bool active;                 /* backward does something: parameters or need_dx */
	bool dw_zero;                /* linear: its weight gradient holds +0.0, consumed by the last
				      * update (net_backward_update); the next product adds into it */
	uint32_t consumers;          /* nodes that read its output */
	float *y;                    /* (max_batch, out_size) output, owned (flatten, identity: the
				      * input's, borrowed) */
	bool y_borrowed;
	uint8_t *mask;               /* dropout: (max_batch, out_size) 1 = kept, owned */
	uint32_t *argmax;            /* maxpool2d: (max_batch, out_size) input offset of each max, owned */
	double *mean, *invstd;       /* batchnorm: (C) statistics of the last training batch, owned */
	float *aux;                  /* a layer of sequences: (max_batch, aux_len) its saved state, owned */
	size_t aux_len;              /* floats per sample */
	struct pk_conv *pk;          /* conv2d of a portable job: its geometry and tables, owned */
	size_t pk_part_off;          /* conv2d, a sequence layer of a portable job: its slice of each chunk's sums (net->pk_part) */
	struct dnnconv *dnn;         /* conv2d with conv onednn: its primitives, owned */
	bool blk;                    /* conv onednn: y and its gradient are nChw16c (net.c: plan_blocked) */
	/* The backward plan (net.c: plan_backward): */
	int gclass;                  /* the gradient at its output: a class of aliased values */
	int scratch;                 /* pool buffer its dx goes to before being added (-1: none) */
};

struct net_plan;
struct pk_conv;
struct dnnctx;
struct dnnconv;

/* How a job with kernels openblas computes its conv2d layers (the config
 * key `conv`; doc/models.md): traind's im2col + the job's GEMM, sample by
 * sample (every stored job), or oneDNN's convolutions on each member's
 * rows at once (engine/model/dnnconv.h). */
enum conv_kind {
	CONV_GEMM = 0,
	CONV_ONEDNN = 1,
};

struct net {
	struct model_spec spec;
	struct shape input;          /* per-sample input shape */
	uint32_t classes;            /* outputs of the last layer (a sequence: at each position) */
	uint32_t positions;          /* the output's positions: T when it is a sequence, else 1 */
	struct net_layer *layers;    /* (spec.n), owned; index = the spec's */
	uint32_t *order;             /* (spec.n) execution order, owned */
	uint32_t out_node;           /* the node whose output is the model's */
	uint32_t ntensors;
	struct net_tensor *tensors;  /* (NET_MAX_TENSORS), owned */
	size_t nparams, nbuffers, ncounts;
	float *params;               /* (nparams), owned */
	float *grads;                /* (nparams), owned */
	float *buffers;              /* (nbuffers), owned */
	int64_t *counts;             /* (ncounts), owned */
	uint32_t max_batch;          /* rows the buffers hold */
	size_t in_size;              /* floats per input sample */
	float *x;                    /* (max_batch, in_size) the input batch, owned */
	float *dout;                 /* (max_batch, classes) the gradient at the output (a pool buffer) */
	bool input_grad;             /* also compute the gradient at the input (net_set_input_grad) */
	float *dx;                   /* after net_backward with input_grad: (batch, in_size) */
	struct net_plan *plan;       /* the backward plan and its pool of gradient buffers, owned */
	/* conv2d scratch, one slice per team member: */
	unsigned members;
	size_t col_len;              /* floats of one member's im2col buffer */
	size_t part_len;             /* floats of one member's weight+bias gradient sums, all conv2d layers */
	float *col;                  /* (members, col_len), owned */
	float *dcol;                 /* (members, col_len), owned */
	float *part;                 /* (members, part_len), owned */
	uint32_t part_rows[TEAM_MAX_MEMBERS];   /* samples each member summed in the last conv backward */
	size_t seqtmp_len;           /* floats per sample of the largest sequence layer's backward scratch */
	float *seqtmp;               /* (max_batch, seqtmp_len), owned */
	uint64_t dropout_key;        /* the job's seed: Dropout masks' Philox key */
	enum kernels_kind kernels;   /* the job's kernels (kernels.h; net_set_kernels) */
	uint32_t seq_kernels;        /* the sequence layers' arithmetic (config seq_kernels): 3 (bf16
				      * products in a bf16 job, else as 2), 2, or 1 (and 0, after
				      * net_init): the per-head form; set by the owner */
	/* a portable job's conv2d scratch (net_set_kernels): */
	size_t pk_scratch_len;       /* floats of one member's slice */
	float *pk_scratch;           /* (members, pk_scratch_len), owned */
	size_t pk_part_len;          /* floats of one chunk's weight+bias gradient sums */
	float *pk_part;              /* (PK_CHUNKS, pk_part_len), owned: a backward phase's conv2d
				      * layers each have their slice */
	/* A conv onednn job's convolutions (net_set_conv): */
	enum conv_kind conv;
	struct dnnctx *dnn;          /* the engine and the members' streams, owned (NULL: conv gemm) */
	size_t dnn_scratch_len;      /* bytes of one member's slice */
	void *dnn_scratch;           /* (members, dnn_scratch_len) bytes, owned */
	int dnn_rc;                  /* the first failure to prepare a primitive (0: none) */
	struct tr_err dnn_err;       /* its message */
	bool dnn_nchw;               /* NCHW between the layers, no blocked graph (net.c: plan_blocked):
				      * the same bits, slower; a benchmark's "before" */
	/* The matrix products' arithmetic (net_set_precision; fp32 after net_init): */
	enum k_precision precision;
	size_t gemm_kmax;            /* the longest sum over k of any of the model's products */
	void *gemm_scratch;          /* bf16: (members, gemm[0].scratch_len) bytes of packed operands, owned */
	struct k_gemm_mode gemm[TEAM_MAX_MEMBERS];   /* member i's products: precision, its scratch */
	struct team *team;           /* the job's team, not owned; NULL: run on the caller */
	/* net_backward_update's update and its argument, during that call only */
	void (*update)(void *ctx, size_t off, size_t len);
	void *update_ctx;
	bool update_consumes;        /* the update leaves +0.0 in the gradients it read */
};

/* Build the table and the buffers for spec on inputs of shape `input` (spec
 * already checked with spec_shapes for `classes`; classes 0 accepts any flat
 * output, for tests). max_batch rows; team may be NULL (one member). */
int net_init(struct net *n, const struct model_spec *spec, struct shape input, uint32_t classes,
	     uint32_t max_batch, struct team *team);
void net_deinit(struct net *n);

/* Compute the products in precision p from now on (K_FP32 after
 * net_init): each member gets its bf16 scratch (k_gemm_scratch_len for the
 * model's longest sum). The caller has checked p with k_precision_check.
 * -ENOMEM. */
int net_set_precision(struct net *n, enum k_precision p);

/* The floats net_init would allocate for spec into *floats (activations,
 * gradients, scratch; parameters not counted). 0, -EINVAL (spec does not
 * fit `input`) or -ENOMEM. */
int net_floats(const struct model_spec *spec, struct shape input, uint32_t max_batch,
	       unsigned members, uint64_t *floats);
/* The same for a job with `kernels` (a portable job's convolutions take
 * scratch and per-chunk sums of their own). */
int net_floats_kernels(const struct model_spec *spec, struct shape input, uint32_t max_batch,
		       unsigned members, enum kernels_kind kernels, uint64_t *floats);

/* Compute with `kernels` from now on (KERNELS_OPENBLAS after net_init): a
 * portable job's convolutions get their tables and scratch (doc/portable.md).
 * 0 or -ENOMEM (the net keeps its kernels). */
int net_set_kernels(struct net *n, enum kernels_kind kernels);

/* Compute the conv2d layers as `conv` says from now on (CONV_GEMM after
 * net_init), in the net's precision (call net_set_precision first): with
 * CONV_ONEDNN each conv2d gets its oneDNN primitives, made and checked here
 * for max_batch rows split over the team (others are made when a batch
 * first needs them). -EINVAL (kernels portable: its own convolutions),
 * -ENOTSUP (oneDNN cannot run a layer) or -ENOMEM, with err; the net then
 * keeps CONV_GEMM. */
/* With CONV_ONEDNN in fp32 the activations between conv2d, BatchNorm2d,
 * ReLU, max pool and residual layers stay in oneDNN's blocked layout
 * (engine/model/dnnblk.h), unless dnn_nchw is set: the bits are the same
 * either way. */
int net_set_conv(struct net *n, enum conv_kind conv, struct tr_err *err);
/* What decides a conv onednn job's convolution bits besides the team and
 * the batch: "oneDNN 2.6.3 avx512_core_amx". */
void net_conv_numerics(char *buf, size_t len);
/* 0, or the first failure to make a convolution's primitives for a batch
 * (a forward or backward that hit it left that layer's output as it was):
 * the caller stops the job with err. */
int net_conv_status(const struct net *n, struct tr_err *err);

/* Also compute the gradient at the input in net_backward (n->dx; tests).
 * 0 or -ENOMEM (the plan's buffers). */
int net_set_input_grad(struct net *n, bool on);

/* PyTorch's reset_parameters, layer by layer (in the order of the text,
 * which is the module's construction order) from r: Linear and Conv2d as
 * kaiming_uniform(a=sqrt(5)), i.e. W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
 * W row-major then b; BatchNorm weight 1, bias 0, running mean 0, var 1.
 * A spec with init SPEC_INIT_TORCHVISION (the named ResNets) then draws
 * every Conv2d weight again, as torchvision's ResNet does: N(0, sqrt(2 /
 * fan_out)) (kaiming_normal_, mode fan_out, relu), here by Box-Muller. */
void net_init_params(struct net *n, struct rng *r);
/* The same as PyTorch 1.13 draws it from its generator m (a job with rng
 * torch): each Linear and Conv2d in order, weight by kaiming_uniform_(a=
 * sqrt(5)) (bound computed in double), then bias by uniform_(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)), each element one mt_uniform_f32; BatchNorm draws nothing.
 * SPEC_INIT_TORCHVISION: then each Conv2d weight in module order by
 * normal_(0, std) as PyTorch's CPU kernel on an AVX2 machine computes it
 * (rng.h: mt_normal_fill_f32). */
void net_init_params_torch(struct net *n, struct mt19937 *m);

/* Forward `batch` rows of n->x. train: batch statistics (and running
 * statistics updated), Dropout masks drawn for `step` (a position that is
 * unique per training step); eval: running statistics, no Dropout. */
void net_forward(struct net *n, size_t batch, bool train, uint64_t step);
/* Fills rows [r0, r1) of n->x; team members call it at once on disjoint
 * ranges. */
typedef void (*net_input_fn)(void *arg, size_t r0, size_t r1);
/* net_forward, with the input rows filled by fill(arg, ...) in the team: in
 * the first phase when the first layers work sample by sample (each member
 * its own rows, no wait between), else in a phase of its own. */
void net_forward_from(struct net *n, size_t batch, bool train, uint64_t step, net_input_fn fill,
		      void *arg);
/* The last layer's output (batch, positions * classes). */
const float *net_output(const struct net *n);
/* Where the caller puts the gradient of the loss at the output, (batch,
 * positions * classes), before net_backward. */
float *net_dout(struct net *n);

/* Backward from net_dout after a training forward of the same batch: every
 * parameter's gradient into n->grads. */
void net_backward(struct net *n, size_t batch);

/* An update of the parameters [off, off + len) from their gradients (an
 * optimizer's elementwise step), called on the team member that computed
 * them; calls for disjoint ranges run at once. */
typedef void (*net_update_fn)(void *ctx, size_t off, size_t len);
/* Whether net_backward_update can serve this model: its only layers with
 * parameters are linear layers over flat inputs (no sequences, blocks,
 * convolutions or normalisations), each of whose parameters only its own
 * backward reads. */
bool net_can_update_in_backward(const struct net *n);
/* net_backward, and update(ctx, ...) over every parameter once its gradient
 * is final and nothing reads the parameter any more: in the phase that
 * computed the gradient, on the member that computed it (a linear layer
 * that passes a gradient down and is split across the team: in a phase
 * right after, split the same way, since other members read all of its
 * weights to compute their part of that gradient). Saves the optimizer its
 * phase, and it finds the gradients in the member's cache. The same values
 * as net_backward followed by the update over all parameters, the update
 * being elementwise. Only where net_can_update_in_backward.
 * consumes: update leaves +0.0 in the gradients it read (optim_update_consume).
 * A linear layer's next weight-gradient product then adds into them (beta 1)
 * instead of having OpenBLAS zero them first (beta 0): the same sums, one pass
 * over the gradient less (kernels openblas, fp32, products outside OpenBLAS's
 * small-matrix kernels; see linear_backward). */
void net_backward_update(struct net *n, size_t batch, net_update_fn update, void *ctx,
			 bool consumes);


/* The tensor named `name`, or NULL. */
const struct net_tensor *net_find(const struct net *n, const char *name);
/* Base pointer of a tensor's data (params, buffers or counts). */
void *net_tensor_data(const struct net *n, const struct net_tensor *t, float *params_base);

#endif
