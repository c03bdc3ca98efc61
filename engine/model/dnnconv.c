/*
 * dnnconv.c - conv2d through oneDNN's primitives. See dnnconv.h.
 *
 * Per layer, a small cache of primitive sets, one per row count (a set: the
 * forward, the backward data and the backward weights, made on first use,
 * and the reorders between traind's NCHW / OIHW float32 and the layouts
 * the primitives chose). The primitives are made with format `any` so that
 * oneDNN picks its blocked layouts (nChw16c and the like: its direct jit
 * kernels); a reorder whose two layouts are the same is skipped.
 */
#include "engine/model/dnnconv.h"

#include <errno.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNN_SETS 8        /* row counts a layer keeps primitives for */
#define DNN_ALIGN 64

struct dnnctx {
	dnnl_engine_t eng;
	unsigned members;
	dnnl_stream_t *st;    /* (members), owned */
};

/* A reorder between two layouts of one tensor; p NULL: the same layout. */
struct reo {
	dnnl_primitive_t p;
	dnnl_memory_desc_t from, to, pad;         /* pad: its scratchpad */
};

struct dnnset {
	size_t rows;                              /* 0: unused slot */
	dnnl_memory_desc_t xu, yu;                /* traind's (rows, C, H, W) and (rows, OC, OH, OW) */
	dnnl_primitive_desc_t fpd;                /* the forward's, the backward's hint */
	dnnl_primitive_t fwd, bwdd, bwdw;         /* bwdd, bwdw NULL until a backward wants them */
	dnnl_memory_desc_t f_src, f_wei, f_dst;
	dnnl_memory_desc_t d_dsrc, d_wei, d_ddst;
	dnnl_memory_desc_t w_src, w_dwei, w_ddst;
	dnnl_memory_desc_t f_pad, d_pad, w_pad;   /* the three primitives' scratchpads */
	size_t pad;                               /* bytes: the largest scratchpad of the set's primitives */
	struct reo x_f, y_f, w_f;                 /* forward: x in, y out, W in */
	struct reo dy_d, dx_d, w_d;               /* backward data: dy in, dx out, W in */
	struct reo x_w, dy_w, dw_w;               /* backward weights: x in, dy in, dW out */
	void *wf, *wd;                            /* W in f_wei's and d_wei's layouts, owned (or NULL) */
	size_t fwd_scratch, bwd_scratch;          /* bytes of a member's scratch */
};

struct dnnconv {
	struct dnnctx *c;                         /* not owned */
	struct dnnconv_geom g;
	dnnl_memory_desc_t wu, bu;                /* traind's W (OIHW, or GOIHW) and bias (OC) */
	dnnl_primitive_attr_t attr;               /* every primitive's: the scratchpad is the caller's */
	const float *w;                           /* traind's W as the last prepare saw it (params) */
	struct dnnset sets[DNN_SETS];
	unsigned next;                            /* the slot the next new set takes when full */
};

static int dnn_fail(struct tr_err *err, dnnl_status_t s, const char *what)
{
	int rc = s == dnnl_out_of_memory ? -ENOMEM : -ENOTSUP;

	return tr_err_set(err, rc, "oneDNN: %s: %s", what, dnnl_status2str(s));
}

#define DNN(x, what)                                                   \
	do {                                                           \
		dnnl_status_t s_ = (x);                                \
		if (s_ != dnnl_success) {                              \
			rc = dnn_fail(err, s_, what);                  \
			goto out;                                      \
		}                                                      \
	} while (0)

int dnnctx_new(struct dnnctx **out, unsigned members, struct tr_err *err)
{
	struct dnnctx *c = calloc(1, sizeof(*c));
	int rc = 0;

	*out = NULL;
	if (!c || !(c->st = calloc(members, sizeof(*c->st)))) {
		free(c);
		return tr_err_set(err, -ENOMEM, "out of memory for oneDNN's streams");
	}
	c->members = members;
	DNN(dnnl_engine_create(&c->eng, dnnl_cpu, 0), "the CPU engine");
	for (unsigned m = 0; m < members; m++)
		DNN(dnnl_stream_create(&c->st[m], c->eng, dnnl_stream_default_flags), "a stream");
	*out = c;
	return 0;
out:
	dnnctx_free(c);
	return rc;
}

