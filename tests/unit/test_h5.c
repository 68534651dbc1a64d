/* test_h5.c: the HDF5 helpers. Datasets of each element type the project stores
 * and attributes round trip; row reads return the right slab; shape checks and
 * missing names give our messages; truncated and foreign files are refused with
 * an error naming the file instead of crashing. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "util/error.h"

static char *g_dir;

static int setup(void **state) {
    (void)state;
    g_dir = test_tmpdir("h5");
    h5_init();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    test_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static void ok(int rc) {
    if (rc != 0) fail_msg("%s", err_msg());
}

static hid_t vlen_str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

/* Big enough (> 1 MiB) that h5_write chunks it. */
enum { BIG_ROWS = 700, BIG_COLS = 400 };

/* A file with one dataset of each type, in nested groups. */
static char *write_sample(const char *name) {
    char *path = path_join(g_dir, name);
    hid_t f = h5_create(path);
    assert_true(f >= 0);
    float w[3 * 4];
    for (int i = 0; i < 12; i++)
        w[i] = (float)i * 0.25f - 1.0f;
    int32_t i32[5] = {-2147483647 - 1, -1, 0, 1, 2147483647};
    uint16_t u16[6] = {0, 1, 255, 256, 50256, 65535};
    int64_t i64[4] = {INT64_MIN, -1, 1ll << 40, INT64_MAX};
    const char *strs[3] = {"alpha", "", "caf\xc3\xa9 \xe2\x86\x92 \"quoted\"\nnewline"};
    float *big = malloc(sizeof(float) * BIG_ROWS * BIG_COLS);
    for (int i = 0; i < BIG_ROWS * BIG_COLS; i++)
        big[i] = (float)i;

    ok(h5_write_f32(f, "sae/W_dec", 2, (hsize_t[]){3, 4}, w));
    ok(h5_write(f, "ints/i32", H5T_NATIVE_INT32, 1, (hsize_t[]){5}, i32));
    ok(h5_write(f, "tokens", H5T_NATIVE_UINT16, 1, (hsize_t[]){6}, u16));
    ok(h5_write(f, "deep/a/b/i64", H5T_NATIVE_INT64, 2, (hsize_t[]){2, 2}, i64));
    hid_t st = vlen_str_type();
    ok(h5_write(f, "names", st, 1, (hsize_t[]){3}, strs));
    H5Tclose(st);
    ok(h5_write_f32(f, "big", 2, (hsize_t[]){BIG_ROWS, BIG_COLS}, big));
    ok(h5_write_f32(f, "empty", 2, (hsize_t[]){0, 4}, NULL));
    hid_t g = h5_group(f, "sae");
    assert_true(g >= 0);
    ok(h5_attr_str(g, "kind", "e2e+ds"));
    ok(h5_attr_i64(g, "d_sae", 46080));
    ok(h5_attr_f64(g, "lambda", 1.5e-3));
    H5Gclose(g);
    ok(h5_attr_str(f, "note", "caf\xc3\xa9"));
    ok(h5_attr_str(f, "empty", ""));
    ok(h5_attr_i64(f, "min", INT64_MIN));
    free(big);
    ok(h5_close(f));
    return path;
}

