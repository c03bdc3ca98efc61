/*
 * net.h - a model as a list of layers (a struct model_spec) over one tensor
 * table: forward in train or eval mode, backward, and the optimizer step over
 * the flat arrays.
 *
 * The tensor table: each layer declares its tensors (name, shape, kind) in
 * nn.Sequential's state_dict order. Parameters (weights and biases) are carved
 * from one flat float array, and so are their gradients and the optimizer's
 * moments (optim.h), in the same layout; BatchNorm's running statistics from a
 * flat float array of buffers, its num_batches_tracked from an int64 array.
 * The checkpoint writer and loader, the export, the parameter hash and the
 * optimizer walk the table; nothing outside net.c and spec.c knows what a
 * layer is.
 *
 * Activations: one buffer per layer, (max_batch, the layer's output size),
 * sized once, so a step allocates nothing. Samples are rows; an image is
 * stored C x H x W (NCHW), so flatten is free.
 *
 * Work split across the job's team, fixed by the shapes and the team size:
 * linear layers by output features (forward, weight gradients) and input
 * features (the gradient flowing down); conv2d and pools by samples (each
 * member sums its samples' weight gradients, then the partial sums are added
 * in member order); batchnorm by channel; elementwise layers by rows; the
 * optimizer step by ranges of the flat arrays.
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
#define NET_TENSOR_NAME 48

enum tensor_kind {
	TENSOR_PARAM,     /* F32, in params; has a gradient and optimizer state */
	TENSOR_BUFFER,    /* F32, in buffers (running_mean, running_var) */
	TENSOR_COUNT,     /* I64 scalar, in counts (num_batches_tracked) */
};

struct net_tensor {
	char name[NET_TENSOR_NAME];  /* "net.3.weight" */
	enum tensor_kind kind;
	int ndim;                    /* 0..4 */
	uint64_t shape[4];
	size_t off;                  /* into params, buffers or counts */
	size_t len;                  /* elements */
};

struct net_layer {
	struct layer_spec spec;
	struct shape in, out;        /* per-sample shapes */
	size_t in_size, out_size;    /* floats per sample */
	size_t w_off, b_off;         /* params offsets (linear, conv2d, batchnorm: weight, bias) */
	size_t part_off;             /* conv2d: its slice of each member's gradient sums (net->part) */
	size_t rm_off, rv_off;       /* batchnorm: buffers offsets of running_mean, running_var */
	size_t nbt;                  /* batchnorm: index in counts of num_batches_tracked */
	bool has_bias;
	bool need_dx;                /* some layer before this one has parameters */
	float *y;                    /* (max_batch, out_size) output, owned (flatten: the input, borrowed) */
	uint8_t *mask;               /* dropout: (max_batch, out_size) 1 = kept, owned */
	float *gx;                   /* a per-sample layer above another: (max_batch, in_size) the
				      * gradient at its input, owned (struct run_job in net.c: the
				      * members of a phase write rows of different sizes, so they
				      * cannot share the two buffers of dbuf) */
	uint32_t *argmax;            /* maxpool2d: (max_batch, out_size) input offset of each max, owned */
	double *mean, *invstd;       /* batchnorm: (C) statistics of the last training batch, owned */
};

struct net {
	struct model_spec spec;
	struct shape input;          /* per-sample input shape */
	uint32_t classes;            /* outputs of the last layer */
	struct net_layer layers[SPEC_MAX_LAYERS];
	uint32_t ntensors;
	struct net_tensor tensors[NET_MAX_TENSORS];
	size_t nparams, nbuffers, ncounts;
	float *params;               /* (nparams), owned */
	float *grads;                /* (nparams), owned */
	float *buffers;              /* (nbuffers), owned */
	int64_t *counts;             /* (ncounts), owned */
	uint32_t max_batch;          /* rows the buffers hold */
	size_t in_size;              /* floats per input sample */
	float *x;                    /* (max_batch, in_size) the input batch, owned */
	float *dbuf[2];              /* (max_batch, widest layer) gradients flowing down, owned */
	bool input_grad;             /* also compute the gradient at the input (tests) */
	float *dx;                   /* after net_backward with input_grad: (batch, in_size) */
	/* conv2d scratch, one slice per team member: */
	unsigned members;
	size_t col_len;              /* floats of one member's im2col buffer */
	size_t part_len;             /* floats of one member's weight+bias gradient sums, all conv2d layers */
	float *col;                  /* (members, col_len), owned */
	float *dcol;                 /* (members, col_len), owned */
	float *part;                 /* (members, part_len), owned */
	uint32_t part_rows[TEAM_MAX_MEMBERS];   /* samples each member summed in the last conv backward */
	uint64_t dropout_key;        /* the job's seed: Dropout masks' Philox key */
	enum kernels_kind kernels;   /* the job's kernels (kernels.h): the linear layers' GEMMs */
	struct team *team;           /* the job's team, not owned; NULL: run on the caller */
};

/* Build the table and the buffers for spec on inputs of shape `input` (spec
 * already checked with spec_shapes for `classes`; classes 0 accepts any flat
 * output, for tests). max_batch rows; team may be NULL (one member). */
int net_init(struct net *n, const struct model_spec *spec, struct shape input, uint32_t classes,
	     uint32_t max_batch, struct team *team);
void net_deinit(struct net *n);

/* PyTorch's reset_parameters, layer by layer from r: Linear and Conv2d as
 * kaiming_uniform(a=sqrt(5)), i.e. W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
 * W row-major then b; BatchNorm weight 1, bias 0, running mean 0, var 1. */
void net_init_params(struct net *n, struct rng *r);
/* The same as PyTorch 1.13 draws it from its generator m (a job with rng
 * torch): each Linear and Conv2d in order, weight by kaiming_uniform_(a=
 * sqrt(5)) (bound computed in double), then bias by uniform_(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)), each element one mt_uniform_f32; BatchNorm draws nothing. */
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
/* The last layer's output (batch, classes). */
const float *net_output(const struct net *n);
/* Where the caller puts the gradient of the loss at the output, (batch,
 * classes), before net_backward. */
float *net_dout(struct net *n);

/* Backward from net_dout after a training forward of the same batch: every
 * parameter's gradient into n->grads. */
void net_backward(struct net *n, size_t batch);


/* The tensor named `name`, or NULL. */
const struct net_tensor *net_find(const struct net *n, const char *name);
/* Base pointer of a tensor's data (params, buffers or counts). */
void *net_tensor_data(const struct net *n, const struct net_tensor *t, float *params_base);

#endif
