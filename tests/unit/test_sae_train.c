/* test_sae_train.c: the trainer and the train stage: learning-rate schedule,
 * training lowers the loss, a run stopped after a checkpoint and resumed (and a
 * run killed with SIGKILL and resumed) ends bit-identical to an uninterrupted
 * one, a checkpoint of another run is not resumed; the sweep writes one complete
 * SAE file per (layer, type, lambda, seed) plus sweep.csv/json, skips complete
 * ones, resumes unfinished ones bit-identically; `sae-eval` gives the same
 * metrics for an SAE file and its SAELens export. Uses a tiny random GPT-2
 * written in Hugging Face layout and a random token dataset. */
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "io/atomic.h"
#include "io/h5.h"
#include "io/safetensors.h"
#include "model/lm.h"
#include "sae/metrics.h"
#include "sae/sae_io.h"
#include "sae/saelens.h"
#include "sae/sweep.h"
#include "sae/train.h"
#include "tok/dataset.h"
#include "util/error.h"

enum { NL = 3, C = 16, NH = 2, V = 61, P = 16 };

static uint64_t rng_state = 12345;
static float urand(void) { // deterministic uniform in (-1, 1)
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) / (double)(1ull << 24)) * 2 - 1;
}

static void put(struct st_write_tensor *t, int *n, const char *name, int ndim, int64_t d0,
                int64_t d1, float center, float scale, char names[][64]) {
    snprintf(names[*n], 64, "%s", name);
    struct st_write_tensor *w = &t[*n];
    w->name = names[*n];
    w->ndim = ndim;
    w->shape[0] = d0;
    w->shape[1] = d1;
    size_t k = (size_t)d0 * (ndim > 1 ? d1 : 1);
    float *data = malloc(k * sizeof *data);
    for (size_t i = 0; i < k; i++) data[i] = center + scale * urand();
    w->data = data;
    (*n)++;
}

/* A random GPT-2 (NL blocks of width C) in dir: config.json + model.safetensors. */
static void write_model(const char *dir) {
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"model_type\": \"gpt2\", \"n_layer\": %d, \"n_embd\": %d, \"n_head\": %d, "
             "\"vocab_size\": %d, \"n_positions\": %d, \"layer_norm_epsilon\": 1e-5}",
             NL, C, NH, V, P);
    char *p = path_join(dir, "config.json");
    write_file(p, cfg, strlen(cfg));
    free(p);
    struct st_write_tensor t[64];
    char names[64][64];
    int n = 0;
    put(t, &n, "wte.weight", 2, V, C, 0, 0.8f, names);
    put(t, &n, "wpe.weight", 2, P, C, 0, 0.3f, names);
    put(t, &n, "ln_f.weight", 1, C, 0, 1, 0.1f, names);
    put(t, &n, "ln_f.bias", 1, C, 0, 0, 0.1f, names);
    for (int l = 0; l < NL; l++) {
        char nm[64];
#define T(suffix, nd, a, b, c0, sc)                                                            \
    snprintf(nm, sizeof nm, "h.%d.%s", l, suffix);                                             \
    put(t, &n, nm, nd, a, b, c0, sc, names)
        T("ln_1.weight", 1, C, 0, 1, 0.1f);
        T("ln_1.bias", 1, C, 0, 0, 0.1f);
        T("attn.c_attn.weight", 2, C, 3 * C, 0, 0.4f);
        T("attn.c_attn.bias", 1, 3 * C, 0, 0, 0.1f);
        T("attn.c_proj.weight", 2, C, C, 0, 0.3f);
        T("attn.c_proj.bias", 1, C, 0, 0, 0.1f);
        T("ln_2.weight", 1, C, 0, 1, 0.1f);
        T("ln_2.bias", 1, C, 0, 0, 0.1f);
        T("mlp.c_fc.weight", 2, C, 4 * C, 0, 0.3f);
        T("mlp.c_fc.bias", 1, 4 * C, 0, 0, 0.1f);
        T("mlp.c_proj.weight", 2, 4 * C, C, 0, 0.2f);
        T("mlp.c_proj.bias", 1, C, 0, 0, 0.1f);
#undef T
    }
    p = path_join(dir, "model.safetensors");
    if (st_write_f32(p, t, n, NULL, NULL, 0) < 0) fail_msg("%s", err_msg());
    free(p);
    for (int i = 0; i < n; i++) free((void *)t[i].data);
}

