/* test_report_pairs.c: matched-pair selection (closest L0, closest CE increase
 * by |log ratio|, per layer / type pair / seed, ties, unusable metrics) and
 * pinned pairs, including the error for a name the sweep does not have. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_errno.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "report/fixture.h"
#include "report/pairs.h"
#include "report/report.h"
#include "util/error.h"

struct row {
    const char *name;
    int type, layer;
    long long seed;
    double l0, ce;
};

static void make_sweep(struct rep_sweep *sw, const struct row *rows, int n) {
    memset(sw, 0, sizeof *sw);
    sw->n = n;
    sw->saes = calloc((size_t)n, sizeof *sw->saes);
    for (int i = 0; i < n; i++) {
        struct rep_sae *s = &sw->saes[i];
        s->name = strdup(rows[i].name);
        s->type_name = strdup(rep_type_name(rows[i].type));
        s->type = rows[i].type;
        s->layer = rows[i].layer;
        s->seed = rows[i].seed;
        s->l0 = rows[i].l0;
        s->ce_increase = rows[i].ce;
    }
}

static const struct rep_pair *find(const struct rep_pair *p, int n, enum pair_crit c, int a_type,
                                   int b_type, int layer, const struct rep_sweep *sw) {
    for (int i = 0; i < n; i++)
        if (p[i].crit == c && sw->saes[p[i].a].type == a_type && sw->saes[p[i].b].type == b_type &&
            sw->saes[p[i].a].layer == layer)
            return &p[i];
    return NULL;
}

static void test_closest_l0_and_ce_by_log_ratio(void **state) {
    (void)state;
    /* |log| ratio, not absolute difference: L0 10 vs 13 (x1.3) beats 100 vs 120 (x1.2)?
     * No: 1.2 < 1.3, so the large pair wins although its difference is 20. */
    static const struct row rows[] = {
        {"loc-a", REP_LOCAL, 6, 0, 100, 0.10}, {"loc-b", REP_LOCAL, 6, 0, 10, 0.50},
        {"e2e-a", REP_E2E, 6, 0, 120, 0.30},   {"e2e-b", REP_E2E, 6, 0, 13, 0.52},
        {"ds-a", REP_E2E_DS, 6, 0, 60, 0.11},
    };
    struct rep_sweep sw;
    make_sweep(&sw, rows, 5);
    struct rep_pair *p;
    int n;
    assert_int_equal(pairs_auto(&sw, &p, &n), 0);
    assert_int_equal(n, 6);
    const struct rep_pair *q = find(p, n, PAIR_L0, REP_LOCAL, REP_E2E, 6, &sw);
    assert_non_null(q);
    assert_string_equal(sw.saes[q->a].name, "loc-a");
    assert_string_equal(sw.saes[q->b].name, "e2e-a");
    assert_true(fabs(q->gap - log(1.2)) < 1e-15);
    assert_true(fabs(q->log_ratio_l0 - log(1.2)) < 1e-15);
    assert_true(fabs(q->log_ratio_ce - log(3.0)) < 1e-15);
    /* CE: 0.50 vs 0.52 (x1.04) beats 0.10 vs 0.30 */
    q = find(p, n, PAIR_CE, REP_LOCAL, REP_E2E, 6, &sw);
    assert_string_equal(sw.saes[q->a].name, "loc-b");
    assert_string_equal(sw.saes[q->b].name, "e2e-b");
    assert_true(fabs(q->gap - log(0.52 / 0.50)) < 1e-15);
    /* local vs e2e_ds on CE: 0.10 vs 0.11; on L0: 100 vs 60 (x1.67) beats 10 vs 60 (x6) */
    q = find(p, n, PAIR_CE, REP_LOCAL, REP_E2E_DS, 6, &sw);
    assert_string_equal(sw.saes[q->a].name, "loc-a");
    q = find(p, n, PAIR_L0, REP_LOCAL, REP_E2E_DS, 6, &sw);
    assert_string_equal(sw.saes[q->a].name, "loc-a");
    /* direction: a is always the first type of (local, e2e), (local, e2e_ds), (e2e, e2e_ds) */
    q = find(p, n, PAIR_L0, REP_E2E, REP_E2E_DS, 6, &sw);
    assert_non_null(q);
    assert_string_equal(sw.saes[q->b].name, "ds-a");
    free(p);
    rep_sweep_free(&sw);
}

