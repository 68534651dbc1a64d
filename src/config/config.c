/* config.c: loading, strict validation and typed access (see config.h).
 *
 * Validation walks the user's tree against the schema: an object key is accepted
 * when it is a schema key or a prefix of one ("sae" for "sae.ratio"); anything
 * else is an unknown key, reported with its path and, when one is close, the key
 * the user probably meant. Values are checked by type and range, then the
 * defaults of every key the user left out are written into the same tree, so the
 * resolved config is self-describing and hashable.
 */
#include "config/config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "util/error.h"
#include "util/sha256.h"

#define CONFIG_MAX_BYTES (16u << 20)

static const struct cfg_entry *find_entry(const char *key) {
    int n;
    const struct cfg_entry *s = config_schema(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].key, key) == 0) return &s[i];
    return NULL;
}

/* True when some schema key starts with "prefix." */
static bool is_object_prefix(const char *prefix) {
    int n;
    const struct cfg_entry *s = config_schema(&n);
    size_t len = strlen(prefix);
    for (int i = 0; i < n; i++)
        if (strncmp(s[i].key, prefix, len) == 0 && s[i].key[len] == '.') return true;
    return false;
}

const char *cfg_type_name(enum cfg_type t) {
    switch (t) {
    case CFG_STR: return "string";
    case CFG_PATH: return "path";
    case CFG_INT: return "integer";
    case CFG_NUM: return "number";
    case CFG_BOOL: return "boolean";
    case CFG_ENUM: return "choice";
    case CFG_INT_LIST: return "integer list";
    case CFG_NUM_LIST: return "number list";
    case CFG_STR_LIST: return "string list";
    case CFG_ENUM_LIST: return "choice list";
    case CFG_STR_MAP: return "string map";
    case CFG_PAIR_LIST: return "list of [string, string]";
    }
    return "?";
}

static const char *json_kind(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

/* Levenshtein distance, for "did you mean" on unknown keys. */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 99;
    int d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

static const char *closest_key(const char *path) {
    int n;
    const struct cfg_entry *s = config_schema(&n);
    const char *best = NULL;
    int best_d = 4;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(path, s[i].key);
        if (d < best_d) {
            best_d = d;
            best = s[i].key;
        }
    }
    return best;
}

static bool choice_ok(const char *choices, const char *v) {
    size_t len = strlen(v);
    for (const char *c = choices; c && *c;) {
        const char *bar = strchr(c, '|');
        size_t n = bar ? (size_t)(bar - c) : strlen(c);
        if (n == len && strncmp(c, v, n) == 0) return true;
        c = bar ? bar + 1 : NULL;
    }
    return false;
}

static bool is_integer(double x) { return isfinite(x) && floor(x) == x; }

static int check_number(const struct cfg_entry *e, const char *path, const cJSON *v, bool integer) {
    if (!cJSON_IsNumber(v))
        return err_set("%s: must be %s, got %s", path, integer ? "an integer" : "a number",
                       json_kind(v));
    double x = v->valuedouble;
    if (integer && !is_integer(x))
        return err_set("%s: must be an integer, got %g", path, x);
    if (!isfinite(x) || x < e->lo || x > e->hi) {
        if (integer)
            return err_set("%s: must be an integer from %.0f to %.0f, got %.17g", path, e->lo,
                           e->hi, x);
        return err_set("%s: must be a number from %g to %g, got %g", path, e->lo, e->hi, x);
    }
    return 0;
}

