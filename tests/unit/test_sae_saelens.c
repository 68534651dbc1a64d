/* test_sae_saelens.c: SAELens folders: export then import reproduces every
 * tensor bit-exactly; a SAELens SAE with apply_b_dec_to_input and decoder rows
 * of any norm imports into an SAE computing the same function; what cannot be
 * represented is refused naming the cfg.json key; SAE files round-trip too. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/atomic.h"
#include "io/h5.h"
#include "io/safetensors.h"
#include "sae/sae.h"
#include "sae/sae_io.h"
#include "sae/saelens.h"
#include "util/error.h"

static void test_export_then_import_is_bit_exact(void **state) {
    (void)state;
    struct sae s, t;
    assert_int_equal(sae_new(&s, 24, 96), 0);
    assert_int_equal(sae_init(&s, 5), 0);
    for (int j = 0; j < 96; j++) // decoder rows of assorted norms, as after training
        for (int i = 0; i < 24; i++) s.p.W_dec[j * 24 + i] *= 0.3f + 0.05f * (float)j;
    sae_refresh_norms(&s);
    char *dir = test_tmpdir("saelens"), *out = path_join(dir, "L3");
    struct saelens_export_opts o = {.model_name = "tiny-stories", .layer = 3,
                                    .context_size = 64, .prepend_bos = true};
    assert_int_equal(saelens_export(&s, out, &o), 0);
    struct saelens_info info;
    if (saelens_import(out, &t, &info) < 0) fail_msg("%s", err_msg());
    assert_int_equal(info.layer, 3);
    assert_string_equal(info.hook_name, "blocks.3.hook_resid_pre");
    assert_string_equal(info.model_name, "tiny-stories");
    assert_int_equal(info.context_size, 64);
    assert_false(info.folded_b_dec);
    assert_int_equal(info.rescaled, 0);
    float *D = malloc(24 * 96 * sizeof *D);
    sae_normalised_decoder(&s, D);
    assert_memory_equal(t.p.W_enc, s.p.W_enc, 24 * 96 * sizeof(float));
    assert_memory_equal(t.p.b_enc, s.p.b_enc, 96 * sizeof(float));
    assert_memory_equal(t.p.W_dec, D, 24 * 96 * sizeof(float));
    assert_memory_equal(t.p.b_dec, s.p.b_dec, 24 * sizeof(float));
    // the file says exactly what SAELens expects
    char *cfgp = path_join(out, "cfg.json");
    size_t n;
    char *text = read_file_all(cfgp, 0, &n);
    assert_non_null(strstr(text, "\"apply_b_dec_to_input\":\tfalse"));
    assert_non_null(strstr(text, "\"normalize_activations\":\t\"none\""));
    char *wp = path_join(out, "sae_weights.safetensors");
    struct st_file f;
    assert_int_equal(st_open(&f, wp), 0);
    const struct st_tensor *we = st_find(&f, "W_enc"), *wd = st_find(&f, "W_dec");
    assert_true(we && we->shape[0] == 24 && we->shape[1] == 96);
    assert_true(wd && wd->shape[0] == 96 && wd->shape[1] == 24);
    st_close(&f);
    free(wp);
    free(text);
    free(cfgp);
    free(D);
    saelens_info_free(&info);
    sae_free(&s);
    sae_free(&t);
    test_rmtree(dir);
    free(out);
    free(dir);
}

/* A SAELens "standard" SAE written by hand: W_enc [d_in,d_sae], unnormalised W_dec. */
static void write_lens(const char *dir, const char *extra_cfg, int din, int dsae, float *we,
                       float *be, float *wd, float *bd) {
    mkdir_p(dir);
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"d_in\": %d, \"d_sae\": %d, \"model_name\": \"gpt2-small\", \"hook_name\": "
             "\"blocks.4.hook_resid_post\", \"hook_layer\": 4, \"dtype\": \"float32\", "
             "\"context_size\": 128 %s}",
             din, dsae, extra_cfg);
    char *p = path_join(dir, "cfg.json");
    write_file(p, cfg, strlen(cfg));
    free(p);
    struct st_write_tensor t[4] = {{"W_enc", 2, {din, dsae}, we},
                                   {"b_enc", 1, {dsae}, be},
                                   {"W_dec", 2, {dsae, din}, wd},
                                   {"b_dec", 1, {din}, bd}};
    p = path_join(dir, "sae_weights.safetensors");
    if (st_write_f32(p, t, 4, NULL, NULL, 0) < 0) fail_msg("%s", err_msg());
    free(p);
}

