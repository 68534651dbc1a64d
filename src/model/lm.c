/* lm.c: the architecture-neutral face of the subject model (see lm.h).
 *
 * Loading picks the architecture from the path; every other call checks its
 * arguments once here and dispatches on lm->cfg.arch to gpt2.c or llama.c, whose
 * functions carry the same contracts. What is the same for both architectures
 * (the chunked cross-entropy, hook names) lives here.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include "model/lm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/gpt2.h"
#include "model/llama.h"
#include "util/error.h"
#include "util/parallel.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int lm_load(const char *path, struct lm **out) {
    *out = NULL;
    struct lm *lm = xcalloc(1, sizeof *lm);
    if (!lm) return -1;
    lm->path = xstrdup(path);
    if (!lm->path) {
        free(lm);
        return -1;
    }
    int rc;
    struct stat st;
    if (ends_with(path, ".bin")) {
        rc = llama_load(path, lm);
    } else if (ends_with(path, "config.json")) {
        /* the directory holding it */
        char *dir = xstrdup(path);
        rc = -1;
        if (dir) {
            char *slash = strrchr(dir, '/');
            if (slash)
                *slash = 0;
            else
                strcpy(dir, ".");
            rc = gpt2_load(dir, lm);
            free(dir);
        }
    } else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = gpt2_load(path, lm);
    } else if (stat(path, &st) != 0) {
        rc = err_errno("%s: cannot open model", path);
    } else {
        rc = err_set("%s: not a model: expected a directory with config.json + "
                     "model.safetensors (GPT-2) or a llama2.c .bin file",
                     path);
    }
    if (rc < 0) {
        free(lm->path);
        free(lm);
        return -1;
    }
    *out = lm;
    return 0;
}

void lm_free(struct lm *lm) {
    if (!lm) return;
    if (lm->impl) {
        if (lm->cfg.arch == LM_GPT2)
            gpt2_free_impl(lm);
        else
            llama_free_impl(lm);
    }
    free(lm->path);
    free(lm);
}

struct lm_acts *lm_acts_new(const struct lm *lm, int B, int T, bool save_for_backward) {
    struct lm_acts *acts = xcalloc(1, sizeof *acts);
    if (!acts) return NULL;
    acts->B = B;
    acts->T = T;
    acts->save_for_backward = save_for_backward;
    acts->arch = lm->cfg.arch;
    int rc = lm->cfg.arch == LM_GPT2 ? gpt2_acts_init(lm, acts) : llama_acts_init(lm, acts);
    if (rc < 0) {
        free(acts);
        return NULL;
    }
    return acts;
}

void lm_acts_free(struct lm_acts *acts) {
    if (!acts) return;
    if (acts->arch == LM_GPT2)
        gpt2_acts_release(acts);
    else
        llama_acts_release(acts);
    free(acts);
}

#define DISPATCH(lm, call) ((lm)->cfg.arch == LM_GPT2 ? gpt2_##call : llama_##call)

int lm_embed(const struct lm *lm, struct lm_acts *acts, const int32_t *tokens) {
    return DISPATCH(lm, embed(lm, acts, tokens));
}

int lm_blocks_forward(const struct lm *lm, struct lm_acts *acts, int from, int to) {
    if (from < 0 || to > lm->cfg.n_layer || from > to)
        return err_set("%s: blocks [%d, %d) out of range for %d layers", lm->path, from, to,
                       lm->cfg.n_layer);
    return DISPATCH(lm, blocks_forward(lm, acts, from, to));
}

int lm_final_norm(const struct lm *lm, struct lm_acts *acts) {
    return DISPATCH(lm, final_norm(lm, acts));
}

int lm_unembed(const struct lm *lm, const float *x, int n, float *logits) {
    if (n < 0) return err_set("lm_unembed: negative row count %d", n);
    return DISPATCH(lm, unembed(lm, x, n, logits));
}

static int gpt2_only_grads(const struct lm *lm, const void *param_grads) {
    if (param_grads && lm->cfg.arch != LM_GPT2)
        return err_set("%s: parameter gradients are only available for GPT-2", lm->path);
    return 0;
}

int lm_unembed_backward(const struct lm *lm, const float *x, const float *dlogits, int n,
                        float *dx, void *param_grads) {
    if (gpt2_only_grads(lm, param_grads) < 0) return -1;
    return DISPATCH(lm, unembed_backward(lm, x, dlogits, n, dx, param_grads));
}

int lm_final_norm_backward(const struct lm *lm, struct lm_acts *acts, const float *d_lnf,
                           float *d_resid) {
    return lm_final_norm_backward_grads(lm, acts, d_lnf, d_resid, NULL);
}

int lm_final_norm_backward_grads(const struct lm *lm, struct lm_acts *acts, const float *d_lnf,
                                 float *d_resid, void *param_grads) {
    if (gpt2_only_grads(lm, param_grads) < 0) return -1;
    if (lm->cfg.arch == LM_GPT2)
        return gpt2_final_norm_backward(lm, acts, d_lnf, d_resid, param_grads);
    return llama_final_norm_backward(lm, acts, d_lnf, d_resid);
}

int lm_blocks_backward(const struct lm *lm, struct lm_acts *acts, int from, int to,
                       float *d_resid, float *const *d_extra, void *param_grads) {
    if (gpt2_only_grads(lm, param_grads) < 0) return -1;
    if (from < 0 || to > lm->cfg.n_layer || from > to)
        return err_set("%s: blocks [%d, %d) out of range for %d layers", lm->path, from, to,
                       lm->cfg.n_layer);
    return DISPATCH(lm, blocks_backward(lm, acts, from, to, d_resid, d_extra, param_grads));
}

