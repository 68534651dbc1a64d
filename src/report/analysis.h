/* analysis.h: the numbers of the report, computed once and read by every writer.
 *
 * Per dictionary (rep_dict): counts of sampled, scored, no-score and failed
 * features (no-score and failed also by reason), mean / median / sd / min / max
 * of the scores (stats/bootstrap.h: stats_describe), and the bootstrap CI of
 * the mean (boot_mean_ci, percentile and BCa) with B = settings.resamples.
 * "Sampled" is the examples file's feature count when it exists, else the
 * number of features in the score file.
 *
 * Per pair (rep_pair_result, pairs from report/pairs.h): the difference of
 * mean scores b - a with its bootstrap CIs and pooled-null two-sided p-value
 * (boot_compare_means(b, a)). A dictionary with fewer than two scores has no
 * CI, and a pair involving it no comparison; `note` says why.
 *
 * Seeds: every bootstrap records its own seed, derived from the master
 * report.seed and a key, report_derived_seed(master, key) = (master +
 * FNV-1a-32(key)) mod 2^32, key = the SAE name for a dictionary and
 * "<a>|<b>" for a pair, so each interval is reproducible alone and two
 * dictionaries of equal size never share resampling indices. (The p-value's
 * seed is the pair seed ^ BOOT_PVALUE_SEED_XOR, as boot_compare_means does.)
 *
 * Geometry (rep_geom, stats/geometry.h), when settings.geometry and the SAE
 * files are there: for every SAE, each decoder direction's cosine to its
 * nearest other direction ("self"); for every two SAEs of different types at
 * the same layer and seed, and every matched pair (both directions, a -> b and
 * b -> a), and every two SAEs that differ only in seed (same layer, type and
 * lambda), each direction's highest cosine to the other dictionary
 * ("cross_type", "cross_seed"). Cost: 2 na nb d flops per direction (sgemm);
 * a sweep of k SAEs per type and layer makes 3 k^2 cross-type pairs. Each is summarised
 * (geom_summarize) and binned into REP_GEOM_BINS bins over [0, 1]; cosines below 0 are counted in
 * `below` (a nearest direction is rarely anti-aligned, but nothing is hidden).
 */
#ifndef AUTOINTERP_REPORT_ANALYSIS_H
#define AUTOINTERP_REPORT_ANALYSIS_H

#include <stdbool.h>
#include <stddef.h>

#include "report/inputs.h"
#include "report/pairs.h"
#include "report/report.h"
#include "stats/bootstrap.h"
#include "stats/geometry.h"

#define REP_SCORE_BINS 20 /* score histogram over [-1, 1] */
#define REP_GEOM_BINS 50  /* cosine histogram over [0, 1] */

struct rep_reason {
    char *reason;
    enum feat_status status; /* FEAT_NO_SCORE or FEAT_FAILED */
    int count;
};

struct rep_dict {
    bool has_scores; /* a score file exists */
    char *scores_path, *examples_path;
    int n_sampled; /* -1: unknown */
    int n_results, n_scored, n_no_score, n_failed;
    int n_reasons;
    struct rep_reason *reasons; /* sorted: failed before no_score, then by count desc */
    struct score_set set;       /* the file's entries (explanations kept for HTML) */
    double *scores;             /* [n_scored], by feature id */
    bool has_desc, has_ci;
    struct stats_desc desc;
    struct boot_ci ci;
    unsigned long seed;
    size_t score_hist[REP_SCORE_BINS];
    char note[160]; /* why there is no CI, or "" */
};

struct rep_pair_result {
    struct rep_pair p;
    bool compared;
    struct boot_compare cmp; /* of mean(b) - mean(a) */
    unsigned long seed;
    char note[160];
};

enum rep_geom_kind { GEOM_SELF = 0, GEOM_CROSS_TYPE = 1, GEOM_CROSS_SEED = 2 };
const char *rep_geom_kind_name(enum rep_geom_kind k); /* "self", "cross_type", "cross_seed" */

struct rep_geom {
    enum rep_geom_kind kind;
    int a, b; /* sweep indices; b = -1 for self. Directions of a, compared with b. */
    struct geom_summary sum;
    size_t counts[REP_GEOM_BINS];
    size_t below, above;
};

struct report_data {
    const struct report_settings *set;
    char *exp_dir;    /* <results_dir>/<experiment> */
    char *sweep_path; /* <exp_dir>/saes/sweep.json */
    bool have_sweep;
    struct rep_sweep sweep;
    struct rep_dict *dict; /* [sweep.n] */
    int n_with_scores;
    bool pinned;
    int n_pairs;
    struct rep_pair_result *pairs;
    bool geometry_done;
    int n_geom;
    struct rep_geom *geom;
    char geom_note[512]; /* SAEs left out of the geometry and why, or "" */
    double seconds_stats, seconds_geometry;
};

unsigned long report_derived_seed(unsigned long master, const char *key);

/* 1 when a and b (either order) form one of d's matched pairs. */
bool report_is_matched_pair(const struct report_data *d, int a, int b);

/* Read every input and compute every number. On failure d is freed. */
int report_collect(const struct report_settings *s, struct report_data *d);
void report_data_free(struct report_data *d);

#endif
