/* sae.c: SAE parameters, initialisation, sparse encode/decode and backward (sae.h).
 *
 * The encoder is one sgemm per chunk of SAE_CHUNK rows followed by a scan that
 * keeps the positive pre-activations (AVX movemask when available). The CSC copy
 * of the codes drives the backward pass feature by feature: for feature j only
 * its own rows are visited, so W_enc[j], W_dec[j] and their gradients are each
 * touched once per batch. On dense codes, sgemm on dense chunks does the same
 * work at BLAS speed.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include "sae/sae.h"

#include <cblas.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

#include "util/parallel.h"
#include "util/error.h"

/* ---------------------------------------------------------------------------
 * Vector helpers (fixed reduction order, so results do not depend on alignment).
 */
typedef float v8f __attribute__((vector_size(32)));

static inline v8f v8_load(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void v8_store(float *p, v8f v) { memcpy(p, &v, sizeof v); }

static float vdot(const float *x, const float *y, int n) {
    v8f a = {0}, b = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a += v8_load(x + i) * v8_load(y + i);
        b += v8_load(x + i + 8) * v8_load(y + i + 8);
    }
    for (; i + 8 <= n; i += 8) a += v8_load(x + i) * v8_load(y + i);
    a += b;
    float s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

// y += a * x
static void vaxpy(float *y, float a, const float *x, int n) {
    int i = 0;
    v8f av = {a, a, a, a, a, a, a, a};
    for (; i + 8 <= n; i += 8) v8_store(y + i, v8_load(y + i) + av * v8_load(x + i));
    for (; i < n; i++) y[i] += a * x[i];
}

/* ---------------------------------------------------------------------------
 * Parameters.
 */
void sae_point_params(const struct sae *s, float *mem, struct sae_params *p) {
    size_t ed = (size_t)s->d_sae * s->d_in;
    p->W_enc = mem;
    p->b_enc = p->W_enc + ed;
    p->W_dec = p->b_enc + s->d_sae;
    p->b_dec = p->W_dec + ed;
}

int sae_new(struct sae *s, int d_in, int d_sae) {
    memset(s, 0, sizeof *s);
    if (d_in < 1 || d_sae < 1 || (int64_t)d_in * d_sae > (int64_t)1 << 34)
        return err_set("sae: sizes must be positive, got d_in=%d d_sae=%d", d_in, d_sae);
    s->d_in = d_in;
    s->d_sae = d_sae;
    s->n_params = 2 * (size_t)d_in * d_sae + (size_t)d_in + (size_t)d_sae;
    s->mem = xcalloc(s->n_params, sizeof(float));
    s->inv_norm = xcalloc((size_t)d_sae, sizeof(float));
    if (!s->mem || !s->inv_norm) {
        sae_free(s);
        return err_prefix("sae d_in=%d d_sae=%d", d_in, d_sae);
    }
    sae_point_params(s, s->mem, &s->p);
    return 0;
}

void sae_free(struct sae *s) {
    free(s->mem);
    free(s->inv_norm);
    memset(s, 0, sizeof *s);
}

static void norms_range(void *ctx, int thread, size_t j0, size_t j1) {
    (void)thread;
    struct sae *s = ctx;
    for (size_t j = j0; j < j1; j++) {
        const float *w = s->p.W_dec + j * s->d_in;
        double n = sqrt((double)vdot(w, w, s->d_in));
        s->inv_norm[j] = n > 0 ? (float)(1.0 / n) : 0.0f;
    }
}

void sae_refresh_norms(struct sae *s) { parallel_for((size_t)s->d_sae, 1024, norms_range, s); }

void sae_normalised_decoder(const struct sae *s, float *D) {
    for (int j = 0; j < s->d_sae; j++) {
        const float *w = s->p.W_dec + (size_t)j * s->d_in;
        float *d = D + (size_t)j * s->d_in;
        for (int i = 0; i < s->d_in; i++) d[i] = w[i] * s->inv_norm[j];
    }
}

/* In-place Cholesky of the symmetric positive definite n×n G (row-major, lower
 * triangle used): G = L Lᵀ with L left in the lower triangle. -1 if not SPD. */
static int cholesky_lower(double *G, int n) {
    for (int j = 0; j < n; j++) {
        double *gj = G + (size_t)j * n;
        double d = gj[j];
        for (int k = 0; k < j; k++) d -= gj[k] * gj[k];
        if (!(d > 0)) return -1;
        d = sqrt(d);
        gj[j] = d;
        for (int i = j + 1; i < n; i++) {
            double *gi = G + (size_t)i * n;
            double s = gi[j];
            for (int k = 0; k < j; k++) s -= gi[k] * gj[k];
            gi[j] = s / d;
        }
    }
    return 0;
}

/* M (m,n), m >= n: replace M by M L⁻ᵀ where MᵀM = L Lᵀ, so that MᵀM = I
 * (orthonormal columns). Done twice ("CholeskyQR2") in double: the second pass
 * removes the rounding left by the first. -1 if M is numerically rank-deficient. */
static int orthonormalise_columns(double *M, int m, int n) {
    double *G = xmalloc((size_t)n * n * sizeof *G);
    if (!G) return -1;
    for (int pass = 0; pass < 2; pass++) {
        // G (n,n) = Mᵀ M, upper triangle; mirror it into the lower one
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, m, 1.0, M, n, 0.0, G, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++) G[(size_t)i * n + j] = G[(size_t)j * n + i];
        if (cholesky_lower(G, n) < 0) {
            free(G);
            return err_set("sae: decoder initialisation: Gaussian matrix is rank-deficient");
        }
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, m, n, 1.0, G,
                    n, M, n);
    }
    free(G);
    return 0;
}

