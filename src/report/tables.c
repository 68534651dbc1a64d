/* tables.c: report.md and the CSV tables (see tables.h). */
#include "report/tables.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/plots.h"
#include "report/summary.h"
#include "util/error.h"

static int cmp_display(const void *pa, const void *pb, void *ctx) {
    const struct rep_sae *saes = ((const struct report_data *)ctx)->sweep.saes;
    const struct rep_sae *a = &saes[*(const int *)pa], *b = &saes[*(const int *)pb];
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    if (a->type != b->type) return a->type < b->type ? -1 : 1;
    if (a->lambda != b->lambda) return a->lambda < b->lambda ? -1 : 1;
    if (a->seed != b->seed) return a->seed < b->seed ? -1 : 1;
    return (*(const int *)pa > *(const int *)pb) - (*(const int *)pa < *(const int *)pb);
}

void report_display_order(const struct report_data *d, int *idx) {
    for (int i = 0; i < d->sweep.n; i++)
        idx[i] = i;
    qsort_r(idx, (size_t)d->sweep.n, sizeof *idx, cmp_display, (void *)d);
}

static int cmp_int(const void *a, const void *b) {
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

int *report_layers(const struct report_data *d, int *n) {
    int *v = xmalloc(sizeof *v * (size_t)(d->sweep.n ? d->sweep.n : 1));
    *n = 0;
    if (!v) return NULL;
    for (int i = 0; i < d->sweep.n; i++) {
        int seen = 0;
        for (int k = 0; k < *n && !seen; k++)
            seen = v[k] == d->sweep.saes[i].layer;
        if (!seen) v[(*n)++] = d->sweep.saes[i].layer;
    }
    qsort(v, (size_t)*n, sizeof *v, cmp_int);
    return v;
}

/* ---------------------------------------------------------------------------
 * Markdown.
 */
static void md_ci(struct sbuf *b, double lo, double hi) {
    if (!isfinite(lo) || !isfinite(hi)) {
        sbuf_add(b, "n/a");
        return;
    }
    sbuf_printf(b, "[%.3f, %.3f]", lo, hi);
}

static void md_sweep(const struct report_data *d, const int *order, struct sbuf *b) {
    sbuf_add(b, "## Sweep\n\nFinal metrics of every trained SAE (as in the paper's Tables 2 and "
                "3). CE increase = CE loss with the SAE spliced in minus the original model's.\n\n"
                "| SAE | type | layer | λ | L0 | alive | alive % | CE increase |\n"
                "|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (int k = 0; k < d->sweep.n; k++) {
        const struct rep_sae *s = &d->sweep.saes[order[k]];
        sbuf_add(b, "| ");
        sbuf_md(b, s->name);
        sbuf_add(b, " | ");
        sbuf_md(b, s->type_name);
        sbuf_printf(b, " | %d | %.4g | ", s->layer, s->lambda);
        sbuf_num(b, s->l0, 1);
        sbuf_add(b, " | ");
        sbuf_num(b, s->alive, 0);
        sbuf_add(b, " | ");
        sbuf_num(b, 100 * s->alive_fraction, 1);
        sbuf_add(b, " | ");
        sbuf_num(b, s->ce_increase, 4);
        sbuf_add(b, " |\n");
    }
    sbuf_add(b, "\n");
}

static void md_scores(const struct report_data *d, const int *order, struct sbuf *b) {
    double pct = 100 * (d->set->level > 0 ? d->set->level : BOOT_DEFAULT_LEVEL);
    sbuf_add(b, "## Interpretability scores per dictionary\n\n");
    if (d->n_with_scores == 0) {
        sbuf_add(b, "scores: not yet computed (no score files in scores/).\n\n");
        return;
    }
    sbuf_printf(
        b,
        "Score = Pearson correlation between simulated and true activations over a "
        "feature's scored windows. Failed and no-score features are excluded, never "
        "counted as 0. CIs of the mean: bootstrap, %g%%, percentile and BCa.\n\n"
        "| SAE | sampled | scored | no score | failed | mean | median | sd | %g%% CI "
        "(percentile) | %g%% CI (BCa) |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
        pct, pct, pct);
    for (int k = 0; k < d->sweep.n; k++) {
        const struct rep_sae *s = &d->sweep.saes[order[k]];
        const struct rep_dict *r = &d->dict[order[k]];
        sbuf_add(b, "| ");
        sbuf_md(b, s->name);
        if (!r->has_scores) {
            if (r->n_sampled >= 0)
                sbuf_printf(b, " | %d", r->n_sampled);
            else
                sbuf_add(b, " | n/a");
            sbuf_add(b, " | scores: not yet computed | | | | | | | |\n");
            continue;
        }
        sbuf_printf(b, " | %d | %d | %d | %d | ", r->n_sampled, r->n_scored, r->n_no_score,
                    r->n_failed);
        sbuf_num(b, r->has_desc ? r->desc.mean : NAN, 3);
        sbuf_add(b, " | ");
        sbuf_num(b, r->has_desc ? r->desc.median : NAN, 3);
        sbuf_add(b, " | ");
        sbuf_num(b, r->has_desc ? r->desc.sd : NAN, 3);
        sbuf_add(b, " | ");
        md_ci(b, r->has_ci ? r->ci.pct_lo : NAN, r->has_ci ? r->ci.pct_hi : NAN);
        sbuf_add(b, " | ");
        md_ci(b, r->has_ci ? r->ci.bca_lo : NAN, r->has_ci ? r->ci.bca_hi : NAN);
        sbuf_add(b, " |\n");
    }
    sbuf_add(b, "\n");
    int any = 0;
    for (int k = 0; k < d->sweep.n; k++) {
        const struct rep_dict *r = &d->dict[order[k]];
        if (!r->has_scores || (r->n_reasons == 0 && !r->note[0])) continue;
        if (!any++) sbuf_add(b, "Not scored, by reason:\n\n");
        sbuf_add(b, "- ");
        sbuf_md(b, d->sweep.saes[order[k]].name);
        sbuf_add(b, ":");
        for (int i = 0; i < r->n_reasons; i++) {
            sbuf_printf(b, "%s %s ", i ? "," : "",
                        r->reasons[i].status == FEAT_FAILED ? "failed" : "no score");
            sbuf_md(b, r->reasons[i].reason);
            sbuf_printf(b, " × %d", r->reasons[i].count);
        }
        if (r->note[0]) {
            sbuf_add(b, r->n_reasons ? " (" : " ");
            sbuf_md(b, r->note);
            if (r->n_reasons) sbuf_add(b, ")");
        }
        sbuf_add(b, "\n");
    }
    if (any) sbuf_add(b, "\n");
    sbuf_printf(b,
                "Bootstrap: %zu resamples, master seed %lu; each interval's own seed is in "
                "summary.json and tables/scores.csv.\n\n",
                d->set->resamples ? d->set->resamples : (size_t)BOOT_DEFAULT_RESAMPLES,
                d->set->seed);
}

static void md_pairs(const struct report_data *d, struct sbuf *b) {
    double pct = 100 * (d->set->level > 0 ? d->set->level : BOOT_DEFAULT_LEVEL);
    sbuf_add(b, "## Matched pairs\n\n");
    if (d->n_pairs == 0) {
        sbuf_add(b, "No pairs: the sweep has no two SAE types at the same layer (and seed) with "
                    "comparable metrics.\n\n");
        return;
    }
    sbuf_printf(b,
                "%s Difference = mean score of B minus mean score of A (as the paper's Table 4: "
                "e2e+ds minus local); gap = |log(B/A)| of the matched metric; p: two-sided, "
                "pooled-null bootstrap.\n\n"
                "| layer | matched on | A | B | L0 A | L0 B | CE inc. A | CE inc. B | gap | mean A "
                "| mean B | B − A | %g%% CI (percentile) | %g%% CI (BCa) | p |\n"
                "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|\n",
                d->pinned ? "Pairs pinned in the config (report.pairs)."
                          : "Pairs chosen from the sweep: for each layer and pair of types, the "
                            "two SAEs closest in L0 and the two closest in CE-loss increase.",
                pct, pct);
    for (int i = 0; i < d->n_pairs; i++) {
        const struct rep_pair_result *r = &d->pairs[i];
        const struct rep_sae *a = &d->sweep.saes[r->p.a], *s = &d->sweep.saes[r->p.b];
        const struct rep_dict *da = &d->dict[r->p.a], *db = &d->dict[r->p.b];
        sbuf_printf(b, "| %d | %s | ", a->layer,
                    r->p.crit == PAIR_L0   ? "L0"
                    : r->p.crit == PAIR_CE ? "CE increase"
                                           : "pinned");
        sbuf_md(b, a->name);
        sbuf_add(b, " | ");
        sbuf_md(b, s->name);
        sbuf_add(b, " | ");
        sbuf_num(b, a->l0, 1);
        sbuf_add(b, " | ");
        sbuf_num(b, s->l0, 1);
        sbuf_add(b, " | ");
        sbuf_num(b, a->ce_increase, 4);
        sbuf_add(b, " | ");
        sbuf_num(b, s->ce_increase, 4);
        sbuf_add(b, " | ");
        sbuf_num(b, r->p.gap, 3);
        sbuf_add(b, " | ");
        if (!r->compared) {
            sbuf_num(b, da->has_desc ? da->desc.mean : NAN, 3);
            sbuf_add(b, " | ");
            sbuf_num(b, db->has_desc ? db->desc.mean : NAN, 3);
            sbuf_add(b, " | ");
            sbuf_md(b, r->note);
            sbuf_add(b, " | | | |\n");
            continue;
        }
        const struct boot_ci *c = &r->cmp.diff;
        sbuf_printf(b, "%.3f | %.3f | %+.3f | ", da->desc.mean, db->desc.mean, c->estimate);
        md_ci(b, c->pct_lo, c->pct_hi);
        sbuf_add(b, " | ");
        md_ci(b, c->bca_lo, c->bca_hi);
        sbuf_printf(b, " | %.3g |\n", r->cmp.p_value);
    }
    sbuf_add(b, "\n");
}

static void md_geometry(const struct report_data *d, struct sbuf *b) {
    sbuf_add(b, "## Dictionary geometry\n\n");
    const char *st = report_geometry_status(d);
    if (strcmp(st, "skipped") == 0) {
        sbuf_add(b, "geometry: skipped (report.geometry is false).\n\n");
        return;
    }
    if (d->n_geom == 0) {
        sbuf_add(b, "geometry: not computed (no SAE decoder could be read).\n\n");
        if (d->geom_note[0]) {
            sbuf_md(b, d->geom_note);
            sbuf_add(b, "\n\n");
        }
        return;
    }
    static const char *const head[] = {
        "Within each dictionary: cosine similarity of every decoder direction to its nearest "
        "other direction (high values: near-duplicate features).\n\n| SAE | n | mean | q05 | "
        "median | q95 | max | < 0 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        "Across dictionaries: every direction's highest cosine similarity to the other "
        "dictionary (every two SAEs of different types at the same layer and seed, the matched "
        "pairs, and SAEs differing only in seed).\n\n| "
        "directions of | compared with | relation | n | mean | q05 | median | q95 | max | < 0 "
        "|\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n"};
    for (int part = 0; part < 2; part++) {
        int any = 0;
        for (int i = 0; i < d->n_geom; i++) {
            const struct rep_geom *g = &d->geom[i];
            if ((g->kind == GEOM_SELF) != (part == 0)) continue;
            if (!any++) sbuf_add(b, head[part]);
            sbuf_add(b, "| ");
            sbuf_md(b, d->sweep.saes[g->a].name);
            if (part) {
                sbuf_add(b, " | ");
                sbuf_md(b, d->sweep.saes[g->b].name);
                sbuf_printf(b, " | %s", g->kind == GEOM_CROSS_SEED ? "seed" : "type");
            }
            sbuf_printf(b, " | %zu | %.3f | %.3f | %.3f | %.3f | %.3f | %zu |\n", g->sum.n,
                        g->sum.mean, g->sum.q05, g->sum.median, g->sum.q95, g->sum.max, g->below);
        }
        if (any) sbuf_add(b, "\n");
    }
    if (d->geom_note[0]) {
        sbuf_add(b, "Left out: ");
        sbuf_md(b, d->geom_note);
        sbuf_add(b, "\n\n");
    }
}

static void md_plots(const struct rep_plot *p, int n, enum rep_plot_kind a, enum rep_plot_kind z,
                     const char *dir, struct sbuf *b) {
    int any = 0;
    for (int i = 0; i < n; i++) {
        if (p[i].kind < a || p[i].kind > z) continue;
        any = 1;
        sbuf_add(b, "![");
        sbuf_md(b, p[i].title);
        sbuf_printf(b, "](%s/%s)\n", dir, p[i].file);
    }
    if (any) sbuf_add(b, "\n");
}

int report_markdown(const struct report_data *d, const char *plots_dir, struct sbuf *b) {
    struct rep_plot *plots = NULL;
    int np = 0;
    if (report_plot_list(d, &plots, &np) != 0) return -1;
    int *order = xmalloc(sizeof *order * (size_t)(d->sweep.n ? d->sweep.n : 1));
    if (!order) {
        free(plots);
        return -1;
    }
    report_display_order(d, order);
    sbuf_add(b, "# Report: ");
    sbuf_md(b, d->set->experiment);
    sbuf_printf(b,
                "\n\nStatus: sweep %s; scores %s (%d of %d SAEs); geometry %s. "
                "Machine-readable: summary.json; tables: tables/*.csv.\n\n",
                d->have_sweep ? "ok" : "missing", report_scores_status(d), d->n_with_scores,
                d->sweep.n, report_geometry_status(d));
    if (!d->have_sweep) {
        sbuf_add(b, "sweep: not yet trained (");
        sbuf_md(b, d->sweep_path);
        sbuf_add(b, " does not exist). Run `autointerp train` first.\n");
    } else {
        md_sweep(d, order, b);
        md_plots(plots, np, PLOT_PARETO, PLOT_PARETO, plots_dir, b);
        md_scores(d, order, b);
        md_plots(plots, np, PLOT_SCORES, PLOT_SCORE_HIST, plots_dir, b);
        md_pairs(d, b);
        md_geometry(d, b);
        md_plots(plots, np, PLOT_GEOM_SELF, PLOT_GEOM_CROSS, plots_dir, b);
    }
    free(order);
    free(plots);
    return sbuf_ok(b);
}

/* ---------------------------------------------------------------------------
 * CSV.
 */
static void cnum(struct sbuf *b, double v, bool last) {
    if (isfinite(v)) sbuf_printf(b, "%.10g", v);
    sbuf_addc(b, last ? '\n' : ',');
}

static void cstr(struct sbuf *b, const char *s, bool last) {
    sbuf_csv(b, s ? s : "");
    sbuf_addc(b, last ? '\n' : ',');
}

static int write_csv(const char *dir, const char *name, const struct sbuf *b) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return sbuf_write_file(b, path);
}

