/*
 * complete.c - `trainctl __complete -- WORD...`: the candidates for the last
 * WORD of a command line being typed, for the bash and zsh completion
 * scripts (client/completion/), which pass their words and show what this
 * prints.
 *
 * DESIGN. The command line is read against trainctl's own tables (cli.h):
 * the verbs, each verb's flags, which flags take a value; so a verb or flag
 * added there completes with no change to the scripts. Values come from
 * their kind: the fixed choices of a flag (adam, adamw, sgd...), and from
 * traind itself, asked on the socket the line names (--socket) or the
 * default one: job ids (with their names and states as descriptions; for
 * pause, resume and kill only the jobs in a state the verb takes) and
 * dataset names. A line ":files" asks the script to complete file names
 * (--config, --init-from, -o, the files of `dataset import` and `predict`).
 *
 * Output: one candidate a line, "WORD" or "WORD<TAB>DESCRIPTION", only
 * those starting with the word being completed; nothing at all when traind
 * does not answer (within 2 s) or anything else goes wrong: a completion
 * never prints an error into the user's command line. Exit status 0.
 *
 * Thread: trainctl has one.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "msg.h"
#include "reply.h"
#include "varlink.h"
#include "verbs.h"

#define ASK_TIMEOUT_MS 2000

struct line {
	const char *verb_name;        /* the verb given, or NULL */
	const struct verb *verb;
	const char *socket;
	const char *pos[64];          /* the verb's positional words before the current one */
	size_t npos;
	int value_of;                 /* the current word is this option's value; -1 none */
	const char *cur;              /* the word being completed (its value part after "--opt=") */
	char prefix[80];              /* "--opt=" to put back in front of each candidate (zsh) */
	bool given[O_COUNT];
	const char *sweep_value;      /* sweep start: the current word is this sweep flag's value */
};

/* sweep start's own flags (verbs-sweep.c takes them out of argv before the
 * tables see it), each with a value. */
static const char *const sweep_flags[][2] = {
	{ "param", "KEY=DIST: choice(a,b,...), uniform(lo,hi), loguniform(lo,hi), int(lo,hi)" },
	{ "searcher", "grid, random, sha, hyperband or pbt" },
	{ "trials", "how many trials (random, sha)" },
	{ "max-parallel", "trials training at once" },
	{ "seed", "the sweep's seed (its draws)" },
	{ "metric", "what the searcher ranks on" },
	{ "grace-epochs", "sha, hyperband: the first rung's epochs" },
	{ "reduction-factor", "sha, hyperband: the best 1/R go on" },
	{ "max-epochs", "sha, hyperband, pbt: the epochs in all" },
	{ "population", "pbt: its members (the trials)" },
	{ "interval", "pbt: epochs between exploits" },
	{ "quantile", "pbt: the bottom and top fraction (0.25)" },
	{ "perturb", "pbt: a numeric parameter x or / this (1.2)" },
};

static const char *sweep_flag(const char *name)
{
	for (size_t i = 0; i < sizeof(sweep_flags) / sizeof(sweep_flags[0]); i++)
		if (strcmp(name, sweep_flags[i][0]) == 0)
			return sweep_flags[i][0];
	return NULL;
}


static void emit(const struct line *l, const char *word, const char *desc)
{
	if (strncmp(word, l->cur, strlen(l->cur)) != 0)
		return;
	if (desc && *desc)
		printf("%s%s\t%s\n", l->prefix, word, desc);
	else
		printf("%s%s\n", l->prefix, word);
}

/* One call to traind with a short timeout, nothing printed on failure. */
static void sweep_values(const struct line *l)
{
	if (strcmp(l->sweep_value, "searcher") == 0) {
		emit(l, "grid", "the cartesian product of choice() and int() values");
		emit(l, "random", "--trials N draws");
		emit(l, "sha", "successive halving");
		emit(l, "hyperband", "successive halving in brackets");
		emit(l, "pbt", "population based training: exploits and perturbations");
	} else if (strcmp(l->sweep_value, "metric") == 0) {
		static const char *const m[] = { "val_loss", "val_acc", "val_macro_acc", "val_mae", "val_rmse", NULL };

		for (const char *const *w = m; *w; w++)
			emit(l, *w, NULL);
	}
}

static json_t *ask(const struct line *l, const char *method)
{
	struct vl_conn *c = NULL;
	struct vl_reply r = { 0 };
	struct tr_err err = { 0 };
	json_t *out = NULL;

	if (vl_connect(&c, l->socket, ASK_TIMEOUT_MS, &err) == 0 && vl_call(c, method, NULL, false, &err) == 0 &&
	    vl_recv(c, &r, &err) == 0 && !r.error) {
		out = r.params;
		r.params = NULL;
	}
	vl_reply_clear(&r);
	vl_free(c);
	return out;
}

/* The states a verb acts on ("" : any). */
static const char *verb_states(const char *verb)
{
	if (strcmp(verb, "pause") == 0)
		return " running ";
	if (strcmp(verb, "kill") == 0)
		return " queued running ";
	if (strcmp(verb, "resume") == 0)
		return " paused killed failed done ";
	return "";
}

