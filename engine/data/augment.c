/*
 * augment.c - training-batch augmentation. See include/traind/augment.h.
 *
 * Design
 * ------
 * The transforms work in place on a gathered sample (C x H x W floats),
 * which keeps their cost to one pass over the sample each and needs no
 * scratch memory: a crop with padding that keeps the image's size is a shift
 * by (top - padding, left - padding) with the uncovered border filled, done
 * row by row in the order that reads every source value before it is
 * overwritten; a flip swaps values pairwise; normalize is per value.
 *
 * Draws: transform k of sample `index` in epoch `epoch` takes the four words
 * philox4x32(ctr = {index, epoch low, epoch high ^ k << 24, "augm"},
 * key = seed ^ AUG_KEY). An integer in [0, n) is the word's multiply-shift
 * (word * n) >> 32 (bias below n / 2^32, immaterial for crop offsets); a
 * probability test compares the word's top 24 bits as a float in [0, 1) with
 * p, as torchvision's `torch.rand(1) < p` flips.
 */
#include "traind/augment.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/rng.h"

#define AUG_KEY 0x61756720746f6f6cull   /* keeps the stream apart from Dropout's (same seed) */
#define AUG_TAG 0x6175676du              /* "augm" */
#define MAX_ARGS 4

/* ---- parsing ------------------------------------------------------------ */

struct arg {
	char key[16];           /* "" for a positional argument */
	char val[192];
};

static int perr(struct tr_err *err, const char *op, const char *fmt, const char *what)
{
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, what);
	return tr_err_set_key(err, -EINVAL, "augment", "%s: %s", op, msg);
}

