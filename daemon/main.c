/*
 * main.c - traind: wires the modules together and runs the event loop.
 *
 * Start-up (everything that may exit() happens here): parse flags and
 * environment, take the database's lock (one daemon per database), open and
 * migrate the store, recover jobs that a crash or shutdown cut off, start the
 * store thread, listen on the control socket (the one a socket unit passed,
 * else our own), tell the service manager READY=1, run the loop. SIGTERM/
 * SIGINT: STOPPING=1, every running job checkpoints its exact position and
 * stays "running" for the next start; then traind exits 0.
 *
 * Access: with --group (or under socket activation, the socket file's group)
 * the server checks each peer's credentials: root, traind's own user and the
 * group's members may connect. The socket file's mode is the first gate; the
 * check is the second, and it never lets in anyone the file keeps out.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "traind-config.h"
#include "daemon/daemon.h"
#include "daemon/jobs/jobs.h"
#include "daemon/jobs/stepseries.h"
#include "traind/blaskernel.h"
#include "traind/kernels.h"
#include "traind/numerics.h"
#include "daemon/core/log.h"
#include "daemon/core/notify.h"
#include "daemon/proto/server.h"

#define SHUTDOWN_TIMEOUT_MS 60000

struct opts {
	char socket[PATH_MAX];
	char db[PATH_MAX];
	char data_dir[PATH_MAX];
	unsigned max_running;
	char max_dataset[64];   /* --max-dataset-bytes / $TRAIND_MAX_DATASET_BYTES as given; "" = 4 GiB */
	uint64_t max_dataset_bytes;
	int verbose;
	char group[256];        /* --group / $TRAIND_GROUP as given; "" = the default */
	bool group_check;       /* a group was named: check peers against gid */
	bool group_off;         /* --group -: no peer check even when socket-activated */
	gid_t gid;
	unsigned message_timeout_ms;    /* --message-timeout; 0 = the server's default */
	const char *mpi_launcher;       /* --mpi-launcher; NULL = mpirun */
	const char *mpi_args[DAEMON_MPI_ARGS_MAX];   /* --mpi-arg, in order */
	unsigned n_mpi_args;
	const char *blas_kernel;        /* --blas-kernel; NULL = $TRAIND_BLAS_KERNEL, else auto */
};

static struct daemon *D;
static uv_signal_t sig_term, sig_int;
static uv_timer_t shutdown_timer;
static struct notify N;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: traind [OPTIONS]\n"
		"The training daemon: runs training jobs, checkpoints them in SQLite, and takes\n"
		"commands from trainctl over a Unix socket. Runs in the foreground.\n\n"
		"  --socket PATH      control socket ($TRAIND_SOCKET; default\n"
		"                     $RUNTIME_DIRECTORY/traind.sock under systemd, else\n"
		"                     $XDG_RUNTIME_DIR/traind/traind.sock, else /run/traind/traind.sock)\n"
		"  --db PATH          SQLite database ($TRAIND_DB; default $STATE_DIRECTORY/traind.db\n"
		"                     under systemd, else $XDG_STATE_HOME/traind/traind.db,\n"
		"                     else ~/.local/state/traind/traind.db; root: /var/lib/traind/traind.db)\n"
		"  --data-dir DIR     datasets, one directory per name ($TRAIND_DATA_DIR; default\n"
		"                     the database's directory + /data)\n"
		"  --max-running N    jobs training at once ($TRAIND_MAX_RUNNING; default 1 per 2 cores)\n"
		"  --max-dataset-bytes N  the largest dataset `trainctl dataset import` may add, in\n"
		"                     bytes, with an optional K, M or G suffix (powers of 1024)\n"
		"                     ($TRAIND_MAX_DATASET_BYTES; default 4G)\n"
		"  --group NAME|GID   who may use the socket: root, traind's user and members of\n"
		"                     this group, checked on each connection ($TRAIND_GROUP;\n"
		"                     default: the socket file's group when systemd passes the\n"
		"                     socket, else no check; '-': no check). A socket traind\n"
		"                     creates itself gets this group and mode 0660\n"
		"  --message-timeout SECONDS  how long a client may take to send one message,\n"
		"                     from its first byte to its last (default 10; decimals allowed);\n"
		"                     a slower one gets a ProtocolError and is disconnected\n"
		"  --mpi-launcher CMD the launcher of jobs with ranks > 1 (default mpirun); traind\n"
		"                     runs CMD [--allow-run-as-root] -n R --host HOSTS [ARGS] traind-rank ...\n"
		"  --mpi-arg ARG      one more argument for the launcher, before the program\n"
		"                     (repeat it: --mpi-arg=--mca --mpi-arg=btl --mpi-arg=self,tcp)\n"
		"  --blas-kernel NAME|auto|openblas  the OpenBLAS kernel ($TRAIND_BLAS_KERNEL;\n"
		"                     default auto: the best one the CPU's features allow; openblas:\n"
		"                     OpenBLAS's own pick; NAME pins one, e.g. SkylakeX, Haswell,\n"
		"                     Prescott). OPENBLAS_CORETYPE in the environment wins over all\n"
		"  -v, --verbose      debug logging\n"
		"  -h, --help         this help\n"
		"  --version          print the version\n");
}

