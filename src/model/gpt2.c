/* gpt2.c: GPT-2 forward and backward passes, loading and saving (see gpt2.h).
 *
 * The maths, per block l (pre-LN), for activations x of shape (B,T,C):
 *     h   = x + attn(ln_1(x))       attn: causal, softmax(q kᵀ / sqrt(hs)) v per head
 *     x'  = h + mlp(ln_2(h))        mlp: c_proj(gelu_tanh(c_fc(.)))
 * then ln_f and logits = ln_f(x) · wteᵀ. Every matrix product is one
 * cblas_sgemm except in attention, which runs per (batch, head) over tiles or
 * blocks of query rows so that the upper (masked) triangle of the score matrix
 * is mostly never computed: the forward with a register-tiled kernel of its own
 * (q kᵀ, softmax and · v of 6 query rows at a time, while they are in L1; for
 * head sizes that are multiples of 8), the backward with sgemms. The
 * exponential-heavy loops (softmax, GELU's tanh) use the 8-lane polynomial exp
 * of gpt2.h, since libm's expf/tanhf do not vectorise without -ffast-math;
 * reductions use 8-lane accumulators so that their order, hence every result,
 * is fixed and reproducible; plain loops are left to gcc at -O3.
 *
 * Threads (util/parallel.h): the large products are OpenBLAS's to thread. The
 * attention is not worth threading product by product (hundreds of small ones
 * per layer, each waking and joining OpenBLAS's threads), so whole (batch, head)
 * pairs go to our threads instead, each with single-threaded BLAS and its own
 * scratch; the elementwise and per-row passes split into row ranges. Every
 * item is computed exactly as the serial loop would. LayerNorm passes also
 * write the bias (and residual) rows that the next products add into, so a
 * block makes four parallel regions of its own: ln_1, attention, ln_2, GELU.
 *
 * Memory: the forward pass keeps, per layer, what its backward needs (when the
 * activations were made with save_for_backward) and otherwise reuses one set of
 * per-layer buffers. The attention probabilities are NOT stored: only the
 * log-sum-exp of each score row (B,NH,T), and backward recomputes the scores.
 * That costs one extra q·kᵀ per head in backward but keeps memory linear in T,
 * which is what lets e2e SAE training run GPT-2 small at T = 1024.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include "model/gpt2.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#ifdef __FMA__
#include <immintrin.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/atomic.h"
#include "io/safetensors.h"
#include "util/error.h"
#include "util/parallel.h"

/* ---------------------------------------------------------------------------
 * Vector helpers: fixed-order 8-lane reductions and a vectorisable exp.
 */
static float vsum(const float *x, int n) {
    v8f a = {0}, b = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a += v8_load(x + i);
        b += v8_load(x + i + 8);
    }
    for (; i + 8 <= n; i += 8) a += v8_load(x + i);
    float s = v8_hsum(a + b);
    for (; i < n; i++) s += x[i];
    return s;
}

static float vdot(const float *x, const float *y, int n) {
    v8f a = {0}, b = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a += v8_load(x + i) * v8_load(y + i);
        b += v8_load(x + i + 8) * v8_load(y + i + 8);
    }
    for (; i + 8 <= n; i += 8) a += v8_load(x + i) * v8_load(y + i);
    float s = v8_hsum(a + b);
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static float vmax(const float *x, int n) {
    float m = -INFINITY;
    int i = 0;
    if (n >= 8) {
        v8f a = v8_load(x);
        for (i = 8; i + 8 <= n; i += 8) {
            v8f v = v8_load(x + i);
            a = v8_max(a, v);
        }
        for (int k = 0; k < 8; k++) m = a[k] > m ? a[k] : m;
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* ---------------------------------------------------------------------------
 * Layers. Shapes use N = rows (B*T), C = channels.
 *
 * The elementwise and per-row passes run on the parallel_for threads, split
 * into contiguous row (or column) ranges that are computed exactly as the
 * serial loop would: no result depends on the number of threads. Sums over rows
 * (bias and LayerNorm parameter gradients) split by columns, so that each sum
 * still runs over the rows in order.
 */

/* Rows per thread at least: about 64k floats of work, against the tens of
 * microseconds that starting a thread costs. */
static size_t min_rows(int C) { return C >= 65536 ? 1 : (size_t)(65536 / C); }

/* Rows of a later product's output to initialise, out = resid + bias (either
 * may be NULL, not both), so that the product adds into them (beta = 1). A
 * LayerNorm pass does it while it has the row at hand: one pass over memory and
 * one parallel region fewer than doing it separately. */
struct row_init {
    float *out;
    const float *resid, *bias;
    int C;
};

static void init_row(const struct row_init *r, size_t i) {
    int C = r->C;
    float *o = r->out + i * C;
    const float *x = r->resid ? r->resid + i * C : NULL;
    if (x && r->bias)
        for (int j = 0; j < C; j++) o[j] = x[j] + r->bias[j];
    else
        memcpy(o, x ? x : r->bias, (size_t)C * sizeof *o);
}

struct ln_ctx {
    float *out, *mean, *rstd, *dinp, *dweight, *dbias;
    const float *inp, *dout, *weight, *bias, *mean_in, *rstd_in;
    int C;
    float eps;
    const struct row_init *init;
    int n_init;
};

// out, inp are (N,C); mean, rstd are (N); weight, bias are (C). Rows [i0, i1).
static void layernorm_rows(void *ctx, int thread, size_t i0, size_t i1) {
    (void)thread;
    const struct ln_ctx *c = ctx;
    int C = c->C;
    for (size_t i = i0; i < i1; i++) {
        for (int k = 0; k < c->n_init; k++) init_row(&c->init[k], i);
        const float *x = c->inp + i * C;
        float *o = c->out + i * C;
        float m = vsum(x, C) / C;
        for (int j = 0; j < C; j++) o[j] = x[j] - m; /* centred, reused below */
        float v = vdot(o, o, C) / C;
        float s = 1.0f / sqrtf(v + c->eps);
        for (int j = 0; j < C; j++) o[j] = o[j] * s * c->weight[j] + c->bias[j];
        if (c->mean) c->mean[i] = m;
        if (c->rstd) c->rstd[i] = s;
    }
}

// ... and the rows of init[0..n_init).
static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int N, int C, float eps,
                              const struct row_init *init, int n_init) {
    struct ln_ctx c = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .weight = weight,
                       .bias = bias, .C = C, .eps = eps, .init = init, .n_init = n_init};
    parallel_for((size_t)N, min_rows(C), layernorm_rows, &c);
}

// dinp rows [i0, i1) += d LN / d inp · dout
static void layernorm_backward_rows(void *ctx, int thread, size_t i0, size_t i1) {
    (void)thread;
    const struct ln_ctx *c = ctx;
    int C = c->C;
    const float *weight = c->weight;
    for (size_t i = i0; i < i1; i++) {
        const float *x = c->inp + i * C, *dy = c->dout + i * C;
        float *dx = c->dinp + i * C;
        float m = c->mean_in[i], s = c->rstd_in[i];
        /* Σ dnorm and Σ dnorm·(x - m), dnorm = dy·w */
        v8f sa = {0}, sb = {0};
        int j = 0;
        for (; j + 8 <= C; j += 8) {
            v8f dn = v8_load(dy + j) * v8_load(weight + j);
            sa += dn;
            sb += dn * (v8_load(x + j) - m);
        }
        float sum_dn = v8_hsum(sa), sum_dnx = v8_hsum(sb);
        for (; j < C; j++) {
            float dn = dy[j] * weight[j];
            sum_dn += dn;
            sum_dnx += dn * (x[j] - m);
        }
        float dnorm_mean = sum_dn / C;
        float dn_norm = sum_dnx * s / C; /* mean of dnorm·norm, norm = (x - m)·s */
        for (j = 0; j < C; j++) {
            float norm = (x[j] - m) * s, dn = dy[j] * weight[j];
            dx[j] += s * (dn - dnorm_mean - norm * dn_norm);
        }
    }
}

struct colsum_ctx {
    float *dweight, *dbias;
    const float *dout, *inp, *mean, *rstd; /* inp == NULL: dbias only */
    int N, C;
};

// Columns [j0, j1): dbias[j] += Σ_i dout[i,j]; with inp, also dweight[j] +=
// Σ_i dout[i,j]·(inp[i,j] - mean[i])·rstd[i] (LayerNorm). Rows in order.
static void colsum_cols(void *ctx, int thread, size_t j0, size_t j1) {
    (void)thread;
    const struct colsum_ctx *c = ctx;
    int C = c->C;
    for (int i = 0; i < c->N; i++) {
        const float *dy = c->dout + (size_t)i * C;
        if (c->dweight) {
            const float *x = c->inp + (size_t)i * C;
            float m = c->mean[i], s = c->rstd[i];
            for (size_t j = j0; j < j1; j++) c->dweight[j] += dy[j] * (x[j] - m) * s;
        }
        if (c->dbias)
            for (size_t j = j0; j < j1; j++) c->dbias[j] += dy[j];
    }
}

