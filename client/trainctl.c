/*
 * trainctl.c - the command-line client of traind.
 *
 * DESIGN. One verb per run. main() parses the command line against a table
 * of verbs and a table of options (the global ones may appear anywhere, a
 * verb's own ones after the verb), then runs the verb's handler. A handler
 * checks its flag values, builds the call's parameters, talks to the daemon
 * through varlink.c and prints the reply: human text by default, exactly one
 * JSON document (printed by jansson) with --json.
 *
 * Errors: every failure ends in exactly one line "trainctl: ..." on stderr
 * and an exit code from enum rc; nothing is printed on stdout then. Flag
 * values are checked before connecting: configuration keys through the
 * engine's config_set/config_validate (the code the daemon itself uses), so a
 * bad flag never reaches the daemon and its message names the flag.
 *
 * Files: `start --init-from` reads the model here and sends its bytes (the
 * daemon never opens client paths); `export -o` verifies size and SHA-256 of
 * what the daemon sent, then writes it atomically (temp file in the target's
 * directory, fsync, rename, fsync the directory).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "traind-config.h"
#include "traind/base64.h"
#include "traind/config.h"
#include "traind/error.h"
#include "traind/fileio.h"
#include "traind/sha256.h"
#include "varlink.h"

/* Exit codes: a stable interface for scripts. */
enum rc {
	RC_OK = 0,
	RC_ERROR = 1,     /* the daemon said no, or anything else went wrong */
	RC_USAGE = 2,     /* bad command line */
	RC_TIMEOUT = 3,   /* wait: timed out */
	RC_STATE = 4,     /* wait: the job ended in a state not asked for */
};

#define CALL_TIMEOUT_MS (300 * 1000)   /* any single reply except wait's and watch's */
#define WAIT_MARGIN_S 30.0             /* wait --timeout T: the socket waits T + this */
#define INIT_FROM_MAX ((size_t)(VL_MAX_MESSAGE - 65536) / 4 * 3)  /* fits a call in base64 */

enum opt {
	O_SOCKET,
	O_JSON,
	O_HELP,
	O_VERSION,
	O_NAME,
	/* the configuration flags, in the order they are applied: optimizer
	 * before weight_decay, since choosing adamw sets a default decay */
	O_DATASET,
	O_EPOCHS,
	O_BATCH_SIZE,
	O_EVAL_BATCH_SIZE,
	O_LR,
	O_OPTIMIZER,
	O_MOMENTUM,
	O_WEIGHT_DECAY,
	O_HIDDEN,
	O_SEED,
	O_SPLIT_SEED,
	O_VAL_SIZE,
	O_TRAIN_SIZE,
	O_THREADS,
	O_MODEL,
	O_FTZ,
	O_STRICT_NUMERICS,
	O_KEEP,
	O_INIT_FROM,
	O_WEIGHTS_ONLY,
	O_AFTER_EPOCH,
	O_CSV,
	O_EPOCH,
	O_STATE,
	O_TIMEOUT,
	O_SPLIT,
	O_OUTPUT,
	O_FORCE,
	O_COUNT
};

#define CONFIG_FIRST O_DATASET
#define CONFIG_LAST O_STRICT_NUMERICS
#define BIT(o) (UINT64_C(1) << (o))
#define GLOBAL_OPTS (BIT(O_SOCKET) | BIT(O_JSON) | BIT(O_HELP) | BIT(O_VERSION))

struct opt_desc {
	const char *name;     /* long name, without "--" */
	char short_name;      /* 0: none */
	bool value;           /* takes a value */
	const char *key;      /* configuration key (config.h) for start's config flags */
};

static const struct opt_desc opts[O_COUNT] = {
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
};

struct cli;

enum job_arg {
	JOB_NONE,
	JOB_REQUIRED,
	JOB_OPTIONAL,
	JOB_MANY,       /* one or more: JOB... (cli->jobs) */
};

struct verb {
	const char *name;
	int (*run)(struct cli *cli);
	uint64_t opts;        /* the options it takes besides the global ones */
	enum job_arg job;
};

struct cli {
	const struct verb *verb;
	const char *val[O_COUNT];   /* option values (NULL for flags) */
	bool set[O_COUNT];          /* option given */
	int64_t job;                /* JOB (the first, for JOB_MANY), when has_job */
	bool has_job;
	int64_t *jobs;              /* JOB_MANY: every JOB given, in order; owned */
	size_t njobs;
	bool json;
	const char *socket;         /* the socket's path */
	char socket_buf[4096];
	struct vl_conn *conn;       /* connected on first use */
};

static const char *job_states[] = { "queued", "running", "paused", "killed", "failed", "done" };

/* ---- messages --------------------------------------------------------- */

/* Replace control characters, so that text from the daemon or a file can
 * neither break our one-line messages nor drive the terminal. */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

/* Print "trainctl: MESSAGE" as one line on stderr; returns rc. */
static int failf(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int failf(int rc, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	one_line(buf);
	fflush(stdout);
	fprintf(stderr, "trainctl: %s\n", buf);
	return rc;
}

static int malformed(const char *method, const char *field)
{
	return failf(RC_ERROR, "malformed reply from traind: %s reply without a valid \"%s\"", method, field);
}

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
		"        [--strict-numerics true|false] [--keep K|all] [--init-from MODEL.safetensors]\n"
		"                                  queue a new job; prints its id\n"
		"  pause JOB                       checkpoint the exact position, then stop\n"
		"  resume JOB [--weights-only]     continue from the newest checkpoint\n"
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
		"  eval JOB [--split val|test] [--epoch N]\n"
		"                                  loss and accuracy of a checkpoint\n"
		"  export JOB [--epoch N] -o FILE.safetensors\n"
		"                                  write the model (PyTorch names) to FILE\n"
		"  watch JOB                       live progress until the job stops\n"
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
		"was refused)\n");
}

