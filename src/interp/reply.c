/* reply.c: checking and decoding explainer and simulator replies (see reply.h). */
#include "interp/reply.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llm/parse.h"
#include "util/error.h"

static int fail(const char **category, const char *cat) {
    *category = cat;
    return -1;
}

/* ---- explanations ---- */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Strip markdown decoration and a "label:" prefix in place; returns the start. */
static char *strip_label(char *s) {
    static const char *const labels[] = {"final explanation", "final answer", "explanation",
                                         "answer", "description", "summary", "feature"};
    while (*s && (strchr("*_#>-", *s) || is_space(*s))) s++;
    for (size_t i = 0; i < sizeof labels / sizeof *labels; i++) {
        size_t n = strlen(labels[i]);
        if (strncasecmp(s, labels[i], n) != 0) continue;
        char *p = s + n;
        while (*p == '*' || *p == '_' || *p == ' ') p++;
        if (*p != ':') continue;
        p++;
        while (*p == '*' || *p == '_' || is_space(*p)) p++;
        return p;
    }
    return s;
}

static void trim_end(char *s) {
    size_t n = strlen(s);
    while (n > 0 && (is_space(s[n - 1]) || s[n - 1] == '*')) s[--n] = 0;
}

/* Matching quotes around the whole string (ASCII and typographic). */
static char *strip_quotes(char *s) {
    static const char *const open[] = {"\"", "'", "`", "\xE2\x80\x9C", "\xE2\x80\x98", "\xC2\xAB"};
    static const char *const close[] = {"\"", "'", "`", "\xE2\x80\x9D", "\xE2\x80\x99", "\xC2\xBB"};
    for (size_t i = 0; i < sizeof open / sizeof *open; i++) {
        size_t lo = strlen(open[i]), lc = strlen(close[i]), n = strlen(s);
        /* the first closer after the opener must be the last bytes */
        if (n >= lo + lc && strncmp(s, open[i], lo) == 0 && strstr(s + lo, close[i]) == s + n - lc) {
            s[n - lc] = 0;
            return s + lo;
        }
    }
    return s;
}

int reply_explanation(const char *content, int max_bytes, char **out, const char **category) {
    *out = NULL;
    char *copy = xstrdup(content ? content : "");
    if (!copy) return fail(category, "local");
    char *best = NULL;
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        char *s = strip_label(line);
        for (int pass = 0; pass < 2; pass++) { /* "x". and "x." alike */
            trim_end(s);
            size_t n = strlen(s);
            if (n > 0 && s[n - 1] == '.' && !(n > 1 && s[n - 2] == '.')) s[--n] = 0;
            s = strip_quotes(s);
            while (is_space(*s)) s++;
        }
        trim_end(s);
        if (*s) {
            best = s;
            break;
        }
    }
    if (!best) {
        free(copy);
        err_set("the explainer's reply holds no explanation (empty after removing labels and "
                "quotes)");
        return fail(category, "empty_explanation");
    }
    for (char *p = best; *p; p++)
        if (*p == '\t' || *p == '\r') *p = ' ';
    if ((int)strlen(best) > max_bytes) {
        char ex[100];
        llm_excerpt(ex, sizeof ex, best, strlen(best), 60);
        err_set("the explanation is %zu bytes, more than the %d allowed: '%s'", strlen(best),
                max_bytes, ex);
        free(copy);
        return fail(category, "explanation_too_long");
    }
    *out = xstrdup(best);
    free(copy);
    return *out ? 0 : fail(category, "local");
}

/* ---- json mode ---- */

static const char *kind_of(const cJSON *j) {
    if (!j) return "nothing";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "a boolean";
    return "an invalid value";
}

static int check_values(const cJSON *arr, int n, double *out, const char **category) {
    int got = cJSON_GetArraySize(arr);
    if (got != n) {
        err_set("expected %d activations (one per token), got %d", n, got);
        return fail(category, "wrong_count");
    }
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
            char *txt = cJSON_PrintUnformatted(v);
            err_set("activations[%d]: expected an integer 0..10, got %s %s", i, kind_of(v),
                    txt ? txt : "");
            free(txt);
            return fail(category, "not_integer");
        }
        double x = v->valuedouble;
        if (x != floor(x)) {
            err_set("activations[%d]: expected an integer 0..10, got %g", i, x);
            return fail(category, "not_integer");
        }
        if (x < 0 || x > 10) {
            err_set("activations[%d]: %g is outside 0..10", i, x);
            return fail(category, "out_of_range");
        }
        out[i++] = x;
    }
    return 0;
}

/* content parsed as one JSON value with nothing but whitespace after it
 * (cJSON_Parse alone would ignore text after the value), or NULL; *trailing
 * says that a value parsed but text followed it. */
