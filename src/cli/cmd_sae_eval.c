/* cmd_sae_eval.c: `autointerp sae-eval SAE --model M --tokens EVAL.h5`.
 *
 * Evaluates one SAE (an autointerp .h5 file or a SAELens folder) on held-out
 * tokens and prints its metrics (src/sae/metrics.h) as JSON on stdout. The hook
 * layer, context and BOS handling come from the SAE file (its stored config, or
 * SAELens's cfg.json) unless given on the command line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "io/atomic.h"
#include "model/lm.h"
#include "sae/metrics.h"
#include "sae/sae_io.h"
#include "sae/saelens.h"
#include "tok/dataset.h"
#include "util/error.h"

static const struct cli_opt opts[] = {
    {"model", 'm', "PATH", "subject model (GPT-2 directory or llama2.c .bin); required"},
    {"tokens", 't', "FILE", "evaluation token dataset (.h5); required"},
    {"n-tokens", 'n', "N", "tokens to evaluate (default: the SAE config's sae.eval_tokens, "
                           "else all whole windows)"},
    {"context", 0, "T", "tokens per window (default: the SAE's data.context or SAELens "
                        "context_size, else 128)"},
    {"batch", 0, "B", "windows per batch (default 8)"},
    {"layer", 0, "L", "hook blocks.L.hook_resid_pre (default: from the SAE)"},
    {"no-bos", 0, NULL, "do not prepend BOS even if the tokenizer has one"},
    {"save", 0, NULL, "also store the metrics as the SAE file's /metrics (autointerp .h5 only; "
                      "what extract.alive_from \"sae\" reads)"},
    {0},
};

static const struct cli_command cmd = {
    .name = "sae-eval",
    .summary = "evaluate an SAE (L0, alive, CE increase, KL, explained variance, ...)",
    .usage = "autointerp sae-eval [options] SAE --model M --tokens EVAL.h5",
    .description =
        "SAE is an autointerp SAE file (.h5) or a SAELens folder (cfg.json +\n"
        "sae_weights.safetensors). Prints a JSON object: l0, alive, dead, alive_fraction,\n"
        "ce_orig, ce_sae, ce_increase, kl, mse, explained_variance, n_tokens, d_sae,\n"
        "mse_downstream (by resid index) and density_hist (log10 density bins).",
    .opts = opts,
    .min_positional = 1,
    .max_positional = 1,
};

struct defaults {
    int layer, context;
    long long n_tokens;
    bool prepend_bos;
};

static int load_sae(const char *path, struct sae *s, struct defaults *d) {
    if (dir_exists(path)) {
        struct saelens_info info;
        if (saelens_import(path, s, &info) < 0) return -1;
        d->layer = info.layer;
        if (info.context_size > 1) d->context = info.context_size;
        d->prepend_bos = info.prepend_bos;
        saelens_info_free(&info);
        return 0;
    }
    struct sae_meta meta;
    if (sae_file_read(path, s, &meta) < 0) return -1;
    d->layer = (int)meta.layer;
    sae_meta_data_settings(&meta, &d->context, &d->prepend_bos, &d->n_tokens);
    sae_meta_free(&meta);
    return 0;
}

static int evaluate(const struct cli_args *a, struct sae *s, const struct defaults *d) {
    struct lm *lm = NULL;
    struct token_dataset data = {.file = -1};
    if (lm_load(cli_value(a, "model"), &lm) < 0) return cli_fail();
    if (token_dataset_open(&data, cli_value(a, "tokens")) < 0) {
        lm_free(lm);
        return cli_fail();
    }
    long long layer, context, batch, n_tokens;
    int rc = 2;
    /* mismatches are errors about the files, named before any work starts */
    if (s->d_in != lm->cfg.d_model) {
        err_set("%s: SAE input width d_in %d does not match the model %s (width %d)",
                a->positional[0], s->d_in, lm->path, lm->cfg.d_model);
        rc = cli_fail();
    } else if (data.vocab_size > lm->cfg.vocab_size) {
        err_set("%s: tokens from a %lld-token vocabulary (%s) cannot feed the model %s "
                "(vocabulary %d)",
                data.path, (long long)data.vocab_size, data.tokenizer ? data.tokenizer : "?",
                lm->path, lm->cfg.vocab_size);
        rc = cli_fail();
    } else if (cli_int(a, "layer", d->layer, 0, 100000, &layer) == 0 &&
        cli_int(a, "context", d->context, 2, 1 << 20, &context) == 0 &&
        cli_int(a, "batch", 8, 1, 1 << 16, &batch) == 0 &&
        cli_int(a, "n-tokens", d->n_tokens, 0, (long long)1e15, &n_tokens) == 0) {
        struct sae_eval_opts o = {.layer = (int)layer,
                                  .context = (int)context,
                                  .batch = (int)batch,
                                  .n_tokens = n_tokens,
                                  .prepend_bos = d->prepend_bos && !cli_flag(a, "no-bos")};
        struct sae_metrics m;
        if (sae_evaluate(s, lm, &data, &o, &m) < 0) {
            rc = cli_fail();
        } else {
            cJSON *j = sae_metrics_json(&m);
            cJSON_AddNumberToObject(j, "layer", (double)layer);
            cJSON_AddNumberToObject(j, "context", (double)context);
            char *text = cJSON_Print(j);
            printf("%s\n", text);
            free(text);
            cJSON_Delete(j);
            rc = 0;
            if (cli_flag(a, "save") && sae_metrics_save(a->positional[0], &m) != 0) rc = cli_fail();
            sae_metrics_free(&m);
        }
    }
    token_dataset_close(&data);
    lm_free(lm);
    return rc;
}

int cmd_sae_eval(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    if (!cli_value(&a, "model") || !cli_value(&a, "tokens")) {
        rc = cli_usage_error(&cmd, "--model and --tokens are required");
        cli_args_free(&a);
        return rc;
    }
    if (cli_flag(&a, "save") && dir_exists(a.positional[0])) {
        rc = cli_usage_error(&cmd, "--save writes into an autointerp SAE file, and %s is a "
                                   "SAELens folder: convert it first (autointerp sae-convert)",
                             a.positional[0]);
        cli_args_free(&a);
        return rc;
    }
    struct defaults d = {.layer = 0, .context = 128, .n_tokens = 0, .prepend_bos = true};
    struct sae s;
    if (load_sae(a.positional[0], &s, &d) < 0) {
        cli_args_free(&a);
        return cli_fail();
    }
    rc = evaluate(&a, &s, &d);
    sae_free(&s);
    cli_args_free(&a);
    return rc;
}