static void test_apply_b_dec_and_decoder_norms_are_folded(void **state) {
    (void)state;
    enum { DI = 12, DS = 40, N = 30 };
    float we[DI * DS], be[DS], wd[DS * DI], bd[DI], x[N * DI];
    for (int i = 0; i < DI * DS; i++) {
        we[i] = sinf(0.7f * i);
        wd[i] = cosf(0.3f * i) * (1 + (i / DI) % 3);
    }
    for (int j = 0; j < DS; j++) be[j] = 0.1f * cosf((float)j);
    for (int i = 0; i < DI; i++) bd[i] = 0.5f * sinf(1.3f * i);
    for (int i = 0; i < N * DI; i++) x[i] = 1.5f * sinf(0.11f * i * i);
    char *dir = test_tmpdir("saelens_fold");
    write_lens(dir, ", \"apply_b_dec_to_input\": true", DI, DS, we, be, wd, bd);
    struct sae s;
    struct saelens_info info;
    if (saelens_import(dir, &s, &info) < 0) fail_msg("%s", err_msg());
    assert_true(info.folded_b_dec);
    assert_true(info.rescaled > 0);
    assert_int_equal(info.layer, 5); // blocks.4.hook_resid_post = resid[5]
    struct sae_work w;
    struct sae_codes c = {0};
    float xhat[N * DI];
    assert_int_equal(sae_work_init(&w, &s), 0);
    assert_int_equal(sae_encode(&s, &w, x, N, &c), 0);
    assert_int_equal(sae_decode(&s, &w, &c, xhat), 0);
    for (int r = 0; r < N; r++) {
        double want[DI];
        for (int i = 0; i < DI; i++) want[i] = bd[i];
        for (int j = 0; j < DS; j++) {
            double pre = be[j];
            for (int i = 0; i < DI; i++) pre += ((double)x[r * DI + i] - bd[i]) * we[i * DS + j];
            if (pre > 0)
                for (int i = 0; i < DI; i++) want[i] += pre * wd[j * DI + i];
        }
        for (int i = 0; i < DI; i++)
            if (fabs(xhat[r * DI + i] - want[i]) > 1e-4 * (1 + fabs(want[i])))
                fail_msg("row %d dim %d: %g, want %g", r, i, xhat[r * DI + i], want[i]);
    }
    sae_codes_free(&c);
    sae_work_free(&w);
    saelens_info_free(&info);
    sae_free(&s);
    test_rmtree(dir);
    free(dir);
}

