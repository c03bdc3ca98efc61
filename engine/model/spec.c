/*
 * spec.c - the layer language. See include/traind/spec.h.
 *
 * Grammar (white space allowed between tokens):
 *   spec  := layer (',' layer)*  |  'mlp'  |  'lenet5'
 *   layer := NAME [ '(' [arg (',' arg)*] ')' ]
 *   arg   := [KEY '='] VALUE       VALUE: a number, or true/false
 * Positional arguments come first, as in Python.
 */
#include "traind/spec.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 6
#define MAX_KERNEL 64
#define MAX_CHANNELS 65536
#define MAX_SPATIAL 4096

static const char *const lenet5_text =
	"conv2d(6,5,padding=2),relu,maxpool2d(2),conv2d(16,5),relu,maxpool2d(2),"
	"flatten,linear(120),relu,linear(84),relu,linear(10)";

static const struct {
	const char *name;
	enum layer_kind kind;
} kinds[] = {
	{ "flatten", LAYER_FLATTEN },       { "linear", LAYER_LINEAR },
	{ "relu", LAYER_RELU },             { "tanh", LAYER_TANH },
	{ "gelu", LAYER_GELU },             { "dropout", LAYER_DROPOUT },
	{ "batchnorm1d", LAYER_BATCHNORM1D }, { "batchnorm2d", LAYER_BATCHNORM2D },
	{ "conv2d", LAYER_CONV2D },         { "maxpool2d", LAYER_MAXPOOL2D },
	{ "avgpool2d", LAYER_AVGPOOL2D },
};

#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

const char *spec_kind_name(enum layer_kind k)
{
	for (size_t i = 0; i < NKINDS; i++)
		if (kinds[i].kind == k)
			return kinds[i].name;
	return "?";
}

bool spec_has_params(enum layer_kind k)
{
	return k == LAYER_LINEAR || k == LAYER_CONV2D || k == LAYER_BATCHNORM1D ||
	       k == LAYER_BATCHNORM2D;
}

bool spec_is_batchnorm(enum layer_kind k)
{
	return k == LAYER_BATCHNORM1D || k == LAYER_BATCHNORM2D;
}

void spec_layer_text(const struct layer_spec *l, char *buf, size_t len)
{
	const char *name = spec_kind_name(l->kind);

	switch (l->kind) {
	case LAYER_LINEAR:
		snprintf(buf, len, "linear(%u%s)", l->out, l->bias ? "" : ",bias=false");
		break;
	case LAYER_CONV2D: {
		char stride[24] = "", pad[24] = "";

		if (l->stride != 1)
			snprintf(stride, sizeof(stride), ",stride=%u", l->stride);
		if (l->padding)
			snprintf(pad, sizeof(pad), ",padding=%u", l->padding);
		snprintf(buf, len, "conv2d(%u,%u%s%s%s)", l->out, l->k, stride, pad,
			 l->bias ? "" : ",bias=false");
		break;
	}
	case LAYER_MAXPOOL2D:
	case LAYER_AVGPOOL2D:
		if (l->stride != l->k)
			snprintf(buf, len, "%s(%u,stride=%u)", name, l->k, l->stride);
		else
			snprintf(buf, len, "%s(%u)", name, l->k);
		break;
	case LAYER_DROPOUT:
		snprintf(buf, len, "dropout(%g)", l->p);
		break;
	default:
		snprintf(buf, len, "%s", name);
		break;
	}
}

void spec_text(const struct model_spec *spec, char *buf, size_t len)
{
	size_t used = 0;

	if (len)
		buf[0] = '\0';
	for (uint32_t i = 0; i < spec->n && used + 1 < len; i++) {
		char one[96];

		spec_layer_text(&spec->layers[i], one, sizeof(one));
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "", one);
	}
}

void spec_mlp(struct model_spec *out, const uint32_t *hidden, uint32_t n_hidden, uint32_t classes)
{
	struct layer_spec flatten = { .kind = LAYER_FLATTEN };
	struct layer_spec relu = { .kind = LAYER_RELU };

	memset(out, 0, sizeof(*out));
	out->layers[out->n++] = flatten;
	for (uint32_t i = 0; i <= n_hidden; i++) {
		struct layer_spec lin = { .kind = LAYER_LINEAR, .bias = true };

		lin.out = i < n_hidden ? hidden[i] : classes;
		out->layers[out->n++] = lin;
		if (i < n_hidden)
			out->layers[out->n++] = relu;
	}
}

