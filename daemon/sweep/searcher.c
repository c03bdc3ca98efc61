/*
 * searcher.c - the sweep's specification and the grid and random
 * searchers. See daemon/sweep/searcher.h.
 */
#include "daemon/sweep/searcher.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/config.h"

const char *sweep_searcher_name(enum sweep_searcher s)
{
	switch (s) {
	case SWEEP_GRID: return "grid";
	case SWEEP_RANDOM: return "random";
	case SWEEP_SHA: return "sha";
	case SWEEP_HYPERBAND: return "hyperband";
	case SWEEP_PBT: return "pbt";
	}
	return "?";
}

static const char *dist_name(enum sweep_dist d)
{
	switch (d) {
	case DIST_CHOICE: return "choice";
	case DIST_UNIFORM: return "uniform";
	case DIST_LOGUNIFORM: return "loguniform";
	case DIST_INT: return "int";
	}
	return "?";
}

void sweep_spec_clear(struct sweep_spec *sp)
{
	for (size_t i = 0; i < sp->nparams; i++) {
		json_decref(sp->params[i].choices);
		sp->params[i].choices = NULL;
	}
	sp->nparams = 0;
}

/* A word of a choice(): a number, true/false, else the text itself. */
static json_t *choice_value(const char *w)
{
	char *end;
	double v;

	if (strcmp(w, "true") == 0)
		return json_true();
	if (strcmp(w, "false") == 0)
		return json_false();
	if (*w) {
		long long i = strtoll(w, &end, 10);

		if (*end == '\0')
			return json_integer(i);
		v = strtod(w, &end);
		if (*end == '\0' && isfinite(v))
			return json_real(v);
	}
	return json_string(w);
}

static bool parse_number(const char *s, size_t len, double *out)
{
	char buf[64], *end;

	while (len && *s == ' ')
		s++, len--;
	while (len && s[len - 1] == ' ')
		len--;
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	*out = strtod(buf, &end);
	return *end == '\0' && isfinite(*out);
}

/* "KEY=DIST" into p; err->key "params.KEY" (or "params") on failure. */
static int parse_param(const char *text, struct sweep_param *p, const json_t *defaults, struct tr_err *err)
{
	const char *eq = strchr(text, '='), *open, *close, *args;
	char key[80];
	size_t klen, alen;

	memset(p, 0, sizeof(*p));
	if (!eq || eq == text)
		return tr_err_set_key(err, -EINVAL, "params", "expected KEY=DIST (like lr=loguniform(1e-4,1e-2)), got '%.80s'", text);
	klen = (size_t)(eq - text);
	snprintf(key, sizeof(key), "params.%.*s", (int)(klen > 60 ? 60 : klen), text);
	if (klen >= SWEEP_KEY_MAX || !json_object_get(defaults, key + 7))
		return tr_err_set_key(err, -EINVAL, key, "unknown configuration key '%.*s'", (int)(klen > 60 ? 60 : klen), text);
	if (strcmp(key + 7, "epochs") == 0 || strcmp(key + 7, "dataset") == 0)
		return tr_err_set_key(err, -EINVAL, key, "a sweep's trials share their %s; give it as a plain flag", key + 7);
	memcpy(p->key, text, klen);
	p->key[klen] = '\0';
	snprintf(p->text, sizeof(p->text), "%s", eq + 1);
	open = strchr(eq + 1, '(');
	close = strrchr(eq + 1, ')');
	if (!open || !close || close < open || close[1] != '\0')
		return tr_err_set_key(err, -EINVAL, key, "expected choice(a,b,...), uniform(lo,hi), loguniform(lo,hi) or int(lo,hi), got '%.80s'", eq + 1);
	args = open + 1;
	alen = (size_t)(close - args);
	if ((size_t)(open - eq - 1) == 6 && strncmp(eq + 1, "choice", 6) == 0) {
		const char *w = args;

		p->dist = DIST_CHOICE;
		p->choices = json_array();
		if (!p->choices)
			return tr_err_set_key(err, -ENOMEM, key, "out of memory");
		while (w <= close) {
			const char *c = memchr(w, ',', (size_t)(close - w));
			const char *e = c ? c : close;
			char word[128];
			size_t n = (size_t)(e - w);

			while (n && *w == ' ')
				w++, n--;
			while (n && w[n - 1] == ' ')
				n--;
			if (n == 0 || n >= sizeof(word) || json_array_size(p->choices) >= SWEEP_CHOICES_MAX) {
				json_decref(p->choices);
				p->choices = NULL;
				return tr_err_set_key(err, -EINVAL, key, n ? "too many or too long values (at most %d)" : "an empty value in choice()", SWEEP_CHOICES_MAX);
			}
			memcpy(word, w, n);
			word[n] = '\0';
			json_array_append_new(p->choices, choice_value(word));
			w = e + 1;
		}
		return 0;
	}
	{
		const char *c = memchr(args, ',', alen);
		size_t nlen = (size_t)(open - eq - 1);

		if (nlen == 7 && strncmp(eq + 1, "uniform", 7) == 0)
			p->dist = DIST_UNIFORM;
		else if (nlen == 10 && strncmp(eq + 1, "loguniform", 10) == 0)
			p->dist = DIST_LOGUNIFORM;
		else if (nlen == 3 && strncmp(eq + 1, "int", 3) == 0)
			p->dist = DIST_INT;
		else
			return tr_err_set_key(err, -EINVAL, key, "unknown distribution '%.*s' (choice, uniform, loguniform, int)",
					      (int)(nlen > 40 ? 40 : nlen), eq + 1);
		if (!c || !parse_number(args, (size_t)(c - args), &p->lo) ||
		    !parse_number(c + 1, (size_t)(close - c - 1), &p->hi))
			return tr_err_set_key(err, -EINVAL, key, "%s takes two numbers: %s(lo,hi)", dist_name(p->dist), dist_name(p->dist));
		if (p->lo > p->hi)
			return tr_err_set_key(err, -EINVAL, key, "lo > hi in %s(%g,%g)", dist_name(p->dist), p->lo, p->hi);
		if (p->dist == DIST_LOGUNIFORM && p->lo <= 0)
			return tr_err_set_key(err, -EINVAL, key, "loguniform needs 0 < lo, got %g", p->lo);
		if (p->dist == DIST_INT && (p->lo != floor(p->lo) || p->hi != floor(p->hi) || p->lo < -1e9 || p->hi > 1e9))
			return tr_err_set_key(err, -EINVAL, key, "int takes whole numbers within +-1e9");
	}
	return 0;
}

