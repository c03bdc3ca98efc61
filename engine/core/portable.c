/*
 * portable.c - the portable kernels' driver: which path runs, the GEMM's
 * plan (orientation, packing, blocking, the team's split), the trees and
 * blocks of the reductions, the softmax cross-entropy and the batch chunks.
 * See include/traind/portable.h; the contract is doc/portable.md.
 *
 * Design. A path (portable-isa.h) supplies only innermost loops; everything
 * that decides an association is here, in plain C compiled once for all
 * paths. The GEMM computes D = P Q in register tiles, every element a chain
 * of fmaf over k in order: either P = op(A), Q = op(B) (orientation J: the
 * vectors run along j) or P = op(B)^T, Q = op(A)^T (orientation I: along i,
 * the tiles written to C transposed). fmaf(a, b, c) and fmaf(b, a, c) are the
 * same number, so both orientations give the same bits and the choice is
 * only a matter of speed: the one that needs no transposed copy (packing) of
 * the vector side, or the smaller one, and the better filled vectors. k is
 * cut in blocks of PK_KC (orientation J) whose chains continue through C
 * (a float, as the register held), and a team splits the output by whole
 * tiles, never k. So neither the path, nor the blocking, nor the team size
 * can change a bit.
 *
 * Scratch: the packed vector side lives in a buffer per thread (grown on
 * demand, freed at thread exit). If it cannot be allocated, the GEMM runs a
 * plain loop of the same chains (slow, the same bits), so pk_gemm cannot fail.
 */
#include "traind/portable.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/portable-isa.h"

#define PK_KC 160            /* k block of orientation J, at most (k is cut in equal blocks) */
#define PK_TEAM_MIN (1u << 18) /* m n k below which a team's GEMM runs on the caller */

/* ---- the path ------------------------------------------------------------- */

static _Atomic(const struct pk_ops *) active_ops;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static int env_rc;
static char env_msg[TR_ERR_MSG_MAX];

static const struct pk_ops *ops_of(enum pk_isa isa)
{
	switch (isa) {
	case PK_ISA_GENERIC:
		return &pk_ops_generic;
#if defined(__x86_64__)
	case PK_ISA_AVX2:
		return &pk_ops_avx2;
	case PK_ISA_AVX512:
		return &pk_ops_avx512;
#else
	default:
		break;
#endif
	}
	return NULL;
}

const char *pk_isa_name(enum pk_isa isa)
{
	switch (isa) {
	case PK_ISA_GENERIC: return "generic";
	case PK_ISA_AVX2: return "avx2";
	case PK_ISA_AVX512: return "avx512";
	}
	return "?";
}

int pk_isa_parse(const char *name, enum pk_isa *out)
{
	for (int i = 0; i < PK_ISA_COUNT; i++)
		if (strcmp(name, pk_isa_name((enum pk_isa)i)) == 0) {
			*out = (enum pk_isa)i;
			return 0;
		}
	return -EINVAL;
}

bool pk_isa_supported(enum pk_isa isa)
{
	switch (isa) {
	case PK_ISA_GENERIC:
		return true;
#if defined(__x86_64__)
	case PK_ISA_AVX2:
		/* libgcc checks the OS's XSAVE state as well as cpuid */
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	case PK_ISA_AVX512:
		return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
		       __builtin_cpu_supports("fma");
#else
	default:
		return false;
#endif
	}
	return false;
}

enum pk_isa pk_isa_best(void)
{
	if (pk_isa_supported(PK_ISA_AVX512))
		return PK_ISA_AVX512;
	if (pk_isa_supported(PK_ISA_AVX2))
		return PK_ISA_AVX2;
	return PK_ISA_GENERIC;
}

static const char *isa_needs(enum pk_isa isa)
{
	return isa == PK_ISA_AVX512 ? "AVX-512F, AVX2 and FMA" : isa == PK_ISA_AVX2 ? "AVX2 and FMA" : "";
}