static void write_tokens(const char *path, int64_t n) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)((i * 7 + (i / 5) * 3 + i % 11) % V);
    int64_t offs[2] = {0, n};
    struct token_dataset_meta meta = {.tokenizer = "test", .vocab_size = V, .eot_id = -1,
                                      .bos_id = -1, .sources = "generated"};
    if (token_dataset_write(path, ids, n, offs, 1, &meta) < 0) fail_msg("%s", err_msg());
    free(ids);
}

struct fixture {
    char *dir, *model_dir, *tokens_path, *eval_path, *ckpt;
    struct lm *lm;
    struct token_dataset data;
};

static int setup(void **state) {
    struct fixture *f = calloc(1, sizeof *f);
    f->dir = test_tmpdir("sae_train");
    f->model_dir = path_join(f->dir, "model");
    mkdir_p(f->model_dir);
    write_model(f->model_dir);
    f->tokens_path = path_join(f->dir, "tokens.h5");
    write_tokens(f->tokens_path, 4000);
    f->eval_path = path_join(f->dir, "eval.h5");
    write_tokens(f->eval_path, 700);
    f->ckpt = path_join(f->dir, "run.ckpt.h5");
    if (lm_load(f->model_dir, &f->lm) < 0) fail_msg("%s", err_msg());
    if (token_dataset_open(&f->data, f->tokens_path) < 0) fail_msg("%s", err_msg());
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fixture *f = *state;
    token_dataset_close(&f->data);
    lm_free(f->lm);
    test_rmtree(f->dir);
    free(f->dir);
    free(f->model_dir);
    free(f->tokens_path);
    free(f->eval_path);
    free(f->ckpt);
    free(f);
    return 0;
}

static struct sae_train_opts opts(enum sae_type type, const char *ckpt) {
    struct sae_train_opts o = {
        .name = "test",
        .set = {.type = type, .layer = 1, .lambda = 0.5, .kl_coeff = 0.5, .ds_coeff = 1},
        .ratio = 4,
        .seed = 9,
        .train_tokens = 12 * 2 * 16 * 2,
        .batch = 2,
        .context = 16,
        .grad_accum = 2,
        .lr = 5e-3,
        .warmup_fraction = 0.2,
        .min_lr_fraction = 0.1,
        .clip = 1.0,
        .checkpoint_every = 5,
        .checkpoint_path = ckpt,
        .spec_hash = "abc",
    };
    return o;
}

static void test_schedule_warms_up_then_decays_to_min(void **state) {
    (void)state;
    struct sae_train_opts o = opts(SAE_LOCAL, NULL);
    o.lr = 1.0;
    o.warmup_fraction = 0.1;
    o.min_lr_fraction = 0.1;
    int64_t n = 100;
    assert_true(fabs(sae_train_lr(&o, 0, n) - 0.1) < 1e-12);
    assert_true(fabs(sae_train_lr(&o, 9, n) - 1.0) < 1e-12);
    assert_true(fabs(sae_train_lr(&o, 10, n) - 1.0) < 1e-12);
    assert_true(fabs(sae_train_lr(&o, 55, n) - 0.55) < 1e-12); // halfway: f + (1−f)/2
    assert_true(sae_train_lr(&o, 99, n) > 0.1 && sae_train_lr(&o, 99, n) < 0.101);
    for (int64_t s = 11; s < n; s++) assert_true(sae_train_lr(&o, s, n) < sae_train_lr(&o, s - 1, n));
    assert_int_equal(sae_train_n_steps(&o), 12);
}

