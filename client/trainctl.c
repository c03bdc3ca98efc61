/*
 * trainctl.c - the command-line client of traind: main() and its tables.
 *
 * DESIGN. One verb per run. main() parses the command line against a table
 * of verbs and a table of options (cli.h; the global ones may appear
 * anywhere, a verb's own ones after the verb), then runs the verb's handler
 * (verbs.h). A handler checks its flag values, builds the call's parameters,
 * talks to the daemon (rpc.h over varlink.c) and prints the reply
 * (render.h): human text by default, exactly one JSON document (printed by
 * jansson) with --json.
 *
 * Errors: every failure ends in exactly one line "trainctl: ..." on stderr
 * and an exit code from enum rc (msg.h); nothing is printed on stdout then.
 * Flag values are checked before connecting: configuration keys through the
 * engine's config_set/config_validate (the code the daemon itself uses), so
 * a bad flag never reaches the daemon and its message names the flag.
 *
 * Files: `start --init-from` reads the model here and sends its bytes (the
 * daemon never opens client paths); `export -o` verifies size and SHA-256 of
 * what the daemon sent, then writes it atomically (temp file in the target's
 * directory, fsync, rename, fsync the directory).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "traind-config.h"
#include "traind/error.h"
#include "cli.h"
#include "msg.h"
#include "varlink.h"
#include "verbs.h"

#define BIT(o) (UINT64_C(1) << (o))
#define GLOBAL_OPTS (BIT(O_SOCKET) | BIT(O_JSON) | BIT(O_HELP) | BIT(O_VERSION))

const struct opt_desc opts[O_COUNT] = {
	[O_SOCKET] = { "socket", 0, true, NULL },
	[O_JSON] = { "json", 0, false, NULL },
	[O_HELP] = { "help", 'h', false, NULL },
	[O_VERSION] = { "version", 0, false, NULL },
	[O_NAME] = { "name", 0, true, NULL },
	[O_DATASET] = { "dataset", 0, true, "dataset" },
	[O_EPOCHS] = { "epochs", 0, true, "epochs" },
	[O_BATCH_SIZE] = { "batch-size", 0, true, "batch_size" },
	[O_EVAL_BATCH_SIZE] = { "eval-batch-size", 0, true, "eval_batch_size" },
	[O_LR] = { "lr", 0, true, "lr" },
	[O_OPTIMIZER] = { "optimizer", 0, true, "optimizer" },
	[O_MOMENTUM] = { "momentum", 0, true, "momentum" },
	[O_WEIGHT_DECAY] = { "weight-decay", 0, true, "weight_decay" },
	[O_HIDDEN] = { "hidden", 0, true, "hidden" },
	[O_SEED] = { "seed", 0, true, "seed" },
	[O_SPLIT_SEED] = { "split-seed", 0, true, "split_seed" },
	[O_VAL_SIZE] = { "val-size", 0, true, "val_size" },
	[O_TRAIN_SIZE] = { "train-size", 0, true, "train_size" },
	[O_THREADS] = { "threads", 0, true, "threads" },
	[O_MODEL] = { "model", 0, true, "model" },
	[O_FTZ] = { "ftz", 0, true, "ftz" },
	[O_STRICT_NUMERICS] = { "strict-numerics", 0, true, "strict_numerics" },
	[O_LR_SCHEDULER] = { "lr-scheduler", 0, true, "lr_scheduler" },
	[O_MONITOR] = { "monitor", 0, true, "monitor" },
	[O_EARLY_STOP_PATIENCE] = { "early-stop-patience", 0, true, "early_stop_patience" },
	[O_EARLY_STOP_MIN_DELTA] = { "early-stop-min-delta", 0, true, "early_stop_min_delta" },
	[O_CLIP_GRAD_NORM] = { "clip-grad-norm", 0, true, "clip_grad_norm" },
	[O_RNG] = { "rng", 0, true, "rng" },
	[O_SHARDS] = { "shards", 0, true, "shards" },
	[O_RANKS] = { "ranks", 0, true, "ranks" },
	[O_HOSTS] = { "hosts", 0, true, "hosts" },
	[O_MAX_RESTARTS] = { "max-restarts", 0, true, "max_restarts" },
	[O_KEEP] = { "keep", 0, true, NULL },
	[O_INIT_FROM] = { "init-from", 0, true, NULL },
	[O_WEIGHTS_ONLY] = { "weights-only", 0, false, NULL },
	[O_AFTER_EPOCH] = { "after-epoch", 0, true, NULL },
	[O_CSV] = { "csv", 0, false, NULL },
	[O_EPOCH] = { "epoch", 0, true, NULL },
	[O_STATE] = { "state", 0, true, NULL },
	[O_TIMEOUT] = { "timeout", 0, true, NULL },
	[O_SPLIT] = { "split", 0, true, NULL },
	[O_OUTPUT] = { "output", 'o', true, NULL },
	[O_FORCE] = { "force", 0, false, NULL },
	[O_METRIC] = { "metric", 0, true, NULL },
	[O_BEST] = { "best", 0, false, NULL },
	[O_PER_CLASS] = { "per-class", 0, false, NULL },
	[O_ALLOW_DATA_CHANGE] = { "allow-data-change", 0, false, NULL },
	[O_REPLACE] = { "replace", 0, false, NULL },
	[O_TOP] = { "top", 0, true, NULL },
	[O_RESIZE] = { "resize", 0, false, NULL },
	[O_FROM] = { "from", 0, true, NULL },
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: trainctl [--socket PATH] [--json] VERB [ARGS...]\n"
		"Control traind, the training daemon.\n"
		"\n"
		"verbs:\n"
		"  start [--name N] [--dataset mnist|fashion-mnist|NAME] [--epochs 5]\n"
		"        [--batch-size 64] [--eval-batch-size 128] [--lr 0.001]\n"
		"        [--optimizer adam|adamw|sgd] [--momentum M] [--weight-decay W]\n"
		"        [--hidden 256[,128...]] [--seed 42] [--split-seed 42] [--val-size 10000]\n"
		"        [--train-size N] [--threads N] [--model SPEC|mlp|lenet5] [--ftz true|false]\n"
		"        [--strict-numerics true|false] [--lr-scheduler SPEC]\n"
		"        [--monitor val_loss|val_acc|val_macro_acc] [--early-stop-patience N]\n"
		"        [--early-stop-min-delta D] [--clip-grad-norm X]\n"
		"        [--rng torch|xoshiro] [--keep K|all]\n"
		"        [--ranks R [--shards S] [--hosts HOST:SLOTS,...] [--max-restarts 3]]\n"
		"        [--init-from MODEL.safetensors | --from JOB[@EPOCH] [--weights-only]]\n"
		"                                  queue a new job; prints its id; --from: begin\n"
		"                                  from another job's checkpoint (its full state,\n"
		"                                  or with --weights-only its model), with the\n"
		"                                  flags given changed\n"
		"        --lr-scheduler SPEC: step(step_size=N[,gamma=G]), multistep(milestones=2:4[,gamma=G]),\n"
		"          exponential(gamma=G), cosine(t_max=N[,eta_min=E]),\n"
		"          linear([start_factor=F][,end_factor=F][,total_iters=N]),\n"
		"          onecycle(max_lr=L[,pct_start=P][,div_factor=D][,final_div_factor=F][,anneal=cos|linear]),\n"
		"          plateau([monitor=M][,factor=F][,patience=N][,threshold=T][,cooldown=N][,min_lr=L]),\n"
		"          or A then B (SequentialLR), e.g. 'linear(start_factor=0.1,total_iters=2) then cosine(t_max=8)'\n"
		"        --monitor: what the best checkpoint and early stopping go by (val_loss)\n"
		"        --early-stop-patience N: stop after N epochs without an improvement by more\n"
		"          than --early-stop-min-delta (0); --clip-grad-norm X: clip the total gradient 2-norm\n"
		"        --ranks R: R processes through mpirun; --shards S (default R, a multiple of R\n"
		"          dividing the batch): the batch's fixed shards, whose count decides the bits\n"
		);
	fputs(   /* in two: a string literal of at most 4095 bytes */
		"  pause JOB                       checkpoint the exact position, then stop\n"
		"  resume JOB [--weights-only] [--allow-data-change] [--epochs N] [--ranks R]\n"
		"                                  continue from the newest checkpoint (refused\n"
		"                                  if its dataset's files changed, unless allowed);\n"
		"                                  --epochs: up to N epochs in all (also a done job);\n"
		"                                  --ranks: on R ranks (R divides the job's shards)\n"
		"  kill JOB [--after-epoch N]      stop at once (or right after epoch N commits)\n"
		"  status [JOB]                    one job, or all of them\n"
		"  list [--state S[,S...]]         all jobs, or those in a state S\n"
		"  rm JOB... [--force]             remove jobs with their checkpoints and history;\n"
		"                                  a queued or running one only with --force,\n"
		"                                  which kills it first\n"
		"  history JOB [--csv]             per-epoch losses and accuracies\n"
		"  checkpoints JOB                 the job's stored checkpoints\n"
		"  wait JOB [--epoch N] [--state S[,S...]] [--timeout SECONDS]\n"
		"                                  block until epoch N is committed or the job is\n"
		"                                  in a state S (default paused,killed,failed,done)\n"
		"  eval JOB [--split val|test] [--epoch N|--best] [--per-class] [--allow-data-change]\n"
		"                                  loss and accuracy of a checkpoint\n"
		"  export JOB [--epoch N|--best] -o FILE.safetensors\n"
		"                                  write the model (PyTorch names) to FILE\n"
		"  watch JOB                       live progress until the job stops\n"
		"  plot JOB... [--metric loss|acc|lr] [-o FILE.svg|FILE.png]\n"
		"                                  learning curves by epoch: to an SVG or PNG\n"
		"                                  file, or as text on a terminal\n"
		"  counters                        traind's counters since it started: epochs\n"
		"                                  committed, jobs failed, error replies, and\n"
		"                                  the checkpoint commit latency histogram\n"
		"  info                            what traind computes on: the CPU, its features,\n"
		"                                  the BLAS kernel in use, OpenBLAS's own pick, why\n"
		"  datasets                        every dataset: format, sizes, shape, classes,\n"
		"                                  digest, the jobs using it (or its error)\n"
		"  dataset import NAME PATH... [--replace]\n"
		"                                  add a dataset from files you can read (sent\n"
		"                                  to traind as open files)\n"
		"  dataset rm NAME                 remove a dataset no job uses\n"
		"  predict JOB FILE... [--epoch N|--best] [--top K] [--resize]\n"
		"                                  classes and probabilities of the images in\n"
		"                                  PGM/PNG files (one each) or IDX image files\n"
		"\n"
		"options:\n"
		"  --socket PATH   traind's socket (default $TRAIND_SOCKET, else\n"
		"                  $XDG_RUNTIME_DIR/traind/traind.sock if it exists, else\n"
		"                  /run/traind/traind.sock)\n"
		"  --json          print exactly one JSON document\n"
		"  -h, --help      this text\n"
		"  --version       trainctl's version\n"
		"\n"
		"exit status: 0 success, 1 error (from traind or otherwise), 2 usage error,\n"
		"3 wait timed out, 4 wait ended in a state not asked for (rm: 1 if any JOB\n"
		"was refused)\n", out);
}

