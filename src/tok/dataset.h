/* dataset.h: token datasets on disk (HDF5), as written by `autointerp tokenize`.
 *
 * File layout:
 *   /tokens        1-D, uint16 when vocab_size <= 65536 else uint32: all documents
 *                  concatenated, each followed by the EOT id when the tokenizer has one
 *   /doc_offsets   1-D int64, n_documents + 1 entries: start of each document in /tokens
 *   attributes on /: format = "autointerp-tokens", format_version = 1, tokenizer
 *                  (name), vocab_size, eot_id (-1 if none), bos_id (-1 if none),
 *                  n_tokens, n_documents, sources (newline-joined input paths)
 *
 * Readers stream windows from it without loading it whole, and check every id
 * against vocab_size.
 */
#ifndef AUTOINTERP_TOK_DATASET_H
#define AUTOINTERP_TOK_DATASET_H

#include <hdf5.h>
#include <stdint.h>

struct token_dataset {
    char *path;
    hid_t file;
    char *tokenizer;
    int64_t vocab_size;
    int64_t eot_id, bos_id;
    int64_t n_tokens;
    int64_t n_documents;
};

struct token_dataset_meta {
    const char *tokenizer;
    int64_t vocab_size, eot_id, bos_id;
    const char *sources;
};

/* Write ids[n] (documents already joined) and doc_offsets[n_docs+1] atomically. */
int token_dataset_write(const char *path, const int32_t *ids, int64_t n,
                        const int64_t *doc_offsets, int64_t n_docs,
                        const struct token_dataset_meta *meta);

int token_dataset_open(struct token_dataset *d, const char *path);
void token_dataset_close(struct token_dataset *d);

/* Copy tokens [start, start+n) into out; errors on out-of-range requests and on
 * ids >= vocab_size (naming the position). */
int token_dataset_read(const struct token_dataset *d, int64_t start, int64_t n, int32_t *out);

#endif
