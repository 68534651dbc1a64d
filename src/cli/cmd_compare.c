/* cmd_compare.c: `autointerp compare [PREVIOUS] CURRENT`: the nightly diff. */
#include <stdio.h>

#include "cli/cli.h"
#include "pipeline/compare.h"

static const struct cli_opt opts[] = {
    {"max-failure-rate", 0, "F", "flag an SAE whose failed fraction of features exceeds F (default 0.1)"},
    {0},
};

static const struct cli_command cmd = {
    .name = "compare",
    .summary = "compare two runs of an experiment (nightly jobs)",
    .usage = "autointerp compare [options] [PREVIOUS_RUN_DIR] CURRENT_RUN_DIR",
    .description =
        "Reads each run's manifest.json and report/summary.json and prints a Markdown diff:\n"
        "mean scores with BCa CIs, failure rates and LLM cost. Exit 0 when nothing is\n"
        "flagged, 3 when the current run did not finish, an SAE's failure rate exceeds the\n"
        "threshold, a mean score moved beyond its CI or an SAE disappeared, 1 on errors.",
    .opts = opts,
    .min_positional = 1,
    .max_positional = 2,
};

int cmd_compare(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    double max_rate;
    if (cli_double(&a, "max-failure-rate", 0.1, &max_rate) != 0) {
        cli_args_free(&a);
        return 2;
    }
    const char *prev = a.n_positional == 2 ? a.positional[0] : NULL;
    const char *cur = a.positional[a.n_positional - 1];
    struct compare_result res;
    rc = compare_runs(prev, cur, max_rate, stdout, &res);
    cli_args_free(&a);
    if (rc != 0) return cli_fail();
    return res.n_flags ? 3 : 0;
}
