/* test_report_svg.c: the SVG writer's output is valid (parsed as XML, rendered
 * to PNG by a real renderer, librsvg's rsvg-convert), escapes every text, picks
 * log axes when values span decades, and draws empty charts without failing. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_errno.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "report/fixture.h"
#include "report/report.h"
#include "report/sbuf.h"
#include "report/svg.h"
#include "util/error.h"

static int have_rsvg(void) {
    return system("command -v rsvg-convert >/dev/null 2>&1") == 0;
}

/* 1 when /usr/bin/python3's XML parser accepts the file. */
static int xml_ok(const char *path, char **why) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys, xml.etree.ElementTree as E; "
             "r = E.parse(sys.argv[1]).getroot(); "
             "assert r.tag == \"{http://www.w3.org/2000/svg}svg\", r.tag' '%s'",
             path);
    return run_capture(cmd, why) == 0;
}

static void png_size(const char *path, unsigned *w, unsigned *h) {
    size_t n;
    unsigned char *b = (unsigned char *)read_file_all(path, 0, &n);
    assert_non_null(b);
    assert_true(n > 33);
    assert_memory_equal(b, "\x89PNG\r\n\x1a\n", 8);
    *w = (unsigned)b[16] << 24 | (unsigned)b[17] << 16 | (unsigned)b[18] << 8 | b[19];
    *h = (unsigned)b[20] << 24 | (unsigned)b[21] << 16 | (unsigned)b[22] << 8 | b[23];
    free(b);
}

static void test_report_plots_render_to_png(void **state) {
    (void)state;
    char *root = test_tmpdir("report-svg");
    struct report_fixture fx = {
        .results_dir = root, .experiment = "exp", .sae_files = true, .n_features = 60};
    assert_int_equal(report_fixture_write(&fx), 6);
    struct report_settings s;
    report_settings_default(&s);
    s.results_dir = root, s.experiment = "exp", s.resamples = 500;
    struct report_outcome out;
    if (report_run(&s, &out) != 0) fail_msg("%s", err_msg());
    char *plots = path_join(out.out_dir, "plots");
    static const char *const files[] = {"pareto_L1.svg", "scores.svg", "score_hist.svg",
                                        "geometry_self_L1.svg", "geometry_cross_L1.svg"};
    int rsvg = have_rsvg();
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *svg = path_join(plots, files[i]);
        char *why = NULL;
        if (!xml_ok(svg, &why)) fail_msg("%s is not well-formed SVG: %s", files[i], why);
        free(why);
        if (rsvg) {
            char png[4200], cmd[9000], *o = NULL;
            snprintf(png, sizeof png, "%s.png", svg);
            snprintf(cmd, sizeof cmd, "rsvg-convert -o '%s' '%s'", png, svg);
            if (run_capture(cmd, &o) != 0) fail_msg("rsvg-convert %s: %s", files[i], o);
            free(o);
            unsigned w, h;
            png_size(png, &w, &h);
            assert_true(w >= 400 && h >= 300);
            if (i == 0) assert_true(w == 640 && h == 420);
        }
        free(svg);
    }
    free(plots);
    test_rmtree(root);
    free(root);
    if (!rsvg)
        skip_because("rsvg-convert (Debian librsvg2-bin) is absent: SVGs checked as XML only");
}

static void test_text_is_escaped(void **state) {
    (void)state;
    double x[] = {1, 2}, y[] = {3, 4};
    const char *labels[] = {"a<b>&\"c'", "</svg><script>alert(1)</script>"};
    struct svg_series se = {
        .name = "<script>x</script>", .color = "#123456", .n = 2, .x = x, .y = y, .labels = labels};
    struct svg_xy c = {.title = "t & \"q\" \x01 \xff\xfe bad utf-8",
                       .xlabel = "<x>",
                       .ylabel = "y",
                       .n_series = 1,
                       .series = &se};
    struct sbuf b;
    sbuf_init(&b);
    assert_int_equal(svg_xy(&b, &c), 0);
    const char *t = sbuf_str(&b);
    assert_null(strstr(t, "<script"));
    assert_null(strstr(t, "</svg><"));
    assert_non_null(strstr(t, "&lt;script&gt;x&lt;/script&gt;"));
    assert_non_null(strstr(t, "a&lt;b&gt;&amp;&quot;c&#39;"));
    assert_non_null(strstr(t, "\xEF\xBF\xBD")); /* control byte and bad UTF-8 replaced */
    char *dir = test_tmpdir("report-esc");
    char *path = path_join(dir, "esc.svg");
    assert_int_equal(sbuf_write_file(&b, path), 0);
    char *why = NULL;
    if (!xml_ok(path, &why)) fail_msg("escaped SVG does not parse: %s", why);
    free(why);
    sbuf_free(&b);
    free(path);
    test_rmtree(dir);
    free(dir);
}

