/* collect.c: top, random and quantile windows of sampled features, in one pass.
 *
 * ONE PASS, NOT TWO. Sampling "N features uniformly among the alive ones" seems to
 * need a first pass (which features are alive?) before a second one collects the
 * windows of the sampled features. That would run the model twice. Instead the
 * features are put in a seeded random order π before the pass, and the sample is
 * defined as the first N alive features in π order: a uniformly random N-subset of
 * the alive features, in uniformly random order. While streaming, the features
 * that can still end up in the sample are those alive so far whose π-rank is
 * below the rank of the N-th alive feature (the "cutoff"); as features come alive
 * the cutoff only moves down. A feature is tracked (heaps, window storage) from
 * the moment it first fires if its rank is below the cutoff, and dropped when the
 * cutoff passes it. Nothing is lost by starting late: before its first firing a
 * feature's activations are all zero. So at most N+1 features are tracked at any
 * time, and memory is O(N · (top_k + n_random + quantile candidates) · W) plus
 * O(d_sae) counters, independent of the number of tokens. All d_sae features
 * still get their density and maximum from the dense encode (a vectorised
 * count-and-max over each row, the only per-feature work for untracked ones).
 *
 * TOP WINDOWS. Every position t with activation a_t > 0 is a candidate, keyed by
 * (a_t descending, dataset position ascending): a total order, so ties are
 * deterministic. Its window starts at t - offset, clamped so that the window lies
 * inside the sequence's dataset tokens (near an edge the anchor sits off its
 * usual offset). The kept set is defined greedily: go through all candidates of
 * the feature in key order and accept one unless its window overlaps an already
 * accepted window; the top_k are the first top_k accepted. Windows of different
 * sequences never overlap, so this equals: per sequence, the greedy set of that
 * sequence; then the top_k by key of their union. That is what the stream
 * computes exactly, with a bounded min-heap of top_k entries per feature: each
 * sequence's candidates above the heap minimum are sorted and run through the
 * greedy rule (a candidate below the minimum, and all after it, cannot enter).
 * The result does not depend on batch size or block order (tests/unit/
 * test_extract_collect.c checks it against a brute force).
 *
 * SPLITS. The kept top windows are ranked by key (rank 0 = highest), then a
 * seeded shuffle (per feature) orders them: the first n_explain are the explain
 * set, the next n_score_top the held-out score-top set, the rest are dropped.
 * With fewer than n_explain + n_score_top windows found, the score-top share is
 * floor(n · n_score_top / (n_explain + n_score_top)) and the explain set the rest.
 *
 * RANDOM WINDOWS. Per feature, n_random + spare windows are drawn up front with a
 * per-feature seed, uniformly over all window positions of the pass (a uniform
 * sequence, then a uniform start in it), pairwise non-overlapping; their
 * activations are copied as the pass reaches them (zeros before the feature was
 * tracked, which is exact). At the end they are taken in draw order, skipping any
 * that overlaps a kept top window, until n_random are taken.
 *
 * QUANTILE WINDOWS (n_quantile > 0). Nonzero activations of a tracked feature go
 * into a histogram with 8 bins per octave (bins read off the float's exponent and
 * top 3 mantissa bits). A position t is a quantile candidate when it is the
 * maximum of its own window (strictly above every earlier token of the window,
 * at least every later one); it gets a priority hash(seed, feature, t), and each
 * histogram bin keeps the candidates of smallest priority (a bounded uniform
 * sample, independent of processing order). At the end the nonzero activations
 * are cut into quantile_bands bands of equal count, at bin boundaries (a bin goes
 * to the band holding its middle count), and band q's windows are its candidates
 * of smallest priority that overlap no kept top, random or earlier quantile
 * window; rank = q (0 = lowest band). So a band's windows have their maximum
 * activation in that quantile band, up to the bin resolution (about 9%).
 *
 * Every window of a feature is thus disjoint from every other window of that
 * feature: the explain and scoring sets never share a token.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include "extract/collect.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "util/error.h"
#include "util/log.h"

#define HIST_BINS 2048 /* positive float bit patterns >> 20: exponent + 3 mantissa bits */

enum { TAG_ORDER = 1, TAG_RANDOM = 2, TAG_SPLIT = 3, TAG_QUANTILE = 4 };

struct topent {
    float act;
    int64_t anchor, start;
    int slot; /* row of the feature's window store */
};

struct qcand {
    uint64_t prio;
    float act;
    int64_t anchor, start;
    int slot;
};

struct qbin {
    int n;
    struct qcand *c; /* [cap], sorted by prio */
    float *acts;     /* [cap * W] */
};

struct track {
    int feature;
    int n_top;
    struct topent *heap; /* [top_k], min-heap: heap[0] is the worst kept */
    float *top_acts;     /* [top_k * W] */
    int n_rand;
    int64_t *rand_start; /* [n_rand] sorted by start */
    int *rand_order;     /* [n_rand] draw index of each */
    float *rand_acts;    /* [n_rand * W] */
    int rand_next;       /* first window not yet reached by the pass */
    uint64_t *hist;      /* [HIST_BINS] or NULL */
    struct qbin **qbins; /* [HIST_BINS] or NULL */
    size_t bytes;
};

struct cand {
    float act;
    int64_t pos; /* dataset position */
    int local;   /* index inside the sequence's dataset tokens */
};

