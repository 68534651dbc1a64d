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

#define MAX_RETRIES 6
#define TIMEOUT_MS 1000

static double wall(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* ---- replaying the server log ---- */

static bool retryable(const char *fault) {
    const char *k[] = {"429", "500", "503", "slow", "drop", "reset"};
    for (int i = 0; fault && i < 6; i++)
        if (strcmp(fault, k[i]) == 0) return true;
    return false;
}

/* The client's category for a request whose last receipt got `fault`. */
static const char *category(const char *fault) {
    if (!fault) return "ok";
    if (strcmp(fault, "429") == 0) return "http_4xx";
    if (strcmp(fault, "500") == 0 || strcmp(fault, "503") == 0) return "http_5xx";
    if (strcmp(fault, "slow") == 0) return "timeout";
    if (strcmp(fault, "drop") == 0 || strcmp(fault, "reset") == 0) return "connection";
    if (strcmp(fault, "malformed") == 0 || strcmp(fault, "truncated") == 0) return "bad_json";
    if (strcmp(fault, "error200") == 0) return "api_error";
    return "?";
}

#define MAX_CATS 16
struct tally {
    const char *name[MAX_CATS];
    int n[MAX_CATS];
    int k;
};

static void tally_add(struct tally *t, const char *name, int by) {
    for (int i = 0; i < t->k; i++)
        if (strcmp(t->name[i], name) == 0) {
            t->n[i] += by;
            return;
        }
    assert_true(t->k < MAX_CATS);
    t->name[t->k] = name;
    t->n[t->k++] = by;
}

static int tally_get(const struct tally *t, const char *name) {
    for (int i = 0; i < t->k; i++)
        if (strcmp(t->name[i], name) == 0) return t->n[i];
    return 0;
}

/* What the log says, per role ("explain", "simulate"). */
struct replay {
    int receipts, requests; /* log lines; distinct bodies */
    int faults;             /* receipts that got a fault */
    int late;               /* unfaulted replies the client timed out on (a loaded machine) */
    struct tally outcome;   /* requests by final category ("ok" included) */
    struct tally kinds;     /* receipts by fault kind */
};

static void replay_log(const cJSON *log, const char *role, struct replay *r) {
    memset(r, 0, sizeof *r);
    int n = cJSON_GetArraySize(log), m = 0;
    bool *seen = calloc((size_t)n, 1);
    const cJSON **all = calloc((size_t)n, sizeof *all), *x; /* cJSON arrays are lists */
    cJSON_ArrayForEach(x, log) all[m++] = x;
    for (int i = 0; i < n; i++) {
        const cJSON *e = all[i];
        if (strcmp(soak_str(e, "role"), role) != 0) continue;
        r->receipts++;
        const char *f = soak_str(e, "fault");
        if (f) {
            r->faults++;
            tally_add(&r->kinds, f, 1);
        }
        if (seen[i]) continue;
        /* the receipts of this body, in arrival order */
        const char *sha = soak_str(e, "body_sha256");
        const char *last = f;
        int count = 1;
        double t_last = soak_num(e, "t");
        for (int k = i + 1; k < n; k++) {
            const cJSON *o = all[k];
            if (strcmp(soak_str(o, "body_sha256"), sha) != 0) continue;
            seen[k] = true;
            /* an unfaulted reply the machine was too slow to deliver within the
             * timeout is a timeout to the client, retried like the slow fault */
            bool late = !last && soak_num(o, "t") - t_last >= 0.9 * TIMEOUT_MS / 1000.0;
            if (late) {
                r->late++;
                print_message("%s request %.12s: an unfaulted reply was late (%.3f s)\n", role, sha,
                              soak_num(o, "t") - t_last);
            }
            if (!retryable(last) && !late)
                fail_msg("%s request %.12s was received again %.3f s after a '%s' reply (receipt "
                         "%d, then '%s'): a final answer must not be retried",
                         role, sha, soak_num(o, "t") - t_last, last ? last : "ok", count,
                         soak_str(o, "fault") ? soak_str(o, "fault") : "ok");
            t_last = soak_num(o, "t");
            last = soak_str(o, "fault");
            count++;
        }
        if (retryable(last) && count <= MAX_RETRIES)
            fail_msg("%s request %.12s: given up after %d receipts, the last a retryable '%s'",
                     role, sha, count, last);
        r->requests++;
        tally_add(&r->outcome, category(last), 1);
    }
    free(all);
    free(seen);
}

/* ---- the run ---- */

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

static void write_config(struct run *r) {
    char text[4096];
    char ep[512];
    char *prompts = soak_abs("prompts");
    snprintf(ep, sizeof ep,
             "\"provider\": \"openai\", \"base_url\": \"%s\", \"model\": \"soak-model\","
             " \"concurrency\": 32, \"timeout_ms\": %d, \"max_retries\": %d",
             r->srv.base_url, TIMEOUT_MS, MAX_RETRIES);
    snprintf(text, sizeof text,
             "{\"experiment\": \"soak\", \"results_dir\": \"%s/results\", \"seed\": 5,\n"
             " \"data\": {\"tokenizer\": \"%s\", \"train_text\": [\"%s\"], \"context\": 32},\n"
             " \"model\": {\"path\": \"%s\"},\n"
             " \"sae\": {\"layers\": [2], \"types\": [\"local\"], \"ratio\": 8,"
             " \"local\": {\"lambdas\": [1]}, \"train_tokens\": 1024, \"eval_tokens\": 1024,"
             " \"batch\": 4},\n"
             " \"extract\": {\"n_features\": 200, \"top_k\": 6, \"n_random\": 2, \"window\": 16,"
             " \"offset\": 8, \"tokens\": 16384},\n"
             " \"interp\": {\"n_explain\": 3, \"n_score_top\": 3, \"n_score_random\": 2,"
             " \"prompts\": \"%s\"},\n"
             " \"explainer\": {%s},\n"
             " \"simulator\": {%s, \"mode\": \"json\"},\n"
             " \"report\": {\"resamples\": 1000}}\n",
             r->dir, r->st.tokenizer, r->st.text, r->st.model, prompts, ep, ep);
    free(prompts);
    r->cfg = path_join(r->dir, "soak.json");
    write_file(r->cfg, text, strlen(text));
    r->exp = path_join(r->dir, "results/soak");
}

static cJSON *load_json(const char *path) {
    char *text = read_file_all(path, 0, NULL);
    if (!text) fail_msg("%s: %s", path, err_msg());
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) fail_msg("%s: not JSON", path);
    return j;
}