static void train_full(struct fixture *f, struct sae_train_opts *o, struct sae *s,
                       struct sae_curve *c) {
    bool done = false;
    if (sae_train(o, f->lm, &f->data, s, c, &done) < 0) fail_msg("%s", err_msg());
    assert_true(done);
}

static void test_training_lowers_the_loss(void **state) {
    struct fixture *f = *state;
    for (int t = SAE_LOCAL; t <= SAE_E2E_DS; t++) {
        struct sae_train_opts o = opts((enum sae_type)t, NULL);
        o.train_tokens *= 4;
        struct sae s;
        struct sae_curve c;
        train_full(f, &o, &s, &c);
        assert_int_equal(c.rows[c.n - 1].step, sae_train_n_steps(&o) - 1);
        double first = c.rows[0].loss, last = c.rows[c.n - 1].loss;
        print_message("  %s: loss %.4g -> %.4g\n", sae_type_name(o.set.type), first, last);
        assert_true(last < 0.8 * first);
        sae_free(&s);
        sae_curve_free(&c);
    }
}

/* batch 1 × accumulation 2 visits the same windows as batch 2 × accumulation 1 and
 * averages the same gradient: the runs agree to rounding. */
static void test_accumulation_matches_a_larger_batch(void **state) {
    struct fixture *f = *state;
    struct sae_train_opts a = opts(SAE_E2E, NULL), b = opts(SAE_E2E, NULL);
    a.batch = 2, a.grad_accum = 1;
    b.batch = 1, b.grad_accum = 2;
    struct sae sa, sb;
    struct sae_curve ca, cb;
    train_full(f, &a, &sa, &ca);
    train_full(f, &b, &sb, &cb);
    assert_int_equal(ca.n, cb.n);
    for (int i = 0; i < ca.n; i++)
        assert_true(fabs(ca.rows[i].loss - cb.rows[i].loss) <= 1e-4 * fabs(ca.rows[i].loss));
    double diff = 0, norm = 0;
    for (size_t i = 0; i < sa.n_params; i++) {
        diff = fmax(diff, fabs(sa.mem[i] - sb.mem[i]));
        norm = fmax(norm, fabs(sa.mem[i]));
    }
    assert_true(diff <= 1e-4 * norm);
    sae_free(&sa);
    sae_free(&sb);
    sae_curve_free(&ca);
    sae_curve_free(&cb);
}

static void assert_same_run(const struct sae *a, const struct sae_curve *ca, const struct sae *b,
                            const struct sae_curve *cb) {
    assert_int_equal(a->n_params, b->n_params);
    assert_memory_equal(a->mem, b->mem, a->n_params * sizeof(float));
    assert_int_equal(ca->n, cb->n);
    assert_memory_equal(ca->rows, cb->rows, (size_t)ca->n * sizeof *ca->rows);
}

static void check_stop_and_resume(struct fixture *f, enum sae_type type) {
    remove(f->ckpt);
    struct sae_train_opts o = opts(type, NULL);
    struct sae ref, s;
    struct sae_curve cref, c;
    train_full(f, &o, &ref, &cref);

    o.checkpoint_path = f->ckpt;
    o.stop_after_steps = 3; // stops after a checkpoint at step 3, then 5 (+3 more), ...
    bool done = false;
    int calls = 0;
    while (!done) {
        if (sae_train(&o, f->lm, &f->data, &s, &c, &done) < 0) fail_msg("%s", err_msg());
        calls++;
        if (!done) {
            sae_free(&s);
            sae_curve_free(&c);
        }
    }
    assert_true(calls >= 3);
    assert_same_run(&ref, &cref, &s, &c);
    sae_free(&ref);
    sae_free(&s);
    sae_curve_free(&cref);
    sae_curve_free(&c);
}

static void test_stopped_and_resumed_run_is_bit_identical(void **state) {
    struct fixture *f = *state;
    check_stop_and_resume(f, SAE_LOCAL);
    check_stop_and_resume(f, SAE_E2E_DS);
}

