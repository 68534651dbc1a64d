/* pipeline.c: the stages in order, stamps, and the manifest (see pipeline.h).
 *
 * Each stage is a function over a shared context that knows the paths every
 * stage reads and writes. Before a stage runs, its input hash is computed from
 * the config keys it depends on, the content of the outside files it reads and
 * the hash of the stage before; a matching stamp with all outputs present skips
 * it. The manifest is rewritten after every stage so that a killed run still
 * says how far it got.
 */
#include "pipeline/pipeline.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <gsl/gsl_version.h>
#include <hdf5.h>

#include "extract/extract.h"
#include "interp/interp.h"
#include "llm/llm.h"
#include "report/report.h"
#include "io/atomic.h"
#include "model/lmtrain.h"
#include "sae/sweep.h"
#include "tok/corpus.h"
#include "tok/dataset.h"
#include "tok/tokenizer.h"
#include "util/error.h"
#include "util/log.h"
#include "util/sha256.h"

#define MAX_PATH_LEN 4096

struct ctx {
    const struct config *cfg;
    const struct pipeline_opts *opts;
    char *exp_dir;
    char train_tokens[MAX_PATH_LEN], eval_tokens[MAX_PATH_LEN];
    char model_path[MAX_PATH_LEN];
    char prev_hash[65];
    cJSON *manifest;
    cJSON *stages_json;
    struct llm_budget budget;  /* budget.*: shared by explainer and simulator */
    struct llm_stats llm;      /* summed over the interpretation stages of this run */
    cJSON *interp_json;        /* per-stage counts for the manifest */
    bool stopped;              /* a budget or an API error stopped the run cleanly */
};

char *pipeline_exp_dir(const struct config *cfg) {
    size_t n = strlen(cfg_str(cfg, "results_dir")) + strlen(cfg_str(cfg, "experiment")) + 2;
    char *p = xmalloc(n);
    if (p) snprintf(p, n, "%s/%s", cfg_str(cfg, "results_dir"), cfg_str(cfg, "experiment"));
    return p;
}

static void join(char *out, const char *dir, const char *name) {
    snprintf(out, MAX_PATH_LEN, "%s/%s", dir, name);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool skip_in_dir_hash(const char *name) {
    return name[0] == '.' || strstr(name, ".tmp.") || strncmp(name, "checkpoint", 10) == 0 ||
           strstr(name, ".ckpt.");
}

int hash_path(const char *path, char hex[65]) {
    struct stat st;
    if (stat(path, &st) != 0) return err_errno("%s: cannot hash", path);
    if (!S_ISDIR(st.st_mode)) return sha256_file_hex(path, hex);
    DIR *d = opendir(path);
    if (!d) return err_errno("%s: cannot list", path);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (skip_in_dir_hash(e->d_name)) continue;
        char full[MAX_PATH_LEN];
        join(full, path, e->d_name);
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (n == cap) {
            char **nn = xrealloc(names, (cap = cap ? cap * 2 : 16) * sizeof *nn);
            if (!nn) {
                rc = -1;
                break;
            }
            names = nn;
        }
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    struct sha256_ctx sc;
    sha256_init(&sc);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char full[MAX_PATH_LEN], h[65];
        join(full, path, names[i]);
        rc = sha256_file_hex(full, h);
        sha256_update(&sc, names[i], strlen(names[i]) + 1);
        sha256_update(&sc, h, 64);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (rc != 0) return -1;
    uint8_t dig[32];
    sha256_final(&sc, dig);
    sha256_to_hex(dig, hex);
    return 0;
}

/* ---- stamps and hashes ---- */

/* The input hash of a stage: its name, config sections, outside inputs, the hash
 * of the stage before. */
static int stage_hash(struct ctx *c, const char *stage, const char *const *sections,
                      const char *const *inputs, char hex[65]) {
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "stage", stage);
    cJSON_AddStringToObject(h, "upstream", c->prev_hash);
    cJSON *cs = cJSON_AddObjectToObject(h, "config");
    for (int i = 0; sections && sections[i]; i++) {
        const cJSON *node = cJSON_GetObjectItemCaseSensitive(c->cfg->root, sections[i]);
        if (node) cJSON_AddItemToObject(cs, sections[i], cJSON_Duplicate(node, 1));
    }
    cJSON *in = cJSON_AddObjectToObject(h, "inputs");
    int rc = 0;
    for (int i = 0; inputs && inputs[i] && rc == 0; i++) {
        if (!inputs[i][0]) continue;
        char fh[65];
        rc = hash_path(inputs[i], fh);
        if (rc == 0) cJSON_AddStringToObject(in, inputs[i], fh);
    }
    cJSON *sorted = rc == 0 ? json_sorted_copy(h) : NULL;
    char *text = sorted ? cJSON_PrintUnformatted(sorted) : NULL;
    if (text) sha256_hex(text, strlen(text), hex);
    else if (rc == 0) rc = err_set("out of memory hashing stage %s", stage);
    free(text);
    cJSON_Delete(sorted);
    cJSON_Delete(h);
    return rc;
}

