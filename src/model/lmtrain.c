/* lmtrain.c: the lm-train loop (see lmtrain.h for what it does and promises).
 *
 * One step, for B windows of T+1 tokens (inputs x = first T, targets y = last T):
 *     forward through every block (activations saved), ln_f;
 *     per chunk of rows: logits = lnf · wteᵀ, CE, dlogits = (softmax - onehot)/(B·T),
 *         d_lnf += dlogits · wte and dwte += dlogitsᵀ · lnf   (lm_unembed_backward)
 *     ln_f, blocks and embedding backward into the one gradient buffer;
 *     clip by the global norm, AdamW.
 * The logits never exist for the whole batch (a chunk of 64 rows × V).
 *
 * The training state that a resume needs is exactly: parameters, Adam moments,
 * the step counter, the validation curve and (time-budget runs) the elapsed
 * time; the data order is a function of (seed, step).
 */
#include "model/lmtrain.h"

#ifdef __AVX__
#include <immintrin.h>
#endif
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "model/gpt2.h"
#include "model/lm.h"
#include "tok/dataset.h"
#include "util/error.h"
#include "util/log.h"
#include "util/parallel.h"

#define CHUNK_ROWS 256 /* rows of logits at once: 51 MB at V = 50257; sgemm is slow on fewer */
#define NORM_BLOCK 4096 /* gradient norm: float sums over blocks, added up in double */
#define CHECKPOINT_FORMAT "autointerp-lmtrain-checkpoint"

void lmtrain_defaults(struct lmtrain_config *c) {
    memset(c, 0, sizeof *c);
    c->n_layer = 4;
    c->n_embd = 128;
    c->n_head = 4;
    c->context = 128;
    c->batch = 16;
    c->steps = 1000;
    c->lr = 3e-3;
    c->warmup = 30;
    c->min_lr_frac = 0.1;
    c->weight_decay = 0.1;
    c->beta1 = 0.9;
    c->beta2 = 0.95;
    c->adam_eps = 1e-8;
    c->grad_clip = 1.0;
    c->seed = 1;
    c->val_fraction = 0.1;
    c->eval_every = 100;
    c->eval_tokens = 65536;
    c->checkpoint_every = 200;
    c->resume = true;
}

struct trainer {
    const struct lmtrain_config *cfg;
    struct lm *lm;
    struct lm_acts *acts;
    float *grads, *m, *v; /* n_params each */
    int32_t *tokens;
    int64_t n_tokens, n_train;
    int64_t eot_id;
    int32_t *x, *y;          /* (B,T) */
    float *logits;           /* (CHUNK_ROWS, V) */
    double *row_loss;        /* (CHUNK_ROWS) */
    float *norm_blocks;      /* one per NORM_BLOCK gradients */
    float *d_lnf, *d_resid;  /* (B*T, C) */
    gsl_rng *rng;
    int64_t step;            /* steps done */
    double elapsed_s;        /* training time before this call (time-budget runs) */
    int n_evals, cap_evals;
    int64_t *eval_steps;
    double *eval_losses;
};

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int check_options(const struct lmtrain_config *c) {
    if (!c->tokens_path || !c->out_dir) return err_set("lm-train: tokens and out dir are required");
    if (c->n_layer < 1 || c->n_embd < 1 || c->n_head < 1 || c->n_embd % c->n_head)
        return err_set("lm-train: n_embd (%d) must be a positive multiple of n_head (%d), "
                       "n_layer >= 1",
                       c->n_embd, c->n_head);
    if (c->context < 2 || c->batch < 1)
        return err_set("lm-train: context must be >= 2 and batch >= 1, got %d and %d", c->context,
                       c->batch);
    if (c->steps < 0 || (c->steps == 0 && !(c->minutes > 0)))
        return err_set("lm-train: give a positive step count or a positive time budget");
    if (!(c->lr > 0) || c->warmup < 0 || !(c->val_fraction > 0 && c->val_fraction < 1))
        return err_set("lm-train: lr must be > 0, warmup >= 0 and val_fraction in (0, 1)");
    return 0;
}

/* ---- data -------------------------------------------------------------------- */