static void test_killed_run_resumes_bit_identical(void **state) {
    struct fixture *f = *state;
    remove(f->ckpt);
    struct sae_train_opts o = opts(SAE_E2E, NULL);
    o.train_tokens *= 6;
    struct sae ref, s;
    struct sae_curve cref, c;
    train_full(f, &o, &ref, &cref);

    o.checkpoint_path = f->ckpt;
    o.checkpoint_every = 2;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sae cs;
        struct sae_curve cc;
        bool done;
        _exit(sae_train(&o, f->lm, &f->data, &cs, &cc, &done) == 0 ? 0 : 1);
    }
    for (int i = 0; i < 20000 && !file_exists(f->ckpt); i++) usleep(500);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(file_exists(f->ckpt));
    train_full(f, &o, &s, &c);
    assert_same_run(&ref, &cref, &s, &c);
    sae_free(&ref);
    sae_free(&s);
    sae_curve_free(&cref);
    sae_curve_free(&c);
}

/* SAEs of one layer and seed trained together (sharing the model's forward pass)
 * end bit-identical to each trained alone, also when stopped and resumed. */
static void test_lockstep_group_matches_training_alone(void **state) {
    struct fixture *f = *state;
    struct sae_train_opts o[3] = {opts(SAE_LOCAL, NULL), opts(SAE_LOCAL, NULL),
                                  opts(SAE_E2E_DS, NULL)};
    o[0].name = "a", o[1].name = "b", o[2].name = "c";
    o[1].set.lambda = 2, o[1].ratio = 2, o[1].lr = 1e-3;
    o[2].set.lambda = 1;
    struct sae alone[3], grp[3];
    struct sae_curve calone[3], cgrp[3];
    for (int i = 0; i < 3; i++) train_full(f, &o[i], &alone[i], &calone[i]);
    char *ck[3];
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "g%d.ckpt.h5", i);
        ck[i] = path_join(f->dir, name);
        remove(ck[i]);
        o[i].checkpoint_path = ck[i];
        o[i].stop_after_steps = 5;
    }
    bool done[3] = {false};
    int calls = 0;
    while (!done[0]) {
        if (sae_train_group(3, o, f->lm, &f->data, grp, cgrp, done) < 0) fail_msg("%s", err_msg());
        calls++;
        assert_true(done[1] == done[0] && done[2] == done[0]);
        if (!done[0]) {
            assert_int_equal(sae_checkpoint_step(&o[1]), 5 * calls);
            for (int i = 0; i < 3; i++) {
                sae_free(&grp[i]);
                sae_curve_free(&cgrp[i]);
            }
        }
    }
    assert_int_equal(calls, 3);
    for (int i = 0; i < 3; i++) {
        assert_same_run(&alone[i], &calone[i], &grp[i], &cgrp[i]);
        sae_free(&alone[i]);
        sae_free(&grp[i]);
        sae_curve_free(&calone[i]);
        sae_curve_free(&cgrp[i]);
    }
    // members at different steps refuse to train together
    o[0].stop_after_steps = 2;
    remove(ck[0]), remove(ck[1]), remove(ck[2]);
    assert_int_equal(sae_train(&o[0], f->lm, &f->data, &grp[0], &cgrp[0], done), 0);
    sae_free(&grp[0]);
    sae_curve_free(&cgrp[0]);
    assert_int_equal(sae_train_group(2, o, f->lm, &f->data, grp, cgrp, done), -1);
    assert_non_null(strstr(err_msg(), "same step"));
    struct sae_train_opts other = o[1];
    other.seed = 10;
    struct sae_train_opts pair[2] = {o[1], other};
    assert_int_equal(sae_train_group(2, pair, f->lm, &f->data, grp, cgrp, done), -1);
    assert_non_null(strstr(err_msg(), "cannot train together"));
    for (int i = 0; i < 3; i++) {
        remove(ck[i]);
        free(ck[i]);
    }
}

