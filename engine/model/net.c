/*
 * net.c - the tensor table, the graph's plan, forward and backward. See
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
 * A convolutional model's runs of per-sample nodes (conv2d, activations,
 * pools, flatten, the joins of blocks), consecutive in execution order, take
 * one phase each way, each member its samples two at a time through all of
 * the run's nodes (struct run_job): a node reads rows of values computed
 * earlier in the same run by the same member, or in an earlier phase. The
 * gather joins the first run when the model starts with one. Each member
 * computes whole rows or columns, so its writes never touch another's, and
 * the result depends only on the split, which these fusions leave as it
 * was: every element is computed by the same operations in the same order as
 * with one phase per layer (the bits are those of the previous engine, and a
 * SPEC without blocks runs the very phases it ran before blocks existed).
 *
 * The backward plan (plan_backward, at net_init and net_set_input_grad):
 * which nodes do anything (active: parameters, or a gradient to pass down),
 * the phases in backward order, and the gradient buffers. A value's gradient
 * (its "class", shared with the values it aliases: flatten's and identity's
 * input, a residual branch's last output, whose gradient is the join's)
 * lives from the phase of its first writer to the phase of its producer; a
 * second reader of a value (a block's input) adds its gradient in: a join
 * adds in place, a layer writes into a scratch buffer that is then added,
 * row by row in the same phase. Classes whose lifetimes do not overlap share
 * a pool buffer (greedy interval colouring); everything touched in one phase
 * is in distinct buffers, since the members of a phase write rows of
 * different sizes.
 */
#include "traind/net.h"

#include <alloca.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/kernels.h"
#include "engine/model/dnnblk.h"
#include "engine/model/dnnconv.h"
#include "engine/model/seq.h"
#include "traind/portable.h"

#define SPLIT_ALIGN 16               /* floats: one cache line */
#define SPLIT_MIN_FLOPS (1u << 18)   /* below this a linear layer runs on the owner */
#define ROWS_MIN_ELEMS (1u << 14)    /* below this an elementwise layer runs on the owner */
#define RUN_BLOCK 2                  /* samples a run of per-sample layers takes at a time */
#define BN_MOMENTUM 0.1
#define BN_EPS 1e-5
#define PHASE_END 0x7fffffff         /* a lifetime that lasts past the backward pass */

static bool per_sample(enum layer_kind k);

static size_t size_max(size_t a, size_t b)
{
	return a > b ? a : b;
}

/* One phase of the backward pass: a linear layer (with the ReLU above it
 * when relu >= 0), a BatchNorm, or a run of per-sample nodes, order
 * positions hi down to lo. */
struct bphase {
	enum { BP_LINEAR, BP_BATCHNORM, BP_RUN, BP_SEQ } kind;
	int hi, lo;          /* order positions, hi >= lo */
	int relu;            /* BP_LINEAR: the fused ReLU's node, or -1 */
};

struct net_plan {
	uint32_t nvals;      /* spec.n + 1: value spec.n is the model's input */
	int *cls;            /* (nvals) the gradient class of each value, -1: none */
	uint32_t ncls;
	int *cls_buf;        /* (ncls + nodes) pool buffer of each class, then of each scratch */
	uint32_t *first;     /* (spec.n) bit k: the node writes input k's gradient first */
	uint32_t *alias;     /* (spec.n) bit k: input k's gradient is the node's own (no work) */
	struct bphase *phases;
	uint32_t nphases;
	uint32_t nbufs;
	size_t *buf_len;     /* (nbufs) floats per sample */
	float **bufs;        /* (nbufs) (max_batch, buf_len), owned */
	size_t floats;       /* all of the pool's floats */
};

static uint32_t vin(const struct net *n)
{
	return n->spec.n;
}

/* The values node i reads: its src, or a join's branch ends. */
static uint32_t node_inputs(const struct net *n, uint32_t i, uint32_t *v)
{
	const struct layer_spec *s = &n->layers[i].spec;

	if (s->kind == LAYER_RESIDUAL) {
		v[0] = s->last[0] < 0 ? vin(n) : (uint32_t)s->last[0];
		v[1] = s->last[1] < 0 ? vin(n) : (uint32_t)s->last[1];
		return 2;
	}
	if (s->kind == LAYER_CONCAT) {
		for (uint32_t b = 0; b < s->nbranches; b++)
			v[b] = s->last[b] < 0 ? vin(n) : (uint32_t)s->last[b];
		return s->nbranches;
	}
	v[0] = s->src < 0 ? vin(n) : (uint32_t)s->src;
	return 1;
}

static float *value_y(const struct net *n, uint32_t v)
{
	return v == vin(n) ? n->x : n->layers[v].y;
}

static size_t value_size(const struct net *n, uint32_t v)
{
	return v == vin(n) ? n->in_size : n->layers[v].out_size;
}

static float *grad_of(const struct net *n, uint32_t v)
{
	const struct net_plan *p = n->plan;

	if (p->cls[v] < 0)
		return NULL;
	return p->bufs[p->cls_buf[p->cls[v]]];
}

/* What seq.c sees of node l (its header). */
static struct seq_ctx seq_of(const struct net *n, const struct net_layer *l)
{
	struct seq_ctx c = {
		.spec = &l->spec, .in = l->in, .out = l->out, .params = n->params ? n->params + l->w_off : NULL,
		.grads = n->grads ? n->grads + l->w_off : NULL, .y = l->y, .aux = l->aux, .tmp = n->seqtmp,
		.mb = n->max_batch, .key = n->dropout_key, .kernels = n->kernels,
		.v2 = n->seq_kernels >= 2 && n->kernels != KERNELS_PORTABLE,
	};

	return c;
}

static size_t seq_params(const struct net *n, const struct net_layer *l)
{
	struct seq_ctx c = seq_of(n, l);

	return seq_param_floats(&c);
}

