/* test_lm_eval.c: `lm-eval` reports the CE that lm_batch_ce gives window by
 * window, dumps exactly the first batch's tokens, logits and hook activations,
 * and rejects bad hooks and missing options. Calls cmd_lm_eval directly (it is
 * in the library), so it does not depend on the command table in main.c. */
#include "testutil.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "io/atomic.h"
#include "io/h5.h"
#include "model/gpt2.h"
#include "model/lm.h"
#include "tok/dataset.h"
#include "util/error.h"

#define V 61
#define N_TOKENS 500

static char *make_model(const char *dir) {
    struct lm_config c = {.arch = LM_GPT2, .n_layer = 2, .d_model = 24, .n_head = 3,
                          .vocab_size = V, .max_seq = 32, .norm_eps = 1e-5f};
    struct lm lm = {0};
    assert_int_equal(gpt2_new(&c, &lm), 0);
    struct gpt2 *g = gpt2_of(&lm);
    uint64_t s = 3;
    for (size_t i = 0; i < g->n_params; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        g->memory[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 0.3f;
    }
    char *p = path_join(dir, "model");
    assert_int_equal(gpt2_save(&lm, p, -1), 0);
    gpt2_free_impl(&lm);
    return p;
}

static char *make_tokens(const char *dir, int32_t *ids) {
    for (int i = 0; i < N_TOKENS; i++) ids[i] = (i * 7 + i / 5) % V;
    int64_t off[2] = {0, N_TOKENS};
    struct token_dataset_meta m = {.tokenizer = "synthetic", .vocab_size = V, .eot_id = -1,
                                   .bos_id = -1, .sources = "test"};
    char *p = path_join(dir, "tokens.h5");
    assert_int_equal(token_dataset_write(p, ids, N_TOKENS, off, 1, &m), 0);
    return p;
}

/* Run cmd_lm_eval with stdout captured into *out. */
static int run_eval(char **out, int argc, const char **argv) {
    char tmpl[] = "/tmp/autointerp-lmeval-out-XXXXXX";
    int fd = mkstemp(tmpl);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    int rc = cmd_lm_eval(argc, (char **)argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(fd);
    size_t n;
    *out = read_file_all(tmpl, 0, &n);
    unlink(tmpl);
    return rc;
}

static void test_eval_reports_ce_and_dumps_first_batch(void **state) {
    (void)state;
    h5_init();
    char *dir = test_tmpdir("lmeval");
    int32_t ids[N_TOKENS];
    char *model = make_model(dir), *tokens = make_tokens(dir, ids);
    char *dump = path_join(dir, "dump.h5");
    const char *argv[] = {"lm-eval", "--model", model, "--tokens", tokens, "--context", "16",
                          "--batch", "3", "--max-tokens", "400", "--dump", dump, "--hooks",
                          "blocks.1.hook_resid_pre,blocks.1.hook_resid_post", "--quiet"};
    char *out = NULL;
    assert_int_equal(run_eval(&out, 16, argv), 0);
    printf("%s", out);

    /* expected: 25 windows of 16 (400 tokens), CE over 15 predictions each */
    struct lm *lm = NULL;
    assert_int_equal(lm_load(model, &lm), 0);
    struct lm_acts *acts = lm_acts_new(lm, 1, 16, false);
    double total = 0;
    int64_t n_total = 0;
    for (int w = 0; w < 25; w++) {
        double s;
        int64_t n;
        assert_int_equal(lm_batch_ce(lm, acts, ids + w * 16, &s, &n), 0);
        total += s;
        n_total += n;
    }
    assert_int_equal(n_total, 25 * 15);
    const char *line = strstr(out, "mean CE");
    assert_non_null(line);
    double printed = strtod(line + strlen("mean CE"), NULL);
    printf("  recomputed CE %.4f\n", total / n_total);
    assert_true(fabs(printed - total / n_total) < 1e-4);
    assert_non_null(strstr(out, "predicted    375"));
    lm_acts_free(acts);

    /* the dump holds batch 0: windows 0..2 */
    acts = lm_acts_new(lm, 3, 16, false);
    assert_int_equal(lm_embed(lm, acts, ids), 0);
    assert_int_equal(lm_blocks_forward(lm, acts, 0, 2), 0);
    assert_int_equal(lm_final_norm(lm, acts), 0);
    float *logits = malloc(48 * V * sizeof *logits);
    assert_int_equal(lm_unembed(lm, acts->lnf, 48, logits), 0);
    hid_t f = h5_open_ro(dump);
    assert_true(f >= 0);
    hsize_t dims[3];
    void *buf;
    assert_int_equal(h5_read(f, "tokens", H5T_NATIVE_INT32, 2, NULL, dims, &buf), 0);
    assert_memory_equal(buf, ids, 48 * sizeof(int32_t));
    free(buf);
    hsize_t want[3] = {3, 16, V};
    assert_int_equal(h5_read(f, "logits", H5T_NATIVE_FLOAT, 3, want, dims, &buf), 0);
    assert_memory_equal(buf, logits, 48 * V * sizeof(float));
    free(buf);
    assert_int_equal(h5_read(f, "hooks/blocks.1.hook_resid_pre", H5T_NATIVE_FLOAT, 3, NULL,
                             dims, &buf),
                     0);
    assert_memory_equal(buf, acts->resid[1], 48 * 24 * sizeof(float));
    free(buf);
    assert_int_equal(h5_read(f, "hooks/blocks.1.hook_resid_post", H5T_NATIVE_FLOAT, 3, NULL,
                             dims, &buf),
                     0);
    assert_memory_equal(buf, acts->resid[2], 48 * 24 * sizeof(float));
    free(buf);
    h5_close(f);
    free(logits);
    lm_acts_free(acts);
    lm_free(lm);
    free(out);

    /* errors: an unknown hook names itself (exit 1); missing options are usage errors (2) */
    const char *bad[] = {"lm-eval", "--model", model, "--tokens", tokens, "--dump", dump,
                         "--hooks", "blocks.7.hook_resid_pre", "--context", "16"};
    assert_int_equal(run_eval(&out, 11, bad), 1);
    free(out);
    assert_non_null(strstr(err_msg(), "blocks.7.hook_resid_pre"));
    const char *missing[] = {"lm-eval", "--tokens", tokens};
    assert_int_equal(run_eval(&out, 3, missing), 2);
    free(out);
    const char *too_long[] = {"lm-eval", "--model", model, "--tokens", tokens, "--context", "33"};
    assert_int_equal(run_eval(&out, 7, too_long), 1);
    free(out);
    assert_non_null(strstr(err_msg(), "--context 33"));

    free(dump);
    free(model);
    free(tokens);
    test_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_reports_ce_and_dumps_first_batch),
    };
    return cmocka_run_group_tests_name("lm-eval", tests, NULL, NULL);
}
