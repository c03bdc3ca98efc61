/*
 * methods-model.c - Eval, Export, Generate, Predict: what a client does with a job's
 * stored checkpoints, on the thread pool. See daemon/proto/methods.h.
 */
#include "daemon/proto/methods.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "traind/base64.h"
#include "traind/checkpoint.h"
#include "traind/generate.h"
#include "traind/sha256.h"
#include "traind/trainer.h"
#include "daemon/data/predict.h"
#include "daemon/jobs/jobs.h"
#include "daemon/proto/wire.h"

/* A stored checkpoint blob: the given epoch's, else the newest epoch
 * checkpoint, else (a job that has finished no epoch) the newest of any
 * kind; or the job's best. */
int methods_checkpoint(struct bg_task *t, const struct ckpt_ref *ref, struct store_checkpoint *ck)
{
	int64_t epoch = ref->epoch;
	struct store *s;
	int rc;

	rc = bg_store(t, &s, &t->err);
	if (rc < 0)
		return bg_fail(t, PROTO_FROM_STORE, rc);
	if (ref->best) {
		rc = store_best_checkpoint(s, ref->id, ck, &t->err);
		if (rc == -ENOENT)
			tr_err_set(&t->err, rc, "job %" PRId64 " has no best checkpoint yet (no epoch with a finite monitored value)",
				   ref->id);
		return rc < 0 ? bg_fail(t, PROTO_FROM_LOOKUP, rc) : 0;
	}
	if (epoch < 0) {
		struct store_checkpoint *list = NULL;
		size_t n = 0;

		rc = store_checkpoint_list(s, ref->id, &list, &n, &t->err);
		if (rc < 0)
			return bg_fail(t, PROTO_FROM_STORE, rc);
		for (size_t i = 0; i < n; i++) {
			if (list[i].is_epoch && (int64_t)list[i].epoch > epoch)
				epoch = list[i].epoch;
			store_checkpoint_clear(&list[i]);
		}
		free(list);
	}
	rc = epoch >= 0 ? store_epoch_checkpoint(s, ref->id, (uint32_t)epoch, ck, &t->err)
			: store_latest_checkpoint(s, ref->id, ck, &t->err);
	return rc < 0 ? bg_fail(t, PROTO_FROM_LOOKUP, rc) : 0;
}

/* ---- Eval -------------------------------------------------------------- */

struct eval_task {
	struct bg_task t;          /* first */
	struct daemon *d;
	struct ckpt_ref ref;
	enum eval_split split;
	bool per_class;            /* add the per-class counts */
	bool allow_data_change;
	char dataset[CFG_NAME_MAX];          /* the checkpoint's */
	char recorded[DSCACHE_DIGEST_MAX];   /* the job's ("": none recorded) */
	char current[DSCACHE_DIGEST_MAX];    /* the files' now */
};

static void task_release(struct bg_task *t)
{
	free(t);
}

