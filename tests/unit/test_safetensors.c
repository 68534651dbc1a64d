/* test_safetensors.c: the safetensors reader and writer.
 *
 * Round trips through our own writer (0-d, empty and ordinary tensors, with
 * metadata); the writer's output read back by an independent Python reader
 * (tests/ref/safetensors_ref.py, struct + json + numpy); F16, BF16 and F64
 * conversion checked on every 16-bit pattern against numpy/torch; and one crafted
 * corrupt file per validation rule, each of which must fail with a message that
 * names the file and the problem.
 */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "util/error.h"

/* ------------------------------------------------------------ helpers */

static char *g_dir;

static int setup(void **state) {
    (void)state;
    g_dir = test_tmpdir("st");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    test_rmtree(g_dir);
    free(g_dir);
    return 0;
}

#define HDR_LEN_ACTUAL UINT64_MAX

/* A file of: u64 header length (the real one unless overridden), header text,
 * data_len bytes of data. */
static char *craft(const char *name, uint64_t hdr_len, const char *header, size_t data_len) {
    char *path = path_join(g_dir, name);
    size_t h = strlen(header);
    size_t n = 8 + h + data_len;
    unsigned char *buf = calloc(1, n);
    uint64_t len = hdr_len == HDR_LEN_ACTUAL ? h : hdr_len;
    memcpy(buf, &len, 8);
    memcpy(buf + 8, header, h);
    write_file(path, buf, n);
    free(buf);
    return path;
}

/* st_open must fail, leave the struct empty, and the message must contain the
 * path and every substring given (NULL-terminated list). */
static void expect_open_fails_(const char *path, const char *const *subs) {
    struct st_file f;
    memset(&f, 0x5a, sizeof f);
    if (st_open(&f, path) == 0) fail_msg("%s: opened, expected an error", path);
    assert_null(f.map);
    assert_null(f.tensors);
    assert_int_equal(f.n_tensors, 0);
    const char *msg = err_msg();
    if (!strstr(msg, path)) fail_msg("error does not name the file: %s", msg);
    for (; *subs; subs++)
        if (!strstr(msg, *subs)) fail_msg("error lacks \"%s\": %s", *subs, msg);
}
#define expect_open_fails(path, ...)                                                               \
    expect_open_fails_((path), (const char *const[]){__VA_ARGS__, NULL})

static void check_crafted(const char *name, uint64_t hdr_len, const char *header, size_t data_len,
                          const char *const *subs) {
    char *path = craft(name, hdr_len, header, data_len);
    expect_open_fails_(path, subs);
    free(path);
}
#define expect_crafted_fails(name, header, data_len, ...)                                          \
    check_crafted((name), HDR_LEN_ACTUAL, (header), (data_len),                                    \
                  (const char *const[]){__VA_ARGS__, NULL})

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ------------------------------------------------------------ round trips */

