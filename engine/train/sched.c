/*
 * sched.c - learning-rate schedules, the best epoch and early stopping. See
 * include/traind/sched.h.
 *
 * The schedules are PyTorch 1.13's chainable forms, transcribed expression by
 * expression (torch/optim/lr_scheduler.py): each scheduler's get_lr() reads
 * param_group['lr'] (s->lr) and returns the next one; SequentialLR steps the
 * scheduler whose milestone range holds its epoch, and calls step(0) (the
 * closed form at epoch 0) on the one that starts. Python floats are doubles,
 * Python's % is the floor modulo, a ** b is pow(a, b): the same IEEE
 * operations in the same order give the same bits. A portable job's cos and
 * integer powers are pk_cos64 and pk_pown64 (portable.h: correctly rounded
 * but in rare cases, the same everywhere) instead of libm's, whose last bit
 * depends on the glibc version and on the CPU (its FMA variants); the rates
 * then equal PyTorch's except where glibc's cos or pow is not correctly
 * rounded, by an ulp (doc/portable.md).
 *
 * Grammar (white space allowed between tokens):
 *   spec  := part ('then' part)*
 *   part  := NAME [ '(' [arg (',' arg)*] ')' ]
 *   arg   := [KEY '='] VALUE     VALUE: a number, a word, or N:N:... (milestones)
 */
#include "traind/sched.h"

#include "traind/portable.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 10

/* ---- monitor --------------------------------------------------------- */

const char *monitor_name(enum monitor_kind m)
{
	switch (m) {
	case MONITOR_VAL_LOSS: return "val_loss";
	case MONITOR_VAL_ACC: return "val_acc";
	case MONITOR_VAL_MACRO_ACC: return "val_macro_acc";
	case MONITOR_VAL_MAE: return "val_mae";
	case MONITOR_VAL_RMSE: return "val_rmse";
	}
	return "?";
}

int monitor_parse(const char *s, enum monitor_kind *out)
{
	if (strcmp(s, "val_loss") == 0)
		*out = MONITOR_VAL_LOSS;
	else if (strcmp(s, "val_acc") == 0)
		*out = MONITOR_VAL_ACC;
	else if (strcmp(s, "val_macro_acc") == 0)
		*out = MONITOR_VAL_MACRO_ACC;
	else if (strcmp(s, "val_mae") == 0)
		*out = MONITOR_VAL_MAE;
	else if (strcmp(s, "val_rmse") == 0)
		*out = MONITOR_VAL_RMSE;
	else
		return -EINVAL;
	return 0;
}

static bool monitor_max(enum monitor_kind m)
{
	return m == MONITOR_VAL_ACC || m == MONITOR_VAL_MACRO_ACC;
}

bool monitor_is_accuracy(enum monitor_kind m)
{
	return m == MONITOR_VAL_ACC || m == MONITOR_VAL_MACRO_ACC;
}

bool monitor_is_regression(enum monitor_kind m)
{
	return m == MONITOR_VAL_MAE || m == MONITOR_VAL_RMSE;
}

bool monitor_better(enum monitor_kind m, double a, double b)
{
	return monitor_max(m) ? a > b : a < b;
}

double sched_monitored(enum monitor_kind m, double val_loss, double val_acc, double val_macro_acc,
		       double val_mae, double val_rmse)
{
	switch (m) {
	case MONITOR_VAL_ACC: return val_acc;
	case MONITOR_VAL_MACRO_ACC: return val_macro_acc;
	case MONITOR_VAL_MAE: return val_mae;
	case MONITOR_VAL_RMSE: return val_rmse;
	default: return val_loss;
	}
}

/* ---- parsing ------------------------------------------------------------ */

struct arg {
	char key[24];           /* "" for a positional argument */
	char word[24];          /* a word value (cos, val_acc, true), else "" */
	double num;             /* a number value */
	bool is_num;
	uint32_t n_list;        /* a milestones list N:N:... (n_list >= 1 when given so) */
	uint32_t list[SCHED_MAX_MILESTONES];
	bool is_list;
};

struct parser {
	const char *s;
	size_t pos;
	uint32_t part;          /* 1-based, for messages */
	struct tr_err *err;
};

static int perr(struct parser *p, const char *name, const char *fmt, const char *a)
{
	char msg[200];

	snprintf(msg, sizeof(msg), fmt, a);
	if (name)
		return tr_err_set_key(p->err, -EINVAL, "lr_scheduler", "part %u %s: %s", p->part, name, msg);
	return tr_err_set_key(p->err, -EINVAL, "lr_scheduler", "part %u: %s", p->part, msg);
}

static void skip_ws(struct parser *p)
{
	while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n')
		p->pos++;
}