static cJSON *parse_whole(const char *content, int *trailing) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(content, &end, 0);
    while (j && end && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    *trailing = j && end && *end;
    if (*trailing) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* An object must hold "activations" and nothing else (the schema says so):
 * another key, or the key twice, is a reply that did not follow it. */
static int only_activations(const cJSON *root, const char **category) {
    int seen = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, root) {
        if (k->string && strcmp(k->string, "activations") == 0 && !seen++) continue;
        err_set("expected {\"activations\": [...]} and nothing else, got also %s\"%s\"",
                seen > 1 ? "a second " : "the key ", k->string ? k->string : "?");
        return fail(category, "bad_shape");
    }
    return 0;
}

int reply_sim_json(const struct llm_response *resp, int n, double *out, const char **category) {
    const cJSON *root = resp->json;
    cJSON *own = NULL;
    const char *content = resp->content ? resp->content : "";
    int trailing = 0;
    if (!root) {
        own = parse_whole(content, &trailing);
        root = own;
    }
    if (!root) {
        char ex[100];
        llm_excerpt(ex, sizeof ex, content, strlen(content), 80);
        err_set("the simulator's reply is not %sJSON: '%s'", trailing ? "only " : "", ex);
        return fail(category, "not_json");
    }
    const cJSON *arr = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "activations");
    int rc;
    if (!cJSON_IsArray(arr)) {
        err_set("expected {\"activations\": [...]}, got %s%s", kind_of(root),
                cJSON_IsObject(root) ? " without an \"activations\" array" : "");
        rc = fail(category, "bad_shape");
    } else if (cJSON_IsObject(root) && only_activations(root, category) != 0) {
        rc = -1;
    } else {
        rc = check_values(arr, n, out, category);
    }
    cJSON_Delete(own);
    return rc;
}

/* ---- logprobs ---- */

static const char *token_text(const struct llm_token *t, size_t *len) {
    if (t->bytes && t->n_bytes >= 0) {
        *len = (size_t)t->n_bytes;
        return (const char *)t->bytes;
    }
    *len = t->token ? strlen(t->token) : 0;
    return t->token ? t->token : "";
}

/* Value of an alternative's text after the shared prefix: 0..10, or -1; *open
 * is set when the text ends right after a lone "1". */
static int alt_value(const char *rest, int *open) {
    *open = 0;
    while (*rest == ' ' || *rest == '\t') rest++;
    int d = 0;
    while (d < 3 && isdigit((unsigned char)rest[d])) d++;
    if (d == 0 || d > 2) return -1;
    if (d == 2 && rest[0] == '0') return -1;
    int v = d == 1 ? rest[0] - '0' : (rest[0] - '0') * 10 + (rest[1] - '0');
    if (v > 10) return -1;
    if (v == 1 && rest[1] == 0) *open = 1;
    return v;
}

/* Probability that the position `next` starts with the digit 0. */
static double zero_next(const struct llm_token *next) {
    double q = 0;
    for (int j = 0; j < next->n_top; j++) {
        const char *a = next->top[j].token;
        if (a && a[0] == '0' && isfinite(next->top[j].logprob)) q += exp(next->top[j].logprob);
    }
    return q > 1 ? 1 : q;
}

double reply_digit_mass(const struct llm_token *tok, size_t prefix_len,
                        const struct llm_token *next, double mass[11]) {
    for (int v = 0; v <= 10; v++) mass[v] = 0;
    size_t len;
    const char *text = token_text(tok, &len);
    if (prefix_len > len) return 0;
    double open_mass = 0;
    for (int j = 0; j < tok->n_top; j++) {
        const char *a = tok->top[j].token;
        double lp = tok->top[j].logprob;
        if (!a || !isfinite(lp) || strlen(a) < prefix_len || memcmp(a, text, prefix_len) != 0)
            continue;
        int open;
        int v = alt_value(a + prefix_len, &open);
        if (v < 0) continue;
        if (open) open_mass += exp(lp);
        else mass[v] += exp(lp);
    }
    /* Was "1" itself sampled here? Then `next` shows whether a "0" followed. */
    const char *rest = text + prefix_len;
    size_t rlen = len - prefix_len;
    while (rlen > 0 && (*rest == ' ' || *rest == '\t')) rest++, rlen--;
    double q = (next && rlen == 1 && rest[0] == '1') ? zero_next(next) : 0;
    mass[10] += open_mass * q;
    mass[1] += open_mass * (1 - q);
    double total = 0;
    for (int v = 0; v <= 10; v++) total += mass[v];
    return total;
}

static int expectation(const struct llm_token *tok, size_t prefix_len,
                       const struct llm_token *next, int i, double *out,
                       const char **category) {
    double mass[11];
    double total = reply_digit_mass(tok, prefix_len, next, mass);
    if (!(total > 0)) {
        err_set("value %d: no digit 0..10 among the %d alternatives of token '%s'", i,
                tok->n_top, tok->token ? tok->token : "");
        return fail(category, "no_digits");
    }
    double ev = 0;
    for (int v = 0; v <= 10; v++) ev += v * mass[v];
    *out = ev / total;
    return 0;
}

