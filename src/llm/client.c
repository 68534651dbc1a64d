/* client.c: the batch loop. One libcurl multi handle, no threads.
 *
 * A batch is an array of jobs, one per request, each moving FRESH -> (RUNNING
 * <-> WAITING)* -> DONE. Every turn of the loop:
 *   1. checks the deadline (past it: in-flight transfers are cancelled);
 *   2. starts what it can: retries whose backoff has run out, then fresh jobs in
 *      order. A fresh job is built and looked up in the cache first (a hit is
 *      finished at once, no slot needed); a send waits for a free slot, for the
 *      rate window and for the budget (when the budget cannot fit a request and
 *      nothing is in flight, the batch stops);
 *   3. lets libcurl move bytes (curl_multi_perform) and harvests finished
 *      transfers: a reply is parsed, cached, charged and finished; a retryable
 *      failure goes WAITING with its backoff; a 401/402/403/404 stops the batch;
 *   4. sleeps in curl_multi_poll until a socket is ready or the next timer (a
 *      retry, the rate window, the deadline) is due.
 * Once stopped, nothing new is sent: in-flight transfers finish (they are paid
 * for), then every remaining job is finished as "not attempted" (cache hits are
 * still served, they cost nothing).
 *
 * Slots: the client keeps `concurrency` transfer slots, each with its own easy
 * handle kept for the client's life, so the multi handle's connection pool is
 * reused across requests and batches.
 */
#include <curl/curl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/atomic.h"
#include "llm/cache.h"
#include "llm/limits.h"
#include "llm/llm.h"
#include "llm/parse.h"
#include "llm/request.h"
#include "util/error.h"
#include "util/log.h"

#define MAX_BODY_BYTES ((size_t)64 << 20)
#define REDACTED "[redacted]"

struct job;

/* One HTTP attempt's slot. */
struct xfer {
    CURL *easy;
    struct job *job; /* NULL when the slot is free */
    char *buf;       /* response body, NUL-terminated */
    size_t n, cap;
    bool too_big;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    long long rate_id;
    int sends; /* times libcurl sent this attempt (see on_prereq) */
};

struct llm_client {
    struct llm_endpoint_config cfg; /* strings point at copies in owned[] */
    char **owned;
    int n_owned;
    char *url[2];  /* by enum llm_api */
    char *path[2]; /* URL paths, for keys and messages */
    bool custom;
    struct llm_provider provider;
    CURLM *multi;
    struct xfer *slots;
    int n_slots;
    struct llm_stats stats;
    struct llm_budget own_budget, *budget;
    struct llm_rate rate;
    uint64_t rng;
    char *stop_reason; /* sticky stop */
    enum llm_status stop_status;
};

enum job_state { JOB_FRESH, JOB_WAITING, JOB_RUNNING, JOB_DONE };

struct job {
    struct llm_request *req;
    int index;
    enum job_state state;
    bool prepared, cache_checked;
    char *body;
    struct llm_effective eff;
    long est_tokens;
    double est_cost;
    int attempts;
    double t_first, not_before;
    char *last_error;
};

struct batch {
    struct llm_client *c;
    struct job *jobs;
    int n, n_done, next_fresh, in_flight;
    int *waiting, n_waiting;
    llm_done_fn on_done;
    void *ctx;
    double deadline; /* monotonic seconds, 0 = none */
    char *stop_reason;
    enum llm_status stop_status;
};

static int curl_ready;

/* ---- small helpers ---- */

static char *fmt_dup(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_dup(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = xmalloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* The API key, read now from the environment (NULL when none is configured or
 * the variable is empty). Never stored. */
static const char *api_key(const struct llm_client *c) {
    if (!c->cfg.api_key_env || !*c->cfg.api_key_env) return NULL;
    const char *k = getenv(c->cfg.api_key_env);
    return k && *k ? k : NULL;
}

/* s with every occurrence of the key replaced, malloc'd; NULL when s has none. */
static char *redact_dup(const char *s, size_t n, const char *key, size_t *n_out) {
    size_t klen = key ? strlen(key) : 0;
    if (klen < 4 || !memmem(s, n, key, klen)) return NULL;
    size_t cap = n + (n / klen + 1) * sizeof REDACTED + 1, o = 0;
    char *out = xmalloc(cap);
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        if (i + klen <= n && memcmp(s + i, key, klen) == 0) {
            memcpy(out + o, REDACTED, sizeof REDACTED - 1);
            o += sizeof REDACTED - 1;
            i += klen;
        } else {
            out[o++] = s[i++];
        }
    }
    out[o] = 0;
    *n_out = o;
    return out;
}

/* A copy of msg safe to keep: the key scrubbed. */
static char *safe_reason(const struct llm_client *c, const char *msg) {
    size_t n2;
    char *r = redact_dup(msg, strlen(msg), api_key(c), &n2);
    return r ? r : xstrdup(msg);
}

static const char *keep(struct llm_client *c, const char *s) {
    if (!s) return NULL;
    char **o = xrealloc(c->owned, sizeof *o * (size_t)(c->n_owned + 1));
    if (!o) return NULL;
    c->owned = o;
    return o[c->n_owned++] = xstrdup(s);
}

/* ---- client life ---- */

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud) {
    struct xfer *x = ud;
    size_t n = size * nmemb;
    if (x->n + n + 1 > x->cap) {
        if (x->n + n > MAX_BODY_BYTES) {
            x->too_big = true;
            return 0;
        }
        size_t cap = x->cap ? x->cap : 16384;
        while (cap < x->n + n + 1)
            cap *= 2;
        char *b = realloc(x->buf, cap);
        if (!b) return 0;
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->n, p, n);
    x->n += n;
    x->buf[x->n] = 0;
    return n;
}

