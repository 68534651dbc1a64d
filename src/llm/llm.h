/* llm.h: the LLM client. Typed requests to OpenAI-compatible servers, many in flight.
 *
 * The client knows nothing of features or prompts: a caller fills an array of
 * struct llm_request (chat messages or a completion prompt), calls llm_run_batch,
 * and gets every request back in exactly one final state, ok or failed with a
 * category and a reason, through a callback fired as each one finishes (so a
 * stage can append its JSONL line at once and a killed run loses nothing).
 *
 * How a batch runs (client.c): one libcurl multi loop, no threads. Up to
 * `concurrency` transfers are in flight on reused connections (HTTP/2 where the
 * server offers it over TLS). Before a request is sent its canonical form is
 * hashed and looked up in the on-disk cache (cache.h): a hit costs no HTTP call.
 * 429, 408, 409, 5xx, timeouts and dropped connections are retried with jittered
 * exponential backoff honouring Retry-After; 401/402/403/404 (bad key, no credit,
 * forbidden, unknown model) stop the whole batch, as does reaching a budget cap.
 * A stopped batch still finishes what is in flight and marks everything else
 * "not attempted: run stopped because ...". Every successful response body is
 * renamed into the cache before the callback runs; hence the resume guarantee:
 * a request whose callback ran is never sent again by a rerun with the same
 * cache, and after a kill at most the `concurrency` requests that were in
 * flight (sent, reply not yet in the cache) are sent a second time.
 *
 * Secrets: the API key is read from the environment variable named by
 * api_key_env at the moment each request is sent, is placed only in the
 * Authorization header, and is scrubbed ("[redacted]") from every response body
 * before that body is parsed, cached, logged or quoted in an error message.
 *
 * Providers: the HTTP client above is the "openai" provider. An offline provider
 * (the builtin explainer/simulator) plugs in through struct llm_provider: it
 * answers one request at a time with the same typed response, and the batch
 * loop, callback, stop rules and statistics stay the same.
 *
 * Ownership: strings in the config and in requests are borrowed (they must stay
 * valid for the call that uses them; llm_client_new copies the config). Every
 * result a batch produces is owned by its request and freed by llm_result_free.
 */
#ifndef AUTOINTERP_LLM_LLM_H
#define AUTOINTERP_LLM_LLM_H

#include <stdbool.h>

#include <cjson/cJSON.h>

/* ---- Configuration of one endpoint (flat; the config loader fills it) ---- */

enum llm_format {
    LLM_FORMAT_DEFAULT = 0, /* in a request: use the config's; in a config: TEXT */
    LLM_FORMAT_TEXT,        /* no response_format sent */
    LLM_FORMAT_JSON_OBJECT, /* response_format {"type":"json_object"} */
    LLM_FORMAT_JSON_SCHEMA, /* response_format
                               {"type":"json_schema","json_schema":{name,schema,strict}} */
};

struct llm_endpoint_config {
    /* Server. base_url is required: the API root that "/chat/completions",
     * "/completions" and "/models" are appended to, e.g. "https://api.openai.com/v1"
     * or "http://127.0.0.1:8080/v1". model is required (sent as "model"). */
    const char *base_url;
    const char *model;
    /* Name of the environment variable holding the API key (NULL or "" = send no
     * Authorization header). The key itself never appears in any config. */
    const char *api_key_env;
    /* Extra HTTP headers, each "Name: value" (default none). */
    const char *const *headers;
    int n_headers;

    /* Sampling. */
    double temperature; /* default 0 */
    int max_tokens;     /* completion token limit, default 256; must be >= 1 */
    long long seed;     /* sent as "seed" when >= 0; default -1 (not sent) */
    bool logprobs;      /* ask for per-token logprobs; default false */
    int top_logprobs;   /* alternatives per token (0..20), default 0 = not sent */

