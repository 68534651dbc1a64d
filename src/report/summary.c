/* summary.c: summary.json (schema in summary.h). */
#include "report/summary.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "util/error.h"

#ifndef AUTOINTERP_VERSION
#define AUTOINTERP_VERSION "unknown"
#endif

const char *report_scores_status(const struct report_data *d) {
    if (d->n_with_scores == 0) return "not_computed";
    return d->n_with_scores < d->sweep.n ? "partial" : "ok";
}

const char *report_geometry_status(const struct report_data *d) {
    if (!d->set->geometry) return "skipped";
    if (!d->geometry_done || d->n_geom == 0) return "not_computed";
    return d->geom_note[0] ? "partial" : "ok";
}

static void num(cJSON *o, const char *key, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static void str_or_null(cJSON *o, const char *key, const char *v) {
    if (v && v[0])
        cJSON_AddStringToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static void pair_arr(cJSON *o, const char *key, double a, double b) {
    cJSON *arr = cJSON_AddArrayToObject(o, key);
    if (!arr) return;
    cJSON_AddItemToArray(arr, isfinite(a) ? cJSON_CreateNumber(a) : cJSON_CreateNull());
    cJSON_AddItemToArray(arr, isfinite(b) ? cJSON_CreateNumber(b) : cJSON_CreateNull());
}

static void counts_arr(cJSON *o, const char *key, const size_t *c, int n) {
    cJSON *arr = cJSON_AddArrayToObject(o, key);
    for (int i = 0; arr && i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)c[i]));
}

static cJSON *ci_json(const struct boot_ci *ci) {
    cJSON *o = cJSON_CreateObject();
    num(o, "estimate", ci->estimate);
    num(o, "se", ci->se);
    pair_arr(o, "percentile", ci->pct_lo, ci->pct_hi);
    pair_arr(o, "bca", ci->bca_lo, ci->bca_hi);
    num(o, "z0", ci->z0);
    num(o, "accel", ci->accel);
    cJSON_AddBoolToObject(o, "degenerate", ci->degenerate);
    cJSON_AddNumberToObject(o, "resamples", (double)ci->n_resamples);
    cJSON_AddNumberToObject(o, "level", ci->level);
    cJSON_AddNumberToObject(o, "seed", (double)ci->seed);
    return o;
}

static cJSON *metrics_json(const struct rep_sae *s) {
    cJSON *m = cJSON_CreateObject();
    num(m, "l0", s->l0);
    num(m, "alive", s->alive);
    num(m, "alive_fraction", s->alive_fraction);
    num(m, "d_sae", s->d_sae);
    num(m, "ce_orig", s->ce_orig);
    num(m, "ce_sae", s->ce_sae);
    num(m, "ce_increase", s->ce_increase);
    num(m, "kl", s->kl);
    num(m, "explained_variance", s->explained_variance);
    num(m, "mse", s->mse);
    return m;
}

static cJSON *scores_json(const struct rep_dict *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", r->has_scores ? "ok" : "not_computed");
    if (r->has_scores) {
        cJSON_AddNumberToObject(o, "n_sampled", r->n_sampled);
        cJSON_AddNumberToObject(o, "n_results", r->n_results);
        cJSON_AddNumberToObject(o, "n_scored", r->n_scored);
        cJSON_AddNumberToObject(o, "n_no_score", r->n_no_score);
        cJSON_AddNumberToObject(o, "n_failed", r->n_failed);
    } else {
        if (r->n_sampled >= 0)
            cJSON_AddNumberToObject(o, "n_sampled", r->n_sampled);
        else
            cJSON_AddNullToObject(o, "n_sampled");
        static const char *const k[] = {"n_results", "n_scored", "n_no_score", "n_failed"};
        for (int i = 0; i < 4; i++)
            cJSON_AddNullToObject(o, k[i]);
    }
    cJSON *ns = cJSON_AddObjectToObject(o, "no_score_reasons");
    cJSON *fr = cJSON_AddObjectToObject(o, "failed_reasons");
    for (int i = 0; i < r->n_reasons; i++)
        cJSON_AddNumberToObject(r->reasons[i].status == FEAT_FAILED ? fr : ns, r->reasons[i].reason,
                                r->reasons[i].count);
    const struct stats_desc *s = &r->desc;
    num(o, "mean", r->has_desc ? s->mean : NAN);
    num(o, "median", r->has_desc ? s->median : NAN);
    num(o, "sd", r->has_desc ? s->sd : NAN);
    num(o, "min", r->has_desc ? s->min : NAN);
    num(o, "max", r->has_desc ? s->max : NAN);
    if (r->has_ci)
        cJSON_AddItemToObject(o, "ci", ci_json(&r->ci));
    else
        cJSON_AddNullToObject(o, "ci");
    str_or_null(o, "note", r->note);
    cJSON *h = cJSON_AddObjectToObject(o, "histogram");
    cJSON_AddNumberToObject(h, "lo", -1);
    cJSON_AddNumberToObject(h, "hi", 1);
    counts_arr(h, "counts", r->score_hist, REP_SCORE_BINS);
    return o;
}

