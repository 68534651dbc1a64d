/* test_tok_gpt2.c: the GPT-2 tokenizer gives gpt-3-encoder's ids, round-trips
 * valid UTF-8, reads both file layouts alike and names the file when one is bad.
 *
 * The oracle is tests/ref/gpt2_encode.js (Node + gpt-3-encoder@1.1.4 from
 * scripts/setup.sh); comparisons skip when node or the package is missing, and
 * the ../shared tests skip when ../shared is absent. The tiny synthetic
 * vocabulary tests need neither.
 */
#include "testutil.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "tok/tokenizer.h"
#include "util/error.h"

#define GPT2_DIR "tokenizers/gpt2"
#define ORACLE "tests/ref/gpt2_encode.js"
#define AWKWARD_DIR "tests/fixtures/tok/awkward"

/* ---- helpers ---- */

static int have_oracle(void) {
    if (run_capture("command -v node", NULL) != 0) return 0;
    const char *dir = getenv("GPT3_ENCODER_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/package.json",
             dir ? dir : ".deps/npm/node_modules/gpt-3-encoder");
    return file_exists(path);
}

#define SKIP_UNLESS_ORACLE()                                                                       \
    do {                                                                                           \
        if (!have_oracle())                                                                        \
            skip_because("node or .deps/npm/node_modules/gpt-3-encoder is absent "                 \
                         "(scripts/setup.sh installs it)");                                        \
    } while (0)

static struct tokenizer *load_gpt2(void) {
    const char *dir = shared_path(GPT2_DIR);
    struct tokenizer *tok = tokenizer_load(dir);
    if (!tok) fail_msg("loading %s: %s", dir, err_msg());
    return tok;
}

struct ids {
    int32_t *v;
    size_t n, cap;
};

static struct ids encode_bytes(const struct tokenizer *tok, const char *text, size_t len) {
    struct ids r = {0};
    assert_int_equal(tokenizer_encode(tok, text, len, &r.v, &r.n, &r.cap), 0);
    return r;
}

static struct ids encode_file(const struct tokenizer *tok, const char *path) {
    size_t len;
    char *text = read_file_all(path, 0, &len);
    if (!text) fail_msg("%s", err_msg());
    struct ids r = encode_bytes(tok, text, len);
    free(text);
    return r;
}

/* Runs the oracle on files; returns its stdout (one line per file). */
static char *run_oracle(const char *flags, char *const *files, int n_files) {
    char *dir = test_tmpdir("gpt2-oracle");
    char *out_path = path_join(dir, "out.txt");
    size_t cap = 256 + strlen(out_path);
    for (int i = 0; i < n_files; i++)
        cap += strlen(files[i]) + 3;
    char *cmd = malloc(cap);
    size_t k = (size_t)sprintf(cmd, "node %s %s", ORACLE, flags);
    for (int i = 0; i < n_files; i++)
        k += (size_t)sprintf(cmd + k, " '%s'", files[i]);
    sprintf(cmd + k, " > '%s'", out_path);
    char *log = NULL;
    int rc = run_capture(cmd, &log);
    if (rc != 0) fail_msg("oracle failed (%d): %s\n%s", rc, cmd, log ? log : "");
    free(log);
    size_t n;
    char *out = read_file_all(out_path, 0, &n);
    assert_non_null(out);
    test_rmtree(dir);
    free(out_path);
    free(dir);
    free(cmd);
    return out;
}

/* Next line of *cursor as ids (empty line = no ids). */
static struct ids next_line_ids(char **cursor) {
    struct ids r = {0};
    char *p = *cursor;
    char *nl = strchr(p, '\n');
    if (!nl) fail_msg("oracle output has fewer lines than files");
    *nl = 0;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) fail_msg("oracle output is not ids: \"%.40s\"", p);
        if (r.n == r.cap) r.v = realloc(r.v, (r.cap = r.cap ? 2 * r.cap : 256) * sizeof *r.v);
        r.v[r.n++] = (int32_t)v;
        p = end;
        while (*p == ' ')
            p++;
    }
    *cursor = nl + 1;
    return r;
}

