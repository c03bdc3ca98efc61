/*
 * config.c - the job configuration: defaults, parsing from text and JSON,
 * validation, serialization. See include/traind/config.h.
 *
 * One table describes every key (its type and range); the text setter and the
 * JSON reader both go through it, so a flag and a protocol parameter are
 * checked by the same code and produce the same messages.
 */
#include "traind/config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/augment.h"
#include "traind/dataset.h"
#include "traind/spec.h"

enum key_type {
	K_U32,
	K_U64,
	K_F64,
	K_DATASET,
	K_OPTIM,
	K_HIDDEN,
	K_MODEL,
	K_BOOL,
	K_SCHED,
	K_MONITOR,
	K_RNG,
	K_HOSTS,
	K_LOSS,
	K_WEIGHTS,
	K_AUGMENT,
	K_KERNELS,
	K_PRECISION,
	K_CONV,
};

struct key_desc {
	const char *name;
	enum key_type type;
	size_t offset;       /* into struct train_config */
	double min, max;     /* inclusive range for numbers */
	bool min_open;       /* min itself not allowed (lr > 0) */
};

#define OFF(f) offsetof(struct train_config, f)

static const struct key_desc keys[] = {
	{ "dataset",         K_DATASET, OFF(dataset),         0, 0, false },
	{ "epochs",          K_U32,     OFF(epochs),          1, 100000, false },
	{ "batch_size",      K_U32,     OFF(batch_size),      1, 65536, false },
	{ "eval_batch_size", K_U32,     OFF(eval_batch_size), 1, 65536, false },
	{ "lr",              K_F64,     OFF(lr),              0, 10, true },
	{ "optimizer",       K_OPTIM,   OFF(optimizer),       0, 0, false },
	{ "momentum",        K_F64,     OFF(momentum),        0, 0.999999, false },
	{ "weight_decay",    K_F64,     OFF(weight_decay),    0, 10, false },
	{ "beta1",           K_F64,     OFF(beta1),           0, 0.999999, false },
	{ "beta2",           K_F64,     OFF(beta2),           0, 0.99999999, false },
	{ "eps",             K_F64,     OFF(eps),             0, 1, true },
	{ "hidden",          K_HIDDEN,  OFF(hidden),          1, 65536, false },
	{ "seed",            K_U64,     OFF(seed),            0, 0, false },
	{ "split_seed",      K_U64,     OFF(split_seed),      0, 0, false },
	{ "val_size",        K_U32,     OFF(val_size),        1, 1000000, false },
	{ "train_size",      K_U32,     OFF(train_size),      0, 10000000, false },
	{ "threads",         K_U32,     OFF(threads),         1, CFG_MAX_THREADS, false },
	{ "model",           K_MODEL,   OFF(model),           0, 0, false },
	{ "ftz",             K_BOOL,    OFF(ftz),             0, 0, false },
	{ "strict_numerics", K_BOOL,    OFF(strict_numerics), 0, 0, false },
	{ "lr_scheduler",    K_SCHED,   OFF(lr_scheduler),    0, 0, false },
	{ "monitor",         K_MONITOR, OFF(monitor),         0, 0, false },
	{ "early_stop_patience", K_U32, OFF(early_stop_patience), 0, 1000000, false },
	{ "early_stop_min_delta", K_F64, OFF(early_stop_min_delta), 0, 1e6, false },
	{ "clip_grad_norm",  K_F64,     OFF(clip_grad_norm),  0, 1e6, false },
	{ "rng",             K_RNG,     OFF(rng),             0, 0, false },
	{ "shards",          K_U32,     OFF(shards),          1, CFG_MAX_SHARDS, false },
	{ "ranks",           K_U32,     OFF(ranks),           1, CFG_MAX_RANKS, false },
	{ "hosts",           K_HOSTS,   OFF(hosts),           0, 0, false },
	{ "max_restarts",    K_U32,     OFF(max_restarts),    0, 1000, false },
	{ "loss",            K_LOSS,    OFF(loss),            0, 0, false },
	{ "label_smoothing", K_F64,     OFF(label_smoothing), 0, 1, false },
	{ "class_weights",   K_WEIGHTS, OFF(class_weights),   0, 1e6, false },
	{ "huber_delta",     K_F64,     OFF(huber_delta),     0, 1e6, true },
	{ "pos_weight",      K_WEIGHTS, OFF(pos_weight),      0, 1e6, false },
	{ "augment",         K_AUGMENT, OFF(augment),         0, 0, false },
	{ "kernels",         K_KERNELS, OFF(kernels),         0, 0, false },
	{ "precision",       K_PRECISION, OFF(precision),     0, 0, false },
	{ "conv",            K_CONV,    OFF(conv),            0, 0, false },
	{ "context",         K_U32,     OFF(context),         0, 65536, false },
	{ "seq_kernels",     K_U32,     OFF(seq_kernels),     1, 3, false },
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

void config_defaults(struct train_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->dataset, sizeof(cfg->dataset), "mnist");
	cfg->epochs = 5;
	cfg->batch_size = 64;
	cfg->eval_batch_size = 128;
	cfg->lr = 1e-3;
	cfg->optimizer = OPTIM_ADAM;
	cfg->momentum = 0.0;
	cfg->weight_decay = 0.0;
	cfg->beta1 = 0.9;
	cfg->beta2 = 0.999;
	cfg->eps = 1e-8;
	cfg->n_hidden = 1;
	cfg->hidden[0] = 256;
	cfg->seed = 42;
	cfg->split_seed = 42;
	cfg->val_size = 10000;
	cfg->train_size = 0;
	cfg->threads = 2;
	cfg->model[0] = '\0';
	cfg->ftz = true;
	cfg->strict_numerics = false;
	cfg->lr_scheduler[0] = '\0';
	cfg->monitor = MONITOR_VAL_LOSS;
	cfg->early_stop_patience = 0;
	cfg->early_stop_min_delta = 0.0;
	cfg->clip_grad_norm = 0.0;
	cfg->rng = RNG_TORCH;
	cfg->shards = 0;
	cfg->ranks = 1;
	cfg->hosts[0] = '\0';
	cfg->max_restarts = 3;
	cfg->loss = LOSS_CROSS_ENTROPY;
	cfg->label_smoothing = 0.0;
	cfg->n_class_weights = 0;
	cfg->huber_delta = 1.0;
	cfg->n_pos_weight = 0;
	cfg->augment[0] = '\0';
	cfg->kernels = KERNELS_OPENBLAS;
	cfg->precision = K_FP32;
	cfg->seq_kernels = 3;
	cfg->conv = CONFIG_CONV_DEFAULT;
}

uint32_t config_shards(const struct train_config *cfg)
{
	return cfg->shards ? cfg->shards : cfg->ranks;
}