static void test_datasets_round_trip(void **state) {
    (void)state;
    char *path = write_sample("rt.h5");
    hid_t f = h5_open_ro(path);
    if (f < 0) fail_msg("%s", err_msg());

    hsize_t dims[8];
    void *buf;
    ok(h5_read(f, "sae/W_dec", H5T_NATIVE_FLOAT, 2, (hsize_t[]){3, 0}, dims, &buf));
    assert_int_equal(dims[0], 3);
    assert_int_equal(dims[1], 4);
    for (int i = 0; i < 12; i++)
        assert_true(((float *)buf)[i] == (float)i * 0.25f - 1.0f);
    free(buf);

    ok(h5_read(f, "ints/i32", H5T_NATIVE_INT32, 1, NULL, dims, &buf));
    int32_t i32[5] = {-2147483647 - 1, -1, 0, 1, 2147483647};
    assert_memory_equal(buf, i32, sizeof i32);
    free(buf);

    ok(h5_read(f, "tokens", H5T_NATIVE_UINT16, 1, (hsize_t[]){6}, dims, &buf));
    uint16_t u16[6] = {0, 1, 255, 256, 50256, 65535};
    assert_memory_equal(buf, u16, sizeof u16);
    free(buf);
    /* ... and converted on read to a wider type */
    ok(h5_read(f, "tokens", H5T_NATIVE_INT32, 1, NULL, dims, &buf));
    assert_int_equal(((int32_t *)buf)[5], 65535);
    free(buf);

    ok(h5_read(f, "deep/a/b/i64", H5T_NATIVE_INT64, 2, NULL, dims, &buf));
    int64_t i64[4] = {INT64_MIN, -1, 1ll << 40, INT64_MAX};
    assert_memory_equal(buf, i64, sizeof i64);
    free(buf);

    hid_t st = vlen_str_type();
    ok(h5_read(f, "names", st, 1, NULL, dims, &buf));
    char **s = buf;
    assert_int_equal(dims[0], 3);
    assert_string_equal(s[0], "alpha");
    assert_string_equal(s[1], "");
    assert_string_equal(s[2], "caf\xc3\xa9 \xe2\x86\x92 \"quoted\"\nnewline");
    for (int i = 0; i < 3; i++)
        H5free_memory(s[i]);
    free(buf);
    H5Tclose(st);

    ok(h5_read(f, "big", H5T_NATIVE_FLOAT, 2, NULL, dims, &buf));
    assert_int_equal(dims[0], BIG_ROWS);
    for (int i = 0; i < BIG_ROWS * BIG_COLS; i += 997)
        assert_true(((float *)buf)[i] == (float)i);
    free(buf);

    ok(h5_read(f, "empty", H5T_NATIVE_FLOAT, 2, NULL, dims, &buf));
    assert_int_equal(dims[0], 0);
    assert_int_equal(dims[1], 4);
    free(buf);

    int nd;
    ok(h5_shape(f, "big", 8, &nd, dims));
    assert_int_equal(nd, 2);
    assert_int_equal(dims[1], BIG_COLS);
    assert_true(h5_exists(f, "deep/a/b/i64"));
    assert_true(h5_exists(f, "deep/a"));
    assert_false(h5_exists(f, "deep/x/b/i64"));
    assert_false(h5_exists(f, "nope"));
    ok(h5_close(f));
    free(path);
}

static void test_attributes_round_trip(void **state) {
    (void)state;
    char *path = write_sample("attr.h5");
    hid_t f = h5_open_ro(path);
    if (f < 0) fail_msg("%s", err_msg());
    hid_t g = H5Gopen2(f, "sae", H5P_DEFAULT);
    assert_true(g >= 0);
    char *s = NULL;
    ok(h5_get_attr_str(g, "kind", &s));
    assert_string_equal(s, "e2e+ds");
    free(s);
    int64_t v;
    ok(h5_get_attr_i64(g, "d_sae", &v));
    assert_int_equal(v, 46080);
    double d;
    ok(h5_get_attr_f64(g, "lambda", &d));
    assert_true(d == 1.5e-3);
    ok(h5_get_attr_f64(g, "d_sae", &d)); /* integers convert to double */
    assert_true(d == 46080.0);
    assert_true(h5_has_attr(g, "kind"));
    assert_false(h5_has_attr(g, "absent"));
    assert_int_equal(h5_get_attr_i64(g, "absent", &v), -1);
    assert_non_null(strstr(err_msg(), "attribute 'absent' is missing"));
    assert_int_equal(h5_get_attr_i64(g, "kind", &v), -1);
    assert_non_null(strstr(err_msg(), "attribute 'kind': expected a number"));
    assert_int_equal(h5_get_attr_str(g, "d_sae", &s), -1);
    assert_non_null(strstr(err_msg(), "attribute 'd_sae': expected a string"));
    assert_null(s);
    H5Gclose(g);
    ok(h5_get_attr_str(f, "note", &s));
    assert_string_equal(s, "caf\xc3\xa9");
    free(s);
    ok(h5_get_attr_str(f, "empty", &s));
    assert_string_equal(s, "");
    free(s);
    ok(h5_get_attr_i64(f, "min", &v));
    assert_true(v == INT64_MIN);
    ok(h5_close(f));
    free(path);
}

