/* test_llm_client.c: the LLM client against the local test server, happy paths
 * and pacing: typed replies (logprobs, structured output, echoed prompts), the
 * model probe, concurrency that really overlaps, rate windows, budgets, the
 * deadline, and an offline provider plugged into the same batch loop. */
#include "../servers/llm_fixture.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util/log.h"

static void test_chat_reply_is_typed_and_matches_its_request(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    llm_fx_client(fx);
    llm_fx_requests(fx, 5, "r", NULL);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), 0);
    llm_fx_assert_each_done_once(fx);
    for (int i = 0; i < fx->n; i++) {
        struct llm_result *r = &fx->reqs[i].result;
        assert_int_equal(r->status, LLM_OK);
        assert_null(r->error);
        char want[32];
        snprintf(want, sizeof want, "ok r%d:", i);
        assert_non_null(strstr(r->resp.content, want)); /* no cross-wiring */
        assert_string_equal(r->resp.finish_reason, "stop");
        assert_string_equal(r->resp.model, "test-model");
        assert_true(r->resp.prompt_tokens > 0 && r->resp.completion_tokens > 0);
        assert_int_equal(r->attempts, 1);
        assert_int_equal(r->http_status, 200);
        assert_int_equal(strlen(r->cache_key), 64);
    }
    const struct llm_stats *s = llm_client_stats(fx->c);
    assert_int_equal(s->requests, 5);
    assert_int_equal(s->ok, 5);
    assert_int_equal(s->http_calls, 5);
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 5);
}

static void test_logprobs_schema_and_echo(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    llm_fx_client(fx);
    struct llm_message m = {"user", "[[tag:lp]] rate the tokens"};
    struct llm_request reqs[3] = {0};
    reqs[0] =
        (struct llm_request){.messages = &m, .n_messages = 1, .logprobs = 1, .top_logprobs = 3};
    reqs[1] = (struct llm_request){
        .messages = &m,
        .n_messages = 1,
        .format = LLM_FORMAT_JSON_SCHEMA,
        .schema_name = "activations",
        .schema_json = "{\"type\":\"object\",\"properties\":{\"activations\":{\"type\":\"array\","
                       "\"items\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":10},"
                       "\"minItems\":6,\"maxItems\":6}},\"required\":[\"activations\"]}"};
    reqs[2] = (struct llm_request){.api = LLM_API_COMPLETIONS,
                                   .prompt = "The cat sat on the mat",
                                   .echo = true,
                                   .logprobs = 1,
                                   .top_logprobs = 2,
                                   .max_tokens = LLM_MAX_TOKENS_ZERO};
    assert_int_equal(llm_run_batch(fx->c, reqs, 3, NULL, NULL), 0);

    struct llm_response *a = &reqs[0].result.resp;
    assert_int_equal(reqs[0].result.status, LLM_OK);
    assert_true(a->n_tokens >= 3);
    assert_string_equal(a->tokens[0].token, "ok");
    assert_int_equal(a->tokens[0].n_top, 3);
    assert_int_equal(a->tokens[0].n_bytes, 2);
    assert_memory_equal(a->tokens[0].bytes, "ok", 2);
    assert_true(a->tokens[1].logprob < 0);
    assert_true(a->tokens[0].top[1].logprob < a->tokens[0].top[0].logprob);

    struct llm_response *b = &reqs[1].result.resp;
    assert_int_equal(reqs[1].result.status, LLM_OK);
    assert_non_null(b->json);
    const cJSON *acts = cJSON_GetObjectItem(b->json, "activations");
    assert_true(cJSON_IsArray(acts));
    assert_int_equal(cJSON_GetArraySize(acts), 6);
    const cJSON *v;
    cJSON_ArrayForEach(v, acts) {
        assert_true(cJSON_IsNumber(v));
        assert_true(v->valuedouble >= 0 && v->valuedouble <= 10);
    }

    struct llm_response *c = &reqs[2].result.resp;
    assert_int_equal(reqs[2].result.status, LLM_OK);
    assert_string_equal(c->content, "The cat sat on the mat");
    assert_int_equal(c->n_tokens, 6);
    assert_string_equal(c->tokens[1].token, " cat");
    assert_true(isnan(c->tokens[0].logprob)); /* no logprob for the first prompt token */
    assert_int_equal(c->tokens[0].n_top, 0);
    assert_int_equal(c->tokens[2].text_offset, 7);
    assert_int_equal(c->tokens[2].n_top, 2);
    assert_int_equal(c->completion_tokens, 0);

    /* what was sent: the schema, strict, logprobs as the legacy API wants them */
    char key[65];
    char *body = llm_request_body(fx->c, &reqs[1], key);
    assert_non_null(strstr(body, "\"response_format\":{\"json_schema\":{\"name\":\"activations\""));
    assert_non_null(strstr(body, "\"strict\":true"));
    assert_string_equal(key, reqs[1].result.cache_key);
    free(body);
    body = llm_request_body(fx->c, &reqs[2], NULL);
    assert_non_null(strstr(body, "\"echo\":true"));
    assert_non_null(strstr(body, "\"logprobs\":2"));
    assert_non_null(strstr(body, "\"max_tokens\":0"));
    free(body);
    for (int i = 0; i < 3; i++)
        llm_result_free(&reqs[i].result);
}