/* TRAIND_ISA, read once: the path, or the best with the error kept for pk_init. */
static void env_init(void)
{
	const char *v = getenv("TRAIND_ISA");
	enum pk_isa isa;

#if defined(__x86_64__)
	__builtin_cpu_init();
#endif
	isa = pk_isa_best();
	if (v && *v) {
		enum pk_isa want;

		if (pk_isa_parse(v, &want) < 0) {
			env_rc = -EINVAL;
			snprintf(env_msg, sizeof(env_msg),
				 "TRAIND_ISA: '%.*s' is not a path (expected avx512, avx2 or generic)",
				 tr_utf8_cut(v, TR_QUOTE_MAX), v);
		} else if (!pk_isa_supported(want)) {
			env_rc = -ENOTSUP;
			snprintf(env_msg, sizeof(env_msg),
				 "TRAIND_ISA=%s: this CPU cannot run it (it needs %s)", pk_isa_name(want),
				 isa_needs(want));
		} else {
			isa = want;
		}
	}
	atomic_store(&active_ops, ops_of(isa));
}

static const struct pk_ops *active(void)
{
	const struct pk_ops *o = atomic_load_explicit(&active_ops, memory_order_acquire);

	if (o)
		return o;
	pthread_once(&env_once, env_init);
	return atomic_load(&active_ops);
}

const struct pk_ops *pk_ops_active(void)
{
	return active();
}

int pk_init(struct tr_err *err)
{
	pthread_once(&env_once, env_init);
	if (env_rc < 0)
		return tr_err_set(err, env_rc, "%s", env_msg);
	return 0;
}

enum pk_isa pk_isa_active(void)
{
	const struct pk_ops *o = active();

	for (int i = 0; i < PK_ISA_COUNT; i++)
		if (ops_of((enum pk_isa)i) == o)
			return (enum pk_isa)i;
	return PK_ISA_GENERIC;
}

int pk_isa_set(enum pk_isa isa, struct tr_err *err)
{
	pthread_once(&env_once, env_init);
	if (!pk_isa_supported(isa))
		return tr_err_set(err, -ENOTSUP, "the %s path: this CPU cannot run it (it needs %s)",
				  pk_isa_name(isa), isa_needs(isa));
	atomic_store(&active_ops, ops_of(isa));
	return 0;
}

void pk_describe(char *buf, size_t len)
{
	snprintf(buf, len, "traind portable %d %s", PK_CONTRACT, pk_isa_name(pk_isa_active()));
}

/* "traind portable N " and the path */
bool pk_same_bits(const char *a, const char *b)
{
	static const char prefix[] = "traind portable ";
	const char *ea, *eb;

	if (strncmp(a, prefix, sizeof(prefix) - 1) != 0 || strncmp(b, prefix, sizeof(prefix) - 1) != 0)
		return false;
	ea = strchr(a + sizeof(prefix) - 1, ' ');
	eb = strchr(b + sizeof(prefix) - 1, ' ');
	return ea && eb && ea - a == eb - b && strncmp(a, b, (size_t)(ea - a)) == 0;
}

/* ---- scratch, one buffer per thread ---------------------------------------- */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_rc;
static __thread float *scratch_buf;
static __thread size_t scratch_cap;

static void scratch_free(void *p)
{
	free(p);
}

static void scratch_key_init(void)
{
	scratch_key_rc = pthread_key_create(&scratch_key, scratch_free);
}

/* n floats, 64-byte aligned, this thread's; NULL when they cannot be had. */
static float *scratch(size_t n)
{
	void *p = NULL;

	if (n <= scratch_cap)
		return scratch_buf;
	pthread_once(&scratch_once, scratch_key_init);
	if (scratch_key_rc != 0 || n > SIZE_MAX / sizeof(float) / 2)
		return NULL;
	n += n / 4;   /* grow by steps, not by every float */
	if (posix_memalign(&p, 64, n * sizeof(float)))
		return NULL;
	if (pthread_setspecific(scratch_key, p)) {
		free(p);
		return NULL;
	}
	free(scratch_buf);
	scratch_buf = p;
	scratch_cap = n;
	return p;
}