/* Attributes can be overwritten (re-running a stage updates its metadata), and
 * fixed-length strings written by other tools (h5py's default for np.bytes_)
 * read back too. */
static void test_attribute_overwrite_and_fixed_length_string(void **state) {
    (void)state;
    char *path = path_join(g_dir, "over.h5");
    hid_t f = h5_create(path);
    assert_true(f >= 0);
    ok(h5_attr_i64(f, "n", 1));
    ok(h5_attr_i64(f, "n", 2));
    ok(h5_attr_str(f, "s", "first"));
    ok(h5_attr_str(f, "s", "second, longer"));
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 5);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "fixed", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, "hello");
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    ok(h5_close(f));
    f = h5_open_ro(path);
    assert_true(f >= 0);
    int64_t v;
    ok(h5_get_attr_i64(f, "n", &v));
    assert_int_equal(v, 2);
    char *s;
    ok(h5_get_attr_str(f, "s", &s));
    assert_string_equal(s, "second, longer");
    free(s);
    ok(h5_get_attr_str(f, "fixed", &s));
    assert_string_equal(s, "hello");
    free(s);
    ok(h5_close(f));
    free(path);
}

/* h5_attr_str writes fixed-length NUL-terminated UTF-8 strings, which live in
 * the attribute itself: our files never touch the global heap, where corrupt
 * files hang or crash libhdf5 1.10. Files written before (variable-length
 * strings, as h5py still writes them), in either character set, still read. */
static void test_strings_written_fixed_length_and_variable_length_still_read(void **state) {
    (void)state;
    char *path = path_join(g_dir, "strings.h5");
    hid_t f = h5_create(path);
    assert_true(f >= 0);
    ok(h5_attr_str(f, "s", "caf\xc3\xa9"));
    ok(h5_attr_str(f, "empty", ""));
    const char *legacy = "written by an older autointerp";
    hid_t vt = vlen_str_type(), sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "legacy", vt, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0 && H5Awrite(a, vt, &legacy) >= 0);
    H5Aclose(a);
    H5Tset_cset(vt, H5T_CSET_ASCII);
    a = H5Acreate2(f, "legacy_ascii", vt, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0 && H5Awrite(a, vt, &legacy) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(vt);
    ok(h5_close(f));

    f = h5_open_ro(path);
    if (f < 0) fail_msg("%s", err_msg());
    static const char *const fixed[][2] = {{"s", "caf\xc3\xa9"}, {"empty", ""}};
    for (int i = 0; i < 2; i++) {
        a = H5Aopen(f, fixed[i][0], H5P_DEFAULT);
        hid_t t = H5Aget_type(a);
        assert_int_equal(H5Tget_class(t), H5T_STRING);
        assert_int_equal(H5Tis_variable_str(t), 0);
        assert_int_equal(H5Tget_cset(t), H5T_CSET_UTF8);
        assert_int_equal(H5Tget_size(t), strlen(fixed[i][1]) + 1);
        H5Tclose(t);
        H5Aclose(a);
        char *s = NULL;
        ok(h5_get_attr_str(f, fixed[i][0], &s));
        assert_string_equal(s, fixed[i][1]);
        free(s);
    }
    for (int i = 0; i < 2; i++) {
        char *s = NULL;
        ok(h5_get_attr_str(f, i ? "legacy_ascii" : "legacy", &s));
        assert_string_equal(s, legacy);
        free(s);
    }
    ok(h5_close(f));
    free(path);
}