/* ---- parsing ------------------------------------------------------------ */

struct arg {
	char key[16];        /* "" for a positional argument */
	double num;
	int boolean;         /* -1: a number; 0/1: false/true */
};

struct parser {
	const char *s;
	size_t pos;
	struct tr_err *err;
};

static void skip_ws(struct parser *p)
{
	while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n')
		p->pos++;
}

static bool is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* A word of [A-Za-z0-9_] into buf; false when there is none or it is too long. */
static bool read_word(struct parser *p, char *buf, size_t len)
{
	size_t n = 0;

	skip_ws(p);
	while (is_word_char(p->s[p->pos])) {
		if (n + 1 >= len)
			return false;
		buf[n++] = p->s[p->pos++];
	}
	buf[n] = '\0';
	return n > 0;
}

static int read_arg(struct parser *p, struct arg *a, uint32_t layer, const char *name)
{
	char word[16];
	char *end;
	size_t start;

	memset(a, 0, sizeof(*a));
	a->boolean = -1;
	skip_ws(p);
	start = p->pos;
	if (is_word_char(p->s[p->pos]) && !(p->s[p->pos] >= '0' && p->s[p->pos] <= '9')) {
		if (!read_word(p, word, sizeof(word)))
			return tr_err_set(p->err, -EINVAL, "model: layer %u %s: an argument name is too long",
					  layer, name);
		skip_ws(p);
		if (p->s[p->pos] == '=') {
			p->pos++;
			snprintf(a->key, sizeof(a->key), "%s", word);
			skip_ws(p);
			start = p->pos;
		} else {
			p->pos = start;
		}
	}
	if (strncmp(p->s + p->pos, "true", 4) == 0 && !is_word_char(p->s[p->pos + 4])) {
		a->boolean = 1;
		p->pos += 4;
		return 0;
	}
	if (strncmp(p->s + p->pos, "false", 5) == 0 && !is_word_char(p->s[p->pos + 5])) {
		a->boolean = 0;
		p->pos += 5;
		return 0;
	}
	if (strncmp(p->s + p->pos, "True", 4) == 0 && !is_word_char(p->s[p->pos + 4])) {
		a->boolean = 1;
		p->pos += 4;
		return 0;
	}
	if (strncmp(p->s + p->pos, "False", 5) == 0 && !is_word_char(p->s[p->pos + 5])) {
		a->boolean = 0;
		p->pos += 5;
		return 0;
	}
	if (!((p->s[p->pos] >= '0' && p->s[p->pos] <= '9') || p->s[p->pos] == '.'))
		return tr_err_set(p->err, -EINVAL, "model: layer %u %s: expected a number at '%.16s'",
				  layer, name, p->s + p->pos);
	a->num = strtod(p->s + p->pos, &end);
	if (end == p->s + p->pos || !isfinite(a->num))
		return tr_err_set(p->err, -EINVAL, "model: layer %u %s: '%.16s' is not a number",
				  layer, name, p->s + start);
	p->pos = (size_t)(end - p->s);
	return 0;
}

/* A whole number argument in [lo, hi]. */
static int want_uint(struct parser *p, const struct arg *a, uint32_t layer, const char *name,
		     const char *what, uint32_t lo, uint32_t hi, uint32_t *out)
{
	if (a->boolean >= 0 || a->num != floor(a->num) || a->num < lo || a->num > hi)
		return tr_err_set(p->err, -EINVAL, "model: layer %u %s: %s must be a whole number in [%u, %u]",
				  layer, name, what, lo, hi);
	*out = (uint32_t)a->num;
	return 0;
}

static int want_bool(struct parser *p, const struct arg *a, uint32_t layer, const char *name,
		     const char *what, bool *out)
{
	if (a->boolean < 0)
		return tr_err_set(p->err, -EINVAL, "model: layer %u %s: %s must be true or false",
				  layer, name, what);
	*out = a->boolean == 1;
	return 0;
}