static int load_tokens(struct trainer *tr) {
    struct token_dataset d;
    if (token_dataset_open(&d, tr->cfg->tokens_path) < 0) return -1;
    tr->n_tokens = d.n_tokens;
    tr->eot_id = d.eot_id;
    int rc = 0;
    int64_t n_val = (int64_t)llround(tr->cfg->val_fraction * (double)d.n_tokens);
    tr->n_train = d.n_tokens - n_val;
    int T = tr->cfg->context;
    if (tr->n_train < T + 2 || n_val < T + 1)
        rc = err_set("%s: %lld tokens are too few for context %d with val_fraction %g",
                     tr->cfg->tokens_path, (long long)d.n_tokens, T, tr->cfg->val_fraction);
    if (rc == 0 && d.vocab_size > 10000000)
        rc = err_set("%s: vocab_size %lld is too large", tr->cfg->tokens_path,
                     (long long)d.vocab_size);
    if (rc == 0) {
        tr->tokens = xmalloc((size_t)d.n_tokens * sizeof *tr->tokens);
        rc = tr->tokens ? token_dataset_read(&d, 0, d.n_tokens, tr->tokens) : -1;
    }
    if (rc == 0) {
        struct lm_config mc = {.arch = LM_GPT2, .n_layer = tr->cfg->n_layer,
                               .d_model = tr->cfg->n_embd, .n_head = tr->cfg->n_head,
                               .vocab_size = (int)d.vocab_size, .max_seq = T, .norm_eps = 1e-5f};
        tr->lm = xcalloc(1, sizeof *tr->lm);
        rc = tr->lm ? gpt2_new(&mc, tr->lm) : -1;
        if (rc == 0) tr->lm->path = xstrdup(tr->cfg->out_dir);
    }
    token_dataset_close(&d);
    return rc;
}

static double unigram_entropy(const int32_t *t, int64_t n, int V) {
    int64_t *count = xcalloc((size_t)V, sizeof *count);
    if (!count) return NAN;
    for (int64_t i = 0; i < n; i++) count[t[i]]++;
    double h = 0;
    for (int v = 0; v < V; v++)
        if (count[v]) {
            double p = (double)count[v] / (double)n;
            h -= p * log(p);
        }
    free(count);
    return h;
}

/* ---- model ------------------------------------------------------------------- */

/* GPT-2's initialisation: N(0, 0.02) for embeddings and linear weights, the
 * residual projections scaled by 1/sqrt(2 n_layer), biases 0, LayerNorm 1 and 0. */
static void init_params(struct trainer *tr) {
    struct gpt2 *g = gpt2_of(tr->lm);
    gsl_rng_set(tr->rng, (unsigned long)splitmix64(tr->cfg->seed));
    double proj = 0.02 / sqrt(2.0 * tr->cfg->n_layer);
    float *p = g->memory;
    for (int t = 0; t < GPT2_N_TENSORS; t++) {
        const char *name = gpt2_tensor_label(t);
        bool ln_weight = strcmp(name, "ln1w") == 0 || strcmp(name, "ln2w") == 0 ||
                         strcmp(name, "lnfw") == 0;
        double sd = 0.0;
        if (gpt2_tensor_is_matrix(t))
            sd = strcmp(name, "attprojw") == 0 || strcmp(name, "fcprojw") == 0 ? proj : 0.02;
        for (size_t i = 0; i < g->sizes[t]; i++)
            p[i] = ln_weight ? 1.0f : sd > 0 ? (float)gsl_ran_gaussian_ziggurat(tr->rng, sd) : 0.0f;
        p += g->sizes[t];
    }
}

