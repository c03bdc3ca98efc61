/*
 * bench-portable.c - the portable GEMM (engine/core/portable.c) against
 * OpenBLAS's sgemm on the shapes of training, on each instruction-set path
 * the CPU runs, at 1 and 2 threads, measured in one run (the machines are
 * shared: only ratios within a run mean anything); and, with --ulp, the
 * portable exp/log/tanh/erf/sigmoid against glibc's double functions over
 * every float.
 *
 *   bench-portable [--wall] [ROUNDS]   the GEMM table (ROUNDS timed rounds, 7;
 *                                  CPU time, or wall time with --wall)
 *   bench-portable [--wall] --conv [ROUNDS]  lenet5's and resnet20's convolutions
 *                                  (a chunk of 8 samples: forward, dW, dx) against
 *                                  im2col + OpenBLAS, per path, one thread
 *   bench-portable --epoch [ROUNDS]  the lesson MLP's epoch (20000 samples)
 *                                  with kernels openblas and portable (each
 *                                  vector path), 1 and 2 threads
 *   bench-portable --ulp [STEP [FUNC]]  max ulp error of each function (or
 *                                  FUNC: exp, log, tanh, erf, sigmoid) over
 *                                  every STEP-th float bit pattern (1: all 2^32)
 *
 * The table. Each row is one product C = op(A) op(B) as the layers make it
 * (batch 64): the lesson MLP's (forward X W1^T: NT; the weight gradient
 * dY^T X: TN; the gradient down dY W: NN), lenet5's and resnet20's im2col
 * products (forward W col: NN; dW = dY col^T: NT, or NN from col^T stored
 * transposed; dcol = W^T dY: TN), and large squares. OpenBLAS runs as traind
 * runs it (kernels.c: one thread per call, the team's members each computing
 * their block of C, split as net.c splits: columns of C, or rows when C is
 * taller than wide; a product of m n k < 2^18 on one thread, as net.c's
 * SPLIT_MIN_FLOPS); the portable GEMM as pk_gemm_team. Every cell is the
 * best of ROUNDS rounds in which portable and OpenBLAS alternate, each timed
 * over enough calls to last a few milliseconds, by CPU time (stamp).
 *
 * With TRAIND_ISA set, only that path (e.g. TRAIND_ISA=avx2 with
 * OPENBLAS_CORETYPE=Haswell: the AVX2 path against OpenBLAS's AVX2 kernel, as
 * on a CPU without AVX-512).
 *
 * Printed with the CPU model, OpenBLAS's version and kernel, the machine's
 * load, and two peaks measured in the same run: the FMA peak (a loop of
 * independent fused multiply-adds in registers, on the widest path) and
 * OpenBLAS's large sgemm (2048^3) on the same number of threads. "eff" is a
 * cell's GFLOP/s over the FMA peak of its thread count.
 */
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "traind/config.h"
#include "traind/dataset.h"
#include "traind/kernels.h"
#include "traind/numerics.h"
#include "traind/portable.h"
#include "traind/team.h"
#include "traind/trainer.h"

/* The clock of a measurement on a team: CPU time by default, since on a
 * machine shared with others wall time mostly measures the others. Each
 * member reads its own thread's CPU clock in a phase of its own before and
 * after; a measurement is the largest member's difference (the critical
 * path, counting a member's waits between phases: it spins, then yields,
 * then sleeps). Wall time with --wall. */
static bool use_wall;

struct stamp {
	double t[TEAM_MAX_MEMBERS];
};

