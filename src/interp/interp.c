/* interp.c: settings, window selection, earlier results and clients shared by
 * the explain, simulate and score stages (see interp.h). */
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp/builtin.h"
#include "interp/interp_internal.h"
#include "interp/prompts.h"
#include "io/jsonl.h"
#include "util/error.h"
#include "util/sha256.h"

const char *sim_mode_name(enum sim_mode m) {
    return m == SIM_JSON ? "json" : m == SIM_LOGPROBS ? "logprobs" : "builtin";
}

int sim_mode_parse(const char *s, enum sim_mode *m) {
    if (strcmp(s, "json") == 0) *m = SIM_JSON;
    else if (strcmp(s, "logprobs") == 0) *m = SIM_LOGPROBS;
    else if (strcmp(s, "builtin") == 0) *m = SIM_BUILTIN;
    else return err_set("simulator mode must be json, logprobs or builtin, got '%s'", s);
    return 0;
}

/* ---- settings ---- */

static void endpoint_default(struct interp_endpoint *e, const char *model) {
    e->builtin = true;
    llm_endpoint_config_init(&e->llm);
    e->llm.model = model;
    e->llm.max_tokens = 400;
}

void interp_settings_default(struct interp_settings *s) {
    memset(s, 0, sizeof *s);
    s->prompts_dir = PROMPT_DEFAULT_DIR;
    s->n_explain = 10;
    s->n_score_top = 10;
    s->n_score_random = 10;
    s->n_score_quantile = 0;
    s->max_explanation_bytes = 400;
    s->sparse_threshold = 0.2;
    s->sparse_context = 3;
    s->mode = SIM_BUILTIN;
    s->logprobs_api = LOGPROBS_CHAT;
    s->top_logprobs = 20;
    endpoint_default(&s->explainer, "builtin-explainer");
    endpoint_default(&s->simulator, "builtin-simulator");
}

void interp_settings_free(struct interp_settings *s) {
    for (int i = 0; i < s->n_store; i++) free(s->store[i]);
    free(s->store);
    s->store = NULL;
    s->n_store = 0;
}

static char *keep(struct interp_settings *s, char *owned) {
    if (!owned) return NULL;
    char **g = xrealloc(s->store, sizeof *g * (size_t)(s->n_store + 1));
    if (!g) {
        free(owned);
        return NULL;
    }
    s->store = g;
    s->store[s->n_store++] = owned;
    return owned;
}

int interp_settings_set(struct interp_settings *s, const char **field, const char *value) {
    char *c = keep(s, xstrdup(value));
    if (!c) return -1;
    *field = c;
    return 0;
}

static int endpoint_from_config(const struct config *cfg, const char *role,
                                struct interp_settings *s, struct interp_endpoint *e) {
    char key[96];
#define K(name) (snprintf(key, sizeof key, "%s." name, role), key)
    e->builtin = strcmp(cfg_str(cfg, K("provider")), "builtin") == 0;
    llm_endpoint_config_init(&e->llm);
    struct llm_endpoint_config *l = &e->llm;
    if (interp_settings_set(s, &l->base_url, cfg_str(cfg, K("base_url"))) != 0 ||
        interp_settings_set(s, &l->model, cfg_str(cfg, K("model"))) != 0 ||
        interp_settings_set(s, &l->api_key_env, cfg_str(cfg, K("api_key_env"))) != 0)
        return -1;
    l->temperature = cfg_num(cfg, K("temperature"));
    l->max_tokens = (int)cfg_int(cfg, K("max_tokens"));
    l->seed = cfg_int(cfg, K("seed"));
    l->concurrency = (int)cfg_int(cfg, K("concurrency"));
    l->timeout_ms = (long)cfg_int(cfg, K("timeout_ms"));
    l->max_retries = (int)cfg_int(cfg, K("max_retries"));
    l->rpm = cfg_num(cfg, K("rpm"));
    l->tpm = cfg_num(cfg, K("tpm"));
    l->price_prompt_usd_per_mtok = cfg_num(cfg, K("price_prompt"));
    l->price_completion_usd_per_mtok = cfg_num(cfg, K("price_completion"));
    const cJSON *headers = cfg_node(cfg, K("headers"));
#undef K
    int n = cJSON_GetArraySize(headers);
    if (n > 0) {
        const char **h = xcalloc((size_t)n, sizeof *h);
        if (!h || !keep(s, (char *)h)) return -1;
        const cJSON *it;
        int i = 0;
        cJSON_ArrayForEach(it, headers) {
            size_t len = strlen(it->string) + strlen(it->valuestring) + 3;
            char *line = keep(s, xmalloc(len));
            if (!line) return -1;
            snprintf(line, len, "%s: %s", it->string, it->valuestring);
            h[i++] = line;
        }
        l->headers = h;
        l->n_headers = n;
    }
    return 0;
}

