/* test_llm_faults.c: every way a server can fail, against the local test server.
 * Retried failures (429 with Retry-After in seconds or as an HTTP date, 5xx,
 * dropped and reset connections, timeouts) end in success when the fault
 * passes and in a categorised failure when it does not; 401/402 stop the batch;
 * errors inside HTTP 200, malformed and truncated JSON, cut prompts, cut JSON
 * and free text where JSON was asked for each fail with their own reason. The
 * server's log is the witness: no request lost, none answered twice. */
#include "../servers/llm_fixture.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util/log.h"

/* Replace request i's text (keeping its tag) with one carrying a directive. */
static void set_text(struct llm_fx *fx, int i, const char *directive) {
    free(fx->texts[i]);
    size_t n = strlen(directive) + 64;
    fx->texts[i] = malloc(n);
    snprintf(fx->texts[i], n, "[[tag:f%d]] %s question %d", i, directive, i);
    fx->msgs[i].content = fx->texts[i];
}

/* Receipt times of a tag in the server log. */
static int receipt_times(struct llm_fx *fx, const char *tag, double *t, int max) {
    cJSON *log = test_server_log(&fx->srv);
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, log) {
        if (strcmp(cJSON_GetObjectItem(e, "tag")->valuestring, tag) == 0 && n < max)
            t[n++] = cJSON_GetObjectItem(e, "t")->valuedouble;
    }
    cJSON_Delete(log);
    return n;
}

static void test_random_faults_lose_and_duplicate_nothing(void **state) {
    struct llm_fx *fx = *state;
    const char *args[] = {"--fault-rate", "0.3", "--fault-seed", "7", NULL};
    llm_fx_server(fx, args);
    fx->cfg.concurrency = 8;
    fx->cfg.max_retries = 15;
    fx->cfg.backoff_base_ms = 5;
    fx->cfg.backoff_max_ms = 40;
    llm_fx_client(fx);
    llm_fx_requests(fx, 60, "z", NULL);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), 0);
    llm_fx_assert_each_done_once(fx);
    assert_int_equal(llm_fx_count_status(fx, LLM_OK), 60);
    const struct llm_stats *s = llm_client_stats(fx->c);
    int total = test_server_count(&fx->srv, NULL, NULL);
    int faulted = total - test_server_count(&fx->srv, NULL, "");
    assert_true(faulted > 5); /* the faults did happen */
    assert_int_equal(s->http_calls, total);
    assert_int_equal(s->retries, faulted);
    for (int i = 0; i < fx->n; i++) {
        /* exactly one clean answer per request, and its attempts are all logged */
        const char *tag = llm_fx_tag("z", i);
        assert_int_equal(test_server_count(&fx->srv, tag, ""), 1);
        assert_int_equal(test_server_count(&fx->srv, tag, NULL), fx->reqs[i].result.attempts);
        char want[32];
        snprintf(want, sizeof want, "ok z%d:", i);
        assert_non_null(strstr(fx->reqs[i].result.resp.content, want));
    }
}

static void test_retry_after_seconds_is_honoured(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    fx->cfg.backoff_base_ms = 10; /* without Retry-After the retry would come at once */
    llm_fx_client(fx);
    llm_fx_requests(fx, 1, "f", NULL);
    set_text(fx, 0, "[[fault:429 retry_after=1 times=1]]");
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, 1, NULL, NULL), 0);
    assert_int_equal(fx->reqs[0].result.status, LLM_OK);
    assert_int_equal(fx->reqs[0].result.attempts, 2);
    double t[4];
    assert_int_equal(receipt_times(fx, "f0", t, 4), 2);
    print_message("Retry-After: 1 -> retried after %.3f s\n", t[1] - t[0]);
    assert_true(t[1] - t[0] >= 0.95);
    assert_true(t[1] - t[0] < 1.8);
}

