/*
 * verbs-sweep.c - trainctl sweep start|status|list|wait|pause|resume|kill|rm: hyperparameter
 * sweeps whose trials are ordinary jobs (doc/sweeps.md).
 *
 * The sweep's own flags (--param, repeated; --searcher, --trials,
 * --max-parallel, --seed, --metric, --grace-epochs, --reduction-factor,
 * --max-epochs, --population, --interval, --quantile, --perturb) are taken out of argv before the
 * generic parser sees it (sweep_take_flags): --seed and --metric mean
 * something else for start and plot, and --param repeats. Every other flag
 * of start is the configuration all trials share, checked as start checks
 * it (verbs_build_config).
 *
 * Thread: trainctl has one.
 */
#define _POSIX_C_SOURCE 200809L
#include "verbs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "msg.h"
#include "render.h"
#include "reply.h"
#include "rpc.h"
#include "yamlcfg.h"

#define SWEEP_PARAMS_MAX 16

static struct {
	bool active;                 /* argv's verb is sweep */
	const char *param[SWEEP_PARAMS_MAX];
	size_t nparams;
	const char *searcher, *trials, *max_parallel, *seed, *metric;
	const char *grace, *reduction, *max_epochs;
	const char *population, *interval, *quantile, *perturb;   /* pbt */
} sw;

/* The value of flag `name` at argv[*i] ("--name V" or "--name=V"), or NULL. */
static int take(int argc, char **argv, int *i, const char *name, const char **out)
{
	size_t n = strlen(name);
	const char *a = argv[*i];

	if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, n) != 0)
		return 0;
	if (a[2 + n] == '=') {
		*out = a + 3 + n;
		return 1;
	}
	if (a[2 + n] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return failf(RC_USAGE, "sweep: --%s needs a value", name) ? -1 : -1;
	*out = argv[++*i];
	return 1;
}

int sweep_take_flags(int *argc, char **argv)
{
	int i, out = 1;

	for (i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--socket") == 0) {
			i++;
			continue;
		}
		if (argv[i][0] == '-')
			continue;
		break;
	}
	if (i >= *argc || strcmp(argv[i], "sweep") != 0)
		return RC_OK;
	sw.active = true;
	for (i = 1; i < *argc; i++) {
		const char *v = NULL;
		int r;

		if ((r = take(*argc, argv, &i, "param", &v)) != 0) {
			if (r < 0)
				return RC_USAGE;
			if (sw.nparams == SWEEP_PARAMS_MAX)
				return failf(RC_USAGE, "sweep: at most %d --param", SWEEP_PARAMS_MAX);
			sw.param[sw.nparams++] = v;
			continue;
		}
		if ((r = take(*argc, argv, &i, "searcher", &sw.searcher)) != 0 ||
		    (r = take(*argc, argv, &i, "trials", &sw.trials)) != 0 ||
		    (r = take(*argc, argv, &i, "max-parallel", &sw.max_parallel)) != 0 ||
		    (r = take(*argc, argv, &i, "seed", &sw.seed)) != 0 ||
		    (r = take(*argc, argv, &i, "metric", &sw.metric)) != 0 ||
		    (r = take(*argc, argv, &i, "grace-epochs", &sw.grace)) != 0 ||
		    (r = take(*argc, argv, &i, "reduction-factor", &sw.reduction)) != 0 ||
		    (r = take(*argc, argv, &i, "max-epochs", &sw.max_epochs)) != 0 ||
		    (r = take(*argc, argv, &i, "population", &sw.population)) != 0 ||
		    (r = take(*argc, argv, &i, "interval", &sw.interval)) != 0 ||
		    (r = take(*argc, argv, &i, "quantile", &sw.quantile)) != 0 ||
		    (r = take(*argc, argv, &i, "perturb", &sw.perturb)) != 0) {
			if (r < 0)
				return RC_USAGE;
			continue;
		}
		argv[out++] = argv[i];
	}
	argv[out] = NULL;
	*argc = out;
	return RC_OK;
}

