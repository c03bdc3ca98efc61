/*
 * testutil.h - helpers shared by the engine tests: a small synthetic dataset
 * held in memory (so unit tests need no download), and running a trainer.
 * Header-only; each test program includes it once.
 */
#ifndef TRAIND_TESTUTIL_H
#define TRAIND_TESTUTIL_H

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
