/* kl.c: chunked KL / cross-entropy between two runs of the model (kl.h).
 *
 * Per row three passes over the V logits of each run: maxima, sums of exp (so the
 * log-sum-exps), then P, Q, the KL terms and the gradient Q − P. The KL is summed
 * as Σ P·((lo − ls) − (lse_o − lse_s)), term by term, so a small KL between two
 * close distributions is not lost to cancellation between large numbers.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include "sae/kl.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/parallel.h"
#include "util/error.h"

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8f v8_load(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void v8_store(float *p, v8f v) { memcpy(p, &v, sizeof v); }

static inline v8f v8_splat(float a) { return (v8f){a, a, a, a, a, a, a, a}; }

static inline v8f v8_max(v8f a, v8f b) {
    v8i gt = a > b;
    return (v8f)(((v8i)a & gt) | ((v8i)b & ~gt));
}

static inline double v8_hsum(v8f v) {
    return (((double)v[0] + v[4]) + ((double)v[1] + v[5])) +
           (((double)v[2] + v[6]) + ((double)v[3] + v[7]));
}

/* exp for 8 lanes: x = n·ln2 + r, |r| <= ln2/2, Cephes' degree-6 polynomial for
 * e^r, 2^n through the exponent bits. Relative error about 2e-7; inputs below
 * −87 give 0 (the logits we feed are max-subtracted, so never above 0). */
static inline v8f v8_exp(v8f x) {
    x = v8_max(x, v8_splat(-87.0f));
    v8f t = x * v8_splat(1.44269504088896341f);
    v8i ti = __builtin_convertvector(t, v8i); // truncation
    v8f fi = __builtin_convertvector(ti, v8f);
    fi -= (v8f)((v8i)(fi > t) & (v8i)v8_splat(1.0f)); // floor
    v8f rnd = (v8f)((v8i)(t - fi >= v8_splat(0.5f)) & (v8i)v8_splat(1.0f));
    v8f n = fi + rnd; // round to nearest
    v8f r = x - n * v8_splat(0.693359375f) - n * v8_splat(-2.12194440e-4f);
    v8f p = v8_splat(1.9875691500e-4f);
    p = p * r + v8_splat(1.3981999507e-3f);
    p = p * r + v8_splat(8.3334519073e-3f);
    p = p * r + v8_splat(4.1665795894e-2f);
    p = p * r + v8_splat(1.6666665459e-1f);
    p = p * r + v8_splat(5.0000001201e-1f);
    p = p * r * r + r + v8_splat(1.0f);
    v8i e = (__builtin_convertvector(n, v8i) + 127) << 23;
    return p * (v8f)e;
}

static float row_max(const float *z, int V) {
    v8f m = v8_splat(-INFINITY);
    int i = 0;
    for (; i + 8 <= V; i += 8) m = v8_max(m, v8_load(z + i));
    float s = m[0];
    for (int k = 1; k < 8; k++) s = m[k] > s ? m[k] : s;
    for (; i < V; i++) s = z[i] > s ? z[i] : s;
    return s;
}

// log Σ exp(z)
static double row_lse(const float *z, int V) {
    float mx = row_max(z, V);
    v8f acc = {0}, vm = v8_splat(mx);
    int i = 0;
    for (; i + 8 <= V; i += 8) acc += v8_exp(v8_load(z + i) - vm);
    double s = v8_hsum(acc);
    for (; i < V; i++) s += exp((double)z[i] - mx);
    return mx + log(s);
}