void dnnctx_free(struct dnnctx *c)
{
	if (!c)
		return;
	for (unsigned m = 0; m < c->members; m++)
		if (c->st[m])
			dnnl_stream_destroy(c->st[m]);
	if (c->eng)
		dnnl_engine_destroy(c->eng);
	free(c->st);
	free(c);
}

static const char *isa_name(dnnl_cpu_isa_t isa)
{
	switch ((int)isa) {
	case dnnl_cpu_isa_sse41: return "sse41";
	case dnnl_cpu_isa_avx: return "avx";
	case dnnl_cpu_isa_avx2: return "avx2";
	case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
	case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
	case dnnl_cpu_isa_avx512_core: return "avx512_core";
	case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
	case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
	case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
	case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
	case dnnl_cpu_isa_all: return "all";
	default: return "other";
	}
}

void dnnctx_describe(char *buf, size_t len)
{
	const dnnl_version_t *v = dnnl_version();

	snprintf(buf, len, "oneDNN %d.%d.%d %s", v->major, v->minor, v->patch,
		 isa_name(dnnl_get_effective_cpu_isa()));
}

int dnnconv_new(struct dnnconv **out, struct dnnctx *c, const struct dnnconv_geom *g, struct tr_err *err)
{
	struct dnnconv *d = calloc(1, sizeof(*d));
	dnnl_dims_t bd = { g->oc };
	int rc = 0;

	*out = NULL;
	if (!d)
		return tr_err_set(err, -ENOMEM, "out of memory for a convolution's primitives");
	d->c = c;
	d->g = *g;
	if (g->groups > 1) {
		dnnl_dims_t w5 = { g->groups, g->oc / g->groups, g->c / g->groups, g->k, g->k };

		DNN(dnnl_memory_desc_init_by_tag(&d->wu, 5, w5, dnnl_f32, dnnl_goihw), "the weights' layout");
	} else {
		dnnl_dims_t w4 = { g->oc, g->c, g->k, g->k };

		DNN(dnnl_memory_desc_init_by_tag(&d->wu, 4, w4, dnnl_f32, dnnl_oihw), "the weights' layout");
	}
	DNN(dnnl_memory_desc_init_by_tag(&d->bu, 1, bd, dnnl_f32, dnnl_x), "the bias's layout");
	/* A primitive's scratchpad in the calling member's scratch: the
	 * library's own would be shared by the members' concurrent calls. */
	DNN(dnnl_primitive_attr_create(&d->attr), "the primitives' attributes");
	DNN(dnnl_primitive_attr_set_scratchpad_mode(d->attr, dnnl_scratchpad_mode_user),
	    "the primitives' attributes");
	*out = d;
	return 0;
out:
	if (d->attr)
		dnnl_primitive_attr_destroy(d->attr);
	free(d);
	return rc;
}

static void reo_free(struct reo *r)
{
	if (r->p)
		dnnl_primitive_destroy(r->p);
	r->p = NULL;
}

static void set_free(struct dnnset *s)
{
	struct reo *r[] = { &s->x_f, &s->y_f, &s->w_f, &s->dy_d, &s->dx_d, &s->w_d, &s->x_w, &s->dy_w, &s->dw_w };

	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		reo_free(r[i]);
	if (s->fwd)
		dnnl_primitive_destroy(s->fwd);
	if (s->bwdd)
		dnnl_primitive_destroy(s->bwdd);
	if (s->bwdw)
		dnnl_primitive_destroy(s->bwdw);
	if (s->fpd)
		dnnl_primitive_desc_destroy(s->fpd);
	free(s->wf);
	free(s->wd);
	memset(s, 0, sizeof(*s));
}

void dnnconv_free(struct dnnconv *d)
{
	if (!d)
		return;
	for (unsigned i = 0; i < DNN_SETS; i++)
		set_free(&d->sets[i]);
	if (d->attr)
		dnnl_primitive_attr_destroy(d->attr);
	free(d);
}

static size_t align_up(size_t n)
{
	return (n + DNN_ALIGN - 1) / DNN_ALIGN * DNN_ALIGN;
}

static size_t md_bytes(const dnnl_memory_desc_t *md)
{
	return align_up(dnnl_memory_desc_get_size(md));
}

/* The scratchpad of pd into *md, and *most grown to it. */
static void pad_of(const_dnnl_primitive_desc_t pd, dnnl_memory_desc_t *md, size_t *most)
{
	*md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
	if (md_bytes(md) > *most)
		*most = md_bytes(md);
}

