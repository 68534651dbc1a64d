/* explain.c: the explain stage (see interp.h).
 *
 * Per feature the prompt is system + worked examples + one user message built
 * from the templates: each explain window as "token<TAB>activation" rows with
 * activations scaled to floor(10·a/max), max over the shown windows (negative
 * values count as 0), and, when fewer than sparse_threshold of the shown
 * tokens have a scaled activation above 0, a second view of only those
 * tokens, each after its sparse_context predecessors. Features are sent in
 * chunks so memory stays bounded by the chunk, not the sample.
 *
 * Record (one JSONL line per feature):
 *   {"feature": id, "feature_index": i, "sae": name, "status": "ok"|"failed",
 *    "explanation": text|null, "reason": category|null, "detail": text|null,
 *    "provider": "builtin"|"openai", "model": asked, "served_model": reported|null,
 *    "prompts": {"dir", "sha256"}, "request_sha256": key of the request,
 *    "n_windows": shown, "usage": {"prompt_tokens", "completion_tokens"},
 *    "latency_ms", "attempts", "from_cache"}
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

#define CHUNK_FEATURES 64

struct explain_job {
    int fi;
    int n_windows;
    int64_t *win;                 /* [n_windows] */
    char *user;
    struct llm_message *msgs;
    int n_msgs;
    const char **tokens;          /* [n_windows * window] display strings (borrowed) */
    struct builtin_window *bw;    /* [n_windows] */
    struct builtin_explain_input bin;
    struct builtin_request breq;
    char key[65];
    bool no_activation;
};

struct explain_run {
    const struct interp_settings *s;
    const struct examples *ex;
    const struct render_vocab *vocab;
    const struct prompt_set *ps;
    const char *out_path;
    struct interp_counts *c;
    struct explain_job *jobs;
    int append_failed;
};

/* ---- a growing string ---- */

struct sbuf {
    char *p;
    size_t n, cap;
};

static int sb_add(struct sbuf *b, const char *s) {
    size_t len = strlen(s);
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *g = xrealloc(b->p, cap);
        if (!g) return -1;
        b->p = g;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len + 1);
    b->n += len;
    return 0;
}

/* ---- the prompt ---- */

static int scaled(float a, float max) {
    if (!(max > 0) || !(a > 0)) return 0;
    int v = (int)floor(10.0 * a / max);
    return v > 10 ? 10 : v;
}

static float shown_max(const struct examples *ex, const struct explain_job *j) {
    float max = 0;
    for (int k = 0; k < j->n_windows; k++) {
        const float *a = ex->win_acts + j->win[k] * ex->window;
        for (int i = 0; i < ex->window; i++)
            if (a[i] > max) max = a[i];
    }
    return max;
}

static char *window_block(const struct explain_run *r, const struct explain_job *j, int k,
                          float max) {
    const struct examples *ex = r->ex;
    const float *a = ex->win_acts + j->win[k] * ex->window;
    struct sbuf rows = {0};
    char line[32];
    int rc = 0;
    for (int i = 0; i < ex->window && rc == 0; i++) {
        snprintf(line, sizeof line, "\t%d%s", scaled(a[i], max), i + 1 < ex->window ? "\n" : "");
        rc = sb_add(&rows, j->tokens[k * ex->window + i]);
        if (rc == 0) rc = sb_add(&rows, line);
    }
    char index[16];
    snprintf(index, sizeof index, "%d", k + 1);
    struct prompt_var vars[] = {{"rows", rows.p ? rows.p : ""}, {"index", index}};
    char *out = rc == 0 ? prompt_render(r->ps, PROMPT_EXPLAIN_WINDOW, vars, 2, NULL) : NULL;
    free(rows.p);
    return out;
}