/* "HOST:SLOTS[,HOST:SLOTS...]": host names of [A-Za-z0-9._-], slots 1..ranks max;
 * *slots gets their sum. */
static int parse_hosts(const char *v, uint32_t *slots, struct tr_err *err)
{
	const char *p = v;

	*slots = 0;
	while (*p) {
		const char *h = p, *colon;
		uint64_t n = 0;
		size_t hl = 0;

		while (h[hl] && h[hl] != ':' && h[hl] != ',') {
			char c = h[hl];

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			      c == '.' || c == '-' || c == '_'))
				return tr_err_set(err, -EINVAL,
						  "hosts: '%.*s' is not a list like node1:2,node2:2 (a host name has A-Z a-z 0-9 . _ -)",
						  tr_utf8_cut(v, TR_QUOTE_MAX), v);
			hl++;
		}
		colon = h + hl;
		if (hl == 0 || *colon != ':' || colon[1] < '0' || colon[1] > '9')
			return tr_err_set(err, -EINVAL, "hosts: '%.*s' is not a list like node1:2,node2:2 (HOST:SLOTS)",
					  tr_utf8_cut(v, TR_QUOTE_MAX), v);
		p = colon + 1;
		while (*p >= '0' && *p <= '9' && n <= CFG_MAX_RANKS)
			n = n * 10 + (uint64_t)(*p++ - '0');
		if (n < 1 || n > CFG_MAX_RANKS || (*p && *p != ','))
			return tr_err_set(err, -EINVAL, "hosts: '%.*s': slots must be whole numbers 1 to %d",
					  tr_utf8_cut(v, TR_QUOTE_MAX), v, CFG_MAX_RANKS);
		*slots += (uint32_t)n;
		if (*p == ',' && !*++p)
			return tr_err_set(err, -EINVAL, "hosts: '%.*s' ends in a comma",
					  tr_utf8_cut(v, TR_QUOTE_MAX), v);
	}
	return 0;
}

static int set_hosts(struct train_config *cfg, const char *v, struct tr_err *err)
{
	uint32_t slots;
	int rc;

	if (strlen(v) >= sizeof(cfg->hosts))
		return tr_err_set(err, -EINVAL, "hosts: the list is longer than %d bytes", CFG_HOSTS_MAX - 1);
	rc = parse_hosts(v, &slots, err);
	if (rc < 0)
		return rc;
	snprintf(cfg->hosts, sizeof(cfg->hosts), "%s", v);
	return 0;
}

const char *config_optim_name(enum optim_kind k)
{
	switch (k) {
	case OPTIM_ADAM: return "adam";
	case OPTIM_ADAMW: return "adamw";
	case OPTIM_SGD: return "sgd";
	}
	return "?";
}

const char *config_rng_name(enum rng_kind k)
{
	switch (k) {
	case RNG_XOSHIRO: return "xoshiro";
	case RNG_TORCH: return "torch";
	}
	return "?";
}

bool config_dataset_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= CFG_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static const struct key_desc *find_key(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* Strict decimal unsigned parse: digits only, no sign, no spaces, no overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}

/* A decimal number; false if not one. *range (may be NULL) is set when it
 * is one but out of a double's range: 1 too large, -1 too close to 0 (it
 * would be subnormal, or 0). */
static bool parse_f64(const char *s, double *out, int *range)
{
	char *end;
	double v;

	if (range)
		*range = 0;
	if (!*s || *s == ' ' || *s == '\t')
		return false;
	errno = 0;
	v = strtod(s, &end);
	if (*end != '\0' || end == s)
		return false;
	if (errno == ERANGE) {
		if (range)
			*range = fabs(v) > 1 ? 1 : -1;
		return false;
	}
	*out = v;
	return true;
}

static int set_number(struct train_config *cfg, const struct key_desc *k,
		      double dv, uint64_t uv, bool is_int, const char *shown,
		      struct tr_err *err)
{
	char *base = (char *)cfg;

	switch (k->type) {
	case K_U32:
	case K_U64:
		if (!is_int)
			return tr_err_set(err, -EINVAL, "%s: expected a whole number, got %s",
					  k->name, shown);
		if (k->type == K_U64) {
			if (uv > (uint64_t)INT64_MAX)
				return tr_err_set(err, -EINVAL, "%s: %s is out of range [0, 2^63-1]",
						  k->name, shown);
			memcpy(base + k->offset, &uv, sizeof(uv));
			return 0;
		}
		if ((double)uv < k->min || (double)uv > k->max)
			return tr_err_set(err, -EINVAL, "%s: %s is out of range [%.0f, %.0f]",
					  k->name, shown, k->min, k->max);
		{
			uint32_t v32 = (uint32_t)uv;

			memcpy(base + k->offset, &v32, sizeof(v32));
		}
		return 0;
	case K_F64:
		if (!isfinite(dv))
			return tr_err_set(err, -EINVAL, "%s: %s is not a finite number", k->name, shown);
		if (dv < k->min || (k->min_open && dv == k->min) || dv > k->max)
			return tr_err_set(err, -EINVAL, "%s: %s is out of range %s%g, %g]",
					  k->name, shown, k->min_open ? "(" : "[", k->min, k->max);
		memcpy(base + k->offset, &dv, sizeof(dv));
		return 0;
	default:
		return tr_err_set(err, -EINVAL, "%s: not a number field", k->name);
	}
}

static int set_optim(struct train_config *cfg, const char *v, struct tr_err *err)
{
	if (strcmp(v, "adam") == 0)
		cfg->optimizer = OPTIM_ADAM;
	else if (strcmp(v, "adamw") == 0)
		cfg->optimizer = OPTIM_ADAMW;
	else if (strcmp(v, "sgd") == 0)
		cfg->optimizer = OPTIM_SGD;
	else
		return tr_err_set(err, -EINVAL,
				  "optimizer: unknown optimizer '%.*s' (expected adam, adamw or sgd)",
				  tr_utf8_cut(v, TR_QUOTE_MAX), v);
	return 0;
}

static int set_rng(struct train_config *cfg, const char *v, struct tr_err *err)
{
	if (strcmp(v, "torch") == 0)
		cfg->rng = RNG_TORCH;
	else if (strcmp(v, "xoshiro") == 0)
		cfg->rng = RNG_XOSHIRO;
	else
		return tr_err_set(err, -EINVAL,
				  "rng: unknown random stream '%.*s' (expected torch or xoshiro)",
				  tr_utf8_cut(v, TR_QUOTE_MAX), v);
	return 0;
}

const char *config_kernels_name(enum kernels_kind k)
{
	switch (k) {
	case KERNELS_OPENBLAS: return "openblas";
	case KERNELS_PORTABLE: return "portable";
	}
	return "?";
}

