/* request.h: from a typed llm_request to the exact bytes the server receives.
 *
 * The body is built once per request, as compact JSON with the keys sorted at
 * every level, so that the same question always produces the same bytes: that
 * makes the cache key (SHA-256 of method, URL path and body, never a header or
 * the API key) stable across runs, machines and cJSON versions of key order.
 * Request fields override the endpoint config where the caller set them.
 */
#ifndef AUTOINTERP_LLM_REQUEST_H
#define AUTOINTERP_LLM_REQUEST_H

#include "llm/llm.h"

/* The settings a request ends up with, after its overrides; the reply is
 * checked against them. */
struct llm_effective {
    enum llm_format format; /* never DEFAULT */
    int max_tokens;         /* as sent (0 for LLM_MAX_TOKENS_ZERO) */
    bool logprobs;
    int top_logprobs;
};

/* The settings of req after its overrides of cfg. */
void llm_resolve_effective(const struct llm_endpoint_config *cfg, const struct llm_request *req,
                           struct llm_effective *eff);

/* "/chat/completions" or "/completions" (appended to base_url). */
const char *llm_api_suffix(enum llm_api api);

/* The compact, key-sorted JSON body (malloc'd); NULL with err_msg naming the
 * bad field ("request: schema_json: invalid JSON at ..."). eff may be NULL. */
char *llm_build_body(const struct llm_endpoint_config *cfg, const struct llm_request *req,
                     struct llm_effective *eff);

/* The path part of a URL: "http://h:1/v1/x?q" -> "/v1/x?q" ("/" when none). */
const char *llm_url_path(const char *url);

/* SHA-256 hex of "METHOD PATH\n" + body: the cache key. */
void llm_request_key(const char *method, const char *url_path, const char *body, char out[65]);

/* Tokens a request may use, estimated before it is sent: prompt bytes / 3
 * (rounded up) + 4 per message + max_tokens. Errs on the high side for
 * English text (about 4 bytes per token) so that budget caps hold. */
long llm_estimate_tokens(const struct llm_request *req, int max_tokens);

#endif
