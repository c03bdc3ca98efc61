/*
 * test-bf16.c - the bf16 module (engine/core/bf16.c): rounding to bfloat16
 * as PyTorch rounds; the path chosen for recorded CPU feature sets and the
 * TRAIND_BF16 override; and each kernel this CPU has, bit for bit against a
 * scalar model of its instruction (Intel SDM: tdpbf16ps sums the even and
 * the odd products of 32 values of k apart and adds the two to the element,
 * vdpbf16ps adds pair after pair, odd product first; both read bfloat16
 * denormals as zero and flush denormal sums, rounding to nearest even; the
 * packing's conversion reads float32 denormals as zero), over every transpose,
 * alpha and beta, shapes that cross the packing panels, and splits of the
 * columns as a team makes them. A path the CPU lacks is skipped, saying so.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/core/bf16.h"
#include "traind/kernels.h"
#include "traind/numerics.h"

static uint32_t bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float from_bits(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static void test_round(void **state)
{
	(void)state;
	assert_int_equal(bf16_from_float(1.0f), 0x3f80);
	assert_int_equal(bf16_from_float(-1.5f), 0xbfc0);
	assert_int_equal(bf16_from_float(from_bits(0x3f808000)), 0x3f80);   /* tie, even stays */
	assert_int_equal(bf16_from_float(from_bits(0x3f818000)), 0x3f82);   /* tie, odd rounds up */
	assert_int_equal(bf16_from_float(from_bits(0x3f808001)), 0x3f81);
	assert_int_equal(bf16_from_float(from_bits(0x3f807fff)), 0x3f80);
	assert_int_equal(bf16_from_float(FLT_MAX), 0x7f80);                 /* rounds up to infinity */
	assert_int_equal(bf16_from_float(-INFINITY), 0xff80);
	assert_int_equal(bf16_from_float(NAN), 0x7fc0);
	assert_int_equal(bf16_from_float(-NAN), 0x7fc0);
	assert_int_equal(bf16_from_float(from_bits(0x00018000)), 0x0002);   /* denormals are kept */
	assert_int_equal(bf16_from_float(from_bits(0x00008000)), 0x0000);
	assert_int_equal(bf16_from_float(from_bits(0x80010000)), 0x8001);
	assert_true(bf16_to_float(0x3f80) == 1.0f);
	assert_true(bf16_to_float(0xc040) == -3.0f);
}

/* Feature sets as cpuid and the kernel report them. */
static const struct bf16_cpu SAPPHIRE_RAPIDS = { true, true, true, true, true, true, true };
static const struct bf16_cpu SPR_OLD_KERNEL = { true, true, true, true, true, true, false };
static const struct bf16_cpu COOPER_LAKE = { true, true, true, false, false, true, false };
static const struct bf16_cpu ZEN4 = { true, true, true, false, false, true, false };
static const struct bf16_cpu ICE_LAKE = { true, true, false, false, false, true, false };
static const struct bf16_cpu HASWELL = { false, false, false, false, false, false, false };