/* A reorder from -> to (none when the layouts are equal); *pad grown to
 * its scratchpad. */
static int reo_make(struct dnnconv *d, struct reo *r, const dnnl_memory_desc_t *from,
		    const dnnl_memory_desc_t *to, size_t *pad, struct tr_err *err)
{
	dnnl_primitive_desc_t pd = NULL;
	int rc = 0;

	r->from = *from;
	r->to = *to;
	r->p = NULL;
	if (dnnl_memory_desc_equal(from, to))
		return 0;
	DNN(dnnl_reorder_primitive_desc_create(&pd, from, d->c->eng, to, d->c->eng, d->attr), "a reorder");
	DNN(dnnl_primitive_create(&r->p, pd), "a reorder");
	pad_of(pd, &r->pad, pad);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return rc;
}

/* The scratch bytes a reorder's destination (source) takes, 0 when there is none. */
static size_t reo_bytes(const struct reo *r)
{
	return r->p ? md_bytes(&r->to) : 0;
}

static size_t reo_src_bytes(const struct reo *r)
{
	return r->p ? md_bytes(&r->from) : 0;
}

static void geom_arrays(const struct dnnconv_geom *g, dnnl_dims_t st, dnnl_dims_t dil, dnnl_dims_t pl,
			dnnl_dims_t pr)
{
	int64_t ph = (int64_t)(g->oh - 1) * g->stride + (int64_t)(g->k - 1) * g->dilation + 1 - g->h - g->padding;
	int64_t pw = (int64_t)(g->ow - 1) * g->stride + (int64_t)(g->k - 1) * g->dilation + 1 - g->w - g->padding;

	st[0] = st[1] = g->stride;
	dil[0] = dil[1] = g->dilation - 1;
	pl[0] = pl[1] = g->padding;
	pr[0] = ph;   /* PyTorch's floor: the right padding the last window reaches */
	pr[1] = pw;
}

/* The memory descriptor of like's dims with data type t in layout `any`. */
static dnnl_status_t any_md(dnnl_memory_desc_t *md, const dnnl_memory_desc_t *like, dnnl_data_type_t t)
{
	return dnnl_memory_desc_init_by_tag(md, like->ndims, like->dims, t, dnnl_format_tag_any);
}

/* A member's scratch: the scratchpad, then the reorders' buffers. */
static void set_sizes(struct dnnset *s)
{
	s->fwd_scratch = s->pad + reo_bytes(&s->x_f) + reo_src_bytes(&s->y_f);
	s->bwd_scratch = s->pad + reo_bytes(&s->x_w) + reo_bytes(&s->dy_w) + reo_src_bytes(&s->dw_w) +
			 reo_bytes(&s->dy_d) + reo_src_bytes(&s->dx_d);
}

static int set_forward(struct dnnconv *d, struct dnnset *s, size_t rows, struct tr_err *err)
{
	const struct dnnconv_geom *g = &d->g;
	dnnl_dims_t xd = { (int64_t)rows, g->c, g->h, g->w }, yd = { (int64_t)rows, g->oc, g->oh, g->ow };
	dnnl_dims_t st, dil, pl, pr;
	dnnl_data_type_t op = g->bf16 ? dnnl_bf16 : dnnl_f32;
	dnnl_memory_desc_t xa, wa, ya;
	dnnl_convolution_desc_t cd;
	int rc = 0;

	geom_arrays(g, st, dil, pl, pr);
	s->rows = rows;
	DNN(dnnl_memory_desc_init_by_tag(&s->xu, 4, xd, dnnl_f32, g->x_blk ? dnnl_nChw16c : dnnl_nchw),
	    "the input's layout");
	DNN(dnnl_memory_desc_init_by_tag(&s->yu, 4, yd, dnnl_f32, g->y_blk ? dnnl_nChw16c : dnnl_nchw),
	    "the output's layout");
	DNN(any_md(&xa, &s->xu, op), "the input's layout");
	DNN(any_md(&wa, &d->wu, op), "the weights' layout");
	DNN(any_md(&ya, &s->yu, dnnl_f32), "the output's layout");
	DNN(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &xa,
						       &wa, g->bias ? &d->bu : NULL, &ya, st, dil, pl, pr),
	    "the forward convolution");
	DNN(dnnl_primitive_desc_create(&s->fpd, &cd, d->attr, d->c->eng, NULL), "the forward convolution");
	DNN(dnnl_primitive_create(&s->fwd, s->fpd), "the forward convolution");
	pad_of(s->fpd, &s->f_pad, &s->pad);
	s->f_src = *dnnl_primitive_desc_query_md(s->fpd, dnnl_query_src_md, 0);
	s->f_wei = *dnnl_primitive_desc_query_md(s->fpd, dnnl_query_weights_md, 0);
	s->f_dst = *dnnl_primitive_desc_query_md(s->fpd, dnnl_query_dst_md, 0);
	rc = reo_make(d, &s->x_f, &s->xu, &s->f_src, &s->pad, err);
	if (rc == 0)
		rc = reo_make(d, &s->y_f, &s->f_dst, &s->yu, &s->pad, err);
	if (rc == 0)
		rc = reo_make(d, &s->w_f, &d->wu, &s->f_wei, &s->pad, err);
	if (rc == 0 && s->w_f.p && !(s->wf = aligned_alloc(DNN_ALIGN, reo_bytes(&s->w_f))))
		rc = tr_err_set(err, -ENOMEM, "out of memory for a convolution's weights");
	set_sizes(s);
