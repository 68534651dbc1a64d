/* html.c: index.html and the writing of every page (see html.h; the feature
 * pages are built in browser.c). The index mirrors report.md, with the SVG
 * plots inlined and each SAE linking to its feature page. */
#include "report/html.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "report/html_assets.h"
#include "report/plots.h"
#include "report/summary.h"
#include "report/tables.h"
#include "tok/tokenizer.h"
#include "util/error.h"
#include "util/log.h"

static void num(struct sbuf *b, double v, const char *fmt) {
    if (isfinite(v))
        sbuf_printf(b, fmt, v);
    else
        sbuf_add(b, "–");
}

static void ci(struct sbuf *b, bool ok, double lo, double hi) {
    if (ok && isfinite(lo) && isfinite(hi))
        sbuf_printf(b, "[%.3f, %.3f]", lo, hi);
    else
        sbuf_add(b, "–");
}

static void sae_link(const struct report_data *d, int i, struct sbuf *b) {
    const char *name = d->sweep.saes[i].name;
    if (!report_sae_has_page(d, i)) {
        sbuf_xml(b, name);
        return;
    }
    char file[256];
    report_sae_page_name(name, file, sizeof file);
    sbuf_add(b, "<a href=\"sae/");
    sbuf_xml(b, file);
    sbuf_add(b, "\">");
    sbuf_xml(b, name);
    sbuf_add(b, "</a>");
}

/* An SVG plot inlined (without its XML declaration). */
static int inline_plot(const struct report_data *d, const struct rep_plot *p, struct sbuf *b) {
    struct sbuf s;
    sbuf_init(&s);
    int rc = report_plot_svg(d, p, &s);
    if (rc == 0) {
        const char *t = sbuf_str(&s), *start = strstr(t, "<svg");
        sbuf_add(b, "<figure>");
        sbuf_add(b, start ? start : t);
        sbuf_add(b, "</figure>\n");
    }
    sbuf_free(&s);
    return rc;
}

static int plots(const struct report_data *d, const struct rep_plot *p, int n, enum rep_plot_kind a,
                 enum rep_plot_kind z, struct sbuf *b) {
    sbuf_add(b, "<div class=\"plots\">\n");
    for (int i = 0; i < n; i++)
        if (p[i].kind >= a && p[i].kind <= z && inline_plot(d, &p[i], b) != 0) return -1;
    sbuf_add(b, "</div>\n");
    return 0;
}

static void sweep_table(const struct report_data *d, const int *order, struct sbuf *b) {
    sbuf_add(b, "<h2 id=\"sweep\">Sweep</h2>\n<p>Final metrics of every SAE (the paper's Tables 2 "
                "and 3); each name links to its feature browser.</p>\n<table id=\"sweep-table\">"
                "<thead><tr><th>SAE</th><th>type</th><th>layer</th><th>λ</th><th>L0</th>"
                "<th>alive</th><th>alive %</th><th>CE increase</th><th>mean score</th>"
                "<th>CI (BCa)</th></tr></thead><tbody>\n");
    for (int k = 0; k < d->sweep.n; k++) {
        int i = order[k];
        const struct rep_sae *s = &d->sweep.saes[i];
        const struct rep_dict *r = &d->dict[i];
        sbuf_add(b, "<tr><td>");
        sae_link(d, i, b);
        sbuf_add(b, "</td><td>");
        sbuf_xml(b, s->type_name);
        sbuf_printf(b, "</td><td class=\"num\">%d</td><td class=\"num\">%g</td><td class=\"num\">",
                    s->layer, s->lambda);
        num(b, s->l0, "%.1f");
        sbuf_add(b, "</td><td class=\"num\">");
        num(b, s->alive, "%.0f");
        sbuf_add(b, "</td><td class=\"num\">");
        num(b, 100 * s->alive_fraction, "%.1f");
        sbuf_add(b, "</td><td class=\"num\">");
        num(b, s->ce_increase, "%.4f");
        sbuf_add(b, "</td><td class=\"num\">");
        if (r->has_scores)
            num(b, r->has_desc ? r->desc.mean : NAN, "%.3f");
        else
            sbuf_add(b, "not yet computed");
        sbuf_add(b, "</td><td>");
        ci(b, r->has_ci, r->ci.bca_lo, r->ci.bca_hi);
        sbuf_add(b, "</td></tr>\n");
    }
    sbuf_add(b, "</tbody></table>\n");
}

