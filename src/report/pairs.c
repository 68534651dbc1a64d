/* pairs.c: automatic and pinned matched pairs (see pairs.h). */
#include "report/pairs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

const char *pair_crit_name(enum pair_crit c) {
    static const char *const n[] = {"l0", "ce_increase", "pinned"};
    return (unsigned)c < 3 ? n[c] : "?";
}

double pair_log_ratio(double x, double y) {
    if (!(isfinite(x) && isfinite(y) && x > 0 && y > 0)) return NAN;
    return log(y / x);
}

static void fill_ratios(const struct rep_sweep *sw, struct rep_pair *p) {
    const struct rep_sae *a = &sw->saes[p->a], *b = &sw->saes[p->b];
    p->log_ratio_l0 = pair_log_ratio(a->l0, b->l0);
    p->log_ratio_ce = pair_log_ratio(a->ce_increase, b->ce_increase);
    p->gap = fabs(p->crit == PAIR_L0 ? p->log_ratio_l0 : p->log_ratio_ce);
}

static double metric(const struct rep_sae *s, enum pair_crit c) {
    return c == PAIR_L0 ? s->l0 : s->ce_increase;
}

/* Best (a, b) for one (layer, type pair, seed, criterion); 0 when none. */
static int best_pair(const struct rep_sweep *sw, int layer, int ta, int tb, long long seed,
                     enum pair_crit c, struct rep_pair *out) {
    double best = INFINITY;
    int found = 0;
    for (int i = 0; i < sw->n; i++) {
        const struct rep_sae *a = &sw->saes[i];
        if (a->layer != layer || a->type != ta || a->seed != seed) continue;
        for (int j = 0; j < sw->n; j++) {
            const struct rep_sae *b = &sw->saes[j];
            if (b->layer != layer || b->type != tb || b->seed != seed) continue;
            double g = fabs(pair_log_ratio(metric(a, c), metric(b, c)));
            if (isnan(g) || g >= best) continue; /* strict: ties keep the first */
            best = g;
            *out = (struct rep_pair){.a = i, .b = j, .crit = c};
            found = 1;
        }
    }
    if (found) fill_ratios(sw, out);
    return found;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Distinct sorted values of layer (as long long) or seed. */
static long long *distinct(const struct rep_sweep *sw, int want_seed, int *n_out) {
    long long *v = xmalloc(sizeof *v * (size_t)(sw->n ? sw->n : 1));
    if (!v) return NULL;
    int n = 0;
    for (int i = 0; i < sw->n; i++) {
        long long x = want_seed ? sw->saes[i].seed : sw->saes[i].layer;
        int seen = 0;
        for (int k = 0; k < n && !seen; k++)
            seen = v[k] == x;
        if (!seen) v[n++] = x;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_ll);
    *n_out = n;
    return v;
}

int pairs_auto(const struct rep_sweep *sw, struct rep_pair **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    int nl, ns;
    long long *layers = distinct(sw, 0, &nl), *seeds = layers ? distinct(sw, 1, &ns) : NULL;
    /* at most layers x 3 type pairs x seeds x 2 criteria */
    size_t cap = seeds ? (size_t)nl * 3 * (size_t)ns * 2 : 0;
    struct rep_pair *p = seeds ? xmalloc(sizeof *p * (cap ? cap : 1)) : NULL;
    if (!p) {
        free(layers);
        free(seeds);
        return -1;
    }
    static const int tp[3][2] = {
        {REP_LOCAL, REP_E2E}, {REP_LOCAL, REP_E2E_DS}, {REP_E2E, REP_E2E_DS}};
    int n = 0;
    for (int l = 0; l < nl; l++)
        for (int t = 0; t < 3; t++)
            for (int s = 0; s < ns; s++)
                for (int c = PAIR_L0; c <= PAIR_CE; c++)
                    n += best_pair(sw, (int)layers[l], tp[t][0], tp[t][1], seeds[s],
                                   (enum pair_crit)c, &p[n]);
    free(layers);
    free(seeds);
    if (n == 0) {
        free(p);
        p = NULL;
    }
    *out = p;
    *n_out = n;
    return 0;
}

int pairs_pinned(const struct rep_sweep *sw, const char *const *names, int n, struct rep_pair **out,
                 int *n_out) {
    *out = NULL;
    *n_out = 0;
    if (n == 0) return 0;
    struct rep_pair *p = xcalloc((size_t)n, sizeof *p);
    if (!p) return -1;
    for (int k = 0; k < n; k++) {
        const char *an = names[2 * k], *bn = names[2 * k + 1];
        int a = rep_sweep_find(sw, an), b = rep_sweep_find(sw, bn);
        if (a < 0 || b < 0) {
            free(p);
            return err_set("report.pairs[%d] [\"%s\", \"%s\"]: no SAE named \"%s\" in the sweep "
                           "(saes/sweep.json has %d SAE%s)",
                           k, an, bn, a < 0 ? an : bn, sw->n, sw->n == 1 ? "" : "s");
        }
        if (a == b) {
            free(p);
            return err_set("report.pairs[%d]: compares \"%s\" with itself", k, an);
        }
        p[k] = (struct rep_pair){.a = a, .b = b, .crit = PAIR_PINNED};
        fill_ratios(sw, &p[k]);
        p[k].gap = fabs(p[k].log_ratio_ce);
    }
    *out = p;
    *n_out = n;
    return 0;
}