static double thread_cpu(void)
{
	struct timespec ts;

	clock_gettime(use_wall ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void stamp_member(void *arg, unsigned idx, unsigned n)
{
	(void)n;
	((struct stamp *)arg)->t[idx] = thread_cpu();
}

static void stamp(struct team *team, struct stamp *s)
{
	if (team && !use_wall)
		team_run(team, stamp_member, s);
	else
		stamp_member(s, 0, 1);
}

static double elapsed(struct team *team, const struct stamp *a, const struct stamp *b)
{
	double worst = 0.0;

	for (unsigned i = 0; i < (team && !use_wall ? team_size(team) : 1); i++)
		worst = b->t[i] - a->t[i] > worst ? b->t[i] - a->t[i] : worst;
	return worst;
}

static void cpu_model(char *buf, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(buf, len, "unknown");
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
			snprintf(buf, len, "%s", strchr(line, ':') + 2);
			buf[strcspn(buf, "\n")] = '\0';
			break;
		}
	if (f)
		fclose(f);
}

/* ---- the FMA peak: independent chains in registers ---------------------------- */

#define PEAK_ITERS 4000000L

#if defined(__x86_64__)
__attribute__((target("avx512f,fma"))) static float fma_loop_avx512(long iters)
{
	__m512 acc[24], x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(-0.0000001f);
	float out[16];

	for (int i = 0; i < 24; i++)
		acc[i] = _mm512_set1_ps((float)i);
	for (long it = 0; it < iters; it++)
#pragma GCC unroll 24
		for (int i = 0; i < 24; i++)
			acc[i] = _mm512_fmadd_ps(acc[i], x, y);
	for (int i = 1; i < 24; i++)
		acc[0] = _mm512_add_ps(acc[0], acc[i]);
	_mm512_storeu_ps(out, acc[0]);
	return out[0];
}

__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters)
{
	__m256 acc[12], x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(-0.0000001f);
	float out[8];

	for (int i = 0; i < 12; i++)
		acc[i] = _mm256_set1_ps((float)i);
	for (long it = 0; it < iters; it++)
#pragma GCC unroll 12
		for (int i = 0; i < 12; i++)
			acc[i] = _mm256_fmadd_ps(acc[i], x, y);
	for (int i = 1; i < 12; i++)
		acc[0] = _mm256_add_ps(acc[0], acc[i]);
	_mm256_storeu_ps(out, acc[0]);
	return out[0];
}
#endif

/* FLOPs of one fma_loop call on the widest path; 0 when there is none. */
static double fma_loop(long iters)
{
	volatile float sink;

#if defined(__x86_64__)
	if (pk_isa_supported(PK_ISA_AVX512)) {
		sink = fma_loop_avx512(iters);
		return 24.0 * 32.0 * (double)iters;
	}
	if (pk_isa_supported(PK_ISA_AVX2)) {
		sink = fma_loop_avx2(iters);
		return 12.0 * 16.0 * (double)iters;
	}
#endif
	(void)sink;
	(void)iters;
	return 0.0;
}

struct peak_job {
	double flops[TEAM_MAX_MEMBERS];
};

static void peak_member(void *arg, unsigned idx, unsigned n)
{
	struct peak_job *j = arg;

	(void)n;
	j->flops[idx] = fma_loop(PEAK_ITERS);
}

/* GFLOP/s of the FMA loop on the team (best of 5). */
static double fma_peak(struct team *team)
{
	double best = 0.0;

	for (int s = 0; s < 5; s++) {
		struct peak_job j = { { 0 } };
		struct stamp t0, t1;
		double total = 0.0, g;

		stamp(team, &t0);
		if (team)
			team_run(team, peak_member, &j);
		else
			peak_member(&j, 0, 1);
		stamp(team, &t1);
		g = elapsed(team, &t0, &t1);
		for (unsigned i = 0; i < (team ? team_size(team) : 1); i++)
			total += j.flops[i];
		if (total / g / 1e9 > best)
			best = total / g / 1e9;
	}
	return best;
}

/* OpenBLAS's own threads: wall time, the best of 4 (CPU time cannot see
 * its threads). */
static double sgemm_peak(int threads)
{
	const int n = 2048;
	float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n);
	float *c = malloc(sizeof(float) * (size_t)n * n);
	double best = 0.0;

	for (size_t i = 0; i < (size_t)n * n; i++) {
		a[i] = (float)(i % 17) * 0.01f;
		b[i] = (float)(i % 13) * 0.01f;
	}
	openblas_set_num_threads(threads);
	for (int s = 0; s < 4; s++) {
		struct timespec t0, t1;
		double g;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		g = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
		if (2.0 * n * n * n / g / 1e9 > best)
			best = 2.0 * n * n * n / g / 1e9;
	}
	openblas_set_num_threads(1);
	free(a);
	free(b);
	free(c);
	return best;
}

/* ---- the table --------------------------------------------------------------------- */

struct product {
	const char *what;
	int ta, tb;
	size_t m, n, k;
	int lesson;              /* one of the lesson MLP's products per step */
};

