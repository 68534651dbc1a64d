/* svg.h: a small SVG writer, and the three kinds of chart the report draws.
 *
 * Why our own: the report must be plain files that open anywhere (a browser, a
 * Markdown viewer, an image tool) with no plotting library, no scripts and no
 * fonts fetched from anywhere. Every chart is a standalone SVG 1.1 document
 * (xmlns set, explicit width/height/viewBox, generic "sans-serif" font) that
 * librsvg and Chromium both render; tests/unit/test_report_svg.c renders one.
 *
 * Geometry: a chart of width W and height H keeps margins for tick labels and
 * axis titles; data coordinates map to the plot rectangle linearly, or through
 * log10 on a log axis. Ticks are "nice" numbers: 1, 2, 5 x 10^k on a linear
 * axis; decades on a log axis, with 2 and 5 in between when the range spans
 * fewer than two decades. All text goes through sbuf_xml, so names of SAEs or
 * anything else can never break the markup.
 *
 * The charts:
 *   svg_xy       scatter/line chart with one or more series, optional vertical
 *                error bars and per-point hover titles (the Pareto curve);
 *   svg_cat      one value per category with an error bar (mean score and CI
 *                per SAE), a dashed line at 0 when 0 is in range;
 *   svg_hists    small multiples: one histogram per panel on a shared x range
 *                (score distributions, nearest-direction cosines).
 * Each returns 0, or -1 with err_set when its input is unusable (no finite
 * point, mismatched lengths), naming the chart.
 */
#ifndef AUTOINTERP_REPORT_SVG_H
#define AUTOINTERP_REPORT_SVG_H

#include <stdbool.h>
#include <stddef.h>

#include "report/sbuf.h"

/* Primitives (coordinates in SVG pixels). */
void svg_begin(struct sbuf *b, double width, double height, const char *title);
void svg_end(struct sbuf *b);
void svg_line(struct sbuf *b, double x1, double y1, double x2, double y2, const char *stroke,
              double width, bool dashed);
void svg_rect(struct sbuf *b, double x, double y, double w, double h, const char *fill,
              const char *title);
void svg_circle(struct sbuf *b, double cx, double cy, double r, const char *fill,
                const char *title);
/* anchor: "start", "middle" or "end"; rotate: degrees about (x, y). */
void svg_text(struct sbuf *b, double x, double y, const char *text, double size, const char *anchor,
              double rotate);

enum svg_scale { SVG_LINEAR, SVG_LOG };

/* LOG when every value is > 0 and max/min >= 10, else LINEAR. */
enum svg_scale svg_auto_scale(const double *v, size_t n);

struct svg_series {
    const char *name;  /* legend entry */
    const char *color; /* CSS colour, e.g. "#1f77b4" */
    int n;
    const double *x, *y;
    const double *ylo, *yhi;   /* error bars, may be NULL */
    const char *const *labels; /* hover title per point, may be NULL */
    bool connect;              /* join points in x order */
};

struct svg_xy {
    const char *title, *xlabel, *ylabel;
    enum svg_scale xscale, yscale;
    int n_series;
    const struct svg_series *series;
    const char *note;     /* a line under the title, may be NULL */
    double width, height; /* 0: 640 x 420 */
};
int svg_xy(struct sbuf *b, const struct svg_xy *c);

struct svg_cat {
    const char *title, *ylabel;
    int n;
    const char *const *names;
    const double *y, *lo, *hi; /* lo/hi may be NULL; NaN y: category shown empty */
    const char *const *colors;
    const char *note;
    double width, height; /* 0: automatic width, 420 */
};
int svg_cat(struct sbuf *b, const struct svg_cat *c);

struct svg_hist_panel {
    const char *title;
    const char *color;
    const size_t *counts; /* n_bins */
    const char *note;     /* e.g. "mean 0.41, n 180" */
};
struct svg_hists {
    const char *title, *xlabel;
    double lo, hi;
    int n_bins;
    int n_panels, columns; /* columns 0: up to 3 */
    const struct svg_hist_panel *panels;
};
int svg_hists(struct sbuf *b, const struct svg_hists *c);

#endif