static int alloc_buffers(struct trainer *tr) {
    const struct lmtrain_config *c = tr->cfg;
    size_t n = gpt2_n_params(tr->lm), N = (size_t)c->batch * c->context;
    tr->grads = xcalloc(n, sizeof(float));
    tr->m = xcalloc(n, sizeof(float));
    tr->v = xcalloc(n, sizeof(float));
    tr->x = xmalloc(N * sizeof *tr->x);
    tr->y = xmalloc(N * sizeof *tr->y);
    tr->logits = xmalloc((size_t)CHUNK_ROWS * tr->lm->cfg.vocab_size * sizeof(float));
    tr->row_loss = xmalloc(CHUNK_ROWS * sizeof *tr->row_loss);
    tr->norm_blocks = xmalloc((n / NORM_BLOCK + 1) * sizeof *tr->norm_blocks);
    tr->d_lnf = xmalloc(N * c->n_embd * sizeof(float));
    tr->d_resid = xmalloc(N * c->n_embd * sizeof(float));
    tr->rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!tr->grads || !tr->m || !tr->v || !tr->x || !tr->y || !tr->logits || !tr->row_loss ||
        !tr->norm_blocks || !tr->d_lnf || !tr->d_resid || !tr->rng)
        return err_set("lm-train: out of memory for the training buffers");
    tr->acts = lm_acts_new(tr->lm, c->batch, c->context, true);
    return tr->acts ? 0 : -1;
}

/* ---- loss -------------------------------------------------------------------- */

struct ce_ctx {
    float *logits; /* (nr,V) */
    const int32_t *y;
    double *row_loss;
    int V;
    double scale;
};

// Rows [i0, i1) of a chunk: CE into row_loss; when scale > 0 the row becomes
// its dlogits, scale·(softmax - onehot).
static void ce_row_range(void *ctx, int thread, size_t i0, size_t i1) {
    (void)thread;
    const struct ce_ctx *c = ctx;
    for (size_t i = i0; i < i1; i++) {
        float *row = c->logits + i * c->V;
        float target = row[c->y[i]];
        if (c->scale > 0) {
            c->row_loss[i] = lm_softmax(row, c->V, (float)c->scale) - target;
            row[c->y[i]] -= (float)c->scale;
        } else {
            c->row_loss[i] = lm_logsumexp(row, c->V) - target;
        }
    }
}

/* CE summed over rows [r0, r0+nr) of acts->lnf against targets y[r]; when scale
 * > 0 also backpropagates scale·CE into d_lnf and the parameter gradients. The
 * rows run on the parallel_for threads and are summed in order. */
static double ce_rows(struct trainer *tr, int r0, int nr, const int32_t *y, double scale) {
    const struct lm *lm = tr->lm;
    int C = lm->cfg.d_model, V = lm->cfg.vocab_size;
    const float *x = tr->acts->lnf + (size_t)r0 * C;
    lm_unembed(lm, x, nr, tr->logits);
    struct ce_ctx c = {tr->logits, y + r0, tr->row_loss, V, scale};
    parallel_for((size_t)nr, V >= 65536 ? 1 : (size_t)(65536 / V), ce_row_range, &c);
    double sum = 0;
    for (int i = 0; i < nr; i++) sum += tr->row_loss[i];
    if (scale > 0)
        lm_unembed_backward(lm, x, tr->logits, nr, tr->d_lnf + (size_t)r0 * C, tr->grads);
    return sum;
}

static int forward(struct trainer *tr) {
    if (lm_embed(tr->lm, tr->acts, tr->x) < 0) return -1;
    if (lm_blocks_forward(tr->lm, tr->acts, 0, tr->lm->cfg.n_layer) < 0) return -1;
    return lm_final_norm(tr->lm, tr->acts);
}

/* Mean CE over the held-out windows (non-overlapping, from the start of the
 * validation part, at most eval_tokens predictions). */
