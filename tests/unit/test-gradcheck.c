/*
 * test-gradcheck.c - the engine's analytic gradients (float32, BLAS, split
 * across a team) against central finite differences of a float64 reference
 * forward pass written here layer by layer, for every layer kind, the bias
 * terms and the loss, and for blocks (residual, concat, nested; a value read
 * twice) node by node in execution order. BatchNorm in training mode (batch
 * statistics), Dropout with the mask the engine drew. The layers of
 * sequences (embedding, posembedding, lstm, gru, last, layernorm,
 * multiheadattention, transformer_encoder_layer, a linear layer at every
 * position) with their loss at every position; their own dropout at 0 (its
 * masks are checked against PyTorch's arithmetic in tests/torch).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "traind/kernels.h"
#include "traind/net.h"
#include "traind/optim.h"
#include "traind/rng.h"
#include "traind/team.h"
#include "traind/spec.h"

/* ---- float64 references of the layers of sequences ---- */

static double sigm(double x)
{
	return 1.0 / (1.0 + exp(-x));
}

/* LayerNorm over rows of E: y = (x - mean) / sqrt(var + 1e-5) w + b. */
static void ref_ln(const double *x, double *y, const double *w, const double *b, size_t rows, size_t E)
{
	for (size_t r = 0; r < rows; r++) {
		double m = 0, v = 0;

		for (size_t j = 0; j < E; j++)
			m += x[r * E + j];
		m /= (double)E;
		for (size_t j = 0; j < E; j++)
			v += (x[r * E + j] - m) * (x[r * E + j] - m);
		v /= (double)E;
		for (size_t j = 0; j < E; j++)
			y[r * E + j] = (x[r * E + j] - m) / sqrt(v + 1e-5) * w[j] + b[j];
	}
}

/* y (rows, out) = x (rows, in) W^T + b */
static void ref_lin(const double *x, double *y, const double *w, const double *b, size_t rows,
		    size_t in, size_t out)
{
	for (size_t r = 0; r < rows; r++)
		for (size_t o = 0; o < out; o++) {
			double v = b ? b[o] : 0.0;

			for (size_t i = 0; i < in; i++)
				v += w[o * in + i] * x[r * in + i];
			y[r * out + o] = v;
		}
}

/* Self-attention of one sample x (T, E): p = in_proj_weight, in_proj_bias,
 * out_proj.weight, out_proj.bias. */
static void ref_mha(const double *x, double *y, const double *p, size_t T, size_t E, size_t heads,
		    bool causal)
{
	size_t d = E / heads;
	double *qkv = malloc(T * 3 * E * sizeof(double)), *o = malloc(T * E * sizeof(double));
	double *row = malloc(T * sizeof(double));

	ref_lin(x, qkv, p, p + 3 * E * E, T, E, 3 * E);
	for (size_t h = 0; h < heads; h++)
		for (size_t i = 0; i < T; i++) {
			double mx = -INFINITY, sum = 0;
			size_t end = causal ? i + 1 : T;

			for (size_t j = 0; j < end; j++) {
				double v = 0;

				for (size_t k = 0; k < d; k++)
					v += qkv[i * 3 * E + h * d + k] * qkv[j * 3 * E + E + h * d + k];
				row[j] = v / sqrt((double)d);
				mx = row[j] > mx ? row[j] : mx;
			}
			for (size_t j = 0; j < end; j++)
				sum += row[j] = exp(row[j] - mx);
			for (size_t k = 0; k < d; k++) {
				double v = 0;

				for (size_t j = 0; j < end; j++)
					v += row[j] / sum * qkv[j * 3 * E + 2 * E + h * d + k];
				o[i * E + h * d + k] = v;
			}
		}
	ref_lin(o, y, p + 3 * E * E + 3 * E, p + 4 * E * E + 3 * E, T, E, E);
	free(qkv);
	free(o);
	free(row);
}

