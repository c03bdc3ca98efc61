/*
 * metrics.c - the Prometheus exposition (see metrics.h). Replies are read
 * into JSON first (metrics_handle), then written by one pure function
 * (metrics_render) into a memory stream.
 */
#include <stdio.h>

#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

#define METRICS_TIMEOUT_MS (10 * 1000)

static const char *const states[] = { "queued", "running", "paused", "killed", "failed", "done" };

void metrics_label(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

/* A sample value as Prometheus reads it ("NaN", "+Inf"...). */
static void value(FILE *f, double v)
{
	if (isnan(v))
		fputs("NaN", f);
	else if (isinf(v))
		fputs(v > 0 ? "+Inf" : "-Inf", f);
	else {
		/* the shortest of %.15g and %.17g that reads back as v */
		char buf[32];

		snprintf(buf, sizeof(buf), "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, sizeof(buf), "%.17g", v);
		fputs(buf, f);
	}
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One per-job sample: name{job="ID",name="NAME"} value. */
static void job_sample(FILE *f, const char *metric, json_t *job, double v)
{
	fprintf(f, "%s{job=\"%lld\",name=\"", metric, (long long)json_integer_value(json_object_get(job, "id")));
	metrics_label(f, json_string_value(json_object_get(job, "name")));
	fputs("\"} ", f);
	value(f, v);
	fputc('\n', f);
}

/* The rows of job `job` in `histories`, or NULL. */
static json_t *rows_of(json_t *histories, json_t *job)
{
	char id[32];

	snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(job, "id")));
	return json_object_get(histories, id);
}

struct per_job {
	const char *metric, *help;
	int which;   /* what per_job_value reads */
};

enum { V_EPOCH, V_STEP, V_SPS, V_VAL_LOSS, V_VAL_ACC, V_BEST, V_VAL_MAE, V_VAL_RMSE, V_VAL_PPL };

/* The value of `which` for job; false when it has none (no sample). */
static bool per_job_value(json_t *job, json_t *rows, int which, double *v)
{
	json_t *last = json_array_size(rows) ? json_array_get(rows, json_array_size(rows) - 1) : NULL;
	json_t *x = NULL;
	size_t i;
	json_t *row;
	bool any = false;

	switch (which) {
	case V_EPOCH: x = json_object_get(job, "committed_epoch"); break;
	case V_STEP: x = json_object_get(job, "step"); break;
	case V_SPS: x = json_object_get(job, "samples_per_second"); break;
	case V_VAL_ACC: x = json_object_get(job, "val_acc"); break;
	case V_VAL_LOSS: x = last ? json_object_get(last, "val_loss") : NULL; break;
	/* a regression's; absent (no sample) for the other tasks */
	case V_VAL_MAE: x = last ? json_object_get(last, "val_mae") : NULL; break;
	case V_VAL_RMSE: x = last ? json_object_get(last, "val_rmse") : NULL; break;
	/* a language model's (per-token); absent for the other tasks */
	case V_VAL_PPL: x = last ? json_object_get(last, "val_ppl") : NULL; break;
	case V_BEST:
		json_array_foreach(rows, i, row) {
			json_t *l = json_object_get(row, "val_loss");

			if (json_is_number(l) && (!any || json_number_value(l) < *v)) {
				*v = json_number_value(l);
				any = true;
			}
		}
		return any;
	}
	if (!json_is_number(x))
		return false;
	*v = json_number_value(x);
	return true;
}

static void counters(FILE *f, json_t *c)
{
	static const struct {
		const char *key, *metric, *help;
	} totals[] = {
		{ "epochs_committed", "traind_epochs_committed_total", "Epoch checkpoints traind committed." },
		{ "jobs_failed", "traind_jobs_failed_total", "Jobs that ended failed." },
		{ "client_errors", "traind_client_errors_total", "Error replies traind sent to clients." },
	};
	json_t *h = json_object_get(c, "commit_seconds");
	json_t *buckets = json_object_get(h, "buckets"), *counts = json_object_get(h, "counts");

	for (size_t i = 0; i < sizeof(totals) / sizeof(totals[0]); i++) {
		json_t *v = json_object_get(c, totals[i].key);

		if (!json_is_integer(v))
			continue;
		head(f, totals[i].metric, "counter", totals[i].help);
		fprintf(f, "%s %lld\n", totals[i].metric, (long long)json_integer_value(v));
	}
	if (json_is_array(buckets) && json_is_array(counts) &&
	    json_array_size(buckets) == json_array_size(counts) &&
	    json_is_number(json_object_get(h, "sum")) && json_is_integer(json_object_get(h, "count"))) {
		head(f, "traind_checkpoint_commit_seconds", "histogram",
		     "Time to commit a checkpoint (write, fsync, database transaction).");
		for (size_t i = 0; i < json_array_size(buckets); i++) {
			fputs("traind_checkpoint_commit_seconds_bucket{le=\"", f);
			value(f, json_number_value(json_array_get(buckets, i)));
			fprintf(f, "\"} %lld\n", (long long)json_integer_value(json_array_get(counts, i)));
		}
		fprintf(f, "traind_checkpoint_commit_seconds_bucket{le=\"+Inf\"} %lld\n",
			(long long)json_integer_value(json_object_get(h, "count")));
		fputs("traind_checkpoint_commit_seconds_sum ", f);
		value(f, json_number_value(json_object_get(h, "sum")));
		fprintf(f, "\ntraind_checkpoint_commit_seconds_count %lld\n",
			(long long)json_integer_value(json_object_get(h, "count")));
	}
}

/* Per sweep (SweepList's): its trials by state and its best metric. */
static void sweeps(FILE *f, json_t *list)
{
	size_t i;
	json_t *sw;

	head(f, "traind_sweep_trials", "gauge", "A sweep's trials by state.");
	json_array_foreach(list, i, sw) {
		json_t *by = json_object_get(sw, "trials_by_state");

		for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++) {
			fprintf(f, "traind_sweep_trials{sweep=\"%lld\",name=\"",
				(long long)json_integer_value(json_object_get(sw, "id")));
			metrics_label(f, json_string_value(json_object_get(sw, "name")));
			fprintf(f, "\",state=\"%s\"} %lld\n", states[s],
				(long long)json_integer_value(json_object_get(by, states[s])));
		}
	}
	head(f, "traind_sweep_best_metric", "gauge", "The metric of a sweep's best trial so far.");
	json_array_foreach(list, i, sw) {
		json_t *best = json_object_get(sw, "best");

		if (!json_is_number(json_object_get(best, "metric")))
			continue;
		fprintf(f, "traind_sweep_best_metric{sweep=\"%lld\",name=\"",
			(long long)json_integer_value(json_object_get(sw, "id")));
		metrics_label(f, json_string_value(json_object_get(sw, "name")));
		fputs("\",metric=\"", f);
		metrics_label(f, json_string_value(json_object_get(sw, "metric")));
		fputs("\"} ", f);
		value(f, json_number_value(json_object_get(best, "metric")));
		fputc('\n', f);
	}
}