static void scores_table(const struct report_data *d, const int *order, struct sbuf *b) {
    double pct = 100 * (d->set->level > 0 ? d->set->level : BOOT_DEFAULT_LEVEL);
    sbuf_add(b, "<h2 id=\"scores\">Interpretability scores</h2>\n");
    if (d->n_with_scores == 0) {
        sbuf_add(b, "<p class=\"note\">scores: not yet computed.</p>\n");
        return;
    }
    sbuf_printf(b,
                "<p>Pearson correlation of simulated and true activations; failed and "
                "no-score features are excluded (never counted as 0). Bootstrap: %zu "
                "resamples, master seed %lu.</p>\n<table id=\"scores-table\"><thead><tr>"
                "<th>SAE</th><th>sampled</th><th>scored</th><th>no score</th><th>failed</th>"
                "<th>mean</th><th>median</th><th>sd</th><th>%g%% CI (percentile)</th>"
                "<th>%g%% CI (BCa)</th><th>not scored, by reason</th></tr></thead><tbody>\n",
                d->set->resamples ? d->set->resamples : (size_t)BOOT_DEFAULT_RESAMPLES,
                d->set->seed, pct, pct);
    for (int k = 0; k < d->sweep.n; k++) {
        int i = order[k];
        const struct rep_dict *r = &d->dict[i];
        sbuf_add(b, "<tr><td>");
        sae_link(d, i, b);
        sbuf_add(b, "</td>");
        if (!r->has_scores) {
            sbuf_add(b, "<td colspan=\"10\">scores: not yet computed</td></tr>\n");
            continue;
        }
        sbuf_printf(b,
                    "<td class=\"num\">%d</td><td class=\"num\">%d</td><td class=\"num\">%d</td>"
                    "<td class=\"num\">%d</td><td class=\"num\">",
                    r->n_sampled, r->n_scored, r->n_no_score, r->n_failed);
        num(b, r->has_desc ? r->desc.mean : NAN, "%.3f");
        sbuf_add(b, "</td><td class=\"num\">");
        num(b, r->has_desc ? r->desc.median : NAN, "%.3f");
        sbuf_add(b, "</td><td class=\"num\">");
        num(b, r->has_desc ? r->desc.sd : NAN, "%.3f");
        sbuf_add(b, "</td><td>");
        ci(b, r->has_ci, r->ci.pct_lo, r->ci.pct_hi);
        sbuf_add(b, "</td><td>");
        ci(b, r->has_ci, r->ci.bca_lo, r->ci.bca_hi);
        sbuf_add(b, "</td><td>");
        for (int j = 0; j < r->n_reasons; j++) {
            sbuf_add(b, j ? "; " : "");
            sbuf_add(b, r->reasons[j].status == FEAT_FAILED ? "failed " : "no score ");
            sbuf_xml(b, r->reasons[j].reason);
            sbuf_printf(b, " × %d", r->reasons[j].count);
        }
        if (r->note[0]) {
            sbuf_add(b, r->n_reasons ? " (" : "");
            sbuf_xml(b, r->note);
            sbuf_add(b, r->n_reasons ? ")" : "");
        }
        sbuf_add(b, "</td></tr>\n");
    }
    sbuf_add(b, "</tbody></table>\n");
}

