/* train.h: training one SAE: data order, Adam, schedule, clipping, checkpoints.
 *
 * A run is fully determined by its options (struct sae_train_opts), the model and
 * the token dataset: the SAE is initialised from the seed (sae_init), the
 * training windows are visited in an order drawn from the same seed, and every
 * step's learning rate is a function of the step number. So the state worth
 * saving is just (step, parameters, Adam moments, curve so far), and a run that
 * is killed and resumed from its last checkpoint finishes with bit-identical
 * weights to one that never stopped (given the same BLAS thread count).
 *
 *   step s of n_steps (0-based), tokens per step = batch·context·grad_accum:
 *     lr(s) = lr·(s+1)/W                                     s < W = round(warmup_fraction·n_steps)
 *           = lr·(f + (1−f)·½(1 + cos(π·(s−W)/(n_steps−W))))   otherwise, f = min_lr_fraction
 *     g = mean of the micro-batch gradients; if clip > 0 and ‖g‖ > clip: g ·= clip/(‖g‖+1e-6)
 *     Adam (β1 0.9, β2 0.999, ε 1e-8, bias-corrected, no weight decay), as torch.optim.Adam
 *
 * Data: the dataset is cut into windows of `context` tokens (context−1 plus a BOS
 * when prepend_bos and the tokenizer has one); micro-batch m takes windows
 * order[(m·batch + b) mod n_windows], order a seeded permutation.
 *
 * Checkpoints (every checkpoint_every steps, atomically) are HDF5: /params,
 * /adam_m, /adam_v (n_params floats each, sae.h layout), the curve group, attributes
 * step, n_steps, spec_hash. A checkpoint whose spec_hash differs is ignored
 * (and overwritten), with a warning.
 */
#ifndef AUTOINTERP_SAE_TRAIN_H
#define AUTOINTERP_SAE_TRAIN_H

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/lm.h"
#include "sae/objective.h"
#include "sae/sae.h"
#include "tok/dataset.h"

struct sae_train_opts {
    const char *name;          /* for progress lines and messages */
    struct sae_setting set;
    int ratio;                 /* d_sae = ratio·d_model */
    uint64_t seed;             /* initialisation and data order */
    int64_t train_tokens;      /* total; the step count is rounded up */
    int batch, context, grad_accum;
    double lr, warmup_fraction, min_lr_fraction, clip;
    int checkpoint_every;      /* steps */
    const char *checkpoint_path; /* NULL: no checkpoints */
    const char *spec_hash;     /* identity of the run, stored in checkpoints */
    bool prepend_bos;
    int64_t stop_after_steps;  /* > 0: return (unfinished) after this many steps in
                                  this call, right after a checkpoint (tests) */
    const struct sae *init;    /* start from these weights instead of sae_init (fine-tuning
                                  an imported SAE, benchmarks); sizes must match */
};

struct sae_curve_row {
    int64_t step, tokens;
    double loss, mse, sparsity, kl, ds_mse, l0, lr, grad_norm;
};

struct sae_curve {
    int n, cap;
    struct sae_curve_row *rows;
};
void sae_curve_free(struct sae_curve *c);
/* /curve/<column> datasets in group loc (layout in sae_io.h), and back. */
int sae_curve_write(hid_t loc, const struct sae_curve *c);
int sae_curve_read(hid_t loc, struct sae_curve *c);

int64_t sae_train_n_steps(const struct sae_train_opts *o);
double sae_train_lr(const struct sae_train_opts *o, int64_t step, int64_t n_steps);

/* Train (or resume) one SAE. On success *s holds the trained SAE (caller frees
 * with sae_free), curve the training curve, *finished whether all steps are done
 * (false only with stop_after_steps). Errors name the run and the step. */
int sae_train(const struct sae_train_opts *o, const struct lm *lm,
              const struct token_dataset *data, struct sae *s, struct sae_curve *curve,
              bool *finished);

/* Train n SAEs in lockstep: the original model runs once per micro-batch for all
 * of them (to their layer, or through the whole model when any is e2e), which
 * for local SAEs is most of the cost besides the encoder. Their layer, seed
 * (hence data order), batch, context, grad_accum, train_tokens and prepend_bos
 * must agree; type, lambda, coefficients, ratio, learning-rate options and
 * checkpoint paths are their own. Every SAE ends bit-identical to training it
 * alone. Checkpoints are written for all at the same steps; they must resume
 * from one step (sae_checkpoint_step tells where each would). saes, curves,
 * finished have n entries; options are taken from opts[0] where shared. */
int sae_train_group(int n, const struct sae_train_opts *opts, const struct lm *lm,
                    const struct token_dataset *data, struct sae *saes, struct sae_curve *curves,
                    bool *finished);

/* The step a run would resume from (0 = no usable checkpoint). */
int64_t sae_checkpoint_step(const struct sae_train_opts *o);

/* The optimiser pieces of a step (exposed for benchmarks): the global norm of a
 * gradient buffer (NAN when out of memory, error set), and one torch.optim.Adam step on p with gradient gscale·g
 * (t = 1-based step) that also zeroes g for the next accumulation. */
double sae_grad_norm(const float *g, size_t n);
void sae_adam_step(float *p, float *g, float *m, float *v, size_t n, double lr, int64_t t,
                   float gscale);

/* Windows of a token dataset: how many, and read window w (context tokens, with
 * BOS first when bos >= 0). Shared with evaluation. */
int64_t sae_n_windows(const struct token_dataset *d, int context, int bos);
int sae_read_window(const struct token_dataset *d, int64_t w, int context, int bos,
                    int32_t *out);

#endif
