/* interp_internal.h: helpers the three stage files share (not a public API).
 *
 * Which windows a stage uses, what earlier runs left in a JSONL file, how a
 * client for a role is made, and small cJSON conveniences for the records.
 */
#ifndef AUTOINTERP_INTERP_INTERNAL_H
#define AUTOINTERP_INTERP_INTERNAL_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "interp/interp.h"

/* Features the stages work on: the first max_features of the sample (all when 0). */
int interp_n_features(const struct interp_settings *s, const struct examples *ex);

/* Up to limit windows of feature index fi in split (lowest ranks first, as
 * the file stores them) into out; returns how many. */
int interp_windows(const struct examples *ex, int fi, enum window_split split, int limit,
                   int64_t *out);
/* The scored windows: top, then random, then quantile (out needs room for
 * n_score_top + n_score_random + n_score_quantile). */
int interp_scored_windows(const struct interp_settings *s, const struct examples *ex, int fi,
                          int64_t *out);
/* "explain", "top", "random", "quantile". */
const char *interp_split_name(int split);
int interp_split_parse(const char *name); /* -1 when unknown */

/* The last line per feature index of a stage's JSONL (lines of features not
 * in ex are ignored). A missing file is no lines. */
struct records {
    cJSON **by_index; /* [n_features], NULL where no line */
    int n;
};
int records_load(const char *path, const struct examples *ex, struct records *r);
void records_free(struct records *r);

/* Is rec (may be NULL) a finished result for this key? */
bool record_done(const cJSON *rec, const char *key_field, const char *key, bool retry_failed);
/* rec[key] as a string, or NULL. */
const char *record_str(const cJSON *rec, const char *key);

/* A client for one role (builtin provider or HTTP), sharing s->budget. */
struct llm_client *interp_client_new(const struct interp_settings *s,
                                     const struct interp_endpoint *e);

/* cJSON conveniences: a string or null, a number or null (NAN). */
void json_add_str(cJSON *o, const char *key, const char *s);
void json_add_num(cJSON *o, const char *key, double v);
/* {"dir": ..., "sha256": ...} */
void json_add_prompts(cJSON *o, const char *dir, const char *sha256);
void json_add_usage(cJSON *o, long prompt_tokens, long completion_tokens);

/* sum += s */
void interp_add_stats(struct llm_stats *sum, const struct llm_stats *s);
/* n features left pending because the stage stopped before reaching them. */
void interp_count_unreached(struct interp_counts *c, int n);

/* SHA-256 hex of a string. */
void interp_sha(const char *s, char hex[65]);

#endif
