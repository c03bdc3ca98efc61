/*
 * test-plot.c - trainctl's charts (client/plot.c): the axis math (nice
 * ticks that cover the data, within the tick budget, steps of 1, 2, 5 x
 * 10^k, whole epochs; widened empty ranges; the linear map), the text
 * chart (its size, where the dots of a rising line land, tick labels on
 * their rows, dashed series with gaps, colors only when asked), and the
 * cairo renderings (one named path per series in the SVG, a PNG of the
 * page's size). Expected values are worked out by hand.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "plot.h"

static void fit(struct plot_axis *a, double lo, double hi, int max, bool integer, double want_lo,
		double want_hi, double want_step, int want_n)
{
	plot_axis_fit(a, lo, hi, max, integer);
	if (fabs(a->lo - want_lo) > 1e-12 || fabs(a->hi - want_hi) > 1e-12 ||
	    fabs(a->step - want_step) > 1e-15 || a->nticks != want_n)
		fail_msg("fit(%g, %g, %d, %d) = [%g, %g] step %g, %d ticks; want [%g, %g] step %g, %d", lo, hi, max,
			 integer, a->lo, a->hi, a->step, a->nticks, want_lo, want_hi, want_step, want_n);
}

static void test_axis_ticks(void **state)
{
	struct plot_axis a;
	char buf[32];

	(void)state;
	fit(&a, 0.013, 0.987, 6, false, 0, 1, 0.2, 6);
	plot_axis_label(&a, plot_axis_tick(&a, 2), buf, sizeof(buf));
	assert_string_equal(buf, "0.4");
	plot_axis_label(&a, plot_axis_tick(&a, 0), buf, sizeof(buf));
	assert_string_equal(buf, "0.0");
	fit(&a, 0.31, 1.44, 8, false, 0.2, 1.6, 0.2, 8);
	fit(&a, 0.31, 1.44, 5, false, 0, 1.5, 0.5, 4);
	fit(&a, 1, 4, 11, true, 1, 4, 1, 4);
	fit(&a, 1, 50, 11, true, 0, 50, 5, 11);
	fit(&a, 1, 2, 11, true, 1, 2, 1, 2);              /* never half an epoch */
	fit(&a, 3, 3, 11, true, 2, 4, 1, 3);              /* one epoch: widened by one */
	fit(&a, 0.001, 0.001, 6, false, 0.0009, 0.0011, 5e-5, 5);
	plot_axis_label(&a, plot_axis_tick(&a, 1), buf, sizeof(buf));
	assert_string_equal(buf, "0.00095");
	fit(&a, -0.3, 0.7, 6, false, -0.5, 1, 0.5, 4);   /* step 0.2 would take 7 ticks (-0.4..0.8) */
	fit(&a, NAN, 1, 6, false, 0, 1, 0.2, 6);
	fit(&a, 5, 0, 6, false, 0, 5, 1, 6);              /* reversed */

	/* every range: covered, within budget, a 1-2-5 step */
	{
		uint64_t s = 12345;

		for (int i = 0; i < 20000; i++) {
			double lo, hi, m;
			int max;
			bool integer;

			s = s * 6364136223846793005ull + 1442695040888963407ull;
			lo = ((double)(s >> 11) / 9007199254740992.0 - 0.5) * pow(10, (int)(s % 13) - 6);
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			hi = lo + (double)(s >> 11) / 9007199254740992.0 * pow(10, (int)(s % 11) - 5);
			max = 3 + (int)(s % 10);
			integer = (s >> 7) % 4 == 0;
			if (integer) {
				lo = floor(lo * 1000);
				hi = lo + floor((hi - lo) * 1000);
			}
			plot_axis_fit(&a, lo, hi, max, integer);
			if (!(a.lo <= lo + 1e-9 * a.step && a.hi >= hi - 1e-9 * a.step))
				fail_msg("[%.17g, %.17g]: axis [%g, %g] does not cover it", lo, hi, a.lo, a.hi);
			if (a.nticks < 2 || a.nticks > max)
				fail_msg("[%g, %g] max %d: %d ticks", lo, hi, max, a.nticks);
			m = a.step / pow(10, floor(log10(a.step) + 1e-9));
			if (fabs(m - 1) > 1e-9 && fabs(m - 2) > 1e-9 && fabs(m - 5) > 1e-9)
				fail_msg("[%g, %g]: step %g is not 1, 2 or 5 x 10^k", lo, hi, a.step);
			if (integer && (a.step < 1 || a.step != floor(a.step)))
				fail_msg("[%g, %g]: integer axis with step %g", lo, hi, a.step);
		}
	}

	plot_axis_fit(&a, 0, 1, 6, false);
	assert_true(fabs(plot_axis_map(&a, 0, 100, 300) - 100) < 1e-12);
	assert_true(fabs(plot_axis_map(&a, 1, 100, 300) - 300) < 1e-12);
	assert_true(fabs(plot_axis_map(&a, 0.25, 400, 0) - 300) < 1e-12);   /* y goes up */
}

