/* score.c: Pearson correlation and r² over scored windows (see score.h). */
#include "interp/score.h"

#include <math.h>
#include <stdlib.h>

#include "util/error.h"

const char *corr_status_name(enum corr_status s) {
    switch (s) {
    case CORR_OK: return "ok";
    case CORR_EMPTY: return "empty";
    case CORR_CONST_TRUE: return "constant_true";
    case CORR_CONST_SIM: return "constant_simulation";
    case CORR_NOT_FINITE: return "not_finite";
    }
    return "unknown";
}

/* Constant means every value equals the first, tested exactly: a variance
 * computed in floating point can be a tiny non-zero for equal values. */
static int constant(const double *x, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (x[i] != x[0]) return 0;
    return 1;
}

/* truth, sim are (n) */
enum corr_status score_pearson(const double *truth, const double *sim, size_t n, double *r) {
    *r = NAN;
    if (n == 0) return CORR_EMPTY;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(truth[i]) || !isfinite(sim[i])) return CORR_NOT_FINITE;
    if (constant(truth, n)) return CORR_CONST_TRUE;
    if (constant(sim, n)) return CORR_CONST_SIM;
    double mt = 0, ms = 0;
    for (size_t i = 0; i < n; i++) {
        mt += truth[i];
        ms += sim[i];
    }
    mt /= (double)n;
    ms /= (double)n;
    double stt = 0, sss = 0, sts = 0;
    for (size_t i = 0; i < n; i++) {
        double dt = truth[i] - mt, ds = sim[i] - ms;
        stt += dt * dt;
        sss += ds * ds;
        sts += dt * ds;
    }
    if (stt <= 0) return CORR_CONST_TRUE; /* only when values differ below precision */
    if (sss <= 0) return CORR_CONST_SIM;
    double v = sts / sqrt(stt * sss);
    *r = v > 1 ? 1 : v < -1 ? -1 : v;
    return CORR_OK;
}

void feature_score_free(struct feature_score *s) {
    free(s->win_r);
    free(s->win_r2);
    free(s->win_status);
    s->win_r = s->win_r2 = NULL;
    s->win_status = NULL;
}

int score_feature(const double *truth, const double *sim, const int *len, int n_windows,
                  struct feature_score *out) {
    *out = (struct feature_score){.n_windows = n_windows};
    int nw = n_windows > 0 ? n_windows : 1;
    out->win_r = xcalloc((size_t)nw, sizeof *out->win_r);
    out->win_r2 = xcalloc((size_t)nw, sizeof *out->win_r2);
    out->win_status = xcalloc((size_t)nw, sizeof *out->win_status);
    if (!out->win_r || !out->win_r2 || !out->win_status) {
        feature_score_free(out);
        return -1;
    }
    size_t at = 0;
    for (int w = 0; w < n_windows; w++) {
        if (len[w] < 0) {
            feature_score_free(out);
            return err_set("score: window %d has a negative length %d", w, len[w]);
        }
        out->win_status[w] = score_pearson(truth + at, sim + at, (size_t)len[w], &out->win_r[w]);
        out->win_r2[w] = out->win_r[w] * out->win_r[w];
        at += (size_t)len[w];
    }
    out->n_tokens = at;
    out->status = score_pearson(truth, sim, at, &out->r);
    out->r2 = out->r * out->r;
    return 0;
}
