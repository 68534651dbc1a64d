/* main.c: the autointerp binary: find the subcommand and hand it argv.
 *
 * The table below is the one place that lists the stages; `autointerp --help`
 * prints it. Each entry's function lives in src/cli/cmd_<name>.c.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_version.h>
#include <hdf5.h>

#include "cli/cli.h"
#include "io/h5.h"

struct entry {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
};

static const struct entry commands[] = {
    {"tokenize", cmd_tokenize, "turn text files into an HDF5 token dataset"},
    {"lm-train", cmd_lm_train, "train a small GPT-2 from scratch (Hugging Face layout out)"},
    {"lm-eval", cmd_lm_eval, "cross-entropy, perplexity and speed of a model on tokens"},
    {"train", cmd_train, "train the SAE sweep of a config (local, e2e, e2e+ds)"},
    {"sae-eval", cmd_sae_eval, "L0, alive, CE increase, KL, MSE of an SAE on held-out tokens"},
    {"sae-convert", cmd_sae_convert, "SAELens folder <-> autointerp SAE file, bit-exact"},
    {"extract", cmd_extract, "sample alive features and collect their example windows"},
    {"explain", cmd_explain, "explain each sampled feature from its top-activating windows"},
    {"simulate", cmd_simulate, "predict held-out activations from the explanations"},
    {"score", cmd_score, "correlate simulated and true activations per feature"},
    {"report", cmd_report, "bootstrap CIs, matched pairs, tables, plots and HTML pages"},
    {"run", cmd_run, "run the whole pipeline of a config, skipping what is done"},
    {"compare", cmd_compare, "compare two runs of an experiment (nightly jobs)"},
    {"inspect", cmd_inspect, "summarise any file autointerp reads or writes"},
    {"config", cmd_config, "check a config and print it fully resolved"},
};

static void print_version(void) {
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    printf("autointerp %s (commit %s)\n", AUTOINTERP_VERSION, AUTOINTERP_COMMIT);
    printf("libraries: %s, cJSON %s, HDF5 %u.%u.%u, GSL %s\n", curl_version(), cJSON_Version(),
           maj, min, rel, GSL_VERSION);
}

static void print_help(FILE *f) {
    fprintf(f, "usage: autointerp <command> [options] [args]\n\n"
               "Train sparse autoencoders on a transformer's residual stream (local, e2e,\n"
               "e2e+downstream) and score their features with LLM-based automated\n"
               "interpretability.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`autointerp <command> --help` documents each command.\n"
               "options: --help, --version\n");
}

int main(int argc, char **argv) {
    h5_init();
    /* GSL's default handler aborts; every GSL call's status is checked instead. */
    gsl_set_error_handler_off();
    autointerp_commit = AUTOINTERP_COMMIT;
    if (argc < 2) {
        print_help(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_help(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        print_version();
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(name, commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "autointerp: unknown command '%s'\n\n", name);
    print_help(stderr);
    return 2;
}