static void csv_sweep(const struct report_data *d, struct sbuf *b) {
    sbuf_add(b, "name,type,layer,lambda,seed,l0,alive,alive_fraction,d_sae,ce_orig,ce_sae,"
                "ce_increase,kl,explained_variance,mse\n");
    for (int i = 0; i < d->sweep.n; i++) {
        const struct rep_sae *s = &d->sweep.saes[i];
        cstr(b, s->name, false);
        cstr(b, s->type_name, false);
        cnum(b, s->layer, false);
        cnum(b, s->lambda, false);
        cnum(b, (double)s->seed, false);
        const double v[] = {
            s->l0,          s->alive, s->alive_fraction,     s->d_sae, s->ce_orig, s->ce_sae,
            s->ce_increase, s->kl,    s->explained_variance, s->mse};
        for (int k = 0; k < 10; k++)
            cnum(b, v[k], k == 9);
    }
}

static void csv_scores(const struct report_data *d, struct sbuf *b) {
    sbuf_add(b, "name,type,layer,status,n_sampled,n_results,n_scored,n_no_score,n_failed,mean,"
                "median,sd,min,max,se,pct_lo,pct_hi,bca_lo,bca_hi,resamples,level,seed,note\n");
    for (int i = 0; i < d->sweep.n; i++) {
        const struct rep_sae *s = &d->sweep.saes[i];
        const struct rep_dict *r = &d->dict[i];
        cstr(b, s->name, false);
        cstr(b, s->type_name, false);
        cnum(b, s->layer, false);
        cstr(b, r->has_scores ? "ok" : "not_computed", false);
        cnum(b, r->n_sampled >= 0 ? r->n_sampled : NAN, false);
        double h = r->has_scores ? 0 : NAN;
        cnum(b, h + r->n_results, false);
        cnum(b, h + r->n_scored, false);
        cnum(b, h + r->n_no_score, false);
        cnum(b, h + r->n_failed, false);
        const struct stats_desc *x = &r->desc;
        const double dv[] = {x->mean, x->median, x->sd, x->min, x->max};
        for (int k = 0; k < 5; k++)
            cnum(b, r->has_desc ? dv[k] : NAN, false);
        const struct boot_ci *c = &r->ci;
        const double cv[] = {
            c->se, c->pct_lo, c->pct_hi, c->bca_lo, c->bca_hi, (double)c->n_resamples, c->level};
        for (int k = 0; k < 7; k++)
            cnum(b, r->has_ci ? cv[k] : NAN, false);
        cnum(b, (double)r->seed, false);
        cstr(b, r->note, true);
    }
}

