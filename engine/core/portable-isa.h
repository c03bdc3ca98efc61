/*
 * portable-isa.h - what each instruction-set path of the portable kernels
 * provides (engine/core/portable-{generic,avx2,avx512}.c), for the driver in
 * portable.c. Private to those files.
 *
 * A path owns only the innermost loops: the GEMM register tile, the lanes of
 * the reductions, and the element-wise functions. The driver (blocking,
 * packing, the order of tiles, the trees over the lanes, the blocks of long
 * reductions, the team split) is portable.c's, the same code for all paths:
 * so a path cannot change an association, only how fast it goes.
 *
 * Thread: the functions are pure; any thread.
 */
#ifndef TRAIND_PORTABLE_ISA_H
#define TRAIND_PORTABLE_ISA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PK_NV_MAX 4          /* vectors across a tile, at most */
#define PK_NB_MAX 12         /* broadcast rows of a tile, at most */

enum pk_init {
	PK_INIT_ZERO,        /* the chain starts from +0 (beta 0: C not read) */
	PK_INIT_LOAD,        /* from C (beta 1, or a later block of k) */
	PK_INIT_SCALE,       /* from beta * C */
};

/* One register tile of D = P Q over k: D[b][col] for b < nb, col < width
 * (width = (nv - 1) * vl + last), each a chain of fmaf(P[b][kk], Q[kk][col], d)
 * over kk = 0..k-1 in order from the initial value `init` names. */
struct pk_tile {
	size_t k;
	const float *p;          /* P[b][kk] at p[b * p_rs + kk * p_cs]; p_rs or p_cs is 1 */
	size_t p_rs, p_cs;
	const float *q;          /* Q[kk][col] at q[kk * q_ld + col] */
	size_t q_ld;
	float *c;                /* D[b][col] at c[b * c_ld + col], read (LOAD, SCALE) and written */
	size_t c_ld;
	unsigned nb;             /* 1 .. nb_max[nv - 1] */
	unsigned nv;             /* 1 .. nv_max */
	unsigned last;           /* valid columns of the last vector, 1 .. vl */
	enum pk_init init;
	float beta;              /* PK_INIT_SCALE */
};

/* A convolution tile (portable-conv.c): D[b][v * vl + u] for rows b < nb
 * and the lanes u of vectors v < nv (the last one `last` wide), where
 *   grouped 0: D = chain over kk < ntaps of fmaf(P[b][0][kk], S[0][kk][.], d)
 *              from bias[b] (+0 when bias is NULL);
 *   grouped 1: D = +0, then for each group g < ngroups in order:
 *              D = D + (chain over kk < ntaps of fmaf(P[b][g][kk], S[g][kk][.], d) from +0)
 *              or, when g_src[g] is PK_GROUP_ZERO, D = D + (+0): what the chain
 *              gives when every S[g][kk][.] is +0 and every P[b][g][kk] finite
 * with P[b][g][kk] at p[b * p_rs + g_p[g] + kk * p_cs] and S[g][kk][x] at
 * src[g_src[g] + koff[kk] + x]. Every vector is loaded whole (the caller
 * keeps the memory behind the last one readable); only `last` lanes of the
 * last vector are stored. */
#define PK_GROUP_ZERO PTRDIFF_MIN   /* a group of ctile whose chain is +0 (above) */

struct pk_ctile {
	const float *p;
	size_t p_rs, p_cs;
	const ptrdiff_t *g_p;    /* (ngroups), grouped only */
	const float *src;
	const ptrdiff_t *koff;   /* (ntaps) */
	const ptrdiff_t *g_src;  /* (ngroups), grouped only */
	size_t ntaps;
	unsigned grouped, ngroups;
	const float *bias;       /* not grouped: each row's initial value, or NULL */
	float *c;                /* D[b][x] at c[b * c_ld + x] */
	size_t c_ld;
	unsigned nb, nv, last;
};

/* A dot tile (portable-conv.c: a convolution's weight gradient): for rows
 * b < nb and taps q < nq, 16 lanes, element (r, t) of the sum over samples
 * r < rows and pixels t < nt into lane t mod 16 (samples in order, pixels in
 * order within a sample), lane = fmaf(dy[r][b][t], x[r][q][t], lane); at the
 * end each pair's lanes are added by the tree (lane l += lane l+8, +4, +2,
 * +1) into out[b * out_ld + q]. dy[r][b][t] at dy[r * dy_rs + b * dy_ld + t],
 * x[r][q][t] at x[r * x_rs + q * x_qs + t]. The last vector of a sample is
 * read masked: its missing lanes take no part. */
struct pk_dtile {
	size_t rows;
	const float *dy;
	size_t dy_rs, dy_ld;
	const float *x;
	size_t x_rs, x_qs;
	size_t nt;
	float *out;
	size_t out_ld;
	unsigned nb, nq;
};

struct pk_ops {
	const char *name;
	unsigned vl;                         /* floats per vector */
	unsigned nv_max;                     /* <= PK_NV_MAX */
	unsigned nb_max[PK_NV_MAX];          /* broadcast rows for nv = 1.. ; <= PK_NB_MAX */
	void (*tile)(const struct pk_tile *t);
	/* convolution tiles: ctile with ngroups 1 takes nb <= nb_max[nv - 1]
	 * (nv <= nv_max), with groups nb <= cx_nb[nv - 1]; dtile nb <= dt_nb,
	 * nq <= dt_nq */
	void (*ctile)(const struct pk_ctile *t);
	void (*dtile)(const struct pk_dtile *t);
	unsigned cx_nb[PK_NV_MAX];
	unsigned dt_nb, dt_nq;
	/* dst[kk * ld_dst + j] = src[j * ld_src + kk] for kk < k, j < n: a
	 * transpose, no arithmetic */
	void (*pack_t)(float *dst, size_t ld_dst, const float *src, size_t ld_src, size_t k, size_t n);

	/* Reductions: add elements 0..n-1 into the 16 lanes (element i into
	 * lane i mod 16), which hold earlier rows' partial sums. */
	void (*sum_lanes)(float lanes[16], const float *x, size_t n);
	void (*dot_lanes)(float lanes[16], const float *x, const float *y, size_t n);
	void (*max_lanes)(float lanes[16], const float *x, size_t n);
	void (*sumd_lanes)(double lanes[16], const float *x, size_t n);
	void (*sumsqd_lanes)(double lanes[16], const float *x, size_t n);
	void (*sqdevd_lanes)(double lanes[16], const float *x, size_t n, double mean);
	void (*bnd_lanes)(double sdy[16], double sdyx[16], const float *dy, const float *x, size_t n,
			  double mean, double invstd);

	/* y[i] = f(x[i]) (portable-math.h) */
	void (*exp)(float *y, const float *x, size_t n);
	void (*log)(float *y, const float *x, size_t n);
	void (*tanh)(float *y, const float *x, size_t n);
	void (*erf)(float *y, const float *x, size_t n);
	void (*sigmoid)(float *y, const float *x, size_t n);

	/* x * y + z computed with the C operators in the path's own file and
	 * its compile flags: an FMA contracted behind the kernels' back would
	 * round once instead of twice (test-portable.c checks it does not). */
	float (*contract_probe)(float x, float y, float z);
};

/* The path the kernels run on now (portable.c). */
const struct pk_ops *pk_ops_active(void);

extern const struct pk_ops pk_ops_generic;
#if defined(__x86_64__)
extern const struct pk_ops pk_ops_avx2;
extern const struct pk_ops pk_ops_avx512;
#endif

#endif
