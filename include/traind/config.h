/*
 * config.h - a training job's configuration: everything that decides its bits.
 *
 * The same config (including `threads`, which fixes how the work is split, and
 * so the floating-point summation order) and the same dataset give bit-identical
 * weights. A config travels as a JSON object whose keys are the field names
 * below; these keys are a stable interface (trainctl, the daemon's protocol and
 * the checkpoint blob all use them).
 *
 * Thread: plain data and pure functions; any thread.
 */
#ifndef TRAIND_CONFIG_H
#define TRAIND_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "traind/error.h"
#include "traind/loss.h"
#include "traind/kernels.h"
#include "traind/net.h"
#include "traind/sched.h"
#include "traind/team.h"

#define CFG_MAX_HIDDEN 8     /* hidden layers at most */
#define CFG_NAME_MAX 64      /* dataset name bytes, with NUL */
#define CFG_MAX_THREADS TEAM_MAX_MEMBERS
/* What a new job's `conv` is when it does not say (doc/models.md). */
#define CONFIG_CONV_DEFAULT CONV_GEMM
#define CFG_MODEL_MAX 1024   /* model SPEC text bytes, with NUL (spec.h's SPEC_TEXT_MAX) */
#define CFG_MAX_RANKS 64     /* MPI ranks of one job at most */
#define CFG_MAX_SHARDS 64    /* shards of a batch at most */
#define CFG_HOSTS_MAX 512    /* hosts text bytes, with NUL */
#define CFG_MAX_WEIGHTS 1024 /* class_weights, pos_weight: values at most */
#define CFG_AUGMENT_MAX 512  /* augment SPEC text bytes, with NUL */

enum optim_kind {
	OPTIM_ADAM,
	OPTIM_ADAMW,
	OPTIM_SGD,
};

/* Whose random streams a job draws from (rng.h). */
enum rng_kind {
	RNG_XOSHIRO,   /* traind's own xoshiro256** (every job stored before the key) */
	RNG_TORCH,     /* mt19937 with PyTorch's draws: init, split, order as the lesson's program */
};

struct train_config {
	char dataset[CFG_NAME_MAX];  /* dataset directory name under the data dir ("mnist") */
	uint32_t epochs;             /* epochs to train (5) */
	uint32_t batch_size;         /* training batch (64) */
	uint32_t eval_batch_size;    /* validation/test batch (128) */
	double lr;                   /* learning rate (1e-3) */
	enum optim_kind optimizer;   /* adam */
	double momentum;             /* SGD momentum (0) */
	double weight_decay;         /* 0 for adam/sgd; adamw defaults to 0.01 as PyTorch */
	double beta1;                /* Adam/AdamW (0.9) */
	double beta2;                /* Adam/AdamW (0.999) */
	double eps;                  /* Adam/AdamW (1e-8) */
	uint32_t n_hidden;           /* number of hidden layers (1) */
	uint32_t hidden[CFG_MAX_HIDDEN]; /* their widths ({256}) */
	uint64_t seed;               /* model init and shuffling (42) */
	uint64_t split_seed;         /* train/val split permutation (42) */
	uint32_t val_size;           /* images of the training file held out for validation (10000) */
	uint32_t train_size;         /* use only the first N of the training part; 0 = all */
	uint32_t threads;            /* threads computing one job (2); part of the bits */
	char model[CFG_MODEL_MAX];   /* layer SPEC or a named architecture (spec.h); "" = the MLP of `hidden` */
	bool ftz;                    /* flush denormals to zero (FTZ/DAZ) while training; true for new
					jobs, false for a stored job without the key (its old arithmetic) */
	bool strict_numerics;        /* refuse to resume under another numeric environment (false) */
	/* Schedules, the best epoch, early stopping, clipping (sched.h, clip.h).
	 * Their defaults are "off", which is what a stored job without the keys
	 * had, so config_from_stored_json needs no special case for them. */
	char lr_scheduler[SCHED_TEXT_MAX]; /* an lr_scheduler SPEC (sched.h); "" = the constant lr */
	enum monitor_kind monitor;   /* what "best" means: val_loss (default), val_acc, val_macro_acc */
	uint32_t early_stop_patience; /* epochs without improvement before stopping; 0 = never stop early */
	double early_stop_min_delta; /* an improvement must beat the best by more than this (0) */
	double clip_grad_norm;       /* max total gradient 2-norm; 0 = no clipping */
	enum rng_kind rng;           /* torch for new jobs, xoshiro for a stored job without the key;
					torch also makes pixels x * (float)(1/255) as the lesson's ToDtype */
	/* Data parallelism (doc/distributed.md, "Using it"). `shards` is part of the
	 * bits: each batch is split into that many fixed shards whose gradients
	 * are summed in shard order; 1 (every job stored before the key) is the
	 * arithmetic of one unsplit batch. `ranks`, `hosts` and `max_restarts`
	 * only say where and how the job runs: the same shards give the same
	 * bits on any rank count that divides them. */
	uint32_t shards;             /* 0 while parsing: "the ranks" (config_shards); stored resolved */
	uint32_t ranks;              /* processes of the job (1: a thread of traind) */
	char hosts[CFG_HOSTS_MAX];   /* "HOST:SLOTS,..." for the launcher; "" = localhost:ranks */
	uint32_t max_restarts;       /* restarts after a failure of a multi-rank run (3) */
	/* The loss (loss.h) and what it weighs; their defaults are the plain
	 * cross-entropy every job stored before the keys had. The loss decides
	 * the task (classification, regression, multi-label), which the
	 * dataset's targets must fit (the trainer checks). */
	enum loss_kind loss;         /* cross_entropy */
	double label_smoothing;      /* cross_entropy: [0, 1] (0) */
	uint32_t n_class_weights;    /* cross_entropy: one per class, or 0: none */
	float class_weights[CFG_MAX_WEIGHTS]; /* (n_class_weights) >= 0, float32 as PyTorch's weight */
	double huber_delta;          /* huber: > 0 (1.0) */
	uint32_t n_pos_weight;       /* bce_with_logits: one per output, or 0: none */
	float pos_weight[CFG_MAX_WEIGHTS];    /* (n_pos_weight) >= 0 */
	/* Training-batch augmentation (augment.h): an augment SPEC, "" = none
	 * (every job stored before the key). Part of the bits. */
	char augment[CFG_AUGMENT_MAX];
	enum kernels_kind kernels;   /* openblas (new jobs and every stored job without the key) or
					portable (kernels.h); part of the bits */
	/* The matrix products' arithmetic (doc/precision.md): fp32 (the
	 * default, and every job stored before the key) or bf16 (inputs
	 * rounded to bfloat16, float32 accumulation, on AMX or AVX-512-BF16;
	 * the rest of the step, the master weights and the optimizer stay
	 * float32). Part of the bits. */
	enum k_precision precision;
	/* How kernels openblas computes conv2d (net.h's enum conv_kind; the key
	 * `conv`, doc/models.md): gemm (every stored job without the key) or
	 * onednn; part of the bits. */
	enum conv_kind conv;
	/* Token data (doc/sequences.md): a sample's tokens. A text's samples
	 * are windows of `context` tokens (required); token arrays' are their
	 * rows (0, or their length). 0 for everything stored before the key. */
	uint32_t context;
	/* The arithmetic of the sequence layers' own loops under kernels
	 * openblas (doc/sequences.md, "How the engine runs them"): 1, the
	 * attention per sample and head and LayerNorm in double (every job
	 * stored before the key), or 2 (new jobs): the causal attention in
	 * blocks that skip the masked products, the softmax and LayerNorm in
	 * float32 lanes. Part of the bits. */
	uint32_t seq_kernels;
};

