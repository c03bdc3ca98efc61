/*
 * verbs-query.c - the verbs that read jobs: status, list, history,
 * checkpoints, wait, watch; counters (traind's own); info (the CPU and the
 * BLAS kernel traind runs).
 *
 * wait and watch block for as long as the job takes: wait's socket timeout
 * is its --timeout plus a margin (none without one), watch's none. watch
 * prints a line per committed epoch (its History row, read on a second
 * connection when a Watch update says another epoch committed) and, once the
 * job has stopped, a summary (watch_summary); on a terminal a progress line
 * is redrawn in place (cut to its width) while an epoch runs. With --json it
 * prints only the last update.
 */
#include <errno.h>
#include <limits.h>
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
#include "msg.h"
#include "render.h"
#include "reply.h"
#include "rpc.h"
#include "verbs.h"

#define WAIT_MARGIN_S 30.0             /* wait --timeout T: the socket waits T + this */

static const char *job_states[] = { "queued", "running", "paused", "killed", "failed", "done" };

/* --state a,b: each a known state name, into a JSON array. */
static int parse_states(const char *list, json_t **out)
{
	char buf[256];
	char *save = NULL;
	json_t *arr;

	*out = NULL;
	if (!*list || strlen(list) >= sizeof(buf) || list[0] == ',' || list[strlen(list) - 1] == ',' ||
	    strstr(list, ",,"))
		return failf(RC_USAGE, "--state: expected a list of states like paused,done, got '%.*s'",
			     tr_utf8_cut(list, TR_QUOTE_MAX), list);
	snprintf(buf, sizeof(buf), "%s", list);
	arr = json_array();
	if (!arr)
		return failf(RC_ERROR, "out of memory");
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		bool known = false;

		for (size_t i = 0; i < sizeof(job_states) / sizeof(job_states[0]); i++)
			known = known || strcmp(tok, job_states[i]) == 0;
		if (!known) {
			json_decref(arr);
			return failf(RC_USAGE,
				     "--state: unknown state '%.*s' (expected queued, running, paused, killed, failed or done)",
				     tr_utf8_cut(tok, 32), tok);
		}
		json_array_append_new(arr, json_string(tok));
	}
	*out = arr;
	return RC_OK;
}

int cmd_list(struct cli *cli)
{
	json_t *reply = NULL, *jobs, *params = NULL, *states = NULL;
	int rc;

	if (cli->set[O_STATE]) {
		rc = parse_states(cli->val[O_STATE], &states);
		if (rc != RC_OK)
			return rc;
		params = json_pack("{s:o}", "states", states);
		if (!params)
			return failf(RC_ERROR, "out of memory");
	}
	rc = rpc(cli, "io.traind.List", params, &reply);
	if (rc != RC_OK)
		return rc;
	jobs = json_object_get(reply, "jobs");
	if (!json_is_array(jobs)) {
		json_decref(reply);
		return malformed("List", "jobs");
	}
	if (cli->json) {
		rc = render_json(stdout, jobs);
		json_decref(reply);
		return rc;
	}
	rc = render_jobs(stdout, jobs);
	json_decref(reply);
	return rc;
}

int cmd_status(struct cli *cli)
{
	json_t *reply = NULL, *job;
	int rc;

	if (!cli->has_job)
		return cmd_list(cli);
	rc = rpc_id(cli, "io.traind.Status", &reply);
	if (rc != RC_OK)
		return rc;
	job = json_object_get(reply, "job");
	if (!json_is_object(job)) {
		json_decref(reply);
		return malformed("Status", "job");
	}
	if (cli->json) {
		rc = render_json(stdout, job);
		json_decref(reply);
		return rc;
	}
	{
		/* its history, for the final (or latest) epoch's metrics and the
		 * time spent training */
		json_t *hist = NULL;
		long long committed = 0;

		if (pint(job, "committed_epoch", &committed) && committed > 0 &&
		    (rc = rpc_id(cli, "io.traind.History", &hist)) != RC_OK) {
			json_decref(reply);
			return rc;
		}
		rc = render_status(stdout, job, json_object_get(hist, "rows"));
		json_decref(hist);
	}
	json_decref(reply);
	return rc;
}

