/* builtin.c: the offline explainer and simulator (method in builtin.h).
 *
 * Both sides work on token keys: the display string with its leading "␣"
 * markers removed and ASCII letters lower-cased. A feature usually fires on a
 * word whatever its case or the space before it, and keys make the explainer's
 * names and the simulator's matching agree by construction. Vocabularies of a
 * feature's windows are small (hundreds of distinct keys), so the weight
 * tables are arrays searched linearly.
 */
#include "interp/builtin.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "interp/render.h"
#include "util/error.h"

#define MAX_NAMED 5
#define MAX_CONTEXT 3
#define NAMED_MIN_FRAC 0.15   /* of the heaviest key */
#define CONTEXT_MIN_SHARE 0.25 /* of all activation mass */
#define FALLBACK_VALUE 6
#define KEY_MAX 256

/* ---- keys ---- */

static void token_key(const char *display, char out[KEY_MAX]) {
    const char *s = display;
    while (strncmp(s, RENDER_SPACE, 3) == 0) s += 3;
    if (!*s) s = display; /* a token of spaces only keeps its markers */
    size_t n = 0;
    for (; *s && n < KEY_MAX - 1; s++) out[n++] = (char)tolower((unsigned char)*s);
    out[n] = 0;
}

struct weight {
    char key[KEY_MAX];
    double w;
};

struct table {
    struct weight *v;
    int n, cap;
};

static int table_add(struct table *t, const char *key, double w) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->v[i].key, key) == 0) {
            t->v[i].w += w;
            return 0;
        }
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        struct weight *v = xrealloc(t->v, sizeof *v * (size_t)cap);
        if (!v) return -1;
        t->v = v;
        t->cap = cap;
    }
    snprintf(t->v[t->n].key, KEY_MAX, "%s", key);
    t->v[t->n++].w = w;
    return 0;
}

static int by_weight_desc(const void *a, const void *b) {
    const struct weight *x = a, *y = b;
    if (x->w != y->w) return x->w > y->w ? -1 : 1;
    return strcmp(x->key, y->key); /* deterministic ties */
}

/* ---- explainer ---- */

static int append(char **s, size_t *n, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int append(char **s, size_t *n, size_t *cap, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(*s + *n, *cap - *n, fmt, ap);
        va_end(ap);
        if (k < 0) return err_set("builtin: formatting failed");
        if ((size_t)k < *cap - *n) {
            *n += (size_t)k;
            return 0;
        }
        size_t cap2 = (*cap + (size_t)k) * 2;
        char *g = xrealloc(*s, cap2);
        if (!g) return -1;
        *s = g;
        *cap = cap2;
    }
}

/* "key" with \" and \\ escaped */
static int append_quoted(char **s, size_t *n, size_t *cap, const char *key) {
    if (append(s, n, cap, "\"") != 0) return -1;
    for (const char *k = key; *k; k++) {
        int rc = (*k == '"' || *k == '\\') ? append(s, n, cap, "\\%c", *k)
                                           : append(s, n, cap, "%c", *k);
        if (rc != 0) return -1;
    }
    return append(s, n, cap, "\"");
}

static int collect_weights(const struct builtin_window *w, int n_windows, struct table *named,
                           struct table *context, double *total) {
    float max = 0;
    for (int k = 0; k < n_windows; k++)
        for (int i = 0; i < w[k].n; i++)
            if (w[k].acts[i] > max) max = w[k].acts[i];
    if (!(max > 0)) return err_set("builtin explainer: no token is active in the explain windows");
    *total = 0;
    char key[KEY_MAX];
    for (int k = 0; k < n_windows; k++)
        for (int i = 0; i < w[k].n; i++) {
            if (!(w[k].acts[i] > 0)) continue;
            double a = w[k].acts[i] / max;
            *total += a;
            token_key(w[k].tokens[i], key);
            if (table_add(named, key, a) != 0) return -1;
            if (i == 0) continue;
            token_key(w[k].tokens[i - 1], key);
            if (table_add(context, key, a) != 0) return -1;
        }
    qsort(named->v, (size_t)named->n, sizeof *named->v, by_weight_desc);
    qsort(context->v, (size_t)context->n, sizeof *context->v, by_weight_desc);
    return 0;
}

