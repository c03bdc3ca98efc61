/*
 * mpirun.c - the MPI runner: a job with ranks > 1 runs as that many
 * traind-rank processes (rank/main.c) started by the MPI launcher. See
 * daemon/runner/runner.h for the contract with the loop, rankwire.h for
 * what is said on the contact socket, and doc/distributed.md.
 *
 * Each run has a thread here, as thread_runner's, that does what only
 * traind may do: it checks the dataset, builds the trainer to start from
 * (run_base_prepare: the newest checkpoint that verifies, weights only,
 * --epochs) and serializes it for rank 0; it listens on a Unix socket in a
 * fresh private directory, starts the launcher (in a process group of its
 * own, output to a log file there; both names are removed once rank 0 is
 * connected), hands rank 0 the blob, publishes the
 * progress rank 0 reports, commits the checkpoints rank 0 hands over
 * (run_hand_over_blob: traind stays the one writer of the store), passes
 * ctx->stop on, and answers each epoch's checkpoint with "go on" or "stop"
 * (a kill after that epoch, committed first). When the launcher exits
 * without rank 0's word, the run failed; its reason is the launcher's
 * "process rank N ... on node H exited on signal S" line when it printed
 * one. Such a failure is restartable (run_exit): the jobs module restarts the job
 * up to max_restarts times; one before the launcher ran (no traind-rank, a
 * dataset that changed) is not.
 *
 * Thread: start and stop on the loop; the run on its own thread.
 */
#include "daemon/runner/mpirun.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "traind/checkpoint.h"
#include "traind/clock.h"
#include "daemon/core/log.h"
#include "daemon/store/jobstate.h"
#include "rank/rankwire.h"

_Static_assert((int)RW_PAUSE == (int)STOP_PAUSE && (int)RW_SHUTDOWN == (int)STOP_SHUTDOWN &&
	       (int)RW_KILL == (int)STOP_KILL && (int)RW_FAIL == (int)STOP_FAIL,
	       "rankwire's stop words are enum run_stop's");

#define KILL_GRACE_SECONDS 10.0   /* after a kill request, the launcher's group gets SIGKILL */

extern char **environ;

struct mpi_run {
	struct run_base base;            /* first: the exit event frees the run through it */
	struct run_ctx *ctx;             /* base.ctx */
	char dir[64];                    /* the run's private directory ("" until made) */
	char sock[96], log[96];
	int listen_fd, conn_fd;
	int log_fd;                      /* the launcher's output, kept open once its name is gone */
	pid_t pid;                       /* the launcher, leader of its process group; 0: none */
	int status;                      /* its wait status once reaped */
	bool reaped;
};

/* Rank 0's progress report, as the run's. */
static void publish(struct run_ctx *ctx, const struct rw_progress *p, bool active)
{
	struct run_report r;

	if (!p) {
		run_publish(ctx, NULL, active);
		return;
	}
	r = (struct run_report){
		.epoch = p->epoch, .step = p->step, .steps_per_epoch = p->steps_per_epoch,
		.samples_per_second = p->samples_per_second, .batches = p->batches,
		.loss_sum = p->loss_sum, .lr = p->lr,
	};
	run_publish(ctx, &r, active);
}

