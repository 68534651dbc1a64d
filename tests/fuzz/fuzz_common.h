/* fuzz_common.h: what every fuzz harness in tests/fuzz shares.
 *
 * Each harness is a file fuzz_<name>.c holding one entry point
 *
 *     int fuzz_<name>(const uint8_t *data, size_t size);
 *
 * that feeds the input to a library reader and returns 0 (accepted) or -1 (a
 * clean error: err_msg() says why). Anything else (a sanitizer report, an abort
 * on a broken invariant) is a bug. Two programs call the entry points:
 *   - scripts/fuzz.sh builds each file with clang -fsanitize=fuzzer, and the
 *     LLVMFuzzerTestOneInput at the bottom of the file calls the entry point;
 *   - tests/unit/test_fuzz_regressions.c (the normal gcc build, and make asan)
 *     defines FUZZ_NO_MAIN, includes every harness and replays each file under
 *     tests/fixtures/fuzz/<name>/ through the same entry point.
 * So a crash found by the fuzzer, once kept as a fixture, is a regression test.
 *
 * Inputs that are files on disk (safetensors, HDF5, llama2.c .bin) are written
 * to a private scratch directory, made once per process and removed at exit.
 * Everything here is static: the harnesses are included into one test binary.
 */
#ifndef AUTOINTERP_FUZZ_COMMON_H
#define AUTOINTERP_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"

/* Abort with a message: a harness found an invariant broken (libFuzzer and the
 * regression test both report the abort as a crash). */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz invariant broken at %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char fuzz_dir_buf[512];

__attribute__((unused)) static void fuzz_cleanup_dir(void) {
    if (!fuzz_dir_buf[0]) return;
    static const char *const names[] = {"input.bin",
                                        "input.st",
                                        "input.h5",
                                        "input.jsonl",
                                        "tok.bin",
                                        "gpt2/encoder.json",
                                        "gpt2/vocab.bpe",
                                        "gpt2",
                                        "gpt2m/config.json",
                                        "gpt2m/model.safetensors",
                                        "gpt2m",
                                        NULL};
    char p[600];
    for (int i = 0; names[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", fuzz_dir_buf, names[i]);
        if (remove(p) != 0 && unlink(p) != 0) { /* absent: fine */
        }
    }
    rmdir(fuzz_dir_buf);
}

/* The scratch directory ($TMPDIR or /tmp), created on first use. */
__attribute__((unused)) static const char *fuzz_dir(void) {
    if (fuzz_dir_buf[0]) return fuzz_dir_buf;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(fuzz_dir_buf, sizeof fuzz_dir_buf, "%s/autointerp-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_dir_buf)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_cleanup_dir);
    return fuzz_dir_buf;
}

/* "<scratch>/<name>" in a static buffer per call site's use (copied by callers
 * that need two at once). */
__attribute__((unused)) static const char *fuzz_path(const char *name) {
    static char p[600];
    snprintf(p, sizeof p, "%s/%s", fuzz_dir(), name);
    return p;
}

/* Write data to <scratch>/<name> (replacing it); returns the path. */
__attribute__((unused)) static const char *fuzz_write(const char *name, const void *data,
                                                      size_t n) {
    const char *p = fuzz_path(name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(p);
        abort();
    }
    return p;
}

/* A NUL-terminated copy of the input (text readers). */
__attribute__((unused)) static char *fuzz_cstr(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, data, n);
    s[n] = 0;
    return s;
}

/* A harness's verdict: success, or a failure that left a message. A failure
 * without a message is a bug in the reader (the user would see nothing). */
__attribute__((unused)) static int fuzz_outcome(int rc, const char *what) {
    if (rc == 0) return 0;
    FUZZ_CHECK(err_msg()[0] != 0, "%s failed without an error message", what);
    return -1;
}

#endif
