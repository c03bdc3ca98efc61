/*
 * test-render.c - trainctl's rendering (client/render.c), driven with JSON
 * objects like the daemon's replies: the jobs table (column alignment by
 * code points, missing fields as "-", the step only in an epoch, start and
 * time), history's table (four significant digits) and CSV (quoting,
 * shortest reals, missing fields), watch's lines (the progress bar's width
 * and fill, the epoch shown, one line; an epoch's metrics; the summary of a
 * finished, paused or failed job), and status's extra lines (start and
 * finish, the final metrics, the checkpoint, error, pending kill, model,
 * numerics). Local times are UTC here (TZ=UTC). The expected texts are
 * written out by hand from the documented formats.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "msg.h"
#include "render.h"

static json_t *parse(const char *text)
{
	json_error_t jerr;
	json_t *v = json_loads(text, 0, &jerr);

	if (!v)
		fail_msg("bad test JSON: %s", jerr.text);
	return v;
}

static int status_alone(FILE *out, json_t *job)
{
	return render_status(out, job, NULL);
}

/* What fn prints for the JSON `text`; asserts it returns RC_OK. */
static char *rendered(int (*fn)(FILE *, json_t *), const char *text)
{
	json_t *v = parse(text);
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	assert_int_equal(fn(out, v), RC_OK);
	assert_int_equal(fclose(out), 0);
	json_decref(v);
	return buf;
}

static void test_jobs_table(void **state)
{
	char *s;

	(void)state;
	/* text columns (name, state, started) left, numbers right, two spaces
	 * apart; "naïve" is 5 wide though 6 bytes; a job done shows no step
	 * (not "0/938"), no samples/s or eta, and how long it took from its
	 * start to its end; a paused one where it stopped in its epoch */
	s = rendered(render_jobs,
		     "[{\"id\": 1, \"name\": \"na\\u00efve\", \"state\": \"running\", \"epoch\": 1, \"epochs\": 5,"
		     "  \"step\": 10, \"steps_per_epoch\": 938, \"samples_per_second\": 1234.4,"
		     "  \"eta_seconds\": 3723, \"val_acc\": 0.97123, \"checkpoint\": {\"epoch\": 1, \"step\": 0},"
		     "  \"params\": 235146},"
		     " {\"id\": 12, \"name\": \"longer-name\", \"state\": \"done\", \"epoch\": 5, \"epochs\": 5,"
		     "  \"step\": 0, \"steps_per_epoch\": 938, \"val_acc\": 0.98, \"samples_per_second\": 0,"
		     "  \"started\": 1777629600, \"finished\": 1777633323,"
		     "  \"checkpoint\": {\"epoch\": 5, \"step\": 0, \"kind\": \"epoch\"}},"
		     " {\"id\": 13, \"name\": \"p\", \"state\": \"paused\", \"epoch\": 2, \"epochs\": 5,"
		     "  \"step\": 300, \"steps_per_epoch\": 938, \"started\": 1777629600, \"updated\": 1777629645,"
		     "  \"checkpoint\": {\"epoch\": 2, \"step\": 300, \"kind\": \"position\"}},"
		     " \"not a job\"]");
	assert_string_equal(s,
		"id  name         state    epoch     step  samples/s       eta  val_acc  started               time\n"
		" 1  naïve        running    1/5   10/938       1234  1h02m03s   0.9712  -                        -\n"
		"12  longer-name  done       5/5        -          -         -     0.98  2026-05-01 10:00  1h02m03s\n"
		"13  p            paused     2/5  300/938          -         -        -  2026-05-01 10:00       45s\n");
	free(s);

	/* no jobs: the header alone */
	s = rendered(render_jobs, "[]");
	assert_string_equal(s, "id  name  state  epoch  step  samples/s  eta  val_acc  started  time\n");
	free(s);
}