double kl_row(const float *lo, const float *ls, int V, int target, float scale, float *dz,
              double *ce_o, double *ce_s) {
    double lse_o = row_lse(lo, V), lse_s = row_lse(ls, V);
    if (target >= 0) {
        if (ce_o) *ce_o = lse_o - lo[target];
        if (ce_s) *ce_s = lse_s - ls[target];
    }
    float fo = (float)lse_o, fs = (float)lse_s;
    float dl = (float)(lse_o - lse_s);
    v8f vfo = v8_splat(fo), vfs = v8_splat(fs), vdl = v8_splat(dl), vsc = v8_splat(scale);
    v8f acc = {0};
    int i = 0;
    for (; i + 8 <= V; i += 8) {
        v8f a = v8_load(lo + i), b = v8_load(ls + i);
        v8f p = v8_exp(a - vfo), q = v8_exp(b - vfs);
        acc += p * ((a - b) - vdl);
        if (dz) v8_store(dz + i, vsc * (q - p));
    }
    double kl = v8_hsum(acc);
    for (; i < V; i++) {
        double p = exp((double)lo[i] - lse_o), q = exp((double)ls[i] - lse_s);
        kl += p * (((double)lo[i] - ls[i]) - (lse_o - lse_s));
        if (dz) dz[i] = (float)(scale * (q - p));
    }
    return kl;
}

int kl_chunker_init(struct kl_chunker *k, const struct lm *lm) {
    memset(k, 0, sizeof *k);
    k->lm = lm;
    k->V = lm->cfg.vocab_size;
    size_t n = (size_t)KL_CHUNK_ROWS * k->V;
    k->lo = xmalloc(n * sizeof(float));
    k->ls = xmalloc(n * sizeof(float));
    if (!k->lo || !k->ls) {
        kl_chunker_free(k);
        return err_prefix("kl: logit chunks");
    }
    return 0;
}

void kl_chunker_free(struct kl_chunker *k) {
    free(k->lo);
    free(k->ls);
    memset(k, 0, sizeof *k);
}

struct rows_ctx {
    struct kl_chunker *k;
    const int32_t *targets; /* of this chunk's rows, or NULL */
    float scale;
    bool grad;
};

static void rows_range(void *vctx, int thread, size_t r0, size_t r1) {
    (void)thread;
    const struct rows_ctx *c = vctx;
    struct kl_chunker *k = c->k;
    for (size_t r = r0; r < r1; r++) {
        float *ls = k->ls + r * k->V;
        int tg = c->targets ? c->targets[r] : -1;
        k->row_kl[r] = kl_row(k->lo + r * k->V, ls, k->V, tg, c->scale, c->grad ? ls : NULL,
                              &k->row_ce_o[r], &k->row_ce_s[r]);
    }
}

int kl_compare(struct kl_chunker *k, const float *lnf_orig, const float *lnf_sae, int N,
               const int32_t *targets, float kl_scale, float *d_lnf, struct kl_totals *t) {
    const struct lm *lm = k->lm;
    int C = lm->cfg.d_model, V = k->V;
    for (int i = 0; targets && i < N; i++)
        if (targets[i] >= V)
            return err_set("kl: target token %d of row %d outside vocab %d", targets[i], i, V);
    for (int r0 = 0; r0 < N; r0 += KL_CHUNK_ROWS) {
        int n = N - r0 < KL_CHUNK_ROWS ? N - r0 : KL_CHUNK_ROWS;
        const float *xo = lnf_orig + (size_t)r0 * C, *xs = lnf_sae + (size_t)r0 * C;
        if (lm_unembed(lm, xo, n, k->lo) < 0 || lm_unembed(lm, xs, n, k->ls) < 0)
            return err_prefix("kl: logits of rows %d..%d", r0, r0 + n - 1);
        // rows in parallel, each into its own slot; summed below in row order
        struct rows_ctx c = {k, targets ? targets + r0 : NULL, kl_scale, d_lnf != NULL};
        parallel_for((size_t)n, 8, rows_range, &c);
        for (int r = 0; r < n; r++) {
            t->kl_sum += k->row_kl[r];
            t->n_rows++;
            if (targets && targets[r0 + r] >= 0) {
                t->ce_orig_sum += k->row_ce_o[r];
                t->ce_sae_sum += k->row_ce_s[r];
                t->n_ce++;
            }
        }
        if (d_lnf &&
            lm_unembed_backward(lm, xs, k->ls, n, d_lnf + (size_t)r0 * C, NULL) < 0)
            return err_prefix("kl: backward of rows %d..%d", r0, r0 + n - 1);
    }
    return 0;
}
