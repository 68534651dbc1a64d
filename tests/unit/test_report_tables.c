/* test_report_tables.c: the numbers in summary.json, the CSV tables and report.md
 * of a fixture experiment, checked against the stats library called directly
 * and against an independent numpy/scipy reference (tests/ref/report_ref.py). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <gsl/gsl_errno.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "report/analysis.h"
#include "report/fixture.h"
#include "report/inputs.h"
#include "report/report.h"
#include "sae/sae.h"
#include "sae/sae_io.h"
#include "stats/bootstrap.h"
#include "stats/geometry.h"
#include "util/error.h"

#define B_TEST 4000

struct run {
    char *root, *exp_dir, *summary_path;
    cJSON *summary;
};

static void run_fixture_b(struct run *r, const struct report_fixture *fx_in, unsigned long seed,
                          size_t B) {
    r->root = test_tmpdir("report");
    struct report_fixture fx = *fx_in;
    fx.results_dir = r->root;
    fx.experiment = "exp";
    assert_true(report_fixture_write(&fx) > 0);
    struct report_settings s;
    report_settings_default(&s);
    s.results_dir = r->root;
    s.experiment = "exp";
    s.resamples = B;
    s.seed = seed;
    struct report_outcome out;
    if (report_run(&s, &out) != 0) fail_msg("report_run: %s", err_msg());
    r->exp_dir = path_join(r->root, "exp");
    r->summary_path = path_join(out.out_dir, "summary.json");
    size_t n;
    char *text = read_file_all(r->summary_path, 0, &n);
    assert_non_null(text);
    r->summary = cJSON_Parse(text);
    free(text);
    assert_non_null(r->summary);
}

static void run_fixture(struct run *r, const struct report_fixture *fx, unsigned long seed) {
    run_fixture_b(r, fx, seed, B_TEST);
}

static void run_free(struct run *r) {
    cJSON_Delete(r->summary);
    test_rmtree(r->root);
    free(r->root);
    free(r->exp_dir);
    free(r->summary_path);
}

static const cJSON *get(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) fail_msg("summary.json: no key '%s'", key);
    return v;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = get(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("summary.json: '%s' is not a number", key);
    return v->valuedouble;
}

static double arr(const cJSON *o, const char *key, int i) {
    const cJSON *v = cJSON_GetArrayItem(get(o, key), i);
    if (!cJSON_IsNumber(v)) fail_msg("summary.json: '%s'[%d] is not a number", key, i);
    return v->valuedouble;
}

#define assert_close(a, b) assert_true(fabs((a) - (b)) <= 1e-14 * fmax(1, fabs(b)))

/* The scored values of one SAE's score file, through the reader. */
static double *scores_of(const char *exp_dir, const char *name, size_t *n) {
    char path[2048];
    snprintf(path, sizeof path, "%s/scores/%s.jsonl", exp_dir, name);
    struct score_set set;
    assert_int_equal(score_set_read(path, &set), 0);
    double *x = malloc(sizeof(double) * (size_t)set.n);
    *n = 0;
    for (int i = 0; i < set.n; i++)
        if (set.f[i].status == FEAT_SCORED) x[(*n)++] = set.f[i].score;
    score_set_free(&set);
    return x;
}

static void test_summary_matches_stats_library(void **state) {
    (void)state;
    struct run r;
    struct report_fixture fx = {0};
    run_fixture(&r, &fx, 7);
    assert_string_equal(get(r.summary, "schema")->valuestring, "autointerp-report-summary");
    assert_int_equal((int)num(r.summary, "schema_version"), 1);
    assert_int_equal((int)num(get(r.summary, "bootstrap"), "resamples"), B_TEST);
    assert_int_equal((int)num(get(r.summary, "bootstrap"), "seed"), 7);
    const cJSON *saes = get(r.summary, "saes"), *e;
    assert_int_equal(cJSON_GetArraySize(saes), 6);
    cJSON_ArrayForEach(e, saes) {
        const char *name = get(e, "name")->valuestring;
        const cJSON *sc = get(e, "scores");
        /* fixture rule: of 200 features, k % 17 == 5 fail (12), k % 23 == 11 no score (9);
         * feature 0's failed line is superseded by its scored line */
        assert_int_equal((int)num(sc, "n_sampled"), 200);
        assert_int_equal((int)num(sc, "n_scored"), 179);
        assert_int_equal((int)num(sc, "n_failed"), 12);
        assert_int_equal((int)num(sc, "n_no_score"), 9);
        assert_int_equal((int)num(get(sc, "failed_reasons"), "wrong_count"), 12);
        assert_null(cJSON_GetObjectItem(get(sc, "failed_reasons"), "http_5xx"));
        assert_int_equal((int)num(get(sc, "no_score_reasons"), "constant_simulation"), 9);
        size_t n;
        double *x = scores_of(r.exp_dir, name, &n);
        assert_int_equal(n, 179);
        struct stats_desc d;
        assert_int_equal(stats_describe(x, n, &d), 0);
        assert_close(num(sc, "mean"), d.mean);
        assert_close(num(sc, "median"), d.median);
        assert_close(num(sc, "sd"), d.sd);
        struct boot_opts o = {.n_resamples = B_TEST, .seed = report_derived_seed(7, name)};
        struct boot_ci ci;
        assert_int_equal(boot_mean_ci(x, n, &o, &ci), 0);
        const cJSON *c = get(sc, "ci");
        assert_int_equal((unsigned long)num(c, "seed"), o.seed);
        assert_close(arr(c, "percentile", 0), ci.pct_lo);
        assert_close(arr(c, "percentile", 1), ci.pct_hi);
        assert_close(arr(c, "bca", 0), ci.bca_lo);
        assert_close(arr(c, "bca", 1), ci.bca_hi);
        assert_close(num(c, "se"), ci.se);
        size_t total = 0;
        const cJSON *h;
        cJSON_ArrayForEach(h, get(get(sc, "histogram"), "counts")) total += (size_t)h->valuedouble;
        assert_int_equal(total, 179);
        free(x);
    }
    run_free(&r);
}

