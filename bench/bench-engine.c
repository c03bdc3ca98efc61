/*
 * bench-engine.c - how close one epoch of the lesson's model comes to the
 * machine's sgemm limit, measured in one run (these machines are shared and
 * noisy, so only ratios within a run mean anything).
 *
 *   1. sgemm peak: large square sgemm (n = 2048) with OpenBLAS on 2 threads and
 *      on 1 thread, best of several samples.
 *   2. engine epoch: train one epoch (50000 samples, batch 64) + validation
 *      (10000, batch 128) of the lesson's MLP, several times, in a child
 *      process whose peak RSS is reported.
 *   3. efficiency = 4.50e10 FLOP / (epoch seconds x 2-thread peak FLOP/s).
 *
 *   4. lenet5: its epoch (the same data, batch and optimizer) with threads=2,
 *      beside PyTorch 1.13's for the same model, data and cores, measured in
 *      the same run by bench/torch-epoch.py (when /usr/bin/python3 has torch),
 *      and the lesson's MLP in PyTorch too.
 *
 * FLOPs per epoch: 818,176 per training sample (forward 406,528, backward
 * 411,648, no input gradient) x 50000 + 406,528 x 10000 validation.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "traind/config.h"
#include "traind/dataset.h"
#include "traind/kernels.h"
#include "traind/trainer.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double sgemm_peak(int threads, int n, int samples)
{
	float *a = malloc(sizeof(float) * (size_t)n * n);
	float *b = malloc(sizeof(float) * (size_t)n * n);
	float *c = malloc(sizeof(float) * (size_t)n * n);
	double best = 0;

	for (size_t i = 0; i < (size_t)n * n; i++) {
		a[i] = (float)(i % 17) * 0.01f;
		b[i] = (float)(i % 13) * 0.01f;
	}
	openblas_set_num_threads(threads);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
	for (int s = 0; s < samples; s++) {
		double t0 = now(), dt;

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
		dt = now() - t0;
		if (2.0 * n * n * (double)n / dt > best)
			best = 2.0 * n * n * (double)n / dt;
	}
	openblas_set_num_threads(1);
	free(a);
	free(b);
	free(c);
	return best;
}

struct epoch_result {
	double best, median;
	double sps;     /* training samples per second at the best epoch */
};

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

/* In a child: load MNIST, run `epochs` epochs of `model` (NULL: the lesson's
 * MLP), write the epoch times to fd. */
static int run_epochs(const char *dir, int epochs, int threads, const char *model, int fd)
{
	struct dataset *ds = NULL;
	struct trainer *t = NULL;
	struct train_config cfg;
	struct tr_err err = { 0 };
	double times[64];

	config_defaults(&cfg);
	cfg.epochs = (uint32_t)epochs;
	cfg.threads = (uint32_t)threads;
	if (model)
		snprintf(cfg.model, sizeof(cfg.model), "%s", model);
	if (dataset_load(&ds, dir, &err) < 0 || trainer_new(&t, &cfg, ds, &err) < 0) {
		fprintf(stderr, "bench-engine: %s\n", err.msg);
		return 1;
	}
	for (int e = 0; e < epochs; e++) {
		double t0 = now();

		while (!trainer_epoch_done(t))
			trainer_step(t);
		trainer_end_epoch(t, NULL);
		times[e] = now() - t0;
	}
	if (write(fd, times, sizeof(double) * (size_t)epochs) < 0)
		return 1;
	trainer_free(t);
	dataset_free(ds);
	return 0;
}

static int measure(const char *dir, int epochs, int threads, const char *model,
		   struct epoch_result *r, long *rss_kb)
{
	int fds[2];
	pid_t pid;
	int status;
	struct rusage ru;
	double times[64];

	if (pipe(fds) < 0)
		return -1;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		_exit(run_epochs(dir, epochs, threads, model, fds[1]));
	}
	close(fds[1]);
	if (read(fds[0], times, sizeof(double) * (size_t)epochs) != (ssize_t)(sizeof(double) * (size_t)epochs)) {
		close(fds[0]);
		waitpid(pid, &status, 0);
		return -1;
	}
	close(fds[0]);
	wait4(pid, &status, 0, &ru);
	qsort(times, (size_t)epochs, sizeof(double), cmp_double);
	r->best = times[0];
	r->median = times[epochs / 2];
	r->sps = 50000.0 / times[0];
	*rss_kb = ru.ru_maxrss;
	return 0;
}

