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
 *
 * A portable job (kernels portable): every product through k_gemm_by (the
 * portable GEMM), the layer norm's statistics and sums, the attention's
 * softmax and the gates' tanh and sigmoid by the portable kernels, so a
 * sample's forward bits do not depend on the path nor on the samples beside
 * it; net.c then calls seq_backward on whole chunks of the batch (pk_chunk)
 * and adds the chunks' partial sums in chunk order, so the team size does
 * not decide the bits either.
 */
#ifndef TRAIND_ENGINE_MODEL_SEQ_H
#define TRAIND_ENGINE_MODEL_SEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/kernels.h"
#include "traind/spec.h"

/* What a layer of sequences works on: net.c fills one per call (the
 * layer's geometry, its parameters and gradients, its buffers). */
struct seq_ctx {
	const struct layer_spec *spec;
	struct shape in, out;        /* per sample */
	const float *params;         /* the layer's, in state_dict order */
	float *grads;                /* where its gradients go (the embedding's backward) */
	float *y;                    /* (mb, out) its output */
	float *aux;                  /* (mb, seq_aux_floats) saved state */
	float *tmp;                  /* (mb, at least seq_tmp_floats) the backward's scratch */
	size_t mb;                   /* rows of those buffers: the net's max_batch */
	uint64_t key;                /* the dropout streams' key (the job's seed) */
	enum kernels_kind kernels;   /* the job's: a portable job's products, reductions and
				      * functions are the portable kernels' (doc/portable.md) */
	bool v2;                     /* seq_kernels 2 or 3 (an openblas job only): the blocked causal attention and
				      * the float32 lanes (seq.c's top); false: the per-head form */
	const struct k_gemm_mode *mode; /* the calling member's products (net->gemm[member]) with
				      * seq_kernels 3 in a bf16 job: the projections and the feed-forward
				      * block in bf16 (doc/precision.md); NULL: float32 by `kernels` */
};

/* Floats of one sample's saved state, and of its backward scratch (l's
 * spec, in and out are enough). */
size_t seq_aux_floats(const struct seq_ctx *l);
size_t seq_tmp_floats(const struct seq_ctx *l);
/* Floats of the layer's parameters (contiguous, in state_dict order). */
size_t seq_param_floats(const struct seq_ctx *l);

/* Samples [r0, r1) of the batch: l->y from in (batch, in size); train:
 * dropout drawn for `step`, state saved for the backward. `index` is the
 * node's (the dropout streams'). */
void seq_forward(const struct seq_ctx *l, uint32_t index, const float *in, size_t r0, size_t r1,
		 bool train, uint64_t step);
/* Samples [r0, r1) after a training forward of the batch: dx (may be NULL)
 * written from dy; the parameters' gradients over these samples added into
 * dp (laid out as the parameters). */
void seq_backward(const struct seq_ctx *l, const float *in, const float *dy, float *dx, float *dp,
		  size_t r0, size_t r1);

/* The embedding's backward, columns [c0, c1) of its weight's gradient
 * (l->grads) over the whole batch, written; its padding row stays 0. */
void seq_embedding_backward(const struct seq_ctx *l, const float *in, const float *dy, size_t batch,
			    size_t c0, size_t c1);

#endif
