/*
 * plot.c - learning curves with cairo, and as text. See plot.h.
 *
 * The page (PLOT_WIDTH x PLOT_HEIGHT): a title, the plot area framed with a
 * light grid at the ticks, tick labels, "epoch" under the x axis and the
 * metric beside the y axis, a legend in whichever corner of the plot area
 * holds the fewest data points, and the series, drawn last, one stroke
 * each: solid for train (and lr), dashed for val, one color per job.
 *
 * Naming the SVG's paths: cairo 1.16's SVG surface cannot give an element
 * an id (its tags are PDF-only), so the document is post-processed: it
 * writes the glyphs' definitions first, then the page's drawing in order,
 * so the series, being drawn last, are its last <path> elements, one each
 * (a series without a finite point draws nothing and gets none), in series
 * order. Each gets id="job-N-KIND" class="series job-N KIND"; a
 * document where those paths are not strokes (a cairo that writes
 * otherwise) is an error, never a mislabelled chart.
 *
 * The text chart draws into a grid of braille cells (2 x 4 dots each) with
 * straight lines between consecutive epochs (Bresenham on the dots).
 */
#include "plot.h"

#include <cairo-svg.h>
#include <cairo.h>
#include <errno.h>
#include <fontconfig/fontconfig.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- axes ------------------------------------------------------------- */

static int axis_count(double min, double max, double step)
{
	double lo = floor(min / step + 1e-9), hi = ceil(max / step - 1e-9);

	return (int)llround(hi - lo) + 1;
}

void plot_axis_fit(struct plot_axis *a, double min, double max, int max_ticks, bool integer)
{
	static const double mult[] = { 1, 2, 5 };
	double raw, step = 1;
	int e;

	if (!isfinite(min) || !isfinite(max)) {
		min = 0;
		max = 1;
	}
	if (min > max) {
		double t = min;

		min = max;
		max = t;
	}
	if (max_ticks < 3)   /* 2 cannot always do: [-1, 999] needs -1000, 0, 1000 */
		max_ticks = 3;
	if (max_ticks > PLOT_MAX_TICKS)
		max_ticks = PLOT_MAX_TICKS;
	if (max == min) {
		double w = integer ? 1 : (min != 0 ? fabs(min) * 0.1 : 1);

		min -= w;
		max += w;
	}
	raw = (max - min) / (max_ticks - 1);
	e = (int)floor(log10(raw));
	for (int k = 0; k < 64; k++) {
		step = mult[k % 3] * pow(10, e + k / 3);
		if (integer && step < 1)
			continue;
		if (axis_count(min, max, step) <= max_ticks)
			break;
	}
	a->step = step;
	a->lo = floor(min / step + 1e-9) * step;
	a->hi = ceil(max / step - 1e-9) * step;
	a->nticks = axis_count(min, max, step);
	if (step >= 1)
		a->decimals = 0;
	else
		a->decimals = (int)ceil(-log10(step) - 1e-9);
	if (a->decimals > 6)
		a->decimals = -1;
}

double plot_axis_tick(const struct plot_axis *a, int i)
{
	double v = a->lo + i * a->step;

	return fabs(v) < a->step * 1e-9 ? 0 : v;
}

double plot_axis_map(const struct plot_axis *a, double v, double p0, double p1)
{
	if (a->hi == a->lo)
		return (p0 + p1) / 2;
	return p0 + (v - a->lo) / (a->hi - a->lo) * (p1 - p0);
}

void plot_axis_label(const struct plot_axis *a, double v, char *buf, size_t n)
{
	if (fabs(v) < a->step * 1e-9)
		v = 0;
	if (a->decimals >= 0)
		snprintf(buf, n, "%.*f", a->decimals, v);
	else
		snprintf(buf, n, "%g", v);
}