/* PyTorch's median epoch for `model` (lenet5 or mlp) on `threads` threads, or
 * a negative value when PyTorch is not there. */
static double torch_epoch(const char *data, const char *model, int threads, int epochs)
{
	char cmd[8192], line[128];
	double times[64];
	int n = 0;
	FILE *p;

	if (access("/usr/bin/python3", X_OK) != 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/torch-epoch.py %s '%s' %d %d 2>/dev/null",
		 BENCH_DIR, model, data, threads, epochs);
	fflush(stdout);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (n < 64 && fgets(line, sizeof(line), p))
		if (sscanf(line, "epoch %lf", &times[n]) == 1)
			n++;
	if (pclose(p) != 0 || n == 0)
		return -1;
	qsort(times, (size_t)n, sizeof(double), cmp_double);
	return times[n / 2];
}

int main(int argc, char **argv)
{
	const char *data = getenv("TRAIND_DATA_DIR");
	char dir[4096];
	int epochs = argc > 1 ? atoi(argv[1]) : 5;
	const double flops = 818176.0 * 50000 + 406528.0 * 10000;
	double peak2, peak1;
	struct epoch_result r2, r1;
	long rss2, rss1;

	if (epochs < 1 || epochs > 64)
		epochs = 5;
	snprintf(dir, sizeof(dir), "%s/mnist", data ? data : "data");
	kernels_global_init();
	peak2 = sgemm_peak(2, 2048, 8);
	peak1 = sgemm_peak(1, 2048, 4);
	printf("sgemm peak (n=2048, best sample): 2 threads %.1f GFLOP/s, 1 thread %.1f GFLOP/s\n",
	       peak2 / 1e9, peak1 / 1e9);
	if (measure(dir, epochs, 2, NULL, &r2, &rss2) < 0 || measure(dir, epochs, 1, NULL, &r1, &rss1) < 0) {
		fprintf(stderr, "bench-engine: training run failed (is MNIST in %s?)\n", dir);
		return 1;
	}
	/* A second peak sample after training: the VM's speed drifts. */
	{
		double again = sgemm_peak(2, 2048, 8);

		if (again > peak2)
			peak2 = again;
	}
	printf("epoch (train 50000 + val 10000), %d epochs each:\n", epochs);
	printf("  threads=2: best %.3f s, median %.3f s, %.0f samples/s, peak RSS %.1f MB\n",
	       r2.best, r2.median, r2.sps, rss2 / 1024.0);
	printf("  threads=1: best %.3f s, median %.3f s, %.0f samples/s, peak RSS %.1f MB\n",
	       r1.best, r1.median, r1.sps, rss1 / 1024.0);
	printf("physical floor at the 2-thread peak: %.3f s per epoch\n", flops / peak2);
	printf("efficiency threads=2: %.2f (target >= 0.60)\n", flops / (r2.best * peak2));
	printf("efficiency threads=1 vs 1-thread peak: %.2f\n", flops / (r1.best * peak1));
	printf("speedup threads=2 over threads=1: %.2fx\n", r1.best / r2.best);
	{
		int le = epochs < 3 ? epochs : 3;
		struct epoch_result rl;
		long rssl;
		double tl, tm;

		if (measure(dir, le, 2, "lenet5", &rl, &rssl) < 0) {
			fprintf(stderr, "bench-engine: the lenet5 run failed\n");
			return 1;
		}
		printf("lenet5 epoch, threads=2, %d epochs: best %.3f s, median %.3f s, peak RSS %.1f MB\n",
		       le, rl.best, rl.median, rssl / 1024.0);
		tl = torch_epoch(data ? data : "data", "lenet5", 2, le);
		tm = torch_epoch(data ? data : "data", "mlp", 2, le);
		if (tl < 0 || tm < 0) {
			printf("PyTorch: not measured (no torch for /usr/bin/python3)\n");
		} else {
			printf("PyTorch 1.13, same data in tensors, 2 threads, median epoch: lenet5 %.3f s, lesson MLP %.3f s\n",
			       tl, tm);
			printf("traind vs PyTorch (by the median): lenet5 %.2fx faster (goal >= 2), lesson MLP %.2fx faster\n",
			       tl / rl.median, tm / r2.median);
		}
	}
	return 0;
}