static void stamp_path(struct ctx *c, const char *stage, char *out) {
    snprintf(out, MAX_PATH_LEN, "%s/stages/%s.json", c->exp_dir, stage);
}

/* A stamp matches when its hash is ours and every listed output exists. */
static bool stamp_matches(struct ctx *c, const char *stage, const char *hash) {
    char p[MAX_PATH_LEN];
    stamp_path(c, stage, p);
    char *text = read_file_all(p, 1 << 24, NULL);
    if (!text) {
        err_clear();
        return false;
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "input_hash");
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(j, "outputs");
    bool ok = cJSON_IsString(h) && strcmp(h->valuestring, hash) == 0 && cJSON_IsArray(outs);
    const cJSON *o;
    cJSON_ArrayForEach(o, outs) if (!cJSON_IsString(o) || !file_exists(o->valuestring)) ok = false;
    cJSON_Delete(j);
    return ok;
}

static int write_stamp(struct ctx *c, const char *stage, const char *hash, cJSON *outputs,
                       double seconds) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "stage", stage);
    cJSON_AddStringToObject(j, "input_hash", hash);
    cJSON_AddItemToObject(j, "outputs", outputs);
    cJSON_AddNumberToObject(j, "seconds", seconds);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char p[MAX_PATH_LEN];
    stamp_path(c, stage, p);
    int rc = text ? atomic_write_file(p, text, strlen(text)) : err_set("out of memory");
    free(text);
    return rc;
}

/* ---- manifest ---- */

static void iso_now(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static cJSON *manifest_new(struct ctx *c) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "schema", "autointerp-manifest/1");
    cJSON_AddStringToObject(m, "experiment", cfg_str(c->cfg, "experiment"));
    char hex[65] = "";
    config_hash(c->cfg, hex);
    cJSON_AddStringToObject(m, "config_hash", hex);
    cJSON *prog = cJSON_AddObjectToObject(m, "program");
    cJSON_AddStringToObject(prog, "version", c->opts->version ? c->opts->version : "unknown");
    cJSON_AddStringToObject(prog, "commit", c->opts->commit ? c->opts->commit : "unknown");
    cJSON *libs = cJSON_AddObjectToObject(m, "libraries");
    cJSON_AddStringToObject(libs, "libcurl", curl_version_info(CURLVERSION_NOW)->version);
    cJSON_AddStringToObject(libs, "cjson", cJSON_Version());
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    char v[64];
    snprintf(v, sizeof v, "%u.%u.%u", maj, min, rel);
    cJSON_AddStringToObject(libs, "hdf5", v);
    cJSON_AddStringToObject(libs, "gsl", GSL_VERSION);
    cJSON_AddStringToObject(libs, "openblas", openblas_get_config());
    cJSON *host = cJSON_AddObjectToObject(m, "host");
    struct utsname u;
    if (uname(&u) == 0) {
        cJSON_AddStringToObject(host, "name", u.nodename);
        cJSON_AddStringToObject(host, "system", u.sysname);
        cJSON_AddStringToObject(host, "release", u.release);
        cJSON_AddStringToObject(host, "machine", u.machine);
    }
    cJSON_AddNumberToObject(host, "cpus", (double)sysconf(_SC_NPROCESSORS_ONLN));
    cJSON_AddNumberToObject(host, "blas_threads", openblas_get_num_threads());
    char now[32];
    iso_now(now, sizeof now);
    cJSON_AddStringToObject(m, "started_at", now);
    cJSON_AddStringToObject(m, "status", "running");
    c->stages_json = cJSON_AddArrayToObject(m, "stages");
    cJSON_AddItemToObject(m, "config", cJSON_Duplicate(c->cfg->root, 1));
    return m;
}

