/* test_extract_run.c: the extraction stage end to end on a tiny random GPT-2.
 *
 * Model, token dataset and SAE files are made here with seeded random weights.
 * Checks: top windows and activations against a brute force that runs the model
 * one sequence at a time and encodes in double precision; SAEs at two hooks in one
 * pass equal separate runs; reruns skip complete outputs and redo changed ones; a
 * killed run leaves nothing that passes for complete; examples_load refuses
 * partial files; peak memory does not grow with the number of tokens; the CLI.
 */
#include "testutil.h"

#include <math.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "extract/extract.h"
#include "io/atomic.h"
#include "io/h5.h"
#include "model/gpt2.h"
#include "model/lm.h"
#include "sae/metrics.h"
#include "sae/sae.h"
#include "sae/sae_io.h"
#include "tok/dataset.h"
#include "util/error.h"
#include "util/log.h"

#define VOCAB 300
#define DM 32
#define CTX 64

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}
static float unif(uint64_t *s) { return (float)lcg(s) / 2147483648.0f; } /* [0, 1) */

static void make_model(const char *dir, uint64_t seed) {
    struct lm lm = {0};
    struct lm_config cfg = {.arch = LM_GPT2, .n_layer = 3, .d_model = DM, .n_head = 4,
                            .n_kv_head = 4, .d_ff = 4 * DM, .vocab_size = VOCAB,
                            .max_seq = CTX, .norm_eps = 1e-5f, .shared_classifier = true};
    assert_int_equal(gpt2_new(&cfg, &lm), 0);
    struct gpt2 *g = gpt2_of(&lm);
    for (size_t i = 0; i < g->n_params; i++) g->memory[i] = (unif(&seed) - 0.5f) * 0.4f;
    for (int i = 0; i < cfg.n_layer * DM; i++) g->p.ln1w[i] = g->p.ln2w[i] = 1.0f;
    assert_int_equal(gpt2_save(&lm, dir, -1), 0);
    gpt2_free_impl(&lm);
}

static void make_tokens(const char *path, int64_t n, uint64_t seed) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)(lcg(&seed) % VOCAB);
    int64_t offs[2] = {0, n};
    struct token_dataset_meta meta = {.tokenizer = "test", .vocab_size = VOCAB, .eot_id = -1,
                                      .bos_id = -1, .sources = "synthetic"};
    assert_int_equal(token_dataset_write(path, ids, n, offs, 1, &meta), 0);
    free(ids);
}

/* An SAE whose features fire sparsely; every 5th feature is dead. With density
 * (d_sae entries), the file also gets evaluation metrics measured on n_tokens. */
static void make_sae_metrics(const char *path, const char *name, int layer, int d_sae,
                             uint64_t seed, const double *density, int64_t n_tokens) {
    struct sae s;
    assert_int_equal(sae_new(&s, DM, d_sae), 0);
    assert_int_equal(sae_init(&s, seed), 0);
    for (int f = 0; f < d_sae; f++) {
        s.p.b_enc[f] = -0.5f;
        if (f % 5 == 0) {
            memset(s.p.W_enc + (size_t)f * DM, 0, DM * sizeof(float));
            s.p.b_enc[f] = -1.0f;
        }
    }
    hid_t h = h5_create(path);
    assert_true(h >= 0);
    char hook[64];
    snprintf(hook, sizeof hook, "blocks.%d.hook_resid_pre", layer);
    assert_int_equal(h5_attr_str(h, "format", SAE_FILE_FORMAT), 0);
    assert_int_equal(h5_attr_i64(h, "format_version", SAE_FILE_VERSION), 0);
    const char *strs[][2] = {{"name", name},     {"type", "local"},    {"hook_name", hook},
                             {"model_path", "m"}, {"config", "{}"},     {"spec_hash", "x"}};
    for (int i = 0; i < 6; i++) assert_int_equal(h5_attr_str(h, strs[i][0], strs[i][1]), 0);
    const char *ints[] = {"ratio", "seed", "train_tokens", "steps"};
    for (int i = 0; i < 4; i++) assert_int_equal(h5_attr_i64(h, ints[i], 1), 0);
    assert_int_equal(h5_attr_i64(h, "layer", layer), 0);
    assert_int_equal(h5_attr_i64(h, "d_in", DM), 0);
    assert_int_equal(h5_attr_i64(h, "d_sae", d_sae), 0);
    const char *dbls[] = {"lambda", "kl_coeff", "ds_coeff"};
    for (int i = 0; i < 3; i++) assert_int_equal(h5_attr_f64(h, dbls[i], 1.0), 0);
    hid_t g = h5_group(h, "weights");
    assert_int_equal(sae_weights_write(g, &s), 0);
    H5Gclose(g);
    if (density) {
        int64_t layers[1] = {layer + 1};
        double mse[1] = {0.5};
        struct sae_metrics m = {.n_tokens = n_tokens, .d_sae = d_sae, .n_downstream = 1,
                                .downstream_layers = layers, .mse_downstream = mse,
                                .feature_density = (double *)density};
        for (int f = 0; f < d_sae; f++) m.alive += density[f] > 0;
        assert_int_equal(sae_metrics_write(h, &m), 0);
    }
    assert_int_equal(h5_close(h), 0);
    sae_free(&s);
}

