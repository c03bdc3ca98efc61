/*
 * seq.h - the layers of sequences (doc/sequences.md): embedding,
 * posembedding, lstm, gru, layernorm, multiheadattention and
 * transformer_encoder_layer, as PyTorch 1.13's modules compute them;
 * private to engine/model/ (net.c drives them).
 *
 * A sequence value is (batch, T, E) floats, position-major (batch_first);
 * token ids are (batch, T) floats holding whole numbers. Each layer but the
 * embedding runs in a phase of its own, every team member on its share of
 * the samples at once (team_split of the batch): the recurrences of LSTM and
 * GRU step through time over the member's samples together (one matrix
 * product per step), attention is per sample. A member's parameter
 * gradients go to its own partial sums (the layer's slice of net->part),
 * which net.c adds in member order. The embedding's backward is split by
 * its columns instead (a row may be read by any sample), each member adding
 * the positions' gradients in sample and position order.
 *
 * The saved state a backward pass reads (gates, cells, attention weights,
 * normalisation statistics, dropout masks) lives in the layer's aux buffer,
 * (max_batch, seq_aux_floats) owned by the net; the backward's scratch in
 * net->seqtmp, (max_batch, seq_tmp_floats of the largest layer), shared:
 * one layer's backward runs at a time and members touch only their
 * samples' rows.
 *
 * Dropout inside these layers (LSTM between its layers, attention weights,
 * the transformer layer's three) draws from the same Philox stream as the
 * dropout layer, keyed by the job's seed, the step and the layer, with a
 * sub-stream per place, so masks do not depend on the team's split.
 *
 * Thread: the forward and backward functions run on team members, on
 * disjoint samples (or columns); the rest on the net's owner.
 */
#ifndef TRAIND_ENGINE_MODEL_SEQ_H
#define TRAIND_ENGINE_MODEL_SEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/net.h"

/* Floats of one sample's saved state, and of its backward scratch. */
size_t seq_aux_floats(const struct net_layer *l);
size_t seq_tmp_floats(const struct net_layer *l);
/* Floats of the layer's parameters (contiguous from l->w_off, in
 * state_dict order). */
size_t seq_param_floats(const struct net_layer *l);

/* Samples [r0, r1) of the batch: l->y from in (batch, l->in_size); train:
 * dropout drawn for `step`, state saved for the backward. `index` is the
 * node's (the dropout streams'). */
void seq_forward(const struct net *n, struct net_layer *l, uint32_t index, const float *in,
		 size_t r0, size_t r1, bool train, uint64_t step);
/* Samples [r0, r1) after a training forward of the batch: dx (may be NULL)
 * written from dy; the parameters' gradients over these samples added into
 * dp (laid out as the parameters). */
void seq_backward(const struct net *n, struct net_layer *l, const float *in, const float *dy,
		  float *dx, float *dp, size_t r0, size_t r1);

/* The embedding's backward, columns [c0, c1) of its weight's gradient
 * (n->grads) over the whole batch, written; its padding row stays 0. */
void seq_embedding_backward(const struct net *n, const struct net_layer *l, const float *in,
			    const float *dy, size_t batch, size_t c0, size_t c1);

#endif