/* ---- GEMM ------------------------------------------------------------------ */

struct gemm {
	const struct pk_ops *ops;
	size_t k;
	size_t bdim, vdim;       /* D is (bdim, vdim) */
	const float *p;          /* P[b][kk] at p[b * p_rs + kk * p_cs] */
	size_t p_rs, p_cs;
	const float *q;          /* Q[kk][col] at q[kk * q_ld + col] */
	size_t q_ld;
	float *c;                /* D[b][col] at c[b * c_rs + col * c_cs]; c_rs or c_cs is 1 */
	size_t c_rs, c_cs;
	enum pk_init init;
	float beta;
	/* Q packed from its transpose: Q[kk][col] = src[col * src_ld + kk] */
	const float *src;
	size_t src_ld;
	float *packed;           /* (k, q_ld) when src */
	/* the team's split */
	bool split_v;            /* members take vector panels, else broadcast rows */
	unsigned members;
};

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

static size_t round_up(size_t x, size_t to)
{
	return (x + to - 1) / to * to;
}

/* The initial value of a chain (k = 0: the result). */
static float chain_init(enum pk_init init, float beta, float c)
{
	return init == PK_INIT_ZERO ? 0.0f : init == PK_INIT_LOAD ? c : beta * c;
}

/* Columns [c0, c1) of the packed Q (a transpose: memory only). */
static void pack_cols(const struct gemm *g, size_t c0, size_t c1)
{
	g->ops->pack_t(g->packed + c0, g->q_ld, g->src + c0 * g->src_ld, g->src_ld, g->k, c1 - c0);
}

/* D[b0:b1][v0:v1] by tiles: k blocks (orientation J), vector panels, rows. */
static void gemm_range(const struct gemm *g, size_t b0, size_t b1, size_t v0, size_t v1)
{
	const struct pk_ops *o = g->ops;
	size_t panel = (size_t)o->nv_max * o->vl;
	size_t nkb = (g->k + PK_KC - 1) / PK_KC;
	/* transposed tiles take k whole; else equal blocks of at most PK_KC */
	size_t kc = g->c_cs == 1 ? (g->k + nkb - 1) / nkb : g->k;
	/* A panel of Q used by many tiles is copied into a contiguous block
	 * first (in L1, whatever Q's row stride). */
	bool copy = g->c_cs == 1 && !g->src && b1 - b0 >= 64;
	float buf[PK_NB_MAX * PK_NV_MAX * 16];
	float panel_buf[PK_KC * PK_NV_MAX * 16] __attribute__((aligned(64)));   /* 40 KB */

	for (size_t k0 = 0; k0 < g->k; k0 += kc) {
		size_t kl = min_sz(kc, g->k - k0);
		enum pk_init init = k0 == 0 ? g->init : PK_INIT_LOAD;

		for (size_t v = v0; v < v1; v += panel) {
			size_t w = min_sz(panel, v1 - v);
			unsigned nv = (unsigned)((w + o->vl - 1) / o->vl);
			unsigned nbmax = o->nb_max[nv - 1];
			struct pk_tile t = {
				.k = kl, .p_rs = g->p_rs, .p_cs = g->p_cs, .q = g->q + k0 * g->q_ld + v,
				.q_ld = g->q_ld, .nv = nv, .last = (unsigned)(w - (nv - 1) * o->vl),
				.init = init, .beta = g->beta,
			};

			if (copy) {
				for (size_t kk = 0; kk < kl; kk++)
					for (size_t col = 0; col < w; col++)
						panel_buf[kk * panel + col] = t.q[kk * t.q_ld + col];
				t.q = panel_buf;
				t.q_ld = panel;
			}
			for (size_t b = b0; b < b1; b += t.nb) {
				t.nb = (unsigned)min_sz(nbmax, b1 - b);
				t.p = g->p + b * g->p_rs + k0 * g->p_cs;
				if (g->c_cs == 1) {
					t.c = g->c + b * g->c_rs + v;
					t.c_ld = g->c_rs;
					o->tile(&t);
					continue;
				}
				/* D's tile is C's transposed: through buf */
				t.c = buf;
				t.c_ld = (size_t)nv * o->vl;
				if (init != PK_INIT_ZERO)
					for (size_t col = 0; col < w; col++)
						for (unsigned bb = 0; bb < t.nb; bb++)
							buf[bb * t.c_ld + col] = g->c[(b + bb) * g->c_rs + (v + col) * g->c_cs];
				o->tile(&t);
				for (size_t col = 0; col < w; col++)   /* along C's rows */
					for (unsigned bb = 0; bb < t.nb; bb++)
						g->c[(b + bb) * g->c_rs + (v + col) * g->c_cs] = buf[bb * t.c_ld + col];
			}
		}
	}
}