/* One sample of a layer of sequences (not embedding: the batch's tokens). */
static void ref_seq(const struct net_layer *l, const double *p, const double *in, double *out)
{
	const struct layer_spec *s = &l->spec;
	size_t T = l->in.h, E = l->in.c;

	switch (s->kind) {
	case LAYER_POSEMBEDDING:
		for (size_t e = 0; e < T * E; e++)
			out[e] = in[e] + p[l->w_off + e];
		break;
	case LAYER_LAYERNORM:
		ref_ln(in, out, p + l->w_off, p + l->w_off + E, l->in.seq ? T : 1, E);
		break;
	case LAYER_LSTM:
	case LAYER_GRU: {
		bool gru = s->kind == LAYER_GRU;
		size_t H = s->out, G = (gru ? 3 : 4) * H, off = l->w_off;
		double *x = malloc(T * (E > H ? E : H) * sizeof(double)), *h = calloc(T * H, sizeof(double));
		double *g = malloc(G * sizeof(double)), *gh = malloc(G * sizeof(double));
		double *c = malloc(H * sizeof(double));

		memcpy(x, in, T * E * sizeof(double));
		for (uint32_t k = 0; k < s->layers; k++) {
			size_t Ek = k ? H : E;
			const double *wih = p + off, *whh = wih + G * Ek, *bih = whh + G * H, *bhh = bih + G;

			off += G * (Ek + H + 2);
			memset(c, 0, H * sizeof(double));
			for (size_t t = 0; t < T; t++) {
				for (size_t j = 0; j < G; j++) {
					double a = bih[j], b = bhh[j];

					for (size_t i = 0; i < Ek; i++)
						a += wih[j * Ek + i] * x[t * Ek + i];
					for (size_t i = 0; t && i < H; i++)
						b += whh[j * H + i] * h[(t - 1) * H + i];
					g[j] = a;
					gh[j] = b;
				}
				for (size_t j = 0; j < H; j++) {
					double prev = t ? h[(t - 1) * H + j] : 0.0;

					if (gru) {
						double r = sigm(g[j] + gh[j]), z = sigm(g[H + j] + gh[H + j]);
						double nn = tanh(g[2 * H + j] + r * gh[2 * H + j]);

						h[t * H + j] = (1 - z) * nn + z * prev;
					} else {
						double i = sigm(g[j] + gh[j]), f = sigm(g[H + j] + gh[H + j]);
						double gg = tanh(g[2 * H + j] + gh[2 * H + j]);
						double o = sigm(g[3 * H + j] + gh[3 * H + j]);

						c[j] = f * c[j] + i * gg;
						h[t * H + j] = o * tanh(c[j]);
					}
				}
			}
			memcpy(x, h, T * H * sizeof(double));
		}
		memcpy(out, h, T * H * sizeof(double));
		free(x);
		free(h);
		free(g);
		free(gh);
		free(c);
		break;
	}
	case LAYER_MHA:
		ref_mha(in, out, p + l->w_off, T, E, s->heads, s->causal);
		break;
	case LAYER_TRANSFORMER: {
		const double *w = p + l->w_off, *mha = w, *w1 = w + 4 * E * E + 4 * E;
		const double *b1 = w1 + s->ff * E, *w2 = b1 + s->ff, *b2 = w2 + E * s->ff;
		const double *n1w = b2 + E, *n1b = n1w + E, *n2w = n1b + E, *n2b = n2w + E;
		double *a = malloc(T * E * sizeof(double)), *r = malloc(T * E * sizeof(double));
		double *n = malloc(T * E * sizeof(double)), *hh = malloc(T * s->ff * sizeof(double));
		double *f = malloc(T * E * sizeof(double));

		if (s->norm_first) {
			ref_ln(in, n, n1w, n1b, T, E);
			ref_mha(n, a, mha, T, E, s->heads, s->causal);
			for (size_t e = 0; e < T * E; e++)
				r[e] = in[e] + a[e];
			ref_ln(r, n, n2w, n2b, T, E);
		} else {
			ref_mha(in, a, mha, T, E, s->heads, s->causal);
			for (size_t e = 0; e < T * E; e++)
				a[e] += in[e];
			ref_ln(a, n, n1w, n1b, T, E);
		}
		ref_lin(n, hh, w1, b1, T, E, s->ff);
		for (size_t e = 0; e < T * s->ff; e++)
			hh[e] = hh[e] > 0 ? hh[e] : 0;
		ref_lin(hh, f, w2, b2, T, s->ff, E);
		if (s->norm_first) {
			for (size_t e = 0; e < T * E; e++)
				out[e] = r[e] + f[e];
		} else {
			for (size_t e = 0; e < T * E; e++)
				f[e] += n[e];
			ref_ln(f, out, n2w, n2b, T, E);
		}
		free(a);
		free(r);
		free(n);
		free(hh);
		free(f);
		break;
	}
	default:
		break;
	}
}

/* One node in float64 over the whole batch: in (batch, in_size) -> out
 * (a join reads its inputs from vals, the outputs of the nodes so far). */
