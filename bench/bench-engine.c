/*
 * bench-engine.c - how close training comes to the machine's float32 sgemm
 * limit, and how it compares with PyTorch 1.13 at its best, measured in one
 * run (these machines are shared and noisy, so only ratios within a run
 * mean anything).
 *
 *   bench-engine [EPOCHS] [--no-torch] [--blas-kernel NAME]   the lesson's figures (EPOCHS per run, 5),
 *                                                             then resnet20's
 *   bench-engine --sweep                                      the scaling table (below)
 *   bench-engine --sweep-cell H,B                             its rows of hidden H and batch B only
 *   bench-engine --mlp [EPOCHS]                               the lesson MLP's figures alone (5. below)
 *   bench-engine --resnet                                     resnet20's figures alone
 *   bench-engine --kernels [EPOCHS]                           the candidate kernels against each other
 *   bench-engine --sequences [gpt|char_lstm]                  the language models' figures alone (issue 24)
 *   bench-engine --conv [EPOCHS]                              lenet5, resnet20 and a BatchNorm CNN with conv gemm and
 *                                                             conv onednn (NCHW and blocked), fp32 and bf16, beside
 *                                                             PyTorch at its best (issues 20, 22); with
 *                                                             TRAIND_BENCH_CONV_SCALE=F each model's samples x F
 *   bench-engine [EPOCHS] --portable                          kernels portable against openblas per path, with
 *                                                             the fair baselines: OpenBLAS Haswell against the
 *                                                             avx2 path, Prescott against the plain C path; ratios
 *                                                             by wall and by CPU time, the load printed (issue 25)
 *
 * Every report starts with the CPU (brand, family/model, features), the
 * OpenBLAS kernel in use and why (blaskernel.h: the same choice as traind's,
 * --blas-kernel pins it as traind's flag does), and OpenBLAS's own pick.
 *
 *   1. sgemm peak: large square sgemm (n = 2048) with OpenBLAS on 2 threads and
 *      on 1 thread, best of several samples, before and after the training
 *      runs (the better of the two), of the best float32 kernel for this CPU
 *      (the one auto picks), and beside it the peak of the kernel in use and
 *      of OpenBLAS's own pick where they differ (a kernel not loaded here is
 *      measured by this program run again with OPENBLAS_CORETYPE set).
 *   2. engine epoch: train one epoch (50000 samples, batch 64) + validation
 *      (10000, batch 128) of the lesson's MLP, EPOCHS times, in a child
 *      process whose peak RSS is reported.
 *   3. efficiency = FLOPs of the epoch / (median epoch seconds x the best
 *      kernel's peak for the same thread count); the best epoch's too;
 *      flatness = slowest / fastest epoch.
 *   4. lenet5: its epoch (the same data, batch and optimizer) with threads=2,
 *      beside PyTorch 1.13's for the same model, data and cores, measured in
 *      the same run by bench/torch-epoch.py (when /usr/bin/python3 has torch),
 *      and the lesson's MLP in PyTorch too. PyTorch at its best: the faster
 *      of 1 and 2 torch threads, OPENBLAS_NUM_THREADS=1 (its OpenBLAS must
 *      not start threads that fight torch's on 2 cores), and the same
 *      OpenBLAS kernel as traind (OPENBLAS_CORETYPE); each figure is printed
 *      with that configuration.
 *   5. precision bf16 (doc/precision.md; where the CPU has AMX or
 *      AVX-512-BF16): the lesson's MLP and lenet5 epochs in bf16, threads=2,
 *      each against its fp32 run measured right before it, and against
 *      PyTorch 1.13 at its best (as above) under torch.autocast("cpu",
 *      torch.bfloat16), bounded in time: PyTorch trains TORCH_BATCHES
 *      batches an epoch, each timed, and its epoch is estimated from the
 *      median batch (torch-epoch.py's TORCH_EPOCH_BATCHES; its runs under
 *      autocast did not finish on a loaded machine); also resnet20's epoch
 *      (section 6's run, threads=2) in bf16 against fp32, no target.
 *      `bench-engine --bf16 [EPOCHS]`: this section alone.
 *
 *   `bench-engine --mlp [EPOCHS]`: the lesson's MLP alone, all its targets in
 *      one run: fp32 and bf16 at threads 2 and 1 (each epoch's detail),
 *      efficiency and flatness against the best kernel's peaks, bf16 over
 *      fp32, PyTorch at its best in float32 and under autocast (bounded as
 *      above, its configuration printed), every ratio by the clock at
 *      threads=2 and by CPU time at one thread each, the load average.
 *
 *   6. resnet20 (He et al.'s CIFAR ResNet, spec.h) on Fashion-MNIST: 5000
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
 *      threads (the 2-thread run gives up after an epoch twice as slow as
 *      1 thread's median), OPENBLAS_NUM_THREADS=1 and traind's OpenBLAS
 *      kernel (OPENBLAS_CORETYPE), its configuration printed. Goal: 2x.
 *      Also the epochs' CPU seconds (what a loaded machine blurs least),
 *      and gpt with seq_kernels 1 (the per-head form of older jobs) beside
 *      the default (3; in float32 the arithmetic of 2) at threads 2, and
 *      where the CPU has bf16, gpt in precision bf16 at threads 2 (its
 *      projections and feed-forward products bf16) beside float32 and
 *      PyTorch's float32. `--sequences gpt` (or char_lstm): one.
 *
 * The sweep: the MLP 784-H-10 for H in 256/1024/4096, batch 64/256/1024,
 * threads 1 and 2, on 10000 training and 2000 validation samples per epoch
 * (fewer than the lesson's, so the table takes minutes), 3 epochs per cell:
 * the median epoch, its efficiency against the best kernel's peak for the
 * same thread count, and PyTorch's median epoch for the same shape and data
 * at its best (1 thread, or the faster of 1 and 2; bounded, TORCH_BATCHES
 * batches an epoch, as in 5.); where the CPU has bf16,
 * the median epoch in precision bf16 and its speedup over fp32.
 *
 * --kernels: every kernel this CPU can run among the ones auto chooses from
 * (Cooperlake, SkylakeX, Haswell, Zen, Sandybridge) and OpenBLAS's own
 * pick, each loaded in a run of this program with OPENBLAS_CORETYPE set:
 * sgemm peaks and the lesson MLP's epoch (threads=2, median of EPOCHS, 3),
 * in rounds that alternate the kernels, the best round of each. This is the
 * measurement behind a rule of blaskernel.c that is not obvious (Zen 4/5:
 * SkylakeX against Zen/Haswell; Cooperlake against SkylakeX).
 *
 * FLOPs of the MLP 784-H-10 per training sample: forward 2(784H + 10H),
 * backward 2(784H) (dW1) + 2(10H) (dW2) + 2(10H) (the gradient into the
 * hidden layer; none at the input); per validation sample the forward. For
 * H = 256: 818,176 per training sample x 50000 + 406,528 x 10000.
 */
#include <cblas.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <sys/stat.h>

#include "traind/blaskernel.h"
#include "traind/config.h"
#include "traind/dataset.h"
#include "traind/kernels.h"
#include "traind/numerics.h"
#include "traind/portable.h"
#include "traind/trainer.h"

#define MAX_EPOCHS 64

/* Targets of the issues ("Speed at the hardware's limit", #20: against the
 * best float32 kernel's peak and PyTorch at its best). */
#define TARGET_EFFICIENCY 0.60
#define TARGET_FLATNESS 1.10
#define TARGET_TORCH_MLP 5.0
#define TARGET_TORCH_LENET 3.0
#define TARGET_RSS_MB 120.0
#define TARGET_TORCH_RESNET 2.0   /* issue 22 */
#define TARGET_BF16_FP32 2.0      /* bf16 epoch vs fp32, where the CPU has AMX */
#define TARGET_BF16_TORCH 3.0     /* bf16 epoch vs PyTorch's autocast at its best */
#define TARGET_TORCH_SEQ 2.0      /* issue 24 */
#define FORTUNES "/usr/share/games/fortunes"
#define TORCH_BATCHES 120         /* PyTorch's bounded runs: batches an epoch, timed one by one */

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

static double thread_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The 1-thread sgemm peak per second of this thread's CPU time: what the
 * kernel does while it runs, whatever else holds the cores (on a busy
 * machine the wall-clock peak measures the load as much as the kernel). */
static double sgemm_peak_cpu(int n, int samples)
{
	float *a = malloc(sizeof(float) * (size_t)n * n);
	float *b = malloc(sizeof(float) * (size_t)n * n);
	float *c = malloc(sizeof(float) * (size_t)n * n);
	double best = 0;

	for (size_t i = 0; i < (size_t)n * n; i++) {
		a[i] = (float)(i % 17) * 0.01f;
		b[i] = (float)(i % 13) * 0.01f;
	}
	openblas_set_num_threads(1);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
	for (int s = 0; s < samples; s++) {
		double t0 = thread_cpu(), dt;

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
		dt = thread_cpu() - t0;
		if (dt > 0 && 2.0 * n * n * (double)n / dt > best)
			best = 2.0 * n * n * (double)n / dt;
	}
	free(a);
	free(b);
	free(c);
	return best;
}

/* One training run: the model, its shape and data, and the thread count. */
struct run_spec {
	const char *model;      /* NULL: the MLP of `hidden` */
	bool sgd;               /* SGD lr 0.1, momentum 0.9, weight decay 5e-4 (else the default Adam) */
	const char *isa;        /* NULL: kernels openblas; else kernels portable on this path */
	uint32_t hidden;
	uint32_t batch;
	uint32_t train;         /* training samples per epoch (0: the lesson's 50000) */
	uint32_t val;           /* validation samples */
	uint32_t context;       /* a text's windows (the language models) */
	uint32_t seq_kernels;   /* the sequence layers' arithmetic (config seq_kernels; 0: the default) */
	int threads;
	int epochs;
	enum k_precision precision;
	enum conv_kind conv;    /* the job's `conv` (gemm, as config_defaults, unless set) */
	bool dnn_nchw;          /* conv onednn without the blocked graph (net.h: dnn_nchw; the same bits) */
};

static double mlp_flops(uint32_t h, uint32_t train, uint32_t val)
{
	double fwd = 2.0 * (784.0 * h + 10.0 * h), bwd = 2.0 * 784.0 * h + 4.0 * 10.0 * h;

	return (fwd + bwd) * train + fwd * val;
}