/* Token spans laid end to end must spell the content. */
static int spans(const struct llm_response *r, size_t *start, const char **category) {
    size_t at = 0, clen = strlen(r->content);
    for (int k = 0; k < r->n_tokens; k++) {
        size_t len;
        const char *t = token_text(&r->tokens[k], &len);
        if (at + len > clen || memcmp(r->content + at, t, len) != 0) {
            err_set("logprobs token %d does not continue the reply text at byte %zu", k, at);
            return fail(category, "misaligned");
        }
        start[k] = at;
        at += len;
    }
    if (at != clen) {
        err_set("the logprobs tokens spell %zu bytes of a %zu-byte reply", at, clen);
        return fail(category, "misaligned");
    }
    return 0;
}

/* Byte offsets of the n numbers of the first array in content. */
static int number_offsets(const char *c, int n, size_t *off, const char **category) {
    const char *p = strchr(c, '[');
    int k = 0;
    for (p = p ? p + 1 : c + strlen(c); *p && *p != ']'; p++) {
        if (!isdigit((unsigned char)*p) || isdigit((unsigned char)p[-1])) continue;
        if (k == n) break;
        off[k++] = (size_t)(p - c);
    }
    if (k != n || *p != ']') {
        err_set("found %d numbers in the reply's array, expected %d (one per token)", k, n);
        return fail(category, "misaligned");
    }
    return 0;
}

int reply_sim_chat_logprobs(const struct llm_response *resp, int n, double *out,
                            const char **category) {
    if (reply_sim_json(resp, n, out, category) != 0) return -1;
    if (!resp->tokens || resp->n_tokens == 0) {
        err_set("the reply carries no logprobs (the server ignored \"logprobs\": true)");
        return fail(category, "no_logprobs");
    }
    size_t *start = xcalloc((size_t)resp->n_tokens, sizeof *start);
    size_t *off = xcalloc((size_t)(n > 0 ? n : 1), sizeof *off);
    int rc = start && off ? 0 : fail(category, "local");
    if (rc == 0) rc = spans(resp, start, category);
    if (rc == 0) rc = number_offsets(resp->content, n, off, category);
    int k = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        while (k + 1 < resp->n_tokens && start[k + 1] <= off[i]) k++;
        size_t prefix = off[i] - start[k];
        for (size_t b = 0; b < prefix; b++)
            if (isdigit((unsigned char)resp->content[start[k] + b])) {
                err_set("value %d shares token %d with the digits before it", i, k);
                rc = fail(category, "misaligned");
                break;
            }
        const struct llm_token *next = k + 1 < resp->n_tokens ? &resp->tokens[k + 1] : NULL;
        if (rc == 0) rc = expectation(&resp->tokens[k], prefix, next, i, &out[i], category);
    }
    free(start);
    free(off);
    return rc;
}

/* Is rest (len bytes) the placeholder or a non-empty start of it? */
static int placeholder_text(const char *rest, size_t len) {
    size_t pl = strlen(REPLY_PLACEHOLDER);
    if (len == 0) return 0;
    if (len >= pl) return memcmp(rest, REPLY_PLACEHOLDER, pl) == 0;
    return memcmp(rest, REPLY_PLACEHOLDER, len) == 0;
}

int reply_sim_echo_logprobs(const struct llm_response *resp, int n, double *out,
                            const char **category) {
    if (!resp->tokens || resp->n_tokens == 0) {
        err_set("the reply carries no prompt logprobs (does the server support echo?)");
        return fail(category, "no_logprobs");
    }
    int found = 0, prev_tab = 0, rc = 0;
    for (int k = 0; k < resp->n_tokens && rc == 0; k++) {
        size_t len;
        const char *t = token_text(&resp->tokens[k], &len);
        const char *tab = len ? memrchr(t, '\t', len) : NULL;
        size_t prefix = (size_t)-1;
        if (tab && placeholder_text(tab + 1, len - (size_t)(tab + 1 - t)))
            prefix = (size_t)(tab + 1 - t);
        else if (prev_tab && placeholder_text(t, len))
            prefix = 0;
        prev_tab = len > 0 && t[len - 1] == '\t';
        if (prefix == (size_t)-1) continue;
        if (found < n) rc = expectation(&resp->tokens[k], prefix, NULL, found, &out[found], category);
        found++;
    }
    if (rc == 0 && found != n) {
        err_set("found %d \"<TAB>%s\" placeholders among the echoed prompt tokens, expected %d",
                found, REPLY_PLACEHOLDER, n);
        return fail(category, "misaligned");
    }
    return rc;
}