/* Check and apply the arguments of one layer. `usage` says what it takes. */
static int apply_args(struct parser *p, struct layer_spec *l, const struct arg *args, size_t nargs,
		      uint32_t layer, const char *name)
{
	size_t npos = 0;
	int rc = 0;

	for (size_t i = 0; i < nargs; i++) {
		if (args[i].key[0] == '\0') {
			if (i != npos)
				return tr_err_set(p->err, -EINVAL,
						  "model: layer %u %s: a positional argument follows a keyword argument",
						  layer, name);
			npos++;
		}
	}
	switch (l->kind) {
	case LAYER_LINEAR:
		if (npos != 1)
			return tr_err_set(p->err, -EINVAL,
					  "model: layer %u %s: linear takes its output size, e.g. linear(256)",
					  layer, name);
		rc = want_uint(p, &args[0], layer, name, "the output size", 1, MAX_CHANNELS, &l->out);
		break;
	case LAYER_CONV2D:
		if (npos != 2)
			return tr_err_set(p->err, -EINVAL,
					  "model: layer %u %s: conv2d takes OUT,K (output channels, kernel size), e.g. conv2d(16,5)",
					  layer, name);
		rc = want_uint(p, &args[0], layer, name, "the output channels", 1, MAX_CHANNELS, &l->out);
		if (rc == 0)
			rc = want_uint(p, &args[1], layer, name, "the kernel size", 1, MAX_KERNEL, &l->k);
		break;
	case LAYER_MAXPOOL2D:
	case LAYER_AVGPOOL2D:
		if (npos != 1)
			return tr_err_set(p->err, -EINVAL,
					  "model: layer %u %s: %s takes its kernel size, e.g. %s(2)",
					  layer, name, spec_kind_name(l->kind), spec_kind_name(l->kind));
		rc = want_uint(p, &args[0], layer, name, "the kernel size", 1, MAX_KERNEL, &l->k);
		l->stride = l->k;
		break;
	case LAYER_DROPOUT:
		if (npos > 1)
			return tr_err_set(p->err, -EINVAL, "model: layer %u %s: dropout takes one probability, e.g. dropout(0.2)",
					  layer, name);
		if (npos == 1)
			l->p = args[0].num;
		break;
	default:
		if (npos)
			return tr_err_set(p->err, -EINVAL, "model: layer %u %s: %s takes no arguments",
					  layer, name, spec_kind_name(l->kind));
		break;
	}
	if (rc < 0)
		return rc;
	for (size_t i = npos; i < nargs; i++) {
		const struct arg *a = &args[i];
		bool ok = false;

		if (strcmp(a->key, "bias") == 0 && (l->kind == LAYER_LINEAR || l->kind == LAYER_CONV2D)) {
			rc = want_bool(p, a, layer, name, "bias", &l->bias);
			ok = true;
		} else if (strcmp(a->key, "stride") == 0 &&
			   (l->kind == LAYER_CONV2D || l->kind == LAYER_MAXPOOL2D ||
			    l->kind == LAYER_AVGPOOL2D)) {
			rc = want_uint(p, a, layer, name, "stride", 1, MAX_KERNEL, &l->stride);
			ok = true;
		} else if (strcmp(a->key, "padding") == 0 && l->kind == LAYER_CONV2D) {
			rc = want_uint(p, a, layer, name, "padding", 0, MAX_KERNEL, &l->padding);
			ok = true;
		} else if (strcmp(a->key, "p") == 0 && l->kind == LAYER_DROPOUT && npos == 0) {
			l->p = a->num;
			ok = a->boolean < 0;
		}
		if (!ok)
			return tr_err_set(p->err, -EINVAL, "model: layer %u %s: %s does not take '%s'",
					  layer, name, spec_kind_name(l->kind), a->key);
		if (rc < 0)
			return rc;
	}
	if (l->kind == LAYER_DROPOUT && !(l->p >= 0.0 && l->p < 1.0))
		return tr_err_set(p->err, -EINVAL,
				  "model: layer %u %s: the dropout probability must be in [0, 1)", layer, name);
	return 0;
}