/* Where an epoch's time went: enough to tell a slow epoch's cause
 * (first-touch page faults, preemption of a team member, one slow step or
 * all of them, the validation phase). */
struct epoch_detail {
	double seconds;         /* the epoch: training + validation */
	double train_s, eval_s;
	double step_median, step_max;   /* of its training steps, seconds */
	long slow_steps;        /* steps over 3x the median step */
	double cpu_s;           /* user + system time of the process (every thread) */
	long minflt, nivcsw;    /* minor page faults; involuntary context switches */
};

struct epoch_result {
	double best, median, worst;
	long rss_kb;            /* the child's peak RSS */
	int epochs;
	struct epoch_detail detail[MAX_EPOCHS];        /* in epoch order */
};

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

static double cpu_seconds(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec * 1e-6 + (double)ru->ru_stime.tv_sec +
	       (double)ru->ru_stime.tv_usec * 1e-6;
}

/* In a child: load MNIST, run the epochs of r, write each epoch's detail
 * to fd. */
static int run_epochs(const char *dir, const struct run_spec *r, int fd)
{
	struct dataset *ds = NULL;
	struct trainer *t = NULL;
	struct train_config cfg;
	struct tr_err err = { 0 };
	struct epoch_detail d[MAX_EPOCHS];
	double *steps = NULL;
	int rc = 1;

	config_defaults(&cfg);
	cfg.epochs = (uint32_t)r->epochs;
	cfg.threads = (uint32_t)r->threads;
	cfg.precision = r->precision;
	cfg.conv = r->conv;
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
	if (r->seq_kernels)
		cfg.seq_kernels = r->seq_kernels;
	if (r->sgd) {
		config_set(&cfg, "optimizer", "sgd", NULL);
		cfg.lr = 0.1;
		cfg.momentum = 0.9;
		cfg.weight_decay = 5e-4;
	}
	if (r->isa) {
		enum pk_isa isa;

		if (config_set(&cfg, "kernels", "portable", &err) < 0 || pk_isa_parse(r->isa, &isa) < 0 ||
		    pk_isa_set(isa, &err) < 0) {
			fprintf(stderr, "bench-engine: %s: %s\n", r->isa, err.msg);
			goto out;
		}
	}
	if (dataset_load(&ds, dir, &err) < 0 || trainer_new(&t, &cfg, ds, &err) < 0) {
		fprintf(stderr, "bench-engine: %s\n", err.msg);
		goto out;
	}
	if (r->dnn_nchw) {
		t->model.dnn_nchw = true;
		if (net_set_conv(&t->model, CONV_ONEDNN, &err) < 0) {
			fprintf(stderr, "bench-engine: %s\n", err.msg);
			goto out;
		}
	}
	steps = malloc(sizeof(double) * (t->steps_per_epoch ? t->steps_per_epoch : 1));
	if (!steps)
		goto out;
	memset(d, 0, sizeof(d));
	for (int e = 0; e < r->epochs; e++) {
		struct rusage ru0, ru1;
		double t0, t1, t2;
		size_t n = 0;

		getrusage(RUSAGE_SELF, &ru0);
		t0 = now();
		while (!trainer_epoch_done(t)) {
			double s0 = now();

			trainer_step(t);
			if (n < t->steps_per_epoch)
				steps[n++] = now() - s0;
		}
		t1 = now();
		trainer_end_epoch(t, NULL);
		t2 = now();
		getrusage(RUSAGE_SELF, &ru1);
		d[e].seconds = t2 - t0;
		d[e].train_s = t1 - t0;
		d[e].eval_s = t2 - t1;
		qsort(steps, n, sizeof(double), cmp_double);
		d[e].step_median = n ? steps[n / 2] : 0;
		d[e].step_max = n ? steps[n - 1] : 0;
		for (size_t i = 0; i < n; i++)
			d[e].slow_steps += steps[i] > 3 * d[e].step_median;
		d[e].cpu_s = cpu_seconds(&ru1) - cpu_seconds(&ru0);
		d[e].minflt = ru1.ru_minflt - ru0.ru_minflt;
		d[e].nivcsw = ru1.ru_nivcsw - ru0.ru_nivcsw;
	}
	if (write(fd, d, sizeof(d[0]) * (size_t)r->epochs) < 0)
		goto out;
	rc = 0;
out:
	free(steps);
	trainer_free(t);
	dataset_free(ds);
	return rc;
}

static int measure(const char *dir, const struct run_spec *r, struct epoch_result *out)
{
	int fds[2];
	pid_t pid;
	int status;
	struct rusage ru;
	double times[MAX_EPOCHS];
	ssize_t want = (ssize_t)(sizeof(out->detail[0]) * (size_t)r->epochs), got = 0;

	if (pipe(fds) < 0)
		return -1;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		_exit(run_epochs(dir, r, fds[1]));
	}
	close(fds[1]);
	while (got < want) {
		ssize_t n = read(fds[0], (char *)out->detail + got, (size_t)(want - got));

		if (n <= 0)
			break;
		got += n;
	}
	close(fds[0]);
	if (got != want) {
		waitpid(pid, &status, 0);
		return -1;
	}
	wait4(pid, &status, 0, &ru);
	out->epochs = r->epochs;
	for (int e = 0; e < r->epochs; e++)
		times[e] = out->detail[e].seconds;
	qsort(times, (size_t)r->epochs, sizeof(double), cmp_double);
	out->best = times[0];
	out->median = times[r->epochs / 2];
	out->worst = times[r->epochs - 1];
	out->rss_kb = ru.ru_maxrss;
	return 0;
}

/* The epochs one by one (where a slow one lost its time). */
static void print_details(const struct epoch_result *r, int threads)
{
	printf("  per epoch, threads=%d: seconds = training + validation | training step median / max ms, steps over 3x the median | CPU s of all threads | minor faults | involuntary switches\n",
	       threads);
	for (int e = 0; e < r->epochs; e++) {
		const struct epoch_detail *d = &r->detail[e];

		printf("    %2d: %.3f = %.3f + %.3f | %.3f / %.2f ms, %ld slow | cpu %.3f | %ld flt | %ld ivcsw\n", e + 1,
		       d->seconds, d->train_s, d->eval_s, d->step_median * 1e3, d->step_max * 1e3, d->slow_steps,
		       d->cpu_s, d->minflt, d->nivcsw);
	}
}

/* ---- PyTorch ---------------------------------------------------------- */

/* PyTorch's run of `model` (lenet5 or mlp) of r's shape on `threads` torch
 * threads: the median epoch, and its configuration line (torch-epoch.py's
 * "config ..."), or a negative value when PyTorch is not there. Its
 * OpenBLAS gets one thread and the kernel traind runs. */
/* PyTorch runs under torch.autocast("cpu", torch.bfloat16) (the bf16 section). */
static bool torch_autocast;
/* > 0: PyTorch trains only this many batches an epoch, timed one by one,
 * and its epoch is estimated from the median batch (torch-epoch.py's
 * TORCH_EPOCH_BATCHES: bounded time on a loaded machine). */
static int torch_batches;

static double torch_epoch(const char *data, const char *model, const struct run_spec *r, int threads,
			  double give_up, char *config, size_t config_len, double *cpu_median)
{
	char cmd[8192], line[512];
	double times[MAX_EPOCHS], cpu[MAX_EPOCHS];
	int n = 0;
	FILE *p;

	if (config_len)
		config[0] = '\0';
	if (access("/usr/bin/python3", X_OK) != 0)
		return -1;
	snprintf(cmd, sizeof(cmd),
		 "%sTORCH_EPOCH_BATCHES=%d OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE='%s' TORCH_EPOCH_GIVE_UP=%.3f /usr/bin/python3 %s/torch-epoch.py %s '%s' %d %d %u %u %u %u 2>/dev/null",
		 torch_autocast ? "TORCH_EPOCH_AUTOCAST=bf16 " : "", torch_batches, blaskernel_state()->in_use, give_up, BENCH_DIR, model, data, threads, r->epochs, r->hidden ? r->hidden : 256,
		 r->batch ? r->batch : 64, r->train ? r->train : 50000, r->train ? r->val : 10000);
	fflush(stdout);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		if (n < MAX_EPOCHS && sscanf(line, "epoch %lf %lf", &times[n], &cpu[n]) == 2)
			n++;
		else if (strncmp(line, "config bounded: ", 16) == 0 && config_len && config[0])
			snprintf(config + strlen(config), config_len - strlen(config), "; %.*s",
				 (int)strcspn(line + 16, "\n"), line + 16);
		else if (strncmp(line, "config ", 7) == 0 && config_len)
			snprintf(config, config_len, "%.*s", (int)strcspn(line + 7, "\n"), line + 7);
	}
	if (pclose(p) != 0 || n == 0)
		return -1;
	qsort(times, (size_t)n, sizeof(double), cmp_double);
	qsort(cpu, (size_t)n, sizeof(double), cmp_double);
	if (cpu_median)
		*cpu_median = cpu[n / 2];
	return times[n / 2];
}

/* PyTorch at its best for r: the faster of 1 torch thread and r->threads
 * (when more than 1; that run gives up after an epoch twice as slow as one
 * thread's median, then its figure is that epoch's, marked). Returns the
 * median epoch (negative: not measured); `best_threads` and a line naming
 * both runs go to the caller. */
static double torch_best(const char *data, const char *model, const struct run_spec *r, int *best_threads,
			 char *what, size_t len, double *cpu1)
{
	char config[512];
	double t1 = torch_epoch(data, model, r, 1, 0, config, sizeof(config), cpu1), tn = -1;
	bool gave_up = false;

	*best_threads = 1;
	if (r->threads > 1) {
		tn = torch_epoch(data, model, r, r->threads, t1 > 0 ? 2 * t1 : 0, NULL, 0, NULL);
		gave_up = t1 > 0 && tn > 2 * t1;
	}
	if (t1 < 0 && tn < 0)
		return -1;
	if (tn > 0 && (t1 < 0 || tn < t1))
		*best_threads = r->threads;
	if (r->threads > 1)
		snprintf(what, len, "1 thread %.3f s, %d threads %.3f s%s -> best %d thread%s [%s]", t1, r->threads, tn,
			 gave_up ? " (one epoch, then given up)" : "", *best_threads, *best_threads > 1 ? "s" : "",
			 config);
	else
		snprintf(what, len, "1 thread %.3f s [%s]", t1, config);
	return *best_threads == 1 ? t1 : tn;
}