static void test_unsupported_saes_are_refused_by_key(void **state) {
    (void)state;
    float we[4 * 8] = {0}, be[8] = {0}, wd[8 * 4] = {0}, bd[4] = {0};
    const char *cfgs[] = {", \"architecture\": \"gated\"", ", \"activation_fn_str\": \"topk\"",
                          ", \"normalize_activations\": \"expected_average_only_in\""};
    const char *keys[] = {"architecture", "activation_fn_str", "normalize_activations"};
    for (int k = 0; k < 3; k++) {
        char *dir = test_tmpdir("saelens_bad");
        write_lens(dir, cfgs[k], 4, 8, we, be, wd, bd);
        struct sae s;
        struct saelens_info info;
        assert_int_equal(saelens_import(dir, &s, &info), -1);
        assert_non_null(strstr(err_msg(), keys[k]));
        test_rmtree(dir);
        free(dir);
    }
    char *dir = test_tmpdir("saelens_missing");
    struct sae s;
    struct saelens_info info;
    assert_int_equal(saelens_import(dir, &s, &info), -1);
    assert_non_null(strstr(err_msg(), "cfg.json"));
    test_rmtree(dir);
    free(dir);
    /* non-finite weights, and finite ones that overflow once the decoder norm
     * (1e30) moves into the encoder (3e10 x 1e30), are refused naming the file */
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 8 * 4; i++) wd[i] = 1.0f / 2; /* rows of norm 1 */
        if (k == 0) we[5] = NAN;
        else we[5] = 3e10f, wd[20] = wd[21] = wd[22] = wd[23] = 5e29f; /* feature 5 */
        dir = test_tmpdir("saelens_nonfinite");
        write_lens(dir, "", 4, 8, we, be, wd, bd);
        assert_int_equal(saelens_import(dir, &s, &info), -1);
        assert_non_null(strstr(err_msg(), "sae_weights.safetensors"));
        assert_non_null(strstr(err_msg(), k == 0 ? "tensor W_enc: element 5 is NaN" : "overflow"));
        test_rmtree(dir);
        free(dir);
        we[5] = 0;
    }
}

static void test_sae_file_round_trips_and_checks_format(void **state) {
    (void)state;
    struct sae s, t;
    assert_int_equal(sae_new(&s, 8, 32), 0);
    assert_int_equal(sae_init(&s, 1), 0);
    char *dir = test_tmpdir("sae_file"), *path = path_join(dir, "x.h5");
    struct sae_meta m = {.name = "L0-local-lam1-s0", .type = "local",
                         .hook_name = "blocks.0.hook_resid_pre", .model_path = "m",
                         .config = "{}", .spec_hash = "h", .layer = 0, .ratio = 4, .d_in = 8,
                         .d_sae = 32, .seed = 0, .train_tokens = 10, .steps = 1, .lambda = 1};
    assert_int_equal(sae_file_write(path, &s, &m, NULL, NULL), 0);
    struct sae_meta r;
    assert_int_equal(sae_file_read(path, &t, &r), 0);
    assert_memory_equal(s.mem, t.mem, s.n_params * sizeof(float));
    assert_string_equal(r.name, m.name);
    assert_true(r.lambda == 1 && r.d_sae == 32);
    sae_meta_free(&r);
    sae_free(&t);
    // a token dataset (or any other HDF5 file) is not an SAE file
    hid_t f = h5_create(path);
    h5_attr_str(f, "format", "autointerp-tokens");
    h5_close(f);
    assert_int_equal(sae_file_read(path, &t, NULL), -1);
    assert_non_null(strstr(err_msg(), "autointerp-sae"));
    assert_non_null(strstr(err_msg(), path));
    sae_free(&s);
    test_rmtree(dir);
    free(path);
    free(dir);
}

/* `autointerp sae-convert`: SAE file -> SAELens folder -> SAE file keeps every
 * tensor (the decoder as the normalised one it computes with), the hook and the
 * data settings; wrong arguments are errors naming the path. */
