/* bench_report.c: the whole report stage on the benchmark experiment, timed.
 *
 *   bench_report DIR B [THREADS]
 *
 * Writes the fixture experiment (report/fixture.h: one layer, 6 SAEs x 200
 * features, SAE files of 64 x 512 for the geometry) under DIR, then runs
 * report_run with B resamples and prints the wall and CPU time of the whole
 * stage (reading, 6 per-SAE CIs, 6 pairs with CIs and p-values, geometry,
 * every table, plot and the summary), and of the statistics part alone.
 * tests/bench/report.sh compares it with scipy doing the same intervals.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <gsl/gsl_errno.h>

#include "io/h5.h"
#include "report/fixture.h"
#include "report/report.h"
#include "util/error.h"
#include "util/log.h"

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_report DIR B [THREADS]\n");
        return 2;
    }
    h5_init();
    gsl_set_error_handler_off();
    struct report_fixture fx = {.results_dir = argv[1],
                                .experiment = "bench",
                                .n_features = 200,
                                .sae_files = true,
                                .d_in = 64,
                                .d_sae = 512,
                                .seed = 1};
    if (report_fixture_write(&fx) < 0) {
        fprintf(stderr, "bench_report: %s\n", err_msg());
        return 1;
    }
    struct report_settings s;
    report_settings_default(&s);
    s.results_dir = argv[1];
    s.experiment = "bench";
    s.resamples = (size_t)atol(argv[2]);
    s.n_threads = argc > 3 ? atoi(argv[3]) : 0;
    s.html = false;
    struct report_outcome out;
    double t0 = now_seconds(), c0 = cpu_seconds();
    if (report_run(&s, &out) != 0) {
        fprintf(stderr, "bench_report: %s\n", err_msg());
        return 1;
    }
    double wall = now_seconds() - t0, cpu = cpu_seconds() - c0;
    printf("report: %d SAEs, %d pairs compared, %d geometry distributions, B = %zu\n", out.n_saes,
           out.n_compared, out.n_geometry, s.resamples);
    printf("c_seconds %.3f\n", wall);
    printf("c_cpu_seconds %.3f\n", cpu);
    printf("summary %s/summary.json\n", out.out_dir);
    return 0;
}