/* ---- sgemm peaks of any kernel ------------------------------------------ */

static const char *verdict(int ok)
{
	return ok ? "MET" : "NOT MET";
}

/* The sgemm peaks: 2 threads and 1 by the wall clock, 1 thread by its CPU
 * time; each kept if better than what *p already holds. */
struct peaks {
	double p2, p1, p1cpu;
};

static void peaks(struct peaks *p)
{
	double p2 = sgemm_peak(2, 2048, 8), p1 = sgemm_peak(1, 2048, 4), c1 = sgemm_peak_cpu(2048, 4);

	if (p2 > p->p2)
		p->p2 = p2;
	if (p1 > p->p1)
		p->p1 = p1;
	if (c1 > p->p1cpu)
		p->p1cpu = c1;
}

static char self_path[4096];

/* This program run again with OPENBLAS_CORETYPE=kernel (and no choice of
 * ours inherited): `args` after the program name. Its stdout, up to len. */
static int run_with_kernel(const char *kernel, const char *args, char *out, size_t len)
{
	char cmd[8192];
	size_t used = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "env -u TRAIND_BLAS_CHOICE -u TRAIND_BLAS_KERNEL OPENBLAS_CORETYPE='%s' '%s' %s",
		 kernel, self_path, args);
	fflush(stdout);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (used + 1 < len) {
		size_t n = fread(out + used, 1, len - 1 - used, p);

		if (n == 0)
			break;
		used += n;
	}
	out[used] = '\0';
	return pclose(p) == 0 ? 0 : -1;
}

/* The sgemm peaks of `kernel` (kept where better than p's), loaded here or
 * in a run of its own; the corename OpenBLAS actually ran goes to loaded. */
static int kernel_peaks(const char *kernel, struct peaks *p, char *loaded, size_t len)
{
	char out[512], name[64];
	struct peaks q;

	if (strcasecmp(kernel, blaskernel_state()->in_use) == 0) {
		peaks(p);
		snprintf(loaded, len, "%s", blaskernel_state()->in_use);
		return 0;
	}
	if (run_with_kernel(kernel, "--probe-peak", out, sizeof(out)) < 0 ||
	    sscanf(out, "peak %63s %lf %lf %lf", name, &q.p2, &q.p1, &q.p1cpu) != 4)
		return -1;
	p->p2 = q.p2 > p->p2 ? q.p2 : p->p2;
	p->p1 = q.p1 > p->p1 ? q.p1 : p->p1;
	p->p1cpu = q.p1cpu > p->p1cpu ? q.p1cpu : p->p1cpu;
	snprintf(loaded, len, "%s", name);
	return 0;
}

static void print_machine(void)
{
	const struct cpu_info *cpu = cpu_this();
	const struct blaskernel_state *b = blaskernel_state();
	char features[256];
	double load[3] = { 0 };

	cpu_feature_list(cpu->usable, features, sizeof(features));
	if (getloadavg(load, 3) < 0)
		load[0] = load[1] = load[2] = -1;
	printf("CPU: %s (%s family %u model %u), %ld online; features: %s\n", cpu->brand[0] ? cpu->brand : "?",
	       cpu->vendor_id, cpu->family, cpu->model, sysconf(_SC_NPROCESSORS_ONLN), features);
	printf("load average at start: %.2f %.2f %.2f (a shared machine: only ratios within this run mean anything)\n",
	       load[0], load[1], load[2]);
	printf("OpenBLAS kernel in use (openblas_get_corename): %s: %s; OpenBLAS's own pick: %s\n", b->in_use,
	       b->why, b->openblas_pick[0] ? b->openblas_pick : "not known (OPENBLAS_CORETYPE was set)");
	if (b->note[0])
		printf("note: %s\n", b->note);
}

/* ---- the lesson's figures ------------------------------------------------ */

/* The median of the epochs' CPU seconds (every thread of the run). */
static double cpu_median(const struct epoch_result *r)
{
	double c[MAX_EPOCHS];

	for (int e = 0; e < r->epochs; e++)
		c[e] = r->detail[e].cpu_s;
	qsort(c, (size_t)r->epochs, sizeof(double), cmp_double);
	return c[r->epochs / 2];
}

/* resnet20 (the resnet section's run: Fashion-MNIST 5000 + 1000, batch 128,
 * SGD, 2 epochs) in bf16 against fp32; no target (issue 20 names the lesson
 * and lenet5), printed as a figure. */
static void resnet_bf16(const char *data)
{
	struct run_spec r = { .model = "resnet20", .sgd = true, .batch = 128, .train = 5000, .val = 1000,
			      .threads = 2, .epochs = 2 };
	struct epoch_result r32, r16;
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s/fashion-mnist", data);
	if (measure(dir, &r, &r32) < 0) {
		printf("  resnet20: not measured (is Fashion-MNIST in %s?)\n", dir);
		return;
	}
	r.precision = K_BF16;
	if (measure(dir, &r, &r16) < 0) {
		printf("  resnet20: the bf16 run failed\n");
		return;
	}
	printf("  resnet20 epoch (Fashion-MNIST %u + %u, batch %u, SGD, %d epochs): bf16 median %.3f s (best %.3f), fp32 median %.3f s: %.2fx\n",
	       r.train, r.val, r.batch, r.epochs, r16.median, r16.best, r32.median, r32.median / r16.median);
}

/* Section 5: precision bf16 against fp32 (measured here, right before each
 * bf16 run) and against PyTorch's autocast at its best. */
static int bf16_section(const char *data, const char *dir, int epochs, int torch)
{
	struct run_spec m = { .threads = 2, .epochs = epochs }, l = m;
	struct epoch_result m32, l32, m16, l16;
	struct tr_err err = { 0 };
	char env[NUMERICS_TEXT_MAX], wm[1024] = "", wl[1024] = "";
	double tm = -1, tl = -1;
	int tmt = 0, tlt = 0;

	l.model = "lenet5";
	l.epochs = epochs < 3 ? epochs : 3;
	if (k_precision_check(K_BF16, &err) < 0) {
		printf("bf16: not measured: %s\n", err.msg);
		return 0;
	}
	k_precision_numerics(K_BF16, env, sizeof(env));
	if (measure(dir, &m, &m32) < 0)
		return 1;
	m.precision = K_BF16;
	if (measure(dir, &m, &m16) < 0)
		return 1;
	if (measure(dir, &l, &l32) < 0)
		return 1;
	l.precision = K_BF16;
	if (measure(dir, &l, &l16) < 0)
		return 1;
	printf("precision bf16 (%s), threads=2, against fp32 (OpenBLAS %s) in the same run:\n", env,
	       openblas_get_corename());
	printf("  lesson MLP epoch: bf16 median %.3f s (best %.3f, slowest %.3f), fp32 median %.3f s: %.2fx; target >= %.0fx: %s\n",
	       m16.median, m16.best, m16.worst, m32.median, m32.median / m16.median, TARGET_BF16_FP32,
	       verdict(m32.median / m16.median >= TARGET_BF16_FP32));
	printf("  lenet5 epoch (%d epochs): bf16 median %.3f s (best %.3f), fp32 median %.3f s: %.2fx; target >= %.0fx: %s\n",
	       l.epochs, l16.median, l16.best, l32.median, l32.median / l16.median, TARGET_BF16_FP32,
	       verdict(l32.median / l16.median >= TARGET_BF16_FP32));
	resnet_bf16(data);
	if (torch) {
		m.precision = l.precision = K_FP32;
		torch_autocast = true;
		torch_batches = TORCH_BATCHES;
		tm = torch_best(data, "mlp", &m, &tmt, wm, sizeof(wm), NULL);
		tl = torch_best(data, "lenet5", &l, &tlt, wl, sizeof(wl), NULL);
		torch_batches = 0;
		torch_autocast = false;
	}
	if (tm < 0 || tl < 0) {
		printf("  PyTorch autocast: not measured (%s)\n", torch ? "no torch for /usr/bin/python3" : "--no-torch");
		return 0;
	}
	printf("  PyTorch 1.13 under torch.autocast(\"cpu\", torch.bfloat16) at its best, median epoch: lesson MLP %.3f s (%s), lenet5 %.3f s (%s)\n",
	       tm, wm, tl, wl);
	printf("  traind bf16 vs PyTorch autocast by the median: lesson MLP %.2fx (target >= %.0fx: %s), lenet5 %.2fx (target >= %.0fx: %s)\n",
	       tm / m16.median, TARGET_BF16_TORCH, verdict(tm / m16.median >= TARGET_BF16_TORCH),
	       tl / l16.median, TARGET_BF16_TORCH, verdict(tl / l16.median >= TARGET_BF16_TORCH));
	return 0;
}

/* --mlp: the lesson's MLP alone, everything issue 20 asks of it in one run:
 * fp32 and bf16 at threads 2 and 1, the best float32 kernel's peaks, and
 * PyTorch at its best in float32 and under autocast, bounded in time
 * (TORCH_BATCHES batches an epoch, timed one by one: the estimate is the
 * median batch, PyTorch at its best). On a loaded machine the wall clock
 * measures the load as much as the code: the 1-thread figures by CPU time
 * are printed beside the 2-thread ones by the clock. */
static double load1(void)
{
	double l[3] = { -1, -1, -1 };

	return getloadavg(l, 3) < 0 ? -1 : l[0];
}

static void print_run(const char *what, const struct epoch_result *r)
{
	printf("  %-12s best %.3f s, median %.3f s, slowest %.3f s (flatness %.2f); median CPU s of all threads %.3f; peak RSS %.1f MB\n",
	       what, r->best, r->median, r->worst, r->worst / r->best, cpu_median(r), r->rss_kb / 1024.0);
}

/* An epoch at its best, as PyTorch's bounded figure is taken: the median
 * training step times the steps, plus the validation (median over the
 * epochs). What the machine's other load adds to some steps is left out on
 * both sides. */
static double step_estimate(const struct epoch_result *r, const struct run_spec *s)
{
	uint32_t train = s->train ? s->train : 50000, batch = s->batch ? s->batch : 64;
	double e[MAX_EPOCHS];

	for (int i = 0; i < r->epochs; i++)
		e[i] = r->detail[i].step_median * ((train + batch - 1) / batch) + r->detail[i].eval_s;
	qsort(e, (size_t)r->epochs, sizeof(double), cmp_double);
	return e[r->epochs / 2];
}

