/* fuzz_llm_parse.c: the LLM reply parsers on arbitrary bodies.
 *
 * The first input byte picks the mode: bit 0 completions (else chat), bit 1
 * logprobs wanted, bits 2-3 the response format asked for (text, json_object,
 * json_schema), bits 4-5 an expected prompt token count (0, 1, 50, 10^6). The
 * rest is the body. A parsed reply goes through llm_check_reply (structured
 * output and prompt-cut checks) and its logprob tokens are walked; every body
 * also goes through the error-message extractor and the /models parser, and
 * the one-line excerpt must stay within its bounds.
 */
#include "fuzz_common.h"

#include <math.h>

#include "llm/parse.h"

static void fuzz_llm_walk(const struct llm_response *r) {
    FUZZ_CHECK(r->n_tokens >= 0 && (r->n_tokens == 0 || r->tokens), "token array");
    for (int i = 0; i < r->n_tokens; i++) {
        const struct llm_token *t = &r->tokens[i];
        FUZZ_CHECK(t->token != NULL, "token %d has no text", i);
        FUZZ_CHECK(t->n_bytes == -1 || (t->n_bytes >= 0 && (t->n_bytes == 0 || t->bytes)),
                   "token %d bytes", i);
        unsigned sum = 0;
        for (int b = 0; b < t->n_bytes; b++)
            sum += t->bytes[b];
        (void)sum;
        for (int k = 0; k < t->n_top; k++)
            FUZZ_CHECK(t->top[k].token != NULL, "token %d alternative %d", i, k);
    }
}

int fuzz_llm_parse(const uint8_t *data, size_t size) {
    err_clear();
    if (size == 0) return 0;
    unsigned mode = data[0];
    char *body = fuzz_cstr(data + 1, size - 1);
    size_t n = size - 1;
    bool completion = mode & 1, want_lp = mode & 2;
    static const long expect[4] = {0, 1, 50, 1000000};
    struct llm_effective eff = {.format = LLM_FORMAT_TEXT + (int)((mode >> 2) & 3) % 3,
                                .max_tokens = 16,
                                .logprobs = want_lp,
                                .top_logprobs = want_lp ? 5 : 0};
    struct llm_response r;
    enum llm_status st = completion ? llm_parse_completion(body, n, want_lp, &r)
                                    : llm_parse_chat(body, n, want_lp, &r);
    int rc = 0;
    if (st == LLM_OK) {
        fuzz_llm_walk(&r);
        err_clear();
        enum llm_status chk = llm_check_reply(&r, &eff, expect[(mode >> 4) & 3]);
        FUZZ_CHECK(chk == LLM_OK || chk == LLM_ERR_PROMPT_CUT || chk == LLM_ERR_TRUNCATED ||
                       chk == LLM_ERR_BAD_OUTPUT,
                   "llm_check_reply returned %d", (int)chk);
        if (chk != LLM_OK) rc = fuzz_outcome(-1, "llm_check_reply");
        if (chk == LLM_OK && eff.format != LLM_FORMAT_TEXT)
            FUZZ_CHECK(r.json != NULL, "a JSON format passed without parsed JSON");
    } else {
        FUZZ_CHECK(st > LLM_OK && st < LLM_N_STATUS, "status %d", (int)st);
        rc = fuzz_outcome(-1, "llm_parse");
    }
    llm_response_free(&r);

    char *msg = llm_error_message(body, n);
    FUZZ_CHECK(msg != NULL, "llm_error_message returned NULL");
    free(msg);
    char **ids = NULL;
    int n_ids = 0;
    if (llm_parse_models(body, n, &ids, &n_ids) == 0) {
        for (int i = 0; i < n_ids; i++)
            FUZZ_CHECK(ids[i] != NULL, "model id %d", i);
        llm_free_models(ids, n_ids);
    }
    char ex[64];
    size_t max = (size_t)(mode % 40);
    llm_excerpt(ex, max + 4, body, n, max);
    FUZZ_CHECK(strlen(ex) <= max + 3, "excerpt of %zu bytes for max %zu", strlen(ex), max);
    free(body);
    return rc;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_llm_parse(data, size);
    return 0;
}
#endif