/* libcurl calls this each time it is about to send the request. That is more
 * than once per attempt when a reused connection dies before any reply: libcurl
 * then resends on a fresh connection by itself (no option turns that off), and
 * the server has received the request twice. Counting here keeps attempts,
 * HTTP calls, retries and the request budget equal to what servers received. */
static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port) {
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    ((struct xfer *)ud)->sends++;
    return CURL_PREREQFUNC_OK;
}

static int setup_easy(struct llm_client *c, struct xfer *x) {
    x->easy = curl_easy_init();
    if (!x->easy) return err_set("llm: curl_easy_init failed");
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->cfg.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "autointerp-llm/1");
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
    return 0;
}

static int copy_config(struct llm_client *c, const struct llm_endpoint_config *cfg) {
    c->cfg = *cfg;
    c->cfg.base_url = keep(c, cfg->base_url);
    c->cfg.model = keep(c, cfg->model);
    c->cfg.api_key_env = keep(c, cfg->api_key_env);
    c->cfg.schema_name = keep(c, cfg->schema_name);
    c->cfg.schema_json = keep(c, cfg->schema_json);
    c->cfg.cache_dir = cfg->cache_dir && *cfg->cache_dir ? keep(c, cfg->cache_dir) : NULL;
    const char **h = xcalloc((size_t)(cfg->n_headers + 1), sizeof *h);
    if (!h) return -1;
    for (int i = 0; i < cfg->n_headers; i++)
        h[i] = keep(c, cfg->headers[i]);
    c->cfg.headers = h;
    /* the array itself is owned through owned[] too, freed as a string */
    char **o = xrealloc(c->owned, sizeof *o * (size_t)(c->n_owned + 1));
    if (!o) {
        free(h);
        return -1;
    }
    c->owned = o;
    o[c->n_owned++] = (char *)h;
    if (!c->cfg.base_url || !c->cfg.model) return -1;
    /* base_url without a trailing slash, then the API suffix */
    size_t blen = strlen(c->cfg.base_url);
    while (blen > 0 && c->cfg.base_url[blen - 1] == '/')
        blen--;
    for (int api = 0; api < 2; api++) {
        c->url[api] = fmt_dup("%.*s%s", (int)blen, c->cfg.base_url, llm_api_suffix(api));
        if (!c->url[api] || !(c->path[api] = xstrdup(llm_url_path(c->url[api])))) return -1;
    }
    return 0;
}

static struct llm_client *client_alloc(const struct llm_endpoint_config *cfg) {
    if (llm_endpoint_config_check(cfg) != 0) return NULL;
    struct llm_client *c = xcalloc(1, sizeof *c);
    if (!c) return NULL;
    if (copy_config(c, cfg) != 0) {
        llm_client_free(c);
        return NULL;
    }
    c->own_budget = (struct llm_budget){.max_requests = cfg->max_requests,
                                        .max_tokens = cfg->max_tokens_total,
                                        .max_cost_usd = cfg->max_cost_usd};
    c->budget = &c->own_budget;
    llm_rate_init(&c->rate, cfg->rate_window_ms / 1000.0, cfg->rpm, cfg->tpm);
    c->rng = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(now_seconds() * 1e9);
    return c;
}

