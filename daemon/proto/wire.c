/*
 * wire.c - the protocol's JSON shapes. See daemon/proto/wire.h.
 */
#include "daemon/proto/wire.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "traind/config.h"
#include "traind/spec.h"
#include "traind/trainer.h"

static double eta_seconds(struct job *j, const struct run_progress *p, bool *known)
{
	double remaining;

	*known = false;
	if (j->state != JOB_RUNNING || p->samples_per_second <= 0 || p->steps_per_epoch == 0)
		return 0;
	remaining = ((double)(j->cfg.epochs - p->epoch) * p->steps_per_epoch - p->step) *
		    j->cfg.batch_size;
	*known = true;
	return remaining > 0 ? remaining / p->samples_per_second : 0;
}

json_t *checkpoint_json(const struct store_ckpt_desc *c)
{
	json_t *o = json_pack("{s:I,s:I,s:s,s:I,s:s,s:I}", "epoch", (json_int_t)c->epoch, "step",
			      (json_int_t)c->step, "kind", c->is_epoch ? "epoch" : "position", "size",
			      (json_int_t)c->size, "checksum", c->checksum, "created",
			      (json_int_t)c->created);

	if (o && c->is_epoch && isfinite(c->val_loss))
		json_object_set_new(o, "val_loss", json_real(c->val_loss));
	if (o)
		json_object_set_new(o, "best", json_boolean(c->best));
	return o;
}

json_t *job_to_json(struct job *j)
{
	struct run_progress p;
	json_t *o;
	bool eta_known;
	double eta;
	uint32_t epoch, step;

	job_progress_get(j, &p);
	/* A running job shows its live position; a stopped one its durable one. */
	if (j->state == JOB_RUNNING && (p.active || j->worker_alive)) {
		epoch = p.epoch;
		step = p.step;
	} else {
		epoch = j->newest.valid ? j->newest.epoch : j->committed_epoch;
		step = j->newest.valid ? j->newest.step : 0;
	}
	eta = eta_seconds(j, &p, &eta_known);
	o = json_pack("{s:I,s:s,s:s,s:I,s:I,s:I,s:I,s:f,s:I,s:o,s:I,s:I,s:I}", "id", (json_int_t)j->id,
		      "name", j->name, "state", job_state_name(j->state), "epoch", (json_int_t)epoch,
		      "epochs", (json_int_t)j->cfg.epochs, "step", (json_int_t)step, "steps_per_epoch",
		      (json_int_t)p.steps_per_epoch, "samples_per_second",
		      j->state == JOB_RUNNING ? p.samples_per_second : 0.0, "keep", (json_int_t)j->keep,
		      "config", config_to_json(&j->cfg), "created", (json_int_t)j->created, "updated",
		      (json_int_t)j->updated, "committed_epoch", (json_int_t)j->committed_epoch);
	if (!o)
		return json_object();
	if (eta_known)
		json_object_set_new(o, "eta_seconds", json_real(eta));
	if (j->has_val_acc && isfinite(j->last_val_acc))
		json_object_set_new(o, "val_acc", json_real(j->last_val_acc));
	if (j->newest.valid)
		json_object_set_new(o, "checkpoint", checkpoint_json(&j->newest));
	if (!j->model_text && j->classes) {
		/* Parsed once per job, not at every Status and List, once its
		 * dataset's classes (which size mlp's last layer) are known. */
		struct model_spec spec;
		char text[CFG_MODEL_MAX + 64];

		if (trainer_model_spec(&j->cfg, j->classes, &spec, NULL) == 0)
			spec_text(&spec, text, sizeof(text));
		else
			snprintf(text, sizeof(text), "%s", j->cfg.model);
		j->model_text = strdup(text);   /* NULL on ENOMEM: tried again next time */
	}
	if (j->model_text)
		json_object_set_new(o, "model", json_string(j->model_text));
	else if (j->cfg.model[0])
		json_object_set_new(o, "model", json_string(j->cfg.model));
	if (j->params)
		json_object_set_new(o, "params", json_integer((json_int_t)j->params));
	if (j->numerics)
		json_object_set_new(o, "numerics", json_string(j->numerics));
	json_object_set_new(o, "monitor", json_string(monitor_name(j->cfg.monitor)));
	if (p.has_lr)
		json_object_set_new(o, "lr", json_real(p.lr));
	if (j->best_epoch) {
		json_object_set_new(o, "best_epoch", json_integer(j->best_epoch));
		json_object_set_new(o, "best_value", json_real(j->best_value));
	}
	if (j->stopped_early)
		json_object_set_new(o, "stopped_early", json_string(j->stopped_early));
	if (j->dataset_digest[0])
		json_object_set_new(o, "dataset_digest", json_string(j->dataset_digest));
	if (j->origin)
		json_object_set_new(o, "origin", json_string(j->origin));
	if (j->state == JOB_FAILED && j->state_error)
		json_object_set_new(o, "error", json_string(j->state_error));
	else if (j->commit_failed && j->error)
		json_object_set_new(o, "error", json_string(j->error));
	if (job_kill_after(j) >= 1 && (j->state == JOB_RUNNING || j->state == JOB_QUEUED))
		json_object_set_new(o, "kill_after", json_integer(job_kill_after(j)));
	if (j->started)
		json_object_set_new(o, "started", json_integer((json_int_t)j->started));
	/* A job that stopped by itself or was stopped for good: when. */
	if (j->state == JOB_DONE || j->state == JOB_FAILED || j->state == JOB_KILLED)
		json_object_set_new(o, "finished", json_integer((json_int_t)j->updated));
	if (j->restarts)
		json_object_set_new(o, "restarts", json_integer(j->restarts));
	if (j->last_failure)
		json_object_set_new(o, "last_failure", json_string(j->last_failure));
	return o;
}

