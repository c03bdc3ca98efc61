/*
 * bench-mpi.c - per step, what a data-parallel job spends computing and what
 * it spends on the reduction, for the lesson's MLP (784-256-10, 203,530
 * parameters) and a wide one (784-4096-10, 3,256,330), on whatever ranks
 * mpirun gives it.
 *
 *   mpirun -n 1 build/bench/bench-mpi --threads 2 --shards 2   1 rank x 2 threads
 *   mpirun -n 2 build/bench/bench-mpi --threads 1              2 ranks x 1 thread
 *   tests/mpi/netns-run build/bench/bench-mpi --threads 1      2 ranks, one in each of
 *                                                              two network namespaces
 *                                                              (TCP over a veth)
 *   (as root add --allow-run-as-root to mpirun; the first two are
 *   also what `build/bench/bench-mpi` alone runs as a singleton with -n 1)
 *
 * The job's global batch B (--batch, 64) is split into S shards (--shards,
 * default the rank count R), S/R of them on each rank. One step on a rank:
 *
 *   compute   S/R times trainer_step of the engine on a batch of B/S with
 *             --threads threads: the real forward, backward and Adam step of
 *             the model on MNIST (so the optimizer's work, which every rank
 *             repeats in full, is in it). The slowest rank's time counts.
 *   gather    MPI_Allgather of each rank's S/R shard gradients (P float32
 *             each): every rank then holds all S.
 *   sum       the S gradients added in shard order, element by element: the
 *             fixed-order reduction traind uses, the same bits on any R.
 *   allreduce MPI_Allreduce(MPI_SUM) of one P-float gradient per rank, for
 *             comparison (MPI's order, not reproducible across R).
 *
 * The gradient buffers hold synthetic values of the model's size (the cost of
 * moving and adding them does not depend on the values). Each phase is timed
 * between barriers, --steps times after 3 warm-up steps; the medians are
 * printed with the bytes a rank receives per step and the bandwidth the
 * gather reached (received bytes / gather time), the reduction's share of
 * the step, and a checksum (FNV-1a) of the ordered sum: shard k's synthetic
 * gradient depends on k alone, so with the same --shards it is the same on
 * 1 rank or 2, on one machine or two. Every rank says where it runs (hostname, network namespace,
 * address) first. Needs MNIST (TRAIND_DATA_DIR, else data/).
 *
 * Options: --batch B (64), --shards S (R), --threads T (1), --steps N (20),
 * --hidden H[,H...] (256,4096: one MLP per width).
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <mpi.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "traind/blaskernel.h"
#include "traind/config.h"
#include "traind/dataset.h"
#include "traind/kernels.h"
#include "traind/trainer.h"

#define MAX_MODELS 8
#define LINE 512
#define WARMUP 3

struct opts {
	int batch, shards, threads, steps;
	int nhidden;
	int hidden[MAX_MODELS];
};

struct phase_times {
	double compute, gather, sum, allreduce; /* medians, seconds */
};

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int parse_opts(int argc, char **argv, int ranks, struct opts *o, char *why, size_t whylen)
{
	o->batch = 64;
	o->shards = ranks;
	o->threads = 1;
	o->steps = 20;
	o->nhidden = 2;
	o->hidden[0] = 256;
	o->hidden[1] = 4096;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int *dst = !strcmp(a, "--batch") ? &o->batch : !strcmp(a, "--shards") ? &o->shards
			 : !strcmp(a, "--threads") ? &o->threads : !strcmp(a, "--steps") ? &o->steps : NULL;

		if (!v && (dst || !strcmp(a, "--hidden"))) {
			snprintf(why, whylen, "%s needs a value", a);
			return -1;
		}
		if (dst) {
			char *end;
			long n = strtol(v, &end, 10);

			if (*end || n < 1 || n > 100000) {
				snprintf(why, whylen, "%s: '%s' is not a number from 1 to 100000", a, v);
				return -1;
			}
			*dst = (int)n;
			i++;
		} else if (!strcmp(a, "--hidden")) {
			char buf[256], *save = NULL;

			snprintf(buf, sizeof buf, "%s", v);
			o->nhidden = 0;
			for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				int h = atoi(tok);

				if (h < 1 || h > 65536 || o->nhidden == MAX_MODELS) {
					snprintf(why, whylen, "--hidden: '%s' is not up to %d widths of 1..65536",
						 v, MAX_MODELS);
					return -1;
				}
				o->hidden[o->nhidden++] = h;
			}
			if (!o->nhidden) {
				snprintf(why, whylen, "--hidden: no width in '%s'", v);
				return -1;
			}
			i++;
		} else {
			snprintf(why, whylen, "unknown option '%s' (--batch, --shards, --threads, --steps, --hidden)",
				 a);
			return -1;
		}
	}
	if (o->shards % ranks) {
		snprintf(why, whylen, "--shards %d is not a multiple of the %d ranks", o->shards, ranks);
		return -1;
	}
	if (o->batch % o->shards) {
		snprintf(why, whylen, "--batch %d does not split into %d equal shards", o->batch, o->shards);
		return -1;
	}
	return 0;
}

