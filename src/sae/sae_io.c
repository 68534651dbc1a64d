/* sae_io.c: write and read SAE files (layout in sae_io.h).
 *
 * In memory the decoder is feature-major (d_sae,d_in); on disk it is the paper's
 * (d_in,d_sae), so both directions transpose. Transposes go through a blocked
 * loop so a 46,080 × 768 matrix is not walked column-wise.
 */
#include "sae/sae_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "util/error.h"

// out (cols,rows) = in (rows,cols)ᵀ
static void transpose(const float *in, int rows, int cols, float *out) {
    enum { BS = 32 };
    for (int r0 = 0; r0 < rows; r0 += BS)
        for (int c0 = 0; c0 < cols; c0 += BS)
            for (int r = r0; r < rows && r < r0 + BS; r++)
                for (int c = c0; c < cols && c < c0 + BS; c++)
                    out[(size_t)c * rows + r] = in[(size_t)r * cols + c];
}

int sae_weights_write(hid_t loc, const struct sae *s) {
    int din = s->d_in, dsae = s->d_sae;
    size_t ed = (size_t)din * dsae;
    float *t = xmalloc(ed * sizeof *t), *D = xmalloc(ed * sizeof *D);
    int rc = (!t || !D) ? -1 : 0;
    hsize_t enc[2] = {(hsize_t)dsae, (hsize_t)din}, dec[2] = {(hsize_t)din, (hsize_t)dsae};
    hsize_t nb = (hsize_t)dsae, nd = (hsize_t)din;
    if (rc == 0) rc = h5_write_f32(loc, "W_enc", 2, enc, s->p.W_enc);
    if (rc == 0) rc = h5_write_f32(loc, "b_enc", 1, &nb, s->p.b_enc);
    if (rc == 0) {
        transpose(s->p.W_dec, dsae, din, t);
        rc = h5_write_f32(loc, "W_dec", 2, dec, t);
    }
    if (rc == 0) {
        sae_normalised_decoder(s, D);
        transpose(D, dsae, din, t);
        rc = h5_write_f32(loc, "W_dec_normalised", 2, dec, t);
    }
    if (rc == 0) rc = h5_write_f32(loc, "b_dec", 1, &nd, s->p.b_dec);
    free(t);
    free(D);
    return rc < 0 ? err_prefix("SAE weights") : 0;
}

int sae_weights_read(hid_t loc, struct sae *s) {
    memset(s, 0, sizeof *s);
    int nd;
    hsize_t dims[8];
    if (h5_shape(loc, "W_enc", 8, &nd, dims) < 0) return -1;
    if (nd != 2) return err_set("dataset 'W_enc': expected rank 2 [d_sae, d_in], got %d", nd);
    if (dims[0] < 1 || dims[1] < 1 || dims[0] > (1u << 30) || dims[1] > (1u << 30))
        return err_set("dataset 'W_enc': implausible shape [%llu, %llu]",
                       (unsigned long long)dims[0], (unsigned long long)dims[1]);
    int dsae = (int)dims[0], din = (int)dims[1];
    if (sae_new(s, din, dsae) < 0) return -1;
    hsize_t enc[2] = {(hsize_t)dsae, (hsize_t)din}, dec[2] = {(hsize_t)din, (hsize_t)dsae};
    hsize_t nb = (hsize_t)dsae, ndn = (hsize_t)din;
    float *we = NULL, *be = NULL, *wd = NULL, *bd = NULL;
    int rc = 0;
    if (h5_read(loc, "W_enc", H5T_NATIVE_FLOAT, 2, enc, NULL, (void **)&we) < 0 ||
        h5_read(loc, "b_enc", H5T_NATIVE_FLOAT, 1, &nb, NULL, (void **)&be) < 0 ||
        h5_read(loc, "W_dec", H5T_NATIVE_FLOAT, 2, dec, NULL, (void **)&wd) < 0 ||
        h5_read(loc, "b_dec", H5T_NATIVE_FLOAT, 1, &ndn, NULL, (void **)&bd) < 0)
        rc = -1;
    if (rc == 0) {
        memcpy(s->p.W_enc, we, (size_t)dsae * din * sizeof *we);
        memcpy(s->p.b_enc, be, (size_t)dsae * sizeof *be);
        transpose(wd, din, dsae, s->p.W_dec);
        memcpy(s->p.b_dec, bd, (size_t)din * sizeof *bd);
        sae_refresh_norms(s);
    }
    free(we);
    free(be);
    free(wd);
    free(bd);
    if (rc < 0) sae_free(s);
    return rc;
}

void sae_meta_free(struct sae_meta *m) {
    free(m->name);
    free(m->type);
    free(m->hook_name);
    free(m->model_path);
    free(m->config);
    free(m->spec_hash);
    memset(m, 0, sizeof *m);
}

static int write_meta(hid_t f, const struct sae_meta *m) {
#define S(k) (m->k ? m->k : "")
    if (h5_attr_str(f, "format", SAE_FILE_FORMAT) < 0 ||
        h5_attr_i64(f, "format_version", SAE_FILE_VERSION) < 0 ||
        h5_attr_str(f, "name", S(name)) < 0 || h5_attr_str(f, "type", S(type)) < 0 ||
        h5_attr_str(f, "hook_name", S(hook_name)) < 0 ||
        h5_attr_str(f, "model_path", S(model_path)) < 0 ||
        h5_attr_str(f, "config", S(config)) < 0 || h5_attr_str(f, "spec_hash", S(spec_hash)) < 0 ||
        h5_attr_i64(f, "layer", m->layer) < 0 || h5_attr_i64(f, "ratio", m->ratio) < 0 ||
        h5_attr_i64(f, "d_in", m->d_in) < 0 || h5_attr_i64(f, "d_sae", m->d_sae) < 0 ||
        h5_attr_i64(f, "seed", m->seed) < 0 || h5_attr_i64(f, "train_tokens", m->train_tokens) < 0 ||
        h5_attr_i64(f, "steps", m->steps) < 0 || h5_attr_f64(f, "lambda", m->lambda) < 0 ||
        h5_attr_f64(f, "kl_coeff", m->kl_coeff) < 0 || h5_attr_f64(f, "ds_coeff", m->ds_coeff) < 0)
        return -1;
#undef S
    return 0;
}

