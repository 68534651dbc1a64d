/* fuzz_llama2c_tok.c: the llama2.c tokenizer reader (tok512.bin layout).
 *
 * A file the reader accepts must encode and decode: the harness encodes a
 * fixed text with every kind of byte (ASCII, UTF-8, invalid UTF-8, NUL), checks
 * every id is inside the vocabulary and that decode([BOS] + ids) gives the
 * text back (byte fallback covers every byte, so this holds for any valid
 * vocabulary, up to the dummy-prefix space noted below).
 */
#include "fuzz_common.h"

#include "tok/tokenizer.h"

static const char fuzz_llama2c_text[] = "Once upon a time, \xc3\xa9t\xc3\xa9 \xff\xfe\x80 z\0!";

int fuzz_llama2c_tok(const uint8_t *data, size_t size) {
    err_clear();
    const char *path = fuzz_write("tok.bin", data, size);
    struct tokenizer *tok = tokenizer_load(path);
    if (!tok) return fuzz_outcome(-1, "tokenizer_load");
    int V = tokenizer_vocab_size(tok);
    size_t len = sizeof fuzz_llama2c_text - 1;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    FUZZ_CHECK(tokenizer_encode(tok, fuzz_llama2c_text, len, &ids, &n, &cap) == 0, "encode: %s",
               err_msg());
    int32_t *with_bos = malloc((n + 1) * sizeof *with_bos);
    FUZZ_CHECK(with_bos != NULL, "malloc");
    with_bos[0] = tokenizer_bos_id(tok);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < V, "id %d outside 0..%d", ids[i], V - 1);
        with_bos[i + 1] = ids[i];
    }
    size_t out_len = 0;
    char *back = tokenizer_decode_len(tok, with_bos, n + 1, &out_len);
    FUZZ_CHECK(back != NULL, "decode: %s", err_msg());
    /* Without a " " token the dummy prefix is the byte token <0x20>, which
     * llama2.c's decode does not strip after BOS: then one space comes back. */
    int same = out_len == len && memcmp(back, fuzz_llama2c_text, len) == 0;
    int spaced =
        out_len == len + 1 && back[0] == ' ' && memcmp(back + 1, fuzz_llama2c_text, len) == 0;
    FUZZ_CHECK(same || spaced, "decode(encode(x)) != x (%zu bytes back, %zu in)", out_len, len);
    free(back);
    free(with_bos);
    free(ids);
    size_t tl;
    FUZZ_CHECK(tokenizer_token_bytes(tok, V, &tl) == NULL, "token V has bytes");
    tokenizer_free(tok);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_llama2c_tok(data, size);
    return 0;
}
#endif
