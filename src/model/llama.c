/* llama.c: Llama forward and input-gradient backward over llama2.c checkpoints.
 *
 * Loading. The legacy "version 0" .bin of llama2.c's run.c is a 7-int32 header
 * and raw float32 tensors in a fixed order. Nothing in the file says where it
 * ends, so the header is checked for sane values first and the file size must
 * then match the size the header implies exactly: a truncated download or a file
 * of another format is rejected before anything large is allocated. The weights
 * live in one buffer (struct llama_weights names the pieces); the stored RoPE
 * tables are skipped because the rotation is recomputed (run.c does the same).
 *
 * Activations. lm.h hands us a (B,T) batch and the residual stream between
 * blocks (acts->resid). Everything else lives in one buffer owned by
 * struct llama_acts_priv. Without save_for_backward all layers share one set of
 * per-layer buffers; with it, each layer keeps what its backward needs (q, k, v
 * after RoPE, the attention probabilities, the attention output before wo, the
 * residual between attention and FFN, and the two FFN pre-activations), and
 * backward scratch is allocated alongside. RMSNorm statistics are recomputed in
 * backward from the saved inputs rather than stored: it is a cheap (N,C) pass.
 *
 * Attention is done per (sequence, head) and per tile of 64 query rows, with
 * sgemm calls that stop at the tile's last key, so every product stays in BLAS
 * while most of the causal upper triangle is never computed. Saved attention
 * probabilities take B*n_head*T*T floats per layer: the largest buffer by far
 * at long T (stories260K, B 16, T 512: 670 MB over its 5 layers).
 *
 * Memory of that kind is the price of exact input gradients without
 * recomputation; a caller that only reads activations should not set
 * save_for_backward (then all layers share one set of buffers).
 *
 * Backward is for input gradients only: Llama is a frozen subject model in this
 * project, so no weight gradient is ever formed and param_grads must be NULL.
 */
/* The elementwise loops (softmax, SwiGLU, RMSNorm) vectorise only at O3, and the
 * branch-free clamps in exp_approx only without trapping maths (no FP traps are
 * ever enabled here). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include "model/llama.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/error.h"

#define LLAMA_HEADER_BYTES 28
#define LLAMA_ROPE_THETA 10000.0
#define LLAMA_NORM_EPS 1e-5f

/* Weights in file order; matrices are (out, in) row-major, stacked over layers. */
struct llama_weights {
    float *tok_emb;   /* (V,C) */
    float *rms_att;   /* (L,C) */
    float *wq;        /* (L,C,C) */
    float *wk;        /* (L,KV,C) with KV = n_kv_head * head_size */
    float *wv;        /* (L,KV,C) */
    float *wo;        /* (L,C,C) */
    float *rms_ffn;   /* (L,C) */
    float *w1;        /* (L,H,C) */
    float *w2;        /* (L,C,H) */
    float *w3;        /* (L,H,C) */
    float *rms_final; /* (C) */
    float *wcls;      /* (V,C): tok_emb when shared */
};

struct llama {
    int C, H, L, NH, NKV, HS, KV, V, S; /* dims; HS head size, S max sequence */
    struct llama_weights w;
    float *params;              /* the one weight buffer */
    float *rope_cos, *rope_sin; /* (S, HS/2) */
};

struct llama_layer_acts {
    float *q;   /* (B,T,C) after RoPE */
    float *k;   /* (B,T,KV) after RoPE */
    float *v;   /* (B,T,KV) */
    float *att; /* (B,NH,T,T) softmax probabilities, causal */
    float *ao;  /* (B,T,C) attention output before wo */
    float *mid; /* (B,T,C) residual after attention */
    float *h1;  /* (B,T,H) w1 x */
    float *h3;  /* (B,T,H) w3 x */
};

struct llama_acts_priv {
    struct llama_layer_acts *layer; /* n_layer entries */
    bool *fwd_done;                 /* block l ran forward since the last embed */
    float *xn;                      /* (B,T,C) normed input, forward scratch */
    float *g;                       /* (B,T,H) silu(h1)*h3, forward scratch */
    /* backward scratch (save_for_backward only) */
    float *dmid, *dao, *dq, *dxn; /* (B,T,C) */
    float *dk, *dv;               /* (B,T,KV) */
    float *dh1, *dh3;             /* (B,T,H) */
    float *dp;                    /* (T,T) */
    float *buf;                   /* the one activation buffer */
};

/* ---------------------------------------------------------------- loading */

static const char *const header_names[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                            "n_kv_heads", "vocab_size", "seq_len"};