static void test_history_csv(void **state)
{
	char *s;

	(void)state;
	s = rendered(render_history_csv,
		     "[{\"epoch\": 1, \"train_loss\": 0.5, \"train_acc\": 0.9, \"train_macro_acc\": 0.89,"
		     "  \"val_loss\": 0.25, \"val_acc\": 0.95, \"val_macro_acc\": 0.94, \"seconds\": 12.5,"
		     "  \"note\": \"lr 1e-3, \\\"warm\\\" start\"},"
		     " {\"epoch\": 2, \"train_loss\": 0.30000000000000004, \"train_acc\": 1, \"val_loss\": 0.1,"
		     "  \"val_acc\": 0.96, \"val_macro_acc\": 0.955, \"seconds\": 3, \"note\": \"resumed\"},"
		     " {\"epoch\": 3, \"note\": \"two\\nlines\", \"lr\": 0.0001, \"grad_norm\": 2.5},"
		     " {\"epoch\": 4, \"train_loss\": 2.5, \"train_acc\": null, \"val_loss\": 3.5, \"val_acc\": null,"
		     "  \"seconds\": 1, \"note\": \"\", \"val_mae\": 1.25, \"val_rmse\": 1.875},"
		     " {\"epoch\": 5, \"train_loss\": 1.5, \"train_acc\": 0.5, \"val_loss\": 1, \"val_acc\": 0.6,"
		     "  \"seconds\": 2, \"note\": \"\", \"val_ppl\": 2.75}]");
	/* lr and grad_norm come after the older columns, which keep their
	 * places, then a regression's val_mae and val_rmse, a language
	 * model's val_ppl; null is empty */
	assert_string_equal(s,
		"epoch,train_loss,train_acc,train_macro_acc,val_loss,val_acc,val_macro_acc,seconds,note,lr,grad_norm,"
		"val_mae,val_rmse,val_ppl\n"
		"1,0.5,0.9,0.89,0.25,0.95,0.94,12.5,\"lr 1e-3, \"\"warm\"\" start\",,,,,\n"
		"2,0.30000000000000004,1,,0.1,0.96,0.955,3,resumed,,,,,\n"
		"3,,,,,,,,\"two\nlines\",0.0001,2.5,,,\n"
		"4,2.5,,,3.5,,,1,,,,1.25,1.875,\n"
		"5,1.5,0.5,,1,0.6,,2,,,,,,2.75\n");
	free(s);

	/* the table leaves out the metrics the task has none of: a
	 * regression's accuracies; a classification's val_mae and val_rmse */
	s = rendered(render_history_table,
		     "[{\"epoch\": 1, \"train_loss\": 2.5, \"train_acc\": null, \"train_macro_acc\": null,"
		     "  \"val_loss\": 3.5, \"val_acc\": null, \"val_macro_acc\": null, \"seconds\": 1,"
		     "  \"note\": \"\", \"lr\": 0.01, \"val_mae\": 1.25, \"val_rmse\": 1.875}]");
	assert_string_equal(s,
		"epoch  train_loss  val_loss  val_mae  val_rmse  seconds    lr  grad_norm  note\n"
		"    1         2.5       3.5     1.25     1.875       1s  0.01          -\n");
	free(s);
	s = rendered(render_history_table,
		     "[{\"epoch\": 1, \"train_loss\": 0.5, \"train_acc\": 0.9, \"train_macro_acc\": 0.89,"
		     "  \"val_loss\": 0.25, \"val_acc\": 0.95, \"val_macro_acc\": 0.94, \"seconds\": 2, \"note\": \"x\"}]");
	assert_non_null(strstr(s, "epoch  train_loss  train_acc  train_macro_acc  val_loss  val_acc  val_macro_acc  seconds"));
	assert_null(strstr(s, "val_mae"));
	assert_null(strstr(s, "val_ppl"));
	free(s);
	/* a language model's: the per-token accuracy and the perplexity */
	s = rendered(render_history_table,
		     "[{\"epoch\": 1, \"train_loss\": 1.5, \"train_acc\": 0.5, \"train_macro_acc\": null,"
		     "  \"val_loss\": 1, \"val_acc\": 0.6, \"val_macro_acc\": null, \"seconds\": 2, \"note\": \"\","
		     "  \"val_ppl\": 2.718281828459045}]");
	assert_non_null(strstr(s, "epoch  train_loss  train_acc  val_loss  val_acc  val_ppl  seconds"));
	assert_non_null(strstr(s, "2.718"));
	assert_null(strstr(s, "macro"));
	free(s);
}

static void test_watch_line(void **state)
{
	char line[512];
	json_t *p;
	const char *open, *close;

	(void)state;
	/* half-way through epoch 2 of 4: 3/8 done, so 7 of 20 cells */
	p = parse("{\"id\": 3, \"state\": \"running\", \"epoch\": 1, \"epochs\": 4, \"step\": 469,"
		  " \"steps_per_epoch\": 938, \"loss\": 0.25, \"samples_per_second\": 5000.4, \"eta_seconds\": 65}");
	watch_line(p, true, line, sizeof(line));
	assert_string_equal(line, "job 3: running [#######.............] epoch 2/4 batch 469/938 loss 0.25 "
				  "5000 samples/s ETA 1m05s");
	open = strchr(line, '[');
	close = strchr(line, ']');
	assert_non_null(open);
	assert_non_null(close);
	assert_int_equal(close - open - 1, 20);
	watch_line(p, false, line, sizeof(line));
	assert_string_equal(line, "job 3: running epoch 2/4 batch 469/938 loss 0.25 5000 samples/s ETA 1m05s");
	json_decref(p);

	/* done: a full bar, the last epoch, unknown figures as "-" */
	p = parse("{\"id\": 4, \"state\": \"done\", \"epoch\": 4, \"epochs\": 4, \"step\": 0, \"steps_per_epoch\": 938}");
	watch_line(p, true, line, sizeof(line));
	assert_string_equal(line, "job 4: done [####################] epoch 4/4 batch 0/938 loss - - samples/s ETA -");
	json_decref(p);

	/* paused between epochs: the epoch committed, not the next; a state
	 * with a line break stays one line */
	p = parse("{\"id\": 5, \"state\": \"pau\\nsed\", \"epoch\": 1, \"epochs\": 3, \"step\": 0,"
		  " \"steps_per_epoch\": 100, \"eta_seconds\": 7322.4}");
	watch_line(p, true, line, sizeof(line));
	assert_string_equal(line, "job 5: pau sed [######..............] epoch 1/3 batch 0/100 loss - - samples/s ETA 2h02m02s");
	json_decref(p);
}