static void test_round_trip_shapes_metadata_and_order(void **state) {
    (void)state;
    float scalar = 3.5f, w[12], big[2 * 3 * 4 * 5], one = -1.25f;
    for (int i = 0; i < 12; i++)
        w[i] = (float)i * 0.5f - 2.0f;
    for (int i = 0; i < 120; i++)
        big[i] = 1.0f / (float)(i + 1);
    const struct st_write_tensor ts[] = {
        {"z.scalar", 0, {0}, &scalar},
        {"empty", 1, {0}, NULL},
        {"h.0.attn.c_attn.weight", 2, {3, 4}, w},
        {"empty.middle", 3, {2, 0, 3}, NULL},
        {"a \"quoted\" \\ name", 4, {2, 3, 4, 5}, big},
        {"one", 1, {1}, &one},
    };
    const int n = (int)(sizeof ts / sizeof ts[0]);
    const char *keys[] = {"format", "note"}, *vals[] = {"pt", "line1\nline2 \"q\""};
    char *path = path_join(g_dir, "rt.safetensors");
    assert_int_equal(st_write_f32(path, ts, n, keys, vals, 2), 0);

    struct st_file f;
    if (st_open(&f, path) != 0) fail_msg("%s", err_msg());
    assert_int_equal(f.n_tensors, n);
    assert_int_equal(f.n_meta, 2);
    assert_string_equal(st_meta(&f, "format"), "pt");
    assert_string_equal(st_meta(&f, "note"), vals[1]);
    assert_null(st_meta(&f, "absent"));
    uint64_t expect_offset = 0;
    for (int i = 0; i < n; i++) {
        const struct st_tensor *t = &f.tensors[i];
        assert_string_equal(t->name, ts[i].name); /* header keeps the given order */
        assert_ptr_equal(st_find(&f, ts[i].name), t);
        assert_int_equal(t->dtype, ST_F32);
        assert_int_equal(t->ndim, ts[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            assert_int_equal(t->shape[d], ts[i].shape[d]);
            numel *= ts[i].shape[d];
        }
        assert_int_equal(st_numel(t), numel);
        assert_int_equal(t->begin, expect_offset); /* data in the given order, packed */
        expect_offset = t->end;
        float *out = malloc((size_t)(numel ? numel : 1) * sizeof *out);
        assert_int_equal(st_read_f32(&f, t, out), 0);
        if (numel) assert_memory_equal(out, ts[i].data, (size_t)numel * sizeof *out);
        free(out);
    }
    assert_null(st_find(&f, "missing"));
    assert_int_equal(f.data_len, expect_offset);
    st_close(&f);

    /* Header length is a multiple of 8 and the padding is spaces. */
    FILE *fp = fopen(path, "rb");
    uint64_t hlen;
    assert_int_equal(fread(&hlen, 8, 1, fp), 1);
    assert_int_equal(hlen % 8, 0);
    char *hdr = malloc(hlen + 1);
    assert_int_equal(fread(hdr, 1, hlen, fp), hlen);
    hdr[hlen] = 0;
    fclose(fp);
    char *close_brace = strrchr(hdr, '}');
    for (char *c = close_brace + 1; *c; c++)
        assert_int_equal(*c, ' ');
    free(hdr);
    free(path);
}

static void test_zero_tensors_and_no_metadata(void **state) {
    (void)state;
    char *path = path_join(g_dir, "none.safetensors");
    assert_int_equal(st_write_f32(path, NULL, 0, NULL, NULL, 0), 0);
    struct st_file f;
    if (st_open(&f, path) != 0) fail_msg("%s", err_msg());
    assert_int_equal(f.n_tensors, 0);
    assert_int_equal(f.n_meta, 0);
    assert_int_equal(f.data_len, 0);
    st_close(&f);
    st_close(&f); /* closing twice is harmless */
    free(path);
}

/* Parse the JSON printed by safetensors_ref.py describe. */
static cJSON *python_describe(const char *path) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/safetensors_ref.py describe '%s'", path);
    char *out = NULL;
    int rc = run_capture(cmd, &out);
    if (rc != 0) fail_msg("reference reader failed (%d): %s", rc, out);
    cJSON *j = cJSON_Parse(out);
    if (!j) fail_msg("reference output is not JSON: %.200s", out);
    free(out);
    return j;
}

