/*
 * net.c - the tensor table, forward, backward and the optimizer phase. See
 * include/traind/net.h.
 *
 * One training step of the lesson's MLP (B = 64) with a team of two, four
 * phases (one team_run, one wait, each; five before, the gather on the owner):
 *   team:  the batch gathered (uint8 -> float), by rows
 *   team:  linear 1 and its ReLU: y1[:, half] = x W1[half]^T + b1[half];
 *          y2[:, half] = max(y1[:, half], 0)                 (split by output unit)
 *   owner: linear 3 (logits), loss and dlogits (B, 10)
 *   owner: linear 3 backward: dW3 = dlogits^T y2; db3; d2 = dlogits W3
 *   team:  ReLU 2 and linear 1 backward on the member's units:
 *          d1[:, half] = d2[:, half] * (y2[:, half] > 0); dW1[half] = d1[:, half]^T x; db1[half]
 *   team:  optimizer step over the flat arrays, by ranges
 * A convolutional model's runs of per-sample layers (conv2d, activations,
 * pools, flatten) take one phase each way, each member its samples two at a
 * time through all of the run's layers (struct run_job); the gather joins the
 * first run when the model starts with one. Each member computes whole rows
 * or columns, so its writes never touch another's, and the result depends
 * only on the split, which these fusions leave as it was: every element is
 * computed by the same operations in the same order as with one phase per
 * layer (the bits are those of the previous engine).
 */
#include "traind/net.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/kernels.h"

#define SPLIT_ALIGN 16               /* floats: one cache line */
#define SPLIT_MIN_FLOPS (1u << 18)   /* below this a linear layer runs on the owner */
#define ROWS_MIN_ELEMS (1u << 14)    /* below this an elementwise layer runs on the owner */
#define RUN_BLOCK 2                  /* samples a run of per-sample layers takes at a time */
#define BN_MOMENTUM 0.1
#define BN_EPS 1e-5

static bool per_sample(enum layer_kind k);

static size_t shape_size(struct shape s)
{
	return (size_t)s.c * s.h * s.w;
}

static void add_tensor(struct net *n, uint32_t layer, const char *what, enum tensor_kind kind,
		       int ndim, const uint64_t *shape, size_t *counter, size_t *off)
{
	struct net_tensor *t = &n->tensors[n->ntensors++];
	size_t len = 1;

	snprintf(t->name, sizeof(t->name), "net.%u.%s", layer, what);
	t->kind = kind;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++) {
		t->shape[i] = shape[i];
		len *= (size_t)shape[i];
	}
	t->off = *counter;
	t->len = len;
	*counter += len;
	*off = t->off;
}

/* The tensors of layer i, in state_dict order. */
static void declare_tensors(struct net *n, uint32_t i)
{
	struct net_layer *l = &n->layers[i];
	const struct layer_spec *s = &l->spec;
	uint64_t shape[4];

	switch (s->kind) {
	case LAYER_LINEAR:
		shape[0] = s->out;
		shape[1] = l->in.c;
		add_tensor(n, i, "weight", TENSOR_PARAM, 2, shape, &n->nparams, &l->w_off);
		if (s->bias)
			add_tensor(n, i, "bias", TENSOR_PARAM, 1, shape, &n->nparams, &l->b_off);
		l->has_bias = s->bias;
		break;
	case LAYER_CONV2D:
		shape[0] = s->out;
		shape[1] = l->in.c;
		shape[2] = s->k;
		shape[3] = s->k;
		add_tensor(n, i, "weight", TENSOR_PARAM, 4, shape, &n->nparams, &l->w_off);
		if (s->bias)
			add_tensor(n, i, "bias", TENSOR_PARAM, 1, shape, &n->nparams, &l->b_off);
		l->has_bias = s->bias;
		break;
	case LAYER_BATCHNORM1D:
	case LAYER_BATCHNORM2D:
		shape[0] = l->in.c;
		add_tensor(n, i, "weight", TENSOR_PARAM, 1, shape, &n->nparams, &l->w_off);
		add_tensor(n, i, "bias", TENSOR_PARAM, 1, shape, &n->nparams, &l->b_off);
		add_tensor(n, i, "running_mean", TENSOR_BUFFER, 1, shape, &n->nbuffers, &l->rm_off);
		add_tensor(n, i, "running_var", TENSOR_BUFFER, 1, shape, &n->nbuffers, &l->rv_off);
		add_tensor(n, i, "num_batches_tracked", TENSOR_COUNT, 0, shape, &n->ncounts, &l->nbt);
		l->has_bias = true;
		break;
	default:
		break;
	}
}

