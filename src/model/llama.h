/* llama.h: the Llama architecture behind lm.h, loaded from llama2.c checkpoints.
 *
 * lm.c dispatches here when lm->cfg.arch == LM_LLAMA; every function below has
 * the contract of the lm_* function of the same name in lm.h. The file format is
 * the legacy "version 0" of llama2.c's run.c: a header of 7 int32 (dim,
 * hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
 * vocab_size means a separate classifier) followed by float32 weights.
 *
 * Maths: RMSNorm (eps 1e-5), RoPE (theta 10000, adjacent pairs (2i, 2i+1) within
 * each head), grouped-query causal attention scaled by 1/sqrt(head_size), SwiGLU
 * FFN w2(silu(w1 x) * w3 x), final RMSNorm, classifier shared with the token
 * embedding or separate. Backward computes input gradients only: Llama is a
 * frozen subject model here, so param_grads must be NULL.
 */
#ifndef AUTOINTERP_MODEL_LLAMA_H
#define AUTOINTERP_MODEL_LLAMA_H

#include <stdint.h>

#include "model/lm.h"

/* Fills lm->cfg (arch LM_LLAMA) and lm->impl from a llama2.c .bin file. Does not
 * touch lm->path. Errors name the file and the field or tensor. */
int llama_load(const char *path, struct lm *lm);
void llama_free_impl(struct lm *lm);

/* Allocates acts->resid, acts->lnf and acts->priv for acts->B, acts->T and
 * acts->save_for_backward (set by the caller); llama_acts_release frees them. */
int llama_acts_init(const struct lm *lm, struct lm_acts *acts);
void llama_acts_release(struct lm_acts *acts);

int llama_embed(const struct lm *lm, struct lm_acts *acts, const int32_t *tokens);
int llama_blocks_forward(const struct lm *lm, struct lm_acts *acts, int from, int to);
int llama_final_norm(const struct lm *lm, struct lm_acts *acts);
int llama_unembed(const struct lm *lm, const float *x, int n, float *logits);

int llama_unembed_backward(const struct lm *lm, const float *x, const float *dlogits, int n,
                           float *dx, void *param_grads);
int llama_final_norm_backward(const struct lm *lm, struct lm_acts *acts, const float *d_lnf,
                              float *d_resid);
int llama_blocks_backward(const struct lm *lm, struct lm_acts *acts, int from, int to,
                          float *d_resid, float *const *d_extra, void *param_grads);
int llama_embed_backward(const struct lm *lm, struct lm_acts *acts, const float *d_resid0,
                         void *param_grads);

#endif