static int check_value(const struct cfg_entry *e, const char *path, const cJSON *v) {
    char elem[512];
    int i = 0;
    const cJSON *it;
    switch (e->type) {
    case CFG_STR:
    case CFG_PATH:
        if (!cJSON_IsString(v)) return err_set("%s: must be a string, got %s", path, json_kind(v));
        return 0;
    case CFG_INT: return check_number(e, path, v, true);
    case CFG_NUM: return check_number(e, path, v, false);
    case CFG_BOOL:
        if (!cJSON_IsBool(v)) return err_set("%s: must be true or false, got %s", path, json_kind(v));
        return 0;
    case CFG_ENUM:
        if (!cJSON_IsString(v) || !choice_ok(e->choices, v->valuestring))
            return err_set("%s: must be one of %s, got %s%s%s", path, e->choices,
                           cJSON_IsString(v) ? "'" : "", cJSON_IsString(v) ? v->valuestring : json_kind(v),
                           cJSON_IsString(v) ? "'" : "");
        return 0;
    case CFG_INT_LIST:
    case CFG_NUM_LIST:
    case CFG_STR_LIST:
    case CFG_ENUM_LIST:
    case CFG_PAIR_LIST:
        if (!cJSON_IsArray(v)) return err_set("%s: must be an array, got %s", path, json_kind(v));
        cJSON_ArrayForEach(it, v) {
            snprintf(elem, sizeof elem, "%s[%d]", path, i);
            if (e->type == CFG_INT_LIST && check_number(e, elem, it, true) != 0) return -1;
            if (e->type == CFG_NUM_LIST && check_number(e, elem, it, false) != 0) return -1;
            if (e->type == CFG_STR_LIST && !cJSON_IsString(it))
                return err_set("%s: must be a string, got %s", elem, json_kind(it));
            if (e->type == CFG_ENUM_LIST) {
                if (!cJSON_IsString(it) || !choice_ok(e->choices, it->valuestring))
                    return err_set("%s: must be one of %s", elem, e->choices);
                for (const cJSON *prev = v->child; prev != it; prev = prev->next)
                    if (strcmp(prev->valuestring, it->valuestring) == 0)
                        return err_set("%s: '%s' is listed twice", elem, it->valuestring);
            }
            if (e->type == CFG_PAIR_LIST &&
                (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 ||
                 !cJSON_IsString(cJSON_GetArrayItem(it, 0)) ||
                 !cJSON_IsString(cJSON_GetArrayItem(it, 1))))
                return err_set("%s: must be a pair [\"sae_a\", \"sae_b\"]", elem);
            i++;
        }
        return 0;
    case CFG_STR_MAP:
        if (!cJSON_IsObject(v)) return err_set("%s: must be an object, got %s", path, json_kind(v));
        cJSON_ArrayForEach(it, v) {
            if (!cJSON_IsString(it))
                return err_set("%s.%s: must be a string, got %s", path, it->string, json_kind(it));
        }
        return 0;
    }
    return err_set("%s: unsupported schema type", path);
}

/* Walk the user's tree: every key must be in the schema (or lead to keys that are). */
static int validate_node(const cJSON *obj, const char *prefix) {
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        char path[512];
        if (prefix[0])
            snprintf(path, sizeof path, "%s.%s", prefix, it->string);
        else
            snprintf(path, sizeof path, "%s", it->string);
        for (const cJSON *prev = obj->child; prev != it; prev = prev->next)
            if (strcmp(prev->string, it->string) == 0)
                return err_set("%s: key appears twice", path);
        const struct cfg_entry *e = find_entry(path);
        if (e) {
            if (check_value(e, path, it) != 0) return -1;
            continue;
        }
        if (is_object_prefix(path)) {
            if (!cJSON_IsObject(it))
                return err_set("%s: must be an object, got %s", path, json_kind(it));
            if (validate_node(it, path) != 0) return -1;
            continue;
        }
        const char *near = closest_key(path);
        if (near) return err_set("%s: unknown key (did you mean '%s'?)", path, near);
        return err_set("%s: unknown key", path);
    }
    return 0;
}

/* Find or create the object at the parent path of key; returns the parent and the
 * last path component. */
