/* test_limits.c: resource limits give clear errors, never crashes.
 *
 * Four kinds of limit, each met by the readers and writers a run depends on:
 *   - a file that cannot be written: a read-only directory, a full disk (a
 *     64 KiB tmpfs in a private mount namespace when we may mount one), a
 *     write error at commit (/dev/full), and a file-size limit (RLIMIT_FSIZE
 *     with SIGXFSZ ignored, so writes fail with EFBIG); the writer must fail
 *     naming the file, leave no temporary file and keep the old contents;
 *   - absurd sizes claimed by an input (a 10 GB safetensors header, a
 *     billion-wide llama2.c model, tokenizer and SAE sizes in the billions, a
 *     config value out of range): refused before anything is allocated;
 *   - a context longer than the model's, and token ids outside the vocabulary
 *     (in a token dataset and at the embedding);
 *   - memory: with RLIMIT_AS lowered in a child, loading a large but valid
 *     model or safetensors file fails with an out-of-memory error naming it.
 * Limits that would poison the test process (uid, rlimits, mounts) are set in
 * a forked child, which reports failures through a pipe.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/config.h"
#include "io/atomic.h"
#include "io/h5.h"
#include "io/jsonl.h"
#include "io/safetensors.h"
#include "model/gpt2.h"
#include "model/lm.h"
#include "sae/sae.h"
#include "sae/sae_io.h"
#include "tok/dataset.h"
#include "tok/tokenizer.h"
#include "util/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Under ASan a huge malloc returns NULL, as it does in a normal build, instead
 * of aborting: the out-of-memory paths are what these tests look at. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1";
}

/* ------------------------------------------------------------ child runs */

static int child_fd = -1;

/* In a child: record a failed expectation and exit. */
#define CHILD_CHECK(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            dprintf(child_fd, "%s:%d: %s: ", __FILE__, __LINE__, #cond);                           \
            dprintf(child_fd, __VA_ARGS__);                                                        \
            dprintf(child_fd, "\n");                                                               \
            _exit(1);                                                                              \
        }                                                                                          \
    } while (0)

#define CHILD_SKIP 77

/* The message a refused operation left, shown in the test log. */
#define SHOW_ERR(what) fprintf(stderr, "  %s -> %s\n", (what), err_msg())

/* Run fn(arg) in a child. Returns its exit code (CHILD_SKIP: the child could
 * not set up its limit; the reason is in *report). *report gets what it wrote. */