/* ---- small parsers ---------------------------------------------------- */

/* Strict decimal: digits only, no sign, no spaces, within [min, max]. */
static bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
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

static int opt_int(struct cli *cli, enum opt o, int64_t min, int64_t max, int64_t *out)
{
	if (!parse_int(cli->val[o], min, max, out))
		return failf(RC_USAGE, "--%s: expected a whole number in [%lld, %lld], got '%.*s'",
			     opts[o].name, (long long)min, (long long)max, tr_utf8_cut(cli->val[o], TR_QUOTE_MAX),
			     cli->val[o]);
	return RC_OK;
}

/* ---- talking to the daemon -------------------------------------------- */

static int ensure_connected(struct cli *cli)
{
	struct tr_err err = { 0 };
	int rc;

	if (cli->conn)
		return RC_OK;
	rc = vl_connect(&cli->conn, cli->socket, CALL_TIMEOUT_MS, &err);
	if (rc < 0)
		return failf(RC_ERROR, "%s%s", err.msg,
			     rc == -ENOENT || rc == -ECONNREFUSED ? " (is traind running?)" : "");
	return RC_OK;
}

static const char *pstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool pint(json_t *o, const char *key, long long *out)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		return false;
	*out = (long long)json_integer_value(v);
	return true;
}

static bool pnum(json_t *o, const char *key, double *out)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_number(v))
		return false;
	*out = json_number_value(v);
	return true;
}

/* "NoSuchJob" -> "no such job". */
static void decamel(const char *name, char *out, size_t n)
{
	size_t o = 0;

	for (const char *s = name; *s && o + 2 < n; s++) {
		if (*s >= 'A' && *s <= 'Z') {
			if (o > 0)
				out[o++] = ' ';
			out[o++] = (char)(*s - 'A' + 'a');
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
}

/* One line for a daemon error: its name's last component in words, then
 * what its parameters say ("no such job 42"). */
static void describe_error(const struct vl_reply *r, char *out, size_t n)
{
	const char *dot = strrchr(r->error, '.');
	const char *last = dot ? dot + 1 : r->error;
	const char *msg = pstr(r->params, "message");
	const char *state = pstr(r->params, "state");
	const char *param = pstr(r->params, "parameter");
	const char *dataset = pstr(r->params, "dataset");
	char head[128];
	long long id = 0, epoch = 0;
	bool has_id = pint(r->params, "id", &id);
	bool has_epoch = pint(r->params, "epoch", &epoch);
	bool ours = strncmp(r->error, "io.traind.", 10) == 0;
	size_t o;
	const char *key;
	json_t *v;

	decamel(last, head, sizeof(head));
	if (ours && strcmp(last, "NoSuchJob") == 0 && has_id) {
		snprintf(out, n, "no such job %lld", id);
	} else if (ours && strcmp(last, "NoSuchCheckpoint") == 0 && has_id) {
		if (has_epoch)
			snprintf(out, n, "no such checkpoint: job %lld epoch %lld", id, epoch);
		else
			snprintf(out, n, "no such checkpoint: job %lld has none", id);
	} else if (strcmp(last, "InvalidParameter") == 0 && param) {
		snprintf(out, n, "invalid parameter %s%s%s", param, msg ? ": " : "", msg ? msg : "");
	} else if (ours && strcmp(last, "InvalidState") == 0 && has_id && state) {
		snprintf(out, n, "invalid state: job %lld is %s%s%s", id, state, msg ? ": " : "",
			 msg ? msg : "");
	} else if (ours && strcmp(last, "UnexpectedState") == 0 && has_id && state) {
		snprintf(out, n, "unexpected state: job %lld is %s", id, state);
	} else if (ours && strcmp(last, "JobRemoved") == 0 && has_id) {
		snprintf(out, n, "job %lld was removed", id);
	} else if (ours && strcmp(last, "Timeout") == 0 && has_id) {
		snprintf(out, n, "timeout: job %lld", id);
	} else if (ours && strcmp(last, "DatasetError") == 0 && dataset) {
		snprintf(out, n, "dataset error: %s%s%s", dataset, msg ? ": " : "", msg ? msg : "");
	} else if (ours && strcmp(last, "ShuttingDown") == 0 && msg) {
		snprintf(out, n, "%s", msg);
	} else if (ours && strcmp(last, "CheckpointError") == 0 && has_id) {
		snprintf(out, n, "checkpoint error: job %lld%s%s", id, msg ? ": " : "", msg ? msg : "");
	} else {
		/* anything else: "words: key value, key value, message" */
		o = (size_t)snprintf(out, n, "%s", head);
		json_object_foreach(r->params, key, v) {
			char *text;

			if (o >= n || strcmp(key, "message") == 0)
				continue;
			text = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			o += (size_t)snprintf(out + o, n - o, "%s%s %s", o == strlen(head) ? ": " : ", ",
					      key, text ? text : json_is_string(v) ? json_string_value(v) : "?");
			free(text);
		}
		if (msg && o < n)
			snprintf(out + o, n - o, "%s%s", o == strlen(head) ? ": " : ", ", msg);
	}
}

/* Call `method` with `params` (stolen; NULL: none) and read its one reply.
 * On success *out holds the reply's parameters (caller owns). On failure the
 * line is printed and the exit code returned: RC_ERROR, or for Wait RC_TIMEOUT
 * and RC_STATE. */
static int rpc(struct cli *cli, const char *method, json_t *params, json_t **out)
{
	struct vl_reply r = { 0 };
	struct tr_err err = { 0 };
	bool wait = strcmp(method, "io.traind.Wait") == 0;
	int rc;

	*out = NULL;
	rc = ensure_connected(cli);
	if (rc != RC_OK) {
		json_decref(params);
		return rc;
	}
	rc = vl_call(cli->conn, method, params, false, &err);
	json_decref(params);
	if (rc < 0)
		return failf(RC_ERROR, "%s", err.msg);
	rc = vl_recv(cli->conn, &r, &err);
	if (rc < 0)
		return failf(wait && rc == -ETIMEDOUT ? RC_TIMEOUT : RC_ERROR, "%s", err.msg);
	if (r.error) {
		char line[1024];

		rc = RC_ERROR;
		if (wait && strcmp(r.error, "io.traind.Timeout") == 0)
			rc = RC_TIMEOUT;
		else if (wait && strcmp(r.error, "io.traind.UnexpectedState") == 0)
			rc = RC_STATE;
		describe_error(&r, line, sizeof(line));
		vl_reply_clear(&r);
		return failf(rc, "%s", line);
	}
	*out = r.params;
	r.params = NULL;
	vl_reply_clear(&r);
	return RC_OK;
}

/* ---- output ----------------------------------------------------------- */

static int print_json(json_t *doc)
{
	if (json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY) < 0 || putchar('\n') == EOF)
		return failf(RC_ERROR, "cannot print the JSON reply");
	return RC_OK;
}

/* A copy of s fit for one line of a terminal (control characters replaced). */
static char *clean_dup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (d)
		one_line(d);
	return d;
}