/* Columns per thread: the same 64k floats of work over N rows. */
static size_t min_cols(int N) { return N >= 65536 ? 1 : (size_t)(65536 / N); }

// dinp (N,C) += d LN / d inp · dout; dweight, dbias (C) += (NULL: skipped).
static void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int N, int C) {
    struct ln_ctx c = {.dinp = dinp, .inp = inp, .dout = dout, .weight = weight,
                       .mean_in = mean, .rstd_in = rstd, .C = C};
    parallel_for((size_t)N, min_rows(C), layernorm_backward_rows, &c);
    if (!dweight && !dbias) return;
    struct colsum_ctx g = {dweight, dbias, dout, inp, mean, rstd, N, C};
    parallel_for((size_t)C, min_cols(N), colsum_cols, &g);
}

// out (N,OC) = inp (N,IC) · w (IC,OC), or out += when initialised (row_init).
static void matmul_forward(float *out, const float *inp, const float *w, int N, int IC, int OC,
                           bool initialised) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, IC, 1.0f, inp, IC, w, OC,
                initialised ? 1.0f : 0.0f, out, OC);
}

// dinp (N,IC) = dout (N,OC) · wᵀ (overwritten); dw (IC,OC) += inpᵀ · dout;
// dbias (OC) += column sums of dout. dw == NULL: no parameter gradients.
static void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                            const float *inp, const float *w, int N, int IC, int OC) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, IC, OC, 1.0f, dout, OC, w, OC, 0.0f,
                dinp, IC);
    if (!dw) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, IC, OC, N, 1.0f, inp, IC, dout, OC, 1.0f,
                dw, OC);
    if (dbias) {
        struct colsum_ctx c = {.dbias = dbias, .dout = dout, .N = N, .C = OC};
        parallel_for((size_t)OC, min_cols(N), colsum_cols, &c);
    }
}

#define GELU_S 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_K 0.044715f

/* tanh(u) = sign(u) (1 - e) / (1 + e) with e = exp(-2|u|) <= 1 (no overflow). */
static inline v8f tanh8(v8f u) {
    v8i sign = (v8i)u & (int32_t)0x80000000;
    v8f a = (v8f)((v8i)u & 0x7fffffff);
    v8f e = model_expf8(a * -2.0f);
    v8f th = (1.0f - e) / (1.0f + e);
    return (v8f)((v8i)th | sign);
}

// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³))) for x = inp[i]
static inline v8f gelu8(v8f x) {
    return 0.5f * x * (1.0f + tanh8(GELU_S * (x + GELU_K * x * x * x)));
}

// gelu'(x) · dy
static inline v8f gelu_grad8(v8f x, v8f dy) {
    v8f th = tanh8(GELU_S * (x + GELU_K * x * x * x));
    v8f du = GELU_S * (1.0f + 3.0f * GELU_K * x * x);
    return (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du) * dy;
}

struct gelu_ctx {
    float *out;
    const float *inp, *dout;
};

// out[i] = gelu(inp[i]) for i in 8·[b0, b1)
static void gelu_blocks(void *ctx, int thread, size_t b0, size_t b1) {
    (void)thread;
    const struct gelu_ctx *c = ctx;
    for (size_t i = 8 * b0; i < 8 * b1; i += 8) v8_store(c->out + i, gelu8(v8_load(c->inp + i)));
}

// out[i] = gelu'(inp[i]) · dout[i] for i in 8·[b0, b1)
static void gelu_grad_blocks(void *ctx, int thread, size_t b0, size_t b1) {
    (void)thread;
    const struct gelu_ctx *c = ctx;
    for (size_t i = 8 * b0; i < 8 * b1; i += 8)
        v8_store(c->out + i, gelu_grad8(v8_load(c->inp + i), v8_load(c->dout + i)));
}

// out, inp are (n)
static void gelu_forward(float *out, const float *inp, size_t n) {
    struct gelu_ctx c = {out, inp, NULL};
    parallel_for(n / 8, 8192, gelu_blocks, &c);
    for (size_t i = n / 8 * 8; i < n; i++) {
        v8f x = {inp[i]};
        out[i] = gelu8(x)[0];
    }
}

// dinp (n) = gelu'(inp) · dout (dinp may alias dout)
static void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    struct gelu_ctx c = {dinp, inp, dout};
    parallel_for(n / 8, 8192, gelu_grad_blocks, &c);
    for (size_t i = n / 8 * 8; i < n; i++) {
        v8f x = {inp[i]}, d = {dout[i]};
        dinp[i] = gelu_grad8(x, d)[0];
    }
}

// x[i] = exp(x[i] - shift) for i < n
static void exp_shifted(float *x, int n, float shift) {
    int i = 0;
    for (; i + 8 <= n; i += 8) v8_store(x + i, model_expf8(v8_load(x + i) - shift));
    for (; i < n; i++) x[i] = model_expf(x[i] - shift);
}

// x[i] = exp(x[i] - shift) for i < n; returns Σ x[i] summed as vsum does
static float exp_shifted_sum(float *x, int n, float shift) {
    v8f a = {0}, b = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        v8f e0 = model_expf8(v8_load(x + i) - shift), e1 = model_expf8(v8_load(x + i + 8) - shift);
        v8_store(x + i, e0);
        v8_store(x + i + 8, e1);
        a += e0;
        b += e1;
    }
    for (; i + 8 <= n; i += 8) {
        v8f e = model_expf8(v8_load(x + i) - shift);
        v8_store(x + i, e);
        a += e;
    }
    float s = v8_hsum(a + b);
    for (; i < n; i++) {
        x[i] = model_expf(x[i] - shift);
        s += x[i];
    }
    return s;
}

/* Query rows per attention block: scores are computed for keys [0, r1) only. */
#define ATT_ROWS 64

// In place over row t of the (nr, ld) block att whose first row is query r0:
// P[t, 0..t] = softmax, P[t, t+1..nk) = 0; lse[t] = log-sum-exp (may be NULL).
static void causal_softmax_rows(float *att, int ld, int r0, int nr, int nk, float *lse) {
    for (int i = 0; i < nr; i++) {
        int t = r0 + i, n = t + 1;
        float *row = att + (size_t)i * ld;
        float m = vmax(row, n);
        float sum = exp_shifted_sum(row, n, m);
        float inv = 1.0f / sum;
        for (int j = 0; j < n; j++) row[j] *= inv;
        for (int j = n; j < nk; j++) row[j] = 0.0f;
        if (lse) lse[t] = m + logf(sum);
    }
}

/* The forward attention of one head without BLAS, in tiles of ATT_TILE query
 * rows: a tile's scores (against the keys up to its last row), their
 * exponentials and their product with v, divided by the row sums at the end,
 * while the tile's rows are in L1. The head's k is
 * first packed into kp: panels of QK_KEYS keys, each (hs, QK_KEYS) contiguous
 * (zero-padded to a whole panel), and v gathered into (T, hs). Needs
 * hs % 8 == 0; other head sizes take attention_head_forward_blas. */
#define ATT_TILE 6
#define QK_KEYS 16

static inline v8f v8_splat(float x) { return (v8f){x, x, x, x, x, x, x, x}; }

#ifdef __FMA__
static inline v8f fma8(v8f a, v8f b, v8f c) {
    return (v8f)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
}
#else
static inline v8f fma8(v8f a, v8f b, v8f c) { return a * b + c; }
#endif

// model_expf8 with its arithmetic fused (one rounding per multiply-add): the
// same polynomial, a little more accurate and a third fewer operations.
static inline v8f att_expf8(v8f x) {
    x = v8_max(x, x * 0.0f - 87.0f);
    v8f n = fma8(x, v8_splat(1.44269504088896341f), v8_splat(12582912.0f)) - 12582912.0f;
    v8f r = fma8(n, v8_splat(2.12194440e-4f), fma8(n, v8_splat(-0.693359375f), x));
    v8f p = fma8(r, v8_splat(1.9875691500e-4f), v8_splat(1.3981999507e-3f));
    p = fma8(p, r, v8_splat(8.3334519073e-3f));
    p = fma8(p, r, v8_splat(4.1665795894e-2f));
    p = fma8(p, r, v8_splat(1.6666665459e-1f));
    p = fma8(p, r, v8_splat(5.0000001201e-1f));
    p = fma8(p * r, r, r + 1.0f);
    v8i e = (__builtin_convertvector(n, v8i) + 127) << 23;
    return p * (v8f)e;
}