static const struct product products[] = {
	{ "mlp fwd1  X W1^T", 0, 1, 64, 256, 784, 1 },
	{ "mlp dW1   dY^T X", 1, 0, 256, 784, 64, 1 },
	{ "mlp fwd2  H W2^T", 0, 1, 64, 10, 256, 1 },
	{ "mlp dW2   dY^T H", 1, 0, 10, 256, 64, 1 },
	{ "mlp dH    dY W2", 0, 0, 64, 256, 10, 1 },
	{ "mlp dX    dY W1", 0, 0, 64, 784, 256, 0 },
	{ "lenet c1 fwd", 0, 0, 6, 784, 25, 0 },
	{ "lenet c1 dW", 0, 1, 6, 25, 784, 0 },
	{ "lenet c1 dW colT", 0, 0, 6, 25, 784, 0 },
	{ "lenet c1 dcol", 1, 0, 25, 784, 6, 0 },
	{ "lenet c2 fwd", 0, 0, 16, 100, 150, 0 },
	{ "lenet c2 dW", 0, 1, 16, 150, 100, 0 },
	{ "lenet c2 dcol", 1, 0, 150, 100, 16, 0 },
	{ "r20 16@32 fwd", 0, 0, 16, 1024, 144, 0 },
	{ "r20 16@32 dW", 0, 1, 16, 144, 1024, 0 },
	{ "r20 16@32 dcol", 1, 0, 144, 1024, 16, 0 },
	{ "r20 32@16 fwd", 0, 0, 32, 256, 288, 0 },
	{ "r20 32@16 dW", 0, 1, 32, 288, 256, 0 },
	{ "r20 32@16 dcol", 1, 0, 288, 256, 32, 0 },
	{ "r20 64@8 fwd", 0, 0, 64, 64, 576, 0 },
	{ "r20 64@8 dW", 0, 1, 64, 576, 64, 0 },
	{ "r20 64@8 dcol", 1, 0, 576, 64, 64, 0 },
	{ "square 512", 0, 0, 512, 512, 512, 0 },
	{ "square 1024", 0, 0, 1024, 1024, 1024, 0 },
};
#define NSHAPES (sizeof(products) / sizeof(products[0]))

struct gemm_job {
	const struct product *s;
	const float *a, *b;
	float *c;
	size_t lda, ldb, ldc;
};

/* OpenBLAS as traind runs it: the member's block of C, one thread each. */
static void openblas_member(void *arg, unsigned idx, unsigned nm)
{
	const struct gemm_job *j = arg;
	const struct product *s = j->s;
	size_t lo, hi;

	if (s->n >= s->m) {
		team_split(s->n, idx, nm, 16, &lo, &hi);
		if (lo < hi)
			k_gemm(s->ta, s->tb, s->m, hi - lo, s->k, 1.0f, j->a, j->lda,
			       s->tb ? j->b + lo * j->ldb : j->b + lo, j->ldb, 0.0f, j->c + lo, j->ldc);
	} else {
		team_split(s->m, idx, nm, 16, &lo, &hi);
		if (lo < hi)
			k_gemm(s->ta, s->tb, hi - lo, s->n, s->k, 1.0f, s->ta ? j->a + lo : j->a + lo * j->lda,
			       j->lda, j->b, j->ldb, 0.0f, j->c + lo * j->ldc, j->ldc);
	}
}

static void run_openblas(struct team *team, const struct gemm_job *j)
{
	const struct product *s = j->s;

	/* net.c runs a product this small on the owner (SPLIT_MIN_FLOPS), and
	 * so does pk_gemm_team */
	if (team && (double)s->m * (double)s->n * (double)s->k >= (double)(1u << 18))
		team_run(team, openblas_member, (void *)j);
	else
		openblas_member((void *)j, 0, 1);
}

static void run_portable(struct team *team, const struct gemm_job *j)
{
	const struct product *s = j->s;

	pk_gemm_team(team, s->ta, s->tb, s->m, s->n, s->k, 1.0f, j->a, j->lda, j->b, j->ldb, 0.0f, j->c,
		     j->ldc);
}

/* Seconds per call of portable and OpenBLAS, best of `rounds`, alternating. */
static void measure(struct team *team, const struct gemm_job *j, int rounds, double *tp, double *to)
{
	double flops = 2.0 * (double)j->s->m * (double)j->s->n * (double)j->s->k;
	long reps = (long)(3e8 / flops) + 1;
	struct stamp t0, t1;

	*tp = *to = 1e30;
	run_portable(team, j);
	run_openblas(team, j);
	for (int r = 0; r < rounds; r++) {
		double g;

		stamp(team, &t0);
		for (long q = 0; q < reps; q++)
			run_portable(team, j);
		stamp(team, &t1);
		g = elapsed(team, &t0, &t1) / (double)reps;
		*tp = g < *tp ? g : *tp;
		stamp(team, &t0);
		for (long q = 0; q < reps; q++)
			run_openblas(team, j);
		stamp(team, &t1);
		g = elapsed(team, &t0, &t1) / (double)reps;
		*to = g < *to ? g : *to;
	}
}

