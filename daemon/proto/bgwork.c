/*
 * bgwork.c - the methods' background work. See daemon/proto/bgwork.h.
 *
 * The queues. Every uid with tasks waiting or working has a struct
 * bg_peer: per class, a FIFO of its waiting tasks (linked through
 * t->qnext). Per class, the server keeps the turn list of the peers with
 * tasks waiting in it, in round-robin order: pump() takes the head peer's
 * first task, and moves that peer to the tail if it has more. A peer lives
 * while it has tasks waiting or working (refs).
 */
#include "daemon/proto/bgwork.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/log.h"

#define LOG_EVERY_MS 1000         /* refusals are logged at most this often */

struct bg_queue {
	struct bg_task *head, *tail;
	unsigned n;
};

struct bg_peer {
	uid_t uid;
	unsigned refs;                   /* its tasks, waiting or working */
	struct bg_queue q[BG_NCLASSES];  /* waiting */
	struct bg_peer *turn_next[BG_NCLASSES];
	bool in_turn[BG_NCLASSES];
	struct bg_peer *next;            /* all peers */
};

struct bgwork {
	uv_loop_t *loop;
	char *db_path;               /* owned copy */
	struct bg_peer *peers;
	struct bg_peer *turn_head[BG_NCLASSES], *turn_tail[BG_NCLASSES];
	unsigned running[BG_NCLASSES];
	unsigned slots_all, slots_heavy;
	unsigned waiting;            /* in all the queues */
	uint64_t refused;
	uint64_t log_next;           /* refusals: when the next may be logged */
	unsigned log_skipped;
};

static const char *const class_what[BG_NCLASSES] = {
	[BG_HEAVY] = "Eval, Export, Predict, Datasets, imports, Start's checks",
	[BG_READ] = "History, Steps, Checkpoints",
};

/* libuv's pool size, as libuv reads it (uv__threadpool_init). */
static unsigned pool_threads(void)
{
	const char *v = getenv("UV_THREADPOOL_SIZE");
	long n = v ? strtol(v, NULL, 10) : 4;

	if (n < 1)
		n = 1;
	if (n > 1024)
		n = 1024;
	return (unsigned)n;
}

struct bgwork *bgwork_new(uv_loop_t *loop, const char *db_path)
{
	struct bgwork *q = calloc(1, sizeof(*q));
	unsigned threads = pool_threads();

	if (!q)
		return NULL;
	q->loop = loop;
	q->db_path = strdup(db_path);
	if (!q->db_path) {
		free(q);
		return NULL;
	}
	q->slots_all = threads > 1 ? threads - 1 : 1;
	q->slots_heavy = threads > 2 ? threads - 2 : 1;
	log_info("background work: %u tasks on libuv's %u threads at once, %u of them heavy; %d waiting per uid "
		 "and class", q->slots_all, threads, q->slots_heavy, BG_MAX_UID_QUEUED);
	return q;
}

void bgwork_free(struct bgwork *q)
{
	if (!q)
		return;
	/* the server cancels every call before the loop stops, so nothing
	 * waits; should something, it is released unanswered */
	while (q->peers) {
		struct bg_peer *p = q->peers;

		q->peers = p->next;
		for (int k = 0; k < BG_NCLASSES; k++) {
			while (p->q[k].head) {
				struct bg_task *t = p->q[k].head;

				p->q[k].head = t->qnext;
				t->release(t);
			}
		}
		free(p);
	}
	free(q->db_path);
	free(q);
}

void bgwork_counts(const struct bgwork *q, struct bg_counts *out)
{
	out->waiting = q->waiting;
	out->running = q->running[BG_HEAVY] + q->running[BG_READ];
	out->refused = q->refused;
}

void *bg_task_new(struct call *c, size_t size, void (*work)(struct bg_task *t),
		  bool (*after)(struct bg_task *t), void (*release)(struct bg_task *t))
{
	struct bg_task *t = calloc(1, size);

	if (!t) {
		call_error(c, PROTO_STORAGE_ERROR, &(struct proto_detail){ .message = "out of memory" });
		return NULL;
	}
	t->c = c;
	t->work = work;
	t->after = after;
	t->release = release;
	t->error = PROTO_STORAGE_ERROR;
	t->req.data = t;
	return t;
}

/* ---- peers and their queues ---------------------------------------------- */

static struct bg_peer *peer_get(struct bgwork *q, uid_t uid)
{
	struct bg_peer *p;

	for (p = q->peers; p; p = p->next)
		if (p->uid == uid)
			return p;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->uid = uid;
	p->next = q->peers;
	q->peers = p;
	return p;
}

