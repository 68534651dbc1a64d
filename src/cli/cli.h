/* cli.h: the command-line shell over the library.
 *
 * Each subcommand is `int cmd_<name>(int argc, char **argv)` in its own file
 * (src/cli/cmd_<name>.c), declares its options as a table of struct cli_opt and
 * parses them with cli_parse, which adds the options every command shares
 * (--help, --quiet, --verbose, --threads N). Exit codes: 0 success, 1 runtime
 * error (one line naming the file, key or field), 2 usage error (usage printed).
 * Only this layer prints results to stdout or exits.
 */
#ifndef AUTOINTERP_CLI_H
#define AUTOINTERP_CLI_H

#include <stdbool.h>

#define CLI_MAX_OPTS 48

struct cli_opt {
    const char *name;  /* long name without dashes: "out" */
    char short_name;   /* 'o', or 0 */
    const char *arg;   /* metavar for options that take a value ("FILE"), NULL for flags */
    const char *help;
};

struct cli_command {
    const char *name;
    const char *summary;      /* one line for `autointerp --help` */
    const char *usage;        /* "autointerp tokenize [options] TEXT... -o OUT.h5" */
    const char *description;  /* paragraphs shown by `autointerp <cmd> --help` */
    const struct cli_opt *opts; /* terminated by {0} */
    int min_positional, max_positional; /* max -1 = unlimited */
};

struct cli_args {
    const struct cli_command *cmd;
    const char *values[CLI_MAX_OPTS]; /* parallel to cmd->opts; last occurrence wins */
    int counts[CLI_MAX_OPTS];
    char **positional;
    int n_positional;
    int threads; /* --threads, 0 = default */
};

/* Parse argv (argv[0] is the command name). Returns CLI_GO_ON, or an exit code to
 * return right away: 0 after --help, 2 after a usage error (usage printed).
 *     int rc = cli_parse(&cmd, argc, argv, &a);
 *     if (rc != CLI_GO_ON) return rc;                                          */
#define CLI_GO_ON (-1)
int cli_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_args *a);
void cli_args_free(struct cli_args *a);

const char *cli_value(const struct cli_args *a, const char *name);
bool cli_flag(const struct cli_args *a, const char *name);
/* Integer/float option with range check; returns -1 (message printed) on error. */
int cli_int(const struct cli_args *a, const char *name, long long def, long long lo, long long hi,
            long long *out);
int cli_double(const struct cli_args *a, const char *name, double def, double *out);

/* Print "autointerp: <msg>" for the current err_msg() and return 1. */
int cli_fail(void);
/* Print the usage of cmd on stderr, return 2. */
int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cli_print_help(const struct cli_command *cmd);

/* Apply --threads to OpenBLAS (and anything else threaded). */
void cli_apply_threads(int threads);

/* The git commit the binary was built from; main() sets it (only main.o is
 * rebuilt when the commit changes). */
extern const char *autointerp_commit;

/* The subcommands. */
int cmd_tokenize(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_lm_train(int argc, char **argv);
int cmd_lm_eval(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_simulate(int argc, char **argv);
int cmd_score(int argc, char **argv);
/* The driver explain, simulate and score share (cmd_explain.c); stage is an
 * enum interp_stage (interp/interp.h). */
int interp_command(int stage, const struct cli_command *cmd, int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sae_eval(int argc, char **argv);
int cmd_sae_convert(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_compare(int argc, char **argv);

#endif