static const char *const file_keys[] = { "searcher", "params", "trials", "max_parallel", "seed", "metric",
					 "grace_epochs", "reduction_factor", "max_epochs", "population", "interval",
					 "quantile", "perturb" };

bool sweep_file_key(const char *key)
{
	for (size_t i = 0; i < sizeof(file_keys) / sizeof(file_keys[0]); i++)
		if (strcmp(key, file_keys[i]) == 0)
			return true;
	return false;
}

/* sweep start --config FILE: the sweep's own keys of the file into params
 * (the flags, set after, win); the rest is the shared configuration
 * (verbs_build_config). */
static int sweep_file(struct cli *cli, json_t *params)
{
	const char *path = cli->val[O_CONFIG];
	json_t *doc = NULL, *e;
	char why[1024];

	if (yamlcfg_read(path, &doc, why, sizeof(why)) < 0)
		return failf(RC_USAGE, "--config: %s", why);
	for (size_t i = 0; i < sizeof(file_keys) / sizeof(file_keys[0]); i++) {
		const char *key = file_keys[i], *text;
		int64_t v;

		e = json_object_get(doc, key);
		if (!e)
			continue;
		text = json_string_value(json_object_get(e, "text"));
		if (strcmp(key, "params") == 0) {
			json_t *list = json_object_get(e, "list");

			if (!list && text) {   /* one parameter on the line */
				list = json_array();
				json_array_append_new(list, json_string(text));
				json_object_set_new(params, "params", list);
			} else if (list) {
				json_object_set(params, "params", list);
			}
			continue;
		}
		if (!text) {
			json_decref(doc);
			return failf(RC_USAGE, "%s:%lld: %s: no value", path,
				     (long long)json_integer_value(json_object_get(e, "line")), key);
		}
		if (strcmp(key, "searcher") == 0 || strcmp(key, "metric") == 0) {
			json_object_set_new(params, key, json_string(text));
		} else if (strcmp(key, "quantile") == 0 || strcmp(key, "perturb") == 0) {
			char *end;
			double d = strtod(text, &end);

			if (end == text || *end) {
				json_decref(doc);
				return failf(RC_USAGE, "%s:%lld: %s: expected a number, got '%.40s'", path,
					     (long long)json_integer_value(json_object_get(e, "line")), key, text);
			}
			json_object_set_new(params, key, json_real(d));
		} else if (parse_int(text, 0, INT64_MAX, &v)) {
			json_object_set_new(params, key, json_integer((json_int_t)v));
		} else {
			json_decref(doc);
			return failf(RC_USAGE, "%s:%lld: %s: expected a whole number, got '%.40s'", path,
				     (long long)json_integer_value(json_object_get(e, "line")), key, text);
		}
	}
	json_decref(doc);
	return RC_OK;
}

static const char *sub_name(struct cli *cli)
{
	return cli->nargs ? cli->args[0] : "";
}

/* SWEEP, the second word. */
static int sweep_id(struct cli *cli, int64_t *id)
{
	if (cli->nargs != 2)
		return failf(RC_USAGE, "sweep %s: expected SWEEP (usage: trainctl sweep %s SWEEP)", sub_name(cli),
			     sub_name(cli));
	if (!parse_int(cli->args[1], 1, INT64_MAX, id))
		return failf(RC_USAGE, "sweep %s: SWEEP must be a positive integer, got '%.40s'", sub_name(cli),
			     cli->args[1]);
	return RC_OK;
}

static int int_flag(const char *flag, const char *text, int64_t min, int64_t max, json_t *params,
		    const char *key)
{
	int64_t v;

	if (!text)
		return RC_OK;
	if (!parse_int(text, min, max, &v))
		return failf(RC_USAGE, "sweep start: --%s: expected an integer in [%" PRId64 ", %" PRId64 "], got '%.40s'",
			     flag, min, max, text);
	json_object_set_new(params, key, json_integer((json_int_t)v));
	return RC_OK;
}