static void test_checkpoint_of_another_run_is_not_resumed(void **state) {
    struct fixture *f = *state;
    remove(f->ckpt);
    struct sae_train_opts o = opts(SAE_LOCAL, f->ckpt);
    o.stop_after_steps = 4;
    struct sae s, ref;
    struct sae_curve c, cref;
    bool done;
    assert_int_equal(sae_train(&o, f->lm, &f->data, &s, &c, &done), 0);
    assert_false(done);
    sae_free(&s);
    sae_curve_free(&c);
    o.stop_after_steps = 0;
    o.spec_hash = "other";
    train_full(f, &o, &s, &c);
    o.checkpoint_path = NULL;
    train_full(f, &o, &ref, &cref);
    assert_same_run(&ref, &cref, &s, &c); // started over: same as a fresh run
    sae_free(&s);
    sae_free(&ref);
    sae_curve_free(&c);
    sae_curve_free(&cref);
}

/* ---------------------------------------------------------------------------
 * The sweep (train stage).
 */
static char *write_config_layers(struct fixture *f, const char *exp, const char *local_lambdas,
                                 const char *layers) {
    char text[2048], name[64];
    snprintf(text, sizeof text,
             "{\"experiment\": \"%s\", \"results_dir\": \"%s/results\",\n"
             " \"model\": {\"path\": \"%s\"},\n"
             " \"data\": {\"train_tokens\": \"%s\", \"eval_tokens\": \"%s\", \"context\": 16},\n"
             " \"sae\": {\"layers\": %s, \"types\": [\"local\", \"e2e_ds\"], \"ratio\": 4,\n"
             "         \"local\": {\"lambdas\": %s}, \"e2e_ds\": {\"lambdas\": [2]},\n"
             "         \"seeds\": [0], \"train_tokens\": 640, \"batch\": 2, \"lr\": 0.005,\n"
             "         \"checkpoint_every\": 2, \"eval_tokens\": 256}}\n",
             exp, f->dir, f->model_dir, f->tokens_path, f->eval_path, layers, local_lambdas);
    snprintf(name, sizeof name, "%s.json", exp);
    char *p = path_join(f->dir, name);
    write_file(p, text, strlen(text));
    return p;
}

static char *write_config(struct fixture *f, const char *exp, const char *local_lambdas) {
    return write_config_layers(f, exp, local_lambdas, "[1]");
}

static struct sae_sweep_result sweep(const char *cfg_path, int64_t max_steps) {
    struct config cfg;
    if (config_load(&cfg, cfg_path) < 0) fail_msg("%s", err_msg());
    struct sae_sources src = {cfg_str(&cfg, "model.path"), cfg_str(&cfg, "data.train_tokens"),
                              cfg_str(&cfg, "data.eval_tokens")};
    struct sae_sweep_result r;
    if (sae_sweep_run(&cfg, &src, max_steps, &r) < 0) fail_msg("%s", err_msg());
    config_free(&cfg);
    return r;
}

static char *result_path(struct fixture *f, const char *exp, const char *file) {
    char rel[256];
    snprintf(rel, sizeof rel, "results/%s/saes/%s", exp, file);
    return path_join(f->dir, rel);
}