/* The zeros-filtered view, or "" when the feature is not sparse in these windows. */
static char *sparse_block(const struct explain_run *r, const struct explain_job *j, float max) {
    const struct examples *ex = r->ex;
    int active = 0, total = j->n_windows * ex->window;
    for (int k = 0; k < j->n_windows; k++)
        for (int i = 0; i < ex->window; i++)
            active += scaled(ex->win_acts[j->win[k] * ex->window + i], max) > 0;
    if (active == 0 || (double)active >= r->s->sparse_threshold * total) return xstrdup("");
    struct sbuf rows = {0};
    int rc = 0;
    for (int k = 0; k < j->n_windows && rc == 0; k++) {
        const float *a = ex->win_acts + j->win[k] * ex->window;
        const char **tok = j->tokens + k * ex->window;
        for (int i = 0; i < ex->window && rc == 0; i++) {
            int v = scaled(a[i], max);
            if (v == 0) continue;
            int from = i - r->s->sparse_context < 0 ? 0 : i - r->s->sparse_context;
            if (rows.n) rc = sb_add(&rows, "\n");
            for (int c = from; c < i && rc == 0; c++) rc = sb_add(&rows, tok[c]);
            char tail[32];
            snprintf(tail, sizeof tail, "\t%d", v);
            if (rc == 0) rc = sb_add(&rows, "\t");
            if (rc == 0) rc = sb_add(&rows, tok[i]);
            if (rc == 0) rc = sb_add(&rows, tail);
        }
    }
    char context[16];
    snprintf(context, sizeof context, "%d", r->s->sparse_context);
    struct prompt_var vars[] = {{"rows", rows.p ? rows.p : ""}, {"context", context}};
    char *out = rc == 0 ? prompt_render(r->ps, PROMPT_EXPLAIN_SPARSE, vars, 2, NULL) : NULL;
    free(rows.p);
    return out;
}

static char *user_message(const struct explain_run *r, struct explain_job *j) {
    float max = shown_max(r->ex, j);
    j->no_activation = !(max > 0);
    struct sbuf windows = {0};
    int rc = 0;
    for (int k = 0; k < j->n_windows && rc == 0; k++) {
        char *block = window_block(r, j, k, max);
        if (!block) {
            free(windows.p);
            return NULL;
        }
        if (k > 0) rc = sb_add(&windows, "\n");
        if (rc == 0) rc = sb_add(&windows, block);
        free(block);
    }
    char *sparse = rc == 0 ? sparse_block(r, j, max) : NULL;
    char n_windows[16];
    snprintf(n_windows, sizeof n_windows, "%d", j->n_windows);
    struct prompt_var vars[] = {
        {"windows", windows.p ? windows.p : ""}, {"sparse_view", sparse ? sparse : ""},
        {"n_windows", n_windows}};
    char *out = sparse ? prompt_render(r->ps, PROMPT_EXPLAIN_USER, vars, 3, NULL) : NULL;
    free(sparse);
    free(windows.p);
    return out;
}

/* ---- jobs ---- */

static void job_free(struct explain_job *j) {
    free(j->win);
    free(j->user);
    free(j->msgs);
    free(j->tokens);
    free(j->bw);
    memset(j, 0, sizeof *j);
}

static int job_tokens(const struct explain_run *r, struct explain_job *j) {
    const struct examples *ex = r->ex;
    j->tokens = xcalloc((size_t)(j->n_windows * ex->window + 1), sizeof *j->tokens);
    j->bw = xcalloc((size_t)(j->n_windows + 1), sizeof *j->bw);
    if (!j->tokens || !j->bw) return -1;
    for (int k = 0; k < j->n_windows; k++) {
        const int32_t *ids = ex->win_tokens + j->win[k] * ex->window;
        for (int i = 0; i < ex->window; i++) {
            const char *t = render_token(r->vocab, ids[i]);
            if (!t)
                return err_prefix("%s: feature %d window %lld", ex->path ? ex->path : "examples",
                                  ex->features[j->fi], (long long)j->win[k]);
            j->tokens[k * ex->window + i] = t;
        }
        j->bw[k] = (struct builtin_window){j->tokens + k * ex->window,
                                           ex->win_acts + j->win[k] * ex->window, ex->window};
    }
    j->bin = (struct builtin_explain_input){j->bw, j->n_windows};
    j->breq = (struct builtin_request){.task = BUILTIN_EXPLAIN, .explain = &j->bin};
    return 0;
}

