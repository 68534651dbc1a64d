/* test_gpt2_threads.c: the GPT-2 forward and backward passes (and lm_batch_ce)
 * do not depend on how the work is spread over threads.
 *
 * The model splits work across threads (attention per (batch, head), row or
 * column ranges of the elementwise layers) but computes every item exactly as
 * the serial code would. OpenBLAS itself is not bit-reproducible across its
 * thread counts (its split decides which elements its edge kernels compute), so
 * the first test keeps BLAS single-threaded and varies only our loops' thread
 * count (parallel_set_threads: 1, 2, 3), on a batch large enough that every
 * loop splits; the second lets BLAS thread too and checks that runs with the
 * same count agree (attention items are handed out dynamically). T > 64 spans
 * several attention blocks with a partial last one, and dropout is on so that
 * the training path is covered.
 */
#include "testutil.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpt2.h"
#include "model/lm.h"
#include "util/error.h"
#include "util/parallel.h"

struct dims {
    int L, C, NH, V, B, T;
};

struct run {
    float *logits;  /* (N,V) */
    float *d_resid; /* (N,C) gradient at resid[0] */
    float *grads;   /* n_params */
    double ce;
};

static struct lm *random_gpt2(const struct dims *d) {
    struct lm_config cfg = {.arch = LM_GPT2, .n_layer = d->L, .d_model = d->C,
                            .n_head = d->NH, .vocab_size = d->V, .max_seq = d->T,
                            .norm_eps = 1e-5f};
    struct lm *lm = calloc(1, sizeof *lm);
    if (gpt2_new(&cfg, lm) < 0) fail_msg("%s", err_msg());
    lm->path = strdup("random gpt2");
    struct gpt2 *g = gpt2_of(lm);
    uint64_t s = 11;
    for (size_t i = 0; i < g->n_params; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        g->memory[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 0.3f;
    }
    return lm;
}

/* Forward to logits, then backward of Σ logits·w for a fixed w into every
 * parameter and resid[0]; then lm_batch_ce. */
static void run_model(struct lm *lm, const struct dims *d, const int32_t *tok, struct run *r) {
    struct gpt2 *g = gpt2_of(lm);
    int L = d->L, C = d->C, V = d->V, B = d->B, T = d->T, N = B * T;
    struct lm_acts *acts = lm_acts_new(lm, B, T, true);
    assert_non_null(acts);
    r->logits = malloc((size_t)N * V * sizeof(float));
    r->d_resid = malloc((size_t)N * C * sizeof(float));
    r->grads = calloc(g->n_params, sizeof(float));
    float *dlogits = malloc((size_t)N * V * sizeof(float));
    float *d_lnf = calloc((size_t)N * C, sizeof(float));
    for (size_t i = 0; i < (size_t)N * V; i++) dlogits[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    g->dropout = 0.1f;
    g->dropout_seed = 42;
    assert_int_equal(lm_embed(lm, acts, tok), 0);
    assert_int_equal(lm_blocks_forward(lm, acts, 0, L), 0);
    assert_int_equal(lm_final_norm(lm, acts), 0);
    assert_int_equal(lm_unembed(lm, acts->lnf, N, r->logits), 0);
    assert_int_equal(lm_unembed_backward(lm, acts->lnf, dlogits, N, d_lnf, r->grads), 0);
    assert_int_equal(lm_final_norm_backward_grads(lm, acts, d_lnf, r->d_resid, r->grads), 0);
    assert_int_equal(lm_blocks_backward(lm, acts, 0, L, r->d_resid, NULL, r->grads), 0);
    assert_int_equal(lm_embed_backward(lm, acts, r->d_resid, r->grads), 0);
    g->dropout = 0.0f;
    lm_acts_free(acts);
    acts = lm_acts_new(lm, B, T, false);
    int64_t n;
    assert_int_equal(lm_batch_ce(lm, acts, tok, &r->ce, &n), 0);
    assert_int_equal(n, B * (T - 1));
    lm_acts_free(acts);
    free(dlogits);
    free(d_lnf);
}

static void free_run(struct run *r) {
    free(r->logits);
    free(r->d_resid);
    free(r->grads);
}

/* Runs the model with blas[k] OpenBLAS threads and ours[k] threads for our
 * loops (0: as many as BLAS) for k < n, and checks that all runs agree. */
static void check_runs_agree(const struct dims *d, const int *blas, const int *ours, int n) {
    struct lm *lm = random_gpt2(d);
    int N = d->B * d->T;
    int32_t *tok = malloc((size_t)N * sizeof *tok);
    for (int i = 0; i < N; i++) tok[i] = (i * 7919 + 13) % d->V;
    struct run r[3];
    assert_true(n <= 3);
    for (int k = 0; k < n; k++) {
        openblas_set_num_threads(blas[k]);
        parallel_set_threads(ours[k]);
        run_model(lm, d, tok, &r[k]);
    }
    openblas_set_num_threads(2);
    parallel_set_threads(0);
    size_t np = gpt2_n_params(lm);
    for (int k = 1; k < n; k++) {
        assert_memory_equal(r[0].logits, r[k].logits, (size_t)N * d->V * sizeof(float));
        assert_memory_equal(r[0].d_resid, r[k].d_resid, (size_t)N * d->C * sizeof(float));
        assert_memory_equal(r[0].grads, r[k].grads, np * sizeof(float));
        assert_true(r[0].ce == r[k].ce);
    }
    /* and the gradients are not trivially zero */
    double s = 0;
    for (size_t i = 0; i < np; i++) s += (double)r[0].grads[i] * r[0].grads[i];
    assert_true(s > 0);
    for (int k = 0; k < n; k++) free_run(&r[k]);
    free(tok);
    lm_free(lm);
}

/* 2080 rows of 128: every row, column and element loop has work for 3 threads,
 * and there are 16 (batch, head) items. */
static void test_our_loops_give_the_same_bits_with_1_2_and_3_threads(void **state) {
    (void)state;
    struct dims d = {.L = 2, .C = 128, .NH = 4, .V = 300, .B = 4, .T = 520};
    int blas[3] = {1, 1, 1}, ours[3] = {1, 2, 3};
    check_runs_agree(&d, blas, ours, 3);
}

static void test_runs_with_threaded_blas_are_bit_identical(void **state) {
    (void)state;
    struct dims d = {.L = 2, .C = 64, .NH = 4, .V = 300, .B = 3, .T = 150};
    int blas[2] = {3, 3}, ours[2] = {0, 0};
    check_runs_agree(&d, blas, ours, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_our_loops_give_the_same_bits_with_1_2_and_3_threads),
        cmocka_unit_test(test_runs_with_threaded_blas_are_bit_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
