/*
 * fuzz-checkpoint.c - libFuzzer harness for the checkpoint loader
 * (checkpoint_inspect, checkpoint_restore, checkpoint_export_from_blob,
 * checkpoint_load_model) on top of the safetensors parser.
 *
 * Each input is a checkpoint blob. It goes through:
 *   1. inspect, restore (full and weights-only) and export as it is. Almost
 *      every mutation breaks the checksum, so this mostly fuzzes the
 *      structure and checksum checks;
 *   2. if the input parses as safetensors and has a "checksum" metadata value
 *      "sha256:<64 chars>" that occurs once in the header, a copy with those 64
 *      characters zeroed and re-sealed by checkpoint_seal goes through the
 *      same calls, so the semantic checks behind the checksum (config,
 *      position, shapes, permutation, counts, history) are fuzzed too;
 *   3. load_model of the input into a trainer built from the seeds' config.
 * The dataset is a small synthetic one (tests/lib/testutil.h) built once.
 *
 * Checks beyond "no crash": failures return a negative code with a message
 * and no trainer; a restored trainer is consistent (position in range, order
 * a permutation, history rows = epochs) and serializes and restores again to
 * the same position; inspect and restore agree.
 *
 * A blob whose configuration asks for a model of more than 2^20 parameters is
 * only inspected (restoring it would just allocate big: not a bug, and libFuzzer
 * would call it out-of-memory).
 *
 * Seeds: FUZZ_CHECKPOINT_SEEDS=DIR ./fuzz-checkpoint -runs=0 writes small valid
 * checkpoints (adam/adamw/sgd+momentum/sgd, fresh, mid-epoch, epoch end,
 * finished; threads 1) into DIR (tests/fuzz/corpus/checkpoint holds them).
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/testutil.h"
#include "traind/checkpoint.h"
#include "traind/safetensors.h"
#include "traind/sha256.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

#define SIDE 4            /* 4x4 images: 16 inputs */
#define N_TRAIN 48
#define N_TEST 12
#define MAX_PARAMS (1u << 20)

static struct dataset *ds;
static struct trainer *model_target;   /* for checkpoint_load_model */

static void seed_config(struct train_config *cfg)
{
	config_defaults(cfg);
	snprintf(cfg->dataset, sizeof(cfg->dataset), "synthetic");
	cfg->epochs = 2;
	cfg->batch_size = 8;
	cfg->eval_batch_size = 8;
	cfg->val_size = 8;
	cfg->hidden[0] = 4;
	cfg->threads = 1;
}

static void write_seed(const char *dir, const char *name, struct trainer *t)
{
	uint8_t *blob = NULL;
	size_t len = 0;
	char path[4096];
	FILE *f;

	CHECK(checkpoint_save(t, &blob, &len, NULL) == 0);
	snprintf(path, sizeof(path), "%s/%s.safetensors", dir, name);
	f = fopen(path, "wb");
	CHECK(f != NULL);
	CHECK(fwrite(blob, 1, len, f) == len);
	fclose(f);
	free(blob);
}

