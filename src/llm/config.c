/* config.c: endpoint defaults, their checks, and status names (see llm.h). */
#include <stdio.h>
#include <string.h>

#include "llm/llm.h"
#include "util/error.h"

void llm_endpoint_config_init(struct llm_endpoint_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->temperature = 0;
    cfg->max_tokens = 256;
    cfg->seed = -1;
    cfg->format = LLM_FORMAT_TEXT;
    cfg->schema_name = "reply";
    cfg->schema_strict = true;
    cfg->concurrency = 8;
    cfg->timeout_ms = 120000;
    cfg->connect_timeout_ms = 10000;
    cfg->max_retries = 6;
    cfg->backoff_base_ms = 500;
    cfg->backoff_max_ms = 60000;
    cfg->rate_window_ms = 60000;
}

static int range_l(const char *field, double v, double lo, double hi) {
    if (v >= lo && v <= hi) return 0;
    return err_set("llm config: %s must be from %g to %g, got %g", field, lo, hi, v);
}

int llm_endpoint_config_check(const struct llm_endpoint_config *c) {
    if (!c->base_url || !*c->base_url) return err_set("llm config: base_url is required");
    if (strncmp(c->base_url, "http://", 7) != 0 && strncmp(c->base_url, "https://", 8) != 0)
        return err_set("llm config: base_url must start with http:// or https://, got \"%s\"",
                       c->base_url);
    if (!c->model || !*c->model) return err_set("llm config: model is required");
    for (int i = 0; i < c->n_headers; i++) {
        const char *h = c->headers[i];
        const char *colon = h ? strchr(h, ':') : NULL;
        if (!colon || colon == h || strpbrk(h, "\r\n"))
            return err_set("llm config: headers[%d] must be \"Name: value\" on one line", i);
    }
    if (c->format == LLM_FORMAT_JSON_SCHEMA && !c->schema_json)
        return err_set("llm config: format json_schema needs schema_json");
    if (range_l("temperature", c->temperature, 0, 2) != 0) return -1;
    if (range_l("max_tokens", c->max_tokens, 1, 1e7) != 0) return -1;
    if (range_l("top_logprobs", c->top_logprobs, 0, 20) != 0) return -1;
    if (range_l("concurrency", c->concurrency, 1, 1024) != 0) return -1;
    if (range_l("timeout_ms", (double)c->timeout_ms, 1, 1e9) != 0) return -1;
    if (range_l("connect_timeout_ms", (double)c->connect_timeout_ms, 1, 1e9) != 0) return -1;
    if (range_l("deadline_ms", (double)c->deadline_ms, 0, 1e12) != 0) return -1;
    if (range_l("max_retries", c->max_retries, 0, 1000) != 0) return -1;
    if (range_l("backoff_base_ms", (double)c->backoff_base_ms, 0, 1e9) != 0) return -1;
    if (range_l("backoff_max_ms", (double)c->backoff_max_ms, (double)c->backoff_base_ms, 1e9) != 0)
        return -1;
    if (range_l("rpm", c->rpm, 0, 1e9) != 0) return -1;
    if (range_l("tpm", c->tpm, 0, 1e15) != 0) return -1;
    if (range_l("rate_window_ms", (double)c->rate_window_ms, 1, 1e9) != 0) return -1;
    if (range_l("max_requests", (double)c->max_requests, 0, 1e15) != 0) return -1;
    if (range_l("max_tokens_total", (double)c->max_tokens_total, 0, 1e18) != 0) return -1;
    if (range_l("max_cost_usd", c->max_cost_usd, 0, 1e12) != 0) return -1;
    if (range_l("price_prompt_usd_per_mtok", c->price_prompt_usd_per_mtok, 0, 1e9) != 0) return -1;
    if (range_l("price_completion_usd_per_mtok", c->price_completion_usd_per_mtok, 0, 1e9) != 0)
        return -1;
    if (c->max_cost_usd > 0 && c->price_prompt_usd_per_mtok == 0 &&
        c->price_completion_usd_per_mtok == 0)
        return err_set("llm config: max_cost_usd is set but the model \"%s\" has no prices "
                       "(price_prompt_usd_per_mtok, price_completion_usd_per_mtok)",
                       c->model);
    return 0;
}

const char *llm_status_name(enum llm_status s) {
    static const char *names[LLM_N_STATUS] = {
        "ok",         "http_4xx",  "http_5xx",   "timeout", "connection", "bad_json", "api_error",
        "bad_output", "truncated", "prompt_cut", "budget",  "aborted",    "local"};
    return (unsigned)s < LLM_N_STATUS ? names[s] : "unknown";
}
