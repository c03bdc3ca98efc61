/*
 * trainer-sched.c - the trainer's schedule, clipping, best epoch and early
 * stopping. See trainer-sched.h, include/traind/sched.h and clip.h.
 *
 * A job without lr_scheduler, clip_grad_norm and early_stop_patience steps
 * with exactly cfg.lr and never touches its gradients, as before they existed.
 */
#include "engine/train/trainer-sched.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "traind/clip.h"
#include "traind/sched.h"

void trainsched_init(struct trainer *t)
{
	struct sched_spec spec;
	struct sched_config sc = {
		.lr = t->cfg.lr,
		.beta1_or_momentum = t->cfg.optimizer == OPTIM_SGD ? t->cfg.momentum : t->cfg.beta1,
		.epochs = t->cfg.epochs,
		.steps_per_epoch = t->steps_per_epoch,
		.monitor = t->cfg.monitor,
		.patience = t->cfg.early_stop_patience,
		.min_delta = t->cfg.early_stop_min_delta,
		.portable = t->cfg.kernels == KERNELS_PORTABLE,
	};

	/* Checked by config_validate (trainer_check_config) already. */
	if (sched_parse(&spec, t->cfg.lr_scheduler, t->cfg.epochs, NULL) < 0)
		memset(&spec, 0, sizeof(spec));
	sched_init(&t->sched, &spec, &sc);
}

void trainsched_begin_update(struct trainer *t)
{
	if (t->cfg.clip_grad_norm > 0) {
		double norm = clip_grad_norm_by(t->cfg.kernels, t->team, t->model.grads,
						t->model.nparams, t->cfg.clip_grad_norm, NULL);

		t->sched.grad_norm_sum += norm;
		t->sched.grad_norm_count++;
	}
	if (sched_cycles_momentum(&t->sched.spec))
		optim_set_momentum(&t->opt, t->sched.momentum);
	optim_begin_step(&t->opt, t->sched.lr);
}

void trainsched_end_update(struct trainer *t)
{
	sched_after_batch(&t->sched);
}

void trainsched_end_epoch(struct trainer *t, struct history_row *r)
{
	struct sched *s = &t->sched;

	r->lr = s->epoch_lr;
	r->grad_norm = s->grad_norm_count ? s->grad_norm_sum / (double)s->grad_norm_count : NAN;
	sched_after_epoch(s, r->epoch, r->val_loss, r->val_acc, r->val_macro_acc, r->val_mae, r->val_rmse);
	if (s->note[0]) {
		size_t used = strlen(r->note);

		snprintf(r->note + used, sizeof(r->note) - used, "%s%s", used ? "; " : "", s->note);
	}
	s->epoch_lr = s->lr;
	s->grad_norm_sum = 0;
	s->grad_norm_count = 0;
}

void trainsched_replay_best(struct trainer *t)
{
	struct sched *s = &t->sched;

	for (uint32_t i = 0; i < t->nhistory; i++) {
		const struct history_row *r = &t->history[i];
		double v = sched_monitored(s->cfg.monitor, r->val_loss, r->val_acc, r->val_macro_acc,
					   r->val_mae, r->val_rmse);

		if (!isnan(v) && (s->best_epoch == 0 || monitor_better(s->cfg.monitor, v, s->best_value))) {
			s->best_value = v;
			s->best_epoch = r->epoch;
		}
	}
}
