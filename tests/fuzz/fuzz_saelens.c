/* fuzz_saelens.c: the SAELens importer (saelens_import on a folder), which reads
 * folders downloaded from elsewhere.
 *
 * The input is split at the first FUZZ_SAELENS_MARKER: the bytes before it are
 * cfg.json, the bytes after it sae_weights.safetensors. An SAE the importer
 * accepts must have the shapes cfg.json states, finite parameters and unit-norm
 * decoder columns (the import's contract, src/sae/saelens.h), must encode and
 * decode a vector, and must export and import again to the same tensors.
 */
#include "fuzz_common.h"

#include <math.h>
#include <sys/stat.h>

#include "sae/sae.h"
#include "sae/saelens.h"

#define FUZZ_SAELENS_MARKER "\n===sae_weights.safetensors===\n"

static void fuzz_saelens_check(const struct sae *s) {
    FUZZ_CHECK(s->d_in > 0 && s->d_sae > 0, "sizes %d %d", s->d_in, s->d_sae);
    for (size_t i = 0; i < s->n_params; i++)
        FUZZ_CHECK(isfinite(s->mem[i]), "parameter %zu is %g", i, (double)s->mem[i]);
    for (int j = 0; j < s->d_sae; j++) {
        double n2 = 0;
        for (int i = 0; i < s->d_in; i++) {
            double w = s->p.W_dec[(size_t)j * s->d_in + i];
            n2 += w * w;
        }
        FUZZ_CHECK(n2 == 0 || fabs(sqrt(n2) - 1) < 1e-3, "decoder row %d has norm %g", j, sqrt(n2));
    }
}

int fuzz_saelens(const uint8_t *data, size_t size) {
    err_clear();
    const char *mark = memmem(data, size, FUZZ_SAELENS_MARKER, sizeof FUZZ_SAELENS_MARKER - 1);
    size_t n_cfg = mark ? (size_t)((const uint8_t *)mark - data) : size;
    const uint8_t *st = mark ? (const uint8_t *)mark + sizeof FUZZ_SAELENS_MARKER - 1 : data;
    size_t n_st = mark ? size - n_cfg - (sizeof FUZZ_SAELENS_MARKER - 1) : 0;
    char dir[600], again[600];
    snprintf(dir, sizeof dir, "%s", fuzz_path("saelens"));
    snprintf(again, sizeof again, "%s", fuzz_path("saelens-again"));
    mkdir(dir, 0700);
    fuzz_write("saelens/cfg.json", data, n_cfg);
    fuzz_write("saelens/sae_weights.safetensors", st, n_st);
    struct sae s, t;
    struct saelens_info info;
    int rc = saelens_import(dir, &s, &info);
    if (rc != 0) return fuzz_outcome(rc, "saelens_import");
    fuzz_saelens_check(&s);
    FUZZ_CHECK(info.layer >= 0, "layer %d", info.layer);
    /* one vector through the SAE */
    struct sae_work w;
    struct sae_codes codes = {0};
    float *x = calloc((size_t)s.d_in, sizeof *x), *xhat = calloc((size_t)s.d_in, sizeof *xhat);
    FUZZ_CHECK(x && xhat && sae_work_init(&w, &s) == 0, "allocation");
    for (int i = 0; i < s.d_in; i++)
        x[i] = (float)((i % 5) - 2);
    FUZZ_CHECK(sae_encode(&s, &w, x, 1, &codes) == 0, "encode: %s", err_msg());
    FUZZ_CHECK(sae_decode(&s, &w, &codes, xhat) == 0, "decode: %s", err_msg());
    sae_codes_free(&codes);
    sae_work_free(&w);
    free(x);
    free(xhat);
    /* export, import: the same tensors */
    struct saelens_export_opts o = {.model_name = info.model_name,
                                    .layer = info.layer,
                                    .hook_name = info.hook_name,
                                    .context_size = 8};
    FUZZ_CHECK(saelens_export(&s, again, &o) == 0, "export: %s", err_msg());
    struct saelens_info info2;
    FUZZ_CHECK(saelens_import(again, &t, &info2) == 0, "re-import: %s", err_msg());
    FUZZ_CHECK(t.d_in == s.d_in && t.d_sae == s.d_sae, "re-import sizes");
    size_t enc = (size_t)s.d_in * s.d_sae;
    FUZZ_CHECK(memcmp(t.p.W_enc, s.p.W_enc, enc * sizeof(float)) == 0, "W_enc changed");
    FUZZ_CHECK(memcmp(t.p.b_enc, s.p.b_enc, (size_t)s.d_sae * sizeof(float)) == 0, "b_enc changed");
    FUZZ_CHECK(memcmp(t.p.b_dec, s.p.b_dec, (size_t)s.d_in * sizeof(float)) == 0, "b_dec changed");
    sae_free(&t);
    saelens_info_free(&info2);
    sae_free(&s);
    saelens_info_free(&info);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_saelens(data, size);
    return 0;
}
#endif
