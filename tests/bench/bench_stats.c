/* bench_stats.c: timings for src/stats, driven by tests/bench/stats.sh.
 *
 *   bench_stats boot DIR [B]
 *     The report stage's statistics for one experiment: 6 dictionaries x 200
 *     scores, a 95% CI of each mean (percentile + BCa from one set of B
 *     resamples, default 100,000) and 3 matched pairs (CI of the difference +
 *     pooled-null p-value, B each). Writes the scores to DIR/scores.txt (one
 *     line per dictionary) for tests/bench/stats_ref.py to redo with scipy, and
 *     the intervals to DIR/c_results.txt. Timed with all CPUs and with one.
 *   bench_stats geom N D [DIR]
 *     Nearest-other-direction cosine for a random (seeded) N x D dictionary;
 *     prints time, GFLOP/s of the 2 N^2 D flops and peak RSS (getrusage). With
 *     DIR, also writes the dictionary and the result for numpy to check and time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "stats/bootstrap.h"
#include "stats/geometry.h"
#include "util/error.h"
#include "util/log.h"

/* CPU seconds of this process, all threads (less sensitive than wall time to
 * other jobs on a shared machine). */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

enum { N_DICT = 6, N_SCORES = 200, N_PAIRS = 3 };

/* Scores shaped like interpretability scores: correlations around 0.2-0.4,
 * skewed, clipped to [-1, 1]. */
static void make_scores(double x[N_DICT][N_SCORES]) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 20240501);
    for (int k = 0; k < N_DICT; k++)
        for (int i = 0; i < N_SCORES; i++) {
            double v = -0.1 + 0.05 * k + gsl_ran_gamma(r, 2.0, 0.15);
            x[k][i] = v > 1.0 ? 1.0 : v;
        }
    gsl_rng_free(r);
}

struct boot_results {
    struct stats_desc desc[N_DICT];
    struct boot_ci ci[N_DICT];
    struct boot_compare cmp[N_PAIRS];
};

static int run_all(double x[N_DICT][N_SCORES], size_t B, int n_threads, struct boot_results *res) {
    for (int k = 0; k < N_DICT; k++) {
        struct boot_opts o = {.n_resamples = B, .seed = 1000 + (unsigned long)k, .n_threads = n_threads};
        if (stats_describe(x[k], N_SCORES, &res->desc[k]) || boot_mean_ci(x[k], N_SCORES, &o, &res->ci[k]))
            return -1;
    }
    for (int p = 0; p < N_PAIRS; p++) {
        struct boot_opts o = {.n_resamples = B, .seed = 2000 + (unsigned long)p, .n_threads = n_threads};
        if (boot_compare_means(x[2 * p], N_SCORES, x[2 * p + 1], N_SCORES, &o, &res->cmp[p])) return -1;
    }
    return 0;
}

static void write_ci(FILE *f, const char *what, const struct boot_ci *c) {
    fprintf(f, "%s %.10f %.10f %.10f %.10f %.10f %.10f\n", what, c->estimate, c->se, c->pct_lo, c->pct_hi,
            c->bca_lo, c->bca_hi);
}

