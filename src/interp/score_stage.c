/* score_stage.c: the score stage (see interp.h; the maths is in score.c).
 *
 * Every feature gets one line once its fate is known: scored, no_score (a
 * constant vector), or failed upstream (its explanation or simulation failed;
 * the original category and sentence are carried over so the report can count
 * failures by reason). Features whose inputs do not exist yet (not explained,
 * not simulated, or simulated from an explanation or examples that have since
 * changed) get no line and are counted as pending, so a later run scores them.
 *
 * The truth is the examples file's per-token activations of exactly the
 * windows the simulation lists (matched by split and source position); the
 * settings' window counts are not consulted, so scoring follows whatever the
 * simulate stage did.
 *
 * Record (one JSONL line per feature; the report reads feature, status, score,
 * reason and explanation):
 *   {"feature", "feature_index", "sae", "status": "scored"|"no_score"|"failed",
 *    "score": r|null, "r2": r²|null, "reason": category|null, "detail": text|null,
 *    "failed_stage": "explain"|"simulate"|null, "n_tokens", "n_windows",
 *    "by_split": {"top": r|null, "random": r|null, "quantile": r|null} (splits present),
 *    "windows": [{"split", "rank", "source", "n_tokens", "correlation": r|null, "r2"}],
 *    "explanation": text|null, "mode", "explainer_model", "simulator_model",
 *    "input_sha256": hash of the explanation and simulation lines (timing, retry
 *                    and cache fields aside) and the true activations}
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp/interp.h"
#include "interp/interp_internal.h"
#include "interp/score.h"
#include "io/jsonl.h"
#include "util/error.h"
#include "util/log.h"
#include "util/sha256.h"

struct scored {
    int n_windows;
    int64_t *win;    /* example windows, in the simulation's order */
    double *truth, *sim; /* [n_windows * window] */
    int *len;
};

static void scored_free(struct scored *s) {
    free(s->win);
    free(s->truth);
    free(s->sim);
    free(s->len);
    memset(s, 0, sizeof *s);
}

static int64_t find_window(const struct examples *ex, int fi, int split, int64_t source) {
    int64_t first, count;
    examples_feature_windows(ex, fi, &first, &count);
    for (int64_t w = first; w < first + count; w++)
        if (ex->win_split[w] == split && ex->win_source[w] == source) return w;
    return -1;
}

/* The simulation's windows and predictions against the examples: 0 when they
 * match, 1 when they do not (stale), -1 on error. */
static int gather(const struct examples *ex, int fi, const cJSON *sim_rec, struct scored *s) {
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(sim_rec, "windows");
    if (!cJSON_IsArray(ws)) return 1;
    int n = cJSON_GetArraySize(ws), T = ex->window;
    s->n_windows = n;
    s->win = xcalloc((size_t)n + 1, sizeof *s->win);
    s->len = xcalloc((size_t)n + 1, sizeof *s->len);
    s->truth = xcalloc((size_t)(n * T) + 1, sizeof *s->truth);
    s->sim = xcalloc((size_t)(n * T) + 1, sizeof *s->sim);
    if (!s->win || !s->len || !s->truth || !s->sim) return -1;
    int k = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, ws) {
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(w, "source");
        const cJSON *pred = cJSON_GetObjectItemCaseSensitive(w, "predicted");
        int split = interp_split_parse(record_str(w, "split"));
        if (!cJSON_IsNumber(src) || !cJSON_IsArray(pred) || cJSON_GetArraySize(pred) != T)
            return 1;
        int64_t win = find_window(ex, fi, split, (int64_t)src->valuedouble);
        if (win < 0) return 1;
        s->win[k] = win;
        s->len[k] = T;
        int i = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, pred) {
            if (!cJSON_IsNumber(v)) return 1;
            s->sim[k * T + i] = v->valuedouble;
            s->truth[k * T + i] = ex->win_acts[win * T + i];
            i++;
        }
        k++;
    }
    return 0;
}

/* ---- the key of a feature's inputs ---- */

/* Fields of explanation and simulation lines that say how a result was obtained
 * (timing, retries, cache use), not what it is: left out of the key, so that a
 * rerun served from the cache keeps its scores and two runs with the same
 * results carry the same input_sha256. */
static const char *const how_obtained[] = {"latency_ms", "attempts", "from_cache", "cache_hits"};

/* The record as printed for the key: without the how_obtained fields; NULL on
 * out of memory. */