static int set_kernels(struct train_config *cfg, const char *v, struct tr_err *err)
{
	if (strcmp(v, "openblas") == 0)
		cfg->kernels = KERNELS_OPENBLAS;
	else if (strcmp(v, "portable") == 0)
		cfg->kernels = KERNELS_PORTABLE;
	else
		return tr_err_set(err, -EINVAL,
				  "kernels: unknown kernels '%.*s' (expected openblas or portable)",
				  tr_utf8_cut(v, TR_QUOTE_MAX), v);
	return 0;
}

const char *config_conv_name(enum conv_kind k)
{
	switch (k) {
	case CONV_GEMM: return "gemm";
	case CONV_ONEDNN: return "onednn";
	}
	return "?";
}

static int set_conv(struct train_config *cfg, const char *v, struct tr_err *err)
{
	if (strcmp(v, "gemm") == 0)
		cfg->conv = CONV_GEMM;
	else if (strcmp(v, "onednn") == 0)
		cfg->conv = CONV_ONEDNN;
	else
		return tr_err_set(err, -EINVAL, "conv: unknown convolutions '%.*s' (expected gemm or onednn)",
				  tr_utf8_cut(v, TR_QUOTE_MAX), v);
	return 0;
}

/* Whether this machine computes in it is the trainer's check
 * (k_precision_check): a client may ask a daemon on another machine. */
static int set_precision(struct train_config *cfg, const char *v, struct tr_err *err)
{
	if (strcmp(v, "fp32") == 0)
		cfg->precision = K_FP32;
	else if (strcmp(v, "bf16") == 0)
		cfg->precision = K_BF16;
	else
		return tr_err_set(err, -EINVAL, "precision: unknown precision '%.*s' (expected fp32 or bf16)",
				  tr_utf8_cut(v, TR_QUOTE_MAX), v);
	return 0;
}

static int set_dataset(struct train_config *cfg, const char *v, struct tr_err *err)
{
	if (!config_dataset_name_ok(v))
		return tr_err_set(err, -EINVAL,
				  "dataset: '%.*s' is not a dataset name (1-63 of A-Z a-z 0-9 . _ -, not starting with '.')",
				  tr_utf8_cut(v, TR_QUOTE_MAX), v);
	snprintf(cfg->dataset, sizeof(cfg->dataset), "%s", v);
	return 0;
}

static int set_hidden_list(struct train_config *cfg, const uint64_t *w, size_t n,
			   struct tr_err *err)
{
	if (n == 0 || n > CFG_MAX_HIDDEN)
		return tr_err_set(err, -EINVAL, "hidden: expected 1 to %d layer widths, got %zu",
				  CFG_MAX_HIDDEN, n);
	for (size_t i = 0; i < n; i++)
		if (w[i] < 1 || w[i] > 65536)
			return tr_err_set(err, -EINVAL,
					  "hidden: width %" PRIu64 " is out of range [1, 65536]", w[i]);
	cfg->n_hidden = (uint32_t)n;
	for (size_t i = 0; i < n; i++)
		cfg->hidden[i] = (uint32_t)w[i];
	return 0;
}

/* The SPEC's grammar and arguments; its fit to the data is checked by the
 * trainer (spec_shapes), which knows the data's shape and classes. */
static int set_model(struct train_config *cfg, const char *v, struct tr_err *err)
{
	struct model_spec spec;
	int rc;

	if (strlen(v) >= sizeof(cfg->model))
		return tr_err_set(err, -EINVAL, "model: the SPEC is longer than %d bytes",
				  CFG_MODEL_MAX - 1);
	if (*v) {
		/* Grammar only: the classes (which size mlp's and lenet5's last
		 * layer) come from the dataset when the job is checked. */
		rc = spec_parse(&spec, v, cfg->hidden, cfg->n_hidden, 10, err);
		if (rc < 0)
			return rc;
	}
	snprintf(cfg->model, sizeof(cfg->model), "%s", v);
	return 0;
}

/* The schedule's grammar and arguments; the milestones' fit to the epochs is
 * checked by config_validate (the keys may come in any order). */
static int set_sched(struct train_config *cfg, const char *v, struct tr_err *err)
{
	struct sched_spec spec;
	int rc;

	if (strlen(v) >= sizeof(cfg->lr_scheduler))
		return tr_err_set(err, -EINVAL, "lr_scheduler: the SPEC is longer than %d bytes",
				  SCHED_TEXT_MAX - 1);
	rc = sched_parse(&spec, v, 0, err);
	if (rc < 0)
		return rc;
	snprintf(cfg->lr_scheduler, sizeof(cfg->lr_scheduler), "%s", v);
	return 0;
}

static int set_monitor(struct train_config *cfg, const char *v, struct tr_err *err)
{
	if (monitor_parse(v, &cfg->monitor) < 0)
		return tr_err_set(err, -EINVAL,
				  "monitor: unknown metric '%.*s' (expected val_loss, val_acc, val_macro_acc, val_mae or val_rmse)",
				  tr_utf8_cut(v, TR_QUOTE_MAX), v);
	return 0;
}

static int set_loss(struct train_config *cfg, const char *v, struct tr_err *err)
{
	if (loss_parse(v, &cfg->loss) < 0)
		return tr_err_set(err, -EINVAL,
				  "loss: unknown loss '%.*s' (expected cross_entropy, mse, l1, huber or bce_with_logits)",
				  tr_utf8_cut(v, TR_QUOTE_MAX), v);
	return 0;
}

/* The count field that goes with a weights field. */
static uint32_t *weights_count(struct train_config *cfg, const struct key_desc *k)
{
	return k->offset == OFF(class_weights) ? &cfg->n_class_weights : &cfg->n_pos_weight;
}

/* A list of weights (class_weights, pos_weight): n values, each a finite
 * number >= 0 kept as float32; none (n 0) clears it. */
static int set_weights(struct train_config *cfg, const struct key_desc *k, const double *w, size_t n,
		       struct tr_err *err)
{
	float *dst = (float *)((char *)cfg + k->offset);

	if (n > CFG_MAX_WEIGHTS)
		return tr_err_set(err, -EINVAL, "%s: %zu values; at most %d", k->name, n, CFG_MAX_WEIGHTS);
	for (size_t i = 0; i < n; i++)
		if (!isfinite(w[i]) || w[i] < 0 || w[i] > k->max)
			return tr_err_set(err, -EINVAL, "%s: value %zu (%g) is not a weight in [0, %g]", k->name,
					  i + 1, w[i], k->max);
	for (size_t i = 0; i < n; i++)
		dst[i] = (float)w[i];
	*weights_count(cfg, k) = (uint32_t)n;
	return 0;
}

