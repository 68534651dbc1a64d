/* test_sae_e2e.c: the three objectives through a real (small, random) GPT-2
 * against the float64 PyTorch reference (tests/ref/sae_ref.py builds the model,
 * writes it in Hugging Face layout and computes every loss term and SAE
 * gradient): local at a hook fed by the model, e2e (KL through the frozen
 * downstream blocks) and e2e+ds (KL + MSE at the later hooks), on dense and on
 * sparse codes, at a middle layer, the first layer and the last layer (where the
 * downstream sum is empty). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"
#include "model/lm.h"
#include "sae/objective.h"
#include "sae/sae.h"
#include "sae/sae_io.h"
#include "util/error.h"

#define REF "/usr/bin/python3 tests/ref/sae_ref.py"

static char *ref_dir;

static const char *reference(void) {
    if (ref_dir) return ref_dir;
    if (!have_python_modules("torch h5py numpy")) skip_because("torch/h5py not importable");
    ref_dir = test_tmpdir("sae_e2e");
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd,
             REF " multi --out %s"
                 " 'e2e --name mid --layer 1 --d-sae 128 --lam 2 --seed 3'"
                 " 'e2e --name first_sparse --layer 0 --d-sae 1024 --lam 4 --seed 4 --sparse'"
                 " 'e2e --name last --layer 2 --d-sae 64 --lam 1 --seed 5'",
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

static float max_abs(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

static void assert_close(const char *what, const float *got, const float *want, size_t n,
                         float rel) {
    float scale = fmaxf(max_abs(want, n), 1e-30f), worst = 0.0f;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(got[i] - want[i]);
        if (!(d <= worst)) worst = d, at = i;
    }
    if (!(worst <= rel * scale))
        fail_msg("%s: max |diff| %g at %zu (got %g, want %g) exceeds %g x %g", what, worst, at,
                 got[at], want[at], rel, scale);
}

static void assert_rel(const char *what, double got, double want, double rel) {
    if (!(fabs(got - want) <= rel * fmax(fabs(want), 1e-12)))
        fail_msg("%s: got %.9g, want %.9g (relative tolerance %g)", what, got, want, rel);
}

static double attr(hid_t loc, const char *name) {
    double v;
    if (h5_get_attr_f64(loc, name, &v) < 0) fail_msg("%s", err_msg());
    return v;
}

static float *read_f32(hid_t loc, const char *name, size_t n) {
    float *buf = NULL;
    hsize_t dims[8];
    int nd;
    if (h5_shape(loc, name, 8, &nd, dims) < 0) fail_msg("%s", err_msg());
    if (h5_read(loc, name, H5T_NATIVE_FLOAT, nd, NULL, NULL, (void **)&buf) < 0)
        fail_msg("%s", err_msg());
    size_t k = 1;
    for (int i = 0; i < nd; i++) k *= dims[i];
    assert_int_equal(k, n);
    return buf;
}

static void compare_grads(const char *setting, const struct sae *s, const struct sae_params *g,
                          hid_t grp) {
    int din = s->d_in, dsae = s->d_sae;
    size_t ed = (size_t)din * dsae;
    float *we = read_f32(grp, "grad_W_enc", ed), *be = read_f32(grp, "grad_b_enc", dsae);
    float *wd = read_f32(grp, "grad_W_dec", ed), *bd = read_f32(grp, "grad_b_dec", din);
    float *wdt = malloc(ed * sizeof *wdt);
    for (int j = 0; j < dsae; j++)
        for (int i = 0; i < din; i++) wdt[(size_t)i * dsae + j] = g->W_dec[(size_t)j * din + i];
    char what[64];
    snprintf(what, sizeof what, "%s grad W_enc", setting);
    assert_close(what, g->W_enc, we, ed, 1e-3f);
    snprintf(what, sizeof what, "%s grad b_enc", setting);
    assert_close(what, g->b_enc, be, dsae, 1e-3f);
    snprintf(what, sizeof what, "%s grad W_dec", setting);
    assert_close(what, wdt, wd, ed, 1e-3f);
    snprintf(what, sizeof what, "%s grad b_dec", setting);
    assert_close(what, g->b_dec, bd, din, 1e-3f);
    free(we);
    free(be);
    free(wd);
    free(bd);
    free(wdt);
}

static void check_case(const char *name, bool expect_dense) {
    char file[64], mdir[64];
    snprintf(file, sizeof file, "%s.h5", name);
    snprintf(mdir, sizeof mdir, "%s_model", name);
    char *path = path_join(reference(), file), *model = path_join(ref_dir, mdir);
    hid_t f = h5_open_ro(path);
    assert_true(f >= 0);
    struct lm *lm;
    if (lm_load(model, &lm) < 0) fail_msg("%s", err_msg());
    hid_t gs = H5Gopen2(f, "sae", H5P_DEFAULT);
    struct sae s;
    if (sae_weights_read(gs, &s) < 0) fail_msg("%s", err_msg());
    H5Gclose(gs);
    hsize_t td[2];
    int32_t *tokens = NULL;
    assert_int_equal(h5_read(f, "tokens", H5T_NATIVE_INT32, 2, NULL, td, (void **)&tokens), 0);
    int B = (int)td[0], T = (int)td[1];
    float *grad_mem = malloc(s.n_params * sizeof(float));
    struct sae_params g;
    sae_point_params(&s, grad_mem, &g);

    for (int t = SAE_LOCAL; t <= SAE_E2E_DS; t++) {
        struct sae_setting set = {.type = (enum sae_type)t,
                                  .layer = (int)attr(f, "layer"),
                                  .lambda = attr(f, "lam"),
                                  .kl_coeff = attr(f, "kl_coeff"),
                                  .ds_coeff = attr(f, "ds_coeff")};
        const char *tn = sae_type_name(set.type);
        hid_t gr = H5Gopen2(f, tn, H5P_DEFAULT);
        struct sae_objective o;
        if (sae_objective_init(&o, &set, lm, &s, B, T, true, NULL) < 0) fail_msg("%s", err_msg());
        memset(grad_mem, 0, s.n_params * sizeof(float));
        struct sae_loss loss;
        if (sae_objective_step(&o, &s, tokens, 1.0f, &g, &loss) < 0) fail_msg("%s", err_msg());
        assert_int_equal(sae_codes_dense(o.codes), expect_dense);
        print_message("  %s/%s: loss %.6g kl %.6g ds %.6g mse %.6g l0 %.2f\n", name, tn,
                      loss.loss, loss.kl, loss.ds_mse, loss.mse, loss.l0);
        char what[64];
        snprintf(what, sizeof what, "%s loss", tn);
        assert_rel(what, loss.loss, attr(gr, "loss"), 1e-4);
        assert_rel("sparsity", loss.sparsity, attr(gr, "sparsity"), 1e-4);
        assert_rel("mse", loss.mse, attr(gr, "mse"), 1e-4);
        assert_rel("l0", loss.l0, attr(gr, "l0"), 1e-9);
        if (t != SAE_LOCAL) assert_rel("kl", loss.kl, attr(gr, "kl"), 1e-4);
        if (t == SAE_E2E_DS) {
            double want = attr(gr, "ds_mse");
            if (want == 0) assert_true(loss.ds_mse == 0);
            else assert_rel("ds_mse", loss.ds_mse, want, 1e-4);
        }
        compare_grads(tn, &s, &g, gr);
        // the loss alone (no gradients) gives the same numbers
        struct sae_loss again;
        assert_int_equal(sae_objective_step(&o, &s, tokens, 1.0f, NULL, &again), 0);
        assert_true(again.loss == loss.loss);
        sae_objective_free(&o);
        H5Gclose(gr);
    }
    free(grad_mem);
    free(tokens);
    sae_free(&s);
    lm_free(lm);
    h5_close(f);
    free(path);
    free(model);
}

static void test_middle_layer_dense_codes_match_torch(void **state) {
    (void)state;
    check_case("mid", true);
}

static void test_first_layer_sparse_codes_match_torch(void **state) {
    (void)state;
    check_case("first_sparse", false);
}

static void test_last_layer_has_no_downstream_term(void **state) {
    (void)state;
    check_case("last", true);
}

static void test_layer_and_width_are_checked(void **state) {
    (void)state;
    const char *dir = reference();
    char *model = path_join(dir, "mid_model");
    struct lm *lm;
    if (lm_load(model, &lm) < 0) fail_msg("%s", err_msg());
    struct sae s;
    assert_int_equal(sae_new(&s, lm->cfg.d_model, 64), 0);
    struct sae_objective o;
    struct sae_setting set = {.type = SAE_E2E, .layer = lm->cfg.n_layer, .lambda = 1};
    assert_int_equal(sae_objective_init(&o, &set, lm, &s, 1, 4, true, NULL), -1);
    assert_non_null(strstr(err_msg(), "layer"));
    sae_free(&s);
    assert_int_equal(sae_new(&s, lm->cfg.d_model + 1, 64), 0);
    set.layer = 0;
    assert_int_equal(sae_objective_init(&o, &set, lm, &s, 1, 4, true, NULL), -1);
    assert_non_null(strstr(err_msg(), "d_model"));
    sae_free(&s);
    lm_free(lm);
    free(model);
}

/* Llama (stories260K) behind the same interface: the e2e_ds gradient agrees with a
 * central finite difference of the loss along the gradient direction. */
