/* test_llm_parse.c: the LLM client's pure parts, without a server. Real-shaped
 * replies from OpenAI, vLLM, llama.cpp and OpenRouter (tests/fixtures/llm) are
 * parsed into the right typed values or fail with the right category and a
 * message naming the JSON path; HTTP statuses map to retry/stop decisions;
 * request bodies are canonical (so cache keys are stable); the cache detects
 * corruption; the rate window, backoff and budget arithmetic hold. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/atomic.h"
#include "llm/cache.h"
#include "llm/limits.h"
#include "llm/llm.h"
#include "llm/parse.h"
#include "llm/request.h"
#include "util/error.h"

static char *fixture(const char *name, size_t *n) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/llm/%s", name);
    char *s = read_file_all(path, 0, n);
    if (!s) fail_msg("%s", err_msg());
    return s;
}

static enum llm_status parse_chat_fixture(const char *name, bool logprobs, struct llm_response *r) {
    size_t n;
    char *body = fixture(name, &n);
    enum llm_status st = llm_parse_chat(body, n, logprobs, r);
    free(body);
    return st;
}

static void test_openai_chat_with_logprobs(void **state) {
    (void)state;
    struct llm_response r;
    assert_int_equal(parse_chat_fixture("openai_chat_logprobs.json", true, &r), LLM_OK);
    assert_string_equal(r.content, "7");
    assert_string_equal(r.finish_reason, "stop");
    assert_string_equal(r.model, "gpt-4o-mini-2024-07-18");
    assert_int_equal(r.prompt_tokens, 412);
    assert_int_equal(r.completion_tokens, 1);
    assert_int_equal(r.n_tokens, 1);
    assert_string_equal(r.tokens[0].token, "7");
    assert_true(fabs(r.tokens[0].logprob + 0.31326166) < 1e-9);
    assert_int_equal(r.tokens[0].n_bytes, 1);
    assert_int_equal(r.tokens[0].bytes[0], '7');
    assert_int_equal(r.tokens[0].n_top, 3);
    assert_string_equal(r.tokens[0].top[2].token, "6");
    assert_true(fabs(r.tokens[0].top[2].logprob + 2.8132617) < 1e-9);
    assert_int_equal(r.tokens[0].text_offset, -1);
    llm_response_free(&r);
    /* logprobs not asked for: not required, not parsed */
    assert_int_equal(parse_chat_fixture("openai_chat_structured.json", false, &r), LLM_OK);
    assert_null(r.tokens);
    llm_response_free(&r);
    /* asked for but absent: an error naming the path */
    assert_int_equal(parse_chat_fixture("openai_chat_structured.json", true, &r), LLM_ERR_BAD_JSON);
    assert_string_equal(err_msg(), "choices[0].logprobs: expected an object, got null");
    assert_null(r.content);
}

static void test_structured_output_is_validated(void **state) {
    (void)state;
    struct llm_response r;
    struct llm_effective schema = {LLM_FORMAT_JSON_SCHEMA, 128, false, 0};
    assert_int_equal(parse_chat_fixture("openai_chat_structured.json", false, &r), LLM_OK);
    assert_int_equal(llm_check_reply(&r, &schema, 0), LLM_OK);
    const cJSON *a = cJSON_GetObjectItem(r.json, "activations");
    assert_int_equal(cJSON_GetArraySize(a), 6);
    assert_int_equal(cJSON_GetArrayItem(a, 3)->valueint, 10);
    llm_response_free(&r);

    /* llama.cpp answering free text although json_schema was asked for */
    assert_int_equal(parse_chat_fixture("llamacpp_freetext_despite_schema.json", false, &r),
                     LLM_OK);
    assert_int_equal(llm_check_reply(&r, &schema, 0), LLM_ERR_BAD_OUTPUT);
    assert_non_null(strstr(err_msg(), "not JSON although response_format json_schema"));
    assert_non_null(strstr(err_msg(), "Sure! Here are the activations"));
    assert_null(r.json);
    llm_response_free(&r);

    /* an array without maxItems ran into max_tokens */
    assert_int_equal(parse_chat_fixture("llamacpp_length_cut_json.json", false, &r), LLM_OK);
    assert_int_equal(llm_check_reply(&r, &schema, 0), LLM_ERR_TRUNCATED);
    assert_non_null(
        strstr(err_msg(), "finish_reason \"length\": the reply reached max_tokens (128)"));
    /* the same text is fine when no JSON was asked for */
    struct llm_effective text = {LLM_FORMAT_TEXT, 128, false, 0};
    assert_int_equal(llm_check_reply(&r, &text, 0), LLM_OK);
    /* a prompt the server cut */
    assert_int_equal(llm_check_reply(&r, &text, 900), LLM_ERR_PROMPT_CUT);
    assert_non_null(strstr(err_msg(), "usage.prompt_tokens is 700, expected at least 900"));
    llm_response_free(&r);
}