struct llm_client *llm_client_new(const struct llm_endpoint_config *cfg) {
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            err_set("llm: curl_global_init failed");
            return NULL;
        }
        curl_ready = 1;
    }
    struct llm_client *c = client_alloc(cfg);
    if (!c) return NULL;
    c->multi = curl_multi_init();
    c->n_slots = cfg->concurrency;
    c->slots = xcalloc((size_t)c->n_slots, sizeof *c->slots);
    if (!c->multi || !c->slots) {
        if (!c->multi) err_set("llm: curl_multi_init failed");
        llm_client_free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->n_slots);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)c->n_slots);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    for (int i = 0; i < c->n_slots; i++) {
        if (setup_easy(c, &c->slots[i]) != 0) {
            llm_client_free(c);
            return NULL;
        }
    }
    if (c->cfg.cache_dir && mkdir_p(c->cfg.cache_dir) != 0) {
        err_prefix("llm: cache_dir");
        llm_client_free(c);
        return NULL;
    }
    return c;
}

struct llm_client *llm_client_new_with_provider(const struct llm_endpoint_config *cfg,
                                                const struct llm_provider *p) {
    if (!p || !p->answer) {
        err_set("llm: a provider needs an answer function");
        return NULL;
    }
    /* an offline provider has no server: give the URL checks something valid */
    struct llm_endpoint_config local = *cfg;
    if (!local.base_url || !*local.base_url) local.base_url = "http://offline.invalid/v1";
    if (!local.model || !*local.model) local.model = p->name ? p->name : "offline";
    struct llm_client *c = client_alloc(&local);
    if (!c) return NULL;
    c->custom = true;
    c->provider = *p;
    return c;
}

void llm_client_free(struct llm_client *c) {
    if (!c) return;
    if (c->custom && c->provider.destroy) c->provider.destroy(c->provider.state);
    for (int i = 0; c->slots && i < c->n_slots; i++) {
        if (c->slots[i].easy) curl_easy_cleanup(c->slots[i].easy);
        free(c->slots[i].buf);
    }
    free(c->slots);
    if (c->multi) curl_multi_cleanup(c->multi);
    llm_rate_free(&c->rate);
    for (int i = 0; i < c->n_owned; i++)
        free(c->owned[i]);
    free(c->owned);
    for (int api = 0; api < 2; api++) {
        free(c->url[api]);
        free(c->path[api]);
    }
    free(c->stop_reason);
    free(c);
}

const struct llm_stats *llm_client_stats(const struct llm_client *c) {
    return &c->stats;
}
const char *llm_client_stopped(const struct llm_client *c) {
    return c->stop_reason;
}
void llm_client_share_budget(struct llm_client *c, struct llm_budget *b) {
    c->budget = b ? b : &c->own_budget;
}
const struct llm_budget *llm_client_budget(const struct llm_client *c) {
    return c->budget;
}

void llm_result_free(struct llm_result *r) {
    if (!r) return;
    free(r->error);
    llm_response_free(&r->resp);
    memset(r, 0, sizeof *r);
}

char *llm_request_body(const struct llm_client *c, const struct llm_request *req,
                       char key_hex[65]) {
    char *body = llm_build_body(&c->cfg, req, NULL);
    if (body && key_hex) llm_request_key("POST", c->path[req->api ? 1 : 0], body, key_hex);
    return body;
}

/* ---- finishing and stopping ---- */

static void stop_batch(struct batch *b, enum llm_status status, const char *reason, bool sticky) {
    if (b->stop_reason) return;
    b->stop_reason = safe_reason(b->c, reason);
    b->stop_status = status;
    log_warn("llm: stopping the batch: %s", b->stop_reason);
    if (sticky && !b->c->stop_reason) {
        b->c->stop_reason = xstrdup(b->stop_reason);
        b->c->stop_status = status;
    }
}

/* Bring a job to its final state (resp, if any, already in its result). */
static void finish(struct batch *b, struct job *j, enum llm_status status, const char *reason) {
    struct llm_result *r = &j->req->result;
    struct llm_stats *s = &b->c->stats;
    r->status = status;
    r->error = status == LLM_OK ? NULL : safe_reason(b->c, reason ? reason : "unknown failure");
    r->attempts = j->attempts;
    r->total_ms = j->t_first > 0 ? (now_seconds() - j->t_first) * 1000.0 : 0;
    s->requests++;
    s->by_status[status]++;
    if (status == LLM_OK) s->ok++;
    if (status != LLM_OK && status != LLM_ERR_BUDGET && status != LLM_ERR_ABORTED)
        log_warn("llm: request %d failed (%s): %s", j->index, llm_status_name(status), r->error);
    j->state = JOB_DONE;
    free(j->body);
    j->body = NULL;
    b->n_done++;
    if (b->on_done) {
        int rc = b->on_done(j->req, j->index, b->ctx);
        if (rc != 0) {
            char why[96];
            snprintf(why, sizeof why, "the caller's on_done returned %d for request %d", rc,
                     j->index);
            stop_batch(b, LLM_ERR_ABORTED, why, false);
        }
    }
}