/* Sane upper bounds: far above any llama2.c model, far below a huge malloc. */
static int check_header(const char *path, const int32_t h[7]) {
    static const int64_t max[7] = {1 << 16, 1 << 18, 1 << 10, 1 << 10, 1 << 10, 1 << 22, 1 << 20};
    for (int i = 0; i < 7; i++) {
        int64_t v = h[i];
        if (i == 5 && v < 0) v = -v;
        if (v <= 0 || v > max[i])
            return err_set("%s: header %s must be in 1..%lld, got %d", path, header_names[i],
                           (long long)max[i], h[i]);
    }
    int dim = h[0], nh = h[3], nkv = h[4];
    if (dim % nh)
        return err_set("%s: header dim %d is not a multiple of n_heads %d", path, dim, nh);
    if (nkv > nh || nh % nkv)
        return err_set("%s: header n_kv_heads %d must divide n_heads %d", path, nkv, nh);
    if ((dim / nh) % 2) return err_set("%s: head size %d must be even for RoPE", path, dim / nh);
    return 0;
}

static void set_dims(struct llama *m, const int32_t h[7]) {
    m->C = h[0], m->H = h[1], m->L = h[2], m->NH = h[3], m->NKV = h[4];
    m->V = h[5] < 0 ? -h[5] : h[5];
    m->S = h[6];
    m->HS = m->C / m->NH;
    m->KV = m->NKV * m->HS;
}

/* Floats in the weight buffer (everything but the skipped RoPE tables). */
static size_t n_param_floats(const struct llama *m, bool shared) {
    size_t C = m->C, L = m->L, H = m->H, KV = m->KV, V = m->V;
    size_t n = V * C + L * C + L * C * C + 2 * L * KV * C + L * C * C + L * C + 3 * L * H * C + C;
    return shared ? n : n + V * C;
}

static size_t n_rope_floats(const struct llama *m) {
    return (size_t)m->S * m->HS;
}

static void point_weights(struct llama *m, bool shared) {
    size_t C = m->C, L = m->L, H = m->H, KV = m->KV, V = m->V;
    float *p = m->params;
    struct llama_weights *w = &m->w;
    w->tok_emb = p, p += V * C;
    w->rms_att = p, p += L * C;
    w->wq = p, p += L * C * C;
    w->wk = p, p += L * KV * C;
    w->wv = p, p += L * KV * C;
    w->wo = p, p += L * C * C;
    w->rms_ffn = p, p += L * C;
    w->w1 = p, p += L * H * C;
    w->w2 = p, p += L * C * H;
    w->w3 = p, p += L * H * C;
    w->rms_final = p, p += C;
    w->wcls = shared ? w->tok_emb : p;
}

/* NaN/Inf anywhere is an error naming the tensor and the layer. */
static int check_finite(const char *path, const char *name, const float *x, size_t n_layers,
                        size_t per_layer) {
    for (size_t l = 0; l < n_layers; l++)
        for (size_t i = 0; i < per_layer; i++)
            if (!isfinite(x[l * per_layer + i])) {
                if (n_layers > 1)
                    return err_set("%s: tensor %s (layer %zu) has a non-finite value at %zu", path,
                                   name, l, i);
                return err_set("%s: tensor %s has a non-finite value at %zu", path, name, i);
            }
    return 0;
}

static int check_weights(const char *path, const struct llama *m) {
    size_t C = m->C, L = m->L, H = m->H, KV = m->KV, V = m->V;
    const struct llama_weights *w = &m->w;
    struct {
        const char *name;
        const float *x;
        size_t layers, per;
    } t[] = {{"token_embedding_table", w->tok_emb, 1, V * C},
             {"rms_att_weight", w->rms_att, L, C},
             {"wq", w->wq, L, C * C},
             {"wk", w->wk, L, KV * C},
             {"wv", w->wv, L, KV * C},
             {"wo", w->wo, L, C * C},
             {"rms_ffn_weight", w->rms_ffn, L, C},
             {"w1", w->w1, L, H * C},
             {"w2", w->w2, L, C * H},
             {"w3", w->w3, L, H * C},
             {"rms_final_weight", w->rms_final, 1, C},
             {"wcls", w->wcls, 1, V * C}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (check_finite(path, t[i].name, t[i].x, t[i].layers, t[i].per)) return -1;
    return 0;
}

/* cos/sin of pos * theta^(-2i/HS) for pos < S, i < HS/2. */
static void build_rope(struct llama *m) {
    int half = m->HS / 2;
    for (int pos = 0; pos < m->S; pos++)
        for (int i = 0; i < half; i++) {
            double freq = pow(LLAMA_ROPE_THETA, -(2.0 * i) / m->HS);
            m->rope_cos[(size_t)pos * half + i] = (float)cos(pos * freq);
            m->rope_sin[(size_t)pos * half + i] = (float)sin(pos * freq);
        }
}

static int read_floats(FILE *fp, const char *path, float *dst, size_t n) {
    if (fread(dst, sizeof(float), n, fp) != n) return err_errno("%s: short read", path);
    return 0;
}

static int read_weights(FILE *fp, const char *path, struct llama *m, bool shared) {
    size_t n_main = n_param_floats(m, true); /* up to and including rms_final */
    if (read_floats(fp, path, m->params, n_main)) return -1;
    if (shared) return 0;
    if (fseeko(fp, (off_t)(n_rope_floats(m) * sizeof(float)), SEEK_CUR))
        return err_errno("%s: seek past the RoPE tables", path);
    return read_floats(fp, path, m->params + n_main, (size_t)m->V * m->C);
}

static void llama_destroy(struct llama *m) {
    if (!m) return;
    free(m->params);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m);
}