static void eval_work(struct bg_task *bt)
{
	struct eval_task *e = (struct eval_task *)bt;
	struct tr_err *err = &bt->err;
	struct store_checkpoint ck;
	struct checkpoint_info info;
	const struct dataset *ds = NULL;
	struct trainer *t = NULL;
	struct metric_sums *sums = NULL;
	struct metrics m;
	struct store *s;
	int rc;

	memset(&ck, 0, sizeof(ck));
	if (methods_checkpoint(bt, &e->ref, &ck) < 0)
		goto out;
	if (e->per_class && !(sums = calloc(1, sizeof(*sums)))) {
		bg_fail(bt, PROTO_FROM_DAEMON, tr_err_set(err, -ENOMEM, "out of memory"));
		goto out;
	}
	rc = checkpoint_inspect(ck.blob, (size_t)ck.size, &info, err);
	if (rc < 0) {
		bg_fail(bt, PROTO_FROM_CHECKPOINT, rc);
		goto out;
	}
	snprintf(e->dataset, sizeof(e->dataset), "%s", info.cfg.dataset);
	(void)bg_store(bt, &s, NULL);   /* open: methods_checkpoint used it */
	rc = dscache_digest(e->d->dsc, info.cfg.dataset, s, e->d->sq, e->current, NULL, err);
	if (rc == 0 && e->recorded[0] && strcmp(e->recorded, e->current) != 0 && !e->allow_data_change) {
		dscache_changed_message(err->msg, sizeof(err->msg), info.cfg.dataset, e->ref.id, e->recorded,
					e->current, "eval");
		bg_fail(bt, PROTO_FROM_DATASET, -ESTALE);
		goto out;
	}
	if (rc == 0)
		rc = dscache_get(e->d->dsc, info.cfg.dataset, e->current, &ds, err);
	if (rc < 0) {
		bg_fail(bt, PROTO_FROM_DATASET, rc);
		goto out;
	}
	rc = checkpoint_restore(&t, ck.blob, (size_t)ck.size, ds, false, err);
	if (rc == 0)
		rc = trainer_evaluate_sums(t, e->split, &m, sums);
	if (rc < 0) {
		bg_fail(bt, PROTO_FROM_CHECKPOINT, rc);
		goto out;
	}
	/* acc and macro_acc: null where the task has none (regression;
	 * multi-label's macro); mae and rmse: a regression's */
	bt->result = json_pack("{s:o,s:o,s:o,s:I,s:I,s:I,s:s,s:s}", "loss", real_or_null(m.loss), "acc",
			       real_or_null(m.acc), "macro_acc", real_or_null(m.macro_acc), "count",
			       (json_int_t)m.count, "epoch", (json_int_t)ck.epoch, "step", (json_int_t)ck.step,
			       "split", e->split == EVAL_TEST ? "test" : "val", "task",
			       loss_task_name(t->task));
	if (bt->result && t->task == TASK_REGRESSION) {
		json_object_set_new(bt->result, "mae", real_or_null(m.mae));
		json_object_set_new(bt->result, "rmse", real_or_null(m.rmse));
	}
	if (bt->result && t->task == TASK_TOKENS)   /* loss: the mean over every position */
		json_object_set_new(bt->result, "ppl", real_or_null(m.ppl));
	if (sums && bt->result && t->task == TASK_TOKENS) {
		json_object_set_new(bt->result, "per_class", json_array());   /* none per token */
	} else if (sums && bt->result) {
		/* One row per class of the dataset, named when it has names. */
		json_t *rows = json_array();

		for (uint32_t k = 0; rows && t->task != TASK_REGRESSION && k < t->model.classes; k++) {
			json_t *r = json_pack("{s:I,s:I,s:I,s:I}", "class", (json_int_t)k, "count",
					      (json_int_t)sums->total[k], "correct",
					      (json_int_t)sums->correct[k], "predicted",
					      (json_int_t)sums->predicted[k]);

			if (r && ds->class_names)
				json_object_set_new(r, "name", json_string(ds->class_names[k]));
			else if (r && ds->target_names)   /* multi-label: the label's name */
				json_object_set_new(r, "name", json_string(ds->target_names[k]));
			if (r && sums->total[k])
				json_object_set_new(r, "acc", json_real((double)sums->correct[k] /
									(double)sums->total[k]));
			json_array_append_new(rows, r);
		}
		json_object_set_new(bt->result, "per_class", rows);
	}
out:
	free(sums);
	trainer_free(t);
	if (ds)
		dscache_put(e->d->dsc, ds);
	store_checkpoint_clear(&ck);
}

