/*
 * test-blaskernel.c - the CPU's features from cpuid registers (cpu.c) and
 * the OpenBLAS kernel they choose (blaskernel.c), on registers recorded on
 * real machines: this development VM, and dumps from InstLatx64's
 * collection (github.com/InstLatx64/InstLatx64, the file named at each
 * record). The dumps have no XCR0; each record takes what Linux enables on
 * that CPU, leaf 0xD subleaf 0's EAX (the state components the CPU
 * supports: Linux turns on every user state it knows). Records with a
 * smaller XCR0 stand for an OS or hypervisor that does not save AVX-512 or
 * AVX state.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "traind/blaskernel.h"
#include "traind/cpu.h"

/* The registers, in the dumps' order: EAX-EBX-ECX-EDX. */
#define R(a, b, c, d) { 0x##a, 0x##b, 0x##c, 0x##d }

struct record {
	const char *what;
	struct cpu_raw raw;
	/* expected */
	const char *vendor_id, *brand;
	unsigned family, model;
	const char *kernel;
	const char *why;        /* a part of blaskernel_auto's reason */
};

static const struct record records[] = {
	{
		/* This machine: KVM's "Intel(R) Xeon(R) Processor" (family 6 model
		 * 167) with Sapphire Rapids' features (AVX-512, BF16, AMX); read
		 * with cpuid/xgetbv here. OpenBLAS 0.3.21 picks SkylakeX itself. */
		"the development VM (KVM Xeon, family 6 model 167)",
		{ R(00000024, 756E6547, 6C65746E, 49656E69), R(000A0671, 01020800, FFFA3203, 1F8BFBFF),
		  R(00000002, F1BF2FFB, 1A415F46, 23C14010), R(00001C30, 00000000, 00000000, 00084000),
		  R(80000008, 00000000, 00000000, 00000000),
		  { R(65746E49, 2952286C, 6F655820, 2952286E), R(6F725020, 73736563, 0000726F, 00000000),
		    R(00000000, 00000000, 00000000, 00000000) },
		  0x600E7 },
		"GenuineIntel", "Intel(R) Xeon(R) Processor", 6, 167, "SkylakeX", "AVX-512 F/CD/BW/DQ/VL usable",
	},
	{
		/* GenuineIntel00C06F2_EmeraldRapids_01_CPUID.txt: the CPU
		 * (family 6 model 207), on which 0.3.21's model table falls
		 * through to Prescott. */
		"Emerald Rapids Xeon (family 6 model 207)",
		{ R(00000020, 756E6547, 6C65746E, 49656E69), R(000C06F2, 00800800, 7FFEFBFF, BFEBFBFF),
		  R(00000002, F3BFBFFF, FB417FEE, FFDD4432), R(00001C30, 00000000, 00000000, 00040000),
		  R(80000008, 00000000, 00000000, 00000000),
		  { R(45544E49, 2952284C, 4F455820, 2952284E), R(4C4F4720, 35352044, 002B3032, 00000000),
		    R(00000000, 00000000, 00000000, 00000000) },
		  0x602E7 },
		"GenuineIntel", "INTEL(R) XEON(R) GOLD 5520+", 6, 207, "SkylakeX", "AVX-512 F/CD/BW/DQ/VL usable",
	},
	{
		/* AuthenticAMD0B00F21_K20_Turin_01_CPUID.txt: Zen 5. */
		"Zen 5 EPYC 9655 (Turin)",
		{ R(00000010, 68747541, 444D4163, 69746E65), R(00B00F21, 00400800, 7EFA320B, 178BFBFF),
		  R(00000001, F1BF97AB, 19415FCE, 10000110), R(00000030, 00000000, 00000000, 00000000),
		  R(80000028, 68747541, 444D4163, 69746E65),
		  { R(20444D41, 43595045, 35363920, 36392035), R(726F432D, 72502065, 7365636F, 20726F73),
		    R(20202020, 20202020, 20202020, 00202020) },
		  0x2E7 },
		"AuthenticAMD", "AMD EPYC 9655 96-Core Processor", 0x1a, 0x02, "SkylakeX",
		"AVX-512 F/CD/BW/DQ/VL usable",
	},
	{
		/* The same Zen 5 where the OS or hypervisor does not save AVX-512
		 * state (XCR0 without opmask/ZMM): its AVX2 kernel. */
		"Zen 5 without AVX-512 state in XCR0",
		{ R(00000010, 68747541, 444D4163, 69746E65), R(00B00F21, 00400800, 7EFA320B, 178BFBFF),
		  R(00000001, F1BF97AB, 19415FCE, 10000110), R(00000030, 00000000, 00000000, 00000000),
		  R(80000028, 68747541, 444D4163, 69746E65),
		  { R(20444D41, 43595045, 35363920, 36392035), R(726F432D, 72502065, 7365636F, 20726F73),
		    R(20202020, 20202020, 20202020, 00202020) },
		  0x207 },
		"AuthenticAMD", "AMD EPYC 9655 96-Core Processor", 0x1a, 0x02, "Haswell",
		"the CPU also has avx512f avx512cd avx512bw avx512dq avx512vl, but the OS does not save",
	},
	{
		/* AuthenticAMD0A10F11_K19_Genoa_01_CPUID.txt: Zen 4. */
		"Zen 4 EPYC 9654 (Genoa)",
		{ R(00000010, 68747541, 444D4163, 69746E65), R(00A10F11, 00C00800, 7EFA320B, 178BFBFF),
		  R(00000001, F1BF97A9, 00415FCE, 10000010), R(00000020, 00000000, 00000000, 00000000),
		  R(80000028, 68747541, 444D4163, 69746E65),
		  { R(20444D41, 43595045, 35363920, 36392034), R(726F432D, 72502065, 7365636F, 20726F73),
		    R(20202020, 20202020, 20202020, 00202020) },
		  0x2E7 },
		"AuthenticAMD", "AMD EPYC 9654 96-Core Processor", 0x19, 0x11, "SkylakeX",
		"AVX-512 F/CD/BW/DQ/VL usable",
	},
	{
		/* AuthenticAMD0A20F10_K19_Vermeer2_CPUID.txt: Zen 3, AVX2 only. */
		"Zen 3 Ryzen 9 5900X",
		{ R(00000010, 68747541, 444D4163, 69746E65), R(00A20F10, 00180800, 7ED8320B, 178BFBFF),
		  R(00000000, 219C97A9, 0040068C, 00000010), R(00000000, 00000000, 00000000, 00000000),
		  R(80000023, 68747541, 444D4163, 69746E65),
		  { R(20444D41, 657A7952, 2039206E, 30303935), R(32312058, 726F432D, 72502065, 7365636F),
		    R(20726F73, 20202020, 20202020, 00202020) },
		  0x207 },
		"AuthenticAMD", "AMD Ryzen 9 5900X 12-Core Processor", 0x19, 0x21, "Haswell",
		"AVX2 and FMA usable",
	},
	{
		/* GenuineIntel00306C3_Haswell_CPUID.txt. */
		"Haswell Core i7-4770",
		{ R(0000000D, 756E6547, 6C65746E, 49656E69), R(000306C3, 00100800, 7FFAFBFF, BFEBFBFF),
		  R(00000000, 000027AB, 00000000, 00000000), R(00000000, 00000000, 00000000, 00000000),
		  R(80000008, 00000000, 00000000, 00000000),
		  { R(65746E49, 2952286C, 726F4320, 4D542865), R(37692029, 3737342D, 50432030, 20402055),
		    R(30342E33, 007A4847, 00000000, 00000000) },
		  0x7 },
		"GenuineIntel", "Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz", 6, 60, "Haswell", "AVX2 and FMA usable",
	},
	{
		/* The same Haswell booted with AVX off (no OSXSAVE: XCR0 cannot
		 * even be read): SSE4.2 is what is left. */
		"Haswell without OSXSAVE",
		{ R(0000000D, 756E6547, 6C65746E, 49656E69), R(000306C3, 00100800, 77FAFBFF, BFEBFBFF),
		  R(00000000, 000027AB, 00000000, 00000000), R(00000000, 00000000, 00000000, 00000000),
		  R(80000008, 00000000, 00000000, 00000000),
		  { R(65746E49, 2952286C, 726F4320, 4D542865), R(37692029, 3737342D, 50432030, 20402055),
		    R(30342E33, 007A4847, 00000000, 00000000) },
		  0 },
		"GenuineIntel", "Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz", 6, 60, "Nehalem",
		"the CPU also has avx avx2, but the OS does not save",
	},
	{
		/* GenuineIntel00206A7_SandyBridge_CPUID.txt: AVX, no AVX2. The
		 * brand string starts with padding. */
		"Sandy Bridge Core i5-2400",
		{ R(0000000D, 756E6547, 6C65746E, 49656E69), R(000206A7, 00100800, 1FBAE3FF, BFEBFBFF),
		  R(00000000, 00000000, 00000000, 00000000), R(00000000, 00000000, 00000000, 00000000),
		  R(80000008, 00000000, 00000000, 00000000),
		  { R(20202020, 20202020, 65746E49, 2952286C), R(726F4320, 4D542865, 35692029, 3034322D),
		    R(50432030, 20402055, 30312E33, 007A4847) },
		  0x7 },
		"GenuineIntel", "Intel(R) Core(TM) i5-2400 CPU @ 3.10GHz", 6, 42, "Sandybridge",
		"AVX usable, no AVX2/FMA",
	},
	{
		/* GenuineIntel0000F41_P4_Prescott_CPUID.txt: an old SSE3-only
		 * 64-bit Pentium 4 core (a Celeron); its highest basic leaf is 5,
		 * so whatever leaf 7 held must not count (garbage put there). */
		"Pentium 4 Prescott-core Celeron (SSE3 only)",
		{ R(00000005, 756E6547, 6C65746E, 49656E69), R(00000F41, 00010800, 0000651D, BFEBFBFF),
		  R(00000000, FFFFFFFF, FFFFFFFF, FFFFFFFF), R(FFFFFFFF, 00000000, 00000000, 00000000),
		  R(80000008, 00000000, 00000000, 00000000),
		  { R(20202020, 20202020, 20202020, 20202020), R(65746E49, 2952286C, 6C654320, 6E6F7265),
		    R(20295228, 20555043, 33352E32, 007A4847) },
		  0 },
		"GenuineIntel", "Intel(R) Celeron(R) CPU 2.53GHz", 15, 4, "Prescott", "the x86-64 baseline kernel",
	},
};

