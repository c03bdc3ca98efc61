/*
 * bench-engine.c - how close training comes to the machine's sgemm limit, and
 * how it compares with PyTorch 1.13, measured in one run (these machines are
 * shared and noisy, so only ratios within a run mean anything).
 *
 *   bench-engine [EPOCHS]     the lesson's figures (EPOCHS per run, 5), then resnet20's
 *   bench-engine --sweep      the scaling table (below)
 *   bench-engine --resnet     resnet20's figures alone
 *   bench-engine --sequences  the language models' figures alone (issue 24)
 *
 *   1. sgemm peak: large square sgemm (n = 2048) with OpenBLAS on 2 threads and
 *      on 1 thread, best of several samples, before and after the training
 *      runs (the better of the two); the kernel OpenBLAS picked
 *      (openblas_get_corename).
 *   2. engine epoch: train one epoch (50000 samples, batch 64) + validation
 *      (10000, batch 128) of the lesson's MLP, EPOCHS times, in a child
 *      process whose peak RSS is reported.
 *   3. efficiency = FLOPs of the epoch / (median epoch seconds x the peak of
 *      the same thread count); the best epoch's too; flatness = slowest /
 *      fastest epoch.
 *   4. lenet5: its epoch (the same data, batch and optimizer) with threads=2,
 *      beside PyTorch 1.13's for the same model, data and cores, measured in
 *      the same run by bench/torch-epoch.py (when /usr/bin/python3 has torch),
 *      and the lesson's MLP in PyTorch too.
 *
 *   5. resnet20 (He et al.'s CIFAR ResNet, spec.h) on Fashion-MNIST: 5000
 *      training + 1000 validation samples an epoch, batch 128, SGD (lr 0.1,
 *      momentum 0.9, weight decay 5e-4), threads=2 and threads=1, 2 epochs;
 *      beside PyTorch 1.13's epoch for the same module (bench/torch-epoch.py
 *      resnet20), data and cores at its best: the faster of 1 and 2 torch
 *      threads, OPENBLAS_NUM_THREADS=1.
 *
 *   6. the language models of issue 24 (doc/sequences.md), char_lstm (2 x 256
 *      LSTM) and gpt (4 pre-LN causal layers of 128), their defaults, on
 *      Debian's fortunes (the fortunes package's text files, imported as
 *      traind imports a text: a char vocabulary), context 128, batch 64,
 *      Adam: an epoch of 640 training windows and 64 validation windows,
 *      3 epochs, threads 2 and 1; training tokens per second by the median
 *      epoch, beside PyTorch 1.13's for the same modules, windows and cores
 *      (bench/torch-seq.py) at its best: the faster of 1 and 2 torch
 *      threads, OPENBLAS_NUM_THREADS=1. Goal: 2x.
 *
 * The sweep: the MLP 784-H-10 for H in 256/1024/4096, batch 64/256/1024,
 * threads 1 and 2, on 10000 training and 2000 validation samples per epoch
 * (fewer than the lesson's, so the table takes minutes), 3 epochs per cell:
 * the median epoch, its efficiency against the same thread count's peak, and
 * PyTorch's median epoch for the same shape, data and threads.
 *
 * FLOPs of the MLP 784-H-10 per training sample: forward 2(784H + 10H),
 * backward 2(784H) (dW1) + 2(10H) (dW2) + 2(10H) (the gradient into the
 * hidden layer; none at the input); per validation sample the forward. For
 * H = 256: 818,176 per training sample x 50000 + 406,528 x 10000.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <sys/stat.h>

#include "traind/config.h"
#include "traind/dataset.h"
#include "traind/kernels.h"
#include "traind/trainer.h"

#define MAX_EPOCHS 64

/* Targets of the issue ("Speed at the hardware's limit"). */
#define TARGET_EFFICIENCY 0.60
#define TARGET_FLATNESS 1.10
#define TARGET_TORCH_MLP 4.0
#define TARGET_TORCH_LENET 3.0
#define TARGET_RSS_MB 120.0
#define TARGET_TORCH_RESNET 2.0   /* issue 22 */
#define TARGET_TORCH_SEQ 2.0      /* issue 24 */
#define FORTUNES "/usr/share/games/fortunes"

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

