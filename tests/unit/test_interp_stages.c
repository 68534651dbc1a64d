/* test_interp_stages.c: explain, simulate and score end to end through a local
 * OpenAI-compatible server (tests/fixtures/interp/interp_server.py: the LLM
 * client's test server taught to answer like a simulator), in all three
 * simulator modes; the prompts the server actually received; garbage replies
 * and server faults recorded as failures with reasons; resumability counted in
 * server requests; the CLI commands over a config. */
#include "../servers/testserver.h"
#include "testutil.h"
#include "../fixtures/interp/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "interp/interp.h"
#include "interp/prompts.h"
#include "io/atomic.h"
#include "io/jsonl.h"
#include "util/error.h"

#define INTERP_SERVER "tests/fixtures/interp/interp_server.py"

/* testserver.h's launcher runs the LLM client's script; this one runs ours. */
static int server_start(struct test_server *s, const char *dir, const char *const *extra) {
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->log_path, sizeof s->log_path, "%s/server-log.jsonl", dir);
    char port_file[600], out_file[600];
    snprintf(port_file, sizeof port_file, "%s/server.port", dir);
    snprintf(out_file, sizeof out_file, "%s/server.out", dir);
    unlink(port_file); /* a restarted server must not be found at the old port */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int fd = open(out_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *argv[64] = {"/usr/bin/python3", INTERP_SERVER, "--port", "0", "--port-file",
                                port_file, "--log", s->log_path};
        int k = 8;
        for (int i = 0; extra && extra[i] && k < 63; i++) argv[k++] = extra[i];
        argv[k] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int waited = 0; waited < 10000; waited += 20) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", &s->port) == 1;
            fclose(f);
            if (ok) {
                snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%d/v1", s->port);
                return 0;
            }
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "interp server exited early; see %s\n", out_file);
            return -1;
        }
        ts_sleep_ms(20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    s->pid = 0;
    return -1;
}

/* ---- fixture ---- */

#define N_FEATURES 5

struct fx {
    char *dir, *dump;
    struct test_server srv;
    struct synth syn;
    struct interp_settings s;
    char expl[600], sim[600], score[600];
};

static void endpoint(struct interp_endpoint *e, const char *url) {
    e->builtin = false;
    llm_endpoint_config_init(&e->llm);
    e->llm.base_url = url;
    e->llm.model = "test-model";
    e->llm.max_tokens = 400;
    e->llm.backoff_base_ms = 5;
    e->llm.backoff_max_ms = 20;
    e->llm.timeout_ms = 5000;
    e->llm.max_retries = 1;
}