int net_init(struct net *n, const struct model_spec *spec, struct shape input, uint32_t classes,
	     uint32_t max_batch, struct team *team)
{
	struct shape shapes[SPEC_MAX_LAYERS];
	size_t widest, col_len = 1, part_len = 1;
	bool params_before = false;
	float *prev;
	int rc;

	memset(n, 0, sizeof(*n));
	rc = spec_shapes(spec, input, classes, shapes, NULL, NULL);
	if (rc < 0)
		return rc;
	n->spec = *spec;
	n->input = input;
	n->classes = (uint32_t)shape_size(shapes[spec->n - 1]);
	n->max_batch = max_batch;
	n->team = team;
	n->members = team ? team_size(team) : 1;
	n->in_size = shape_size(input);
	widest = n->in_size;
	for (uint32_t i = 0; i < spec->n; i++) {
		struct net_layer *l = &n->layers[i];

		l->spec = spec->layers[i];
		l->in = i ? shapes[i - 1] : input;
		l->out = shapes[i];
		l->in_size = shape_size(l->in);
		l->out_size = shape_size(l->out);
		l->need_dx = params_before;
		declare_tensors(n, i);
		params_before = params_before || spec_has_params(l->spec.kind);
		if (l->out_size > widest)
			widest = l->out_size;
		if (l->spec.kind == LAYER_CONV2D) {
			size_t ckk = (size_t)l->in.c * l->spec.k * l->spec.k;
			size_t cl = ckk * l->out.h * l->out.w;
			size_t pl = (size_t)l->spec.out * ckk + l->spec.out;

			col_len = cl > col_len ? cl : col_len;
			l->part_off = part_len - 1;
			part_len += pl;   /* each conv2d its own slice: a phase may run several */
		}
	}
	n->col_len = col_len;
	n->part_len = part_len;
	rc = -ENOMEM;
	n->params = k_alloc_floats(n->nparams);
	n->grads = k_alloc_floats(n->nparams);
	n->buffers = k_alloc_floats(n->nbuffers);
	n->counts = calloc(n->ncounts ? n->ncounts : 1, sizeof(int64_t));
	n->x = k_alloc_floats((size_t)max_batch * n->in_size);
	n->dbuf[0] = k_alloc_floats((size_t)max_batch * widest);
	n->dbuf[1] = k_alloc_floats((size_t)max_batch * widest);
	n->col = k_alloc_floats(n->members * col_len);
	n->dcol = k_alloc_floats(n->members * col_len);
	n->part = k_alloc_floats(n->members * part_len);
	if (!n->params || !n->grads || !n->buffers || !n->counts || !n->x || !n->dbuf[0] ||
	    !n->dbuf[1] || !n->col || !n->dcol || !n->part)
		goto fail;
	prev = n->x;
	for (uint32_t i = 0; i < spec->n; i++) {
		struct net_layer *l = &n->layers[i];
		size_t rows = (size_t)max_batch * l->out_size;

		if (l->spec.kind == LAYER_FLATTEN) {
			l->y = prev;
			continue;
		}
		l->y = k_alloc_floats(rows);
		if (!l->y)
			goto fail;
		if (l->spec.kind == LAYER_DROPOUT && !(l->mask = calloc(rows, 1)))
			goto fail;
		if (i > 0 && per_sample(l->spec.kind) && per_sample(n->layers[i - 1].spec.kind) &&
		    !(l->gx = k_alloc_floats((size_t)max_batch * l->in_size)))
			goto fail;
		if (l->spec.kind == LAYER_MAXPOOL2D && !(l->argmax = calloc(rows, sizeof(uint32_t))))
			goto fail;
		if (spec_is_batchnorm(l->spec.kind) &&
		    (!(l->mean = calloc(l->in.c, sizeof(double))) ||
		     !(l->invstd = calloc(l->in.c, sizeof(double)))))
			goto fail;
		prev = l->y;
	}
	return 0;
fail:
	net_deinit(n);
	return rc;
}

void net_deinit(struct net *n)
{
	for (uint32_t i = 0; i < n->spec.n; i++) {
		struct net_layer *l = &n->layers[i];

		if (l->spec.kind != LAYER_FLATTEN)
			free(l->y);
		free(l->mask);
		free(l->gx);
		free(l->argmax);
		free(l->mean);
		free(l->invstd);
	}
	free(n->params);
	free(n->grads);
	free(n->buffers);
	free(n->counts);
	free(n->x);
	free(n->dbuf[0]);
	free(n->dbuf[1]);
	free(n->col);
	free(n->dcol);
	free(n->part);
	memset(n, 0, sizeof(*n));
}