static void test_llamacpp_ids_and_twenty_alternatives(void **state) {
    (void)state;
    struct llm_response r;
    assert_int_equal(parse_chat_fixture("llamacpp_chat_ids.json", true, &r), LLM_OK);
    assert_string_equal(r.content, "5");
    assert_int_equal(r.n_tokens, 1);
    assert_int_equal(r.tokens[0].n_top, 20);
    assert_string_equal(r.tokens[0].top[5].token, "10");
    assert_string_equal(r.tokens[0].top[18].token, "five");
    assert_true(fabs(r.tokens[0].top[1].logprob + 4.2713623046875) < 1e-12);
    assert_string_equal(r.model, "qwen2.5-7b-instruct-q4_k_m.gguf");
    llm_response_free(&r);
}

static void test_vllm_completion_with_echo(void **state) {
    (void)state;
    size_t n;
    char *body = fixture("vllm_completions_echo.json", &n);
    struct llm_response r;
    assert_int_equal(llm_parse_completion(body, n, true, &r), LLM_OK);
    assert_string_equal(r.content, "<|begin_of_text|>The cat sat on the mat");
    assert_int_equal(r.n_tokens, 7);
    assert_true(isnan(r.tokens[0].logprob));
    assert_int_equal(r.tokens[0].n_top, 0);
    assert_string_equal(r.tokens[2].token, " cat");
    assert_true(fabs(r.tokens[2].logprob + 6.25) < 1e-12);
    assert_int_equal(r.tokens[2].n_top, 2);
    assert_string_equal(r.tokens[2].top[1].token, ",");
    for (int i = 0; i < r.n_tokens; i++) /* offsets point at the tokens in the text */
        assert_memory_equal(r.content + r.tokens[i].text_offset, r.tokens[i].token,
                            strlen(r.tokens[i].token));
    assert_int_equal(r.completion_tokens, 0);
    assert_string_equal(r.finish_reason, "length");
    llm_response_free(&r);

    /* a logprobs array shorter than tokens */
    char *bad = strdup(body);
    char *p = strstr(bad, "\"token_logprobs\":[null,");
    memmove(p + 18, p + 23, strlen(p + 23) + 1); /* drop the leading null */
    assert_int_equal(llm_parse_completion(bad, strlen(bad), true, &r), LLM_ERR_BAD_JSON);
    assert_string_equal(
        err_msg(), "choices[0].logprobs.token_logprobs: expected 7 entries like tokens, got 6");
    free(bad);
    free(body);
}

static void test_missing_and_mistyped_fields_name_their_path(void **state) {
    (void)state;
    struct llm_response r;
    assert_int_equal(parse_chat_fixture("chat_usage_missing.json", false, &r), LLM_ERR_BAD_JSON);
    assert_string_equal(err_msg(), "usage: expected an object, got nothing (missing)");
    assert_int_equal(parse_chat_fixture("chat_token_mistyped.json", true, &r), LLM_ERR_BAD_JSON);
    assert_string_equal(err_msg(),
                        "choices[0].logprobs.content[1].logprob: expected a number, got a string");
    const char *cases[][2] = {
        {"{\"choices\":[]}", "choices: expected a non-empty array, got an empty array"},
        {"{\"choices\":[1]}", "choices[0]: expected an object, got a number"},
        {"{\"choices\":[{\"message\":{\"content\":null}}]}",
         "choices[0].message.content: expected a string, got null"},
        {"{\"choices\":[{\"message\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}],"
         "\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":1}}",
         "usage.prompt_tokens: expected a non-negative integer, got -3"},
        {"[1,2]", "response: expected a JSON object, got an array"},
        {"", "response body is empty"},
        {"{\"choices\":[{\"message\":{\"content\":\"abc",
         "truncated JSON: the body ends after 38 bytes inside an unfinished value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_int_equal(llm_parse_chat(cases[i][0], strlen(cases[i][0]), false, &r),
                         LLM_ERR_BAD_JSON);
        assert_string_equal(err_msg(), cases[i][1]);
    }
    const char *garbage = "{\"choices\": [oops}";
    assert_int_equal(llm_parse_chat(garbage, strlen(garbage), false, &r), LLM_ERR_BAD_JSON);
    assert_non_null(strstr(err_msg(), "invalid JSON at byte"));
    const char *cut[] = {"{\"a\": [1, 2", "{\"a\": tru", "{\"a\":", "{\"a\": {\"b\": \"x\\\""};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(llm_parse_chat(cut[i], strlen(cut[i]), false, &r), LLM_ERR_BAD_JSON);
        if (!strstr(err_msg(), "truncated JSON")) fail_msg("'%s': %s", cut[i], err_msg());
    }
    const char *broken[] = {"{\"a\": [1, 2}", "{\"a\": trux, \"b\": [", "{\"a\" 1, \"b\": ["};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(llm_parse_chat(broken[i], strlen(broken[i]), false, &r), LLM_ERR_BAD_JSON);
        if (!strstr(err_msg(), "invalid JSON at byte")) fail_msg("'%s': %s", broken[i], err_msg());
    }
    const char *trailing = "{\"a\":1} extra";
    assert_int_equal(llm_parse_chat(trailing, strlen(trailing), false, &r), LLM_ERR_BAD_JSON);
    assert_string_equal(err_msg(), "invalid JSON at byte 8 of 13, near 'extra'");
}