void m_eval(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", "split", "epoch", "best", "per_class", "allow_data_change", NULL };
	json_t *split = json_object_get(call_params(c), "split");
	json_t *per_class = json_object_get(call_params(c), "per_class");
	enum eval_split which = EVAL_VAL;
	int64_t epoch = -1;
	bool best = false, allow = false;
	struct eval_task *e;
	struct job *j;

	(void)fds;
	if (!params_only(c, keys) || !params_int(c, "epoch", false, 0, 100000, &epoch) ||
	    !params_bool(c, "best", &best) || !params_bool(c, "allow_data_change", &allow))
		return;
	if (best && epoch >= 0) {
		call_invalid_parameter(c, "best", "give 'epoch' or 'best', not both");
		return;
	}
	if (split && !json_is_null(split)) {
		const char *s = json_is_string(split) ? json_string_value(split) : "";

		if (strcmp(s, "val") == 0)
			which = EVAL_VAL;
		else if (strcmp(s, "test") == 0)
			which = EVAL_TEST;
		else {
			call_invalid_parameter(c, "split", "'split' must be \"val\" or \"test\"");
			return;
		}
	}
	if (per_class && !json_is_null(per_class) && !json_is_boolean(per_class)) {
		call_invalid_parameter(c, "per_class", "'per_class' must be true or false");
		return;
	}
	if (!(j = params_job(d, c)))
		return;
	if (!(e = bg_task_new(c, sizeof(*e), eval_work, NULL, task_release)))
		return;
	e->d = d;
	e->ref = (struct ckpt_ref){ .id = j->id, .epoch = epoch, .best = best };
	e->split = which;
	e->per_class = json_is_true(per_class);
	e->allow_data_change = allow;
	snprintf(e->recorded, sizeof(e->recorded), "%s", j->dataset_digest);
	e->t.detail = (struct proto_detail){ .has_id = true, .id = j->id, .has_epoch = epoch >= 0,
					     .epoch = epoch, .dataset = e->dataset,
					     .recorded = e->recorded, .current = e->current };
	bg_submit(d->bg, &e->t);
}

/* ---- Export ------------------------------------------------------------ */

struct export_task {
	struct bg_task t;          /* first */
	struct ckpt_ref ref;
	bool pytorch;              /* also the model's PyTorch code */
};

static void export_work(struct bg_task *bt)
{
	struct export_task *x = (struct export_task *)bt;
	struct store_checkpoint ck;
	uint8_t *model = NULL;
	size_t len = 0;
	char hex[SHA256_HEX_LEN + 1];
	char *text = NULL, *code = NULL;
	size_t code_len = 0;
	int rc;

	memset(&ck, 0, sizeof(ck));
	if (methods_checkpoint(bt, &x->ref, &ck) < 0)
		goto out;
	rc = checkpoint_export_from_blob(ck.blob, (size_t)ck.size, &model, &len, &bt->err);
	if (rc < 0) {
		bg_fail(bt, PROTO_FROM_CHECKPOINT, rc);
		goto out;
	}
	sha256_hex(model, len, hex);
	text = base64_encode(model, len);
	if (!text) {
		bg_fail(bt, PROTO_FROM_DAEMON, tr_err_set(&bt->err, -ENOMEM, "out of memory"));
		goto out;
	}
	bt->result = json_pack("{s:I,s:I,s:I,s:s,s:s}", "epoch", (json_int_t)ck.epoch, "step",
			       (json_int_t)ck.step, "size", (json_int_t)len, "sha256", hex, "data", text);
	if (bt->result && x->pytorch) {
		rc = checkpoint_pytorch_from_blob(ck.blob, (size_t)ck.size, &code, &code_len, &bt->err);
		if (rc < 0) {
			json_decref(bt->result);
			bt->result = NULL;
			bg_fail(bt, PROTO_FROM_CHECKPOINT, rc);
			goto out;
		}
		json_object_set_new(bt->result, "pytorch", json_stringn(code, code_len));
	}
out:
	free(code);
	free(text);
	free(model);
	store_checkpoint_clear(&ck);
}

