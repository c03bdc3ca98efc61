/*
 * blaskernel.c - the OpenBLAS kernel by the CPU's features, and the start-up
 * step that makes OpenBLAS load it. See include/traind/blaskernel.h.
 *
 * The choice travels in two environment variables, set together:
 *   OPENBLAS_CORETYPE=KERNEL      what OpenBLAS's constructor reads
 *   TRAIND_BLAS_CHOICE=KERNEL:REASON:OWN:PID
 *                                 who set it: REASON auto/flag/env/openblas,
 *                                 OWN OpenBLAS's own pick (empty if unknown),
 *                                 PID the process that decided
 * A process that finds both, with PID its own, is the re-executed image
 * (the loop guard: it never re-executes again); with another PID it is a
 * child of a traind program (an MPI rank) and keeps the parent's choice. An
 * OPENBLAS_CORETYPE without a matching TRAIND_BLAS_CHOICE is the user's.
 */
#include "traind/blaskernel.h"

#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CHOICE_ENV "TRAIND_BLAS_CHOICE"
#define CORETYPE_ENV "OPENBLAS_CORETYPE"
#define PIN_ENV "TRAIND_BLAS_KERNEL"

/* The kernels of OpenBLAS 0.3.21 (x86-64, DYNAMIC_ARCH) traind chooses among
 * or lets a user pin, with the features their code needs. Left out: the
 * AMD-only kernels that use 3DNow!, FMA4 or XOP (Opteron, Bulldozer ...
 * Excavator), which crash with SIGILL on other CPUs. Cooperlake is
 * SkylakeX's sgemm with other blocking (param.h: P 640/Q 320 against
 * 448/448) plus the AVX-512-BF16 sbgemm; 0.3.21's OPENBLAS_CORETYPE table
 * stops before it (force_coretype loops to 24), so asking for it by name
 * reaches it only through OpenBLAS's own fallback, which picks it on a CPU
 * with AVX-512-BF16. */
static const struct kernel {
	const char *name;
	uint32_t needs;
} kernels[] = {
	{ "Cooperlake", CPU_AVX512_CORE | CPU_AVX512_BF16 },
	{ "SkylakeX", CPU_AVX512_CORE },
	{ "Haswell", CPU_AVX2 | CPU_FMA },
	{ "Zen", CPU_AVX2 | CPU_FMA },
	{ "Sandybridge", CPU_AVX },
	{ "Nehalem", CPU_SSE4_2 },
	{ "Dunnington", CPU_SSE4_1 },
	{ "Penryn", CPU_SSE4_1 },
	{ "Core2", CPU_SSSE3 },
	{ "Atom", CPU_SSSE3 },
	{ "Prescott", CPU_SSE3 },
};

/* auto: the first row whose features are all usable (and vendor matches,
 * where one is named) wins. Features, not model numbers: a CPU OpenBLAS
 * 0.3.21 has never heard of gets the kernel its instruction set allows.
 *
 * - AVX-512 (F/CD/BW/DQ/VL) -> SkylakeX, also with AVX-512-BF16: Cooperlake
 *   runs the same sgemm microkernel with other blocking, measured no faster
 *   for float32 on an AVX-512-BF16 Xeon (bench-engine --kernels; doc/
 *   blas-kernel.md), it cannot be named in 0.3.21's OPENBLAS_CORETYPE, and
 *   SkylakeX gives every AVX-512 machine of a fleet the same bits.
 * - The same row covers AMD Zen 4 and Zen 5 (AVX-512): upstream OpenBLAS
 *   maps both to its AVX-512 kernels (Zen 4 in 0.3.21's table, Zen 5 through
 *   its fallback by features).
 *   Zen 4 executes 512-bit operations in two 256-bit halves, so SkylakeX
 *   against Zen/Haswell there is a measurement to make (bench-engine
 *   --kernels); should Zen/Haswell win, add the row
 *   { CPU_AVX512_CORE, CPU_VENDOR_AMD, "Zen", ... } above this one.
 * - AVX2 + FMA -> Haswell, on AMD too. Zen (OpenBLAS's own pick for Zen 1-3)
 *   is Haswell's kernels with other blocking, measured no faster (on Intel:
 *   we have no AMD machine here); Haswell is what OpenBLAS's fallback gives
 *   the Zen 5 machines whose AVX-512 a hypervisor hides (so their stored
 *   jobs keep their bits) and gives AMD and Intel AVX2 machines the same bits.
 *   Should Zen win on AMD, add { CPU_AVX2 | CPU_FMA, CPU_VENDOR_AMD, "Zen" }.
 * - then AVX -> Sandybridge, SSE4.2 -> Nehalem, SSSE3 -> Core2, else the
 *   x86-64 baseline Prescott. */
