/* test_gpt2_load.c: GPT-2 loading, saving and the lm.h contract without a
 * reference tool: a save/load round trip is bit-exact; broken directories fail
 * with messages naming the file and the tensor or key; bad tokens and lengths
 * are errors; the forward and backward pieces compose (running blocks in two
 * pieces equals one piece; input-gradient-only backward equals the full one). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/gpt2.h"
#include "model/lm.h"
#include "util/error.h"

static struct lm_config tiny_config(void) {
    struct lm_config c = {.arch = LM_GPT2, .n_layer = 2, .d_model = 32, .n_head = 4,
                          .vocab_size = 97, .max_seq = 16, .norm_eps = 1e-5f};
    return c;
}

/* A GPT-2 with deterministic pseudo-random parameters. */
static struct lm *tiny_model(void) {
    struct lm_config c = tiny_config();
    struct lm *lm = calloc(1, sizeof *lm);
    assert_int_equal(gpt2_new(&c, lm), 0);
    lm->path = strdup("tiny");
    struct gpt2 *g = gpt2_of(lm);
    uint64_t s = 42;
    for (size_t i = 0; i < g->n_params; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        g->memory[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 0.2f;
    }
    for (int j = 0; j < c.d_model; j++) g->p.lnfw[j] += 1.0f;
    return lm;
}

static char *saved_tiny(void) {
    char *dir = test_tmpdir("gpt2load");
    struct lm *lm = tiny_model();
    assert_int_equal(gpt2_save(lm, dir, 96), 0);
    lm_free(lm);
    return dir;
}

static void test_save_load_round_trip_is_bit_exact(void **state) {
    (void)state;
    char *dir = test_tmpdir("gpt2load");
    struct lm *a = tiny_model(), *b = NULL;
    assert_int_equal(gpt2_save(a, dir, 96), 0);
    assert_int_equal(lm_load(dir, &b), 0);
    assert_int_equal(b->cfg.n_layer, 2);
    assert_int_equal(b->cfg.vocab_size, 97);
    assert_true(b->cfg.shared_classifier);
    assert_int_equal(gpt2_n_params(a), gpt2_n_params(b));
    assert_memory_equal(gpt2_of(a)->memory, gpt2_of(b)->memory, gpt2_n_params(a) * sizeof(float));
    lm_free(a);
    lm_free(b);
    test_rmtree(dir);
    free(dir);
}

/* Rewrite dir/model.safetensors: drop `drop`, give `reshape` a wrong shape, put a
 * NaN into `poison`, add a tensor called `extra` (each may be NULL). */
static void rewrite(const char *dir, const char *drop, const char *reshape, const char *poison,
                    const char *extra) {
    char *path = path_join(dir, "model.safetensors");
    struct st_file f;
    assert_int_equal(st_open(&f, path), 0);
    int n = f.n_tensors;
    struct st_write_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    float **bufs = calloc((size_t)n + 1, sizeof *bufs);
    int k = 0;
    for (int i = 0; i < n; i++) {
        const struct st_tensor *t = &f.tensors[i];
        if (drop && strcmp(t->name, drop) == 0) continue;
        bufs[k] = malloc((size_t)st_numel(t) * sizeof(float));
        assert_int_equal(st_read_f32(&f, t, bufs[k]), 0);
        ts[k].name = strdup(t->name);
        ts[k].ndim = t->ndim;
        memcpy(ts[k].shape, t->shape, sizeof t->shape);
        if (reshape && strcmp(t->name, reshape) == 0) { /* same numel, other shape */
            ts[k].ndim = 1;
            ts[k].shape[0] = st_numel(t);
        }
        if (poison && strcmp(t->name, poison) == 0) bufs[k][3] = NAN;
        ts[k].data = bufs[k];
        k++;
    }
    if (extra) {
        bufs[k] = calloc(32, sizeof(float));
        ts[k].name = strdup(extra);
        ts[k].ndim = 1;
        ts[k].shape[0] = 32;
        ts[k].data = bufs[k];
        k++;
    }
    st_close(&f);
    assert_int_equal(st_write_f32(path, ts, k, NULL, NULL, 0), 0);
    for (int i = 0; i < k; i++) {
        free((char *)ts[i].name);
        free(bufs[i]);
    }
    free(ts);
    free(bufs);
    free(path);
}

static void expect_load_error(const char *dir, const char *needle1, const char *needle2) {
    struct lm *lm = NULL;
    assert_int_equal(lm_load(dir, &lm), -1);
    assert_null(lm);
    const char *m = err_msg();
    printf("  error: %s\n", m);
    if (needle1 && !strstr(m, needle1)) fail_msg("'%s' does not mention '%s'", m, needle1);
    if (needle2 && !strstr(m, needle2)) fail_msg("'%s' does not mention '%s'", m, needle2);
}

static void test_broken_weights_name_file_and_tensor(void **state) {
    (void)state;
    struct {
        const char *drop, *reshape, *poison, *extra, *needle;
    } cases[] = {
        {"h.1.mlp.c_fc.bias", NULL, NULL, NULL, "missing tensor h.1.mlp.c_fc.bias"},
        {NULL, "h.0.attn.c_attn.weight", NULL, NULL, "h.0.attn.c_attn.weight: expected shape [32, 96]"},
        {NULL, NULL, "h.1.ln_2.weight", NULL, "h.1.ln_2.weight: element 3 is NaN"},
        {NULL, NULL, NULL, "h.2.ln_1.weight", "layer 2 but config.json has n_layer 2"},
        {NULL, NULL, NULL, "h.0.mlp.gate.weight", "unexpected tensor h.0.mlp.gate.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *dir = saved_tiny();
        rewrite(dir, cases[i].drop, cases[i].reshape, cases[i].poison, cases[i].extra);
        expect_load_error(dir, "model.safetensors", cases[i].needle);
        test_rmtree(dir);
        free(dir);
    }
}

static void test_config_errors_name_the_key(void **state) {
    (void)state;
    struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"n_layer\": 2, \"n_head\": 4, \"n_positions\": 16, \"vocab_size\": 97}", "\"n_embd\""},
        {"{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 32, \"n_positions\": 16, \"vocab_size\": "
         "97, \"activation_function\": \"relu\"}",
         "activation_function"},
        {"{\"n_layer\": 2, \"n_head\": 5, \"n_embd\": 32, \"n_positions\": 16, \"vocab_size\": 97}",
         "n_head"},
        /* config and weights disagree: vocabulary */
        {"{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 32, \"n_positions\": 16, \"vocab_size\": 98}",
         "wte.weight: expected shape [98, 32] from config.json, got [97, 32]"},
        {"[1, 2]", "not a JSON object"},
        /* far more parameters than the weights file can hold: refused before allocating */
        {"{\"n_layer\": 40, \"n_head\": 16, \"n_embd\": 2048, \"n_positions\": 16, "
         "\"vocab_size\": 97}",
         "describes a model of 2014566400 parameters"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *dir = saved_tiny();
        char *cfg = path_join(dir, "config.json");
        write_file(cfg, cases[i].json, strlen(cases[i].json));
        expect_load_error(dir, strstr(cases[i].needle, "wte") ? "model.safetensors" : "config.json",
                          cases[i].needle);
        free(cfg);
        test_rmtree(dir);
        free(dir);
    }
    expect_load_error("/nonexistent/gpt2-dir", "/nonexistent/gpt2-dir", NULL);
}

static void test_bad_tokens_and_lengths_are_errors(void **state) {
    (void)state;
    struct lm *lm = tiny_model();
    assert_null(lm_acts_new(lm, 1, 17, false));
    assert_non_null(strstr(err_msg(), "exceeds n_positions 16"));
    struct lm_acts *acts = lm_acts_new(lm, 2, 4, false);
    int32_t tokens[8] = {1, 2, 3, 4, 5, 6, 97, 8};
    assert_int_equal(lm_embed(lm, acts, tokens), -1);
    assert_non_null(strstr(err_msg(), "token 97 (batch row 1, position 2)"));
    tokens[6] = -1;
    assert_int_equal(lm_embed(lm, acts, tokens), -1);
    assert_int_equal(lm_blocks_forward(lm, acts, 1, 3), -1);
    float d[8 * 32] = {0};
    assert_int_equal(lm_blocks_backward(lm, acts, 0, 2, d, NULL, NULL), -1);
    assert_non_null(strstr(err_msg(), "save_for_backward"));
    lm_acts_free(acts);
    lm_free(lm);
}

static void test_hook_names(void **state) {
    (void)state;
    struct lm *lm = tiny_model();
    assert_int_equal(lm_hook_index(lm, "blocks.0.hook_resid_pre"), 0);
    assert_int_equal(lm_hook_index(lm, "blocks.1.hook_resid_pre"), 1);
    assert_int_equal(lm_hook_index(lm, "blocks.1.hook_resid_post"), 2);
    assert_int_equal(lm_hook_index(lm, "blocks.2.hook_resid_pre"), -1);
    assert_non_null(strstr(err_msg(), "blocks.2.hook_resid_pre"));
    assert_int_equal(lm_hook_index(lm, "blocks.0.hook_resid_pre.x"), -1);
    assert_int_equal(lm_hook_index(lm, "blocks.-1.hook_resid_pre"), -1);
    assert_int_equal(lm_hook_index(lm, "blocks.0.hook_mlp_out"), -1);
    lm_free(lm);
}

/* Forward in two pieces (with and without saving) equals one piece; backward in
 * two pieces equals one piece; input-gradient-only equals the full backward. */
static void test_pieces_compose(void **state) {
    (void)state;
    struct lm *lm = tiny_model();
    int B = 2, T = 16, C = 32, V = 97, N = B * T;
    int32_t tokens[32];
    for (int i = 0; i < N; i++) tokens[i] = (i * 37 + 11) % V;
    struct lm_acts *a = lm_acts_new(lm, B, T, true), *b = lm_acts_new(lm, B, T, false);
    assert_int_equal(lm_embed(lm, a, tokens), 0);
    assert_int_equal(lm_blocks_forward(lm, a, 0, 2), 0);
    assert_int_equal(lm_embed(lm, b, tokens), 0);
    assert_int_equal(lm_blocks_forward(lm, b, 0, 1), 0);
    assert_int_equal(lm_blocks_forward(lm, b, 1, 2), 0);
    assert_memory_equal(a->resid[2], b->resid[2], (size_t)N * C * sizeof(float));
    assert_int_equal(lm_final_norm(lm, a), 0);

    float *dlnf = malloc((size_t)N * C * sizeof *dlnf), *d1 = malloc((size_t)N * C * sizeof *d1),
          *d2 = malloc((size_t)N * C * sizeof *d2);
    for (int i = 0; i < N * C; i++) dlnf[i] = sinf((float)i);
    float *grads = calloc(gpt2_n_params(lm), sizeof *grads);
    assert_int_equal(lm_final_norm_backward_grads(lm, a, dlnf, d1, grads), 0);
    assert_int_equal(lm_final_norm_backward(lm, a, dlnf, d2), 0);
    assert_memory_equal(d1, d2, (size_t)N * C * sizeof(float));
    assert_int_equal(lm_blocks_backward(lm, a, 0, 2, d1, NULL, grads), 0);
    assert_int_equal(lm_blocks_backward(lm, a, 1, 2, d2, NULL, NULL), 0);
    assert_int_equal(lm_blocks_backward(lm, a, 0, 1, d2, NULL, NULL), 0);
    assert_memory_equal(d1, d2, (size_t)N * C * sizeof(float));
    double gsum = 0;
    for (size_t i = 0; i < gpt2_n_params(lm); i++) gsum += fabsf(grads[i]);
    assert_true(gsum > 0);
    /* parameter gradients are refused for nothing but GPT-2, and unembed adds */
    float *logits = calloc((size_t)N * V, sizeof *logits);
    assert_int_equal(lm_unembed(lm, a->lnf, N, logits), 0);
    memcpy(d2, d1, (size_t)N * C * sizeof *d2);
    assert_int_equal(lm_unembed_backward(lm, a->lnf, logits, N, d2, NULL), 0);
    assert_true(memcmp(d1, d2, (size_t)N * C * sizeof *d2) != 0);
    free(logits);
    free(grads);
    free(dlnf);
    free(d1);
    free(d2);
    lm_acts_free(a);
    lm_acts_free(b);
    lm_free(lm);
}

/* lm-train's residual dropout: active only with saved activations, and its
 * backward (masks recomputed from the seed) matches finite differences. */
static double weighted_out(const struct lm *lm, struct lm_acts *acts, const float *x0,
                           const float *w, size_t n) {
    memcpy(acts->resid[0], x0, n * sizeof *x0);
    assert_int_equal(lm_blocks_forward(lm, acts, 0, lm->cfg.n_layer), 0);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)w[i] * acts->resid[lm->cfg.n_layer][i];
    return s;
}

