/* predict.c - see daemon/data/predict.h. */
#include "daemon/data/predict.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traind/kernels.h"

void predict_images_free(struct predict_images *im)
{
	if (!im)
		return;
	free(im->pixels);
	memset(im, 0, sizeof(*im));
}

static int alloc_images(struct predict_images *out, uint32_t count, uint32_t h, uint32_t w,
			const char *name, struct tr_err *err)
{
	if (!count || !h || !w)
		return tr_err_set(err, -EINVAL, "file %s: an empty image or image set", name);
	if (h > PREDICT_MAX_SIDE || w > PREDICT_MAX_SIDE)
		return tr_err_set(err, -EINVAL, "file %s: %ux%u pixels, larger than %ux%u", name, w, h,
				  PREDICT_MAX_SIDE, PREDICT_MAX_SIDE);
	if (count > PREDICT_MAX_IMAGES)
		return tr_err_set(err, -EINVAL, "file %s: %u images, more than %u", name, count,
				  PREDICT_MAX_IMAGES);
	out->pixels = malloc((size_t)count * h * w);
	if (!out->pixels)
		return tr_err_set(err, -ENOMEM, "out of memory");
	out->count = count;
	out->h = h;
	out->w = w;
	return 0;
}

/* ---- PGM (netpbm P5 binary, P2 plain) ---- */

static const uint8_t *pnm_skip(const uint8_t *p, const uint8_t *end)
{
	while (p < end) {
		if (*p == '#') {
			while (p < end && *p != '\n')
				p++;
		} else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
			p++;
		} else {
			break;
		}
	}
	return p;
}

static bool pnm_uint(const uint8_t **pp, const uint8_t *end, uint32_t max, uint32_t *out)
{
	const uint8_t *p = pnm_skip(*pp, end);
	uint64_t v = 0;
	int digits = 0;

	while (p < end && *p >= '0' && *p <= '9' && digits < 10) {
		v = v * 10 + (uint64_t)(*p++ - '0');
		digits++;
	}
	if (!digits || v > max)
		return false;
	*out = (uint32_t)v;
	*pp = p;
	return true;
}

static int decode_pgm(const uint8_t *buf, size_t len, const char *name, struct predict_images *out,
		      struct tr_err *err)
{
	const uint8_t *p = buf + 2, *end = buf + len;
	bool plain = buf[1] == '2';
	uint32_t w, h, maxval;
	size_t i;
	int rc;

