/* test_llm_cache.c: what a rerun costs, and where the API key may not go.
 *
 * - A second run of the same batch makes zero HTTP calls (the server's log is
 *   the witness) and returns the same replies; a corrupt entry is refetched and
 *   overwritten; failures are not cached.
 * - A batch killed with SIGKILL half-way and run again pays for nothing twice,
 *   except requests that were in flight at the kill. Precisely: the client
 *   renames a reply into the cache before it calls on_done, so a
 *   request whose on_done ran is never sent again; a request is sent a second
 *   time only if it had been sent but its reply was not yet committed when the
 *   process died, and there are at most `concurrency` of those.
 * - The key, read from the environment, reaches the server (it logs a digest of
 *   the Authorization header) and nothing else: not the cache, not the results
 *   the caller writes, not stderr at debug level, not error messages, even when
 *   the server quotes the key back in an error body.
 */
#include "../servers/llm_fixture.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/atomic.h"
#include "llm/cache.h"
#include "util/log.h"
#include "util/sha256.h"

static char *cache_dir_of(struct llm_fx *fx) {
    return path_join(fx->dir, "cache");
}

static void test_second_run_makes_no_http_calls(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    char *cache = cache_dir_of(fx);
    fx->cfg.cache_dir = cache;
    fx->cfg.concurrency = 4;
    llm_fx_client(fx);
    llm_fx_requests(fx, 10, "m", NULL);
    fx->reqs[3].logprobs = 1;
    fx->reqs[3].top_logprobs = 2;
    fx->msgs[9].content = "[[tag:m9]] [[fault:400]] too long"; /* a failure: not cached */
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), 0);
    assert_int_equal(llm_fx_count_status(fx, LLM_OK), 9);
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 10);
    char *first[10];
    for (int i = 0; i < 9; i++)
        first[i] = strdup(fx->reqs[i].result.resp.content);

    llm_fx_client(fx); /* a fresh client, as after a restart */
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, llm_fx_on_done, fx), 0);
    llm_fx_assert_each_done_once(fx);
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 11); /* only m9 again */
    assert_int_equal(test_server_count(&fx->srv, "m9", NULL), 2);
    const struct llm_stats *s = llm_client_stats(fx->c);
    assert_int_equal(s->cache_hits, 9);
    assert_int_equal(s->http_calls, 1);
    assert_int_equal(s->prompt_tokens + s->completion_tokens, 0); /* nothing paid */
    for (int i = 0; i < 9; i++) {
        struct llm_result *r = &fx->reqs[i].result;
        assert_int_equal(r->status, LLM_OK);
        assert_true(r->from_cache);
        assert_int_equal(r->attempts, 0);
        assert_string_equal(r->resp.content, first[i]);
        assert_true(r->resp.prompt_tokens > 0); /* usage as the server reported it */
        free(first[i]);
    }
    assert_int_equal(fx->reqs[3].result.resp.tokens[0].n_top, 2);
    assert_false(fx->reqs[9].result.from_cache);
    free(cache);
}

static void test_corrupt_entries_are_refetched_and_overwritten(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    char *cache = cache_dir_of(fx);
    fx->cfg.cache_dir = cache;
    llm_fx_client(fx);
    llm_fx_requests(fx, 5, "x", NULL);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), 0);
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 5);

    /* entry 1 torn in half, entry 3 with a reply that is not what was stored */
    char *p1 = llm_cache_path(cache, fx->reqs[1].result.cache_key);
    char *p3 = llm_cache_path(cache, fx->reqs[3].result.cache_key);
    size_t n;
    char *text = read_file_all(p1, 0, &n);
    write_file(p1, text, n / 2);
    free(text);
    text = read_file_all(p3, 0, &n);
    char *ok = strstr(text, "ok x3");
    assert_non_null(ok);
    ok[0] = 'O';
    write_file(p3, text, n);
    free(text);

    llm_fx_client(fx);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), 0);
    assert_int_equal(llm_fx_count_status(fx, LLM_OK), 5);
    const struct llm_stats *s = llm_client_stats(fx->c);
    assert_int_equal(s->cache_corrupt, 2);
    assert_int_equal(s->cache_hits, 3);
    assert_int_equal(test_server_count(&fx->srv, "x1", NULL), 2);
    assert_int_equal(test_server_count(&fx->srv, "x3", NULL), 2);
    assert_non_null(strstr(fx->reqs[3].result.resp.content, "ok x3"));

    /* overwritten with good entries: a third run is free */
    llm_fx_client(fx);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, NULL, NULL), 0);
    assert_int_equal(llm_client_stats(fx->c)->cache_hits, 5);
    assert_int_equal(test_server_count(&fx->srv, NULL, NULL), 7);
    free(p1);
    free(p3);
    free(cache);
}

