/*
 * bench-bf16.c - traind's bf16 products (engine/core/bf16.c) against
 * oneDNN's (Debian's libdnnl 2.6.3, the version PyTorch 1.13 uses here) and
 * OpenBLAS's float32 sgemm, on the products of one training step of the
 * lesson's MLP and of lenet5, one thread each, in one run (ratios only: the
 * machines are shared). doc/precision.md explains the choice it informs.
 *
 *   bench-bf16 [REPS]
 *
 * Each product C (m, n) = op(A) (m, k) op(B) (k, n) from float32 operands
 * in traind's layouts, timed as the best of REPS (200) runs of a batch of
 * calls (the per-sample conv products: the 32 samples a member of a team of
 * two computes for a batch of 64):
 *   sgemm      OpenBLAS cblas_sgemm, float32 (its kernel: openblas_get_corename)
 *   amx, avx   traind's k_gemm in bf16 on each path the CPU has (rounding and
 *              packing the float32 operands included)
 *   dnnl       oneDNN matmul, bf16 sources, float32 destination, its
 *              implementation printed; "+cvt" includes the float32 -> bf16
 *              conversion of both operands by oneDNN reorders (what traind's
 *              figure includes), "raw" starts from bf16 operands
 * And for lenet5's two convolutions on those 32 samples, oneDNN's own
 * convolution (forward, backward data, backward weights; bf16 sources
 * already converted, float32 results) beside traind's im2col + products.
 *
 * oneDNN runs on OpenMP; the bench pins it to the calling thread
 * (omp_set_num_threads(1)).
 */
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/core/bf16.h"
#include "traind/kernels.h"

void omp_set_num_threads(int n);

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define OK(x)                                                                  \
	do {                                                                   \
		dnnl_status_t s_ = (x);                                        \
		if (s_ != dnnl_success) {                                      \
			fprintf(stderr, "bench-bf16: %s: oneDNN status %d\n", #x, (int)s_); \
			exit(1);                                               \
		}                                                              \
	} while (0)

struct shape {
	const char *what;
	int ta, tb;
	size_t m, n, k;
	int calls;       /* per timed batch */
};

static const struct shape SHAPES[] = {
	{ "MLP fwd x W1^T", 0, 1, 64, 256, 784, 1 },
	{ "MLP fwd h W2^T", 0, 1, 64, 10, 256, 1 },
	{ "MLP dW2 = d2^T h", 1, 0, 10, 256, 64, 1 },
	{ "MLP dh = d2 W2", 0, 0, 64, 256, 10, 1 },
	{ "MLP dW1 = d1^T x", 1, 0, 256, 784, 64, 1 },
	{ "conv1 fwd W col", 0, 0, 6, 784, 25, 32 },
	{ "conv1 dW dy col^T", 0, 1, 6, 25, 784, 32 },
	{ "conv2 fwd W col", 0, 0, 16, 100, 150, 32 },
	{ "conv2 dW dy col^T", 0, 1, 16, 150, 100, 32 },
	{ "conv2 dx W^T dy", 1, 0, 150, 100, 16, 32 },
};

static dnnl_engine_t eng;
static dnnl_stream_t strm;

static float *randf(size_t n)
{
	float *x = k_alloc_floats(n);

	for (size_t i = 0; i < n; i++)
		x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
	return x;
}

static dnnl_memory_t mem(const dnnl_memory_desc_t *md, void *p)
{
	dnnl_memory_t m;

	OK(dnnl_memory_create(&m, md, eng, p));
	return m;
}

static dnnl_primitive_t reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to)
{
	dnnl_primitive_desc_t pd;
	dnnl_primitive_t p;

	OK(dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, NULL));
	OK(dnnl_primitive_create(&p, pd));
	dnnl_primitive_desc_destroy(pd);
	return p;
}

static void run2(dnnl_primitive_t p, int a0, dnnl_memory_t m0, int a1, dnnl_memory_t m1)
{
	dnnl_exec_arg_t args[2] = { { a0, m0 }, { a1, m1 } };

	OK(dnnl_primitive_execute(p, strm, 2, args));
}

/* Best seconds of reps batches of sh->calls products, for each contender. */
struct result {
	double sgemm, path[3], dnnl_cvt, dnnl_raw;
	char impl[64];
};

