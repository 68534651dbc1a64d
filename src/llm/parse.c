/* parse.c: typed replies from OpenAI-compatible servers (see parse.h).
 *
 * Field access goes through need()/maybe(), which know the JSON path of what
 * they look at, so every failure message can say exactly where the reply went
 * wrong. Paths are built with snprintf into small buffers: replies are shallow.
 */
#include "llm/parse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

typedef cJSON_bool (*is_fn)(const cJSON *);

#define PATH_MAX_LEN 160

static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static const char *type_name(const cJSON *j) {
    if (!j) return "nothing (missing)";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return cJSON_GetArraySize(j) ? "an array" : "an empty array";
    if (cJSON_IsObject(j)) return "an object";
    return "an invalid value";
}

static void join_path(char *out, const char *parent, const char *key) {
    snprintf(out, PATH_MAX_LEN, "%s%s%s", parent, *parent ? "." : "", key);
}

/* parent[key], which must satisfy is(); else NULL and "path: expected what, got ...". */
static const cJSON *need(const cJSON *parent, const char *ppath, const char *key, is_fn is,
                         const char *what) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(parent, key);
    if (v && is(v)) return v;
    char path[PATH_MAX_LEN];
    join_path(path, ppath, key);
    err_set("%s: expected %s, got %s", path, what, type_name(v));
    return NULL;
}

/* Optional parent[key]: 0 when absent or null (*out NULL), 1 when it satisfies
 * is(), -1 with the error otherwise. */
static int maybe(const cJSON *parent, const char *ppath, const char *key, is_fn is,
                 const char *what, const cJSON **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(parent, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (is(v)) {
        *out = v;
        return 1;
    }
    char path[PATH_MAX_LEN];
    join_path(path, ppath, key);
    return err_set("%s: expected %s, got %s", path, what, type_name(v));
}

static char *dup_string(const cJSON *s) {
    return xstrdup(cJSON_GetStringValue(s));
}

/* A count from usage: a non-negative whole number. */
static int need_count(const cJSON *parent, const char *ppath, const char *key, long *out) {
    const cJSON *v = need(parent, ppath, key, cJSON_IsNumber, "a number");
    if (!v) return -1;
    double d = cJSON_GetNumberValue(v);
    if (d < 0 || d != floor(d) || d > 1e15) {
        char path[PATH_MAX_LEN];
        join_path(path, ppath, key);
        return err_set("%s: expected a non-negative integer, got %g", path, d);
    }
    *out = (long)d;
    return 0;
}

void llm_excerpt(char *dst, size_t dst_cap, const char *s, size_t n, size_t max) {
    size_t k = 0;
    if (max + 4 > dst_cap) max = dst_cap > 4 ? dst_cap - 4 : 0;
    for (; k < n && k < max && s[k]; k++) {
        unsigned char ch = (unsigned char)s[k];
        dst[k] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    bool cut = k < n && s[k];
    /* Do not leave half a UTF-8 sequence at a cut. */
    if (cut)
        while (k > 0 && ((unsigned char)dst[k - 1] & 0xC0) == 0x80)
            k--;
    if (cut && k > 0 && ((unsigned char)dst[k - 1] & 0xC0) == 0xC0) k--;
    dst[k] = 0;
    if (cut) strcat(dst, "...");
}

/* Is a body that cJSON refused the beginning of a JSON value (cut short) rather
 * than malformed? Brackets must pair up by type so far, and cJSON must have
 * failed where the input ran out: at the end, inside a final unterminated
 * string, or on a final literal cut short ("tru"). err_at is cJSON's error
 * offset. */
static bool looks_truncated(const char *s, size_t n, size_t err_at) {
    char stack[256];
    int depth = 0;
    bool in_str = false, esc = false;
    size_t str_start = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"') {
            in_str = true;
            str_start = i;
        } else if (ch == '{' || ch == '[') {
            if (depth == (int)sizeof stack) return false;
            stack[depth++] = ch == '{' ? '}' : ']';
        } else if (ch == '}' || ch == ']') {
            if (depth == 0 || stack[--depth] != ch) return false;
        }
    }
    if (in_str) return err_at > str_start;
    size_t end = n;
    while (end > 0 && is_ws(s[end - 1]))
        end--;
    if (err_at >= end) return depth > 0;
    /* what follows the failure point is only a number and separators: cut there */
    size_t k = err_at;
    while (k < end && s[k] && strchr("0123456789+-.eE:, \t\r\n", s[k]))
        k++;
    if (k == end) return depth > 0;
    const char *lits[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++)
        if (end - err_at < strlen(lits[k]) && strncmp(s + err_at, lits[k], end - err_at) == 0)
            return true;
    return false;
}