static void make_sae(const char *path, const char *name, int layer, int d_sae, uint64_t seed) {
    make_sae_metrics(path, name, layer, d_sae, seed, NULL, 0);
}

struct fixture {
    char *dir, *model, *tokens, *sae1, *sae2, *out;
};

static struct fixture fx;

static int setup(void **state) {
    (void)state;
    log_set_level(LOG_WARN);
    fx.dir = test_tmpdir("extract-run");
    fx.model = path_join(fx.dir, "model");
    fx.tokens = path_join(fx.dir, "eval.h5");
    fx.sae1 = path_join(fx.dir, "l1.h5");
    fx.sae2 = path_join(fx.dir, "l2.h5");
    fx.out = path_join(fx.dir, "examples");
    make_model(fx.model, 11);
    make_tokens(fx.tokens, 40 * CTX + 17, 5);
    make_sae(fx.sae1, "l1", 1, 160, 3);
    make_sae(fx.sae2, "l2", 2, 96, 4);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    test_rmtree(fx.dir);
    free(fx.dir);
    free(fx.model);
    free(fx.tokens);
    free(fx.sae1);
    free(fx.sae2);
    free(fx.out);
    return 0;
}

static struct extract_settings small_settings(void) {
    struct extract_settings s;
    extract_settings_default(&s);
    s.n_features = 12;
    s.top_k = 8;
    s.window = 10;
    s.offset = 6;
    s.n_random = 4;
    s.n_explain = 4;
    s.n_score_top = 3;
    s.context = CTX;
    s.batch = 3;
    s.seed = 42;
    return s;
}

static int run(const struct extract_settings *s, const char *out, const char **saes, int n,
               struct extract_summary *sum) {
    struct extract_job job = {.model_path = fx.model, .tokens_path = fx.tokens, .out_dir = out,
                              .sae_paths = saes, .n_saes = n};
    return extract_run(s, &job, sum);
}

/* ---- brute force ---- */

/* All activations (n_tok, d_sae) of an SAE, the model run one sequence at a time
 * and the encoder in double precision. */
static double *brute_acts(const char *sae_path, int64_t n_seq, int *d_sae_out) {
    struct lm *lm;
    assert_int_equal(lm_load(fx.model, &lm), 0);
    struct sae s;
    struct sae_meta meta;
    assert_int_equal(sae_file_read(sae_path, &s, &meta), 0);
    struct token_dataset d;
    assert_int_equal(token_dataset_open(&d, fx.tokens), 0);
    struct lm_acts *acts = lm_acts_new(lm, 1, CTX, false);
    double *out = malloc((size_t)n_seq * CTX * s.d_sae * sizeof *out);
    int32_t tok[CTX];
    for (int64_t q = 0; q < n_seq; q++) {
        assert_int_equal(token_dataset_read(&d, q * CTX, CTX, tok), 0);
        assert_int_equal(lm_embed(lm, acts, tok), 0);
        assert_int_equal(lm_blocks_forward(lm, acts, 0, (int)meta.layer), 0);
        for (int t = 0; t < CTX; t++)
            for (int f = 0; f < s.d_sae; f++) {
                double v = s.p.b_enc[f];
                for (int i = 0; i < DM; i++)
                    v += (double)s.p.W_enc[(size_t)f * DM + i] * acts->resid[meta.layer][t * DM + i];
                out[((size_t)q * CTX + t) * s.d_sae + f] = v > 0 ? v : 0;
            }
    }
    *d_sae_out = s.d_sae;
    lm_acts_free(acts);
    token_dataset_close(&d);
    sae_free(&s);
    sae_meta_free(&meta);
    lm_free(lm);
    return out;
}

