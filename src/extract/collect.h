/* collect.h: the per-dictionary example collector, fed feature activations.
 *
 * This is the part of extraction that knows about features, windows, heaps and
 * sampling, and nothing about models or SAE files: it is handed, batch after
 * batch, the pre-activations W_enc·x of the dictionary's features at every
 * position of B whole sequences, in blocks of features, and at the end it builds
 * the contents of an examples file (src/extract/examples.h). extract.c drives it
 * from a language model and an SAE; the tests drive it with synthetic
 * activations and compare against a brute-force computation.
 *
 * Positions. The pass covers n_seq sequences of T positions; the first r0
 * positions of each (a prepended BOS) are not dataset tokens and are ignored:
 * they count neither for density nor for windows. Sequence s, position p >= r0
 * is dataset position s*(T-r0) + p-r0. Windows lie inside one sequence's dataset
 * tokens, so two windows overlap only if they share tokens of one sequence.
 *
 * See collect.c for the definitions of top, random and quantile windows and for
 * why one pass suffices.
 */
#ifndef AUTOINTERP_EXTRACT_COLLECT_H
#define AUTOINTERP_EXTRACT_COLLECT_H

#include <stddef.h>
#include <stdint.h>

#include "extract/examples.h"

struct collect_params {
    int T;          /* positions per sequence, as the model sees them */
    int r0;         /* leading positions that are not dataset tokens (1 with a BOS) */
    int64_t n_seq;  /* sequences in the pass (random windows are drawn over them) */
    int window;     /* W tokens per window, W <= T - r0 */
    int offset;     /* position of the anchor token inside a window, < W */
    int top_k, n_random, n_quantile, quantile_bands;
    int n_explain, n_score_top; /* n_explain + n_score_top <= top_k */
    int n_features;             /* alive features to sample (ignored with a list) */
    const int32_t *features;    /* explicit feature ids, or NULL to sample */
    int n_explicit;
    /* NULL, or d_sae flags saying which features are alive, known before the pass
     * (an SAE's evaluation metrics): the first n_features + a margin of them in
     * the same π order are tracked from the start, only they need be passed
     * (collector_rows), and the sample is the first n_features of them that fire
     * in the pass. Density and maximum are measured for the tracked features
     * only; the others get NaN. Ignored with a list. */
    const uint8_t *known_alive;
    uint64_t seed;
};

struct collect_stats {
    int64_t n_tokens;          /* dataset tokens scanned so far */
    int n_alive;               /* features nonzero at least once so far */
    int n_tracked, peak_tracked;
    size_t tracked_bytes, peak_tracked_bytes; /* memory of the per-feature state */
};

struct collector;

int collector_new(const struct collect_params *p, int d_sae, struct collector **out);
void collector_free(struct collector *c);

/* Start a batch of sequences [seq0, seq0 + B); sequences must come in order,
 * each once. Every feature must then be passed exactly once by collector_block. */
int collector_batch(struct collector *c, int64_t seq0, int B);

/* pre is (nf, B*T): row i holds W_enc[f0+i]·x at every position of the batch,
 * sequence after sequence. bias (d_sae entries, or NULL for zero) is added and
 * ReLU applied here; rows are overwritten. Fails only when out of memory. */
int collector_block(struct collector *c, int f0, int nf, float *pre, const float *bias);

/* The same for a list of features: row i of pre holds feature features[i]. With
 * known_alive, only the sampled features (collector_sample) are needed. */
int collector_rows(struct collector *c, const int32_t *features, int n, float *pre,
                   const float *bias);
/* The features to pass when that is known before the pass (an explicit list, or
 * the candidates of known_alive), in π/list order; NULL otherwise. */
const int32_t *collector_sample(const struct collector *c, int *n);
/* Reads n dataset tokens from position pos (window tokens are looked up at the end). */
typedef int (*collect_read_tokens)(void *ctx, int64_t pos, int n, int32_t *out);

/* After the last batch: fill ex's sampling, statistics and window arrays (the
 * caller fills the names and paths). Warns through log.h when fewer features are
 * alive than requested or a feature has fewer windows than asked for. */
int collector_finish(struct collector *c, collect_read_tokens read_tokens, void *ctx,
                     struct examples *ex);

void collector_get_stats(const struct collector *c, struct collect_stats *st);

/* Seeds derived from the master seed for each use (splitmix64 of seed and tag). */
uint64_t collect_mix_seed(uint64_t seed, uint64_t tag, uint64_t index);

#endif