static int load_file(FILE *fp, const char *path, struct llama *m, bool *shared) {
    struct stat st;
    if (fstat(fileno(fp), &st)) return err_errno("%s: stat", path);
    uint64_t actual = (uint64_t)st.st_size;
    if (actual < LLAMA_HEADER_BYTES)
        return err_set("%s: file is %llu bytes, shorter than the %d-byte llama2.c header", path,
                       (unsigned long long)actual, LLAMA_HEADER_BYTES);
    int32_t h[7];
    if (fread(h, sizeof h, 1, fp) != 1) return err_errno("%s: reading the header", path);
    if (check_header(path, h)) return -1;
    set_dims(m, h);
    *shared = h[5] > 0;
    uint64_t expect = LLAMA_HEADER_BYTES +
                      (uint64_t)(n_param_floats(m, *shared) + n_rope_floats(m)) * sizeof(float);
    if (actual != expect)
        return err_set("%s: file is %llu bytes but its header (dim %d, hidden_dim %d, n_layers "
                       "%d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d) implies %llu "
                       "bytes",
                       path, (unsigned long long)actual, h[0], h[1], h[2], h[3], h[4], h[5], h[6],
                       (unsigned long long)expect);
    size_t half = (size_t)m->S * (m->HS / 2);
    m->params = xmalloc(n_param_floats(m, *shared) * sizeof(float));
    m->rope_cos = xmalloc(half * sizeof(float));
    m->rope_sin = xmalloc(half * sizeof(float));
    if (!m->params || !m->rope_cos || !m->rope_sin)
        return err_prefix("%s: weights (%zu floats) and RoPE tables", path,
                          n_param_floats(m, *shared));
    point_weights(m, *shared);
    if (read_weights(fp, path, m, *shared) || check_weights(path, m)) return -1;
    build_rope(m);
    return 0;
}

int llama_load(const char *path, struct lm *lm) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return err_errno("%s: cannot open", path);
    struct llama *m = xcalloc(1, sizeof *m);
    bool shared = false;
    int rc = m ? load_file(fp, path, m, &shared) : err_prefix("%s", path);
    fclose(fp);
    if (rc) {
        llama_destroy(m);
        return -1;
    }
    lm->cfg = (struct lm_config){.arch = LM_LLAMA,
                                 .n_layer = m->L,
                                 .d_model = m->C,
                                 .n_head = m->NH,
                                 .n_kv_head = m->NKV,
                                 .d_ff = m->H,
                                 .vocab_size = m->V,
                                 .max_seq = m->S,
                                 .norm_eps = LLAMA_NORM_EPS,
                                 .shared_classifier = shared};
    lm->impl = m;
    return 0;
}

void llama_free_impl(struct lm *lm) {
    if (!lm) return;
    llama_destroy(lm->impl);
    lm->impl = NULL;
}

/* ------------------------------------------------------------ activations */

