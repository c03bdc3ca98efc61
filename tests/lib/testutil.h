/*
 * testutil.h - helpers shared by the engine and daemon tests: a small
 * synthetic dataset held in memory (so unit tests need no download), written
 * out as IDX files for an in-process traind, and running a trainer.
 * Header-only; each test program includes it once.
 */
#ifndef TRAIND_TESTUTIL_H
#define TRAIND_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/dataset.h"
#include "traind/rng.h"
#include "traind/trainer.h"

/* A dataset of n_train + n_test images of side x side pixels whose label is
 * a simple function of the pixels (so training makes progress). */
static inline struct dataset *make_synthetic(uint32_t n_train, uint32_t n_test, uint32_t side,
					      uint64_t seed)
{
	struct dataset *ds = calloc(1, sizeof(*ds));
	struct ds_split *sets[2] = { &ds->train, &ds->test };
	uint32_t counts[2] = { n_train, n_test };
	struct rng r;

	rng_seed(&r, seed);
	for (int s = 0; s < 2; s++) {
		struct ds_split *set = sets[s];
		size_t dim = (size_t)side * side;

		set->count = counts[s];
		set->rows = side;
		set->cols = side;
		set->pixels = malloc(set->count * dim);
		set->labels = malloc(set->count);
		for (uint32_t i = 0; i < set->count; i++) {
			uint8_t label = (uint8_t)rng_below(&r, 10);

			set->labels[i] = label;
			for (size_t j = 0; j < dim; j++) {
				uint32_t noise = rng_below(&r, 96);

				/* a bright band at a label-dependent position */
				set->pixels[i * dim + j] = (uint8_t)(noise + ((j % 10) == label ? 150 : 0));
			}
		}
	}
	ds->classes = 10;
	dataset_init_memory(ds);
	return ds;
}

/* Write `set` as an IDX pair, dir/images (magic 0x803) and dir/labels
 * (0x801), as the daemon's tests give traind a dataset: 0, or -1. */
static inline int write_idx_pair(const char *dir, const char *images, const char *labels,
				 const struct ds_split *set)
{
	size_t dim = (size_t)set->rows * set->cols;
	size_t ilen = 16 + set->count * dim, llen = 8 + set->count;
	uint32_t ihead[4] = { 0x803, set->count, set->rows, set->cols }, lhead[2] = { 0x801, set->count };
	uint8_t *buf = malloc(ilen > llen ? ilen : llen);
	const char *names[2] = { images, labels };
	size_t lens[2] = { ilen, llen };
	int rc = 0;

	if (!buf)
		return -1;
	for (int i = 0; i < 4; i++)
		for (int b = 0; b < 4; b++)
			buf[4 * i + b] = (uint8_t)(ihead[i] >> (24 - 8 * b));
	memcpy(buf + 16, set->pixels, set->count * dim);
	for (int f = 0; f < 2 && rc == 0; f++) {
		char path[1024];
		FILE *out;

		if (f == 1) {
			for (int i = 0; i < 2; i++)
				for (int b = 0; b < 4; b++)
					buf[4 * i + b] = (uint8_t)(lhead[i] >> (24 - 8 * b));
			memcpy(buf + 8, set->labels, set->count);
		}
		snprintf(path, sizeof(path), "%s/%s", dir, names[f]);
		out = fopen(path, "wb");
		if (!out || fwrite(buf, 1, lens[f], out) != lens[f])
			rc = -1;
		if (out && fclose(out) != 0)
			rc = -1;
	}
	free(buf);
	return rc;
}

static inline void free_synthetic(struct dataset *ds)
{
	if (!ds)
		return;
	free(ds->train.pixels);
	free(ds->train.labels);
	free(ds->test.pixels);
	free(ds->test.labels);
	free(ds);
}

/* A small configuration for the synthetic set. */
static inline void small_config(struct train_config *cfg)
{
	config_defaults(cfg);
	cfg->epochs = 3;
	cfg->batch_size = 16;
	cfg->eval_batch_size = 32;
	cfg->val_size = 100;
	cfg->hidden[0] = 64;
}

/* Train until all epochs are done or `steps` more batches have run, whichever
 * comes first; steps < 0 means no step limit. Stopping right after an epoch's
 * last batch leaves the epoch un-ended, a position checkpoints must handle. */
static inline void run_trainer(struct trainer *t, long steps)
{
	while (!trainer_finished(t) && steps != 0) {
		if (trainer_epoch_done(t)) {
			trainer_end_epoch(t, NULL);
			continue;
		}
		trainer_step(t);
		if (steps > 0)
			steps--;
	}
}

#endif
