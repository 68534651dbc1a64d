/* saelens.h: import and export SAEs in SAELens's on-disk format.
 *
 * A SAELens SAE is a folder with cfg.json and sae_weights.safetensors holding
 * W_enc [d_in,d_sae], b_enc [d_sae], W_dec [d_sae,d_in], b_dec [d_in]; the
 * "standard" architecture computes c = relu((x − b_dec·apply) W_enc + b_enc),
 * x̂ = c W_dec + b_dec.
 *
 * Export writes our SAE with apply_b_dec_to_input false and W_dec = our
 * column-normalised decoder D (so the file computes exactly our function).
 *
 * Import accepts architecture "standard", activation "relu", normalisation
 * "none" and float32/16/bf16 weights, and maps them onto our parameterisation:
 *   apply_b_dec_to_input true: b_enc' = b_enc − W_encᵀ b_dec (computed in double);
 *   decoder rows whose norm n_j differs from 1 by more than 1e-5 are made unit and
 *   the norm is moved into the encoder (W_enc row j and b_enc[j] times n_j, which
 *   ReLU allows since relu(n z) = n relu(z) for n > 0); rows within 1e-5 of unit
 *   norm are kept as they are, so export → import reproduces every tensor
 *   bit-exactly.
 * SAELens's GPT-2 SAEs were trained on TransformerLens activations (centred
 * writing weights, folded LayerNorm), which differ from the raw Hugging Face
 * activations this program reads by a per-token mean shift; importing an SAE of
 * a GPT-2 model logs that warning.
 */
#ifndef AUTOINTERP_SAE_SAELENS_H
#define AUTOINTERP_SAE_SAELENS_H

#include <stdbool.h>
#include <stdint.h>

#include "sae/sae.h"

struct saelens_info {
    char *model_name, *hook_name;
    int layer;        /* resid index: L for blocks.L.hook_resid_pre, L+1 for ..._resid_post */
    int context_size; /* 0 when absent */
    bool prepend_bos;
    bool folded_b_dec; /* apply_b_dec_to_input was true and was folded into b_enc */
    int rescaled;      /* decoder rows made unit (norm moved into the encoder) */
};
void saelens_info_free(struct saelens_info *i);

int saelens_import(const char *dir, struct sae *s, struct saelens_info *info);

struct saelens_export_opts {
    const char *model_name;
    int layer; /* hook blocks.<layer>.hook_resid_pre ... */
    const char *hook_name; /* ... unless this "blocks.L.hook_resid_pre|post" is given */
    int context_size;
    bool prepend_bos;
};
/* Writes dir/cfg.json and dir/sae_weights.safetensors (dir created if needed). */
int saelens_export(const struct sae *s, const char *dir, const struct saelens_export_opts *o);

#endif