static int table(int rounds)
{
	const char *env = getenv("TRAIND_ISA");
	bool only_env = env && *env;   /* TRAIND_ISA set: that path only */
	struct team *teams[3] = { NULL, NULL, NULL };
	double fpeak[3], speak[3];
	char cpu[256], blas[128];
	double load[3] = { 0 };
	FILE *la = fopen("/proc/loadavg", "r");

	kernels_global_init();
	if (team_new(&teams[2], 2) < 0) {
		fprintf(stderr, "bench-portable: cannot start a team of 2\n");
		return 1;
	}
	if (la) {
		if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
			load[0] = -1;
		fclose(la);
	}
	cpu_model(cpu, sizeof(cpu));
	numerics_blas(blas, sizeof(blas));
	for (int t = 1; t <= 2; t++) {
		fpeak[t] = fma_peak(teams[t]);
		speak[t] = sgemm_peak(t);
	}
	printf("CPU: %s\n", cpu);
	printf("BLAS: %s (openblas_get_corename: %s)\n", blas, openblas_get_corename());
	printf("load average at the start: %.2f %.2f %.2f (a shared machine: compare ratios only)\n",
	       load[0], load[1], load[2]);
	printf("clock: %s\n", use_wall ? "wall" : "CPU time (each team member's own; the largest)");
	printf("FMA peak (registers, widest path): 1 thread %.1f GFLOP/s, 2 threads %.1f\n", fpeak[1],
	       fpeak[2]);
	printf("OpenBLAS sgemm 2048^3 (its own threads, wall time): 1 thread %.1f GFLOP/s, 2 threads %.1f\n",
	       speak[1], speak[2]);
	printf("portable paths: ");
	for (int i = PK_ISA_COUNT - 1; i >= 0; i--)
		printf("%s%s", pk_isa_name((enum pk_isa)i),
		       pk_isa_supported((enum pk_isa)i) ? (i ? ", " : "\n") : " (not on this CPU), ");
	printf("\n%-18s %-2s %14s %2s %-8s %9s %9s %6s %5s\n", "product", "", "m x n x k", "t", "path",
	       "portable", "OpenBLAS", "ratio", "eff");
	for (int isa = PK_ISA_COUNT - 1; isa >= 0; isa--) {
		double lesson_p[3] = { 0 }, lesson_o[3] = { 0 }, lesson_f = 0;

		if (!pk_isa_supported((enum pk_isa)isa) || (only_env && pk_isa_active() != (enum pk_isa)isa))
			continue;
		pk_isa_set((enum pk_isa)isa, NULL);
		for (size_t si = 0; si < NSHAPES; si++) {
			const struct product *s = &products[si];
			struct gemm_job j = { .s = s };
			size_t arows = s->ta ? s->k : s->m, brows = s->tb ? s->n : s->k;
			float *a, *b, *c;
			double flops = 2.0 * (double)s->m * (double)s->n * (double)s->k;

			/* the plain C path is for machines without vectors: the big ones
			 * would take minutes */
			if (isa == PK_ISA_GENERIC && flops > 3e7)
				continue;
			j.lda = s->ta ? s->m : s->k;
			j.ldb = s->tb ? s->k : s->n;
			j.ldc = s->n;
			a = k_alloc_floats(arows * j.lda);
			b = k_alloc_floats(brows * j.ldb);
			c = k_alloc_floats(s->m * s->n);
			for (size_t i = 0; i < arows * j.lda; i++)
				a[i] = (float)(i % 17) * 0.01f - 0.08f;
			for (size_t i = 0; i < brows * j.ldb; i++)
				b[i] = (float)(i % 13) * 0.01f - 0.06f;
			j.a = a;
			j.b = b;
			j.c = c;
			for (int t = 1; t <= 2; t++) {
				double tp, to;

				measure(teams[t], &j, isa == PK_ISA_GENERIC ? 2 : rounds, &tp, &to);
				printf("%-18s %c%c %4zux%4zux%4zu %2d %-8s %9.1f %9.1f %6.2f %5.2f\n", s->what,
				       s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->m, s->n, s->k, t,
				       pk_isa_name((enum pk_isa)isa), flops / tp / 1e9, flops / to / 1e9, to / tp,
				       flops / tp / 1e9 / fpeak[t]);
				if (s->lesson) {
					lesson_p[t] += tp;
					lesson_o[t] += to;
				}
			}
			if (s->lesson)
				lesson_f += flops;
			free(a);
			free(b);
			free(c);
		}
		for (int t = 1; t <= 2 && lesson_f > 0; t++)
			printf("%-18s %2s %14s %2d %-8s %9.1f %9.1f %6.2f %5.2f  (the MLP's five products of a step)\n",
			       "mlp step", "", "", t, pk_isa_name((enum pk_isa)isa), lesson_f / lesson_p[t] / 1e9,
			       lesson_f / lesson_o[t] / 1e9, lesson_o[t] / lesson_p[t],
			       lesson_f / lesson_p[t] / 1e9 / fpeak[t]);
	}
	team_free(teams[2]);
	return 0;
}