/* API error bodies: error (object or string), vLLM's {"object":"error"}. */
static bool is_error_body(const cJSON *root) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (e && !cJSON_IsNull(e) && !cJSON_IsFalse(e)) return true;
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "object");
    return cJSON_IsString(o) && strcmp(o->valuestring, "error") == 0;
}

static void describe_error(const cJSON *root, char *out, size_t cap) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *src = cJSON_IsObject(e) ? e : root;
    const char *msg = NULL;
    if (cJSON_IsString(e)) msg = e->valuestring;
    const char *keys[] = {"message", "detail", "msg"};
    for (int i = 0; !msg && i < 3; i++) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(src, keys[i]);
        if (cJSON_IsString(m)) msg = m->valuestring;
    }
    char text[400];
    llm_excerpt(text, sizeof text, msg ? msg : "(no message)", msg ? strlen(msg) : 12, 360);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(src, "type");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(src, "code");
    char extra[128] = "";
    if (cJSON_IsString(type)) snprintf(extra, sizeof extra, "type %.40s", type->valuestring);
    if (cJSON_IsString(code) || cJSON_IsNumber(code)) {
        size_t k = strlen(extra);
        if (cJSON_IsString(code))
            snprintf(extra + k, sizeof extra - k, "%scode %.40s", k ? ", " : "", code->valuestring);
        else
            snprintf(extra + k, sizeof extra - k, "%scode %g", k ? ", " : "", code->valuedouble);
    }
    snprintf(out, cap, "%s%s%s%s", text, extra[0] ? " (" : "", extra, extra[0] ? ")" : "");
}

char *llm_error_message(const char *body, size_t n) {
    char out[600];
    cJSON *root = n ? cJSON_ParseWithLength(body, n) : NULL;
    if (root && cJSON_IsObject(root) &&
        (is_error_body(root) || cJSON_GetObjectItemCaseSensitive(root, "message") ||
         cJSON_GetObjectItemCaseSensitive(root, "detail"))) {
        describe_error(root, out, sizeof out);
    } else if (n == 0) {
        snprintf(out, sizeof out, "empty body");
    } else {
        char ex[220];
        llm_excerpt(ex, sizeof ex, body, n, 200);
        snprintf(out, sizeof out, "body: %s", ex);
    }
    cJSON_Delete(root);
    return xstrdup(out);
}

/* Parse a reply body into an object; BAD_JSON or API_ERROR with the reason. */
static enum llm_status parse_root(const char *body, size_t n, cJSON **out) {
    *out = NULL;
    if (n == 0) {
        err_set("response body is empty");
        return LLM_ERR_BAD_JSON;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, n, &end, 0);
    size_t at = end ? (size_t)(end - body) : 0;
    if (root) /* only whitespace may follow the value */
        while (at < n && is_ws(body[at]))
            at++;
    if (!root || at < n) {
        cJSON_Delete(root);
        if (!root && looks_truncated(body, n, at)) {
            err_set("truncated JSON: the body ends after %zu bytes inside an unfinished value", n);
        } else {
            char ex[40];
            if (at > n) at = n;
            llm_excerpt(ex, sizeof ex, body + at, n - at, 24);
            err_set("invalid JSON at byte %zu of %zu, near '%s'", at, n, ex);
        }
        return LLM_ERR_BAD_JSON;
    }
    if (!cJSON_IsObject(root)) {
        err_set("response: expected a JSON object, got %s", type_name(root));
        cJSON_Delete(root);
        return LLM_ERR_BAD_JSON;
    }
    if (is_error_body(root)) {
        char msg[600];
        describe_error(root, msg, sizeof msg);
        err_set("API error in an HTTP 200 reply: %s", msg);
        cJSON_Delete(root);
        return LLM_ERR_API_ERROR;
    }
    *out = root;
    return LLM_OK;
}