/* "1,2,0.5" (or "" for none). */
static int set_weights_text(struct train_config *cfg, const struct key_desc *k, const char *v,
			    struct tr_err *err)
{
	double *vals = malloc((CFG_MAX_WEIGHTS + 1) * sizeof(*vals));
	const char *p = v;
	bool bad = false;
	size_t n = 0;
	int rc;

	if (!vals)
		return tr_err_set(err, -ENOMEM, "%s: out of memory", k->name);
	while (*p && !bad && n <= CFG_MAX_WEIGHTS) {
		char *end;

		bad = *p == ',' || *p == ' ' || *p == '\t';
		vals[n++] = strtod(p, &end);
		bad |= end == p || (*end && *end != ',') || (*end == ',' && !end[1]);
		p = *end ? end + 1 : end;
	}
	if (bad)
		rc = tr_err_set(err, -EINVAL, "%s: '%.*s' is not a list of numbers like 1,2,0.5", k->name,
				tr_utf8_cut(v, TR_QUOTE_MAX), v);
	else
		rc = set_weights(cfg, k, vals, n, err);
	free(vals);
	return rc;
}

static int set_augment(struct train_config *cfg, const char *v, struct tr_err *err)
{
	struct augment a;   /* 4 KiB; parsing allocates nothing */
	int rc;

	if (strlen(v) >= sizeof(cfg->augment))
		rc = tr_err_set(err, -EINVAL, "augment: the SPEC is longer than %d bytes", CFG_AUGMENT_MAX - 1);
	else
		rc = augment_parse(&a, v, err);
	if (rc < 0)
		return rc;
	snprintf(cfg->augment, sizeof(cfg->augment), "%s", v);
	return 0;
}

static int set_bool(struct train_config *cfg, const struct key_desc *k, const char *v,
		    struct tr_err *err)
{
	bool b;

	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "on") == 0)
		b = true;
	else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "off") == 0)
		b = false;
	else
		return tr_err_set(err, -EINVAL, "%s: expected true or false, got '%.*s'", k->name,
				  tr_utf8_cut(v, TR_QUOTE_MAX), v);
	memcpy((char *)cfg + k->offset, &b, sizeof(b));
	return 0;
}

/* One key from its text form (config_set). */
static int set_text(struct train_config *cfg, const struct key_desc *k, const char *value,
		    struct tr_err *err)
{
	uint64_t uv = 0;
	double dv = 0;
	int rc;

	switch (k->type) {
	case K_DATASET:
		return set_dataset(cfg, value, err);
	case K_MODEL:
		return set_model(cfg, value, err);
	case K_SCHED:
		return set_sched(cfg, value, err);
	case K_MONITOR:
		return set_monitor(cfg, value, err);
	case K_BOOL:
		return set_bool(cfg, k, value, err);
	case K_RNG:
		return set_rng(cfg, value, err);
	case K_HOSTS:
		return set_hosts(cfg, value, err);
	case K_LOSS:
		return set_loss(cfg, value, err);
	case K_WEIGHTS:
		return set_weights_text(cfg, k, value, err);
	case K_AUGMENT:
		return set_augment(cfg, value, err);
	case K_KERNELS:
		return set_kernels(cfg, value, err);
	case K_PRECISION:
		return set_precision(cfg, value, err);
	case K_CONV:
		return set_conv(cfg, value, err);
	case K_OPTIM:
		rc = set_optim(cfg, value, err);
		/* PyTorch's AdamW defaults to weight decay 0.01: callers set the
		 * optimizer before an explicit weight_decay. */
		if (rc == 0 && cfg->optimizer == OPTIM_ADAMW)
			cfg->weight_decay = 0.01;
		return rc;
	case K_HIDDEN: {
		uint64_t w[CFG_MAX_HIDDEN + 1];
		size_t n = 0;
		char buf[256];
		char *save = NULL;

		if (strlen(value) >= sizeof(buf) || !*value)
			return tr_err_set(err, -EINVAL, "hidden: '%.*s' is not a list of widths like 256 or 512,256",
					  tr_utf8_cut(value, TR_QUOTE_MAX), value);
		snprintf(buf, sizeof(buf), "%s", value);
		if (buf[strlen(buf) - 1] == ',' || buf[0] == ',' || strstr(buf, ",,"))
			return tr_err_set(err, -EINVAL, "hidden: '%.*s' is not a list of widths like 256 or 512,256",
					  tr_utf8_cut(value, TR_QUOTE_MAX), value);
		for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (n == CFG_MAX_HIDDEN + 1 || !parse_u64(tok, &w[n]))
				return tr_err_set(err, -EINVAL,
						  "hidden: '%.*s' is not a list of at most %d widths like 256 or 512,256",
						  tr_utf8_cut(value, TR_QUOTE_MAX), value, CFG_MAX_HIDDEN);
			n++;
		}
		return set_hidden_list(cfg, w, n, err);
	}
	case K_U32:
	case K_U64:
		if (!parse_u64(value, &uv))
			return tr_err_set(err, -EINVAL, "%s: expected a whole number >= 0, got '%.*s'",
					  k->name, tr_utf8_cut(value, TR_QUOTE_MAX), value);
		return set_number(cfg, k, 0, uv, true, value, err);
	case K_F64: {
		int range;

		if (parse_f64(value, &dv, &range))
			return set_number(cfg, k, dv, 0, false, value, err);
		if (range > 0)
			return tr_err_set(err, -EINVAL, "%s: '%.*s' is out of range: larger than the largest "
					  "double (%g)", k->name, tr_utf8_cut(value, TR_QUOTE_MAX), value, DBL_MAX);
		if (range < 0)
			return tr_err_set(err, -EINVAL, "%s: '%.*s' is out of range: too close to 0 for a double "
					  "(below %g it is subnormal, or 0)", k->name,
					  tr_utf8_cut(value, TR_QUOTE_MAX), value, DBL_MIN);
		return tr_err_set(err, -EINVAL, "%s: expected a number, got '%.*s'", k->name,
				  tr_utf8_cut(value, TR_QUOTE_MAX), value);
	}
	}
	return -EINVAL;
}

/* Every failure names the key as data too (err->key). */
int config_set(struct train_config *cfg, const char *key, const char *value, struct tr_err *err)
{
	const struct key_desc *k = find_key(key);

	if (!k) {
		tr_err_set(err, -EINVAL, "unknown configuration key '%.*s'",
			   tr_utf8_cut(key, TR_QUOTE_MAX), key);
		return tr_err_key(err, key);
	}
	if (set_text(cfg, k, value, err) < 0)
		return tr_err_key(err, k->name);
	return 0;
}