static int setup(void **state) {
    struct fx *f = calloc(1, sizeof *f);
    f->dir = test_tmpdir("interp-stages");
    f->dump = path_join(f->dir, "dump");
    mkdir_p(f->dump);
    synth_build(&f->syn, f->dir, N_FEATURES, 12, 3, 2, 2, 11);
    interp_settings_default(&f->s);
    f->s.n_explain = 3;
    f->s.n_score_top = 2;
    f->s.n_score_random = 2;
    snprintf(f->expl, sizeof f->expl, "%s/expl.jsonl", f->dir);
    snprintf(f->sim, sizeof f->sim, "%s/sim.jsonl", f->dir);
    snprintf(f->score, sizeof f->score, "%s/score.jsonl", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fx *f = *state;
    test_server_stop(&f->srv);
    synth_free(&f->syn);
    interp_settings_free(&f->s);
    test_rmtree(f->dir);
    free(f->dump);
    free(f->dir);
    free(f);
    return 0;
}

/* Start the server (hot word "cat", bodies dumped) plus extra args, and point
 * both roles at it. */
static void serve(struct fx *f, const char *extra1, const char *extra2) {
    const char *args[] = {"--hot", "cat", "--dump", f->dump, extra1, extra2, NULL};
    assert_int_equal(server_start(&f->srv, f->dir, args), 0);
    endpoint(&f->s.explainer, f->srv.base_url);
    endpoint(&f->s.simulator, f->srv.base_url);
}

static int requests(const struct fx *f) { return test_server_count(&f->srv, NULL, NULL); }

/* ---- reading results ---- */

static int collect(const cJSON *obj, int line_no, void *ctx) {
    (void)line_no;
    cJSON_AddItemToArray(ctx, cJSON_Duplicate(obj, 1));
    return 0;
}

static cJSON *lines(const char *path) {
    cJSON *a = cJSON_CreateArray();
    if (jsonl_read(path, 1, collect, a, NULL) != 0) fail_msg("%s", err_msg());
    return a;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *by_feature(const cJSON *arr, int feature) {
    const cJSON *o, *last = NULL;
    cJSON_ArrayForEach(o, arr) if ((int)cJSON_GetObjectItem(o, "feature")->valuedouble == feature) last = o;
    return last;
}

static void run_explain(struct fx *f, int want_ok) {
    struct interp_counts c;
    if (interp_explain(&f->s, &f->syn.ex, f->syn.vocab, f->expl, &c) != 0) fail_msg("%s", err_msg());
    assert_int_equal(c.n_ok, want_ok);
}

static void run_simulate(struct fx *f, struct interp_counts *c) {
    if (interp_simulate(&f->s, &f->syn.ex, f->syn.vocab, f->expl, f->sim, c) != 0) fail_msg("%s", err_msg());
}

static void run_score(struct fx *f, struct interp_counts *c) {
    if (interp_score(&f->s, &f->syn.ex, f->expl, f->sim, f->score, c) != 0) fail_msg("%s", err_msg());
}

/* Feature 0 fires on " cat" (the server's hot word): scored high; the others
 * get a constant simulation from the server: no score, never 0. */
static void check_scores(struct fx *f, double min_cat_score) {
    struct interp_counts c;
    run_score(f, &c);
    assert_int_equal(c.n_ok, 1);
    assert_int_equal(c.n_no_score, N_FEATURES - 1);
    cJSON *sc = lines(f->score);
    const cJSON *cat = by_feature(sc, f->syn.ex.features[0]);
    assert_string_equal(str(cat, "status"), "scored");
    double r = cJSON_GetObjectItem(cat, "score")->valuedouble;
    if (r < min_cat_score) fail_msg("the cat feature scored %.3f", r);
    assert_int_equal((int)cJSON_GetObjectItem(cat, "n_tokens")->valuedouble, 4 * 12);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetObjectItem(cat, "by_split"), "top")));
    const cJSON *dog = by_feature(sc, f->syn.ex.features[1]);
    assert_string_equal(str(dog, "status"), "no_score");
    assert_string_equal(str(dog, "reason"), "constant_simulation");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(dog, "score")));
    cJSON_Delete(sc);
}

/* The predicted values of feature 0's windows at the hot-word rows. */
static void check_cat_predictions(struct fx *f, double hot, double cold) {
    cJSON *sim = lines(f->sim);
    const cJSON *rec = by_feature(sim, f->syn.ex.features[0]);
    assert_string_equal(str(rec, "status"), "ok");
    int64_t first, count;
    examples_feature_windows(&f->syn.ex, 0, &first, &count);
    const cJSON *w;
    int k = 0, seen_hot = 0;
    cJSON_ArrayForEach(w, cJSON_GetObjectItem(rec, "windows")) {
        int64_t win = first + 3 + k++; /* after the 3 explain windows, in order */
        const cJSON *p = cJSON_GetObjectItem(w, "predicted");
        assert_int_equal(cJSON_GetArraySize(p), 12);
        for (int i = 0; i < 12; i++) {
            double v = cJSON_GetArrayItem(p, i)->valuedouble;
            int is_hot = f->syn.ex.win_tokens[win * 12 + i] == SYNTH_WORD(1);
            seen_hot += is_hot;
            if (fabs(v - (is_hot ? hot : cold)) > 1e-3)
                fail_msg("window %d token %d: predicted %.4f, want %.4f", k - 1, i, v, is_hot ? hot : cold);
        }
    }
    assert_int_equal(k, 4);
    assert_true(seen_hot >= 4);
    cJSON_Delete(sim);
}