static int manifest_write(struct ctx *c) {
    char p[MAX_PATH_LEN];
    join(p, c->exp_dir, "manifest.json");
    char *text = cJSON_Print(c->manifest);
    int rc = text ? atomic_write_file(p, text, strlen(text)) : err_set("out of memory");
    free(text);
    return rc;
}

/* ---- the stages ---- */

static int tokenize_into(const struct tokenizer *tok, const cJSON *files, const char *sep,
                         struct token_buf *out) {
    int n = cJSON_GetArraySize(files), i = 0;
    const char **paths = xcalloc((size_t)(n ? n : 1), sizeof *paths);
    if (!paths) return -1;
    const cJSON *f;
    cJSON_ArrayForEach(f, files) paths[i++] = f->valuestring;
    int rc = corpus_tokenize_files(tok, paths, n, sep, 0, out);
    free(paths);
    return rc;
}

static int write_tokens(const char *path, const struct token_buf *b, const struct tokenizer *tok) {
    struct token_dataset_meta meta = {
        .tokenizer = tokenizer_name(tok),
        .vocab_size = tokenizer_vocab_size(tok),
        .eot_id = tokenizer_kind(tok) == TOKENIZER_GPT2 ? tokenizer_eot_id(tok) : -1,
        .bos_id = tokenizer_kind(tok) == TOKENIZER_LLAMA2C ? tokenizer_bos_id(tok) : -1,
        .sources = "",
    };
    return token_dataset_write(path, b->ids, (int64_t)b->n, b->doc_offsets, (int64_t)b->n_docs,
                               &meta);
}

static int stage_tokenize(struct ctx *c, cJSON *outputs) {
    const struct config *cfg = c->cfg;
    const char *given_train = cfg_str(cfg, "data.train_tokens");
    const char *given_eval = cfg_str(cfg, "data.eval_tokens");
    bool need_tok = !given_train[0] || (!given_eval[0] && cfg_list_len(cfg, "data.eval_text") > 0);
    struct tokenizer *tok = NULL;
    if (need_tok && !(tok = tokenizer_load(cfg_str(cfg, "data.tokenizer"))))
        return err_prefix("data.tokenizer");
    const char *sep = cfg_str(cfg, "data.separator");
    int rc = 0;
    struct token_buf all = {0}, train = {0}, eval = {0};
    if (!given_train[0]) {
        rc = tokenize_into(tok, cfg_node(cfg, "data.train_text"), sep, &all);
        if (rc == 0 && !given_eval[0] && cfg_list_len(cfg, "data.eval_text") == 0) {
            rc = corpus_split(&all, cfg_num(cfg, "data.eval_fraction"),
                              (uint64_t)cfg_int(cfg, "seed"), &train, &eval);
            if (rc == 0) rc = write_tokens(c->train_tokens, &train, tok);
            if (rc == 0) rc = write_tokens(c->eval_tokens, &eval, tok);
            if (rc == 0) log_info("tokenize: %zu training and %zu held-out tokens (%zu / %zu documents)",
                                  train.n, eval.n, train.n_docs, eval.n_docs);
        } else if (rc == 0) {
            rc = write_tokens(c->train_tokens, &all, tok);
            if (rc == 0) log_info("tokenize: %zu training tokens", all.n);
        }
    }
    if (rc == 0 && !given_eval[0] && cfg_list_len(cfg, "data.eval_text") > 0) {
        token_buf_free(&eval);
        rc = tokenize_into(tok, cfg_node(cfg, "data.eval_text"), sep, &eval);
        if (rc == 0) rc = write_tokens(c->eval_tokens, &eval, tok);
        if (rc == 0) log_info("tokenize: %zu evaluation tokens", eval.n);
    }
    token_buf_free(&all);
    token_buf_free(&train);
    token_buf_free(&eval);
    tokenizer_free(tok);
    if (rc == 0) {
        cJSON_AddItemToArray(outputs, cJSON_CreateString(c->train_tokens));
        cJSON_AddItemToArray(outputs, cJSON_CreateString(c->eval_tokens));
    }
    return rc;
}

