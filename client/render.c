/*
 * render.c - how trainctl prints the daemon's replies (see render.h).
 *
 * DESIGN. Text output is built from a small table type: cells are copied
 * and made one line as rows are added, column widths are measured in UTF-8
 * code points when the table is printed, and an empty last text cell leaves
 * no trailing blanks. Numbers are formatted here, once, as a person writes
 * them: four significant digits in tables and lines (0.9812, 0.0003,
 * 1.447), the shortest exact form in CSV and JSON (jsonfmt.h), "-" for any
 * field the reply lacks. Times are local ("2026-05-01 10:00"), durations
 * "1h02m03s".
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "traind/jsonfmt.h"
#include "msg.h"
#include "render.h"
#include "reply.h"

int render_json(FILE *out, json_t *doc)
{
	if (jsonfmt_dumpf(doc, out, JSON_INDENT(2) | JSON_ENCODE_ANY) < 0 || fputc('\n', out) == EOF)
		return failf(RC_ERROR, "cannot print the JSON reply");
	return RC_OK;
}

char *clean_dup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (d)
		one_line(d);
	return d;
}

/* ---- tables ----------------------------------------------------------- */

void table_add(struct table *t, char *const *row)
{
	if (t->nrows == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 16;
		char **nc = realloc(t->cells, ncap * t->ncols * sizeof(*nc));

		if (!nc) {
			t->oom = true;
			return;
		}
		t->cells = nc;
		t->cap = ncap;
	}
	for (size_t c = 0; c < t->ncols; c++) {
		char *d = clean_dup(row[c]);

		if (!d)
			t->oom = true;
		t->cells[t->nrows * t->ncols + c] = d;
	}
	t->nrows++;
}

/* Display width, counting UTF-8 code points. */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static void table_print_cell(FILE *out, const char *s, size_t width, bool left, bool last)
{
	size_t pad = width - text_width(s);

	if (!left)
		fprintf(out, "%*s", (int)pad, "");
	fputs(s, out);
	if (left && !last)
		fprintf(out, "%*s", (int)pad, "");
}

int table_print(struct table *t, FILE *out)
{
	size_t width[TABLE_MAX_COLS];

	if (t->oom)
		return failf(RC_ERROR, "out of memory");
	for (size_t c = 0; c < t->ncols; c++) {
		width[c] = text_width(t->head[c]);
		for (size_t r = 0; r < t->nrows; r++) {
			size_t w = text_width(t->cells[r * t->ncols + c]);

			if (w > width[c])
				width[c] = w;
		}
	}
	for (size_t r = 0; r <= t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = r == 0 ? t->head[c] : t->cells[(r - 1) * t->ncols + c];

			if (c + 1 == t->ncols && t->left[c] && !*s)
				break;  /* no trailing blanks before an empty last cell */
			if (c)
				fputs("  ", out);
			table_print_cell(out, s, width[c], t->left[c], c + 1 == t->ncols);
		}
		fputc('\n', out);
	}
	return RC_OK;
}

void table_free(struct table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
}

/* ---- fields ----------------------------------------------------------- */

/* "1h02m03s", "2m05s", "45s"; "-" when unknown. */
static void fmt_eta(json_t *o, const char *key, char *out, size_t n)
{
	double s;
	long long t;

	if (!pnum(o, key, &s) || !isfinite(s) || s < 0 || s > 1e12) {
		snprintf(out, n, "-");
		return;
	}
	t = llround(s);
	if (t >= 3600)
		snprintf(out, n, "%lldh%02lldm%02llds", t / 3600, t / 60 % 60, t % 60);
	else if (t >= 60)
		snprintf(out, n, "%lldm%02llds", t / 60, t % 60);
	else
		snprintf(out, n, "%llds", t);
}

static void fmt_int(json_t *o, const char *key, char *out, size_t n)
{
	long long v;

	if (pint(o, key, &v))
		snprintf(out, n, "%lld", v);
	else
		snprintf(out, n, "-");
}

static void fmt_pair(json_t *o, const char *a, const char *b, char *out, size_t n)
{
	char x[32], y[32];

	fmt_int(o, a, x, sizeof(x));
	fmt_int(o, b, y, sizeof(y));
	snprintf(out, n, "%s/%s", x, y);
}