static void ref_layer(const struct net *n, const struct net_layer *l, const double *p,
		      const double *in, double *const *vals, const double *x, double *out,
		      size_t batch)
{
	const struct layer_spec *s = &l->spec;
	size_t is = l->in_size, os = l->out_size;

	switch (s->kind) {
	case LAYER_FLATTEN:
	case LAYER_IDENTITY:
		memcpy(out, in, batch * is * sizeof(double));
		break;
	case LAYER_EMBEDDING:
		for (size_t r = 0; r < batch * l->in.h; r++)
			memcpy(out + r * s->out, p + l->w_off + (size_t)in[r] * s->out, s->out * sizeof(double));
		break;
	case LAYER_LAST:
		for (size_t r = 0; r < batch; r++)
			memcpy(out + r * os, in + r * is + (l->in.h - 1) * os, os * sizeof(double));
		break;
	case LAYER_POSEMBEDDING:
	case LAYER_LAYERNORM:
	case LAYER_LSTM:
	case LAYER_GRU:
	case LAYER_MHA:
	case LAYER_TRANSFORMER:
		for (size_t r = 0; r < batch; r++)
			ref_seq(l, p, in + r * is, out + r * os);
		break;
	case LAYER_LINEAR:
		if (l->in.seq) {
			ref_lin(in, out, p + l->w_off, l->has_bias ? p + l->b_off : NULL, batch * l->in.h,
				l->in.c, s->out);
			break;
		}
		for (size_t r = 0; r < batch; r++)
			for (size_t o = 0; o < os; o++) {
				double v = l->has_bias ? p[l->b_off + o] : 0.0;

				for (size_t i = 0; i < is; i++)
					v += p[l->w_off + o * is + i] * in[r * is + i];
				out[r * os + o] = v;
			}
		break;
	case LAYER_CONV2D: {
		size_t G = s->groups, cg = l->in.c / G, og = s->out / G;

		for (size_t r = 0; r < batch; r++)
			for (size_t oc = 0; oc < s->out; oc++)
				for (size_t oy = 0; oy < l->out.h; oy++)
					for (size_t ox = 0; ox < l->out.w; ox++) {
						double v = l->has_bias ? p[l->b_off + oc] : 0.0;
						size_t g = oc / og;

						for (size_t c = 0; c < cg; c++)
							for (size_t i = 0; i < s->k; i++)
								for (size_t j = 0; j < s->k; j++) {
									long iy = (long)(oy * s->stride + i * s->dilation) - (long)s->padding;
									long ix = (long)(ox * s->stride + j * s->dilation) - (long)s->padding;

									if (iy < 0 || ix < 0 || iy >= (long)l->in.h || ix >= (long)l->in.w)
										continue;
									v += p[l->w_off + ((oc * cg + c) * s->k + i) * s->k + j] *
									     in[r * is + ((g * cg + c) * l->in.h + (size_t)iy) * l->in.w + (size_t)ix];
								}
						out[r * os + (oc * l->out.h + oy) * l->out.w + ox] = v;
					}
		break;
	}
	case LAYER_MAXPOOL2D:
	case LAYER_AVGPOOL2D:
		for (size_t r = 0; r < batch; r++)
			for (size_t c = 0; c < l->in.c; c++)
				for (size_t oy = 0; oy < l->out.h; oy++)
					for (size_t ox = 0; ox < l->out.w; ox++) {
						double m = -INFINITY, sum = 0.0;

						for (size_t i = 0; i < s->k; i++)
							for (size_t j = 0; j < s->k; j++) {
								long iy = (long)(oy * s->stride + i) - (long)s->padding;
								long ix = (long)(ox * s->stride + j) - (long)s->padding;
								double v;

								if (iy < 0 || ix < 0 || iy >= (long)l->in.h || ix >= (long)l->in.w)
									continue;
								v = in[r * is + (c * l->in.h + (size_t)iy) * l->in.w + (size_t)ix];
								m = v > m ? v : m;
								sum += v;
							}
						out[r * os + (c * l->out.h + oy) * l->out.w + ox] =
							s->kind == LAYER_MAXPOOL2D ? m : sum / (double)(s->k * s->k);
					}
		break;
	case LAYER_ADAPTIVEAVGPOOL2D:
		for (size_t r = 0; r < batch; r++)
			for (size_t c = 0; c < l->in.c; c++)
				for (size_t oy = 0; oy < l->out.h; oy++)
					for (size_t ox = 0; ox < l->out.w; ox++) {
						/* PyTorch's bounds: floor(o*H/OH) .. ceil((o+1)*H/OH) */
						size_t y0 = (size_t)floor((double)oy * l->in.h / l->out.h);
						size_t y1 = (size_t)ceil((double)(oy + 1) * l->in.h / l->out.h);
						size_t x0 = (size_t)floor((double)ox * l->in.w / l->out.w);
						size_t x1 = (size_t)ceil((double)(ox + 1) * l->in.w / l->out.w);
						double sum = 0.0;

						for (size_t iy = y0; iy < y1; iy++)
							for (size_t ix = x0; ix < x1; ix++)
								sum += in[r * is + (c * l->in.h + iy) * l->in.w + ix];
						out[r * os + (c * l->out.h + oy) * l->out.w + ox] =
							sum / (double)((y1 - y0) * (x1 - x0));
					}
		break;
	case LAYER_UPSAMPLE:
		for (size_t r = 0; r < batch; r++)
			for (size_t c = 0; c < l->in.c; c++)
				for (size_t oy = 0; oy < l->out.h; oy++)
					for (size_t ox = 0; ox < l->out.w; ox++)
						out[r * os + (c * l->out.h + oy) * l->out.w + ox] =
							in[r * is + (c * l->in.h + oy / s->k) * l->in.w + ox / s->k];
		break;
	case LAYER_BATCHNORM1D:
	case LAYER_BATCHNORM2D: {
		size_t S = (size_t)l->in.h * l->in.w, C = l->in.c;

		for (size_t c = 0; c < C; c++) {
			double mean = 0.0, var = 0.0;

			for (size_t r = 0; r < batch; r++)
				for (size_t t = 0; t < S; t++)
					mean += in[r * is + c * S + t];
			mean /= (double)(batch * S);
			for (size_t r = 0; r < batch; r++)
				for (size_t t = 0; t < S; t++)
					var += (in[r * is + c * S + t] - mean) * (in[r * is + c * S + t] - mean);
			var /= (double)(batch * S);
			for (size_t r = 0; r < batch; r++)
				for (size_t t = 0; t < S; t++)
					out[r * is + c * S + t] = (in[r * is + c * S + t] - mean) / sqrt(var + 1e-5) *
								  p[l->w_off + c] + p[l->b_off + c];
		}
		break;
	}
	case LAYER_RELU:
		for (size_t e = 0; e < batch * is; e++)
			out[e] = in[e] > 0 ? in[e] : 0;
		break;
	case LAYER_LEAKYRELU:
		for (size_t e = 0; e < batch * is; e++)
			out[e] = in[e] > 0 ? in[e] : in[e] * s->p;
		break;
	case LAYER_TANH:
		for (size_t e = 0; e < batch * is; e++)
			out[e] = tanh(in[e]);
		break;
	case LAYER_SIGMOID:
		for (size_t e = 0; e < batch * is; e++)
			out[e] = 1.0 / (1.0 + exp(-in[e]));
		break;
	case LAYER_SILU:
		for (size_t e = 0; e < batch * is; e++)
			out[e] = in[e] / (1.0 + exp(-in[e]));
		break;
	case LAYER_SOFTPLUS:
		for (size_t e = 0; e < batch * is; e++)
			out[e] = in[e] * s->p > s->threshold ? in[e] : log1p(exp(in[e] * s->p)) / s->p;
		break;
	case LAYER_GELU:
		for (size_t e = 0; e < batch * is; e++)
			out[e] = in[e] * 0.5 * (1.0 + erf(in[e] / sqrt(2.0)));
		break;
	case LAYER_DROPOUT:
		for (size_t e = 0; e < batch * is; e++)
			out[e] = l->mask[e] ? in[e] / (1.0 - s->p) : 0.0;
		break;
	case LAYER_RESIDUAL:
	case LAYER_CONCAT: {
		const double *v[SPEC_MAX_BRANCHES];
		size_t vs[SPEC_MAX_BRANCHES];
		uint32_t m = s->kind == LAYER_RESIDUAL ? 2 : s->nbranches;

		for (uint32_t k = 0; k < m; k++) {
			int32_t src = s->last[k];

			v[k] = src < 0 ? x : vals[src];
			vs[k] = src < 0 ? n->in_size : n->layers[src].out_size;
		}
		for (size_t r = 0; r < batch; r++) {
			size_t at = 0;

			for (uint32_t k = 0; k < m; k++) {
				for (size_t e = 0; e < vs[k]; e++) {
					if (s->kind == LAYER_RESIDUAL)
						out[r * os + e] = (k ? out[r * os + e] : 0.0) + v[k][r * vs[k] + e];
					else
						out[r * os + at + e] = v[k][r * vs[k] + e];
				}
				at += vs[k];
			}
		}
		break;
	}
	}
}