static int mlp_section(const char *data, const char *dir, int epochs, int torch)
{
	const double flops = mlp_flops(256, 50000, 10000);
	const char *best = blaskernel_auto(cpu_this(), NULL, 0);
	struct run_spec f2 = { .threads = 2, .epochs = epochs }, f1 = f2, b2 = f2, b1 = f2;
	struct epoch_result rf2, rf1, rb2, rb1;
	struct peaks pb = { 0 };
	struct tr_err err = { 0 };
	char loaded[64] = "", env[NUMERICS_TEXT_MAX] = "", w32[1024] = "", w16[1024] = "";
	double t32 = -1, t16 = -1, c32 = -1, c16 = -1;
	int t32t = 0, t16t = 0;
	bool bf16 = k_precision_check(K_BF16, &err) == 0;

	print_machine();
	if (kernel_peaks(best, &pb, loaded, sizeof(loaded)) < 0) {
		fprintf(stderr, "bench-engine: could not measure the sgemm peak of %s\n", best);
		return 1;
	}
	f1.threads = b1.threads = 1;
	b2.precision = b1.precision = K_BF16;
	if (measure(dir, &f2, &rf2) < 0 || (bf16 && measure(dir, &b2, &rb2) < 0) || measure(dir, &f1, &rf1) < 0 ||
	    (bf16 && measure(dir, &b1, &rb1) < 0)) {
		fprintf(stderr, "bench-engine: training run failed (is MNIST in %s?)\n", dir);
		return 1;
	}
	kernel_peaks(best, &pb, loaded, sizeof(loaded));
	if (bf16)
		k_precision_numerics(K_BF16, env, sizeof(env));
	printf("the best float32 kernel (auto): %s, loaded as %s; sgemm peak (n=2048, best of two rounds): 2 threads %.1f GFLOP/s, 1 thread %.1f, 1 thread per CPU second %.1f\n",
	       best, loaded, pb.p2 / 1e9, pb.p1 / 1e9, pb.p1cpu / 1e9);
	printf("lesson MLP epoch (train 50000 + val 10000, batch 64, Adam), %d epochs each; fp32 on OpenBLAS %s, bf16 %s:\n",
	       epochs, openblas_get_corename(), bf16 ? env : err.msg);
	print_run("fp32 thr=2", &rf2);
	if (bf16)
		print_run("bf16 thr=2", &rb2);
	print_run("fp32 thr=1", &rf1);
	if (bf16)
		print_run("bf16 thr=1", &rb1);
	print_details(&rf2, 2);
	if (bf16)
		print_details(&rb2, 2);
	printf("fp32 efficiency vs %s's peak: threads=2 by the median %.2f (by the best %.2f); threads=1 by the median %.2f; threads=1 per CPU second %.2f; target >= %.2f (threads=2, median): %s\n",
	       best, flops / (rf2.median * pb.p2), flops / (rf2.best * pb.p2), flops / (rf1.median * pb.p1),
	       flops / (cpu_median(&rf1) * pb.p1cpu), TARGET_EFFICIENCY,
	       verdict(flops / (rf2.median * pb.p2) >= TARGET_EFFICIENCY));
	printf("fp32 flatness threads=2 (slowest / fastest of %d): %.2f; target <= %.2f: %s\n", epochs,
	       rf2.worst / rf2.best, TARGET_FLATNESS, verdict(rf2.worst / rf2.best <= TARGET_FLATNESS));
	printf("fp32 at its best (median step x steps + validation): threads=2 %.3f s, threads=1 %.3f s\n",
	       step_estimate(&rf2, &f2), step_estimate(&rf1, &f1));
	if (bf16)
		printf("bf16 over fp32: threads=2 by the median %.2fx, threads=1 by the median %.2fx, threads=1 by CPU time %.2fx, threads=2 at their best (median step) %.2fx; target >= %.0fx (threads=2, median): %s\n",
		       rf2.median / rb2.median, rf1.median / rb1.median, cpu_median(&rf1) / cpu_median(&rb1),
		       step_estimate(&rf2, &f2) / step_estimate(&rb2, &b2), TARGET_BF16_FP32,
		       verdict(rf2.median / rb2.median >= TARGET_BF16_FP32));
	if (torch) {
		torch_batches = TORCH_BATCHES;
		t32 = torch_best(data, "mlp", &f2, &t32t, w32, sizeof(w32), &c32);
		if (bf16) {
			torch_autocast = true;
			t16 = torch_best(data, "mlp", &f2, &t16t, w16, sizeof(w16), &c16);
			torch_autocast = false;
		}
		torch_batches = 0;
	}
	if (t32 < 0) {
		printf("PyTorch: not measured (%s)\n", torch ? "no torch for /usr/bin/python3" : "--no-torch");
	} else {
		printf("PyTorch 1.13 at its best, float32: %s\n", w32);
		printf("  traind fp32 (threads=2) vs PyTorch at its best by the median: %.2fx; target >= %.0fx: %s; by CPU time, 1 thread each: %.2fx; both at their best (median step x steps + validation, traind %.3f s): %.2fx\n",
		       t32 / rf2.median, TARGET_TORCH_MLP, verdict(t32 / rf2.median >= TARGET_TORCH_MLP),
		       c32 / cpu_median(&rf1), step_estimate(&rf2, &f2), t32 / step_estimate(&rf2, &f2));
	}
	if (t16 >= 0) {
		printf("PyTorch 1.13 at its best under torch.autocast(\"cpu\", torch.bfloat16): %s\n", w16);
		printf("  traind bf16 (threads=2) vs PyTorch autocast at its best by the median: %.2fx; target >= %.0fx: %s; by CPU time, 1 thread each: %.2fx; both at their best (traind %.3f s): %.2fx\n",
		       t16 / rb2.median, TARGET_BF16_TORCH, verdict(t16 / rb2.median >= TARGET_BF16_TORCH),
		       c16 / cpu_median(&rb1), step_estimate(&rb2, &b2), t16 / step_estimate(&rb2, &b2));
	} else if (torch && bf16) {
		printf("PyTorch autocast: not measured\n");
	}
	printf("load average at the end: %.2f; OpenBLAS corename %s\n", load1(), openblas_get_corename());
	return 0;
}

