/* test_interp_reply.c: explainer and simulator replies in the shapes OpenAI,
 * vLLM and llama.cpp server return them (fixtures under tests/fixtures/interp
 * and the LLM client's tests/fixtures/llm) decode to the right values, and
 * garbage (wrong count, out of range, strings, fractions, prose, cut-off JSON,
 * missing logprobs, error bodies) becomes a failure with a category and a
 * sentence, never a number. Expected values were computed by hand (python) from
 * the fixtures' logprobs. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "interp/reply.h"
#include "io/atomic.h"
#include "llm/parse.h"
#include "llm/request.h"
#include "util/error.h"

/* A fixture body parsed the way the client does: chat or completions, then
 * the structured-output check when a json format was asked for. */
static enum llm_status load(const char *path, int completions, int want_logprobs, int json,
                            struct llm_response *r) {
    size_t n;
    char *body = read_file_all(path, 0, &n);
    if (!body) fail_msg("%s: %s", path, err_msg());
    enum llm_status st = completions ? llm_parse_completion(body, n, want_logprobs, r)
                                     : llm_parse_chat(body, n, want_logprobs, r);
    free(body);
    if (st != LLM_OK || !json) return st;
    struct llm_effective eff = {.format = LLM_FORMAT_JSON_SCHEMA, .max_tokens = 128};
    return llm_check_reply(r, &eff, 0);
}

#define FX(name) "tests/fixtures/interp/" name
#define LLM_FX(name) "tests/fixtures/llm/" name

static void assert_close(double got, double want, const char *what) {
    if (fabs(got - want) > 1e-9) fail_msg("%s: got %.12f, want %.12f", what, got, want);
}

