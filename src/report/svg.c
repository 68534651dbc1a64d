/* svg.c: SVG primitives and the report's charts (see svg.h). */
#include "report/svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

/* ---------------------------------------------------------------------------
 * Primitives.
 */
void svg_begin(struct sbuf *b, double width, double height, const char *title) {
    sbuf_printf(b,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
                "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n",
                width, height, width, height);
    if (title) {
        sbuf_add(b, "<title>");
        sbuf_xml(b, title);
        sbuf_add(b, "</title>\n");
    }
    sbuf_printf(b, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n",
                width, height);
}

void svg_end(struct sbuf *b) {
    sbuf_add(b, "</svg>\n");
}

void svg_line(struct sbuf *b, double x1, double y1, double x2, double y2, const char *stroke,
              double width, bool dashed) {
    sbuf_printf(b,
                "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
                "stroke-width=\"%.2g\"%s/>\n",
                x1, y1, x2, y2, stroke, width, dashed ? " stroke-dasharray=\"4 3\"" : "");
}

void svg_rect(struct sbuf *b, double x, double y, double w, double h, const char *fill,
              const char *title) {
    sbuf_printf(b, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"", x, y,
                w, h, fill);
    if (title) {
        sbuf_add(b, "><title>");
        sbuf_xml(b, title);
        sbuf_add(b, "</title></rect>\n");
    } else {
        sbuf_add(b, "/>\n");
    }
}

void svg_circle(struct sbuf *b, double cx, double cy, double r, const char *fill,
                const char *title) {
    sbuf_printf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2g\" fill=\"%s\"", cx, cy, r, fill);
    if (title) {
        sbuf_add(b, "><title>");
        sbuf_xml(b, title);
        sbuf_add(b, "</title></circle>\n");
    } else {
        sbuf_add(b, "/>\n");
    }
}

void svg_text(struct sbuf *b, double x, double y, const char *text, double size, const char *anchor,
              double rotate) {
    sbuf_printf(b, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.3g\" text-anchor=\"%s\"", x, y, size,
                anchor);
    if (rotate != 0) sbuf_printf(b, " transform=\"rotate(%.3g %.2f %.2f)\"", rotate, x, y);
    sbuf_add(b, ">");
    sbuf_xml(b, text);
    sbuf_add(b, "</text>\n");
}

/* ---------------------------------------------------------------------------
 * Axes: a data range, its scale, and the map to pixels.
 */
#define MAX_TICKS 40

struct axis {
    enum svg_scale scale;
    double lo, hi; /* data range shown */
    double p0, p1; /* pixel positions of lo and hi */
    int n_ticks;
    double ticks[MAX_TICKS];
};

static double axis_f(const struct axis *a, double v) {
    return a->scale == SVG_LOG ? log10(v) : v;
}

static double axis_px(const struct axis *a, double v) {
    double f0 = axis_f(a, a->lo), f1 = axis_f(a, a->hi);
    return a->p0 + (axis_f(a, v) - f0) / (f1 - f0) * (a->p1 - a->p0);
}

static bool axis_shows(const struct axis *a, double v) {
    return isfinite(v) && (a->scale == SVG_LINEAR || v > 0);
}

static double nice_step(double raw) {
    double e = pow(10, floor(log10(raw))), m = raw / e;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * e;
}

/* Range from the data (min, max; NaN when there is none), padded 5%. */
static void axis_fit(struct axis *a, double mn, double mx) {
    if (!isfinite(mn) || !isfinite(mx)) {
        a->scale = SVG_LINEAR;
        mn = 0, mx = 1;
    }
    if (a->scale == SVG_LOG) {
        double l0 = log10(mn), l1 = log10(mx);
        if (l1 - l0 < 1e-9) l0 -= 0.5, l1 += 0.5;
        double pad = 0.05 * (l1 - l0);
        a->lo = pow(10, l0 - pad), a->hi = pow(10, l1 + pad);
        a->n_ticks = 0;
        bool fine = l1 - l0 < 2;
        for (int k = (int)floor(l0 - pad); k <= (int)ceil(l1 + pad); k++) {
            static const double mult[] = {1, 2, 5};
            for (int m = 0; m < (fine ? 3 : 1); m++) {
                double t = mult[m] * pow(10, k);
                if (t >= a->lo && t <= a->hi && a->n_ticks < MAX_TICKS) a->ticks[a->n_ticks++] = t;
            }
        }
        return;
    }
    if (mx - mn < 1e-12 * fmax(1, fabs(mx))) {
        double d = fabs(mn) > 0 ? 0.1 * fabs(mn) : 1;
        mn -= d, mx += d;
    }
    double pad = 0.05 * (mx - mn);
    a->lo = mn - pad, a->hi = mx + pad;
    double step = nice_step((a->hi - a->lo) / 5);
    a->n_ticks = 0;
    for (double t = ceil(a->lo / step) * step; t <= a->hi + 1e-9 * step && a->n_ticks < MAX_TICKS;
         t += step)
        a->ticks[a->n_ticks++] = fabs(t) < 1e-9 * step ? 0 : t;
}

