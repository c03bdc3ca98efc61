/*
 * bench-dataset.c - how long loading (dataset_load) and probing
 * (dataset_probe, what traind does for each job at start-up recovery) take
 * for dataset directories given on the command line, e.g. the same MNIST in
 * several formats (tests/lib/dsformats.py writes them):
 *
 *   build/bench/bench-dataset data/mnist /tmp/m-npy /tmp/m-npz /tmp/m-st /tmp/m-csv
 *
 * Prints per directory its format, counts, shape, classes, bytes held, and
 * the best of 3 wall times of each call (the machine is shared: take the
 * best, compare within one run).
 */
#include <stdio.h>
#include <time.h>

#include "traind/dataset.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	int rc = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: bench-dataset DIR...\n");
		return 2;
	}
	printf("%-12s %-28s %8s %6s %10s %7s %10s %9s %9s\n", "format", "dir", "train", "test", "CxHxW",
	       "classes", "MB", "load s", "probe s");
	for (int i = 1; i < argc; i++) {
		double best_load = 1e30, best_probe = 1e30;
		struct dataset *ds = NULL;
		struct dataset_shape sh;
		struct tr_err err;
		char shape[32];

		for (int k = 0; k < 3; k++) {
			double t0 = now();

			if (dataset_load(&ds, argv[i], &err) < 0) {
				fprintf(stderr, "bench-dataset: %s\n", err.msg);
				rc = 1;
				break;
			}
			best_load = now() - t0 < best_load ? now() - t0 : best_load;
			if (k < 2)
				dataset_free(ds);
			t0 = now();
			if (dataset_probe(&sh, argv[i], &err) < 0) {
				fprintf(stderr, "bench-dataset: %s\n", err.msg);
				rc = 1;
				break;
			}
			best_probe = now() - t0 < best_probe ? now() - t0 : best_probe;
		}
		if (!ds || best_probe == 1e30)
			continue;
		snprintf(shape, sizeof(shape), "%ux%ux%u", ds->channels, ds->height, ds->width);
		printf("%-12s %-28.28s %8u %6u %10s %7u %10.1f %9.3f %9.3f\n", ds->format, argv[i], ds->train.count,
		       ds->test.count, shape, ds->classes, (double)dataset_bytes(ds) / 1e6, best_load, best_probe);
		dataset_free(ds);
	}
	return rc;
}