static void pairs_table(const struct report_data *d, struct sbuf *b) {
    double pct = 100 * (d->set->level > 0 ? d->set->level : BOOT_DEFAULT_LEVEL);
    sbuf_add(b, "<h2 id=\"pairs\">Matched pairs</h2>\n");
    if (d->n_pairs == 0) {
        sbuf_add(b, "<p class=\"note\">No pairs: no two SAE types at the same layer (and seed) "
                    "with comparable metrics.</p>\n");
        return;
    }
    sbuf_printf(b,
                "<p>%s Difference = mean score of B minus A (the paper's Table 4); gap = "
                "|log(B/A)| of the matched metric; p: two-sided, pooled-null bootstrap.</p>\n"
                "<table id=\"pairs-table\"><thead><tr><th>layer</th><th>matched on</th>"
                "<th>A</th><th>B</th><th>L0 A</th><th>L0 B</th><th>CE inc. A</th>"
                "<th>CE inc. B</th><th>gap</th><th>B − A</th><th>%g%% CI (percentile)</th>"
                "<th>%g%% CI (BCa)</th><th>p</th></tr></thead><tbody>\n",
                d->pinned ? "Pairs pinned in the config (report.pairs)."
                          : "Per layer and pair of types: the SAEs closest in L0 and closest in "
                            "CE-loss increase.",
                pct, pct);
    for (int i = 0; i < d->n_pairs; i++) {
        const struct rep_pair_result *r = &d->pairs[i];
        const struct rep_sae *a = &d->sweep.saes[r->p.a], *s = &d->sweep.saes[r->p.b];
        sbuf_printf(b, "<tr><td class=\"num\">%d</td><td>%s</td><td>", a->layer,
                    r->p.crit == PAIR_L0   ? "L0"
                    : r->p.crit == PAIR_CE ? "CE increase"
                                           : "pinned");
        sae_link(d, r->p.a, b);
        sbuf_add(b, "</td><td>");
        sae_link(d, r->p.b, b);
        sbuf_add(b, "</td><td class=\"num\">");
        num(b, a->l0, "%.1f");
        sbuf_add(b, "</td><td class=\"num\">");
        num(b, s->l0, "%.1f");
        sbuf_add(b, "</td><td class=\"num\">");
        num(b, a->ce_increase, "%.4f");
        sbuf_add(b, "</td><td class=\"num\">");
        num(b, s->ce_increase, "%.4f");
        sbuf_add(b, "</td><td class=\"num\">");
        num(b, r->p.gap, "%.3f");
        if (!r->compared) {
            sbuf_add(b, "</td><td colspan=\"4\">");
            sbuf_xml(b, r->note);
            sbuf_add(b, "</td></tr>\n");
            continue;
        }
        const struct boot_ci *c = &r->cmp.diff;
        sbuf_printf(b, "</td><td class=\"num\">%+.3f</td><td>", c->estimate);
        ci(b, true, c->pct_lo, c->pct_hi);
        sbuf_add(b, "</td><td>");
        ci(b, true, c->bca_lo, c->bca_hi);
        sbuf_printf(b, "</td><td class=\"num\">%.3g</td></tr>\n", r->cmp.p_value);
    }
    sbuf_add(b, "</tbody></table>\n");
}

static void geometry_table(const struct report_data *d, struct sbuf *b) {
    sbuf_add(b, "<h2 id=\"geometry\">Dictionary geometry</h2>\n");
    const char *st = report_geometry_status(d);
    if (d->n_geom == 0) {
        sbuf_printf(b, "<p class=\"note\">geometry: %s.",
                    strcmp(st, "skipped") == 0 ? "skipped"
                                               : "not computed (no SAE decoder "
                                                 "could be read)");
        if (d->geom_note[0]) {
            sbuf_add(b, " ");
            sbuf_xml(b, d->geom_note);
        }
        sbuf_add(b, "</p>\n");
        return;
    }
    sbuf_add(b, "<p>Self: each decoder direction's cosine to its nearest other direction. "
                "Cross: each direction's highest cosine to the other dictionary.</p>\n"
                "<table id=\"geometry-table\"><thead><tr><th>kind</th><th>directions of</th>"
                "<th>compared with</th><th>n</th><th>mean</th><th>q05</th><th>median</th>"
                "<th>q95</th><th>max</th></tr></thead><tbody>\n");
    for (int i = 0; i < d->n_geom; i++) {
        const struct rep_geom *g = &d->geom[i];
        sbuf_printf(b, "<tr><td>%s</td><td>", rep_geom_kind_name(g->kind));
        sbuf_xml(b, d->sweep.saes[g->a].name);
        sbuf_add(b, "</td><td>");
        if (g->b >= 0)
            sbuf_xml(b, d->sweep.saes[g->b].name);
        else
            sbuf_add(b, "itself");
        sbuf_printf(b,
                    "</td><td class=\"num\">%zu</td><td class=\"num\">%.3f</td><td "
                    "class=\"num\">%.3f</td><td class=\"num\">%.3f</td><td "
                    "class=\"num\">%.3f</td><td class=\"num\">%.3f</td></tr>\n",
                    g->sum.n, g->sum.mean, g->sum.q05, g->sum.median, g->sum.q95, g->sum.max);
    }
    sbuf_add(b, "</tbody></table>\n");
    if (d->geom_note[0]) {
        sbuf_add(b, "<p class=\"note\">Left out: ");
        sbuf_xml(b, d->geom_note);
        sbuf_add(b, "</p>\n");
    }
}