bool plot_data_range(const struct plot *p, double *xmin, double *xmax, double *ymin, double *ymax)
{
	bool any = false;

	for (size_t s = 0; s < p->nseries; s++) {
		const struct plot_series *r = &p->series[s];

		for (size_t i = 0; i < r->n; i++) {
			if (!isfinite(r->x[i]) || !isfinite(r->y[i]))
				continue;
			if (!any) {
				*xmin = *xmax = r->x[i];
				*ymin = *ymax = r->y[i];
				any = true;
			}
			*xmin = fmin(*xmin, r->x[i]);
			*xmax = fmax(*xmax, r->x[i]);
			*ymin = fmin(*ymin, r->y[i]);
			*ymax = fmax(*ymax, r->y[i]);
		}
	}
	return any;
}

bool plot_format_of(const char *path, enum plot_format *f)
{
	const char *dot = strrchr(path, '.');

	if (!dot || strchr(dot, '/'))
		return false;
	if (strcasecmp(dot, ".svg") == 0)
		*f = PLOT_SVG;
	else if (strcasecmp(dot, ".png") == 0)
		*f = PLOT_PNG;
	else
		return false;
	return true;
}

void plot_clear(struct plot *p)
{
	for (size_t s = 0; s < p->nseries; s++) {
		free(p->series[s].x);
		free(p->series[s].y);
	}
	free(p->series);
	p->series = NULL;
	p->nseries = 0;
}

/* ---- cairo ------------------------------------------------------------ */

/* Tableau 10: distinct, readable on white, and for most color blindness. */
static const double palette[10][3] = {
	{ 0.122, 0.467, 0.706 }, { 1.000, 0.498, 0.055 }, { 0.173, 0.627, 0.173 },
	{ 0.839, 0.153, 0.157 }, { 0.580, 0.404, 0.741 }, { 0.549, 0.337, 0.294 },
	{ 0.890, 0.467, 0.761 }, { 0.498, 0.498, 0.498 }, { 0.737, 0.741, 0.133 },
	{ 0.090, 0.745, 0.812 },
};

#define M_LEFT 78
#define M_RIGHT 24
#define M_TOP 44
#define M_BOTTOM 58

struct membuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static cairo_status_t mem_write(void *closure, const unsigned char *data, unsigned int n)
{
	struct membuf *m = closure;

	if (m->len + n > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 65536;
		uint8_t *p;

		while (cap < m->len + n)
			cap *= 2;
		p = realloc(m->p, cap);
		if (!p) {
			m->oom = true;
			return CAIRO_STATUS_WRITE_ERROR;
		}
		m->p = p;
		m->cap = cap;
	}
	memcpy(m->p + m->len, data, n);
	m->len += n;
	return CAIRO_STATUS_SUCCESS;
}

struct frame {
	struct plot_axis xa, ya;
	double x0, x1, y0, y1;      /* the plot area: x0 left, y0 bottom (y0 > y1) */
};

static void text_at(cairo_t *cr, const char *s, double x, double y, double align_x)
{
	cairo_text_extents_t te;

	cairo_text_extents(cr, s, &te);
	cairo_move_to(cr, x - align_x * te.x_advance, y);
	cairo_show_text(cr, s);
}