static void member_pack(void *arg, unsigned idx, unsigned n)
{
	const struct gemm *g = arg;
	size_t c0, c1;

	team_split(g->vdim, idx, n, 16, &c0, &c1);
	if (c0 < c1)
		pack_cols(g, c0, c1);
}

static void member_compute(void *arg, unsigned idx, unsigned n)
{
	const struct gemm *g = arg;
	const struct pk_ops *o = g->ops;
	size_t lo, hi;

	if (g->split_v) {   /* by vectors, balanced within one; its own columns packed first */
		team_split(g->vdim, idx, n, o->vl, &lo, &hi);
		if (lo < hi && g->src)
			pack_cols(g, lo, hi);
		if (lo < hi)
			gemm_range(g, 0, g->bdim, lo, hi);
	} else {
		unsigned nv = (unsigned)min_sz(o->nv_max, (g->vdim + o->vl - 1) / o->vl);

		team_split(g->bdim, idx, n, o->nb_max[nv - 1], &lo, &hi);
		if (lo < hi)
			gemm_range(g, lo, hi, 0, g->vdim);
	}
}

/* Vector-FMA slots of an orientation, roughly (measured with bench-portable
 * on AVX-512: a slot is half a cycle): the tiles' FMAs, the packing (a
 * transpose through the registers, a third of a cycle a float) and the
 * transposed tiles' copies (a cycle an element). */
static double plan_cost(const struct pk_ops *o, size_t bdim, size_t vdim, size_t k, bool pack,
			bool transposed)
{
	double c = (double)bdim * (double)((vdim + o->vl - 1) / o->vl) * (double)k;

	if (pack)
		c += 0.7 * (double)vdim * (double)k;
	if (transposed)
		c += 2.0 * (double)bdim * (double)vdim;
	return c;
}

/* The same chains, one element at a time: when no scratch can be had. */
static void gemm_plain(int ta, int tb, size_t m, size_t n, size_t k, const float *a, size_t lda,
		       const float *b, size_t ldb, enum pk_init init, float beta, float *c, size_t ldc)
{
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++) {
			float s = chain_init(init, beta, init == PK_INIT_ZERO ? 0.0f : c[i * ldc + j]);

			for (size_t p = 0; p < k; p++)
				s = fmaf(ta ? a[p * lda + i] : a[i * lda + p], tb ? b[j * ldb + p] : b[p * ldb + j], s);
			c[i * ldc + j] = s;
		}
}