static int job_build(const struct explain_run *r, int fi, struct explain_job *j,
                     struct llm_request *req) {
    memset(j, 0, sizeof *j);
    j->fi = fi;
    j->win = xcalloc((size_t)r->s->n_explain + 1, sizeof *j->win);
    if (!j->win) return -1;
    j->n_windows = interp_windows(r->ex, fi, SPLIT_EXPLAIN, r->s->n_explain, j->win);
    if (job_tokens(r, j) != 0 || !(j->user = user_message(r, j))) return -1;
    const struct prompt_set *ps = r->ps;
    j->n_msgs = 2 + ps->n_explain_shots;
    j->msgs = xcalloc((size_t)j->n_msgs, sizeof *j->msgs);
    if (!j->msgs) return -1;
    j->msgs[0] = (struct llm_message){"system", ps->text[PROMPT_EXPLAIN_SYSTEM]};
    for (int i = 0; i < ps->n_explain_shots; i++)
        j->msgs[1 + i] = (struct llm_message){ps->explain_shots[i].role, ps->explain_shots[i].content};
    j->msgs[j->n_msgs - 1] = (struct llm_message){"user", j->user};
    *req = (struct llm_request){.api = LLM_API_CHAT, .messages = j->msgs, .n_messages = j->n_msgs};
    if (r->s->explainer.builtin) req->user = &j->breq;
    else req->expected_prompt_tokens = (long)j->n_windows * r->ex->window;
    return 0;
}

/* ---- records ---- */

static cJSON *record_new(const struct explain_run *r, const struct explain_job *j,
                         const char *status) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "feature", r->ex->features[j->fi]);
    cJSON_AddNumberToObject(o, "feature_index", j->fi);
    json_add_str(o, "sae", r->ex->sae_name);
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddStringToObject(o, "provider", r->s->explainer.builtin ? "builtin" : "openai");
    json_add_str(o, "model", r->s->explainer.llm.model);
    json_add_prompts(o, r->ps->dir, r->ps->sha256);
    cJSON_AddStringToObject(o, "request_sha256", j->key);
    cJSON_AddNumberToObject(o, "n_windows", j->n_windows);
    return o;
}

static int append_record(struct explain_run *r, cJSON *o) {
    int rc = o ? jsonl_append(r->out_path, o) : err_set("out of memory building a record");
    cJSON_Delete(o);
    if (rc != 0) r->append_failed = 1;
    return rc;
}

static int record_failure(struct explain_run *r, const struct explain_job *j, const char *category,
                          const char *reason, const struct llm_result *res) {
    cJSON *o = record_new(r, j, "failed");
    if (o) {
        cJSON_AddNullToObject(o, "explanation");
        cJSON_AddStringToObject(o, "reason", category);
        json_add_str(o, "detail", reason);
    }
    if (o && res) {
        json_add_str(o, "served_model", res->resp.model);
        json_add_usage(o, res->resp.prompt_tokens, res->resp.completion_tokens);
        cJSON_AddNumberToObject(o, "latency_ms", round(res->latency_ms * 1000) / 1000);
        cJSON_AddNumberToObject(o, "attempts", res->attempts);
        cJSON_AddBoolToObject(o, "from_cache", res->from_cache);
    }
    r->c->n_failed++;
    interp_counts_add_reason(r->c, category);
    return append_record(r, o);
}