static void test_models_probe_lists_ids(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    llm_fx_client(fx);
    char **ids;
    int n;
    assert_int_equal(llm_list_models(fx->c, &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "test-model");
    assert_string_equal(ids[1], "test-model-2");
    llm_free_models(ids, n);
}

static void test_requests_overlap_up_to_concurrency(void **state) {
    struct llm_fx *fx = *state;
    const char *args[] = {"--latency-ms", "200", NULL};
    llm_fx_server(fx, args);
    fx->cfg.concurrency = 4;
    llm_fx_client(fx);
    llm_fx_requests(fx, 16, "c", NULL);
    double t0 = now_seconds();
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), 0);
    double wall = now_seconds() - t0;
    llm_fx_assert_each_done_once(fx);
    assert_int_equal(llm_fx_count_status(fx, LLM_OK), 16);
    /* ideal 16/4 * 0.2 = 0.8 s; serial would be 3.2 s */
    print_message("16 requests x 200 ms at concurrency 4: %.3f s (ideal 0.8 s)\n", wall);
    assert_true(wall >= 0.75);
    assert_true(wall < 1.6);
}

static void test_rpm_window_paces_starts(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    fx->cfg.concurrency = 10;
    fx->cfg.rpm = 4;
    fx->cfg.rate_window_ms = 400;
    llm_fx_client(fx);
    llm_fx_requests(fx, 10, "p", NULL);
    double t0 = now_seconds();
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), 0);
    double wall = now_seconds() - t0;
    assert_int_equal(llm_fx_count_status(fx, LLM_OK), 10);
    /* starts 0-3 at once, 4-7 after one window, 8-9 after two */
    assert_true(wall >= 0.78);
    assert_true(wall < 1.8);
    cJSON *log = test_server_log(&fx->srv);
    assert_int_equal(cJSON_GetArraySize(log), 10);
    double t_first = cJSON_GetObjectItem(cJSON_GetArrayItem(log, 0), "t")->valuedouble;
    double t_fifth = cJSON_GetObjectItem(cJSON_GetArrayItem(log, 4), "t")->valuedouble;
    assert_true(t_fifth - t_first >= 0.35);
    cJSON_Delete(log);
}

static void test_tpm_window_paces_by_tokens(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    fx->cfg.concurrency = 8;
    fx->cfg.max_tokens = 50;
    /* Each request is estimated at 68 tokens before it is sent and uses 10. With
     * 80 per window only one estimate fits beside settled replies: r0 and r1 go
     * at once (r1 after r0's usage is known), r2 and r3 after one window, r4 and
     * r5 after two. */
    fx->cfg.tpm = 80;
    fx->cfg.rate_window_ms = 300;
    llm_fx_client(fx);
    llm_fx_requests(fx, 6, "t", NULL);
    double t0 = now_seconds();
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), 0);
    double wall = now_seconds() - t0;
    assert_int_equal(llm_fx_count_status(fx, LLM_OK), 6);
    assert_int_equal(
        fx->reqs[0].result.resp.prompt_tokens + fx->reqs[0].result.resp.completion_tokens, 10);
    print_message("tpm pacing: %.3f s (expected about 0.6 s)\n", wall);
    assert_true(wall >= 0.55);
    assert_true(wall < 1.5);
}