/* The seed corpus: a few small valid checkpoints. */
static void write_seeds(const char *dir)
{
	static const struct {
		const char *name;
		enum optim_kind optim;
		double momentum;
		uint32_t train_size;
		long steps;          /* batches to run; -1: to the end */
		bool end_epoch;      /* then end the epoch */
	} v[] = {
		{ "adam-fresh", OPTIM_ADAM, 0, 0, 0, false },
		{ "adam-mid-epoch", OPTIM_ADAM, 0, 0, 2, false },
		{ "adam-epoch-end", OPTIM_ADAM, 0, 0, 5, true },
		{ "adamw-finished", OPTIM_ADAMW, 0, 16, -1, false },
		{ "sgd-momentum-mid-epoch", OPTIM_SGD, 0.9, 24, 4, false },
		{ "sgd-epoch-unended", OPTIM_SGD, 0, 16, 2, false },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct train_config cfg;
		struct trainer *t = NULL;

		seed_config(&cfg);
		cfg.optimizer = v[i].optim;
		cfg.momentum = v[i].momentum;
		cfg.train_size = v[i].train_size;
		if (v[i].optim == OPTIM_ADAMW)
			cfg.weight_decay = 0.01;
		CHECK(trainer_new(&t, &cfg, ds, NULL) == 0);
		run_trainer(t, v[i].steps);
		if (v[i].end_epoch && trainer_epoch_done(t) && !trainer_finished(t))
			CHECK(trainer_end_epoch(t, NULL) == 0);
		write_seed(dir, v[i].name, t);
		trainer_free(t);
	}
	fprintf(stderr, "fuzz-checkpoint: wrote %zu seeds to %s\n", sizeof(v) / sizeof(v[0]), dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct train_config cfg;
	const char *dir = getenv("FUZZ_CHECKPOINT_SEEDS");

	(void)argc;
	(void)argv;
	ds = make_synthetic(N_TRAIN, N_TEST, SIDE, 7);
	seed_config(&cfg);
	CHECK(trainer_new(&model_target, &cfg, ds, NULL) == 0);
	if (dir && *dir)
		write_seeds(dir);
	return 0;
}

/* Parameters of the model cfg describes on this dataset. */
static uint64_t param_count(const struct train_config *cfg)
{
	uint64_t in = SIDE * SIDE, n = 0;

	for (uint32_t l = 0; l <= cfg->n_hidden; l++) {
		uint64_t out = l < cfg->n_hidden ? cfg->hidden[l] : ds->classes;

		n += in * out + out;
		in = out;
	}
	return n;
}

static void check_trainer(const struct trainer *t, const struct checkpoint_info *info,
			  bool weights_only)
{
	uint8_t *seen = calloc(t->n_train ? t->n_train : 1, 1);
	uint8_t *blob = NULL;
	size_t len = 0;
	struct trainer *t2 = NULL;

	CHECK(seen != NULL);
	CHECK(t->epoch == info->epoch && t->step == info->step);
	CHECK(t->epoch <= t->cfg.epochs && t->step <= t->steps_per_epoch);
	CHECK(t->nhistory == t->epoch);
	for (uint32_t i = 0; i < t->n_train; i++) {
		CHECK(t->order[i] < t->n_train && !seen[t->order[i]]);
		seen[t->order[i]] = 1;
	}
	free(seen);
	CHECK(weights_only || t->opt.step == info->optimizer_step);
	/* What was restored saves and restores again to the same position. */
	CHECK(checkpoint_save(t, &blob, &len, NULL) == 0);
	CHECK(checkpoint_restore(&t2, blob, len, ds, false, NULL) == 0);
	CHECK(t2->epoch == t->epoch && t2->step == t->step && t2->nhistory == t->nhistory);
	CHECK(memcmp(t2->model.params, t->model.params, t->model.nparams * sizeof(float)) == 0);
	trainer_free(t2);
	free(blob);
}

/* Inspect, restore both ways, export. */
static void run_blob(const uint8_t *blob, size_t len)
{
	struct checkpoint_info info;
	struct tr_err err;
	int rc;

	tr_err_clear(&err);
	rc = checkpoint_inspect(blob, len, &info, &err);
	if (rc < 0) {
		CHECK(err.code == rc && err.msg[0] != '\0');
		return;
	}
	CHECK(strncmp(info.checksum, "sha256:", 7) == 0 && strlen(info.checksum) == 71);
	if (param_count(&info.cfg) > MAX_PARAMS)
		return;
	for (int wo = 0; wo < 2; wo++) {
		struct trainer *t = NULL;

		tr_err_clear(&err);
		rc = checkpoint_restore(&t, blob, len, ds, wo, &err);
		if (rc == 0) {
			CHECK(t != NULL);
			check_trainer(t, &info, wo);
			trainer_free(t);
		} else {
			CHECK(t == NULL && rc < 0 && err.code == rc && err.msg[0] != '\0');
		}
	}
	{
		uint8_t *model = NULL;
		size_t mlen = 0;

		tr_err_clear(&err);
		rc = checkpoint_export_from_blob(blob, len, &model, &mlen, &err);
		if (rc == 0) {
			struct st_file *f = NULL;

			CHECK(st_parse(&f, model, mlen, NULL) == 0);
			st_file_free(f);
		} else {
			CHECK(rc < 0 && err.msg[0] != '\0');
		}
		free(model);
	}
}

/* A copy of data with its checksum re-sealed, or NULL. */
static uint8_t *resealed(const uint8_t *data, size_t size)
{
	struct st_file *f = NULL;
	const char *v;
	uint8_t *copy = NULL;
	size_t hoff, pos = 0;
	int found = 0;

	if (st_parse(&f, data, size, NULL) < 0)
		return NULL;
	v = st_meta_get(f, "checksum");
	if (!v || strlen(v) != 7 + SHA256_HEX_LEN || strncmp(v, "sha256:", 7) != 0)
		goto out;
	hoff = (size_t)(f->header - data);
	for (size_t i = 0; i + SHA256_HEX_LEN <= f->header_len; i++) {
		if (memcmp(f->header + i, v + 7, SHA256_HEX_LEN) == 0) {
			found++;
			pos = hoff + i;
		}
	}
	if (found != 1)
		goto out;
	copy = malloc(size);
	if (!copy)
		goto out;
	memcpy(copy, data, size);
	memset(copy + pos, '0', SHA256_HEX_LEN);
	if (checkpoint_seal(copy, size, NULL, NULL) < 0) {
		free(copy);
		copy = NULL;
	}
out:
	st_file_free(f);
	return copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;
	struct tr_err err;
	int rc;

	run_blob(data, size);
	copy = resealed(data, size);
	if (copy) {
		struct checkpoint_info info;

		/* A re-sealed blob passes the checksum check. */
		rc = checkpoint_inspect(copy, size, &info, &err);
		CHECK(rc == 0 || (strncmp(err.msg, "checkpoint: checksum", 20) != 0 &&
				  strncmp(err.msg, "checkpoint: missing or malformed checksum", 41) != 0));
		run_blob(copy, size);
		free(copy);
	}
	tr_err_clear(&err);
	rc = checkpoint_load_model(model_target, data, size, &err);
	CHECK(rc == 0 || (rc < 0 && err.msg[0] != '\0'));
	return 0;
}
