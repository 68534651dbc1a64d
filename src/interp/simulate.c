/* simulate.c: the simulate stage (see interp.h).
 *
 * One request per scored window (Bills et al. simulate each text on its own):
 * a feature's line is written when the last of its windows has its answer.
 * The simulator is given the explanation (put on one line without tabs) and
 * the window's display tokens, never an activation.
 *
 *   json      system + worked examples + user message listing "index<TAB>token";
 *             response_format json_schema {"activations": array of integers
 *             0..10 with minItems = maxItems = n}; the reply is validated anyway.
 *   logprobs  chat: the json request with logprobs and top_logprobs; each
 *             value is the expected digit at the token that wrote it.
 *             completions: simulate_logprobs.txt with one "token<TAB>unknown"
 *             row per token, sent with echo, logprobs = top_logprobs and
 *             max_tokens 1 (some servers refuse 0); values are read at the
 *             placeholders (reply.h).
 *   builtin   the json request answered offline by builtin.c from a struct
 *             builtin_simulate_input (explanation and tokens only).
 *
 * json and chat-logprobs requests get max_tokens of at least 3n + 30 so that
 * n numbers fit (a reply cut at max_tokens would be a failure anyway).
 *
 * Record (one JSONL line per feature):
 *   {"feature", "feature_index", "sae", "status": "ok"|"failed",
 *    "reason": category|null, "detail": text|null, "mode": "json"|"logprobs"|"builtin",
 *    "logprobs_api": "chat"|"completions" (logprobs mode only), "provider", "model",
 *    "prompts": {"dir", "sha256"}, "explanation", "explanation_sha256",
 *    "request_sha256": SHA-256 over the mode and every window's request key,
 *    "windows": [{"split": "top"|"random"|"quantile", "rank", "source", "n_tokens",
 *                 "status": "ok"|"failed", "reason", "detail",
 *                 "predicted": [n numbers] | null}],
 *    "usage": {"prompt_tokens", "completion_tokens"} (summed), "latency_ms" (summed),
 *    "n_requests", "cache_hits"}
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp/builtin.h"
#include "interp/interp.h"
#include "interp/interp_internal.h"
#include "interp/prompts.h"
#include "interp/reply.h"
#include "io/jsonl.h"
#include "util/error.h"
#include "util/log.h"
#include "util/sha256.h"

#define CHUNK_REQUESTS 1024

struct sim_feature {
    int fi;
    char *explanation;   /* one line, no tabs (owned) */
    int n_windows;
    int64_t *win;        /* [n_windows] */
    int first;           /* index of its first request in the chunk */
    int pending;         /* windows without a final answer yet */
    int not_attempted;   /* windows never sent (run stopped) */
    double **pred;       /* [n_windows][window], NULL where failed */
    const char **category; /* [n_windows], NULL where ok */
    char **reason;       /* [n_windows] */
    long prompt_tokens, completion_tokens;
    double latency_ms;
    int cache_hits;
    char key[65];
};

struct sim_req {
    int feature;          /* index into the chunk's features */
    int w;                /* window number within the feature */
    char *user, *schema, *prompt;
    struct llm_message *msgs;
    const char **tokens;  /* [window] display strings (borrowed) */
    struct builtin_simulate_input bin;
    struct builtin_request breq;
};

struct sim_run {
    const struct interp_settings *s;
    const struct examples *ex;
    const struct render_vocab *vocab;
    const struct prompt_set *ps;
    const char *out_path;
    struct interp_counts *c;
    struct sim_feature *feat;
    int n_feat;
    struct sim_req *jobs;
    int append_failed;
};

/* ---- prompts ---- */

static char *one_line(const char *s) {
    char *t = xstrdup(s);
    for (char *p = t; p && *p; p++)
        if (*p == '\t' || *p == '\n' || *p == '\r') *p = ' ';
    return t;
}