int cmd_history(struct cli *cli)
{
	json_t *reply = NULL, *rows, *row;
	size_t i;
	int rc;

	rc = rpc_id(cli, "io.traind.History", &reply);
	if (rc != RC_OK)
		return rc;
	rows = json_object_get(reply, "rows");
	if (!json_is_array(rows)) {
		json_decref(reply);
		return malformed("History", "rows");
	}
	json_array_foreach(rows, i, row) {
		if (!json_is_object(row)) {
			json_decref(reply);
			return malformed("History", "rows");
		}
	}
	if (cli->json) {
		rc = render_history_json(stdout, rows);
	} else if (cli->set[O_CSV]) {
		rc = render_history_csv(stdout, rows);
	} else {
		rc = render_history_table(stdout, rows);
	}
	json_decref(reply);
	return rc;
}

int cmd_checkpoints(struct cli *cli)
{
	json_t *reply = NULL, *list;
	int rc;

	rc = rpc_id(cli, "io.traind.Checkpoints", &reply);
	if (rc != RC_OK)
		return rc;
	list = json_object_get(reply, "checkpoints");
	if (!json_is_array(list)) {
		json_decref(reply);
		return malformed("Checkpoints", "checkpoints");
	}
	if (cli->json) {
		rc = render_json(stdout, list);
		json_decref(reply);
		return rc;
	}
	rc = render_checkpoints(stdout, list);
	json_decref(reply);
	return rc;
}

int cmd_wait(struct cli *cli)
{
	json_t *params, *reply = NULL, *job, *states = NULL;
	int64_t epoch = 0;
	double timeout = -1;
	int rc;

	if (cli->set[O_EPOCH]) {
		rc = opt_int(cli, O_EPOCH, 1, 100000, &epoch);
		if (rc != RC_OK)
			return rc;
	}
	if (cli->set[O_TIMEOUT]) {
		const char *s = cli->val[O_TIMEOUT];
		char *end;

		errno = 0;
		timeout = strtod(s, &end);
		if (!*s || *end || errno || !isfinite(timeout) || timeout < 0 || *s == ' ' || *s == '\t')
			return failf(RC_USAGE, "--timeout: expected a number of seconds >= 0, got '%.*s'",
				     tr_utf8_cut(s, TR_QUOTE_MAX), s);
	}
	if (cli->set[O_STATE]) {
		rc = parse_states(cli->val[O_STATE], &states);
		if (rc != RC_OK)
			return rc;
	}
	params = id_params(cli);
	if (!params) {
		json_decref(states);
		return failf(RC_ERROR, "out of memory");
	}
	if (cli->set[O_EPOCH])
		json_object_set_new(params, "epoch", json_integer((json_int_t)epoch));
	if (states)
		json_object_set_new(params, "states", states);
	if (cli->set[O_TIMEOUT])
		json_object_set_new(params, "timeout", json_real(timeout));
	rc = ensure_connected(cli);
	if (rc != RC_OK) {
		json_decref(params);
		return rc;
	}
	if (timeout >= 0 && (timeout + WAIT_MARGIN_S) * 1000.0 < (double)INT_MAX)
		vl_set_timeout(cli->conn, (int)((timeout + WAIT_MARGIN_S) * 1000.0));
	else
		vl_set_timeout(cli->conn, -1);
	rc = rpc(cli, "io.traind.Wait", params, &reply);
	if (rc != RC_OK)
		return rc;
	job = json_object_get(reply, "job");
	if (!json_is_object(job))
		rc = malformed("Wait", "job");
	else if (cli->json)
		rc = render_json(stdout, job);
	else
		render_job_state(stdout, job, cli->job);
	json_decref(reply);
	return rc;
}

/* A second connection of watch's, for History and Status while the first
 * streams the Watch. */
static int side_call(struct cli *cli, struct vl_conn **side, const char *method, json_t **out)
{
	struct vl_reply r = { 0 };
	struct tr_err err = { 0 };
	json_t *params = id_params(cli);
	int rc = RC_OK;

	*out = NULL;
	if (!params)
		return failf(RC_ERROR, "out of memory");
	if (!*side && vl_connect(side, cli->socket, 300 * 1000, &err) < 0)
		rc = failf(RC_ERROR, "%s", err.msg);
	else if (vl_call(*side, method, params, false, &err) < 0 || vl_recv(*side, &r, &err) < 0)
		rc = failf(RC_ERROR, "%s", err.msg);
	else if (r.error) {
		char line[1024];

		describe_error(&r, line, sizeof(line));
		rc = failf(RC_ERROR, "%s", line);
	} else {
		*out = r.params;
		r.params = NULL;
	}
	json_decref(params);
	vl_reply_clear(&r);
	return rc;
}