/* Four significant digits, as people write a loss or a rate: "0.9812",
 * "1.447", "0.0003", "1e-05"; "-" when absent. */
static void fmt_g(json_t *o, const char *key, char *out, size_t n)
{
	double v;

	if (pnum(o, key, &v) && isfinite(v))
		snprintf(out, n, "%.4g", v);
	else
		snprintf(out, n, "-");
}

/* "1h02m03s", "2m05s", "45s", "0.34s" for a span of seconds. */
static void fmt_span(double s, char *out, size_t n)
{
	long long t;

	if (!isfinite(s) || s < 0 || s > 1e12) {
		snprintf(out, n, "-");
		return;
	}
	if (s < 10) {
		snprintf(out, n, "%.2gs", s);
		return;
	}
	t = llround(s);
	if (t >= 3600)
		snprintf(out, n, "%lldh%02lldm%02llds", t / 3600, t / 60 % 60, t % 60);
	else if (t >= 60)
		snprintf(out, n, "%lldm%02llds", t / 60, t % 60);
	else
		snprintf(out, n, "%llds", t);
}

/* A unix time in local time: "2026-05-01 10:00" (seconds: ":SS" too). */
static void fmt_time(long long when, bool seconds, char *out, size_t n)
{
	time_t tt = (time_t)when;
	struct tm tm;

	if (when <= 0 || !localtime_r(&tt, &tm) ||
	    !strftime(out, n, seconds ? "%Y-%m-%d %H:%M:%S" : "%Y-%m-%d %H:%M", &tm))
		snprintf(out, n, "-");
}

/* A job's wall time from its start: to its end when it has stopped, to now
 * while it runs or waits to; "-" before it has started. */
static bool job_span(json_t *job, double *out)
{
	const char *state = pstr(job, "state");
	long long started, end;

	if (!pint(job, "started", &started) || started <= 0 || !state)
		return false;
	if (!pint(job, "finished", &end) && (strcmp(state, "paused") != 0 || !pint(job, "updated", &end)))
		end = (long long)time(NULL);
	*out = end >= started ? (double)(end - started) : 0;
	return true;
}

/* The shortest decimal that reads back as exactly v. */
static void fmt_shortest(double v, char *out, size_t n)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, n, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

/* ---- jobs ------------------------------------------------------------- */

void job_table_init(struct table *t)
{
	static const char *head[] = { "id", "name", "state", "epoch", "step", "samples/s", "eta",
				      "val_acc", "started", "time" };

	memset(t, 0, sizeof(*t));
	t->ncols = sizeof(head) / sizeof(head[0]);
	for (size_t c = 0; c < t->ncols; c++) {
		t->head[c] = head[c];
		t->left[c] = c == 1 || c == 2 || c == 8;
	}
}

void job_table_add(struct table *t, json_t *job)
{
	char id[32], epoch[64], step[64], sps[32], eta[32], acc[32], started[32], took[32];
	const char *name = pstr(job, "name");
	const char *state = pstr(job, "state");
	json_t *cp = json_object_get(job, "checkpoint");
	bool running = state && strcmp(state, "running") == 0;
	const char *kind = pstr(cp, "kind");
	long long when;
	double v;
	char *row[10];

	fmt_int(job, "id", id, sizeof(id));
	fmt_pair(job, "epoch", "epochs", epoch, sizeof(epoch));
	/* the position in an epoch: a running job's, or where a paused one
	 * stopped (its checkpoint a position); between epochs, none */
	snprintf(step, sizeof(step), "-");
	if (running) {
		fmt_pair(job, "step", "steps_per_epoch", step, sizeof(step));
	} else if (kind && strcmp(kind, "position") == 0) {
		long long spe;
		char a[32];

		fmt_int(cp, "step", a, sizeof(a));
		if (pint(job, "steps_per_epoch", &spe) && spe > 0)
			snprintf(step, sizeof(step), "%s/%lld", a, spe);
		else
			snprintf(step, sizeof(step), "%s", a);
	}
	if (running && pnum(job, "samples_per_second", &v) && v > 0)
		snprintf(sps, sizeof(sps), "%.0f", v);
	else
		snprintf(sps, sizeof(sps), "-");
	if (running)
		fmt_eta(job, "eta_seconds", eta, sizeof(eta));
	else
		snprintf(eta, sizeof(eta), "-");
	fmt_g(job, "val_acc", acc, sizeof(acc));
	fmt_time(pint(job, "started", &when) ? when : 0, false, started, sizeof(started));
	if (job_span(job, &v))
		fmt_span(v, took, sizeof(took));
	else
		snprintf(took, sizeof(took), "-");
	row[0] = id;
	row[1] = (char *)(name && *name ? name : "-");
	row[2] = (char *)(state ? state : "?");
	row[3] = epoch;
	row[4] = step;
	row[5] = sps;
	row[6] = eta;
	row[7] = acc;
	row[8] = started;
	row[9] = took;
	table_add(t, row);
}

