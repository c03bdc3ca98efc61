/*
 * bench-augment.c - what --augment costs per training epoch: lenet5 on
 * 20000 MNIST samples (batch 64, 2 threads, rng torch), one epoch without
 * augmentation and one with random_crop(28,padding=2) and
 * random_horizontal_flip(0.5), in alternating order, ROUNDS times in one
 * run; prints
 * each pair's seconds and their ratio, the best epoch of each and their
 * ratio, and the transforms alone (augment_rows over the epoch's 20000
 * gathered samples, on one thread) as a fraction of the best plain epoch;
 * with the CPU model and the OpenBLAS kernel (these machines are shared:
 * only the ratios within a run mean anything).
 *   TRAIND_DATA_DIR=... build/bench/bench-augment [ROUNDS]   (3)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "traind/augment.h"
#include "traind/dataset.h"
#include "traind/numerics.h"
#include "traind/trainer.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Seconds of one training epoch (the steps, not the validation). */
static double epoch(const struct dataset *ds, const char *augment, char *numerics, size_t len)
{
	struct train_config cfg;
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	double t0;

	config_defaults(&cfg);
	snprintf(cfg.model, sizeof(cfg.model), "lenet5");
	cfg.train_size = 20000;
	cfg.epochs = 1;
	snprintf(cfg.augment, sizeof(cfg.augment), "%s", augment);
	if (trainer_new(&t, &cfg, ds, &err) < 0) {
		fprintf(stderr, "bench-augment: %s\n", err.msg);
		exit(1);
	}
	snprintf(numerics, len, "%s", t->numerics);
	t0 = now();
	while (!trainer_epoch_done(t))
		trainer_step(t);
	t0 = now() - t0;
	trainer_free(t);
	return t0;
}

int main(int argc, char **argv)
{
	const char *dir = getenv("TRAIND_DATA_DIR");
	const char *aug = "random_crop(28,padding=2),random_horizontal_flip(0.5)";
	int rounds = argc > 1 ? atoi(argv[1]) : 3;
	char path[4096], numerics[NUMERICS_TEXT_MAX], cpu[512] = "?", line[512];
	struct tr_err err = { 0 };
	struct dataset *ds = NULL;
	double lo = 1e9, hi = 0, best_plain = 1e9, best_with = 1e9, alone = 1e9;
	FILE *f;

	snprintf(path, sizeof(path), "%s/mnist", dir ? dir : "data");
	if (dataset_load(&ds, path, &err) < 0) {
		fprintf(stderr, "bench-augment: %s\n", err.msg);
		return 1;
	}
	f = fopen("/proc/cpuinfo", "r");
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "model name", 10) == 0) {
			char *c = strchr(line, ':');

			snprintf(cpu, sizeof(cpu), "%s", c ? c + 2 : line);
			cpu[strcspn(cpu, "\n")] = '\0';
			break;
		}
	if (f)
		fclose(f);
	epoch(ds, "", numerics, sizeof(numerics));   /* warm up */
	printf("CPU: %s\nnumerics: %s\nlenet5, 20000 samples, batch 64, 2 threads; augment: %s\n", cpu, numerics,
	       aug);
	for (int r = 0; r < rounds; r++) {
		/* the order alternates, so that a drift of the machine's load
		 * does not favour one of the two */
		double plain = r % 2 ? 0 : epoch(ds, "", numerics, sizeof(numerics));
		double with = epoch(ds, aug, numerics, sizeof(numerics));
		double ratio;

		if (r % 2)
			plain = epoch(ds, "", numerics, sizeof(numerics));
		ratio = with / plain;

		best_plain = plain < best_plain ? plain : best_plain;
		best_with = with < best_with ? with : best_with;
		lo = ratio < lo ? ratio : lo;
		hi = ratio > hi ? ratio : hi;
		printf("round %d: plain %.3f s, augmented %.3f s, ratio %.3f\n", r + 1, plain, with, ratio);
		fflush(stdout);
	}
	printf("augmented / plain epoch: %.3f .. %.3f; best augmented / best plain: %.3f\n", lo, hi,
	       best_with / best_plain);
	{
		/* the transforms alone, the epoch's 20000 samples in batches of 64 */
		struct augment a;
		struct augment_data d = { 1, 28, 28, NULL, NULL };
		float *x = calloc(64 * 784, sizeof(float));
		uint32_t idx[64];

		augment_parse(&a, aug, &err);
		for (int r = 0; r < rounds; r++) {
			double t0 = now();

			for (uint32_t b = 0; b < 20000 / 64 + 1; b++) {
				for (uint32_t i = 0; i < 64; i++)
					idx[i] = b * 64 + i;
				augment_rows(&a, &d, x, idx, 64, 42, 0, true);
			}
			t0 = now() - t0;
			alone = t0 < alone ? t0 : alone;
		}
		free(x);
		printf("the transforms alone: %.1f ms an epoch, %.2f%% of the best plain epoch\n", alone * 1e3,
		       100 * alone / best_plain);
	}
	dataset_free(ds);
	return 0;
}