// Unnormalised causal softmax of the tile's score rows (row r is query t0 + r,
// row stride lds): row[j] = exp(row[j] - max) for j <= t0 + r, 0 for the rest
// of [0, nk); inv[r] = 1 / Σ row, applied to the output instead of to P.
static void tile_softmax(float *s, size_t lds, int t0, int nr, int nk, float *inv, float *lse) {
    for (int i = 0; i < nr; i++) {
        int n = t0 + i + 1, j = 0;
        float *row = s + (size_t)i * lds;
        float m = vmax(row, n);
        v8f a = {0}, b = {0};
        for (; j + 16 <= n; j += 16) {
            v8f e0 = att_expf8(v8_load(row + j) - m), e1 = att_expf8(v8_load(row + j + 8) - m);
            v8_store(row + j, e0);
            v8_store(row + j + 8, e1);
            a += e0;
            b += e1;
        }
        for (; j + 8 <= n; j += 8) {
            v8f e = att_expf8(v8_load(row + j) - m);
            v8_store(row + j, e);
            a += e;
        }
        float sum = v8_hsum(a + b);
        for (; j < n; j++) {
            v8f x = {row[j] - m};
            row[j] = att_expf8(x)[0];
            sum += row[j];
        }
        for (; j < nk; j++) row[j] = 0.0f;
        inv[i] = 1.0f / sum;
        if (lse) lse[t0 + i] = m + logf(sum);
    }
}

static size_t att_round_keys(int T) { return ((size_t)T + QK_KEYS - 1) / QK_KEYS * QK_KEYS; }

// acc[r][0..16) = Σ_{k < n} a[r][k] b[k·ldb + 0..16) for r < ATT_TILE: the 6×16
// register tile both attention products use (a[r] may repeat a row).
static inline void fma_tile_6x16(const float *const *a, const float *b, size_t ldb, int n,
                                 v8f acc[ATT_TILE][2]) {
    v8f a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0};
    v8f a30 = {0}, a31 = {0}, a40 = {0}, a41 = {0}, a50 = {0}, a51 = {0};
    const float *r0 = a[0], *r1 = a[1], *r2 = a[2], *r3 = a[3], *r4 = a[4], *r5 = a[5];
    for (int k = 0; k < n; k++) {
        const float *bk = b + (size_t)k * ldb;
        v8f b0 = v8_load(bk), b1 = v8_load(bk + 8), x;
        x = v8_splat(r0[k]);
        a00 = fma8(x, b0, a00), a01 = fma8(x, b1, a01);
        x = v8_splat(r1[k]);
        a10 = fma8(x, b0, a10), a11 = fma8(x, b1, a11);
        x = v8_splat(r2[k]);
        a20 = fma8(x, b0, a20), a21 = fma8(x, b1, a21);
        x = v8_splat(r3[k]);
        a30 = fma8(x, b0, a30), a31 = fma8(x, b1, a31);
        x = v8_splat(r4[k]);
        a40 = fma8(x, b0, a40), a41 = fma8(x, b1, a41);
        x = v8_splat(r5[k]);
        a50 = fma8(x, b0, a50), a51 = fma8(x, b1, a51);
    }
    acc[0][0] = a00, acc[0][1] = a01, acc[1][0] = a10, acc[1][1] = a11;
    acc[2][0] = a20, acc[2][1] = a21, acc[3][0] = a30, acc[3][1] = a31;
    acc[4][0] = a40, acc[4][1] = a41, acc[5][0] = a50, acc[5][1] = a51;
}

// s[r][0..QK_KEYS) = scale Σ_d q[r][d] panel[d][0..QK_KEYS) for r < ATT_TILE (s
// has row stride lds); q[r] may repeat a row.
static inline void qk_tile(const float *const *q, const float *panel, int hs, float scale,
                           float *s, size_t lds) {
    v8f acc[ATT_TILE][2];
    fma_tile_6x16(q, panel, QK_KEYS, hs, acc);
    for (int r = 0; r < ATT_TILE; r++)
        for (int c = 0; c < 2; c++) v8_store(s + r * lds + 8 * c, acc[r][c] * scale);
}

// out[r][d0..d0+16) = Σ_{k < nk} p[r][k] v[k][d0..d0+16) for r < nrows; v is
// (nk, hs) contiguous, p has row stride ldp.
static inline void av_tile16(const float *p, size_t ldp, int nrows, int nk, const float *v, int hs,
                             int d0, float *out, size_t ldo) {
    const float *pr[ATT_TILE];
    for (int r = 0; r < ATT_TILE; r++) pr[r] = p + (r < nrows ? r : 0) * ldp;
    v8f acc[ATT_TILE][2];
    fma_tile_6x16(pr, v + d0, (size_t)hs, nk, acc);
    for (int r = 0; r < nrows; r++) {
        v8_store(out + r * ldo + d0, acc[r][0]);
        v8_store(out + r * ldo + d0 + 8, acc[r][1]);
    }
}

// As av_tile16 for 8 columns.
static inline void av_tile8(const float *p, size_t ldp, int nrows, int nk, const float *v, int hs,
                            int d0, float *out, size_t ldo) {
    v8f acc[ATT_TILE] = {{0}};
    for (int r = 0; r < nrows; r++) {
        const float *pr = p + r * ldp;
        v8f a = {0};
        for (int k = 0; k < nk; k++) a = fma8(v8_splat(pr[k]), v8_load(v + (size_t)k * hs + d0), a);
        acc[r] = a;
    }
    for (int r = 0; r < nrows; r++) v8_store(out + r * ldo + d0, acc[r]);
}

// Head h of one sequence (see above): qkv is (T,3C), the head's q, k, v are its
// columns h*hs + {0, C, 2C}; writes out (T,C) columns h*hs and lse (T) if not
// NULL. scratch holds att_scratch_floats.
static void attention_head_forward(float *out, float *lse, const float *qkv, float *scratch, int T,
                                   int C, int NH, int h) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    size_t Tk = att_round_keys(T);
    float *kp = scratch, *v = kp + (size_t)hs * Tk, *s = v + (size_t)T * hs;
    const float *q = qkv + h * hs, *k = q + C, *vsrc = q + 2 * C;
    for (size_t j0 = 0; j0 < Tk; j0 += QK_KEYS) { /* panel j0: kp[j0·hs + d·QK_KEYS + c] */
        float *panel = kp + j0 * hs;
        for (int c = 0; c < QK_KEYS; c++) {
            size_t t = j0 + c;
            const float *kr = k + t * 3 * C;
            for (int d = 0; d < hs; d++) panel[d * QK_KEYS + c] = t < (size_t)T ? kr[d] : 0.0f;
        }
    }
    for (int t = 0; t < T; t++)
        memcpy(v + (size_t)t * hs, vsrc + (size_t)t * 3 * C, (size_t)hs * sizeof *v);
    for (int t0 = 0; t0 < T; t0 += ATT_TILE) {
        int nr = T - t0 < ATT_TILE ? T - t0 : ATT_TILE, nk = t0 + nr; /* keys [0, nk) */
        const float *qr[ATT_TILE];
        for (int r = 0; r < ATT_TILE; r++) qr[r] = q + (size_t)(t0 + (r < nr ? r : 0)) * 3 * C;
        for (int j0 = 0; j0 < nk; j0 += QK_KEYS)
            qk_tile(qr, kp + (size_t)j0 * hs, hs, scale, s + j0, Tk);
        float inv[ATT_TILE];
        tile_softmax(s, Tk, t0, nr, nk, inv, lse);
        float *o = out + (size_t)t0 * C + h * hs;
        int d0 = 0;
        for (; d0 + 16 <= hs; d0 += 16) av_tile16(s, Tk, nr, nk, v, hs, d0, o, C);
        for (; d0 < hs; d0 += 8) av_tile8(s, Tk, nr, nk, v, hs, d0, o, C);
        for (int r = 0; r < nr; r++)
            for (int e = 0; e < hs; e++) o[(size_t)r * C + e] *= inv[r];
    }
}