static void test_pair_differences_match_stats_library(void **state) {
    (void)state;
    struct run r;
    struct report_fixture fx = {0};
    run_fixture(&r, &fx, 3);
    const cJSON *pairs = get(r.summary, "pairs"), *p;
    assert_int_equal(cJSON_GetArraySize(pairs), 6); /* 3 type pairs x (L0, CE) */
    cJSON_ArrayForEach(p, pairs) {
        const char *a = get(p, "a")->valuestring, *b = get(p, "b")->valuestring;
        size_t na, nb;
        double *xa = scores_of(r.exp_dir, a, &na), *xb = scores_of(r.exp_dir, b, &nb);
        char key[256];
        snprintf(key, sizeof key, "%s|%s", a, b);
        struct boot_opts o = {.n_resamples = B_TEST, .seed = report_derived_seed(3, key)};
        struct boot_compare cmp;
        assert_int_equal(boot_compare_means(xb, nb, xa, na, &o, &cmp), 0);
        const cJSON *d = get(p, "difference");
        assert_close(num(d, "estimate"), cmp.diff.estimate);
        assert_close(arr(d, "percentile", 0), cmp.diff.pct_lo);
        assert_close(arr(d, "percentile", 1), cmp.diff.pct_hi);
        assert_close(arr(d, "bca", 0), cmp.diff.bca_lo);
        assert_close(arr(d, "bca", 1), cmp.diff.bca_hi);
        assert_close(num(d, "p_value"), cmp.p_value);
        assert_close(num(p, "mean_b") - num(p, "mean_a"), cmp.diff.estimate);
        free(xa);
        free(xb);
    }
    /* the fixture's closest-in-L0 local/e2e_ds pair: L0 30 vs 40 (x1.1) */
    const cJSON *p2 = cJSON_GetArrayItem(pairs, 2);
    assert_string_equal(get(p2, "criterion")->valuestring, "l0");
    assert_string_equal(get(p2, "a")->valuestring, "L1-local-lam4-s0");
    assert_string_equal(get(p2, "b")->valuestring, "L1-e2e_ds-lam1-s0");
    assert_close(num(p2, "gap"), fabs(log(40.0 / 30.0)));
    run_free(&r);
}

static char *slurp(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    size_t n;
    char *t = read_file_all(p, 0, &n);
    if (!t) fail_msg("%s: %s", p, err_msg());
    free(p);
    return t;
}

static int count_lines(const char *t) {
    int n = 0;
    for (; *t; t++)
        n += *t == '\n';
    return n;
}

