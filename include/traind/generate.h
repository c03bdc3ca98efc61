/*
 * generate.h - sampling text from a language model (doc/sequences.md): a
 * net whose input is T token ids and whose output is scores over the
 * vocabulary at each of the T positions, every position seeing only those
 * before it (LSTM and GRU by construction; attention with the causal mask).
 *
 * Each new token is drawn from the softmax of the last position's scores /
 * temperature (temperature 0: the first most likely; top_k > 0: among the
 * k most likely only) with a uniform number from traind's own stream (a
 * struct rng seeded with `seed`), so the same model, prompt and options
 * give the same tokens. The model sees the last T tokens at most: the
 * window slides once the text is longer than the context it was trained
 * on. The forward passes are eval mode, batch 1, of the positions the
 * window holds.
 *
 * Thread: the net's owner thread (a worker of the thread pool); the net is
 * the caller's (checkpoint_model_net, max_batch 1).
 */
#ifndef TRAIND_GENERATE_H
#define TRAIND_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"
#include "traind/net.h"

#define GENERATE_MAX_TOKENS 10000

struct gen_opts {
	uint32_t tokens;        /* tokens to add, 1..GENERATE_MAX_TOKENS */
	double temperature;     /* >= 0; 0: greedy */
	uint32_t top_k;         /* 0: every token */
	uint64_t seed;
};

/* Whether n can generate: token ids in, a sequence of scores out, causal.
 * -EINVAL naming the layer (or the shape) otherwise. */
int generate_check(const struct net *n, struct tr_err *err);

/* Continue prompt[0, np) (np >= 1 ids, each < the vocabulary) by o->tokens
 * ids into out. 0, or -EINVAL for a bad option. */
int generate_tokens(struct net *n, const uint32_t *prompt, size_t np, const struct gen_opts *o,
		    uint32_t *out, struct tr_err *err);

#endif
