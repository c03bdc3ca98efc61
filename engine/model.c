/*
 * model.c - MLP forward, backward and fused update. See include/traind/model.h.
 *
 * One step of the lesson's model (B = 64) with a team of two:
 *   owner: gather x (B, 784)
 *   team:  act0[:, half] = relu(x W0[half]^T + b0[half])         (split by hidden unit)
 *   owner: logits = act0 W1^T + b1; loss, dlogits (B, 10)
 *          dW1 = dlogits^T act0; db1; d0 = (dlogits W1) * (act0 > 0); update W1, b1
 *   team:  dW0[half] = d0[:, half]^T x; db0[half]; update W0[half], b0[half]
 * Each team member computes and updates whole rows, so its writes never touch
 * another's and the result depends only on the split.
 */
#include "traind/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/kernels.h"

#define SPLIT_ALIGN 16               /* floats: one cache line */
#define SPLIT_MIN_FLOPS (1u << 18)   /* below this a layer runs on the owner */

int mlp_init(struct mlp *m, uint32_t input_dim, uint32_t classes, const struct train_config *cfg,
	     uint32_t max_batch, struct team *team)
{
	size_t off = 0;
	uint32_t widest = 1;

	memset(m, 0, sizeof(*m));
	m->nlayers = cfg->n_hidden + 1;
	m->dims[0] = input_dim;
	for (uint32_t i = 0; i < cfg->n_hidden; i++) {
		m->dims[i + 1] = cfg->hidden[i];
		if (cfg->hidden[i] > widest)
			widest = cfg->hidden[i];
	}
	m->dims[m->nlayers] = classes;
	for (uint32_t l = 0; l < m->nlayers; l++) {
		m->w_off[l] = off;
		off += (size_t)m->dims[l + 1] * m->dims[l];
		m->b_off[l] = off;
		off += m->dims[l + 1];
	}
	m->nparams = off;
	m->max_batch = max_batch;
	m->team = team;
	m->params = k_alloc_floats(off);
	m->grads = k_alloc_floats(off);
	m->x = k_alloc_floats((size_t)max_batch * input_dim);
	m->dlogits = k_alloc_floats((size_t)max_batch * classes);
	m->dbuf[0] = k_alloc_floats((size_t)max_batch * widest);
	m->dbuf[1] = k_alloc_floats((size_t)max_batch * widest);
	if (!m->params || !m->grads || !m->x || !m->dlogits || !m->dbuf[0] || !m->dbuf[1])
		goto fail;
	for (uint32_t l = 0; l < m->nlayers; l++) {
		m->act[l] = k_alloc_floats((size_t)max_batch * m->dims[l + 1]);
		if (!m->act[l])
			goto fail;
	}
	return 0;
fail:
	mlp_deinit(m);
	return -ENOMEM;
}

void mlp_deinit(struct mlp *m)
{
	free(m->params);
	free(m->grads);
	free(m->x);
	free(m->dlogits);
	free(m->dbuf[0]);
	free(m->dbuf[1]);
	for (uint32_t l = 0; l < MLP_MAX_LAYERS; l++)
		free(m->act[l]);
	memset(m, 0, sizeof(*m));
}

void mlp_init_params(struct mlp *m, struct rng *r)
{
	for (uint32_t l = 0; l < m->nlayers; l++) {
		size_t in = m->dims[l], out = m->dims[l + 1];
		float bound = 1.0f / sqrtf((float)in);
		float *w = m->params + m->w_off[l];
		float *b = m->params + m->b_off[l];

		for (size_t i = 0; i < out * in; i++)
			w[i] = (2.0f * rng_uniform(r) - 1.0f) * bound;
		for (size_t i = 0; i < out; i++)
			b[i] = (2.0f * rng_uniform(r) - 1.0f) * bound;
	}
}

const float *mlp_logits(const struct mlp *m)
{
	return m->act[m->nlayers - 1];
}

void mlp_param_name(uint32_t layer, int bias, char *buf, size_t len)
{
	snprintf(buf, len, "net.%u.%s", 1 + 2 * layer, bias ? "bias" : "weight");
}

/* One layer's work for one phase, shared by all team members. */
struct layer_job {
	struct mlp *m;
	struct optim *opt;
	uint32_t l;            /* layer index */
	size_t batch;
	const float *in;       /* (batch, dims[l]) layer input */
	const float *dz;       /* (batch, dims[l+1]) gradient at the layer output */
	float *dprev;          /* (batch, dims[l]) gradient at the layer input */
};