void net_init_params(struct net *n, struct rng *r)
{
	for (uint32_t i = 0; i < n->spec.n; i++) {
		struct net_layer *l = &n->layers[i];
		size_t fan_in, out;

		switch (l->spec.kind) {
		case LAYER_LINEAR:
		case LAYER_CONV2D: {
			float bound, *w, *b;

			out = l->spec.out;
			fan_in = l->spec.kind == LAYER_LINEAR ? l->in.c
							      : (size_t)l->in.c * l->spec.k * l->spec.k;
			bound = 1.0f / sqrtf((float)fan_in);
			w = n->params + l->w_off;
			for (size_t k = 0; k < out * fan_in; k++)
				w[k] = (2.0f * rng_uniform(r) - 1.0f) * bound;
			if (l->has_bias) {
				b = n->params + l->b_off;
				for (size_t k = 0; k < out; k++)
					b[k] = (2.0f * rng_uniform(r) - 1.0f) * bound;
			}
			break;
		}
		case LAYER_BATCHNORM1D:
		case LAYER_BATCHNORM2D:
			for (size_t c = 0; c < l->in.c; c++) {
				n->params[l->w_off + c] = 1.0f;
				n->params[l->b_off + c] = 0.0f;
				n->buffers[l->rm_off + c] = 0.0f;
				n->buffers[l->rv_off + c] = 1.0f;
			}
			n->counts[l->nbt] = 0;
			break;
		default:
			break;
		}
	}
}

/* fan_in of a linear or conv2d layer, as torch.nn.init._calculate_fan_in_and_fan_out. */
static size_t layer_fan_in(const struct net_layer *l)
{
	return l->spec.kind == LAYER_LINEAR ? l->in.c : (size_t)l->in.c * l->spec.k * l->spec.k;
}

void net_init_params_torch(struct net *n, struct mt19937 *m)
{
	/* kaiming_uniform_(a=sqrt(5)): gain = sqrt(2 / (1 + a**2)), std = gain /
	 * sqrt(fan_in), bound = sqrt(3) * std, each in double as Python computes
	 * them (a**2 is pow, as Python's float power). */
	double a = sqrt(5.0), gain = sqrt(2.0 / (1.0 + pow(a, 2.0)));

	for (uint32_t i = 0; i < n->spec.n; i++) {
		struct net_layer *l = &n->layers[i];

		if (l->spec.kind == LAYER_LINEAR || l->spec.kind == LAYER_CONV2D) {
			size_t fan_in = layer_fan_in(l), count = l->spec.out * fan_in;
			double bound = sqrt(3.0) * (gain / sqrt((double)fan_in));
			float *w = n->params + l->w_off;

			for (size_t k = 0; k < count; k++)
				w[k] = mt_uniform_f32(m, -bound, bound);
			if (l->has_bias) {
				float *b = n->params + l->b_off;

				bound = 1.0 / sqrt((double)fan_in);
				for (size_t k = 0; k < l->spec.out; k++)
					b[k] = mt_uniform_f32(m, -bound, bound);
			}
		} else if (l->spec.kind == LAYER_BATCHNORM1D || l->spec.kind == LAYER_BATCHNORM2D) {
			for (size_t c = 0; c < l->in.c; c++) {
				n->params[l->w_off + c] = 1.0f;
				n->params[l->b_off + c] = 0.0f;
				n->buffers[l->rm_off + c] = 0.0f;
				n->buffers[l->rv_off + c] = 1.0f;
			}
			n->counts[l->nbt] = 0;
		}
	}
}

const struct net_tensor *net_find(const struct net *n, const char *name)
{
	for (uint32_t i = 0; i < n->ntensors; i++)
		if (strcmp(n->tensors[i].name, name) == 0)
			return &n->tensors[i];
	return NULL;
}

void *net_tensor_data(const struct net *n, const struct net_tensor *t, float *params_base)
{
	switch (t->kind) {
	case TENSOR_PARAM:
		return (params_base ? params_base : n->params) + t->off;
	case TENSOR_BUFFER:
		return n->buffers + t->off;
	case TENSOR_COUNT:
		return n->counts + t->off;
	}
	return NULL;
}

const float *net_output(const struct net *n)
{
	return n->layers[n->spec.n - 1].y;
}

float *net_dout(struct net *n)
{
	return n->dbuf[0];
}

/* ---- one layer's work, shared by the team members ----------------------- */

struct layer_job {
	struct net *n;
	struct net_layer *l;
	uint32_t index;        /* layer index (Dropout's stream) */
	size_t batch;
	bool train;
	uint64_t step;
	const float *in;       /* (batch, in_size) the layer's input */
	const float *dy;       /* (batch, out_size) gradient at its output */
	float *dx;             /* (batch, in_size) gradient at its input, or NULL */
	/* A linear layer followed by a ReLU computes the ReLU on its own columns
	 * in the same phase: forward, relu is that ReLU layer (its y written);
	 * backward (only when the linear passes no gradient down), relu_job is
	 * the ReLU's job (its dx written from its dy, then used as this dy). */
	struct net_layer *relu;
	const struct layer_job *relu_job;
};

/* A run of layers that work sample by sample, computed in one phase: every
 * layer's function splits the batch with team_split(batch, idx, n, 1), so a
 * member computes the same rows of each in turn and nothing needs the other
 * members' rows until the run ends. */
struct run_job {
	struct net *n;
	net_input_fn fill;     /* forward: fills the member's rows of n->x first (or NULL) */
	void *fill_arg;
	struct layer_job *jobs;
	int first, end;        /* forward: first <= i < end; backward: first >= i > end */
	bool backward;
};

