/* error.c: the thread-local error message behind error.h. */
#include "util/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char err_buf[ERR_MSG_MAX];

/* err_buf = a + ": " + b, cut to fit (a long message loses its tail, not its head). */
static void join_into_buf(const char *a, const char *b) {
    char out[ERR_MSG_MAX];
    size_t n = 0;
    for (const char *parts[] = {a, ": ", b}, **p = parts; p < parts + 3; p++)
        for (const char *c = *p; *c && n + 1 < sizeof out; c++) out[n++] = *c;
    out[n] = 0;
    memcpy(err_buf, out, n + 1);
}

int err_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int err_errno(const char *fmt, ...) {
    int saved = errno;
    char head[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    join_into_buf(head, strerror(saved));
    return -1;
}

int err_prefix(const char *fmt, ...) {
    char head[ERR_MSG_MAX];
    char old[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    if (old[0])
        join_into_buf(head, old);
    else
        snprintf(err_buf, sizeof err_buf, "%s", head);
    return -1;
}

const char *err_msg(void) { return err_buf; }

void err_clear(void) { err_buf[0] = 0; }

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) err_set("out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) err_set("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) err_set("out of memory reallocating to %zu bytes", n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    if (p) memcpy(p, s, n);
    return p;
}