static const struct record *find_record(const char *what)
{
	for (size_t i = 0; i < sizeof(records) / sizeof(records[0]); i++)
		if (strncmp(records[i].what, what, strlen(what)) == 0)
			return &records[i];
	fail_msg("no record %s", what);
	return NULL;
}

/* Each record: its vendor, brand, family/model, and the kernel with why. */
static void test_recorded_cpus(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(records) / sizeof(records[0]); i++) {
		const struct record *r = &records[i];
		struct cpu_info cpu;
		char why[BLASKERNEL_TEXT_MAX];
		const char *kernel;

		cpu_decode(&r->raw, &cpu);
		kernel = blaskernel_auto(&cpu, why, sizeof(why));
		print_message("%-48s %-12s %s\n", r->what, kernel, why);
		assert_string_equal(cpu.vendor_id, r->vendor_id);
		assert_string_equal(cpu.brand, r->brand);
		assert_int_equal(cpu.family, r->family);
		assert_int_equal(cpu.model, r->model);
		assert_string_equal(kernel, r->kernel);
		if (!strstr(why, r->why))
			fail_msg("%s: why '%s' does not say '%s'", r->what, why, r->why);
		/* the kernel auto picks always runs there */
		assert_true(blaskernel_runs_on(kernel, &cpu, NULL, 0));
	}
}

