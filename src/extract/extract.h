/* extract.h: the extraction stage: sampled features and their example windows.
 *
 * For each SAE it writes an examples file (layout: src/extract/examples.h): about
 * 200 alive features sampled with a recorded seed (or an explicit list), and for
 * each its top-activating windows (explain and held-out score-top sets), random
 * windows and optional activation-quantile windows, with per-token activations,
 * plus density and maximum activation of every feature.
 *
 * Design: ONE streaming pass over the evaluation tokens per model. Each batch of
 * B whole sequences is run forward only up to the deepest hook any SAE reads
 * (lm_blocks_forward(lm, acts, 0, L): the blocks after it never run), and every
 * SAE at that model shares the forward. Each SAE then encodes the batch densely,
 * in blocks of features, (nf, B·T) = W_enc[f0:f0+nf] · xᵀ with one sgemm per
 * block, and hands each block to its collector (collect.h), which updates density
 * and maximum of all features and the windows of the features that can still be
 * sampled. Why one pass suffices for "sample among the alive features", how
 * windows, overlaps, ties and splits are defined: collect.c. Memory is bounded by
 * n_features · (top_k + n_random + quantile candidates) · window floats, plus
 * O(d_sae) counters and one feature block, whatever the number of tokens.
 *
 * Outputs are written atomically with complete = 1 last and an inputs_hash
 * attribute (settings, input paths, their sizes and modification times). A rerun
 * skips SAEs whose output is complete with the same inputs_hash and redoes the
 * rest from the start: a pass killed midway leaves no output (results exist only
 * at the end of the pass), at worst a stray *.tmp.* file, which is removed.
 *
 * The pass reads activations through struct extract_source, so tests can feed
 * synthetic hook activations without a model.
 */
#ifndef AUTOINTERP_EXTRACT_EXTRACT_H
#define AUTOINTERP_EXTRACT_EXTRACT_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "extract/collect.h"
#include "extract/examples.h"
#include "model/lm.h"
#include "tok/dataset.h"

struct extract_settings {
    int n_features;          /* alive features sampled per SAE (config extract.n_features) */
    int32_t *features;       /* explicit ids instead of sampling (owned; NULL = sample) */
    int n_explicit;
    int top_k, window, offset;
    int n_random, n_quantile, quantile_bands;
    int n_explain, n_score_top; /* interp.n_explain, interp.n_score_top */
    uint64_t seed;              /* the master seed; recorded in the outputs */
    int64_t max_tokens;         /* evaluation tokens scanned, 0 = all (extract.tokens) */
    int context;                /* positions per sequence (data.context) */
    int batch;                  /* sequences per forward, 0 = about 2048 tokens */
    bool prepend_bos;           /* data.prepend_bos (only when the tokenizer has a BOS) */
    /* extract.alive_from "sae": sample among the features alive in the SAE file's
     * evaluation metrics (training's held-out evaluation) that also fire in this
     * pass, encoding only the candidates (the sample size plus 10%, at least 8
     * spares) instead of every feature ("pass", the default:
     * alive, density and maximum of every feature over the scanned tokens). An
     * SAE file without metrics falls back to "pass" with a warning. */
    bool alive_from_sae;
};

void extract_settings_default(struct extract_settings *s);
/* From a resolved config: extract.*, interp.n_explain, interp.n_score_top, seed,
 * data.context, data.prepend_bos. */
int extract_settings_from_config(const struct config *cfg, struct extract_settings *s);
void extract_settings_free(struct extract_settings *s);
/* Parse "3,17,42" into s->features (replacing any list). */
int extract_settings_parse_features(struct extract_settings *s, const char *list);

/* Where hook activations come from. forward makes the activations of sequences
 * [seq0, seq0+B) available through hook(); dataset tokens are read back for the
 * windows at the end. */
struct extract_source {
    void *ctx;
    int T, r0;     /* positions per sequence; leading non-dataset positions (BOS) */
    int64_t n_seq; /* sequences in the pass */
    int max_batch; /* forward accepts B up to this */
    int (*forward)(void *ctx, int64_t seq0, int B);
    const float *(*hook)(void *ctx, int resid_index); /* (B*T, d_in) of the last forward */
    int (*read_tokens)(void *ctx, int64_t pos, int n, int32_t *out);
};

/* The part of an SAE that extraction uses: only the encoder. */
struct extract_sae {
    const char *name;
    int resid_index; /* hook: index into lm_acts.resid */
    int d_in, d_sae;
    const float *W_enc; /* (d_sae, d_in) */
    const float *b_enc; /* (d_sae) */
    /* NULL, or d_sae flags of the features known to be alive (the SAE's evaluation
     * metrics, extract.alive_from "sae"): then only the sample's candidates are
     * encoded in the pass (collect.h: known_alive). */
    const uint8_t *known_alive;
};

/* One streaming pass for n SAEs sharing src; fills out[i] (arrays and sampling;
 * names and paths are left to the caller) and, if stats is not NULL, stats[i]. */
int extract_stream(const struct extract_settings *s, const struct extract_source *src,
                   const struct extract_sae *saes, int n, struct examples *out,
                   struct collect_stats *stats, double *seconds);

/* A source over a token dataset and a model: consecutive sequences of
 * context - r0 dataset tokens (r0 = 1 with a prepended BOS), at most max_tokens. */
int extract_lm_source_open(struct extract_source *src, const struct lm *lm,
                           const struct token_dataset *d, const struct extract_settings *s,
                           int max_resid_index);
void extract_lm_source_close(struct extract_source *src);

/* The whole stage from files: loads the model, the token dataset and the SAEs
 * (results of `autointerp train`), skips SAEs whose output in out_dir is complete
 * with the same inputs, runs one pass for the rest and writes
 * out_dir/<sae file stem>.h5 for each. force redoes complete outputs too. */
struct extract_job {
    const char *model_path, *tokens_path, *out_dir;
    const char *const *sae_paths;
    int n_saes;
    bool force;
};
struct extract_summary {
    int n_written, n_skipped;
    int64_t n_tokens;
    double seconds;
};
int extract_run(const struct extract_settings *s, const struct extract_job *job,
                struct extract_summary *sum);

/* out_dir/<stem of sae_path>.h5 (malloc'd). */
char *extract_output_path(const char *out_dir, const char *sae_path);

#endif