    /* Structured output (default TEXT). schema_json is the JSON text of the
     * schema, required for JSON_SCHEMA; schema_name defaults to "reply";
     * schema_strict defaults to true. */
    enum llm_format format;
    const char *schema_name;
    const char *schema_json;
    bool schema_strict;

    /* Transport. */
    int concurrency;         /* requests in flight, default 8 (1..1024) */
    long timeout_ms;         /* whole-request timeout per attempt, default 120000 */
    long connect_timeout_ms; /* default 10000 */
    long deadline_ms;        /* per llm_run_batch call, from its start; 0 = none (default) */

    /* Retries of 429/408/409/5xx/timeouts/dropped connections. Attempt k (k >= 1)
     * waits Retry-After when the server sent one, otherwise a uniform draw from
     * [d/2, d] with d = min(backoff_max_ms, backoff_base_ms * 2^(k-1)). */
    int max_retries;      /* retries after the first attempt, default 6 */
    long backoff_base_ms; /* default 500 */
    long backoff_max_ms;  /* default 60000 */

    /* Rate limits over a sliding window (default a minute): no window holds more
     * than rpm request starts, nor more than tpm tokens (estimated when a request
     * starts: prompt bytes / 3 + max_tokens; replaced by the usage the server
     * reports once it answers). A single request larger than tpm still runs,
     * alone. 0 = no limit (default). rate_window_ms exists so tests can shrink
     * the minute. */
    double rpm;
    double tpm;
    long rate_window_ms; /* default 60000 */

    /* Budget caps of this client (0 = none, the default); see struct llm_budget
     * to share one budget between clients. Prices are this model's, in USD per
     * million tokens (default 0 = free). */
    long long max_requests;     /* HTTP requests sent, retries included */
    long long max_tokens_total; /* prompt + completion tokens */
    double max_cost_usd;
    double price_prompt_usd_per_mtok;
    double price_completion_usd_per_mtok;

    /* Response cache directory (created when missing); NULL or "" = no cache. */
    const char *cache_dir;
};

/* Fill every field with its default (base_url and model NULL: required). */
void llm_endpoint_config_init(struct llm_endpoint_config *cfg);

/* Check ranges and required fields; errors name the field
 * ("llm config: concurrency must be from 1 to 1024, got 0"). */
int llm_endpoint_config_check(const struct llm_endpoint_config *cfg);

/* ---- Requests and their results ---- */

enum llm_api {
    LLM_API_CHAT = 0,        /* POST {base}/chat/completions with messages */
    LLM_API_COMPLETIONS = 1, /* POST {base}/completions with a prompt */
};

/* Final state of a request: LLM_OK or the category of its failure. */
enum llm_status {
    LLM_OK = 0,
    LLM_ERR_HTTP_4XX,   /* 4xx other than retried 408/409/429, or 429 after the last retry */
    LLM_ERR_HTTP_5XX,   /* 5xx after the last retry */
    LLM_ERR_TIMEOUT,    /* per-request timeout (after the last retry) or the batch deadline */
    LLM_ERR_CONNECTION, /* refused, reset, dropped mid-response, DNS, TLS */
    LLM_ERR_BAD_JSON,   /* body not JSON, truncated, or a field missing or mistyped */
    LLM_ERR_API_ERROR,  /* an `error` object in an HTTP 200 body */
    LLM_ERR_BAD_OUTPUT, /* a JSON format was asked for and the content is not JSON */
    LLM_ERR_TRUNCATED,  /* finish_reason "length" and the asked-for JSON is cut off */
    LLM_ERR_PROMPT_CUT, /* usage.prompt_tokens below the caller's expected count */
    LLM_ERR_BUDGET,     /* not attempted: a budget cap was reached */
    LLM_ERR_ABORTED,    /* not attempted or not retried: the run was stopped */
    LLM_ERR_LOCAL,      /* the request could not be built (bad schema JSON, no prompt) */
    LLM_N_STATUS
};

