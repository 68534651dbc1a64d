/* test_sae_train.c: the trainer: learning-rate schedule, training lowers the loss,
 * a run stopped after a checkpoint and resumed (and a run killed with SIGKILL
 * and resumed) ends bit-identical to an uninterrupted one, and a checkpoint of
 * another run is not resumed. Uses a tiny random GPT-2 written in Hugging Face
 * layout and a random token dataset. */
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/safetensors.h"
#include "model/lm.h"
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
    char *dir, *model_dir, *tokens_path, *ckpt;
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_warms_up_then_decays_to_min),
        cmocka_unit_test(test_training_lowers_the_loss),
        cmocka_unit_test(test_stopped_and_resumed_run_is_bit_identical),
        cmocka_unit_test(test_killed_run_resumes_bit_identical),
        cmocka_unit_test(test_checkpoint_of_another_run_is_not_resumed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
