/* report.h: the report stage, as the pipeline and `autointerp report` call it.
 *
 * The stage reads what earlier stages left in <results_dir>/<experiment>/ (the
 * sweep table, per-SAE score files, examples files, SAE decoders), computes the
 * statistics (report/analysis.h) and writes, into <experiment>/report/ (or
 * out_dir):
 *
 *   report.md          tables in the form of Braun et al.'s Tables 2-4: the
 *                      sweep (lambda, L0, alive, CE increase), per-SAE scores
 *                      with bootstrap CIs, matched pairs with the difference of
 *                      mean scores, its CIs and p-value; dictionary geometry.
 *   summary.json       machine-readable, versioned (schema in report/summary.h).
 *   tables/<name>.csv   sweep.csv, scores.csv, failures.csv, pairs.csv, geometry.csv
 *                      (columns in report/tables.h).
 *   index.html, sae/<name>.html  (html on) the static HTML report and one feature
 *                      browser page per SAE (report/html.h).
 *   plots/<name>.svg   pareto_L<layer>.svg, scores.svg, score_hist.svg,
 *                      geometry_self_L<layer>.svg, geometry_cross_L<layer>.svg.
 *
 * Missing inputs degrade, they do not fail: without score files the sweep
 * table and the Pareto plot are still written and every score section says
 * "scores: not yet computed"; without a sweep table the report says so and
 * holds nothing else. Malformed inputs (a corrupt JSONL line, a pinned pair
 * naming an SAE the sweep does not have) are errors naming the file or key.
 * Every output file is replaced atomically; a rerun rewrites the whole set.
 */
#ifndef AUTOINTERP_REPORT_REPORT_H
#define AUTOINTERP_REPORT_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

struct report_settings {
    const char *results_dir, *experiment;
    const char *out_dir; /* NULL: <results_dir>/<experiment>/report */
    size_t resamples;    /* bootstrap B (report.resamples) */
    double level;        /* report.level */
    unsigned long seed;  /* report.seed: master seed, recorded */
    const char **pinned; /* 2 * n_pinned names (report.pairs), or NULL */
    int n_pinned;
    bool geometry;         /* report.geometry: read decoders, nearest-direction cosines */
    bool html;             /* also write index.html and the feature pages (report/html.h) */
    const char *tokenizer; /* data.tokenizer: shows tokens on feature pages (NULL: ids) */
    int n_threads;         /* bootstrap threads, 0 = one per CPU (results do not depend on it) */
};

/* Defaults: results_dir "results", B 100,000, level 0.95, seed 0, geometry and
 * html on. */
void report_settings_default(struct report_settings *s);
/* From a resolved config (report.*, results_dir, experiment). Strings point
 * into cfg, which must outlive s; s->pinned is malloc'd: report_settings_free. */
int report_settings_from_config(const struct config *cfg, struct report_settings *s);
void report_settings_free(struct report_settings *s);

struct report_outcome {
    char out_dir[1024];
    int n_saes, n_with_scores, n_pairs, n_compared, n_geometry;
    bool sweep_missing;
    double seconds;
};

/* The whole stage. */
int report_run(const struct report_settings *s, struct report_outcome *out);

#endif