static void add_tensor(struct net *n, const char *path, const char *what, enum tensor_kind kind,
		       int ndim, const uint64_t *shape, size_t *counter, size_t *off)
{
	struct net_tensor *t = &n->tensors[n->ntensors++];
	size_t len = 1;

	snprintf(t->name, sizeof(t->name), "%.96s.%.30s", path, what);
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

/* The tensors of node i, in state_dict order. */
static void declare_tensors(struct net *n, uint32_t i)
{
	struct net_layer *l = &n->layers[i];
	const struct layer_spec *s = &l->spec;
	uint64_t shape[4];
	char path[NET_TENSOR_NAME];

	spec_module_path(&n->spec, i, path, sizeof(path));
	switch (s->kind) {
	case LAYER_LINEAR:
		shape[0] = s->out;
		shape[1] = l->in.c;
		add_tensor(n, path, "weight", TENSOR_PARAM, 2, shape, &n->nparams, &l->w_off);
		if (s->bias)
			add_tensor(n, path, "bias", TENSOR_PARAM, 1, shape, &n->nparams, &l->b_off);
		l->has_bias = s->bias;
		break;
	case LAYER_CONV2D:
		shape[0] = s->out;
		shape[1] = l->in.c / s->groups;
		shape[2] = s->k;
		shape[3] = s->k;
		add_tensor(n, path, "weight", TENSOR_PARAM, 4, shape, &n->nparams, &l->w_off);
		if (s->bias)
			add_tensor(n, path, "bias", TENSOR_PARAM, 1, shape, &n->nparams, &l->b_off);
		l->has_bias = s->bias;
		break;
	case LAYER_BATCHNORM1D:
	case LAYER_BATCHNORM2D:
		shape[0] = l->in.c;
		add_tensor(n, path, "weight", TENSOR_PARAM, 1, shape, &n->nparams, &l->w_off);
		add_tensor(n, path, "bias", TENSOR_PARAM, 1, shape, &n->nparams, &l->b_off);
		add_tensor(n, path, "running_mean", TENSOR_BUFFER, 1, shape, &n->nbuffers, &l->rm_off);
		add_tensor(n, path, "running_var", TENSOR_BUFFER, 1, shape, &n->nbuffers, &l->rv_off);
		add_tensor(n, path, "num_batches_tracked", TENSOR_COUNT, 0, shape, &n->ncounts, &l->nbt);
		l->has_bias = true;
		break;
	case LAYER_EMBEDDING:
	case LAYER_POSEMBEDDING:
		shape[0] = s->kind == LAYER_EMBEDDING ? s->num : s->num ? s->num : l->in.h;
		shape[1] = l->out.c;
		add_tensor(n, path, "weight", TENSOR_PARAM, 2, shape, &n->nparams, &l->w_off);
		break;
	case LAYER_LAYERNORM:
		shape[0] = l->in.c;
		add_tensor(n, path, "weight", TENSOR_PARAM, 1, shape, &n->nparams, &l->w_off);
		add_tensor(n, path, "bias", TENSOR_PARAM, 1, shape, &n->nparams, &l->b_off);
		break;
	case LAYER_LSTM:
	case LAYER_GRU:
		for (uint32_t k = 0; k < s->layers; k++) {
			char what[32];
			size_t off;

			shape[0] = (s->kind == LAYER_LSTM ? 4 : 3) * (uint64_t)s->out;
			shape[1] = k ? s->out : l->in.c;
			snprintf(what, sizeof(what), "weight_ih_l%u", k);
			add_tensor(n, path, what, TENSOR_PARAM, 2, shape, &n->nparams, &off);
			if (k == 0)
				l->w_off = off;
			shape[1] = s->out;
			snprintf(what, sizeof(what), "weight_hh_l%u", k);
			add_tensor(n, path, what, TENSOR_PARAM, 2, shape, &n->nparams, &off);
			snprintf(what, sizeof(what), "bias_ih_l%u", k);
			add_tensor(n, path, what, TENSOR_PARAM, 1, shape, &n->nparams, &off);
			snprintf(what, sizeof(what), "bias_hh_l%u", k);
			add_tensor(n, path, what, TENSOR_PARAM, 1, shape, &n->nparams, &off);
		}
		break;
	case LAYER_MHA:
	case LAYER_TRANSFORMER: {
		const char *pre = s->kind == LAYER_MHA ? "" : "self_attn.";
		char what[48];
		size_t off;
		uint64_t E = l->in.c, FF = s->ff;

		shape[0] = 3 * E;
		shape[1] = E;
		snprintf(what, sizeof(what), "%sin_proj_weight", pre);
		add_tensor(n, path, what, TENSOR_PARAM, 2, shape, &n->nparams, &l->w_off);
		snprintf(what, sizeof(what), "%sin_proj_bias", pre);
		add_tensor(n, path, what, TENSOR_PARAM, 1, shape, &n->nparams, &off);
		shape[0] = E;
		snprintf(what, sizeof(what), "%sout_proj.weight", pre);
		add_tensor(n, path, what, TENSOR_PARAM, 2, shape, &n->nparams, &off);
		snprintf(what, sizeof(what), "%sout_proj.bias", pre);
		add_tensor(n, path, what, TENSOR_PARAM, 1, shape, &n->nparams, &off);
		if (s->kind == LAYER_MHA)
			break;
		shape[0] = FF;
		shape[1] = E;
		add_tensor(n, path, "linear1.weight", TENSOR_PARAM, 2, shape, &n->nparams, &off);
		add_tensor(n, path, "linear1.bias", TENSOR_PARAM, 1, shape, &n->nparams, &off);
		shape[0] = E;
		shape[1] = FF;
		add_tensor(n, path, "linear2.weight", TENSOR_PARAM, 2, shape, &n->nparams, &off);
		add_tensor(n, path, "linear2.bias", TENSOR_PARAM, 1, shape, &n->nparams, &off);
		add_tensor(n, path, "norm1.weight", TENSOR_PARAM, 1, shape, &n->nparams, &off);
		add_tensor(n, path, "norm1.bias", TENSOR_PARAM, 1, shape, &n->nparams, &off);
		add_tensor(n, path, "norm2.weight", TENSOR_PARAM, 1, shape, &n->nparams, &off);
		add_tensor(n, path, "norm2.bias", TENSOR_PARAM, 1, shape, &n->nparams, &off);
		break;
	}
	default:
		break;
	}
}

/* Append node i's subtree in execution order: a block's branches, then it. */
static void emit_order(struct net *n, uint32_t i, uint32_t *count)
{
	const struct layer_spec *s = &n->layers[i].spec;

	if (spec_is_block(s->kind))
		for (uint32_t c = i + 1; c < s->end; c++) {
			if (n->layers[c].spec.parent != (int32_t)i)
				continue;
			emit_order(n, c, count);
			if (spec_is_block(n->layers[c].spec.kind))
				c = n->layers[c].spec.end - 1;
		}
	n->order[(*count)++] = i;
}

/* ---- the backward plan ------------------------------------------------------- */

static int uf_find(int *parent, int x)
{
	while (parent[x] != x)
		x = parent[x] = parent[parent[x]];
	return x;
}

static bool relu_fusable(const struct net *n, int q);

/* Phases of the backward pass over the active nodes (see struct bphase). */
static uint32_t backward_phases(const struct net *n, struct bphase *ph)
{
	uint32_t count = 0;

	for (int q = (int)n->spec.n - 1; q >= 0;) {
		uint32_t i = n->order[q];
		enum layer_kind k = n->layers[i].spec.kind;
		struct bphase p = { .hi = q, .lo = q, .relu = -1 };

		if (!n->layers[i].active) {
			q--;
			continue;
		}
		if (relu_fusable(n, q)) {
			p.kind = BP_LINEAR;
			p.relu = (int)i;
			p.lo = q - 1;
		} else if (k == LAYER_LINEAR) {
			p.kind = BP_LINEAR;
		} else if (spec_is_batchnorm(k)) {
			p.kind = BP_BATCHNORM;
		} else if (k == LAYER_EMBEDDING || spec_is_sequence_layer(k)) {
			p.kind = BP_SEQ;
		} else {
			/* down to the first node that is not per sample (or is a
			 * ReLU the linear layer below it computes) */
			p.kind = BP_RUN;
			while (p.lo - 1 >= 0 && per_sample(n->layers[n->order[p.lo - 1]].spec.kind) &&
			       n->layers[n->order[p.lo - 1]].active && !relu_fusable(n, p.lo - 1))
				p.lo--;
		}
		ph[count++] = p;
		q = p.lo - 1;
	}
	return count;
}

/* The ReLU at order position q is computed by the linear layer just below
 * it, in that layer's phase: the linear's only reader, passing no gradient
 * down (see struct layer_job). */
static bool relu_fusable(const struct net *n, int q)
{
	uint32_t i = n->order[q], src;
	const struct net_layer *lin;

	if (n->layers[i].spec.kind != LAYER_RELU || q == 0 || !n->layers[i].active)
		return false;
	src = n->order[q - 1];
	lin = &n->layers[src];
	return n->layers[i].spec.src == (int32_t)src && lin->spec.kind == LAYER_LINEAR &&
	       lin->consumers == 1 && !lin->need_dx;
}

struct interval {
	int start, end;
	size_t size;         /* floats per sample */
	int buf;
};

static void plan_free(struct net_plan *p)
{
	if (!p)
		return;
	for (uint32_t b = 0; p->bufs && b < p->nbufs; b++)
		free(p->bufs[b]);
	free(p->bufs);
	free(p->buf_len);
	free(p->cls);
	free(p->cls_buf);
	free(p->first);
	free(p->alias);
	free(p->phases);
	free(p);
}

/* Plan the backward pass (see the top); allocate the pool when alloc. */
static int plan_backward(struct net *n, bool alloc)
{
	uint32_t N = n->spec.n, V = N + 1;
	struct net_plan *p;
	int *uf = NULL, *phase_of = NULL;
	struct interval *iv = NULL;
	bool *up = NULL, *written = NULL;
	uint32_t niv = 0, v[SPEC_MAX_BRANCHES];
	int rc = -ENOMEM;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->nvals = V;
	p->cls = malloc(V * sizeof(int));
	p->first = calloc(N, sizeof(uint32_t));
	p->alias = calloc(N, sizeof(uint32_t));
	p->phases = calloc(N, sizeof(struct bphase));
	p->cls_buf = malloc((V + N) * sizeof(int));
	uf = malloc(V * sizeof(int));
	phase_of = malloc(N * sizeof(int));
	iv = calloc(V + N, sizeof(*iv));
	up = calloc(V, sizeof(bool));
	written = calloc(V, sizeof(bool));
	if (!p->cls || !p->first || !p->alias || !p->phases || !p->cls_buf || !uf || !phase_of ||
	    !iv || !up || !written)
		goto out;

	/* Which values carry a gradient: those a layer with parameters (or
	 * the input, with input_grad) feeds. */
	up[N] = n->input_grad;
	for (uint32_t q = 0; q < N; q++) {
		uint32_t i = n->order[q], m = node_inputs(n, i, v);
		struct net_layer *l = &n->layers[i];

		l->need_dx = false;
		for (uint32_t k = 0; k < m; k++)
			l->need_dx = l->need_dx || up[v[k]];
		up[i] = l->need_dx || spec_has_params(l->spec.kind);
		l->active = up[i];
	}
	/* Aliases: a value whose only reader passes its gradient through
	 * unchanged shares that reader's class. */
	for (uint32_t x = 0; x < V; x++)
		uf[x] = (int)x;
	for (uint32_t i = 0; i < N; i++) {
		struct net_layer *l = &n->layers[i];
		uint32_t m = node_inputs(n, i, v);

		for (uint32_t k = 0; k < m; k++) {
			bool pass = l->spec.kind == LAYER_FLATTEN || l->spec.kind == LAYER_IDENTITY ||
				    l->spec.kind == LAYER_RESIDUAL;
			uint32_t readers = v[k] == N ? 1 : n->layers[v[k]].consumers;

			if (pass && readers == 1 && up[v[k]]) {
				uf[uf_find(uf, (int)v[k])] = uf_find(uf, (int)i);
				p->alias[i] |= 1u << k;
			}
		}
	}
	p->ncls = 0;
	for (uint32_t x = 0; x < V; x++)
		p->cls[x] = -1;
	for (uint32_t x = 0; x < V; x++) {
		int r = uf_find(uf, (int)x);

		if (!up[x] && x != n->out_node)
			continue;
		if (p->cls[r] < 0 || (uint32_t)r != x) {
			if (p->cls[r] < 0) {
				p->cls[r] = (int)p->ncls;
				iv[p->ncls] = (struct interval){ .start = PHASE_END, .end = -1,
								 .size = value_size(n, x), .buf = -1 };
				p->ncls++;
			}
			p->cls[x] = p->cls[r];
		}
	}
	/* Phases, first writers, scratch buffers and lifetimes. */
	p->nphases = backward_phases(n, p->phases);
	for (uint32_t i = 0; i < N; i++) {
		phase_of[i] = -1;
		n->layers[i].scratch = -1;
	}
	for (uint32_t ph = 0; ph < p->nphases; ph++)
		for (int q = p->phases[ph].hi; q >= p->phases[ph].lo; q--)
			phase_of[n->order[q]] = (int)ph;
	niv = p->ncls;
	iv[p->cls[n->out_node]].start = 0;   /* the loss writes it before phase 0 */
	for (uint32_t ph = 0; ph < p->nphases; ph++) {
		for (int q = p->phases[ph].hi; q >= p->phases[ph].lo; q--) {
			uint32_t i = n->order[q], m = node_inputs(n, i, v);
			struct net_layer *l = &n->layers[i];
			int c = p->cls[i];

			if (!l->active)
				continue;
			/* it reads the gradient at its output */
			if (c >= 0) {
				iv[c].start = iv[c].start < (int)ph ? iv[c].start : (int)ph;
				iv[c].end = iv[c].end > (int)ph ? iv[c].end : (int)ph;
			}
			for (uint32_t k = 0; k < m; k++) {
				int ck = p->cls[v[k]];

				if (!up[v[k]] || (p->alias[i] >> k & 1))
					continue;
				iv[ck].start = iv[ck].start < (int)ph ? iv[ck].start : (int)ph;
				iv[ck].end = iv[ck].end > (int)ph ? iv[ck].end : (int)ph;
				if (!written[ck]) {
					written[ck] = true;
					p->first[i] |= 1u << k;
				} else if (!spec_is_block(l->spec.kind) && l->spec.kind != LAYER_FLATTEN &&
					   l->spec.kind != LAYER_IDENTITY) {
					/* a layer's dx goes to scratch, then is added */
					iv[niv] = (struct interval){ .start = (int)ph, .end = (int)ph,
								     .size = value_size(n, v[k]), .buf = -1 };
					l->scratch = (int)niv++;
				}
			}
		}
	}
	if (p->cls[N] >= 0)
		iv[p->cls[N]].end = PHASE_END;   /* n->dx outlives the pass */
	if (iv[p->cls[n->out_node]].end < 0)
		iv[p->cls[n->out_node]].end = 0;   /* net_dout is always a buffer */
	/* Greedy interval colouring, by start. */
	for (;;) {
		uint32_t best = niv;

		for (uint32_t a = 0; a < niv; a++)
			if (iv[a].buf < 0 && iv[a].end >= iv[a].start &&
			    (best == niv || iv[a].start < iv[best].start))
				best = a;
		if (best == niv)
			break;
		{
			int pick = -1;
			size_t *len;

			for (uint32_t b = 0; b < p->nbufs; b++) {
				bool busy = false;

				for (uint32_t a = 0; a < niv && !busy; a++)
					busy = iv[a].buf == (int)b && !(iv[a].end < iv[best].start ||
									iv[best].end < iv[a].start);
				if (!busy && (pick < 0 || (p->buf_len[b] >= iv[best].size) >
								  (p->buf_len[pick] >= iv[best].size)))
					pick = (int)b;
			}
			if (pick < 0) {
				len = realloc(p->buf_len, (p->nbufs + 1) * sizeof(size_t));
				if (!len)
					goto out;
				p->buf_len = len;
				p->buf_len[p->nbufs] = 0;
				pick = (int)p->nbufs++;
			}
			if (p->buf_len[pick] < iv[best].size)
				p->buf_len[pick] = iv[best].size;
			iv[best].buf = pick;
		}
	}
	for (uint32_t a = 0; a < niv; a++)
		p->cls_buf[a] = iv[a].buf < 0 ? 0 : iv[a].buf;
	if (p->nbufs == 0) {   /* nothing to plan: still a place for net_dout */
		p->buf_len = calloc(1, sizeof(size_t));
		if (!p->buf_len)
			goto out;
		p->buf_len[0] = n->layers[n->out_node].out_size ? n->layers[n->out_node].out_size : 1;
		p->nbufs = 1;
	}
	for (uint32_t b = 0; b < p->nbufs; b++)
		p->floats += (size_t)n->max_batch * p->buf_len[b];
	if (alloc) {
		p->bufs = calloc(p->nbufs, sizeof(float *));
		if (!p->bufs)
			goto out;
		for (uint32_t b = 0; b < p->nbufs; b++)
			if (!(p->bufs[b] = k_alloc_floats((size_t)n->max_batch * p->buf_len[b])))
				goto out;
	}
	plan_free(n->plan);
	n->plan = p;
	p = NULL;
	n->dout = alloc ? grad_of(n, n->out_node) : NULL;
	rc = 0;
out:
	plan_free(p);
	free(uf);
	free(phase_of);
	free(iv);
	free(up);
	free(written);
	return rc;
}

/* ---- a portable job's conv2d buffers ----------------------------------------- */

/* Rows of the largest chunk of a batch of at most max_batch samples. */
static size_t pk_chunk_rows(uint32_t max_batch)
{
	size_t rows = (max_batch + PK_CHUNKS - 1) / PK_CHUNKS;

	return rows ? rows : 1;
}

static size_t pk_conv_sums(const struct net_layer *l)
{
	return (size_t)l->spec.out * l->pk->ckk + (l->has_bias ? l->spec.out : 0);
}

/* Each conv2d's slice of a chunk's sums: the conv2d layers of one backward
 * phase need theirs at once, another phase's may share them. The floats
 * of one chunk's sums. */
static size_t pk_part_layout(struct net *n)
{
	const struct net_plan *p = n->plan;
	size_t most = 0;

	for (uint32_t ph = 0; ph < p->nphases; ph++) {
		size_t at = 0;

		for (int q = p->phases[ph].hi; q >= p->phases[ph].lo; q--) {
			struct net_layer *l = &n->layers[n->order[q]];

			if (spec_is_sequence_layer(l->spec.kind) && l->spec.kind != LAYER_EMBEDDING) {
				l->pk_part_off = at;   /* seq_phase_backward_pk's chunks */
				at += seq_params(n, l);
				continue;
			}
			if (l->spec.kind != LAYER_CONV2D || !l->pk)
				continue;
			l->pk_part_off = at;
			at += pk_conv_sums(l);
		}
		most = at > most ? at : most;
	}
	return most ? most : 1;
}

static void pk_free(struct net *n)
{
	for (uint32_t i = 0; n->layers && i < n->spec.n; i++)
		if (n->layers[i].pk) {
			pk_conv_deinit(n->layers[i].pk);
			free(n->layers[i].pk);
			n->layers[i].pk = NULL;
		}
	free(n->pk_scratch);
	free(n->pk_part);
	n->pk_scratch = n->pk_part = NULL;
	n->pk_scratch_len = n->pk_part_len = 0;
}

/* The tables of every conv2d, and the floats of one member's scratch. */
static int pk_convs(struct net *n, size_t *scratch)
{
	*scratch = 1;
	for (uint32_t i = 0; i < n->spec.n; i++) {
		struct net_layer *l = &n->layers[i];
		const struct layer_spec *s = &l->spec;
		size_t len;

		if (s->kind != LAYER_CONV2D)
			continue;
		l->pk = calloc(1, sizeof(*l->pk));
		if (!l->pk || pk_conv_init(l->pk, l->in.c, l->in.h, l->in.w, s->out, s->k, s->stride,
					   s->padding, s->dilation, s->groups) < 0) {
			free(l->pk);
			l->pk = NULL;
			return -ENOMEM;   /* the shape was checked by spec_shapes */
		}
		len = pk_conv_scratch(l->pk, pk_chunk_rows(n->max_batch));
		*scratch = len > *scratch ? len : *scratch;
	}
	return 0;
}

int net_set_kernels(struct net *n, enum kernels_kind kernels)
{
	size_t scratch;

	pk_free(n);
	n->kernels = kernels;
	if (kernels != KERNELS_PORTABLE)
		return 0;
	if (pk_convs(n, &scratch) < 0)
		goto fail;
	n->pk_scratch_len = scratch;
	n->pk_part_len = pk_part_layout(n);
	n->pk_scratch = k_alloc_floats(n->members * n->pk_scratch_len);
	n->pk_part = k_alloc_floats(PK_CHUNKS * n->pk_part_len);
	if (!n->pk_scratch || !n->pk_part)
		goto fail;
	return 0;
fail:
	pk_free(n);
	n->kernels = KERNELS_OPENBLAS;
	return -ENOMEM;
}

/* ---- a conv onednn job's convolutions (engine/model/dnnconv.h) -------------- */

static void dnn_free(struct net *n)
{
	for (uint32_t i = 0; n->layers && i < n->spec.n; i++) {
		dnnconv_free(n->layers[i].dnn);
		n->layers[i].dnn = NULL;
	}
	dnnctx_free(n->dnn);
	free(n->dnn_scratch);
	n->dnn = NULL;
	n->dnn_scratch = NULL;
	n->dnn_scratch_len = 0;
	n->dnn_rc = 0;
	n->conv = CONV_GEMM;
	for (uint32_t i = 0; n->layers && i < n->spec.n; i++)
		n->layers[i].blk = false;
}

/* Member idx's share of a phase's batch, as run_rows splits it. */
static void dnn_rows(size_t batch, unsigned nm, size_t *rows)
{
	for (unsigned m = 0; m < nm; m++) {
		size_t lo, hi;

		team_split(batch, m, nm, 1, &lo, &hi);
		rows[m] = hi - lo;
	}
}

/* Layer l's primitives for a phase of nm members on batch rows, and the
 * members' scratch grown to what they need. */
static int dnn_prepare(struct net *n, struct net_layer *l, bool backward, bool need_dx, size_t batch,
		       unsigned nm, struct tr_err *err)
{
	size_t rows[TEAM_MAX_MEMBERS], need = n->dnn_scratch_len;
	void *p;
	int rc;

	dnn_rows(batch, nm, rows);
	rc = dnnconv_prepare(l->dnn, backward, need_dx, rows, nm, n->params + l->w_off, &need, err);
	if (rc < 0 || need <= n->dnn_scratch_len)
		return rc;
	need = (need + 63) / 64 * 64;
	p = aligned_alloc(64, n->members * need);
	if (!p)
		return tr_err_set(err, -ENOMEM, "out of memory for the convolutions' scratch");
	free(n->dnn_scratch);
	n->dnn_scratch = p;
	n->dnn_scratch_len = need;
	return 0;
}

/* The blocked graph's width (dnnblk.h) for C channels: nChw16c, in bf16
 * too. NHWC (width C), what AMX's bf16 convolutions take, was measured
 * (doc/models.md): no faster on resnet20, 1.1-1.3x slower on a 32/64-channel
 * CNN (BatchNorm and the max pool stride over the other groups). */
static size_t blk_width(const struct net *n, size_t C)
{
	(void)n;
	(void)C;
	return BLK;
}

/* Whether value v's rows are in the blocked graph's layout (the model's
 * input never is). */
static bool value_blk(const struct net *n, uint32_t v)
{
	return v != vin(n) && n->layers[v].blk;
}

/* A node that reads a blocked input: a conv2d (its reorder), a global
 * average pool (dnnblk.h), or a node that is blocked itself. */
static bool reads_blk(const struct net *n, uint32_t j)
{
	const struct net_layer *l = &n->layers[j];

	if (l->spec.kind == LAYER_CONV2D)
		return true;
	if (l->spec.kind == LAYER_ADAPTIVEAVGPOOL2D)
		return l->out.h == 1 && l->out.w == 1;
	if (l->spec.kind == LAYER_MAXPOOL2D)
		return l->spec.padding == 0;
	return l->blk;
}

/* The blocked graph (dnnblk.h): which nodes' outputs (and gradients) stay
 * in oneDNN's layout. A conv2d, BatchNorm2d, ReLU, max pool (unpadded) or
 * residual join over a multiple of 16 channels, not the model's output, all
 * of whose readers read blocked rows (those, a conv2d, an unpadded max pool
 * and a global average pool, which write NCHW when their own output is
 * not blocked); a node other than a conv2d (which reorders) also needs its
 * inputs blocked. The
 * largest such set: start from every candidate and drop nodes until none
 * breaks a rule. The bits do not change (dnnblk.h): only the reorders. */
static void plan_blocked(struct net *n)
{
	uint32_t N = n->spec.n, v[SPEC_MAX_BRANCHES];
	bool changed = true;

	for (uint32_t i = 0; i < N; i++) {
		struct net_layer *l = &n->layers[i];
		enum layer_kind k = l->spec.kind;

		l->blk = (k == LAYER_CONV2D || k == LAYER_BATCHNORM2D || k == LAYER_RELU || k == LAYER_RESIDUAL ||
			  (k == LAYER_MAXPOOL2D && l->spec.padding == 0)) &&
			 !l->out.seq && l->out.c % BLK == 0 && i != n->out_node;
	}
	while (changed) {
		changed = false;
		for (uint32_t j = 0; j < N; j++) {
			uint32_t m = node_inputs(n, j, v);
			bool in_blk = true;

			for (uint32_t k = 0; k < m; k++) {
				if (v[k] != vin(n) && n->layers[v[k]].blk && !reads_blk(n, j)) {
					n->layers[v[k]].blk = false;   /* a reader that needs NCHW */
					changed = true;
				}
				in_blk = in_blk && value_blk(n, v[k]);
			}
			if (n->layers[j].blk && n->layers[j].spec.kind != LAYER_CONV2D && !in_blk) {
				n->layers[j].blk = false;
				changed = true;
			}
		}
	}
}

int net_set_conv(struct net *n, enum conv_kind conv, struct tr_err *err)
{
	int rc = 0;

	dnn_free(n);
	if (conv == CONV_GEMM)
		return 0;
	if (n->kernels == KERNELS_PORTABLE)
		return tr_err_set(err, -EINVAL, "conv: onednn is for kernels openblas; a portable job computes "
				  "its convolutions with its own kernels (doc/portable.md)");
	rc = dnnctx_new(&n->dnn, n->members, err);
	n->conv = CONV_ONEDNN;
	/* fp32 only: in bf16 the blocked graph measured no faster on resnet20
	 * and 1.2x slower on a BatchNorm CNN (doc/models.md); the bits are the
	 * same either way, so this is a speed choice that can change */
	if (!n->dnn_nchw && n->precision != K_BF16)
		plan_blocked(n);
	for (uint32_t i = 0; rc == 0 && i < n->spec.n; i++) {
		struct net_layer *l = &n->layers[i];
		const struct layer_spec *s = &l->spec;
		struct dnnconv_geom g = {
			.c = l->in.c, .h = l->in.h, .w = l->in.w, .oc = s->out, .oh = l->out.h, .ow = l->out.w,
			.k = s->k, .stride = s->stride, .padding = s->padding, .dilation = s->dilation,
			.groups = s->groups, .bias = l->has_bias, .bf16 = n->precision == K_BF16,
			.x_blk = s->kind == LAYER_CONV2D && value_blk(n, s->src < 0 ? vin(n) : (uint32_t)s->src),
			.y_blk = l->blk,
		};

		if (s->kind != LAYER_CONV2D)
			continue;
		rc = dnnconv_new(&l->dnn, n->dnn, &g, err);
		/* made and checked now for a full batch over the team */
		if (rc == 0)
			rc = dnn_prepare(n, l, false, false, n->max_batch, n->members, err);
		if (rc == 0)
			rc = dnn_prepare(n, l, true, l->need_dx, n->max_batch, n->members, err);
	}
	if (rc < 0)
		dnn_free(n);
	return rc;
}

void net_conv_numerics(char *buf, size_t len)
{
	dnnctx_describe(buf, len);
}

int net_conv_status(const struct net *n, struct tr_err *err)
{
	if (n->dnn_rc < 0 && err)
		*err = n->dnn_err;
	return n->dnn_rc;
}

int net_set_input_grad(struct net *n, bool on)
{
	bool was = n->input_grad;
	int rc;

	n->input_grad = on;
	rc = plan_backward(n, true);
	if (rc < 0)
		n->input_grad = was;
	if (rc == 0 && n->kernels == KERNELS_PORTABLE && pk_part_layout(n) > n->pk_part_len)
		rc = net_set_kernels(n, KERNELS_PORTABLE);   /* the phases changed: slices anew */
	return rc;
}

/* ---- init ----------------------------------------------------------------- */

/* The table, the order and the plan of spec, without the big buffers. */
static int net_layout(struct net *n, const struct model_spec *spec, struct shape input,
		      uint32_t classes, uint32_t max_batch, unsigned members, bool alloc)
{
	struct shape *shapes;
	size_t col_len = 1, part_len = 1, kmax = 0;
	uint32_t count = 0, v[SPEC_MAX_BRANCHES];
	int rc;

	shapes = malloc(SPEC_MAX_LAYERS * sizeof(*shapes));
	n->layers = calloc(spec->n ? spec->n : 1, sizeof(*n->layers));
	n->order = calloc(spec->n ? spec->n : 1, sizeof(*n->order));
	n->tensors = calloc(NET_MAX_TENSORS, sizeof(*n->tensors));
	if (!shapes || !n->layers || !n->order || !n->tensors) {
		free(shapes);
		return -ENOMEM;
	}
	rc = spec_shapes(spec, input, classes, shapes, NULL, NULL);
	if (rc < 0) {
		free(shapes);
		return rc;
	}
	n->spec = *spec;
	n->input = input;
	n->max_batch = max_batch;
	n->members = members;
	n->in_size = shape_size(input);
	for (uint32_t i = 0; i < spec->n; i++) {
		struct net_layer *l = &n->layers[i];

		l->spec = spec->layers[i];
		if (spec_is_block(l->spec.kind))
			l->in = l->spec.last[0] < 0 ? input : shapes[l->spec.last[0]];
		else
			l->in = spec_input_shape(spec, shapes, input, i);
		l->out = shapes[i];
		l->in_size = shape_size(l->in);
		l->out_size = shape_size(l->out);
		if (l->spec.parent < 0)
			n->out_node = i;
		declare_tensors(n, i);
		if (l->spec.kind == LAYER_CONV2D) {
			size_t ckk = (size_t)l->in.c * l->spec.k * l->spec.k;
			size_t cl = ckk * l->out.h * l->out.w;
			size_t pl = (size_t)l->spec.out * (ckk / l->spec.groups) + l->spec.out;

			col_len = cl > col_len ? cl : col_len;
			l->part_off = part_len - 1;
			part_len += pl;   /* each conv2d its own slice: a phase may run several */
			kmax = size_max(kmax, size_max(ckk / l->spec.groups,
						       size_max((size_t)l->out.h * l->out.w,
								l->spec.out / l->spec.groups)));
		}
		if (l->spec.kind == LAYER_LINEAR) {
			/* a sequence's linear layer runs over batch x positions rows */
			size_t rows = l->in.seq ? max_batch * l->in.h : max_batch;
			size_t fin = l->in.seq ? l->in.c : l->in_size;

			kmax = size_max(kmax, size_max(rows, size_max(fin, l->out_size)));
		}
		if (spec_is_sequence_layer(l->spec.kind)) {
			struct seq_ctx c = seq_of(n, l);
			size_t tl = seq_tmp_floats(&c);

			/* seq_kernels 3's bf16 products: k up to a member's rows of
			 * positions (the weights' gradients), E, 3E or FF */
			kmax = size_max(kmax, size_max(max_batch * l->in.h,
						       size_max(3 * (size_t)l->in.c, l->spec.ff)));

			l->part_off = part_len - 1;
			part_len += seq_param_floats(&c);
			l->aux_len = seq_aux_floats(&c);
			n->seqtmp_len = tl > n->seqtmp_len ? tl : n->seqtmp_len;
		}
	}
	free(shapes);
	if (n->layers[n->out_node].out.seq) {
		n->classes = n->layers[n->out_node].out.c;
		n->positions = n->layers[n->out_node].out.h;
	} else {
		n->classes = (uint32_t)n->layers[n->out_node].out_size;
		n->positions = 1;
	}
	for (uint32_t i = 0; i < spec->n; i++)
		if (n->layers[i].spec.parent < 0) {
			emit_order(n, i, &count);
			if (spec_is_block(n->layers[i].spec.kind))
				i = n->layers[i].spec.end - 1;
		}
	for (uint32_t i = 0; i < spec->n; i++) {
		uint32_t m = node_inputs(n, i, v);

		for (uint32_t k = 0; k < m; k++)
			if (v[k] != vin(n))
				n->layers[v[k]].consumers++;
	}
	n->col_len = col_len;
	n->part_len = part_len;
	n->gemm_kmax = kmax;
	return plan_backward(n, alloc);
}

/* Activation floats per sample: every node's output but the borrowed ones. */
static bool borrows_input(enum layer_kind k)
{
	return k == LAYER_FLATTEN || k == LAYER_IDENTITY;
}

int net_floats(const struct model_spec *spec, struct shape input, uint32_t max_batch,
	       unsigned members, uint64_t *floats)
{
	return net_floats_kernels(spec, input, max_batch, members, KERNELS_OPENBLAS, floats);
}

int net_floats_kernels(const struct model_spec *spec, struct shape input, uint32_t max_batch,
		       unsigned members, enum kernels_kind kernels, uint64_t *floats)
{
	struct net n;
	int rc;

	*floats = 0;
	memset(&n, 0, sizeof(n));
	rc = net_layout(&n, spec, input, 0, max_batch, members ? members : 1, false);
	if (rc == 0) {
		*floats = (uint64_t)max_batch * n.in_size + n.plan->floats +
			  3ull * (n.members) * n.col_len + (uint64_t)n.members * n.part_len +
			  (uint64_t)max_batch * n.seqtmp_len;
		for (uint32_t i = 0; i < spec->n; i++)
			if (!borrows_input(n.layers[i].spec.kind))
				*floats += (uint64_t)max_batch * (n.layers[i].out_size + n.layers[i].aux_len);
	}
	if (rc == 0 && kernels == KERNELS_PORTABLE) {
		size_t scratch;

		rc = pk_convs(&n, &scratch);
		if (rc == 0)
			*floats += (uint64_t)n.members * scratch + (uint64_t)PK_CHUNKS * pk_part_layout(&n);
	}
	net_deinit(&n);
	return rc;
}

int net_init(struct net *n, const struct model_spec *spec, struct shape input, uint32_t classes,
	     uint32_t max_batch, struct team *team)
{
	int rc;

	memset(n, 0, sizeof(*n));
	n->team = team;
	rc = net_layout(n, spec, input, classes, max_batch, team ? team_size(team) : 1, true);
	if (rc < 0)
		goto fail;
	rc = -ENOMEM;
	n->params = k_alloc_floats(n->nparams);
	n->grads = k_alloc_floats(n->nparams);
	n->buffers = k_alloc_floats(n->nbuffers);
	n->counts = calloc(n->ncounts ? n->ncounts : 1, sizeof(int64_t));
	n->x = k_alloc_floats((size_t)max_batch * n->in_size);
	n->col = k_alloc_floats(n->members * n->col_len);
	n->dcol = k_alloc_floats(n->members * n->col_len);
	n->part = k_alloc_floats(n->members * n->part_len);
	n->seqtmp = n->seqtmp_len ? k_alloc_floats((size_t)max_batch * n->seqtmp_len) : NULL;
	if (!n->params || !n->grads || !n->buffers || !n->counts || !n->x || !n->col || !n->dcol ||
	    !n->part || (n->seqtmp_len && !n->seqtmp))
		goto fail;
	for (uint32_t q = 0; q < spec->n; q++) {
		struct net_layer *l = &n->layers[n->order[q]];
		size_t rows = (size_t)max_batch * l->out_size;

		if (borrows_input(l->spec.kind)) {
			l->y = value_y(n, l->spec.src < 0 ? vin(n) : (uint32_t)l->spec.src);
			l->y_borrowed = true;
			continue;
		}
		l->y = k_alloc_floats(rows);
		if (!l->y)
			goto fail;
		if (l->spec.kind == LAYER_DROPOUT && !(l->mask = calloc(rows, 1)))
			goto fail;
		if (l->spec.kind == LAYER_MAXPOOL2D && !(l->argmax = calloc(rows, sizeof(uint32_t))))
			goto fail;
		if (spec_is_batchnorm(l->spec.kind) &&
		    (!(l->mean = calloc(l->in.c, sizeof(double))) ||
		     !(l->invstd = calloc(l->in.c, sizeof(double)))))
			goto fail;
		if (l->aux_len && !(l->aux = k_alloc_floats((size_t)max_batch * l->aux_len)))
			goto fail;
	}
	return 0;
fail:
	net_deinit(n);
	return rc;
}

void net_deinit(struct net *n)
{
	pk_free(n);
	dnn_free(n);
	for (uint32_t i = 0; n->layers && i < n->spec.n; i++) {
		struct net_layer *l = &n->layers[i];

		if (!l->y_borrowed)
			free(l->y);
		free(l->mask);
		free(l->argmax);
		free(l->mean);
		free(l->invstd);
		free(l->aux);
	}
	plan_free(n->plan);
	free(n->seqtmp);
	free(n->layers);
	free(n->order);
	free(n->tensors);
	free(n->params);
	free(n->grads);
	free(n->buffers);
	free(n->counts);
	free(n->x);
	free(n->col);
	free(n->dcol);
	free(n->part);
	free(n->gemm_scratch);
	memset(n, 0, sizeof(*n));
}

/* ---- initial weights ------------------------------------------------------- */

/* fan_in of a linear or conv2d layer, as torch.nn.init._calculate_fan_in_and_fan_out. */
static size_t layer_fan_in(const struct net_layer *l)
{
	return l->spec.kind == LAYER_LINEAR
		       ? l->in.c
		       : (size_t)(l->in.c / l->spec.groups) * l->spec.k * l->spec.k;
}

/* fan_out of a conv2d layer: out channels times the receptive field. */
static size_t conv_fan_out(const struct net_layer *l)
{
	return (size_t)l->spec.out * l->spec.k * l->spec.k;
}

static void init_batchnorm(struct net *n, const struct net_layer *l)
{
	for (size_t c = 0; c < l->in.c; c++) {
		n->params[l->w_off + c] = 1.0f;
		n->params[l->b_off + c] = 0.0f;
		n->buffers[l->rm_off + c] = 0.0f;
		n->buffers[l->rv_off + c] = 1.0f;
	}
	n->counts[l->nbt] = 0;
}

int net_set_precision(struct net *n, enum k_precision p)
{
	size_t len = (k_gemm_scratch_len(p, n->gemm_kmax) + 63) / 64 * 64;
	void *scratch = NULL;

	if (len && posix_memalign(&scratch, 64, n->members * len))
		return -ENOMEM;
	free(n->gemm_scratch);
	n->gemm_scratch = scratch;
	n->precision = p;
	for (unsigned m = 0; m < n->members; m++)
		n->gemm[m] = (struct k_gemm_mode){ .prec = p,
						   .scratch = len ? (char *)scratch + m * len : NULL,
						   .scratch_len = len };
	return 0;
}

/* n floats from U(-bound, bound): PyTorch's uniform_ (rng torch, one
 * mt_uniform_f32 each) or traind's own stream. */
static void fill_uniform(float *w, size_t count, double bound, struct rng *r, struct mt19937 *m)
{
	for (size_t k = 0; k < count; k++)
		w[k] = m ? mt_uniform_f32(m, -bound, bound)
			 : (2.0f * rng_uniform(r) - 1.0f) * (float)bound;
}

/* n floats from N(0, std): normal_ as PyTorch's CPU kernel (rng torch), or
 * Box-Muller from traind's own stream. */
static void fill_normal(float *w, size_t count, double std, struct rng *r, struct mt19937 *m)
{
	if (m) {
		mt_normal_fill_f32(m, w, count, 0.0, std);
		return;
	}
	for (size_t k = 0; k < count; k += 2) {
		double u1 = 1.0 - (double)rng_uniform(r), u2 = (double)rng_uniform(r);
		double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;

		w[k] = (float)(rad * cos(th) * std);
		if (k + 1 < count)
			w[k + 1] = (float)(rad * sin(th) * std);
	}
}

/* nn.Linear(in, out).reset_parameters at w (out, in) and b (out, or NULL). */
static void init_linear(float *w, float *b, size_t in, size_t out, struct rng *r, struct mt19937 *m)
{
	double a = sqrt(5.0), gain = sqrt(2.0 / (1.0 + pow(a, 2.0)));

	fill_uniform(w, in * out, m ? sqrt(3.0) * (gain / sqrt((double)in)) : 1.0 / sqrt((double)in), r, m);
	if (b)
		fill_uniform(b, out, 1.0 / sqrt((double)in), r, m);
}

/* The layers of sequences as PyTorch's modules construct them, in the order
 * they draw: nn.Embedding normal_ (the padding row then 0); nn.LSTM/GRU
 * every tensor U(-1/sqrt(H), 1/sqrt(H)) in state_dict order; nn.LayerNorm
 * 1 and 0; nn.MultiheadAttention: its out_proj (a Linear: weight and bias
 * drawn) before xavier_uniform_ of in_proj_weight, then both biases 0;
 * nn.TransformerEncoderLayer: its attention, linear1, linear2 in that order,
 * norms 1 and 0. */
static void init_sequence(struct net *n, const struct net_layer *l, struct rng *r, struct mt19937 *m)
{
	const struct layer_spec *s = &l->spec;
	float *p = n->params + l->w_off;
	size_t E = l->in.c;

	switch (s->kind) {
	case LAYER_EMBEDDING:
	case LAYER_POSEMBEDDING: {
		size_t rows = s->kind == LAYER_EMBEDDING ? s->num : s->num ? s->num : l->in.h;

		fill_normal(p, rows * l->out.c, 1.0, r, m);
		if (s->kind == LAYER_EMBEDDING && s->padding_idx >= 0)
			memset(p + (size_t)s->padding_idx * l->out.c, 0, l->out.c * sizeof(float));
		break;
	}
	case LAYER_LSTM:
	case LAYER_GRU:
		fill_uniform(p, seq_params(n, l), 1.0 / sqrt((double)s->out), r, m);
		break;
	case LAYER_LAYERNORM:
		for (size_t c = 0; c < E; c++) {
			p[c] = 1.0f;
			p[E + c] = 0.0f;
		}
		break;
	case LAYER_MHA:
	case LAYER_TRANSFORMER: {
		float *inw = p, *inb = inw + 3 * E * E, *ow = inb + 3 * E, *ob = ow + E * E;

		init_linear(ow, ob, E, E, r, m);
		fill_uniform(inw, 3 * E * E, sqrt(3.0) * (1.0 * sqrt(2.0 / (double)(E + 3 * E))), r, m);
		memset(inb, 0, 3 * E * sizeof(float));
		memset(ob, 0, E * sizeof(float));
		if (s->kind == LAYER_TRANSFORMER) {
			size_t FF = s->ff;
			float *w1 = ob + E, *b1 = w1 + FF * E, *w2 = b1 + FF, *b2 = w2 + E * FF;
			float *nw = b2 + E;

			init_linear(w1, b1, E, FF, r, m);
			init_linear(w2, b2, FF, E, r, m);
			for (size_t c = 0; c < E; c++) {
				nw[c] = nw[2 * E + c] = 1.0f;
				nw[E + c] = nw[3 * E + c] = 0.0f;
			}
		}
		break;
	}
	default:
		break;
	}
}

/* GPT-2's initialisation (SPEC_INIT_GPT), as the exported Model does it
 * after construction: for m in self.modules(), pre-order: every Linear's
 * weight (the attention's out_proj included) and every Embedding's (the
 * positions' too) N(0, 0.02), every Linear's bias 0. */
static void init_gpt(struct net *n, struct rng *r, struct mt19937 *m)
{
	for (uint32_t i = 0; i < n->spec.n; i++) {
		struct net_layer *l = &n->layers[i];
		float *p = n->params + l->w_off;
		size_t E = l->in.c;

		switch (l->spec.kind) {
		case LAYER_LINEAR:
			fill_normal(p, (size_t)l->spec.out * l->in.c, 0.02, r, m);
			if (l->has_bias)
				memset(n->params + l->b_off, 0, l->spec.out * sizeof(float));
			break;
		case LAYER_EMBEDDING:
		case LAYER_POSEMBEDDING:
			fill_normal(p, seq_params(n, l), 0.02, r, m);
			break;
		case LAYER_MHA:
		case LAYER_TRANSFORMER: {
			float *ow = p + 3 * E * E + 3 * E;

			fill_normal(ow, E * E, 0.02, r, m);
			memset(ow + E * E, 0, E * sizeof(float));
			if (l->spec.kind == LAYER_TRANSFORMER) {
				size_t FF = l->spec.ff;
				float *w1 = ow + E * E + E, *b1 = w1 + FF * E, *w2 = b1 + FF;

				fill_normal(w1, FF * E, 0.02, r, m);
				memset(b1, 0, FF * sizeof(float));
				fill_normal(w2, E * FF, 0.02, r, m);
				memset(w2 + E * FF, 0, E * sizeof(float));
			}
			break;
		}
		default:
			break;
		}
	}
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
			fan_in = layer_fan_in(l);
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
			init_batchnorm(n, l);
			break;
		default:
			init_sequence(n, l, r, NULL);
			break;
		}
	}
	if (n->spec.init == SPEC_INIT_GPT)
		init_gpt(n, r, NULL);
	if (n->spec.init != SPEC_INIT_TORCHVISION)
		return;
	for (uint32_t i = 0; i < n->spec.n; i++) {
		struct net_layer *l = &n->layers[i];
		float *w = n->params + l->w_off;
		double std;

		if (l->spec.kind != LAYER_CONV2D)
			continue;
		std = sqrt(2.0) / sqrt((double)conv_fan_out(l));
		for (size_t k = 0; k < l->spec.out * layer_fan_in(l); k += 2) {
			/* Box-Muller from two 24-bit uniforms, u1 in (0, 1] */
			double u1 = 1.0 - (double)rng_uniform(r), u2 = (double)rng_uniform(r);
			double th = 2.0 * M_PI * u2, rad, sn, cs;

			/* a portable job: traind's own log, sin, cos (libm's differ by glibc and CPU) */
			if (n->kernels == KERNELS_PORTABLE) {
				rad = sqrt(-2.0 * pk_log64(u1));
				pk_sincos64(th, &sn, &cs);
			} else {
				rad = sqrt(-2.0 * log(u1));
				cs = cos(th);
				sn = sin(th);
			}
			w[k] = (float)(rad * cs * std);
			if (k + 1 < l->spec.out * layer_fan_in(l))
				w[k + 1] = (float)(rad * sn * std);
		}
	}
}