static int lesson(const char *data, const char *dir, int epochs, int torch)
{
	const double flops = mlp_flops(256, 50000, 10000);
	const struct blaskernel_state *b = blaskernel_state();
	const char *best = blaskernel_auto(cpu_this(), NULL, 0);
	struct peaks pb = { 0 }, pu = { 0 }, po = { 0 };
	double eff2, eff1, flat2, flat1, tl = -1, tm = -1, tl_cpu = -1, tm_cpu = -1;
	char best_loaded[64] = "", use_loaded[64] = "", own_loaded[64] = "", tl_what[512] = "", tm_what[512] = "";
	int tl_threads = 0, tm_threads = 0;
	bool use_differs = strcasecmp(best, b->in_use) != 0;
	bool own_differs = b->openblas_pick[0] && strcasecmp(b->openblas_pick, b->in_use) != 0 &&
			   strcasecmp(b->openblas_pick, best) != 0;
	struct run_spec s2 = { .threads = 2, .epochs = epochs }, s1 = s2, sl = s2, sl1;
	struct epoch_result r2, r1, rl, rl1;

	print_machine();
	if (kernel_peaks(best, &pb, best_loaded, sizeof(best_loaded)) < 0) {
		fprintf(stderr, "bench-engine: could not measure the sgemm peak of %s\n", best);
		return 1;
	}
	s1.threads = 1;
	sl.model = "lenet5";
	sl.epochs = epochs < 3 ? epochs : 3;
	sl1 = sl;
	sl1.threads = 1;
	if (measure(dir, &s2, &r2) < 0 || measure(dir, &s1, &r1) < 0) {
		fprintf(stderr, "bench-engine: training run failed (is MNIST in %s?)\n", dir);
		return 1;
	}
	if (measure(dir, &sl, &rl) < 0 || measure(dir, &sl1, &rl1) < 0) {
		fprintf(stderr, "bench-engine: the lenet5 run failed\n");
		return 1;
	}
	/* again after training: the VM's speed drifts */
	kernel_peaks(best, &pb, best_loaded, sizeof(best_loaded));
	if (use_differs && kernel_peaks(b->in_use, &pu, use_loaded, sizeof(use_loaded)) < 0)
		use_differs = false;
	if (own_differs && kernel_peaks(b->openblas_pick, &po, own_loaded, sizeof(own_loaded)) < 0)
		own_differs = false;
	if (torch) {
		tl = torch_best(data, "lenet5", &sl, &tl_threads, tl_what, sizeof(tl_what), &tl_cpu);
		tm = torch_best(data, "mlp", &s2, &tm_threads, tm_what, sizeof(tm_what), &tm_cpu);
	}
	eff2 = flops / (r2.median * pb.p2);
	eff1 = flops / (r1.median * pb.p1);
	flat2 = r2.worst / r2.best;
	flat1 = r1.worst / r1.best;
	printf("the best float32 kernel for this CPU (auto by features): %s (loaded as %s)\n", best, best_loaded);
	printf("sgemm peak (n=2048, best sample of two rounds) of %s: 2 threads %.1f GFLOP/s, 1 thread %.1f GFLOP/s; 1 thread per CPU second %.1f GFLOP/s\n",
	       best, pb.p2 / 1e9, pb.p1 / 1e9, pb.p1cpu / 1e9);
	if (use_differs)
		printf("sgemm peak of the kernel in use, %s: 2 threads %.1f GFLOP/s, 1 thread %.1f GFLOP/s (%.2fx the best's), 1 thread per CPU second %.1f\n",
		       use_loaded, pu.p2 / 1e9, pu.p1 / 1e9, pu.p2 / pb.p2, pu.p1cpu / 1e9);
	if (own_differs)
		printf("sgemm peak of OpenBLAS's own pick, %s: 2 threads %.1f GFLOP/s, 1 thread %.1f GFLOP/s (%.2fx the best's), 1 thread per CPU second %.1f\n",
		       own_loaded, po.p2 / 1e9, po.p1 / 1e9, po.p2 / pb.p2, po.p1cpu / 1e9);
	printf("lesson MLP epoch (train 50000 + val 10000, batch 64), %d epochs each, kernel %s:\n", epochs, b->in_use);
	printf("  threads=2: best %.3f s, median %.3f s, slowest %.3f s, peak RSS %.1f MB\n",
	       r2.best, r2.median, r2.worst, r2.rss_kb / 1024.0);
	printf("  threads=1: best %.3f s, median %.3f s, slowest %.3f s, peak RSS %.1f MB\n",
	       r1.best, r1.median, r1.worst, r1.rss_kb / 1024.0);
	print_details(&r2, 2);
	printf("physical floor at %s's 2-thread peak: %.3f s per epoch\n", best, flops / pb.p2);
	printf("efficiency threads=2 by the median vs %s's peak: %.2f (by the best %.2f); target >= %.2f: %s\n", best,
	       eff2, flops / (r2.best * pb.p2), TARGET_EFFICIENCY, verdict(eff2 >= TARGET_EFFICIENCY));
	printf("efficiency threads=1 by the median vs %s's 1-thread peak: %.2f (by the best %.2f)\n", best, eff1,
	       flops / (r1.best * pb.p1));
	printf("flatness (slowest / fastest of %d epochs): threads=2 %.2f, threads=1 %.2f; target <= %.2f: %s\n",
	       epochs, flat2, flat1, TARGET_FLATNESS, verdict(flat2 <= TARGET_FLATNESS));
	printf("speedup threads=2 over threads=1 (medians): %.2fx\n", r1.median / r2.median);
	printf("peak RSS of a lesson job: %.1f MB; target <= %.0f MB: %s\n", r2.rss_kb / 1024.0,
	       TARGET_RSS_MB, verdict(r2.rss_kb / 1024.0 <= TARGET_RSS_MB));
	printf("lenet5 epoch, %d epochs: threads=2 best %.3f s, median %.3f s, peak RSS %.1f MB; threads=1 median %.3f s\n",
	       sl.epochs, rl.best, rl.median, rl.rss_kb / 1024.0, rl1.median);
	printf("by CPU time (on a busy machine the wall clock measures the load; one thread each, median epoch):\n"
	       "  efficiency threads=1 vs %s's 1-thread peak per CPU second: %.2f (%.3f CPU s an epoch)\n",
	       best, flops / (cpu_median(&r1) * pb.p1cpu), cpu_median(&r1));
	if (tl < 0 || tm < 0) {
		printf("PyTorch: not measured (%s)\n", torch ? "no torch for /usr/bin/python3" : "--no-torch");
		return 0;
	}
	printf("  traind vs PyTorch (1 thread each), by CPU seconds: lesson MLP %.3f against %.3f: %.2fx; lenet5 %.3f against %.3f: %.2fx\n",
	       cpu_median(&r1), tm_cpu, tm_cpu / cpu_median(&r1), cpu_median(&rl1), tl_cpu, tl_cpu / cpu_median(&rl1));
	printf("PyTorch at its best (same data in tensors; the faster of 1 and 2 torch threads), median epoch:\n");
	printf("  lesson MLP: %s\n", tm_what);
	printf("  lenet5:     %s\n", tl_what);
	printf("traind (threads=2) vs PyTorch at its best, by the median: lesson MLP %.2fx faster (target >= %.0fx: %s), lenet5 %.2fx faster (target >= %.0fx: %s)\n",
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
	double best = -1;
	int tthr = 0;
	char what[512];

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
	if (torch)
		best = torch_best(data, "resnet20", &st, &tthr, what, sizeof(what), NULL);
	if (best < 0) {
		printf("PyTorch: not measured (%s)\n", torch ? "no torch for /usr/bin/python3" : "--no-torch");
		return 0;
	}
	printf("PyTorch 1.13 resnet20 at its best (same module, data and cores), median epoch: %s\n", what);
	printf("traind (threads=2) vs PyTorch at its best by the median: resnet20 %.2fx faster (target >= %.0fx: %s)\n",
	       best / r2.median, TARGET_TORCH_RESNET, verdict(best / r2.median >= TARGET_TORCH_RESNET));
	return 0;
}

/* ---- conv gemm against conv onednn (issues 20 and 22; doc/models.md) ---------
 * lenet5 (MNIST 10000 + 2000 an epoch, batch 64, Adam) and resnet20
 * (Fashion-MNIST 5000 + 1000, batch 128, SGD), threads=2, EPOCHS epochs
 * each (2 when the caller gives fewer): conv gemm, conv onednn with NCHW
 * between the layers (dnn_nchw: the path before the blocked graph, the same
 * bits) and conv onednn as jobs run it (the blocked graph, dnnblk.h), in
 * fp32 and, where the CPU has bf16, in bf16; PyTorch 1.13 at its best in
 * fp32 and under autocast bf16 for the same module, data and cores. Ratios:
 * PyTorch's median epoch / traind's (above 1: traind faster) by wall time,
 * and by CPU time (PyTorch on one thread: its CPU time an epoch / traind's
 * median CPU time an epoch, both threads); the blocked graph's speedup over
 * NCHW, onednn's over gemm and bf16's over fp32. */
static double median_cpu(const struct epoch_result *er)
{
	double c[MAX_EPOCHS];

	for (int e = 0; e < er->epochs; e++)
		c[e] = er->detail[e].cpu_s;
	qsort(c, (size_t)er->epochs, sizeof(double), cmp_double);
	return c[er->epochs / 2];
}

static int conv_section(const char *data, int epochs, int torch)
{
	static const struct {
		const char *model, *set;
		bool sgd;
		uint32_t batch, train, val;
		double target;      /* 0: no PyTorch baseline (torch-epoch.py builds lenet5 and resnet20) */
	} models[] = {
		{ "lenet5", "mnist", false, 64, 10000, 2000, TARGET_TORCH_LENET },
		{ "resnet20", "fashion-mnist", true, 128, 5000, 1000, TARGET_TORCH_RESNET },
		/* a BatchNorm + dropout CNN: the default's third witness (doc/models.md) */
		{ "conv2d(32,3,padding=1),batchnorm2d,relu,maxpool2d(2),conv2d(64,3,padding=1),batchnorm2d,relu,"
		  "maxpool2d(2),flatten,dropout(0.5),linear(128),relu,linear(10)", "mnist", false, 64, 10000, 2000, 0 },
	};
	static const char *const paths[3] = { "gemm", "onednn-nchw", "onednn" };
	struct tr_err err = { 0 };
	bool bf16 = k_precision_check(K_BF16, &err) == 0;
	char env[96];
	const char *sc = getenv("TRAIND_BENCH_CONV_SCALE");
	double scale = sc && atof(sc) > 0 && atof(sc) <= 1 ? atof(sc) : 1.0;   /* a loaded machine: fewer samples */

	net_conv_numerics(env, sizeof(env));
	if (scale < 1)
		printf("TRAIND_BENCH_CONV_SCALE=%g: every model's training and validation samples x %g\n", scale, scale);
	printf("conv gemm (im2col + OpenBLAS %s) against conv onednn (%s), NCHW between the layers (onednn-nchw, the\n"
	       "path before the blocked graph) and blocked (onednn, as jobs run it), threads=2, %d epochs each;\n"
	       "x torch: PyTorch 1.13 at its best (fp32; bf16 rows: under autocast) median epoch / traind's, by wall\n"
	       "time; cpu: PyTorch on 1 thread's CPU seconds an epoch / traind's median (both threads)\n",
	       blaskernel_state()->in_use, env, epochs);
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		struct run_spec r = { .model = models[i].model, .sgd = models[i].sgd, .batch = models[i].batch,
				      .train = (uint32_t)(models[i].train * scale), .val = (uint32_t)(models[i].val * scale),
				      .threads = 2, .epochs = epochs };
		double med[2][3] = { { -1, -1, -1 }, { -1, -1, -1 } }, cpu[2][3] = { { -1, -1, -1 }, { -1, -1, -1 } };
		double tb[2] = { -1, -1 }, tcpu[2] = { -1, -1 };
		char dir[4096], what[2][512] = { "not measured", "not measured" };
		int tthr;

		snprintf(dir, sizeof(dir), "%s/%s", data, models[i].set);
		for (int p = 0; p < (bf16 ? 2 : 1); p++)
			for (int c = 0; c < 3; c++) {
				struct epoch_result er;

				r.precision = p ? K_BF16 : K_FP32;
				r.conv = c ? CONV_ONEDNN : CONV_GEMM;
				r.dnn_nchw = c == 1;
				if (measure(dir, &r, &er) == 0) {
					med[p][c] = er.median;
					cpu[p][c] = median_cpu(&er);
				}
			}
		r.precision = K_FP32;
		r.conv = CONV_GEMM;
		r.dnn_nchw = false;
		for (int p = 0; torch && models[i].target > 0 && p < (bf16 ? 2 : 1); p++) {
			torch_autocast = p == 1;
			tb[p] = torch_best(data, models[i].model, &r, &tthr, what[p], sizeof(what[p]), &tcpu[p]);
		}
		torch_autocast = false;
		printf("%s (%s %u + %u, batch %u, %s):\n", models[i].model, models[i].set, r.train, r.val, r.batch,
		       r.sgd ? "SGD" : "Adam");
		for (int p = 0; p < (bf16 ? 2 : 1); p++) {
			printf("  %s: PyTorch %.3f s, 1 thread %.3f s CPU [%s]\n", p ? "bf16" : "fp32", tb[p], tcpu[p],
			       what[p]);
			for (int c = 0; c < 3; c++) {
				double xw = tb[p] > 0 && med[p][c] > 0 ? tb[p] / med[p][c] : 0;
				double xc = tcpu[p] > 0 && cpu[p][c] > 0 ? tcpu[p] / cpu[p][c] : 0;

				printf("    conv %-11s %.3f s wall %.3f s CPU", paths[c], med[p][c], cpu[p][c]);
				if (models[i].target > 0)
					printf(": x torch %.2f wall, %.2f cpu (target >= %.0f: %s)", xw, xc, models[i].target,
					       verdict(xw >= models[i].target));
				if (c == 2)
					printf("; over nchw %.2f wall %.2f cpu", med[p][1] / med[p][2], cpu[p][1] / cpu[p][2]);
				if (c > 0)
					printf("; over gemm %.2f wall %.2f cpu", med[p][0] / med[p][c], cpu[p][0] / cpu[p][c]);
				if (p)
					printf("; bf16 over fp32 %.2f wall %.2f cpu", med[0][c] / med[1][c], cpu[0][c] / cpu[1][c]);
				printf("\n");
			}
		}
	}
	return 0;
}