static void describe(char *line, int rank)
{
	char host[128] = "?", ns[48] = "?", addrs[96] = "";
	ssize_t n;
	struct ifaddrs *ifa = NULL;

	gethostname(host, sizeof host - 1);
	n = readlink("/proc/self/ns/net", ns, sizeof ns - 1);
	if (n > 0)
		ns[n] = '\0';
	if (getifaddrs(&ifa) == 0) {
		for (struct ifaddrs *p = ifa; p; p = p->ifa_next) {
			char a[INET_ADDRSTRLEN];
			size_t used = strlen(addrs);

			if (!p->ifa_addr || p->ifa_addr->sa_family != AF_INET || (p->ifa_flags & IFF_LOOPBACK))
				continue;
			inet_ntop(AF_INET, &((struct sockaddr_in *)p->ifa_addr)->sin_addr, a, sizeof a);
			snprintf(addrs + used, sizeof addrs - used, "%s%s", used ? "," : "", a);
		}
		freeifaddrs(ifa);
	}
	snprintf(line, LINE, "rank %d: host %s, %s, %s, pid %ld, OpenBLAS %s (%s)", rank, host, ns,
		 addrs[0] ? addrs : "-", (long)getpid(), blaskernel_state()->in_use, blaskernel_state()->why);
}

/* The medians of one model's phases on this rank (compute: the slowest
 * rank's, identical on every rank). Returns 0, or -1 with why set. */