static void test_csv_and_markdown_tables(void **state) {
    (void)state;
    struct run r;
    struct report_fixture fx = {0};
    run_fixture(&r, &fx, 0);
    char *rep = path_join(r.exp_dir, "report");
    char *sweep = slurp(rep, "tables/sweep.csv"), *scores = slurp(rep, "tables/scores.csv");
    char *pairs = slurp(rep, "tables/pairs.csv"), *fail = slurp(rep, "tables/failures.csv");
    char *md = slurp(rep, "report.md");
    assert_int_equal(count_lines(sweep), 7);
    assert_int_equal(count_lines(scores), 7);
    assert_int_equal(count_lines(pairs), 7);
    assert_int_equal(count_lines(fail),
                     13); /* 6 SAEs x (wrong_count, constant_simulation) + header */
    assert_non_null(strstr(sweep, "name,type,layer,lambda,seed,l0,alive,alive_fraction,d_sae,"));
    assert_non_null(strstr(sweep, "\"L1-local-lam4-s0\",\"local\",1,4,0,33,"));
    assert_non_null(strstr(fail, "\"L1-e2e-lam0.1-s0\",\"failed\",\"wrong_count\",12\n"));
    assert_non_null(strstr(scores, "\"L1-local-lam1-s0\",\"local\",1,\"ok\",200,200,179,9,12,"));
    /* Table 2/3 and Table 4 forms */
    assert_non_null(strstr(md, "| SAE | type | layer | λ | L0 | alive | alive % | CE increase |"));
    assert_non_null(strstr(md, "| L1-local-lam4-s0 | local | 1 | 4 | 33.0 | 61 | 95.3 | 0.2200 |"));
    assert_non_null(strstr(md, "| layer | matched on | A | B | L0 A | L0 B |"));
    assert_non_null(strstr(md, "95% CI (BCa)"));
    assert_non_null(strstr(md, "failed wrong\\_count × 12"));
    assert_non_null(strstr(md, "](plots/pareto_L1.svg)"));
    assert_null(strstr(md, "not yet computed"));
    free(sweep), free(scores), free(pairs), free(fail), free(md), free(rep);
    run_free(&r);
}

static void test_matches_numpy_scipy_reference(void **state) {
    (void)state;
    if (!have_python_modules("numpy scipy")) skip_because("/usr/bin/python3 lacks numpy or scipy");
    struct run r;
    /* B = 20,000: the Monte Carlo spread of an endpoint is then ~0.03 SE, well
     * inside the reference's 0.15 SE tolerance */
    struct report_fixture fx = {.n_seeds = 2, .n_features = 120, .skip_scores_of = 1};
    run_fixture_b(&r, &fx, 11, 20000);
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/report_ref.py %s %s", r.exp_dir,
             r.summary_path);
    int rc = run_capture(cmd, &out);
    if (rc != 0) fail_msg("report_ref.py: %s", out ? out : "(no output)");
    assert_non_null(strstr(out, "0 problem(s)"));
    free(out);
    run_free(&r);
}

/* Geometry entries equal what stats/geometry.h gives on the decoders directly. */
static void test_geometry_matches_geometry_library(void **state) {
    (void)state;
    struct run r;
    struct report_fixture fx = {.n_seeds = 2, .sae_files = true, .n_features = 30};
    run_fixture(&r, &fx, 0);
    const cJSON *g = get(r.summary, "geometry"), *e;
    assert_string_equal(get(g, "status")->valuestring, "ok");
    int n_self = 0, n_seed = 0, n_type = 0;
    cJSON_ArrayForEach(e, get(g, "entries")) {
        const char *kind = get(e, "kind")->valuestring, *name = get(e, "sae")->valuestring;
        if (strcmp(kind, "cross_type") == 0) n_type++;
        if (strcmp(kind, "cross_seed") == 0) n_seed++;
        if (strcmp(kind, "self") != 0) continue;
        n_self++;
        char path[2048];
        snprintf(path, sizeof path, "%s/saes/%s.h5", r.exp_dir, name);
        struct sae s;
        assert_int_equal(sae_file_read(path, &s, NULL), 0);
        float *cos = malloc(sizeof(float) * (size_t)s.d_sae);
        assert_int_equal(
            geom_nearest_self(s.p.W_dec, (size_t)s.d_sae, (size_t)s.d_in, NULL, cos, NULL), 0);
        struct geom_summary sum;
        assert_int_equal(geom_summarize(cos, (size_t)s.d_sae, &sum), 0);
        assert_int_equal((int)num(e, "n"), s.d_sae);
        assert_true(fabs(num(e, "mean") - sum.mean) < 1e-6);
        assert_true(fabs(num(e, "median") - sum.median) < 1e-6);
        assert_true(fabs(num(e, "q95") - sum.q95) < 1e-6);
        if (strstr(name, "local")) assert_true(num(e, "max") > 0.999); /* planted near-duplicates */
        free(cos);
        sae_free(&s);
    }
    assert_int_equal(n_self, 12);
    /* 6 (type, lambda) groups with seeds 0 and 1, both directions */
    assert_int_equal(n_seed, 12);
    /* per seed: 3 type pairs x 2 x 2 lambdas = 12 cross-type pairs, both directions */
    assert_int_equal(n_type, 48);
    run_free(&r);
}

int main(void) {
    h5_init();
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_summary_matches_stats_library),
        cmocka_unit_test(test_pair_differences_match_stats_library),
        cmocka_unit_test(test_csv_and_markdown_tables),
        cmocka_unit_test(test_matches_numpy_scipy_reference),
        cmocka_unit_test(test_geometry_matches_geometry_library),
    };
    return cmocka_run_group_tests_name("report_tables", tests, NULL, NULL);
}
