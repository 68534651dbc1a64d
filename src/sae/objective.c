/* objective.c: local, e2e and e2e+downstream losses and gradients (objective.h).
 *
 * Every gradient is of a mean, so each term's scale is 1/(number of elements it
 * averages) times the caller's grad_scale; the sparsity term's gradient is the
 * constant λ/(N·d) for every active code (c > 0 ⇒ d‖c‖₁/dc = 1).
 */
#include "sae/objective.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/log.h"

static const char *const type_names[] = {"local", "e2e", "e2e_ds"};

const char *sae_type_name(enum sae_type t) {
    return (unsigned)t < 3 ? type_names[t] : "?";
}

int sae_type_parse(const char *name, enum sae_type *t) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, type_names[i]) == 0) {
            *t = (enum sae_type)i;
            return 0;
        }
    return err_set("SAE type must be local, e2e or e2e_ds, got '%s'", name);
}

// Σ (a − b)² over n elements; when d is not NULL, d = scale·2(a − b)
static double sq_diff(const float *a, const float *b, size_t n, float scale, float *d) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        float e = a[i] - b[i];
        s += (double)e * e;
        if (d) d[i] = 2.0f * scale * e;
    }
    return s;
}

static void sparsity_terms(const struct sae_codes *codes, int d_in, double lambda,
                           struct sae_loss *loss) {
    int N = codes->n_rows;
    loss->sparsity = lambda * sae_codes_l1(codes) / ((double)N * d_in);
    loss->l0 = (double)codes->nnz / N;
    loss->n_tokens = N;
}

int sae_local_loss(const struct sae *s, struct sae_work *w, struct sae_codes *codes,
                   const float *x, int N, double lambda, float *xhat, float grad_scale,
                   const struct sae_params *grads, struct sae_loss *loss) {
    memset(loss, 0, sizeof *loss);
    if (sae_encode(s, w, x, N, codes) < 0 || sae_decode(s, w, codes, xhat) < 0) return -1;
    size_t n = (size_t)N * s->d_in;
    // mean over all elements; the gradient overwrites xhat once it is not needed
    float scale = grad_scale / (float)n;
    loss->mse = sq_diff(xhat, x, n, scale, grads ? xhat : NULL) / (double)n;
    sparsity_terms(codes, s->d_in, lambda, loss);
    loss->loss = loss->mse + loss->sparsity;
    if (!grads) return 0;
    float l1 = (float)(grad_scale * lambda / ((double)N * s->d_in));
    return sae_backward(s, w, x, codes, xhat, l1, grads);
}

/* ---------------------------------------------------------------------------
 * Buffers.
 */
void sae_objective_free(struct sae_objective *o) {
    lm_acts_free(o->orig);
    if (!o->borrows_buffers) {
        lm_acts_free(o->spliced);
        free(o->xhat);
        free(o->d_resid);
        free(o->d_lnf);
        free(o->d_extra);
        free(o->d_extra_mem);
        kl_chunker_free(&o->kl);
    }
    if (!o->borrows_codes && o->codes) sae_codes_free(o->codes);
    if (!o->borrows_work && o->work) sae_work_free(o->work);
    memset(o, 0, sizeof *o);
}

/* Borrow from lender what only lives during one step (see objective.h). */
static void borrow(struct sae_objective *o, const struct sae_objective *lender,
                   const struct sae *s) {
    o->codes = lender->codes;
    o->borrows_codes = true;
    if (lender->work->chunk && lender->d_sae == s->d_sae) {
        o->work = lender->work;
        o->borrows_work = true;
    }
    if (lender->set.type == o->set.type && lender->set.layer == o->set.layer) {
        o->spliced = lender->spliced;
        o->xhat = lender->xhat;
        o->d_resid = lender->d_resid;
        o->d_lnf = lender->d_lnf;
        o->d_extra = lender->d_extra;
        o->d_extra_mem = lender->d_extra_mem;
        o->kl = lender->kl;
        o->n_points = lender->n_points;
        o->borrows_buffers = true;
    }
}

