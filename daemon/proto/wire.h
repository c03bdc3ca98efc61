/*
 * wire.h - the JSON shapes of traind's protocol (io.traind.varlink): the Job
 * object (Status, List), the Checkpoint object (Status, Checkpoints), a
 * Watch update, a history row (History), and the {id, state} answer of the
 * verbs. One place, so a key is spelled once and the interface description
 * is checked against one file.
 *
 * These build replies only; they read a job's committed state (the only
 * state the protocol shows, see jobs.h) and its published progress snapshot,
 * never a worker's live buffers. Each returns a new reference (NULL only
 * when out of memory, except job_to_json, which then returns an empty
 * object).
 *
 * Thread: loop thread only (they read the registry).
 */
#ifndef TRAIND_WIRE_H
#define TRAIND_WIRE_H

#include <jansson.h>

#include "traind/checkpoint.h"
#include "daemon/jobs/jobs.h"

/* The Job object. */
json_t *job_to_json(struct job *j);
/* The Checkpoint object. */
json_t *checkpoint_json(const struct store_ckpt_desc *c);
/* One Watch update of `j` at progress `p`. */
json_t *watch_json(struct job *j, const struct run_progress *p);
/* A history row, keyed as the history columns (epoch, train_loss, train_acc,
 * train_macro_acc, val_loss, val_acc, val_macro_acc, seconds, note). */
json_t *history_row_json(const struct history_row *r);
/* v as a JSON number, or null when it is not finite (a metric the job's
 * task does not have). */
json_t *real_or_null(double v);
/* One Dataset object (Datasets), without its "jobs" (the loop adds them):
 * what the loaded `ds` says (NULL: `error` says why it does not load), the
 * files' digest and total size (digest NULL: unknown). Any thread: it
 * reads only its arguments. The one place a dataset's fields are spelled:
 * a field struct dataset gains (format, channels, class names) goes here. */
json_t *dataset_json(const char *name, const struct dataset *ds, const char *digest, uint64_t size,
		     const char *error);
/* Steps' reply: {"steps_per_epoch", "points": [{"epoch", "step", "loss"}...]}.
 * Any thread: it reads only its arguments. */
json_t *steps_json(uint32_t steps_per_epoch, const struct store_step *pts, size_t n);
/* {"id": ..., "state": ...}: what Pause, Resume, Kill and Delete answer. */
json_t *job_id_state_json(int64_t id, enum job_state state);

#endif