struct bc {
    double act;
    int64_t pos, start;
};

static int bc_cmp(const void *a, const void *b) {
    const struct bc *x = a, *y = b;
    if (x->act != y->act) return x->act > y->act ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static void check_brute(const char *sae_path, const struct examples *ex,
                        const struct extract_settings *s) {
    int64_t n_tok = ex->n_tokens_scanned, n_seq = n_tok / CTX;
    int d_sae, alive = 0;
    double *A = brute_acts(sae_path, n_seq, &d_sae);
    assert_int_equal(ex->d_sae, d_sae);
    for (int f = 0; f < d_sae; f++) {
        int64_t cnt = 0;
        double mx = 0;
        for (int64_t t = 0; t < n_tok; t++) {
            double a = A[(size_t)t * d_sae + f];
            cnt += a > 0;
            mx = a > mx ? a : mx;
        }
        assert_true(fabs(ex->density[f] - (double)cnt / n_tok) <= 2.0 / n_tok);
        assert_true(fabs(ex->max_activation[f] - mx) <= 1e-4 * (1 + mx));
        if (f % 5 == 0) assert_int_equal(cnt, 0);
        alive += cnt > 0;
    }
    assert_int_equal(ex->n_alive, alive);
    struct bc *all = malloc((size_t)n_tok * sizeof *all), top[64];
    for (int j = 0; j < ex->n_features; j++) {
        int f = ex->features[j], n = 0, kept = 0;
        for (int64_t t = 0; t < n_tok; t++) {
            double a = A[(size_t)t * d_sae + f];
            if (a <= 0) continue;
            int local = (int)(t % CTX), st = local - s->offset;
            st = st < 0 ? 0 : st > CTX - s->window ? CTX - s->window : st;
            all[n++] = (struct bc){a, t, t - local + st};
        }
        qsort(all, (size_t)n, sizeof *all, bc_cmp);
        for (int i = 0; i < n && kept < s->top_k; i++) {
            int clash = 0;
            for (int k = 0; k < kept && !clash; k++) clash = llabs(all[i].start - top[k].start) < s->window;
            if (!clash) top[kept++] = all[i];
        }
        int64_t first, count;
        examples_feature_windows(ex, j, &first, &count);
        int n_top = 0;
        for (int64_t w = first; w < first + count; w++) {
            for (int i = 0; i < s->window; i++) {
                double want = A[(size_t)(ex->win_source[w] + i) * d_sae + f];
                assert_true(fabs(ex->win_acts[w * s->window + i] - want) <= 1e-4 * (1 + want));
            }
            if (ex->win_split[w] > SPLIT_SCORE_TOP) continue;
            n_top++;
            assert_true(ex->win_rank[w] < kept);
            assert_int_equal(ex->win_source[w], top[ex->win_rank[w]].start);
        }
        int want_top = kept < s->n_explain + s->n_score_top ? kept : s->n_explain + s->n_score_top;
        assert_int_equal(n_top, want_top);
    }
    free(all);
    free(A);
}

static void load_out(const char *out_dir, const char *sae_path, struct examples *ex) {
    char *p = extract_output_path(out_dir, sae_path);
    int rc = examples_load(p, ex);
    if (rc != 0) fail_msg("%s", err_msg());
    free(p);
}

static void test_matches_brute_force_with_two_hooks_in_one_pass(void **state) {
    (void)state;
    struct extract_settings s = small_settings();
    const char *saes[] = {fx.sae1, fx.sae2};
    struct extract_summary sum;
    assert_int_equal(run(&s, fx.out, saes, 2, &sum), 0);
    assert_int_equal(sum.n_written, 2);
    assert_int_equal(sum.n_tokens, 40 * CTX); /* whole sequences only */
    struct examples e1, e2;
    load_out(fx.out, fx.sae1, &e1);
    load_out(fx.out, fx.sae2, &e2);
    assert_int_equal(e1.n_features, 12);
    assert_string_equal(e1.sae_name, "l1");
    assert_string_equal(e1.tokenizer, "test");
    assert_int_equal(e1.seed, 42);
    assert_true(e1.n_alive > 64 && e1.n_alive <= 128); /* at most 160 minus every 5th */
    check_brute(fx.sae1, &e1, &s);
    check_brute(fx.sae2, &e2, &s);
    /* tokens are the dataset's */
    struct token_dataset d;
    assert_int_equal(token_dataset_open(&d, fx.tokens), 0);
    int32_t buf[16];
    for (int64_t w = 0; w < e1.n_windows; w += 7) {
        assert_int_equal(token_dataset_read(&d, e1.win_source[w], s.window, buf), 0);
        assert_memory_equal(buf, e1.win_tokens + w * s.window, s.window * sizeof(int32_t));
    }
    token_dataset_close(&d);

    /* each SAE alone gives the same file contents */
    char *alone = path_join(fx.dir, "alone");
    assert_int_equal(run(&s, alone, saes + 1, 1, NULL), 0);
    struct examples a2;
    load_out(alone, fx.sae2, &a2);
    assert_int_equal(a2.n_windows, e2.n_windows);
    assert_memory_equal(a2.features, e2.features, (size_t)e2.n_features * sizeof(int32_t));
    assert_memory_equal(a2.win_source, e2.win_source, (size_t)e2.n_windows * sizeof(int64_t));
    assert_memory_equal(a2.win_acts, e2.win_acts, (size_t)e2.n_windows * s.window * sizeof(float));
    examples_free(&a2);
    free(alone);
    examples_free(&e1);
    examples_free(&e2);
}

/* extract.alive_from "sae" on sae1 with metrics of the given densities: the
 * sample, windows and the sampled features' statistics must be those of the
 * dense pass e made with dense_s; only the tracked candidates (12 + a margin of
 * 8) are scanned. */
static void check_alive_from_sae(const struct extract_settings *dense_s, const struct examples *e,
                                 const double *density, int n_alive_metrics, const char *tag) {
    struct extract_settings s = *dense_s;
    s.alive_from_sae = true;
    char *with_metrics = path_join(fx.dir, "l1m.h5"), *known = path_join(fx.dir, tag);
    make_sae_metrics(with_metrics, "l1", 1, 160, 3, density, 12345);
    const char *saes[] = {with_metrics};
    assert_int_equal(run(&s, known, saes, 1, NULL), 0);
    struct examples k;
    load_out(known, with_metrics, &k);
    assert_string_equal(k.alive_from, "sae metrics over 12345 tokens");
    assert_int_equal(k.n_alive, n_alive_metrics);
    assert_int_equal(k.n_features, e->n_features);
    assert_memory_equal(k.features, e->features, (size_t)e->n_features * sizeof(int32_t));
    assert_int_equal(k.n_windows, e->n_windows);
    assert_memory_equal(k.win_source, e->win_source, (size_t)e->n_windows * sizeof(int64_t));
    assert_memory_equal(k.win_split, e->win_split, (size_t)e->n_windows);
    assert_memory_equal(k.win_rank, e->win_rank, (size_t)e->n_windows * sizeof(int32_t));
    assert_memory_equal(k.win_tokens, e->win_tokens,
                        (size_t)e->n_windows * s.window * sizeof(int32_t));
    for (int64_t i = 0; i < e->n_windows * s.window; i++)
        assert_float_equal(k.win_acts[i], e->win_acts[i], 1e-5 * (1 + fabsf(e->win_acts[i])));
    int n_scanned = 0;
    for (int f = 0; f < e->d_sae; f++) {
        if (isnan(k.density[f])) {
            assert_true(isnan(k.max_activation[f]));
            continue;
        }
        n_scanned++;
        assert_true(fabs(k.density[f] - e->density[f]) < 1e-12);
        assert_float_equal(k.max_activation[f], e->max_activation[f],
                           1e-5 * (1 + e->max_activation[f]));
    }
    assert_int_equal(n_scanned, 20); /* every sampled feature among them */
    for (int j = 0; j < e->n_features; j++) assert_false(isnan(k.density[e->features[j]]));
    examples_free(&k);
    test_rmtree(known);
    free(known);
    free(with_metrics);
}

/* extract.alive_from "sae": with the pass's own alive set, and with a superset
 * (every feature "alive" by the metrics, a fifth of them silent here: the margin
 * replaces them), the result is the dense pass's; an SAE file without metrics
 * falls back to the dense pass; the option is part of the inputs. */
static void test_alive_from_sae_metrics(void **state) {
    (void)state;
    struct extract_settings s = small_settings();
    s.n_quantile = 4; /* quantile windows too */
    s.top_k = 10;
    const char *dense_saes[] = {fx.sae1};
    char *dense = path_join(fx.dir, "dense"), *known = path_join(fx.dir, "known");
    assert_int_equal(run(&s, dense, dense_saes, 1, NULL), 0);
    struct examples e;
    load_out(dense, fx.sae1, &e);
    assert_string_equal(e.alive_from, "pass");
    check_alive_from_sae(&s, &e, e.density, e.n_alive, "known-same");
    double all[160];
    for (int f = 0; f < 160; f++) all[f] = 0.5;
    check_alive_from_sae(&s, &e, all, 160, "known-superset");
    /* no metrics: the dense pass, as without the option */
    s.alive_from_sae = true;
    const char *only2[] = {fx.sae2};
    assert_int_equal(run(&s, known, only2, 1, NULL), 0);
    struct examples k2, d2;
    load_out(known, fx.sae2, &k2);
    assert_string_equal(k2.alive_from, "pass");
    s.alive_from_sae = false;
    assert_int_equal(run(&s, dense, only2, 1, NULL), 0);
    load_out(dense, fx.sae2, &d2);
    assert_memory_equal(k2.features, d2.features, (size_t)d2.n_features * sizeof(int32_t));
    assert_memory_equal(k2.win_acts, d2.win_acts, (size_t)d2.n_windows * s.window * sizeof(float));
    /* the option is part of the inputs: switching it redoes the SAE */
    struct extract_summary sum;
    s.alive_from_sae = true;
    assert_int_equal(run(&s, dense, only2, 1, &sum), 0);
    assert_int_equal(sum.n_written, 1);
    examples_free(&e);
    examples_free(&k2);
    examples_free(&d2);
    free(dense);
    free(known);
}

/* The same checks by an independent numpy implementation (model included). */
static void test_matches_numpy_reference(void **state) {
    (void)state;
    if (!have_python_modules("numpy h5py")) skip_because("/usr/bin/python3 lacks numpy or h5py");
    struct extract_settings s = small_settings();
    s.context = 48; /* sequences of a different length than the model's maximum */
    s.max_tokens = 12 * 48;
    const char *saes[] = {fx.sae1, fx.sae2};
    char *out = path_join(fx.dir, "numpy");
    assert_int_equal(run(&s, out, saes, 2, NULL), 0);
    for (int i = 0; i < 2; i++) {
        char *ex = extract_output_path(out, saes[i]), cmd[4096], *log = NULL;
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/extract_ref.py %s %s %s %s 48",
                 fx.model, fx.tokens, saes[i], ex);
        int rc = run_capture(cmd, &log);
        if (rc != 0) fail_msg("%s", log ? log : "extract_ref.py failed");
        assert_non_null(strstr(log, "ok"));
        free(log);
        free(ex);
    }
    test_rmtree(out);
    free(out);
}