static int set_from_json(struct train_config *cfg, const struct key_desc *k,
			 json_t *v, struct tr_err *err)
{
	char shown[64];

	switch (k->type) {
	case K_MODEL:
		if (!json_is_string(v))
			return tr_err_set(err, -EINVAL, "%s: expected a string", k->name);
		return set_model(cfg, json_string_value(v), err);
	case K_SCHED:
	case K_MONITOR:
		if (!json_is_string(v))
			return tr_err_set(err, -EINVAL, "%s: expected a string", k->name);
		return k->type == K_SCHED ? set_sched(cfg, json_string_value(v), err)
					  : set_monitor(cfg, json_string_value(v), err);
	case K_BOOL:
		if (!json_is_boolean(v))
			return tr_err_set(err, -EINVAL, "%s: expected true or false", k->name);
		return set_bool(cfg, k, json_is_true(v) ? "true" : "false", err);
	case K_RNG:
		if (!json_is_string(v))
			return tr_err_set(err, -EINVAL, "%s: expected a string", k->name);
		return set_rng(cfg, json_string_value(v), err);
	case K_HOSTS:
		if (!json_is_string(v))
			return tr_err_set(err, -EINVAL, "%s: expected a string", k->name);
		return set_hosts(cfg, json_string_value(v), err);
	case K_LOSS:
	case K_AUGMENT:
		if (!json_is_string(v))
			return tr_err_set(err, -EINVAL, "%s: expected a string", k->name);
		return k->type == K_LOSS ? set_loss(cfg, json_string_value(v), err)
					 : set_augment(cfg, json_string_value(v), err);
	case K_WEIGHTS: {
		float *dst = (float *)((char *)cfg + k->offset);
		size_t n, i;
		json_t *e;

		if (!json_is_array(v))
			return tr_err_set(err, -EINVAL, "%s: expected an array of numbers", k->name);
		n = json_array_size(v);
		if (n > CFG_MAX_WEIGHTS)
			return tr_err_set(err, -EINVAL, "%s: %zu values; at most %d", k->name, n, CFG_MAX_WEIGHTS);
		json_array_foreach(v, i, e) {
			double w = json_number_value(e);

			if (!json_is_number(e))
				return tr_err_set(err, -EINVAL, "%s: element %zu is not a number", k->name, i + 1);
			if (!isfinite(w) || w < 0 || w > k->max)
				return tr_err_set(err, -EINVAL, "%s: value %zu (%g) is not a weight in [0, %g]",
						  k->name, i + 1, w, k->max);
		}
		json_array_foreach(v, i, e)
			dst[i] = (float)json_number_value(e);
		*weights_count(cfg, k) = (uint32_t)n;
		return 0;
	}
	case K_KERNELS:
		if (!json_is_string(v))
			return tr_err_set(err, -EINVAL, "%s: expected a string", k->name);
		return set_kernels(cfg, json_string_value(v), err);
	case K_PRECISION:
		if (!json_is_string(v))
			return tr_err_set(err, -EINVAL, "%s: expected a string", k->name);
		return set_precision(cfg, json_string_value(v), err);
	case K_CONV:
		if (!json_is_string(v))
			return tr_err_set(err, -EINVAL, "%s: expected a string", k->name);
		return set_conv(cfg, json_string_value(v), err);
	case K_DATASET:
	case K_OPTIM:
		if (!json_is_string(v))
			return tr_err_set(err, -EINVAL, "%s: expected a string", k->name);
		return k->type == K_DATASET ? set_dataset(cfg, json_string_value(v), err)
					    : set_optim(cfg, json_string_value(v), err);
	case K_HIDDEN: {
		uint64_t w[CFG_MAX_HIDDEN];
		size_t n, i;
		json_t *e;

		if (json_is_integer(v)) {
			if (json_integer_value(v) < 0)
				return tr_err_set(err, -EINVAL, "hidden: width %" JSON_INTEGER_FORMAT " is negative",
						  json_integer_value(v));
			w[0] = (uint64_t)json_integer_value(v);
			return set_hidden_list(cfg, w, 1, err);
		}
		if (!json_is_array(v))
			return tr_err_set(err, -EINVAL, "hidden: expected an array of layer widths");
		n = json_array_size(v);
		if (n == 0 || n > CFG_MAX_HIDDEN)
			return tr_err_set(err, -EINVAL, "hidden: expected 1 to %d layer widths, got %zu",
					  CFG_MAX_HIDDEN, n);
		json_array_foreach(v, i, e) {
			if (!json_is_integer(e) || json_integer_value(e) < 0)
				return tr_err_set(err, -EINVAL, "hidden: element %zu is not a width >= 1", i);
			w[i] = (uint64_t)json_integer_value(e);
		}
		return set_hidden_list(cfg, w, n, err);
	}
	case K_U32:
	case K_U64:
		if (!json_is_integer(v))
			return tr_err_set(err, -EINVAL, "%s: expected a whole number", k->name);
		if (json_integer_value(v) < 0)
			return tr_err_set(err, -EINVAL, "%s: %" JSON_INTEGER_FORMAT " is negative",
					  k->name, json_integer_value(v));
		snprintf(shown, sizeof(shown), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return set_number(cfg, k, 0, (uint64_t)json_integer_value(v), true, shown, err);
	case K_F64:
		if (!json_is_number(v))
			return tr_err_set(err, -EINVAL, "%s: expected a number", k->name);
		snprintf(shown, sizeof(shown), "%.17g", json_number_value(v));
		return set_number(cfg, k, json_number_value(v), 0, false, shown, err);
	}
	return -EINVAL;
}

/* Each key of obj over *cfg (not validated). */
static int apply_keys(struct train_config *cfg, const json_t *obj, struct tr_err *err)
{
	const char *name;
	json_t *v;
	int rc;

	if (!json_is_object(obj))
		return tr_err_set(err, -EINVAL, "configuration: expected a JSON object");
	/* AdamW's PyTorch default weight decay applies unless one is given. */
	if (json_is_string(json_object_get(obj, "optimizer")) &&
	    strcmp(json_string_value(json_object_get(obj, "optimizer")), "adamw") == 0)
		cfg->weight_decay = 0.01;
	json_object_foreach((json_t *)obj, name, v) {
		const struct key_desc *k = find_key(name);

		/* The error names the key as data (err->key), for a caller that
		 * maps it to its own name for the input (config.lr, --lr). */
		if (!k) {
			tr_err_set(err, -EINVAL, "unknown configuration key '%.*s'",
				   tr_utf8_cut(name, TR_QUOTE_MAX), name);
			return tr_err_key(err, name);
		}
		rc = set_from_json(cfg, k, v, err);
		if (rc < 0)
			return tr_err_key(err, k->name);
	}
	return 0;
}

static int from_json(struct train_config *cfg, const json_t *obj, bool stored, struct tr_err *err)
{
	int rc;

	config_defaults(cfg);
	if (stored) {
		cfg->ftz = false;          /* stored before FTZ existed: the arithmetic it had */
		cfg->rng = RNG_XOSHIRO;    /* stored before `rng` existed: the stream it drew from */
		cfg->kernels = KERNELS_OPENBLAS;   /* stored before `kernels`: OpenBLAS's arithmetic */
		cfg->precision = K_FP32;   /* stored before `precision` existed: float32 products */
		cfg->seq_kernels = 1;      /* stored before `seq_kernels`: per head, LayerNorm in double */
		cfg->conv = CONV_GEMM;     /* stored before `conv` existed: im2col + GEMM */
	}
	rc = apply_keys(cfg, obj, err);
	if (rc == 0)
		cfg->shards = config_shards(cfg);
	return rc < 0 ? rc : config_validate(cfg, err);
}

int config_apply_json(struct train_config *cfg, const json_t *obj, struct tr_err *err)
{
	struct train_config next = *cfg;
	int rc = apply_keys(&next, obj, err);

	if (rc == 0) {
		next.shards = config_shards(&next);
		rc = config_validate(&next, err);
	}
	if (rc == 0)
		*cfg = next;
	return rc;
}

int config_from_json(struct train_config *cfg, const json_t *obj, struct tr_err *err)
{
	return from_json(cfg, obj, false, err);
}

int config_from_stored_json(struct train_config *cfg, const json_t *obj, struct tr_err *err)
{
	return from_json(cfg, obj, true, err);
}

/* The loss and its settings: each setting only with the loss that takes it;
 * the monitor among the task's metrics. The fit to the data (the task of
 * the targets, the weights' count) is the trainer's to check. */
static int validate_loss(const struct train_config *cfg, struct tr_err *err)
{
	struct augment a;   /* 4 KiB; parsing allocates nothing */

	if ((unsigned)cfg->loss > LOSS_BCE_WITH_LOGITS)
		return tr_err_set_key(err, -EINVAL, "loss", "unknown loss");
	if (!isfinite(cfg->label_smoothing) || cfg->label_smoothing < 0 || cfg->label_smoothing > 1)
		return tr_err_set_key(err, -EINVAL, "label_smoothing", "%g is out of range [0, 1]",
				      cfg->label_smoothing);
	if (!isfinite(cfg->huber_delta) || cfg->huber_delta <= 0 || cfg->huber_delta > 1e6)
		return tr_err_set_key(err, -EINVAL, "huber_delta", "%g is out of range (0, 1e6]", cfg->huber_delta);
	if (cfg->n_class_weights > CFG_MAX_WEIGHTS || cfg->n_pos_weight > CFG_MAX_WEIGHTS)
		return tr_err_set_key(err, -EINVAL, cfg->n_pos_weight > CFG_MAX_WEIGHTS ? "pos_weight" : "class_weights",
				      "at most %d values", CFG_MAX_WEIGHTS);
	if (cfg->loss != LOSS_CROSS_ENTROPY && cfg->label_smoothing != 0)
		return tr_err_set_key(err, -EINVAL, "label_smoothing", "only the cross_entropy loss takes label smoothing (the loss is %s)",
				      loss_name(cfg->loss));
	if (cfg->loss != LOSS_CROSS_ENTROPY && cfg->n_class_weights)
		return tr_err_set_key(err, -EINVAL, "class_weights", "only the cross_entropy loss takes class weights (the loss is %s)",
				      loss_name(cfg->loss));
	if (cfg->loss != LOSS_HUBER && cfg->huber_delta != 1.0)
		return tr_err_set_key(err, -EINVAL, "huber_delta", "only the huber loss takes a delta (the loss is %s)",
				      loss_name(cfg->loss));
	if (cfg->loss != LOSS_BCE_WITH_LOGITS && cfg->n_pos_weight)
		return tr_err_set_key(err, -EINVAL, "pos_weight", "only the bce_with_logits loss takes pos_weight (the loss is %s)",
				      loss_name(cfg->loss));
	if (loss_task_of(cfg->loss) == TASK_REGRESSION ? monitor_is_accuracy(cfg->monitor)
						       : monitor_is_regression(cfg->monitor))
		return tr_err_set_key(err, -EINVAL, "monitor",
				      "%s is not a metric of %s (the loss %s): monitor val_loss%s",
				      monitor_name(cfg->monitor), loss_task_name(loss_task_of(cfg->loss)),
				      loss_name(cfg->loss),
				      loss_task_of(cfg->loss) == TASK_REGRESSION ? ", val_mae or val_rmse"
				      : loss_task_of(cfg->loss) == TASK_MULTILABEL ? " or val_acc"
										   : ", val_acc or val_macro_acc");
	if (cfg->loss == LOSS_BCE_WITH_LOGITS && cfg->monitor == MONITOR_VAL_MACRO_ACC)
		return tr_err_set_key(err, -EINVAL, "monitor",
				      "val_macro_acc is not a metric of multi-label (the loss bce_with_logits): monitor val_loss or val_acc");
	if (memchr(cfg->augment, '\0', sizeof(cfg->augment)) == NULL)
		return tr_err_set_key(err, -EINVAL, "augment", "the SPEC is too long");
	return augment_parse(&a, cfg->augment, err);
}

int config_validate(const struct train_config *cfg, struct tr_err *err)
{
	if (!config_dataset_name_ok(cfg->dataset))
		return tr_err_set_key(err, -EINVAL, "dataset", "'%s' is not a dataset name", cfg->dataset);
	if (cfg->epochs < 1 || cfg->epochs > 100000)
		return tr_err_set_key(err, -EINVAL, "epochs", "%u is out of range [1, 100000]", cfg->epochs);
	if (cfg->batch_size < 1 || cfg->batch_size > 65536)
		return tr_err_set_key(err, -EINVAL, "batch_size", "%u is out of range [1, 65536]", cfg->batch_size);
	if (cfg->eval_batch_size < 1 || cfg->eval_batch_size > 65536)
		return tr_err_set_key(err, -EINVAL, "eval_batch_size", "%u is out of range [1, 65536]",
				      cfg->eval_batch_size);
	if (!isfinite(cfg->lr) || cfg->lr <= 0 || cfg->lr > 10)
		return tr_err_set_key(err, -EINVAL, "lr", "%g is out of range (0, 10]", cfg->lr);
	if (cfg->optimizer != OPTIM_ADAM && cfg->optimizer != OPTIM_ADAMW && cfg->optimizer != OPTIM_SGD)
		return tr_err_set_key(err, -EINVAL, "optimizer", "unknown optimizer");
	if (!isfinite(cfg->momentum) || cfg->momentum < 0 || cfg->momentum >= 1)
		return tr_err_set_key(err, -EINVAL, "momentum", "%g is out of range [0, 1)", cfg->momentum);
	if (cfg->momentum != 0 && cfg->optimizer != OPTIM_SGD)
		return tr_err_set_key(err, -EINVAL, "momentum", "only the sgd optimizer takes a momentum");
	if (!isfinite(cfg->weight_decay) || cfg->weight_decay < 0 || cfg->weight_decay > 10)
		return tr_err_set_key(err, -EINVAL, "weight_decay", "%g is out of range [0, 10]", cfg->weight_decay);
	if (!isfinite(cfg->beta1) || cfg->beta1 < 0 || cfg->beta1 >= 1)
		return tr_err_set_key(err, -EINVAL, "beta1", "%g is out of range [0, 1)", cfg->beta1);
	if (!isfinite(cfg->beta2) || cfg->beta2 < 0 || cfg->beta2 >= 1)
		return tr_err_set_key(err, -EINVAL, "beta2", "%g is out of range [0, 1)", cfg->beta2);
	if (!isfinite(cfg->eps) || cfg->eps <= 0 || cfg->eps > 1)
		return tr_err_set_key(err, -EINVAL, "eps", "%g is out of range (0, 1]", cfg->eps);
	if (cfg->rng != RNG_XOSHIRO && cfg->rng != RNG_TORCH)
		return tr_err_set_key(err, -EINVAL, "rng", "unknown random stream");
	if (cfg->kernels != KERNELS_OPENBLAS && cfg->kernels != KERNELS_PORTABLE)
		return tr_err_set_key(err, -EINVAL, "kernels", "unknown kernels");
	if (cfg->precision != K_FP32 && cfg->precision != K_BF16)
		return tr_err_set_key(err, -EINVAL, "precision", "unknown precision");
	if (cfg->seq_kernels < 1 || cfg->seq_kernels > 3)
		return tr_err_set_key(err, -EINVAL, "seq_kernels", "%u is not 1, 2 or 3", cfg->seq_kernels);
	if (cfg->conv != CONV_GEMM && cfg->conv != CONV_ONEDNN)
		return tr_err_set_key(err, -EINVAL, "conv", "unknown convolutions");
	if (cfg->conv == CONV_ONEDNN && cfg->kernels != KERNELS_OPENBLAS)
		return tr_err_set_key(err, -EINVAL, "conv",
				      "onednn runs with kernels openblas; a portable job computes its convolutions with its own kernels (set conv gemm)");
	if (cfg->precision == K_BF16 && cfg->kernels != KERNELS_OPENBLAS)
		return tr_err_set_key(err, -EINVAL, "precision",
				      "bf16 runs traind's bf16 products with kernels openblas; the portable kernels are float32 only");
	if (cfg->n_hidden < 1 || cfg->n_hidden > CFG_MAX_HIDDEN)
		return tr_err_set_key(err, -EINVAL, "hidden", "expected 1 to %d layers", CFG_MAX_HIDDEN);
	for (uint32_t i = 0; i < cfg->n_hidden; i++)
		if (cfg->hidden[i] < 1 || cfg->hidden[i] > 65536)
			return tr_err_set_key(err, -EINVAL, "hidden", "width %u is out of range [1, 65536]",
					  cfg->hidden[i]);
	{
		struct sched_spec spec;
		int rc = sched_parse(&spec, cfg->lr_scheduler, cfg->epochs, err);

		if (rc < 0)
			return rc;
		if (sched_cycles_momentum(&spec) && cfg->optimizer == OPTIM_SGD && cfg->momentum == 0)
			return tr_err_set_key(err, -EINVAL, "lr_scheduler",
					      "onecycle cycles the momentum (cycle_momentum=true, PyTorch's default) but sgd has momentum 0: set momentum, or cycle_momentum=false");
	}
	if (cfg->monitor != MONITOR_VAL_LOSS && cfg->monitor != MONITOR_VAL_ACC &&
	    cfg->monitor != MONITOR_VAL_MACRO_ACC && cfg->monitor != MONITOR_VAL_MAE &&
	    cfg->monitor != MONITOR_VAL_RMSE)
		return tr_err_set_key(err, -EINVAL, "monitor", "unknown metric");
	if (cfg->early_stop_patience > 1000000)
		return tr_err_set_key(err, -EINVAL, "early_stop_patience", "%u is out of range [0, 1000000]",
				      cfg->early_stop_patience);
	if (!isfinite(cfg->early_stop_min_delta) || cfg->early_stop_min_delta < 0 ||
	    cfg->early_stop_min_delta > 1e6)
		return tr_err_set_key(err, -EINVAL, "early_stop_min_delta", "%g is out of range [0, 1e6]",
				      cfg->early_stop_min_delta);
	if (!isfinite(cfg->clip_grad_norm) || cfg->clip_grad_norm < 0 || cfg->clip_grad_norm > 1e6)
		return tr_err_set_key(err, -EINVAL, "clip_grad_norm", "%g is out of range [0, 1e6] (0: no clipping)",
				      cfg->clip_grad_norm);
	if (cfg->val_size < 1)
		return tr_err_set_key(err, -EINVAL, "val_size", "must be at least 1");
	if (cfg->threads < 1 || cfg->threads > CFG_MAX_THREADS)
		return tr_err_set_key(err, -EINVAL, "threads", "%u is out of range [1, %d]", cfg->threads,
				      CFG_MAX_THREADS);
	if (cfg->ranks < 1 || cfg->ranks > CFG_MAX_RANKS)
		return tr_err_set_key(err, -EINVAL, "ranks", "%u is out of range [1, %d]", cfg->ranks,
				      CFG_MAX_RANKS);
	{
		uint32_t s = config_shards(cfg), slots = 0;

		if (s < 1 || s > CFG_MAX_SHARDS)
			return tr_err_set_key(err, -EINVAL, "shards", "%u is out of range [1, %d]", s,
					      CFG_MAX_SHARDS);
		if (s % cfg->ranks != 0)
			return tr_err_set_key(err, -EINVAL, "shards",
					      "%u is not a multiple of ranks %u (each rank computes the same number of shards)",
					      s, cfg->ranks);
		if (cfg->batch_size % s != 0)
			return tr_err_set_key(err, -EINVAL, "shards",
					      "%u does not divide batch_size %u into equal shards", s,
					      cfg->batch_size);
		if (cfg->hosts[0]) {
			if (parse_hosts(cfg->hosts, &slots, err) < 0)
				return tr_err_key(err, "hosts");
			if (slots < cfg->ranks)
				return tr_err_set_key(err, -EINVAL, "hosts",
						      "'%s' has %u slots for %u ranks", cfg->hosts, slots,
						      cfg->ranks);
		}
	}
	if (cfg->max_restarts > 1000)
		return tr_err_set_key(err, -EINVAL, "max_restarts", "%u is out of range [0, 1000]",
				      cfg->max_restarts);
	return validate_loss(cfg, err);
}

static json_t *weights_json(const float *w, uint32_t n)
{
	json_t *a = json_array();

	for (uint32_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_real((double)w[i]))) {
			json_decref(a);
			return NULL;
		}
	return a;
}