#define TABLE_MAX_COLS 10

/* Rows of text cells printed in aligned columns. */
struct table {
	size_t ncols;
	const char *head[TABLE_MAX_COLS];
	bool left[TABLE_MAX_COLS];    /* left-aligned (text); otherwise right (numbers) */
	char **cells;                 /* nrows * ncols, owned */
	size_t nrows, cap;
	bool oom;
};

static void table_add(struct table *t, char *const *row)
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

static void table_print_cell(const char *s, size_t width, bool left, bool last)
{
	size_t pad = width - text_width(s);

	if (!left)
		printf("%*s", (int)pad, "");
	fputs(s, stdout);
	if (left && !last)
		printf("%*s", (int)pad, "");
}

static int table_print(struct table *t)
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
				fputs("  ", stdout);
			table_print_cell(s, width[c], t->left[c], c + 1 == t->ncols);
		}
		putchar('\n');
	}
	return RC_OK;
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
}

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

static void fmt_fixed(json_t *o, const char *key, int prec, char *out, size_t n)
{
	double v;

	if (pnum(o, key, &v))
		snprintf(out, n, "%.*f", prec, v);
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

static void job_table_init(struct table *t)
{
	static const char *head[] = { "id", "name", "state", "epoch", "step", "samples/s", "eta",
				      "val_acc", "checkpoint", "params" };

	memset(t, 0, sizeof(*t));
	t->ncols = sizeof(head) / sizeof(head[0]);
	for (size_t c = 0; c < t->ncols; c++) {
		t->head[c] = head[c];
		t->left[c] = c == 1 || c == 2;
	}
}

static void job_table_add(struct table *t, json_t *job)
{
	char id[32], epoch[64], step[64], sps[32], eta[32], acc[32], ckpt[64], params[32];
	const char *name = pstr(job, "name");
	const char *state = pstr(job, "state");
	json_t *cp = json_object_get(job, "checkpoint");
	long long np;
	double v;
	char *row[10];

	fmt_int(job, "id", id, sizeof(id));
	fmt_pair(job, "epoch", "epochs", epoch, sizeof(epoch));
	fmt_pair(job, "step", "steps_per_epoch", step, sizeof(step));
	if (pnum(job, "samples_per_second", &v) && v > 0)
		snprintf(sps, sizeof(sps), "%.0f", v);
	else
		snprintf(sps, sizeof(sps), "-");
	fmt_eta(job, "eta_seconds", eta, sizeof(eta));
	fmt_fixed(job, "val_acc", 4, acc, sizeof(acc));
	if (json_is_object(cp))
		fmt_pair(cp, "epoch", "step", ckpt, sizeof(ckpt));
	else
		snprintf(ckpt, sizeof(ckpt), "-");
	row[0] = id;
	row[1] = (char *)(name && *name ? name : "-");
	row[2] = (char *)(state ? state : "?");
	row[3] = epoch;
	row[4] = step;
	row[5] = sps;
	row[6] = eta;
	row[7] = acc;
	row[8] = ckpt;
	if (pint(job, "params", &np))
		snprintf(params, sizeof(params), "%lld", np);
	else
		snprintf(params, sizeof(params), "-");
	row[9] = params;
	table_add(t, row);
}

/* ---- verbs ------------------------------------------------------------ */

static json_t *id_params(struct cli *cli)
{
	return json_pack("{s:I}", "id", (json_int_t)cli->job);
}

/* rpc() with the parameters {"id": JOB}. */
static int rpc_id(struct cli *cli, const char *method, json_t **out)
{
	json_t *params = id_params(cli);

	*out = NULL;
	if (!params)
		return failf(RC_ERROR, "out of memory");
	return rpc(cli, method, params, out);
}

/* A config_set/config_validate error about key K ("K: what") as
 * "--flag: what", the flag found from the key the error names (err->key). */
static int config_error(const struct tr_err *err)
{
	for (int o = CONFIG_FIRST; o <= CONFIG_LAST; o++) {
		size_t kl = strlen(opts[o].key);

		if (strcmp(err->key, opts[o].key) != 0)
			continue;
		if (strncmp(err->msg, opts[o].key, kl) == 0 && err->msg[kl] == ':')
			return failf(RC_USAGE, "--%s:%s", opts[o].name, err->msg + kl + 1);
		return failf(RC_USAGE, "--%s: %s", opts[o].name, err->msg);
	}
	return failf(RC_USAGE, "%s", err->msg);
}

/* The "config" parameter of Start: only the keys given, JSON-typed, after
 * checking them as the daemon will. */
static int build_config(struct cli *cli, json_t **out)
{
	struct train_config cfg;
	struct tr_err err = { 0 };
	json_t *obj = json_object();

	*out = NULL;
	if (!obj)
		return failf(RC_ERROR, "out of memory");
	config_defaults(&cfg);
	for (int o = CONFIG_FIRST; o <= CONFIG_LAST; o++) {
		if (cli->set[o] && config_set(&cfg, opts[o].key, cli->val[o], &err) < 0) {
			json_decref(obj);
			return config_error(&err);
		}
	}
	if (config_validate(&cfg, &err) < 0) {
		json_decref(obj);
		return config_error(&err);
	}
	for (int o = CONFIG_FIRST; o <= CONFIG_LAST; o++) {
		json_t *v = NULL;

		if (!cli->set[o])
			continue;
		switch ((enum opt)o) {
		case O_DATASET: v = json_string(cfg.dataset); break;
		case O_EPOCHS: v = json_integer(cfg.epochs); break;
		case O_BATCH_SIZE: v = json_integer(cfg.batch_size); break;
		case O_EVAL_BATCH_SIZE: v = json_integer(cfg.eval_batch_size); break;
		case O_LR: v = json_real(cfg.lr); break;
		case O_OPTIMIZER: v = json_string(config_optim_name(cfg.optimizer)); break;
		case O_MOMENTUM: v = json_real(cfg.momentum); break;
		case O_WEIGHT_DECAY: v = json_real(cfg.weight_decay); break;
		case O_SEED: v = json_integer((json_int_t)cfg.seed); break;
		case O_SPLIT_SEED: v = json_integer((json_int_t)cfg.split_seed); break;
		case O_VAL_SIZE: v = json_integer(cfg.val_size); break;
		case O_TRAIN_SIZE: v = json_integer(cfg.train_size); break;
		case O_THREADS: v = json_integer(cfg.threads); break;
		case O_MODEL: v = json_string(cfg.model); break;
		case O_FTZ: v = json_boolean(cfg.ftz); break;
		case O_STRICT_NUMERICS: v = json_boolean(cfg.strict_numerics); break;
		case O_HIDDEN:
			v = json_array();
			for (uint32_t i = 0; v && i < cfg.n_hidden; i++)
				if (json_array_append_new(v, json_integer(cfg.hidden[i]))) {
					json_decref(v);
					v = NULL;
				}
			break;
		default:
			break;
		}
		if (json_object_set_new(obj, opts[o].key, v)) {
			json_decref(obj);
			return failf(RC_ERROR, "out of memory");
		}
	}
	*out = obj;
	return RC_OK;
}

/* The bytes of the file at `path`, base64-encoded, for init_from. */
static int read_init_from(const char *path, char **out)
{
	struct tr_err err = { 0 };
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = RC_OK;

	*out = NULL;
	if (file_read_all(path, INIT_FROM_MAX, &buf, &len, &err) < 0)
		return failf(err.code == -ENOMEM ? RC_ERROR : RC_USAGE, "--init-from: %s", err.msg);
	if (len == 0)
		rc = failf(RC_USAGE, "--init-from: %s: the file is empty", path);
	else if (!(*out = base64_encode(buf, len)))
		rc = failf(RC_ERROR, "out of memory");
	free(buf);
	return rc;
}

static int cmd_start(struct cli *cli)
{
	json_t *params, *config = NULL, *reply = NULL;
	char *init = NULL;
	int64_t keep = 0;
	long long id;
	int rc;

	if (cli->set[O_KEEP] && strcmp(cli->val[O_KEEP], "all") != 0 &&
	    !parse_int(cli->val[O_KEEP], 0, INT32_MAX, &keep))
		return failf(RC_USAGE, "--keep: expected a number of checkpoints >= 0 or 'all', got '%.*s'",
			     tr_utf8_cut(cli->val[O_KEEP], TR_QUOTE_MAX), cli->val[O_KEEP]);
	if (cli->set[O_KEEP] && strcmp(cli->val[O_KEEP], "all") == 0)
		keep = -1;
	rc = build_config(cli, &config);
	if (rc != RC_OK)
		return rc;
	params = json_object();
	if (!params || json_object_set_new(params, "config", config)) {
		json_decref(params);
		return failf(RC_ERROR, "out of memory");
	}
	if (cli->set[O_NAME]) {
		json_t *name = json_string(cli->val[O_NAME]);

		if (!name) {
			json_decref(params);
			return failf(RC_USAGE, "--name: not valid UTF-8 text");
		}
		json_object_set_new(params, "name", name);
	}
	if (cli->set[O_KEEP])
		json_object_set_new(params, "keep", json_integer((json_int_t)keep));
	if (cli->set[O_INIT_FROM]) {
		rc = read_init_from(cli->val[O_INIT_FROM], &init);
		if (rc != RC_OK) {
			json_decref(params);
			return rc;
		}
		if (json_object_set_new(params, "init_from", json_stringn_nocheck(init, strlen(init)))) {
			free(init);
			json_decref(params);
			return failf(RC_ERROR, "out of memory");
		}
		free(init);
	}
	rc = rpc(cli, "io.traind.Start", params, &reply);
	if (rc != RC_OK)
		return rc;
	if (!pint(reply, "id", &id)) {
		json_decref(reply);
		return malformed("Start", "id");
	}
	if (cli->json) {
		json_t *doc = json_pack("{s:I}", "id", (json_int_t)id);

		rc = doc ? print_json(doc) : failf(RC_ERROR, "out of memory");
		json_decref(doc);
	} else {
		printf("%lld\n", id);
	}
	json_decref(reply);
	return rc;
}

/* Pause, Resume, Kill: "job 3: paused". */
static int state_verb(struct cli *cli, const char *method, const char *short_name, json_t *params)
{
	json_t *reply = NULL;
	long long id = cli->job;
	const char *state;
	int rc;

	if (!params)
		return failf(RC_ERROR, "out of memory");
	rc = rpc(cli, method, params, &reply);
	if (rc != RC_OK)
		return rc;
	state = pstr(reply, "state");
	if (!state) {
		rc = malformed(short_name, "state");
	} else if (cli->json) {
		rc = print_json(reply);
	} else {
		char *s = clean_dup(state);

		pint(reply, "id", &id);
		printf("job %lld: %s\n", id, s ? s : "?");
		free(s);
	}
	json_decref(reply);
	return rc;
}

static int cmd_pause(struct cli *cli)
{
	return state_verb(cli, "io.traind.Pause", "Pause", id_params(cli));
}

static int cmd_resume(struct cli *cli)
{
	json_t *p = id_params(cli);

	if (p && cli->set[O_WEIGHTS_ONLY])
		json_object_set_new(p, "weights_only", json_true());
	return state_verb(cli, "io.traind.Resume", "Resume", p);
}

static int cmd_kill(struct cli *cli)
{
	json_t *p;
	int64_t after = 0;
	int rc;

	if (cli->set[O_AFTER_EPOCH]) {
		rc = opt_int(cli, O_AFTER_EPOCH, 1, 100000, &after);
		if (rc != RC_OK)
			return rc;
	}
	p = id_params(cli);
	if (p && cli->set[O_AFTER_EPOCH])
		json_object_set_new(p, "after_epoch", json_integer((json_int_t)after));
	return state_verb(cli, "io.traind.Kill", "Kill", p);
}

static int parse_states(const char *list, json_t **out);

static int cmd_list(struct cli *cli)
{
	json_t *reply = NULL, *jobs, *job, *params = NULL, *states = NULL;
	struct table t;
	size_t i;
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
		rc = print_json(jobs);
		json_decref(reply);
		return rc;
	}
	job_table_init(&t);
	json_array_foreach(jobs, i, job)
		if (json_is_object(job))
			job_table_add(&t, job);
	rc = table_print(&t);
	table_free(&t);
	json_decref(reply);
	return rc;
}

