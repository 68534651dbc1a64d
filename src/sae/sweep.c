/* sweep.c: plan, train, evaluate and tabulate a config's SAEs (see sweep.h).
 *
 * Completion is decided by the file alone: <name>.h5 exists only once training
 * and evaluation finished (it is written atomically), and its spec_hash says
 * what it was made from. So a killed `train` restarts where it stopped: done
 * SAEs are skipped, the interrupted one resumes from its checkpoint.
 */
#include "sae/sweep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "model/lm.h"
#include "sae/metrics.h"
#include "sae/sae_io.h"
#include "sae/train.h"
#include "tok/dataset.h"
#include "util/error.h"
#include "util/log.h"
#include "util/sha256.h"

void sae_sweep_free(struct sae_sweep *s) {
    free(s->specs);
    memset(s, 0, sizeof *s);
}

char *sae_sweep_dir(const struct config *cfg) {
    const char *root = cfg_str(cfg, "results_dir"), *exp = cfg_str(cfg, "experiment");
    size_t n = strlen(root) + strlen(exp) + 16;
    char *p = xmalloc(n);
    if (p) snprintf(p, n, "%s/%s/saes", root, exp);
    return p;
}

/* ---------------------------------------------------------------------------
 * Planning.
 */
// The canonical description of one SAE run; its SHA-256 is the spec hash.
static cJSON *spec_json(const struct config *cfg, const struct sae_sources *src,
                        const struct sae_spec *sp) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    char seed[32];
    cJSON_AddNumberToObject(o, "format_version", SAE_FILE_VERSION);
    cJSON_AddStringToObject(o, "name", sp->name);
    cJSON_AddStringToObject(o, "type", sae_type_name(sp->set.type));
    cJSON_AddNumberToObject(o, "layer", sp->set.layer);
    cJSON_AddNumberToObject(o, "lambda", sp->set.lambda);
    cJSON_AddNumberToObject(o, "kl_coeff", sp->set.kl_coeff);
    cJSON_AddNumberToObject(o, "ds_coeff", sp->set.ds_coeff);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)sp->rng_seed);
    cJSON_AddStringToObject(o, "rng_seed", seed);
    static const char *const ints[] = {"sae.ratio", "sae.train_tokens", "sae.batch",
                                       "sae.grad_accum", "sae.eval_tokens", "data.context"};
    static const char *const nums[] = {"sae.lr", "sae.warmup_fraction", "sae.min_lr_fraction",
                                       "sae.clip"};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        cJSON_AddNumberToObject(o, ints[i], (double)cfg_int(cfg, ints[i]));
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++)
        cJSON_AddNumberToObject(o, nums[i], cfg_num(cfg, nums[i]));
    cJSON_AddBoolToObject(o, "data.prepend_bos", cfg_bool(cfg, "data.prepend_bos"));
    cJSON_AddStringToObject(o, "model", src->model_path ? src->model_path : "");
    cJSON_AddStringToObject(o, "train_tokens", src->train_tokens ? src->train_tokens : "");
    cJSON_AddStringToObject(o, "eval_tokens", src->eval_tokens ? src->eval_tokens : "");
    return o;
}

static int spec_hash(const struct config *cfg, const struct sae_sources *src,
                     struct sae_spec *sp) {
    cJSON *o = spec_json(cfg, src, sp);
    cJSON *sorted = o ? json_sorted_copy(o) : NULL;
    char *text = sorted ? cJSON_PrintUnformatted(sorted) : NULL;
    cJSON_Delete(o);
    cJSON_Delete(sorted);
    if (!text) return err_set("out of memory hashing the SAE spec");
    sha256_str_hex(text, sp->hash);
    free(text);
    return 0;
}

static int add_spec(struct sae_sweep *sw, int cap, const struct sae_spec *sp) {
    if (sw->n >= cap) return err_set("sweep: more than %d SAEs", cap);
    sw->specs[sw->n++] = *sp;
    return 0;
}