void m_export(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", "epoch", "best", "pytorch", NULL };
	int64_t epoch = -1;
	bool best = false, pytorch = false;
	struct export_task *x;
	struct job *j;

	(void)fds;
	if (!params_only(c, keys) || !params_int(c, "epoch", false, 0, 100000, &epoch) ||
	    !params_bool(c, "best", &best) || !params_bool(c, "pytorch", &pytorch))
		return;
	if (best && epoch >= 0) {
		call_invalid_parameter(c, "best", "give 'epoch' or 'best', not both");
		return;
	}
	if (!(j = params_job(d, c)))
		return;
	if (!(x = bg_task_new(c, sizeof(*x), export_work, NULL, task_release)))
		return;
	x->ref = (struct ckpt_ref){ .id = j->id, .epoch = epoch, .best = best };
	x->pytorch = pytorch;
	x->t.detail = (struct proto_detail){ .has_id = true, .id = j->id, .has_epoch = epoch >= 0,
					     .epoch = epoch };
	bg_submit(d->bg, &x->t);
}

/* ---- Generate ---------------------------------------------------------- */

struct generate_task {
	struct bg_task t;          /* first */
	struct daemon *d;
	struct ckpt_ref ref;
	bool allow_data_change;
	char *prompt;              /* owned (the release frees it) */
	size_t prompt_len;
	struct gen_opts gen;
	char dataset[CFG_NAME_MAX];          /* the checkpoint's */
	char recorded[DSCACHE_DIGEST_MAX];   /* the job's ("": none recorded) */
	char current[DSCACHE_DIGEST_MAX];    /* the files' now */
};

static void generate_release(struct bg_task *t)
{
	free(((struct generate_task *)t)->prompt);
	free(t);
}

/* Text from a job's language model (generate.h): its checkpoint's model,
 * its dataset's vocabulary (checked as Eval checks the dataset). */
static void generate_work(struct bg_task *bt)
{
	struct generate_task *g = (struct generate_task *)bt;
	struct tr_err *err = &bt->err;
	struct store_checkpoint ck;
	struct checkpoint_info info;
	const struct dataset *ds = NULL;
	struct net net;
	bool have_net = false;
	uint32_t *prompt = NULL, *out = NULL, *all = NULL;
	size_t np = 0;
	char *text = NULL, *gen = NULL;
	struct store *s;
	int rc;

	memset(&ck, 0, sizeof(ck));
	if (!g->prompt) {
		bg_fail(bt, PROTO_FROM_DAEMON, tr_err_set(err, -ENOMEM, "out of memory"));
		goto out;
	}
	if (methods_checkpoint(bt, &g->ref, &ck) < 0)
		goto out;
	rc = checkpoint_inspect(ck.blob, (size_t)ck.size, &info, err);
	if (rc < 0) {
		bg_fail(bt, PROTO_FROM_CHECKPOINT, rc);
		goto out;
	}
	snprintf(g->dataset, sizeof(g->dataset), "%s", info.cfg.dataset);
	(void)bg_store(bt, &s, NULL);   /* open: methods_checkpoint used it */
	rc = dscache_digest(g->d->dsc, info.cfg.dataset, s, g->d->sq, g->current, NULL, err);
	if (rc == 0 && g->recorded[0] && strcmp(g->recorded, g->current) != 0 && !g->allow_data_change) {
		dscache_changed_message(err->msg, sizeof(err->msg), info.cfg.dataset, g->ref.id, g->recorded,
					g->current, "generate");
		bg_fail(bt, PROTO_FROM_DATASET, -ESTALE);
		goto out;
	}
	if (rc == 0)
		rc = dscache_get(g->d->dsc, info.cfg.dataset, g->current, &ds, err);
	if (rc < 0) {
		bg_fail(bt, PROTO_FROM_DATASET, rc);
		goto out;
	}
	if (!ds->text) {
		bg_fail(bt, PROTO_FROM_DATASET,
			tr_err_set(err, -EINVAL, "dataset %s is not a text: generate writes text in a text's vocabulary",
				   info.cfg.dataset));
		goto out;
	}
	rc = checkpoint_model_net(ck.blob, (size_t)ck.size, 1, &net, err);
	if (rc < 0) {
		bg_fail(bt, PROTO_FROM_CHECKPOINT, rc);
		goto out;
	}
	have_net = true;
	rc = generate_check(&net, err);
	if (rc == 0 && net.input.vocab != ds->vocab)
		rc = tr_err_set(err, -EINVAL, "the model takes %u tokens; dataset %s's vocabulary has %u now",
				net.input.vocab, info.cfg.dataset, ds->vocab);
	if (rc < 0) {
		tr_err_prefix(err, "job %" PRId64 " cannot generate", g->ref.id);
		bt->detail.parameter = "id";
		bg_fail(bt, PROTO_FROM_FIT, rc);
		goto out;
	}
	rc = dataset_text_encode(ds, g->prompt, g->prompt_len, &prompt, &np, err);
	if (rc == 0 && np == 0)
		rc = tr_err_set(err, -EINVAL, "prompt: give at least one character");
	if (rc < 0) {
		bt->detail.parameter = "prompt";
		bg_fail(bt, PROTO_FROM_FIT, rc);
		goto out;
	}
	out = malloc(g->gen.tokens * sizeof(*out));
	all = malloc((np + g->gen.tokens) * sizeof(*all));
	rc = out && all ? generate_tokens(&net, prompt, np, &g->gen, out, err)
			: tr_err_set(err, -ENOMEM, "out of memory");
	if (rc < 0) {
		bg_fail(bt, PROTO_FROM_DAEMON, rc);
		goto out;
	}
	memcpy(all, prompt, np * sizeof(*all));
	memcpy(all + np, out, g->gen.tokens * sizeof(*all));
	text = dataset_text_decode(ds, all, np + g->gen.tokens);
	gen = dataset_text_decode(ds, out, g->gen.tokens);
	if (!text || !gen) {
		bg_fail(bt, PROTO_FROM_DAEMON, tr_err_set(err, -ENOMEM, "out of memory"));
		goto out;
	}
	bt->result = json_pack("{s:I,s:I,s:s,s:s,s:I,s:I}", "epoch", (json_int_t)ck.epoch, "step",
			       (json_int_t)ck.step, "text", text, "generated", gen, "tokens",
			       (json_int_t)g->gen.tokens, "seed", (json_int_t)g->gen.seed);
out:
	free(text);
	free(gen);
	free(prompt);
	free(out);
	free(all);
	if (have_net)
		net_deinit(&net);
	if (ds)
		dscache_put(g->d->dsc, ds);
	store_checkpoint_clear(&ck);
}