static void test_rerun_skips_complete_and_redoes_changed(void **state) {
    (void)state;
    struct extract_settings s = small_settings();
    const char *saes[] = {fx.sae1, fx.sae2};
    char *out = path_join(fx.dir, "rerun");
    struct extract_summary sum;
    assert_int_equal(run(&s, out, saes, 2, &sum), 0);
    assert_int_equal(sum.n_written, 2);
    assert_int_equal(run(&s, out, saes, 2, &sum), 0);
    assert_int_equal(sum.n_written, 0);
    assert_int_equal(sum.n_skipped, 2);
    s.seed = 43; /* other settings: both redone */
    assert_int_equal(run(&s, out, saes, 2, &sum), 0);
    assert_int_equal(sum.n_written, 2);
    struct examples e;
    load_out(out, fx.sae1, &e);
    assert_int_equal(e.seed, 43);
    examples_free(&e);
    test_rmtree(out);
    free(out);
}

/* Runs an extraction in a child that is killed after kill_ms (0: not killed);
 * returns the child's peak RSS in kB, or -1 if it was killed. */
static long child_run(const struct extract_settings *s, const char *out, int kill_ms) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *saes[] = {fx.sae1};
        _exit(run(s, out, saes, 1, NULL) == 0 ? 0 : 3);
    }
    if (kill_ms > 0) {
        usleep((useconds_t)kill_ms * 1000);
        kill(pid, SIGKILL);
    }
    int status;
    struct rusage ru;
    assert_true(wait4(pid, &status, 0, &ru) == pid);
    if (WIFSIGNALED(status)) return -1;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return ru.ru_maxrss;
}