int report_index_html(const struct report_data *d, struct sbuf *b) {
    struct rep_plot *p = NULL;
    int np = 0;
    if (report_plot_list(d, &p, &np) != 0) return -1;
    int *order = xmalloc(sizeof(int) * (size_t)(d->sweep.n ? d->sweep.n : 1));
    if (!order) {
        free(p);
        return -1;
    }
    report_display_order(d, order);
    sbuf_add(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n" HTML_CSP
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                "<title>Report: ");
    sbuf_xml(b, d->set->experiment);
    sbuf_add(b, "</title>\n<style>" HTML_CSS "</style></head>\n<body>\n<h1>Report: ");
    sbuf_xml(b, d->set->experiment);
    sbuf_printf(b,
                "</h1>\n<p class=\"meta\" id=\"status\">sweep %s; scores %s (%d of %d SAEs); "
                "geometry %s. Also: <a href=\"report.md\">report.md</a>, <a "
                "href=\"summary.json\">summary.json</a>, tables in <a "
                "href=\"tables/sweep.csv\">tables/</a>.</p>\n",
                d->have_sweep ? "ok" : "missing", report_scores_status(d), d->n_with_scores,
                d->sweep.n, report_geometry_status(d));
    int rc = 0;
    if (!d->have_sweep) {
        sbuf_add(b, "<p class=\"note\">sweep: not yet trained (");
        sbuf_xml(b, d->sweep_path);
        sbuf_add(b, " does not exist).</p>\n");
    } else {
        sweep_table(d, order, b);
        rc = plots(d, p, np, PLOT_PARETO, PLOT_PARETO, b);
        scores_table(d, order, b);
        if (rc == 0) rc = plots(d, p, np, PLOT_SCORES, PLOT_SCORE_HIST, b);
        pairs_table(d, b);
        geometry_table(d, b);
        if (rc == 0) rc = plots(d, p, np, PLOT_GEOM_SELF, PLOT_GEOM_CROSS, b);
    }
    sbuf_add(b, "</body></html>\n");
    free(order);
    free(p);
    return rc == 0 ? sbuf_ok(b) : -1;
}

int report_write_html(const struct report_data *d, const char *out_dir, const char *tokenizer) {
    char path[4096];
    struct sbuf b;
    sbuf_init(&b);
    int rc = report_index_html(d, &b);
    snprintf(path, sizeof path, "%s/index.html", out_dir);
    if (rc == 0) rc = sbuf_write_file(&b, path);
    sbuf_free(&b);
    if (rc != 0 || d->sweep.n == 0) return rc;
    struct tokenizer *tok = NULL;
    struct render_vocab *vocab = NULL;
    if (tokenizer && tokenizer[0]) {
        tok = tokenizer_load(tokenizer);
        vocab = tok ? render_vocab_from_tokenizer(tok) : NULL;
        if (!vocab) log_warn("feature pages show token ids: %s", err_msg());
    }
    snprintf(path, sizeof path, "%s/sae", out_dir);
    rc = mkdir_p(path);
    for (int i = 0; i < d->sweep.n && rc == 0; i++) {
        if (!report_sae_has_page(d, i)) continue;
        char file[256];
        report_sae_page_name(d->sweep.saes[i].name, file, sizeof file);
        snprintf(path, sizeof path, "%s/sae/%s", out_dir, file);
        struct report_page_stats st;
        sbuf_init(&b);
        rc = report_sae_page(d, i, vocab, &b, &st);
        if (rc == 0) rc = sbuf_write_file(&b, path);
        sbuf_free(&b);
    }
    render_vocab_free(vocab);
    tokenizer_free(tok);
    return rc;
}