/* One training run: the model, its shape and data, and the thread count. */
struct run_spec {
	const char *model;      /* NULL: the MLP of `hidden` */
	bool sgd;               /* SGD lr 0.1, momentum 0.9, weight decay 5e-4 (else the default Adam) */
	uint32_t hidden;
	uint32_t batch;
	uint32_t train;         /* training samples per epoch (0: the lesson's 50000) */
	uint32_t val;           /* validation samples */
	uint32_t context;       /* a text's windows (the language models) */
	int threads;
	int epochs;
};

static double mlp_flops(uint32_t h, uint32_t train, uint32_t val)
{
	double fwd = 2.0 * (784.0 * h + 10.0 * h), bwd = 2.0 * 784.0 * h + 4.0 * 10.0 * h;

	return (fwd + bwd) * train + fwd * val;
}

struct epoch_result {
	double best, median, worst;
	long rss_kb;            /* the child's peak RSS */
};

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

/* In a child: load MNIST, run the epochs of r, write the epoch times to fd. */
static int run_epochs(const char *dir, const struct run_spec *r, int fd)
{
	struct dataset *ds = NULL;
	struct trainer *t = NULL;
	struct train_config cfg;
	struct tr_err err = { 0 };
	double times[MAX_EPOCHS];

	config_defaults(&cfg);
	cfg.epochs = (uint32_t)r->epochs;
	cfg.threads = (uint32_t)r->threads;
	if (r->model)
		snprintf(cfg.model, sizeof(cfg.model), "%s", r->model);
	if (r->hidden)
		cfg.hidden[0] = r->hidden;
	if (r->batch)
		cfg.batch_size = r->batch;
	if (r->train) {
		cfg.train_size = r->train;
		cfg.val_size = r->val;
	}
	if (r->context) {
		cfg.context = r->context;
		snprintf(cfg.dataset, sizeof(cfg.dataset), "text");
	}
	if (r->sgd) {
		config_set(&cfg, "optimizer", "sgd", NULL);
		cfg.lr = 0.1;
		cfg.momentum = 0.9;
		cfg.weight_decay = 5e-4;
	}
	if (dataset_load(&ds, dir, &err) < 0 || trainer_new(&t, &cfg, ds, &err) < 0) {
		fprintf(stderr, "bench-engine: %s\n", err.msg);
		return 1;
	}
	for (int e = 0; e < r->epochs; e++) {
		double t0 = now();

		while (!trainer_epoch_done(t))
			trainer_step(t);
		trainer_end_epoch(t, NULL);
		times[e] = now() - t0;
	}
	if (write(fd, times, sizeof(double) * (size_t)r->epochs) < 0)
		return 1;
	trainer_free(t);
	dataset_free(ds);
	return 0;
}

static int measure(const char *dir, const struct run_spec *r, struct epoch_result *out)
{
	int fds[2];
	pid_t pid;
	int status;
	struct rusage ru;
	double times[MAX_EPOCHS];
	ssize_t want = (ssize_t)(sizeof(double) * (size_t)r->epochs);

	if (pipe(fds) < 0)
		return -1;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		_exit(run_epochs(dir, r, fds[1]));
	}
	close(fds[1]);
	if (read(fds[0], times, (size_t)want) != want) {
		close(fds[0]);
		waitpid(pid, &status, 0);
		return -1;
	}
	close(fds[0]);
	wait4(pid, &status, 0, &ru);
	qsort(times, (size_t)r->epochs, sizeof(double), cmp_double);
	out->best = times[0];
	out->median = times[r->epochs / 2];
	out->worst = times[r->epochs - 1];
	out->rss_kb = ru.ru_maxrss;
	return 0;
}

/* PyTorch's median epoch for `model` (lenet5 or mlp) of r's shape, or a
 * negative value when PyTorch is not there. */
