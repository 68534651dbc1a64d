/* sbuf.h: a growable text buffer, and the escaping rules of every text format
 * the report writes (Markdown, CSV, XML/SVG/HTML, JSON strings).
 *
 * Why: the report assembles several files (tables, SVG plots, HTML pages) in
 * memory and writes each with one atomic_write_file, so a half-written report
 * file never exists. Appends never fail visibly at the call site: an allocation
 * failure latches `oom`, later appends are ignored, and sbuf_ok() reports it
 * once, where the file would be written (so builders stay short).
 *
 * Escaping is where dataset and LLM text (explanations, windows, replies) meets
 * a markup language, so each rule is here, in one place:
 *   xml   & < > " '  -> entities; bytes 0x00-0x08, 0x0B, 0x0C, 0x0E-0x1F (not
 *         allowed in XML 1.0) -> U+FFFD; invalid UTF-8 -> U+FFFD per byte.
 *   csv   a field is always quoted, " doubled (RFC 4180).
 *   md    a table cell: | \ ` * _ [ ] < > escaped with a backslash or entity,
 *         newlines become spaces.
 *   json  RFC 8259 string body; additionally < > & as \u003c \u003e \u0026 so a
 *         JSON blob inside an HTML <script> element can never close it.
 */
#ifndef AUTOINTERP_REPORT_SBUF_H
#define AUTOINTERP_REPORT_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct sbuf {
    char *s; /* NUL-terminated (when len > 0 or after any append) */
    size_t len, cap;
    bool oom;
};

void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_add(struct sbuf *b, const char *s);
void sbuf_addn(struct sbuf *b, const char *s, size_t n);
void sbuf_addc(struct sbuf *b, char c);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 0, or -1 with err_set (out of memory) when any append failed. */
int sbuf_ok(const struct sbuf *b);
/* The text ("" when empty); valid until the next append. */
const char *sbuf_str(const struct sbuf *b);
/* Write the buffer to path atomically; errors name the path. */
int sbuf_write_file(const struct sbuf *b, const char *path);

void sbuf_xml(struct sbuf *b, const char *s);      /* also HTML text and attributes */
void sbuf_csv(struct sbuf *b, const char *s);      /* quoted field */
void sbuf_md(struct sbuf *b, const char *s);       /* table cell */
void sbuf_json_str(struct sbuf *b, const char *s); /* with the quotes */

/* A number for a table: "%.*f" with `digits`, or "n/a" when not finite. */
void sbuf_num(struct sbuf *b, double v, int digits);

#endif
