/* test_stats_bootstrap.c: the bootstrap engine against scipy.stats.bootstrap
 * and numpy (tests/ref/stats_ref.py), plus properties that need no reference:
 * determinism, thread-count independence, coverage, p-values uniform under a
 * simulated null, and the documented handling of degenerate input.
 *
 * Tolerances for comparisons with scipy (independent random streams). With B
 * resamples, an endpoint at quantile q of a bootstrap distribution that is
 * roughly normal with sd s has Monte-Carlo sd sqrt(q(1-q)/B) / f(x_q) with
 * f(x_q) = phi(z_q)/s: for q = 0.025, B = 1e5 that is 0.0085 s per run and
 * 0.012 s for the difference of two runs, so 5 sigma = 0.06 s (percentile).
 * BCa endpoints also carry the noise of z0 (sd 0.004, moving the level by
 * about 2 phi(1.96) 0.004 = 5e-4, i.e. 0.008 s): 5 sigma of the difference is
 * about 0.085 s. s is the bootstrap standard error. The data are skewed
 * enough that BCa and percentile endpoints differ by more than twice the
 * tolerance (checked), so a wrong bias correction or acceleration fails. The
 * acceleration is deterministic and compared to an explicit leave-one-out
 * jackknife to 1e-9; interval arithmetic on a given bootstrap distribution
 * (ties included) is compared to numpy to 1e-12.
 */
#include "testutil.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "stats/bootstrap.h"
#include "util/error.h"

#define REF "/usr/bin/python3 tests/ref/stats_ref.py"
#define B_REF 100000

static void write_values(const char *path, const double *x, size_t n) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++) fprintf(f, "%.17g\n", x[i]);
    fclose(f);
}

/* Run the reference with `args`, parse its JSON; the caller frees. */
static cJSON *run_ref(const char *dir, const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, REF " %s 2>%s/ref.err", args, dir);
    char *out = NULL;
    int rc = run_capture(cmd, &out);
    if (rc != 0) {
        printf("reference failed (%d): %s\n", rc, out ? out : "");
        snprintf(cmd, sizeof cmd, "cat %s/ref.err", dir);
        if (system(cmd)) {}
    }
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

static void near(const char *what, double got, double want, double tol) {
    if (!(fabs(got - want) <= tol))
        fail_msg("%s: got %.10g, reference %.10g, |diff| %.3g > tol %.3g", what, got, want,
                 fabs(got - want), tol);
}

/* Skewed scores: 0.12 * lognormal(0, 1), mean ~0.2, skewness ~6. */
static void skewed(double *x, size_t n, unsigned long seed, double scale, double shift) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, seed);
    for (size_t i = 0; i < n; i++) x[i] = shift + scale * gsl_ran_lognormal(r, 0.0, 1.0);
    gsl_rng_free(r);
}

static void normal(double *x, size_t n, gsl_rng *r, double mu, double sd) {
    for (size_t i = 0; i < n; i++) x[i] = mu + gsl_ran_gaussian(r, sd);
}

#define SKIP_UNLESS_SCIPY()                                                                    \
    do {                                                                                       \
        if (!have_python_modules("numpy scipy"))                                               \
            skip_because("/usr/bin/python3 lacks numpy or scipy");                             \
    } while (0)

