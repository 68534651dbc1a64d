/* test_report_degrade.c: missing inputs give a smaller report, not a failure
 * (no scores yet, some scores, no sweep, no SAE files for geometry, too few
 * scores); malformed inputs fail naming the file and line; the CLI wrapper. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <gsl/gsl_errno.h>

#include "cli/cli.h"
#include "io/atomic.h"
#include "io/h5.h"
#include "report/fixture.h"
#include "report/report.h"
#include "util/error.h"

struct ctx {
    char *root, *report;
    struct report_outcome out;
};

static int run(struct ctx *c, const struct report_fixture *fx_in, bool geometry) {
    c->root = test_tmpdir("report-degrade");
    if (fx_in) {
        struct report_fixture fx = *fx_in;
        fx.results_dir = c->root, fx.experiment = "exp";
        assert_true(report_fixture_write(&fx) > 0);
    }
    struct report_settings s;
    report_settings_default(&s);
    s.results_dir = c->root, s.experiment = "exp", s.resamples = 300, s.geometry = geometry;
    int rc = report_run(&s, &c->out);
    c->report = path_join(c->root, "exp/report");
    return rc;
}

static void done(struct ctx *c) {
    test_rmtree(c->root);
    free(c->root);
    free(c->report);
}

static char *slurp(const struct ctx *c, const char *name) {
    char *p = path_join(c->report, name);
    size_t n;
    char *t = read_file_all(p, 0, &n);
    free(p);
    return t;
}

static int exists(const struct ctx *c, const char *name) {
    char *p = path_join(c->report, name);
    int e = file_exists(p);
    free(p);
    return e;
}

static cJSON *summary(const struct ctx *c) {
    char *t = slurp(c, "summary.json");
    assert_non_null(t);
    cJSON *j = cJSON_Parse(t);
    free(t);
    assert_non_null(j);
    return j;
}

static const char *status(const cJSON *s, const char *key) {
    return cJSON_GetObjectItem(cJSON_GetObjectItem(s, "status"), key)->valuestring;
}

static void test_no_scores_yet(void **state) {
    (void)state;
    struct ctx c;
    struct report_fixture fx = {.no_scores = true};
    assert_int_equal(run(&c, &fx, false), 0);
    char *md = slurp(&c, "report.md");
    assert_non_null(strstr(md, "scores: not yet computed"));
    assert_non_null(strstr(md, "| L1-local-lam4-s0 | local | 1 | 4 | 33.0 |")); /* sweep table */
    assert_non_null(strstr(md, "](plots/pareto_L1.svg)"));
    assert_true(exists(&c, "plots/pareto_L1.svg"));
    assert_false(exists(&c, "plots/scores.svg"));
    char *svg = slurp(&c, "plots/pareto_L1.svg");
    assert_non_null(strstr(svg, "scores: not yet computed"));
    cJSON *s = summary(&c);
    assert_string_equal(status(s, "scores"), "not_computed");
    assert_string_equal(status(s, "geometry"), "skipped");
    const cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "pairs"), 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(p, "difference")));
    assert_string_equal(cJSON_GetObjectItem(p, "note")->valuestring, "scores: not yet computed");
    const cJSON *sc =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(s, "saes"), 0), "scores");
    assert_string_equal(cJSON_GetObjectItem(sc, "status")->valuestring, "not_computed");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(sc, "mean")));
    char *csv = slurp(&c, "tables/scores.csv");
    assert_non_null(strstr(csv, "\"not_computed\""));
    assert_int_equal(c.out.n_with_scores, 0);
    free(csv), free(svg), free(md);
    cJSON_Delete(s);
    done(&c);
}

static void test_partial_scores(void **state) {
    (void)state;
    struct ctx c;
    struct report_fixture fx = {.skip_scores_of = 2, .n_features = 50};
    assert_int_equal(run(&c, &fx, false), 0);
    cJSON *s = summary(&c);
    assert_string_equal(status(s, "scores"), "partial");
    char *md = slurp(&c, "report.md");
    assert_non_null(strstr(md, "| L1-e2e\\_ds-lam5-s0 | n/a | scores: not yet computed |"));
    assert_non_null(strstr(md, "scores partial (4 of 6 SAEs)"));
    assert_true(exists(&c, "plots/scores.svg"));
    int compared = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(s, "pairs")) compared +=
        !cJSON_IsNull(cJSON_GetObjectItem(p, "difference"));
    assert_int_equal(compared, c.out.n_compared);
    assert_true(compared > 0 && compared < c.out.n_pairs);
    free(md);
    cJSON_Delete(s);
    done(&c);
}