static int stage_lm_train(struct ctx *c, cJSON *outputs) {
    const struct config *cfg = c->cfg;
    struct lmtrain_config lc;
    lmtrain_defaults(&lc);
    lc.tokens_path = c->train_tokens;
    lc.out_dir = c->model_path;
    lc.n_layer = (int)cfg_int(cfg, "model.train.n_layer");
    lc.n_embd = (int)cfg_int(cfg, "model.train.n_embd");
    lc.n_head = (int)cfg_int(cfg, "model.train.n_head");
    lc.context = (int)cfg_int(cfg, "model.train.context");
    lc.batch = (int)cfg_int(cfg, "model.train.batch");
    lc.minutes = cfg_num(cfg, "model.train.minutes");
    lc.steps = cfg_int(cfg, "model.train.steps");
    lc.lr = cfg_num(cfg, "model.train.lr");
    lc.warmup = cfg_int(cfg, "model.train.warmup_steps");
    lc.weight_decay = cfg_num(cfg, "model.train.weight_decay");
    lc.grad_clip = cfg_num(cfg, "model.train.clip");
    lc.eval_every = cfg_int(cfg, "model.train.eval_every");
    lc.eval_tokens = cfg_int(cfg, "model.train.eval_tokens");
    lc.checkpoint_every = cfg_int(cfg, "model.train.checkpoint_every");
    lc.seed = (uint64_t)cfg_int(cfg, "seed");
    lc.resume = true;
    if (mkdir_p(c->model_path) != 0) return -1;
    struct lmtrain_result res;
    memset(&res, 0, sizeof res);
    int rc = lmtrain_run(&lc, &res);
    if (rc == 0)
        log_info("lm-train: %lld steps, validation loss %.4f nats (unigram entropy %.4f)",
                 (long long)res.steps_done, res.final_val_loss, res.unigram_entropy);
    lmtrain_result_free(&res);
    if (rc == 0) {
        char p[MAX_PATH_LEN];
        join(p, c->model_path, "model.safetensors");
        cJSON_AddItemToArray(outputs, cJSON_CreateString(p));
    }
    return rc;
}

static int stage_train(struct ctx *c, cJSON *outputs) {
    struct sae_sources src = {c->model_path, c->train_tokens, c->eval_tokens};
    struct sae_sweep_result res = {0};
    int rc = sae_sweep_run(c->cfg, &src, 0, &res);
    if (rc != 0) return -1;
    log_info("train: %d SAEs trained, %d already complete", res.trained, res.skipped);
    char *dir = sae_sweep_dir(c->cfg);
    if (!dir) return -1;
    char p[MAX_PATH_LEN];
    join(p, dir, "sweep.json");
    cJSON_AddItemToArray(outputs, cJSON_CreateString(p));
    free(dir);
    return 0;
}

/* The SAE files of the sweep, in plan order (caller frees each and the array). */
int pipeline_sae_files(const struct config *cfg, char ***paths, int *n) {
    struct pipeline_paths pp;
    if (pipeline_paths(cfg, &pp) != 0) return -1;
    struct sae_sources src = {pp.model, pp.train_tokens, pp.eval_tokens};
    struct sae_sweep sw;
    if (sae_sweep_plan(cfg, &src, &sw) != 0) return -1;
    char *dir = sae_sweep_dir(cfg);
    *paths = xcalloc((size_t)(sw.n ? sw.n : 1), sizeof **paths);
    if (!dir || !*paths) {
        free(dir);
        sae_sweep_free(&sw);
        return -1;
    }
    for (int i = 0; i < sw.n; i++) {
        (*paths)[i] = xmalloc(MAX_PATH_LEN);
        snprintf((*paths)[i], MAX_PATH_LEN, "%s/%s.h5", dir, sw.specs[i].name);
    }
    *n = sw.n;
    free(dir);
    sae_sweep_free(&sw);
    return 0;
}

void pipeline_paths_free(char **paths, int n) {
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}


static int stage_extract(struct ctx *c, cJSON *outputs) {
    struct extract_settings s;
    if (extract_settings_from_config(c->cfg, &s) != 0) return -1;
    char **paths;
    int n;
    if (pipeline_sae_files(c->cfg, &paths, &n) != 0) {
        extract_settings_free(&s);
        return -1;
    }
    char out_dir[MAX_PATH_LEN];
    join(out_dir, c->exp_dir, "examples");
    struct extract_job job = {
        .model_path = c->model_path,
        .tokens_path = c->eval_tokens,
        .out_dir = out_dir,
        .sae_paths = (const char *const *)paths,
        .n_saes = n,
        .force = false,
    };
    struct extract_summary sum = {0};
    int rc = mkdir_p(out_dir);
    if (rc == 0) rc = extract_run(&s, &job, &sum);
    if (rc == 0) {
        log_info("extract: %d files written, %d already complete, %lld tokens scanned",
                 sum.n_written, sum.n_skipped, (long long)sum.n_tokens);
        for (int i = 0; i < n; i++) {
            char *o = extract_output_path(out_dir, paths[i]);
            if (o) cJSON_AddItemToArray(outputs, cJSON_CreateString(o));
            free(o);
        }
    }
    pipeline_paths_free(paths, n);
    extract_settings_free(&s);
    return rc;
}