// As attention_head_forward with sgemms, for any head size; att is (ATT_ROWS,T).
static void attention_head_forward_blas(float *out, float *lse, const float *qkv, float *att,
                                        int T, int C, int NH, int h) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float *q = qkv + h * hs, *k = q + C, *v = q + 2 * C;
    for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
        int nr = T - r0 < ATT_ROWS ? T - r0 : ATT_ROWS, nk = r0 + nr;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hs, scale,
                    q + (size_t)r0 * 3 * C, 3 * C, k, 3 * C, 0.0f, att, T);
        causal_softmax_rows(att, T, r0, nr, nk, lse);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hs, nk, 1.0f, att, T, v, 3 * C,
                    0.0f, out + (size_t)r0 * C + h * hs, C);
    }
}

// Head h of one sequence: dqkv (T,3C) columns of head h = gradient of attention
// given dout (T,C), the saved qkv and the head's lse (T); scores are recomputed.
// att, datt are (ATT_ROWS,T) scratch.
static void attention_head_backward(float *dqkv, const float *dout, const float *qkv,
                                    const float *lse, float *att, float *datt, int T, int C,
                                    int NH, int h) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float *q = qkv + h * hs, *k = q + C, *v = q + 2 * C;
    float *dq = dqkv + h * hs, *dk = dq + C, *dv = dq + 2 * C;
    const float *dy = dout + h * hs;
    for (int t = 0; t < T; t++) { /* dk, dv accumulate over the blocks; dq is overwritten */
        memset(dk + (size_t)t * 3 * C, 0, (size_t)hs * sizeof *dk);
        memset(dv + (size_t)t * 3 * C, 0, (size_t)hs * sizeof *dv);
    }
    for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
        int nr = T - r0 < ATT_ROWS ? T - r0 : ATT_ROWS, nk = r0 + nr;
        float *p = att, *dp = datt;
        // P (nr,nk) = exp(scale q kᵀ - lse), zero above the diagonal
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hs, scale,
                    q + (size_t)r0 * 3 * C, 3 * C, k, 3 * C, 0.0f, p, T);
        for (int i = 0; i < nr; i++) {
            float *row = p + (size_t)i * T;
            int n = r0 + i + 1;
            exp_shifted(row, n, lse[r0 + i]);
            for (int j = n; j < nk; j++) row[j] = 0.0f;
        }
        // dP (nr,nk) = dY · vᵀ;  dV (nk,hs) += Pᵀ · dY
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hs, 1.0f,
                    dy + (size_t)r0 * C, C, v, 3 * C, 0.0f, dp, T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nr, 1.0f, p, T,
                    dy + (size_t)r0 * C, C, 1.0f, dv, 3 * C);
        // dS = P ⊙ (dP - rowsum(dP ⊙ P))
        for (int i = 0; i < nr; i++) {
            float *prow = p + (size_t)i * T, *drow = dp + (size_t)i * T;
            float d = vdot(prow, drow, nk);
            for (int j = 0; j < nk; j++) drow[j] = prow[j] * (drow[j] - d);
        }
        // dQ (nr,hs) = scale dS · k;  dK (nk,hs) += scale dSᵀ · q
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hs, nk, scale, dp, T, k, 3 * C,
                    0.0f, dq + (size_t)r0 * 3 * C, 3 * C);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nr, scale, dp, T,
                    q + (size_t)r0 * 3 * C, 3 * C, 1.0f, dk, 3 * C);
    }
}

/* Attention of a whole batch, one (batch, head) pair per item on the
 * parallel_blas_items threads, each with its own (ATT_ROWS,T) score blocks. */
struct attention_ctx {
    float *out, *lse;        /* forward: (N,C), (B,NH,T) or NULL */
    float *dqkv;             /* backward: (N,3C) */
    const float *dout, *qkv; /* (N,C), (N,3C) */
    const float *lse_in;     /* backward: (B,NH,T) */
    float *scratch;          /* per thread: att_scratch_floats */
    int T, C, NH;
};

/* Scratch floats per thread: the backward's two (ATT_ROWS,T) score blocks, or
 * the forward's kp, v and ATT_TILE score rows. */
static size_t att_scratch_floats(int T, int C, int NH) {
    size_t hs = (size_t)(C / NH), Tk = att_round_keys(T);
    size_t bwd = 2 * (size_t)ATT_ROWS * T, fwd = hs * Tk + (size_t)T * hs + ATT_TILE * Tk;
    return bwd > fwd ? bwd : fwd;
}

static float *thread_scratch(const struct attention_ctx *a, int thread) {
    return a->scratch + (size_t)thread * att_scratch_floats(a->T, a->C, a->NH);
}

static void attention_forward_item(void *ctx, int thread, size_t i) {
    const struct attention_ctx *a = ctx;
    int T = a->T, C = a->C, NH = a->NH, b = (int)i / NH, h = (int)i % NH;
    size_t bt = (size_t)b * T;
    float *lse = a->lse ? a->lse + (bt * NH + (size_t)h * T) : NULL;
    if ((C / NH) % 8 == 0)
        attention_head_forward(a->out + bt * C, lse, a->qkv + bt * 3 * C,
                               thread_scratch(a, thread), T, C, NH, h);
    else
        attention_head_forward_blas(a->out + bt * C, lse, a->qkv + bt * 3 * C,
                                    thread_scratch(a, thread), T, C, NH, h);
}

static void attention_backward_item(void *ctx, int thread, size_t i) {
    const struct attention_ctx *a = ctx;
    int T = a->T, C = a->C, NH = a->NH, b = (int)i / NH, h = (int)i % NH;
    size_t bt = (size_t)b * T;
    float *s = thread_scratch(a, thread);
    attention_head_backward(a->dqkv + bt * 3 * C, a->dout + bt * C, a->qkv + bt * 3 * C,
                            a->lse_in + bt * NH + (size_t)h * T, s, s + (size_t)ATT_ROWS * T, T,
                            C, NH, h);
}

/* Dropout of a residual branch (lm-train only). The mask is a hash of (key, i),
 * so backward recomputes it instead of storing it: element i is kept when the top
 * 24 bits of the hash are >= p·2^24, and kept values are scaled by 1/(1-p). */