static int write_explanation(const struct table *named, const struct table *context, double total,
                             char **out) {
    size_t n = 0, cap = 256;
    char *s = xmalloc(cap);
    if (!s) return -1;
    s[0] = 0;
    int k = 0;
    while (k < named->n && k < MAX_NAMED && named->v[k].w >= NAMED_MIN_FRAC * named->v[0].w) k++;
    int rc = append(&s, &n, &cap, "the token%s ", k > 1 ? "s" : "");
    for (int i = 0; rc == 0 && i < k; i++) {
        rc = append_quoted(&s, &n, &cap, named->v[i].key);
        if (rc == 0)
            rc = append(&s, &n, &cap, " (%d%%)%s", (int)lround(100 * named->v[i].w / total),
                        i + 1 < k ? ", " : "");
    }
    int c = 0;
    while (c < context->n && c < MAX_CONTEXT && context->v[c].w >= CONTEXT_MIN_SHARE * total) c++;
    if (rc == 0 && c > 0) rc = append(&s, &n, &cap, ", mostly right after ");
    for (int i = 0; rc == 0 && i < c; i++) {
        rc = append_quoted(&s, &n, &cap, context->v[i].key);
        if (rc == 0 && i + 1 < c) rc = append(&s, &n, &cap, ", ");
    }
    if (rc != 0) {
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

int builtin_explain(const struct builtin_window *w, int n_windows, char **explanation) {
    struct table named = {0}, context = {0};
    double total = 0;
    int rc = collect_weights(w, n_windows, &named, &context, &total);
    if (rc == 0) rc = write_explanation(&named, &context, total, explanation);
    free(named.v);
    free(context.v);
    return rc;
}

/* ---- simulator: reading an explanation ---- */

struct name {
    char key[KEY_MAX];
    double w;
    int context;
    int fallback; /* a bare word, matched by prefix */
};

struct names {
    struct name *v;
    int n, cap;
};

static int names_add(struct names *ns, const char *text, size_t len, double w, int context,
                     int fallback) {
    if (len == 0 || len >= KEY_MAX) return 0;
    if (ns->n == ns->cap) {
        int cap = ns->cap ? 2 * ns->cap : 16;
        struct name *v = xrealloc(ns->v, sizeof *v * (size_t)cap);
        if (!v) return -1;
        ns->v = v;
        ns->cap = cap;
    }
    char raw[KEY_MAX];
    memcpy(raw, text, len);
    raw[len] = 0;
    struct name *x = &ns->v[ns->n++];
    const char *r = raw;
    while (*r == ' ') r++; /* a plain space counts as the "␣" marker */
    token_key(*r ? r : raw, x->key);
    x->w = w;
    x->context = context;
    x->fallback = fallback;
    return 0;
}

/* Quote openers and their closers. */
static const char *const quote_open[] = {"\"", "\xE2\x80\x9C", "\xC2\xAB"};
static const char *const quote_close[] = {"\"", "\xE2\x80\x9D", "\xC2\xBB"};

static int quote_at(const char *p) {
    for (int q = 0; q < 3; q++)
        if (strncmp(p, quote_open[q], strlen(quote_open[q])) == 0) return q;
    return -1;
}

/* The quoted string at p (opener q) unescaped into buf; returns the end. */
static const char *read_quoted(const char *p, int q, char *buf, size_t *len) {
    p += strlen(quote_open[q]);
    size_t n = 0, cl = strlen(quote_close[q]);
    while (*p && strncmp(p, quote_close[q], cl) != 0) {
        if (q == 0 && *p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
        if (n < KEY_MAX - 1) buf[n++] = *p;
        p++;
    }
    buf[n] = 0;
    *len = n;
    return *p ? p + cl : p;
}

/* "(NN%)" after a quoted name: its weight, or -1. */
static double read_weight(const char **pp) {
    const char *p = *pp;
    while (*p == ' ') p++;
    if (*p != '(') return -1;
    char *end;
    double v = strtod(p + 1, &end);
    if (end == p + 1 || end[0] != '%' || end[1] != ')' || !(v >= 0)) return -1;
    *pp = end + 2;
    return v;
}

static int word_char(char c) { return isalnum((unsigned char)c) || (unsigned char)c >= 0x80; }

static int context_keyword(const char *p, const char *start) {
    static const char *const kw[] = {"after", "following", "preceded by"};
    if (p > start && word_char(p[-1])) return 0;
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(kw[i]);
        if (strncasecmp(p, kw[i], n) == 0 && !word_char(p[n])) return (int)n;
    }
    return 0;
}

static int stopword(const char *w) {
    static const char *const stop[] = {
        "the", "and", "for", "with", "that", "this", "these", "those", "from", "into", "onto",
        "are", "was", "were", "been", "being", "has", "have", "had", "its", "token", "tokens",
        "word", "words", "feature", "features", "fires", "fire", "firing", "activates",
        "activation", "activations", "active", "when", "where", "which", "such", "like", "text",
        "mostly", "often", "usually", "especially", "related", "any", "all", "other", "some",
        "various", "used", "use", "mentions", "mention", "references", "reference", "phrase",
        "phrases", "appear", "appears", "appearing", "contexts", "context", "about", "more",
        "most", "also", "very", "their", "there", "they", "them", "then", "than", "within",
        "between", "part", "parts", "letter", "letters", "character", "characters", "string",
        "strings", "sequence", "sequences", "right", "before", "after", "following", "preceded",
        "concept", "concepts", "terms", "term", "including", "include", "includes", "especially",
        "strongly", "strongest", "highest", "high", "low", "various", "specific", "typically"};
    for (size_t i = 0; i < sizeof stop / sizeof *stop; i++)
        if (strcasecmp(w, stop[i]) == 0) return 1;
    return 0;
}

static int parse_explanation(const char *e, struct names *quoted, struct names *words) {
    int context = 0;
    for (const char *p = e; *p;) {
        int q = quote_at(p);
        if (q >= 0) {
            char buf[KEY_MAX];
            size_t len;
            p = read_quoted(p, q, buf, &len);
            double w = read_weight(&p);
            if (names_add(quoted, buf, len, w, context, 0) != 0) return -1;
            continue;
        }
        int kw = context_keyword(p, e);
        if (kw) {
            context = 1;
            p += kw;
            continue;
        }
        if (word_char(*p) && (p == e || !word_char(p[-1]))) {
            size_t n = 0;
            while (word_char(p[n])) n++;
            char w[KEY_MAX];
            size_t m = n < KEY_MAX - 1 ? n : KEY_MAX - 1;
            memcpy(w, p, m);
            w[m] = 0;
            if (m >= 3 && !stopword(w) && names_add(words, p, m, -1, context, 1) != 0) return -1;
            p += n;
            continue;
        }
        p++;
    }
    return 0;
}

/* Weights relative to the largest named one; names without a weight get 1. */
static void normalise(struct names *ns) {
    double max = 0;
    int any = 0;
    for (int i = 0; i < ns->n; i++)
        if (!ns->v[i].context && ns->v[i].w >= 0) {
            any = 1;
            if (ns->v[i].w > max) max = ns->v[i].w;
        }
    for (int i = 0; i < ns->n; i++) {
        struct name *x = &ns->v[i];
        if (x->context) continue;
        x->w = (!any || x->w < 0 || max <= 0) ? 1.0 : x->w / max;
    }
}

static int fallback_match(const char *key, const char *word) {
    size_t k = strlen(key), w = strlen(word);
    if (k < 3) return 0;
    return strncmp(word, key, k < w ? k : w) == 0;
}

/* Value of a token key under the names: 2..10 named, 1 context, 0 else. */
static int value_of(const char *key, const struct names *ns, int *is_context) {
    int v = 0;
    *is_context = 0;
    for (int i = 0; i < ns->n; i++) {
        const struct name *x = &ns->v[i];
        int hit = x->fallback ? fallback_match(key, x->key) : strcmp(key, x->key) == 0;
        if (!hit) continue;
        if (x->context) *is_context = 1;
        else {
            int val = x->fallback ? FALLBACK_VALUE : (int)lround(2 + 8 * x->w);
            if (val > v) v = val;
        }
    }
    return v;
}

int builtin_simulate(const char *explanation, const char *const *tokens, int n, int *out) {
    struct names quoted = {0}, words = {0};
    int rc = parse_explanation(explanation, &quoted, &words);
    int any_named = 0;
    for (int i = 0; i < quoted.n; i++) any_named |= !quoted.v[i].context;
    const struct names *ns = any_named ? &quoted : &words;
    if (rc == 0) {
        normalise(&quoted);
        int prev_context = 0;
        for (int i = 0; i < n; i++) {
            char key[KEY_MAX];
            int is_context;
            token_key(tokens[i], key);
            int v = value_of(key, ns, &is_context);
            if (!any_named && !is_context) value_of(key, &quoted, &is_context);
            if (v > 0 && prev_context && v < 10) v++;
            out[i] = v > 0 ? v : is_context ? 1 : 0;
            prev_context = is_context;
        }
    }
    free(quoted.v);
    free(words.v);
    return rc;
}

/* ---- the provider ---- */

static char *activations_json(const int *v, int n) {
    size_t cap = 32 + (size_t)n * 4, len = 0;
    char *s = xmalloc(cap);
    if (!s) return NULL;
    len += (size_t)snprintf(s, cap, "{\"activations\":[");
    for (int i = 0; i < n; i++) len += (size_t)snprintf(s + len, cap - len, "%s%d", i ? "," : "", v[i]);
    snprintf(s + len, cap - len, "]}");
    return s;
}

static enum llm_status answer(void *state, const struct llm_endpoint_config *cfg,
                              const struct llm_request *req, struct llm_response *out,
                              char **reason) {
    (void)state;
    const struct builtin_request *br = req->user;
    memset(out, 0, sizeof *out);
    char *content = NULL;
    int rc = -1;
    if (!br) {
        err_set("builtin provider: request carries no builtin input");
    } else if (br->task == BUILTIN_EXPLAIN && br->explain) {
        rc = builtin_explain(br->explain->windows, br->explain->n_windows, &content);
    } else if (br->task == BUILTIN_SIMULATE && br->simulate) {
        const struct builtin_simulate_input *in = br->simulate;
        int *v = xcalloc((size_t)(in->n > 0 ? in->n : 1), sizeof *v);
        rc = v ? builtin_simulate(in->explanation, in->tokens, in->n, v) : -1;
        if (rc == 0 && !(content = activations_json(v, in->n))) rc = -1;
        free(v);
    } else {
        err_set("builtin provider: unknown task %d", (int)br->task);
    }
    if (rc != 0) {
        *reason = xstrdup(err_msg());
        return LLM_ERR_LOCAL;
    }
    out->content = content;
    out->finish_reason = xstrdup("stop");
    out->model = xstrdup(cfg->model ? cfg->model : "builtin");
    return LLM_OK;
}

struct llm_provider builtin_provider(void) {
    return (struct llm_provider){.name = "builtin", .answer = answer, .destroy = NULL, .state = NULL};
}