/* ---- small parsers ---------------------------------------------------- */

/* Strict decimal: digits only, no sign, no spaces, within [min, max]. */
bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	int64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (INT64_MAX - (*s - '0')) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

int opt_int(struct cli *cli, enum opt o, int64_t min, int64_t max, int64_t *out)
{
	if (!parse_int(cli->val[o], min, max, out))
		return failf(RC_USAGE, "--%s: expected a whole number in [%lld, %lld], got '%.*s'",
			     opts[o].name, (long long)min, (long long)max, tr_utf8_cut(cli->val[o], TR_QUOTE_MAX),
			     cli->val[o]);
	return RC_OK;
}

/* ---- command line ----------------------------------------------------- */

static const struct verb verbs[] = {
	{ "start", cmd_start,
	  BIT(O_NAME) | BIT(O_DATASET) | BIT(O_EPOCHS) | BIT(O_BATCH_SIZE) | BIT(O_EVAL_BATCH_SIZE) |
	  BIT(O_LR) | BIT(O_OPTIMIZER) | BIT(O_MOMENTUM) | BIT(O_WEIGHT_DECAY) | BIT(O_HIDDEN) |
	  BIT(O_SEED) | BIT(O_SPLIT_SEED) | BIT(O_VAL_SIZE) | BIT(O_TRAIN_SIZE) | BIT(O_THREADS) |
	  BIT(O_MODEL) | BIT(O_FTZ) | BIT(O_STRICT_NUMERICS) | BIT(O_LR_SCHEDULER) | BIT(O_MONITOR) |
	  BIT(O_EARLY_STOP_PATIENCE) | BIT(O_EARLY_STOP_MIN_DELTA) | BIT(O_CLIP_GRAD_NORM) | BIT(O_RNG) |
	  BIT(O_SHARDS) | BIT(O_RANKS) | BIT(O_HOSTS) | BIT(O_MAX_RESTARTS) |
	  BIT(O_KEEP) | BIT(O_INIT_FROM) | BIT(O_FROM) | BIT(O_WEIGHTS_ONLY), JOB_NONE },
	{ "pause", cmd_pause, 0, JOB_REQUIRED },
	{ "resume", cmd_resume, BIT(O_WEIGHTS_ONLY) | BIT(O_ALLOW_DATA_CHANGE) | BIT(O_EPOCHS) | BIT(O_RANKS),
	  JOB_REQUIRED },
	{ "kill", cmd_kill, BIT(O_AFTER_EPOCH), JOB_REQUIRED },
	{ "status", cmd_status, 0, JOB_OPTIONAL },
	{ "list", cmd_list, BIT(O_STATE), JOB_NONE },
	{ "history", cmd_history, BIT(O_CSV), JOB_REQUIRED },
	{ "checkpoints", cmd_checkpoints, 0, JOB_REQUIRED },
	{ "wait", cmd_wait, BIT(O_EPOCH) | BIT(O_STATE) | BIT(O_TIMEOUT), JOB_REQUIRED },
	{ "eval", cmd_eval, BIT(O_SPLIT) | BIT(O_EPOCH) | BIT(O_BEST) | BIT(O_PER_CLASS) | BIT(O_ALLOW_DATA_CHANGE),
	  JOB_REQUIRED },
	{ "export", cmd_export, BIT(O_EPOCH) | BIT(O_OUTPUT) | BIT(O_BEST), JOB_REQUIRED },
	{ "watch", cmd_watch, 0, JOB_REQUIRED },
	{ "rm", cmd_rm, BIT(O_FORCE), JOB_MANY },
	{ "counters", cmd_counters, 0, JOB_NONE },
	{ "info", cmd_info, 0, JOB_NONE },
	{ "plot", cmd_plot, BIT(O_METRIC) | BIT(O_OUTPUT), JOB_MANY },
	{ "datasets", cmd_datasets, 0, JOB_NONE },
	{ "dataset", cmd_dataset, BIT(O_REPLACE), ARGS },
	{ "predict", cmd_predict, BIT(O_EPOCH) | BIT(O_BEST) | BIT(O_TOP) | BIT(O_RESIZE), ARGS },
};

