/* cmd_train.c: `autointerp train CONFIG`: the SAE sweep of a config.
 *
 * A thin shell over sae_sweep_run (src/sae/sweep.h): it loads the config, lets
 * --model / --train-tokens / --eval-tokens stand in for the config's paths
 * (until the pipeline fills them in), and prints where the results went.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "pipeline/pipeline.h"
#include "config/config.h"
#include "sae/sweep.h"

static const struct cli_opt opts[] = {
    {"model", 'm', "PATH", "subject model (overrides model.path)"},
    {"train-tokens", 0, "FILE", "training token dataset (overrides data.train_tokens)"},
    {"eval-tokens", 0, "FILE", "evaluation token dataset (overrides data.eval_tokens)"},
    {"max-steps", 0, "N", "stop each SAE after N steps of this run; it resumes next time"},
    {"list", 0, NULL, "print the planned SAEs (name, spec hash) and exit"},
    {0},
};

static const struct cli_command cmd = {
    .name = "train",
    .summary = "train the SAE sweep of a config (local, e2e, e2e+ds)",
    .usage = "autointerp train [options] CONFIG",
    .description =
        "Trains every SAE of the config's sweep (sae.layers x sae.types x lambdas x\n"
        "sae.seeds) that is not complete yet, evaluates it on the evaluation tokens and\n"
        "writes <results_dir>/<experiment>/saes/<name>.h5 per SAE plus sweep.csv and\n"
        "sweep.json. An interrupted run resumes from the last checkpoint and finishes\n"
        "with the same weights as an uninterrupted one (same --threads).",
    .opts = opts,
    .min_positional = 1,
    .max_positional = 1,
};

static int list_plan(const struct config *cfg, const struct sae_sources *src) {
    struct sae_sweep sw;
    if (sae_sweep_plan(cfg, src, &sw) < 0) return cli_fail();
    for (int i = 0; i < sw.n; i++) printf("%s\t%s\n", sw.specs[i].name, sw.specs[i].hash);
    sae_sweep_free(&sw);
    return 0;
}

int cmd_train(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    long long max_steps = 0;
    if (cli_int(&a, "max-steps", 0, 0, (long long)1e15, &max_steps) < 0) {
        cli_args_free(&a);
        return 2;
    }
    struct config cfg;
    if (config_load(&cfg, a.positional[0]) < 0) {
        cli_args_free(&a);
        return cli_fail();
    }
    if (a.threads == 0 && cfg_int(&cfg, "threads") > 0)
        cli_apply_threads((int)cfg_int(&cfg, "threads"));
    /* what the config leaves empty is where `run` puts it */
    struct pipeline_paths paths;
    if (pipeline_paths(&cfg, &paths) != 0 ||
        pipeline_paths_require(&cfg, &paths, !cli_value(&a, "model"),
                               !cli_value(&a, "train-tokens"), !cli_value(&a, "eval-tokens")) != 0) {
        config_free(&cfg);
        cli_args_free(&a);
        return cli_fail();
    }
    struct sae_sources src = {
        .model_path = cli_value(&a, "model") ? cli_value(&a, "model") : paths.model,
        .train_tokens =
            cli_value(&a, "train-tokens") ? cli_value(&a, "train-tokens") : paths.train_tokens,
        .eval_tokens = cli_value(&a, "eval-tokens") ? cli_value(&a, "eval-tokens") : paths.eval_tokens,
    };
    if (cli_flag(&a, "list")) {
        rc = list_plan(&cfg, &src);
    } else {
        struct sae_sweep_result res;
        if (sae_sweep_run(&cfg, &src, max_steps, &res) < 0) {
            rc = cli_fail();
        } else {
            char *dir = sae_sweep_dir(&cfg);
            printf("trained %d, already complete %d; results in %s (sweep.csv, sweep.json)\n",
                   res.trained, res.skipped, dir ? dir : "?");
            free(dir);
            rc = 0;
        }
    }
    config_free(&cfg);
    cli_args_free(&a);
    return rc;
}