static int evaluate(struct trainer *tr, double *loss) {
    const struct lmtrain_config *c = tr->cfg;
    int B = c->batch, T = c->context;
    int64_t n_windows = (tr->n_tokens - tr->n_train - 1) / T;
    if (c->eval_tokens > 0 && n_windows > c->eval_tokens / T)
        n_windows = c->eval_tokens / T > 0 ? c->eval_tokens / T : 1;
    double sum = 0;
    int64_t n = 0;
    for (int64_t w0 = 0; w0 < n_windows; w0 += B) {
        int nb = n_windows - w0 < B ? (int)(n_windows - w0) : B;
        for (int b = 0; b < B; b++) {
            int64_t start = tr->n_train + (w0 + (b < nb ? b : 0)) * T;
            memcpy(tr->x + (size_t)b * T, tr->tokens + start, (size_t)T * sizeof *tr->x);
            memcpy(tr->y + (size_t)b * T, tr->tokens + start + 1, (size_t)T * sizeof *tr->y);
        }
        if (forward(tr) < 0) return -1;
        for (int r0 = 0; r0 < nb * T; r0 += CHUNK_ROWS) {
            int nr = nb * T - r0 < CHUNK_ROWS ? nb * T - r0 : CHUNK_ROWS;
            sum += ce_rows(tr, r0, nr, tr->y, 0.0);
        }
        n += (int64_t)nb * T;
    }
    *loss = sum / (double)n;
    return 0;
}

/* ---- optimiser --------------------------------------------------------------- */

static double lr_at(const struct lmtrain_config *c, int64_t step, double progress) {
    if (step < c->warmup) return c->lr * (double)(step + 1) / (double)c->warmup;
    double frac = progress;
    if (c->steps > 0) {
        int64_t span = c->steps - c->warmup;
        frac = span > 0 ? (double)(step - c->warmup) / (double)span : 1.0;
    }
    frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
    double lo = c->lr * c->min_lr_frac;
    return lo + 0.5 * (c->lr - lo) * (1.0 + cos(M_PI * frac));
}

struct norm_ctx {
    const float *g;
    size_t n;
    float *block; /* per NORM_BLOCK: Σ g² in float */
};

static void norm_range(void *ctx, int thread, size_t b0, size_t b1) {
    (void)thread;
    const struct norm_ctx *c = ctx;
    for (size_t b = b0; b < b1; b++) {
        size_t i0 = b * NORM_BLOCK, i1 = c->n - i0 < NORM_BLOCK ? c->n : i0 + NORM_BLOCK;
        float s = 0;
        for (size_t i = i0; i < i1; i++) s += c->g[i] * c->g[i];
        c->block[b] = s;
    }
}

static double grad_norm(struct trainer *tr, size_t n) {
    size_t nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
    struct norm_ctx c = {tr->grads, n, tr->norm_blocks};
    parallel_for(nb, 16, norm_range, &c);
    double total = 0;
    for (size_t b = 0; b < nb; b++) total += c.block[b];
    return sqrt(total);
}

struct adamw_ctx {
    float *p, *g, *m, *v;
    float b1, b2, eps, c1, c2, lr, wd, gscale;
};

static void adamw_range(void *ctx, int thread, size_t i0, size_t i1) {
    (void)thread;
    const struct adamw_ctx *c = ctx;
    float *p = c->p, *gr = c->g, *m = c->m, *v = c->v;
    float b1 = c->b1, b2 = c->b2, eps = c->eps, c1 = c->c1, c2 = c->c2, flr = c->lr, wd = c->wd;
    size_t i = i0;
#ifdef __AVX__ // the loop below 8 lanes at a time, same operations in the same order
    __m256 vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2), va1 = _mm256_set1_ps(1.0f - b1),
           va2 = _mm256_set1_ps(1.0f - b2), veps = _mm256_set1_ps(eps), vc1 = _mm256_set1_ps(c1),
           vc2 = _mm256_set1_ps(c2), vlr = _mm256_set1_ps(flr), vwd = _mm256_set1_ps(wd),
           vgs = _mm256_set1_ps(c->gscale);
    for (; i + 8 <= i1; i += 8) {
        __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(gr + i), vgs);
        _mm256_storeu_ps(gr + i, _mm256_setzero_ps());
        __m256 mi =
            _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(va1, gi));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + i)),
                                  _mm256_mul_ps(_mm256_mul_ps(va2, gi), gi));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 mh = _mm256_mul_ps(mi, vc1), vh = _mm256_mul_ps(vi, vc2);
        __m256 pi = _mm256_loadu_ps(p + i);
        __m256 step = _mm256_add_ps(_mm256_div_ps(mh, _mm256_add_ps(_mm256_sqrt_ps(vh), veps)),
                                    _mm256_mul_ps(vwd, pi));
        _mm256_storeu_ps(p + i, _mm256_sub_ps(pi, _mm256_mul_ps(vlr, step)));
    }