static void csv_failures(const struct report_data *d, struct sbuf *b) {
    sbuf_add(b, "name,status,reason,count\n");
    for (int i = 0; i < d->sweep.n; i++)
        for (int k = 0; k < d->dict[i].n_reasons; k++) {
            const struct rep_reason *r = &d->dict[i].reasons[k];
            cstr(b, d->sweep.saes[i].name, false);
            cstr(b, feat_status_name(r->status), false);
            cstr(b, r->reason, false);
            cnum(b, r->count, true);
        }
}

static void csv_pairs(const struct report_data *d, struct sbuf *b) {
    sbuf_add(b, "criterion,layer,a,b,type_a,type_b,l0_a,l0_b,ce_increase_a,ce_increase_b,"
                "log_ratio_l0,log_ratio_ce,gap,mean_a,mean_b,n_a,n_b,diff,se,pct_lo,pct_hi,bca_lo,"
                "bca_hi,p_value,seed,p_seed,note\n");
    for (int i = 0; i < d->n_pairs; i++) {
        const struct rep_pair_result *r = &d->pairs[i];
        const struct rep_sae *a = &d->sweep.saes[r->p.a], *s = &d->sweep.saes[r->p.b];
        const struct rep_dict *da = &d->dict[r->p.a], *db = &d->dict[r->p.b];
        cstr(b, pair_crit_name(r->p.crit), false);
        cnum(b, a->layer, false);
        cstr(b, a->name, false);
        cstr(b, s->name, false);
        cstr(b, a->type_name, false);
        cstr(b, s->type_name, false);
        const double v[] = {a->l0,
                            s->l0,
                            a->ce_increase,
                            s->ce_increase,
                            r->p.log_ratio_l0,
                            r->p.log_ratio_ce,
                            r->p.gap,
                            da->has_desc ? da->desc.mean : NAN,
                            db->has_desc ? db->desc.mean : NAN,
                            da->n_scored,
                            db->n_scored};
        for (int k = 0; k < 11; k++)
            cnum(b, v[k], false);
        const struct boot_ci *c = &r->cmp.diff;
        const double w[] = {c->estimate, c->se,     c->pct_lo,     c->pct_hi,
                            c->bca_lo,   c->bca_hi, r->cmp.p_value};
        for (int k = 0; k < 7; k++)
            cnum(b, r->compared ? w[k] : NAN, false);
        cnum(b, (double)r->seed, false);
        cnum(b, r->compared ? (double)r->cmp.p_seed : NAN, false);
        cstr(b, r->note, true);
    }
}

