/* test_llama_load.c: llama2.c checkpoints that are truncated, oversized, have
 * absurd headers or non-finite weights are refused with messages naming the
 * file (and the field or tensor); misuse of the forward/backward API is an
 * error; and, without any reference tool, the input gradient of a tiny synthetic
 * model agrees with central finite differences. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "model/llama.h"
#include "model/lm.h"
#include "util/error.h"

#define STORIES "models/stories260K/stories260K.bin"

/* dim, hidden, layers, heads, kv heads, vocab (negative: separate classifier), seq */
static const int32_t tiny_hdr[7] = {8, 12, 2, 4, 2, -11, 8};

static size_t tiny_n_floats(const int32_t h[7]) {
    size_t C = h[0], H = h[1], L = h[2], KV = (size_t)h[4] * (h[0] / h[3]);
    size_t V = h[5] < 0 ? -h[5] : h[5], S = h[6], HS = C / h[3];
    size_t n = V * C + L * C * 2 + L * C * C * 2 + L * KV * C * 2 + L * H * C * 3 + C + S * HS;
    return h[5] < 0 ? n + V * C : n;
}

/* A synthetic checkpoint with deterministic weights in [-0.5, 0.5). */
static void write_tiny(const char *path, const int32_t h[7]) {
    size_t n = tiny_n_floats(h);
    float *w = malloc(n * sizeof *w);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = (float)(s >> 8) / (1 << 24) - 0.5f;
    }
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fwrite(h, 4, 7, fp);
    fwrite(w, 4, n, fp);
    fclose(fp);
    free(w);
}

static void expect_load_error(const char *path, const char *needle1, const char *needle2) {
    struct lm lm = {0};
    assert_int_equal(llama_load(path, &lm), -1);
    assert_null(lm.impl);
    const char *msg = err_msg();
    print_message("  %s\n", msg);
    assert_non_null(strstr(msg, path));
    if (needle1 && !strstr(msg, needle1)) fail_msg("'%s' lacks '%s'", msg, needle1);
    if (needle2 && !strstr(msg, needle2)) fail_msg("'%s' lacks '%s'", msg, needle2);
}

