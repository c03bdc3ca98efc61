/*
 * trainer.c - the training loop. See include/traind/trainer.h.
 *
 * Data path, as the lesson's DataLoaders: the training file's images are
 * split once by a permutation drawn from split_seed (first n - val_size train,
 * rest validation, as torch.utils.data.random_split); each epoch shuffles the
 * training part with the job's RNG (RandomSampler) and walks it in batches of
 * batch_size, the last one partial (drop_last=False); validation and test go in
 * order in batches of eval_batch_size. Pixels become float (x/255) only when a
 * batch is gathered: one-channel uint8 images without normalisation (IDX
 * MNIST and the same bytes in any format) by k_gather, everything else
 * (float32, NHWC, mean/std) by k_gather_images; see gather_rows().
 *
 * The shape of the input and the number of classes come from the dataset.
 *
 * The loss (loss.h) sits on the net's outputs: the batch's targets (classes
 * or float values) are gathered beside its images, loss_batch gives the
 * gradient at the outputs, and the metrics follow the loss's task
 * (count_outputs): accuracy and macro accuracy for classification,
 * per-label accuracy for multi-label, MAE and RMSE for regression (on
 * validation and test; a regression's training row has its loss alone).
 * Augmentation (augment.h) runs where a batch is gathered, on each team
 * member's own rows: every transform on training batches, normalize also on
 * the others.
 *
 * Whose random numbers (config rng): xoshiro, traind's own stream; or torch,
 * the draws the lesson's PyTorch program makes, in its order:
 *   torch.manual_seed(seed); the model's reset_parameters (net_init_params_torch)
 *   random_split(60000, generator=Generator().manual_seed(split_seed)): randperm
 *   each epoch: iter(train_dl) draws an int64 (the iterator's base seed), its
 *     RandomSampler an int64 that seeds a Generator of its own, then randperm(n)
 *     from that; iter(val_dl) draws one int64
 * and plain uint8 pixels x * (float)(1/255) as v2.ToDtype(float32, scale=True). The test
 * loader's draw is not made: evaluating the test set never changes a job's
 * stream, so a job evaluated and then continued equals one never evaluated.
 */
#include "traind/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/clock.h"
#include "traind/kernels.h"
#include "traind/portable.h"
#include "traind/sha256.h"
#include "engine/train/trainer-sched.h"

/* ---- the job's random draws, by config rng (see the top) ---------------- */

/* The train/val split, from split_seed alone; a text's is by position
 * (its windows in order: training, then validation at its end). */
static void draw_split(struct trainer *t)
{
	if (t->ds->text) {
		for (uint32_t i = 0; i < t->n_split; i++)
			t->split[i] = i;
		return;
	}
	if (t->cfg.rng == RNG_TORCH) {
		struct mt19937 g;

		mt_seed(&g, t->cfg.split_seed);
		mt_randperm(&g, t->split, t->n_split);
		return;
	}
	{
		struct rng split_rng;

		rng_seed(&split_rng, t->cfg.split_seed);
		for (uint32_t i = 0; i < t->n_split; i++)
			t->split[i] = i;
		rng_shuffle_u32(&split_rng, t->split, t->n_split);
	}
}

/* Seed the job's stream and draw the initial weights. */
static void draw_init(struct trainer *t)
{
	if (t->cfg.rng == RNG_TORCH) {
		mt_seed(&t->mt, t->cfg.seed);
		net_init_params_torch(&t->model, &t->mt);
		return;
	}
	rng_seed(&t->rng, t->cfg.seed);
	net_init_params(&t->model, &t->rng);
}

/* The next epoch's order of the training part. */
static void draw_order(struct trainer *t)
{
	if (t->cfg.rng == RNG_TORCH) {
		struct mt19937 g;

		(void)mt_random_i64(&t->mt);              /* the loader iterator's _base_seed */
		mt_seed(&g, mt_random_i64(&t->mt));       /* RandomSampler's own Generator */
		mt_randperm(&g, t->order, t->n_train);
		return;
	}
	for (uint32_t i = 0; i < t->n_train; i++)
		t->order[i] = i;
	rng_shuffle_u32(&t->rng, t->order, t->n_train);
}

/* After an epoch's validation: iter(val_dl)'s base seed (torch only). */
static void draw_val_loader(struct trainer *t)
{
	if (t->cfg.rng == RNG_TORCH)
		(void)mt_random_i64(&t->mt);
}

int trainer_model_spec(const struct train_config *cfg, uint32_t classes, struct model_spec *spec,
		       struct tr_err *err)
{
	if (!cfg->model[0]) {
		spec_mlp(spec, cfg->hidden, cfg->n_hidden, classes);
		return 0;
	}
	return spec_parse(spec, cfg->model, cfg->hidden, cfg->n_hidden, classes, err);
}

struct shape trainer_input_shape(const struct dataset *ds)
{
	struct shape in = { .c = ds->channels ? ds->channels : 1, .h = ds->train.rows,
			    .w = ds->train.cols, .flat = false };

	if (ds->tokens) {
		in.c = 1;
		in.w = 1;
		in.h = ds->seq_len;
		in.seq = true;
		in.vocab = ds->vocab;
	}
	return in;
}

struct shape trainer_data_shape(const struct train_config *cfg, const struct dataset *ds)
{
	struct shape in = trainer_input_shape(ds);

	if (ds->text)
		in.h = cfg->context;
	return in;
}

/* A text of n training tokens in windows of T with val windows at its end:
 * those start at *cut = n - 1 - val T (the last one's last target is the
 * last token), the training windows at 0, T, ... while their last target
 * is before the cut (no window straddles it). False when they do not fit. */
static bool text_layout(uint64_t n, uint32_t T, uint32_t val, uint32_t *part, uint64_t *cut)
{
	uint64_t need = (uint64_t)val * T + 1, p;

	*part = 0;
	*cut = 0;
	if (T == 0 || n < need + T + 1)
		return false;
	*cut = n - need;
	p = (*cut - 1) / T;
	*part = p > UINT32_MAX - val ? UINT32_MAX - val : (uint32_t)p;
	return *part > 0;
}

static uint32_t text_samples(const struct train_config *cfg, uint64_t n)
{
	uint32_t part;
	uint64_t cut;

	return text_layout(n, cfg->context, cfg->val_size, &part, &cut) ? part + cfg->val_size : 0;
}

uint32_t trainer_split_samples(const struct train_config *cfg, const struct dataset *ds)
{
	return ds->text ? text_samples(cfg, ds->train.ntokens) : ds->train.count;
}

struct shape trainer_probe_shape(const struct train_config *cfg, const struct dataset_shape *sh)
{
	struct shape in = { .c = sh->channels, .h = sh->height, .w = sh->width, .flat = false };

	if (sh->tokens) {
		in.c = in.w = 1;
		in.h = sh->text ? cfg->context : sh->seq_len;
		in.seq = true;
		in.vocab = sh->vocab;
	}
	return in;
}