static int cmd_status(struct cli *cli)
{
	json_t *reply = NULL, *job;
	const char *error;
	long long kill_after;
	struct table t;
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
		rc = print_json(job);
		json_decref(reply);
		return rc;
	}
	job_table_init(&t);
	job_table_add(&t, job);
	rc = table_print(&t);
	table_free(&t);
	error = pstr(job, "error");
	if (rc == RC_OK && error && *error) {
		char *e = clean_dup(error);

		printf("error: %s\n", e ? e : "?");
		free(e);
	}
	if (rc == RC_OK && pint(job, "kill_after", &kill_after))
		printf("pending: kill after epoch %lld\n", kill_after);
	if (rc == RC_OK && pstr(job, "model")) {
		char *m = clean_dup(pstr(job, "model"));
		long long np;

		if (pint(job, "params", &np))
			printf("model: %s (%lld parameters)\n", m ? m : "?", np);
		else
			printf("model: %s\n", m ? m : "?");
		free(m);
	}
	if (rc == RC_OK && pstr(job, "numerics")) {
		char *m = clean_dup(pstr(job, "numerics"));

		printf("numerics: %s\n", m ? m : "?");
		free(m);
	}
	json_decref(reply);
	return rc;
}

static const char *history_cols[] = { "epoch", "train_loss", "train_acc", "train_macro_acc", "val_loss",
				      "val_acc", "val_macro_acc", "seconds", "note" };
