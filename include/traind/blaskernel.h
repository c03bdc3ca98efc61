/*
 * blaskernel.h - which OpenBLAS kernel this process runs, and why.
 *
 * OpenBLAS built for many CPUs (DYNAMIC_ARCH, as Debian's) picks its kernel
 * once, in its library constructor, before main: from OPENBLAS_CORETYPE when
 * that is set, else from its table of CPU models. Debian 12's 0.3.21 does
 * not know newer models: an Emerald Rapids Xeon (family 6 model 207) falls
 * through to the 2004 SSE3 kernel Prescott, 5x slower than SkylakeX there.
 * traind picks by features instead (blaskernel_auto: what the CPU and its OS
 * can run, never the model number) and makes OpenBLAS load that kernel:
 * blaskernel_start, at the top of each program's main, re-executes the
 * program once with OPENBLAS_CORETYPE set. The same pid, argv, environment
 * and inherited descriptors go on (so systemd's LISTEN_FDS/LISTEN_PID and
 * NOTIFY_SOCKET keep working); only the image is loaded again.
 *
 * Why a re-exec and not loading OpenBLAS with dlopen after setting the
 * variable: every program links -lopenblas and calls cblas_* and
 * openblas_* directly, so the library (and its constructor) is loaded
 * before main. dlopen would mean dropping that link and reaching every BLAS
 * symbol through dlsym in every program, or a second OpenBLAS in the
 * process beside the first (two thread pools; openblas_set_num_threads
 * acting on one of them). A re-exec changes nothing else: one execve (a
 * few ms) per start, and only when the kernel must change. The arguments
 * passed on are main's argv; getopt_long's reordering of it is harmless, as
 * it only moves operands behind the options.
 *
 * What wins, first to last:
 *   1. OPENBLAS_CORETYPE from the environment (a unit drop-in, a shell): it
 *      is OpenBLAS's own setting and traind never overrides it.
 *   2. A pin: --blas-kernel NAME (the programs' flag) or TRAIND_BLAS_KERNEL;
 *      NAME "openblas" keeps OpenBLAS's own pick, "auto" is the default.
 *   3. auto: blaskernel_auto on this CPU.
 * The choice is exported (OPENBLAS_CORETYPE and TRAIND_BLAS_CHOICE, see
 * blaskernel.c), so the processes a program starts (traind's MPI ranks) run
 * the same kernel and can tell why.
 *
 * The kernel is part of a job's numeric environment (numerics.h): a job
 * resumed under another kernel continues with a note, or is refused with
 * strict_numerics.
 *
 * Thread: blaskernel_start on the main thread before any other thread
 * exists (it may execve and it sets environment variables); the rest from
 * any thread (pure, or reading what blaskernel_start settled).
 */
#ifndef TRAIND_BLASKERNEL_H
#define TRAIND_BLASKERNEL_H

#include <stdbool.h>
#include <stddef.h>

#include "traind/cpu.h"
#include "traind/error.h"

#define BLASKERNEL_NAME_MAX 32
#define BLASKERNEL_TEXT_MAX 256

/* Why the kernel in use is the one it is. */
enum blaskernel_reason {
	BLASKERNEL_AUTO,        /* auto: by the CPU's features */
	BLASKERNEL_FLAG,        /* pinned by --blas-kernel */
	BLASKERNEL_PIN_ENV,     /* pinned by TRAIND_BLAS_KERNEL */
	BLASKERNEL_OPENBLAS,    /* OpenBLAS's own pick (--blas-kernel openblas) */
	BLASKERNEL_CORETYPE,    /* OPENBLAS_CORETYPE from the environment */
};

struct blaskernel_state {
	char in_use[BLASKERNEL_NAME_MAX];       /* openblas_get_corename() now */
	char wanted[BLASKERNEL_NAME_MAX];       /* what the reason asked for ("" for CORETYPE/OPENBLAS) */
	char openblas_pick[BLASKERNEL_NAME_MAX]; /* OpenBLAS's own pick on this CPU; "" if not known
						 * (OPENBLAS_CORETYPE was set before the program started) */
	enum blaskernel_reason reason;
	bool inherited;                         /* the choice came from a parent process (TRAIND_BLAS_CHOICE) */
	char why[BLASKERNEL_TEXT_MAX];          /* one line: "auto by features: AVX-512 F/CD/BW/DQ/VL usable" */
	char note[BLASKERNEL_TEXT_MAX];         /* something to warn about, else "" */
};

/* The best kernel of this OpenBLAS for the CPU's usable features (a static
 * name), and in why one line saying which features decided it. Pure. */
const char *blaskernel_auto(const struct cpu_info *cpu, char *why, size_t len);

/* The canonical name of a kernel traind knows ("skylakex" -> "SkylakeX"), or
 * NULL. */
const char *blaskernel_lookup(const char *name);

/* Whether the CPU can run the kernel (a known name); if not, the features it
 * lacks go into missing ("avx512f avx512bw ..."). Pure. */
bool blaskernel_runs_on(const char *kernel, const struct cpu_info *cpu, char *missing, size_t len);

/* The known names, comma-separated, for messages. */
const char *blaskernel_names(void);

/* Settle the kernel before anything else runs (see the top of this file).
 * argv: the program's arguments as main got them (before getopt permuted
 * them), NULL-terminated; pin: the --blas-kernel value or NULL (then
 * TRAIND_BLAS_KERNEL is read). Either returns (the kernel is settled: see
 * blaskernel_state) or re-executes the program and does not return. A pin
 * that names no kernel, or one this CPU cannot run, fails with -EINVAL and
 * a message naming it (a usage error). Only the first call does anything. */
int blaskernel_start(char *const argv[], const char *pin, struct tr_err *err);

/* What blaskernel_start settled (without it: OpenBLAS's own pick, or the
 * environment's OPENBLAS_CORETYPE). Never NULL. */
const struct blaskernel_state *blaskernel_state(void);

/* "auto", "flag", "env", "openblas", "coretype": the reason as a word for
 * JSON. */
const char *blaskernel_reason_name(enum blaskernel_reason r);

#endif
