/*
 * trainer-sched.h - the trainer's hooks into sched.h and clip.h (engine-internal):
 * kept out of trainer.c's own functions so the loop there stays one page.
 *
 * Thread: the trainer's owner thread.
 */
#ifndef TRAIND_TRAINER_SCHED_H
#define TRAIND_TRAINER_SCHED_H

#include "traind/trainer.h"

/* The schedule's state for a new trainer at epoch 0 (t->cfg, t->steps_per_epoch set). */
void trainsched_init(struct trainer *t);
/* After backward, before the update: clip the gradients (clip_grad_norm),
 * and begin the optimizer's step at the scheduled rate (and momentum). */
void trainsched_begin_update(struct trainer *t);
/* After the update: the per-batch schedule's step. */
void trainsched_end_update(struct trainer *t);
/* An epoch's row is complete but not yet stored: its lr and grad_norm, then
 * the epoch schedulers, the best epoch and early stopping (whose note joins
 * the row's). */
void trainsched_end_epoch(struct trainer *t, struct history_row *r);
/* A checkpoint of a format before schedules: the best epoch from the history. */
void trainsched_replay_best(struct trainer *t);

#endif