out:
	return rc;
}

static int set_backward(struct dnnconv *d, struct dnnset *s, bool need_dx, struct tr_err *err)
{
	const struct dnnconv_geom *g = &d->g;
	dnnl_dims_t st, dil, pl, pr;
	dnnl_data_type_t op = g->bf16 ? dnnl_bf16 : dnnl_f32;
	dnnl_memory_desc_t xa, wa, ya, xf, wf;
	dnnl_convolution_desc_t cd;
	dnnl_primitive_desc_t pd = NULL;
	int rc = 0;

	geom_arrays(g, st, dil, pl, pr);
	DNN(any_md(&xa, &s->xu, op), "the input's layout");
	DNN(any_md(&wa, &d->wu, op), "the weights' layout");
	DNN(any_md(&ya, &s->yu, op), "the output gradient's layout");
	DNN(any_md(&xf, &s->xu, dnnl_f32), "the input gradient's layout");
	DNN(any_md(&wf, &d->wu, dnnl_f32), "the weight gradient's layout");
	if (!s->bwdw) {
		/* no bias: its gradient is the caller's float32 column sum of dy */
		DNN(dnnl_dilated_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &xa, &wf,
									NULL, &ya, st, dil, pl, pr),
		    "the backward-weights convolution");
		DNN(dnnl_primitive_desc_create(&pd, &cd, d->attr, d->c->eng, s->fpd),
		    "the backward-weights convolution");
		DNN(dnnl_primitive_create(&s->bwdw, pd), "the backward-weights convolution");
		pad_of(pd, &s->w_pad, &s->pad);
		s->w_src = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
		s->w_dwei = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
		s->w_ddst = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
		dnnl_primitive_desc_destroy(pd);
		pd = NULL;
		rc = reo_make(d, &s->x_w, &s->xu, &s->w_src, &s->pad, err);
		if (rc == 0)
			rc = reo_make(d, &s->dy_w, &s->yu, &s->w_ddst, &s->pad, err);
		if (rc == 0)
			rc = reo_make(d, &s->dw_w, &s->w_dwei, &d->wu, &s->pad, err);
		if (rc < 0)
			goto out;
	}
	if (need_dx && !s->bwdd) {
		DNN(dnnl_dilated_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &xf, &wa, &ya, st,
								     dil, pl, pr),
		    "the backward-data convolution");
		DNN(dnnl_primitive_desc_create(&pd, &cd, d->attr, d->c->eng, s->fpd), "the backward-data convolution");
		DNN(dnnl_primitive_create(&s->bwdd, pd), "the backward-data convolution");
		pad_of(pd, &s->d_pad, &s->pad);
		s->d_dsrc = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0);
		s->d_wei = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
		s->d_ddst = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
		rc = reo_make(d, &s->dy_d, &s->yu, &s->d_ddst, &s->pad, err);
		if (rc == 0)
			rc = reo_make(d, &s->dx_d, &s->d_dsrc, &s->xu, &s->pad, err);
		if (rc == 0)
			rc = reo_make(d, &s->w_d, &d->wu, &s->d_wei, &s->pad, err);
		if (rc == 0 && s->w_d.p && !(s->wd = aligned_alloc(DNN_ALIGN, reo_bytes(&s->w_d))))
			rc = tr_err_set(err, -ENOMEM, "out of memory for a convolution's weights");
		if (rc < 0)
			goto out;
	}
	set_sizes(s);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return rc;
}