/* Print the epochs of the job's history after *printed (clearing a drawn
 * progress line first); *printed moves on. */
static int print_epochs(struct cli *cli, struct vl_conn **side, long long epochs, long long *printed,
			bool *drawn, json_t **rows_out)
{
	json_t *reply = NULL, *rows, *row;
	size_t i;
	int rc;

	rc = side_call(cli, side, "io.traind.History", &reply);
	if (rc != RC_OK)
		return rc;
	rows = json_object_get(reply, "rows");
	json_array_foreach(rows, i, row) {
		long long e = 0;
		char line[512];

		if (!pint(row, "epoch", &e) || e <= *printed)
			continue;
		if (*drawn) {
			printf("\r\033[K");
			*drawn = false;
		}
		watch_epoch_line(row, cli->job, epochs, line, sizeof(line));
		printf("%s\n", line);
		*printed = e;
	}
	fflush(stdout);
	if (rows_out)
		*rows_out = json_incref(rows);
	json_decref(reply);
	return RC_OK;
}

int cmd_watch(struct cli *cli)
{
	struct vl_reply r = { 0 };
	struct tr_err err = { 0 };
	struct vl_conn *side = NULL;
	json_t *params, *last = NULL;
	bool tty = !cli->json && isatty(STDOUT_FILENO);
	bool drawn = false;
	long long printed = 0;
	int rc;

	rc = ensure_connected(cli);
	if (rc != RC_OK)
		return rc;
	vl_set_timeout(cli->conn, -1);
	params = id_params(cli);
	if (!params)
		return failf(RC_ERROR, "out of memory");
	rc = vl_call(cli->conn, "io.traind.Watch", params, true, &err);
	json_decref(params);
	if (rc < 0)
		return failf(RC_ERROR, "%s", err.msg);
	for (;;) {
		char line[512];
		long long committed = 0, epochs = 0;

		rc = vl_recv(cli->conn, &r, &err);
		if (rc < 0 || r.error) {
			if (drawn)
				putchar('\n');
			if (rc < 0) {
				rc = failf(RC_ERROR, "%s", err.msg);
			} else {
				describe_error(&r, line, sizeof(line));
				rc = failf(RC_ERROR, "%s", line);
			}
			break;
		}
		pint(r.params, "epochs", &epochs);
		if (cli->json) {
			json_decref(last);
			last = json_incref(r.params);
		} else if (pint(r.params, "committed_epoch", &committed) && committed > printed &&
			   (rc = print_epochs(cli, &side, epochs, &printed, &drawn, NULL)) != RC_OK) {
			break;
		}
		if (tty && r.continues) {
			struct winsize ws;

			watch_line(r.params, true, line, sizeof(line));
			if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 &&
			    (size_t)ws.ws_col - 1 < sizeof(line))
				line[ws.ws_col - 1] = '\0';
			printf("\r%s\033[K", line);
			fflush(stdout);
			drawn = true;
		}
		if (!r.continues) {
			json_t *status = NULL, *rows = NULL;

			if (cli->json) {
				rc = render_json(stdout, last);
				break;
			}
			/* the job has stopped: the epochs not printed yet, then
			 * what became of it */
			rc = print_epochs(cli, &side, epochs, &printed, &drawn, &rows);
			if (rc == RC_OK)
				rc = side_call(cli, &side, "io.traind.Status", &status);
			if (rc == RC_OK) {
				if (drawn)
					printf("\r\033[K");
				watch_summary(json_object_get(status, "job"), rows, line, sizeof(line));
				printf("%s\n", line);
			}
			json_decref(status);
			json_decref(rows);
			break;
		}
		vl_reply_clear(&r);
	}
	vl_reply_clear(&r);
	vl_free(side);
	json_decref(last);
	return rc;
}

/* counters: traind's counters since it started, and the commit latency
 * histogram with its cumulative counts ("le" as Prometheus has it). */