#define HISTORY_NCOLS (sizeof(history_cols) / sizeof(history_cols[0]))

/* The shortest decimal that reads back as exactly v. */
static void fmt_shortest(double v, char *out, size_t n)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, n, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

static void csv_field(const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	putchar('"');
}

static int history_csv(json_t *rows)
{
	json_t *row;
	size_t i;

	for (size_t c = 0; c < HISTORY_NCOLS; c++)
		printf("%s%s", c ? "," : "", history_cols[c]);
	putchar('\n');
	json_array_foreach(rows, i, row) {
		for (size_t c = 0; c < HISTORY_NCOLS; c++) {
			json_t *v = json_object_get(row, history_cols[c]);
			char num[64];

			if (c)
				putchar(',');
			if (json_is_string(v)) {
				csv_field(json_string_value(v));
			} else if (json_is_integer(v)) {
				printf("%lld", (long long)json_integer_value(v));
			} else if (json_is_real(v)) {
				fmt_shortest(json_real_value(v), num, sizeof(num));
				fputs(num, stdout);
			}
		}
		putchar('\n');
	}
	return RC_OK;
}

static int history_table(json_t *rows)
{
	struct table t;
	json_t *row;
	size_t i;
	int rc;

	memset(&t, 0, sizeof(t));
	t.ncols = HISTORY_NCOLS;
	for (size_t c = 0; c < HISTORY_NCOLS; c++) {
		t.head[c] = history_cols[c];
		t.left[c] = c == HISTORY_NCOLS - 1;
	}
	json_array_foreach(rows, i, row) {
		char cell[HISTORY_NCOLS][64];
		char *cells[HISTORY_NCOLS];
		const char *note = pstr(row, "note");

		fmt_int(row, "epoch", cell[0], sizeof(cell[0]));
		for (size_t c = 1; c + 1 < HISTORY_NCOLS; c++)
			fmt_fixed(row, history_cols[c], c == 7 ? 2 : 4, cell[c], sizeof(cell[c]));
		for (size_t c = 0; c + 1 < HISTORY_NCOLS; c++)
			cells[c] = cell[c];
		cells[HISTORY_NCOLS - 1] = (char *)(note ? note : "");
		table_add(&t, cells);
	}
	rc = table_print(&t);
	table_free(&t);
	return rc;
}