static void test_cli_convert_round_trip(void **state) {
    (void)state;
    struct sae s, t;
    assert_int_equal(sae_new(&s, 16, 48), 0);
    assert_int_equal(sae_init(&s, 9), 0);
    for (int j = 0; j < 48; j++)
        for (int i = 0; i < 16; i++) s.p.W_dec[j * 16 + i] *= 0.5f + 0.02f * (float)j;
    sae_refresh_norms(&s);
    char *dir = test_tmpdir("sae_convert"), *path = path_join(dir, "L2-e2e-lam1-s0.h5");
    char *lens = path_join(dir, "lens"), *back = path_join(dir, "back.h5");
    struct sae_meta m = {.name = "L2-e2e-lam1-s0", .type = "e2e",
                         .hook_name = "blocks.2.hook_resid_pre", .model_path = "models/tiny",
                         .config = "{\"data\": {\"context\": 96, \"prepend_bos\": false}}",
                         .spec_hash = "h", .layer = 2, .ratio = 3, .d_in = 16, .d_sae = 48,
                         .train_tokens = 10, .steps = 1, .lambda = 1};
    assert_int_equal(sae_file_write(path, &s, &m, NULL, NULL), 0);
    char *exp[] = {"sae-convert", "-q", path, lens, NULL};
    assert_int_equal(cmd_sae_convert(4, exp), 0);
    char *cfgp = path_join(lens, "cfg.json");
    char *text = read_file_all(cfgp, 0, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"context_size\":\t96"));
    assert_non_null(strstr(text, "\"prepend_bos\":\tfalse"));
    assert_non_null(strstr(text, "\"model_name\":\t\"models/tiny\""));
    char *imp[] = {"sae-convert", "-q", "--name", "theirs", lens, back, NULL};
    assert_int_equal(cmd_sae_convert(6, imp), 0);
    struct sae_meta r;
    if (sae_file_read(back, &t, &r) != 0) fail_msg("%s", err_msg());
    float *D = malloc(16 * 48 * sizeof *D);
    sae_normalised_decoder(&s, D);
    assert_memory_equal(t.p.W_enc, s.p.W_enc, 16 * 48 * sizeof(float));
    assert_memory_equal(t.p.b_enc, s.p.b_enc, 48 * sizeof(float));
    assert_memory_equal(t.p.W_dec, D, 16 * 48 * sizeof(float));
    assert_memory_equal(t.p.b_dec, s.p.b_dec, 16 * sizeof(float));
    assert_string_equal(r.name, "theirs");
    assert_string_equal(r.type, "imported");
    assert_string_equal(r.hook_name, "blocks.2.hook_resid_pre");
    assert_int_equal(r.layer, 2);
    assert_non_null(strstr(r.config, "\"context\": 96"));
    assert_non_null(strstr(r.config, "\"prepend_bos\": false"));
    /* a resid_post hook survives import and export */
    char *post = path_join(dir, "post"), *post_h5 = path_join(dir, "post.h5");
    char *post2 = path_join(dir, "post2");
    struct saelens_export_opts po = {.model_name = "m", .layer = 2, .hook_name =
                                     "blocks.1.hook_resid_post", .context_size = 32};
    assert_int_equal(saelens_export(&s, post, &po), 0);
    char *imp_post[] = {"sae-convert", "-q", post, post_h5, NULL};
    assert_int_equal(cmd_sae_convert(4, imp_post), 0);
    char *exp_post[] = {"sae-convert", "-q", post_h5, post2, NULL};
    assert_int_equal(cmd_sae_convert(4, exp_post), 0);
    char *post_cfg = path_join(post2, "cfg.json");
    char *post_text = read_file_all(post_cfg, 0, NULL);
    assert_non_null(post_text);
    assert_non_null(strstr(post_text, "\"hook_name\":\t\"blocks.1.hook_resid_post\""));
    assert_non_null(strstr(post_text, "\"hook_layer\":\t1"));
    free(post_text);
    free(post_cfg);
    free(post);
    free(post_h5);
    free(post2);
    /* errors */
    char *bad_out[] = {"sae-convert", "-q", lens, lens, NULL}; /* import needs an .h5 */
    assert_int_equal(cmd_sae_convert(4, bad_out), 2);
    char *missing_path = path_join(dir, "missing.h5");
    char *missing[] = {"sae-convert", "-q", missing_path, lens, NULL};
    assert_int_equal(cmd_sae_convert(4, missing), 1);
    assert_non_null(strstr(err_msg(), missing_path));
    free(missing_path);
    free(D);
    free(text);
    free(cfgp);
    sae_meta_free(&r);
    sae_free(&t);
    sae_free(&s);
    test_rmtree(dir);
    free(dir);
    free(path);
    free(lens);
    free(back);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_then_import_is_bit_exact),
        cmocka_unit_test(test_apply_b_dec_and_decoder_norms_are_folded),
        cmocka_unit_test(test_unsupported_saes_are_refused_by_key),
        cmocka_unit_test(test_sae_file_round_trips_and_checks_format),
        cmocka_unit_test(test_cli_convert_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
