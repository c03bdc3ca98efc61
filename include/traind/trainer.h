/*
 * trainer.h - one training job's complete state and the loop that advances it.
 *
 * A trainer owns everything needed to continue exactly: the model, the
 * optimizer state, its RNG, the split, this epoch's sample order and the
 * position in it, the running metric sums of the epoch, the history of
 * finished epochs and the configuration. checkpoint.h turns that into one
 * blob and back; resuming from it gives the same bits as never stopping.
 *
 * The dataset is borrowed (read-only, shared with other jobs) and must outlive
 * the trainer. Each trainer owns a team of cfg.threads threads.
 *
 * Thread: every function on the job's owner thread (the one that created it).
 * Other threads must not read a trainer while it steps; the daemon publishes
 * snapshots instead.
 */
#ifndef TRAIND_TRAINER_H
#define TRAIND_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "traind/augment.h"
#include "traind/config.h"
#include "traind/dataset.h"
#include "traind/error.h"
#include "traind/loss.h"
#include "traind/net.h"
#include "traind/numerics.h"
#include "traind/optim.h"
#include "traind/rng.h"
#include "traind/sched.h"
#include "traind/team.h"

#define HISTORY_NOTE_MAX 192
#define TRAINER_MAX_PARAMS (1ull << 24)   /* 16.7M parameters, ~270 MB of training state */
#define TRAINER_MAX_ACTIVATIONS (1ull << 28) /* floats of activations and scratch, 1 GiB */

enum eval_split {
	EVAL_VAL,
	EVAL_TEST,
};

/* Loss and the task's metrics over a set of samples; a metric the task
 * does not have is NaN (null in JSON, absent from tables). */
struct metrics {
	double loss;        /* mean of the per-batch mean losses */
	double acc;         /* classification: fraction correct; multi-label: per-label accuracy, the
			       fraction of (sample, label) pairs where (output > 0) == (target is 1)
			       (torchmetrics MultilabelAccuracy, threshold 0.5, micro) */
	double macro_acc;   /* classification: mean per-class recall (torchmetrics MulticlassAccuracy, macro) */
	double mae;         /* regression: mean |output - target| over every value */
	double rmse;        /* regression: sqrt of the mean (output - target)^2 over every value */
	double ppl;         /* per-token: exp(loss), the perplexity (loss: the mean over every
			       position of an evaluation; acc: per-token accuracy) */
	uint64_t count;     /* samples seen */
};

/* One finished epoch, as stored in the history. */
struct history_row {
	uint32_t epoch;                  /* 1-based */
	double train_loss, train_acc, train_macro_acc;
	double val_loss, val_acc, val_macro_acc;
	double val_mae, val_rmse;        /* regression's; NaN for the other tasks */
	double val_ppl;                  /* per-token's perplexity; NaN for the other tasks */
	double seconds;                  /* wall time of the epoch (train + val) */
	double lr;                       /* the learning rate the epoch began with */
	double grad_norm;                /* mean pre-clip gradient norm of its steps; NaN: not computed */
	char note[HISTORY_NOTE_MAX];     /* e.g. "resumed weights-only", or "" */
};

/* Running sums over the batches of the current epoch (or an evaluation). */
struct metric_sums {
	double loss_sum;                 /* sum of per-batch mean losses */
	uint64_t batches;
	uint64_t correct[DATASET_MAX_CLASSES];   /* per true class; classes past the model's stay 0 */
	uint64_t total[DATASET_MAX_CLASSES];     /* samples per true class */
	uint64_t predicted[DATASET_MAX_CLASSES]; /* samples per predicted class */
	/* Multi-label counts the same per label: correct decisions, samples, predicted
	 * positives; regression counts its samples in total[0]. */
	double abs_sum, sq_sum;          /* regression (evaluations only): sums of |error|, error^2 */
	/* Per-token (samples in total[0] as regression's): */
	uint64_t tokens, tokens_correct; /* positions seen, and those whose first maximum is the target */
	double token_loss, token_norm;   /* evaluations: the loss terms' sum and their divisor */
	double seconds;                  /* wall time spent in this epoch so far */
};

/* How the ranks of a multi-process job exchange a step's shard results
 * (traind-rank's MPI; NULL: one process computing every shard). */
struct trainer_comm {
	uint32_t rank, nranks;       /* nranks divides the job's shards */
	/* In place: all holds nranks blocks of `bytes`; this rank's block is
	 * filled; afterwards every block is, on every rank. 0 or -errno. */
	int (*allgather)(void *ctx, void *all, size_t bytes);
	void *ctx;
};

