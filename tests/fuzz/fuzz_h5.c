/* fuzz_h5.c: HDF5 input validation on a file written from the input.
 *
 * The input is an HDF5 file (seeds are small real token datasets). It goes
 * through h5_open_ro and a walk of what the project's readers ask of any file
 * (attributes of every type, dataset shapes, whole and row reads), then
 * through token_dataset_open and token_dataset_read of every token in windows,
 * each id checked against the vocabulary.
 *
 * HDF5 itself parses the file, and libhdf5 1.10 can crash, hang or allocate
 * gigabytes on a corrupt one; h5_open_ro reads all metadata in a child process
 * first (src/io/h5.c), so such an input must come back as a clean rejection
 * (tests/fixtures/fuzz/h5/libhdf5_*). The child's time limit is cut to 3 s
 * here, under libFuzzer's -timeout and test_fuzz_regressions' budget (set
 * AUTOINTERP_H5_CHECK_SECONDS to override). Everything our code does with what
 * HDF5 returns is checked as well.
 *
 * The same file then goes through the two other readers of HDF5 files the
 * stages exchange: examples_load (extract's output; an accepted file must have
 * every index in range) and sae_file_read with sae_metrics_read (train's
 * output; accepted weights must match the attributes, metrics their d_sae).
 */
#include "fuzz_common.h"

#include "extract/examples.h"
#include "io/h5.h"
#include "sae/metrics.h"
#include "sae/sae_io.h"
#include "tok/dataset.h"

#define FUZZ_H5_MAX_ELEMS (1u << 20)

static void fuzz_h5_walk(hid_t f) {
    static const char *const str_attrs[] = {"format", "tokenizer", "sources", NULL};
    static const char *const num_attrs[] = {"format_version", "vocab_size",  "eot_id", "bos_id",
                                            "n_tokens",       "n_documents", NULL};
    for (int i = 0; str_attrs[i]; i++) {
        char *s = NULL;
        if (h5_get_attr_str(f, str_attrs[i], &s) == 0) FUZZ_CHECK(s != NULL, "string attr");
        free(s);
    }
    for (int i = 0; num_attrs[i]; i++) {
        int64_t v;
        double d;
        h5_get_attr_i64(f, num_attrs[i], &v);
        h5_get_attr_f64(f, num_attrs[i], &d);
    }
    static const char *const sets[] = {"tokens", "doc_offsets", "a/b", NULL};
    for (int i = 0; sets[i]; i++) {
        int nd = 0;
        hsize_t dims[8];
        if (h5_shape(f, sets[i], 8, &nd, dims) != 0) continue;
        hsize_t numel = 1;
        int wraps = 0, zero = 0;
        for (int k = 0; k < nd; k++) {
            zero |= dims[k] == 0;
            wraps |= __builtin_mul_overflow(numel, dims[k], &numel);
        }
        wraps |= __builtin_mul_overflow(numel, (hsize_t)8, &(hsize_t){0});
        void *all = NULL;
        hsize_t got[8];
        if (wraps && !zero) { /* a shape whose size overflows must be refused */
            FUZZ_CHECK(h5_read(f, sets[i], H5T_NATIVE_INT64, nd, NULL, got, &all) == -1,
                       "h5_read accepted a shape whose byte size overflows");
            continue;
        }
        if (numel > FUZZ_H5_MAX_ELEMS) continue; /* valid but too big to read here */
        if (h5_read(f, sets[i], H5T_NATIVE_INT64, nd, NULL, got, &all) == 0)
            FUZZ_CHECK(all != NULL || numel == 0, "h5_read gave no buffer");
        free(all);
        if (nd >= 1 && dims[0] > 0) {
            int64_t *rows = malloc((size_t)(numel / dims[0]) * 2 * sizeof *rows + 8);
            FUZZ_CHECK(rows != NULL, "malloc");
            hsize_t n = dims[0] < 2 ? dims[0] : 2;
            h5_read_rows(f, sets[i], H5T_NATIVE_INT64, dims[0] - n, n, rows);
            FUZZ_CHECK(h5_read_rows(f, sets[i], H5T_NATIVE_INT64, dims[0], 1, rows) == -1,
                       "a row past the end was read");
            free(rows);
        }
    }
}

/* Every HDF5 object our readers opened must be closed again: a leaked id keeps
 * the file open inside HDF5, which then hands the stale file to the next open
 * of the same path. */
static void fuzz_h5_check_closed(const char *after) {
    ssize_t open = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    FUZZ_CHECK(open == 0, "%zd HDF5 objects still open after %s", open, after);
}