static void print_ids_around(const char *who, const struct ids *x, size_t at) {
    printf("  %s:", who);
    for (size_t i = at > 5 ? at - 5 : 0; i < x->n && i < at + 6; i++)
        printf(i == at ? " [%d]" : " %d", x->v[i]);
    printf("\n");
}

/* Fails with the first differing position and the text around it. */
static void assert_same_ids(const char *what, const struct tokenizer *tok, const struct ids *c,
                            const struct ids *js) {
    size_t i = 0;
    while (i < c->n && i < js->n && c->v[i] == js->v[i])
        i++;
    if (i == c->n && i == js->n) return;
    printf("%s: C gives %zu ids, gpt-3-encoder %zu; first difference at id %zu\n", what, c->n,
           js->n, i);
    print_ids_around("C ", c, i);
    print_ids_around("JS", js, i);
    char *ctx = tokenizer_decode(tok, c->v + (i > 5 ? i - 5 : 0), (i > 5 ? 5 : i));
    if (ctx) printf("  text before: \"%s\"\n", ctx);
    free(ctx);
    fail_msg("%s: ids differ from gpt-3-encoder at position %zu", what, i);
}

/* Sorted list of regular files in dir ending in suffix. */
static int list_files(const char *dir, const char *suffix, char ***out) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (e->d_name[0] == '.' || l < sl || strcmp(e->d_name + l - sl, suffix) != 0) continue;
        v = realloc(v, (size_t)(n + 1) * sizeof *v);
        v[n++] = path_join(dir, e->d_name);
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
            char *t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    *out = v;
    return n;
}

static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Compares C and the oracle on every file (one oracle run). */
static void compare_with_oracle(const struct tokenizer *tok, char **files, int n) {
    char *out = run_oracle("", files, n);
    char *cursor = out;
    for (int i = 0; i < n; i++) {
        struct ids js = next_line_ids(&cursor);
        struct ids c = encode_file(tok, files[i]);
        assert_same_ids(files[i], tok, &c, &js);
        free(c.v);
        free(js.v);
    }
    free(out);
}

/* Independent strict UTF-8 check (not the library's). */
static int is_valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], need, cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        for (unsigned k = 1; k <= need; k++) {
            if (i + k >= n || (s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += need + 1;
    }
    return 1;
}

static void assert_roundtrip(const struct tokenizer *tok, const char *what, const char *text,
                             size_t len) {
    struct ids ids = encode_bytes(tok, text, len);
    size_t back_len;
    char *back = tokenizer_decode_len(tok, ids.v, ids.n, &back_len);
    assert_non_null(back);
    if (back_len != len || memcmp(back, text, len) != 0)
        fail_msg("%s: decode(encode(x)) != x (%zu bytes back for %zu)", what, back_len, len);
    free(back);
    free(ids.v);
}

/* ---- a tiny synthetic vocabulary (no ../shared needed) ---- */

/* The code point GPT-2's byte-level alphabet uses for byte b. */
static unsigned byte_cp(int b) {
    int n = 0;
    for (int x = 0; x < 256; x++) {
        int printable = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE);
        if (x == b) return printable ? (unsigned)x : 0x100u + (unsigned)n;
        if (!printable) n++;
    }
    return 0;
}