json_t *config_to_json(const struct train_config *cfg)
{
	json_t *o = json_object();
	json_t *h = json_array();

	if (!o || !h)
		goto fail;
	for (uint32_t i = 0; i < cfg->n_hidden; i++)
		if (json_array_append_new(h, json_integer(cfg->hidden[i])))
			goto fail;
	/* Seeds are capped at 2^63-1 on input, so json_integer holds them. */
	if (json_object_set_new(o, "dataset", json_string(cfg->dataset)) ||
	    json_object_set_new(o, "epochs", json_integer(cfg->epochs)) ||
	    json_object_set_new(o, "batch_size", json_integer(cfg->batch_size)) ||
	    json_object_set_new(o, "eval_batch_size", json_integer(cfg->eval_batch_size)) ||
	    json_object_set_new(o, "lr", json_real(cfg->lr)) ||
	    json_object_set_new(o, "optimizer", json_string(config_optim_name(cfg->optimizer))) ||
	    json_object_set_new(o, "momentum", json_real(cfg->momentum)) ||
	    json_object_set_new(o, "weight_decay", json_real(cfg->weight_decay)) ||
	    json_object_set_new(o, "beta1", json_real(cfg->beta1)) ||
	    json_object_set_new(o, "beta2", json_real(cfg->beta2)) ||
	    json_object_set_new(o, "eps", json_real(cfg->eps)) ||
	    json_object_set_new(o, "hidden", h) ||
	    json_object_set_new(o, "seed", json_integer((json_int_t)cfg->seed)) ||
	    json_object_set_new(o, "split_seed", json_integer((json_int_t)cfg->split_seed)) ||
	    json_object_set_new(o, "val_size", json_integer(cfg->val_size)) ||
	    json_object_set_new(o, "train_size", json_integer(cfg->train_size)) ||
	    json_object_set_new(o, "threads", json_integer(cfg->threads)) ||
	    json_object_set_new(o, "model", json_string(cfg->model)) ||
	    json_object_set_new(o, "ftz", json_boolean(cfg->ftz)) ||
	    json_object_set_new(o, "strict_numerics", json_boolean(cfg->strict_numerics)) ||
	    json_object_set_new(o, "lr_scheduler", json_string(cfg->lr_scheduler)) ||
	    json_object_set_new(o, "monitor", json_string(monitor_name(cfg->monitor))) ||
	    json_object_set_new(o, "early_stop_patience", json_integer(cfg->early_stop_patience)) ||
	    json_object_set_new(o, "early_stop_min_delta", json_real(cfg->early_stop_min_delta)) ||
	    json_object_set_new(o, "clip_grad_norm", json_real(cfg->clip_grad_norm)) ||
	    json_object_set_new(o, "shards", json_integer(config_shards(cfg))) ||
	    json_object_set_new(o, "ranks", json_integer(cfg->ranks)) ||
	    json_object_set_new(o, "hosts", json_string(cfg->hosts)) ||
	    json_object_set_new(o, "max_restarts", json_integer(cfg->max_restarts)) ||
	    json_object_set_new(o, "kernels", json_string(config_kernels_name(cfg->kernels))) ||
	    json_object_set_new(o, "precision", json_string(k_precision_name(cfg->precision))) ||
	    json_object_set_new(o, "conv", json_string(config_conv_name(cfg->conv))) ||

	    json_object_set_new(o, "rng", json_string(config_rng_name(cfg->rng))) ||
	    json_object_set_new(o, "loss", json_string(loss_name(cfg->loss))) ||
	    json_object_set_new(o, "label_smoothing", json_real(cfg->label_smoothing)) ||
	    json_object_set_new(o, "class_weights", weights_json(cfg->class_weights, cfg->n_class_weights)) ||
	    json_object_set_new(o, "huber_delta", json_real(cfg->huber_delta)) ||
	    json_object_set_new(o, "pos_weight", weights_json(cfg->pos_weight, cfg->n_pos_weight)) ||
	    json_object_set_new(o, "augment", json_string(cfg->augment)) ||
	    json_object_set_new(o, "context", json_integer(cfg->context)) ||
	    json_object_set_new(o, "seq_kernels", json_integer(cfg->seq_kernels))) {
		h = NULL; /* owned by o once set, or freed by a failed set_new */
		goto fail;
	}
	return o;
fail:
	json_decref(h);
	json_decref(o);
	return NULL;
}