#endif
    for (; i < i1; i++) {
        float gi = gr[i] * c->gscale;
        gr[i] = 0.0f; /* ready for the next step's accumulation */
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float mh = m[i] * c1, vh = v[i] * c2;
        p[i] -= flr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
}

// AdamW on every tensor; decoupled weight decay on matrices only. t = step + 1.
// Zeroes the gradients as it consumes them (one pass fewer per step).
// Elementwise, on the parallel_for threads.
static void adamw(struct trainer *tr, double lr, float gscale, int64_t t) {
    const struct lmtrain_config *c = tr->cfg;
    struct gpt2 *g = gpt2_of(tr->lm);
    struct adamw_ctx a = {.b1 = (float)c->beta1, .b2 = (float)c->beta2, .eps = (float)c->adam_eps,
                          .c1 = (float)(1.0 / (1.0 - pow(c->beta1, (double)t))),
                          .c2 = (float)(1.0 / (1.0 - pow(c->beta2, (double)t))),
                          .lr = (float)lr, .gscale = gscale};
    size_t off = 0;
    for (int k = 0; k < GPT2_N_TENSORS; k++) {
        a.wd = gpt2_tensor_is_matrix(k) ? (float)c->weight_decay : 0.0f;
        a.p = g->memory + off;
        a.g = tr->grads + off;
        a.m = tr->m + off;
        a.v = tr->v + off;
        parallel_for(g->sizes[k], 65536, adamw_range, &a);
        off += g->sizes[k];
    }
}

/* Forward, CE and backward of the batch in tr->x, tr->y into tr->grads. */
static int train_pass(struct trainer *tr, double *loss) {
    int N = tr->cfg->batch * tr->cfg->context, L = tr->lm->cfg.n_layer;
    if (forward(tr) < 0) return -1;
    double sum = 0;
    for (int r0 = 0; r0 < N; r0 += CHUNK_ROWS) {
        int nr = N - r0 < CHUNK_ROWS ? N - r0 : CHUNK_ROWS;
        sum += ce_rows(tr, r0, nr, tr->y, 1.0 / N);
    }
    *loss = sum / N;
    if (lm_final_norm_backward_grads(tr->lm, tr->acts, tr->d_lnf, tr->d_resid, tr->grads) < 0 ||
        lm_blocks_backward(tr->lm, tr->acts, 0, L, tr->d_resid, NULL, tr->grads) < 0 ||
        lm_embed_backward(tr->lm, tr->acts, tr->d_resid, tr->grads) < 0)
        return -1;
    return 0;
}

static int train_step(struct trainer *tr, double lr, double *loss) {
    const struct lmtrain_config *c = tr->cfg;
    int B = c->batch, T = c->context, N = B * T;
    gsl_rng_set(tr->rng, (unsigned long)splitmix64(c->seed ^ splitmix64((uint64_t)tr->step + 1)));
    for (int b = 0; b < B; b++) {
        int64_t off = (int64_t)gsl_rng_uniform_int(tr->rng, (unsigned long)(tr->n_train - T));
        memcpy(tr->x + (size_t)b * T, tr->tokens + off, (size_t)T * sizeof *tr->x);
        memcpy(tr->y + (size_t)b * T, tr->tokens + off + 1, (size_t)T * sizeof *tr->y);
    }
    size_t n_params = gpt2_n_params(tr->lm); /* tr->grads is zero here (adamw) */
    memset(tr->d_lnf, 0, (size_t)N * c->n_embd * sizeof *tr->d_lnf);
    struct gpt2 *g = gpt2_of(tr->lm);
    g->dropout = (float)c->dropout; /* for this step's forward and backward only */
    g->dropout_seed = splitmix64(c->seed + 0x5bd1e995u * (uint64_t)(tr->step + 1));
    int rc = train_pass(tr, loss);
    g->dropout = 0.0f;
    if (rc < 0) return -1;
    double norm = grad_norm(tr, n_params);
    if (!isfinite(norm) || !isfinite(*loss))
        return err_set("lm-train: step %lld: loss or gradient is not finite (lr too high?)",
                       (long long)tr->step);
    float gscale = c->grad_clip > 0 && norm > c->grad_clip ? (float)(c->grad_clip / norm) : 1.0f;
    adamw(tr, lr, gscale, tr->step + 1);
    tr->step++;
    return 0;
}