static double torch_epoch(const char *data, const char *model, const struct run_spec *r)
{
	char cmd[8192], line[128];
	double times[MAX_EPOCHS];
	int n = 0;
	FILE *p;

	if (access("/usr/bin/python3", X_OK) != 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "%s/usr/bin/python3 %s/torch-epoch.py %s '%s' %d %d %u %u %u %u 2>/dev/null",
		 strcmp(model, "resnet20") == 0 ? "OPENBLAS_NUM_THREADS=1 " : "", BENCH_DIR, model, data, r->threads, r->epochs, r->hidden ? r->hidden : 256,
		 r->batch ? r->batch : 64, r->train ? r->train : 50000, r->train ? r->val : 10000);
	fflush(stdout);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (n < MAX_EPOCHS && fgets(line, sizeof(line), p))
		if (sscanf(line, "epoch %lf", &times[n]) == 1)
			n++;
	if (pclose(p) != 0 || n == 0)
		return -1;
	qsort(times, (size_t)n, sizeof(double), cmp_double);
	return times[n / 2];
}

static const char *verdict(int ok)
{
	return ok ? "MET" : "NOT MET";
}

static void peaks(double *peak2, double *peak1)
{
	double p2 = sgemm_peak(2, 2048, 8), p1 = sgemm_peak(1, 2048, 4);

	if (p2 > *peak2)
		*peak2 = p2;
	if (p1 > *peak1)
		*peak1 = p1;
}

static int lesson(const char *data, const char *dir, int epochs, int torch)
{
	const double flops = mlp_flops(256, 50000, 10000);
	double peak2 = 0, peak1 = 0, eff2, eff1, flat2, flat1, tl = -1, tm = -1;
	struct run_spec s2 = { .threads = 2, .epochs = epochs }, s1 = s2, sl = s2;
	struct epoch_result r2, r1, rl;

	peaks(&peak2, &peak1);
	s1.threads = 1;
	sl.model = "lenet5";
	sl.epochs = epochs < 3 ? epochs : 3;
	if (measure(dir, &s2, &r2) < 0 || measure(dir, &s1, &r1) < 0) {
		fprintf(stderr, "bench-engine: training run failed (is MNIST in %s?)\n", dir);
		return 1;
	}
	if (measure(dir, &sl, &rl) < 0) {
		fprintf(stderr, "bench-engine: the lenet5 run failed\n");
		return 1;
	}
	peaks(&peak2, &peak1);   /* again after training: the VM's speed drifts */
	if (torch) {
		tl = torch_epoch(data, "lenet5", &sl);
		tm = torch_epoch(data, "mlp", &s2);
	}
	eff2 = flops / (r2.median * peak2);
	eff1 = flops / (r1.median * peak1);
	flat2 = r2.worst / r2.best;
	flat1 = r1.worst / r1.best;
	printf("OpenBLAS kernel (openblas_get_corename): %s\n", openblas_get_corename());
	printf("sgemm peak (n=2048, best sample of two rounds): 2 threads %.1f GFLOP/s, 1 thread %.1f GFLOP/s\n",
	       peak2 / 1e9, peak1 / 1e9);
	printf("lesson MLP epoch (train 50000 + val 10000, batch 64), %d epochs each:\n", epochs);
	printf("  threads=2: best %.3f s, median %.3f s, slowest %.3f s, peak RSS %.1f MB\n",
	       r2.best, r2.median, r2.worst, r2.rss_kb / 1024.0);
	printf("  threads=1: best %.3f s, median %.3f s, slowest %.3f s, peak RSS %.1f MB\n",
	       r1.best, r1.median, r1.worst, r1.rss_kb / 1024.0);
	printf("physical floor at the 2-thread peak: %.3f s per epoch\n", flops / peak2);
	printf("efficiency threads=2 by the median: %.2f (by the best %.2f); target >= %.2f: %s\n", eff2,
	       flops / (r2.best * peak2), TARGET_EFFICIENCY, verdict(eff2 >= TARGET_EFFICIENCY));
	printf("efficiency threads=1 by the median vs the 1-thread peak: %.2f (by the best %.2f)\n", eff1,
	       flops / (r1.best * peak1));
	printf("flatness (slowest / fastest of %d epochs): threads=2 %.2f, threads=1 %.2f; target <= %.2f: %s\n",
	       epochs, flat2, flat1, TARGET_FLATNESS, verdict(flat2 <= TARGET_FLATNESS));
	printf("speedup threads=2 over threads=1 (medians): %.2fx\n", r1.median / r2.median);
	printf("peak RSS of a lesson job: %.1f MB; target <= %.0f MB: %s\n", r2.rss_kb / 1024.0,
	       TARGET_RSS_MB, verdict(r2.rss_kb / 1024.0 <= TARGET_RSS_MB));
	printf("lenet5 epoch, threads=2, %d epochs: best %.3f s, median %.3f s, peak RSS %.1f MB\n",
	       sl.epochs, rl.best, rl.median, rl.rss_kb / 1024.0);
	if (tl < 0 || tm < 0) {
		printf("PyTorch: not measured (%s)\n", torch ? "no torch for /usr/bin/python3" : "--no-torch");
		return 0;
	}
	printf("PyTorch 1.13, same data in tensors, 2 threads, median epoch: lenet5 %.3f s, lesson MLP %.3f s\n",
	       tl, tm);
	printf("traind vs PyTorch by the median: lesson MLP %.2fx faster (target >= %.0fx: %s), lenet5 %.2fx faster (target >= %.0fx: %s)\n",
	       tm / r2.median, TARGET_TORCH_MLP, verdict(tm / r2.median >= TARGET_TORCH_MLP),
	       tl / rl.median, TARGET_TORCH_LENET, verdict(tl / rl.median >= TARGET_TORCH_LENET));
	return 0;
}