/* splitmix64: spreads a user seed over the generator's seed space (GSL's mt19937
 * maps seed 0 to its default seed, which would make seeds 0 and 4357 equal). */
static unsigned long mix_seed(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    return (unsigned long)(x | 1u);
}

/* U(-b, b) and N(0,1) from gsl_rng alone (gsl_randist.h would pull in GSL's own
 * CBLAS declarations, which clash with OpenBLAS's cblas.h). */
static double uniform_pm(gsl_rng *r, double b) { return (2.0 * gsl_rng_uniform(r) - 1.0) * b; }

// Box-Muller: fills n normals
static void gaussians(gsl_rng *r, double *out, size_t n) {
    for (size_t i = 0; i < n; i += 2) {
        double u = gsl_rng_uniform_pos(r), v = gsl_rng_uniform(r);
        double m = sqrt(-2.0 * log(u)), a = 2.0 * M_PI * v;
        out[i] = m * cos(a);
        if (i + 1 < n) out[i + 1] = m * sin(a);
    }
}

int sae_init(struct sae *s, uint64_t seed) {
    int din = s->d_in, dsae = s->d_sae;
    size_t ed = (size_t)din * dsae;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    double *M = xmalloc(ed * sizeof *M);
    if (!r || !M) {
        if (r) gsl_rng_free(r);
        free(M);
        return err_prefix("sae_init");
    }
    gsl_rng_set(r, mix_seed(seed));
    double be = 1.0 / sqrt((double)din), bd = 1.0 / sqrt((double)dsae);
    for (size_t i = 0; i < ed; i++) s->p.W_enc[i] = (float)uniform_pm(r, be);
    for (int i = 0; i < dsae; i++) s->p.b_enc[i] = (float)uniform_pm(r, be);
    int rc = -1;
    for (int attempt = 0; attempt < 4 && rc < 0; attempt++) {
        // M (d_sae,d_in) = paper W_dec (d_in,d_sae) transposed: orthonormal columns of M
        // are orthonormal rows of W_dec.
        gaussians(r, M, ed);
        rc = orthonormalise_columns(M, dsae, din);
    }
    if (rc == 0) {
        for (size_t i = 0; i < ed; i++) s->p.W_dec[i] = (float)M[i];
        for (int i = 0; i < din; i++) s->p.b_dec[i] = (float)uniform_pm(r, bd);
        sae_refresh_norms(s);
    }
    free(M);
    gsl_rng_free(r);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Work buffers and codes.
 */
int sae_work_init(struct sae_work *w, const struct sae *s) {
    memset(w, 0, sizeof *w);
    size_t n = (size_t)SAE_CHUNK * s->d_sae;
    w->chunk = xmalloc(n * sizeof(float));
    w->chunk2 = xmalloc(n * sizeof(float));
    w->vec = xmalloc(2 * (size_t)s->d_in * PARALLEL_MAX_THREADS * sizeof(float));
    if (!w->chunk || !w->chunk2 || !w->vec) {
        sae_work_free(w);
        return err_prefix("sae work buffers");
    }
    return 0;
}

void sae_work_free(struct sae_work *w) {
    free(w->chunk);
    free(w->chunk2);
    free(w->gdir);
    free(w->vec);
    memset(w, 0, sizeof *w);
}

void sae_codes_free(struct sae_codes *c) {
    free(c->row_ptr);
    free(c->col);
    free(c->val);
    free(c->feat_ptr);
    free(c->row);
    free(c->fval);
    memset(c, 0, sizeof *c);
}

static int codes_reserve(struct sae_codes *c, int64_t need) {
    if (need <= c->cap) return 0;
    int64_t cap = c->cap ? c->cap : 4096;
    while (cap < need) cap += cap / 2;
    int32_t *col = xrealloc(c->col, (size_t)cap * sizeof *col);
    if (!col) return -1;
    c->col = col;
    float *val = xrealloc(c->val, (size_t)cap * sizeof *val);
    if (!val) return -1;
    c->val = val;
    c->cap = cap;
    return 0;
}

static int codes_begin(struct sae_codes *c, int n_rows, int d_sae) {
    if (n_rows != c->n_rows || d_sae != c->d_sae || !c->row_ptr) {
        free(c->row_ptr);
        free(c->feat_ptr);
        c->row_ptr = xmalloc(((size_t)n_rows + 1) * sizeof *c->row_ptr);
        c->feat_ptr = xmalloc(((size_t)d_sae + 1) * sizeof *c->feat_ptr);
        if (!c->row_ptr || !c->feat_ptr) return -1;
        c->n_rows = n_rows;
        c->d_sae = d_sae;
    }
    c->nnz = 0;
    c->row_ptr[0] = 0;
    c->by_feature = false;
    return 0;
}

bool sae_codes_dense(const struct sae_codes *c) {
    return (double)c->nnz > SAE_DENSE_THRESHOLD * (double)c->n_rows * c->d_sae;
}

bool sae_use_dense(const struct sae_work *w, const struct sae_codes *c) {
    if (w->path == SAE_PATH_DENSE) return true;
    if (w->path == SAE_PATH_SPARSE) return false;
    return sae_codes_dense(c);
}

double sae_codes_l1(const struct sae_codes *c) {
    double s = 0;
    for (int64_t i = 0; i < c->nnz; i++) s += c->val[i];
    return s;
}

// feat_ptr = where each feature's entries start in the CSC order (counts, prefix-summed)
static void count_features(struct sae_codes *c) {
    int64_t *fp = c->feat_ptr;
    memset(fp, 0, ((size_t)c->d_sae + 1) * sizeof *fp);
    for (int64_t i = 0; i < c->nnz; i++) fp[c->col[i] + 1]++;
    for (int j = 0; j < c->d_sae; j++) fp[j + 1] += fp[j];
}

int sae_codes_by_feature(struct sae_codes *c) {
    if (c->by_feature) return 0;
    if (c->fcap < c->nnz || !c->row) {
        int64_t cap = c->nnz > c->cap ? c->nnz : c->cap;
        if (cap < 1) cap = 1;
        free(c->row);
        free(c->fval);
        c->row = xmalloc((size_t)cap * sizeof *c->row);
        c->fval = xmalloc((size_t)cap * sizeof *c->fval);
        if (!c->row || !c->fval) {
            c->fcap = 0;
            return err_prefix("sae codes (%lld entries)", (long long)cap);
        }
        c->fcap = cap;
    }
    // counting sort; rows are visited in order, so rows within a feature ascend.
    // fp[j] is used as the insertion cursor and restored afterwards.
    int64_t *fp = c->feat_ptr;
    for (int r = 0; r < c->n_rows; r++)
        for (int64_t i = c->row_ptr[r]; i < c->row_ptr[r + 1]; i++) {
            int64_t at = fp[c->col[i]]++;
            c->row[at] = r;
            c->fval[at] = c->val[i];
        }
    for (int j = c->d_sae; j > 0; j--) fp[j] = fp[j - 1];
    fp[0] = 0;
    c->by_feature = true;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Encoder: pre (R,d_sae) = x (R,d_in) · W_encᵀ; c = ReLU(pre + b_enc), sparse.
 */
static int64_t keep_positive(const float *pre, const float *b, int n, int32_t *col, float *val) {
    int64_t k = 0;
    int j = 0;
#ifdef __AVX__
    __m256 zero = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_add_ps(_mm256_loadu_ps(pre + j), _mm256_loadu_ps(b + j));
        int m = _mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ));
        if (!m) continue;
        float t[8];
        _mm256_storeu_ps(t, v);
        while (m) {
            int q = __builtin_ctz((unsigned)m);
            col[k] = j + q;
            val[k++] = t[q];
            m &= m - 1;
        }
    }