/* ---- checkpoint ---------------------------------------------------------------- */

struct ck_attr {
    const char *name;
    double value;
};

/* The options a resumed run must share with the run that wrote the checkpoint. */
static int identity_attrs(const struct trainer *tr, struct ck_attr *a) {
    const struct lmtrain_config *c = tr->cfg;
    int n = 0;
    a[n++] = (struct ck_attr){"n_layer", c->n_layer};
    a[n++] = (struct ck_attr){"n_embd", c->n_embd};
    a[n++] = (struct ck_attr){"n_head", c->n_head};
    a[n++] = (struct ck_attr){"context", c->context};
    a[n++] = (struct ck_attr){"batch", c->batch};
    a[n++] = (struct ck_attr){"vocab_size", tr->lm->cfg.vocab_size};
    a[n++] = (struct ck_attr){"n_tokens", (double)tr->n_tokens};
    a[n++] = (struct ck_attr){"seed", (double)(c->seed & ((1ull << 52) - 1))};
    a[n++] = (struct ck_attr){"steps", (double)c->steps};
    a[n++] = (struct ck_attr){"lr", c->lr};
    a[n++] = (struct ck_attr){"warmup", (double)c->warmup};
    a[n++] = (struct ck_attr){"val_fraction", c->val_fraction};
    a[n++] = (struct ck_attr){"weight_decay", c->weight_decay};
    a[n++] = (struct ck_attr){"dropout", c->dropout};
    return n;
}

static char *checkpoint_path(const struct lmtrain_config *c) {
    size_t n = strlen(c->out_dir) + 32;
    char *p = xmalloc(n);
    if (p) snprintf(p, n, "%s/checkpoint.h5", c->out_dir);
    return p;
}

static int write_checkpoint(struct trainer *tr, double elapsed_s) {
    char *path = checkpoint_path(tr->cfg);
    char *tmp = path ? atomic_tmp_path(path) : NULL;
    if (!tmp) {
        free(path);
        return -1;
    }
    hid_t f = h5_create(tmp);
    int rc = f < 0 ? -1 : 0;
    hsize_t n = gpt2_n_params(tr->lm), ne = (hsize_t)tr->n_evals;
    if (rc == 0) rc = h5_write_f32(f, "params", 1, &n, gpt2_of(tr->lm)->memory);
    if (rc == 0) rc = h5_write_f32(f, "adam_m", 1, &n, tr->m);
    if (rc == 0) rc = h5_write_f32(f, "adam_v", 1, &n, tr->v);
    if (rc == 0 && ne) rc = h5_write(f, "eval_steps", H5T_NATIVE_INT64, 1, &ne, tr->eval_steps);
    if (rc == 0 && ne) rc = h5_write(f, "eval_losses", H5T_NATIVE_DOUBLE, 1, &ne, tr->eval_losses);
    if (rc == 0) rc = h5_attr_str(f, "format", CHECKPOINT_FORMAT);
    if (rc == 0) rc = h5_attr_i64(f, "step", tr->step);
    if (rc == 0) rc = h5_attr_f64(f, "elapsed_s", elapsed_s);
    struct ck_attr a[16];
    int na = identity_attrs(tr, a);
    for (int i = 0; rc == 0 && i < na; i++) rc = h5_attr_f64(f, a[i].name, a[i].value);
    if (f >= 0 && h5_close(f) < 0) rc = -1;
    if (rc == 0) rc = atomic_rename(tmp, path);
    if (rc < 0) {
        remove(tmp);
        err_prefix("%s", path);
    }
    free(tmp);
    free(path);
    return rc;
}

