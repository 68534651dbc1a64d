/* test_sha256.c: SHA-256 against the FIPS 180 examples and against Python's
 * hashlib on pseudo-random messages around the padding boundaries (55/56 bytes
 * is where the length stops fitting in the last block, 64 is one whole block),
 * plus streaming in uneven pieces. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/sha256.h"

static void test_fips_180_vectors(void **state) {
    (void)state;
    static const struct {
        const char *msg, *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopq"
         "rlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[SHA256_HEX_CHARS];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        sha256_str_hex(v[i].msg, hex);
        assert_string_equal(hex, v[i].hex);
    }
    /* One million 'a', fed 1000 at a time. */
    char a[1000];
    memset(a, 'a', sizeof a);
    struct sha256_ctx c;
    sha256_init(&c);
    for (int i = 0; i < 1000; i++)
        sha256_update(&c, a, sizeof a);
    uint8_t d[SHA256_DIGEST_BYTES];
    sha256_final(&c, d);
    sha256_to_hex(d, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const size_t lengths[] = {0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 1 << 20};
#define N_LENGTHS (sizeof lengths / sizeof lengths[0])

static unsigned char *random_bytes(size_t n, uint64_t seed) {
    unsigned char *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(rng_next(&seed) >> 56);
    return p;
}

/* Feeding the same bytes in random-sized pieces must give the one-shot digest. */
static void test_streaming_in_pieces_matches_one_shot(void **state) {
    (void)state;
    uint64_t seed = 7;
    for (size_t i = 0; i < N_LENGTHS; i++) {
        size_t n = lengths[i];
        unsigned char *msg = random_bytes(n, 100 + i);
        char whole[SHA256_HEX_CHARS], pieces[SHA256_HEX_CHARS];
        sha256_hex(msg, n, whole);
        struct sha256_ctx c;
        sha256_init(&c);
        for (size_t off = 0; off < n;) {
            size_t take = rng_next(&seed) % 150;
            if (take > n - off) take = n - off;
            sha256_update(&c, msg + off, take);
            off += take;
        }
        uint8_t d[SHA256_DIGEST_BYTES];
        sha256_final(&c, d);
        sha256_to_hex(d, pieces);
        assert_string_equal(whole, pieces);
        free(msg);
    }
}

static void test_matches_python_hashlib(void **state) {
    (void)state;
    if (!have_python_modules("hashlib")) skip_because("/usr/bin/python3 is absent");
    char *dir = test_tmpdir("sha256");
    size_t cmd_cap = 4096;
    char *cmd = malloc(cmd_cap);
    int n = snprintf(cmd, cmd_cap, "/usr/bin/python3 tests/ref/sha256_ref.py");
    char ours[N_LENGTHS][SHA256_HEX_CHARS];
    for (size_t i = 0; i < N_LENGTHS; i++) {
        unsigned char *msg = random_bytes(lengths[i], 100 + i);
        char name[32];
        snprintf(name, sizeof name, "m%zu.bin", i);
        char *path = path_join(dir, name);
        write_file(path, msg, lengths[i]);
        sha256_hex(msg, lengths[i], ours[i]);
        char from_file[SHA256_HEX_CHARS];
        assert_int_equal(sha256_file_hex(path, from_file), 0);
        assert_string_equal(from_file, ours[i]);
        n += snprintf(cmd + n, cmd_cap - n, " '%s'", path);
        free(path);
        free(msg);
    }
    char *out = NULL;
    int rc = run_capture(cmd, &out);
    if (rc != 0) fail_msg("reference script failed (%d): %s", rc, out);
    char *line = out;
    for (size_t i = 0; i < N_LENGTHS; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        if (strcmp(line, ours[i]) != 0)
            fail_msg("length %zu: ours %s, hashlib %s", lengths[i], ours[i], line);
        line = nl + 1;
    }
    free(out);
    free(cmd);
    test_rmtree(dir);
    free(dir);
}

/* The digests ../shared/README.md publishes for its files. */
static void test_shared_files_match_published_digests(void **state) {
    (void)state;
    SKIP_UNLESS_SHARED("data/war-and-peace.txt");
    static const struct {
        const char *rel, *hex;
    } v[] = {
        {"data/war-and-peace.txt",
         "f48864f459731b53b54d8a9e828aa11b4c77cd7f17cd513a361fbba3500eb572"},
        {"models/stories260K/tok512.bin",
         "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        const char *path = shared_path(v[i].rel);
        if (!path) continue;
        char hex[SHA256_HEX_CHARS];
        if (sha256_file_hex(path, hex) != 0) fail_msg("%s", err_msg());
        assert_string_equal(hex, v[i].hex);
    }
}

static void test_file_errors_name_the_path(void **state) {
    (void)state;
    char hex[SHA256_HEX_CHARS];
    assert_int_equal(sha256_file_hex("/nonexistent/sha-input", hex), -1);
    assert_non_null(strstr(err_msg(), "/nonexistent/sha-input"));
    assert_string_equal(hex, "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fips_180_vectors),
        cmocka_unit_test(test_streaming_in_pieces_matches_one_shot),
        cmocka_unit_test(test_matches_python_hashlib),
        cmocka_unit_test(test_shared_files_match_published_digests),
        cmocka_unit_test(test_file_errors_name_the_path),
    };
    return cmocka_run_group_tests_name("sha256", tests, NULL, NULL);
}