/* ---- tests ---- */

static void test_explain_prompt_and_record(void **state) {
    struct fx *f = *state;
    serve(f, NULL, NULL);
    run_explain(f, N_FEATURES);
    assert_int_equal(requests(f), N_FEATURES);
    cJSON *ex = lines(f->expl);
    assert_int_equal(cJSON_GetArraySize(ex), N_FEATURES);
    const cJSON *r = cJSON_GetArrayItem(ex, 0);
    struct prompt_set ps;
    assert_int_equal(prompt_set_load(&ps, "prompts"), 0);
    assert_string_equal(str(cJSON_GetObjectItem(r, "prompts"), "sha256"), ps.sha256);
    prompt_set_free(&ps);
    assert_string_equal(str(r, "status"), "ok");
    assert_string_equal(str(r, "provider"), "openai");
    assert_string_equal(str(r, "model"), "test-model");
    assert_non_null(strstr(str(r, "explanation"), "Here are 3 excerpts")); /* the server echoes the prompt */
    assert_int_equal(strlen(str(r, "request_sha256")), 64);
    assert_true(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "usage"), "prompt_tokens")->valuedouble > 0);
    cJSON_Delete(ex);
    /* What the explainer saw for feature 0: system, 4 worked-example turns, then
     * the excerpts as token<TAB>floor(10a/max) rows (max over the 3 shown
     * windows) and, when under 20% of the tokens are active, the zeros-filtered
     * view with 3 tokens of context. The rows are rebuilt here independently. */
    const struct examples *x = &f->syn.ex;
    int64_t first, count;
    examples_feature_windows(x, 0, &first, &count);
    float max = 0;
    int active = 0;
    for (int64_t i = first * 12; i < (first + 3) * 12; i++)
        if (x->win_acts[i] > max) max = x->win_acts[i];
    char rows[3][2048], sparse[2048] = "";
    for (int w = 0; w < 3; w++) {
        rows[w][0] = 0;
        for (int i = 0; i < 12; i++) {
            int64_t at = (first + w) * 12 + i;
            int v = (int)floor(10.0 * x->win_acts[at] / max);
            const char *tok = render_token(f->syn.vocab, x->win_tokens[at]);
            snprintf(rows[w] + strlen(rows[w]), 2048 - strlen(rows[w]), "%s\t%d%s", tok, v,
                     i < 11 ? "\n" : "");
            if (v == 0) continue;
            active++;
            size_t k = strlen(sparse);
            if (k) sparse[k++] = '\n', sparse[k] = 0;
            for (int c = i - 3 < 0 ? 0 : i - 3; c < i; c++)
                strcat(sparse, render_token(f->syn.vocab, x->win_tokens[(first + w) * 12 + c]));
            snprintf(sparse + strlen(sparse), sizeof sparse - strlen(sparse), "\t%s\t%d", tok, v);
        }
    }
    int found = 0;
    for (int k = 1; k <= N_FEATURES; k++) {
        char name[32];
        snprintf(name, sizeof name, "req-%d.json", k);
        char *path = path_join(f->dump, name);
        size_t n;
        char *body = read_file_all(path, 0, &n);
        cJSON *req = cJSON_Parse(body);
        const cJSON *msgs = cJSON_GetObjectItem(req, "messages");
        assert_int_equal(cJSON_GetArraySize(msgs), 6);
        assert_string_equal(str(cJSON_GetArrayItem(msgs, 0), "role"), "system");
        assert_string_equal(str(cJSON_GetArrayItem(msgs, 4), "role"), "assistant");
        const char *user = str(cJSON_GetArrayItem(msgs, 5), "content");
        assert_null(strstr(user, "{{"));
        if (strstr(user, rows[0])) {
            found++;
            char want[2200];
            snprintf(want, sizeof want, "Excerpt 1:\n%s\n", rows[0]);
            assert_non_null(strstr(user, want));
            snprintf(want, sizeof want, "Excerpt 3:\n%s\n", rows[2]);
            assert_non_null(strstr(user, want));
            int sparse_shown = strstr(user, "Only the tokens where the feature is active") != NULL;
            assert_int_equal(sparse_shown, active < 0.2 * 36);
            if (sparse_shown && !strstr(user, sparse)) fail_msg("sparse view missing:\n%s\nin\n%s", sparse, user);
        }
        cJSON_Delete(req);
        free(body);
        free(path);
    }
    assert_int_equal(found, 1);
}

