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
#include "sae/parallel.h"
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
struct trainer {
    const struct sae_train_opts *o;
    const struct lm *lm;
    const struct token_dataset *data;
    struct sae *s;
    struct sae_objective obj;
    float *grad_mem, *m, *v; /* n_params each */
    struct sae_params g;
    int64_t *order, n_windows;
    int32_t *tokens; /* (batch,context) */
    int bos;
    int64_t n_steps, step;
    struct sae_curve *curve;
};

static void trainer_free(struct trainer *t) {
    sae_objective_free(&t->obj);
    free(t->grad_mem);
    free(t->m);
    free(t->v);
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
    sae_parallel_for(nb, 64, norm_blocks, &c);
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
    sae_parallel_for(n, 1 << 16, adam_range, &c); // elementwise: any split, same result
}

static int train_step(struct trainer *t, struct sae_curve_row *row) {
    const struct sae_train_opts *o = t->o;
    size_t np = t->s->n_params; // grad_mem is zero here: calloc'd, then zeroed by adam()
    memset(row, 0, sizeof *row);
    float scale = 1.0f / (float)o->grad_accum;
    for (int a = 0; a < o->grad_accum; a++) {
        struct sae_loss l;
        if (load_batch(t, t->step * o->grad_accum + a) < 0 ||
            sae_objective_step(&t->obj, t->s, t->tokens, scale, &t->g, &l) < 0)
            return -1;
        if (!isfinite(l.loss)) return err_set("loss is %g (diverged)", l.loss);
        row->loss += l.loss * scale;
        row->mse += l.mse * scale;
        row->sparsity += l.sparsity * scale;
        row->kl += l.kl * scale;
        row->ds_mse += l.ds_mse * scale;
        row->l0 += l.l0 * scale;
    }
    double norm = sae_grad_norm(t->grad_mem, np);
    if (!isfinite(norm)) return err_prefix("gradient norm is %g", norm);
    float clip = o->clip > 0 && norm > o->clip ? (float)(o->clip / (norm + 1e-6)) : 1.0f;
    double lr = sae_train_lr(o, t->step, t->n_steps);
    sae_adam_step(t->s->mem, t->grad_mem, t->m, t->v, np, lr, t->step + 1, clip);
    sae_refresh_norms(t->s);
    row->step = t->step;
    row->tokens = (t->step + 1) * (int64_t)o->batch * o->context * o->grad_accum;
    row->lr = lr;
    row->grad_norm = norm;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Checkpoints.
 */
static int write_checkpoint(struct trainer *t) {
    const char *path = t->o->checkpoint_path;
    char *tmp = atomic_tmp_path(path);
    if (!tmp) return -1;
    hid_t f = h5_create(tmp);
    hsize_t n = t->s->n_params;
    int rc = f < 0 ? -1 : 0;
    if (rc == 0) rc = h5_write_f32(f, "params", 1, &n, t->s->mem);
    if (rc == 0) rc = h5_write_f32(f, "adam_m", 1, &n, t->m);
    if (rc == 0) rc = h5_write_f32(f, "adam_v", 1, &n, t->v);
    if (rc == 0) rc = sae_curve_write(f, t->curve);
    if (rc == 0) rc = h5_attr_i64(f, "step", t->step);
    if (rc == 0) rc = h5_attr_i64(f, "n_steps", t->n_steps);
    if (rc == 0) rc = h5_attr_i64(f, "d_in", t->s->d_in);
    if (rc == 0) rc = h5_attr_i64(f, "d_sae", t->s->d_sae);
    if (rc == 0) rc = h5_attr_str(f, "spec_hash", t->o->spec_hash ? t->o->spec_hash : "");
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

/* 1 = resumed, 0 = no usable checkpoint, -1 = error reading one that matches. */
static int read_checkpoint(struct trainer *t) {
    const char *path = t->o->checkpoint_path;
    if (!path || !file_exists(path)) return 0;
    hid_t f = h5_open_ro(path);
    if (f < 0) {
        log_warn("%s: unreadable checkpoint ignored (%s)", path, err_msg());
        return 0;
    }
    char *hash = NULL;
    int64_t step = 0, n_steps = 0, din = 0, dsae = 0;
    int rc = 0;
    if (h5_get_attr_str(f, "spec_hash", &hash) < 0 || h5_get_attr_i64(f, "step", &step) < 0 ||
        h5_get_attr_i64(f, "n_steps", &n_steps) < 0 || h5_get_attr_i64(f, "d_in", &din) < 0 ||
        h5_get_attr_i64(f, "d_sae", &dsae) < 0) {
        log_warn("%s: incomplete checkpoint ignored (%s)", path, err_msg());
    } else if (strcmp(hash, t->o->spec_hash ? t->o->spec_hash : "") != 0 ||
               n_steps != t->n_steps || din != t->s->d_in || dsae != t->s->d_sae) {
        log_warn("%s: checkpoint of a different run (spec hash or sizes differ); starting over",
                 path);
    } else {
        size_t n = t->s->n_params;
        sae_curve_free(t->curve);
        if (read_floats(f, "params", n, t->s->mem) < 0 || read_floats(f, "adam_m", n, t->m) < 0 ||
            read_floats(f, "adam_v", n, t->v) < 0 || sae_curve_read(f, t->curve) < 0)
            rc = err_prefix("checkpoint %s", path);
        else {
            t->step = step;
            sae_refresh_norms(t->s);
            rc = 1;
        }
    }
    free(hash);
    h5_close(f);
    return rc;
}

/* ---------------------------------------------------------------------------
 * The loop.
 */
static int trainer_init(struct trainer *t, const struct sae_train_opts *o, const struct lm *lm,
                        const struct token_dataset *data, struct sae *s, struct sae_curve *curve) {
    memset(t, 0, sizeof *t);
    t->o = o;
    t->lm = lm;
    t->data = data;
    t->s = s;
    t->curve = curve;
    t->bos = o->prepend_bos && data->bos_id >= 0 ? (int)data->bos_id : -1;
    t->n_steps = sae_train_n_steps(o);
    if (o->batch < 1 || o->context < 2 || o->grad_accum < 1 || o->ratio < 1)
        return err_set("batch, context, grad_accum and ratio must be positive");
    if (data->vocab_size > lm->cfg.vocab_size)
        return err_set("%s: vocabulary %lld is larger than the model's %d", data->path,
                       (long long)data->vocab_size, lm->cfg.vocab_size);
    t->n_windows = sae_n_windows(data, o->context, t->bos);
    if (t->n_windows < 1)
        return err_set("%s: %lld tokens do not fill one window of %d", data->path,
                       (long long)data->n_tokens, o->context);
    int d = lm->cfg.d_model;
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
    if (sae_objective_init(&t->obj, &o->set, lm, s, o->batch, o->context) < 0) return -1;
    size_t np = s->n_params;
    t->grad_mem = xcalloc(np, sizeof(float));
    t->m = xcalloc(np, sizeof(float));
    t->v = xcalloc(np, sizeof(float));
    t->tokens = xmalloc((size_t)o->batch * o->context * sizeof *t->tokens);
    t->order = window_order(t->n_windows, o->seed);
    if (!t->grad_mem || !t->m || !t->v || !t->tokens || !t->order) return -1;
    sae_point_params(s, t->grad_mem, &t->g);
    return 0;
}

static int run_steps(struct trainer *t, bool *finished) {
    const struct sae_train_opts *o = t->o;
    int64_t log_every = t->n_steps / 200 > 1 ? t->n_steps / 200 : 1;
    int64_t per = (int64_t)o->batch * o->context * o->grad_accum, done_here = 0;
    struct progress pr;
    progress_begin(&pr, o->name, "tok", (double)((t->n_steps - t->step) * per));
    *finished = false;
    while (t->step < t->n_steps) {
        struct sae_curve_row row;
        if (train_step(t, &row) < 0) return err_prefix("step %lld", (long long)t->step);
        bool last = t->step == t->n_steps - 1;
        if (t->step % log_every == 0 || last) {
            if (curve_push(t->curve, &row) < 0) return -1;
            log_debug("%s step %lld: loss %.5g mse %.4g kl %.4g l0 %.1f lr %.3g", o->name,
                      (long long)t->step, row.loss, row.mse, row.kl, row.l0, row.lr);
        }
        t->step++;
        done_here++;
        progress_update(&pr, (double)(done_here * per));
        bool stop = o->stop_after_steps > 0 && done_here >= o->stop_after_steps;
        if (o->checkpoint_path && !last &&
            (t->step % o->checkpoint_every == 0 || stop) && write_checkpoint(t) < 0)
            return -1;
        if (stop && !last) break;
    }
    progress_end(&pr, (double)(done_here * per));
    *finished = t->step == t->n_steps;
    return 0;
}

int sae_train(const struct sae_train_opts *o, const struct lm *lm,
              const struct token_dataset *data, struct sae *s, struct sae_curve *curve,
              bool *finished) {
    struct trainer t;
    memset(s, 0, sizeof *s);
    memset(curve, 0, sizeof *curve);
    *finished = false;
    int rc = trainer_init(&t, o, lm, data, s, curve);
    if (rc == 0) {
        int r = read_checkpoint(&t);
        if (r < 0) rc = -1;
        else if (r > 0)
            log_info("%s: resuming from step %lld of %lld", o->name, (long long)t.step,
                     (long long)t.n_steps);
    }
    if (rc == 0) rc = run_steps(&t, finished);
    trainer_free(&t);
    if (rc < 0) {
        sae_free(s);
        sae_curve_free(curve);
        return err_prefix("train %s", o->name);
    }
    return 0;
}