/* The examples files of the sweep, one per SAE, in plan order. */
static int examples_files(struct ctx *c, char ***out, int *n) {
    char **saes;
    if (pipeline_sae_files(c->cfg, &saes, n) != 0) return -1;
    char dir[MAX_PATH_LEN];
    join(dir, c->exp_dir, "examples");
    *out = xcalloc((size_t)(*n ? *n : 1), sizeof **out);
    for (int i = 0; *out && i < *n; i++) (*out)[i] = extract_output_path(dir, saes[i]);
    pipeline_paths_free(saes, *n);
    return *out ? 0 : -1;
}

static void add_stats(struct llm_stats *sum, const struct llm_stats *x) {
    sum->requests += x->requests;
    sum->ok += x->ok;
    for (int i = 0; i < LLM_N_STATUS; i++) sum->by_status[i] += x->by_status[i];
    sum->http_calls += x->http_calls;
    sum->retries += x->retries;
    sum->cache_hits += x->cache_hits;
    sum->cache_corrupt += x->cache_corrupt;
    sum->prompt_tokens += x->prompt_tokens;
    sum->completion_tokens += x->completion_tokens;
    sum->cost_usd += x->cost_usd;
    sum->latency_ms_sum += x->latency_ms_sum;
    if (x->latency_ms_max > sum->latency_ms_max) sum->latency_ms_max = x->latency_ms_max;
}

/* obj[key] = item, replacing or adding (cJSON_ReplaceItemInObject only replaces). */
static void json_set(cJSON *obj, const char *key, cJSON *item) {
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item);
    else
        cJSON_AddItemToObject(obj, key, item);
}

static cJSON *counts_json(const struct interp_counts *k) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "features", k->n_features);
    cJSON_AddNumberToObject(j, "done_before", k->n_done_before);
    cJSON_AddNumberToObject(j, "ok", k->n_ok);
    cJSON_AddNumberToObject(j, "no_score", k->n_no_score);
    cJSON_AddNumberToObject(j, "failed", k->n_failed);
    cJSON_AddNumberToObject(j, "pending", k->n_pending);
    cJSON *r = cJSON_AddObjectToObject(j, "reasons");
    for (int i = 0; i < k->n_reasons; i++) cJSON_AddNumberToObject(r, k->reasons[i].name, k->reasons[i].n);
    cJSON_AddNumberToObject(j, "llm_requests", (double)k->llm.requests);
    cJSON_AddNumberToObject(j, "llm_http_calls", (double)k->llm.http_calls);
    cJSON_AddNumberToObject(j, "llm_cache_hits", (double)k->llm.cache_hits);
    return j;
}

/* How many of the stage's reasons are `name`. */
static int reason_count(const struct interp_counts *k, const char *name) {
    for (int i = 0; i < k->n_reasons; i++)
        if (strcmp(k->reasons[i].name, name) == 0) return k->reasons[i].n;
    return 0;
}

/* which: the stage; dir: its output folder; verb: for messages ("explained"). */
static int stage_interp(struct ctx *c, enum interp_stage which, const char *dir, const char *verb,
                        cJSON *outputs) {
    struct interp_settings s;
    if (interp_settings_from_config(c->cfg, &s) != 0) return -1;
    s.budget = &c->budget;
    char **files;
    int n;
    if (examples_files(c, &files, &n) != 0) {
        interp_settings_free(&s);
        return -1;
    }
    struct interp_job job = {
        .examples = (const char *const *)files,
        .n_examples = n,
        .tokenizer = cfg_str(c->cfg, "data.tokenizer"),
        .run_dir = c->exp_dir,
    };
    struct interp_counts total;
    memset(&total, 0, sizeof total);
    int rc = interp_run(which, &s, &job, NULL, &total);
    add_stats(&c->llm, &total.llm);
    const char *name = which == INTERP_EXPLAIN ? "explain" : which == INTERP_SIMULATE ? "simulate" : "score";
    json_set(c->interp_json, name, counts_json(&total));
    if (rc == 0) {
        log_info("%s: %d ok, %d no score, %d failed, %d done before, %d pending", name, total.n_ok,
                 total.n_no_score, total.n_failed, total.n_done_before, total.n_pending);
        /* a feature whose explanation failed has nothing to simulate: its failure
         * is final (score records it against the explain stage), not work left */
        int waiting = total.n_pending - reason_count(&total, "explanation_failed");
        if (waiting > 0) {
            /* never sent (budget, deadline, a stopping API error): not complete, so
             * no stamp; the next run picks them up */
            c->stopped = true;
            rc = err_set("%d feature%s not %s: the run stopped early (budget, deadline or an "
                         "API error; see the log); rerun to continue",
                         waiting, waiting == 1 ? "" : "s", verb);
        }
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        char *sae = interp_sae_name(files[i]);
        char *o = sae ? interp_output_path(c->exp_dir, dir, sae) : NULL;
        if (o) cJSON_AddItemToArray(outputs, cJSON_CreateString(o));
        free(o);
        free(sae);
    }
    pipeline_paths_free(files, n);
    interp_settings_free(&s);
    return rc;
}

