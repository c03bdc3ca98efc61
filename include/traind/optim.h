/*
 * optim.h - Adam, AdamW and SGD (with momentum and weight decay) with PyTorch's
 * semantics and defaults, over one contiguous parameter array.
 *
 * The state (moments, step count) is one allocation per moment, laid out like
 * the parameters, so an update is an elementwise pass over any sub-range: the
 * model updates each layer's rows right after their gradients are computed, on
 * the team member that computed them. Elementwise, correctly rounded IEEE
 * operations only (no FMA contraction), so the split never changes the bits.
 *
 * Thread: optim_begin_step on the job's owner thread; optim_update and
 * optim_update_consume on any team member, for disjoint ranges.
 */
#ifndef TRAIND_OPTIM_H
#define TRAIND_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "traind/config.h"

struct optim {
	enum optim_kind kind;
	double lr, beta1, beta2, eps, weight_decay, momentum; /* as configured */
	size_t n;             /* parameters */
	float *m;             /* (n) Adam exp_avg / SGD momentum_buffer; NULL for plain SGD */
	float *v;             /* (n) Adam exp_avg_sq; NULL for SGD */
	uint64_t step;        /* updates applied so far (PyTorch's state['step']) */
	/* Scalars as the float32 kernels see them. Like PyTorch, compound
	 * scalars (1 - beta1, lr * wd, ...) are computed in double and rounded
	 * to float once. */
	float f_lr, f_eps, f_wd, f_momentum, f_beta2;
	float one_minus_beta1, one_minus_beta2;
	/* per-step scalars, set by optim_begin_step */
	float decoupled_decay; /* AdamW: 1 - lr * wd */
	float step_size;      /* lr / (1 - beta1^step) */
	float inv_bc2_sqrt;   /* 1 / sqrt(1 - beta2^step) */
	enum kernels_kind kernels; /* portable: beta^step by pk_powi (portable.h), not libm's pow */
};

int optim_init(struct optim *o, const struct train_config *cfg, size_t nparams);
void optim_deinit(struct optim *o);
/* Forget all state: zero moments, step 0 (a fresh optimizer). */
void optim_reset(struct optim *o);
/* Count one more update at learning rate lr (the configured one, or what a
 * schedule gives for this step) and compute its bias corrections and
 * lr-dependent scalars, each rounded to float once as PyTorch does. */
void optim_begin_step(struct optim *o, double lr);
/* Set Adam's beta1 (or SGD's momentum) for the next steps, as OneCycleLR's
 * cycle_momentum does to param_group['betas'] / ['momentum']. */
void optim_set_momentum(struct optim *o, double m);
/* Update p[off, off+len) from g[off, off+len) (and the state there). */
void optim_update(const struct optim *o, float *p, const float *g, size_t off, size_t len);
/* optim_update, then g[off, off+len) = +0.0 (the same values of p and the
 * state): the gradient consumed, so that the next step's products can add
 * into it (net_backward_update's `consumes`). */
void optim_update_consume(const struct optim *o, float *p, float *g, size_t off, size_t len);
/* One step over all n parameters (optim_begin_step done by the caller):
 * split across `team` by ranges of the flat arrays when there are enough
 * of them, else on the caller (team NULL: the caller). */
struct team;
void optim_step(const struct optim *o, float *p, const float *g, size_t n, struct team *team);

#endif