static uint64_t fnv1a(const void *data, size_t n)
{
	const unsigned char *b = data;
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static int bench_model(const struct opts *o, int hidden, const struct dataset *ds, int rank, int ranks,
		       uint64_t *params, struct phase_times *pt, uint64_t *sum_check, char *why, size_t whylen)
{
	struct train_config cfg;
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	int local = o->shards / ranks, n = o->steps, rc = -1;
	size_t p;
	float *mine = NULL, *all = NULL, *sum = NULL, *red = NULL;
	double *tc = calloc((size_t)n, sizeof(double)), *tg = calloc((size_t)n, sizeof(double));
	double *ts = calloc((size_t)n, sizeof(double)), *ta = calloc((size_t)n, sizeof(double));

	config_defaults(&cfg);
	cfg.batch_size = (uint32_t)(o->batch / o->shards);
	cfg.threads = (uint32_t)o->threads;
	cfg.n_hidden = 1;
	cfg.hidden[0] = (uint32_t)hidden;
	if (!tc || !tg || !ts || !ta) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if (trainer_new(&t, &cfg, ds, &err) < 0) {
		snprintf(why, whylen, "hidden %d: %.200s", hidden, err.msg);
		goto out;
	}
	*params = trainer_count_params(&cfg, trainer_input_shape(ds), ds->classes);
	p = (size_t)*params;
	mine = malloc(sizeof(float) * p * (size_t)local);
	all = malloc(sizeof(float) * p * (size_t)o->shards);
	sum = malloc(sizeof(float) * p);
	red = malloc(sizeof(float) * p);
	if (!mine || !all || !sum || !red) {
		snprintf(why, whylen, "hidden %d: out of memory for %d gradients of %zu floats", hidden,
			 o->shards, p);
		goto out;
	}
	/* shard k's synthetic gradient depends on k only, so the ordered sum
	 * is the same on any rank count (its checksum shows it) */
	for (int k = 0; k < local; k++) {
		size_t shard = (size_t)rank * (size_t)local + (size_t)k;

		for (size_t i = 0; i < p; i++)
			mine[p * (size_t)k + i] = (float)((i * 2654435761u + shard * 40503u) % 1000) * 1e-6f - 5e-4f;
	}

	for (int s = -WARMUP; s < n; s++) {
		double t0, t1, mine_c, max_c;

		MPI_Barrier(MPI_COMM_WORLD);
		t0 = MPI_Wtime();
		for (int k = 0; k < local; k++) {
			if (trainer_epoch_done(t))
				trainer_end_epoch(t, NULL);
			if (trainer_step(t) < 0) {
				/* the other ranks wait in a collective: end them all */
				fprintf(stderr, "bench-mpi: rank %d: hidden %d: trainer_step failed\n", rank, hidden);
				MPI_Abort(MPI_COMM_WORLD, 1);
			}
		}
		mine_c = MPI_Wtime() - t0;
		MPI_Allreduce(&mine_c, &max_c, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);

		MPI_Barrier(MPI_COMM_WORLD);
		t0 = MPI_Wtime();
		/* rank r's shards are r*local .. r*local+local-1: in rank order
		 * the gathered buffer is in shard order */
		MPI_Allgather(mine, (int)(p * (size_t)local), MPI_FLOAT, all, (int)(p * (size_t)local), MPI_FLOAT,
			      MPI_COMM_WORLD);
		t1 = MPI_Wtime();
		memcpy(sum, all, sizeof(float) * p);
		for (int k = 1; k < o->shards; k++) {
			const float *g = all + p * (size_t)k;

			for (size_t i = 0; i < p; i++)
				sum[i] += g[i];
		}
		if (s >= 0) {
			tc[s] = max_c;
			tg[s] = t1 - t0;
			ts[s] = MPI_Wtime() - t1;
		}

		MPI_Barrier(MPI_COMM_WORLD);
		t0 = MPI_Wtime();
		MPI_Allreduce(mine, red, (int)p, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
		if (s >= 0)
			ta[s] = MPI_Wtime() - t0;
	}
	*sum_check = fnv1a(sum, sizeof(float) * p);
	pt->compute = median(tc, n);
	pt->gather = median(tg, n);
	pt->sum = median(ts, n);
	pt->allreduce = median(ta, n);
	rc = 0;
out:
	trainer_free(t);
	free(mine);
	free(all);
	free(sum);
	free(red);
	free(tc);
	free(tg);
	free(ts);
	free(ta);
	return rc;
}

int main(int argc, char **argv)
{
	int rank, ranks, rc = 0;
	struct opts o;
	char why[512] = "", line[LINE], dir[4096], *lines = NULL;
	const char *data = getenv("TRAIND_DATA_DIR");
	struct dataset *ds = NULL;
	struct tr_err err = { 0 };

	/* The kernel by the CPU's features (or OPENBLAS_CORETYPE); before
	 * MPI_Init, as this may run the benchmark again. */
	if (blaskernel_start(argv, NULL, &err) < 0) {
		fprintf(stderr, "bench-mpi: %s\n", err.msg);
		return 2;
	}
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &ranks);
	if (parse_opts(argc, argv, ranks, &o, why, sizeof why) < 0) {
		if (rank == 0)
			fprintf(stderr, "bench-mpi: %s\n", why);
		MPI_Finalize();
		return 2;
	}
	kernels_global_init();
	snprintf(dir, sizeof dir, "%s/mnist", data ? data : "data");
	if (dataset_load(&ds, dir, &err) < 0) {
		fprintf(stderr, "bench-mpi: rank %d: %s (set TRAIND_DATA_DIR)\n", rank, err.msg);
		MPI_Abort(MPI_COMM_WORLD, 1);
	}

	describe(line, rank);
	if (rank == 0)
		lines = malloc((size_t)ranks * LINE);
	MPI_Gather(line, LINE, MPI_CHAR, lines, LINE, MPI_CHAR, 0, MPI_COMM_WORLD);
	if (rank == 0) {
		printf("bench-mpi: %d rank%s x %d thread%s, %d shards of %d (batch %d), %d steps (median)\n", ranks,
		       ranks > 1 ? "s" : "", o.threads, o.threads > 1 ? "s" : "", o.shards, o.batch / o.shards,
		       o.batch, o.steps);
		for (int r = 0; r < ranks; r++)
			printf("  %s\n", lines + (size_t)r * LINE);
		printf("%-9s %9s %8s %10s %9s %7s %10s %9s %10s %9s %7s  %s\n", "model", "params", "grad MB",
		       "compute ms", "gather ms", "sum ms", "ordered ms", "allred ms", "recv MB/st", "MB/s", "reduce%",
		       "ordered sum");
		free(lines);
	}
	for (int m = 0; m < o.nhidden && !rc; m++) {
		struct phase_times pt = { 0 };
		uint64_t params = 0, sum_check = 0;
		int ok, all_ok;

		ok = bench_model(&o, o.hidden[m], ds, rank, ranks, &params, &pt, &sum_check, why, sizeof why) == 0;
		MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
		if (!all_ok) {
			if (!ok)
				fprintf(stderr, "bench-mpi: rank %d: %s\n", rank, why);
			rc = 1;
			break;
		}
		if (rank == 0) {
			double grad = (double)params * 4, recv = grad * (o.shards - o.shards / ranks);
			double ordered = pt.gather + pt.sum, step = pt.compute + ordered;
			char name[16];

			snprintf(name, sizeof name, "784-%d", o.hidden[m]);
			printf("%-9s %9llu %8.2f %10.2f %9.2f %7.2f %10.2f %9.2f %10.2f %9.0f %6.1f%%  %016llx\n", name,
			       (unsigned long long)params, grad / 1e6, pt.compute * 1e3, pt.gather * 1e3,
			       pt.sum * 1e3, ordered * 1e3, pt.allreduce * 1e3, recv / 1e6,
			       ranks > 1 && pt.gather > 0 ? recv / pt.gather / 1e6 : 0.0, 100 * ordered / step,
			       (unsigned long long)sum_check);
			fflush(stdout);
		}
	}
	dataset_free(ds);
	MPI_Finalize();
	return rc;
}