void pk_gemm_team(struct team *team, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
		  const float *a, size_t lda, const float *b, size_t ldb,
		  float beta, float *c, size_t ldc)
{
	const struct pk_ops *o = active();
	enum pk_init init = beta == 0.0f ? PK_INIT_ZERO : beta == 1.0f ? PK_INIT_LOAD : PK_INIT_SCALE;
	unsigned members = team ? team_size(team) : 1;
	struct gemm g = { .ops = o, .k = k, .init = init, .beta = beta, .members = members };
	size_t need = 0, acopy = 0;
	bool orient_i;
	float *s;

	if (m == 0 || n == 0)
		return;
	if (k == 0) {
		for (size_t i = 0; i < m; i++)
			for (size_t j = 0; j < n; j++)
				c[i * ldc + j] = chain_init(init, beta, init == PK_INIT_ZERO ? 0.0f : c[i * ldc + j]);
		return;
	}
	/* Orientation J packs op(B) when tb; I packs op(A) when !ta. */
	orient_i = plan_cost(o, n, m, k, !ta, true) < plan_cost(o, m, n, k, tb, false);
	if (alpha != 1.0f)
		acopy = m * k;   /* alpha op(A), row-major (m, k): then !ta */
	if (orient_i ? (!ta || acopy) : tb)
		need = k * round_up(orient_i ? m : n, 16);
	s = acopy + need ? scratch(acopy + need) : NULL;
	if (acopy + need && !s) {
		if (acopy) {
			/* alpha' op(A) on the fly, one rounding each, the same chains */
			for (size_t i = 0; i < m; i++)
				for (size_t j = 0; j < n; j++) {
					float v = chain_init(init, beta, init == PK_INIT_ZERO ? 0.0f : c[i * ldc + j]);

					for (size_t p = 0; p < k; p++)
						v = fmaf(alpha * (ta ? a[p * lda + i] : a[i * lda + p]),
							 tb ? b[j * ldb + p] : b[p * ldb + j], v);
					c[i * ldc + j] = v;
				}
			return;
		}
		gemm_plain(ta, tb, m, n, k, a, lda, b, ldb, init, beta, c, ldc);
		return;
	}
	if (acopy) {
		for (size_t i = 0; i < m; i++)
			for (size_t p = 0; p < k; p++)
				s[i * k + p] = alpha * (ta ? a[p * lda + i] : a[i * lda + p]);
		a = s;
		lda = k;
		ta = 0;
	}
	if (!orient_i) {
		g.bdim = m;
		g.vdim = n;
		g.p = a;
		g.p_rs = ta ? 1 : lda;
		g.p_cs = ta ? lda : 1;
		g.c = c;
		g.c_rs = ldc;
		g.c_cs = 1;
		if (tb) {
			g.src = b;
			g.src_ld = ldb;
		} else {
			g.q = b;
			g.q_ld = ldb;
		}
	} else {
		g.bdim = n;
		g.vdim = m;
		g.p = b;
		g.p_rs = tb ? ldb : 1;
		g.p_cs = tb ? 1 : ldb;
		g.c = c;
		g.c_rs = 1;
		g.c_cs = ldc;
		if (!ta) {
			g.src = a;
			g.src_ld = lda;
		} else {
			g.q = a;
			g.q_ld = lda;
		}
	}
	if (g.src) {
		g.packed = s + acopy;
		g.q = g.packed;
		g.q_ld = round_up(g.vdim, 16);
	}
	if (members == 1 || (double)m * (double)n * (double)k < PK_TEAM_MIN) {
		/* one member; or a product smaller than waking the team */
		if (g.src)
			pack_cols(&g, 0, g.vdim);
		gemm_range(&g, 0, g.bdim, 0, g.vdim);
		return;
	}
	{
		size_t panel = (size_t)o->nv_max * o->vl;
		unsigned nv = (unsigned)min_sz(o->nv_max, (g.vdim + o->vl - 1) / o->vl);
		size_t units_v = (g.vdim + panel - 1) / panel;
		size_t units_b = (g.bdim + o->nb_max[nv - 1] - 1) / o->nb_max[nv - 1];

		/* panels split the vector side's reads (each member packs its
		 * own: one phase); rows when panels are few (every member reads
		 * all of the packed side: packed in a phase of its own first) */
		g.split_v = units_v >= 2 * (size_t)members || units_v >= units_b;
		if (g.src && !g.split_v) {
			if (g.vdim >= 32 * members)
				team_run(team, member_pack, &g);
			else
				pack_cols(&g, 0, g.vdim);
		}
		team_run(team, member_compute, &g);
	}
}