/* Mean softmax cross-entropy of the whole net in float64, params as doubles:
 * every node in execution order, each output kept. */
static double ref_loss(const struct net *n, const double *p, const double *x, const uint8_t *y,
		       size_t batch)
{
	double **vals = calloc(n->spec.n, sizeof(double *)), total = 0.0;
	const double *z0;

	for (uint32_t q = 0; q < n->spec.n; q++) {
		uint32_t i = n->order[q];
		const struct net_layer *l = &n->layers[i];
		int32_t src = l->spec.src;

		vals[i] = malloc(batch * l->out_size * sizeof(double));
		ref_layer(n, l, p, spec_is_block(l->spec.kind) ? NULL : src < 0 ? x : vals[src], vals, x,
			  vals[i], batch);
	}
	z0 = vals[n->out_node];
	for (size_t r = 0; r < batch * n->positions; r++) {
		const double *z = z0 + r * n->classes;
		double mx = z[0], se = 0;

		for (size_t j = 1; j < n->classes; j++)
			mx = z[j] > mx ? z[j] : mx;
		for (size_t j = 0; j < n->classes; j++)
			se += exp(z[j] - mx);
		total += log(se) + mx - z[y[r]];
	}
	for (uint32_t i = 0; i < n->spec.n; i++)
		free(vals[i]);
	free(vals);
	return total / (double)(batch * n->positions);
}