static void check_sae_file(const char *path, const char *type, double lambda) {
    struct sae s;
    struct sae_meta m;
    if (sae_file_read(path, &s, &m) < 0) fail_msg("%s", err_msg());
    assert_string_equal(m.type, type);
    assert_string_equal(m.hook_name, "blocks.1.hook_resid_pre");
    assert_int_equal(m.layer, 1);
    assert_true(m.lambda == lambda);
    assert_int_equal(m.d_in, C);
    assert_int_equal(m.d_sae, 4 * C);
    assert_int_equal(m.steps, 20); // 640 tokens / (2 x 16)
    assert_non_null(strstr(m.config, "\"e2e_ds\""));
    assert_int_equal(strlen(m.spec_hash), 64);
    hid_t f = h5_open_ro(path);
    struct sae_curve c;
    struct sae_metrics mt;
    assert_int_equal(sae_curve_read(f, &c), 0);
    assert_int_equal(c.rows[c.n - 1].step, 19);
    assert_int_equal(sae_metrics_read(f, &mt), 0);
    assert_int_equal(mt.n_tokens, 256);
    assert_true(mt.l0 > 0 && mt.alive > 0 && mt.alive + mt.dead == 4 * C);
    // the stored normalised decoder has unit columns and matches D of the raw one
    float *D = NULL;
    hsize_t dims[2];
    assert_int_equal(h5_read(f, "weights/W_dec_normalised", H5T_NATIVE_FLOAT, 2, NULL, dims,
                             (void **)&D), 0);
    assert_int_equal(dims[0], C);
    for (int j = 0; j < 4 * C; j++) {
        double n = 0;
        for (int i = 0; i < C; i++) n += (double)D[i * 4 * C + j] * D[i * 4 * C + j];
        assert_true(fabs(n - 1) < 1e-5);
        assert_true(D[j] == s.p.W_dec[(size_t)j * C] * s.inv_norm[j]);
    }
    free(D);
    sae_curve_free(&c);
    sae_metrics_free(&mt);
    h5_close(f);
    sae_meta_free(&m);
    sae_free(&s);
}

static void test_sweep_trains_every_sae_once_and_tabulates(void **state) {
    struct fixture *f = *state;
    char *cfg = write_config(f, "sw", "[1, 4]");
    struct sae_sweep_result r = sweep(cfg, 0);
    assert_int_equal(r.trained, 3);
    assert_int_equal(r.skipped, 0);
    char *p1 = result_path(f, "sw", "L1-local-lam1-s0.h5"),
         *p2 = result_path(f, "sw", "L1-e2e_ds-lam2-s0.h5");
    check_sae_file(p1, "local", 1);
    check_sae_file(p2, "e2e_ds", 2);
    char *ck = result_path(f, "sw", "L1-local-lam1-s0.ckpt.h5");
    assert_false(file_exists(ck)); // removed once the SAE is complete
    char *csv = result_path(f, "sw", "sweep.csv"), *js = result_path(f, "sw", "sweep.json");
    size_t n;
    char *text = read_file_all(csv, 0, &n);
    assert_non_null(text);
    int lines = 0;
    for (char *c = text; *c; c++) lines += *c == '\n';
    assert_int_equal(lines, 4);
    assert_true(strncmp(text, "name,type,layer,lambda,", 23) == 0);
    assert_non_null(strstr(text, "\"L1-local-lam4-s0\",\"local\",1,4,"));
    free(text);
    text = read_file_all(js, 0, &n);
    cJSON *j = cJSON_Parse(text);
    cJSON *saes = cJSON_GetObjectItem(j, "saes");
    assert_int_equal(cJSON_GetArraySize(saes), 3);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetArrayItem(saes, 0), "ce_increase"));
    cJSON_Delete(j);
    free(text);

    r = sweep(cfg, 0); // everything complete: nothing to do
    assert_int_equal(r.trained, 0);
    assert_int_equal(r.skipped, 3);
    free(cfg);
    cfg = write_config(f, "sw", "[1, 4, 10]"); // one more lambda: only it is trained
    r = sweep(cfg, 0);
    assert_int_equal(r.trained, 1);
    assert_int_equal(r.skipped, 3);
    free(cfg);
    free(p1);
    free(p2);
    free(ck);
    free(csv);
    free(js);
}

