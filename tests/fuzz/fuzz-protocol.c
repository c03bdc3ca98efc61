/*
 * fuzz-protocol.c - libFuzzer harness for the control socket: varlink
 * framing (server.c) and request dispatch with parameter validation
 * (methods.c, the verbs of jobs.c and waiters.c), in process, without training.
 *
 * Set-up (once): a temporary directory with a data dir holding one tiny IDX
 * dataset "tiny" (48 + 12 images of 4x4), and a template database with five
 * jobs on it (paused with an epoch checkpoint and history, done, failed,
 * queued, killed). A private uv loop.
 *
 * Per input: the template database is copied and a daemon is built on it
 * with daemon_new (jobs recovered, a store thread, a server listening on a
 * socket in the temporary directory), as traind's main() does; max_running is 0,
 * so the scheduler never starts a worker: a Start is validated (config,
 * dataset, init_from model) and stored as a queued job, but nothing trains.
 * A client connects; the input (after its first byte) is written to the
 * socket in chunks whose sizes come from the first byte, while the loop runs
 * without blocking; then the loop runs until it is quiet (no thread-pool
 * work, the store thread idle, no new replies), at most a bounded number of
 * rounds. The client closes, pending calls are cancelled, and daemon_free
 * stops the store thread, closes the server and frees the registry.
 *
 * Checks beyond "no crash": every reply is NUL-terminated JSON, an object
 * with a "parameters" object and, for an error, an "error" string in the
 * io.traind or org.varlink.service interface; a reply that says "continues"
 * comes only for a call with "more"; the server never closes the connection
 * on its own (the input is always far below SERVER_MAX_MESSAGE).
 *
 * Run with -close_fd_mask=2 to silence traind's log (libFuzzer keeps its own
 * and the sanitizers' reports). FUZZ_PROTOCOL_VERBOSE=1 prints each reply.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/lib/testutil.h"
#include "traind/checkpoint.h"
#include "daemon/daemon.h"
#include "daemon/jobs/jobs.h"
#include "daemon/proto/server.h"
#include "daemon/store/store.h"
#include "daemon/store/storeq.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)
#define DIE(...) do { fprintf(stderr, "fuzz-protocol: " __VA_ARGS__); abort(); } while (0)

#define MAX_ROUNDS 4000       /* loop rounds per input */

static char tmpdir[256];
static char data_dir[512];
static char template_db[512];
static char work_db[512];
static char sock_path[512];
static uv_loop_t loop;
static struct daemon *D;

/* Replies received for the current input. */
static char *rbuf;
static size_t rlen, rcap;
static bool saw_more_call;
static bool verbose;          /* FUZZ_PROTOCOL_VERBOSE=1: print the replies */

/* ---- set-up --------------------------------------------------------------- */

static void tiny_config(struct train_config *cfg)
{
	config_defaults(cfg);
	snprintf(cfg->dataset, sizeof(cfg->dataset), "tiny");
	cfg->epochs = 3;
	cfg->batch_size = 8;
	cfg->eval_batch_size = 8;
	cfg->val_size = 8;
	cfg->hidden[0] = 4;
	cfg->threads = 1;
}

/* A job row named `name`, in `state`, with `epochs_done` committed epochs of a
 * real trainer. */
static void make_job(struct store *s, const struct dataset *ds, const char *name,
		     enum job_state state, uint32_t epochs_done, bool position, const char *error)
{
	struct train_config cfg;
	struct trainer *t = NULL;
	struct tr_err err = { 0 };
	json_t *cj;
	char *text;
	int64_t id = 0;

	tiny_config(&cfg);
	cj = config_to_json(&cfg);
	text = json_dumps(cj, JSON_COMPACT | JSON_SORT_KEYS);
	if (store_job_create(s, name, text, cfg.epochs, 3, JOB_QUEUED, &id, &err) < 0)
		DIE("%s\n", err.msg);
	free(text);
	json_decref(cj);
	if (trainer_new(&t, &cfg, ds, &err) < 0)
		DIE("%s\n", err.msg);
	for (uint32_t e = 0; e < epochs_done; e++) {
		struct history_row row;
		uint8_t *blob = NULL;
		size_t len = 0;
		struct checkpoint_info info;

		run_trainer(t, (long)t->steps_per_epoch);
		trainer_end_epoch(t, &row);
		if (checkpoint_save(t, &blob, &len, &err) < 0 ||
		    checkpoint_inspect(blob, len, &info, &err) < 0 ||
		    store_commit_epoch(s, id, &row, blob, len, info.checksum, &err) < 0)
			DIE("%s\n", err.msg);
		free(blob);
	}
	if (position) {
		uint8_t *blob = NULL;
		size_t len = 0;
		struct checkpoint_info info;

		run_trainer(t, 2);
		if (checkpoint_save(t, &blob, &len, &err) < 0 ||
		    checkpoint_inspect(blob, len, &info, &err) < 0 ||
		    store_save_position(s, id, t->epoch, t->step, blob, len, info.checksum, &err) < 0)
			DIE("%s\n", err.msg);
		free(blob);
	}
	trainer_free(t);
	if (store_job_set_state(s, id, state, error, &err) < 0)
		DIE("%s\n", err.msg);
}

