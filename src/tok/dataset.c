/* dataset.c: token datasets in HDF5 (layout in dataset.h).
 *
 * Ids are stored as uint16 whenever the vocabulary fits (GPT-2's 50,257 does), which
 * halves the file and the read bandwidth of every streaming pass; readers convert
 * to int32 through HDF5's type conversion. Every read is checked against the
 * vocabulary size, so a corrupt file cannot feed an out-of-range id into a model.
 */
#include "tok/dataset.h"

#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "util/error.h"

#define DATASET_FORMAT "autointerp-tokens"
#define DATASET_FORMAT_VERSION 1

int token_dataset_write(const char *path, const int32_t *ids, int64_t n,
                        const int64_t *doc_offsets, int64_t n_docs,
                        const struct token_dataset_meta *meta) {
    if (meta->vocab_size <= 0 || meta->vocab_size > (int64_t)UINT32_MAX)
        return err_set("%s: vocab_size %lld out of range", path, (long long)meta->vocab_size);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= meta->vocab_size)
            return err_set("%s: token %lld has id %d outside the vocabulary of %lld", path,
                           (long long)i, ids[i], (long long)meta->vocab_size);
    char *tmp = atomic_tmp_path(path);
    if (!tmp) return -1;
    hid_t f = h5_create(tmp);
    if (f < 0) {
        free(tmp);
        return err_prefix("%s", path);
    }
    int rc = 0;
    hsize_t dims[1] = {(hsize_t)n};
    if (meta->vocab_size <= 65536) {
        uint16_t *buf = xmalloc((size_t)(n ? n : 1) * sizeof *buf);
        if (!buf) rc = -1;
        for (int64_t i = 0; rc == 0 && i < n; i++) buf[i] = (uint16_t)ids[i];
        if (rc == 0) rc = h5_write(f, "tokens", H5T_NATIVE_UINT16, 1, dims, buf);
        free(buf);
    } else {
        rc = h5_write(f, "tokens", H5T_NATIVE_INT32, 1, dims, ids);
    }
    hsize_t odims[1] = {(hsize_t)(n_docs + 1)};
    if (rc == 0) rc = h5_write(f, "doc_offsets", H5T_NATIVE_INT64, 1, odims, doc_offsets);
    if (rc == 0) rc = h5_attr_str(f, "format", DATASET_FORMAT);
    if (rc == 0) rc = h5_attr_i64(f, "format_version", DATASET_FORMAT_VERSION);
    if (rc == 0) rc = h5_attr_str(f, "tokenizer", meta->tokenizer);
    if (rc == 0) rc = h5_attr_i64(f, "vocab_size", meta->vocab_size);
    if (rc == 0) rc = h5_attr_i64(f, "eot_id", meta->eot_id);
    if (rc == 0) rc = h5_attr_i64(f, "bos_id", meta->bos_id);
    if (rc == 0) rc = h5_attr_i64(f, "n_tokens", n);
    if (rc == 0) rc = h5_attr_i64(f, "n_documents", n_docs);
    if (rc == 0) rc = h5_attr_str(f, "sources", meta->sources ? meta->sources : "");
    if (h5_close(f) != 0) rc = -1;
    if (rc == 0) rc = atomic_rename(tmp, path);
    if (rc != 0) {
        remove(tmp);
        err_prefix("%s", path);
    }
    free(tmp);
    return rc;
}

int token_dataset_open(struct token_dataset *d, const char *path) {
    memset(d, 0, sizeof *d);
    d->file = -1;
    d->file = h5_open_ro(path);
    if (d->file < 0) return -1;
    d->path = xstrdup(path);
    char *format = NULL;
    int64_t version = 0;
    int rc = h5_get_attr_str(d->file, "format", &format);
    if (rc == 0 && strcmp(format, DATASET_FORMAT) != 0)
        rc = err_set("attribute 'format' is '%s', expected '%s'", format, DATASET_FORMAT);
    free(format);
    if (rc == 0) rc = h5_get_attr_i64(d->file, "format_version", &version);
    if (rc == 0 && version != DATASET_FORMAT_VERSION)
        rc = err_set("format_version %lld is not supported (expected %d)", (long long)version,
                     DATASET_FORMAT_VERSION);
    if (rc == 0) rc = h5_get_attr_str(d->file, "tokenizer", &d->tokenizer);
    if (rc == 0) rc = h5_get_attr_i64(d->file, "vocab_size", &d->vocab_size);
    if (rc == 0) rc = h5_get_attr_i64(d->file, "eot_id", &d->eot_id);
    if (rc == 0) rc = h5_get_attr_i64(d->file, "bos_id", &d->bos_id);
    if (rc == 0) rc = h5_get_attr_i64(d->file, "n_documents", &d->n_documents);
    int ndim = 0;
    hsize_t dims[8];
    if (rc == 0) rc = h5_shape(d->file, "tokens", 8, &ndim, dims);
    if (rc == 0 && ndim != 1) rc = err_set("dataset 'tokens' must be 1-D, has rank %d", ndim);
    if (rc == 0) d->n_tokens = (int64_t)dims[0];
    if (rc == 0 && (d->vocab_size <= 0 || d->vocab_size > (int64_t)UINT32_MAX))
        rc = err_set("attribute 'vocab_size' is %lld, expected 1..2^32", (long long)d->vocab_size);
    if (rc != 0) {
        err_prefix("%s", path);
        token_dataset_close(d);
        return -1;
    }
    return 0;
}

void token_dataset_close(struct token_dataset *d) {
    if (d->file >= 0) h5_close(d->file);
    free(d->path);
    free(d->tokenizer);
    memset(d, 0, sizeof *d);
    d->file = -1;
}

int token_dataset_read(const struct token_dataset *d, int64_t start, int64_t n, int32_t *out) {
    if (start < 0 || n < 0 || start > d->n_tokens || n > d->n_tokens - start)
        return err_set("%s: %lld tokens from position %lld are out of range (the dataset has %lld)",
                       d->path, (long long)n, (long long)start, (long long)d->n_tokens);
    if (h5_read_rows(d->file, "tokens", H5T_NATIVE_INT32, (hsize_t)start, (hsize_t)n, out) != 0)
        return err_prefix("%s", d->path);
    for (int64_t i = 0; i < n; i++)
        if (out[i] < 0 || out[i] >= d->vocab_size)
            return err_set("%s: token at position %lld has id %d outside the vocabulary of %lld",
                           d->path, (long long)(start + i), out[i], (long long)d->vocab_size);
    return 0;
}