static size_t put_json_char(char *o, unsigned cp) {
    if (cp == '"' || cp == '\\') {
        o[0] = '\\';
        o[1] = (char)cp;
        return 2;
    }
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* encoder.json with the 256 byte tokens (ids 0..255), then extra tokens given in
 * ASCII (ids 256..), then "<|endoftext|>"; skip_byte >= 0 leaves that byte out. */
static char *tiny_encoder_json(const char *const *extra, int n_extra, int skip_byte) {
    char *o = malloc(65536);
    size_t k = 0;
    int id = 0;
    o[k++] = '{';
    for (int b = 0; b < 256; b++) {
        if (b == skip_byte) continue;
        o[k++] = '"';
        k += put_json_char(o + k, byte_cp(b));
        k += (size_t)sprintf(o + k, "\": %d, ", id++);
    }
    for (int i = 0; i < n_extra; i++)
        k += (size_t)sprintf(o + k, "\"%s\": %d, ", extra[i], id++);
    sprintf(o + k, "\"<|endoftext|>\": %d}", id);
    return o;
}

static const char *const TINY_EXTRA[] = {"he", "ll", "hell", "hello", "lo"};
static const char TINY_MERGES[] = "#version: 0.2\nh e\nl l\nhe ll\nhell o\nl o\n";

static char *write_tiny(const char *json, const char *merges) {
    char *dir = test_tmpdir("gpt2-tiny");
    char *a = path_join(dir, "encoder.json"), *b = path_join(dir, "vocab.bpe");
    write_file(a, json, strlen(json));
    write_file(b, merges, strlen(merges));
    free(a);
    free(b);
    return dir;
}

/* ---- tests ---- */

static void test_tiny_vocab_merges_by_rank(void **state) {
    (void)state;
    char *json = tiny_encoder_json(TINY_EXTRA, 5, -1);
    char *dir = write_tiny(json, TINY_MERGES);
    struct tokenizer *tok = tokenizer_load(dir);
    if (!tok) fail_msg("%s", err_msg());
    assert_int_equal(tokenizer_kind(tok), TOKENIZER_GPT2);
    assert_string_equal(tokenizer_name(tok), "gpt2");
    assert_int_equal(tokenizer_vocab_size(tok), 262);
    assert_int_equal(tokenizer_eot_id(tok), 261);
    /* "hello": h e -> he, l l -> ll, he ll -> hell, hell o -> hello. "lo" (rank 4)
     * never forms because "ll" (rank 1) takes the l first. */
    struct ids r = encode_bytes(tok, "hello", 5);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0], 259);
    free(r.v);
    r = encode_bytes(tok, "lo<|endoftext|>hel", 18);
    int32_t want[] = {260, 261, 256, 'l'}; /* byte b has id b here */
    assert_int_equal(r.n, 4);
    assert_memory_equal(r.v, want, sizeof want);
    free(r.v);
    tokenizer_free(tok);
    test_rmtree(dir);
    free(dir);
    free(json);
}

static void assert_load_fails(const char *dir, const char *file, const char *what) {
    struct tokenizer *tok = tokenizer_load(dir);
    if (tok) fail_msg("loading %s should fail (%s)", dir, what);
    if (!strstr(err_msg(), file) || !strstr(err_msg(), what))
        fail_msg("error should name %s and say \"%s\"; got: %s", file, what, err_msg());
}