/* Train-mode forward and backward of `text` on random inputs of shape in,
 * then finite differences of the float64 reference on entries of every
 * parameter tensor; also the gradient at the input. */
/* The sequence layers' arithmetic the next check_spec runs (net.h's seq_kernels). */
static uint32_t check_seq_kernels;

static void check_spec(const char *text, struct shape in, size_t batch, unsigned threads,
		       size_t probes_per_tensor)
{
	struct model_spec spec;
	struct team *team;
	struct net n;
	struct rng r;
	struct tr_err err;
	uint8_t *y;
	double *p, *x;
	double loss_engine, loss_ref;
	size_t checked = 0, tensors = 0;

	kernels_global_init();
	if (spec_parse(&spec, text, NULL, 0, 10, &err) < 0 ||
	    spec_shapes(&spec, in, 10, NULL, NULL, &err) < 0)
		fail_msg("%s: %s", text, err.msg);
	assert_int_equal(team_new(&team, threads), 0);
	assert_int_equal(net_init(&n, &spec, in, 10, (uint32_t)batch, team), 0);
	assert_int_equal(net_set_input_grad(&n, true), 0);
	n.seq_kernels = check_seq_kernels;
	n.dropout_key = 99;
	rng_seed(&r, 7);
	net_init_params(&n, &r);
	/* BatchNorm's affine parameters away from 1 and 0, so they matter. */
	for (uint32_t i = 0; i < spec.n; i++)
		if (spec_is_batchnorm(spec.layers[i].kind))
			for (size_t c = 0; c < n.layers[i].in.c; c++) {
				n.params[n.layers[i].w_off + c] = 0.5f + rng_uniform(&r);
				n.params[n.layers[i].b_off + c] = rng_uniform(&r) - 0.5f;
			}
	/* Inputs in [0, 1) like pixels (or token ids below the vocabulary),
	 * labels spread over the classes (at every position of a sequence). */
	x = malloc(batch * n.in_size * sizeof(double));
	for (size_t i = 0; i < batch * n.in_size; i++) {
		n.x[i] = in.vocab ? (float)rng_below(&r, in.vocab) : rng_uniform(&r);
		x[i] = n.x[i];
	}
	y = malloc(batch * n.positions);
	for (size_t i = 0; i < batch * n.positions; i++)
		y[i] = (uint8_t)(i * 7 % 10);

	net_forward(&n, batch, true, 3);
	loss_engine = k_softmax_xent(net_output(&n), y, batch * n.positions, 10,
				     1.0f / (float)(batch * n.positions), net_dout(&n), NULL) /
		      (double)(batch * n.positions);
	net_backward(&n, batch);

	p = malloc(n.nparams * sizeof(double));
	for (size_t i = 0; i < n.nparams; i++)
		p[i] = n.params[i];
	loss_ref = ref_loss(&n, p, x, y, batch);
	if (fabs(loss_engine - loss_ref) > 1e-5 * (1 + fabs(loss_ref)))
		fail_msg("%s: loss %.9g, reference %.9g", text, loss_engine, loss_ref);

	/* Probe entries of every parameter tensor (first, last, and spread). */
	for (uint32_t t = 0; t < n.ntensors; t++) {
		const struct net_tensor *tt = &n.tensors[t];

		if (tt->kind != TENSOR_PARAM)
			continue;
		tensors++;
		for (size_t k = 0; k < probes_per_tensor; k++) {
			size_t i = tt->off + (k == 0 ? 0 : k == 1 ? tt->len - 1 : (k * 7919) % tt->len);
			double h = 1e-5, save = p[i], fd, g = n.grads[i];

			p[i] = save + h;
			fd = ref_loss(&n, p, x, y, batch);
			p[i] = save - h;
			fd -= ref_loss(&n, p, x, y, batch);
			p[i] = save;
			fd /= 2 * h;
			if (fabs(fd - g) > 2e-4 + 1e-2 * fabs(fd))
				fail_msg("%s: %s index %zu: analytic %.8g, finite difference %.8g", text,
					 tt->name, i - tt->off, g, fd);
			checked++;
		}
	}
	assert_true(checked == tensors * probes_per_tensor);
	/* The gradient at the input, for a few entries (not at token ids). */
	for (size_t k = 0; !in.vocab && k < probes_per_tensor; k++) {
		size_t i = (k * 104729) % (batch * n.in_size);
		double h = 1e-5, save = x[i], fd;

		x[i] = save + h;
		fd = ref_loss(&n, p, x, y, batch);
		x[i] = save - h;
		fd -= ref_loss(&n, p, x, y, batch);
		x[i] = save;
		fd /= 2 * h;
		if (fabs(fd - n.dx[i]) > 2e-4 + 1e-2 * fabs(fd))
			fail_msg("%s: input gradient %zu: analytic %.8g, finite difference %.8g", text, i,
				 n.dx[i], fd);
	}
	free(p);
	free(x);
	free(y);
	net_deinit(&n);
	team_free(team);
}