static void tick_label(char *buf, size_t n, double v) {
    snprintf(buf, n, "%.4g", v);
}

/* Frame, grid lines, tick labels and axis titles of a plot rectangle. */
static void draw_axes(struct sbuf *b, const struct axis *x, const struct axis *y,
                      const char *xlabel, const char *ylabel) {
    double left = x->p0, right = x->p1, top = y->p1, bottom = y->p0;
    char lab[32];
    for (int i = 0; i < y->n_ticks; i++) {
        double py = axis_px(y, y->ticks[i]);
        svg_line(b, left, py, right, py, "#e6e6e6", 1, false);
        tick_label(lab, sizeof lab, y->ticks[i]);
        svg_text(b, left - 6, py + 4, lab, 11, "end", 0);
    }
    for (int i = 0; i < x->n_ticks; i++) {
        double px = axis_px(x, x->ticks[i]);
        svg_line(b, px, top, px, bottom, "#e6e6e6", 1, false);
        tick_label(lab, sizeof lab, x->ticks[i]);
        svg_text(b, px, bottom + 16, lab, 11, "middle", 0);
    }
    sbuf_printf(b,
                "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
                "stroke=\"#333333\" stroke-width=\"1\"/>\n",
                left, top, right - left, bottom - top);
    if (xlabel) {
        char t[256];
        snprintf(t, sizeof t, "%s%s", xlabel, x->scale == SVG_LOG ? " (log scale)" : "");
        svg_text(b, (left + right) / 2, bottom + 36, t, 12, "middle", 0);
    }
    if (ylabel) {
        char t[256];
        snprintf(t, sizeof t, "%s%s", ylabel, y->scale == SVG_LOG ? " (log scale)" : "");
        svg_text(b, left - 52, (top + bottom) / 2, t, 12, "middle", -90);
    }
}

static void draw_title(struct sbuf *b, double width, const char *title, const char *note) {
    if (title) svg_text(b, width / 2, 20, title, 14, "middle", 0);
    if (note) {
        sbuf_add(b, "<g fill=\"#666666\">");
        svg_text(b, width / 2, 36, note, 11, "middle", 0);
        sbuf_add(b, "</g>\n");
    }
}

/* ---------------------------------------------------------------------------
 * Scatter / line chart.
 */
enum svg_scale svg_auto_scale(const double *v, size_t n) {
    double mn = INFINITY, mx = -INFINITY;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        if (v[i] <= 0) return SVG_LINEAR;
        mn = fmin(mn, v[i]), mx = fmax(mx, v[i]), k++;
    }
    return k >= 2 && mx / mn >= 10 ? SVG_LOG : SVG_LINEAR;
}

static void range_add(double *mn, double *mx, const struct axis *a, double v) {
    if (!axis_shows(a, v)) return;
    *mn = isnan(*mn) ? v : fmin(*mn, v);
    *mx = isnan(*mx) ? v : fmax(*mx, v);
}

static int cmp_by_x(const void *pa, const void *pb, void *ctx) {
    const double *x = ctx;
    double a = x[*(const int *)pa], c = x[*(const int *)pb];
    return (a > c) - (a < c);
}

static void draw_series(struct sbuf *b, const struct svg_series *s, const struct axis *x,
                        const struct axis *y) {
    int *order = xmalloc(sizeof(int) * (size_t)(s->n > 0 ? s->n : 1));
    if (!order) {
        b->oom = true; /* reported by sbuf_ok at the end of the chart */
        return;
    }
    int k = 0;
    for (int i = 0; i < s->n; i++)
        if (axis_shows(x, s->x[i]) && axis_shows(y, s->y[i])) order[k++] = i;
    qsort_r(order, (size_t)k, sizeof *order, cmp_by_x, (void *)s->x);
    if (s->connect && k > 1) {
        sbuf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                    s->color);
        for (int i = 0; i < k; i++)
            sbuf_printf(b, "%s%.2f,%.2f", i ? " " : "", axis_px(x, s->x[order[i]]),
                        axis_px(y, s->y[order[i]]));
        sbuf_add(b, "\"/>\n");
    }
    for (int i = 0; i < k; i++) {
        int j = order[i];
        double px = axis_px(x, s->x[j]), py = axis_px(y, s->y[j]);
        if (s->ylo && s->yhi && axis_shows(y, s->ylo[j]) && axis_shows(y, s->yhi[j])) {
            double a = axis_px(y, s->ylo[j]), c = axis_px(y, s->yhi[j]);
            svg_line(b, px, a, px, c, s->color, 1.2, false);
            svg_line(b, px - 4, a, px + 4, a, s->color, 1.2, false);
            svg_line(b, px - 4, c, px + 4, c, s->color, 1.2, false);
        }
        svg_circle(b, px, py, 4, s->color, s->labels ? s->labels[j] : NULL);
    }
    free(order);
}

