/* config.h: experiment configs (JSON), validated strictly against one schema.
 *
 * The schema (config.c) is the single place where every key, its type, range,
 * default and one-line documentation live. Loading a config:
 *   1. parses it with cJSON (syntax errors name the file, line and column),
 *   2. rejects unknown keys, wrong types and out-of-range values, naming the key
 *      by its dotted path ("sae.ratio: must be an integer from 1 to 1024, got -3"),
 *   3. fills in every default, so the resolved tree is complete,
 *   4. runs the checks that relate keys to each other.
 * Stages read values with typed accessors by dotted path. Asking for a key the
 * schema does not have is a programming error and aborts, so a typo cannot
 * silently read a default. `autointerp config check FILE` prints the resolved
 * tree; `autointerp config schema` prints the reference the README carries.
 */
#ifndef AUTOINTERP_CONFIG_H
#define AUTOINTERP_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include <cjson/cJSON.h>

enum cfg_type {
    CFG_STR,       /* string */
    CFG_PATH,      /* string naming a file or directory ("" = unset) */
    CFG_INT,       /* integer in [lo, hi] */
    CFG_NUM,       /* number in [lo, hi] */
    CFG_BOOL,
    CFG_ENUM,      /* one of the '|'-separated choices */
    CFG_INT_LIST,  /* array of integers, each in [lo, hi] */
    CFG_NUM_LIST,  /* array of numbers, each in [lo, hi] */
    CFG_STR_LIST,  /* array of strings */
    CFG_ENUM_LIST, /* array of distinct choices */
    CFG_STR_MAP,   /* object of string values */
    CFG_PAIR_LIST, /* array of [string, string] */
};

struct cfg_entry {
    const char *key;      /* dotted path: "sae.e2e_ds.ds_coeff" */
    enum cfg_type type;
    const char *def;      /* default as JSON text */
    double lo, hi;        /* range for numbers and list elements */
    const char *choices;  /* for enums: "local|e2e|e2e_ds" */
    const char *doc;
};

struct config {
    char *source; /* file name, or the name given to config_parse */
    cJSON *root;  /* the resolved tree: every schema key present */
};

int config_load(struct config *cfg, const char *path);
int config_parse(struct config *cfg, const char *json_text, const char *source_name);
void config_free(struct config *cfg);

/* Typed accessors (abort on a key not in the schema or of another type). */
const char *cfg_str(const struct config *cfg, const char *key);
long long cfg_int(const struct config *cfg, const char *key);
double cfg_num(const struct config *cfg, const char *key);
bool cfg_bool(const struct config *cfg, const char *key);
/* Lists and maps: the cJSON node (an array or object, possibly empty). */
const cJSON *cfg_node(const struct config *cfg, const char *key);
int cfg_list_len(const struct config *cfg, const char *key);

/* The resolved config as pretty JSON (malloc'd), and its canonical hash: SHA-256
 * hex of the compact JSON with keys sorted at every level. */
char *config_to_json(const struct config *cfg);
int config_hash(const struct config *cfg, char hex[65]);

/* The schema, for documentation. */
const struct cfg_entry *config_schema(int *n);
const char *cfg_type_name(enum cfg_type t);

/* JSON helpers shared with other modules: a deep copy with keys sorted at every
 * level (for canonical hashing), and a parse whose errors carry line and column. */
cJSON *json_sorted_copy(const cJSON *node);
cJSON *json_parse_named(const char *text, const char *source_name);

#endif
