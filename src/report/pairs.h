/* pairs.h: which dictionaries are compared with which (the paper's Table 4).
 *
 * Automatic pairs. For every layer, every pair of types in the order
 * (local, e2e), (local, e2e_ds), (e2e, e2e_ds), and every seed that both types
 * have at that layer, two pairs are chosen among the SAEs of the sweep:
 *   "l0"          the (a, b) with the smallest |log(L0_b / L0_a)|
 *   "ce_increase" the (a, b) with the smallest |log(CE_inc_b / CE_inc_a)|
 * where a has the first type and b the second, both at that layer with that
 * seed. A candidate whose metric is not a positive finite number (an SAE whose
 * CE increase is <= 0, a metric not measured) cannot be matched on it. Ties
 * go to the lowest sweep index of a, then of b, so the choice is
 * deterministic. The two criteria may pick the same SAEs; both rows are kept,
 * as in the paper's table.
 *
 * Pinned pairs (config report.pairs, [[a, b], ...]) replace the automatic
 * choice entirely; a name that is not in the sweep is an error naming it and
 * the pair.
 *
 * Direction: every difference the report states is b minus a (the second SAE
 * of the pair minus the first), so an automatic (local, e2e_ds) pair gives the
 * paper's "e2e+ds minus local". Log ratios are log(b / a) (natural log); the
 * "gap" is the absolute log ratio of the criterion's metric (for pinned pairs,
 * of the CE increase).
 */
#ifndef AUTOINTERP_REPORT_PAIRS_H
#define AUTOINTERP_REPORT_PAIRS_H

#include "report/inputs.h"

enum pair_crit { PAIR_L0 = 0, PAIR_CE = 1, PAIR_PINNED = 2 };
const char *pair_crit_name(enum pair_crit c); /* "l0", "ce_increase", "pinned" */

struct rep_pair {
    int a, b; /* sweep indices */
    enum pair_crit crit;
    double log_ratio_l0, log_ratio_ce; /* log(b / a); NaN when undefined */
    double gap;                        /* |log ratio| of the criterion's metric */
};

/* log(y / x) when both are positive and finite, else NaN. */
double pair_log_ratio(double x, double y);

/* The automatic pairs of a sweep (*out malloc'd, may be NULL when *n_out is 0). */
int pairs_auto(const struct rep_sweep *sw, struct rep_pair **out, int *n_out);

/* Pinned pairs: names[2k], names[2k+1] for k < n. */
int pairs_pinned(const struct rep_sweep *sw, const char *const *names, int n, struct rep_pair **out,
                 int *n_out);

#endif
