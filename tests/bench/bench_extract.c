/* bench_extract.c: tokens/s of the extraction pass (forward to the hook, dense
 * encode of every feature, density/max for all, windows for the sampled ones).
 *
 *     bench_extract gpt2s|small N_TOKENS [BATCH [pass|sae]]
 *
 * pass (default): every feature is encoded (alive set, density and maximum of all
 * features measured in the pass). sae: extract.alive_from "sae", the alive set is
 * given (in the pipeline: the SAE file's evaluation metrics; here every feature,
 * which is what this random SAE's pass finds) and only the 200 sampled features
 * and 20 spare candidates are encoded (GFLOP/s counts the 200).
 *
 * gpt2s: GPT-2 small dimensions (12 layers, d 768, 12 heads, vocab 50257, context
 * 1024) with random weights, a 60x SAE (46,080 features) at blocks.6.hook_resid_pre.
 * small: 4 layers, d 128, 4 heads, vocab 4096, context 128, a 50x SAE (6,400
 * features) at blocks.2.hook_resid_pre. Prints one line per run with tokens/s and
 * the achieved GFLOP/s against this machine's measured sgemm rate.
 */
#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "extract/extract.h"
#include "model/gpt2.h"
#include "tok/dataset.h"
#include "util/error.h"
#include "util/log.h"

struct kind {
    const char *name;
    int n_layer, d, heads, vocab, ctx, ratio, layer;
};

static const struct kind kinds[] = {
    {"gpt2s", 12, 768, 12, 50257, 1024, 60, 6},
    {"small", 4, 128, 4, 4096, 128, 50, 2},
};

static uint64_t rng = 88172645463325252ULL;
static float unif(void) { /* xorshift64, [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) / 8388608.0f - 1.0f;
}

static double sgemm_rate(void) {
    int n = 1536;
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = unif();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    double t0 = now_seconds();
    int reps = 5;
    for (int r = 0; r < reps; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    double secs = now_seconds() - t0;
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n * reps / secs / 1e9;
}

/* Forward FLOPs per token up to layer L: 24 C^2 per block (qkv, proj, mlp) plus
 * attention 2*T*C (scores and values, causal: half of 4*T*C). */
static double flops_per_token(const struct kind *k, int n_encoded) {
    double C = k->d, T = k->ctx;
    return k->layer * (24 * C * C + 2 * T * C) + 2.0 * C * n_encoded;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_extract gpt2s|small N_TOKENS [BATCH [pass|sae]]\n");
        return 2;
    }
    log_set_level(LOG_WARN);
    const struct kind *k = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (strcmp(argv[1], kinds[i].name) == 0) k = &kinds[i];
    if (!k) return 2;
    int64_t n_tokens = atoll(argv[2]);
    int batch = argc > 3 ? atoi(argv[3]) : 0;
    bool known = argc > 4 && strcmp(argv[4], "sae") == 0;

    struct lm *lm = calloc(1, sizeof *lm);
    struct lm_config cfg = {.arch = LM_GPT2, .n_layer = k->n_layer, .d_model = k->d,
                            .n_head = k->heads, .n_kv_head = k->heads, .d_ff = 4 * k->d,
                            .vocab_size = k->vocab, .max_seq = k->ctx, .norm_eps = 1e-5f,
                            .shared_classifier = true};
    if (gpt2_new(&cfg, lm) != 0) {
        fprintf(stderr, "%s\n", err_msg());
        return 1;
    }
    struct gpt2 *g = gpt2_of(lm);
    for (size_t i = 0; i < g->n_params; i++) g->memory[i] = 0.02f * unif();
    for (int i = 0; i < k->n_layer * k->d; i++) g->p.ln1w[i] = g->p.ln2w[i] = 1.0f;

    char path[] = "/tmp/bench-extract-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    int32_t *ids = malloc((size_t)n_tokens * sizeof *ids);
    for (int64_t i = 0; i < n_tokens; i++) ids[i] = (int32_t)((unif() + 1) * 0.5f * (k->vocab - 1));
    int64_t offs[2] = {0, n_tokens};
    struct token_dataset_meta meta = {.tokenizer = "bench", .vocab_size = k->vocab, .eot_id = -1,
                                      .bos_id = -1, .sources = "random"};
    struct token_dataset d;
    if (token_dataset_write(path, ids, n_tokens, offs, 1, &meta) != 0 ||
        token_dataset_open(&d, path) != 0) {
        fprintf(stderr, "%s\n", err_msg());
        return 1;
    }
    free(ids);

    int d_sae = k->ratio * k->d;
    float *W = malloc((size_t)d_sae * k->d * sizeof *W), *b = calloc((size_t)d_sae, sizeof *b);
    for (size_t i = 0; i < (size_t)d_sae * k->d; i++) W[i] = unif() / 27.7f;
    uint8_t *alive = malloc((size_t)d_sae);
    memset(alive, 1, (size_t)d_sae);
    struct extract_sae sae = {.name = "bench", .resid_index = k->layer, .d_in = k->d,
                              .d_sae = d_sae, .W_enc = W, .b_enc = b,
                              .known_alive = known ? alive : NULL};
    struct extract_settings s;
    extract_settings_default(&s);
    s.context = k->ctx;
    s.batch = batch;
    s.prepend_bos = false;
    struct extract_source src;
    struct examples ex = {0};
    struct collect_stats st;
    double secs = 0;
    if (extract_lm_source_open(&src, lm, &d, &s, k->layer) != 0 ||
        extract_stream(&s, &src, &sae, 1, &ex, &st, &secs) != 0) {
        fprintf(stderr, "%s\n", err_msg());
        return 1;
    }
    /* The forward alone over the same data, to show where the time goes. */
    double t0 = now_seconds();
    for (int64_t q = 0; q < src.n_seq; q += src.max_batch) {
        int nb = src.n_seq - q < src.max_batch ? (int)(src.n_seq - q) : src.max_batch;
        if (src.forward(src.ctx, q, nb) != 0) return 1;
    }
    double fwd = now_seconds() - t0;
    double rate = sgemm_rate(), tps = (double)st.n_tokens / secs;
    double gf = tps * flops_per_token(k, known ? ex.n_features : d_sae) / 1e9;
    printf("%-7s %-6s T=%-5d batch=%-3d d_sae=%-6d tokens=%-7lld %8.1f tok/s  %6.1f GFLOP/s "
           "(%.0f%% of sgemm %.0f GFLOP/s)  forward %.0f%% of the time  features=%d windows=%lld "
           "tracked_peak=%.1f MB\n",
           known ? "c-sae" : "c", k->name, k->ctx, src.max_batch, d_sae, (long long)st.n_tokens, tps, gf,
           100 * gf / rate, rate, 100 * fwd / secs, ex.n_features, (long long)ex.n_windows,
           st.peak_tracked_bytes / 1e6);
    extract_lm_source_close(&src);
    examples_free(&ex);
    token_dataset_close(&d);
    unlink(path);
    free(W);
    free(b);
    free(alive);
    lm_free(lm);
    return 0;
}