static void test_json_mode_end_to_end(void **state) {
    struct fx *f = *state;
    serve(f, NULL, NULL);
    run_explain(f, N_FEATURES);
    f->s.mode = SIM_JSON;
    struct interp_counts c;
    run_simulate(f, &c);
    assert_int_equal(c.n_ok, N_FEATURES);
    assert_int_equal(requests(f), N_FEATURES + N_FEATURES * 4);
    check_cat_predictions(f, 10, 0);
    check_scores(f, 0.9);
    /* The json request: a schema of exactly n integers 0..10, and the tokens listed. */
    char *path = path_join(f->dump, "req-6.json");
    size_t n;
    char *body = read_file_all(path, 0, &n);
    cJSON *req = cJSON_Parse(body);
    const cJSON *schema = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(req, "response_format"), "json_schema"), "schema");
    const cJSON *acts = cJSON_GetObjectItem(cJSON_GetObjectItem(schema, "properties"), "activations");
    assert_int_equal((int)cJSON_GetObjectItem(acts, "minItems")->valuedouble, 12);
    assert_int_equal((int)cJSON_GetObjectItem(acts, "maxItems")->valuedouble, 12);
    assert_int_equal((int)cJSON_GetObjectItem(cJSON_GetObjectItem(acts, "items"), "maximum")->valuedouble, 10);
    const cJSON *msgs = cJSON_GetObjectItem(req, "messages");
    const char *user = str(cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1), "content");
    assert_non_null(strstr(user, "Text (12 tokens):\n0\t"));
    assert_non_null(strstr(user, "\n11\t"));
    assert_null(strstr(user, "\n12\t"));
    cJSON_Delete(req);
    free(body);
    free(path);
}

static void test_logprobs_chat_end_to_end(void **state) {
    struct fx *f = *state;
    serve(f, NULL, NULL);
    run_explain(f, N_FEATURES);
    f->s.mode = SIM_LOGPROBS;
    f->s.logprobs_api = LOGPROBS_CHAT;
    f->s.top_logprobs = 5;
    struct interp_counts c;
    run_simulate(f, &c);
    assert_int_equal(c.n_ok, N_FEATURES);
    /* split digits: 10·0.7·0.95 + 1·0.7·0.05 + 9·0.2 + 8·0.1; cold: 1·0.1 + 2·0.05 */
    check_cat_predictions(f, 9.285, 0.2);
    check_scores(f, 0.9);
    cJSON *sim = lines(f->sim);
    assert_string_equal(str(cJSON_GetArrayItem(sim, 0), "mode"), "logprobs");
    assert_string_equal(str(cJSON_GetArrayItem(sim, 0), "logprobs_api"), "chat");
    cJSON_Delete(sim);
}

static void test_logprobs_completions_end_to_end(void **state) {
    struct fx *f = *state;
    serve(f, NULL, NULL);
    run_explain(f, N_FEATURES);
    f->s.mode = SIM_LOGPROBS;
    f->s.logprobs_api = LOGPROBS_COMPLETIONS;
    struct interp_counts c;
    run_simulate(f, &c);
    assert_int_equal(c.n_ok, N_FEATURES);
    check_cat_predictions(f, 9.6, 0.2);
    check_scores(f, 0.9);
    /* the request: /completions, echo, the rows with placeholders */
    char *path = path_join(f->dump, "req-6.json");
    size_t n;
    char *body = read_file_all(path, 0, &n);
    cJSON *req = cJSON_Parse(body);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(req, "echo")));
    assert_non_null(strstr(str(req, "prompt"), "\tunknown\n"));
    assert_non_null(strstr(str(req, "prompt"), "<start>"));
    cJSON_Delete(req);
    free(body);
    free(path);
}