/* The features, one by one, where they matter. */
static void test_features(void **state)
{
	struct cpu_info cpu;
	char list[256];

	(void)state;
	cpu_decode(&find_record("Emerald")->raw, &cpu);
	assert_int_equal(cpu.vendor, CPU_VENDOR_INTEL);
	assert_int_equal(cpu.usable & CPU_AVX512_CORE, CPU_AVX512_CORE);
	assert_true(cpu.usable & CPU_AVX512_BF16);
	assert_true(cpu.usable & CPU_AMX_TILE);
	assert_true(cpu.usable & CPU_AMX_BF16);
	assert_true(cpu.usable & CPU_FMA);

	/* Zen 4 and 5 have AVX-512-BF16 (leaf 7.1 EAX bit 5), no AMX */
	cpu_decode(&find_record("Zen 4")->raw, &cpu);
	assert_int_equal(cpu.vendor, CPU_VENDOR_AMD);
	assert_true(cpu.usable & CPU_AVX512_BF16);
	assert_false(cpu.advertised & CPU_AMX_TILE);
	cpu_decode(&find_record("Zen 3")->raw, &cpu);
	assert_false(cpu.advertised & (CPU_AVX512F | CPU_AVX512_BF16));
	assert_true(cpu.usable & CPU_AVX2);

	/* advertised but not saved by the OS */
	cpu_decode(&find_record("Zen 5 without")->raw, &cpu);
	assert_int_equal(cpu.advertised & CPU_AVX512_CORE, CPU_AVX512_CORE);
	assert_int_equal(cpu.usable & (CPU_AVX512_CORE | CPU_AVX512_BF16), 0);
	assert_true(cpu.usable & CPU_AVX2);

	/* leaves above the CPU's maximum are not read */
	cpu_decode(&find_record("Pentium")->raw, &cpu);
	assert_int_equal(cpu.advertised, CPU_SSE2 | CPU_SSE3);
	assert_int_equal(cpu.usable, CPU_SSE2 | CPU_SSE3);
	assert_int_equal(cpu_feature_list(cpu.usable, list, sizeof(list)), strlen("sse2 sse3"));
	assert_string_equal(list, "sse2 sse3");
	/* cut short, as snprintf */
	assert_int_equal(cpu_feature_list(cpu.usable, list, 6), strlen("sse2 sse3"));
	assert_string_equal(list, "sse2 ");
	assert_string_equal(cpu_feature_name(CPU_AVX512_BF16), "avx512_bf16");
	assert_null(cpu_feature_name(3));
}

