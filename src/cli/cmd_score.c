/* cmd_score.c: `autointerp score`: correlation of simulated and true activations.
 *
 * Shares its option handling and run loop with explain (cmd_explain.c). No LLM
 * is involved: the true activations come from the examples files.
 */
#include "cli/cli.h"
#include "interp/interp.h"

static const struct cli_opt opts[] = {
    {"config", 'c', "FILE", "take paths from an experiment config"},
    {"out", 'o', "DIR", "run directory holding explanations/, simulations/ and scores/ "
                        "(default with --config: <results_dir>/<experiment>)"},
    {"max-features", 0, "N", "only the first N sampled features of each SAE"},
    {0},
};

static const struct cli_command cmd = {
    .name = "score",
    .summary = "score each simulation by its correlation with the true activations",
    .usage = "autointerp score -o RUN_DIR [options] EXAMPLES.h5...\n"
             "       autointerp score --config FILE [options] [EXAMPLES.h5...]",
    .description =
        "Score = Pearson correlation between true and simulated activations over all scored\n"
        "windows of a feature (held-out top, random and quantile windows together), with\n"
        "per-window and per-split correlations and r^2. A constant vector is recorded as\n"
        "no_score with its reason, a failed explanation or simulation as failed with its\n"
        "reason: neither is ever a score of 0. Results go to RUN_DIR/scores/<sae>.jsonl.",
    .opts = opts,
    .min_positional = 0,
    .max_positional = -1,
};

int cmd_score(int argc, char **argv) { return interp_command(INTERP_SCORE, &cmd, argc, argv); }