/* Lays out (or, with base NULL, only measures) the priv buffer. */
static size_t layout_priv(const struct llama *m, struct lm_acts *acts, struct llama_acts_priv *p,
                          float *base) {
    size_t N = (size_t)acts->B * acts->T, C = m->C, H = m->H, KV = m->KV, T = acts->T;
    size_t att = (size_t)acts->B * m->NH * T * T;
    size_t off = 0;
#define TAKE(ptr, n)                                                                               \
    do {                                                                                           \
        if (base) (ptr) = base + off;                                                              \
        off += (n);                                                                                \
    } while (0)
    int n_sets = acts->save_for_backward ? m->L : 1;
    for (int l = 0; l < m->L; l++) {
        struct llama_layer_acts *la = &p->layer[l];
        if (l >= n_sets) {
            *la = p->layer[0];
            continue;
        }
        TAKE(la->q, N * C);
        TAKE(la->k, N * KV);
        TAKE(la->v, N * KV);
        TAKE(la->att, att);
        TAKE(la->ao, N * C);
        TAKE(la->mid, N * C);
        TAKE(la->h1, N * H);
        TAKE(la->h3, N * H);
    }
    TAKE(p->xn, N * C);
    TAKE(p->g, N * H);
    if (acts->save_for_backward) {
        TAKE(p->dmid, N * C);
        TAKE(p->dao, N * C);
        TAKE(p->dq, N * C);
        TAKE(p->dxn, N * C);
        TAKE(p->dk, N * KV);
        TAKE(p->dv, N * KV);
        TAKE(p->dh1, N * H);
        TAKE(p->dh3, N * H);
        TAKE(p->dp, T * T);
    }
    for (int l = 0; l <= m->L; l++)
        TAKE(acts->resid[l], N * C);
    TAKE(acts->lnf, N * C);
#undef TAKE
    return off;
}

int llama_acts_init(const struct lm *lm, struct lm_acts *acts) {
    const struct llama *m = lm->impl;
    if (acts->B <= 0 || acts->T <= 0 || acts->T > m->S)
        return err_set("llama: batch needs B >= 1 and 1 <= T <= seq_len %d, got B %d T %d", m->S,
                       acts->B, acts->T);
    /* An estimate in double of every float the layout takes, so that a huge
     * batch is refused here rather than overflowing size_t arithmetic. */
    double N = (double)acts->B * acts->T, T = acts->T;
    double floats = m->L * (N * (4.0 * m->C + 2.0 * m->KV + 2.0 * m->H) + acts->B * m->NH * T * T) +
                    N * (m->C * (m->L + 7.0) + 2.0 * m->H + 2.0 * m->KV) + T * T;
    if (N > INT_MAX || floats > (double)(SIZE_MAX / 8))
        return err_set("llama: batch B %d T %d is too large", acts->B, acts->T);
    struct llama_acts_priv *p = xcalloc(1, sizeof *p);
    if (!p) return -1;
    acts->priv = p;
    p->layer = xcalloc((size_t)m->L, sizeof *p->layer);
    p->fwd_done = xcalloc((size_t)m->L, sizeof *p->fwd_done);
    acts->resid = xcalloc((size_t)m->L + 1, sizeof *acts->resid);
    if (!p->layer || !p->fwd_done || !acts->resid) goto fail;
    size_t total = layout_priv(m, acts, p, NULL);
    p->buf = xcalloc(total, sizeof(float));
    if (!p->buf) goto fail;
    layout_priv(m, acts, p, p->buf);
    return 0;
fail:
    llama_acts_release(acts);
    return err_prefix("llama: activations for B %d T %d", acts->B, acts->T);
}

void llama_acts_release(struct lm_acts *acts) {
    struct llama_acts_priv *p = acts->priv;
    if (p) {
        free(p->buf);
        free(p->layer);
        free(p->fwd_done);
        free(p);
    }
    free(acts->resid);
    acts->priv = NULL;
    acts->resid = NULL;
    acts->lnf = NULL;
}

/* ------------------------------------------------------------ matmuls */

/* out (N,OUT) = beta*out + x (N,IN) · wᵀ, w is (OUT,IN) */
static void matmul_wt(float *out, const float *x, const float *w, int N, int OUT, int IN,
                      float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OUT, IN, 1.0f, x, IN, w, IN, beta, out,
                OUT);
}

/* dx (N,IN) = beta*dx + dout (N,OUT) · w, w is (OUT,IN) */
static void matmul_w(float *dx, const float *dout, const float *w, int N, int OUT, int IN,
                     float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IN, OUT, 1.0f, dout, OUT, w, IN, beta,
                dx, IN);
}

/* ------------------------------------------------------------ RMSNorm */

static float rms_rstd(const float *x, int C) {
    float ss = 0.0f;
    for (int i = 0; i < C; i++)
        ss += x[i] * x[i];
    return 1.0f / sqrtf(ss / C + LLAMA_NORM_EPS);
}

/* out (N,C) = x * rstd(x) * w; x (N,C), w (C) */
static void rmsnorm_forward(float *out, const float *x, const float *w, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float r = rms_rstd(xr, C);
        for (int i = 0; i < C; i++)
            o[i] = xr[i] * r * w[i];
    }
}

/* dx (N,C) (+)= RMSNorm backward of dout at x: with g = w*dout,
 * dx = r*g - x * r^3 * mean(g*x). accumulate selects += over =. */
