/*
 * checkpoint.c - trainer state <-> safetensors blob. See include/traind/checkpoint.h.
 *
 * The checksum covers every byte of the blob: the writer emits the metadata
 * value "sha256:" followed by 64 '0's, hashes the whole blob, and writes the
 * hex digits over the zeros. The reader finds that value (exactly once) in the
 * header, hashes the blob with those 64 bytes taken as '0', and compares.
 */
#include "traind/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/pycode.h"
#include "traind/portable.h"
#include "traind/safetensors.h"
#include "traind/sha256.h"
#include "engine/train/trainer-sched.h"

#define CHECKSUM_PREFIX "sha256:"
#define PREFIX_LEN 7

static const char zeros64[SHA256_HEX_LEN + 1] =
	"0000000000000000000000000000000000000000000000000000000000000000";

static const char *moment_names[2] = { "exp_avg", "exp_avg_sq" };

/* ---- helpers shared by save and load ---------------------------------- */

static bool parse_u64_str(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s || (s[0] == '0' && s[1]))
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}

/* Name of the state tensor `what` of parameter tensor i (torch.optim numbering). */
static void state_name(char *buf, size_t len, uint32_t i, const char *what)
{
	snprintf(buf, len, "optimizer.state.%u.%s", i, what);
}

static enum st_dtype tensor_dtype(const struct net_tensor *x)
{
	return x->kind == TENSOR_COUNT ? ST_I64 : ST_F32;
}

/* Every tensor of the model (parameters from `params`, then the buffers), in
 * state_dict order. */