/* ---- --conv: the convolutions of lenet5 and resnet20 ------------------------------
 * Per shape, a chunk of CONV_ROWS samples (batch 128 in 16 chunks): the
 * portable conv (pk_conv_forward per sample, pk_conv_dw on the chunk,
 * pk_conv_dx per sample) against what a kernels openblas job runs (net.c:
 * per sample k_im2col + sgemm W col; im2col + sgemm dY col^T with beta 1;
 * sgemm W^T dY + k_col2im), one thread, by CPU time (or wall with --wall),
 * best of ROUNDS alternating. Every path this CPU runs, or TRAIND_ISA's. */
#define CONV_ROWS 8

static const struct conv_shape {
	const char *what;
	unsigned c, h, oc, k, s, p;
} conv_shapes[] = {
	{ "lenet c1 1>6 28 k5", 1, 28, 6, 5, 1, 2 },
	{ "lenet c2 6>16 14 k5", 6, 14, 16, 5, 1, 0 },
	{ "r20 1>16 28", 1, 28, 16, 3, 1, 1 },
	{ "r20 16>16 28", 16, 28, 16, 3, 1, 1 },
	{ "r20 16>32 28 s2", 16, 28, 32, 3, 2, 1 },
	{ "r20 32>32 14", 32, 14, 32, 3, 1, 1 },
	{ "r20 32>64 14 s2", 32, 14, 64, 3, 2, 1 },
	{ "r20 64>64 7", 64, 7, 64, 3, 1, 1 },
};
#define NCONV (sizeof(conv_shapes) / sizeof(conv_shapes[0]))

struct conv_bufs {
	const struct conv_shape *s;
	struct pk_conv cv;
	float *x, *w, *b, *y, *dy, *dx, *dw, *db, *col, *scratch;
	size_t in, out;
};

/* op 0 forward, 1 dW and db, 2 dx; portable or OpenBLAS */
static void conv_run(struct conv_bufs *c, int op, bool portable)
{
	const struct pk_conv *cv = &c->cv;
	size_t ckk = cv->ckk, ohw = cv->ohw;

	if (portable) {
		if (op == 1) {
			pk_conv_dw(cv, c->x, c->in, c->dy, c->out, CONV_ROWS, c->dw, c->db, c->scratch);
			return;
		}
		for (size_t r = 0; r < CONV_ROWS; r++) {
			if (op == 0)
				pk_conv_forward(cv, c->w, c->b, c->x + r * c->in, c->y + r * c->out, c->scratch);
			else
				pk_conv_dx(cv, c->w, c->dy + r * c->out, c->dx + r * c->in, c->scratch);
		}
		return;
	}
	for (size_t r = 0; r < CONV_ROWS; r++) {
		const float *xr = c->x + r * c->in, *dyr = c->dy + r * c->out;

		if (op == 0) {
			float *yr = c->y + r * c->out;

			k_im2col(c->col, xr, cv->c, cv->h, cv->w, cv->k, cv->s, cv->p, cv->oh, cv->ow);
			for (unsigned o = 0; o < cv->oc; o++)
				for (size_t t = 0; t < ohw; t++)
					yr[o * ohw + t] = c->b[o];
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cv->oc, (int)ohw, (int)ckk, 1.0f,
				    c->w, (int)ckk, c->col, (int)ohw, 1.0f, yr, (int)ohw);
		} else if (op == 1) {
			k_im2col(c->col, xr, cv->c, cv->h, cv->w, cv->k, cv->s, cv->p, cv->oh, cv->ow);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)cv->oc, (int)ckk, (int)ohw, 1.0f,
				    dyr, (int)ohw, c->col, (int)ohw, r ? 1.0f : 0.0f, c->dw, (int)ckk);
			for (unsigned o = 0; o < cv->oc; o++) {
				float sum = r ? c->db[o] : 0.0f;

				for (size_t t = 0; t < ohw; t++)
					sum += dyr[o * ohw + t];
				c->db[o] = sum;
			}
		} else {
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ckk, (int)ohw, (int)cv->oc, 1.0f,
				    c->w, (int)ckk, dyr, (int)ohw, 0.0f, c->col, (int)ohw);
			k_col2im(c->dx + r * c->in, c->col, cv->c, cv->h, cv->w, cv->k, cv->s, cv->p, cv->oh,
				 cv->ow);
		}
	}
}