/* The one examples file of the run (its SAE name in *sae, malloc'd). */
static void load_examples(struct run *r, struct examples *ex, char **sae) {
    char *dir = path_join(r->exp, "examples");
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    char *path = NULL;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".h5") && !strstr(e->d_name, ".tmp.")) {
            assert_null(path); /* one SAE */
            path = path_join(dir, e->d_name);
            *sae = strndup(e->d_name, strlen(e->d_name) - 3);
        }
    closedir(d);
    assert_non_null(path);
    if (examples_load(path, ex) != 0) fail_msg("%s", err_msg());
    free(path);
    free(dir);
}

/* The lines of <exp>/<kind>/<sae>.jsonl, with no torn line. */
static cJSON *stage_lines(struct run *r, const char *kind, const char *sae) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s.jsonl", kind, sae);
    char *p = path_join(r->exp, rel);
    int torn = 0;
    cJSON *a = soak_lines(p, &torn);
    if (!a) fail_msg("%s: %s", p, err_msg());
    assert_int_equal(torn, 0);
    free(p);
    return a;
}

/* Index of feature id in ex->features, -1 when not sampled. */
static int feature_index(const struct examples *ex, int id) {
    for (int i = 0; i < ex->n_features; i++)
        if (ex->features[i] == id) return i;
    return -1;
}

