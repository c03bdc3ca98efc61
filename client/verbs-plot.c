/*
 * verbs-plot.c - plot: the learning curves of one or more jobs.
 *
 * `plot JOB... [--metric loss|acc|lr|mae|rmse|ppl] [-o FILE.svg|FILE.png]`. Everything
 * about the command line is checked before connecting (the metric, the
 * file's extension, a JOB given twice, where the chart can go); then each
 * job's Status (for its name) and History, as `history` fetches them. One
 * color per job; loss and acc draw train (solid) and val (dashed), lr the
 * history's `lr` column. With -o the file is drawn by plot.c and written
 * atomically (fileio.h); without, on a terminal, a text chart in its
 * width; without -o and not on a terminal, a usage error asking for -o.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <jansson.h>

#include "traind/error.h"
#include "traind/fileio.h"
#include "msg.h"
#include "plot.h"
#include "render.h"
#include "reply.h"
#include "rpc.h"
#include "verbs.h"

#define TEXT_ROWS 12       /* the text chart's height in lines, at most */

struct metric {
	const char *name, *title, *ylabel;
	const char *key[2];       /* the history's columns: a series each */
	const char *kind[2];
};

static const struct metric metrics[] = {
	{ "loss", "loss", "loss", { "train_loss", "val_loss" }, { "train", "val" } },
	{ "acc", "accuracy", "accuracy", { "train_acc", "val_acc" }, { "train", "val" } },
	{ "lr", "learning rate", "learning rate", { "lr", NULL }, { "lr", NULL } },
	{ "mae", "validation MAE", "mean absolute error", { "val_mae", NULL }, { "val", NULL } },
	{ "rmse", "validation RMSE", "root mean squared error", { "val_rmse", NULL }, { "val", NULL } },
	{ "ppl", "validation perplexity", "perplexity", { "val_ppl", NULL }, { "val", NULL } },
};

/* The job's series of metric m from its History rows, appended to p. */
static int add_job(struct plot *p, const struct metric *m, long long id, const char *name,
		   json_t *rows, unsigned color)
{
	size_t n = json_array_size(rows);

	if (n == 0)
		return failf(RC_ERROR, "job %lld has no committed epoch to plot yet", id);
	for (int k = 0; k < 2 && m->key[k]; k++) {
		struct plot_series *s, *grown;
		size_t finite = 0;

		grown = realloc(p->series, (p->nseries + 1) * sizeof(*p->series));
		if (!grown)
			return failf(RC_ERROR, "out of memory");
		p->series = grown;
		s = &p->series[p->nseries];
		memset(s, 0, sizeof(*s));
		s->x = calloc(n, sizeof(double));
		s->y = calloc(n, sizeof(double));
		p->nseries++;   /* owned by p from here, freed by plot_clear */
		if (!s->x || !s->y)
			return failf(RC_ERROR, "out of memory");
		for (size_t i = 0; i < n; i++) {
			json_t *row = json_array_get(rows, i);
			long long epoch = 0;
			double v = NAN;

			if (!pint(row, "epoch", &epoch))
				return malformed("History", "epoch");
			if (!pnum(row, m->key[k], &v))
				v = NAN;
			s->x[i] = (double)epoch;
			s->y[i] = isfinite(v) ? v : NAN;
			finite += isfinite(v);
		}
		s->n = n;
		if (finite == 0) {
			if (strcmp(m->key[k], "lr") == 0)
				return failf(RC_ERROR, "job %lld has no learning-rate history", id);
			return failf(RC_ERROR, "job %lld has no %s in its history", id, m->key[k]);
		}
		s->job = id;
		s->color = color;
		s->dashed = k == 1;
		snprintf(s->kind, sizeof(s->kind), "%s", m->kind[k]);
		snprintf(s->id, sizeof(s->id), "job-%lld-%s", id, m->kind[k]);
		snprintf(s->label, sizeof(s->label), "job %lld (%.*s) %s", id, tr_utf8_cut(name, 100), name,
			 m->kind[k]);
	}
	return RC_OK;
}