/* Parse a 2xx body (from the wire or the cache) into the job's result. Returns
 * the status; *envelope_ok tells whether the body was a well-formed reply (the
 * condition for caching it). */
static enum llm_status take_reply(struct batch *b, struct job *j, const char *body, size_t n,
                                  bool *envelope_ok, char **reason) {
    struct llm_response *resp = &j->req->result.resp;
    llm_response_free(resp);
    enum llm_status st = j->req->api == LLM_API_COMPLETIONS
                             ? llm_parse_completion(body, n, j->eff.logprobs, resp)
                             : llm_parse_chat(body, n, j->eff.logprobs, resp);
    *envelope_ok = st == LLM_OK;
    if (st == LLM_OK) st = llm_check_reply(resp, &j->eff, j->req->expected_prompt_tokens);
    *reason = st == LLM_OK ? NULL : safe_reason(b->c, err_msg());
    return st;
}

/* ---- preparing, the cache, the gates ---- */

static int prepare(struct batch *b, struct job *j) {
    struct llm_client *c = b->c;
    j->prepared = true;
    j->body = llm_build_body(&c->cfg, j->req, &j->eff);
    if (!j->body) {
        char *why = fmt_dup("request %d: %s", j->index, err_msg());
        finish(b, j, LLM_ERR_LOCAL, why ? why : "cannot build the request");
        free(why);
        return -1;
    }
    llm_request_key("POST", c->path[j->req->api ? 1 : 0], j->body, j->req->result.cache_key);
    long prompt_est = llm_estimate_tokens(j->req, 0);
    j->est_tokens = prompt_est + j->eff.max_tokens;
    j->est_cost = (prompt_est * c->cfg.price_prompt_usd_per_mtok +
                   j->eff.max_tokens * c->cfg.price_completion_usd_per_mtok) /
                  1e6;
    return 0;
}

/* 1 when the job was answered from the cache (and finished). */
static int try_cache(struct batch *b, struct job *j) {
    struct llm_client *c = b->c;
    j->cache_checked = true;
    if (!c->cfg.cache_dir) return 0;
    char *body;
    size_t n;
    int hit = llm_cache_get(c->cfg.cache_dir, j->req->result.cache_key, &body, &n);
    if (hit < 0) {
        log_warn("llm: ignoring a corrupt cache entry, fetching again: %s", err_msg());
        c->stats.cache_corrupt++;
        return 0;
    }
    if (hit == 0) return 0;
    bool envelope_ok;
    char *reason;
    enum llm_status st = take_reply(b, j, body, n, &envelope_ok, &reason);
    free(body);
    if (!envelope_ok) {
        log_warn("llm: ignoring a cache entry whose reply no longer parses (%s), fetching again",
                 reason);
        free(reason);
        llm_response_free(&j->req->result.resp);
        c->stats.cache_corrupt++;
        return 0;
    }
    j->req->result.from_cache = true;
    c->stats.cache_hits++;
    finish(b, j, st, reason);
    free(reason);
    return 1;
}

enum gate { GATE_GO, GATE_WAIT, GATE_STOP };

static enum gate gate(struct batch *b, struct job *j, double now, double *wake) {
    struct llm_client *c = b->c;
    if (c->cfg.api_key_env && *c->cfg.api_key_env && !api_key(c)) {
        char why[200];
        snprintf(why, sizeof why, "the environment variable %.80s (api_key_env) is not set",
                 c->cfg.api_key_env);
        stop_batch(b, LLM_ERR_ABORTED, why, true);
        return GATE_STOP;
    }
    char why[300];
    if (!llm_budget_fits(c->budget, j->est_tokens, j->est_cost, why, sizeof why)) {
        if (b->in_flight > 0) return GATE_WAIT; /* their settlement may free room */
        char *msg = fmt_dup("budget reached: %s", why);
        stop_batch(b, LLM_ERR_BUDGET, msg ? msg : "budget reached", true);
        free(msg);
        return GATE_STOP;
    }
    double w = llm_rate_wait(&c->rate, now, j->est_tokens);
    if (w > 0) {
        if (w < *wake) *wake = w;
        return GATE_WAIT;
    }
    return GATE_GO;
}

/* ---- sending ---- */

static void wipe_headers(struct curl_slist *h) {
    for (struct curl_slist *p = h; p; p = p->next)
        if (strncmp(p->data, "Authorization:", 14) == 0) memset(p->data, 0, strlen(p->data));
    curl_slist_free_all(h);
}

/* Append one header line; on failure the whole list is freed and NULL kept. */
static void add_header(struct curl_slist **h, const char *line) {
    if (!*h) return;
    struct curl_slist *t = curl_slist_append(*h, line);
    if (!t) {
        wipe_headers(*h);
        err_set("llm: out of memory building request headers");
    }
    *h = t;
}