/* Rows "index<TAB>token" (json) or "token<TAB>unknown" (completions). */
static char *rows_text(const char *const *tokens, int n, int completions) {
    size_t cap = 1;
    for (int i = 0; i < n; i++) cap += strlen(tokens[i]) + 24;
    char *s = xmalloc(cap);
    if (!s) return NULL;
    size_t len = 0;
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        const char *sep = i + 1 < n ? "\n" : "";
        if (completions)
            len += (size_t)snprintf(s + len, cap - len, "%s\t%s%s", tokens[i], REPLY_PLACEHOLDER, sep);
        else
            len += (size_t)snprintf(s + len, cap - len, "%d\t%s%s", i, tokens[i], sep);
    }
    return s;
}

static char *schema_for(int n) {
    char *s = xmalloc(320);
    if (s)
        snprintf(s, 320,
                 "{\"type\":\"object\",\"properties\":{\"activations\":{\"type\":\"array\","
                 "\"items\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":10},"
                 "\"minItems\":%d,\"maxItems\":%d}},\"required\":[\"activations\"],"
                 "\"additionalProperties\":false}",
                 n, n);
    return s;
}

static int count_placeholders(const char *prompt) {
    int k = 0;
    for (const char *p = strstr(prompt, "\t" REPLY_PLACEHOLDER); p;
         p = strstr(p + 1, "\t" REPLY_PLACEHOLDER))
        k++;
    return k;
}

static int build_completion(const struct sim_run *r, const struct sim_feature *f,
                            struct sim_req *j, struct llm_request *req) {
    int n = r->ex->window;
    char *rows = rows_text(j->tokens, n, 1);
    if (!rows) return -1;
    struct prompt_var vars[] = {{"explanation", f->explanation}, {"rows", rows}};
    j->prompt = prompt_render(r->ps, PROMPT_SIMULATE_LOGPROBS, vars, 2, NULL);
    free(rows);
    if (!j->prompt) return -1;
    if (count_placeholders(j->prompt) != n)
        return err_set("%s/%s: the prompt holds %d \"<TAB>%s\" rows, expected %d (the template "
                       "itself must not contain that text)",
                       r->ps->dir, prompt_file_name(PROMPT_SIMULATE_LOGPROBS),
                       count_placeholders(j->prompt), REPLY_PLACEHOLDER, n);
    *req = (struct llm_request){.api = LLM_API_COMPLETIONS, .prompt = j->prompt, .echo = true,
                                .logprobs = 1, .top_logprobs = r->s->top_logprobs,
                                .max_tokens = 1, .expected_prompt_tokens = n};
    return 0;
}

static int build_chat(const struct sim_run *r, const struct sim_feature *f, struct sim_req *j,
                      struct llm_request *req) {
    int n = r->ex->window;
    const struct prompt_set *ps = r->ps;
    char *rows = rows_text(j->tokens, n, 0);
    char count[16];
    snprintf(count, sizeof count, "%d", n);
    struct prompt_var vars[] = {{"explanation", f->explanation}, {"tokens", rows ? rows : ""},
                                {"n_tokens", count}};
    j->user = rows ? prompt_render(ps, PROMPT_SIMULATE_USER, vars, 3, NULL) : NULL;
    free(rows);
    j->schema = schema_for(n);
    int n_msgs = 2 + ps->n_simulate_shots;
    j->msgs = xcalloc((size_t)n_msgs, sizeof *j->msgs);
    if (!j->user || !j->schema || !j->msgs) return -1;
    j->msgs[0] = (struct llm_message){"system", ps->text[PROMPT_SIMULATE_SYSTEM]};
    for (int i = 0; i < ps->n_simulate_shots; i++)
        j->msgs[1 + i] = (struct llm_message){ps->simulate_shots[i].role, ps->simulate_shots[i].content};
    j->msgs[n_msgs - 1] = (struct llm_message){"user", j->user};
    int min_tokens = 3 * n + 30;
    *req = (struct llm_request){
        .api = LLM_API_CHAT, .messages = j->msgs, .n_messages = n_msgs,
        .format = LLM_FORMAT_JSON_SCHEMA, .schema_name = "activations", .schema_json = j->schema,
        .max_tokens = r->s->simulator.llm.max_tokens < min_tokens ? min_tokens : 0};
    if (r->s->mode == SIM_LOGPROBS) {
        req->logprobs = 1;
        req->top_logprobs = r->s->top_logprobs;
    }
    if (r->s->mode == SIM_BUILTIN) {
        j->bin = (struct builtin_simulate_input){f->explanation, j->tokens, n};
        j->breq = (struct builtin_request){.task = BUILTIN_SIMULATE, .simulate = &j->bin};
        req->user = &j->breq;
    } else {
        req->expected_prompt_tokens = n;
    }
    return 0;
}