static struct shape flat(uint32_t c)
{
	struct shape s = { .c = c, .h = 1, .w = 1, .flat = true };

	return s;
}

static struct shape image(uint32_t c, uint32_t h, uint32_t w)
{
	struct shape s = { .c = c, .h = h, .w = w, .flat = false };

	return s;
}

static struct shape seq(uint32_t t, uint32_t e)
{
	struct shape s = { .c = e, .h = t, .w = 1, .seq = true };

	return s;
}

static struct shape tokens(uint32_t t, uint32_t vocab)
{
	struct shape s = { .c = 1, .h = t, .w = 1, .seq = true, .vocab = vocab };

	return s;
}

/* The layers of sequences: LSTM and GRU over 16 steps, attention with and
 * without the causal mask, both transformer layers, per-position losses;
 * in the per-head form (seq_kernels 1, what net_init leaves) and, over more
 * positions than a block of rows, the blocked one (seq_kernels 3, new
 * jobs': in float32 the arithmetic of 2). */
static void test_sequences(void **state)
{
	(void)state;
	check_seq_kernels = 3;
	check_spec("multiheadattention(8,2,causal=true),relu,linear(10)", seq(37, 8), 2, 2, 12);
	check_spec("embedding(11,8),posembedding,transformer_encoder_layer(8,2,12,dropout=0,norm_first=true,"
		   "causal=true),layernorm,linear(10)", tokens(34, 11), 2, 1, 12);
	check_seq_kernels = 0;
	check_spec("embedding(7,5),posembedding,linear(10)", tokens(6, 7), 3, 1, 12);
	check_spec("embedding(9,4,padding_idx=2),lstm(6,layers=2),linear(10)", tokens(16, 9), 3, 1, 12);
	check_spec("lstm(5),gru(4),linear(10)", seq(16, 3), 4, 2, 12);
	check_spec("gru(6,layers=2),last,linear(10)", seq(16, 4), 3, 1, 12);
	check_spec("layernorm,multiheadattention(8,2),linear(10)", seq(6, 8), 3, 1, 12);
	check_spec("multiheadattention(8,4,causal=true),relu,linear(10)", seq(7, 8), 4, 2, 12);
	check_spec("transformer_encoder_layer(8,2,12,dropout=0),linear(10)", seq(6, 8), 3, 1, 12);
	check_spec("embedding(11,8),posembedding,transformer_encoder_layer(8,2,12,dropout=0,norm_first=true,"
		   "causal=true),layernorm,linear(10)", tokens(9, 11), 3, 2, 12);
	check_spec("lstm(6),last,layernorm,linear(10)", seq(5, 3), 4, 1, 12);
}

static void test_lesson_shape(void **state)
{
	(void)state;
	check_spec("flatten,linear(256),relu,linear(10)", image(1, 28, 28), 16, 1, 24);
}

static void test_two_hidden_layers(void **state)
{
	(void)state;
	check_spec("linear(24),relu,linear(12),relu,linear(10)", flat(30), 5, 1, 30);
}

/* Layers large enough to be split across a team of 2 and 3: same gradients. */
static void test_split_across_team(void **state)
{
	(void)state;
	check_spec("linear(512),relu,linear(64),relu,linear(10)", flat(96), 12, 2, 24);
	check_spec("linear(512),relu,linear(64),relu,linear(10)", flat(96), 12, 3, 24);
}