static void test_writer_output_read_by_python_reference(void **state) {
    (void)state;
    if (!have_python_modules("numpy")) skip_because("/usr/bin/python3 with numpy is absent");
    float a[6] = {1.5f, -0.0f, 3.0e-39f /* subnormal */, 65504.0f, -1e30f, 0.1f};
    float s = 7.0f;
    const struct st_write_tensor ts[] = {
        {"b.second", 2, {2, 3}, a}, {"a.first", 0, {0}, &s}, {"empty", 2, {0, 5}, NULL}};
    const char *keys[] = {"format"}, *vals[] = {"pt"};
    char *path = path_join(g_dir, "py.safetensors");
    assert_int_equal(st_write_f32(path, ts, 3, keys, vals, 1), 0);
    cJSON *j = python_describe(path);
    assert_int_equal((int64_t)cJSON_GetObjectItem(j, "header_len")->valuedouble % 8, 0);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"), "format")->valuestring, "pt");
    cJSON *order = cJSON_GetObjectItem(j, "order");
    assert_int_equal(cJSON_GetArraySize(order), 3);
    cJSON *tensors = cJSON_GetObjectItem(j, "tensors");
    for (int i = 0; i < 3; i++) {
        assert_string_equal(cJSON_GetArrayItem(order, i)->valuestring, ts[i].name);
        cJSON *t = cJSON_GetObjectItem(tensors, ts[i].name);
        assert_non_null(t);
        assert_string_equal(cJSON_GetObjectItem(t, "dtype")->valuestring, "F32");
        cJSON *shape = cJSON_GetObjectItem(t, "shape");
        assert_int_equal(cJSON_GetArraySize(shape), ts[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < ts[i].ndim; d++) {
            assert_int_equal((int64_t)cJSON_GetArrayItem(shape, d)->valuedouble, ts[i].shape[d]);
            numel *= ts[i].shape[d];
        }
        cJSON *vals_j = cJSON_GetObjectItem(t, "values");
        assert_int_equal(cJSON_GetArraySize(vals_j), numel);
        for (int k = 0; k < numel; k++)
            assert_int_equal(f32_bits((float)cJSON_GetArrayItem(vals_j, k)->valuedouble),
                             f32_bits(ts[i].data[k]));
    }
    cJSON_Delete(j);
    free(path);
}

/* ------------------------------------------------------------ conversions */

static void test_f16_bf16_known_values(void **state) {
    (void)state;
    assert_true(st_f16_to_f32(0x3c00) == 1.0f);
    assert_true(st_f16_to_f32(0xc000) == -2.0f);
    assert_true(st_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(st_f16_to_f32(0x0400) == 0x1p-14f);        /* smallest normal */
    assert_true(st_f16_to_f32(0x0001) == 0x1p-24f);        /* smallest subnormal */
    assert_true(st_f16_to_f32(0x03ff) == 1023 * 0x1p-24f); /* largest subnormal */
    assert_true(st_f16_to_f32(0x8001) == -0x1p-24f);
    assert_int_equal(f32_bits(st_f16_to_f32(0x8000)), 0x80000000u); /* -0 */
    assert_true(isinf(st_f16_to_f32(0x7c00)) && st_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(st_f16_to_f32(0xfc00)) && st_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(st_f16_to_f32(0x7e00)));
    assert_true(isnan(st_f16_to_f32(0xfc01)));
    assert_true(st_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(st_bf16_to_f32(0xc0a0) == -5.0f);
    assert_true(st_bf16_to_f32(0x0001) == 0x1p-133f); /* subnormal */
    assert_true(isinf(st_bf16_to_f32(0x7f80)));
    assert_true(isnan(st_bf16_to_f32(0x7fc0)));
    assert_true(isnan(st_bf16_to_f32(0xff81)));
}

/* got and want agree bit for bit, or are both NaN. */
static void assert_same_floats(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i]) && isnan(got[i])) continue;
        if (f32_bits(got[i]) != f32_bits(want[i]))
            fail_msg("%s[%zu]: got %a (0x%08x), reference %a (0x%08x)", what, i, (double)got[i],
                     f32_bits(got[i]), (double)want[i], f32_bits(want[i]));
    }
}

static void compare_with_expect(const struct st_file *f, const char *name, const char *expect) {
    const struct st_tensor *t = st_find(f, name), *e = st_find(f, expect);
    assert_non_null(t);
    assert_non_null(e);
    assert_int_equal(st_numel(t), st_numel(e));
    size_t n = (size_t)st_numel(t);
    float *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
    assert_int_equal(st_read_f32(f, t, got), 0);
    assert_int_equal(st_read_f32(f, e, want), 0);
    assert_same_floats(name, got, want, n);
    free(got);
    free(want);
}

