/* cmd_lm_train.c: `autointerp lm-train`: a small GPT-2 from a token dataset.
 *
 * A thin shell over lmtrain_run (src/model/lmtrain.h): options in, the unigram
 * entropy of the training tokens and the validation-loss curve out on stdout.
 */
#include <math.h>
#include <stdio.h>

#include "cli/cli.h"
#include "model/lmtrain.h"

static const struct cli_opt opts[] = {
    {"tokens", 't', "FILE.h5", "token dataset from `autointerp tokenize` (required)"},
    {"out", 'o', "DIR", "output directory: config.json, model.safetensors, checkpoint.h5"},
    {"n-layer", 0, "N", "transformer blocks (default 4)"},
    {"n-embd", 0, "C", "residual width (default 128)"},
    {"n-head", 0, "H", "attention heads (default 4)"},
    {"context", 0, "T", "tokens per training window, also n_positions (default 128)"},
    {"batch", 0, "B", "windows per step (default 16)"},
    {"steps", 0, "N", "optimiser steps (default 1000 unless --minutes)"},
    {"minutes", 0, "M", "train for M minutes instead of a step count"},
    {"lr", 0, "X", "peak learning rate (default 3e-3)"},
    {"warmup", 0, "N", "linear warmup steps, then cosine decay to 10% (default 30)"},
    {"weight-decay", 0, "X", "AdamW decay on matrices (default 0.1)"},
    {"grad-clip", 0, "X", "clip the global gradient norm (default 1.0, 0 = off)"},
    {"dropout", 0, "P", "dropout on each block's attention and MLP outputs (default 0)"},
    {"seed", 0, "N", "initialisation and data order (default 1)"},
    {"val-fraction", 0, "X", "held-out tail of the tokens (default 0.1)"},
    {"eval-every", 0, "N", "steps between validation losses (default 100)"},
    {"eval-tokens", 0, "N", "predictions per validation, 0 = all held-out (default 65536)"},
    {"checkpoint-every", 0, "N", "steps between checkpoints, 0 = none (default 200)"},
    {"no-resume", 0, NULL, "ignore an existing checkpoint (it is overwritten)"},
    {"stop-after", 0, "N", "stop after N steps as if killed (to test resuming)"},
    {0},
};

static const struct cli_command cmd = {
    .name = "lm-train",
    .summary = "train a small GPT-2 from scratch on a token dataset",
    .usage = "autointerp lm-train --tokens FILE.h5 --out DIR [options]",
    .description =
        "Trains a GPT-2 (pre-LN, GELU, tied unembedding) with AdamW, linear warmup and\n"
        "cosine decay, gradient clipping, seeded initialisation and data order. The last\n"
        "--val-fraction of the tokens is held out for the validation loss. Checkpoints\n"
        "are atomic; rerunning the same command resumes from the last one and ends with\n"
        "the same weights as an uninterrupted run (same --threads). The model is written\n"
        "in Hugging Face layout, loadable by every other stage and by transformers.",
    .opts = opts,
    .min_positional = 0,
    .max_positional = 0,
};

static void print_eval(void *ctx, int64_t step, double train_loss, double val_loss, double lr) {
    (void)ctx;
    if (isnan(train_loss))
        printf("%8lld  %10s  %10.4f  %9.2e\n", (long long)step, "-", val_loss, lr);
    else
        printf("%8lld  %10.4f  %10.4f  %9.2e\n", (long long)step, train_loss, val_loss, lr);
    fflush(stdout);
}

