/*
 * plot.h - trainctl's learning curves: a chart of series (one per job and
 * kind, e.g. job 3's train loss and its val loss) over epochs, drawn with
 * cairo to SVG or PNG, or as a compact text chart (braille dots) for a
 * terminal.
 *
 * It owns the chart's geometry: the "nice" axis ranges and ticks (1, 2, 5
 * x 10^k, epochs whole numbers), the mapping of values to the page, the
 * layout (title, axis labels, ticks, grid, legend), and the SVG's naming
 * of the data paths: each series is one <path> with id="job-N-KIND" and
 * class="series job-N KIND" (KIND train, val or lr), so scripts and tests
 * find them. It knows nothing of the daemon: verbs-plot.c fetches the
 * histories and writes the file.
 *
 * Errors: plot_render returns 0 or a negative errno with `why` in words;
 * plot_text returns 0 or -EIO (the stream failed).
 *
 * Thread: trainctl has one (cairo surfaces are not shared).
 */
#ifndef TRAIND_CLIENT_PLOT_H
#define TRAIND_CLIENT_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum plot_format { PLOT_SVG, PLOT_PNG };

#define PLOT_WIDTH 800      /* the page: SVG points, PNG pixels */
#define PLOT_HEIGHT 500
#define PLOT_MAX_TICKS 12

struct plot_series {
	char label[160];        /* legend text: "job 3 (mnist-adam) val" */
	char id[48];            /* "job-3-val": the SVG path's id */
	char kind[8];           /* "train", "val" or "lr": its class */
	long long job;
	unsigned color;         /* palette index: one per job */
	bool dashed;            /* drawn dashed (val) */
	size_t n;
	double *x, *y;          /* (n) epoch and value; a NaN value is a gap; owned */
};

struct plot {
	char title[64];         /* "loss", "accuracy", "learning rate" */
	char ylabel[32];
	struct plot_series *series;   /* (nseries), owned */
	size_t nseries;
};

/* An axis: ticks from lo to hi (both ticks) every step. */
struct plot_axis {
	double lo, hi, step;
	int nticks;
	int decimals;           /* digits after the point in tick labels (-1: %g) */
};

/* Round [min, max] out to nice ticks: step 1, 2 or 5 x 10^k, at most
 * max_ticks (3..PLOT_MAX_TICKS) ticks; with `integer`, a whole step >= 1. An
 * empty range (min == max) is widened around the value; non-finite input
 * gives [0, 1]. */
void plot_axis_fit(struct plot_axis *a, double min, double max, int max_ticks, bool integer);
/* Tick i (0..nticks-1) of the axis. */
double plot_axis_tick(const struct plot_axis *a, int i);
/* v mapped linearly from [lo, hi] to [p0, p1] (p1 < p0 for a y axis going up). */
double plot_axis_map(const struct plot_axis *a, double v, double p0, double p1);
/* The label of value v on this axis ("0.25", "1e-05"). */
void plot_axis_label(const struct plot_axis *a, double v, char *buf, size_t n);

/* The range of every finite point of p; false if it has none. */
bool plot_data_range(const struct plot *p, double *xmin, double *xmax, double *ymin, double *ymax);

/* The format named by path's extension (.svg, .png; any case); false if
 * neither. */
bool plot_format_of(const char *path, enum plot_format *f);

/* Draw p (at least one series with a finite point) into a new buffer (*out,
 * caller frees, *len bytes): an SVG document or a PNG file of PLOT_WIDTH x
 * PLOT_HEIGHT. */
int plot_render(const struct plot *p, enum plot_format f, uint8_t **out, size_t *len, char *why,
		size_t nwhy);

/* The text chart: the title, `rows` lines of braille dots with the y tick
 * labels, the x axis with its epoch labels, then one legend line per
 * series; no line wider than `cols` columns. With `color`, each series in
 * its ANSI color (a cell takes the color of the last series drawn in it). */
int plot_text(FILE *out, const struct plot *p, int cols, int rows, bool color);

/* Let go of what cairo and fontconfig keep for the process (font caches):
 * call once, after the last plot_render, before exiting (so LeakSanitizer
 * sees no leak); no cairo object may be alive. */
void plot_release(void);

/* Free what p owns (its series). */
void plot_clear(struct plot *p);

#endif