/* PyTorch's median epoch of a language model (bench/torch-seq.py) on
 * r->threads torch threads, its OpenBLAS on one thread and the kernel
 * traind runs; its median CPU seconds an epoch into *cpu and its
 * configuration line into config. With give_up > 0 it stops after the
 * first epoch slower than that (then that epoch is the figure). */
static double torch_seq_epoch(const char *dir, const char *model, const struct run_spec *r, double give_up,
			      double *cpu, char *config, size_t config_len)
{
	char cmd[8192], line[512];
	double times[MAX_EPOCHS], cpus[MAX_EPOCHS];
	int n = 0;
	FILE *p;

	config[0] = '\0';
	if (access("/usr/bin/python3", X_OK) != 0)
		return -1;
	snprintf(cmd, sizeof(cmd),
		 "OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE='%s' TORCH_EPOCH_GIVE_UP=%.3f /usr/bin/python3 %s/torch-seq.py %s '%s' %d %d %u %u %u %u 2>/dev/null",
		 blaskernel_state()->in_use, give_up, BENCH_DIR, model, dir, r->threads, r->epochs, r->train, r->val,
		 r->batch, r->context);
	fflush(stdout);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		if (n < MAX_EPOCHS && sscanf(line, "epoch %lf %lf", &times[n], &cpus[n]) == 2)
			n++;
		else if (strncmp(line, "config ", 7) == 0)
			snprintf(config, config_len, "%.*s", (int)strcspn(line + 7, "\n"), line + 7);
	}
	if (pclose(p) != 0 || n == 0)
		return -1;
	qsort(times, (size_t)n, sizeof(double), cmp_double);
	qsort(cpus, (size_t)n, sizeof(double), cmp_double);
	*cpu = cpus[n / 2];
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

/* char_lstm and gpt on fortunes beside PyTorch's best (see the top, 6.);
 * only: one of them (NULL: both). */
static int sequences(int torch, const char *only)
{
	static const char *const models[] = { "char_lstm", "gpt" };
	char tmp[] = "/tmp/bench-engine-text-XXXXXX", dir[4200], cmd[4400];
	int rc = 0;

	if (!mkdtemp(tmp) || fortunes_dataset(tmp, dir, sizeof(dir)) < 0) {
		fprintf(stderr, "bench-engine: no fortunes text (%s: the fortunes package)\n", FORTUNES);
		return 1;
	}
	printf("language models (issue 24) on fortunes, context 128, batch 64, Adam; an epoch of 640 training "
	       "and 64 validation windows, 3 epochs each; CPU s: the median epoch's CPU seconds of every thread\n");
	for (size_t m = 0; m < 2 && rc == 0; m++) {
		struct run_spec s2 = { .model = models[m], .batch = 64, .train = 640, .val = 64, .context = 128,
				       .threads = 2, .epochs = 3 },
				s1 = s2, st = s2, sv1 = s2, sb = s2;
		struct epoch_result r2, r1, rv1, rb;
		double t1 = -1, t2 = -1, c1 = 0, c2 = 0, best, bestc, tokens = 640.0 * 128.0;
		char conf1[512] = "", conf2[512] = "";
		bool gpt = strcmp(models[m], "gpt") == 0, b16 = false;
		struct tr_err err = { 0 };

		if (only && strcmp(only, models[m]) != 0)
			continue;
		s1.threads = 1;
		sv1.seq_kernels = 1;
		if (measure(dir, &s2, &r2) < 0 || measure(dir, &s1, &r1) < 0 ||
		    (gpt && measure(dir, &sv1, &rv1) < 0)) {
			fprintf(stderr, "bench-engine: the %s run failed\n", models[m]);
			rc = 1;
			break;
		}
		printf("  %s: threads=2 median epoch %.3f s (%.0f training tokens/s, CPU %.3f s), threads=1 %.3f s (%.0f, CPU %.3f s), peak RSS %.1f MB\n",
		       models[m], r2.median, tokens / r2.median, cpu_median(&r2), r1.median, tokens / r1.median,
		       cpu_median(&r1), r2.rss_kb / 1024.0);
		if (gpt)
			printf("  %s seq_kernels 1 (the per-head form of jobs stored before the key), threads=2: %.3f s (CPU %.3f s): seq_kernels 3 is %.2fx by time, %.2fx by CPU\n",
			       models[m], rv1.median, cpu_median(&rv1), rv1.median / r2.median,
			       cpu_median(&rv1) / cpu_median(&r2));
		/* precision bf16 (seq_kernels 3: the projections and the
		 * feed-forward block in bf16, doc/precision.md), where the CPU has it */
		if (gpt && k_precision_check(K_BF16, &err) == 0) {
			sb.precision = K_BF16;
			b16 = measure(dir, &sb, &rb) == 0;
		}
		if (b16)
			printf("  %s precision bf16, threads=2: %.3f s (%.0f tokens/s, CPU %.3f s): %.2fx fp32 by time, %.2fx by CPU\n",
			       models[m], rb.median, tokens / rb.median, cpu_median(&rb), r2.median / rb.median,
			       cpu_median(&r2) / cpu_median(&rb));
		else if (gpt)
			printf("  %s precision bf16: not measured (%s)\n", models[m], err.msg[0] ? err.msg : "its run failed");
		if (torch) {
			st.threads = 1;
			t1 = torch_seq_epoch(dir, models[m], &st, 0, &c1, conf1, sizeof(conf1));
			st.threads = 2;
			t2 = torch_seq_epoch(dir, models[m], &st, t1 > 0 ? 2 * t1 : 0, &c2, conf2, sizeof(conf2));
		}
		if (t1 < 0 && t2 < 0) {
			printf("  PyTorch: not measured (%s)\n", torch ? "no torch for /usr/bin/python3" : "--no-torch");
			continue;
		}
		best = t2 < 0 || (t1 > 0 && t1 < t2) ? t1 : t2;
		bestc = best == t1 ? c1 : c2;
		printf("  PyTorch 1.13 %s, same module, windows and cores: 1 thread %.3f s (%.0f tokens/s, CPU %.3f s), 2 threads %.3f s (%.0f, CPU %.3f s)%s\n",
		       models[m], t1, tokens / t1, c1, t2, tokens / t2, c2,
		       t1 > 0 && t2 > 2 * t1 ? " (one epoch, then given up)" : "");
		printf("    [%s]\n    [%s]\n", conf1, conf2[0] ? conf2 : "2 threads: not measured");
		printf("  traind (threads=2) vs PyTorch at its best (%d thread%s): %s %.2fx the tokens per second (goal >= %.0fx: %s); by CPU seconds %.2fx\n",
		       best == t1 ? 1 : 2, best == t1 ? "" : "s", models[m], best / r2.median, TARGET_TORCH_SEQ,
		       verdict(best / r2.median >= TARGET_TORCH_SEQ), bestc / cpu_median(&r2));
		if (b16)
			printf("  traind precision bf16 (threads=2) vs PyTorch float32 at its best: %s %.2fx the tokens per second; by CPU seconds %.2fx\n",
			       models[m], best / rb.median, bestc / cpu_median(&rb));
	}
	printf("OpenBLAS kernel (openblas_get_corename): %s\n", openblas_get_corename());
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "bench-engine: could not remove %s\n", tmp);
	return rc;
}

/* --sweep-cell H,B: the sweep's rows of that hidden width and batch only (0: all). */
static uint32_t sweep_h, sweep_b;

static int sweep(const char *data, const char *dir, int torch)
{
	static const uint32_t widths[] = { 256, 1024, 4096 }, batches[] = { 64, 256, 1024 };
	struct run_spec s = { .train = 10000, .val = 2000, .epochs = 3 };
	const char *best = blaskernel_auto(cpu_this(), NULL, 0);
	char loaded[64];
	struct peaks pk = { 0 };
	struct tr_err err = { 0 };
	double peak[3];
	bool bf16 = k_precision_check(K_BF16, &err) == 0;

	print_machine();
	if (kernel_peaks(best, &pk, loaded, sizeof(loaded)) < 0) {
		fprintf(stderr, "bench-engine: could not measure the sgemm peak of %s\n", best);
		return 1;
	}
	peak[1] = pk.p1;
	peak[2] = pk.p2;
	printf("sgemm peak (n=2048) of the best float32 kernel, %s: 2 threads %.1f GFLOP/s, 1 thread %.1f GFLOP/s (before the sweep)\n",
	       loaded, peak[2] / 1e9, peak[1] / 1e9);
	printf("sweep: MLP 784-H-10, %u training + %u validation samples per epoch (not the lesson's 50000 + 10000),\n"
	       "median of %d epochs; efficiency = the shape's FLOPs / (median epoch x that thread count's peak);\n"
	       "PyTorch at its best: threads=1 rows 1 torch thread, threads=2 rows the faster of 1 and 2\n"
	       "(OPENBLAS_NUM_THREADS=1, OPENBLAS_CORETYPE=%s)\n",
	       s.train, s.val, s.epochs, blaskernel_state()->in_use);
	if (bf16) {
		char env[NUMERICS_TEXT_MAX];

		k_precision_numerics(K_BF16, env, sizeof(env));
		printf("bf16 s: the same run in precision bf16 (%s); x fp32: its speedup over traind s\n", env);
	} else {
		printf("bf16: not measured: %s\n", err.msg);
	}
	printf("%6s %6s %3s | %9s %6s | %9s %7s | %9s %4s %8s\n", "hidden", "batch", "thr", "traind s", "eff",
	       "bf16 s", "x fp32", "torch s", "tthr", "speedup");
	for (size_t h = 0; h < sizeof(widths) / sizeof(widths[0]); h++)
		for (size_t bt = 0; bt < sizeof(batches) / sizeof(batches[0]); bt++)
			for (int thr = 1; thr <= 2; thr++) {
				struct epoch_result r;
				double ts = -1, eff;
				int tthr = 0;
				char what[512], b16[16] = "-", x16[16] = "-";

				s.hidden = widths[h];
				s.batch = batches[bt];
				s.threads = thr;
				if ((sweep_h && s.hidden != sweep_h) || (sweep_b && s.batch != sweep_b))
					continue;
				if (measure(dir, &s, &r) < 0) {
					fprintf(stderr, "bench-engine: the sweep's run H=%u B=%u failed\n",
						s.hidden, s.batch);
					return 1;
				}
				if (bf16) {
					struct run_spec sb = s;
					struct epoch_result rb;

					sb.precision = K_BF16;
					if (measure(dir, &sb, &rb) == 0) {
						snprintf(b16, sizeof(b16), "%.3f", rb.median);
						snprintf(x16, sizeof(x16), "%.2fx", r.median / rb.median);
					}
				}
				if (torch) {
					torch_batches = TORCH_BATCHES;
					ts = torch_best(data, "mlp", &s, &tthr, what, sizeof(what), NULL);
					torch_batches = 0;
				}
				eff = mlp_flops(s.hidden, s.train, s.val) / (r.median * peak[thr]);
				if (ts > 0)
					printf("%6u %6u %3d | %9.3f %6.2f | %9s %7s | %9.3f %4d %7.2fx\n", s.hidden,
					       s.batch, thr, r.median, eff, b16, x16, ts, tthr, ts / r.median);
				else
					printf("%6u %6u %3d | %9.3f %6.2f | %9s %7s | %9s %4s %8s\n", s.hidden, s.batch,
					       thr, r.median, eff, b16, x16, "-", "-", "-");
				fflush(stdout);
			}
	pk = (struct peaks){ 0 };
	kernel_peaks(best, &pk, loaded, sizeof(loaded));
	printf("sgemm peak after the sweep: 2 threads %.1f GFLOP/s, 1 thread %.1f GFLOP/s (efficiencies above use the before figures %.1f / %.1f)\n",
	       pk.p2 / 1e9, pk.p1 / 1e9, peak[2] / 1e9, peak[1] / 1e9);
	return 0;
}

