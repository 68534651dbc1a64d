/* cmd_extract.c: `autointerp extract`: sampled features and their example windows.
 *
 * A thin shell over src/extract/extract.h: settings come from the defaults, or from
 * a config (--config, the form the pipeline uses), then from explicit options,
 * which win. With a config, the model, eval tokens, output directory and SAE
 * files default to the experiment's, as `run` has them (pipeline.h: model.path or
 * <exp>/model, data.eval_tokens or <exp>/data/eval.h5, <exp>/examples, the SAE
 * files of the config's sweep).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "io/atomic.h"
#include "extract/extract.h"
#include "pipeline/pipeline.h"
#include "util/error.h"
#include "util/log.h"

static const struct cli_opt opts[] = {
    {"model", 'm', "PATH", "subject model: GPT-2 directory or llama2.c .bin (required without --config)"},
    {"tokens", 't', "EVAL.h5", "evaluation token dataset (required without --config)"},
    {"out", 'o', "DIR", "output directory, one <sae>.h5 per SAE (required without --config)"},
    {"config", 'c', "FILE", "take settings and paths from an experiment config"},
    {"n-features", 0, "N", "alive features sampled per SAE (default 200)"},
    {"features", 0, "LIST", "comma-separated feature ids instead of sampling"},
    {"top-k", 0, "K", "top-activating windows kept per feature (default 30)"},
    {"window", 0, "W", "tokens per window (default 64)"},
    {"offset", 0, "O", "position of the max-activating token in its window (default 48)"},
    {"n-random", 0, "N", "random windows per feature (default 10)"},
    {"n-quantile", 0, "N", "activation-quantile windows per feature (default 0)"},
    {"quantile-bands", 0, "N", "quantile bands the quantile windows spread over (default 5)"},
    {"n-explain", 0, "N", "top windows for the explainer (default 10)"},
    {"n-score-top", 0, "N", "held-out top windows for scoring (default 10)"},
    {"seed", 0, "N", "seed of the feature sample, random windows and splits (default 0)"},
    {"max-tokens", 0, "N", "evaluation tokens scanned (default: all)"},
    {"context", 0, "T", "positions per sequence (default 128)"},
    {"batch", 0, "B", "sequences per forward pass (default: about 2048 tokens)"},
    {"no-bos", 0, NULL, "do not prepend BOS to each sequence (Llama tokenizers)"},
    {"alive-from", 0, "pass|sae", "alive set to sample from: this pass (default) or the SAE file's "
                                 "metrics (encodes only the sampled features)"},
    {"force", 'f', NULL, "redo SAEs whose output is already complete"},
    {0},
};

static const struct cli_command cmd = {
    .name = "extract",
    .summary = "sample alive features per SAE and collect their example windows",
    .usage = "autointerp extract -m MODEL -t EVAL.h5 -o DIR [options] SAE.h5...\n"
             "       autointerp extract --config FILE [options] [SAE.h5...]",
    .description =
        "One pass over the evaluation tokens runs the model up to the deepest hook the SAEs\n"
        "read (all SAEs share it), encodes every token with each SAE, records density and\n"
        "maximum activation of every feature, samples --n-features alive features with\n"
        "--seed, and keeps for each its --top-k highest non-overlapping windows (a seeded\n"
        "shuffle splits them into --n-explain explain and --n-score-top held-out ones),\n"
        "--n-random random windows and --n-quantile windows from activation-quantile bands.\n"
        "Outputs are written atomically; an SAE whose output is complete for the same\n"
        "inputs is skipped (use --force to redo it). With --config and no SAE files, the\n"
        "SAEs are those of the config's sweep (<results_dir>/<experiment>/saes/), as `run`\n"
        "takes them.",
    .opts = opts,
    .min_positional = 0,
    .max_positional = -1,
};

struct int_opt {
    const char *name;
    int *dst;
    long long lo, hi;
};

static int apply_options(const struct cli_args *a, struct extract_settings *s) {
    const struct int_opt ints[] = {
        {"n-features", &s->n_features, 1, 10000000},  {"top-k", &s->top_k, 1, 100000},
        {"window", &s->window, 2, 4096},              {"offset", &s->offset, 0, 4095},
        {"n-random", &s->n_random, 0, 100000},         {"n-quantile", &s->n_quantile, 0, 100000},
        {"quantile-bands", &s->quantile_bands, 1, 1000},
        {"n-explain", &s->n_explain, 0, 1000},         {"n-score-top", &s->n_score_top, 0, 1000},
        {"context", &s->context, 2, 1 << 20},          {"batch", &s->batch, 1, 65536},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        long long v;
        if (cli_int(a, ints[i].name, *ints[i].dst, ints[i].lo, ints[i].hi, &v) != 0) return 2;
        *ints[i].dst = (int)v;
    }
    long long v;
    if (cli_int(a, "seed", (long long)s->seed, 0, 4294967295LL, &v) != 0) return 2;
    s->seed = (uint64_t)v;
    if (cli_int(a, "max-tokens", s->max_tokens, 0, 1LL << 50, &v) != 0) return 2;
    s->max_tokens = v;
    if (cli_flag(a, "no-bos")) s->prepend_bos = false;
    const char *from = cli_value(a, "alive-from");
    if (from && strcmp(from, "pass") != 0 && strcmp(from, "sae") != 0)
        return cli_usage_error(&cmd, "--alive-from must be pass or sae, got '%s'", from);
    if (from) s->alive_from_sae = strcmp(from, "sae") == 0;
    if (cli_value(a, "features") && extract_settings_parse_features(s, cli_value(a, "features")) != 0)
        return 1;
    if (s->offset >= s->window)
        return cli_usage_error(&cmd, "--offset (%d) must be less than --window (%d)", s->offset,
                               s->window);
    if (s->n_explain + s->n_score_top > s->top_k)
        return cli_usage_error(&cmd, "--n-explain + --n-score-top (%d) exceeds --top-k (%d)",
                               s->n_explain + s->n_score_top, s->top_k);
    return 0;
}


static void print_summary(const struct extract_summary *sum, const char *out_dir) {
    printf("wrote     %d examples file(s) in %s", sum->n_written, out_dir);
    if (sum->n_skipped) printf(" (%d complete, skipped)", sum->n_skipped);
    printf("\n");
    if (sum->n_written)
        printf("scanned   %lld tokens in %.1f s (%.0f tok/s)\n", (long long)sum->n_tokens,
               sum->seconds, sum->seconds > 0 ? (double)sum->n_tokens / sum->seconds : 0.0);
}

int cmd_extract(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    struct config cfg = {0};
    struct extract_settings s;
    extract_settings_default(&s);
    const char *cfg_path = cli_value(&a, "config");
    char out_buf[4096];
    struct pipeline_paths paths;
    const char *model = cli_value(&a, "model"), *tokens = cli_value(&a, "tokens");
    const char *out = cli_value(&a, "out");
    char **listed = NULL;
    int n_listed = 0;
    rc = 0;
    if (cfg_path) {
        if (config_load(&cfg, cfg_path) != 0 || extract_settings_from_config(&cfg, &s) != 0) {
            rc = cli_fail();
            goto done;
        }
        const char *root = cfg_str(&cfg, "results_dir"), *exp = cfg_str(&cfg, "experiment");
        snprintf(out_buf, sizeof out_buf, "%s/%s/examples", root, exp);
        /* what the config leaves empty is where `run` puts it */
        if (pipeline_paths(&cfg, &paths) != 0 ||
            pipeline_paths_require(&cfg, &paths, !model, false, !tokens) != 0) {
            rc = cli_fail();
            goto done;
        }
        if (!model) model = paths.model;
        if (!tokens) tokens = paths.eval_tokens;
        if (!out) out = out_buf;
    }
    rc = apply_options(&a, &s);
    if (rc == 1) rc = cli_fail();
    if (rc) goto done;
    if (!model || !tokens || !out) {
        rc = cli_usage_error(&cmd, "--model, --tokens and --out are required (or --config)");
        goto done;
    }
    if (a.n_positional == 0) {
        if (!cfg_path) {
            rc = cli_usage_error(&cmd, "give at least one SAE file");
            goto done;
        }
        /* the config's sweep, as `run` extracts it */
        if (pipeline_sae_files(&cfg, &listed, &n_listed) != 0) {
            rc = cli_fail();
            goto done;
        }
        for (int i = 0; i < n_listed; i++) {
            if (file_exists(listed[i])) continue;
            err_set("%s: this SAE of the sweep is not trained yet: run `autointerp train %s` "
                    "first, or name SAE files",
                    listed[i], cfg_path);
            rc = cli_fail();
            goto done;
        }
    }
    struct extract_job job = {
        .model_path = model, .tokens_path = tokens, .out_dir = out,
        .sae_paths = listed ? (const char *const *)listed : (const char *const *)a.positional,
        .n_saes = listed ? n_listed : a.n_positional, .force = cli_flag(&a, "force"),
    };
    struct extract_summary sum;
    if (extract_run(&s, &job, &sum) != 0) rc = cli_fail();
    else print_summary(&sum, out);
done:
    if (listed) pipeline_paths_free(listed, n_listed);
    extract_settings_free(&s);
    if (cfg_path) config_free(&cfg);
    cli_args_free(&a);
    return rc;
}