/* ---- SIGKILL half-way ---- */

struct results_file {
    const char *path;
};

/* on_done: one line per finished request, durably (what a stage would do). */
static int append_result(struct llm_request *req, int index, void *ctx) {
    struct results_file *rf = ctx;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", index);
    cJSON_AddStringToObject(o, "status", llm_status_name(req->result.status));
    cJSON_AddBoolToObject(o, "cached", req->result.from_cache);
    if (req->result.resp.content) cJSON_AddStringToObject(o, "content", req->result.resp.content);
    if (req->result.error) cJSON_AddStringToObject(o, "error", req->result.error);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int fd = open(rf->path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    size_t n = strlen(line);
    line[n] = '\n';
    int rc = fd >= 0 && write(fd, line, n + 1) == (ssize_t)(n + 1) && fsync(fd) == 0 ? 0 : -1;
    if (fd >= 0) close(fd);
    free(line);
    return rc;
}

static int count_lines(const char *path, int *indices, int max) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[4096];
    int n = 0;
    while (fgets(buf, sizeof buf, f)) {
        cJSON *o = cJSON_Parse(buf);
        if (o && n < max) indices[n++] = cJSON_GetObjectItem(o, "index")->valueint;
        cJSON_Delete(o);
    }
    fclose(f);
    return n;
}

static void test_sigkill_mid_batch_pays_nothing_twice(void **state) {
    struct llm_fx *fx = *state;
    const char *args[] = {"--latency-ms", "60", NULL};
    llm_fx_server(fx, args);
    char *cache = cache_dir_of(fx);
    char *results = path_join(fx->dir, "results.jsonl");
    fx->cfg.cache_dir = cache;
    fx->cfg.concurrency = 3;
    llm_fx_requests(fx, 30, "k", NULL);
    struct results_file rf = {results};

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct llm_client *c = llm_client_new(&fx->cfg);
        if (c) llm_run_batch(c, fx->reqs, fx->n, append_result, &rf);
        _exit(0);
    }
    int done1[64], n1 = 0;
    for (int waited = 0; waited < 10000 && n1 < 9; waited += 5) {
        ts_sleep_ms(5);
        n1 = count_lines(results, done1, 64);
    }
    kill(child, SIGKILL);
    int st;
    waitpid(child, &st, 0);
    assert_true(WIFSIGNALED(st));
    ts_sleep_ms(150); /* let the server log what reached it before the kill */
    n1 = count_lines(results, done1, 64);
    assert_true(n1 >= 9 && n1 < 30);
    int sent1 = test_server_count(&fx->srv, NULL, NULL);
    print_message("killed after %d results written, %d requests sent\n", n1, sent1);

    llm_fx_client(fx);
    assert_int_equal(llm_run_batch(fx->c, fx->reqs, fx->n, append_result, &rf), 0);
    assert_int_equal(llm_fx_count_status(fx, LLM_OK), 30);
    assert_true(llm_client_stats(fx->c)->cache_hits >= n1);

    int twice = 0;
    for (int i = 0; i < 30; i++) {
        int k = test_server_count(&fx->srv, llm_fx_tag("k", i), NULL);
        assert_true(k == 1 || k == 2);
        twice += k == 2;
    }
    for (int j = 0; j < n1; j++) /* a result written in run 1 was never sent again */
        assert_int_equal(test_server_count(&fx->srv, llm_fx_tag("k", done1[j]), NULL), 1);
    assert_true(twice <= fx->cfg.concurrency);
    /* only requests sent in run 1 without a result line can have gone twice */
    assert_true(twice <= sent1 - n1);
    free(results);
    free(cache);
}

/* ---- secrets ---- */

#define SECRET "sk-test-SECRET-7d3f9a2b1c0e"

static const char *scan_secret;
static int scan_hits, scan_files;

static int scan_one(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    if (type != FTW_F) return 0;
    size_t n;
    char *text = read_file_all(path, 0, &n);
    if (!text) return 0;
    scan_files++;
    if (memmem(text, n, scan_secret, strlen(scan_secret))) {
        fprintf(stdout, "secret found in %s\n", path);
        scan_hits++;
    }
    free(text);
    return 0;
}