static void test_format_of(void **state)
{
	enum plot_format f = PLOT_PNG;

	(void)state;
	assert_true(plot_format_of("out/a.svg", &f) && f == PLOT_SVG);
	assert_true(plot_format_of("A.PNG", &f) && f == PLOT_PNG);
	assert_false(plot_format_of("a.jpg", &f));
	assert_false(plot_format_of("svg", &f));
	assert_false(plot_format_of("x.svg/b", &f));
}

/* A plot of one job: y = (epoch - 1) / 4 over epochs 1..5 (train), and
 * optionally a flat val series at 0.5, dashed. */
static void one_job(struct plot *p, bool with_val)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->title, sizeof(p->title), "loss");
	snprintf(p->ylabel, sizeof(p->ylabel), "loss");
	p->nseries = with_val ? 2 : 1;
	p->series = calloc(p->nseries, sizeof(*p->series));
	for (size_t s = 0; s < p->nseries; s++) {
		struct plot_series *r = &p->series[s];

		r->n = 5;
		r->x = calloc(5, sizeof(double));
		r->y = calloc(5, sizeof(double));
		r->job = 1;
		r->dashed = s == 1;
		snprintf(r->kind, sizeof(r->kind), "%s", s ? "val" : "train");
		snprintf(r->id, sizeof(r->id), "job-1-%s", r->kind);
		snprintf(r->label, sizeof(r->label), "job 1 (t\xc3\xa9st) %s", r->kind);
		for (int i = 0; i < 5; i++) {
			r->x[i] = i + 1;
			r->y[i] = s ? 0.5 : i / 4.0;
		}
	}
}

/* The code point at index idx of a UTF-8 line (0 past its end). */
static unsigned cp_at(const char *line, int idx)
{
	const unsigned char *q = (const unsigned char *)line;

	for (int i = 0; *q; i++) {
		unsigned c = *q, n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
		unsigned v = n == 1 ? c : c & (0xff >> (n + 1));

		for (unsigned k = 1; k < n; k++)
			v = (v << 6) | (q[k] & 0x3f);
		if (i == idx)
			return v;
		q += n;
	}
	return 0;
}

static int cp_len(const char *line)
{
	int n = 0;

	for (const unsigned char *q = (const unsigned char *)line; *q; q++)
		n += (*q & 0xc0) != 0x80;
	return n;
}

/* The text chart of p split into lines (array of n lines, NULL-terminated). */
static char **text_lines(const struct plot *p, int cols, int rows, bool color, int *n, char **buf)
{
	size_t len = 0;
	FILE *out = open_memstream(buf, &len);
	char **lines = calloc(64, sizeof(*lines));
	char *save = NULL;

	assert_non_null(out);
	assert_int_equal(plot_text(out, p, cols, rows, color), 0);
	fclose(out);
	*n = 0;
	for (char *l = strtok_r(*buf, "\n", &save); l && *n < 63; l = strtok_r(NULL, "\n", &save))
		lines[(*n)++] = l;
	return lines;
}

/* Whether any of the n lines holds s. */
static bool any_line(char **l, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (strstr(l[i], s))
			return true;
	return false;
}

static bool blank(unsigned cp)
{
	return cp == ' ' || cp == 0x2800;
}