int render_jobs(FILE *out, json_t *jobs)
{
	struct table t;
	json_t *job;
	size_t i;
	int rc;

	job_table_init(&t);
	json_array_foreach(jobs, i, job)
		if (json_is_object(job))
			job_table_add(&t, job);
	rc = table_print(&t, out);
	table_free(&t);
	return rc;
}

/* "train_loss 0.3036  train_acc 0.9166  val_loss 0.1401  val_acc 0.959" of
 * a history row. */
static void row_metrics(json_t *row, char *out, size_t n)
{
	static const char *const keys[] = { "train_loss", "train_acc", "val_loss", "val_acc" };
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && used < n; i++) {
		char v[32];

		fmt_g(row, keys[i], v, sizeof(v));
		used += (size_t)snprintf(out + used, n - used, "%s%s %s", i ? "  " : "", keys[i], v);
	}
}

/* The seconds of every epoch of the history together (training and
 * validation, no time queued or paused). */
static double rows_seconds(json_t *rows)
{
	double sum = 0, v;
	json_t *row;
	size_t i;

	json_array_foreach(rows, i, row)
		if (pnum(row, "seconds", &v) && isfinite(v))
			sum += v;
	return sum;
}

int render_status(FILE *out, json_t *job, json_t *rows)
{
	const char *error;
	long long kill_after, when;
	json_t *cp = json_object_get(job, "checkpoint"), *last = json_array_get(rows, json_array_size(rows) - 1);
	struct table t;
	double span;
	int rc;

	job_table_init(&t);
	job_table_add(&t, job);
	rc = table_print(&t, out);
	table_free(&t);
	if (rc == RC_OK && pint(job, "started", &when) && when > 0) {
		char a[32], b[32], took[32], train[32];
		long long end;
		bool finished = pint(job, "finished", &end);

		fmt_time(when, true, a, sizeof(a));
		fmt_time(finished ? end : 0, true, b, sizeof(b));
		if (!job_span(job, &span))
			span = NAN;
		fmt_span(span, took, sizeof(took));
		fmt_span(rows_seconds(rows), train, sizeof(train));
		fprintf(out, "started: %s%s%s (%s%s, %s training)\n", a, finished ? ", finished " : "",
			finished ? b : "", took, finished ? "" : " so far", train);
	}
	if (rc == RC_OK && json_is_object(last)) {
		char m[256];
		long long e = 0, epochs = 0;

		pint(last, "epoch", &e);
		pint(job, "epochs", &epochs);
		row_metrics(last, m, sizeof(m));
		fprintf(out, "%s: epoch %lld/%lld: %s\n", pint(job, "finished", &when) ? "final" : "latest", e, epochs,
			m);
	}
	if (rc == RC_OK && json_is_object(cp)) {
		long long e = 0, st = 0;
		const char *kind = pstr(cp, "kind");

		pint(cp, "epoch", &e);
		pint(cp, "step", &st);
		if (kind && strcmp(kind, "position") == 0)
			fprintf(out, "checkpoint: epoch %lld step %lld (the exact position, from a pause or a shutdown)\n",
				e + 1, st);
		else
			fprintf(out, "checkpoint: epoch %lld\n", e);
	}
	error = pstr(job, "error");
	if (rc == RC_OK && error && *error) {
		char *e = clean_dup(error);

		fprintf(out, "error: %s\n", e ? e : "?");
		free(e);
	}
	if (rc == RC_OK && pint(job, "kill_after", &kill_after))
		fprintf(out, "pending: kill after epoch %lld\n", kill_after);
	if (rc == RC_OK && pstr(job, "model")) {
		char *m = clean_dup(pstr(job, "model"));
		long long np;

		if (pint(job, "params", &np))
			fprintf(out, "model: %s (%lld parameters)\n", m ? m : "?", np);
		else
			fprintf(out, "model: %s\n", m ? m : "?");
		free(m);
	}
	if (rc == RC_OK && pstr(job, "numerics")) {
		char *m = clean_dup(pstr(job, "numerics"));

		fprintf(out, "numerics: %s\n", m ? m : "?");
		free(m);
	}
	if (rc == RC_OK) {
		long long best_epoch;
		double v;
		char num[64];

		if (pnum(job, "lr", &v) && isfinite(v)) {
			snprintf(num, sizeof(num), "%.4g", v);
			fprintf(out, "lr: %s\n", num);
		}
		if (pint(job, "best_epoch", &best_epoch) && pnum(job, "best_value", &v)) {
			char *m = clean_dup(pstr(job, "monitor") ? pstr(job, "monitor") : "val_loss");

			fprintf(out, "best: epoch %lld, %s %.4g\n", best_epoch, m ? m : "?", v);
			free(m);
		}
		if (pstr(job, "stopped_early")) {
			char *m = clean_dup(pstr(job, "stopped_early"));

			fprintf(out, "%s\n", m ? m : "?");
			free(m);
		}
	}
	if (rc == RC_OK && pstr(job, "dataset_digest")) {
		json_t *cfg = json_object_get(job, "config");
		char *ds = clean_dup(cfg ? pstr(cfg, "dataset") : NULL);
		char *dg = clean_dup(pstr(job, "dataset_digest"));

		fprintf(out, "dataset: %s %s\n", ds && *ds ? ds : "?", dg ? dg : "?");
		free(ds);
		free(dg);
	}
	if (rc == RC_OK && pstr(job, "origin")) {
		char *m = clean_dup(pstr(job, "origin"));

		fprintf(out, "from: %s\n", m ? m : "?");
		free(m);
	}
	if (rc == RC_OK) {
		json_t *cfg = json_object_get(job, "config");
		long long ranks = 1, shards = 1, restarts = 0;

		if (cfg && pint(cfg, "ranks", &ranks) && pint(cfg, "shards", &shards) &&
		    (ranks > 1 || shards > 1)) {
			char *h = clean_dup(pstr(cfg, "hosts"));

			fprintf(out, "ranks: %lld, shards %lld%s%s\n", ranks, shards, h && *h ? ", hosts " : "",
				h && *h ? h : "");
			free(h);
		}
		if (pint(job, "restarts", &restarts) && restarts > 0) {
			char *m = clean_dup(pstr(job, "last_failure"));

			fprintf(out, "restarts: %lld, after: %s\n", restarts, m ? m : "?");
			free(m);
		}
	}
	return rc;
}

