/* tokenizer_internal.h: what tokenizer.c shares with the two implementations.
 *
 * struct tokenizer is a tagged union: tokenizer.c dispatches each public call to
 * gpt2_bpe.c or llama2c_tok.c. Both keep their vocabulary in a tok_vocab: every
 * token's bytes in one blob (NUL after each, so a token can be printed) and an
 * open-addressing index from bytes to id, which loading and encoding both use.
 * Nothing here is visible outside src/tok.
 */
#ifndef AUTOINTERP_TOK_TOKENIZER_INTERNAL_H
#define AUTOINTERP_TOK_TOKENIZER_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tok/tokenizer.h"

struct gpt2_bpe;
struct llama2c_tok;

struct tokenizer {
    enum tokenizer_kind kind;
    struct gpt2_bpe *gpt2;     /* kind == TOKENIZER_GPT2 */
    struct llama2c_tok *llama; /* kind == TOKENIZER_LLAMA2C */
};

/* A vocabulary of n byte strings. Ids are 0..n-1; tok_vocab_set may be called in
 * any order (JSON objects are unordered), tok_vocab_index once all are set. */
struct tok_vocab {
    int n;
    char *blob;
    size_t blob_n, blob_cap;
    uint32_t *off, *len; /* len[i] == UINT32_MAX until token i is set */
    int32_t *slots;      /* hash index: -1 empty, else an id */
    uint32_t mask;
};

int tok_vocab_init(struct tok_vocab *v, int n);
int tok_vocab_set(struct tok_vocab *v, int id, const void *bytes, size_t len);
/* Builds the index; with duplicate strings the lowest id wins. */
int tok_vocab_index(struct tok_vocab *v);
void tok_vocab_free(struct tok_vocab *v);

static inline uint64_t tok_hash_bytes(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 29);
}

/* Id of the token whose bytes are exactly (bytes, len), or -1. */
static inline int32_t tok_vocab_find(const struct tok_vocab *v, const void *bytes, size_t len) {
    uint32_t i = (uint32_t)tok_hash_bytes(bytes, len) & v->mask;
    for (;; i = (i + 1) & v->mask) {
        int32_t id = v->slots[i];
        if (id < 0) return -1;
        if (v->len[id] == len && memcmp(v->blob + v->off[id], bytes, len) == 0) return id;
    }
}

static inline const char *tok_vocab_bytes(const struct tok_vocab *v, int32_t id, size_t *len) {
    *len = v->len[id];
    return v->blob + v->off[id];
}

/* A hash map from an ordered id pair (a, b) to the token they merge into, with a
 * rank for GPT-2 (merge order) that llama2.c does not need. put replaces. */
struct tok_pair_slot {
    uint64_t key; /* (a << 32) | b; TOK_PAIR_EMPTY when free */
    uint32_t rank;
    int32_t merged;
};
#define TOK_PAIR_EMPTY UINT64_MAX

struct tok_pairmap {
    struct tok_pair_slot *slots;
    uint32_t mask, used;
};

int tok_pairmap_put(struct tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged);
void tok_pairmap_free(struct tok_pairmap *m);

static inline uint32_t tok_pair_hash(uint64_t key) {
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32);
}

static inline const struct tok_pair_slot *tok_pairmap_get(const struct tok_pairmap *m, int32_t a,
                                                          int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (uint32_t i = tok_pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->slots[i].key == key) return &m->slots[i];
        if (m->slots[i].key == TOK_PAIR_EMPTY) return NULL;
    }
}

/* A memo from a key (a pre-token's bytes, or a run of initial ids) to
 * the ids it encodes to; prose repeats its words, so BPE runs once per distinct
 * word. Keys longer than TOK_WCACHE_MAX_KEY bytes are not kept, and a full cache
 * stops remembering. Zero-initialise; tok_wcache_free when done. */
#define TOK_WCACHE_MAX_KEY 1024
struct tok_wcache_slot {
    uint64_t h;
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids; /* key_len 0: empty slot */
};
struct tok_wcache {
    struct tok_wcache_slot *slots;
    uint32_t mask, used;
    unsigned char *keys;
    size_t keys_n, keys_cap;
    int32_t *ids;
    size_t ids_n, ids_cap;
};
const int32_t *tok_wcache_get(const struct tok_wcache *c, uint64_t h, const void *key, size_t n,
                              size_t *n_ids);
int tok_wcache_put(struct tok_wcache *c, uint64_t h, const void *key, size_t n, const int32_t *ids,
                   size_t n_ids);
void tok_wcache_free(struct tok_wcache *c);

/* The word cache a tokenizer keeps across calls, so that encoding document by
 * document is as fast as encoding a whole file. A call takes it if no other
 * thread holds it, else works with a private cache of its own. */
struct tok_shared_cache {
    pthread_mutex_t lock;
    struct tok_wcache cache;
};
struct tok_shared_cache *tok_shared_cache_new(void);
void tok_shared_cache_free(struct tok_shared_cache *s);
/* The cache to use for one call: the shared one (now locked) or *local. */
struct tok_wcache *tok_cache_acquire(struct tok_shared_cache *s, struct tok_wcache *local);
void tok_cache_release(struct tok_shared_cache *s, struct tok_wcache *used);

/* Grow *p (elements of elem bytes, capacity *cap) to hold need elements. */
int tok_grow(void **p, size_t *cap, size_t need, size_t elem);

/* Make room for `more` ids in a caller's (*ids, *n, *cap) vector. */
int tok_ids_reserve(int32_t **ids, size_t n, size_t *cap, size_t more);

/* gpt2_bpe.c */
struct gpt2_bpe *gpt2_bpe_load(const char *dir);
void gpt2_bpe_free(struct gpt2_bpe *g);
int gpt2_bpe_vocab_size(const struct gpt2_bpe *g);
int gpt2_bpe_eot_id(const struct gpt2_bpe *g);
int gpt2_bpe_encode(const struct gpt2_bpe *g, const char *text, size_t len, int32_t **ids,
                    size_t *n, size_t *cap);
const char *gpt2_bpe_token_bytes(const struct gpt2_bpe *g, int32_t id, size_t *len);
char *gpt2_bpe_decode(const struct gpt2_bpe *g, const int32_t *ids, size_t n, size_t *len);

/* llama2c_tok.c */
struct llama2c_tok *llama2c_tok_load(const char *path);
void llama2c_tok_free(struct llama2c_tok *t);
int llama2c_tok_vocab_size(const struct llama2c_tok *t);
int llama2c_tok_encode(const struct llama2c_tok *t, const char *text, size_t len, int32_t **ids,
                       size_t *n, size_t *cap);
const char *llama2c_tok_token_bytes(const struct llama2c_tok *t, int32_t id, size_t *len);
char *llama2c_tok_decode(const struct llama2c_tok *t, const int32_t *ids, size_t n, size_t *len);

#endif
