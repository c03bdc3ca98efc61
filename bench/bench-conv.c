/*
 * bench-conv.c - resnet20's convolutions two ways, measured in one run (the
 * machine is shared: only the ratios within a run mean anything):
 *
 *   traind's:  per sample, im2col + OpenBLAS sgemm (forward, dW, dcol) +
 *              col2im, the loops of net.c's conv_forward/conv_backward, one
 *              BLAS thread;
 *   oneDNN's:  Debian's libdnnl (2.6) fp32 direct convolution over the whole
 *              batch in the layouts it prefers (jit:avx512_core picks
 *              nChw16c), the reorders from and to traind's NCHW counted.
 *
 * For each of resnet20's 3x3 shapes on 28x28 inputs (16 channels at 28x28,
 * 32 at 14x14, 64 at 7x7; batch 128) it prints the best of REPS
 * forward + backward-data + backward-weights times of each, their ratio,
 * the largest difference from traind's results relative to the tensor's
 * largest value, and whether oneDNN's bits repeat: twice on 1 OpenMP
 * thread, twice on 2, and 1 against 2 (oneDNN fixes a primitive's split of
 * the work by the thread count when the primitive is made; dW is a sum over
 * the batch, whose split follows it).
 *
 *   bench-conv [REPS (3)]
 *
 * This is the measurement behind doc/models.md's "Speed of resnet20": what
 * a `conv` key running oneDNN would give new jobs. Thread: main only.
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "traind/cpu.h"
#include "traind/kernels.h"

#define N 128
#define K 3
#define PAD 1

#define CK(x)                                                                                   \
	do {                                                                                    \
		dnnl_status_t s_ = (x);                                                         \
		if (s_ != dnnl_success) {                                                       \
			fprintf(stderr, "bench-conv: %s: oneDNN status %d\n", #x, (int)s_);     \
			exit(1);                                                                \
		}                                                                               \
	} while (0)

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float *random_floats(size_t n, unsigned *seed)
{
	float *p = k_alloc_floats(n);

	for (size_t i = 0; i < n && p; i++)
		p[i] = (float)rand_r(seed) / (float)RAND_MAX - 0.5f;
	return p;
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const float *b, size_t n)
{
	double d = 0, m = 0;

	for (size_t i = 0; i < n; i++) {
		d = fmax(d, fabs((double)a[i] - b[i]));
		m = fmax(m, fabs((double)b[i]));
	}
	return m > 0 ? d / m : d;
}

struct shape {
	int c, h;             /* channels in and out, height = width (stride 1, padding 1) */
	size_t xs, ws;        /* floats of x (N, C, H, H) and W (C, C, K, K); y is x's size */
	float *x, *w, *dy;    /* inputs */
	float *y, *dx, *dw;   /* outputs of the run being measured */
};

/* traind's way (conv_forward, conv_backward on one member with every row). */
static double traind_conv(struct shape *s, float *col, float *dcol)
{
	size_t ckk = (size_t)s->c * K * K, ohw = (size_t)s->h * s->h, in = s->xs / N;
	double t0 = now();

	for (size_t r = 0; r < N; r++) {
		k_im2col(col, s->x + r * in, s->c, s->h, s->h, K, 1, PAD, s->h, s->h);
		k_gemm(0, 0, s->c, ohw, ckk, 1.0f, s->w, ckk, col, ohw, 0.0f, s->y + r * in, ohw);
	}
	for (size_t r = 0; r < N; r++) {
		k_im2col(col, s->x + r * in, s->c, s->h, s->h, K, 1, PAD, s->h, s->h);
		k_gemm(0, 1, s->c, ckk, ohw, 1.0f, s->dy + r * in, ohw, col, ohw, r ? 1.0f : 0.0f, s->dw, ckk);
		k_gemm(1, 0, ckk, ohw, s->c, 1.0f, s->w, ckk, s->dy + r * in, ohw, 0.0f, dcol, ohw);
		k_col2im(s->dx + r * in, dcol, s->c, s->h, s->h, K, 1, PAD, s->h, s->h);
	}
	return now() - t0;
}