static int real_flag(const char *flag, const char *text, json_t *params, const char *key)
{
	char *end;
	double v;

	if (!text)
		return RC_OK;
	v = strtod(text, &end);
	if (end == text || *end)
		return failf(RC_USAGE, "sweep start: --%s: expected a number, got '%.40s'", flag, text);
	json_object_set_new(params, key, json_real(v));
	return RC_OK;
}

static int sweep_start(struct cli *cli)
{
	json_t *params, *config = NULL, *arr, *reply = NULL;
	const char *file_name = NULL, *file_keep = NULL, *keep_text, *name;
	int64_t keep = 0;
	long long id;
	int rc;

	if (cli->nargs != 1)
		return failf(RC_USAGE, "sweep start: unexpected argument '%.40s'", cli->args[1]);
	params = json_object();
	if (!params)
		return failf(RC_ERROR, "out of memory");
	if (cli->set[O_CONFIG] && (rc = sweep_file(cli, params)) != RC_OK) {
		json_decref(params);
		return rc;
	}
	if (!sw.searcher && !json_object_get(params, "searcher")) {
		json_decref(params);
		return failf(RC_USAGE, "sweep start: --searcher grid|random|sha|hyperband|pbt is required");
	}
	if (!sw.nparams && !json_object_get(params, "params")) {
		json_decref(params);
		return failf(RC_USAGE, "sweep start: at least one --param KEY=DIST");
	}
	rc = verbs_build_config(cli, &config, &file_name, &file_keep);
	if (rc != RC_OK) {
		json_decref(params);
		return rc;
	}
	arr = json_array();
	if (!arr) {
		json_decref(params);
		json_decref(config);
		return failf(RC_ERROR, "out of memory");
	}
	for (size_t i = 0; i < sw.nparams; i++)
		json_array_append_new(arr, json_string(sw.param[i]));
	if (sw.nparams)   /* the flags' parameters replace the file's */
		json_object_set_new(params, "params", arr);
	else
		json_decref(arr);
	json_object_set_new(params, "config", config);
	if (sw.searcher)
		json_object_set_new(params, "searcher", json_string(sw.searcher));
	if (sw.metric)
		json_object_set_new(params, "metric", json_string(sw.metric));
	rc = int_flag("trials", sw.trials, 1, 1000, params, "trials");
	if (rc == RC_OK)
		rc = int_flag("max-parallel", sw.max_parallel, 1, 1024, params, "max_parallel");
	if (rc == RC_OK)
		rc = int_flag("seed", sw.seed, 0, INT64_MAX, params, "seed");
	if (rc == RC_OK)
		rc = int_flag("grace-epochs", sw.grace, 1, 100000, params, "grace_epochs");
	if (rc == RC_OK)   /* the daemon says why below 2 */
		rc = int_flag("reduction-factor", sw.reduction, 0, 1000, params, "reduction_factor");
	if (rc == RC_OK)
		rc = int_flag("max-epochs", sw.max_epochs, 1, 100000, params, "max_epochs");
	if (rc == RC_OK)
		rc = int_flag("population", sw.population, 2, 1000, params, "population");
	if (rc == RC_OK)
		rc = int_flag("interval", sw.interval, 1, 100000, params, "interval");
	if (rc == RC_OK)   /* the daemon checks the ranges */
		rc = real_flag("quantile", sw.quantile, params, "quantile");
	if (rc == RC_OK)
		rc = real_flag("perturb", sw.perturb, params, "perturb");
	keep_text = cli->set[O_KEEP] ? cli->val[O_KEEP] : file_keep;
	if (rc == RC_OK && keep_text) {
		if (strcmp(keep_text, "all") == 0)
			keep = -1;
		else if (!parse_int(keep_text, 0, INT32_MAX, &keep))
			rc = failf(RC_USAGE, "--keep: expected a number of checkpoints >= 0 or 'all'");
		json_object_set_new(params, "keep", json_integer((json_int_t)keep));
	}
	name = cli->set[O_NAME] ? cli->val[O_NAME] : file_name;
	if (rc == RC_OK && name)
		json_object_set_new(params, "name", json_string(name));
	if (rc != RC_OK) {
		json_decref(params);
		return rc;
	}
	rc = rpc(cli, "io.traind.SweepStart", params, &reply);
	if (rc != RC_OK)
		return rc;
	if (!pint(reply, "id", &id)) {
		json_decref(reply);
		return malformed("SweepStart", "id");
	}
	if (cli->json)
		rc = render_json(stdout, reply);
	else
		printf("%lld\n", id);
	json_decref(reply);
	return rc;
}

