/* test_tok_llama2c.c: the llama2.c tokenizer encodes as llama2.c does, decodes
 * back to the text, and refuses damaged files with the file and token named.
 *
 * The oracle is tests/ref/llama2c_encode.py, a literal (quadratic) port of
 * llama2.c's encode() run with /usr/bin/python3; the C side uses a heap, so they
 * share no code. Synthetic vocabularies test the merge rule and the file checks
 * without ../shared.
 */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "tok/tokenizer.h"
#include "util/error.h"

#define TOK512 "models/stories260K/tok512.bin"

struct ids {
    int32_t *v;
    size_t n, cap;
};

static struct ids encode(const struct tokenizer *tok, const char *text, size_t len) {
    struct ids r = {0};
    assert_int_equal(tokenizer_encode(tok, text, len, &r.v, &r.n, &r.cap), 0);
    return r;
}

static struct tokenizer *load_tok512(void) {
    struct tokenizer *tok = tokenizer_load(shared_path(TOK512));
    if (!tok) fail_msg("%s", err_msg());
    return tok;
}

/* ---- synthetic tokenizer files ---- */

struct blob {
    unsigned char *p;
    size_t n, cap;
};

static void blob_put(struct blob *b, const void *data, size_t n) {
    if (b->n + n > b->cap) b->p = realloc(b->p, b->cap = 2 * (b->n + n) + 64);
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void blob_i32(struct blob *b, int32_t v) {
    blob_put(b, &v, 4);
}
static void blob_f32(struct blob *b, float v) {
    blob_put(b, &v, 4);
}

static void blob_token(struct blob *b, float score, const char *s) {
    blob_f32(b, score);
    blob_i32(b, (int32_t)strlen(s));
    blob_put(b, s, strlen(s));
}

/* <unk>, <s>, </s>, 256 byte tokens, then the extra (string, score) pairs. */
static struct blob synthetic(const char *const *extra, const float *scores, int n_extra) {
    struct blob b = {0};
    blob_i32(&b, 7);
    blob_token(&b, 0, "<unk>");
    blob_token(&b, 0, "\n<s>\n");
    blob_token(&b, 0, "\n</s>\n");
    for (int i = 0; i < 256; i++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", i);
        blob_token(&b, 0, s);
    }
    for (int i = 0; i < n_extra; i++)
        blob_token(&b, scores[i], extra[i]);
    return b;
}

static struct tokenizer *load_blob(const char *dir, const char *name, const struct blob *b) {
    char *path = path_join(dir, name);
    write_file(path, b->p, b->n);
    struct tokenizer *tok = tokenizer_load(path);
    free(path);
    return tok;
}

static void expect_ids(const struct tokenizer *tok, const char *text, const int32_t *want,
                       size_t n_want) {
    struct ids r = encode(tok, text, strlen(text));
    if (r.n != n_want || (n_want && memcmp(r.v, want, n_want * sizeof *want) != 0)) {
        printf("encode(\"%s\"):", text);
        for (size_t i = 0; i < r.n; i++)
            printf(" %d", r.v[i]);
        printf("\n");
        fail_msg("unexpected ids for \"%s\"", text);
    }
    free(r.v);
}

/* ---- tests ---- */

static void test_once_upon_a_time(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(TOK512);
    struct tokenizer *tok = load_tok512();
    assert_int_equal(tokenizer_kind(tok), TOKENIZER_LLAMA2C);
    assert_string_equal(tokenizer_name(tok), "llama2c");
    assert_int_equal(tokenizer_vocab_size(tok), 512);
    assert_int_equal(tokenizer_bos_id(tok), 1);
    assert_int_equal(tokenizer_eot_id(tok), 2);
    int32_t want[] = {403, 407, 261, 378};
    expect_ids(tok, "Once upon a time", want, 4);
    expect_ids(tok, "", NULL, 0);
    tokenizer_free(tok);
}

static void test_decode_after_bos_inverts_encode(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(TOK512);
    struct tokenizer *tok = load_tok512();
    static const char *const texts[] = {"Once upon a time",
                                        "Lily saw a big, red ball.\nShe said: \"Hi!\"",
                                        " leading and trailing spaces  ",
                                        "h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC \xE2\x98\x83",
                                        "bad \xFF\xFE\x80 bytes \xED\xA0\x80",
                                        "\t\ttabs\n\nnew\r\nlines\n",
                                        "x",
                                        "NUL\0inside"};
    size_t lens[] = {0, 0, 0, 0, 0, 0, 0, 10};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        size_t len = lens[i] ? lens[i] : strlen(texts[i]);
        struct ids r = encode(tok, texts[i], len);
        int32_t *with_bos = malloc((r.n + 1) * sizeof *with_bos);
        with_bos[0] = 1;
        memcpy(with_bos + 1, r.v, r.n * sizeof *r.v);
        size_t back_len;
        char *back = tokenizer_decode_len(tok, with_bos, r.n + 1, &back_len);
        assert_non_null(back);
        if (back_len != len || memcmp(back, texts[i], len) != 0)
            fail_msg("text %zu: decode([BOS] + encode(x)) != x", i);
        free(back);
        /* without BOS the dummy-prefix space stays */
        back = tokenizer_decode_len(tok, r.v, r.n, &back_len);
        assert_int_equal(back_len, len + 1);
        assert_int_equal(back[0], ' ');
        free(back);
        free(with_bos);
        free(r.v);
    }
    tokenizer_free(tok);
}

