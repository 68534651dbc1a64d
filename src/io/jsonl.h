/* jsonl.h: one JSON object per line, appended durably, read tolerantly.
 *
 * Stages record per-feature results as JSONL so that a killed run keeps every
 * line it finished. jsonl_append writes one whole line with a single write() on an
 * O_APPEND descriptor and fsyncs; if the file ends in a torn line (a crash
 * mid-write), the torn tail is cut off first so the new line starts cleanly.
 * jsonl_read reports and skips a torn last line (no trailing newline or invalid
 * JSON at the very end) and fails on a corrupt line anywhere else, naming the line.
 */
#ifndef AUTOINTERP_IO_JSONL_H
#define AUTOINTERP_IO_JSONL_H

#include <cjson/cJSON.h>

int jsonl_append(const char *path, const cJSON *obj);

/* Called for each object in order; return non-zero to stop (jsonl_read returns it). */
typedef int (*jsonl_fn)(const cJSON *obj, int line_no, void *ctx);

/* Missing file is not an error when missing_ok (zero lines). *n_torn (may be NULL)
 * gets 1 when a torn last line was skipped. */
int jsonl_read(const char *path, int missing_ok, jsonl_fn fn, void *ctx, int *n_torn);

#endif
