/* tokenizer.c: the public tokenizer interface and what both implementations share.
 *
 * tokenizer_load looks at the path: a directory is a GPT-2 byte-level BPE
 * (gpt2_bpe.c), a regular file a llama2.c tokenizer (llama2c_tok.c). Every other
 * call dispatches on the kind. The shared pieces are the vocabulary store
 * (tok_vocab: token bytes plus a hash index from bytes to id), the map from an id
 * pair to its merge (tok_pairmap), the word cache (tok_wcache) that each
 * tokenizer keeps across calls (tok_shared_cache, taken by one call at a time;
 * a concurrent call uses a private one) and the growth of the caller's id vector.
 *
 * Ids are documented per kind:
 *   GPT-2:    eot = bos = the id of "<|endoftext|>" (50256; Hugging Face's config
 *             names it as both), -1 when the vocabulary lacks it.
 *   llama2.c: bos = 1 (<s>), eot = 2 (</s>).
 */
#include "tok/tokenizer.h"

#include <stdlib.h>
#include <sys/stat.h>

#include "tok/tokenizer_internal.h"
#include "util/error.h"

/* ---- vocabulary store ---- */

int tok_vocab_init(struct tok_vocab *v, int n) {
    memset(v, 0, sizeof *v);
    if (n <= 0) return err_set("vocabulary is empty");
    v->n = n;
    v->off = xcalloc((size_t)n, sizeof *v->off);
    v->len = xmalloc((size_t)n * sizeof *v->len);
    if (!v->off || !v->len) {
        tok_vocab_free(v);
        return -1;
    }
    memset(v->len, 0xFF, (size_t)n * sizeof *v->len);
    return 0;
}

int tok_vocab_set(struct tok_vocab *v, int id, const void *bytes, size_t len) {
    if (id < 0 || id >= v->n) return err_set("token id %d is outside 0..%d", id, v->n - 1);
    if (v->len[id] != UINT32_MAX) return err_set("token id %d appears twice", id);
    if (len > UINT32_MAX / 2) return err_set("token id %d is %zu bytes long", id, len);
    if (v->blob_n + len + 1 > v->blob_cap) {
        size_t cap = v->blob_cap ? v->blob_cap : 4096;
        while (cap < v->blob_n + len + 1)
            cap *= 2;
        char *b = xrealloc(v->blob, cap);
        if (!b) return -1;
        v->blob = b;
        v->blob_cap = cap;
    }
    if (v->blob_n > UINT32_MAX - len - 1) return err_set("vocabulary text exceeds 4 GiB");
    memcpy(v->blob + v->blob_n, bytes, len);
    v->blob[v->blob_n + len] = 0;
    v->off[id] = (uint32_t)v->blob_n;
    v->len[id] = (uint32_t)len;
    v->blob_n += len + 1;
    return 0;
}

int tok_vocab_index(struct tok_vocab *v) {
    for (int id = 0; id < v->n; id++)
        if (v->len[id] == UINT32_MAX)
            return err_set("ids must run 0..%d without gaps; id %d is missing", v->n - 1, id);
    uint32_t size = 16;
    while (size < 2u * (uint32_t)v->n)
        size *= 2;
    v->slots = xmalloc(size * sizeof *v->slots);
    if (!v->slots) return -1;
    memset(v->slots, 0xFF, size * sizeof *v->slots);
    v->mask = size - 1;
    for (int id = 0; id < v->n; id++) {
        size_t len;
        const char *b = tok_vocab_bytes(v, id, &len);
        if (tok_vocab_find(v, b, len) >= 0) continue; /* duplicate: keep the lower id */
        uint32_t i = (uint32_t)tok_hash_bytes(b, len) & v->mask;
        while (v->slots[i] >= 0)
            i = (i + 1) & v->mask;
        v->slots[i] = id;
    }
    return 0;
}

void tok_vocab_free(struct tok_vocab *v) {
    free(v->blob);
    free(v->off);
    free(v->len);
    free(v->slots);
    memset(v, 0, sizeof *v);
}

static struct tok_pair_slot *pair_slot_for(struct tok_pair_slot *t, uint32_t mask, uint64_t key) {
    uint32_t i = tok_pair_hash(key) & mask;
    while (t[i].key != TOK_PAIR_EMPTY && t[i].key != key)
        i = (i + 1) & mask;
    return &t[i];
}