static inline bool dropout_keep(uint64_t key, size_t i, uint32_t threshold) {
    uint64_t x = key ^ (i * 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((x ^ (x >> 31)) >> 40) >= threshold;
}

static uint64_t dropout_key(const struct gpt2 *g, int layer, int site) {
    return g->dropout_seed * 0x2545f4914f6cdd1dull + (uint64_t)layer * 2 + (uint64_t)site + 1;
}

struct dropout_ctx {
    float *out;
    const float *x, *branch; /* x == NULL: backward (out = mask ⊙ branch / (1-p)) */
    uint32_t threshold;
    float scale;
    uint64_t key;
};

static void dropout_range(void *ctx, int thread, size_t i0, size_t i1) {
    (void)thread;
    const struct dropout_ctx *c = ctx;
    for (size_t i = i0; i < i1; i++) {
        float kept = dropout_keep(c->key, i, c->threshold) ? c->branch[i] * c->scale : 0.0f;
        c->out[i] = c->x ? c->x[i] + kept : kept;
    }
}

// out (n) = x + mask ⊙ branch / (1-p)
static void dropout_add(float *out, const float *x, const float *branch, size_t n, float p,
                        uint64_t key) {
    struct dropout_ctx c = {out, x, branch, (uint32_t)(p * 16777216.0f), 1.0f / (1.0f - p), key};
    parallel_for(n, 65536, dropout_range, &c);
}

// d_branch (n) = mask ⊙ dout / (1-p)
static void dropout_backward(float *d_branch, const float *dout, size_t n, float p, uint64_t key) {
    struct dropout_ctx c = {d_branch, NULL, dout, (uint32_t)(p * 16777216.0f),
                            1.0f / (1.0f - p), key};
    parallel_for(n, 65536, dropout_range, &c);
}

/* ---------------------------------------------------------------------------
 * Parameters.
 */
static const char *const tensor_labels[GPT2_N_TENSORS] = {
    "wte",  "wpe", "ln1w", "ln1b",    "qkvw",    "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw",     "lnfb"};

const char *gpt2_tensor_label(int i) {
    return i >= 0 && i < GPT2_N_TENSORS ? tensor_labels[i] : "?";
}

bool gpt2_tensor_is_matrix(int i) {
    return i == 0 || i == 1 || i == 4 || i == 6 || i == 10 || i == 12;
}

size_t gpt2_param_sizes(const struct lm_config *cfg, size_t s[GPT2_N_TENSORS]) {
    size_t L = (size_t)cfg->n_layer, C = (size_t)cfg->d_model;
    s[0] = (size_t)cfg->vocab_size * C;
    s[1] = (size_t)cfg->max_seq * C;
    s[2] = s[3] = L * C;
    s[4] = L * C * 3 * C;
    s[5] = L * 3 * C;
    s[6] = L * C * C;
    s[7] = L * C;
    s[8] = s[9] = L * C;
    s[10] = L * C * 4 * C;
    s[11] = L * 4 * C;
    s[12] = L * 4 * C * C;
    s[13] = L * C;
    s[14] = s[15] = C;
    size_t total = 0;
    for (int i = 0; i < GPT2_N_TENSORS; i++) total += s[i];
    return total;
}

void gpt2_point_params(const struct lm_config *cfg, float *mem, struct gpt2_params *p) {
    size_t s[GPT2_N_TENSORS];
    gpt2_param_sizes(cfg, s);
    float **ptrs[GPT2_N_TENSORS] = {&p->wte,      &p->wpe,      &p->ln1w, &p->ln1b,
                                    &p->qkvw,     &p->qkvb,     &p->attprojw, &p->attprojb,
                                    &p->ln2w,     &p->ln2b,     &p->fcw,  &p->fcb,
                                    &p->fcprojw,  &p->fcprojb,  &p->lnfw, &p->lnfb};
    for (int i = 0; i < GPT2_N_TENSORS; i++) {
        *ptrs[i] = mem;
        mem += s[i];
    }
}

static int check_config(const struct lm_config *c, const char *where) {
    if (c->n_layer < 1 || c->n_layer > 1000)
        return err_set("%s: n_layer must be from 1 to 1000, got %d", where, c->n_layer);
    if (c->n_head < 1 || c->d_model < 1 || c->d_model % c->n_head != 0)
        return err_set("%s: n_embd (%d) must be a positive multiple of n_head (%d)", where,
                       c->d_model, c->n_head);
    if (c->d_model > 65536) return err_set("%s: n_embd %d is too large", where, c->d_model);
    if (c->vocab_size < 1 || c->vocab_size > 10000000)
        return err_set("%s: vocab_size must be from 1 to 10000000, got %d", where, c->vocab_size);
    if (c->max_seq < 1 || c->max_seq > 1000000)
        return err_set("%s: n_positions must be from 1 to 1000000, got %d", where, c->max_seq);
    if (!(c->norm_eps > 0.0f) || !(c->norm_eps < 1.0f))
        return err_set("%s: layer_norm_epsilon must be in (0, 1), got %g", where,
                       (double)c->norm_eps);
    return 0;
}

int gpt2_new(const struct lm_config *cfg, struct lm *lm) {
    if (cfg->arch != LM_GPT2) return err_set("gpt2_new: config is not a GPT-2 config");
    if (check_config(cfg, "gpt2 config") < 0) return -1;
    struct gpt2 *g = xcalloc(1, sizeof *g);
    if (!g) return -1;
    g->n_params = gpt2_param_sizes(cfg, g->sizes);
    g->memory = xcalloc(g->n_params, sizeof(float));
    if (!g->memory) {
        free(g);
        return -1;
    }
    lm->cfg = *cfg;
    lm->cfg.n_kv_head = cfg->n_head;
    lm->cfg.d_ff = 4 * cfg->d_model;
    lm->cfg.shared_classifier = true;
    gpt2_point_params(&lm->cfg, g->memory, &g->p);
    lm->impl = g;
    return 0;
}

void gpt2_free_impl(struct lm *lm) {
    struct gpt2 *g = lm ? gpt2_of(lm) : NULL;
    if (!g) return;
    free(g->memory);
    free(g);
    lm->impl = NULL;
}

/* ---------------------------------------------------------------------------
 * Hugging Face layout: config.json + model.safetensors.
 */
enum { D_C = -1, D_3C = -2, D_4C = -3, D_V = -4, D_P = -5 };

struct hf_tensor {
    const char *name; /* per-layer tensors are "h.{i}.<name>" */
    bool per_layer;
    int ndim;
    int dims[2];
};

/* In struct gpt2_params order. */
static const struct hf_tensor hf_tensors[GPT2_N_TENSORS] = {
    {"wte.weight", false, 2, {D_V, D_C}},
    {"wpe.weight", false, 2, {D_P, D_C}},
    {"ln_1.weight", true, 1, {D_C}},
    {"ln_1.bias", true, 1, {D_C}},
    {"attn.c_attn.weight", true, 2, {D_C, D_3C}},
    {"attn.c_attn.bias", true, 1, {D_3C}},
    {"attn.c_proj.weight", true, 2, {D_C, D_C}},
    {"attn.c_proj.bias", true, 1, {D_C}},
    {"ln_2.weight", true, 1, {D_C}},
    {"ln_2.bias", true, 1, {D_C}},
    {"mlp.c_fc.weight", true, 2, {D_C, D_4C}},
    {"mlp.c_fc.bias", true, 1, {D_4C}},
    {"mlp.c_proj.weight", true, 2, {D_4C, D_C}},
    {"mlp.c_proj.bias", true, 1, {D_C}},
    {"ln_f.weight", false, 1, {D_C}},
    {"ln_f.bias", false, 1, {D_C}},
};

static int64_t dim_value(const struct lm_config *c, int code) {
    switch (code) {
    case D_C: return c->d_model;
    case D_3C: return 3 * (int64_t)c->d_model;
    case D_4C: return 4 * (int64_t)c->d_model;
    case D_V: return c->vocab_size;
    case D_P: return c->max_seq;
    }
    return code;
}

static void hf_name(char *buf, size_t n, int t, int layer) {
    if (hf_tensors[t].per_layer)
        snprintf(buf, n, "h.%d.%s", layer, hf_tensors[t].name);
    else
        snprintf(buf, n, "%s", hf_tensors[t].name);
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *dims) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static int json_int(const cJSON *root, const char *key, const char *alt, int *out,
                    const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v && alt) v = cJSON_GetObjectItemCaseSensitive(root, alt);
    if (!v) return err_set("%s: missing key \"%s\"", path, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble)
        return err_set("%s: \"%s\" must be an integer", path, key);
    *out = (int)v->valuedouble;
    return 0;
}

static int parse_config(const char *path, struct lm_config *c) {
    size_t n;
    char *text = read_file_all(path, 1u << 20, &n);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set("%s: not a JSON object", path);
    }
    memset(c, 0, sizeof *c);
    c->arch = LM_GPT2;
    int rc = 0;
    rc = rc ? rc : json_int(root, "n_layer", NULL, &c->n_layer, path);
    rc = rc ? rc : json_int(root, "n_head", NULL, &c->n_head, path);
    rc = rc ? rc : json_int(root, "n_embd", NULL, &c->d_model, path);
    rc = rc ? rc : json_int(root, "n_positions", "n_ctx", &c->max_seq, path);
    rc = rc ? rc : json_int(root, "vocab_size", NULL, &c->vocab_size, path);
    c->norm_eps = 1e-5f;
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    if (rc == 0 && eps) {
        if (!cJSON_IsNumber(eps))
            rc = err_set("%s: \"layer_norm_epsilon\" must be a number", path);
        else
            c->norm_eps = (float)eps->valuedouble;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (rc == 0 && mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "gpt2") != 0))
        rc = err_set("%s: model_type must be \"gpt2\", got %s", path,
                     cJSON_IsString(mt) ? mt->valuestring : "a non-string");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    if (rc == 0 && act &&
        (!cJSON_IsString(act) || (strcmp(act->valuestring, "gelu_new") != 0 &&
                                  strcmp(act->valuestring, "gelu_pytorch_tanh") != 0)))
        rc = err_set("%s: activation_function must be \"gelu_new\" (GELU, tanh approximation), "
                     "got %s",
                     path, cJSON_IsString(act) ? act->valuestring : "a non-string");
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(root, "n_inner");
    if (rc == 0 && inner && !cJSON_IsNull(inner) &&
        !(cJSON_IsNumber(inner) && inner->valuedouble == 4.0 * c->d_model))
        rc = err_set("%s: n_inner must be null or 4 * n_embd (%d)", path, 4 * c->d_model);
    cJSON_Delete(root);
    if (rc == 0) rc = check_config(c, path);
    c->n_kv_head = c->n_head;
    c->d_ff = 4 * c->d_model;
    c->shared_classifier = true;
    return rc;
}

/* The tensor called name, with or without the "transformer." prefix. */
static const struct st_tensor *find_hf(const struct st_file *f, const char *name) {
    const struct st_tensor *t = st_find(f, name);
    if (t) return t;
    char buf[256];
    snprintf(buf, sizeof buf, "transformer.%s", name);
    return st_find(f, buf);
}

static int check_finite(const float *x, size_t n, const char *path, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return err_set("%s: tensor %s: element %zu is %s", path, name, i,
                           isnan(x[i]) ? "NaN" : "infinite");
    return 0;
}