static void bench_shape(const struct shape *sh, int reps, struct result *r)
{
	size_t m = sh->m, n = sh->n, k = sh->k, lda = sh->ta ? m : k, ldb = sh->tb ? k : n;
	float *a = randf(m * k), *b = randf(k * n), *c = k_alloc_floats(m * n);
	size_t slen = k_gemm_scratch_len(K_BF16, k);
	void *scratch = NULL;
	dnnl_memory_desc_t a32, b32, a16, b16, c32;
	dnnl_dims_t ad = { (dnnl_dim_t)m, (dnnl_dim_t)k }, bd = { (dnnl_dim_t)k, (dnnl_dim_t)n },
		    cd = { (dnnl_dim_t)m, (dnnl_dim_t)n };
	dnnl_matmul_desc_t md;
	dnnl_primitive_desc_t pd;
	dnnl_primitive_t mm, ra, rb;
	dnnl_memory_t am32, bm32, am16, bm16, cm;
	uint16_t *a16p = calloc(m * k, 2), *b16p = calloc(k * n, 2);
	const char *impl = NULL;

	if (posix_memalign(&scratch, 64, slen ? slen : 64))
		exit(1);
	OK(dnnl_memory_desc_init_by_tag(&a32, 2, ad, dnnl_f32, sh->ta ? dnnl_ba : dnnl_ab));
	OK(dnnl_memory_desc_init_by_tag(&b32, 2, bd, dnnl_f32, sh->tb ? dnnl_ba : dnnl_ab));
	OK(dnnl_memory_desc_init_by_tag(&a16, 2, ad, dnnl_bf16, sh->ta ? dnnl_ba : dnnl_ab));
	OK(dnnl_memory_desc_init_by_tag(&b16, 2, bd, dnnl_bf16, sh->tb ? dnnl_ba : dnnl_ab));
	OK(dnnl_memory_desc_init_by_tag(&c32, 2, cd, dnnl_f32, dnnl_ab));
	OK(dnnl_matmul_desc_init(&md, &a16, &b16, NULL, &c32));
	OK(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
	OK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
	snprintf(r->impl, sizeof(r->impl), "%s", impl ? impl : "?");
	OK(dnnl_primitive_create(&mm, pd));
	dnnl_primitive_desc_destroy(pd);
	ra = reorder(&a32, &a16);
	rb = reorder(&b32, &b16);
	am32 = mem(&a32, a);
	bm32 = mem(&b32, b);
	am16 = mem(&a16, a16p);
	bm16 = mem(&b16, b16p);
	cm = mem(&c32, c);

	r->sgemm = r->dnnl_cvt = r->dnnl_raw = 1e9;
	for (int p = 0; p < 3; p++)
		r->path[p] = 1e9;
	for (int rep = 0; rep < reps; rep++) {
		double t0 = now(), t;

		for (int i = 0; i < sh->calls; i++)
			k_gemm(sh->ta, sh->tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
		t = now() - t0;
		r->sgemm = t < r->sgemm ? t : r->sgemm;
		for (enum bf16_isa p = BF16_AVX512; p <= BF16_AMX; p++) {
			struct bf16_cpu cpu;

			bf16_cpu_detect(&cpu);
			if (bf16_choose(&cpu, p == BF16_AMX ? "amx" : "avx512", NULL, 0) != p)
				continue;
			t0 = now();
			for (int i = 0; i < sh->calls; i++)
				bf16_gemm(p, scratch, slen, sh->ta, sh->tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f,
					  c, n);
			t = now() - t0;
			r->path[p] = t < r->path[p] ? t : r->path[p];
		}
		t0 = now();
		for (int i = 0; i < sh->calls; i++) {
			dnnl_exec_arg_t args[3] = { { DNNL_ARG_SRC, am16 }, { DNNL_ARG_WEIGHTS, bm16 },
						    { DNNL_ARG_DST, cm } };

			run2(ra, DNNL_ARG_FROM, am32, DNNL_ARG_TO, am16);
			run2(rb, DNNL_ARG_FROM, bm32, DNNL_ARG_TO, bm16);
			OK(dnnl_primitive_execute(mm, strm, 3, args));
		}
		OK(dnnl_stream_wait(strm));
		t = now() - t0;
		r->dnnl_cvt = t < r->dnnl_cvt ? t : r->dnnl_cvt;
		t0 = now();
		for (int i = 0; i < sh->calls; i++) {
			dnnl_exec_arg_t args[3] = { { DNNL_ARG_SRC, am16 }, { DNNL_ARG_WEIGHTS, bm16 },
						    { DNNL_ARG_DST, cm } };

			OK(dnnl_primitive_execute(mm, strm, 3, args));
		}
		OK(dnnl_stream_wait(strm));
		t = now() - t0;
		r->dnnl_raw = t < r->dnnl_raw ? t : r->dnnl_raw;
	}
	dnnl_primitive_destroy(mm);
	dnnl_primitive_destroy(ra);
	dnnl_primitive_destroy(rb);
	dnnl_memory_destroy(am32);
	dnnl_memory_destroy(bm32);
	dnnl_memory_destroy(am16);
	dnnl_memory_destroy(bm16);
	dnnl_memory_destroy(cm);
	free(a);
	free(b);
	free(c);
	free(a16p);
	free(b16p);
	free(scratch);
}

/* oneDNN's direct convolution of lenet5's layer (c -> oc, k x k, pad) on
 * `mb` samples of h x w: best seconds of forward, backward data, backward
 * weights (bf16 sources, float32 results, plain nchw/oihw layouts). */
static void bench_conv(int mb, int c, int h, int w, int oc, int k, int pad, int reps, double out[3],
		       char *impl, size_t impl_len)
{
	int oh = h + 2 * pad - k + 1, ow = w + 2 * pad - k + 1;
	dnnl_dims_t sd = { mb, c, h, w }, wd = { oc, c, k, k }, dd = { mb, oc, oh, ow };
	dnnl_dims_t strides = { 1, 1 }, padding = { pad, pad };
	dnnl_memory_desc_t s16, w16, d32, d16, s32, w32;
	dnnl_convolution_desc_t fd, bdd, bwd;
	dnnl_primitive_desc_t fpd, bdpd, bwpd;
	dnnl_primitive_t fwd, bwd_data, bwd_w;
	size_t ns = (size_t)mb * c * h * w, nw = (size_t)oc * c * k * k, nd = (size_t)mb * oc * oh * ow;
	uint16_t *src = calloc(ns, 2), *wt = calloc(nw, 2), *ddst = calloc(nd, 2);
	float *dst = k_alloc_floats(nd), *dsrc = k_alloc_floats(ns), *dw = k_alloc_floats(nw);
	dnnl_memory_t ms, mw, md, mdd, mds, mdw;
	const char *name = NULL;

	for (size_t i = 0; i < ns; i++)
		src[i] = bf16_from_float((float)(i % 7) * 0.1f);
	for (size_t i = 0; i < nw; i++)
		wt[i] = bf16_from_float((float)(i % 5) * 0.1f - 0.2f);
	for (size_t i = 0; i < nd; i++)
		ddst[i] = bf16_from_float((float)(i % 3) * 0.1f - 0.1f);
	OK(dnnl_memory_desc_init_by_tag(&s16, 4, sd, dnnl_bf16, dnnl_nchw));
	OK(dnnl_memory_desc_init_by_tag(&s32, 4, sd, dnnl_f32, dnnl_nchw));
	OK(dnnl_memory_desc_init_by_tag(&w16, 4, wd, dnnl_bf16, dnnl_oihw));
	OK(dnnl_memory_desc_init_by_tag(&w32, 4, wd, dnnl_f32, dnnl_oihw));
	OK(dnnl_memory_desc_init_by_tag(&d32, 4, dd, dnnl_f32, dnnl_nchw));
	OK(dnnl_memory_desc_init_by_tag(&d16, 4, dd, dnnl_bf16, dnnl_nchw));
	OK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &s16,
					      &w16, NULL, &d32, strides, padding, padding));
	OK(dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL));
	OK(dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &name));
	snprintf(impl, impl_len, "%s", name ? name : "?");
	OK(dnnl_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct, &s32, &w16, &d16,
						    strides, padding, padding));
	OK(dnnl_primitive_desc_create(&bdpd, &bdd, NULL, eng, fpd));
	OK(dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &s16, &w32, NULL,
						       &d16, strides, padding, padding));
	OK(dnnl_primitive_desc_create(&bwpd, &bwd, NULL, eng, fpd));
	OK(dnnl_primitive_create(&fwd, fpd));
	OK(dnnl_primitive_create(&bwd_data, bdpd));
	OK(dnnl_primitive_create(&bwd_w, bwpd));
	ms = mem(&s16, src);
	mw = mem(&w16, wt);
	md = mem(&d32, dst);
	mdd = mem(&d16, ddst);
	mds = mem(&s32, dsrc);
	mdw = mem(&w32, dw);
	out[0] = out[1] = out[2] = 1e9;
	for (int rep = 0; rep < reps; rep++) {
		dnnl_exec_arg_t fa[3] = { { DNNL_ARG_SRC, ms }, { DNNL_ARG_WEIGHTS, mw }, { DNNL_ARG_DST, md } };
		dnnl_exec_arg_t da[3] = { { DNNL_ARG_DIFF_DST, mdd }, { DNNL_ARG_WEIGHTS, mw },
					  { DNNL_ARG_DIFF_SRC, mds } };
		dnnl_exec_arg_t wa[3] = { { DNNL_ARG_SRC, ms }, { DNNL_ARG_DIFF_DST, mdd },
					  { DNNL_ARG_DIFF_WEIGHTS, mdw } };
		double t0 = now(), t;

		OK(dnnl_primitive_execute(fwd, strm, 3, fa));
		OK(dnnl_stream_wait(strm));
		t = now() - t0;
		out[0] = t < out[0] ? t : out[0];
		t0 = now();
		OK(dnnl_primitive_execute(bwd_data, strm, 3, da));
		OK(dnnl_stream_wait(strm));
		t = now() - t0;
		out[1] = t < out[1] ? t : out[1];
		t0 = now();
		OK(dnnl_primitive_execute(bwd_w, strm, 3, wa));
		OK(dnnl_stream_wait(strm));
		t = now() - t0;
		out[2] = t < out[2] ? t : out[2];
	}
	dnnl_primitive_destroy(fwd);
	dnnl_primitive_destroy(bwd_data);
	dnnl_primitive_destroy(bwd_w);
	dnnl_primitive_desc_destroy(fpd);
	dnnl_primitive_desc_destroy(bdpd);
	dnnl_primitive_desc_destroy(bwpd);
	dnnl_memory_destroy(ms);
	dnnl_memory_destroy(mw);
	dnnl_memory_destroy(md);
	dnnl_memory_destroy(mdd);
	dnnl_memory_destroy(mds);
	dnnl_memory_destroy(mdw);
	free(src);
	free(wt);
	free(ddst);
	free(dst);
	free(dsrc);
	free(dw);
}