void m_generate(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", "epoch", "best", "prompt", "tokens", "temperature", "top_k",
					    "seed", "allow_data_change", NULL };
	json_t *p = call_params(c), *prompt = json_object_get(p, "prompt");
	json_t *temp = json_object_get(p, "temperature");
	int64_t epoch = -1, tokens = 0, top_k = 0, seed = 1;
	bool best = false, allow = false;
	double t = 1.0;
	struct generate_task *g;
	struct job *j;

	(void)fds;
	if (!params_only(c, keys) || !params_int(c, "epoch", false, 0, 100000, &epoch) ||
	    !params_bool(c, "best", &best) || !params_int(c, "tokens", true, 1, GENERATE_MAX_TOKENS, &tokens) ||
	    !params_int(c, "top_k", false, 0, 1 << 24, &top_k) || !params_int(c, "seed", false, 0, INT64_MAX, &seed) ||
	    !params_bool(c, "allow_data_change", &allow))
		return;
	if (best && epoch >= 0) {
		call_invalid_parameter(c, "best", "give 'epoch' or 'best', not both");
		return;
	}
	if (!json_is_string(prompt) || json_string_length(prompt) == 0 || json_string_length(prompt) > 65536) {
		call_invalid_parameter(c, "prompt", "'prompt' must be a string of 1 to 65536 bytes (the text to continue)");
		return;
	}
	if (temp && !json_is_null(temp)) {
		t = json_is_number(temp) ? json_number_value(temp) : -1.0;
		if (!(t >= 0.0 && t <= 100.0)) {
			call_invalid_parameter(c, "temperature",
					       "'temperature' must be a number in [0, 100] (0: the most likely token)");
			return;
		}
	}
	if (!(j = params_job(d, c)))
		return;
	if (!(g = bg_task_new(c, sizeof(*g), generate_work, NULL, generate_release)))
		return;
	g->prompt_len = json_string_length(prompt);
	g->prompt = malloc(g->prompt_len + 1);
	if (g->prompt)
		memcpy(g->prompt, json_string_value(prompt), g->prompt_len + 1);
	g->d = d;
	g->ref = (struct ckpt_ref){ .id = j->id, .epoch = epoch, .best = best };
	g->allow_data_change = allow;
	g->gen = (struct gen_opts){ .tokens = (uint32_t)tokens, .temperature = t, .top_k = (uint32_t)top_k,
				    .seed = (uint64_t)seed };
	snprintf(g->recorded, sizeof(g->recorded), "%s", j->dataset_digest);
	g->t.detail = (struct proto_detail){ .has_id = true, .id = j->id, .has_epoch = epoch >= 0,
					     .epoch = epoch, .dataset = g->dataset,
					     .recorded = g->recorded, .current = g->current };
	bg_submit(d->bg, &g->t);
}

