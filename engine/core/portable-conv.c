/*
 * portable-conv.c - conv2d on the portable kernels: forward, weight and
 * bias gradients of a chunk of samples, and the gradient at the input, with
 * the same bits on every path and at every team size. See
 * include/traind/portable.h; the arithmetic is doc/portable.md's
 * ("Convolutions").
 *
 * Design. No im2col: the tiles read the input where it lies, in a
 * zero-padded copy split into stride x stride phase planes (xph: channel c,
 * phase (a, b) holds the padded input's rows a, a + s, ... and columns b,
 * b + s, ...), so that tap (c, i, j) of every output pixel (oy, ox) is at
 * the same offset koff[q] from oy * wph + ox, whatever the stride and the
 * dilation: a convolution is a GEMM whose k-th row of B is a shifted view
 * of the input (implicit GEMM).
 *   - forward: rows = output channels, vectors along the pixels of the
 *     "wide" map (oh rows of wph, the columns past ow computed and dropped),
 *     one chain per output element over the taps in order from the bias:
 *     the im2col GEMM's chain, padding zeros included.
 *   - weight gradient of a chunk: each (output channel, tap) pair is a dot
 *     product over the chunk's samples and pixels in 16 lanes (pixel t into
 *     lane t mod 16), one tree at the end: the 2-D association of the other
 *     reductions, with the samples as the rows. The taps' input values are
 *     copied dense a few taps at a time (pack_taps: the im2col rows of those
 *     taps for the chunk), then every block of output channels runs over
 *     them.
 *   - gradient at the input: dx = +0, then for each kernel position (i, j)
 *     in order dx + (a chain over the output channels from +0), with dy
 *     zero-dilated by the stride and padded (dyz): for stride 1 this is
 *     k_col2im's order on dcol = W^T dy exactly (every value it adds is the
 *     same; the positions off the map add chains of zeros, +0), and it is
 *     one definition for every stride. Rows = input channels, vectors along
 *     the wide map of dx. At stride s > 1, dyz is zero at all but one in s^2
 *     places: dx is computed by output phases (a, b) (its rows a, a + s, ...
 *     and columns b, b + s, ...), for which kernel position (i, j) reads
 *     dyz's non-zero places only or its zeros only, whichever the phase. A
 *     position that reads zeros only is a chain of fmaf(w, +0, .) from +0,
 *     which is +0 whenever the group's weights are finite, so it is added as
 *     +0 in its turn (PK_GROUP_ZERO) instead of computed; the others read dy
 *     undilated (padded: dq_*). A group with a weight inf or NaN takes the
 *     dyz way (a chain through inf * 0 is NaN). The same bits, a quarter of
 *     the work at stride 2.
 * None of it depends on the vector width: the chains are per element, the
 * lanes are 16 on every path, the tiles only change what is in registers.
 *
 * Thread: pk_conv_init/deinit by the owner of the struct; the others from
 * any thread at once, each with its own scratch.
 */
#include "traind/portable.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/portable-isa.h"

#define XPH_FRONT 32            /* floats before the planes */
#define PK_NQ_MAX 6             /* taps of a dot tile, at most (portable-kern.h) */

static size_t round16(size_t x)
{
	return (x + 15) / 16 * 16;
}

static const struct pk_ops *ops(void)
{
	return pk_ops_active();
}

/* Output rows (or columns) of phase a: a, a + s, ... below n. */
static unsigned phase_len(unsigned n, unsigned a, unsigned s)
{
	return a < n ? (n - a + s - 1) / s : 0;
}

/* Whether kernel row i reads dyz's non-zero rows in phase a, and which:
 * dx row a + s Y reads dyz row a + s Y + p - i d, dy's row Y + e. */
static bool phase_tap(const struct pk_conv *cv, unsigned a, unsigned i, long *e)
{
	long r = (long)a + (long)cv->p - (long)(i * cv->d), s = (long)cv->s;
	long m = ((r % s) + s) % s;

	if (m)
		return false;
	*e = (r - m) / s;   /* exact */
	return true;
}