/* choices[0], which must be an object in a non-empty array. */
static const cJSON *first_choice(const cJSON *root) {
    const cJSON *choices = need(root, "", "choices", cJSON_IsArray, "a non-empty array");
    if (!choices) return NULL;
    const cJSON *c0 = cJSON_GetArrayItem(choices, 0);
    if (!c0) {
        err_set("choices: expected a non-empty array, got an empty array");
        return NULL;
    }
    if (!cJSON_IsObject(c0)) {
        err_set("choices[0]: expected an object, got %s", type_name(c0));
        return NULL;
    }
    return c0;
}

/* finish_reason, usage and model: the parts chat and completions share. */
static int parse_common(const cJSON *root, const cJSON *c0, struct llm_response *out) {
    const cJSON *fr = need(c0, "choices[0]", "finish_reason", cJSON_IsString, "a string");
    const cJSON *usage = fr ? need(root, "", "usage", cJSON_IsObject, "an object") : NULL;
    if (!usage) return -1;
    if (need_count(usage, "usage", "prompt_tokens", &out->prompt_tokens) != 0) return -1;
    if (need_count(usage, "usage", "completion_tokens", &out->completion_tokens) != 0) return -1;
    const cJSON *model;
    if (maybe(root, "", "model", cJSON_IsString, "a string", &model) < 0) return -1;
    out->finish_reason = dup_string(fr);
    out->model = model ? dup_string(model) : NULL;
    return 0;
}

static int parse_top_array(const cJSON *arr, const char *path, struct llm_token *t) {
    int k = cJSON_GetArraySize(arr);
    t->top = xcalloc((size_t)(k ? k : 1), sizeof *t->top);
    if (!t->top) return -1;
    for (int j = 0; j < k; j++) {
        const cJSON *alt = cJSON_GetArrayItem(arr, j);
        char ap[PATH_MAX_LEN];
        snprintf(ap, sizeof ap, "%s[%d]", path, j);
        if (!cJSON_IsObject(alt))
            return err_set("%s: expected an object, got %s", ap, type_name(alt));
        const cJSON *tok = need(alt, ap, "token", cJSON_IsString, "a string");
        const cJSON *lp = tok ? need(alt, ap, "logprob", cJSON_IsNumber, "a number") : NULL;
        if (!lp) return -1;
        t->top[j].token = dup_string(tok);
        t->top[j].logprob = lp->valuedouble;
        t->n_top = j + 1;
    }
    return 0;
}

static int parse_bytes(const cJSON *arr, const char *path, struct llm_token *t) {
    int k = cJSON_GetArraySize(arr);
    t->bytes = xmalloc((size_t)(k ? k : 1));
    if (!t->bytes) return -1;
    for (int j = 0; j < k; j++) {
        const cJSON *b = cJSON_GetArrayItem(arr, j);
        double v = cJSON_IsNumber(b) ? b->valuedouble : -1;
        if (v < 0 || v > 255 || v != floor(v))
            return err_set("%s.bytes[%d]: expected an integer from 0 to 255, got %s", path, j,
                           cJSON_IsNumber(b) ? "a number out of range" : type_name(b));
        t->bytes[j] = (unsigned char)v;
    }
    t->n_bytes = k;
    return 0;
}

/* choices[0].logprobs.content[i]: {token, logprob, bytes?, top_logprobs?}. */
static int parse_chat_token(const cJSON *e, const char *path, struct llm_token *t) {
    t->n_bytes = -1;
    t->text_offset = -1;
    if (!cJSON_IsObject(e)) return err_set("%s: expected an object, got %s", path, type_name(e));
    const cJSON *tok = need(e, path, "token", cJSON_IsString, "a string");
    const cJSON *lp = tok ? need(e, path, "logprob", cJSON_IsNumber, "a number") : NULL;
    if (!lp) return -1;
    t->token = dup_string(tok);
    t->logprob = lp->valuedouble;
    const cJSON *bytes, *top;
    int rb = maybe(e, path, "bytes", cJSON_IsArray, "an array", &bytes);
    if (rb < 0 || (rb > 0 && parse_bytes(bytes, path, t) != 0)) return -1;
    int rt = maybe(e, path, "top_logprobs", cJSON_IsArray, "an array", &top);
    if (rt < 0) return -1;
    if (rt > 0) {
        char tp[PATH_MAX_LEN];
        snprintf(tp, sizeof tp, "%s.top_logprobs", path);
        return parse_top_array(top, tp, t);
    }
    return 0;
}