struct collector {
    struct collect_params p;
    int d_sae, W, L; /* L = dataset tokens per sequence */
    int64_t *count;
    float *maxact;
    int32_t *rank;       /* π-rank of each feature (list position with explicit features) */
    int32_t *order;      /* order[r] = the feature of rank r (sampling only) */
    uint8_t *alive_rank; /* by rank */
    int cutoff, n_in, n_target;
    struct track **track;
    int64_t seq0;
    int B;
    int64_t n_tokens;
    int n_alive;
    int qcap;
    struct cand *cands;  /* [L] */
    int64_t *accepted;   /* [L] starts accepted in the current sequence */
    size_t bytes, peak_bytes;
    int n_tracked, peak_tracked;
    int32_t *known_sample; /* with known_alive: the sample, also set as p.features */
    int n_known_alive;     /* with known_alive: how many it flags */
};

uint64_t collect_mix_seed(uint64_t seed, uint64_t tag, uint64_t index) {
    uint64_t z = seed ^ (tag * 0x9E3779B97F4A7C15ULL) ^ (index * 0xD1B54A32D192ED03ULL);
    for (int i = 0; i < 2; i++) {
        z += 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
    }
    return z;
}

static gsl_rng *rng_new(uint64_t seed) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r) {
        err_set("out of memory allocating a random number generator");
        return NULL;
    }
    gsl_rng_set(r, (unsigned long)seed);
    return r;
}

/* ---------------------------------------------------------------------------
 * Window geometry.
 */

/* Start (index into the sequence's dataset tokens) of the window anchored at local. */
static inline int window_start(const struct collector *c, int local) {
    int s = local - c->p.offset;
    if (s < 0) s = 0;
    if (s > c->L - c->W) s = c->L - c->W;
    return s;
}

static inline int overlaps(int64_t a, int64_t b, int W) { return a - b < W && b - a < W; }

/* ---------------------------------------------------------------------------
 * Tracking state of one feature.
 */
static void account(struct collector *c, size_t add, size_t sub) {
    c->bytes += add;
    c->bytes -= sub;
    if (c->bytes > c->peak_bytes) c->peak_bytes = c->bytes;
}

static void track_free(struct collector *c, struct track *t) {
    if (!t) return;
    if (t->qbins) {
        for (int b = 0; b < HIST_BINS; b++)
            if (t->qbins[b]) {
                free(t->qbins[b]->c);
                free(t->qbins[b]->acts);
                free(t->qbins[b]);
            }
        free(t->qbins);
    }
    free(t->hist);
    free(t->heap);
    free(t->top_acts);
    free(t->rand_start);
    free(t->rand_order);
    free(t->rand_acts);
    account(c, 0, t->bytes);
    c->n_tracked--;
    free(t);
}

static int cmp_i64_idx(const void *a, const void *b, void *arg) {
    const int64_t *v = arg;
    int64_t x = v[*(const int *)a], y = v[*(const int *)b];
    return (x > y) - (x < y);
}

/* Draw the feature's random windows: n_random + spare, pairwise non-overlapping,
 * uniform over (sequence, start); stored sorted by start with their draw index. */
static int draw_random(struct collector *c, struct track *t) {
    int want = c->p.n_random > 0 ? c->p.n_random + (c->p.n_random + 1) / 2 + 2 : 0;
    t->rand_start = xcalloc((size_t)want + 1, sizeof *t->rand_start);
    t->rand_order = xcalloc((size_t)want + 1, sizeof *t->rand_order);
    t->rand_acts = xcalloc((size_t)want * c->W + 1, sizeof *t->rand_acts);
    if (!t->rand_start || !t->rand_order || !t->rand_acts) return -1;
    t->bytes += ((size_t)want + 1) * (sizeof(int64_t) + sizeof(int)) +
                ((size_t)want * c->W + 1) * sizeof(float);
    if (want == 0) return 0;
    gsl_rng *r = rng_new(collect_mix_seed(c->p.seed, TAG_RANDOM, (uint64_t)t->feature));
    if (!r) return -1;
    int64_t *drawn = xmalloc((size_t)want * sizeof *drawn);
    if (!drawn) {
        gsl_rng_free(r);
        return -1;
    }
    int n = 0, starts = c->L - c->W + 1;
    for (int attempt = 0; n < want && attempt < 64 * want; attempt++) {
        int64_t seq = (int64_t)(gsl_rng_uniform(r) * (double)c->p.n_seq);
        if (seq >= c->p.n_seq) seq = c->p.n_seq - 1;
        int64_t pos = seq * c->L + (int64_t)gsl_rng_uniform_int(r, (unsigned long)starts);
        int ok = 1;
        for (int i = 0; i < n && ok; i++) ok = !overlaps(pos, drawn[i], c->W);
        if (ok) drawn[n++] = pos;
    }
    gsl_rng_free(r);
    int *idx = xmalloc((size_t)n * sizeof *idx + 1);
    if (!idx) {
        free(drawn);
        return -1;
    }
    for (int i = 0; i < n; i++) idx[i] = i;
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_i64_idx, drawn);
    for (int i = 0; i < n; i++) {
        t->rand_start[i] = drawn[idx[i]];
        t->rand_order[i] = idx[i];
    }
    t->n_rand = n;
    free(idx);
    free(drawn);
    /* Windows the pass has already gone by: the feature was zero there. */
    int64_t done = c->seq0 * c->L;
    while (t->rand_next < n && t->rand_start[t->rand_next] < done) t->rand_next++;
    return 0;
}

