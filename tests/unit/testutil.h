/* testutil.h: what every cmocka test in tests/unit shares.
 *
 * Paths: tests run from the repository root (make test does that), so fixtures
 * are "tests/fixtures/...", the shared data is "../shared/..." and scratch files
 * go in a fresh directory from test_tmpdir(). A test that needs something absent
 * (../shared, the PyTorch reference, node's gpt-3-encoder) calls skip_because()
 * with a one-line reason; scripts/run-tests.sh counts it as skipped.
 */
#ifndef AUTOINTERP_TESTUTIL_H
#define AUTOINTERP_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#define skip_because(...)                                                                      \
    do {                                                                                       \
        printf("[  REASON  ] ");                                                               \
        printf(__VA_ARGS__);                                                                   \
        printf("\n");                                                                          \
        fflush(stdout);                                                                        \
        skip();                                                                                \
    } while (0)

/* "../shared/<rel>" if ../shared exists, else NULL. Static buffer. */
const char *shared_path(const char *rel);
#define SKIP_UNLESS_SHARED(rel_)                                                               \
    do {                                                                                       \
        if (!shared_path(rel_)) skip_because("../shared/%s is absent", (rel_));               \
    } while (0)

/* A new empty directory under $TMPDIR (or /tmp), removed by test_rmtree. Static
 * storage per call is not shared: the caller frees the returned string. */
char *test_tmpdir(const char *tag);
void test_rmtree(const char *dir);

/* Join dir and name into a malloc'd path. */
char *path_join(const char *dir, const char *name);

/* Write a whole file (for crafted inputs); asserts on failure. */
void write_file(const char *path, const void *data, size_t n);

/* Run a shell command, capturing stdout+stderr into a malloc'd string (may be
 * NULL); returns the exit status (or -1). */
int run_capture(const char *cmd, char **output);

/* 1 when /usr/bin/python3 can import every module listed (space-separated). */
int have_python_modules(const char *modules);

/* Path of the built autointerp binary ($AUTOINTERP_BIN or bin/autointerp). */
const char *autointerp_bin(void);

#endif