/* out = dir + "/" + rest; a path that does not fit becomes "" (and fails later). */
static void join_path(char *out, const char *dir, const char *rest)
{
	size_t a = strlen(dir), b = strlen(rest);

	if (a + 1 + b >= PATH_MAX) {
		out[0] = '\0';
		return;
	}
	memcpy(out, dir, a);
	out[a] = '/';
	memcpy(out + a + 1, rest, b + 1);
}

static void defaults(struct opts *o)
{
	const char *v;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	if ((v = getenv("TRAIND_SOCKET")) && *v)
		snprintf(o->socket, sizeof(o->socket), "%s", v);
	else if ((v = getenv("RUNTIME_DIRECTORY")) && *v)
		join_path(o->socket, strtok(strdupa(v), ":"), "traind.sock");
	else if ((v = getenv("XDG_RUNTIME_DIR")) && *v)
		join_path(o->socket, v, "traind/traind.sock");
	else
		snprintf(o->socket, sizeof(o->socket), "/run/traind/traind.sock");

	if ((v = getenv("TRAIND_DB")) && *v)
		snprintf(o->db, sizeof(o->db), "%s", v);
	else if ((v = getenv("STATE_DIRECTORY")) && *v)
		join_path(o->db, strtok(strdupa(v), ":"), "traind.db");
	else if (geteuid() == 0)
		snprintf(o->db, sizeof(o->db), "/var/lib/traind/traind.db");
	else if ((v = getenv("XDG_STATE_HOME")) && *v)
		join_path(o->db, v, "traind/traind.db");
	else
		snprintf(o->db, sizeof(o->db), "%s/.local/state/traind/traind.db",
			 getenv("HOME") ? getenv("HOME") : ".");

	o->data_dir[0] = '\0';
	if ((v = getenv("TRAIND_DATA_DIR")) && *v)
		snprintf(o->data_dir, sizeof(o->data_dir), "%s", v);
	o->max_running = cores >= 4 ? (unsigned)(cores / 2) : 1;
	if ((v = getenv("TRAIND_MAX_RUNNING")) && *v)
		o->max_running = (unsigned)atoi(v);
	if ((v = getenv("TRAIND_GROUP")) && *v)
		snprintf(o->group, sizeof(o->group), "%s", v);
	if ((v = getenv("TRAIND_MAX_DATASET_BYTES")) && *v)
		snprintf(o->max_dataset, sizeof(o->max_dataset), "%s", v);
}

/* "4G", "512M", "100000": bytes (K, M, G, T: powers of 1024); false if not
 * a positive number that fits. */
static bool parse_bytes(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long n;
	int shift = 0;

	if (!*s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || n == 0)
		return false;
	if (*end) {
		const char *units = "KMGT", *u = strchr(units, *end);

		if (!u || end[1])
			return false;
		shift = 10 * (int)(u - units + 1);
	}
	if (shift && n > (UINT64_MAX >> shift))
		return false;
	*out = (uint64_t)n << shift;
	return true;
}