static void run(struct net *n, bool split, team_fn fn, struct layer_job *job)
{
	if (split && n->team && team_size(n->team) > 1)
		team_run(n->team, fn, job);
	else
		fn(job, 0, 1);
}

static bool linear_split(const struct net *n, const struct net_layer *l, size_t batch)
{
	return batch * l->in_size * l->out_size >= SPLIT_MIN_FLOPS;
}

static bool rows_split(const struct net_layer *l, size_t batch)
{
	return batch * l->out_size >= ROWS_MIN_ELEMS;
}

/* y[:, c0:c1] = in W[c0:c1]^T + b[c0:c1] */
static void linear_forward(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	struct net_layer *l = j->l;
	const float *p = j->n->params;
	size_t in = l->in_size, out = l->out_size, c0, c1;

	team_split(out, idx, nm, SPLIT_ALIGN, &c0, &c1);
	if (c0 == c1)
		return;
	/* Start from the bias and accumulate (beta = 1): saves the pass that
	 * would zero y and the pass that would add the bias. */
	if (l->has_bias)
		k_fill_rows(l->y, out, j->batch, c0, c1, p + l->b_off);
	k_gemm(0, 1, j->batch, c1 - c0, in, 1.0f, j->in, in, p + l->w_off + c0 * in, in,
	       l->has_bias ? 1.0f : 0.0f, l->y + c0, out);
	if (j->relu)
		for (size_t r = 0; r < j->batch; r++)
			k_relu_rows(j->relu->y + r * out + c0, l->y + r * out + c0, c1 - c0);
}

/* dx[:, c0:c1] = dy W[:, c0:c1]; dW[r0:r1] = dy[:, r0:r1]^T in; db[r0:r1] = colsum dy */
static void linear_backward(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	struct net_layer *l = j->l;
	struct net *n = j->n;
	size_t in = l->in_size, out = l->out_size, lo, hi;

	if (j->dx) {
		team_split(in, idx, nm, SPLIT_ALIGN, &lo, &hi);
		if (lo < hi)
			k_gemm(0, 0, j->batch, hi - lo, out, 1.0f, j->dy, out,
			       n->params + l->w_off + lo, in, 0.0f, j->dx + lo, in);
	}
	team_split(out, idx, nm, SPLIT_ALIGN, &lo, &hi);
	if (lo == hi)
		return;
	if (j->relu_job)   /* the ReLU's backward on these columns: they are all this member reads */
		for (size_t r = 0; r < j->batch; r++)
			k_relu_backward_rows(j->relu_job->dx + r * out + lo, j->relu_job->l->y + r * out + lo,
					     j->relu_job->dy + r * out + lo, hi - lo);
	k_gemm(1, 0, hi - lo, in, j->batch, 1.0f, j->dy + lo, out, j->in, in, 0.0f,
	       n->grads + l->w_off + lo * in, in);
	if (l->has_bias)
		k_colsum(n->grads + l->b_off, j->dy, out, j->batch, lo, hi);
}

/* The Dropout stream: element e of step `step` in layer `index`. */
static void dropout_block(uint64_t key, uint64_t step, uint32_t index, uint64_t block,
			  uint32_t out[4])
{
	uint32_t ctr[4] = { (uint32_t)block, (uint32_t)(block >> 32) ^ (index << 16),
			    (uint32_t)step, (uint32_t)(step >> 32) };
	uint32_t k[2] = { (uint32_t)key, (uint32_t)(key >> 32) };

	philox4x32(ctr, k, out);
}

/* rows [r0, r1) of the member idx whose share starts at row `first` */
static void act_forward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	size_t size = l->out_size;
	const float *x;
	float *y;

	x = j->in + r0 * size;
	y = l->y + r0 * size;
	switch (l->spec.kind) {
	case LAYER_RELU:
		k_relu_rows(y, x, (r1 - r0) * size);
		break;
	case LAYER_TANH:
		for (size_t e = 0; e < (r1 - r0) * size; e++)
			y[e] = tanhf(x[e]);
		break;
	case LAYER_GELU:
		for (size_t e = 0; e < (r1 - r0) * size; e++)
			y[e] = x[e] * 0.5f * (1.0f + erff(x[e] * (float)M_SQRT1_2));
		break;
	case LAYER_DROPOUT:
		if (!j->train) {
			memcpy(y, x, (r1 - r0) * size * sizeof(float));
			break;
		} else {
			uint64_t threshold = (uint64_t)ldexp(1.0 - l->spec.p, 32);
			float scale = (float)(1.0 / (1.0 - l->spec.p));
			uint8_t *mask = l->mask + r0 * size;
			uint32_t words[4];
			uint64_t g0 = (uint64_t)r0 * size;

			for (size_t e = 0; e < (r1 - r0) * size; e++) {
				uint64_t g = g0 + e;
				bool keep;

				if (e == 0 || (g & 3) == 0)
					dropout_block(j->n->dropout_key, j->step, j->index, g >> 2, words);
				keep = words[g & 3] < threshold;
				mask[e] = keep;
				y[e] = keep ? x[e] * scale : 0.0f;
			}
		}
		break;
	default:
		break;
	}
}