bool config_equal(const struct train_config *a, const struct train_config *b)
{
	if (strcmp(a->dataset, b->dataset) != 0 || a->epochs != b->epochs ||
	    a->batch_size != b->batch_size || a->eval_batch_size != b->eval_batch_size ||
	    a->lr != b->lr || a->optimizer != b->optimizer || a->momentum != b->momentum ||
	    a->weight_decay != b->weight_decay || a->beta1 != b->beta1 || a->beta2 != b->beta2 ||
	    a->eps != b->eps || a->n_hidden != b->n_hidden || a->seed != b->seed ||
	    a->split_seed != b->split_seed || a->val_size != b->val_size ||
	    a->train_size != b->train_size || a->threads != b->threads ||
	    strcmp(a->model, b->model) != 0 || a->ftz != b->ftz ||
	    a->strict_numerics != b->strict_numerics ||
	    strcmp(a->lr_scheduler, b->lr_scheduler) != 0 || a->monitor != b->monitor ||
	    a->early_stop_patience != b->early_stop_patience ||
	    a->early_stop_min_delta != b->early_stop_min_delta || a->clip_grad_norm != b->clip_grad_norm ||
	    a->rng != b->rng || config_shards(a) != config_shards(b) || a->ranks != b->ranks ||
	    strcmp(a->hosts, b->hosts) != 0 || a->max_restarts != b->max_restarts ||
	    a->loss != b->loss || a->label_smoothing != b->label_smoothing ||
	    a->n_class_weights != b->n_class_weights || a->huber_delta != b->huber_delta ||
	    a->n_pos_weight != b->n_pos_weight || strcmp(a->augment, b->augment) != 0 ||
	    a->context != b->context ||
	    memcmp(a->class_weights, b->class_weights, a->n_class_weights * sizeof(float)) != 0 ||
	    memcmp(a->pos_weight, b->pos_weight, a->n_pos_weight * sizeof(float)) != 0 ||
	    a->kernels != b->kernels || a->precision != b->precision || a->seq_kernels != b->seq_kernels ||
	    a->conv != b->conv)
		return false;
	for (uint32_t i = 0; i < a->n_hidden; i++)
		if (a->hidden[i] != b->hidden[i])
			return false;
	return true;
}