static const char *num(char *buf, size_t n, json_t *v)
{
	if (json_is_number(v))
		snprintf(buf, n, "%.4f", json_number_value(v));
	else
		snprintf(buf, n, "-");
	return buf;
}

static int print_sweep(json_t *s)
{
	json_t *trials = json_object_get(s, "trials"), *t, *best = json_object_get(s, "best");
	struct table tb = { .ncols = 8, .head = { "trial", "job", "state", "epochs", "metric", "decision", "params", "reason" },
			    .left = { false, false, true, false, false, true, true, true } };
	bool pbt = json_is_array(json_object_get(json_array_get(trials, 0), "lineage"));
	size_t i;
	char mb[32];
	int rc;

	if (pbt) {   /* a lineage column before the reason: the exploits, "t2@1" (trial 2's checkpoint at epoch 1) */
		tb.ncols = 9;
		tb.head[7] = "lineage";
		tb.head[8] = "reason";
		tb.left[8] = true;
	}

	printf("sweep %lld (%s): %s, %s searcher, metric %s, %lld of %lld trials done\n",
	       (long long)json_integer_value(json_object_get(s, "id")),
	       json_string_value(json_object_get(s, "name")), json_string_value(json_object_get(s, "state")),
	       json_string_value(json_object_get(s, "searcher")), json_string_value(json_object_get(s, "metric")),
	       (long long)json_integer_value(json_object_get(s, "trials_done")),
	       (long long)json_integer_value(json_object_get(s, "trials_total")));
	json_array_foreach(trials, i, t) {
		char trial[16], job[24], ep[16], *params = json_dumps(json_object_get(t, "params"), JSON_COMPACT);
		char *row[9], lin[256];

		snprintf(trial, sizeof(trial), "%lld", (long long)json_integer_value(json_object_get(t, "trial")));
		snprintf(job, sizeof(job), "%lld", (long long)json_integer_value(json_object_get(t, "job")));
		snprintf(ep, sizeof(ep), "%lld/%lld", (long long)json_integer_value(json_object_get(t, "epochs")),
			 (long long)json_integer_value(json_object_get(t, "planned_epochs")));
		row[0] = trial;
		row[1] = job;
		row[2] = (char *)json_string_value(json_object_get(t, "state"));
		row[3] = ep;
		row[4] = (char *)num(mb, sizeof(mb), json_object_get(t, "metric"));
		row[5] = (char *)json_string_value(json_object_get(t, "decision"));
		row[6] = params ? params : "";
		row[7] = (char *)json_string_value(json_object_get(t, "reason"));
		if (pbt) {
			json_t *l;
			size_t k, o = 0;

			lin[0] = '\0';
			json_array_foreach(json_object_get(t, "lineage"), k, l)
				if (json_is_string(json_object_get(l, "action")) &&
				    strcmp(json_string_value(json_object_get(l, "action")), "exploit") == 0 &&
				    o < sizeof(lin) - 24)
					o += (size_t)snprintf(lin + o, sizeof(lin) - o, "%st%lld@%lld", o ? "," : "",
							      (long long)json_integer_value(json_object_get(l, "from_trial")),
							      (long long)json_integer_value(json_object_get(l, "epoch")));
			row[7] = o ? lin : "-";
			row[8] = (char *)json_string_value(json_object_get(t, "reason"));
		}
		table_add(&tb, row);
		free(params);
	}
	rc = table_print(&tb, stdout);
	table_free(&tb);
	if (json_is_object(best)) {
		char *params = json_dumps(json_object_get(best, "params"), JSON_COMPACT);

		printf("best: trial %lld (job %lld) %s %s %s\n", (long long)json_integer_value(json_object_get(best, "trial")),
		       (long long)json_integer_value(json_object_get(best, "job")),
		       json_string_value(json_object_get(s, "metric")), num(mb, sizeof(mb), json_object_get(best, "metric")),
		       params ? params : "");
		free(params);
		if (json_is_array(json_object_get(best, "lineage"))) {
			json_t *g;
			size_t k;

			printf("best's lineage:");
			json_array_foreach(json_object_get(best, "lineage"), k, g)
				printf("%s trial %lld job %lld epochs %lld-%lld", k ? " ->" : "",
				       (long long)json_integer_value(json_object_get(g, "trial")),
				       (long long)json_integer_value(json_object_get(g, "job")),
				       (long long)json_integer_value(json_object_get(g, "from_epoch")),
				       (long long)json_integer_value(json_object_get(g, "to_epoch")));
			printf("\n");
		}
	}
	return rc;
}