/* watch's lines for a committed epoch and for the end of the job */
static void test_watch_epochs(void **state)
{
	char line[512];
	json_t *row, *rows, *job;

	(void)state;
	row = parse("{\"epoch\": 2, \"train_loss\": 0.12603, \"train_acc\": 0.96341, \"val_loss\": 0.0894,"
		    " \"val_acc\": 0.972, \"seconds\": 0.3412, \"note\": \"\"}");
	watch_epoch_line(row, 3, 5, line, sizeof(line));
	assert_string_equal(line, "job 3: epoch 2/5  train_loss 0.126  train_acc 0.9634  val_loss 0.0894  val_acc 0.972  0.34s");
	json_decref(row);
	/* a note (resumed, stopped early) in parentheses, on the same line */
	row = parse("{\"epoch\": 1, \"train_loss\": 1, \"val_loss\": 0.5, \"seconds\": 75, \"note\": \"resumed\\nweights-only\"}");
	watch_epoch_line(row, 4, 1, line, sizeof(line));
	assert_string_equal(line, "job 4: epoch 1/1  train_loss 1  train_acc -  val_loss 0.5  val_acc -  1m15s  (resumed weights-only)");
	json_decref(row);

	rows = parse("[{\"epoch\": 1, \"val_loss\": 0.2, \"val_acc\": 0.95, \"seconds\": 40},"
		     " {\"epoch\": 2, \"train_loss\": 0.1, \"train_acc\": 0.97, \"val_loss\": 0.15, \"val_acc\": 0.96, \"seconds\": 41.5}]");
	job = parse("{\"id\": 3, \"state\": \"done\", \"epochs\": 2, \"committed_epoch\": 2, \"monitor\": \"val_loss\","
		    " \"best_epoch\": 2, \"best_value\": 0.15, \"started\": 1000, \"finished\": 1082}");
	watch_summary(job, rows, line, sizeof(line));
	assert_string_equal(line, "job 3: done: 2 epochs in 1m22s; epoch 2: train_loss 0.1  train_acc 0.97  val_loss 0.15  "
				  "val_acc 0.96; best epoch 2 (val_loss 0.15)");
	json_decref(job);
	/* queued or paused for long: the wall clock too */
	job = parse("{\"id\": 3, \"state\": \"done\", \"epochs\": 2, \"committed_epoch\": 2, \"started\": 1000,"
		    " \"finished\": 4682}");
	watch_summary(job, rows, line, sizeof(line));
	assert_string_equal(line, "job 3: done: 2 epochs in 1m22s (1h01m22s from start to end); epoch 2: train_loss 0.1  "
				  "train_acc 0.97  val_loss 0.15  val_acc 0.96");
	json_decref(job);
	job = parse("{\"id\": 6, \"state\": \"paused\", \"epochs\": 5, \"committed_epoch\": 1,"
		    " \"checkpoint\": {\"epoch\": 1, \"step\": 300, \"kind\": \"position\"}}");
	watch_summary(job, rows, line, sizeof(line));
	assert_string_equal(line, "job 6: paused in epoch 2/5 at step 300; trainctl resume 6 goes on");
	json_decref(job);
	job = parse("{\"id\": 7, \"state\": \"failed\", \"epochs\": 5, \"committed_epoch\": 1, \"error\": \"disk\\nfull\"}");
	watch_summary(job, rows, line, sizeof(line));
	assert_string_equal(line, "job 7: failed at epoch 1/5: disk full");
	json_decref(job);
	json_decref(rows);
}