/* Each line's feature is sampled and appears once; per[i] gets the line of
 * feature index i (or NULL). Returns the number of lines. */
static int one_line_per_feature(const char *what, const cJSON *lines, const struct examples *ex,
                                const cJSON **per) {
    memset(per, 0, sizeof *per * (size_t)ex->n_features);
    const cJSON *o;
    int n = 0;
    cJSON_ArrayForEach(o, lines) {
        int id = (int)soak_num(o, "feature");
        int i = feature_index(ex, id);
        if (i < 0) fail_msg("%s: a line for feature %d, which was not sampled", what, id);
        if (per[i]) fail_msg("%s: feature %d has two lines (duplicated work)", what, id);
        per[i] = o;
        n++;
    }
    return n;
}

static void check_manifest(const cJSON *m, const struct replay *ex_r, const struct replay *sim_r,
                           int log_lines) {
    const cJSON *llm = cJSON_GetObjectItem(m, "llm");
    assert_non_null(llm);
    int requests = ex_r->requests + sim_r->requests;
    int ok = tally_get(&ex_r->outcome, "ok") + tally_get(&sim_r->outcome, "ok");
    print_message("manifest llm: %.0f requests, %.0f http calls, %.0f retries, %.0f cache hits; "
                  "server log: %d receipts of %d requests, %d ok\n",
                  soak_num(llm, "requests"), soak_num(llm, "http_calls"), soak_num(llm, "retries"),
                  soak_num(llm, "cache_hits"), log_lines, requests, ok);
    /* no two requests of this run are the same body, so nothing comes from the
     * cache and the log's bodies are the client's requests one to one */
    assert_int_equal((int)soak_num(llm, "cache_hits"), 0);
    assert_int_equal((int)soak_num(llm, "requests"), requests);
    assert_int_equal((int)soak_num(llm, "http_calls"), log_lines);
    assert_int_equal((int)soak_num(llm, "retries"), log_lines - requests);
    assert_int_equal((int)soak_num(llm, "ok"), ok);
    const cJSON *f = cJSON_GetObjectItem(llm, "failures"), *x;
    int listed = 0;
    cJSON_ArrayForEach(x, f) {
        int want = tally_get(&ex_r->outcome, x->string) + tally_get(&sim_r->outcome, x->string);
        if ((int)x->valuedouble != want)
            fail_msg("manifest llm.failures.%s is %d, the server log says %d", x->string,
                     (int)x->valuedouble, want);
        listed += want;
    }
    assert_int_equal(listed, requests - ok); /* no failure category missing */
}

/* Explanation lines against the explain replay: statuses and reasons. */
static int check_explanations(const cJSON *lines, const struct examples *ex,
                              const struct replay *rp, const cJSON **per, int *attempts) {
    int n = one_line_per_feature("explanations", lines, ex, per);
    assert_int_equal(n, ex->n_features); /* zero lost */
    assert_int_equal(rp->requests, ex->n_features);
    struct tally got = {0};
    int n_ok = 0;
    *attempts = 0;
    for (int i = 0; i < ex->n_features; i++) {
        const char *st = soak_str(per[i], "status");
        *attempts += (int)soak_num(per[i], "attempts");
        if (strcmp(st, "ok") == 0) {
            n_ok++;
            tally_add(&got, "ok", 1);
            assert_non_null(soak_str(per[i], "explanation"));
            continue;
        }
        assert_string_equal(st, "failed");
        const char *reason = soak_str(per[i], "reason"), *detail = soak_str(per[i], "detail");
        if (!reason || !detail || !*detail)
            fail_msg("feature %d failed without its reason", ex->features[i]);
        tally_add(&got, reason, 1);
    }
    for (int i = 0; i < rp->outcome.k; i++)
        if (tally_get(&got, rp->outcome.name[i]) != rp->outcome.n[i])
            fail_msg("explanations: %d %s, the server log says %d",
                     tally_get(&got, rp->outcome.name[i]), rp->outcome.name[i], rp->outcome.n[i]);
    assert_int_equal(got.k, rp->outcome.k);
    return n_ok;
}