/* Status and History of one job into p. */
static int fetch_job(struct cli *cli, struct plot *p, const struct metric *m, long long id,
		     unsigned color)
{
	json_t *st = NULL, *hist = NULL, *rows, *row;
	char *name = NULL;
	size_t i;
	int rc;

	rc = rpc(cli, "io.traind.Status", json_pack("{s:I}", "id", (json_int_t)id), &st);
	if (rc != RC_OK)
		return rc;
	rc = rpc(cli, "io.traind.History", json_pack("{s:I}", "id", (json_int_t)id), &hist);
	if (rc != RC_OK)
		goto out;
	rows = json_object_get(hist, "rows");
	if (!json_is_array(rows)) {
		rc = malformed("History", "rows");
		goto out;
	}
	json_array_foreach(rows, i, row) {
		if (!json_is_object(row)) {
			rc = malformed("History", "rows");
			goto out;
		}
	}
	name = clean_dup(pstr(json_object_get(st, "job"), "name"));
	if (!name) {
		rc = failf(RC_ERROR, "out of memory");
		goto out;
	}
	rc = add_job(p, m, id, name, rows, color);
out:
	free(name);
	json_decref(st);
	json_decref(hist);
	return rc;
}

/* Where the chart goes, checked before connecting. */
static int check_args(struct cli *cli, const struct metric **m, enum plot_format *fmt, bool *tty)
{
	*m = &metrics[0];
	if (cli->set[O_METRIC]) {
		*m = NULL;
		for (size_t i = 0; i < sizeof(metrics) / sizeof(metrics[0]); i++)
			if (strcmp(cli->val[O_METRIC], metrics[i].name) == 0)
				*m = &metrics[i];
		if (!*m)
			return failf(RC_USAGE, "--metric: expected loss, acc, lr, mae, rmse or ppl, got '%.*s'",
				     tr_utf8_cut(cli->val[O_METRIC], TR_QUOTE_MAX), cli->val[O_METRIC]);
	}
	for (size_t i = 0; i < cli->njobs; i++)
		for (size_t k = 0; k < i; k++)
			if (cli->jobs[i] == cli->jobs[k])
				return failf(RC_USAGE, "plot: job %lld is given twice", (long long)cli->jobs[i]);
	if (cli->set[O_OUTPUT]) {
		const char *f = cli->val[O_OUTPUT];

		if (!*f)
			return failf(RC_USAGE, "-o: empty file name");
		if (!plot_format_of(f, fmt))
			return failf(RC_USAGE, "-o: unknown extension in '%.*s' (expected FILE.svg or FILE.png)",
				     tr_utf8_cut(f, TR_QUOTE_MAX), f);
		return RC_OK;
	}
	*tty = isatty(STDOUT_FILENO);
	if (cli->json || !*tty)
		return failf(RC_USAGE, "plot: %s; give -o FILE.svg or -o FILE.png",
			     cli->json ? "--json needs a file to write" : "standard output is not a terminal");
	return RC_OK;
}

static int write_chart(struct cli *cli, const struct plot *p, const struct metric *m,
		       enum plot_format fmt)
{
	struct tr_err err = { 0 };
	char why[256];
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	rc = plot_render(p, fmt, &data, &len, why, sizeof(why));
	plot_release();   /* trainctl draws one chart per run */
	if (rc < 0)
		return failf(RC_ERROR, "plot: cannot draw the chart: %s", why);
	if (file_write_atomic(cli->val[O_OUTPUT], data, len, &err) < 0) {
		rc = failf(err.code == -EISDIR ? RC_USAGE : RC_ERROR, "%s%s", err.code == -EISDIR ? "-o: " : "",
			   err.msg);
		free(data);
		return rc;
	}
	free(data);
	if (cli->json) {
		json_t *jobs = json_array(), *doc;

		for (size_t i = 0; i < cli->njobs; i++)
			json_array_append_new(jobs, json_integer((json_int_t)cli->jobs[i]));
		doc = json_pack("{s:s,s:s,s:s,s:o,s:I,s:I,s:I}", "file", cli->val[O_OUTPUT], "format",
				fmt == PLOT_SVG ? "svg" : "png", "metric", m->name, "jobs", jobs, "width",
				(json_int_t)PLOT_WIDTH, "height", (json_int_t)PLOT_HEIGHT, "size", (json_int_t)len);
		if (!doc)   /* a file name that is not UTF-8 */
			doc = json_pack("{s:s,s:s,s:I}", "format", fmt == PLOT_SVG ? "svg" : "png", "metric",
					m->name, "size", (json_int_t)len);
		rc = doc ? render_json(stdout, doc) : failf(RC_ERROR, "out of memory");
		json_decref(doc);
	} else {
		char *f = clean_dup(cli->val[O_OUTPUT]);

		printf("wrote %s (%s, %s of %zu job%s, %dx%d)\n", f ? f : "?", fmt == PLOT_SVG ? "SVG" : "PNG",
		       m->title, cli->njobs, cli->njobs == 1 ? "" : "s", PLOT_WIDTH, PLOT_HEIGHT);
		free(f);
	}
	return RC_OK;
}