/* The strided dx's tables (pk_conv_init, s > 1). */
static int dq_init(struct pk_conv *cv)
{
	unsigned s = cv->s, k = cv->k;
	long emin = 0, emax = 0;

	for (unsigned a = 0; a < s; a++)
		for (unsigned i = 0; i < k; i++) {
			long e;

			if (phase_tap(cv, a, i, &e)) {
				emin = e < emin ? e : emin;
				emax = e > emax ? e : emax;
			}
		}
	cv->dq_ny = phase_len(cv->h, 0, s);
	cv->dq_nx = phase_len(cv->w, 0, s);
	cv->dq_t = (unsigned)-emin;
	cv->dq_l = (unsigned)-emin;
	cv->dq_h = cv->dq_t + (cv->dq_ny + (unsigned)emax > cv->oh ? cv->dq_ny + (unsigned)emax : cv->oh);
	cv->dq_w = cv->dq_l + (cv->dq_nx + (unsigned)emax > cv->ow ? cv->dq_nx + (unsigned)emax : cv->ow);
	cv->dq_plane = (size_t)cv->dq_h * cv->dq_w;
	cv->dq_koff = malloc(cv->og * sizeof(ptrdiff_t));
	cv->dq_gsrc = malloc((size_t)s * s * k * k * sizeof(ptrdiff_t));
	if (!cv->dq_koff || !cv->dq_gsrc)
		return -ENOMEM;
	for (unsigned o = 0; o < cv->og; o++)
		cv->dq_koff[o] = (ptrdiff_t)(o * cv->dq_plane);
	for (unsigned a = 0; a < s; a++)
		for (unsigned b = 0; b < s; b++)
			for (unsigned i = 0; i < k; i++)
				for (unsigned j = 0; j < k; j++) {
					ptrdiff_t *g = &cv->dq_gsrc[((size_t)(a * s + b) * k + i) * k + j];
					long ey, ex;

					if (phase_tap(cv, a, i, &ey) && phase_tap(cv, b, j, &ex))
						*g = (ptrdiff_t)((ey + (long)cv->dq_t) * (long)cv->dq_w + ex + (long)cv->dq_l);
					else
						*g = PK_GROUP_ZERO;
				}
	return 0;
}

int pk_conv_init(struct pk_conv *cv, unsigned c, unsigned h, unsigned w, unsigned oc, unsigned k,
		 unsigned stride, unsigned pad, unsigned dil, unsigned groups)
{
	unsigned s = stride, ext = dil * (k - 1);

	memset(cv, 0, sizeof(*cv));
	if (!c || !h || !w || !oc || !k || !s || !dil || !groups || c % groups || oc % groups ||
	    h + 2 * pad < ext + 1 || w + 2 * pad < ext + 1)
		return -EINVAL;
	cv->c = c;
	cv->h = h;
	cv->w = w;
	cv->oc = oc;
	cv->k = k;
	cv->s = s;
	cv->p = pad;
	cv->d = dil;
	cv->g = groups;
	cv->cg = c / groups;
	cv->og = oc / groups;
	cv->oh = (h + 2 * pad - ext - 1) / s + 1;
	cv->ow = (w + 2 * pad - ext - 1) / s + 1;
	cv->ckk = (size_t)cv->cg * k * k;
	cv->ohw = (size_t)cv->oh * cv->ow;
	cv->hph = (h + 2 * pad + s - 1) / s;
	cv->wph = (w + 2 * pad + s - 1) / s;
	cv->plane = (size_t)cv->hph * cv->wph;
	cv->chs = (size_t)s * s * cv->plane;
	cv->xph_len = XPH_FRONT + cv->c * cv->chs + 4 * (size_t)cv->wph + 128;
	cv->nwide = (size_t)cv->oh * cv->wph;
	/* dyz: the output map dilated by s, padded so that row y + d(k-1-i) of
	 * it is the output row y + p - i d would need */
	cv->hq = h + ext;
	cv->wq = w + ext;
	cv->qplane = (size_t)cv->hq * cv->wq;
	cv->dxwide = (size_t)h * cv->wq;

	cv->koff = malloc(cv->ckk * sizeof(ptrdiff_t));
	cv->dx_koff = malloc(cv->og * sizeof(ptrdiff_t));
	cv->dx_gsrc = malloc((size_t)k * k * sizeof(ptrdiff_t));
	cv->dx_gp = malloc((size_t)k * k * sizeof(ptrdiff_t));
	if (!cv->koff || !cv->dx_koff || !cv->dx_gsrc || !cv->dx_gp) {
		pk_conv_deinit(cv);
		return -ENOMEM;
	}
	for (unsigned ch = 0; ch < cv->cg; ch++)
		for (unsigned i = 0; i < k; i++)
			for (unsigned j = 0; j < k; j++) {
				unsigned yi = i * dil, xj = j * dil;
				size_t ph = (size_t)(yi % s) * s + xj % s;

				cv->koff[((size_t)ch * k + i) * k + j] =
					(ptrdiff_t)(ch * cv->chs + ph * cv->plane + (size_t)(yi / s) * cv->wph + xj / s);
			}
	for (unsigned o = 0; o < cv->og; o++)
		cv->dx_koff[o] = (ptrdiff_t)(o * cv->qplane);
	for (unsigned i = 0; i < k; i++)
		for (unsigned j = 0; j < k; j++) {
			cv->dx_gsrc[i * k + j] = (ptrdiff_t)((size_t)dil * (k - 1 - i) * cv->wq + dil * (k - 1 - j));
			cv->dx_gp[i * k + j] = (ptrdiff_t)(i * k + j);
		}
	if (s > 1 && dq_init(cv) < 0) {
		pk_conv_deinit(cv);
		return -ENOMEM;
	}
	return 0;
}