static bool worth_splitting(const struct mlp *m, uint32_t l, size_t batch)
{
	return team_size(m->team) > 1 &&
	       batch * m->dims[l] * m->dims[l + 1] >= SPLIT_MIN_FLOPS;
}

static void run_phase(struct mlp *m, bool split, team_fn fn, struct layer_job *job)
{
	if (split)
		team_run(m->team, fn, job);
	else
		fn(job, 0, 1);
}

/* act[l][:, c0:c1] = act(in W[c0:c1]^T + b[c0:c1]) */
static void forward_part(void *arg, unsigned idx, unsigned n)
{
	struct layer_job *j = arg;
	struct mlp *m = j->m;
	size_t in = m->dims[j->l], out = m->dims[j->l + 1];
	size_t c0, c1;

	team_split(out, idx, n, SPLIT_ALIGN, &c0, &c1);
	if (c0 == c1)
		return;
	/* Start from the bias and accumulate (beta = 1): saves the pass that
	 * would zero C and the pass that would add the bias. */
	k_fill_rows(m->act[j->l], out, j->batch, c0, c1, m->params + m->b_off[j->l]);
	k_gemm(0, 1, j->batch, c1 - c0, in, 1.0f, j->in, in,
	       m->params + m->w_off[j->l] + c0 * in, in, 1.0f, m->act[j->l] + c0, out);
	if (j->l + 1 < m->nlayers)
		k_relu(m->act[j->l], out, j->batch, c0, c1);
}

void mlp_forward(struct mlp *m, size_t batch)
{
	for (uint32_t l = 0; l < m->nlayers; l++) {
		struct layer_job job = {
			.m = m, .l = l, .batch = batch,
			.in = l == 0 ? m->x : m->act[l - 1],
		};

		run_phase(m, worth_splitting(m, l, batch), forward_part, &job);
	}
}

/* dprev[:, c0:c1] = (dz W[:, c0:c1]) * (in[:, c0:c1] > 0) */
static void backward_input_part(void *arg, unsigned idx, unsigned n)
{
	struct layer_job *j = arg;
	struct mlp *m = j->m;
	size_t in = m->dims[j->l], out = m->dims[j->l + 1];
	size_t c0, c1;

	team_split(in, idx, n, SPLIT_ALIGN, &c0, &c1);
	if (c0 == c1)
		return;
	k_gemm(0, 0, j->batch, c1 - c0, out, 1.0f, j->dz, out,
	       m->params + m->w_off[j->l] + c0, in, 0.0f, j->dprev + c0, in);
	k_relu_backward(j->dprev, j->in, in, j->batch, c0, c1);
}

/* dW[r0:r1] = dz[:, r0:r1]^T in; db[r0:r1] = colsum dz; update those rows. */
static void backward_weight_part(void *arg, unsigned idx, unsigned n)
{
	struct layer_job *j = arg;
	struct mlp *m = j->m;
	size_t in = m->dims[j->l], out = m->dims[j->l + 1];
	size_t wo = m->w_off[j->l], bo = m->b_off[j->l];
	size_t r0, r1;

	team_split(out, idx, n, SPLIT_ALIGN, &r0, &r1);
	if (r0 == r1)
		return;
	k_gemm(1, 0, r1 - r0, in, j->batch, 1.0f, j->dz + r0, out, j->in, in,
	       0.0f, m->grads + wo + r0 * in, in);
	k_colsum(m->grads + bo, j->dz, out, j->batch, r0, r1);
	if (j->opt) {
		optim_update(j->opt, m->params, m->grads, wo + r0 * in, (r1 - r0) * in);
		optim_update(j->opt, m->params, m->grads, bo + r0, r1 - r0);
	}
}

void mlp_backward_update(struct mlp *m, size_t batch, struct optim *opt)
{
	const float *dz = m->dlogits;

	for (uint32_t l = m->nlayers; l-- > 0;) {
		struct layer_job job = {
			.m = m, .opt = opt, .l = l, .batch = batch,
			.in = l == 0 ? m->x : m->act[l - 1],
			.dz = dz,
			.dprev = m->dbuf[l % 2],
		};
		bool split = worth_splitting(m, l, batch);

		/* The gradient for the layer below needs this layer's weights
		 * before they are updated. */
		if (l > 0)
			run_phase(m, split, backward_input_part, &job);
		run_phase(m, split, backward_weight_part, &job);
		dz = job.dprev;
	}
}