static const struct rule {
	uint32_t needs;
	enum cpu_vendor vendor;         /* CPU_VENDOR_OTHER: any vendor */
	const char *kernel;
	const char *because;
} rules[] = {
	{ CPU_AVX512_CORE, CPU_VENDOR_OTHER, "SkylakeX", "AVX-512 F/CD/BW/DQ/VL usable" },
	{ CPU_AVX2 | CPU_FMA, CPU_VENDOR_OTHER, "Haswell", "AVX2 and FMA usable" },
	{ CPU_AVX, CPU_VENDOR_OTHER, "Sandybridge", "AVX usable, no AVX2/FMA" },
	{ CPU_SSE4_2, CPU_VENDOR_OTHER, "Nehalem", "SSE4.2, no usable AVX" },
	{ CPU_SSSE3, CPU_VENDOR_OTHER, "Core2", "SSSE3, no SSE4.2" },
	{ 0, CPU_VENDOR_OTHER, "Prescott", "no SSSE3: the x86-64 baseline kernel" },
};

static struct blaskernel_state state;
static bool started;

const char *blaskernel_auto(const struct cpu_info *cpu, char *why, size_t len)
{
	const struct rule *r = NULL;

	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		r = &rules[i];
		if ((cpu->usable & r->needs) == r->needs &&
		    (r->vendor == CPU_VENDOR_OTHER || r->vendor == cpu->vendor))
			break;
	}
	if (why && len) {
		uint32_t lost = cpu->advertised & ~cpu->usable & (CPU_AVX512_CORE | CPU_AVX2 | CPU_AVX);

		if (lost) {
			char names[128];

			cpu_feature_list(lost, names, sizeof(names));
			snprintf(why, len, "%s (the CPU also has %s, but the OS does not save their registers)",
				 r->because, names);
		} else {
			snprintf(why, len, "%s", r->because);
		}
	}
	return r->kernel;
}

static const struct kernel *find(const char *name)
{
	for (size_t i = 0; name && i < sizeof(kernels) / sizeof(kernels[0]); i++)
		if (strcasecmp(kernels[i].name, name) == 0)
			return &kernels[i];
	return NULL;
}

const char *blaskernel_lookup(const char *name)
{
	const struct kernel *k = find(name);

	return k ? k->name : NULL;
}

bool blaskernel_runs_on(const char *kernel, const struct cpu_info *cpu, char *missing, size_t len)
{
	const struct kernel *k = find(kernel);
	uint32_t lack;

	if (!k)
		return false;
	lack = k->needs & ~cpu->usable;
	if (missing && len)
		cpu_feature_list(lack, missing, len);
	return lack == 0;
}

const char *blaskernel_names(void)
{
	static char names[256];

	if (!names[0]) {
		size_t used = 0;

		for (size_t i = sizeof(kernels) / sizeof(kernels[0]); i-- > 0;)
			used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", used ? ", " : "",
						 kernels[i].name);
	}
	return names;
}

const char *blaskernel_reason_name(enum blaskernel_reason r)
{
	switch (r) {
	case BLASKERNEL_AUTO: return "auto";
	case BLASKERNEL_FLAG: return "flag";
	case BLASKERNEL_PIN_ENV: return "env";
	case BLASKERNEL_OPENBLAS: return "openblas";
	case BLASKERNEL_CORETYPE: return "coretype";
	}
	return "?";
}

static bool reason_from_name(const char *s, enum blaskernel_reason *r)
{
	for (int i = BLASKERNEL_AUTO; i < BLASKERNEL_CORETYPE; i++) {
		if (strcmp(s, blaskernel_reason_name((enum blaskernel_reason)i)) == 0) {
			*r = (enum blaskernel_reason)i;
			return true;
		}
	}
	return false;
}

static const char *corename(void)
{
	const char *c = openblas_get_corename();

	return c && *c ? c : "unknown";
}

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* TRAIND_BLAS_CHOICE, parsed: KERNEL:REASON:OWN:PID. */
struct choice {
	char kernel[BLASKERNEL_NAME_MAX];
	enum blaskernel_reason reason;
	char own[BLASKERNEL_NAME_MAX];
	long pid;
};

