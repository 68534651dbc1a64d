/* llama.c: placeholder until the implementation lands; every call fails. */
#include "model/llama.h"

#include "util/error.h"

int llama_load(const char *path, struct lm *lm) {
    (void)lm;
    return err_set("%s: llama loader not implemented yet", path);
}
void llama_free_impl(struct lm *lm) { (void)lm; }
int llama_acts_init(const struct lm *lm, struct lm_acts *acts) {
    (void)lm, (void)acts;
    return err_set("llama: not implemented yet");
}
void llama_acts_release(struct lm_acts *acts) { (void)acts; }
int llama_embed(const struct lm *lm, struct lm_acts *acts, const int32_t *tokens) {
    (void)lm, (void)acts, (void)tokens;
    return err_set("llama: not implemented yet");
}
int llama_blocks_forward(const struct lm *lm, struct lm_acts *acts, int from, int to) {
    (void)lm, (void)acts, (void)from, (void)to;
    return err_set("llama: not implemented yet");
}
int llama_final_norm(const struct lm *lm, struct lm_acts *acts) {
    (void)lm, (void)acts;
    return err_set("llama: not implemented yet");
}
int llama_unembed(const struct lm *lm, const float *x, int n, float *logits) {
    (void)lm, (void)x, (void)n, (void)logits;
    return err_set("llama: not implemented yet");
}
int llama_unembed_backward(const struct lm *lm, const float *x, const float *dlogits, int n,
                           float *dx, void *param_grads) {
    (void)lm, (void)x, (void)dlogits, (void)n, (void)dx, (void)param_grads;
    return err_set("llama: not implemented yet");
}
int llama_final_norm_backward(const struct lm *lm, struct lm_acts *acts, const float *d_lnf,
                              float *d_resid) {
    (void)lm, (void)acts, (void)d_lnf, (void)d_resid;
    return err_set("llama: not implemented yet");
}
int llama_blocks_backward(const struct lm *lm, struct lm_acts *acts, int from, int to,
                          float *d_resid, float *const *d_extra, void *param_grads) {
    (void)lm, (void)acts, (void)from, (void)to, (void)d_resid, (void)d_extra, (void)param_grads;
    return err_set("llama: not implemented yet");
}
int llama_embed_backward(const struct lm *lm, struct lm_acts *acts, const float *d_resid0,
                         void *param_grads) {
    (void)lm, (void)acts, (void)d_resid0, (void)param_grads;
    return err_set("llama: not implemented yet");
}