static int on_done(struct llm_request *req, int index, void *ctx) {
    struct explain_run *r = ctx;
    const struct explain_job *j = &r->jobs[index];
    const struct llm_result *res = &req->result;
    if (res->status == LLM_ERR_ABORTED || res->status == LLM_ERR_BUDGET) {
        r->c->n_pending++;
        interp_counts_add_reason(r->c, llm_status_name(res->status));
        return 0;
    }
    if (res->status != LLM_OK)
        return record_failure(r, j, llm_status_name(res->status), res->error, res);
    char *expl = NULL;
    const char *category = NULL;
    if (reply_explanation(res->resp.content, r->s->max_explanation_bytes, &expl, &category) != 0)
        return record_failure(r, j, category, err_msg(), res);
    cJSON *o = record_new(r, j, "ok");
    if (o) {
        cJSON_AddStringToObject(o, "explanation", expl);
        cJSON_AddNullToObject(o, "reason");
        cJSON_AddNullToObject(o, "detail");
        json_add_str(o, "served_model", res->resp.model);
        json_add_usage(o, res->resp.prompt_tokens, res->resp.completion_tokens);
        cJSON_AddNumberToObject(o, "latency_ms", round(res->latency_ms * 1000) / 1000);
        cJSON_AddNumberToObject(o, "attempts", res->attempts);
        cJSON_AddBoolToObject(o, "from_cache", res->from_cache);
    }
    free(expl);
    r->c->n_ok++;
    return append_record(r, o);
}

/* ---- the stage ---- */

/* Build, filter and run the requests of features [f0, f1). Returns -1 on a
 * local error or a stopped batch. */
static int run_chunk(struct explain_run *r, struct llm_client *client, const struct records *done,
                     int f0, int f1) {
    int n = f1 - f0, m = 0, rc = 0;
    r->jobs = xcalloc((size_t)n, sizeof *r->jobs);
    struct llm_request *reqs = xcalloc((size_t)n, sizeof *reqs);
    if (!r->jobs || !reqs) rc = -1;
    for (int fi = f0; fi < f1 && rc == 0; fi++) {
        struct explain_job *j = &r->jobs[m];
        if (job_build(r, fi, j, &reqs[m]) != 0) {
            rc = -1;
            job_free(j);
            break;
        }
        char *body = llm_request_body(client, &reqs[m], j->key);
        if (!body) {
            rc = -1;
            job_free(j);
            break;
        }
        free(body);
        if (record_done(done->by_index[fi], "request_sha256", j->key, r->s->retry_failed)) {
            r->c->n_done_before++;
            job_free(j);
            continue;
        }
        if (j->no_activation) {
            err_set("no token is active in the %d explain windows", j->n_windows);
            rc = record_failure(r, j, "no_activation", err_msg(), NULL);
            job_free(j);
            continue;
        }
        m++;
    }
    if (rc == 0 && m > 0) {
        rc = llm_run_batch(client, reqs, m, on_done, r);
        if (rc != 0 && r->append_failed) err_prefix("%s", r->out_path);
    }
    for (int i = 0; i < m; i++) {
        llm_result_free(&reqs[i].result);
        job_free(&r->jobs[i]);
    }
    free(reqs);
    free(r->jobs);
    r->jobs = NULL;
    return rc;
}

int interp_explain(const struct interp_settings *s, const struct examples *ex,
                   const struct render_vocab *vocab, const char *out_path,
                   struct interp_counts *c) {
    memset(c, 0, sizeof *c);
    struct prompt_set ps;
    if (prompt_set_load(&ps, s->prompts_dir) != 0) return -1;
    struct records done;
    if (records_load(out_path, ex, &done) != 0) {
        prompt_set_free(&ps);
        return -1;
    }
    struct llm_client *client = interp_client_new(s, &s->explainer);
    int rc = client ? 0 : err_prefix("explainer");
    struct explain_run r = {s, ex, vocab, &ps, out_path, c, NULL, 0};
    c->n_features = interp_n_features(s, ex);
    int f1 = 0;
    for (int f0 = 0; f0 < c->n_features && rc == 0; f0 = f1) {
        f1 = f0 + CHUNK_FEATURES < c->n_features ? f0 + CHUNK_FEATURES : c->n_features;
        rc = run_chunk(&r, client, &done, f0, f1);
    }
    interp_count_unreached(c, c->n_features - f1);
    if (client) {
        interp_add_stats(&c->llm, llm_client_stats(client));
        llm_client_free(client);
    }
    log_debug("explain %s: %d ok, %d failed, %d done before, %d pending", out_path, c->n_ok,
              c->n_failed, c->n_done_before, c->n_pending);
    records_free(&done);
    prompt_set_free(&ps);
    return rc;
}