static int get_u64(const json_t *in, const char *name, uint64_t min, uint64_t max, uint64_t def, uint64_t *out,
		   struct tr_err *err)
{
	const json_t *v = json_object_get(in, name);

	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min ||
	    (uint64_t)json_integer_value(v) > max)
		return tr_err_set_key(err, -EINVAL, name, "expected an integer in [%" PRIu64 ", %" PRIu64 "]", min, max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int sweep_spec_parse(const json_t *in, struct sweep_spec *out, struct tr_err *err)
{
	const json_t *searcher = json_object_get(in, "searcher"), *params = json_object_get(in, "params");
	const json_t *metric = json_object_get(in, "metric");
	struct train_config cfg;
	json_t *defaults;
	uint64_t v = 0;
	uint64_t grid = 1;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(in))
		return tr_err_set_key(err, -EINVAL, "sweep", "expected an object");
	if (!json_is_string(searcher))
		return tr_err_set_key(err, -EINVAL, "searcher", "expected grid or random");
	if (strcmp(json_string_value(searcher), "grid") == 0)
		out->searcher = SWEEP_GRID;
	else if (strcmp(json_string_value(searcher), "random") == 0)
		out->searcher = SWEEP_RANDOM;
	else if (strcmp(json_string_value(searcher), "sha") == 0)
		out->searcher = SWEEP_SHA;
	else if (strcmp(json_string_value(searcher), "hyperband") == 0)
		out->searcher = SWEEP_HYPERBAND;
	else if (strcmp(json_string_value(searcher), "pbt") == 0)
		out->searcher = SWEEP_PBT;
	else
		return tr_err_set_key(err, -EINVAL, "searcher", "'%.40s' is not a searcher this traind has (grid, random, sha, hyperband, pbt)",
				      json_string_value(searcher));
	if (!sweep_adaptive(out)) {
		static const char *const sha_only[] = { "grace_epochs", "reduction_factor", "max_epochs" };

		for (size_t i = 0; i < 3; i++)
			if (!(out->searcher == SWEEP_PBT && i == 2) && json_object_get(in, sha_only[i]) &&
			    !json_is_null(json_object_get(in, sha_only[i])))
				return tr_err_set_key(err, -EINVAL, sha_only[i], "goes with the sha and hyperband searchers");
	}
	if (out->searcher != SWEEP_PBT) {
		static const char *const pbt_only[] = { "population", "interval", "quantile", "perturb" };

		for (size_t i = 0; i < 4; i++)
			if (json_object_get(in, pbt_only[i]) && !json_is_null(json_object_get(in, pbt_only[i])))
				return tr_err_set_key(err, -EINVAL, pbt_only[i], "goes with the pbt searcher");
	}
	if (!metric)
		out->metric = MONITOR_VAL_LOSS;
	else if (!json_is_string(metric) || monitor_parse(json_string_value(metric), &out->metric) < 0)
		return tr_err_set_key(err, -EINVAL, "metric", "expected val_loss, val_acc, val_macro_acc, val_mae or val_rmse");
	if (!json_is_array(params) || json_array_size(params) == 0 || json_array_size(params) > SWEEP_PARAMS_MAX)
		return tr_err_set_key(err, -EINVAL, "params", "expected 1 to %d parameters KEY=DIST", SWEEP_PARAMS_MAX);
	config_defaults(&cfg);
	defaults = config_to_json(&cfg);
	if (!defaults)
		return tr_err_set_key(err, -ENOMEM, "params", "out of memory");
	for (size_t i = 0; i < json_array_size(params) && rc == 0; i++) {
		const json_t *p = json_array_get(params, i);

		if (!json_is_string(p)) {
			rc = tr_err_set_key(err, -EINVAL, "params", "expected KEY=DIST strings");
			break;
		}
		rc = parse_param(json_string_value(p), &out->params[i], defaults, err);
		if (rc == 0)
			out->nparams = i + 1;
		for (size_t k = 0; rc == 0 && k < i; k++)
			if (strcmp(out->params[k].key, out->params[i].key) == 0)
				rc = tr_err_set_key(err, -EINVAL, "params", "'%s' is given twice", out->params[i].key);
	}
	json_decref(defaults);
	if (rc < 0)
		goto fail;
	for (size_t i = 0; out->searcher == SWEEP_PBT && i < out->nparams; i++)
		if (sweep_pbt_frozen_key(out->params[i].key)) {
			char key[SWEEP_KEY_MAX + 8];

			snprintf(key, sizeof(key), "params.%s", out->params[i].key);
			rc = tr_err_set_key(err, -EINVAL, key, "pbt cannot perturb %s: an exploit continues another member's full state, whose %s cannot change",
					    out->params[i].key, out->params[i].key);
			goto fail;
		}
	if (out->searcher == SWEEP_GRID) {
		for (size_t i = 0; i < out->nparams; i++) {
			const struct sweep_param *p = &out->params[i];
			char key[SWEEP_KEY_MAX + 8];

			snprintf(key, sizeof(key), "params.%s", p->key);
			if (p->dist == DIST_UNIFORM || p->dist == DIST_LOGUNIFORM) {
				rc = tr_err_set_key(err, -EINVAL, key, "grid cannot enumerate %s(%g,%g): use choice() or int(), or the random searcher",
						    dist_name(p->dist), p->lo, p->hi);
				goto fail;
			}
			grid *= p->dist == DIST_CHOICE ? json_array_size(p->choices) : (uint64_t)(p->hi - p->lo + 1);
			if (grid > SWEEP_TRIALS_MAX) {
				rc = tr_err_set_key(err, -EINVAL, "params", "the grid has more than %d trials", SWEEP_TRIALS_MAX);
				goto fail;
			}
		}
	}
	if (out->searcher == SWEEP_PBT && json_object_get(in, "population") && !json_is_null(json_object_get(in, "population"))) {
		uint64_t pop = 0;

		rc = get_u64(in, "population", 2, SWEEP_TRIALS_MAX, 0, &pop, err);
		if (rc == 0 && json_object_get(in, "trials") && !json_is_null(json_object_get(in, "trials")) &&
		    (!json_is_integer(json_object_get(in, "trials")) ||
		     (uint64_t)json_integer_value(json_object_get(in, "trials")) != pop))
			rc = tr_err_set_key(err, -EINVAL, "trials", "pbt's trials are its population (%" PRIu64 ")", pop);
		if (rc < 0)
			goto fail;
		v = pop;
	} else {
		rc = get_u64(in, "trials", out->searcher == SWEEP_PBT ? 2 : 1, SWEEP_TRIALS_MAX,
			     out->searcher == SWEEP_GRID ? grid : 0, &v, err);
	}
	if (rc == 0 && v == 0 && out->searcher == SWEEP_PBT)
		rc = tr_err_set_key(err, -EINVAL, "population", "the pbt searcher needs --population P (at least 2)");
	if (rc == 0 && v == 0 && out->searcher != SWEEP_HYPERBAND)
		rc = tr_err_set_key(err, -EINVAL, "trials", "the %s searcher needs --trials N",
				    sweep_searcher_name(out->searcher));
	if (rc == 0 && out->searcher == SWEEP_GRID && v != grid)
		rc = tr_err_set_key(err, -EINVAL, "trials", "the grid has %" PRIu64 " trials, not %" PRIu64, grid, v);
	if (rc < 0)
		goto fail;
	out->trials = (uint32_t)v;
	rc = get_u64(in, "seed", 0, UINT64_MAX >> 1, 0, &out->seed, err);
	if (rc == 0)
		rc = get_u64(in, "max_parallel", 1, 1024, 1, &v, err);
	if (rc < 0)
		goto fail;
	out->max_parallel = (uint32_t)v;
	if (sweep_adaptive(out)) {
		uint64_t g, r, m;

		rc = get_u64(in, "max_epochs", 1, 100000, 0, &m, err);
		if (rc == 0 && m == 0)
			rc = tr_err_set_key(err, -EINVAL, "max_epochs", "the %s searcher needs --max-epochs M",
					    sweep_searcher_name(out->searcher));
		if (rc == 0)
			rc = get_u64(in, "grace_epochs", 1, 100000, 1, &g, err);
		if (rc == 0 && g > m)
			rc = tr_err_set_key(err, -EINVAL, "grace_epochs", "%" PRIu64 " is more than max_epochs %" PRIu64, g, m);
		if (rc == 0) {
			const json_t *rf = json_object_get(in, "reduction_factor");

			if (rf && json_is_integer(rf) && json_integer_value(rf) < 2)
				rc = tr_err_set_key(err, -EINVAL, "reduction_factor", "must be at least 2, got %" JSON_INTEGER_FORMAT,
						    json_integer_value(rf));
			else
				rc = get_u64(in, "reduction_factor", 2, 1000, 3, &r, err);
		}
		if (rc < 0)
			goto fail;
		out->grace_epochs = (uint32_t)g;
		out->reduction_factor = (uint32_t)r;
		out->max_epochs = (uint32_t)m;
	}
	if (out->searcher == SWEEP_PBT) {
		uint64_t e = 0, m = 0;
		const json_t *q = json_object_get(in, "quantile"), *f = json_object_get(in, "perturb");

		rc = get_u64(in, "interval", 1, 100000, 1, &e, err);
		if (rc == 0)   /* 0: the shared configuration's epochs (SweepStart fills it in) */
			rc = get_u64(in, "max_epochs", 0, 100000, 0, &m, err);
		if (rc == 0 && m && e > m)
			rc = tr_err_set_key(err, -EINVAL, "interval", "%" PRIu64 " is more than max_epochs %" PRIu64, e, m);
		out->quantile = 0.25;
		out->perturb = 1.2;
		if (rc == 0 && q && !json_is_null(q)) {
			if (!json_is_number(q) || !(json_number_value(q) > 0) || json_number_value(q) > 0.5)
				rc = tr_err_set_key(err, -EINVAL, "quantile", "expected a number in (0, 0.5]");
			else
				out->quantile = json_number_value(q);
		}
		if (rc == 0 && f && !json_is_null(f)) {
			if (!json_is_number(f) || !(json_number_value(f) > 1) || json_number_value(f) > 100)
				rc = tr_err_set_key(err, -EINVAL, "perturb", "expected a number in (1, 100]");
			else
				out->perturb = json_number_value(f);
		}
		if (rc < 0)
			goto fail;
		out->interval = (uint32_t)e;
		out->max_epochs = (uint32_t)m;
	}
	if (out->searcher == SWEEP_HYPERBAND) {   /* the brackets decide how many trials */
		uint32_t want = sweep_hyperband_trials(out);

		if (want > SWEEP_TRIALS_MAX)
			rc = tr_err_set_key(err, -EINVAL, "max_epochs", "the brackets would hold %u trials (at most %d)",
					    want, SWEEP_TRIALS_MAX);
		else if (json_object_get(in, "trials") && !json_is_null(json_object_get(in, "trials")) &&
			 out->trials != want)
			rc = tr_err_set_key(err, -EINVAL, "trials", "hyperband's brackets hold %u trials, not %u", want,
					    out->trials);
		if (rc < 0)
			goto fail;
		out->trials = want;
	}
	return 0;
fail:
	sweep_spec_clear(out);
	return rc;
}