static void test_choose(void **state)
{
	char why[256];

	(void)state;
	assert_int_equal(bf16_choose(&SAPPHIRE_RAPIDS, NULL, why, sizeof(why)), BF16_AMX);
	assert_string_equal(why, "");
	assert_int_equal(bf16_choose(&SAPPHIRE_RAPIDS, "auto", why, sizeof(why)), BF16_AMX);
	assert_int_equal(bf16_choose(&SPR_OLD_KERNEL, NULL, why, sizeof(why)), BF16_AVX512);
	assert_int_equal(bf16_choose(&COOPER_LAKE, NULL, why, sizeof(why)), BF16_AVX512);
	assert_int_equal(bf16_choose(&ZEN4, "", why, sizeof(why)), BF16_AVX512);
	assert_int_equal(bf16_choose(&ICE_LAKE, NULL, why, sizeof(why)), BF16_NONE);
	assert_non_null(strstr(why, "this one lacks avx512_bf16, amx_tile, amx_bf16"));
	assert_int_equal(bf16_choose(&HASWELL, NULL, why, sizeof(why)), BF16_NONE);
	assert_non_null(strstr(why, "lacks avx512f, avx512bw, avx512_bf16, amx_tile, amx_bf16"));
	/* the override */
	assert_int_equal(bf16_choose(&SAPPHIRE_RAPIDS, "avx512", why, sizeof(why)), BF16_AVX512);
	assert_int_equal(bf16_choose(&SAPPHIRE_RAPIDS, "avx512-bf16", why, sizeof(why)), BF16_AVX512);
	assert_int_equal(bf16_choose(&SAPPHIRE_RAPIDS, "amx", why, sizeof(why)), BF16_AMX);
	assert_int_equal(bf16_choose(&SAPPHIRE_RAPIDS, "off", why, sizeof(why)), BF16_NONE);
	assert_non_null(strstr(why, "TRAIND_BF16=off"));
	assert_int_equal(bf16_choose(&COOPER_LAKE, "amx", why, sizeof(why)), BF16_NONE);
	assert_non_null(strstr(why, "lacks amx_tile, amx_bf16"));
	assert_int_equal(bf16_choose(&SPR_OLD_KERNEL, "amx", why, sizeof(why)), BF16_NONE);
	assert_non_null(strstr(why, "ARCH_REQ_XCOMP_PERM"));
	assert_int_equal(bf16_choose(&ICE_LAKE, "avx512", why, sizeof(why)), BF16_NONE);
	assert_non_null(strstr(why, "lacks avx512_bf16"));
	assert_int_equal(bf16_choose(&SAPPHIRE_RAPIDS, "fast", why, sizeof(why)), BF16_NONE);
	assert_non_null(strstr(why, "'fast' is not auto, amx, avx512 or off"));
}

static void test_precision_check(void **state)
{
	struct tr_err err = { 0 };
	char env[96];
	int rc;

	(void)state;
	assert_int_equal(k_precision_check(K_FP32, &err), 0);
	rc = k_precision_check(K_BF16, &err);
	k_precision_numerics(K_BF16, env, sizeof(env));
	if (bf16_isa() == BF16_NONE) {
		assert_int_equal(rc, -EINVAL);
		assert_string_equal(err.key, "precision");
		assert_non_null(strstr(err.msg, "precision: "));
		print_message("bf16 is not available here: %s\n", err.msg);
	} else {
		assert_int_equal(rc, 0);
		assert_string_equal(env, bf16_isa() == BF16_AMX ? "traind-bf16 1 amx" : "traind-bf16 1 avx512-bf16");
	}
	k_precision_numerics(K_FP32, env, sizeof(env));
	assert_non_null(strstr(env, "OpenBLAS "));
}

/* ---- the kernels against the model of their instructions ----------------- */

static float daz(float x)
{
	return fabsf(x) < FLT_MIN ? 0.0f * x : x;
}

static float op(const float *x, size_t ld, int t, size_t r, size_t c)
{
	return t ? x[c * ld + r] : x[r * ld + c];
}

/* What a product sees of a float32 operand: the packing's vcvtneps2bf16
 * reads a float32 denormal as zero, then rounds to nearest even (as
 * bf16_from_float); the product's instruction reads a bfloat16 denormal as
 * zero (none is left). */
static float operand(float x)
{
	return daz(bf16_to_float(bf16_from_float(daz(x))));
}

/* One element of acc on path isa, as the SDM's pseudo-code computes it:
 * tdpbf16ps sums the even and the odd products of its 32 values of k
 * separately from 0 (each a fused multiply-add), then adds even + odd to the
 * element; vdpbf16ps adds each pair's odd product, then its even one. */