static int bench_boot(const char *dir, size_t B) {
    static double x[N_DICT][N_SCORES];
    make_scores(x);
    char path[4096];
    snprintf(path, sizeof path, "%s/scores.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return err_errno("%s", path);
    for (int k = 0; k < N_DICT; k++)
        for (int i = 0; i < N_SCORES; i++) fprintf(f, "%.17g%c", x[k][i], i + 1 < N_SCORES ? ' ' : '\n');
    fclose(f);

    struct boot_results all, one;
    double t0 = now_seconds(), c0 = cpu_seconds();
    if (run_all(x, B, 0, &all)) return -1;
    double t_all = now_seconds() - t0, c_all = cpu_seconds() - c0;
    t0 = now_seconds();
    c0 = cpu_seconds();
    if (run_all(x, B, 1, &one)) return -1;
    double t_one = now_seconds() - t0, c_one = cpu_seconds() - c0;
    for (int k = 0; k < N_DICT; k++)
        if (memcmp(&all.ci[k].pct_lo, &one.ci[k].pct_lo, 4 * sizeof(double)))
            return err_set("dictionary %d: intervals differ between thread counts", k);
    for (int p = 0; p < N_PAIRS; p++)
        if (all.cmp[p].p_value != one.cmp[p].p_value || all.cmp[p].diff.bca_lo != one.cmp[p].diff.bca_lo)
            return err_set("pair %d: results differ between thread counts", p);

    snprintf(path, sizeof path, "%s/c_results.txt", dir);
    f = fopen(path, "w");
    if (!f) return err_errno("%s", path);
    for (int k = 0; k < N_DICT; k++) write_ci(f, "mean", &all.ci[k]);
    for (int p = 0; p < N_PAIRS; p++) {
        write_ci(f, "diff", &all.cmp[p].diff);
        fprintf(f, "p %.10f\n", all.cmp[p].p_value);
    }
    fclose(f);

    printf("work: %d samples x %d scores, B = %zu (percentile + BCa), %d pairs (diff CI + pooled p)\n",
           N_DICT, N_SCORES, B, N_PAIRS);
    for (int k = 0; k < N_DICT; k++)
        printf("  dict %d: mean %.4f  pct [%.4f, %.4f]  BCa [%.4f, %.4f]\n", k, all.ci[k].estimate,
               all.ci[k].pct_lo, all.ci[k].pct_hi, all.ci[k].bca_lo, all.ci[k].bca_hi);
    for (int p = 0; p < N_PAIRS; p++)
        printf("  pair %d-%d: diff %.4f  BCa [%.4f, %.4f]  p %.5f\n", 2 * p, 2 * p + 1,
               all.cmp[p].diff.estimate, all.cmp[p].diff.bca_lo, all.cmp[p].diff.bca_hi, all.cmp[p].p_value);
    printf("c_seconds %.3f\n", t_all);
    printf("c_seconds_1thread %.3f\n", t_one);
    printf("c_cpu_seconds %.3f (all threads), %.3f (1 thread)\n", c_all, c_one);
    return 0;
}

static int bench_geom(size_t n, size_t d, const char *dir) {
    float *D = xmalloc(n * d * sizeof *D), *cos = xmalloc(n * sizeof *cos);
    size_t *nn = xmalloc(n * sizeof *nn);
    if (!D || !cos || !nn) return -1;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 7);
    for (size_t i = 0; i < n * d; i++) D[i] = (float)gsl_ran_gaussian_ziggurat(r, 1.0);
    gsl_rng_free(r);
    double t0 = now_seconds();
    if (geom_nearest_self(D, n, d, NULL, cos, nn)) return -1;
    double t = now_seconds() - t0;
    struct geom_summary s;
    if (geom_summarize(cos, n, &s)) return -1;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double flops = 2.0 * (double)n * (double)n * (double)d;
    printf("geometry %zu x %zu: nearest-other cosine mean %.4f median %.4f max %.4f\n", n, d, s.mean,
           s.median, s.max);
    printf("c_geom_seconds %.3f\n", t);
    printf("c_geom_gflops %.1f\n", flops / t / 1e9);
    printf("c_geom_peak_rss_mib %.1f (dictionary itself %.1f MiB, tile scratch %.1f MiB)\n",
           ru.ru_maxrss / 1024.0, n * d * 4.0 / 1048576.0,
           GEOM_DEFAULT_BLOCK_ROWS * (double)GEOM_DEFAULT_BLOCK_COLS * 4.0 / 1048576.0);
    if (dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/dict.f32", dir);
        FILE *f = fopen(path, "wb");
        if (!f) return err_errno("%s", path);
        fwrite(D, sizeof *D, n * d, f);
        fclose(f);
        snprintf(path, sizeof path, "%s/nn.f32", dir);
        f = fopen(path, "wb");
        if (!f) return err_errno("%s", path);
        fwrite(cos, sizeof *cos, n, f);
        fclose(f);
    }
    free(nn);
    free(cos);
    free(D);
    return 0;
}

int main(int argc, char **argv) {
    int rc = -1;
    if (argc >= 3 && strcmp(argv[1], "boot") == 0)
        rc = bench_boot(argv[2], argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : BOOT_DEFAULT_RESAMPLES);
    else if (argc >= 4 && strcmp(argv[1], "geom") == 0)
        rc = bench_geom((size_t)strtoull(argv[2], NULL, 10), (size_t)strtoull(argv[3], NULL, 10),
                        argc > 4 ? argv[4] : NULL);
    else {
        fprintf(stderr, "usage: bench_stats boot DIR [B] | geom N D [DIR]\n");
        return 2;
    }
    if (rc) fprintf(stderr, "bench_stats: %s\n", err_msg());
    return rc ? 1 : 0;
}