/* An examples file examples_load accepted is safe to index everywhere. */
static void fuzz_h5_examples(const char *path) {
    struct examples ex;
    err_clear();
    if (examples_load(path, &ex) != 0) {
        fuzz_outcome(-1, "examples_load");
        fuzz_h5_check_closed("a failed examples_load");
        return;
    }
    FUZZ_CHECK(ex.window > 0 && ex.offset >= 0 && ex.offset < ex.window, "window/offset");
    FUZZ_CHECK(ex.n_alive >= 0 && ex.n_alive <= ex.d_sae, "n_alive %d of %d", ex.n_alive, ex.d_sae);
    for (int i = 0; i < ex.n_features; i++)
        FUZZ_CHECK(ex.features[i] >= 0 && ex.features[i] < ex.d_sae, "feature %d", ex.features[i]);
    for (int i = 0; i < ex.n_features; i++) {
        int64_t first, count;
        examples_feature_windows(&ex, i, &first, &count);
        FUZZ_CHECK(first >= 0 && count >= 0 && first + count <= ex.n_windows, "windows of %d", i);
        for (int64_t w = first; w < first + count; w++) {
            FUZZ_CHECK(ex.win_feature[w] == i, "window %lld of feature %d", (long long)w, i);
            FUZZ_CHECK(ex.win_split[w] <= SPLIT_SCORE_QUANTILE, "split %d", ex.win_split[w]);
            volatile float a = ex.win_acts[w * ex.window + ex.window - 1];
            volatile int32_t t = ex.win_tokens[w * ex.window + ex.window - 1];
            (void)a, (void)t;
        }
    }
    volatile double d = ex.density[ex.d_sae - 1];
    volatile float m = ex.max_activation[ex.d_sae - 1];
    (void)d, (void)m;
    examples_free(&ex);
    fuzz_h5_check_closed("examples_load");
}

/* An SAE file sae_file_read accepted has weights of the shapes it states. */
static void fuzz_h5_sae(const char *path) {
    struct sae s;
    struct sae_meta meta;
    err_clear();
    if (sae_file_read(path, &s, &meta) != 0) {
        fuzz_outcome(-1, "sae_file_read");
    } else {
        FUZZ_CHECK(s.d_in > 0 && s.d_sae > 0, "sizes %d %d", s.d_in, s.d_sae);
        FUZZ_CHECK(meta.d_in == s.d_in && meta.d_sae == s.d_sae, "attributes vs weights");
        volatile float last = s.p.W_enc[(size_t)s.d_sae * s.d_in - 1] + s.p.b_enc[s.d_sae - 1] +
                              s.p.b_dec[s.d_in - 1];
        (void)last;
        sae_free(&s);
        sae_meta_free(&meta);
    }
    fuzz_h5_check_closed("sae_file_read");
    err_clear();
    hid_t f = h5_open_ro(path);
    if (f < 0) return;
    struct sae_metrics m;
    if (sae_metrics_read(f, &m) == 0) {
        FUZZ_CHECK(m.d_sae >= 0 && m.n_downstream >= 0, "metrics sizes");
        if (m.d_sae > 0) {
            volatile double d = m.feature_density[m.d_sae - 1];
            (void)d;
        }
        sae_metrics_free(&m);
    } else {
        fuzz_outcome(-1, "sae_metrics_read");
    }
    h5_close(f);
    fuzz_h5_check_closed("sae_metrics_read");
}

int fuzz_h5(const uint8_t *data, size_t size) {
    setenv("AUTOINTERP_H5_CHECK_SECONDS", "3", 0);
    err_clear();
    const char *path = fuzz_write("input.h5", data, size);
    hid_t f = h5_open_ro(path);
    if (f < 0) {
        fuzz_h5_check_closed("a failed h5_open_ro");
        return fuzz_outcome(-1, "h5_open_ro");
    }
    fuzz_h5_walk(f);
    h5_close(f);
    fuzz_h5_check_closed("h5_open_ro and the reads");
    fuzz_h5_examples(path);
    fuzz_h5_sae(path);
    err_clear();
    struct token_dataset d;
    int rc = token_dataset_open(&d, path);
    if (rc != 0) {
        fuzz_h5_check_closed("a failed token_dataset_open");
        return fuzz_outcome(rc, "token_dataset_open");
    }
    int32_t win[256];
    int64_t limit = d.n_tokens < FUZZ_H5_MAX_ELEMS ? d.n_tokens : FUZZ_H5_MAX_ELEMS;
    for (int64_t s = 0; s < limit && rc == 0; s += 256) {
        int64_t n = limit - s < 256 ? limit - s : 256;
        rc = token_dataset_read(&d, s, n, win);
        for (int64_t i = 0; rc == 0 && i < n; i++)
            FUZZ_CHECK(win[i] >= 0 && win[i] < d.vocab_size, "id %d passed the check", win[i]);
    }
    rc = fuzz_outcome(rc, "token_dataset_read");
    FUZZ_CHECK(token_dataset_read(&d, d.n_tokens, 1, win) == -1, "read past the end accepted");
    FUZZ_CHECK(token_dataset_read(&d, -1, 1, win) == -1, "negative start accepted");
    token_dataset_close(&d);
    fuzz_h5_check_closed("token_dataset_close");
    return rc;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_h5(data, size);
    return 0;
}
#endif
