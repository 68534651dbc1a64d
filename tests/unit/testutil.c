/* testutil.c: helpers for the cmocka tests (see testutil.h). */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *shared_path(const char *rel) {
    static char buf[4096];
    const char *root = getenv("AUTOINTERP_SHARED");
    if (!root) root = "../shared";
    snprintf(buf, sizeof buf, "%s/%s", root, rel);
    struct stat st;
    if (stat(buf, &st) != 0) return NULL;
    return buf;
}

char *test_tmpdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    if (!base) base = "/tmp";
    char *p = malloc(strlen(base) + strlen(tag) + 32);
    sprintf(p, "%s/autointerp-%s-XXXXXX", base, tag);
    if (!mkdtemp(p)) fail_msg("mkdtemp %s failed", p);
    return p;
}

void test_rmtree(const char *dir) {
    if (!dir || !*dir || strcmp(dir, "/") == 0) return;
    char *cmd = malloc(strlen(dir) + 16);
    sprintf(cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    free(cmd);
}

char *path_join(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

int run_capture(const char *cmd, char **output) {
    char *full = malloc(strlen(cmd) + 16);
    sprintf(full, "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    free(full);
    if (!p) return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (cap - n < 2) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int st = pclose(p);
    if (output)
        *output = buf;
    else
        free(buf);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int have_python_modules(const char *modules) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import %s' >/dev/null 2>&1", modules);
    for (char *c = cmd + strlen("/usr/bin/python3 -c 'import "); *c && *c != '\''; c++)
        if (*c == ' ') *c = ',';
    return system(cmd) == 0;
}

const char *autointerp_bin(void) {
    const char *b = getenv("AUTOINTERP_BIN");
    return b ? b : "bin/autointerp";
}
