/* analysis.c: read the report's inputs and compute its numbers (see analysis.h).
 *
 * Order: sweep table -> per-dictionary scores and CIs -> pairs and their
 * comparisons -> geometry. Only a malformed input or a pinned pair naming an
 * unknown SAE fails the stage; everything missing is recorded as missing. The
 * bootstrap is where the time goes when B is large (each CI is B resamples of
 * n values, each pair 2B), and it is threaded inside stats/bootstrap.c; the
 * geometry is sgemm-bound and threaded inside OpenBLAS.
 */
#include "report/analysis.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "extract/examples.h"
#include "io/h5.h"
#include "util/error.h"
#include "util/log.h"

bool report_is_matched_pair(const struct report_data *d, int a, int b) {
    for (int p = 0; p < d->n_pairs; p++)
        if ((d->pairs[p].p.a == a && d->pairs[p].p.b == b) ||
            (d->pairs[p].p.a == b && d->pairs[p].p.b == a))
            return true;
    return false;
}

const char *rep_geom_kind_name(enum rep_geom_kind k) {
    static const char *const n[] = {"self", "cross_type", "cross_seed"};
    return (unsigned)k < 3 ? n[k] : "?";
}

unsigned long report_derived_seed(unsigned long master, const char *key) {
    uint32_t h = 2166136261u; /* FNV-1a, 32 bit */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    return (unsigned long)(((uint64_t)master + h) & 0xFFFFFFFFu);
}

static char *join3(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *p = xmalloc(n);
    if (p) snprintf(p, n, "%s%s%s", a, b, c);
    return p;
}

/* ---------------------------------------------------------------------------
 * Per dictionary.
 */
static int add_reason(struct rep_dict *d, const struct feat_result *f) {
    for (int i = 0; i < d->n_reasons; i++)
        if (d->reasons[i].status == f->status && strcmp(d->reasons[i].reason, f->reason) == 0) {
            d->reasons[i].count++;
            return 0;
        }
    struct rep_reason *r = xrealloc(d->reasons, sizeof *r * (size_t)(d->n_reasons + 1));
    if (!r) return -1;
    d->reasons = r;
    char *s = xstrdup(f->reason);
    if (!s) return -1;
    r[d->n_reasons++] = (struct rep_reason){.reason = s, .status = f->status, .count = 1};
    return 0;
}

static int cmp_reason(const void *pa, const void *pb) {
    const struct rep_reason *a = pa, *b = pb;
    if (a->status != b->status) return a->status == FEAT_FAILED ? -1 : 1;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    return strcmp(a->reason, b->reason);
}

static void score_histogram(const double *x, int n, size_t *counts) {
    memset(counts, 0, sizeof(size_t) * REP_SCORE_BINS);
    for (int i = 0; i < n; i++) {
        int k = (int)floor((x[i] + 1) / 2 * REP_SCORE_BINS);
        if (k < 0) k = 0; /* Pearson r is in [-1, 1]; anything else is clamped */
        if (k >= REP_SCORE_BINS) k = REP_SCORE_BINS - 1;
        counts[k]++;
    }
}

static int dict_stats(const struct report_settings *s, const struct rep_sae *sae,
                      struct rep_dict *d) {
    d->seed = report_derived_seed(s->seed, sae->name);
    d->n_sampled = -1;
    if (examples_is_complete(d->examples_path, NULL)) { /* unfinished: not there yet */
        int n = examples_count_features(d->examples_path);
        if (n < 0)
            log_warn("%s (sampled count taken from the score file)", err_msg());
        else
            d->n_sampled = n;
    }
    if (!file_exists(d->scores_path)) {
        snprintf(d->note, sizeof d->note, "scores: not yet computed");
        return 0;
    }
    d->has_scores = true;
    if (score_set_read(d->scores_path, &d->set) != 0) return -1;
    d->n_results = d->set.n;
    if (d->n_sampled < 0) d->n_sampled = d->set.n;
    d->scores = xmalloc(sizeof(double) * (size_t)(d->set.n ? d->set.n : 1));
    if (!d->scores) return -1;
    for (int i = 0; i < d->set.n; i++) {
        const struct feat_result *f = &d->set.f[i];
        if (f->status == FEAT_SCORED)
            d->scores[d->n_scored++] = f->score;
        else {
            if (f->status == FEAT_FAILED)
                d->n_failed++;
            else
                d->n_no_score++;
            if (add_reason(d, f) != 0) return -1;
        }
    }
    if (d->n_reasons > 1) qsort(d->reasons, (size_t)d->n_reasons, sizeof *d->reasons, cmp_reason);
    score_histogram(d->scores, d->n_scored, d->score_hist);
    if (d->n_scored < 2) {
        snprintf(d->note, sizeof d->note, "%d score%s: too few for a mean with a CI", d->n_scored,
                 d->n_scored == 1 ? "" : "s");
        return 0;
    }
    if (stats_describe(d->scores, (size_t)d->n_scored, &d->desc) != 0)
        return err_prefix("%s", d->scores_path);
    d->has_desc = true;
    struct boot_opts o = {
        .n_resamples = s->resamples, .level = s->level, .seed = d->seed, .n_threads = s->n_threads};
    if (boot_mean_ci(d->scores, (size_t)d->n_scored, &o, &d->ci) == 0) {
        d->has_ci = true;
    } else {
        snprintf(d->note, sizeof d->note, "no CI: %s", err_msg());
        log_warn("%s: %s", sae->name, d->note);
    }
    return 0;
}

