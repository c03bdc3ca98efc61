/*
 * sched.h - what a job does between optimizer steps besides the update: the
 * learning-rate schedule (PyTorch 1.13's torch.optim.lr_scheduler), the best
 * epoch by the monitored validation metric, early stopping (Lightning's
 * EarlyStopping) and the per-epoch mean of the gradient norm (clip.h computes
 * it).
 *
 * A schedule is written in the call syntax of model SPECs (spec.h):
 *   step(step_size=N[,gamma=0.1])          StepLR
 *   multistep(milestones=2:4[,gamma=0.1])  MultiStepLR
 *   exponential(gamma=G)                   ExponentialLR
 *   cosine(t_max=N[,eta_min=0])            CosineAnnealingLR
 *   linear([start_factor=1/3][,end_factor=1][,total_iters=5])   LinearLR
 *   onecycle(max_lr=L[,pct_start=0.3][,div_factor=25][,final_div_factor=1e4]
 *            [,anneal=cos|linear][,cycle_momentum=true][,base_momentum=0.85]
 *            [,max_momentum=0.95])         OneCycleLR over epochs x steps_per_epoch
 *   plateau([monitor=...][,factor=0.1][,patience=10][,threshold=1e-4]
 *           [,cooldown=0][,min_lr=0])      ReduceLROnPlateau (threshold_mode rel)
 *   A then B [then C]                      SequentialLR: B starts when A ends
 *                                          (A's total_iters or t_max)
 * The first argument may be given without its name (step(2), cosine(10)).
 * onecycle steps after every batch, plateau on the monitored validation
 * metric after every epoch, the others after every epoch's optimizer steps,
 * all as PyTorch's training loops call them. Every rate is computed in double
 * by the same expressions, in the same order, as PyTorch's Python code (which
 * computes in Python floats, i.e. double), so the sequences are equal bit for
 * bit; the optimizer rounds what it needs to float32 (optim.h).
 *
 * The state (struct sched) is plain numbers: the checkpoint stores it whole
 * (sched_save / sched_load), so a resume continues exactly.
 *
 * Thread: plain data and pure functions; a struct sched belongs to its
 * trainer's owner thread.
 */
#ifndef TRAIND_SCHED_H
#define TRAIND_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "traind/error.h"

#define SCHED_TEXT_MAX 256   /* an lr_scheduler SPEC's text, with NUL */
#define SCHED_MAX_PARTS 4    /* schedules joined by 'then' */
#define SCHED_MAX_MILESTONES 16
#define SCHED_NOTE_MAX 192

enum sched_kind {
	SCHED_NONE,
	SCHED_STEP,
	SCHED_MULTISTEP,
	SCHED_EXPONENTIAL,
	SCHED_COSINE,
	SCHED_LINEAR,
	SCHED_ONECYCLE,
	SCHED_PLATEAU,
};

/* What "best" means for a job: the monitor key. */
enum monitor_kind {
	MONITOR_VAL_LOSS,       /* lower is better */
	MONITOR_VAL_ACC,        /* higher is better */
	MONITOR_VAL_MACRO_ACC,  /* higher is better */
	MONITOR_VAL_MAE,        /* lower is better (regression) */
	MONITOR_VAL_RMSE,       /* lower is better (regression) */
};

struct sched_part {
	enum sched_kind kind;
	uint32_t step_size;                 /* step */
	double gamma;                       /* step, multistep (0.1), exponential */
	uint32_t n_milestones;              /* multistep */
	uint32_t milestones[SCHED_MAX_MILESTONES]; /* non-decreasing */
	uint32_t t_max;                     /* cosine */
	double eta_min;                     /* cosine (0) */
	double start_factor, end_factor;    /* linear (1/3, 1) */
	uint32_t total_iters;               /* linear (5) */
	double max_lr, pct_start, div_factor, final_div_factor; /* onecycle */
	bool anneal_linear;                 /* onecycle: anneal=linear (else cos) */
	bool cycle_momentum;                /* onecycle (true) */
	double base_momentum, max_momentum; /* onecycle (0.85, 0.95) */
	bool has_monitor;                   /* plateau: monitor given */
	enum monitor_kind monitor;          /* plateau (the job's monitor) */
	double factor, threshold, min_lr;   /* plateau (0.1, 1e-4, 0) */
	uint32_t patience, cooldown;        /* plateau (10, 0) */
};

struct sched_spec {
	uint32_t n;                         /* 0: no schedule */
	struct sched_part parts[SCHED_MAX_PARTS];
	uint32_t milestones[SCHED_MAX_PARTS]; /* SequentialLR's: part i+1 starts at milestones[i] */
};

