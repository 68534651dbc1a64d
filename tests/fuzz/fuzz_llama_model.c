/* fuzz_llama_model.c: the llama2.c checkpoint reader (lm_load on a .bin).
 *
 * A file the reader accepts must also run: the harness embeds a few tokens,
 * runs every block, the final norm and the unembedding of one row, and checks
 * that lm_embed refuses an id outside the vocabulary and a context longer than
 * max_seq.
 */
#include "fuzz_common.h"

#include "model/lm.h"

int fuzz_llama_model(const uint8_t *data, size_t size) {
    err_clear();
    const char *path = fuzz_write("input.bin", data, size);
    struct lm *lm = NULL;
    int rc = lm_load(path, &lm);
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
    if (c->max_seq < 64) { /* T > max_seq must be refused */
        struct lm_acts *big = lm_acts_new(lm, 1, c->max_seq + 1, false);
        if (big) {
            int32_t *ids = calloc((size_t)c->max_seq + 1, sizeof *ids);
            FUZZ_CHECK(ids != NULL, "calloc");
            FUZZ_CHECK(lm_embed(lm, big, ids) == -1, "T > max_seq accepted");
            free(ids);
            lm_acts_free(big);
        }
    }
    lm_free(lm);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_llama_model(data, size);
    return 0;
}
#endif
