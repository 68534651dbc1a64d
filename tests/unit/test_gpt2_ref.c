/* test_gpt2_ref.c: the C GPT-2 against an independent float64 PyTorch GPT-2
 * (tests/ref/gpt2_ref.py) on the same random weights and tokens.
 *
 * Small model (3 layers, C=64, 4 heads, V=512, B=2, T=32): logits, CE, every
 * hook activation, the gradient at a hook for CE, for a KL against given
 * log-probs and for CE plus an MSE term at a later hook (through d_extra), and
 * every parameter gradient; F16 and BF16 files (the latter with the
 * "transformer." prefix and mask buffers) must load to the same parameters.
 * GPT-2-small dimensions (12 layers, 768, 12 heads, V=50257, B=1, T=64):
 * logits (max abs diff <= 1e-3), CE, hook activations and the CE gradient at
 * blocks.6.hook_resid_pre (max abs diff <= 1e-3 × its largest magnitude).
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"
#include "model/gpt2.h"
#include "model/lm.h"
#include "util/error.h"

struct ref {
    char *dir;
    hid_t h5;
    int L, C, V, B, T, hook, hook2;
};

static struct ref small_ref, big_ref;

static int make_ref(struct ref *r, const char *size) {
    if (!have_python_modules("torch h5py numpy")) return 1;
    r->dir = test_tmpdir("gpt2ref");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/gpt2_ref.py --out %s --size %s", r->dir,
             size);
    char *out = NULL;
    int rc = run_capture(cmd, &out);
    if (rc != 0) {
        fprintf(stderr, "gpt2_ref.py failed (%d):\n%s\n", rc, out ? out : "");
        free(out);
        return -1;
    }
    free(out);
    char *p = path_join(r->dir, "ref.h5");
    r->h5 = h5_open_ro(p);
    free(p);
    if (r->h5 < 0) return -1;
    int64_t v;
    const char *names[] = {"L", "C", "V", "B", "T", "hook", "hook2"};
    int *dst[] = {&r->L, &r->C, &r->V, &r->B, &r->T, &r->hook, &r->hook2};
    for (int i = 0; i < 7; i++) {
        if (h5_get_attr_i64(r->h5, names[i], &v) < 0) return -1;
        *dst[i] = (int)v;
    }
    return 0;
}

static int setup_small(void **state) {
    (void)state;
    memset(&small_ref, 0, sizeof small_ref);
    return make_ref(&small_ref, "small") < 0 ? -1 : 0;
}

static int setup_big(void **state) {
    (void)state;
    memset(&big_ref, 0, sizeof big_ref);
    return make_ref(&big_ref, "gpt2small") < 0 ? -1 : 0;
}

static int teardown_ref(struct ref *r) {
    if (r->h5 > 0) h5_close(r->h5);
    if (r->dir) test_rmtree(r->dir);
    free(r->dir);
    memset(r, 0, sizeof *r);
    return 0;
}
static int teardown_small(void **state) {
    (void)state;
    return teardown_ref(&small_ref);
}
static int teardown_big(void **state) {
    (void)state;
    return teardown_ref(&big_ref);
}

#define SKIP_WITHOUT_REF(r)                                                                    \
    do {                                                                                       \
        if (!(r)->dir) skip_because("PyTorch reference needs /usr/bin/python3 with torch, h5py"); \
    } while (0)

static float *read_f32(const struct ref *r, const char *name, size_t n_expect) {
    hsize_t dims[8];
    void *buf = NULL;
    int ndim = 0;
    hsize_t shape[8];
    if (h5_shape(r->h5, name, 8, &ndim, shape) < 0) fail_msg("%s", err_msg());
    if (h5_read(r->h5, name, H5T_NATIVE_FLOAT, ndim, NULL, dims, &buf) < 0) fail_msg("%s", err_msg());
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    if (n_expect) assert_int_equal(n, n_expect);
    return buf;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

static void check_close(const char *what, const float *got, const float *want, size_t n,
                        double rel_tol, double abs_floor) {
    double d = max_abs_diff(got, want, n), scale = max_abs(want, n);
    double tol = rel_tol * scale + abs_floor;
    printf("  %-24s max|diff| %.3g (max|ref| %.3g, tol %.3g)\n", what, d, scale, tol);
    if (!(d <= tol)) fail_msg("%s: max abs diff %g > tolerance %g", what, d, tol);
}

static struct lm *load_model(const struct ref *r, const char *sub) {
    char *p = path_join(r->dir, sub);
    struct lm *lm = NULL;
    if (lm_load(p, &lm) < 0) fail_msg("lm_load %s: %s", p, err_msg());
    free(p);
    return lm;
}

static int32_t *read_tokens(const struct ref *r) {
    hsize_t dims[2];
    void *buf = NULL;
    if (h5_read(r->h5, "tokens", H5T_NATIVE_INT32, 2, NULL, dims, &buf) < 0)
        fail_msg("%s", err_msg());
    return buf;
}

/* Forward through every block and the final norm; returns all logits (B*T, V). */
static float *forward_all(const struct lm *lm, struct lm_acts *acts, const int32_t *tokens) {
    int N = acts->B * acts->T;
    assert_int_equal(lm_embed(lm, acts, tokens), 0);
    assert_int_equal(lm_blocks_forward(lm, acts, 0, lm->cfg.n_layer), 0);
    assert_int_equal(lm_final_norm(lm, acts), 0);
    float *logits = malloc((size_t)N * lm->cfg.vocab_size * sizeof *logits);
    assert_int_equal(lm_unembed(lm, acts->lnf, N, logits), 0);
    return logits;
}