void net_init_params_torch(struct net *n, struct mt19937 *m)
{
	/* kaiming_uniform_(a=sqrt(5)): gain = sqrt(2 / (1 + a**2)), std = gain /
	 * sqrt(fan_in), bound = sqrt(3) * std, each in double as Python computes
	 * them (a**2 is pow, as Python's float power). */
	double a = sqrt(5.0);
	double gain = sqrt(2.0 / (1.0 + (n->kernels == KERNELS_PORTABLE ? pk_pown64(a, 2) : pow(a, 2.0))));

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
		} else if (spec_is_batchnorm(l->spec.kind)) {
			init_batchnorm(n, l);
		} else {
			init_sequence(n, l, NULL, m);
		}
	}
	if (n->spec.init == SPEC_INIT_GPT)
		init_gpt(n, NULL, m);
	if (n->spec.init != SPEC_INIT_TORCHVISION)
		return;
	/* torchvision: for m in self.modules(): Conv2d -> kaiming_normal_(
	 * mode="fan_out", nonlinearity="relu"): std = gain / sqrt(fan_out),
	 * gain = sqrt(2.0), in double, then normal_(0, std). */
	for (uint32_t i = 0; i < n->spec.n; i++) {
		struct net_layer *l = &n->layers[i];

		if (l->spec.kind != LAYER_CONV2D)
			continue;
		mt_normal_fill_f32(m, n->params + l->w_off, l->spec.out * layer_fan_in(l), 0.0,
				   sqrt(2.0) / sqrt((double)conv_fan_out(l)));
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
	return n->layers[n->out_node].y;
}