static void test_killed_run_restarts_cleanly(void **state) {
    (void)state;
    char *dir = test_tmpdir("extract-kill");
    char *tokens = path_join(dir, "big.h5"), *out = path_join(dir, "out");
    char *saved = fx.tokens;
    make_tokens(tokens, 8000 * CTX, 9);
    fx.tokens = tokens;
    struct extract_settings s = small_settings();
    s.batch = 16;
    char *final = extract_output_path(out, fx.sae1);
    /* a stray temp file and an unfinished output from an earlier crash */
    assert_int_equal(mkdir_p(out), 0);
    char *stray = malloc(strlen(final) + 32);
    sprintf(stray, "%s.tmp.999999.0", final);
    write_file(stray, "partial", 7);
    assert_int_equal(child_run(&s, out, 250), -1); /* killed mid-pass */
    assert_false(examples_is_complete(final, NULL));
    struct examples e;
    assert_int_equal(examples_load(final, &e), -1);
    /* the rerun with fewer tokens finishes, cleans up and writes a complete file */
    s.max_tokens = 30 * CTX;
    struct extract_summary sum;
    const char *saes[] = {fx.sae1};
    assert_int_equal(run(&s, out, saes, 1, &sum), 0);
    assert_int_equal(sum.n_written, 1);
    assert_false(file_exists(stray));
    assert_int_equal(examples_load(final, &e), 0);
    examples_free(&e);
    fx.tokens = saved;
    test_rmtree(dir);
    free(dir);
    free(tokens);
    free(out);
    free(final);
    free(stray);
}