int sae_file_write(const char *path, const struct sae *s, const struct sae_meta *meta,
                   int (*extra)(hid_t file, void *ctx), void *ctx) {
    char *tmp = atomic_tmp_path(path);
    if (!tmp) return err_prefix("%s", path);
    hid_t f = h5_create(tmp);
    int rc = f < 0 ? -1 : write_meta(f, meta);
    hid_t g = rc == 0 ? h5_group(f, "weights") : -1;
    if (rc == 0 && (g < 0 || sae_weights_write(g, s) < 0)) rc = -1;
    if (g >= 0) H5Gclose(g);
    if (rc == 0 && extra) rc = extra(f, ctx);
    if (f >= 0 && h5_close(f) < 0) rc = -1;
    if (rc == 0) rc = atomic_rename(tmp, path);
    if (rc < 0) remove(tmp);
    free(tmp);
    return rc < 0 ? err_prefix("%s", path) : 0;
}

static int read_meta(hid_t f, struct sae_meta *m) {
    memset(m, 0, sizeof *m);
    if (h5_get_attr_str(f, "name", &m->name) < 0 || h5_get_attr_str(f, "type", &m->type) < 0 ||
        h5_get_attr_str(f, "hook_name", &m->hook_name) < 0 ||
        h5_get_attr_str(f, "model_path", &m->model_path) < 0 ||
        h5_get_attr_str(f, "config", &m->config) < 0 ||
        h5_get_attr_str(f, "spec_hash", &m->spec_hash) < 0 ||
        h5_get_attr_i64(f, "layer", &m->layer) < 0 || h5_get_attr_i64(f, "ratio", &m->ratio) < 0 ||
        h5_get_attr_i64(f, "d_in", &m->d_in) < 0 || h5_get_attr_i64(f, "d_sae", &m->d_sae) < 0 ||
        h5_get_attr_i64(f, "seed", &m->seed) < 0 ||
        h5_get_attr_i64(f, "train_tokens", &m->train_tokens) < 0 ||
        h5_get_attr_i64(f, "steps", &m->steps) < 0 ||
        h5_get_attr_f64(f, "lambda", &m->lambda) < 0 ||
        h5_get_attr_f64(f, "kl_coeff", &m->kl_coeff) < 0 ||
        h5_get_attr_f64(f, "ds_coeff", &m->ds_coeff) < 0) {
        sae_meta_free(m);
        return -1;
    }
    return 0;
}

int sae_file_read(const char *path, struct sae *s, struct sae_meta *meta) {
    hid_t f = h5_open_ro(path);
    if (f < 0) return -1;
    char *format = NULL;
    int64_t version = 0;
    int rc = 0;
    if (h5_get_attr_str(f, "format", &format) < 0 ||
        h5_get_attr_i64(f, "format_version", &version) < 0)
        rc = -1;
    else if (strcmp(format, SAE_FILE_FORMAT) != 0)
        rc = err_set("format is '%s', expected '%s'", format, SAE_FILE_FORMAT);
    else if (version != SAE_FILE_VERSION)
        rc = err_set("format_version %lld is not supported (this build reads %d)",
                     (long long)version, SAE_FILE_VERSION);
    free(format);
    if (rc == 0 && !h5_exists(f, "weights")) rc = err_set("group /weights is missing");
    hid_t g = rc == 0 ? h5_group(f, "weights") : -1;
    if (rc == 0 && g < 0) rc = -1;
    if (rc == 0 && sae_weights_read(g, s) < 0) rc = -1;
    if (g >= 0) H5Gclose(g);
    if (rc == 0 && meta && read_meta(f, meta) < 0) {
        sae_free(s);
        rc = -1;
    }
    if (rc == 0 && meta && (meta->d_in != s->d_in || meta->d_sae != s->d_sae)) {
        rc = err_set("attributes d_in=%lld d_sae=%lld disagree with the weights (%d, %d)",
                     (long long)meta->d_in, (long long)meta->d_sae, s->d_in, s->d_sae);
        sae_meta_free(meta);
        sae_free(s);
    }
    h5_close(f);
    return rc < 0 ? err_prefix("%s", path) : 0;
}

void sae_meta_data_settings(const struct sae_meta *meta, int *context, bool *prepend_bos,
                            long long *eval_tokens) {
    cJSON *c = meta->config ? cJSON_Parse(meta->config) : NULL;
    const cJSON *data = cJSON_GetObjectItem(c, "data"), *sae = cJSON_GetObjectItem(c, "sae");
    const cJSON *ctx = cJSON_GetObjectItem(data, "context"),
                *bos = cJSON_GetObjectItem(data, "prepend_bos"),
                *nt = cJSON_GetObjectItem(sae, "eval_tokens");
    if (context && cJSON_IsNumber(ctx)) *context = ctx->valueint;
    if (prepend_bos && cJSON_IsBool(bos)) *prepend_bos = cJSON_IsTrue(bos);
    if (eval_tokens && cJSON_IsNumber(nt)) *eval_tokens = (long long)nt->valuedouble;
    cJSON_Delete(c);
}