static bool parse_choice(const char *s, struct choice *c)
{
	char buf[3 * BLASKERNEL_NAME_MAX + 32], *f[4], *p = buf, *end;
	int n = 0;

	if (!s || strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	while (n < 4 && p)
		f[n++] = strsep(&p, ":");
	if (n != 4 || p || !find(f[0]) || !reason_from_name(f[1], &c->reason) ||
	    strlen(f[2]) >= sizeof(c->own))
		return false;
	c->pid = strtol(f[3], &end, 10);
	if (*end || end == f[3] || c->pid <= 0)
		return false;
	copy(c->kernel, sizeof(c->kernel), find(f[0])->name);
	copy(c->own, sizeof(c->own), f[2]);
	return true;
}

/* Text from the environment, shown: printable ASCII only, cut short. */
static void shown(char *dst, size_t len, const char *src)
{
	size_t i = 0;

	for (; src[i] && i + 1 < len && i < BLASKERNEL_NAME_MAX; i++)
		dst[i] = src[i] >= 0x20 && src[i] <= 0x7e ? src[i] : '?';
	dst[i] = '\0';
}

static void set_why(const char *kernel)
{
	char because[160];

	switch (state.reason) {
	case BLASKERNEL_AUTO:
		blaskernel_auto(cpu_this(), because, sizeof(because));
		snprintf(state.why, sizeof(state.why), "auto by features: %s", because);
		break;
	case BLASKERNEL_FLAG:
		snprintf(state.why, sizeof(state.why), "pinned by --blas-kernel %s", kernel);
		break;
	case BLASKERNEL_PIN_ENV:
		snprintf(state.why, sizeof(state.why), "pinned by " PIN_ENV "=%s", kernel);
		break;
	case BLASKERNEL_OPENBLAS:
		snprintf(state.why, sizeof(state.why), "OpenBLAS's own pick (--blas-kernel openblas)");
		break;
	case BLASKERNEL_CORETYPE: {
		char v[BLASKERNEL_NAME_MAX + 1];

		shown(v, sizeof(v), kernel);
		snprintf(state.why, sizeof(state.why), CORETYPE_ENV "=%s from the environment", v);
		break;
	}
	}
}

/* After the kernel is settled: is it the one asked for? */
static void check_loaded(void)
{
	copy(state.in_use, sizeof(state.in_use), corename());
	if (state.wanted[0] && strcasecmp(state.wanted, state.in_use) != 0 && !state.note[0])
		snprintf(state.note, sizeof(state.note), "OpenBLAS was asked for %s and runs %s", state.wanted,
			 state.in_use);
}

static void export_choice(const char *kernel)
{
	char v[3 * BLASKERNEL_NAME_MAX + 32];

	snprintf(v, sizeof(v), "%s:%s:%s:%ld", kernel, blaskernel_reason_name(state.reason), state.openblas_pick,
		 (long)getpid());
	setenv(CORETYPE_ENV, kernel, 1);
	setenv(CHOICE_ENV, v, 1);
}

/* The pin: "" / NULL / auto -> NULL; "openblas"; or a kernel this CPU runs. */
static int check_pin(const char *pin, const char *source, const char **out, struct tr_err *err)
{
	char missing[128], usable[256];

	*out = NULL;
	if (!pin || !*pin || strcasecmp(pin, "auto") == 0)
		return 0;
	if (strcasecmp(pin, "openblas") == 0) {
		*out = "openblas";
		return 0;
	}
	if (!find(pin))
		return tr_err_set(err, -EINVAL, "%s: '%.*s' is not a kernel traind knows; use auto, openblas or one of %s",
				  source, tr_utf8_cut(pin, TR_QUOTE_MAX), pin, blaskernel_names());
	if (!blaskernel_runs_on(pin, cpu_this(), missing, sizeof(missing))) {
		cpu_feature_list(cpu_this()->usable, usable, sizeof(usable));
		return tr_err_set(err, -EINVAL, "%s: this CPU cannot run %s: it needs %s (usable here: %s)", source,
				  find(pin)->name, missing, usable[0] ? usable : "none");
	}
	*out = find(pin)->name;
	return 0;
}

int blaskernel_start(char *const argv[], const char *pin, struct tr_err *err)
{
	const char *coretype = getenv(CORETYPE_ENV), *want, *source = "--blas-kernel";
	enum blaskernel_reason reason = BLASKERNEL_FLAG;
	struct choice c;
	bool have_choice, pinned;
	int rc;

	if (started)
		return 0;
	if (pin && !*pin)
		return tr_err_set(err, -EINVAL, "--blas-kernel: empty; use auto, openblas or one of %s",
				  blaskernel_names());
	if (!pin) {
		pin = getenv(PIN_ENV);
		if (pin && !*pin)
			pin = NULL;
		source = PIN_ENV;
		reason = BLASKERNEL_PIN_ENV;
	}
	pinned = pin != NULL;
	rc = check_pin(pin, source, &want, err);
	if (rc < 0)
		return rc;
	if (!want)
		reason = BLASKERNEL_AUTO;
	else if (strcmp(want, "openblas") == 0)
		reason = BLASKERNEL_OPENBLAS;
#if !defined(__x86_64__)
	/* The table is x86-64's: elsewhere OpenBLAS's own pick stands. */
	if (reason == BLASKERNEL_AUTO)
		reason = BLASKERNEL_OPENBLAS;
	else if (reason != BLASKERNEL_OPENBLAS)
		return tr_err_set(err, -EINVAL, "%s: traind chooses among x86-64 kernels only; use auto or openblas here",
				  source);
#endif
	started = true;
	memset(&state, 0, sizeof(state));
	copy(state.in_use, sizeof(state.in_use), corename());

	have_choice = parse_choice(getenv(CHOICE_ENV), &c) && coretype && strcasecmp(coretype, c.kernel) == 0;
	if (have_choice && (c.pid == (long)getpid() || !pinned)) {
		/* The re-executed image, or a child keeping its parent's choice. */
		state.reason = c.reason;
		state.inherited = c.pid != (long)getpid();
		copy(state.wanted, sizeof(state.wanted), c.reason == BLASKERNEL_OPENBLAS ? "" : c.kernel);
		copy(state.openblas_pick, sizeof(state.openblas_pick), c.own);
		set_why(c.kernel);
		if (state.inherited) {
			size_t used = strlen(state.why);

			snprintf(state.why + used, sizeof(state.why) - used, " (decided by the parent process %ld)",
				 c.pid);
		}
		check_loaded();
		return 0;
	}
	if (coretype && !have_choice) {
		/* The user's: it wins. */
		state.reason = BLASKERNEL_CORETYPE;
		set_why(coretype);
		if (want) {
			char v[BLASKERNEL_NAME_MAX + 1];

			shown(v, sizeof(v), coretype);
			snprintf(state.note, sizeof(state.note),
				 "%s %s is not applied: " CORETYPE_ENV "=%s from the environment wins", source, want, v);
		}
		check_loaded();
		return 0;
	}

	/* Ours to decide. OpenBLAS loaded without OPENBLAS_CORETYPE, or (a pin
	 * in a child of a traind program) with the parent's: its own pick is
	 * the one loaded, or the one the parent recorded. */
	if (have_choice)
		copy(state.openblas_pick, sizeof(state.openblas_pick), c.own);
	else
		copy(state.openblas_pick, sizeof(state.openblas_pick), corename());
	state.reason = reason;
	if (reason == BLASKERNEL_AUTO)
		want = blaskernel_auto(cpu_this(), NULL, 0);
	else if (reason == BLASKERNEL_OPENBLAS)
		want = state.openblas_pick;
	copy(state.wanted, sizeof(state.wanted), reason == BLASKERNEL_OPENBLAS ? "" : want);
	set_why(want);
	export_choice(want);
	if (strcasecmp(want, corename()) != 0 && argv && argv[0]) {
		execv("/proc/self/exe", argv);
		/* Still here: go on with what is loaded, and say so. */
		snprintf(state.note, sizeof(state.note),
			 "could not re-execute to load %s (/proc/self/exe: %s); running %s", want, strerror(errno),
			 corename());
		unsetenv(CORETYPE_ENV);
		unsetenv(CHOICE_ENV);
	}
	check_loaded();
	return 0;
}

/* No blaskernel_start in this program (a unit test): describe what
 * OpenBLAS did on its own. */
static void describe_unstarted(void)
{
	const char *coretype = getenv(CORETYPE_ENV);

	state.reason = coretype ? BLASKERNEL_CORETYPE : BLASKERNEL_OPENBLAS;
	if (coretype)
		set_why(coretype);
	else
		snprintf(state.why, sizeof(state.why), "OpenBLAS's own pick (the program did not choose)");
	copy(state.in_use, sizeof(state.in_use), corename());
	if (!coretype)
		copy(state.openblas_pick, sizeof(state.openblas_pick), corename());
}

const struct blaskernel_state *blaskernel_state(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	if (!started)
		pthread_once(&once, describe_unstarted);
	return &state;
}