static void test_api_key_goes_to_the_server_and_nowhere_else(void **state) {
    struct llm_fx *fx = *state;
    llm_fx_server(fx, NULL);
    setenv("LLM_TEST_SECRET_KEY", SECRET, 1);
    char *cache = cache_dir_of(fx);
    char *out = path_join(fx->dir, "out");
    char *results = path_join(out, "results.jsonl");
    char *errlog = path_join(out, "stderr.txt");
    assert_int_equal(mkdir_p(out), 0);
    fx->cfg.cache_dir = cache;
    fx->cfg.api_key_env = "LLM_TEST_SECRET_KEY";
    fx->cfg.max_retries = 1;
    llm_fx_client(fx);
    llm_fx_requests(fx, 8, "s", NULL);
    fx->msgs[5].content = "[[tag:s5]] [[fault:400]]";
    fx->msgs[6].content = "[[tag:s6]] [[fault:500]]";
    fx->msgs[7].content = "[[tag:s7]] [[fault:malformed]]";
    struct results_file rf = {results};

    /* everything the library logs, at the most verbose level, goes to a file */
    fflush(stderr);
    int saved = dup(2);
    int fd = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    log_set_level(LOG_DEBUG);
    int rc1 = llm_run_batch(fx->c, fx->reqs, fx->n, append_result, &rf);
    /* the server quotes the bearer token in its 401 body */
    struct llm_message m401 = {"user", "[[tag:s401]] [[fault:401]]"};
    struct llm_request r401 = {.messages = &m401, .n_messages = 1};
    int rc2 = llm_run_batch(fx->c, &r401, 1, append_result, &rf);
    char batch_err[ERR_MSG_MAX];
    snprintf(batch_err, sizeof batch_err, "%s", err_msg());
    char **ids;
    int n_ids;
    int rc3 = llm_list_models(fx->c, &ids, &n_ids);
    if (rc3 == 0) llm_free_models(ids, n_ids);
    log_set_level(LOG_ERROR);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);

    assert_int_equal(rc1, 0);
    assert_int_equal(rc2, -1);
    assert_int_equal(rc3, 0);
    assert_int_equal(llm_fx_count_status(fx, LLM_OK), 5);
    assert_int_equal(r401.result.status, LLM_ERR_HTTP_4XX);
    assert_non_null(strstr(r401.result.error, "Incorrect API key provided: [redacted]"));
    assert_null(strstr(batch_err, SECRET));
    assert_non_null(strstr(batch_err, "[redacted]"));
    for (int i = 0; i < fx->n; i++)
        if (fx->reqs[i].result.error) assert_null(strstr(fx->reqs[i].result.error, SECRET));

    /* the server did get the key, on every request */
    char want[65];
    sha256_str_hex("Bearer " SECRET, want);
    cJSON *log = test_server_log(&fx->srv);
    assert_true(cJSON_GetArraySize(log) >= 10);
    const cJSON *e;
    cJSON_ArrayForEach(e, log) {
        const cJSON *a = cJSON_GetObjectItem(e, "auth_sha256");
        assert_true(cJSON_IsString(a));
        assert_string_equal(a->valuestring, want);
    }
    cJSON_Delete(log);

    /* and it is nowhere on disk: cache, results, captured stderr */
    scan_secret = SECRET;
    scan_hits = scan_files = 0;
    assert_int_equal(nftw(cache, scan_one, 16, FTW_PHYS), 0);
    assert_int_equal(nftw(out, scan_one, 16, FTW_PHYS), 0);
    assert_true(scan_files >= 7); /* 5 cache entries, results, stderr */
    assert_int_equal(scan_hits, 0);
    size_t n;
    char *captured = read_file_all(errlog, 0, &n);
    assert_non_null(strstr(captured, "llm: request")); /* the log did say things */
    free(captured);
    llm_result_free(&r401.result);
    unsetenv("LLM_TEST_SECRET_KEY");
    free(results);
    free(errlog);
    free(out);
    free(cache);
}

int main(void) {
    log_set_level(LOG_ERROR);
#define T(f) cmocka_unit_test_setup_teardown(f, llm_fx_setup, llm_fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_second_run_makes_no_http_calls),
        T(test_corrupt_entries_are_refetched_and_overwritten),
        T(test_sigkill_mid_batch_pays_nothing_twice),
        T(test_api_key_goes_to_the_server_and_nowhere_else),
    };
    return cmocka_run_group_tests_name("llm_cache", tests, NULL, NULL);
}
