/* mpi-probe - where each MPI rank runs, and one all-reduce among them.
 *
 * Used by tests/mpi/test_netns_probe.py (two "hosts" as network namespaces,
 * tests/lib/netns.py) to show that mpirun put one rank in each namespace
 * and that the ranks reach each other. Every rank describes itself on one
 * line (hostname, network namespace, its IPv4 addresses other than
 * loopback, pid); rank 0 gathers the lines and prints them in rank order:
 *
 *   rank=0 size=2 host=vm netns=net:[4026532301] addrs=10.213.0.1 pid=123
 *   rank=1 size=2 host=vm netns=net:[4026532367] addrs=10.213.0.2 pid=456
 *   allreduce count=1048576 bytes=8388608 ok=1 seconds=0.0123
 *
 * then the all-reduce: COUNT doubles (argument, default 1 Mi: 8 MiB, so that
 * the bytes show on the link's counters), rank r contributing (r+1)*(i%1000+1)
 * at i; every rank checks the sums against the exact values (integers, so
 * exact in double whatever order MPI adds them in).
 * Exits 0 when every rank's sums are right, 1 otherwise.
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <mpi.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE 512

static void describe(char *line, int rank, int size)
{
	char host[256] = "?", ns[64] = "?", addrs[256] = "";
	gethostname(host, sizeof host - 1);
	ssize_t n = readlink("/proc/self/ns/net", ns, sizeof ns - 1);
	if (n > 0)
		ns[n] = '\0';
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa) == 0) {
		for (struct ifaddrs *p = ifa; p; p = p->ifa_next) {
			if (!p->ifa_addr || p->ifa_addr->sa_family != AF_INET || (p->ifa_flags & IFF_LOOPBACK))
				continue;
			char a[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, &((struct sockaddr_in *)p->ifa_addr)->sin_addr, a, sizeof a);
			size_t used = strlen(addrs);
			snprintf(addrs + used, sizeof addrs - used, "%s%s", used ? "," : "", a);
		}
		freeifaddrs(ifa);
	}
	snprintf(line, LINE, "rank=%d size=%d host=%s netns=%s addrs=%s pid=%ld", rank, size, host, ns,
	         addrs[0] ? addrs : "-", (long)getpid());
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	int rank, size;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	long count = argc > 1 ? atol(argv[1]) : 1L << 20;
	if (count < 1 || count > (1L << 28)) {
		if (rank == 0)
			fprintf(stderr, "mpi-probe: count must be 1..%ld, got '%s'\n", 1L << 28, argv[1]);
		MPI_Finalize();
		return 2;
	}

	char line[LINE];
	describe(line, rank, size);
	char *all = rank == 0 ? malloc((size_t)size * LINE) : NULL;
	MPI_Gather(line, LINE, MPI_CHAR, all, LINE, MPI_CHAR, 0, MPI_COMM_WORLD);
	if (rank == 0) {
		for (int r = 0; r < size; r++)
			printf("%s\n", all + (size_t)r * LINE);
		fflush(stdout);
		free(all);
	}

	double *x = malloc((size_t)count * sizeof *x), *y = malloc((size_t)count * sizeof *y);
	if (!x || !y) {
		fprintf(stderr, "mpi-probe: rank %d: out of memory for %ld doubles\n", rank, count);
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	for (long i = 0; i < count; i++)
		x[i] = (double)(rank + 1) * (double)(i % 1000 + 1);
	MPI_Barrier(MPI_COMM_WORLD);
	double t0 = MPI_Wtime();
	MPI_Allreduce(x, y, (int)count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
	double t = MPI_Wtime() - t0;
	int ok = 1;
	double ranks_sum = (double)size * (size + 1) / 2;
	for (long i = 0; i < count && ok; i++)
		ok = y[i] == ranks_sum * (double)(i % 1000 + 1);
	int all_ok = 0;
	MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
	if (rank == 0)
		printf("allreduce count=%ld bytes=%ld ok=%d seconds=%.4f\n", count, count * (long)sizeof(double), all_ok,
		       t);
	free(x);
	free(y);
	MPI_Finalize();
	return all_ok ? 0 : 1;
}
