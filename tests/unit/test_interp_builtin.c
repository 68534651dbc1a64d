/* test_interp_builtin.c: the offline explainer names the activating tokens and
 * their context from the explain windows only; the simulator predicts from
 * the explanation text alone (scrambling the true activations of the scored
 * windows, or changing them, leaves its output unchanged); together they make
 * a real baseline that scores well on features that have a simple rule. */
#include "testutil.h"
#include "../fixtures/interp/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "interp/builtin.h"
#include "interp/interp.h"
#include "io/atomic.h"
#include "io/jsonl.h"
#include "util/error.h"

static void test_explainer_names_tokens_and_context(void **state) {
    (void)state;
    const char *t1[] = {"␣the", "␣cat", "␣sat", "␣on", "␣the", "␣cat", "."};
    const float a1[] = {0, 4, 0, 0, 0, 5, 0};
    const char *t2[] = {"A", "␣the", "␣Cat", "␣and", "␣dog", "␣ran"};
    const float a2[] = {0, 0, 5, 0, 1, 0};
    struct builtin_window w[] = {{t1, a1, 7}, {t2, a2, 6}};
    char *e = NULL;
    assert_int_equal(builtin_explain(w, 2, &e), 0);
    /* cat: (0.8 + 1 + 1) / 3.0 of the mass = 93%; dog 7%, under 15% of cat: dropped */
    assert_string_equal(e, "the token \"cat\" (93%), mostly right after \"the\"");
    free(e);
    const float zero[] = {0, 0, 0, 0, 0, 0, 0};
    struct builtin_window z[] = {{t1, zero, 7}};
    assert_int_equal(builtin_explain(z, 1, &e), -1);
    assert_non_null(strstr(err_msg(), "no token is active"));
}

static void test_simulator_reads_names_weights_and_context(void **state) {
    (void)state;
    const char *tok[] = {"␣The", "␣cat", "␣and", "␣the", "␣dog", "␣dogs", "␣the", "."};
    int v[8];
    assert_int_equal(
        builtin_simulate("the tokens \"cat\" (60%), \"dog\" (30%), mostly right after \"the\"", tok, 8, v),
        0);
    /* cat: 2 + 8*1 = 10; dog: 2 + 8*0.5 = 6, +1 after "the"; "the" is context: 1 */
    int want[] = {1, 10, 0, 1, 7, 0, 1, 0};
    assert_memory_equal(v, want, sizeof want);
    /* An explanation in an LLM's words: no quotes, so its content words count. */
    const char *tok2[] = {"␣the", "␣cats", "␣cat", "␣purr", "␣loudly"};
    assert_int_equal(builtin_simulate("mentions of cats and kittens", tok2, 5, v), 0);
    int want2[] = {0, 6, 6, 0, 0};
    assert_memory_equal(v, want2, sizeof want2);
    /* Escaped quotes in a name, typographic quotes. */
    const char *tok3[] = {"\"", "x", "«", "␣yes"};
    assert_int_equal(builtin_simulate("the token \"\\\"\" and “yes”", tok3, 4, v), 0);
    int want3[] = {10, 0, 0, 10};
    assert_memory_equal(v, want3, sizeof want3);
}

/* ---- through the stage functions ---- */

struct fx {
    char *dir;
    struct synth syn;
    struct interp_settings s;
};

