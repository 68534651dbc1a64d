/* llama2c_tok.c: the tokenizer of Karpathy's llama2.c (tok512.bin, tokenizer.bin).
 *
 * File (little-endian, as llama2.c writes it): int32 max_token_length, then per
 * token until the end of the file: float32 score, int32 length, that many bytes.
 * The vocabulary size is not stored; it is whatever the file holds. Ids 0, 1, 2
 * are <unk>, <s> (BOS), </s> (EOS); ids 3..258 must be the byte tokens "<0x00>"
 * .. "<0xFF>" (checked: the encoder's byte fallback relies on them). Loading
 * rejects a short header, a truncated token, a negative length or one above
 * max_token_length, a max_token_length outside 1..65536 and a non-finite score,
 * naming the file, the token index and the byte offset; nothing is allocated
 * from a length before it is checked against the bytes actually present.
 *
 * Encoding is llama2.c's encode() without the BOS/EOS flags (callers add BOS):
 *   1. a single " " token first (the dummy prefix; only for non-empty text),
 *   2. one token per UTF-8 character (a lead byte plus up to three following
 *      continuation bytes, exactly as llama2.c groups them, valid or not) when
 *      the vocabulary has that string, else one byte token (id byte + 3) per byte,
 *   3. repeatedly merge the adjacent pair whose concatenated string is a token
 *      with the highest score (leftmost on ties; scores <= -1e10 never merge).
 * Strings are compared as llama2.c compares them, so a byte token takes part in
 * merges as its literal text "<0x41>". llama2.c rescans every pair after each
 * merge (quadratic); here a max-heap of candidate pairs ordered by (score,
 * position) with lazy invalidation gives the same merges in O(n log n), and the
 * candidates are looked up by id pair in a table made at load time by splitting
 * every token's string. Two more speed-ups leave the result unchanged: the
 * initial tokens are cut where no merge can ever join them (no token contains
 * the two bytes that meet there, e.g. a letter followed by a space in
 * stories260K's vocabulary), and each part's result is cached by its initial
 * ids, since words repeat (the cache outlives the call; see tok_shared_cache). Differences from
 * llama2.c, all outside what a text file meets: the text is (bytes, length), so a NUL byte is
 * encoded (byte token 3) instead of ending the text; if " " is not in the vocabulary the prefix is
 * its byte token (llama2.c would emit id -1); duplicate strings in the vocabulary resolve to the
 * lowest id.
 *
 * Decoding follows llama2.c's decode(): byte tokens give their byte, a piece
 * right after BOS loses one leading space (so decode([BOS] + encode(x)) == x),
 * and BOS/EOS themselves give nothing (they mark documents, not text; their
 * strings are "\n<s>\n" and "\n</s>\n" and tokenizer_token_bytes still returns
 * them). <unk> decodes to its string "<unk>".
 */
#include <math.h>
#include <stdlib.h>

#include "io/atomic.h"
#include "tok/tokenizer_internal.h"
#include "util/error.h"

#define LLAMA_MAX_FILE_BYTES ((size_t)256 << 20)
#define LLAMA_MAX_TOKEN_LENGTH 65536
#define LLAMA_BOS 1
#define LLAMA_EOS 2
#define LLAMA_BYTE0 3
#define LLAMA_MIN_VOCAB (LLAMA_BYTE0 + 256)
#define NO_MERGE_SCORE (-1e10f)

struct llama2c_tok {
    struct tok_vocab vocab; /* strings as in the file (byte tokens as "<0xNN>") */
    float *scores;
    int max_token_length;
    int32_t prefix_id;              /* the dummy-prefix token " " */
    int32_t *canon;                 /* lowest id with the same string */
    struct tok_pairmap pairs;       /* (a, b) -> the token spelled str(a) str(b) */
    struct tok_shared_cache *cache; /* a part's initial ids -> its ids, across calls */
    uint8_t bigram[65536 / 8];      /* bit x*256+y: some token has the bytes x y in a row */
    char byte_values[256];
};

/* ---- loading ---- */