static void test_request_cap_stops_cleanly(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    fx->cfg.concurrency = 2;
    fx->cfg.max_requests = 5;
    llm_fx_client(fx);
    llm_fx_requests(fx, 12, "b", NULL);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), -1);
    assert_non_null(strstr(err_msg(), "budget reached: max_requests 5"));
    llm_fx_assert_each_done_once(fx);
    assert_int_equal(llm_fx_count_status(fx, LLM_OK), 5);
    assert_int_equal(llm_fx_count_status(fx, LLM_ERR_BUDGET), 7);
    assert_non_null(strstr(fx->reqs[11].result.error, "not attempted: run stopped because budget"));
    assert_int_equal(fx->reqs[11].result.attempts, 0);
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 5);
    assert_int_equal(llm_client_budget(fx->c)->requests, 5);
    /* sticky: the next batch sends nothing */
    assert_non_null(llm_client_stopped(fx->c));
    llm_fx_requests(fx, 2, "b2-", NULL);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), -1);
    assert_int_equal(llm_fx_count_status(fx, LLM_ERR_BUDGET), 2);
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 5);
}

static void test_cost_and_token_caps_are_never_passed(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    fx->cfg.concurrency = 3;
    fx->cfg.max_tokens = 20;
    fx->cfg.price_prompt_usd_per_mtok = 1000;     /* $0.001 per prompt token */
    fx->cfg.price_completion_usd_per_mtok = 3000; /* $0.003 per completion token */
    fx->cfg.max_cost_usd = 0.5;
    llm_fx_client(fx);
    llm_fx_requests(fx, 40, "k", NULL);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), -1);
    assert_non_null(strstr(err_msg(), "max_cost_usd"));
    llm_fx_assert_each_done_once(fx);
    const struct llm_stats *s = llm_client_stats(fx->c);
    int ok = llm_fx_count_status(fx, LLM_OK);
    assert_true(ok >= 3 && ok < 40);
    assert_int_equal(ok + llm_fx_count_status(fx, LLM_ERR_BUDGET), 40);
    assert_true(s->cost_usd <= 0.5);
    double sum = 0;
    for (int i = 0; i < fx->n; i++)
        sum += fx->reqs[i].result.cost_usd;
    assert_true(fabs(sum - s->cost_usd) < 1e-9);
    double want = (s->prompt_tokens * 1000.0 + s->completion_tokens * 3000.0) / 1e6;
    assert_true(fabs(want - s->cost_usd) < 1e-9);

    /* the same with a token cap, shared by two clients */
    llm_client_free(fx->c);
    fx->cfg.max_cost_usd = 0;
    fx->c = llm_client_new(&fx->cfg);
    struct llm_client *other = llm_client_new(&fx->cfg);
    struct llm_budget shared = {.max_tokens = 100};
    llm_client_share_budget(fx->c, &shared);
    llm_client_share_budget(other, &shared);
    llm_fx_requests(fx, 10, "s", NULL);
    llm_run_batch(fx->c, fx->reqs, 5, NULL, NULL);
    llm_run_batch(other, fx->reqs + 5, 5, NULL, NULL);
    long long used =
        llm_client_stats(fx->c)->prompt_tokens + llm_client_stats(fx->c)->completion_tokens +
        llm_client_stats(other)->prompt_tokens + llm_client_stats(other)->completion_tokens;
    assert_int_equal(shared.tokens, used);
    assert_true(shared.tokens <= 100);
    assert_true(llm_fx_count_status(fx, LLM_ERR_BUDGET) > 0);
    assert_int_equal(shared.reserved_tokens, 0);
    llm_client_free(other);
}

static void test_deadline_cancels_and_marks_the_rest(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    fx->cfg.concurrency = 2;
    fx->cfg.deadline_ms = 400;
    llm_fx_client(fx);
    llm_fx_requests(fx, 6, "d", NULL);
    for (int i = 0; i < 6; i++) {
        free(fx->texts[i]);
        fx->texts[i] = strdup("[[fault:slow ms=3000]] take your time");
        fx->msgs[i].content = fx->texts[i];
    }
    double t0 = now_seconds();
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), -1);
    double wall = now_seconds() - t0;
    assert_non_null(strstr(err_msg(), "deadline_ms 400"));
    llm_fx_assert_each_done_once(fx);
    assert_true(wall >= 0.39 && wall < 1.5);
    assert_int_equal(llm_fx_count_status(fx, LLM_ERR_TIMEOUT), 2);
    assert_int_equal(llm_fx_count_status(fx, LLM_ERR_ABORTED), 4);
    /* a deadline is per batch, not sticky */
    assert_null(llm_client_stopped(fx->c));
}

/* ---- an offline provider through the same loop ---- */