/* Simulation lines: one per explained feature, none for a failed explanation;
 * windows against the simulate replay. */
static void check_simulations(const cJSON *lines, const struct examples *ex, const cJSON **expl,
                              const struct replay *rp, int *n_failed) {
    const cJSON **per = calloc((size_t)ex->n_features, sizeof *per);
    one_line_per_feature("simulations", lines, ex, per);
    struct tally got = {0};
    int windows = 0;
    *n_failed = 0;
    for (int i = 0; i < ex->n_features; i++) {
        bool explained = strcmp(soak_str(expl[i], "status"), "ok") == 0;
        if (!explained) {
            if (per[i])
                fail_msg("feature %d: simulated although its explanation failed", ex->features[i]);
            continue;
        }
        if (!per[i]) fail_msg("feature %d: explained but never simulated (lost)", ex->features[i]);
        const cJSON *w;
        int bad = 0;
        cJSON_ArrayForEach(w, cJSON_GetObjectItem(per[i], "windows")) {
            windows++;
            const char *st = soak_str(w, "status");
            if (strcmp(st, "ok") == 0) {
                tally_add(&got, "ok", 1);
                assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(w, "predicted")),
                                 ex->window);
            } else {
                bad++;
                tally_add(&got, soak_str(w, "reason"), 1);
            }
        }
        assert_int_equal((int)soak_num(per[i], "n_requests"),
                         cJSON_GetArraySize(cJSON_GetObjectItem(per[i], "windows")));
        assert_string_equal(soak_str(per[i], "status"), bad ? "failed" : "ok");
        if (bad) {
            (*n_failed)++;
            assert_non_null(soak_str(per[i], "reason"));
        }
    }
    assert_int_equal(windows, rp->requests); /* one request per window, none twice */
    for (int i = 0; i < rp->outcome.k; i++)
        if (tally_get(&got, rp->outcome.name[i]) != rp->outcome.n[i])
            fail_msg("simulated windows: %d %s, the server log says %d",
                     tally_get(&got, rp->outcome.name[i]), rp->outcome.name[i], rp->outcome.n[i]);
    assert_int_equal(got.k, rp->outcome.k);
    free(per);
}

static void check_scores(const cJSON *lines, const struct examples *ex, int want_failed) {
    const cJSON **per = calloc((size_t)ex->n_features, sizeof *per);
    assert_int_equal(one_line_per_feature("scores", lines, ex, per), ex->n_features);
    int failed = 0;
    for (int i = 0; i < ex->n_features; i++) {
        const char *st = soak_str(per[i], "status");
        if (strcmp(st, "failed") == 0) {
            failed++;
            assert_non_null(soak_str(per[i], "reason"));
            assert_non_null(soak_str(per[i], "failed_stage"));
            assert_true(cJSON_IsNull(cJSON_GetObjectItem(per[i], "score")));
        } else if (strcmp(st, "scored") == 0) {
            assert_true(cJSON_IsNumber(cJSON_GetObjectItem(per[i], "score")));
        } else {
            assert_string_equal(st, "no_score");
            assert_non_null(soak_str(per[i], "reason"));
        }
    }
    assert_int_equal(failed, want_failed);
    free(per);
}