static void test_builtin_simulator_after_server_explainer(void **state) {
    struct fx *f = *state;
    serve(f, NULL, NULL);
    run_explain(f, N_FEATURES);
    int before = requests(f);
    f->s.simulator.builtin = true;
    f->s.simulator.llm.model = "builtin-simulator";
    f->s.mode = SIM_BUILTIN;
    struct interp_counts c;
    run_simulate(f, &c);
    assert_int_equal(c.n_ok, N_FEATURES);
    assert_int_equal(c.llm.http_calls, 0);
    assert_int_equal(requests(f), before); /* offline */
    run_score(f, &c);
    assert_int_equal(c.n_ok + c.n_no_score, N_FEATURES);
    assert_int_equal(c.n_failed, 0);
    /* a mode that does not fit the provider is refused before anything runs */
    f->s.mode = SIM_JSON;
    assert_int_equal(interp_simulate(&f->s, &f->syn.ex, f->syn.vocab, f->expl, f->sim, &c), -1);
    assert_non_null(strstr(err_msg(), "does not fit"));
}

static void write_explanations(struct fx *f, const char *const *texts, int n) {
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "feature", f->syn.ex.features[i]);
        if (texts[i]) {
            cJSON_AddStringToObject(o, "status", "ok");
            cJSON_AddStringToObject(o, "explanation", texts[i]);
        } else {
            cJSON_AddStringToObject(o, "status", "failed");
            cJSON_AddNullToObject(o, "explanation");
            cJSON_AddStringToObject(o, "reason", "http_5xx");
            cJSON_AddStringToObject(o, "detail", "HTTP 503 after 2 attempts");
        }
        assert_int_equal(jsonl_append(f->expl, o), 0);
        cJSON_Delete(o);
    }
}

static void test_garbage_simulator_replies_are_failures(void **state) {
    struct fx *f = *state;
    serve(f, NULL, NULL);
    const char *texts[N_FEATURES] = {"the word cat [[fault:freetext]]", "dogs [[fault:length]]",
                                     "balls [[interp:count]]", "houses [[interp:range]]", NULL};
    write_explanations(f, texts, N_FEATURES);
    f->s.mode = SIM_JSON;
    struct interp_counts c;
    run_simulate(f, &c);
    assert_int_equal(c.n_ok, 0);
    assert_int_equal(c.n_failed, 4);
    assert_int_equal(c.n_pending, 1); /* the failed explanation: nothing to simulate */
    cJSON *sim = lines(f->sim);
    const char *want[] = {"bad_output", "truncated", "wrong_count", "out_of_range"};
    const char *words[] = {"not JSON", "cut off", "expected 12 activations", "11 is outside 0..10"};
    for (int k = 0; k < 4; k++) {
        const cJSON *r = by_feature(sim, f->syn.ex.features[k]);
        assert_string_equal(str(r, "status"), "failed");
        assert_string_equal(str(r, "reason"), want[k]);
        if (!strstr(str(r, "detail"), words[k])) fail_msg("feature %d: detail '%s'", k, str(r, "detail"));
        const cJSON *w0 = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "windows"), 0);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(w0, "predicted")));
    }
    cJSON_Delete(sim);
    run_score(f, &c);
    assert_int_equal(c.n_ok, 0);
    assert_int_equal(c.n_failed, 5); /* failures are recorded, excluded, never 0 */
    cJSON *sc = lines(f->score);
    const cJSON *o;
    cJSON_ArrayForEach(o, sc) {
        assert_string_equal(str(o, "status"), "failed");
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "score")));
    }
    assert_string_equal(str(by_feature(sc, f->syn.ex.features[4]), "failed_stage"), "explain");
    assert_string_equal(str(by_feature(sc, f->syn.ex.features[4]), "reason"), "http_5xx");
    assert_string_equal(str(by_feature(sc, f->syn.ex.features[2]), "failed_stage"), "simulate");
    assert_string_equal(str(by_feature(sc, f->syn.ex.features[2]), "reason"), "wrong_count");
    cJSON_Delete(sc);
}