void render_job_state(FILE *out, json_t *job, long long fallback_id)
{
	long long id = fallback_id;
	char epoch[64];
	char *state = clean_dup(pstr(job, "state"));

	pint(job, "id", &id);
	fmt_pair(job, "epoch", "epochs", epoch, sizeof(epoch));
	fprintf(out, "job %lld: %s (epoch %s)\n", id, state && *state ? state : "?", epoch);
	free(state);
}

/* ---- history ---------------------------------------------------------- */

static const char *history_cols[] = { "epoch", "train_loss", "train_acc", "train_macro_acc", "val_loss",
				      "val_acc", "val_macro_acc", "seconds", "note", "lr", "grad_norm",
				      "val_mae", "val_rmse", "val_ppl" };
/* CSV and JSON keep the older columns' positions (lr, grad_norm, then
 * val_mae, val_rmse, val_ppl come last); the table shows the note last: */
static const int table_cols[] = { 0, 1, 2, 3, 4, 5, 6, 11, 12, 13, 7, 9, 10, 8 };
#define HISTORY_NCOLS (sizeof(history_cols) / sizeof(history_cols[0]))

/* The table leaves out the metrics the job's task does not have: an
 * accuracy (regression), val_mae/val_rmse (classification) or val_ppl
 * (all but a language model's) that no row has a number for. */
static bool task_column(const char *key)
{
	return strstr(key, "_acc") || strcmp(key, "val_mae") == 0 || strcmp(key, "val_rmse") == 0 ||
	       strcmp(key, "val_ppl") == 0;
}

