/* render.c: token bytes to display strings and back (rules in render.h).
 *
 * render_bytes walks the bytes once: ASCII is decided per byte, a lead byte
 * >= 0x80 starts a UTF-8 character that is shown as is only when it is
 * complete and valid inside this token (the tokenizer may have cut it: the
 * rest lives in the next token, and each half is shown as raw bytes). The
 * output grows in a small buffer; no token renders to more than 6x its bytes.
 */
#include "interp/render.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

struct buf {
    char *p;
    size_t n, cap;
};

static int put(struct buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = xrealloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static int put_byte_marker(struct buf *b, unsigned char c) {
    char m[8];
    snprintf(m, sizeof m, "<0x%02X>", c);
    return put(b, m, 6);
}

/* Length of the valid UTF-8 character at s (n bytes available) and its code
 * point, or 0 when the bytes there are not one complete valid character. */
static int utf8_char(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    int len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;      /* no overlong forms */
        else if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F; /* <= U+10FFFF */
    } else
        return 0;
    if ((size_t)len > n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    uint32_t v = c & (0xFF >> (len + 1));
    for (int i = 1; i < len; i++) v = (v << 6) | (s[i] & 0x3F);
    *cp = v;
    return len;
}

static int invisible(uint32_t cp) {
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0xA0 || cp == 0xAD || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
           (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF;
}

static int is_marker_glyph(uint32_t cp) { return cp == 0x2423 || cp == 0x21B5 || cp == 0x21E5; }

static int render_ascii(struct buf *b, const unsigned char *s, size_t i, size_t n) {
    unsigned char c = s[i];
    if (c == ' ') return put(b, RENDER_SPACE, 3);
    if (c == '\n') return put(b, RENDER_NEWLINE, 3);
    if (c == '\t') return put(b, RENDER_TAB, 3);
    if (c < 0x20 || c == 0x7F) return put_byte_marker(b, c);
    if (c == '<' && n - i - 1 >= 2) {
        const char *rest = (const char *)s + i + 1;
        if (memcmp(rest, "0x", 2) == 0 || memcmp(rest, "U+", 2) == 0) return put_byte_marker(b, c);
    }
    return put(b, (const char *)&s[i], 1);
}

char *render_bytes(const char *bytes, size_t n) {
    const unsigned char *s = (const unsigned char *)bytes;
    struct buf b = {0};
    if (put(&b, "", 0) != 0) return NULL;
    size_t i = 0;
    while (i < n) {
        int rc;
        if (s[i] < 0x80) {
            rc = render_ascii(&b, s, i, n);
            i++;
        } else {
            uint32_t cp = 0;
            int len = utf8_char(s + i, n - i, &cp);
            if (len == 0) {
                rc = put_byte_marker(&b, s[i]);
                i++;
            } else {
                if (is_marker_glyph(cp)) {
                    rc = 0;
                    for (int k = 0; k < len && rc == 0; k++) rc = put_byte_marker(&b, s[i + k]);
                } else if (invisible(cp)) {
                    char m[16];
                    int m_len = snprintf(m, sizeof m, "<U+%04X>", (unsigned)cp);
                    rc = put(&b, m, (size_t)m_len);
                } else {
                    rc = put(&b, (const char *)s + i, (size_t)len);
                }
                i += (size_t)len;
            }
        }
        if (rc != 0) {
            free(b.p);
            return NULL;
        }
    }
    return b.p;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int put_utf8(struct buf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return put(b, u, n);
}

/* A marker at d ("<0xNN>" or "<U+X..X>"): its length, with the byte or code
 * point decoded into b; 0 when d does not start a marker. */
static size_t decode_marker(struct buf *b, const char *d, int *rc) {
    *rc = 0;
    if (d[0] != '<') return 0;
    if (d[1] == '0' && d[2] == 'x') {
        int h = hexval(d[3]), l = h < 0 ? -1 : hexval(d[4]);
        if (h < 0 || l < 0 || d[5] != '>') {
            *rc = err_set("render: malformed byte marker at \"%.8s\"", d);
            return 0;
        }
        char c = (char)(h * 16 + l);
        *rc = put(b, &c, 1);
        return 6;
    }
    if (d[1] == 'U' && d[2] == '+') {
        uint32_t cp = 0;
        size_t k = 3;
        while (k < 9 && hexval(d[k]) >= 0) cp = cp * 16 + (uint32_t)hexval(d[k++]);
        if (k < 7 || d[k] != '>' || cp > 0x10FFFF) {
            *rc = err_set("render: malformed code point marker at \"%.12s\"", d);
            return 0;
        }
        *rc = put_utf8(b, cp);
        return k + 1;
    }
    return 0;
}

int render_decode(const char *display, char **bytes, size_t *n_out) {
    struct buf b = {0};
    int rc = put(&b, "", 0);
    const char *d = display;
    while (rc == 0 && *d) {
        if (strncmp(d, RENDER_SPACE, 3) == 0) {
            rc = put(&b, " ", 1);
            d += 3;
        } else if (strncmp(d, RENDER_NEWLINE, 3) == 0) {
            rc = put(&b, "\n", 1);
            d += 3;
        } else if (strncmp(d, RENDER_TAB, 3) == 0) {
            rc = put(&b, "\t", 1);
            d += 3;
        } else {
            size_t used = decode_marker(&b, d, &rc);
            if (rc == 0 && used == 0) {
                rc = put(&b, d, 1);
                used = 1;
            }
            d += used;
        }
    }
    if (rc != 0) {
        free(b.p);
        return -1;
    }
    *bytes = b.p;
    *n_out = b.n;
    return 0;
}

/* ---- vocabularies ---- */

static const char *const special_names[] = {"<|endoftext|>", "<s>", "</s>", "<unk>"};

/* An ordinary token must not read as a special one: escape its first "<". */
static char *unclash(char *text) {
    for (size_t i = 0; i < sizeof special_names / sizeof *special_names; i++) {
        if (strcmp(text, special_names[i]) != 0) continue;
        char *out = xmalloc(strlen(text) + 6);
        if (out) sprintf(out, "<0x3C>%s", text + 1);
        free(text);
        return out;
    }
    return text;
}

static struct render_vocab *vocab_alloc(int n) {
    struct render_vocab *v = xcalloc(1, sizeof *v);
    if (!v) return NULL;
    v->n = n;
    v->text = xcalloc((size_t)(n > 0 ? n : 1), sizeof *v->text);
    v->special = xcalloc((size_t)(n > 0 ? n : 1), 1);
    if (!v->text || !v->special) {
        render_vocab_free(v);
        return NULL;
    }
    return v;
}

static int set_token(struct render_vocab *v, int id, const char *bytes, size_t len,
                     const char *name) {
    if (name) {
        v->special[id] = 1;
        v->text[id] = xstrdup(name);
    } else {
        v->text[id] = render_bytes(bytes, len);
        if (v->text[id]) v->text[id] = unclash(v->text[id]);
    }
    return v->text[id] ? 0 : -1;
}

struct render_vocab *render_vocab_from_bytes(const char *const *bytes, const size_t *lens, int n,
                                             const char *const *names) {
    if (n < 0) {
        err_set("render: vocabulary size %d is negative", n);
        return NULL;
    }
    struct render_vocab *v = vocab_alloc(n);
    if (!v) return NULL;
    for (int i = 0; i < n; i++) {
        const char *name = names ? names[i] : NULL;
        if (!name && !bytes[i]) {
            err_set("render: token %d has neither bytes nor a name", i);
            render_vocab_free(v);
            return NULL;
        }
        if (set_token(v, i, bytes[i], lens[i], name) != 0) {
            render_vocab_free(v);
            return NULL;
        }
    }
    return v;
}

struct render_vocab *render_vocab_from_tokenizer(const struct tokenizer *tok) {
    int n = tokenizer_vocab_size(tok);
    struct render_vocab *v = vocab_alloc(n);
    if (!v) return NULL;
    int eot = tokenizer_eot_id(tok), bos = tokenizer_bos_id(tok);
    int llama = tokenizer_kind(tok) == TOKENIZER_LLAMA2C;
    for (int i = 0; i < n; i++) {
        const char *name = NULL;
        if (llama && i == 0) name = "<unk>";
        else if (llama && i == bos) name = "<s>";
        else if (llama && i == eot) name = "</s>";
        else if (!llama && (i == eot || i == bos)) name = "<|endoftext|>";
        size_t len = 0;
        const char *b = tokenizer_token_bytes(tok, i, &len);
        if (!b && !name) {
            err_set("render: %s tokenizer has no bytes for token %d", tokenizer_name(tok), i);
            render_vocab_free(v);
            return NULL;
        }
        if (set_token(v, i, b, len, name) != 0) {
            render_vocab_free(v);
            return NULL;
        }
    }
    return v;
}

void render_vocab_free(struct render_vocab *v) {
    if (!v) return;
    for (int i = 0; v->text && i < v->n; i++) free(v->text[i]);
    free(v->text);
    free(v->special);
    free(v);
}

const char *render_token(const struct render_vocab *v, int32_t id) {
    if (id < 0 || id >= v->n) {
        err_set("render: token id %d is outside the vocabulary (0..%d)", id, v->n - 1);
        return NULL;
    }
    return v->text[id];
}