static int parse_chat_logprobs(const cJSON *c0, struct llm_response *out) {
    const cJSON *lp = need(c0, "choices[0]", "logprobs", cJSON_IsObject, "an object");
    const cJSON *content =
        lp ? need(lp, "choices[0].logprobs", "content", cJSON_IsArray, "an array") : NULL;
    if (!content) return -1;
    int k = cJSON_GetArraySize(content);
    out->tokens = xcalloc((size_t)(k ? k : 1), sizeof *out->tokens);
    if (!out->tokens) return -1;
    for (int i = 0; i < k; i++) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof path, "choices[0].logprobs.content[%d]", i);
        out->n_tokens = i + 1;
        if (parse_chat_token(cJSON_GetArrayItem(content, i), path, &out->tokens[i]) != 0) return -1;
    }
    return 0;
}

enum llm_status llm_parse_chat(const char *body, size_t n, bool want_logprobs,
                               struct llm_response *out) {
    memset(out, 0, sizeof *out);
    cJSON *root;
    enum llm_status st = parse_root(body, n, &root);
    if (st != LLM_OK) return st;
    const cJSON *c0 = first_choice(root);
    const cJSON *msg = c0 ? need(c0, "choices[0]", "message", cJSON_IsObject, "an object") : NULL;
    const cJSON *content =
        msg ? need(msg, "choices[0].message", "content", cJSON_IsString, "a string") : NULL;
    int rc = content ? parse_common(root, c0, out) : -1;
    if (rc == 0) {
        out->content = dup_string(content);
        if (want_logprobs) rc = parse_chat_logprobs(c0, out);
    }
    cJSON_Delete(root);
    if (rc == 0 && out->content) return LLM_OK;
    char keep[ERR_MSG_MAX];
    snprintf(keep, sizeof keep, "%s", err_msg());
    llm_response_free(out);
    err_set("%s", keep);
    return LLM_ERR_BAD_JSON;
}

/* One array of the legacy logprobs object, which must have k entries. */
static const cJSON *parallel_array(const cJSON *lp, const char *key, int k, bool required) {
    const cJSON *a;
    int r = maybe(lp, "choices[0].logprobs", key, cJSON_IsArray, "an array", &a);
    if (r < 0) return NULL;
    if (r == 0) {
        if (required) err_set("choices[0].logprobs.%s: expected an array, got nothing", key);
        return NULL;
    }
    if (cJSON_GetArraySize(a) != k) {
        err_set("choices[0].logprobs.%s: expected %d entries like tokens, got %d", key, k,
                cJSON_GetArraySize(a));
        return NULL;
    }
    return a;
}