int lm_embed_backward(const struct lm *lm, struct lm_acts *acts, const float *d_resid0,
                      void *param_grads) {
    if (gpt2_only_grads(lm, param_grads) < 0) return -1;
    return DISPATCH(lm, embed_backward(lm, acts, d_resid0, param_grads));
}

/* Rows of logits computed at once by lm_batch_ce: 256 × 50257 floats is 51 MB;
 * sgemm runs well below its peak on fewer rows when C is small. */
#define CE_CHUNK_ROWS 256

static float row_max(const float *x, int n) {
    float m = x[0];
    int i = 0;
    if (n >= 8) {
        v8f a = v8_load(x);
        for (i = 8; i + 8 <= n; i += 8) a = v8_max(a, v8_load(x + i));
        for (int k = 0; k < 8; k++) m = a[k] > m ? a[k] : m;
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* Σ exp(x[i] - m): float exponentials, 8 lanes per block of 1024, blocks summed in
 * double; with out != NULL the exponentials are also stored there. */
static double sum_exp(const float *x, int n, float m, float *out) {
    double total = 0.0;
    for (int b0 = 0; b0 < n; b0 += 1024) {
        int b1 = n - b0 < 1024 ? n : b0 + 1024;
        v8f lanes = {0};
        int j = b0;
        for (; j + 8 <= b1; j += 8) {
            v8f e = model_expf8(v8_load(x + j) - m);
            if (out) v8_store(out + j, e);
            lanes += e;
        }
        float s = v8_hsum(lanes);
        for (; j < b1; j++) {
            float e = model_expf(x[j] - m);
            if (out) out[j] = e;
            s += e;
        }
        total += s;
    }
    return total;
}

double lm_logsumexp(const float *x, int n) {
    if (n <= 0) return -INFINITY;
    float m = row_max(x, n);
    if (!isfinite(m)) return m;
    return (double)m + log(sum_exp(x, n, m, NULL));
}

double lm_softmax(float *x, int n, float scale) {
    if (n <= 0) return -INFINITY;
    float m = row_max(x, n);
    if (!isfinite(m)) return m;
    double sum = sum_exp(x, n, m, x);
    float k = (float)(scale / sum);
    int j = 0;
    for (; j + 8 <= n; j += 8) v8_store(x + j, v8_load(x + j) * k);
    for (; j < n; j++) x[j] *= k;
    return (double)m + log(sum);
}

/* Per-row CE of a chunk of logits, rows on the parallel_for threads; summed by
 * the caller in row order, so the total does not depend on the threads. */
struct ce_ctx {
    const float *logits; /* (nr,V) */
    const int32_t *tokens;
    double *row_ce; /* (nr); rows with no next token (t = T-1) are skipped */
    int r0, T, V;
};

static void ce_rows(void *ctx, int thread, size_t i0, size_t i1) {
    (void)thread;
    const struct ce_ctx *c = ctx;
    for (size_t i = i0; i < i1; i++) {
        int r = c->r0 + (int)i;
        const float *row = c->logits + i * c->V;
        if (r % c->T != c->T - 1)
            c->row_ce[i] = lm_logsumexp(row, c->V) - (double)row[c->tokens[r + 1]];
    }
}

int lm_batch_ce(const struct lm *lm, struct lm_acts *acts, const int32_t *tokens, double *ce_sum,
                int64_t *n_predicted) {
    int B = acts->B, T = acts->T, C = lm->cfg.d_model, V = lm->cfg.vocab_size;
    *ce_sum = 0.0;
    *n_predicted = 0;
    if (lm_embed(lm, acts, tokens) < 0 || lm_blocks_forward(lm, acts, 0, lm->cfg.n_layer) < 0 ||
        lm_final_norm(lm, acts) < 0)
        return -1;
    if (T < 2) return 0;
    /* rows (b, t) with t < T-1, in chunks that may span sequences */
    int n_rows = B * T, chunk = n_rows < CE_CHUNK_ROWS ? n_rows : CE_CHUNK_ROWS;
    float *logits = xmalloc((size_t)chunk * V * sizeof *logits);
    double *row_ce = xmalloc((size_t)chunk * sizeof *row_ce);
    if (!logits || !row_ce) {
        free(logits);
        free(row_ce);
        return -1;
    }
    double sum = 0.0;
    for (int r0 = 0; r0 < n_rows; r0 += chunk) {
        int nr = n_rows - r0 < chunk ? n_rows - r0 : chunk;
        if (lm_unembed(lm, acts->lnf + (size_t)r0 * C, nr, logits) < 0) {
            free(logits);
            free(row_ce);
            return -1;
        }
        struct ce_ctx c = {logits, tokens, row_ce, r0, T, V};
        parallel_for((size_t)nr, V >= 65536 ? 1 : (size_t)(65536 / V), ce_rows, &c);
        for (int i = 0; i < nr; i++) {
            if ((r0 + i) % T == T - 1) continue;
            sum += row_ce[i];
            (*n_predicted)++;
        }
    }
    free(logits);
    free(row_ce);
    *ce_sum = sum;
    return 0;
}

int lm_hook_index(const struct lm *lm, const char *hook_name) {
    int layer, end = 0;
    char kind[32];
    if (sscanf(hook_name, "blocks.%d.%31[a-z_]%n", &layer, kind, &end) == 2 &&
        hook_name[end] == 0 && layer >= 0 && layer < lm->cfg.n_layer) {
        if (strcmp(kind, "hook_resid_pre") == 0) return layer;
        if (strcmp(kind, "hook_resid_post") == 0) return layer + 1;
    }
    return err_set("hook %s: expected blocks.L.hook_resid_pre or blocks.L.hook_resid_post with "
                   "0 <= L < %d",
                   hook_name, lm->cfg.n_layer);
}