uint32_t trainer_probe_samples(const struct train_config *cfg, const struct dataset_shape *sh)
{
	return sh->text ? text_samples(cfg, sh->train_tokens) : sh->train_count;
}

enum loss_task trainer_task(const struct train_config *cfg, const struct dataset *ds)
{
	if (ds->target == DS_TARGET_TOKENS && cfg->loss == LOSS_CROSS_ENTROPY)
		return TASK_TOKENS;
	return loss_task_of(cfg->loss);
}

uint64_t trainer_count_params(const struct train_config *cfg, struct shape in, uint32_t classes)
{
	struct model_spec spec;
	uint64_t params = 0;

	if (trainer_model_spec(cfg, classes, &spec, NULL) < 0 ||
	    spec_shapes(&spec, in, classes, NULL, &params, NULL) < 0)
		return 0;
	return params;
}

int trainer_check_model(const struct train_config *cfg, const struct dataset *ds,
			struct model_spec *spec, uint64_t *params_out, struct tr_err *err)
{
	/* The MLP's messages keep naming "hidden", the key that built it. */
	const char *key = cfg->model[0] ? "model" : "hidden";
	struct shape shapes[SPEC_MAX_LAYERS];
	uint32_t count = trainer_split_samples(cfg, ds);
	uint32_t n_train = cfg->train_size ? cfg->train_size : count - cfg->val_size;
	uint32_t max_batch = cfg->batch_size > cfg->eval_batch_size ? cfg->batch_size : cfg->eval_batch_size;
	uint64_t params = 0, floats;
	uint32_t shard = cfg->batch_size / (config_shards(cfg) ? config_shards(cfg) : 1);
	int rc;

	rc = trainer_model_spec(cfg, dataset_outputs(ds), spec, err);
	if (rc < 0)
		return rc;
	if (ds->target == DS_TARGET_TOKENS) {
		/* a class per position: a sequence of the vocabulary's scores */
		struct shape s;
		char where[512];
		int32_t top = -1;

		rc = spec_shapes(spec, trainer_data_shape(cfg, ds), ds->classes, shapes, &params, err);
		for (uint32_t i = 0; i < spec->n; i++)
			if (spec->layers[i].parent < 0)
				top = (int32_t)i;
		s = shapes[top];
		spec_where(spec, (uint32_t)top, where, sizeof(where));
		if (rc == 0 && !s.seq)
			rc = tr_err_set(err, -EINVAL,
					"model: %s: the model gives %u outputs per sample; dataset '%s' has a class (token) per position: the model must give %u scores at each of its %u positions (end with linear(%u) on the sequence, no last or flatten)",
					where, s.c * s.h * s.w, cfg->dataset, ds->classes, s.h ? trainer_data_shape(cfg, ds).h : 0,
					ds->classes);
	} else if (ds->target == DS_TARGET_CLASS) {
		rc = spec_shapes(spec, trainer_data_shape(cfg, ds), ds->classes, shapes, &params, err);
	} else {
		/* Float targets: the message speaks of targets, not classes. */
		struct shape s;
		char name[96];

		rc = spec_shapes(spec, trainer_data_shape(cfg, ds), 0, shapes, &params, err);
		s = shapes[spec->n - 1];
		spec_layer_text(&spec->layers[spec->n - 1], name, sizeof(name));
		if (rc == 0 && (!s.flat || s.c != ds->target_width))
			rc = tr_err_set(err, -EINVAL,
					"model: layer %u %s: the model's output is %s%u wide, the targets %u (dataset '%s' has %s, %u per sample); end the model with linear(%u)",
					spec->n, name, s.flat ? "" : "an image, not flat, ", s.c * s.h * s.w,
					ds->target_width, cfg->dataset, dataset_target_text(ds),
					ds->target_width, ds->target_width);
	}
	if (rc < 0)
		return rc;
	/* A daemon must not be talked into allocating tens of GB: cap the
	 * model (parameters, gradients and two moments are 16 bytes each) and
	 * its activations. */
	if (params > TRAINER_MAX_PARAMS)
		return tr_err_set(err, -EINVAL,
				  "%s: the model would have %llu parameters; at most %llu are allowed",
				  key, (unsigned long long)params, (unsigned long long)TRAINER_MAX_PARAMS);
	if (config_shards(cfg) > 1 && params * config_shards(cfg) > TRAINER_MAX_ACTIVATIONS)
		return tr_err_set_key(err, -EINVAL, "shards",
				      "%u shards of the model's %llu gradients would take %llu MiB; at most %llu MiB are allowed",
				      config_shards(cfg), (unsigned long long)params,
				      (unsigned long long)(params * config_shards(cfg) * 4 >> 20),
				      (unsigned long long)(TRAINER_MAX_ACTIVATIONS * 4 >> 20));
	for (uint32_t i = 0; i < spec->n; i++) {
		struct shape in = spec_input_shape(spec, shapes, trainer_data_shape(cfg, ds), i);

		/* A shard (the batch itself with shards 1) of one sample. */
		if (spec_is_batchnorm(spec->layers[i].kind) && in.h * in.w == 1 &&
		    (shard == 1 || n_train % cfg->batch_size % shard == 1)) {
			char name[512];

			spec_where(spec, i, name, sizeof(name));
			if (config_shards(cfg) > 1)
				return tr_err_set(err, -EINVAL,
						  "model: %s: a training shard of one sample has no batch statistics (batch_size %u in %u shards, %u training images); change batch_size, shards or train_size",
						  name, cfg->batch_size, config_shards(cfg), n_train);
			return tr_err_set(err, -EINVAL,
					  "model: %s: a training batch of one sample has no batch statistics (batch_size %u, %u training images: the last batch has 1); change batch_size or train_size",
					  name, cfg->batch_size, n_train);
		}
	}
	/* What net_init will allocate: activations, the gradient pool, the
	 * team's convolution scratch. */
	rc = net_floats_kernels(spec, trainer_data_shape(cfg, ds), max_batch, cfg->threads, cfg->kernels,
				&floats);
	if (rc < 0)
		return tr_err_set(err, rc, rc == -ENOMEM ? "out of memory" : "%s: the model does not fit the data", key);
	if (floats > TRAINER_MAX_ACTIVATIONS)
		return tr_err_set(err, -EINVAL,
				  "%s: the model's activations for batches of %u would take %llu MiB; at most %llu MiB are allowed (a smaller batch_size or eval_batch_size helps)",
				  key, max_batch, (unsigned long long)(floats * 4 >> 20),
				  (unsigned long long)(TRAINER_MAX_ACTIVATIONS * 4 >> 20));
	if (params_out)
		*params_out = params;
	return 0;
}

/* The loss's task against the dataset's targets, the weights' counts, the
 * augmentation against the images. */
