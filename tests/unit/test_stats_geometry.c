/* test_stats_geometry.c: nearest-neighbour cosines against numpy brute force
 * in float64 (tests/ref/stats_ref.py), to 1e-5: within a dictionary (with
 * tiles smaller than the dictionary, partial tiles, unnormalised rows and an
 * exact duplicate direction) and across two dictionaries; the row-range
 * variant agrees with the whole; summaries and histograms match numpy.
 * Indices are compared wherever the best and second-best cosines differ by
 * more than the float32 error (elsewhere either is right).
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "stats/geometry.h"
#include "util/error.h"

#define REF "/usr/bin/python3 tests/ref/stats_ref.py"
#define TOL 1e-5

static cJSON *run_ref(const char *dir, const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, REF " %s 2>%s/ref.err", args, dir);
    char *out = NULL;
    int rc = run_capture(cmd, &out);
    if (rc != 0) printf("reference failed (%d): %s\n", rc, out ? out : "");
    assert_int_equal(rc, 0);
    cJSON *j = cJSON_Parse(out);
    if (!j) printf("unparsable reference output: %s\n", out);
    assert_non_null(j);
    free(out);
    return j;
}

static double num(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v)) fail_msg("reference output lacks number %s", key);
    return v->valuedouble;
}

static const cJSON *arr(const cJSON *j, const char *key, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsArray(v) || (size_t)cJSON_GetArraySize(v) != n)
        fail_msg("reference output lacks an array %s of %zu", key, n);
    return v;
}

/* Gaussian rows with random scales (so normalisation matters), float32. */
static float *random_dict(size_t n, size_t d, unsigned long seed) {
    float *m = malloc(n * d * sizeof *m);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, seed);
    for (size_t i = 0; i < n; i++) {
        double scale = 0.1 + 3.0 * gsl_rng_uniform(r);
        for (size_t k = 0; k < d; k++) m[i * d + k] = (float)(scale * gsl_ran_gaussian(r, 1.0));
    }
    gsl_rng_free(r);
    return m;
}

static char *write_f32(const char *dir, const char *name, const float *v, size_t n) {
    char *p = path_join(dir, name);
    write_file(p, v, n * sizeof *v);
    return p;
}

static void compare_nn(const char *what, const float *cos, const size_t *nn, size_t n, const cJSON *ref) {
    const cJSON *rc = arr(ref, "cos", n), *rn = arr(ref, "nn", n), *rg = arr(ref, "gap", n);
    size_t checked = 0;
    for (size_t i = 0; i < n; i++) {
        double want = cJSON_GetArrayItem(rc, (int)i)->valuedouble;
        if (!(fabs(cos[i] - want) <= TOL))
            fail_msg("%s row %zu: cos %.8f, numpy %.8f", what, i, (double)cos[i], want);
        if (cJSON_GetArrayItem(rg, (int)i)->valuedouble > 10 * TOL) {
            size_t want_nn = (size_t)cJSON_GetArrayItem(rn, (int)i)->valuedouble;
            if (nn[i] != want_nn) fail_msg("%s row %zu: nearest %zu, numpy %zu", what, i, nn[i], want_nn);
            checked++;
        }
    }
    assert_true(checked > n / 2);
}

static void test_nearest_self_matches_numpy(void **state) {
    (void)state;
    if (!have_python_modules("numpy")) skip_because("/usr/bin/python3 lacks numpy");
    enum { N = 300, D = 24 };
    float *m = random_dict(N, D, 3);
    for (size_t k = 0; k < D; k++) m[7 * D + k] = 2.5f * m[3 * D + k]; /* same direction as row 3 */
    char *dir = test_tmpdir("stats_geom");
    char *path = write_f32(dir, "d.f32", m, N * D);
    char args[1024];
    snprintf(args, sizeof args, "geom_self %s %d %d", path, N, D);
    cJSON *ref = run_ref(dir, args);

    float cos[N], cos2[N];
    size_t nn[N], nn2[N];
    struct geom_opts small = {.block_rows = 64, .block_cols = 50}; /* partial tiles both ways */
    assert_int_equal(geom_nearest_self(m, N, D, &small, cos, nn), 0);
    compare_nn("self, 64x50 tiles", cos, nn, N, ref);
    assert_true(cos[3] > 1.0f - 1e-6f && cos[7] > 1.0f - 1e-6f && nn[3] == 7 && nn[7] == 3);

    assert_int_equal(geom_nearest_self(m, N, D, NULL, cos2, nn2), 0); /* one default tile */
    compare_nn("self, default tiles", cos2, nn2, N, ref);

    /* rows [100, 170) alone equal that slice of the whole */
    assert_int_equal(geom_nearest_self_rows(m, N, D, 100, 170, &small, cos2, nn2), 0);
    for (size_t i = 0; i < 70; i++) {
        assert_true(fabsf(cos2[i] - cos[100 + i]) <= 1e-6f);
        assert_int_equal(nn2[i], nn[100 + i]);
    }
    cJSON_Delete(ref);
    test_rmtree(dir);
    free(path);
    free(dir);
    free(m);
}