/* rows [r0, r1) of the member idx whose share starts at row `first` */
static void act_backward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	size_t size = l->out_size, len;
	const float *dy, *y, *x;
	float *dx;

	len = (r1 - r0) * size;
	dy = j->dy + r0 * size;
	y = l->y + r0 * size;
	x = j->in + r0 * size;
	dx = j->dx + r0 * size;
	switch (l->spec.kind) {
	case LAYER_RELU:
		k_relu_backward_rows(dx, y, dy, len);
		break;
	case LAYER_TANH:
		for (size_t e = 0; e < len; e++)
			dx[e] = dy[e] * (1.0f - y[e] * y[e]);
		break;
	case LAYER_GELU: {
		const float beta = (float)(M_2_SQRTPI * M_SQRT1_2 * 0.5);   /* 1/sqrt(2 pi) */

		for (size_t e = 0; e < len; e++) {
			float cdf = 0.5f * (1.0f + erff(x[e] * (float)M_SQRT1_2));
			float pdf = expf(-0.5f * x[e] * x[e]) * beta;

			dx[e] = dy[e] * (cdf + x[e] * pdf);
		}
		break;
	}
	case LAYER_DROPOUT: {
		float scale = (float)(1.0 / (1.0 - l->spec.p));
		const uint8_t *mask = l->mask + r0 * size;

		for (size_t e = 0; e < len; e++)
			dx[e] = mask[e] ? dy[e] * scale : 0.0f;
		break;
	}
	default:
		break;
	}
}

/* BatchNorm over (batch, C, S): channels [c0, c1) of this member. */
static void bn_forward(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	struct net_layer *l = j->l;
	struct net *n = j->n;
	size_t C = l->in.c, S = (size_t)l->in.h * l->in.w, size = l->in_size, c0, c1;
	double count = (double)j->batch * (double)S;

	team_split(C, idx, nm, 1, &c0, &c1);
	for (size_t c = c0; c < c1; c++) {
		double mean, invstd;
		float alpha, beta;

		if (j->train) {
			double sum = 0.0, sq = 0.0, var;
			float *rm = n->buffers + l->rm_off + c, *rv = n->buffers + l->rv_off + c;

			for (size_t r = 0; r < j->batch; r++)
				for (size_t s = 0; s < S; s++)
					sum += j->in[r * size + c * S + s];
			mean = sum / count;
			for (size_t r = 0; r < j->batch; r++)
				for (size_t s = 0; s < S; s++) {
					double d = j->in[r * size + c * S + s] - mean;

					sq += d * d;
				}
			var = sq / count;
			invstd = 1.0 / sqrt(var + BN_EPS);
			l->mean[c] = mean;
			l->invstd[c] = invstd;
			*rm = (float)(BN_MOMENTUM * mean + (1.0 - BN_MOMENTUM) * *rm);
			*rv = (float)(BN_MOMENTUM * (count > 1 ? var * count / (count - 1) : var) +
				      (1.0 - BN_MOMENTUM) * *rv);
		} else {
			mean = n->buffers[l->rm_off + c];
			invstd = 1.0 / sqrt((double)n->buffers[l->rv_off + c] + BN_EPS);
		}
		alpha = (float)(invstd * n->params[l->w_off + c]);
		beta = (float)(n->params[l->b_off + c] - mean * invstd * n->params[l->w_off + c]);
		for (size_t r = 0; r < j->batch; r++) {
			const float *x = j->in + r * size + c * S;
			float *y = l->y + r * size + c * S;

			for (size_t s = 0; s < S; s++)
				y[s] = x[s] * alpha + beta;
		}
	}
}

static void bn_backward(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	struct net_layer *l = j->l;
	struct net *n = j->n;
	size_t C = l->in.c, S = (size_t)l->in.h * l->in.w, size = l->in_size, c0, c1;
	double count = (double)j->batch * (double)S;

	team_split(C, idx, nm, 1, &c0, &c1);
	for (size_t c = c0; c < c1; c++) {
		double mean = l->mean[c], invstd = l->invstd[c], sdy = 0.0, sdyx = 0.0;

		for (size_t r = 0; r < j->batch; r++)
			for (size_t s = 0; s < S; s++) {
				size_t e = r * size + c * S + s;

				sdy += j->dy[e];
				sdyx += j->dy[e] * ((j->in[e] - mean) * invstd);
			}
		n->grads[l->w_off + c] = (float)sdyx;
		n->grads[l->b_off + c] = (float)sdy;
		if (j->dx) {
			double k = n->params[l->w_off + c] * invstd;
			double mdy = sdy / count, mdyx = sdyx / count;

			for (size_t r = 0; r < j->batch; r++)
				for (size_t s = 0; s < S; s++) {
					size_t e = r * size + c * S + s;
					double xhat = (j->in[e] - mean) * invstd;

					j->dx[e] = (float)(k * (j->dy[e] - mdy - xhat * mdyx));
				}
		}
	}
}