static char *key_text(const cJSON *rec) {
    cJSON *c = cJSON_Duplicate(rec, true);
    if (!c) return NULL;
    for (size_t i = 0; i < sizeof how_obtained / sizeof *how_obtained; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(c, how_obtained[i]);
    char *txt = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return txt;
}

static void input_key(const cJSON *expl_rec, const cJSON *sim_rec, const struct scored *s,
                      int window, char hex[65]) {
    struct sha256_ctx h;
    sha256_init(&h);
    const cJSON *recs[2] = {expl_rec, sim_rec};
    for (int i = 0; i < 2; i++) {
        char *txt = recs[i] ? key_text(recs[i]) : NULL;
        const char *t = txt ? txt : "null";
        sha256_update(&h, t, strlen(t) + 1);
        free(txt);
    }
    if (s->truth) sha256_update(&h, s->truth, sizeof *s->truth * (size_t)(s->n_windows * window));
    uint8_t d[SHA256_DIGEST_BYTES];
    sha256_final(&h, d);
    sha256_to_hex(d, hex);
}

/* ---- records ---- */

struct score_run {
    const struct interp_settings *s;
    const struct examples *ex;
    const char *out_path;
    struct interp_counts *c;
};

static cJSON *record_new(const struct score_run *r, int fi, const char *status,
                         const cJSON *expl_rec, const cJSON *sim_rec, const char *key) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "feature", r->ex->features[fi]);
    cJSON_AddNumberToObject(o, "feature_index", fi);
    json_add_str(o, "sae", r->ex->sae_name);
    cJSON_AddStringToObject(o, "status", status);
    json_add_str(o, "explanation", record_str(expl_rec, "explanation"));
    json_add_str(o, "mode", record_str(sim_rec, "mode"));
    json_add_str(o, "explainer_model", record_str(expl_rec, "model"));
    json_add_str(o, "simulator_model", record_str(sim_rec, "model"));
    cJSON_AddStringToObject(o, "input_sha256", key);
    return o;
}

static int append(const struct score_run *r, cJSON *o) {
    int rc = o ? jsonl_append(r->out_path, o) : err_set("out of memory building a record");
    cJSON_Delete(o);
    return rc;
}

static int write_failed(const struct score_run *r, int fi, const cJSON *expl_rec,
                        const cJSON *sim_rec, const cJSON *failed, const char *stage,
                        const char *key) {
    cJSON *o = record_new(r, fi, "failed", expl_rec, sim_rec, key);
    const char *reason = record_str(failed, "reason");
    if (!reason) reason = "unknown";
    if (o) {
        cJSON_AddNullToObject(o, "score");
        cJSON_AddNullToObject(o, "r2");
        cJSON_AddStringToObject(o, "reason", reason);
        json_add_str(o, "detail", record_str(failed, "detail"));
        cJSON_AddStringToObject(o, "failed_stage", stage);
    }
    r->c->n_failed++;
    interp_counts_add_reason(r->c, reason);
    return append(r, o);
}

static void add_by_split(cJSON *o, const struct examples *ex, const struct scored *s) {
    cJSON *b = cJSON_AddObjectToObject(o, "by_split");
    int T = ex->window;
    double *t = xcalloc((size_t)(s->n_windows * T) + 1, sizeof *t);
    double *p = xcalloc((size_t)(s->n_windows * T) + 1, sizeof *p);
    for (int split = SPLIT_SCORE_TOP; b && t && p && split <= SPLIT_SCORE_QUANTILE; split++) {
        size_t n = 0;
        for (int k = 0; k < s->n_windows; k++) {
            if (ex->win_split[s->win[k]] != split) continue;
            memcpy(t + n, s->truth + (size_t)k * T, sizeof *t * (size_t)T);
            memcpy(p + n, s->sim + (size_t)k * T, sizeof *p * (size_t)T);
            n += (size_t)T;
        }
        if (n == 0) continue;
        double rr;
        score_pearson(t, p, n, &rr);
        json_add_num(b, interp_split_name(split), rr);
    }
    free(t);
    free(p);
}