static int load_tensor(const struct st_file *f, const struct lm_config *c, int t, int layer,
                       float *dst) {
    char name[128];
    hf_name(name, sizeof name, t, layer);
    const struct st_tensor *st = find_hf(f, name);
    if (!st) return err_set("%s: missing tensor %s", f->path, name);
    if (st->dtype != ST_F32 && st->dtype != ST_F16 && st->dtype != ST_BF16)
        return err_set("%s: tensor %s: dtype %s is not F32, F16 or BF16", f->path, st->name,
                       st_dtype_name(st->dtype));
    const struct hf_tensor *h = &hf_tensors[t];
    int64_t want[2] = {dim_value(c, h->dims[0]), h->ndim > 1 ? dim_value(c, h->dims[1]) : 0};
    bool ok = st->ndim == h->ndim;
    for (int i = 0; ok && i < h->ndim; i++) ok = st->shape[i] == want[i];
    if (!ok) {
        char a[96], b[96];
        shape_str(a, sizeof a, h->ndim, want);
        shape_str(b, sizeof b, st->ndim, st->shape);
        return err_set("%s: tensor %s: expected shape %s from config.json, got %s", f->path,
                       st->name, a, b);
    }
    if (st_read_f32(f, st, dst) < 0) return -1;
    return check_finite(dst, (size_t)st_numel(st), f->path, st->name);
}

/* Every tensor in the file must be one we loaded, a mask buffer, or a tied lm_head. */
static int check_no_strays(const struct st_file *f, const struct lm *lm) {
    const struct gpt2 *g = gpt2_of(lm);
    for (int i = 0; i < f->n_tensors; i++) {
        const char *name = f->tensors[i].name;
        if (strncmp(name, "transformer.", 12) == 0) name += 12;
        int layer, end = 0;
        char rest[128];
        if (sscanf(name, "h.%d.%127s%n", &layer, rest, &end) == 2 && name[end] == 0) {
            if (strcmp(rest, "attn.bias") == 0 || strcmp(rest, "attn.masked_bias") == 0) continue;
            bool known = false;
            for (int t = 0; t < GPT2_N_TENSORS; t++)
                known = known || (hf_tensors[t].per_layer && strcmp(rest, hf_tensors[t].name) == 0);
            if (known && layer >= 0 && layer < lm->cfg.n_layer) continue;
            if (known)
                return err_set("%s: tensor %s: layer %d but config.json has n_layer %d", f->path,
                               f->tensors[i].name, layer, lm->cfg.n_layer);
        } else if (strcmp(name, "lm_head.weight") == 0) {
            const struct st_tensor *t = &f->tensors[i];
            size_t n = g->sizes[0];
            if (st_numel(t) != (int64_t)n)
                return err_set("%s: tensor lm_head.weight: shape differs from wte.weight (an "
                               "untied unembedding is not supported)",
                               f->path);
            float *tmp = xmalloc(n * sizeof *tmp);
            if (!tmp || st_read_f32(f, t, tmp) < 0) {
                free(tmp);
                return -1;
            }
            bool same = memcmp(tmp, g->p.wte, n * sizeof *tmp) == 0;
            free(tmp);
            if (!same)
                return err_set("%s: tensor lm_head.weight differs from wte.weight (an untied "
                               "unembedding is not supported)",
                               f->path);
            continue;
        } else {
            bool known = false;
            for (int t = 0; t < GPT2_N_TENSORS; t++)
                known = known || (!hf_tensors[t].per_layer && strcmp(name, hf_tensors[t].name) == 0);
            if (known) continue;
        }
        return err_set("%s: unexpected tensor %s (not part of a GPT-2 with this config)", f->path,
                       f->tensors[i].name);
    }
    return 0;
}

static int load_weights(const char *path, struct lm *lm) {
    struct st_file f;
    if (st_open(&f, path) < 0) return -1;
    struct gpt2 *g = gpt2_of(lm);
    float *dst = g->memory;
    int rc = 0;
    for (int t = 0; rc == 0 && t < GPT2_N_TENSORS; t++) {
        int n_layers = hf_tensors[t].per_layer ? lm->cfg.n_layer : 1;
        size_t per = g->sizes[t] / (size_t)n_layers;
        for (int l = 0; rc == 0 && l < n_layers; l++) rc = load_tensor(&f, &lm->cfg, t, l, dst + l * per);
        dst += g->sizes[t];
    }
    if (rc == 0) rc = check_no_strays(&f, lm);
    st_close(&f);
    return rc;
}

/* Before allocating what config.json asks for: the weights file must be large
 * enough to hold that many parameters, even in 16-bit floats. A wrong or hostile
 * config then fails here instead of reserving gigabytes. */
static int check_weights_size(const char *cfg_path, const char *st_path,
                              const struct lm_config *cfg) {
    size_t sizes[GPT2_N_TENSORS];
    size_t need = gpt2_param_sizes(cfg, sizes);
    struct stat st;
    if (stat(st_path, &st) != 0) return err_set("%s: %s", st_path, strerror(errno));
    if ((uint64_t)st.st_size / 2 < (uint64_t)need)
        return err_set("%s describes a model of %zu parameters, but %s has only %lld bytes",
                       cfg_path, need, st_path, (long long)st.st_size);
    return 0;
}

int gpt2_load(const char *dir, struct lm *lm) {
    size_t n = strlen(dir);
    char *cfg_path = xmalloc(n + 32), *st_path = xmalloc(n + 32);
    int rc = -1;
    if (!cfg_path || !st_path) goto done;
    snprintf(cfg_path, n + 32, "%s/config.json", dir);
    snprintf(st_path, n + 32, "%s/model.safetensors", dir);
    struct lm_config cfg;
    if (parse_config(cfg_path, &cfg) < 0) goto done;
    if (check_weights_size(cfg_path, st_path, &cfg) < 0) goto done;
    if (gpt2_new(&cfg, lm) < 0) goto done;
    rc = load_weights(st_path, lm);
    if (rc < 0) gpt2_free_impl(lm);
done:
    free(cfg_path);
    free(st_path);
    return rc;
}