static int build_request(const struct sim_run *r, const struct sim_feature *f, struct sim_req *j,
                         struct llm_request *req) {
    const struct examples *ex = r->ex;
    j->tokens = xcalloc((size_t)ex->window, sizeof *j->tokens);
    if (!j->tokens) return -1;
    const int32_t *ids = ex->win_tokens + f->win[j->w] * ex->window;
    for (int i = 0; i < ex->window; i++)
        if (!(j->tokens[i] = render_token(r->vocab, ids[i])))
            return err_prefix("%s: feature %d", ex->path ? ex->path : "examples", ex->features[f->fi]);
    if (r->s->mode == SIM_LOGPROBS && r->s->logprobs_api == LOGPROBS_COMPLETIONS)
        return build_completion(r, f, j, req);
    return build_chat(r, f, j, req);
}

static void req_free(struct sim_req *j) {
    free(j->user);
    free(j->schema);
    free(j->prompt);
    free(j->msgs);
    free(j->tokens);
    memset(j, 0, sizeof *j);
}

static void feature_free(struct sim_feature *f) {
    for (int w = 0; w < f->n_windows; w++) {
        if (f->pred) free(f->pred[w]);
        if (f->reason) free(f->reason[w]);
    }
    free(f->pred);
    free(f->reason);
    free(f->category);
    free(f->win);
    free(f->explanation);
    memset(f, 0, sizeof *f);
}

/* ---- records ---- */

static const char *mode_label(const struct interp_settings *s) { return sim_mode_name(s->mode); }

static cJSON *window_json(const struct sim_run *r, const struct sim_feature *f, int w) {
    const struct examples *ex = r->ex;
    int64_t win = f->win[w];
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "split", interp_split_name(ex->win_split[win]));
    cJSON_AddNumberToObject(o, "rank", ex->win_rank[win]);
    cJSON_AddNumberToObject(o, "source", (double)ex->win_source[win]);
    cJSON_AddNumberToObject(o, "n_tokens", ex->window);
    cJSON_AddStringToObject(o, "status", f->pred[w] ? "ok" : "failed");
    json_add_str(o, "reason", f->category[w]);
    json_add_str(o, "detail", f->reason[w]);
    if (!f->pred[w]) {
        cJSON_AddNullToObject(o, "predicted");
        return o;
    }
    cJSON *p = cJSON_AddArrayToObject(o, "predicted");
    for (int i = 0; p && i < ex->window; i++)
        cJSON_AddItemToArray(p, cJSON_CreateNumber(round(f->pred[w][i] * 1e4) / 1e4));
    return o;
}