int metrics_render(json_t *jobs, json_t *histories, json_t *ctrs, char **text, size_t *len)
{
	return metrics_render_sweeps(jobs, histories, ctrs, NULL, text, len);
}

int metrics_render_sweeps(json_t *jobs, json_t *histories, json_t *ctrs, json_t *sweep_list, char **text,
			  size_t *len)
{
	static const struct per_job per[] = {
		{ "traind_job_epoch", "The job's last committed epoch.", V_EPOCH },
		{ "traind_job_step", "Batches into the job's current epoch.", V_STEP },
		{ "traind_job_samples_per_second", "The job's training speed.", V_SPS },
		{ "traind_job_val_loss", "The job's latest validation loss.", V_VAL_LOSS },
		{ "traind_job_val_acc", "The job's latest validation accuracy.", V_VAL_ACC },
		{ "traind_job_best_val_loss", "The lowest validation loss in the job's history.", V_BEST },
		{ "traind_job_val_mae", "The job's latest validation mean absolute error (regression).", V_VAL_MAE },
		{ "traind_job_val_rmse", "The job's latest validation root mean squared error (regression).",
		  V_VAL_RMSE },
		{ "traind_job_val_ppl", "The job's latest validation perplexity (a language model).", V_VAL_PPL },
	};
	FILE *f;
	size_t i;
	json_t *job;

	*text = NULL;
	*len = 0;
	f = open_memstream(text, len);
	if (!f)
		return -ENOMEM;
	head(f, "traind_up", "gauge", "Whether traind answered traind-web.");
	fprintf(f, "traind_up %d\n", json_is_array(jobs) ? 1 : 0);
	if (json_is_array(jobs)) {
		head(f, "traind_jobs", "gauge", "Jobs by state.");
		for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++) {
			long n = 0;

			json_array_foreach(jobs, i, job) {
				const char *st = json_string_value(json_object_get(job, "state"));

				n += st && strcmp(st, states[s]) == 0;
			}
			fprintf(f, "traind_jobs{state=\"%s\"} %ld\n", states[s], n);
		}
		for (size_t p = 0; p < sizeof(per) / sizeof(per[0]); p++) {
			head(f, per[p].metric, "gauge", per[p].help);
			json_array_foreach(jobs, i, job) {
				double v = 0;

				if (per_job_value(job, rows_of(histories, job), per[p].which, &v))
					job_sample(f, per[p].metric, job, v);
			}
		}
	}
	if (ctrs)
		counters(f, ctrs);
	if (json_is_array(sweep_list))
		sweeps(f, sweep_list);
	if (fclose(f) != 0) {
		free(*text);
		*text = NULL;
		return -ENOMEM;
	}
	return 0;
}

