/* test_interp_prompts.c: the shipped templates load; the set hash follows its
 * documented formula and moves with any byte; bad templates (unknown, missing
 * or malformed placeholders, missing files, broken few-shot turns) are errors
 * naming the file; rendering substitutes and reports where values landed. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "interp/prompts.h"
#include "io/atomic.h"
#include "util/error.h"
#include "util/sha256.h"

static void test_shipped_templates_load_with_worked_examples(void **state) {
    (void)state;
    struct prompt_set ps;
    if (prompt_set_load(&ps, "prompts") != 0) fail_msg("%s", err_msg());
    assert_int_equal(strlen(ps.sha256), 64);
    assert_int_equal(ps.n_explain_shots, 4);
    assert_string_equal(ps.explain_shots[0].role, "user");
    assert_string_equal(ps.explain_shots[1].role, "assistant");
    assert_non_null(strstr(ps.explain_shots[0].content, "␣minutes\t10"));
    assert_null(strstr(ps.explain_shots[0].content, "Worked examples")); /* comment dropped */
    assert_int_equal(ps.n_simulate_shots, 2);
    assert_non_null(strstr(ps.simulate_shots[1].content, "\"activations\""));
    prompt_set_free(&ps);
}

static void test_hash_is_the_documented_digest(void **state) {
    (void)state;
    struct prompt_set ps;
    assert_int_equal(prompt_set_load(&ps, "prompts"), 0);
    struct sha256_ctx c;
    sha256_init(&c);
    for (int i = 0; i < PROMPT_N; i++) {
        char path[256], head[128];
        snprintf(path, sizeof path, "prompts/%s", prompt_file_name(i));
        size_t n;
        char *text = read_file_all(path, 0, &n);
        assert_non_null(text);
        int h = snprintf(head, sizeof head, "%s\n%zu\n", prompt_file_name(i), n);
        sha256_update(&c, head, (size_t)h);
        sha256_update(&c, text, n);
        free(text);
    }
    uint8_t d[32];
    char hex[65];
    sha256_final(&c, d);
    sha256_to_hex(d, hex);
    assert_string_equal(ps.sha256, hex);
    prompt_set_free(&ps);
}

/* A copy of prompts/ in a temporary directory with one file replaced. */
static char *copy_with(const char *file, const char *text) {
    char *dir = test_tmpdir("prompts");
    for (int i = 0; i < PROMPT_N; i++) {
        char src[256];
        snprintf(src, sizeof src, "prompts/%s", prompt_file_name(i));
        size_t n;
        char *t = read_file_all(src, 0, &n);
        char *dst = path_join(dir, prompt_file_name(i));
        if (file && strcmp(file, prompt_file_name(i)) == 0) {
            if (text) write_file(dst, text, strlen(text));
        } else {
            write_file(dst, t, n);
        }
        free(dst);
        free(t);
    }
    return dir;
}

static void expect_error(const char *file, const char *text, const char *want1, const char *want2) {
    char *dir = copy_with(file, text);
    struct prompt_set ps;
    if (prompt_set_load(&ps, dir) == 0) fail_msg("%s: loaded although it should fail", file);
    if (!strstr(err_msg(), want1) || (want2 && !strstr(err_msg(), want2)))
        fail_msg("error '%s' lacks '%s' / '%s'", err_msg(), want1, want2 ? want2 : "");
    test_rmtree(dir);
    free(dir);
}

static void test_bad_templates_are_errors_naming_the_file(void **state) {
    (void)state;
    expect_error("explain_user.txt", "{{windows}}\n{{sparse_view}}\n{{foo}}\n",
                 "explain_user.txt:3: unknown placeholder {{foo}}", "windows, sparse_view");
    expect_error("explain_window.txt", "Excerpt {{index}}\n", "explain_window.txt",
                 "missing placeholder {{rows}}");
    expect_error("simulate_user.txt", "{{explanation}} {{ tokens}}\n", "simulate_user.txt:1",
                 "does not start a placeholder");
    expect_error("simulate_logprobs.txt", NULL, "simulate_logprobs.txt", NULL); /* missing file */
    expect_error("explain_system.txt", "Explain {{windows}}", "explain_system.txt:1",
                 "may use: none");
    expect_error("explain_fewshot.txt", "### assistant\nhi\n", "explain_fewshot.txt:1",
                 "expected a \"### user\" section");
    expect_error("simulate_fewshot.txt", "### user\nq\n### assistant\na\n### user\nq2\n",
                 "simulate_fewshot.txt", "has no \"### assistant\" answer");
    expect_error("simulate_fewshot.txt", "### user\n\n### assistant\na\n",
                 "simulate_fewshot.txt:1", "section is empty");
}

static void test_any_byte_moves_the_hash(void **state) {
    (void)state;
    struct prompt_set a, b;
    assert_int_equal(prompt_set_load(&a, "prompts"), 0);
    size_t n;
    char *t = read_file_all("prompts/simulate_system.txt", 0, &n);
    t[n - 2] ^= 1;
    char *dir = copy_with("simulate_system.txt", t);
    assert_int_equal(prompt_set_load(&b, dir), 0);
    assert_string_not_equal(a.sha256, b.sha256);
    assert_string_equal(b.dir, dir);
    prompt_set_free(&a);
    prompt_set_free(&b);
    free(t);
    test_rmtree(dir);
    free(dir);
}

static void test_render_substitutes_and_reports_offsets(void **state) {
    (void)state;
    char *dir = copy_with("simulate_logprobs.txt", "A {{explanation}} B {{rows}} C {{explanation}}\n");
    struct prompt_set ps;
    assert_int_equal(prompt_set_load(&ps, dir), 0);
    struct prompt_var vars[] = {{"rows", "r1\nr2"}, {"explanation", "the word cat"}, {"unused", "x"}};
    size_t off[3];
    char *out = prompt_render(&ps, PROMPT_SIMULATE_LOGPROBS, vars, 3, off);
    assert_string_equal(out, "A the word cat B r1\nr2 C the word cat\n");
    assert_int_equal(off[0], 17);
    assert_int_equal(off[1], 2);
    assert_int_equal(off[2], (size_t)-1);
    free(out);
    assert_null(prompt_render(&ps, PROMPT_SIMULATE_LOGPROBS, vars, 1, NULL));
    assert_non_null(strstr(err_msg(), "simulate_logprobs.txt: placeholder {{explanation}} has no value"));
    prompt_set_free(&ps);
    test_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_templates_load_with_worked_examples),
        cmocka_unit_test(test_hash_is_the_documented_digest),
        cmocka_unit_test(test_bad_templates_are_errors_naming_the_file),
        cmocka_unit_test(test_any_byte_moves_the_hash),
        cmocka_unit_test(test_render_substitutes_and_reports_offsets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