static int parse_layer(struct parser *p, struct layer_spec *l, uint32_t layer)
{
	char name[32];
	char shown[48];
	struct arg args[MAX_ARGS];
	size_t nargs = 0, start;
	size_t i;

	skip_ws(p);
	start = p->pos;
	if (!read_word(p, name, sizeof(name)))
		return tr_err_set(p->err, -EINVAL, "model: layer %u: expected a layer name at '%.16s'",
				  layer, p->s + start);
	for (i = 0; i < NKINDS; i++)
		if (strcmp(kinds[i].name, name) == 0)
			break;
	if (i == NKINDS)
		return tr_err_set(p->err, -EINVAL,
				  "model: layer %u: unknown layer '%s' (known: flatten, linear, relu, tanh, gelu, dropout, batchnorm1d, batchnorm2d, conv2d, maxpool2d, avgpool2d; or the whole model mlp or lenet5)",
				  layer, name);
	memset(l, 0, sizeof(*l));
	l->kind = kinds[i].kind;
	l->bias = true;
	l->stride = 1;
	l->p = 0.5;
	skip_ws(p);
	if (p->s[p->pos] == '(') {
		p->pos++;
		skip_ws(p);
		while (p->s[p->pos] != ')') {
			int rc;

			if (nargs == MAX_ARGS)
				return tr_err_set(p->err, -EINVAL, "model: layer %u %s: too many arguments",
						  layer, name);
			rc = read_arg(p, &args[nargs++], layer, name);
			if (rc < 0)
				return rc;
			skip_ws(p);
			if (p->s[p->pos] == ',') {
				p->pos++;
				skip_ws(p);
				if (p->s[p->pos] == ')')
					return tr_err_set(p->err, -EINVAL,
							  "model: layer %u %s: an argument is missing after ','",
							  layer, name);
			} else if (p->s[p->pos] != ')') {
				return tr_err_set(p->err, -EINVAL,
						  "model: layer %u %s: expected ',' or ')' at '%.16s'", layer,
						  name, p->s + p->pos);
			}
		}
		p->pos++;
	}
	snprintf(shown, sizeof(shown), "%.*s", (int)(p->pos - start > 40 ? 40 : p->pos - start),
		 p->s + start);
	return apply_args(p, l, args, nargs, layer, shown);
}

int spec_parse(struct model_spec *out, const char *text, const uint32_t *hidden, uint32_t n_hidden,
	       uint32_t classes, struct tr_err *err)
{
	struct parser p = { .s = text, .pos = 0, .err = err };
	size_t a = 0, b = strlen(text);
	int rc;

	memset(out, 0, sizeof(*out));
	while (a < b && (text[a] == ' ' || text[a] == '\t'))
		a++;
	while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t'))
		b--;
	if (b - a == 3 && strncmp(text + a, "mlp", 3) == 0) {
		spec_mlp(out, hidden, n_hidden, classes);
		return 0;
	}
	if (b - a == 6 && strncmp(text + a, "lenet5", 6) == 0) {
		/* Its last layer has one output per class of the data. */
		rc = spec_parse(out, lenet5_text, hidden, n_hidden, classes, err);
		if (rc == 0 && classes)
			out->layers[out->n - 1].out = classes;
		return rc;
	}
	if (b == a)
		return tr_err_set(err, -EINVAL, "model: empty (give layers like flatten,linear(256),relu,linear(10), or mlp or lenet5)");
	for (;;) {
		if (out->n == SPEC_MAX_LAYERS)
			return tr_err_set(err, -EINVAL, "model: more than %d layers", SPEC_MAX_LAYERS);
		rc = parse_layer(&p, &out->layers[out->n], out->n + 1);
		if (rc < 0)
			return rc;
		out->n++;
		skip_ws(&p);
		if (p.s[p.pos] == '\0')
			return 0;
		if (p.s[p.pos] != ',')
			return tr_err_set(err, -EINVAL, "model: after layer %u: expected ',' at '%.16s'",
					  out->n, p.s + p.pos);
		p.pos++;
	}
}

/* ---- shapes ----------------------------------------------------------- */

static void shape_text(struct shape s, char *buf, size_t len)
{
	if (s.flat)
		snprintf(buf, len, "%u", s.c);
	else
		snprintf(buf, len, "%u\xc3\x97%u\xc3\x97%u", s.c, s.h, s.w);   /* C×H×W */
}