static void test_decode_rules(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(TOK512);
    struct tokenizer *tok = load_tok512();
    int32_t a[] = {1, 403, 407, 2, 1, 403};
    char *s = tokenizer_decode(tok, a, 6);
    assert_string_equal(s, "Once uponOnce"); /* BOS/EOS print nothing, strip after BOS */
    free(s);
    int32_t b[] = {1, 3 + ' ', 3 + 'A'}; /* a byte-token space after BOS is kept */
    s = tokenizer_decode(tok, b, 3);
    assert_string_equal(s, " A");
    free(s);
    size_t len;
    const char *p = tokenizer_token_bytes(tok, 3 + 0xE2, &len);
    assert_int_equal(len, 1);
    assert_int_equal((unsigned char)p[0], 0xE2);
    p = tokenizer_token_bytes(tok, 1, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "\n<s>\n", 5);
    p = tokenizer_token_bytes(tok, 403, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(p, " Once", 5);
    assert_null(tokenizer_token_bytes(tok, 512, &len));
    assert_null(tokenizer_token_bytes(tok, -1, &len));
    int32_t bad[] = {403, 512};
    assert_null(tokenizer_decode(tok, bad, 2));
    assert_non_null(strstr(err_msg(), "512"));
    tokenizer_free(tok);
}

/* Highest score first, leftmost on ties, and strings (not bytes) decide merges. */
static void test_merge_order_synthetic(void **state) {
    (void)state;
    char *dir = test_tmpdir("llama-merge");
    static const char *const extra[] = {" ", "a", "b", "ab", "ba", "aba", " a", "c", "bc"};
    float scores[] = {-1, -1, -1, -5, -5, -9, -20, -1, -5};
    struct blob bl = synthetic(extra, scores, 9);
    struct tokenizer *tok = load_blob(dir, "t.bin", &bl);
    if (!tok) fail_msg("%s", err_msg());
    /* ids: " "=259 a=260 b=261 ab=262 ba=263 aba=264 " a"=265 c=266 bc=267 */
    int32_t want0[] = {259, 262, 266}; /* ab and bc tie at -5: the leftmost merges */
    expect_ids(tok, "abc", want0, 3);
    /* " aba": pairs " a"(-20), ab(-5), ba(-5) -> ab first -> [" ", ab, a];
     * then (ab,a) = "aba" (-9), (" ",ab) = " ab" absent -> [" ", aba]. */
    int32_t want1[] = {259, 264};
    expect_ids(tok, "aba", want1, 2);
    /* an unknown character falls back to bytes, which merge only as "<0x64>" text */
    int32_t want2[] = {259, 3 + 'd', 262};
    expect_ids(tok, "dab", want2, 3);
    tokenizer_free(tok);
    free(bl.p);

    /* raise ba above ab: now ba merges first and "aba" forms from (a, ba) */
    float scores2[] = {-1, -1, -1, -5, -4, -9, -20, -1, -5};
    bl = synthetic(extra, scores2, 9);
    tok = load_blob(dir, "t2.bin", &bl);
    expect_ids(tok, "aba", want1, 2);
    int32_t want3[] = {259, 263, 263}; /* "baba": ba, ba (ab between them loses) */
    expect_ids(tok, "baba", want3, 3);
    tokenizer_free(tok);
    free(bl.p);

    /* without " " in the vocabulary the prefix is the byte token of ' ' */
    static const char *const extra3[] = {"a"};
    float scores3[] = {-1};
    bl = synthetic(extra3, scores3, 1);
    tok = load_blob(dir, "t3.bin", &bl);
    int32_t want4[] = {3 + ' ', 259};
    expect_ids(tok, "a", want4, 2);
    tokenizer_free(tok);
    free(bl.p);
    test_rmtree(dir);
    free(dir);
}

static void expect_load_error(const char *dir, const char *name, const struct blob *b,
                              const char *what) {
    char *path = path_join(dir, name);
    write_file(path, b->p, b->n);
    struct tokenizer *tok = tokenizer_load(path);
    if (tok) fail_msg("%s should not load (%s)", name, what);
    if (!strstr(err_msg(), path) || !strstr(err_msg(), what))
        fail_msg("error should name %s and say \"%s\"; got: %s", path, what, err_msg());
    free(path);
}

static void test_corrupt_files_are_refused(void **state) {
    (void)state;
    char *dir = test_tmpdir("llama-corrupt");
    static const char *const extra[] = {"a", "b", "ab"};
    float scores[] = {-1, -2, -3};
    struct blob good = synthetic(extra, scores, 3);
    struct tokenizer *tok = load_blob(dir, "good.bin", &good);
    if (!tok) fail_msg("%s", err_msg());
    assert_int_equal(tokenizer_vocab_size(tok), 262);
    tokenizer_free(tok);

    struct blob b = {malloc(16), 0, 16};
    expect_load_error(dir, "empty.bin", &b, "truncated");
    blob_put(&b, good.p, 2);
    expect_load_error(dir, "two-bytes.bin", &b, "truncated");
    int32_t bad_max[] = {0, -5, 1 << 30};
    for (int i = 0; i < 3; i++) {
        b.n = 0;
        blob_put(&b, good.p, good.n);
        memcpy(b.p, &bad_max[i], 4);
        expect_load_error(dir, "max.bin", &b, "max_token_length");
    }
    /* cut inside token 261's header, then inside its text */
    size_t end = good.n; /* token 261 is "ab": 8 header bytes + 2 */
    b.n = 0;
    blob_put(&b, good.p, end - 10 + 5);
    expect_load_error(dir, "cut-header.bin", &b, "token 261: truncated");
    b.n = 0;
    blob_put(&b, good.p, end - 1);
    expect_load_error(dir, "cut-text.bin", &b, "token 261 (byte");
    expect_load_error(dir, "cut-text.bin", &b, "truncated: needs 2 bytes of text, 1 left");
    /* token 259 ("a") is at end - 10 - 9 - 9; its length field at +4 */
    size_t t259 = end - 10 - 9 - 9;
    int32_t lens[] = {-1, 0x7FFFFFFF, 8};
    const char *whats[] = {"token 259 (byte", "exceeds max_token_length 7",
                           "exceeds max_token_length 7"};
    for (int i = 0; i < 3; i++) {
        b.n = 0;
        blob_put(&b, good.p, good.n);
        memcpy(b.p + t259 + 4, &lens[i], 4);
        expect_load_error(dir, "len.bin", &b, whats[i]);
    }
    b.n = 0;
    blob_put(&b, good.p, good.n);
    memcpy(b.p + t259 + 4, &lens[0], 4);
    expect_load_error(dir, "neg.bin", &b, "negative length -1");
    float nan = NAN;
    b.n = 0;
    blob_put(&b, good.p, good.n);
    memcpy(b.p + t259, &nan, 4);
    expect_load_error(dir, "nan.bin", &b, "token 259 (byte");
    expect_load_error(dir, "nan.bin", &b, "not a finite number");
    /* too few tokens: cut after token 100 (tokens 0..2 are 5+6+7 bytes of text) */
    b.n = 0;
    blob_put(&b, good.p, 4 + (8 + 5) + (8 + 5) + (8 + 6) + 98 * (8 + 6));
    expect_load_error(dir, "short.bin", &b, "101 tokens");
    /* a byte token out of place */
    b.n = 0;
    blob_put(&b, good.p, good.n);
    size_t t65 = 4 + (8 + 5) + (8 + 5) + (8 + 6) + 62 * (8 + 6);
    memcpy(b.p + t65 + 8, "<0x00>", 6);
    expect_load_error(dir, "bytes.bin", &b, "token 65: expected the byte token <0x3E>");
    assert_null(tokenizer_load("/nonexistent/tok.bin"));
    assert_non_null(strstr(err_msg(), "/nonexistent/tok.bin"));
    free(b.p);
    free(good.p);
    test_rmtree(dir);
    free(dir);
}

static void test_truncated_tok512_is_refused(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(TOK512);
    size_t n;
    char *data = read_file_all(shared_path(TOK512), 0, &n);
    assert_non_null(data);
    char *dir = test_tmpdir("llama-trunc");
    struct blob b = {0};
    blob_put(&b, data, 3001);
    expect_load_error(dir, "tok512-cut.bin", &b, "truncated");
    free(b.p);
    free(data);
    test_rmtree(dir);
    free(dir);
}

/* Same ids as the Python port of llama2.c on random and real text. */
static void test_matches_python_port_of_llama2c(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(TOK512);
    if (!file_exists("/usr/bin/python3")) skip_because("/usr/bin/python3 is absent");
    static const char *const alphabet[] = {"a",
                                           "e",
                                           "t",
                                           "h",
                                           "o",
                                           "n",
                                           " ",
                                           " ",
                                           "  ",
                                           "\n",
                                           "the",
                                           "Once",
                                           ".",
                                           ",",
                                           "'",
                                           "\xC3\xA9",
                                           "\xE6\x97\xA5",
                                           "\xF0\x9F\x98\x80",
                                           "\x80",
                                           "\xFF",
                                           "\xE2\x82",
                                           "Z",
                                           "1"};
    const int n_alpha = (int)(sizeof alphabet / sizeof *alphabet);
    char *dir = test_tmpdir("llama-ref");
    enum { N = 150 };
    char *files[N + 1];
    unsigned long long seed = 42;
    for (int f = 0; f < N; f++) {
        char buf[2048];
        size_t k = 0;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int len = (int)((seed >> 33) % 60);
        for (int i = 0; i < len; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            const char *piece = alphabet[(seed >> 33) % (unsigned)n_alpha];
            memcpy(buf + k, piece, strlen(piece));
            k += strlen(piece);
        }
        char name[32];
        snprintf(name, sizeof name, "r%03d.txt", f);
        files[f] = path_join(dir, name);
        write_file(files[f], buf, k);
    }
    files[N] = path_join(dir, "story.txt");
    if (shared_path("data/tinystories-valid-head.txt")) {
        size_t len;
        char *text = read_file_all(shared_path("data/tinystories-valid-head.txt"), 0, &len);
        write_file(files[N], text, len < 3000 ? len : 3000);
        free(text);
    } else {
        write_file(files[N], "Once upon a time, there was a little girl.", 42);
    }
    size_t cap = 4096;
    for (int f = 0; f <= N; f++)
        cap += strlen(files[f]) + 3;
    char *cmd = malloc(cap);
    char *out_path = path_join(dir, "ref.txt");
    size_t k = (size_t)sprintf(cmd, "/usr/bin/python3 tests/ref/llama2c_encode.py '%s'",
                               shared_path(TOK512));
    for (int f = 0; f <= N; f++)
        k += (size_t)sprintf(cmd + k, " '%s'", files[f]);
    sprintf(cmd + k, " > '%s'", out_path);
    char *log = NULL;
    if (run_capture(cmd, &log) != 0) fail_msg("reference failed: %s", log);
    free(log);
    size_t n_out;
    char *out = read_file_all(out_path, 0, &n_out);
    struct tokenizer *tok = load_tok512();
    char *cursor = out;
    for (int f = 0; f <= N; f++) {
        char *nl = strchr(cursor, '\n');
        assert_non_null(nl);
        *nl = 0;
        size_t len;
        char *text = read_file_all(files[f], 0, &len);
        struct ids r = encode(tok, text, len);
        char *p = cursor;
        for (size_t i = 0; i < r.n; i++) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v != r.v[i])
                fail_msg("%s: id %zu is %d, reference says \"%.20s\"", files[f], i, r.v[i], p);
            p = end;
        }
        while (*p == ' ')
            p++;
        if (*p) fail_msg("%s: reference has more ids than C (%zu)", files[f], r.n);
        free(r.v);
        free(text);
        cursor = nl + 1;
    }
    tokenizer_free(tok);
    free(out);
    free(out_path);
    free(cmd);
    for (int f = 0; f <= N; f++)
        free(files[f]);
    test_rmtree(dir);
    free(dir);
}

