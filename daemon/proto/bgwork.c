/*
 * bgwork.c - the methods' background work. See daemon/proto/bgwork.h.
 */
#include "daemon/proto/bgwork.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct bgwork {
	uv_loop_t *loop;
	char *db_path;               /* owned copy */
};

struct bgwork *bgwork_new(uv_loop_t *loop, const char *db_path)
{
	struct bgwork *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->loop = loop;
	q->db_path = strdup(db_path);
	if (!q->db_path) {
		free(q);
		return NULL;
	}
	return q;
}

void bgwork_free(struct bgwork *q)
{
	if (!q)
		return;
	free(q->db_path);
	free(q);
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

static void on_cancel(void *arg)
{
	struct bg_task *t = arg;

	t->c = NULL;
}

static void on_work(uv_work_t *req)
{
	struct bg_task *t = req->data;

	t->work(t);
	store_close(t->store);
	t->store = NULL;
}

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

static void on_after(uv_work_t *req, int status)
{
	struct bg_task *t = req->data;

	(void)status;
	if (t->after && t->after(t))
		return;
	finish(t);
}

bool bg_submit(struct bgwork *q, struct bg_task *t)
{
	t->q = q;
	call_on_cancel(t->c, on_cancel, t);
	if (uv_queue_work(q->loop, &t->req, on_work, on_after) < 0) {
		call_on_cancel(t->c, NULL, NULL);
		call_error(t->c, PROTO_STORAGE_ERROR, &(struct proto_detail){ .message = "cannot queue work" });
		t->c = NULL;
		t->release(t);
		return false;
	}
	return true;
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