static int alloc_e2e(struct sae_objective *o, const struct lm *lm, size_t NC) {
    int L = o->set.layer, nl = lm->cfg.n_layer;
    o->spliced = lm_acts_new(lm, o->B, o->T, true);
    o->d_resid = xmalloc(NC * sizeof(float));
    o->d_lnf = xmalloc(NC * sizeof(float));
    o->d_extra = xcalloc((size_t)nl + 1, sizeof *o->d_extra);
    if (!o->spliced || !o->d_resid || !o->d_lnf || !o->d_extra || kl_chunker_init(&o->kl, lm) < 0)
        return -1;
    if (o->set.type != SAE_E2E_DS) return 0;
    o->n_points = nl - 1 - L;
    if (o->n_points <= 0) {
        log_warn("e2e_ds at layer %d of %d: no block follows, the downstream term is empty", L,
                 nl);
        o->n_points = 0;
        return 0;
    }
    o->d_extra_mem = xmalloc((size_t)o->n_points * NC * sizeof(float));
    if (!o->d_extra_mem) return -1;
    for (int k = 0; k < o->n_points; k++) o->d_extra[L + 1 + k] = o->d_extra_mem + k * NC;
    return 0;
}

int sae_objective_init(struct sae_objective *o, const struct sae_setting *set,
                       const struct lm *lm, const struct sae *s, int B, int T, bool own_orig,
                       const struct sae_objective *lender) {
    memset(o, 0, sizeof *o);
    o->set = *set;
    o->lm = lm;
    o->B = B;
    o->T = T;
    o->d_sae = s->d_sae;
    o->codes = &o->own_codes;
    o->work = &o->own_work;
    if (set->layer < 0 || set->layer >= lm->cfg.n_layer)
        return err_set("SAE layer %d: the model has blocks 0..%d", set->layer,
                       lm->cfg.n_layer - 1);
    if (s->d_in != lm->cfg.d_model)
        return err_set("SAE d_in %d does not match the model's d_model %d", s->d_in,
                       lm->cfg.d_model);
    size_t NC = (size_t)B * T * s->d_in;
    int rc = 0;
    if (lender && (lender->B != B || lender->T != T))
        return err_set("SAE objective: cannot share buffers of batch %dx%d at %dx%d", lender->B,
                       lender->T, B, T);
    if (lender) borrow(o, lender, s);
    if (own_orig && !(o->orig = lm_acts_new(lm, B, T, false))) rc = -1;
    if (rc == 0 && !o->borrows_work && sae_work_init(o->work, s) < 0) rc = -1;
    if (rc == 0 && !o->borrows_buffers && set->type == SAE_LOCAL) {
        o->xhat = xmalloc(NC * sizeof(float));
        if (!o->xhat) rc = -1;
    } else if (rc == 0 && !o->borrows_buffers) {
        rc = alloc_e2e(o, lm, NC);
    }
    if (rc < 0) {
        sae_objective_free(o);
        return err_prefix("SAE objective (%s, layer %d, batch %dx%d)", sae_type_name(set->type),
                          set->layer, B, T);
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * One micro-batch.
 */
// Σ_k MSE_k at the downstream hooks; with grads, d_extra[k] = the gradient of
// (ds_coeff/n_points)·MSE_k.
static double downstream_terms(struct sae_objective *o, const struct lm_acts *orig,
                               float grad_scale, bool want_grad) {
    int L = o->set.layer;
    size_t n = (size_t)o->B * o->T * o->lm->cfg.d_model;
    float scale = (float)(grad_scale * o->set.ds_coeff / o->n_points / (double)n);
    double sum = 0;
    for (int k = L + 1; k <= L + o->n_points; k++)
        sum += sq_diff(o->spliced->resid[k], orig->resid[k], n, scale,
                       want_grad ? o->d_extra[k] : NULL) /
               (double)n;
    return sum;
}

static int step_e2e(struct sae_objective *o, const struct sae *s, const struct lm_acts *orig,
                    float grad_scale, const struct sae_params *grads, struct sae_loss *loss) {
    const struct lm *lm = o->lm;
    int L = o->set.layer, nl = lm->cfg.n_layer, N = o->B * o->T;
    size_t n = (size_t)N * s->d_in;
    float *xhat = o->spliced->resid[L];
    const float *x = orig->resid[L];
    if (sae_decode(s, o->work, o->codes, xhat) < 0 ||
        lm_blocks_forward(lm, o->spliced, L, nl) < 0 || lm_final_norm(lm, o->spliced) < 0)
        return -1;
    loss->mse = sq_diff(xhat, x, n, 0, NULL) / (double)n;
    double kl_coeff = o->set.type == SAE_E2E ? 1.0 : o->set.kl_coeff;
    struct kl_totals kt = {0};
    if (grads) memset(o->d_lnf, 0, n * sizeof(float));
    float kl_scale = (float)(grad_scale * kl_coeff / N);
    if (kl_compare(&o->kl, orig->lnf, o->spliced->lnf, N, NULL, kl_scale,
                   grads ? o->d_lnf : NULL, &kt) < 0)
        return -1;
    loss->kl = kt.kl_sum / N;
    if (o->set.type == SAE_E2E_DS && o->n_points) {
        loss->ds_mse = downstream_terms(o, orig, grad_scale, grads != NULL) / o->n_points;
        loss->loss = o->set.ds_coeff * loss->ds_mse; // Σ_k (ds_coeff/n_points)·MSE_k
    }
    loss->loss += kl_coeff * loss->kl + loss->sparsity;
    if (!grads) return 0;
    if (lm_final_norm_backward(lm, o->spliced, o->d_lnf, o->d_resid) < 0 ||
        lm_blocks_backward(lm, o->spliced, L, nl, o->d_resid, o->d_extra, NULL) < 0)
        return -1;
    float l1 = (float)(grad_scale * o->set.lambda / ((double)N * s->d_in));
    return sae_backward(s, o->work, x, o->codes, o->d_resid, l1, grads);
}

int sae_orig_forward(const struct lm *lm, struct lm_acts *orig, const int32_t *tokens,
                     int layer, bool full) {
    if (lm_embed(lm, orig, tokens) < 0 || lm_blocks_forward(lm, orig, 0, layer) < 0)
        return err_prefix("SAE step: model forward");
    if (full && (lm_blocks_forward(lm, orig, layer, lm->cfg.n_layer) < 0 ||
                 lm_final_norm(lm, orig) < 0))
        return err_prefix("SAE step: model forward");
    return 0;
}

int sae_objective_step_given(struct sae_objective *o, const struct sae *s,
                             const struct lm_acts *orig, float grad_scale,
                             const struct sae_params *grads, struct sae_loss *loss) {
    int L = o->set.layer, N = o->B * o->T;
    memset(loss, 0, sizeof *loss);
    if (orig->B != o->B || orig->T != o->T)
        return err_set("SAE step: original run is %dx%d, expected %dx%d", orig->B, orig->T, o->B,
                       o->T);
    const float *x = orig->resid[L];
    if (o->set.type == SAE_LOCAL)
        return sae_local_loss(s, o->work, o->codes, x, N, o->set.lambda, o->xhat, grad_scale,
                              grads, loss);
    if (sae_encode(s, o->work, x, N, o->codes) < 0) return -1;
    sparsity_terms(o->codes, s->d_in, o->set.lambda, loss);
    if (step_e2e(o, s, orig, grad_scale, grads, loss) < 0) return err_prefix("SAE e2e step");
    return 0;
}

int sae_objective_step(struct sae_objective *o, const struct sae *s, const int32_t *tokens,
                       float grad_scale, const struct sae_params *grads, struct sae_loss *loss) {
    if (!o->orig) return err_set("SAE step: this objective has no original run of its own");
    if (sae_orig_forward(o->lm, o->orig, tokens, o->set.layer, o->set.type != SAE_LOCAL) < 0)
        return -1;
    return sae_objective_step_given(o, s, o->orig, grad_scale, grads, loss);
}