static void trim(const char **s, size_t *n)
{
	while (*n && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

static bool parse_float(const char *s, float lo, float hi, bool open_lo, float *out)
{
	char *end;
	double v;

	if (!*s)
		return false;
	v = strtod(s, &end);
	if (*end || !isfinite(v) || v < lo || v > hi || (open_lo && v == lo))
		return false;
	*out = (float)v;
	return true;
}

static bool parse_uint(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > hi)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (v < lo || v > hi)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* "a:b:c" into out[], at most max values; *n gets the count. */
static bool parse_list(const char *s, float lo, bool open_lo, float *out, uint32_t max, uint32_t *n)
{
	char buf[192], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", s);
	*n = 0;
	if (!*buf || buf[strlen(buf) - 1] == ':' || buf[0] == ':' || strstr(buf, "::"))
		return false;
	for (char *tok = strtok_r(buf, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
		if (*n == max || !parse_float(tok, lo, 1e6f, open_lo, &out[*n]))
			return false;
		(*n)++;
	}
	return *n > 0;
}

/* Split "name(args)" into its name and args. */
static int split_call(const char *s, size_t n, char *name, size_t name_len, struct arg *args,
		      uint32_t *nargs, struct tr_err *err)
{
	const char *open = memchr(s, '(', n);
	size_t nl = open ? (size_t)(open - s) : n;

	*nargs = 0;
	trim(&s, &nl);
	if (nl == 0 || nl >= name_len)
		return tr_err_set_key(err, -EINVAL, "augment", "'%.*s' is not a transform",
				      tr_utf8_cut(s, n > TR_QUOTE_MAX ? TR_QUOTE_MAX : n), s);
	memcpy(name, s, nl);
	name[nl] = '\0';
	if (!open)
		return 0;
	{
		const char *p = open + 1, *end = s + n;

		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (end <= p || end[-1] != ')')
			return perr(err, name, "%s", "missing ')'");
		end--;
		while (p <= end) {
			const char *c = memchr(p, ',', (size_t)(end - p));
			const char *e = c ? c : end, *eq;
			size_t len = (size_t)(e - p);
			struct arg *a;

			trim(&p, &len);
			if (len == 0) {
				if (!c && *nargs == 0)
					break;   /* "name()" */
				return perr(err, name, "%s", "an empty argument");
			}
			if (*nargs == MAX_ARGS)
				return perr(err, name, "%s", "too many arguments");
			a = &args[(*nargs)++];
			memset(a, 0, sizeof(*a));
			eq = memchr(p, '=', len);
			if (eq) {
				size_t kl = (size_t)(eq - p), vl = len - kl - 1;
				const char *v = eq + 1;

				trim(&p, &kl);
				trim(&v, &vl);
				if (kl == 0 || kl >= sizeof(a->key) || vl == 0 || vl >= sizeof(a->val))
					return perr(err, name, "%s", "a bad argument (KEY=VALUE)");
				memcpy(a->key, p, kl);
				memcpy(a->val, v, vl);
			} else {
				if (len >= sizeof(a->val))
					return perr(err, name, "%s", "an argument too long");
				memcpy(a->val, p, len);
			}
			if (!c)
				break;
			p = c + 1;
		}
	}
	return 0;
}

/* The value of argument `key` (or the positional one at `pos`, -1 none). */
static const char *arg_get(const struct arg *args, uint32_t nargs, const char *key, int pos)
{
	int seen = 0;

	for (uint32_t i = 0; i < nargs; i++) {
		if (args[i].key[0] ? strcmp(args[i].key, key) == 0 : seen++ == pos)
			return args[i].val;
	}
	return NULL;
}

/* Every argument must be one of keys (positional ones at most npos). */
static int args_known(const char *op, const struct arg *args, uint32_t nargs, const char *const *keys,
		      int npos, struct tr_err *err)
{
	int pos = 0;

	for (uint32_t i = 0; i < nargs; i++) {
		bool ok = false;

		if (!args[i].key[0]) {
			if (pos++ >= npos)
				return perr(err, op, "%s", "too many arguments without a name");
			continue;
		}
		for (size_t k = 0; keys[k]; k++)
			ok |= strcmp(args[i].key, keys[k]) == 0;
		if (!ok) {
			char msg[96];

			snprintf(msg, sizeof(msg), "unknown argument '%.16s'", args[i].key);
			return perr(err, op, "%s", msg);
		}
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(args[j].key, args[i].key) == 0) {
				char msg[96];

				snprintf(msg, sizeof(msg), "'%.16s' given twice", args[i].key);
				return perr(err, op, "%s", msg);
			}
	}
	return 0;
}

static int parse_op(struct augment_op *op, const char *s, size_t n, struct tr_err *err)
{
	static const char *const crop_keys[] = { "size", "padding", "fill", NULL };
	static const char *const flip_keys[] = { "p", NULL };
	static const char *const norm_keys[] = { "mean", "std", NULL };
	struct arg args[MAX_ARGS];
	char name[40];
	uint32_t nargs;
	const char *v;
	int rc;

	rc = split_call(s, n, name, sizeof(name), args, &nargs, err);
	if (rc < 0)
		return rc;
	memset(op, 0, sizeof(*op));
	if (strcmp(name, "random_crop") == 0) {
		float hw[2];
		uint32_t k;

		op->kind = AUG_RANDOM_CROP;
		rc = args_known(name, args, nargs, crop_keys, 1, err);
		if (rc < 0)
			return rc;
		v = arg_get(args, nargs, "size", 0);
		if (!v)
			return perr(err, name, "%s", "needs its size: random_crop(32,padding=4)");
		if (!parse_list(v, 1, false, hw, 2, &k) || hw[0] != floorf(hw[0]) || hw[k - 1] != floorf(hw[k - 1]) ||
		    hw[0] > DATASET_MAX_SIDE || hw[k - 1] > DATASET_MAX_SIDE)
			return perr(err, name, "size must be N or H:W, whole numbers 1..%s", "4096");
		op->h = (uint32_t)hw[0];
		op->w = (uint32_t)hw[k - 1];
		v = arg_get(args, nargs, "padding", -1);
		if (v && !parse_uint(v, 0, 1024, &op->padding))
			return perr(err, name, "%s", "padding must be a whole number 0..1024");
		v = arg_get(args, nargs, "fill", -1);
		if (v && !parse_float(v, -1e6f, 1e6f, false, &op->fill))
			return perr(err, name, "%s", "fill must be a number");
		return 0;
	}
	if (strcmp(name, "random_horizontal_flip") == 0 || strcmp(name, "random_vertical_flip") == 0) {
		op->kind = name[7] == 'h' ? AUG_RANDOM_HFLIP : AUG_RANDOM_VFLIP;
		rc = args_known(name, args, nargs, flip_keys, 1, err);
		if (rc < 0)
			return rc;
		op->p = 0.5f;
		v = arg_get(args, nargs, "p", 0);
		if (v && !parse_float(v, 0, 1, false, &op->p))
			return perr(err, name, "%s", "p must be a probability 0..1");
		return 0;
	}
	if (strcmp(name, "normalize") == 0) {
		uint32_t ns = 0;

		op->kind = AUG_NORMALIZE;
		rc = args_known(name, args, nargs, norm_keys, 2, err);
		if (rc < 0)
			return rc;
		v = arg_get(args, nargs, "mean", 0);
		if (!v || !parse_list(v, -1e6f, false, op->mean, DATASET_MAX_CHANNELS, &op->nch))
			return perr(err, name, "%s", "mean must be numbers, one per channel: normalize(mean=0.49:0.48:0.45,std=0.25:0.24:0.26)");
		v = arg_get(args, nargs, "std", 1);
		if (!v || !parse_list(v, 0, true, op->std, DATASET_MAX_CHANNELS, &ns))
			return perr(err, name, "%s", "std must be positive numbers, one per channel");
		if (ns != op->nch)
			return perr(err, name, "%s", "mean and std must have as many values");
		return 0;
	}
	return tr_err_set_key(err, -EINVAL, "augment",
			      "unknown transform '%.32s' (known: random_crop, random_horizontal_flip, random_vertical_flip, normalize)",
			      name);
}

int augment_parse(struct augment *out, const char *text, struct tr_err *err)
{
	const char *p = text;
	int depth = 0;

	memset(out, 0, sizeof(*out));
	if (strlen(text) >= AUGMENT_TEXT_MAX)
		return tr_err_set_key(err, -EINVAL, "augment", "the SPEC is longer than %d bytes",
				      AUGMENT_TEXT_MAX - 1);
	for (const char *q = text;; q++) {
		if (*q == '(')
			depth++;
		else if (*q == ')')
			depth--;
		if (depth < 0)
			return tr_err_set_key(err, -EINVAL, "augment", "unbalanced ')'");
		if ((*q == ',' && depth == 0) || !*q) {
			size_t n = (size_t)(q - p);
			const char *s = p;
			int rc;

			trim(&s, &n);
			if (n == 0) {
				if (!*q && out->n == 0)
					break;   /* "" */
				return tr_err_set_key(err, -EINVAL, "augment", "an empty transform in '%.*s'",
						      tr_utf8_cut(text, TR_QUOTE_MAX), text);
			}
			if (out->n == AUGMENT_MAX_OPS)
				return tr_err_set_key(err, -EINVAL, "augment", "more than %d transforms",
						      AUGMENT_MAX_OPS);
			rc = parse_op(&out->ops[out->n], s, n, err);
			if (rc < 0)
				return rc;
			out->n++;
			p = q + 1;
		}
		if (!*q)
			break;
	}
	if (depth != 0)
		return tr_err_set_key(err, -EINVAL, "augment", "missing ')'");
	for (uint32_t i = 0; i + 1 < out->n; i++)
		if (out->ops[i].kind == AUG_NORMALIZE)
			return tr_err_set_key(err, -EINVAL, "augment",
					      "normalize must come last (torchvision's order: crops and flips, then normalize)");
	return 0;
}

int augment_check(const struct augment *a, const struct augment_data *d, struct tr_err *err)
{
	for (uint32_t i = 0; i < a->n; i++) {
		const struct augment_op *op = &a->ops[i];

		if (op->kind == AUG_RANDOM_CROP) {
			uint64_t ph = (uint64_t)d->h + 2ull * op->padding, pw = (uint64_t)d->w + 2ull * op->padding;

			if (op->h > ph || op->w > pw)
				return tr_err_set_key(err, -EINVAL, "augment",
						      "random_crop(%u:%u,padding=%u): the crop is larger than the %ux%u images padded to %llux%llu",
						      op->h, op->w, op->padding, d->h, d->w,
						      (unsigned long long)ph, (unsigned long long)pw);
			if (op->h != d->h || op->w != d->w)
				return tr_err_set_key(err, -EINVAL, "augment",
						      "random_crop(%u:%u): the crop must be the images' own size %u:%u (pad and crop back, as random_crop(%u,padding=4)), so the model sees one input size in training and evaluation",
						      op->h, op->w, d->h, d->w, d->h);
		}
		if (op->kind == AUG_NORMALIZE) {
			if (op->nch != d->c)
				return tr_err_set_key(err, -EINVAL, "augment",
						      "normalize: %u values of mean and std, but the images have %u channel%s",
						      op->nch, d->c, d->c == 1 ? "" : "s");
			if (d->mean)
				return tr_err_set_key(err, -EINVAL, "augment",
						      "normalize: the dataset is normalised already (mean and std in its dataset.json)");
		}
	}
	return 0;
}

bool augment_is_random(const struct augment *a)
{
	for (uint32_t i = 0; i < a->n; i++)
		if (a->ops[i].kind != AUG_NORMALIZE)
			return true;
	return false;
}

/* ---- applying ------------------------------------------------------------ */

void augment_draw(uint64_t seed, uint64_t epoch, uint32_t index, uint32_t k, uint32_t out[4])
{
	uint64_t key = seed ^ AUG_KEY;
	uint32_t ctr[4] = { index, (uint32_t)epoch, (uint32_t)(epoch >> 32) ^ (k << 24), AUG_TAG };
	uint32_t kk[2] = { (uint32_t)key, (uint32_t)(key >> 32) };

	philox4x32(ctr, kk, out);
}

static uint32_t below(uint32_t word, uint32_t n)
{
	return (uint32_t)(((uint64_t)word * n) >> 32);
}

static bool chance(uint32_t word, float p)
{
	return (float)(word >> 8) * (1.0f / 16777216.0f) < p;
}

/* x (C, H, W) shifted: x'[y][x] = x[y + dy][x + dx], or fill[c] outside. */
static void shift(float *x, uint32_t c, uint32_t h, uint32_t w, int64_t dy, int64_t dx,
		  const float *fill)
{
	for (uint32_t ch = 0; ch < c; ch++) {
		float *p = x + (size_t)ch * h * w;

		for (uint32_t r = 0; r < h; r++) {
			/* rows in the order that reads each source row before writing it */
			uint32_t y = dy > 0 ? r : h - 1 - r;
			int64_t sy = (int64_t)y + dy;
			float *row = p + (size_t)y * w;

			if (sy < 0 || sy >= (int64_t)h) {
				for (uint32_t q = 0; q < w; q++)
					row[q] = fill[ch];
				continue;
			}
			for (uint32_t q = 0; q < w; q++) {
				uint32_t xx = dx > 0 ? q : w - 1 - q;
				int64_t sx = (int64_t)xx + dx;

				row[xx] = sx < 0 || sx >= (int64_t)w ? fill[ch] : p[(size_t)sy * w + (size_t)sx];
			}
		}
	}
}

void augment_apply(const struct augment_op *op, const struct augment_data *d, float *x,
		   const uint32_t draw[4])
{
	size_t hw = (size_t)d->h * d->w;

	switch (op->kind) {
	case AUG_RANDOM_CROP: {
		uint32_t top = below(draw[0], d->h + 2 * op->padding - op->h + 1);
		uint32_t left = below(draw[1], d->w + 2 * op->padding - op->w + 1);
		float fill[DATASET_MAX_CHANNELS];

		for (uint32_t ch = 0; ch < d->c; ch++)
			fill[ch] = d->mean ? (op->fill - d->mean[ch]) / d->std[ch] : op->fill;
		if (top != op->padding || left != op->padding)
			shift(x, d->c, d->h, d->w, (int64_t)top - op->padding, (int64_t)left - op->padding, fill);
		break;
	}
	case AUG_RANDOM_HFLIP:
		if (!chance(draw[0], op->p))
			break;
		for (size_t r = 0; r < (size_t)d->c * d->h; r++) {
			float *row = x + r * d->w;

			for (uint32_t a = 0, b = d->w - 1; a < b; a++, b--) {
				float tmp = row[a];

				row[a] = row[b];
				row[b] = tmp;
			}
		}
		break;
	case AUG_RANDOM_VFLIP:
		if (!chance(draw[0], op->p))
			break;
		for (uint32_t ch = 0; ch < d->c; ch++)
			for (uint32_t a = 0, b = d->h - 1; a < b; a++, b--)
				for (uint32_t q = 0; q < d->w; q++) {
					float *pa = x + ch * hw + (size_t)a * d->w + q;
					float *pb = x + ch * hw + (size_t)b * d->w + q;
					float tmp = *pa;

					*pa = *pb;
					*pb = tmp;
				}
		break;
	case AUG_NORMALIZE:
		for (uint32_t ch = 0; ch < d->c; ch++)
			for (size_t e = 0; e < hw; e++)
				x[ch * hw + e] = (x[ch * hw + e] - op->mean[ch]) / op->std[ch];
		break;
	}
}

void augment_rows(const struct augment *a, const struct augment_data *d, float *x,
		  const uint32_t *idx, size_t n, uint64_t seed, uint64_t epoch, bool train)
{
	size_t dim = (size_t)d->c * d->h * d->w;

	for (size_t i = 0; i < n; i++) {
		for (uint32_t k = 0; k < a->n; k++) {
			uint32_t draw[4] = { 0, 0, 0, 0 };

			if (a->ops[k].kind != AUG_NORMALIZE) {
				if (!train)
					continue;
				augment_draw(seed, epoch, idx[i], k, draw);
			}
			augment_apply(&a->ops[k], d, x + i * dim, draw);
		}
	}
}