static int track_start(struct collector *c, int f) {
    struct track *t = xcalloc(1, sizeof *t);
    if (!t) return -1;
    t->feature = f;
    size_t k = (size_t)c->p.top_k;
    t->heap = xcalloc(k, sizeof *t->heap);
    t->top_acts = xcalloc(k * c->W, sizeof *t->top_acts);
    t->bytes = sizeof *t + k * sizeof *t->heap + k * c->W * sizeof(float);
    int rc = (t->heap && t->top_acts) ? 0 : -1;
    if (rc == 0 && c->p.n_quantile > 0) {
        t->hist = xcalloc(HIST_BINS, sizeof *t->hist);
        t->qbins = xcalloc(HIST_BINS, sizeof *t->qbins);
        t->bytes += HIST_BINS * (sizeof *t->hist + sizeof *t->qbins);
        if (!t->hist || !t->qbins) rc = -1;
    }
    c->track[f] = t;
    c->n_tracked++;
    if (c->n_tracked > c->peak_tracked) c->peak_tracked = c->n_tracked;
    if (rc == 0) rc = draw_random(c, t);
    account(c, t->bytes, 0);
    if (rc != 0) {
        track_free(c, t);
        c->track[f] = NULL;
    }
    return rc;
}

/* Feature f fired for the first time. With sampling, it may join the candidates
 * for the sample, pushing the cutoff down (and the feature at the cutoff out). */
static int became_alive(struct collector *c, int f) {
    c->n_alive++;
    if (c->p.features) return 0; /* explicit list: tracked from the start */
    int r = c->rank[f];
    c->alive_rank[r] = 1;
    if (r >= c->cutoff) return 0;
    if (track_start(c, f) != 0) return -1;
    c->n_in++;
    while (c->n_in > c->n_target) {
        int q = c->cutoff - 1;
        while (!c->alive_rank[q]) q--;
        c->cutoff = q;
        int g = c->order[q];
        track_free(c, c->track[g]);
        c->track[g] = NULL;
        c->n_in--;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Top-k heap.
 */

/* a is worse than b: lower activation, or equal and later in the data. */
static inline int worse(float aa, int64_t ap, float ba, int64_t bp) {
    return aa < ba || (aa == ba && ap > bp);
}

static void heap_down(struct topent *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(h[l].act, h[l].anchor, h[m].act, h[m].anchor)) m = l;
        if (r < n && worse(h[r].act, h[r].anchor, h[m].act, h[m].anchor)) m = r;
        if (m == i) return;
        struct topent tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
}

static void heap_up(struct topent *h, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!worse(h[i].act, h[i].anchor, h[p].act, h[p].anchor)) return;
        struct topent tmp = h[i];
        h[i] = h[p];
        h[p] = tmp;
        i = p;
    }
}

/* Insert (the caller checked that it beats the minimum when full); returns the
 * store slot for its window activations. */
static int heap_push(struct track *t, int k, float act, int64_t anchor, int64_t start) {
    struct topent e = {act, anchor, start, 0};
    if (t->n_top < k) {
        e.slot = t->n_top;
        t->heap[t->n_top] = e;
        heap_up(t->heap, t->n_top++);
    } else {
        e.slot = t->heap[0].slot;
        t->heap[0] = e;
        heap_down(t->heap, k, 0);
    }
    return e.slot;
}

