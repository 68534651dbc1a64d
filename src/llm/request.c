/* request.c: request bodies, their cache keys and token estimates (see request.h). */
#include "llm/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "util/error.h"
#include "util/sha256.h"

const char *llm_api_suffix(enum llm_api api) {
    return api == LLM_API_COMPLETIONS ? "/completions" : "/chat/completions";
}

void llm_resolve_effective(const struct llm_endpoint_config *cfg, const struct llm_request *req,
                           struct llm_effective *eff) {
    eff->format = req->format != LLM_FORMAT_DEFAULT ? req->format : cfg->format;
    if (eff->format == LLM_FORMAT_DEFAULT) eff->format = LLM_FORMAT_TEXT;
    if (req->max_tokens == LLM_MAX_TOKENS_ZERO)
        eff->max_tokens = 0;
    else
        eff->max_tokens = req->max_tokens > 0 ? req->max_tokens : cfg->max_tokens;
    eff->logprobs = req->logprobs > 0 || (req->logprobs == 0 && cfg->logprobs);
    eff->top_logprobs = req->top_logprobs > 0 ? req->top_logprobs : cfg->top_logprobs;
}

/* response_format for a JSON format; NULL with err_msg when the schema is bad. */
static cJSON *response_format(const struct llm_endpoint_config *cfg, const struct llm_request *req,
                              enum llm_format format) {
    cJSON *rf = cJSON_CreateObject();
    if (format == LLM_FORMAT_JSON_OBJECT) {
        cJSON_AddStringToObject(rf, "type", "json_object");
        return rf;
    }
    bool from_req = req->format == LLM_FORMAT_JSON_SCHEMA;
    const char *text = from_req ? req->schema_json : cfg->schema_json;
    const char *name = from_req && req->schema_name ? req->schema_name : cfg->schema_name;
    if (!text) {
        cJSON_Delete(rf);
        err_set("%s: json_schema format needs a schema, got none",
                from_req ? "request.schema_json" : "schema_json");
        return NULL;
    }
    cJSON *schema = json_parse_named(text, from_req ? "request.schema_json" : "schema_json");
    if (!schema) {
        cJSON_Delete(rf);
        return NULL;
    }
    cJSON *js = cJSON_CreateObject();
    cJSON_AddStringToObject(js, "name", name ? name : "reply");
    cJSON_AddItemToObject(js, "schema", schema);
    cJSON_AddBoolToObject(js, "strict", cfg->schema_strict);
    cJSON_AddStringToObject(rf, "type", "json_schema");
    cJSON_AddItemToObject(rf, "json_schema", js);
    return rf;
}

static cJSON *chat_messages(const struct llm_request *req) {
    if (!req->messages || req->n_messages <= 0) {
        err_set("request.messages: a chat request needs at least one message, got none");
        return NULL;
    }
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < req->n_messages; i++) {
        const struct llm_message *m = &req->messages[i];
        if (!m->role || !m->content) {
            cJSON_Delete(arr);
            err_set("request.messages[%d].%s: expected a string, got NULL", i,
                    m->role ? "content" : "role");
            return NULL;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", m->role);
        cJSON_AddStringToObject(o, "content", m->content);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* The fields both APIs share, added to body. */
static void add_sampling(cJSON *body, const struct llm_endpoint_config *cfg,
                         const struct llm_effective *eff) {
    cJSON_AddStringToObject(body, "model", cfg->model);
    cJSON_AddNumberToObject(body, "temperature", cfg->temperature);
    cJSON_AddNumberToObject(body, "max_tokens", eff->max_tokens);
    if (cfg->seed >= 0) cJSON_AddNumberToObject(body, "seed", (double)cfg->seed);
}

static cJSON *build_tree(const struct llm_endpoint_config *cfg, const struct llm_request *req,
                         const struct llm_effective *eff) {
    cJSON *body = cJSON_CreateObject();
    add_sampling(body, cfg, eff);
    if (req->api == LLM_API_COMPLETIONS) {
        if (!req->prompt) {
            cJSON_Delete(body);
            err_set("request.prompt: a completions request needs a prompt, got NULL");
            return NULL;
        }
        cJSON_AddStringToObject(body, "prompt", req->prompt);
        if (req->echo) cJSON_AddBoolToObject(body, "echo", 1);
        /* The legacy API takes the number of alternatives as "logprobs". */
        if (eff->logprobs) cJSON_AddNumberToObject(body, "logprobs", eff->top_logprobs);
    } else {
        cJSON *msgs = chat_messages(req);
        if (!msgs) {
            cJSON_Delete(body);
            return NULL;
        }
        cJSON_AddItemToObject(body, "messages", msgs);
        if (eff->logprobs) {
            cJSON_AddBoolToObject(body, "logprobs", 1);
            if (eff->top_logprobs > 0)
                cJSON_AddNumberToObject(body, "top_logprobs", eff->top_logprobs);
        }
    }
    if (eff->format == LLM_FORMAT_JSON_OBJECT || eff->format == LLM_FORMAT_JSON_SCHEMA) {
        cJSON *rf = response_format(cfg, req, eff->format);
        if (!rf) {
            cJSON_Delete(body);
            return NULL;
        }
        cJSON_AddItemToObject(body, "response_format", rf);
    }
    return body;
}

char *llm_build_body(const struct llm_endpoint_config *cfg, const struct llm_request *req,
                     struct llm_effective *eff_out) {
    struct llm_effective eff;
    llm_resolve_effective(cfg, req, &eff);
    if (eff_out) *eff_out = eff;
    cJSON *tree = build_tree(cfg, req, &eff);
    if (!tree) return NULL;
    cJSON *sorted = json_sorted_copy(tree);
    cJSON_Delete(tree);
    if (!sorted) return NULL;
    char *text = cJSON_PrintUnformatted(sorted);
    cJSON_Delete(sorted);
    if (!text) err_set("request: out of memory printing the body");
    return text;
}

const char *llm_url_path(const char *url) {
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *slash = strchr(p, '/');
    return slash ? slash : "/";
}

void llm_request_key(const char *method, const char *url_path, const char *body, char out[65]) {
    struct sha256_ctx c;
    uint8_t d[SHA256_DIGEST_BYTES];
    sha256_init(&c);
    sha256_update(&c, method, strlen(method));
    sha256_update(&c, " ", 1);
    sha256_update(&c, url_path, strlen(url_path));
    sha256_update(&c, "\n", 1);
    sha256_update(&c, body, strlen(body));
    sha256_final(&c, d);
    sha256_to_hex(d, out);
}

long llm_estimate_tokens(const struct llm_request *req, int max_tokens) {
    size_t bytes = 0;
    long overhead = 4;
    if (req->api == LLM_API_COMPLETIONS) {
        if (req->prompt) bytes = strlen(req->prompt);
    } else {
        for (int i = 0; req->messages && i < req->n_messages; i++) {
            if (req->messages[i].content) bytes += strlen(req->messages[i].content);
            overhead += 4;
        }
    }
    return (long)((bytes + 2) / 3) + overhead + (max_tokens > 0 ? max_tokens : 0);
}