/* The request's headers, the Authorization line last; NULL when out of memory. */
static struct curl_slist *build_headers(const struct llm_client *c, bool json_body) {
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    if (json_body) add_header(&h, "Content-Type: application/json");
    add_header(&h, "Expect:");
    for (int i = 0; i < c->cfg.n_headers; i++)
        add_header(&h, c->cfg.headers[i]);
    const char *key = api_key(c);
    if (h && key) {
        size_t n = strlen(key) + 32;
        char *line = xmalloc(n);
        if (!line) {
            wipe_headers(h);
            return NULL;
        }
        snprintf(line, n, "Authorization: Bearer %s", key);
        add_header(&h, line);
        memset(line, 0, n);
        free(line);
    }
    return h;
}

static struct xfer *free_slot(struct llm_client *c) {
    for (int i = 0; i < c->n_slots; i++)
        if (!c->slots[i].job) return &c->slots[i];
    return NULL;
}

static void send_job(struct batch *b, struct job *j, double now) {
    struct llm_client *c = b->c;
    struct xfer *x = free_slot(c);
    x->n = 0;
    x->sends = 0;
    x->too_big = false;
    x->errbuf[0] = 0;
    if (x->buf) x->buf[0] = 0;
    x->headers = build_headers(c, true);
    if (!x->headers) {
        finish(b, j, LLM_ERR_LOCAL, "out of memory building request headers");
        return;
    }
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, c->url[j->req->api ? 1 : 0]);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(j->body));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    x->job = j;
    j->state = JOB_RUNNING;
    j->attempts++;
    if (j->t_first == 0) j->t_first = now;
    c->stats.http_calls++;
    if (j->attempts > 1) c->stats.retries++;
    llm_budget_reserve(c->budget, j->est_tokens, j->est_cost);
    x->rate_id = llm_rate_record(&c->rate, now, j->est_tokens);
    b->in_flight++;
    CURLMcode mc = curl_multi_add_handle(c->multi, e);
    if (mc != CURLM_OK) { /* nothing was sent: undo and fail this request alone */
        wipe_headers(x->headers);
        x->headers = NULL;
        x->job = NULL;
        b->in_flight--;
        llm_budget_settle(c->budget, j->est_tokens, j->est_cost, 0, 0);
        char why[160];
        snprintf(why, sizeof why, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        finish(b, j, LLM_ERR_LOCAL, why);
        return;
    }
    log_debug("llm: request %d attempt %d sent", j->index, j->attempts);
}

/* Finish every job that can no longer be sent because the batch stopped. */
static void drain(struct batch *b) {
    for (int k = 0; k < b->n_waiting; k++) {
        struct job *j = &b->jobs[b->waiting[k]];
        char *why = fmt_dup("not retried: run stopped because %s; last attempt: %s", b->stop_reason,
                            j->last_error ? j->last_error : "?");
        finish(b, j, b->stop_status, why ? why : b->stop_reason);
        free(why);
    }
    b->n_waiting = 0;
    while (b->next_fresh < b->n) {
        struct job *j = &b->jobs[b->next_fresh++];
        if (j->state == JOB_DONE) continue;
        if (!j->prepared && prepare(b, j) != 0) continue;
        if (!j->cache_checked && try_cache(b, j)) continue;
        char *why = fmt_dup("not attempted: run stopped because %s", b->stop_reason);
        finish(b, j, b->stop_status, why ? why : b->stop_reason);
        free(why);
    }
}

/* Start what may start now; returns seconds until a timer (retry, rate window)
 * could let more start (HUGE_VAL when only a transfer finishing can). */
static double start_requests(struct batch *b, double now) {
    double wake = HUGE_VAL;
    for (int k = 0; k < b->n_waiting && !b->stop_reason;) {
        struct job *j = &b->jobs[b->waiting[k]];
        if (j->not_before > now) {
            if (j->not_before - now < wake) wake = j->not_before - now;
            k++;
            continue;
        }
        if (b->in_flight >= b->c->n_slots) return wake;
        enum gate g = gate(b, j, now, &wake);
        if (g == GATE_WAIT) return wake;
        if (g == GATE_STOP) break;
        memmove(&b->waiting[k], &b->waiting[k + 1], sizeof(int) * (size_t)(b->n_waiting - k - 1));
        b->n_waiting--;
        send_job(b, j, now);
    }
    while (b->next_fresh < b->n && !b->stop_reason) {
        struct job *j = &b->jobs[b->next_fresh];
        if (j->state == JOB_DONE || (!j->prepared && prepare(b, j) != 0) ||
            (!j->cache_checked && try_cache(b, j))) {
            b->next_fresh++;
            continue;
        }
        if (b->in_flight >= b->c->n_slots) break;
        enum gate g = gate(b, j, now, &wake);
        if (g != GATE_GO) break;
        send_job(b, j, now);
        b->next_fresh++;
    }
    if (b->stop_reason) drain(b);
    return wake;
}

