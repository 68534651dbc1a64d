/* test_lm_train.c: lm-train on a synthetic token stream learns it, a killed run
 * resumed from its checkpoint ends bit-identical to an uninterrupted one, and a
 * checkpoint made with other options is refused by name. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "io/atomic.h"
#include "io/h5.h"
#include "model/lm.h"
#include "model/lmtrain.h"
#include "tok/dataset.h"
#include "util/error.h"

#define VOCAB 50

/* A noisy deterministic chain: next = (3·prev + 7 + {0 or 1}) mod 50, so the
 * unigram entropy is about log 50 and the next-token entropy about log 2. */
static char *synthetic_dataset(const char *dir, int64_t n) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    uint64_t s = 7;
    ids[0] = 1;
    for (int64_t i = 1; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((3 * ids[i - 1] + 7 + (int)((s >> 62) & 1)) % VOCAB);
    }
    int64_t offsets[2] = {0, n};
    struct token_dataset_meta meta = {.tokenizer = "synthetic", .vocab_size = VOCAB,
                                      .eot_id = -1, .bos_id = -1, .sources = "test"};
    char *path = path_join(dir, "tokens.h5");
    if (token_dataset_write(path, ids, n, offsets, 1, &meta) < 0) fail_msg("%s", err_msg());
    free(ids);
    return path;
}

static struct lmtrain_config tiny(const char *tokens, const char *out) {
    struct lmtrain_config c;
    lmtrain_defaults(&c);
    c.tokens_path = tokens;
    c.out_dir = out;
    c.n_layer = 2;
    c.n_embd = 32;
    c.n_head = 2;
    c.context = 16;
    c.batch = 8;
    c.lr = 3e-3;
    c.warmup = 10;
    c.eval_tokens = 2048;
    c.checkpoint_every = 0;
    return c;
}

static void test_training_lowers_the_loss_and_writes_a_loadable_model(void **state) {
    (void)state;
    h5_init();
    char *dir = test_tmpdir("lmtrain");
    char *tokens = synthetic_dataset(dir, 20000);
    char *out = path_join(dir, "model");
    struct lmtrain_config c = tiny(tokens, out);
    c.steps = 150;
    c.eval_every = 50;
    struct lmtrain_result r;
    if (lmtrain_run(&c, &r) < 0) fail_msg("%s", err_msg());
    printf("  unigram %.3f, val loss %.3f -> %.3f over %d evaluations, %.0f tok/s\n",
           r.unigram_entropy, r.eval_losses[0], r.final_val_loss, r.n_evals, r.tokens_per_s);
    assert_int_equal(r.steps_done, 150);
    assert_int_equal(r.n_evals, 4); /* steps 0, 50, 100, 150 */
    assert_true(r.unigram_entropy > 3.8 && r.unigram_entropy < 3.95);
    assert_true(r.final_val_loss < r.unigram_entropy - 2.0);
    assert_true(r.final_val_loss < r.eval_losses[0] - 2.0);

    /* the model loads through lm.h and agrees about its loss */
    struct lm *lm = NULL;
    if (lm_load(out, &lm) < 0) fail_msg("%s", err_msg());
    assert_int_equal(lm->cfg.vocab_size, VOCAB);
    assert_int_equal(lm->cfg.max_seq, 16);
    struct token_dataset d;
    assert_int_equal(token_dataset_open(&d, tokens), 0);
    int32_t win[4 * 16];
    assert_int_equal(token_dataset_read(&d, 18000, 64, win), 0);
    token_dataset_close(&d);
    struct lm_acts *acts = lm_acts_new(lm, 4, 16, false);
    double ce;
    int64_t n;
    assert_int_equal(lm_batch_ce(lm, acts, win, &ce, &n), 0);
    printf("  lm_batch_ce on held-out windows: %.3f\n", ce / n);
    assert_true(ce / n < r.unigram_entropy - 2.0);
    lm_acts_free(acts);
    lm_free(lm);
    lmtrain_result_free(&r);
    test_rmtree(dir);
    free(out);
    free(tokens);
    free(dir);
}