static void test_explainer_faults_and_a_stopped_run(void **state) {
    struct fx *f = *state;
    serve(f, NULL, NULL);
    synth_set_token(&f->syn, 1, 0, 5, SYNTH_WORD(16)); /* [[fault:500]] in feature 1's excerpts */
    synth_set_token(&f->syn, 3, 0, 5, SYNTH_WORD(19)); /* [[fault:401]]: the batch stops */
    f->s.explainer.llm.concurrency = 1;                /* in order: 0, 1, 2, then 3 stops */
    /* feature 1's retry must come before feature 2 is sent (due retries go before
     * fresh jobs); with a real backoff, 3's 401 could stop the batch first and
     * leave 1 pending, depending on the machine's speed */
    f->s.explainer.llm.backoff_base_ms = 1;
    f->s.explainer.llm.backoff_max_ms = 1;
    struct interp_counts c;
    assert_int_equal(interp_explain(&f->s, &f->syn.ex, f->syn.vocab, f->expl, &c), -1);
    assert_non_null(strstr(err_msg(), "401"));
    assert_int_equal(c.n_ok, 2);
    assert_int_equal(c.n_failed, 2); /* the 500 after its retry, and the 401 itself */
    assert_int_equal(c.n_pending, 1); /* feature 4: never sent, no line */
    cJSON *ex = lines(f->expl);
    assert_int_equal(cJSON_GetArraySize(ex), 4);
    assert_string_equal(str(by_feature(ex, f->syn.ex.features[1]), "reason"), "http_5xx");
    assert_string_equal(str(by_feature(ex, f->syn.ex.features[3]), "reason"), "http_4xx");
    assert_null(by_feature(ex, f->syn.ex.features[4]));
    cJSON_Delete(ex);
    /* The key fixed, a rerun sends only what is missing (feature 4), and with
     * retry_failed also the failures (whose requests changed: the token is gone). */
    synth_set_token(&f->syn, 3, 0, 5, SYNTH_WORD(3));
    synth_set_token(&f->syn, 1, 0, 5, SYNTH_WORD(3));
    test_server_stop(&f->srv); /* its log goes on in the same file */
    serve(f, NULL, NULL);
    int before = requests(f);
    assert_int_equal(interp_explain(&f->s, &f->syn.ex, f->syn.vocab, f->expl, &c), 0);
    assert_int_equal(c.n_done_before, 2);
    assert_int_equal(c.n_ok, 3);
    assert_int_equal(requests(f) - before, 3); /* features 1 and 3 changed, 4 was missing */
}

static void test_long_explanations_and_cut_prompts_are_failures(void **state) {
    struct fx *f = *state;
    serve(f, "--ctx", "8"); /* llama.cpp's silent cut: usage.prompt_tokens <= 8 */
    struct interp_counts c;
    assert_int_equal(interp_explain(&f->s, &f->syn.ex, f->syn.vocab, f->expl, &c), 0);
    assert_int_equal(c.n_failed, N_FEATURES);
    assert_string_equal(c.reasons[0].name, "prompt_cut");
    test_server_stop(&f->srv);
    unlink(f->expl);
    serve(f, NULL, NULL);
    f->s.max_explanation_bytes = 20;
    assert_int_equal(interp_explain(&f->s, &f->syn.ex, f->syn.vocab, f->expl, &c), 0);
    assert_int_equal(c.n_failed, N_FEATURES);
    assert_string_equal(c.reasons[0].name, "explanation_too_long");
}

static void truncate_lines(const char *path, int keep, const char *torn) {
    size_t n;
    char *t = read_file_all(path, 0, &n);
    char *p = t;
    for (int i = 0; i < keep; i++) p = strchr(p, '\n') + 1;
    *p = 0;
    FILE *fp = fopen(path, "w");
    fputs(t, fp);
    fputs(torn, fp); /* a line cut by a crash */
    fclose(fp);
    free(t);
}