static void test_text_chart(void **state)
{
	struct plot p;
	char *buf = NULL, **l;
	int n, plot_col0 = 5;   /* "1.0 ┤": 3 label columns, a space, the axis */

	(void)state;
	one_job(&p, false);
	l = text_lines(&p, 40, 8, false, &n, &buf);
	/* title, 8 rows, the axis, its labels, one legend line */
	assert_int_equal(n, 12);
	assert_string_equal(l[0], "loss by epoch");
	for (int i = 0; i < n; i++)
		if (cp_len(l[i]) > 40)
			fail_msg("line %d is %d columns wide: '%s'", i, cp_len(l[i]), l[i]);
	/* y ticks 0, 0.5, 1 on the first, middle and last rows */
	assert_memory_equal(l[1], "1.0 \u2524", 3 + 1 + 3);
	assert_memory_equal(l[8], "0.0 \u2524", 3 + 1 + 3);
	assert_int_equal(cp_at(l[2], 4), 0x2502);
	/* the rising line: from the bottom left to the top right */
	assert_false(blank(cp_at(l[8], plot_col0)));
	assert_false(blank(cp_at(l[1], plot_col0 + 34)));
	assert_true(blank(cp_at(l[1], plot_col0)));
	assert_true(blank(cp_at(l[8], plot_col0 + 34)));
	/* the lowest dot is the bottom-left dot of its cell (bits 0x40) */
	assert_true((cp_at(l[8], plot_col0) - 0x2800) & 0x40);
	/* every column of the plot area has a dot of the line: it is drawn through */
	for (int c = 0; c < 35; c++) {
		bool any = false;

		for (int r = 1; r <= 8; r++)
			any = any || !blank(cp_at(l[r], plot_col0 + c));
		if (!any)
			fail_msg("column %d of the line has no dot", c);
	}
	/* the x axis and its labels: epoch 1 under the first column, 5 under the last */
	assert_int_equal(cp_at(l[9], 4), 0x2514);
	assert_int_equal(cp_at(l[9], 5), 0x252c);
	assert_int_equal(cp_at(l[10], plot_col0), '1');
	assert_int_equal(cp_at(l[10], plot_col0 + 34), '5');
	assert_string_equal(l[11], "\u2501\u2501 job 1 (t\xc3\xa9st) train");
	assert_false(any_line(l, n, "\033["));
	free(l);
	free(buf);
	plot_clear(&p);

	/* a dashed val series at 0.5 (the middle row): dots with gaps */
	one_job(&p, true);
	buf = NULL;
	l = text_lines(&p, 40, 8, false, &n, &buf);
	assert_int_equal(n, 13);
	{
		int dots = 0, gaps = 0, r = 0;

		/* the row holding 0.5 at its far right, where the train line is not */
		for (int i = 1; i <= 8; i++)
			if (!blank(cp_at(l[i], plot_col0 + 30)) && i > 2)
				r = i;
		assert_true(r > 0);
		for (int c = 20; c < 35; c++) {
			unsigned b = cp_at(l[r], plot_col0 + c) - 0x2800;

			/* a full row of dots would be 0x24 or 0x12 in every cell; dashed: some cells half */
			dots += !blank(cp_at(l[r], plot_col0 + c));
			gaps += blank(cp_at(l[r], plot_col0 + c)) || (b != 0x24 && b != 0x12 && b != 0x09 && b != 0xc0);
		}
		if (!(dots > 5 && gaps > 3))
			fail_msg("val row %d is not dashed: %d cells with dots, %d with gaps: '%s'", r, dots, gaps, l[r]);
	}
	assert_string_equal(l[12], "\u2505\u2505 job 1 (t\xc3\xa9st) val");
	free(l);
	free(buf);
	buf = NULL;
	l = text_lines(&p, 40, 8, true, &n, &buf);
	assert_true(any_line(l, n, "\033[34m"));   /* job colour 0: blue; val bright */
	assert_true(any_line(l, n, "\033[94m"));
	free(l);
	free(buf);
	plot_clear(&p);
}

static void test_render(void **state)
{
	struct plot p;
	uint8_t *data = NULL;
	size_t len = 0;
	char why[128], *svg;

	(void)state;
	one_job(&p, true);
	assert_int_equal(plot_render(&p, PLOT_SVG, &data, &len, why, sizeof(why)), 0);
	svg = calloc(len + 1, 1);
	memcpy(svg, data, len);
	assert_non_null(strstr(svg, "<svg"));
	{
		const char *a = strstr(svg, "<path id=\"job-1-train\" class=\"series job-1 train\"");
		const char *b = strstr(svg, "<path id=\"job-1-val\" class=\"series job-1 val\"");

		assert_non_null(a);
		assert_non_null(b);
		assert_null(strstr(a + 10, "id=\"job-1-train\""));
		assert_true(a < b);
		assert_non_null(strstr(b, "stroke-dasharray"));
	}
	free(svg);
	free(data);
	data = NULL;
	assert_int_equal(plot_render(&p, PLOT_PNG, &data, &len, why, sizeof(why)), 0);
	assert_true(len > 24);
	assert_memory_equal(data, "\x89PNG\r\n\x1a\n", 8);
	assert_memory_equal(data + 12, "IHDR", 4);
	assert_int_equal(((uint32_t)data[16] << 24) | (data[17] << 16) | (data[18] << 8) | data[19], PLOT_WIDTH);
	assert_int_equal(((uint32_t)data[20] << 24) | (data[21] << 16) | (data[22] << 8) | data[23], PLOT_HEIGHT);
	free(data);
	plot_clear(&p);

	/* a series with no finite point draws nothing, and the next keeps its name */
	one_job(&p, true);
	for (int i = 0; i < 5; i++)
		p.series[0].y[i] = NAN;
	assert_int_equal(plot_render(&p, PLOT_SVG, &data, &len, why, sizeof(why)), 0);
	svg = calloc(len + 1, 1);
	memcpy(svg, data, len);
	assert_null(strstr(svg, "job-1-train"));
	assert_non_null(strstr(svg, "<path id=\"job-1-val\""));
	free(svg);
	free(data);
	data = NULL;
	plot_clear(&p);

	/* nothing finite: an error, not an empty chart */
	one_job(&p, false);
	for (int i = 0; i < 5; i++)
		p.series[0].y[i] = NAN;
	assert_int_equal(plot_render(&p, PLOT_SVG, &data, &len, why, sizeof(why)), -EINVAL);
	plot_clear(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_axis_ticks),
		cmocka_unit_test(test_format_of),
		cmocka_unit_test(test_text_chart),
		cmocka_unit_test(test_render),
	};

	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	plot_release();
	return rc;
}