#endif
    for (; j < n; j++) {
        float v = pre[j] + b[j];
        if (v > 0) {
            col[k] = j;
            val[k++] = v;
        }
    }
    return k;
}

int sae_encode(const struct sae *s, struct sae_work *w, const float *x, int N,
               struct sae_codes *codes) {
    int din = s->d_in, dsae = s->d_sae;
    if (codes_begin(codes, N, dsae) < 0) return err_prefix("sae_encode: %d rows", N);
    for (int r0 = 0; r0 < N; r0 += SAE_CHUNK) {
        int R = N - r0 < SAE_CHUNK ? N - r0 : SAE_CHUNK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, dsae, din, 1.0f,
                    x + (size_t)r0 * din, din, s->p.W_enc, din, 0.0f, w->chunk, dsae);
        for (int r = 0; r < R; r++) {
            if (codes_reserve(codes, codes->nnz + dsae) < 0)
                return err_prefix("sae_encode: codes for %d rows", N);
            codes->nnz += keep_positive(w->chunk + (size_t)r * dsae, s->p.b_enc, dsae,
                                        codes->col + codes->nnz, codes->val + codes->nnz);
            codes->row_ptr[r0 + r + 1] = codes->nnz;
        }
    }
    count_features(codes); // the CSC copy itself only when a sparse backward needs it
    codes->by_feature = false;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Decoder: x̂ (N,d_in) = Σ_j c_j/‖w_j‖ w_j + b_dec.
 */
