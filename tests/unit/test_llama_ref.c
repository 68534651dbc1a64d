/* test_llama_ref.c: llama.c against an independent float64 PyTorch Llama
 * (tests/ref/llama_ref.py) on stories260K and on a random small Llama with
 * grouped-query attention and a separate classifier: logits, the residual stream
 * entering every block, and the gradient at a hook of (i) next-token CE and
 * (ii) KL against given log-probs plus an MSE term at a later hook. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "model/llama.h"
#include "util/error.h"

#define STORIES "models/stories260K/stories260K.bin"
#define REF "/usr/bin/python3 tests/ref/llama_ref.py"

static struct lm *open_llama(const char *path) {
    struct lm *lm = calloc(1, sizeof *lm);
    if (llama_load(path, lm)) fail_msg("llama_load: %s", err_msg());
    return lm;
}

static void close_llama(struct lm *lm) {
    llama_free_impl(lm);
    free(lm);
}

static struct lm_acts *acts_make(const struct lm *lm, int B, int T) {
    struct lm_acts *a = calloc(1, sizeof *a);
    a->B = B, a->T = T, a->save_for_backward = true;
    if (llama_acts_init(lm, a)) fail_msg("llama_acts_init: %s", err_msg());
    return a;
}

static void acts_drop(struct lm_acts *a) {
    llama_acts_release(a);
    free(a);
}

/* A raw float32/int32 output of the reference, checked for its expected size. */
static void *read_ref(const char *dir, const char *name, size_t n_elems) {
    char *path = path_join(dir, name);
    size_t n = 0;
    char *buf = read_file_all(path, 0, &n);
    if (!buf) fail_msg("%s", err_msg());
    assert_int_equal(n, n_elems * 4);
    free(path);
    return buf;
}

static float max_abs(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(x[i]));
    return m;
}

/* max |got - want| must be <= rel * max(max|want|, floor) */
static void assert_close(const char *what, const float *got, const float *want, size_t n, float rel,
                         float floor) {
    float scale = fmaxf(max_abs(want, n), floor), worst = 0.0f;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(got[i] - want[i]);
        if (!(d <= worst)) worst = d, at = i; /* NaN counts as worst */
    }
    print_message("  %-12s max |diff| %.3g (scale %.3g)\n", what, worst, scale);
    if (!(worst <= rel * scale))
        fail_msg("%s: max |diff| %g at %zu (got %g, want %g) exceeds %g x %g", what, worst, at,
                 got[at], want[at], rel, scale);
}

/* softmax of row (V) into q */
static void softmax_row(const float *row, int V, float *q) {
    float mx = row[0], sum = 0.0f;
    for (int v = 1; v < V; v++)
        mx = fmaxf(mx, row[v]);
    for (int v = 0; v < V; v++)
        sum += (q[v] = expf(row[v] - mx));
    for (int v = 0; v < V; v++)
        q[v] /= sum;
}

/* d_resid (N,C) at resid[hook] for the loss whose logit gradient is dlogits. */
static void backward_to_hook(const struct lm *lm, struct lm_acts *a, const float *dlogits, int hook,
                             float *const *d_extra, float *d_resid) {
    size_t N = (size_t)a->B * a->T, C = lm->cfg.d_model;
    float *d_lnf = calloc(N * C, sizeof *d_lnf);
    assert_int_equal(llama_unembed_backward(lm, a->lnf, dlogits, (int)N, d_lnf, NULL), 0);
    assert_int_equal(llama_final_norm_backward(lm, a, d_lnf, d_resid), 0);
    assert_int_equal(llama_blocks_backward(lm, a, hook, lm->cfg.n_layer, d_resid, d_extra, NULL),
                     0);
    free(d_lnf);
}

