/*
 * cpu.c - the CPU's features from cpuid and XCR0. See include/traind/cpu.h.
 *
 * The bits (Intel SDM vol. 2A, CPUID; AMD APM vol. 3, appendix E):
 *   leaf 1 ECX: SSE3 0, SSSE3 9, FMA 12, SSE4.1 19, SSE4.2 20, OSXSAVE 27, AVX 28
 *   leaf 1 EDX: SSE2 26
 *   leaf 7.0 EBX: AVX2 5, AVX512F 16, AVX512DQ 17, AVX512CD 28, AVX512BW 30, AVX512VL 31
 *   leaf 7.0 EDX: AMX-BF16 22, AVX512-FP16 23, AMX-TILE 24
 *   leaf 7.1 EAX: AVX512-BF16 5
 *   XCR0: SSE 1, AVX (YMM upper halves) 2, opmask 5, ZMM_Hi256 6, Hi16_ZMM 7,
 *         XTILECFG 17, XTILEDATA 18
 */
#include "traind/cpu.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#define XCR0_SSE (1u << 1)
#define XCR0_AVX (1u << 2)
#define XCR0_AVX512 ((1u << 5) | (1u << 6) | (1u << 7))
#define XCR0_AMX ((1u << 17) | (1u << 18))

static const char *const feature_names[CPU_FEATURE_COUNT] = {
	"sse2", "sse3", "ssse3", "sse4_1", "sse4_2", "avx", "fma", "avx2",
	"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16", "avx512_fp16",
	"amx_tile", "amx_bf16",
};

#if defined(__x86_64__)
static void leaf(struct cpu_regs *r, uint32_t id, uint32_t sub)
{
	__cpuid_count(id, sub, r->eax, r->ebx, r->ecx, r->edx);
}

int cpu_read(struct cpu_raw *raw)
{
	memset(raw, 0, sizeof(*raw));
	leaf(&raw->leaf0, 0, 0);
	if (raw->leaf0.eax >= 1)
		leaf(&raw->leaf1, 1, 0);
	if (raw->leaf0.eax >= 7) {
		leaf(&raw->leaf7, 7, 0);
		if (raw->leaf7.eax >= 1)
			leaf(&raw->leaf7_1, 7, 1);
	}
	leaf(&raw->ext0, 0x80000000u, 0);
	for (uint32_t i = 0; i < 3; i++)
		if (raw->ext0.eax >= 0x80000002u + i)
			leaf(&raw->brand[i], 0x80000002u + i, 0);
	if (raw->leaf1.ecx & (1u << 27)) {   /* OSXSAVE: xgetbv is allowed */
		uint32_t lo, hi;

		__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
		raw->xcr0 = ((uint64_t)hi << 32) | lo;
	}
	return 0;
}
#else
int cpu_read(struct cpu_raw *raw)
{
	memset(raw, 0, sizeof(*raw));
	return -ENOTSUP;
}
#endif

static bool bit(uint32_t reg, unsigned n)
{
	return (reg >> n) & 1u;
}