/* The job's shards: cfg->shards, or its ranks while shards is unset (0). */
uint32_t config_shards(const struct train_config *cfg);

/* The lesson's configuration. */
void config_defaults(struct train_config *cfg);

/* Set one field from its text form, as given on a command line: key is a JSON
 * key above ("epochs", "lr", "hidden" as "512,256", "optimizer" as "adamw"...).
 * Returns -EINVAL naming the key (in the message and as err->key) and the
 * value when either is bad. Does not
 * check cross-field rules; call config_validate when done. */
int config_set(struct train_config *cfg, const char *key, const char *value, struct tr_err *err);
/* Note: setting "optimizer" to adamw also sets weight_decay to 0.01 (PyTorch's
 * default), so set the optimizer before an explicit weight_decay. */

/* Check ranges and cross-field rules (epochs >= 1, lr finite and > 0, ...);
 * a failure names the key in err->key.
 * Dataset-dependent limits (batch size vs. data size) are checked by the trainer. */
int config_validate(const struct train_config *cfg, struct tr_err *err);

/* Build *cfg from a JSON object: defaults, then each key present. Unknown keys,
 * wrong JSON types and bad values are errors naming the key (err->key too).
 * Validates. For a new job (a Start request). */
int config_from_json(struct train_config *cfg, const json_t *obj, struct tr_err *err);
/* The same for a stored job's configuration (the store, a checkpoint): a key
 * that traind did not have when the job was stored takes the value that
 * keeps that job's arithmetic (ftz false, rng xoshiro). */
int config_from_stored_json(struct train_config *cfg, const json_t *obj, struct tr_err *err);

/* The keys of obj over an existing *cfg (start --from: another job's
 * configuration with some settings changed), then validated; *cfg is left
 * as it was on failure. Errors as config_from_json. */
int config_apply_json(struct train_config *cfg, const json_t *obj, struct tr_err *err);

/* A new JSON object with every field (caller owns the reference). NULL on ENOMEM. */
json_t *config_to_json(const struct train_config *cfg);

/* "adam", "adamw", "sgd". */
const char *config_optim_name(enum optim_kind k);
/* "xoshiro", "torch". */
const char *config_rng_name(enum rng_kind k);
/* "openblas", "portable". */
const char *config_kernels_name(enum kernels_kind k);
const char *config_conv_name(enum conv_kind k);

/* True when a and b describe the same job bit for bit. */
bool config_equal(const struct train_config *a, const struct train_config *b);

/* True when `name` is a safe dataset name: 1..63 bytes of [A-Za-z0-9._-], not
 * starting with '.', so it can never name a path outside the data directory. */
bool config_dataset_name_ok(const char *name);

#endif