/* Walks the token records; counts them and, when t is given, stores them. */
static int scan_tokens(const char *path, const unsigned char *d, size_t n, int max_len,
                       struct llama2c_tok *t, int *count) {
    size_t p = 4;
    int i = 0;
    while (p < n) {
        if (n - p < 8)
            return err_set("%s: token %d: truncated at byte %zu: needs a 4-byte score and a "
                           "4-byte length, %zu bytes left",
                           path, i, p, n - p);
        float score;
        int32_t len;
        memcpy(&score, d + p, 4);
        memcpy(&len, d + p + 4, 4);
        if (!isfinite(score))
            return err_set("%s: token %d (byte %zu): score is not a finite number", path, i, p);
        if (len < 0) return err_set("%s: token %d (byte %zu): negative length %d", path, i, p, len);
        if (len > max_len)
            return err_set("%s: token %d (byte %zu): length %d exceeds max_token_length %d", path,
                           i, p, len, max_len);
        if ((size_t)len > n - p - 8)
            return err_set("%s: token %d (byte %zu): truncated: needs %d bytes of text, %zu left",
                           path, i, p, len, n - p - 8);
        if (t) {
            if (tok_vocab_set(&t->vocab, i, d + p + 8, (size_t)len) != 0)
                return err_prefix("%s: token %d", path, i);
            t->scores[i] = score;
        }
        p += 8 + (size_t)len;
        i++;
    }
    *count = i;
    return 0;
}

static int check_byte_tokens(const char *path, struct llama2c_tok *t) {
    for (int b = 0; b < 256; b++) {
        char want[8];
        snprintf(want, sizeof want, "<0x%02X>", b);
        size_t len;
        const char *got = tok_vocab_bytes(&t->vocab, LLAMA_BYTE0 + b, &len);
        if (len != 6 || memcmp(got, want, 6) != 0)
            return err_set("%s: token %d: expected the byte token %s, got \"%.*s\"", path,
                           LLAMA_BYTE0 + b, want, (int)(len > 40 ? 40 : len), got);
        t->byte_values[b] = (char)b;
    }
    return 0;
}

/* Every pair of tokens whose concatenation is a token, found by splitting each
 * token's string at every point: the merge candidates, looked up by id pair
 * instead of building and hashing strings while encoding. */
static int build_pairs(struct llama2c_tok *t) {
    const struct tok_vocab *v = &t->vocab;
    t->canon = xmalloc((size_t)v->n * sizeof *t->canon);
    if (!t->canon) return -1;
    for (int32_t id = 0; id < v->n; id++) {
        size_t len;
        const char *s = tok_vocab_bytes(v, id, &len);
        t->canon[id] = tok_vocab_find(v, s, len);
    }
    for (int32_t id = 0; id < v->n; id++) {
        size_t len;
        const char *s = tok_vocab_bytes(v, id, &len);
        if (t->canon[id] != id) continue;
        for (size_t k = 1; k < len; k++) {
            int32_t a = tok_vocab_find(v, s, k), b = tok_vocab_find(v, s + k, len - k);
            if (a >= 0 && b >= 0 && tok_pairmap_put(&t->pairs, a, b, 0, id) != 0) return -1;
        }
    }
    if (!t->pairs.slots && tok_pairmap_put(&t->pairs, -1, -1, 0, -1) != 0) return -1;
    for (int32_t id = 0; id < v->n; id++) {
        size_t len;
        const unsigned char *s = (const unsigned char *)tok_vocab_bytes(v, id, &len);
        for (size_t k = 0; k + 1 < len; k++) {
            unsigned bit = (unsigned)s[k] << 8 | s[k + 1];
            t->bigram[bit >> 3] |= (uint8_t)(1u << (bit & 7));
        }
    }
    return 0;
}

