/*
 * optim.c - PyTorch-semantics optimizers. See include/traind/optim.h.
 *
 * Formulas follow torch.optim's single-tensor implementations:
 *   Adam:  g += wd*p (if wd); m = lerp(m, g, 1-b1); v = b2*v + (1-b2)*g*g;
 *          p -= (lr/bc1) * m / (sqrt(v) * (1/sqrt(bc2)) + eps)
 *          (PyTorch divides by sqrt(bc2); multiplying by its reciprocal,
 *          computed once per step, saves a division per element and may
 *          differ from PyTorch's expression by an ulp)
 *   AdamW: p *= 1 - lr*wd; then Adam without the L2 term
 *   SGD:   g += wd*p; if momentum: buf = momentum*buf + g (buf starts at g,
 *          which equals momentum*0 + g exactly); p -= lr*buf
 * The loops are compiled for AVX-512, AVX2 and baseline x86-64 (target_clones);
 * with FMA contraction off, every variant gives the same bits. A portable job
 * (kernels.h) takes Adam's beta^step from pk_powi instead of libm's pow.
 */
#include "traind/optim.h"

#include "engine/core/hot.h"
#include "traind/kernels.h"
#include "traind/portable.h"
#include "traind/team.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int optim_init(struct optim *o, const struct train_config *cfg, size_t nparams)
{
	memset(o, 0, sizeof(*o));
	o->kind = cfg->optimizer;
	o->lr = cfg->lr;
	o->beta1 = cfg->beta1;
	o->beta2 = cfg->beta2;
	o->eps = cfg->eps;
	o->weight_decay = cfg->weight_decay;
	o->momentum = cfg->momentum;
	o->f_lr = (float)cfg->lr;
	o->f_eps = (float)cfg->eps;
	o->f_wd = (float)cfg->weight_decay;
	o->f_momentum = (float)cfg->momentum;
	o->f_beta2 = (float)cfg->beta2;
	o->one_minus_beta1 = (float)(1.0 - cfg->beta1);
	o->one_minus_beta2 = (float)(1.0 - cfg->beta2);
	o->decoupled_decay = (float)(1.0 - cfg->lr * cfg->weight_decay);
	o->n = nparams;
	o->kernels = cfg->kernels;
	if (o->kind != OPTIM_SGD || o->momentum != 0.0) {
		o->m = k_alloc_floats(nparams);
		if (!o->m)
			goto fail;
	}
	if (o->kind != OPTIM_SGD) {
		o->v = k_alloc_floats(nparams);
		if (!o->v)
			goto fail;
	}
	return 0;
fail:
	optim_deinit(o);
	return -ENOMEM;
}

void optim_deinit(struct optim *o)
{
	free(o->m);
	free(o->v);
	o->m = o->v = NULL;
}

void optim_reset(struct optim *o)
{
	if (o->m)
		memset(o->m, 0, o->n * sizeof(float));
	if (o->v)
		memset(o->v, 0, o->n * sizeof(float));
	o->step = 0;
}

void optim_set_momentum(struct optim *o, double m)
{
	if (o->kind == OPTIM_SGD) {
		o->momentum = m;
		o->f_momentum = (float)m;
	} else {
		o->beta1 = m;
		o->one_minus_beta1 = (float)(1.0 - m);
	}
}

void optim_begin_step(struct optim *o, double lr)
{
	o->step++;
	o->lr = lr;
	o->f_lr = (float)lr;
	o->decoupled_decay = (float)(1.0 - lr * o->weight_decay);
	if (o->kind != OPTIM_SGD) {
		/* libm's pow may round differently on another glibc: a portable
		 * job's powers are a fixed sequence of multiplications */
		bool portable = o->kernels == KERNELS_PORTABLE;
		double bc1 = 1.0 - (portable ? pk_powi(o->beta1, o->step) : pow(o->beta1, (double)o->step));
		double bc2 = 1.0 - (portable ? pk_powi(o->beta2, o->step) : pow(o->beta2, (double)o->step));

		o->step_size = (float)(lr / bc1);
		o->inv_bc2_sqrt = (float)(1.0 / sqrt(bc2));
	}
}

/* The loops' bodies, inlined into each variant below. `consume`, a
 * constant in each, also leaves +0.0 in g[i] once it is read: the store
 * goes to a line the loop has just loaded, where OpenBLAS's zeroing pass
 * for the next step's product (beta = 0) would fetch it again
 * (optim_update_consume). It changes no value of p or the state. */
static inline __attribute__((always_inline)) void
adam_body(float *restrict p, float *restrict g, float *restrict m, float *restrict v, size_t len,
	  float b1c, float beta2, float b2c, float step_size, float inv_bc2_sqrt, float eps,
	  float l2, float decay, bool consume)
{
	for (size_t i = 0; i < len; i++) {
		float pi = p[i] * decay;
		float gi = g[i] + l2 * p[i];
		float mi = m[i] + b1c * (gi - m[i]);
		float vi = beta2 * v[i] + b2c * (gi * gi);

		m[i] = mi;
		v[i] = vi;
		p[i] = pi - step_size * (mi / (sqrtf(vi) * inv_bc2_sqrt + eps));
		if (consume)
			g[i] = 0.0f;
	}
}