json_t *watch_json(struct job *j, const struct run_progress *p)
{
	bool eta_known;
	double eta = eta_seconds(j, p, &eta_known);
	json_t *o = json_pack("{s:I,s:s,s:I,s:I,s:I,s:I,s:f}", "id", (json_int_t)j->id, "state",
			      job_state_name(j->state), "epoch", (json_int_t)p->epoch, "epochs",
			      (json_int_t)j->cfg.epochs, "step", (json_int_t)p->step, "steps_per_epoch",
			      (json_int_t)p->steps_per_epoch, "samples_per_second",
			      j->state == JOB_RUNNING ? p->samples_per_second : 0.0);

	if (o)
		json_object_set_new(o, "committed_epoch", json_integer(j->committed_epoch));
	if (o && p->has_loss)
		json_object_set_new(o, "loss", json_real(p->loss));
	if (o && eta_known)
		json_object_set_new(o, "eta_seconds", json_real(eta));
	return o;
}

/* A number, or null for NaN (a metric the job's task does not have). */
json_t *real_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

json_t *history_row_json(const struct history_row *r)
{
	json_t *o = json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:f,s:s}", "epoch", (json_int_t)r->epoch,
			      "train_loss", real_or_null(r->train_loss), "train_acc", real_or_null(r->train_acc),
			      "train_macro_acc", real_or_null(r->train_macro_acc), "val_loss",
			      real_or_null(r->val_loss), "val_acc", real_or_null(r->val_acc), "val_macro_acc",
			      real_or_null(r->val_macro_acc), "seconds", r->seconds, "note", r->note);

	/* lr: null for rows stored before schedules (their rate was the
	 * config's lr); grad_norm: null unless the job clips; val_mae and
	 * val_rmse: a regression's only. */
	if (o && !isnan(r->lr))
		json_object_set_new(o, "lr", json_real(r->lr));
	if (o && !isnan(r->grad_norm))
		json_object_set_new(o, "grad_norm", json_real(r->grad_norm));
	if (o && !isnan(r->val_mae))
		json_object_set_new(o, "val_mae", json_real(r->val_mae));
	if (o && !isnan(r->val_rmse))
		json_object_set_new(o, "val_rmse", json_real(r->val_rmse));
	/* val_ppl: a per-token job's (a language model's) only */
	if (o && !isnan(r->val_ppl))
		json_object_set_new(o, "val_ppl", real_or_null(r->val_ppl));
	return o;
}