/* history's table: four significant digits, the seconds as a span */
static void test_history_table(void **state)
{
	char *s;

	(void)state;
	s = rendered(render_history_table,
		     "[{\"epoch\": 1, \"train_loss\": 1.44676987, \"train_acc\": 0.6465, \"train_macro_acc\": 0.64058,"
		     "  \"val_loss\": 0.74551, \"val_acc\": 0.827, \"val_macro_acc\": 0.8238, \"seconds\": 0.034,"
		     "  \"note\": \"\", \"lr\": 0.00030000000000000003, \"grad_norm\": null}]");
	assert_string_equal(s,
		"epoch  train_loss  train_acc  train_macro_acc  val_loss  val_acc  val_macro_acc  seconds      lr  grad_norm  note\n"
		"    1       1.447     0.6465           0.6406    0.7455    0.827         0.8238   0.034s  0.0003          -\n");
	free(s);
}

static void test_status_extras(void **state)
{
	char *s;
	const char *extras;

	(void)state;
	/* the row (an empty name as "-"), then error (made one line), the
	 * pending kill, the model with its parameter count, numerics */
	s = rendered(status_alone,
		     "{\"id\": 7, \"name\": \"\", \"state\": \"failed\", \"epoch\": 2, \"epochs\": 5, \"step\": 3,"
		     " \"steps_per_epoch\": 10, \"error\": \"out of\\nmemory\", \"kill_after\": 3,"
		     " \"model\": \"mlp:784-256-10\", \"params\": 203530, \"numerics\": \"resumed under Haswell\"}");
	assert_string_equal(s,
		"id  name  state   epoch  step  samples/s  eta  val_acc  started  time\n"
		" 7  -     failed    2/5     -          -    -        -  -           -\n"
		"error: out of memory\n"
		"pending: kill after epoch 3\n"
		"model: mlp:784-256-10 (203530 parameters)\n"
		"numerics: resumed under Haswell\n");
	free(s);

	/* an empty error and no kill pending print nothing; a model without
	 * a parameter count prints the model alone */
	s = rendered(status_alone, "{\"id\": 8, \"state\": \"done\", \"error\": \"\", \"model\": \"lenet5\"}");
	extras = strchr(s, '\n');
	assert_non_null(extras);
	extras = strchr(extras + 1, '\n');
	assert_non_null(extras);
	assert_string_equal(extras + 1, "model: lenet5\n");
	free(s);

	/* nothing extra at all: the table alone */
	s = rendered(status_alone, "{\"id\": 9, \"state\": \"queued\"}");
	extras = strchr(strchr(s, '\n') + 1, '\n');
	assert_string_equal(extras + 1, "");
	free(s);
}

/* status of a finished job: when it started and finished, how long it
 * took, its final metrics (the history's last row), its checkpoint */
static void test_status_finished(void **state)
{
	json_t *job, *rows;
	char *buf = NULL;
	size_t len = 0;
	FILE *out;

	(void)state;
	job = parse("{\"id\": 3, \"name\": \"c\", \"state\": \"done\", \"epoch\": 2, \"epochs\": 2, \"step\": 0,"
		    " \"steps_per_epoch\": 922, \"val_acc\": 0.972, \"started\": 1777629600, \"finished\": 1777629692,"
		    " \"checkpoint\": {\"epoch\": 2, \"step\": 0, \"kind\": \"epoch\"}, \"lr\": 0.00030000000000000003,"
		    " \"monitor\": \"val_loss\", \"best_epoch\": 2, \"best_value\": 0.08943}");
	rows = parse("[{\"epoch\": 1, \"seconds\": 40},"
		     " {\"epoch\": 2, \"train_loss\": 0.12603, \"train_acc\": 0.96341, \"val_loss\": 0.08943,"
		     "  \"val_acc\": 0.972, \"seconds\": 41.5}]");
	out = open_memstream(&buf, &len);
	assert_int_equal(render_status(out, job, rows), RC_OK);
	fclose(out);
	assert_string_equal(buf,
		"id  name  state  epoch  step  samples/s  eta  val_acc  started            time\n"
		" 3  c     done     2/2     -          -    -    0.972  2026-05-01 10:00  1m32s\n"
		"started: 2026-05-01 10:00:00, finished 2026-05-01 10:01:32 (1m32s, 1m22s training)\n"
		"final: epoch 2/2: train_loss 0.126  train_acc 0.9634  val_loss 0.08943  val_acc 0.972\n"
		"checkpoint: epoch 2\n"
		"lr: 0.0003\n"
		"best: epoch 2, val_loss 0.08943\n");
	free(buf);
	json_decref(job);
	json_decref(rows);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jobs_table),
		cmocka_unit_test(test_history_csv),
		cmocka_unit_test(test_watch_line),
		cmocka_unit_test(test_status_extras),
		cmocka_unit_test(test_watch_epochs),
		cmocka_unit_test(test_history_table),
		cmocka_unit_test(test_status_finished),
	};

	setenv("TZ", "UTC", 1);
	tzset();

	return cmocka_run_group_tests(tests, NULL, NULL);
}