static cJSON *parent_of(cJSON *root, const char *key, const char **leaf) {
    cJSON *node = root;
    const char *start = key;
    for (const char *dot; (dot = strchr(start, '.')); start = dot + 1) {
        char part[128];
        size_t n = (size_t)(dot - start);
        if (n >= sizeof part) return NULL;
        memcpy(part, start, n);
        part[n] = 0;
        cJSON *child = cJSON_GetObjectItemCaseSensitive(node, part);
        if (!child) {
            child = cJSON_CreateObject();
            cJSON_AddItemToObject(node, part, child);
        }
        node = child;
    }
    *leaf = start;
    return node;
}

static const cJSON *find_path(const cJSON *root, const char *key) {
    const cJSON *node = root;
    const char *start = key;
    for (const char *dot; node && (dot = strchr(start, '.')); start = dot + 1) {
        char part[128];
        size_t n = (size_t)(dot - start);
        if (n >= sizeof part) return NULL;
        memcpy(part, start, n);
        part[n] = 0;
        node = cJSON_GetObjectItemCaseSensitive(node, part);
    }
    return node ? cJSON_GetObjectItemCaseSensitive(node, start) : NULL;
}

/* The resolved tree, in schema order: the user's value where given, else the default. */
static cJSON *resolve(const cJSON *user) {
    int n;
    const struct cfg_entry *s = config_schema(&n);
    cJSON *out = cJSON_CreateObject();
    for (int i = 0; out && i < n; i++) {
        const char *leaf = NULL;
        cJSON *parent = parent_of(out, s[i].key, &leaf);
        const cJSON *given = find_path(user, s[i].key);
        cJSON *v = given ? cJSON_Duplicate(given, 1) : cJSON_Parse(s[i].def);
        if (!parent || !v) {
            cJSON_Delete(v);
            cJSON_Delete(out);
            err_set("internal error resolving %s", s[i].key);
            return NULL;
        }
        cJSON_AddItemToObject(parent, leaf, v);
    }
    return out;
}