/* A pin: the names, and what the CPU can run. */
static void test_pins(void **state)
{
	struct cpu_info haswell, zen5, zen4, p4;
	char missing[128];

	(void)state;
	cpu_decode(&find_record("Haswell Core")->raw, &haswell);
	cpu_decode(&find_record("Zen 5 EPYC")->raw, &zen5);
	cpu_decode(&find_record("Zen 4")->raw, &zen4);
	cpu_decode(&find_record("Pentium")->raw, &p4);
	assert_string_equal(blaskernel_lookup("skylakex"), "SkylakeX");
	assert_string_equal(blaskernel_lookup("PRESCOTT"), "Prescott");
	assert_null(blaskernel_lookup("Bulldozer"));     /* FMA4/XOP: SIGILL elsewhere */
	assert_null(blaskernel_lookup("auto"));
	assert_null(blaskernel_lookup(""));
	assert_false(blaskernel_runs_on("SkylakeX", &haswell, missing, sizeof(missing)));
	assert_string_equal(missing, "avx512f avx512cd avx512bw avx512dq avx512vl");
	assert_true(blaskernel_runs_on("Haswell", &haswell, missing, sizeof(missing)));
	assert_string_equal(missing, "");
	assert_true(blaskernel_runs_on("Prescott", &haswell, NULL, 0));
	assert_true(blaskernel_runs_on("Haswell", &zen5, NULL, 0));
	assert_true(blaskernel_runs_on("Cooperlake", &zen5, NULL, 0));
	assert_true(blaskernel_runs_on("Cooperlake", &zen4, NULL, 0));
	assert_false(blaskernel_runs_on("Cooperlake", &haswell, NULL, 0));
	assert_false(blaskernel_runs_on("Sandybridge", &p4, missing, sizeof(missing)));
	assert_string_equal(missing, "avx");
	assert_false(blaskernel_runs_on("Nosuch", &zen5, NULL, 0));
	assert_non_null(strstr(blaskernel_names(), "SkylakeX"));
	assert_non_null(strstr(blaskernel_names(), "Prescott"));
}

/* This machine: cpu_this() is cpu_read + cpu_decode, and auto's pick runs
 * here. Without blaskernel_start, the state describes OpenBLAS's own pick. */
static void test_this_machine(void **state)
{
	struct cpu_raw raw;
	struct cpu_info cpu;
	const struct blaskernel_state *b;

	(void)state;
	cpu_read(&raw);
	cpu_decode(&raw, &cpu);
	assert_memory_equal(&cpu, cpu_this(), sizeof(cpu));
	assert_true(blaskernel_runs_on(blaskernel_auto(&cpu, NULL, 0), &cpu, NULL, 0));
	b = blaskernel_state();
	assert_true(strlen(b->in_use) > 0);
	assert_true(strlen(b->why) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recorded_cpus),
		cmocka_unit_test(test_features),
		cmocka_unit_test(test_pins),
		cmocka_unit_test(test_this_machine),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