static int stage_explain(struct ctx *c, cJSON *o) {
    return stage_interp(c, INTERP_EXPLAIN, "explanations", "explained", o);
}
static int stage_simulate(struct ctx *c, cJSON *o) {
    return stage_interp(c, INTERP_SIMULATE, "simulations", "simulated", o);
}
static int stage_score(struct ctx *c, cJSON *o) {
    return stage_interp(c, INTERP_SCORE, "scores", "scored", o);
}

static int stage_report(struct ctx *c, cJSON *outputs) {
    struct report_settings s;
    if (report_settings_from_config(c->cfg, &s) != 0) return -1;
    struct report_outcome out;
    memset(&out, 0, sizeof out);
    int rc = report_run(&s, &out);
    report_settings_free(&s);
    if (rc != 0) return -1;
    log_info("report: %d SAEs (%d with scores), %d pairs compared, in %s", out.n_saes,
             out.n_with_scores, out.n_compared, out.out_dir);
    char p[MAX_PATH_LEN];
    join(p, out.out_dir, "summary.json");
    cJSON_AddItemToArray(outputs, cJSON_CreateString(p));
    join(p, out.out_dir, "report.md");
    cJSON_AddItemToArray(outputs, cJSON_CreateString(p));
    return 0;
}

static void manifest_llm(struct ctx *c) {
    cJSON *j = cJSON_CreateObject();
    const struct llm_stats *x = &c->llm;
    cJSON_AddNumberToObject(j, "requests", (double)x->requests);
    cJSON_AddNumberToObject(j, "ok", (double)x->ok);
    cJSON_AddNumberToObject(j, "http_calls", (double)x->http_calls);
    cJSON_AddNumberToObject(j, "retries", (double)x->retries);
    cJSON_AddNumberToObject(j, "cache_hits", (double)x->cache_hits);
    cJSON_AddNumberToObject(j, "prompt_tokens", (double)x->prompt_tokens);
    cJSON_AddNumberToObject(j, "completion_tokens", (double)x->completion_tokens);
    cJSON_AddNumberToObject(j, "cost_usd", x->cost_usd);
    cJSON *f = cJSON_AddObjectToObject(j, "failures");
    for (int i = 0; i < LLM_N_STATUS; i++)
        if (i != LLM_OK && x->by_status[i]) cJSON_AddNumberToObject(f, llm_status_name((enum llm_status)i), (double)x->by_status[i]);
    cJSON_AddItemToObject(j, "stages", cJSON_Duplicate(c->interp_json, 1));
    json_set(c->manifest, "llm", j);
}

/* ---- driver ---- */

struct stage {
    const char *name;
    int (*run)(struct ctx *c, cJSON *outputs);
    const char *const *sections;
};

static const char *const sec_tokenize[] = {"data", "seed", NULL};
static const char *const sec_lm_train[] = {"model", "seed", NULL};
static const char *const sec_train[] = {"sae", "data", "seed", NULL};
static const char *const sec_extract[] = {"extract", "interp", "data", "seed", NULL};
static const char *const sec_explain[] = {"interp", "explainer", NULL};
static const char *const sec_simulate[] = {"interp", "simulator", NULL};
static const char *const sec_score[] = {"interp", NULL};
static const char *const sec_report[] = {"report", NULL};

