/* train.c: the SAE training loop (see train.h for the schedule, data order and
 * checkpoint contract).
 *
 * One optimiser step: zero the gradient buffer, run grad_accum micro-batches
 * through the objective (each adds 1/grad_accum of its gradient), clip by the
 * global norm, Adam, refresh the decoder norms. Nothing else carries state from
 * step to step, which is what makes resuming exact.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include "sae/train.h"

#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

#include "io/atomic.h"
#include "io/h5.h"
#include "util/parallel.h"
#include "util/error.h"
#include "util/log.h"

/* ---------------------------------------------------------------------------
 * Curve.
 */
void sae_curve_free(struct sae_curve *c) {
    free(c->rows);
    memset(c, 0, sizeof *c);
}

static int curve_push(struct sae_curve *c, const struct sae_curve_row *r) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 256;
        struct sae_curve_row *rows = xrealloc(c->rows, (size_t)cap * sizeof *rows);
        if (!rows) return -1;
        c->rows = rows;
        c->cap = cap;
    }
    c->rows[c->n++] = *r;
    return 0;
}

#define CURVE_F64(X) X(loss) X(mse) X(sparsity) X(kl) X(ds_mse) X(l0) X(lr) X(grad_norm)

int sae_curve_write(hid_t loc, const struct sae_curve *c) {
    hsize_t n = (hsize_t)c->n;
    int64_t *iv = xmalloc((n ? n : 1) * sizeof *iv);
    double *dv = xmalloc((n ? n : 1) * sizeof *dv);
    int rc = (!iv || !dv) ? -1 : 0;
#define WRITE_I(field)                                                                         \
    if (rc == 0) {                                                                             \
        for (hsize_t i = 0; i < n; i++) iv[i] = c->rows[i].field;                              \
        rc = h5_write(loc, "curve/" #field, H5T_NATIVE_INT64, 1, &n, iv);                      \
    }
#define WRITE_F(field)                                                                         \
    if (rc == 0) {                                                                             \
        for (hsize_t i = 0; i < n; i++) dv[i] = c->rows[i].field;                              \
        rc = h5_write(loc, "curve/" #field, H5T_NATIVE_DOUBLE, 1, &n, dv);                     \
    }
    WRITE_I(step)
    WRITE_I(tokens)
    CURVE_F64(WRITE_F)
#undef WRITE_I
#undef WRITE_F
    free(iv);
    free(dv);
    return rc < 0 ? err_prefix("training curve") : 0;
}

int sae_curve_read(hid_t loc, struct sae_curve *c) {
    memset(c, 0, sizeof *c);
    int nd;
    hsize_t dims[8];
    if (h5_shape(loc, "curve/step", 8, &nd, dims) < 0 || nd != 1)
        return err_prefix("training curve");
    int n = (int)dims[0];
    c->rows = xcalloc(n ? (size_t)n : 1, sizeof *c->rows);
    if (!c->rows) return -1;
    c->n = c->cap = n;
    hsize_t expect = (hsize_t)n;
    int rc = 0;
    void *buf = NULL;
#define READ_I(field)                                                                          \
    if (rc == 0 && (rc = h5_read(loc, "curve/" #field, H5T_NATIVE_INT64, 1, &expect, NULL,     \
                                 &buf)) == 0) {                                                \
        for (int i = 0; i < n; i++) c->rows[i].field = ((int64_t *)buf)[i];                    \
        free(buf);                                                                             \
    }
#define READ_F(field)                                                                          \
    if (rc == 0 && (rc = h5_read(loc, "curve/" #field, H5T_NATIVE_DOUBLE, 1, &expect, NULL,    \
                                 &buf)) == 0) {                                                \
        for (int i = 0; i < n; i++) c->rows[i].field = ((double *)buf)[i];                     \
        free(buf);                                                                             \
    }
    READ_I(step)
    READ_I(tokens)
    CURVE_F64(READ_F)
#undef READ_I
#undef READ_F
    if (rc < 0) {
        sae_curve_free(c);
        return err_prefix("training curve");
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Data windows.
 */
int64_t sae_n_windows(const struct token_dataset *d, int context, int bos) {
    int per = bos >= 0 ? context - 1 : context;
    return per > 0 ? d->n_tokens / per : 0;
}

int sae_read_window(const struct token_dataset *d, int64_t w, int context, int bos,
                    int32_t *out) {
    int per = bos >= 0 ? context - 1 : context;
    if (bos >= 0) out[0] = bos;
    return token_dataset_read(d, w * per, per, bos >= 0 ? out + 1 : out);
}

/* splitmix64 finaliser: independent streams from one user seed. */
static unsigned long stream_seed(uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull);
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    return (unsigned long)(x | 1u);
}

static int64_t *window_order(int64_t n, uint64_t seed) {
    int64_t *order = xmalloc((size_t)n * sizeof *order);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!order || !r) {
        free(order);
        if (r) gsl_rng_free(r);
        return NULL;
    }
    gsl_rng_set(r, stream_seed(seed, 2));
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) { // Fisher-Yates
        int64_t j = (int64_t)(gsl_rng_uniform(r) * (double)(i + 1));
        if (j > i) j = i;
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    gsl_rng_free(r);
    return order;
}

/* ---------------------------------------------------------------------------
 * Schedule.
 */
int64_t sae_train_n_steps(const struct sae_train_opts *o) {
    int64_t per = (int64_t)o->batch * o->context * o->grad_accum;
    return (o->train_tokens + per - 1) / per;
}

double sae_train_lr(const struct sae_train_opts *o, int64_t step, int64_t n_steps) {
    int64_t W = llround(o->warmup_fraction * (double)n_steps);
    if (step < W) return o->lr * (double)(step + 1) / (double)W;
    double span = (double)(n_steps - W), f = o->min_lr_fraction;
    double progress = span > 0 ? (double)(step - W) / span : 1.0;
    return o->lr * (f + (1 - f) * 0.5 * (1 + cos(M_PI * progress)));
}

/* ---------------------------------------------------------------------------
 * The trainer.
 */
/* ---------------------------------------------------------------------------
 * The trainer: one or more SAEs of the same layer and data order, in lockstep.
 * Each micro-batch's original run is computed once and read by every member.
 */
struct member {
    const struct sae_train_opts *o;
    struct sae *s;
    struct sae_curve *curve;
    struct sae_objective obj;
    float *grad_mem, *m, *v; /* n_params each */
    struct sae_params g;
    struct sae_curve_row row; /* the step being accumulated */
};

struct trainer {
    const struct sae_train_opts *o; /* members[0]'s: the shared data and step options */
    const struct lm *lm;
    const struct token_dataset *data;
    int n;
    struct member *mem;
    struct lm_acts *orig; /* the shared original run */
    bool full;            /* some member is e2e: run the whole original model */
    int64_t *order, n_windows;
    int32_t *tokens; /* (batch,context) */
    int bos;
    int64_t n_steps, step;
};

static void trainer_free(struct trainer *t) {
    for (int i = 0; t->mem && i < t->n; i++) {
        struct member *m = &t->mem[i];
        sae_objective_free(&m->obj);
        free(m->grad_mem);
        free(m->m);
        free(m->v);
    }
    free(t->mem);
    lm_acts_free(t->orig);
    free(t->order);
    free(t->tokens);
}

static int load_batch(struct trainer *t, int64_t micro) {
    const struct sae_train_opts *o = t->o;
    for (int b = 0; b < o->batch; b++) {
        int64_t k = (micro * o->batch + b) % t->n_windows;
        if (sae_read_window(t->data, t->order[k], o->context, t->bos,
                            t->tokens + (size_t)b * o->context) < 0)
            return -1;
    }
    return 0;
}

typedef float v8f __attribute__((vector_size(32)));

// ‖g‖: 8-lane float sums over blocks of NORM_BLOCK, each block's sum in double, the
// block sums added in order: the same result for any number of threads.
#define NORM_BLOCK 4096

struct norm_ctx {
    const float *g;
    size_t n;
    double *block;
};

static void norm_blocks(void *vctx, int thread, size_t b0, size_t b1) {
    (void)thread;
    struct norm_ctx *c = vctx;
    for (size_t b = b0; b < b1; b++) {
        size_t i = b * NORM_BLOCK, end = i + NORM_BLOCK < c->n ? i + NORM_BLOCK : c->n;
        v8f acc = {0};
        for (; i + 8 <= end; i += 8) {
            v8f x;
            memcpy(&x, c->g + i, sizeof x);
            acc += x * x;
        }
        double s = 0;
        for (int k = 0; k < 8; k++) s += acc[k];
        for (; i < end; i++) s += (double)c->g[i] * c->g[i];
        c->block[b] = s;
    }
}

double sae_grad_norm(const float *g, size_t n) {
    size_t nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
    struct norm_ctx c = {g, n, xmalloc((nb ? nb : 1) * sizeof(double))};
    if (!c.block) return NAN; // error set by xmalloc
    parallel_for(nb, 64, norm_blocks, &c);
    double s = 0;
    for (size_t b = 0; b < nb; b++) s += c.block[b];
    free(c.block);
    return sqrt(s);
}

/* torch.optim.Adam, one step (t = 1-based step count) with the gradient gscale·g.
 * One pass over the four buffers; it also zeroes g for the next step's
 * accumulation (cheaper than a separate memset of the whole gradient). */
struct adam_ctx {
    float *p, *g, *m, *v;
    float step, bc2s, gscale;
};

static void adam_range(void *vctx, int thread, size_t i, size_t n) {
    (void)thread;
    const struct adam_ctx *c = vctx;
    float *p = c->p, *g = c->g, *m = c->m, *v = c->v;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float step = c->step, bc2s = c->bc2s, gscale = c->gscale;
#ifdef __AVX__ // the same arithmetic 8 lanes at a time (sqrtf alone does not vectorise)
    __m256 vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2), va1 = _mm256_set1_ps(1 - b1),
           va2 = _mm256_set1_ps(1 - b2), vstep = _mm256_set1_ps(step),
           vbc = _mm256_set1_ps(bc2s), veps = _mm256_set1_ps(eps), vgs = _mm256_set1_ps(gscale);
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), vgs);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(va1, gi));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + i)),
                                  _mm256_mul_ps(_mm256_mul_ps(va2, gi), gi));
        __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vbc), veps);
        __m256 pi = _mm256_sub_ps(_mm256_loadu_ps(p + i),
                                  _mm256_div_ps(_mm256_mul_ps(vstep, mi), den));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(p + i, pi);
        _mm256_storeu_ps(g + i, _mm256_setzero_ps());
    }