static int push_eval(struct trainer *tr, int64_t step, double loss) {
    if (tr->n_evals == tr->cap_evals) {
        int cap = tr->cap_evals ? 2 * tr->cap_evals : 64;
        int64_t *s = xrealloc(tr->eval_steps, (size_t)cap * sizeof *s);
        if (!s) return -1;
        tr->eval_steps = s;
        double *l = xrealloc(tr->eval_losses, (size_t)cap * sizeof *l);
        if (!l) return -1;
        tr->eval_losses = l;
        tr->cap_evals = cap;
    }
    tr->eval_steps[tr->n_evals] = step;
    tr->eval_losses[tr->n_evals++] = loss;
    return 0;
}

/* Load out_dir/checkpoint.h5 if there is one; *found says whether. */
static int read_checkpoint(struct trainer *tr, bool *found) {
    *found = false;
    char *path = checkpoint_path(tr->cfg);
    if (!path) return -1;
    if (!file_exists(path)) {
        free(path);
        return 0;
    }
    hid_t f = h5_open_ro(path);
    int rc = f < 0 ? -1 : 0;
    struct ck_attr a[16];
    int na = identity_attrs(tr, a);
    for (int i = 0; rc == 0 && i < na; i++) {
        double v;
        rc = h5_get_attr_f64(f, a[i].name, &v);
        if (rc == 0 && v != a[i].value)
            rc = err_set("was made with %s = %g, this run has %g: use the same options or remove "
                         "it",
                         a[i].name, v, a[i].value);
    }
    int64_t step = 0;
    if (rc == 0) rc = h5_get_attr_i64(f, "step", &step);
    if (rc == 0) rc = h5_get_attr_f64(f, "elapsed_s", &tr->elapsed_s);
    hsize_t n = gpt2_n_params(tr->lm), dims[1];
    const char *names[3] = {"params", "adam_m", "adam_v"};
    float *dst[3] = {gpt2_of(tr->lm)->memory, tr->m, tr->v};
    for (int i = 0; rc == 0 && i < 3; i++) {
        void *buf = NULL;
        rc = h5_read(f, names[i], H5T_NATIVE_FLOAT, 1, &n, dims, &buf);
        if (rc == 0) memcpy(dst[i], buf, n * sizeof(float));
        free(buf);
    }
    if (rc == 0 && h5_exists(f, "eval_steps") > 0) {
        int64_t *s = NULL;
        double *l = NULL;
        rc = h5_read(f, "eval_steps", H5T_NATIVE_INT64, 1, NULL, dims, (void **)&s);
        hsize_t ne = dims[0];
        if (rc == 0) rc = h5_read(f, "eval_losses", H5T_NATIVE_DOUBLE, 1, &ne, dims, (void **)&l);
        for (hsize_t i = 0; rc == 0 && i < ne; i++) rc = push_eval(tr, s[i], l[i]);
        free(s);
        free(l);
    }
    if (f >= 0) h5_close(f);
    if (rc < 0) {
        err_prefix("%s", path);
    } else {
        tr->step = step;
        *found = true;
    }
    free(path);
    return rc;
}

/* ---- the loop ------------------------------------------------------------------ */

static void trainer_free(struct trainer *tr) {
    lm_acts_free(tr->acts);
    lm_free(tr->lm);
    free(tr->grads);
    free(tr->m);
    free(tr->v);
    free(tr->tokens);
    free(tr->x);
    free(tr->y);
    free(tr->logits);
    free(tr->row_loss);
    free(tr->norm_blocks);
    free(tr->d_lnf);
    free(tr->d_resid);
    if (tr->rng) gsl_rng_free(tr->rng);
    free(tr->eval_steps);
    free(tr->eval_losses);
}

static int record_eval(struct trainer *tr, double train_loss, double lr) {
    double val;
    if (evaluate(tr, &val) < 0 || push_eval(tr, tr->step, val) < 0) return -1;
    if (isnan(train_loss))
        log_info("lm-train: step %lld: validation loss %.4f", (long long)tr->step, val);
    else
        log_info("lm-train: step %lld: train loss %.4f, validation loss %.4f, lr %.2e",
                 (long long)tr->step, train_loss, val, lr);
    if (tr->cfg->on_eval) tr->cfg->on_eval(tr->cfg->ctx, tr->step, train_loss, val, lr);
    return 0;
}