/* ---- harvesting ---- */

struct outcome {
    enum llm_status status;
    bool retry, stop;
    char *reason; /* malloc'd, NULL when ok */
    long used_tokens;
    double used_cost;
};

static bool curl_retryable(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

static void transport_failure(struct batch *b, struct xfer *x, CURLcode rc, struct outcome *o) {
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    if (x->too_big) {
        o->status = LLM_ERR_BAD_JSON;
        o->reason = fmt_dup("response body larger than %zu MiB", MAX_BODY_BYTES >> 20);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        o->status = LLM_ERR_TIMEOUT;
        o->retry = true;
        o->reason =
            fmt_dup("no complete reply within timeout_ms %ld (%s)", b->c->cfg.timeout_ms, detail);
    } else {
        o->status = LLM_ERR_CONNECTION;
        o->retry = curl_retryable(rc);
        /* anything else (bad URL, unsupported protocol, TLS trust) fails every request */
        o->stop = !o->retry;
        o->reason = fmt_dup("%s (curl error %d)", detail, (int)rc);
    }
}

static void http_failure(struct batch *b, struct job *j, long http, const char *body, size_t n,
                         struct outcome *o) {
    struct llm_http_verdict v = llm_judge_http(http);
    char *msg = llm_error_message(body, n);
    o->status = v.status;
    o->retry = v.retry;
    o->stop = v.stop_batch;
    o->reason = fmt_dup("HTTP %ld from POST %s%s%s: %s", http, b->c->path[j->req->api ? 1 : 0],
                        v.hint[0] ? ", " : "", v.hint, msg ? msg : "");
    free(msg);
}

static void reply(struct batch *b, struct job *j, const char *body, size_t n, struct outcome *o) {
    struct llm_client *c = b->c;
    bool envelope_ok;
    o->status = take_reply(b, j, body, n, &envelope_ok, &o->reason);
    if (!envelope_ok) return;
    struct llm_response *r = &j->req->result.resp;
    o->used_tokens = r->prompt_tokens + r->completion_tokens;
    o->used_cost = (r->prompt_tokens * c->cfg.price_prompt_usd_per_mtok +
                    r->completion_tokens * c->cfg.price_completion_usd_per_mtok) /
                   1e6;
    j->req->result.cost_usd = o->used_cost;
    c->stats.prompt_tokens += r->prompt_tokens;
    c->stats.completion_tokens += r->completion_tokens;
    c->stats.cost_usd += o->used_cost;
    if (c->cfg.cache_dir && llm_cache_put(c->cfg.cache_dir, j->req->result.cache_key, "POST",
                                          c->path[j->req->api ? 1 : 0], j->body, body, n) != 0)
        log_warn("llm: could not cache the reply to request %d: %s", j->index, err_msg());
}

/* Decide what happens to a job after a failed attempt. */
static void after_failure(struct batch *b, struct job *j, struct outcome *o, long retry_after_s,
                          double now) {
    struct llm_client *c = b->c;
    if (o->retry && !b->stop_reason && j->attempts <= c->cfg.max_retries) {
        double delay_ms = retry_after_s > 0 ? retry_after_s * 1000.0
                                            : llm_backoff_ms(j->attempts, c->cfg.backoff_base_ms,
                                                             c->cfg.backoff_max_ms, &c->rng);
        if (b->deadline > 0 && now + delay_ms / 1000 > b->deadline) {
            char *why = fmt_dup("%s; not retried: the next attempt (in %.1f s) would pass the "
                                "deadline_ms %ld",
                                o->reason, delay_ms / 1000, c->cfg.deadline_ms);
            finish(b, j, o->status, why ? why : o->reason);
            free(why);
            return;
        }
        free(j->last_error);
        j->last_error = o->reason;
        o->reason = NULL;
        j->state = JOB_WAITING;
        j->not_before = now + delay_ms / 1000;
        b->waiting[b->n_waiting++] = j->index;
        log_debug("llm: request %d attempt %d failed (%s), retrying in %.2f s", j->index,
                  j->attempts, j->last_error, delay_ms / 1000);
        return;
    }
    if (o->retry && b->stop_reason) {
        char *why = fmt_dup("not retried: run stopped because %s; last attempt: %s", b->stop_reason,
                            o->reason);
        finish(b, j, b->stop_status, why ? why : o->reason);
        free(why);
        return;
    }
    char *why = o->retry ? fmt_dup("%s (gave up after %d attempts)", o->reason, j->attempts) : NULL;
    finish(b, j, o->status, why ? why : o->reason);
    free(why);
    if (o->stop) stop_batch(b, LLM_ERR_ABORTED, o->reason, true);
}

static void complete_attempt(struct batch *b, struct xfer *x, CURLcode rc) {
    struct llm_client *c = b->c;
    struct job *j = x->job;
    struct llm_result *r = &j->req->result;
    long http = 0;
    curl_off_t total_us = 0, retry_after = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry_after);
    wipe_headers(x->headers);
    x->headers = NULL;
    x->job = NULL;
    b->in_flight--;
    if (x->sends > 1) { /* libcurl's own resends count as attempts (on_prereq) */
        int resent = x->sends - 1;
        log_debug("llm: request %d was resent %d time(s) by libcurl after a reused connection "
                  "died",
                  j->index, resent);
        j->attempts += resent;
        c->stats.http_calls += resent;
        c->stats.retries += resent;
        c->budget->requests += resent;
    }
    double now = now_seconds();
    r->http_status = (int)http;
    r->latency_ms = (double)total_us / 1000.0;
    if (http > 0) {
        c->stats.latency_ms_sum += r->latency_ms;
        if (r->latency_ms > c->stats.latency_ms_max) c->stats.latency_ms_max = r->latency_ms;
    }
    /* the key never gets past this point in a body */
    size_t n = x->n;
    char *clean = redact_dup(x->buf ? x->buf : "", n, api_key(c), &n);
    const char *body = clean ? clean : (x->buf ? x->buf : "");
    struct outcome o = {LLM_OK, false, false, NULL, 0, 0};
    if (rc != CURLE_OK)
        transport_failure(b, x, rc, &o);
    else if (http >= 200 && http <= 299)
        reply(b, j, body, n, &o);
    else
        http_failure(b, j, http, body, n, &o);
    free(clean);
    llm_budget_settle(c->budget, j->est_tokens, j->est_cost, o.used_tokens, o.used_cost);
    if (x->rate_id >= 0) llm_rate_settle(&c->rate, x->rate_id, o.used_tokens);
    log_debug("llm: request %d attempt %d: HTTP %ld in %.0f ms (%s)", j->index, j->attempts, http,
              r->latency_ms, llm_status_name(o.status));
    if (o.status == LLM_OK || !(o.retry || o.stop)) {
        /* a reply (good or not) or a final failure of this request alone */
        finish(b, j, o.status, o.reason);
    } else {
        if (o.status != LLM_OK) llm_response_free(&r->resp);
        after_failure(b, j, &o, (long)retry_after, now);
    }
    free(o.reason);
}