static int get_status(struct cli *cli, int64_t id, json_t **reply, json_t **sweep)
{
	json_t *p = json_pack("{s:I}", "id", (json_int_t)id);
	int rc = rpc(cli, "io.traind.SweepStatus", p, reply);

	if (rc != RC_OK)
		return rc;
	*sweep = json_object_get(*reply, "sweep");
	if (!json_is_object(*sweep)) {
		json_decref(*reply);
		*reply = NULL;
		return malformed("SweepStatus", "sweep");
	}
	return RC_OK;
}

static int sweep_status(struct cli *cli)
{
	json_t *reply = NULL, *s;
	int64_t id;
	int rc = sweep_id(cli, &id);

	if (rc == RC_OK)
		rc = get_status(cli, id, &reply, &s);
	if (rc != RC_OK)
		return rc;
	rc = cli->json ? render_json(stdout, s) : print_sweep(s);
	json_decref(reply);
	return rc;
}

static int sweep_list(struct cli *cli)
{
	json_t *reply = NULL, *arr, *s;
	struct table tb = { .ncols = 7, .head = { "id", "name", "searcher", "state", "trials", "done", "best" },
			    .left = { false, true, true, true, false, false, false } };
	size_t i;
	int rc;

	if (cli->nargs != 1)
		return failf(RC_USAGE, "sweep list: unexpected argument '%.40s'", cli->args[1]);
	rc = rpc(cli, "io.traind.SweepList", NULL, &reply);
	if (rc != RC_OK)
		return rc;
	arr = json_object_get(reply, "sweeps");
	if (!json_is_array(arr)) {
		json_decref(reply);
		return malformed("SweepList", "sweeps");
	}
	if (cli->json) {
		rc = render_json(stdout, reply);
		json_decref(reply);
		return rc;
	}
	json_array_foreach(arr, i, s) {
		char id[24], tot[16], done[16], best[32];
		char *row[7];

		snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(s, "id")));
		snprintf(tot, sizeof(tot), "%lld", (long long)json_integer_value(json_object_get(s, "trials_total")));
		snprintf(done, sizeof(done), "%lld", (long long)json_integer_value(json_object_get(s, "trials_done")));
		num(best, sizeof(best), json_object_get(json_object_get(s, "best"), "metric"));
		row[0] = id;
		row[1] = (char *)json_string_value(json_object_get(s, "name"));
		row[2] = (char *)json_string_value(json_object_get(s, "searcher"));
		row[3] = (char *)json_string_value(json_object_get(s, "state"));
		row[4] = tot;
		row[5] = done;
		row[6] = best;
		table_add(&tb, row);
	}
	rc = table_print(&tb, stdout);
	table_free(&tb);
	json_decref(reply);
	return rc;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Until the sweep is done, killed or paused: its status, polled twice a
 * second. */