static struct dnnset *set_find(struct dnnconv *d, size_t rows)
{
	for (unsigned i = 0; i < DNN_SETS; i++)
		if (d->sets[i].rows == rows)
			return &d->sets[i];
	return NULL;
}

/* Primitive p with its n args (room for one more) and its scratchpad
 * (padmd) at pad, on stream st, waited for. */
static void exec(struct dnnconv *d, dnnl_primitive_t p, dnnl_stream_t st, int n, dnnl_exec_arg_t *args,
		 const dnnl_memory_desc_t *padmd, void *pad)
{
	dnnl_memory_t mp = NULL;

	if (dnnl_memory_desc_get_size(padmd) > 0 && dnnl_memory_create(&mp, padmd, d->c->eng, pad) == dnnl_success)
		args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_SCRATCHPAD, mp };
	dnnl_primitive_execute(p, st, n, args);
	dnnl_stream_wait(st);
	if (mp)
		dnnl_memory_destroy(mp);
}

/* Reorder r from `from` to `to` (its scratchpad at pad). */
static void reo_run(struct dnnconv *d, dnnl_stream_t st, const struct reo *r, const void *from, void *to,
		    void *pad)
{
	dnnl_memory_t a = NULL, b = NULL;

	if (dnnl_memory_create(&a, &r->from, d->c->eng, (void *)from) == dnnl_success &&
	    dnnl_memory_create(&b, &r->to, d->c->eng, to) == dnnl_success) {
		dnnl_exec_arg_t args[3] = { { DNNL_ARG_FROM, a }, { DNNL_ARG_TO, b } };

		exec(d, r->p, st, 2, args, &r->pad, pad);
	}
	if (a)
		dnnl_memory_destroy(a);
	if (b)
		dnnl_memory_destroy(b);
}

int dnnconv_prepare(struct dnnconv *d, bool backward, bool need_dx, const size_t *rows, unsigned nm,
		    const float *w, size_t *scratch, struct tr_err *err)
{
	int rc = 0;

	d->w = w;
	omp_set_num_threads(1);   /* the split a primitive fixes when it is made: one thread */
	for (unsigned m = 0; m < nm; m++) {
		struct dnnset *s;
		size_t need;
		bool seen = false;

		if (rows[m] == 0)
			continue;
		for (unsigned p = 0; p < m; p++)
			seen = seen || rows[p] == rows[m];
		if (seen)
			continue;
		s = set_find(d, rows[m]);
		if (!s) {
			s = &d->sets[d->next];
			d->next = (d->next + 1) % DNN_SETS;
			set_free(s);
			rc = set_forward(d, s, rows[m], err);
			if (rc < 0) {
				set_free(s);
				return rc;
			}
		}
		if (backward && (!s->bwdw || (need_dx && !s->bwdd))) {
			rc = set_backward(d, s, need_dx, err);
			if (rc < 0)
				return rc;
		}
		/* the weights in the layouts this pass reads, once for every member */
		if ((!backward && s->w_f.p) || (backward && need_dx && s->w_d.p)) {
			void *pad = s->pad ? aligned_alloc(DNN_ALIGN, s->pad) : NULL;

			if (s->pad && !pad)
				return tr_err_set(err, -ENOMEM, "out of memory for a convolution's scratchpad");
			if (!backward)
				reo_run(d, d->c->st[0], &s->w_f, w, s->wf, pad);
			else
				reo_run(d, d->c->st[0], &s->w_d, w, s->wd, pad);
			free(pad);
		}
		need = backward ? s->bwd_scratch : s->fwd_scratch;
		if (need > *scratch)
			*scratch = need;
	}
	return rc;
}

static dnnl_memory_t mem(struct dnnconv *d, const dnnl_memory_desc_t *md, const void *p)
{
	dnnl_memory_t m = NULL;

	dnnl_memory_create(&m, md, d->c->eng, (void *)p);
	return m;
}