static void test_retry_after_http_date_is_honoured(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    fx->cfg.backoff_base_ms = 10;
    llm_fx_client(fx);
    llm_fx_requests(fx, 1, "f", NULL);
    /* a date 2 s ahead, in whole seconds: the wait is between 1 and 2 s */
    set_text(fx, 0, "[[fault:429 date=2 times=1]]");
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, 1, NULL, NULL), 0);
    assert_int_equal(fx->reqs[0].result.status, LLM_OK);
    double t[4];
    assert_int_equal(receipt_times(fx, "f0", t, 4), 2);
    print_message("Retry-After: <date +2 s> -> retried after %.3f s\n", t[1] - t[0]);
    assert_true(t[1] - t[0] >= 0.9);
    assert_true(t[1] - t[0] < 2.9);
}

static void test_transient_failures_are_retried(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    fx->cfg.concurrency = 4;
    fx->cfg.max_retries = 3;
    llm_fx_client(fx);
    llm_fx_requests(fx, 6, "f", NULL);
    set_text(fx, 0, "[[fault:drop times=1]]");
    set_text(fx, 1, "[[fault:503 times=2]]");
    set_text(fx, 2, "[[fault:reset times=1]]");
    set_text(fx, 3, "[[fault:500 times=1]]");
    set_text(fx, 4, "[[fault:500]]"); /* never recovers: given up after 1 + 3 attempts */
    set_text(fx, 5, "[[fault:429 retry_after=0]]");
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), 0);
    llm_fx_assert_each_done_once(fx);
    int want_attempts[] = {2, 3, 2, 2, 4, 4};
    for (int i = 0; i < 4; i++)
        assert_int_equal(fx->reqs[i].result.status, LLM_OK);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(fx->reqs[i].result.attempts, want_attempts[i]);
        assert_int_equal(test_server_count(&fx->srv, llm_fx_tag("f", i), NULL), want_attempts[i]);
    }
    struct llm_result *r = &fx->reqs[4].result;
    assert_int_equal(r->status, LLM_ERR_HTTP_5XX);
    assert_int_equal(r->http_status, 500);
    assert_non_null(strstr(r->error, "HTTP 500 from POST /v1/chat/completions"));
    assert_non_null(
        strstr(r->error, "exceeds the available context size")); /* llama.cpp's message */
    assert_non_null(strstr(r->error, "gave up after 4 attempts"));
    r = &fx->reqs[5].result;
    assert_int_equal(r->status, LLM_ERR_HTTP_4XX);
    assert_non_null(strstr(r->error, "rate_limit_exceeded"));
}

static void test_timeouts_are_retried_then_reported(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    fx->cfg.timeout_ms = 300;
    fx->cfg.max_retries = 1;
    fx->cfg.concurrency = 2;
    llm_fx_client(fx);
    llm_fx_requests(fx, 2, "f", NULL);
    set_text(fx, 0, "[[fault:slow ms=700 times=1]]");
    set_text(fx, 1, "[[fault:slow ms=700]]");
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), 0);
    assert_int_equal(fx->reqs[0].result.status, LLM_OK);
    assert_int_equal(fx->reqs[0].result.attempts, 2);
    assert_int_equal(fx->reqs[1].result.status, LLM_ERR_TIMEOUT);
    assert_int_equal(fx->reqs[1].result.attempts, 2);
    assert_non_null(strstr(fx->reqs[1].result.error, "timeout_ms 300"));
}