static void test_activations(void **state)
{
	(void)state;
	check_spec("linear(20),tanh,linear(16),gelu,linear(10,bias=false)", flat(12), 6, 1, 16);
}

static void test_batchnorm_dropout(void **state)
{
	(void)state;
	check_spec("linear(32),batchnorm1d,relu,dropout(0.3),linear(10)", flat(20), 8, 1, 16);
	check_spec("linear(32),batchnorm1d,relu,dropout(0.3),linear(10)", flat(20), 8, 2, 16);
}

static void test_conv_pool(void **state)
{
	(void)state;
	check_spec("conv2d(3,3,padding=1),relu,maxpool2d(2),conv2d(4,3,stride=2,bias=false),tanh,flatten,linear(10)",
		   image(2, 10, 10), 4, 1, 16);
	check_spec("conv2d(3,3,padding=1),relu,maxpool2d(2),conv2d(4,3,stride=2,bias=false),tanh,flatten,linear(10)",
		   image(2, 10, 10), 5, 2, 16);
	check_spec("conv2d(4,3),batchnorm2d,gelu,avgpool2d(2,stride=1),flatten,linear(10)",
		   image(1, 7, 7), 4, 2, 16);
}

static void test_new_activations(void **state)
{
	(void)state;
	check_spec("linear(20),leakyrelu(0.1),linear(16),sigmoid,linear(14),silu,linear(12),softplus,"
		   "linear(10)", flat(12), 6, 1, 16);
	check_spec("linear(20),softplus(beta=2,threshold=1),linear(10)", flat(12), 6, 2, 16);
}

static void test_conv_groups_dilation(void **state)
{
	(void)state;
	check_spec("conv2d(4,3,padding=2,dilation=2),relu,conv2d(8,3,groups=2,bias=false),"
		   "adaptiveavgpool2d(3,2),flatten,linear(10)", image(2, 9, 9), 4, 1, 16);
	check_spec("conv2d(6,3,groups=3),maxpool2d(3,stride=2,padding=1),upsample(2),identity,"
		   "adaptiveavgpool2d(1),flatten,linear(10)", image(3, 8, 8), 5, 2, 16);
}

/* Blocks: a BasicBlock with a conv shortcut, one with the identity, a
 * DenseNet-style concatenation and a U-Net-style skip (nested). */
static void test_blocks(void **state)
{
	const char *resnet = "conv2d(4,3,padding=1),batchnorm2d,relu,"
			     "residual(conv2d(4,3,padding=1,bias=false),batchnorm2d,relu,conv2d(4,3,padding=1,bias=false),batchnorm2d),relu,"
			     "residual(conv2d(6,3,stride=2,padding=1,bias=false),batchnorm2d,relu,conv2d(6,3,padding=1,bias=false),batchnorm2d;"
			     "shortcut=conv2d(6,1,stride=2,bias=false),batchnorm2d),relu,adaptiveavgpool2d(1,1),flatten,linear(10)";
	const char *dense = "conv2d(3,3,padding=1),concat(identity;batchnorm2d,relu,conv2d(2,3,padding=1)),"
			    "concat(identity;relu,conv2d(2,1)),flatten,linear(10)";
	const char *unet = "conv2d(3,3,padding=1),concat(identity;maxpool2d(2),conv2d(4,3,padding=1),relu,"
			   "concat(identity;maxpool2d(2),conv2d(4,1),upsample(2)),conv2d(3,1),upsample(2)),"
			   "conv2d(2,1),flatten,linear(10)";

	(void)state;
	check_spec(resnet, image(2, 8, 8), 4, 1, 12);
	check_spec(resnet, image(2, 8, 8), 5, 2, 12);
	check_spec(dense, image(2, 5, 5), 4, 1, 12);
	check_spec(dense, image(2, 5, 5), 4, 2, 12);
	check_spec(unet, image(1, 8, 8), 3, 2, 12);
	/* The input is read by two nodes: its gradient is added. */
	check_spec("residual(linear(12),tanh),linear(10)", flat(12), 4, 1, 12);
	check_spec("concat(linear(5);tanh;sigmoid),linear(10)", flat(6), 4, 2, 12);
}

/* net_backward_update's update over a range (test_update_consumes). */
struct upd {
	struct net *n;
	const struct optim *o;
	bool consume;
};

static void upd_range(void *ctx, size_t off, size_t len)
{
	struct upd *u = ctx;

	if (u->consume)
		optim_update_consume(u->o, u->n->params, u->n->grads, off, len);
	else
		optim_update(u->o, u->n->params, u->n->grads, off, len);
}