/* ---- Predict ----------------------------------------------------------- */

struct predict_task {
	struct bg_task t;          /* first */
	struct daemon *d;
	struct ckpt_ref ref;
	int64_t top;               /* classes per image */
	bool resize;               /* scale images to the model's input */
	struct train_config cfg;   /* the job's: its pixels scale as its training did */
	struct call_files files;   /* closed by the release */
	char file[DSIMPORT_NAME_MAX + 1];   /* ImageError, ImageSizeMismatch: which */
	char size[32], expected[32];
};

static void predict_release(struct bg_task *t)
{
	struct predict_task *p = (struct predict_task *)t;

	params_files_close(&p->files);
	free(p);
}

/* All of the regular file fd, from offset 0, at most PREDICT_MAX_FILE bytes. */
static int read_fd(int fd, const char *name, uint8_t **out, size_t *len, struct tr_err *err)
{
	struct stat st;
	uint8_t *buf;
	size_t off = 0;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return tr_err_set(err, -EINVAL, "file %s: not a regular file", name);
	if ((uint64_t)st.st_size > PREDICT_MAX_FILE)
		return tr_err_set(err, -EINVAL, "file %s: %lld bytes, more than %u", name,
				  (long long)st.st_size, PREDICT_MAX_FILE);
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return tr_err_set(err, -ENOMEM, "out of memory");
	while (off < (size_t)st.st_size) {
		ssize_t got = pread(fd, buf + off, (size_t)st.st_size - off, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			free(buf);
			return tr_err_set(err, -EINVAL, "file %s: cannot read it: %s", name,
					  got < 0 ? strerror(errno) : "it shrank");
		}
		off += (size_t)got;
	}
	*out = buf;
	*len = off;
	return 0;
}