static bool column_has_number(json_t *rows, const char *key)
{
	json_t *row;
	size_t i;
	double v;

	json_array_foreach(rows, i, row)
		if (pnum(row, key, &v))
			return true;
	return false;
}

static void csv_field(FILE *out, const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

int render_history_csv(FILE *out, json_t *rows)
{
	json_t *row;
	size_t i;

	for (size_t c = 0; c < HISTORY_NCOLS; c++)
		fprintf(out, "%s%s", c ? "," : "", history_cols[c]);
	fputc('\n', out);
	json_array_foreach(rows, i, row) {
		for (size_t c = 0; c < HISTORY_NCOLS; c++) {
			json_t *v = json_object_get(row, history_cols[c]);
			char num[64];

			if (c)
				fputc(',', out);
			if (json_is_string(v)) {
				csv_field(out, json_string_value(v));
			} else if (json_is_integer(v)) {
				fprintf(out, "%lld", (long long)json_integer_value(v));
			} else if (json_is_real(v)) {
				fmt_shortest(json_real_value(v), num, sizeof(num));
				fputs(num, out);
			}
		}
		fputc('\n', out);
	}
	return RC_OK;
}

int render_history_table(FILE *out, json_t *rows)
{
	struct table t;
	json_t *row;
	size_t i;
	int rc;

	int shown[HISTORY_NCOLS];
	size_t ncols = 0;

	memset(&t, 0, sizeof(t));
	for (size_t c = 0; c < HISTORY_NCOLS; c++) {
		const char *key = history_cols[table_cols[c]];

		if (task_column(key) && !column_has_number(rows, key))
			continue;
		shown[ncols] = table_cols[c];
		t.head[ncols] = key;
		t.left[ncols] = c == HISTORY_NCOLS - 1;
		ncols++;
	}
	t.ncols = ncols;
	json_array_foreach(rows, i, row) {
		char cell[HISTORY_NCOLS][64];
		char *cells[HISTORY_NCOLS];
		const char *note = pstr(row, "note");

		fmt_int(row, "epoch", cell[0], sizeof(cell[0]));
		for (size_t c = 1; c + 1 < ncols; c++) {
			const char *key = history_cols[shown[c]];
			double v;

			if (strcmp(key, "seconds") == 0 && pnum(row, key, &v))
				fmt_span(v, cell[c], sizeof(cell[c]));
			else
				fmt_g(row, key, cell[c], sizeof(cell[c]));
		}
		for (size_t c = 0; c + 1 < ncols; c++)
			cells[c] = cell[c];
		cells[ncols - 1] = (char *)(note ? note : "");
		table_add(&t, cells);
	}
	rc = table_print(&t, out);
	table_free(&t);
	return rc;
}

int render_history_json(FILE *out, json_t *rows)
{
	json_t *doc = json_array(), *row;
	size_t i;
	int rc;

	/* exactly the documented keys, in the documented order */
	json_array_foreach(rows, i, row) {
		json_t *o = json_object();

		for (size_t c = 0; o && c < HISTORY_NCOLS; c++) {
			json_t *v = json_object_get(row, history_cols[c]);

			json_object_set_new(o, history_cols[c], v ? json_incref(v) : json_null());
		}
		if (json_array_append_new(doc, o))
			break;
	}
	rc = doc && json_array_size(doc) == json_array_size(rows) ? render_json(out, doc)
								   : failf(RC_ERROR, "out of memory");
	json_decref(doc);
	return rc;
}

/* ---- checkpoints ------------------------------------------------------ */

int render_checkpoints(FILE *out, json_t *list)
{
	static const char *head[] = { "epoch", "step", "kind", "size", "val_loss", "best", "created",
				      "checksum" };
	struct table t;
	json_t *cp;
	size_t i;
	int rc;

	memset(&t, 0, sizeof(t));
	t.ncols = sizeof(head) / sizeof(head[0]);
	for (size_t c = 0; c < t.ncols; c++) {
		t.head[c] = head[c];
		t.left[c] = c == 2 || c == 5 || c == 6 || c == 7;
	}
	json_array_foreach(list, i, cp) {
		char epoch[32], step[32], size[32], vloss[32], created[64];
		const char *kind = pstr(cp, "kind"), *sum = pstr(cp, "checksum");
		char *row[8];
		long long when;
		json_t *best = json_object_get(cp, "best");

		fmt_int(cp, "epoch", epoch, sizeof(epoch));
		fmt_int(cp, "step", step, sizeof(step));
		fmt_int(cp, "size", size, sizeof(size));
		fmt_g(cp, "val_loss", vloss, sizeof(vloss));
		snprintf(created, sizeof(created), "-");
		if (pint(cp, "created", &when)) {
			time_t tt = (time_t)when;
			struct tm tm;

			if (localtime_r(&tt, &tm))
				strftime(created, sizeof(created), "%Y-%m-%d %H:%M:%S", &tm);
		}
		row[0] = epoch;
		row[1] = step;
		row[2] = (char *)(kind ? kind : "-");
		row[3] = size;
		row[4] = vloss;
		row[5] = (char *)(json_is_true(best) ? "best" : "");
		row[6] = created;
		row[7] = (char *)(sum ? sum : "-");
		table_add(&t, row);
	}
	rc = table_print(&t, out);
	table_free(&t);
	return rc;
}

/* ---- watch ------------------------------------------------------------ */

void watch_line(json_t *p, bool bar, char *out, size_t n)
{
	long long id = 0, epoch = 0, epochs = 0, step = 0, spe = 0, shown;
	const char *state = pstr(p, "state");
	char loss[32], eta[32], sps[32], cells[23] = "";
	double v;
	bool running = state && strcmp(state, "running") == 0;

	pint(p, "id", &id);
	pint(p, "epoch", &epoch);
	pint(p, "epochs", &epochs);
	pint(p, "step", &step);
	pint(p, "steps_per_epoch", &spe);
	shown = epoch < epochs && (running || step > 0) ? epoch + 1 : epoch;
	fmt_g(p, "loss", loss, sizeof(loss));
	fmt_eta(p, "eta_seconds", eta, sizeof(eta));
	if (pnum(p, "samples_per_second", &v) && isfinite(v) && v >= 0)
		snprintf(sps, sizeof(sps), "%.0f", v);
	else
		snprintf(sps, sizeof(sps), "-");
	if (bar) {
		double frac = 0;
		int fill;

		if (epochs > 0 && spe > 0)
			frac = ((double)epoch * (double)spe + (double)step) / ((double)epochs * (double)spe);
		frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
		fill = (int)(frac * 20);
		cells[0] = '[';
		for (int i = 0; i < 20; i++)
			cells[1 + i] = i < fill ? '#' : '.';
		cells[21] = ']';
		cells[22] = '\0';
	}
	snprintf(out, n, "job %lld: %s%s%s epoch %lld/%lld batch %lld/%lld loss %s %s samples/s ETA %s", id,
		 state ? state : "?", bar ? " " : "", cells, shown, epochs, step, spe, loss, sps, eta);
	one_line(out);
}

void watch_epoch_line(json_t *row, long long id, long long epochs, char *out, size_t n)
{
	const char *note = pstr(row, "note");
	char m[256], secs[32];
	long long e = 0;
	double v;

	pint(row, "epoch", &e);
	row_metrics(row, m, sizeof(m));
	fmt_span(pnum(row, "seconds", &v) ? v : NAN, secs, sizeof(secs));
	snprintf(out, n, "job %lld: epoch %lld/%lld  %s  %s%s%s%s", id, e, epochs, m, secs, note && *note ? "  (" : "",
		 note && *note ? note : "", note && *note ? ")" : "");
	one_line(out);
}

void watch_summary(json_t *job, json_t *rows, char *out, size_t n)
{
	const char *state = pstr(job, "state"), *error = pstr(job, "error"), *early = pstr(job, "stopped_early");
	const char *monitor = pstr(job, "monitor");
	json_t *last = json_array_get(rows, json_array_size(rows) - 1), *cp = json_object_get(job, "checkpoint");
	long long id = 0, epoch = 0, epochs = 0, best = 0, e = 0;
	size_t used;
	double span, v;
	char took[32], train[32], m[256];

	pint(job, "id", &id);
	pint(job, "epochs", &epochs);
	pint(job, "committed_epoch", &epoch);
	if (!state)
		state = "?";
	if (strcmp(state, "done") == 0) {
		/* the time training; the wall clock too when queueing or pauses
		 * made it much longer */
		fmt_span(rows_seconds(rows), train, sizeof(train));
		used = (size_t)snprintf(out, n, "job %lld: done: %lld epoch%s in %s", id, epoch, epoch == 1 ? "" : "s",
					train);
		if (job_span(job, &span) && span > rows_seconds(rows) + 60 && used < n) {
			fmt_span(span, took, sizeof(took));
			used += (size_t)snprintf(out + used, n - used, " (%s from start to end)", took);
		}
		if (json_is_object(last) && used < n) {
			pint(last, "epoch", &e);
			row_metrics(last, m, sizeof(m));
			used += (size_t)snprintf(out + used, n - used, "; epoch %lld: %s", e, m);
		}
		if (pint(job, "best_epoch", &best) && pnum(job, "best_value", &v) && used < n)
			used += (size_t)snprintf(out + used, n - used, "; best epoch %lld (%s %.4g)", best,
						 monitor ? monitor : "val_loss", v);
		if (early && used < n)
			snprintf(out + used, n - used, "; %s", early);
	} else if (strcmp(state, "failed") == 0) {
		snprintf(out, n, "job %lld: failed at epoch %lld/%lld: %s", id, epoch, epochs, error ? error : "?");
	} else if (strcmp(state, "paused") == 0) {
		long long st = 0;
		const char *kind = pstr(cp, "kind");

		pint(cp, "step", &st);
		if (kind && strcmp(kind, "position") == 0)
			snprintf(out, n, "job %lld: paused in epoch %lld/%lld at step %lld; trainctl resume %lld goes on", id,
				 epoch + 1, epochs, st, id);
		else
			snprintf(out, n, "job %lld: paused after epoch %lld/%lld; trainctl resume %lld goes on", id, epoch,
				 epochs, id);
	} else if (strcmp(state, "killed") == 0) {
		snprintf(out, n, "job %lld: killed after epoch %lld/%lld; trainctl resume %lld goes on from there", id,
			 epoch, epochs, id);
	} else {
		snprintf(out, n, "job %lld: %s at epoch %lld/%lld", id, state, epoch, epochs);
	}
	one_line(out);
}

/* ---- datasets --------------------------------------------------------- */

static void fmt_size(json_t *o, const char *key, char *out, size_t n)
{
	long long v;

	if (!pint(o, key, &v))
		snprintf(out, n, "-");
	else if (v >= 1 << 30)
		snprintf(out, n, "%.1f GiB", (double)v / (1 << 30));
	else if (v >= 1 << 20)
		snprintf(out, n, "%.1f MiB", (double)v / (1 << 20));
	else if (v >= 1 << 10)
		snprintf(out, n, "%.1f KiB", (double)v / (1 << 10));
	else
		snprintf(out, n, "%lld B", v);
}

int render_datasets(FILE *out, json_t *list)
{
	static const char *head[] = { "name", "format", "train", "test", "shape", "classes", "size",
				      "digest", "jobs" };
	struct table t;
	json_t *ds;
	size_t i;
	int rc;

	memset(&t, 0, sizeof(t));
	t.ncols = sizeof(head) / sizeof(head[0]);
	for (size_t c = 0; c < t.ncols; c++) {
		t.head[c] = head[c];
		t.left[c] = c <= 1 || c == 4 || c == 7 || c == 8;
	}
	json_array_foreach(list, i, ds) {
		char train[32], test[32], shape[64], classes[32], size[32], digest[32], jobs[256];
		const char *format = pstr(ds, "format"), *dg = pstr(ds, "digest");
		json_t *sh = json_object_get(ds, "shape"), *ids = json_object_get(ds, "jobs"), *v;
		char *row[9];
		size_t k, o = 0;

		if (!json_is_object(ds))
			continue;
		fmt_int(ds, "train", train, sizeof(train));
		fmt_int(ds, "test", test, sizeof(test));
		fmt_int(ds, "classes", classes, sizeof(classes));
		fmt_size(ds, "size", size, sizeof(size));
		snprintf(shape, sizeof(shape), "-");
		json_array_foreach(sh, k, v)
			o += (size_t)snprintf(shape + (k ? o : 0), sizeof(shape) - (k ? o : 0), "%s%lld",
					      k ? "x" : "", (long long)json_integer_value(v));
		{
			/* a text: its tokens, and its vocabulary for a shape */
			long long tt, vt;
			const char *vk = pstr(ds, "vocab_kind");

			if (pint(ds, "train_tokens", &tt) && pint(ds, "test_tokens", &vt)) {
				snprintf(train, sizeof(train), "%lld tokens", tt);
				snprintf(test, sizeof(test), "%lld tokens", vt);
			}
			if (vk)
				snprintf(shape, sizeof(shape), "text (%s)", strcmp(vk, "byte") == 0 ? "byte" : "char");
		}
		snprintf(digest, sizeof(digest), "%.19s", dg ? dg : "-");
		o = 0;
		jobs[0] = '\0';
		json_array_foreach(ids, k, v)
			if (o < sizeof(jobs))
				o += (size_t)snprintf(jobs + o, sizeof(jobs) - o, "%s%lld", k ? "," : "",
						      (long long)json_integer_value(v));
		row[0] = (char *)pstr(ds, "name");
		row[1] = (char *)(format ? format : "-");
		row[2] = train;
		row[3] = test;
		row[4] = shape;
		row[5] = classes;
		row[6] = size;
		row[7] = digest;
		row[8] = jobs[0] ? jobs : "-";
		table_add(&t, row);
	}
	rc = table_print(&t, out);
	table_free(&t);
	json_array_foreach(list, i, ds) {
		const char *e = pstr(ds, "error");

		if (rc == RC_OK && e) {
			char *n = clean_dup(pstr(ds, "name")), *m = clean_dup(e);

			fprintf(out, "%s: error: %s\n", n ? n : "?", m ? m : "?");
			free(n);
			free(m);
		}
	}
	return rc;
}

/* "3" or, when the class has a name other than its number, "3 (Dress)"; malloc'ed. */
static char *class_label(json_t *o, long long cls)
{
	char *name = clean_dup(pstr(o, "name")), num[32], *s;

	snprintf(num, sizeof(num), "%lld", cls);
	if (!name || !*name || strcmp(name, num) == 0) {
		free(name);
		return strdup(num);
	}
	s = malloc(strlen(num) + strlen(name) + 4);
	if (s)
		sprintf(s, "%s (%s)", num, name);
	free(name);
	return s;
}

int render_predictions(FILE *out, json_t *list)
{
	json_t *p;
	size_t i;

	json_array_foreach(list, i, p) {
		char *file = clean_dup(pstr(p, "file"));
		json_t *top = json_object_get(p, "top"), *t;
		long long index = 0, cls = -1;
		double prob = 0;
		size_t k;

		char *name;
		json_t *values = json_object_get(p, "values"), *v;

		if (json_is_array(values)) {
			/* regression: the outputs; multi-label: each label's probability */
			json_t *labels = json_object_get(p, "labels");

			pint(p, "index", &index);
			fprintf(out, "%s#%lld  %s", file ? file : "?", index, json_is_array(labels) ? "p" : "value");
			json_array_foreach(values, k, v)
				fprintf(out, "%s%.6g", k ? " " : " ", json_number_value(v));
			if (json_is_array(labels)) {
				fprintf(out, "  labels");
				if (!json_array_size(labels))
					fprintf(out, " -");
				json_array_foreach(labels, k, v)
					fprintf(out, "%s%lld", k ? "," : " ", (long long)json_integer_value(v));
			}
			free(file);
			if (fprintf(out, "\n") < 0)
				return failf(RC_ERROR, "cannot write the predictions");
			continue;
		}
		pint(p, "index", &index);
		pint(p, "class", &cls);
		pnum(p, "prob", &prob);
		name = class_label(p, cls);
		if (fprintf(out, "%s#%lld  class %s  p %.4f", file ? file : "?", index, name ? name : "?",
			    prob) < 0) {
			free(name);
			free(file);
			return failf(RC_ERROR, "cannot write the predictions");
		}
		free(name);
		json_array_foreach(top, k, t) {
			long long c = -1;
			double q = 0;

			if (k == 0)
				continue;
			char *tn;

			pint(t, "class", &c);
			pnum(t, "prob", &q);
			tn = class_label(t, c);
			fprintf(out, "%s%s:%.4f", k == 1 ? "  (then " : ", ", tn ? tn : "?", q);
			free(tn);
		}
		fprintf(out, "%s\n", json_array_size(top) > 1 ? ")" : "");
		free(file);
	}
	return RC_OK;
}