/* dlogits of mean next-token CE (rows t = T-1 get zero). */
static float *ce_dlogits(const float *logits, const int32_t *tokens, int B, int T, int V) {
    float *d = calloc((size_t)B * T * V, sizeof *d);
    double n = (double)B * (T - 1);
    for (int r = 0; r < B * T; r++) {
        if (r % T == T - 1) continue;
        const float *row = logits + (size_t)r * V;
        double lse = lm_logsumexp(row, V);
        for (int j = 0; j < V; j++) d[(size_t)r * V + j] = (float)(exp(row[j] - lse) / n);
        d[(size_t)r * V + tokens[r + 1]] -= (float)(1.0 / n);
    }
    return d;
}

/* Gradient at resid[from] for dlogits, with optional d_extra; param grads optional. */
static float *grad_at(const struct lm *lm, struct lm_acts *acts, const float *dlogits, int from,
                      float *const *d_extra, float *param_grads) {
    size_t NC = (size_t)acts->B * acts->T * lm->cfg.d_model;
    float *d_lnf = calloc(NC, sizeof *d_lnf), *d_resid = malloc(NC * sizeof *d_resid);
    assert_int_equal(lm_unembed_backward(lm, acts->lnf, dlogits, acts->B * acts->T, d_lnf,
                                         param_grads),
                     0);
    assert_int_equal(lm_final_norm_backward_grads(lm, acts, d_lnf, d_resid, param_grads), 0);
    assert_int_equal(
        lm_blocks_backward(lm, acts, from, lm->cfg.n_layer, d_resid, d_extra, param_grads), 0);
    free(d_lnf);
    return d_resid;
}

static void test_small_forward_matches_reference(void **state) {
    (void)state;
    struct ref *r = &small_ref;
    SKIP_WITHOUT_REF(r);
    struct lm *lm = load_model(r, "model_f32");
    assert_int_equal(lm->cfg.n_layer, r->L);
    int32_t *tokens = read_tokens(r);
    struct lm_acts *acts = lm_acts_new(lm, r->B, r->T, false);
    assert_non_null(acts);
    size_t NC = (size_t)r->B * r->T * r->C;
    float *logits = forward_all(lm, acts, tokens);
    float *want = read_f32(r, "logits", (size_t)r->B * r->T * r->V);
    check_close("logits", logits, want, (size_t)r->B * r->T * r->V, 1e-5, 1e-5);
    float *resid = read_f32(r, "resid", (r->L + 1) * NC);
    for (int l = 0; l <= r->L; l++) {
        char what[32];
        snprintf(what, sizeof what, "resid[%d]", l);
        check_close(what, acts->resid[l], resid + l * NC, NC, 1e-5, 1e-6);
    }
    double ce_sum, ce_want;
    int64_t n_pred;
    assert_int_equal(lm_batch_ce(lm, acts, tokens, &ce_sum, &n_pred), 0);
    assert_int_equal(n_pred, r->B * (r->T - 1));
    double *ce_buf = NULL;
    hsize_t d0[1];
    assert_int_equal(h5_read(r->h5, "ce", H5T_NATIVE_DOUBLE, 0, NULL, d0, (void **)&ce_buf), 0);
    ce_want = *ce_buf;
    printf("  CE %.7f (reference %.7f)\n", ce_sum / n_pred, ce_want);
    assert_true(fabs(ce_sum / n_pred - ce_want) < 1e-5);
    free(ce_buf);
    free(resid);
    free(want);
    free(logits);
    lm_acts_free(acts);
    free(tokens);
    lm_free(lm);
}