/* "ok", "http_4xx", "http_5xx", "timeout", "connection", "bad_json", "api_error",
 * "bad_output", "truncated", "prompt_cut", "budget", "aborted", "local". */
const char *llm_status_name(enum llm_status s);

struct llm_message {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
};

struct llm_top_logprob {
    char *token;
    double logprob;
};

/* One token with its logprob. Chat: choices[0].logprobs.content[i]; completions:
 * position i of choices[0].logprobs.{tokens, token_logprobs, top_logprobs,
 * text_offset}. */
struct llm_token {
    char *token;
    double logprob;              /* NAN when the server sent null (first echoed token) */
    unsigned char *bytes;        /* chat only; NULL when absent */
    int n_bytes;                 /* -1 when absent */
    long text_offset;            /* completions only; -1 otherwise */
    struct llm_top_logprob *top; /* alternatives, most likely first as sent */
    int n_top;
};

struct llm_response {
    char *content;            /* message content (chat) or text (completions; echo included) */
    char *finish_reason;      /* "stop", "length", ... */
    char *model;              /* model the server reports, NULL when absent */
    long prompt_tokens;       /* usage.prompt_tokens */
    long completion_tokens;   /* usage.completion_tokens */
    struct llm_token *tokens; /* logprobs, NULL unless asked for */
    int n_tokens;
    cJSON *json; /* content parsed, when a JSON format was asked for and it parsed */
};

struct llm_result {
    enum llm_status status;
    char *error;     /* NULL when ok, else the reason ("HTTP 503 after 7 attempts: ...") */
    int http_status; /* of the last attempt, 0 when none answered */
    int attempts;    /* HTTP attempts (0: served from cache or not attempted) */
    bool from_cache;
    double latency_ms; /* of the last attempt */
    double total_ms;   /* first send to final state, backoff waits included */
    double cost_usd;
    char cache_key[65]; /* SHA-256 hex of the canonical request ("" if never built) */
    /* Filled when status is OK, and also for BAD_OUTPUT, TRUNCATED and PROMPT_CUT
     * (the server did answer; callers may want to see what it said). */
    struct llm_response resp;
};

/* LLM_MAX_TOKENS_ZERO in llm_request.max_tokens sends "max_tokens": 0 (a
 * completions request that only scores an echoed prompt). */
#define LLM_MAX_TOKENS_ZERO (-1)

struct llm_request {
    /* Set by the caller. */
    enum llm_api api;
    const struct llm_message *messages; /* chat */
    int n_messages;
    const char *prompt;      /* completions */
    bool echo;               /* completions: echo the prompt (prompt logprobs) */
    int max_tokens;          /* 0 = config's; LLM_MAX_TOKENS_ZERO = send 0 */
    int logprobs;            /* 0 = config's, 1 = ask, -1 = do not ask */
    int top_logprobs;        /* 0 = config's, else this many alternatives */
    enum llm_format format;  /* DEFAULT = config's; overrides schema_* below when set */
    const char *schema_name; /* NULL = config's (or "reply") */
    const char *schema_json; /* required when format is JSON_SCHEMA here */
    /* When > 0: the fewest prompt tokens the server may report; fewer means it
     * cut the prompt (llama.cpp does so silently), a PROMPT_CUT failure. */
    long expected_prompt_tokens;
    void *user; /* the caller's, never touched */

    /* Filled by the client. Must be zero before the first batch; a request run
     * again has its old result freed first. */
    struct llm_result result;
};

void llm_result_free(struct llm_result *r);
void llm_response_free(struct llm_response *r);

/* ---- Statistics and budgets ---- */

struct llm_stats {
    long long requests; /* requests brought to a final state */
    long long ok;
    long long by_status[LLM_N_STATUS]; /* index LLM_OK counts ok too */
    long long http_calls;              /* HTTP attempts sent */
    long long retries;                 /* attempts after a first one */
    long long cache_hits;
    long long cache_corrupt; /* cache entries found corrupt and refetched */
    long long prompt_tokens; /* from usage, cache hits excluded */
    long long completion_tokens;
    double cost_usd;
    double latency_ms_sum; /* over attempts that got an HTTP answer */
    double latency_ms_max;
};