static void draw_legend(struct sbuf *b, double x, double y, int n, const char *const *names,
                        const char *const *colors) {
    for (int i = 0; i < n; i++) {
        svg_rect(b, x, y + 18 * i - 9, 12, 12, colors[i], NULL);
        svg_text(b, x + 18, y + 18 * i + 1, names[i], 12, "start", 0);
    }
}

int svg_xy(struct sbuf *b, const struct svg_xy *c) {
    if (c->n_series < 0 || (c->n_series > 0 && !c->series))
        return err_set("chart '%s': no series array", c->title ? c->title : "");
    double W = c->width > 0 ? c->width : 640, H = c->height > 0 ? c->height : 420;
    struct axis x = {.scale = c->xscale, .p0 = 75, .p1 = W - 160};
    struct axis y = {.scale = c->yscale, .p0 = H - 55, .p1 = 50};
    double xmn = NAN, xmx = NAN, ymn = NAN, ymx = NAN;
    for (int s = 0; s < c->n_series; s++) {
        const struct svg_series *se = &c->series[s];
        for (int i = 0; i < se->n; i++) {
            if (!axis_shows(&x, se->x[i]) || !axis_shows(&y, se->y[i])) continue;
            range_add(&xmn, &xmx, &x, se->x[i]);
            range_add(&ymn, &ymx, &y, se->y[i]);
            if (se->ylo && se->yhi) {
                range_add(&ymn, &ymx, &y, se->ylo[i]);
                range_add(&ymn, &ymx, &y, se->yhi[i]);
            }
        }
    }
    axis_fit(&x, xmn, xmx);
    axis_fit(&y, ymn, ymx);
    svg_begin(b, W, H, c->title);
    draw_title(b, W, c->title, c->note);
    draw_axes(b, &x, &y, c->xlabel, c->ylabel);
    if (isnan(xmn)) svg_text(b, (x.p0 + x.p1) / 2, (y.p0 + y.p1) / 2, "no data", 14, "middle", 0);
    const char *names[16], *colors[16];
    int nl = 0;
    for (int s = 0; s < c->n_series; s++) {
        draw_series(b, &c->series[s], &x, &y);
        if (nl < 16 && c->series[s].name) {
            names[nl] = c->series[s].name;
            colors[nl++] = c->series[s].color;
        }
    }
    draw_legend(b, W - 145, 62, nl, names, colors);
    svg_end(b);
    return sbuf_ok(b);
}

/* ---------------------------------------------------------------------------
 * One value (with an error bar) per category.
 */
int svg_cat(struct sbuf *b, const struct svg_cat *c) {
    if (c->n < 0 || (c->n > 0 && (!c->names || !c->y)))
        return err_set("chart '%s': names or values missing", c->title ? c->title : "");
    double slot = 46;
    double W = c->width > 0 ? c->width : fmax(480, 75 + slot * c->n + 30);
    double H = c->height > 0 ? c->height : 440;
    struct axis x = {.scale = SVG_LINEAR, .p0 = 75, .p1 = W - 30, .lo = 0, .hi = 1};
    struct axis y = {.scale = SVG_LINEAR, .p0 = H - 130, .p1 = 50};
    double mn = NAN, mx = NAN;
    for (int i = 0; i < c->n; i++) {
        range_add(&mn, &mx, &y, c->y[i]);
        if (c->lo && c->hi && isfinite(c->y[i])) {
            range_add(&mn, &mx, &y, c->lo[i]);
            range_add(&mn, &mx, &y, c->hi[i]);
        }
    }
    axis_fit(&y, mn, mx);
    svg_begin(b, W, H, c->title);
    draw_title(b, W, c->title, c->note);
    struct axis none = x;
    none.n_ticks = 0;
    draw_axes(b, &none, &y, NULL, c->ylabel);
    if (y.lo < 0 && y.hi > 0) {
        double p = axis_px(&y, 0);
        svg_line(b, x.p0, p, x.p1, p, "#888888", 1, true);
    }
    double step = c->n > 0 ? (x.p1 - x.p0) / c->n : 0;
    for (int i = 0; i < c->n; i++) {
        double px = x.p0 + step * (i + 0.5);
        const char *col = c->colors && c->colors[i] ? c->colors[i] : "#444444";
        svg_text(b, px + 4, y.p0 + 14, c->names[i], 11, "end", -35);
        if (!isfinite(c->y[i])) {
            svg_text(b, px, y.p0 - 6, "n/a", 10, "middle", 0);
            continue;
        }
        char tip[256];
        if (c->lo && c->hi && isfinite(c->lo[i]) && isfinite(c->hi[i])) {
            double a = axis_px(&y, c->lo[i]), t = axis_px(&y, c->hi[i]);
            svg_line(b, px, a, px, t, col, 1.5, false);
            svg_line(b, px - 5, a, px + 5, a, col, 1.5, false);
            svg_line(b, px - 5, t, px + 5, t, col, 1.5, false);
            snprintf(tip, sizeof tip, "%s: %.4g [%.4g, %.4g]", c->names[i], c->y[i], c->lo[i],
                     c->hi[i]);
        } else {
            snprintf(tip, sizeof tip, "%s: %.4g", c->names[i], c->y[i]);
        }
        svg_circle(b, px, axis_px(&y, c->y[i]), 4.5, col, tip);
    }
    if (c->n == 0) svg_text(b, (x.p0 + x.p1) / 2, (y.p0 + y.p1) / 2, "no data", 14, "middle", 0);
    svg_end(b);
    return sbuf_ok(b);
}

