/* test_h5_guard.c: the untrusted-file check in h5_open_ro.
 *
 * The four files in tests/fixtures/fuzz/h5/libhdf5_* make libhdf5 1.10 itself
 * hang, segfault, read past a buffer or malloc 11 GB. Each must now come back
 * as -1 with a message naming the file and the cause, within seconds. The
 * check must really run in another process (a crash or a timeout there leaves
 * this one running, and it counts forks), must not run twice for an unchanged
 * file, and must accept valid files: ours and h5py's (variable-length strings,
 * references, compounds, compression).
 */
#include "testutil.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/h5.h"
#include "tok/dataset.h"
#include "util/error.h"

#define FAULTS "tests/fixtures/fuzz/h5/"
#define HANG FAULTS "libhdf5_vlen_attribute_hang"
#define SEED "tests/fuzz/corpus/h5/gpt2_a.h5"

/* Under ASan an 11 GB malloc returns NULL, as it does without ASan, instead of
 * aborting: the same message from both builds. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1";
}

static char *g_dir;

static int setup(void **state) {
    (void)state;
    g_dir = test_tmpdir("h5guard");
    h5_init();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    test_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static int reset_env(void **state) {
    (void)state;
    unsetenv("AUTOINTERP_H5_CHECK_SECONDS");
    return 0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void expect_in_msg(const char *part) {
    if (!strstr(err_msg(), part)) fail_msg("expected '%s' in: %s", part, err_msg());
}

/* Open path as a token dataset reader would; returns -1 with the message of
 * whichever step refused it (h5_open_ro, else token_dataset_open). */
static int open_as_reader(const char *path) {
    err_clear();
    hid_t f = h5_open_ro(path);
    if (f < 0) return -1;
    h5_close(f);
    struct token_dataset d;
    if (token_dataset_open(&d, path) != 0) return -1;
    token_dataset_close(&d);
    return 0;
}

static void test_hang_input_ends_at_the_timeout(void **state) {
    (void)state;
    setenv("AUTOINTERP_H5_CHECK_SECONDS", "1", 1);
    long forks = h5_check_forks();
    double t0 = now_s();
    assert_int_equal(h5_open_ro(HANG), -1);
    double secs = now_s() - t0;
    expect_in_msg(HANG
                  ": corrupt HDF5 file: libhdf5 did not finish reading its metadata within 1 s");
    assert_int_equal(h5_check_forks(), forks + 1);
    if (secs < 0.9 || secs > 5) fail_msg("the 1 s check took %.2f s", secs);
    /* a failed file is not remembered: the next open checks it again */
    assert_int_equal(h5_open_ro(HANG), -1);
    assert_int_equal(h5_check_forks(), forks + 2);
}

static void test_every_libhdf5_fault_input_is_refused_naming_file_and_cause(void **state) {
    (void)state;
    static const char *const cases[][2] = {
        {FAULTS "libhdf5_vlen_attribute_hang", "did not finish reading its metadata within 2 s"},
        {FAULTS "libhdf5_global_heap_memcpy", "corrupt HDF5 file: HDF5 error"},
        {FAULTS "libhdf5_open_allocates_11GB", "cannot open HDF5 file"},
        /* Without ASan the over-read is silent (in the child as in this process),
         * and the file then fails our own checks; under ASan the child dies. */
        {FAULTS "libhdf5_object_header_overflow", ""},
    };
    setenv("AUTOINTERP_H5_CHECK_SECONDS", "2", 1);
    double t0 = now_s();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double t1 = now_s();
        if (open_as_reader(cases[i][0]) != -1) fail_msg("%s was accepted", cases[i][0]);
        expect_in_msg(cases[i][0]);
        expect_in_msg(cases[i][1]);
        print_message("  %s: %.2f s: %s\n", cases[i][0], now_s() - t1, err_msg());
    }
    double secs = now_s() - t0;
    if (secs > 8) fail_msg("the four inputs took %.1f s", secs);
}

/* A crash of libhdf5 in the child is reported as one, and this process goes
 * on: the check is started on the hang file in a thread, and its child (found
 * through /proc) is sent SIGSEGV. */
struct check_thread {
    int rc;
    char msg[ERR_MSG_MAX];
};

static void *run_check(void *arg) {
    struct check_thread *t = arg;
    t->rc = h5_check_file(HANG);
    snprintf(t->msg, sizeof t->msg, "%s", err_msg());
    return NULL;
}

/* The pid of a child of this process, or 0. */
static pid_t find_child(void) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    pid_t found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        char path[300], buf[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *close_paren = strrchr(buf, ')'); /* "pid (comm) state ppid ..." */
        char state;
        int ppid;
        if (close_paren && sscanf(close_paren + 1, " %c %d", &state, &ppid) == 2 &&
            ppid == (int)getpid())
            found = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return found;
}

/* 1 once the child's SIGSEGV disposition is the default again (the check resets
 * the handlers it inherited, cmocka's among them, first thing). */
