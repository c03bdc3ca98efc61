/*
 * cli.h - trainctl's command line: the option table, the verb table's
 * entries and the parsed run (struct cli) the verbs are handed.
 *
 * The tables themselves live in trainctl.c, beside main(), which parses
 * argv against them: the global options may appear anywhere, a verb's own
 * ones after the verb. A verb's handler (verbs.h) checks its flag values,
 * builds the call's parameters, talks to the daemon (rpc.h) and prints the
 * reply (render.h). The tables are also what `help`, `VERB --help` and the
 * shell completion (complete.c) read: a verb or flag added there is
 * documented and completed with no other change.
 *
 * Thread: trainctl has one.
 */
#ifndef TRAIND_CLIENT_CLI_H
#define TRAIND_CLIENT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

enum opt {
	O_SOCKET,
	O_JSON,
	O_HELP,
	O_VERSION,
	O_NAME,
	O_CONFIG,
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
	O_BETA1,
	O_BETA2,
	O_EPS,
	O_HIDDEN,
	O_SEED,
	O_SPLIT_SEED,
	O_VAL_SIZE,
	O_TRAIN_SIZE,
	O_THREADS,
	O_MODEL,
	O_FTZ,
	O_STRICT_NUMERICS,
	O_LR_SCHEDULER,
	O_MONITOR,
	O_EARLY_STOP_PATIENCE,
	O_EARLY_STOP_MIN_DELTA,
	O_CLIP_GRAD_NORM,
	O_RNG,
	O_SHARDS,
	O_RANKS,
	O_HOSTS,
	O_MAX_RESTARTS,
	O_LOSS,
	O_LABEL_SMOOTHING,
	O_CLASS_WEIGHTS,
	O_HUBER_DELTA,
	O_POS_WEIGHT,
	O_AUGMENT,
	O_KERNELS,
	O_PRECISION,
	O_CONV,
	O_CONTEXT,
	O_SEQ_KERNELS,
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
	O_METRIC,
	O_BEST,
	O_PER_CLASS,
	O_ALLOW_DATA_CHANGE,
	O_REPLACE,
	O_TOP,
	O_RESIZE,
	O_FROM,
	O_PYTORCH,
	O_VOCAB,
	O_PROMPT,
	O_TOKENS,
	O_TEMPERATURE,
	O_TOP_K,
	O_SWEEP,
	O_COUNT
};

#define CONFIG_FIRST O_DATASET
#define CONFIG_LAST O_SEQ_KERNELS

struct opt_desc {
	const char *name;     /* long name, without "--" */
	char short_name;      /* 0: none */
	bool value;           /* takes a value */
	const char *key;      /* configuration key (config.h) for start's config flags */
	const char *arg;      /* the value's name in help ("N", "adam|adamw|sgd"); NULL: no value */
	const char *help;     /* one line for `VERB --help` */
};

/* Every option, indexed by enum opt (trainctl.c). */
extern const struct opt_desc opts[O_COUNT];

struct cli;

enum job_arg {
	JOB_NONE,
	JOB_REQUIRED,
	JOB_OPTIONAL,
	JOB_MANY,       /* one or more: JOB... (cli->jobs) */
	ARGS,           /* words, not job ids (cli->args): dataset import NAME PATH... */
};

/* A set of options, bit o for option o: more than 64 options (O_COUNT). */
__extension__ typedef unsigned __int128 opt_mask;
#define OPT_BIT(o) ((opt_mask)1 << (o))

struct verb {
	const char *name;
	int (*run)(struct cli *cli);
	opt_mask opts;        /* the options it takes besides the global ones */
	enum job_arg job;
	const char *args;     /* its positional arguments in help ("JOB", "JOB FILE...") */
	const char *summary;  /* one line for `trainctl help` */
	const char *details;  /* more lines for `help VERB` (NULL: none) */
	bool hidden;          /* not listed (the completion's helper) */
};

/* Every verb, in the order help lists them (trainctl.c). */
extern const struct verb verbs[];
extern const size_t n_verbs;

struct cli {
	const struct verb *verb;
	const char *val[O_COUNT];   /* option values (NULL for flags) */
	bool set[O_COUNT];          /* option given */
	int64_t job;                /* JOB (the first, for JOB_MANY), when has_job */
	bool has_job;
	int64_t *jobs;              /* JOB_MANY: every JOB given, in order; owned */
	size_t njobs;
	const char **args;          /* ARGS: the positional words after the verb; owned array */
	size_t nargs;
	bool json;
	const char *socket;         /* the socket's path */
	char socket_buf[4096];
	struct vl_conn *conn;       /* connected on first use (rpc.h) */
	/* start --config FILE: the file's settings (yamlcfg_read: {KEY: {"text",
	 * "line"}}), owned; the daemon's errors about one of its keys name its line */
	json_t *config_file;
};

/* Strict decimal: digits only, no sign, no spaces, within [min, max]. */
bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* The value of option o as parse_int; RC_USAGE with a line naming the flag. */
int opt_int(struct cli *cli, enum opt o, int64_t min, int64_t max, int64_t *out);

/* The option spelled `name` ("batch-size"), -1 if none. */
int opt_find(const char *name);
/* The configuration flag of configuration key `key` ("batch_size" ->
 * O_BATCH_SIZE), -1 if the key has no flag. */
int opt_of_key(const char *key);

/* `help [VERB]`, `VERB --help`: a verb's usage, flags and details, or (NULL)
 * the list of verbs. */
void print_help(FILE *out, const struct verb *v);
/* The verb named `name`, or NULL. */
const struct verb *verb_find(const char *name);

#endif