static void draw_axes(cairo_t *cr, const struct plot *p, const struct frame *f)
{
	char buf[32];

	cairo_set_line_width(cr, 1);
	cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
	for (int i = 0; i < f->xa.nticks; i++) {
		double x = round(plot_axis_map(&f->xa, plot_axis_tick(&f->xa, i), f->x0, f->x1)) + 0.5;

		cairo_move_to(cr, x, f->y1);
		cairo_line_to(cr, x, f->y0);
	}
	for (int i = 0; i < f->ya.nticks; i++) {
		double y = round(plot_axis_map(&f->ya, plot_axis_tick(&f->ya, i), f->y0, f->y1)) + 0.5;

		cairo_move_to(cr, f->x0, y);
		cairo_line_to(cr, f->x1, y);
	}
	cairo_stroke(cr);

	cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
	cairo_rectangle(cr, f->x0 + 0.5, f->y1 + 0.5, f->x1 - f->x0, f->y0 - f->y1);
	cairo_stroke(cr);
	cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, 11);
	for (int i = 0; i < f->xa.nticks; i++) {
		double v = plot_axis_tick(&f->xa, i);
		double x = round(plot_axis_map(&f->xa, v, f->x0, f->x1)) + 0.5;

		cairo_move_to(cr, x, f->y0);
		cairo_line_to(cr, x, f->y0 + 5);
		cairo_stroke(cr);
		plot_axis_label(&f->xa, v, buf, sizeof(buf));
		text_at(cr, buf, x, f->y0 + 18, 0.5);
	}
	for (int i = 0; i < f->ya.nticks; i++) {
		double v = plot_axis_tick(&f->ya, i);
		double y = round(plot_axis_map(&f->ya, v, f->y0, f->y1)) + 0.5;

		cairo_move_to(cr, f->x0 - 5, y);
		cairo_line_to(cr, f->x0, y);
		cairo_stroke(cr);
		plot_axis_label(&f->ya, v, buf, sizeof(buf));
		text_at(cr, buf, f->x0 - 8, y + 4, 1);
	}
	cairo_set_font_size(cr, 13);
	text_at(cr, "epoch", (f->x0 + f->x1) / 2, PLOT_HEIGHT - 16, 0.5);
	cairo_save(cr);
	cairo_translate(cr, 20, (f->y0 + f->y1) / 2);
	cairo_rotate(cr, -M_PI / 2);
	text_at(cr, p->ylabel, 0, 0, 0.5);
	cairo_restore(cr);
	cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
	cairo_set_font_size(cr, 15);
	text_at(cr, p->title, PLOT_WIDTH / 2.0, 26, 0.5);
}

static void set_series_style(cairo_t *cr, const struct plot_series *s)
{
	static const double dash[] = { 7, 4 };
	const double *c = palette[s->color % 10];

	cairo_set_source_rgb(cr, c[0], c[1], c[2]);
	cairo_set_line_width(cr, 2);
	cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
	cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
	cairo_set_dash(cr, s->dashed ? dash : NULL, s->dashed ? 2 : 0, 0);
}

/* The legend in the corner of the plot area with the fewest points under it. */
static void draw_legend(cairo_t *cr, const struct plot *p, const struct frame *f)
{
	double w = 0, h = p->nseries * 17.0 + 10, bx, by;
	size_t best = (size_t)-1;

	cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, 11);
	for (size_t s = 0; s < p->nseries; s++) {
		cairo_text_extents_t te;

		cairo_text_extents(cr, p->series[s].label, &te);
		w = fmax(w, te.x_advance);
	}
	w += 48;
	bx = f->x1 - w - 8;
	by = f->y1 + 8;
	for (int corner = 0; corner < 4; corner++) {
		double cx = corner & 1 ? f->x0 + 8 : f->x1 - w - 8;
		double cy = corner & 2 ? f->y0 - h - 8 : f->y1 + 8;
		size_t under = 0;

		/* the curves sampled along their segments, not just at the epochs */
		for (size_t s = 0; s < p->nseries; s++) {
			const struct plot_series *r = &p->series[s];

			for (size_t i = 0; i < r->n; i++) {
				size_t j = i + 1 < r->n ? i + 1 : i;

				for (int t = 0; t < 16; t++) {
					double u = j == i ? 0 : t / 16.0;
					double vx = r->x[i] + u * (r->x[j] - r->x[i]), vy = r->y[i] + u * (r->y[j] - r->y[i]);
					double x = plot_axis_map(&f->xa, vx, f->x0, f->x1);
					double y = plot_axis_map(&f->ya, vy, f->y0, f->y1);

					under += x >= cx && x <= cx + w && y >= cy && y <= cy + h;   /* NaN: false */
				}
			}
		}
		if (under < best) {
			best = under;
			bx = cx;
			by = cy;
		}
	}
	cairo_rectangle(cr, bx + 0.5, by + 0.5, w, h);
	cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
	cairo_fill_preserve(cr);
	cairo_set_source_rgb(cr, 0.7, 0.7, 0.7);
	cairo_set_line_width(cr, 1);
	cairo_stroke(cr);
	for (size_t s = 0; s < p->nseries; s++) {
		double y = by + 14 + s * 17.0;

		set_series_style(cr, &p->series[s]);
		cairo_move_to(cr, bx + 8, y - 4);
		cairo_line_to(cr, bx + 36, y - 4);
		cairo_stroke(cr);
		cairo_set_dash(cr, NULL, 0, 0);
		cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
		cairo_move_to(cr, bx + 42, y);
		cairo_show_text(cr, p->series[s].label);
	}
}