/* Position i of the legacy arrays into t (tokens[i] is a string, checked by caller). */
static int completion_token(const cJSON *tokens, const cJSON *lps, const cJSON *tops,
                            const cJSON *offs, int i, struct llm_token *t) {
    t->n_bytes = -1;
    t->text_offset = -1;
    t->token = dup_string(cJSON_GetArrayItem(tokens, i));
    const cJSON *lp = cJSON_GetArrayItem(lps, i);
    if (cJSON_IsNull(lp))
        t->logprob = NAN;
    else if (cJSON_IsNumber(lp))
        t->logprob = lp->valuedouble;
    else
        return err_set("choices[0].logprobs.token_logprobs[%d]: expected a number or null, got %s",
                       i, type_name(lp));
    const cJSON *off = offs ? cJSON_GetArrayItem(offs, i) : NULL;
    if (off && !cJSON_IsNumber(off))
        return err_set("choices[0].logprobs.text_offset[%d]: expected a number, got %s", i,
                       type_name(off));
    /* (long) of a double outside long's range is undefined: bound it first */
    if (off && !(fabs(off->valuedouble) <= 1e15))
        return err_set(
            "choices[0].logprobs.text_offset[%d]: expected an offset within 1e15, got %g", i,
            off->valuedouble);
    if (off) t->text_offset = (long)off->valuedouble;
    const cJSON *top = tops ? cJSON_GetArrayItem(tops, i) : NULL;
    if (!top || cJSON_IsNull(top)) return 0;
    if (!cJSON_IsObject(top))
        return err_set("choices[0].logprobs.top_logprobs[%d]: expected an object or null, got %s",
                       i, type_name(top));
    int k = cJSON_GetArraySize(top);
    t->top = xcalloc((size_t)(k ? k : 1), sizeof *t->top);
    if (!t->top) return -1;
    const cJSON *alt;
    cJSON_ArrayForEach(alt, top) {
        if (!cJSON_IsNumber(alt))
            return err_set("choices[0].logprobs.top_logprobs[%d].%s: expected a number, got %s", i,
                           alt->string, type_name(alt));
        t->top[t->n_top].token = xstrdup(alt->string);
        t->top[t->n_top++].logprob = alt->valuedouble;
    }
    return 0;
}

static int parse_completion_logprobs(const cJSON *c0, struct llm_response *out) {
    const cJSON *lp = need(c0, "choices[0]", "logprobs", cJSON_IsObject, "an object");
    const cJSON *tokens =
        lp ? need(lp, "choices[0].logprobs", "tokens", cJSON_IsArray, "an array") : NULL;
    if (!tokens) return -1;
    int k = cJSON_GetArraySize(tokens);
    const cJSON *lps = parallel_array(lp, "token_logprobs", k, true);
    if (!lps) return -1;
    err_clear();
    const cJSON *tops = parallel_array(lp, "top_logprobs", k, false);
    if (!tops && err_msg()[0]) return -1;
    const cJSON *offs = parallel_array(lp, "text_offset", k, false);
    if (!offs && err_msg()[0]) return -1;
    out->tokens = xcalloc((size_t)(k ? k : 1), sizeof *out->tokens);
    if (!out->tokens) return -1;
    for (int i = 0; i < k; i++) {
        if (!cJSON_IsString(cJSON_GetArrayItem(tokens, i)))
            return err_set("choices[0].logprobs.tokens[%d]: expected a string, got %s", i,
                           type_name(cJSON_GetArrayItem(tokens, i)));
        out->n_tokens = i + 1;
        if (completion_token(tokens, lps, tops, offs, i, &out->tokens[i]) != 0) return -1;
    }
    return 0;
}

enum llm_status llm_parse_completion(const char *body, size_t n, bool want_logprobs,
                                     struct llm_response *out) {
    memset(out, 0, sizeof *out);
    cJSON *root;
    enum llm_status st = parse_root(body, n, &root);
    if (st != LLM_OK) return st;
    const cJSON *c0 = first_choice(root);
    const cJSON *text = c0 ? need(c0, "choices[0]", "text", cJSON_IsString, "a string") : NULL;
    int rc = text ? parse_common(root, c0, out) : -1;
    if (rc == 0) {
        out->content = dup_string(text);
        if (want_logprobs) rc = parse_completion_logprobs(c0, out);
    }
    cJSON_Delete(root);
    if (rc == 0 && out->content) return LLM_OK;
    char keep[ERR_MSG_MAX];
    snprintf(keep, sizeof keep, "%s", err_msg());
    llm_response_free(out);
    err_set("%s", keep);
    return LLM_ERR_BAD_JSON;
}