static float model_dot(enum bf16_isa isa, const float *a, size_t lda, int ta, const float *b,
		       size_t ldb, int tb, size_t i, size_t j, size_t k)
{
	float acc = 0.0f, even = 0.0f, odd = 0.0f;

	for (size_t p = 0; p < (k + 1) / 2; p++) {
		float a0 = operand(op(a, lda, ta, i, 2 * p));
		float b0 = operand(op(b, ldb, tb, 2 * p, j));
		float a1 = 2 * p + 1 < k ? operand(op(a, lda, ta, i, 2 * p + 1)) : 0.0f;
		float b1 = 2 * p + 1 < k ? operand(op(b, ldb, tb, 2 * p + 1, j)) : 0.0f;

		if (isa == BF16_AVX512) {
			acc = daz(fmaf(a1, b1, acc));
			acc = daz(fmaf(a0, b0, acc));
			continue;
		}
		even = daz(fmaf(a0, b0, even));
		odd = daz(fmaf(a1, b1, odd));
		if (p % 16 == 15 || p + 1 == (k + 1) / 2) {   /* the end of one tdpbf16ps */
			acc = daz(acc + daz(even + odd));
			even = odd = 0.0f;
		}
	}
	return acc;
}

static uint64_t lcg = 88172645463325252ull;

static float rnd(void)
{
	lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(lcg >> 11) / 9007199254740992.0);
}

/* Values over several binades, some exactly on a bfloat16 rounding tie,
 * some zero, some tiny enough to be bfloat16 denormals. */
static float value(void)
{
	float u = rnd(), x = (2.0f * rnd() - 1.0f) * ldexpf(1.0f, (int)(rnd() * 12.0f) - 6);

	if (u < 0.05f)
		return 0.0f;
	if (u < 0.15f)
		return from_bits((bits(x) & 0xffff0000u) | 0x8000u);   /* a tie */
	if (u < 0.17f)
		return ldexpf(x, -125);                                 /* tiny, some denormal */
	if (u < 0.18f)   /* a float32 denormal just below FLT_MIN: zero, though RNE alone gives FLT_MIN */
		return from_bits((u < 0.175f ? 0x007f8000u : 0x807f8000u) | (bits(x) & 0x7fffu));
	return x;
}

static float *fill(size_t n)
{
	float *x = malloc((n ? n : 1) * sizeof(float));

	for (size_t i = 0; i < n; i++)
		x[i] = value();
	return x;
}

struct shape {
	size_t m, n, k;
};

static const struct shape SHAPES[] = {
	{ 1, 1, 1 }, { 1, 1, 0 }, { 3, 5, 2 }, { 16, 16, 32 }, { 17, 33, 31 }, { 64, 128, 784 },
	{ 6, 784, 25 }, { 16, 100, 150 }, { 150, 100, 16 }, { 33, 300, 65 }, { 300, 20, 10 },
	{ 40, 513, 7 }, { 7, 37, 1001 }, { 20, 40, 9000 },   /* the last: panels of 16 */
};