struct trainer {
	struct train_config cfg;
	const struct trainer_comm *comm; /* borrowed; NULL: this process computes every shard */
	uint8_t *shard_buf;              /* (shards * shard_block) with shards > 1; owned */
	size_t shard_block;              /* bytes of one shard's result: header, predictions, gradients */
	const struct dataset *ds;        /* borrowed */
	struct team *team;               /* owned, cfg.threads members */
	struct net model;                /* the layers, their tensors and buffers */
	struct optim opt;
	struct rng rng;                  /* rng xoshiro: init, then one shuffle per epoch */
	struct mt19937 mt;               /* rng torch: the lesson's global generator (torch.manual_seed(seed)):
					    init, then per epoch the train loader's two int64 draws and
					    the val loader's one */
	uint32_t n_split;                /* images in the training file */
	uint32_t *split;                 /* (n_split) permutation from split_seed: train part, then val part; owned */
	uint32_t n_train_part;           /* n_split - val_size */
	uint32_t n_train;                /* samples trained on: train_size or n_train_part */
	uint32_t n_val;                  /* val_size */
	uint32_t *order;                 /* (n_train) this epoch's order, positions in the train part; owned */
	uint32_t *batch_idx;             /* (max batch) image indices of the batch being gathered; owned */
	struct loss loss;                /* the configured loss (weights point into cfg) */
	enum loss_task task;
	uint32_t width;                  /* the model's outputs: classes, or targets per sample (token
					    data with a class per position: at each position) */
	uint32_t positions;              /* the outputs' positions: per-token T, else 1 */
	uint32_t context;                /* token data: tokens per sample (T); else 0 */
	uint32_t text_part;              /* a text: its training windows (from position 0) */
	uint64_t text_cut;               /* a text: where its validation windows start */
	uint32_t *classes;               /* (max batch, positions) the batch's classes; owned */
	float *values;                   /* (max batch, width) the batch's float targets; owned */
	float *out;                      /* (batch_size, width) a sharded step's outputs; owned */
	struct augment aug;              /* the parsed cfg.augment (n 0: none) */
	struct augment_data augd;        /* the samples it sees */
	uint32_t epoch;                  /* epochs completed */
	uint32_t step;                   /* batches completed in the current epoch */
	uint32_t steps_per_epoch;        /* ceil(n_train / batch_size) */
	struct metric_sums sums;         /* current epoch's training metrics */
	struct sched sched;              /* lr schedule, best epoch, early stopping, grad-norm sums */
	struct history_row *history;     /* (cfg.epochs) rows of completed epochs; owned */
	uint32_t nhistory;
	char note[HISTORY_NOTE_MAX];     /* attached to the next history row */
	char numerics[NUMERICS_TEXT_MAX]; /* the BLAS and kernel this job trains with (numerics.h) */
	char numerics_changed[2 * NUMERICS_TEXT_MAX + 80]; /* set by a restore under another environment, else "" */
};

/* Check cfg (config_validate) and its fit to the dataset: the validation
 * set leaves training images, train_size fits, the batch is not larger than
 * the training set, the model fits the data's shape and classes (spec_shapes)
 * and has at most TRAINER_MAX_PARAMS parameters and TRAINER_MAX_ACTIVATIONS
 * floats of activations. *params (may be NULL) gets its parameter count. */
int trainer_check_config(const struct train_config *cfg, const struct dataset *ds,
			 struct tr_err *err);
int trainer_check_model(const struct train_config *cfg, const struct dataset *ds,
			struct model_spec *spec, uint64_t *params, struct tr_err *err);

/* The parameters of cfg's model on images of shape `in` with `classes`
 * classes, or 0 when the model does not fit them. */
uint64_t trainer_count_params(const struct train_config *cfg, struct shape in, uint32_t classes);

/* The layers cfg describes for data of `classes` classes: its model SPEC, or
 * the MLP of its hidden widths (ending in `classes` outputs). */
int trainer_model_spec(const struct train_config *cfg, uint32_t classes, struct model_spec *spec,
		       struct tr_err *err);

/* The dataset's per-sample input: C x H x W (token arrays: their ids;
 * a text's windows: trainer_data_shape). */
struct shape trainer_input_shape(const struct dataset *ds);
/* A job of cfg's per-sample input on ds: token ids of its context, or
 * trainer_input_shape's. */
struct shape trainer_data_shape(const struct train_config *cfg, const struct dataset *ds);
/* The samples of ds's training file a job of cfg splits into training and
 * validation: images, sequences, or a text's windows (0: its text is too
 * short for the context and the validation windows). */
