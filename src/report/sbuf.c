/* sbuf.c: growable text buffer and escapers (see sbuf.h). */
#include "report/sbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "util/error.h"

void sbuf_init(struct sbuf *b) {
    memset(b, 0, sizeof *b);
}

void sbuf_free(struct sbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

static bool reserve(struct sbuf *b, size_t extra) {
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->oom = true;
        return false;
    }
    b->s = s;
    b->cap = cap;
    return true;
}

void sbuf_addn(struct sbuf *b, const char *s, size_t n) {
    if (!reserve(b, n)) return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void sbuf_add(struct sbuf *b, const char *s) {
    sbuf_addn(b, s, strlen(s));
}
void sbuf_addc(struct sbuf *b, char c) {
    sbuf_addn(b, &c, 1);
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        sbuf_addn(b, small, (size_t)n);
        return;
    }
    if (!reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int sbuf_ok(const struct sbuf *b) {
    return b->oom ? err_set("out of memory building a report file") : 0;
}

const char *sbuf_str(const struct sbuf *b) {
    return b->s ? b->s : "";
}

int sbuf_write_file(const struct sbuf *b, const char *path) {
    if (sbuf_ok(b) != 0) return err_prefix("%s", path);
    return atomic_write_file(path, sbuf_str(b), b->len);
}

/* Length of the valid UTF-8 character at s (1..4), or 0 when the bytes there
 * are not one (overlong, surrogate, out of range, truncated). */
static int utf8_len(const unsigned char *s) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned min, cp;
    if ((c & 0xE0) == 0xC0)
        n = 2, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
        n = 3, min = 0x800, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
        n = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    if (cp == 0xFFFE || cp == 0xFFFF) return 0; /* not XML characters */
    return n;
}

#define REPLACEMENT "\xEF\xBF\xBD"

void sbuf_xml(struct sbuf *b, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        switch (c) {
        case '&':
            sbuf_add(b, "&amp;");
            p++;
            continue;
        case '<':
            sbuf_add(b, "&lt;");
            p++;
            continue;
        case '>':
            sbuf_add(b, "&gt;");
            p++;
            continue;
        case '"':
            sbuf_add(b, "&quot;");
            p++;
            continue;
        case '\'':
            sbuf_add(b, "&#39;");
            p++;
            continue;
        default:
            break;
        }
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            sbuf_add(b, REPLACEMENT);
            p++;
            continue;
        }
        int n = utf8_len(p);
        if (n == 0) {
            sbuf_add(b, REPLACEMENT);
            p++;
        } else {
            sbuf_addn(b, (const char *)p, (size_t)n);
            p += n;
        }
    }
}

void sbuf_csv(struct sbuf *b, const char *s) {
    sbuf_addc(b, '"');
    for (; *s; s++) {
        if (*s == '"') sbuf_addc(b, '"');
        sbuf_addc(b, *s);
    }
    sbuf_addc(b, '"');
}

void sbuf_md(struct sbuf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '|':
        case '\\':
        case '`':
        case '*':
        case '_':
        case '[':
        case ']':
            sbuf_addc(b, '\\');
            sbuf_addc(b, *s);
            break;
        case '<':
            sbuf_add(b, "&lt;");
            break;
        case '>':
            sbuf_add(b, "&gt;");
            break;
        case '&':
            sbuf_add(b, "&amp;");
            break;
        case '\n':
        case '\r':
            sbuf_addc(b, ' ');
            break;
        default:
            sbuf_addc(b, *s);
        }
    }
}

void sbuf_json_str(struct sbuf *b, const char *s) {
    sbuf_addc(b, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            sbuf_addc(b, '\\');
            sbuf_addc(b, (char)c);
        } else if (c == '\n')
            sbuf_add(b, "\\n");
        else if (c == '\t')
            sbuf_add(b, "\\t");
        else if (c == '\r')
            sbuf_add(b, "\\r");
        else if (c < 0x20 || c == '<' || c == '>' || c == '&')
            sbuf_printf(b, "\\u%04x", c);
        else {
            int n = utf8_len(p);
            if (n == 0) {
                sbuf_add(b, "\\ufffd");
                p++;
                continue;
            }
            sbuf_addn(b, (const char *)p, (size_t)n);
            p += n;
            continue;
        }
        p++;
    }
    sbuf_addc(b, '"');
}

void sbuf_num(struct sbuf *b, double v, int digits) {
    if (!isfinite(v))
        sbuf_add(b, "n/a");
    else
        sbuf_printf(b, "%.*f", digits, v);
}
