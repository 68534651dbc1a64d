/* test_llama_greedy.c: stories260K decoded greedily from "Once upon a time"
 * reproduces the text llama2.c gives (recorded in ../shared/README.md) and the
 * ids of an independent PyTorch reference (tests/ref/llama_ref.py) for 110
 * generated tokens. The whole prefix is rerun every step (no KV cache): at this
 * model size that costs milliseconds. */
#include "testutil.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "model/llama.h"
#include "util/error.h"

#define STORIES "models/stories260K/stories260K.bin"
#define TOKENIZER "models/stories260K/tok512.bin"
#define N_GEN 110

/* BOS, then "Once upon a time" as llama2.c's encoder tokenizes it. */
static const int32_t prompt[] = {1, 403, 407, 261, 378};
#define N_PROMPT ((int)(sizeof prompt / sizeof prompt[0]))
static const char expected_text[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball.";

/* Greedy ids after the prompt, computed once for both tests. */
static int32_t generated[N_GEN];
static int have_generated;

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void generate(void) {
    if (have_generated) return;
    struct lm lm = {0};
    if (llama_load(shared_path(STORIES), &lm)) fail_msg("llama_load: %s", err_msg());
    int L = lm.cfg.n_layer, C = lm.cfg.d_model, V = lm.cfg.vocab_size;
    int32_t ids[N_PROMPT + N_GEN];
    memcpy(ids, prompt, sizeof prompt);
    float *logits = malloc(V * sizeof *logits);
    for (int n = N_PROMPT; n < N_PROMPT + N_GEN; n++) {
        struct lm_acts a = {.B = 1, .T = n, .save_for_backward = false};
        if (llama_acts_init(&lm, &a)) fail_msg("acts: %s", err_msg());
        assert_int_equal(llama_embed(&lm, &a, ids), 0);
        assert_int_equal(llama_blocks_forward(&lm, &a, 0, L), 0);
        assert_int_equal(llama_final_norm(&lm, &a), 0);
        assert_int_equal(llama_unembed(&lm, a.lnf + (size_t)(n - 1) * C, 1, logits), 0);
        ids[n] = argmax(logits, V);
        llama_acts_release(&a);
    }
    memcpy(generated, ids + N_PROMPT, sizeof generated);
    have_generated = 1;
    free(logits);
    llama_free_impl(&lm);
}

/* llama2.c tokenizer file: int32 max_token_length, then per token float score,
 * int32 len, bytes. Returns n_vocab malloc'd NUL-terminated pieces. */
static char **read_vocab(const char *path, int n_vocab) {
    size_t n = 0;
    unsigned char *buf = (unsigned char *)read_file_all(path, 0, &n);
    if (!buf) fail_msg("%s", err_msg());
    char **piece = calloc(n_vocab, sizeof *piece);
    size_t off = 4;
    for (int i = 0; i < n_vocab; i++) {
        int32_t len;
        assert_true(off + 8 <= n);
        memcpy(&len, buf + off + 4, 4);
        off += 8;
        assert_true(len >= 0 && off + (size_t)len <= n);
        piece[i] = calloc(len + 1, 1);
        memcpy(piece[i], buf + off, len);
        off += len;
    }
    free(buf);
    return piece;
}

/* Text of ids (after BOS): byte tokens <0xNN> become the byte; the space the
 * encoder prepended to the first piece is dropped, as llama2.c's decoder does. */
static char *decode(char **piece, const int32_t *ids, int n) {
    size_t cap = 1, len = 0;
    for (int i = 0; i < n; i++)
        cap += strlen(piece[ids[i]]);
    char *s = calloc(cap, 1);
    for (int i = 0; i < n; i++) {
        const char *p = piece[ids[i]];
        unsigned byte;
        if (ids[i] >= 3 && ids[i] <= 258 && sscanf(p, "<0x%02X>", &byte) == 1) {
            s[len++] = (char)byte;
            continue;
        }
        if (i == 0 && p[0] == ' ') p++;
        strcpy(s + len, p);
        len += strlen(p);
    }
    return s;
}

/* The README wraps its text over lines: compare with whitespace runs collapsed. */
static char *collapse_spaces(const char *s) {
    char *o = calloc(strlen(s) + 1, 1), *w = o;
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            *w++ = *s;
        else if (w > o && w[-1] != ' ')
            *w++ = ' ';
    return o;
}

static void test_greedy_text_matches_llama2c(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(STORIES);
    SKIP_UNLESS_SHARED(TOKENIZER);
    SKIP_UNLESS_SHARED("README.md");
    /* the sentence hard-coded here is the one the README records */
    size_t n;
    char *readme = read_file_all(shared_path("README.md"), 0, &n);
    assert_non_null(readme);
    char *flat = collapse_spaces(readme);
    assert_non_null(strstr(flat, expected_text));
    free(flat);
    free(readme);

    generate();
    char **piece = read_vocab(shared_path(TOKENIZER), 512);
    int32_t ids[N_PROMPT - 1 + N_GEN];
    memcpy(ids, prompt + 1, sizeof prompt - sizeof prompt[0]);
    memcpy(ids + N_PROMPT - 1, generated, sizeof generated);
    char *text = decode(piece, ids, N_PROMPT - 1 + N_GEN);
    print_message("  greedy: %.200s...\n", text);
    if (strncmp(text, expected_text, strlen(expected_text)) != 0)
        fail_msg("greedy text differs from llama2.c's:\n got: %.*s\nwant: %s",
                 (int)strlen(expected_text), text, expected_text);
    free(text);
    for (int i = 0; i < 512; i++)
        free(piece[i]);
    free(piece);
}

static void test_greedy_ids_match_torch(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(STORIES);
    if (!have_python_modules("torch numpy")) skip_because("/usr/bin/python3 lacks torch/numpy");
    char cmd[1024];
    int len = snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/llama_ref.py greedy %s %d",
                       shared_path(STORIES), N_GEN);
    for (int i = 0; i < N_PROMPT; i++)
        len += snprintf(cmd + len, sizeof cmd - len, " %d", prompt[i]);
    char *out = NULL;
    if (run_capture(cmd, &out) != 0) fail_msg("%s failed:\n%s", cmd, out ? out : "");
    generate();
    char *p = out;
    for (int i = 0; i < N_GEN; i++) {
        char *end;
        long want = strtol(p, &end, 10);
        if (end == p) fail_msg("reference gave %d ids, expected %d:\n%s", i, N_GEN, out);
        if (want != generated[i])
            fail_msg("generated id %d: got %d, reference %ld", i, generated[i], want);
        p = end;
    }
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_text_matches_llama2c),
        cmocka_unit_test(test_greedy_ids_match_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