static void test_interrupted_sweep_resumes_bit_identical(void **state) {
    struct fixture *f = *state;
    char *a = write_config(f, "full", "[4]"), *b = write_config(f, "cut", "[4]");
    assert_int_equal(sweep(a, 0).trained, 2);
    struct sae_sweep_result r = sweep(b, 3); // every SAE stops after 3 steps
    assert_int_equal(r.trained, 0);
    char *ck = result_path(f, "cut", "L1-e2e_ds-lam2-s0.ckpt.h5");
    assert_true(file_exists(ck));
    r = sweep(b, 4);
    assert_int_equal(r.trained, 0);
    r = sweep(b, 0);
    assert_int_equal(r.trained, 2);
    const char *names[] = {"L1-local-lam4-s0.h5", "L1-e2e_ds-lam2-s0.h5"};
    for (int i = 0; i < 2; i++) {
        char *pa = result_path(f, "full", names[i]), *pb = result_path(f, "cut", names[i]);
        struct sae sa, sb;
        assert_int_equal(sae_file_read(pa, &sa, NULL), 0);
        assert_int_equal(sae_file_read(pb, &sb, NULL), 0);
        assert_memory_equal(sa.mem, sb.mem, sa.n_params * sizeof(float));
        sae_free(&sa);
        sae_free(&sb);
        free(pa);
        free(pb);
    }
    free(ck);
    free(a);
    free(b);
}

static void test_sweep_checks_inputs_before_training(void **state) {
    struct fixture *f = *state;
    char *cfg = write_config_layers(f, "bad", "[1]", "[1, 3]");
    struct config c;
    if (config_load(&c, cfg) < 0) fail_msg("%s", err_msg());
    struct sae_sources src = {f->model_dir, f->tokens_path, f->eval_path};
    struct sae_sweep_result r;
    assert_int_equal(sae_sweep_run(&c, &src, 0, &r), -1);
    assert_non_null(strstr(err_msg(), "sae.layers: layer 3"));
    src.eval_tokens = "";
    assert_int_equal(sae_sweep_run(&c, &src, 0, &r), -1);
    assert_non_null(strstr(err_msg(), "data.eval_tokens"));
    assert_int_equal(r.trained, 0);
    config_free(&c);
    free(cfg);
}

static void test_train_command_lists_the_plan(void **state) {
    struct fixture *f = *state;
    char *cfg = write_config(f, "cli", "[1, 30]");
    char *argv[] = {"train", "--list", "--model", f->model_dir, cfg, NULL};
    char *out = path_join(f->dir, "list.txt");
    fflush(stdout);
    FILE *saved = fdopen(dup(fileno(stdout)), "w");
    assert_non_null(freopen(out, "w", stdout));
    int rc = cmd_train(5, argv);
    fflush(stdout);
    dup2(fileno(saved), fileno(stdout));
    fclose(saved);
    assert_int_equal(rc, 0);
    size_t n;
    char *text = read_file_all(out, 0, &n);
    assert_non_null(strstr(text, "L1-local-lam1-s0\t"));
    assert_non_null(strstr(text, "L1-local-lam30-s0\t"));
    assert_non_null(strstr(text, "L1-e2e_ds-lam2-s0\t"));
    free(text);
    free(out);
    free(cfg);
}