static int conv_table(int rounds)
{
	const char *env = getenv("TRAIND_ISA");
	bool only_env = env && *env;
	static const char *const opname[3] = { "fwd", "dW", "dx" };
	char cpu[256], blas[128];
	double load[3] = { 0 };

	kernels_global_init();
	if (getloadavg(load, 3) < 0)
		load[0] = -1;
	cpu_model(cpu, sizeof(cpu));
	numerics_blas(blas, sizeof(blas));
	printf("CPU: %s\n", cpu);
	printf("BLAS: %s (openblas_get_corename: %s)\n", blas, openblas_get_corename());
	printf("load average at the start: %.2f %.2f %.2f (a shared machine: compare ratios only)\n",
	       load[0], load[1], load[2]);
	printf("clock: %s; a chunk of %d samples, 1 thread, best of %d; ratio = OpenBLAS / portable (> 1: portable faster)\n",
	       use_wall ? "wall" : "CPU time", CONV_ROWS, rounds);
	printf("\n%-20s %-3s %-7s %9s %9s %6s\n", "conv", "op", "path", "port. us", "OpenBLAS", "ratio");
	for (int isa = PK_ISA_COUNT - 1; isa >= 1; isa--) {
		double tot_p = 0, tot_o = 0;

		if (!pk_isa_supported((enum pk_isa)isa) || (only_env && pk_isa_active() != (enum pk_isa)isa))
			continue;
		pk_isa_set((enum pk_isa)isa, NULL);
		for (size_t si = 0; si < NCONV; si++) {
			struct conv_bufs c = { .s = &conv_shapes[si] };
			const struct conv_shape *s = c.s;
			size_t wn;

			if (pk_conv_init(&c.cv, s->c, s->h, s->h, s->oc, s->k, s->s, s->p, 1, 1) < 0)
				return 1;
			c.in = (size_t)s->c * s->h * s->h;
			c.out = (size_t)s->oc * c.cv.ohw;
			wn = (size_t)s->oc * c.cv.ckk;
			c.x = k_alloc_floats(CONV_ROWS * c.in);
			c.dx = k_alloc_floats(CONV_ROWS * c.in);
			c.y = k_alloc_floats(CONV_ROWS * c.out);
			c.dy = k_alloc_floats(CONV_ROWS * c.out);
			c.w = k_alloc_floats(wn);
			c.dw = k_alloc_floats(wn);
			c.b = k_alloc_floats(s->oc);
			c.db = k_alloc_floats(s->oc);
			c.col = k_alloc_floats(c.cv.ckk * c.cv.ohw);
			c.scratch = k_alloc_floats(pk_conv_scratch(&c.cv, CONV_ROWS));
			for (size_t i = 0; i < CONV_ROWS * c.in; i++)
				c.x[i] = (float)(i % 17) * 0.01f - 0.08f;
			for (size_t i = 0; i < CONV_ROWS * c.out; i++)
				c.dy[i] = (float)(i % 13) * 0.01f - 0.06f;
			for (size_t i = 0; i < wn; i++)
				c.w[i] = (float)(i % 11) * 0.01f - 0.05f;
			for (unsigned i = 0; i < s->oc; i++)
				c.b[i] = 0.01f * (float)i;
			for (int op = 0; op < 3; op++) {
				double flops = 2.0 * CONV_ROWS * (double)s->oc * (double)c.cv.ckk * (double)c.cv.ohw;
				long reps = (long)(1e8 / flops) + 1;
				double tp = 1e30, to = 1e30;

				conv_run(&c, op, true);
				conv_run(&c, op, false);
				for (int r = 0; r < rounds; r++) {
					struct stamp t0, t1;
					double g;

					stamp(NULL, &t0);
					for (long q = 0; q < reps; q++)
						conv_run(&c, op, true);
					stamp(NULL, &t1);
					g = elapsed(NULL, &t0, &t1) / (double)reps;
					tp = g < tp ? g : tp;
					stamp(NULL, &t0);
					for (long q = 0; q < reps; q++)
						conv_run(&c, op, false);
					stamp(NULL, &t1);
					g = elapsed(NULL, &t0, &t1) / (double)reps;
					to = g < to ? g : to;
				}
				printf("%-20s %-3s %-7s %9.1f %9.1f %6.2f\n", s->what, opname[op],
				       pk_isa_name((enum pk_isa)isa), tp * 1e6, to * 1e6, to / tp);
				tot_p += tp;
				tot_o += to;
			}
			free(c.x);
			free(c.dx);
			free(c.y);
			free(c.dy);
			free(c.w);
			free(c.dw);
			free(c.b);
			free(c.db);
			free(c.col);
			free(c.scratch);
			pk_conv_deinit(&c.cv);
		}
		printf("%-20s %-3s %-7s %9.1f %9.1f %6.2f\n", "all (sum)", "", pk_isa_name((enum pk_isa)isa),
		       tot_p * 1e6, tot_o * 1e6, tot_o / tot_p);
	}
	return 0;
}