static void test_explanations_are_cleaned_or_refused(void **state) {
    (void)state;
    struct {
        const char *in, *out;
    } ok[] = {
        {"Explanation: \"the word cat\".", "the word cat"},
        {"**Explanation:** time units after a number", "time units after a number"},
        {"\n\nAnswer:\n  'opening braces'  \n", "opening braces"},
        {"“negations”", "negations"},
        {"the tokens \"cat\" and \"dog\"", "the tokens \"cat\" and \"dog\""},
        {"`<|endoftext|>` tokens\nand a second line", "`<|endoftext|>` tokens"},
        {"ellipses...", "ellipses..."},
        {"a\ttab", "a tab"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char *e;
        const char *cat;
        if (reply_explanation(ok[i].in, 100, &e, &cat) != 0) fail_msg("case %zu: %s", i, err_msg());
        assert_string_equal(e, ok[i].out);
        free(e);
    }
    char *e;
    const char *cat;
    assert_int_equal(reply_explanation("  \n Explanation:  \n\"\"", 100, &e, &cat), -1);
    assert_string_equal(cat, "empty_explanation");
    assert_null(e);
    assert_int_equal(reply_explanation(NULL, 100, &e, &cat), -1);
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(reply_explanation(big, 200, &e, &cat), -1);
    assert_string_equal(cat, "explanation_too_long");
    assert_non_null(strstr(err_msg(), "299 bytes, more than the 200"));
}

static void test_json_mode_accepts_exact_integer_lists(void **state) {
    (void)state;
    struct llm_response r;
    double v[6];
    const char *cat;
    assert_int_equal(load(LLM_FX("openai_chat_structured.json"), 0, 0, 1, &r), LLM_OK);
    assert_int_equal(reply_sim_json(&r, 6, v, &cat), 0);
    double want[] = {0, 0, 3, 10, 2, 0};
    assert_memory_equal(v, want, sizeof want);
    assert_int_equal(reply_sim_json(&r, 5, v, &cat), -1); /* the window had 5 tokens */
    assert_string_equal(cat, "wrong_count");
    llm_response_free(&r);
    assert_int_equal(load(FX("llamacpp_chat_json_bare_array.json"), 0, 0, 1, &r), LLM_OK);
    assert_int_equal(reply_sim_json(&r, 4, v, &cat), 0);
    assert_true(v[3] == 3);
    llm_response_free(&r);
}

static void test_json_mode_garbage_is_a_failure_with_a_reason(void **state) {
    (void)state;
    struct {
        const char *file, *category, *words;
    } bad[] = {
        {FX("openai_chat_json_wrong_count.json"), "wrong_count", "expected 4 activations (one per token), got 3"},
        {FX("openai_chat_json_out_of_range.json"), "out_of_range", "activations[1]: 11 is outside 0..10"},
        {FX("openai_chat_json_negative.json"), "out_of_range", "activations[1]: -1"},
        {FX("vllm_chat_json_string_values.json"), "not_integer", "activations[0]: expected an integer 0..10, got a string \"0\""},
        {FX("vllm_chat_json_fraction.json"), "not_integer", "got 1.5"},
        {FX("llamacpp_chat_json_wrong_key.json"), "bad_shape", "without an \"activations\" array"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct llm_response r;
        double v[4];
        const char *cat = NULL;
        assert_int_equal(load(bad[i].file, 0, 0, 1, &r), LLM_OK);
        assert_int_equal(reply_sim_json(&r, 4, v, &cat), -1);
        assert_string_equal(cat, bad[i].category);
        if (!strstr(err_msg(), bad[i].words)) fail_msg("%s: reason '%s'", bad[i].file, err_msg());
        llm_response_free(&r);
    }
    /* Prose despite the schema, and JSON cut at max_tokens: the client flags them
     * (the stage records the client's category); unparsed content here is not_json. */
    struct llm_response r;
    assert_int_equal(load(LLM_FX("llamacpp_freetext_despite_schema.json"), 0, 0, 1, &r), LLM_ERR_BAD_OUTPUT);
    llm_response_free(&r);
    assert_int_equal(load(LLM_FX("llamacpp_freetext_despite_schema.json"), 0, 0, 0, &r), LLM_OK);
    double v[6];
    const char *cat;
    assert_int_equal(reply_sim_json(&r, 6, v, &cat), -1);
    assert_string_equal(cat, "not_json");
    assert_non_null(strstr(err_msg(), "Sure! Here are the activations"));
    llm_response_free(&r);
    assert_int_equal(load(LLM_FX("llamacpp_length_cut_json.json"), 0, 0, 1, &r), LLM_ERR_TRUNCATED);
    llm_response_free(&r);
    assert_int_equal(load(LLM_FX("llamacpp_length_cut_json.json"), 0, 0, 0, &r), LLM_OK);
    assert_int_equal(reply_sim_json(&r, 64, v, &cat), -1);
    assert_string_equal(cat, "not_json");
    llm_response_free(&r);
}

static void test_error_bodies_never_reach_the_decoders(void **state) {
    (void)state;
    struct llm_response r;
    assert_int_equal(load(LLM_FX("openrouter_200_error.json"), 0, 0, 1, &r), LLM_ERR_API_ERROR);
    assert_int_equal(load(LLM_FX("vllm_error_400.json"), 1, 1, 0, &r), LLM_ERR_API_ERROR);
    assert_int_not_equal(load(LLM_FX("llamacpp_error_500.json"), 0, 0, 1, &r), LLM_OK);
}

static void test_digit_mass_of_single_positions(void **state) {
    (void)state;
    struct llm_response r;
    double mass[11];
    assert_int_equal(load(LLM_FX("openai_chat_logprobs.json"), 0, 1, 0, &r), LLM_OK);
    double total = reply_digit_mass(&r.tokens[0], 0, NULL, mass);
    assert_close(total, exp(-0.31326166) + exp(-1.5632617) + exp(-2.8132617), "total");
    double ev = 0;
    for (int v = 0; v <= 10; v++) ev += v * mass[v] / total;
    assert_close(ev, 7.14936527580156, "openai ev");
    llm_response_free(&r);
    /* llama.cpp: 20 alternatives, "10" as one token, words and punctuation ignored */
    assert_int_equal(load(LLM_FX("llamacpp_chat_ids.json"), 0, 1, 0, &r), LLM_OK);
    total = reply_digit_mass(&r.tokens[0], 0, NULL, mass);
    ev = 0;
    for (int v = 0; v <= 10; v++) ev += v * mass[v] / total;
    assert_close(ev, 4.9924933434153695, "llama.cpp ev");
    assert_true(mass[10] > 0);
    llm_response_free(&r);
}

static void test_chat_logprobs_openai_json_reply(void **state) {
    (void)state;
    struct llm_response r;
    assert_int_equal(load(FX("openai_chat_json_logprobs.json"), 0, 1, 1, &r), LLM_OK);
    double v[4];
    const char *cat;
    if (reply_sim_chat_logprobs(&r, 4, v, &cat) != 0) fail_msg("%s: %s", cat, err_msg());
    assert_close(v[0], 0.0627855226924649, "value 0");
    assert_close(v[1], 2.752313635614586, "value 1");
    assert_close(v[2], 9.608345569664957, "value 2 (\"10\" one token)");
    assert_close(v[3], 0.8538470270385694, "value 3 (\"1\" then not \"0\")");
    assert_int_equal(reply_sim_chat_logprobs(&r, 5, v, &cat), -1);
    assert_string_equal(cat, "wrong_count");
    llm_response_free(&r);
}

static void test_chat_logprobs_llamacpp_split_digits(void **state) {
    (void)state;
    struct llm_response r;
    assert_int_equal(load(FX("llamacpp_chat_json_logprobs_split.json"), 0, 1, 1, &r), LLM_OK);
    double v[3];
    const char *cat;
    if (reply_sim_chat_logprobs(&r, 3, v, &cat) != 0) fail_msg("%s: %s", cat, err_msg());
    assert_close(v[0], 1.0020060203700156, "value 0 (\"1\" then \",\")");
    assert_close(v[1], 9.577160909636188, "value 1 (\"1\",\"0\")");
    assert_close(v[2], 0.009103059208236881, "value 2");
    /* Without logprobs (the server ignored them): a failure, not a guess. */
    struct llm_token *saved = r.tokens;
    int n_saved = r.n_tokens;
    r.tokens = NULL;
    r.n_tokens = 0;
    assert_int_equal(reply_sim_chat_logprobs(&r, 3, v, &cat), -1);
    assert_string_equal(cat, "no_logprobs");
    r.tokens = saved;
    r.n_tokens = n_saved;
    llm_response_free(&r);
}

static void test_echo_logprobs_vllm_placeholders(void **state) {
    (void)state;
    struct llm_response r;
    assert_int_equal(load(FX("vllm_completions_echo_sim.json"), 1, 1, 0, &r), LLM_OK);
    double v[3];
    const char *cat;
    if (reply_sim_echo_logprobs(&r, 3, v, &cat) != 0) fail_msg("%s: %s", cat, err_msg());
    assert_close(v[0], 0.31833186571452754, "row 0 (\"unknown\" after \"\\t\")");
    assert_close(v[1], 8.549763125297673, "row 1 (\"\\tunknown\" in one token)");
    assert_close(v[2], 0.08317269649392238, "row 2 (\"unknown\" after \".\\t\")");
    assert_int_equal(reply_sim_echo_logprobs(&r, 4, v, &cat), -1);
    assert_string_equal(cat, "misaligned");
    assert_non_null(strstr(err_msg(), "found 3"));
    llm_response_free(&r);
    /* The LLM client's echo fixture has no placeholders at all. */
    assert_int_equal(load(LLM_FX("vllm_completions_echo.json"), 1, 1, 0, &r), LLM_OK);
    assert_int_equal(reply_sim_echo_logprobs(&r, 2, v, &cat), -1);
    assert_string_equal(cat, "misaligned");
    llm_response_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explanations_are_cleaned_or_refused),
        cmocka_unit_test(test_json_mode_accepts_exact_integer_lists),
        cmocka_unit_test(test_json_mode_garbage_is_a_failure_with_a_reason),
        cmocka_unit_test(test_error_bodies_never_reach_the_decoders),
        cmocka_unit_test(test_digit_mass_of_single_positions),
        cmocka_unit_test(test_chat_logprobs_openai_json_reply),
        cmocka_unit_test(test_chat_logprobs_llamacpp_split_digits),
        cmocka_unit_test(test_echo_logprobs_vllm_placeholders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
