/* corpus.h: text files to token ids, document by document.
 *
 * A corpus is a list of text files. Each file is split into documents at a
 * separator string (default "<|endoftext|>", as in TinyStories and OpenWebText
 * dumps; "\n%\n" for fortune files); a file without the separator is one
 * document. Per document: a UTF-8 byte-order mark at the start of a file is
 * dropped, CRLF line ends become LF, surrounding whitespace is trimmed, and empty
 * documents are skipped. Then:
 *   GPT-2:    ids(document) followed by the EOT id (50256), the convention of
 *             GPT-2's training data, so windows that cross documents see EOT;
 *   llama2.c: BOS (1) followed by ids(document), as llama2.c pretokenises
 *             TinyStories.
 * The result keeps each document's start offset so that evaluation documents can
 * be held out whole.
 */
#ifndef AUTOINTERP_TOK_CORPUS_H
#define AUTOINTERP_TOK_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "tok/tokenizer.h"

struct token_buf {
    int32_t *ids;
    size_t n, cap;
    int64_t *doc_offsets; /* n_docs + 1 entries once finished */
    size_t n_docs, cap_docs;
    int64_t n_bytes;      /* text bytes consumed */
};

/* Tokenize every document of every file, appending to out (zero it first).
 * max_bytes_per_file 0 = no limit (otherwise larger files are an error). */
int corpus_tokenize_files(const struct tokenizer *tok, const char *const *paths, int n_paths,
                          const char *separator, size_t max_bytes_per_file, struct token_buf *out);

/* Tokenize one in-memory text as documents (same rules), appending to out. */
int corpus_tokenize_text(const struct tokenizer *tok, const char *text, size_t len,
                         const char *separator, struct token_buf *out);

/* Split whole documents into train and eval: document i goes to eval when a
 * seeded hash of i falls below eval_fraction (at least one document each side
 * when there are two or more). */
int corpus_split(const struct token_buf *in, double eval_fraction, uint64_t seed,
                 struct token_buf *train, struct token_buf *eval);

void token_buf_free(struct token_buf *b);

#endif