static void check_cis(const char *what, const struct boot_ci *c, const cJSON *ref) {
    double s = num(ref, "se");
    double tol_pct = 0.06 * s, tol_bca = 0.085 * s;
    char label[128];
#define CHECK(field, tol)                                                                      \
    snprintf(label, sizeof label, "%s %s", what, #field);                                      \
    near(label, c->field, num(ref, #field), tol)
    printf("%s: percentile [%.5f, %.5f] vs scipy [%.5f, %.5f]; BCa [%.5f, %.5f] vs scipy "
           "[%.5f, %.5f]; se %.5f; tolerances %.5f / %.5f\n",
           what, c->pct_lo, c->pct_hi, num(ref, "pct_lo"), num(ref, "pct_hi"), c->bca_lo, c->bca_hi,
           num(ref, "bca_lo"), num(ref, "bca_hi"), s, tol_pct, tol_bca);
    CHECK(estimate, 1e-12);
    CHECK(pct_lo, tol_pct);
    CHECK(pct_hi, tol_pct);
    CHECK(bca_lo, tol_bca);
    CHECK(bca_hi, tol_bca);
    CHECK(se, 0.02 * s);
    CHECK(z0, 0.03);
    CHECK(accel, 1e-9);
#undef CHECK
    /* the data must make BCa distinguishable from percentile at this tolerance */
    double shift = fabs(num(ref, "bca_lo") - num(ref, "pct_lo")) + fabs(num(ref, "bca_hi") - num(ref, "pct_hi"));
    if (!(shift > 2 * tol_bca)) fail_msg("%s: BCa and percentile too close to tell apart (%g)", what, shift);
    assert_int_equal(c->degenerate, 0);
}

static void test_one_sample_matches_scipy(void **state) {
    (void)state;
    SKIP_UNLESS_SCIPY();
    char *dir = test_tmpdir("stats_boot1");
    char *path = path_join(dir, "x.txt");
    double x[200];
    skewed(x, 200, 11, 0.12, 0.0);
    write_values(path, x, 200);

    struct stats_desc d;
    assert_int_equal(stats_describe(x, 200, &d), 0);
    struct boot_opts o = {.n_resamples = B_REF, .level = 0.95, .seed = 2024};
    struct boot_ci c;
    assert_int_equal(boot_mean_ci(x, 200, &o, &c), 0);

    char args[1024];
    snprintf(args, sizeof args, "boot1 %s %d 0.95 7", path, B_REF);
    cJSON *ref = run_ref(dir, args);
    near("mean", d.mean, num(ref, "mean"), 1e-13);
    near("median", d.median, num(ref, "median"), 1e-15);
    near("sd", d.sd, num(ref, "sd"), 1e-13);
    check_cis("one-sample", &c, ref);
    assert_int_equal(c.n_resamples, B_REF);
    assert_int_equal(c.seed, 2024);
    cJSON_Delete(ref);
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_difference_matches_scipy_and_numpy_pvalue(void **state) {
    (void)state;
    SKIP_UNLESS_SCIPY();
    char *dir = test_tmpdir("stats_boot2");
    char *pa = path_join(dir, "a.txt"), *pb = path_join(dir, "b.txt");
    double a[180], b[200];
    skewed(a, 180, 21, 0.12, 0.02);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 22);
    normal(b, 200, r, 0.15, 0.1);
    gsl_rng_free(r);
    write_values(pa, a, 180);
    write_values(pb, b, 200);

    struct boot_opts o = {.n_resamples = B_REF, .level = 0.95, .seed = 99};
    struct boot_compare cmp;
    assert_int_equal(boot_compare_means(a, 180, b, 200, &o, &cmp), 0);
    assert_int_equal(cmp.p_seed, 99 ^ BOOT_PVALUE_SEED_XOR);

    char args[1024];
    snprintf(args, sizeof args, "boot2 %s %s %d 0.95 5", pa, pb, B_REF);
    cJSON *ref = run_ref(dir, args);
    check_cis("difference", &cmp.diff, ref);
    double p = num(ref, "p_value");
    /* two independent binomial estimates of p: 5 sigma of their difference */
    double tol = 5.0 * sqrt(2.0 * p * (1.0 - p) / B_REF) + 2.0 / B_REF;
    printf("pooled p-value %.5f vs numpy %.5f (tolerance %.5f)\n", cmp.p_value, p, tol);
    near("pooled p-value", cmp.p_value, p, tol);
    if (!(p > 0.001 && p < 0.2)) fail_msg("fixture p-value %g is not in the informative range", p);
    cJSON_Delete(ref);
    test_rmtree(dir);
    free(pa);
    free(pb);
    free(dir);
}

static void test_intervals_from_given_distribution_match_numpy(void **state) {
    (void)state;
    SKIP_UNLESS_SCIPY();
    char *dir = test_tmpdir("stats_iv");
    char *path = path_join(dir, "theta.txt");
    enum { B = 10001 };
    double *theta = malloc(B * sizeof *theta);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 5);
    /* skewed, rounded to 1e-3 so that many values tie, estimate on a tie */
    for (size_t i = 0; i < B; i++) theta[i] = round(1000.0 * gsl_ran_gamma(r, 4.0, 0.05)) / 1000.0;
    gsl_rng_free(r);
    double estimate = theta[17];
    write_values(path, theta, B);
    struct boot_ci c;
    memset(&c, 0, sizeof c);
    assert_int_equal(boot_intervals(theta, B, estimate, 0.07, 0.9, &c), 0);
    char args[1024];
    snprintf(args, sizeof args, "intervals %s %.17g 0.07 0.9", path, estimate);
    cJSON *ref = run_ref(dir, args);
    near("pct_lo", c.pct_lo, num(ref, "pct_lo"), 1e-12);
    near("pct_hi", c.pct_hi, num(ref, "pct_hi"), 1e-12);
    near("bca_lo", c.bca_lo, num(ref, "bca_lo"), 1e-12);
    near("bca_hi", c.bca_hi, num(ref, "bca_hi"), 1e-12);
    near("z0", c.z0, num(ref, "z0"), 1e-12);
    near("se", c.se, num(ref, "se"), 1e-12);
    cJSON_Delete(ref);
    free(theta);
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_same_seed_same_result_any_thread_count(void **state) {
    (void)state;
    double x[57];
    skewed(x, 57, 3, 1.0, 0.0);
    struct boot_ci c1, c2, c3;
    struct boot_opts o = {.n_resamples = 3 * BOOT_CHUNK + 17, .seed = 8, .n_threads = 1};
    assert_int_equal(boot_mean_ci(x, 57, &o, &c1), 0);
    o.n_threads = 3;
    assert_int_equal(boot_mean_ci(x, 57, &o, &c2), 0);
    assert_memory_equal(&c1.pct_lo, &c2.pct_lo, 6 * sizeof(double)); /* pct, bca, z0, accel */
    assert_true(c1.se == c2.se);
    o.seed = 9;
    assert_int_equal(boot_mean_ci(x, 57, &o, &c3), 0);
    assert_true(c3.pct_lo != c1.pct_lo || c3.pct_hi != c1.pct_hi);
    /* defaults are applied and echoed */
    assert_int_equal(boot_mean_ci(x, 57, NULL, &c3), 0);
    assert_int_equal(c3.n_resamples, BOOT_DEFAULT_RESAMPLES);
    assert_true(c3.level == BOOT_DEFAULT_LEVEL);
    assert_true(c3.bca_lo < c3.estimate && c3.estimate < c3.bca_hi);
}

/* The index sampler (several indices per generator word, see bootstrap.c) is
 * uniform and its indices independent: the bootstrap SE of the mean of
 * 0, 1, ..., n-1 must be sd_pop / sqrt(n) for sizes that use 1 to 64 digits
 * per word. B = 20,000: the SE estimate has a relative sd of about 0.5%, so a
 * 3% tolerance is 6 sigma; correlated or biased digits move it much more. */
static void test_resampling_is_uniform(void **state) {
    (void)state;
    const size_t sizes[] = {2, 3, 7, 180, 200, 257, 1000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        double *x = malloc(n * sizeof *x), var = 0.0;
        for (size_t i = 0; i < n; i++) x[i] = (double)i;
        for (size_t i = 0; i < n; i++) var += pow((double)i - (n - 1) / 2.0, 2) / (double)n;
        struct boot_opts o = {.n_resamples = 20000, .seed = 31 + s};
        struct boot_ci c;
        assert_int_equal(boot_mean_ci(x, n, &o, &c), 0);
        double want = sqrt(var / (double)n);
        if (!(fabs(c.se / want - 1.0) < 0.03)) fail_msg("n = %zu: bootstrap SE %g, expected %g", n, c.se, want);
        /* symmetric data: the percentile interval is centred on the mean */
        double mid = 0.5 * (c.pct_lo + c.pct_hi), mean = (n - 1) / 2.0;
        if (!(fabs(mid - mean) < 0.05 * want + 1e-12)) fail_msg("n = %zu: interval centre %g, mean %g", n, mid, mean);
        free(x);
    }
}

/* Percentile intervals of normal means cover the true mean about 95% of the
 * time: 400 datasets of 60, binomial(400, 0.95) has sd 4.4, so [360, 396]
 * (about -4.5 to +3.7 sd; the bootstrap percentile interval undercovers a
 * little for n = 60). */
static void test_intervals_cover_the_true_mean(void **state) {
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 77);
    double x[60];
    int cover_pct = 0, cover_bca = 0;
    for (int k = 0; k < 400; k++) {
        normal(x, 60, r, 0.3, 0.2);
        struct boot_opts o = {.n_resamples = 2000, .seed = (unsigned long)k + 1};
        struct boot_ci c;
        assert_int_equal(boot_mean_ci(x, 60, &o, &c), 0);
        cover_pct += c.pct_lo <= 0.3 && 0.3 <= c.pct_hi;
        cover_bca += c.bca_lo <= 0.3 && 0.3 <= c.bca_hi;
    }
    gsl_rng_free(r);
    printf("coverage over 400 datasets: percentile %d, BCa %d\n", cover_pct, cover_bca);
    assert_in_range(cover_pct, 360, 396);
    assert_in_range(cover_bca, 360, 396);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Under a simulated null (both samples from one distribution) pooled-null
 * p-values are about uniform: 200 datasets x 2,000 resamples. Kolmogorov-
 * Smirnov distance to U(0,1) below 0.136 (critical value at the 0.1% level for
 * n = 200, 1.92/sqrt(200)), and the count of p <= 0.05 within [2, 21]
 * (binomial(200, 0.05): P(X < 2) + P(X > 21) < 0.002). Under a clear
 * alternative (shift of one sd) p sits at its floor. */
static void test_pvalues_uniform_under_null_small_under_alternative(void **state) {
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 1234);
    enum { N = 200, NA = 30, NB = 40 };
    double p[N], a[NA], b[NB];
    int rejected = 0;
    for (int k = 0; k < N; k++) {
        normal(a, NA, r, 0.3, 0.2);
        normal(b, NB, r, 0.3, 0.2);
        struct boot_opts o = {.n_resamples = 2000, .seed = 5000 + (unsigned long)k};
        assert_int_equal(boot_pvalue_pooled(a, NA, b, NB, &o, &p[k], NULL), 0);
        assert_true(p[k] > 0.0 && p[k] <= 1.0);
        rejected += p[k] <= 0.05;
    }
    qsort(p, N, sizeof *p, cmp_double);
    double ks = 0.0;
    for (int i = 0; i < N; i++) {
        double lo = p[i] - (double)i / N, hi = (double)(i + 1) / N - p[i];
        ks = fmax(ks, fmax(lo, hi));
    }
    printf("null p-values: KS distance %.4f, %d of %d at or below 0.05\n", ks, rejected, N);
    assert_true(ks < 0.136);
    assert_in_range(rejected, 2, 21);

    normal(a, NA, r, 0.5, 0.2);
    normal(b, NB, r, 0.3, 0.2);
    struct boot_opts o = {.n_resamples = 2000, .seed = 1};
    double palt;
    size_t count;
    assert_int_equal(boot_pvalue_pooled(a, NA, b, NB, &o, &palt, &count), 0);
    assert_true(palt < 0.005);
    assert_true(palt == (double)(count + 1) / 2001.0);
    gsl_rng_free(r);
}

static void test_degenerate_inputs(void **state) {
    (void)state;
    struct boot_ci c;
    struct boot_opts o = {.n_resamples = 1000, .seed = 1};
    double one[1] = {0.5};
    assert_int_equal(boot_mean_ci(one, 1, &o, &c), -1);
    assert_non_null(strstr(err_msg(), "at least 2"));

    double withnan[4] = {0.1, 0.2, NAN, 0.4};
    assert_int_equal(boot_mean_ci(withnan, 4, &o, &c), -1);
    assert_non_null(strstr(err_msg(), "scores[2]"));
    struct stats_desc d;
    assert_int_equal(stats_describe(withnan, 4, &d), -1);
    double ok[3] = {0.1, 0.2, 0.3};
    assert_int_equal(boot_diff_ci(ok, 3, withnan, 4, &o, &c), -1);
    assert_non_null(strstr(err_msg(), "b[2]"));

    /* constant data: documented degenerate result, never NaN */
    double flat[5] = {0.25, 0.25, 0.25, 0.25, 0.25};
    assert_int_equal(boot_mean_ci(flat, 5, &o, &c), 0);
    assert_int_equal(c.degenerate, 1);
    assert_true(c.pct_lo == 0.25 && c.pct_hi == 0.25 && c.bca_lo == 0.25 && c.bca_hi == 0.25);
    assert_true(c.se == 0.0 && c.z0 == 0.0 && c.accel == 0.0);
    double flat2[3] = {0.75, 0.75, 0.75};
    assert_int_equal(boot_diff_ci(flat, 5, flat2, 3, &o, &c), 0);
    assert_int_equal(c.degenerate, 1);
    assert_true(c.estimate == -0.5 && c.bca_lo == -0.5 && c.pct_hi == -0.5);
    double pv;
    assert_int_equal(boot_pvalue_pooled(flat, 5, flat, 5, &o, &pv, NULL), 0);
    assert_true(pv == 1.0); /* every null difference is 0 = |observed| */

    /* one constant sample: a real interval, finite everywhere */
    struct boot_compare cmp;
    assert_int_equal(boot_compare_means(ok, 3, flat, 5, &o, &cmp), 0);
    assert_int_equal(cmp.diff.degenerate, 0);
    assert_true(isfinite(cmp.diff.bca_lo) && isfinite(cmp.diff.bca_hi) && isfinite(cmp.diff.accel));
    assert_true(isfinite(cmp.p_value));

    o.level = 1.5;
    assert_int_equal(boot_mean_ci(ok, 3, &o, &c), -1);
    assert_non_null(strstr(err_msg(), "level"));
    o.level = 0.95;
    o.n_resamples = 1;
    assert_int_equal(boot_mean_ci(ok, 3, &o, &c), -1);
    assert_non_null(strstr(err_msg(), "resamples"));
    o.n_resamples = SIZE_MAX / 2;
    assert_int_equal(boot_mean_ci(ok, 3, &o, &c), -1);
    assert_non_null(strstr(err_msg(), "n_resamples"));
}

/* The closed-form jackknife equals leave-one-out recomputation (done here by
 * hand, without the Python reference). */
static void test_acceleration_is_the_jackknife(void **state) {
    (void)state;
    double a[9], b[7];
    skewed(a, 9, 1, 1.0, 0.0);
    skewed(b, 7, 2, 2.0, -1.0);
    double num = 0.0, den = 0.0;
    size_t ns[2] = {9, 7};
    for (int j = 0; j < 2; j++) {
        size_t n = ns[j];
        double loo[9], mean_loo = 0.0;
        for (size_t i = 0; i < n; i++) {
            double ma = 0.0, mb = 0.0;
            for (size_t k = 0; k < 9; k++) ma += (j == 0 && k == i) ? 0.0 : a[k];
            for (size_t k = 0; k < 7; k++) mb += (j == 1 && k == i) ? 0.0 : b[k];
            loo[i] = ma / (j == 0 ? 8.0 : 9.0) - mb / (j == 1 ? 6.0 : 7.0);
            mean_loo += loo[i] / (double)n;
        }
        for (size_t i = 0; i < n; i++) {
            double u = ((double)n - 1.0) * (mean_loo - loo[i]);
            num += u * u * u / pow((double)n, 3);
            den += u * u / pow((double)n, 2);
        }
    }
    near("two-sample acceleration", boot_accel_diff(a, 9, b, 7), num / (6.0 * pow(den, 1.5)), 1e-12);
    assert_true(boot_accel_mean(a, 9) > 0.0); /* right-skewed data accelerate upward */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_sample_matches_scipy),
        cmocka_unit_test(test_difference_matches_scipy_and_numpy_pvalue),
        cmocka_unit_test(test_intervals_from_given_distribution_match_numpy),
        cmocka_unit_test(test_same_seed_same_result_any_thread_count),
        cmocka_unit_test(test_resampling_is_uniform),
        cmocka_unit_test(test_intervals_cover_the_true_mean),
        cmocka_unit_test(test_pvalues_uniform_under_null_small_under_alternative),
        cmocka_unit_test(test_degenerate_inputs),
        cmocka_unit_test(test_acceleration_is_the_jackknife),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