/* Conv2d on this member's samples: y[r] (OC, OH*OW) = W (OC, C*K*K) col(x[r]) + b */
/* rows [r0, r1) of the member idx whose share starts at row `first` */
static void conv_forward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	struct net *n = j->n;
	const struct layer_spec *s = &l->spec;
	size_t ckk = (size_t)l->in.c * s->k * s->k, ohw = (size_t)l->out.h * l->out.w;
	float *col = n->col + idx * n->col_len;
	for (size_t r = r0; r < r1; r++) {
		float *y = l->y + r * l->out_size;

		k_im2col(col, j->in + r * l->in_size, l->in.c, l->in.h, l->in.w, s->k, s->stride,
			 s->padding, l->out.h, l->out.w);
		if (l->has_bias)
			for (size_t oc = 0; oc < s->out; oc++)
				for (size_t t = 0; t < ohw; t++)
					y[oc * ohw + t] = n->params[l->b_off + oc];
		k_gemm(0, 0, s->out, ohw, ckk, 1.0f, n->params + l->w_off, ckk, col, ohw,
		       l->has_bias ? 1.0f : 0.0f, y, ohw);
	}
}

/* db[oc] (= when first, else +=) the sum over t of dy[oc][t], each oc's sum
 * in t order from 0.0f, as one loop per oc would; the oc sums advance side
 * by side, CONV_SUMS at a time, so that they do not wait on each other's
 * additions (a single sum is a chain of dependent adds). */
#define CONV_SUMS 16
static void conv_bias_sums(float *db, const float *dy, size_t out, size_t ohw, bool first)
{
	for (size_t o0 = 0; o0 < out; o0 += CONV_SUMS) {
		size_t n = out - o0 < CONV_SUMS ? out - o0 : CONV_SUMS;
		float sum[CONV_SUMS] = { 0 };

		for (size_t t = 0; t < ohw; t++)
			for (size_t q = 0; q < n; q++)
				sum[q] += dy[(o0 + q) * ohw + t];
		for (size_t q = 0; q < n; q++)
			db[o0 + q] = first ? sum[q] : db[o0 + q] + sum[q];
	}
}

/* This member's samples: its partial dW (OC, C*K*K) and db (OC) sums, and dx. */
/* rows [r0, r1) of the member idx whose share starts at row `first` */
static void conv_backward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	struct net *n = j->n;
	const struct layer_spec *s = &l->spec;
	size_t ckk = (size_t)l->in.c * s->k * s->k, ohw = (size_t)l->out.h * l->out.w;
	float *col = n->col + idx * n->col_len, *dcol = n->dcol + idx * n->col_len;
	float *dw = n->part + idx * n->part_len + l->part_off, *db = dw + (size_t)s->out * ckk;

	for (size_t r = r0; r < r1; r++) {
		const float *dy = j->dy + r * l->out_size;

		k_im2col(col, j->in + r * l->in_size, l->in.c, l->in.h, l->in.w, s->k, s->stride,
			 s->padding, l->out.h, l->out.w);
		k_gemm(0, 1, s->out, ckk, ohw, 1.0f, dy, ohw, col, ohw, r == first ? 0.0f : 1.0f, dw,
		       ckk);
		conv_bias_sums(db, dy, s->out, ohw, r == first);
		if (j->dx) {
			k_gemm(1, 0, ckk, ohw, s->out, 1.0f, n->params + l->w_off, ckk, dy, ohw, 0.0f,
			       dcol, ohw);
			k_col2im(j->dx + r * l->in_size, dcol, l->in.c, l->in.h, l->in.w, s->k,
				 s->stride, s->padding, l->out.h, l->out.w);
		}
	}
}

/* The members' partial sums, added in member order into the gradients. */
static void conv_reduce(struct net *n, struct net_layer *l, unsigned members)
{
	size_t ckk = (size_t)l->in.c * l->spec.k * l->spec.k;
	size_t nw = (size_t)l->spec.out * ckk, nb = l->spec.out;
	float *gw = n->grads + l->w_off, *gb = l->has_bias ? n->grads + l->b_off : NULL;
	bool first = true;

	for (unsigned m = 0; m < members; m++) {
		const float *dw = n->part + m * n->part_len + l->part_off, *db = dw + nw;

		if (n->part_rows[m] == 0)
			continue;
		for (size_t e = 0; e < nw; e++)
			gw[e] = first ? dw[e] : gw[e] + dw[e];
		for (size_t e = 0; gb && e < nb; e++)
			gb[e] = first ? db[e] : gb[e] + db[e];
		first = false;
	}
}