/* Resolve o->group (a name or a number; "-" = no check). 0, or 2 (usage). */
static int resolve_group(struct opts *o)
{
	struct group gr, *res = NULL;
	char buf[16384];
	char *end;
	long n;
	int rc;

	if (!o->group[0])
		return 0;
	if (strcmp(o->group, "-") == 0) {
		o->group_off = true;
		return 0;
	}
	rc = getgrnam_r(o->group, &gr, buf, sizeof(buf), &res);
	if (rc == 0 && res) {
		o->gid = res->gr_gid;
		o->group_check = true;
		return 0;
	}
	n = strtol(o->group, &end, 10);
	if (!*end && end != o->group && n >= 0 && n < (long)(gid_t)-1) {
		o->gid = (gid_t)n;
		o->group_check = true;
		return 0;
	}
	fprintf(stderr, "traind: --group: there is no group '%s'%s%s\n", o->group, rc ? ": " : "",
		rc ? strerror(rc) : "");
	return 2;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "db", required_argument, NULL, 'd' },
		{ "data-dir", required_argument, NULL, 'D' },
		{ "max-running", required_argument, NULL, 'm' },
		{ "group", required_argument, NULL, 'g' },
		{ "max-dataset-bytes", required_argument, NULL, 'B' },
		{ "message-timeout", required_argument, NULL, 'T' },
		{ "mpi-launcher", required_argument, NULL, 'L' },
		{ "mpi-arg", required_argument, NULL, 'A' },
		{ "blas-kernel", required_argument, NULL, 'K' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "vh", long_opts, NULL)) != -1) {
		switch (c) {
		case 's': snprintf(o->socket, sizeof(o->socket), "%s", optarg); break;
		case 'd': snprintf(o->db, sizeof(o->db), "%s", optarg); break;
		case 'D': snprintf(o->data_dir, sizeof(o->data_dir), "%s", optarg); break;
		case 'm': {
			char *end;
			long n = strtol(optarg, &end, 10);

			if (*end || n < 1 || n > 64) {
				fprintf(stderr, "traind: --max-running: '%s' is not a number from 1 to 64\n",
					optarg);
				return 2;
			}
			o->max_running = (unsigned)n;
			break;
		}
		case 'g': snprintf(o->group, sizeof(o->group), "%s", optarg); break;
		case 'B': snprintf(o->max_dataset, sizeof(o->max_dataset), "%s", optarg); break;
		case 'T': {
			char *end;
			double sec;

			errno = 0;
			sec = strtod(optarg, &end);
			if (*end || end == optarg || errno || !(sec >= 0.1 && sec <= 3600)) {
				fprintf(stderr, "traind: --message-timeout: '%s' is not a number of seconds from 0.1 "
					"to 3600\n", optarg);
				return 2;
			}
			o->message_timeout_ms = (unsigned)(sec * 1000 + 0.5);
			break;
		}
		case 'L':
			if (!*optarg) {
				fprintf(stderr, "traind: --mpi-launcher: empty\n");
				return 2;
			}
			o->mpi_launcher = optarg;
			break;
		case 'A':
			if (o->n_mpi_args == DAEMON_MPI_ARGS_MAX) {
				fprintf(stderr, "traind: --mpi-arg: more than %d\n", DAEMON_MPI_ARGS_MAX);
				return 2;
			}
			o->mpi_args[o->n_mpi_args++] = optarg;
			break;
		case 'K': o->blas_kernel = optarg; break;
		case 'v': o->verbose = 1; break;
		case 'h': usage(stdout); return 1;
		case 'V': printf("traind %s\n", TRAIND_VERSION); return 1;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "traind: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (o->max_running < 1 || o->max_running > 64) {
		fprintf(stderr, "traind: TRAIND_MAX_RUNNING must be a number from 1 to 64\n");
		return 2;
	}
	o->max_dataset_bytes = UINT64_C(4) << 30;
	if (o->max_dataset[0] && !parse_bytes(o->max_dataset, &o->max_dataset_bytes)) {
		fprintf(stderr, "traind: --max-dataset-bytes: '%s' is not a size in bytes (e.g. 4G, 512M, "
			"100000)\n", o->max_dataset);
		return 2;
	}
	if (!o->data_dir[0]) {
		char dir[PATH_MAX];
		char *slash;

		snprintf(dir, sizeof(dir), "%s", o->db);
		slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		else
			snprintf(dir, sizeof(dir), ".");
		join_path(o->data_dir, dir, "data");
	}
	return resolve_group(o);
}

/* mkdir -p the directory part of `path`. */
static int make_parent(const char *path, mode_t mode)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

/* One daemon per database: an exclusive flock on DB.lock for our lifetime. */
static int lock_database(const char *db)
{
	char path[PATH_MAX + 8];
	char pid[32];
	int fd;

	snprintf(path, sizeof(path), "%s.lock", db);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "traind: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);

		pid[n > 0 ? n : 0] = '\0';
		fprintf(stderr,
			"traind: another traind (pid %s) is already using the database %s; refusing to start\n",
			n > 0 ? strtok(pid, "\n") : "?", db);
		close(fd);
		return -1;
	}
	if (ftruncate(fd, 0) == 0) {
		int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());

		if (pwrite(fd, pid, (size_t)len, 0) < 0) {
			/* the pid is informational only */
		}
	}
	return fd;
}