/* A task of p's ended or left the queue without running. */
static void peer_put(struct bgwork *q, struct bg_peer *p)
{
	struct bg_peer **pp;

	if (--p->refs > 0)
		return;
	for (pp = &q->peers; *pp && *pp != p; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = p->next;
	free(p);
}

static void turn_append(struct bgwork *q, struct bg_peer *p, int k)
{
	p->turn_next[k] = NULL;
	if (q->turn_tail[k])
		q->turn_tail[k]->turn_next[k] = p;
	else
		q->turn_head[k] = p;
	q->turn_tail[k] = p;
	p->in_turn[k] = true;
}

static void turn_remove(struct bgwork *q, struct bg_peer *p, int k)
{
	struct bg_peer *prev = NULL;

	if (!p->in_turn[k])
		return;
	for (struct bg_peer *i = q->turn_head[k]; i && i != p; i = i->turn_next[k])
		prev = i;
	if (prev)
		prev->turn_next[k] = p->turn_next[k];
	else
		q->turn_head[k] = p->turn_next[k];
	if (q->turn_tail[k] == p)
		q->turn_tail[k] = prev;
	p->turn_next[k] = NULL;
	p->in_turn[k] = false;
}

/* The next task of class k in round robin (NULL: none waits), out of its queue. */
static struct bg_task *take_next(struct bgwork *q, int k)
{
	struct bg_peer *p = q->turn_head[k];
	struct bg_task *t;

	if (!p)
		return NULL;
	t = p->q[k].head;
	p->q[k].head = t->qnext;
	if (!p->q[k].head)
		p->q[k].tail = NULL;
	p->q[k].n--;
	q->waiting--;
	t->qnext = NULL;
	t->waiting = false;
	turn_remove(q, p, k);
	if (p->q[k].head)
		turn_append(q, p, k);   /* its next turn: after the others' */
	return t;
}

/* ---- running ------------------------------------------------------------- */

static void on_cancel(void *arg);
static void on_work(uv_work_t *req);
static void on_after(uv_work_t *req, int status);

/* Answer the call (if it is still there) and release the task. */
static void finish(struct bg_task *t)
{
	if (t->c) {
		call_on_cancel(t->c, NULL, NULL);
		if (t->rc < 0) {
			if (!t->detail.message)
				t->detail.message = t->err.msg;
			call_error(t->c, t->error, &t->detail);
		} else {
			call_reply(t->c, t->result, false);
			t->result = NULL;
		}
	}
	json_decref(t->result);
	t->result = NULL;
	t->release(t);
}

/* Put waiting tasks on the pool while there are slots: reads first. */
static void pump(struct bgwork *q)
{
	for (;;) {
		unsigned all = q->running[BG_HEAVY] + q->running[BG_READ];
		struct bg_task *t = NULL;

		if (all >= q->slots_all)
			return;
		if (q->turn_head[BG_READ])
			t = take_next(q, BG_READ);
		else if (q->turn_head[BG_HEAVY] && q->running[BG_HEAVY] < q->slots_heavy)
			t = take_next(q, BG_HEAVY);
		if (!t)
			return;
		q->running[t->cls]++;
		if (uv_queue_work(q->loop, &t->req, on_work, on_after) < 0) {
			/* never with a valid loop and request */
			t->rc = -EAGAIN;
			t->error = PROTO_STORAGE_ERROR;
			t->detail.message = "cannot queue work";
			q->running[t->cls]--;
			finish(t);
			peer_put(q, t->peer);
		}
	}
}

static void on_cancel(void *arg)
{
	struct bg_task *t = arg;
	struct bgwork *q = t->q;
	struct bg_peer *p = t->peer;
	struct bg_task **tp, *prev = NULL;
	int k = t->cls;

	t->c = NULL;
	if (!t->waiting)
		return;   /* working: it ends unanswered */
	/* still waiting: it leaves the queue and never runs */
	for (tp = &p->q[k].head; *tp && *tp != t; tp = &(*tp)->qnext)
		prev = *tp;
	if (*tp)
		*tp = t->qnext;
	if (p->q[k].tail == t)
		p->q[k].tail = prev;
	p->q[k].n--;
	q->waiting--;
	if (!p->q[k].head)
		turn_remove(q, p, k);
	t->waiting = false;
	t->release(t);
	peer_put(q, p);
}

static void on_work(uv_work_t *req)
{
	struct bg_task *t = req->data;

	t->work(t);
	store_close(t->store);
	t->store = NULL;
}

static void on_after(uv_work_t *req, int status)
{
	struct bg_task *t = req->data;
	struct bgwork *q = t->q;
	struct bg_peer *p = t->peer;
	int k = t->cls;

	(void)status;
	if (t->after && t->after(t))
		return;   /* resubmitted: it keeps its slot */
	finish(t);
	q->running[k]--;
	peer_put(q, p);
	pump(q);
}

/* Refuse t: its uid's queue of its class is full. */
static void refuse(struct bgwork *q, struct bg_task *t, const struct bg_peer *p)
{
	char msg[256];
	uint64_t now = uv_now(q->loop);

	q->refused++;
	if (now >= q->log_next) {
		log_warn("refused a call of uid %u: %u background tasks of that uid waiting (%s; and %u refusals "
			 "not logged)", (unsigned)p->uid, p->q[t->cls].n, class_what[t->cls], q->log_skipped);
		q->log_next = now + LOG_EVERY_MS;
		q->log_skipped = 0;
	} else {
		q->log_skipped++;
	}
	snprintf(msg, sizeof(msg), "uid %u has %u background tasks waiting (%s), the most one user may queue; "
		 "wait for some to finish", (unsigned)p->uid, p->q[t->cls].n, class_what[t->cls]);
	call_error(t->c, PROTO_TOO_MANY_REQUESTS, &(struct proto_detail){ .message = msg });
	t->c = NULL;
	t->release(t);
}

static bool enqueue(struct bgwork *q, struct bg_task *t, bool refusable);

bool bg_submit(struct bgwork *q, struct bg_task *t)
{
	t->q = q;
	if ((int)t->cls < 0 || t->cls >= BG_NCLASSES)
		t->cls = BG_HEAVY;
	t->uid = call_uid(t->c);
	return enqueue(q, t, true);
}

/* Put t in its uid's queue of its class and pump; a call's task
 * (refusable) is refused when that queue is full. */
static bool enqueue(struct bgwork *q, struct bg_task *t, bool refusable)
{
	int k = t->cls;
	struct bg_peer *p = peer_get(q, t->uid);

	if (!p) {
		if (t->c)
			call_error(t->c, PROTO_STORAGE_ERROR, &(struct proto_detail){ .message = "out of memory" });
		t->c = NULL;
		t->release(t);
		return false;
	}
	if (refusable && p->q[k].n >= BG_MAX_UID_QUEUED) {
		refuse(q, t, p);
		return false;
	}
	p->refs++;
	t->peer = p;
	t->waiting = true;
	t->qnext = NULL;
	if (p->q[k].tail)
		p->q[k].tail->qnext = t;
	else
		p->q[k].head = t;
	p->q[k].tail = t;
	p->q[k].n++;
	q->waiting++;
	if (!p->in_turn[k])
		turn_append(q, p, k);
	if (t->c)
		call_on_cancel(t->c, on_cancel, t);
	pump(q);
	return true;
}

/* bg_post's task: the poster's hooks around the data. */
struct bg_posted {
	struct bg_task t;            /* first */
	void (*work)(void *data);
	void (*done)(void *data);
	void *data;
};

static void posted_work(struct bg_task *t)
{
	struct bg_posted *x = (struct bg_posted *)t;

	x->work(x->data);
}

static bool posted_after(struct bg_task *t)
{
	struct bg_posted *x = (struct bg_posted *)t;

	x->done(x->data);
	return false;
}

static void posted_release(struct bg_task *t)
{
	free(t);
}

int bg_post(struct bgwork *q, uid_t uid, void (*work)(void *data), void (*done)(void *data), void *data)
{
	struct bg_posted *x = calloc(1, sizeof(*x));

	if (!x)
		return -ENOMEM;
	x->t.work = posted_work;
	x->t.after = posted_after;
	x->t.release = posted_release;
	x->t.error = PROTO_STORAGE_ERROR;
	x->t.req.data = &x->t;
	x->t.cls = BG_HEAVY;
	x->t.q = q;
	x->t.uid = uid;
	x->work = work;
	x->done = done;
	x->data = data;
	if (!enqueue(q, &x->t, false))
		return -ENOMEM;   /* released */
	return 0;
}

bool bg_resubmit(struct bg_task *t, void (*work)(struct bg_task *t), bool (*after)(struct bg_task *t))
{
	void (*old_work)(struct bg_task *t) = t->work;
	bool (*old_after)(struct bg_task *t) = t->after;

	t->work = work;
	t->after = after;
	if (uv_queue_work(t->q->loop, &t->req, on_work, on_after) == 0)
		return true;
	t->work = old_work;
	t->after = old_after;
	return false;
}

int bg_store(struct bg_task *t, struct store **out, struct tr_err *err)
{
	int rc = 0;

	if (!t->store)
		rc = store_open(&t->store, t->q->db_path, true, err);
	*out = t->store;
	return rc;
}

int bg_fail(struct bg_task *t, enum proto_source from, int rc)
{
	t->rc = rc < 0 ? rc : -EIO;
	t->error = proto_error_of(from, t->rc);
	return t->rc;
}