static void test_no_sweep_yet(void **state) {
    (void)state;
    struct ctx c;
    assert_int_equal(run(&c, NULL, true), 0);
    assert_true(c.out.sweep_missing);
    char *md = slurp(&c, "report.md");
    assert_non_null(strstr(md, "sweep: not yet trained"));
    cJSON *s = summary(&c);
    assert_string_equal(status(s, "sweep"), "missing");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(s, "saes")), 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "inputs"), "sweep")));
    free(md);
    cJSON_Delete(s);
    done(&c);
}

static void test_geometry_without_sae_files(void **state) {
    (void)state;
    struct ctx c;
    struct report_fixture fx = {.n_features = 20};
    assert_int_equal(run(&c, &fx, true), 0);
    cJSON *s = summary(&c);
    assert_string_equal(status(s, "geometry"), "not_computed");
    const cJSON *g = cJSON_GetObjectItem(s, "geometry");
    assert_non_null(strstr(cJSON_GetObjectItem(g, "note")->valuestring,
                           "L1-local-lam1-s0: SAE file not found"));
    char *md = slurp(&c, "report.md");
    assert_non_null(strstr(md, "geometry: not computed"));
    free(md);
    cJSON_Delete(s);
    done(&c);
}

static void write_text(const char *root, const char *rel, const char *text) {
    char *p = path_join(root, rel);
    write_file(p, text, strlen(text));
    free(p);
}

static void test_corrupt_score_line_names_file_and_line(void **state) {
    (void)state;
    struct ctx c;
    struct report_fixture fx = {.n_features = 10};
    c.root = test_tmpdir("report-bad");
    fx.results_dir = c.root, fx.experiment = "exp";
    assert_int_equal(report_fixture_write(&fx), 6);
    write_text(c.root, "exp/scores/L1-e2e-lam0.1-s0.jsonl",
               "{\"feature\": 1, \"status\": \"scored\", \"score\": 0.5}\n"
               "{\"feature\": 2, \"status\": \"great\", \"score\": 0.5}\n");
    struct report_settings s;
    report_settings_default(&s);
    s.results_dir = c.root, s.experiment = "exp", s.resamples = 300, s.geometry = false;
    assert_int_equal(report_run(&s, &c.out), -1);
    assert_non_null(strstr(err_msg(), "scores/L1-e2e-lam0.1-s0.jsonl: line 2"));
    assert_non_null(strstr(err_msg(), "\"great\""));
    /* a scored line without a number */
    write_text(c.root, "exp/scores/L1-e2e-lam0.1-s0.jsonl",
               "{\"feature\": 1, \"status\": \"scored\", \"score\": null}\n");
    assert_int_equal(report_run(&s, &c.out), -1);
    assert_non_null(strstr(err_msg(), "line 1: feature 1: score"));
    /* one score: no CI, a note, and pairs with it are not compared */
    write_text(c.root, "exp/scores/L1-e2e-lam0.1-s0.jsonl",
               "{\"feature\": 1, \"status\": \"scored\", \"score\": 0.5}\n"
               "{\"feature\": 2, \"status\": \"failed\"}\n");
    assert_int_equal(report_run(&s, &c.out), 0);
    c.report = path_join(c.root, "exp/report");
    char *md = slurp(&c, "report.md");
    assert_non_null(strstr(md, "1 score: too few for a mean with a CI"));
    assert_non_null(strstr(md, "failed unknown × 1"));
    assert_non_null(strstr(md, "too few scores (9 and 1)")); /* local (9 of 10 scored) vs it */
    free(md);
    done(&c);
}

/* Metrics that were not measured (null in sweep.json) are shown as missing and
 * never matched on; a sweep row with an unknown type is an error naming it. */