/* resnet20 on Fashion-MNIST beside PyTorch's best (see the top, 5.). */
static int resnet(const char *data, int torch)
{
	char dir[4096];
	struct run_spec s2 = { .model = "resnet20", .sgd = true, .batch = 128,
			       .train = 5000, .val = 1000, .threads = 2, .epochs = 2 },
			s1 = s2, st = s2;
	struct epoch_result r2, r1;
	double t1 = -1, t2 = -1, best;

	snprintf(dir, sizeof(dir), "%s/fashion-mnist", data);
	s1.threads = 1;
	if (measure(dir, &s2, &r2) < 0 || measure(dir, &s1, &r1) < 0) {
		fprintf(stderr, "bench-engine: the resnet20 run failed (is Fashion-MNIST in %s?)\n", dir);
		return 1;
	}
	printf("resnet20 epoch (Fashion-MNIST, train %u + val %u, batch %u, SGD), %d epochs each:\n",
	       s2.train, s2.val, s2.batch, s2.epochs);
	printf("  threads=2: best %.3f s, median %.3f s, peak RSS %.1f MB\n", r2.best, r2.median,
	       r2.rss_kb / 1024.0);
	printf("  threads=1: best %.3f s, median %.3f s, peak RSS %.1f MB\n", r1.best, r1.median,
	       r1.rss_kb / 1024.0);
	if (torch) {
		st.threads = 1;
		t1 = torch_epoch(data, "resnet20", &st);
		st.threads = 2;
		t2 = torch_epoch(data, "resnet20", &st);
	}
	if (t1 < 0 || t2 < 0) {
		printf("PyTorch: not measured (%s)\n", torch ? "no torch for /usr/bin/python3" : "--no-torch");
		return 0;
	}
	best = t1 < t2 ? t1 : t2;
	printf("PyTorch 1.13 resnet20, same module, data and cores, OPENBLAS_NUM_THREADS=1, median epoch: 1 thread %.3f s, 2 threads %.3f s\n",
	       t1, t2);
	printf("traind (threads=2) vs PyTorch at its best by the median: resnet20 %.2fx faster (target >= %.0fx: %s)\n",
	       best / r2.median, TARGET_TORCH_RESNET, verdict(best / r2.median >= TARGET_TORCH_RESNET));
	return 0;
}