/* plot --sweep SWEEP: the sweep's trials' jobs after those given. */
static int sweep_jobs(struct cli *cli)
{
	json_t *reply = NULL, *trials, *t;
	int64_t id;
	int64_t *jobs;
	size_t i;
	int rc;

	if (!parse_int(cli->val[O_SWEEP], 1, INT64_MAX, &id))
		return failf(RC_USAGE, "--sweep: SWEEP must be a positive integer, got '%.*s'",
			     tr_utf8_cut(cli->val[O_SWEEP], TR_QUOTE_MAX), cli->val[O_SWEEP]);
	rc = rpc(cli, "io.traind.SweepStatus", json_pack("{s:I}", "id", (json_int_t)id), &reply);
	if (rc != RC_OK)
		return rc;
	trials = json_object_get(json_object_get(reply, "sweep"), "trials");
	if (!json_is_array(trials)) {
		json_decref(reply);
		return malformed("SweepStatus", "sweep.trials");
	}
	jobs = realloc(cli->jobs, (cli->njobs + json_array_size(trials) + 1) * sizeof(*jobs));
	if (!jobs) {
		json_decref(reply);
		return failf(RC_ERROR, "out of memory");
	}
	cli->jobs = jobs;
	json_array_foreach(trials, i, t) {
		json_int_t j = json_integer_value(json_object_get(t, "job"));
		bool given = false;

		for (size_t k = 0; k < cli->njobs; k++)
			given |= cli->jobs[k] == (int64_t)j;
		if (!given)
			cli->jobs[cli->njobs++] = (int64_t)j;
	}
	json_decref(reply);
	return RC_OK;
}

int cmd_plot(struct cli *cli)
{
	struct plot p;
	const struct metric *m = NULL;
	enum plot_format fmt = PLOT_SVG;
	bool tty = false;
	int rc;

	memset(&p, 0, sizeof(p));
	rc = check_args(cli, &m, &fmt, &tty);
	if (rc == RC_OK && cli->set[O_SWEEP])
		rc = sweep_jobs(cli);
	if (rc != RC_OK)
		return rc;
	snprintf(p.title, sizeof(p.title), "%s", m->title);
	snprintf(p.ylabel, sizeof(p.ylabel), "%s", m->ylabel);
	for (size_t i = 0; i < cli->njobs && rc == RC_OK; i++)
		rc = fetch_job(cli, &p, m, (long long)cli->jobs[i], (unsigned)i);
	if (rc == RC_OK && cli->set[O_OUTPUT]) {
		rc = write_chart(cli, &p, m, fmt);
	} else if (rc == RC_OK) {
		struct winsize ws;
		int cols = 80, rows = TEXT_ROWS;

		if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
			cols = ws.ws_col;
			if (ws.ws_row > 0 && (int)ws.ws_row - 4 - (int)p.nseries < rows)
				rows = (int)ws.ws_row - 4 - (int)p.nseries;
		}
		if (plot_text(stdout, &p, cols - 1, rows < 4 ? 4 : rows, true) < 0)
			rc = failf(RC_ERROR, "cannot write to stdout");
	}
	plot_clear(&p);
	return rc;
}
