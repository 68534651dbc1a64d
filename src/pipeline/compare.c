/* compare.c: the nightly diff of two runs (see compare.h). */
#include "pipeline/compare.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "io/atomic.h"
#include "util/error.h"

static cJSON *load_json(const char *dir, const char *rel) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    char *text = read_file_all(p, 256u << 20, NULL);
    if (!text) return NULL;
    cJSON *j = json_parse_named(text, p);
    free(text);
    return j;
}

static double num(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const cJSON *find_sae(const cJSON *summary, const char *name) {
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(summary, "saes")) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(s, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) return s;
    }
    return NULL;
}

/* The BCa interval of an SAE's mean score, if any. */
static bool bca(const cJSON *sae, double *lo, double *hi) {
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(sae, "scores");
    const cJSON *ci = cJSON_GetObjectItemCaseSensitive(sc, "ci");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(ci, "bca");
    if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 2) return false;
    *lo = cJSON_GetArrayItem(b, 0)->valuedouble;
    *hi = cJSON_GetArrayItem(b, 1)->valuedouble;
    return isfinite(*lo) && isfinite(*hi);
}

static double failure_rate(const cJSON *sae) {
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(sae, "scores");
    double sampled = num(sc, "n_sampled"), failed = num(sc, "n_failed");
    return sampled > 0 ? failed / sampled : NAN;
}

static double run_cost(const cJSON *manifest) {
    return num(cJSON_GetObjectItemCaseSensitive(manifest, "llm"), "cost_usd");
}

static void fmt_num(char *buf, size_t n, double x, const char *fmt) {
    if (isfinite(x))
        snprintf(buf, n, fmt, x);
    else
        snprintf(buf, n, "–");
}

int compare_runs(const char *prev_dir, const char *cur_dir, double max_failure_rate, FILE *out,
                 struct compare_result *res) {
    memset(res, 0, sizeof *res);
    cJSON *cur_m = load_json(cur_dir, "manifest.json");
    if (!cur_m) return -1;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(cur_m, "status");
    fprintf(out, "# Nightly comparison\n\ncurrent: %s\nprevious: %s\n\n", cur_dir,
            prev_dir ? prev_dir : "(none: first run)");
    if (!cJSON_IsString(st) || strcmp(st->valuestring, "ok") != 0) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(cur_m, "error");
        fprintf(out, "FLAG: the current run did not finish (status %s%s%s)\n\n",
                cJSON_IsString(st) ? st->valuestring : "unknown", cJSON_IsString(e) ? ": " : "",
                cJSON_IsString(e) ? e->valuestring : "");
        res->n_flags++;
        cJSON_Delete(cur_m);
        return 0;
    }
    cJSON *cur = load_json(cur_dir, "report/summary.json");
    if (!cur) {
        cJSON_Delete(cur_m);
        return -1;
    }
    cJSON *prev = prev_dir ? load_json(prev_dir, "report/summary.json") : NULL;
    cJSON *prev_m = prev_dir ? load_json(prev_dir, "manifest.json") : NULL;
    if (prev_dir && (!prev || !prev_m)) {
        cJSON_Delete(prev);
        cJSON_Delete(prev_m);
        cJSON_Delete(cur);
        cJSON_Delete(cur_m);
        return -1;
    }
    fprintf(out, "| SAE | mean then | 95%% CI then (BCa) | mean now | 95%% CI now (BCa) | failed then | failed now | flag |\n");
    fprintf(out, "|---|---:|---|---:|---|---:|---:|---|\n");
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(cur, "saes")) {
        const char *name = cJSON_GetObjectItemCaseSensitive(s, "name")->valuestring;
        const cJSON *p = prev ? find_sae(prev, name) : NULL;
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(s, "scores");
        double m_now = num(sc, "mean"), m_then = p ? num(cJSON_GetObjectItemCaseSensitive(p, "scores"), "mean") : NAN;
        double lo_now = NAN, hi_now = NAN, lo_then = NAN, hi_then = NAN;
        bool ci_now = bca(s, &lo_now, &hi_now), ci_then = p && bca(p, &lo_then, &hi_then);
        double f_now = failure_rate(s), f_then = p ? failure_rate(p) : NAN;
        char flag[128] = "";
        if (isfinite(f_now) && f_now > max_failure_rate)
            snprintf(flag, sizeof flag, "failure rate %.0f%% > %.0f%%", 100 * f_now, 100 * max_failure_rate);
        else if (ci_now && ci_then && isfinite(m_now) && isfinite(m_then) &&
                 (m_now < lo_then || m_now > hi_then || m_then < lo_now || m_then > hi_now))
            snprintf(flag, sizeof flag, "score moved beyond its CI");
        if (flag[0]) res->n_flags++;
        if (p) res->n_saes_compared++;
        char a[32], b[32], c[32], d[32], e[32], f[32];
        fmt_num(a, sizeof a, m_then, "%.3f");
        fmt_num(c, sizeof c, m_now, "%.3f");
        fmt_num(e, sizeof e, 100 * f_then, "%.0f%%");
        fmt_num(f, sizeof f, 100 * f_now, "%.0f%%");
        if (ci_then) snprintf(b, sizeof b, "[%.3f, %.3f]", lo_then, hi_then); else snprintf(b, sizeof b, "–");
        if (ci_now) snprintf(d, sizeof d, "[%.3f, %.3f]", lo_now, hi_now); else snprintf(d, sizeof d, "–");
        fprintf(out, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name, a, b, c, d, e, f,
                flag[0] ? flag : "");
    }
    if (prev) {
        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(prev, "saes")) {
            const char *name = cJSON_GetObjectItemCaseSensitive(s, "name")->valuestring;
            if (!find_sae(cur, name)) {
                fprintf(out, "| %s | | | | | | | missing now |\n", name);
                res->n_flags++;
            }
        }
    }
    char c1[32], c2[32];
    fmt_num(c1, sizeof c1, prev_m ? run_cost(prev_m) : NAN, "$%.4f");
    fmt_num(c2, sizeof c2, run_cost(cur_m), "$%.4f");
    fprintf(out, "\nLLM cost: then %s, now %s\n", c1, c2);
    fprintf(out, "\n%s: %d flag%s\n", res->n_flags ? "REGRESSED" : "OK", res->n_flags,
            res->n_flags == 1 ? "" : "s");
    cJSON_Delete(prev);
    cJSON_Delete(prev_m);
    cJSON_Delete(cur);
    cJSON_Delete(cur_m);
    return 0;
}
