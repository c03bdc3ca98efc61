/*
 * spec.c - the model language. See include/traind/spec.h and doc/models.md.
 *
 * Grammar (white space allowed between tokens):
 *   spec   := seq  |  ARCH                  ARCH: mlp, lenet5, resnet20, ...
 *   seq    := item (',' item)*
 *   item   := layer  |  block
 *   layer  := NAME [ '(' [arg (',' arg)*] ')' ]
 *   block  := 'residual' '(' seq [ ';' 'shortcut' '=' seq ] ')'
 *           | 'concat' '(' seq (';' seq)+ ')'
 *   arg    := [KEY '='] VALUE       VALUE: a number, or true/false
 * Positional arguments come first, as in Python.
 *
 * The parser fills the flat array in text order, each item's place in the
 * tree (parent, branch, pos) and its input (src) set before its arguments
 * are read, so every message can say where the item is (spec_where).
 */
#include "traind/spec.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 8
#define MAX_KERNEL 64
#define MAX_CHANNELS 65536
#define MAX_SPATIAL 4096
#define MAX_VOCAB (1u << 20)      /* embedding rows (token ids are floats: exact below 2^24) */
#define MAX_POSITIONS 65536       /* a sequence's positions */
#define MAX_HEADS 256
#define MAX_RNN_LAYERS 16
#define ARCH_TEXT_MAX 16384   /* the expansion of the largest named architecture */

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
	{ "avgpool2d", LAYER_AVGPOOL2D },   { "adaptiveavgpool2d", LAYER_ADAPTIVEAVGPOOL2D },
	{ "identity", LAYER_IDENTITY },     { "leakyrelu", LAYER_LEAKYRELU },
	{ "sigmoid", LAYER_SIGMOID },       { "silu", LAYER_SILU },
	{ "softplus", LAYER_SOFTPLUS },     { "upsample", LAYER_UPSAMPLE },
	{ "embedding", LAYER_EMBEDDING },   { "posembedding", LAYER_POSEMBEDDING },
	{ "lstm", LAYER_LSTM },             { "gru", LAYER_GRU },
	{ "last", LAYER_LAST },             { "layernorm", LAYER_LAYERNORM },
	{ "multiheadattention", LAYER_MHA }, { "transformer_encoder_layer", LAYER_TRANSFORMER },
	{ "residual", LAYER_RESIDUAL },     { "concat", LAYER_CONCAT },
};

#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

static const char *const arch_names[] = { "mlp", "lenet5", "resnet20", "resnet32", "resnet56",
					  "resnet18", "resnet18_cifar", "char_lstm", "gpt" };
#define KNOWN_LAYERS                                                                            \
	"flatten, identity, linear, relu, leakyrelu, tanh, sigmoid, silu, gelu, softplus, dropout, " \
	"batchnorm1d, batchnorm2d, conv2d, maxpool2d, avgpool2d, adaptiveavgpool2d, upsample, "   \
	"embedding, posembedding, lstm, gru, last, layernorm, multiheadattention, "               \
	"transformer_encoder_layer; "                                                             \
	"blocks residual(...; shortcut=...), concat(...; ...); or the whole model mlp, lenet5, "   \
	"resnet20, resnet32, resnet56, resnet18, resnet18_cifar, char_lstm or gpt"

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
	       k == LAYER_BATCHNORM2D || k == LAYER_EMBEDDING || k == LAYER_POSEMBEDDING ||
	       k == LAYER_LSTM || k == LAYER_GRU || k == LAYER_LAYERNORM || k == LAYER_MHA ||
	       k == LAYER_TRANSFORMER;
}

bool spec_is_sequence_layer(enum layer_kind k)
{
	return k == LAYER_POSEMBEDDING || k == LAYER_LSTM || k == LAYER_GRU || k == LAYER_LAYERNORM ||
	       k == LAYER_MHA || k == LAYER_TRANSFORMER;
}

bool spec_is_batchnorm(enum layer_kind k)
{
	return k == LAYER_BATCHNORM1D || k == LAYER_BATCHNORM2D;
}

bool spec_is_block(enum layer_kind k)
{
	return k == LAYER_RESIDUAL || k == LAYER_CONCAT;
}

size_t shape_size(struct shape s)
{
	return (size_t)s.c * s.h * s.w;
}

void shape_text(struct shape s, char *buf, size_t len)
{
	if (s.seq && s.vocab)
		snprintf(buf, len, "%u tokens", s.h);
	else if (s.seq)
		snprintf(buf, len, "%u\xc3\x97%u sequence", s.h, s.c);   /* T×E */
	else if (s.flat)
		snprintf(buf, len, "%u", s.c);
	else
		snprintf(buf, len, "%u\xc3\x97%u\xc3\x97%u", s.c, s.h, s.w);   /* C×H×W */
}

bool shape_equal(struct shape a, struct shape b)
{
	return a.c == b.c && a.h == b.h && a.w == b.w && a.flat == b.flat && a.seq == b.seq &&
	       a.vocab == b.vocab;
}

/* ---- text --------------------------------------------------------------- */

void spec_layer_text(const struct layer_spec *l, char *buf, size_t len)
{
	const char *name = spec_kind_name(l->kind);
	char a[32] = "", b[32] = "", c[32] = "", d[32] = "";

	switch (l->kind) {
	case LAYER_LINEAR:
		snprintf(buf, len, "linear(%u%s)", l->out, l->bias ? "" : ",bias=false");
		break;
	case LAYER_CONV2D:
		if (l->stride != 1)
			snprintf(a, sizeof(a), ",stride=%u", l->stride);
		if (l->padding)
			snprintf(b, sizeof(b), ",padding=%u", l->padding);
		if (l->dilation != 1)
			snprintf(c, sizeof(c), ",dilation=%u", l->dilation);
		if (l->groups != 1)
			snprintf(d, sizeof(d), ",groups=%u", l->groups);
		snprintf(buf, len, "conv2d(%u,%u%s%s%s%s%s)", l->out, l->k, a, b, c, d,
			 l->bias ? "" : ",bias=false");
		break;
	case LAYER_MAXPOOL2D:
	case LAYER_AVGPOOL2D:
		if (l->stride != l->k)
			snprintf(a, sizeof(a), ",stride=%u", l->stride);
		if (l->padding)
			snprintf(b, sizeof(b), ",padding=%u", l->padding);
		snprintf(buf, len, "%s(%u%s%s)", name, l->k, a, b);
		break;
	case LAYER_ADAPTIVEAVGPOOL2D:
		snprintf(buf, len, "adaptiveavgpool2d(%u,%u)", l->out, l->out_w);
		break;
	case LAYER_UPSAMPLE:
		snprintf(buf, len, "upsample(%u)", l->k);
		break;
	case LAYER_DROPOUT:
		snprintf(buf, len, "dropout(%g)", l->p);
		break;
	case LAYER_LEAKYRELU:
		snprintf(buf, len, "leakyrelu(%g)", l->p);
		break;
	case LAYER_SOFTPLUS:
		snprintf(buf, len, "softplus(beta=%g,threshold=%g)", l->p, l->threshold);
		break;
	case LAYER_EMBEDDING:
		if (l->padding_idx >= 0)
			snprintf(a, sizeof(a), ",padding_idx=%d", l->padding_idx);
		snprintf(buf, len, "embedding(%u,%u%s)", l->num, l->out, a);
		break;
	case LAYER_POSEMBEDDING:
		if (l->num)
			snprintf(buf, len, "posembedding(%u)", l->num);
		else
			snprintf(buf, len, "posembedding");
		break;
	case LAYER_LSTM:
	case LAYER_GRU:
		if (l->layers != 1)
			snprintf(a, sizeof(a), ",layers=%u", l->layers);
		if (l->p != 0.0)
			snprintf(b, sizeof(b), ",dropout=%g", l->p);
		snprintf(buf, len, "%s(%u%s%s)", name, l->out, a, b);
		break;
	case LAYER_MHA:
		if (l->p != 0.0)
			snprintf(b, sizeof(b), ",dropout=%g", l->p);
		snprintf(buf, len, "multiheadattention(%u,%u%s%s)", l->out, l->heads,
			 l->causal ? ",causal=true" : "", b);
		break;
	case LAYER_TRANSFORMER:
		snprintf(b, sizeof(b), ",dropout=%g", l->p);
		snprintf(buf, len, "transformer_encoder_layer(%u,%u,%u%s%s%s)", l->out, l->heads, l->ff, b,
			 l->norm_first ? ",norm_first=true" : "", l->causal ? ",causal=true" : "");
		break;
	default:
		snprintf(buf, len, "%s", name);
		break;
	}
}