static int check_task(const struct train_config *cfg, const struct dataset *ds, struct tr_err *err)
{
	enum loss_task task = loss_task_of(cfg->loss);
	const char *name = cfg->dataset, *loss = loss_name(cfg->loss);
	struct augment a;   /* 4 KiB; parsing allocates nothing */
	struct augment_data d = { ds->channels, ds->height, ds->width, ds->normalize ? ds->mean : NULL,
				  ds->normalize ? ds->std : NULL };
	int rc;

	if (ds->tokens) {
		if (task != TASK_CLASSIFICATION)
			return tr_err_set_key(err, -EINVAL, "loss",
					      "%s needs float targets; dataset '%s' has %s: use loss cross_entropy",
					      loss, name, ds->target == DS_TARGET_TOKENS ? "a class (token) per position"
											: "a class per sequence");
		if (cfg->augment[0])
			return tr_err_set_key(err, -EINVAL, "augment",
					      "dataset '%s' is token data: augmentation transforms images", name);
		if (cfg->n_class_weights && cfg->n_class_weights != ds->classes)
			return tr_err_set_key(err, -EINVAL, "class_weights",
					      "%u values, but dataset '%s' has %u classes (one weight per class)",
					      cfg->n_class_weights, name, ds->classes);
		if (ds->target == DS_TARGET_TOKENS && cfg->monitor == MONITOR_VAL_MACRO_ACC)
			return tr_err_set_key(err, -EINVAL, "monitor",
					      "val_macro_acc is not a metric of per-token learning: monitor val_loss or val_acc");
		return 0;
	}
	if (cfg->context)
		return tr_err_set_key(err, -EINVAL, "context",
				      "dataset '%s' is not token data (context is a text's tokens per sample)", name);
	if (task != TASK_CLASSIFICATION && ds->target == DS_TARGET_CLASS)
		return tr_err_set_key(err, -EINVAL, "loss",
				      "%s needs %s targets; dataset '%s' has classes (%u): use loss cross_entropy",
				      loss, task == TASK_MULTILABEL ? "0/1" : "float", name, ds->classes);
	if (task == TASK_CLASSIFICATION && ds->target == DS_TARGET_VALUES)
		return tr_err_set_key(err, -EINVAL, "loss",
				      "cross_entropy needs class labels; dataset '%s' has %s (%u per sample): use loss mse, l1 or huber%s",
				      name, dataset_target_text(ds), ds->target_width,
				      ds->targets_binary ? ", or bce_with_logits for multi-label" : "");
	if (task == TASK_MULTILABEL && !ds->targets_binary)
		return tr_err_set_key(err, -EINVAL, "loss",
				      "bce_with_logits needs 0/1 targets; dataset '%s' has other values (float targets): use loss mse, l1 or huber",
				      name);
	if (task == TASK_MULTILABEL && ds->target_width > DATASET_MAX_CLASSES)
		return tr_err_set_key(err, -EINVAL, "loss",
				      "dataset '%s' has %u labels per sample; bce_with_logits takes at most %d",
				      name, ds->target_width, DATASET_MAX_CLASSES);
	if (cfg->n_class_weights && cfg->n_class_weights != ds->classes)
		return tr_err_set_key(err, -EINVAL, "class_weights",
				      "%u values, but dataset '%s' has %u classes (one weight per class)",
				      cfg->n_class_weights, name, ds->classes);
	if (cfg->n_pos_weight && cfg->n_pos_weight != ds->target_width)
		return tr_err_set_key(err, -EINVAL, "pos_weight",
				      "%u values, but dataset '%s' has %u labels per sample (one weight per label)",
				      cfg->n_pos_weight, name, ds->target_width);
	rc = augment_parse(&a, cfg->augment, err);
	return rc < 0 ? rc : augment_check(&a, &d, err);
}

/* What of a kernels=portable job does not run on the portable kernels
 * (doc/portable.md, "What runs portably"): its description, or NULL when
 * all of it does. Every layer kind of the model language is covered but
 * those listed here as they come (a kind the portable kernels do not know
 * is refused by the default branch, naming it); every loss, clipping, the
 * schedules, the optimizers and augmentation are. */
static const char *portable_gap(const struct train_config *cfg, const struct model_spec *spec,
				char *buf, size_t len)
{
	(void)cfg;
	for (uint32_t i = 0; i < spec->n; i++) {
		char name[96];

		switch (spec->layers[i].kind) {
		case LAYER_LINEAR:
		case LAYER_CONV2D:
		case LAYER_FLATTEN:
		case LAYER_IDENTITY:
		case LAYER_RELU:
		case LAYER_LEAKYRELU:
		case LAYER_TANH:
		case LAYER_SIGMOID:
		case LAYER_SILU:
		case LAYER_GELU:
		case LAYER_SOFTPLUS:
		case LAYER_DROPOUT:
		case LAYER_MAXPOOL2D:
		case LAYER_AVGPOOL2D:
		case LAYER_ADAPTIVEAVGPOOL2D:
		case LAYER_UPSAMPLE:
		case LAYER_BATCHNORM1D:
		case LAYER_BATCHNORM2D:
		case LAYER_RESIDUAL:
		case LAYER_CONCAT:
		case LAYER_EMBEDDING:
		case LAYER_POSEMBEDDING:
		case LAYER_LSTM:
		case LAYER_GRU:
		case LAYER_LAST:
		case LAYER_LAYERNORM:
		case LAYER_MHA:
		case LAYER_TRANSFORMER:
			continue;
		default:
			spec_layer_text(&spec->layers[i], name, sizeof(name));
			snprintf(buf, len, "layer %u %s", i + 1, name);
			return buf;
		}
	}
	return NULL;
}

/* A portable job: the path TRAIND_ISA asks for runs here, and the model and
 * training use only what the portable kernels cover. */
static int check_portable(const struct train_config *cfg, const struct model_spec *spec,
			  struct tr_err *err)
{
	char what[128];
	const char *gap;

	if (cfg->kernels != KERNELS_PORTABLE)
		return 0;
	if (pk_init(err) < 0) {
		tr_err_prefix(err, "kernels");
		return tr_err_key(err, "kernels");
	}
	gap = portable_gap(cfg, spec, what, sizeof(what));
	if (gap)
		return tr_err_set_key(err, -EINVAL, "kernels",
				      "portable is not yet supported for %s (use kernels openblas)",
				      gap);
	return 0;
}

int trainer_check_config(const struct train_config *cfg, const struct dataset *ds,
			 struct tr_err *err)
{
	struct model_spec spec;
	int rc;