int interp_settings_from_config(const struct config *cfg, struct interp_settings *s) {
    interp_settings_default(s);
    if (interp_settings_set(s, &s->prompts_dir, cfg_str(cfg, "interp.prompts")) != 0) return -1;
    s->n_explain = (int)cfg_int(cfg, "interp.n_explain");
    s->n_score_top = (int)cfg_int(cfg, "interp.n_score_top");
    s->n_score_random = (int)cfg_int(cfg, "interp.n_score_random");
    s->n_score_quantile = (int)cfg_int(cfg, "interp.n_score_quantile");
    s->max_explanation_bytes = (int)cfg_int(cfg, "interp.max_explanation_bytes");
    s->sparse_threshold = cfg_num(cfg, "interp.sparse_threshold");
    s->sparse_context = (int)cfg_int(cfg, "interp.sparse_context");
    if (sim_mode_parse(cfg_str(cfg, "simulator.mode"), &s->mode) != 0)
        return err_prefix("simulator.mode");
    s->logprobs_api = strcmp(cfg_str(cfg, "simulator.logprobs_api"), "completions") == 0
                          ? LOGPROBS_COMPLETIONS
                          : LOGPROBS_CHAT;
    s->top_logprobs = (int)cfg_int(cfg, "simulator.top_logprobs");
    if (endpoint_from_config(cfg, "explainer", s, &s->explainer) != 0 ||
        endpoint_from_config(cfg, "simulator", s, &s->simulator) != 0)
        return -1;
    if (cfg_bool(cfg, "interp.cache")) {
        size_t len = strlen(cfg_str(cfg, "results_dir")) + strlen(cfg_str(cfg, "experiment")) + 16;
        char *dir = keep(s, xmalloc(len));
        if (!dir) return -1;
        snprintf(dir, len, "%s/%s/llm-cache", cfg_str(cfg, "results_dir"),
                 cfg_str(cfg, "experiment"));
        s->explainer.llm.cache_dir = dir;
        s->simulator.llm.cache_dir = dir;
    }
    return 0;
}

/* ---- counts and paths ---- */

void interp_counts_add_reason(struct interp_counts *c, const char *name) {
    for (int i = 0; i < c->n_reasons; i++)
        if (strcmp(c->reasons[i].name, name) == 0) {
            c->reasons[i].n++;
            return;
        }
    if (c->n_reasons < INTERP_MAX_REASONS - 1) {
        struct interp_reason *r = &c->reasons[c->n_reasons++];
        snprintf(r->name, sizeof r->name, "%s", name);
        r->n = 1;
        return;
    }
    struct interp_reason *other = &c->reasons[INTERP_MAX_REASONS - 1]; /* collects the rest */
    if (c->n_reasons < INTERP_MAX_REASONS) {
        snprintf(other->name, sizeof other->name, "other");
        other->n = 0;
        c->n_reasons = INTERP_MAX_REASONS;
    }
    other->n++;
}

char *interp_sae_name(const char *examples_path) {
    const char *base = strrchr(examples_path, '/');
    base = base ? base + 1 : examples_path;
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".h5") == 0) n -= 3;
    char *name = xmalloc(n + 1);
    if (!name) return NULL;
    memcpy(name, base, n);
    name[n] = 0;
    return name;
}

char *interp_output_path(const char *run_dir, const char *kind, const char *sae) {
    size_t len = strlen(run_dir) + strlen(kind) + strlen(sae) + 10;
    char *p = xmalloc(len);
    if (p) snprintf(p, len, "%s/%s/%s.jsonl", run_dir, kind, sae);
    return p;
}

/* ---- windows ---- */

int interp_n_features(const struct interp_settings *s, const struct examples *ex) {
    return s->max_features > 0 && s->max_features < ex->n_features ? s->max_features
                                                                   : ex->n_features;
}

int interp_windows(const struct examples *ex, int fi, enum window_split split, int limit,
                   int64_t *out) {
    int64_t first, count;
    examples_feature_windows(ex, fi, &first, &count);
    int n = 0;
    for (int64_t w = first; w < first + count && n < limit; w++)
        if (ex->win_split[w] == split) out[n++] = w;
    return n;
}

int interp_scored_windows(const struct interp_settings *s, const struct examples *ex, int fi,
                          int64_t *out) {
    int n = interp_windows(ex, fi, SPLIT_SCORE_TOP, s->n_score_top, out);
    n += interp_windows(ex, fi, SPLIT_SCORE_RANDOM, s->n_score_random, out + n);
    n += interp_windows(ex, fi, SPLIT_SCORE_QUANTILE, s->n_score_quantile, out + n);
    return n;
}