int sae_sweep_plan(const struct config *cfg, const struct sae_sources *src,
                   struct sae_sweep *out) {
    memset(out, 0, sizeof *out);
    const cJSON *layers = cfg_node(cfg, "sae.layers"), *types = cfg_node(cfg, "sae.types"),
                *seeds = cfg_node(cfg, "sae.seeds");
    int cap = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, types) {
        char key[64];
        snprintf(key, sizeof key, "sae.%s.lambdas", t->valuestring);
        cap += cfg_list_len(cfg, key);
    }
    cap *= cJSON_GetArraySize(layers) * cJSON_GetArraySize(seeds);
    out->specs = xcalloc(cap ? (size_t)cap : 1, sizeof *out->specs);
    if (!out->specs) return -1;
    uint64_t master = (uint64_t)cfg_int(cfg, "seed");
    const cJSON *l, *lam, *sd;
    cJSON_ArrayForEach(l, layers) cJSON_ArrayForEach(t, types) {
        struct sae_spec sp = {0};
        if (sae_type_parse(t->valuestring, &sp.set.type) < 0) goto fail;
        char key[64];
        snprintf(key, sizeof key, "sae.%s.lambdas", t->valuestring);
        cJSON_ArrayForEach(lam, cfg_node(cfg, key)) cJSON_ArrayForEach(sd, seeds) {
            sp.set.layer = l->valueint;
            sp.set.lambda = lam->valuedouble;
            sp.set.kl_coeff = sp.set.type == SAE_E2E_DS ? cfg_num(cfg, "sae.e2e_ds.kl_coeff") : 1;
            sp.set.ds_coeff = sp.set.type == SAE_E2E_DS ? cfg_num(cfg, "sae.e2e_ds.ds_coeff") : 0;
            if (sp.set.type == SAE_LOCAL) sp.set.kl_coeff = 0;
            sp.seed = (uint64_t)sd->valuedouble;
            sp.rng_seed = sp.seed + master * 0x9E3779B97F4A7C15ull;
            snprintf(sp.name, sizeof sp.name, "L%d-%s-lam%g-s%llu", sp.set.layer,
                     t->valuestring, sp.set.lambda, (unsigned long long)sp.seed);
            if (spec_hash(cfg, src, &sp) < 0 || add_spec(out, cap, &sp) < 0) goto fail;
        }
    }
    return 0;
fail:
    sae_sweep_free(out);
    return -1;
}

/* ---------------------------------------------------------------------------
 * Running.
 */
struct run_ctx {
    const struct config *cfg;
    const struct sae_sources *src;
    const struct lm *lm;
    const struct token_dataset *train, *eval;
    char *dir;
};

static char *sae_path(const char *dir, const char *name, const char *suffix) {
    size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 2;
    char *p = xmalloc(n);
    if (p) snprintf(p, n, "%s/%s%s", dir, name, suffix);
    return p;
}

static bool is_complete(const char *path, const char *hash) {
    if (!file_exists(path)) return false;
    hid_t f = h5_open_ro(path);
    if (f < 0) return false;
    char *h = NULL;
    bool ok = h5_get_attr_str(f, "spec_hash", &h) == 0 && strcmp(h, hash) == 0 &&
              h5_exists(f, "metrics");
    free(h);
    h5_close(f);
    return ok;
}

struct extra_ctx {
    const struct sae_curve *curve;
    const struct sae_metrics *metrics;
};

static int write_extra(hid_t f, void *vctx) {
    struct extra_ctx *x = vctx;
    if (sae_curve_write(f, x->curve) < 0 || sae_metrics_write(f, x->metrics) < 0) return -1;
    double final = x->curve->n ? x->curve->rows[x->curve->n - 1].loss : NAN;
    return h5_attr_f64(f, "final_loss", final);
}