static void test_layers_seeds_and_unusable_metrics(void **state) {
    (void)state;
    static const struct row rows[] = {
        {"L2-loc", REP_LOCAL, 2, 0, 50, 0.1},
        {"L2-ds", REP_E2E_DS, 2, 0, 50, -0.01}, /* CE increase <= 0: cannot match on CE */
        {"L6-loc", REP_LOCAL, 6, 0, 50, 0.1},
        {"L6-ds-s1", REP_E2E_DS, 6, 1, 50, 0.1}, /* other seed: no partner at seed 1 */
        {"L6-ds", REP_E2E_DS, 6, 0, NAN, 0.2},   /* L0 not measured */
    };
    struct rep_sweep sw;
    make_sweep(&sw, rows, 5);
    struct rep_pair *p;
    int n;
    assert_int_equal(pairs_auto(&sw, &p, &n), 0);
    /* L2: L0 pair only; L6 seed 0: CE pair only; seed 1: nothing */
    assert_int_equal(n, 2);
    assert_int_equal(p[0].crit, PAIR_L0);
    assert_string_equal(sw.saes[p[0].b].name, "L2-ds");
    assert_true(isnan(p[0].log_ratio_ce));
    assert_int_equal(p[1].crit, PAIR_CE);
    assert_string_equal(sw.saes[p[1].a].name, "L6-loc");
    assert_string_equal(sw.saes[p[1].b].name, "L6-ds");
    assert_true(isnan(p[1].log_ratio_l0));
    free(p);
    rep_sweep_free(&sw);
    /* nothing comparable: no pairs, no error */
    static const struct row one[] = {{"only", REP_LOCAL, 1, 0, 5, 0.1}};
    make_sweep(&sw, one, 1);
    assert_int_equal(pairs_auto(&sw, &p, &n), 0);
    assert_int_equal(n, 0);
    free(p);
    rep_sweep_free(&sw);
}