static void test_half_and_f64_match_numpy_on_every_pattern(void **state) {
    (void)state;
    if (!have_python_modules("numpy")) skip_because("/usr/bin/python3 with numpy is absent");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/safetensors_ref.py write-half '%s'",
             g_dir);
    char *out = NULL;
    int rc = run_capture(cmd, &out);
    if (rc != 0) fail_msg("reference writer failed (%d): %s", rc, out);
    free(out);
    char *path = path_join(g_dir, "half.safetensors");
    struct st_file f;
    if (st_open(&f, path) != 0) fail_msg("%s", err_msg());
    assert_true(((uintptr_t)f.data & 1) == 1); /* the script made the data unaligned */
    assert_int_equal(st_find(&f, "f16")->dtype, ST_F16);
    assert_int_equal(st_find(&f, "bf16")->dtype, ST_BF16);
    assert_int_equal(st_find(&f, "f64")->dtype, ST_F64);
    assert_int_equal(st_numel(st_find(&f, "f16")), 65536);
    compare_with_expect(&f, "f16", "f16_expect");
    compare_with_expect(&f, "bf16", "bf16_expect");
    compare_with_expect(&f, "f64", "f64_expect");
    st_close(&f);
    free(path);
}

static void test_integer_tensor_is_not_read_as_float(void **state) {
    (void)state;
    char *path = craft("int.safetensors", HDR_LEN_ACTUAL,
                       "{\"ids\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    struct st_file f;
    if (st_open(&f, path) != 0) fail_msg("%s", err_msg());
    assert_int_equal(st_dtype_size(f.tensors[0].dtype), 4);
    assert_ptr_equal(st_tensor_data(&f, &f.tensors[0]), f.data);
    float out[2];
    assert_int_equal(st_read_f32(&f, &f.tensors[0], out), -1);
    assert_non_null(strstr(err_msg(), path));
    assert_non_null(strstr(err_msg(), "'ids'"));
    assert_non_null(strstr(err_msg(), "I32"));
    st_close(&f);
    free(path);
}

/* Things other writers do that are harmless: gaps, trailing bytes, empty
 * tensors anywhere, whitespace, extra fields, keys in any order. */
static void test_lenient_but_safe_layouts_open(void **state) {
    (void)state;
    char *path = craft("lenient.safetensors", HDR_LEN_ACTUAL,
                       "\n { \"b\":{\"shape\":[2],\"data_offsets\":[16,24],\"dtype\":\"F32\","
                       "\"extra\":1},\n\"e\":{\"dtype\":\"F16\",\"shape\":[0,3],"
                       "\"data_offsets\":[20,20]},"
                       "\"a\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,2]}}   ",
                       32);
    struct st_file f;
    if (st_open(&f, path) != 0) fail_msg("%s", err_msg());
    assert_int_equal(f.n_tensors, 3);
    assert_int_equal(st_find(&f, "a")->ndim, 0);
    assert_int_equal(st_numel(st_find(&f, "a")), 1);
    assert_int_equal(st_numel(st_find(&f, "e")), 0);
    st_close(&f);
    free(path);
}

/* ------------------------------------------------------------ corrupt files */

static void test_missing_file_and_directory(void **state) {
    (void)state;
    char *path = path_join(g_dir, "does-not-exist.safetensors");
    expect_open_fails(path, "cannot open");
    free(path);
    expect_open_fails(g_dir, "not a regular file");
}

static void test_truncated_files(void **state) {
    (void)state;
    char *path = path_join(g_dir, "short.safetensors");
    write_file(path, "\x10\x00\x00\x00\x00", 5);
    expect_open_fails(path, "too short");
    free(path);

    /* A good file cut in the middle of its data. */
    float w[12] = {0};
    const struct st_write_tensor t = {"w", 2, {3, 4}, w};
    path = path_join(g_dir, "cut.safetensors");
    assert_int_equal(st_write_f32(path, &t, 1, NULL, NULL, 0), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - 10), 0);
    expect_open_fails(path, "tensor 'w'", "run past the end of the data section");
    /* ... and cut inside its header. */
    assert_int_equal(truncate(path, 20), 0);
    expect_open_fails(path, "larger than the file");
    free(path);
}

static void test_header_length_claims(void **state) {
    (void)state;
    const char *hdr = "{}";
    check_crafted("hlen-big.safetensors", 1000, hdr, 40,
                  (const char *const[]){"header length 1000 bytes", "larger than the file", NULL});
    check_crafted("hlen-10gb.safetensors", 10ull * 1000 * 1000 * 1000, hdr, 0,
                  (const char *const[]){"header length 10000000000 bytes", "100 MB limit", NULL});
    check_crafted("hlen-huge.safetensors", UINT64_MAX - 1, hdr, 0,
                  (const char *const[]){"100 MB limit", NULL});
}