static void test_corrupt_files_name_the_file(void **state) {
    (void)state;
    char *good = tiny_encoder_json(TINY_EXTRA, 5, -1);
    struct {
        const char *json, *merges, *file, *what;
    } cases[] = {
        {NULL, "#version: 0.2\nh e\nl l x\n", "vocab.bpe:3", "two tokens"},
        {NULL, "h e\nl\n", "vocab.bpe:2", "two tokens"},
        {NULL, "h e\nq zz\n", "vocab.bpe:2", "\"zz\" is not in the vocabulary"},
        {NULL, "h e\nh ll\n", "vocab.bpe:2", "not in the vocabulary"},
        {NULL, "#version: 0.2\n\n", "vocab.bpe", "no merges"},
        {"[1, 2]", TINY_MERGES, "encoder.json", "JSON object"},
        {"{\"a\": 0, \"b\": 1", TINY_MERGES, "encoder.json", "not valid JSON"},
        {"{\"a\": 0, \"b\": -1}", TINY_MERGES, "encoder.json", "0..1"},
        {"{\"a\": 0, \"b\": 1.5}", TINY_MERGES, "encoder.json", "integer"},
        {"{\"a\": 0, \"b\": \"1\"}", TINY_MERGES, "encoder.json", "integer"},
        {"{\"a\": 0, \"b\": 0}", TINY_MERGES, "encoder.json", "appears twice"},
        {"{\"a\": 0, \"b\": 2, \"c\": 1000000}", TINY_MERGES, "encoder.json", "0..2"},
        {"{\"\\u4e00\": 0}", TINY_MERGES, "encoder.json", "byte-level alphabet"},
        {"{\"a\": 0, \"a\": 1}", TINY_MERGES, "encoder.json", "same token"},
        {"{\"a\": 0}", TINY_MERGES, "encoder.json", "no token for byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *dir = write_tiny(cases[i].json ? cases[i].json : good, cases[i].merges);
        assert_load_fails(dir, cases[i].file, cases[i].what);
        test_rmtree(dir);
        free(dir);
    }
    char *missing_byte = tiny_encoder_json(TINY_EXTRA, 5, 'q');
    char *dir = write_tiny(missing_byte, TINY_MERGES);
    assert_load_fails(dir, "encoder.json", "no token for byte 0x71");
    test_rmtree(dir);
    free(dir);
    free(missing_byte);

    dir = test_tmpdir("gpt2-empty");
    assert_load_fails(dir, dir, "no GPT-2 tokenizer here");
    test_rmtree(dir);
    free(dir);
    assert_null(tokenizer_load("/nonexistent/tokenizer-dir"));
    assert_non_null(strstr(err_msg(), "/nonexistent/tokenizer-dir"));
    free(good);
}

static void test_truncated_real_encoder_json_names_the_file(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(GPT2_DIR "/encoder.json");
    char *dir = test_tmpdir("gpt2-trunc");
    size_t n;
    char *json = read_file_all(shared_path(GPT2_DIR "/encoder.json"), 0, &n);
    char *bpe = read_file_all(shared_path(GPT2_DIR "/vocab.bpe"), 0, &n);
    char *a = path_join(dir, "encoder.json"), *b = path_join(dir, "vocab.bpe");
    write_file(a, json, 100000); /* cut mid-file */
    write_file(b, bpe, n);
    assert_load_fails(dir, "encoder.json", "not valid JSON");
    /* a truncated vocab.bpe is a shorter but valid merge list unless cut mid-line */
    write_file(a, json, strlen(json));
    write_file(b, bpe, 30001);
    struct tokenizer *tok = tokenizer_load(dir);
    if (tok) {
        tokenizer_free(tok);
    } else {
        assert_non_null(strstr(err_msg(), "vocab.bpe:"));
    }
    test_rmtree(dir);
    free(a);
    free(b);
    free(json);
    free(bpe);
    free(dir);
}

static void test_known_ids_and_special_token(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(GPT2_DIR);
    struct tokenizer *tok = load_gpt2();
    assert_int_equal(tokenizer_vocab_size(tok), 50257);
    assert_int_equal(tokenizer_eot_id(tok), 50256);
    assert_int_equal(tokenizer_bos_id(tok), 50256);
    struct ids r = encode_bytes(tok, "Hello world", 11);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.v[0], 15496);
    assert_int_equal(r.v[1], 995);
    free(r.v);
    r = encode_bytes(tok, "a<|endoftext|>b<|endoftext|>", 28);
    int32_t want[] = {64, 50256, 65, 50256};
    assert_int_equal(r.n, 4);
    assert_memory_equal(r.v, want, sizeof want);
    free(r.v);
    r = encode_bytes(tok, NULL, 0);
    assert_int_equal(r.n, 0);
    free(r.v);
    size_t len;
    const char *b = tokenizer_token_bytes(tok, 50256, &len);
    assert_int_equal(len, 13);
    assert_memory_equal(b, "<|endoftext|>", 13);
    b = tokenizer_token_bytes(tok, 220, &len); /* "Ġ" is the space byte */
    assert_int_equal(len, 1);
    assert_int_equal(b[0], ' ');
    assert_null(tokenizer_token_bytes(tok, 50257, &len));
    assert_null(tokenizer_token_bytes(tok, -1, &len));
    int32_t bad[] = {64, 50257};
    assert_null(tokenizer_decode(tok, bad, 2));
    assert_non_null(strstr(err_msg(), "50257"));
    tokenizer_free(tok);
}