struct dnnl_conv {
	dnnl_engine_t eng;
	dnnl_stream_t st;
	dnnl_primitive_t fwd, bwd, wgt;
	dnnl_memory_t ux, uw, uy, udy, udx, udw;   /* traind's NCHW buffers */
	dnnl_memory_t x, w, wb, y, dy, dx, dw;     /* the primitives' layouts */
	const char *impl;
};

static void reorder(struct dnnl_conv *d, dnnl_memory_t from, dnnl_memory_t to)
{
	const dnnl_memory_desc_t *a, *b;
	dnnl_primitive_desc_t pd;
	dnnl_primitive_t p;
	dnnl_exec_arg_t args[2] = { { DNNL_ARG_FROM, from }, { DNNL_ARG_TO, to } };

	CK(dnnl_memory_get_memory_desc(from, &a));
	CK(dnnl_memory_get_memory_desc(to, &b));
	CK(dnnl_reorder_primitive_desc_create(&pd, a, d->eng, b, d->eng, NULL));
	CK(dnnl_primitive_create(&p, pd));
	CK(dnnl_primitive_execute(p, d->st, 2, args));
	dnnl_primitive_destroy(p);
	dnnl_primitive_desc_destroy(pd);
}

static void dnnl_setup(struct dnnl_conv *d, struct shape *s)
{
	dnnl_dims_t xd = { N, s->c, s->h, s->h }, wd = { s->c, s->c, K, K }, st = { 1, 1 }, p = { PAD, PAD };
	dnnl_memory_desc_t xm, wm, xa, wa;
	dnnl_convolution_desc_t fd, bd, wgd;
	dnnl_primitive_desc_t fpd, bpd, wpd;

	CK(dnnl_engine_create(&d->eng, dnnl_cpu, 0));
	CK(dnnl_stream_create(&d->st, d->eng, dnnl_stream_default_flags));
	CK(dnnl_memory_desc_init_by_tag(&xm, 4, xd, dnnl_f32, dnnl_nchw));
	CK(dnnl_memory_desc_init_by_tag(&wm, 4, wd, dnnl_f32, dnnl_oihw));
	CK(dnnl_memory_desc_init_by_tag(&xa, 4, xd, dnnl_f32, dnnl_format_tag_any));
	CK(dnnl_memory_desc_init_by_tag(&wa, 4, wd, dnnl_f32, dnnl_format_tag_any));
	CK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &xa, &wa, NULL,
					      &xa, st, p, p));
	CK(dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &xa, &wa, &xa, st, p, p));
	CK(dnnl_convolution_backward_weights_desc_init(&wgd, dnnl_convolution_direct, &xa, &wa, NULL, &xa, st, p,
						       p));
	CK(dnnl_primitive_desc_create(&fpd, &fd, NULL, d->eng, NULL));
	CK(dnnl_primitive_desc_create(&bpd, &bd, NULL, d->eng, fpd));
	CK(dnnl_primitive_desc_create(&wpd, &wgd, NULL, d->eng, fpd));
	CK(dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &d->impl));
	CK(dnnl_memory_create(&d->ux, &xm, d->eng, s->x));
	CK(dnnl_memory_create(&d->uw, &wm, d->eng, s->w));
	CK(dnnl_memory_create(&d->uy, &xm, d->eng, s->y));
	CK(dnnl_memory_create(&d->udy, &xm, d->eng, s->dy));
	CK(dnnl_memory_create(&d->udx, &xm, d->eng, s->dx));
	CK(dnnl_memory_create(&d->udw, &wm, d->eng, s->dw));
	CK(dnnl_memory_create(&d->x, dnnl_primitive_desc_query_md(fpd, dnnl_query_src_md, 0), d->eng,
			      DNNL_MEMORY_ALLOCATE));
	CK(dnnl_memory_create(&d->w, dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0), d->eng,
			      DNNL_MEMORY_ALLOCATE));
	CK(dnnl_memory_create(&d->y, dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0), d->eng,
			      DNNL_MEMORY_ALLOCATE));
	CK(dnnl_memory_create(&d->wb, dnnl_primitive_desc_query_md(bpd, dnnl_query_weights_md, 0), d->eng,
			      DNNL_MEMORY_ALLOCATE));
	CK(dnnl_memory_create(&d->dy, dnnl_primitive_desc_query_md(bpd, dnnl_query_diff_dst_md, 0), d->eng,
			      DNNL_MEMORY_ALLOCATE));
	CK(dnnl_memory_create(&d->dx, dnnl_primitive_desc_query_md(bpd, dnnl_query_diff_src_md, 0), d->eng,
			      DNNL_MEMORY_ALLOCATE));
	CK(dnnl_memory_create(&d->dw, dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_weights_md, 0), d->eng,
			      DNNL_MEMORY_ALLOCATE));
	CK(dnnl_primitive_create(&d->fwd, fpd));
	CK(dnnl_primitive_create(&d->bwd, bpd));
	CK(dnnl_primitive_create(&d->wgt, wpd));
	/* the primitives hold what they need of their descriptors */
	dnnl_primitive_desc_destroy(fpd);
	dnnl_primitive_desc_destroy(bpd);
	dnnl_primitive_desc_destroy(wpd);
}