/* rows [r0, r1) of the member idx whose share starts at row `first` */
static void pool_forward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	const struct layer_spec *s = &l->spec;
	for (size_t r = r0; r < r1; r++) {
		const float *x = j->in + r * l->in_size;
		float *y = l->y + r * l->out_size;

		if (s->kind == LAYER_MAXPOOL2D)
			k_maxpool(y, l->argmax + r * l->out_size, x, l->in.c, l->in.h, l->in.w, s->k,
				  s->stride, l->out.h, l->out.w);
		else
			k_avgpool(y, x, l->in.c, l->in.h, l->in.w, s->k, s->stride, l->out.h, l->out.w);
	}
}

/* rows [r0, r1) of the member idx whose share starts at row `first` */
static void pool_backward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	const struct layer_spec *s = &l->spec;
	for (size_t r = r0; r < r1; r++) {
		const float *dy = j->dy + r * l->out_size;
		float *dx = j->dx + r * l->in_size;

		if (s->kind == LAYER_MAXPOOL2D)
			k_maxpool_backward(dx, dy, l->argmax + r * l->out_size, l->in_size, l->out_size);
		else
			k_avgpool_backward(dx, dy, l->in.c, l->in.h, l->in.w, s->k, s->stride,
					   l->out.h, l->out.w);
	}
}

/* ---- the passes ------------------------------------------------------------ */

/* Layers whose work is sample by sample (see struct run_job). */
static bool per_sample(enum layer_kind k)
{
	switch (k) {
	case LAYER_FLATTEN:
	case LAYER_RELU:
	case LAYER_TANH:
	case LAYER_GELU:
	case LAYER_DROPOUT:
	case LAYER_CONV2D:
	case LAYER_MAXPOOL2D:
	case LAYER_AVGPOOL2D:
		return true;
	default:
		return false;
	}
}

typedef void (*rows_fn)(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1);

static rows_fn forward_fn(enum layer_kind k)
{
	switch (k) {
	case LAYER_CONV2D:
		return conv_forward;
	case LAYER_MAXPOOL2D:
	case LAYER_AVGPOOL2D:
		return pool_forward;
	case LAYER_FLATTEN:
		return NULL;
	default:
		return act_forward;
	}
}

static rows_fn backward_fn(enum layer_kind k)
{
	switch (k) {
	case LAYER_CONV2D:
		return conv_backward;
	case LAYER_MAXPOOL2D:
	case LAYER_AVGPOOL2D:
		return pool_backward;
	case LAYER_FLATTEN:
		return NULL;
	default:
		return act_backward;
	}
}

/* The member's share of the batch, RUN_BLOCK samples at a time through every
 * layer of the run (the input filled first), so a sample's activations are
 * still in cache when the next layer reads them. */
static void run_rows(void *arg, unsigned idx, unsigned nm)
{
	struct run_job *rj = arg;
	size_t m0, m1;

	team_split(rj->jobs[0].batch, idx, nm, 1, &m0, &m1);
	rj->n->part_rows[idx] = (uint32_t)(m1 - m0);
	for (size_t b0 = m0; b0 < m1; b0 += RUN_BLOCK) {
		size_t b1 = b0 + RUN_BLOCK < m1 ? b0 + RUN_BLOCK : m1;

		if (rj->fill)
			rj->fill(rj->fill_arg, b0, b1);
		for (int i = rj->first; !rj->backward && i < rj->end; i++) {
			rows_fn fn = forward_fn(rj->jobs[i].l->spec.kind);

			if (fn)
				fn(&rj->jobs[i], idx, m0, b0, b1);
		}
		for (int i = rj->first; rj->backward && i > rj->end; i--) {
			rows_fn fn = backward_fn(rj->jobs[i].l->spec.kind);

			if (fn)
				fn(&rj->jobs[i], idx, m0, b0, b1);
		}
	}
}

/* Whether a run of per-sample layers is worth the team. */
static bool run_split(const struct run_job *rj)
{
	int lo = rj->backward ? rj->end + 1 : rj->first, hi = rj->backward ? rj->first + 1 : rj->end;

	for (int i = lo; i < hi; i++)
		if (rj->jobs[i].l->spec.kind == LAYER_CONV2D || rows_split(rj->jobs[i].l, rj->jobs[i].batch))
			return true;
	return false;
}

void net_forward(struct net *n, size_t batch, bool train, uint64_t step)
{
	net_forward_from(n, batch, train, step, NULL, NULL);
}

