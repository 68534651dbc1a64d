/* kl.h: compare two runs of the model at the logits, chunk by chunk.
 *
 * e2e training and SAE evaluation both need, for every token position, the
 * original model's next-token distribution P (from lnf_orig) and the one with the
 * SAE spliced in, Q (from lnf_sae). A (B·T,V) logit matrix for GPT-2 is 3 GB at
 * B·T = 16k, so the logits are made KL_CHUNK_ROWS rows at a time with lm_unembed,
 * reduced to per-row numbers (KL, cross-entropies) and, when training, turned
 * straight into the gradient at lnf_sae through lm_unembed_backward:
 *
 *     KL_r      = Σ_v P_rv (log P_rv − log Q_rv)
 *     dKL_r/dz  = Q_r − P_r            (z = the SAE run's logits of row r)
 *
 * Softmaxes use a vectorised exp and fixed-order 8-lane sums; rows of a chunk
 * run in parallel (parallel.h) and are summed in row order, so the totals do not
 * depend on the number of threads.
 */
#ifndef AUTOINTERP_SAE_KL_H
#define AUTOINTERP_SAE_KL_H

#include <stdint.h>

#include "model/lm.h"

#define KL_CHUNK_ROWS 128

struct kl_totals {
    double kl_sum;      /* Σ_rows KL_r */
    int64_t n_rows;     /* rows compared */
    double ce_orig_sum; /* Σ −log P_r(target) over rows with a target */
    double ce_sae_sum;  /* Σ −log Q_r(target) */
    int64_t n_ce;       /* rows with a target */
};

struct kl_chunker {
    const struct lm *lm;
    int V;
    float *lo, *ls; /* (KL_CHUNK_ROWS,V) logits of the original and the SAE run */
    double row_kl[KL_CHUNK_ROWS], row_ce_o[KL_CHUNK_ROWS], row_ce_s[KL_CHUNK_ROWS];
};

int kl_chunker_init(struct kl_chunker *k, const struct lm *lm);
void kl_chunker_free(struct kl_chunker *k);

/* lnf_orig, lnf_sae (N,C): final-norm outputs of the two runs. Adds to t. When
 * targets is not NULL, targets[r] >= 0 is the next token of row r (−1: none) and
 * both cross-entropies are summed. When d_lnf is not NULL, d_lnf (N,C) +=
 * kl_scale · dKL_r/dlnf_sae for every row (the caller zeroes it). */
int kl_compare(struct kl_chunker *k, const float *lnf_orig, const float *lnf_sae, int N,
               const int32_t *targets, float kl_scale, float *d_lnf, struct kl_totals *t);

/* One row: KL(P‖Q) from logits lo, ls (V). When dz is not NULL, dz (V) = scale·(Q − P)
 * (dz may alias ls). ce_o / ce_s (may be NULL) get −log P(target), −log Q(target)
 * when target >= 0. Exposed for tests. */
double kl_row(const float *lo, const float *ls, int V, int target, float scale, float *dz,
              double *ce_o, double *ce_s);

#endif
