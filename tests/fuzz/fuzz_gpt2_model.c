/* fuzz_gpt2_model.c: the GPT-2 loader (lm_load on a Hugging Face directory).
 *
 * The input is split at the first FUZZ_GPT2M_MARKER: the bytes before it are
 * config.json, the bytes after it model.safetensors. A model the loader
 * accepts must run as fuzz_llama_model checks it: embed, every block, final
 * norm, one row of logits, and refuse an id outside the vocabulary.
 *
 * A crash found here is triaged as scripts/fuzz.sh describes (fixed, then kept
 * under tests/fixtures/fuzz/gpt2_model/ for test_fuzz_regressions).
 */
#include "fuzz_common.h"

#include <sys/stat.h>

#include "model/lm.h"

#define FUZZ_GPT2M_MARKER "\n===model.safetensors===\n"

int fuzz_gpt2_model(const uint8_t *data, size_t size) {
    err_clear();
    const char *mark = memmem(data, size, FUZZ_GPT2M_MARKER, sizeof FUZZ_GPT2M_MARKER - 1);
    size_t n_cfg = mark ? (size_t)((const uint8_t *)mark - data) : size;
    const uint8_t *st = mark ? (const uint8_t *)mark + sizeof FUZZ_GPT2M_MARKER - 1 : data;
    size_t n_st = mark ? size - n_cfg - (sizeof FUZZ_GPT2M_MARKER - 1) : 0;
    char dir[600];
    snprintf(dir, sizeof dir, "%s", fuzz_path("gpt2m"));
    mkdir(dir, 0700);
    fuzz_write("gpt2m/config.json", data, n_cfg);
    fuzz_write("gpt2m/model.safetensors", st, n_st);
    struct lm *lm = NULL;
    int rc = lm_load(dir, &lm);
    if (rc != 0) return fuzz_outcome(rc, "lm_load");
    const struct lm_config *c = &lm->cfg;
    int T = c->max_seq < 3 ? c->max_seq : 3;
    struct lm_acts *acts = lm_acts_new(lm, 1, T, false);
    FUZZ_CHECK(acts != NULL, "lm_acts_new: %s", err_msg());
    int32_t tok[3];
    for (int t = 0; t < T; t++)
        tok[t] = (int32_t)(((unsigned)t * 7u + 1u) % (unsigned)c->vocab_size);
    FUZZ_CHECK(lm_embed(lm, acts, tok) == 0, "lm_embed: %s", err_msg());
    FUZZ_CHECK(lm_blocks_forward(lm, acts, 0, c->n_layer) == 0, "forward: %s", err_msg());
    FUZZ_CHECK(lm_final_norm(lm, acts) == 0, "final norm: %s", err_msg());
    float *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    FUZZ_CHECK(logits != NULL, "malloc");
    FUZZ_CHECK(lm_unembed(lm, acts->lnf, 1, logits) == 0, "unembed: %s", err_msg());
    free(logits);
    tok[0] = c->vocab_size;
    err_clear();
    FUZZ_CHECK(lm_embed(lm, acts, tok) == -1 && err_msg()[0], "id == vocab_size accepted");
    lm_acts_free(acts);
    lm_free(lm);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_gpt2_model(data, size);
    return 0;
}
#endif
