/* plots.c: the report's SVG plots (see plots.h). */
#include "report/plots.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/svg.h"
#include "report/tables.h"
#include "util/error.h"

const char *report_type_color(int type) {
    static const char *const c[] = {"#1f77b4", "#d62728", "#2ca02c"};
    return type >= 0 && type < REP_N_TYPES ? c[type] : "#444444";
}

/* Whether geometry entry g is drawn in the plots of its layer. */
static bool plotted(const struct report_data *d, const struct rep_geom *g) {
    return g->kind != GEOM_CROSS_TYPE || report_is_matched_pair(d, g->a, g->b);
}

static bool layer_has_geom(const struct report_data *d, int layer, bool self) {
    for (int i = 0; i < d->n_geom; i++)
        if ((d->geom[i].kind == GEOM_SELF) == self && d->sweep.saes[d->geom[i].a].layer == layer &&
            plotted(d, &d->geom[i]))
            return true;
    return false;
}

int report_plot_list(const struct report_data *d, struct rep_plot **out, int *n_out) {
    int nl;
    int *layers = report_layers(d, &nl);
    if (!layers) return -1;
    struct rep_plot *p = xcalloc((size_t)(3 * nl + 2), sizeof *p);
    if (!p) {
        free(layers);
        return -1;
    }
    int n = 0;
    for (int l = 0; l < nl; l++) {
        p[n] = (struct rep_plot){.kind = PLOT_PARETO, .layer = layers[l]};
        snprintf(p[n].file, sizeof p[n].file, "pareto_L%d.svg", layers[l]);
        snprintf(p[n++].title, sizeof p[n].title, "Layer %d: L0 vs CE-loss increase", layers[l]);
    }
    if (d->n_with_scores > 0) {
        p[n] = (struct rep_plot){.kind = PLOT_SCORES};
        snprintf(p[n].file, sizeof p[n].file, "scores.svg");
        snprintf(p[n++].title, sizeof p[n].title, "Mean interpretability score per SAE");
        p[n] = (struct rep_plot){.kind = PLOT_SCORE_HIST};
        snprintf(p[n].file, sizeof p[n].file, "score_hist.svg");
        snprintf(p[n++].title, sizeof p[n].title, "Score distributions");
    }
    for (int self = 1; self >= 0; self--)
        for (int l = 0; l < nl; l++) {
            if (!layer_has_geom(d, layers[l], self)) continue;
            p[n] = (struct rep_plot){.kind = self ? PLOT_GEOM_SELF : PLOT_GEOM_CROSS,
                                     .layer = layers[l]};
            snprintf(p[n].file, sizeof p[n].file, "geometry_%s_L%d.svg", self ? "self" : "cross",
                     layers[l]);
            snprintf(p[n++].title, sizeof p[n].title,
                     self ? "Layer %d: cosine to the nearest other direction"
                          : "Layer %d: highest cosine to the other dictionary",
                     layers[l]);
        }
    free(layers);
    *out = p;
    *n_out = n;
    return 0;
}

/* ---------------------------------------------------------------------------
 */
static int plot_pareto(const struct report_data *d, const struct rep_plot *p, struct sbuf *b) {
    int n = d->sweep.n;
    double *x = xmalloc(sizeof(double) * 2 * (size_t)(n ? n : 1));
    const char **labels = xmalloc(sizeof(char *) * (size_t)(n ? n : 1));
    if (!x || !labels) {
        free(x);
        free(labels);
        return -1;
    }
    double *y = x + n;
    struct svg_series series[REP_N_TYPES];
    int ns = 0, k = 0;
    for (int t = 0; t < REP_N_TYPES; t++) {
        int start = k;
        for (int i = 0; i < n; i++) {
            const struct rep_sae *s = &d->sweep.saes[i];
            if (s->layer != p->layer || s->type != t) continue;
            x[k] = s->l0, y[k] = s->ce_increase, labels[k++] = s->name;
        }
        if (k > start)
            series[ns++] = (struct svg_series){.name = rep_type_name(t),
                                               .color = report_type_color(t),
                                               .n = k - start,
                                               .x = x + start,
                                               .y = y + start,
                                               .labels = labels + start,
                                               .connect = true};
    }
    struct svg_xy c = {.title = p->title,
                       .xlabel = "L0 (active features per token)",
                       .ylabel = "CE-loss increase",
                       .xscale = svg_auto_scale(x, (size_t)k),
                       .yscale = svg_auto_scale(y, (size_t)k),
                       .n_series = ns,
                       .series = series,
                       .note = d->n_with_scores ? NULL : "scores: not yet computed"};
    int rc = svg_xy(b, &c);
    free(x);
    free(labels);
    return rc;
}

