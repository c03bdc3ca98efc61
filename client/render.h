/*
 * render.h - how trainctl prints the daemon's replies.
 *
 * It owns the output formats: --json (one JSON document, printed by
 * jansson), aligned tables (jobs, history, checkpoints), history's CSV, the
 * one-line job states and watch's progress line. Each function takes the
 * reply's JSON as the daemon sent it and reads it defensively: a field
 * missing or of the wrong type shows as "-" (or "?" for a state), never as a
 * crash or a made-up value. Text from the daemon is made one line (control
 * characters replaced) before it reaches the terminal.
 *
 * Errors: the int functions return RC_OK, or print the one error line
 * (msg.h) and return RC_ERROR (out of memory, a JSON document that cannot be
 * printed). Nothing else fails.
 *
 * Thread: trainctl has one.
 */
#ifndef TRAIND_CLIENT_RENDER_H
#define TRAIND_CLIENT_RENDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* doc (any JSON value) indented by 2, then a newline. */
int render_json(FILE *out, json_t *doc);

/* A copy of s (NULL: "") fit for one line of a terminal; NULL if out of memory. */
char *clean_dup(const char *s);

#define TABLE_MAX_COLS 16

/* Rows of text cells printed in aligned columns: text left-aligned, numbers
 * right-aligned, two spaces between columns, widths in UTF-8 code points. */
struct table {
	size_t ncols;
	const char *head[TABLE_MAX_COLS];
	bool left[TABLE_MAX_COLS];    /* left-aligned (text); otherwise right (numbers) */
	char **cells;                 /* nrows * ncols, owned */
	size_t nrows, cap;
	bool oom;                     /* a row was lost: table_print fails */
};

/* Append a row of t->ncols cells (copied, made one line). */
void table_add(struct table *t, char *const *row);
/* The header line and every row. */
int table_print(struct table *t, FILE *out);
void table_free(struct table *t);

/* A table of jobs (List's "jobs", Status's "job"): id, name, state, epoch,
 * step (a running job's, or where a paused one stopped in its epoch; else
 * "-"), samples/s and eta (running), val_acc (the latest epoch's), started
 * (local time) and time (from its start to its end, or until now). */
void job_table_init(struct table *t);
void job_table_add(struct table *t, json_t *job);

/* datasets: a table (name, format, train, test, shape CxHxW, classes, size,
 * digest cut to 12 hex digits, jobs), then "NAME: error: ..." for each
 * dataset that does not load. */
int render_datasets(FILE *out, json_t *list);

/* predict: a line per image, "FILE#INDEX  class C  p P  (then C:P, ...)". */
int render_predictions(FILE *out, json_t *list);

/* list: the jobs' table (non-objects in the array skipped). */
int render_jobs(FILE *out, json_t *jobs);

/* status JOB: the job's table row, then, when present, the lines
 * "started: TIME, finished TIME (SPAN, SPAN training)", "final: epoch N/M:
 * METRICS" (or "latest:" while it is not finished; rows: its History, may be
 * NULL), "checkpoint: epoch N", "error:", "pending: kill after epoch N",
 * "model: SPEC (N parameters)", "numerics:", "lr:", "best:", the early
 * stop, "dataset:", "from:", "ranks:", "restarts:". */
int render_status(FILE *out, json_t *job, json_t *rows);

/* history: the rows (objects) as a table (four significant digits, the
 * seconds as a span), as CSV (header line, then one
 * line per row; a text field with a comma, quote or line break quoted, its
 * quotes doubled; reals in the shortest decimal that reads back exactly),
 * or as a JSON array with exactly the documented keys in their order. */
int render_history_table(FILE *out, json_t *rows);
int render_history_csv(FILE *out, json_t *rows);
int render_history_json(FILE *out, json_t *rows);

/* checkpoints: the table (created in local time). */
int render_checkpoints(FILE *out, json_t *list);

/* "job 3: done (epoch 5/5)"; fallback_id when the job has no id. */
void render_job_state(FILE *out, json_t *job, long long fallback_id);

/* One progress line of a Watch reply into out (n bytes), made one line;
 * with `bar`, a 20-cell progress bar "[#####...............]". The epoch
 * shown is the one being trained (committed + 1 while a job is in the middle
 * of one), as training logs count. */
void watch_line(json_t *p, bool bar, char *out, size_t n);

/* watch's line for a committed epoch (a History row) of job `id`:
 * "job 3: epoch 1/5  train_loss 0.3036  train_acc 0.9166  val_loss 0.1401
 * val_acc 0.959  0.34s" (and the row's note in parentheses). */
void watch_epoch_line(json_t *row, long long id, long long epochs, char *out, size_t n);

/* watch's last line, once the job has stopped (its Status job and History
 * rows): "job 3: done: 5 epochs in 1m32s (1m20s training); epoch 5: METRICS;
 * best epoch 4 (val_loss 0.07)", or where it paused, was killed or failed
 * and why. */
void watch_summary(json_t *job, json_t *rows, char *out, size_t n);

#endif