static const struct stage stages[] = {
    {"tokenize", stage_tokenize, sec_tokenize},
    {"lm-train", stage_lm_train, sec_lm_train},
    {"train", stage_train, sec_train},
    {"extract", stage_extract, sec_extract},
    {"explain", stage_explain, sec_explain},
    {"simulate", stage_simulate, sec_simulate},
    {"score", stage_score, sec_score},
    {"report", stage_report, sec_report},
};
#define N_STAGES ((int)(sizeof stages / sizeof *stages))

static struct pipeline_stage_report reports[N_STAGES];

/* The files a stage reads from outside the run directory (hashed by content). */
static int outside_inputs(struct ctx *c, const char *stage, const char **inputs, int max) {
    const struct config *cfg = c->cfg;
    int n = 0;
    if (strcmp(stage, "tokenize") == 0) {
        const char *keys[] = {"data.train_text", "data.eval_text"};
        for (int k = 0; k < 2; k++) {
            const cJSON *f;
            cJSON_ArrayForEach(f, cfg_node(cfg, keys[k])) if (n < max - 3) inputs[n++] = f->valuestring;
        }
        inputs[n++] = cfg_str(cfg, "data.train_tokens");
        inputs[n++] = cfg_str(cfg, "data.eval_tokens");
        inputs[n++] = cfg_str(cfg, "data.tokenizer");
    } else if (strcmp(stage, "train") == 0) {
        inputs[n++] = cfg_str(cfg, "model.path"); /* "" when trained here: ignored */
    } else if (strcmp(stage, "explain") == 0 || strcmp(stage, "simulate") == 0) {
        inputs[n++] = cfg_str(cfg, "interp.prompts"); /* the templates, by content */
    }
    inputs[n] = NULL;
    return n;
}

int pipeline_paths(const struct config *cfg, struct pipeline_paths *p) {
    char *exp = pipeline_exp_dir(cfg);
    if (!exp) return -1;
    const char *model = cfg_str(cfg, "model.path"), *tr = cfg_str(cfg, "data.train_tokens"),
               *ev = cfg_str(cfg, "data.eval_tokens");
    p->model_from_run = !model[0];
    if (model[0]) snprintf(p->model, sizeof p->model, "%s", model);
    else snprintf(p->model, sizeof p->model, "%s/model", exp);
    if (tr[0]) snprintf(p->train_tokens, sizeof p->train_tokens, "%s", tr);
    else snprintf(p->train_tokens, sizeof p->train_tokens, "%s/data/train.h5", exp);
    if (ev[0]) snprintf(p->eval_tokens, sizeof p->eval_tokens, "%s", ev);
    else snprintf(p->eval_tokens, sizeof p->eval_tokens, "%s/data/eval.h5", exp);
    free(exp);
    return 0;
}

int pipeline_paths_require(const struct config *cfg, const struct pipeline_paths *p, bool model,
                           bool train, bool eval) {
    struct {
        bool want;
        const char *key, *path, *stage;
    } need[] = {{model, "model.path", p->model, "lm-train"},
                {train, "data.train_tokens", p->train_tokens, "tokenize"},
                {eval, "data.eval_tokens", p->eval_tokens, "tokenize"}};
    for (size_t i = 0; i < sizeof need / sizeof *need; i++) {
        struct stat st;
        if (!need[i].want || cfg_str(cfg, need[i].key)[0] || stat(need[i].path, &st) == 0) continue;
        return err_set("%s is empty and %s (where `autointerp run` puts it) does not exist yet: "
                       "run `autointerp run CONFIG --until %s` first, or set %s",
                       need[i].key, need[i].path, need[i].stage, need[i].key);
    }
    return 0;
}

