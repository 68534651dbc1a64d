/* fuzz_llm_parse.c: the LLM reply parsers on arbitrary bodies.
 *
 * The first input byte picks the mode: bit 0 completions (else chat), bit 1
 * logprobs wanted, bits 2-3 the response format asked for (text, json_object,
 * json_schema), bits 4-5 an expected prompt token count (0, 1, 50, 10^6). The
 * rest is the body. A parsed reply goes through llm_check_reply (structured
 * output and prompt-cut checks) and its logprob tokens are walked; every body
 * also goes through the error-message extractor and the /models parser, and
 * the one-line excerpt must stay within its bounds.
 *
 * A parsed reply is then decoded the way the interpretation stages decode it
 * (src/interp/reply.h: the explanation, the simulator's JSON list and its
 * logprob distributions, n = 1, 4, 7 or 10 values by bits 6-7): every value
 * they return must be a number in 0..10. A crash is triaged as scripts/fuzz.sh
 * describes (fixed, then kept under tests/fixtures/fuzz/llm_parse/).
 */
#include "fuzz_common.h"

#include <math.h>

#include "interp/reply.h"
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

static void fuzz_llm_values(int rc, const double *v, int n, const char *what) {
    if (rc != 0) {
        FUZZ_CHECK(err_msg()[0] != 0, "%s failed without a message", what);
        return;
    }
    for (int i = 0; i < n; i++)
        FUZZ_CHECK(v[i] >= 0 && v[i] <= 10, "%s: value %d is %g", what, i, v[i]);
}

/* The interpretation stages' decoding of a reply (src/interp/reply.c). */
static void fuzz_llm_decode(const struct llm_response *r, unsigned mode) {
    if (!r->content) return;
    const char *cat = NULL;
    char *expl = NULL;
    err_clear();
    if (reply_explanation(r->content, 200, &expl, &cat) == 0)
        FUZZ_CHECK(expl && strlen(expl) <= 200, "explanation");
    else
        FUZZ_CHECK(err_msg()[0] && cat, "reply_explanation failed without a message");
    free(expl);
    int n = 1 + (int)((mode >> 6) & 3) * 3;
    double v[10];
    err_clear();
    fuzz_llm_values(reply_sim_json(r, n, v, &cat), v, n, "reply_sim_json");
    if (!(mode & 2)) return;
    err_clear();
    if (mode & 1)
        fuzz_llm_values(reply_sim_echo_logprobs(r, n, v, &cat), v, n, "reply_sim_echo_logprobs");
    else
        fuzz_llm_values(reply_sim_chat_logprobs(r, n, v, &cat), v, n, "reply_sim_chat_logprobs");
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
        fuzz_llm_decode(&r, mode);
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