static void test_dropout_backward_matches_finite_differences(void **state) {
    (void)state;
    struct lm *lm = tiny_model();
    struct gpt2 *g = gpt2_of(lm);
    int T = 8, C = 32;
    size_t n = (size_t)T * C;
    int32_t tokens[8] = {3, 1, 4, 1, 5, 9, 2, 6};
    struct lm_acts *a = lm_acts_new(lm, 1, T, true), *plain = lm_acts_new(lm, 1, T, false);
    assert_int_equal(lm_embed(lm, a, tokens), 0);
    assert_int_equal(lm_embed(lm, plain, tokens), 0);
    float *x0 = malloc(n * sizeof *x0), *w = malloc(n * sizeof *w), *d = malloc(n * sizeof *d);
    memcpy(x0, a->resid[0], n * sizeof *x0);
    for (size_t i = 0; i < n; i++) w[i] = cosf((float)i * 0.7f);
    double no_drop = weighted_out(lm, a, x0, w, n);
    g->dropout = 0.3f;
    g->dropout_seed = 12345;
    double with_drop = weighted_out(lm, a, x0, w, n);
    assert_true(fabs(with_drop - no_drop) > 1e-3);
    assert_true(fabs(weighted_out(lm, plain, x0, w, n) - no_drop) < 1e-9); /* inference: off */
    memcpy(d, w, n * sizeof *d);
    weighted_out(lm, a, x0, w, n);
    assert_int_equal(lm_blocks_backward(lm, a, 0, lm->cfg.n_layer, d, NULL, NULL), 0);
    double dmax = 0, worst = 0;
    for (size_t i = 0; i < n; i++) dmax = fabs(d[i]) > dmax ? fabs(d[i]) : dmax;
    float *xp = malloc(n * sizeof *xp);
    for (size_t i = 0; i < n; i += 7) {
        float h = 1e-2f;
        memcpy(xp, x0, n * sizeof *xp);
        xp[i] += h;
        double up = weighted_out(lm, a, xp, w, n);
        xp[i] -= 2 * h;
        double down = weighted_out(lm, a, xp, w, n);
        double fd = (up - down) / (2 * h), err = fabs(fd - d[i]);
        worst = err > worst ? err : worst;
    }
    printf("  dropout backward vs finite differences: max err %.3g (max |grad| %.3g)\n", worst,
           dmax);
    assert_true(worst < 2e-2 * dmax);
    free(xp);
    free(x0);
    free(w);
    free(d);
    lm_acts_free(a);
    lm_acts_free(plain);
    lm_free(lm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_load_round_trip_is_bit_exact),
        cmocka_unit_test(test_broken_weights_name_file_and_tensor),
        cmocka_unit_test(test_config_errors_name_the_key),
        cmocka_unit_test(test_bad_tokens_and_lengths_are_errors),
        cmocka_unit_test(test_hook_names),
        cmocka_unit_test(test_pieces_compose),
        cmocka_unit_test(test_dropout_backward_matches_finite_differences),
    };
    return cmocka_run_group_tests_name("gpt2 loading and pieces", tests, NULL, NULL);
}