/* ---- the candidate kernels against each other --------------------------- */

#define ROUNDS 3
#define MAX_CANDIDATES 8

struct candidate {
	const char *name;
	char loaded[64];
	struct peaks pk;
	double median, cpu;     /* the lesson MLP at threads=1: median epoch, its median CPU seconds */
	bool ok;
};

/* --probe-peak, --probe-lesson EPOCHS, in a run with OPENBLAS_CORETYPE set:
 * the peaks of the kernel loaded here, then the lesson MLP's epochs at
 * threads=1 (the kernel does the same on every thread; one thread's CPU
 * time is what a busy machine does not blur). */
static int probe(const char *dir, int epochs)
{
	struct peaks pk = { 0 };
	struct run_spec s = { .threads = 1, .epochs = epochs };
	struct epoch_result r;

	peaks(&pk);
	printf("peak %s %.6e %.6e %.6e\n", blaskernel_state()->in_use, pk.p2, pk.p1, pk.p1cpu);
	if (epochs > 0) {
		if (measure(dir, &s, &r) < 0)
			return 1;
		printf("epoch %.6f %.6f\n", r.median, cpu_median(&r));
		print_details(&r, 1);
	}
	return 0;
}

static int kernels(const char *dir, int epochs)
{
	static const char *const names[] = { "Cooperlake", "SkylakeX", "Haswell", "Zen", "Sandybridge" };
	const struct blaskernel_state *b = blaskernel_state();
	const char *best = blaskernel_auto(cpu_this(), NULL, 0);
	struct candidate c[MAX_CANDIDATES];
	size_t n = 0;
	const double flops = mlp_flops(256, 50000, 10000);
	char args[64];

	print_machine();
	memset(c, 0, sizeof(c));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (blaskernel_runs_on(names[i], cpu_this(), NULL, 0))
			c[n++].name = names[i];
	if (b->openblas_pick[0] && blaskernel_lookup(b->openblas_pick)) {
		bool seen = false;

		for (size_t i = 0; i < n; i++)
			seen |= strcasecmp(c[i].name, b->openblas_pick) == 0;
		if (!seen && n < MAX_CANDIDATES)
			c[n++].name = blaskernel_lookup(b->openblas_pick);
	}
	snprintf(args, sizeof(args), "--probe-lesson %d", epochs);
	printf("candidates: the kernels this CPU runs, each in its own run (OPENBLAS_CORETYPE); %d rounds,\n"
	       "alternating; per kernel the best round: sgemm peaks (n=2048; 2 threads and 1 by the clock, 1 by its\n"
	       "CPU time) and the lesson MLP at threads=1 (median of %d epochs: seconds, CPU seconds)\n",
	       ROUNDS, epochs);
	for (int round = 0; round < ROUNDS; round++)
		for (size_t i = 0; i < n; i++) {
			char out[4096], name[64];
			struct peaks q;
			double med, cpu;

			if (run_with_kernel(c[i].name, args, out, sizeof(out)) < 0 ||
			    sscanf(out, "peak %63s %lf %lf %lf\nepoch %lf %lf", name, &q.p2, &q.p1, &q.p1cpu, &med, &cpu) !=
				    6) {
				fprintf(stderr, "bench-engine: the run with %s failed\n", c[i].name);
				continue;
			}
			snprintf(c[i].loaded, sizeof(c[i].loaded), "%s", name);
			if (!c[i].ok || q.p2 > c[i].pk.p2)
				c[i].pk.p2 = q.p2;
			if (!c[i].ok || q.p1 > c[i].pk.p1)
				c[i].pk.p1 = q.p1;
			if (!c[i].ok || q.p1cpu > c[i].pk.p1cpu)
				c[i].pk.p1cpu = q.p1cpu;
			if (!c[i].ok || med < c[i].median)
				c[i].median = med;
			if (!c[i].ok || cpu < c[i].cpu)
				c[i].cpu = cpu;
			c[i].ok = true;
		}
	printf("%-12s %-12s | %9s %9s %9s | %9s %9s | %s\n", "kernel", "loaded as", "peak 2thr", "peak 1thr", "1thr/CPU",
	       "epoch s", "epoch CPU", "");
	for (size_t i = 0; i < n; i++) {
		if (!c[i].ok) {
			printf("%-12s %-12s | %9s %9s %9s | %9s %9s |\n", c[i].name, "-", "-", "-", "-", "-", "-");
			continue;
		}
		printf("%-12s %-12s | %9.1f %9.1f %9.1f | %9.3f %9.3f | %s%s\n", c[i].name, c[i].loaded, c[i].pk.p2 / 1e9,
		       c[i].pk.p1 / 1e9, c[i].pk.p1cpu / 1e9, c[i].median, c[i].cpu,
		       strcasecmp(c[i].name, best) == 0 ? "auto's choice" : "",
		       b->openblas_pick[0] && strcasecmp(c[i].name, b->openblas_pick) == 0 ? " OpenBLAS's own pick" : "");
	}
	for (size_t i = 0; i < n; i++)
		if (c[i].ok && strcasecmp(c[i].name, best) == 0)
			for (size_t j = 0; j < n; j++)
				if (c[j].ok && j != i)
					printf("%s against %s: sgemm peak %.2fx (2 threads), %.2fx (1 thread), %.2fx (per CPU second); lesson epoch (threads=1) %.2fx by the clock, %.2fx by CPU time; %s's efficiency per CPU second %.2f\n",
					       best, c[j].name, c[i].pk.p2 / c[j].pk.p2, c[i].pk.p1 / c[j].pk.p1,
					       c[i].pk.p1cpu / c[j].pk.p1cpu, c[j].median / c[i].median, c[j].cpu / c[i].cpu,
					       c[j].name, flops / (c[j].cpu * c[j].pk.p1cpu));
	return 0;
}

/* ---- kernels portable against openblas (issue 25) ----------------------------
 * Each model's epoch with kernels openblas (the kernel traind loads) and
 * kernels portable on each instruction-set path this CPU runs, at threads=2
 * and threads=1, ROUNDS rounds alternating; per round the median of the
 * epochs, then the ratio openblas / portable (> 1: portable faster) per
 * round: their range. Smaller epochs than the lesson's figures (the plain C
 * path runs ~1 GFLOP/s); resnet20 not on the plain C path (~60x slower).
 * Beside them, per round, the fair baseline of the narrower paths
 * (pk_fair): this program run again with OPENBLAS_CORETYPE=Haswell (what an
 * AVX2-only CPU runs) against the avx2 path and =Prescott (OpenBLAS's
 * generic x86-64 kernel) against the plain C path. */
static const struct {
	const char *label, *model, *set;
	uint32_t train, val, batch;
	bool sgd, generic;
} pk_models[] = {
	{ "lesson MLP", NULL, "mnist", 5000, 1000, 64, false, true },
	{ "lenet5", "lenet5", "mnist", 2000, 500, 64, false, true },
	{ "resnet20", "resnet20", "fashion-mnist", 1024, 256, 128, true, false },
};
#define PK_MODELS (sizeof(pk_models) / sizeof(pk_models[0]))

/* The run of pk_models[mi] at `threads`, kernels openblas (isa NULL) or
 * portable on isa. */
static struct run_spec pk_run(size_t mi, int threads, int epochs, const char *isa)
{
	struct run_spec r = { .model = pk_models[mi].model, .sgd = pk_models[mi].sgd,
			      .batch = pk_models[mi].batch, .train = pk_models[mi].train,
			      .val = pk_models[mi].val, .threads = threads, .epochs = epochs, .isa = isa };

	return r;
}

/* --probe-portable MODEL THREADS EPOCHS, in a run with OPENBLAS_CORETYPE
 * set: the kernel OpenBLAS loaded and pk_models[MODEL]'s median epoch with
 * kernels openblas, wall and CPU seconds ("openblas NAME SECONDS CPU"). */
static int probe_portable(const char *data, size_t mi, int threads, int epochs)
{
	struct run_spec r;
	struct epoch_result res;
	char dir[4096];

	if (mi >= PK_MODELS || threads < 1 || epochs < 1)
		return 2;
	r = pk_run(mi, threads, epochs, NULL);
	snprintf(dir, sizeof(dir), "%s/%s", data, pk_models[mi].set);
	if (measure(dir, &r, &res) < 0)
		return 1;
	printf("openblas %s %.6f %.6f\n", blaskernel_state()->in_use, res.median, cpu_median(&res));
	return 0;
}

/* The fair baselines of the narrower paths, each OpenBLAS kernel in a run
 * of its own (OpenBLAS picks its kernel at load): what an AVX2-only CPU
 * runs (Haswell) against the avx2 path, OpenBLAS's generic x86-64 kernel
 * (Prescott) against the plain C path. */