int spec_shapes(const struct model_spec *spec, struct shape in, uint32_t classes,
		struct shape *shapes, uint64_t *params, struct tr_err *err)
{
	struct shape s = in;
	uint64_t count = 0;

	if (spec->n == 0)
		return tr_err_set(err, -EINVAL, "model: no layers");
	for (uint32_t i = 0; i < spec->n; i++) {
		const struct layer_spec *l = &spec->layers[i];
		char name[96], st[64];
		uint64_t features = (uint64_t)s.c * s.h * s.w;

		spec_layer_text(l, name, sizeof(name));
		shape_text(s, st, sizeof(st));
		switch (l->kind) {
		case LAYER_FLATTEN:
			s.c = (uint32_t)features;
			s.h = s.w = 1;
			s.flat = true;
			break;
		case LAYER_LINEAR:
			if (!s.flat)
				return tr_err_set(err, -EINVAL,
						  "model: layer %u %s: its %s input is not a flat vector; put flatten before it",
						  i + 1, name, st);
			count += (uint64_t)l->out * s.c + (l->bias ? l->out : 0);
			s.c = l->out;
			break;
		case LAYER_BATCHNORM1D:
			if (!s.flat)
				return tr_err_set(err, -EINVAL,
						  "model: layer %u %s: its %s input is an image; use batchnorm2d, or flatten first",
						  i + 1, name, st);
			count += 2ull * s.c;
			break;
		case LAYER_BATCHNORM2D:
			if (s.flat)
				return tr_err_set(err, -EINVAL,
						  "model: layer %u %s: its input is a flat vector of %u; use batchnorm1d",
						  i + 1, name, s.c);
			count += 2ull * s.c;
			break;
		case LAYER_CONV2D:
		case LAYER_MAXPOOL2D:
		case LAYER_AVGPOOL2D: {
			uint32_t pad = l->kind == LAYER_CONV2D ? l->padding : 0;

			if (s.flat)
				return tr_err_set(err, -EINVAL,
						  "model: layer %u %s: its input is a flat vector of %u, not an image",
						  i + 1, name, s.c);
			if (s.h + 2 * pad < l->k || s.w + 2 * pad < l->k)
				return tr_err_set(err, -EINVAL,
						  "model: layer %u %s: its %s input is smaller than the kernel",
						  i + 1, name, st);
			if (l->kind == LAYER_CONV2D) {
				count += (uint64_t)l->out * s.c * l->k * l->k + (l->bias ? l->out : 0);
				s.c = l->out;
			}
			s.h = (s.h + 2 * pad - l->k) / l->stride + 1;
			s.w = (s.w + 2 * pad - l->k) / l->stride + 1;
			break;
		}
		default:   /* elementwise */
			break;
		}
		if ((uint64_t)s.c * s.h * s.w > (1u << 24))
			return tr_err_set(err, -EINVAL,
					  "model: layer %u %s: its output of %llu values per sample is too large (at most 2^24)",
					  i + 1, name, (unsigned long long)s.c * s.h * s.w);
		if (s.h > MAX_SPATIAL || s.w > MAX_SPATIAL)
			return tr_err_set(err, -EINVAL, "model: layer %u %s: its output is too large", i + 1,
					  name);
		if (shapes)
			shapes[i] = s;
	}
	if (params)
		*params = count;
	if (classes == 0)
		return 0;   /* any output (tests of single layers) */
	if (!s.flat && !(s.h == 1 && s.w == 1)) {
		char st[64];

		shape_text(s, st, sizeof(st));
		return tr_err_set(err, -EINVAL,
				  "model: the last layer gives a %s image, not %u class scores; end the model with flatten,linear(%u)",
				  st, classes, classes);
	}
	if (!s.flat)
		return tr_err_set(err, -EINVAL,
				  "model: the last layer gives a %u\xc3\x97" "1\xc3\x97" "1 image; end the model with flatten,linear(%u)",
				  s.c, classes);
	if (s.c != classes) {
		char name[96];

		spec_layer_text(&spec->layers[spec->n - 1], name, sizeof(name));
		return tr_err_set(err, -EINVAL,
				  "model: layer %u %s: the last layer gives %u outputs; the dataset has %u classes",
				  spec->n, name, s.c, classes);
	}
	return 0;
}
