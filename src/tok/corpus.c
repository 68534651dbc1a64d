/* corpus.c: text files to documents to ids (see corpus.h for the rules). */
#include "tok/corpus.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "util/error.h"

static int push_doc_start(struct token_buf *b) {
    if (b->n_docs + 2 > b->cap_docs) {
        size_t cap = b->cap_docs ? b->cap_docs * 2 : 256;
        int64_t *p = xrealloc(b->doc_offsets, cap * sizeof *p);
        if (!p) return -1;
        b->doc_offsets = p;
        b->cap_docs = cap;
    }
    b->doc_offsets[b->n_docs++] = (int64_t)b->n;
    b->doc_offsets[b->n_docs] = (int64_t)b->n; /* keeps n_docs + 1 entries valid */
    return 0;
}

static int push_id(struct token_buf *b, int32_t id) {
    if (b->n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        int32_t *p = xrealloc(b->ids, cap * sizeof *p);
        if (!p) return -1;
        b->ids = p;
        b->cap = cap;
    }
    b->ids[b->n++] = id;
    return 0;
}

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/* One document: CRLF -> LF into scratch, trim, encode, add BOS/EOT. */
static int add_document(const struct tokenizer *tok, const char *text, size_t len,
                        struct token_buf *out, char **scratch, size_t *scratch_cap) {
    while (len && is_space(*text)) text++, len--;
    while (len && is_space(text[len - 1])) len--;
    if (len == 0) return 0;
    if (len + 1 > *scratch_cap) {
        char *p = xrealloc(*scratch, len + 1);
        if (!p) return -1;
        *scratch = p;
        *scratch_cap = len + 1;
    }
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n') continue;
        (*scratch)[m++] = text[i];
    }
    if (push_doc_start(out) != 0) return -1;
    bool llama = tokenizer_kind(tok) == TOKENIZER_LLAMA2C;
    if (llama && tokenizer_bos_id(tok) >= 0 && push_id(out, tokenizer_bos_id(tok)) != 0) return -1;
    if (tokenizer_encode(tok, *scratch, m, &out->ids, &out->n, &out->cap) != 0) return -1;
    if (!llama && tokenizer_eot_id(tok) >= 0 && push_id(out, tokenizer_eot_id(tok)) != 0) return -1;
    out->doc_offsets[out->n_docs] = (int64_t)out->n;
    out->n_bytes += (int64_t)len;
    return 0;
}

int corpus_tokenize_text(const struct tokenizer *tok, const char *text, size_t len,
                         const char *separator, struct token_buf *out) {
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF)
        text += 3, len -= 3;
    size_t sep_len = separator ? strlen(separator) : 0;
    char *scratch = NULL;
    size_t scratch_cap = 0;
    const char *end = text + len;
    const char *start = text;
    int rc = 0;
    while (rc == 0 && start <= end) {
        const char *hit = sep_len ? memmem(start, (size_t)(end - start), separator, sep_len) : NULL;
        const char *doc_end = hit ? hit : end;
        rc = add_document(tok, start, (size_t)(doc_end - start), out, &scratch, &scratch_cap);
        if (!hit) break;
        start = hit + sep_len;
    }
    free(scratch);
    if (rc == 0 && !out->doc_offsets && push_doc_start(out) == 0) out->n_docs = 0;
    return rc;
}

int corpus_tokenize_files(const struct tokenizer *tok, const char *const *paths, int n_paths,
                          const char *separator, size_t max_bytes_per_file, struct token_buf *out) {
    for (int i = 0; i < n_paths; i++) {
        size_t len;
        char *text = read_file_all(paths[i], max_bytes_per_file, &len);
        if (!text) return -1;
        int rc = corpus_tokenize_text(tok, text, len, separator, out);
        free(text);
        if (rc != 0) return err_prefix("%s", paths[i]);
    }
    return 0;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static int append_doc(const struct token_buf *in, size_t d, struct token_buf *out) {
    if (push_doc_start(out) != 0) return -1;
    for (int64_t k = in->doc_offsets[d]; k < in->doc_offsets[d + 1]; k++)
        if (push_id(out, in->ids[k]) != 0) return -1;
    out->doc_offsets[out->n_docs] = (int64_t)out->n;
    return 0;
}

int corpus_split(const struct token_buf *in, double eval_fraction, uint64_t seed,
                 struct token_buf *train, struct token_buf *eval) {
    memset(train, 0, sizeof *train);
    memset(eval, 0, sizeof *eval);
    if (in->n_docs < 2)
        return err_set("cannot hold out evaluation documents: the corpus has %zu document%s "
                       "(give separate eval text, or a separator that splits it)",
                       in->n_docs, in->n_docs == 1 ? "" : "s");
    char *to_eval = xcalloc(in->n_docs, 1);
    if (!to_eval) return -1;
    size_t n_eval = 0;
    for (size_t d = 0; d < in->n_docs; d++) {
        double u = (double)(mix64(seed * 0x9E3779B97F4A7C15ULL + d) >> 11) / 9007199254740992.0;
        to_eval[d] = u < eval_fraction;
        n_eval += to_eval[d];
    }
    if (n_eval == 0) to_eval[in->n_docs - 1] = 1;
    if (n_eval == in->n_docs) to_eval[0] = 0;
    int rc = 0;
    for (size_t d = 0; rc == 0 && d < in->n_docs; d++)
        rc = append_doc(in, d, to_eval[d] ? eval : train);
    free(to_eval);
    if (rc != 0) {
        token_buf_free(train);
        token_buf_free(eval);
    }
    return rc;
}

void token_buf_free(struct token_buf *b) {
    free(b->ids);
    free(b->doc_offsets);
    memset(b, 0, sizeof *b);
}