struct encode_job {
    const struct tokenizer *tok;
    const char *text;
    size_t len;
    struct ids out;
    int rc;
};

static void *encode_job_run(void *arg) {
    struct encode_job *j = arg;
    j->rc = tokenizer_encode(j->tok, j->text, j->len, &j->out.v, &j->out.n, &j->out.cap);
    return NULL;
}

/* Cached parts outlive a call: warm-cache and concurrent calls agree with a cold one. */
static void test_repeated_and_concurrent_calls_agree(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(TOK512);
    static const char text[] = "Once upon a time, there was a little girl named Lily. "
                               "She loved to play outside in the park. \xE2\x98\x83 \xFF!";
    size_t len = sizeof text - 1;
    struct tokenizer *tok = load_tok512();
    struct ids cold = encode(tok, text, len), warm = encode(tok, text, len);
    assert_int_equal(cold.n, warm.n);
    assert_memory_equal(cold.v, warm.v, cold.n * sizeof *cold.v);
    enum { T = 4 };
    struct encode_job jobs[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        jobs[i] = (struct encode_job){tok, text, len, {0}, -1};
        assert_int_equal(pthread_create(&th[i], NULL, encode_job_run, &jobs[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < T; i++) {
        assert_int_equal(jobs[i].rc, 0);
        assert_int_equal(jobs[i].out.n, cold.n);
        assert_memory_equal(jobs[i].out.v, cold.v, cold.n * sizeof *cold.v);
        free(jobs[i].out.v);
    }
    free(cold.v);
    free(warm.v);
    tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_once_upon_a_time),
        cmocka_unit_test(test_decode_after_bos_inverts_encode),
        cmocka_unit_test(test_decode_rules),
        cmocka_unit_test(test_merge_order_synthetic),
        cmocka_unit_test(test_corrupt_files_are_refused),
        cmocka_unit_test(test_truncated_tok512_is_refused),
        cmocka_unit_test(test_matches_python_port_of_llama2c),
        cmocka_unit_test(test_repeated_and_concurrent_calls_agree),
    };
    return cmocka_run_group_tests_name("tok_llama2c", tests, NULL, NULL);
}