json_t *sweep_spec_to_json(const struct sweep_spec *sp)
{
	json_t *o = json_object(), *params = json_array();

	if (!o || !params) {
		json_decref(o);
		json_decref(params);
		return NULL;
	}
	for (size_t i = 0; i < sp->nparams; i++) {
		char text[SWEEP_KEY_MAX + 260];

		snprintf(text, sizeof(text), "%s=%s", sp->params[i].key, sp->params[i].text);
		json_array_append_new(params, json_string(text));
	}
	json_object_set_new(o, "searcher", json_string(sweep_searcher_name(sp->searcher)));
	json_object_set_new(o, "params", params);
	json_object_set_new(o, "trials", json_integer(sp->trials));
	json_object_set_new(o, "seed", json_integer((json_int_t)sp->seed));
	json_object_set_new(o, "metric", json_string(monitor_name(sp->metric)));
	json_object_set_new(o, "max_parallel", json_integer(sp->max_parallel));
	if (sweep_adaptive(sp)) {
		json_object_set_new(o, "grace_epochs", json_integer(sp->grace_epochs));
		json_object_set_new(o, "reduction_factor", json_integer(sp->reduction_factor));
		json_object_set_new(o, "max_epochs", json_integer(sp->max_epochs));
	}
	if (sp->searcher == SWEEP_PBT) {
		json_object_set_new(o, "population", json_integer(sp->trials));
		json_object_set_new(o, "interval", json_integer(sp->interval));
		json_object_set_new(o, "quantile", json_real(sp->quantile));
		json_object_set_new(o, "perturb", json_real(sp->perturb));
		json_object_set_new(o, "max_epochs", json_integer(sp->max_epochs));
	}
	return o;
}