static int write_scored(const struct score_run *r, int fi, const cJSON *expl_rec,
                        const cJSON *sim_rec, const struct scored *s, const char *key) {
    struct feature_score fs;
    if (score_feature(s->truth, s->sim, s->len, s->n_windows, &fs) != 0) return -1;
    bool ok = fs.status == CORR_OK;
    cJSON *o = record_new(r, fi, ok ? "scored" : "no_score", expl_rec, sim_rec, key);
    if (o) {
        json_add_num(o, "score", fs.r);
        json_add_num(o, "r2", fs.r2);
        if (ok) {
            cJSON_AddNullToObject(o, "reason");
            cJSON_AddNullToObject(o, "detail");
        } else {
            char detail[160];
            snprintf(detail, sizeof detail, "%s over all %zu scored tokens: the correlation is "
                     "undefined", fs.status == CORR_CONST_SIM ? "the simulation is constant"
                     : fs.status == CORR_CONST_TRUE ? "the true activations are constant"
                     : "no usable values", fs.n_tokens);
            cJSON_AddStringToObject(o, "reason", corr_status_name(fs.status));
            cJSON_AddStringToObject(o, "detail", detail);
        }
        cJSON_AddNullToObject(o, "failed_stage");
        cJSON_AddNumberToObject(o, "n_tokens", (double)fs.n_tokens);
        cJSON_AddNumberToObject(o, "n_windows", fs.n_windows);
        add_by_split(o, r->ex, s);
        cJSON *ws = cJSON_AddArrayToObject(o, "windows");
        for (int k = 0; ws && k < s->n_windows; k++) {
            cJSON *w = cJSON_CreateObject();
            int64_t win = s->win[k];
            cJSON_AddStringToObject(w, "split", interp_split_name(r->ex->win_split[win]));
            cJSON_AddNumberToObject(w, "rank", r->ex->win_rank[win]);
            cJSON_AddNumberToObject(w, "source", (double)r->ex->win_source[win]);
            cJSON_AddNumberToObject(w, "n_tokens", s->len[k]);
            json_add_num(w, "correlation", fs.win_r[k]);
            json_add_num(w, "r2", fs.win_r2[k]);
            cJSON_AddItemToArray(ws, w);
        }
    }
    if (ok) r->c->n_ok++;
    else {
        r->c->n_no_score++;
        interp_counts_add_reason(r->c, corr_status_name(fs.status));
    }
    feature_score_free(&fs);
    return append(r, o);
}

static void pending(struct interp_counts *c, const char *why) {
    c->n_pending++;
    interp_counts_add_reason(c, why);
}

/* Explanation of the simulation still the current one? */
static bool same_explanation(const cJSON *expl_rec, const cJSON *sim_rec) {
    const char *e = record_str(expl_rec, "explanation"), *h = record_str(sim_rec, "explanation_sha256");
    if (!e || !h) return false;
    char *line = xstrdup(e);
    if (!line) return false;
    for (char *p = line; *p; p++)
        if (*p == '\t' || *p == '\n' || *p == '\r') *p = ' ';
    char hex[65];
    interp_sha(line, hex);
    free(line);
    return strcmp(hex, h) == 0;
}

static int score_one(struct score_run *r, int fi, const cJSON *expl_rec, const cJSON *sim_rec,
                     const cJSON *done_rec) {
    const char *est = record_str(expl_rec, "status"), *sst = record_str(sim_rec, "status");
    struct scored s = {0};
    int rc = 0, stale = 0;
    if (sim_rec && sst && strcmp(sst, "ok") == 0) stale = gather(r->ex, fi, sim_rec, &s);
    if (stale < 0) {
        scored_free(&s);
        return -1;
    }
    char key[65];
    input_key(expl_rec, sim_rec, &s, r->ex->window, key);
    if (record_done(done_rec, "input_sha256", key, r->s->retry_failed)) {
        r->c->n_done_before++;
    } else if (!expl_rec) {
        pending(r->c, "not_explained");
    } else if (est && strcmp(est, "ok") != 0) {
        rc = write_failed(r, fi, expl_rec, NULL, expl_rec, "explain", key);
    } else if (!sim_rec) {
        pending(r->c, "not_simulated");
    } else if (!same_explanation(expl_rec, sim_rec) || stale) {
        pending(r->c, "stale_simulation");
    } else if (!sst || strcmp(sst, "ok") != 0) {
        rc = write_failed(r, fi, expl_rec, sim_rec, sim_rec, "simulate", key);
    } else {
        rc = write_scored(r, fi, expl_rec, sim_rec, &s, key);
    }
    scored_free(&s);
    return rc;
}

int interp_score(const struct interp_settings *s, const struct examples *ex,
                 const char *explanations_path, const char *simulations_path,
                 const char *out_path, struct interp_counts *c) {
    memset(c, 0, sizeof *c);
    struct records expl = {0}, sim = {0}, done = {0};
    int rc = records_load(explanations_path, ex, &expl);
    if (rc == 0) rc = records_load(simulations_path, ex, &sim);
    if (rc == 0) rc = records_load(out_path, ex, &done);
    struct score_run r = {s, ex, out_path, c};
    c->n_features = interp_n_features(s, ex);
    for (int fi = 0; rc == 0 && fi < c->n_features; fi++)
        rc = score_one(&r, fi, expl.by_index[fi], sim.by_index[fi], done.by_index[fi]);
    if (rc != 0) err_prefix("score %s", out_path);
    log_debug("score %s: %d scored, %d no score, %d failed, %d done before, %d pending", out_path,
              c->n_ok, c->n_no_score, c->n_failed, c->n_done_before, c->n_pending);
    records_free(&expl);
    records_free(&sim);
    records_free(&done);
    return rc;
}