static inline __attribute__((always_inline)) void
sgd_momentum_body(float *restrict p, float *restrict g, float *restrict buf, size_t len, float lr,
		  float momentum, float wd, bool consume)
{
	for (size_t i = 0; i < len; i++) {
		float gi = g[i] + wd * p[i];
		float bi = momentum * buf[i] + gi;

		buf[i] = bi;
		p[i] = p[i] - lr * bi;
		if (consume)
			g[i] = 0.0f;
	}
}

static inline __attribute__((always_inline)) void
sgd_body(float *restrict p, float *restrict g, size_t len, float lr, float wd, bool consume)
{
	for (size_t i = 0; i < len; i++) {
		p[i] = p[i] - lr * (g[i] + wd * p[i]);
		if (consume)
			g[i] = 0.0f;
	}
}

HOT_CLONES
static void adam_loop(float *restrict p, float *restrict g, float *restrict m,
		      float *restrict v, size_t len, float b1c, float beta2, float b2c,
		      float step_size, float inv_bc2_sqrt, float eps, float l2, float decay)
{
	adam_body(p, g, m, v, len, b1c, beta2, b2c, step_size, inv_bc2_sqrt, eps, l2, decay,
		  false);
}

HOT_CLONES
static void adam_loop_consume(float *restrict p, float *restrict g, float *restrict m,
			      float *restrict v, size_t len, float b1c, float beta2, float b2c,
			      float step_size, float inv_bc2_sqrt, float eps, float l2, float decay)
{
	adam_body(p, g, m, v, len, b1c, beta2, b2c, step_size, inv_bc2_sqrt, eps, l2, decay, true);
}

HOT_CLONES
static void sgd_momentum_loop(float *restrict p, float *restrict g, float *restrict buf,
			      size_t len, float lr, float momentum, float wd)
{
	sgd_momentum_body(p, g, buf, len, lr, momentum, wd, false);
}

HOT_CLONES
static void sgd_momentum_loop_consume(float *restrict p, float *restrict g, float *restrict buf,
				      size_t len, float lr, float momentum, float wd)
{
	sgd_momentum_body(p, g, buf, len, lr, momentum, wd, true);
}

HOT_CLONES
static void sgd_loop(float *restrict p, float *restrict g, size_t len, float lr, float wd)
{
	sgd_body(p, g, len, lr, wd, false);
}

HOT_CLONES
static void sgd_loop_consume(float *restrict p, float *restrict g, size_t len, float lr, float wd)
{
	sgd_body(p, g, len, lr, wd, true);
}

/* optim_update and optim_update_consume: g is written only when consume. */
static void update(const struct optim *o, float *p, float *g, size_t off, size_t len, bool consume)
{
	switch (o->kind) {
	case OPTIM_ADAM:
	case OPTIM_ADAMW: {
		bool decoupled = o->kind == OPTIM_ADAMW;
		/* AdamW multiplies by (1 - lr*wd) first; Adam adds wd*p to the
		 * gradient. Multiplying by 1.0f and adding 0.0f*p are exact no-ops
		 * for finite values, so one loop serves both. */
		float decay = decoupled ? o->decoupled_decay : 1.0f;
		float l2 = decoupled ? 0.0f : o->f_wd;

		(consume ? adam_loop_consume : adam_loop)(p + off, g + off, o->m + off, o->v + off, len,
							  o->one_minus_beta1, o->f_beta2,
							  o->one_minus_beta2, o->step_size,
							  o->inv_bc2_sqrt, o->f_eps, l2, decay);
		break;
	}
	case OPTIM_SGD:
		if (o->m)
			(consume ? sgd_momentum_loop_consume : sgd_momentum_loop)(
				p + off, g + off, o->m + off, len, o->f_lr, o->f_momentum, o->f_wd);
		else
			(consume ? sgd_loop_consume : sgd_loop)(p + off, g + off, len, o->f_lr, o->f_wd);
		break;
	}
}

void optim_update(const struct optim *o, float *p, const float *g, size_t off, size_t len)
{
	/* the loops without `consume` only read g */
	update(o, p, (float *)g, off, len, false);
}

void optim_update_consume(const struct optim *o, float *p, float *g, size_t off, size_t len)
{
	update(o, p, g, off, len, true);
}

#define STEP_MIN_PARAMS (1u << 14) /* below this the step runs on the caller */
#define STEP_ALIGN 16              /* floats: one cache line */

struct step_job {
	const struct optim *o;
	float *p;
	const float *g;
	size_t n;
};

static void step_part(void *arg, unsigned idx, unsigned nm)
{
	struct step_job *j = arg;
	size_t lo, hi;

	team_split(j->n, idx, nm, STEP_ALIGN, &lo, &hi);
	if (lo < hi)
		optim_update(j->o, j->p, j->g, lo, hi - lo);
}

void optim_step(const struct optim *o, float *p, const float *g, size_t n, struct team *team)
{
	struct step_job job = { .o = o, .p = p, .g = g, .n = n };

	if (n >= STEP_MIN_PARAMS && team && team_size(team) > 1)
		team_run(team, step_part, &job);
	else
		step_part(&job, 0, 1);
}
