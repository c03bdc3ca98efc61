/*
 * cpu.h - what this x86-64 CPU, with its operating system, can run: the
 * vendor, the brand string and model, and the instruction-set extensions
 * that decide which BLAS kernel to use (blaskernel.h).
 *
 * A feature counts as usable when the CPU advertises it (cpuid) and, for the
 * AVX, AVX-512 and AMX register files, the OS saves that state on a context
 * switch (XCR0, read with xgetbv when the OS has set OSXSAVE). A hypervisor
 * or a kernel booted without AVX-512 support can leave a CPU's AVX-512
 * advertised but unusable; OpenBLAS checks XCR0 the same way.
 *
 * cpu_read gathers the registers into a struct cpu_raw; cpu_decode turns any
 * such record, this machine's or one recorded elsewhere (the unit tests use
 * recorded dumps), into a struct cpu_info. On Linux AMX also needs a
 * per-process permission (arch_prctl ARCH_REQ_XCOMP_PERM) that is not asked
 * for here: usable AMX means the OS can give it.
 *
 * Thread: any; cpu_read only executes cpuid and xgetbv.
 */
#ifndef TRAIND_CPU_H
#define TRAIND_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One cpuid leaf's answer. */
struct cpu_regs {
	uint32_t eax, ebx, ecx, edx;
};

/* The registers cpu_decode reads, as cpuid and xgetbv gave them. A leaf
 * beyond the CPU's maximum (leaf0.eax, ext0.eax) is ignored whatever it holds. */
struct cpu_raw {
	struct cpu_regs leaf0;          /* 0: the highest basic leaf, the vendor */
	struct cpu_regs leaf1;          /* 1: family/model/stepping, SSE3..AVX, OSXSAVE */
	struct cpu_regs leaf7;          /* 7.0: AVX2, AVX-512 F/DQ/CD/BW/VL, AMX */
	struct cpu_regs leaf7_1;        /* 7.1: AVX-512-BF16 */
	struct cpu_regs ext0;           /* 0x80000000: the highest extended leaf */
	struct cpu_regs brand[3];       /* 0x80000002..4: the brand string */
	uint64_t xcr0;                  /* XCR0; 0 when the OS has not set OSXSAVE */
};

/* The features that matter for the choice of kernel, one bit each. */
enum cpu_feature {
	CPU_SSE2 = 1u << 0,
	CPU_SSE3 = 1u << 1,
	CPU_SSSE3 = 1u << 2,
	CPU_SSE4_1 = 1u << 3,
	CPU_SSE4_2 = 1u << 4,
	CPU_AVX = 1u << 5,
	CPU_FMA = 1u << 6,
	CPU_AVX2 = 1u << 7,
	CPU_AVX512F = 1u << 8,
	CPU_AVX512CD = 1u << 9,
	CPU_AVX512BW = 1u << 10,
	CPU_AVX512DQ = 1u << 11,
	CPU_AVX512VL = 1u << 12,
	CPU_AVX512_BF16 = 1u << 13,
	CPU_AVX512_FP16 = 1u << 14,
	CPU_AMX_TILE = 1u << 15,
	CPU_AMX_BF16 = 1u << 16,
};
#define CPU_FEATURE_COUNT 17
/* AVX-512 as the SkylakeX kernels use it: Foundation, CD, BW, DQ, VL. */
#define CPU_AVX512_CORE (CPU_AVX512F | CPU_AVX512CD | CPU_AVX512BW | CPU_AVX512DQ | CPU_AVX512VL)

enum cpu_vendor {
	CPU_VENDOR_OTHER,
	CPU_VENDOR_INTEL,
	CPU_VENDOR_AMD,                 /* AuthenticAMD and HygonGenuine (Zen cores) */
};

struct cpu_info {
	enum cpu_vendor vendor;
	char vendor_id[13];             /* "GenuineIntel", "AuthenticAMD", ... */
	char brand[49];                 /* "Intel(R) Xeon(R) Platinum 8592+", spaces trimmed; "" if none */
	unsigned family, model, stepping;       /* as Linux shows them (extended fields folded in) */
	uint32_t advertised;            /* enum cpu_feature bits cpuid reports */
	uint32_t usable;                /* ... of which the OS saves the state (XCR0) */
};

/* This CPU's registers. -ENOTSUP on a machine that is not x86-64 (raw is
 * zeroed: cpu_decode then finds no features). */
int cpu_read(struct cpu_raw *raw);

/* Decode a record of registers. Pure. */
void cpu_decode(const struct cpu_raw *raw, struct cpu_info *out);

/* This machine, decoded once (thread-safe; the same answer every call). */
const struct cpu_info *cpu_this(void);

/* The name of one feature bit ("avx512_bf16"; Linux's /proc/cpuinfo names,
 * with sse3 for its "pni"), or NULL for a bit that is not one. */
const char *cpu_feature_name(uint32_t bit);

/* The names of the bits of mask, space-separated, into buf (cut at len;
 * "" for none). Returns the length the full text needs, as snprintf. */
size_t cpu_feature_list(uint32_t mask, char *buf, size_t len);

#endif