/* traind's way for the same 32 samples: im2col, then the layer's products. */
static void bench_im2col(int mb, int c, int h, int w, int oc, int k, int pad, int reps,
			 const struct k_gemm_mode *gm, double out[3])
{
	int oh = h + 2 * pad - k + 1, ow = w + 2 * pad - k + 1;
	size_t ckk = (size_t)c * k * k, ohw = (size_t)oh * ow;
	float *x = randf((size_t)mb * c * h * w), *wt = randf((size_t)oc * ckk), *y = k_alloc_floats((size_t)oc * ohw);
	float *dy = randf((size_t)mb * oc * ohw), *col = k_alloc_floats(ckk * ohw), *dcol = k_alloc_floats(ckk * ohw);
	float *dw = k_alloc_floats((size_t)oc * ckk), *dx = k_alloc_floats((size_t)c * h * w);

	out[0] = out[1] = out[2] = 1e9;
	for (int rep = 0; rep < reps; rep++) {
		double t0 = now(), t;

		for (int r = 0; r < mb; r++) {
			k_im2col(col, x + (size_t)r * c * h * w, c, h, w, k, 1, pad, oh, ow);
			k_gemm_job(KERNELS_OPENBLAS, gm, 0, 0, oc, ohw, ckk, 1.0f, wt, ckk, col, ohw, 0.0f, y, ohw);
		}
		t = now() - t0;
		out[0] = t < out[0] ? t : out[0];
		t0 = now();
		for (int r = 0; r < mb; r++) {
			k_gemm_job(KERNELS_OPENBLAS, gm, 1, 0, ckk, ohw, oc, 1.0f, wt, ckk,
				   dy + (size_t)r * oc * ohw, ohw, 0.0f, dcol, ohw);
			k_col2im(dx, dcol, c, h, w, k, 1, pad, oh, ow);
		}
		t = now() - t0;
		out[1] = t < out[1] ? t : out[1];
		t0 = now();
		for (int r = 0; r < mb; r++) {
			k_im2col(col, x + (size_t)r * c * h * w, c, h, w, k, 1, pad, oh, ow);
			k_gemm_job(KERNELS_OPENBLAS, gm, 0, 1, oc, ckk, ohw, 1.0f, dy + (size_t)r * oc * ohw,
				   ohw, col, ohw, r ? 1.0f : 0.0f, dw, ckk);
		}
		t = now() - t0;
		out[2] = t < out[2] ? t : out[2];
	}
	free(x);
	free(wt);
	free(y);
	free(dy);
	free(col);
	free(dcol);
	free(dw);
	free(dx);
}

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 200;
	const dnnl_version_t *v = dnnl_version();
	struct tr_err err = { 0 };
	double total[6] = { 0 };

	if (reps < 1)
		reps = 200;
	kernels_global_init();
	omp_set_num_threads(1);
	if (k_precision_check(K_BF16, &err) < 0) {
		printf("bench-bf16: not measured: %s\n", err.msg);
		return 0;
	}
	OK(dnnl_engine_create(&eng, dnnl_cpu, 0));
	OK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
	printf("one thread each; OpenBLAS kernel %s; oneDNN %d.%d.%d; traind bf16 path %s; best of %d\n",
	       openblas_get_corename(), v->major, v->minor, v->patch, bf16_isa_name(bf16_isa()), reps);
	printf("%-20s %-13s %9s %9s %9s %9s %9s  %s\n", "product", "m x n x k", "sgemm us", "amx us",
	       "avx us", "dnnl+cvt", "dnnl raw", "oneDNN implementation");
	for (size_t s = 0; s < sizeof(SHAPES) / sizeof(SHAPES[0]); s++) {
		const struct shape *sh = &SHAPES[s];
		struct result r;
		char dims[32];

		bench_shape(sh, reps, &r);
		snprintf(dims, sizeof(dims), "%zux%zux%zu%s", sh->m, sh->n, sh->k, sh->calls > 1 ? " x32" : "");
		printf("%-20s %-13s %9.1f %9.1f %9.1f %9.1f %9.1f  %s\n", sh->what, dims, r.sgemm * 1e6,
		       r.path[BF16_AMX] < 1e9 ? r.path[BF16_AMX] * 1e6 : -1.0,
		       r.path[BF16_AVX512] < 1e9 ? r.path[BF16_AVX512] * 1e6 : -1.0, r.dnnl_cvt * 1e6,
		       r.dnnl_raw * 1e6, r.impl);
		total[0] += r.sgemm;
		total[1] += r.path[BF16_AMX] < 1e9 ? r.path[BF16_AMX] : 0;
		total[2] += r.path[BF16_AVX512] < 1e9 ? r.path[BF16_AVX512] : 0;
		total[3] += r.dnnl_cvt;
		total[4] += r.dnnl_raw;
	}
	printf("%-34s %9.1f %9.1f %9.1f %9.1f %9.1f\n", "sum (one step's products)", total[0] * 1e6,
	       total[1] * 1e6, total[2] * 1e6, total[3] * 1e6, total[4] * 1e6);
	printf("ratios to traind amx: sgemm %.2f, dnnl+cvt %.2f, dnnl raw %.2f (above 1: traind amx is faster)\n",
	       total[0] / total[1], total[3] / total[1], total[4] / total[1]);
	{
		static const struct { const char *what; int c, h, w, oc, k, pad; } convs[] = {
			{ "conv1 1->6 5x5 pad 2 on 28x28", 1, 28, 28, 6, 5, 2 },
			{ "conv2 6->16 5x5 on 14x14", 6, 14, 14, 16, 5, 0 },
		};
		struct k_gemm_mode gm = { .prec = K_BF16 };

		gm.scratch_len = k_gemm_scratch_len(K_BF16, 1024);
		if (posix_memalign(&gm.scratch, 64, gm.scratch_len))
			return 1;
		printf("\nlenet5's convolutions, 32 samples (fwd, bwd data, bwd weights, us):\n");
		for (size_t i = 0; i < 2; i++) {
			double d[3], t16[3], t32[3];
			char impl[64];

			bench_conv(32, convs[i].c, convs[i].h, convs[i].w, convs[i].oc, convs[i].k, convs[i].pad,
				   reps / 4 + 1, d, impl, sizeof(impl));
			bench_im2col(32, convs[i].c, convs[i].h, convs[i].w, convs[i].oc, convs[i].k, convs[i].pad,
				     reps / 4 + 1, &gm, t16);
			bench_im2col(32, convs[i].c, convs[i].h, convs[i].w, convs[i].oc, convs[i].k, convs[i].pad,
				     reps / 4 + 1, NULL, t32);
			printf("  %-32s oneDNN bf16 (%s, sources already bf16) %.0f %.0f %.0f; traind im2col+bf16 %.0f %.0f %.0f; im2col+sgemm %.0f %.0f %.0f\n",
			       convs[i].what, impl, d[0] * 1e6, d[1] * 1e6, d[2] * 1e6, t16[0] * 1e6, t16[1] * 1e6,
			       t16[2] * 1e6, t32[0] * 1e6, t32[1] * 1e6, t32[2] * 1e6);
		}
		free(gm.scratch);
	}
	dnnl_stream_destroy(strm);
	dnnl_engine_destroy(eng);
	return 0;
}