void net_forward_from(struct net *n, size_t batch, bool train, uint64_t step, net_input_fn fill,
		      void *fill_arg)
{
	struct layer_job jobs[SPEC_MAX_LAYERS];
	const float *in = n->x;
	bool team = n->team && team_size(n->team) > 1;

	for (uint32_t i = 0; i < n->spec.n; i++) {
		jobs[i] = (struct layer_job){
			.n = n, .l = &n->layers[i], .index = i, .batch = batch, .train = train,
			.step = step, .in = in,
		};
		in = n->layers[i].y;
	}
	if (fill && !per_sample(n->layers[0].spec.kind)) {
		/* the first layer needs every row: the input is its own phase */
		struct run_job rj = { .n = n, .fill = fill, .fill_arg = fill_arg, .jobs = jobs };

		if (team && batch * n->in_size >= ROWS_MIN_ELEMS)
			team_run(n->team, run_rows, &rj);
		else
			fill(fill_arg, 0, batch);
		fill = NULL;
	}
	for (int i = 0; i < (int)n->spec.n;) {
		struct net_layer *l = &n->layers[i];

		switch (l->spec.kind) {
		case LAYER_LINEAR:
			if (i + 1 < (int)n->spec.n && n->layers[i + 1].spec.kind == LAYER_RELU)
				jobs[i].relu = &n->layers[i + 1];
			run(n, linear_split(n, l, batch), linear_forward, &jobs[i]);
			i += jobs[i].relu ? 2 : 1;
			break;
		case LAYER_BATCHNORM1D:
		case LAYER_BATCHNORM2D:
			run(n, rows_split(l, batch), bn_forward, &jobs[i]);
			if (train)
				n->counts[l->nbt]++;
			i++;
			break;
		default: {
			struct run_job rj = { .n = n, .fill = fill, .fill_arg = fill_arg, .jobs = jobs,
					      .first = i, .end = i };

			while (rj.end < (int)n->spec.n && per_sample(n->layers[rj.end].spec.kind))
				rj.end++;
			if (team && (fill || run_split(&rj)))
				team_run(n->team, run_rows, &rj);
			else
				run_rows(&rj, 0, 1);
			fill = NULL;
			i = rj.end;
			break;
		}
		}
	}
}

/* The ReLU at i is computed by the linear layer below it (see struct layer_job). */
static bool relu_fused_down(const struct net *n, const struct layer_job *jobs, int i, int stop)
{
	return n->layers[i].spec.kind == LAYER_RELU && i > stop &&
	       n->layers[i - 1].spec.kind == LAYER_LINEAR && !jobs[i - 1].dx;
}

void net_backward(struct net *n, size_t batch)
{
	struct layer_job jobs[SPEC_MAX_LAYERS];
	float *dy = n->dbuf[0];
	int stop = 0;   /* the lowest layer that runs */
	int cur = 0;

	/* Each layer's gradient buffers, top down, as the pass will use them. */
	for (int i = (int)n->spec.n - 1; i >= 0; i--) {
		struct net_layer *l = &n->layers[i];
		bool want_dx = l->need_dx || n->input_grad;

		if (!want_dx && !spec_has_params(l->spec.kind)) {
			stop = i + 1;   /* nothing below needs a gradient */
			break;
		}
		jobs[i] = (struct layer_job){
			.n = n, .l = l, .index = i, .batch = batch, .train = true,
			.in = i ? n->layers[i - 1].y : n->x,
			.dy = dy,
			.dx = want_dx ? (l->gx ? l->gx : n->dbuf[1 - cur]) : NULL,
		};
		if (l->spec.kind == LAYER_FLATTEN)
			continue;   /* the gradient passes through as it is */
		if (want_dx) {
			dy = jobs[i].dx;
			if (!l->gx)
				cur = 1 - cur;
		}
	}
	for (int i = (int)n->spec.n - 1; i >= stop; i--) {
		struct net_layer *l = &n->layers[i];

		if (relu_fused_down(n, jobs, i, stop)) {
			jobs[i - 1].relu_job = &jobs[i];
			i--;
			l = &n->layers[i];
		}
		switch (l->spec.kind) {
		case LAYER_LINEAR:
			run(n, linear_split(n, l, batch), linear_backward, &jobs[i]);
			break;
		case LAYER_BATCHNORM1D:
		case LAYER_BATCHNORM2D:
			run(n, rows_split(l, batch), bn_backward, &jobs[i]);
			break;
		default: {
			/* down to the first layer that is not per sample (or whose
			 * ReLU the linear layer below computes) */
			struct run_job rj = { .n = n, .jobs = jobs, .first = i, .end = i, .backward = true };
			bool split;

			while (rj.end >= stop && per_sample(n->layers[rj.end].spec.kind) &&
			       !relu_fused_down(n, jobs, rj.end, stop))
				rj.end--;
			split = run_split(&rj) && n->team && team_size(n->team) > 1;
			if (split)
				team_run(n->team, run_rows, &rj);
			else
				run_rows(&rj, 0, 1);
			for (int k = i; k > rj.end; k--)
				if (n->layers[k].spec.kind == LAYER_CONV2D)
					conv_reduce(n, &n->layers[k], split ? team_size(n->team) : 1);
			i = rj.end + 1;
			break;
		}
		}
	}
	n->dx = n->input_grad ? dy : NULL;
}