static void compare_with_reference(const char *model, int B, int T, int hook, int mse_hook) {
    char *dir = test_tmpdir("llama_ref");
    char cmd[1024];
    char *out = NULL;
    snprintf(cmd, sizeof cmd, REF " run %s %s %d %d %d %d 5", model, dir, B, T, hook, mse_hook);
    if (run_capture(cmd, &out) != 0) fail_msg("%s failed:\n%s", cmd, out ? out : "");
    print_message("  reference: %s", out);
    free(out);

    struct lm *lm = open_llama(model);
    int L = lm->cfg.n_layer, C = lm->cfg.d_model, V = lm->cfg.vocab_size;
    size_t N = (size_t)B * T, NC = N * C, NV = N * V;
    int32_t *tokens = read_ref(dir, "tokens.i32", N);
    float *want_logits = read_ref(dir, "logits.f32", NV);
    float *want_resid = read_ref(dir, "resid.f32", (L + 1) * NC);
    float *want_ce = read_ref(dir, "grad_ce.f32", NC);
    float *want_kl = read_ref(dir, "grad_kl.f32", NC);
    float *target_logp = read_ref(dir, "target_logp.f32", NV);
    float *mse_target = read_ref(dir, "mse_target.f32", NC);

    struct lm_acts *a = acts_make(lm, B, T);
    assert_int_equal(llama_embed(lm, a, tokens), 0);
    assert_int_equal(llama_blocks_forward(lm, a, 0, hook), 0); /* in two pieces, as e2e does */
    assert_int_equal(llama_blocks_forward(lm, a, hook, L), 0);
    assert_int_equal(llama_final_norm(lm, a), 0);
    float *logits = malloc(NV * sizeof *logits);
    assert_int_equal(llama_unembed(lm, a->lnf, (int)N, logits), 0);
    assert_close("logits", logits, want_logits, NV, 1e-4f, 1.0f);
    for (int l = 0; l <= L; l++) {
        char what[32];
        snprintf(what, sizeof what, "resid[%d]", l);
        assert_close(what, a->resid[l], want_resid + l * NC, NC, 1e-4f, 1.0f);
    }

    /* (i) mean next-token CE over positions 0..T-2 */
    float *dlogits = calloc(NV, sizeof *dlogits), *d = malloc(NC * sizeof *d);
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            size_t r = (size_t)b * T + t;
            softmax_row(logits + r * V, V, dlogits + r * V);
            dlogits[r * V + tokens[r + 1]] -= 1.0f;
            for (int v = 0; v < V; v++)
                dlogits[r * V + v] /= (float)(B * (T - 1));
        }
    backward_to_hook(lm, a, dlogits, hook, NULL, d);
    assert_close("grad CE", d, want_ce, NC, 1e-3f, 0.0f);

    /* (ii) mean over positions of KL(target || model) + mean((resid[m] - target)^2) */
    for (size_t r = 0; r < N; r++) {
        softmax_row(logits + r * V, V, dlogits + r * V);
        for (int v = 0; v < V; v++)
            dlogits[r * V + v] = (dlogits[r * V + v] - expf(target_logp[r * V + v])) / N;
    }
    float **d_extra = calloc(L + 1, sizeof *d_extra);
    d_extra[mse_hook] = malloc(NC * sizeof(float));
    for (size_t i = 0; i < NC; i++)
        d_extra[mse_hook][i] = 2.0f * (a->resid[mse_hook][i] - mse_target[i]) / NC;
    backward_to_hook(lm, a, dlogits, hook, d_extra, d);
    assert_close("grad KL+MSE", d, want_kl, NC, 1e-3f, 0.0f);

    free(d_extra[mse_hook]);
    free(d_extra);
    free(d);
    free(dlogits);
    free(logits);
    acts_drop(a);
    free(tokens), free(want_logits), free(want_resid), free(want_ce), free(want_kl);
    free(target_logp), free(mse_target);
    close_llama(lm);
    test_rmtree(dir);
    free(dir);
}

static void skip_unless_torch(void) {
    if (!have_python_modules("torch numpy")) skip_because("/usr/bin/python3 lacks torch/numpy");
}

static void test_stories260K_matches_torch(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(STORIES);
    skip_unless_torch();
    compare_with_reference(shared_path(STORIES), 2, 150, 1, 3); /* T spans 3 attention tiles */
}

static void test_random_gqa_separate_classifier_matches_torch(void **state) {
    (void)state;
    skip_unless_torch();
    char *dir = test_tmpdir("llama_rand");
    char *model = path_join(dir, "rand.bin");
    char cmd[1024];
    char *out = NULL;
    snprintf(cmd, sizeof cmd, REF " random-model %s 11", model);
    if (run_capture(cmd, &out) != 0) fail_msg("%s failed:\n%s", cmd, out ? out : "");
    free(out);
    struct lm *lm = open_llama(model);
    assert_false(lm->cfg.shared_classifier);
    assert_true(lm->cfg.n_kv_head < lm->cfg.n_head);
    close_llama(lm);
    compare_with_reference(model, 3, 100, 0, 2);
    test_rmtree(dir);
    free(model);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260K_matches_torch),
        cmocka_unit_test(test_random_gqa_separate_classifier_matches_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