/* One stroke per series, last on the page (see the top). */
static void draw_series(cairo_t *cr, const struct plot *p, const struct frame *f)
{
	for (size_t s = 0; s < p->nseries; s++) {
		const struct plot_series *r = &p->series[s];
		bool pen = false;
		size_t points = 0;
		double lx = 0, ly = 0;

		set_series_style(cr, r);
		for (size_t i = 0; i < r->n; i++) {
			double x, y;

			if (!isfinite(r->x[i]) || !isfinite(r->y[i])) {
				pen = false;
				continue;
			}
			x = plot_axis_map(&f->xa, r->x[i], f->x0, f->x1);
			y = plot_axis_map(&f->ya, r->y[i], f->y0, f->y1);
			if (pen)
				cairo_line_to(cr, x, y);
			else
				cairo_move_to(cr, x, y);
			pen = true;
			points++;
			lx = x;
			ly = y;
		}
		if (points == 1)   /* one epoch: a dot (the round cap of a tiny segment) */
			cairo_line_to(cr, lx + 0.01, ly);
		cairo_stroke(cr);
	}
}

/* Whether cairo strokes anything for r: a finite point at least. */
static bool drawn(const struct plot_series *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (isfinite(r->x[i]) && isfinite(r->y[i]))
			return true;
	return false;
}

