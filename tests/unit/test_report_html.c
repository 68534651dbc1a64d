/* test_report_html.c: the HTML report and feature browser.
 *
 * Static checks on the files (escaping of dataset and LLM text, nothing that
 * could fetch, graceful pages without a tokenizer or LLM cache), then the
 * pages opened in headless Chromium (Debian's chromium) driven over the
 * DevTools protocol on a pipe by tests/browser/check_report.js under node:
 * key elements, sorting, filtering, a feature opened, no network request, no
 * script error, screenshots saved (results/test-artifacts/ or
 * $REPORT_SHOT_DIR). The last test builds the stated size, 200 features x 40
 * windows x 64 tokens, and prints the page size and load time. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_errno.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "report/fixture.h"
#include "report/report.h"
#include "util/error.h"

struct site {
    char *root, *report;
};

static void build(struct site *s, struct report_fixture fx, bool tokenizer, bool keep_cache) {
    s->root = test_tmpdir("report-html");
    fx.results_dir = s->root;
    fx.experiment = "exp";
    fx.html_inputs = true;
    assert_true(report_fixture_write(&fx) > 0);
    char tok[2048], cmd[4200];
    report_fixture_tokenizer_path(&fx, tok, sizeof tok);
    if (!keep_cache) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s/exp/llm-cache'", s->root);
        assert_int_equal(system(cmd), 0);
    }
    struct report_settings st;
    report_settings_default(&st);
    st.results_dir = s->root, st.experiment = "exp", st.resamples = 500;
    st.tokenizer = tokenizer ? tok : NULL;
    struct report_outcome out;
    if (report_run(&st, &out) != 0) fail_msg("report_run: %s", err_msg());
    s->report = xstrdup(out.out_dir);
}

static void site_free(struct site *s) {
    test_rmtree(s->root);
    free(s->root);
    free(s->report);
}

static char *slurp(const struct site *s, const char *rel) {
    char *p = path_join(s->report, rel);
    size_t n;
    char *t = read_file_all(p, 0, &n);
    if (!t) fail_msg("%s: %s", p, err_msg());
    free(p);
    return t;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Nothing in a page may point anywhere but at other pages of the report. */
static void assert_self_contained(const char *page) {
    assert_non_null(strstr(page, "Content-Security-Policy\" content=\"default-src 'none'"));
    assert_null(strstr(page, " src="));
    assert_null(strstr(page, "<link"));
    assert_null(strstr(page, "@import"));
    assert_null(strstr(page, "url("));
    assert_null(strstr(page, "href=\"http"));
    /* the only absolute URL is the SVG namespace name, which is never fetched */
    assert_int_equal(count(page, "http"), count(page, "xmlns=\"http://www.w3.org/2000/svg\"") +
                                              count(page, "<meta http-equiv="));
}