static struct stepseries *steps;   /* the loss by step (jobs/stepseries.h); NULL: not kept */

/* The daemon's on_run_end: the step series' last points of the job. */
static void run_ended(struct daemon *d, struct job *j)
{
	(void)d;
	stepseries_job_stopped(steps, j);
}

/* The daemon's on_drained; the loop stops right after. */
static void finish_shutdown(struct daemon *d)
{
	(void)d;
	log_notice("all jobs checkpointed; stopping");
	uv_timer_stop(&shutdown_timer);
}

static void on_shutdown_timeout(uv_timer_t *t)
{
	(void)t;
	/* Everything committed so far is durable (SQLite, synchronous=FULL);
	 * the next start continues from there. */
	log_err("shutdown took longer than %d s; exiting without waiting for the rest",
		SHUTDOWN_TIMEOUT_MS / 1000);
	_exit(1);
}

static void on_signal(uv_signal_t *s, int signum)
{
	(void)s;
	if (D->shutting_down)
		return;
	notify_stopping(&N, "stopping: checkpointing running jobs");
	log_notice("received %s; checkpointing running jobs", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	uv_timer_start(&shutdown_timer, on_shutdown_timeout, SHUTDOWN_TIMEOUT_MS, 0);
	daemon_shutdown(D);
}

/* The STATUS= line: jobs_summary() ("1 running, 0 queued, 0 paused; job 3 epoch 2/5 step 120"). */
static void status_line(void *ctx, char *buf, size_t len)
{
	struct daemon *d = ctx;

	jobs_summary(d->jobs, buf, len);
}

static void on_change(struct daemon *d)
{
	(void)d;
	notify_status(&N);
}

/* The path a listening Unix socket is bound to; "" if unnamed or abstract. */
static void socket_path_of(int fd, char *out, size_t len)
{
	struct sockaddr_un sa;
	socklen_t sl = sizeof(sa);

	out[0] = '\0';
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0 || sa.sun_family != AF_UNIX ||
	    sl <= offsetof(struct sockaddr_un, sun_path) || sa.sun_path[0] == '\0')
		return;
	snprintf(out, len, "%.*s", (int)(sl - offsetof(struct sockaddr_un, sun_path)), sa.sun_path);
}

/* Who may connect (see the top of the file). `path` is the socket file;
 * `activated`: the service manager created it (its group is the default). */
static void setup_access(const struct opts *o, bool activated, const char *path)
{
	struct stat st;
	gid_t gid;

	if (o->group_off)
		return;
	if (o->group_check) {
		gid = o->gid;
		if (!activated && chown(path, (uid_t)-1, gid) < 0)
			log_warn("cannot give %s to group %s: %s; only its file mode decides", path,
				 o->group, strerror(errno));
	} else if (activated && path[0] && stat(path, &st) == 0) {
		gid = st.st_gid;
	} else {
		return;
	}
	server_set_access(D->server, geteuid(), gid);
	{
		struct group gr, *res = NULL;
		char buf[16384];

		if (getgrgid_r(gid, &gr, buf, sizeof(buf), &res) != 0)
			res = NULL;
		log_notice("access: root, uid %u and members of group %s (gid %u)%s", (unsigned)geteuid(),
			   res ? res->gr_name : "?", (unsigned)gid,
			   o->group_check ? "" : ", the socket file's group");
	}
}

/* The kernel in use, why, and the CPU (blaskernel.h); trainctl info shows
 * the same. */
