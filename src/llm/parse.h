/* parse.h: server replies into typed structs, and what an HTTP status means.
 *
 * Servers that call themselves OpenAI-compatible differ in the details (see
 * DESIGN.md section 4), so nothing in a reply is trusted: every field the client
 * uses is checked for presence and type, and a failure names its JSON path
 * ("choices[0].message.content: expected a string, got null"). Unknown fields
 * (llama.cpp's token `id`s, vLLM's `stop_reason`, timings) are ignored; any
 * number of top_logprobs alternatives is accepted. An `error` object (or vLLM's
 * {"object": "error"}) in a 200 body is an API error, not a reply.
 *
 * Every function returns a status (LLM_OK or a failure category) and leaves the
 * reason in err_msg().
 */
#ifndef AUTOINTERP_LLM_PARSE_H
#define AUTOINTERP_LLM_PARSE_H

#include <stddef.h>

#include "llm/llm.h"
#include "llm/request.h"

/* A chat or completions reply body into *out (zeroed first; on failure it is
 * left empty). want_logprobs makes choices[0].logprobs required. */
enum llm_status llm_parse_chat(const char *body, size_t n, bool want_logprobs,
                               struct llm_response *out);
enum llm_status llm_parse_completion(const char *body, size_t n, bool want_logprobs,
                                     struct llm_response *out);

/* GET /models: the ids of data[i].id (malloc'd array of malloc'd strings). */
int llm_parse_models(const char *body, size_t n, char ***ids, int *n_ids);

/* Check a parsed reply against what was asked: the prompt was not cut (when
 * expected_prompt_tokens > 0), and a JSON format gave JSON content (parsed into
 * r->json). Returns LLM_OK, PROMPT_CUT, TRUNCATED or BAD_OUTPUT. */
enum llm_status llm_check_reply(struct llm_response *r, const struct llm_effective *eff,
                                long expected_prompt_tokens);

/* The error a body carries, as one line: error.message / error (a string) /
 * message / detail, with error.type and error.code when present, or else an
 * excerpt of the body. Malloc'd; never NULL unless out of memory. */
char *llm_error_message(const char *body, size_t n);

/* What a non-2xx HTTP status means for the request and the batch. */
struct llm_http_verdict {
    enum llm_status status;
    bool retry;       /* 408, 409, 425, 429, 5xx */
    bool stop_batch;  /* 401, 402, 403, 404 */
    const char *hint; /* a few words for the message, "" when none */
};
struct llm_http_verdict llm_judge_http(long http_status);

/* A printable one-line excerpt of s (control characters become spaces), at most
 * max bytes plus "..." when cut, into dst (dst_cap >= max + 4). */
void llm_excerpt(char *dst, size_t dst_cap, const char *s, size_t n, size_t max);

#endif
