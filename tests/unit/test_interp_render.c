/* test_interp_render.c: token display strings are readable, never contain a
 * tab, newline or control byte, and are unambiguous (decode gives the bytes
 * back) for hand-picked cases, random byte strings and whole real
 * vocabularies (GPT-2 and llama2.c, from ../shared). */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "interp/render.h"
#include "tok/tokenizer.h"
#include "util/error.h"

struct case_ {
    const char *bytes;
    size_t n;
    const char *want;
};

#define C(s, w) {s, sizeof(s) - 1, w}

static void test_rules_for_whitespace_bytes_and_markers(void **state) {
    (void)state;
    const struct case_ cases[] = {
        C(" the", "␣the"),
        C("the", "the"),
        C("  ", "␣␣"),
        C("\n\n", "↵↵"),
        C("\t", "⇥"),
        C("\r\n", "<0x0D>↵"),
        C("\x7f", "<0x7F>"),
        C("\0", "<0x00>"),
        C("\xE2\x80", "<0xE2><0x80>"),     /* first two bytes of an em dash */
        C("\x94", "<0x94>"),               /* its stray last byte */
        C("\xE2\x80\x94", "—"),            /* the whole em dash */
        C(" caf\xC3\xA9", "␣café"),
        C("\xC3", "<0xC3>"),
        C("\xC0\xAF", "<0xC0><0xAF>"),     /* overlong '/' */
        C("\xED\xA0\x80", "<0xED><0xA0><0x80>"), /* a surrogate */
        C("\xF0\x9F\x98\x80", "😀"),
        C("\xC2\xA0", "<U+00A0>"),         /* no-break space */
        C("\xE2\x80\x8B", "<U+200B>"),     /* zero-width space */
        C("\xEF\xBB\xBF", "<U+FEFF>"),     /* byte-order mark */
        C("\xE2\x90\xA3", "<0xE2><0x90><0xA3>"), /* a literal ␣ */
        C("<0x41>", "<0x3C>0x41>"),
        C("<U+0041>", "<0x3C>U+0041>"),
        C("a<b", "a<b"),
        C("<", "<"),
        C("<0", "<0"),
        C("", ""),
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *got = render_bytes(cases[i].bytes, cases[i].n);
        assert_non_null(got);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, got, cases[i].want);
        char *back;
        size_t n;
        assert_int_equal(render_decode(got, &back, &n), 0);
        assert_int_equal(n, cases[i].n);
        assert_memory_equal(back, cases[i].bytes, n);
        free(back);
        free(got);
    }
}

static void test_decode_rejects_malformed_markers(void **state) {
    (void)state;
    char *b;
    size_t n;
    assert_int_equal(render_decode("<0xZZ>", &b, &n), -1);
    assert_non_null(strstr(err_msg(), "malformed"));
    assert_int_equal(render_decode("<U+12>", &b, &n), -1);
}

static int clean(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7F) return 0;
    return 1;
}

static void test_random_bytes_round_trip(void **state) {
    (void)state;
    unsigned long long x = 0x9E3779B97F4A7C15ull;
    char buf[16];
    for (int t = 0; t < 50000; t++) {
        size_t n = (size_t)(t % 12);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* mostly ASCII and UTF-8 lead/continuation bytes, sometimes '<' runs */
            unsigned v = (unsigned)(x >> 24) & 0xFF;
            buf[i] = (x & 7) == 0 ? "<0xU+>"[v % 6] : (char)v;
        }
        char *d = render_bytes(buf, n);
        assert_non_null(d);
        if (!clean(d)) fail_msg("case %d renders with a control byte: '%s'", t, d);
        char *back;
        size_t m;
        assert_int_equal(render_decode(d, &back, &m), 0);
        if (m != n || memcmp(back, buf, n) != 0) fail_msg("case %d does not round-trip: '%s'", t, d);
        free(back);
        free(d);
    }
}

static void test_ordinary_token_spelled_like_special_is_escaped(void **state) {
    (void)state;
    const char *bytes[] = {"<s>", NULL, "a", "<|endoftext|>"};
    size_t lens[] = {3, 0, 1, 13};
    const char *names[] = {NULL, "<s>", NULL, NULL};
    struct render_vocab *v = render_vocab_from_bytes(bytes, lens, 4, names);
    assert_non_null(v);
    assert_string_equal(render_token(v, 0), "<0x3C>s>");
    assert_string_equal(render_token(v, 1), "<s>");
    assert_string_equal(render_token(v, 3), "<0x3C>|endoftext|>");
    assert_null(render_token(v, 4));
    assert_non_null(strstr(err_msg(), "token id 4"));
    render_vocab_free(v);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_vocab(const struct tokenizer *tok, const struct render_vocab *v, int distinct) {
    int n = tokenizer_vocab_size(tok);
    assert_int_equal(v->n, n);
    for (int i = 0; i < n; i++) {
        const char *d = render_token(v, i);
        if (!clean(d) || strchr(d, '\t') || strchr(d, '\n'))
            fail_msg("token %d renders with a control byte: '%s'", i, d);
        if (v->special[i]) continue;
        size_t len, m;
        const char *b = tokenizer_token_bytes(tok, i, &len);
        char *back;
        assert_int_equal(render_decode(d, &back, &m), 0);
        if (m != len || memcmp(back, b, len) != 0) fail_msg("token %d ('%s') does not round-trip", i, d);
        free(back);
    }
    if (!distinct) return;
    char **sorted = malloc(sizeof *sorted * (size_t)n);
    memcpy(sorted, v->text, sizeof *sorted * (size_t)n);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
    for (int i = 1; i < n; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) fail_msg("two tokens render as '%s'", sorted[i]);
    free(sorted);
}

static void test_gpt2_vocabulary_is_unambiguous(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED("tokenizers/gpt2/encoder.json");
    struct tokenizer *tok = tokenizer_load(shared_path("tokenizers/gpt2"));
    assert_non_null(tok);
    struct render_vocab *v = render_vocab_from_tokenizer(tok);
    assert_non_null(v);
    check_vocab(tok, v, 1);
    assert_string_equal(render_token(v, 50256), "<|endoftext|>");
    assert_string_equal(render_token(v, 262), "␣the"); /* GPT-2's " the" */
    assert_string_equal(render_token(v, 198), "↵");
    render_vocab_free(v);
    tokenizer_free(tok);
}

static void test_llama2c_vocabulary_specials_and_byte_tokens(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED("models/stories260K/tok512.bin");
    struct tokenizer *tok = tokenizer_load(shared_path("models/stories260K/tok512.bin"));
    assert_non_null(tok);
    struct render_vocab *v = render_vocab_from_tokenizer(tok);
    assert_non_null(v);
    check_vocab(tok, v, 0); /* byte token <0x41> and a token "A" share a rendering */
    assert_string_equal(render_token(v, 0), "<unk>");
    assert_string_equal(render_token(v, 1), "<s>");
    assert_string_equal(render_token(v, 2), "</s>");
    assert_string_equal(render_token(v, 3 + 0xE2), "<0xE2>");
    assert_string_equal(render_token(v, 3 + ' '), "␣");
    assert_string_equal(render_token(v, 3 + '\n'), "↵");
    render_vocab_free(v);
    tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_for_whitespace_bytes_and_markers),
        cmocka_unit_test(test_decode_rejects_malformed_markers),
        cmocka_unit_test(test_random_bytes_round_trip),
        cmocka_unit_test(test_ordinary_token_spelled_like_special_is_escaped),
        cmocka_unit_test(test_gpt2_vocabulary_is_unambiguous),
        cmocka_unit_test(test_llama2c_vocabulary_specials_and_byte_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