static void test_bad_key_401_stops_the_batch(void **state) {
    struct llm_fx *fx = *state;
    const char *args[] = {"--require-key", "right-key-123", NULL};
    llm_fx_server(fx, args);
    setenv("LLM_TEST_WRONG_KEY", "wrong-key-456789", 1);
    fx->cfg.api_key_env = "LLM_TEST_WRONG_KEY";
    fx->cfg.concurrency = 2;
    llm_fx_client(fx);
    llm_fx_requests(fx, 10, "a", NULL);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), -1);
    llm_fx_assert_each_done_once(fx);
    assert_non_null(strstr(err_msg(), "HTTP 401"));
    assert_non_null(strstr(err_msg(), "API key was refused"));
    assert_null(strstr(err_msg(), "wrong-key-456789")); /* the server quoted it; we do not */
    /* the two in flight failed with 401 (never retried), the rest were never sent */
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 2);
    assert_int_equal(llm_fx_count_status(fx, LLM_ERR_HTTP_4XX), 2);
    assert_int_equal(llm_fx_count_status(fx, LLM_ERR_ABORTED), 8);
    assert_non_null(
        strstr(fx->reqs[9].result.error, "not attempted: run stopped because HTTP 401"));
    assert_int_equal(fx->reqs[9].result.attempts, 0);
    /* sticky: a bad key stays bad */
    assert_non_null(llm_client_stopped(fx->c));
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, 3, NULL, NULL), -1);
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 2);
    unsetenv("LLM_TEST_WRONG_KEY");
}

static void test_no_credit_402_stops_the_batch(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    const char *hdr[] = {"X-Test-Fault: 402"};
    fx->cfg.headers = hdr;
    fx->cfg.n_headers = 1;
    fx->cfg.concurrency = 1;
    llm_fx_client(fx);
    llm_fx_requests(fx, 5, "a", NULL);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), -1);
    llm_fx_assert_each_done_once(fx);
    assert_non_null(strstr(err_msg(), "HTTP 402"));
    assert_non_null(strstr(err_msg(), "Insufficient credits"));
    assert_int_equal(fx->reqs[0].result.status, LLM_ERR_HTTP_4XX);
    assert_int_equal(fx->reqs[0].result.attempts, 1);
    assert_int_equal(llm_fx_count_status(fx, LLM_ERR_ABORTED), 4);
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 1);
}

static void test_missing_key_variable_stops_before_sending(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    unsetenv("LLM_TEST_ABSENT_KEY");
    fx->cfg.api_key_env = "LLM_TEST_ABSENT_KEY";
    llm_fx_client(fx);
    llm_fx_requests(fx, 3, "a", NULL);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), -1);
    assert_non_null(strstr(err_msg(), "LLM_TEST_ABSENT_KEY (api_key_env) is not set"));
    assert_int_equal(llm_fx_count_status(fx, LLM_ERR_ABORTED), 3);
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 0);
}

static void test_client_errors_fail_alone(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    llm_fx_client(fx);
    llm_fx_requests(fx, 3, "f", NULL);
    set_text(fx, 1, "[[fault:400]]"); /* context too long: this request's problem only */
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), 0);
    assert_int_equal(fx->reqs[0].result.status, LLM_OK);
    assert_int_equal(fx->reqs[2].result.status, LLM_OK);
    struct llm_result *r = &fx->reqs[1].result;
    assert_int_equal(r->status, LLM_ERR_HTTP_4XX);
    assert_int_equal(r->attempts, 1);
    assert_non_null(strstr(r->error, "HTTP 400"));
    assert_non_null(strstr(r->error, "maximum context length"));
    assert_non_null(strstr(r->error, "context_length_exceeded"));
}

static void test_bad_replies_fail_with_their_reason(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    llm_fx_client(fx);
    llm_fx_requests(fx, 4, "f", NULL);
    set_text(fx, 0, "[[fault:error200]]");
    set_text(fx, 1, "[[fault:malformed]]");
    set_text(fx, 2, "[[fault:truncated]]");
    set_text(fx, 3, "[[fault:nullcontent]]");
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), 0);
    llm_fx_assert_each_done_once(fx);
    struct llm_result *r = fx->reqs[0].result.status ? &fx->reqs[0].result : NULL;
    assert_non_null(r);
    assert_int_equal(r->status, LLM_ERR_API_ERROR);
    assert_non_null(strstr(r->error, "API error in an HTTP 200 reply: upstream provider failed"));
    r = &fx->reqs[1].result;
    assert_int_equal(r->status, LLM_ERR_BAD_JSON);
    assert_non_null(strstr(r->error, "invalid JSON at byte"));
    r = &fx->reqs[2].result;
    assert_int_equal(r->status, LLM_ERR_BAD_JSON);
    assert_non_null(strstr(r->error, "truncated JSON"));
    r = &fx->reqs[3].result;
    assert_int_equal(r->status, LLM_ERR_BAD_JSON);
    assert_string_equal(r->error, "choices[0].message.content: expected a string, got null");
    /* none of these is retried */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(fx->reqs[i].result.attempts, 1);
        assert_null(fx->reqs[i].result.resp.content);
    }
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 4);
}

