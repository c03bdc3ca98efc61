/*
 * model.h - the MLP: Flatten -> Linear -> ReLU -> ... -> Linear, as the
 * lesson's nn.Sequential, with forward and a backward pass that applies the
 * optimizer to each layer as soon as that layer's gradients exist.
 *
 * Memory: parameters and gradients are each one contiguous float array carved
 * per layer into W (out, in) then b (out), in PyTorch's state_dict order; the
 * optimizer's moments are laid out the same way. Activation buffers are sized
 * for the largest batch once, so a step allocates nothing.
 *
 * Work split: a layer big enough to be worth it is split across the job's
 * team by output features (forward, weight gradients and update) or by input
 * features (the gradient flowing down); small layers run on the owner. The
 * split depends only on the shapes and the team size.
 *
 * Thread: all functions on the job's owner thread (they drive the team).
 */
#ifndef TRAIND_MODEL_H
#define TRAIND_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "traind/config.h"
#include "traind/optim.h"
#include "traind/rng.h"
#include "traind/team.h"

#define MLP_MAX_LAYERS (CFG_MAX_HIDDEN + 1)

struct mlp {
	uint32_t nlayers;                     /* Linear layers (hidden layers + 1) */
	uint32_t dims[MLP_MAX_LAYERS + 1];    /* dims[0] = input features, dims[nlayers] = classes */
	size_t w_off[MLP_MAX_LAYERS];         /* offset of layer l's W (dims[l+1], dims[l]) */
	size_t b_off[MLP_MAX_LAYERS];         /* offset of layer l's b (dims[l+1]) */
	size_t nparams;                       /* total floats in params */
	float *params;                        /* (nparams), owned */
	float *grads;                         /* (nparams), owned */
	uint32_t max_batch;                   /* rows the buffers hold */
	float *x;                             /* (max_batch, dims[0]) input batch, owned */
	float *act[MLP_MAX_LAYERS];           /* act[l] (max_batch, dims[l+1]): ReLU output, logits for the last, owned */
	float *dlogits;                       /* (max_batch, classes), owned */
	float *dbuf[2];                       /* (max_batch, widest hidden) gradients flowing down, owned */
	struct team *team;                    /* the job's team, not owned */
};

/* Shapes from cfg->hidden; buffers for batches of up to max_batch rows. */
int mlp_init(struct mlp *m, uint32_t input_dim, uint32_t classes, const struct train_config *cfg,
	     uint32_t max_batch, struct team *team);
void mlp_deinit(struct mlp *m);

/* PyTorch's nn.Linear default: W and b ~ U(-1/sqrt(in), 1/sqrt(in)), drawn
 * layer by layer, W row-major then b, from r. */
void mlp_init_params(struct mlp *m, struct rng *r);

/* Forward `batch` rows of m->x; the logits land in m->act[nlayers-1]. */
void mlp_forward(struct mlp *m, size_t batch);
const float *mlp_logits(const struct mlp *m);

/* Backward from m->dlogits (already scaled by 1/batch) and update every
 * parameter with `opt` (whose optim_begin_step the caller has done). With
 * opt NULL, only compute m->grads (for gradient checks). */
void mlp_backward_update(struct mlp *m, size_t batch, struct optim *opt);

/* The PyTorch state_dict name of layer l's weight or bias: "net.1.weight"
 * (Sequential index 1 + 2l, after the Flatten). */
void mlp_param_name(uint32_t layer, int bias, char *buf, size_t len);

#endif