static int harvest(struct batch *b) {
    int done = 0, left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(b->c->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        struct xfer *x = NULL;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(b->c->multi, e);
        complete_attempt(b, x, rc);
        done++;
    }
    return done;
}

/* Past the deadline: cancel what is in flight and stop. */
static void cancel_in_flight(struct batch *b) {
    struct llm_client *c = b->c;
    char why[160];
    snprintf(why, sizeof why, "the overall deadline_ms %ld passed", c->cfg.deadline_ms);
    stop_batch(b, LLM_ERR_ABORTED, why, false);
    for (int i = 0; i < c->n_slots; i++) {
        struct xfer *x = &c->slots[i];
        struct job *j = x->job;
        if (!j) continue;
        curl_multi_remove_handle(c->multi, x->easy);
        wipe_headers(x->headers);
        x->headers = NULL;
        x->job = NULL;
        b->in_flight--;
        llm_budget_settle(c->budget, j->est_tokens, j->est_cost, 0, 0);
        char *msg = fmt_dup("cancelled in flight (attempt %d): %s", j->attempts, why);
        finish(b, j, LLM_ERR_TIMEOUT, msg ? msg : why);
        free(msg);
    }
}

/* ---- the batch ---- */

static int run_custom(struct llm_client *c, struct batch *b) {
    for (int i = 0; i < b->n; i++) {
        struct job *j = &b->jobs[i];
        if (b->stop_reason) {
            char *why = fmt_dup("not attempted: run stopped because %s", b->stop_reason);
            finish(b, j, b->stop_status, why ? why : b->stop_reason);
            free(why);
            continue;
        }
        llm_resolve_effective(&c->cfg, j->req, &j->eff);
        char *reason = NULL;
        struct llm_response *resp = &j->req->result.resp;
        double t0 = now_seconds();
        enum llm_status st = c->provider.answer(c->provider.state, &c->cfg, j->req, resp, &reason);
        j->req->result.latency_ms = (now_seconds() - t0) * 1000.0;
        if (st == LLM_OK && !resp->content) {
            st = LLM_ERR_LOCAL;
            reason = fmt_dup("provider %s answered without content", c->provider.name);
        }
        if (st == LLM_OK) {
            st = llm_check_reply(resp, &j->eff, j->req->expected_prompt_tokens);
            if (st != LLM_OK) reason = xstrdup(err_msg());
        } else {
            llm_response_free(resp);
        }
        finish(b, j, st, reason);
        free(reason);
    }
    return 0;
}