// Dense (R,d_sae) chunk of rows [r0, r0+R) of the codes, each value times scale[j]
// (scale NULL = 1).
static void dense_rows(const struct sae_codes *c, int r0, int R, const float *scale, float *out) {
    memset(out, 0, (size_t)R * c->d_sae * sizeof *out);
    for (int r = 0; r < R; r++) {
        float *o = out + (size_t)r * c->d_sae;
        for (int64_t i = c->row_ptr[r0 + r]; i < c->row_ptr[r0 + r + 1]; i++)
            o[c->col[i]] = scale ? c->val[i] * scale[c->col[i]] : c->val[i];
    }
}

struct decode_ctx {
    const struct sae *s;
    const struct sae_codes *c;
    float *xhat;
};

// rows [r0, r1) of x̂ += Σ_active c_j/‖w_j‖ w_j (x̂ already holds b_dec)
static void decode_rows(void *vctx, int thread, size_t r0, size_t r1) {
    (void)thread;
    struct decode_ctx *x = vctx;
    int din = x->s->d_in;
    for (size_t r = r0; r < r1; r++) {
        float *o = x->xhat + r * din;
        for (int64_t i = x->c->row_ptr[r]; i < x->c->row_ptr[r + 1]; i++) {
            int j = x->c->col[i];
            vaxpy(o, x->c->val[i] * x->s->inv_norm[j], x->s->p.W_dec + (size_t)j * din, din);
        }
    }
}

