/* restrict-families - run a command with socket(2) limited to some address
 * families, as systemd's RestrictAddressFamilies= does it: a seccomp filter
 * that makes socket() with any other family fail with EAFNOSUPPORT (other
 * system calls, socketpair(2) included, are not affected, as under systemd).
 * Sets no_new_privs first (as NoNewPrivileges=yes), so it works unprivileged.
 *
 *   restrict-families AF_UNIX[,AF_INET,...] COMMAND [ARG...]
 *
 * Families: AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET. Used by
 * tests/mpi/test_systemd_mpi.py to run mpirun under the unit's and the
 * drop-in's families. x86-64 and aarch64 (the filter checks the
 * architecture: another one is refused with ENOSYS, as
 * SystemCallArchitectures=native would).
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "restrict-families: x86-64 or aarch64 only"
#endif

#define MAX_FAMILIES 8

static const struct {
	const char *name;
	int family;
} known[] = {
	{ "AF_UNIX", AF_UNIX }, { "AF_INET", AF_INET }, { "AF_INET6", AF_INET6 },
	{ "AF_NETLINK", AF_NETLINK }, { "AF_PACKET", AF_PACKET },
};

int main(int argc, char **argv)
{
	int families[MAX_FAMILIES], n = 0;
	char list[256];

	if (argc < 3) {
		fprintf(stderr, "usage: restrict-families AF_UNIX[,AF_INET,...] COMMAND [ARG...]\n");
		return 2;
	}
	snprintf(list, sizeof list, "%s", argv[1]);
	for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t k;

		for (k = 0; k < sizeof known / sizeof known[0] && strcmp(known[k].name, tok); k++)
			;
		if (k == sizeof known / sizeof known[0] || n == MAX_FAMILIES) {
			fprintf(stderr, "restrict-families: unknown family '%s' (AF_UNIX, AF_INET, AF_INET6, "
					"AF_NETLINK, AF_PACKET)\n", tok);
			return 2;
		}
		families[n++] = known[k].family;
	}

	/* arch check, nr == socket ? (family in list ? allow : EAFNOSUPPORT) : allow */
	struct sock_filter f[8 + MAX_FAMILIES];
	int i = 0;

	f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, (unsigned char)(n + 2));
	f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
	for (int k = 0; k < n; k++)
		f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)families[k],
						      (unsigned char)(n - k), 0);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAFNOSUPPORT);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { .len = (unsigned short)i, .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
		perror("restrict-families: seccomp");
		return 1;
	}
	execvp(argv[2], argv + 2);
	fprintf(stderr, "restrict-families: %s: %s\n", argv[2], strerror(errno));
	return 127;
}