static void test_log_axes_when_values_span_decades(void **state) {
    (void)state;
    double decades[] = {2, 30, 400}, narrow[] = {2, 5, 9}, signed_v[] = {-1, 10, 1000};
    double with_nan[] = {NAN, 1, 50};
    assert_int_equal(svg_auto_scale(decades, 3), SVG_LOG);
    assert_int_equal(svg_auto_scale(narrow, 3), SVG_LINEAR);
    assert_int_equal(svg_auto_scale(signed_v, 3), SVG_LINEAR);
    assert_int_equal(svg_auto_scale(with_nan, 3), SVG_LOG);
    double y[] = {0.5, 0.1, 0.01};
    struct svg_series se = {
        .name = "local", .color = "#000", .n = 3, .x = decades, .y = y, .connect = true};
    struct svg_xy c = {.title = "p",
                       .xlabel = "L0",
                       .ylabel = "CE",
                       .xscale = SVG_LOG,
                       .yscale = SVG_LOG,
                       .n_series = 1,
                       .series = &se};
    struct sbuf b;
    sbuf_init(&b);
    assert_int_equal(svg_xy(&b, &c), 0);
    const char *t = sbuf_str(&b);
    assert_non_null(strstr(t, "L0 (log scale)"));
    assert_non_null(strstr(t, ">100</text>")); /* decade ticks */
    assert_non_null(strstr(t, ">10</text>"));
    assert_non_null(strstr(t, ">0.01</text>"));
    assert_non_null(strstr(t, "<polyline"));
    sbuf_free(&b);
}

static void test_empty_charts_say_no_data(void **state) {
    (void)state;
    struct sbuf b;
    sbuf_init(&b);
    struct svg_xy c = {.title = "empty", .n_series = 0};
    assert_int_equal(svg_xy(&b, &c), 0);
    assert_non_null(strstr(sbuf_str(&b), ">no data</text>"));
    sbuf_free(&b);
    sbuf_init(&b);
    struct svg_hists h = {.title = "none", .lo = 0, .hi = 1, .n_bins = 10};
    assert_int_equal(svg_hists(&b, &h), 0);
    assert_non_null(strstr(sbuf_str(&b), ">no data</text>"));
    sbuf_free(&b);
    sbuf_init(&b);
    struct svg_hists bad = {.title = "bad", .lo = 1, .hi = 0, .n_bins = 10};
    assert_int_equal(svg_hists(&b, &bad), -1);
    assert_non_null(strstr(err_msg(), "bad"));
    sbuf_free(&b);
}

/* The escapers every output format relies on. */
static void test_escapers(void **state) {
    (void)state;
    struct sbuf b;
    sbuf_init(&b);
    sbuf_json_str(&b, "a\"b\\c\n\t\x01</script>&\xC3\xA9\xFF");
    assert_string_equal(sbuf_str(&b),
                        "\"a\\\"b\\\\c\\n\\t\\u0001\\u003c/script\\u003e\\u0026\xC3\xA9\\ufffd\"");
    sbuf_free(&b);
    sbuf_init(&b);
    sbuf_csv(&b, "say \"hi\", ok");
    assert_string_equal(sbuf_str(&b), "\"say \"\"hi\"\", ok\"");
    sbuf_free(&b);
    sbuf_init(&b);
    sbuf_md(&b, "a|b_c*<x>\nnext");
    assert_string_equal(sbuf_str(&b), "a\\|b\\_c\\*&lt;x&gt; next");
    sbuf_free(&b);
    sbuf_init(&b);
    /* overlong "/", a surrogate, a truncated sequence: one U+FFFD per bad byte */
    sbuf_xml(&b, "\xC0\xAF|\xED\xA0\x80|\xE2\x82");
    assert_string_equal(sbuf_str(&b),
                        "\xEF\xBF\xBD\xEF\xBF\xBD|\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD|"
                        "\xEF\xBF\xBD\xEF\xBF\xBD");
    sbuf_free(&b);
    sbuf_init(&b);
    sbuf_num(&b, NAN, 3);
    sbuf_add(&b, " ");
    sbuf_num(&b, 0.12345, 3);
    assert_string_equal(sbuf_str(&b), "n/a 0.123");
    sbuf_free(&b);
}

int main(void) {
    h5_init();
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_plots_render_to_png),
        cmocka_unit_test(test_text_is_escaped),
        cmocka_unit_test(test_log_axes_when_values_span_decades),
        cmocka_unit_test(test_empty_charts_say_no_data),
        cmocka_unit_test(test_escapers),
    };
    return cmocka_run_group_tests_name("report_svg", tests, NULL, NULL);
}
