/* test_sae_math.c: the SAE maths without a model: initialisation, the local loss
 * and every parameter gradient against an independent float64 PyTorch reference
 * (tests/ref/sae_ref.py) on dense and on sparse codes, through both the dense
 * (sgemm) and the sparse (active features only) paths, and the chunked KL row
 * kernel against a plain double computation. */
#include "testutil.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"
#include "sae/kl.h"
#include "sae/objective.h"
#include "sae/sae.h"
#include "sae/sae_io.h"
#include "sae/train.h"
#include "util/error.h"

#define REF "/usr/bin/python3 tests/ref/sae_ref.py"

static float max_abs(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

/* max |got − want| <= rel · max|want| (NaN fails) */
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

/* All reference cases come from one python run (importing torch is most of its
 * time); the directory lives until the end of the test binary. */
static char *ref_dir;

static const char *reference(void) {
    if (ref_dir) return ref_dir;
    if (!have_python_modules("torch h5py numpy")) skip_because("torch/h5py not importable");
    ref_dir = test_tmpdir("sae_math");
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd,
             REF " multi --out %s"
                 " 'local --name dense --d-in 32 --d-sae 256 --n 64 --lam 3 --seed 1'"
                 " 'local --name sparse --d-in 40 --d-sae 2048 --n 300 --lam 5 --seed 2 --sparse'",
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

static double attr(hid_t loc, const char *name) {
    double v;
    if (h5_get_attr_f64(loc, name, &v) < 0) fail_msg("%s", err_msg());
    return v;
}

/* Compare grads (our layout) with the reference group's grad_* datasets. */
static void compare_grads(const struct sae *s, const struct sae_params *g, hid_t grp) {
    int din = s->d_in, dsae = s->d_sae;
    size_t ed = (size_t)din * dsae;
    float *we = read_f32(grp, "grad_W_enc", ed), *be = read_f32(grp, "grad_b_enc", dsae);
    float *wd = read_f32(grp, "grad_W_dec", ed), *bd = read_f32(grp, "grad_b_dec", din);
    float *wdt = malloc(ed * sizeof *wdt); // ours (d_sae,d_in) -> (d_in,d_sae)
    for (int j = 0; j < dsae; j++)
        for (int i = 0; i < din; i++) wdt[(size_t)i * dsae + j] = g->W_dec[(size_t)j * din + i];
    assert_close("grad W_enc", g->W_enc, we, ed, 1e-3f);
    assert_close("grad b_enc", g->b_enc, be, dsae, 1e-3f);
    assert_close("grad W_dec", wdt, wd, ed, 1e-3f);
    assert_close("grad b_dec", g->b_dec, bd, din, 1e-3f);
    free(we);
    free(be);
    free(wd);
    free(bd);
    free(wdt);
}

static void check_local(const char *name, enum sae_path path, bool expect_dense) {
    char file[64];
    snprintf(file, sizeof file, "%s.h5", name);
    char *ref = path_join(reference(), file);
    hid_t f = h5_open_ro(ref);
    assert_true(f >= 0);
    hid_t gs = H5Gopen2(f, "sae", H5P_DEFAULT), gl = H5Gopen2(f, "local", H5P_DEFAULT);
    struct sae s;
    if (sae_weights_read(gs, &s) < 0) fail_msg("%s", err_msg());
    int din = s.d_in;
    hsize_t xd[2];
    float *x = NULL;
    assert_int_equal(h5_read(f, "x", H5T_NATIVE_FLOAT, 2, NULL, xd, (void **)&x), 0);
    int N = (int)xd[0];
    double lam = attr(f, "lam");

    struct sae_work w;
    struct sae_codes codes = {0};
    assert_int_equal(sae_work_init(&w, &s), 0);
    w.path = path;
    float *grad_mem = calloc(s.n_params, sizeof(float));
    struct sae_params g;
    sae_point_params(&s, grad_mem, &g);
    float *xhat = malloc((size_t)N * din * sizeof(float));
    struct sae_loss loss;
    assert_int_equal(sae_local_loss(&s, &w, &codes, x, N, lam, xhat, 1.0f, &g, &loss), 0);
    assert_int_equal(sae_codes_dense(&codes), expect_dense);

    assert_rel("loss", loss.loss, attr(gl, "loss"), 1e-4);
    assert_rel("mse", loss.mse, attr(gl, "mse"), 1e-4);
    assert_rel("sparsity", loss.sparsity, attr(gl, "sparsity"), 1e-4);
    assert_rel("l0", loss.l0, attr(gl, "l0"), 1e-9);
    compare_grads(&s, &g, gl);

    H5Gclose(gs);
    H5Gclose(gl);
    h5_close(f);
    free(x);
    free(xhat);
    free(grad_mem);
    sae_codes_free(&codes);
    sae_work_free(&w);
    sae_free(&s);
    free(ref);
}

static void test_local_dense_codes_match_torch(void **state) {
    (void)state;
    check_local("dense", SAE_PATH_AUTO, true);
    check_local("dense", SAE_PATH_SPARSE, true);
}

static void test_local_sparse_codes_match_torch(void **state) {
    (void)state;
    check_local("sparse", SAE_PATH_AUTO, false);
    check_local("sparse", SAE_PATH_DENSE, false);
}

static void test_init_orthonormal_decoder_and_uniform_encoder(void **state) {
    (void)state;
    struct sae s, t;
    int din = 24, dsae = 96;
    assert_int_equal(sae_new(&s, din, dsae), 0);
    assert_int_equal(sae_new(&t, din, dsae), 0);
    assert_int_equal(sae_init(&s, 7), 0);
    assert_int_equal(sae_init(&t, 7), 0);
    assert_memory_equal(s.mem, t.mem, s.n_params * sizeof(float));
    assert_int_equal(sae_init(&t, 8), 0);
    assert_memory_not_equal(s.mem, t.mem, s.n_params * sizeof(float));
    // paper W_dec (d_in,d_sae) has orthonormal rows: Σ_j w_j[a] w_j[b] = δ_ab
    for (int a = 0; a < din; a++)
        for (int b = 0; b < din; b++) {
            double dot = 0;
            for (int j = 0; j < dsae; j++)
                dot += (double)s.p.W_dec[(size_t)j * din + a] * s.p.W_dec[(size_t)j * din + b];
            assert_true(fabs(dot - (a == b)) < 1e-5);
        }
    float be = 1.0f / sqrtf((float)din), bd = 1.0f / sqrtf((float)dsae);
    float m = max_abs(s.p.W_enc, (size_t)din * dsae);
    assert_true(m <= be && m > 0.9f * be);
    assert_true(max_abs(s.p.b_enc, dsae) <= be);
    assert_true(max_abs(s.p.b_dec, din) <= bd);
    // inv_norm is current: ‖w_j‖·inv_norm_j = 1
    for (int j = 0; j < dsae; j++) {
        const float *w = s.p.W_dec + (size_t)j * din;
        double n = 0;
        for (int i = 0; i < din; i++) n += (double)w[i] * w[i];
        assert_true(fabs(sqrt(n) * s.inv_norm[j] - 1) < 1e-5);
    }
    sae_free(&s);
    sae_free(&t);
}

static void test_codes_by_feature_is_the_transpose(void **state) {
    (void)state;
    struct sae s;
    assert_int_equal(sae_new(&s, 16, 64), 0);
    assert_int_equal(sae_init(&s, 3), 0);
    struct sae_work w;
    struct sae_codes c = {0};
    assert_int_equal(sae_work_init(&w, &s), 0);
    int N = 300; // more than one encoder chunk
    float *x = malloc((size_t)N * 16 * sizeof *x);
    for (int i = 0; i < N * 16; i++) x[i] = sinf(0.37f * i) * 2;
    assert_int_equal(sae_encode(&s, &w, x, N, &c), 0);
    assert_true(c.nnz > 0);
    assert_int_equal(sae_codes_by_feature(&c), 0);
    float *dense = calloc((size_t)N * 64, sizeof *dense);
    for (int r = 0; r < N; r++)
        for (int64_t i = c.row_ptr[r]; i < c.row_ptr[r + 1]; i++) {
            assert_true(c.val[i] > 0);
            if (i > c.row_ptr[r]) assert_true(c.col[i] > c.col[i - 1]);
            dense[(size_t)r * 64 + c.col[i]] = c.val[i];
        }
    int64_t seen = 0;
    for (int j = 0; j < 64; j++)
        for (int64_t e = c.feat_ptr[j]; e < c.feat_ptr[j + 1]; e++, seen++)
            assert_true(dense[(size_t)c.row[e] * 64 + j] == c.fval[e]);
    assert_int_equal(seen, c.nnz);
    free(dense);
    free(x);
    sae_codes_free(&c);
    sae_work_free(&w);
    sae_free(&s);
}

static void test_kl_row_matches_double_softmax(void **state) {
    (void)state;
    int V = 1003; // not a multiple of 8
    float *lo = malloc(V * sizeof *lo), *ls = malloc(V * sizeof *ls), *dz = malloc(V * sizeof *dz);
    for (int i = 0; i < V; i++) {
        lo[i] = 6.0f * sinf(0.11f * i) + (i == 5 ? 4.0f : 0.0f);
        ls[i] = lo[i] + 0.5f * cosf(0.07f * i * i);
    }
    double ce_o, ce_s;
    double kl = kl_row(lo, ls, V, 17, 0.25f, dz, &ce_o, &ce_s);
    double mo = -1e30, ms = -1e30, zo = 0, zs = 0;
    for (int i = 0; i < V; i++) mo = fmax(mo, lo[i]), ms = fmax(ms, ls[i]);
    for (int i = 0; i < V; i++) zo += exp(lo[i] - mo), zs += exp(ls[i] - ms);
    double lse_o = mo + log(zo), lse_s = ms + log(zs), want = 0;
    float *wd = malloc(V * sizeof *wd);
    for (int i = 0; i < V; i++) {
        double p = exp(lo[i] - lse_o), q = exp(ls[i] - lse_s);
        want += p * ((lo[i] - lse_o) - (ls[i] - lse_s));
        wd[i] = (float)(0.25 * (q - p));
    }
    assert_rel("kl", kl, want, 1e-5);
    assert_rel("ce_o", ce_o, lse_o - lo[17], 1e-6);
    assert_rel("ce_s", ce_s, lse_s - ls[17], 1e-6);
    assert_close("dz", dz, wd, V, 1e-5f);
    free(lo);
    free(ls);
    free(dz);
    free(wd);
}

/* The threaded loops (sparse backward, decoder, Adam, gradient norm) give the same
 * bits with 1 thread as with 3. */
static void test_threaded_loops_do_not_depend_on_thread_count(void **state) {
    (void)state;
    int din = 40, dsae = 3000, N = 500;
    struct sae s;
    assert_int_equal(sae_new(&s, din, dsae), 0);
    assert_int_equal(sae_init(&s, 4), 0);
    for (int j = 0; j < dsae; j++) s.p.b_enc[j] -= 1.6f; // sparse codes
    float *x = malloc((size_t)N * din * sizeof *x), *dx = malloc((size_t)N * din * sizeof *dx);
    for (int i = 0; i < N * din; i++) x[i] = sinf(0.3f * i) * 1.7f, dx[i] = cosf(0.7f * i);
    struct sae_work w;
    struct sae_codes c = {0};
    assert_int_equal(sae_work_init(&w, &s), 0);
    assert_int_equal(sae_encode(&s, &w, x, N, &c), 0);
    assert_false(sae_codes_dense(&c));
    assert_true(c.nnz > 1000);
    float *g[2], *xh[2], *p[2], *m[2], *v[2];
    double norm[2];
    int threads[2] = {1, 3};
    for (int k = 0; k < 2; k++) {
        openblas_set_num_threads(threads[k]);
        g[k] = calloc(s.n_params, sizeof(float));
        xh[k] = malloc((size_t)N * din * sizeof(float));
        p[k] = malloc(s.n_params * sizeof(float));
        m[k] = calloc(s.n_params, sizeof(float));
        v[k] = calloc(s.n_params, sizeof(float));
        struct sae_params gp;
        sae_point_params(&s, g[k], &gp);
        assert_int_equal(sae_decode(&s, &w, &c, xh[k]), 0);
        assert_int_equal(sae_backward(&s, &w, x, &c, dx, 1e-3f, &gp), 0);
        norm[k] = sae_grad_norm(g[k], s.n_params);
        memcpy(p[k], s.mem, s.n_params * sizeof(float));
        sae_adam_step(p[k], g[k], m[k], v[k], s.n_params, 1e-3, 1, 0.5f);
    }
    assert_memory_equal(xh[0], xh[1], (size_t)N * din * sizeof(float));
    assert_true(norm[0] == norm[1] && norm[0] > 0);
    assert_memory_equal(p[0], p[1], s.n_params * sizeof(float));
    assert_memory_equal(m[0], m[1], s.n_params * sizeof(float));
    for (int k = 0; k < 2; k++) {
        free(g[k]);
        free(xh[k]);
        free(p[k]);
        free(m[k]);
        free(v[k]);
    }
    openblas_set_num_threads(2);
    free(x);
    free(dx);
    sae_codes_free(&c);
    sae_work_free(&w);
    sae_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_orthonormal_decoder_and_uniform_encoder),
        cmocka_unit_test(test_codes_by_feature_is_the_transpose),
        cmocka_unit_test(test_kl_row_matches_double_softmax),
        cmocka_unit_test(test_threaded_loops_do_not_depend_on_thread_count),
        cmocka_unit_test(test_local_dense_codes_match_torch),
        cmocka_unit_test(test_local_sparse_codes_match_torch),
    };
    return cmocka_run_group_tests(tests, NULL, cleanup);
}
