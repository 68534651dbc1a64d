/* test_interp_score.c: feature scores against an independent numpy reference
 * (tests/ref/interp_score_ref.py) on fixed vectors, and the rules around
 * undefined correlations: a constant vector is "no score", never 0. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "interp/score.h"
#include "io/atomic.h"

static void test_exact_cases_and_undefined_ones(void **state) {
    (void)state;
    double t[] = {0, 1, 2, 3, 4}, up[] = {1, 3, 5, 7, 9}, down[] = {9, 7, 5, 3, 1};
    double flat[] = {2, 2, 2, 2, 2}, bad[] = {0, 1, NAN, 3, 4};
    double r;
    assert_int_equal(score_pearson(t, up, 5, &r), CORR_OK);
    assert_true(fabs(r - 1) < 1e-15);
    assert_int_equal(score_pearson(t, down, 5, &r), CORR_OK);
    assert_true(fabs(r + 1) < 1e-15);
    assert_int_equal(score_pearson(t, flat, 5, &r), CORR_CONST_SIM);
    assert_true(isnan(r)); /* never 0 */
    assert_int_equal(score_pearson(flat, t, 5, &r), CORR_CONST_TRUE);
    assert_int_equal(score_pearson(t, bad, 5, &r), CORR_NOT_FINITE);
    assert_int_equal(score_pearson(t, up, 0, &r), CORR_EMPTY);
    assert_string_equal(corr_status_name(CORR_CONST_SIM), "constant_simulation");
    /* 0.1 * 3 / 3 style values: constancy is exact, not a tiny variance */
    double tiny[] = {0.1, 0.1, 0.1};
    assert_int_equal(score_pearson(t, tiny, 3, &r), CORR_CONST_SIM);
}

static double lcg(unsigned long long *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0;
}

struct ref_case {
    int n_windows;
    int len[8];
    double *truth, *sim;
};

/* Fixed cases: correlated, anti-correlated, zero windows inside, constant
 * simulation, constant truth, a large offset, one-token windows. */
static int make_cases(struct ref_case *c) {
    unsigned long long s = 42;
    int k = 0;
    for (int kind = 0; kind < 7; kind++, k++) {
        struct ref_case *x = &c[k];
        x->n_windows = kind == 6 ? 5 : 3;
        int total = 0;
        for (int w = 0; w < x->n_windows; w++) total += x->len[w] = kind == 6 ? 1 : 16 + 8 * w;
        x->truth = calloc((size_t)total, sizeof *x->truth);
        x->sim = calloc((size_t)total, sizeof *x->sim);
        for (int i = 0; i < total; i++) {
            double a = lcg(&s) < 0.3 ? 5 * lcg(&s) : 0; /* sparse, like a feature */
            if (kind == 2 && i < x->len[0]) a = 0;      /* a silent window */
            if (kind == 4) a = 1.5;
            if (kind == 6) a = i % 3; /* five one-token windows, not constant overall */
            x->truth[i] = kind == 5 ? a + 1e6 : a; /* a large offset: cancellation */
            double p = round(2 * a + 3 * lcg(&s));
            if (p > 10) p = 10;
            x->sim[i] = kind == 1 ? 10 - p : kind == 3 ? 0 : p;
        }
    }
    return k;
}

static cJSON *num_array(const double *v, int n) { return cJSON_CreateDoubleArray(v, n); }

static void test_matches_numpy_reference(void **state) {
    (void)state;
    if (!have_python_modules("numpy")) skip_because("/usr/bin/python3 with numpy is absent");
    struct ref_case cases[8];
    memset(cases, 0, sizeof cases);
    int n = make_cases(cases);
    char *dir = test_tmpdir("score");
    char *in = path_join(dir, "in.json"), *out = path_join(dir, "out.json");
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "cases");
    for (int k = 0; k < n; k++) {
        int total = 0;
        for (int w = 0; w < cases[k].n_windows; w++) total += cases[k].len[w];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "truth", num_array(cases[k].truth, total));
        cJSON_AddItemToObject(o, "sim", num_array(cases[k].sim, total));
        cJSON_AddItemToObject(o, "len", cJSON_CreateIntArray(cases[k].len, cases[k].n_windows));
        cJSON_AddItemToArray(arr, o);
    }
    char *txt = cJSON_PrintUnformatted(root);
    write_file(in, txt, strlen(txt));
    free(txt);
    cJSON_Delete(root);
    char cmd[1024], *log = NULL;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/interp_score_ref.py %s %s", in, out);
    if (run_capture(cmd, &log) != 0) fail_msg("reference failed: %s", log ? log : "");
    free(log);
    size_t len;
    char *res = read_file_all(out, 0, &len);
    cJSON *ref = cJSON_Parse(res);
    free(res);
    const cJSON *rc = cJSON_GetObjectItem(ref, "cases");
    int saw_no_score = 0, saw_null_window = 0;
    for (int k = 0; k < n; k++) {
        const cJSON *want = cJSON_GetArrayItem(rc, k);
        struct feature_score fs;
        assert_int_equal(score_feature(cases[k].truth, cases[k].sim, cases[k].len,
                                       cases[k].n_windows, &fs), 0);
        assert_string_equal(corr_status_name(fs.status), cJSON_GetObjectItem(want, "status")->valuestring);
        const cJSON *r = cJSON_GetObjectItem(want, "r");
        if (cJSON_IsNull(r)) {
            assert_true(isnan(fs.r) && isnan(fs.r2));
            saw_no_score++;
        } else {
            if (fabs(fs.r - r->valuedouble) > 1e-12) fail_msg("case %d: r %.17g, numpy %.17g", k, fs.r, r->valuedouble);
            assert_true(fabs(fs.r2 - r->valuedouble * r->valuedouble) < 1e-12);
        }
        const cJSON *wr = cJSON_GetObjectItem(want, "win_r");
        for (int w = 0; w < cases[k].n_windows; w++) {
            const cJSON *x = cJSON_GetArrayItem(wr, w);
            if (cJSON_IsNull(x)) {
                assert_true(isnan(fs.win_r[w]));
                assert_int_not_equal(fs.win_status[w], CORR_OK);
                saw_null_window++;
            } else if (fabs(fs.win_r[w] - x->valuedouble) > 1e-12) {
                fail_msg("case %d window %d: r %.17g, numpy %.17g", k, w, fs.win_r[w], x->valuedouble);
            }
        }
        feature_score_free(&fs);
        free(cases[k].truth);
        free(cases[k].sim);
    }
    assert_int_equal(saw_no_score, 2);      /* constant simulation, constant truth */
    assert_true(saw_null_window >= 5);      /* the silent window and one-token windows */
    cJSON_Delete(ref);
    test_rmtree(dir);
    free(in);
    free(out);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_cases_and_undefined_ones),
        cmocka_unit_test(test_matches_numpy_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