static char *config_json(const struct lm_config *c, int64_t eot_id) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2LMHeadModel"));
    cJSON_AddStringToObject(o, "model_type", "gpt2");
    cJSON_AddStringToObject(o, "activation_function", "gelu_new");
    cJSON_AddNumberToObject(o, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(o, "n_head", c->n_head);
    cJSON_AddNumberToObject(o, "n_embd", c->d_model);
    cJSON_AddNumberToObject(o, "n_positions", c->max_seq);
    cJSON_AddNumberToObject(o, "n_ctx", c->max_seq);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "layer_norm_epsilon", (double)c->norm_eps);
    cJSON_AddNullToObject(o, "n_inner");
    cJSON_AddBoolToObject(o, "tie_word_embeddings", 1);
    cJSON_AddNumberToObject(o, "resid_pdrop", 0.0);
    cJSON_AddNumberToObject(o, "embd_pdrop", 0.0);
    cJSON_AddNumberToObject(o, "attn_pdrop", 0.0);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    if (eot_id >= 0) {
        cJSON_AddNumberToObject(o, "bos_token_id", (double)eot_id);
        cJSON_AddNumberToObject(o, "eos_token_id", (double)eot_id);
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

int gpt2_save(const struct lm *lm, const char *dir, int64_t eot_id) {
    const struct gpt2 *g = gpt2_of(lm);
    const struct lm_config *c = &lm->cfg;
    if (mkdir_p(dir) < 0) return -1;
    int n = 4 + 12 * c->n_layer;
    struct st_write_tensor *ts = xcalloc((size_t)n, sizeof *ts);
    char(*names)[64] = xcalloc((size_t)n, sizeof *names);
    size_t len = strlen(dir) + 32;
    char *path = xmalloc(len);
    char *cfg = config_json(c, eot_id);
    int rc = -1;
    if (!ts || !names || !path || !cfg) goto done;
    int k = 0;
    const float *src = g->memory;
    for (int t = 0; t < GPT2_N_TENSORS; t++) {
        int n_layers = hf_tensors[t].per_layer ? c->n_layer : 1;
        size_t per = g->sizes[t] / (size_t)n_layers;
        for (int l = 0; l < n_layers; l++, k++) {
            hf_name(names[k], sizeof names[k], t, l);
            ts[k].name = names[k];
            ts[k].ndim = hf_tensors[t].ndim;
            for (int d = 0; d < ts[k].ndim; d++) ts[k].shape[d] = dim_value(c, hf_tensors[t].dims[d]);
            ts[k].data = src + l * per;
        }
        src += g->sizes[t];
    }
    static const char *const mk[] = {"format"}, *const mv[] = {"pt"};
    snprintf(path, len, "%s/model.safetensors", dir);
    if (st_write_f32(path, ts, n, mk, mv, 1) < 0) goto done;
    snprintf(path, len, "%s/config.json", dir);
    rc = atomic_write_file(path, cfg, strlen(cfg));
done:
    free(ts);
    free(names);
    free(path);
    free(cfg);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Activations. One float buffer holds the residual stream, ln_f and every
 * per-layer buffer; without save_for_backward all layers share one set.
 */
struct gpt2_layer_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* (N,C), (N), (N) */
    float *qkv;                       /* (N,3C) */
    float *atty;                      /* (N,C) attention output before c_proj */
    float *lse;                       /* (B,NH,T) log-sum-exp of each score row */
    float *resid2;                    /* (N,C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd; /* (N,C), (N), (N) */
    float *fch, *fch_gelu;            /* (N,4C) */
};

struct gpt2_acts {
    float *memory;
    struct gpt2_layer_acts *layer; /* n_layer entries (aliases when not saving) */
    float *lnf_mean, *lnf_rstd;    /* (N) */
    float *att;                    /* att_threads × att_scratch_floats: attention scratch */
    int att_threads;
    /* backward scratch (save_for_backward only) */
    float *d_ln, *d_atty, *d_qkv, *d_fch; /* (N,C) (N,C) (N,3C) (N,4C) */
};

static size_t layer_floats(size_t N, size_t C, size_t NH) {
    return N * C * 15 + N * 4 + N * NH;
}

int gpt2_acts_init(const struct lm *lm, struct lm_acts *acts) {
    const struct lm_config *c = &lm->cfg;
    if (acts->B < 1 || acts->T < 1)
        return err_set("gpt2: batch shape must be positive, got B=%d T=%d", acts->B, acts->T);
    if (acts->T > c->max_seq)
        return err_set("gpt2: sequence length %d exceeds n_positions %d", acts->T, c->max_seq);
    size_t N = (size_t)acts->B * acts->T, C = (size_t)c->d_model, NH = (size_t)c->n_head;
    size_t L = (size_t)c->n_layer;
    size_t n_sets = acts->save_for_backward ? L : 1;
    int att_threads = parallel_threads();
    size_t att_floats = (size_t)att_threads * att_scratch_floats(acts->T, c->d_model, c->n_head);
    size_t total = (L + 2) * N * C + 2 * N + att_floats + n_sets * layer_floats(N, C, NH);
    if (acts->save_for_backward) total += N * C * 9;
    struct gpt2_acts *a = xcalloc(1, sizeof *a);
    acts->resid = xcalloc(L + 1, sizeof *acts->resid);
    if (a) a->layer = xcalloc(L, sizeof *a->layer);
    if (a && a->layer) a->memory = xmalloc(total * sizeof(float));
    if (!a || !acts->resid || !a->layer || !a->memory) {
        if (a) free(a->layer);
        free(a);
        free(acts->resid);
        acts->resid = NULL;
        return err_prefix("gpt2 activations for B=%d T=%d", acts->B, acts->T);
    }
    float *m = a->memory;
#define TAKE(ptr, n) (ptr = m, m += (n))
    for (size_t l = 0; l <= L; l++) TAKE(acts->resid[l], N * C);
    TAKE(acts->lnf, N * C);
    TAKE(a->lnf_mean, N);
    TAKE(a->lnf_rstd, N);
    TAKE(a->att, att_floats);
    a->att_threads = att_threads;
    for (size_t l = 0; l < L; l++) {
        struct gpt2_layer_acts *y = &a->layer[l];
        if (l >= n_sets) {
            *y = a->layer[0];
            continue;
        }
        TAKE(y->ln1, N * C);
        TAKE(y->ln1_mean, N);
        TAKE(y->ln1_rstd, N);
        TAKE(y->qkv, 3 * N * C);
        TAKE(y->atty, N * C);
        TAKE(y->lse, N * NH);
        TAKE(y->resid2, N * C);
        TAKE(y->ln2, N * C);
        TAKE(y->ln2_mean, N);
        TAKE(y->ln2_rstd, N);
        TAKE(y->fch, 4 * N * C);
        TAKE(y->fch_gelu, 4 * N * C);
    }
    if (acts->save_for_backward) {
        TAKE(a->d_ln, N * C);
        TAKE(a->d_atty, N * C);
        TAKE(a->d_qkv, 3 * N * C);
        TAKE(a->d_fch, 4 * N * C);
    }
#undef TAKE
    acts->priv = a;
    return 0;
}

void gpt2_acts_release(struct lm_acts *acts) {
    struct gpt2_acts *a = acts->priv;
    if (a) {
        free(a->memory);
        free(a->layer);
        free(a);
    }
    free(acts->resid);
    acts->resid = NULL;
    acts->lnf = NULL;
    acts->priv = NULL;
}

/* ---------------------------------------------------------------------------
 * Forward.
 */
int gpt2_embed(const struct lm *lm, struct lm_acts *acts, const int32_t *tokens) {
    const struct lm_config *c = &lm->cfg;
    const struct gpt2_params *p = &gpt2_of(lm)->p;
    int B = acts->B, T = acts->T, C = c->d_model;
    if (T > c->max_seq)
        return err_set("gpt2: sequence length %d exceeds n_positions %d", T, c->max_seq);
    for (int i = 0; i < B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return err_set("gpt2: token %d (batch row %d, position %d) is outside the vocabulary "
                           "of %d",
                           tokens[i], i / T, i % T, c->vocab_size);
    acts->tokens = tokens;
    for (int i = 0; i < B * T; i++) {
        // resid[0][b,t,:] = wte[token] + wpe[t]
        const float *te = p->wte + (size_t)tokens[i] * C, *pe = p->wpe + (size_t)(i % T) * C;
        float *o = acts->resid[0] + (size_t)i * C;
        for (int j = 0; j < C; j++) o[j] = te[j] + pe[j];
    }
    return 0;
}

static void block_forward(const struct lm *lm, struct lm_acts *acts, int l) {
    const struct lm_config *c = &lm->cfg;
    const struct gpt2_params *p = &gpt2_of(lm)->p;
    struct gpt2_acts *ga = acts->priv;
    struct gpt2_layer_acts *a = &ga->layer[l];
    int B = acts->B, T = acts->T, N = B * T, C = c->d_model, NH = c->n_head;
    size_t lc = (size_t)l * C;
    const float *x = acts->resid[l];
    float *out = acts->resid[l + 1];
    bool save = acts->save_for_backward;

    const struct gpt2 *g = gpt2_of(lm);
    bool drop = save && g->dropout > 0.0f;
    size_t NC = (size_t)N * C;
    /* ln_1, and the rows of qkv = c_attn bias and of the attention branch output:
     * resid2 = x + c_proj bias, or (dropout) the bias alone into the idle
     * backward scratch d_ln, for resid2 = x + dropout(branch) afterwards */
    float *att_branch = drop ? ga->d_ln : a->resid2, *mlp_branch = drop ? ga->d_ln : out;
    struct row_init init1[2] = {{a->qkv, NULL, p->qkvb + lc * 3, 3 * C},
                                {att_branch, drop ? NULL : x, p->attprojb + lc, C}};
    layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, p->ln1w + lc, p->ln1b + lc, N, C,
                      c->norm_eps, init1, 2);
    matmul_forward(a->qkv, a->ln1, p->qkvw + lc * 3 * C, N, C, 3 * C, true);
    struct attention_ctx ac = {.out = a->atty, .lse = save ? a->lse : NULL, .qkv = a->qkv,
                               .scratch = ga->att, .T = T, .C = C, .NH = NH};
    parallel_blas_items((size_t)B * NH, ga->att_threads, attention_forward_item, &ac);
    matmul_forward(att_branch, a->atty, p->attprojw + lc * C, N, C, C, true);
    if (drop) dropout_add(a->resid2, x, ga->d_ln, NC, g->dropout, dropout_key(g, l, 0));
    /* ln_2, and likewise fch = c_fc bias and the MLP branch output */
    struct row_init init2[2] = {{a->fch, NULL, p->fcb + lc * 4, 4 * C},
                                {mlp_branch, drop ? NULL : a->resid2, p->fcprojb + lc, C}};
    layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->resid2, p->ln2w + lc, p->ln2b + lc, N,
                      C, c->norm_eps, init2, 2);
    matmul_forward(a->fch, a->ln2, p->fcw + lc * 4 * C, N, C, 4 * C, true);
    gelu_forward(a->fch_gelu, a->fch, (size_t)N * 4 * C);
    matmul_forward(mlp_branch, a->fch_gelu, p->fcprojw + lc * 4 * C, N, 4 * C, C, true);
    if (drop) dropout_add(out, a->resid2, ga->d_ln, NC, g->dropout, dropout_key(g, l, 1));
}

