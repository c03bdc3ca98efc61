/*
 * generate.c - sampling from a language model. See include/traind/generate.h.
 *
 * Each step fills the net's input with the window (the last T tokens, left
 * aligned, the positions after them 0: a causal model's output at the
 * window's last position does not depend on them), runs an eval-mode
 * forward of batch 1 and draws from that position's scores. The softmax and
 * the draw are in double: the cumulative sum over the candidates, by
 * descending score (ties by id), until it passes u * total.
 */
#include "traind/generate.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "traind/rng.h"

int generate_check(const struct net *n, struct tr_err *err)
{
	const struct net_layer *out = &n->layers[n->out_node];

	if (!n->input.vocab)
		return tr_err_set(err, -EINVAL, "the model does not take token ids (it is not a language model)");
	if (!out->out.seq || n->positions != n->input.h)
		return tr_err_set(err, -EINVAL,
				  "the model gives %u outputs per sample, not scores at each of its %u positions (it is not a language model)",
				  (unsigned)out->out_size, n->input.h);
	for (uint32_t i = 0; i < n->spec.n; i++) {
		const struct layer_spec *l = &n->spec.layers[i];

		if ((l->kind == LAYER_MHA || l->kind == LAYER_TRANSFORMER) && !l->causal) {
			char where[512];

			spec_where(&n->spec, i, where, sizeof(where));
			return tr_err_set(err, -EINVAL,
					  "model: %s is not causal (every position sees the ones after it): such a model cannot generate",
					  where);
		}
	}
	return 0;
}

struct cand {
	double z;
	uint32_t id;
};

static int by_score(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->z != y->z)
		return x->z > y->z ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

int generate_tokens(struct net *n, const uint32_t *prompt, size_t np, const struct gen_opts *o,
		    uint32_t *out, struct tr_err *err)
{
	size_t T = n->input.h, V = n->classes, total = np + o->tokens;
	uint32_t *text;
	struct cand *c;
	struct rng r;
	int rc = 0;

	if (np == 0)
		return tr_err_set(err, -EINVAL, "prompt: give at least one token");
	if (o->tokens < 1 || o->tokens > GENERATE_MAX_TOKENS)
		return tr_err_set(err, -EINVAL, "tokens: %u is not in [1, %d]", o->tokens, GENERATE_MAX_TOKENS);
	if (!(o->temperature >= 0.0 && o->temperature <= 100.0))
		return tr_err_set(err, -EINVAL, "temperature: %g is not in [0, 100]", o->temperature);
	text = malloc(total * sizeof(*text));
	c = malloc(V * sizeof(*c));
	if (!text || !c) {
		rc = tr_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	memcpy(text, prompt, np * sizeof(*text));
	rng_seed(&r, o->seed);
	for (size_t k = np; k < total; k++) {
		size_t L = k < T ? k : T, pick = 0, m;
		const float *z;
		double u, sum = 0.0, mx;

		for (size_t p = 0; p < T; p++)
			n->x[p] = p < L ? (float)text[k - L + p] : 0.0f;
		net_forward(n, 1, false, 0);
		z = net_output(n) + (L - 1) * V;
		for (size_t i = 0; i < V; i++)
			c[i] = (struct cand){ (double)z[i], (uint32_t)i };
		qsort(c, V, sizeof(*c), by_score);
		m = o->top_k && o->top_k < V ? o->top_k : V;
		u = (double)(rng_next(&r) >> 11) * 0x1.0p-53;
		if (o->temperature > 0.0) {
			mx = c[0].z;
			for (size_t i = 0; i < m; i++)
				sum += c[i].z = exp((c[i].z - mx) / o->temperature);
			for (double acc = 0.0; pick + 1 < m; pick++) {
				acc += c[pick].z;
				if (acc > u * sum)
					break;
			}
		}
		text[k] = c[pick].id;
	}
	memcpy(out, text + np, o->tokens * sizeof(*out));
out:
	free(text);
	free(c);
	return rc;
}
