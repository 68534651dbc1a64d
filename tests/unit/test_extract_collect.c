/* test_extract_collect.c: the example collector against a brute force.
 *
 * Synthetic pre-activations with small integer values (so ties are common and
 * every sum is exact) are fed to the collector in several batch and block sizes;
 * the test recomputes everything from the full activation table: density and
 * maximum of every feature, the greedy non-overlapping top-k of each sampled
 * feature (all candidates sorted by activation then position), and checks the
 * random and quantile windows against their definitions.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "extract/collect.h"
#include "util/error.h"

struct synth {
    int T, r0, d_sae;
    int64_t n_seq;
    float *pre;  /* [n_seq][T][d_sae] pre-activations (bias not added) */
    float *bias; /* [d_sae] */
};

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* Feature f fires with a probability that depends on f (some never fire), with
 * integer activations 1..6 (lots of ties); bias is an integer too. */
static void synth_make(struct synth *s, int T, int r0, int64_t n_seq, int d_sae, uint64_t seed) {
    s->T = T;
    s->r0 = r0;
    s->n_seq = n_seq;
    s->d_sae = d_sae;
    s->pre = malloc((size_t)n_seq * T * d_sae * sizeof(float));
    s->bias = malloc((size_t)d_sae * sizeof(float));
    for (int f = 0; f < d_sae; f++) s->bias[f] = (float)(f % 3) - 1.0f; /* -1, 0, 1 */
    uint64_t st = seed;
    for (int64_t i = 0; i < n_seq * T; i++)
        for (int f = 0; f < d_sae; f++) {
            int rate = f % 7 == 6 ? 0 : 2 + f % 7 * 6; /* percent; every 7th feature dead */
            float v = -3.0f;
            if ((int)(lcg(&st) % 100) < rate) v = (float)(1 + lcg(&st) % 6);
            /* bias +1 must not wake dead features: keep them well below zero */
            s->pre[(size_t)i * d_sae + f] = v - s->bias[f] + (v < 0 ? -2.0f : 0.0f);
        }
}

static void synth_free(struct synth *s) {
    free(s->pre);
    free(s->bias);
}

static inline float act_at(const struct synth *s, int64_t seq, int p, int f) {
    float v = s->pre[((size_t)seq * s->T + p) * s->d_sae + f] + s->bias[f];
    return v > 0 ? v : 0;
}

static int read_tokens(void *ctx, int64_t pos, int n, int32_t *out) {
    (void)ctx;
    for (int i = 0; i < n; i++) out[i] = (int32_t)((pos + i) * 7 % 1000);
    return 0;
}

/* Run the collector over the synthetic data in batches of B sequences and
 * feature blocks of nb features (last block shorter), blocks in reverse order
 * when reverse is set. */
static void run_collector(const struct synth *s, const struct collect_params *p, int B, int nb,
                          int reverse, struct examples *ex, struct collect_stats *st) {
    struct collector *c;
    assert_int_equal(collector_new(p, s->d_sae, &c), 0);
    int N = B * s->T;
    float *blk = malloc((size_t)nb * N * sizeof(float));
    for (int64_t q = 0; q < s->n_seq; q += B) {
        int b = (int)(s->n_seq - q < B ? s->n_seq - q : B);
        assert_int_equal(collector_batch(c, q, b), 0);
        int nblocks = (s->d_sae + nb - 1) / nb;
        for (int k = 0; k < nblocks; k++) {
            int kb = reverse ? nblocks - 1 - k : k;
            int f0 = kb * nb, nf = s->d_sae - f0 < nb ? s->d_sae - f0 : nb;
            int n = b * s->T;
            for (int i = 0; i < nf; i++)
                for (int j = 0; j < n; j++)
                    blk[(size_t)i * n + j] = s->pre[((size_t)q * s->T + j) * s->d_sae + f0 + i];
            assert_int_equal(collector_block(c, f0, nf, blk, s->bias), 0);
        }
    }
    memset(ex, 0, sizeof *ex);
    assert_int_equal(collector_finish(c, read_tokens, NULL, ex), 0);
    if (st) collector_get_stats(c, st);
    collector_free(c);
    free(blk);
}

/* ---- brute force ---- */
struct bcand {
    float act;
    int64_t pos, start;
};

