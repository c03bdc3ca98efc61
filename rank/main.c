/*
 * rank.c - traind-rank, one rank of a multi-rank job, started by the MPI
 * launcher that traind's mpi_runner runs (mpirun.c; doc/distributed.md, "Using
 * it"). Not a user command.
 *
 *   traind-rank --contact SOCKET --data-dir DIR --job ID
 *
 * Rank 0 connects to traind's contact socket, receives the checkpoint blob
 * to start from and broadcasts it; every rank restores the same trainer
 * from it, loads the dataset itself and trains with trainer_comm's
 * allgather over MPI_COMM_WORLD, so each computes its own shards and all
 * add every shard's gradient in shard order. At each step boundary rank 0
 * broadcasts its decision (go on, or the stop traind asked for, or "my
 * contact is gone"), so every rank stops at the same step. Rank 0 alone
 * talks to traind: progress, the epoch checkpoints (waiting for traind's
 * word after each: a kill after that epoch), the exact position before a
 * pause or shutdown stop, and the outcome. A lost contact (traind died)
 * aborts every rank at the next step boundary: nothing is left training.
 *
 * Thread: main thread only (MPI_THREAD_SINGLE; the trainer's team threads
 * do not call MPI).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <mpi.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "traind/blaskernel.h"
#include "traind/checkpoint.h"
#include "traind/clock.h"
#include "traind/dataset.h"
#include "daemon/store/jobstate.h"
#include "rank/rankwire.h"
#include "traind/trainer.h"

#define RANK_NICE 5   /* worker.c's WORKER_NICE */

struct rank {
	int rank, size;
	int fd;                      /* rank 0: the contact; else -1 */
	int64_t job;
	struct trainer_comm comm;
};

static int mpi_allgather(void *ctx, void *all, size_t bytes)
{
	(void)ctx;
	if (bytes > INT_MAX)
		return -E2BIG;
	return MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, all, (int)bytes, MPI_BYTE,
			     MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -EIO;
}

static int contact(const char *path, struct tr_err *err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(a.sun_path))
		return tr_err_set(err, -ENAMETOOLONG, "contact %s: path too long", path);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return tr_err_set(err, -errno, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;

		close(fd);
		return tr_err_set(err, -e, "cannot reach traind at %s: %s", path, strerror(e));
	}
	return fd;
}

/* Rank 0, between steps: a pending RW_STOP (the newest), RW_LOST when
 * traind is gone, else RW_GO. Waits up to timeout_ms for RW_ACK when
 * want_ack, returning its word (or a stop that came first). */