static void test_examples_load_refuses_partial_files(void **state) {
    (void)state;
    struct extract_settings s = small_settings();
    const char *saes[] = {fx.sae1};
    char *out = path_join(fx.dir, "partial");
    assert_int_equal(run(&s, out, saes, 1, NULL), 0);
    char *final = extract_output_path(out, fx.sae1);
    struct examples e;
    assert_int_equal(examples_load(final, &e), 0);
    examples_free(&e);
    /* the same file without its complete flag (a writer killed before the end) */
    hid_t h = H5Fopen(final, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(h >= 0);
    assert_true(H5Adelete(h, "complete") >= 0);
    H5Fclose(h);
    assert_int_equal(examples_load(final, &e), -1);
    assert_non_null(strstr(err_msg(), "incomplete"));
    assert_non_null(strstr(err_msg(), final));
    assert_false(examples_is_complete(final, NULL));
    /* and a rerun does not take it as done */
    struct extract_summary sum;
    assert_int_equal(run(&s, out, saes, 1, &sum), 0);
    assert_int_equal(sum.n_written, 1);
    assert_int_equal(examples_load(final, &e), 0);
    examples_free(&e);
    /* a truncated file */
    FILE *f = fopen(final, "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 2000), 0);
    fclose(f);
    assert_int_equal(examples_load(final, &e), -1);
    /* not an examples file at all */
    assert_int_equal(examples_load(fx.tokens, &e), -1);
    assert_non_null(strstr(err_msg(), "format"));
    test_rmtree(out);
    free(out);
    free(final);
}

static void test_peak_memory_independent_of_tokens(void **state) {
    (void)state;
    char *dir = test_tmpdir("extract-mem");
    char *tokens = path_join(dir, "mem.h5"), *out1 = path_join(dir, "o1"),
         *out4 = path_join(dir, "o4");
    char *saved = fx.tokens;
    make_tokens(tokens, 1600 * CTX, 13);
    fx.tokens = tokens;
    struct extract_settings s = small_settings();
    s.batch = 8;
    s.n_quantile = 4;
    s.max_tokens = 400 * CTX;
    long rss1 = child_run(&s, out1, 0);
    s.max_tokens = 1600 * CTX;
    long rss4 = child_run(&s, out4, 0);
    /* Storing even one float per scanned token and feature would add
     * 1200*64*160*4 bytes = 49 MB; allow 2 MB of allocator noise. */
    print_message("peak RSS: %ld kB (1x), %ld kB (4x)\n", rss1, rss4);
    assert_true(rss4 - rss1 < 2048);
    fx.tokens = saved;
    test_rmtree(dir);
    free(dir);
    free(tokens);
    free(out1);
    free(out4);
}

static int call_cli(const char *args) {
    char *copy = strdup(args), *argv[40];
    int argc = 0;
    for (char *t = strtok(copy, " "); t && argc < 39; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    fflush(stdout);
    int saved = dup(1), devnull = open("/dev/null", 1);
    dup2(devnull, 1); /* keep the test log readable */
    int rc = cmd_extract(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(devnull);
    free(copy);
    return rc;
}

static void test_cli_options(void **state) {
    (void)state;
    char cmd[4096], *out = path_join(fx.dir, "cli");
    snprintf(cmd, sizeof cmd,
             "extract -m %s -t %s -o %s --n-features 5 --features 3,7 --window 8 --offset 2 "
             "--top-k 6 --n-explain 3 --n-score-top 3 --n-random 2 --context 32 --batch 4 -q %s",
             fx.model, fx.tokens, out, fx.sae1);
    assert_int_equal(call_cli(cmd), 0);
    struct examples e;
    load_out(out, fx.sae1, &e);
    assert_int_equal(e.n_features, 2);
    assert_int_equal(e.features[0], 3);
    assert_int_equal(e.features[1], 7);
    assert_int_equal(e.window, 8);
    assert_int_equal(e.n_tokens_scanned, (40 * CTX + 17) / 32 * 32);
    examples_free(&e);
    snprintf(cmd, sizeof cmd, "extract -m %s -t %s -o %s --window 8 --offset 8 %s", fx.model,
             fx.tokens, out, fx.sae1);
    assert_int_equal(call_cli(cmd), 2);
    snprintf(cmd, sizeof cmd, "extract -m %s -t %s -o %s -q", fx.model, fx.tokens, out);
    assert_int_equal(call_cli(cmd), 2); /* no SAE */
    snprintf(cmd, sizeof cmd, "extract -m %s -t %s -o %s -q %s", fx.model, fx.tokens, out,
             fx.tokens);
    assert_int_equal(call_cli(cmd), 1); /* not an SAE file */
    test_rmtree(out);
    free(out);
}

static void test_cli_config_form(void **state) {
    (void)state;
    char *root = path_join(fx.dir, "results"), *saes = path_join(fx.dir, "results/exp1/saes");
    assert_int_equal(mkdir_p(saes), 0);
    char cmd[4096], *cfg = path_join(fx.dir, "exp1.json");
    /* the sweep's SAE files (its plan: L1-local-lam1-s0, L1-local-lam2-s0); a stray
     * file beside them is not part of it */
    snprintf(cmd, sizeof cmd,
             "cp %s %s/L1-local-lam1-s0.h5 && cp %s %s/L1-local-lam2-s0.h5 && cp %s %s/stray.h5",
             fx.sae1, saes, fx.sae2, saes, fx.sae2, saes);
    assert_int_equal(system(cmd), 0);
    char json[2048];
    snprintf(json, sizeof json,
             "{\"experiment\": \"exp1\", \"results_dir\": \"%s\", \"seed\": 7,\n"
             " \"model\": {\"path\": \"%s\"}, \"data\": {\"train_tokens\": \"%s\", \"eval_tokens\": \"%s\", \"context\": 32},\n"
             " \"sae\": {\"layers\": [1], \"types\": [\"local\"], \"local\": {\"lambdas\": [1, 2]}},\n"
             " \"extract\": {\"n_features\": 6, \"top_k\": 5, \"window\": 8, \"offset\": 3,\n"
             "             \"n_random\": 2, \"tokens\": 1024},\n"
             " \"interp\": {\"n_explain\": 3, \"n_score_top\": 2, \"n_score_random\": 2}}\n",
             root, fx.model, fx.tokens, fx.tokens);
    write_file(cfg, json, strlen(json));
    /* an SAE of the sweep not trained yet is named */
    snprintf(cmd, sizeof cmd, "mv %s/L1-local-lam2-s0.h5 %s/later.h5", saes, saes);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "extract -q --config %s --n-random 1", cfg);
    assert_int_equal(call_cli(cmd), 1);
    assert_non_null(strstr(err_msg(), "L1-local-lam2-s0.h5: this SAE of the sweep is not trained "
                                      "yet: run `autointerp train"));
    snprintf(cmd, sizeof cmd, "mv %s/later.h5 %s/L1-local-lam2-s0.h5", saes, saes);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "extract -q --config %s --n-random 1", cfg);
    int rc = call_cli(cmd);
    if (rc != 0) fail_msg("exit %d: %s", rc, err_msg());
    char *out = path_join(fx.dir, "results/exp1/examples");
    struct examples e;
    load_out(out, "L1-local-lam2-s0.h5", &e);
    assert_int_equal(e.n_features, 6);
    assert_int_equal(e.seed, 7);
    assert_int_equal(e.window, 8);
    assert_int_equal(e.n_random, 1); /* the option wins over the config */
    assert_int_equal(e.n_explain, 3);
    assert_int_equal(e.n_tokens_scanned, 1024);
    examples_free(&e);
    load_out(out, "L1-local-lam1-s0.h5", &e);
    examples_free(&e);
    char *stray = path_join(out, "stray.h5");
    assert_false(file_exists(stray));
    free(stray);

    /* a config that leaves model.path and data.eval_tokens empty: where `run`
     * puts them (results/exp1/model, results/exp1/data/eval.h5) */
    snprintf(json, sizeof json,
             "{\"experiment\": \"exp1\", \"results_dir\": \"%s\", \"seed\": 7,\n"
             " \"data\": {\"train_text\": [\"t.txt\"], \"tokenizer\": \"tok\", \"context\": 32},\n"
             " \"sae\": {\"layers\": [1], \"types\": [\"local\"], \"local\": {\"lambdas\": [1, 2]}},\n"
             " \"extract\": {\"n_features\": 6, \"top_k\": 5,\n"
             " \"window\": 8, \"offset\": 3, \"n_random\": 2, \"tokens\": 1024},\n"
             " \"interp\": {\"n_explain\": 3, \"n_score_top\": 2, \"n_score_random\": 2}}\n",
             root);
    write_file(cfg, json, strlen(json));
    snprintf(cmd, sizeof cmd, "extract -q --config %s -o %s/defaults", cfg, fx.dir);
    assert_int_equal(call_cli(cmd), 1); /* nothing there yet */
    assert_non_null(strstr(err_msg(), "model.path is empty and "));
    assert_non_null(strstr(err_msg(), "results/exp1/model (where `autointerp run` puts it) does "
                                      "not exist yet: run `autointerp run CONFIG --until lm-train`"));
    snprintf(cmd, sizeof cmd, "mkdir -p %s/results/exp1/data && ln -s %s %s/results/exp1/model",
             fx.dir, fx.model, fx.dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "extract -q --config %s -o %s/defaults", cfg, fx.dir);
    assert_int_equal(call_cli(cmd), 1);
    assert_non_null(strstr(err_msg(), "data.eval_tokens is empty and "));
    assert_non_null(strstr(err_msg(), "results/exp1/data/eval.h5"));
    snprintf(cmd, sizeof cmd, "ln -s %s %s/results/exp1/data/eval.h5", fx.tokens, fx.dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "extract -q --config %s -o %s/defaults", cfg, fx.dir);
    rc = call_cli(cmd);
    if (rc != 0) fail_msg("exit %d: %s", rc, err_msg());
    char *defaults = path_join(fx.dir, "defaults");
    load_out(defaults, "L1-local-lam2-s0.h5", &e);
    assert_int_equal(e.n_features, 6);
    assert_non_null(strstr(e.model_path, "results/exp1/model"));
    examples_free(&e);
    free(defaults);
    free(out);
    free(cfg);
    free(saes);
    free(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_brute_force_with_two_hooks_in_one_pass),
        cmocka_unit_test(test_matches_numpy_reference),
        cmocka_unit_test(test_alive_from_sae_metrics),
        cmocka_unit_test(test_rerun_skips_complete_and_redoes_changed),
        cmocka_unit_test(test_killed_run_restarts_cleanly),
        cmocka_unit_test(test_examples_load_refuses_partial_files),
        cmocka_unit_test(test_peak_memory_independent_of_tokens),
        cmocka_unit_test(test_cli_options),
        cmocka_unit_test(test_cli_config_form),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
