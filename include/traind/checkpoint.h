/*
 * checkpoint.h - a trainer's complete state as one safetensors blob, and back.
 *
 * Tensors (little-endian):
 *   net.{i}.weight, net.{i}.bias F32; for BatchNorm also net.{i}.running_mean,
 *     net.{i}.running_var F32 and net.{i}.num_batches_tracked I64 []: the
 *     model's state_dict, layer i of the SPEC being nn.Sequential's index i
 *     (inside blocks net.{i}.body.{j}..., net.{i}.branches.{b}.{j}...: spec.h)
 *   optimizer.state.{i}.exp_avg / .exp_avg_sq   F32 (Adam, AdamW)
 *   optimizer.state.{i}.momentum_buffer        F32 (SGD with momentum)
 *     where i numbers the parameters as torch.optim's state_dict does
 *   rng.state U64 [4]           the job RNG
 *   data.order U32 [n_train]    this epoch's sample order
 *   metrics.sums F64 [2]        loss sum, seconds of the current epoch
 *   metrics.counts I64 [4, 10]  batches (row 0, column 0), correct, total, predicted
 *   schedule.values F64 [8], schedule.counts I64 [12]   (format 3) the lr
 *     schedule's, best epoch's, early stopping's and grad-norm sums' state
 *     (sched.h's sched_save)
 * Metadata (strings): format "traind-checkpoint", format_version "3", config
 * (JSON, with the model SPEC), input ("C,H,W"), numerics (the BLAS and kernel
 * it trained with), epoch, step, optimizer_step, note, history (JSON array of
 * rows), and checksum "sha256:<hex>" of the whole blob with the hex digits
 * zeroed; format 3's history rows also have lr and grad_norm. Format 1 (the
 * MLP before SPECs; no input, no numerics, a config without model and ftz)
 * and format 2 (no schedule: the constant lr, the best epoch found from the
 * history) still load, as the jobs they were.
 *
 * A model-only export holds just the net.* tensors and {"format": "pt"} plus
 * traind.model (the SPEC; a named ResNet: its name) and, for the MLP,
 * traind.hidden, so safetensors.torch.load_file + load_state_dict(strict=True)
 * take it into the module the SPEC describes (the nn.Sequential of a SPEC
 * without blocks; for any SPEC, the Model of checkpoint_pytorch_from_blob's
 * code).
 *
 * Loading trusts nothing: the safetensors layer checks the structure; this
 * layer checks the checksum, the format version, every tensor's presence,
 * dtype and shape against the configuration, that no other tensor is present,
 * and the values' invariants (the order is a permutation, positions in range).
 *
 * Thread: any (a blob is plain bytes); functions taking a trainer follow its
 * owner-thread rule.
 */
#ifndef TRAIND_CHECKPOINT_H
#define TRAIND_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/config.h"
#include "traind/dataset.h"
#include "traind/error.h"
#include "traind/trainer.h"

#define CHECKPOINT_FORMAT "traind-checkpoint"
#define CHECKPOINT_VERSION 3

/* What a blob says about itself, without a dataset. */
struct checkpoint_info {
	uint32_t version;           /* format_version: 1 (the MLP), 2, or 3 (schedules) */
	struct train_config cfg;
	uint32_t epoch;             /* completed epochs */
	uint32_t step;              /* batches done in the current epoch */
	uint64_t optimizer_step;
	char checksum[72];          /* "sha256:<64 hex>" */
};

/* Serialize t into a new malloc'ed blob (caller frees), checksum included. */
int checkpoint_save(const struct trainer *t, uint8_t **blob, size_t *len, struct tr_err *err);

/* The two halves of checkpoint_save, so that a training thread only copies
 * its state out (serialize) and another thread hashes it (seal): */
int checkpoint_serialize(const struct trainer *t, uint8_t **blob, size_t *len, struct tr_err *err);
/* checkpoint_serialize into the caller's buffer *blob of *cap bytes when it
 * fits (no allocation, no fresh pages to fault in while training waits),
 * else into a new one that replaces it (st_writer_finish_into). */
int checkpoint_serialize_into(const struct trainer *t, uint8_t **blob, size_t *cap, size_t *len,
			      struct tr_err *err);
/* Write the checksum into a serialized blob; its "sha256:<hex>" into checksum. */
int checkpoint_seal(uint8_t *blob, size_t len, char checksum[72], struct tr_err *err);

/* Verify a blob (structure, checksum, version, config) and describe it. */
int checkpoint_inspect(const uint8_t *blob, size_t len, struct checkpoint_info *info,
		       struct tr_err *err);

/* Build a trainer from a blob. weights_only: keep the model, the position and
 * the history, but start a fresh optimizer (the lesson's 2.8.8 case). */
int checkpoint_restore(struct trainer **out, const uint8_t *blob, size_t len,
		       const struct dataset *ds, bool weights_only, struct tr_err *err);

/* The model alone, PyTorch-loadable, from a trainer or from a checkpoint blob. */
int checkpoint_export_model(const struct trainer *t, uint8_t **out, size_t *out_len,
			    struct tr_err *err);
int checkpoint_export_from_blob(const uint8_t *blob, size_t len, uint8_t **out, size_t *out_len,
				struct tr_err *err);

/* The PyTorch code of a checkpoint's model (pycode.h) into a new malloc'ed
 * string (*code, NUL-terminated, *code_len bytes). */
int checkpoint_pytorch_from_blob(const uint8_t *blob, size_t len, char **code, size_t *code_len,
				 struct tr_err *err);

/* The model of a checkpoint blob alone, as a net ready for eval-mode
 * forwards of up to max_batch inputs of the blob's input shape (n->input),
 * without a dataset (predict). The caller net_deinit's it. */
int checkpoint_model_net(const uint8_t *blob, size_t len, uint32_t max_batch, struct net *out,
			 struct tr_err *err);

/* Replace t's parameters with those of a model file (an export, or any
 * safetensors file with exactly the net.* tensors of t's shapes). */
int checkpoint_load_model(struct trainer *t, const uint8_t *blob, size_t len, struct tr_err *err);

#endif