json_t *steps_json(uint32_t steps_per_epoch, const struct store_step *pts, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_pack("{s:I,s:I,s:f}", "epoch", (json_int_t)pts[i].epoch, "step",
						       (json_int_t)pts[i].step, "loss", pts[i].loss))) {
			json_decref(a);
			a = NULL;
		}
	return a ? json_pack("{s:I,s:o}", "steps_per_epoch", (json_int_t)steps_per_epoch, "points", a) : NULL;
}

json_t *job_id_state_json(int64_t id, enum job_state state)
{
	return json_pack("{s:I,s:s}", "id", (json_int_t)id, "state", job_state_name(state));
}

json_t *dataset_json(const char *name, const struct dataset *ds, const char *digest, uint64_t size,
		     const char *error)
{
	json_t *o = json_pack("{s:s,s:[]}", "name", name, "jobs");

	if (!o)
		return NULL;
	if (digest) {
		json_object_set_new(o, "digest", json_string(digest));
		json_object_set_new(o, "size", json_integer((json_int_t)size));
	}
	if (!ds) {
		json_object_set_new(o, "error", json_string(error ? error : "cannot be loaded"));
		return o;
	}
	json_object_set_new(o, "format", json_string(ds->format));
	json_object_set_new(o, "train", json_integer(ds->train.count));
	json_object_set_new(o, "test", json_integer(ds->test.count));
	json_object_set_new(o, "shape", json_pack("[i,i,i]", (int)ds->channels, (int)ds->height, (int)ds->width));
	json_object_set_new(o, "classes", json_integer(ds->classes));
	/* "classes", or float targets ("values", "binary": all 0/1) with their
	 * count, or "tokens": a class (a token) per position */
	json_object_set_new(o, "targets", json_string(ds->target == DS_TARGET_CLASS ? "classes"
						      : ds->target == DS_TARGET_TOKENS ? "tokens"
						      : ds->targets_binary ? "binary" : "values"));
	if (ds->tokens) {
		json_object_set_new(o, "vocab", json_integer(ds->vocab));
		if (ds->seq_len)
			json_object_set_new(o, "seq_len", json_integer(ds->seq_len));
	}
	if (ds->text) {
		json_object_set_new(o, "vocab_kind", json_string(ds->vocab_kind == DS_VOCAB_BYTE ? "byte" : "char"));
		json_object_set_new(o, "train_tokens", json_integer((json_int_t)ds->train.ntokens));
		json_object_set_new(o, "test_tokens", json_integer((json_int_t)ds->test.ntokens));
	}
	if (ds->target == DS_TARGET_VALUES) {
		json_object_set_new(o, "target_width", json_integer(ds->target_width));
		if (ds->target_names) {
			json_t *names = json_array();

			for (uint32_t c = 0; names && c < ds->target_width; c++)
				json_array_append_new(names, json_string(ds->target_names[c]));
			if (names)
				json_object_set_new(o, "target_names", names);
		}
	}
	json_object_set_new(o, "dtype", json_string(ds->dtype == DS_F32 ? "float32" : "uint8"));
	if (ds->class_names) {
		json_t *names = json_array();

		for (uint32_t c = 0; names && c < ds->classes; c++)
			json_array_append_new(names, json_string(ds->class_names[c]));
		if (names)
			json_object_set_new(o, "class_names", names);
	}
	return o;
}