static void test_small_f16_bf16_prefix_masks_and_resave_load_identically(void **state) {
    (void)state;
    struct ref *r = &small_ref;
    SKIP_WITHOUT_REF(r);
    struct lm *a = load_model(r, "model_f32"), *b = load_model(r, "model_f16"),
              *c = load_model(r, "model_bf16/config.json");
    size_t n = gpt2_n_params(a);
    assert_int_equal(n, gpt2_n_params(b));
    assert_int_equal(n, gpt2_n_params(c));
    assert_memory_equal(gpt2_of(a)->memory, gpt2_of(b)->memory, n * sizeof(float));
    assert_memory_equal(gpt2_of(a)->memory, gpt2_of(c)->memory, n * sizeof(float));

    /* what gpt2_save writes, read back by the independent Python reader */
    char *resaved = path_join(r->dir, "resaved");
    assert_int_equal(gpt2_save(c, resaved, -1), 0);
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/gpt2_ref.py --out %s --verify %s",
             r->dir, resaved);
    int rc = run_capture(cmd, &out);
    printf("  %s", out ? out : "");
    assert_int_equal(rc, 0);
    free(out);
    free(resaved);
    lm_free(a);
    lm_free(b);
    lm_free(c);
}

static void test_small_hook_gradients_match_reference(void **state) {
    (void)state;
    struct ref *r = &small_ref;
    SKIP_WITHOUT_REF(r);
    struct lm *lm = load_model(r, "model_f32");
    int32_t *tokens = read_tokens(r);
    int B = r->B, T = r->T, V = r->V, N = B * T;
    size_t NC = (size_t)N * r->C;
    struct lm_acts *acts = lm_acts_new(lm, B, T, true);
    float *logits = forward_all(lm, acts, tokens);

    /* (a) CE */
    float *dlogits = ce_dlogits(logits, tokens, B, T, V);
    float *g = grad_at(lm, acts, dlogits, r->hook, NULL, NULL);
    float *want = read_f32(r, "grad_ce", NC);
    check_close("grad CE at hook", g, want, NC, 1e-4, 0);
    free(g);
    free(want);

    /* (b) KL(target || model), summed over V, averaged over positions */
    float *tlogp = read_f32(r, "kl_target_logp", (size_t)N * V);
    float *dkl = malloc((size_t)N * V * sizeof *dkl);
    for (int i = 0; i < N; i++) {
        const float *row = logits + (size_t)i * V;
        double lse = lm_logsumexp(row, V);
        for (int j = 0; j < V; j++)
            dkl[(size_t)i * V + j] =
                (float)((exp(row[j] - lse) - exp(tlogp[(size_t)i * V + j])) / N);
    }
    g = grad_at(lm, acts, dkl, r->hook, NULL, NULL);
    want = read_f32(r, "grad_kl", NC);
    check_close("grad KL at hook", g, want, NC, 1e-4, 0);
    free(g);
    free(want);

    /* (c) CE + coeff·mean((resid[hook2] - target)²): the MSE enters via d_extra */
    float *target = read_f32(r, "mse_target", NC);
    double coeff = 2.5;
    float *dmse = malloc(NC * sizeof *dmse);
    for (size_t i = 0; i < NC; i++)
        dmse[i] = (float)(coeff * 2.0 * (acts->resid[r->hook2][i] - target[i]) / NC);
    float **d_extra = calloc(r->L + 1, sizeof *d_extra);
    d_extra[r->hook2] = dmse;
    assert_true(r->hook < r->hook2 && r->hook2 < r->L);
    g = grad_at(lm, acts, dlogits, r->hook, d_extra, NULL);
    want = read_f32(r, "grad_ce_mse", NC);
    check_close("grad CE+MSE at hook", g, want, NC, 1e-4, 0);
    /* and the MSE term really matters */
    float *g_ce = read_f32(r, "grad_ce", NC);
    assert_true(max_abs_diff(g_ce, want, NC) > 100 * 1e-4 * max_abs(want, NC));
    free(g_ce);
    free(g);
    free(want);
    free(d_extra);
    free(dmse);
    free(target);
    free(dkl);
    free(tlogp);
    free(dlogits);
    free(logits);
    lm_acts_free(acts);
    free(tokens);
    lm_free(lm);
}