	rc = config_validate(cfg, err);
	if (rc == 0)
		rc = k_precision_check(cfg->precision, err);   /* bf16: what the CPU lacks */
	if (rc < 0)
		return rc;
	if (ds->text) {
		uint64_t n = ds->train.ntokens;
		uint32_t part;
		uint64_t cut;

		if (cfg->context == 0)
			return tr_err_set_key(err, -EINVAL, "context",
					      "dataset '%s' is a text: give the tokens of a sample (e.g. --context 128)",
					      cfg->dataset);
		if (cfg->context >= n)
			return tr_err_set_key(err, -EINVAL, "context",
					      "%u tokens is longer than the text's training part (%llu tokens of dataset '%s')",
					      cfg->context, (unsigned long long)n, cfg->dataset);
		if (!text_layout(n, cfg->context, cfg->val_size, &part, &cut))
			return tr_err_set_key(err, -EINVAL, "val_size",
					      "%u windows of %u tokens leave no training window: the text's training part has %llu tokens (dataset '%s'); give fewer (--val-size) or a shorter context",
					      cfg->val_size, cfg->context, (unsigned long long)n, cfg->dataset);
	} else if (ds->tokens && cfg->context && cfg->context != ds->seq_len) {
		return tr_err_set_key(err, -EINVAL, "context",
				      "dataset '%s' has sequences of %u tokens: leave context out or give %u",
				      cfg->dataset, ds->seq_len, ds->seq_len);
	}
	if (cfg->val_size >= trainer_split_samples(cfg, ds))
		return tr_err_set_key(err, -EINVAL, "val_size",
				  "%u leaves no training images (the training file has %u)",
				  cfg->val_size, trainer_split_samples(cfg, ds));
	if (cfg->train_size > trainer_split_samples(cfg, ds) - cfg->val_size)
		return tr_err_set_key(err, -EINVAL, "train_size",
				  "%u is more than the %u %s of the split's training part",
				  cfg->train_size, trainer_split_samples(cfg, ds) - cfg->val_size,
				  ds->text ? "windows" : "images");
	{
		uint32_t n_train = cfg->train_size ? cfg->train_size
						   : trainer_split_samples(cfg, ds) - cfg->val_size;

		if (cfg->batch_size > n_train)
			return tr_err_set_key(err, -EINVAL, "batch_size",
					  "%u is larger than the %u training %s",
					  cfg->batch_size, n_train, ds->text ? "windows" : ds->tokens ? "sequences"
										     : "images");
	}
	if (ds->train.rows != ds->test.rows || ds->train.cols != ds->test.cols ||
	    ds->train.channels != ds->test.channels)
		return tr_err_set(err, -EINVAL, "dataset: train and test images differ in size");
	if ((ds->target == DS_TARGET_CLASS && (ds->classes < 1 || ds->classes > DATASET_MAX_CLASSES)) ||
	    (ds->target == DS_TARGET_TOKENS && (ds->classes < 1 || ds->classes > DATASET_MAX_VOCAB)) ||
	    ds->channels < 1)
		return tr_err_set(err, -EINVAL, "dataset: %u classes, %u channels", ds->classes,
				  ds->channels);
	rc = check_task(cfg, ds, err);
	if (rc < 0)
		return rc;
	rc = trainer_check_model(cfg, ds, &spec, NULL, err);
	if (rc < 0)
		return tr_err_key(err, cfg->model[0] ? "model" : "hidden");
	return check_portable(cfg, &spec, err);
}

static size_t shard_grads_off(const struct trainer *t);

int trainer_new(struct trainer **out, const struct train_config *cfg, const struct dataset *ds,
		struct tr_err *err)
{
	struct trainer *t;
	struct model_spec spec;
	uint32_t max_batch;
	int rc;

	kernels_global_init();
	rc = trainer_check_config(cfg, ds, err);
	if (rc == 0)
		rc = trainer_model_spec(cfg, dataset_outputs(ds), &spec, err);
	if (rc < 0)
		return rc;
	t = calloc(1, sizeof(*t));
	if (!t)
		return tr_err_set(err, -ENOMEM, "out of memory");
	t->cfg = *cfg;
	t->ds = ds;
	t->n_split = trainer_split_samples(cfg, ds);
	if (ds->text)
		text_layout(ds->train.ntokens, cfg->context, cfg->val_size, &t->text_part, &t->text_cut);
	t->context = ds->tokens ? trainer_data_shape(cfg, ds).h : 0;
	t->n_val = cfg->val_size;
	t->n_train_part = t->n_split - t->n_val;
	t->n_train = cfg->train_size ? cfg->train_size : t->n_train_part;
	t->steps_per_epoch = (t->n_train + cfg->batch_size - 1) / cfg->batch_size;
	max_batch = cfg->batch_size > cfg->eval_batch_size ? cfg->batch_size : cfg->eval_batch_size;

	rc = team_new(&t->team, cfg->threads);
	if (rc < 0) {
		tr_err_set(err, rc, "cannot start %u training threads", cfg->threads);
		goto fail;
	}
	rc = net_init(&t->model, &spec, trainer_data_shape(cfg, ds), dataset_outputs(ds), max_batch, t->team);
	if (rc == 0)
		rc = net_set_precision(&t->model, cfg->precision);
	if (rc < 0)
		goto fail_nomem;
	t->task = trainer_task(cfg, ds);
	t->width = dataset_outputs(ds);
	t->positions = t->task == TASK_TOKENS ? t->context : 1;
	t->loss = (struct loss){
		.kind = cfg->loss,
		.width = t->width,
		.label_smoothing = (float)cfg->label_smoothing,
		.class_weights = cfg->n_class_weights ? t->cfg.class_weights : NULL,
		.delta = (float)cfg->huber_delta,
		.pos_weight = cfg->n_pos_weight ? t->cfg.pos_weight : NULL,
		.kernels = cfg->kernels,
	};
	if (augment_parse(&t->aug, cfg->augment, err) < 0) {   /* checked: cannot fail */
		rc = -EINVAL;
		goto fail;
	}
	t->augd = (struct augment_data){ ds->channels, ds->height, ds->width,
					 ds->normalize ? ds->mean : NULL, ds->normalize ? ds->std : NULL };
	rc = optim_init(&t->opt, cfg, t->model.nparams);
	if (rc < 0)
		goto fail_nomem;
	t->split = malloc((size_t)t->n_split * sizeof(*t->split));
	t->order = malloc((size_t)t->n_train * sizeof(*t->order));
	t->batch_idx = malloc((size_t)max_batch * sizeof(*t->batch_idx));
	t->classes = malloc((size_t)max_batch * t->positions * sizeof(*t->classes));
	t->values = ds->target == DS_TARGET_VALUES ? malloc((size_t)max_batch * t->width * sizeof(float)) : NULL;
	t->history = calloc(cfg->epochs, sizeof(*t->history));
	rc = -ENOMEM;
	if (!t->split || !t->order || !t->batch_idx || !t->classes || !t->history ||
	    (ds->target == DS_TARGET_VALUES && !t->values))
		goto fail_nomem;
	if (config_shards(cfg) > 1) {
		t->shard_block = shard_grads_off(t) + t->model.nparams * sizeof(float) +
				 t->model.nbuffers * sizeof(float) + t->model.ncounts * sizeof(int64_t);
		t->shard_buf = malloc((config_shards(cfg) + 1) * t->shard_block);
		t->out = malloc((size_t)cfg->batch_size * t->positions * t->width * sizeof(float));
		if (!t->shard_buf || !t->out)
			goto fail_nomem;
	}