int sae_decode(const struct sae *s, struct sae_work *w, const struct sae_codes *c, float *xhat) {
    int din = s->d_in, dsae = s->d_sae, N = c->n_rows;
    for (int r = 0; r < N; r++) memcpy(xhat + (size_t)r * din, s->p.b_dec, din * sizeof *xhat);
    if (sae_use_dense(w, c)) {
        for (int r0 = 0; r0 < N; r0 += SAE_CHUNK) {
            int R = N - r0 < SAE_CHUNK ? N - r0 : SAE_CHUNK;
            dense_rows(c, r0, R, s->inv_norm, w->chunk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, din, dsae, 1.0f, w->chunk,
                        dsae, s->p.W_dec, din, 1.0f, xhat + (size_t)r0 * din, din);
        }
        return 0;
    }
    struct decode_ctx ctx = {s, c, xhat};
    parallel_for((size_t)N, 64, decode_rows, &ctx);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Backward.
 */
// grad_w (d_in) += (g − D (D·g)) / ‖w‖ with D = w/‖w‖: the normalisation's Jacobian.
static void project_direction(float *grad_w, const float *w, float inv, const float *g, int n) {
    float wg = vdot(w, g, n) * inv * inv; // (D·g)/‖w‖ = (w·g)/‖w‖²
    for (int i = 0; i < n; i++) grad_w[i] += inv * g[i] - wg * w[i] * inv;
}

struct backward_ctx {
    const struct sae *s;
    struct sae_work *w;
    const float *x, *dxhat;
    const struct sae_codes *c;
    float l1;
    const struct sae_params *g;
};

// One active feature j: dc = D_j·dx̂ + l1 per entry, dW_enc[j] += dpre x, db_enc[j],
// and dW_dec[j] through the normalisation from g_j = Σ c dx̂. D, gd: d_in scratch.
static void backward_feature(const struct backward_ctx *b, int j, float *D, float *gd) {
    const struct sae *s = b->s;
    const struct sae_codes *c = b->c;
    int din = s->d_in;
    const float *wj = s->p.W_dec + (size_t)j * din;
    float inv = s->inv_norm[j];
    float *dWe = b->g->W_enc + (size_t)j * din;
    if (b->dxhat) {
        for (int i = 0; i < din; i++) D[i] = wj[i] * inv;
        memset(gd, 0, din * sizeof *gd);
    }
    float db = 0;
    for (int64_t e = c->feat_ptr[j]; e < c->feat_ptr[j + 1]; e++) {
        const float *xr = b->x + (size_t)c->row[e] * din;
        float dpre = b->l1;
        if (b->dxhat) {
            const float *dr = b->dxhat + (size_t)c->row[e] * din;
            dpre += vdot(D, dr, din);       // dc = D_j · dx̂
            vaxpy(gd, c->fval[e], dr, din); // g_j += c dx̂
        }
        db += dpre;
        vaxpy(dWe, dpre, xr, din); // dW_enc[j] += dpre x
    }
    b->g->b_enc[j] += db;
    if (b->dxhat) project_direction(b->g->W_dec + (size_t)j * din, wj, inv, gd, din);
}

/* Work is split by entries, not features, for balance: a thread takes the
 * features whose first entry lies in its range [e0, e1). */
static void backward_range(void *vctx, int thread, size_t e0, size_t e1) {
    const struct backward_ctx *b = vctx;
    const int64_t *fp = b->c->feat_ptr;
    int din = b->s->d_in, lo = 0, hi = b->s->d_sae;
    while (lo < hi) { // first feature with fp[j] >= e0
        int mid = (lo + hi) / 2;
        if (fp[mid] < (int64_t)e0) lo = mid + 1;
        else hi = mid;
    }
    float *D = b->w->vec + (size_t)thread * 2 * din, *gd = D + din;
    for (int j = lo; j < b->s->d_sae && fp[j] < (int64_t)e1; j++)
        if (fp[j + 1] > fp[j]) backward_feature(b, j, D, gd);
}

static int backward_sparse(const struct sae *s, struct sae_work *w, const float *x,
                           struct sae_codes *c, const float *dxhat, float l1,
                           const struct sae_params *g) {
    if (sae_codes_by_feature(c) < 0) return err_prefix("sae backward");
    struct backward_ctx b = {s, w, x, dxhat, c, l1, g};
    parallel_for((size_t)c->nnz, 256, backward_range, &b);
    return 0;
}

struct project_ctx {
    const struct sae *s;
    const struct sae_work *w;
    const struct sae_codes *c;
    const struct sae_params *g;
};

static void project_range(void *vctx, int thread, size_t j0, size_t j1) {
    (void)thread;
    const struct project_ctx *p = vctx;
    int din = p->s->d_in;
    for (size_t j = j0; j < j1; j++)
        if (p->c->feat_ptr[j + 1] > p->c->feat_ptr[j])
            project_direction(p->g->W_dec + j * din, p->s->p.W_dec + j * din, p->s->inv_norm[j],
                              p->w->gdir + j * din, din);
}

static int backward_dense(const struct sae *s, struct sae_work *w, const float *x,
                          struct sae_codes *c, const float *dxhat, float l1,
                          const struct sae_params *g) {
    int din = s->d_in, dsae = s->d_sae, N = c->n_rows;
    if (dxhat && !w->gdir) {
        w->gdir = xmalloc((size_t)dsae * din * sizeof(float));
        if (!w->gdir) return err_prefix("sae backward");
    }
    if (dxhat) memset(w->gdir, 0, (size_t)dsae * din * sizeof(float));
    for (int r0 = 0; r0 < N; r0 += SAE_CHUNK) {
        int R = N - r0 < SAE_CHUNK ? N - r0 : SAE_CHUNK;
        const float *xr = x + (size_t)r0 * din;
        const float *dr = dxhat ? dxhat + (size_t)r0 * din : NULL;
        // dC (R,d_sae) = dx̂ (R,d_in) · W_decᵀ, then dpre = dC/‖w‖ + l1 where c > 0
        if (dr)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, dsae, din, 1.0f, dr, din,
                        s->p.W_dec, din, 0.0f, w->chunk2, dsae);
        memset(w->chunk, 0, (size_t)R * dsae * sizeof(float));
        for (int r = 0; r < R; r++) {
            const float *dc = w->chunk2 + (size_t)r * dsae;
            float *dp = w->chunk + (size_t)r * dsae;
            for (int64_t i = c->row_ptr[r0 + r]; i < c->row_ptr[r0 + r + 1]; i++) {
                int j = c->col[i];
                float v = l1 + (dr ? dc[j] * s->inv_norm[j] : 0.0f);
                dp[j] = v;
                g->b_enc[j] += v;
            }
        }
        // dW_enc (d_sae,d_in) += dpreᵀ (d_sae,R) · x (R,d_in)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dsae, din, R, 1.0f, w->chunk, dsae,
                    xr, din, 1.0f, g->W_enc, din);
        if (!dr) continue;
        // gdir (d_sae,d_in) += Cᵀ (d_sae,R) · dx̂ (R,d_in)
        dense_rows(c, r0, R, NULL, w->chunk2);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dsae, din, R, 1.0f, w->chunk2, dsae,
                    dr, din, 1.0f, w->gdir, din);
    }
    if (dxhat) {
        struct project_ctx p = {s, w, c, g};
        parallel_for((size_t)dsae, 1024, project_range, &p);
    }
    return 0;
}

int sae_backward(const struct sae *s, struct sae_work *w, const float *x,
                 struct sae_codes *codes, const float *dxhat, float l1_grad,
                 const struct sae_params *grads) {
    int din = s->d_in;
    if (dxhat) // db_dec = Σ_rows dx̂
        for (int r = 0; r < codes->n_rows; r++) vaxpy(grads->b_dec, 1.0f, dxhat + (size_t)r * din, din);
    if (sae_use_dense(w, codes)) return backward_dense(s, w, x, codes, dxhat, l1_grad, grads);
    return backward_sparse(s, w, x, codes, dxhat, l1_grad, grads);
}