static int in_child(void (*fn)(void *), void *arg, char **report) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], SIG_DFL); /* not cmocka's: a crash must end the child */
        close(fds[0]);
        child_fd = fds[1];
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    ssize_t got;
    while ((got = read(fds[0], buf + n, cap - n - 1)) > 0) {
        n += (size_t)got;
        if (n + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    *report = buf;
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

static void run_child_test(void (*fn)(void *), void *arg) {
    char *report = NULL;
    int code = in_child(fn, arg, &report);
    if (code == CHILD_SKIP) {
        char reason[512];
        snprintf(reason, sizeof reason, "%s", report);
        free(report);
        skip_because("%s", reason);
    }
    if (code != 0) fail_msg("child exited with %d: %s", code, report);
    free(report);
}

/* ------------------------------------------------------------ helpers */

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static int file_is(const char *path, const char *want) {
    size_t n;
    char *got = read_file_all(path, 0, &n);
    int same = got && n == strlen(want) && memcmp(got, want, n) == 0;
    free(got);
    return same;
}

static void write_i32s(FILE *f, const int32_t *v, int n) {
    assert_int_equal(fwrite(v, 4, (size_t)n, f), (size_t)n);
}

/* A llama2.c checkpoint with the given header; weights small and finite. With
 * sparse, the file is only extended to its size (zeros, no disk blocks). */
static void write_llama(const char *path, const int32_t h[7], int sparse) {
    int64_t C = h[0], H = h[1], L = h[2], NH = h[3], NKV = h[4], V = h[5] < 0 ? -h[5] : h[5],
            S = h[6], HS = C / NH, KV = NKV * HS;
    int64_t n = V * C + L * C + L * C * C + 2 * L * KV * C + L * C * C + L * C + 3 * L * H * C + C +
                S * HS + (h[5] < 0 ? V * C : 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    write_i32s(f, h, 7);
    if (sparse) {
        assert_int_equal(fclose(f), 0);
        assert_int_equal(truncate(path, 28 + n * 4), 0);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float x = (float)((i * 37) % 11 - 5) * 0.02f;
        assert_int_equal(fwrite(&x, 4, 1, f), 1);
    }
    assert_int_equal(fclose(f), 0);
}

static struct lm *tiny_llama(const char *dir, int max_seq) {
    char *path = path_join(dir, "tiny.bin");
    int32_t h[7] = {8, 16, 1, 2, 1, 12, max_seq};
    write_llama(path, h, 0);
    struct lm *lm = NULL;
    if (lm_load(path, &lm) != 0) fail_msg("lm_load: %s", err_msg());
    free(path);
    return lm;
}

/* ------------------------------------------------ files that cannot be written */

/* Each writer the stages use, writing well over 64 KiB into dir; every one
 * must fail naming its file, leave no temporary behind and (where the file
 * existed) keep the old contents. want is a substring of every stream
 * writer's message ("" for none). */
static void writers_fail_cleanly(const char *dir, const char *want) {
    size_t big_n = 256 * 1024;
    char *big = malloc(big_n);
    CHILD_CHECK(big != NULL, "malloc");
    memset(big, 'x', big_n);
    char path[512];
    int before = count_entries(dir);

    snprintf(path, sizeof path, "%s/blob.bin", dir);
    int old = file_exists(path);
    CHILD_CHECK(atomic_write_file(path, big, big_n) == -1, "atomic_write_file succeeded");
    SHOW_ERR("atomic_write_file");
    CHILD_CHECK(strstr(err_msg(), path) && strstr(err_msg(), want), "message: %s", err_msg());
    if (old) CHILD_CHECK(file_is(path, "old\n"), "the old contents of %s are gone", path);

    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct st_write_tensor t = {"w", 1, {(int64_t)(big_n / 4)}, (const float *)big};
    CHILD_CHECK(st_write_f32(path, &t, 1, NULL, NULL, 0) == -1, "st_write_f32 succeeded");
    SHOW_ERR("st_write_f32");
    CHILD_CHECK(strstr(err_msg(), path) && strstr(err_msg(), want), "message: %s", err_msg());

    snprintf(path, sizeof path, "%s/scores.jsonl", dir);
    old = file_exists(path);
    cJSON *rec = cJSON_CreateObject();
    big[big_n - 1] = 0;
    cJSON_AddStringToObject(rec, "text", big);
    CHILD_CHECK(jsonl_append(path, rec) == -1, "jsonl_append succeeded");
    SHOW_ERR("jsonl_append");
    CHILD_CHECK(strstr(err_msg(), path), "message: %s", err_msg());
    cJSON_Delete(rec);
    if (old) CHILD_CHECK(file_is(path, "{\"a\":1}\n"), "%s: earlier lines changed", path);

    snprintf(path, sizeof path, "%s/tokens.h5", dir);
    size_t n_ids = 200000;
    int32_t *ids = calloc(n_ids, sizeof *ids);
    int64_t offs[2] = {0, (int64_t)n_ids};
    struct token_dataset_meta meta = {"gpt2", 50257, 50256, 50256, "x.txt"};
    CHILD_CHECK(token_dataset_write(path, ids, (int64_t)n_ids, offs, 1, &meta) == -1,
                "token_dataset_write succeeded");
    SHOW_ERR("token_dataset_write");
    CHILD_CHECK(strstr(err_msg(), "tokens.h5"), "message: %s", err_msg());
    free(ids);

    int after = count_entries(dir);
    CHILD_CHECK(after == before, "%d entries in %s before, %d after (a temporary left?)", before,
                dir, after);
    free(big);
}

/* Files that exist before the failing writes: their contents must survive. */
static void seed_old_files(const char *dir) {
    char *p = path_join(dir, "blob.bin");
    write_file(p, "old\n", 4);
    free(p);
    p = path_join(dir, "scores.jsonl");
    write_file(p, "{\"a\":1}\n", 8);
    free(p);
}

static void readonly_child(void *arg) {
    const char *dir = arg;
    if (geteuid() == 0) { /* root writes anywhere: become nobody */
        if (setgid(65534) != 0 || setuid(65534) != 0) {
            dprintf(child_fd, "cannot drop root to test a read-only directory");
            _exit(CHILD_SKIP);
        }
    }
    char path[512];
    snprintf(path, sizeof path, "%s/blob.bin", dir);
    CHILD_CHECK(atomic_write_file(path, "new", 3) == -1, "wrote into a read-only directory");
    CHILD_CHECK(strstr(err_msg(), "Permission denied") && strstr(err_msg(), "blob.bin"),
                "message: %s", err_msg());
    CHILD_CHECK(file_is(path, "old\n"), "old contents lost");
    writers_fail_cleanly(dir, "Permission denied");
    snprintf(path, sizeof path, "%s/sub/dir", dir);
    CHILD_CHECK(mkdir_p(path) == -1 && strstr(err_msg(), "sub"), "mkdir_p: %s", err_msg());
}

static void test_readonly_directory(void **state) {
    (void)state;
    char *top = test_tmpdir("limits-ro");
    char *dir = path_join(top, "ro");
    assert_int_equal(mkdir(dir, 0755), 0);
    seed_old_files(dir);
    assert_int_equal(chmod(top, 0755), 0);
    assert_int_equal(chmod(dir, 0555), 0);
    run_child_test(readonly_child, dir);
    chmod(dir, 0755);
    test_rmtree(top);
    free(dir);
    free(top);
}

static void full_disk_child(void *arg) {
    const char *dir = arg;
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0) {
        dprintf(child_fd,
                "cannot mount a 64 KiB tmpfs here (%s); the RLIMIT_FSIZE and "
                "/dev/full tests cover the write-error paths",
                strerror(errno));
        _exit(CHILD_SKIP);
    }
    seed_old_files(dir);
    writers_fail_cleanly(dir, "No space left on device");
    umount(dir);
}

static void test_full_disk(void **state) {
    (void)state;
    char *dir = test_tmpdir("limits-full");
    run_child_test(full_disk_child, dir);
    test_rmtree(dir);
    free(dir);
}

static void fsize_child(void *arg) {
    const char *dir = arg;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {64 * 1024, 64 * 1024};
    CHILD_CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0, "setrlimit: %s", strerror(errno));
    writers_fail_cleanly(dir, "File too large");
}

static void test_file_size_limit(void **state) {
    (void)state;
    char *dir = test_tmpdir("limits-fsize");
    seed_old_files(dir);
    run_child_test(fsize_child, dir);
    test_rmtree(dir);
    free(dir);
}

/* The write-error path of atomic_commit itself: the stream fails at flush. */
static void test_commit_reports_a_failed_flush(void **state) {
    (void)state;
    FILE *full = fopen("/dev/full", "w");
    if (!full) skip_because("/dev/full is absent");
    char *dir = test_tmpdir("limits-devfull");
    char *path = path_join(dir, "out.txt");
    write_file(path, "old\n", 4);
    struct atomic_file af;
    assert_int_equal(atomic_open(&af, path), 0);
    fclose(af.fp);
    af.fp = full; /* the temp exists; its stream now ends on a full device */
    fputs("new contents\n", af.fp);
    assert_int_equal(atomic_commit(&af), -1);
    assert_non_null(strstr(err_msg(), path));
    assert_non_null(strstr(err_msg(), "No space left on device"));
    assert_true(file_is(path, "old\n"));
    assert_int_equal(count_entries(dir), 1); /* the temporary is gone */
    test_rmtree(dir);
    free(path);
    free(dir);
}

/* ------------------------------------------------------------ absurd sizes */

static void test_safetensors_absurd_sizes(void **state) {
    (void)state;
    char *dir = test_tmpdir("limits-st");
    char *path = path_join(dir, "x.safetensors");
    {
        unsigned char buf[16] = {0};
        uint64_t n = 10ull * 1000 * 1000 * 1000; /* a 10 GB header */
        memcpy(buf, &n, 8);
        memcpy(buf + 8, "{}      ", 8);
        write_file(path, buf, sizeof buf);
        struct st_file f;
        assert_int_equal(st_open(&f, path), -1);
        assert_non_null(strstr(err_msg(), path));
        assert_non_null(strstr(err_msg(), "header length 10000000000"));
    }
    const char *claims[] = {
        /* 40 GB of data claimed by a 100-byte file */
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[100000,100000],\"data_offsets\":[0,40000000000]}}",
        /* a shape whose byte size overflows 64 bits */
        "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
        /* a shape of 2^53 elements */
        "{\"w\":{\"dtype\":\"U8\",\"shape\":[9007199254740992],\"data_offsets\":[0,8]}}",
    };
    const char *want[] = {"run past the end", "overflows", "needs 9007199254740992 bytes"};
    for (int i = 0; i < 3; i++) {
        size_t hl = strlen(claims[i]);
        unsigned char *buf = calloc(1, 8 + hl + 8);
        uint64_t n = hl;
        memcpy(buf, &n, 8);
        memcpy(buf + 8, claims[i], hl);
        write_file(path, buf, 8 + hl + 8);
        free(buf);
        struct st_file f;
        assert_int_equal(st_open(&f, path), -1);
        if (!strstr(err_msg(), want[i])) fail_msg("claim %d: %s", i, err_msg());
        assert_non_null(strstr(err_msg(), "tensor 'w'"));
    }
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_llama_header_absurd_sizes(void **state) {
    (void)state;
    char *dir = test_tmpdir("limits-llama");
    char *path = path_join(dir, "huge.bin");
    struct {
        int32_t h[7];
        const char *want;
    } cases[] = {
        {{1000000000, 16, 1, 2, 1, 12, 4}, "dim must be in 1..65536, got 1000000000"},
        {{8, 16, 1, 2, 1, 2000000000, 4}, "vocab_size must be in"},
        {{8, 16, 1, 2, 1, -2000000000, 4}, "vocab_size must be in"},
        {{8, 16, 1, 2, 1, 12, 1000000000}, "seq_len must be in"},
        {{8, 1000000000, 1, 2, 1, 12, 4}, "hidden_dim must be in"},
        /* every field in range, but the file is 28 bytes: 64 GB implied */
        {{65536, 262144, 1024, 1024, 1024, 4096, 16}, "implies"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(path, "wb");
        write_i32s(f, cases[i].h, 7);
        fclose(f);
        struct lm *lm = NULL;
        assert_int_equal(lm_load(path, &lm), -1);
        assert_null(lm);
        if (!strstr(err_msg(), cases[i].want) || !strstr(err_msg(), path))
            fail_msg("case %zu: %s", i, err_msg());
    }
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_tokenizer_absurd_sizes(void **state) {
    (void)state;
    char *dir = test_tmpdir("limits-tok");
    char *path = path_join(dir, "tok.bin");
    /* max_token_length of two billion */
    int32_t hdr[3] = {2000000000, 0, 0};
    write_file(path, hdr, 4);
    assert_null(tokenizer_load(path));
    assert_non_null(strstr(err_msg(), "max_token_length 2000000000"));
    /* a token claiming a two-billion-byte string in a 16-byte file */
    float score = 0;
    int32_t rec[4] = {65536, 0, 2000000000, 0};
    memcpy(&rec[1], &score, 4);
    write_file(path, rec, sizeof rec);
    assert_null(tokenizer_load(path));
    assert_non_null(strstr(err_msg(), "length 2000000000 exceeds max_token_length 65536"));
    rec[0] = 65536, rec[2] = 60000; /* allowed length, but the bytes are not there */
    write_file(path, rec, sizeof rec);
    assert_null(tokenizer_load(path));
    assert_non_null(strstr(err_msg(), "truncated"));
    /* GPT-2: an id in the billions in encoder.json */
    char *gdir = path_join(dir, "gpt2");
    assert_int_equal(mkdir(gdir, 0755), 0);
    char *enc = path_join(gdir, "encoder.json"), *bpe = path_join(gdir, "vocab.bpe");
    write_file(enc, "{\"a\": 0, \"b\": 3000000000}", 25);
    write_file(bpe, "a b\n", 4);
    assert_null(tokenizer_load(gdir));
    assert_non_null(strstr(err_msg(), "encoder.json"));
    test_rmtree(dir);
    free(enc);
    free(bpe);
    free(gdir);
    free(path);
    free(dir);
}

static void test_sae_absurd_sizes(void **state) {
    (void)state;
    struct sae s;
    assert_int_equal(sae_new(&s, 1 << 30, 1 << 30), -1);
    assert_non_null(strstr(err_msg(), "d_sae"));
    assert_int_equal(sae_new(&s, 0, 16), -1);
    /* An SAE file whose weight shapes claim 2^20 x 2^20 (4 TiB of floats), stored
     * chunked and unwritten so the file stays small. */
    char *dir = test_tmpdir("limits-sae");
    char *path = path_join(dir, "huge_sae.h5");
    hid_t f = h5_create(path);
    assert_true(f >= 0);
    h5_attr_str(f, "format", SAE_FILE_FORMAT);
    h5_attr_i64(f, "format_version", SAE_FILE_VERSION);
    hid_t g = h5_group(f, "weights");
    hsize_t big = (hsize_t)1 << 20, dims2[2] = {big, big}, dims1[1] = {big}, chunk[2] = {64, 64};
    const char *names[] = {"W_enc", "W_dec", "b_enc", "b_dec"};
    for (int i = 0; i < 4; i++) {
        int nd = i < 2 ? 2 : 1;
        hid_t sp = H5Screate_simple(nd, nd == 2 ? dims2 : dims1, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, nd, chunk);
        hid_t ds = H5Dcreate2(g, names[i], H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        assert_true(ds >= 0);
        H5Dclose(ds);
        H5Pclose(dcpl);
        H5Sclose(sp);
    }
    H5Gclose(g);
    h5_close(f);
    assert_int_equal(sae_file_read(path, &s, NULL), -1);
    SHOW_ERR("sae_file_read of 2^20 x 2^20 weights");
    assert_non_null(strstr(err_msg(), "huge_sae.h5"));
    test_rmtree(dir);
    free(path);
    free(dir);
}

/* A chunked dataset declared with `dims` whose chunks are never written: a
 * file of a few kilobytes claiming any size. */
static void write_unwritten_dataset(const char *path, int nd, const hsize_t *dims) {
    hid_t f = h5_create(path);
    assert_true(f >= 0);
    hsize_t chunk[2] = {1, 1};
    hid_t sp = H5Screate_simple(nd, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, nd, chunk);
    hid_t ds = H5Dcreate2(f, "x", H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(ds >= 0);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    h5_close(f);
}

static void test_hdf5_shape_claims(void **state) {
    (void)state;
    char *dir = test_tmpdir("limits-h5");
    char *path = path_join(dir, "claims.h5");
    hsize_t gig[1] = {(hsize_t)1 << 28}; /* 1 GiB of floats, none stored */
    write_unwritten_dataset(path, 1, gig);
    hid_t f = h5_open_ro(path);
    void *out = NULL;
    assert_int_equal(h5_read(f, "x", H5T_NATIVE_FLOAT, 1, NULL, NULL, &out), -1);
    assert_null(out);
    assert_non_null(strstr(err_msg(), "holds 268435456 elements but the file stores only 0 bytes"));
    h5_close(f);
    hsize_t wrap[2] = {((hsize_t)1 << 62) + 1, 4}; /* 2^64 + 4 elements */
    write_unwritten_dataset(path, 2, wrap);
    f = h5_open_ro(path);
    assert_int_equal(h5_read(f, "x", H5T_NATIVE_FLOAT, 2, NULL, NULL, &out), -1);
    assert_non_null(strstr(err_msg(), "overflows"));
    h5_close(f);
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_config_value_out_of_range(void **state) {
    (void)state;
    struct config cfg;
    assert_int_equal(config_parse(&cfg, "{\"sae\": {\"ratio\": 1e9}}", "big.json"), -1);
    assert_non_null(strstr(err_msg(), "big.json"));
    assert_non_null(strstr(err_msg(), "sae.ratio"));
    assert_non_null(strstr(err_msg(), "1024"));
    assert_int_equal(config_parse(&cfg, "{\"sae\": {\"ratio\": 1e300}}", "big.json"), -1);
    assert_non_null(strstr(err_msg(), "sae.ratio"));
}

/* ------------------------------------------------ context and vocabulary */

static void test_context_longer_than_the_model(void **state) {
    (void)state;
    char *dir = test_tmpdir("limits-ctx");
    struct lm *lm = tiny_llama(dir, 4);
    assert_null(lm_acts_new(lm, 1, 5, false));
    assert_non_null(strstr(err_msg(), "seq_len 4"));
    struct lm_acts *acts = lm_acts_new(lm, 1, 4, false);
    assert_non_null(acts);
    lm_acts_free(acts);
    lm_free(lm);

    struct lm g = {.path = "tiny-gpt2"};
    struct lm_config c = {.arch = LM_GPT2,
                          .n_layer = 1,
                          .d_model = 8,
                          .n_head = 2,
                          .n_kv_head = 2,
                          .d_ff = 32,
                          .vocab_size = 16,
                          .max_seq = 4,
                          .norm_eps = 1e-5f,
                          .shared_classifier = true};
    assert_int_equal(gpt2_new(&c, &g), 0);
    assert_null(lm_acts_new(&g, 1, 5, false));
    assert_non_null(strstr(err_msg(), "exceeds n_positions 4"));
    gpt2_free_impl(&g);
    test_rmtree(dir);
    free(dir);
}

static void test_token_ids_outside_the_vocabulary(void **state) {
    (void)state;
    char *dir = test_tmpdir("limits-vocab");
    /* A dataset whose attributes say vocab_size 10 but whose tokens hold 10 and
     * 65535: written with HDF5 directly, as a corrupt or foreign file would be. */
    char *path = path_join(dir, "bad_ids.h5");
    hid_t f = h5_create(path);
    uint16_t toks[6] = {1, 2, 3, 10, 4, 65535};
    int64_t offs[2] = {0, 6};
    hsize_t n6 = 6, n2 = 2;
    assert_int_equal(h5_write(f, "tokens", H5T_NATIVE_UINT16, 1, &n6, toks), 0);
    assert_int_equal(h5_write(f, "doc_offsets", H5T_NATIVE_INT64, 1, &n2, offs), 0);
    h5_attr_str(f, "format", "autointerp-tokens");
    h5_attr_i64(f, "format_version", 1);
    h5_attr_str(f, "tokenizer", "llama2c");
    h5_attr_i64(f, "vocab_size", 10);
    h5_attr_i64(f, "eot_id", 2);
    h5_attr_i64(f, "bos_id", 1);
    h5_attr_i64(f, "n_tokens", 6);
    h5_attr_i64(f, "n_documents", 1);
    h5_close(f);
    struct token_dataset d;
    assert_int_equal(token_dataset_open(&d, path), 0);
    int32_t out[6];
    assert_int_equal(token_dataset_read(&d, 0, 3, out), 0);
    assert_int_equal(token_dataset_read(&d, 0, 6, out), -1);
    assert_non_null(strstr(err_msg(), "position 3 has id 10 outside the vocabulary of 10"));
    assert_non_null(strstr(err_msg(), "bad_ids.h5"));
    assert_int_equal(token_dataset_read(&d, 5, 1, out), -1);
    assert_non_null(strstr(err_msg(), "id 65535"));
    assert_int_equal(token_dataset_read(&d, 4, 3, out), -1); /* past the end */
    assert_non_null(strstr(err_msg(), "3 tokens from position 4 are out of range"));
    /* start + n would overflow int64: refused, not wrapped round to a small range */
    assert_int_equal(token_dataset_read(&d, 2, INT64_MAX, out), -1);
    assert_non_null(strstr(err_msg(), "out of range"));
    assert_int_equal(token_dataset_read(&d, INT64_MAX, 2, out), -1);
    token_dataset_close(&d);

    struct lm *lm = tiny_llama(dir, 4);
    struct lm_acts *acts = lm_acts_new(lm, 1, 2, false);
    int32_t ids[2] = {3, 12}; /* V is 12 */
    assert_int_equal(lm_embed(lm, acts, ids), -1);
    assert_non_null(strstr(err_msg(), "token id 12 at position 1"));
    ids[1] = -1;
    assert_int_equal(lm_embed(lm, acts, ids), -1);
    ids[1] = 11;
    assert_int_equal(lm_embed(lm, acts, ids), 0);
    lm_acts_free(acts);
    lm_free(lm);
    test_rmtree(dir);
    free(path);
    free(dir);
}

/* ------------------------------------------------------------ memory limits */

/* Address space in use now (bytes), from /proc/self/statm. */
static size_t vm_size_now(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

struct oom_paths {
    const char *llama, *safetensors;
};

static void oom_child(void *arg) {
    const struct oom_paths *p = arg;
    size_t limit = vm_size_now() + (256u << 20);
    struct rlimit rl = {limit, limit};
    CHILD_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));

    struct lm *lm = NULL; /* 1.9 GB of weights */
    CHILD_CHECK(lm_load(p->llama, &lm) == -1, "a 1.9 GB model loaded under a 256 MB limit");
    SHOW_ERR("lm_load");
    CHILD_CHECK(strstr(err_msg(), "out of memory") && strstr(err_msg(), p->llama) &&
                    strstr(err_msg(), "weights (476612608 floats)"),
                "message: %s", err_msg());

    struct st_file f; /* 1 GB of tensor data: the mapping itself is refused */
    CHILD_CHECK(st_open(&f, p->safetensors) == -1, "a 1 GB safetensors file mapped");
    SHOW_ERR("st_open");
    CHILD_CHECK(strstr(err_msg(), "Cannot allocate memory") && strstr(err_msg(), p->safetensors),
                "message: %s", err_msg());

    struct lm g = {.path = "gpt2-xl-sized"};
    struct lm_config c = {.arch = LM_GPT2,
                          .n_layer = 48,
                          .d_model = 1600,
                          .n_head = 25,
                          .n_kv_head = 25,
                          .d_ff = 6400,
                          .vocab_size = 50257,
                          .max_seq = 1024,
                          .norm_eps = 1e-5f,
                          .shared_classifier = true};
    CHILD_CHECK(gpt2_new(&c, &g) == -1, "a GPT-2 XL allocated under a 256 MB limit");
    SHOW_ERR("gpt2_new");
    CHILD_CHECK(strstr(err_msg(), "out of memory"), "message: %s", err_msg());

    struct sae s;
    CHILD_CHECK(sae_new(&s, 768, 768 * 512) == -1, "a 2.4 GB SAE allocated");
    SHOW_ERR("sae_new");
    CHILD_CHECK(strstr(err_msg(), "out of memory") && strstr(err_msg(), "d_sae=393216"),
                "message: %s", err_msg());
}

static void test_out_of_memory_is_an_error(void **state) {
    (void)state;
    if (UNDER_ASAN)
        skip_because("RLIMIT_AS cannot be lowered under AddressSanitizer (its shadow "
                     "memory reserves terabytes of address space)");
    char *dir = test_tmpdir("limits-oom");
    char *llama = path_join(dir, "big.bin");
    int32_t h[7] = {2048, 5632, 8, 16, 16, 32000, 64}; /* 477M floats: 1.9 GB */
    write_llama(llama, h, 1);
    char *st = path_join(dir, "big.safetensors");
    char hdr[128];
    int hl =
        snprintf(hdr, sizeof hdr,
                 "{\"w\":{\"dtype\":\"F32\",\"shape\":[262144,1024],\"data_offsets\":[0,%llu]}}",
                 1024ull << 20);
    uint64_t n = (uint64_t)hl;
    FILE *f = fopen(st, "wb");
    assert_int_equal(fwrite(&n, 8, 1, f), 1);
    assert_int_equal(fwrite(hdr, 1, (size_t)hl, f), (size_t)hl);
    fclose(f);
    assert_int_equal(truncate(st, (off_t)(8 + hl) + (1024ll << 20)), 0);
    struct st_file ok; /* valid and loadable without the limit */
    if (st_open(&ok, st) != 0) fail_msg("%s", err_msg());
    st_close(&ok);
    struct oom_paths p = {llama, st};
    run_child_test(oom_child, &p);
    test_rmtree(dir);
    free(st);
    free(llama);
    free(dir);
}

int main(void) {
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readonly_directory),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_file_size_limit),
        cmocka_unit_test(test_commit_reports_a_failed_flush),
        cmocka_unit_test(test_safetensors_absurd_sizes),
        cmocka_unit_test(test_llama_header_absurd_sizes),
        cmocka_unit_test(test_tokenizer_absurd_sizes),
        cmocka_unit_test(test_sae_absurd_sizes),
        cmocka_unit_test(test_hdf5_shape_claims),
        cmocka_unit_test(test_config_value_out_of_range),
        cmocka_unit_test(test_context_longer_than_the_model),
        cmocka_unit_test(test_token_ids_outside_the_vocabulary),
        cmocka_unit_test(test_out_of_memory_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