	/* The split has its own generator, so it never depends on the model seed. */
	draw_split(t);
	t->model.dropout_key = cfg->seed;
	t->model.seq_kernels = cfg->seq_kernels;
	if (net_set_kernels(&t->model, cfg->kernels) < 0)
		goto fail_nomem;
	rc = net_set_conv(&t->model, cfg->conv, err);
	if (rc < 0)
		goto fail;
	draw_init(t);
	if (cfg->kernels == KERNELS_PORTABLE)
		pk_describe(t->numerics, sizeof(t->numerics));
	else
		k_precision_numerics(cfg->precision, t->numerics, sizeof(t->numerics));
	if (cfg->conv == CONV_ONEDNN) {   /* the convolutions' library and ISA decide their bits too */
		size_t at = strlen(t->numerics);

		snprintf(t->numerics + at, sizeof(t->numerics) - at, " + ");
		at = strlen(t->numerics);
		net_conv_numerics(t->numerics + at, sizeof(t->numerics) - at);
	}
	trainsched_init(t);
	draw_order(t);
	*out = t;
	return 0;
fail_nomem:
	tr_err_set(err, -ENOMEM, "out of memory allocating the model and its buffers");
fail:
	trainer_free(t);
	return rc;
}

void trainer_free(struct trainer *t)
{
	if (!t)
		return;
	net_deinit(&t->model);
	optim_deinit(&t->opt);
	team_free(t->team);
	free(t->split);
	free(t->order);
	free(t->batch_idx);
	free(t->classes);
	free(t->values);
	free(t->out);
	free(t->history);
	free(t->shard_buf);
	free(t);
}

bool trainer_epoch_done(const struct trainer *t)
{
	return t->step >= t->steps_per_epoch;
}

bool trainer_finished(const struct trainer *t)
{
	return t->epoch >= t->cfg.epochs || t->sched.stopped;
}

uint64_t trainer_epoch_samples(const struct trainer *t)
{
	return t->n_train;
}

uint64_t trainer_samples_done(const struct trainer *t)
{
	uint64_t done = (uint64_t)t->step * t->cfg.batch_size;

	return done < t->n_train ? done : t->n_train;
}

/* Count n samples' outputs out (n, width) against their targets into s:
 * classification by the first maximum (as k_softmax_xent's argmax);
 * multi-label by output > 0 (sigmoid > 0.5) against target 1; regression
 * its samples, and with `errors` the sums of its errors. */
static void count_outputs(const struct trainer *t, struct metric_sums *s, const float *out,
			  const uint32_t *classes, const float *values, size_t n, bool errors)
{
	uint32_t w = t->width;

	if (t->task == TASK_TOKENS) {
		for (size_t i = 0; i < n * t->positions; i++) {
			const float *z = out + i * w;
			float mx = z[0];
			uint32_t arg = 0;

			for (uint32_t j = 1; j < w; j++)
				if (z[j] > mx) {
					mx = z[j];
					arg = j;
				}
			s->tokens_correct += arg == classes[i];
		}
		s->tokens += n * t->positions;
		s->total[0] += n;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const float *z = out + i * w;

		if (t->task == TASK_CLASSIFICATION) {
			float mx = z[0];
			uint32_t arg = 0, y = classes[i];

			for (uint32_t j = 1; j < w; j++)
				if (z[j] > mx) {
					mx = z[j];
					arg = j;
				}
			s->total[y]++;
			s->predicted[arg]++;
			if (arg == y)
				s->correct[y]++;
		} else if (t->task == TASK_MULTILABEL) {
			for (uint32_t c = 0; c < w; c++) {
				bool pos = z[c] > 0.0f, truth = values[i * w + c] >= 0.5f;

				s->total[c]++;
				s->predicted[c] += pos;
				s->correct[c] += pos == truth;
			}
		} else {
			s->total[0]++;
			for (uint32_t c = 0; errors && c < w; c++) {
				double e = (double)z[c] - (double)values[i * w + c];

				s->abs_sum += fabs(e);
				s->sq_sum += e * e;
			}
		}
	}
}

/* Where a text's window (sample i of the training file, or of the test
 * split) starts in its stream: the training windows from 0, the
 * validation windows from the cut (text_layout). */
static const uint32_t *window(const struct trainer *t, const struct ds_split *set, uint32_t i)
{
	uint64_t T = t->context;

	if (set == &t->ds->test)
		return set->tokens + (uint64_t)i * T;
	if (i < t->text_part)
		return set->tokens + (uint64_t)i * T;
	return set->tokens + t->text_cut + (uint64_t)(i - t->text_part) * T;
}

/* The targets of the batch's samples idx[0..n) of `set` into t->classes or
 * t->values (a class per position: n x T of them). */
static void gather_targets(struct trainer *t, const struct ds_split *set, const uint32_t *idx, size_t n)
{
	if (t->ds->target == DS_TARGET_TOKENS) {
		size_t T = t->context;

		for (size_t i = 0; i < n; i++) {
			if (t->ds->text)   /* the next tokens */
				memcpy(t->classes + i * T, window(t, set, idx[i]) + 1, T * sizeof(uint32_t));
			else
				memcpy(t->classes + i * T, set->token_targets + (size_t)idx[i] * T,
				       T * sizeof(uint32_t));
		}
		return;
	}
	if (t->ds->target == DS_TARGET_VALUES) {
		for (size_t i = 0; i < n; i++)
			memcpy(t->values + i * t->width, set->targets + (size_t)idx[i] * t->width,
			       t->width * sizeof(float));
		return;
	}
	for (size_t i = 0; i < n; i++)
		t->classes[i] = set->labels[idx[i]];
}

struct gather_job {
	const struct trainer *t;
	const struct ds_split *set;
	const uint32_t *idx;            /* the rows' images: batch_idx, or a shard's part of it */
	bool train;                     /* a training batch: augmented */
};

/* Rows [r0, r1) of x (n, C*H*W): the images in batch_idx, gathered by the team
 * in the first phase of net_forward_from. One-channel uint8 data without
 * normalisation keeps k_gather, the arithmetic every job before other
 * formats had; the rest goes through k_gather_images. */