/* A budget: caps (0 = none) and what has been spent against them. Each client
 * has its own, built from its config; clients may instead share one (the
 * explainer and the simulator under one run-wide cap): llm_client_share_budget.
 * A request is sent only if spent + reserved + its estimate stays within every
 * cap, the estimate being prompt bytes / 3 + max_tokens tokens (and their
 * price). When it does not fit and nothing is in flight, the batch stops with
 * LLM_ERR_BUDGET for the rest; so a cap is never passed unless a prompt
 * estimate falls short of the server's count. */
struct llm_budget {
    long long max_requests, max_tokens;
    double max_cost_usd;
    long long requests, tokens; /* spent */
    double cost_usd;
    long long reserved_tokens; /* estimates of requests in flight */
    double reserved_cost_usd;
};

/* ---- Providers ---- */

/* An offline provider answers one request synchronously. It fills *out and
 * returns LLM_OK, or returns a failure status with *reason malloc'd. */
struct llm_provider {
    const char *name; /* "builtin" */
    enum llm_status (*answer)(void *state, const struct llm_endpoint_config *cfg,
                              const struct llm_request *req, struct llm_response *out,
                              char **reason);
    void (*destroy)(void *state); /* may be NULL; called by llm_client_free */
    void *state;
};

/* ---- The client ---- */

struct llm_client;

/* The HTTP ("openai") provider. Checks the config; NULL with err_msg on failure. */
struct llm_client *llm_client_new(const struct llm_endpoint_config *cfg);

/* A client whose answers come from an offline provider (no HTTP, no cache,
 * no budget: those answers are free). The provider is copied. */
struct llm_client *llm_client_new_with_provider(const struct llm_endpoint_config *cfg,
                                                const struct llm_provider *p);
void llm_client_free(struct llm_client *c);

/* Called once per request as it reaches its final state, in completion order.
 * Return non-zero to stop the batch (like an abort: in-flight requests finish,
 * the rest are marked "not attempted"). */
typedef int (*llm_done_fn)(struct llm_request *req, int index, void *ctx);

/* Run n requests to completion. Returns 0 when the batch ran to its end (each
 * request then ok or failed on its own), -1 when it was stopped (a 401/402/403/
 * 404, a budget cap, the deadline, on_done asking), with err_msg saying why.
 * Either way every request has its final result and on_done (may be NULL) was
 * called exactly once for each. A stop caused by 401/402/403/404, a missing
 * key variable, a transport error that would fail every request (malformed
 * URL, untrusted certificate) or the budget is sticky: later batches on this
 * client mark everything not attempted (cache hits are still served). */
int llm_run_batch(struct llm_client *c, struct llm_request *reqs, int n, llm_done_fn on_done,
                  void *ctx);

/* Cumulative over the client's life. */
const struct llm_stats *llm_client_stats(const struct llm_client *c);

/* Why the client stopped for good (see llm_run_batch), or NULL. */
const char *llm_client_stopped(const struct llm_client *c);

/* Use an external budget (owned by the caller, outliving the client) instead
 * of the client's own. */
void llm_client_share_budget(struct llm_client *c, struct llm_budget *b);
const struct llm_budget *llm_client_budget(const struct llm_client *c);

/* Capability probe: GET {base}/models, the model ids in *ids (free with
 * llm_free_models). One attempt; -1 with err_msg on any failure. */
int llm_list_models(struct llm_client *c, char ***ids, int *n);
void llm_free_models(char **ids, int n);

/* The request body the client would send (compact JSON, keys sorted) and its
 * cache key; for callers that record what was asked (the prompt hash) and for
 * tests. NULL with err_msg when the request cannot be built. */
char *llm_request_body(const struct llm_client *c, const struct llm_request *req, char key_hex[65]);

#endif