/* traind-rank: $TRAIND_RANK_PROGRAM, else beside this executable. */
static int rank_program(char *out, size_t size, struct tr_err *err)
{
	const char *env = getenv("TRAIND_RANK_PROGRAM");
	char self[PATH_MAX];
	ssize_t n;
	char *slash;

	if (env && *env) {
		snprintf(out, size, "%s", env);
		if (access(out, X_OK) < 0)
			return tr_err_set(err, -ENOENT, "%s ($TRAIND_RANK_PROGRAM): %s", out, strerror(errno));
		return 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return tr_err_set(err, -errno, "cannot find traind's own executable: %s", strerror(errno));
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (slash)
		*slash = '\0';
	if (snprintf(out, size, "%s/traind-rank", self) >= (int)size)
		return tr_err_set(err, -ENAMETOOLONG, "traind-rank: path too long");
	if (access(out, X_OK) < 0)
		return tr_err_set(err, -ENOENT, "%s: %s (traind-rank is installed beside traind)", out,
				  strerror(errno));
	return 0;
}

/* The private directory, its contact socket (listening) and the log file. */
static int make_contact(struct mpi_run *run, struct tr_err *err)
{
	const char *tmp = getenv("TMPDIR");
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	if (!tmp || !*tmp || strlen(tmp) > 40)
		tmp = "/tmp";
	snprintf(run->dir, sizeof(run->dir), "%s/traind-mpi-XXXXXX", tmp);
	if (!mkdtemp(run->dir)) {
		int e = errno;

		run->dir[0] = '\0';
		return tr_err_set(err, -e, "cannot make the job's contact directory in %s: %s", tmp,
				  strerror(e));
	}
	snprintf(run->sock, sizeof(run->sock), "%s/contact", run->dir);
	snprintf(run->log, sizeof(run->log), "%s/launcher.log", run->dir);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", run->sock);
	run->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (run->listen_fd < 0 || bind(run->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(run->listen_fd, 1) < 0)
		return tr_err_set(err, -errno, "contact socket %s: %s", run->sock, strerror(errno));
	run->log_fd = open(run->log, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (run->log_fd < 0)
		return tr_err_set(err, -errno, "%s: %s", run->log, strerror(errno));
	return 0;
}

static int spawn_launcher(struct mpi_run *run, struct tr_err *err)
{
	struct run_ctx *ctx = run->ctx;
	const struct run_env *env = ctx->env;
	char prog[PATH_MAX], nranks[16], hosts[CFG_HOSTS_MAX + 32], job[32];
	const char *argv[RUN_MPI_ARGS_MAX + 24];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	size_t n = 0;
	int rc;

	rc = rank_program(prog, sizeof(prog), err);
	if (rc < 0)
		return rc;
	snprintf(nranks, sizeof(nranks), "%u", ctx->cfg->ranks);
	if (ctx->cfg->hosts[0])
		snprintf(hosts, sizeof(hosts), "%s", ctx->cfg->hosts);
	else
		snprintf(hosts, sizeof(hosts), "localhost:%u", ctx->cfg->ranks);
	snprintf(job, sizeof(job), "%" PRId64, ctx->id);
	argv[n++] = env->mpi_launcher;
	if (geteuid() == 0)
		argv[n++] = "--allow-run-as-root";
	argv[n++] = "-n";
	argv[n++] = nranks;
	argv[n++] = "--host";
	argv[n++] = hosts;
	for (unsigned i = 0; i < env->n_mpi_args; i++)
		argv[n++] = env->mpi_args[i];
	argv[n++] = prog;
	argv[n++] = "--contact";
	argv[n++] = run->sock;
	argv[n++] = "--data-dir";
	argv[n++] = env->data_dir;
	argv[n++] = "--job";
	argv[n++] = job;
	argv[n] = NULL;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, run->log_fd, 1);
	posix_spawn_file_actions_adddup2(&fa, run->log_fd, 2);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGCHLD);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	/* Its own group: a terminal's ^C or a unit's SIGTERM to traind is
	 * traind's to handle (a shutdown stop saves the exact position first). */
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
				      POSIX_SPAWN_SETPGROUP);
	rc = posix_spawnp(&run->pid, env->mpi_launcher, &fa, &at, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (rc != 0) {
		run->pid = 0;
		return tr_err_set(err, -rc, "cannot start the MPI launcher '%s': %s", env->mpi_launcher,
				  strerror(rc));
	}
	log_info("job %" PRId64 ": %s -n %s --host %s ... (pid %d)", ctx->id, env->mpi_launcher, nranks,
		 hosts, (int)run->pid);
	return 0;
}

static bool reap(struct mpi_run *run, bool block)
{
	if (run->reaped || !run->pid)
		return true;
	if (waitpid(run->pid, &run->status, block ? 0 : WNOHANG) == run->pid)
		run->reaped = true;
	return run->reaped;
}

/* Wait up to `seconds` for the launcher, then kill its group. */
static void finish_launcher(struct mpi_run *run, double seconds)
{
	double until = clock_seconds() + seconds;

	if (!run->pid)
		return;
	while (!reap(run, false) && clock_seconds() < until)
		usleep(20000);
	if (!run->reaped) {
		kill(-run->pid, SIGKILL);
		reap(run, true);
	}
}

/* Why the launcher ended without rank 0's word. */
static void failure_reason(struct mpi_run *run, char *out, size_t size)
{
	char buf[8192], last[512] = "", exit_text[64];
	const char *found = NULL;
	off_t size_now = run->log_fd >= 0 ? lseek(run->log_fd, 0, SEEK_END) : -1;
	ssize_t n = 0;

	if (WIFSIGNALED(run->status))
		snprintf(exit_text, sizeof(exit_text), "killed by signal %d", WTERMSIG(run->status));
	else
		snprintf(exit_text, sizeof(exit_text), "exit status %d", WEXITSTATUS(run->status));
	if (size_now > 0) {
		off_t from = size_now > (off_t)sizeof(buf) - 1 ? size_now - (off_t)sizeof(buf) + 1 : 0;

		n = pread(run->log_fd, buf, sizeof(buf) - 1, from);
	}
	buf[n > 0 ? n : 0] = '\0';
	/* OpenMPI: "mpirun noticed that process rank 1 with PID 123 on node h
	 * exited on signal 9 (Killed)." */
	found = strstr(buf, "process rank ");
	if (found) {
		const char *end = strchr(found, '.');
		size_t len = end ? (size_t)(end - found) : strcspn(found, "\n");

		snprintf(last, sizeof(last), "%.*s", (int)(len < sizeof(last) ? len : sizeof(last) - 1),
			 found);
		for (char *p = last; *p; p++)
			if (*p == '\n')
				*p = ' ';
	} else if ((found = strstr(buf, "Remote daemon"))) {
		/* A host's orted lost: "ORTE has lost communication with a remote
		 * daemon. ... Remote daemon: [[1234,0],1] on node 10.0.0.2" */
		const char *node = strstr(found, "on node ");
		size_t len = node ? strcspn(node + 8, "\n ") : 0;

		if (node)
			snprintf(last, sizeof(last), "lost the daemon of the ranks on host %.*s",
				 (int)(len < 256 ? len : 255), node + 8);
		else
			snprintf(last, sizeof(last), "lost a remote daemon (hosts %.200s)", run->ctx->cfg->hosts);
	} else {
		/* The last line that says something (mpirun frames its messages
		 * with rows of dashes), and the hosts it ran on. */
		char *p = buf + strlen(buf);

		for (;;) {
			char *eol;

			while (p > buf && (p[-1] == '\n' || p[-1] == ' '))
				*--p = '\0';
			eol = p;
			while (p > buf && p[-1] != '\n')
				p--;
			if (p == eol || strspn(p, "-=*") < (size_t)(eol - p) || p == buf)
				break;
			*p = '\0';
		}
		if (strspn(p, "-=* ") == strlen(p))
			p = "";
		snprintf(last, sizeof(last), "%.300s%s(hosts %.150s)", p, p[0] ? " " : "",
			 run->ctx->cfg->hosts[0] ? run->ctx->cfg->hosts : "localhost");
	}
	snprintf(out, size, "%s: %s%s%s", run->ctx->env->mpi_launcher, exit_text, last[0] ? ": " : "",
		 last);
}

/* The directory's names go as soon as rank 0 is connected (a SIGKILL of
 * traind then leaves nothing behind); the open descriptors stay. */
static void remove_names(struct mpi_run *run)
{
	if (!run->dir[0])
		return;
	unlink(run->sock);
	unlink(run->log);
	rmdir(run->dir);
	run->dir[0] = '\0';
}

static void cleanup_dir(struct mpi_run *run)
{
	if (run->listen_fd >= 0)
		close(run->listen_fd);
	if (run->conn_fd >= 0)
		close(run->conn_fd);
	if (run->log_fd >= 0)
		close(run->log_fd);
	run->listen_fd = run->conn_fd = run->log_fd = -1;
	remove_names(run);
}

/* Rank 0's checkpoint: committed; an epoch's answered. */
static int on_ckpt(struct mpi_run *run, uint8_t *pl, size_t len, int *sent_stop, struct tr_err *err)
{
	struct run_ctx *ctx = run->ctx;
	struct rw_ckpt c;
	uint8_t *blob;
	size_t blen;
	uint32_t ack = RW_GO;
	bool sync;
	int stop = atomic_load(&ctx->stop), rc;

	if (len < sizeof(c))
		return tr_err_set(err, -EPROTO, "rank 0 sent a short checkpoint");
	memcpy(&c, pl, sizeof(c));
	blen = len - sizeof(c);
	blob = malloc(blen ? blen : 1);
	if (!blob)
		return tr_err_set(err, -ENOMEM, "out of memory");
	memcpy(blob, pl + sizeof(c), blen);
	if (c.is_epoch && atomic_load(&ctx->kill_after) == (int64_t)c.row.epoch)
		ack = RW_KILL;              /* the lesson's crash: right after this commit */
	else if (c.is_epoch && stop != STOP_NONE)
		ack = (uint32_t)stop;
	sync = !c.is_epoch || ack != RW_GO;
	rc = run_hand_over_blob(ctx, NULL, blob, blen ? blen : 1, blen, c.is_epoch ? &c.row : NULL,
				c.epoch, c.step, c.hold_seconds, sync, err);
	if (rc < 0)
		ack = RW_FAIL;
	if (c.is_epoch) {
		if (ack != RW_GO)
			*sent_stop = (int)ack;
		if (rw_send(run->conn_fd, RW_ACK, &ack, sizeof(ack), NULL, 0) < 0 && rc == 0)
			log_warn("job %" PRId64 ": rank 0 left before hearing about epoch %u", ctx->id,
				 c.row.epoch);
	}
	return rc;
}

/* Talk to rank 0 until it or the launcher is gone. *got: rank 0's RW_EXIT. */
static int converse(struct mpi_run *run, bool *got, struct rw_exit *ex, struct tr_err *err)
{
	struct run_ctx *ctx = run->ctx;
	int sent_stop = STOP_NONE, rc = 0;
	double kill_sent = 0;

	for (;;) {
		struct pollfd p = { .fd = run->conn_fd, .events = POLLIN };
		int stop = atomic_load(&ctx->stop), n;

		if (stop != STOP_NONE && stop != sent_stop) {
			uint32_t w = (uint32_t)stop;

			(void)rw_send(run->conn_fd, RW_STOP, &w, sizeof(w), NULL, 0);
			sent_stop = stop;
			if ((stop == STOP_KILL || stop == STOP_FAIL) && !kill_sent)
				kill_sent = clock_seconds();
		}
		if (kill_sent && clock_seconds() - kill_sent > KILL_GRACE_SECONDS && run->pid) {
			log_warn("job %" PRId64 ": the ranks did not stop; killing them", ctx->id);
			kill(-run->pid, SIGKILL);
			kill_sent = clock_seconds() + 1e9;
		}
		n = poll(&p, 1, 200);
		if (n < 0 && errno != EINTR)
			return tr_err_set(err, -errno, "poll: %s", strerror(errno));
		if (n > 0) {
			struct rw_head h;
			uint8_t *pl = NULL;

			rc = rw_recv(run->conn_fd, &h, &pl);
			if (rc < 0) {
				free(pl);
				return 0;   /* rank 0 gone: the launcher's exit says why */
			}
			if (h.type == RW_PROGRESS && h.len >= sizeof(struct rw_progress)) {
				struct rw_progress pr;

				memcpy(&pr, pl, sizeof(pr));
				publish(ctx, &pr, true);
			} else if (h.type == RW_CKPT) {
				rc = on_ckpt(run, pl, h.len, &sent_stop, err);
				if (rc < 0)
					log_err("job %" PRId64 ": checkpoint from rank 0 not committed: %s",
						ctx->id, err->msg);
			} else if (h.type == RW_EXIT && h.len >= sizeof(*ex)) {
				memcpy(ex, pl, sizeof(*ex));
				ex->msg[sizeof(ex->msg) - 1] = '\0';
				*got = true;
			}
			free(pl);
			if (rc < 0)
				return rc;
			continue;
		}
		if (reap(run, false))
			return 0;
	}
}

/* Until rank 0 connects (or the launcher fails, or a stop comes). */
static int await_rank0(struct mpi_run *run, int *stopped, struct tr_err *err)
{
	for (;;) {
		struct pollfd p = { .fd = run->listen_fd, .events = POLLIN };
		int stop = atomic_load(&run->ctx->stop), n;

		if (stop != STOP_NONE) {
			*stopped = stop;
			return 0;
		}
		n = poll(&p, 1, 200);
		if (n > 0) {
			run->conn_fd = accept4(run->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (run->conn_fd < 0)
				return tr_err_set(err, -errno, "accept: %s", strerror(errno));
			remove_names(run);
			return 0;
		}
		if (n < 0 && errno != EINTR)
			return tr_err_set(err, -errno, "poll: %s", strerror(errno));
		if (reap(run, false))
			return 0;
	}
}

static void *mpi_main(void *arg)
{
	struct mpi_run *run = arg;
	struct run_ctx *ctx = run->ctx;
	struct run_exit *ex = &run->base.ex;
	const struct dataset *ds = NULL;
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	struct rw_exit rex = { 0 };
	uint8_t *blob = NULL;
	size_t len = 0;
	bool got = false;
	int stopped = STOP_NONE, rc;

	rc = run_base_prepare(&run->base, &ds, &t, &err);
	if (rc < 0)
		goto out;
	rc = checkpoint_save(t, &blob, &len, &err);   /* sealed: rank 0 verifies it */
	if (rc < 0)
		goto out;
	{
		struct rw_progress pr = { .epoch = t->epoch, .step = t->step,
					  .steps_per_epoch = t->steps_per_epoch, .lr = t->sched.lr };

		publish(ctx, &pr, false);
	}
	run_base_restored(&run->base, t);
	trainer_free(t);             /* the ranks train; they load the data themselves */
	t = NULL;
	dscache_put(ctx->env->dsc, ds);
	ds = NULL;

	rc = make_contact(run, &err);
	if (rc == 0)
		rc = spawn_launcher(run, &err);
	if (rc == 0)
		rc = await_rank0(run, &stopped, &err);
	if (rc < 0)
		goto out;
	if (stopped != STOP_NONE || run->conn_fd < 0) {
		if (stopped != STOP_NONE && run->pid)
			kill(-run->pid, SIGTERM);
		finish_launcher(run, KILL_GRACE_SECONDS);
		if (stopped != STOP_NONE) {
			/* nothing trained yet: the newest checkpoint is the position */
			ex->outcome = stopped == STOP_PAUSE ? JOB_PAUSED : stopped == STOP_SHUTDOWN ? JOB_RUNNING
				      : stopped == STOP_KILL ? JOB_KILLED : JOB_FAILED;
			goto out;
		}
		failure_reason(run, err.msg, sizeof(err.msg));
		rc = -ECHILD;
		ex->restartable = true;
		goto out;
	}
	rc = rw_send(run->conn_fd, RW_INIT, blob, len, NULL, 0);
	free(blob);
	blob = NULL;
	if (rc == 0)
		publish(ctx, NULL, true);
	if (rc == 0)
		rc = converse(run, &got, &rex, &err);
	close(run->conn_fd);
	run->conn_fd = -1;
	finish_launcher(run, 30.0);
	if (rc < 0)
		goto out;
	if (got) {
		ex->outcome = rex.outcome;
		if (rex.outcome == JOB_FAILED) {
			rc = rex.rc < 0 ? rex.rc : -EIO;
			snprintf(err.msg, sizeof(err.msg), "%s", rex.msg);
		}
	} else if (atomic_load(&ctx->stop) == STOP_KILL) {
		ex->outcome = JOB_KILLED;
	} else {
		failure_reason(run, err.msg, sizeof(err.msg));
		rc = -ECHILD;
		ex->restartable = true;
	}
out:
	if (run->pid && !run->reaped) {
		kill(-run->pid, SIGTERM);
		finish_launcher(run, KILL_GRACE_SECONDS);
	}
	cleanup_dir(run);
	free(blob);
	trainer_free(t);
	if (ds)
		dscache_put(ctx->env->dsc, ds);
	publish(ctx, NULL, false);
	run_base_exit(&run->base, rc, &err);   /* the last touch of the run: the loop frees it */
	return NULL;
}

static int mpi_start(struct run_ctx *ctx, const struct run_start *how, struct tr_err *err)
{
	struct mpi_run *run = calloc(1, sizeof(*run));
	int rc;

	if (!run)
		return tr_err_set(err, -ENOMEM, "out of memory starting the job's ranks");
	run->ctx = ctx;
	run->listen_fd = run->conn_fd = run->log_fd = -1;
	rc = run_base_spawn(&run->base, ctx, how, mpi_main);
	if (rc < 0) {
		free(run);
		return tr_err_set(err, rc, "cannot start the job's runner thread");
	}
	return 0;
}

const struct runner_ops mpi_runner = {
	.name = "mpi",
	.start = mpi_start,
};