#endif
    for (; i < n; i++) {
        float gi = g[i] * gscale;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        p[i] -= step * m[i] / (sqrtf(v[i]) / bc2s + eps);
        g[i] = 0;
    }
}

void sae_adam_step(float *p, float *g, float *m, float *v, size_t n, double lr, int64_t t,
                   float gscale) {
    double bc1 = 1 - pow(0.9, (double)t), bc2 = 1 - pow(0.999, (double)t);
    struct adam_ctx c = {p, g, m, v, (float)(lr / bc1), (float)sqrt(bc2), gscale};
    parallel_for(n, 1 << 16, adam_range, &c); // elementwise: any split, same result
}

static void add_loss(struct sae_curve_row *row, const struct sae_loss *l, double scale) {
    row->loss += l->loss * scale;
    row->mse += l->mse * scale;
    row->sparsity += l->sparsity * scale;
    row->kl += l->kl * scale;
    row->ds_mse += l->ds_mse * scale;
    row->l0 += l->l0 * scale;
}

/* ---------------------------------------------------------------------------
 * Naming the tensor that went non-finite, so that a diverged run says where.
 */

// Index of the first non-finite element of x[0..n), or -1.
static int64_t first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return (int64_t)i;
    return -1;
}

// Which of W_enc, b_enc, W_dec, b_dec (of the parameters, or of their gradients
// when mem is a gradient buffer) holds a non-finite value: its name and the first
// bad element's index, or NULL.
static const char *nonfinite_param(const struct sae *s, float *mem, int64_t *at, float *val) {
    struct sae_params p;
    sae_point_params(s, mem, &p);
    const struct { const char *name; const float *x; size_t n; } t[] = {
        {"W_enc", p.W_enc, (size_t)s->d_sae * s->d_in},
        {"b_enc", p.b_enc, (size_t)s->d_sae},
        {"W_dec", p.W_dec, (size_t)s->d_sae * s->d_in},
        {"b_dec", p.b_dec, (size_t)s->d_in},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if ((*at = first_nonfinite(t[i].x, t[i].n)) >= 0) {
            *val = t[i].x[*at];
            return t[i].name;
        }
    return NULL;
}

// Where in the batch element i of a (B,T,C) tensor sits: "batch row b, position p
// (token id x)".
static void locate(const struct trainer *t, int64_t i, char *buf, size_t n) {
    const struct lm_acts *a = t->orig;
    int64_t row = i / t->lm->cfg.d_model;
    snprintf(buf, n, "batch row %lld, position %lld (token id %d)", (long long)(row / a->T),
             (long long)(row % a->T), t->tokens[row]);
}

static void hook_label(const struct lm *lm, int L, char *buf, size_t n) {
    if (L < lm->cfg.n_layer) snprintf(buf, n, "blocks.%d.hook_resid_pre", L);
    else snprintf(buf, n, "blocks.%d.hook_resid_post", L - 1);
}

// The loss of member m came out non-finite: blame the first tensor on its path
// that is not finite (the model's activations at the hook and after it, the SAE's
// parameters), else the loss term that overflowed, with the largest input
// activation when it is big enough to overflow a square. Sets the error; returns -1.
static int explain_nonfinite_loss(const struct trainer *t, const struct member *m,
                                  const struct sae_loss *l) {
    const struct sae_train_opts *o = m->o;
    const struct lm_acts *a = t->orig;
    size_t n = (size_t)a->B * a->T * t->lm->cfg.d_model;
    int last = t->full ? t->lm->cfg.n_layer : o->set.layer;
    char hook[64], where[128];
    for (int L = o->set.layer; L <= last; L++) {
        int64_t i = first_nonfinite(a->resid[L], n);
        if (i < 0) continue;
        hook_label(t->lm, L, hook, sizeof hook);
        locate(t, i, where, sizeof where);
        return err_set("%s: loss is not finite (diverged): the model's activations %s are %g "
                       "at %s, before the SAE",
                       o->name, hook, a->resid[L][i], where);
    }
    int64_t at;
    float v;
    const char *p = nonfinite_param(m->s, m->s->mem, &at, &v);
    if (p) return err_set("%s: loss is not finite (diverged): SAE parameter %s[%lld] is %g",
                          o->name, p, (long long)at, v);
    const struct { const char *name; double v; } terms[] = {
        {"reconstruction MSE", l->mse}, {"sparsity", l->sparsity}, {"KL", l->kl},
        {"downstream MSE", l->ds_mse}};
    const char *term = "total";
    for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++)
        if (!isfinite(terms[i].v)) {
            term = terms[i].name;
            break;
        }
    const float *x = a->resid[o->set.layer];
    size_t big = 0;
    for (size_t i = 1; i < n; i++)
        if (fabsf(x[i]) > fabsf(x[big])) big = i;
    if (fabsf(x[big]) < 1e15f)
        return err_set("%s: loss is not finite (diverged): its %s term is not finite", o->name,
                       term);
    hook_label(t->lm, o->set.layer, hook, sizeof hook);
    locate(t, (int64_t)big, where, sizeof where);
    return err_set("%s: loss is not finite (diverged): its %s term overflowed; the model's "
                   "activations %s reach %g at %s",
                   o->name, term, hook, x[big], where);
}

