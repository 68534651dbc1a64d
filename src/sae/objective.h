/* objective.h: the three training objectives of Braun et al. 2024 for one
 * micro-batch: the loss terms and (optionally) their gradient into the SAE.
 *
 * With x = resid[L] (blocks.L.hook_resid_pre) of the original run, x̂ = SAE(x),
 * N tokens and d = d_model, and the sparsity term S = λ · mean_tokens ‖c‖₁ / d:
 *
 *   local   loss = mean((x̂ − x)²) over all N·d elements + S
 *           (the model runs only up to block L)
 *   e2e     loss = KL + S,  KL = mean over all N positions of
 *                  Σ_v P_orig(v) (log P_orig(v) − log P_sae(v))
 *   e2e_ds  loss = kl_coeff·KL + S + Σ_k (ds_coeff / n_points)·mean((a_k^sae − a_k^orig)²)
 *           k = resid_pre of every block AFTER the SAE's: resid[L+1 .. n_layer−1]
 *           (n_points = n_layer−1−L; resid[n_layer], the last block's output,
 *           is not a resid_pre and is not included; at the last layer the sum
 *           is empty).
 *
 * e2e pass: one forward of the original model over all blocks (its resid[L] is
 * the SAE input, its lnf the reference distribution), then blocks L.. again on
 * a second set of activations whose resid[L] is x̂ (saved for backward), the KL
 * in row chunks (kl.h) producing d lnf, lm_final_norm_backward, then
 * lm_blocks_backward(L → n_layer) with the downstream MSE gradients as d_extra,
 * which yields dLoss/dx̂ at resid[L]; then sae_backward. The model is frozen:
 * no parameter gradients are computed.
 */
#ifndef AUTOINTERP_SAE_OBJECTIVE_H
#define AUTOINTERP_SAE_OBJECTIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "model/lm.h"
#include "sae/kl.h"
#include "sae/sae.h"

enum sae_type { SAE_LOCAL, SAE_E2E, SAE_E2E_DS };

const char *sae_type_name(enum sae_type t); /* "local", "e2e", "e2e_ds" */
int sae_type_parse(const char *name, enum sae_type *t);

struct sae_setting {
    enum sae_type type;
    int layer;       /* hook: blocks.<layer>.hook_resid_pre */
    double lambda;   /* sparsity coefficient λ */
    double kl_coeff; /* weight of the KL (1 for e2e) */
    double ds_coeff; /* total weight of the downstream MSE terms (e2e_ds only) */
};

/* Loss terms of one batch (means over its tokens). */
struct sae_loss {
    double loss;     /* the objective of the setting */
    double mse;      /* mean((x̂ − x)²) at the hook, every setting */
    double sparsity; /* S */
    double kl;       /* mean KL per position (e2e settings; 0 for local) */
    double ds_mse;   /* mean over the downstream hooks of their MSE (e2e_ds; else 0) */
    double l0;       /* mean active features per token */
    int64_t n_tokens;
};

/* Model-free local objective on given inputs: x (N,d_in) -> x̂ (N,d_in) (xhat is
 * the caller's buffer). With grads, adds grad_scale·∇loss. */
int sae_local_loss(const struct sae *s, struct sae_work *w, struct sae_codes *codes,
                   const float *x, int N, double lambda, float *xhat, float grad_scale,
                   const struct sae_params *grads, struct sae_loss *loss);

/* Buffers for one setting at micro-batch shape (B,T). */
struct sae_objective {
    struct sae_setting set;
    const struct lm *lm;
    int B, T, n_points;
    struct lm_acts *orig;    /* own original run (own_orig); no saved activations */
    struct lm_acts *spliced; /* run with x̂ at resid[L], saved for backward (e2e) */
    float *xhat;             /* (N,C) local only (e2e writes x̂ into spliced->resid[L]) */
    float *d_resid, *d_lnf;  /* (N,C) e2e */
    float **d_extra;         /* n_layer+1 entries, non-NULL for the downstream hooks */
    float *d_extra_mem;
    struct kl_chunker kl;
    struct sae_codes *codes; /* own_codes, or a lender's */
    struct sae_work *work;   /* own_work, or a lender's */
    struct sae_codes own_codes;
    struct sae_work own_work;
    int d_sae;
    bool borrows_buffers, borrows_codes, borrows_work;
};

/* own_orig: allocate the original run's activations here (for sae_objective_step);
 * false when the caller shares one original run between several SAEs.
 * lender (may be NULL): an objective of the same batch shape whose scratch this one
 * may use, because the two never step at the same time (SAEs trained in lockstep
 * take turns): the codes always, the SAE work buffers when d_sae agrees, and the
 * model activations and gradient buffers when type and layer agree. The lender
 * must outlive the borrower. */
int sae_objective_init(struct sae_objective *o, const struct sae_setting *set,
                       const struct lm *lm, const struct sae *s, int B, int T, bool own_orig,
                       const struct sae_objective *lender);
void sae_objective_free(struct sae_objective *o);

/* tokens (B,T). Computes the loss terms; when grads is not NULL adds
 * grad_scale·∇loss to them (grad_scale = 1/accumulation steps for a mean). The
 * SAE's inv_norm must be current (sae_refresh_norms). Needs own_orig. */
int sae_objective_step(struct sae_objective *o, const struct sae *s, const int32_t *tokens,
                       float grad_scale, const struct sae_params *grads, struct sae_loss *loss);

/* The same step in two parts, so that SAEs of the same layer can share the
 * original model's run of a batch: sae_orig_forward fills orig (no saved
 * activations) with resid[0..layer], and with full also every later block and
 * the final norm (what e2e settings need); sae_objective_step_given then does
 * one SAE's part, reading orig only. The results are identical to
 * sae_objective_step's. */
int sae_orig_forward(const struct lm *lm, struct lm_acts *orig, const int32_t *tokens,
                     int layer, bool full);
int sae_objective_step_given(struct sae_objective *o, const struct sae *s,
                             const struct lm_acts *orig, float grad_scale,
                             const struct sae_params *grads, struct sae_loss *loss);

#endif