static void rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w, int N,
                             int C, bool accumulate) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *d = dout + (size_t)n * C;
        float *o = dx + (size_t)n * C;
        float r = rms_rstd(xr, C);
        float dot = 0.0f;
        for (int i = 0; i < C; i++)
            dot += w[i] * d[i] * xr[i];
        float k = r * r * r * dot / C;
        for (int i = 0; i < C; i++) {
            float v = r * w[i] * d[i] - xr[i] * k;
            o[i] = accumulate ? o[i] + v : v;
        }
    }
}

/* ------------------------------------------------------------ RoPE */

/* Rotates adjacent pairs (2i, 2i+1) of every head of x (B,T,width) by the angle
 * of position t; sign -1 applies the inverse rotation (the backward pass). */
static void rope_apply(const struct llama *m, float *x, int B, int T, int width, float sign) {
    int half = m->HS / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *c = m->rope_cos + (size_t)t * half, *s = m->rope_sin + (size_t)t * half;
            float *row = x + ((size_t)b * T + t) * width;
            for (int h0 = 0; h0 < width; h0 += m->HS)
                for (int i = 0; i < half; i++) {
                    float *p = row + h0 + 2 * i;
                    float x0 = p[0], x1 = p[1], sn = sign * s[i];
                    p[0] = x0 * c[i] - x1 * sn;
                    p[1] = x0 * sn + x1 * c[i];
                }
        }
}

/* ------------------------------------------------------------ elementwise */

/* exp(x) to about 1 ulp (Cephes' expf range reduction and polynomial) in a form
 * the compiler vectorises; libm's expf is a call per element and dominated the
 * attention softmax. Inputs below -87.3 give ~1e-38 rather than 0. */