static int parse_file(struct llama2c_tok *t, const char *path, const unsigned char *d, size_t n) {
    if (n < 4)
        return err_set("%s: truncated: %zu bytes, expected at least the 4-byte max_token_length",
                       path, n);
    int32_t max_len;
    memcpy(&max_len, d, 4);
    if (max_len < 1 || max_len > LLAMA_MAX_TOKEN_LENGTH)
        return err_set("%s: max_token_length %d is not in 1..%d (not a llama2.c tokenizer?)", path,
                       max_len, LLAMA_MAX_TOKEN_LENGTH);
    t->max_token_length = max_len;
    int count;
    if (scan_tokens(path, d, n, max_len, NULL, &count) != 0) return -1;
    if (count < LLAMA_MIN_VOCAB)
        return err_set("%s: %d tokens; a llama2.c vocabulary has at least %d (<unk>, <s>, </s>, "
                       "256 byte tokens)",
                       path, count, LLAMA_MIN_VOCAB);
    if (tok_vocab_init(&t->vocab, count) != 0) return -1;
    t->scores = xmalloc((size_t)count * sizeof *t->scores);
    if (!t->scores || scan_tokens(path, d, n, max_len, t, &count) != 0) return -1;
    if (tok_vocab_index(&t->vocab) != 0) return err_prefix("%s", path);
    if (check_byte_tokens(path, t) != 0) return -1;
    t->prefix_id = tok_vocab_find(&t->vocab, " ", 1);
    if (t->prefix_id < 0) t->prefix_id = LLAMA_BYTE0 + ' ';
    if (!(t->cache = tok_shared_cache_new())) return -1;
    return build_pairs(t);
}

struct llama2c_tok *llama2c_tok_load(const char *path) {
    size_t n;
    char *data = read_file_all(path, LLAMA_MAX_FILE_BYTES, &n);
    if (!data) return NULL;
    struct llama2c_tok *t = xcalloc(1, sizeof *t);
    if (t && parse_file(t, path, (const unsigned char *)data, n) != 0) {
        llama2c_tok_free(t);
        t = NULL;
    }
    free(data);
    return t;
}

void llama2c_tok_free(struct llama2c_tok *t) {
    if (!t) return;
    tok_vocab_free(&t->vocab);
    tok_pairmap_free(&t->pairs);
    tok_shared_cache_free(t->cache);
    free(t->canon);
    free(t->scores);
    free(t);
}

int llama2c_tok_vocab_size(const struct llama2c_tok *t) {
    return t->vocab.n;
}

/* ---- encoding ---- */

struct cand {
    float score;
    uint32_t left, right;
    int32_t left_id, right_id, merged;
};

/* A token sequence as a doubly linked list over the initial positions (a merge
 * keeps the left position), plus the heap of mergeable adjacent pairs. */
struct merger {
    const struct llama2c_tok *t;
    int32_t *id;
    uint32_t *prev, *next; /* NONE at the ends */
    uint8_t *alive;
    struct cand *heap;
    size_t heap_n, heap_cap;
    int32_t *key, *out; /* a segment's initial ids and its result */
    size_t key_cap, out_cap;
    struct tok_wcache *cache, local_cache;
};
#define NONE UINT32_MAX