static int pairmap_grow(struct tok_pairmap *m) {
    uint32_t size = m->slots ? (m->mask + 1) * 2 : 1024;
    struct tok_pair_slot *t = xmalloc(size * sizeof *t);
    if (!t) return -1;
    for (uint32_t i = 0; i < size; i++)
        t[i].key = TOK_PAIR_EMPTY;
    if (m->slots)
        for (uint32_t i = 0; i <= m->mask; i++)
            if (m->slots[i].key != TOK_PAIR_EMPTY)
                *pair_slot_for(t, size - 1, m->slots[i].key) = m->slots[i];
    free(m->slots);
    m->slots = t;
    m->mask = size - 1;
    return 0;
}

int tok_pairmap_put(struct tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged) {
    if (!m->slots || 2 * (m->used + 1) > m->mask + 1)
        if (pairmap_grow(m) != 0) return -1;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    struct tok_pair_slot *s = pair_slot_for(m->slots, m->mask, key);
    if (s->key == TOK_PAIR_EMPTY) m->used++;
    *s = (struct tok_pair_slot){key, rank, merged};
    return 0;
}

void tok_pairmap_free(struct tok_pairmap *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- word cache ---- */

#define WCACHE_MAX_SLOTS (1u << 21)

const int32_t *tok_wcache_get(const struct tok_wcache *c, uint64_t h, const void *key, size_t n,
                              size_t *n_ids) {
    if (!c->slots || n == 0 || n > TOK_WCACHE_MAX_KEY) return NULL;
    for (uint32_t i = (uint32_t)h & c->mask;; i = (i + 1) & c->mask) {
        const struct tok_wcache_slot *s = &c->slots[i];
        if (s->key_len == 0) return NULL;
        if (s->h == h && s->key_len == n && memcmp(c->keys + s->key_off, key, n) == 0) {
            *n_ids = s->n_ids;
            return c->ids + s->ids_off;
        }
    }
}

static int wcache_grow(struct tok_wcache *c) {
    uint32_t size = c->slots ? (c->mask + 1) * 2 : 256;
    struct tok_wcache_slot *t = xcalloc(size, sizeof *t);
    if (!t) return -1;
    if (c->slots)
        for (uint32_t i = 0; i <= c->mask; i++) {
            if (c->slots[i].key_len == 0) continue;
            uint32_t j = (uint32_t)c->slots[i].h & (size - 1);
            while (t[j].key_len)
                j = (j + 1) & (size - 1);
            t[j] = c->slots[i];
        }
    free(c->slots);
    c->slots = t;
    c->mask = size - 1;
    return 0;
}

int tok_grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap && *p) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = xrealloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

int tok_wcache_put(struct tok_wcache *c, uint64_t h, const void *key, size_t n, const int32_t *ids,
                   size_t n_ids) {
    if (n == 0 || n > TOK_WCACHE_MAX_KEY || n_ids > UINT16_MAX) return 0;
    if (!c->slots || 2 * (c->used + 1) > c->mask + 1) {
        if (c->slots && c->mask + 1 >= WCACHE_MAX_SLOTS) return 0;
        if (wcache_grow(c) != 0) return -1;
    }
    if (c->keys_n + n > UINT32_MAX || c->ids_n + n_ids > UINT32_MAX) return 0;
    if (tok_grow((void **)&c->keys, &c->keys_cap, c->keys_n + n, 1) != 0 ||
        tok_grow((void **)&c->ids, &c->ids_cap, c->ids_n + n_ids, sizeof *ids) != 0)
        return -1;
    uint32_t i = (uint32_t)h & c->mask;
    while (c->slots[i].key_len)
        i = (i + 1) & c->mask;
    c->slots[i] = (struct tok_wcache_slot){h, (uint32_t)c->keys_n, (uint32_t)c->ids_n, (uint16_t)n,
                                           (uint16_t)n_ids};
    memcpy(c->keys + c->keys_n, key, n);
    memcpy(c->ids + c->ids_n, ids, n_ids * sizeof *ids);
    c->keys_n += n;
    c->ids_n += n_ids;
    c->used++;
    return 0;
}