int gpt2_blocks_forward(const struct lm *lm, struct lm_acts *acts, int from, int to) {
    if (from < 0 || to > lm->cfg.n_layer || from > to)
        return err_set("gpt2: blocks [%d, %d) out of range for %d layers", from, to,
                       lm->cfg.n_layer);
    for (int l = from; l < to; l++) block_forward(lm, acts, l);
    return 0;
}

int gpt2_final_norm(const struct lm *lm, struct lm_acts *acts) {
    const struct gpt2_params *p = &gpt2_of(lm)->p;
    struct gpt2_acts *ga = acts->priv;
    layernorm_forward(acts->lnf, ga->lnf_mean, ga->lnf_rstd, acts->resid[lm->cfg.n_layer], p->lnfw,
                      p->lnfb, acts->B * acts->T, lm->cfg.d_model, lm->cfg.norm_eps, NULL, 0);
    return 0;
}

// logits (n,V) = x (n,C) · wteᵀ
int gpt2_unembed(const struct lm *lm, const float *x, int n, float *logits) {
    int C = lm->cfg.d_model, V = lm->cfg.vocab_size;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, V, C, 1.0f, x, C, gpt2_of(lm)->p.wte, C,
                0.0f, logits, V);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Backward.
 */
static struct gpt2_params grads_of(const struct lm *lm, void *param_grads) {
    struct gpt2_params g;
    gpt2_point_params(&lm->cfg, param_grads, &g);
    return g;
}

// dx (n,C) += dlogits (n,V) · wte;  dwte (V,C) += dlogitsᵀ · x
int gpt2_unembed_backward(const struct lm *lm, const float *x, const float *dlogits, int n,
                          float *dx, void *param_grads) {
    int C = lm->cfg.d_model, V = lm->cfg.vocab_size;
    const float *wte = gpt2_of(lm)->p.wte;
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, C, V, 1.0f, dlogits, V, wte, C,
                    1.0f, dx, C);
    if (param_grads) {
        struct gpt2_params g = grads_of(lm, param_grads);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, n, 1.0f, dlogits, V, x, C, 1.0f,
                    g.wte, C);
    }
    return 0;
}

static int need_saved(const struct lm_acts *acts) {
    if (!acts->save_for_backward)
        return err_set("gpt2: backward needs activations made with save_for_backward");
    return 0;
}

// d_resid (N,C) = gradient at resid[n_layer] given d_lnf (N,C)
int gpt2_final_norm_backward(const struct lm *lm, struct lm_acts *acts, const float *d_lnf,
                             float *d_resid, void *param_grads) {
    if (need_saved(acts) < 0) return -1;
    const struct gpt2_params *p = &gpt2_of(lm)->p;
    struct gpt2_acts *ga = acts->priv;
    int N = acts->B * acts->T, C = lm->cfg.d_model;
    struct gpt2_params g = {0};
    if (param_grads) g = grads_of(lm, param_grads);
    memset(d_resid, 0, (size_t)N * C * sizeof *d_resid);
    layernorm_backward(d_resid, g.lnfw, g.lnfb, d_lnf, acts->resid[lm->cfg.n_layer], p->lnfw,
                       ga->lnf_mean, ga->lnf_rstd, N, C);
    return 0;
}

// dres (N,C): in, gradient at resid[l+1]; out, gradient at resid[l].
static void block_backward(const struct lm *lm, struct lm_acts *acts, int l, float *dres,
                           struct gpt2_params *g) {
    const struct lm_config *c = &lm->cfg;
    const struct gpt2_params *p = &gpt2_of(lm)->p;
    struct gpt2_acts *ga = acts->priv;
    struct gpt2_layer_acts *a = &ga->layer[l];
    int B = acts->B, T = acts->T, N = B * T, C = c->d_model, NH = c->n_head;
    size_t lc = (size_t)l * C;
#define G(member, off) (g ? g->member + (off) : NULL)
    const struct gpt2 *gp = gpt2_of(lm);
    bool drop = gp->dropout > 0.0f;
    size_t NC = (size_t)N * C;
    // mlp: resid[l+1] = resid2 + dropout(fch_gelu · fcprojw + fcprojb)
    const float *d_branch = dres;
    if (drop) {
        dropout_backward(ga->d_atty, dres, NC, gp->dropout, dropout_key(gp, l, 1));
        d_branch = ga->d_atty;
    }
    matmul_backward(ga->d_fch, G(fcprojw, lc * 4 * C), G(fcprojb, lc), d_branch, a->fch_gelu,
                    p->fcprojw + lc * 4 * C, N, 4 * C, C);
    gelu_backward(ga->d_fch, a->fch, ga->d_fch, (size_t)N * 4 * C);
    matmul_backward(ga->d_ln, G(fcw, lc * 4 * C), G(fcb, lc * 4), ga->d_fch, a->ln2,
                    p->fcw + lc * 4 * C, N, C, 4 * C);
    layernorm_backward(dres, G(ln2w, lc), G(ln2b, lc), ga->d_ln, a->resid2, p->ln2w + lc,
                       a->ln2_mean, a->ln2_rstd, N, C);
    // attention: resid2 = resid[l] + dropout(atty · attprojw + attprojb)
    d_branch = dres;
    if (drop) {
        dropout_backward(ga->d_ln, dres, NC, gp->dropout, dropout_key(gp, l, 0));
        d_branch = ga->d_ln;
    }
    matmul_backward(ga->d_atty, G(attprojw, lc * C), G(attprojb, lc), d_branch, a->atty,
                    p->attprojw + lc * C, N, C, C);
    struct attention_ctx ac = {.dqkv = ga->d_qkv, .dout = ga->d_atty, .qkv = a->qkv,
                               .lse_in = a->lse, .scratch = ga->att, .T = T, .C = C, .NH = NH};
    parallel_blas_items((size_t)B * NH, ga->att_threads, attention_backward_item, &ac);
    matmul_backward(ga->d_ln, G(qkvw, lc * 3 * C), G(qkvb, lc * 3), ga->d_qkv, a->ln1,
                    p->qkvw + lc * 3 * C, N, C, 3 * C);
    layernorm_backward(dres, G(ln1w, lc), G(ln1b, lc), ga->d_ln, acts->resid[l], p->ln1w + lc,
                       a->ln1_mean, a->ln1_rstd, N, C);
#undef G
}

struct add_ctx {
    float *y;
    const float *x;
};

static void add_range(void *ctx, int thread, size_t i0, size_t i1) {
    (void)thread;
    const struct add_ctx *a = ctx;
    for (size_t i = i0; i < i1; i++) a->y[i] += a->x[i];
}

int gpt2_blocks_backward(const struct lm *lm, struct lm_acts *acts, int from, int to,
                         float *d_resid, float *const *d_extra, void *param_grads) {
    if (need_saved(acts) < 0) return -1;
    if (from < 0 || to > lm->cfg.n_layer || from > to)
        return err_set("gpt2: blocks [%d, %d) out of range for %d layers", from, to,
                       lm->cfg.n_layer);
    struct gpt2_params g;
    if (param_grads) g = grads_of(lm, param_grads);
    size_t n = (size_t)acts->B * acts->T * lm->cfg.d_model;
    for (int l = to - 1; l >= from; l--) {
        block_backward(lm, acts, l, d_resid, param_grads ? &g : NULL);
        if (l > from && d_extra && d_extra[l]) {
            struct add_ctx a = {d_resid, d_extra[l]};
            parallel_for(n, 65536, add_range, &a);
        }
    }
    return 0;
}

// dwte[token] += d_resid0[b,t]; dwpe[t] += d_resid0[b,t]
int gpt2_embed_backward(const struct lm *lm, struct lm_acts *acts, const float *d_resid0,
                        void *param_grads) {
    if (!param_grads) return 0;
    if (!acts->tokens) return err_set("gpt2: embed backward before lm_embed");
    struct gpt2_params g = grads_of(lm, param_grads);
    int T = acts->T, C = lm->cfg.d_model;
    for (int i = 0; i < acts->B * T; i++) {
        const float *d = d_resid0 + (size_t)i * C;
        float *te = g.wte + (size_t)acts->tokens[i] * C, *pe = g.wpe + (size_t)(i % T) * C;
        for (int j = 0; j < C; j++) {
            te[j] += d[j];
            pe[j] += d[j];
        }
    }
    return 0;
}
