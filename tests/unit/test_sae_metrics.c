/* test_sae_metrics.c: SAE evaluation metrics against the float64 PyTorch
 * reference (tests/ref/sae_ref.py metrics) on a random GPT-2 and a random token
 * set whose last batch is partial (padding must not leak into any statistic),
 * with dead features; and the /metrics group round trip. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"
#include "model/lm.h"
#include "sae/metrics.h"
#include "sae/sae_io.h"
#include "tok/dataset.h"
#include "util/error.h"

#define REF "/usr/bin/python3 tests/ref/sae_ref.py"

static char *ref_dir;

static const char *reference(void) {
    if (ref_dir) return ref_dir;
    if (!have_python_modules("torch h5py numpy")) skip_because("torch/h5py not importable");
    ref_dir = test_tmpdir("sae_metrics");
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd,
             REF " multi --out %s 'metrics --name m --layer 1 --d-sae 128 --seed 11'"
                 " 'metrics --name last --layer 2 --d-sae 64 --seed 12 --n-windows 5'",
             ref_dir);
    if (run_capture(cmd, &out) != 0) fail_msg("%s failed:\n%s", cmd, out ? out : "");
    free(out);
    return ref_dir;
}

static int cleanup(void **state) {
    (void)state;
    if (ref_dir) test_rmtree(ref_dir);
    free(ref_dir);
    return 0;
}

static double attr(hid_t loc, const char *name) {
    double v;
    if (h5_get_attr_f64(loc, name, &v) < 0) fail_msg("%s", err_msg());
    return v;
}

static void assert_rel(const char *what, double got, double want, double rel) {
    if (!(fabs(got - want) <= rel * fmax(fabs(want), 1e-12)))
        fail_msg("%s: got %.9g, want %.9g (relative tolerance %g)", what, got, want, rel);
}

struct loaded {
    struct lm *lm;
    struct sae s;
    struct token_dataset data;
    hid_t f;
};

static void load(const char *name, struct loaded *x) {
    char buf[128];
    const char *dir = reference();
    snprintf(buf, sizeof buf, "%s/%s_model", dir, name);
    if (lm_load(buf, &x->lm) < 0) fail_msg("%s", err_msg());
    snprintf(buf, sizeof buf, "%s/%s_tokens.h5", dir, name);
    if (token_dataset_open(&x->data, buf) < 0) fail_msg("%s", err_msg());
    snprintf(buf, sizeof buf, "%s/%s.h5", dir, name);
    x->f = h5_open_ro(buf);
    assert_true(x->f >= 0);
    hid_t g = H5Gopen2(x->f, "sae", H5P_DEFAULT);
    if (sae_weights_read(g, &x->s) < 0) fail_msg("%s", err_msg());
    H5Gclose(g);
}

static void unload(struct loaded *x) {
    h5_close(x->f);
    sae_free(&x->s);
    token_dataset_close(&x->data);
    lm_free(x->lm);
}

static void check(const char *name) {
    struct loaded x;
    load(name, &x);
    struct sae_eval_opts o = {.layer = (int)attr(x.f, "layer"),
                              .context = (int)attr(x.f, "context"),
                              .batch = 4};
    struct sae_metrics m;
    if (sae_evaluate(&x.s, x.lm, &x.data, &o, &m) < 0) fail_msg("%s", err_msg());
    hsize_t nd;
    double *want_density = NULL, *want_ds = NULL;
    assert_int_equal(h5_read(x.f, "feature_density", H5T_NATIVE_DOUBLE, 1, NULL, &nd,
                             (void **)&want_density), 0);
    assert_int_equal((int64_t)nd, x.s.d_sae);
    assert_int_equal(h5_read(x.f, "mse_downstream", H5T_NATIVE_DOUBLE, 1, NULL, &nd,
                             (void **)&want_ds), 0);
    print_message("  %s: l0 %.3f alive %lld ce %.5f -> %.5f kl %.5f ev %.4f\n", name, m.l0,
                  (long long)m.alive, m.ce_orig, m.ce_sae, m.kl, m.explained_variance);
    // codes near zero may flip between float32 and float64: allow a hair
    assert_rel("l0", m.l0, attr(x.f, "l0"), 1e-3);
    assert_true(llabs(m.alive - (int64_t)attr(x.f, "alive")) <= 1);
    assert_int_equal(m.alive + m.dead, x.s.d_sae);
    assert_rel("ce_orig", m.ce_orig, attr(x.f, "ce_orig"), 1e-4);
    assert_rel("ce_sae", m.ce_sae, attr(x.f, "ce_sae"), 1e-4);
    assert_rel("ce_increase", m.ce_increase, attr(x.f, "ce_sae") - attr(x.f, "ce_orig"), 1e-2);
    assert_rel("kl", m.kl, attr(x.f, "kl"), 1e-4);
    assert_rel("mse", m.mse, attr(x.f, "mse"), 1e-4);
    assert_rel("explained_variance", m.explained_variance, attr(x.f, "explained_variance"), 1e-4);
    assert_int_equal(m.n_downstream, (int)nd);
    for (int k = 0; k < m.n_downstream; k++) {
        assert_int_equal(m.downstream_layers[k], o.layer + 1 + k);
        assert_rel("mse_downstream", m.mse_downstream[k], want_ds[k], 1e-4);
    }
    int64_t in_bins = 0, off = 0;
    for (int i = 0; i < SAE_DENSITY_BINS; i++) in_bins += m.hist[i];
    assert_int_equal(in_bins, m.alive);
    for (int j = 0; j < x.s.d_sae; j++)
        if (fabs(m.feature_density[j] - want_density[j]) > 1e-12) off++;
    assert_true(off <= 2);
    free(want_density);
    free(want_ds);
    sae_metrics_free(&m);
    unload(&x);
}

static void test_metrics_match_torch(void **state) {
    (void)state;
    check("m");
}

static void test_metrics_at_last_layer_match_torch(void **state) {
    (void)state;
    check("last");
}

static void test_metrics_group_round_trips(void **state) {
    (void)state;
    struct loaded x;
    load("m", &x);
    struct sae_eval_opts o = {.layer = 1, .context = 16, .batch = 3, .n_tokens = 40};
    struct sae_metrics m, r;
    if (sae_evaluate(&x.s, x.lm, &x.data, &o, &m) < 0) fail_msg("%s", err_msg());
    assert_int_equal(m.n_tokens, 48); // 40 tokens round up to whole windows
    char *dir = test_tmpdir("sae_metrics_rt"), *path = path_join(dir, "m.h5");
    hid_t f = h5_create(path);
    assert_int_equal(sae_metrics_write(f, &m), 0);
    h5_close(f);
    f = h5_open_ro(path);
    assert_int_equal(sae_metrics_read(f, &r), 0);
    h5_close(f);
    assert_true(r.l0 == m.l0 && r.kl == m.kl && r.alive == m.alive && r.dead == m.dead);
    assert_true(r.explained_variance == m.explained_variance && r.n_tokens == m.n_tokens);
    assert_int_equal(r.n_downstream, m.n_downstream);
    assert_memory_equal(r.mse_downstream, m.mse_downstream, m.n_downstream * sizeof(double));
    assert_memory_equal(r.feature_density, m.feature_density, m.d_sae * sizeof(double));
    assert_memory_equal(r.hist, m.hist, sizeof m.hist);
    cJSON *j = sae_metrics_json(&m);
    assert_non_null(cJSON_GetObjectItem(j, "ce_increase"));
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "mse_downstream"), "2"));
    cJSON_Delete(j);
    sae_metrics_free(&m);
    sae_metrics_free(&r);
    unload(&x);
    test_rmtree(dir);
    free(path);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_match_torch),
        cmocka_unit_test(test_metrics_at_last_layer_match_torch),
        cmocka_unit_test(test_metrics_group_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, cleanup);
}