static void test_read_rows(void **state) {
    (void)state;
    char *path = write_sample("rows.h5");
    hid_t f = h5_open_ro(path);
    assert_true(f >= 0);
    /* rows crossing chunk boundaries of the chunked dataset */
    float *rows = malloc(sizeof(float) * 300 * BIG_COLS);
    ok(h5_read_rows(f, "big", H5T_NATIVE_FLOAT, 350, 300, rows));
    for (int r = 0; r < 300; r += 7)
        for (int c = 0; c < BIG_COLS; c += 13)
            assert_true(rows[r * BIG_COLS + c] == (float)((350 + r) * BIG_COLS + c));
    ok(h5_read_rows(f, "big", H5T_NATIVE_FLOAT, BIG_ROWS - 1, 1, rows));
    assert_true(rows[BIG_COLS - 1] == (float)(BIG_ROWS * BIG_COLS - 1));
    ok(h5_read_rows(f, "big", H5T_NATIVE_FLOAT, BIG_ROWS, 0, rows)); /* empty read at the end */
    free(rows);

    uint16_t tok[3];
    ok(h5_read_rows(f, "tokens", H5T_NATIVE_UINT16, 3, 3, tok));
    assert_int_equal(tok[0], 256);
    assert_int_equal(tok[2], 65535);
    assert_int_equal(h5_read_rows(f, "tokens", H5T_NATIVE_UINT16, 4, 3, tok), -1);
    assert_non_null(strstr(err_msg(), "dataset 'tokens': rows 4..7 out of range (it has 6)"));
    assert_int_equal(h5_read_rows(f, "nope", H5T_NATIVE_UINT16, 0, 1, tok), -1);
    assert_non_null(strstr(err_msg(), "dataset 'nope' is missing"));
    ok(h5_close(f));
    free(path);
}

static void test_rank_and_dim_mismatch_errors(void **state) {
    (void)state;
    char *path = write_sample("mismatch.h5");
    hid_t f = h5_open_ro(path);
    assert_true(f >= 0);
    void *buf = (void *)1;
    assert_int_equal(h5_read(f, "sae/W_dec", H5T_NATIVE_FLOAT, 1, NULL, NULL, &buf), -1);
    assert_null(buf);
    assert_non_null(strstr(err_msg(), "dataset 'sae/W_dec': expected rank 1, got 2"));
    assert_int_equal(h5_read(f, "sae/W_dec", H5T_NATIVE_FLOAT, 2, (hsize_t[]){3, 5}, NULL, &buf),
                     -1);
    assert_non_null(strstr(err_msg(), "dataset 'sae/W_dec': dimension 1 is 4, expected 5"));
    assert_int_equal(h5_read(f, "sae/missing", H5T_NATIVE_FLOAT, 2, NULL, NULL, &buf), -1);
    assert_non_null(strstr(err_msg(), "dataset 'sae/missing' is missing"));
    assert_int_equal(h5_read(f, "sae", H5T_NATIVE_FLOAT, 2, NULL, NULL, &buf), -1);
    assert_non_null(strstr(err_msg(), "'sae'"));
    ok(h5_close(f));

    /* A rank the helpers cannot hold is refused up front (a large one used to
     * overrun the chunk-shape array). */
    f = h5_create(path);
    hsize_t dims9[9] = {4, 2, 2, 2, 2, 2, 2, 2, 1024}; /* 2 MiB: the chunked path */
    float *z = calloc(512 * 1024, sizeof(float));
    assert_int_equal(h5_write_f32(f, "rank9", 9, dims9, z), -1);
    assert_non_null(strstr(err_msg(), "dataset 'rank9': rank 9"));
    free(z);
    ok(h5_close(f));

    /* Writing the same dataset twice is refused, not silently merged. */
    f = h5_create(path);
    ok(h5_write_f32(f, "x", 1, (hsize_t[]){1}, (float[]){1}));
    assert_int_equal(h5_write_f32(f, "x", 1, (hsize_t[]){1}, (float[]){1}), -1);
    assert_non_null(strstr(err_msg(), "dataset 'x'"));
    ok(h5_close(f));
    free(path);
}

/* Open a truncated file and try every dataset; none may crash, and the failure
 * (at open, or at the first read that needs the missing bytes) names the file
 * or the dataset. Returns the number of successful reads. */