/* Give the last <path> elements of the SVG, one per series drawn, their ids. */
static int name_paths(const struct plot *p, struct membuf *m, char *why, size_t nwhy)
{
	size_t ndrawn = 0;
	size_t *at;
	size_t found = 0, k;
	struct membuf out = { 0 };
	const uint8_t *q = m->p, *end = m->p + m->len;
	int rc = 0;

	for (size_t s = 0; s < p->nseries; s++)
		ndrawn += drawn(&p->series[s]);
	at = calloc(ndrawn ? ndrawn : 1, sizeof(*at));
	if (!at) {
		snprintf(why, nwhy, "out of memory");
		return -ENOMEM;
	}
	if (ndrawn == 0)
		goto out;
	/* every "<path", keeping the last ndrawn positions in a ring */
	while ((q = memmem(q, (size_t)(end - q), "<path", 5)) != NULL) {
		at[found % ndrawn] = (size_t)(q - m->p);
		found++;
		q += 5;
	}
	if (found < ndrawn) {
		snprintf(why, nwhy, "cairo wrote %zu paths for %zu series", found, ndrawn);
		rc = -EPROTO;
		goto out;
	}
	{
		size_t pos = 0, d = 0;

		for (size_t s = 0; s < p->nseries; s++) {
			const struct plot_series *r = &p->series[s];
			size_t off;

			if (!drawn(r))
				continue;
			off = at[(found - ndrawn + d) % ndrawn];
			d++;
			const uint8_t *close = memchr(m->p + off, '>', m->len - off);
			char attr[160];
			int n;

			if (!close || !memmem(m->p + off, (size_t)(close - (m->p + off)), "fill:none", 9)) {
				snprintf(why, nwhy, "the SVG's path %zu is not a series' stroke", found - ndrawn + d - 1);
				rc = -EPROTO;
				goto out;
			}
			n = snprintf(attr, sizeof(attr), " id=\"%s\" class=\"series job-%lld %s\"", r->id, r->job,
				     r->kind);
			k = off + 5;
			if (mem_write(&out, m->p + pos, (unsigned)(k - pos)) != CAIRO_STATUS_SUCCESS ||
			    mem_write(&out, (const unsigned char *)attr, (unsigned)n) != CAIRO_STATUS_SUCCESS) {
				snprintf(why, nwhy, "out of memory");
				rc = -ENOMEM;
				goto out;
			}
			pos = k;
		}
		if (mem_write(&out, m->p + pos, (unsigned)(m->len - pos)) != CAIRO_STATUS_SUCCESS) {
			snprintf(why, nwhy, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
	}
	free(m->p);
	*m = out;
	out.p = NULL;
out:
	free(out.p);
	free(at);
	return rc;
}

int plot_render(const struct plot *p, enum plot_format fmt, uint8_t **out, size_t *len, char *why,
		size_t nwhy)
{
	struct membuf m = { 0 };
	cairo_surface_t *sf;
	cairo_t *cr = NULL;
	struct frame f;
	double xmin, xmax, ymin, ymax;
	cairo_status_t st;
	int rc = 0;

	*out = NULL;
	*len = 0;
	if (!plot_data_range(p, &xmin, &xmax, &ymin, &ymax)) {
		snprintf(why, nwhy, "nothing to draw");
		return -EINVAL;
	}
	plot_axis_fit(&f.xa, xmin, xmax, 11, true);
	plot_axis_fit(&f.ya, ymin, ymax, 8, false);
	f.x0 = M_LEFT;
	f.x1 = PLOT_WIDTH - M_RIGHT;
	f.y0 = PLOT_HEIGHT - M_BOTTOM;
	f.y1 = M_TOP;
	if (fmt == PLOT_SVG)
		sf = cairo_svg_surface_create_for_stream(mem_write, &m, PLOT_WIDTH, PLOT_HEIGHT);
	else
		sf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, PLOT_WIDTH, PLOT_HEIGHT);
	st = cairo_surface_status(sf);
	if (st == CAIRO_STATUS_SUCCESS) {
		cr = cairo_create(sf);
		st = cairo_status(cr);
	}
	if (st == CAIRO_STATUS_SUCCESS) {
		cairo_set_source_rgb(cr, 1, 1, 1);
		cairo_paint(cr);
		draw_axes(cr, p, &f);
		draw_legend(cr, p, &f);
		draw_series(cr, p, &f);
		st = cairo_status(cr);
	}
	cairo_destroy(cr);
	if (st == CAIRO_STATUS_SUCCESS && fmt == PLOT_PNG)
		st = cairo_surface_write_to_png_stream(sf, mem_write, &m);
	cairo_surface_finish(sf);   /* the SVG is written now */
	if (st == CAIRO_STATUS_SUCCESS)
		st = cairo_surface_status(sf);
	cairo_surface_destroy(sf);
	if (st != CAIRO_STATUS_SUCCESS || m.oom) {
		snprintf(why, nwhy, "cairo: %s", m.oom ? "out of memory" : cairo_status_to_string(st));
		rc = m.oom || st == CAIRO_STATUS_NO_MEMORY ? -ENOMEM : -EIO;
		goto fail;
	}
	if (fmt == PLOT_SVG) {
		rc = name_paths(p, &m, why, nwhy);
		if (rc < 0)
			goto fail;
	}
	*out = m.p;
	*len = m.len;
	return 0;
fail:
	free(m.p);
	return rc;
}

void plot_release(void)
{
	cairo_debug_reset_static_data();
	FcFini();
}

/* ---- text ------------------------------------------------------------- */

/* A braille cell's dot (dx 0..1, dy 0..3) as its bit (U+2800 + bits). */
static const uint8_t braille_bit[4][2] = { { 0x01, 0x08 }, { 0x02, 0x10 }, { 0x04, 0x20 }, { 0x40, 0x80 } };

struct grid {
	int cols, rows;          /* cells */
	uint8_t *bits;           /* (rows, cols) */
	int16_t *owner;          /* (rows, cols): the series drawn last in the cell, -1 none */
};

static void grid_dot(struct grid *g, int x, int y, int s)
{
	int c = x / 2, r = y / 4;

	if (x < 0 || y < 0 || c >= g->cols || r >= g->rows)
		return;
	g->bits[r * g->cols + c] |= braille_bit[y % 4][x % 2];
	g->owner[r * g->cols + c] = (int16_t)s;
}

/* A line of dots from (x0, y0) to (x1, y1); dashed: 2 dots on, 2 off along
 * the series (*k counts them). */
static void grid_line(struct grid *g, int x0, int y0, int x1, int y1, int s, bool dashed, unsigned *k)
{
	int dx = abs(x1 - x0), dy = -abs(y1 - y0);
	int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;

	for (;;) {
		int e2 = 2 * e;

		if (!dashed || (*k / 2) % 2 == 0)
			grid_dot(g, x0, y0, s);
		(*k)++;
		if (x0 == x1 && y0 == y1)
			break;
		if (e2 >= dy) {
			e += dy;
			x0 += sx;
		}
		if (e2 <= dx) {
			e += dx;
			y0 += sy;
		}
	}
}

static void put_braille(FILE *out, uint8_t bits)
{
	unsigned cp = 0x2800u + bits;

	if (!bits) {
		fputc(' ', out);
		return;
	}
	fputc((int)(0xe0 | (cp >> 12)), out);
	fputc((int)(0x80 | ((cp >> 6) & 0x3f)), out);
	fputc((int)(0x80 | (cp & 0x3f)), out);
}

static int ansi_color(const struct plot_series *s)
{
	static const int base[6] = { 34, 33, 32, 31, 35, 36 };

	return base[s->color % 6] + (s->dashed ? 60 : 0);
}

/* At most `max` bytes of s, not cutting a UTF-8 sequence. */
static int utf8_cut(const char *s, int max)
{
	int n = (int)strlen(s);

	if (n <= max)
		return n;
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	return max;
}

int plot_text(FILE *out, const struct plot *p, int cols, int rows, bool color)
{
	struct plot_axis xa, ya;
	struct grid g = { 0 };
	double xmin = 0, xmax = 1, ymin = 0, ymax = 1;
	char labels[PLOT_MAX_TICKS][32];
	int tick_row[PLOT_MAX_TICKS], lw = 0, dots_w, dots_h;
	char *line = NULL;
	int rc = 0;

	if (rows < 4)
		rows = 4;
	if (!plot_data_range(p, &xmin, &xmax, &ymin, &ymax))
		xmin = xmax = ymin = ymax = 0;
	plot_axis_fit(&ya, ymin, ymax, rows / 2 + 1 < 6 ? rows / 2 + 1 : 6, false);
	for (int i = 0; i < ya.nticks; i++) {
		int n;

		plot_axis_label(&ya, plot_axis_tick(&ya, i), labels[i], sizeof(labels[i]));
		n = (int)strlen(labels[i]);
		lw = n > lw ? n : lw;
	}
	g.cols = cols - lw - 2;
	if (g.cols < 10)
		g.cols = 10;
	g.rows = rows;
	dots_w = g.cols * 2;
	dots_h = g.rows * 4;
	plot_axis_fit(&xa, xmin, xmax, g.cols / 4 < 2 ? 2 : g.cols / 4, true);
	g.bits = calloc((size_t)g.rows * (size_t)g.cols, 1);
	g.owner = malloc((size_t)g.rows * (size_t)g.cols * sizeof(*g.owner));
	line = malloc((size_t)(lw + 2 + g.cols) + 1);
	if (!g.bits || !g.owner || !line) {
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < g.rows * g.cols; i++)
		g.owner[i] = -1;
	for (int i = 0; i < ya.nticks; i++)
		tick_row[i] = (int)lround(plot_axis_map(&ya, plot_axis_tick(&ya, i), dots_h - 1, 0)) / 4;

	for (size_t s = 0; s < p->nseries; s++) {
		const struct plot_series *r = &p->series[s];
		bool pen = false;
		int px = 0, py = 0;
		unsigned k = 0;

		for (size_t i = 0; i < r->n; i++) {
			int x, y;

			if (!isfinite(r->x[i]) || !isfinite(r->y[i])) {
				pen = false;
				continue;
			}
			x = (int)lround(plot_axis_map(&xa, r->x[i], 0, dots_w - 1));
			y = (int)lround(plot_axis_map(&ya, r->y[i], dots_h - 1, 0));
			if (pen)
				grid_line(&g, px, py, x, y, (int)s, r->dashed, &k);
			else
				grid_dot(&g, x, y, (int)s);
			pen = true;
			px = x;
			py = y;
		}
	}

	fprintf(out, "%s by epoch\n", p->title);
	for (int r = 0; r < g.rows; r++) {
		const char *label = "";
		int cur = -1;

		for (int i = 0; i < ya.nticks; i++)
			if (tick_row[i] == r)
				label = labels[i];
		fprintf(out, "%*s %s", lw, label, *label ? "\u2524" : "\u2502");
		for (int c = 0; c < g.cols; c++) {
			int o = g.owner[r * g.cols + c];

			if (color && o != cur && o >= 0) {
				fprintf(out, "\033[%dm", ansi_color(&p->series[o]));
				cur = o;
			}
			put_braille(out, g.bits[r * g.cols + c]);
		}
		fprintf(out, "%s\n", color && cur >= 0 ? "\033[0m" : "");
	}
	/* the x axis: ticks under the epochs, their labels centered below */
	fprintf(out, "%*s \u2514", lw, "");
	{
		int width = lw + 2 + g.cols, last_end = -1;

		for (int c = 0; c < g.cols; c++) {
			bool tick = false;

			for (int i = 0; i < xa.nticks; i++)
				tick = tick || (int)lround(plot_axis_map(&xa, plot_axis_tick(&xa, i), 0, dots_w - 1)) / 2 == c;
			fputs(tick ? "\u252c" : "\u2500", out);
		}
		fputc('\n', out);
		memset(line, ' ', (size_t)width);
		line[width] = '\0';
		for (int i = 0; i < xa.nticks; i++) {
			char lab[32];
			int col = lw + 2 + (int)lround(plot_axis_map(&xa, plot_axis_tick(&xa, i), 0, dots_w - 1)) / 2;
			int n, start;

			plot_axis_label(&xa, plot_axis_tick(&xa, i), lab, sizeof(lab));
			n = (int)strlen(lab);
			start = col - (n - 1) / 2;
			if (start + n > width)
				start = width - n;
			if (start <= last_end + 1 || start < 0)
				continue;
			memcpy(line + start, lab, (size_t)n);
			last_end = start + n - 1;
		}
		if (last_end + 8 <= width)
			memcpy(line + width - 5, "epoch", 5);
		while (width > 0 && line[width - 1] == ' ')
			line[--width] = '\0';
		fprintf(out, "%s\n", line);
	}
	for (size_t s = 0; s < p->nseries; s++) {
		const struct plot_series *r = &p->series[s];
		int n = utf8_cut(r->label, cols - 4 > 0 ? cols - 4 : 0);

		if (color)
			fprintf(out, "\033[%dm%s\033[0m %.*s\n", ansi_color(r), r->dashed ? "\u2505\u2505" : "\u2501\u2501",
				n, r->label);
		else
			fprintf(out, "%s %.*s\n", r->dashed ? "\u2505\u2505" : "\u2501\u2501", n, r->label);
	}
	if (ferror(out))
		rc = -EIO;
out:
	free(line);
	free(g.bits);
	free(g.owner);
	return rc;
}