static double dnnl_conv_run(struct dnnl_conv *d)
{
	dnnl_exec_arg_t fa[3] = { { DNNL_ARG_SRC, d->x }, { DNNL_ARG_WEIGHTS, d->w }, { DNNL_ARG_DST, d->y } };
	dnnl_exec_arg_t ba[3] = { { DNNL_ARG_DIFF_SRC, d->dx }, { DNNL_ARG_WEIGHTS, d->wb },
				  { DNNL_ARG_DIFF_DST, d->dy } };
	dnnl_exec_arg_t wa[3] = { { DNNL_ARG_SRC, d->x }, { DNNL_ARG_DIFF_WEIGHTS, d->dw },
				  { DNNL_ARG_DIFF_DST, d->dy } };
	double t0 = now();

	reorder(d, d->ux, d->x);
	reorder(d, d->uw, d->w);
	reorder(d, d->uw, d->wb);
	reorder(d, d->udy, d->dy);
	CK(dnnl_primitive_execute(d->fwd, d->st, 3, fa));
	CK(dnnl_primitive_execute(d->bwd, d->st, 3, ba));
	CK(dnnl_primitive_execute(d->wgt, d->st, 3, wa));
	reorder(d, d->y, d->uy);
	reorder(d, d->dx, d->udx);
	reorder(d, d->dw, d->udw);
	CK(dnnl_stream_wait(d->st));
	return now() - t0;
}

static void dnnl_free(struct dnnl_conv *d)
{
	dnnl_memory_t m[] = { d->ux, d->uw, d->uy, d->udy, d->udx, d->udw, d->x, d->w, d->wb, d->y, d->dy, d->dx, d->dw };

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		dnnl_memory_destroy(m[i]);
	dnnl_primitive_destroy(d->fwd);
	dnnl_primitive_destroy(d->bwd);
	dnnl_primitive_destroy(d->wgt);
	dnnl_stream_destroy(d->st);
	dnnl_engine_destroy(d->eng);
}

/* The outputs of one oneDNN run, copied to out (y, dx, dw). */
static void dnnl_outputs(struct dnnl_conv *d, struct shape *s, float *out)
{
	dnnl_conv_run(d);
	memcpy(out, s->y, s->xs * sizeof(float));
	memcpy(out + s->xs, s->dx, s->xs * sizeof(float));
	memcpy(out + 2 * s->xs, s->dw, s->ws * sizeof(float));
}

