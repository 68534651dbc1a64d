/* inputs.c: readers of the sweep table, score JSONL and examples files (see
 * inputs.h). */
#include "report/inputs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "extract/examples.h"
#include "io/atomic.h"
#include "io/h5.h"
#include "io/jsonl.h"
#include "util/error.h"

static const char *const type_names[REP_N_TYPES] = {"local", "e2e", "e2e_ds"};

const char *rep_type_name(int t) {
    return t >= 0 && t < REP_N_TYPES ? type_names[t] : "?";
}

/* ---------------------------------------------------------------------------
 * sweep.json
 */
static double num_or_nan(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int read_row(const cJSON *row, int i, struct rep_sae *s) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(row, "name");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(row, "type");
    const cJSON *layer = cJSON_GetObjectItemCaseSensitive(row, "layer");
    if (!cJSON_IsString(name) || !name->valuestring[0])
        return err_set("saes[%d].name: expected a non-empty string", i);
    if (!cJSON_IsString(type))
        return err_set("saes[%d] (%s).type: expected a string", i, name->valuestring);
    s->type = -1;
    for (int t = 0; t < REP_N_TYPES; t++)
        if (strcmp(type->valuestring, type_names[t]) == 0) s->type = t;
    if (s->type < 0)
        return err_set("saes[%d] (%s).type: expected local, e2e or e2e_ds, got '%s'", i,
                       name->valuestring, type->valuestring);
    if (!cJSON_IsNumber(layer) || layer->valuedouble < 0 ||
        layer->valuedouble != floor(layer->valuedouble))
        return err_set("saes[%d] (%s).layer: expected a non-negative integer", i,
                       name->valuestring);
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(row, "file");
    s->name = xstrdup(name->valuestring);
    s->type_name = xstrdup(type->valuestring);
    s->file = cJSON_IsString(file) ? xstrdup(file->valuestring) : NULL;
    if (!s->name || !s->type_name) return -1;
    s->layer = (int)layer->valuedouble;
    s->lambda = num_or_nan(row, "lambda");
    double seed = num_or_nan(row, "seed");
    s->seed = isfinite(seed) ? (long long)seed : 0;
    s->l0 = num_or_nan(row, "l0");
    s->alive = num_or_nan(row, "alive");
    s->alive_fraction = num_or_nan(row, "alive_fraction");
    s->d_sae = num_or_nan(row, "d_sae");
    s->ce_orig = num_or_nan(row, "ce_orig");
    s->ce_sae = num_or_nan(row, "ce_sae");
    s->ce_increase = num_or_nan(row, "ce_increase");
    s->kl = num_or_nan(row, "kl");
    s->explained_variance = num_or_nan(row, "explained_variance");
    s->mse = num_or_nan(row, "mse");
    return 0;
}

int rep_sweep_read(const char *path, struct rep_sweep *out) {
    memset(out, 0, sizeof *out);
    size_t n;
    char *text = read_file_all(path, 1u << 30, &n);
    if (!text) return err_prefix("%s", path);
    cJSON *root = json_parse_named(text, path);
    free(text);
    if (!root) return -1;
    int rc = 0;
    const cJSON *saes = cJSON_GetObjectItemCaseSensitive(root, "saes");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "experiment");
    if (!cJSON_IsArray(saes)) rc = err_set("saes: expected an array");
    if (rc == 0 && cJSON_IsString(exp)) out->experiment = xstrdup(exp->valuestring);
    int count = rc == 0 ? cJSON_GetArraySize(saes) : 0;
    if (count > 0) {
        out->saes = xcalloc((size_t)count, sizeof *out->saes);
        if (!out->saes) rc = -1;
    }
    const cJSON *row;
    int i = 0;
    if (rc == 0) cJSON_ArrayForEach(row, saes) {
            out->n = i + 1;
            if (read_row(row, i, &out->saes[i]) != 0) {
                rc = -1;
                break;
            }
            for (int j = 0; j < i; j++)
                if (strcmp(out->saes[j].name, out->saes[i].name) == 0) {
                    rc = err_set("saes[%d]: name '%s' appears twice", i, out->saes[i].name);
                    break;
                }
            if (rc) break;
            i++;
        }
    cJSON_Delete(root);
    if (rc != 0) {
        rep_sweep_free(out);
        return err_prefix("%s", path);
    }
    return 0;
}

void rep_sweep_free(struct rep_sweep *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->saes[i].name);
        free(s->saes[i].type_name);
        free(s->saes[i].file);
    }
    free(s->saes);
    free(s->experiment);
    memset(s, 0, sizeof *s);
}

int rep_sweep_find(const struct rep_sweep *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->saes[i].name, name) == 0) return i;
    return -1;
}

/* ---------------------------------------------------------------------------
 * Score JSONL
 */