static int cand_cmp(const void *a, const void *b) {
    const struct cand *x = a, *y = b;
    if (x->act != y->act) return x->act > y->act ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* One sequence of a tracked feature: row holds its L post-ReLU activations,
 * pos0 the dataset position of row[0]. */
static void top_sequence(struct collector *c, struct track *t, const float *row, int64_t pos0) {
    int k = c->p.top_k, n = 0, W = c->W;
    int full = t->n_top == k;
    float min_act = full ? t->heap[0].act : 0.0f;
    int64_t min_pos = full ? t->heap[0].anchor : 0;
    for (int i = 0; i < c->L; i++) {
        float a = row[i];
        if (a > 0.0f && (!full || worse(min_act, min_pos, a, pos0 + i)))
            c->cands[n++] = (struct cand){a, pos0 + i, i};
    }
    if (n == 0) return;
    qsort(c->cands, (size_t)n, sizeof *c->cands, cand_cmp);
    int n_acc = 0;
    for (int j = 0; j < n; j++) {
        const struct cand *x = &c->cands[j];
        if (t->n_top == k && !worse(t->heap[0].act, t->heap[0].anchor, x->act, x->pos)) break;
        int s = window_start(c, x->local);
        int clash = 0;
        for (int a = 0; a < n_acc && !clash; a++) clash = overlaps(s, c->accepted[a], W);
        if (clash) continue;
        c->accepted[n_acc++] = s;
        int slot = heap_push(t, k, x->act, x->pos, pos0 + s);
        memcpy(t->top_acts + (size_t)slot * W, row + s, (size_t)W * sizeof *row);
    }
}

/* Random windows whose start falls in this batch. */
static void random_batch(struct collector *c, struct track *t, const float *rows) {
    int64_t end = (c->seq0 + c->B) * c->L;
    while (t->rand_next < t->n_rand && t->rand_start[t->rand_next] < end) {
        int64_t st = t->rand_start[t->rand_next];
        int64_t s = st / c->L - c->seq0;
        int local = (int)(st % c->L);
        const float *src = rows + s * c->p.T + c->p.r0 + local;
        memcpy(t->rand_acts + (size_t)t->rand_next * c->W, src, (size_t)c->W * sizeof *src);
        t->rand_next++;
    }
}

/* ---------------------------------------------------------------------------
 * Quantile candidates.
 */
static inline int hist_bin(float a) {
    uint32_t u;
    memcpy(&u, &a, sizeof u);
    return (int)(u >> 20); /* a > 0: sign bit clear, so < 2048 */
}

static int qbin_insert(struct collector *c, struct track *t, int b, uint64_t prio, float act,
                       int64_t anchor, int64_t start, const float *win) {
    struct qbin *q = t->qbins[b];
    int cap = c->qcap, W = c->W;
    if (!q) {
        q = xcalloc(1, sizeof *q);
        if (!q) return -1;
        q->c = xcalloc((size_t)cap, sizeof *q->c);
        q->acts = xcalloc((size_t)cap * W, sizeof *q->acts);
        if (!q->c || !q->acts) {
            free(q->c);
            free(q->acts);
            free(q);
            return -1;
        }
        t->qbins[b] = q;
        size_t add = sizeof *q + (size_t)cap * (sizeof *q->c + (size_t)W * sizeof(float));
        t->bytes += add;
        account(c, add, 0);
    }
    if (q->n == cap && prio >= q->c[cap - 1].prio) return 0;
    int slot = q->n < cap ? q->n : q->c[cap - 1].slot;
    int i = q->n < cap ? q->n++ : cap - 1;
    while (i > 0 && q->c[i - 1].prio > prio) {
        q->c[i] = q->c[i - 1];
        i--;
    }
    q->c[i] = (struct qcand){prio, act, anchor, start, slot};
    memcpy(q->acts + (size_t)slot * W, win, (size_t)W * sizeof *win);
    return 0;
}

static int quantile_sequence(struct collector *c, struct track *t, const float *row,
                             int64_t pos0) {
    int W = c->W;
    for (int i = 0; i < c->L; i++) {
        float a = row[i];
        if (!(a > 0.0f)) continue;
        t->hist[hist_bin(a)]++;
        int s = window_start(c, i), is_max = 1;
        for (int u = s; u < s + W && is_max; u++)
            is_max = u < i ? row[u] < a : row[u] <= a;
        if (!is_max) continue;
        uint64_t prio = collect_mix_seed(c->p.seed ^ TAG_QUANTILE, (uint64_t)t->feature,
                                         (uint64_t)(pos0 + i));
        if (qbin_insert(c, t, hist_bin(a), prio, a, pos0 + i, pos0 + s, row + s) != 0) return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Streaming.
 */
/* π: a seeded uniform permutation of the features; rank[f] is f's place in it. */
static int make_order(struct collector *c) {
    int d_sae = c->d_sae;
    c->order = xmalloc((size_t)d_sae * sizeof *c->order);
    gsl_rng *r = rng_new(collect_mix_seed(c->p.seed, TAG_ORDER, 0));
    int rc = c->order && r ? 0 : -1;
    if (rc == 0) {
        for (int i = 0; i < d_sae; i++) c->order[i] = i;
        gsl_ran_shuffle(r, c->order, (size_t)d_sae, sizeof *c->order);
        for (int i = 0; i < d_sae; i++) c->rank[c->order[i]] = i;
    }
    if (r) gsl_rng_free(r);
    return rc;
}

/* The alive set is known: the candidates are its first n_features + a margin in
 * π order, tracked from the start as an explicit list, and the sample is the
 * first n_features of them that fire in the pass (sampled_features). When the
 * known set is the pass's own, that is what the one-pass rule picks; when it
 * comes from other tokens, the margin replaces features that stay silent here. */
static int sample_known(struct collector *c) {
    if (make_order(c) != 0) return -1;
    int n = 0;
    for (int f = 0; f < c->d_sae; f++) c->n_known_alive += c->p.known_alive[f] != 0;
    int margin = c->p.n_features / 10 > 8 ? c->p.n_features / 10 : 8;
    int want = c->p.n_features + margin < c->n_known_alive ? c->p.n_features + margin
                                                            : c->n_known_alive;
    c->known_sample = xmalloc(((size_t)want + 1) * sizeof *c->known_sample);
    if (!c->known_sample) return -1;
    for (int r = 0; r < c->d_sae && n < want; r++)
        if (c->p.known_alive[c->order[r]]) c->known_sample[n++] = c->order[r];
    free(c->order);
    c->order = NULL;
    c->p.features = c->known_sample;
    c->p.n_explicit = n;
    return 0;
}

int collector_new(const struct collect_params *p, int d_sae, struct collector **out) {
    *out = NULL;
    int L = p->T - p->r0;
    if (p->T < 1 || p->r0 < 0 || L < 1) return err_set("extract: bad sequence length %d", p->T);
    if (p->window < 1 || p->window > L)
        return err_set("extract.window: %d must be between 1 and the %d dataset tokens of a "
                       "sequence",
                       p->window, L);
    if (p->offset < 0 || p->offset >= p->window)
        return err_set("extract.offset: %d must be in 0..%d", p->offset, p->window - 1);
    if (p->top_k < 1) return err_set("extract.top_k: must be at least 1, got %d", p->top_k);
    if (p->n_explain < 0 || p->n_score_top < 0 || p->n_explain + p->n_score_top > p->top_k)
        return err_set("extract: n_explain (%d) + n_score_top (%d) must not exceed top_k (%d)",
                       p->n_explain, p->n_score_top, p->top_k);
    if (p->n_random < 0 || p->n_quantile < 0 || (p->n_quantile > 0 && p->quantile_bands < 1))
        return err_set("extract: n_random, n_quantile must be >= 0 and quantile_bands >= 1");
    if (p->n_seq < 1) return err_set("extract: no sequences to scan");
    if (!p->features && p->n_features < 1)
        return err_set("extract.n_features: must be at least 1, got %d", p->n_features);
    for (int i = 0; p->features && i < p->n_explicit; i++) {
        if (p->features[i] < 0 || p->features[i] >= d_sae)
            return err_set("extract.features: entry %d is %d, outside 0..%d", i, p->features[i],
                           d_sae - 1);
        for (int j = 0; j < i; j++)
            if (p->features[j] == p->features[i])
                return err_set("extract.features: feature %d is listed twice", p->features[i]);
    }
    struct collector *c = xcalloc(1, sizeof *c);
    if (!c) return -1;
    c->p = *p;
    c->d_sae = d_sae;
    c->W = p->window;
    c->L = L;
    int bands = p->quantile_bands < 1 ? 1 : p->quantile_bands;
    c->qcap = 2 * ((p->n_quantile + bands - 1) / bands) + 4;
    c->count = xcalloc((size_t)d_sae, sizeof *c->count);
    c->maxact = xcalloc((size_t)d_sae, sizeof *c->maxact);
    c->rank = xcalloc((size_t)d_sae, sizeof *c->rank);
    c->alive_rank = xcalloc((size_t)d_sae, 1);
    c->track = xcalloc((size_t)d_sae, sizeof *c->track);
    c->cands = xcalloc((size_t)L, sizeof *c->cands);
    c->accepted = xcalloc((size_t)L, sizeof *c->accepted);
    if (!c->count || !c->maxact || !c->rank || !c->alive_rank || !c->track || !c->cands ||
        !c->accepted) {
        collector_free(c);
        return -1;
    }
    int rc = 0;
    if (!p->features && p->known_alive) rc = sample_known(c);
    if (rc == 0 && c->p.features) {
        p = &c->p;
        c->n_target = p->n_explicit;
        for (int f = 0; f < d_sae; f++) c->rank[f] = INT32_MAX;
        for (int i = 0; i < p->n_explicit && rc == 0; i++) {
            c->rank[p->features[i]] = i;
            rc = track_start(c, p->features[i]);
        }
    } else if (rc == 0) {
        c->n_target = p->n_features;
        c->cutoff = d_sae;
        rc = make_order(c);
    }
    if (rc != 0) {
        collector_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void collector_free(struct collector *c) {
    if (!c) return;
    free(c->known_sample);
    for (int f = 0; c->track && f < c->d_sae; f++) track_free(c, c->track[f]);
    free(c->count);
    free(c->maxact);
    free(c->rank);
    free(c->order);
    free(c->alive_rank);
    free(c->track);
    free(c->cands);
    free(c->accepted);
    free(c);
}

int collector_batch(struct collector *c, int64_t seq0, int B) {
    if (seq0 < 0 || B < 1 || seq0 + B > c->p.n_seq)
        return err_set("extract: batch of sequences [%lld, %lld) outside the pass of %lld",
                       (long long)seq0, (long long)(seq0 + B), (long long)c->p.n_seq);
    c->seq0 = seq0;
    c->B = B;
    c->n_tokens += (int64_t)B * c->L;
    return 0;
}

/* Count of v = x[i] + b > 0 and the maximum of v, over n values. */
static void row_stats(const float *x, int n, float b, int64_t *cnt, float *mx) {
    int i = 0;
    int64_t k = 0;
    float m = -INFINITY;
#ifdef __AVX2__
    __m256 vb = _mm256_set1_ps(b), vz = _mm256_setzero_ps(), vm = _mm256_set1_ps(-INFINITY);
    __m256i vc = _mm256_setzero_si256();
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_add_ps(_mm256_loadu_ps(x + i), vb);
        vm = _mm256_max_ps(vm, v);
        vc = _mm256_sub_epi32(vc, _mm256_castps_si256(_mm256_cmp_ps(v, vz, _CMP_GT_OQ)));
    }
    float ms[8];
    int32_t cs[8];
    _mm256_storeu_ps(ms, vm);
    _mm256_storeu_si256((__m256i *)cs, vc);
    for (int j = 0; j < 8; j++) {
        k += cs[j];
        m = ms[j] > m ? ms[j] : m;
    }
#endif
    for (; i < n; i++) {
        float v = x[i] + b;
        k += v > 0.0f;
        m = v > m ? v : m;
    }
    *cnt = k;
    *mx = m;
}

static int tracked_row(struct collector *c, struct track *t, float *row, float b) {
    int N = c->B * c->p.T;
    for (int i = 0; i < N; i++) {
        float v = row[i] + b;
        row[i] = v > 0.0f ? v : 0.0f;
    }
    for (int s = 0; s < c->B; s++) {
        const float *seq = row + (size_t)s * c->p.T + c->p.r0;
        int64_t pos0 = (c->seq0 + s) * c->L;
        top_sequence(c, t, seq, pos0);
        if (t->hist && quantile_sequence(c, t, seq, pos0) != 0) return -1;
    }
    random_batch(c, t, row);
    return 0;
}

/* Feature f's pre-activations over the batch (row: B*T, overwritten). */
static int feed_row(struct collector *c, int f, float *row, const float *bias) {
    int N = c->B * c->p.T;
    float b = bias ? bias[f] : 0.0f;
    for (int s = 0; s < c->B; s++)
        for (int p = 0; p < c->p.r0; p++) row[(size_t)s * c->p.T + p] = -INFINITY;
    int64_t n;
    float m;
    row_stats(row, N, b, &n, &m);
    if (m > c->maxact[f]) c->maxact[f] = m;
    if (n > 0 && c->count[f] == 0 && became_alive(c, f) != 0)
        return err_prefix("extract: feature %d", f);
    c->count[f] += n;
    if (c->track[f] && (n > 0 || c->track[f]->rand_next < c->track[f]->n_rand) &&
        tracked_row(c, c->track[f], row, b) != 0)
        return err_prefix("extract: feature %d", f);
    return 0;
}

int collector_block(struct collector *c, int f0, int nf, float *pre, const float *bias) {
    int N = c->B * c->p.T;
    if (f0 < 0 || nf < 0 || f0 + nf > c->d_sae)
        return err_set("extract: feature block [%d, %d) outside 0..%d", f0, f0 + nf, c->d_sae);
    for (int i = 0; i < nf; i++)
        if (feed_row(c, f0 + i, pre + (size_t)i * N, bias) != 0) return -1;
    return 0;
}

int collector_rows(struct collector *c, const int32_t *features, int n, float *pre,
                   const float *bias) {
    int N = c->B * c->p.T;
    for (int i = 0; i < n; i++) {
        if (features[i] < 0 || features[i] >= c->d_sae)
            return err_set("extract: feature %d outside 0..%d", features[i], c->d_sae - 1);
        if (feed_row(c, features[i], pre + (size_t)i * N, bias) != 0) return -1;
    }
    return 0;
}

const int32_t *collector_sample(const struct collector *c, int *n) {
    *n = c->p.features ? c->p.n_explicit : 0;
    return c->p.features;
}

void collector_get_stats(const struct collector *c, struct collect_stats *st) {
    st->n_tokens = c->n_tokens;
    st->n_alive = c->n_alive;
    st->n_tracked = c->n_tracked;
    st->peak_tracked = c->peak_tracked;
    st->tracked_bytes = c->bytes;
    st->peak_tracked_bytes = c->peak_bytes;
}

/* ---------------------------------------------------------------------------
 * The end: choose each sampled feature's windows and lay out the file arrays.
 */
struct wsel {
    uint8_t split;
    int32_t rank;
    int64_t start;
    const float *acts;
};

struct wlist {
    struct wsel *w;
    int n, cap;
};

static int wlist_add(struct wlist *l, uint8_t split, int32_t rank, int64_t start,
                     const float *acts) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        struct wsel *w = xrealloc(l->w, (size_t)cap * sizeof *w);
        if (!w) return -1;
        l->w = w;
        l->cap = cap;
    }
    l->w[l->n++] = (struct wsel){split, rank, start, acts};
    return 0;
}

static int clashes(const struct wlist *l, int from, int64_t start, int W) {
    for (int i = from; i < l->n; i++)
        if (overlaps(start, l->w[i].start, W)) return 1;
    return 0;
}

static int topent_cmp(const void *a, const void *b) {
    const struct topent *x = a, *y = b;
    if (x->act != y->act) return x->act > y->act ? -1 : 1;
    return (x->anchor > y->anchor) - (x->anchor < y->anchor);
}

/* Top windows: rank by key, seeded shuffle, explain / score-top split. */
static int select_top(const struct collector *c, const struct track *t, struct wlist *l,
                      int *short_of) {
    int n = t->n_top, e = c->p.n_explain, s = c->p.n_score_top;
    struct topent *sorted = xmalloc((size_t)n * sizeof *sorted + 1);
    int *order = xmalloc((size_t)n * sizeof *order + 1);
    gsl_rng *r = rng_new(collect_mix_seed(c->p.seed, TAG_SPLIT, (uint64_t)t->feature));
    int rc = (sorted && order && r) ? 0 : -1;
    if (rc == 0) {
        memcpy(sorted, t->heap, (size_t)n * sizeof *sorted);
        qsort(sorted, (size_t)n, sizeof *sorted, topent_cmp);
        for (int i = 0; i < n; i++) order[i] = i;
        if (n > 1) gsl_ran_shuffle(r, order, (size_t)n, sizeof *order);
        int ns = n >= e + s ? s : (e + s > 0 ? (int)((int64_t)n * s / (e + s)) : 0);
        int ne = n >= e + s ? e : n - ns;
        if (n < e + s) (*short_of)++;
        for (int i = 0; i < ne + ns && rc == 0; i++) {
            const struct topent *x = &sorted[order[i]];
            rc = wlist_add(l, i < ne ? SPLIT_EXPLAIN : SPLIT_SCORE_TOP, order[i], x->start,
                           t->top_acts + (size_t)x->slot * c->W);
        }
    }
    free(sorted);
    free(order);
    if (r) gsl_rng_free(r);
    return rc;
}

static int select_random(const struct collector *c, const struct track *t, struct wlist *l,
                         int first, int *short_of) {
    int n_top_end = l->n, taken = 0;
    int *by_draw = xmalloc((size_t)t->n_rand * sizeof *by_draw + 1);
    if (!by_draw) return -1;
    for (int i = 0; i < t->n_rand; i++) by_draw[t->rand_order[i]] = i;
    for (int d = 0; d < t->n_rand && taken < c->p.n_random; d++) {
        int i = by_draw[d];
        if (clashes(l, first, t->rand_start[i], c->W)) continue;
        if (wlist_add(l, SPLIT_SCORE_RANDOM, -1, t->rand_start[i],
                      t->rand_acts + (size_t)i * c->W) != 0) {
            free(by_draw);
            return -1;
        }
        taken++;
    }
    (void)n_top_end;
    if (taken < c->p.n_random) (*short_of)++;
    free(by_draw);
    return 0;
}

struct qref {
    const struct qcand *q;
    const float *acts;
};

static int qref_cmp(const void *a, const void *b) {
    uint64_t x = ((const struct qref *)a)->q->prio, y = ((const struct qref *)b)->q->prio;
    return (x > y) - (x < y);
}

static int select_quantile(const struct collector *c, const struct track *t, struct wlist *l,
                           int first, int *short_of) {
    int Q = c->p.quantile_bands, nq = c->p.n_quantile;
    if (Q > nq) Q = nq;
    uint64_t total = 0;
    for (int b = 0; b < HIST_BINS; b++) total += t->hist[b];
    if (total == 0) {
        (*short_of)++;
        return 0;
    }
    struct qref *refs = xmalloc((size_t)HIST_BINS * c->qcap * sizeof *refs);
    if (!refs) return -1;
    int taken_all = 0;
    for (int q = 0; q < Q; q++) {
        int want = nq / Q + (q < nq % Q ? 1 : 0), n = 0;
        uint64_t cum = 0;
        for (int b = 0; b < HIST_BINS; b++) {
            /* A bin belongs to the band that holds its middle count. */
            double mid = ((double)cum + 0.5 * (double)t->hist[b]) / (double)total;
            cum += t->hist[b];
            int band = (int)(mid * Q);
            if (band >= Q) band = Q - 1;
            if (band != q || !t->qbins[b]) continue;
            for (int i = 0; i < t->qbins[b]->n; i++)
                refs[n++] = (struct qref){&t->qbins[b]->c[i],
                                          t->qbins[b]->acts + (size_t)t->qbins[b]->c[i].slot * c->W};
        }
        qsort(refs, (size_t)n, sizeof *refs, qref_cmp);
        int taken = 0;
        for (int i = 0; i < n && taken < want; i++) {
            if (clashes(l, first, refs[i].q->start, c->W)) continue;
            if (wlist_add(l, SPLIT_SCORE_QUANTILE, q, refs[i].q->start, refs[i].acts) != 0) {
                free(refs);
                return -1;
            }
            taken++;
        }
        taken_all += taken;
    }
    if (taken_all < nq) (*short_of)++;
    free(refs);
    return 0;
}

static int wsel_cmp(const void *a, const void *b) {
    const struct wsel *x = a, *y = b;
    if (x->split != y->split) return x->split - y->split;
    if (x->rank != y->rank) return (x->rank > y->rank) - (x->rank < y->rank);
    return (x->start > y->start) - (x->start < y->start);
}

static int32_t *sampled_features(const struct collector *c, int *n_out) {
    int n = 0;
    int32_t *f = xmalloc((size_t)(c->p.features ? c->p.n_explicit : c->n_target) *
                             sizeof *f + sizeof *f);
    if (!f) return NULL;
    if (c->known_sample) { /* the first n_features of the candidates that fired here */
        for (int i = 0; i < c->p.n_explicit && n < c->p.n_features; i++)
            if (c->count[c->known_sample[i]] > 0) f[n++] = c->known_sample[i];
    } else if (c->p.features) {
        memcpy(f, c->p.features, (size_t)c->p.n_explicit * sizeof *f);
        n = c->p.n_explicit;
    } else {
        for (int r = 0; r < c->cutoff && n < c->n_target; r++)
            if (c->alive_rank[r]) f[n++] = c->order[r];
    }
    *n_out = n;
    return f;
}

static int fill_windows(const struct collector *c, struct wlist *all, const int32_t *fidx,
                        collect_read_tokens read_tokens, void *ctx, struct examples *ex) {
    int W = c->W;
    int64_t n = all->n;
    ex->n_windows = n;
    ex->win_feature = xmalloc((size_t)n * sizeof *ex->win_feature + 1);
    ex->win_split = xmalloc((size_t)n + 1);
    ex->win_rank = xmalloc((size_t)n * sizeof *ex->win_rank + 1);
    ex->win_source = xmalloc((size_t)n * sizeof *ex->win_source + 1);
    ex->win_tokens = xmalloc((size_t)n * W * sizeof *ex->win_tokens + 1);
    ex->win_acts = xmalloc((size_t)n * W * sizeof *ex->win_acts + 1);
    if (!ex->win_feature || !ex->win_split || !ex->win_rank || !ex->win_source ||
        !ex->win_tokens || !ex->win_acts)
        return -1;
    for (int64_t i = 0; i < n; i++) {
        const struct wsel *w = &all->w[i];
        ex->win_feature[i] = fidx[i];
        ex->win_split[i] = w->split;
        ex->win_rank[i] = w->rank;
        ex->win_source[i] = w->start;
        memcpy(ex->win_acts + (size_t)i * W, w->acts, (size_t)W * sizeof(float));
        if (read_tokens(ctx, w->start, W, ex->win_tokens + (size_t)i * W) != 0)
            return err_prefix("extract: tokens of window at %lld", (long long)w->start);
    }
    return 0;
}

int collector_finish(struct collector *c, collect_read_tokens read_tokens, void *ctx,
                     struct examples *ex) {
    if (c->n_tokens != c->p.n_seq * c->L)
        return err_set("extract: the pass scanned %lld of its %lld tokens", (long long)c->n_tokens,
                       (long long)(c->p.n_seq * c->L));
    int nf;
    int32_t *feats = sampled_features(c, &nf);
    if (!feats) return -1;
    if (!c->p.features && nf < c->p.n_features)
        log_warn("extract: only %d features are alive (of %d) in %lld tokens, fewer than the %d "
                 "requested: taking all of them",
                 c->n_alive, c->d_sae, (long long)c->n_tokens, c->p.n_features);
    if (c->known_sample && nf < c->p.n_features)
        log_warn("extract: only %d features alive by the SAE's metrics (of %d) fire in the %lld "
                 "scanned tokens among the %d candidates tracked, fewer than the %d requested",
                 nf, c->n_known_alive, (long long)c->n_tokens, c->p.n_explicit,
                 c->p.n_features);
    struct wlist all = {0};
    int32_t *fidx = NULL;
    int rc = 0, short_top = 0, short_rand = 0, short_q = 0, dead_listed = 0;
    for (int j = 0; j < nf && rc == 0; j++) {
        const struct track *t = c->track[feats[j]];
        if (c->count[feats[j]] == 0) dead_listed++;
        int first = all.n;
        rc = select_top(c, t, &all, &short_top);
        if (rc == 0 && c->p.n_random > 0) rc = select_random(c, t, &all, first, &short_rand);
        if (rc == 0 && c->p.n_quantile > 0) rc = select_quantile(c, t, &all, first, &short_q);
        if (rc == 0) qsort(all.w + first, (size_t)(all.n - first), sizeof *all.w, wsel_cmp);
        int32_t *grown = rc == 0 ? xrealloc(fidx, ((size_t)all.n + 1) * sizeof *fidx) : NULL;
        if (!grown) rc = -1;
        else {
            fidx = grown;
            for (int i = first; i < all.n; i++) fidx[i] = j;
        }
    }
    if (dead_listed)
        log_warn("extract: %d listed features never fire in the scanned tokens", dead_listed);
    if (short_top)
        log_warn("extract: %d of %d features have fewer than n_explain + n_score_top = %d "
                 "non-overlapping top windows (rare features; their splits shrink in proportion)",
                 short_top, nf, c->p.n_explain + c->p.n_score_top);
    if (short_rand)
        log_warn("extract: %d of %d features got fewer than %d random windows (too few tokens "
                 "outside their top windows)",
                 short_rand, nf, c->p.n_random);
    if (short_q)
        log_warn("extract: %d of %d features got fewer than %d quantile windows", short_q, nf,
                 c->p.n_quantile);
    if (rc == 0) rc = fill_windows(c, &all, fidx, read_tokens, ctx, ex);
    if (rc == 0) {
        ex->window = c->W;
        ex->offset = c->p.offset;
        ex->top_k = c->p.top_k;
        ex->n_random = c->p.n_random;
        ex->n_quantile = c->p.n_quantile;
        ex->n_explain = c->p.n_explain;
        ex->n_score_top = c->p.n_score_top;
        ex->seed = (int64_t)c->p.seed;
        ex->n_tokens_scanned = c->n_tokens;
        ex->d_sae = c->d_sae;
        ex->n_alive = c->known_sample ? c->n_known_alive : c->n_alive;
        ex->n_features = nf;
        ex->features = feats;
        feats = NULL;
        ex->density = xmalloc((size_t)c->d_sae * sizeof *ex->density);
        ex->max_activation = xmalloc((size_t)c->d_sae * sizeof *ex->max_activation);
        if (!ex->density || !ex->max_activation) rc = -1;
        for (int f = 0; rc == 0 && f < c->d_sae; f++) {
            bool scanned = !c->known_sample || c->rank[f] != INT32_MAX;
            ex->density[f] = scanned ? (double)c->count[f] / (double)c->n_tokens : NAN;
            ex->max_activation[f] = scanned ? c->maxact[f] : NAN;
        }
    }
    free(feats);
    free(fidx);
    free(all.w);
    return rc;
}