void pk_conv_deinit(struct pk_conv *cv)
{
	free(cv->koff);
	free(cv->dx_koff);
	free(cv->dx_gsrc);
	free(cv->dx_gp);
	free(cv->dq_koff);
	free(cv->dq_gsrc);
	memset(cv, 0, sizeof(*cv));
}

/* floats of the forward's wide output for one group, and of the gradient
 * at the input's buffers (dyz of a group, then dx's wide map) */
static size_t fwd_len(const struct pk_conv *cv)
{
	return cv->xph_len + cv->og * round16(cv->nwide) + 64;
}

static size_t dx_len(const struct pk_conv *cv)
{
	size_t a = cv->og * cv->qplane + cv->wq + 128 + cv->cg * round16(cv->dxwide) + 64;
	size_t b = cv->s > 1 ? cv->og * cv->dq_plane + cv->dq_w + 128 +
				       cv->cg * round16((size_t)cv->dq_ny * cv->dq_w) + 64
			     : 0;

	return a > b ? a : b;
}

size_t pk_conv_scratch(const struct pk_conv *cv, size_t rows)
{
	size_t a = fwd_len(cv), b = dx_len(cv);
	size_t c = (rows ? rows : 1) * (cv->xph_len + PK_NQ_MAX * cv->ohw);

	return a > b ? (a > c ? a : c) : (b > c ? b : c);
}

/* xph of one sample x (C, H, W): every plane written, zeros in the padding. */
static void build_xph(const struct pk_conv *cv, const float *x, float *xph)
{
	unsigned s = cv->s;

	memset(xph, 0, XPH_FRONT * sizeof(float));
	xph += XPH_FRONT;
	for (unsigned ch = 0; ch < cv->c; ch++)
		for (unsigned a = 0; a < s; a++)
			for (unsigned b = 0; b < s; b++) {
				float *pl = xph + ch * cv->chs + ((size_t)a * s + b) * cv->plane;

				for (unsigned yy = 0; yy < cv->hph; yy++) {
					long y = (long)yy * s + a - cv->p;
					float *row = pl + (size_t)yy * cv->wph;

					if (y < 0 || y >= (long)cv->h) {
						memset(row, 0, cv->wph * sizeof(float));
						continue;
					}
					{
						const float *src = x + ((size_t)ch * cv->h + (size_t)y) * cv->w;

						if (s == 1) {
							memset(row, 0, cv->p * sizeof(float));
							memcpy(row + cv->p, src, cv->w * sizeof(float));
							memset(row + cv->p + cv->w, 0, (cv->wph - cv->p - cv->w) * sizeof(float));
							continue;
						}
						for (unsigned xx = 0; xx < cv->wph; xx++) {
							long xc = (long)xx * s + b - cv->p;

							row[xx] = xc >= 0 && xc < (long)cv->w ? src[xc] : 0.0f;
						}
					}
				}
			}
	memset(xph + cv->c * cv->chs, 0, (cv->xph_len - XPH_FRONT - cv->c * cv->chs) * sizeof(float));
}