static void dict_free(struct rep_dict *d) {
    free(d->scores_path);
    free(d->examples_path);
    for (int i = 0; i < d->n_reasons; i++)
        free(d->reasons[i].reason);
    free(d->reasons);
    score_set_free(&d->set);
    free(d->scores);
}

/* ---------------------------------------------------------------------------
 * Pairs.
 */
static int compare_pair(const struct report_data *d, struct rep_pair_result *r) {
    const struct rep_sae *a = &d->sweep.saes[r->p.a], *b = &d->sweep.saes[r->p.b];
    const struct rep_dict *da = &d->dict[r->p.a], *db = &d->dict[r->p.b];
    char *key = join3(a->name, "|", b->name);
    if (!key) return -1;
    r->seed = report_derived_seed(d->set->seed, key);
    free(key);
    if (!da->has_scores || !db->has_scores) {
        snprintf(r->note, sizeof r->note, "scores: not yet computed");
        return 0;
    }
    if (da->n_scored < 2 || db->n_scored < 2) {
        snprintf(r->note, sizeof r->note, "too few scores (%d and %d)", da->n_scored, db->n_scored);
        return 0;
    }
    struct boot_opts o = {.n_resamples = d->set->resamples,
                          .level = d->set->level,
                          .seed = r->seed,
                          .n_threads = d->set->n_threads};
    if (boot_compare_means(db->scores, (size_t)db->n_scored, da->scores, (size_t)da->n_scored, &o,
                           &r->cmp) == 0) {
        r->compared = true;
    } else {
        snprintf(r->note, sizeof r->note, "no comparison: %s", err_msg());
        log_warn("pair %s / %s: %s", a->name, b->name, r->note);
    }
    return 0;
}