static int save(struct run_ctx *r, const struct sae_spec *sp, const struct sae *s,
                const struct sae_curve *curve, const struct sae_metrics *m, int64_t steps,
                const char *path) {
    char hook[64];
    snprintf(hook, sizeof hook, "blocks.%d.hook_resid_pre", sp->set.layer);
    char *config = config_to_json(r->cfg);
    if (!config) return -1;
    struct sae_meta meta = {
        .name = (char *)sp->name,
        .type = (char *)sae_type_name(sp->set.type),
        .hook_name = hook,
        .model_path = (char *)(r->src->model_path ? r->src->model_path : ""),
        .config = config,
        .spec_hash = (char *)sp->hash,
        .layer = sp->set.layer,
        .ratio = cfg_int(r->cfg, "sae.ratio"),
        .d_in = s->d_in,
        .d_sae = s->d_sae,
        .seed = (int64_t)sp->seed,
        .train_tokens = cfg_int(r->cfg, "sae.train_tokens"),
        .steps = steps,
        .lambda = sp->set.lambda,
        .kl_coeff = sp->set.kl_coeff,
        .ds_coeff = sp->set.ds_coeff,
    };
    struct extra_ctx x = {curve, m};
    int rc = sae_file_write(path, s, &meta, write_extra, &x);
    free(config);
    return rc;
}

static struct sae_train_opts train_opts(const struct config *cfg, const struct sae_spec *sp,
                                        const char *ckpt, int64_t max_steps) {
    struct sae_train_opts o = {
        .name = sp->name,
        .set = sp->set,
        .ratio = (int)cfg_int(cfg, "sae.ratio"),
        .seed = sp->rng_seed,
        .train_tokens = cfg_int(cfg, "sae.train_tokens"),
        .batch = (int)cfg_int(cfg, "sae.batch"),
        .context = (int)cfg_int(cfg, "data.context"),
        .grad_accum = (int)cfg_int(cfg, "sae.grad_accum"),
        .lr = cfg_num(cfg, "sae.lr"),
        .warmup_fraction = cfg_num(cfg, "sae.warmup_fraction"),
        .min_lr_fraction = cfg_num(cfg, "sae.min_lr_fraction"),
        .clip = cfg_num(cfg, "sae.clip"),
        .checkpoint_every = (int)cfg_int(cfg, "sae.checkpoint_every"),
        .checkpoint_path = ckpt,
        .spec_hash = sp->hash,
        .prepend_bos = cfg_bool(cfg, "data.prepend_bos"),
        .stop_after_steps = max_steps,
    };
    return o;
}

// Evaluate a finished SAE, write its file, drop its checkpoint.
static int finish_one(struct run_ctx *r, const struct sae_spec *sp,
                      const struct sae_train_opts *o, const struct sae *s,
                      const struct sae_curve *curve, double t0) {
    struct sae_eval_opts eo = {.layer = sp->set.layer,
                               .context = o->context,
                               .batch = o->batch,
                               .n_tokens = cfg_int(r->cfg, "sae.eval_tokens"),
                               .prepend_bos = o->prepend_bos};
    struct sae_metrics m;
    char *path = sae_path(r->dir, sp->name, ".h5");
    int rc = path ? sae_evaluate(s, r->lm, r->eval, &eo, &m) : -1;
    if (rc == 0) {
        rc = save(r, sp, s, curve, &m, sae_train_n_steps(o), path);
        if (rc == 0) {
            log_info("%s: L0 %.1f, alive %lld/%lld, CE %+.4f, KL %.4f, EV %.3f (%.0f s)",
                     sp->name, m.l0, (long long)m.alive, (long long)m.d_sae, m.ce_increase,
                     m.kl, m.explained_variance, now_seconds() - t0);
            remove(o->checkpoint_path);
        }
        sae_metrics_free(&m);
    }
    free(path);
    return rc < 0 ? err_prefix("%s", sp->name) : 0;
}

/* Train a lockstep group (sae_train_group) and finish its members: the number
 * trained and saved (0 when max_steps left them unfinished), or -1. */