static void test_resumable_stages_send_only_what_is_missing(void **state) {
    struct fx *f = *state;
    serve(f, NULL, NULL);
    run_explain(f, N_FEATURES);
    assert_int_equal(requests(f), N_FEATURES);
    truncate_lines(f->expl, 2, "{\"feature\": 24, \"status\": \"o");
    struct interp_counts c;
    assert_int_equal(interp_explain(&f->s, &f->syn.ex, f->syn.vocab, f->expl, &c), 0);
    assert_int_equal(c.n_done_before, 2);
    assert_int_equal(c.n_ok, 3);
    assert_int_equal(requests(f), N_FEATURES + 3);
    cJSON *ex = lines(f->expl);
    assert_int_equal(cJSON_GetArraySize(ex), N_FEATURES); /* the torn line is gone */
    cJSON_Delete(ex);
    assert_int_equal(interp_explain(&f->s, &f->syn.ex, f->syn.vocab, f->expl, &c), 0);
    assert_int_equal(c.n_done_before, N_FEATURES);
    assert_int_equal(requests(f), N_FEATURES + 3);

    f->s.mode = SIM_JSON;
    run_simulate(f, &c);
    int after_sim = requests(f);
    assert_int_equal(after_sim, N_FEATURES + 3 + 4 * N_FEATURES);
    truncate_lines(f->sim, 1, "");
    run_simulate(f, &c);
    assert_int_equal(c.n_done_before, 1);
    assert_int_equal(c.n_ok, N_FEATURES - 1);
    assert_int_equal(requests(f), after_sim + 4 * (N_FEATURES - 1));
    run_score(f, &c);
    int scored = c.n_ok + c.n_no_score;
    assert_int_equal(scored, N_FEATURES);
    run_score(f, &c);
    assert_int_equal(c.n_done_before, N_FEATURES);
    assert_int_equal(c.n_ok + c.n_no_score, 0);

    /* Other prompts make other requests: everything is explained again. */
    char *pdir = path_join(f->dir, "prompts2");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -r prompts %s && echo 'Be brief.' >> %s/explain_system.txt", pdir, pdir);
    assert_int_equal(system(cmd), 0);
    f->s.prompts_dir = pdir;
    int before = requests(f);
    assert_int_equal(interp_explain(&f->s, &f->syn.ex, f->syn.vocab, f->expl, &c), 0);
    assert_int_equal(c.n_ok, N_FEATURES);
    assert_int_equal(requests(f), before + N_FEATURES);
    /* ...and the scores of the old simulations wait for new ones (the explanation changed) */
    run_score(f, &c);
    assert_int_equal(c.n_pending, N_FEATURES);
    free(pdir);
}