int main(int argc, char **argv)
{
	static const int shapes[][2] = { { 16, 28 }, { 32, 14 }, { 64, 7 } };
	int reps = argc > 1 ? atoi(argv[1]) : 3;
	const struct cpu_info *cpu = cpu_this();
	double load[3] = { -1, -1, -1 };
	unsigned seed = 12345;

	if (reps < 1 || reps > 100) {
		fprintf(stderr, "usage: bench-conv [REPS (1..100, 3)]\n");
		return 2;
	}
	kernels_global_init();
	(void)getloadavg(load, 3);
	printf("CPU: %s; OpenBLAS kernel: %s; oneDNN %d.%d.%d; load average %.2f %.2f %.2f (shared: ratios only)\n",
	       cpu->brand[0] ? cpu->brand : "?", openblas_get_corename(), dnnl_version()->major,
	       dnnl_version()->minor, dnnl_version()->patch, load[0], load[1], load[2]);
	printf("resnet20's 3x3 convolutions, batch %d: forward + backward data + backward weights, best of %d; "
	       "both on 1 thread\n", N, reps);
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		struct shape s = { .c = shapes[i][0], .h = shapes[i][1] };
		size_t ckk = (size_t)s.c * K * K, ohw = (size_t)s.h * s.h, tot;
		float *col, *dcol, *ref, *o1, *o1b, *o2, *o2b;
		double tt = 1e30, td = 1e30, dy_, ddx, ddw;
		struct dnnl_conv d;

		s.xs = (size_t)N * s.c * ohw;
		s.ws = (size_t)s.c * ckk;
		tot = 2 * s.xs + s.ws;
		s.x = random_floats(s.xs, &seed);
		s.w = random_floats(s.ws, &seed);
		s.dy = random_floats(s.xs, &seed);
		s.y = k_alloc_floats(s.xs);
		s.dx = k_alloc_floats(s.xs);
		s.dw = k_alloc_floats(s.ws);
		col = k_alloc_floats(ckk * ohw);
		dcol = k_alloc_floats(ckk * ohw);
		ref = k_alloc_floats(tot);
		o1 = k_alloc_floats(tot);
		o1b = k_alloc_floats(tot);
		o2 = k_alloc_floats(tot);
		o2b = k_alloc_floats(tot);
		if (!s.x || !s.w || !s.dy || !s.y || !s.dx || !s.dw || !col || !dcol || !ref || !o1 || !o1b || !o2 ||
		    !o2b) {
			fprintf(stderr, "bench-conv: out of memory\n");
			return 1;
		}
		/* oneDNN splits the work by the thread count when a primitive is made */
		omp_set_num_threads(1);
		dnnl_setup(&d, &s);
		for (int r = 0; r < reps; r++) {   /* alternate, so that the load falls on both */
			tt = fmin(tt, traind_conv(&s, col, dcol));
			td = fmin(td, dnnl_conv_run(&d));
		}
		traind_conv(&s, col, dcol);
		memcpy(ref, s.y, s.xs * sizeof(float));
		memcpy(ref + s.xs, s.dx, s.xs * sizeof(float));
		memcpy(ref + 2 * s.xs, s.dw, s.ws * sizeof(float));
		dnnl_outputs(&d, &s, o1);
		dnnl_outputs(&d, &s, o1b);
		dnnl_free(&d);
		omp_set_num_threads(2);
		dnnl_setup(&d, &s);
		dnnl_outputs(&d, &s, o2);
		dnnl_outputs(&d, &s, o2b);
		dy_ = rel_diff(o1, ref, s.xs);
		ddx = rel_diff(o1 + s.xs, ref + s.xs, s.xs);
		ddw = rel_diff(o1 + 2 * s.xs, ref + 2 * s.xs, s.ws);
		printf("  %2d ch %2dx%-2d: traind %.4f s, oneDNN (%s) %.4f s: oneDNN %.2fx faster; "
		       "|diff|/max y %.1e dx %.1e dW %.1e\n",
		       s.c, s.h, s.h, tt, d.impl, td, tt / td, dy_, ddx, ddw);
		printf("              oneDNN bits: 1 thread twice %s, 2 threads twice %s, "
		       "1 vs 2 threads: y and dx %s, dW %s\n",
		       memcmp(o1, o1b, tot * sizeof(float)) ? "DIFFER" : "same",
		       memcmp(o2, o2b, tot * sizeof(float)) ? "DIFFER" : "same",
		       memcmp(o1, o2, 2 * s.xs * sizeof(float)) ? "differ" : "same",
		       memcmp(o1 + 2 * s.xs, o2 + 2 * s.xs, s.ws * sizeof(float)) ? "differ" : "same");
		dnnl_free(&d);
		free(s.x);
		free(s.w);
		free(s.dy);
		free(s.y);
		free(s.dx);
		free(s.dw);
		free(col);
		free(dcol);
		free(ref);
		free(o1);
		free(o1b);
		free(o2);
		free(o2b);
	}
	return 0;
}