static int hear(struct rank *r, bool want_ack)
{
	int word = RW_GO;

	for (;;) {
		struct pollfd p = { .fd = r->fd, .events = POLLIN };
		struct rw_head h;
		uint8_t *pl = NULL;
		uint32_t v = 0;
		int n = poll(&p, 1, want_ack ? -1 : 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return RW_LOST;
		if (n == 0)
			return word;
		if (rw_recv(r->fd, &h, &pl) < 0)
			return RW_LOST;
		if (h.len >= sizeof(v))
			memcpy(&v, pl, sizeof(v));
		free(pl);
		if (h.type == RW_STOP && v != RW_GO && (word == RW_GO || v == RW_KILL || v == RW_FAIL))
			word = (int)v;
		if (h.type == RW_ACK && want_ack) {
			if (word == RW_GO || v == RW_KILL || v == RW_FAIL)
				word = v ? (int)v : word;
			want_ack = false;
		}
	}
}

/* Every rank: rank 0's word. */
static int decide(struct rank *r, int word)
{
	MPI_Bcast(&word, 1, MPI_INT, 0, MPI_COMM_WORLD);
	if (word == RW_LOST) {
		if (r->rank == 0)
			fprintf(stderr, "traind-rank: job %" PRId64 ": traind is gone; stopping every rank\n",
				r->job);
		MPI_Abort(MPI_COMM_WORLD, 3);
	}
	return word;
}

static void report_exit(struct rank *r, int outcome, int rc, const char *msg)
{
	struct rw_exit ex = { .outcome = outcome, .rc = rc };

	if (r->rank != 0)
		return;
	snprintf(ex.msg, sizeof(ex.msg), "%s", msg ? msg : "");
	(void)rw_send(r->fd, RW_EXIT, &ex, sizeof(ex), NULL, 0);
}

/* Rank 0: the trainer's blob to traind. 0 or -errno. */
static int send_ckpt(struct rank *r, struct trainer *t, const struct history_row *row,
		     struct tr_err *err)
{
	struct rw_ckpt c = { .is_epoch = row != NULL, .epoch = t->epoch, .step = t->step };
	double t0 = clock_seconds();
	uint8_t *blob = NULL;
	size_t len = 0;
	int rc;

	if (row)
		c.row = *row;
	rc = checkpoint_serialize(t, &blob, &len, err);
	if (rc < 0)
		return rc;
	c.hold_seconds = clock_seconds() - t0;
	rc = rw_send(r->fd, RW_CKPT, &c, sizeof(c), blob, len);
	free(blob);
	if (rc < 0)
		return tr_err_set(err, rc, "cannot hand the checkpoint to traind: %s", strerror(-rc));
	return 0;
}

static void send_progress(struct rank *r, struct trainer *t, double sps)
{
	struct rw_progress p = { .epoch = t->epoch, .step = t->step,
				 .steps_per_epoch = t->steps_per_epoch, .batches = t->sums.batches,
				 .loss_sum = t->sums.loss_sum, .lr = t->sched.lr,
				 .samples_per_second = sps };

	(void)rw_send(r->fd, RW_PROGRESS, &p, sizeof(p), NULL, 0);
}

/* Every rank: the start blob from traind through rank 0. */
static int get_blob(struct rank *r, uint8_t **blob, uint64_t *len, struct tr_err *err)
{
	struct rw_head h = { 0 };
	uint8_t *p = NULL;
	int rc = 0;

	if (r->rank == 0) {
		rc = rw_recv(r->fd, &h, &p);
		if (rc == 0 && h.type != RW_INIT)
			rc = -EPROTO;
		if (rc < 0) {
			tr_err_set(err, rc, "no start checkpoint from traind: %s", strerror(-rc));
			free(p);
			p = NULL;
			h.len = 0;
		}
	}
	MPI_Bcast(&h.len, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
	if (h.len == 0)
		return rc < 0 ? rc : tr_err_set(err, -EPROTO, "no start checkpoint from traind");
	if (r->rank != 0 && !(p = malloc(h.len)))
		return tr_err_set(err, -ENOMEM, "out of memory");
	for (uint64_t off = 0; off < h.len; off += INT_MAX / 2) {
		uint64_t n = h.len - off < INT_MAX / 2 ? h.len - off : INT_MAX / 2;

		MPI_Bcast(p + off, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
	}
	*blob = p;
	*len = h.len;
	return 0;
}

/* Every rank: the trainer from the blob on this rank's copy of the data. */
static int build(struct rank *r, const char *data_dir, const uint8_t *blob, uint64_t len,
		 struct dataset **ds, struct trainer **t, struct tr_err *err)
{
	struct checkpoint_info info;
	char dir[4096];
	int rc;

	rc = checkpoint_inspect(blob, len, &info, err);
	if (rc < 0)
		return rc;
	if (snprintf(dir, sizeof(dir), "%s/%s", data_dir, info.cfg.dataset) >= (int)sizeof(dir))
		return tr_err_set(err, -ENAMETOOLONG, "data dir: path too long");
	rc = dataset_load(ds, dir, err);
	if (rc < 0)
		return rc;
	rc = checkpoint_restore(t, blob, len, *ds, false, err);
	if (rc < 0)
		return rc;
	return trainer_set_comm(*t, &r->comm, err);
}

/* Every rank: did every rank start? A failure's message names its rank. */
static int all_started(struct rank *r, int rc, const struct tr_err *err, struct tr_err *first)
{
	struct status {
		int32_t rc;
		char msg[200];
	} mine = { .rc = rc }, *all = calloc((size_t)r->size, sizeof(*all));
	int out = 0;

	if (!all)
		MPI_Abort(MPI_COMM_WORLD, 4);
	snprintf(mine.msg, sizeof(mine.msg), "%.199s", rc < 0 ? err->msg : "");
	MPI_Allgather(&mine, sizeof(mine), MPI_BYTE, all, sizeof(mine), MPI_BYTE, MPI_COMM_WORLD);
	for (int i = 0; i < r->size; i++)
		if (all[i].rc < 0) {
			tr_err_set(first, all[i].rc, "rank %d: %s", i, all[i].msg);
			out = all[i].rc;
			break;
		}
	free(all);
	return out;
}

static int train(struct rank *r, struct trainer *t, struct tr_err *err)
{
	struct trainer_rate rate;
	double sps = 0;
	int rc;

	trainer_rate_start(&rate);

	for (;;) {
		int word = decide(r, r->rank == 0 ? hear(r, false) : RW_GO);

		if (word == RW_PAUSE || word == RW_SHUTDOWN) {
			if (r->rank == 0 && t->step > 0 && (rc = send_ckpt(r, t, NULL, err)) < 0)
				return rc;
			report_exit(r, word == RW_PAUSE ? JOB_PAUSED : JOB_RUNNING, 0, NULL);
			return 0;
		}
		if (word != RW_GO) {
			report_exit(r, word == RW_KILL ? JOB_KILLED : JOB_FAILED, 0, NULL);
			return 0;
		}
		if (trainer_finished(t)) {
			report_exit(r, JOB_DONE, 0, NULL);
			return 0;
		}
		if (trainer_epoch_done(t)) {
			struct history_row row;

			rc = trainer_end_epoch(t, &row);
			if (rc < 0)
				return tr_err_set(err, rc, "evaluation failed");
			word = RW_GO;
			if (r->rank == 0) {
				rc = send_ckpt(r, t, &row, err);
				word = rc < 0 ? RW_LOST : hear(r, true);
			}
			word = decide(r, word);
			if (word == RW_KILL || word == RW_FAIL) {
				report_exit(r, word == RW_KILL ? JOB_KILLED : JOB_FAILED, 0, NULL);
				return 0;
			}
			if (word == RW_PAUSE || word == RW_SHUTDOWN) {
				/* the epoch's checkpoint is the exact position */
				report_exit(r, word == RW_PAUSE ? JOB_PAUSED : JOB_RUNNING, 0, NULL);
				return 0;
			}
			continue;
		}
		rc = trainer_step(t);
		if (rc < 0)
			return tr_err_set(err, rc, "training step failed");
		sps = trainer_rate_step(&rate, t);
		if (r->rank == 0)
			send_progress(r, t, sps);
	}
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "contact", required_argument, NULL, 'c' },
		{ "data-dir", required_argument, NULL, 'D' },
		{ "job", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct rank r = { .fd = -1 };
	const char *contact_path = NULL, *data_dir = NULL;
	struct tr_err err = { 0 }, first = { 0 };
	struct dataset *ds = NULL;
	struct trainer *t = NULL;
	uint8_t *blob = NULL;
	uint64_t len = 0;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case 'c': contact_path = optarg; break;
		case 'D': data_dir = optarg; break;
		case 'j': r.job = strtoll(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: traind-rank --contact SOCKET --data-dir DIR --job ID (started by traind)\n");
			return 2;
		}
	}
	if (!contact_path || !data_dir) {
		fprintf(stderr, "usage: traind-rank --contact SOCKET --data-dir DIR --job ID (started by traind)\n");
		return 2;
	}
	/* The kernel traind chose (its OPENBLAS_CORETYPE, inherited), else by
	 * this CPU's features; before MPI_Init, as this may run us again. */
	if (blaskernel_start(argv, NULL, &err) < 0) {
		fprintf(stderr, "traind-rank: %s\n", err.msg);
		return 2;
	}
	if (blaskernel_state()->note[0])
		fprintf(stderr, "traind-rank: BLAS: %s\n", blaskernel_state()->note);
	/* As traind's own training threads: below the control path. */
	if (setpriority(PRIO_PROCESS, 0, RANK_NICE) < 0)
		perror("traind-rank: setpriority");
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &r.rank);
	MPI_Comm_size(MPI_COMM_WORLD, &r.size);
	r.comm = (struct trainer_comm){ .rank = (uint32_t)r.rank, .nranks = (uint32_t)r.size,
					.allgather = mpi_allgather };
	if (r.rank == 0) {
		r.fd = contact(contact_path, &err);
		if (r.fd < 0)
			MPI_Abort(MPI_COMM_WORLD, 5);   /* nobody to tell */
	}
	rc = get_blob(&r, &blob, &len, &err);
	if (rc < 0) {
		fprintf(stderr, "traind-rank %d: %s\n", r.rank, err.msg);
		MPI_Abort(MPI_COMM_WORLD, 6);
	}
	rc = build(&r, data_dir, blob, len, &ds, &t, &err);
	free(blob);
	if (rc < 0)
		fprintf(stderr, "traind-rank %d: %s\n", r.rank, err.msg);
	rc = all_started(&r, rc, &err, &first);
	if (rc == 0)
		rc = train(&r, t, &first);
	if (rc < 0) {
		fprintf(stderr, "traind-rank %d: %s\n", r.rank, first.msg);
		report_exit(&r, JOB_FAILED, rc, first.msg);
	}
	trainer_free(t);
	dataset_free(ds);
	if (r.fd >= 0)
		close(r.fd);
	MPI_Finalize();
	return 0;
}