struct text_buf {
	char *buf;
	size_t len, used;
};

static void put(struct text_buf *t, const char *s)
{
	size_t n = strlen(s);

	if (t->used + 1 >= t->len)
		return;
	if (n > t->len - t->used - 1)
		n = t->len - t->used - 1;
	memcpy(t->buf + t->used, s, n);
	t->used += n;
	t->buf[t->used] = '\0';
}

/* Items [first, end) that are children of `parent` in `branch`. */
static void seq_text(const struct model_spec *spec, uint32_t first, uint32_t end, int32_t parent,
		     uint32_t branch, struct text_buf *t)
{
	bool any = false;

	for (uint32_t i = first; i < end; i++) {
		const struct layer_spec *l = &spec->layers[i];

		if (l->parent != parent || l->branch != branch)
			continue;
		if (any)
			put(t, ",");
		any = true;
		if (spec_is_block(l->kind)) {
			put(t, l->kind == LAYER_RESIDUAL ? "residual(" : "concat(");
			for (uint32_t b = 0; b < l->nbranches; b++) {
				if (b)
					put(t, l->kind == LAYER_RESIDUAL ? ";shortcut=" : ";");
				seq_text(spec, i + 1, l->end, (int32_t)i, b, t);
			}
			put(t, ")");
			i = l->end - 1;
		} else {
			char one[96];

			spec_layer_text(l, one, sizeof(one));
			put(t, one);
		}
	}
}

void spec_text(const struct model_spec *spec, char *buf, size_t len)
{
	struct text_buf t = { buf, len, 0 };

	if (len)
		buf[0] = '\0';
	if (spec->arch[0]) {
		put(&t, spec->arch);
		return;
	}
	seq_text(spec, 0, spec->n, -1, 0, &t);
}

static const char *branch_name(const struct layer_spec *block, uint32_t b, char *buf, size_t len)
{
	if (block->kind == LAYER_RESIDUAL)
		return b == 0 ? "body" : "shortcut";
	snprintf(buf, len, "branch %u", b + 1);
	return buf;
}

/* "block 3 (residual), body " for the items of that branch; "" at the top. */
static void where_prefix(const struct model_spec *spec, int32_t parent, uint32_t branch, char *buf,
			 size_t len)
{
	char outer[256] = "", bn[24];

	buf[0] = '\0';
	if (parent < 0)
		return;
	where_prefix(spec, spec->layers[parent].parent, spec->layers[parent].branch, outer,
		     sizeof(outer));
	snprintf(buf, len, "%sblock %u (%s), %s ", outer, spec->layers[parent].pos + 1,
		 spec_kind_name(spec->layers[parent].kind),
		 branch_name(&spec->layers[parent], branch, bn, sizeof(bn)));
}

void spec_where(const struct model_spec *spec, uint32_t i, char *buf, size_t len)
{
	const struct layer_spec *l = &spec->layers[i];
	char prefix[256], name[96];

	where_prefix(spec, l->parent, l->branch, prefix, sizeof(prefix));
	if (spec_is_block(l->kind)) {
		snprintf(buf, len, "%sblock %u (%s)", prefix, l->pos + 1, spec_kind_name(l->kind));
		return;
	}
	spec_layer_text(l, name, sizeof(name));
	snprintf(buf, len, "%slayer %u %s", prefix, l->pos + 1, name);
}

void spec_module_path(const struct model_spec *spec, uint32_t i, char *buf, size_t len)
{
	const struct layer_spec *l = &spec->layers[i];
	char outer[96];

	if (l->parent < 0) {
		snprintf(buf, len, "net.%u", l->pos);
		return;
	}
	spec_module_path(spec, (uint32_t)l->parent, outer, sizeof(outer));
	/* At most SPEC_MAX_DEPTH blocks deep: the path fits in 96 bytes. */
	if (spec->layers[l->parent].kind == LAYER_RESIDUAL)
		(void)!snprintf(buf, len, "%.80s.%s.%u", outer, l->branch ? "shortcut" : "body", l->pos);
	else
		(void)!snprintf(buf, len, "%.80s.branches.%u.%u", outer, l->branch, l->pos);
}

void spec_mlp(struct model_spec *out, const uint32_t *hidden, uint32_t n_hidden, uint32_t classes)
{
	struct layer_spec flatten = { .kind = LAYER_FLATTEN, .parent = -1, .src = -1 };
	struct layer_spec relu = { .kind = LAYER_RELU, .parent = -1 };

	memset(out, 0, sizeof(*out));
	out->layers[out->n++] = flatten;
	for (uint32_t i = 0; i <= n_hidden; i++) {
		struct layer_spec lin = { .kind = LAYER_LINEAR, .bias = true, .parent = -1, .stride = 1,
					  .dilation = 1, .groups = 1 };

		lin.out = i < n_hidden ? hidden[i] : classes;
		lin.pos = out->n;
		lin.src = (int32_t)out->n - 1;
		out->layers[out->n++] = lin;
		if (i < n_hidden) {
			relu.pos = out->n;
			relu.src = (int32_t)out->n - 1;
			out->layers[out->n++] = relu;
		}
	}
}

/* ---- parsing ------------------------------------------------------------ */

struct arg {
	char key[24];        /* "" for a positional argument */
	double num;
	int boolean;         /* -1: a number; 0/1: false/true */
};