static void test_ties_go_to_the_first_in_sweep_order(void **state) {
    (void)state;
    static const struct row rows[] = {
        {"loc-1", REP_LOCAL, 1, 0, 20, 0.1},
        {"loc-2", REP_LOCAL, 1, 0, 80, 0.4},
        {"e2e-1", REP_E2E, 1, 0, 40, 0.2}, /* 40/20 = 80/40: a tie in L0 and in CE */
    };
    struct rep_sweep sw;
    make_sweep(&sw, rows, 3);
    struct rep_pair *p;
    int n;
    assert_int_equal(pairs_auto(&sw, &p, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(sw.saes[p[0].a].name, "loc-1");
    assert_string_equal(sw.saes[p[1].a].name, "loc-1");
    free(p);
    rep_sweep_free(&sw);
}

static void test_pinned_pairs_and_unknown_name(void **state) {
    (void)state;
    static const struct row rows[] = {{"x", REP_LOCAL, 1, 0, 20, 0.1},
                                      {"y", REP_E2E, 1, 0, 40, 0.3},
                                      {"z", REP_E2E, 3, 0, 5, 0.2}};
    struct rep_sweep sw;
    make_sweep(&sw, rows, 3);
    struct rep_pair *p;
    int n;
    const char *names[] = {"y", "x", "x", "z"}; /* any order, any layers */
    assert_int_equal(pairs_pinned(&sw, names, 2, &p, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(p[0].a, 1);
    assert_int_equal(p[0].b, 0);
    assert_int_equal(p[0].crit, PAIR_PINNED);
    assert_true(fabs(p[0].log_ratio_l0 - log(0.5)) < 1e-15);
    assert_true(fabs(p[0].gap - log(3.0)) < 1e-15);
    free(p);
    const char *bad[] = {"x", "y", "x", "L6-e2e-lam9-s0"};
    assert_int_equal(pairs_pinned(&sw, bad, 2, &p, &n), -1);
    assert_non_null(strstr(err_msg(), "report.pairs[1]"));
    assert_non_null(strstr(err_msg(), "no SAE named \"L6-e2e-lam9-s0\""));
    const char *self[] = {"x", "x"};
    assert_int_equal(pairs_pinned(&sw, self, 1, &p, &n), -1);
    assert_non_null(strstr(err_msg(), "itself"));
    rep_sweep_free(&sw);
}

/* Pinned pairs through the config and the whole stage. */
static void test_pinned_pairs_from_config(void **state) {
    (void)state;
    char *root = test_tmpdir("report-pin");
    struct report_fixture fx = {.results_dir = root, .experiment = "exp", .n_features = 40};
    assert_int_equal(report_fixture_write(&fx), 6);
    char json[2048];
    snprintf(json, sizeof json,
             "{\"experiment\": \"exp\", \"results_dir\": \"%s\", \"data\": {\"train_tokens\": "
             "\"t.h5\", \"eval_tokens\": \"e.h5\"}, \"report\": {\"resamples\": 500, "
             "\"pairs\": [[\"L1-local-lam1-s0\", \"L1-e2e-lam0.5-s0\"]]}}",
             root);
    struct config cfg;
    if (config_parse(&cfg, json, "pin.json") != 0) fail_msg("%s", err_msg());
    struct report_settings s;
    assert_int_equal(report_settings_from_config(&cfg, &s), 0);
    assert_int_equal(s.n_pinned, 1);
    assert_int_equal(s.resamples, 500);
    s.geometry = false;
    struct report_outcome out;
    assert_int_equal(report_run(&s, &out), 0);
    assert_int_equal(out.n_pairs, 1);
    assert_int_equal(out.n_compared, 1);
    char *md_path = path_join(out.out_dir, "report.md");
    size_t n;
    char *md = read_file_all(md_path, 0, &n);
    assert_non_null(strstr(md, "Pairs pinned in the config"));
    assert_non_null(strstr(md, "| 1 | pinned | L1-local-lam1-s0 | L1-e2e-lam0.5-s0 |"));
    free(md);
    free(md_path);
    report_settings_free(&s);
    config_free(&cfg);

    snprintf(json, sizeof json,
             "{\"experiment\": \"exp\", \"results_dir\": \"%s\", \"data\": {\"train_tokens\": "
             "\"t.h5\", \"eval_tokens\": \"e.h5\"}, \"report\": {\"pairs\": "
             "[[\"L1-local-lam1-s0\", \"L1-e2e-lam7-s0\"]]}}",
             root);
    if (config_parse(&cfg, json, "pin.json") != 0) fail_msg("%s", err_msg());
    assert_int_equal(report_settings_from_config(&cfg, &s), 0);
    assert_int_equal(report_run(&s, &out), -1);
    assert_non_null(strstr(err_msg(), "L1-e2e-lam7-s0"));
    report_settings_free(&s);
    config_free(&cfg);
    test_rmtree(root);
    free(root);
}

int main(void) {
    h5_init();
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closest_l0_and_ce_by_log_ratio),
        cmocka_unit_test(test_layers_seeds_and_unusable_metrics),
        cmocka_unit_test(test_ties_go_to_the_first_in_sweep_order),
        cmocka_unit_test(test_pinned_pairs_and_unknown_name),
        cmocka_unit_test(test_pinned_pairs_from_config),
    };
    return cmocka_run_group_tests_name("report_pairs", tests, NULL, NULL);
}