float *net_dout(struct net *n)
{
	return n->dout;
}

/* ---- one layer's work, shared by the team members ----------------------- */

struct layer_job {
	struct net *n;
	struct net_layer *l;
	uint32_t index;        /* node index (Dropout's stream) */
	size_t batch;
	bool train;
	uint64_t step;
	const float *in;       /* (batch, in_size) the layer's input */
	const float *dy;       /* (batch, out_size) gradient at its output */
	float *dx;             /* (batch, in_size) gradient at its input, or NULL */
	float *acc;            /* dx is a scratch buffer: add it into acc (the input's gradient) */
	/* A linear layer followed by a ReLU computes the ReLU on its own columns
	 * in the same phase: forward, relu is that ReLU layer (its y written);
	 * backward (only when the linear passes no gradient down), relu_job is
	 * the ReLU's job (its dx written from its dy, then used as this dy). */
	struct net_layer *relu;
	const struct layer_job *relu_job;
};

/* A run of nodes that work sample by sample, computed in one phase: every
 * node's function splits the batch with team_split(batch, idx, n, 1), so a
 * member computes the same rows of each in turn and nothing needs the other
 * members' rows until the run ends. */
struct run_job {
	struct net *n;
	net_input_fn fill;     /* forward: fills the member's rows of n->x first (or NULL) */
	void *fill_arg;
	struct layer_job *jobs;   /* by node index */
	int first, end;        /* order positions; forward: first <= p < end; backward: first >= p > end */
	bool backward;
};