/* The rows-by-vectors shape of the forward's tiles for `rows` rows: the one
 * with the fewest cycles by a simple model (a tap costs the larger of the
 * tile's FMAs and its loads, both two a cycle). */
static void pick_shape(const struct pk_ops *o, size_t rows, size_t nvec, const unsigned *nb_max,
		       unsigned *nb_out, unsigned *nv_out)
{
	double best = 0;

	*nb_out = 1;
	*nv_out = 1;
	for (unsigned nv = 1; nv <= o->nv_max; nv++) {
		unsigned nbm = nb_max[nv - 1];
		size_t rb, vb;
		double cost;

		if (!nbm)
			continue;
		rb = (rows + nbm - 1) / nbm;            /* row blocks, balanced */
		vb = (nvec + nv - 1) / nv;
		{
			double nb = (double)rows / (double)rb, fm = nb * nv, ld = nb + nv;

			cost = (double)rb * (double)vb * ((fm > ld ? fm : ld) + 0.5 * fm / 8);
		}
		if (best == 0 || cost < best) {
			best = cost;
			*nb_out = (unsigned)((rows + rb - 1) / rb);
			*nv_out = nv;
		}
	}
}

void pk_conv_forward(const struct pk_conv *cv, const float *w, const float *bias, const float *x,
		     float *y, float *scratch)
{
	const struct pk_ops *o = ops();
	float *xph = scratch, *yw = scratch + cv->xph_len;
	size_t ld = round16(cv->nwide), nvec = (cv->nwide + o->vl - 1) / o->vl;
	unsigned nb, nv;

	build_xph(cv, x, xph);
	pick_shape(o, cv->og, nvec, o->nb_max, &nb, &nv);
	for (unsigned g = 0; g < cv->g; g++) {
		const float *src = xph + XPH_FRONT + (size_t)g * cv->cg * cv->chs;

		for (size_t v0 = 0; v0 < nvec; v0 += nv) {
			unsigned tv = (unsigned)(nvec - v0 < nv ? nvec - v0 : nv);
			size_t t0 = v0 * o->vl;

			for (unsigned r0 = 0; r0 < cv->og; r0 += nb) {
				unsigned o0 = g * cv->og + r0;
				struct pk_ctile t = {
					.p = w + (size_t)o0 * cv->ckk, .p_rs = cv->ckk, .p_cs = 1,
					.src = src + t0, .koff = cv->koff, .ntaps = cv->ckk,
					.bias = bias ? bias + o0 : NULL,
					.c = yw + (size_t)r0 * ld + t0, .c_ld = ld,
					.nb = cv->og - r0 < nb ? cv->og - r0 : nb, .nv = tv,
					.last = (unsigned)(cv->nwide - (t0 + (size_t)(tv - 1) * o->vl) < o->vl
								   ? cv->nwide - (t0 + (size_t)(tv - 1) * o->vl) : o->vl),
				};

				o->ctile(&t);
			}
		}
		/* the wide map's columns past ow dropped */
		for (unsigned r = 0; r < cv->og; r++)
			for (unsigned oy = 0; oy < cv->oh; oy++)
				memcpy(y + ((size_t)(g * cv->og + r) * cv->oh + oy) * cv->ow,
				       yw + (size_t)r * ld + (size_t)oy * cv->wph, cv->ow * sizeof(float));
	}
}

