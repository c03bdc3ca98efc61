/*
 * trainer.c - the training loop. See include/traind/trainer.h.
 *
 * Data path, as the lesson's DataLoaders: the training file's images are
 * split once by a permutation drawn from split_seed (first n - val_size train,
 * rest validation, as torch.utils.data.random_split); each epoch shuffles the
 * training part with the job's RNG (RandomSampler) and walks it in batches of
 * batch_size, the last one partial (drop_last=False); validation and test go in
 * order in batches of eval_batch_size. Pixels become float (x/255) only when a
 * batch is gathered.
 */
#include "traind/trainer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "traind/kernels.h"
#include "traind/sha256.h"

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void draw_order(struct trainer *t)
{
	for (uint32_t i = 0; i < t->n_train; i++)
		t->order[i] = i;
	rng_shuffle_u32(&t->rng, t->order, t->n_train);
}

int trainer_check_config(const struct train_config *cfg, const struct dataset *ds,
			 struct tr_err *err)
{
	int rc;

	rc = config_validate(cfg, err);
	if (rc < 0)
		return rc;
	if (cfg->val_size >= ds->train.count)
		return tr_err_set(err, -EINVAL,
				  "val_size: %u leaves no training images (the training file has %u)",
				  cfg->val_size, ds->train.count);
	if (cfg->train_size > ds->train.count - cfg->val_size)
		return tr_err_set(err, -EINVAL,
				  "train_size: %u is more than the %u images of the split's training part",
				  cfg->train_size, ds->train.count - cfg->val_size);
	{
		uint32_t n_train = cfg->train_size ? cfg->train_size : ds->train.count - cfg->val_size;

		if (cfg->batch_size > n_train)
			return tr_err_set(err, -EINVAL,
					  "batch_size: %u is larger than the %u training images",
					  cfg->batch_size, n_train);
	}
	if (ds->train.rows != ds->test.rows || ds->train.cols != ds->test.cols)
		return tr_err_set(err, -EINVAL, "dataset: train and test images differ in size");
	{
		/* A daemon must not be talked into allocating tens of GB: cap the
		 * model (parameters, gradients and two moments are 16 bytes each). */
		uint64_t in = (uint64_t)ds->train.rows * ds->train.cols, params = 0;

		for (uint32_t l = 0; l <= cfg->n_hidden; l++) {
			uint64_t out = l < cfg->n_hidden ? cfg->hidden[l] : DATASET_CLASSES;

			params += out * in + out;
			in = out;
		}
		if (params > TRAINER_MAX_PARAMS)
			return tr_err_set(err, -EINVAL,
					  "hidden: the model would have %llu parameters; at most %llu are allowed",
					  (unsigned long long)params, (unsigned long long)TRAINER_MAX_PARAMS);
	}
	return 0;
}

int trainer_new(struct trainer **out, const struct train_config *cfg, const struct dataset *ds,
		struct tr_err *err)
{
	struct trainer *t;
	struct rng split_rng;
	uint32_t max_batch;
	int rc;

	kernels_global_init();
	rc = trainer_check_config(cfg, ds, err);
	if (rc < 0)
		return rc;
	t = calloc(1, sizeof(*t));
	if (!t)
		return tr_err_set(err, -ENOMEM, "out of memory");
	t->cfg = *cfg;
	t->ds = ds;
	t->n_split = ds->train.count;
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
	rc = mlp_init(&t->model, ds->train.rows * ds->train.cols, DATASET_CLASSES, cfg, max_batch,
		      t->team);
	if (rc < 0)
		goto fail_nomem;
	rc = optim_init(&t->opt, cfg, t->model.nparams);
	if (rc < 0)
		goto fail_nomem;
	t->split = malloc((size_t)t->n_split * sizeof(*t->split));
	t->order = malloc((size_t)t->n_train * sizeof(*t->order));
	t->batch_idx = malloc((size_t)max_batch * sizeof(*t->batch_idx));
	t->labels = malloc(max_batch);
	t->pred = malloc(max_batch);
	t->history = calloc(cfg->epochs, sizeof(*t->history));
	rc = -ENOMEM;
	if (!t->split || !t->order || !t->batch_idx || !t->labels || !t->pred || !t->history)
		goto fail_nomem;

	/* The split has its own generator, so it never depends on the model seed. */
	rng_seed(&split_rng, cfg->split_seed);
	for (uint32_t i = 0; i < t->n_split; i++)
		t->split[i] = i;
	rng_shuffle_u32(&split_rng, t->split, t->n_split);

	rng_seed(&t->rng, cfg->seed);
	mlp_init_params(&t->model, &t->rng);
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
	mlp_deinit(&t->model);
	optim_deinit(&t->opt);
	team_free(t->team);
	free(t->split);
	free(t->order);
	free(t->batch_idx);
	free(t->labels);
	free(t->pred);
	free(t->history);
	free(t);
}

bool trainer_epoch_done(const struct trainer *t)
{
	return t->step >= t->steps_per_epoch;
}