static cJSON *pair_json(const struct report_data *d, const struct rep_pair_result *r) {
    const struct rep_sae *a = &d->sweep.saes[r->p.a], *b = &d->sweep.saes[r->p.b];
    const struct rep_dict *da = &d->dict[r->p.a], *db = &d->dict[r->p.b];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "criterion", pair_crit_name(r->p.crit));
    cJSON_AddStringToObject(o, "a", a->name);
    cJSON_AddStringToObject(o, "b", b->name);
    cJSON_AddNumberToObject(o, "layer_a", a->layer);
    cJSON_AddNumberToObject(o, "layer_b", b->layer);
    cJSON_AddStringToObject(o, "type_a", a->type_name);
    cJSON_AddStringToObject(o, "type_b", b->type_name);
    pair_arr(o, "l0", a->l0, b->l0);
    pair_arr(o, "ce_increase", a->ce_increase, b->ce_increase);
    pair_arr(o, "alive", a->alive, b->alive);
    pair_arr(o, "lambda", a->lambda, b->lambda);
    cJSON *lr = cJSON_AddObjectToObject(o, "log_ratio");
    num(lr, "l0", r->p.log_ratio_l0);
    num(lr, "ce_increase", r->p.log_ratio_ce);
    num(o, "gap", r->p.gap);
    num(o, "mean_a", da->has_desc ? da->desc.mean : NAN);
    num(o, "mean_b", db->has_desc ? db->desc.mean : NAN);
    cJSON_AddNumberToObject(o, "n_a", da->n_scored);
    cJSON_AddNumberToObject(o, "n_b", db->n_scored);
    if (r->compared) {
        cJSON *df = cJSON_AddObjectToObject(o, "difference");
        const struct boot_ci *c = &r->cmp.diff;
        num(df, "estimate", c->estimate);
        num(df, "se", c->se);
        pair_arr(df, "percentile", c->pct_lo, c->pct_hi);
        pair_arr(df, "bca", c->bca_lo, c->bca_hi);
        num(df, "p_value", r->cmp.p_value);
        cJSON_AddNumberToObject(df, "n_extreme", (double)r->cmp.n_extreme);
        cJSON_AddNumberToObject(df, "resamples", (double)c->n_resamples);
        cJSON_AddNumberToObject(df, "level", c->level);
        cJSON_AddNumberToObject(df, "seed", (double)c->seed);
        cJSON_AddNumberToObject(df, "p_seed", (double)r->cmp.p_seed);
    } else {
        cJSON_AddNullToObject(o, "difference");
    }
    str_or_null(o, "note", r->note);
    return o;
}

static cJSON *geometry_json(const struct report_data *d) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", report_geometry_status(d));
    str_or_null(o, "note", d->geom_note);
    cJSON *h = cJSON_AddObjectToObject(o, "histogram");
    cJSON_AddNumberToObject(h, "lo", 0);
    cJSON_AddNumberToObject(h, "hi", 1);
    cJSON_AddNumberToObject(h, "bins", REP_GEOM_BINS);
    cJSON *arr = cJSON_AddArrayToObject(o, "entries");
    for (int i = 0; arr && i < d->n_geom; i++) {
        const struct rep_geom *g = &d->geom[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "kind", rep_geom_kind_name(g->kind));
        cJSON_AddStringToObject(e, "sae", d->sweep.saes[g->a].name);
        str_or_null(e, "other", g->b >= 0 ? d->sweep.saes[g->b].name : NULL);
        cJSON_AddNumberToObject(e, "n", (double)g->sum.n);
        num(e, "mean", g->sum.mean);
        num(e, "sd", g->sum.sd);
        num(e, "min", g->sum.min);
        num(e, "q05", g->sum.q05);
        num(e, "q25", g->sum.q25);
        num(e, "median", g->sum.median);
        num(e, "q75", g->sum.q75);
        num(e, "q95", g->sum.q95);
        num(e, "max", g->sum.max);
        counts_arr(e, "counts", g->counts, REP_GEOM_BINS);
        cJSON_AddNumberToObject(e, "below", (double)g->below);
        cJSON_AddNumberToObject(e, "above", (double)g->above);
        cJSON_AddItemToArray(arr, e);
    }
    return o;
}