static int write_feature(struct sim_run *r, const struct sim_feature *f) {
    int bad = -1;
    for (int w = 0; w < f->n_windows && bad < 0; w++)
        if (!f->pred[w]) bad = w;
    cJSON *o = cJSON_CreateObject();
    if (!o) return err_set("out of memory building a record");
    cJSON_AddNumberToObject(o, "feature", r->ex->features[f->fi]);
    cJSON_AddNumberToObject(o, "feature_index", f->fi);
    json_add_str(o, "sae", r->ex->sae_name);
    cJSON_AddStringToObject(o, "status", bad < 0 ? "ok" : "failed");
    if (bad < 0) {
        cJSON_AddNullToObject(o, "reason");
        cJSON_AddNullToObject(o, "detail");
        r->c->n_ok++;
    } else {
        char why[1200];
        int64_t win = f->win[bad];
        snprintf(why, sizeof why, "window %d (%s, rank %d): %s", bad,
                 interp_split_name(r->ex->win_split[win]), r->ex->win_rank[win],
                 f->reason[bad] ? f->reason[bad] : "failed");
        cJSON_AddStringToObject(o, "reason", f->category[bad]);
        cJSON_AddStringToObject(o, "detail", why);
        r->c->n_failed++;
        interp_counts_add_reason(r->c, f->category[bad]);
    }
    cJSON_AddStringToObject(o, "mode", mode_label(r->s));
    if (r->s->mode == SIM_LOGPROBS)
        cJSON_AddStringToObject(o, "logprobs_api",
                                r->s->logprobs_api == LOGPROBS_CHAT ? "chat" : "completions");
    cJSON_AddStringToObject(o, "provider", r->s->simulator.builtin ? "builtin" : "openai");
    json_add_str(o, "model", r->s->simulator.llm.model);
    json_add_prompts(o, r->ps->dir, r->ps->sha256);
    cJSON_AddStringToObject(o, "explanation", f->explanation);
    char eh[65];
    interp_sha(f->explanation, eh);
    cJSON_AddStringToObject(o, "explanation_sha256", eh);
    cJSON_AddStringToObject(o, "request_sha256", f->key);
    cJSON *ws = cJSON_AddArrayToObject(o, "windows");
    for (int w = 0; ws && w < f->n_windows; w++) cJSON_AddItemToArray(ws, window_json(r, f, w));
    json_add_usage(o, f->prompt_tokens, f->completion_tokens);
    cJSON_AddNumberToObject(o, "latency_ms", round(f->latency_ms * 1000) / 1000);
    cJSON_AddNumberToObject(o, "n_requests", f->n_windows);
    cJSON_AddNumberToObject(o, "cache_hits", f->cache_hits);
    int rc = jsonl_append(r->out_path, o);
    cJSON_Delete(o);
    if (rc != 0) r->append_failed = 1;
    return rc;
}

/* ---- answers ---- */

static int decode(const struct sim_run *r, const struct llm_result *res, double *out,
                  const char **category) {
    if (res->status != LLM_OK) {
        *category = llm_status_name(res->status);
        err_set("%s", res->error ? res->error : "request failed");
        return -1;
    }
    int n = r->ex->window;
    if (r->s->mode != SIM_LOGPROBS) return reply_sim_json(&res->resp, n, out, category);
    if (r->s->logprobs_api == LOGPROBS_CHAT)
        return reply_sim_chat_logprobs(&res->resp, n, out, category);
    return reply_sim_echo_logprobs(&res->resp, n, out, category);
}

static int on_done(struct llm_request *req, int index, void *ctx) {
    struct sim_run *r = ctx;
    const struct sim_req *j = &r->jobs[index];
    struct sim_feature *f = &r->feat[j->feature];
    const struct llm_result *res = &req->result;
    f->pending--;
    if (res->status == LLM_ERR_ABORTED || res->status == LLM_ERR_BUDGET) {
        f->not_attempted++;
    } else {
        f->prompt_tokens += res->resp.prompt_tokens;
        f->completion_tokens += res->resp.completion_tokens;
        f->latency_ms += res->latency_ms;
        f->cache_hits += res->from_cache;
        double *pred = xcalloc((size_t)r->ex->window, sizeof *pred);
        const char *category = "local";
        if (pred && decode(r, res, pred, &category) == 0) {
            f->pred[j->w] = pred;
        } else {
            free(pred);
            f->category[j->w] = category;
            f->reason[j->w] = xstrdup(err_msg());
        }
    }
    if (f->pending > 0) return 0;
    if (f->not_attempted > 0) {
        r->c->n_pending++;
        interp_counts_add_reason(r->c, "not_attempted");
        return 0;
    }
    return write_feature(r, f);
}

/* ---- features ---- */