/* ---- --epoch ------------------------------------------------------------------------ */

struct epoch_cfg {
	enum kernels_kind kernels;
	enum pk_isa isa;         /* portable */
	int threads;
	double wall[64], cpu[64];
	int n;
};

/* The process's user CPU time: its system time is mostly the team's
 * sched_yield while a member waits for another that the machine's load
 * has descheduled. */
static double process_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6;
}

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return n ? v[n / 2] : 0.0;
}

/* One epoch of the lesson's MLP (20000 training and 5000 validation
 * samples, batch 64, Adam) in each configuration, `rounds` times, the
 * configurations alternating within a round. */
static int epochs(int rounds)
{
	const char *dir = getenv("TRAIND_DATA_DIR");
	struct epoch_cfg cfgs[16];
	int ncfg = 0;
	struct dataset *ds = NULL;
	struct tr_err err = { 0 };
	char path[4096], cpu[256];

	snprintf(path, sizeof(path), "%s/mnist", dir ? dir : "data");
	if (dataset_load(&ds, path, &err) < 0) {
		fprintf(stderr, "bench-portable: %s\n", err.msg);
		return 1;
	}
	for (int t = 1; t <= 2; t++) {
		cfgs[ncfg++] = (struct epoch_cfg){ .kernels = KERNELS_OPENBLAS, .threads = t };
		for (int isa = PK_ISA_COUNT - 1; isa >= 1; isa--)   /* generic: far too slow for epochs */
			if (pk_isa_supported((enum pk_isa)isa))
				cfgs[ncfg++] = (struct epoch_cfg){ .kernels = KERNELS_PORTABLE,
								   .isa = (enum pk_isa)isa, .threads = t };
	}
	cpu_model(cpu, sizeof(cpu));
	printf("CPU: %s; OpenBLAS kernel %s\n", cpu, openblas_get_corename());
	printf("the lesson MLP 784-256-10, batch 64, Adam: one epoch of 20000 samples + 5000 validated, %d rounds\n",
	       rounds);
	for (int r = 0; r < rounds && r < 64; r++)
		for (int c = 0; c < ncfg; c++) {
			struct epoch_cfg *e = &cfgs[c];
			struct train_config cfg;
			struct trainer *t = NULL;
			double w0, c0;

			config_defaults(&cfg);
			cfg.epochs = 1;
			cfg.train_size = 20000;
			cfg.val_size = 5000;
			cfg.threads = (uint32_t)e->threads;
			cfg.kernels = e->kernels;
			if (e->kernels == KERNELS_PORTABLE)
				pk_isa_set(e->isa, NULL);
			if (trainer_new(&t, &cfg, ds, &err) < 0) {
				fprintf(stderr, "bench-portable: %s\n", err.msg);
				return 1;
			}
			w0 = wall_now();
			c0 = process_cpu();
			while (!trainer_epoch_done(t))
				trainer_step(t);
			trainer_end_epoch(t, NULL);
			e->wall[e->n] = wall_now() - w0;
			e->cpu[e->n++] = process_cpu() - c0;
			trainer_free(t);
		}
	printf("%-22s %2s %12s %12s %8s\n", "kernels", "t", "wall median", "user CPU", "ratio");
	for (int c = 0; c < ncfg; c++) {
		struct epoch_cfg *e = &cfgs[c], *base = &cfgs[c - (c % (ncfg / 2))];
		char name[64];
		double w = median(e->wall, e->n), cp = median(e->cpu, e->n);

		snprintf(name, sizeof(name), "%s%s%s", e->kernels == KERNELS_PORTABLE ? "portable " : "openblas",
			 e->kernels == KERNELS_PORTABLE ? pk_isa_name(e->isa) : "",
			 "");
		printf("%-22s %2d %10.3f s %10.3f s %8.2f\n", name, e->threads, w, cp,
		       e == base ? 1.0 : median(base->cpu, base->n) / cp);
	}
	printf("(user CPU: median seconds of the process; ratio: OpenBLAS's over this one's, same thread count)\n");
	dataset_free(ds);
	return 0;
}