cJSON *report_summary_json(const struct report_data *d) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "schema", REPORT_SUMMARY_SCHEMA);
    cJSON_AddNumberToObject(o, "schema_version", REPORT_SUMMARY_VERSION);
    cJSON_AddStringToObject(o, "generator", "autointerp " AUTOINTERP_VERSION);
    cJSON_AddStringToObject(o, "experiment", d->set->experiment);
    cJSON *in = cJSON_AddObjectToObject(o, "inputs");
    str_or_null(in, "sweep", d->have_sweep ? d->sweep_path : NULL);
    char buf[2048];
    snprintf(buf, sizeof buf, "%s/scores", d->exp_dir);
    cJSON_AddStringToObject(in, "scores_dir", buf);
    snprintf(buf, sizeof buf, "%s/examples", d->exp_dir);
    cJSON_AddStringToObject(in, "examples_dir", buf);
    cJSON *b = cJSON_AddObjectToObject(o, "bootstrap");
    cJSON_AddNumberToObject(
        b, "resamples", (double)(d->set->resamples ? d->set->resamples : BOOT_DEFAULT_RESAMPLES));
    cJSON_AddNumberToObject(b, "level", d->set->level > 0 ? d->set->level : BOOT_DEFAULT_LEVEL);
    cJSON_AddNumberToObject(b, "seed", (double)d->set->seed);
    cJSON *iv = cJSON_AddArrayToObject(b, "intervals");
    cJSON_AddItemToArray(iv, cJSON_CreateString("percentile"));
    cJSON_AddItemToArray(iv, cJSON_CreateString("bca"));
    cJSON_AddStringToObject(b, "p_value", "pooled_null_two_sided");
    cJSON_AddStringToObject(b, "seed_rule",
                            "(seed + fnv1a32(key)) mod 2^32; key = SAE name or 'a|b'");
    cJSON *st = cJSON_AddObjectToObject(o, "status");
    cJSON_AddStringToObject(st, "sweep", d->have_sweep ? "ok" : "missing");
    cJSON_AddStringToObject(st, "scores", report_scores_status(d));
    cJSON_AddStringToObject(st, "geometry", report_geometry_status(d));
    cJSON *saes = cJSON_AddArrayToObject(o, "saes");
    for (int i = 0; i < d->sweep.n; i++) {
        const struct rep_sae *s = &d->sweep.saes[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", s->name);
        cJSON_AddStringToObject(e, "type", s->type_name);
        cJSON_AddNumberToObject(e, "layer", s->layer);
        num(e, "lambda", s->lambda);
        cJSON_AddNumberToObject(e, "seed", (double)s->seed);
        cJSON_AddItemToObject(e, "metrics", metrics_json(s));
        cJSON_AddItemToObject(e, "scores", scores_json(&d->dict[i]));
        cJSON_AddItemToArray(saes, e);
    }
    cJSON *pairs = cJSON_AddArrayToObject(o, "pairs");
    for (int i = 0; i < d->n_pairs; i++)
        cJSON_AddItemToArray(pairs, pair_json(d, &d->pairs[i]));
    cJSON_AddItemToObject(o, "geometry", geometry_json(d));
    cJSON *t = cJSON_AddObjectToObject(o, "timing");
    cJSON_AddNumberToObject(t, "statistics_seconds", d->seconds_stats);
    cJSON_AddNumberToObject(t, "geometry_seconds", d->seconds_geometry);
    return o;
}

int report_write_summary(const struct report_data *d, const char *path) {
    cJSON *o = report_summary_json(d);
    char *text = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!text) return err_set("%s: out of memory building the summary", path);
    size_t n = strlen(text);
    char *withnl = xrealloc(text, n + 2);
    if (!withnl) {
        free(text);
        return -1;
    }
    withnl[n] = '\n', withnl[n + 1] = 0;
    int rc = atomic_write_file(path, withnl, n + 1);
    free(withnl);
    return rc;
}