/* splitmix64's finalizer: a counter-based generator, no state to keep. */
static uint64_t mix(uint64_t x)
{
	x += UINT64_C(0x9e3779b97f4a7c15);
	x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
	return x ^ (x >> 31);
}

/* A uniform double in [0, 1) for (seed, trial, parameter). */
static double draw(uint64_t seed, uint32_t trial, size_t param)
{
	uint64_t x = mix(mix(mix(seed) ^ trial) ^ (uint64_t)param);

	return (double)(x >> 11) * 0x1.0p-53;
}

static json_t *value_at(const struct sweep_param *p, uint64_t index)
{
	if (p->dist == DIST_CHOICE)
		return json_incref(json_array_get(p->choices, index));
	return json_integer((json_int_t)(p->lo + (double)index));
}

static uint64_t count_of(const struct sweep_param *p)
{
	return p->dist == DIST_CHOICE ? json_array_size(p->choices) : (uint64_t)(p->hi - p->lo + 1);
}

json_t *sweep_trial_params(const struct sweep_spec *sp, uint32_t t)
{
	json_t *o = json_object();
	uint64_t rest = t;

	if (!o)
		return NULL;
	if (sp->searcher == SWEEP_GRID) {
		json_t *vals[SWEEP_PARAMS_MAX];

		for (size_t i = sp->nparams; i-- > 0;) {   /* the last varies fastest */
			uint64_t n = count_of(&sp->params[i]);

			vals[i] = value_at(&sp->params[i], rest % n);
			rest /= n;
		}
		for (size_t i = 0; i < sp->nparams; i++)
			if (!vals[i] || json_object_set_new(o, sp->params[i].key, vals[i])) {
				json_decref(o);
				return NULL;
			}
		return o;
	}
	for (size_t i = 0; i < sp->nparams; i++) {
		const struct sweep_param *p = &sp->params[i];
		double u = draw(sp->seed, t, i);
		json_t *v;

		switch (p->dist) {
		case DIST_CHOICE:
			v = value_at(p, (uint64_t)(u * (double)count_of(p)));
			break;
		case DIST_INT:
			v = value_at(p, (uint64_t)(u * (double)count_of(p)));
			break;
		case DIST_UNIFORM:
			v = json_real(p->lo + u * (p->hi - p->lo));
			break;
		default:
			v = json_real(exp(log(p->lo) + u * (log(p->hi) - log(p->lo))));
			break;
		}
		if (!v || json_object_set_new(o, p->key, v)) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

bool sweep_metric_better(const struct sweep_spec *sp, double a, double b)
{
	return monitor_better(sp->metric, a, b);
}

bool sweep_adaptive(const struct sweep_spec *sp)
{
	return sp->searcher == SWEEP_SHA || sp->searcher == SWEEP_HYPERBAND;
}

/* grace, x eta, ..., max (at most SWEEP_RUNGS_MAX, the last max). */
static uint32_t ladder(uint32_t grace, uint32_t eta, uint32_t max, uint32_t epochs[SWEEP_RUNGS_MAX])
{
	uint32_t n = 0;
	uint64_t e;

	for (e = grace; n < SWEEP_RUNGS_MAX; e *= eta) {
		if (e >= max || n == SWEEP_RUNGS_MAX - 1) {
			epochs[n++] = max;
			break;
		}
		epochs[n++] = (uint32_t)e;
	}
	return n;
}

/* HyperBand's s_max: the largest s with grace * eta^s <= max. */
static uint32_t hb_smax(const struct sweep_spec *sp)
{
	uint32_t s = 0;
	uint64_t e = sp->grace_epochs;

	while (e * sp->reduction_factor <= sp->max_epochs && s + 1 < SWEEP_RUNGS_MAX) {
		e *= sp->reduction_factor;
		s++;
	}
	return s;
}

static uint64_t ipow(uint64_t b, uint32_t e)
{
	uint64_t r = 1;

	while (e--)
		r *= b;
	return r;
}

uint32_t sweep_brackets(const struct sweep_spec *sp)
{
	return sp->searcher == SWEEP_HYPERBAND ? hb_smax(sp) + 1 : sweep_adaptive(sp) ? 1 : 0;
}

/* Bracket b (0: the most exploratory, s = s_max; then s_max - 1 ... 0):
 * its trials, n_s = ceil((s_max + 1) * eta^s / (s + 1)), and its first
 * rung's epochs, max / eta^s (at least grace). */
static void hb_bracket(const struct sweep_spec *sp, uint32_t b, uint32_t *n, uint32_t *first)
{
	uint32_t smax = hb_smax(sp), s = smax - b;
	uint64_t p = ipow(sp->reduction_factor, s);
	uint64_t f = sp->max_epochs / p;

	*n = (uint32_t)(((uint64_t)(smax + 1) * p + s) / (s + 1));
	*first = f < sp->grace_epochs ? sp->grace_epochs : (uint32_t)f;
}

uint32_t sweep_bracket_of(const struct sweep_spec *sp, uint32_t trial)
{
	uint32_t nb = sweep_brackets(sp), n, first;

	if (sp->searcher != SWEEP_HYPERBAND)
		return 0;
	for (uint32_t b = 0; b < nb; b++) {
		hb_bracket(sp, b, &n, &first);
		if (trial < n)
			return b;
		trial -= n;
	}
	return nb - 1;
}

uint32_t sweep_bracket_rungs(const struct sweep_spec *sp, uint32_t b, uint32_t epochs[SWEEP_RUNGS_MAX])
{
	uint32_t n, first;

	if (sp->searcher == SWEEP_SHA)
		return ladder(sp->grace_epochs, sp->reduction_factor, sp->max_epochs, epochs);
	if (sp->searcher != SWEEP_HYPERBAND || b >= sweep_brackets(sp))
		return 0;
	hb_bracket(sp, b, &n, &first);
	return ladder(first, sp->reduction_factor, sp->max_epochs, epochs);
}

uint32_t sweep_trial_rungs(const struct sweep_spec *sp, uint32_t trial, uint32_t epochs[SWEEP_RUNGS_MAX])
{
	return sweep_bracket_rungs(sp, sweep_bracket_of(sp, trial), epochs);
}

uint32_t sweep_hyperband_trials(const struct sweep_spec *sp)
{
	uint32_t total = 0, n, first;

	for (uint32_t b = 0; b < sweep_brackets(sp); b++) {
		hb_bracket(sp, b, &n, &first);
		total += n;
	}
	return total;
}

/* The order of a rung: better metric first, missing and NaN last, then by
 * trial number. */
static bool ranks_before(const struct sweep_spec *sp, const struct sweep_result *res, uint32_t k, uint32_t a,
			 uint32_t b)
{
	bool ha = res[a].has[k] && !isnan(res[a].metric[k]), hb = res[b].has[k] && !isnan(res[b].metric[k]);

	if (ha != hb)
		return ha;
	if (ha && res[a].metric[k] != res[b].metric[k])
		return monitor_better(sp->metric, res[a].metric[k], res[b].metric[k]);
	return a < b;
}

/* Successive halving over the trials idx[0..m) (in trial order) with the
 * rungs epochs[0..nr). */
static void decide_bracket(const struct sweep_spec *sp, const struct sweep_result *res, const uint32_t *idx,
			   uint32_t m, const uint32_t *epochs, uint32_t nr, struct sweep_decision *out)
{
	uint32_t *members, nm = m;

	for (uint32_t i = 0; i < m; i++)
		out[idx[i]] = (struct sweep_decision){ .rung = 0, .epochs = nr ? epochs[0] : 0,
						       .verdict = nr == 1 ? VERDICT_FINAL : VERDICT_RUNNING };
	if (nr < 2 || m == 0)
		return;
	members = malloc(m * sizeof(*members));
	if (!members)
		return;   /* nothing decided: decided again at the next change */
	memcpy(members, idx, m * sizeof(*members));
	for (uint32_t k = 0; k + 1 < nr; k++) {
		uint32_t keep;

		for (uint32_t i = 0; i < nm; i++)
			if (!res[members[i]].has[k] && !res[members[i]].stopped)
				goto out;   /* a trial of the rung has not reported: undecided */
		/* insertion sort: a rung holds at most SWEEP_TRIALS_MAX */
		for (uint32_t i = 1; i < nm; i++) {
			uint32_t x = members[i], j = i;

			while (j > 0 && ranks_before(sp, res, k, x, members[j - 1])) {
				members[j] = members[j - 1];
				j--;
			}
			members[j] = x;
		}
		keep = nm / sp->reduction_factor;
		if (keep == 0)
			keep = 1;
		for (uint32_t i = 0; i < nm; i++) {
			struct sweep_decision *d = &out[members[i]];

			d->rank = i + 1;
			d->of = nm;
			if (i < keep) {   /* a stopped trial keeps its place: it ranks last where it did not report */
				d->rung = k + 1;
				d->epochs = epochs[k + 1];
				d->verdict = k + 2 == nr ? VERDICT_FINAL : VERDICT_RUNNING;
			} else {
				d->verdict = VERDICT_STOPPED;
			}
		}
		/* the next rung: those promoted, in trial order */
		{
			uint32_t c = 0;

			for (uint32_t i = 0; i < m; i++)
				if (out[idx[i]].rung == k + 1)
					members[c++] = idx[i];
			nm = c;
		}
		if (nm == 0)
			break;
	}
out:
	free(members);
}

void sweep_decide(const struct sweep_spec *sp, const struct sweep_result *res, uint32_t n,
		  struct sweep_decision *out)
{
	uint32_t epochs[SWEEP_RUNGS_MAX], *idx;
	uint32_t nb = sweep_brackets(sp);

	for (uint32_t i = 0; i < n; i++)
		out[i] = (struct sweep_decision){ .verdict = VERDICT_RUNNING };
	if (nb == 0 || n == 0)
		return;
	idx = malloc(n * sizeof(*idx));
	if (!idx)
		return;
	for (uint32_t b = 0; b < nb; b++) {
		uint32_t m = 0, nr = sweep_bracket_rungs(sp, b, epochs);

		for (uint32_t i = 0; i < n; i++)
			if (sweep_bracket_of(sp, i) == b)
				idx[m++] = i;
		decide_bracket(sp, res, idx, m, epochs, nr, out);
	}
	free(idx);
}

/* ---- pbt ------------------------------------------------------------------ */

/* A uniform double in [0, 1) for (seed, decision k, trial, slot): the
 * exploit's source (slot 0), each parameter's perturbation (2i + 1) and
 * resampling (2i + 2). A salt keeps it apart from the trials' first draws. */
static double pbt_draw(uint64_t seed, uint32_t k, uint32_t trial, uint64_t slot)
{
	uint64_t x = mix(mix(mix(mix(seed ^ UINT64_C(0x5042542d70627421)) ^ k) ^ trial) ^ slot);

	return (double)(x >> 11) * 0x1.0p-53;
}

bool sweep_pbt_frozen_key(const char *key)
{
	static const char *const frozen[] = { "dataset", "batch_size", "optimizer", "hidden", "model", "seed",
					      "split_seed", "val_size", "train_size", "rng", "loss", "precision", NULL };

	for (size_t i = 0; frozen[i]; i++)
		if (strcmp(key, frozen[i]) == 0)
			return true;
	return false;
}

uint32_t sweep_pbt_boundary(const struct sweep_spec *sp, uint32_t k)
{
	uint64_t e = (uint64_t)(k + 1) * sp->interval;

	return e >= sp->max_epochs ? sp->max_epochs : (uint32_t)e;
}

uint32_t sweep_pbt_decisions(const struct sweep_spec *sp)
{
	/* boundaries E, 2E, ... strictly before max_epochs */
	return sp->interval && sp->max_epochs ? (sp->max_epochs - 1) / sp->interval : 0;
}

static bool pbt_before(const struct sweep_pbt_member *m, uint32_t a, uint32_t b, enum monitor_kind metric)
{
	bool ha = m[a].has && !isnan(m[a].metric), hb = m[b].has && !isnan(m[b].metric);

	if (ha != hb)
		return ha;
	if (ha && m[a].metric != m[b].metric)
		return monitor_better(metric, m[a].metric, m[b].metric);
	return a < b;
}

void sweep_pbt_decide(const struct sweep_spec *sp, uint32_t k, const struct sweep_pbt_member *m, uint32_t n,
		      struct sweep_pbt_choice *out)
{
	uint32_t *order = malloc((n ? n : 1) * sizeof(*order)), na = 0, q;

	for (uint32_t i = 0; i < n; i++)
		out[i] = (struct sweep_pbt_choice){ .ranked = !m[i].stopped, .source = i };
	if (!order)
		return;   /* nobody exploits: decided again at the next change (the caller checks) */
	for (uint32_t i = 0; i < n; i++)
		if (!m[i].stopped)
			order[na++] = i;
	for (uint32_t i = 1; i < na; i++) {   /* insertion sort, stable by trial number */
		uint32_t x = order[i], j = i;

		while (j > 0 && pbt_before(m, x, order[j - 1], sp->metric)) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = x;
	}
	q = (uint32_t)floor((double)na * sp->quantile + 1e-9);
	if (q == 0 && na >= 2)
		q = 1;
	if (2 * q > na)
		q = na / 2;
	for (uint32_t r = 0; r < na; r++) {
		struct sweep_pbt_choice *c = &out[order[r]];

		c->rank = r + 1;
		c->of = na;
		if (r >= na - q) {
			uint32_t pick = (uint32_t)(pbt_draw(sp->seed, k, order[r], 0) * (double)q);

			c->exploit = true;
			c->source = order[pick < q ? pick : q - 1];
		}
	}
	free(order);
}

json_t *sweep_pbt_perturb(const struct sweep_spec *sp, uint32_t k, uint32_t trial, const json_t *from)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	for (size_t i = 0; i < sp->nparams; i++) {
		const struct sweep_param *p = &sp->params[i];
		const json_t *cur = json_object_get(from, p->key);
		double up = pbt_draw(sp->seed, k, trial, 2 * i + 1), re = pbt_draw(sp->seed, k, trial, 2 * i + 2);
		json_t *v;

		if (p->dist == DIST_CHOICE) {
			if (re < 0.25 || !cur)
				v = value_at(p, (uint64_t)(up * (double)count_of(p)));
			else
				v = json_deep_copy(cur);
		} else {
			double x = cur && json_is_number(cur) ? json_number_value(cur) : p->lo;

			x = up < 0.5 ? x * sp->perturb : x / sp->perturb;
			if (x < p->lo)
				x = p->lo;
			if (x > p->hi)
				x = p->hi;
			if (p->dist == DIST_INT) {
				double r = floor(x + 0.5);

				/* a whole number that did not move goes one step the same way */
				if (cur && json_is_number(cur) && r == json_number_value(cur))
					r += up < 0.5 ? 1 : -1;
				if (r < p->lo)
					r = p->lo;
				if (r > p->hi)
					r = p->hi;
				v = json_integer((json_int_t)r);
			} else {
				v = json_real(x);
			}
		}
		if (!v || json_object_set_new(o, p->key, v)) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}