/* The chunk's input values of taps [q0, q0 + nq) of group g, dense: xd[r][qq][t]. */
static void pack_taps(const struct pk_conv *cv, const float *xph, size_t rows, unsigned g, size_t q0,
		      unsigned nq, float *xd)
{
	for (size_t r = 0; r < rows; r++)
		for (unsigned qq = 0; qq < nq; qq++) {
			const float *src = xph + r * cv->xph_len + XPH_FRONT + (size_t)g * cv->cg * cv->chs +
					   cv->koff[q0 + qq];
			float *dst = xd + (r * nq + qq) * cv->ohw;

			if (cv->ow >= 32) {
				for (unsigned oy = 0; oy < cv->oh; oy++)
					memcpy(dst + (size_t)oy * cv->ow, src + (size_t)oy * cv->wph,
					       cv->ow * sizeof(float));
				continue;
			}
			/* short rows: a call per row would cost more than its copy */
			for (unsigned oy = 0; oy < cv->oh; oy++, dst += cv->ow, src += cv->wph)
				for (unsigned ox = 0; ox < cv->ow; ox++)
					dst[ox] = src[ox];
		}
}

void pk_conv_dw(const struct pk_conv *cv, const float *x, size_t x_ld, const float *dy, size_t dy_ld,
		size_t rows, float *dw, float *db, float *scratch)
{
	const struct pk_ops *o = ops();
	float *xd = scratch + rows * cv->xph_len;

	for (size_t r = 0; r < rows; r++)
		build_xph(cv, x + r * x_ld, scratch + r * cv->xph_len);
	for (unsigned g = 0; g < cv->g; g++)
		for (size_t q0 = 0; q0 < cv->ckk; q0 += o->dt_nq) {
			unsigned nq = (unsigned)(cv->ckk - q0 < o->dt_nq ? cv->ckk - q0 : o->dt_nq);

			pack_taps(cv, scratch, rows, g, q0, nq, xd);
			for (unsigned r0 = 0; r0 < cv->og; r0 += o->dt_nb) {
				unsigned o0 = g * cv->og + r0;
				struct pk_dtile t = {
					.rows = rows, .dy = dy + (size_t)o0 * cv->ohw, .dy_rs = dy_ld, .dy_ld = cv->ohw,
					.x = xd, .x_rs = nq * cv->ohw, .x_qs = cv->ohw, .nt = cv->ohw,
					.out = dw + (size_t)o0 * cv->ckk + q0, .out_ld = cv->ckk,
					.nb = cv->og - r0 < o->dt_nb ? cv->og - r0 : o->dt_nb, .nq = nq,
				};

				o->dtile(&t);
			}
		}
	if (db)
		for (unsigned oc = 0; oc < cv->oc; oc++)
			db[oc] = pk_sum2d(dy + (size_t)oc * cv->ohw, rows, cv->ohw, dy_ld);
}

/* Whether the weights of group g are all finite (the strided dx's zero
 * chains are then +0). */
static bool group_finite(const struct pk_conv *cv, const float *w, unsigned g)
{
	const float *wg = w + (size_t)g * cv->og * cv->ckk;
	size_t n = cv->og * cv->ckk;
	float acc = 0.0f;

	/* x * 0 is 0 for finite x, NaN for inf and NaN */
	for (size_t i = 0; i < n; i++)
		acc += wg[i] * 0.0f;
	return acc == 0.0f;
}

/* dx of group g into dxw (rows of round16(wide) floats): every tile of the cg input channels
 * over `wide` positions of src, the taps at koff, their groups at g_src. */
static void dx_tiles(const struct pk_conv *cv, const struct pk_ops *o, const float *w, unsigned g,
		     const float *src, const ptrdiff_t *koff, const ptrdiff_t *g_src, float *dxw, size_t wide)
{
	size_t ld = round16(wide), nvec = (wide + o->vl - 1) / o->vl;
	unsigned kk = cv->k * cv->k, nb, nv;

	pick_shape(o, cv->cg, nvec, o->cx_nb, &nb, &nv);
	for (size_t v0 = 0; v0 < nvec; v0 += nv) {
		unsigned tv = (unsigned)(nvec - v0 < nv ? nvec - v0 : nv);
		size_t t0 = v0 * o->vl, tail = wide - (t0 + (size_t)(tv - 1) * o->vl);

		for (unsigned r0 = 0; r0 < cv->cg; r0 += nb) {
			struct pk_ctile t = {
				.p = w + (size_t)g * cv->og * cv->ckk + (size_t)r0 * kk, .p_rs = kk,
				.p_cs = cv->ckk, .g_p = cv->dx_gp,
				.src = src + t0, .koff = koff, .g_src = g_src,
				.ntaps = cv->og, .grouped = 1, .ngroups = kk,
				.c = dxw + (size_t)r0 * ld + t0, .c_ld = ld,
				.nb = cv->cg - r0 < nb ? cv->cg - r0 : nb, .nv = tv,
				.last = (unsigned)(tail < o->vl ? tail : o->vl),
			};

			o->ctile(&t);
		}
	}
}