static bool name_ok(const char *s) {
    if (!*s || *s == '.') return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* Checks that relate keys to each other. */
static int check_relations(const struct config *cfg) {
    const char *name = cfg_str(cfg, "experiment");
    if (!name_ok(name))
        return err_set("experiment: must be a non-empty name of letters, digits, '.', '_' or '-' "
                       "(not starting with '.'), got '%s'",
                       name);
    if (!cfg_str(cfg, "model.path")[0]) {
        long long c = cfg_int(cfg, "model.train.n_embd"), h = cfg_int(cfg, "model.train.n_head");
        if (c % h != 0)
            return err_set("model.train.n_head: %lld does not divide model.train.n_embd %lld", h, c);
    }
    if (!cfg_str(cfg, "data.train_tokens")[0] && cfg_list_len(cfg, "data.train_text") == 0)
        return err_set("data: give data.train_text (text files) or data.train_tokens (a token "
                       "dataset)");
    if (cfg_str(cfg, "data.train_tokens")[0] && !cfg_str(cfg, "data.eval_tokens")[0] &&
        cfg_list_len(cfg, "data.eval_text") == 0)
        return err_set("data: with data.train_tokens, give data.eval_tokens or data.eval_text "
                       "(held-out documents are split off only when tokenizing text)");
    if ((cfg_list_len(cfg, "data.train_text") > 0 || cfg_list_len(cfg, "data.eval_text") > 0) &&
        !cfg_str(cfg, "data.tokenizer")[0])
        return err_set("data.tokenizer: required to tokenize data.train_text / data.eval_text");
    if (cfg_list_len(cfg, "sae.layers") == 0) return err_set("sae.layers: list at least one layer");
    if (cfg_list_len(cfg, "sae.types") == 0) return err_set("sae.types: list at least one type");
    const cJSON *t;
    cJSON_ArrayForEach(t, cfg_node(cfg, "sae.types")) {
        char key[64];
        snprintf(key, sizeof key, "sae.%s.lambdas", t->valuestring);
        if (cfg_list_len(cfg, key) == 0)
            return err_set("%s: empty, but sae.types lists '%s'", key, t->valuestring);
    }
    if (cfg_int(cfg, "extract.offset") >= cfg_int(cfg, "extract.window"))
        return err_set("extract.offset: %lld must be less than extract.window %lld",
                       cfg_int(cfg, "extract.offset"), cfg_int(cfg, "extract.window"));
    if (cfg_int(cfg, "interp.n_explain") + cfg_int(cfg, "interp.n_score_top") >
        cfg_int(cfg, "extract.top_k"))
        return err_set("interp.n_explain + interp.n_score_top (%lld) exceeds extract.top_k (%lld): "
                       "explain and held-out windows must not overlap",
                       cfg_int(cfg, "interp.n_explain") + cfg_int(cfg, "interp.n_score_top"),
                       cfg_int(cfg, "extract.top_k"));
    if (cfg_int(cfg, "interp.n_score_random") > cfg_int(cfg, "extract.n_random"))
        return err_set("interp.n_score_random: %lld exceeds extract.n_random %lld",
                       cfg_int(cfg, "interp.n_score_random"), cfg_int(cfg, "extract.n_random"));
    if (cfg_int(cfg, "interp.n_score_quantile") > cfg_int(cfg, "extract.n_quantile"))
        return err_set("interp.n_score_quantile: %lld exceeds extract.n_quantile %lld",
                       cfg_int(cfg, "interp.n_score_quantile"), cfg_int(cfg, "extract.n_quantile"));
    if (cfg_int(cfg, "interp.n_score_top") + cfg_int(cfg, "interp.n_score_random") +
            cfg_int(cfg, "interp.n_score_quantile") == 0)
        return err_set("interp: no windows to score (n_score_top, n_score_random and "
                       "n_score_quantile are all 0)");
    const char *roles[] = {"explainer", "simulator"};
    for (int i = 0; i < 2; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s.provider", roles[i]);
        if (strcmp(cfg_str(cfg, key), "openai") != 0) continue;
        snprintf(key, sizeof key, "%s.base_url", roles[i]);
        const char *url = cfg_str(cfg, key);
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
            return err_set("%s: must start with http:// or https://, got '%s'", key, url);
    }
    bool sim_builtin = strcmp(cfg_str(cfg, "simulator.provider"), "builtin") == 0;
    bool mode_builtin = strcmp(cfg_str(cfg, "simulator.mode"), "builtin") == 0;
    if (sim_builtin != mode_builtin)
        return err_set("simulator.mode: '%s' does not fit simulator.provider '%s' (builtin goes "
                       "with builtin; json or logprobs with openai)",
                       cfg_str(cfg, "simulator.mode"), cfg_str(cfg, "simulator.provider"));
    return 0;
}

cJSON *json_parse_named(const char *text, const char *source_name) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (root) return root;
    const char *at = cJSON_GetErrorPtr();
    if (!at) at = end;
    int line = 1, col = 1;
    for (const char *c = text; at && c < at && *c; c++) {
        if (*c == '\n') {
            line++;
            col = 1;
        } else
            col++;
    }
    char near[24] = "";
    if (at && *at) {
        size_t k = 0;
        for (; k < 16 && at[k] && at[k] != '\n'; k++) near[k] = at[k];
        near[k] = 0;
    }
    err_set("%s: invalid JSON at line %d, column %d%s%s%s", source_name, line, col,
            near[0] ? " near '" : "", near, near[0] ? "'" : "");
    return NULL;
}

int config_parse(struct config *cfg, const char *json_text, const char *source_name) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = json_parse_named(json_text, source_name);
    if (!root) return -1;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set("%s: a config must be a JSON object", source_name);
    }
    cJSON *resolved = validate_node(root, "") == 0 ? resolve(root) : NULL;
    cJSON_Delete(root);
    if (!resolved) return err_prefix("%s", source_name);
    cfg->root = resolved;
    cfg->source = xstrdup(source_name);
    if (check_relations(cfg) != 0) {
        err_prefix("%s", source_name);
        config_free(cfg);
        return -1;
    }
    return 0;
}