static void default_socket(struct cli *cli)
{
	const char *env = getenv("TRAIND_SOCKET");
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	/* A user's own daemon first; when the user has none, the system's. */
	if (env && *env)
		cli->socket = env;
	else if (xdg && *xdg &&
		 snprintf(cli->socket_buf, sizeof(cli->socket_buf), "%s/traind/traind.sock", xdg) <
			 (int)sizeof(cli->socket_buf) &&
		 (access(cli->socket_buf, F_OK) == 0 || access("/run/traind/traind.sock", F_OK) != 0))
		cli->socket = cli->socket_buf;
	else
		cli->socket = "/run/traind/traind.sock";
}

static int find_long(const char *name, size_t len)
{
	for (int o = 0; o < O_COUNT; o++)
		if (strlen(opts[o].name) == len && strncmp(opts[o].name, name, len) == 0)
			return o;
	return -1;
}

static int find_short(char c)
{
	for (int o = 0; o < O_COUNT; o++)
		if (opts[o].short_name && opts[o].short_name == c)
			return o;
	return -1;
}

/* A positional argument: the verb, then JOB. */
static int positional(struct cli *cli, const char *arg)
{
	int64_t id;

	if (!cli->verb) {
		for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
			if (strcmp(verbs[i].name, arg) == 0)
				cli->verb = &verbs[i];
		if (!cli->verb)
			return failf(RC_USAGE, "unknown verb '%.*s' (see trainctl --help)",
				     tr_utf8_cut(arg, TR_QUOTE_MAX), arg);
		return RC_OK;
	}
	if (cli->verb->job == ARGS) {
		cli->args[cli->nargs++] = arg;   /* room for every argument: parse_args */
		return RC_OK;
	}
	if (cli->verb->job == JOB_NONE || (cli->has_job && cli->verb->job != JOB_MANY))
		return failf(RC_USAGE, "%s: unexpected argument '%.*s'", cli->verb->name,
			     tr_utf8_cut(arg, TR_QUOTE_MAX), arg);
	if (!parse_int(arg, 1, INT64_MAX, &id))
		return failf(RC_USAGE, "%s: JOB must be a positive integer, got '%.*s'", cli->verb->name,
			     tr_utf8_cut(arg, TR_QUOTE_MAX), arg);
	if (cli->verb->job == JOB_MANY)
		cli->jobs[cli->njobs++] = id;   /* room for every argument: parse_args */
	if (!cli->has_job)
		cli->job = id;
	cli->has_job = true;
	return RC_OK;
}