/* Group g's dx at stride s > 1 by output phases (the design above). */
static void dx_phases(const struct pk_conv *cv, const struct pk_ops *o, const float *w, const float *dy,
		      float *dx, float *scratch, unsigned g)
{
	unsigned s = cv->s, kk = cv->k * cv->k;
	size_t zlen = cv->og * cv->dq_plane + cv->dq_w + 128;
	float *dyp = scratch, *dxw = scratch + zlen;

	memset(dyp, 0, zlen * sizeof(float));
	for (unsigned r = 0; r < cv->og; r++)
		for (unsigned oy = 0; oy < cv->oh; oy++)
			memcpy(dyp + r * cv->dq_plane + (size_t)(oy + cv->dq_t) * cv->dq_w + cv->dq_l,
			       dy + ((size_t)(g * cv->og + r) * cv->oh + oy) * cv->ow, cv->ow * sizeof(float));
	for (unsigned a = 0; a < s; a++)
		for (unsigned b = 0; b < s; b++) {
			unsigned ny = phase_len(cv->h, a, s), nx = phase_len(cv->w, b, s);
			size_t wide = (size_t)ny * cv->dq_w, ld = round16(wide);

			if (!ny || !nx)
				continue;
			dx_tiles(cv, o, w, g, dyp, cv->dq_koff, cv->dq_gsrc + (size_t)(a * s + b) * kk, dxw, wide);
			for (unsigned r = 0; r < cv->cg; r++)
				for (unsigned yy = 0; yy < ny; yy++) {
					float *row = dx + ((size_t)(g * cv->cg + r) * cv->h + a + (size_t)yy * s) * cv->w + b;
					const float *src = dxw + (size_t)r * ld + (size_t)yy * cv->dq_w;

					for (unsigned xx = 0; xx < nx; xx++)
						row[(size_t)xx * s] = src[xx];
				}
		}
}

void pk_conv_dx(const struct pk_conv *cv, const float *w, const float *dy, float *dx, float *scratch)
{
	const struct pk_ops *o = ops();
	size_t ld = round16(cv->dxwide), zlen = cv->og * cv->qplane + cv->wq + 128;
	float *dyz = scratch, *dxw = scratch + zlen;
	long a0 = (long)(cv->d * (cv->k - 1)) - (long)cv->p;   /* dyz row of output row 0 */

	for (unsigned g = 0; g < cv->g; g++) {
		if (cv->s > 1 && group_finite(cv, w, g)) {
			dx_phases(cv, o, w, dy, dx, scratch, g);
			continue;
		}
		memset(dyz, 0, zlen * sizeof(float));
		for (unsigned r = 0; r < cv->og; r++)
			for (unsigned oy = 0; oy < cv->oh; oy++) {
				long yy = a0 + (long)oy * cv->s;
				const float *src = dy + ((size_t)(g * cv->og + r) * cv->oh + oy) * cv->ow;
				float *row;

				if (yy < 0 || yy >= (long)cv->hq)
					continue;
				row = dyz + r * cv->qplane + (size_t)yy * cv->wq;
				for (unsigned ox = 0; ox < cv->ow; ox++) {
					long xx = a0 + (long)ox * cv->s;

					if (xx >= 0 && xx < (long)cv->wq)
						row[xx] = src[ox];
				}
			}
		dx_tiles(cv, o, w, g, dyz, cv->dx_koff, cv->dx_gsrc, dxw, cv->dxwide);
		for (unsigned r = 0; r < cv->cg; r++)
			for (unsigned yy = 0; yy < cv->h; yy++)
				memcpy(dx + ((size_t)(g * cv->cg + r) * cv->h + yy) * cv->w,
				       dxw + (size_t)r * ld + (size_t)yy * cv->wq, cv->w * sizeof(float));
	}
}
