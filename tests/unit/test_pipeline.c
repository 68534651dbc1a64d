/* test_pipeline.c: `autointerp run` runs the stages in order, skips a stage whose
 * inputs and config are unchanged, reruns what a config change invalidates, and
 * finishes after being killed mid-run. Uses stories260K (../shared) so the model
 * is real and small. */
#include "testutil.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/atomic.h"

static char *write_config(const char *dir, const char *name, int n_features, int train_tokens) {
    char *path = path_join(dir, name);
    char text[4096];
    snprintf(text, sizeof text,
             "{\"experiment\": \"pipe\", \"results_dir\": \"%s/results\", \"seed\": 1,\n"
             " \"data\": {\"tokenizer\": \"%s\", \"train_text\": [\"%s\"], \"context\": 64},\n"
             " \"model\": {\"path\": \"%s\"},\n"
             " \"sae\": {\"layers\": [2], \"types\": [\"local\", \"e2e\"], \"ratio\": 4,\n"
             "   \"local\": {\"lambdas\": [2]}, \"e2e\": {\"lambdas\": [0.5]},\n"
             "   \"train_tokens\": %d, \"eval_tokens\": 2048, \"batch\": 4, \"checkpoint_every\": 4},\n"
             " \"extract\": {\"n_features\": %d, \"top_k\": 6, \"n_random\": 2, \"window\": 16, \"offset\": 8},\n"
             " \"interp\": {\"n_explain\": 3, \"n_score_top\": 3, \"n_score_random\": 2}}\n",
             dir, shared_path("models/stories260K/tok512.bin"), "../shared/data/tinystories-valid-head.txt",
             "../shared/models/stories260K/stories260K.bin", train_tokens, n_features);
    /* shared_path returns a static buffer: fix the two paths it does not cover */
    write_file(path, text, strlen(text));
    return path;
}

/* status of each stage in the manifest, as "tokenize=ran,train=skipped,..." */
static char *stage_statuses(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/results/pipe/manifest.json", dir);
    char *text = read_file_all(p, 0, NULL);
    assert_non_null(text);
    cJSON *m = cJSON_Parse(text);
    free(text);
    assert_non_null(m);
    assert_string_equal(cJSON_GetObjectItem(m, "status")->valuestring, "ok");
    char *out = calloc(1, 1024);
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(m, "stages")) {
        strcat(out, cJSON_GetObjectItem(s, "name")->valuestring);
        strcat(out, "=");
        strcat(out, cJSON_GetObjectItem(s, "status")->valuestring);
        strcat(out, ",");
    }
    cJSON_Delete(m);
    return out;
}

static int run_pipeline(const char *cfg, char **out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s run --threads 1 %s", autointerp_bin(), cfg);
    return run_capture(cmd, out);
}

static void test_run_skips_and_invalidates(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED("models/stories260K/stories260K.bin");
    SKIP_UNLESS_SHARED("data/tinystories-valid-head.txt");
    char *dir = test_tmpdir("pipe");
    char *cfg = write_config(dir, "c.json", 8, 2048);
    char *out = NULL;
    int rc = run_pipeline(cfg, &out);
    if (rc != 0) fail_msg("first run failed: %s", out);
    free(out);
    char *st = stage_statuses(dir);
    assert_string_equal(st, "tokenize=ran,train=ran,extract=ran,explain=ran,simulate=ran,score=ran,report=ran,");
    free(st);
    char p[4096];
    snprintf(p, sizeof p, "%s/results/pipe/examples/L2-e2e-lam0.5-s0.h5", dir);
    assert_true(file_exists(p));

    rc = run_pipeline(cfg, &out);
    assert_int_equal(rc, 0);
    free(out);
    st = stage_statuses(dir);
    assert_string_equal(st, "tokenize=skipped,train=skipped,extract=skipped,explain=skipped,simulate=skipped,score=skipped,report=skipped,");
    free(st);

    /* an extract setting changes only extraction */
    free(cfg);
    cfg = write_config(dir, "c.json", 6, 2048);
    rc = run_pipeline(cfg, &out);
    assert_int_equal(rc, 0);
    free(out);
    st = stage_statuses(dir);
    assert_string_equal(st, "tokenize=skipped,train=skipped,extract=ran,explain=ran,simulate=ran,score=ran,report=ran,");
    free(st);

    /* a deleted output makes its stage run again */
    snprintf(p, sizeof p, "%s/results/pipe/examples/L2-local-lam2-s0.h5", dir);
    assert_int_equal(remove(p), 0);
    rc = run_pipeline(cfg, &out);
    assert_int_equal(rc, 0);
    free(out);
    assert_true(file_exists(p));
    test_rmtree(dir);
    free(cfg);
    free(dir);
}

static void test_killed_run_resumes(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED("models/stories260K/stories260K.bin");
    SKIP_UNLESS_SHARED("data/tinystories-valid-head.txt");
    char *dir = test_tmpdir("pipekill");
    char *cfg = write_config(dir, "c.json", 8, 16384);
    /* kill the run while it trains, twice, then let it finish */
    for (int round = 0; round < 2; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int fd = open("/dev/null", 1);
            dup2(fd, 1);
            dup2(fd, 2);
            execl(autointerp_bin(), autointerp_bin(), "run", "--threads", "1", cfg, (char *)NULL);
            _exit(127);
        }
        usleep(round == 0 ? 1500000 : 2500000);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
    }
    char *out = NULL;
    int rc = run_pipeline(cfg, &out);
    if (rc != 0) fail_msg("resumed run failed: %s", out);
    free(out);
    /* stage_statuses asserts the run is "ok"; every stage ran in this run or was
     * finished (and stamped) by a killed one: where the kills landed decides which */
    char *st = stage_statuses(dir);
    assert_null(strstr(st, "failed"));
    assert_null(strstr(st, "not reached"));
    assert_non_null(strstr(st, "report="));
    free(st);
    /* no temporary files left where results live */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "find %s/results -name '*.tmp.*' | wc -l", dir);
    assert_int_equal(run_capture(cmd, &out), 0);
    assert_int_equal(atoi(out), 0);
    free(out);
    test_rmtree(dir);
    free(cfg);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_skips_and_invalidates),
        cmocka_unit_test(test_killed_run_resumes),
    };
    return cmocka_run_group_tests_name("pipeline", tests, NULL, NULL);
}