/* Every shape, transpose, alpha and beta on path isa, bit for bit. */
static void check_path(enum bf16_isa isa)
{
	static const float ab[][2] = { { 1.0f, 0.0f }, { 1.0f, 1.0f }, { 0.5f, 0.0f }, { 0.25f, 2.0f } };
	size_t checked = 0;

	for (size_t s = 0; s < sizeof(SHAPES) / sizeof(SHAPES[0]); s++) {
		const struct shape *sh = &SHAPES[s];
		size_t len = bf16_scratch_len(sh->k);
		void *scratch = NULL;

		assert_int_equal(posix_memalign(&scratch, 64, len), 0);
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++)
				for (size_t v = 0; v < 4; v++) {
					size_t lda = (ta ? sh->m : sh->k) + 3, ldb = (tb ? sh->k : sh->n) + 5;
					size_t ldc = sh->n + 2;
					float *a = fill((ta ? sh->k : sh->m) * lda);
					float *b = fill((tb ? sh->n : sh->k) * ldb);
					float *c = fill(sh->m * ldc), *c0 = malloc(sh->m * ldc * sizeof(float));

					memcpy(c0, c, sh->m * ldc * sizeof(float));
					bf16_gemm(isa, scratch, len, ta, tb, sh->m, sh->n, sh->k, ab[v][0], a, lda,
						  b, ldb, ab[v][1], c, ldc);
					for (size_t i = 0; i < sh->m; i++)
						for (size_t j = 0; j < ldc; j++) {
							float want = c0[i * ldc + j];

							if (j < sh->n) {
								float acc = model_dot(isa, a, lda, ta, b, ldb, tb, i,
										      j, sh->k);

								want = ab[v][1] == 0.0f ? ab[v][0] * acc
									: ab[v][0] * acc + ab[v][1] * want;
							}
							if (bits(c[i * ldc + j]) != bits(want))
								fail_msg("%s %zux%zux%zu ta %d tb %d alpha %g beta %g: c[%zu][%zu] = %a, the model says %a",
									 bf16_isa_name(isa), sh->m, sh->n, sh->k, ta, tb,
									 ab[v][0], ab[v][1], i, j, c[i * ldc + j], want);
							checked++;
						}
					free(a);
					free(b);
					free(c);
					free(c0);
				}
		free(scratch);
	}
	print_message("%s: %zu elements equal to the model bit for bit\n", bf16_isa_name(isa), checked);
}

static bool cpu_has(enum bf16_isa isa)
{
	struct bf16_cpu cpu;

	bf16_cpu_detect(&cpu);
	return bf16_choose(&cpu, isa == BF16_AMX ? "amx" : "avx512", NULL, 0) == isa;
}

static void test_amx(void **state)
{
	(void)state;
	if (!cpu_has(BF16_AMX)) {
		print_message("skipped: this CPU (or its kernel) has no AMX tiles\n");
		skip();
	}
	check_path(BF16_AMX);
}

static void test_avx512(void **state)
{
	(void)state;
	if (!cpu_has(BF16_AVX512)) {
		print_message("skipped: this CPU has no AVX-512-BF16\n");
		skip();
	}
	check_path(BF16_AVX512);
}

/* The lesson's first layer (64 x 784 by 784 x 256, B transposed) computed
 * whole, in the two column halves a team of two computes, and with a larger
 * scratch: the same bits each way, on each path the CPU has. */
static void test_split(void **state)
{
	const size_t m = 64, n = 256, k = 784;
	float *a = fill(m * k), *b = fill(n * k);
	float *whole = calloc(m * n, sizeof(float)), *halves = calloc(m * n, sizeof(float));
	size_t len = bf16_scratch_len(k) + 12345 * 64;
	void *scratch = NULL;
	int paths = 0;

	(void)state;
	assert_int_equal(posix_memalign(&scratch, 64, len), 0);
	for (enum bf16_isa isa = BF16_AVX512; isa <= BF16_AMX; isa++) {
		if (!cpu_has(isa))
			continue;
		paths++;
		bf16_gemm(isa, scratch, bf16_scratch_len(k), 0, 1, m, n, k, 1.0f, a, k, b, k, 0.0f, whole, n);
		bf16_gemm(isa, scratch, len, 0, 1, m, 128, k, 1.0f, a, k, b, k, 0.0f, halves, n);
		bf16_gemm(isa, scratch, len, 0, 1, m, 128, k, 1.0f, a, k, b + 128 * k, k, 0.0f, halves + 128, n);
		assert_memory_equal(whole, halves, m * n * sizeof(float));
	}
	if (!paths) {
		print_message("skipped: this CPU has no bf16 path\n");
		skip();
	}
	free(scratch);
	free(a);
	free(b);
	free(whole);
	free(halves);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round),
		cmocka_unit_test(test_choose),
		cmocka_unit_test(test_precision_check),
		cmocka_unit_test(test_amx),
		cmocka_unit_test(test_avx512),
		cmocka_unit_test(test_split),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