static inline float exp_approx(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (floorf would be a call) */
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f; /* x = n ln2 + r, |r| <= ln2/2 */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* NaN in gives NaN out through p; n must not be NaN when made an int (UB) */
    int32_t bits = ((int32_t)(n == n ? n : 0.0f) + 127) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Reductions over 8 independent lanes so that they vectorise. */
static float max_lanes(const float *x, int n) {
    float lane[8], m = x[0];
    for (int k = 0; k < 8; k++)
        lane[k] = x[0];
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            lane[k] = x[i + k] > lane[k] ? x[i + k] : lane[k];
    for (; i < n; i++)
        m = x[i] > m ? x[i] : m;
    for (int k = 0; k < 8; k++)
        m = lane[k] > m ? lane[k] : m;
    return m;
}

static float dot_lanes(const float *a, const float *b, int n) {
    float lane[8] = {0}, s = 0.0f;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            lane[k] += a[i + k] * b[i + k];
    for (; i < n; i++)
        s += a[i] * b[i];
    for (int k = 0; k < 8; k++)
        s += lane[k];
    return s;
}

static float sum_lanes(const float *x, int n) {
    float lane[8] = {0}, s = 0.0f;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            lane[k] += x[i + k];
    for (; i < n; i++)
        s += x[i];
    for (int k = 0; k < 8; k++)
        s += lane[k];
    return s;
}

/* ------------------------------------------------------------ attention */

/* Causal attention runs over tiles of query rows [r0, r1): such a tile sees only
 * keys 0..r1-1, so the products skip most of the upper triangle. Of each (T,T)
 * matrix only rows r0..r1-1, columns 0..r1-1 of every tile are written or read. */
#define ATT_TILE 64

/* Rows r0..r1-1 of a (T,T) score matrix: causal softmax of row t over 0..t,
 * zeros from t+1 to r1-1. */
static void causal_softmax(float *s, int T, int r0, int r1) {
    for (int t = r0; t < r1; t++) {
        float *r = s + (size_t)t * T;
        float mx = max_lanes(r, t + 1);
        for (int j = 0; j <= t; j++)
            r[j] = exp_approx(r[j] - mx);
        float inv = 1.0f / sum_lanes(r, t + 1);
        for (int j = 0; j <= t; j++)
            r[j] *= inv;
        for (int j = t + 1; j < r1; j++)
            r[j] = 0.0f;
    }
}

/* Softmax backward on rows r0..r1-1, in place on dp: ds = scale * att * (dp -
 * rowsum(att * dp)); zero above the diagonal. */
static void causal_softmax_backward(float *dp, const float *att, int T, int r0, int r1,
                                    float scale) {
    for (int t = r0; t < r1; t++) {
        const float *a = att + (size_t)t * T;
        float *d = dp + (size_t)t * T;
        float dot = dot_lanes(a, d, t + 1);
        for (int j = 0; j <= t; j++)
            d[j] = scale * a[j] * (d[j] - dot);
        for (int j = t + 1; j < r1; j++)
            d[j] = 0.0f;
    }
}

/* Where one (sequence, head) pair lives inside the (B,T,·) buffers. */
struct head_view {
    size_t qo, ko; /* offsets into (B,T,C) and (B,T,KV) buffers */
    size_t att;    /* offset of its (T,T) block in (B,NH,T,T) */
};

static struct head_view head_view(const struct llama *m, int b, int h, int T) {
    int group = m->NH / m->NKV; /* query head h reads kv head h / group */
    return (struct head_view){.qo = (size_t)b * T * m->C + (size_t)h * m->HS,
                              .ko = (size_t)b * T * m->KV + (size_t)(h / group) * m->HS,
                              .att = ((size_t)b * m->NH + h) * T * T};
}

/* q (B,T,C), k,v (B,T,KV) -> att (B,NH,T,T), ao (B,T,C) */
static void attention_forward(const struct llama *m, const struct llama_layer_acts *la, int B,
                              int T) {
    int C = m->C, KV = m->KV, HS = m->HS;
    float scale = 1.0f / sqrtf((float)HS);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < m->NH; h++) {
            struct head_view hv = head_view(m, b, h, T);
            const float *q = la->q + hv.qo, *k = la->k + hv.ko, *v = la->v + hv.ko;
            float *att = la->att + hv.att, *ao = la->ao + hv.qo;
            for (int r0 = 0; r0 < T; r0 += ATT_TILE) {
                int r1 = r0 + ATT_TILE < T ? r0 + ATT_TILE : T, n = r1 - r0;
                float *a = att + (size_t)r0 * T;
                /* a (n,r1) = scale * q[r0:r1] (n,HS) · k[0:r1]ᵀ */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r1, HS, scale,
                            q + (size_t)r0 * C, C, k, KV, 0.0f, a, T);
                causal_softmax(att, T, r0, r1);
                /* ao[r0:r1] (n,HS) = a (n,r1) · v[0:r1] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, HS, r1, 1.0f, a, T, v, KV,
                            0.0f, ao + (size_t)r0 * C, C);
            }
        }
}

/* dao (B,T,C) -> dq (B,T,C), dk, dv (B,T,KV) (all before undoing RoPE). */
static void attention_backward(const struct llama *m, const struct llama_layer_acts *la,
                               struct llama_acts_priv *p, int B, int T) {
    int C = m->C, KV = m->KV, HS = m->HS;
    float scale = 1.0f / sqrtf((float)HS);
    memset(p->dk, 0, (size_t)B * T * KV * sizeof(float));
    memset(p->dv, 0, (size_t)B * T * KV * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < m->NH; h++) {
            struct head_view hv = head_view(m, b, h, T);
            const float *q = la->q + hv.qo, *k = la->k + hv.ko, *v = la->v + hv.ko;
            const float *att = la->att + hv.att, *dao = p->dao + hv.qo;
            float *dq = p->dq + hv.qo, *dk = p->dk + hv.ko, *dv = p->dv + hv.ko;
            for (int r0 = 0; r0 < T; r0 += ATT_TILE) {
                int r1 = r0 + ATT_TILE < T ? r0 + ATT_TILE : T, n = r1 - r0;
                const float *a = att + (size_t)r0 * T, *dor = dao + (size_t)r0 * C;
                float *ds = p->dp + (size_t)r0 * T;
                /* ds (n,r1) = dao[r0:r1] · v[0:r1]ᵀ;  dv[0:r1] (r1,HS) += aᵀ · dao[r0:r1] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r1, HS, 1.0f, dor, C, v, KV,
                            0.0f, ds, T);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, HS, n, 1.0f, a, T, dor, C,
                            1.0f, dv, KV);
                causal_softmax_backward(p->dp, att, T, r0, r1, scale);
                /* dq[r0:r1] (n,HS) = ds · k[0:r1];  dk[0:r1] (r1,HS) += dsᵀ · q[r0:r1] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, HS, r1, 1.0f, ds, T, k,
                            KV, 0.0f, dq + (size_t)r0 * C, C);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, HS, n, 1.0f, ds, T,
                            q + (size_t)r0 * C, C, 1.0f, dk, KV);
            }
        }
}

/* ------------------------------------------------------------ SwiGLU */

static inline float sigmoid(float x) {
    return 1.0f / (1.0f + exp_approx(-x));
}

/* g (n) = silu(h1) * h3 */
static void swiglu_forward(float *restrict g, const float *restrict h1, const float *restrict h3,
                           size_t n) {
    for (size_t i = 0; i < n; i++)
        g[i] = h1[i] * sigmoid(h1[i]) * h3[i];
}

/* dg (n) -> dh1, dh3 (n), in place: dh1 holds dg on entry. */
static void swiglu_backward(float *restrict dh1, float *restrict dh3, const float *restrict h1,
                            const float *restrict h3, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float s = sigmoid(h1[i]), d = dh1[i];
        dh3[i] = d * h1[i] * s;
        dh1[i] = d * h3[i] * s * (1.0f + h1[i] * (1.0f - s));
    }
}

/* ------------------------------------------------------------ blocks */

/* x (B,T,C) = resid[l] -> out (B,T,C) = resid[l+1] */
static void block_forward(const struct llama *m, struct lm_acts *acts, int l) {
    struct llama_acts_priv *p = acts->priv;
    struct llama_layer_acts *la = &p->layer[l];
    const struct llama_weights *w = &m->w;
    int B = acts->B, T = acts->T, N = B * T, C = m->C, H = m->H, KV = m->KV;
    size_t CC = (size_t)C * C, KC = (size_t)KV * C, HC = (size_t)H * C;
    const float *x = acts->resid[l];
    float *out = acts->resid[l + 1];

    rmsnorm_forward(p->xn, x, w->rms_att + (size_t)l * C, N, C);
    matmul_wt(la->q, p->xn, w->wq + l * CC, N, C, C, 0.0f);
    matmul_wt(la->k, p->xn, w->wk + l * KC, N, KV, C, 0.0f);
    matmul_wt(la->v, p->xn, w->wv + l * KC, N, KV, C, 0.0f);
    rope_apply(m, la->q, B, T, C, 1.0f);
    rope_apply(m, la->k, B, T, KV, 1.0f);
    attention_forward(m, la, B, T);
    memcpy(la->mid, x, (size_t)N * C * sizeof(float));
    matmul_wt(la->mid, la->ao, w->wo + l * CC, N, C, C, 1.0f);

    rmsnorm_forward(p->xn, la->mid, w->rms_ffn + (size_t)l * C, N, C);
    matmul_wt(la->h1, p->xn, w->w1 + l * HC, N, H, C, 0.0f);
    matmul_wt(la->h3, p->xn, w->w3 + l * HC, N, H, C, 0.0f);
    swiglu_forward(p->g, la->h1, la->h3, (size_t)N * H);
    memcpy(out, la->mid, (size_t)N * C * sizeof(float));
    matmul_wt(out, p->g, w->w2 + l * HC, N, C, H, 1.0f);
}

/* d (B,T,C): grad at resid[l+1] in, grad at resid[l] out. */
static void block_backward(const struct llama *m, struct lm_acts *acts, int l, float *d) {
    struct llama_acts_priv *p = acts->priv;
    const struct llama_layer_acts *la = &p->layer[l];
    const struct llama_weights *w = &m->w;
    int B = acts->B, T = acts->T, N = B * T, C = m->C, H = m->H, KV = m->KV;
    size_t CC = (size_t)C * C, KC = (size_t)KV * C, HC = (size_t)H * C, NC = (size_t)N * C;

    /* FFN: out = mid + w2(silu(w1 xn) * w3 xn), xn = rmsnorm(mid) */
    memcpy(p->dmid, d, NC * sizeof(float));
    matmul_w(p->dh1, d, w->w2 + l * HC, N, C, H, 0.0f); /* dg, turned into dh1 in place */
    swiglu_backward(p->dh1, p->dh3, la->h1, la->h3, (size_t)N * H);
    matmul_w(p->dxn, p->dh1, w->w1 + l * HC, N, H, C, 0.0f);
    matmul_w(p->dxn, p->dh3, w->w3 + l * HC, N, H, C, 1.0f);
    rmsnorm_backward(p->dmid, p->dxn, la->mid, w->rms_ffn + (size_t)l * C, N, C, true);

    /* attention: mid = x + wo(attn(rope(wq xn), rope(wk xn), wv xn)), xn = rmsnorm(x) */
    matmul_w(p->dao, p->dmid, w->wo + l * CC, N, C, C, 0.0f);
    attention_backward(m, la, p, B, T);
    rope_apply(m, p->dq, B, T, C, -1.0f);
    rope_apply(m, p->dk, B, T, KV, -1.0f);
    matmul_w(p->dxn, p->dq, w->wq + l * CC, N, C, C, 0.0f);
    matmul_w(p->dxn, p->dk, w->wk + l * KC, N, KV, C, 1.0f);
    matmul_w(p->dxn, p->dv, w->wv + l * KC, N, KV, C, 1.0f);
    memcpy(d, p->dmid, NC * sizeof(float));
    rmsnorm_backward(d, p->dxn, acts->resid[l], w->rms_att + (size_t)l * C, N, C, true);
}

/* ------------------------------------------------------------ lm.h entry points */

int llama_embed(const struct lm *lm, struct lm_acts *acts, const int32_t *tokens) {
    const struct llama *m = lm->impl;
    struct llama_acts_priv *p = acts->priv;
    size_t N = (size_t)acts->B * acts->T, C = m->C;
    for (size_t i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= m->V)
            return err_set("llama: token id %d at position %zu is outside the vocabulary [0, %d)",
                           tokens[i], i, m->V);
    for (size_t i = 0; i < N; i++)
        memcpy(acts->resid[0] + i * C, m->w.tok_emb + (size_t)tokens[i] * C, C * sizeof(float));
    memset(p->fwd_done, 0, (size_t)m->L * sizeof *p->fwd_done);
    acts->tokens = tokens;
    return 0;
}

int llama_blocks_forward(const struct lm *lm, struct lm_acts *acts, int from, int to) {
    const struct llama *m = lm->impl;
    struct llama_acts_priv *p = acts->priv;
    if (from < 0 || from > to || to > m->L)
        return err_set("llama: blocks_forward needs 0 <= from <= to <= %d, got %d..%d", m->L, from,
                       to);
    for (int l = from; l < to; l++) {
        block_forward(m, acts, l);
        p->fwd_done[l] = true;
    }
    return 0;
}

int llama_final_norm(const struct lm *lm, struct lm_acts *acts) {
    const struct llama *m = lm->impl;
    rmsnorm_forward(acts->lnf, acts->resid[m->L], m->w.rms_final, acts->B * acts->T, m->C);
    return 0;
}

int llama_unembed(const struct lm *lm, const float *x, int n, float *logits) {
    const struct llama *m = lm->impl;
    if (n < 0) return err_set("llama: unembed needs n >= 0, got %d", n);
    if (n) matmul_wt(logits, x, m->w.wcls, n, m->V, m->C, 0.0f);
    return 0;
}

static int no_param_grads(const void *param_grads, const char *fn) {
    if (param_grads)
        return err_set("llama: %s computes input gradients only; param_grads must be NULL", fn);
    return 0;
}

int llama_unembed_backward(const struct lm *lm, const float *x, const float *dlogits, int n,
                           float *dx, void *param_grads) {
    (void)x; /* needed only for the classifier's own gradient */
    const struct llama *m = lm->impl;
    if (no_param_grads(param_grads, "unembed_backward")) return -1;
    if (n < 0) return err_set("llama: unembed_backward needs n >= 0, got %d", n);
    if (n) matmul_w(dx, dlogits, m->w.wcls, n, m->V, m->C, 1.0f);
    return 0;
}

int llama_final_norm_backward(const struct lm *lm, struct lm_acts *acts, const float *d_lnf,
                              float *d_resid) {
    const struct llama *m = lm->impl;
    rmsnorm_backward(d_resid, d_lnf, acts->resid[m->L], m->w.rms_final, acts->B * acts->T, m->C,
                     false);
    return 0;
}

int llama_blocks_backward(const struct lm *lm, struct lm_acts *acts, int from, int to,
                          float *d_resid, float *const *d_extra, void *param_grads) {
    const struct llama *m = lm->impl;
    struct llama_acts_priv *p = acts->priv;
    if (no_param_grads(param_grads, "blocks_backward")) return -1;
    if (from < 0 || from > to || to > m->L)
        return err_set("llama: blocks_backward needs 0 <= from <= to <= %d, got %d..%d", m->L, from,
                       to);
    if (!acts->save_for_backward)
        return err_set("llama: blocks_backward needs activations made with save_for_backward");
    for (int l = from; l < to; l++)
        if (!p->fwd_done[l])
            return err_set("llama: blocks_backward through block %d, which has not run forward "
                           "since the last embed",
                           l);
    size_t NC = (size_t)acts->B * acts->T * m->C;
    for (int l = to - 1; l >= from; l--) {
        block_backward(m, acts, l, d_resid);
        if (l > from && d_extra && d_extra[l])
            for (size_t i = 0; i < NC; i++)
                d_resid[i] += d_extra[l][i];
    }
    return 0;
}

int llama_embed_backward(const struct lm *lm, struct lm_acts *acts, const float *d_resid0,
                         void *param_grads) {
    (void)lm, (void)acts, (void)d_resid0;
    /* Without parameter gradients there is nothing below the embedding to reach. */
    return no_param_grads(param_grads, "embed_backward");
}