static int train_group(struct run_ctx *r, const struct sae_spec *const *sp, int n,
                       int64_t max_steps) {
    struct sae_train_opts *o = xcalloc((size_t)n, sizeof *o);
    char **ckpt = xcalloc((size_t)n, sizeof *ckpt);
    struct sae *s = xcalloc((size_t)n, sizeof *s);
    struct sae_curve *c = xcalloc((size_t)n, sizeof *c);
    bool *finished = xcalloc((size_t)n, sizeof *finished);
    int rc = (!o || !ckpt || !s || !c || !finished) ? -1 : 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (!(ckpt[i] = sae_path(r->dir, sp[i]->name, ".ckpt.h5"))) rc = -1;
        else o[i] = train_opts(r->cfg, sp[i], ckpt[i], max_steps);
    }
    double t0 = now_seconds();
    if (rc == 0) rc = sae_train_group(n, o, r->lm, r->train, s, c, finished);
    int trained = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (finished[i] && finish_one(r, sp[i], &o[i], &s[i], &c[i], t0) < 0) rc = -1;
        else trained += finished[i];
    }
    for (int i = 0; s && c && i < n; i++) { // (all zeroed already if training failed)
        sae_free(&s[i]);
        sae_curve_free(&c[i]);
    }
    for (int i = 0; ckpt && i < n; i++) free(ckpt[i]);
    free(o);
    free(ckpt);
    free(s);
    free(c);
    free(finished);
    return rc < 0 ? -1 : trained;
}

/* ---------------------------------------------------------------------------
 * Tables.
 */
static cJSON *table_row(const struct sae_spec *sp, const char *path) {
    hid_t f = h5_open_ro(path);
    if (f < 0) return NULL;
    struct sae_metrics m;
    int64_t ratio = 0, dsae = 0, tt = 0;
    double final = NAN;
    cJSON *o = NULL;
    if (sae_metrics_read(f, &m) == 0) {
        if (h5_get_attr_i64(f, "ratio", &ratio) == 0 && h5_get_attr_i64(f, "d_sae", &dsae) == 0 &&
            h5_get_attr_i64(f, "train_tokens", &tt) == 0 &&
            h5_get_attr_f64(f, "final_loss", &final) == 0)
            o = sae_metrics_json(&m);
        sae_metrics_free(&m);
    }
    h5_close(f);
    if (!o) return NULL;
    cJSON *row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "name", sp->name);
    cJSON_AddStringToObject(row, "type", sae_type_name(sp->set.type));
    cJSON_AddNumberToObject(row, "layer", sp->set.layer);
    cJSON_AddNumberToObject(row, "lambda", sp->set.lambda);
    cJSON_AddNumberToObject(row, "seed", (double)sp->seed);
    cJSON_AddNumberToObject(row, "ratio", (double)ratio);
    cJSON_AddNumberToObject(row, "train_tokens", (double)tt);
    if (isfinite(final)) cJSON_AddNumberToObject(row, "final_loss", final);
    else cJSON_AddNullToObject(row, "final_loss");
    cJSON *it = o->child;
    while (it) { // move the metrics into the row
        cJSON *next = it->next;
        cJSON_AddItemToObject(row, it->string, cJSON_DetachItemViaPointer(o, it));
        it = next;
    }
    cJSON_Delete(o);
    cJSON_AddStringToObject(row, "file", path);
    return row;
}

static const char *const csv_cols[] = {
    "name", "type", "layer", "lambda", "seed", "ratio", "d_sae", "train_tokens", "final_loss",
    "l0", "alive", "alive_fraction", "dead", "ce_orig", "ce_sae", "ce_increase", "kl",
    "explained_variance", "mse", "file"};

static void csv_value(FILE *fp, const cJSON *v) {
    if (cJSON_IsString(v)) {
        fputc('"', fp);
        for (const char *c = v->valuestring; *c; c++) {
            if (*c == '"') fputc('"', fp);
            fputc(*c, fp);
        }
        fputc('"', fp);
    } else if (cJSON_IsNumber(v)) {
        fprintf(fp, "%.10g", v->valuedouble);
    }
}

