/* test_fault_soak.c: a whole explain + simulate run of more than a thousand LLM
 * requests against a server that injects a fault into 20% of them, of every
 * kind the client must survive: 429 with Retry-After 0 or 1 s, 500, 503, a
 * reply slower than the timeout, a connection dropped mid-body, a connection
 * reset without a reply, malformed JSON, truncated JSON and an error object in
 * an HTTP 200 (tests/fixtures/soak/soak_server.py; the draw is seeded per
 * request, so every run sees the same faults).
 *
 * The server's log is the witness. Replaying it request by request (a request
 * is one body: its receipts in order, each with the fault it got) says what
 * the client must have done: retried the retryable faults, given up on the
 * others, and ended each request ok or failed with one category. The test
 * checks that replay against everything the run wrote: one explanation line
 * per sampled feature, one simulation line per explained feature, one score
 * line per feature, nothing lost and nothing twice; the statuses and failure
 * reasons of the lines; and the manifest's "llm" section (requests, HTTP
 * calls, retries, failures by category), which src/pipeline writes.
 *
 * The run is `autointerp run` on stories260K (../shared; skipped without it):
 * one small SAE with 200 sampled features, each costing one explain request
 * and five json-mode simulate requests (one per scored window). */
#include "../servers/testserver.h"
#include "testutil.h"
#include "../fixtures/soak/soak.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "extract/examples.h"
#include "io/atomic.h"
#include "llm/llm.h"
#include "util/log.h"


static double wall(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

struct run {
    char *dir, *cfg, *exp;
    struct test_server srv;
    struct soak_stories st;
};

static int teardown(void **state) {
    struct run *r = *state;
    if (!r) return 0;
    test_server_stop(&r->srv);
    soak_stories_free(&r->st);
    if (r->dir) test_rmtree(r->dir);
    free(r->dir);
    free(r->cfg);
    free(r->exp);
    free(r);
    return 0;
}

static int setup(void **state) {
    *state = calloc(1, sizeof(struct run));
    return 0;
}

/* A reset on a reused keep-alive connection makes libcurl resend the request
 * by itself on a fresh one; the server then has it twice. Regression: the
 * client counted one attempt and one HTTP call, so the manifest's http_calls
 * and retries fell short of the server's log by every such resend. */
static void test_libcurl_resend_after_reset_is_counted(void **state) {
    struct run *r = *state;
    r->dir = test_tmpdir("soak-reset");
    assert_int_equal(soak_server_start(&r->srv, r->dir, SOAK_SERVER, NULL), 0);
    struct llm_endpoint_config cfg;
    llm_endpoint_config_init(&cfg);
    cfg.base_url = r->srv.base_url;
    cfg.model = "m";
    cfg.concurrency = 1;
    cfg.backoff_base_ms = 3000; /* a retry of our own would come 1.5 s later or more */
    cfg.backoff_max_ms = 3000;
    struct llm_client *c = llm_client_new(&cfg);
    assert_non_null(c);
    struct llm_message m1 = {"user", "[[tag:warm]] open the connection"};
    struct llm_message m2 = {"user", "[[tag:hit]] [[fault:reset times=1]] then close it"};
    struct llm_request q1 = {.api = LLM_API_CHAT, .messages = &m1, .n_messages = 1};
    struct llm_request q2 = {.api = LLM_API_CHAT, .messages = &m2, .n_messages = 1};
    assert_int_equal(llm_run_batch(c, &q1, 1, NULL, NULL), 0);
    double t0 = wall();
    assert_int_equal(llm_run_batch(c, &q2, 1, NULL, NULL), 0);
    double took = wall() - t0;
    print_message("the reset request took %.3f s\n", took);
    assert_int_equal(q2.result.status, LLM_OK);
    assert_int_equal(test_server_count(&r->srv, "hit", "reset"), 1);
    assert_int_equal(test_server_count(&r->srv, "hit", ""), 1);
    if (took > 1.0) fail_msg("the reset was retried after %.2f s: not libcurl's own resend", took);
    const struct llm_stats *st = llm_client_stats(c);
    assert_int_equal(st->http_calls, test_server_count(&r->srv, NULL, NULL));
    assert_int_equal(st->retries, 1);
    assert_int_equal(q2.result.attempts, 2);
    llm_result_free(&q1.result);
    llm_result_free(&q2.result);
    llm_client_free(c);
}

int main(void) {
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_libcurl_resend_after_reset_is_counted, setup, teardown),
    };
    return cmocka_run_group_tests_name("fault_soak", tests, NULL, NULL);
}