void pk_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
	     const float *a, size_t lda, const float *b, size_t ldb,
	     float beta, float *c, size_t ldc)
{
	pk_gemm_team(NULL, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---- reductions ------------------------------------------------------------ */

static float tree_f(float l[16])
{
	for (int h = 8; h >= 1; h /= 2)
		for (int i = 0; i < h; i++)
			l[i] = l[i] + l[i + h];
	return l[0];
}

static double tree_d(double l[16])
{
	for (int h = 8; h >= 1; h /= 2)
		for (int i = 0; i < h; i++)
			l[i] = l[i] + l[i + h];
	return l[0];
}

static float maxnan(float s, float x)
{
	return x != x ? x : x > s ? x : s;
}

static float tree_max(float l[16])
{
	for (int h = 8; h >= 1; h /= 2)
		for (int i = 0; i < h; i++)
			l[i] = maxnan(l[i], l[i + h]);
	return l[0];
}

static size_t nblocks(size_t n)
{
	return n ? (n + PK_BLOCK - 1) / PK_BLOCK : 1;
}

enum red_kind { RED_SUM, RED_DOT, RED_MAX, RED_SUMD, RED_SUMSQD };

/* One block's result. */
static double block_red(const struct pk_ops *o, enum red_kind kind, const float *x, const float *y,
			size_t n)
{
	float lf[16];
	double ld[16];

	for (int l = 0; l < 16; l++) {
		lf[l] = kind == RED_MAX ? -__builtin_inff() : 0.0f;
		ld[l] = 0.0;
	}
	switch (kind) {
	case RED_SUM:
		o->sum_lanes(lf, x, n);
		return tree_f(lf);
	case RED_DOT:
		o->dot_lanes(lf, x, y, n);
		return tree_f(lf);
	case RED_MAX:
		o->max_lanes(lf, x, n);
		return tree_max(lf);
	case RED_SUMD:
		o->sumd_lanes(ld, x, n);
		return tree_d(ld);
	case RED_SUMSQD:
		o->sumsqd_lanes(ld, x, n);
		return tree_d(ld);
	}
	return 0.0;
}

/* The blocks' results combined in order, in float or in double. */
static double reduce(enum red_kind kind, const float *x, const float *y, size_t n)
{
	const struct pk_ops *o = active();
	size_t nb = nblocks(n);
	float tf = 0.0f;
	double td = 0.0;

	for (size_t bi = 0; bi < nb; bi++) {
		size_t lo = bi * PK_BLOCK, len = min_sz(PK_BLOCK, n - lo);
		double r = block_red(o, kind, x + lo, y ? y + lo : NULL, n ? len : 0);

		if (kind == RED_SUMD || kind == RED_SUMSQD)
			td = bi == 0 ? r : td + r;
		else if (kind == RED_MAX)
			tf = bi == 0 ? (float)r : maxnan(tf, (float)r);
		else
			tf = bi == 0 ? (float)r : tf + (float)r;
	}
	return kind == RED_SUMD || kind == RED_SUMSQD ? td : (double)tf;
}

float pk_sum(const float *x, size_t n)
{
	return (float)reduce(RED_SUM, x, NULL, n);
}

float pk_dot(const float *x, const float *y, size_t n)
{
	return (float)reduce(RED_DOT, x, y, n);
}

float pk_max(const float *x, size_t n)
{
	return (float)reduce(RED_MAX, x, NULL, n);
}

double pk_sum_f64(const float *x, size_t n)
{
	return reduce(RED_SUMD, x, NULL, n);
}

double pk_sumsq_f64(const float *x, size_t n)
{
	return reduce(RED_SUMSQD, x, NULL, n);
}

struct sumsq_job {
	const struct pk_ops *ops;
	const float *x;
	size_t n;
	double *part;            /* (blocks) */
};

static void member_sumsq(void *arg, unsigned idx, unsigned nm)
{
	struct sumsq_job *j = arg;
	size_t b0, b1;

	team_split(nblocks(j->n), idx, nm, 1, &b0, &b1);
	for (size_t bi = b0; bi < b1; bi++) {
		size_t lo = bi * PK_BLOCK;

		j->part[bi] = block_red(j->ops, RED_SUMSQD, j->x + lo, NULL, min_sz(PK_BLOCK, j->n - lo));
	}
}

double pk_sumsq_f64_team(struct team *team, const float *x, size_t n)
{
	struct sumsq_job j = { .ops = active(), .x = x, .n = n };
	size_t nb = nblocks(n);
	double stack[64], t = 0.0;

	if (!team || team_size(team) == 1 || nb < 2)
		return pk_sumsq_f64(x, n);
	j.part = nb <= 64 ? stack : malloc(nb * sizeof(double));
	if (!j.part)
		return pk_sumsq_f64(x, n);   /* the same bits on one thread */
	team_run(team, member_sumsq, &j);
	for (size_t bi = 0; bi < nb; bi++)
		t = bi == 0 ? j.part[bi] : t + j.part[bi];
	if (j.part != stack)
		free(j.part);
	return t;
}

double pk_sum2d_f64(const float *x, size_t rows, size_t len, size_t stride)
{
	const struct pk_ops *o = active();
	double l[16] = { 0 };

	for (size_t r = 0; r < rows; r++)
		o->sumd_lanes(l, x + r * stride, len);
	return tree_d(l);
}

float pk_sum2d(const float *x, size_t rows, size_t len, size_t stride)
{
	const struct pk_ops *o = active();
	float l[16] = { 0 };

	for (size_t r = 0; r < rows; r++)
		o->sum_lanes(l, x + r * stride, len);
	return tree_f(l);
}

double pk_sqdev2d_f64(const float *x, size_t rows, size_t len, size_t stride, double mean)
{
	const struct pk_ops *o = active();
	double l[16] = { 0 };

	for (size_t r = 0; r < rows; r++)
		o->sqdevd_lanes(l, x + r * stride, len, mean);
	return tree_d(l);
}

void pk_bn_sums_f64(const float *dy, const float *x, size_t rows, size_t len, size_t stride,
		    double mean, double invstd, double *sdy, double *sdyx)
{
	const struct pk_ops *o = active();
	double a[16] = { 0 }, b[16] = { 0 };

	for (size_t r = 0; r < rows; r++)
		o->bnd_lanes(a, b, dy + r * stride, x + r * stride, len, mean, invstd);
	*sdy = tree_d(a);
	*sdyx = tree_d(b);
}

/* pk_sum_f64 of a sequence pushed one element at a time (the same lanes,
 * trees and blocks). */
struct sumd_stream {
	double lanes[16];
	size_t i;                /* elements pushed */
	double total;
};

static void sumd_push(struct sumd_stream *s, float x)
{
	s->lanes[s->i % 16] = s->lanes[s->i % 16] + (double)x;
	if (++s->i % PK_BLOCK == 0) {
		double r = tree_d(s->lanes);

		s->total = s->i == PK_BLOCK ? r : s->total + r;
		memset(s->lanes, 0, sizeof(s->lanes));
	}
}

static double sumd_end(struct sumd_stream *s)
{
	double r;

	if (s->i && s->i % PK_BLOCK == 0)
		return s->total;
	r = tree_d(s->lanes);
	return s->i < PK_BLOCK ? r : s->total + r;
}

/* One row of the softmax cross-entropy; its loss. */
static float xent_row(const struct pk_ops *o, const float *z, uint32_t y, size_t k, float grad_scale,
		      float *d, uint32_t *pred)
{
	float lanes[16], mx, sum, tmp[256];
	size_t arg = 0;

	for (int l = 0; l < 16; l++)
		lanes[l] = -__builtin_inff();
	o->max_lanes(lanes, z, k);
	mx = tree_max(lanes);
	for (size_t j = 1; j < k; j++)
		if (z[j] > z[arg])
			arg = j;
	if (pred)
		*pred = (uint32_t)arg;
	memset(lanes, 0, sizeof(lanes));
	/* e_j = exp(z_j - mx), in d or in 256 at a time (a multiple of 16:
	 * element j stays in lane j mod 16) */
	for (size_t j0 = 0; j0 < k; j0 += d ? k : 256) {
		size_t len = d ? k : min_sz(256, k - j0);
		float *e = d ? d : tmp;

		for (size_t j = 0; j < len; j++)
			e[j] = z[j0 + j] - mx;
		o->exp(e, e, len);
		o->sum_lanes(lanes, e, len);
	}
	sum = tree_f(lanes);
	if (d)
		for (size_t j = 0; j < k; j++)
			d[j] = (d[j] / sum - (j == y ? 1.0f : 0.0f)) * grad_scale;
	{
		float l;

		o->log(&l, &sum, 1);
		return l - (z[y] - mx);
	}
}

void pk_softmax_xent_rows(const float *logits, const uint32_t *y, size_t r0, size_t r1, size_t k,
			  float grad_scale, float *dlogits, uint32_t *pred, float *row_loss)
{
	const struct pk_ops *o = active();

	for (size_t r = r0; r < r1; r++)
		row_loss[r] = xent_row(o, logits + r * k, y[r], k, grad_scale,
				       dlogits ? dlogits + r * k : NULL, pred ? pred + r : NULL);
}

double pk_softmax_xent(const float *logits, const uint32_t *y, size_t m, size_t k,
		       float grad_scale, float *dlogits, uint32_t *pred)
{
	const struct pk_ops *o = active();
	struct sumd_stream s = { { 0 }, 0, 0.0 };

	for (size_t r = 0; r < m; r++)
		sumd_push(&s, xent_row(o, logits + r * k, y[r], k, grad_scale,
				       dlogits ? dlogits + r * k : NULL, pred ? pred + r : NULL));
	return sumd_end(&s);
}

/* ---- the batch in chunks ------------------------------------------------------ */

unsigned pk_nchunks(size_t batch)
{
	return batch < PK_CHUNKS ? (unsigned)batch : PK_CHUNKS;
}

void pk_chunk(size_t batch, unsigned c, size_t *r0, size_t *r1)
{
	unsigned n = pk_nchunks(batch);

	*r0 = n ? c * batch / n : 0;
	*r1 = n ? (c + 1) * batch / n : 0;
}

void pk_add_chunks(float *out, const float *parts, size_t part_stride, unsigned nchunks,
		   size_t lo, size_t hi)
{
	if (nchunks == 0) {
		for (size_t e = lo; e < hi; e++)
			out[e] = 0.0f;
		return;
	}
	for (size_t e = lo; e < hi; e++)
		out[e] = parts[e];
	for (unsigned ch = 1; ch < nchunks; ch++) {
		const float *p = parts + ch * part_stride;

		for (size_t e = lo; e < hi; e++)
			out[e] = out[e] + p[e];
	}
}

double pk_powi(double x, uint64_t n)
{
	double r = 1.0;

	while (n) {
		if (n & 1)
			r = r * x;
		x = x * x;
		n >>= 1;
	}
	return r;
}

/* ---- element-wise ------------------------------------------------------------ */

void pk_exp(float *y, const float *x, size_t n)
{
	active()->exp(y, x, n);
}

void pk_log(float *y, const float *x, size_t n)
{
	active()->log(y, x, n);
}

void pk_tanh(float *y, const float *x, size_t n)
{
	active()->tanh(y, x, n);
}

void pk_erf(float *y, const float *x, size_t n)
{
	active()->erf(y, x, n);
}

void pk_sigmoid(float *y, const float *x, size_t n)
{
	active()->sigmoid(y, x, n);
}

#define PK_SCALAR(name, arr)          \
	float name(float x)           \
	{                             \
		float y;              \
                                      \
		active()->arr(&y, &x, 1); \
		return y;             \
	}
PK_SCALAR(pk_expf, exp)
PK_SCALAR(pk_logf, log)
PK_SCALAR(pk_tanhf, tanh)
PK_SCALAR(pk_erff, erf)
PK_SCALAR(pk_sigmoidf, sigmoid)