static int add_model(struct st_writer *w, const struct net *n, const float *params)
{
	int rc;

	for (uint32_t i = 0; i < n->ntensors; i++) {
		const struct net_tensor *x = &n->tensors[i];

		rc = st_writer_add(w, x->name, tensor_dtype(x), x->ndim, x->shape,
				   net_tensor_data(n, x, (float *)params));
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* One optimizer state tensor per parameter, numbered as torch.optim does. */
static int add_state(struct st_writer *w, const struct net *n, const float *base, const char *what)
{
	char name[64];
	uint32_t p = 0;
	int rc;

	for (uint32_t i = 0; i < n->ntensors; i++) {
		const struct net_tensor *x = &n->tensors[i];

		if (x->kind != TENSOR_PARAM)
			continue;
		state_name(name, sizeof(name), p++, what);
		rc = st_writer_add(w, name, ST_F32, x->ndim, x->shape, base + x->off);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A history row in the checkpoint's "history" metadata. The engine's own
 * (a file format, not the protocol: the daemon's wire.c has the protocol's
 * row), keyed as the history columns. */
static json_t *real_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* A metric the job's task does not have (NaN) is null; val_mae and
 * val_rmse are written only by a regression. */
static json_t *history_meta_json(const struct history_row *r)
{
	json_t *o = json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:f,s:s,s:f,s:o}", "epoch", (json_int_t)r->epoch,
			      "train_loss", real_or_null(r->train_loss), "train_acc", real_or_null(r->train_acc),
			      "train_macro_acc", real_or_null(r->train_macro_acc), "val_loss",
			      real_or_null(r->val_loss), "val_acc", real_or_null(r->val_acc), "val_macro_acc",
			      real_or_null(r->val_macro_acc), "seconds", r->seconds, "note", r->note, "lr", r->lr,
			      "grad_norm", real_or_null(r->grad_norm));

	if (o && !isnan(r->val_mae) &&
	    (json_object_set_new(o, "val_mae", real_or_null(r->val_mae)) ||
	     json_object_set_new(o, "val_rmse", real_or_null(r->val_rmse)))) {
		json_decref(o);
		return NULL;
	}
	if (o && !isnan(r->val_ppl) && json_object_set_new(o, "val_ppl", real_or_null(r->val_ppl))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *history_to_json(const struct history_row *rows, uint32_t n)
{
	json_t *a = json_array();

	for (uint32_t i = 0; a && i < n; i++) {
		json_t *o = history_meta_json(&rows[i]);

		if (!o || json_array_append_new(a, o)) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static int meta_json(struct st_writer *w, const char *key, json_t *v)
{
	char *s;
	int rc;

	if (!v)
		return -ENOMEM;
	s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(v);
	if (!s)
		return -ENOMEM;
	rc = st_writer_meta(w, key, s);
	free(s);
	return rc;
}

static int meta_u64(struct st_writer *w, const char *key, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return st_writer_meta(w, key, buf);
}

/* "C,H,W" of the model's input. */
/* "C,H,W"; token ids also "input_vocab" (their bound), a sequence
 * "input_seq" "1" (doc/sequences.md). */
static int meta_input(struct st_writer *w, const struct net *n)
{
	char buf[48];
	int rc;

	snprintf(buf, sizeof(buf), "%u,%u,%u", n->input.c, n->input.h, n->input.w);
	rc = st_writer_meta(w, "input", buf);
	if (rc == 0 && n->input.vocab)
		rc = meta_u64(w, "input_vocab", n->input.vocab);
	else if (rc == 0 && n->input.seq)
		rc = st_writer_meta(w, "input_seq", "1");
	return rc;
}

/* Locate "sha256:<64 chars>" in the header; exactly one occurrence of the
 * given 64 characters must exist. Returns the offset of the hex in the blob. */
static int find_checksum(const uint8_t *blob, const struct st_file *f, const char *hex,
			 size_t *pos)
{
	size_t hoff = (size_t)(f->header - blob);
	int found = 0;

	for (size_t i = 0; i + SHA256_HEX_LEN <= f->header_len; i++) {
		if (memcmp(f->header + i, hex, SHA256_HEX_LEN) == 0) {
			found++;
			*pos = hoff + i;
		}
	}
	return found == 1 ? 0 : -EINVAL;
}

/* The blob's digest with the 64 bytes at `pos` taken as '0': 0 or -ENOMEM. */
static int hash_with_zeroed(const uint8_t *blob, size_t len, size_t pos, char hex[65])
{
	struct sha256_ctx ctx;
	uint8_t digest[SHA256_DIGEST_LEN];
	int rc;

	sha256_init(&ctx);
	sha256_update(&ctx, blob, pos);
	sha256_update(&ctx, zeros64, SHA256_HEX_LEN);
	sha256_update(&ctx, blob + pos + SHA256_HEX_LEN, len - pos - SHA256_HEX_LEN);
	rc = sha256_final(&ctx, digest);
	sha256_to_hex(digest, hex);
	return rc;
}

/* ---- save ------------------------------------------------------------- */

/* The job's stream: xoshiro's four words as "rng.state", or for rng torch
 * the mt19937's 624 words and its position as "rng.mt19937" U32 [625],
 * packed into the caller's `mt` (the writer keeps pointers to the data until
 * st_writer_finish, so it must outlive this call). */
static int add_rng(struct st_writer *w, const struct trainer *t, uint32_t mt[MT_N + 1])
{
	uint64_t shape1[1];

	if (t->cfg.rng != RNG_TORCH) {
		shape1[0] = 4;
		return st_writer_add(w, "rng.state", ST_U64, 1, shape1, t->rng.s);
	}
	memcpy(mt, t->mt.s, sizeof(t->mt.s));
	mt[MT_N] = t->mt.idx;
	shape1[0] = MT_N + 1;
	return st_writer_add(w, "rng.mt19937", ST_U32, 1, shape1, mt);
}

int checkpoint_serialize(const struct trainer *t, uint8_t **blob, size_t *len, struct tr_err *err)
{
	size_t cap = 0;

	*blob = NULL;
	return checkpoint_serialize_into(t, blob, &cap, len, err);
}

int checkpoint_serialize_into(const struct trainer *t, uint8_t **blob, size_t *cap, size_t *len,
			      struct tr_err *err)
{
	const struct net *m = &t->model;
	struct st_writer *w = NULL;
	uint64_t shape1[1], shape2[2];
	double sums[2] = { t->sums.loss_sum, t->sums.seconds };
	uint32_t k = m->classes;   /* metrics.counts is (4, outputs): the model's width lives there */
	int64_t *counts = NULL;
	double sched_values[SCHED_NVALUES];
	int64_t sched_counts[SCHED_NCOUNTS];
	uint32_t mt[MT_N + 1];     /* rng torch's state, packed (alive until the writer finishes) */
	char placeholder[PREFIX_LEN + SHA256_HEX_LEN + 1];
	int rc;

	/* (4, k): the batches, then per class (per label) correct, total and
	 * predicted; a regression has its samples in total[0], the rest 0. */
	counts = calloc(4 * (size_t)k, sizeof(*counts));
	if (!counts)
		return tr_err_set(err, -ENOMEM, "out of memory");
	{
		int64_t *packed = counts;

		packed[0] = (int64_t)t->sums.batches;
		if (t->task == TASK_TOKENS) {
			/* per-token: the positions right, the samples, the positions */
			packed[1 * k] = (int64_t)t->sums.tokens_correct;
			packed[2 * k] = (int64_t)t->sums.total[0];
			packed[3 * k] = (int64_t)t->sums.tokens;
		}
		for (uint32_t c = 0; t->task != TASK_TOKENS && c < k && c < DATASET_MAX_CLASSES; c++) {
			packed[1 * k + c] = (int64_t)t->sums.correct[c];
			packed[2 * k + c] = (int64_t)t->sums.total[c];
			packed[3 * k + c] = (int64_t)t->sums.predicted[c];
		}
	}
	snprintf(placeholder, sizeof(placeholder), "%s%s", CHECKSUM_PREFIX, zeros64);

	rc = st_writer_new(&w);
	if (rc < 0)
		goto out;
	rc = add_model(w, m, m->params);
	if (rc == 0 && t->opt.m)
		rc = t->opt.v ? add_state(w, m, t->opt.m, moment_names[0])
			      : add_state(w, m, t->opt.m, "momentum_buffer");
	if (rc == 0 && t->opt.v)
		rc = add_state(w, m, t->opt.v, moment_names[1]);
	if (rc == 0)
		rc = add_rng(w, t, mt);
	shape1[0] = t->n_train;
	if (rc == 0)
		rc = st_writer_add(w, "data.order", ST_U32, 1, shape1, t->order);
	shape1[0] = 2;
	if (rc == 0)
		rc = st_writer_add(w, "metrics.sums", ST_F64, 1, shape1, sums);
	shape2[0] = 4;
	shape2[1] = k;
	if (rc == 0)
		rc = st_writer_add(w, "metrics.counts", ST_I64, 2, shape2, counts);
	sched_save(&t->sched, sched_values, sched_counts);
	shape1[0] = SCHED_NVALUES;
	if (rc == 0)
		rc = st_writer_add(w, "schedule.values", ST_F64, 1, shape1, sched_values);
	shape1[0] = SCHED_NCOUNTS;
	if (rc == 0)
		rc = st_writer_add(w, "schedule.counts", ST_I64, 1, shape1, sched_counts);
	if (rc == 0)
		rc = st_writer_meta(w, "format", CHECKPOINT_FORMAT);
	if (rc == 0)
		rc = meta_u64(w, "format_version", CHECKPOINT_VERSION);
	if (rc == 0)
		rc = meta_json(w, "config", config_to_json(&t->cfg));
	if (rc == 0)
		rc = meta_input(w, m);
	if (rc == 0)
		rc = st_writer_meta(w, "numerics", t->numerics);
	if (rc == 0)
		rc = meta_u64(w, "epoch", t->epoch);
	if (rc == 0)
		rc = meta_u64(w, "step", t->step);
	if (rc == 0)
		rc = meta_u64(w, "optimizer_step", t->opt.step);
	if (rc == 0)
		rc = st_writer_meta(w, "note", t->note);
	if (rc == 0)
		rc = meta_json(w, "history", history_to_json(t->history, t->nhistory));
	if (rc == 0)
		rc = st_writer_meta(w, "checksum", placeholder);
	if (rc == 0)
		rc = st_writer_finish_into(w, blob, cap, len);
	if (rc < 0)
		tr_err_set(err, rc, "cannot serialize the checkpoint (out of memory)");
out:
	st_writer_free(w);
	free(counts);
	return rc;
}

int checkpoint_seal(uint8_t *blob, size_t len, char checksum[72], struct tr_err *err)
{
	struct st_file *f = NULL;
	char hex[SHA256_HEX_LEN + 1];
	size_t pos;
	int rc;

	rc = st_parse(&f, blob, len, err);
	if (rc < 0)
		return rc;
	rc = find_checksum(blob, f, zeros64, &pos);
	st_file_free(f);
	if (rc < 0)
		return tr_err_set(err, rc, "checkpoint: no unique checksum placeholder to seal");
	if (hash_with_zeroed(blob, len, pos, hex) < 0)
		return tr_err_set(err, -ENOMEM, "checkpoint: cannot hash the blob (out of memory)");
	memcpy(blob + pos, hex, SHA256_HEX_LEN);
	if (checksum)
		snprintf(checksum, 72, "%s%s", CHECKSUM_PREFIX, hex);
	return 0;
}

int checkpoint_save(const struct trainer *t, uint8_t **blob, size_t *len, struct tr_err *err)
{
	int rc = checkpoint_serialize(t, blob, len, err);

	if (rc == 0) {
		rc = checkpoint_seal(*blob, *len, NULL, err);
		if (rc < 0) {
			free(*blob);
			*blob = NULL;
		}
	}
	return rc;
}

/* ---- load ------------------------------------------------------------- */

/* Parse and verify structure, checksum and version; fill info. *out_f is the
 * parsed file on success (caller frees). */
static int open_blob(const uint8_t *blob, size_t len, struct st_file **out_f,
		     struct checkpoint_info *info, struct tr_err *err)
{
	struct st_file *f = NULL;
	const char *v;
	char hex[SHA256_HEX_LEN + 1];
	size_t pos;
	uint64_t u;
	json_t *cj = NULL;
	json_error_t jerr;
	int rc;

	memset(info, 0, sizeof(*info));
	rc = st_parse(&f, blob, len, err);
	if (rc < 0) {
		tr_err_prefix(err, "checkpoint");
		goto fail;
	}
	rc = -EINVAL;
	v = st_meta_get(f, "format");
	if (!v || strcmp(v, CHECKPOINT_FORMAT) != 0) {
		tr_err_set(err, rc, "checkpoint: not a traind checkpoint (metadata format is %s%.40s%s)",
			   v ? "'" : "", v ? v : "missing", v ? "'" : "");
		goto fail;
	}
	v = st_meta_get(f, "format_version");
	if (!parse_u64_str(v, &u) || u < 1 || u > CHECKPOINT_VERSION) {
		tr_err_set(err, rc, "checkpoint: unsupported format version '%.20s' (this traind reads 1 to %d)",
			   v ? v : "missing", CHECKPOINT_VERSION);
		goto fail;
	}
	info->version = (uint32_t)u;
	v = st_meta_get(f, "checksum");
	if (!v || strlen(v) != PREFIX_LEN + SHA256_HEX_LEN || strncmp(v, CHECKSUM_PREFIX, PREFIX_LEN) != 0) {
		tr_err_set(err, rc, "checkpoint: missing or malformed checksum");
		goto fail;
	}
	if (find_checksum(blob, f, v + PREFIX_LEN, &pos) < 0) {
		tr_err_set(err, rc, "checkpoint: checksum value is not unique in the header");
		goto fail;
	}
	if (hash_with_zeroed(blob, len, pos, hex) < 0) {
		rc = tr_err_set(err, -ENOMEM, "checkpoint: cannot hash the blob (out of memory)");
		goto fail;
	}
	if (memcmp(hex, v + PREFIX_LEN, SHA256_HEX_LEN) != 0) {
		tr_err_set(err, rc, "checkpoint: checksum mismatch (stored %.16s..., computed %.16s...): the blob is corrupt",
			   v + PREFIX_LEN, hex);
		goto fail;
	}
	snprintf(info->checksum, sizeof(info->checksum), "%s", v);
	v = st_meta_get(f, "config");
	cj = v ? json_loads(v, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (!cj) {
		tr_err_set(err, rc, "checkpoint: configuration metadata is missing or not JSON");
		goto fail;
	}
	rc = config_from_stored_json(&info->cfg, cj, err);
	if (rc < 0) {
		tr_err_prefix(err, "checkpoint configuration");
		goto fail;
	}
	rc = -EINVAL;
	if (!parse_u64_str(st_meta_get(f, "epoch"), &u) || u > info->cfg.epochs) {
		tr_err_set(err, rc, "checkpoint: epoch is missing or out of range");
		goto fail;
	}
	info->epoch = (uint32_t)u;
	if (!parse_u64_str(st_meta_get(f, "step"), &u) || u > UINT32_MAX) {
		tr_err_set(err, rc, "checkpoint: step is missing or out of range");
		goto fail;
	}
	info->step = (uint32_t)u;
	if (!parse_u64_str(st_meta_get(f, "optimizer_step"), &u)) {
		tr_err_set(err, rc, "checkpoint: optimizer_step is missing or malformed");
		goto fail;
	}
	info->optimizer_step = u;
	json_decref(cj);
	*out_f = f;
	return 0;
fail:
	json_decref(cj);
	st_file_free(f);
	return rc;
}

int checkpoint_inspect(const uint8_t *blob, size_t len, struct checkpoint_info *info,
		       struct tr_err *err)
{
	struct st_file *f = NULL;
	int rc = open_blob(blob, len, &f, info, err);

	st_file_free(f);
	return rc;
}

/* The tensor `name` with exactly this dtype and shape, or an error. */
static int expect(const struct st_file *f, const char *name, enum st_dtype dt, int ndim,
		  const uint64_t *shape, const void **data, size_t *seen, struct tr_err *err)
{
	const struct st_tensor *x = st_find(f, name);

	if (!x)
		return tr_err_set(err, -EINVAL, "checkpoint: tensor '%s' is missing", name);
	if (x->dtype != dt)
		return tr_err_set(err, -EINVAL, "checkpoint: tensor '%s' has dtype %s, expected %s",
				  name, st_dtype_name(x->dtype), st_dtype_name(dt));
	if (x->ndim != ndim)
		return tr_err_set(err, -EINVAL, "checkpoint: tensor '%s' has %d dimensions, expected %d",
				  name, x->ndim, ndim);
	for (int i = 0; i < ndim; i++)
		if (x->shape[i] != shape[i])
			return tr_err_set(err, -EINVAL,
					  "checkpoint: tensor '%s' dimension %d is %" PRIu64 ", expected %" PRIu64,
					  name, i, x->shape[i], shape[i]);
	*data = x->data;
	(*seen)++;
	return 0;
}

/* The model's tensors: parameters into `params`, buffers into `buffers` and
 * `counts` (laid out as n's; NULL: only check them). */
static int load_model(const struct st_file *f, const struct net *n, float *params, float *buffers,
		      int64_t *counts, size_t *seen, struct tr_err *err)
{
	const void *d = NULL;
	int rc;

	for (uint32_t i = 0; i < n->ntensors; i++) {
		const struct net_tensor *x = &n->tensors[i];

		rc = expect(f, x->name, tensor_dtype(x), x->ndim, x->shape, &d, seen, err);
		if (rc < 0)
			return rc;
		if (x->kind == TENSOR_PARAM && params)
			memcpy(params + x->off, d, x->len * sizeof(float));
		else if (x->kind == TENSOR_BUFFER && buffers)
			memcpy(buffers + x->off, d, x->len * sizeof(float));
		else if (x->kind == TENSOR_COUNT && counts)
			memcpy(counts + x->off, d, x->len * sizeof(int64_t));
	}
	return 0;
}

/* The optimizer state `what` of every parameter into base (laid out as n's params). */
static int load_state(const struct st_file *f, const struct net *n, float *base, const char *what,
		      size_t *seen, struct tr_err *err)
{
	const void *d = NULL;
	char name[64];
	uint32_t p = 0;
	int rc;

	for (uint32_t i = 0; i < n->ntensors; i++) {
		const struct net_tensor *x = &n->tensors[i];

		if (x->kind != TENSOR_PARAM)
			continue;
		state_name(name, sizeof(name), p++, what);
		rc = expect(f, name, ST_F32, x->ndim, x->shape, &d, seen, err);
		if (rc < 0)
			return rc;
		memcpy(base + x->off, d, x->len * sizeof(float));
	}
	return 0;
}

/* A stored running variance must be a variance, a count a count. */
static int check_buffers(const struct net *n, struct tr_err *err)
{
	for (uint32_t i = 0; i < n->ntensors; i++) {
		const struct net_tensor *x = &n->tensors[i];

		if (x->kind == TENSOR_COUNT && n->counts[x->off] < 0)
			return tr_err_set(err, -EINVAL, "checkpoint: tensor '%s' is negative", x->name);
		if (x->kind == TENSOR_BUFFER && strstr(x->name, "running_var"))
			for (size_t e = 0; e < x->len; e++)
				if (!(n->buffers[x->off + e] >= 0.0f) || isinf(n->buffers[x->off + e]))
					return tr_err_set(err, -EINVAL,
							  "checkpoint: tensor '%s' holds a value that is not a variance",
							  x->name);
	}
	return 0;
}

static int history_from_json(struct trainer *t, const char *text, uint32_t version,
			     struct tr_err *err)
{
	static const char *const keys[] = { "train_loss", "train_acc", "train_macro_acc", "val_loss",
					    "val_acc", "val_macro_acc", "seconds" };
	json_error_t jerr;
	json_t *a = text ? json_loads(text, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	json_t *o;
	size_t i;
	int rc = -EINVAL;

	if (!json_is_array(a) || json_array_size(a) != t->epoch) {
		tr_err_set(err, rc, "checkpoint: history is missing or does not have %u rows", t->epoch);
		goto out;
	}
	json_array_foreach(a, i, o) {
		struct history_row *r = &t->history[i];
		double *dst[] = { &r->train_loss, &r->train_acc, &r->train_macro_acc, &r->val_loss,
				  &r->val_acc, &r->val_macro_acc, &r->seconds };
		json_t *e = json_object_get(o, "epoch");
		json_t *note = json_object_get(o, "note");

		if (!json_is_object(o) || !json_is_integer(e) || json_integer_value(e) != (json_int_t)i + 1 ||
		    !json_is_string(note) || strlen(json_string_value(note)) >= HISTORY_NOTE_MAX) {
			tr_err_set(err, rc, "checkpoint: history row %zu is malformed", i + 1);
			goto out;
		}
		r->epoch = (uint32_t)i + 1;
		snprintf(r->note, sizeof(r->note), "%s", json_string_value(note));
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			json_t *v = json_object_get(o, keys[k]);

			/* null: a metric the task does not have (or not finite) */
			if (!json_is_number(v) && !(json_is_null(v) && k != 6)) {
				tr_err_set(err, rc, "checkpoint: history row %zu: '%s' is not a number",
					   i + 1, keys[k]);
				goto out;
			}
			*dst[k] = json_is_null(v) ? NAN : json_number_value(v);
		}
		r->val_mae = r->val_rmse = r->val_ppl = NAN;
		{
			json_t *mae = json_object_get(o, "val_mae"), *rmse = json_object_get(o, "val_rmse");
			json_t *ppl = json_object_get(o, "val_ppl");

			if (ppl && !json_is_number(ppl) && !json_is_null(ppl)) {
				tr_err_set(err, rc, "checkpoint: history row %zu: 'val_ppl' is malformed", i + 1);
				goto out;
			}
			if (json_is_number(ppl))
				r->val_ppl = json_number_value(ppl);

			if ((mae && !json_is_number(mae) && !json_is_null(mae)) ||
			    (rmse && !json_is_number(rmse) && !json_is_null(rmse))) {
				tr_err_set(err, rc, "checkpoint: history row %zu: 'val_mae' or 'val_rmse' is malformed",
					   i + 1);
				goto out;
			}
			if (json_is_number(mae))
				r->val_mae = json_number_value(mae);
			if (json_is_number(rmse))
				r->val_rmse = json_number_value(rmse);
		}
		/* Format 3: the epoch's rate and mean gradient norm (null: not
		 * clipped); before, the constant lr and none. */
		r->lr = t->cfg.lr;
		r->grad_norm = NAN;
		if (version >= 3) {
			json_t *lr = json_object_get(o, "lr"), *gn = json_object_get(o, "grad_norm");

			if (!json_is_number(lr) || !(json_number_value(lr) >= 0) ||
			    !(json_is_null(gn) || (json_is_number(gn) && json_number_value(gn) >= 0))) {
				tr_err_set(err, rc, "checkpoint: history row %zu: 'lr' or 'grad_norm' is malformed",
					   i + 1);
				goto out;
			}
			r->lr = json_number_value(lr);
			if (json_is_number(gn))
				r->grad_norm = json_number_value(gn);
		}
	}
	t->nhistory = t->epoch;
	rc = 0;
out:
	json_decref(a);
	return rc;
}

/* The schedule's state (format 3), checked by sched_load; a job stopped
 * early is at an epoch end. */
static int load_schedule(const struct st_file *f, struct trainer *t, size_t *seen, struct tr_err *err)
{
	uint64_t shape1[1];
	const void *d = NULL;
	double values[SCHED_NVALUES];
	int64_t counts[SCHED_NCOUNTS];
	int rc;

	shape1[0] = SCHED_NVALUES;
	rc = expect(f, "schedule.values", ST_F64, 1, shape1, &d, seen, err);
	if (rc < 0)
		return rc;
	memcpy(values, d, sizeof(values));
	shape1[0] = SCHED_NCOUNTS;
	rc = expect(f, "schedule.counts", ST_I64, 1, shape1, &d, seen, err);
	if (rc < 0)
		return rc;
	memcpy(counts, d, sizeof(counts));
	rc = sched_load(&t->sched, values, counts, t->epoch, err);
	if (rc < 0)
		return rc;
	if (t->sched.stopped && (t->step != 0 || !t->cfg.early_stop_patience))
		return tr_err_set(err, -EINVAL, "checkpoint: schedule state: stopped early, but %s",
				  t->step ? "in the middle of an epoch" : "the job has no early_stop_patience");
	if (t->sched.grad_norm_count > t->step)
		return tr_err_set(err, -EINVAL, "checkpoint: schedule state: %llu gradient norms for %u steps",
				  (unsigned long long)t->sched.grad_norm_count, t->step);
	return 0;
}

/* A job trained under one BLAS kernel and resumed under another continues,
 * but not bit-identically to an uninterrupted run: say so (the history row's
 * note, trainer.numerics_changed), or refuse under strict_numerics. A blob of
 * format 1 did not record its environment. */
static int check_numerics(struct trainer *t, const char *trained, struct tr_err *err)
{
	size_t used;

	if (!trained)
		return 0;
	if (strlen(trained) >= sizeof(t->numerics))
		return tr_err_set(err, -EINVAL, "checkpoint: numerics is too long");
	if (strcmp(trained, t->numerics) == 0)
		return 0;
	/* a portable job on another path: the same bits (portable.h) */
	if (t->cfg.kernels == KERNELS_PORTABLE && pk_same_bits(trained, t->numerics))
		return 0;
	if (t->cfg.strict_numerics)
		return tr_err_set(err, -EPERM,
				  "numerics: trained with %s, this machine runs %s; the job has strict_numerics, so it does not resume here (%s)",
				  trained, t->numerics,
				  t->cfg.precision == K_BF16 ? "pin the bf16 path with TRAIND_BF16=amx or avx512"
							     : "pin the kernel with OPENBLAS_CORETYPE");
	snprintf(t->numerics_changed, sizeof(t->numerics_changed),
		 "trained with %s, resumed with %s: not bit-identical to an uninterrupted run", trained,
		 t->numerics);
	used = strlen(t->note);
	if (used + 2 + strlen(t->numerics_changed) < sizeof(t->note))
		snprintf(t->note + used, sizeof(t->note) - used, "%s%.*s", used ? "; " : "",
			 (int)(sizeof(t->note) - used - 3), t->numerics_changed);
	return 0;
}

/* The stream add_rng wrote, for the job's rng; a state it cannot continue
 * from (all zero, a position past the end) is refused. */
static int load_rng(const struct st_file *f, struct trainer *t, size_t *seen, struct tr_err *err)
{
	uint64_t shape1[1];
	const void *d = NULL;
	uint32_t mt[MT_N + 1];
	int rc;

	if (t->cfg.rng != RNG_TORCH) {
		shape1[0] = 4;
		rc = expect(f, "rng.state", ST_U64, 1, shape1, &d, seen, err);
		if (rc < 0)
			return rc;
		memcpy(t->rng.s, d, sizeof(t->rng.s));
		if (!(t->rng.s[0] | t->rng.s[1] | t->rng.s[2] | t->rng.s[3]))
			return tr_err_set(err, -EINVAL, "checkpoint: rng.state is all zero");
		return 0;
	}
	shape1[0] = MT_N + 1;
	rc = expect(f, "rng.mt19937", ST_U32, 1, shape1, &d, seen, err);
	if (rc < 0)
		return rc;
	memcpy(mt, d, sizeof(mt));
	memcpy(t->mt.s, mt, sizeof(t->mt.s));
	t->mt.idx = mt[MT_N];
	if (!mt_state_ok(&t->mt))
		return tr_err_set(err, -EINVAL,
				  "checkpoint: rng.mt19937 is not a generator state (position %u of %d, or all words zero)",
				  t->mt.idx, MT_N);
	return 0;
}

int checkpoint_restore(struct trainer **out, const uint8_t *blob, size_t len,
		       const struct dataset *ds, bool weights_only, struct tr_err *err)
{
	struct checkpoint_info info;
	struct st_file *f = NULL;
	struct trainer *t = NULL;
	const void *d = NULL;
	uint64_t shape1[1], shape2[2];
	int64_t *counts = NULL;   /* (4, k) packed, as stored */
	const int64_t *packed;
	uint32_t k;
	double sums[2];
	uint8_t *seen_pos = NULL;
	size_t seen = 0;
	uint64_t total = 0;
	const char *note;
	int rc;

	rc = open_blob(blob, len, &f, &info, err);
	if (rc < 0)
		return rc;
	rc = k_precision_check(info.cfg.precision, err);
	if (rc < 0) {
		tr_err_prefix(err, "the job cannot continue on this machine");
		goto fail;
	}
	rc = trainer_new(&t, &info.cfg, ds, err);
	if (rc < 0) {
		tr_err_prefix(err, "checkpoint does not fit this dataset");
		goto fail;
	}
	rc = -EINVAL;
	if (info.step > t->steps_per_epoch || (info.epoch == info.cfg.epochs && info.step != 0) ||
	    (info.step == t->steps_per_epoch && info.step != 0 && info.epoch >= info.cfg.epochs)) {
		tr_err_set(err, rc, "checkpoint: position epoch %u step %u is out of range (%u epochs of %u steps)",
			   info.epoch, info.step, info.cfg.epochs, t->steps_per_epoch);
		goto fail;
	}
	t->epoch = info.epoch;
	t->step = info.step;
	t->opt.step = info.optimizer_step;

	rc = load_model(f, &t->model, t->model.params, t->model.buffers, t->model.counts, &seen, err);
	if (rc == 0)
		rc = check_buffers(&t->model, err);
	if (rc == 0 && t->opt.m)
		rc = load_state(f, &t->model, t->opt.m, t->opt.v ? moment_names[0] : "momentum_buffer",
				&seen, err);
	if (rc == 0 && t->opt.v)
		rc = load_state(f, &t->model, t->opt.v, moment_names[1], &seen, err);
	if (rc == 0)
		rc = load_rng(f, t, &seen, err);
	shape1[0] = t->n_train;
	if (rc == 0 && (rc = expect(f, "data.order", ST_U32, 1, shape1, &d, &seen, err)) == 0)
		memcpy(t->order, d, (size_t)t->n_train * sizeof(uint32_t));
	shape1[0] = 2;
	if (rc == 0 && (rc = expect(f, "metrics.sums", ST_F64, 1, shape1, &d, &seen, err)) == 0)
		memcpy(sums, d, sizeof(sums));
	shape2[0] = 4;
	shape2[1] = k = t->model.classes;
	if (rc == 0 && !(counts = calloc(4 * (size_t)k, sizeof(*counts))))
		rc = tr_err_set(err, -ENOMEM, "out of memory");
	if (rc == 0 && (rc = expect(f, "metrics.counts", ST_I64, 2, shape2, &d, &seen, err)) == 0)
		memcpy(counts, d, 4 * (size_t)k * sizeof(int64_t));
	if (rc < 0)
		goto fail;
	packed = counts;
	rc = -EINVAL;
	seen_pos = calloc(t->n_train, 1);
	if (!seen_pos) {
		rc = tr_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	for (uint32_t i = 0; i < t->n_train; i++) {
		if (t->order[i] >= t->n_train || seen_pos[t->order[i]]) {
			tr_err_set(err, rc, "checkpoint: data.order is not a permutation of %u samples",
				   t->n_train);
			goto fail;
		}
		seen_pos[t->order[i]] = 1;
	}
	t->sums.loss_sum = sums[0];
	t->sums.seconds = sums[1];
	if (packed[0] != (int64_t)t->step) {
		tr_err_set(err, rc, "checkpoint: metric batch count %" PRId64 " does not match step %u",
			   packed[0], t->step);
		goto fail;
	}
	t->sums.batches = (uint64_t)packed[0];
	if (t->task == TASK_TOKENS) {
		int64_t ok = packed[1 * k], all = packed[2 * k], pos = packed[3 * k];
		bool rest = false;

		for (uint32_t c = 1; c < k; c++)
			rest |= packed[1 * k + c] || packed[2 * k + c] || packed[3 * k + c];
		if (ok < 0 || all < 0 || (uint64_t)all != trainer_samples_done(t) ||
		    (uint64_t)pos != (uint64_t)all * t->positions || ok > pos || rest) {
			tr_err_set(err, rc, "checkpoint: per-token metric counts are inconsistent");
			goto fail;
		}
		t->sums.tokens_correct = (uint64_t)ok;
		t->sums.total[0] = (uint64_t)all;
		t->sums.tokens = (uint64_t)pos;
		total = (uint64_t)all;
		k = 0;   /* nothing per class */
	}
	for (uint32_t c = 0; c < k; c++) {
		int64_t ok = packed[1 * k + c], all = packed[2 * k + c], pred = packed[3 * k + c];

		/* multi-label: every label counts every sample; regression: the
		 * samples in total[0], nothing else */
		if (ok < 0 || all < 0 || pred < 0 || ok > all ||
		    (t->task == TASK_MULTILABEL && (uint64_t)all != trainer_samples_done(t)) ||
		    (t->task == TASK_REGRESSION && (ok || pred || (c && all))) ||
		    (c >= DATASET_MAX_CLASSES && (ok || all || pred))) {
			tr_err_set(err, rc, "checkpoint: metric counts for class %u are inconsistent", c);
			goto fail;
		}
		if (c >= DATASET_MAX_CLASSES)
			continue;
		t->sums.correct[c] = (uint64_t)ok;
		t->sums.total[c] = (uint64_t)all;
		t->sums.predicted[c] = (uint64_t)pred;
		total += (uint64_t)all;
	}
	if (t->task == TASK_MULTILABEL)
		total = k ? (uint64_t)packed[2 * k] : 0;
	if (total != trainer_samples_done(t)) {
		tr_err_set(err, rc, "checkpoint: metric counts cover %" PRIu64 " samples, expected %" PRIu64,
			   total, trainer_samples_done(t));
		goto fail;
	}
	rc = history_from_json(t, st_meta_get(f, "history"), info.version, err);
	if (rc < 0)
		goto fail;
	if (info.version >= 3) {
		rc = load_schedule(f, t, &seen, err);
		if (rc < 0)
			goto fail;
	} else {
		trainsched_replay_best(t);
	}
	rc = -EINVAL;
	if (seen != f->ntensors) {
		tr_err_set(err, rc, "checkpoint: %zu unexpected tensors (for optimizer %s)",
			   f->ntensors - seen, config_optim_name(info.cfg.optimizer));
		goto fail;
	}
	note = st_meta_get(f, "note");
	if (!note || strlen(note) >= HISTORY_NOTE_MAX) {
		rc = tr_err_set(err, -EINVAL, "checkpoint: note is missing or too long");
		goto fail;
	}
	snprintf(t->note, sizeof(t->note), "%s", note);
	if (weights_only)
		trainer_reset_optimizer(t, "resumed weights-only");
	rc = check_numerics(t, st_meta_get(f, "numerics"), err);
	if (rc < 0)
		goto fail;
	free(counts);
	free(seen_pos);
	st_file_free(f);
	*out = t;
	return 0;
fail:
	free(counts);
	free(seen_pos);
	trainer_free(t);
	st_file_free(f);
	return rc;
}

/* ---- model-only files ------------------------------------------------- */

static int write_model(const struct net *n, const struct train_config *cfg, const float *params,
		       uint32_t epoch, uint8_t **out, size_t *out_len, struct tr_err *err)
{
	struct st_writer *w = NULL;
	char text[4 * CFG_MODEL_MAX];   /* the canonical text may be longer than the config's */
	int rc;

	rc = st_writer_new(&w);
	if (rc == 0)
		rc = add_model(w, n, params);
	if (rc == 0)
		rc = st_writer_meta(w, "format", "pt");
	if (rc == 0 && !cfg->model[0]) {
		/* The MLP's widths, as exports have always said them. */
		char hidden[128] = "";

		for (uint32_t l = 0; l < cfg->n_hidden; l++) {
			size_t used = strlen(hidden);

			snprintf(hidden + used, sizeof(hidden) - used, "%s%u", l ? "," : "", cfg->hidden[l]);
		}
		rc = st_writer_meta(w, "traind.hidden", hidden);
	}
	if (rc == 0) {
		spec_text(&n->spec, text, sizeof(text));
		rc = st_writer_meta(w, "traind.model", text);
	}
	if (rc == 0)
		rc = meta_u64(w, "traind.epoch", epoch);
	if (rc == 0)
		rc = st_writer_finish(w, out, out_len);
	if (rc < 0)
		tr_err_set(err, rc, "cannot serialize the model (out of memory)");
	st_writer_free(w);
	return rc;
}

int checkpoint_export_model(const struct trainer *t, uint8_t **out, size_t *out_len,
			    struct tr_err *err)
{
	return write_model(&t->model, &t->cfg, t->model.params, t->epoch, out, out_len, err);
}

/* The model's input shape as a blob records it ("C,H,W", format 2), or as a
 * format-1 blob implies it: the MLP's first weight gives the features. */
static int blob_input(const struct st_file *f, struct shape *in, struct tr_err *err)
{
	const char *v = st_meta_get(f, "input");
	unsigned c, h, w;
	int used = 0;

	if (v) {
		if (sscanf(v, "%u,%u,%u%n", &c, &h, &w, &used) != 3 || v[used] || !c || !h || !w ||
		    c > 65536 || h > 65536 || w > 65536)
			return tr_err_set(err, -EINVAL, "checkpoint: input shape '%.32s' is malformed", v);
		in->c = c;
		in->h = h;
		in->w = w;
		in->flat = false;
		in->seq = false;
		in->vocab = 0;
		if (st_meta_get(f, "input_vocab")) {
			uint64_t vv = 0;

			if (!parse_u64_str(st_meta_get(f, "input_vocab"), &vv) || vv == 0 ||
			    vv > DATASET_MAX_VOCAB || c != 1 || w != 1)
				return tr_err_set(err, -EINVAL, "checkpoint: input_vocab is malformed");
			in->vocab = (uint32_t)vv;
			in->seq = true;
		} else if (st_meta_get(f, "input_seq")) {
			in->seq = true;
		}
		return 0;
	} else {
		const struct st_tensor *w0 = st_find(f, "net.1.weight");

		if (!w0 || w0->ndim != 2 || w0->shape[1] == 0 || w0->shape[1] > (1u << 24))
			return tr_err_set(err, -EINVAL, "checkpoint: tensor 'net.1.weight' is missing or malformed");
		in->c = (uint32_t)w0->shape[1];
		in->h = in->w = 1;
	}
	in->flat = false;
	return 0;
}

/* The classes a checkpoint's model was trained for: the width of its
 * metrics.counts tensor, (4, classes). */
static int blob_classes(const struct st_file *f, uint32_t *classes, struct tr_err *err)
{
	const struct st_tensor *c = st_find(f, "metrics.counts");

	if (!c || c->ndim != 2 || c->shape[0] != 4 || c->shape[1] == 0 ||
	    c->shape[1] > DATASET_MAX_VOCAB)
		return tr_err_set(err, -EINVAL, "checkpoint: tensor 'metrics.counts' is missing or malformed");
	*classes = (uint32_t)c->shape[1];
	return 0;
}

/* The model of a checkpoint blob, built for batches of max_batch (0: 1)
 * and loaded; *info (may be NULL) gets the blob's config and position. */
static int blob_net(const uint8_t *blob, size_t len, uint32_t max_batch, struct net *out,
		    struct checkpoint_info *info, struct tr_err *err)
{
	struct checkpoint_info own;
	struct st_file *f = NULL;
	struct model_spec spec;
	struct shape in;
	uint32_t classes = 0;
	size_t seen = 0;
	int rc;

	if (!info)
		info = &own;
	memset(out, 0, sizeof(*out));
	rc = open_blob(blob, len, &f, info, err);
	if (rc < 0)
		return rc;
	rc = blob_classes(f, &classes, err);
	if (rc == 0)
		rc = trainer_model_spec(&info->cfg, classes, &spec, err);
	if (rc == 0)
		rc = blob_input(f, &in, err);
	if (rc == 0 && (rc = spec_shapes(&spec, in, classes, NULL, NULL, err)) < 0)
		tr_err_prefix(err, "checkpoint");
	if (rc < 0)
		goto out;
	rc = net_init(out, &spec, in, classes, max_batch ? max_batch : 1, NULL);
	if (rc < 0)
		tr_err_set(err, rc, "out of memory");
	else
		rc = load_model(f, out, out->params, out->buffers, out->counts, &seen, err);
	out->seq_kernels = info->cfg.seq_kernels;
	if (rc < 0)
		net_deinit(out);   /* what a failed net_init left, as the export always did */
out:
	st_file_free(f);
	return rc;
}

int checkpoint_export_from_blob(const uint8_t *blob, size_t len, uint8_t **out, size_t *out_len,
				struct tr_err *err)
{
	struct checkpoint_info info;
	struct net n;
	int rc;

	rc = blob_net(blob, len, 1, &n, &info, err);
	if (rc < 0)
		return rc;
	rc = write_model(&n, &info.cfg, n.params, info.epoch, out, out_len, err);
	net_deinit(&n);
	return rc;
}

int checkpoint_pytorch_from_blob(const uint8_t *blob, size_t len, char **code, size_t *code_len,
				 struct tr_err *err)
{
	struct net n;
	int rc;

	rc = blob_net(blob, len, 1, &n, NULL, err);
	if (rc < 0)
		return rc;
	rc = pycode_write(&n.spec, n.input, code, code_len, err);
	net_deinit(&n);
	return rc;
}

int checkpoint_model_net(const uint8_t *blob, size_t len, uint32_t max_batch, struct net *out,
			 struct tr_err *err)
{
	return blob_net(blob, len, max_batch, out, NULL, err);
}

int checkpoint_load_model(struct trainer *t, const uint8_t *blob, size_t len, struct tr_err *err)
{
	struct net *n = &t->model;
	struct st_file *f = NULL;
	size_t seen = 0;
	float *params, *buffers;
	int64_t *counts;
	int rc = -ENOMEM;

	params = malloc((n->nparams ? n->nparams : 1) * sizeof(float));
	buffers = malloc((n->nbuffers ? n->nbuffers : 1) * sizeof(float));
	counts = malloc((n->ncounts ? n->ncounts : 1) * sizeof(int64_t));
	if (!params || !buffers || !counts) {
		tr_err_set(err, rc, "out of memory");
		goto out;
	}
	rc = st_parse(&f, blob, len, err);
	if (rc < 0) {
		tr_err_prefix(err, "model file");
		goto out;
	}
	rc = load_model(f, n, params, buffers, counts, &seen, err);
	if (rc < 0) {
		tr_err_prefix(err, "model file does not match the configured layers");
		goto out;
	}
	if (seen != f->ntensors) {
		rc = tr_err_set(err, -EINVAL, "model file: %zu tensors besides the model's net.* tensors",
				f->ntensors - seen);
		goto out;
	}
	memcpy(n->params, params, n->nparams * sizeof(float));
	memcpy(n->buffers, buffers, n->nbuffers * sizeof(float));
	memcpy(n->counts, counts, n->ncounts * sizeof(int64_t));
	rc = check_buffers(n, err);
	if (rc < 0)
		tr_err_prefix(err, "model file");
out:
	st_file_free(f);
	free(params);
	free(buffers);
	free(counts);
	return rc;
}