/* Set up feature fi: explanation, windows, arrays. 1 when it has no usable
 * explanation (counted), 0 when ready, -1 on error. */
static int feature_init(struct sim_run *r, const struct records *expl, int fi,
                        struct sim_feature *f) {
    memset(f, 0, sizeof *f);
    f->fi = fi;
    const cJSON *rec = expl->by_index[fi];
    const char *st = record_str(rec, "status"), *e = record_str(rec, "explanation");
    if (!rec || !st || strcmp(st, "ok") != 0 || !e) {
        r->c->n_pending++;
        interp_counts_add_reason(r->c, rec ? "explanation_failed" : "not_explained");
        return 1;
    }
    const struct interp_settings *s = r->s;
    int cap = s->n_score_top + s->n_score_random + s->n_score_quantile + 1;
    f->win = xcalloc((size_t)cap, sizeof *f->win);
    f->explanation = one_line(e);
    if (!f->win || !f->explanation) return -1;
    f->n_windows = interp_scored_windows(s, r->ex, fi, f->win);
    int nw = f->n_windows + 1;
    f->pred = xcalloc((size_t)nw, sizeof *f->pred);
    f->category = xcalloc((size_t)nw, sizeof *f->category);
    f->reason = xcalloc((size_t)nw, sizeof *f->reason);
    return f->pred && f->category && f->reason ? 0 : -1;
}

/* The feature's requests into reqs/jobs from index m; its key. */
static int feature_requests(struct sim_run *r, struct llm_client *client, int k,
                            struct llm_request *reqs, int m) {
    struct sim_feature *f = &r->feat[k];
    struct sha256_ctx h;
    sha256_init(&h);
    const char *label = r->s->mode == SIM_LOGPROBS && r->s->logprobs_api == LOGPROBS_COMPLETIONS
                            ? "logprobs-completions"
                            : mode_label(r->s);
    sha256_update(&h, label, strlen(label));
    f->first = m;
    for (int w = 0; w < f->n_windows; w++) {
        struct sim_req *j = &r->jobs[m + w];
        *j = (struct sim_req){.feature = k, .w = w};
        char key[65];
        if (build_request(r, f, j, &reqs[m + w]) != 0) return -1;
        char *body = llm_request_body(client, &reqs[m + w], key);
        if (!body) return -1;
        free(body);
        sha256_update(&h, key, 64);
    }
    uint8_t d[SHA256_DIGEST_BYTES];
    sha256_final(&h, d);
    sha256_to_hex(d, f->key);
    f->pending = f->n_windows;
    return 0;
}

static int no_windows(struct sim_run *r, struct sim_feature *f) {
    r->c->n_failed++;
    interp_counts_add_reason(r->c, "no_windows");
    cJSON *o = cJSON_CreateObject();
    if (!o) return -1;
    cJSON_AddNumberToObject(o, "feature", r->ex->features[f->fi]);
    cJSON_AddNumberToObject(o, "feature_index", f->fi);
    json_add_str(o, "sae", r->ex->sae_name);
    cJSON_AddStringToObject(o, "status", "failed");
    cJSON_AddStringToObject(o, "reason", "no_windows");
    cJSON_AddStringToObject(o, "detail", "the examples file has no scored windows for this feature");
    cJSON_AddStringToObject(o, "mode", mode_label(r->s));
    cJSON_AddStringToObject(o, "explanation", f->explanation);
    cJSON_AddStringToObject(o, "request_sha256", f->key);
    cJSON_AddArrayToObject(o, "windows");
    int rc = jsonl_append(r->out_path, o);
    cJSON_Delete(o);
    return rc;
}