static void predict_work(struct bg_task *bt)
{
	struct predict_task *p = (struct predict_task *)bt;
	struct tr_err *err = &bt->err;
	struct store_checkpoint ck;
	struct net net;
	const struct dataset *ds = NULL;   /* the job's: class names, mean/std (a reference) */
	bool have_net = false;
	json_t *preds = NULL;
	uint64_t images = 0;
	enum loss_task task = loss_task_of(p->cfg.loss);
	struct augment aug;            /* the job's: its normalize applies */
	struct augment_data augd;
	struct predict_scaling sc;
	int rc;

	memset(&ck, 0, sizeof(ck));
	if (methods_checkpoint(bt, &p->ref, &ck) < 0)
		goto out;
	rc = checkpoint_model_net(ck.blob, (size_t)ck.size, 256, &net, err);
	if (rc < 0) {
		bg_fail(bt, PROTO_FROM_CHECKPOINT, rc);
		goto out;
	}
	have_net = true;
	if (net.input.seq) {   /* token data (doc/sequences.md) */
		tr_err_set(err, -EINVAL, "job %" PRId64 "'s model takes token ids, not images or rows%s",
			   p->ref.id, net.input.vocab ? " (a language model's text: generate)" : "");
		p->t.detail.parameter = "id";
		bg_fail(bt, PROTO_FROM_FIT, -EINVAL);
		goto out;
	}
	/* Its dataset's class names and normalisation: as its training saw them. */
	rc = dscache_get(p->d->dsc, p->cfg.dataset, NULL, &ds, err);
	if (rc < 0) {
		tr_err_prefix(err, "predict needs job %" PRId64 "'s dataset (its classes and "
			      "normalisation)", p->ref.id);
		bg_fail(bt, PROTO_FROM_DATASET, rc);
		goto out;
	}
	if (augment_parse(&aug, p->cfg.augment, err) < 0) {
		bg_fail(bt, PROTO_FROM_CHECKPOINT, -EINVAL);
		goto out;
	}
	augd = (struct augment_data){ ds->channels, ds->height, ds->width, ds->normalize ? ds->mean : NULL,
				      ds->normalize ? ds->std : NULL };
	sc = (struct predict_scaling){ .torch_scale = p->cfg.rng == RNG_TORCH,
				       .mean = ds->normalize ? ds->mean : NULL,
				       .std = ds->normalize ? ds->std : NULL,
				       .nhwc = ds->layout == DS_NHWC, .channels = ds->channels,
				       .hw = ds->height * ds->width, .aug = &aug, .augd = &augd };
	preds = json_array();
	for (size_t i = 0; i < p->files.n && rc == 0; i++) {
		const char *name = p->files.names[i];
		struct predict_images im = { 0 };
		uint8_t *buf = NULL;
		double *probs = NULL;
		size_t len = 0, nl = strlen(name);
		bool rows = nl > 4 && strcmp(name + nl - 4, ".csv") == 0;

		snprintf(p->file, sizeof(p->file), "%s", name);
		rc = read_fd(p->files.fds[i], name, &buf, &len, err);
		if (rc == 0 && !rows && net.input.c != 1) {
			rc = tr_err_set(err, -EINVAL, "file %s: the model takes %u channels; predict reads "
					"grey images (or its dataset's rows from a .csv file)", name, net.input.c);
		} else if (rc == 0 && rows) {
			rc = predict_decode_rows(buf, len, name, (uint32_t)net.in_size, ds->dtype == DS_F32, &im,
						 err);
		} else if (rc == 0) {
			rc = predict_decode(buf, len, name, &im, err);
		}
		free(buf);
		if (rc == 0 && (images += im.count) > PREDICT_MAX_IMAGES)
			rc = tr_err_set(err, -EINVAL, "more than %u images in one call", PREDICT_MAX_IMAGES);
		if (rc < 0) {
			bg_fail(bt, PROTO_FROM_IMAGE, rc);
			predict_images_free(&im);
			break;
		}
		snprintf(p->size, sizeof(p->size), "%ux%u", im.w, im.h);
		snprintf(p->expected, sizeof(p->expected), "%ux%u", net.input.w, net.input.h);
		rc = rows ? 0 : predict_fit(&im, net.input.h, net.input.w, p->resize, name, err);
		if (rc == 0)
			rc = predict_run(&net, &im, &sc, task, &probs, err);
		if (rc < 0) {
			bg_fail(bt, PROTO_FROM_IMAGE, rc);
			predict_images_free(&im);
			break;
		}
		for (uint32_t k = 0; k < im.count; k++) {
			const double *pr = probs + (size_t)k * net.classes;
			bool used[DATASET_MAX_CLASSES] = { false };
			char num[16];
			json_t *top;
			int best = 0;

			if (task != TASK_CLASSIFICATION) {
				/* regression: the outputs; multi-label: each label's probability
				 * and the labels above 0.5 */
				json_t *vals = json_array(), *labels = json_array(), *o;

				for (uint32_t c = 0; c < net.classes; c++) {
					json_array_append_new(vals, json_real(pr[c]));
					if (task == TASK_MULTILABEL && pr[c] > 0.5)
						json_array_append_new(labels, json_integer(c));
				}
				o = json_pack("{s:s,s:I,s:o}", "file", name, "index", (json_int_t)k, "values", vals);
				if (o && task == TASK_MULTILABEL)
					json_object_set_new(o, "labels", labels);
				else
					json_decref(labels);
				json_array_append_new(preds, o);
				continue;
			}
			top = json_array();

			for (int64_t t = 0; t < p->top && t < (int64_t)net.classes; t++) {
				int m = -1;

				for (uint32_t c = 0; c < net.classes; c++)
					if (!used[c] && (m < 0 || pr[c] > pr[m]))
						m = (int)c;
				used[m] = true;
				if (t == 0)
					best = m;
				json_array_append_new(top, json_pack("{s:i,s:s,s:f}", "class", m, "name",
								     dataset_class_name(ds, (uint32_t)m, num),
								     "prob", pr[m]));
			}
			json_array_append_new(preds, json_pack("{s:s,s:I,s:i,s:s,s:f,s:o}", "file", name,
							       "index", (json_int_t)k, "class", best, "name",
							       dataset_class_name(ds, (uint32_t)best, num),
							       "prob", pr[best], "top", top));
		}
		free(probs);
		predict_images_free(&im);
	}
	if (rc == 0 && bt->rc == 0) {
		bt->result = json_pack("{s:I,s:I,s:O}", "epoch", (json_int_t)ck.epoch, "step",
				       (json_int_t)ck.step, "predictions", preds);
	}
out:
	json_decref(preds);
	if (ds)
		dscache_put(p->d->dsc, ds);
	if (have_net)
		net_deinit(&net);
	store_checkpoint_clear(&ck);
}