static int cmd_history(struct cli *cli)
{
	json_t *reply = NULL, *rows, *row, *doc;
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
		/* exactly the documented keys, in the documented order */
		doc = json_array();
		json_array_foreach(rows, i, row) {
			json_t *o = json_object();

			for (size_t c = 0; o && c < HISTORY_NCOLS; c++) {
				json_t *v = json_object_get(row, history_cols[c]);

				json_object_set_new(o, history_cols[c], v ? json_incref(v) : json_null());
			}
			if (json_array_append_new(doc, o))
				break;
		}
		rc = doc && json_array_size(doc) == json_array_size(rows) ? print_json(doc)
									   : failf(RC_ERROR, "out of memory");
		json_decref(doc);
	} else if (cli->set[O_CSV]) {
		rc = history_csv(rows);
	} else {
		rc = history_table(rows);
	}
	json_decref(reply);
	return rc;
}

static int cmd_checkpoints(struct cli *cli)
{
	static const char *head[] = { "epoch", "step", "kind", "size", "val_loss", "created", "checksum" };
	json_t *reply = NULL, *list, *cp;
	struct table t;
	size_t i;
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
		rc = print_json(list);
		json_decref(reply);
		return rc;
	}
	memset(&t, 0, sizeof(t));
	t.ncols = sizeof(head) / sizeof(head[0]);
	for (size_t c = 0; c < t.ncols; c++) {
		t.head[c] = head[c];
		t.left[c] = c == 2 || c == 5 || c == 6;
	}
	json_array_foreach(list, i, cp) {
		char epoch[32], step[32], size[32], vloss[32], created[64];
		const char *kind = pstr(cp, "kind"), *sum = pstr(cp, "checksum");
		char *row[7];
		long long when;

		fmt_int(cp, "epoch", epoch, sizeof(epoch));
		fmt_int(cp, "step", step, sizeof(step));
		fmt_int(cp, "size", size, sizeof(size));
		fmt_fixed(cp, "val_loss", 4, vloss, sizeof(vloss));
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
		row[5] = created;
		row[6] = (char *)(sum ? sum : "-");
		table_add(&t, row);
	}
	rc = table_print(&t);
	table_free(&t);
	json_decref(reply);
	return rc;
}

/* "job 3: done (epoch 5/5)" */
static void print_job_state(json_t *job, long long fallback_id)
{
	long long id = fallback_id;
	char epoch[64];
	char *state = clean_dup(pstr(job, "state"));

	pint(job, "id", &id);
	fmt_pair(job, "epoch", "epochs", epoch, sizeof(epoch));
	printf("job %lld: %s (epoch %s)\n", id, state && *state ? state : "?", epoch);
	free(state);
}

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

static int cmd_wait(struct cli *cli)
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
		rc = print_json(job);
	else
		print_job_state(job, cli->job);
	json_decref(reply);
	return rc;
}

static int cmd_eval(struct cli *cli)
{
	json_t *params, *reply = NULL;
	const char *split;
	int64_t epoch = 0;
	long long e, count;
	double loss, acc, macro;
	int rc;

	if (cli->set[O_SPLIT] && strcmp(cli->val[O_SPLIT], "val") != 0 &&
	    strcmp(cli->val[O_SPLIT], "test") != 0)
		return failf(RC_USAGE, "--split: expected val or test, got '%.*s'",
			     tr_utf8_cut(cli->val[O_SPLIT], TR_QUOTE_MAX), cli->val[O_SPLIT]);
	if (cli->set[O_EPOCH]) {
		rc = opt_int(cli, O_EPOCH, 1, 100000, &epoch);
		if (rc != RC_OK)
			return rc;
	}
	params = id_params(cli);
	if (!params)
		return failf(RC_ERROR, "out of memory");
	if (cli->set[O_SPLIT])
		json_object_set_new(params, "split", json_string(cli->val[O_SPLIT]));
	if (cli->set[O_EPOCH])
		json_object_set_new(params, "epoch", json_integer((json_int_t)epoch));
	rc = rpc(cli, "io.traind.Eval", params, &reply);
	if (rc != RC_OK)
		return rc;
	split = pstr(reply, "split");
	if (!pnum(reply, "loss", &loss))
		rc = malformed("Eval", "loss");
	else if (!pnum(reply, "acc", &acc))
		rc = malformed("Eval", "acc");
	else if (!pnum(reply, "macro_acc", &macro))
		rc = malformed("Eval", "macro_acc");
	else if (!pint(reply, "count", &count))
		rc = malformed("Eval", "count");
	else if (!pint(reply, "epoch", &e))
		rc = malformed("Eval", "epoch");
	else if (!split)
		rc = malformed("Eval", "split");
	else if (cli->json)
		rc = print_json(reply);
	else {
		char *s = clean_dup(split);

		printf("job %lld epoch %lld %s: loss %.4f acc %.4f macro_acc %.4f (%lld samples)\n",
		       (long long)cli->job, e, s ? s : "?", loss, acc, macro, count);
		free(s);
	}
	json_decref(reply);
	return rc;
}