/* Steps of the lesson's MLP (and one whose split middle layer passes a
 * gradient down) three ways from the same start: net_backward and then
 * the optimizer over all parameters; net_backward_update with the plain
 * update; with an update that consumes the gradients, after which the
 * weight-gradient products add into them (beta 1). The parameters and the
 * moments must stay the same bits, step after step, on 1 and 2 threads,
 * with batches of 64 and of 16 (the last batch of an epoch). */
static void test_update_consumes(void **state)
{
	static const char *specs[] = { "flatten,linear(256),relu,linear(10)",
				       "flatten,linear(512),relu,linear(256),relu,linear(10)" };
	struct shape in = { .c = 1, .h = 28, .w = 28 };

	(void)state;
	kernels_global_init();
	for (size_t si = 0; si < 2; si++) {
		for (unsigned threads = 1; threads <= 2; threads++) {
			struct model_spec spec;
			struct tr_err err;
			struct team *team;
			struct net n[3];
			struct optim o[3];
			struct train_config cfg;
			struct rng r;
			uint8_t y[64];

			if (spec_parse(&spec, specs[si], NULL, 0, 10, &err) < 0 ||
			    spec_shapes(&spec, in, 10, NULL, NULL, &err) < 0)
				fail_msg("%s: %s", specs[si], err.msg);
			assert_int_equal(team_new(&team, threads), 0);
			config_defaults(&cfg);
			for (int k = 0; k < 3; k++) {
				assert_int_equal(net_init(&n[k], &spec, in, 10, 64, team), 0);
				rng_seed(&r, 3);
				net_init_params(&n[k], &r);
				assert_int_equal(optim_init(&o[k], &cfg, n[k].nparams), 0);
			}
			rng_seed(&r, 9);
			for (int s = 0; s < 5; s++) {
				size_t batch = s == 3 ? 16 : 64;

				for (size_t i = 0; i < batch; i++)
					y[i] = (uint8_t)rng_below(&r, 10);
				for (size_t i = 0; i < batch * n[0].in_size; i++) {
					float v = rng_uniform(&r);

					/* zero pixels, as MNIST's border: zero gradients */
					v = i % 28 < 3 ? 0.0f : v;
					n[0].x[i] = n[1].x[i] = n[2].x[i] = v;
				}
				for (int k = 0; k < 3; k++) {
					struct upd u = { &n[k], &o[k], k == 2 };

					net_forward(&n[k], batch, true, (uint64_t)s);
					k_softmax_xent(net_output(&n[k]), y, batch, 10, 1.0f / (float)batch,
						       net_dout(&n[k]), NULL);
					optim_begin_step(&o[k], cfg.lr);
					if (k == 0) {
						net_backward(&n[k], batch);
						optim_step(&o[k], n[k].params, n[k].grads, n[k].nparams, team);
					} else {
						net_backward_update(&n[k], batch, upd_range, &u, k == 2);
					}
				}
				for (int k = 1; k < 3; k++) {
					if (memcmp(n[0].params, n[k].params, n[0].nparams * sizeof(float)) ||
					    memcmp(o[0].m, o[k].m, n[0].nparams * sizeof(float)) ||
					    memcmp(o[0].v, o[k].v, n[0].nparams * sizeof(float)))
						fail_msg("%s, %u threads, step %d: %s update differs from the "
							 "separate one", specs[si], threads, s,
							 k == 2 ? "the consuming" : "the in-backward");
				}
				for (uint32_t i = 0; i < spec.n; i++)
					if (spec.layers[i].kind == LAYER_LINEAR) {
						assert_false(n[1].layers[i].dw_zero);
						assert_true(n[2].layers[i].dw_zero);
					}
				for (size_t i = 0; i < n[2].nparams; i++)
					if (n[2].grads[i] != 0.0f || signbit(n[2].grads[i]))
						fail_msg("grads[%zu] = %g after a consuming update", i,
							 n[2].grads[i]);
			}
			for (int k = 0; k < 3; k++) {
				optim_deinit(&o[k]);
				net_deinit(&n[k]);
			}
			team_free(team);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lesson_shape),
		cmocka_unit_test(test_two_hidden_layers),
		cmocka_unit_test(test_split_across_team),
		cmocka_unit_test(test_activations),
		cmocka_unit_test(test_batchnorm_dropout),
		cmocka_unit_test(test_conv_pool),
		cmocka_unit_test(test_new_activations),
		cmocka_unit_test(test_conv_groups_dilation),
		cmocka_unit_test(test_blocks),
		cmocka_unit_test(test_sequences),
		cmocka_unit_test(test_update_consumes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