static void test_null_metrics_and_bad_rows(void **state) {
    (void)state;
    struct ctx c = {0};
    c.root = test_tmpdir("report-null");
    char *saes = path_join(c.root, "exp/saes");
    assert_int_equal(mkdir_p(saes), 0);
    write_text(c.root, "exp/saes/sweep.json",
               "{\"experiment\": \"exp\", \"saes\": ["
               "{\"name\": \"a\", \"type\": \"local\", \"layer\": 3, \"lambda\": 1, \"seed\": 0,"
               " \"l0\": null, \"alive\": 10, \"ce_increase\": 0.2},"
               "{\"name\": \"b\", \"type\": \"e2e_ds\", \"layer\": 3, \"lambda\": 2, \"seed\": 0,"
               " \"l0\": 12, \"alive\": 9, \"ce_increase\": 0.25}]}\n");
    struct report_settings s;
    report_settings_default(&s);
    s.results_dir = c.root, s.experiment = "exp", s.resamples = 200;
    assert_int_equal(report_run(&s, &c.out), 0);
    c.report = path_join(c.root, "exp/report");
    assert_int_equal(c.out.n_pairs, 1); /* on CE only */
    char *md = slurp(&c, "report.md");
    assert_non_null(strstr(md, "| a | local | 3 | 1 | n/a | 10 |"));
    assert_non_null(strstr(md, "| 3 | CE increase | a | b | n/a | 12.0 |"));
    char *csv = slurp(&c, "tables/sweep.csv");
    assert_non_null(strstr(csv, "\"a\",\"local\",3,1,0,,10,"));
    assert_true(exists(&c, "plots/pareto_L3.svg"));
    free(md);
    free(csv);
    write_text(c.root, "exp/saes/sweep.json",
               "{\"saes\": [{\"name\": \"a\", \"type\": \"topk\", \"layer\": 3}]}\n");
    assert_int_equal(report_run(&s, &c.out), -1);
    assert_non_null(strstr(
        err_msg(), "sweep.json: saes[0] (a).type: expected local, e2e or e2e_ds, got 'topk'"));
    free(saes);
    done(&c);
}

static void test_cli_report(void **state) {
    (void)state;
    char *root = test_tmpdir("report-cli");
    struct report_fixture fx = {.results_dir = root, .experiment = "exp", .n_features = 30};
    assert_int_equal(report_fixture_write(&fx), 6);
    char *cfg = path_join(root, "c.json"), json[1024];
    snprintf(json, sizeof json,
             "{\"experiment\": \"exp\", \"results_dir\": \"%s\", \"data\": {\"train_tokens\": "
             "\"t.h5\", \"eval_tokens\": \"e.h5\"}, \"report\": {\"resamples\": 200}}",
             root);
    write_file(cfg, json, strlen(json));
    char *outdir = path_join(root, "elsewhere");
    char *ok[] = {"report",        "--resamples", "300",  "--seed", "5",
                  "--no-geometry", "-o",          outdir, cfg,      NULL};
    assert_int_equal(cmd_report(9, ok), 0);
    char *sum = path_join(outdir, "summary.json");
    size_t n;
    char *t = read_file_all(sum, 0, &n);
    assert_non_null(t);
    assert_non_null(strstr(t, "\"resamples\":\t300"));
    assert_non_null(strstr(t, "\"seed\":\t5"));
    assert_non_null(strstr(t, "\"geometry\":\t\"skipped\""));
    free(t);
    char *index = path_join(outdir, "index.html");
    assert_true(access(index, F_OK) == 0); /* html on by default */
    free(index);
    /* the same two switches as config keys (what a nightly job sets) */
    char *cfg2 = path_join(root, "c2.json"), *out2 = path_join(root, "keys");
    snprintf(json, sizeof json,
             "{\"experiment\": \"exp\", \"results_dir\": \"%s\", \"data\": {\"train_tokens\": "
             "\"t.h5\", \"eval_tokens\": \"e.h5\"}, \"report\": {\"resamples\": 200, "
             "\"geometry\": false, \"html\": false}}",
             root);
    write_file(cfg2, json, strlen(json));
    char *by_keys[] = {"report", "-o", out2, cfg2, NULL};
    assert_int_equal(cmd_report(4, by_keys), 0);
    char *sum2 = path_join(out2, "summary.json"), *index2 = path_join(out2, "index.html");
    t = read_file_all(sum2, 0, &n);
    assert_non_null(t);
    assert_non_null(strstr(t, "\"geometry\":\t\"skipped\""));
    assert_true(access(index2, F_OK) != 0);
    free(t);
    free(sum2);
    free(index2);
    free(cfg2);
    free(out2);
    char *bad_level[] = {"report", "--level", "1.5", cfg, NULL};
    assert_int_equal(cmd_report(4, bad_level), 2);
    char *no_cfg[] = {"report", "/nonexistent/c.json", NULL};
    assert_int_equal(cmd_report(2, no_cfg), 1);
    char *no_arg[] = {"report", NULL};
    assert_int_equal(cmd_report(1, no_arg), 2);
    free(sum);
    free(outdir);
    free(cfg);
    test_rmtree(root);
    free(root);
}

int main(void) {
    h5_init();
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_scores_yet),
        cmocka_unit_test(test_partial_scores),
        cmocka_unit_test(test_no_sweep_yet),
        cmocka_unit_test(test_geometry_without_sae_files),
        cmocka_unit_test(test_corrupt_score_line_names_file_and_line),
        cmocka_unit_test(test_null_metrics_and_bad_rows),
        cmocka_unit_test(test_cli_report),
    };
    return cmocka_run_group_tests_name("report_degrade", tests, NULL, NULL);
}