static void test_llama_e2e_ds_gradient_matches_finite_difference(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED("models/stories260K/stories260K.bin");
    struct lm *lm;
    if (lm_load(shared_path("models/stories260K/stories260K.bin"), &lm) < 0)
        fail_msg("%s", err_msg());
    int B = 2, T = 16, C = lm->cfg.d_model;
    int32_t tokens[32];
    for (int i = 0; i < B * T; i++) tokens[i] = 1 + (i * 37 + 11) % (lm->cfg.vocab_size - 1);
    struct sae s;
    assert_int_equal(sae_new(&s, C, 4 * C), 0);
    assert_int_equal(sae_init(&s, 2), 0);
    struct sae_setting set = {.type = SAE_E2E_DS, .layer = 1, .lambda = 0.5, .kl_coeff = 0.5,
                              .ds_coeff = 2.5};
    struct sae_objective o;
    if (sae_objective_init(&o, &set, lm, &s, B, T, true, NULL) < 0) fail_msg("%s", err_msg());
    assert_true(o.n_points > 0);
    float *gm = calloc(s.n_params, sizeof(float));
    struct sae_params g;
    sae_point_params(&s, gm, &g);
    struct sae_loss l0, lp, lm_;
    assert_int_equal(sae_objective_step(&o, &s, tokens, 1.0f, &g, &l0), 0);
    double gn = 0;
    for (size_t i = 0; i < s.n_params; i++) gn += (double)gm[i] * gm[i];
    gn = sqrt(gn);
    assert_true(gn > 0);
    float *base = malloc(s.n_params * sizeof(float));
    memcpy(base, s.mem, s.n_params * sizeof(float));
    double eps = 1e-3;
    for (int sign = 1; sign >= -1; sign -= 2) {
        for (size_t i = 0; i < s.n_params; i++) s.mem[i] = base[i] + (float)(sign * eps * gm[i] / gn);
        sae_refresh_norms(&s);
        assert_int_equal(sae_objective_step(&o, &s, tokens, 1.0f, NULL, sign > 0 ? &lp : &lm_), 0);
    }
    double fd = (lp.loss - lm_.loss) / (2 * eps);
    print_message("  llama e2e_ds: loss %.6g, |grad| %.6g, finite difference %.6g\n", l0.loss, gn,
                  fd);
    assert_true(fabs(fd - gn) < 0.02 * gn);
    free(base);
    free(gm);
    sae_objective_free(&o);
    sae_free(&s);
    lm_free(lm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_middle_layer_dense_codes_match_torch),
        cmocka_unit_test(test_first_layer_sparse_codes_match_torch),
        cmocka_unit_test(test_last_layer_has_no_downstream_term),
        cmocka_unit_test(test_layer_and_width_are_checked),
        cmocka_unit_test(test_llama_e2e_ds_gradient_matches_finite_difference),
    };
    return cmocka_run_group_tests(tests, NULL, cleanup);
}
