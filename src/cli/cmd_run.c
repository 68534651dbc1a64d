/* cmd_run.c: `autointerp run CONFIG`: the whole pipeline, resumable.
 *
 * Stage order, skipping and the results layout are src/pipeline/pipeline.h's;
 * this prints the per-stage table at the end and where the results are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "pipeline/pipeline.h"
#include "util/error.h"

static const struct cli_opt opts[] = {
    {"force", 0, NULL, "rerun every stage even when its stamp matches (finished units are still reused)"},
    {"until", 0, "STAGE", "stop after this stage (tokenize, lm-train, train, extract, ...)"},
    {"results-dir", 0, "DIR", "write under DIR instead of the config's results_dir (nightly runs)"},
    {0},
};

static const struct cli_command cmd = {
    .name = "run",
    .summary = "run the whole pipeline of a config, skipping what is done",
    .usage = "autointerp run [options] CONFIG",
    .description =
        "Runs tokenize, lm-train (when model.path is empty), train, extract, explain,\n"
        "simulate, score and report into <results_dir>/<experiment>/. A stage whose inputs\n"
        "and config are unchanged since it last finished is skipped; a killed run resumes\n"
        "where it stopped. manifest.json records the config hash, versions, host, per-stage\n"
        "wall time and LLM usage.",
    .opts = opts,
    .min_positional = 1,
    .max_positional = 1,
};

int cmd_run(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    struct config cfg;
    if (config_load(&cfg, a.positional[0]) != 0) {
        cli_args_free(&a);
        return cli_fail();
    }
    if (cli_value(&a, "results-dir"))
        cJSON_ReplaceItemInObject(cfg.root, "results_dir", cJSON_CreateString(cli_value(&a, "results-dir")));
    struct pipeline_opts po = {
        .force = cli_flag(&a, "force"),
        .until = cli_value(&a, "until"),
        .version = AUTOINTERP_VERSION,
        .commit = autointerp_commit,
        .threads = a.threads,
    };
    if (a.threads == 0 && cfg_int(&cfg, "threads") > 0) cli_apply_threads((int)cfg_int(&cfg, "threads"));
    const struct pipeline_stage_report *reports;
    int n = 0;
    rc = pipeline_run(&cfg, &po, &reports, &n);
    if (rc != 0) cli_fail();
    printf("%-10s %-12s %10s\n", "stage", "status", "seconds");
    for (int i = 0; i < n; i++)
        printf("%-10s %-12s %10.1f\n", reports[i].name, reports[i].status, reports[i].seconds);
    char *dir = pipeline_exp_dir(&cfg);
    if (dir) printf("results: %s (manifest.json)\n", dir);
    free(dir);
    config_free(&cfg);
    cli_args_free(&a);
    return rc ? 1 : 0;
}