static int cmd_export(struct cli *cli)
{
	struct tr_err err = { 0 };
	json_t *params, *reply = NULL, *data;
	const char *sum;
	char hex[SHA256_HEX_LEN + 1];
	uint8_t *bytes = NULL;
	size_t len = 0;
	long long epoch, size;
	int64_t want_epoch = 0;
	int rc;

	if (!cli->set[O_OUTPUT])
		return failf(RC_USAGE, "export: missing -o FILE");
	if (!*cli->val[O_OUTPUT])
		return failf(RC_USAGE, "-o: empty file name");
	if (cli->set[O_EPOCH]) {
		rc = opt_int(cli, O_EPOCH, 1, 100000, &want_epoch);
		if (rc != RC_OK)
			return rc;
	}
	params = id_params(cli);
	if (!params)
		return failf(RC_ERROR, "out of memory");
	if (cli->set[O_EPOCH])
		json_object_set_new(params, "epoch", json_integer((json_int_t)want_epoch));
	rc = rpc(cli, "io.traind.Export", params, &reply);
	if (rc != RC_OK)
		return rc;
	data = json_object_get(reply, "data");
	sum = pstr(reply, "sha256");
	if (!pint(reply, "epoch", &epoch)) {
		rc = malformed("Export", "epoch");
		goto out;
	}
	if (!pint(reply, "size", &size) || size < 0) {
		rc = malformed("Export", "size");
		goto out;
	}
	if (!sum) {
		rc = malformed("Export", "sha256");
		goto out;
	}
	if (!json_is_string(data)) {
		rc = malformed("Export", "data");
		goto out;
	}
	rc = base64_decode(json_string_value(data), json_string_length(data), &bytes, &len);
	if (rc == -ENOMEM) {
		rc = failf(RC_ERROR, "out of memory");
		goto out;
	}
	if (rc < 0) {
		rc = failf(RC_ERROR, "malformed reply from traind: Export's data is not valid base64");
		goto out;
	}
	if ((unsigned long long)size != len) {
		rc = failf(RC_ERROR, "export: received %zu bytes, but traind announced %lld; nothing written",
			   len, size);
		goto out;
	}
	sha256_hex(bytes, len, hex);
	if (strncmp(sum, "sha256:", 7) == 0)
		sum += 7;
	if (strlen(sum) != SHA256_HEX_LEN || strcasecmp(sum, hex) != 0) {
		rc = failf(RC_ERROR, "export: checksum mismatch: received data has sha256 %s, traind announced %.*s; nothing written",
			   hex, tr_utf8_cut(sum, 80), sum);
		goto out;
	}
	if (file_write_atomic(cli->val[O_OUTPUT], bytes, len, &err) < 0) {
		rc = failf(err.code == -EISDIR ? RC_USAGE : RC_ERROR, "%s%s",
			   err.code == -EISDIR ? "-o: " : "", err.msg);
		goto out;
	}
	if (cli->json) {
		json_t *doc = json_pack("{s:s,s:I,s:I,s:s}", "file", cli->val[O_OUTPUT], "epoch",
					(json_int_t)epoch, "size", (json_int_t)len, "sha256", hex);

		if (!doc)  /* a file name that is not UTF-8 */
			doc = json_pack("{s:I,s:I,s:s}", "epoch", (json_int_t)epoch, "size", (json_int_t)len,
					"sha256", hex);
		rc = doc ? print_json(doc) : failf(RC_ERROR, "out of memory");
		json_decref(doc);
	} else {
		char *f = clean_dup(cli->val[O_OUTPUT]);

		printf("wrote %s (%zu bytes, epoch %lld)\n", f ? f : "?", len, epoch);
		free(f);
	}
out:
	free(bytes);
	json_decref(reply);
	return rc;
}

/* One progress line of a Watch reply; with `bar`, a 20-cell progress bar.
 * The epoch shown is the one being trained (committed + 1 while a job is
 * in the middle of one), as training logs count. */
static void watch_line(json_t *p, bool bar, char *out, size_t n)
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
	fmt_fixed(p, "loss", 4, loss, sizeof(loss));
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

static int cmd_watch(struct cli *cli)
{
	struct vl_reply r = { 0 };
	struct tr_err err = { 0 };
	json_t *params, *last = NULL;
	bool tty = !cli->json && isatty(STDOUT_FILENO);
	bool drawn = false;
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
		if (cli->json) {
			json_decref(last);
			last = json_incref(r.params);
		} else if (tty) {
			struct winsize ws;

			watch_line(r.params, true, line, sizeof(line));
			if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 &&
			    (size_t)ws.ws_col - 1 < sizeof(line))
				line[ws.ws_col - 1] = '\0';
			printf("\r%s\033[K", line);
			fflush(stdout);
			drawn = true;
		} else {
			watch_line(r.params, false, line, sizeof(line));
			printf("%s\n", line);
			fflush(stdout);
		}
		if (!r.continues) {
			if (drawn)
				putchar('\n');
			rc = cli->json ? print_json(last) : RC_OK;
			break;
		}
	}
	vl_reply_clear(&r);
	json_decref(last);
	return rc;
}