void metrics_handle(const char *socket, struct web_resp *out)
{
	struct web_resp err = { 0 };
	json_t *list = NULL, *histories = json_object(), *ctrs = NULL, *jobs, *sw = NULL;
	char *text = NULL;
	size_t len = 0, i;
	json_t *job;

	if (web_call(socket, "io.traind.List", NULL, METRICS_TIMEOUT_MS, &list, &err) == 0) {
		jobs = json_object_get(list, "jobs");
		json_array_foreach(jobs, i, job) {
			json_t *h = NULL;
			char id[32];

			snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(job, "id")));
			web_resp_clear(&err);
			if (web_call(socket, "io.traind.History",
				     json_pack("{s:O}", "id", json_object_get(job, "id")),
				     METRICS_TIMEOUT_MS, &h, &err) == 0)
				json_object_set(histories, id, json_object_get(h, "rows"));
			json_decref(h);
		}
		/* Counters is newer than some traind: MethodNotFound (501 here)
		 * means no counters, not an error. */
		web_resp_clear(&err);
		if (web_call(socket, "io.traind.Counters", NULL, METRICS_TIMEOUT_MS, &ctrs, &err) < 0)
			ctrs = NULL;
		/* SweepList too (MethodNotFound from an older traind: no sweeps) */
		web_resp_clear(&err);
		if (web_call(socket, "io.traind.SweepList", NULL, METRICS_TIMEOUT_MS, &sw, &err) < 0)
			sw = NULL;
	}
	web_resp_clear(&err);
	web_resp_clear(out);
	if (metrics_render_sweeps(list ? json_object_get(list, "jobs") : NULL, histories, ctrs,
				  sw ? json_object_get(sw, "sweeps") : NULL, &text, &len) < 0) {
		web_resp_error(out, 500, "traind-web.Internal", "out of memory");
	} else {
		out->status = 200;
		out->type = "text/plain; version=0.0.4; charset=utf-8";
		out->body = text;
		out->len = len;
	}
	json_decref(list);
	json_decref(histories);
	json_decref(ctrs);
	json_decref(sw);
}