static int write_tables(struct run_ctx *r, const struct sae_sweep *sw) {
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "saes");
    cJSON_AddStringToObject(root, "experiment", cfg_str(r->cfg, "experiment"));
    for (int i = 0; i < sw->n; i++) {
        char *path = sae_path(r->dir, sw->specs[i].name, ".h5");
        if (path && is_complete(path, sw->specs[i].hash)) {
            cJSON *row = table_row(&sw->specs[i], path);
            if (row) cJSON_AddItemToArray(arr, row);
            else log_warn("%s: %s (left out of the sweep table)", path, err_msg());
        }
        free(path);
    }
    char *json = cJSON_Print(root), *jpath = sae_path(r->dir, "sweep", ".json"),
         *cpath = sae_path(r->dir, "sweep", ".csv");
    int rc = (!json || !jpath || !cpath) ? -1 : 0;
    if (rc == 0) rc = atomic_write_file(jpath, json, strlen(json));
    struct atomic_file af;
    if (rc == 0) rc = atomic_open(&af, cpath);
    if (rc == 0) {
        size_t nc = sizeof csv_cols / sizeof *csv_cols;
        for (size_t c = 0; c < nc; c++) fprintf(af.fp, "%s%s", csv_cols[c], c + 1 < nc ? "," : "\n");
        const cJSON *row;
        cJSON_ArrayForEach(row, arr) {
            for (size_t c = 0; c < nc; c++) {
                csv_value(af.fp, cJSON_GetObjectItem(row, csv_cols[c]));
                fputc(c + 1 < nc ? ',' : '\n', af.fp);
            }
        }
        rc = atomic_commit(&af);
    }
    free(json);
    free(jpath);
    free(cpath);
    cJSON_Delete(root);
    return rc < 0 ? err_prefix("sweep tables in %s", r->dir) : 0;
}

static int open_inputs(struct run_ctx *r, struct lm **lm, struct token_dataset *train,
                       struct token_dataset *eval) {
    const struct sae_sources *s = r->src;
    if (!s->model_path || !s->model_path[0])
        return err_set("model.path is empty: set it or pass --model (lm-train makes one)");
    if (!s->train_tokens || !s->train_tokens[0])
        return err_set("data.train_tokens is empty: tokenize the training text first or pass "
                       "--train-tokens");
    if (!s->eval_tokens || !s->eval_tokens[0])
        return err_set("data.eval_tokens is empty: tokenize the evaluation text first or pass "
                       "--eval-tokens");
    if (lm_load(s->model_path, lm) < 0) return -1;
    r->lm = *lm;
    if (token_dataset_open(train, s->train_tokens) < 0) return -1;
    r->train = train;
    if (token_dataset_open(eval, s->eval_tokens) < 0) return -1;
    r->eval = eval;
    // check what would otherwise only fail after hours of training
    int ctx = (int)cfg_int(r->cfg, "data.context");
    bool bos = cfg_bool(r->cfg, "data.prepend_bos");
    const struct token_dataset *ds[2] = {train, eval};
    for (int i = 0; i < 2; i++) {
        if (ds[i]->vocab_size > (*lm)->cfg.vocab_size)
            return err_set("%s: vocabulary of %lld ids does not fit the model's %d", ds[i]->path,
                           (long long)ds[i]->vocab_size, (*lm)->cfg.vocab_size);
        int b = bos && ds[i]->bos_id >= 0 ? (int)ds[i]->bos_id : -1;
        if (sae_n_windows(ds[i], ctx, b) < 1)
            return err_set("%s: %lld tokens do not fill one window of data.context = %d",
                           ds[i]->path, (long long)ds[i]->n_tokens, ctx);
    }
    if (ctx > (*lm)->cfg.max_seq)
        return err_set("data.context %d exceeds the model's context of %d tokens", ctx,
                       (*lm)->cfg.max_seq);
    for (int i = 0; i < cJSON_GetArraySize(cfg_node(r->cfg, "sae.layers")); i++) {
        int l = cJSON_GetArrayItem(cfg_node(r->cfg, "sae.layers"), i)->valueint;
        if (l >= (*lm)->cfg.n_layer)
            return err_set("sae.layers: layer %d, but %s has blocks 0..%d", l, s->model_path,
                           (*lm)->cfg.n_layer - 1);
    }
    return 0;
}