// Clip, Adam, refresh the norms; finish the member's curve row.
static int update(struct trainer *t, struct member *m) {
    const struct sae_train_opts *o = m->o;
    size_t np = m->s->n_params; // grad_mem is zeroed again by sae_adam_step
    double norm = sae_grad_norm(m->grad_mem, np);
    if (!isfinite(norm)) {
        int64_t at;
        float v;
        const char *p = nonfinite_param(m->s, m->grad_mem, &at, &v);
        if (p) return err_set("%s: gradient of %s[%lld] is %g (diverged)", o->name, p,
                              (long long)at, v);
        return err_set("%s: gradient norm is %g (diverged)", o->name, norm);
    }
    float clip = o->clip > 0 && norm > o->clip ? (float)(o->clip / (norm + 1e-6)) : 1.0f;
    double lr = sae_train_lr(o, t->step, t->n_steps);
    sae_adam_step(m->s->mem, m->grad_mem, m->m, m->v, np, lr, t->step + 1, clip);
    sae_refresh_norms(m->s);
    m->row.step = t->step;
    m->row.tokens = (t->step + 1) * (int64_t)o->batch * o->context * o->grad_accum;
    m->row.lr = lr;
    m->row.grad_norm = norm;
    return 0;
}

static int train_step(struct trainer *t) {
    const struct sae_train_opts *o = t->o;
    for (int i = 0; i < t->n; i++) memset(&t->mem[i].row, 0, sizeof t->mem[i].row);
    float scale = 1.0f / (float)o->grad_accum;
    for (int a = 0; a < o->grad_accum; a++) {
        if (load_batch(t, t->step * o->grad_accum + a) < 0 ||
            sae_orig_forward(t->lm, t->orig, t->tokens, o->set.layer, t->full) < 0)
            return -1;
        for (int i = 0; i < t->n; i++) {
            struct member *m = &t->mem[i];
            struct sae_loss l;
            if (sae_objective_step_given(&m->obj, m->s, t->orig, scale, &m->g, &l) < 0)
                return err_prefix("%s", m->o->name);
            if (!isfinite(l.loss)) return explain_nonfinite_loss(t, m, &l);
            add_loss(&m->row, &l, scale);
        }
    }
    for (int i = 0; i < t->n; i++)
        if (update(t, &t->mem[i]) < 0) return -1;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Checkpoints (one file per member).
 */
static int write_checkpoint(const struct trainer *t, const struct member *m) {
    const char *path = m->o->checkpoint_path;
    char *tmp = atomic_tmp_path(path);
    if (!tmp) return -1;
    hid_t f = h5_create(tmp);
    hsize_t n = m->s->n_params;
    int rc = f < 0 ? -1 : 0;
    if (rc == 0) rc = h5_write_f32(f, "params", 1, &n, m->s->mem);
    if (rc == 0) rc = h5_write_f32(f, "adam_m", 1, &n, m->m);
    if (rc == 0) rc = h5_write_f32(f, "adam_v", 1, &n, m->v);
    if (rc == 0) rc = sae_curve_write(f, m->curve);
    if (rc == 0) rc = h5_attr_i64(f, "step", t->step);
    if (rc == 0) rc = h5_attr_i64(f, "n_steps", t->n_steps);
    if (rc == 0) rc = h5_attr_i64(f, "d_in", m->s->d_in);
    if (rc == 0) rc = h5_attr_i64(f, "d_sae", m->s->d_sae);
    if (rc == 0) rc = h5_attr_str(f, "spec_hash", m->o->spec_hash ? m->o->spec_hash : "");
    if (f >= 0 && h5_close(f) < 0) rc = -1;
    if (rc == 0) rc = atomic_rename(tmp, path);
    if (rc < 0) remove(tmp);
    free(tmp);
    return rc < 0 ? err_prefix("checkpoint %s", path) : 0;
}

static int read_floats(hid_t f, const char *name, size_t n, float *out) {
    hsize_t expect = n;
    float *buf = NULL;
    if (h5_read(f, name, H5T_NATIVE_FLOAT, 1, &expect, NULL, (void **)&buf) < 0) return -1;
    memcpy(out, buf, n * sizeof *out);
    free(buf);
    return 0;
}

/* Open path and check that it is a checkpoint of this run (spec hash, step count,
 * sizes): the file and its step, or -1 when there is none usable (warned). */
static hid_t open_checkpoint(const char *path, const char *hash, int64_t n_steps, int64_t d_in,
                             int64_t d_sae, int64_t *step) {
    if (!path || !file_exists(path)) return -1;
    hid_t f = h5_open_ro(path);
    if (f < 0) {
        log_warn("%s: unreadable checkpoint ignored (%s)", path, err_msg());
        return -1;
    }
    char *h = NULL;
    int64_t ns = 0, din = 0, dsae = 0;
    bool ok = false;
    if (h5_get_attr_str(f, "spec_hash", &h) < 0 || h5_get_attr_i64(f, "step", step) < 0 ||
        h5_get_attr_i64(f, "n_steps", &ns) < 0 || h5_get_attr_i64(f, "d_in", &din) < 0 ||
        h5_get_attr_i64(f, "d_sae", &dsae) < 0)
        log_warn("%s: incomplete checkpoint ignored (%s)", path, err_msg());
    else if (strcmp(h, hash ? hash : "") != 0 || ns != n_steps || (d_in && din != d_in) ||
             (d_sae && dsae != d_sae))
        log_warn("%s: checkpoint of a different run (spec hash or sizes differ); starting over",
                 path);
    else
        ok = true;
    free(h);
    if (!ok) {
        h5_close(f);
        return -1;
    }
    return f;
}

int64_t sae_checkpoint_step(const struct sae_train_opts *o) {
    int64_t step = 0;
    hid_t f = open_checkpoint(o->checkpoint_path, o->spec_hash, sae_train_n_steps(o), 0, 0, &step);
    if (f < 0) return 0;
    h5_close(f);
    return step;
}

/* Member m's step from its checkpoint (0 when it starts fresh); -1 on a read error. */
static int64_t read_checkpoint(const struct trainer *t, struct member *m) {
    int64_t step = 0;
    hid_t f = open_checkpoint(m->o->checkpoint_path, m->o->spec_hash, t->n_steps, m->s->d_in,
                              m->s->d_sae, &step);
    if (f < 0) return 0;
    size_t n = m->s->n_params;
    sae_curve_free(m->curve);
    int rc = 0;
    if (read_floats(f, "params", n, m->s->mem) < 0 || read_floats(f, "adam_m", n, m->m) < 0 ||
        read_floats(f, "adam_v", n, m->v) < 0 || sae_curve_read(f, m->curve) < 0)
        rc = err_prefix("checkpoint %s", m->o->checkpoint_path);
    else
        sae_refresh_norms(m->s);
    h5_close(f);
    return rc < 0 ? -1 : step;
}

/* ---------------------------------------------------------------------------
 * Setup.
 */
static int same_data(const struct sae_train_opts *a, const struct sae_train_opts *b) {
    if (a->set.layer != b->set.layer || a->seed != b->seed || a->batch != b->batch ||
        a->context != b->context || a->grad_accum != b->grad_accum ||
        a->train_tokens != b->train_tokens || a->prepend_bos != b->prepend_bos)
        return err_set("%s and %s cannot train together: layer, seed, batch, context, "
                       "grad_accum, train_tokens and prepend_bos must agree",
                       a->name, b->name);
    return 0;
}

static int member_init(struct trainer *t, struct member *m, const struct sae_train_opts *o,
                       struct sae *s, struct sae_curve *curve, const struct member *lender) {
    m->o = o;
    m->s = s;
    m->curve = curve;
    int d = t->lm->cfg.d_model;
    if (o->ratio < 1) return err_set("%s: ratio must be positive", o->name);
    if (sae_new(s, d, o->ratio * d) < 0) return -1;
    if (o->init) {
        if (o->init->d_in != s->d_in || o->init->d_sae != s->d_sae)
            return err_set("initial SAE is %dx%d, expected %dx%d", o->init->d_in,
                           o->init->d_sae, s->d_in, s->d_sae);
        memcpy(s->mem, o->init->mem, s->n_params * sizeof(float));
        sae_refresh_norms(s);
    } else if (sae_init(s, o->seed) < 0) {
        return -1;
    }
    if (sae_objective_init(&m->obj, &o->set, t->lm, s, o->batch, o->context, false,
                           lender ? &lender->obj : NULL) < 0)
        return -1;
    size_t np = s->n_params;
    m->grad_mem = xcalloc(np, sizeof(float));
    m->m = xcalloc(np, sizeof(float));
    m->v = xcalloc(np, sizeof(float));
    if (!m->grad_mem || !m->m || !m->v) return -1;
    sae_point_params(s, m->grad_mem, &m->g);
    return 0;
}

static int trainer_init(struct trainer *t, int n, const struct sae_train_opts *opts,
                        const struct lm *lm, const struct token_dataset *data, struct sae *saes,
                        struct sae_curve *curves) {
    memset(t, 0, sizeof *t);
    const struct sae_train_opts *o = &opts[0];
    t->o = o;
    t->lm = lm;
    t->data = data;
    t->bos = o->prepend_bos && data->bos_id >= 0 ? (int)data->bos_id : -1;
    t->n_steps = sae_train_n_steps(o);
    if (o->batch < 1 || o->context < 2 || o->grad_accum < 1)
        return err_set("batch, context and grad_accum must be positive");
    if (data->vocab_size > lm->cfg.vocab_size)
        return err_set("%s: vocabulary %lld is larger than the model's %d", data->path,
                       (long long)data->vocab_size, lm->cfg.vocab_size);
    t->n_windows = sae_n_windows(data, o->context, t->bos);
    if (t->n_windows < 1)
        return err_set("%s: %lld tokens do not fill one window of %d", data->path,
                       (long long)data->n_tokens, o->context);
    for (int i = 1; i < n; i++)
        if (same_data(o, &opts[i]) < 0) return -1;
    t->mem = xcalloc((size_t)n, sizeof *t->mem);
    if (!t->mem) return -1;
    t->n = n;
    for (int i = 0; i < n; i++) {
        // members take turns, so each borrows the step scratch of the first member of
        // its type (or of the first member, for the codes)
        const struct member *lender = NULL;
        for (int j = 0; j < i && !lender; j++)
            if (opts[j].set.type == opts[i].set.type) lender = &t->mem[j];
        if (!lender && i > 0) lender = &t->mem[0];
        if (member_init(t, &t->mem[i], &opts[i], &saes[i], &curves[i], lender) < 0)
            return err_prefix("%s", opts[i].name);
        if (opts[i].set.type != SAE_LOCAL) t->full = true;
    }
    t->orig = lm_acts_new(lm, o->batch, o->context, false);
    t->tokens = xmalloc((size_t)o->batch * o->context * sizeof *t->tokens);
    t->order = window_order(t->n_windows, o->seed);
    if (!t->orig || !t->tokens || !t->order) return -1;
    return 0;
}

/* All members resume from their checkpoints, which must be at one step. */
static int resume(struct trainer *t) {
    for (int i = 0; i < t->n; i++) {
        int64_t step = read_checkpoint(t, &t->mem[i]);
        if (step < 0) return -1;
        if (i > 0 && step != t->step)
            return err_set("%s is at step %lld but %s at step %lld: SAEs trained together must "
                           "resume from the same step",
                           t->mem[i].o->name, (long long)step, t->mem[0].o->name,
                           (long long)t->step);
        t->step = step;
    }
    if (t->step > 0)
        log_info("%s%s: resuming from step %lld of %lld", t->o->name,
                 t->n > 1 ? " and the SAEs trained with it" : "", (long long)t->step,
                 (long long)t->n_steps);
    return 0;
}

/* ---------------------------------------------------------------------------
 * The loop.
 */
static int after_step(struct trainer *t, bool last, bool stop) {
    int64_t log_every = t->n_steps / 200 > 1 ? t->n_steps / 200 : 1;
    for (int i = 0; i < t->n; i++) {
        struct member *m = &t->mem[i];
        if (t->step % log_every == 0 || last) {
            if (curve_push(m->curve, &m->row) < 0) return -1;
            log_debug("%s step %lld: loss %.5g mse %.4g kl %.4g l0 %.1f lr %.3g", m->o->name,
                      (long long)t->step, m->row.loss, m->row.mse, m->row.kl, m->row.l0,
                      m->row.lr);
        }
    }
    t->step++;
    bool save = !last && (t->step % t->o->checkpoint_every == 0 || stop);
    for (int i = 0; save && i < t->n; i++)
        if (t->mem[i].o->checkpoint_path && write_checkpoint(t, &t->mem[i]) < 0) return -1;
    return 0;
}

static int run_steps(struct trainer *t, bool *finished) {
    const struct sae_train_opts *o = t->o;
    int64_t per = (int64_t)o->batch * o->context * o->grad_accum, done_here = 0;
    char what[160];
    if (t->n > 1) snprintf(what, sizeof what, "%s (+%d trained with it)", o->name, t->n - 1);
    else snprintf(what, sizeof what, "%s", o->name);
    struct progress pr;
    progress_begin(&pr, what, "tok", (double)((t->n_steps - t->step) * per));
    while (t->step < t->n_steps) {
        if (train_step(t) < 0) return err_prefix("step %lld", (long long)t->step);
        bool last = t->step == t->n_steps - 1;
        done_here++;
        bool stop = o->stop_after_steps > 0 && done_here >= o->stop_after_steps;
        if (after_step(t, last, stop) < 0) return -1;
        progress_update(&pr, (double)(done_here * per));
        if (stop && !last) break;
    }
    progress_end(&pr, (double)(done_here * per));
    for (int i = 0; i < t->n; i++) finished[i] = t->step == t->n_steps;
    return 0;
}

int sae_train_group(int n, const struct sae_train_opts *opts, const struct lm *lm,
                    const struct token_dataset *data, struct sae *saes, struct sae_curve *curves,
                    bool *finished) {
    if (n < 1) return err_set("sae_train_group: no SAEs");
    for (int i = 0; i < n; i++) {
        memset(&saes[i], 0, sizeof saes[i]);
        memset(&curves[i], 0, sizeof curves[i]);
        finished[i] = false;
    }
    struct trainer t;
    int rc = trainer_init(&t, n, opts, lm, data, saes, curves);
    if (rc == 0) rc = resume(&t);
    if (rc == 0) rc = run_steps(&t, finished);
    trainer_free(&t);
    if (rc < 0) {
        for (int i = 0; i < n; i++) {
            sae_free(&saes[i]);
            sae_curve_free(&curves[i]);
        }
        return err_prefix("train %s", opts[0].name);
    }
    return 0;
}

int sae_train(const struct sae_train_opts *o, const struct lm *lm,
              const struct token_dataset *data, struct sae *s, struct sae_curve *curve,
              bool *finished) {
    return sae_train_group(1, o, lm, data, s, curve, finished);
}