static int make_pairs(const struct report_settings *s, struct report_data *d) {
    struct rep_pair *p = NULL;
    int n = 0, rc;
    d->pinned = s->n_pinned > 0;
    if (d->pinned)
        rc = pairs_pinned(&d->sweep, s->pinned, s->n_pinned, &p, &n);
    else
        rc = pairs_auto(&d->sweep, &p, &n);
    if (rc != 0) return -1;
    d->pairs = n ? xcalloc((size_t)n, sizeof *d->pairs) : NULL;
    if (n && !d->pairs) {
        free(p);
        return -1;
    }
    d->n_pairs = n;
    for (int i = 0; i < n; i++)
        d->pairs[i].p = p[i];
    free(p);
    for (int i = 0; i < n; i++) {
        struct rep_pair_result *r = &d->pairs[i];
        int same = -1; /* closest in L0 and in CE are often the same two SAEs */
        for (int j = 0; j < i && same < 0; j++)
            if (d->pairs[j].p.a == r->p.a && d->pairs[j].p.b == r->p.b) same = j;
        if (same >= 0) {
            struct rep_pair p0 = r->p;
            *r = d->pairs[same]; /* same data and seed: the very same numbers */
            r->p = p0;
        } else if (compare_pair(d, r) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Geometry.
 */
struct decoder {
    float *D; /* (n, d): row i is direction i */
    size_t n, d;
    bool tried;
};

/* The directions of an SAE file: /weights/W_dec_normalised (d_in, d_sae), else
 * /weights/W_dec, transposed to one row per direction. */
static int load_decoder(const char *path, struct decoder *dec) {
    hid_t f = h5_open_ro(path);
    if (f < 0) return -1;
    const char *name = h5_exists(f, "weights") && h5_exists(f, "weights/W_dec_normalised")
                           ? "weights/W_dec_normalised"
                           : "weights/W_dec";
    hsize_t dims[2];
    float *w = NULL;
    int rc = h5_read(f, name, H5T_NATIVE_FLOAT, 2, NULL, dims, (void **)&w);
    h5_close(f);
    if (rc != 0) return err_prefix("%s", path);
    size_t d_in = dims[0], n = dims[1];
    if (n < 2) {
        free(w);
        return err_set("%s: %s has %zu directions, need 2", path, name, n);
    }
    float *D = xmalloc(sizeof(float) * n * d_in);
    if (!D) {
        free(w);
        return -1;
    }
    for (size_t i = 0; i < d_in; i++) // w is (d_in, n), D is (n, d_in)
        for (size_t j = 0; j < n; j++)
            D[j * d_in + i] = w[i * n + j];
    free(w);
    dec->D = D, dec->n = n, dec->d = d_in;
    return 0;
}

static void note_add(struct report_data *d, const char *fmt, const char *a, const char *b) {
    size_t len = strlen(d->geom_note);
    if (len + 2 >= sizeof d->geom_note) return;
    if (len) d->geom_note[len++] = ';', d->geom_note[len++] = ' ';
    snprintf(d->geom_note + len, sizeof d->geom_note - len, fmt, a, b);
}

static const struct decoder *get_decoder(struct report_data *d, struct decoder *decs, int i) {
    struct decoder *dec = &decs[i];
    if (!dec->tried) {
        dec->tried = true;
        const struct rep_sae *s = &d->sweep.saes[i];
        char *path = join3(d->exp_dir, "/saes/", s->name);
        char *h5 = path ? join3(path, ".h5", "") : NULL;
        free(path);
        const char *use = h5 && file_exists(h5)             ? h5
                          : s->file && file_exists(s->file) ? s->file
                                                            : NULL;
        if (!use)
            note_add(d, "%s: SAE file not found%s", s->name, "");
        else if (load_decoder(use, dec) != 0)
            note_add(d, "%s: %s", s->name, err_msg());
        free(h5);
    }
    return dec->D ? dec : NULL;
}

static int add_geom(struct report_data *d, enum rep_geom_kind kind, int a, int b, const float *cos,
                    size_t n) {
    struct rep_geom *g = xrealloc(d->geom, sizeof *g * (size_t)(d->n_geom + 1));
    if (!g) return -1;
    d->geom = g;
    g = &g[d->n_geom];
    memset(g, 0, sizeof *g);
    g->kind = kind, g->a = a, g->b = b;
    if (geom_summarize(cos, n, &g->sum) != 0 ||
        geom_histogram(cos, n, 0, 1, REP_GEOM_BINS, g->counts, &g->below, &g->above) != 0)
        return err_prefix("geometry of %s", d->sweep.saes[a].name);
    d->n_geom++;
    return 0;
}

static int geom_self(struct report_data *d, struct decoder *decs, int i) {
    const struct decoder *D = get_decoder(d, decs, i);
    if (!D) return 0;
    float *cos = xmalloc(sizeof(float) * D->n);
    if (!cos) return -1;
    int rc = geom_nearest_self(D->D, D->n, D->d, NULL, cos, NULL);
    if (rc == 0) rc = add_geom(d, GEOM_SELF, i, -1, cos, D->n);
    free(cos);
    return rc;
}

static int geom_cross(struct report_data *d, struct decoder *decs, enum rep_geom_kind kind, int a,
                      int b) {
    const struct decoder *A = get_decoder(d, decs, a), *B = get_decoder(d, decs, b);
    if (!A || !B) return 0;
    if (A->d != B->d) {
        note_add(d, "%s and %s: different d_in, not compared", d->sweep.saes[a].name,
                 d->sweep.saes[b].name);
        return 0;
    }
    for (int dir = 0; dir < 2; dir++) {
        const struct decoder *X = dir ? B : A, *Y = dir ? A : B;
        float *cos = xmalloc(sizeof(float) * X->n);
        if (!cos) return -1;
        int rc = geom_nearest_cross(X->D, X->n, Y->D, Y->n, X->d, NULL, cos, NULL);
        if (rc == 0) rc = add_geom(d, kind, dir ? b : a, dir ? a : b, cos, X->n);
        free(cos);
        if (rc != 0) return -1;
    }
    return 0;
}

static bool cross_done(const struct report_data *d, int a, int b) {
    for (int g = 0; g < d->n_geom; g++)
        if (d->geom[g].kind != GEOM_SELF &&
            ((d->geom[g].a == a && d->geom[g].b == b) || (d->geom[g].a == b && d->geom[g].b == a)))
            return true;
    return false;
}

static int geometry(struct report_data *d) {
    int n = d->sweep.n, rc = 0;
    struct decoder *decs = xcalloc((size_t)(n ? n : 1), sizeof *decs);
    if (!decs) return -1;
    for (int i = 0; i < n && rc == 0; i++)
        rc = geom_self(d, decs, i);
    /* matched pairs first (pinned ones may cross layers), then every other two
     * SAEs of different types at the same layer and seed */
    for (int p = 0; p < d->n_pairs && rc == 0; p++) {
        int a = d->pairs[p].p.a, b = d->pairs[p].p.b;
        if (!cross_done(d, a, b)) rc = geom_cross(d, decs, GEOM_CROSS_TYPE, a, b);
    }
    for (int i = 0; i < n && rc == 0; i++)
        for (int j = 0; j < n && rc == 0; j++) {
            const struct rep_sae *x = &d->sweep.saes[i], *y = &d->sweep.saes[j];
            if (x->layer == y->layer && x->seed == y->seed && x->type < y->type &&
                !cross_done(d, i, j))
                rc = geom_cross(d, decs, GEOM_CROSS_TYPE, i, j);
        }
    for (int i = 0; i < n && rc == 0; i++)
        for (int j = i + 1; j < n && rc == 0; j++) {
            const struct rep_sae *x = &d->sweep.saes[i], *y = &d->sweep.saes[j];
            if (x->layer == y->layer && x->type == y->type && x->lambda == y->lambda &&
                x->seed != y->seed && !cross_done(d, i, j))
                rc = geom_cross(d, decs, GEOM_CROSS_SEED, i, j);
        }
    for (int i = 0; i < n; i++)
        free(decs[i].D);
    free(decs);
    d->geometry_done = rc == 0;
    return rc;
}

/* ---------------------------------------------------------------------------
 * The whole collection.
 */
int report_collect(const struct report_settings *s, struct report_data *d) {
    memset(d, 0, sizeof *d);
    d->set = s;
    if (!s->experiment || !s->experiment[0]) return err_set("experiment: must be set");
    d->exp_dir = join3(s->results_dir ? s->results_dir : "results", "/", s->experiment);
    d->sweep_path = d->exp_dir ? join3(d->exp_dir, "/saes/sweep.json", "") : NULL;
    if (!d->sweep_path) goto fail;
    d->have_sweep = file_exists(d->sweep_path);
    if (d->have_sweep && rep_sweep_read(d->sweep_path, &d->sweep) != 0) goto fail;
    if (!d->have_sweep && s->n_pinned > 0) {
        err_set("report.pairs: pinned pairs need the sweep table, and %s does not exist",
                d->sweep_path);
        goto fail;
    }
    double t0 = now_seconds();
    d->dict = xcalloc((size_t)(d->sweep.n ? d->sweep.n : 1), sizeof *d->dict);
    if (!d->dict) goto fail;
    for (int i = 0; i < d->sweep.n; i++) {
        struct rep_dict *r = &d->dict[i];
        char *base = join3(d->exp_dir, "/scores/", d->sweep.saes[i].name);
        r->scores_path = base ? join3(base, ".jsonl", "") : NULL;
        free(base);
        base = join3(d->exp_dir, "/examples/", d->sweep.saes[i].name);
        r->examples_path = base ? join3(base, ".h5", "") : NULL;
        free(base);
        if (!r->scores_path || !r->examples_path) goto fail;
        if (dict_stats(s, &d->sweep.saes[i], r) != 0) goto fail;
        d->n_with_scores += r->has_scores;
    }
    if (make_pairs(s, d) != 0) goto fail;
    d->seconds_stats = now_seconds() - t0;
    if (s->geometry && d->sweep.n > 0) {
        t0 = now_seconds();
        if (geometry(d) != 0) goto fail;
        d->seconds_geometry = now_seconds() - t0;
    }
    return 0;
fail:
    report_data_free(d);
    return -1;
}

void report_data_free(struct report_data *d) {
    for (int i = 0; d->dict && i < d->sweep.n; i++)
        dict_free(&d->dict[i]);
    free(d->dict);
    free(d->pairs);
    free(d->geom);
    rep_sweep_free(&d->sweep);
    free(d->exp_dir);
    free(d->sweep_path);
    memset(d, 0, sizeof *d);
}