static int train_loop(struct trainer *tr, struct lmtrain_result *res) {
    const struct lmtrain_config *c = tr->cfg;
    double t0 = now_seconds(), budget_s = c->minutes * 60.0;
    double loss_sum = 0, lr = lr_at(c, tr->step, 0);
    int64_t loss_n = 0, done_here = 0;
    if (tr->n_evals == 0 && record_eval(tr, NAN, lr) < 0) return -1;
    for (;;) {
        double elapsed = tr->elapsed_s + (now_seconds() - t0);
        bool finished = c->steps > 0 ? tr->step >= c->steps : elapsed >= budget_s;
        if (finished) break;
        if (c->stop_after > 0 && done_here >= c->stop_after) {
            res->stopped_early = true;
            break;
        }
        lr = lr_at(c, tr->step, c->steps > 0 ? 0 : elapsed / budget_s);
        double loss;
        if (train_step(tr, lr, &loss) < 0) return -1;
        done_here++;
        loss_sum += loss;
        loss_n++;
        bool last = c->steps > 0 && tr->step == c->steps;
        if ((c->eval_every > 0 && tr->step % c->eval_every == 0) || last) {
            if (record_eval(tr, loss_sum / (double)loss_n, lr) < 0) return -1;
            loss_sum = 0;
            loss_n = 0;
        }
        if (c->checkpoint_every > 0 && tr->step % c->checkpoint_every == 0 &&
            write_checkpoint(tr, tr->elapsed_s + (now_seconds() - t0)) < 0)
            return -1;
    }
    /* time-budget runs end between evaluations: close the curve */
    if (!res->stopped_early && tr->eval_steps[tr->n_evals - 1] != tr->step &&
        record_eval(tr, loss_n ? loss_sum / (double)loss_n : NAN, lr) < 0)
        return -1;
    res->seconds = now_seconds() - t0;
    res->tokens_per_s = res->seconds > 0 ? (double)done_here * c->batch * c->context / res->seconds
                                         : 0;
    if (!res->stopped_early && c->checkpoint_every > 0 &&
        write_checkpoint(tr, tr->elapsed_s + res->seconds) < 0)
        return -1;
    return 0;
}

int lmtrain_run(const struct lmtrain_config *cfg, struct lmtrain_result *res) {
    memset(res, 0, sizeof *res);
    if (check_options(cfg) < 0) return -1;
    struct trainer tr = {.cfg = cfg};
    int rc = load_tokens(&tr);
    if (rc == 0) rc = alloc_buffers(&tr);
    if (rc == 0) rc = mkdir_p(cfg->out_dir);
    bool resumed = false;
    if (rc == 0) {
        res->unigram_entropy = unigram_entropy(tr.tokens, tr.n_train, tr.lm->cfg.vocab_size);
        res->n_train_tokens = tr.n_train;
        res->n_val_tokens = tr.n_tokens - tr.n_train;
        init_params(&tr);
        if (cfg->resume) rc = read_checkpoint(&tr, &resumed);
    }
    if (rc == 0) {
        res->resumed_from = resumed ? tr.step : 0;
        if (resumed)
            log_info("lm-train: resuming from step %lld of %s/checkpoint.h5", (long long)tr.step,
                     cfg->out_dir);
        rc = train_loop(&tr, res);
    }
    if (rc == 0 && !res->stopped_early) rc = gpt2_save(tr.lm, cfg->out_dir, tr.eot_id);
    if (rc == 0) {
        res->steps_done = tr.step;
        res->n_evals = tr.n_evals;
        res->eval_steps = tr.eval_steps;
        res->eval_losses = tr.eval_losses;
        res->final_val_loss = tr.n_evals ? tr.eval_losses[tr.n_evals - 1] : NAN;
        tr.eval_steps = NULL;
        tr.eval_losses = NULL;
    }
    trainer_free(&tr);
    return rc;
}

void lmtrain_result_free(struct lmtrain_result *res) {
    free(res->eval_steps);
    free(res->eval_losses);
    res->eval_steps = NULL;
    res->eval_losses = NULL;
}