static int parse(const struct cli_args *a, struct lmtrain_config *c) {
    long long v;
#define INT_OPT(name, field, lo, hi)                                                           \
    do {                                                                                       \
        if (cli_int(a, name, (long long)c->field, lo, hi, &v) < 0) return 2;                  \
        c->field = v;                                                                          \
    } while (0)
#define DBL_OPT(name, field)                                                                   \
    do {                                                                                       \
        if (cli_double(a, name, c->field, &c->field) < 0) return 2;                           \
    } while (0)
    INT_OPT("n-layer", n_layer, 1, 1000);
    INT_OPT("n-embd", n_embd, 1, 65536);
    INT_OPT("n-head", n_head, 1, 65536);
    INT_OPT("context", context, 2, 1000000);
    INT_OPT("batch", batch, 1, 1000000);
    INT_OPT("warmup", warmup, 0, 1000000000);
    INT_OPT("eval-every", eval_every, 0, 1000000000);
    INT_OPT("eval-tokens", eval_tokens, 0, 1000000000000LL);
    INT_OPT("checkpoint-every", checkpoint_every, 0, 1000000000);
    INT_OPT("stop-after", stop_after, 0, 1000000000);
    if (cli_int(a, "seed", 1, 0, (long long)1 << 52, &v) < 0) return 2;
    c->seed = (uint64_t)v;
    DBL_OPT("lr", lr);
    DBL_OPT("weight-decay", weight_decay);
    DBL_OPT("grad-clip", grad_clip);
    DBL_OPT("dropout", dropout);
    if (!(c->dropout >= 0 && c->dropout < 0.9))
        return cli_usage_error(&cmd, "--dropout must be from 0 to 0.9");
    DBL_OPT("val-fraction", val_fraction);
    DBL_OPT("minutes", minutes);
    if (cli_value(a, "minutes") && !cli_value(a, "steps")) c->steps = 0;
    INT_OPT("steps", steps, 0, 1000000000);
    if (cli_value(a, "minutes") && cli_value(a, "steps"))
        return cli_usage_error(&cmd, "give --steps or --minutes, not both");
    if (c->n_embd % c->n_head)
        return cli_usage_error(&cmd, "--n-embd (%d) must be a multiple of --n-head (%d)",
                               c->n_embd, c->n_head);
    if (!(c->val_fraction > 0 && c->val_fraction < 1))
        return cli_usage_error(&cmd, "--val-fraction must be between 0 and 1");
    if (cli_value(a, "minutes") && !(c->minutes > 0))
        return cli_usage_error(&cmd, "--minutes must be positive");
    c->resume = !cli_flag(a, "no-resume");
#undef INT_OPT
#undef DBL_OPT
    return 0;
}

int cmd_lm_train(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    struct lmtrain_config c;
    lmtrain_defaults(&c);
    c.tokens_path = cli_value(&a, "tokens");
    c.out_dir = cli_value(&a, "out");
    if (!c.tokens_path || !c.out_dir) {
        rc = cli_usage_error(&cmd, "--tokens and --out are required");
    } else {
        rc = parse(&a, &c);
    }
    if (rc != 0) {
        cli_args_free(&a);
        return rc;
    }
    c.on_eval = print_eval;
    printf("lm-train: %d layers, %d wide, %d heads, context %d, batch %d, %s %g\n", c.n_layer,
           c.n_embd, c.n_head, c.context, c.batch, c.steps ? "steps" : "minutes",
           c.steps ? (double)c.steps : c.minutes);
    printf("%8s  %10s  %10s  %9s\n", "step", "train", "validation", "lr");
    struct lmtrain_result r;
    if (lmtrain_run(&c, &r) < 0) {
        cli_args_free(&a);
        return cli_fail();
    }
    printf("\ntraining tokens      %lld (validation %lld)\n", (long long)r.n_train_tokens,
           (long long)r.n_val_tokens);
    printf("unigram entropy      %.4f nats\n", r.unigram_entropy);
    printf("final val loss       %.4f nats (%.4f below the unigram entropy)\n", r.final_val_loss,
           r.unigram_entropy - r.final_val_loss);
    printf("steps                %lld%s\n", (long long)r.steps_done,
           r.resumed_from ? " (resumed)" : "");
    printf("throughput           %.0f tokens/s over %.1f s\n", r.tokens_per_s, r.seconds);
    if (r.stopped_early)
        printf("stopped early after --stop-after steps; rerun to resume\n");
    else
        printf("model                %s/model.safetensors\n", c.out_dir);
    lmtrain_result_free(&r);
    cli_args_free(&a);
    return 0;
}
