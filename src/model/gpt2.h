/* gpt2.h: GPT-2 behind lm.h (private to src/model and its tests).
 *
 * lm.c dispatches here when lm->cfg.arch == LM_GPT2; every gpt2_* function named
 * like an lm_* function has that function's contract. What this header adds is
 * the parameter layout, which lm-train (lmtrain.c) and the reference tests need:
 *
 * All parameters live in ONE float buffer (struct gpt2.memory), tensor after
 * tensor in the order of struct gpt2_params, per-layer tensors stacked over the
 * layers (llm.c style). Linear weights keep Hugging Face's Conv1D layout
 * (in, out), so a layer is out (N,OC) = inp (N,IC) · W (IC,OC) + b with no
 * transposes. Parameter gradients (the `param_grads` argument of the lm_*
 * backward functions) are a float buffer of exactly the same layout and size
 * (gpt2_n_params floats); backward functions ADD into it, so the caller zeroes it
 * before a step and can accumulate over micro-batches.
 */
#ifndef AUTOINTERP_MODEL_GPT2_H
#define AUTOINTERP_MODEL_GPT2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model/lm.h"

#define GPT2_N_TENSORS 16

/* Vector kernels shared by the model module (gpt2.c, lm.c, lmtrain.c). GCC
 * vector extensions rather than auto-vectorisation: gcc does not vectorise a
 * clamped exp at -O2, and explicit 8-lane code also fixes the order of every
 * reduction, so results do not depend on compiler flags. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8f v8_load(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void v8_store(float *p, v8f v) { memcpy(p, &v, sizeof v); }
static inline v8f v8_max(v8f a, v8f b) {
    v8i gt = a > b;
    return (v8f)(((v8i)a & gt) | ((v8i)b & ~gt));
}
static inline float v8_hsum(v8f v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* exp(x) to about 1 ulp for x <= 88 (x < -87 gives exp(-87)): x = n ln2 + r,
 * exp(r) by Cephes' degree-6 polynomial, 2^n through the exponent bits. */
static inline v8f model_expf8(v8f x) {
    x = v8_max(x, x * 0.0f - 87.0f);
    v8f t = x * 1.44269504088896341f + 12582912.0f; /* round to nearest integer */
    v8f n = t - 12582912.0f;
    v8f r = x - n * 0.693359375f + n * 2.12194440e-4f;
    v8f p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    v8i e = (__builtin_convertvector(n, v8i) + 127) << 23;
    return p * (v8f)e;
}

static inline float model_expf(float x) {
    v8f v = {x};
    return model_expf8(v)[0];
}

/* Named pointers into the parameter (or gradient) buffer. L = n_layer, C = d_model,
 * V = vocab, P = max_seq (n_positions). */
struct gpt2_params {
    float *wte;           /* (V,C) token embedding, also the unembedding (tied) */
    float *wpe;           /* (P,C) learned positions */
    float *ln1w, *ln1b;   /* (L,C) */
    float *qkvw;          /* (L,C,3C) c_attn, columns q | k | v */
    float *qkvb;          /* (L,3C) */
    float *attprojw;      /* (L,C,C) attn.c_proj */
    float *attprojb;      /* (L,C) */
    float *ln2w, *ln2b;   /* (L,C) */
    float *fcw;           /* (L,C,4C) mlp.c_fc */
    float *fcb;           /* (L,4C) */
    float *fcprojw;       /* (L,4C,C) mlp.c_proj */
    float *fcprojb;       /* (L,C) */
    float *lnfw, *lnfb;   /* (C) ln_f */
};

struct gpt2 {
    size_t sizes[GPT2_N_TENSORS]; /* floats per tensor, in struct gpt2_params order */
    size_t n_params;              /* total floats */
    float *memory;                /* the one parameter buffer (owned) */
    struct gpt2_params p;
    /* Training only (lm-train; 0 everywhere else): with activations saved for
     * backward, each block's attention and MLP outputs are dropped with this
     * probability before joining the residual stream. The masks are a hash of
     * (dropout_seed, layer, site, element), so set dropout_seed per step and keep
     * it until that step's backward has run. */
    float dropout;
    uint64_t dropout_seed;
};

/* Sizes of the 16 tensors for a config; returns the total. */
size_t gpt2_param_sizes(const struct lm_config *cfg, size_t sizes[GPT2_N_TENSORS]);
/* Point the members of p into mem, laid out as above. */
void gpt2_point_params(const struct lm_config *cfg, float *mem, struct gpt2_params *p);
/* Short name of tensor i ("wte", "qkvw", ...) and whether it is a matrix (weight
 * decay applies to matrices only: embeddings and linear weights). */
const char *gpt2_tensor_label(int i);
bool gpt2_tensor_is_matrix(int i);

static inline struct gpt2 *gpt2_of(const struct lm *lm) { return (struct gpt2 *)lm->impl; }
static inline size_t gpt2_n_params(const struct lm *lm) { return gpt2_of(lm)->n_params; }

/* A GPT-2 with the given config and all parameters zero (lm-train initialises
 * them). cfg->arch must be LM_GPT2; checks the dimensions. */
int gpt2_new(const struct lm_config *cfg, struct lm *lm);
/* Fills lm->cfg and lm->impl from a Hugging Face directory (config.json +
 * model.safetensors). Does not touch lm->path. */
int gpt2_load(const char *dir, struct lm *lm);
void gpt2_free_impl(struct lm *lm);
/* Write config.json + model.safetensors into dir (created if needed), each
 * atomically, in the layout gpt2_load (and Hugging Face) reads. eot_id < 0 omits
 * bos/eos_token_id from the config. */
int gpt2_save(const struct lm *lm, const char *dir, int64_t eot_id);

int gpt2_acts_init(const struct lm *lm, struct lm_acts *acts);
void gpt2_acts_release(struct lm_acts *acts);

int gpt2_embed(const struct lm *lm, struct lm_acts *acts, const int32_t *tokens);
int gpt2_blocks_forward(const struct lm *lm, struct lm_acts *acts, int from, int to);
int gpt2_final_norm(const struct lm *lm, struct lm_acts *acts);
int gpt2_unembed(const struct lm *lm, const float *x, int n, float *logits);

int gpt2_unembed_backward(const struct lm *lm, const float *x, const float *dlogits, int n,
                          float *dx, void *param_grads);
/* As lm_final_norm_backward_grads: param_grads may be NULL. */
int gpt2_final_norm_backward(const struct lm *lm, struct lm_acts *acts, const float *d_lnf,
                             float *d_resid, void *param_grads);
int gpt2_blocks_backward(const struct lm *lm, struct lm_acts *acts, int from, int to,
                         float *d_resid, float *const *d_extra, void *param_grads);
int gpt2_embed_backward(const struct lm *lm, struct lm_acts *acts, const float *d_resid0,
                        void *param_grads);

#endif