static int sweep_wait(struct cli *cli)
{
	json_t *reply = NULL, *s;
	int64_t id, timeout = -1;
	double t0 = now_s();
	int rc = sweep_id(cli, &id);

	if (rc == RC_OK && cli->set[O_TIMEOUT])
		rc = opt_int(cli, O_TIMEOUT, 0, 100000000, &timeout);
	if (rc != RC_OK)
		return rc;
	for (;;) {
		const char *state;

		rc = get_status(cli, id, &reply, &s);
		if (rc != RC_OK)
			return rc;
		state = json_string_value(json_object_get(s, "state"));
		if (state && strcmp(state, "running") != 0) {
			rc = cli->json ? render_json(stdout, s) : print_sweep(s);
			if (rc == RC_OK && strcmp(state, "done") != 0)
				rc = RC_STATE;
			json_decref(reply);
			return rc;
		}
		json_decref(reply);
		reply = NULL;
		if (timeout >= 0 && now_s() - t0 >= (double)timeout)
			return failf(RC_TIMEOUT, "sweep wait: sweep %" PRId64 " still running after %" PRId64 " s", id,
				     timeout);
		nanosleep(&(struct timespec){ 0, 500000000 }, NULL);
	}
}

/* kill, pause, resume, rm: {"id", "state"} */
static int sweep_verb(struct cli *cli, const char *method)
{
	json_t *reply = NULL, *p;
	int64_t id;
	int rc = sweep_id(cli, &id);

	if (rc != RC_OK)
		return rc;
	p = json_pack("{s:I}", "id", (json_int_t)id);
	if (cli->set[O_FORCE])
		json_object_set_new(p, "force", json_true());
	rc = rpc(cli, method, p, &reply);
	if (rc != RC_OK)
		return rc;
	if (cli->json)
		rc = render_json(stdout, reply);
	else
		printf("sweep %" PRId64 ": %s\n", id, json_string_value(json_object_get(reply, "state")));
	json_decref(reply);
	return rc;
}

int cmd_sweep(struct cli *cli)
{
	const char *sub = sub_name(cli);

	if (strcmp(sub, "start") != 0 && (sw.nparams || sw.searcher || sw.trials || sw.max_parallel || sw.seed ||
					  sw.metric || sw.grace || sw.reduction || sw.max_epochs || sw.population ||
					  sw.interval || sw.quantile || sw.perturb))
		return failf(RC_USAGE, "sweep %s: the sweep's flags (--param, --searcher, ...) go with sweep start", sub);
	if (strcmp(sub, "start") == 0)
		return sweep_start(cli);
	if (strcmp(sub, "status") == 0)
		return sweep_status(cli);
	if (strcmp(sub, "list") == 0)
		return sweep_list(cli);
	if (strcmp(sub, "wait") == 0)
		return sweep_wait(cli);
	if (cli->set[O_FORCE] && strcmp(sub, "rm") != 0)
		return failf(RC_USAGE, "sweep %s: --force goes with sweep rm", sub);
	if (strcmp(sub, "kill") == 0)
		return sweep_verb(cli, "io.traind.SweepKill");
	if (strcmp(sub, "pause") == 0)
		return sweep_verb(cli, "io.traind.SweepPause");
	if (strcmp(sub, "resume") == 0)
		return sweep_verb(cli, "io.traind.SweepResume");
	if (strcmp(sub, "rm") == 0)
		return sweep_verb(cli, "io.traind.SweepDelete");
	return failf(RC_USAGE, "sweep: expected start, status, list, wait, pause, resume, kill or rm, got '%.40s'", sub);
}