void dnnconv_forward(struct dnnconv *d, unsigned idx, size_t rows, const float *x, const float *b, float *y,
		     void *scratch)
{
	struct dnnset *s = set_find(d, rows);
	dnnl_stream_t st = d->c->st[idx];
	char *pad = scratch, *at = pad + (s ? s->pad : 0);
	const void *xs = x;
	void *ys = y;
	dnnl_memory_t m[4] = { NULL };

	if (rows == 0 || !s)
		return;
	omp_set_num_threads(1);
	if (s->x_f.p) {
		reo_run(d, st, &s->x_f, x, at, pad);
		xs = at;
		at += reo_bytes(&s->x_f);
	}
	if (s->y_f.p)
		ys = at;
	m[0] = mem(d, &s->f_src, xs);
	m[1] = mem(d, &s->f_wei, s->w_f.p ? s->wf : (const void *)d->w);
	m[2] = mem(d, &s->f_dst, ys);
	if (b)
		m[3] = mem(d, &d->bu, b);
	{
		dnnl_exec_arg_t a[5] = { { DNNL_ARG_SRC, m[0] }, { DNNL_ARG_WEIGHTS, m[1] }, { DNNL_ARG_DST, m[2] },
					 { DNNL_ARG_BIAS, m[3] } };

		exec(d, s->fwd, st, b ? 4 : 3, a, &s->f_pad, pad);
	}
	if (s->y_f.p)
		reo_run(d, st, &s->y_f, ys, y, pad);
	for (int i = 0; i < 4; i++)
		if (m[i])
			dnnl_memory_destroy(m[i]);
}

void dnnconv_backward(struct dnnconv *d, unsigned idx, size_t rows, const float *x, const float *dy,
		      float *dx, float *dw, void *scratch)
{
	struct dnnset *s = set_find(d, rows);
	dnnl_stream_t st = d->c->st[idx];
	char *pad = scratch, *at = pad + (s ? s->pad : 0);
	const void *xw = x, *dyw = dy, *dyd = dy;
	void *dws = dw, *dxs = dx;
	dnnl_memory_t m[7] = { NULL };

	if (rows == 0 || !s || !s->bwdw)
		return;
	omp_set_num_threads(1);
	if (s->x_w.p) {
		reo_run(d, st, &s->x_w, x, at, pad);
		xw = at;
		at += reo_bytes(&s->x_w);
	}
	if (s->dy_w.p) {
		reo_run(d, st, &s->dy_w, dy, at, pad);
		dyw = at;
		at += reo_bytes(&s->dy_w);
	}
	if (s->dw_w.p) {
		dws = at;
		at += reo_src_bytes(&s->dw_w);
	}
	m[0] = mem(d, &s->w_src, xw);
	m[1] = mem(d, &s->w_ddst, dyw);
	m[2] = mem(d, &s->w_dwei, dws);
	{
		dnnl_exec_arg_t a[4] = { { DNNL_ARG_SRC, m[0] }, { DNNL_ARG_DIFF_DST, m[1] },
					 { DNNL_ARG_DIFF_WEIGHTS, m[2] } };

		exec(d, s->bwdw, st, 3, a, &s->w_pad, pad);
	}
	if (s->dw_w.p)
		reo_run(d, st, &s->dw_w, dws, dw, pad);
	if (dx && s->bwdd) {
		if (s->dy_d.p && s->dy_w.p && dnnl_memory_desc_equal(&s->d_ddst, &s->w_ddst)) {
			dyd = dyw;   /* the layout backward weights read: reordered once */
		} else if (s->dy_d.p) {
			reo_run(d, st, &s->dy_d, dy, at, pad);
			dyd = at;
			at += reo_bytes(&s->dy_d);
		}
		if (s->dx_d.p)
			dxs = at;
		m[4] = mem(d, &s->d_ddst, dyd);
		m[5] = mem(d, &s->d_dsrc, dxs);
		m[6] = mem(d, &s->d_wei, s->w_d.p ? s->wd : (const void *)d->w);
		{
			dnnl_exec_arg_t a[4] = { { DNNL_ARG_DIFF_DST, m[4] }, { DNNL_ARG_WEIGHTS, m[6] },
						 { DNNL_ARG_DIFF_SRC, m[5] } };

			exec(d, s->bwdd, st, 3, a, &s->d_pad, pad);
		}
		if (s->dx_d.p)
			reo_run(d, st, &s->dx_d, dxs, dx, pad);
	}
	for (int i = 0; i < 7; i++)
		if (m[i])
			dnnl_memory_destroy(m[i]);
}