static void make_template(void)
{
	char dir[1024];
	struct dataset *syn = make_synthetic(48, 12, 4, 11);
	struct dataset *ds = NULL;
	struct store *s = NULL;
	struct tr_err err = { 0 };

	snprintf(dir, sizeof(dir), "%s/tiny", data_dir);
	if (mkdir(data_dir, 0755) < 0 || mkdir(dir, 0755) < 0)
		DIE("mkdir %s: %s\n", dir, strerror(errno));
	if (write_idx_pair(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", &syn->train) < 0 ||
	    write_idx_pair(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", &syn->test) < 0)
		DIE("cannot write the dataset in %s\n", dir);
	free_synthetic(syn);
	if (dataset_load(&ds, dir, &err) < 0)
		DIE("%s\n", err.msg);
	if (store_open(&s, template_db, false, &err) < 0)
		DIE("%s\n", err.msg);
	make_job(s, ds, "paused", JOB_PAUSED, 1, true, NULL);            /* id 1 */
	make_job(s, ds, "done", JOB_DONE, 3, false, NULL);               /* id 2 */
	make_job(s, ds, "failed", JOB_FAILED, 1, false, "a failure");    /* id 3 */
	make_job(s, ds, "queued", JOB_QUEUED, 0, false, NULL);           /* id 4 */
	make_job(s, ds, "killed", JOB_KILLED, 2, true, NULL);            /* id 5 */
	store_close(s);
	dataset_free(ds);
}

static void cleanup_tmpdir(void)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz-protocol: cannot remove %s\n", tmpdir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *base = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	verbose = getenv("FUZZ_PROTOCOL_VERBOSE") != NULL;
	snprintf(tmpdir, sizeof(tmpdir), "%s/fuzz-protocol-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir))
		DIE("mkdtemp: %s\n", strerror(errno));
	atexit(cleanup_tmpdir);
	snprintf(data_dir, sizeof(data_dir), "%s/data", tmpdir);
	snprintf(template_db, sizeof(template_db), "%s/template.db", tmpdir);
	snprintf(work_db, sizeof(work_db), "%s/work.db", tmpdir);
	snprintf(sock_path, sizeof(sock_path), "%s/s", tmpdir);
	make_template();

	if (uv_loop_init(&loop) < 0)
		DIE("uv_loop_init\n");
	return 0;
}

/* A fresh daemon on a copy of the template database. */
static void daemon_reset(void)
{
	struct daemon_config cfg = {
		.loop = &loop,
		.db_path = work_db,
		.data_dir = data_dir,
		.max_running = 0,   /* the scheduler never starts a worker */
		.listen_fd = -1,
		.socket_path = sock_path,
	};
	char wal[600], cmd[1200];
	struct tr_err err = { 0 };

	snprintf(wal, sizeof(wal), "%s-wal", work_db);
	unlink(wal);
	snprintf(wal, sizeof(wal), "%s-shm", work_db);
	unlink(wal);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", template_db, work_db);
	if (system(cmd) != 0)
		DIE("cannot copy the template database\n");
	if (daemon_new(&D, &cfg, &err) < 0)
		DIE("%s\n", err.msg);
}

/* ---- the client ------------------------------------------------------------ */

static int client_connect(void)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		DIE("socket: %s\n", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		DIE("connect: %s\n", strerror(errno));
	return fd;
}

/* Read what is there; true if anything came. Checks the server keeps the
 * connection open. */
static bool client_read(int fd)
{
	bool got = false;

	for (;;) {
		ssize_t n;

		if (rcap - rlen < 65536) {
			rcap = rcap ? rcap * 2 : 1 << 17;
			rbuf = realloc(rbuf, rcap);
			CHECK(rbuf != NULL);
		}
		n = recv(fd, rbuf + rlen, rcap - rlen, 0);
		if (n < 0) {
			CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
			return got;
		}
		CHECK(n > 0);   /* EOF: the server closed on its own */
		rlen += (size_t)n;
		got = true;
	}
}

static void check_reply(const char *text, size_t len)
{
	json_error_t jerr;
	json_t *m = json_loadb(text, len, 0, &jerr);
	json_t *params, *error, *cont;

	CHECK(m != NULL && json_is_object(m));
	params = json_object_get(m, "parameters");
	error = json_object_get(m, "error");
	cont = json_object_get(m, "continues");
	CHECK(json_is_object(params));
	if (error) {
		const char *e = json_string_value(error);

		CHECK(e != NULL);
		CHECK(strncmp(e, "io.traind.", 10) == 0 || strncmp(e, "org.varlink.service.", 20) == 0);
		CHECK(cont == NULL);
	}
	if (cont) {
		CHECK(json_is_true(cont));
		CHECK(saw_more_call);
	}
	json_decref(m);
}

/* The replies; with `quiet`, the last one must be complete too. */
static void check_replies(bool quiet)
{
	size_t off = 0;

	while (off < rlen) {
		char *nul = memchr(rbuf + off, '\0', rlen - off);

		if (!nul && !quiet)
			break;
		CHECK(nul != NULL);   /* every reply is complete once the loop is quiet */
		if (verbose)
			fprintf(stderr, "reply: %.300s\n", rbuf + off);
		check_reply(rbuf + off, (size_t)(nul - (rbuf + off)));
		off = (size_t)(nul - rbuf) + 1;
	}
}

static int noop_fn(struct store *s, void *arg, struct tr_err *err)
{
	(void)s;
	(void)arg;
	(void)err;
	return 0;
}

/* Nothing in flight that could still produce a reply. */
static bool busy(void)
{
	return loop.active_reqs.count > 0;
}

/* Run the loop until quiet, feeding `data` in chunks. False when it did
 * not get quiet within MAX_ROUNDS. */
static bool drive(int fd, const uint8_t *data, size_t size, uint8_t chunking)
{
	size_t written = 0;
	unsigned k = 0;
	int quiet = 0;

	for (int round = 0; round < MAX_ROUNDS; round++) {
		bool progress = false;

		if (written < size) {
			/* chunking 0: all at once; else lengths cycling through 1..chunking */
			size_t want = chunking ? 1 + (k++ * 7u) % chunking : size - written;
			ssize_t n;

			if (want > size - written)
				want = size - written;
			n = send(fd, data + written, want, MSG_NOSIGNAL);
			if (n > 0) {
				written += (size_t)n;
				progress = true;
			} else {
				CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
			}
		}
		uv_run(&loop, UV_RUN_NOWAIT);
		if (client_read(fd))
			progress = true;
		if (progress || written < size) {
			quiet = 0;
			continue;
		}
		if (busy()) {
			usleep(100);
			continue;
		}
		/* Let the store thread finish what it was given, then deliver it. */
		storeq_call(D->sq, noop_fn, NULL, NULL);
		uv_run(&loop, UV_RUN_NOWAIT);
		if (client_read(fd) || busy()) {
			quiet = 0;
			continue;
		}
		if (++quiet >= 2)
			return true;
	}
	return false;
}

/* Close the client; wait until the server has dropped the connection and all
 * work it started is done; free the daemon (its store thread stops, its
 * server closes, the completions it posted last run). */
static void teardown(int fd)
{
	close(fd);
	for (int round = 0; round < 100000; round++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		if (server_connections(D->server) == 0 && !busy())
			break;
		usleep(50);
	}
	CHECK(server_connections(D->server) == 0 && !busy());
	daemon_free(D);
	D = NULL;
	unlink(sock_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool quiet;
	int fd;

	if (size < 1)
		return 0;
	daemon_reset();
	rlen = 0;
	/* "more" as a key, or maybe spelled with escapes */
	saw_more_call = memmem(data, size, "more", 4) != NULL || memchr(data, '\\', size) != NULL;
	fd = client_connect();
	quiet = drive(fd, data + 1, size - 1, data[0] & 0x3f);
	client_read(fd);
	check_replies(quiet);
	teardown(fd);
	return 0;
}