static void log_blas(void)
{
	const struct blaskernel_state *b = blaskernel_state();
	const struct cpu_info *cpu = cpu_this();
	char blas[NUMERICS_TEXT_MAX], features[256];

	numerics_blas(blas, sizeof(blas));
	cpu_feature_list(cpu->usable, features, sizeof(features));
	log_notice("BLAS: %s, %s%s%s", blas, b->why, b->openblas_pick[0] ? "; OpenBLAS's own pick: " : "",
		   b->openblas_pick);
	log_notice("CPU: %s (%s family %u model %u stepping %u): %s", cpu->brand[0] ? cpu->brand : "?",
		   cpu->vendor_id, cpu->family, cpu->model, cpu->stepping, features[0] ? features : "no features");
	if (b->note[0])
		log_warn("BLAS: %s", b->note);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	struct tr_err err = { 0 };
	struct daemon_config cfg;
	uv_loop_t *loop;
	char sock_path[PATH_MAX];
	int lock_fd, listen_fd, rc;

	memset(&o, 0, sizeof(o));
	defaults(&o);
	rc = parse_args(&o, argc, argv);
	if (rc)
		return rc == 1 ? 0 : 2;
	/* Before anything else runs: this may execute traind again, with the
	 * same pid, arguments and descriptors, to load another BLAS kernel. */
	if (blaskernel_start(argv, o.blas_kernel, &err) < 0) {
		fprintf(stderr, "traind: %s\n", err.msg);
		return 2;
	}
	log_init();
	log_set_verbose(o.verbose);
	log_blas();
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	kernels_global_init();

	/* Socket activation: the manager's socket, not ours (LISTEN_* unset). */
	if (notify_listen_fd(&listen_fd, &err) < 0) {
		fprintf(stderr, "traind: %s\n", err.msg);
		return 1;
	}
	if (make_parent(o.db, 0750) < 0 || (listen_fd < 0 && make_parent(o.socket, 0755) < 0)) {
		fprintf(stderr, "traind: cannot create the directories for %s and %s: %s\n", o.db, o.socket,
			strerror(errno));
		return 1;
	}
	lock_fd = lock_database(o.db);
	if (lock_fd < 0)
		return 1;

	loop = uv_default_loop();
	memset(&cfg, 0, sizeof(cfg));
	cfg.loop = loop;
	cfg.db_path = o.db;
	cfg.data_dir = o.data_dir;
	cfg.max_running = o.max_running;
	cfg.max_dataset_bytes = o.max_dataset_bytes;
	cfg.message_timeout_ms = o.message_timeout_ms;
	cfg.mpi_launcher = o.mpi_launcher;
	cfg.mpi_args = o.mpi_args;
	cfg.n_mpi_args = o.n_mpi_args;
	cfg.listen_fd = listen_fd;
	cfg.socket_path = o.socket;
	cfg.on_drained = finish_shutdown;
	cfg.on_change = on_change;
	cfg.on_run_end = run_ended;
	if (daemon_new(&D, &cfg, &err) < 0) {
		fprintf(stderr, "traind: %s\n", err.msg);
		return 1;
	}
	notify_init(&N, loop, status_line, D);
	if (listen_fd >= 0) {
		socket_path_of(listen_fd, sock_path, sizeof(sock_path));
		if (!sock_path[0])
			snprintf(sock_path, sizeof(sock_path), "fd %d", listen_fd);
	} else {
		snprintf(sock_path, sizeof(sock_path), "%s", o.socket);
	}
	setup_access(&o, listen_fd >= 0, sock_path);
	uv_signal_init(loop, &sig_term);
	uv_signal_init(loop, &sig_int);
	uv_signal_start(&sig_term, on_signal, SIGTERM);
	uv_signal_start(&sig_int, on_signal, SIGINT);
	uv_timer_init(loop, &shutdown_timer);

	log_notice("traind %s ready: socket %s%s, database %s, data %s, up to %u running job%s",
		   TRAIND_VERSION, sock_path, listen_fd >= 0 ? " (from the service manager)" : "", o.db,
		   o.data_dir, o.max_running, o.max_running == 1 ? "" : "s");
	if (notify_watchdog_usec(&N))
		log_info("watchdog: pinging the service manager every %.3f s",
			 (double)notify_watchdog_usec(&N) / 2e6);
	daemon_start(D);
	if (stepseries_new(&steps, D) < 0)
		log_warn("out of memory: the running loss by step is not kept");
	notify_ready(&N);
	daemon_run(D);

	/* The store thread drains (the step series' last points too), every
	 * handle closes (ours too), the registry goes. */
	notify_deinit(&N);
	stepseries_flush_all(steps);
	daemon_free(D);
	D = NULL;
	stepseries_free(steps);
	steps = NULL;
	if (uv_loop_close(loop) != 0)
		log_warn("event loop closed with handles still open");
	if (listen_fd < 0)
		unlink(o.socket);   /* an inherited socket belongs to the manager */
	close(lock_fd);
	log_notice("stopped");
	return 0;
}