static void test_header_not_json(void **state) {
    (void)state;
    expect_crafted_fails("notjson.safetensors", "{\"w\": {\"dtype\": ", 0,
                         "header is not valid JSON");
    expect_crafted_fails("empty-header.safetensors", "", 0, "header is not valid JSON");
    expect_crafted_fails("garbage.safetensors", "PK\x03\x04 zip?", 0, "header is not valid JSON");
    expect_crafted_fails("trailing.safetensors", "{} {}", 0, "trailing bytes");
    expect_crafted_fails("nul.safetensors", "{\"a\x01\":1}", 0, "control byte 0x01");
    expect_crafted_fails("array.safetensors", "[1, 2]", 0, "header must be a JSON object",
                         "an array");
}

static void test_entry_field_errors(void **state) {
    (void)state;
    expect_crafted_fails("nodtype.safetensors", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                         "tensor 'w'", "missing 'dtype'");
    expect_crafted_fails("baddtype.safetensors",
                         "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
                         "tensor 'w'", "unknown dtype 'F8_E4M3'");
    expect_crafted_fails("numdtype.safetensors",
                         "{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                         "tensor 'w'", "dtype must be a string");
    expect_crafted_fails("entry-str.safetensors", "{\"w\":\"F32\"}", 0, "tensor 'w'",
                         "expected an object");
    expect_crafted_fails("noshape.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor 'w'",
                         "missing 'shape'");
    expect_crafted_fails("nooffs.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
                         "tensor 'w'", "missing 'data_offsets'");
    expect_crafted_fails("dupfield.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],"
                         "\"data_offsets\":[0,8]}}",
                         8, "tensor 'w'", "field 'dtype' appears twice");
}

static void test_shape_errors(void **state) {
    (void)state;
    expect_crafted_fails("negshape.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,8]}}", 8,
                         "tensor 'w'", "shape[1] must be a non-negative integer, got -3");
    expect_crafted_fails("fracshape.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
                         "tensor 'w'", "shape[0] must be a non-negative integer, got 2.5");
    expect_crafted_fails("strshape.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8,
                         "tensor 'w'", "shape must be an array");
    expect_crafted_fails("rank9.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                         "\"data_offsets\":[0,4]}}",
                         4, "tensor 'w'", "9 dimensions, at most 8");
    expect_crafted_fails("overflow.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                         "\"data_offsets\":[0,0]}}",
                         0, "tensor 'w'", "overflows 64 bits");
    expect_crafted_fails("hugeint.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,0]}}", 0,
                         "tensor 'w'", "shape[0] is too large");
}

static void test_offset_errors(void **state) {
    (void)state;
    expect_crafted_fails(
        "range.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64]}}",
        48, "tensor 'w'", "data_offsets [0, 64) run past the end of the data section", "48 bytes");
    expect_crafted_fails("backwards.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
                         "tensor 'w'", "begin is after end");
    expect_crafted_fails("negoff.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8,
                         "tensor 'w'", "data_offsets[0] must be a non-negative integer");
    expect_crafted_fails("oneoff.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 8,
                         "tensor 'w'", "data_offsets must be an array [begin, end]");
    expect_crafted_fails("mismatch.safetensors",
                         "{\"h.0.attn.c_attn.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],"
                         "\"data_offsets\":[0,100]}}",
                         100,
                         "tensor 'h.0.attn.c_attn.weight': data_offsets [0, 100) but shape [3,4] "
                         "F32 needs 48 bytes");
    expect_crafted_fails("overlap.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[12],\"data_offsets\":[0,48]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[12],\"data_offsets\":[40,88]}}",
                         88, "tensors 'a' [0, 48) and 'b' [40, 88) overlap");
    /* Overlap is found whatever order the header lists the tensors in. */
    expect_crafted_fails("overlap2.safetensors",
                         "{\"c\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[16,24]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                         24, "overlap", "'a'", "'b'");
}

static void test_duplicate_names(void **state) {
    (void)state;
    expect_crafted_fails("dup.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                         "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                         12, "tensor 'w' appears twice");
    expect_crafted_fails("dupmeta.safetensors",
                         "{\"__metadata__\":{\"a\":\"1\"},\"__metadata__\":{\"b\":\"2\"}}", 0,
                         "__metadata__ appears twice");
    expect_crafted_fails("dupmetakey.safetensors", "{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}",
                         0, "__metadata__ key 'a' appears twice");
}

static void test_metadata_must_map_strings_to_strings(void **state) {
    (void)state;
    expect_crafted_fails("metanum.safetensors",
                         "{\"__metadata__\":{\"format\":\"pt\",\"n_layers\":12}}", 0,
                         "__metadata__ key 'n_layers': expected a string value, got a number");
    expect_crafted_fails("metaobj.safetensors", "{\"__metadata__\":{\"x\":{\"y\":\"z\"}}}", 0,
                         "__metadata__ key 'x'", "got an object");
    expect_crafted_fails("metaarr.safetensors", "{\"__metadata__\":[\"pt\"]}", 0,
                         "__metadata__ must be an object of strings, got an array");
}

/* ------------------------------------------------------------ writer errors */

static void test_writer_rejects_bad_input_and_names_the_file(void **state) {
    (void)state;
    float x[2] = {1, 2};
    char *path = path_join(g_dir, "w.safetensors");
    const struct st_write_tensor dup[] = {{"a", 1, {2}, x}, {"a", 1, {2}, x}};
    assert_int_equal(st_write_f32(path, dup, 2, NULL, NULL, 0), -1);
    assert_non_null(strstr(err_msg(), path));
    assert_non_null(strstr(err_msg(), "'a' is given twice"));
    const struct st_write_tensor neg = {"n", 2, {2, -1}, x};
    assert_int_equal(st_write_f32(path, &neg, 1, NULL, NULL, 0), -1);
    assert_non_null(strstr(err_msg(), "shape[1] is negative"));
    const struct st_write_tensor reserved = {"__metadata__", 1, {2}, x};
    assert_int_equal(st_write_f32(path, &reserved, 1, NULL, NULL, 0), -1);
    assert_non_null(strstr(err_msg(), "reserved"));
    const struct st_write_tensor nodata = {"d", 1, {2}, NULL};
    assert_int_equal(st_write_f32(path, &nodata, 1, NULL, NULL, 0), -1);
    assert_non_null(strstr(err_msg(), "'d': data is NULL"));
    const char *k[] = {"k", "k"}, *v[] = {"1", "2"};
    assert_int_equal(st_write_f32(path, NULL, 0, k, v, 2), -1);
    assert_non_null(strstr(err_msg(), "metadata key 'k' is given twice"));
    assert_int_equal(access(path, F_OK), -1); /* nothing was written */

    const struct st_write_tensor ok = {"a", 1, {2}, x};
    assert_int_equal(st_write_f32("/nonexistent-dir/m.safetensors", &ok, 1, NULL, NULL, 0), -1);
    assert_non_null(strstr(err_msg(), "/nonexistent-dir/m.safetensors"));
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_shapes_metadata_and_order),
        cmocka_unit_test(test_zero_tensors_and_no_metadata),
        cmocka_unit_test(test_writer_output_read_by_python_reference),
        cmocka_unit_test(test_f16_bf16_known_values),
        cmocka_unit_test(test_half_and_f64_match_numpy_on_every_pattern),
        cmocka_unit_test(test_integer_tensor_is_not_read_as_float),
        cmocka_unit_test(test_lenient_but_safe_layouts_open),
        cmocka_unit_test(test_missing_file_and_directory),
        cmocka_unit_test(test_truncated_files),
        cmocka_unit_test(test_header_length_claims),
        cmocka_unit_test(test_header_not_json),
        cmocka_unit_test(test_entry_field_errors),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_offset_errors),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_metadata_must_map_strings_to_strings),
        cmocka_unit_test(test_writer_rejects_bad_input_and_names_the_file),
    };
    return cmocka_run_group_tests_name("safetensors", tests, setup, teardown);
}