static const char *const pk_fair[3] = { NULL, "Haswell", "Prescott" };

/* One timing: wall and CPU seconds (every thread's) of the median epoch. */
struct pk_time {
	double wall, cpu;
};

/* " ratio W lo-hi, CPU lo-hi" of base / portable over the rounds. */
static void pk_print_ratios(const struct pk_time *base, const struct pk_time *port)
{
	double lo[2] = { 0, 0 }, hi[2] = { 0, 0 };

	for (int round = 0; round < ROUNDS; round++) {
		double q[2] = { base[round].wall / port[round].wall, base[round].cpu / port[round].cpu };

		for (int c = 0; c < 2; c++) {
			lo[c] = round == 0 || q[c] < lo[c] ? q[c] : lo[c];
			hi[c] = round == 0 || q[c] > hi[c] ? q[c] : hi[c];
		}
	}
	printf(": ratio wall %.2f-%.2f, CPU %.2f-%.2f\n", lo[0], hi[0], lo[1], hi[1]);
}

static void pk_print_times(const char *what, const struct pk_time *t)
{
	printf(" %s", what);
	for (int round = 0; round < ROUNDS; round++)
		printf(" %.3f/%.3f", t[round].wall, t[round].cpu);
}

static int portable_bench(const char *data, int epochs)
{
	static const char *const isas[] = { "avx512", "avx2", "generic" };
	char dir[4096];

	print_machine();
	printf("kernels portable against openblas: the median of %d epochs per round, %d rounds, wall/CPU seconds (CPU: every thread of the run); ratio = openblas / portable (> 1: portable faster), its range over the rounds, by wall time and by CPU time (on a loaded machine trust CPU)\n",
	       epochs, ROUNDS);
	for (size_t mi = 0; mi < PK_MODELS; mi++)
		for (int threads = 2; threads >= 1; threads--) {
			struct pk_time ob[ROUNDS], pt[3][ROUNDS], fair[3][ROUNDS];
			bool ok[3] = { false, false, false }, fair_ok[3] = { false, false, false };
			char fair_name[3][64] = { "", "", "" };
			double load0[3] = { 0 }, load1[3] = { 0 };

			if (getloadavg(load0, 3) < 0)
				load0[0] = -1;
			snprintf(dir, sizeof(dir), "%s/%s", data, pk_models[mi].set);
			for (int round = 0; round < ROUNDS; round++) {
				struct run_spec r = pk_run(mi, threads, epochs, NULL);
				struct epoch_result res;

				if (measure(dir, &r, &res) < 0) {
					fprintf(stderr, "bench-engine: the %s run failed\n", pk_models[mi].label);
					return 1;
				}
				ob[round] = (struct pk_time){ res.median, cpu_median(&res) };
				for (int k = 0; k < 3; k++) {
					enum pk_isa isa;

					if (pk_isa_parse(isas[k], &isa) < 0 || !pk_isa_supported(isa) ||
					    (k == 2 && !pk_models[mi].generic))
						continue;
					r.isa = isas[k];
					if (measure(dir, &r, &res) < 0) {
						fprintf(stderr, "bench-engine: the portable %s run on %s failed\n",
							pk_models[mi].label, isas[k]);
						return 1;
					}
					pt[k][round] = (struct pk_time){ res.median, cpu_median(&res) };
					ok[k] = true;
					if (pk_fair[k]) {
						char args[128], out[4096], name[64];
						double sec, cpu;

						snprintf(args, sizeof(args), "--probe-portable %zu %d %d", mi, threads,
							 epochs);
						if (run_with_kernel(pk_fair[k], args, out, sizeof(out)) == 0 &&
						    sscanf(out, "openblas %63s %lf %lf", name, &sec, &cpu) == 3) {
							fair[k][round] = (struct pk_time){ sec, cpu };
							fair_ok[k] = true;
							snprintf(fair_name[k], sizeof(fair_name[k]), "%s", name);
						} else {
							fprintf(stderr, "bench-engine: the %s run with OPENBLAS_CORETYPE=%s failed\n",
								pk_models[mi].label, pk_fair[k]);
							fair_ok[k] = false;
						}
					}
				}
			}
			if (getloadavg(load1, 3) < 0)
				load1[0] = -1;
			printf("%-10s threads=%d: load average %.2f at the start, %.2f at the end\n", pk_models[mi].label,
			       threads, load0[0], load1[0]);
			for (int k = 0; k < 3; k++) {
				if (!ok[k]) {
					printf("%-10s threads=%d %-8s: not run (%s)\n", pk_models[mi].label, threads, isas[k],
					       k == 2 ? "the plain C path is too slow for this model" : "this CPU cannot run it");
					continue;
				}
				printf("%-10s threads=%d %-8s:", pk_models[mi].label, threads, isas[k]);
				pk_print_times("openblas", ob);
				pk_print_times("s, portable", pt[k]);
				printf(" s");
				pk_print_ratios(ob, pt[k]);
				if (!pk_fair[k])
					continue;
				if (!fair_ok[k]) {
					printf("%-10s threads=%d %-8s: OpenBLAS %s not measured (its run failed)\n",
					       pk_models[mi].label, threads, isas[k], pk_fair[k]);
					continue;
				}
				printf("%-10s threads=%d %-8s: openblas %s (what a CPU without %s runs)",
				       pk_models[mi].label, threads, isas[k], fair_name[k], k == 1 ? "AVX-512" : "AVX2");
				pk_print_times("", fair[k]);
				printf(" s");
				pk_print_ratios(fair[k], pt[k]);
			}
		}
	return 0;
}

int main(int argc, char **argv)
{
	const char *data = getenv("TRAIND_DATA_DIR"), *pin = NULL;
	char dir[4096];
	int epochs = 5, do_sweep = 0, do_kernels = 0, do_portable = 0, torch = 1, only_resnet = 0, only_bf16 = 0,
	    only_mlp = 0, only_seq = 0, only_conv = 0, probe_peak = 0, probe_epochs = -1, probe_pk_model = -1,
	    probe_pk_threads = 0, probe_pk_epochs = 0, rc;
	const char *seq_only = NULL;
	struct tr_err err = { 0 };
	ssize_t n;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--sweep") == 0) {
			do_sweep = 1;
		} else if (strcmp(argv[i], "--resnet") == 0) {
			only_resnet = 1;
		} else if (strcmp(argv[i], "--bf16") == 0) {
			only_bf16 = 1;
		} else if (strcmp(argv[i], "--sweep-cell") == 0 && i + 1 < argc &&
			   sscanf(argv[i + 1], "%u,%u", &sweep_h, &sweep_b) == 2) {
			do_sweep = 1;
			i++;
		} else if (strcmp(argv[i], "--mlp") == 0) {
			only_mlp = 1;
		} else if (strcmp(argv[i], "--sequences") == 0) {
			only_seq = 1;
			if (i + 1 < argc && (strcmp(argv[i + 1], "gpt") == 0 || strcmp(argv[i + 1], "char_lstm") == 0))
				seq_only = argv[++i];
		} else if (strcmp(argv[i], "--conv") == 0) {
			only_conv = 1;
		} else if (strcmp(argv[i], "--kernels") == 0) {
			do_kernels = 1;
		} else if (strcmp(argv[i], "--portable") == 0) {
			do_portable = 1;
		} else if (strcmp(argv[i], "--no-torch") == 0) {
			torch = 0;
		} else if (strcmp(argv[i], "--blas-kernel") == 0 && i + 1 < argc) {
			pin = argv[++i];
		} else if (strncmp(argv[i], "--blas-kernel=", 14) == 0) {
			pin = argv[i] + 14;
		} else if (strcmp(argv[i], "--probe-peak") == 0) {
			probe_peak = 1;
		} else if (strcmp(argv[i], "--probe-lesson") == 0 && i + 1 < argc) {
			probe_epochs = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--probe-portable") == 0 && i + 3 < argc) {
			probe_pk_model = atoi(argv[++i]);
			probe_pk_threads = atoi(argv[++i]);
			probe_pk_epochs = atoi(argv[++i]);
		} else if (atoi(argv[i]) >= 1 && atoi(argv[i]) <= MAX_EPOCHS) {
			epochs = atoi(argv[i]);
		} else {
			fprintf(stderr, "usage: bench-engine [EPOCHS (1..%d, 5)] [--sweep | --sweep-cell H,B | --mlp | --resnet | --bf16 | --kernels | --portable | --sequences [gpt|char_lstm] | --conv] "
				"[--no-torch] [--blas-kernel NAME|auto|openblas]\n", MAX_EPOCHS);
			return 2;
		}
	}
	/* The kernel traind would run (or the pinned one), loaded before
	 * anything else: this may run the benchmark again. */
	if (blaskernel_start(argv, pin, &err) < 0) {
		fprintf(stderr, "bench-engine: %s\n", err.msg);
		return 2;
	}
	n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	if (n <= 0) {
		fprintf(stderr, "bench-engine: /proc/self/exe: %s\n", strerror(errno));
		return 1;
	}
	self_path[n] = '\0';
	if (!data)
		data = "data";
	snprintf(dir, sizeof(dir), "%s/mnist", data);
	kernels_global_init();
	if (probe_peak || probe_epochs >= 0)
		return probe(dir, probe_epochs > 0 ? probe_epochs : 0);
	if (probe_pk_model >= 0)
		return probe_portable(data, (size_t)probe_pk_model, probe_pk_threads, probe_pk_epochs);
	if (do_kernels)
		return kernels(dir, epochs < 3 ? 3 : epochs);
	if (do_portable)
		return portable_bench(data, epochs);
	if (only_resnet) {
		print_machine();
		return resnet(data, torch);
	}
	if (only_mlp)
		return mlp_section(data, dir, epochs, torch);
	if (only_bf16) {
		print_machine();
		return bf16_section(data, dir, epochs, torch);
	}
	if (only_conv) {
		print_machine();
		return conv_section(data, epochs < 2 ? 2 : epochs, torch);
	}
	if (only_seq) {
		print_machine();
		return sequences(torch, seq_only);
	}
	if (do_sweep)
		return sweep(data, dir, torch);
	rc = lesson(data, dir, epochs, torch);
	if (rc == 0)
		rc = bf16_section(data, dir, epochs, torch);
	return rc ? rc : resnet(data, torch);
}