static void run(struct net *n, bool split, team_fn fn, struct layer_job *job)
{
	if (split && n->team && team_size(n->team) > 1)
		team_run(n->team, fn, job);
	else
		fn(job, 0, 1);
}

/* A linear layer's rows (a sequence's: one per position) and widths. */
static size_t lin_rows(const struct net_layer *l, size_t batch)
{
	return l->in.seq ? batch * l->in.h : batch;
}

static size_t lin_in(const struct net_layer *l)
{
	return l->in.seq ? l->in.c : l->in_size;
}

static bool linear_split(const struct net *n, const struct net_layer *l, size_t batch)
{
	(void)n;
	return lin_rows(l, batch) * lin_in(l) * l->spec.out >= SPLIT_MIN_FLOPS;
}

static bool rows_split(const struct net_layer *l, size_t batch)
{
	return batch * l->out_size >= ROWS_MIN_ELEMS;
}

/* net_backward_update: the update of a linear layer's output rows [lo, hi)
 * (their weights, then their bias). */
static void linear_update(struct net *n, const struct net_layer *l, size_t lo, size_t hi)
{
	size_t in = lin_in(l);

	n->update(n->update_ctx, l->w_off + lo * in, (hi - lo) * in);
	if (l->has_bias)
		n->update(n->update_ctx, l->b_off + lo, hi - lo);
}

/* y[:, c0:c1] = in W[c0:c1]^T + b[c0:c1] */
static void linear_forward(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	struct net_layer *l = j->l;
	const float *p = j->n->params;
	size_t in = lin_in(l), out = l->spec.out, rows = lin_rows(l, j->batch), c0, c1;

	team_split(out, idx, nm, SPLIT_ALIGN, &c0, &c1);
	if (c0 == c1)
		return;
	/* Start from the bias and accumulate (beta = 1): saves the pass that
	 * would zero y and the pass that would add the bias. */
	if (l->has_bias)
		k_fill_rows(l->y, out, rows, c0, c1, p + l->b_off);
	k_gemm_job(j->n->kernels, &j->n->gemm[idx], 0, 1, rows, c1 - c0, in, 1.0f, j->in, in,
		   p + l->w_off + c0 * in, in, l->has_bias ? 1.0f : 0.0f, l->y + c0, out);
	if (j->relu)
		for (size_t r = 0; r < rows; r++)
			k_relu_rows(j->relu->y + r * out + c0, l->y + r * out + c0, c1 - c0);
}

/* Whether a linear layer's product dW[lo:hi] = dy[:, lo:hi]^T in (m x k
 * over `rows`) can add into dW (beta 1) instead of overwriting it (beta 0):
 * the last update consumed it (it holds +0.0 everywhere), and the product
 * is OpenBLAS's fp32 one on its general kernels, whose beta = 0 pass only
 * zeroes C before the same accumulation (4 % of a lesson epoch). Below
 * 100^3 OpenBLAS may pick its small-matrix kernels (SkylakeX), whose beta = 0
 * variant stores the product where beta = 1 adds +0.0 to it: -0.0 would
 * become +0.0; those keep beta 0. */
static bool dw_adds(const struct net *n, const struct net_layer *l, size_t m, size_t k, size_t rows)
{
	return l->dw_zero && n->kernels == KERNELS_OPENBLAS && n->precision == K_FP32 &&
	       (double)m * (double)k * (double)rows > 1e6;
}

/* dx[:, c0:c1] = dy W[:, c0:c1]; dW[r0:r1] = dy[:, r0:r1]^T in; db[r0:r1] = colsum dy */
static void linear_backward(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	struct net_layer *l = j->l;
	struct net *n = j->n;
	size_t in = lin_in(l), out = l->spec.out, rows = lin_rows(l, j->batch), lo, hi;

	if (j->dx) {
		team_split(in, idx, nm, SPLIT_ALIGN, &lo, &hi);
		if (lo < hi)
			k_gemm_job(n->kernels, &n->gemm[idx], 0, 0, rows, hi - lo, out, 1.0f, j->dy, out,
				   n->params + l->w_off + lo, in, 0.0f, j->dx + lo, in);
	}
	team_split(out, idx, nm, SPLIT_ALIGN, &lo, &hi);
	if (lo == hi)
		return;
	if (j->relu_job)   /* the ReLU's backward on these columns: they are all this member reads */
		for (size_t r = 0; r < rows; r++)
			k_relu_backward_rows(j->relu_job->dx + r * out + lo, j->relu_job->l->y + r * out + lo,
					     j->relu_job->dy + r * out + lo, hi - lo);
	k_gemm_job(n->kernels, &n->gemm[idx], 1, 0, hi - lo, in, rows, 1.0f, j->dy + lo, out, j->in,
		   in, dw_adds(n, l, hi - lo, in, rows) ? 1.0f : 0.0f, n->grads + l->w_off + lo * in, in);
	if (l->has_bias)
		k_colsum(n->grads + l->b_off, j->dy, out, rows, lo, hi);
	/* net_backward_update: these rows' gradients are final; unless other
	 * members still read W for their part of dx, update them here */
	if (n->update && (!j->dx || nm == 1))
		linear_update(n, l, lo, hi);
}

/* After a split phase whose members computed dx from all of W: rows
 * [lo, hi) of the same split. */
