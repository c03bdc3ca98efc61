/*
 * bf16.h - matrix products on bfloat16 inputs with float32 accumulation: the
 * arithmetic of a job with precision bf16 (kernels.h's k_gemm in K_BF16
 * mode; doc/precision.md).
 *
 * The module owns the CPU path of the process (decided once: cpuid, the
 * operating system's consent to AMX tile data, and TRAIND_BF16) and the two
 * kernels: AMX tiles (tdpbf16ps) and AVX-512-BF16 (vdpbf16ps). Both compute
 *
 *   C = alpha * acc + beta * C,   acc[i][j] = sum over k of bf16(A[i][k]) * bf16(B[k][j])
 *
 * with every input rounded to bfloat16 by round-to-nearest-even, as PyTorch
 * rounds (vcvtneps2bf16; unlike PyTorch's conversion it reads a float32
 * denormal as zero, which the products would read as zero anyway once
 * rounded, except one just below FLT_MIN that PyTorch rounds up to FLT_MIN;
 * a NaN stays a NaN) and
 * acc summed in float32 in increasing k from 0, each product added exactly
 * and each sum rounded to nearest even, in the order of the path's
 * instruction (Intel SDM, checked bit for bit by tests/unit/test-bf16.c):
 *   AMX: k in chunks of 32 from 0; in a chunk the even and the odd products
 *        are summed apart (from 0), then even + odd is added to acc;
 *   AVX-512-BF16: pair after pair (k = 2p, 2p + 1), the odd product first.
 * Each element's sum is the same sequence of operations whatever the
 * matrix's size, the blocking or the caller's split, so the bits depend only
 * on the operands and the path; the two paths differ, so a job records its
 * path (numerics). Both read bfloat16 denormals as zero and flush denormal
 * sums to zero, whatever the thread's MXCSR.
 *
 * Operands are packed into the caller's scratch (bf16_scratch_len bytes): A
 * as rows of bfloat16 padded to a multiple of 32 along k, B in the pair-
 * interleaved ("VNNI") layout the instructions read. A product allocates
 * nothing.
 *
 * Thread: bf16_isa and the other queries on any thread (the first call
 * decides, under pthread_once, and asks the kernel for AMX permission for the
 * whole process before any thread can use a tile); bf16_gemm on any thread,
 * concurrently on disjoint outputs with a scratch each. AMX tile state is
 * loaded and released inside each bf16_gemm call.
 */
#ifndef TRAIND_BF16_H
#define TRAIND_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bumped whenever the kernels' arithmetic changes (a job records it). */
#define BF16_KERNELS_VERSION 1

enum bf16_isa {
	BF16_NONE,     /* neither path: bf16 is refused */
	BF16_AVX512,   /* vdpbf16ps on zmm registers (Cooper Lake, Zen 4 and later) */
	BF16_AMX,      /* tdpbf16ps on AMX tiles (Sapphire Rapids and later) */
};

/* What the CPU and the operating system offer (cpuid leaf 7, xgetbv, and
 * arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)). */
struct bf16_cpu {
	bool avx512f, avx512bw, avx512_bf16;
	bool amx_tile, amx_bf16;
	bool os_avx512;      /* XCR0 enables the opmask and zmm state */
	bool os_amx;         /* XCR0 enables tile state and the kernel granted tile data */
};

/* The path for `cpu` under the override `env` (TRAIND_BF16's value, or
 * NULL): unset/"auto" the best there is, "amx" or "avx512" that path only,
 * "off" none (to see what a CPU without bf16 does). BF16_NONE comes with a
 * sentence in why[] naming what is missing. Pure. */
enum bf16_isa bf16_choose(const struct bf16_cpu *cpu, const char *env, char *why, size_t len);

/* The features of the CPU this process runs on (asks for AMX permission). */
void bf16_cpu_detect(struct bf16_cpu *cpu);

/* This process's path: bf16_choose on bf16_cpu_detect and getenv("TRAIND_BF16"),
 * once. */
enum bf16_isa bf16_isa(void);
/* When bf16_isa() is BF16_NONE, why ("" otherwise). */
const char *bf16_why(void);
/* "amx", "avx512-bf16", "none". */
const char *bf16_isa_name(enum bf16_isa isa);

/* float32 -> bfloat16, round to nearest even (NaN -> 0x7fc0; denormals
 * kept), as PyTorch's tensor.bfloat16(); and back. For tests and tools: the
 * products convert as described above. */
uint16_t bf16_from_float(float f);
float bf16_to_float(uint16_t h);

/* Scratch bytes for any bf16_gemm whose k is at most kmax. */
size_t bf16_scratch_len(size_t kmax);

/* kernels.h's k_gemm contract (row-major, op(A) (m, k), op(B) (k, n)) on
 * path isa (BF16_AMX or BF16_AVX512, which the CPU must have), with
 * `scratch` of at least bf16_scratch_len(k) bytes, 64-byte aligned. */
void bf16_gemm(enum bf16_isa isa, void *scratch, size_t scratch_len, int ta, int tb, size_t m,
	       size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b, size_t ldb,
	       float beta, float *c, size_t ldc);

#endif