	/* the numbers first, whatever their size; then what is wrong with them */
	if (!pnm_uint(&p, end, UINT32_MAX, &w) || !pnm_uint(&p, end, UINT32_MAX, &h) ||
	    !pnm_uint(&p, end, UINT32_MAX, &maxval))
		return tr_err_set(err, -EINVAL, "file %s: a PGM header needs width, height and a maximum "
				  "value, as decimal numbers", name);
	if (maxval == 0 || maxval > 65535)
		return tr_err_set(err, -EINVAL, "file %s: the PGM's maximum value %u is not 1 to 65535", name,
				  maxval);
	if (w > PREDICT_MAX_SIDE || h > PREDICT_MAX_SIDE)
		return tr_err_set(err, -EINVAL, "file %s: a PGM of %ux%u pixels, larger than %ux%u", name, w, h,
				  PREDICT_MAX_SIDE, PREDICT_MAX_SIDE);
	if (p >= end || !(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		return tr_err_set(err, -EINVAL, "file %s: no white space after the PGM header", name);
	p++;
	rc = alloc_images(out, 1, h, w, name, err);
	if (rc < 0)
		return rc;
	for (i = 0; i < (size_t)w * h; i++) {
		uint32_t v;

		if (plain) {
			if (pnm_skip(p, end) == end)
				goto short_data;
			if (!pnm_uint(&p, end, UINT32_MAX, &v)) {
				predict_images_free(out);
				return tr_err_set(err, -EINVAL, "file %s: pixel %zu is not a decimal number of 0 to %u",
						  name, i, maxval);
			}
		} else if (maxval < 256) {
			if (p >= end)
				goto short_data;
			v = *p++;
		} else {
			if (end - p < 2)
				goto short_data;
			v = (uint32_t)p[0] << 8 | p[1];
			p += 2;
		}
		if (v > maxval) {
			predict_images_free(out);
			return tr_err_set(err, -EINVAL, "file %s: pixel %zu is %u, above the maximum %u", name,
					  i, v, maxval);
		}
		out->pixels[i] = (uint8_t)((v * 255u + maxval / 2) / maxval);
	}
	if (!plain && p != end) {
		predict_images_free(out);
		return tr_err_set(err, -EINVAL, "file %s: %zu bytes after the %ux%u PGM image", name,
				  (size_t)(end - p), w, h);
	}
	return 0;
short_data:
	predict_images_free(out);
	return tr_err_set(err, -EINVAL, "file %s: the PGM image ends after %zu of its %ux%u pixels", name, i, w, h);
}

/* ---- PNG (libpng) ---- */

struct png_src {
	const uint8_t *buf;
	size_t len, off;
	char msg[160];
};

static void png_read_mem(png_structp png, png_bytep out, png_size_t n)
{
	struct png_src *s = png_get_io_ptr(png);

	if (n > s->len - s->off)
		png_error(png, "the file ends inside the image");
	memcpy(out, s->buf + s->off, n);
	s->off += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
	struct png_src *s = png_get_error_ptr(png);

	snprintf(s->msg, sizeof(s->msg), "%s", msg);
	png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

static int decode_png(const uint8_t *buf, size_t len, const char *name, struct predict_images *out,
		      struct tr_err *err)
{
	struct png_src src = { buf, len, 0, "" };
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	png_bytep *volatile rows = NULL;
	volatile int rc = 0;
	png_uint_32 w, h;
	int depth, color;

	/* the size first, from the IHDR chunk that must follow the signature:
	 * libpng would refuse a large one only as "Invalid IHDR data" */
	if (len >= 24 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(buf + 12, "IHDR", 4) == 0) {
		uint32_t iw = (uint32_t)buf[16] << 24 | (uint32_t)buf[17] << 16 | (uint32_t)buf[18] << 8 | buf[19];
		uint32_t ih = (uint32_t)buf[20] << 24 | (uint32_t)buf[21] << 16 | (uint32_t)buf[22] << 8 | buf[23];

		if (iw > PREDICT_MAX_SIDE || ih > PREDICT_MAX_SIDE) {
			png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
			return tr_err_set(err, -EINVAL, "file %s: a PNG of %ux%u pixels, larger than %ux%u", name, iw,
					  ih, PREDICT_MAX_SIDE, PREDICT_MAX_SIDE);
		}
	}
	if (!png || !info) {
		png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
		return tr_err_set(err, -ENOMEM, "out of memory");
	}
	if (setjmp(png_jmpbuf(png))) {
		rc = tr_err_set(err, -EINVAL, "file %s: not a valid PNG: %s", name, src.msg);
		goto out;
	}
	png_set_user_limits(png, PREDICT_MAX_SIDE, PREDICT_MAX_SIDE);
	png_set_read_fn(png, &src, png_read_mem);
	png_read_info(png, info);
	png_get_IHDR(png, info, &w, &h, &depth, &color, NULL, NULL, NULL);
	/* to 8-bit grey: palette and low depths expanded, 16 bits cut,
	 * colour weighted to grey (libpng's default coefficients), alpha dropped */
	if (color == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(png);
	if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
		png_set_expand_gray_1_2_4_to_8(png);
	if (depth == 16)
		png_set_strip_16(png);
	if (color & PNG_COLOR_MASK_ALPHA || png_get_valid(png, info, PNG_INFO_tRNS))
		png_set_strip_alpha(png);
	if (color & PNG_COLOR_MASK_COLOR || color == PNG_COLOR_TYPE_PALETTE)
		png_set_rgb_to_gray_fixed(png, 1, -1, -1);
	png_read_update_info(png, info);
	if (png_get_rowbytes(png, info) != w) {
		rc = tr_err_set(err, -EINVAL, "file %s: a PNG layout traind does not read", name);
		goto out;
	}
	rc = alloc_images(out, 1, h, w, name, err);
	if (rc < 0)
		goto out;
	rows = malloc(h * sizeof(*rows));
	if (!rows) {
		rc = tr_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (png_uint_32 y = 0; y < h; y++)
		rows[y] = out->pixels + (size_t)y * w;
	png_read_image(png, rows);
	png_read_end(png, NULL);
out:
	if (rc < 0)
		predict_images_free(out);
	free(rows);
	png_destroy_read_struct(&png, &info, NULL);
	return rc;
}

/* ---- IDX images ---- */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int decode_idx(const uint8_t *buf, size_t len, const char *name, struct predict_images *out,
		      struct tr_err *err)
{
	uint32_t n, h, w;
	int rc;

	if (len < 16)
		return tr_err_set(err, -EINVAL, "file %s: an IDX image file's header is 16 bytes", name);
	n = be32(buf + 4);
	h = be32(buf + 8);
	w = be32(buf + 12);
	if (h > PREDICT_MAX_SIDE || w > PREDICT_MAX_SIDE || !h || !w || n > PREDICT_MAX_IMAGES)
		return tr_err_set(err, -EINVAL, "file %s: IDX header of %u images of %ux%u is out of range",
				  name, n, w, h);
	if ((uint64_t)len - 16 != (uint64_t)n * h * w)
		return tr_err_set(err, -EINVAL, "file %s: %u images of %ux%u need %llu bytes, the file has %zu",
				  name, n, w, h, (unsigned long long)n * h * w + 16, len);
	rc = alloc_images(out, n, h, w, name, err);
	if (rc == 0)
		memcpy(out->pixels, buf + 16, (size_t)n * h * w);
	return rc;
}

int predict_decode(const uint8_t *buf, size_t len, const char *name, struct predict_images *out,
		   struct tr_err *err)
{
	memset(out, 0, sizeof(*out));
	if (len >= 8 && png_sig_cmp(buf, 0, 8) == 0)
		return decode_png(buf, len, name, out, err);
	if (len >= 3 && buf[0] == 'P' && (buf[1] == '5' || buf[1] == '2'))
		return decode_pgm(buf, len, name, out, err);
	if (len >= 4 && be32(buf) == 0x00000803)
		return decode_idx(buf, len, name, out, err);
	return tr_err_set(err, -EINVAL, "file %s: not a PGM (P5/P2), PNG or IDX image file", name);
}

int predict_fit(struct predict_images *im, uint32_t h, uint32_t w, bool resize, const char *name,
		struct tr_err *err)
{
	uint8_t *px;

	if (im->h == h && im->w == w)
		return 0;
	if (!resize)
		return tr_err_set(err, -ERANGE, "file %s: its images are %ux%u, the model takes %ux%u "
				  "(predict --resize scales them)", name, im->w, im->h, w, h);
	px = malloc((size_t)im->count * h * w);
	if (!px)
		return tr_err_set(err, -ENOMEM, "out of memory");
	for (uint32_t k = 0; k < im->count; k++) {
		const uint8_t *src = im->pixels + (size_t)k * im->h * im->w;

		for (uint32_t y = 0; y < h; y++) {
			/* pixel centres aligned, as align_corners=False */
			double sy = ((double)y + 0.5) * im->h / h - 0.5;
			uint32_t y0 = sy <= 0 ? 0 : (uint32_t)sy;
			uint32_t y1 = y0 + 1 < im->h ? y0 + 1 : im->h - 1;
			double fy = sy <= 0 ? 0 : sy - y0;

			for (uint32_t x = 0; x < w; x++) {
				double sx = ((double)x + 0.5) * im->w / w - 0.5;
				uint32_t x0 = sx <= 0 ? 0 : (uint32_t)sx;
				uint32_t x1 = x0 + 1 < im->w ? x0 + 1 : im->w - 1;
				double fx = sx <= 0 ? 0 : sx - x0;
				double v = (1 - fy) * ((1 - fx) * src[y0 * im->w + x0] + fx * src[y0 * im->w + x1]) +
					   fy * ((1 - fx) * src[y1 * im->w + x0] + fx * src[y1 * im->w + x1]);

				px[(size_t)k * h * w + (size_t)y * w + x] = (uint8_t)lround(v);
			}
		}
	}
	free(im->pixels);
	im->pixels = px;
	im->h = h;
	im->w = w;
	return 0;
}

/* A number field [s, s + n) of a CSV line: a float (any finite number). */
static bool csv_float(const char *s, size_t n, float *out)
{
	char buf[64], *end;

	while (n && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		n--;
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	*out = strtof(buf, &end);
	return *end == '\0' && isfinite(*out);
}

int predict_decode_rows(const uint8_t *buf, size_t len, const char *name, uint32_t dim, bool f32,
			struct predict_images *out, struct tr_err *err)
{
	const char *text = (const char *)buf;
	size_t esize = f32 ? sizeof(float) : 1, pos = 0, line = 0, count = 0, cap = 0;
	uint8_t *px = NULL;

	memset(out, 0, sizeof(*out));
	while (pos < len) {
		const char *ls = text + pos, *nl = memchr(ls, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - ls) : len - pos, at = 0, k = 0;
		float v;

		pos += n + (nl ? 1 : 0);
		line++;
		if (n && ls[n - 1] == '\r')
			n--;
		if (n == 0)
			continue;
		{
			const char *c = memchr(ls, ',', n);

			if (line == 1 && !csv_float(ls, c ? (size_t)(c - ls) : n, &v))
				continue;   /* a header */
		}
		if (count == PREDICT_MAX_IMAGES) {
			free(px);
			return tr_err_set(err, -EINVAL, "file %s: more than %u rows", name, PREDICT_MAX_IMAGES);
		}
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			uint8_t *np = realloc(px, ncap * dim * esize);

			if (!np) {
				free(px);
				return tr_err_set(err, -ENOMEM, "out of memory");
			}
			px = np;
			cap = ncap;
		}
		while (at <= n) {
			const char *c = memchr(ls + at, ',', n - at);
			size_t fl = c ? (size_t)(c - ls) - at : n - at;

			if (k == dim || !csv_float(ls + at, fl, &v) || (!f32 && (v < 0 || v > 255 || v != floorf(v)))) {
				free(px);
				if (k == dim)
					return tr_err_set(err, -EINVAL, "file %s: line %zu: more than the model's %u values",
							  name, line, dim);
				return tr_err_set(err, -EINVAL, "file %s: line %zu: field %zu '%.*s' is not %s", name,
						  line, k + 1, (int)(fl > 20 ? 20 : fl), ls + at,
						  f32 ? "a finite number" : "a pixel 0..255 (the dataset's values are uint8)");
			}
			if (f32)
				memcpy(px + (count * dim + k) * sizeof(float), &v, sizeof(v));
			else
				px[count * dim + k] = (uint8_t)v;
			k++;
			if (!c)
				break;
			at = (size_t)(c - ls) + 1;
		}
		if (k != dim) {
			free(px);
			return tr_err_set(err, -EINVAL, "file %s: line %zu: %zu values, the model takes %u", name,
					  line, k, dim);
		}
		count++;
	}
	if (count == 0) {
		free(px);
		return tr_err_set(err, -EINVAL, "file %s: no rows", name);
	}
	out->pixels = px;
	out->count = (uint32_t)count;
	out->rows = true;
	out->f32 = f32;
	out->dim = dim;
	out->h = 1;
	out->w = dim;
	return 0;
}

int predict_run(struct net *n, const struct predict_images *im, const struct predict_scaling *sc,
		enum loss_task task, double **probs, struct tr_err *err)
{
	size_t dim = im->rows ? im->dim : (size_t)im->h * im->w, classes = n->classes;
	bool torch_scale = sc->torch_scale;
	const float *mean = sc->mean, *std = sc->std;
	uint32_t *idx = malloc(n->max_batch * sizeof(*idx));
	double *p = malloc((size_t)im->count * classes * sizeof(*p));

	if (!idx || !p) {
		free(idx);
		free(p);
		return tr_err_set(err, -ENOMEM, "out of memory");
	}
	if (dim != n->in_size) {
		free(idx);
		free(p);
		return tr_err_set(err, -EINVAL, "images of %zu pixels for a model taking %zu", dim, n->in_size);
	}
	for (uint32_t at = 0; at < im->count; at += n->max_batch) {
		size_t b = im->count - at < n->max_batch ? im->count - at : n->max_batch;
		const float *y;

		for (size_t i = 0; i < b; i++)
			idx[i] = at + (uint32_t)i;
		if (im->rows && (im->f32 || mean || (sc->nhwc && sc->channels > 1)))
			/* rows as the trainer's gather_rows makes them */
			k_gather_images(n->x, im->pixels, im->f32, sc->nhwc && sc->channels > 1, sc->channels,
					sc->hw, idx, b, mean, std);
		else if (mean)          /* (b, dim) as the job's training made them: normalised, */
			k_gather_images(n->x, im->pixels, false, false, 1, dim, idx, b, mean, std);
		else if (torch_scale)   /* rng torch's ToDtype, */
			k_gather_scaled(n->x, im->pixels, idx, b, dim, (float)(1.0 / 255.0));
		else                    /* or x/255 */
			k_gather(n->x, im->pixels, idx, b, dim);
		if (sc->aug && sc->aug->n)   /* its normalize (random transforms are training's) */
			augment_rows(sc->aug, sc->augd, n->x, idx, b, 0, 0, false);
		net_forward(n, b, false, 0);
		y = net_output(n);                            /* (b, classes) logits */
		for (size_t i = 0; i < b; i++) {
			const float *row = y + i * classes;
			double *out = p + (at + i) * classes, max = row[0], sum = 0;

			if (task != TASK_CLASSIFICATION) {
				for (size_t c = 0; c < classes; c++)
					out[c] = task == TASK_REGRESSION ? (double)row[c]
									 : 1.0 / (1.0 + exp(-(double)row[c]));
				continue;
			}

			for (size_t c = 1; c < classes; c++)
				if (row[c] > max)
					max = row[c];
			for (size_t c = 0; c < classes; c++)
				sum += out[c] = exp((double)row[c] - max);
			for (size_t c = 0; c < classes; c++)
				out[c] /= sum;
		}
	}
	free(idx);
	*probs = p;
	return 0;
}
