/* test_atomic.c: atomic replacement keeps the old file until commit, and an
 * aborted write leaves nothing behind. */
#include "testutil.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/atomic.h"
#include "util/error.h"

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void test_commit_replaces_and_abort_keeps_old(void **state) {
    (void)state;
    char *dir = test_tmpdir("atomic");
    char *path = path_join(dir, "out.txt");
    assert_int_equal(atomic_write_file(path, "old\n", 4), 0);

    struct atomic_file af;
    assert_int_equal(atomic_open(&af, path), 0);
    fputs("new contents\n", af.fp);
    size_t n;
    char *seen = read_file_all(path, 0, &n);
    assert_string_equal(seen, "old\n"); /* not visible before commit */
    free(seen);
    atomic_abort(&af);
    seen = read_file_all(path, 0, &n);
    assert_string_equal(seen, "old\n");
    free(seen);
    assert_int_equal(count_entries(dir), 1); /* no temp left */

    assert_int_equal(atomic_open(&af, path), 0);
    fputs("new contents\n", af.fp);
    assert_int_equal(atomic_commit(&af), 0);
    seen = read_file_all(path, 0, &n);
    assert_string_equal(seen, "new contents\n");
    free(seen);
    assert_int_equal(count_entries(dir), 1);
    test_rmtree(dir);
    free(path);
    free(dir);
}

static void test_errors_name_the_path(void **state) {
    (void)state;
    assert_int_equal(atomic_write_file("/nonexistent-dir/x/y.txt", "a", 1), -1);
    assert_non_null(strstr(err_msg(), "/nonexistent-dir/x/y.txt"));
    size_t n;
    assert_null(read_file_all("/nonexistent-file-xyz", 0, &n));
    assert_non_null(strstr(err_msg(), "/nonexistent-file-xyz"));
}

static void test_read_limit_and_mkdir_p(void **state) {
    (void)state;
    char *dir = test_tmpdir("atomic2");
    char *deep = path_join(dir, "a/b/c");
    assert_int_equal(mkdir_p(deep), 0);
    assert_int_equal(mkdir_p(deep), 0); /* idempotent */
    char *f = path_join(deep, "big");
    write_file(f, "0123456789", 10);
    size_t n;
    assert_null(read_file_all(f, 5, &n));
    assert_non_null(strstr(err_msg(), "limit"));
    char *all = read_file_all(f, 0, &n);
    assert_int_equal(n, 10);
    free(all);
    test_rmtree(dir);
    free(f);
    free(deep);
    free(dir);
}

static void test_sweep_removes_only_dead_writers_temps(void **state) {
    (void)state;
    char *dir = test_tmpdir("sweep");
    char *sub = path_join(dir, "sub");
    assert_int_equal(mkdir_p(sub), 0);
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0); /* child's pid is now free: a dead writer */
    char name[256];
    snprintf(name, sizeof name, "%s/a.h5.tmp.%ld.3", sub, (long)child);
    write_file(name, "x", 1);
    char *mine = malloc(strlen(dir) + 64);
    sprintf(mine, "%s/b.h5.tmp.%ld.0", dir, (long)getpid());
    write_file(mine, "x", 1);
    char *keep = path_join(dir, "notes.tmp.txt");
    write_file(keep, "x", 1);
    assert_int_equal(atomic_sweep_stale(dir), 1);
    assert_false(file_exists(name));
    assert_true(file_exists(mine));
    assert_true(file_exists(keep));
    test_rmtree(dir);
    free(mine);
    free(keep);
    free(sub);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_replaces_and_abort_keeps_old),
        cmocka_unit_test(test_errors_name_the_path),
        cmocka_unit_test(test_read_limit_and_mkdir_p),
        cmocka_unit_test(test_sweep_removes_only_dead_writers_temps),
    };
    return cmocka_run_group_tests_name("atomic", tests, NULL, NULL);
}
