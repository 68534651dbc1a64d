/* sae_io.h: SAE files (HDF5), the contract between training and every later stage.
 *
 * One file per trained SAE, results/<experiment>/saes/<name>.h5, written
 * atomically (temporary name, then rename) once training and evaluation are done:
 *
 *   /weights/W_enc             float32 [d_sae, d_in]   encoder (PyTorch Linear layout)
 *   /weights/b_enc             float32 [d_sae]
 *   /weights/W_dec             float32 [d_in, d_sae]   decoder as trained (columns not unit)
 *   /weights/W_dec_normalised  float32 [d_in, d_sae]   D: every column unit norm (what is used)
 *   /weights/b_dec             float32 [d_in]
 *       so that c = relu(W_enc x + b_enc), x̂ = D c + b_dec.
 *   /curve/<column>            1-D datasets, one row per logged step: step, tokens,
 *                              loss, mse, sparsity, kl, ds_mse, l0, lr, grad_norm
 *   /metrics                   group; attributes l0, alive, alive_fraction, dead,
 *                              ce_orig, ce_sae, ce_increase, kl, explained_variance,
 *                              mse, n_tokens (evaluated), d_sae; datasets:
 *     feature_density [d_sae]  float64 fraction of eval tokens on which each feature fired
 *     mse_downstream [n]       float64 MSE at resid[layer+1 .. n_layer] (spliced vs original)
 *     downstream_layers [n]    int64 the resid indices of mse_downstream
 *     density_hist [nbins]     int64 features per log10-density bin; dead features
 *                              are counted in the attribute `dead`, not in a bin
 *     density_bin_edges [nbins+1] float64 log10(density) bin edges
 *   attributes on /:
 *     format = "autointerp-sae", format_version = 1, name, type ("local"|"e2e"|
 *     "e2e_ds"), layer, hook_name ("blocks.L.hook_resid_pre"), lambda, kl_coeff,
 *     ds_coeff, ratio, d_in, d_sae, model_path, seed, train_tokens, steps,
 *     config (the resolved experiment config, JSON), spec_hash (SHA-256 of the
 *     training spec: what decides the weights; equal hash = same SAE),
 *     final_loss (the objective at the last step; written by the train stage)
 *
 * Readers need only /weights and the attributes; sae_file_read loads both.
 */
#ifndef AUTOINTERP_SAE_SAE_IO_H
#define AUTOINTERP_SAE_SAE_IO_H

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "sae/sae.h"

#define SAE_FILE_FORMAT "autointerp-sae"
#define SAE_FILE_VERSION 1

/* Write W_enc, b_enc, W_dec, W_dec_normalised, b_dec into group loc (layout above;
 * W_dec transposed from the in-memory feature-major layout). */
int sae_weights_write(hid_t loc, const struct sae *s);
/* Read them from group loc into a new SAE (sizes from the shapes, checked for
 * consistency; W_dec_normalised is optional and ignored). Refreshes the norms. */
int sae_weights_read(hid_t loc, struct sae *s);

/* Descriptive attributes of an SAE file. */
struct sae_meta {
    char *name, *type, *hook_name, *model_path, *config, *spec_hash;
    int64_t layer, ratio, d_in, d_sae, seed, train_tokens, steps;
    double lambda, kl_coeff, ds_coeff;
};
void sae_meta_free(struct sae_meta *m);

/* Write an SAE file atomically: attributes (format, format_version and meta),
 * /weights, then extra(file, ctx) when not NULL (the trainer adds /curve and
 * /metrics there), then rename into place. */
int sae_file_write(const char *path, const struct sae *s, const struct sae_meta *meta,
                   int (*extra)(hid_t file, void *ctx), void *ctx);

/* Open an SAE file: checks format and version, loads weights and attributes
 * (meta may be NULL). Errors name the path. */
int sae_file_read(const char *path, struct sae *s, struct sae_meta *meta);

/* The settings an SAE was trained with, from its stored config (meta->config):
 * each output is set only when the config has the key (data.context,
 * data.prepend_bos, sae.eval_tokens); NULL outputs are skipped. */
void sae_meta_data_settings(const struct sae_meta *meta, int *context, bool *prepend_bos,
                            long long *eval_tokens);

#endif