static void run_http(struct llm_client *c, struct batch *b) {
    while (b->n_done < b->n) {
        double now = now_seconds();
        if (b->deadline > 0 && now >= b->deadline && !b->stop_reason) cancel_in_flight(b);
        double wake = start_requests(b, now);
        if (b->n_done >= b->n) break;
        int running = 0;
        curl_multi_perform(c->multi, &running);
        if (harvest(b) > 0) continue;
        if (b->deadline > 0 && b->deadline - now < wake) wake = b->deadline - now;
        if (wake > 1.0) wake = 1.0;
        int ms = wake <= 0 ? 0 : (int)ceil(wake * 1000.0);
        curl_multi_poll(c->multi, NULL, 0, ms, NULL);
    }
}

int llm_run_batch(struct llm_client *c, struct llm_request *reqs, int n, llm_done_fn on_done,
                  void *ctx) {
    if (n <= 0) return 0;
    struct batch b = {.c = c, .n = n, .on_done = on_done, .ctx = ctx};
    b.jobs = xcalloc((size_t)n, sizeof *b.jobs);
    b.waiting = xcalloc((size_t)n, sizeof *b.waiting);
    if (!b.jobs || !b.waiting) {
        free(b.jobs);
        free(b.waiting);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        llm_result_free(&reqs[i].result);
        b.jobs[i] = (struct job){.req = &reqs[i], .index = i};
    }
    if (c->stop_reason) {
        b.stop_reason = xstrdup(c->stop_reason);
        b.stop_status = c->stop_status;
    }
    if (c->cfg.deadline_ms > 0) b.deadline = now_seconds() + c->cfg.deadline_ms / 1000.0;
    if (c->custom)
        run_custom(c, &b);
    else
        run_http(c, &b);
    for (int i = 0; i < n; i++) {
        free(b.jobs[i].body);
        free(b.jobs[i].last_error);
    }
    free(b.jobs);
    free(b.waiting);
    if (!b.stop_reason) return 0;
    err_set("llm: batch stopped: %s", b.stop_reason);
    free(b.stop_reason);
    return -1;
}

/* ---- capability probe ---- */

int llm_list_models(struct llm_client *c, char ***ids, int *n) {
    *ids = NULL;
    *n = 0;
    if (c->custom) return err_set("llm: provider %s has no model list", c->provider.name);
    size_t blen = strlen(c->cfg.base_url);
    while (blen > 0 && c->cfg.base_url[blen - 1] == '/')
        blen--;
    char *url = fmt_dup("%.*s/models", (int)blen, c->cfg.base_url);
    struct xfer x = {0};
    if (!url || setup_easy(c, &x) != 0) {
        free(url);
        return -1;
    }
    x.headers = build_headers(c, false);
    if (!x.headers) {
        curl_easy_cleanup(x.easy);
        free(url);
        return -1;
    }
    curl_easy_setopt(x.easy, CURLOPT_URL, url);
    curl_easy_setopt(x.easy, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(x.easy, CURLOPT_HTTPHEADER, x.headers);
    CURLcode rc = curl_easy_perform(x.easy);
    long http = 0;
    curl_easy_getinfo(x.easy, CURLINFO_RESPONSE_CODE, &http);
    size_t len = x.n;
    char *clean = redact_dup(x.buf ? x.buf : "", len, api_key(c), &len);
    const char *body = clean ? clean : (x.buf ? x.buf : "");
    int out = -1;
    const char *path = llm_url_path(url);
    if (rc != CURLE_OK) {
        err_set("GET %s: %s", path, x.errbuf[0] ? x.errbuf : curl_easy_strerror(rc));
    } else if (http < 200 || http > 299) {
        char *msg = llm_error_message(body, len);
        char *safe = msg ? safe_reason(c, msg) : NULL;
        err_set("GET %s: HTTP %ld: %s", path, http, safe ? safe : "");
        free(safe);
        free(msg);
    } else if (llm_parse_models(body, len, ids, n) != 0) {
        err_prefix("GET %s", path);
    } else {
        out = 0;
    }
    free(clean);
    wipe_headers(x.headers);
    curl_easy_cleanup(x.easy);
    free(x.buf);
    free(url);
    return out;
}