/* ---- --ulp ------------------------------------------------------------------------ */

static double sigmoid64(double x)
{
	return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

static int ulp(uint64_t step, const char *only)
{
	static const struct {
		const char *name;
		void (*fn)(float *, const float *, size_t);
		double (*ref)(double);
	} fns[] = {
		{ "exp", pk_exp, exp }, { "log", pk_log, log }, { "tanh", pk_tanh, tanh },
		{ "erf", pk_erf, erf }, { "sigmoid", pk_sigmoid, sigmoid64 },
	};
	enum { B = 4096 };
	static float x[B], y[B];

	printf("path %s; every %llu-th float bit pattern; reference: glibc's double function rounded to float\n",
	       pk_isa_name(pk_isa_active()), (unsigned long long)step);
	fflush(stdout);
	for (size_t f = 0; f < sizeof(fns) / sizeof(fns[0]); f++) {
		double worst = 0.0, worst_denorm = 0.0;
		float at = 0.0f;
		uint64_t n = 0, specials_bad = 0;

		if (only && strcmp(only, fns[f].name) != 0)
			continue;

		for (uint64_t base = 0; base < (1ull << 32); base += (uint64_t)B * step) {
			int cnt = 0;

			for (; cnt < B && base + (uint64_t)cnt * step < (1ull << 32); cnt++) {
				uint32_t u = (uint32_t)(base + (uint64_t)cnt * step);

				memcpy(&x[cnt], &u, sizeof(float));
			}
			fns[f].fn(y, x, (size_t)cnt);
			for (int i = 0; i < cnt; i++) {
				double r = fns[f].ref(x[i]), a, u, e;
				float rf = (float)r;

				n++;
				if (isnan(r) || isinf(rf)) {
					specials_bad += isnan(r) ? !isnan(y[i]) : y[i] != rf;
					continue;
				}
				a = fabs((double)rf);
				u = a < 0x1p-126 ? 0x1p-149 : (double)(nextafterf((float)a, INFINITY) - (float)a);
				e = fabs((double)y[i] - r) / u;
				if (a < 0x1p-126 && e > worst_denorm)
					worst_denorm = e;
				if (e > worst) {
					worst = e;
					at = x[i];
				}
			}
		}
		printf("%-8s %llu inputs: max %.4f ulp (at %a), on denormal results %.4f; NaN/inf mismatches %llu\n",
		       fns[f].name, (unsigned long long)n, worst, at, worst_denorm,
		       (unsigned long long)specials_bad);
		fflush(stdout);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct tr_err err = { 0 };

	if (pk_init(&err) < 0) {
		fprintf(stderr, "bench-portable: %s\n", err.msg);
		return 2;
	}
	if (argc >= 2 && strcmp(argv[1], "--epoch") == 0)
		return epochs(argc >= 3 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 3);
	if (argc >= 2 && strcmp(argv[1], "--ulp") == 0)
		return ulp(argc >= 3 && strtoull(argv[2], NULL, 10) > 0 ? strtoull(argv[2], NULL, 10) : 1,
			   argc >= 4 ? argv[3] : NULL);
	if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		printf("usage: bench-portable [--wall] [ROUNDS] | [--wall] --conv [ROUNDS] | --epoch [ROUNDS] | --ulp [STEP [FUNC]]\n");
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "--wall") == 0) {
		use_wall = true;
		argc--;
		argv++;
	}
	if (argc >= 2 && strcmp(argv[1], "--conv") == 0)
		return conv_table(argc >= 3 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 5);
	return table(argc >= 2 ? atoi(argv[1]) > 0 ? atoi(argv[1]) : 7 : 7);
}
