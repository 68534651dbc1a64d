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
 */
#include "fuzz_common.h"

#include "io/h5.h"
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