static int read_all_from_damaged(const char *path) {
    hid_t f = h5_open_ro(path);
    if (f < 0) {
        if (!strstr(err_msg(), path)) fail_msg("error does not name the file: %s", err_msg());
        return 0;
    }
    static const char *names[] = {"sae/W_dec", "ints/i32", "tokens", "deep/a/b/i64", "big"};
    int n_ok = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *buf = NULL;
        hsize_t dims[8];
        int nd;
        if (h5_shape(f, names[i], 8, &nd, dims) == 0 && nd >= 1 && dims[0] > 0) {
            size_t row = 1;
            for (int d = 1; d < nd; d++)
                row *= dims[d];
            double *out = malloc(sizeof(double) * dims[0] * row);
            if (h5_read(f, names[i], H5T_NATIVE_DOUBLE, nd, NULL, NULL, &buf) == 0) {
                n_ok++;
                free(buf);
            } else if (!strstr(err_msg(), names[i])) {
                fail_msg("error does not name the dataset: %s", err_msg());
            }
            (void)h5_read_rows(f, names[i], H5T_NATIVE_DOUBLE, 0, dims[0], out);
            free(out);
        }
    }
    h5_close(f);
    return n_ok;
}

static void test_truncated_file_fails_cleanly(void **state) {
    (void)state;
    char *path = write_sample("trunc.h5");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    hid_t f = h5_open_ro(path);
    assert_true(f < 0); /* HDF5 compares the stored end-of-file with the real size */
    assert_non_null(strstr(err_msg(), path));
    assert_non_null(strstr(err_msg(), "truncated"));
    /* Any cut, down to a few bytes, is refused or fails per dataset, never crashes. */
    for (off_t cut = st.st_size - 1; cut > 0; cut = cut * 2 / 3) {
        assert_int_equal(truncate(path, cut), 0);
        read_all_from_damaged(path);
    }
    free(path);
}

static void test_non_hdf5_file_rejected(void **state) {
    (void)state;
    char *path = path_join(g_dir, "text.h5");
    const char text[] = "this is not an HDF5 file, just some text that is long enough\n";
    write_file(path, text, sizeof text - 1);
    assert_true(h5_open_ro(path) < 0);
    assert_non_null(strstr(err_msg(), path));
    assert_non_null(strstr(err_msg(), "not an HDF5 file"));
    write_file(path, "", 0);
    assert_true(h5_open_ro(path) < 0);
    assert_non_null(strstr(err_msg(), path));
    free(path);
    char *missing = path_join(g_dir, "missing.h5");
    assert_true(h5_open_ro(missing) < 0);
    assert_non_null(strstr(err_msg(), missing));
    assert_non_null(strstr(err_msg(), "cannot open"));
    free(missing);
    assert_true(h5_create("/nonexistent-dir/x.h5") < 0);
    assert_non_null(strstr(err_msg(), "/nonexistent-dir/x.h5"));
}

/* The documented way to write: a temporary name, then atomic_rename. */
static void test_written_at_temp_path_then_committed(void **state) {
    (void)state;
    char *path = path_join(g_dir, "committed.h5");
    char *tmp = atomic_tmp_path(path);
    hid_t f = h5_create(tmp);
    assert_true(f >= 0);
    ok(h5_write(f, "v", H5T_NATIVE_INT64, 1, (hsize_t[]){2}, (int64_t[]){7, 8}));
    ok(h5_close(f));
    assert_int_equal(access(path, F_OK), -1);
    ok(atomic_rename(tmp, path));
    assert_int_equal(access(tmp, F_OK), -1);
    f = h5_open_ro(path);
    assert_true(f >= 0);
    int64_t v[2];
    ok(h5_read_rows(f, "v", H5T_NATIVE_INT64, 0, 2, v));
    assert_int_equal(v[1], 8);
    ok(h5_close(f));
    free(tmp);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_datasets_round_trip),
        cmocka_unit_test(test_attributes_round_trip),
        cmocka_unit_test(test_attribute_overwrite_and_fixed_length_string),
        cmocka_unit_test(test_strings_written_fixed_length_and_variable_length_still_read),
        cmocka_unit_test(test_read_rows),
        cmocka_unit_test(test_rank_and_dim_mismatch_errors),
        cmocka_unit_test(test_truncated_file_fails_cleanly),
        cmocka_unit_test(test_non_hdf5_file_rejected),
        cmocka_unit_test(test_written_at_temp_path_then_committed),
    };
    return cmocka_run_group_tests_name("h5", tests, setup, teardown);
}