static void gather_rows(void *arg, size_t r0, size_t r1)
{
	const struct gather_job *g = arg;
	const struct trainer *t = g->t;
	const struct dataset *ds = t->ds;
	size_t dim = dataset_image_size(ds), n = r1 - r0;
	float *x = t->model.x + r0 * dim;
	const uint32_t *idx = g->idx + r0;

	if (ds->tokens) {   /* token ids, as floats (exact below 2^24) */
		size_t T = t->context;

		x = t->model.x + r0 * T;
		for (size_t i = 0; i < n; i++) {
			const uint32_t *src = ds->text ? window(t, g->set, idx[i])
						       : g->set->tokens + (size_t)idx[i] * T;

			for (size_t p = 0; p < T; p++)
				x[i * T + p] = (float)src[p];
		}
		return;
	}
	if (dataset_plain_u8(ds) && t->cfg.rng == RNG_TORCH)   /* v2.ToDtype(float32, scale=True) */
		k_gather_scaled(x, g->set->pixels, idx, n, dim, (float)(1.0 / 255.0));
	else if (dataset_plain_u8(ds))
		k_gather(x, g->set->pixels, idx, n, dim);
	else
		k_gather_images(x, g->set->pixels, ds->dtype == DS_F32,
				ds->layout == DS_NHWC && ds->channels > 1, ds->channels,
				(size_t)ds->height * ds->width, idx, n,
				ds->normalize ? ds->mean : NULL, ds->normalize ? ds->std : NULL);
	if (t->aug.n)
		augment_rows(&t->aug, &t->augd, x, idx, n, t->cfg.seed, t->epoch, g->train);
}

/* A shard's result block: this header, its outputs, its gradients. */
struct shard_head {
	double loss;                     /* loss_batch's sum over the shard's samples */
	uint64_t samples;
};

#define SHARD_OUT_OFF ((sizeof(struct shard_head) + 15) & ~(size_t)15)

static size_t shard_grads_off(const struct trainer *t)
{
	size_t b = t->cfg.batch_size / config_shards(&t->cfg);
	size_t w = (size_t)dataset_outputs(t->ds) * t->positions;

	return SHARD_OUT_OFF + ((b * w * sizeof(float) + 15) & ~(size_t)15);
}

int trainer_set_comm(struct trainer *t, const struct trainer_comm *comm, struct tr_err *err)
{
	uint32_t s = config_shards(&t->cfg);

	if (comm && (comm->nranks < 1 || s % comm->nranks != 0 || comm->rank >= comm->nranks))
		return tr_err_set_key(err, -EINVAL, "ranks",
				      "%u ranks do not divide the job's %u shards", comm ? comm->nranks : 0, s);
	t->comm = comm;
	return 0;
}

/* Forward and backward of the shards this rank owns (all of them without a
 * comm), each into its block of shard_buf; then every block everywhere;
 * then the gradients into n->grads, the outputs into t->out and the
 * loss into *loss, each added in shard order. Batch normalization: each
 * shard normalizes by its own statistics and updates the running ones
 * from the step's starting values; the new running statistics are the
 * mean of the non-empty shards' (added in shard order), and the counts
 * those of shard 0. The block's tail holds those buffers and counts; the
 * step's starting values wait in the block after the last. */
static int step_shards(struct trainer *t, size_t n, uint64_t pos, double norm, double *loss)
{
	struct loss_targets y = { t->classes, t->values };
	struct net *m = &t->model;
	uint32_t s = config_shards(&t->cfg), nranks = t->comm ? t->comm->nranks : 1;
	uint32_t rank = t->comm ? t->comm->rank : 0, per = s / nranks;
	size_t b = t->cfg.batch_size / s, goff = shard_grads_off(t), p = m->nparams;
	size_t boff = goff + p * sizeof(float), coff = boff + m->nbuffers * sizeof(float);
	size_t bbytes = m->nbuffers * sizeof(float), cbytes = m->ncounts * sizeof(int64_t);
	uint8_t *start = t->shard_buf + (size_t)s * t->shard_block;
	int rc = 0;

	memcpy(start, m->buffers, bbytes);
	memcpy(start + bbytes, m->counts, cbytes);
	for (uint32_t i = 0; i < per; i++) {
		uint32_t k = rank * per + i;
		uint8_t *blk = t->shard_buf + (size_t)k * t->shard_block;
		size_t lo = (size_t)k * b, cnt = lo < n ? (n - lo < b ? n - lo : b) : 0;
		struct shard_head h = { .loss = 0.0, .samples = cnt };

		if (cnt) {
			memcpy(m->buffers, start, bbytes);
			memcpy(m->counts, start + bbytes, cbytes);
			struct loss_targets ys = loss_targets_at(&y, lo * t->positions, t->width);

			net_forward_from(m, cnt, true, pos * s + k, gather_rows,
					 &(struct gather_job){ t, &t->ds->train, t->batch_idx + lo, true });
			h.loss = loss_batch(&t->loss, net_output(m), &ys, cnt * t->positions, norm, net_dout(m));
			memcpy(blk + SHARD_OUT_OFF, net_output(m), cnt * t->positions * t->width * sizeof(float));
			net_backward(m, cnt);
			memcpy(blk + goff, m->grads, p * sizeof(float));
			memcpy(blk + boff, m->buffers, bbytes);
			memcpy(blk + coff, m->counts, cbytes);
		} else {
			memset(blk + goff, 0, p * sizeof(float));
		}
		memcpy(blk, &h, sizeof(h));
	}
	if (t->comm && nranks > 1)
		rc = t->comm->allgather(t->comm->ctx, t->shard_buf, (size_t)per * t->shard_block);
	if (rc < 0)
		return rc;
	*loss = 0.0;
	for (uint32_t k = 0; k < s; k++) {
		const uint8_t *blk = t->shard_buf + (size_t)k * t->shard_block;
		struct shard_head h;

		memcpy(&h, blk, sizeof(h));
		if (k == 0)
			memcpy(m->grads, blk + goff, p * sizeof(float));
		else
			for (size_t j = 0; j < p; j++) {
				float g;

				memcpy(&g, blk + goff + j * sizeof(float), sizeof(g));
				m->grads[j] += g;
			}
		*loss += h.loss;
		if (h.samples)
			memcpy(t->out + (size_t)k * b * t->positions * t->width, blk + SHARD_OUT_OFF,
			       h.samples * t->positions * t->width * sizeof(float));
	}
	if (m->nbuffers || m->ncounts) {
		uint32_t used = 0;

		for (uint32_t k = 0; k < s; k++) {
			const uint8_t *blk = t->shard_buf + (size_t)k * t->shard_block;
			struct shard_head h;

			memcpy(&h, blk, sizeof(h));
			if (!h.samples)
				continue;
			if (used++ == 0) {
				memcpy(m->buffers, blk + boff, bbytes);
				memcpy(m->counts, blk + coff, cbytes);
				continue;
			}
			for (size_t j = 0; j < m->nbuffers; j++) {
				float v;

				memcpy(&v, blk + boff + j * sizeof(float), sizeof(v));
				m->buffers[j] += v;
			}
		}
		for (size_t j = 0; j < m->nbuffers; j++)
			m->buffers[j] /= (float)used;
	}
	return 0;
}

/* net_backward_update's update: the optimizer over one range. */
static void update_range(void *ctx, size_t off, size_t len)
{
	struct trainer *t = ctx;

	optim_update(&t->opt, t->model.params, t->model.grads, off, len);
}