static bool word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static bool read_word(struct parser *p, char *buf, size_t len)
{
	size_t n = 0;

	skip_ws(p);
	while (word_char(p->s[p->pos])) {
		if (n + 1 >= len)
			return false;
		buf[n++] = p->s[p->pos++];
	}
	buf[n] = '\0';
	return n > 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int read_arg(struct parser *p, struct arg *a, const char *name)
{
	size_t start;
	char *end;

	memset(a, 0, sizeof(*a));
	skip_ws(p);
	start = p->pos;
	if (word_char(p->s[p->pos]) && !is_digit(p->s[p->pos])) {
		char w[24];

		if (!read_word(p, w, sizeof(w)))
			return perr(p, name, "an argument is too long at '%.16s'", p->s + start);
		skip_ws(p);
		if (p->s[p->pos] == '=') {
			p->pos++;
			snprintf(a->key, sizeof(a->key), "%s", w);
			skip_ws(p);
		} else {
			snprintf(a->word, sizeof(a->word), "%s", w);
			return 0;
		}
	}
	start = p->pos;
	if (word_char(p->s[p->pos]) && !is_digit(p->s[p->pos])) {
		if (!read_word(p, a->word, sizeof(a->word)))
			return perr(p, name, "a value is too long at '%.16s'", p->s + start);
		return 0;
	}
	if (!(is_digit(p->s[p->pos]) || p->s[p->pos] == '.' || p->s[p->pos] == '-'))
		return perr(p, name, "expected a value at '%.16s'", p->s + start);
	a->num = strtod(p->s + p->pos, &end);
	if (end == p->s + p->pos || !isfinite(a->num))
		return perr(p, name, "'%.16s' is not a number", p->s + start);
	p->pos = (size_t)(end - p->s);
	a->is_num = true;
	if (p->s[p->pos] == ':') {
		/* A milestone list: whole numbers joined by ':'. */
		a->is_list = true;
		for (;;) {
			if (a->num != floor(a->num) || a->num < 0 || a->num > 1e6)
				return perr(p, name, "milestones must be whole epochs, at '%.16s'",
					    p->s + start);
			if (a->n_list == SCHED_MAX_MILESTONES)
				return perr(p, name, "more than 16 milestones%s", "");
			a->list[a->n_list++] = (uint32_t)a->num;
			if (p->s[p->pos] != ':')
				break;
			p->pos++;
			a->num = strtod(p->s + p->pos, &end);
			if (end == p->s + p->pos)
				return perr(p, name, "expected a milestone at '%.16s'", p->s + p->pos);
			p->pos = (size_t)(end - p->s);
		}
	}
	return 0;
}

static const struct {
	const char *name;
	enum sched_kind kind;
	const char *first;      /* the argument a positional value sets */
} kinds[] = {
	{ "step", SCHED_STEP, "step_size" },
	{ "multistep", SCHED_MULTISTEP, "milestones" },
	{ "exponential", SCHED_EXPONENTIAL, "gamma" },
	{ "cosine", SCHED_COSINE, "t_max" },
	{ "linear", SCHED_LINEAR, "start_factor" },
	{ "onecycle", SCHED_ONECYCLE, "max_lr" },
	{ "plateau", SCHED_PLATEAU, "monitor" },
};

#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

static int want_num(struct parser *p, const char *name, const struct arg *a, double lo, double hi,
		    bool lo_open, double *out)
{
	char what[96];

	if (!a->is_num || a->is_list || !(lo_open ? a->num > lo : a->num >= lo) || a->num > hi) {
		snprintf(what, sizeof(what), "%s must be a number in %s%g, %g]", a->key, lo_open ? "(" : "[",
			 lo, hi);
		return perr(p, name, "%s", what);
	}
	*out = a->num;
	return 0;
}

static int want_uint(struct parser *p, const char *name, const struct arg *a, uint32_t lo, uint32_t hi,
		     uint32_t *out)
{
	char what[96];

	if (!a->is_num || a->is_list || a->num != floor(a->num) || a->num < lo || a->num > hi) {
		snprintf(what, sizeof(what), "%s must be a whole number in [%u, %u]", a->key, lo, hi);
		return perr(p, name, "%s", what);
	}
	*out = (uint32_t)a->num;
	return 0;
}

static int want_bool(struct parser *p, const char *name, const struct arg *a, bool *out)
{
	if (strcmp(a->word, "true") == 0 || strcmp(a->word, "True") == 0)
		*out = true;
	else if (strcmp(a->word, "false") == 0 || strcmp(a->word, "False") == 0)
		*out = false;
	else
		return perr(p, name, "%s must be true or false", a->key);
	return 0;
}

static void part_defaults(struct sched_part *q, enum sched_kind kind)
{
	memset(q, 0, sizeof(*q));
	q->kind = kind;
	q->gamma = 0.1;
	q->start_factor = 1.0 / 3;
	q->end_factor = 1.0;
	q->total_iters = 5;
	q->pct_start = 0.3;
	q->div_factor = 25.0;
	q->final_div_factor = 1e4;
	q->cycle_momentum = true;
	q->base_momentum = 0.85;
	q->max_momentum = 0.95;
	q->factor = 0.1;
	q->patience = 10;
	q->threshold = 1e-4;
}

/* One argument of part q (key already resolved for a positional one). */
static int apply_arg(struct parser *p, const char *name, struct sched_part *q, const struct arg *a,
		     bool *seen_required)
{
	const char *k = a->key;

	switch (q->kind) {
	case SCHED_STEP:
		if (strcmp(k, "step_size") == 0) {
			*seen_required = true;
			return want_uint(p, name, a, 1, 1000000, &q->step_size);
		}
		if (strcmp(k, "gamma") == 0)
			return want_num(p, name, a, 0, 1e6, true, &q->gamma);
		break;
	case SCHED_MULTISTEP:
		if (strcmp(k, "milestones") == 0) {
			if (!a->is_num || (!a->is_list && a->num != floor(a->num)) || a->num < 0)
				return perr(p, name, "milestones must be epochs joined by ':', like 2:4%s", "");
			if (a->is_list) {
				q->n_milestones = a->n_list;
				memcpy(q->milestones, a->list, sizeof(q->milestones));
			} else {
				q->n_milestones = 1;
				q->milestones[0] = (uint32_t)a->num;
			}
			for (uint32_t i = 1; i < q->n_milestones; i++)
				if (q->milestones[i] < q->milestones[i - 1])
					return perr(p, name, "milestones must not decrease%s", "");
			*seen_required = true;
			return 0;
		}
		if (strcmp(k, "gamma") == 0)
			return want_num(p, name, a, 0, 1e6, true, &q->gamma);
		break;
	case SCHED_EXPONENTIAL:
		if (strcmp(k, "gamma") == 0) {
			*seen_required = true;
			return want_num(p, name, a, 0, 1e6, true, &q->gamma);
		}
		break;
	case SCHED_COSINE:
		if (strcmp(k, "t_max") == 0) {
			*seen_required = true;
			return want_uint(p, name, a, 1, 1000000, &q->t_max);
		}
		if (strcmp(k, "eta_min") == 0)
			return want_num(p, name, a, 0, 10, false, &q->eta_min);
		break;
	case SCHED_LINEAR:
		if (strcmp(k, "start_factor") == 0)
			return want_num(p, name, a, 0, 1, true, &q->start_factor);
		if (strcmp(k, "end_factor") == 0)
			return want_num(p, name, a, 0, 1, false, &q->end_factor);
		if (strcmp(k, "total_iters") == 0)
			return want_uint(p, name, a, 1, 1000000, &q->total_iters);
		break;
	case SCHED_ONECYCLE:
		if (strcmp(k, "max_lr") == 0) {
			*seen_required = true;
			return want_num(p, name, a, 0, 10, true, &q->max_lr);
		}
		if (strcmp(k, "pct_start") == 0)
			return want_num(p, name, a, 0, 1, false, &q->pct_start);
		if (strcmp(k, "div_factor") == 0)
			return want_num(p, name, a, 0, 1e12, true, &q->div_factor);
		if (strcmp(k, "final_div_factor") == 0)
			return want_num(p, name, a, 0, 1e12, true, &q->final_div_factor);
		if (strcmp(k, "base_momentum") == 0)
			return want_num(p, name, a, 0, 0.999999, false, &q->base_momentum);
		if (strcmp(k, "max_momentum") == 0)
			return want_num(p, name, a, 0, 0.999999, false, &q->max_momentum);
		if (strcmp(k, "cycle_momentum") == 0)
			return want_bool(p, name, a, &q->cycle_momentum);
		if (strcmp(k, "anneal") == 0 || strcmp(k, "anneal_strategy") == 0) {
			if (strcmp(a->word, "cos") == 0)
				q->anneal_linear = false;
			else if (strcmp(a->word, "linear") == 0)
				q->anneal_linear = true;
			else
				return perr(p, name, "anneal must be cos or linear%s", "");
			return 0;
		}
		break;
	case SCHED_PLATEAU:
		if (strcmp(k, "monitor") == 0) {
			if (monitor_parse(a->word, &q->monitor) < 0)
				return perr(p, name, "monitor must be val_loss, val_acc, val_macro_acc, val_mae or val_rmse%s", "");
			q->has_monitor = true;
			return 0;
		}
		if (strcmp(k, "factor") == 0)
			return want_num(p, name, a, 0, 1, true, &q->factor) < 0 ? -EINVAL
			       : q->factor >= 1.0 ? perr(p, name, "factor must be below 1%s", "") : 0;
		if (strcmp(k, "patience") == 0)
			return want_uint(p, name, a, 0, 1000000, &q->patience);
		if (strcmp(k, "threshold") == 0)
			return want_num(p, name, a, 0, 1, false, &q->threshold);
		if (strcmp(k, "cooldown") == 0)
			return want_uint(p, name, a, 0, 1000000, &q->cooldown);
		if (strcmp(k, "min_lr") == 0)
			return want_num(p, name, a, 0, 10, false, &q->min_lr);
		break;
	default:
		break;
	}
	return perr(p, name, "does not take '%s'", k);
}

static int parse_part(struct parser *p, struct sched_part *q)
{
	char name[24];
	struct arg args[MAX_ARGS];
	size_t nargs = 0, i, start;
	bool seen_required = false;
	int rc;

	skip_ws(p);
	start = p->pos;
	if (!read_word(p, name, sizeof(name)))
		return perr(p, NULL, "expected a schedule name at '%.16s'", p->s + start);
	for (i = 0; i < NKINDS; i++)
		if (strcmp(kinds[i].name, name) == 0)
			break;
	if (i == NKINDS)
		return perr(p, NULL,
			    "unknown schedule '%s' (known: step, multistep, exponential, cosine, linear, onecycle, plateau; joined by 'then')",
			    name);
	part_defaults(q, kinds[i].kind);
	skip_ws(p);
	if (p->s[p->pos] == '(') {
		p->pos++;
		skip_ws(p);
		while (p->s[p->pos] != ')') {
			if (nargs == MAX_ARGS)
				return perr(p, name, "too many arguments%s", "");
			rc = read_arg(p, &args[nargs], name);
			if (rc < 0)
				return rc;
			if (!args[nargs].key[0]) {
				if (nargs != 0)
					return perr(p, name, "only the first argument may go without its name (%s=...)",
						    kinds[i].first);
				snprintf(args[nargs].key, sizeof(args[nargs].key), "%s", kinds[i].first);
			}
			nargs++;
			skip_ws(p);
			if (p->s[p->pos] == ',') {
				p->pos++;
				skip_ws(p);
				if (p->s[p->pos] == ')')
					return perr(p, name, "an argument is missing after ','%s", "");
			} else if (p->s[p->pos] != ')') {
				return perr(p, name, "expected ',' or ')' at '%.16s'", p->s + p->pos);
			}
		}
		p->pos++;
	}
	for (size_t a = 0; a < nargs; a++) {
		for (size_t b = 0; b < a; b++)
			if (strcmp(args[a].key, args[b].key) == 0)
				return perr(p, name, "'%s' is given twice", args[a].key);
		rc = apply_arg(p, name, q, &args[a], &seen_required);
		if (rc < 0)
			return rc;
	}
	switch (q->kind) {
	case SCHED_STEP:
		if (!seen_required)
			return perr(p, name, "step needs step_size, e.g. step(step_size=2,gamma=0.5)%s", "");
		break;
	case SCHED_MULTISTEP:
		if (!seen_required)
			return perr(p, name, "multistep needs milestones, e.g. multistep(milestones=2:4)%s", "");
		break;
	case SCHED_EXPONENTIAL:
		if (!seen_required)
			return perr(p, name, "exponential needs gamma, e.g. exponential(gamma=0.9)%s", "");
		break;
	case SCHED_COSINE:
		if (!seen_required)
			return perr(p, name, "cosine needs t_max, e.g. cosine(t_max=10)%s", "");
		break;
	case SCHED_ONECYCLE:
		if (!seen_required)
			return perr(p, name, "onecycle needs max_lr, e.g. onecycle(max_lr=0.01)%s", "");
		if (q->cycle_momentum && q->base_momentum > q->max_momentum)
			return perr(p, name, "base_momentum must not exceed max_momentum%s", "");
		break;
	default:
		break;
	}
	return 0;
}

int sched_parse(struct sched_spec *out, const char *text, uint32_t epochs, struct tr_err *err)
{
	struct parser p = { .s = text, .pos = 0, .part = 1, .err = err };
	uint32_t start = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (strlen(text) >= SCHED_TEXT_MAX)
		return tr_err_set_key(err, -EINVAL, "lr_scheduler", "the SPEC is longer than %d bytes",
				      SCHED_TEXT_MAX - 1);
	skip_ws(&p);
	if (!text[p.pos])
		return 0;
	for (;;) {
		struct sched_part *q;
		char word[8];
		size_t save;

		if (out->n == SCHED_MAX_PARTS)
			return tr_err_set_key(err, -EINVAL, "lr_scheduler", "more than %d schedules joined by 'then'",
					      SCHED_MAX_PARTS);
		q = &out->parts[out->n];
		rc = parse_part(&p, q);
		if (rc < 0)
			return rc;
		out->n++;
		skip_ws(&p);
		if (!text[p.pos])
			break;
		save = p.pos;
		if (!read_word(&p, word, sizeof(word)) || strcmp(word, "then") != 0) {
			p.pos = save;
			return tr_err_set_key(err, -EINVAL, "lr_scheduler",
					      "after part %u: expected 'then' or the end at '%.16s'", out->n,
					      text + p.pos);
		}
		p.part++;
	}
	/* SequentialLR's milestones: each part but the last has a length. */
	for (uint32_t i = 0; i < out->n; i++) {
		const struct sched_part *q = &out->parts[i];

		if (out->n > 1 && (q->kind == SCHED_ONECYCLE || q->kind == SCHED_PLATEAU))
			return tr_err_set_key(err, -EINVAL, "lr_scheduler",
					      "part %u %s: only step, multistep, exponential, cosine and linear join with 'then' (as in PyTorch's SequentialLR)",
					      i + 1, q->kind == SCHED_ONECYCLE ? "onecycle" : "plateau");
		if (i + 1 < out->n) {
			if (q->kind == SCHED_LINEAR)
				start += q->total_iters;
			else if (q->kind == SCHED_COSINE)
				start += q->t_max;
			else
				return tr_err_set_key(err, -EINVAL, "lr_scheduler",
						      "part %u: a schedule before 'then' must have a length (linear's total_iters or cosine's t_max)",
						      i + 1);
			out->milestones[i] = start;
			if (epochs && start >= epochs)
				return tr_err_set_key(err, -EINVAL, "lr_scheduler",
						      "part %u ends at epoch %u, not before the last epoch (epochs %u): part %u would never run",
						      i + 1, start, epochs, i + 2);
		}
		if (q->kind == SCHED_MULTISTEP && epochs)
			for (uint32_t m = 0; m < q->n_milestones; m++)
				if (q->milestones[m] >= epochs)
					return tr_err_set_key(err, -EINVAL, "lr_scheduler",
							      "part %u multistep: milestone %u is past the last epoch (epochs %u: the rate changes after epochs 1 to %u)",
							      i + 1, q->milestones[m], epochs, epochs - 1);
		if (q->kind == SCHED_STEP && epochs && q->step_size >= epochs)
			return tr_err_set_key(err, -EINVAL, "lr_scheduler",
					      "part %u step: step_size %u is not below epochs %u: the rate would never change",
					      i + 1, q->step_size, epochs);
	}
	return 0;
}

bool sched_is_per_batch(const struct sched_spec *spec)
{
	return spec->n == 1 && spec->parts[0].kind == SCHED_ONECYCLE;
}

bool sched_cycles_momentum(const struct sched_spec *spec)
{
	return sched_is_per_batch(spec) && spec->parts[0].cycle_momentum;
}

/* ---- the schedulers ----------------------------------------------------- */

/* Python's a % b for b > 0. */
static int64_t py_mod(int64_t a, int64_t b)
{
	int64_t r = a % b;

	return r < 0 ? r + b : r;
}

static uint32_t milestone_count(const struct sched_part *q, int64_t e)
{
	uint32_t c = 0;

	for (uint32_t i = 0; i < q->n_milestones; i++)
		c += (int64_t)q->milestones[i] == e;
	return c;
}

/* bisect_right(sorted milestones, e) */
static uint32_t milestone_bisect(const struct sched_part *q, int64_t e)
{
	uint32_t c = 0;

	for (uint32_t i = 0; i < q->n_milestones; i++)
		c += (int64_t)q->milestones[i] <= e;
	return c;
}

/* cos and gamma ** n by the job's kernels (see the top). */
static double s_cos(bool portable, double x)
{
	return portable ? pk_cos64(x) : cos(x);
}

static double s_pow(bool portable, double x, int64_t n)
{
	return portable ? pk_pown64(x, (uint64_t)n) : pow(x, (double)n);
}

/* get_lr(): the chainable form at q's last_epoch e, from lr = group['lr']. */
static double chain_lr(const struct sched_part *q, int64_t e, double lr, double base_lr, bool pt)
{
	switch (q->kind) {
	case SCHED_STEP:
		if (e == 0 || e % q->step_size != 0)
			return lr;
		return lr * q->gamma;
	case SCHED_MULTISTEP: {
		uint32_t c = milestone_count(q, e);

		if (!c)
			return lr;
		return lr * s_pow(pt, q->gamma, c);
	}
	case SCHED_EXPONENTIAL:
		if (e == 0)
			return lr;
		return lr * q->gamma;
	case SCHED_COSINE: {
		double t = (double)q->t_max;

		if (e == 0)
			return lr;
		/* (_step_count == 1 and last_epoch > 0 happens only when a
		 * scheduler is built with last_epoch set: never here.) */
		if (py_mod(e - 1 - (int64_t)q->t_max, 2 * (int64_t)q->t_max) == 0)
			return lr + (base_lr - q->eta_min) * (1 - s_cos(pt, M_PI / t)) / 2;
		return (1 + s_cos(pt, M_PI * (double)e / t)) / (1 + s_cos(pt, M_PI * (double)(e - 1) / t)) *
			       (lr - q->eta_min) + q->eta_min;
	}
	case SCHED_LINEAR:
		if (e == 0)
			return lr * q->start_factor;
		if (e > (int64_t)q->total_iters)
			return lr;
		return lr * (1. + (q->end_factor - q->start_factor) /
					  ((double)q->total_iters * q->start_factor +
					   (double)(e - 1) * (q->end_factor - q->start_factor)));
	default:
		return lr;
	}
}

/* _get_closed_form_lr() at epoch e (SequentialLR's step(0)). */
static double closed_lr(const struct sched_part *q, int64_t e, double base_lr, bool pt)
{
	switch (q->kind) {
	case SCHED_STEP:
		return base_lr * s_pow(pt, q->gamma, e / q->step_size);
	case SCHED_MULTISTEP:
		return base_lr * s_pow(pt, q->gamma, milestone_bisect(q, e));
	case SCHED_EXPONENTIAL:
		return base_lr * s_pow(pt, q->gamma, e);
	case SCHED_COSINE:
		return q->eta_min + (base_lr - q->eta_min) *
					    (1 + s_cos(pt, M_PI * (double)e / (double)q->t_max)) / 2;
	case SCHED_LINEAR: {
		int64_t m = e < (int64_t)q->total_iters ? e : (int64_t)q->total_iters;

		return base_lr * (q->start_factor +
				  (q->end_factor - q->start_factor) * (double)m / (double)q->total_iters);
	}
	default:
		return base_lr;
	}
}

/* OneCycleLR: the total steps, the phases, and its get_lr at step_num. */
static double anneal(bool linear, double start, double end, double pct, bool pt)
{
	if (linear)
		return (end - start) * pct + start;
	return end + (start - end) / 2.0 * (s_cos(pt, M_PI * pct) + 1);
}

static void onecycle_at(const struct sched *s, int64_t step_num, double *lr, double *momentum)
{
	const struct sched_part *q = &s->spec.parts[0];
	double total = (double)((uint64_t)s->cfg.epochs * s->cfg.steps_per_epoch);
	double initial_lr = q->max_lr / q->div_factor;
	double min_lr = initial_lr / q->final_div_factor;
	double end0 = (double)(q->pct_start * total) - 1, end1 = total - 1;
	double pct;
	bool pt = s->cfg.portable;

	if ((double)step_num <= end0) {
		pct = ((double)step_num - 0) / (end0 - 0);
		*lr = anneal(q->anneal_linear, initial_lr, q->max_lr, pct, pt);
		*momentum = anneal(q->anneal_linear, q->max_momentum, q->base_momentum, pct, pt);
	} else {
		pct = ((double)step_num - end0) / (end1 - end0);
		*lr = anneal(q->anneal_linear, q->max_lr, min_lr, pct, pt);
		*momentum = anneal(q->anneal_linear, q->base_momentum, q->max_momentum, pct, pt);
	}
}

void sched_init(struct sched *s, const struct sched_spec *spec, const struct sched_config *cfg)
{
	memset(s, 0, sizeof(*s));
	s->spec = *spec;
	s->cfg = *cfg;
	s->lr = cfg->lr;
	s->momentum = cfg->beta1_or_momentum;
	s->plateau_best = monitor_max(spec->parts[0].monitor) ? -INFINITY : INFINITY;
	s->best_value = NAN;
	s->es_best = monitor_max(cfg->monitor) ? -INFINITY : INFINITY;
	if (spec->n && spec->parts[0].kind == SCHED_PLATEAU && !spec->parts[0].has_monitor) {
		s->spec.parts[0].monitor = cfg->monitor;
		s->plateau_best = monitor_max(cfg->monitor) ? -INFINITY : INFINITY;
	}
	if (spec->n == 0 || spec->parts[0].kind == SCHED_PLATEAU) {
		/* ReduceLROnPlateau's constructor leaves the rate alone. */
	} else if (spec->parts[0].kind == SCHED_ONECYCLE) {
		/* group['initial_lr'] = max_lr / div_factor; the initial step
		 * then computes step 0's rate (and momentum). */
		double m = 0;

		onecycle_at(s, 0, &s->lr, &m);
		if (spec->parts[0].cycle_momentum)
			s->momentum = m;
	} else {
		/* Each constructor's initial step: last_epoch 0. SequentialLR
		 * then puts the rate back to initial_lr and redoes only the
		 * first one's initial step, so only the first counts. */
		s->last_epoch[0] = 0;
		s->lr = chain_lr(&s->spec.parts[0], 0, cfg->lr, cfg->lr, cfg->portable);
		for (uint32_t i = 1; i < spec->n; i++)
			s->last_epoch[i] = -1;
		s->seq_epoch = 0;
	}
	s->epoch_lr = s->lr;
}

void sched_after_batch(struct sched *s)
{
	double m = 0;

	if (!sched_is_per_batch(&s->spec))
		return;
	s->last_epoch[0]++;
	onecycle_at(s, s->last_epoch[0], &s->lr, &m);
	if (s->spec.parts[0].cycle_momentum)
		s->momentum = m;
}

/* ReduceLROnPlateau.step(metrics). */
static void plateau_step(struct sched *s, double current)
{
	const struct sched_part *q = &s->spec.parts[0];
	bool better;

	s->last_epoch[0]++;
	if (monitor_max(q->monitor))
		better = current > s->plateau_best * (q->threshold + 1.);
	else
		better = current < s->plateau_best * (1. - q->threshold);
	if (better) {
		s->plateau_best = current;
		s->plateau_bad = 0;
	} else {
		s->plateau_bad++;
	}
	if (s->plateau_cooldown > 0) {
		s->plateau_cooldown--;
		s->plateau_bad = 0;
	}
	if (s->plateau_bad > (int64_t)q->patience) {
		double old_lr = s->lr;
		double new_lr = old_lr * q->factor > q->min_lr ? old_lr * q->factor : q->min_lr;

		if (old_lr - new_lr > 1e-8)
			s->lr = new_lr;
		s->plateau_cooldown = q->cooldown;
		s->plateau_bad = 0;
	}
}

/* The epoch schedulers' step (SequentialLR's when there are parts after the first). */
static void epoch_step(struct sched *s)
{
	uint32_t idx = 0;
	const struct sched_part *q;

	if (s->spec.n == 1) {
		s->last_epoch[0]++;
		s->lr = chain_lr(&s->spec.parts[0], s->last_epoch[0], s->lr, s->cfg.lr, s->cfg.portable);
		return;
	}
	s->seq_epoch++;
	while (idx + 1 < s->spec.n && s->spec.milestones[idx] <= s->seq_epoch)
		idx++;   /* bisect_right(milestones, last_epoch) */
	q = &s->spec.parts[idx];
	if (idx > 0 && s->spec.milestones[idx - 1] == s->seq_epoch) {
		s->last_epoch[idx] = 0;
		s->lr = closed_lr(q, 0, s->cfg.lr, s->cfg.portable);
	} else {
		s->last_epoch[idx]++;
		s->lr = chain_lr(q, s->last_epoch[idx], s->lr, s->cfg.lr, s->cfg.portable);
	}
}

bool sched_after_epoch(struct sched *s, uint32_t epoch, double val_loss, double val_acc,
		       double val_macro_acc, double val_mae, double val_rmse)
{
	enum monitor_kind m = s->cfg.monitor;
	double v = sched_monitored(m, val_loss, val_acc, val_macro_acc, val_mae, val_rmse);
	bool best = false;

	s->note[0] = '\0';
	if (s->spec.n && s->spec.parts[0].kind == SCHED_PLATEAU)
		plateau_step(s, sched_monitored(s->spec.parts[0].monitor, val_loss, val_acc, val_macro_acc,
						val_mae, val_rmse));
	else if (s->spec.n && !sched_is_per_batch(&s->spec))
		epoch_step(s);

	/* The best epoch: strictly better than every earlier one (ties keep
	 * the first, as Lightning's ModelCheckpoint); a NaN is never best. */
	if (!isnan(v) && (s->best_epoch == 0 || monitor_better(m, v, s->best_value))) {
		s->best_value = v;
		s->best_epoch = epoch;
		best = true;
	}

	/* Lightning's EarlyStopping._evaluate_stopping_criteria (check_finite). */
	if (s->cfg.patience) {
		double delta = monitor_max(m) ? s->cfg.min_delta : -s->cfg.min_delta;

		if (!isfinite(v)) {
			s->stopped = true;
			snprintf(s->note, sizeof(s->note), "stopped early after epoch %u: %s is %g",
				 epoch, monitor_name(m), v);
		} else if (monitor_better(m, v - delta, s->es_best)) {
			s->es_best = v;
			s->es_best_epoch = epoch;
			s->es_wait = 0;
		} else {
			s->es_wait++;
			if (s->es_wait >= s->cfg.patience) {
				s->stopped = true;
				if (s->es_best_epoch)
					snprintf(s->note, sizeof(s->note),
						 "stopped early after epoch %u: %s has not improved on %.4g (epoch %u) for %u epoch%s",
						 epoch, monitor_name(m), s->es_best, s->es_best_epoch, s->es_wait,
						 s->es_wait == 1 ? "" : "s");
				else
					snprintf(s->note, sizeof(s->note),
						 "stopped early after epoch %u: %s has not improved for %u epoch%s",
						 epoch, monitor_name(m), s->es_wait, s->es_wait == 1 ? "" : "s");
			}
		}
	}
	return best;
}

/* ---- checkpoint form ---------------------------------------------------- */

void sched_save(const struct sched *s, double *values, int64_t *counts)
{
	values[0] = s->lr;
	values[1] = s->momentum;
	values[2] = s->plateau_best;
	values[3] = s->best_value;
	values[4] = s->es_best;
	values[5] = s->epoch_lr;
	values[6] = s->grad_norm_sum;
	values[7] = 0;
	for (int i = 0; i < SCHED_MAX_PARTS; i++)
		counts[i] = s->last_epoch[i];
	counts[4] = s->seq_epoch;
	counts[5] = s->plateau_bad;
	counts[6] = s->plateau_cooldown;
	counts[7] = s->best_epoch;
	counts[8] = s->es_best_epoch;
	counts[9] = s->es_wait;
	counts[10] = s->stopped;
	counts[11] = (int64_t)s->grad_norm_count;
}

int sched_load(struct sched *s, const double *values, const int64_t *counts, uint32_t epoch,
	       struct tr_err *err)
{
	const char *bad = NULL;

	/* A rate may be 0: cosine reaches eta_min (0 by default) at t_max. */
	if (!isfinite(values[0]) || values[0] < 0 || values[0] > 1e3)
		bad = "the learning rate";
	else if (!isfinite(values[1]) || values[1] < 0 || values[1] >= 1)
		bad = "the momentum";
	else if (!isfinite(values[5]) || values[5] < 0 || values[5] > 1e3)
		bad = "the epoch's learning rate";
	else if (!isfinite(values[6]) || values[6] < 0)
		bad = "the gradient norm sum";
	else if (values[7] != 0)
		bad = "a reserved value";
	else if (isnan(values[2]) || isnan(values[4]))
		bad = "a best value";
	for (int i = 0; !bad && i < 5; i++)
		if (counts[i] < -1 || counts[i] > (int64_t)1 << 40)
			bad = "a scheduler's last_epoch";
	if (!bad && (counts[5] < 0 || counts[6] < 0 || counts[5] > (int64_t)1 << 32 ||
		     counts[6] > (int64_t)1 << 32))
		bad = "the plateau counters";
	else if (!bad && (counts[7] < 0 || counts[7] > epoch || counts[8] < 0 || counts[8] > epoch ||
			  counts[9] < 0 || counts[9] > epoch))
		bad = "the best epoch or the early-stopping counters";
	else if (!bad && (counts[10] != 0 && counts[10] != 1))
		bad = "the stopped flag";
	else if (!bad && (counts[11] < 0 || (counts[11] == 0 && values[6] != 0)))
		bad = "the gradient norm count";
	else if (!bad && (counts[7] == 0) != isnan(values[3]))
		bad = "the best value";
	if (bad)
		return tr_err_set(err, -EINVAL, "checkpoint: schedule state: %s is out of range", bad);
	s->lr = values[0];
	s->momentum = values[1];
	s->plateau_best = values[2];
	s->best_value = values[3];
	s->es_best = values[4];
	s->epoch_lr = values[5];
	s->grad_norm_sum = values[6];
	for (int i = 0; i < SCHED_MAX_PARTS; i++)
		s->last_epoch[i] = counts[i];
	s->seq_epoch = counts[4];
	s->plateau_bad = counts[5];
	s->plateau_cooldown = counts[6];
	s->best_epoch = (uint32_t)counts[7];
	s->es_best_epoch = (uint32_t)counts[8];
	s->es_wait = (uint32_t)counts[9];
	s->stopped = counts[10] == 1;
	s->grad_norm_count = (uint64_t)counts[11];
	return 0;
}