/* ---------------------------------------------------------------------------
 * Small multiples of histograms on a shared x range.
 */
static void draw_panel(struct sbuf *b, const struct svg_hists *c, const struct svg_hist_panel *p,
                       double ox, double oy, double pw, double ph) {
    size_t top = 0;
    for (int k = 0; k < c->n_bins; k++)
        top = p->counts[k] > top ? p->counts[k] : top;
    struct axis x = {.scale = SVG_LINEAR, .p0 = ox + 45, .p1 = ox + pw - 10};
    struct axis y = {.scale = SVG_LINEAR, .p0 = oy + ph - 38, .p1 = oy + 34};
    axis_fit(&x, c->lo, c->hi);
    x.lo = c->lo, x.hi = c->hi; /* bars fill the frame exactly */
    y.lo = 0, y.hi = top > 0 ? (double)top * 1.08 : 1;
    y.n_ticks = 0;
    double step = nice_step(y.hi / 3);
    for (double t = 0; t <= y.hi && y.n_ticks < MAX_TICKS; t += step)
        y.ticks[y.n_ticks++] = t;
    svg_text(b, ox + pw / 2, oy + 14, p->title ? p->title : "", 12, "middle", 0);
    if (p->note) {
        sbuf_add(b, "<g fill=\"#666666\">");
        svg_text(b, ox + pw / 2, oy + 27, p->note, 10, "middle", 0);
        sbuf_add(b, "</g>\n");
    }
    draw_axes(b, &x, &y, NULL, NULL);
    double w = (c->hi - c->lo) / c->n_bins;
    for (int k = 0; k < c->n_bins; k++) {
        if (p->counts[k] == 0) continue;
        double a = c->lo + k * w, px0 = axis_px(&x, a), px1 = axis_px(&x, a + w);
        double py = axis_px(&y, (double)p->counts[k]);
        char tip[96];
        snprintf(tip, sizeof tip, "[%.4g, %.4g%c: %zu", a, a + w, k + 1 == c->n_bins ? ']' : ')',
                 p->counts[k]);
        svg_rect(b, px0, py, fmax(px1 - px0 - 0.5, 0.5), y.p0 - py, p->color ? p->color : "#444444",
                 tip);
    }
}

int svg_hists(struct sbuf *b, const struct svg_hists *c) {
    if (c->n_bins < 1 || !(c->hi > c->lo) || c->n_panels < 0)
        return err_set("chart '%s': needs bins >= 1 and hi > lo", c->title ? c->title : "");
    for (int i = 0; i < c->n_panels; i++)
        if (!c->panels[i].counts)
            return err_set("chart '%s': panel %d has no counts", c->title ? c->title : "", i);
    int cols =
        c->columns > 0 ? c->columns : (c->n_panels < 3 ? (c->n_panels ? c->n_panels : 1) : 3);
    int rows = c->n_panels > 0 ? (c->n_panels + cols - 1) / cols : 1;
    double pw = 270, ph = 190, top = 46;
    double W = cols * pw + 20, H = top + rows * ph + 30;
    svg_begin(b, W, H, c->title);
    draw_title(b, W, c->title, NULL);
    for (int i = 0; i < c->n_panels; i++)
        draw_panel(b, c, &c->panels[i], 10 + (i % cols) * pw, top + (i / cols) * ph, pw, ph);
    if (c->xlabel) svg_text(b, W / 2, H - 10, c->xlabel, 12, "middle", 0);
    if (c->n_panels == 0) svg_text(b, W / 2, H / 2, "no data", 14, "middle", 0);
    svg_end(b);
    return sbuf_ok(b);
}