/* PyTorch's median epoch of a language model (bench/torch-seq.py). */
static double torch_seq_epoch(const char *dir, const char *model, const struct run_spec *r)
{
	char cmd[8192], line[128];
	double times[MAX_EPOCHS];
	int n = 0;
	FILE *p;

	if (access("/usr/bin/python3", X_OK) != 0)
		return -1;
	snprintf(cmd, sizeof(cmd),
		 "OPENBLAS_NUM_THREADS=1 /usr/bin/python3 %s/torch-seq.py %s '%s' %d %d %u %u %u %u 2>/dev/null",
		 BENCH_DIR, model, dir, r->threads, r->epochs, r->train, r->val, r->batch, r->context);
	fflush(stdout);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (n < MAX_EPOCHS && fgets(line, sizeof(line), p))
		if (sscanf(line, "epoch %lf", &times[n]) == 1)
			n++;
	if (pclose(p) != 0 || n == 0)
		return -1;
	qsort(times, (size_t)n, sizeof(double), cmp_double);
	return times[n / 2];
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Debian's fortunes as traind imports a text, into dir/text: its files
 * linked, dataset.json from the engine's own dataset_text_meta. */
static int fortunes_dataset(const char *dir, char *out, size_t len)
{
	char *names[64], *json = NULL, path[8400], target[4400];
	size_t n = 0;
	struct tr_err err = { 0 };
	struct dirent *de;
	DIR *d = opendir(FORTUNES);
	FILE *f;
	int rc = -1;

	if (!d)
		return -1;
	snprintf(out, len, "%s/text", dir);
	mkdir(out, 0755);
	while ((de = readdir(d)) && n < 64) {
		struct stat st;
		size_t l = strlen(de->d_name);

		snprintf(target, sizeof(target), "%s/%s", FORTUNES, de->d_name);
		if (de->d_name[0] == '.' || lstat(target, &st) < 0 || !S_ISREG(st.st_mode) ||
		    (l > 4 && strcmp(de->d_name + l - 4, ".dat") == 0))
			continue;
		snprintf(path, sizeof(path), "%s/%s", out, de->d_name);
		if (symlink(target, path) < 0)
			break;
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_str);
	if (n && dataset_text_meta(out, (const char *const *)names, n, DS_VOCAB_CHAR, 0.1, &json, &err) == 0) {
		snprintf(path, sizeof(path), "%s/dataset.json", out);
		f = fopen(path, "w");
		if (f && fputs(json, f) >= 0)
			rc = 0;
		if (f)
			fclose(f);
	} else if (n) {
		fprintf(stderr, "bench-engine: fortunes: %s\n", err.msg);
	}
	free(json);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	return rc;
}

/* char_lstm and gpt on fortunes beside PyTorch's best (see the top, 6.). */
static int sequences(int torch)
{
	static const char *const models[] = { "char_lstm", "gpt" };
	char tmp[] = "/tmp/bench-engine-text-XXXXXX", dir[4200], cmd[4400];
	int rc = 0;

	if (!mkdtemp(tmp) || fortunes_dataset(tmp, dir, sizeof(dir)) < 0) {
		fprintf(stderr, "bench-engine: no fortunes text (%s: the fortunes package)\n", FORTUNES);
		return 1;
	}
	printf("language models (issue 24) on fortunes, context 128, batch 64, Adam; an epoch of 640 training "
	       "and 64 validation windows, 3 epochs each:\n");
	for (size_t m = 0; m < 2 && rc == 0; m++) {
		struct run_spec s2 = { .model = models[m], .batch = 64, .train = 640, .val = 64, .context = 128,
				       .threads = 2, .epochs = 3 },
				s1 = s2, st = s2;
		struct epoch_result r2, r1;
		double t1 = -1, t2 = -1, best, tokens = 640.0 * 128.0;

		s1.threads = 1;
		if (measure(dir, &s2, &r2) < 0 || measure(dir, &s1, &r1) < 0) {
			fprintf(stderr, "bench-engine: the %s run failed\n", models[m]);
			rc = 1;
			break;
		}
		printf("  %s: threads=2 median epoch %.3f s (%.0f training tokens/s), threads=1 %.3f s (%.0f), peak RSS %.1f MB\n",
		       models[m], r2.median, tokens / r2.median, r1.median, tokens / r1.median, r2.rss_kb / 1024.0);
		if (torch) {
			st.threads = 1;
			t1 = torch_seq_epoch(dir, models[m], &st);
			st.threads = 2;
			t2 = torch_seq_epoch(dir, models[m], &st);
		}
		if (t1 < 0 || t2 < 0) {
			printf("  PyTorch: not measured (%s)\n", torch ? "no torch for /usr/bin/python3" : "--no-torch");
			continue;
		}
		best = t1 < t2 ? t1 : t2;
		printf("  PyTorch 1.13 %s, same module, windows and cores, OPENBLAS_NUM_THREADS=1: 1 thread %.3f s (%.0f tokens/s), 2 threads %.3f s (%.0f)\n",
		       models[m], t1, tokens / t1, t2, tokens / t2);
		printf("  traind (threads=2) vs PyTorch at its best: %s %.2fx the tokens per second (goal >= %.0fx: %s)\n",
		       models[m], best / r2.median, TARGET_TORCH_SEQ, verdict(best / r2.median >= TARGET_TORCH_SEQ));
	}
	printf("OpenBLAS kernel (openblas_get_corename): %s\n", openblas_get_corename());
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "bench-engine: could not remove %s\n", tmp);
	return rc;
}