int llm_parse_models(const char *body, size_t n, char ***ids_out, int *n_out) {
    *ids_out = NULL;
    *n_out = 0;
    cJSON *root;
    if (parse_root(body, n, &root) != LLM_OK) return -1;
    const cJSON *data = need(root, "", "data", cJSON_IsArray, "an array");
    int k = data ? cJSON_GetArraySize(data) : 0;
    char **ids = data ? xcalloc((size_t)(k ? k : 1), sizeof *ids) : NULL;
    int rc = ids ? 0 : -1;
    for (int i = 0; rc == 0 && i < k; i++) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof path, "data[%d]", i);
        const cJSON *m = cJSON_GetArrayItem(data, i);
        const cJSON *id =
            cJSON_IsObject(m) ? need(m, path, "id", cJSON_IsString, "a string") : NULL;
        if (!cJSON_IsObject(m)) err_set("%s: expected an object, got %s", path, type_name(m));
        if (!id || !(ids[i] = dup_string(id))) rc = -1;
    }
    cJSON_Delete(root);
    if (rc != 0) {
        llm_free_models(ids, k);
        return -1;
    }
    *ids_out = ids;
    *n_out = k;
    return 0;
}

enum llm_status llm_check_reply(struct llm_response *r, const struct llm_effective *eff,
                                long expected_prompt_tokens) {
    if (expected_prompt_tokens > 0 && r->prompt_tokens < expected_prompt_tokens) {
        err_set("usage.prompt_tokens is %ld, expected at least %ld: the server cut the prompt "
                "(is its context smaller than the prompt?)",
                r->prompt_tokens, expected_prompt_tokens);
        return LLM_ERR_PROMPT_CUT;
    }
    if (eff->format != LLM_FORMAT_JSON_OBJECT && eff->format != LLM_FORMAT_JSON_SCHEMA)
        return LLM_OK;
    const char *end = NULL;
    size_t n = strlen(r->content);
    cJSON *j = cJSON_ParseWithLengthOpts(r->content, n, &end, 0);
    size_t at = end ? (size_t)(end - r->content) : 0;
    while (j && at < n && is_ws(r->content[at]))
        at++;
    if (j && at == n) {
        r->json = j;
        return LLM_OK;
    }
    cJSON_Delete(j);
    const char *fmt = eff->format == LLM_FORMAT_JSON_SCHEMA ? "json_schema" : "json_object";
    if (r->finish_reason && strcmp(r->finish_reason, "length") == 0) {
        err_set("finish_reason \"length\": the reply reached max_tokens (%d) and its JSON is cut "
                "off after %zu bytes",
                eff->max_tokens, n);
        return LLM_ERR_TRUNCATED;
    }
    char ex[100];
    llm_excerpt(ex, sizeof ex, r->content, n, 80);
    err_set("choices[0] content is not JSON although response_format %s was asked for (the "
            "server may ignore it): '%s'",
            fmt, ex);
    return LLM_ERR_BAD_OUTPUT;
}

struct llm_http_verdict llm_judge_http(long code) {
    struct llm_http_verdict v = {LLM_ERR_HTTP_4XX, false, false, ""};
    if (code >= 500 && code <= 599) {
        v.status = LLM_ERR_HTTP_5XX;
        v.retry = true;
    } else if (code == 408 || code == 409 || code == 425 || code == 429) {
        v.retry = true;
        if (code == 429) v.hint = "rate limited";
    } else if (code == 401) {
        v.stop_batch = true;
        v.hint = "the API key was refused (see api_key_env)";
    } else if (code == 402) {
        v.stop_batch = true;
        v.hint = "payment required: no credit left";
    } else if (code == 403) {
        v.stop_batch = true;
        v.hint = "forbidden";
    } else if (code == 404) {
        v.stop_batch = true;
        v.hint = "not found: unknown model or wrong base_url";
    } else if (code < 400 || code > 599) {
        v.status = LLM_ERR_API_ERROR;
        v.hint = "unexpected HTTP status";
    }
    return v;
}

void llm_response_free(struct llm_response *r) {
    if (!r) return;
    free(r->content);
    free(r->finish_reason);
    free(r->model);
    for (int i = 0; i < r->n_tokens; i++) {
        free(r->tokens[i].token);
        free(r->tokens[i].bytes);
        for (int j = 0; j < r->tokens[i].n_top; j++)
            free(r->tokens[i].top[j].token);
        free(r->tokens[i].top);
    }
    free(r->tokens);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

void llm_free_models(char **ids, int n) {
    for (int i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
}