/* The same, leaving +0.0 in the gradients it read: a job whose products are
 * OpenBLAS's fp32 ones then adds the next gradients into them (net.h). */
static void update_range_consume(void *ctx, size_t off, size_t len)
{
	struct trainer *t = ctx;

	optim_update_consume(&t->opt, t->model.params, t->model.grads, off, len);
}

/* Prefetching a batch's images ahead of its gather: the rows of a batch lie
 * anywhere in the data set, and the gather otherwise waits for each (5 % of a
 * lesson epoch on one thread). Plain uint8 images (k_gather's) only; a hint
 * that changes no value. Sample i of the batch is idx[i], or
 * map[idx[i]] when map is not NULL (the training order into the split). */
#define PREFETCH_CHUNK 64

static void prefetch_images(const struct trainer *t, const struct ds_split *set, const uint32_t *map,
			    const uint32_t *idx, size_t n)
{
	uint32_t rows[PREFETCH_CHUNK];

	if (!dataset_plain_u8(t->ds) || t->ds->tokens || !set->pixels)
		return;
	for (size_t i0 = 0; i0 < n; i0 += PREFETCH_CHUNK) {
		size_t c = n - i0 < PREFETCH_CHUNK ? n - i0 : PREFETCH_CHUNK;

		for (size_t i = 0; i < c; i++)
			rows[i] = map ? map[idx[i0 + i]] : idx[i0 + i];
		k_prefetch_rows(set->pixels, rows, c, dataset_image_size(t->ds));
	}
}

/* The next step's images, while this step's bookkeeping runs (the next
 * epoch's order is not drawn yet). */
static void prefetch_next(const struct trainer *t)
{
	size_t first = (size_t)(t->step + 1) * t->cfg.batch_size;

	if (t->step + 1 >= t->steps_per_epoch || first >= t->n_train)
		return;
	prefetch_images(t, &t->ds->train, t->split, t->order + first,
			t->n_train - first < t->cfg.batch_size ? t->n_train - first : t->cfg.batch_size);
}

int trainer_step(struct trainer *t)
{
	const struct ds_split *set = &t->ds->train;
	struct loss_targets y = { t->classes, t->values };
	const float *out;
	size_t first, n;
	double t0 = clock_seconds(), loss, norm;
	unsigned fpmode;
	bool fused = false;

	if (trainer_finished(t) || trainer_epoch_done(t))
		return -EINVAL;
	fpmode = numerics_enter(t->cfg.ftz);
	first = (size_t)t->step * t->cfg.batch_size;
	n = t->n_train - first < t->cfg.batch_size ? t->n_train - first : t->cfg.batch_size;
	for (size_t i = 0; i < n; i++)
		t->batch_idx[i] = t->split[t->order[first + i]];
	gather_targets(t, set, t->batch_idx, n);
	norm = loss_norm(&t->loss, &y, n * t->positions);
	if (t->shard_buf) {
		int rc = step_shards(t, n, (uint64_t)t->epoch * t->steps_per_epoch + t->step, norm, &loss);

		if (rc < 0) {
			numerics_leave(fpmode);
			return rc;
		}
		out = t->out;
	} else {
		/* x (n, C*H*W) gathered by the team; Dropout's stream: a position
		 * unique to this step of the job. */
		net_forward_from(&t->model, n, true, (uint64_t)t->epoch * t->steps_per_epoch + t->step,
				 gather_rows, &(struct gather_job){ t, set, t->batch_idx, true });
		loss = loss_batch(&t->loss, net_output(&t->model), &y, n * t->positions, norm,
				  net_dout(&t->model));
		/* Without clipping (which needs every gradient first) the
		 * update is elementwise: each range as soon as its gradient is
		 * final, in the backward's phases (the same values, one phase
		 * less: net_backward_update). */
		fused = t->cfg.clip_grad_norm <= 0 && net_can_update_in_backward(&t->model);
		if (fused) {
			trainsched_begin_update(t);      /* optim_begin_step at the scheduled rate */
			bool consume = t->model.kernels == KERNELS_OPENBLAS &&
				       t->model.precision == K_FP32;

			net_backward_update(&t->model, n, consume ? update_range_consume : update_range,
					    t, consume);
		} else {
			net_backward(&t->model, n);
		}
		out = net_output(&t->model);
	}
	if (net_conv_status(&t->model, NULL) < 0) {   /* a batch's convolutions could not be made */
		numerics_leave(fpmode);
		return net_conv_status(&t->model, NULL);
	}
	if (!fused) {
		trainsched_begin_update(t);      /* clipping; optim_begin_step at the scheduled rate */
		optim_step(&t->opt, t->model.params, t->model.grads, t->model.nparams, t->model.team);
	}
	trainsched_end_update(t);
	numerics_leave(fpmode);
	prefetch_next(t);

	t->sums.loss_sum += loss / norm;
	t->sums.batches++;
	count_outputs(t, &t->sums, out, t->classes, t->values, n, false);
	t->step++;
	t->sums.seconds += clock_seconds() - t0;
	return 0;
}

void metric_sums_finish(const struct metric_sums *s, enum loss_task task, uint32_t width,
			uint64_t samples, struct metrics *out)
{
	uint64_t correct = 0;
	double recall_sum = 0.0;
	int classes = 0;

	out->loss = s->batches ? s->loss_sum / (double)s->batches : 0.0;
	out->count = samples;
	out->acc = out->macro_acc = out->mae = out->rmse = out->ppl = NAN;
	if (task == TASK_TOKENS) {
		if (s->token_norm > 0)   /* an evaluation: the mean over every position */
			out->loss = s->token_loss / s->token_norm;
		out->acc = s->tokens ? (double)s->tokens_correct / (double)s->tokens : 0.0;
		out->ppl = exp(out->loss);
		return;
	}
	if (task == TASK_REGRESSION) {
		double values = (double)samples * width;

		if (values > 0) {
			out->mae = s->abs_sum / values;
			out->rmse = sqrt(s->sq_sum / values);
		}
		return;
	}
	if (task == TASK_MULTILABEL) {
		for (uint32_t c = 0; c < width && c < DATASET_MAX_CLASSES; c++)
			correct += s->correct[c];
		out->acc = samples ? (double)correct / ((double)samples * width) : 0.0;
		return;
	}
	for (int c = 0; c < DATASET_MAX_CLASSES; c++) {
		correct += s->correct[c];
		/* torchmetrics' macro average leaves out classes that are neither
		 * present nor predicted; a predicted-but-absent class scores 0. */
		if (s->total[c] == 0 && s->predicted[c] == 0)
			continue;
		classes++;
		if (s->total[c])
			recall_sum += (double)s->correct[c] / (double)s->total[c];
	}
	out->acc = samples ? (double)correct / (double)samples : 0.0;
	out->macro_acc = classes ? recall_sum / classes : 0.0;
}

int trainer_evaluate(struct trainer *t, enum eval_split which, struct metrics *out)
{
	return trainer_evaluate_sums(t, which, out, NULL);
}