static int sweep(const char *data, const char *dir, int torch)
{
	static const uint32_t widths[] = { 256, 1024, 4096 }, batches[] = { 64, 256, 1024 };
	struct run_spec s = { .train = 10000, .val = 2000, .epochs = 3 };
	double peak[3] = { 0 };

	peaks(&peak[2], &peak[1]);
	printf("OpenBLAS kernel (openblas_get_corename): %s\n", openblas_get_corename());
	printf("sgemm peak (n=2048): 2 threads %.1f GFLOP/s, 1 thread %.1f GFLOP/s (before the sweep)\n",
	       peak[2] / 1e9, peak[1] / 1e9);
	printf("sweep: MLP 784-H-10, %u training + %u validation samples per epoch (not the lesson's 50000 + 10000),\n"
	       "median of %d epochs; efficiency = the shape's FLOPs / (median epoch x that thread count's peak)\n",
	       s.train, s.val, s.epochs);
	printf("%6s %6s %3s | %9s %6s | %9s %8s\n", "hidden", "batch", "thr", "traind s", "eff", "torch s",
	       "speedup");
	for (size_t h = 0; h < sizeof(widths) / sizeof(widths[0]); h++)
		for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++)
			for (int thr = 1; thr <= 2; thr++) {
				struct epoch_result r;
				double ts = -1, eff;

				s.hidden = widths[h];
				s.batch = batches[b];
				s.threads = thr;
				if (measure(dir, &s, &r) < 0) {
					fprintf(stderr, "bench-engine: the sweep's run H=%u B=%u failed\n",
						s.hidden, s.batch);
					return 1;
				}
				if (torch)
					ts = torch_epoch(data, "mlp", &s);
				eff = mlp_flops(s.hidden, s.train, s.val) / (r.median * peak[thr]);
				if (ts > 0)
					printf("%6u %6u %3d | %9.3f %6.2f | %9.3f %7.2fx\n", s.hidden, s.batch,
					       thr, r.median, eff, ts, ts / r.median);
				else
					printf("%6u %6u %3d | %9.3f %6.2f | %9s %8s\n", s.hidden, s.batch, thr,
					       r.median, eff, "-", "-");
				fflush(stdout);
			}
	{
		double before2 = peak[2], before1 = peak[1];

		peaks(&peak[2], &peak[1]);
		printf("sgemm peak after the sweep: 2 threads %.1f GFLOP/s, 1 thread %.1f GFLOP/s (efficiencies above use the before figures %.1f / %.1f)\n",
		       peak[2] / 1e9, peak[1] / 1e9, before2 / 1e9, before1 / 1e9);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *data = getenv("TRAIND_DATA_DIR");
	char dir[4096];
	int epochs = 5, do_sweep = 0, torch = 1, only_resnet = 0, only_seq = 0, rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--sweep") == 0) {
			do_sweep = 1;
		} else if (strcmp(argv[i], "--resnet") == 0) {
			only_resnet = 1;
		} else if (strcmp(argv[i], "--sequences") == 0) {
			only_seq = 1;
		} else if (strcmp(argv[i], "--no-torch") == 0) {
			torch = 0;
		} else if (atoi(argv[i]) >= 1 && atoi(argv[i]) <= MAX_EPOCHS) {
			epochs = atoi(argv[i]);
		} else {
			fprintf(stderr, "usage: bench-engine [EPOCHS (1..%d, 5)] [--sweep | --resnet | --sequences] [--no-torch]\n",
				MAX_EPOCHS);
			return 2;
		}
	}
	if (!data)
		data = "data";
	snprintf(dir, sizeof(dir), "%s/mnist", data);
	kernels_global_init();
	if (only_resnet)
		return resnet(data, torch);
	if (only_seq)
		return sequences(torch);
	if (do_sweep)
		return sweep(data, dir, torch);
	rc = lesson(data, dir, epochs, torch);
	return rc ? rc : resnet(data, torch);
}