static void test_killed_run_resumes_bit_identically(void **state) {
    (void)state;
    char *dir = test_tmpdir("lmtrain");
    char *tokens = synthetic_dataset(dir, 8000);
    char *out_a = path_join(dir, "a"), *out_b = path_join(dir, "b");
    struct lmtrain_config c = tiny(tokens, out_a);
    c.steps = 24;
    c.eval_every = 8;
    c.checkpoint_every = 8;
    struct lmtrain_result ra, rb;
    if (lmtrain_run(&c, &ra) < 0) fail_msg("%s", err_msg());

    c.out_dir = out_b;
    c.stop_after = 13; /* "killed" after step 13: the last checkpoint is step 8 */
    if (lmtrain_run(&c, &rb) < 0) fail_msg("%s", err_msg());
    assert_true(rb.stopped_early);
    lmtrain_result_free(&rb);
    c.stop_after = 0;
    if (lmtrain_run(&c, &rb) < 0) fail_msg("%s", err_msg());
    assert_int_equal(rb.resumed_from, 8);
    assert_int_equal(rb.steps_done, 24);

    char *pa = path_join(out_a, "model.safetensors"), *pb = path_join(out_b, "model.safetensors");
    size_t na, nb;
    char *a = read_file_all(pa, 0, &na), *b = read_file_all(pb, 0, &nb);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    assert_int_equal(ra.n_evals, rb.n_evals);
    assert_memory_equal(ra.eval_losses, rb.eval_losses, (size_t)ra.n_evals * sizeof(double));

    /* other options than the checkpoint's: refused, naming the option */
    c.n_embd = 64;
    struct lmtrain_result rc;
    assert_int_equal(lmtrain_run(&c, &rc), -1);
    printf("  %s\n", err_msg());
    assert_non_null(strstr(err_msg(), "checkpoint.h5"));
    assert_non_null(strstr(err_msg(), "n_embd"));

    free(a);
    free(b);
    free(pa);
    free(pb);
    lmtrain_result_free(&ra);
    lmtrain_result_free(&rb);
    test_rmtree(dir);
    free(out_a);
    free(out_b);
    free(tokens);
    free(dir);
}

/* Run cmd_lm_train with stdout captured into *out. */
static int run_cli(char **out, int argc, const char **argv) {
    char tmpl[] = "/tmp/autointerp-lmtrain-out-XXXXXX";
    int fd = mkstemp(tmpl);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    int rc = cmd_lm_train(argc, (char **)argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(fd);
    size_t n;
    *out = read_file_all(tmpl, 0, &n);
    unlink(tmpl);
    return rc;
}

static void test_cli_prints_entropy_and_curve(void **state) {
    (void)state;
    char *dir = test_tmpdir("lmtrain");
    char *tokens = synthetic_dataset(dir, 8000);
    char *out_dir = path_join(dir, "m");
    const char *argv[] = {"lm-train", "--tokens", tokens, "--out", out_dir, "--n-layer", "1",
                          "--n-embd", "16", "--n-head", "2", "--context", "8", "--batch", "4",
                          "--steps", "20", "--eval-every", "10", "--quiet"};
    char *out = NULL;
    assert_int_equal(run_cli(&out, 20, argv), 0);
    printf("%s", out);
    assert_non_null(strstr(out, "unigram entropy"));
    assert_non_null(strstr(out, "\n      10 "));
    assert_non_null(strstr(out, "\n      20 "));
    free(out);
    const char *both[] = {"lm-train", "--tokens", tokens, "--out", out_dir, "--steps", "5",
                          "--minutes", "1"};
    assert_int_equal(run_cli(&out, 9, both), 2);
    free(out);
    const char *heads[] = {"lm-train", "--tokens", tokens, "--out", out_dir, "--n-embd", "30",
                           "--n-head", "4"};
    assert_int_equal(run_cli(&out, 9, heads), 2);
    free(out);
    test_rmtree(dir);
    free(out_dir);
    free(tokens);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_training_lowers_the_loss_and_writes_a_loadable_model),
        cmocka_unit_test(test_killed_run_resumes_bit_identically),
        cmocka_unit_test(test_cli_prints_entropy_and_curve),
    };
    return cmocka_run_group_tests_name("lm-train", tests, NULL, NULL);
}