static void linear_update_part(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	size_t lo, hi;

	team_split(j->l->spec.out, idx, nm, SPLIT_ALIGN, &lo, &hi);
	if (lo < hi)
		linear_update(j->n, j->l, lo, hi);
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
	size_t size = l->out_size, len = (r1 - r0) * size;
	const float *x;
	float *y;

	(void)idx;
	(void)first;
	x = j->in + r0 * size;
	y = l->y + r0 * size;
	switch (l->spec.kind) {
	case LAYER_RELU:
		k_relu_rows(y, x, len);
		break;
	case LAYER_TANH:
		for (size_t e = 0; e < len; e++)
			y[e] = tanhf(x[e]);
		break;
	case LAYER_GELU:
		for (size_t e = 0; e < len; e++)
			y[e] = x[e] * 0.5f * (1.0f + erff(x[e] * (float)M_SQRT1_2));
		break;
	case LAYER_LEAKYRELU: {
		float slope = (float)l->spec.p;

		for (size_t e = 0; e < len; e++)
			y[e] = x[e] > 0.0f ? x[e] : x[e] * slope;
		break;
	}
	case LAYER_SIGMOID:
		for (size_t e = 0; e < len; e++)
			y[e] = 1.0f / (1.0f + expf(-x[e]));
		break;
	case LAYER_SILU:
		for (size_t e = 0; e < len; e++)
			y[e] = x[e] / (1.0f + expf(-x[e]));
		break;
	case LAYER_SOFTPLUS: {
		/* PyTorch: (x * beta) > threshold ? x : log1p(exp(x * beta)) / beta */
		float beta = (float)l->spec.p, thr = (float)l->spec.threshold;

		for (size_t e = 0; e < len; e++)
			y[e] = x[e] * beta > thr ? x[e] : log1pf(expf(x[e] * beta)) / beta;
		break;
	}
	case LAYER_DROPOUT:
		if (!j->train) {
			memcpy(y, x, len * sizeof(float));
			break;
		} else {
			uint64_t threshold = (uint64_t)ldexp(1.0 - l->spec.p, 32);
			float scale = (float)(1.0 / (1.0 - l->spec.p));
			uint8_t *mask = l->mask + r0 * size;
			uint32_t words[4];
			uint64_t g0 = (uint64_t)r0 * size;

			for (size_t e = 0; e < len; e++) {
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

	(void)idx;
	(void)first;
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
	case LAYER_LEAKYRELU: {
		float slope = (float)l->spec.p;

		for (size_t e = 0; e < len; e++)
			dx[e] = x[e] > 0.0f ? dy[e] : dy[e] * slope;
		break;
	}
	case LAYER_SIGMOID:
		for (size_t e = 0; e < len; e++)
			dx[e] = dy[e] * (1.0f - y[e]) * y[e];
		break;
	case LAYER_SILU:
		for (size_t e = 0; e < len; e++) {
			float s = 1.0f / (1.0f + expf(-x[e]));

			dx[e] = dy[e] * s * (1.0f + x[e] * (1.0f - s));
		}
		break;
	case LAYER_SOFTPLUS: {
		float beta = (float)l->spec.p, thr = (float)l->spec.threshold;

		for (size_t e = 0; e < len; e++) {
			float z = expf(x[e] * beta);

			dx[e] = x[e] * beta > thr ? dy[e] : dy[e] * z / (z + 1.0f);
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

/* ---- the activations of a portable job (kernels portable) ------------------
 * The openblas path's expressions with traind's own exp, erf and tanh
 * (portable.h) in place of libm's, so that no libm function decides a bit
 * (doc/portable.md, "Layers"); relu, leakyrelu and dropout are IEEE
 * operations alone and run act_forward's code. Elements go through the
 * functions PK_ACT at a time (any split gives the same bits: the functions
 * are element-wise). softplus' log1p(z) is pk_log(u) * (z / (u - 1)) with
 * u = 1 + z (z itself when u is 1; u when u is inf): Goldberg's form, a few
 * ulps from the exact value. */
#define PK_ACT 256

static void act_forward_pk(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	size_t len = (r1 - r0) * l->out_size;
	const float *x = j->in + r0 * l->out_size;
	float *y = l->y + r0 * l->out_size;

	switch (l->spec.kind) {
	case LAYER_TANH:
		pk_tanh(y, x, len);
		return;
	case LAYER_SIGMOID:
		pk_sigmoid(y, x, len);
		return;
	case LAYER_GELU:
		for (size_t e = 0; e < len; e++)
			y[e] = x[e] * (float)M_SQRT1_2;
		pk_erf(y, y, len);
		for (size_t e = 0; e < len; e++)
			y[e] = x[e] * 0.5f * (1.0f + y[e]);
		return;
	case LAYER_SILU:
		for (size_t e = 0; e < len; e++)
			y[e] = -x[e];
		pk_exp(y, y, len);
		for (size_t e = 0; e < len; e++)
			y[e] = x[e] / (1.0f + y[e]);
		return;
	case LAYER_SOFTPLUS: {
		float beta = (float)l->spec.p, thr = (float)l->spec.threshold;

		for (size_t e0 = 0; e0 < len; e0 += PK_ACT) {
			size_t n = len - e0 < PK_ACT ? len - e0 : PK_ACT;
			float z[PK_ACT], u[PK_ACT];

			for (size_t e = 0; e < n; e++)
				z[e] = x[e0 + e] * beta;
			pk_exp(z, z, n);
			for (size_t e = 0; e < n; e++)
				u[e] = 1.0f + z[e];
			pk_log(y + e0, u, n);
			for (size_t e = 0; e < n; e++) {
				float lp = isinf(u[e]) ? u[e] : u[e] == 1.0f ? z[e] : y[e0 + e] * (z[e] / (u[e] - 1.0f));

				y[e0 + e] = x[e0 + e] * beta > thr ? x[e0 + e] : lp / beta;
			}
		}
		return;
	}
	default:
		act_forward(j, idx, first, r0, r1);
		return;
	}
}

static void act_backward_pk(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	size_t size = l->out_size, len = (r1 - r0) * size;
	const float *dy = j->dy + r0 * size, *x = j->in + r0 * size;
	float *dx = j->dx + r0 * size;

	switch (l->spec.kind) {
	case LAYER_GELU: {
		const float beta = (float)(M_2_SQRTPI * M_SQRT1_2 * 0.5);   /* 1/sqrt(2 pi) */

		for (size_t e0 = 0; e0 < len; e0 += PK_ACT) {
			size_t n = len - e0 < PK_ACT ? len - e0 : PK_ACT;
			float erf[PK_ACT], ex[PK_ACT];

			for (size_t e = 0; e < n; e++) {
				erf[e] = x[e0 + e] * (float)M_SQRT1_2;
				ex[e] = -0.5f * x[e0 + e] * x[e0 + e];
			}
			pk_erf(erf, erf, n);
			pk_exp(ex, ex, n);
			for (size_t e = 0; e < n; e++) {
				float cdf = 0.5f * (1.0f + erf[e]), pdf = ex[e] * beta;

				dx[e0 + e] = dy[e0 + e] * (cdf + x[e0 + e] * pdf);
			}
		}
		return;
	}
	case LAYER_SILU:
		for (size_t e0 = 0; e0 < len; e0 += PK_ACT) {
			size_t n = len - e0 < PK_ACT ? len - e0 : PK_ACT;
			float ex[PK_ACT];

			for (size_t e = 0; e < n; e++)
				ex[e] = -x[e0 + e];
			pk_exp(ex, ex, n);
			for (size_t e = 0; e < n; e++) {
				float sg = 1.0f / (1.0f + ex[e]);

				dx[e0 + e] = dy[e0 + e] * sg * (1.0f + x[e0 + e] * (1.0f - sg));
			}
		}
		return;
	case LAYER_SOFTPLUS: {
		float beta = (float)l->spec.p, thr = (float)l->spec.threshold;

		for (size_t e0 = 0; e0 < len; e0 += PK_ACT) {
			size_t n = len - e0 < PK_ACT ? len - e0 : PK_ACT;
			float z[PK_ACT];

			for (size_t e = 0; e < n; e++)
				z[e] = x[e0 + e] * beta;
			pk_exp(z, z, n);
			for (size_t e = 0; e < n; e++)
				dx[e0 + e] = x[e0 + e] * beta > thr ? dy[e0 + e] : dy[e0 + e] * z[e] / (z[e] + 1.0f);
		}
		return;
	}
	default:   /* tanh and sigmoid from y, relu, leakyrelu, dropout: IEEE alone */
		act_backward(j, idx, first, r0, r1);
		return;
	}
}

#define BN_BLOCK 64   /* channels whose sums or factors sit on the stack at once */

/* BatchNorm over (batch, C, S): channels [c0, c1) of this member. Each
 * channel's sums run in (row, position) order in double (k_bn_sums). */
static void bn_forward(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	struct net_layer *l = j->l;
	struct net *n = j->n;
	size_t C = l->in.c, S = (size_t)l->in.h * l->in.w, size = l->in_size, c0, c1;
	double count = (double)j->batch * (double)S;
	float al[BN_BLOCK], be[BN_BLOCK];
	size_t bw = blk_width(n, C);

	team_split(C, idx, nm, 1, &c0, &c1);
	if (c0 == c1)
		return;
	if (j->train) {
		/* l->mean holds the sums, then the means; l->invstd the squared deviations' */
		if (l->blk)
			blk_bn_sums(l->mean + c0, NULL, j->in, NULL, NULL, NULL, j->batch, size, S, bw, c0, c1);
		else
			k_bn_sums(l->mean + c0, j->in, j->batch, size, S, c0, c1);
		for (size_t c = c0; c < c1; c++)
			l->mean[c] = l->mean[c] / count;
		if (l->blk)
			blk_bn_sums(l->invstd + c0, NULL, j->in, NULL, l->mean + c0, NULL, j->batch, size, S, bw, c0,
				    c1);
		else
			k_bn_sqsums(l->invstd + c0, j->in, l->mean + c0, j->batch, size, S, c0, c1);
	}
	for (size_t c = c0; c < c1; c++) {
		double mean, invstd;
		float alpha, beta;

		if (j->train) {
			float *rm = n->buffers + l->rm_off + c, *rv = n->buffers + l->rv_off + c;
			double var = l->invstd[c] / count;

			mean = l->mean[c];
			invstd = 1.0 / sqrt(var + BN_EPS);
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
		if (!l->blk) {
			k_bn_apply(l->y + c * S, j->in + c * S, j->batch, size, S, alpha, beta);
			continue;
		}
		/* blocked: the channels' factors gathered, applied BN_BLOCK at a time */
		al[(c - c0) % BN_BLOCK] = alpha;
		be[(c - c0) % BN_BLOCK] = beta;
		if ((c - c0) % BN_BLOCK == BN_BLOCK - 1 || c + 1 == c1) {
			size_t b0 = c - (c - c0) % BN_BLOCK;

			blk_bn_apply(l->y, j->in, j->batch, size, S, bw, b0, c + 1, al, be);
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
	for (size_t b0 = c0; b0 < c1; b0 += BN_BLOCK) {
		size_t b1 = c1 - b0 < BN_BLOCK ? c1 : b0 + BN_BLOCK;
		double sdy[BN_BLOCK], sdyx[BN_BLOCK];

		double kk[BN_BLOCK], mdy[BN_BLOCK], mdyx[BN_BLOCK];

		if (l->blk)
			blk_bn_sums(sdy, sdyx, j->in, j->dy, l->mean + b0, l->invstd + b0, j->batch, size, S,
				    blk_width(n, C), b0, b1);
		else
			k_bn_grad_sums(sdy, sdyx, j->dy, j->in, l->mean + b0, l->invstd + b0, j->batch, size,
				       S, b0, b1);
		for (size_t c = b0; c < b1; c++) {
			double mean = l->mean[c], invstd = l->invstd[c];

			n->grads[l->w_off + c] = (float)sdyx[c - b0];
			n->grads[l->b_off + c] = (float)sdy[c - b0];
			if (j->dx && l->blk) {
				kk[c - b0] = n->params[l->w_off + c] * invstd;
				mdy[c - b0] = sdy[c - b0] / count;
				mdyx[c - b0] = sdyx[c - b0] / count;
			} else if (j->dx) {
				double k = n->params[l->w_off + c] * invstd;

				k_bn_dx(j->dx + c * S, j->dy + c * S, j->in + c * S, j->batch, size, S, mean,
					invstd, k, sdy[c - b0] / count, sdyx[c - b0] / count);
			}
		}
		if (j->dx && l->blk)
			blk_bn_dx(j->dx, j->dy, j->in, j->batch, size, S, blk_width(n, C), b0, b1, l->mean + b0,
				  l->invstd + b0, kk, mdy, mdyx);
	}
}

static void conv_im2col(const struct net_layer *l, float *col, const float *x)
{
	const struct layer_spec *s = &l->spec;

	if (s->dilation == 1)
		k_im2col(col, x, l->in.c, l->in.h, l->in.w, s->k, s->stride, s->padding, l->out.h,
			 l->out.w);
	else
		k_im2col_dil(col, x, l->in.c, l->in.h, l->in.w, s->k, s->stride, s->padding,
			     s->dilation, l->out.h, l->out.w);
}

/* Conv2d on this member's samples: per group g, y[r] (OC/G, OH*OW) =
 * W_g (OC/G, C/G*K*K) col_g(x[r]) + b (one group: the whole of both) */
/* rows [r0, r1) of the member idx whose share starts at row `first` */
static void conv_forward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	struct net *n = j->n;
	const struct layer_spec *s = &l->spec;
	size_t G = s->groups, og = s->out / G;
	size_t ckk = (size_t)l->in.c / G * s->k * s->k, ohw = (size_t)l->out.h * l->out.w;
	float *col = n->col + idx * n->col_len;

	(void)first;
	for (size_t r = r0; r < r1; r++) {
		float *y = l->y + r * l->out_size;

		conv_im2col(l, col, j->in + r * l->in_size);
		if (l->has_bias)
			for (size_t oc = 0; oc < s->out; oc++)
				for (size_t t = 0; t < ohw; t++)
					y[oc * ohw + t] = n->params[l->b_off + oc];
		for (size_t g = 0; g < G; g++)
			k_gemm_job(KERNELS_OPENBLAS, &n->gemm[idx], 0, 0, og, ohw, ckk, 1.0f,
				   n->params + l->w_off + g * og * ckk, ckk, col + g * ckk * ohw, ohw,
				   l->has_bias ? 1.0f : 0.0f, y + g * og * ohw, ohw);
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

/* This member's samples: its partial dW (OC, C/G*K*K) and db (OC) sums, and dx. */
/* rows [r0, r1) of the member idx whose share starts at row `first` */
static void conv_backward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	struct net *n = j->n;
	const struct layer_spec *s = &l->spec;
	size_t G = s->groups, og = s->out / G;
	size_t ckk = (size_t)l->in.c / G * s->k * s->k, ohw = (size_t)l->out.h * l->out.w;
	float *col = n->col + idx * n->col_len, *dcol = n->dcol + idx * n->col_len;
	float *dw = n->part + idx * n->part_len + l->part_off, *db = dw + (size_t)s->out * ckk;

	for (size_t r = r0; r < r1; r++) {
		const float *dy = j->dy + r * l->out_size;

		conv_im2col(l, col, j->in + r * l->in_size);
		for (size_t g = 0; g < G; g++)
			k_gemm_job(KERNELS_OPENBLAS, &n->gemm[idx], 0, 1, og, ckk, ohw, 1.0f, dy + g * og * ohw,
				   ohw, col + g * ckk * ohw, ohw, r == first ? 0.0f : 1.0f, dw + g * og * ckk, ckk);
		conv_bias_sums(db, dy, s->out, ohw, r == first);
		if (j->dx) {
			for (size_t g = 0; g < G; g++)
				k_gemm_job(KERNELS_OPENBLAS, &n->gemm[idx], 1, 0, ckk, ohw, og, 1.0f,
					   n->params + l->w_off + g * og * ckk, ckk, dy + g * og * ohw, ohw, 0.0f,
					   dcol + g * ckk * ohw, ohw);
			if (s->dilation == 1)
				k_col2im(j->dx + r * l->in_size, dcol, l->in.c, l->in.h, l->in.w, s->k,
					 s->stride, s->padding, l->out.h, l->out.w);
			else
				k_col2im_dil(j->dx + r * l->in_size, dcol, l->in.c, l->in.h, l->in.w, s->k,
					     s->stride, s->padding, s->dilation, l->out.h, l->out.w);
		}
	}
}

/* The members' partial sums, added in member order into the gradients. */
static void conv_reduce(struct net *n, struct net_layer *l, unsigned members)
{
	size_t ckk = (size_t)l->in.c / l->spec.groups * l->spec.k * l->spec.k;
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

/* ---- conv2d of a portable job (kernels portable) ------------------------------
 * pk_conv_* (portable.h): the forward one sample at a time; the backward a
 * chunk of the batch at a time (pk_chunk: run_rows gives a portable job's
 * members whole chunks, and takes them one at a time through a run), the
 * chunk's weight and bias gradient sums into the chunk's slice of n->pk_part,
 * then added in chunk order (conv_reduce_pk): so the bits do not depend on
 * the team. Scratch: n->pk_scratch, one slice per member. */
static float *pk_scratch_of(const struct net *n, unsigned idx)
{
	return n->pk_scratch + idx * n->pk_scratch_len;
}

static void conv_forward_pk(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	struct net *n = j->n;

	(void)first;
	for (size_t r = r0; r < r1; r++)
		pk_conv_forward(l->pk, n->params + l->w_off, l->has_bias ? n->params + l->b_off : NULL,
				j->in + r * l->in_size, l->y + r * l->out_size, pk_scratch_of(n, idx));
}

/* The chunk that rows [r0, r1) are (run_rows gives whole chunks). */
static unsigned chunk_of(size_t batch, size_t r0)
{
	unsigned c = 0;
	size_t lo, hi;

	for (; c + 1 < pk_nchunks(batch); c++) {
		pk_chunk(batch, c, &lo, &hi);
		if (lo == r0)
			break;
	}
	return c;
}

static void conv_backward_pk(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	struct net *n = j->n;
	float *dw = n->pk_part + chunk_of(j->batch, r0) * n->pk_part_len + l->pk_part_off;
	float *scratch = pk_scratch_of(n, idx);

	(void)first;
	pk_conv_dw(l->pk, j->in + r0 * l->in_size, l->in_size, j->dy + r0 * l->out_size, l->out_size,
		   r1 - r0, dw, l->has_bias ? dw + (size_t)l->spec.out * l->pk->ckk : NULL, scratch);
	for (size_t r = r0; j->dx && r < r1; r++)
		pk_conv_dx(l->pk, n->params + l->w_off, j->dy + r * l->out_size, j->dx + r * l->in_size,
			   scratch);
}

/* The chunks' sums added in chunk order into the gradients (the weight and
 * the bias are adjacent in the slice and in params: declare_tensors). */
static void conv_reduce_pk(struct net *n, struct net_layer *l, size_t batch)
{
	size_t nw = (size_t)l->spec.out * l->pk->ckk + (l->has_bias ? l->spec.out : 0);

	pk_add_chunks(n->grads + l->w_off, n->pk_part + l->pk_part_off, n->pk_part_len, pk_nchunks(batch),
		      0, nw);
}

/* ---- conv2d of a conv onednn job -------------------------------------------
 * run_rows gives such a job's members their whole share at once (the rows
 * dnn_prepare_nodes made the primitives for): one oneDNN call per member
 * and layer each way. The weight and bias gradient sums go to the member's
 * slice of n->part, added in member order by conv_reduce, as conv gemm's. */
static void *dnn_scratch_of(const struct net *n, unsigned idx)
{
	return (char *)n->dnn_scratch + idx * n->dnn_scratch_len;
}

static void conv_forward_dnn(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	struct net *n = j->n;

	(void)first;
	dnnconv_forward(l->dnn, idx, r1 - r0, j->in + r0 * l->in_size,
			l->has_bias ? n->params + l->b_off : NULL, l->y + r0 * l->out_size, dnn_scratch_of(n, idx));
}

static void conv_backward_dnn(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	struct net *n = j->n;
	size_t ckk = (size_t)l->in.c / l->spec.groups * l->spec.k * l->spec.k;
	size_t ohw = (size_t)l->out.h * l->out.w;
	float *dw = n->part + idx * n->part_len + l->part_off, *db = dw + (size_t)l->spec.out * ckk;

	(void)first;
	dnnconv_backward(l->dnn, idx, r1 - r0, j->in + r0 * l->in_size, j->dy + r0 * l->out_size,
			 j->dx ? j->dx + r0 * l->in_size : NULL, dw, dnn_scratch_of(n, idx));
	for (size_t r = r0; l->has_bias && r < r1; r++)   /* conv gemm's float32 sums, row by row */
		if (l->blk)
			blk_bias_sums(db, j->dy + r * l->out_size, l->spec.out, ohw, blk_width(n, l->spec.out),
				      r == r0);
		else
			conv_bias_sums(db, j->dy + r * l->out_size, l->spec.out, ohw, r == r0);
}

/* Whether a node's input rows are nChw16c (plan_blocked). */
static bool src_blk(const struct layer_job *j)
{
	return value_blk(j->n, j->l->spec.src < 0 ? vin(j->n) : (uint32_t)j->l->spec.src);
}

/* rows [r0, r1) of the member idx whose share starts at row `first` */
static void pool_forward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	const struct layer_spec *s = &l->spec;

	(void)idx;
	(void)first;
	for (size_t r = r0; r < r1; r++) {
		const float *x = j->in + r * l->in_size;
		float *y = l->y + r * l->out_size;

		if (s->kind == LAYER_MAXPOOL2D && !s->padding && (src_blk(j) || l->blk))
			blk_maxpool(y, l->argmax + r * l->out_size, x, l->in.c, l->in.h, l->in.w, s->k, s->stride,
				    l->out.h, l->out.w, src_blk(j) ? blk_width(j->n, l->in.c) : 1,
				    l->blk ? blk_width(j->n, l->in.c) : 1);
		else if (s->kind == LAYER_MAXPOOL2D && s->padding)
			k_maxpool_pad(y, l->argmax + r * l->out_size, x, l->in.c, l->in.h, l->in.w, s->k,
				      s->stride, s->padding, l->out.h, l->out.w);
		else if (s->kind == LAYER_MAXPOOL2D)
			k_maxpool(y, l->argmax + r * l->out_size, x, l->in.c, l->in.h, l->in.w, s->k,
				  s->stride, l->out.h, l->out.w);
		else if (s->kind == LAYER_AVGPOOL2D)
			k_avgpool(y, x, l->in.c, l->in.h, l->in.w, s->k, s->stride, l->out.h, l->out.w);
		else if (s->kind == LAYER_ADAPTIVEAVGPOOL2D && src_blk(j))
			blk_global_avgpool(y, x, l->in.c, l->in.h, l->in.w, blk_width(j->n, l->in.c));
		else if (s->kind == LAYER_ADAPTIVEAVGPOOL2D)
			k_adaptive_avgpool(y, x, l->in.c, l->in.h, l->in.w, l->out.h, l->out.w);
		else
			k_upsample_nearest(y, x, l->in.c, l->in.h, l->in.w, s->k);
	}
}

/* rows [r0, r1) of the member idx whose share starts at row `first` */
static void pool_backward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net_layer *l = j->l;
	const struct layer_spec *s = &l->spec;

	(void)idx;
	(void)first;
	for (size_t r = r0; r < r1; r++) {
		const float *dy = j->dy + r * l->out_size;
		float *dx = j->dx + r * l->in_size;

		if (s->kind == LAYER_MAXPOOL2D)
			k_maxpool_backward(dx, dy, l->argmax + r * l->out_size, l->in_size, l->out_size);
		else if (s->kind == LAYER_AVGPOOL2D)
			k_avgpool_backward(dx, dy, l->in.c, l->in.h, l->in.w, s->k, s->stride,
					   l->out.h, l->out.w);
		else if (s->kind == LAYER_ADAPTIVEAVGPOOL2D && src_blk(j))
			blk_global_avgpool_backward(dx, dy, l->in.c, l->in.h, l->in.w, blk_width(j->n, l->in.c));
		else if (s->kind == LAYER_ADAPTIVEAVGPOOL2D)
			k_adaptive_avgpool_backward(dx, dy, l->in.c, l->in.h, l->in.w, l->out.h, l->out.w);
		else
			k_upsample_nearest_backward(dx, dy, l->in.c, l->in.h, l->in.w, s->k);
	}
}

/* ---- joins and pass-throughs ------------------------------------------------ */

/* A residual join: y = body + shortcut; a concat: each input's rows one
 * after the other. */
static void join_forward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net *n = j->n;
	struct net_layer *l = j->l;
	uint32_t v[SPEC_MAX_BRANCHES], m = node_inputs(n, j->index, v);
	size_t size = l->out_size;

	(void)idx;
	(void)first;
	if (l->spec.kind == LAYER_RESIDUAL) {
		const float *a = value_y(n, v[0]) + r0 * size, *b = value_y(n, v[1]) + r0 * size;
		float *y = l->y + r0 * size;

		for (size_t e = 0; e < (r1 - r0) * size; e++)
			y[e] = a[e] + b[e];
		return;
	}
	for (size_t r = r0; r < r1; r++) {
		size_t at = 0;

		for (uint32_t k = 0; k < m; k++) {
			size_t vs = value_size(n, v[k]);

			memcpy(l->y + r * size + at, value_y(n, v[k]) + r * vs, vs * sizeof(float));
			at += vs;
		}
	}
}

/* dst rows = src rows (first) or += */
static void put_rows(float *dst, size_t dst_ld, const float *src, size_t src_ld, size_t len,
		     size_t r0, size_t r1, bool first)
{
	for (size_t r = r0; r < r1; r++) {
		float *d = dst + r * dst_ld;
		const float *s = src + r * src_ld;

		if (first)
			memcpy(d, s, len * sizeof(float));
		else
			for (size_t e = 0; e < len; e++)
				d[e] += s[e];
	}
}

/* The gradient at a join's inputs (or a flatten's or identity's, when it
 * does not alias it): dy as it is (residual, pass-through) or its slice
 * (concat), written or added. */
static void pass_backward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	struct net *n = j->n;
	const struct net_plan *p = n->plan;
	uint32_t v[SPEC_MAX_BRANCHES], m = node_inputs(n, j->index, v);
	size_t size = j->l->out_size, at = 0;

	(void)idx;
	(void)first;
	for (uint32_t k = 0; k < m; k++) {
		size_t vs = value_size(n, v[k]);
		float *g = grad_of(n, v[k]);
		bool slice = j->l->spec.kind == LAYER_CONCAT;

		if (g && !(p->alias[j->index] >> k & 1) && n->layers[j->index].active &&
		    (v[k] != vin(n) || n->input_grad))
			put_rows(g, vs, j->dy + (slice ? at : 0), size, vs, r0, r1,
				 p->first[j->index] >> k & 1);
		at += vs;
	}
}

/* ---- sequences ------------------------------------------------------------- */


/* last: a sequence's last position, y (E) = x[T-1]; its backward puts dy
 * there and zeros elsewhere. */
static void last_forward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	const struct net_layer *l = j->l;
	size_t T = l->in.h, E = l->in.c;

	(void)idx;
	(void)first;
	for (size_t r = r0; r < r1; r++)
		memcpy(l->y + r * E, j->in + r * T * E + (T - 1) * E, E * sizeof(float));
}

static void last_backward(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1)
{
	const struct net_layer *l = j->l;
	size_t T = l->in.h, E = l->in.c;

	(void)idx;
	(void)first;
	for (size_t r = r0; r < r1; r++) {
		memset(j->dx + r * T * E, 0, (T - 1) * E * sizeof(float));
		memcpy(j->dx + r * T * E + (T - 1) * E, j->dy + r * E, E * sizeof(float));
	}
}

/* Member idx's products in a layer of sequences: bf16 with seq_kernels 3
 * in a bf16 job (seq.h), else float32 (NULL). */
static const struct k_gemm_mode *seq_mode(const struct net *n, unsigned idx)
{
	return n->seq_kernels >= 3 && n->precision == K_BF16 ? &n->gemm[idx] : NULL;
}

/* A layer of sequences (and the embedding's forward): the member's samples
 * at once. */
static void seq_phase_forward(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	size_t r0, r1;

	struct seq_ctx c = seq_of(j->n, j->l);

	c.mode = seq_mode(j->n, idx);

	team_split(j->batch, idx, nm, 1, &r0, &r1);
	if (r0 < r1)
		seq_forward(&c, j->index, j->in, r0, r1, j->train, j->step);
}

/* Its backward: the member's samples, the parameters' gradients into the
 * member's partial sums (added in member order by seq_reduce). */
static void seq_phase_backward(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	struct net *n = j->n;
	struct net_layer *l = j->l;
	float *dp = n->part + idx * n->part_len + l->part_off;
	struct seq_ctx c = seq_of(n, l);
	size_t r0, r1;

	c.mode = seq_mode(n, idx);
	team_split(j->batch, idx, nm, 1, &r0, &r1);
	n->part_rows[idx] = (uint32_t)(r1 - r0);
	if (r0 == r1)
		return;
	memset(dp, 0, seq_param_floats(&c) * sizeof(float));
	seq_backward(&c, j->in, j->dy, j->dx, dp, r0, r1);
}

static void seq_reduce(struct net *n, struct net_layer *l, unsigned members)
{
	struct seq_ctx c = seq_of(n, l);
	size_t np = seq_param_floats(&c);
	float *g = n->grads + l->w_off;
	bool first = true;

	for (unsigned m = 0; m < members; m++) {
		const float *dp = n->part + m * n->part_len + l->part_off;

		if (n->part_rows[m] == 0)
			continue;
		for (size_t e = 0; e < np; e++)
			g[e] = first ? dp[e] : g[e] + dp[e];
		first = false;
	}
}

/* A portable job's: whole chunks of the batch (pk_chunk), each chunk's
 * parameter gradients into its own slice of n->pk_part (a chain over the
 * chunk's samples in seq_backward's order), added in chunk order by
 * seq_reduce_pk: the same bits at any team size. */
static void seq_phase_backward_pk(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	struct net *n = j->n;
	struct net_layer *l = j->l;
	struct seq_ctx c = seq_of(n, l);
	size_t np = seq_param_floats(&c), c0, c1;

	team_split(pk_nchunks(j->batch), idx, nm, 1, &c0, &c1);
	for (size_t ch = c0; ch < c1; ch++) {
		float *dp = n->pk_part + ch * n->pk_part_len + l->pk_part_off;
		size_t r0, r1;

		pk_chunk(j->batch, (unsigned)ch, &r0, &r1);
		memset(dp, 0, np * sizeof(float));
		seq_backward(&c, j->in, j->dy, j->dx, dp, r0, r1);
	}
}

static void seq_reduce_pk(struct net *n, struct net_layer *l, size_t batch)
{
	struct seq_ctx c = seq_of(n, l);

	pk_add_chunks(n->grads + l->w_off, n->pk_part + l->pk_part_off, n->pk_part_len, pk_nchunks(batch),
		      0, seq_param_floats(&c));
}

/* The embedding's backward: its weight's columns split across the team;
 * the gradient at the token ids (tests' input_grad) is 0. */
static void embedding_backward(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	size_t c0, c1;

	struct seq_ctx c = seq_of(j->n, j->l);

	team_split(j->l->out.c, idx, nm, SPLIT_ALIGN, &c0, &c1);
	if (c0 < c1)
		seq_embedding_backward(&c, j->in, j->dy, j->batch, c0, c1);
	if (idx == 0 && j->dx)
		memset(j->dx, 0, j->batch * j->l->in_size * sizeof(float));
}

/* Before a phase: the conv2d layers among the nodes at order positions
 * [lo, hi) ready for it. A failure is kept for net_conv_status (the layer
 * then computes nothing). */
static void dnn_prepare_nodes(struct net *n, int lo, int hi, bool backward, const struct layer_job *jobs,
			      size_t batch, unsigned nm)
{
	for (int q = lo; n->conv == CONV_ONEDNN && q < hi; q++) {
		struct net_layer *l = &n->layers[n->order[q]];
		struct tr_err err = { 0 };
		int rc;

		if (!l->dnn || (backward && !l->active))
			continue;
		rc = dnn_prepare(n, l, backward, backward && jobs[n->order[q]].dx, batch, nm, &err);
		if (rc < 0 && n->dnn_rc == 0) {
			n->dnn_rc = rc;
			n->dnn_err = err;
		}
	}
}

/* ---- the passes ------------------------------------------------------------ */

/* Nodes whose work is sample by sample (see struct run_job). */
static bool per_sample(enum layer_kind k)
{
	switch (k) {
	case LAYER_LINEAR:
	case LAYER_BATCHNORM1D:
	case LAYER_BATCHNORM2D:
	case LAYER_EMBEDDING:
		return false;
	default:
		return !spec_is_sequence_layer(k);
	}
}

typedef void (*rows_fn)(const struct layer_job *j, unsigned idx, size_t first, size_t r0, size_t r1);

/* A node's work on rows, by its kind and the job's kernels: a portable
 * job's conv2d and activations have functions of their own (the others'
 * arithmetic is the same for both kernels). */
static rows_fn forward_fn(const struct net *n, enum layer_kind k)
{
	bool pk = n->kernels == KERNELS_PORTABLE;

	switch (k) {
	case LAYER_CONV2D:
		return pk ? conv_forward_pk : n->conv == CONV_ONEDNN ? conv_forward_dnn : conv_forward;
	case LAYER_MAXPOOL2D:
	case LAYER_AVGPOOL2D:
	case LAYER_ADAPTIVEAVGPOOL2D:
	case LAYER_UPSAMPLE:
		return pool_forward;
	case LAYER_RESIDUAL:
	case LAYER_CONCAT:
		return join_forward;
	case LAYER_FLATTEN:
	case LAYER_IDENTITY:
		return NULL;
	case LAYER_LAST:
		return last_forward;
	default:
		return pk ? act_forward_pk : act_forward;
	}
}

static rows_fn backward_fn(const struct net *n, enum layer_kind k)
{
	bool pk = n->kernels == KERNELS_PORTABLE;

	switch (k) {
	case LAYER_CONV2D:
		return pk ? conv_backward_pk : n->conv == CONV_ONEDNN ? conv_backward_dnn : conv_backward;
	case LAYER_MAXPOOL2D:
	case LAYER_AVGPOOL2D:
	case LAYER_ADAPTIVEAVGPOOL2D:
	case LAYER_UPSAMPLE:
		return pool_backward;
	case LAYER_RESIDUAL:
	case LAYER_CONCAT:
	case LAYER_FLATTEN:
	case LAYER_IDENTITY:
		return pass_backward;
	case LAYER_LAST:
		return last_backward;
	default:
		return pk ? act_backward_pk : act_backward;
	}
}

/* A layer that wrote its dx into scratch adds it into its input's gradient. */
static void add_scratch(const struct layer_job *j, size_t r0, size_t r1)
{
	if (j->acc)
		put_rows(j->acc, j->l->in_size, j->dx, j->l->in_size, j->l->in_size, r0, r1, false);
}

/* The member's share of the batch, RUN_BLOCK samples at a time through every
 * node of the run (the input filled first), so a sample's activations are
 * still in cache when the next node reads them. */
static void run_rows(void *arg, unsigned idx, unsigned nm)
{
	struct run_job *rj = arg;
	const struct net *n = rj->n;
	size_t m0, m1, hi_unused, batch = rj->jobs[n->order[rj->first]].batch;

	if (n->kernels == KERNELS_PORTABLE) {
		/* whole chunks (pk_chunk), one at a time: a chunk's weight
		 * gradient sums are one member's, whatever the team */
		size_t c0, c1, hi;

		team_split(pk_nchunks(batch), idx, nm, 1, &c0, &c1);
		pk_chunk(batch, (unsigned)c0, &m0, &hi);
		pk_chunk(batch, (unsigned)(c1 ? c1 - 1 : 0), &hi, &m1);
		if (c0 == c1)
			m1 = m0;
	} else {
		team_split(batch, idx, nm, 1, &m0, &m1);
	}
	rj->n->part_rows[idx] = (uint32_t)(m1 - m0);
	for (size_t b0 = m0, b1; b0 < m1; b0 = b1) {
		if (n->kernels == KERNELS_PORTABLE)
			pk_chunk(batch, chunk_of(batch, b0), &hi_unused, &b1);
		else if (n->conv == CONV_ONEDNN)
			b1 = m1;   /* the member's share at once: one oneDNN call per conv2d */
		else
			b1 = b0 + RUN_BLOCK < m1 ? b0 + RUN_BLOCK : m1;

		if (rj->fill)
			rj->fill(rj->fill_arg, b0, b1);
		for (int p = rj->first; !rj->backward && p < rj->end; p++) {
			const struct layer_job *j = &rj->jobs[n->order[p]];
			rows_fn fn = forward_fn(n, j->l->spec.kind);

			if (fn)
				fn(j, idx, m0, b0, b1);
		}
		for (int p = rj->first; rj->backward && p > rj->end; p--) {
			const struct layer_job *j = &rj->jobs[n->order[p]];
			rows_fn fn = backward_fn(n, j->l->spec.kind);

			if (!j->l->active)
				continue;
			fn(j, idx, m0, b0, b1);
			add_scratch(j, b0, b1);
		}
	}
}

/* Whether a run of per-sample layers is worth the team. */
static bool run_split(const struct run_job *rj)
{
	const struct net *n = rj->n;
	int lo = rj->backward ? rj->end + 1 : rj->first, hi = rj->backward ? rj->first + 1 : rj->end;

	for (int p = lo; p < hi; p++) {
		const struct layer_job *j = &rj->jobs[n->order[p]];

		if (j->l->spec.kind == LAYER_CONV2D || rows_split(j->l, j->batch))
			return true;
	}
	return false;
}

void net_forward(struct net *n, size_t batch, bool train, uint64_t step)
{
	net_forward_from(n, batch, train, step, NULL, NULL);
}

void net_forward_from(struct net *n, size_t batch, bool train, uint64_t step, net_input_fn fill,
		      void *fill_arg)
{
	struct layer_job *jobs = alloca(n->spec.n * sizeof(*jobs));
	bool team = n->team && team_size(n->team) > 1;
	int N = (int)n->spec.n;

	for (uint32_t i = 0; i < n->spec.n; i++) {
		struct net_layer *l = &n->layers[i];

		jobs[i] = (struct layer_job){
			.n = n, .l = l, .index = i, .batch = batch, .train = train, .step = step,
			.in = spec_is_block(l->spec.kind) ? NULL
							  : value_y(n, l->spec.src < 0 ? vin(n) : (uint32_t)l->spec.src),
		};
	}
	if (fill && !per_sample(n->layers[n->order[0]].spec.kind)) {
		/* the first layer needs every row: the input is its own phase */
		struct run_job rj = { .n = n, .fill = fill, .fill_arg = fill_arg, .jobs = jobs,
				      .first = 0, .end = 0 };

		if (team && batch * n->in_size >= ROWS_MIN_ELEMS)
			team_run(n->team, run_rows, &rj);
		else
			fill(fill_arg, 0, batch);
		fill = NULL;
	}
	for (int q = 0; q < N;) {
		uint32_t i = n->order[q];
		struct net_layer *l = &n->layers[i];

		if (l->spec.kind == LAYER_EMBEDDING || spec_is_sequence_layer(l->spec.kind)) {
			run(n, batch > 1, seq_phase_forward, &jobs[i]);
			q++;
			continue;
		}
		switch (l->spec.kind) {
		case LAYER_LINEAR:
			if (q + 1 < N && n->layers[n->order[q + 1]].spec.kind == LAYER_RELU &&
			    n->layers[n->order[q + 1]].spec.src == (int32_t)i)
				jobs[i].relu = &n->layers[n->order[q + 1]];
			run(n, linear_split(n, l, batch), linear_forward, &jobs[i]);
			q += jobs[i].relu ? 2 : 1;
			break;
		case LAYER_BATCHNORM1D:
		case LAYER_BATCHNORM2D:
			run(n, rows_split(l, batch), bn_forward, &jobs[i]);
			if (train)
				n->counts[l->nbt]++;
			q++;
			break;
		default: {
			struct run_job rj = { .n = n, .fill = fill, .fill_arg = fill_arg, .jobs = jobs,
					      .first = q, .end = q };

			bool split;

			while (rj.end < N && per_sample(n->layers[n->order[rj.end]].spec.kind))
				rj.end++;
			split = team && (fill || run_split(&rj));
			dnn_prepare_nodes(n, rj.first, rj.end, false, jobs, batch, split ? team_size(n->team) : 1);
			if (split)
				team_run(n->team, run_rows, &rj);
			else
				run_rows(&rj, 0, 1);
			fill = NULL;
			q = rj.end;
			break;
		}
		}
	}
}

/* The rows of a scratch buffer added into the input's gradient after a
 * phase that splits by columns or channels. */
static void add_scratch_all(void *arg, unsigned idx, unsigned nm)
{
	struct layer_job *j = arg;
	size_t r0, r1;

	team_split(j->batch, idx, nm, 1, &r0, &r1);
	add_scratch(j, r0, r1);
}

bool net_can_update_in_backward(const struct net *n)
{
	for (uint32_t i = 0; i < n->spec.n; i++) {
		const struct net_layer *l = &n->layers[i];

		switch (l->spec.kind) {
		case LAYER_LINEAR:
			if (l->in.seq)
				return false;
			break;
		case LAYER_FLATTEN:
		case LAYER_RELU:
		case LAYER_TANH:
		case LAYER_GELU:
		case LAYER_DROPOUT:
		case LAYER_IDENTITY:
		case LAYER_LEAKYRELU:
		case LAYER_SIGMOID:
		case LAYER_SILU:
		case LAYER_SOFTPLUS:
			break;
		default:
			return false;
		}
	}
	return true;
}

void net_backward_update(struct net *n, size_t batch, net_update_fn update, void *ctx,
			 bool consumes)
{
	n->update = update;
	n->update_ctx = ctx;
	n->update_consumes = consumes;
	net_backward(n, batch);
	n->update = NULL;
	n->update_ctx = NULL;
	n->update_consumes = false;
}

void net_backward(struct net *n, size_t batch)
{
	struct layer_job *jobs = alloca(n->spec.n * sizeof(*jobs));
	const struct net_plan *p = n->plan;
	bool team = n->team && team_size(n->team) > 1;

	/* Each node's gradient buffers, as the plan made them. */
	for (uint32_t i = 0; i < n->spec.n; i++) {
		struct net_layer *l = &n->layers[i];
		uint32_t src = l->spec.src < 0 ? vin(n) : (uint32_t)l->spec.src;
		bool want_dx = l->need_dx && !spec_is_block(l->spec.kind) &&
			       (src != vin(n) || n->input_grad);

		jobs[i] = (struct layer_job){
			.n = n, .l = l, .index = i, .batch = batch, .train = true,
			.in = spec_is_block(l->spec.kind) ? NULL : value_y(n, src),
			.dy = grad_of(n, i),
		};
		if (want_dx && l->scratch >= 0) {
			jobs[i].dx = p->bufs[p->cls_buf[l->scratch]];
			jobs[i].acc = grad_of(n, src);
		} else if (want_dx) {
			jobs[i].dx = grad_of(n, src);
		}
	}
	for (uint32_t ph = 0; ph < p->nphases; ph++) {
		const struct bphase *b = &p->phases[ph];
		uint32_t i = n->order[b->lo];
		struct net_layer *l = &n->layers[i];

		switch (b->kind) {
		case BP_LINEAR:
			jobs[i].relu_job = b->relu >= 0 ? &jobs[b->relu] : NULL;
			run(n, linear_split(n, l, batch), linear_backward, &jobs[i]);
			if (n->update && jobs[i].dx && team && linear_split(n, l, batch))
				team_run(n->team, linear_update_part, &jobs[i]);
			if (jobs[i].acc)
				run(n, team && rows_split(l, batch), add_scratch_all, &jobs[i]);
			break;
		case BP_BATCHNORM:
			run(n, rows_split(l, batch), bn_backward, &jobs[i]);
			if (jobs[i].acc)
				run(n, team && rows_split(l, batch), add_scratch_all, &jobs[i]);
			break;
		case BP_SEQ:
			if (l->spec.kind == LAYER_EMBEDDING) {
				run(n, true, embedding_backward, &jobs[i]);
			} else if (n->kernels == KERNELS_PORTABLE) {
				run(n, team && batch > 1, seq_phase_backward_pk, &jobs[i]);
				seq_reduce_pk(n, l, batch);
			} else {
				bool split = team && batch > 1;

				run(n, split, seq_phase_backward, &jobs[i]);
				seq_reduce(n, l, split ? team_size(n->team) : 1);
			}
			if (jobs[i].acc)
				run(n, team && rows_split(l, batch), add_scratch_all, &jobs[i]);
			break;
		case BP_RUN: {
			struct run_job rj = { .n = n, .jobs = jobs, .first = b->hi, .end = b->lo - 1,
					      .backward = true };
			bool split = run_split(&rj) && team;

			dnn_prepare_nodes(n, b->lo, b->hi + 1, true, jobs, batch, split ? team_size(n->team) : 1);
			if (split)
				team_run(n->team, run_rows, &rj);
			else
				run_rows(&rj, 0, 1);
			for (int q = b->hi; q >= b->lo; q--) {
				struct net_layer *cl = &n->layers[n->order[q]];

				if (cl->spec.kind != LAYER_CONV2D || !cl->active)
					continue;
				if (n->kernels == KERNELS_PORTABLE)
					conv_reduce_pk(n, cl, batch);
				else
					conv_reduce(n, cl, split ? team_size(n->team) : 1);
			}
			break;
		}
		}
	}
	/* Every linear layer's gradient was written; an update that consumes
	 * it has also run over all of it (net_backward_update) */
	for (uint32_t i = 0; i < n->spec.n; i++)
		if (n->layers[i].spec.kind == LAYER_LINEAR)
			n->layers[i].dw_zero = n->update && n->update_consumes;
	n->dx = n->input_grad ? grad_of(n, vin(n)) : NULL;
}