static const char *ARRAY_SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"items\":{\"type\":"
    "\"integer\"},\"minItems\":40}}}";

static void test_quirks_cut_prompt_cut_json_free_text(void **state) {
    struct llm_fx *fx = *state;
    const char *args[] = {"--ctx", "4", NULL}; /* llama.cpp with a tiny slot context */
    llm_fx_server(fx, args);
    fx->cfg.format = LLM_FORMAT_JSON_SCHEMA;
    fx->cfg.schema_json = ARRAY_SCHEMA;
    llm_fx_client(fx);
    llm_fx_requests(fx, 4, "f", NULL);
    set_text(fx, 0, "one two three four five six seven eight nine ten");
    fx->reqs[0].expected_prompt_tokens = 10;
    set_text(fx, 1, "[[fault:length]]");
    set_text(fx, 2, "[[fault:freetext]]");
    fx->reqs[3].format = LLM_FORMAT_TEXT; /* plain text is fine as text */
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), 0);
    struct llm_result *r = &fx->reqs[0].result;
    assert_int_equal(r->status, LLM_ERR_PROMPT_CUT);
    assert_non_null(strstr(r->error, "usage.prompt_tokens is 4, expected at least 10"));
    assert_non_null(r->resp.content); /* the reply is kept for inspection */
    r = &fx->reqs[1].result;
    assert_int_equal(r->status, LLM_ERR_TRUNCATED);
    assert_non_null(strstr(r->error, "finish_reason \"length\""));
    assert_non_null(strstr(r->error, "max_tokens (256)"));
    r = &fx->reqs[2].result;
    assert_int_equal(r->status, LLM_ERR_BAD_OUTPUT);
    assert_non_null(strstr(r->error, "not JSON although response_format json_schema"));
    assert_null(r->resp.json);
    assert_int_equal(fx->reqs[3].result.status, LLM_OK);
    assert_null(fx->reqs[3].result.resp.json);
    for (int i = 0; i < 3; i++)
        assert_int_equal(fx->reqs[i].result.attempts, 1);
}

static void test_unreachable_server_is_a_connection_failure(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    test_server_stop(&fx->srv); /* its port is now closed */
    fx->cfg.max_retries = 2;
    llm_fx_client(fx);
    llm_fx_requests(fx, 2, "f", NULL);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), 0);
    for (int i = 0; i < 2; i++) {
        struct llm_result *r = &fx->reqs[i].result;
        assert_int_equal(r->status, LLM_ERR_CONNECTION);
        assert_int_equal(r->attempts, 3);
        assert_non_null(strstr(r->error, "curl error 7"));
    }
}

int main(void) {
    log_set_level(LOG_ERROR);
#define T(f) cmocka_unit_test_setup_teardown(f, llm_fx_setup, llm_fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_random_faults_lose_and_duplicate_nothing),
        T(test_retry_after_seconds_is_honoured),
        T(test_retry_after_http_date_is_honoured),
        T(test_transient_failures_are_retried),
        T(test_timeouts_are_retried_then_reported),
        T(test_bad_key_401_stops_the_batch),
        T(test_no_credit_402_stops_the_batch),
        T(test_missing_key_variable_stops_before_sending),
        T(test_client_errors_fail_alone),
        T(test_bad_replies_fail_with_their_reason),
        T(test_quirks_cut_prompt_cut_json_free_text),
        T(test_unreachable_server_is_a_connection_failure),
    };
    return cmocka_run_group_tests_name("llm_faults", tests, NULL, NULL);
}