static int segv_is_default(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long caught = ~0ull;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "SigCgt: %llx", &caught) == 1) break;
    fclose(f);
    return !(caught & (1ull << (SIGSEGV - 1)));
}

static void test_crash_in_the_check_is_reported_and_survived(void **state) {
    (void)state;
    if (access("/proc/self/stat", R_OK) != 0) skip_because("no /proc to find the check's child");
    setenv("AUTOINTERP_H5_CHECK_SECONDS", "30", 1);
    struct check_thread t = {0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_check, &t), 0);
    pid_t child = 0;
    for (double t0 = now_s(); now_s() - t0 < 10; usleep(10000))
        if ((child || (child = find_child())) && segv_is_default(child)) break;
    if (!child) fail_msg("no child process appeared within 10 s");
    assert_int_equal(kill(child, SIGSEGV), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(t.rc, -1);
    if (!strstr(t.msg, HANG ": corrupt HDF5 file: libhdf5 crashed (signal 11"))
        fail_msg("unexpected message: %s", t.msg);
    if (!strstr(t.msg, "while reading its metadata")) fail_msg("unexpected message: %s", t.msg);
}

/* A file whose ctime is at least 3 s old (a fresh one is never remembered). */
static void wait_until_settled(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    double age = difftime(time(NULL), st.st_ctime);
    if (age < 3) sleep((unsigned)(3 - age) + 1);
}

static void test_unchanged_file_is_checked_once(void **state) {
    (void)state;
    wait_until_settled(SEED);
    h5_check_forget();
    long forks = h5_check_forks();
    for (int i = 0; i < 3; i++) {
        hid_t f = h5_open_ro(SEED);
        if (f < 0) fail_msg("%s", err_msg());
        h5_close(f);
    }
    assert_int_equal(h5_check_forks(), forks + 1);
    /* A file written just now is checked on every open (its timestamps could
     * still be those of a rewrite in the same kernel tick). */
    char *copy = path_join(g_dir, "fresh.h5");
    char *cmd = NULL;
    assert_int_equal(asprintf(&cmd, "cp %s %s", SEED, copy) > 0, 1);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 2; i++) {
        hid_t f = h5_open_ro(copy);
        if (f < 0) fail_msg("%s", err_msg());
        h5_close(f);
    }
    assert_int_equal(h5_check_forks(), forks + 3);
    free(cmd);
    free(copy);
}

static void test_zero_seconds_turns_the_check_off_and_bad_values_are_errors(void **state) {
    (void)state;
    char *copy = path_join(g_dir, "off.h5");
    char *cmd = NULL;
    assert_int_equal(asprintf(&cmd, "cp %s %s", SEED, copy) > 0, 1);
    assert_int_equal(system(cmd), 0);
    setenv("AUTOINTERP_H5_CHECK_SECONDS", "0", 1);
    long forks = h5_check_forks();
    hid_t f = h5_open_ro(copy);
    assert_true(f >= 0);
    h5_close(f);
    assert_int_equal(h5_check_forks(), forks);
    setenv("AUTOINTERP_H5_CHECK_SECONDS", "10s", 1);
    assert_int_equal(h5_open_ro(copy), -1);
    expect_in_msg(copy);
    expect_in_msg("AUTOINTERP_H5_CHECK_SECONDS must be a whole number of seconds");
    expect_in_msg("got '10s'");
    free(cmd);
    free(copy);
}

