/* test_gpt2_block.c: one GPT-2 block of the C model against a plain float64
 * implementation written here, for every attention path.
 *
 * The forward attention has a tiled kernel for head sizes that are multiples of
 * 8 and an sgemm path for the others; the PyTorch reference tests
 * (test_gpt2_ref) use head sizes 16 and 64 only. Here: head sizes 8, 16, 64
 * (kernel, with 8-column and 16-column output tiles) and 12 (sgemm path), with
 * sequence lengths that leave partial query tiles, key panels and attention
 * blocks (T = 1, 7, 70, 131). The reference is the textbook block: ln_1, q kᵀ
 * / sqrt(hs) with the causal mask, softmax, · v, c_proj, residual, ln_2, c_fc,
 * GELU (tanh), c_proj, residual, all in double.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpt2.h"
#include "model/lm.h"
#include "util/error.h"

struct dims {
    int C, NH, B, T;
};

static void layernorm(double *out, const double *x, const float *w, const float *b, int C) {
    double m = 0, v = 0;
    for (int j = 0; j < C; j++) m += x[j];
    m /= C;
    for (int j = 0; j < C; j++) v += (x[j] - m) * (x[j] - m);
    v /= C;
    double s = 1.0 / sqrt(v + 1e-5);
    for (int j = 0; j < C; j++) out[j] = (x[j] - m) * s * w[j] + b[j];
}

// out (n) = in (m) · w (m,n) + b (n)
static void linear(double *out, const double *in, const float *w, const float *b, int m, int n) {
    for (int j = 0; j < n; j++) out[j] = b[j];
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) out[j] += in[i] * w[(size_t)i * n + j];
}

/* resid[1] of block 0 for sequence b, from resid[0], in double: out is (T,C). */
static void reference_block(const struct gpt2_params *p, const struct dims *d, const float *x0,
                            double *out) {
    int C = d->C, T = d->T, NH = d->NH, hs = C / NH;
    double *x = malloc((size_t)T * C * sizeof *x), *ln = malloc((size_t)C * sizeof *ln);
    double *qkv = malloc((size_t)T * 3 * C * sizeof *qkv), *y = malloc((size_t)C * sizeof *y);
    double *att = malloc((size_t)T * sizeof *att), *h = malloc((size_t)T * C * sizeof *h);
    double *f = malloc((size_t)4 * C * sizeof *f), *o = malloc((size_t)C * sizeof *o);
    for (size_t i = 0; i < (size_t)T * C; i++) x[i] = x0[i];
    for (int t = 0; t < T; t++) {
        layernorm(ln, x + (size_t)t * C, p->ln1w, p->ln1b, C);
        linear(qkv + (size_t)t * 3 * C, ln, p->qkvw, p->qkvb, C, 3 * C);
    }
    for (int t = 0; t < T; t++) {
        for (int hh = 0; hh < NH; hh++) {
            const double *q = qkv + (size_t)t * 3 * C + hh * hs;
            double mx = -INFINITY, sum = 0;
            for (int u = 0; u <= t; u++) {
                const double *k = qkv + (size_t)u * 3 * C + C + hh * hs;
                double s = 0;
                for (int e = 0; e < hs; e++) s += q[e] * k[e];
                att[u] = s / sqrt((double)hs);
                mx = att[u] > mx ? att[u] : mx;
            }
            for (int u = 0; u <= t; u++) sum += att[u] = exp(att[u] - mx);
            for (int e = 0; e < hs; e++) {
                double acc = 0;
                for (int u = 0; u <= t; u++)
                    acc += att[u] * qkv[(size_t)u * 3 * C + 2 * C + hh * hs + e];
                y[hh * hs + e] = acc / sum;
            }
        }
        linear(o, y, p->attprojw, p->attprojb, C, C);
        for (int j = 0; j < C; j++) h[(size_t)t * C + j] = x[(size_t)t * C + j] + o[j];
    }
    for (int t = 0; t < T; t++) {
        layernorm(ln, h + (size_t)t * C, p->ln2w, p->ln2b, C);
        linear(f, ln, p->fcw, p->fcb, C, 4 * C);
        for (int j = 0; j < 4 * C; j++)
            f[j] = 0.5 * f[j] * (1.0 + tanh(sqrt(2.0 / M_PI) * (f[j] + 0.044715 * pow(f[j], 3))));
        linear(o, f, p->fcprojw, p->fcprojb, 4 * C, C);
        for (int j = 0; j < C; j++) out[(size_t)t * C + j] = h[(size_t)t * C + j] + o[j];
    }
    free(x);
    free(ln);
    free(qkv);
    free(y);
    free(att);
    free(h);
    free(f);
    free(o);
}

static void check_block(const struct dims *d) {
    struct lm_config cfg = {.arch = LM_GPT2, .n_layer = 1, .d_model = d->C, .n_head = d->NH,
                            .vocab_size = 50, .max_seq = d->T, .norm_eps = 1e-5f};
    struct lm *lm = calloc(1, sizeof *lm);
    if (gpt2_new(&cfg, lm) < 0) fail_msg("%s", err_msg());
    lm->path = strdup("random gpt2");
    struct gpt2 *g = gpt2_of(lm);
    uint64_t s = 3;
    for (size_t i = 0; i < g->n_params; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        g->memory[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 0.5f;
    }
    for (int j = 0; j < d->C; j++) g->p.ln1w[j] += 1.0f, g->p.ln2w[j] += 1.0f;
    int N = d->B * d->T;
    int32_t *tok = malloc((size_t)N * sizeof *tok);
    for (int i = 0; i < N; i++) tok[i] = (i * 17 + 5) % 50;
    struct lm_acts *acts = lm_acts_new(lm, d->B, d->T, false);
    assert_non_null(acts);
    assert_int_equal(lm_embed(lm, acts, tok), 0);
    assert_int_equal(lm_blocks_forward(lm, acts, 0, 1), 0);
    double *ref = malloc((size_t)d->T * d->C * sizeof *ref), worst = 0, big = 0;
    for (int b = 0; b < d->B; b++) {
        size_t off = (size_t)b * d->T * d->C;
        reference_block(&g->p, d, acts->resid[0] + off, ref);
        for (size_t i = 0; i < (size_t)d->T * d->C; i++) {
            double e = fabs(ref[i] - acts->resid[1][off + i]);
            worst = e > worst || isnan(e) ? e : worst;
            big = fabs(ref[i]) > big ? fabs(ref[i]) : big;
        }
    }
    printf("  C=%d NH=%d (hs %d) B=%d T=%d: max|diff| %.2e (max|ref| %.2f)\n", d->C, d->NH,
           d->C / d->NH, d->B, d->T, worst, big);
    assert_true(worst <= 2e-5 * (1 + big));
    free(ref);
    free(tok);
    lm_acts_free(acts);
    lm_free(lm);
}

static void test_tiled_attention_matches_plain_block(void **state) {
    (void)state;
    const struct dims d[] = {{64, 4, 2, 131}, {64, 8, 1, 70}, {128, 2, 1, 70}, {32, 2, 3, 7},
                             {16, 2, 2, 1}};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) check_block(&d[i]);
}

static void test_sgemm_attention_matches_plain_block(void **state) {
    (void)state;
    const struct dims d[] = {{36, 3, 2, 131}, {36, 3, 1, 7}};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) check_block(&d[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiled_attention_matches_plain_block),
        cmocka_unit_test(test_sgemm_attention_matches_plain_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