/* rm JOB... [--force]: one Delete per JOB, in order, each answered on its
 * own line (removed on stdout, refused on stderr); exit 1 if any was
 * refused. --json: one array, an object per JOB answered: {"id", "removed":
 * true, "state"} (the state it was in) or {"id", "removed": false, "error"
 * (the varlink error's name), "message"}. */
static int cmd_rm(struct cli *cli)
{
	json_t *doc = NULL;
	int rc, result = RC_OK;

	if (cli->json && !(doc = json_array()))
		return failf(RC_ERROR, "out of memory");
	rc = ensure_connected(cli);
	for (size_t i = 0; rc == RC_OK && i < cli->njobs; i++) {
		struct vl_reply r = { 0 };
		struct tr_err err = { 0 };
		long long id = cli->jobs[i];
		json_t *params = json_pack("{s:I}", "id", (json_int_t)id), *item = NULL;
		const char *state;
		char line[1024];

		if (params && cli->set[O_FORCE] && json_object_set_new(params, "force", json_true())) {
			json_decref(params);
			params = NULL;
		}
		if (!params) {
			rc = failf(RC_ERROR, "out of memory");
			break;
		}
		rc = vl_call(cli->conn, "io.traind.Delete", params, false, &err);
		json_decref(params);
		if (rc == 0)
			rc = vl_recv(cli->conn, &r, &err);
		if (rc < 0) {
			/* the connection is gone: the remaining jobs are not tried */
			rc = failf(RC_ERROR, "%s", err.msg);
			break;
		}
		state = r.error ? NULL : pstr(r.params, "state");
		if (r.error) {
			describe_error(&r, line, sizeof(line));
			failf(RC_ERROR, "%s", line);
			result = RC_ERROR;
			if (doc)
				item = json_pack("{s:I,s:b,s:s,s:s}", "id", (json_int_t)id, "removed", 0, "error",
						 r.error, "message", line);
		} else if (!state) {
			rc = malformed("Delete", "state");
		} else if (doc) {
			item = json_pack("{s:I,s:b,s:s}", "id", (json_int_t)id, "removed", 1, "state", state);
		} else {
			char *st = clean_dup(state);

			printf("job %lld: removed (was %s)\n", id, st ? st : "?");
			free(st);
		}
		if (rc == RC_OK && doc && (!item || json_array_append_new(doc, item)))
			rc = failf(RC_ERROR, "out of memory");
		vl_reply_clear(&r);
	}
	if (doc && json_array_size(doc) > 0) {
		int prc = print_json(doc);

		if (rc == RC_OK)
			rc = prc;
	}
	json_decref(doc);
	return rc != RC_OK ? rc : result;
}

/* ---- command line ----------------------------------------------------- */

static const struct verb verbs[] = {
	{ "start", cmd_start,
	  BIT(O_NAME) | BIT(O_DATASET) | BIT(O_EPOCHS) | BIT(O_BATCH_SIZE) | BIT(O_EVAL_BATCH_SIZE) |
	  BIT(O_LR) | BIT(O_OPTIMIZER) | BIT(O_MOMENTUM) | BIT(O_WEIGHT_DECAY) | BIT(O_HIDDEN) |
	  BIT(O_SEED) | BIT(O_SPLIT_SEED) | BIT(O_VAL_SIZE) | BIT(O_TRAIN_SIZE) | BIT(O_THREADS) |
	  BIT(O_MODEL) | BIT(O_FTZ) | BIT(O_STRICT_NUMERICS) |
	  BIT(O_KEEP) | BIT(O_INIT_FROM), JOB_NONE },
	{ "pause", cmd_pause, 0, JOB_REQUIRED },
	{ "resume", cmd_resume, BIT(O_WEIGHTS_ONLY), JOB_REQUIRED },
	{ "kill", cmd_kill, BIT(O_AFTER_EPOCH), JOB_REQUIRED },
	{ "status", cmd_status, 0, JOB_OPTIONAL },
	{ "list", cmd_list, BIT(O_STATE), JOB_NONE },
	{ "history", cmd_history, BIT(O_CSV), JOB_REQUIRED },
	{ "checkpoints", cmd_checkpoints, 0, JOB_REQUIRED },
	{ "wait", cmd_wait, BIT(O_EPOCH) | BIT(O_STATE) | BIT(O_TIMEOUT), JOB_REQUIRED },
	{ "eval", cmd_eval, BIT(O_SPLIT) | BIT(O_EPOCH), JOB_REQUIRED },
	{ "export", cmd_export, BIT(O_EPOCH) | BIT(O_OUTPUT), JOB_REQUIRED },
	{ "watch", cmd_watch, 0, JOB_REQUIRED },
	{ "rm", cmd_rm, BIT(O_FORCE), JOB_MANY },
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
	if (!cli->jobs)
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
		if (rc < 0)
			return fflush(stdout) == 0 ? RC_OK : RC_ERROR;
		return rc;
	}
	rc = cli.verb->run(&cli);
	vl_free(cli.conn);
	free(cli.jobs);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		int e = errno;

		/* the result did not reach its reader: that is a failure */
		fprintf(stderr, "trainctl: cannot write to stdout: %s\n", strerror(e));
		return rc == RC_OK ? RC_ERROR : rc;
	}
	return rc;
}
