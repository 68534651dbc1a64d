/* metrics.h: how good a trained SAE is, measured on held-out tokens.
 *
 * The evaluation set is read as consecutive windows of `context` tokens (window
 * w = tokens [w·context, (w+1)·context), or BOS + context−1 tokens when
 * prepend_bos and the tokenizer has one), in order, until n_tokens tokens have
 * been scored (0 = every whole window). For each batch the original model runs
 * once; its resid[L] goes through the SAE and the model runs again from L with
 * x̂ spliced in. Then, over all evaluated tokens (N of them, d = d_model):
 *
 *   l0                 mean number of active features per token
 *   alive / dead       features active on at least one token / on none
 *   feature_density[j] fraction of tokens on which feature j is active
 *   density_hist       alive features per log10(density) bin, edges
 *                      SAE_DENSITY_LO, LO + SAE_DENSITY_STEP, ..., 0
 *   ce_orig, ce_sae    mean next-token cross-entropy (positions t < T−1) of the
 *                      original model and with the SAE spliced in; ce_increase
 *                      = ce_sae − ce_orig
 *   kl                 mean over all positions of KL(P_orig ‖ P_sae)
 *   mse                mean((x̂ − x)²) over N·d elements at the hook
 *   explained_variance 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² (x̄ the mean over the N tokens)
 *   mse_downstream[k]  mean((a^sae − a^orig)²) at resid[L+1+k], k = 0..n_layer−L−1
 *                      (every later block's resid_pre and the last resid_post)
 */
#ifndef AUTOINTERP_SAE_METRICS_H
#define AUTOINTERP_SAE_METRICS_H

#include <cjson/cJSON.h>
#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/lm.h"
#include "sae/sae.h"
#include "tok/dataset.h"

#define SAE_DENSITY_LO (-10.0)
#define SAE_DENSITY_STEP 0.5
#define SAE_DENSITY_BINS 20

struct sae_eval_opts {
    int layer;
    int context, batch;
    int64_t n_tokens; /* 0 = every whole window */
    bool prepend_bos;
};

struct sae_metrics {
    int64_t n_tokens, d_sae;
    double l0;
    int64_t alive, dead;
    double alive_fraction;
    double ce_orig, ce_sae, ce_increase, kl;
    double mse, explained_variance;
    int n_downstream;
    int64_t *downstream_layers; /* resid indices */
    double *mse_downstream;
    double *feature_density;    /* (d_sae) */
    int64_t hist[SAE_DENSITY_BINS];
};
void sae_metrics_free(struct sae_metrics *m);

int sae_evaluate(const struct sae *s, const struct lm *lm, const struct token_dataset *data,
                 const struct sae_eval_opts *o, struct sae_metrics *m);

/* The /metrics group of an SAE file (sae_io.h), and back. */
int sae_metrics_write(hid_t file, const struct sae_metrics *m);
int sae_metrics_read(hid_t file, struct sae_metrics *m);
/* Put m into the SAE file at path as its /metrics, replacing any: the file is
 * copied, the copy changed, then renamed over the original, so a killed process
 * leaves the old file whole and every other group and attribute is kept. */
int sae_metrics_save(const char *path, const struct sae_metrics *m);
/* Scalars, downstream MSEs and the histogram as a JSON object (no per-feature
 * densities). */
cJSON *sae_metrics_json(const struct sae_metrics *m);

#endif