static void test_error_bodies(void **state) {
    (void)state;
    struct {
        const char *file;
        long http;
        enum llm_status status;
        bool retry, stop;
        const char *text;
    } cases[] = {
        {"openai_error_401.json", 401, LLM_ERR_HTTP_4XX, false, true, "Incorrect API key provided"},
        {"openai_error_429.json", 429, LLM_ERR_HTTP_4XX, true, false,
         "(type tokens, code rate_limit_exceeded)"},
        {"openai_error_404_model.json", 404, LLM_ERR_HTTP_4XX, false, true, "does not exist"},
        {"openrouter_402.json", 402, LLM_ERR_HTTP_4XX, false, true,
         "upgrade to a paid account (code 402)"},
        {"llamacpp_error_500.json", 500, LLM_ERR_HTTP_5XX, true, false,
         "exceeds the available context size, try increasing it (type server_error, code 500)"},
        {"vllm_error_400.json", 400, LLM_ERR_HTTP_4XX, false, false,
         "maximum context length is 8192 tokens"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n;
        char *body = fixture(cases[i].file, &n);
        char *msg = llm_error_message(body, n);
        if (!strstr(msg, cases[i].text)) fail_msg("%s: message '%s'", cases[i].file, msg);
        struct llm_http_verdict v = llm_judge_http(cases[i].http);
        assert_int_equal(v.status, cases[i].status);
        assert_int_equal(v.retry, cases[i].retry);
        assert_int_equal(v.stop_batch, cases[i].stop);
        free(msg);
        free(body);
    }
    /* an error inside HTTP 200 (OpenRouter, and vLLM's object "error") */
    struct llm_response r;
    assert_int_equal(parse_chat_fixture("openrouter_200_error.json", false, &r), LLM_ERR_API_ERROR);
    assert_string_equal(err_msg(),
                        "API error in an HTTP 200 reply: Provider returned error (code 502)");
    size_t n;
    char *body = fixture("vllm_error_400.json", &n);
    assert_int_equal(llm_parse_completion(body, n, false, &r), LLM_ERR_API_ERROR);
    assert_non_null(strstr(err_msg(), "(type BadRequestError, code 400)"));
    free(body);
    /* a non-JSON error page */
    char *msg = llm_error_message("<html>502 Bad Gateway</html>\n", 29);
    assert_string_equal(msg, "body: <html>502 Bad Gateway</html> ");
    free(msg);
}

static void test_models_list(void **state) {
    (void)state;
    size_t n;
    char *body = fixture("openai_models.json", &n);
    char **ids;
    int k;
    assert_int_equal(llm_parse_models(body, n, &ids, &k), 0);
    assert_int_equal(k, 3);
    assert_string_equal(ids[1], "gpt-4o");
    llm_free_models(ids, k);
    free(body);
    const char *bad = "{\"data\":[{\"id\":\"a\"},{\"name\":\"b\"}]}";
    assert_int_equal(llm_parse_models(bad, strlen(bad), &ids, &k), -1);
    assert_string_equal(err_msg(), "data[1].id: expected a string, got nothing (missing)");
}

/* ---- requests and their keys ---- */

static void test_bodies_are_canonical_and_keys_stable(void **state) {
    (void)state;
    struct llm_endpoint_config cfg;
    llm_endpoint_config_init(&cfg);
    cfg.base_url = "http://127.0.0.1:1/v1";
    cfg.model = "m";
    cfg.seed = 42;
    struct llm_message msgs[] = {{"system", "be brief"}, {"user", "hi"}};
    struct llm_request req = {.messages = msgs,
                              .n_messages = 2,
                              .format = LLM_FORMAT_JSON_SCHEMA,
                              .schema_json =
                                  "{\"type\":\"object\",\"properties\":{\"b\":{},\"a\":{}}}"};
    struct llm_effective eff;
    char *body = llm_build_body(&cfg, &req, &eff);
    assert_string_equal(
        body, "{\"max_tokens\":256,\"messages\":[{\"content\":\"be brief\",\"role\":\"system\"},"
              "{\"content\":\"hi\",\"role\":\"user\"}],\"model\":\"m\",\"response_format\":{"
              "\"json_schema\":{\"name\":\"reply\",\"schema\":{\"properties\":{\"a\":{},\"b\":{}},"
              "\"type\":\"object\"},\"strict\":true},\"type\":\"json_schema\"},\"seed\":42,"
              "\"temperature\":0}");
    assert_int_equal(eff.format, LLM_FORMAT_JSON_SCHEMA);
    char k1[65], k2[65], k3[65];
    llm_request_key("POST", "/v1/chat/completions", body, k1);
    /* the same schema written in another key order gives the same key */
    req.schema_json = "{\"properties\":{\"a\":{},\"b\":{}},\"type\":\"object\"}";
    char *body2 = llm_build_body(&cfg, &req, NULL);
    llm_request_key("POST", "/v1/chat/completions", body2, k2);
    assert_string_equal(k1, k2);
    /* another temperature is another request; the API key is not part of it */
    cfg.temperature = 0.7;
    cfg.api_key_env = "SOME_KEY";
    char *body3 = llm_build_body(&cfg, &req, NULL);
    llm_request_key("POST", "/v1/chat/completions", body3, k3);
    assert_string_not_equal(k1, k3);
    assert_null(strstr(body3, "SOME_KEY"));
    free(body);
    free(body2);
    free(body3);
    /* bad inputs name the field */
    req.schema_json = "{\"type\":";
    assert_null(llm_build_body(&cfg, &req, NULL));
    assert_non_null(strstr(err_msg(), "request.schema_json: invalid JSON"));
    struct llm_request none = {.api = LLM_API_COMPLETIONS};
    assert_null(llm_build_body(&cfg, &none, NULL));
    assert_string_equal(err_msg(),
                        "request.prompt: a completions request needs a prompt, got NULL");
    assert_string_equal(llm_url_path("https://openrouter.ai/api/v1/chat/completions"),
                        "/api/v1/chat/completions");
    assert_int_equal(
        llm_estimate_tokens(&(struct llm_request){.messages = msgs, .n_messages = 2}, 10),
        (10 + 2 + 2) / 3 + 4 + 8 + 10);
}

/* ---- the cache ---- */

static void test_cache_roundtrip_and_corruption(void **state) {
    (void)state;
    char *dir = test_tmpdir("llmcache");
    const char *req = "{\"model\":\"m\",\"prompt\":\"x\"}";
    const char *resp = "{\"choices\":[{\"text\":\"y\"}]}\n";
    char key[65];
    llm_request_key("POST", "/v1/completions", req, key);
    char *body;
    size_t n;
    assert_int_equal(llm_cache_get(dir, key, &body, &n), 0);
    assert_int_equal(llm_cache_put(dir, key, "POST", "/v1/completions", req, resp, strlen(resp)),
                     0);
    assert_int_equal(llm_cache_get(dir, key, &body, &n), 1);
    assert_int_equal(n, strlen(resp));
    assert_string_equal(body, resp);
    free(body);
    char *path = llm_cache_path(dir, key);
    size_t len;
    char *text = read_file_all(path, 0, &len);
    /* flip one character of the stored reply: the digest no longer matches */
    char *y = strstr(text, "\\\"y\\\"");
    y[2] = 'z';
    write_file(path, text, len);
    assert_int_equal(llm_cache_get(dir, key, &body, &n), -1);
    assert_non_null(strstr(err_msg(), "response: does not match response_sha256"));
    /* a torn file */
    write_file(path, text, len / 2);
    assert_int_equal(llm_cache_get(dir, key, &body, &n), -1);
    assert_non_null(strstr(err_msg(), "not valid JSON"));
    /* an entry stored under another request's key */
    char other[65];
    llm_request_key("POST", "/v1/completions", "{\"model\":\"m\",\"prompt\":\"other\"}", other);
    assert_int_equal(llm_cache_put(dir, other, "POST", "/v1/completions", req, resp, strlen(resp)),
                     0);
    assert_int_equal(llm_cache_get(dir, other, &body, &n), -1);
    assert_non_null(strstr(err_msg(), "request: does not hash to the key"));
    free(text);
    free(path);
    test_rmtree(dir);
    free(dir);
}

/* ---- pacing arithmetic ---- */

static void test_rate_window(void **state) {
    (void)state;
    struct llm_rate r;
    llm_rate_init(&r, 60, 3, 0);
    assert_true(llm_rate_wait(&r, 100, 1) == 0);
    llm_rate_record(&r, 100, 1);
    llm_rate_record(&r, 110, 1);
    llm_rate_record(&r, 120, 1);
    assert_true(fabs(llm_rate_wait(&r, 125, 1) - 35) < 1e-9); /* until 100 leaves */
    assert_true(llm_rate_wait(&r, 160, 1) == 0);
    llm_rate_free(&r);

    llm_rate_init(&r, 60, 0, 1000);
    long long a = llm_rate_record(&r, 0, 600);
    llm_rate_record(&r, 1, 300);
    assert_true(fabs(llm_rate_wait(&r, 2, 200) - 58) < 1e-9);
    llm_rate_settle(&r, a, 100); /* the reply used less than estimated */
    assert_true(llm_rate_wait(&r, 2, 200) == 0);
    assert_true(llm_rate_wait(&r, 2, 5000) > 0); /* too big beside others: waits */
    llm_rate_free(&r);
    llm_rate_init(&r, 60, 0, 1000);
    assert_true(llm_rate_wait(&r, 0, 5000) == 0); /* ... but runs alone */
    for (int i = 0; i < 200; i++)
        llm_rate_record(&r, i * 0.5, 1); /* ring growth */
    assert_true(llm_rate_wait(&r, 100, 1) == 0);
    llm_rate_free(&r);
}

static void test_backoff_and_budget(void **state) {
    (void)state;
    uint64_t rng = 12345;
    for (int attempt = 1; attempt <= 12; attempt++) {
        double d = 500.0 * (1 << (attempt - 1));
        if (d > 8000) d = 8000;
        for (int k = 0; k < 50; k++) {
            double b = llm_backoff_ms(attempt, 500, 8000, &rng);
            assert_true(b >= d / 2 && b <= d);
        }
    }
    struct llm_budget b = {.max_requests = 3, .max_tokens = 1000, .max_cost_usd = 1.0};
    char why[200];
    assert_true(llm_budget_fits(&b, 400, 0.3, why, sizeof why));
    llm_budget_reserve(&b, 400, 0.3);
    assert_true(llm_budget_fits(&b, 500, 0.3, why, sizeof why));
    assert_false(llm_budget_fits(&b, 700, 0.3, why, sizeof why));
    assert_non_null(strstr(why, "max_tokens 1000 would be passed (spent 0, 400 reserved"));
    llm_budget_settle(&b, 400, 0.3, 120, 0.9);
    assert_int_equal(b.tokens, 120);
    assert_int_equal(b.reserved_tokens, 0);
    assert_false(llm_budget_fits(&b, 10, 0.2, why, sizeof why));
    assert_non_null(strstr(why, "max_cost_usd"));
    b.requests = 3;
    assert_false(llm_budget_fits(&b, 1, 0, why, sizeof why));
    assert_string_equal(why, "max_requests 3 reached");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_chat_with_logprobs),
        cmocka_unit_test(test_structured_output_is_validated),
        cmocka_unit_test(test_llamacpp_ids_and_twenty_alternatives),
        cmocka_unit_test(test_vllm_completion_with_echo),
        cmocka_unit_test(test_missing_and_mistyped_fields_name_their_path),
        cmocka_unit_test(test_error_bodies),
        cmocka_unit_test(test_models_list),
        cmocka_unit_test(test_bodies_are_canonical_and_keys_stable),
        cmocka_unit_test(test_cache_roundtrip_and_corruption),
        cmocka_unit_test(test_rate_window),
        cmocka_unit_test(test_backoff_and_budget),
    };
    return cmocka_run_group_tests_name("llm_parse", tests, NULL, NULL);
}
