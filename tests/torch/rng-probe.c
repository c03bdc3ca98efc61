/*
 * rng-probe.c - what a job draws, for the PyTorch parity test of its random
 * streams (tests/torch/test_rng.py).
 *
 *   rng-probe DATA_DIR OUT.safetensors [KEY=VALUE ...]
 *
 * Builds the job KEY=VALUE describes (config keys as traind-train's flags,
 * e.g. model=lenet5 rng=torch epochs=3) on DATA_DIR/<dataset> through
 * trainer_new, then for each epoch marks its batches done without training
 * (the weights stay the initial ones) and ends it with trainer_end_epoch,
 * which evaluates the validation set and draws the next order, as a real job.
 * OUT gets the initial model's tensors (net.*, state_dict names), "split" U32
 * [images] (the train part, then the validation part) and "order.E" U32
 * [n_train] for epochs E = 1..epochs: positions in the train part, in the
 * order that epoch trains them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/config.h"
#include "traind/dataset.h"
#include "traind/fileio.h"
#include "traind/safetensors.h"
#include "traind/trainer.h"

static int fail(const char *what, const char *msg)
{
	fprintf(stderr, "rng-probe: %s: %s\n", what, msg);
	return 1;
}

int main(int argc, char **argv)
{
	struct tr_err err = { 0 };
	struct train_config cfg;
	struct dataset *ds = NULL;
	struct trainer *t = NULL;
	struct st_writer *w = NULL;
	uint32_t **orders = NULL;
	uint8_t *out = NULL;
	size_t out_len = 0;
	char path[4096], name[32];
	uint64_t shape[1];
	int rc = 1;

	if (argc < 3)
		return fail("usage", "rng-probe DATA_DIR OUT.safetensors [KEY=VALUE ...]");
	config_defaults(&cfg);
	for (int i = 3; i < argc; i++) {
		char key[64];
		const char *eq = strchr(argv[i], '=');

		if (!eq || (size_t)(eq - argv[i]) >= sizeof(key))
			return fail(argv[i], "expected KEY=VALUE");
		memcpy(key, argv[i], (size_t)(eq - argv[i]));
		key[eq - argv[i]] = '\0';
		if (config_set(&cfg, key, eq + 1, &err) < 0)
			return fail(argv[i], err.msg);
	}
	snprintf(path, sizeof(path), "%s/%s", argv[1], cfg.dataset);
	if (dataset_load(&ds, path, &err) < 0)
		return fail(path, err.msg);
	if (trainer_new(&t, &cfg, ds, &err) < 0) {
		fail("trainer", err.msg);
		goto out;
	}
	orders = calloc(cfg.epochs, sizeof(*orders));
	if (!orders || st_writer_new(&w) < 0) {
		fail("probe", "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < t->model.ntensors; i++) {
		const struct net_tensor *x = &t->model.tensors[i];

		if (st_writer_add(w, x->name, x->kind == TENSOR_COUNT ? ST_I64 : ST_F32, x->ndim,
				  x->shape, net_tensor_data(&t->model, x, NULL)) < 0) {
			fail("probe", "out of memory");
			goto out;
		}
	}
	shape[0] = t->n_split;
	if (st_writer_add(w, "split", ST_U32, 1, shape, t->split) < 0) {
		fail("probe", "out of memory");
		goto out;
	}
	shape[0] = t->n_train;
	for (uint32_t e = 0; e < cfg.epochs; e++) {
		orders[e] = malloc((size_t)t->n_train * sizeof(uint32_t));
		if (!orders[e]) {
			fail("probe", "out of memory");
			goto out;
		}
		memcpy(orders[e], t->order, (size_t)t->n_train * sizeof(uint32_t));
		snprintf(name, sizeof(name), "order.%u", e + 1);
		if (st_writer_add(w, name, ST_U32, 1, shape, orders[e]) < 0) {
			fail("probe", "out of memory");
			goto out;
		}
		t->step = t->steps_per_epoch;   /* the epoch's batches, untrained */
		if (trainer_end_epoch(t, NULL) < 0) {
			fail("probe", "trainer_end_epoch failed");
			goto out;
		}
	}
	if (st_writer_finish(w, &out, &out_len) < 0 ||
	    file_write_atomic(argv[2], out, out_len, &err) < 0) {
		fail(argv[2], err.msg[0] ? err.msg : "cannot write");
		goto out;
	}
	rc = 0;
out:
	if (orders)
		for (uint32_t e = 0; e < cfg.epochs; e++)
			free(orders[e]);
	free(orders);
	free(out);
	st_writer_free(w);
	trainer_free(t);
	dataset_free(ds);
	return rc;
}
