/* error.h: how library code reports failure.
 *
 * Every fallible library function returns a status (0 on success, -1 on failure)
 * or NULL, and on failure leaves one human-readable message in a thread-local
 * buffer. Callers that add context (the file being read, the config key being
 * checked) prepend it with err_prefix, so the message that finally reaches the
 * CLI reads outside-in: "configs/x.json: sae.ratio: must be a positive integer,
 * got -3". Library code never prints and never exits; only src/cli does.
 */
#ifndef AUTOINTERP_UTIL_ERROR_H
#define AUTOINTERP_UTIL_ERROR_H

#include <stddef.h>

#define ERR_MSG_MAX 1024

/* Replace the current message; always returns -1 so a failure path can be
 * written as `return err_set("...")`. */
int err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Like err_set, appending ": strerror(errno)" for the errno at the call. */
int err_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prepend context to the current message: err_prefix("%s", path) turns
 * "bad magic" into "x.bin: bad magic". Returns -1. */
int err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The current message ("" when none). Valid until the next err_* call. */
const char *err_msg(void);

void err_clear(void);

/* Allocation helpers that record "out of memory" with the size on failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