static enum llm_status echo_answer(void *state, const struct llm_endpoint_config *cfg,
                                   const struct llm_request *req, struct llm_response *out,
                                   char **reason) {
    int *calls = state;
    (*calls)++;
    (void)cfg;
    if (strstr(req->messages[0].content, "refuse")) {
        *reason = strdup("offline provider cannot answer this");
        return LLM_ERR_LOCAL;
    }
    memset(out, 0, sizeof *out);
    size_t n = strlen(req->messages[0].content) + 16;
    out->content = malloc(n);
    snprintf(out->content, n, "offline: %s", req->messages[0].content);
    out->finish_reason = strdup("stop");
    return LLM_OK;
}

static void test_offline_provider_plugs_into_the_batch(void **state) {
    struct llm_fx *fx = *state;
    int calls = 0;
    struct llm_endpoint_config cfg;
    llm_endpoint_config_init(&cfg);
    cfg.model = "builtin-explainer";
    struct llm_provider p = {"builtin", echo_answer, NULL, &calls};
    fx->c = llm_client_new_with_provider(&cfg, &p);
    assert_non_null(fx->c);
    llm_fx_requests(fx, 4, "o", NULL);
    fx->msgs[2].content = "please refuse";
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), 0);
    llm_fx_assert_each_done_once(fx);
    assert_int_equal(calls, 4);
    assert_int_equal(fx->reqs[0].result.status, LLM_OK);
    assert_non_null(strstr(fx->reqs[0].result.resp.content, "offline: [[tag:o0]]"));
    assert_int_equal(fx->reqs[2].result.status, LLM_ERR_LOCAL);
    assert_string_equal(fx->reqs[2].result.error, "offline provider cannot answer this");
    assert_int_equal(llm_client_stats(fx->c)->http_calls, 0);
    assert_int_equal(llm_client_stats(fx->c)->ok, 3);
}

static void test_on_done_can_stop_the_batch(void **state);

static int stop_after_two(struct llm_request *req, int index, void *ctx) {
    struct llm_fx *fx = ctx;
    llm_fx_on_done(req, index, ctx);
    return fx->done_total == 2 ? 7 : 0;
}

static void test_on_done_can_stop_the_batch(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    fx->cfg.concurrency = 1;
    llm_fx_client(fx);
    llm_fx_requests(fx, 6, "q", NULL);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, stop_after_two, fx), -1);
    assert_non_null(strstr(err_msg(), "on_done returned 7"));
    llm_fx_assert_each_done_once(fx);
    assert_int_equal(llm_fx_count_status(fx, LLM_OK), 2);
    assert_int_equal(llm_fx_count_status(fx, LLM_ERR_ABORTED), 4);
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 2);
}

static void test_config_errors_name_the_field(void **state) {
    (void)state;
    struct llm_endpoint_config cfg;
    llm_endpoint_config_init(&cfg);
    assert_null(llm_client_new(&cfg));
    assert_non_null(strstr(err_msg(), "base_url is required"));
    cfg.base_url = "ftp://x";
    cfg.model = "m";
    assert_null(llm_client_new(&cfg));
    assert_non_null(strstr(err_msg(), "base_url must start with http"));
    cfg.base_url = "http://127.0.0.1:9/v1";
    cfg.concurrency = 0;
    assert_null(llm_client_new(&cfg));
    assert_non_null(strstr(err_msg(), "concurrency must be from 1 to 1024, got 0"));
    cfg.concurrency = 2;
    cfg.max_cost_usd = 1;
    assert_null(llm_client_new(&cfg));
    assert_non_null(strstr(err_msg(), "no prices"));
    cfg.max_cost_usd = 0;
    const char *bad_headers[] = {"NoColonHere"};
    cfg.headers = bad_headers;
    cfg.n_headers = 1;
    assert_null(llm_client_new(&cfg));
    assert_non_null(strstr(err_msg(), "headers[0]"));
}

int main(void) {
    log_set_level(LOG_ERROR);
#define T(f) cmocka_unit_test_setup_teardown(f, llm_fx_setup, llm_fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_chat_reply_is_typed_and_matches_its_request),
        T(test_logprobs_schema_and_echo),
        T(test_models_probe_lists_ids),
        T(test_requests_overlap_up_to_concurrency),
        T(test_rpm_window_paces_starts),
        T(test_tpm_window_paces_by_tokens),
        T(test_request_cap_stops_cleanly),
        T(test_cost_and_token_caps_are_never_passed),
        T(test_deadline_cancels_and_marks_the_rest),
        T(test_offline_provider_plugs_into_the_batch),
        T(test_on_done_can_stop_the_batch),
        T(test_config_errors_name_the_field),
    };
    return cmocka_run_group_tests_name("llm_client", tests, NULL, NULL);
}