int trainer_evaluate_sums(struct trainer *t, enum eval_split which, struct metrics *out,
			  struct metric_sums *sums)
{
	const struct ds_split *set = which == EVAL_TEST ? &t->ds->test : &t->ds->train;
	uint32_t count = which == EVAL_TEST ? set->count : t->n_val;
	struct loss_targets y = { t->classes, t->values };
	struct metric_sums *s = calloc(1, sizeof(*s));   /* 6 KiB: not on a worker's stack */
	unsigned fpmode;

	if (!s)
		return -ENOMEM;
	if (which == EVAL_TEST && t->ds->text) {
		uint64_t w = dataset_windows(set->ntokens, t->context);

		count = w > UINT32_MAX ? UINT32_MAX : (uint32_t)w;
	}
	fpmode = numerics_enter(t->cfg.ftz);
	for (uint32_t first = 0; first < count; first += t->cfg.eval_batch_size) {
		size_t n = count - first < t->cfg.eval_batch_size ? count - first : t->cfg.eval_batch_size;

		for (size_t i = 0; i < n; i++)
			t->batch_idx[i] = which == EVAL_TEST ? first + (uint32_t)i
							     : t->split[t->n_train_part + first + i];
		gather_targets(t, set, t->batch_idx, n);
		net_forward_from(&t->model, n, false, 0, gather_rows,
				 &(struct gather_job){ t, set, t->batch_idx, false });
		if (which != EVAL_TEST && first + n < count) {   /* the next batch's images */
			uint32_t next = first + (uint32_t)n;

			prefetch_images(t, set, NULL, t->split + t->n_train_part + next,
					count - next < t->cfg.eval_batch_size ? count - next
									      : t->cfg.eval_batch_size);
		}
		{
			size_t rows = n * t->positions;
			double norm = loss_norm(&t->loss, &y, rows);
			double sum = loss_batch(&t->loss, net_output(&t->model), &y, rows, norm, NULL);

			s->loss_sum += sum / norm;
			s->token_loss += t->task == TASK_TOKENS ? sum : 0.0;
			s->token_norm += t->task == TASK_TOKENS ? norm : 0.0;
		}
		s->batches++;
		count_outputs(t, s, net_output(&t->model), t->classes, t->values, n, true);
	}
	metric_sums_finish(s, t->task, t->width, count, out);
	if (sums)
		*sums = *s;
	free(s);
	numerics_leave(fpmode);
	return 0;
}

int trainer_end_epoch(struct trainer *t, struct history_row *row)
{
	struct history_row r;
	struct metrics train, val;
	double t0 = clock_seconds();
	int rc;

	if (!trainer_epoch_done(t) || trainer_finished(t))
		return -EINVAL;
	rc = trainer_evaluate(t, EVAL_VAL, &val);
	if (rc < 0)
		return rc;
	metric_sums_finish(&t->sums, t->task, t->width, t->n_train, &train);
	memset(&r, 0, sizeof(r));
	r.epoch = t->epoch + 1;
	r.train_loss = train.loss;
	r.train_acc = train.acc;
	r.train_macro_acc = train.macro_acc;
	r.val_loss = val.loss;
	r.val_acc = val.acc;
	r.val_macro_acc = val.macro_acc;
	r.val_mae = val.mae;
	r.val_rmse = val.rmse;
	r.val_ppl = val.ppl;
	r.seconds = t->sums.seconds + (clock_seconds() - t0);
	memcpy(r.note, t->note, sizeof(r.note));
	trainsched_end_epoch(t, &r);
	t->history[t->nhistory++] = r;
	if (row)
		*row = r;
	memset(&t->sums, 0, sizeof(t->sums));
	t->note[0] = '\0';
	t->epoch++;
	t->step = 0;
	draw_val_loader(t);
	draw_order(t);
	return 0;
}

int trainer_set_epochs(struct trainer *t, uint32_t epochs, struct tr_err *err)
{
	struct history_row *h;

	if (epochs < 1 || epochs > 100000 || epochs < t->epoch || (epochs == t->epoch && t->step != 0))
		return tr_err_set_key(err, -EINVAL, "epochs",
				      "%u is fewer than the job has trained (epoch %u, step %u)", epochs,
				      t->epoch, t->step);
	if (epochs > t->cfg.epochs) {
		h = realloc(t->history, (size_t)epochs * sizeof(*h));
		if (!h)
			return tr_err_set(err, -ENOMEM, "out of memory");
		memset(h + t->cfg.epochs, 0, (size_t)(epochs - t->cfg.epochs) * sizeof(*h));
		t->history = h;
	}
	t->cfg.epochs = epochs;
	t->sched.cfg.epochs = epochs;   /* onecycle's total (doc/training.md: it depends on it) */
	return 0;
}

void trainer_go_on(struct trainer *t)
{
	/* Early stopping counts on from where it was (its wait included). */
	t->sched.stopped = false;
	t->sched.note[0] = '\0';
}

int trainer_set_lr(struct trainer *t, double lr, struct tr_err *err)
{
	if (lr == t->cfg.lr)
		return 0;
	if (t->cfg.lr_scheduler[0])
		return tr_err_set_key(err, -EINVAL, "lr",
				      "cannot change under the schedule '%s' (its rate is part of the state "
				      "taken over); start with weights_only to change it", t->cfg.lr_scheduler);
	t->cfg.lr = lr;
	t->sched.cfg.lr = lr;
	t->sched.lr = lr;
	if (t->step == 0)
		t->sched.epoch_lr = lr;
	return 0;
}

void trainer_reset_optimizer(struct trainer *t, const char *note)
{
	optim_reset(&t->opt);
	snprintf(t->note, sizeof(t->note), "%s", note ? note : "");
}

void trainer_params_hash(const struct trainer *t, char hex[65])
{
	const struct net *n = &t->model;
	struct sha256_ctx ctx;
	uint8_t digest[SHA256_DIGEST_LEN];

	sha256_init(&ctx);
	for (uint32_t i = 0; i < n->ntensors; i++) {
		const struct net_tensor *x = &n->tensors[i];
		size_t elem = x->kind == TENSOR_COUNT ? sizeof(int64_t) : sizeof(float);

		sha256_update(&ctx, net_tensor_data(n, x, NULL), x->len * elem);
	}
	sha256_final(&ctx, digest);
	sha256_to_hex(digest, hex);
}

void trainer_rate_start(struct trainer_rate *r)
{
	r->since = clock_seconds();
	r->samples = 0;
	r->per_second = 0;
}

double trainer_rate_step(struct trainer_rate *r, const struct trainer *t)
{
	r->samples += t->cfg.batch_size;
	if (r->samples >= TRAINER_RATE_WINDOW) {
		double now = clock_seconds();

		r->per_second = (double)r->samples / (now - r->since);
		r->since = now;
		r->samples = 0;
	}
	return r->per_second;
}