/* Features from *next on, as many as fit in one chunk of requests. */
static int run_chunk(struct sim_run *r, struct llm_client *client, const struct records *expl,
                     const struct records *done, int *next, int n_features) {
    int cap_feat = CHUNK_REQUESTS, n_req = 0, rc = 0;
    r->feat = xcalloc((size_t)cap_feat, sizeof *r->feat);
    r->jobs = xcalloc(CHUNK_REQUESTS + 1024, sizeof *r->jobs);
    struct llm_request *reqs = xcalloc(CHUNK_REQUESTS + 1024, sizeof *reqs);
    r->n_feat = 0;
    if (!r->feat || !r->jobs || !reqs) rc = -1;
    while (rc == 0 && *next < n_features && n_req < CHUNK_REQUESTS && r->n_feat < cap_feat) {
        int fi = (*next)++;
        struct sim_feature *f = &r->feat[r->n_feat];
        int st = feature_init(r, expl, fi, f);
        if (st != 0) {
            rc = st < 0 ? -1 : 0;
            feature_free(f);
            continue;
        }
        if (f->n_windows > 1024) {
            rc = err_set("feature %d: %d scored windows is more than one batch holds",
                         r->ex->features[fi], f->n_windows);
            feature_free(f);
            break;
        }
        if ((rc = feature_requests(r, client, r->n_feat, reqs, n_req)) != 0) {
            for (int w = 0; w < f->n_windows; w++) req_free(&r->jobs[n_req + w]);
            feature_free(f);
            break;
        }
        bool done_before =
            record_done(done->by_index[fi], "request_sha256", f->key, r->s->retry_failed);
        if (done_before || f->n_windows == 0) {
            if (done_before) r->c->n_done_before++;
            else rc = no_windows(r, f);
            for (int w = 0; w < f->n_windows; w++) req_free(&r->jobs[n_req + w]);
            memset(&reqs[n_req], 0, sizeof *reqs * (size_t)f->n_windows);
            feature_free(f);
            continue;
        }
        n_req += f->n_windows;
        r->n_feat++;
    }
    if (rc == 0 && n_req > 0) {
        rc = llm_run_batch(client, reqs, n_req, on_done, r);
        if (rc != 0 && r->append_failed) err_prefix("%s", r->out_path);
    }
    for (int i = 0; i < n_req; i++) {
        llm_result_free(&reqs[i].result);
        req_free(&r->jobs[i]);
    }
    for (int k = 0; k < r->n_feat; k++) feature_free(&r->feat[k]);
    free(reqs);
    free(r->jobs);
    free(r->feat);
    r->jobs = NULL;
    r->feat = NULL;
    return rc;
}

int interp_simulate(const struct interp_settings *s, const struct examples *ex,
                    const struct render_vocab *vocab, const char *explanations_path,
                    const char *out_path, struct interp_counts *c) {
    memset(c, 0, sizeof *c);
    if ((s->mode == SIM_BUILTIN) != s->simulator.builtin)
        return err_set("simulator mode %s does not fit the %s provider (builtin goes with "
                       "builtin; json and logprobs need an LLM server)",
                       sim_mode_name(s->mode), s->simulator.builtin ? "builtin" : "openai");
    struct prompt_set ps;
    if (prompt_set_load(&ps, s->prompts_dir) != 0) return -1;
    struct records expl = {0}, done = {0};
    int rc = records_load(explanations_path, ex, &expl);
    if (rc == 0) rc = records_load(out_path, ex, &done);
    struct llm_client *client = rc == 0 ? interp_client_new(s, &s->simulator) : NULL;
    if (rc == 0 && !client) rc = err_prefix("simulator");
    struct sim_run r = {.s = s, .ex = ex, .vocab = vocab, .ps = &ps, .out_path = out_path, .c = c};
    c->n_features = interp_n_features(s, ex);
    int next = 0;
    while (rc == 0 && next < c->n_features) rc = run_chunk(&r, client, &expl, &done, &next, c->n_features);
    interp_count_unreached(c, c->n_features - next);
    if (client) {
        interp_add_stats(&c->llm, llm_client_stats(client));
        llm_client_free(client);
    }
    log_debug("simulate %s: %d ok, %d failed, %d done before, %d pending", out_path, c->n_ok,
              c->n_failed, c->n_done_before, c->n_pending);
    records_free(&expl);
    records_free(&done);
    prompt_set_free(&ps);
    return rc;
}
