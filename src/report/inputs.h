/* inputs.h: what the report reads, each through one small reader.
 *
 *   <exp>/saes/sweep.json      the sweep table of `autointerp train` (sae/sweep.h):
 *                              name, type, layer, lambda, seed and the final
 *                              metrics of every finished SAE. Numbers that are
 *                              null there (not measured) are NaN here.
 *   <exp>/scores/<sae>.jsonl   per-feature results of the score stage, one JSON
 *                              object per line:
 *                                {"feature": 123, "status": "scored", "score": 0.41, ...}
 *                                {"feature": 7, "status": "no_score", "reason":
 * "constant_simulation"}
 *                                {"feature": 9, "status": "failed", "reason": "wrong_count", ...}
 *                              "feature" (integer id in the dictionary) and "status" are
 *                              required; "score" must be a finite number when the status
 *                              is "scored"; "reason" is a short category for no_score
 *                              and failed lines ("unknown" when absent); "explanation"
 *                              is optional. A feature may appear on several lines (a
 *                              rerun appends): the last line wins. A torn last line is
 *                              skipped (io/jsonl.h).
 *   <exp>/examples/<sae>.h5    the extraction file (extract/examples.h): how many
 *                              features were sampled (/features).
 *
 * A missing file is not an error here: the caller asks file_exists and says
 * "not yet computed". A file that exists but is malformed is an error naming
 * the file, the line and the field.
 */
#ifndef AUTOINTERP_REPORT_INPUTS_H
#define AUTOINTERP_REPORT_INPUTS_H

#include <stdint.h>

/* SAE types in the order the report lists them and pairs them. */
enum rep_type { REP_LOCAL = 0, REP_E2E = 1, REP_E2E_DS = 2, REP_N_TYPES = 3 };
const char *rep_type_name(int t); /* "local", "e2e", "e2e_ds" */

struct rep_sae {
    char *name, *type_name, *file;
    int type; /* enum rep_type */
    int layer;
    double lambda;
    long long seed;
    /* metrics (NaN when absent or null) */
    double l0, alive, alive_fraction, d_sae, ce_orig, ce_sae, ce_increase, kl, explained_variance,
        mse;
};

struct rep_sweep {
    char *experiment;
    int n;
    struct rep_sae *saes;
};

int rep_sweep_read(const char *path, struct rep_sweep *out);
void rep_sweep_free(struct rep_sweep *s);
/* Index of the SAE called name, or -1. */
int rep_sweep_find(const struct rep_sweep *s, const char *name);

enum feat_status { FEAT_SCORED = 0, FEAT_NO_SCORE = 1, FEAT_FAILED = 2 };
const char *feat_status_name(enum feat_status s); /* "scored", "no_score", "failed" */

struct feat_result {
    int32_t feature;
    enum feat_status status;
    double score;      /* NaN unless scored */
    char *reason;      /* NULL when scored */
    char *explanation; /* may be NULL */
};

/* One dictionary's results, sorted by feature id, one entry per feature. */
struct score_set {
    int n;
    struct feat_result *f;
    int torn; /* 1 when a torn last line was skipped */
};

int score_set_read(const char *path, struct score_set *out);
void score_set_free(struct score_set *s);

/* Number of sampled features in a complete examples file; -1 with err_set when
 * the file is not a complete examples file. */
int examples_count_features(const char *path);

#endif