bool trainer_finished(const struct trainer *t)
{
	return t->epoch >= t->cfg.epochs;
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

static void count_predictions(struct metric_sums *s, const uint8_t *labels, const uint8_t *pred,
			      size_t n)
{
	for (size_t i = 0; i < n; i++) {
		s->total[labels[i]]++;
		s->predicted[pred[i]]++;
		if (labels[i] == pred[i])
			s->correct[labels[i]]++;
	}
}

int trainer_step(struct trainer *t)
{
	const struct idx_set *set = &t->ds->train;
	size_t dim = (size_t)set->rows * set->cols;
	size_t first, n;
	double t0 = now_seconds(), loss;

	if (trainer_finished(t) || trainer_epoch_done(t))
		return -EINVAL;
	first = (size_t)t->step * t->cfg.batch_size;
	n = t->n_train - first < t->cfg.batch_size ? t->n_train - first : t->cfg.batch_size;
	for (size_t i = 0; i < n; i++) {
		uint32_t img = t->split[t->order[first + i]];

		t->batch_idx[i] = img;
		t->labels[i] = set->labels[img];
	}
	k_gather(t->model.x, set->pixels, t->batch_idx, n, dim);     /* (n, 784) */
	mlp_forward(&t->model, n);
	loss = k_softmax_xent(mlp_logits(&t->model), t->labels, n, DATASET_CLASSES,
			      1.0f / (float)n, t->model.dlogits, t->pred);
	optim_begin_step(&t->opt);
	mlp_backward_update(&t->model, n, &t->opt);

	t->sums.loss_sum += loss / (double)n;
	t->sums.batches++;
	count_predictions(&t->sums, t->labels, t->pred, n);
	t->step++;
	t->sums.seconds += now_seconds() - t0;
	return 0;
}

void metric_sums_finish(const struct metric_sums *s, uint64_t samples, struct metrics *out)
{
	uint64_t correct = 0;
	double recall_sum = 0.0;
	int classes = 0;

	for (int c = 0; c < DATASET_CLASSES; c++) {
		correct += s->correct[c];
		/* torchmetrics' macro average leaves out classes that are neither
		 * present nor predicted; a predicted-but-absent class scores 0. */
		if (s->total[c] == 0 && s->predicted[c] == 0)
			continue;
		classes++;
		if (s->total[c])
			recall_sum += (double)s->correct[c] / (double)s->total[c];
	}
	out->loss = s->batches ? s->loss_sum / (double)s->batches : 0.0;
	out->acc = samples ? (double)correct / (double)samples : 0.0;
	out->macro_acc = classes ? recall_sum / classes : 0.0;
	out->count = samples;
}

int trainer_evaluate(struct trainer *t, enum eval_split which, struct metrics *out)
{
	const struct idx_set *set = which == EVAL_TEST ? &t->ds->test : &t->ds->train;
	size_t dim = (size_t)set->rows * set->cols;
	uint32_t count = which == EVAL_TEST ? set->count : t->n_val;
	struct metric_sums s;

	memset(&s, 0, sizeof(s));
	for (uint32_t first = 0; first < count; first += t->cfg.eval_batch_size) {
		size_t n = count - first < t->cfg.eval_batch_size ? count - first : t->cfg.eval_batch_size;

		for (size_t i = 0; i < n; i++) {
			uint32_t img = which == EVAL_TEST ? first + (uint32_t)i
							  : t->split[t->n_train_part + first + i];

			t->batch_idx[i] = img;
			t->labels[i] = set->labels[img];
		}
		k_gather(t->model.x, set->pixels, t->batch_idx, n, dim);
		mlp_forward(&t->model, n);
		s.loss_sum += k_softmax_xent(mlp_logits(&t->model), t->labels, n, DATASET_CLASSES,
					     1.0f, NULL, t->pred) / (double)n;
		s.batches++;
		count_predictions(&s, t->labels, t->pred, n);
	}
	metric_sums_finish(&s, count, out);
	return 0;
}

int trainer_end_epoch(struct trainer *t, struct history_row *row)
{
	struct history_row r;
	struct metrics train, val;
	double t0 = now_seconds();
	int rc;

	if (!trainer_epoch_done(t) || trainer_finished(t))
		return -EINVAL;
	rc = trainer_evaluate(t, EVAL_VAL, &val);
	if (rc < 0)
		return rc;
	metric_sums_finish(&t->sums, t->n_train, &train);
	memset(&r, 0, sizeof(r));
	r.epoch = t->epoch + 1;
	r.train_loss = train.loss;
	r.train_acc = train.acc;
	r.train_macro_acc = train.macro_acc;
	r.val_loss = val.loss;
	r.val_acc = val.acc;
	r.val_macro_acc = val.macro_acc;
	r.seconds = t->sums.seconds + (now_seconds() - t0);
	memcpy(r.note, t->note, sizeof(r.note));
	t->history[t->nhistory++] = r;
	if (row)
		*row = r;
	memset(&t->sums, 0, sizeof(t->sums));
	t->note[0] = '\0';
	t->epoch++;
	t->step = 0;
	draw_order(t);
	return 0;
}

void trainer_reset_optimizer(struct trainer *t, const char *note)
{
	optim_reset(&t->opt);
	snprintf(t->note, sizeof(t->note), "%s", note ? note : "");
}

void trainer_params_hash(const struct trainer *t, char hex[65])
{
	sha256_hex(t->model.params, t->model.nparams * sizeof(float), hex);
}