int cmd_counters(struct cli *cli)
{
	static const char *const names[] = { "epochs_committed", "jobs_failed", "client_errors" };
	json_t *reply = NULL, *h, *buckets, *counts, *sum, *count;
	int rc;

	rc = rpc(cli, "io.traind.Counters", NULL, &reply);
	if (rc != RC_OK)
		return rc;
	h = json_object_get(reply, "commit_seconds");
	buckets = json_object_get(h, "buckets");
	counts = json_object_get(h, "counts");
	sum = json_object_get(h, "sum");
	count = json_object_get(h, "count");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!json_is_integer(json_object_get(reply, names[i]))) {
			json_decref(reply);
			return malformed("Counters", names[i]);
		}
	if (!json_is_array(buckets) || !json_is_array(counts) ||
	    json_array_size(buckets) != json_array_size(counts) || !json_is_number(sum) ||
	    !json_is_integer(count)) {
		json_decref(reply);
		return malformed("Counters", "commit_seconds");
	}
	if (cli->json) {
		rc = render_json(stdout, reply);
		json_decref(reply);
		return rc;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		printf("%-18s %" JSON_INTEGER_FORMAT "\n", names[i],
		       json_integer_value(json_object_get(reply, names[i])));
	printf("%-18s %" JSON_INTEGER_FORMAT " commits, %.3f s in all", "commit_seconds",
	       json_integer_value(count), json_number_value(sum));
	if (json_integer_value(count) > 0)
		printf(", mean %.1f ms", 1e3 * json_number_value(sum) / (double)json_integer_value(count));
	printf("\n");
	for (size_t i = 0; i < json_array_size(buckets); i++) {
		json_t *b = json_array_get(buckets, i), *n = json_array_get(counts, i);

		if (json_is_number(b) && json_is_integer(n))
			printf("  le %-8g %" JSON_INTEGER_FORMAT "\n", json_number_value(b), json_integer_value(n));
	}
	printf("  le %-8s %" JSON_INTEGER_FORMAT "\n", "+Inf", json_integer_value(count));
	json_decref(reply);
	return RC_OK;
}

/* A string field of obj, or NULL when it is null or absent. */
static const char *str_or_null(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* info: what traind computes on: the CPU and its features, the BLAS
 * kernel in use, OpenBLAS's own pick, and why (io.traind.GetInfo). */
int cmd_info(struct cli *cli)
{
	static const char *const cpu_keys[] = { "brand", "vendor" }, *const blas_keys[] = { "library", "kernel",
											      "reason", "why" };
	json_t *reply = NULL, *cpu, *blas, *features;
	const char *pick, *note;
	int rc;

	rc = rpc(cli, "io.traind.GetInfo", NULL, &reply);
	if (rc != RC_OK)
		return rc;
	cpu = json_object_get(reply, "cpu");
	blas = json_object_get(reply, "blas");
	features = json_object_get(cpu, "features");
	for (size_t i = 0; i < sizeof(cpu_keys) / sizeof(cpu_keys[0]); i++)
		if (!json_is_string(json_object_get(cpu, cpu_keys[i]))) {
			json_decref(reply);
			return malformed("GetInfo", "cpu");
		}
	for (size_t i = 0; i < sizeof(blas_keys) / sizeof(blas_keys[0]); i++)
		if (!json_is_string(json_object_get(blas, blas_keys[i]))) {
			json_decref(reply);
			return malformed("GetInfo", "blas");
		}
	if (!json_is_array(features) || !json_is_string(json_object_get(reply, "version"))) {
		json_decref(reply);
		return malformed("GetInfo", json_is_array(features) ? "version" : "cpu");
	}
	if (cli->json) {
		rc = render_json(stdout, reply);
		json_decref(reply);
		return rc;
	}
	printf("traind    %s\n", str_or_null(reply, "version"));
	printf("cpu       %s (%s, family %" JSON_INTEGER_FORMAT " model %" JSON_INTEGER_FORMAT
	       " stepping %" JSON_INTEGER_FORMAT ")\n",
	       str_or_null(cpu, "brand")[0] ? str_or_null(cpu, "brand") : "?", str_or_null(cpu, "vendor"),
	       json_integer_value(json_object_get(cpu, "family")), json_integer_value(json_object_get(cpu, "model")),
	       json_integer_value(json_object_get(cpu, "stepping")));
	printf("features ");
	for (size_t i = 0; i < json_array_size(features); i++)
		if (json_is_string(json_array_get(features, i)))
			printf(" %s", json_string_value(json_array_get(features, i)));
	printf("%s\n", json_array_size(features) ? "" : " none");
	printf("blas      %s, kernel %s\n", str_or_null(blas, "library"), str_or_null(blas, "kernel"));
	printf("why       %s\n", str_or_null(blas, "why"));
	pick = str_or_null(blas, "openblas_pick");
	printf("openblas  its own pick for this CPU: %s\n", pick ? pick : "not known (OPENBLAS_CORETYPE was set)");
	note = str_or_null(blas, "note");
	if (note)
		printf("note      %s\n", note);
	json_decref(reply);
	return RC_OK;
}