static int bcand_cmp(const void *a, const void *b) {
    const struct bcand *x = a, *y = b;
    if (x->act != y->act) return x->act > y->act ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static int64_t clamp_start(const struct collect_params *p, int L, int64_t seq, int local) {
    int st = local - p->offset;
    if (st < 0) st = 0;
    if (st > L - p->window) st = L - p->window;
    return seq * L + st;
}

/* Greedy non-overlapping top-k of feature f over all candidates at once. */
static int brute_top(const struct synth *s, const struct collect_params *p, int f,
                     struct bcand *out) {
    int L = s->T - s->r0, n = 0, kept = 0;
    struct bcand *all = malloc((size_t)s->n_seq * L * sizeof *all);
    for (int64_t q = 0; q < s->n_seq; q++)
        for (int i = 0; i < L; i++) {
            float a = act_at(s, q, s->r0 + i, f);
            if (a > 0) all[n++] = (struct bcand){a, q * L + i, clamp_start(p, L, q, i)};
        }
    qsort(all, (size_t)n, sizeof *all, bcand_cmp);
    for (int i = 0; i < n && kept < p->top_k; i++) {
        int clash = 0;
        for (int j = 0; j < kept && !clash; j++)
            clash = llabs(all[i].start - out[j].start) < p->window;
        if (!clash) out[kept++] = all[i];
    }
    free(all);
    return kept;
}

static float act_at_pos(const struct synth *s, int f, int64_t pos) {
    int L = s->T - s->r0;
    return act_at(s, pos / L, s->r0 + (int)(pos % L), f);
}

static void check_window_acts(const struct synth *s, const struct examples *ex, int64_t w) {
    int f = ex->features[ex->win_feature[w]];
    for (int i = 0; i < ex->window; i++) {
        assert_float_equal(ex->win_acts[w * ex->window + i],
                           act_at_pos(s, f, ex->win_source[w] + i), 0);
        assert_int_equal(ex->win_tokens[w * ex->window + i], (ex->win_source[w] + i) * 7 % 1000);
    }
}

static void check_against_brute(const struct synth *s, const struct collect_params *p,
                                const struct examples *ex) {
    int L = s->T - s->r0;
    /* density and max of every feature */
    int alive = 0;
    for (int f = 0; f < s->d_sae; f++) {
        int64_t cnt = 0;
        float mx = 0;
        for (int64_t q = 0; q < s->n_seq; q++)
            for (int i = s->r0; i < s->T; i++) {
                float a = act_at(s, q, i, f);
                cnt += a > 0;
                if (a > mx) mx = a;
            }
        alive += cnt > 0;
        assert_true(fabs(ex->density[f] - (double)cnt / (double)(s->n_seq * L)) < 1e-12);
        assert_float_equal(ex->max_activation[f], mx, 0);
    }
    assert_int_equal(ex->n_alive, alive);
    assert_int_equal(ex->n_tokens_scanned, s->n_seq * L);
    struct bcand *top = malloc((size_t)p->top_k * sizeof *top);
    for (int j = 0; j < ex->n_features; j++) {
        int f = ex->features[j];
        int kept = brute_top(s, p, f, top);
        int64_t first, count;
        examples_feature_windows(ex, j, &first, &count);
        int want_e = p->n_explain, want_s = p->n_score_top;
        if (kept < want_e + want_s) {
            want_s = kept * p->n_score_top / (p->n_explain + p->n_score_top);
            want_e = kept - want_s;
        }
        int n_e = 0, n_s = 0, n_r = 0, n_q = 0;
        for (int64_t w = first; w < first + count; w++) {
            check_window_acts(s, ex, w);
            /* all windows of a feature are pairwise disjoint */
            for (int64_t v = first; v < w; v++)
                assert_true(llabs(ex->win_source[w] - ex->win_source[v]) >= ex->window);
            /* and lie inside one sequence */
            assert_int_equal(ex->win_source[w] / L, (ex->win_source[w] + ex->window - 1) / L);
            if (w > first) { /* sorted by split, then rank */
                assert_true(ex->win_split[w] >= ex->win_split[w - 1]);
                if (ex->win_split[w] == ex->win_split[w - 1])
                    assert_true(ex->win_rank[w] >= ex->win_rank[w - 1]);
            }
            switch (ex->win_split[w]) {
            case SPLIT_EXPLAIN:
            case SPLIT_SCORE_TOP: {
                int r = ex->win_rank[w];
                assert_true(r >= 0 && r < kept);
                assert_int_equal(ex->win_source[w], top[r].start);
                if (ex->win_split[w] == SPLIT_EXPLAIN) n_e++;
                else n_s++;
                break;
            }
            case SPLIT_SCORE_RANDOM:
                assert_int_equal(ex->win_rank[w], -1);
                n_r++;
                break;
            default:
                n_q++;
                break;
            }
        }
        assert_int_equal(n_e, want_e);
        assert_int_equal(n_s, want_s);
        assert_int_equal(n_r, p->n_random);
        assert_true(n_q <= p->n_quantile);
    }
    free(top);
}

static void assert_same_examples(const struct examples *a, const struct examples *b) {
    assert_int_equal(a->n_features, b->n_features);
    assert_memory_equal(a->features, b->features, (size_t)a->n_features * sizeof *a->features);
    assert_int_equal(a->n_windows, b->n_windows);
    size_t n = (size_t)a->n_windows, W = (size_t)a->window;
    assert_memory_equal(a->win_feature, b->win_feature, n * sizeof(int32_t));
    assert_memory_equal(a->win_split, b->win_split, n);
    assert_memory_equal(a->win_rank, b->win_rank, n * sizeof(int32_t));
    assert_memory_equal(a->win_source, b->win_source, n * sizeof(int64_t));
    assert_memory_equal(a->win_acts, b->win_acts, n * W * sizeof(float));
    assert_memory_equal(a->density, b->density, (size_t)a->d_sae * sizeof(double));
}

static struct collect_params base_params(const struct synth *s) {
    return (struct collect_params){
        .T = s->T, .r0 = s->r0, .n_seq = s->n_seq, .window = 6, .offset = 4, .top_k = 9,
        .n_random = 3, .n_quantile = 0, .quantile_bands = 3, .n_explain = 4, .n_score_top = 3,
        .n_features = 20, .seed = 1234,
    };
}

static void test_top_k_equals_brute_force_for_any_batching(void **state) {
    (void)state;
    struct synth s;
    synth_make(&s, 24, 0, 30, 42, 7);
    struct collect_params p = base_params(&s);
    struct examples ref, ex;
    run_collector(&s, &p, 30, 42, 0, &ref, NULL);
    assert_int_equal(ref.n_features, 20);
    check_against_brute(&s, &p, &ref);
    int batches[] = {1, 4, 7}, blocks[] = {1, 5, 16};
    for (int i = 0; i < 3; i++) {
        run_collector(&s, &p, batches[i], blocks[i], i == 1, &ex, NULL);
        assert_same_examples(&ref, &ex);
        examples_free(&ex);
    }
    examples_free(&ref);
    synth_free(&s);
}

static void test_bos_positions_are_ignored(void **state) {
    (void)state;
    struct synth s;
    synth_make(&s, 20, 1, 25, 30, 99);
    /* make position 0 (the BOS) the strongest everywhere: it must not show up */
    for (int64_t q = 0; q < s.n_seq; q++)
        for (int f = 0; f < s.d_sae; f++) s.pre[(size_t)q * s.T * s.d_sae + f] = 100.0f;
    struct collect_params p = base_params(&s);
    struct examples ex;
    run_collector(&s, &p, 3, 8, 0, &ex, NULL);
    check_against_brute(&s, &p, &ex);
    for (int f = 0; f < s.d_sae; f++) assert_true(ex.max_activation[f] < 50.0f);
    examples_free(&ex);
    synth_free(&s);
}

static void test_sample_is_seeded_alive_and_capped(void **state) {
    (void)state;
    struct synth s;
    synth_make(&s, 16, 0, 20, 70, 5);
    struct collect_params p = base_params(&s);
    p.n_features = 25;
    struct examples a, b, c;
    run_collector(&s, &p, 2, 9, 0, &a, NULL);
    run_collector(&s, &p, 20, 70, 1, &b, NULL);
    assert_same_examples(&a, &b); /* same seed: same sample, whatever the batching */
    assert_int_equal(a.n_features, 25);
    for (int j = 0; j < a.n_features; j++) {
        assert_true(a.density[a.features[j]] > 0); /* alive only */
        for (int i = 0; i < j; i++) assert_int_not_equal(a.features[i], a.features[j]);
    }
    p.seed = 1235;
    run_collector(&s, &p, 2, 9, 0, &c, NULL);
    assert_memory_not_equal(a.features, c.features, 25 * sizeof(int32_t));
    examples_free(&c);
    /* more requested than alive: all alive are taken */
    p.n_features = 1000;
    run_collector(&s, &p, 5, 13, 0, &c, NULL);
    assert_int_equal(c.n_features, c.n_alive);
    assert_int_equal(c.n_alive, 60); /* every 7th of 70 is dead */
    examples_free(&a);
    examples_free(&b);
    examples_free(&c);
    synth_free(&s);
}

static void test_sampling_is_uniform_over_alive(void **state) {
    (void)state;
    /* Over many seeds each alive feature is picked about equally often. */
    struct synth s;
    synth_make(&s, 8, 0, 6, 28, 11);
    struct collect_params p = base_params(&s);
    p.window = 4;
    p.offset = 1;
    p.n_features = 6;
    p.n_random = 0;
    int hits[28] = {0}, n_alive = 0;
    double density[28];
    const int runs = 400;
    for (int r = 0; r < runs; r++) {
        p.seed = (uint64_t)r;
        struct examples ex;
        run_collector(&s, &p, 6, 28, 0, &ex, NULL);
        for (int j = 0; j < ex.n_features; j++) hits[ex.features[j]]++;
        memcpy(density, ex.density, sizeof density);
        n_alive = ex.n_alive;
        examples_free(&ex);
    }
    /* 6 of the n_alive picked per run: expect m = 400*6/n_alive each */
    double m = runs * 6.0 / n_alive, sd = sqrt(m * (1 - 6.0 / n_alive));
    assert_true(n_alive >= 18);
    for (int f = 0; f < 28; f++) {
        if (density[f] == 0) assert_int_equal(hits[f], 0);
        else assert_true(fabs(hits[f] - m) < 4.5 * sd);
    }
    synth_free(&s);
}

static void test_explicit_features_keep_order(void **state) {
    (void)state;
    struct synth s;
    synth_make(&s, 16, 0, 12, 21, 3);
    struct collect_params p = base_params(&s);
    int32_t list[] = {20, 3, 6, 11}; /* 6 and 20 are dead */
    p.features = list;
    p.n_explicit = 4;
    struct examples ex;
    run_collector(&s, &p, 5, 4, 0, &ex, NULL);
    assert_int_equal(ex.n_features, 4);
    assert_memory_equal(ex.features, list, sizeof list);
    check_against_brute(&s, &p, &ex);
    examples_free(&ex);
    int32_t dup[] = {1, 1};
    p.features = dup;
    p.n_explicit = 2;
    struct collector *c;
    assert_int_equal(collector_new(&p, s.d_sae, &c), -1);
    assert_non_null(strstr(err_msg(), "twice"));
    int32_t out_of_range[] = {21};
    p.features = out_of_range;
    p.n_explicit = 1;
    assert_int_equal(collector_new(&p, s.d_sae, &c), -1);
    assert_non_null(strstr(err_msg(), "extract.features"));
    synth_free(&s);
}

static void test_quantile_windows_fall_in_their_bands(void **state) {
    (void)state;
    struct synth s;
    synth_make(&s, 32, 0, 60, 14, 21);
    /* continuous activations for a spread of values */
    uint64_t st = 77;
    for (size_t i = 0; i < (size_t)s.n_seq * s.T * s.d_sae; i++)
        if (s.pre[i] > -1.5f) s.pre[i] = (float)(lcg(&st) % 100000) / 1000.0f - s.bias[i % s.d_sae];
    struct collect_params p = base_params(&s);
    p.n_quantile = 6;
    p.quantile_bands = 3;
    p.n_features = 5;
    struct examples a, b;
    run_collector(&s, &p, 60, 14, 0, &a, NULL);
    run_collector(&s, &p, 7, 3, 1, &b, NULL);
    assert_same_examples(&a, &b);
    check_against_brute(&s, &p, &a);
    for (int j = 0; j < a.n_features; j++) {
        int64_t first, count;
        examples_feature_windows(&a, j, &first, &count);
        float band_lo[3] = {INFINITY, INFINITY, INFINITY}, band_hi[3] = {0, 0, 0};
        int n_q = 0;
        for (int64_t w = first; w < first + count; w++) {
            if (a.win_split[w] != SPLIT_SCORE_QUANTILE) continue;
            n_q++;
            float mx = 0;
            for (int i = 0; i < a.window; i++)
                if (a.win_acts[w * a.window + i] > mx) mx = a.win_acts[w * a.window + i];
            int q = a.win_rank[w];
            assert_true(q >= 0 && q < 3);
            if (mx < band_lo[q]) band_lo[q] = mx;
            if (mx > band_hi[q]) band_hi[q] = mx;
        }
        assert_true(n_q >= 4); /* plenty of candidates in this data */
        for (int q = 0; q + 1 < 3; q++)
            if (band_hi[q] > 0 && band_lo[q + 1] < INFINITY) assert_true(band_hi[q] < band_lo[q + 1]);
    }
    examples_free(&a);
    examples_free(&b);
    synth_free(&s);
}

/* Memory of the per-feature state does not grow with the data. */
static void test_tracked_memory_is_independent_of_data_size(void **state) {
    (void)state;
    struct synth s1, s4;
    synth_make(&s1, 32, 0, 25, 40, 8);
    synth_make(&s4, 32, 0, 100, 40, 8);
    struct collect_params p1 = base_params(&s1), p4 = base_params(&s4);
    p1.n_quantile = p4.n_quantile = 4;
    struct examples e1, e4;
    struct collect_stats st1, st4;
    run_collector(&s1, &p1, 5, 40, 0, &e1, &st1);
    run_collector(&s4, &p4, 5, 40, 0, &e4, &st4);
    assert_true(st1.peak_tracked <= p1.n_features + 1);
    assert_true(st4.peak_tracked <= p4.n_features + 1);
    /* quantile bins are allocated as values show up: allow a few of them */
    double ratio = (double)st4.peak_tracked_bytes / (double)st1.peak_tracked_bytes;
    assert_true(ratio < 1.25);
    examples_free(&e1);
    examples_free(&e4);
    synth_free(&s1);
    synth_free(&s4);
}

static void test_bad_parameters_are_named(void **state) {
    (void)state;
    struct collect_params p = {.T = 16, .n_seq = 4, .window = 17, .offset = 2, .top_k = 4,
                               .n_explain = 2, .n_score_top = 2, .n_features = 3};
    struct collector *c;
    assert_int_equal(collector_new(&p, 10, &c), -1);
    assert_non_null(strstr(err_msg(), "extract.window"));
    p.window = 8;
    p.offset = 8;
    assert_int_equal(collector_new(&p, 10, &c), -1);
    assert_non_null(strstr(err_msg(), "extract.offset"));
    p.offset = 2;
    p.n_score_top = 3;
    assert_int_equal(collector_new(&p, 10, &c), -1);
    assert_non_null(strstr(err_msg(), "top_k"));
    p.n_score_top = 2;
    assert_int_equal(collector_new(&p, 10, &c), 0);
    struct examples ex = {0};
    assert_int_equal(collector_batch(c, 0, 2), 0);
    assert_int_equal(collector_finish(c, read_tokens, NULL, &ex), -1); /* half a pass */
    assert_non_null(strstr(err_msg(), "scanned"));
    examples_free(&ex);
    collector_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_k_equals_brute_force_for_any_batching),
        cmocka_unit_test(test_bos_positions_are_ignored),
        cmocka_unit_test(test_sample_is_seeded_alive_and_capped),
        cmocka_unit_test(test_sampling_is_uniform_over_alive),
        cmocka_unit_test(test_explicit_features_keep_order),
        cmocka_unit_test(test_quantile_windows_fall_in_their_bands),
        cmocka_unit_test(test_tracked_memory_is_independent_of_data_size),
        cmocka_unit_test(test_bad_parameters_are_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