int pipeline_run(const struct config *cfg, const struct pipeline_opts *opts,
                 const struct pipeline_stage_report **out_reports, int *n_stages) {
    struct ctx c;
    memset(&c, 0, sizeof c);
    c.cfg = cfg;
    c.opts = opts;
    c.exp_dir = pipeline_exp_dir(cfg);
    if (!c.exp_dir) return -1;
    char stages_dir[MAX_PATH_LEN], data_dir[MAX_PATH_LEN];
    join(stages_dir, c.exp_dir, "stages");
    join(data_dir, c.exp_dir, "data");
    int rc = mkdir_p(stages_dir);
    if (rc == 0) rc = mkdir_p(data_dir);
    /* what a killed earlier run was writing when it died */
    int stale = rc == 0 ? atomic_sweep_stale(c.exp_dir) : 0;
    if (stale > 0) log_info("removed %d temporary file%s left by an interrupted run", stale, stale == 1 ? "" : "s");
    if (rc != 0) {
        free(c.exp_dir);
        return -1;
    }
    struct pipeline_paths paths;
    if (pipeline_paths(cfg, &paths) != 0) {
        free(c.exp_dir);
        return -1;
    }
    snprintf(c.train_tokens, MAX_PATH_LEN, "%s", paths.train_tokens);
    snprintf(c.eval_tokens, MAX_PATH_LEN, "%s", paths.eval_tokens);
    snprintf(c.model_path, MAX_PATH_LEN, "%s", paths.model);
    bool train_model = paths.model_from_run;

    /* the resolved config beside the results */
    char *json = config_to_json(cfg);
    char cfg_path[MAX_PATH_LEN];
    join(cfg_path, c.exp_dir, "config.json");
    rc = json ? atomic_write_file(cfg_path, json, strlen(json)) : -1;
    free(json);
    c.budget.max_requests = cfg_int(cfg, "budget.max_requests");
    c.budget.max_tokens = cfg_int(cfg, "budget.max_tokens");
    c.budget.max_cost_usd = cfg_num(cfg, "budget.max_cost_usd");
    c.interp_json = cJSON_CreateObject();
    c.manifest = rc == 0 ? manifest_new(&c) : NULL;
    if (rc == 0) rc = manifest_write(&c);

    for (int i = 0; i < N_STAGES; i++) reports[i] = (struct pipeline_stage_report){stages[i].name, "not reached", 0};
    bool stop = false;
    for (int i = 0; rc == 0 && i < N_STAGES && !stop; i++) {
        const struct stage *st = &stages[i];
        struct pipeline_stage_report *r = &reports[i];
        if (strcmp(st->name, "lm-train") == 0 && !train_model) {
            r->status = "not needed";
            continue;
        }
        const char *inputs[64];
        outside_inputs(&c, st->name, inputs, 64);
        char hash[65];
        if (stage_hash(&c, st->name, st->sections, inputs, hash) != 0) {
            rc = err_prefix("stage %s", st->name);
            r->status = "failed";
            break;
        }
        double t0 = now_seconds();
        if (!opts->force && stamp_matches(&c, st->name, hash)) {
            r->status = "skipped";
            log_info("%s: up to date (same inputs and config), skipped", st->name);
        } else {
            log_info("%s: starting", st->name);
            cJSON *outputs = cJSON_CreateArray();
            rc = st->run(&c, outputs);
            r->seconds = now_seconds() - t0;
            if (rc == 0) {
                r->status = "ran";
                rc = write_stamp(&c, st->name, hash, outputs, r->seconds);
                outputs = NULL;
                log_info("%s: done in %.1f s", st->name, r->seconds);
            } else {
                r->status = "failed";
                err_prefix("stage %s", st->name);
                cJSON_Delete(outputs);
            }
        }
        memcpy(c.prev_hash, hash, sizeof hash);
        cJSON *sj = cJSON_CreateObject();
        cJSON_AddStringToObject(sj, "name", st->name);
        cJSON_AddStringToObject(sj, "status", r->status);
        cJSON_AddNumberToObject(sj, "seconds", r->seconds);
        cJSON_AddStringToObject(sj, "input_hash", hash);
        cJSON_AddItemToArray(c.stages_json, sj);
        if (opts->until && strcmp(opts->until, st->name) == 0) stop = true;
        manifest_llm(&c);
        char saved[ERR_MSG_MAX];
        snprintf(saved, sizeof saved, "%s", err_msg());
        manifest_write(&c);
        if (rc != 0) err_set("%s", saved);
    }
    if (c.manifest) {
        char now[32];
        iso_now(now, sizeof now);
        cJSON_AddStringToObject(c.manifest, "finished_at", now);
        json_set(c.manifest, "status",
                 cJSON_CreateString(rc == 0 ? "ok" : c.stopped ? "stopped" : "failed"));
        if (rc != 0) cJSON_AddStringToObject(c.manifest, "error", err_msg());
        char saved[ERR_MSG_MAX];
        snprintf(saved, sizeof saved, "%s", err_msg());
        manifest_write(&c);
        if (rc != 0) err_set("%s", saved);
    }
    cJSON_Delete(c.manifest);
    cJSON_Delete(c.interp_json);
    free(c.exp_dir);
    *out_reports = reports;
    *n_stages = N_STAGES;
    return rc;
}