static void jobs(const struct line *l)
{
	json_t *reply = ask(l, "io.traind.List"), *list = json_object_get(reply, "jobs"), *j;
	const char *want = l->verb ? verb_states(l->verb->name) : "";
	size_t i;

	json_array_foreach(list, i, j) {
		const char *name = pstr(j, "name"), *state = pstr(j, "state");
		char id[32], desc[160], pad[40];
		long long v;
		bool dup = false;

		if (!pint(j, "id", &v) || !state)
			continue;
		snprintf(pad, sizeof(pad), " %s ", state);
		if (*want && !strstr(want, pad))
			continue;
		snprintf(id, sizeof(id), "%lld", v);
		for (size_t k = 0; k < l->npos; k++)
			dup = dup || strcmp(l->pos[k], id) == 0;
		if (dup)
			continue;
		snprintf(desc, sizeof(desc), "%.100s (%s)", name && *name ? name : "-", state);
		for (char *p = desc; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
		emit(l, id, desc);
	}
	json_decref(reply);
}

static void datasets(const struct line *l)
{
	json_t *reply = ask(l, "io.traind.Datasets"), *list = json_object_get(reply, "datasets"), *d;
	size_t i;

	json_array_foreach(list, i, d) {
		const char *name = pstr(d, "name");
		long long train = 0, classes = 0;
		char desc[96] = "";

		if (!name)
			continue;
		if (pint(d, "train", &train) && pint(d, "classes", &classes))
			snprintf(desc, sizeof(desc), "%lld training images, %lld classes", train, classes);
		emit(l, name, desc);
	}
	json_decref(reply);
}

static void words(const struct line *l, const char *const *list)
{
	for (; *list; list++)
		emit(l, *list, NULL);
}

/* The values of option o. */
static void values(struct line *l, int o)
{
	static const char *const optimizers[] = { "adam", "adamw", "sgd", NULL };
	static const char *const monitors[] = { "val_loss", "val_acc", "val_macro_acc", NULL };
	static const char *const rngs[] = { "torch", "xoshiro", NULL };
	static const char *const bools[] = { "true", "false", NULL };
	static const char *const splits[] = { "val", "test", NULL };
	static const char *const metrics[] = { "loss", "acc", "lr", NULL };
	static const char *const models[] = { "mlp", "lenet5", NULL };
	static const char *const keeps[] = { "all", NULL };
	static const char *const states[] = { "queued", "running", "paused", "killed", "failed", "done", NULL };

	switch ((enum opt)o) {
	case O_DATASET: datasets(l); break;
	case O_OPTIMIZER: words(l, optimizers); break;
	case O_MONITOR: words(l, monitors); break;
	case O_RNG: words(l, rngs); break;
	case O_FTZ:
	case O_STRICT_NUMERICS: words(l, bools); break;
	case O_SPLIT: words(l, splits); break;
	case O_METRIC: words(l, metrics); break;
	case O_MODEL: words(l, models); break;
	case O_KEEP: words(l, keeps); break;
	case O_FROM: jobs(l); break;
	case O_STATE: {
		/* a list: complete its last item, after what is typed already */
		const char *comma = strrchr(l->cur, ',');

		if (comma) {
			size_t keep = (size_t)(comma + 1 - l->cur);
			size_t used = strlen(l->prefix);

			if (used + keep < sizeof(l->prefix)) {
				memcpy(l->prefix + used, l->cur, keep);
				l->prefix[used + keep] = '\0';
			}
			l->cur = comma + 1;
		}
		words(l, states);
		break;
	}
	case O_CONFIG:
	case O_INIT_FROM:
	case O_OUTPUT:
	case O_SOCKET:
		puts(":files");
		break;
	default:
		break;   /* a number, a name, a SPEC: nothing to offer */
	}
}

static void options(const struct line *l)
{
	opt_mask mask = l->verb ? l->verb->opts : 0;

	for (int o = 0; o < O_COUNT; o++) {
		char word[80];
		bool global = o == O_SOCKET || o == O_JSON || o == O_HELP || o == O_VERSION;

		if (!(global || (mask & OPT_BIT(o))) || (l->given[o] && o != O_STATE))
			continue;
		snprintf(word, sizeof(word), "--%s", opts[o].name);
		emit(l, word, opts[o].help);
	}
	if (l->verb && strcmp(l->verb->name, "sweep") == 0 && l->npos >= 1 && strcmp(l->pos[0], "start") == 0)
		for (size_t i = 0; i < sizeof(sweep_flags) / sizeof(sweep_flags[0]); i++) {
			char word[80];

			snprintf(word, sizeof(word), "--%s", sweep_flags[i][0]);
			emit(l, word, sweep_flags[i][1]);
		}
}

static void positional(const struct line *l)
{
	const struct verb *v = l->verb;

	if (!v) {
		for (size_t i = 0; i < n_verbs; i++)
			if (!verbs[i].hidden)
				emit(l, verbs[i].name, verbs[i].summary);
		return;
	}
	switch (v->job) {
	case JOB_REQUIRED:
	case JOB_OPTIONAL:
		if (l->npos == 0)
			jobs(l);
		return;
	case JOB_MANY:
		jobs(l);
		return;
	case JOB_NONE:
		return;
	case ARGS:
		break;
	}
	if (strcmp(v->name, "help") == 0 && l->npos == 0) {
		for (size_t i = 0; i < n_verbs; i++)
			if (!verbs[i].hidden)
				emit(l, verbs[i].name, verbs[i].summary);
	} else if (strcmp(v->name, "dataset") == 0) {
		if (l->npos == 0) {
			emit(l, "import", "add a dataset from files");
			emit(l, "rm", "remove a dataset no job uses");
		} else if (l->npos == 1 && strcmp(l->pos[0], "rm") == 0) {
			datasets(l);
		} else if (l->npos >= 2 && strcmp(l->pos[0], "import") == 0) {
			puts(":files");
		}
	} else if (strcmp(v->name, "sweep") == 0 && l->npos == 0) {
		emit(l, "start", "start a sweep (--searcher, --param KEY=DIST...)");
		emit(l, "status", "its trials, decisions, lineage and best");
		emit(l, "list", "every sweep");
		emit(l, "wait", "until it is done");
		emit(l, "pause", "pause its trials");
		emit(l, "resume", "take its trials on again");
		emit(l, "kill", "stop it");
		emit(l, "rm", "remove it with its trials' jobs");
	} else if (strcmp(v->name, "predict") == 0) {
		if (l->npos == 0)
			jobs(l);
		else
			puts(":files");
	}
}

int cmd_complete(struct cli *cli)
{
	struct line l;
	size_t n = cli->nargs;
	const char *const *w = cli->args;

	memset(&l, 0, sizeof(l));
	l.socket = cli->socket;
	l.value_of = -1;
	l.cur = n ? w[n - 1] : "";
	/* bash splits "--opt=value" at '=' (COMP_WORDBREAKS): "--opt" "=" "value" */
	if (n >= 2 && strcmp(w[n - 1], "=") == 0) {
		l.cur = "";
		n--;
	} else if (n >= 3 && strcmp(w[n - 2], "=") == 0) {
		n--;
	}
	for (size_t i = 0; i + 1 < n; i++) {
		const char *a = w[i];
		int o = -1;

		if (a[0] == '-' && a[1] == '-') {
			const char *eq = strchr(a, '=');
			char name[64];

			snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - a - 2) : (int)strlen(a + 2), a + 2);
			if (l.verb && strcmp(l.verb->name, "sweep") == 0 && sweep_flag(name)) {
				if (!eq && i + 2 < n)
					i++;   /* its value */
				else if (!eq)
					l.sweep_value = sweep_flag(name);
				continue;
			}
			o = opt_find(name);
			if (o >= 0) {
				l.given[o] = true;
				if (opts[o].value && !eq && i + 2 < n) {
					if (o == O_SOCKET)
						l.socket = w[i + 1];
					i++;   /* its value */
				} else if (opts[o].value && !eq) {
					l.value_of = o;   /* the current word is its value */
				} else if (o == O_SOCKET && eq) {
					l.socket = eq + 1;
				}
			}
			continue;
		}
		if (a[0] == '-' && a[1] && a[1] != '-' && !(a[1] >= '0' && a[1] <= '9')) {
			for (int k = 0; k < O_COUNT; k++)
				if (opts[k].short_name == a[1])
					o = k;
			if (o >= 0 && opts[o].value && !a[2]) {
				if (i + 2 < n)
					i++;
				else
					l.value_of = o;
			}
			continue;
		}
		if (!l.verb) {
			l.verb = verb_find(a);
			if (!l.verb || l.verb->hidden)
				return RC_OK;   /* not a verb: nothing sensible to offer */
		} else if (l.npos < sizeof(l.pos) / sizeof(l.pos[0])) {
			l.pos[l.npos++] = a;
		}
	}
	if (l.sweep_value) {
		sweep_values(&l);
	} else if (l.value_of >= 0) {
		values(&l, l.value_of);
	} else if (l.cur[0] == '-' && l.cur[1] == '-' && strchr(l.cur, '=')) {
		/* zsh keeps "--opt=value" one word */
		const char *eq = strchr(l.cur, '=');
		char name[64];
		int o;

		snprintf(name, sizeof(name), "%.*s", (int)(eq - l.cur - 2), l.cur + 2);
		o = opt_find(name);
		if (o >= 0 && opts[o].value && (size_t)(eq + 1 - l.cur) < sizeof(l.prefix)) {
			snprintf(l.prefix, sizeof(l.prefix), "%.*s", (int)(eq + 1 - l.cur), l.cur);
			l.cur = eq + 1;
			values(&l, o);
		}
	} else if (l.cur[0] == '-') {
		options(&l);
	} else {
		positional(&l);
	}
	return RC_OK;
}