static void test_text_is_escaped_and_nothing_is_fetched(void **state) {
    (void)state;
    struct site s;
    struct report_fixture fx = {.n_features = 20, .sae_files = true};
    build(&s, fx, true, true);
    char *index = slurp(&s, "index.html");
    char *page = slurp(&s, "sae/L1-local-lam1-s0.html");
    assert_self_contained(index);
    assert_self_contained(page);
    assert_int_equal(count(index, "<script"), 0);
    assert_non_null(strstr(index, "<a href=\"sae/L1-local-lam1-s0.html\">L1-local-lam1-s0</a>"));
    assert_non_null(strstr(index, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    /* the explanation with markup: escaped in the table, \u003c-escaped in the data */
    assert_non_null(strstr(page, "<td class=\"expl\">&lt;b&gt;bold&lt;/b&gt; &amp; "
                                 "&lt;script&gt;alert(1)&lt;/script&gt;</td>"));
    assert_non_null(strstr(page, "\\u003cb\\u003ebold\\u003c/b\\u003e \\u0026 \\u003cscript"));
    assert_null(strstr(page, "<b>bold"));
    assert_null(strstr(page, "<script>alert"));
    /* the "<script>" token of the vocabulary, the same way */
    assert_non_null(strstr(page, "\"\\u003cscript\\u003e\""));
    assert_int_equal(count(page, "<script"), 2); /* the data and the page's own code */
    assert_int_equal(count(page, "</script>"), 2);
    assert_non_null(strstr(page, "<script type=\"application/json\" id=\"data\">"));
    /* the exact prompt from the cache: the system message is in the data */
    assert_non_null(strstr(page, "You explain what makes a neuron fire."));
    free(index);
    free(page);
    site_free(&s);
}

static void test_pages_without_tokenizer_or_cache(void **state) {
    (void)state;
    struct site s;
    struct report_fixture fx = {.n_features = 10};
    build(&s, fx, false, false);
    char *page = slurp(&s, "sae/L1-e2e-lam0.5-s0.html");
    assert_non_null(strstr(page, "\"#269\"")); /* token ids instead of text */
    assert_null(strstr(page, "You explain what makes"));
    assert_non_null(strstr(page, "\"p\":null"));
    assert_non_null(strstr(page, "not in the LLM cache"));
    free(page);
    site_free(&s);
    /* no scores and no examples: the index says so and no page is made */
    struct report_fixture none = {.no_scores = true};
    s.root = test_tmpdir("report-html-none");
    none.results_dir = s.root, none.experiment = "exp";
    assert_int_equal(report_fixture_write(&none), 6);
    struct report_settings st;
    report_settings_default(&st);
    st.results_dir = s.root, st.experiment = "exp", st.resamples = 200;
    struct report_outcome out;
    assert_int_equal(report_run(&st, &out), 0);
    s.report = xstrdup(out.out_dir);
    char *index = slurp(&s, "index.html");
    assert_non_null(strstr(index, "scores: not yet computed"));
    assert_null(strstr(index, "<a href=\"sae/"));
    char *dir = path_join(s.report, "sae/L1-local-lam1-s0.html");
    assert_false(file_exists(dir));
    free(dir);
    free(index);
    site_free(&s);
}

/* ---------------------------------------------------------------------------
 * In a real browser.
 */
static const char *chromium(void) {
    static const char *const c[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser"};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        if (access(c[i], X_OK) == 0) return c[i];
    return NULL;
}

static const char *shot_dir(void) {
    const char *d = getenv("REPORT_SHOT_DIR");
    if (!d) d = "results/test-artifacts";
    assert_int_equal(mkdir_p(d), 0);
    return d;
}

static char *drive(const struct site *s, const char *page, int n_features, int per_feature) {
    char cmd[8192], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "timeout 300 node tests/browser/check_report.js %s '%s' '%s' %d %d '%s'", chromium(),
             s->report, page, n_features, per_feature, shot_dir());
    int rc = run_capture(cmd, &out);
    if (rc != 0) {
        printf("%s\n", out ? out : "(no output)");
        fail_msg("tests/browser/check_report.js failed (its output is above)");
    }
    return out;
}

static void skip_without_browser(void) {
    if (!chromium()) skip_because("chromium is absent (Debian package chromium)");
    if (system("node --version >/dev/null 2>&1") != 0) skip_because("node is absent");
}

static void test_in_headless_chromium(void **state) {
    (void)state;
    skip_without_browser();
    struct site s;
    struct report_fixture fx = {.n_features = 30, .sae_files = true};
    build(&s, fx, true, true);
    char *out = drive(&s, "L1-local-lam1-s0.html", 30, 12);
    assert_null(strstr(out, "not ok"));
    assert_true(count(out, "\nok - ") + (strncmp(out, "ok - ", 5) == 0) >= 25);
    printf("%s", strstr(out, "timing"));
    free(out);
    site_free(&s);
}

static void test_stated_size_loads_in_the_browser(void **state) {
    (void)state;
    skip_without_browser();
    struct site s;
    struct report_fixture fx = {
        .n_features = 200, .window = 64, .n_explain = 20, .n_score_top = 10, .n_random = 10};
    build(&s, fx, true, true);
    char *out = drive(&s, "L1-e2e_ds-lam1-s0.html", 200, 40);
    assert_null(strstr(out, "not ok"));
    const char *t = strstr(out, "timing ");
    assert_non_null(t);
    printf("200 features x 40 windows x 64 tokens: %s", t);
    long bytes = atol(strstr(t, "\"page_bytes\":") + 13);
    long ready = atol(strstr(t, "\"page_ready_ms\":") + 16);
    assert_true(bytes < 8L << 20); /* ~3.5 MB */
    assert_true(ready < 30000);    /* ~1 s here, even on a loaded 2-core machine */
    free(out);
    site_free(&s);
}

int main(void) {
    h5_init();
    gsl_set_error_handler_off();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_is_escaped_and_nothing_is_fetched),
        cmocka_unit_test(test_pages_without_tokenizer_or_cache),
        cmocka_unit_test(test_in_headless_chromium),
        cmocka_unit_test(test_stated_size_loads_in_the_browser),
    };
    return cmocka_run_group_tests_name("report_html", tests, NULL, NULL);
}
