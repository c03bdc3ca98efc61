/*
 * portable-generic.c - the plain C path of the portable kernels, for any CPU:
 * the operations portable-kern.h and portable-math.h are written over, with
 * fmaf for every fused multiply-add (correctly rounded by C99, so the same
 * bits as the vector paths' FMA instructions) and nothing else fused: the
 * build passes -ffp-contract=off (engine/meson.build; the contraction probe
 * in test-portable.c checks it). The math works on one float at a time; the
 * tile and the reductions on 16-float arrays, which a compiler may
 * vectorize lane by lane (never across lanes: no fast-math).
 */
#include "engine/core/portable-isa.h"

#include <math.h>
#include <string.h>

#if defined(__FAST_MATH__)
#error "portable-generic.c must not be compiled with fast-math"
#endif

#define PK_OPS pk_ops_generic
#define PK_NAME "generic"

/* portable-math.h's vector: one float */
typedef float V;
typedef int32_t VI;
typedef int VM;
#define VL 1

static inline VI v_bits(V x)
{
	VI i;

	memcpy(&i, &x, sizeof(i));
	return i;
}

static inline V v_from_bits(VI i)
{
	V x;

	memcpy(&x, &i, sizeof(x));
	return x;
}

#define v_set1(x) ((float)(x))
#define vi_set1(x) ((int32_t)(x))
#define v_add(a, b) ((a) + (b))
#define v_sub(a, b) ((a) - (b))
#define v_mul(a, b) ((a) * (b))
#define v_div(a, b) ((a) / (b))
#define v_fma(a, b, c) fmaf(a, b, c)
static inline V v_min(V a, V b) { return a < b ? a : b; }
static inline V v_max(V a, V b) { return a > b ? a : b; }
#define vi_add(a, b) ((int32_t)((uint32_t)(a) + (uint32_t)(b)))
#define vi_sub(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)))
#define vi_and(a, b) ((a) & (b))
#define vi_or(a, b) ((a) | (b))
#define vi_xor(a, b) ((a) ^ (b))
#define vi_srai(a, n) ((int32_t)(a) >> (n))   /* arithmetic in GCC and Clang */
#define vi_slli(a, n) ((int32_t)((uint32_t)(a) << (n)))
#define v_cvt(i) ((float)(i))
#define m_lt(a, b) ((a) < (b))
#define m_ge(a, b) ((a) >= (b))
#define m_eq(a, b) ((a) == (b))
#define m_nan(a) ((a) != (a))
#define mi_lt(a, b) ((a) < (b))
#define mi_gt(a, b) ((a) > (b))
#define m_and(a, b) ((a) && (b))
#define v_sel(m, a, b) ((m) ? (a) : (b))
#define vi_sel(m, a, b) ((m) ? (a) : (b))
#define v_loadn(p, n) (*(p))
#define v_storen(p, v, n) (*(p) = (v))

/* the tile: vectors of 16 floats, one tile of 4 rows by 16 columns */
typedef struct {
	float f[16];
} T;
typedef unsigned TM;
#define TVL 16
#define PK_NV 1
#define PK_NB1 4
#define PK_NB2 0
#define PK_NB3 0
#define PK_NB4 0

static inline T t_zero(void)
{
	T r;

	for (int l = 0; l < 16; l++)
		r.f[l] = 0.0f;
	return r;
}

static inline T t_set1(float x)
{
	T r;

	for (int l = 0; l < 16; l++)
		r.f[l] = x;
	return r;
}

#define t_mask(n) ((TM)(n))

static inline T t_loadm(const float *p, TM n)
{
	T r;

	for (unsigned l = 0; l < 16; l++)
		r.f[l] = l < n ? p[l] : 0.0f;
	return r;
}

#define t_load(p) t_loadm(p, 16)

static inline void t_storem(float *p, T v, TM n)
{
	for (unsigned l = 0; l < n; l++)
		p[l] = v.f[l];
}

static inline T t_mul(T a, T b)
{
	T r;

	for (int l = 0; l < 16; l++)
		r.f[l] = a.f[l] * b.f[l];
	return r;
}

static inline T t_fma(T a, T b, T c)
{
	T r;

	for (int l = 0; l < 16; l++)
		r.f[l] = fmaf(a.f[l], b.f[l], c.f[l]);
	return r;
}

static inline T t_add(T a, T b)
{
	T r;

	for (int l = 0; l < 16; l++)
		r.f[l] = a.f[l] + b.f[l];
	return r;
}

#define PK_CX_NB1 4
#define PK_CX_NB2 0
#define PK_CX_NB3 0
#define PK_CX_NB4 0
#define PK_DT_NB 4
#define PK_DT_NQ 4

/* 16 float lanes */
typedef T F16;
#define f16_zero() t_zero()

/* fmaf on lanes < n, lanes >= n keep c's */
static inline F16 f16_fman(F16 a, F16 b, F16 c, unsigned n)
{
	for (unsigned l = 0; l < n; l++)
		c.f[l] = fmaf(a.f[l], b.f[l], c.f[l]);
	return c;
}

#define f16_loadn(p, n) t_loadm(p, n)
#define f16_fma t_fma
#define f16_load(lanes) t_loadm(lanes, 16)
#define f16_store(lanes, v) t_storem(lanes, v, 16)

static inline F16 f16_add(F16 a, F16 b)
{
	F16 r;

	for (int l = 0; l < 16; l++)
		r.f[l] = a.f[l] + b.f[l];
	return r;
}

static inline F16 f16_maxnan(F16 s, F16 x)
{
	F16 r;

	for (int l = 0; l < 16; l++)
		r.f[l] = x.f[l] != x.f[l] ? x.f[l] : x.f[l] > s.f[l] ? x.f[l] : s.f[l];
	return r;
}

/* 16 double lanes */
typedef struct {
	double d[16];
} D16;

static inline D16 d16_cvtn(const float *p, unsigned n)
{
	D16 r;

	for (unsigned l = 0; l < 16; l++)
		r.d[l] = l < n ? (double)p[l] : 0.0;
	return r;
}

static inline D16 d16_set1(double x)
{
	D16 r;

	for (int l = 0; l < 16; l++)
		r.d[l] = x;
	return r;
}

#define D16_OP(name, op)                                  \
	static inline D16 name(D16 a, D16 b)              \
	{                                                 \
		D16 r;                                    \
                                                          \
		for (int l = 0; l < 16; l++)              \
			r.d[l] = a.d[l] op b.d[l];        \
		return r;                                 \
	}
D16_OP(d16_add, +)
D16_OP(d16_sub, -)
D16_OP(d16_mul, *)

static inline D16 d16_load(const double *lanes)
{
	D16 r;

	memcpy(r.d, lanes, sizeof(r.d));
	return r;
}

static inline void d16_store(double *lanes, D16 v)
{
	memcpy(lanes, v.d, sizeof(v.d));
}

/* The packing transpose, in 16 x 16 blocks. */
static void pk_pack_t(float *dst, size_t ld_dst, const float *src, size_t ld_src, size_t k, size_t n)
{
	for (size_t j0 = 0; j0 < n; j0 += 16)
		for (size_t k0 = 0; k0 < k; k0 += 16) {
			size_t j1 = n - j0 < 16 ? n : j0 + 16, k1 = k - k0 < 16 ? k : k0 + 16;

			for (size_t kk = k0; kk < k1; kk++)
				for (size_t j = j0; j < j1; j++)
					dst[kk * ld_dst + j] = src[j * ld_src + kk];
		}
}

#define PK_PROBE_ATTR __attribute__((noinline, noclone))

#include "engine/core/portable-kern.h"