static void test_nearest_cross_matches_numpy(void **state) {
    (void)state;
    if (!have_python_modules("numpy")) skip_because("/usr/bin/python3 lacks numpy");
    enum { NA = 250, NB = 130, D = 20 };
    float *a = random_dict(NA, D, 4), *b = random_dict(NB, D, 5);
    for (size_t k = 0; k < D; k++) a[11 * D + k] = -0.5f * b[40 * D + k]; /* antipodal pair */
    char *dir = test_tmpdir("stats_geomx");
    char *pa = write_f32(dir, "a.f32", a, NA * D), *pb = write_f32(dir, "b.f32", b, NB * D);
    char args[1024];
    snprintf(args, sizeof args, "geom_cross %s %s %d %d %d", pa, pb, NA, NB, D);
    cJSON *ref = run_ref(dir, args);
    float cos[NA];
    size_t nn[NA];
    struct geom_opts small = {.block_rows = 32, .block_cols = 40};
    assert_int_equal(geom_nearest_cross(a, NA, b, NB, D, &small, cos, nn), 0);
    compare_nn("cross", cos, nn, NA, ref);
    assert_int_equal(geom_nearest_cross(a, NA, b, NB, D, NULL, cos, NULL), 0);
    compare_nn("cross, default tiles", cos, nn, NA, ref);
    cJSON_Delete(ref);
    test_rmtree(dir);
    free(pa);
    free(pb);
    free(dir);
    free(a);
    free(b);
}

static void test_summary_and_histogram_match_numpy(void **state) {
    (void)state;
    if (!have_python_modules("numpy")) skip_because("/usr/bin/python3 lacks numpy");
    enum { N = 1001, BINS = 20 };
    float v[N];
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 9);
    for (size_t i = 0; i < N; i++) v[i] = (float)(gsl_ran_beta(r, 2.0, 5.0) * 1.3 - 0.1); /* some < 0, > 1 */
    gsl_rng_free(r);
    char *dir = test_tmpdir("stats_geoms");
    char *path = write_f32(dir, "v.f32", v, N);
    char args[1024];
    snprintf(args, sizeof args, "summary %s %d 0 1 %d", path, N, BINS);
    cJSON *ref = run_ref(dir, args);
    struct geom_summary s;
    assert_int_equal(geom_summarize(v, N, &s), 0);
    assert_int_equal(s.n, N);
    const char *keys[] = {"mean", "sd", "min", "max", "q05", "q25", "median", "q75", "q95"};
    double got[] = {s.mean, s.sd, s.min, s.max, s.q05, s.q25, s.median, s.q75, s.q95};
    for (int k = 0; k < 9; k++)
        if (!(fabs(got[k] - num(ref, keys[k])) <= 1e-9))
            fail_msg("summary %s: %.12g, numpy %.12g", keys[k], got[k], num(ref, keys[k]));
    size_t counts[BINS], below, above;
    assert_int_equal(geom_histogram(v, N, 0.0, 1.0, BINS, counts, &below, &above), 0);
    const cJSON *rc = arr(ref, "counts", BINS);
    for (int k = 0; k < BINS; k++) assert_int_equal(counts[k], (size_t)cJSON_GetArrayItem(rc, k)->valuedouble);
    assert_int_equal(below, (size_t)num(ref, "below"));
    assert_int_equal(above, (size_t)num(ref, "above"));
    assert_true(below > 0 && above > 0);
    /* values outside the range with nowhere to count them: an error, not a silent drop */
    assert_int_equal(geom_histogram(v, N, 0.0, 1.0, BINS, counts, NULL, NULL), -1);
    assert_non_null(strstr(err_msg(), "outside"));
    cJSON_Delete(ref);
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_bad_input_is_an_error(void **state) {
    (void)state;
    float m[3 * 4] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0};
    float cos[3];
    assert_int_equal(geom_nearest_self(m, 3, 4, NULL, cos, NULL), -1);
    assert_non_null(strstr(err_msg(), "row 1"));
    assert_int_equal(geom_nearest_self(m, 1, 4, NULL, cos, NULL), -1);
    assert_non_null(strstr(err_msg(), "at least 2"));
    m[5] = NAN;
    assert_int_equal(geom_nearest_cross(m, 3, m, 3, 4, NULL, cos, NULL), -1);
    assert_non_null(strstr(err_msg(), "row 1"));
    m[4] = 3.0f;
    m[5] = 4.0f; /* row 1 = (3, 4, 0, 0): cos with row 0 = 0.6 */
    size_t nn[3];
    assert_int_equal(geom_nearest_self(m, 3, 4, NULL, cos, nn), 0);
    assert_true(fabsf(cos[0] - 0.6f) < 1e-6f && nn[0] == 1);
    assert_true(fabsf(cos[2] - 0.8f) < 1e-6f && nn[2] == 1);
    float nanv[2] = {0.5f, NAN};
    struct geom_summary s;
    assert_int_equal(geom_summarize(nanv, 2, &s), -1);
    size_t counts[4];
    assert_int_equal(geom_histogram(nanv, 2, -1, 1, 4, counts, NULL, NULL), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nearest_self_matches_numpy),
        cmocka_unit_test(test_nearest_cross_matches_numpy),
        cmocka_unit_test(test_summary_and_histogram_match_numpy),
        cmocka_unit_test(test_bad_input_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