/* sae-eval on an SAE file and on its SAELens export: same metrics. */
static void test_sae_eval_of_file_and_saelens_export_agree(void **state) {
    struct fixture *f = *state;
    char *cfg = write_config(f, "ev", "[4]");
    sweep(cfg, 0);
    char *sae_file = result_path(f, "ev", "L1-local-lam4-s0.h5");
    char *lens = path_join(f->dir, "lens");
    struct sae s;
    assert_int_equal(sae_file_read(sae_file, &s, NULL), 0);
    struct saelens_export_opts eo = {.model_name = "tiny", .layer = 1, .context_size = 16,
                                     .prepend_bos = false};
    assert_int_equal(saelens_export(&s, lens, &eo), 0);
    char *outs[2];
    const char *inputs[2] = {sae_file, lens};
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "eval%d.json", i);
        outs[i] = path_join(f->dir, name);
        char *argv[] = {"sae-eval", (char *)inputs[i], "--model", f->model_dir, "--tokens",
                        f->eval_path, "--n-tokens", "256", "--context", "16", NULL};
        fflush(stdout);
        FILE *saved = fdopen(dup(fileno(stdout)), "w");
        assert_non_null(freopen(outs[i], "w", stdout));
        int rc = cmd_sae_eval(10, argv);
        fflush(stdout);
        dup2(fileno(saved), fileno(stdout));
        fclose(saved);
        assert_int_equal(rc, 0);
    }
    size_t n;
    char *t0 = read_file_all(outs[0], 0, &n), *t1 = read_file_all(outs[1], 0, &n);
    cJSON *j0 = cJSON_Parse(t0), *j1 = cJSON_Parse(t1);
    assert_non_null(j0);
    assert_non_null(j1);
    const char *keys[] = {"l0", "alive", "ce_orig", "ce_sae", "kl", "mse", "explained_variance"};
    for (int k = 0; k < 7; k++) {
        double a = cJSON_GetObjectItem(j0, keys[k])->valuedouble,
               b = cJSON_GetObjectItem(j1, keys[k])->valuedouble;
        if (!(fabs(a - b) <= 1e-5 * fmax(1, fabs(a)))) fail_msg("%s: %g vs %g", keys[k], a, b);
    }
    // and the metrics stored at the end of training (batch 2, not 8) agree too
    hid_t h = h5_open_ro(sae_file);
    struct sae_metrics m;
    assert_int_equal(sae_metrics_read(h, &m), 0);
    assert_true(fabs(m.kl - cJSON_GetObjectItem(j0, "kl")->valuedouble) < 1e-5 * m.kl);
    sae_metrics_free(&m);
    h5_close(h);
    cJSON_Delete(j0);
    cJSON_Delete(j1);
    free(t0);
    free(t1);
    for (int i = 0; i < 2; i++) free(outs[i]);

    /* --save: the metrics become the file's /metrics, everything else kept */
    struct sae before;
    assert_int_equal(sae_file_read(sae_file, &before, NULL), 0);
    char *save[] = {"sae-eval", sae_file, "--model", f->model_dir, "--tokens", f->eval_path,
                    "--n-tokens", "128", "--context", "16", "--save", "-q", NULL};
    char *save_lens[] = {"sae-eval", lens, "--model", f->model_dir, "--tokens", f->eval_path,
                         "--save", "-q", NULL};
    fflush(stdout);
    FILE *saved = fdopen(dup(fileno(stdout)), "w");
    assert_non_null(freopen("/dev/null", "w", stdout));
    int rc_save = cmd_sae_eval(12, save), rc_lens = cmd_sae_eval(8, save_lens);
    fflush(stdout);
    dup2(fileno(saved), fileno(stdout));
    fclose(saved);
    assert_int_equal(rc_save, 0);
    assert_int_equal(rc_lens, 2); /* a SAELens folder: convert it first */
    struct sae after;
    assert_int_equal(sae_file_read(sae_file, &after, NULL), 0);
    assert_memory_equal(after.mem, before.mem, before.n_params * sizeof(float));
    h = h5_open_ro(sae_file);
    assert_true(h5_exists(h, "curve")); /* the training curve survives */
    assert_int_equal(sae_metrics_read(h, &m), 0);
    assert_int_equal(m.n_tokens, 128);
    assert_int_equal(m.d_sae, after.d_sae);
    sae_metrics_free(&m);
    h5_close(h);
    sae_free(&before);
    sae_free(&after);
    sae_free(&s);
    free(sae_file);
    free(lens);
    free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_warms_up_then_decays_to_min),
        cmocka_unit_test(test_training_lowers_the_loss),
        cmocka_unit_test(test_accumulation_matches_a_larger_batch),
        cmocka_unit_test(test_stopped_and_resumed_run_is_bit_identical),
        cmocka_unit_test(test_killed_run_resumes_bit_identical),
        cmocka_unit_test(test_checkpoint_of_another_run_is_not_resumed),
        cmocka_unit_test(test_lockstep_group_matches_training_alone),
        cmocka_unit_test(test_sweep_trains_every_sae_once_and_tabulates),
        cmocka_unit_test(test_interrupted_sweep_resumes_bit_identical),
        cmocka_unit_test(test_sweep_checks_inputs_before_training),
        cmocka_unit_test(test_train_command_lists_the_plan),
        cmocka_unit_test(test_sae_eval_of_file_and_saelens_export_agree),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