/* Parse argv into cli. Returns RC_OK, or an exit code (-1: exit 0 now, after
 * --help or --version). */
static int parse_args(struct cli *cli, int argc, char **argv)
{
	bool only_positional = false;
	int rc;

	cli->jobs = calloc((size_t)argc, sizeof(*cli->jobs));
	cli->args = calloc((size_t)argc, sizeof(*cli->args));
	if (!cli->jobs || !cli->args)
		return failf(RC_ERROR, "out of memory");
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *inline_val = NULL;
		char shown[80];
		int o;

		if (only_positional || arg[0] != '-' || arg[1] == '\0' || (arg[1] >= '0' && arg[1] <= '9')) {
			rc = positional(cli, arg);
			if (rc != RC_OK)
				return rc;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			only_positional = true;
			continue;
		}
		if (arg[1] == '-') {
			const char *eq = strchr(arg + 2, '=');
			size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);

			o = find_long(arg + 2, len);
			inline_val = eq ? eq + 1 : NULL;
			snprintf(shown, sizeof(shown), "--%.*s", tr_utf8_cut(arg + 2, len > 64 ? 64 : len), arg + 2);
		} else {
			o = find_short(arg[1]);
			inline_val = arg[2] ? arg + 2 : NULL;
			snprintf(shown, sizeof(shown), "-%c", arg[1]);
		}
		if (o < 0 || (!(GLOBAL_OPTS & BIT(o)) && !(cli->verb && (cli->verb->opts & BIT(o))))) {
			if (cli->verb)
				return failf(RC_USAGE, "%s: unknown option %s", cli->verb->name, shown);
			if (o >= 0)
				return failf(RC_USAGE, "option %s must come after its verb", shown);
			return failf(RC_USAGE, "unknown option %s (see trainctl --help)", shown);
		}
		if (o == O_HELP) {
			usage(stdout);
			return -1;
		}
		if (o == O_VERSION) {
			printf("trainctl %s\n", TRAIND_VERSION);
			return -1;
		}
		if (opts[o].value) {
			if (inline_val) {
				cli->val[o] = inline_val;
			} else if (i + 1 < argc) {
				cli->val[o] = argv[++i];
			} else {
				return failf(RC_USAGE, "%s: missing value", shown);
			}
		} else if (inline_val) {
			return failf(RC_USAGE, "%s takes no value", shown);
		}
		cli->set[o] = true;
	}
	if (!cli->verb)
		return failf(RC_USAGE, "missing verb (see trainctl --help)");
	if ((cli->verb->job == JOB_REQUIRED || cli->verb->job == JOB_MANY) && !cli->has_job)
		return failf(RC_USAGE, "%s: missing JOB", cli->verb->name);
	cli->json = cli->set[O_JSON];
	if (cli->set[O_SOCKET]) {
		if (!*cli->val[O_SOCKET])
			return failf(RC_USAGE, "--socket: empty path");
		cli->socket = cli->val[O_SOCKET];
	} else {
		default_socket(cli);
	}
	return RC_OK;
}

int main(int argc, char **argv)
{
	struct cli cli;
	int rc;

	memset(&cli, 0, sizeof(cli));
	rc = parse_args(&cli, argc, argv);
	if (rc != RC_OK) {
		free(cli.jobs);
		free(cli.args);
		if (rc < 0)
			return fflush(stdout) == 0 ? RC_OK : RC_ERROR;
		return rc;
	}
	rc = cli.verb->run(&cli);
	vl_free(cli.conn);
	free(cli.jobs);
	free(cli.args);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		int e = errno;

		/* the result did not reach its reader: that is a failure */
		fprintf(stderr, "trainctl: cannot write to stdout: %s\n", strerror(e));
		return rc == RC_OK ? RC_ERROR : rc;
	}
	return rc;
}