/* The configuration the state machine needs (from the job's config). */
struct sched_config {
	double lr;                          /* the optimizer's lr (base_lr) */
	double beta1_or_momentum;           /* Adam beta1 / SGD momentum, as configured */
	uint32_t epochs, steps_per_epoch;
	enum monitor_kind monitor;
	uint32_t patience;                  /* early stopping; 0 = off */
	double min_delta;                   /* early stopping (0) */
	bool portable;                      /* kernels portable: cos and integer powers by
					       pk_cos64 and pk_pown64 instead of libm's */
};

/* The whole state; every field goes into the checkpoint. */
struct sched {
	struct sched_spec spec;
	struct sched_config cfg;
	double lr;                          /* param_group['lr'] now: the next step's rate */
	double momentum;                    /* onecycle with cycle_momentum: the next step's beta1/momentum */
	int64_t last_epoch[SCHED_MAX_PARTS]; /* each scheduler's last_epoch */
	int64_t seq_epoch;                  /* SequentialLR's last_epoch */
	double plateau_best;                /* ReduceLROnPlateau.best */
	int64_t plateau_bad, plateau_cooldown; /* num_bad_epochs, cooldown_counter */
	double best_value;                  /* the monitored metric's best so far */
	uint32_t best_epoch;                /* its epoch (1-based); 0: none yet */
	double es_best;                     /* EarlyStopping.best_score */
	uint32_t es_best_epoch;             /* its epoch; 0: none */
	uint32_t es_wait;                   /* EarlyStopping.wait_count */
	bool stopped;                       /* early stopping ended the job */
	double epoch_lr;                    /* the rate the current epoch began with */
	double grad_norm_sum;               /* pre-clip norms of this epoch's steps */
	uint64_t grad_norm_count;           /* steps summed */
	char note[SCHED_NOTE_MAX];          /* "stopped early after epoch 7: ...", or "" */
};

/* Parse an lr_scheduler SPEC ("" is no schedule). Errors name "lr_scheduler"
 * and the part. epochs (0: unknown) refuses milestones at or past it. */
int sched_parse(struct sched_spec *out, const char *text, uint32_t epochs, struct tr_err *err);
/* True when spec has a onecycle part. */
bool sched_is_per_batch(const struct sched_spec *spec);
/* True when a onecycle part cycles the momentum. */
bool sched_cycles_momentum(const struct sched_spec *spec);

/* "val_loss", "val_acc", "val_macro_acc", "val_mae", "val_rmse"; monitor_parse
 * returns -EINVAL for anything else. */
const char *monitor_name(enum monitor_kind m);
int monitor_parse(const char *s, enum monitor_kind *out);
/* True when a is better than b for m (strictly). */
bool monitor_better(enum monitor_kind m, double a, double b);

/* A fresh state as the schedulers' constructors leave it (epoch 0, step 0). */
void sched_init(struct sched *s, const struct sched_spec *spec, const struct sched_config *cfg);

/* After each training batch's optimizer step (OneCycleLR.step). */
void sched_after_batch(struct sched *s);
/* After each epoch's validation, with its metrics (1-based epoch): the
 * epoch schedulers' step, the best epoch, early stopping. Returns true when
 * the epoch is the new best. */
bool sched_after_epoch(struct sched *s, uint32_t epoch, double val_loss, double val_acc,
		       double val_macro_acc, double val_mae, double val_rmse);
/* The monitored value among the five (NaN: the task has no such metric). */
double sched_monitored(enum monitor_kind m, double val_loss, double val_acc, double val_macro_acc,
		       double val_mae, double val_rmse);
/* True for the metrics of a classification (val_acc, val_macro_acc: also
 * multi-label's val_acc), of a regression (val_mae, val_rmse); val_loss is
 * every task's. */
bool monitor_is_accuracy(enum monitor_kind m);
bool monitor_is_regression(enum monitor_kind m);

/* The state as numbers for the checkpoint: SCHED_NVALUES doubles and
 * SCHED_NCOUNTS int64s; sched_load checks them (ranges, consistency with
 * epoch) and fails naming what is wrong. */
#define SCHED_NVALUES 8
#define SCHED_NCOUNTS 12
void sched_save(const struct sched *s, double *values, int64_t *counts);
int sched_load(struct sched *s, const double *values, const int64_t *counts, uint32_t epoch,
	       struct tr_err *err);

#endif