void m_predict(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { "id", "epoch", "best", "files", "top", "resize", NULL };
	json_t *files = json_object_get(call_params(c), "files"), *f;
	int64_t epoch = -1, top = 3;
	bool resize = false, best = false;
	struct predict_task *p;
	size_t nfiles, i;
	struct job *j;

	if (!params_only(c, keys) || !params_int(c, "epoch", false, 0, 100000, &epoch) ||
	    !params_int(c, "top", false, 1, DATASET_MAX_CLASSES, &top) || !params_bool(c, "resize", &resize) ||
	    !params_bool(c, "best", &best))
		return;
	if (best && epoch >= 0) {
		call_invalid_parameter(c, "best", "give 'epoch' or 'best', not both");
		return;
	}
	if (!params_files_count(c, files, &nfiles))
		return;
	json_array_foreach(files, i, f) {
		json_t *fn = json_object_get(f, "name");
		const char *n = json_is_string(fn) ? json_string_value(fn) : NULL;

		if (!json_is_object(f) || !n || !dsimport_file_name_ok(n) || strlen(n) != json_string_length(fn)) {
			call_invalid_parameter(c, "files", "files[%zu] must be {\"name\": a base name of 1 to %d bytes "
					       "(no '/', not starting with '.', no control characters)}", i,
					       DSIMPORT_NAME_MAX);
			return;
		}
	}
	if (!params_enough_fds(c, nfiles, fds) || !(j = params_job(d, c)))
		return;
	if (!(p = bg_task_new(c, sizeof(*p), predict_work, NULL, predict_release)))
		return;
	p->d = d;
	p->ref = (struct ckpt_ref){ .id = j->id, .epoch = epoch, .best = best };
	p->top = top;
	p->resize = resize;
	p->cfg = j->cfg;   /* its pixels scale as the job's training did */
	params_take_files(files, fds, &p->files);
	p->t.detail = (struct proto_detail){ .has_id = true, .id = j->id, .has_epoch = epoch >= 0,
					     .epoch = epoch, .dataset = p->cfg.dataset, .file = p->file,
					     .size_text = p->size, .expected = p->expected };
	bg_submit(d->bg, &p->t);   /* the files are closed whatever happens */
}