void cpu_decode(const struct cpu_raw *raw, struct cpu_info *out)
{
	uint32_t max = raw->leaf0.eax, a = 0;
	struct cpu_regs l1 = { 0 }, l7 = { 0 }, l71 = { 0 };
	uint32_t os = 0, base_family, base_model;

	memset(out, 0, sizeof(*out));
	memcpy(out->vendor_id, &raw->leaf0.ebx, 4);
	memcpy(out->vendor_id + 4, &raw->leaf0.edx, 4);
	memcpy(out->vendor_id + 8, &raw->leaf0.ecx, 4);
	out->vendor_id[12] = '\0';
	for (size_t i = 0; i < 12; i++)
		if (out->vendor_id[i] && (out->vendor_id[i] < 0x20 || out->vendor_id[i] > 0x7e))
			out->vendor_id[i] = '?';
	if (strcmp(out->vendor_id, "GenuineIntel") == 0)
		out->vendor = CPU_VENDOR_INTEL;
	else if (strcmp(out->vendor_id, "AuthenticAMD") == 0 || strcmp(out->vendor_id, "HygonGenuine") == 0)
		out->vendor = CPU_VENDOR_AMD;

	if (max >= 1)
		l1 = raw->leaf1;
	if (max >= 7) {
		l7 = raw->leaf7;
		if (l7.eax >= 1)
			l71 = raw->leaf7_1;
	}

	base_family = (l1.eax >> 8) & 0xf;
	base_model = (l1.eax >> 4) & 0xf;
	out->family = base_family == 0xf ? base_family + ((l1.eax >> 20) & 0xff) : base_family;
	out->model = base_family == 0x6 || base_family == 0xf ? base_model | (((l1.eax >> 16) & 0xf) << 4)
							      : base_model;
	out->stepping = l1.eax & 0xf;

	if (bit(l1.edx, 26))
		a |= CPU_SSE2;
	if (bit(l1.ecx, 0))
		a |= CPU_SSE3;
	if (bit(l1.ecx, 9))
		a |= CPU_SSSE3;
	if (bit(l1.ecx, 12))
		a |= CPU_FMA;
	if (bit(l1.ecx, 19))
		a |= CPU_SSE4_1;
	if (bit(l1.ecx, 20))
		a |= CPU_SSE4_2;
	if (bit(l1.ecx, 28))
		a |= CPU_AVX;
	if (bit(l7.ebx, 5))
		a |= CPU_AVX2;
	if (bit(l7.ebx, 16))
		a |= CPU_AVX512F;
	if (bit(l7.ebx, 17))
		a |= CPU_AVX512DQ;
	if (bit(l7.ebx, 28))
		a |= CPU_AVX512CD;
	if (bit(l7.ebx, 30))
		a |= CPU_AVX512BW;
	if (bit(l7.ebx, 31))
		a |= CPU_AVX512VL;
	if (bit(l7.edx, 22))
		a |= CPU_AMX_BF16;
	if (bit(l7.edx, 23))
		a |= CPU_AVX512_FP16;
	if (bit(l7.edx, 24))
		a |= CPU_AMX_TILE;
	if (bit(l71.eax, 5))
		a |= CPU_AVX512_BF16;
	out->advertised = a;

	/* What the OS saves. SSE state is always there on x86-64; the rest
	 * only with OSXSAVE and its XCR0 bits. */
	os = CPU_SSE2 | CPU_SSE3 | CPU_SSSE3 | CPU_SSE4_1 | CPU_SSE4_2;
	if (bit(l1.ecx, 27) && (raw->xcr0 & (XCR0_SSE | XCR0_AVX)) == (XCR0_SSE | XCR0_AVX)) {
		os |= CPU_AVX | CPU_FMA | CPU_AVX2;
		if ((raw->xcr0 & XCR0_AVX512) == XCR0_AVX512)
			os |= CPU_AVX512_CORE | CPU_AVX512_BF16 | CPU_AVX512_FP16;
		if ((raw->xcr0 & XCR0_AMX) == XCR0_AMX)
			os |= CPU_AMX_TILE | CPU_AMX_BF16;
	}
	out->usable = a & os;

	for (size_t i = 0; i < 3; i++) {
		if (raw->ext0.eax < 0x80000002u + i)
			break;
		memcpy(out->brand + 16 * i, &raw->brand[i], 16);
	}
	out->brand[48] = '\0';
	{
		/* Trim the padding (leading spaces on older Intel parts, trailing on
		 * AMD's), and keep only printable ASCII. */
		char *s = out->brand, *e;

		for (char *p = s; *p; p++)
			if (*p < 0x20 || *p > 0x7e)
				*p = ' ';
		while (*s == ' ')
			s++;
		memmove(out->brand, s, strlen(s) + 1);
		e = out->brand + strlen(out->brand);
		while (e > out->brand && e[-1] == ' ')
			*--e = '\0';
	}
}

static struct cpu_info this_cpu;
static pthread_once_t this_once = PTHREAD_ONCE_INIT;

static void read_this(void)
{
	struct cpu_raw raw;

	cpu_read(&raw);
	cpu_decode(&raw, &this_cpu);
}

const struct cpu_info *cpu_this(void)
{
	pthread_once(&this_once, read_this);
	return &this_cpu;
}

const char *cpu_feature_name(uint32_t b)
{
	for (unsigned i = 0; i < CPU_FEATURE_COUNT; i++)
		if (b == (1u << i))
			return feature_names[i];
	return NULL;
}

size_t cpu_feature_list(uint32_t mask, char *buf, size_t len)
{
	size_t used = 0;

	if (len)
		buf[0] = '\0';
	for (unsigned i = 0; i < CPU_FEATURE_COUNT; i++) {
		int n;

		if (!(mask & (1u << i)))
			continue;
		n = snprintf(used < len ? buf + used : NULL, used < len ? len - used : 0, "%s%s",
			     used ? " " : "", feature_names[i]);
		used += (size_t)n;
	}
	return used;
}
