/* lm.h: the subject language model, as the SAE stages see it.
 *
 * Two architectures sit behind one interface: GPT-2 (Hugging Face layout: a
 * directory with config.json + model.safetensors; gpt2.c) and Llama (llama2.c's
 * .bin format; llama.c). lm.c loads either and dispatches on lm->arch.
 *
 * The forward pass is exposed in pieces rather than as one call with callbacks,
 * so that a caller can stop, read or replace the residual stream between any two
 * blocks and so that the logits never need to exist for a whole batch at once:
 *
 *     lm_embed(lm, acts, tokens)              resid[0] = embeddings      (B,T,C)
 *     lm_blocks_forward(lm, acts, 0, L)       resid[1..L]   (resid[l] is blocks.l.hook_resid_pre)
 *     ... read or overwrite acts->resid[L] (splice an SAE) ...
 *     lm_blocks_forward(lm, acts, L, n_layer) resid[L+1..n_layer] (resid[n_layer] = resid_post of last block)
 *     lm_final_norm(lm, acts)                 lnf = final norm of resid[n_layer]
 *     lm_unembed(lm, acts->lnf + r0*C, n, logits)   logits for n rows, chunk by chunk
 *
 * Backward mirrors it, also in pieces, so e2e SAE training can take the gradient
 * of a KL on the logits (chunked) plus MSE terms at later hooks with respect to
 * resid[L] without computing weight gradients (param_grads == NULL), and lm-train
 * can take gradients of every parameter (param_grads != NULL, GPT-2 only):
 *
 *     lm_unembed_backward(lm, x, dlogits, n, dx, grads)         dx (n,C) += dlogits·W_U
 *     lm_final_norm_backward(lm, acts, d_lnf, d_resid)          d_resid (B,T,C) = grad at resid[n_layer]
 *     lm_blocks_backward(lm, acts, from, to, d_resid, d_extra, grads)
 *         in: d_resid = grad at resid[to]; out: grad at resid[from]. d_extra (may be
 *         NULL) has n_layer+1 entries; a non-NULL d_extra[l] (B,T,C) is added to the
 *         gradient as it passes resid[l], for from < l < to (MSE terms at hooks).
 *     lm_embed_backward(lm, acts, d_resid0, grads)              embedding grads (lm-train)
 *
 * Backward needs the activations saved by a forward over the same acts with
 * save_for_backward set at lm_acts_new. All matrix products go through OpenBLAS.
 *
 * param_grads (GPT-2 only) is a float buffer laid out exactly like the model's
 * parameter buffer (src/model/gpt2.h: gpt2_n_params floats); every backward
 * function ADDS its parameter gradients into it, so zero it before a step.
 * ln_f's own parameters get theirs from lm_final_norm_backward_grads.
 */
#ifndef AUTOINTERP_MODEL_LM_H
#define AUTOINTERP_MODEL_LM_H

#include <stdbool.h>
#include <stdint.h>

enum lm_arch { LM_GPT2, LM_LLAMA };

struct lm_config {
    enum lm_arch arch;
    int n_layer;
    int d_model;    /* C */
    int n_head;
    int n_kv_head;  /* == n_head for GPT-2 */
    int d_ff;       /* 4C for GPT-2, hidden_dim for Llama */
    int vocab_size; /* V */
    int max_seq;    /* n_positions / seq_len */
    float norm_eps; /* LayerNorm / RMSNorm epsilon */
    bool shared_classifier; /* unembedding tied to the token embedding */
};

struct lm {
    struct lm_config cfg;
    char *path;
    void *impl; /* struct gpt2 * or struct llama * */
};

/* Activations for one batch of B sequences of T tokens. resid has n_layer+1
 * buffers of B*T*C floats; lnf holds B*T*C floats once lm_final_norm has run.
 * Everything a backward pass needs (when save_for_backward) lives in priv. */
struct lm_acts {
    int B, T;
    bool save_for_backward;
    enum lm_arch arch;     /* set by lm_acts_new; tells lm_acts_free whose priv it is */
    const int32_t *tokens; /* the caller's (B,T) ids, kept for embed backward */
    float **resid;
    float *lnf;
    void *priv;
};

/* Load from a path: a directory (or config.json inside one) holding config.json +
 * model.safetensors is GPT-2; a file ending in .bin is llama2.c. Errors name the
 * file and the tensor or key. */
int lm_load(const char *path, struct lm **out);
void lm_free(struct lm *lm);

struct lm_acts *lm_acts_new(const struct lm *lm, int B, int T, bool save_for_backward);
void lm_acts_free(struct lm_acts *acts);

/* Token ids must be in [0, vocab) and T <= max_seq: otherwise an error. */
int lm_embed(const struct lm *lm, struct lm_acts *acts, const int32_t *tokens);
int lm_blocks_forward(const struct lm *lm, struct lm_acts *acts, int from, int to);
int lm_final_norm(const struct lm *lm, struct lm_acts *acts);
/* logits (n,V) = x (n,C) · W_Uᵀ */
int lm_unembed(const struct lm *lm, const float *x, int n, float *logits);

int lm_unembed_backward(const struct lm *lm, const float *x, const float *dlogits, int n,
                        float *dx, void *param_grads);
int lm_final_norm_backward(const struct lm *lm, struct lm_acts *acts, const float *d_lnf,
                           float *d_resid);
/* As lm_final_norm_backward, also adding ln_f's weight and bias gradients into
 * param_grads (NULL: none; non-NULL is GPT-2 only). */
int lm_final_norm_backward_grads(const struct lm *lm, struct lm_acts *acts, const float *d_lnf,
                                 float *d_resid, void *param_grads);
int lm_blocks_backward(const struct lm *lm, struct lm_acts *acts, int from, int to,
                       float *d_resid, float *const *d_extra, void *param_grads);
int lm_embed_backward(const struct lm *lm, struct lm_acts *acts, const float *d_resid0,
                      void *param_grads);

/* Convenience: mean next-token cross-entropy (nats) of a (B,T) batch, computing
 * logits in chunks of rows; positions t = 0..T-2 predict tokens t+1. */
int lm_batch_ce(const struct lm *lm, struct lm_acts *acts, const int32_t *tokens, double *ce_sum,
                int64_t *n_predicted);

/* log Σ_i exp(x[i]) over n values: vectorised float exponentials (relative error
 * about 1e-7 each), summed per block in double. For CE and KL over a vocabulary. */
double lm_logsumexp(const float *x, int n);
/* In place: x = scale · softmax(x) (one exponential per element); returns the
 * log-sum-exp of the original x. For CE and KL gradients over a vocabulary. */
double lm_softmax(float *x, int n, float scale);

/* Hook names: "blocks.L.hook_resid_pre" (resid index L) or "blocks.L.hook_resid_post"
 * (index L+1; blocks.{n_layer-1}.hook_resid_post is the last), 0 <= L < n_layer;
 * returns the resid index or -1 (error set). */
int lm_hook_index(const struct lm *lm, const char *hook_name);

#endif
