/* examples.h: the file contract between extraction and interpretation.
 *
 * `autointerp extract` writes one HDF5 file per SAE, results/<exp>/examples/<sae>.h5:
 *
 *   attributes on /:
 *     format = "autointerp-examples", format_version = 1
 *     sae (name), sae_path, model_path, tokens_path, tokenizer (name),
 *     window, offset (position of the max-activating token in a top window),
 *     top_k, n_random, n_quantile, n_explain, n_score_top, seed,
 *     n_tokens_scanned, d_sae, n_alive,
 *     alive_from: "pass" (alive, density and maximum of every feature over the
 *                 scanned tokens) or "sae metrics over N tokens" (extract.alive_from
 *                 "sae": n_alive and the sample come from the SAE file's evaluation;
 *                 only the sampled features were scanned, the others have NaN
 *                 density and maximum); files without it are "pass",
 *     inputs_hash (extract's digest of its settings and input files: a rerun with
 *                  the same one skips the SAE),
 *     complete = 1   (written last: a file without it is never read as complete)
 *   /density        [d_sae] float64  fraction of scanned tokens where the feature is > 0
 *   /max_activation [d_sae] float32  maximum over scanned tokens
 *   /features       [n_features] int32  sampled feature ids, in sample order
 *   /windows/feature [n_windows] int32  index into /features (0..n_features-1)
 *   /windows/split   [n_windows] uint8  0 explain, 1 score-top, 2 score-random, 3 score-quantile
 *   /windows/rank    [n_windows] int32  rank among the feature's top windows (0 = highest);
 *                                       -1 for random windows; quantile index for quantile ones
 *   /windows/source  [n_windows] int64  dataset position of the window's first token
 *   /windows/tokens  [n_windows, window] int32  token ids
 *   /windows/acts    [n_windows, window] float32  the window's feature's activation per token
 *
 * Windows are sorted by feature index, then split, then rank, then source. The
 * explain and scoring sets are disjoint by construction: a window has exactly one
 * split, and the windows of one feature never overlap (no token is in two of them).
 * How windows are chosen: src/extract/collect.c.
 */
#ifndef AUTOINTERP_EXTRACT_EXAMPLES_H
#define AUTOINTERP_EXTRACT_EXAMPLES_H

#include <stdint.h>

#define EXAMPLES_FORMAT "autointerp-examples"
#define EXAMPLES_FORMAT_VERSION 1

enum window_split { SPLIT_EXPLAIN = 0, SPLIT_SCORE_TOP = 1, SPLIT_SCORE_RANDOM = 2, SPLIT_SCORE_QUANTILE = 3 };

struct examples {
    char *path;
    char *sae_name, *sae_path, *model_path, *tokens_path, *tokenizer;
    char *alive_from; /* NULL = "pass" */
    int window, offset;
    int top_k, n_random, n_quantile, n_explain, n_score_top;
    int64_t seed, n_tokens_scanned;
    int d_sae, n_alive;
    double *density;       /* [d_sae] */
    float *max_activation; /* [d_sae] */
    int n_features;
    int32_t *features;     /* [n_features] */
    int64_t n_windows;
    int32_t *win_feature;  /* [n_windows] */
    uint8_t *win_split;
    int32_t *win_rank;
    int64_t *win_source;
    int32_t *win_tokens;   /* [n_windows * window] */
    float *win_acts;       /* [n_windows * window] */
};

/* Load a whole examples file (they are small: 200 features x 40 windows x 64
 * tokens is about 4 MB). Refuses files without complete = 1, with a wrong format,
 * or with inconsistent shapes, naming the file and the dataset. */
int examples_load(const char *path, struct examples *ex);
void examples_free(struct examples *ex);

/* Write atomically (complete = 1 last). */
int examples_write(const char *path, const struct examples *ex);
/* The same, also recording an `inputs_hash` string attribute (what extract uses
 * to decide that an existing file was made from the same inputs and settings). */
int examples_write_extra(const char *path, const struct examples *ex, const char *inputs_hash);
/* 1 when path is a finished examples file (complete = 1) and, if inputs_hash is
 * not NULL, carries that inputs_hash; 0 otherwise (missing, partial, other
 * inputs). Never sets an error. */
int examples_is_complete(const char *path, const char *inputs_hash);

/* Windows of one feature index: [*first, *first + *count) in the arrays. */
void examples_feature_windows(const struct examples *ex, int feature_index, int64_t *first,
                              int64_t *count);

#endif
