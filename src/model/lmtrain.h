/* lmtrain.h: train a small GPT-2 from scratch on a token dataset (`lm-train`).
 *
 * So that the whole pipeline runs offline on a fresh machine, this makes the
 * subject model itself: a GPT-2 trained with AdamW (weight decay on matrices
 * only), linear warmup then cosine decay to 10% of the peak rate, global-norm
 * gradient clipping, next-token CE on windows of context+1 tokens sampled from
 * the training part of the dataset (the last val_fraction of the tokens is held
 * out for validation). The result is written in Hugging Face layout
 * (config.json + model.safetensors) so lm_load and other tools read it.
 *
 * Determinism: parameters are initialised from the seed (GSL's mt19937) and the
 * windows of step s are drawn from a generator seeded by (seed, s), so a run
 * depends on nothing but its options and the thread count. A checkpoint
 * (out_dir/checkpoint.h5: parameters, Adam moments, step, validation curve,
 * the options that must match) is written atomically every checkpoint_every
 * steps; a run that finds one resumes from it, and a killed run resumed this way
 * ends bit-identical to an uninterrupted one (same thread count). With a time
 * budget (minutes) instead of a step count the schedule follows elapsed time, so
 * such runs are not reproducible step for step.
 */
#ifndef AUTOINTERP_MODEL_LMTRAIN_H
#define AUTOINTERP_MODEL_LMTRAIN_H

#include <stdbool.h>
#include <stdint.h>

struct lmtrain_config {
    const char *tokens_path; /* token dataset (tok/dataset.h) */
    const char *out_dir;     /* model + checkpoint go here */
    int n_layer, n_embd, n_head;
    int context;             /* T; also n_positions of the model */
    int batch;               /* B windows per step */
    int64_t steps;           /* total optimiser steps; 0: run for `minutes` */
    double minutes;
    double lr;               /* peak learning rate */
    int64_t warmup;          /* warmup steps (with minutes: as a count of steps too) */
    double min_lr_frac;      /* cosine floor, fraction of lr (0.1) */
    double weight_decay;     /* on matrices only (0.1) */
    double beta1, beta2, adam_eps;
    double grad_clip;        /* global L2 norm; 0 = off */
    double dropout;          /* on each block's attention and MLP outputs (0.1); 0 = off */
    uint64_t seed;
    double val_fraction;     /* held-out tail of the dataset */
    int64_t eval_every;      /* steps between validation losses (0: only first and last) */
    int64_t eval_tokens;     /* predicted tokens per validation (0: the whole held-out part) */
    int64_t checkpoint_every; /* steps; 0: never */
    bool resume;             /* continue from out_dir/checkpoint.h5 when present */
    int64_t stop_after;      /* stop (as if killed) after this many steps of this call; 0: no */
    /* called after every validation (may be NULL): the CLI prints the curve */
    void (*on_eval)(void *ctx, int64_t step, double train_loss, double val_loss, double lr);
    void *ctx;
};

/* Defaults: 4 layers, 128 wide, 4 heads, T 128, B 16, 1000 steps, lr 3e-3 with 30
 * warmup steps, AdamW (0.9, 0.95, wd 0.1), clip 1.0, no dropout, 10% held out. */
void lmtrain_defaults(struct lmtrain_config *cfg);

struct lmtrain_result {
    double unigram_entropy;      /* nats per token, training part */
    int64_t n_train_tokens, n_val_tokens;
    int64_t steps_done;          /* total steps in the model (incl. resumed ones) */
    int64_t resumed_from;        /* step of the checkpoint used, 0 if none */
    bool stopped_early;          /* stop_after hit: no model written */
    double seconds, tokens_per_s; /* this call */
    int n_evals;
    int64_t *eval_steps;         /* validation curve (owned) */
    double *eval_losses;
    double final_val_loss;
};

int lmtrain_run(const struct lmtrain_config *cfg, struct lmtrain_result *res);
void lmtrain_result_free(struct lmtrain_result *res);

#endif
