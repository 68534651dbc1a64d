/* fuzz_gpt2_bpe.c: the GPT-2 BPE loader on an encoder.json and a vocab.bpe.
 *
 * The input is split at the first FUZZ_GPT2_MARKER: the bytes before it are
 * encoder.json, the bytes after it vocab.bpe (no marker: all of it is
 * encoder.json and vocab.bpe is empty). A loaded tokenizer must encode a fixed
 * text (including the special "<|endoftext|>") to ids inside the vocabulary
 * and decode a valid UTF-8 text back byte for byte.
 */
#include "fuzz_common.h"

#include <sys/stat.h>

#include "tok/tokenizer.h"

#define FUZZ_GPT2_MARKER "\n===vocab.bpe===\n"

static const char fuzz_gpt2_text[] =
    "Hello world, it's 2024!\n\n  \xc3\xa9t\xc3\xa9 <|endoftext|>x y";

int fuzz_gpt2_bpe(const uint8_t *data, size_t size) {
    err_clear();
    const char *mark = memmem(data, size, FUZZ_GPT2_MARKER, sizeof FUZZ_GPT2_MARKER - 1);
    size_t n_vocab = mark ? (size_t)((const uint8_t *)mark - data) : size;
    const uint8_t *merges = mark ? (const uint8_t *)mark + sizeof FUZZ_GPT2_MARKER - 1 : data;
    size_t n_merges = mark ? size - n_vocab - (sizeof FUZZ_GPT2_MARKER - 1) : 0;
    char dir[600];
    snprintf(dir, sizeof dir, "%s", fuzz_path("gpt2"));
    mkdir(dir, 0700);
    fuzz_write("gpt2/encoder.json", data, n_vocab);
    fuzz_write("gpt2/vocab.bpe", merges, n_merges);
    struct tokenizer *tok = tokenizer_load(dir);
    if (!tok) return fuzz_outcome(-1, "tokenizer_load");
    int V = tokenizer_vocab_size(tok);
    size_t len = sizeof fuzz_gpt2_text - 1;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    FUZZ_CHECK(tokenizer_encode(tok, fuzz_gpt2_text, len, &ids, &n, &cap) == 0, "encode: %s",
               err_msg());
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < V, "id %d outside 0..%d", ids[i], V - 1);
    size_t out_len = 0;
    char *back = tokenizer_decode_len(tok, ids, n, &out_len);
    FUZZ_CHECK(back != NULL, "decode: %s", err_msg());
    FUZZ_CHECK(out_len == len && memcmp(back, fuzz_gpt2_text, len) == 0,
               "decode(encode(x)) != x (%zu bytes back, %zu in)", out_len, len);
    free(back);
    free(ids);
    tokenizer_free(tok);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_gpt2_bpe(data, size);
    return 0;
}
#endif
