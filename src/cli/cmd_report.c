/* cmd_report.c: `autointerp report CONFIG`.
 *
 * Builds <results_dir>/<experiment>/report/ from whatever earlier stages have
 * written (src/report/report.h): tables, summary.json, SVG plots and the HTML
 * report with its feature browser. The config's report.* keys give the
 * bootstrap settings and pinned pairs; options here override them for one run.
 * Prints what was written and a one-line status per part on stdout.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "config/config.h"
#include "report/report.h"

static const struct cli_opt opts[] = {
    {"out", 'o', "DIR", "write the report here instead of <results_dir>/<experiment>/report"},
    {"resamples", 'B', "N", "bootstrap resamples (default: report.resamples)"},
    {"seed", 0, "S", "bootstrap master seed (default: report.seed)"},
    {"level", 0, "P", "confidence level in (0,1) (default: report.level)"},
    {"no-geometry", 0, NULL, "skip dictionary geometry (does not read SAE decoders)"},
    {"no-html", 0, NULL, "skip the HTML report and feature pages"},
    {0},
};

static const struct cli_command cmd = {
    .name = "report",
    .summary = "tables, bootstrap CIs, matched pairs, plots and geometry of a run",
    .usage = "autointerp report [options] CONFIG",
    .description =
        "Reads saes/sweep.json, scores/<sae>.jsonl, examples/<sae>.h5 and the SAE files of\n"
        "the experiment and writes report.md, summary.json, tables/*.csv, plots/*.svg,\n"
        "index.html and a feature browser page per SAE (sae/<name>.html; tokens shown\n"
        "with data.tokenizer).\n"
        "Per SAE: sampled/scored/failed/no-score counts, mean/median/sd of the scores and\n"
        "the bootstrap CI of the mean (percentile and BCa). Pairs (closest in L0 and in\n"
        "CE increase per layer and pair of types, or report.pairs): difference of means\n"
        "with CIs and a pooled-null p-value. Missing scores are reported as not yet\n"
        "computed; the sweep table and Pareto plots are written regardless.",
    .opts = opts,
    .min_positional = 1,
    .max_positional = 1,
};

static int apply_options(const struct cli_args *a, struct report_settings *s) {
    long long B, seed;
    double level;
    if (cli_int(a, "resamples", (long long)s->resamples, 100, 100000000LL, &B) != 0 ||
        cli_int(a, "seed", (long long)s->seed, 0, 4294967295LL, &seed) != 0 ||
        cli_double(a, "level", s->level, &level) != 0)
        return 2;
    if (!(level > 0 && level < 1)) return cli_usage_error(&cmd, "--level must be in (0,1)");
    s->resamples = (size_t)B;
    s->seed = (unsigned long)seed;
    s->level = level;
    s->out_dir = cli_value(a, "out");
    if (cli_flag(a, "no-geometry")) s->geometry = false;
    if (cli_flag(a, "no-html")) s->html = false;
    s->n_threads = a->threads;
    return 0;
}

int cmd_report(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) {
        cli_args_free(&a); /* cli_parse keeps its allocation on a usage error */
        return rc;
    }
    cli_apply_threads(a.threads);
    struct config cfg;
    if (config_load(&cfg, a.positional[0]) != 0) {
        cli_args_free(&a);
        return cli_fail();
    }
    struct report_settings s;
    struct report_outcome out;
    if (report_settings_from_config(&cfg, &s) != 0) {
        rc = cli_fail();
    } else if ((rc = apply_options(&a, &s)) != 0) {
        /* usage error already printed */
    } else if (report_run(&s, &out) != 0) {
        rc = cli_fail();
    } else {
        printf("report    %s\n", out.out_dir);
        if (out.sweep_missing)
            printf("sweep     not yet trained (no saes/sweep.json)\n");
        else
            printf("sweep     %d SAE%s\n", out.n_saes, out.n_saes == 1 ? "" : "s");
        if (out.n_with_scores == 0)
            printf("scores    not yet computed\n");
        else
            printf("scores    %d of %d SAEs\n", out.n_with_scores, out.n_saes);
        printf("pairs     %d (%d compared)\n", out.n_pairs, out.n_compared);
        if (s.geometry)
            printf("geometry  %d distributions\n", out.n_geometry);
        else
            printf("geometry  skipped\n");
        printf("seconds   %.2f\n", out.seconds);
        rc = 0;
    }
    report_settings_free(&s);
    config_free(&cfg);
    cli_args_free(&a);
    return rc;
}