static void test_small_parameter_gradients_match_reference(void **state) {
    (void)state;
    struct ref *r = &small_ref;
    SKIP_WITHOUT_REF(r);
    struct lm *lm = load_model(r, "model_f32");
    int32_t *tokens = read_tokens(r);
    int B = r->B, T = r->T, V = r->V, N = B * T;
    struct lm_acts *acts = lm_acts_new(lm, B, T, true);
    float *logits = forward_all(lm, acts, tokens);
    float *dlogits = ce_dlogits(logits, tokens, B, T, V);
    float *grads = calloc(gpt2_n_params(lm), sizeof *grads);
    float *d0 = grad_at(lm, acts, dlogits, 0, NULL, grads);
    assert_int_equal(lm_embed_backward(lm, acts, d0, grads), 0);
    const struct gpt2 *gp = gpt2_of(lm);
    const float *g = grads;
    for (int t = 0; t < GPT2_N_TENSORS; t++) {
        char name[64];
        snprintf(name, sizeof name, "grads/%s", gpt2_tensor_label(t));
        float *want = read_f32(r, name, gp->sizes[t]);
        check_close(name, g, want, gp->sizes[t], 1e-4, 1e-7);
        free(want);
        g += gp->sizes[t];
    }
    (void)N;
    free(d0);
    free(grads);
    free(dlogits);
    free(logits);
    lm_acts_free(acts);
    free(tokens);
    lm_free(lm);
}

static void test_gpt2_small_dims_match_reference(void **state) {
    (void)state;
    struct ref *r = &big_ref;
    SKIP_WITHOUT_REF(r);
    struct lm *lm = load_model(r, "model_f32");
    assert_int_equal(lm->cfg.d_model, 768);
    int32_t *tokens = read_tokens(r);
    int B = r->B, T = r->T, V = r->V;
    size_t NC = (size_t)B * T * r->C;
    struct lm_acts *acts = lm_acts_new(lm, B, T, true);
    float *logits = forward_all(lm, acts, tokens);
    float *want = read_f32(r, "logits", (size_t)B * T * V);
    double d = max_abs_diff(logits, want, (size_t)B * T * V);
    printf("  logits max|diff| %.3g (limit 1e-3, max|ref| %.3g)\n", d,
           max_abs(want, (size_t)B * T * V));
    assert_true(d <= 1e-3);
    float *resid = read_f32(r, "resid", (r->L + 1) * NC);
    for (int l = 0; l <= r->L; l++) {
        char what[32];
        snprintf(what, sizeof what, "resid[%d]", l);
        check_close(what, acts->resid[l], resid + l * NC, NC, 1e-5, 1e-5);
    }
    double ce_sum, *ce_want = NULL;
    int64_t n_pred;
    hsize_t d0[1];
    assert_int_equal(h5_read(r->h5, "ce", H5T_NATIVE_DOUBLE, 0, NULL, d0, (void **)&ce_want), 0);
    float *dlogits = ce_dlogits(logits, tokens, B, T, V);
    float *g = grad_at(lm, acts, dlogits, r->hook, NULL, NULL);
    assert_int_equal(lm_batch_ce(lm, acts, tokens, &ce_sum, &n_pred), 0);
    printf("  CE %.6f (reference %.6f)\n", ce_sum / n_pred, *ce_want);
    assert_true(fabs(ce_sum / n_pred - *ce_want) < 1e-4);
    float *gwant = read_f32(r, "grad_ce", NC);
    check_close("grad CE at hook 6", g, gwant, NC, 1e-3, 0);
    free(gwant);
    free(g);
    free(dlogits);
    free(ce_want);
    free(resid);
    free(want);
    free(logits);
    lm_acts_free(acts);
    free(tokens);
    lm_free(lm);
}

static int setup_all(void **state) {
    h5_init();
    if (setup_small(state) < 0) return -1;
    return setup_big(state);
}

static int teardown_all(void **state) {
    teardown_small(state);
    return teardown_big(state);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_forward_matches_reference),
        cmocka_unit_test(test_small_f16_bf16_prefix_masks_and_resave_load_identically),
        cmocka_unit_test(test_small_hook_gradients_match_reference),
        cmocka_unit_test(test_small_parameter_gradients_match_reference),
        cmocka_unit_test(test_gpt2_small_dims_match_reference),
    };
    return cmocka_run_group_tests_name("gpt2 against the PyTorch reference", tests, setup_all,
                                       teardown_all);
}