uint32_t trainer_split_samples(const struct train_config *cfg, const struct dataset *ds);
/* The same two from dataset_probe's description (a job recovered at
 * start-up, before its dataset is loaded). */
struct shape trainer_probe_shape(const struct train_config *cfg, const struct dataset_shape *sh);
uint32_t trainer_probe_samples(const struct train_config *cfg, const struct dataset_shape *sh);
/* The task a job of cfg on ds learns: the loss's, per-token on token data
 * with a class per position. */
enum loss_task trainer_task(const struct train_config *cfg, const struct dataset *ds);

/* A fresh job at epoch 0: checks cfg against the dataset (sizes), initialises
 * the model from cfg.seed and draws the first epoch's order. */
int trainer_new(struct trainer **out, const struct train_config *cfg, const struct dataset *ds,
		struct tr_err *err);
void trainer_free(struct trainer *t);

/* Run the job's shards across comm's ranks from now on (before a step;
 * comm outlives the trainer's use of it). -EINVAL when its ranks do not
 * divide the shards. */
int trainer_set_comm(struct trainer *t, const struct trainer_comm *comm, struct tr_err *err);

/* Train one batch. With shards S > 1 the batch is cut into S equal shards
 * (the last batch's trailing ones short or empty), each shard's gradient is
 * computed alone with the loss scaled by 1/batch, and the gradients are
 * added in shard order 0..S-1 (likewise the losses), whichever rank
 * computed them; then every rank takes the same optimizer step. Only while !trainer_epoch_done && !trainer_finished. */
int trainer_step(struct trainer *t);
bool trainer_epoch_done(const struct trainer *t);
/* True after the last epoch, or when early stopping ended the job. */
bool trainer_finished(const struct trainer *t);

/* After the last batch of an epoch: evaluate on the validation set, append the
 * epoch's history row (copied to *row when not NULL), reset the sums, count
 * the epoch, and draw the next epoch's order. */
int trainer_end_epoch(struct trainer *t, struct history_row *row);

/* Loss and accuracy of the current model on the validation or test set. */
int trainer_evaluate(struct trainer *t, enum eval_split split, struct metrics *out);
/* The same, also giving the per-class counts (*sums, may be NULL). */
int trainer_evaluate_sums(struct trainer *t, enum eval_split split, struct metrics *out,
			  struct metric_sums *sums);

/* The metrics of running sums over `samples` samples of `width` outputs for
 * the task. */
void metric_sums_finish(const struct metric_sums *s, enum loss_task task, uint32_t width,
			uint64_t samples, struct metrics *out);

/* Train up to `epochs` in all from here (a resume with --epochs): at least
 * the epochs completed (more when the position is inside an epoch); the
 * history grows to hold them. -EINVAL naming epochs, -ENOMEM. */
int trainer_set_epochs(struct trainer *t, uint32_t epochs, struct tr_err *err);
/* Train on past an early stop (resume --epochs of a job that stopped early):
 * early stopping counts on from its state. */
void trainer_go_on(struct trainer *t);
/* Continue with learning rate lr from here (start --from with another lr):
 * the constant rate of a job without lr_scheduler; refused (-EINVAL, key
 * "lr") under a schedule, whose rate is its state's. */
int trainer_set_lr(struct trainer *t, double lr, struct tr_err *err);

/* Restart the optimizer from scratch (weights-only restore), noting it in the
 * next history row. */
void trainer_reset_optimizer(struct trainer *t, const char *note);

/* SHA-256 of the model's tensors (parameters and buffers, little-endian, in
 * state_dict order; for a model without buffers, of the parameters). */
void trainer_params_hash(const struct trainer *t, char hex[65]);

/* Samples per epoch, and samples trained so far in this epoch. */
uint64_t trainer_epoch_samples(const struct trainer *t);
uint64_t trainer_samples_done(const struct trainer *t);

/* The recent training throughput a run reports (traind's runs, each rank
 * 0): samples per second over windows of at least TRAINER_RATE_WINDOW
 * samples (a step counts its batch size), timed with clock_seconds. Timing
 * only: it changes nothing the trainer computes. */
#define TRAINER_RATE_WINDOW 4096
struct trainer_rate {
	double since;                    /* when the current window began */
	uint64_t samples;                /* trained in it */
	double per_second;               /* the last closed window's rate; 0 before the first */
};

void trainer_rate_start(struct trainer_rate *r);
/* After each trainer_step: the rate, updated when a window closes. */
double trainer_rate_step(struct trainer_rate *r, const struct trainer *t);

#endif