static int cand_before(const struct cand *a, const struct cand *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(struct merger *m, struct cand c) {
    if (m->heap_n == m->heap_cap) {
        size_t cap = m->heap_cap ? 2 * m->heap_cap : 1024;
        struct cand *h = xrealloc(m->heap, cap * sizeof *h);
        if (!h) return -1;
        m->heap = h;
        m->heap_cap = cap;
    }
    size_t i = m->heap_n++;
    while (i > 0 && cand_before(&c, &m->heap[(i - 1) / 2])) {
        m->heap[i] = m->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    m->heap[i] = c;
    return 0;
}

static struct cand heap_pop(struct merger *m) {
    struct cand top = m->heap[0], last = m->heap[--m->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m->heap_n) break;
        if (c + 1 < m->heap_n && cand_before(&m->heap[c + 1], &m->heap[c])) c++;
        if (!cand_before(&m->heap[c], &last)) break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (m->heap_n) m->heap[i] = last;
    return top;
}

/* Queue the pair (i, j) if its concatenation is a token that may merge. */
static int consider_pair(struct merger *m, uint32_t i, uint32_t j) {
    const struct llama2c_tok *t = m->t;
    const struct tok_pair_slot *p =
        tok_pairmap_get(&t->pairs, t->canon[m->id[i]], t->canon[m->id[j]]);
    if (!p || !(t->scores[p->merged] > NO_MERGE_SCORE)) return 0;
    return heap_push(m, (struct cand){t->scores[p->merged], i, j, m->id[i], m->id[j], p->merged});
}

/* Initial tokens: the dummy prefix, then characters or their bytes. */
static size_t initial_tokens(const struct llama2c_tok *t, const unsigned char *s, size_t len,
                             int32_t *id) {
    size_t k = 0;
    id[k++] = t->prefix_id;
    for (size_t i = 0; i < len;) {
        size_t j = i + 1;
        while (j < len && (s[j] & 0xC0) == 0x80 && j - i < 4)
            j++;
        int32_t tok = tok_vocab_find(&t->vocab, s + i, j - i);
        if (tok >= 0)
            id[k++] = tok;
        else
            for (size_t b = i; b < j; b++)
                id[k++] = LLAMA_BYTE0 + s[b];
        i = j;
    }
    return k;
}

/* Runs the merges on positions [s, e) as one list. */
static int merge_range(struct merger *m, uint32_t s, uint32_t e) {
    for (uint32_t i = s; i < e; i++) {
        m->prev[i] = i == s ? NONE : i - 1;
        m->next[i] = i + 1 == e ? NONE : i + 1;
        m->alive[i] = 1;
    }
    for (uint32_t i = s; i + 1 < e; i++)
        if (consider_pair(m, i, i + 1) != 0) return -1;
    while (m->heap_n) {
        struct cand c = heap_pop(m);
        if (!m->alive[c.left] || m->next[c.left] != c.right || m->id[c.left] != c.left_id ||
            m->id[c.right] != c.right_id)
            continue; /* stale: one side has merged since */
        m->id[c.left] = c.merged;
        m->alive[c.right] = 0;
        m->next[c.left] = m->next[c.right];
        if (m->next[c.left] != NONE) m->prev[m->next[c.left]] = c.left;
        if (m->prev[c.left] != NONE && consider_pair(m, m->prev[c.left], c.left) != 0) return -1;
        if (m->next[c.left] != NONE && consider_pair(m, c.left, m->next[c.left]) != 0) return -1;
    }
    return 0;
}

/* No merge can ever join a token ending in token a's last byte to one starting
 * with token b's first byte when no token has those two bytes in a row: the
 * text splits there into parts that merge independently (and repeat, so their
 * results are cached). This changes nothing in the result, only the speed. */
static int hard_boundary(const struct llama2c_tok *t, int32_t a, int32_t b) {
    size_t la, lb;
    const unsigned char *sa = (const unsigned char *)tok_vocab_bytes(&t->vocab, a, &la);
    const unsigned char *sb = (const unsigned char *)tok_vocab_bytes(&t->vocab, b, &lb);
    if (la == 0 || lb == 0) return 0;
    unsigned bit = (unsigned)sa[la - 1] << 8 | sb[0];
    return !(t->bigram[bit >> 3] >> (bit & 7) & 1);
}

static int emit_ids(int32_t **ids, size_t *n, size_t *cap, const int32_t *v, size_t k) {
    if (tok_ids_reserve(ids, *n, cap, k) != 0) return -1;
    memcpy(*ids + *n, v, k * sizeof *v);
    *n += k;
    return 0;
}

/* Encodes the initial tokens [s, e) and appends the result. */
static int encode_segment(struct merger *m, uint32_t s, uint32_t e, int32_t **ids, size_t *n,
                          size_t *cap) {
    size_t len = e - s, key_bytes = len * sizeof *m->id;
    if (len == 1) return emit_ids(ids, n, cap, m->id + s, 1);
    uint64_t h = key_bytes <= TOK_WCACHE_MAX_KEY ? tok_hash_bytes(m->id + s, key_bytes) : 0;
    size_t n_hit;
    const int32_t *hit = tok_wcache_get(m->cache, h, m->id + s, key_bytes, &n_hit);
    if (hit) return emit_ids(ids, n, cap, hit, n_hit);
    if (tok_grow((void **)&m->key, &m->key_cap, len, sizeof *m->key) != 0 ||
        tok_grow((void **)&m->out, &m->out_cap, len, sizeof *m->out) != 0)
        return -1;
    memcpy(m->key, m->id + s, key_bytes);
    if (merge_range(m, s, e) != 0) return -1;
    size_t k = 0;
    for (uint32_t i = s; i != NONE; i = m->next[i])
        m->out[k++] = m->id[i];
    if (tok_wcache_put(m->cache, h, m->key, key_bytes, m->out, k) != 0) return -1;
    return emit_ids(ids, n, cap, m->out, k);
}

int llama2c_tok_encode(const struct llama2c_tok *t, const char *text, size_t len, int32_t **ids,
                       size_t *n, size_t *cap) {
    if (len == 0) return 0;
    if (len >= NONE - 1) return err_set("llama2.c tokenizer: text of %zu bytes is too long", len);
    struct merger m = {.t = t};
    m.cache = tok_cache_acquire(t->cache, &m.local_cache);
    size_t slots = len + 1;
    m.id = xmalloc(slots * sizeof *m.id);
    m.prev = xmalloc(slots * sizeof *m.prev);
    m.next = xmalloc(slots * sizeof *m.next);
    m.alive = xmalloc(slots);
    int rc = -1;
    if (m.id && m.prev && m.next && m.alive) {
        uint32_t k = (uint32_t)initial_tokens(t, (const unsigned char *)text, len, m.id);
        uint32_t start = 0;
        rc = 0;
        for (uint32_t i = 1; i <= k && rc == 0; i++) {
            if (i < k && !hard_boundary(t, m.id[i - 1], m.id[i])) continue;
            rc = encode_segment(&m, start, i, ids, n, cap);
            start = i;
        }
    }
    free(m.id);
    free(m.prev);
    free(m.next);
    free(m.alive);
    free(m.heap);
    free(m.key);
    free(m.out);
    tok_cache_release(t->cache, m.cache);
    return rc;
}

/* ---- decoding ---- */

const char *llama2c_tok_token_bytes(const struct llama2c_tok *t, int32_t id, size_t *len) {
    *len = 0;
    if (id < 0 || id >= t->vocab.n) return NULL;
    if (id >= LLAMA_BYTE0 && id < LLAMA_BYTE0 + 256) {
        *len = 1;
        return &t->byte_values[id - LLAMA_BYTE0];
    }
    return tok_vocab_bytes(&t->vocab, id, len);
}

/* The bytes token ids[i] contributes to a decoded text (see the file comment). */
static const char *decoded_piece(const struct llama2c_tok *t, const int32_t *ids, size_t i,
                                 size_t *len) {
    *len = 0;
    if (ids[i] == LLAMA_BOS || ids[i] == LLAMA_EOS) return "";
    const char *p = llama2c_tok_token_bytes(t, ids[i], len);
    int is_byte = ids[i] >= LLAMA_BYTE0 && ids[i] < LLAMA_BYTE0 + 256;
    if (i > 0 && ids[i - 1] == LLAMA_BOS && !is_byte && *len > 0 && p[0] == ' ') {
        p++;
        (*len)--;
    }
    return p;
}

char *llama2c_tok_decode(const struct llama2c_tok *t, const int32_t *ids, size_t n,
                         size_t *out_len) {
    size_t total = 0, len;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab.n) {
            err_set("token %d at position %zu is outside the vocabulary 0..%d", ids[i], i,
                    t->vocab.n - 1);
            return NULL;
        }
        decoded_piece(t, ids, i, &len);
        total += len;
    }
    char *out = xmalloc(total + 1);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = decoded_piece(t, ids, i, &len);
        memcpy(out + k, p, len);
        k += len;
    }
    out[k] = 0;
    *out_len = k;
    return out;
}