int config_load(struct config *cfg, const char *path) {
    memset(cfg, 0, sizeof *cfg);
    char *text = read_file_all(path, CONFIG_MAX_BYTES, NULL);
    if (!text) return -1;
    int rc = config_parse(cfg, text, path);
    free(text);
    return rc;
}

void config_free(struct config *cfg) {
    cJSON_Delete(cfg->root);
    free(cfg->source);
    memset(cfg, 0, sizeof *cfg);
}

static const cJSON *lookup(const struct config *cfg, const char *key, enum cfg_type want1,
                           enum cfg_type want2) {
    const struct cfg_entry *e = find_entry(key);
    if (!e || (e->type != want1 && e->type != want2)) {
        fprintf(stderr, "autointerp: internal error: config key '%s' is %s in the schema\n", key,
                e ? "of another type" : "not");
        abort();
    }
    const cJSON *node = find_path(cfg->root, key);
    if (!node) {
        fprintf(stderr, "autointerp: internal error: config key '%s' missing after resolution\n",
                key);
        abort();
    }
    return node;
}

const char *cfg_str(const struct config *cfg, const char *key) {
    const struct cfg_entry *e = find_entry(key);
    enum cfg_type alt = e && e->type == CFG_ENUM ? CFG_ENUM : CFG_PATH;
    return lookup(cfg, key, CFG_STR, alt)->valuestring;
}

long long cfg_int(const struct config *cfg, const char *key) {
    return (long long)lookup(cfg, key, CFG_INT, CFG_INT)->valuedouble;
}

double cfg_num(const struct config *cfg, const char *key) {
    return lookup(cfg, key, CFG_NUM, CFG_INT)->valuedouble;
}

bool cfg_bool(const struct config *cfg, const char *key) {
    return cJSON_IsTrue(lookup(cfg, key, CFG_BOOL, CFG_BOOL));
}

const cJSON *cfg_node(const struct config *cfg, const char *key) {
    const struct cfg_entry *e = find_entry(key);
    enum cfg_type t = e ? e->type : CFG_STR;
    if (t == CFG_STR || t == CFG_PATH || t == CFG_INT || t == CFG_NUM || t == CFG_BOOL ||
        t == CFG_ENUM)
        t = CFG_STR_LIST; /* force the type error in lookup */
    return lookup(cfg, key, t, t);
}

int cfg_list_len(const struct config *cfg, const char *key) {
    return cJSON_GetArraySize(cfg_node(cfg, key));
}

char *config_to_json(const struct config *cfg) {
    char *s = cJSON_Print(cfg->root);
    if (!s) err_set("out of memory printing the config");
    return s;
}

static int compare_keys(const void *a, const void *b) {
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

cJSON *json_sorted_copy(const cJSON *node) {
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) return cJSON_Duplicate(node, 1);
    int n = cJSON_GetArraySize(node);
    const cJSON **items = xmalloc(sizeof(*items) * (size_t)(n ? n : 1));
    if (!items) return NULL;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, node) items[i++] = it;
    if (cJSON_IsObject(node)) qsort(items, (size_t)n, sizeof *items, compare_keys);
    cJSON *out = cJSON_IsObject(node) ? cJSON_CreateObject() : cJSON_CreateArray();
    for (i = 0; out && i < n; i++) {
        cJSON *c = json_sorted_copy(items[i]);
        if (!c) {
            cJSON_Delete(out);
            out = NULL;
            break;
        }
        if (cJSON_IsObject(node))
            cJSON_AddItemToObject(out, items[i]->string, c);
        else
            cJSON_AddItemToArray(out, c);
    }
    free(items);
    return out;
}

int config_hash(const struct config *cfg, char hex[65]) {
    cJSON *sorted = json_sorted_copy(cfg->root);
    char *text = sorted ? cJSON_PrintUnformatted(sorted) : NULL;
    cJSON_Delete(sorted);
    if (!text) return err_set("out of memory hashing the config");
    sha256_hex(text, strlen(text), hex);
    free(text);
    return 0;
}