static void test_truncated_and_oversized_files_are_errors(void **state) {
    (void)state;
    char *dir = test_tmpdir("llama_load");
    char *path = path_join(dir, "m.bin");
    size_t n = tiny_n_floats(tiny_hdr);
    write_tiny(path, tiny_hdr);
    size_t full = 28 + 4 * n;
    size_t size;
    char *bytes = read_file_all(path, 0, &size);
    assert_int_equal(size, full);
    char want[64], got[64];
    snprintf(want, sizeof want, "implies %zu bytes", full);

    write_file(path, bytes, full - 3); /* truncated */
    snprintf(got, sizeof got, "is %zu bytes", full - 3);
    expect_load_error(path, want, got);

    char *big = calloc(full + 4, 1); /* one float too many */
    memcpy(big, bytes, full);
    write_file(path, big, full + 4);
    snprintf(got, sizeof got, "is %zu bytes", full + 4);
    expect_load_error(path, want, got);

    write_file(path, bytes, 10); /* not even a header */
    expect_load_error(path, "header", "10 bytes");

    write_file(path, bytes, full); /* intact: loads */
    struct lm lm = {0};
    assert_int_equal(llama_load(path, &lm), 0);
    assert_int_equal(lm.cfg.arch, LM_LLAMA);
    assert_int_equal(lm.cfg.vocab_size, 11);
    assert_int_equal(lm.cfg.n_kv_head, 2);
    assert_false(lm.cfg.shared_classifier);
    llama_free_impl(&lm);

    expect_load_error("/nonexistent/stories.bin", "cannot open", NULL);
    free(big);
    free(bytes);
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_truncated_stories260K_is_an_error(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(STORIES);
    size_t n;
    char *bytes = read_file_all(shared_path(STORIES), 0, &n);
    assert_non_null(bytes);
    struct lm lm = {0};
    assert_int_equal(llama_load(shared_path(STORIES), &lm), 0);
    assert_int_equal(lm.cfg.d_model, 64);
    assert_int_equal(lm.cfg.d_ff, 172);
    assert_int_equal(lm.cfg.n_layer, 5);
    assert_int_equal(lm.cfg.n_head, 8);
    assert_int_equal(lm.cfg.n_kv_head, 4);
    assert_int_equal(lm.cfg.vocab_size, 512);
    assert_int_equal(lm.cfg.max_seq, 512);
    assert_true(lm.cfg.shared_classifier);
    llama_free_impl(&lm);

    char *dir = test_tmpdir("llama_trunc");
    char *path = path_join(dir, "stories260K.bin");
    write_file(path, bytes, n / 2);
    char want[64];
    snprintf(want, sizeof want, "implies %zu bytes", n);
    expect_load_error(path, want, "is ");
    test_rmtree(dir);
    free(path);
    free(dir);
    free(bytes);
}

static void test_absurd_headers_are_errors_not_mallocs(void **state) {
    (void)state;
    char *dir = test_tmpdir("llama_hdr");
    char *path = path_join(dir, "bad.bin");
    struct {
        int field;
        int32_t value;
        const char *needle;
    } cases[] = {
        {0, 1 << 30, "dim"},          {0, -64, "dim"},
        {1, 0, "hidden_dim"},         {2, 0, "n_layers"},
        {2, 1 << 30, "n_layers"},     {3, 3, "n_heads"},
        {4, 3, "n_kv_heads"},         {4, 8, "n_kv_heads"},
        {5, INT32_MIN, "vocab_size"}, {5, 0, "vocab_size"},
        {5, 1 << 30, "vocab_size"},   {6, -1, "seq_len"},
        {6, 1 << 30, "seq_len"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t h[7];
        memcpy(h, tiny_hdr, sizeof h);
        h[cases[i].field] = cases[i].value;
        char file[28 + 64] = {0};
        memcpy(file, h, 28);
        write_file(path, file, sizeof file);
        expect_load_error(path, cases[i].needle, NULL);
    }
    /* odd head size: RoPE needs pairs */
    int32_t h[7] = {6, 12, 1, 2, 1, 5, 4};
    write_file(path, h, sizeof h);
    expect_load_error(path, "head size 3", NULL);
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_nonfinite_weight_names_the_tensor(void **state) {
    (void)state;
    char *dir = test_tmpdir("llama_nan");
    char *path = path_join(dir, "nan.bin");
    write_tiny(path, tiny_hdr);
    size_t size;
    char *bytes = read_file_all(path, 0, &size);
    /* wk of layer 1: after tok_emb (V*C), rms_att (L*C), wq (L*C*C), wk layer 0 (KV*C) */
    size_t C = 8, L = 2, V = 11, KV = 4;
    size_t at = V * C + L * C + L * C * C + KV * C + 5;
    float nan = NAN, inf = INFINITY;
    memcpy(bytes + 28 + 4 * at, &nan, 4);
    write_file(path, bytes, size);
    expect_load_error(path, "wk", "layer 1");

    memcpy(bytes + 28 + 4 * at, &(float){0.0f}, 4);
    memcpy(bytes + size - 4, &inf, 4); /* last float of the separate classifier */
    write_file(path, bytes, size);
    expect_load_error(path, "wcls", NULL);

    /* the stored RoPE tables are skipped, so junk there is harmless */
    memcpy(bytes + size - 4, &(float){0.0f}, 4);
    size_t rope_end = (size - 28) / 4 - V * C;
    memcpy(bytes + 28 + 4 * (rope_end - 1), &nan, 4);
    write_file(path, bytes, size);
    struct lm lm = {0};
    assert_int_equal(llama_load(path, &lm), 0);
    llama_free_impl(&lm);
    free(bytes);
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_api_misuse_is_an_error(void **state) {
    (void)state;
    char *dir = test_tmpdir("llama_api");
    char *path = path_join(dir, "m.bin");
    write_tiny(path, tiny_hdr);
    struct lm lm = {0};
    assert_int_equal(llama_load(path, &lm), 0);

    struct lm_acts a = {.B = 1, .T = 9, .save_for_backward = true}; /* seq_len is 8 */
    assert_int_equal(llama_acts_init(&lm, &a), -1);
    assert_non_null(strstr(err_msg(), "seq_len 8"));

    a.T = 4;
    assert_int_equal(llama_acts_init(&lm, &a), 0);
    int32_t bad[4] = {1, 2, 11, 3};
    assert_int_equal(llama_embed(&lm, &a, bad), -1);
    assert_non_null(strstr(err_msg(), "token id 11"));
    int32_t ok[4] = {1, 2, 10, 3};
    assert_int_equal(llama_embed(&lm, &a, ok), 0);
    float *d = calloc(4 * 8, sizeof *d);
    assert_int_equal(llama_blocks_backward(&lm, &a, 0, 2, d, NULL, NULL), -1); /* no forward */
    assert_non_null(strstr(err_msg(), "has not run forward"));
    assert_int_equal(llama_blocks_forward(&lm, &a, 0, 3), -1);
    assert_int_equal(llama_blocks_forward(&lm, &a, 0, 2), 0);
    int dummy;
    assert_int_equal(llama_blocks_backward(&lm, &a, 0, 2, d, NULL, &dummy), -1);
    assert_non_null(strstr(err_msg(), "param_grads"));
    assert_int_equal(llama_unembed_backward(&lm, a.lnf, d, 0, d, &dummy), -1);
    assert_int_equal(llama_embed_backward(&lm, &a, d, &dummy), -1);
    assert_int_equal(llama_embed_backward(&lm, &a, d, NULL), 0);
    assert_int_equal(llama_blocks_backward(&lm, &a, 0, 2, d, NULL, NULL), 0);
    llama_acts_release(&a);

    struct lm_acts f = {.B = 1, .T = 4, .save_for_backward = false};
    assert_int_equal(llama_acts_init(&lm, &f), 0);
    assert_int_equal(llama_embed(&lm, &f, ok), 0);
    assert_int_equal(llama_blocks_forward(&lm, &f, 0, 2), 0);
    assert_int_equal(llama_blocks_backward(&lm, &f, 0, 2, d, NULL, NULL), -1);
    assert_non_null(strstr(err_msg(), "save_for_backward"));
    llama_acts_release(&f);
    free(d);
    llama_free_impl(&lm);
    test_rmtree(dir);
    free(path);
    free(dir);
}

/* loss = sum(r * logits) + sum(s * resid[1]); its gradient at resid[0] from
 * llama_*_backward against central differences, in double-accumulated float32. */
static double probe_loss(const struct lm *lm, struct lm_acts *a, const float *r, const float *s,
                         float *logits) {
    int N = a->B * a->T, C = lm->cfg.d_model, V = lm->cfg.vocab_size;
    assert_int_equal(llama_blocks_forward(lm, a, 0, lm->cfg.n_layer), 0);
    assert_int_equal(llama_final_norm(lm, a), 0);
    assert_int_equal(llama_unembed(lm, a->lnf, N, logits), 0);
    double loss = 0;
    for (int i = 0; i < N * V; i++)
        loss += (double)r[i] * logits[i];
    for (int i = 0; i < N * C; i++)
        loss += (double)s[i] * a->resid[1][i];
    return loss;
}

static void test_input_gradient_matches_finite_differences(void **state) {
    (void)state;
    char *dir = test_tmpdir("llama_fd");
    char *path = path_join(dir, "m.bin");
    write_tiny(path, tiny_hdr);
    struct lm lm = {0};
    assert_int_equal(llama_load(path, &lm), 0);
    int B = 2, T = 5, N = B * T, C = 8, V = 11, L = 2;
    struct lm_acts a = {.B = B, .T = T, .save_for_backward = true};
    assert_int_equal(llama_acts_init(&lm, &a), 0);
    int32_t tok[10] = {1, 4, 7, 2, 9, 1, 10, 3, 3, 0};
    assert_int_equal(llama_embed(&lm, &a, tok), 0);
    float *r = malloc(N * V * sizeof *r), *s = malloc(N * C * sizeof *s);
    float *logits = malloc(N * V * sizeof *logits);
    for (int i = 0; i < N * V; i++)
        r[i] = sinf(0.7f * i);
    for (int i = 0; i < N * C; i++)
        s[i] = cosf(1.3f * i);
    float *x0 = malloc(N * C * sizeof *x0);
    memcpy(x0, a.resid[0], N * C * sizeof *x0);

    probe_loss(&lm, &a, r, s, logits);
    float *d_lnf = calloc(N * C, sizeof *d_lnf), *d = malloc(N * C * sizeof *d);
    assert_int_equal(llama_unembed_backward(&lm, a.lnf, r, N, d_lnf, NULL), 0);
    assert_int_equal(llama_final_norm_backward(&lm, &a, d_lnf, d), 0);
    float *extra[3] = {NULL, s, NULL};
    assert_int_equal(llama_blocks_backward(&lm, &a, 0, L, d, extra, NULL), 0);

    float gmax = 0, worst = 0, h = 1e-2f;
    for (int i = 0; i < N * C; i++)
        gmax = fmaxf(gmax, fabsf(d[i]));
    for (int i = 0; i < N * C; i++) {
        memcpy(a.resid[0], x0, N * C * sizeof *x0);
        a.resid[0][i] = x0[i] + h;
        double up = probe_loss(&lm, &a, r, s, logits);
        a.resid[0][i] = x0[i] - h;
        double down = probe_loss(&lm, &a, r, s, logits);
        worst = fmaxf(worst, fabsf((float)((up - down) / (2 * h)) - d[i]));
    }
    print_message("  finite differences: max |diff| %.3g, max |grad| %.3g\n", worst, gmax);
    assert_true(gmax > 0.1f);
    assert_true(worst <= 1e-2f * gmax);

    free(x0), free(r), free(s), free(logits), free(d_lnf), free(d);
    llama_acts_release(&a);
    llama_free_impl(&lm);
    test_rmtree(dir);
    free(path);
    free(dir);
}

/* lm.h loads a .bin as Llama and its calls land here: same logits as calling
 * llama.c directly, CE from lm_batch_ce matching the logits, and parameter
 * gradients refused. */
static void test_lm_interface_dispatches_to_llama(void **state) {
    (void)state;
    char *dir = test_tmpdir("llama_lm");
    char *path = path_join(dir, "m.bin");
    write_tiny(path, tiny_hdr);
    struct lm *lm = NULL;
    if (lm_load(path, &lm)) fail_msg("lm_load: %s", err_msg());
    assert_int_equal(lm->cfg.arch, LM_LLAMA);
    int B = 2, T = 6, N = B * T, C = 8, V = 11;
    int32_t tok[12] = {1, 5, 9, 2, 2, 7, 1, 10, 0, 4, 3, 6};
    struct lm_acts *a = lm_acts_new(lm, B, T, true);
    assert_non_null(a);
    double ce_sum;
    int64_t n_pred;
    assert_int_equal(lm_batch_ce(lm, a, tok, &ce_sum, &n_pred), 0);
    assert_int_equal(n_pred, B * (T - 1));
    float *logits = malloc(N * V * sizeof *logits);
    assert_int_equal(lm_unembed(lm, a->lnf, N, logits), 0);
    double want = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            const float *row = logits + (size_t)(b * T + t) * V;
            double z = 0;
            for (int v = 0; v < V; v++)
                z += exp(row[v]);
            want += log(z) - row[tok[b * T + t + 1]];
        }
    assert_true(fabs(ce_sum - want) < 1e-4 * fabs(want));

    struct lm_acts d = {.B = B, .T = T, .save_for_backward = false};
    assert_int_equal(llama_acts_init(lm, &d), 0);
    assert_int_equal(llama_embed(lm, &d, tok), 0);
    assert_int_equal(llama_blocks_forward(lm, &d, 0, 2), 0);
    assert_int_equal(llama_final_norm(lm, &d), 0);
    assert_memory_equal(d.lnf, a->lnf, N * C * sizeof(float));
    llama_acts_release(&d);

    float *g = calloc(N * C, sizeof *g);
    int dummy;
    assert_int_equal(lm_blocks_backward(lm, a, 0, 2, g, NULL, &dummy), -1);
    assert_int_equal(lm_blocks_backward(lm, a, 0, 2, g, NULL, NULL), 0);
    free(g);
    free(logits);
    lm_acts_free(a);
    lm_free(lm);
    test_rmtree(dir);
    free(path);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_and_oversized_files_are_errors),
        cmocka_unit_test(test_truncated_stories260K_is_an_error),
        cmocka_unit_test(test_absurd_headers_are_errors_not_mallocs),
        cmocka_unit_test(test_nonfinite_weight_names_the_tensor),
        cmocka_unit_test(test_api_misuse_is_an_error),
        cmocka_unit_test(test_input_gradient_matches_finite_differences),
        cmocka_unit_test(test_lm_interface_dispatches_to_llama),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