/* A link into another file would have libhdf5 open that file unchecked. */
static void test_external_link_is_refused(void **state) {
    (void)state;
    char *path = path_join(g_dir, "ext.h5");
    hid_t f = h5_create(path);
    assert_true(f >= 0);
    assert_true(H5Lcreate_external(SEED, "/tokens", f, "tokens", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    h5_close(f);
    assert_int_equal(h5_open_ro(path), -1);
    expect_in_msg(path);
    expect_in_msg("link 'tokens' points into another file");
    free(path);
}

/* Our own writer's file passes (every attribute kind, nested groups, a chunked
 * dataset) and reads back. */
static void test_file_from_our_writer_passes(void **state) {
    (void)state;
    char *path = path_join(g_dir, "ours.h5");
    hid_t f = h5_create(path);
    assert_true(f >= 0);
    static float big[300 * 1024];
    assert_int_equal(h5_write_f32(f, "a/b/big", 2, (hsize_t[]){300, 1024}, big), 0);
    hid_t g = h5_group(f, "a");
    assert_int_equal(h5_attr_str(g, "kind", "nested \xe2\x86\x92"), 0);
    H5Gclose(g);
    assert_int_equal(h5_attr_str(f, "format", "autointerp-tokens"), 0);
    assert_int_equal(h5_attr_str(f, "empty", ""), 0);
    assert_int_equal(h5_attr_i64(f, "n", -5), 0);
    assert_int_equal(h5_attr_f64(f, "x", 0.25), 0);
    assert_int_equal(h5_close(f), 0);
    long forks = h5_check_forks();
    f = h5_open_ro(path);
    if (f < 0) fail_msg("%s", err_msg());
    assert_int_equal(h5_check_forks(), forks + 1);
    char *s = NULL;
    assert_int_equal(h5_get_attr_str(f, "format", &s), 0);
    assert_string_equal(s, "autointerp-tokens");
    free(s);
    g = H5Gopen2(f, "a", H5P_DEFAULT);
    assert_int_equal(h5_get_attr_str(g, "kind", &s), 0);
    assert_string_equal(s, "nested \xe2\x86\x92");
    free(s);
    H5Gclose(g);
    h5_close(f);
    free(path);
}

static const char h5py_writer[] =
    "import sys, h5py, numpy as np\n"
    "with h5py.File(sys.argv[1], 'w') as f:\n"
    "    a = f.attrs\n"
    "    a['format'] = 'autointerp-tokens'\n" /* variable-length UTF-8 */
    "    a['format_version'] = np.int64(1)\n"
    "    a['tokenizer'] = 'llama2c'\n"
    "    a['vocab_size'] = np.int64(512)\n"
    "    a['eot_id'] = np.int64(-1)\n"
    "    a['bos_id'] = np.int64(1)\n"
    "    a['n_tokens'] = np.int64(20)\n"
    "    a['n_documents'] = np.int64(1)\n"
    "    a['sources'] = 'caf\\u00e9'\n"
    "    a['fixed_ascii'] = np.bytes_(b'fixed')\n"
    "    a['strings'] = ['a', 'bb', 'ccc']\n"
    "    a['floats'] = np.arange(3.0)\n"
    "    a['flag'] = True\n"
    "    a['complex'] = 1 + 2j\n"
    "    a.create('ragged', data=np.array([np.arange(2), np.arange(3)], dtype=object),\n"
    "             dtype=h5py.vlen_dtype(np.int32))\n"
    "    t = f.create_dataset('tokens', data=np.arange(20, dtype=np.uint16), chunks=(5,),\n"
    "                         compression='gzip')\n"
    "    f.create_dataset('doc_offsets', data=np.array([0, 20], dtype=np.int64))\n"
    "    f.create_dataset('names', data=np.array(['x', 'yy'], dtype=h5py.string_dtype()))\n"
    "    a['ref'] = t.ref\n"
    "    g = f.create_group('g/h')\n"
    "    g.attrs['note'] = 'in a group'\n"
    "    f['soft'] = h5py.SoftLink('/tokens')\n";

static void test_file_from_h5py_with_variable_length_strings_passes(void **state) {
    (void)state;
    if (!have_python_modules("h5py numpy")) skip_because("/usr/bin/python3 has no h5py/numpy");
    char *script = path_join(g_dir, "write.py"), *path = path_join(g_dir, "h5py.h5");
    write_file(script, h5py_writer, sizeof h5py_writer - 1);
    char *cmd = NULL, *out = NULL;
    assert_int_equal(asprintf(&cmd, "/usr/bin/python3 %s %s", script, path) > 0, 1);
    if (run_capture(cmd, &out) != 0) fail_msg("h5py writer failed: %s", out ? out : "");
    free(out);
    hid_t f = h5_open_ro(path);
    if (f < 0) fail_msg("%s", err_msg());
    char *s = NULL;
    assert_int_equal(h5_get_attr_str(f, "sources", &s), 0);
    assert_string_equal(s, "caf\xc3\xa9");
    free(s);
    assert_int_equal(h5_get_attr_str(f, "fixed_ascii", &s), 0);
    assert_string_equal(s, "fixed");
    free(s);
    h5_close(f);
    struct token_dataset d;
    if (token_dataset_open(&d, path) != 0) fail_msg("%s", err_msg());
    assert_string_equal(d.tokenizer, "llama2c");
    assert_int_equal(d.n_tokens, 20);
    int32_t ids[20];
    assert_int_equal(token_dataset_read(&d, 0, 20, ids), 0);
    assert_int_equal(ids[19], 19);
    token_dataset_close(&d);
    free(cmd);
    free(script);
    free(path);
}

int main(void) {
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_hang_input_ends_at_the_timeout, reset_env),
        cmocka_unit_test_teardown(test_every_libhdf5_fault_input_is_refused_naming_file_and_cause,
                                  reset_env),
        cmocka_unit_test_teardown(test_crash_in_the_check_is_reported_and_survived, reset_env),
        cmocka_unit_test_teardown(test_unchanged_file_is_checked_once, reset_env),
        cmocka_unit_test_teardown(test_zero_seconds_turns_the_check_off_and_bad_values_are_errors,
                                  reset_env),
        cmocka_unit_test_teardown(test_external_link_is_refused, reset_env),
        cmocka_unit_test_teardown(test_file_from_our_writer_passes, reset_env),
        cmocka_unit_test_teardown(test_file_from_h5py_with_variable_length_strings_passes,
                                  reset_env),
    };
    return cmocka_run_group_tests_name("h5_guard", tests, setup, teardown);
}