void tok_wcache_free(struct tok_wcache *c) {
    free(c->slots);
    free(c->keys);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

struct tok_shared_cache *tok_shared_cache_new(void) {
    struct tok_shared_cache *s = xcalloc(1, sizeof *s);
    if (s && pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        err_set("cannot create a mutex");
        return NULL;
    }
    return s;
}

void tok_shared_cache_free(struct tok_shared_cache *s) {
    if (!s) return;
    pthread_mutex_destroy(&s->lock);
    tok_wcache_free(&s->cache);
    free(s);
}

struct tok_wcache *tok_cache_acquire(struct tok_shared_cache *s, struct tok_wcache *local) {
    memset(local, 0, sizeof *local);
    if (s && pthread_mutex_trylock(&s->lock) == 0) return &s->cache;
    return local;
}

void tok_cache_release(struct tok_shared_cache *s, struct tok_wcache *used) {
    if (s && used == &s->cache)
        pthread_mutex_unlock(&s->lock);
    else
        tok_wcache_free(used);
}

int tok_ids_reserve(int32_t **ids, size_t n, size_t *cap, size_t more) {
    if (n + more <= *cap && *ids) return 0;
    size_t c = *cap ? *cap : 256;
    while (c < n + more)
        c *= 2;
    int32_t *p = xrealloc(*ids, c * sizeof *p);
    if (!p) return -1;
    *ids = p;
    *cap = c;
    return 0;
}

/* ---- public interface ---- */

struct tokenizer *tokenizer_load(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        err_errno("%s: cannot open tokenizer", path);
        return NULL;
    }
    struct tokenizer *tok = xcalloc(1, sizeof *tok);
    if (!tok) return NULL;
    if (S_ISDIR(st.st_mode)) {
        tok->kind = TOKENIZER_GPT2;
        tok->gpt2 = gpt2_bpe_load(path);
        if (tok->gpt2) return tok;
    } else {
        tok->kind = TOKENIZER_LLAMA2C;
        tok->llama = llama2c_tok_load(path);
        if (tok->llama) return tok;
    }
    free(tok);
    return NULL;
}

void tokenizer_free(struct tokenizer *tok) {
    if (!tok) return;
    gpt2_bpe_free(tok->gpt2);
    llama2c_tok_free(tok->llama);
    free(tok);
}

enum tokenizer_kind tokenizer_kind(const struct tokenizer *tok) {
    return tok->kind;
}

const char *tokenizer_name(const struct tokenizer *tok) {
    return tok->kind == TOKENIZER_GPT2 ? "gpt2" : "llama2c";
}

int tokenizer_vocab_size(const struct tokenizer *tok) {
    return tok->kind == TOKENIZER_GPT2 ? gpt2_bpe_vocab_size(tok->gpt2)
                                       : llama2c_tok_vocab_size(tok->llama);
}

int tokenizer_eot_id(const struct tokenizer *tok) {
    return tok->kind == TOKENIZER_GPT2 ? gpt2_bpe_eot_id(tok->gpt2) : 2;
}

int tokenizer_bos_id(const struct tokenizer *tok) {
    return tok->kind == TOKENIZER_GPT2 ? gpt2_bpe_eot_id(tok->gpt2) : 1;
}

int tokenizer_encode(const struct tokenizer *tok, const char *text, size_t len, int32_t **ids,
                     size_t *n, size_t *cap) {
    if (tok->kind == TOKENIZER_GPT2) return gpt2_bpe_encode(tok->gpt2, text, len, ids, n, cap);
    return llama2c_tok_encode(tok->llama, text, len, ids, n, cap);
}

const char *tokenizer_token_bytes(const struct tokenizer *tok, int32_t id, size_t *len) {
    if (tok->kind == TOKENIZER_GPT2) return gpt2_bpe_token_bytes(tok->gpt2, id, len);
    return llama2c_tok_token_bytes(tok->llama, id, len);
}

char *tokenizer_decode_len(const struct tokenizer *tok, const int32_t *ids, size_t n, size_t *len) {
    if (tok->kind == TOKENIZER_GPT2) return gpt2_bpe_decode(tok->gpt2, ids, n, len);
    return llama2c_tok_decode(tok->llama, ids, n, len);
}

char *tokenizer_decode(const struct tokenizer *tok, const int32_t *ids, size_t n) {
    size_t len;
    return tokenizer_decode_len(tok, ids, n, &len);
}