static void test_cli_commands_over_a_config(void **state) {
    struct fx *f = *state;
    serve(f, NULL, NULL);
    char exdir[700], cfg_path[700], exfile[800];
    snprintf(exdir, sizeof exdir, "%s/exp1/examples", f->dir);
    assert_int_equal(mkdir_p(exdir), 0);
    /* named as the config's sweep names its one SAE; a stray file beside it is not
     * part of the run */
    snprintf(exfile, sizeof exfile, "%s/L1-local-lam1-s0.h5", exdir);
    char stray[800];
    snprintf(stray, sizeof stray, "%s/stray.h5", exdir);
    if (examples_write(stray, &f->syn.ex) != 0) fail_msg("%s", err_msg());
    if (examples_write(exfile, &f->syn.ex) != 0) fail_msg("%s", err_msg());
    snprintf(cfg_path, sizeof cfg_path, "%s/cfg.json", f->dir);
    char cfg[4096];
    snprintf(cfg, sizeof cfg,
             "{\"experiment\": \"exp1\", \"results_dir\": \"%s\", \"data\": {\"tokenizer\": \"%s\","
             " \"train_tokens\": \"train.h5\", \"eval_tokens\": \"eval.h5\"},"
             " \"interp\": {\"n_explain\": 3, \"n_score_top\": 2, \"n_score_random\": 2, \"cache\": true},"
             " \"extract\": {\"top_k\": 5, \"n_random\": 2},"
             " \"sae\": {\"layers\": [1], \"types\": [\"local\"], \"local\": {\"lambdas\": [1]}},"
             " \"explainer\": {\"provider\": \"openai\", \"base_url\": \"%s\", \"model\": \"m1\", \"max_retries\": 1},"
             " \"simulator\": {\"provider\": \"openai\", \"base_url\": \"%s\", \"model\": \"m2\", \"mode\": \"json\"}}",
             f->dir, f->syn.tok_path, f->srv.base_url, f->srv.base_url);
    write_file(cfg_path, cfg, strlen(cfg));
    char *argv_e[] = {"explain", "--config", cfg_path, "-q", NULL};
    assert_int_equal(cmd_explain(4, argv_e), 0);
    char *argv_s[] = {"simulate", "--config", cfg_path, "-q", NULL};
    assert_int_equal(cmd_simulate(4, argv_s), 0);
    char *argv_c[] = {"score", "--config", cfg_path, "-q", NULL};
    assert_int_equal(cmd_score(4, argv_c), 0);
    char out[800];
    snprintf(out, sizeof out, "%s/exp1/scores/stray.jsonl", f->dir);
    assert_false(file_exists(out));
    snprintf(out, sizeof out, "%s/exp1/scores/L1-local-lam1-s0.jsonl", f->dir);
    cJSON *sc = lines(out);
    assert_int_equal(cJSON_GetArraySize(sc), N_FEATURES);
    assert_string_equal(str(by_feature(sc, f->syn.ex.features[0]), "status"), "scored");
    assert_string_equal(str(by_feature(sc, f->syn.ex.features[0]), "explainer_model"), "m1");
    assert_string_equal(str(by_feature(sc, f->syn.ex.features[0]), "simulator_model"), "m2");
    cJSON_Delete(sc);
    int sent = requests(f);
    assert_int_equal(sent, N_FEATURES * 5);
    /* The response cache (interp.cache) makes a forced redo free: --retry-failed
     * does not apply, so remove the results and run again. */
    snprintf(out, sizeof out, "rm -r %s/exp1/explanations %s/exp1/simulations", f->dir, f->dir);
    assert_int_equal(system(out), 0);
    assert_int_equal(cmd_explain(4, argv_e), 0);
    assert_int_equal(cmd_simulate(4, argv_s), 0);
    assert_int_equal(requests(f), sent);
    /* Usage errors: exit code 2. */
    char *argv_bad[] = {"simulate", "--config", cfg_path, "--mode", "telepathy", NULL};
    assert_int_equal(cmd_simulate(5, argv_bad), 2);
    char *argv_none[] = {"explain", NULL};
    assert_int_equal(cmd_explain(1, argv_none), 2);
    /* Offline with the builtin provider and no config: examples, tokenizer, run dir. */
    char run2[700];
    snprintf(run2, sizeof run2, "%s/run2", f->dir);
    char *b1[] = {"explain", "-t", f->syn.tok_path, "-o", run2, exfile, "-q", NULL};
    assert_int_equal(cmd_explain(7, b1), 0);
    char *b2[] = {"simulate", "-t", f->syn.tok_path, "-o", run2, "--mode", "builtin", exfile, "-q", NULL};
    assert_int_equal(cmd_simulate(9, b2), 0);
    char *b3[] = {"score", "-o", run2, exfile, "-q", NULL};
    assert_int_equal(cmd_score(5, b3), 0);
    snprintf(out, sizeof out, "%s/scores/L1-local-lam1-s0.jsonl", run2);
    sc = lines(out);
    assert_int_equal(cJSON_GetArraySize(sc), N_FEATURES);
    cJSON_Delete(sc);
    assert_int_equal(requests(f), sent);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_explain_prompt_and_record),
        T(test_json_mode_end_to_end),
        T(test_logprobs_chat_end_to_end),
        T(test_logprobs_completions_end_to_end),
        T(test_builtin_simulator_after_server_explainer),
        T(test_garbage_simulator_replies_are_failures),
        T(test_explainer_faults_and_a_stopped_run),
        T(test_long_explanations_and_cut_prompts_are_failures),
        T(test_resumable_stages_send_only_what_is_missing),
        T(test_cli_commands_over_a_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