static const char *const status_names[] = {"scored", "no_score", "failed"};

const char *feat_status_name(enum feat_status s) {
    return (unsigned)s < 3 ? status_names[s] : "?";
}

struct read_ctx {
    struct score_set *set;
    int cap;
};

static void feat_free(struct feat_result *f) {
    free(f->reason);
    free(f->explanation);
}

static int read_line(const cJSON *o, int line_no, void *vctx) {
    (void)line_no; /* jsonl_read names the line in any error */
    struct read_ctx *c = vctx;
    const cJSON *feat = cJSON_GetObjectItemCaseSensitive(o, "feature");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(o, "status");
    if (!cJSON_IsNumber(feat) || feat->valuedouble < 0 || feat->valuedouble > INT32_MAX ||
        feat->valuedouble != floor(feat->valuedouble))
        return err_set("feature: expected a non-negative integer");
    if (!cJSON_IsString(status))
        return err_set("status: expected \"scored\", \"no_score\" or \"failed\"");
    struct feat_result f = {.feature = (int32_t)feat->valuedouble, .score = NAN};
    int st = -1;
    for (int k = 0; k < 3; k++)
        if (strcmp(status->valuestring, status_names[k]) == 0) st = k;
    if (st < 0)
        return err_set("status: expected \"scored\", \"no_score\" or \"failed\", got \"%s\"",
                       status->valuestring);
    f.status = (enum feat_status)st;
    const cJSON *score = cJSON_GetObjectItemCaseSensitive(o, "score");
    if (f.status == FEAT_SCORED) {
        if (!cJSON_IsNumber(score) || !isfinite(score->valuedouble))
            return err_set("feature %d: score: a scored feature needs a finite number", f.feature);
        f.score = score->valuedouble;
    } else {
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(o, "reason");
        f.reason = xstrdup(cJSON_IsString(reason) && reason->valuestring[0] ? reason->valuestring
                                                                            : "unknown");
        if (!f.reason) return -1;
    }
    const cJSON *expl = cJSON_GetObjectItemCaseSensitive(o, "explanation");
    if (cJSON_IsString(expl)) f.explanation = xstrdup(expl->valuestring);
    struct score_set *s = c->set;
    if (s->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 256;
        struct feat_result *nf = xrealloc(s->f, sizeof *nf * (size_t)cap);
        if (!nf) {
            feat_free(&f);
            return -1;
        }
        s->f = nf;
        c->cap = cap;
    }
    s->f[s->n++] = f;
    return 0;
}

/* Entries are appended in line order, so index order is line order: sort the
 * indices by (feature, index) and keep the last index of every feature. */
static int cmp_feature_then_index(const void *a, const void *b, void *ctx) {
    const struct feat_result *f = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    if (f[i].feature != f[j].feature) return f[i].feature < f[j].feature ? -1 : 1;
    return (i > j) - (i < j);
}

static int keep_last(struct score_set *s) {
    int n = s->n;
    if (n == 0) return 0;
    int *idx = xmalloc(sizeof *idx * (size_t)n);
    struct feat_result *out = idx ? xmalloc(sizeof *out * (size_t)n) : NULL;
    if (!out) {
        free(idx);
        return -1;
    }
    for (int i = 0; i < n; i++)
        idx[i] = i;
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_feature_then_index, s->f);
    int m = 0;
    for (int k = 0; k < n; k++) {
        struct feat_result *f = &s->f[idx[k]];
        if (k + 1 < n && s->f[idx[k + 1]].feature == f->feature)
            feat_free(f); /* superseded */
        else
            out[m++] = *f;
    }
    free(idx);
    free(s->f);
    s->f = out;
    s->n = m;
    return 0;
}

int score_set_read(const char *path, struct score_set *out) {
    memset(out, 0, sizeof *out);
    struct read_ctx c = {.set = out};
    int rc = jsonl_read(path, 0, read_line, &c, &out->torn); /* names path and line */
    if (rc == 0 && keep_last(out) != 0) rc = err_prefix("%s", path);
    if (rc != 0) score_set_free(out);
    return rc == 0 ? 0 : -1;
}

void score_set_free(struct score_set *s) {
    for (int i = 0; i < s->n; i++)
        feat_free(&s->f[i]);
    free(s->f);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------------------
 * Examples files
 */
int examples_count_features(const char *path) {
    if (!examples_is_complete(path, NULL)) return err_set("%s: not a complete examples file", path);
    hid_t f = h5_open_ro(path);
    if (f < 0) return -1;
    int nd;
    hsize_t dims[2];
    int rc = h5_shape(f, "features", 2, &nd, dims);
    h5_close(f);
    if (rc != 0) return err_prefix("%s", path);
    if (nd != 1) return err_set("%s: /features: expected 1-D", path);
    return (int)dims[0];
}