struct parser {
	const char *s;
	size_t pos;
	struct model_spec *out;
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

static bool take_word(struct parser *p, const char *w)
{
	size_t n = strlen(w);

	if (strncmp(p->s + p->pos, w, n) == 0 && !is_word_char(p->s[p->pos + n])) {
		p->pos += n;
		return true;
	}
	return false;
}

/* `who` names the item in messages: "layer 2 conv2d(16,3)". */
static int read_arg(struct parser *p, struct arg *a, const char *who)
{
	char word[24];
	char *end;
	size_t start;

	memset(a, 0, sizeof(*a));
	a->boolean = -1;
	skip_ws(p);
	start = p->pos;
	if (is_word_char(p->s[p->pos]) && !(p->s[p->pos] >= '0' && p->s[p->pos] <= '9')) {
		if (!read_word(p, word, sizeof(word)))
			return tr_err_set(p->err, -EINVAL, "model: %s: an argument name is too long", who);
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
	if (take_word(p, "true") || take_word(p, "True")) {
		a->boolean = 1;
		return 0;
	}
	if (take_word(p, "false") || take_word(p, "False")) {
		a->boolean = 0;
		return 0;
	}
	if (!((p->s[p->pos] >= '0' && p->s[p->pos] <= '9') || p->s[p->pos] == '.' ||
	      ((p->s[p->pos] == '-' || p->s[p->pos] == '+') &&
	       ((p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9') || p->s[p->pos + 1] == '.'))))
		return tr_err_set(p->err, -EINVAL, "model: %s: expected a number at '%.16s'", who,
				  p->s + p->pos);
	a->num = strtod(p->s + p->pos, &end);
	if (end == p->s + p->pos || !isfinite(a->num))
		return tr_err_set(p->err, -EINVAL, "model: %s: '%.16s' is not a number", who,
				  p->s + start);
	p->pos = (size_t)(end - p->s);
	return 0;
}

/* A whole number argument in [lo, hi]. */
static int want_uint(struct parser *p, const struct arg *a, const char *who, const char *what,
		     uint32_t lo, uint32_t hi, uint32_t *out)
{
	if (a->boolean >= 0 || a->num != floor(a->num) || a->num < lo || a->num > hi)
		return tr_err_set(p->err, -EINVAL, "model: %s: %s must be a whole number in [%u, %u]",
				  who, what, lo, hi);
	*out = (uint32_t)a->num;
	return 0;
}

static int want_bool(struct parser *p, const struct arg *a, const char *who, const char *what,
		     bool *out)
{
	if (a->boolean < 0)
		return tr_err_set(p->err, -EINVAL, "model: %s: %s must be true or false", who, what);
	*out = a->boolean == 1;
	return 0;
}

/* A real number argument in [lo, hi]. */
static int want_real(struct parser *p, const struct arg *a, const char *who, const char *what,
		     double lo, double hi, double *out)
{
	if (a->boolean >= 0 || !(a->num >= lo && a->num <= hi))
		return tr_err_set(p->err, -EINVAL, "model: %s: %s must be a number in [%g, %g]", who,
				  what, lo, hi);
	*out = a->num;
	return 0;
}

/* The layers' keyword arguments: name, the kinds that take it. */
static bool takes(enum layer_kind k, const char *key)
{
	if (strcmp(key, "bias") == 0)
		return k == LAYER_LINEAR || k == LAYER_CONV2D;
	if (strcmp(key, "stride") == 0)
		return k == LAYER_CONV2D || k == LAYER_MAXPOOL2D || k == LAYER_AVGPOOL2D;
	if (strcmp(key, "padding") == 0)
		return k == LAYER_CONV2D || k == LAYER_MAXPOOL2D;
	if (strcmp(key, "dilation") == 0 || strcmp(key, "groups") == 0)
		return k == LAYER_CONV2D;
	if (strcmp(key, "p") == 0)
		return k == LAYER_DROPOUT;
	if (strcmp(key, "negative_slope") == 0)
		return k == LAYER_LEAKYRELU;
	if (strcmp(key, "beta") == 0 || strcmp(key, "threshold") == 0)
		return k == LAYER_SOFTPLUS;
	if (strcmp(key, "scale_factor") == 0)
		return k == LAYER_UPSAMPLE;
	if (strcmp(key, "padding_idx") == 0)
		return k == LAYER_EMBEDDING;
	if (strcmp(key, "layers") == 0)
		return k == LAYER_LSTM || k == LAYER_GRU;
	if (strcmp(key, "dropout") == 0)
		return k == LAYER_LSTM || k == LAYER_GRU || k == LAYER_MHA || k == LAYER_TRANSFORMER;
	if (strcmp(key, "causal") == 0)
		return k == LAYER_MHA || k == LAYER_TRANSFORMER;
	if (strcmp(key, "norm_first") == 0)
		return k == LAYER_TRANSFORMER;
	return false;
}

/* Check and apply the arguments of one layer. */
static int apply_args(struct parser *p, struct layer_spec *l, const struct arg *args, size_t nargs,
		      const char *who)
{
	const char *kname = spec_kind_name(l->kind);
	size_t npos = 0;
	int rc = 0;

	for (size_t i = 0; i < nargs; i++) {
		if (args[i].key[0] == '\0') {
			if (i != npos)
				return tr_err_set(p->err, -EINVAL,
						  "model: %s: a positional argument follows a keyword argument",
						  who);
			npos++;
		}
	}
	switch (l->kind) {
	case LAYER_LINEAR:
		if (npos != 1)
			return tr_err_set(p->err, -EINVAL,
					  "model: %s: linear takes its output size, e.g. linear(256)", who);
		rc = want_uint(p, &args[0], who, "the output size", 1, MAX_CHANNELS, &l->out);
		break;
	case LAYER_CONV2D:
		if (npos != 2)
			return tr_err_set(p->err, -EINVAL,
					  "model: %s: conv2d takes OUT,K (output channels, kernel size), e.g. conv2d(16,5)",
					  who);
		rc = want_uint(p, &args[0], who, "the output channels", 1, MAX_CHANNELS, &l->out);
		if (rc == 0)
			rc = want_uint(p, &args[1], who, "the kernel size", 1, MAX_KERNEL, &l->k);
		break;
	case LAYER_MAXPOOL2D:
	case LAYER_AVGPOOL2D:
		if (npos != 1)
			return tr_err_set(p->err, -EINVAL, "model: %s: %s takes its kernel size, e.g. %s(2)",
					  who, kname, kname);
		rc = want_uint(p, &args[0], who, "the kernel size", 1, MAX_KERNEL, &l->k);
		l->stride = l->k;
		break;
	case LAYER_ADAPTIVEAVGPOOL2D:
		if (npos != 1 && npos != 2)
			return tr_err_set(p->err, -EINVAL,
					  "model: %s: adaptiveavgpool2d takes the output size H[,W], e.g. adaptiveavgpool2d(1,1)",
					  who);
		rc = want_uint(p, &args[0], who, "the output height", 1, MAX_SPATIAL, &l->out);
		l->out_w = l->out;
		if (rc == 0 && npos == 2)
			rc = want_uint(p, &args[1], who, "the output width", 1, MAX_SPATIAL, &l->out_w);
		break;
	case LAYER_UPSAMPLE:
		if (npos > 1)
			return tr_err_set(p->err, -EINVAL, "model: %s: upsample takes its scale factor, e.g. upsample(2)",
					  who);
		if (npos == 1)
			rc = want_uint(p, &args[0], who, "the scale factor", 1, MAX_KERNEL, &l->k);
		break;
	case LAYER_DROPOUT:
	case LAYER_LEAKYRELU:
		if (npos > 1)
			return tr_err_set(p->err, -EINVAL, "model: %s: %s takes one number, e.g. %s",
					  who, kname, l->kind == LAYER_DROPOUT ? "dropout(0.2)" : "leakyrelu(0.1)");
		if (npos == 1 && l->kind == LAYER_DROPOUT)
			rc = want_real(p, &args[0], who, "the dropout probability", -1e300, 1e300, &l->p);
		else if (npos == 1)
			rc = want_real(p, &args[0], who, "negative_slope", -1e6, 1e6, &l->p);
		break;
	case LAYER_SOFTPLUS:
		if (npos > 2)
			return tr_err_set(p->err, -EINVAL, "model: %s: softplus takes beta and threshold, e.g. softplus(beta=2)",
					  who);
		if (npos >= 1)
			rc = want_real(p, &args[0], who, "beta", 1e-6, 1e6, &l->p);
		if (rc == 0 && npos == 2)
			rc = want_real(p, &args[1], who, "threshold", 0.0, 1e6, &l->threshold);
		break;
	case LAYER_EMBEDDING:
		if (npos != 2)
			return tr_err_set(p->err, -EINVAL,
					  "model: %s: embedding takes NUM,DIM (rows: the vocabulary's size, and their width), e.g. embedding(65,64)",
					  who);
		rc = want_uint(p, &args[0], who, "the number of rows", 1, MAX_VOCAB, &l->num);
		if (rc == 0)
			rc = want_uint(p, &args[1], who, "the embedding's width", 1, MAX_CHANNELS, &l->out);
		break;
	case LAYER_POSEMBEDDING:
		if (npos > 1)
			return tr_err_set(p->err, -EINVAL,
					  "model: %s: posembedding takes at most its number of positions, e.g. posembedding(128)",
					  who);
		if (npos == 1)
			rc = want_uint(p, &args[0], who, "the number of positions", 1, MAX_POSITIONS, &l->num);
		break;
	case LAYER_LSTM:
	case LAYER_GRU:
		if (npos != 1)
			return tr_err_set(p->err, -EINVAL, "model: %s: %s takes its hidden size, e.g. %s(256,layers=2)",
					  who, kname, kname);
		rc = want_uint(p, &args[0], who, "the hidden size", 1, MAX_CHANNELS, &l->out);
		break;
	case LAYER_MHA:
		if (npos != 2 && npos != 3)
			return tr_err_set(p->err, -EINVAL,
					  "model: %s: multiheadattention takes E,HEADS[,causal], e.g. multiheadattention(128,4,causal=true)",
					  who);
		rc = want_uint(p, &args[0], who, "the embedding size", 1, MAX_CHANNELS, &l->out);
		if (rc == 0)
			rc = want_uint(p, &args[1], who, "the number of heads", 1, MAX_HEADS, &l->heads);
		if (rc == 0 && npos == 3)
			rc = want_bool(p, &args[2], who, "causal", &l->causal);
		break;
	case LAYER_TRANSFORMER:
		if (npos != 3)
			return tr_err_set(p->err, -EINVAL,
					  "model: %s: transformer_encoder_layer takes E,HEADS,FF (model width, heads, feed-forward width), e.g. transformer_encoder_layer(128,4,512)",
					  who);
		rc = want_uint(p, &args[0], who, "the model width", 1, MAX_CHANNELS, &l->out);
		if (rc == 0)
			rc = want_uint(p, &args[1], who, "the number of heads", 1, MAX_HEADS, &l->heads);
		if (rc == 0)
			rc = want_uint(p, &args[2], who, "the feed-forward width", 1, MAX_CHANNELS, &l->ff);
		break;
	default:
		if (npos)
			return tr_err_set(p->err, -EINVAL, "model: %s: %s takes no arguments", who, kname);
		break;
	}
	if (rc < 0)
		return rc;
	for (size_t i = npos; i < nargs; i++) {
		const struct arg *a = &args[i];

		for (size_t k = npos; k < i; k++)
			if (strcmp(args[k].key, a->key) == 0)
				return tr_err_set(p->err, -EINVAL, "model: %s: '%s' is given twice", who,
						  a->key);
		if (!takes(l->kind, a->key) ||
		    (strcmp(a->key, "causal") == 0 && l->kind == LAYER_MHA && npos >= 3) ||
		    (strcmp(a->key, "p") == 0 && npos) ||
		    (strcmp(a->key, "negative_slope") == 0 && npos) ||
		    (strcmp(a->key, "scale_factor") == 0 && npos) ||
		    (strcmp(a->key, "beta") == 0 && npos >= 1) ||
		    (strcmp(a->key, "threshold") == 0 && npos >= 2))
			return tr_err_set(p->err, -EINVAL, "model: %s: %s does not take '%s'", who, kname,
					  a->key);
		if (strcmp(a->key, "bias") == 0)
			rc = want_bool(p, a, who, "bias", &l->bias);
		else if (strcmp(a->key, "stride") == 0)
			rc = want_uint(p, a, who, "stride", 1, MAX_KERNEL, &l->stride);
		else if (strcmp(a->key, "padding") == 0)
			rc = want_uint(p, a, who, "padding", 0, MAX_KERNEL, &l->padding);
		else if (strcmp(a->key, "dilation") == 0)
			rc = want_uint(p, a, who, "dilation", 1, MAX_KERNEL, &l->dilation);
		else if (strcmp(a->key, "groups") == 0)
			rc = want_uint(p, a, who, "groups", 1, MAX_CHANNELS, &l->groups);
		else if (strcmp(a->key, "p") == 0)
			rc = want_real(p, a, who, "the dropout probability", -1e300, 1e300, &l->p);
		else if (strcmp(a->key, "negative_slope") == 0)
			rc = want_real(p, a, who, "negative_slope", -1e6, 1e6, &l->p);
		else if (strcmp(a->key, "beta") == 0)
			rc = want_real(p, a, who, "beta", 1e-6, 1e6, &l->p);
		else if (strcmp(a->key, "threshold") == 0)
			rc = want_real(p, a, who, "threshold", 0.0, 1e6, &l->threshold);
		else if (strcmp(a->key, "scale_factor") == 0)
			rc = want_uint(p, a, who, "the scale factor", 1, MAX_KERNEL, &l->k);
		else if (strcmp(a->key, "padding_idx") == 0) {
			uint32_t v = 0;

			rc = want_uint(p, a, who, "padding_idx", 0, MAX_VOCAB - 1, &v);
			l->padding_idx = (int32_t)v;
		} else if (strcmp(a->key, "layers") == 0)
			rc = want_uint(p, a, who, "layers", 1, MAX_RNN_LAYERS, &l->layers);
		else if (strcmp(a->key, "dropout") == 0)
			rc = want_real(p, a, who, "the dropout probability", -1e300, 1e300, &l->p);
		else if (strcmp(a->key, "causal") == 0)
			rc = want_bool(p, a, who, "causal", &l->causal);
		else if (strcmp(a->key, "norm_first") == 0)
			rc = want_bool(p, a, who, "norm_first", &l->norm_first);
		if (rc < 0)
			return rc;
	}
	if ((l->kind == LAYER_LSTM || l->kind == LAYER_GRU || l->kind == LAYER_MHA ||
	     l->kind == LAYER_TRANSFORMER) && !(l->p >= 0.0 && l->p < 1.0))
		return tr_err_set(p->err, -EINVAL, "model: %s: the dropout probability must be in [0, 1)",
				  who);
	if (l->kind == LAYER_EMBEDDING && l->padding_idx >= 0 && (uint32_t)l->padding_idx >= l->num)
		return tr_err_set(p->err, -EINVAL, "model: %s: padding_idx %d is not one of the %u rows",
				  who, l->padding_idx, l->num);
	if ((l->kind == LAYER_MHA || l->kind == LAYER_TRANSFORMER) && l->out % l->heads != 0)
		return tr_err_set(p->err, -EINVAL,
				  "model: %s: %u heads do not divide the embedding size %u (each head takes E/HEADS features)",
				  who, l->heads, l->out);
	if (l->kind == LAYER_DROPOUT && !(l->p >= 0.0 && l->p < 1.0))
		return tr_err_set(p->err, -EINVAL, "model: %s: the dropout probability must be in [0, 1)",
				  who);
	if (l->kind == LAYER_CONV2D && (l->out % l->groups != 0))
		return tr_err_set(p->err, -EINVAL,
				  "model: %s: groups=%u does not divide the %u output channels", who,
				  l->groups, l->out);
	if (l->kind == LAYER_UPSAMPLE && l->k == 0)
		return tr_err_set(p->err, -EINVAL, "model: %s: upsample takes its scale factor, e.g. upsample(2)",
				  who);
	if (l->kind == LAYER_MAXPOOL2D && l->padding * 2 > l->k)
		return tr_err_set(p->err, -EINVAL,
				  "model: %s: padding must be at most half the kernel size (as PyTorch's)", who);
	return 0;
}

static int parse_seq(struct parser *p, int32_t parent, uint32_t branch, int32_t src,
		     uint32_t depth, int32_t *last);

/* The item at out->n: a layer or a block, in `parent`'s `branch` at `pos`,
 * fed by src. */
static int parse_item(struct parser *p, int32_t parent, uint32_t branch, uint32_t pos,
		      int32_t src, uint32_t depth)
{
	struct model_spec *m = p->out;
	uint32_t self = m->n;
	struct layer_spec *l = &m->layers[self];
	char name[32], prefix[256], who[384];
	struct arg args[MAX_ARGS];
	size_t nargs = 0, start;
	size_t i;

	where_prefix(m, parent, branch, prefix, sizeof(prefix));
	if (m->n == SPEC_MAX_LAYERS)
		return tr_err_set(p->err, -EINVAL, "model: more than %d layers and blocks",
				  SPEC_MAX_LAYERS);
	skip_ws(p);
	start = p->pos;
	if (!read_word(p, name, sizeof(name)))
		return tr_err_set(p->err, -EINVAL, "model: %slayer %u: expected a layer name at '%.16s'",
				  prefix, pos + 1, p->s + start);
	for (i = 0; i < NKINDS; i++)
		if (strcmp(kinds[i].name, name) == 0)
			break;
	if (i == NKINDS) {
		for (size_t a = 0; a < sizeof(arch_names) / sizeof(arch_names[0]); a++)
				if (strcmp(name, arch_names[a]) == 0)
					return tr_err_set(p->err, -EINVAL,
							  "model: %slayer %u: '%s' is a whole model, not a layer: give it alone (--model %s)",
							  prefix, pos + 1, name, name);
		return tr_err_set(p->err, -EINVAL, "model: %slayer %u: unknown layer '%s' (known: %s)",
				  prefix, pos + 1, name, KNOWN_LAYERS);
	}
	memset(l, 0, sizeof(*l));
	l->kind = kinds[i].kind;
	l->bias = true;
	l->stride = 1;
	l->dilation = 1;
	l->groups = 1;
	l->k = l->kind == LAYER_UPSAMPLE ? 0 : 1;
	l->p = l->kind == LAYER_LEAKYRELU ? 0.01 : l->kind == LAYER_SOFTPLUS ? 1.0 : 0.5;
	/* PyTorch's defaults: nn.LSTM/GRU/MultiheadAttention dropout 0,
	 * nn.TransformerEncoderLayer 0.1 */
	if (l->kind == LAYER_LSTM || l->kind == LAYER_GRU || l->kind == LAYER_MHA)
		l->p = 0.0;
	if (l->kind == LAYER_TRANSFORMER)
		l->p = 0.1;
	l->padding_idx = -1;
	l->layers = 1;
	l->threshold = 20.0;
	l->parent = parent;
	l->branch = branch;
	l->pos = pos;
	l->src = src;
	m->n++;
	skip_ws(p);
	if (spec_is_block(l->kind)) {
		const char *kname = spec_kind_name(l->kind);
		int rc;

		snprintf(who, sizeof(who), "%sblock %u (%s)", prefix, pos + 1, kname);
		if (depth >= SPEC_MAX_DEPTH)
			return tr_err_set(p->err, -EINVAL, "model: %s: blocks nest at most %d deep", who,
					  SPEC_MAX_DEPTH);
		if (p->s[p->pos] != '(')
			return tr_err_set(p->err, -EINVAL,
					  "model: %s: expected '(' and its layers, e.g. %s", who,
					  l->kind == LAYER_RESIDUAL ? "residual(conv2d(16,3,padding=1),batchnorm2d; shortcut=conv2d(16,1))"
								    : "concat(identity; conv2d(12,3,padding=1))");
		p->pos++;
		for (uint32_t b = 0;; b++) {
			int32_t last = -1;

			if (b == SPEC_MAX_BRANCHES)
				return tr_err_set(p->err, -EINVAL, "model: %s: more than %d branches", who,
						  SPEC_MAX_BRANCHES);
			if (b == 1 && l->kind == LAYER_RESIDUAL) {
				skip_ws(p);
				if (!take_word(p, "shortcut") || (skip_ws(p), p->s[p->pos] != '='))
					return tr_err_set(p->err, -EINVAL,
							  "model: %s: after ';' comes shortcut=LAYERS, e.g. shortcut=conv2d(32,1,stride=2),batchnorm2d",
							  who);
				p->pos++;
			}
			rc = parse_seq(p, (int32_t)self, b, src, depth + 1, &last);
			if (rc < 0)
				return rc;
			l = &m->layers[self];
			l->last[b] = last;
			l->nbranches = b + 1;
			skip_ws(p);
			if (p->s[p->pos] == ')') {
				p->pos++;
				break;
			}
			if (p->s[p->pos] != ';' || (l->kind == LAYER_RESIDUAL && b == 1))
				return tr_err_set(p->err, -EINVAL, "model: %s: expected %s')' at '%.16s'", who,
						  l->kind == LAYER_RESIDUAL && b == 1 ? "" : "',', ';' or ",
						  p->s + p->pos);
			p->pos++;
		}
		if (l->kind == LAYER_RESIDUAL && l->nbranches == 1)
			l->last[1] = src;   /* identity shortcut: the block's input */
		if (l->kind == LAYER_CONCAT && l->nbranches < 2)
			return tr_err_set(p->err, -EINVAL,
					  "model: %s: concat joins two or more branches separated by ';', e.g. concat(identity; conv2d(12,3,padding=1))",
					  who);
		l->end = m->n;
		return 0;
	}
	if (p->s[p->pos] == '(') {
		p->pos++;
		skip_ws(p);
		while (p->s[p->pos] != ')') {
			int rc;

			snprintf(who, sizeof(who), "%slayer %u %s", prefix, pos + 1, name);
			if (nargs == MAX_ARGS)
				return tr_err_set(p->err, -EINVAL, "model: %s: too many arguments", who);
			rc = read_arg(p, &args[nargs++], who);
			if (rc < 0)
				return rc;
			skip_ws(p);
			if (p->s[p->pos] == ',') {
				p->pos++;
				skip_ws(p);
				if (p->s[p->pos] == ')')
					return tr_err_set(p->err, -EINVAL,
							  "model: %s: an argument is missing after ','", who);
			} else if (p->s[p->pos] != ')') {
				return tr_err_set(p->err, -EINVAL, "model: %s: expected ',' or ')' at '%.16s'",
						  who, p->s + p->pos);
			}
		}
		p->pos++;
	}
	snprintf(who, sizeof(who), "%slayer %u %.*s", prefix, pos + 1,
		 (int)(p->pos - start > 40 ? 40 : p->pos - start), p->s + start);
	return apply_args(p, l, args, nargs, who);
}

/* Items separated by ',' until the end, ';' or ')' (inside a block). *last
 * gets the sequence's last item. */
static int parse_seq(struct parser *p, int32_t parent, uint32_t branch, int32_t src,
		     uint32_t depth, int32_t *last)
{
	uint32_t pos = 0;

	for (;;) {
		uint32_t self = p->out->n;
		char prefix[256];
		int rc;

		rc = parse_item(p, parent, branch, pos, src, depth);
		if (rc < 0)
			return rc;
		src = (int32_t)self;
		pos++;
		skip_ws(p);
		if (p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		if ((p->s[p->pos] == '\0' && parent < 0) ||
		    (parent >= 0 && (p->s[p->pos] == ';' || p->s[p->pos] == ')'))) {
			*last = src;
			return 0;
		}
		where_prefix(p->out, parent, branch, prefix, sizeof(prefix));
		if (parent >= 0 && p->s[p->pos] == '\0') {
			char where[512];

			spec_where(p->out, (uint32_t)parent, where, sizeof(where));
			return tr_err_set(p->err, -EINVAL, "model: %s: the text ends before its ')'", where);
		}
		if (parent < 0)
			return tr_err_set(p->err, -EINVAL, "model: after layer %u: expected ',' at '%.16s'",
					  pos, p->s + p->pos);
		return tr_err_set(p->err, -EINVAL, "model: %safter layer %u: expected ',', ';' or ')' at '%.16s'",
				  prefix, pos, p->s + p->pos);
	}
}

/* ---- named architectures -------------------------------------------------- */

static void cat(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void cat(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;

	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

/* One BasicBlock of `planes` channels (stride 2 and a conv1x1 + BatchNorm
 * shortcut when it downsamples), then its ReLU. */
static void basic_block(char *buf, size_t len, uint32_t planes, bool down)
{
	cat(buf, len, "residual(conv2d(%u,3,%spadding=1,bias=false),batchnorm2d,relu,"
		      "conv2d(%u,3,padding=1,bias=false),batchnorm2d",
	    planes, down ? "stride=2," : "", planes);
	if (down)
		cat(buf, len, ";shortcut=conv2d(%u,1,stride=2,bias=false),batchnorm2d", planes);
	cat(buf, len, "),relu,");
}

/* He et al.'s CIFAR ResNet of 6n+2 layers, or torchvision's ResNet-18
 * (n 0; small_stem: the 3x3 stride-1 stem without max pooling). */
static void resnet_text(char *buf, size_t len, uint32_t n, bool small_stem, uint32_t classes)
{
	buf[0] = '\0';
	if (n) {
		cat(buf, len, "conv2d(16,3,padding=1,bias=false),batchnorm2d,relu,");
		for (uint32_t s = 0; s < 3; s++)
			for (uint32_t b = 0; b < n; b++)
				basic_block(buf, len, 16u << s, s > 0 && b == 0);
	} else {
		if (small_stem)
			cat(buf, len, "conv2d(64,3,padding=1,bias=false),batchnorm2d,relu,");
		else
			cat(buf, len, "conv2d(64,7,stride=2,padding=3,bias=false),batchnorm2d,relu,"
				      "maxpool2d(3,stride=2,padding=1),");
		for (uint32_t s = 0; s < 4; s++)
			for (uint32_t b = 0; b < 2; b++)
				basic_block(buf, len, 64u << s, s > 0 && b == 0);
	}
	cat(buf, len, "adaptiveavgpool2d(1,1),flatten,linear(%u)", classes ? classes : 10);
}

static const struct {
	const char *name;
	uint32_t n;          /* basic blocks per stage (CIFAR ResNets); 0: ResNet-18 */
	bool small_stem;
} resnets[] = {
	{ "resnet20", 3, false }, { "resnet32", 5, false }, { "resnet56", 9, false },
	{ "resnet18", 0, false }, { "resnet18_cifar", 0, true },
};

static int parse_text(struct model_spec *out, const char *text, struct tr_err *err)
{
	struct parser p = { .s = text, .pos = 0, .out = out, .err = err };
	int32_t last = -1;

	return parse_seq(&p, -1, 0, -1, 0, &last);
}

/* The named sequence models: their keyword arguments, defaults and ranges. */
struct arch_arg {
	const char *key;
	double dflt, lo, hi;
	bool real;           /* dropout: a probability; the rest whole numbers */
};

static const struct arch_arg char_lstm_args[] = {
	{ "embed", 64, 1, MAX_CHANNELS, false }, { "hidden", 256, 1, MAX_CHANNELS, false },
	{ "layers", 2, 1, MAX_RNN_LAYERS, false }, { "dropout", 0, 0, 0.999, true },
};
static const struct arch_arg gpt_args[] = {
	{ "layers", 4, 1, 64, false }, { "dim", 128, 1, MAX_CHANNELS, false },
	{ "heads", 4, 1, MAX_HEADS, false }, { "ff", 0, 1, MAX_CHANNELS, false },   /* ff 0: 4 x dim */
	{ "dropout", 0, 0, 0.999, true },
};

/* "char_lstm", "gpt(layers=6,dim=192)": *is_arch false when text is no
 * such name (then nothing is touched). The expansion is parsed into out. */
static int seq_arch(struct model_spec *out, const char *text, size_t len, uint32_t classes,
		    bool *is_arch, struct tr_err *err)
{
	struct model_spec *tmp = out;
	struct parser p = { .s = text, .pos = 0, .out = tmp, .err = err };
	const struct arch_arg *spec;
	double v[8];
	size_t nspec;
	char word[24], who[40], *buf, canon[sizeof(out->arch)];
	uint32_t V = classes ? classes : 10;
	int rc;

	*is_arch = false;
	if (!read_word(&p, word, sizeof(word)))
		return 0;
	if (strcmp(word, "char_lstm") == 0) {
		spec = char_lstm_args;
		nspec = sizeof(char_lstm_args) / sizeof(char_lstm_args[0]);
	} else if (strcmp(word, "gpt") == 0) {
		spec = gpt_args;
		nspec = sizeof(gpt_args) / sizeof(gpt_args[0]);
	} else {
		return 0;
	}
	skip_ws(&p);
	if (p.pos != len && p.s[p.pos] != '(')
		return 0;   /* "gpt,linear(3)": a SPEC, whose parser says what is wrong */
	*is_arch = true;
	snprintf(who, sizeof(who), "%s", word);
	for (size_t k = 0; k < nspec; k++)
		v[k] = spec[k].dflt;
	if (p.pos < len) {
		bool given[8] = { false };

		p.pos++;
		skip_ws(&p);
		while (p.s[p.pos] != ')') {
			struct arg a;
			size_t k;

			rc = read_arg(&p, &a, who);
			if (rc < 0)
				return rc;
			for (k = 0; k < nspec && strcmp(spec[k].key, a.key) != 0; k++)
				;
			if (!a.key[0] || k == nspec) {
				char keys[96] = "";

				for (size_t j = 0; j < nspec; j++)
					cat(keys, sizeof(keys), "%s%s", j ? ", " : "", spec[j].key);
				return tr_err_set(err, -EINVAL, "model: %s takes keyword arguments (%s), e.g. %s",
						  word, keys, spec == gpt_args ? "gpt(layers=4,dim=128)"
									      : "char_lstm(hidden=256,layers=2)");
			}
			if (given[k])
				return tr_err_set(err, -EINVAL, "model: %s: '%s' is given twice", word, a.key);
			given[k] = true;
			if (spec[k].real)
				rc = want_real(&p, &a, who, a.key, spec[k].lo, spec[k].hi, &v[k]);
			else {
				uint32_t u = 0;

				rc = want_uint(&p, &a, who, a.key, (uint32_t)spec[k].lo, (uint32_t)spec[k].hi, &u);
				v[k] = u;
			}
			if (rc < 0)
				return rc;
			skip_ws(&p);
			if (p.s[p.pos] == ',') {
				p.pos++;
				skip_ws(&p);
			} else if (p.s[p.pos] != ')') {
				return tr_err_set(err, -EINVAL, "model: %s: expected ',' or ')' at '%.16s'", word,
						  p.s + p.pos);
			}
		}
		p.pos++;
		skip_ws(&p);
		if (p.pos != len)
			return tr_err_set(err, -EINVAL, "model: %s(...) is a whole model: nothing may follow it",
					  word);
	}
	buf = malloc(ARCH_TEXT_MAX);
	if (!buf)
		return tr_err_set(err, -ENOMEM, "out of memory");
	buf[0] = '\0';
	if (spec == char_lstm_args) {
		cat(buf, ARCH_TEXT_MAX, "embedding(%u,%u),lstm(%u,layers=%u,dropout=%g),linear(%u)", V,
		    (uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2], v[3], V);
		snprintf(canon, sizeof(canon), "char_lstm(embed=%u,hidden=%u,layers=%u,dropout=%g)",
			 (uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2], v[3]);
	} else {
		uint32_t dim = (uint32_t)v[1], ff = v[3] ? (uint32_t)v[3] : 4 * dim;

		if (dim % (uint32_t)v[2]) {
			free(buf);
			return tr_err_set(err, -EINVAL, "model: gpt: %u heads do not divide dim %u",
					  (uint32_t)v[2], dim);
		}
		cat(buf, ARCH_TEXT_MAX, "embedding(%u,%u),posembedding,", V, dim);
		for (uint32_t k = 0; k < (uint32_t)v[0]; k++)
			cat(buf, ARCH_TEXT_MAX,
			    "transformer_encoder_layer(%u,%u,%u,dropout=%g,norm_first=true,causal=true),",
			    dim, (uint32_t)v[2], ff, v[4]);
		cat(buf, ARCH_TEXT_MAX, "layernorm,linear(%u)", V);
		snprintf(canon, sizeof(canon), "gpt(layers=%u,dim=%u,heads=%u,ff=%u,dropout=%g)",
			 (uint32_t)v[0], dim, (uint32_t)v[2], ff, v[4]);
	}
	rc = parse_text(out, buf, err);
	free(buf);
	if (rc < 0)
		return rc;
	out->init = spec == gpt_args ? SPEC_INIT_GPT : SPEC_INIT_DEFAULT;
	snprintf(out->arch, sizeof(out->arch), "%s", canon);
	return 0;
}

int spec_parse(struct model_spec *out, const char *text, const uint32_t *hidden, uint32_t n_hidden,
	       uint32_t classes, struct tr_err *err)
{
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
		rc = parse_text(out, lenet5_text, err);
		if (rc == 0 && classes)
			out->layers[out->n - 1].out = classes;
		return rc;
	}
	{
		bool is_arch = false;
		char *one = strndup(text + a, b - a);

		if (!one)
			return tr_err_set(err, -ENOMEM, "out of memory");
		rc = seq_arch(out, one, b - a, classes, &is_arch, err);
		free(one);
		if (is_arch || rc < 0)
			return rc;
		memset(out, 0, sizeof(*out));
	}
	for (size_t i = 0; i < sizeof(resnets) / sizeof(resnets[0]); i++) {
		if (b - a != strlen(resnets[i].name) || strncmp(text + a, resnets[i].name, b - a) != 0)
			continue;
		{
			char *buf = malloc(ARCH_TEXT_MAX);

			if (!buf)
				return tr_err_set(err, -ENOMEM, "out of memory");
			resnet_text(buf, ARCH_TEXT_MAX, resnets[i].n, resnets[i].small_stem, classes);
			rc = parse_text(out, buf, err);
			free(buf);
		}
		if (rc < 0)
			return rc;
		out->init = SPEC_INIT_TORCHVISION;
		snprintf(out->arch, sizeof(out->arch), "%s", resnets[i].name);
		return 0;
	}
	if (b == a)
		return tr_err_set(err, -EINVAL, "model: empty (give layers like flatten,linear(256),relu,linear(10), or mlp or lenet5)");
	return parse_text(out, text, err);
}

/* ---- shapes ----------------------------------------------------------- */

struct shape spec_input_shape(const struct model_spec *spec, const struct shape *shapes,
			      struct shape in, uint32_t i)
{
	int32_t src = spec->layers[i].src;

	return src < 0 ? in : shapes[src];
}

/* Layer i's output from its input s (not a block). */
static int layer_shape(const struct model_spec *spec, uint32_t i, struct shape s, struct shape *out,
		       uint64_t *count, struct tr_err *err)
{
	const struct layer_spec *l = &spec->layers[i];
	uint64_t features = (uint64_t)s.c * s.h * s.w;
	char where[512], st[64];

	spec_where(spec, i, where, sizeof(where));
	shape_text(s, st, sizeof(st));
	if (s.vocab && l->kind != LAYER_EMBEDDING)
		return tr_err_set(err, -EINVAL,
				  "model: %s: its input is token ids (%u positions); begin the model with embedding(%u,DIM)",
				  where, s.h, s.vocab);
	if (!s.vocab && l->kind == LAYER_EMBEDDING)
		return tr_err_set(err, -EINVAL,
				  "model: %s: its %s input is not token ids (embedding takes the data's tokens, as the first layer)",
				  where, st);
	if (!s.seq && (l->kind == LAYER_POSEMBEDDING || l->kind == LAYER_LSTM ||
		       l->kind == LAYER_GRU || l->kind == LAYER_LAST || l->kind == LAYER_MHA ||
		       l->kind == LAYER_TRANSFORMER))
		return tr_err_set(err, -EINVAL,
				  "model: %s: its %s input is not a sequence (positions of features, as embedding gives)",
				  where, st);
	if (s.seq && (l->kind == LAYER_BATCHNORM1D || l->kind == LAYER_BATCHNORM2D ||
		      l->kind == LAYER_CONV2D || l->kind == LAYER_MAXPOOL2D ||
		      l->kind == LAYER_AVGPOOL2D || l->kind == LAYER_ADAPTIVEAVGPOOL2D ||
		      l->kind == LAYER_UPSAMPLE))
		return tr_err_set(err, -EINVAL, "model: %s: its input is a %s, not %s", where, st,
				  l->kind == LAYER_BATCHNORM1D ? "a flat vector (use layernorm on sequences)"
							       : "an image");
	switch (l->kind) {
	case LAYER_FLATTEN:
		s.c = (uint32_t)features;
		s.h = s.w = 1;
		s.flat = true;
		s.seq = false;
		break;
	case LAYER_LINEAR:   /* on a sequence: at every position, as nn.Linear on (N, T, E) */
		if (!s.flat && !s.seq)
			return tr_err_set(err, -EINVAL,
					  "model: %s: its %s input is not a flat vector; put flatten before it",
					  where, st);
		*count += (uint64_t)l->out * s.c + (l->bias ? l->out : 0);
		s.c = l->out;
		break;
	case LAYER_EMBEDDING:
		if (l->num < s.vocab)
			return tr_err_set(err, -EINVAL,
					  "model: %s: the data's vocabulary has %u tokens, more than the embedding's %u rows; use embedding(%u,%u)",
					  where, s.vocab, l->num, s.vocab, l->out);
		*count += (uint64_t)l->num * l->out;
		s.c = l->out;
		s.vocab = 0;
		break;
	case LAYER_POSEMBEDDING:
		if (l->num && l->num < s.h)
			return tr_err_set(err, -EINVAL,
					  "model: %s: %u positions are fewer than the sequence's %u; use posembedding(%u) or posembedding",
					  where, l->num, s.h, s.h);
		*count += (uint64_t)(l->num ? l->num : s.h) * s.c;
		break;
	case LAYER_LSTM:
	case LAYER_GRU: {
		uint64_t g = l->kind == LAYER_LSTM ? 4 : 3;

		for (uint32_t k = 0; k < l->layers; k++)
			*count += g * l->out * ((k ? l->out : s.c) + l->out + 2);
		s.c = l->out;
		break;
	}
	case LAYER_LAST:
		s.h = 1;
		s.seq = false;
		s.flat = true;
		break;
	case LAYER_LAYERNORM:
		if (!s.flat && !s.seq)
			return tr_err_set(err, -EINVAL,
					  "model: %s: its input is a %s image; layernorm normalises a sequence's features or a flat vector",
					  where, st);
		*count += 2ull * s.c;
		break;
	case LAYER_MHA:
	case LAYER_TRANSFORMER:
		if (s.c != l->out)
			return tr_err_set(err, -EINVAL,
					  "model: %s: its input has %u features per position, not the %u it is built for; use %s(%u,%u%s)",
					  where, s.c, l->out, spec_kind_name(l->kind), s.c, l->heads,
					  l->kind == LAYER_MHA ? "" : ",FF");
		if (s.c % l->heads != 0)
			return tr_err_set(err, -EINVAL, "model: %s: %u heads do not divide %u features", where,
					  l->heads, s.c);
		*count += 4ull * s.c * s.c + 4ull * s.c;
		if (l->kind == LAYER_TRANSFORMER)
			*count += 2ull * s.c * l->ff + l->ff + s.c + 4ull * s.c;
		break;
	case LAYER_BATCHNORM1D:
		if (!s.flat)
			return tr_err_set(err, -EINVAL,
					  "model: %s: its %s input is an image; use batchnorm2d, or flatten first",
					  where, st);
		*count += 2ull * s.c;
		break;
	case LAYER_BATCHNORM2D:
		if (s.flat)
			return tr_err_set(err, -EINVAL,
					  "model: %s: its input is a flat vector of %u; use batchnorm1d",
					  where, s.c);
		*count += 2ull * s.c;
		break;
	case LAYER_CONV2D:
	case LAYER_MAXPOOL2D:
	case LAYER_AVGPOOL2D: {
		uint32_t pad = l->kind == LAYER_AVGPOOL2D ? 0 : l->padding;
		uint32_t d = l->kind == LAYER_CONV2D ? l->dilation : 1;
		uint32_t span = d * (l->k - 1) + 1;   /* the kernel's extent */

		if (s.flat)
			return tr_err_set(err, -EINVAL,
					  "model: %s: its input is a flat vector of %u, not an image",
					  where, s.c);
		if (s.h + 2 * pad < span || s.w + 2 * pad < span)
			return tr_err_set(err, -EINVAL,
					  "model: %s: its %s input is smaller than the kernel", where, st);
		if (l->kind == LAYER_CONV2D) {
			if (s.c % l->groups != 0)
				return tr_err_set(err, -EINVAL,
						  "model: %s: groups=%u does not divide its %u input channels",
						  where, l->groups, s.c);
			*count += (uint64_t)l->out * (s.c / l->groups) * l->k * l->k +
				  (l->bias ? l->out : 0);
			s.c = l->out;
		}
		s.h = (s.h + 2 * pad - span) / l->stride + 1;
		s.w = (s.w + 2 * pad - span) / l->stride + 1;
		break;
	}
	case LAYER_ADAPTIVEAVGPOOL2D:
		if (s.flat)
			return tr_err_set(err, -EINVAL,
					  "model: %s: its input is a flat vector of %u, not an image",
					  where, s.c);
		s.h = l->out;
		s.w = l->out_w;
		break;
	case LAYER_UPSAMPLE:
		if (s.flat)
			return tr_err_set(err, -EINVAL,
					  "model: %s: its input is a flat vector of %u, not an image",
					  where, s.c);
		if ((uint64_t)s.h * l->k > MAX_SPATIAL || (uint64_t)s.w * l->k > MAX_SPATIAL)
			return tr_err_set(err, -EINVAL, "model: %s: its output is too large", where);
		s.h *= l->k;
		s.w *= l->k;
		break;
	default:   /* elementwise */
		break;
	}
	*out = s;
	return 0;
}

/* Block i's output from its branches' outputs. */
static int block_shape(const struct model_spec *spec, const struct shape *shapes, struct shape in,
		       uint32_t i, struct shape *out, struct tr_err *err)
{
	const struct layer_spec *l = &spec->layers[i];
	char where[512], a[64], b[64], last[512];
	struct shape s[SPEC_MAX_BRANCHES];

	for (uint32_t k = 0; k < l->nbranches + (l->kind == LAYER_RESIDUAL && l->nbranches == 1); k++)
		s[k] = l->last[k] < 0 ? in : shapes[l->last[k]];
	spec_where(spec, i, where, sizeof(where));
	if (l->kind == LAYER_RESIDUAL) {
		if (!shape_equal(s[0], s[1])) {
			shape_text(s[0], a, sizeof(a));
			shape_text(s[1], b, sizeof(b));
			spec_where(spec, (uint32_t)l->last[0], last, sizeof(last));
			if (l->nbranches == 1) {
				char hint[80];

				if (s[0].flat || s[1].flat)
					snprintf(hint, sizeof(hint), "shortcut=%slinear(%u)",
						 s[1].flat ? "" : "flatten,", s[0].c);
				else if (s[0].h && s[1].h % s[0].h == 0 && s[1].h / s[0].h > 1)
					snprintf(hint, sizeof(hint), "shortcut=conv2d(%u,1,stride=%u),batchnorm2d",
						 s[0].c, s[1].h / s[0].h);
				else
					snprintf(hint, sizeof(hint), "shortcut=conv2d(%u,1),batchnorm2d", s[0].c);
				return tr_err_set(err, -EINVAL,
						  "model: %s: output %s does not match the block's input %s (the identity shortcut); give shortcut=..., e.g. %s",
						  last, a, b, hint);
			}
			return tr_err_set(err, -EINVAL,
					  "model: %s: output %s does not match the shortcut's %s", last, a, b);
		}
		*out = s[0];
		return 0;
	}
	*out = s[0];
	for (uint32_t k = 0; k < l->nbranches; k++)
		if (s[k].seq) {
			shape_text(s[k], b, sizeof(b));
			spec_where(spec, l->last[k] < 0 ? i : (uint32_t)l->last[k], last, sizeof(last));
			return tr_err_set(err, -EINVAL,
					  "model: %s: output %s: concat joins images along the channels or flat vectors; sequences are not joined",
					  last, b);
		}
	for (uint32_t k = 1; k < l->nbranches; k++) {
		if (s[k].flat != s[0].flat || s[k].h != s[0].h || s[k].w != s[0].w) {
			shape_text(s[0], a, sizeof(a));
			shape_text(s[k], b, sizeof(b));
			spec_where(spec, (uint32_t)l->last[k], last, sizeof(last));
			return tr_err_set(err, -EINVAL,
					  "model: %s: output %s does not fit branch 1's %s (concat joins along the channels; the rest must agree)",
					  last, b, a);
		}
		out->c += s[k].c;
	}
	(void)where;
	return 0;
}

int spec_shapes(const struct model_spec *spec, struct shape in, uint32_t classes,
		struct shape *shapes, uint64_t *params, struct tr_err *err)
{
	struct shape *s = shapes;
	struct shape own[SPEC_MAX_LAYERS];
	struct shape last;
	uint64_t count = 0;
	int32_t top_last = -1;
	int rc;

	if (spec->n == 0)
		return tr_err_set(err, -EINVAL, "model: no layers");
	if (!s)
		s = own;
	/* Children come after their block in the array but run before it:
	 * a block's shape is found when its last descendant has been. */
	for (uint32_t i = 0; i < spec->n; i++) {
		const struct layer_spec *l = &spec->layers[i];
		struct shape x = spec_input_shape(spec, s, in, i);

		if (l->parent < 0)
			top_last = (int32_t)i;
		if (spec_is_block(l->kind))
			continue;
		rc = layer_shape(spec, i, x, &s[i], &count, err);
		if (rc < 0)
			return rc;
		/* Close the blocks this item ends. */
		for (int32_t b = l->parent; b >= 0 && spec->layers[b].end == i + 1; b = spec->layers[b].parent) {
			struct shape bin = spec_input_shape(spec, s, in, (uint32_t)b);

			rc = block_shape(spec, s, bin, (uint32_t)b, &s[b], err);
			if (rc < 0)
				return rc;
		}
	}
	for (uint32_t i = 0; i < spec->n; i++) {
		char where[512];

		if (shape_size(s[i]) > (1u << 24)) {
			spec_where(spec, i, where, sizeof(where));
			return tr_err_set(err, -EINVAL,
					  "model: %s: its output of %llu values per sample is too large (at most 2^24)",
					  where, (unsigned long long)shape_size(s[i]));
		}
		if (s[i].h > MAX_SPATIAL || s[i].w > MAX_SPATIAL) {
			spec_where(spec, i, where, sizeof(where));
			return tr_err_set(err, -EINVAL, "model: %s: its output is too large", where);
		}
	}
	if (params)
		*params = count;
	if (classes == 0)
		return 0;   /* any output (tests of single layers) */
	last = s[top_last];
	if (last.seq) {
		char where[512];

		if (last.vocab)
			return tr_err_set(err, -EINVAL, "model: gives token ids, not %u scores", classes);
		if (last.c == classes)
			return 0;
		spec_where(spec, (uint32_t)top_last, where, sizeof(where));
		return tr_err_set(err, -EINVAL,
				  "model: %s: the last layer gives %u outputs at each of %u positions; the data has %u classes (tokens): end the model with linear(%u)",
				  where, last.c, last.h, classes, classes);
	}
	if (!last.flat && !(last.h == 1 && last.w == 1)) {
		char st[64];

		shape_text(last, st, sizeof(st));
		return tr_err_set(err, -EINVAL,
				  "model: the last layer gives a %s image, not %u class scores; end the model with flatten,linear(%u)",
				  st, classes, classes);
	}
	if (!last.flat)
		return tr_err_set(err, -EINVAL,
				  "model: the last layer gives a %u\xc3\x97" "1\xc3\x97" "1 image; end the model with flatten,linear(%u)",
				  last.c, classes);
	if (last.c != classes) {
		char where[512];

		spec_where(spec, (uint32_t)top_last, where, sizeof(where));
		return tr_err_set(err, -EINVAL,
				  "model: %s: the last layer gives %u outputs; the dataset has %u classes",
				  where, last.c, classes);
	}
	return 0;
}