static void csv_geometry(const struct report_data *d, struct sbuf *b) {
    sbuf_add(b, "kind,sae,other,n,mean,sd,min,q05,q25,median,q75,q95,max,below,above\n");
    for (int i = 0; i < d->n_geom; i++) {
        const struct rep_geom *g = &d->geom[i];
        cstr(b, rep_geom_kind_name(g->kind), false);
        cstr(b, d->sweep.saes[g->a].name, false);
        cstr(b, g->b >= 0 ? d->sweep.saes[g->b].name : "", false);
        const struct geom_summary *s = &g->sum;
        const double v[] = {(double)s->n,     s->mean,         s->sd,  s->min, s->q05,
                            s->q25,           s->median,       s->q75, s->q95, s->max,
                            (double)g->below, (double)g->above};
        for (int k = 0; k < 12; k++)
            cnum(b, v[k], k == 11);
    }
}

int report_write_csv(const struct report_data *d, const char *dir) {
    static const char *const names[] = {"sweep.csv", "scores.csv", "failures.csv", "pairs.csv",
                                        "geometry.csv"};
    void (*const fill[])(const struct report_data *, struct sbuf *) = {
        csv_sweep, csv_scores, csv_failures, csv_pairs, csv_geometry};
    for (int i = 0; i < 5; i++) {
        struct sbuf b;
        sbuf_init(&b);
        fill[i](d, &b);
        int rc = write_csv(dir, names[i], &b);
        sbuf_free(&b);
        if (rc != 0) return -1;
    }
    return 0;
}
