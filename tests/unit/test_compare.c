/* test_compare.c: the nightly comparison flags exactly what it promises: a run
 * that did not finish, a failure rate over the threshold, a mean score outside
 * the other run's CI, a vanished SAE; and stays quiet for identical runs. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "pipeline/compare.h"

static void write_run(const char *dir, const char *status, double mean_a, double lo_a, double hi_a,
                      int failed_a, bool with_b) {
    char p[4096], text[8192];
    snprintf(p, sizeof p, "%s/report", dir);
    assert_int_equal(mkdir_p(p), 0);
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    snprintf(text, sizeof text, "{\"status\": \"%s\", \"llm\": {\"cost_usd\": 0.25}}", status);
    write_file(p, text, strlen(text));
    snprintf(p, sizeof p, "%s/report/summary.json", dir);
    snprintf(text, sizeof text,
             "{\"schema\": \"autointerp-report-summary\", \"schema_version\": 1, \"saes\": ["
             "{\"name\": \"A\", \"scores\": {\"n_sampled\": 100, \"n_failed\": %d, \"mean\": %g,"
             " \"ci\": {\"bca\": [%g, %g]}}}%s]}",
             failed_a, mean_a, lo_a, hi_a,
             with_b ? ", {\"name\": \"B\", \"scores\": {\"n_sampled\": 100, \"n_failed\": 0, "
                      "\"mean\": 0.3, \"ci\": {\"bca\": [0.25, 0.35]}}}"
                    : "");
    write_file(p, text, strlen(text));
}

static int flags(const char *prev, const char *cur, double rate) {
    struct compare_result r;
    FILE *devnull = fopen("/dev/null", "w");
    int rc = compare_runs(prev, cur, rate, devnull, &r);
    fclose(devnull);
    assert_int_equal(rc, 0);
    return r.n_flags;
}

static void test_compare_flags(void **state) {
    (void)state;
    char *dir = test_tmpdir("cmp");
    char *a = path_join(dir, "a"), *b = path_join(dir, "b");
    write_run(a, "ok", 0.40, 0.35, 0.45, 2, true);
    write_run(b, "ok", 0.40, 0.35, 0.45, 2, true);
    assert_int_equal(flags(a, b, 0.1), 0);    /* identical */
    assert_int_equal(flags(NULL, b, 0.1), 0); /* first night */
    write_run(b, "ok", 0.43, 0.38, 0.48, 2, true);
    assert_int_equal(flags(a, b, 0.1), 0);    /* moved, but within both CIs */
    write_run(b, "ok", 0.50, 0.46, 0.54, 2, true);
    assert_int_equal(flags(a, b, 0.1), 1);    /* beyond the old CI */
    write_run(b, "ok", 0.40, 0.35, 0.45, 20, true);
    assert_int_equal(flags(a, b, 0.1), 1);    /* 20% failed */
    assert_int_equal(flags(a, b, 0.25), 0);
    write_run(b, "ok", 0.40, 0.35, 0.45, 2, false);
    assert_int_equal(flags(a, b, 0.1), 1);    /* B vanished */
    write_run(b, "failed", 0.40, 0.35, 0.45, 2, true);
    assert_int_equal(flags(a, b, 0.1), 1);    /* the run did not finish */
    /* a missing summary is an error naming the file */
    char *c = path_join(dir, "c");
    assert_int_equal(mkdir_p(c), 0);
    struct compare_result r;
    FILE *devnull = fopen("/dev/null", "w");
    assert_int_equal(compare_runs(a, c, 0.1, devnull, &r), -1);
    fclose(devnull);
    test_rmtree(dir);
    free(a);
    free(b);
    free(c);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_compare_flags)};
    return cmocka_run_group_tests_name("compare", tests, NULL, NULL);
}
