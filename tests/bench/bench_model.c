/* bench_model.c: throughput of the GPT-2 forward pass and of an lm-train step.
 *
 * Prints "key value" lines that tests/bench/model.sh puts next to PyTorch's:
 *   sgemm_gflops                 the machine's sgemm rate (a 2048³ cblas_sgemm, best of 5)
 *   fwd_8x128_tok_s, fwd_8x128_gflops      GPT-2-small dims, random weights, logits
 *   fwd_1x1024_tok_s, fwd_1x1024_gflops    for every position (chunked)
 *   train_tok_s, train_gflops   lm-train steps of a 4-layer 128-wide GPT-2, V 50257,
 *                               B 16, T 128 (lmtrain_run on a random token stream)
 * FLOPs count the matrix products only: per token 2·(12·L·C² + V·C) forward plus
 * the causal attention 2·L·T·C (q·kᵀ and att·v over T/2 keys on average); a
 * training step is 3× the forward.
 *
 * usage: bench_model [--quick]
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"
#include "model/gpt2.h"
#include "model/lm.h"
#include "model/lmtrain.h"
#include "tok/dataset.h"
#include "util/error.h"
#include "util/log.h"

static double sgemm_gflops(void) {
    int n = 2048;
    float *a = malloc((size_t)n * n * sizeof *a), *b = malloc((size_t)n * n * sizeof *b),
          *c = malloc((size_t)n * n * sizeof *c);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double t = now_seconds() - t0;
        best = t < best ? t : best;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

static double flops_per_token(const struct lm_config *c, int T) {
    double C = c->d_model, L = c->n_layer;
    return 2.0 * (12.0 * L * C * C + (double)c->vocab_size * C) + 2.0 * L * T * C;
}

static void bench_forward(struct lm *lm, int B, int T, int reps) {
    struct lm_acts *acts = lm_acts_new(lm, B, T, false);
    int N = B * T, V = lm->cfg.vocab_size, C = lm->cfg.d_model;
    float *logits = malloc((size_t)N * V * sizeof *logits);
    int32_t *tok = malloc((size_t)N * sizeof *tok);
    for (int i = 0; i < N; i++) tok[i] = (i * 7919) % V;
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) { /* the first is a warm-up */
        double t0 = now_seconds();
        lm_embed(lm, acts, tok);
        lm_blocks_forward(lm, acts, 0, lm->cfg.n_layer);
        lm_final_norm(lm, acts);
        for (int r0 = 0; r0 < N; r0 += 256)
            lm_unembed(lm, acts->lnf + (size_t)r0 * C, N - r0 < 256 ? N - r0 : 256,
                       logits + (size_t)r0 * V);
        double t = now_seconds() - t0;
        if (r > 0) best = t < best ? t : best;
    }
    double tok_s = N / best;
    printf("fwd_%dx%d_tok_s %.1f\n", B, T, tok_s);
    printf("fwd_%dx%d_gflops %.1f\n", B, T, tok_s * flops_per_token(&lm->cfg, T) / 1e9);
    free(tok);
    free(logits);
    lm_acts_free(acts);
}

static void bench_train(int steps) {
    char dir[] = "/tmp/autointerp-bench-model-XXXXXX";
    if (!mkdtemp(dir)) return;
    char path[256], out[256];
    snprintf(path, sizeof path, "%s/tokens.h5", dir);
    snprintf(out, sizeof out, "%s/model", dir);
    int64_t n = 200000, off[2] = {0, n};
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    uint64_t s = 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((s >> 33) % 50257);
    }
    struct token_dataset_meta meta = {.tokenizer = "random", .vocab_size = 50257, .eot_id = -1,
                                      .bos_id = -1, .sources = "bench"};
    if (token_dataset_write(path, ids, n, off, 1, &meta) < 0) {
        fprintf(stderr, "bench_model: %s\n", err_msg());
        free(ids);
        return;
    }
    free(ids);
    struct lmtrain_config c;
    lmtrain_defaults(&c);
    c.tokens_path = path;
    c.out_dir = out;
    c.steps = steps;
    c.warmup = 2;
    c.eval_every = 0;
    c.eval_tokens = 128; /* one window at the start and the end */
    c.checkpoint_every = 0;
    c.resume = false;
    struct lmtrain_result r;
    if (lmtrain_run(&c, &r) < 0) {
        fprintf(stderr, "bench_model: %s\n", err_msg());
    } else {
        struct lm_config mc = {.n_layer = 4, .d_model = 128, .vocab_size = 50257};
        printf("train_tok_s %.1f\n", r.tokens_per_s);
        printf("train_gflops %.1f\n", r.tokens_per_s * 3.0 * flops_per_token(&mc, 128) / 1e9);
        lmtrain_result_free(&r);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_model: could not remove %s\n", dir);
}

int main(int argc, char **argv) {
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    h5_init();
    log_set_level(LOG_WARN);
    printf("blas_threads %d\n", openblas_get_num_threads());
    printf("sgemm_gflops %.1f\n", sgemm_gflops());
    struct lm_config cfg = {.arch = LM_GPT2, .n_layer = 12, .d_model = 768, .n_head = 12,
                            .vocab_size = 50257, .max_seq = 1024, .norm_eps = 1e-5f};
    struct lm *lm = calloc(1, sizeof *lm);
    if (gpt2_new(&cfg, lm) < 0) {
        fprintf(stderr, "bench_model: %s\n", err_msg());
        return 1;
    }
    lm->path = strdup("random gpt2-small");
    struct gpt2 *g = gpt2_of(lm);
    uint64_t s = 5;
    for (size_t i = 0; i < g->n_params; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        g->memory[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 0.04f;
    }
    bench_forward(lm, 8, 128, quick ? 1 : 3);
    bench_forward(lm, 1, 1024, quick ? 1 : 3);
    lm_free(lm);
    bench_train(quick ? 5 : 20);
    return 0;
}