static int plot_scores(const struct report_data *d, const struct rep_plot *p, struct sbuf *b) {
    int n = d->sweep.n;
    int *order = xmalloc(sizeof *order * (size_t)(n ? n : 1));
    double *v = xmalloc(sizeof(double) * 3 * (size_t)(n ? n : 1));
    const char **names = xmalloc(sizeof(char *) * 2 * (size_t)(n ? n : 1));
    int rc = -1;
    if (order && v && names) {
        report_display_order(d, order);
        for (int k = 0; k < n; k++) {
            const struct rep_dict *r = &d->dict[order[k]];
            names[k] = d->sweep.saes[order[k]].name;
            names[n + k] = report_type_color(d->sweep.saes[order[k]].type);
            v[k] = r->has_desc ? r->desc.mean : NAN;
            v[n + k] = r->has_ci ? r->ci.bca_lo : NAN;
            v[2 * n + k] = r->has_ci ? r->ci.bca_hi : NAN;
        }
        char note[128];
        snprintf(note, sizeof note,
                 "error bars: %g%% BCa bootstrap CI; n/a: scores not yet computed",
                 100 * (d->set->level > 0 ? d->set->level : BOOT_DEFAULT_LEVEL));
        struct svg_cat c = {.title = p->title,
                            .ylabel = "mean score (Pearson r)",
                            .n = n,
                            .names = names,
                            .y = v,
                            .lo = v + n,
                            .hi = v + 2 * n,
                            .colors = names + n,
                            .note = note};
        rc = svg_cat(b, &c);
    }
    free(order);
    free(v);
    free(names);
    return rc;
}

static int plot_score_hist(const struct report_data *d, const struct rep_plot *p, struct sbuf *b) {
    int n = d->sweep.n;
    int *order = xmalloc(sizeof *order * (size_t)(n ? n : 1));
    struct svg_hist_panel *panels = xcalloc((size_t)(n ? n : 1), sizeof *panels);
    char(*notes)[96] = xcalloc((size_t)(n ? n : 1), sizeof *notes);
    int rc = -1;
    if (order && panels && notes) {
        report_display_order(d, order);
        int np = 0;
        for (int k = 0; k < n; k++) {
            const struct rep_dict *r = &d->dict[order[k]];
            if (!r->has_scores) continue;
            if (r->has_desc)
                snprintf(notes[np], sizeof notes[np], "n %d, mean %.3f, median %.3f", r->n_scored,
                         r->desc.mean, r->desc.median);
            else
                snprintf(notes[np], sizeof notes[np], "n %d", r->n_scored);
            panels[np] =
                (struct svg_hist_panel){.title = d->sweep.saes[order[k]].name,
                                        .color = report_type_color(d->sweep.saes[order[k]].type),
                                        .counts = r->score_hist,
                                        .note = notes[np]};
            np++;
        }
        struct svg_hists c = {.title = p->title,
                              .xlabel = "score (Pearson r)",
                              .lo = -1,
                              .hi = 1,
                              .n_bins = REP_SCORE_BINS,
                              .n_panels = np,
                              .panels = panels};
        rc = svg_hists(b, &c);
    }
    free(order);
    free(panels);
    free(notes);
    return rc;
}

static int plot_geom(const struct report_data *d, const struct rep_plot *p, struct sbuf *b) {
    bool self = p->kind == PLOT_GEOM_SELF;
    struct svg_hist_panel *panels = xcalloc((size_t)(d->n_geom ? d->n_geom : 1), sizeof *panels);
    char(*text)[2][200] = xcalloc((size_t)(d->n_geom ? d->n_geom : 1), sizeof *text);
    int rc = -1;
    if (panels && text) {
        int np = 0;
        for (int i = 0; i < d->n_geom; i++) {
            const struct rep_geom *g = &d->geom[i];
            const struct rep_sae *a = &d->sweep.saes[g->a];
            if ((g->kind == GEOM_SELF) != self || a->layer != p->layer) continue;
            if (!plotted(d, g)) continue; /* tables list every pair; plots the matched ones */
            if (self)
                snprintf(text[np][0], sizeof text[np][0], "%s", a->name);
            else
                snprintf(text[np][0], sizeof text[np][0], "%s → %s", a->name,
                         d->sweep.saes[g->b].name);
            snprintf(text[np][1], sizeof text[np][1], "n %zu, mean %.3f, median %.3f%s", g->sum.n,
                     g->sum.mean, g->sum.median, g->below ? " (some < 0)" : "");
            panels[np] = (struct svg_hist_panel){.title = text[np][0],
                                                 .color = report_type_color(a->type),
                                                 .counts = g->counts,
                                                 .note = text[np][1]};
            np++;
        }
        struct svg_hists c = {.title = p->title,
                              .xlabel = "cosine similarity",
                              .lo = 0,
                              .hi = 1,
                              .n_bins = REP_GEOM_BINS,
                              .n_panels = np,
                              .panels = panels,
                              .columns = self ? 0 : 2};
        rc = svg_hists(b, &c);
    }
    free(panels);
    free(text);
    return rc;
}

int report_plot_svg(const struct report_data *d, const struct rep_plot *p, struct sbuf *out) {
    switch (p->kind) {
    case PLOT_PARETO:
        return plot_pareto(d, p, out);
    case PLOT_SCORES:
        return plot_scores(d, p, out);
    case PLOT_SCORE_HIST:
        return plot_score_hist(d, p, out);
    case PLOT_GEOM_SELF:
    case PLOT_GEOM_CROSS:
        return plot_geom(d, p, out);
    }
    return err_set("unknown plot kind %d", (int)p->kind);
}

int report_write_plots(const struct report_data *d, const char *dir) {
    struct rep_plot *p;
    int n;
    if (report_plot_list(d, &p, &n) != 0) return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        struct sbuf b;
        sbuf_init(&b);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, p[i].file);
        rc = report_plot_svg(d, &p[i], &b);
        if (rc == 0)
            rc = sbuf_write_file(&b, path);
        else
            err_prefix("%s", path);
        sbuf_free(&b);
    }
    free(p);
    return rc;
}