static void test_invalid_utf8_becomes_one_replacement_per_maximal_subpart(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(GPT2_DIR);
    struct tokenizer *tok = load_gpt2();
    static const struct {
        const char *in, *same_as;
    } cases[] = {
        {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* lone surrogate: 3 */
        {"a\xE2\x82z", "a\xEF\xBF\xBDz"},                         /* truncated: 1 */
        {"\xF0\x80\x80\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* overlong */
        {"\xF0\x9F\x98", "\xEF\xBF\xBD"},             /* truncated at the end: 1 */
        {"x\x80\x80y", "x\xEF\xBF\xBD\xEF\xBF\xBDy"}, /* stray continuations */
        {"\xC0\xAF!", "\xEF\xBF\xBD\xEF\xBF\xBD!"},   /* C0 is never valid */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct ids a = encode_bytes(tok, cases[i].in, strlen(cases[i].in));
        struct ids b = encode_bytes(tok, cases[i].same_as, strlen(cases[i].same_as));
        if (a.n != b.n || memcmp(a.v, b.v, a.n * sizeof *a.v) != 0)
            fail_msg("case %zu: invalid bytes not replaced as WHATWG does", i);
        free(a.v);
        free(b.v);
    }
    tokenizer_free(tok);
}

static void test_matches_oracle_on_awkward_unicode(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(GPT2_DIR);
    SKIP_UNLESS_ORACLE();
    char **files;
    int n = list_files(AWKWARD_DIR, ".txt", &files);
    assert_true(n >= 30); /* the committed set is there */
    struct tokenizer *tok = load_gpt2();
    compare_with_oracle(tok, files, n);
    tokenizer_free(tok);
    free_list(files, n);
}

/* Random strings over an alphabet chosen to stress the pre-tokeniser's edges. */
static void test_matches_oracle_on_random_strings(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(GPT2_DIR);
    SKIP_UNLESS_ORACLE();
    static const char *const alphabet[] = {"a",
                                           "Z",
                                           "s",
                                           "t",
                                           "re",
                                           "ve",
                                           "ll",
                                           "m",
                                           "d",
                                           "'",
                                           "'",
                                           " ",
                                           " ",
                                           "  ",
                                           "\t",
                                           "\n",
                                           "\r\n",
                                           "0",
                                           "42",
                                           ".",
                                           ",",
                                           "!",
                                           "\"",
                                           "\xC3\xA9",
                                           "\xE6\x97\xA5",
                                           "\xD9\xA3",
                                           "\xC2\xBD",
                                           "\xC2\xA0",
                                           "\xE3\x80\x80",
                                           "\xEF\xBB\xBF",
                                           "\xF0\x9F\x98\x80",
                                           "\xCC\x81",
                                           "\xED\xA0\x80",
                                           "\xE2\x82",
                                           "\x80",
                                           "\xFF",
                                           "\x0b",
                                           "\xC2\x85",
                                           "\xE2\x80\xA8",
                                           "<|endoftext|>",
                                           "\xE2\x80\x8D",
                                           "\xF0\x9D\x9F\x99"};
    const int n_alpha = (int)(sizeof alphabet / sizeof *alphabet);
    char *dir = test_tmpdir("gpt2-random");
    enum { N = 300 };
    char *files[N];
    unsigned long long seed = 0x1234567ull;
    for (int f = 0; f < N; f++) {
        char buf[4096];
        size_t k = 0;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int len = (int)((seed >> 33) % 40);
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
    struct tokenizer *tok = load_gpt2();
    compare_with_oracle(tok, files, N);
    tokenizer_free(tok);
    for (int f = 0; f < N; f++)
        free(files[f]);
    test_rmtree(dir);
    free(dir);
}

/* The oracle over ../shared/data is the slowest step (gpt-3-encoder runs at about
 * 1 MB/s), so main() starts it in the background before the other tests and this
 * test, run last, collects it: the two cores overlap it with the rest. */
static struct {
    FILE *proc;
    char *dir, *out_path;
    char **files;
    int n_files;
} bg_oracle;

static void start_shared_data_oracle(void) {
    if (!shared_path(GPT2_DIR) || !shared_path("data") || !have_oracle()) return;
    char data_dir[4096];
    snprintf(data_dir, sizeof data_dir, "%s", shared_path("data"));
    bg_oracle.n_files = list_files(data_dir, ".txt", &bg_oracle.files);
    if (bg_oracle.n_files == 0) return;
    bg_oracle.dir = test_tmpdir("gpt2-bg");
    bg_oracle.out_path = path_join(bg_oracle.dir, "out.txt");
    size_t cap = 256 + 2 * strlen(bg_oracle.out_path);
    for (int i = 0; i < bg_oracle.n_files; i++)
        cap += strlen(bg_oracle.files[i]) + 3;
    char *cmd = malloc(cap);
    size_t k = (size_t)sprintf(cmd, "node %s", ORACLE);
    for (int i = 0; i < bg_oracle.n_files; i++)
        k += (size_t)sprintf(cmd + k, " '%s'", bg_oracle.files[i]);
    sprintf(cmd + k, " > '%s' 2>&1", bg_oracle.out_path);
    fflush(stdout);
    bg_oracle.proc = popen(cmd, "r");
    free(cmd);
}

static void finish_shared_data_oracle(void) {
    if (bg_oracle.proc) pclose(bg_oracle.proc);
    if (bg_oracle.dir) test_rmtree(bg_oracle.dir);
    free(bg_oracle.dir);
    free(bg_oracle.out_path);
    free_list(bg_oracle.files, bg_oracle.n_files);
    memset(&bg_oracle, 0, sizeof bg_oracle);
}

static void test_matches_oracle_on_shared_data(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(GPT2_DIR);
    SKIP_UNLESS_SHARED("data");
    SKIP_UNLESS_ORACLE();
    if (bg_oracle.n_files == 0) skip_because("no .txt files in ../shared/data");
    if (!bg_oracle.proc) fail_msg("could not start the oracle");
    int st = pclose(bg_oracle.proc);
    bg_oracle.proc = NULL;
    size_t n;
    char *out = read_file_all(bg_oracle.out_path, 0, &n);
    assert_non_null(out);
    if (st != 0) fail_msg("oracle failed (status %d): %.500s", st, out);
    struct tokenizer *tok = load_gpt2();
    char *cursor = out;
    for (int i = 0; i < bg_oracle.n_files; i++) {
        struct ids js = next_line_ids(&cursor);
        struct ids c = encode_file(tok, bg_oracle.files[i]);
        assert_same_ids(bg_oracle.files[i], tok, &c, &js);
        free(c.v);
        free(js.v);
    }
    tokenizer_free(tok);
    free(out);
}

/* The oracle is fed in chunks (its encode is quadratic); on the head of each data
 * file, chunked and uncut runs must agree, and C must agree with both. */
static void test_oracle_chunking_matches_uncut(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(GPT2_DIR);
    SKIP_UNLESS_SHARED("data");
    SKIP_UNLESS_ORACLE();
    char **files;
    char data_dir[4096];
    snprintf(data_dir, sizeof data_dir, "%s", shared_path("data"));
    int n = list_files(data_dir, ".txt", &files);
    if (n == 0) skip_because("no .txt files in ../shared/data");
    char *dir = test_tmpdir("gpt2-chunks");
    char **heads = calloc((size_t)n, sizeof *heads);
    for (int i = 0; i < n; i++) {
        size_t len;
        char *text = read_file_all(files[i], 0, &len);
        char name[32];
        snprintf(name, sizeof name, "head%d.txt", i);
        heads[i] = path_join(dir, name);
        write_file(heads[i], text, len < 40000 ? len : 40000);
        free(text);
    }
    char *chunked = run_oracle("", heads, n);
    char *uncut = run_oracle("--uncut", heads, n);
    assert_string_equal(chunked, uncut);
    struct tokenizer *tok = load_gpt2();
    char *cursor = uncut;
    for (int i = 0; i < n; i++) {
        struct ids js = next_line_ids(&cursor);
        struct ids c = encode_file(tok, heads[i]);
        assert_true(js.n > 1000);
        assert_same_ids(heads[i], tok, &c, &js);
        free(c.v);
        free(js.v);
    }
    tokenizer_free(tok);
    free(chunked);
    free(uncut);
    free_list(heads, n);
    free_list(files, n);
    test_rmtree(dir);
    free(dir);
}

static void test_decode_inverts_encode_on_valid_utf8(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(GPT2_DIR);
    struct tokenizer *tok = load_gpt2();
    char **files;
    int n = list_files(AWKWARD_DIR, ".txt", &files);
    assert_true(n >= 30);
    int n_valid = 0, n_invalid = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        char *text = read_file_all(files[i], 0, &len);
        if (is_valid_utf8((const unsigned char *)text, len)) {
            assert_roundtrip(tok, files[i], text, len);
            n_valid++;
        } else {
            /* invalid input comes back repaired: valid UTF-8 with U+FFFD in it */
            struct ids ids = encode_bytes(tok, text, len);
            char *back = tokenizer_decode(tok, ids.v, ids.n);
            assert_true(is_valid_utf8((const unsigned char *)back, strlen(back)));
            assert_non_null(strstr(back, "\xEF\xBF\xBD"));
            free(back);
            free(ids.v);
            n_invalid++;
        }
        free(text);
    }
    assert_true(n_valid >= 20);
    assert_true(n_invalid >= 5);
    if (shared_path("data")) {
        char data_dir[4096];
        snprintf(data_dir, sizeof data_dir, "%s", shared_path("data"));
        char **data;
        int nd = list_files(data_dir, ".txt", &data);
        for (int i = 0; i < nd; i++) {
            size_t len;
            char *text = read_file_all(data[i], 0, &len);
            assert_roundtrip(tok, data[i], text, len);
            free(text);
        }
        free_list(data, nd);
    }
    tokenizer_free(tok);
    free_list(files, n);
}

static void copy_file(const char *from, const char *to, int drop_first_line) {
    size_t n;
    char *text = read_file_all(from, 0, &n);
    assert_non_null(text);
    char *start = text;
    if (drop_first_line) start = strchr(text, '\n') + 1;
    write_file(to, start, n - (size_t)(start - text));
    free(text);
}

static void test_hf_layout_gives_same_ids(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(GPT2_DIR);
    struct tokenizer *openai = load_gpt2();
    char src_json[4096], src_bpe[4096];
    snprintf(src_json, sizeof src_json, "%s", shared_path(GPT2_DIR "/encoder.json"));
    snprintf(src_bpe, sizeof src_bpe, "%s", shared_path(GPT2_DIR "/vocab.bpe"));
    /* Hugging Face names; merges.txt with and without its "#version" line */
    for (int drop = 0; drop < 2; drop++) {
        char *dir = test_tmpdir("gpt2-hf");
        char *vj = path_join(dir, "vocab.json"), *mt = path_join(dir, "merges.txt");
        copy_file(src_json, vj, 0);
        copy_file(src_bpe, mt, drop);
        struct tokenizer *hf = tokenizer_load(dir);
        if (!hf) fail_msg("%s", err_msg());
        char **files;
        int n = list_files(AWKWARD_DIR, ".txt", &files);
        assert_true(n >= 30);
        for (int i = 0; i < n; i++) {
            struct ids a = encode_file(openai, files[i]), b = encode_file(hf, files[i]);
            assert_int_equal(a.n, b.n);
            assert_memory_equal(a.v, b.v, a.n * sizeof *a.v);
            free(a.v);
            free(b.v);
        }
        free_list(files, n);
        tokenizer_free(hf);
        test_rmtree(dir);
        free(vj);
        free(mt);
        free(dir);
    }
    tokenizer_free(openai);
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

/* The tokenizer keeps its word cache across calls: a warm cache, and threads
 * racing for it, must give the ids a cold cache gives. */
static void test_repeated_and_concurrent_calls_agree(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED(GPT2_DIR);
    char **files;
    int n = list_files(AWKWARD_DIR, ".txt", &files);
    assert_true(n >= 30);
    size_t len = 0, cap = 1 << 20;
    char *text = malloc(cap);
    for (int rep = 0; rep < 3; rep++)
        for (int i = 0; i < n; i++) {
            size_t m;
            char *t = read_file_all(files[i], 0, &m);
            if (len + m > cap) text = realloc(text, cap = 2 * (len + m));
            memcpy(text + len, t, m);
            len += m;
            free(t);
        }
    struct tokenizer *tok = load_gpt2();
    struct ids cold = encode_bytes(tok, text, len);
    struct ids warm = encode_bytes(tok, text, len);
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
    free(text);
    free_list(files, n);
}

/* The committed class table is what this Node's regex engine says. */
static void test_unicode_table_matches_node(void **state) {
    (void)state;
    if (run_capture("command -v node", NULL) != 0) skip_because("node is absent");
    char *out = NULL;
    int rc = run_capture("node tests/ref/gen_unicode_classes.js", &out);
    assert_int_equal(rc, 0);
    size_t n;
    char *committed = read_file_all("src/tok/unicode_classes_internal.h", 0, &n);
    assert_non_null(committed);
    if (strcmp(out, committed) != 0)
        fail_msg("src/tok/unicode_classes_internal.h differs from this Node's Unicode data; "
                 "regenerate: node tests/ref/gen_unicode_classes.js > "
                 "src/tok/unicode_classes_internal.h");
    free(out);
    free(committed);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_vocab_merges_by_rank),
        cmocka_unit_test(test_corrupt_files_name_the_file),
        cmocka_unit_test(test_truncated_real_encoder_json_names_the_file),
        cmocka_unit_test(test_known_ids_and_special_token),
        cmocka_unit_test(test_invalid_utf8_becomes_one_replacement_per_maximal_subpart),
        cmocka_unit_test(test_matches_oracle_on_awkward_unicode),
        cmocka_unit_test(test_matches_oracle_on_random_strings),
        cmocka_unit_test(test_oracle_chunking_matches_uncut),
        cmocka_unit_test(test_decode_inverts_encode_on_valid_utf8),
        cmocka_unit_test(test_hf_layout_gives_same_ids),
        cmocka_unit_test(test_repeated_and_concurrent_calls_agree),
        cmocka_unit_test(test_unicode_table_matches_node),
        cmocka_unit_test(test_matches_oracle_on_shared_data), /* last: see above */
    };
    start_shared_data_oracle();
    int failed = cmocka_run_group_tests_name("tok_gpt2", tests, NULL, NULL);
    finish_shared_data_oracle();
    return failed;
}