static void test_thousand_requests_with_every_fault(void **state) {
    struct run *r = *state;
    if (soak_stories_find(&r->st) != 0)
        skip_because("../shared/models/stories260K or its text is absent");
    r->dir = test_tmpdir("soak");
    const char *args[] = {"--mix-rate",   "0.2", "--mix-seed", "11", "--slow-ms", "2000",
                          "--latency-ms", "2",   "--hot",      "e",  NULL};
    assert_int_equal(soak_server_start(&r->srv, r->dir, SOAK_SERVER, args), 0);
    write_config(r);
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s run --threads 1 %s", autointerp_bin(), r->cfg);
    double t0 = wall();
    int rc = run_capture(cmd, &out);
    double secs = wall() - t0;
    if (rc != 0) {
        size_t n = out ? strlen(out) : 0;
        fail_msg("the run failed (exit %d): ...%s", rc, out ? out + (n > 1500 ? n - 1500 : 0) : "");
    }
    free(out);

    cJSON *log = test_server_log(&r->srv);
    int log_lines = cJSON_GetArraySize(log);
    struct replay ex_r, sim_r;
    replay_log(log, "explain", &ex_r);
    replay_log(log, "simulate", &sim_r);
    print_message("%d requests, %d receipts (%d with a fault) in %.1f s\n",
                  ex_r.requests + sim_r.requests, log_lines, ex_r.faults + sim_r.faults, secs);
    assert_true(ex_r.requests + sim_r.requests >= 1000);
    /* every kind of fault happened, and about 20% of receipts got one */
    const char *kinds[] = {"429",   "500",       "503",       "slow",    "drop",
                           "reset", "malformed", "truncated", "error200"};
    for (int k = 0; k < 9; k++)
        if (tally_get(&ex_r.kinds, kinds[k]) + tally_get(&sim_r.kinds, kinds[k]) == 0)
            fail_msg("no '%s' fault was injected", kinds[k]);
    double rate = (double)(ex_r.faults + sim_r.faults) / log_lines;
    assert_true(rate > 0.15 && rate < 0.25);

    char *mpath = path_join(r->exp, "manifest.json");
    cJSON *m = load_json(mpath);
    free(mpath);
    assert_string_equal(soak_str(m, "status"), "ok");
    check_manifest(m, &ex_r, &sim_r, log_lines);

    struct examples ex;
    char *sae = NULL;
    load_examples(r, &ex, &sae);
    const cJSON **expl = calloc((size_t)ex.n_features, sizeof *expl);
    cJSON *el = stage_lines(r, "explanations", sae);
    int attempts = 0;
    int n_explained = check_explanations(el, &ex, &ex_r, expl, &attempts);
    assert_int_equal(attempts, ex_r.receipts); /* each line's attempts were all received */
    cJSON *sl = stage_lines(r, "simulations", sae);
    int sim_failed = 0;
    check_simulations(sl, &ex, expl, &sim_r, &sim_failed);
    cJSON *sc = stage_lines(r, "scores", sae);
    check_scores(sc, &ex, ex.n_features - n_explained + sim_failed);

    /* the manifest's per-stage counts say the same */
    const cJSON *stages = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "llm"), "stages");
    const cJSON *se = cJSON_GetObjectItem(stages, "explain"),
                *ss = cJSON_GetObjectItem(stages, "simulate");
    assert_int_equal((int)soak_num(se, "ok"), n_explained);
    assert_int_equal((int)soak_num(se, "failed"), ex.n_features - n_explained);
    assert_int_equal((int)soak_num(se, "llm_http_calls"), ex_r.receipts);
    assert_int_equal((int)soak_num(ss, "failed"), sim_failed);
    assert_int_equal((int)soak_num(ss, "ok"), n_explained - sim_failed);
    assert_int_equal((int)soak_num(ss, "llm_http_calls"), sim_r.receipts);

    cJSON_Delete(el);
    cJSON_Delete(sl);
    cJSON_Delete(sc);
    free(expl);
    free(sae);
    examples_free(&ex);
    cJSON_Delete(m);
    cJSON_Delete(log);
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
        cmocka_unit_test_setup_teardown(test_libcurl_resend_after_reset_is_counted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_thousand_requests_with_every_fault, setup, teardown),
    };
    return cmocka_run_group_tests_name("fault_soak", tests, NULL, NULL);
}