/* Train every incomplete SAE, in lockstep groups of up to SAE_LOCKSTEP SAEs that
 * share a layer and a seed (so a data order) and would resume from the same step. */
static int run_groups(struct run_ctx *r, const struct sae_sweep *sw, int64_t max_steps,
                      struct sae_sweep_result *res) {
    int n = sw->n, cap = SAE_LOCKSTEP;
    bool *taken = xcalloc(n ? (size_t)n : 1, sizeof *taken);
    int64_t *step = xcalloc(n ? (size_t)n : 1, sizeof *step);
    const struct sae_spec **group = xcalloc(n ? (size_t)n : 1, sizeof *group);
    int rc = (!taken || !step || !group) ? -1 : 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        const struct sae_spec *sp = &sw->specs[i];
        char *path = sae_path(r->dir, sp->name, ".h5"), *ck = sae_path(r->dir, sp->name, ".ckpt.h5");
        if (!path || !ck) rc = -1;
        else if (is_complete(path, sp->hash)) {
            log_info("%s: complete, skipped", sp->name);
            res->skipped++;
            taken[i] = true;
        } else {
            struct sae_train_opts o = train_opts(r->cfg, sp, ck, max_steps);
            step[i] = sae_checkpoint_step(&o);
        }
        free(path);
        free(ck);
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        if (taken[i]) continue;
        int g = 0;
        for (int j = i; j < n && g < cap; j++) {
            const struct sae_spec *a = &sw->specs[i], *b = &sw->specs[j];
            if (taken[j] || a->set.layer != b->set.layer || a->rng_seed != b->rng_seed ||
                step[i] != step[j])
                continue;
            group[g++] = b;
            taken[j] = true;
        }
        if (g > 1)
            log_info("%s and %d more of layer %d, seed %llu: training together", group[0]->name,
                     g - 1, group[0]->set.layer, (unsigned long long)group[0]->seed);
        else
            log_info("%s: training", group[0]->name);
        int t = train_group(r, group, g, max_steps);
        if (t < 0) rc = -1;
        else res->trained += t;
    }
    free(taken);
    free(step);
    free(group);
    return rc;
}

int sae_sweep_run(const struct config *cfg, const struct sae_sources *src, int64_t max_steps,
                  struct sae_sweep_result *res) {
    memset(res, 0, sizeof *res);
    struct run_ctx r = {.cfg = cfg, .src = src};
    struct sae_sweep sw = {0};
    struct lm *lm = NULL;
    struct token_dataset train = {.file = -1}, eval = {.file = -1};
    r.dir = sae_sweep_dir(cfg);
    int rc = r.dir ? 0 : -1;
    if (rc == 0) rc = sae_sweep_plan(cfg, src, &sw);
    if (rc == 0) rc = mkdir_p(r.dir);
    // a sweep that is already complete needs neither model nor data
    int todo = 0;
    for (int i = 0; rc == 0 && i < sw.n; i++) {
        char *path = sae_path(r.dir, sw.specs[i].name, ".h5");
        if (!path) rc = -1;
        else if (!is_complete(path, sw.specs[i].hash)) todo++;
        free(path);
    }
    if (rc == 0 && todo) rc = open_inputs(&r, &lm, &train, &eval);
    if (rc == 0) rc = run_groups(&r, &sw, max_steps, res);
    if (rc == 0) rc = write_tables(&r, &sw);
    if (eval.file >= 0) token_dataset_close(&eval);
    if (train.file >= 0) token_dataset_close(&train);
    lm_free(lm);
    sae_sweep_free(&sw);
    free(r.dir);
    return rc;
}
