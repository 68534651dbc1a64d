/* score.h: how well a simulation matches the truth (Bills et al. 2023 scoring).
 *
 * A feature's score is the Pearson correlation between its true activations
 * and the simulator's predictions over the concatenation of all its scored
 * windows (held-out top windows, random windows, quantile windows), so the
 * score rewards both predicting WHERE the feature fires inside a window and
 * telling active windows from silent ones. Correlation is scale-free: the
 * simulator's 0..10 need not match the feature's units.
 *
 * When either vector is constant the correlation is undefined: that is "no
 * score" with its reason, never 0 (a simulator that predicts all zeros has
 * not been shown to be wrong by a score of 0, it has given nothing to
 * measure). Per window the same statistics are reported; random windows are
 * often all zero, so per-window values are frequently undefined (NAN here,
 * null in JSON).
 *
 * r² is the squared correlation: the fraction of the true activations'
 * variance explained by the best linear map of the predictions, again
 * independent of scale (an R² against the raw 0..10 values would only measure
 * units).
 *
 * Sums run in double with the means taken first (two passes), which is exact
 * enough that the numpy reference (tests/ref/interp_score_ref.py) agrees to
 * 1e-12 on the test vectors.
 */
#ifndef AUTOINTERP_INTERP_SCORE_H
#define AUTOINTERP_INTERP_SCORE_H

#include <stddef.h>

enum corr_status {
    CORR_OK = 0,
    CORR_EMPTY,         /* no values */
    CORR_CONST_TRUE,    /* the true activations are all equal */
    CORR_CONST_SIM,     /* the predictions are all equal */
    CORR_NOT_FINITE,    /* a NaN or infinity in either vector */
};

/* "ok", "empty", "constant_true", "constant_simulation", "not_finite". */
const char *corr_status_name(enum corr_status s);

/* Pearson correlation of truth[n] and sim[n]; *r is NAN unless CORR_OK. */
enum corr_status score_pearson(const double *truth, const double *sim, size_t n, double *r);

/* One feature: windows [w] of len[w] values each, stored back to back in
 * truth and sim (sum of len = n). */
struct feature_score {
    enum corr_status status; /* of the concatenation */
    double r, r2;            /* NAN unless status is CORR_OK */
    size_t n_tokens;
    int n_windows;
    double *win_r, *win_r2;  /* [n_windows], NAN where undefined (owned) */
    enum corr_status *win_status;
};

int score_feature(const double *truth, const double *sim, const int *len, int n_windows,
                  struct feature_score *out);
void feature_score_free(struct feature_score *s);

#endif
