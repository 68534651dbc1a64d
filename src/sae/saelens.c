/* saelens.c: SAELens folder import/export (see saelens.h for the mapping).
 *
 * Everything the import cannot represent exactly (other architectures or
 * activations, input normalisation, a fine-tuning scaling factor) is refused
 * with the cfg.json key that says so, rather than approximated.
 */
#include "sae/saelens.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "io/atomic.h"
#include "io/safetensors.h"
#include "util/error.h"
#include "util/log.h"

void saelens_info_free(struct saelens_info *i) {
    free(i->model_name);
    free(i->hook_name);
    memset(i, 0, sizeof *i);
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---------------------------------------------------------------------------
 * Export.
 */
static cJSON *export_cfg(const struct sae *s, const struct saelens_export_opts *o) {
    char hook[64];
    int hook_layer = o->layer;
    if (o->hook_name && sscanf(o->hook_name, "blocks.%d.", &hook_layer) == 1)
        snprintf(hook, sizeof hook, "%s", o->hook_name);
    else
        snprintf(hook, sizeof hook, "blocks.%d.hook_resid_pre", o->layer);
    cJSON *c = cJSON_CreateObject();
    if (!c) return NULL;
    cJSON_AddStringToObject(c, "architecture", "standard");
    cJSON_AddNumberToObject(c, "d_in", s->d_in);
    cJSON_AddNumberToObject(c, "d_sae", s->d_sae);
    cJSON_AddStringToObject(c, "activation_fn_str", "relu");
    cJSON_AddBoolToObject(c, "apply_b_dec_to_input", false);
    cJSON_AddBoolToObject(c, "finetuning_scaling_factor", false);
    cJSON_AddNumberToObject(c, "context_size", o->context_size);
    cJSON_AddStringToObject(c, "model_name", o->model_name ? o->model_name : "");
    cJSON_AddStringToObject(c, "hook_name", hook);
    cJSON_AddNumberToObject(c, "hook_layer", hook_layer);
    cJSON_AddNullToObject(c, "hook_head_index");
    cJSON_AddBoolToObject(c, "prepend_bos", o->prepend_bos);
    cJSON_AddStringToObject(c, "dataset_path", "");
    cJSON_AddStringToObject(c, "normalize_activations", "none");
    cJSON_AddStringToObject(c, "dtype", "float32");
    cJSON_AddStringToObject(c, "device", "cpu");
    cJSON_AddStringToObject(c, "sae_lens_training_version", "autointerp");
    return c;
}

int saelens_export(const struct sae *s, const char *dir, const struct saelens_export_opts *o) {
    int din = s->d_in, dsae = s->d_sae;
    size_t ed = (size_t)din * dsae;
    if (mkdir_p(dir) < 0) return err_prefix("%s", dir);
    float *we = xmalloc(ed * sizeof *we), *D = xmalloc(ed * sizeof *D);
    char *wpath = join(dir, "sae_weights.safetensors"), *cpath = join(dir, "cfg.json");
    cJSON *cfg = export_cfg(s, o);
    char *text = cfg ? cJSON_Print(cfg) : NULL;
    int rc = (!we || !D || !wpath || !cpath || !text) ? -1 : 0;
    if (rc == 0) {
        // W_enc [d_in,d_sae] = ours (d_sae,d_in) transposed; W_dec [d_sae,d_in] = D as stored
        for (int j = 0; j < dsae; j++)
            for (int i = 0; i < din; i++) we[(size_t)i * dsae + j] = s->p.W_enc[(size_t)j * din + i];
        sae_normalised_decoder(s, D);
        struct st_write_tensor t[4] = {
            {"W_enc", 2, {din, dsae}, we},
            {"b_enc", 1, {dsae}, s->p.b_enc},
            {"W_dec", 2, {dsae, din}, D},
            {"b_dec", 1, {din}, s->p.b_dec},
        };
        rc = st_write_f32(wpath, t, 4, NULL, NULL, 0);
    }
    if (rc == 0) rc = atomic_write_file(cpath, text, strlen(text));
    free(we);
    free(D);
    free(wpath);
    free(cpath);
    free(text);
    cJSON_Delete(cfg);
    return rc < 0 ? err_prefix("SAELens export to %s", dir) : 0;
}

/* ---------------------------------------------------------------------------
 * Import.
 */
static const char *str_or(const cJSON *c, const char *key, const char *def) {
    const cJSON *v = cJSON_GetObjectItem(c, key);
    return cJSON_IsString(v) ? v->valuestring : def;
}

static bool bool_or(const cJSON *c, const char *key, bool def) {
    const cJSON *v = cJSON_GetObjectItem(c, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static int check_supported(const cJSON *c) {
    const char *arch = str_or(c, "architecture", "standard");
    const char *act = str_or(c, "activation_fn_str", "relu");
    const char *norm = str_or(c, "normalize_activations", "none");
    if (strcmp(arch, "standard") != 0)
        return err_set("architecture: '%s' is not supported (only \"standard\")", arch);
    if (strcmp(act, "relu") != 0)
        return err_set("activation_fn_str: '%s' is not supported (only \"relu\")", act);
    if (strcmp(norm, "none") != 0)
        return err_set("normalize_activations: '%s' is not supported (only \"none\")", norm);
    if (bool_or(c, "finetuning_scaling_factor", false))
        return err_set("finetuning_scaling_factor: true is not supported");
    return 0;
}

// "blocks.L.hook_resid_pre" -> L, "blocks.L.hook_resid_post" -> L+1
static int parse_hook(const char *hook, int *layer) {
    int L, n = 0;
    char kind[32];
    if (sscanf(hook, "blocks.%d.hook_resid_%31[a-z]%n", &L, kind, &n) == 2 && hook[n] == 0 &&
        L >= 0) {
        if (strcmp(kind, "pre") == 0) return *layer = L, 0;
        if (strcmp(kind, "post") == 0) return *layer = L + 1, 0;
    }
    return err_set("hook_name: '%s' is not a residual-stream hook "
                   "(blocks.L.hook_resid_pre or blocks.L.hook_resid_post)",
                   hook);
}

static int read_info(const char *cpath, const cJSON *c, struct saelens_info *info) {
    memset(info, 0, sizeof *info);
    if (check_supported(c) < 0) return err_prefix("%s", cpath);
    info->model_name = xstrdup(str_or(c, "model_name", ""));
    info->hook_name = xstrdup(str_or(c, "hook_name", ""));
    if (!info->model_name || !info->hook_name) return -1;
    if (parse_hook(info->hook_name, &info->layer) < 0) return err_prefix("%s", cpath);
    const cJSON *cs = cJSON_GetObjectItem(c, "context_size");
    info->context_size = cJSON_IsNumber(cs) ? cs->valueint : 0;
    info->prepend_bos = bool_or(c, "prepend_bos", true);
    return 0;
}

static int read_tensor(const struct st_file *f, const char *name, int ndim, int64_t d0, int64_t d1,
                       float **out) {
    const struct st_tensor *t = st_find(f, name);
    if (!t) return err_set("%s: tensor %s is missing", f->path, name);
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1))
        return err_set("%s: tensor %s has the wrong shape (expected [%lld%s%lld])", f->path, name,
                       (long long)d0, ndim == 2 ? ", " : "", ndim == 2 ? (long long)d1 : 0LL);
    size_t n = (size_t)st_numel(t);
    *out = xmalloc(n * sizeof **out + 1);
    if (!*out) return -1;
    if (st_read_f32(f, t, *out) != 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (!isfinite((*out)[i]))
            return err_set("%s: tensor %s: element %zu is %s", f->path, name, i,
                           isnan((*out)[i]) ? "NaN" : "infinite");
    return 0;
}

// Move the SAELens weights (file layout) into s, folding b_dec and decoder norms.
static int fill(struct sae *s, const float *we, const float *be, const float *wd, const float *bd,
                struct saelens_info *info, bool apply_b_dec) {
    int din = s->d_in, dsae = s->d_sae;
    for (int j = 0; j < dsae; j++) {
        float *row = s->p.W_enc + (size_t)j * din;
        double fold = 0;
        for (int i = 0; i < din; i++) {
            row[i] = we[(size_t)i * dsae + j];
            fold += (double)row[i] * bd[i];
        }
        s->p.b_enc[j] = apply_b_dec ? (float)((double)be[j] - fold) : be[j];
        const float *w = wd + (size_t)j * din;
        double n2 = 0;
        for (int i = 0; i < din; i++) n2 += (double)w[i] * w[i];
        double n = sqrt(n2);
        float *dst = s->p.W_dec + (size_t)j * din;
        if (n > 0 && fabs(n - 1) > 1e-5) {
            for (int i = 0; i < din; i++) dst[i] = (float)(w[i] / n);
            for (int i = 0; i < din; i++) row[i] = (float)(row[i] * n);
            s->p.b_enc[j] = (float)(s->p.b_enc[j] * n);
            info->rescaled++;
        } else {
            memcpy(dst, w, (size_t)din * sizeof *dst);
        }
    }
    memcpy(s->p.b_dec, bd, (size_t)din * sizeof *bd);
    info->folded_b_dec = apply_b_dec;
    sae_refresh_norms(s);
    return 0;
}

static int import_weights(const char *wpath, const cJSON *c, struct sae *s,
                          struct saelens_info *info) {
    const cJSON *jd = cJSON_GetObjectItem(c, "d_in"), *js = cJSON_GetObjectItem(c, "d_sae");
    if (!cJSON_IsNumber(jd) || !cJSON_IsNumber(js) || jd->valueint < 1 || js->valueint < 1)
        return err_set("cfg.json: d_in and d_sae must be positive integers");
    int din = jd->valueint, dsae = js->valueint;
    struct st_file f;
    if (st_open(&f, wpath) < 0) return -1;
    float *we = NULL, *be = NULL, *wd = NULL, *bd = NULL;
    int rc = 0;
    if (read_tensor(&f, "W_enc", 2, din, dsae, &we) < 0 ||
        read_tensor(&f, "b_enc", 1, dsae, 0, &be) < 0 ||
        read_tensor(&f, "W_dec", 2, dsae, din, &wd) < 0 ||
        read_tensor(&f, "b_dec", 1, din, 0, &bd) < 0 || sae_new(s, din, dsae) < 0)
        rc = -1;
    if (rc == 0) fill(s, we, be, wd, bd, info, bool_or(c, "apply_b_dec_to_input", false));
    /* folding b_dec and moving decoder norms into the encoder can overflow */
    for (size_t i = 0; rc == 0 && i < s->n_params; i++)
        if (!isfinite(s->mem[i]))
            rc = err_set("%s: the weights overflow float32 once b_dec is folded into b_enc and "
                         "decoder norms are moved into the encoder",
                         wpath);
    free(we);
    free(be);
    free(wd);
    free(bd);
    st_close(&f);
    return rc;
}

int saelens_import(const char *dir, struct sae *s, struct saelens_info *info) {
    memset(s, 0, sizeof *s);
    memset(info, 0, sizeof *info);
    char *cpath = join(dir, "cfg.json"), *wpath = join(dir, "sae_weights.safetensors");
    size_t n;
    char *text = cpath ? read_file_all(cpath, 1 << 20, &n) : NULL;
    cJSON *c = text ? json_parse_named(text, cpath) : NULL;
    int rc = c ? read_info(cpath, c, info) : -1;
    if (rc == 0) rc = import_weights(wpath, c, s, info);
    if (rc == 0 && strstr(info->model_name, "gpt2"))
        log_warn("%s: SAELens GPT-2 SAEs were trained on TransformerLens activations (centred "
                 "writing weights, folded LayerNorm), which differ from the raw Hugging Face "
                 "activations used here by a per-token mean shift; expect worse reconstruction",
                 dir);
    if (rc == 0 && info->folded_b_dec)
        log_info("%s: apply_b_dec_to_input folded into b_enc", dir);
    if (rc == 0 && info->rescaled)
        log_info("%s: %d decoder rows were not unit norm; their norms moved into the encoder",
                 dir, info->rescaled);
    if (rc < 0) {
        sae_free(s);
        saelens_info_free(info);
    }
    cJSON_Delete(c);
    free(text);
    free(cpath);
    free(wpath);
    return rc < 0 ? err_prefix("SAELens import of %s", dir) : 0;
}