static const char *const split_names[] = {"explain", "top", "random", "quantile"};

const char *interp_split_name(int split) {
    return split >= 0 && split < 4 ? split_names[split] : "unknown";
}

int interp_split_parse(const char *name) {
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, split_names[i]) == 0) return i;
    return -1;
}

/* ---- earlier results ---- */

struct load_ctx {
    const struct examples *ex;
    struct records *r;
};

static int feature_index_of(const struct examples *ex, long long id) {
    for (int i = 0; i < ex->n_features; i++)
        if (ex->features[i] == id) return i;
    return -1;
}

static int load_line(const cJSON *obj, int line_no, void *ctx) {
    struct load_ctx *lc = ctx;
    (void)line_no;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, "feature");
    if (!cJSON_IsNumber(f)) return 0;
    int fi = feature_index_of(lc->ex, (long long)f->valuedouble);
    if (fi < 0) return 0;
    cJSON *copy = cJSON_Duplicate(obj, 1);
    if (!copy) return err_set("out of memory copying a result line");
    cJSON_Delete(lc->r->by_index[fi]);
    lc->r->by_index[fi] = copy;
    return 0;
}

int records_load(const char *path, const struct examples *ex, struct records *r) {
    r->n = ex->n_features;
    r->by_index = xcalloc((size_t)(r->n > 0 ? r->n : 1), sizeof *r->by_index);
    if (!r->by_index) return -1;
    struct load_ctx lc = {ex, r};
    if (jsonl_read(path, 1, load_line, &lc, NULL) != 0) {
        records_free(r);
        return -1;
    }
    return 0;
}

void records_free(struct records *r) {
    for (int i = 0; r->by_index && i < r->n; i++) cJSON_Delete(r->by_index[i]);
    free(r->by_index);
    r->by_index = NULL;
    r->n = 0;
}

const char *record_str(const cJSON *rec, const char *key) {
    const cJSON *v = rec ? cJSON_GetObjectItemCaseSensitive(rec, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool record_done(const cJSON *rec, const char *key_field, const char *key, bool retry_failed) {
    const char *k = record_str(rec, key_field), *st = record_str(rec, "status");
    if (!k || !st || strcmp(k, key) != 0) return false;
    return !(retry_failed && strcmp(st, "failed") == 0);
}

/* ---- clients and JSON ---- */

struct llm_client *interp_client_new(const struct interp_settings *s,
                                     const struct interp_endpoint *e) {
    struct llm_client *c;
    if (e->builtin) {
        struct llm_provider p = builtin_provider();
        c = llm_client_new_with_provider(&e->llm, &p);
    } else {
        c = llm_client_new(&e->llm);
    }
    if (c && s->budget && !e->builtin) llm_client_share_budget(c, s->budget);
    return c;
}

void json_add_str(cJSON *o, const char *key, const char *s) {
    if (s) cJSON_AddStringToObject(o, key, s);
    else cJSON_AddNullToObject(o, key);
}

void json_add_num(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

void json_add_prompts(cJSON *o, const char *dir, const char *sha256) {
    cJSON *p = cJSON_AddObjectToObject(o, "prompts");
    if (!p) return;
    json_add_str(p, "dir", dir);
    json_add_str(p, "sha256", sha256);
}

void json_add_usage(cJSON *o, long prompt_tokens, long completion_tokens) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    if (!u) return;
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)completion_tokens);
}

void interp_sha(const char *s, char hex[65]) { sha256_str_hex(s, hex); }

void interp_add_stats(struct llm_stats *sum, const struct llm_stats *s) {
    sum->requests += s->requests;
    sum->ok += s->ok;
    for (int i = 0; i < LLM_N_STATUS; i++) sum->by_status[i] += s->by_status[i];
    sum->http_calls += s->http_calls;
    sum->retries += s->retries;
    sum->cache_hits += s->cache_hits;
    sum->cache_corrupt += s->cache_corrupt;
    sum->prompt_tokens += s->prompt_tokens;
    sum->completion_tokens += s->completion_tokens;
    sum->cost_usd += s->cost_usd;
    sum->latency_ms_sum += s->latency_ms_sum;
    if (s->latency_ms_max > sum->latency_ms_max) sum->latency_ms_max = s->latency_ms_max;
}

void interp_count_unreached(struct interp_counts *c, int n) {
    for (int i = 0; i < n; i++) {
        c->n_pending++;
        interp_counts_add_reason(c, "not_reached");
    }
}