static int setup(void **state) {
    struct fx *f = calloc(1, sizeof *f);
    f->dir = test_tmpdir("interp-builtin");
    synth_build(&f->syn, f->dir, 6, 24, 4, 4, 4, 7);
    interp_settings_default(&f->s);
    f->s.n_explain = 4;
    f->s.n_score_top = 4;
    f->s.n_score_random = 4;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fx *f = *state;
    synth_free(&f->syn);
    interp_settings_free(&f->s);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static char *run_stages(struct fx *f, const char *tag) {
    char *base = malloc(strlen(f->dir) + 32);
    sprintf(base, "%s/%s", f->dir, tag);
    char *e = malloc(strlen(base) + 32), *s = malloc(strlen(base) + 32), *sc = malloc(strlen(base) + 32);
    sprintf(e, "%s.expl.jsonl", base);
    sprintf(s, "%s.sim.jsonl", base);
    sprintf(sc, "%s.score.jsonl", base);
    struct interp_counts c;
    if (interp_explain(&f->s, &f->syn.ex, f->syn.vocab, e, &c) != 0) fail_msg("%s", err_msg());
    assert_int_equal(c.n_ok, 6);
    assert_int_equal(c.llm.http_calls, 0);
    if (interp_simulate(&f->s, &f->syn.ex, f->syn.vocab, e, s, &c) != 0) fail_msg("%s", err_msg());
    assert_int_equal(c.n_ok, 6);
    if (interp_score(&f->s, &f->syn.ex, e, s, sc, &c) != 0) fail_msg("%s", err_msg());
    assert_int_equal(c.n_ok + c.n_no_score, 6);
    free(e);
    free(s);
    free(sc);
    return base;
}

static char *slurp(const char *base, const char *suffix) {
    char path[1024];
    snprintf(path, sizeof path, "%s.%s.jsonl", base, suffix);
    size_t n;
    char *t = read_file_all(path, 0, &n);
    assert_non_null(t);
    return t;
}

/* Only the stable fields: latency differs between runs. */
static char *field_dump(const char *base, const char *suffix, const char *field) {
    char *t = slurp(base, suffix);
    size_t cap = strlen(t) + 1, n = 0;
    char *out = calloc(cap, 1);
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        char *v = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, field));
        n += (size_t)snprintf(out + n, cap - n, "%s\n", v);
        free(v);
        cJSON_Delete(o);
    }
    free(t);
    return out;
}

static void scramble_split(struct synth *syn, int split, unsigned long long seed) {
    struct examples *ex = &syn->ex;
    for (int64_t w = 0; w < ex->n_windows; w++) {
        if (ex->win_split[w] != split) continue;
        float *a = ex->win_acts + w * ex->window;
        for (int i = ex->window - 1; i > 0; i--) { /* shuffle, then perturb */
            seed = seed * 6364136223846793005ull + 1;
            int j = (int)((seed >> 33) % (unsigned long long)(i + 1));
            float t = a[i];
            a[i] = a[j] + 0.5f;
            a[j] = t;
        }
    }
}

static void test_scored_activations_never_reach_the_builtin(void **state) {
    struct fx *f = *state;
    char *a = run_stages(f, "a");
    /* Scramble the truth of every scored window (top and random). */
    scramble_split(&f->syn, SPLIT_SCORE_TOP, 1);
    scramble_split(&f->syn, SPLIT_SCORE_RANDOM, 2);
    char *b = run_stages(f, "b");
    char *ea = field_dump(a, "expl", "explanation"), *eb = field_dump(b, "expl", "explanation");
    char *sa = field_dump(a, "sim", "windows"), *sb = field_dump(b, "sim", "windows");
    assert_string_equal(ea, eb); /* explainer: unchanged */
    assert_string_equal(sa, sb); /* simulator: unchanged, bit for bit */
    char *ka = field_dump(a, "score", "score"), *kb = field_dump(b, "score", "score");
    assert_string_not_equal(ka, kb); /* the scores did see the scrambled truth */
    /* ...while the explain windows do steer the explainer: the test can fail. */
    scramble_split(&f->syn, SPLIT_EXPLAIN, 3);
    char *c = run_stages(f, "c");
    char *ec = field_dump(c, "expl", "explanation");
    assert_string_not_equal(ea, ec);
    free(ea), free(eb), free(sa), free(sb), free(ka), free(kb), free(ec);
    free(a), free(b), free(c);
}

static void test_builtin_baseline_scores_simple_features_well(void **state) {
    struct fx *f = *state;
    char *a = run_stages(f, "q");
    char *t = slurp(a, "score");
    int n = 0;
    double sum = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        assert_string_equal(cJSON_GetObjectItem(o, "status")->valuestring, "scored");
        double r = cJSON_GetObjectItem(o, "score")->valuedouble;
        sum += r;
        n++;
        const char *e = cJSON_GetObjectItem(o, "explanation")->valuestring;
        assert_non_null(strstr(e, "the token")); /* the builtin's own wording */
        cJSON_Delete(o);
    }
    assert_int_equal(n, 6);
    if (sum / n < 0.8) fail_msg("mean builtin score %.3f on one-word features", sum / n);
    free(t);
    free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explainer_names_tokens_and_context),
        cmocka_unit_test(test_simulator_reads_names_weights_and_context),
        cmocka_unit_test_setup_teardown(test_scored_activations_never_reach_the_builtin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_builtin_baseline_scores_simple_features_well, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
