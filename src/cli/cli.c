/* cli.c: option parsing shared by every subcommand (see cli.h).
 *
 * A small parser of our own rather than getopt_long: it knows each command's
 * table, so it can print a usage that lists exactly that command's options, accept
 * `--name=value` and `--name value` alike, and reject unknown options with exit
 * code 2 the same way everywhere.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "util/error.h"
#include "util/log.h"

const char *autointerp_commit = "unknown";

static const struct cli_opt common_opts[] = {
    {"help", 'h', NULL, "show this help and exit"},
    {"quiet", 'q', NULL, "only errors on stderr"},
    {"verbose", 'v', NULL, "debug messages on stderr"},
    {"threads", 0, "N", "BLAS and worker threads (default: all cores)"},
    {0},
};

static void print_opts(FILE *f, const struct cli_opt *opts) {
    for (const struct cli_opt *o = opts; o && o->name; o++) {
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        fprintf(f, "  %-28s %s\n", left, o->help);
    }
}

void cli_print_help(const struct cli_command *cmd) {
    printf("usage: %s\n\n%s\n", cmd->usage, cmd->summary);
    if (cmd->description) printf("\n%s\n", cmd->description);
    printf("\noptions:\n");
    print_opts(stdout, cmd->opts);
    print_opts(stdout, common_opts);
}

int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "autointerp %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\n(see `autointerp %s --help`)\n", cmd->usage, cmd->name);
    return 2;
}

int cli_fail(void) {
    fprintf(stderr, "autointerp: error: %s\n", err_msg()[0] ? err_msg() : "unknown error");
    return 1;
}

void cli_apply_threads(int threads) {
    if (threads > 0) openblas_set_num_threads(threads);
}

static int find_opt(const struct cli_opt *opts, const char *name, size_t len, char short_name) {
    for (int i = 0; opts && opts[i].name; i++) {
        if (short_name ? opts[i].short_name == short_name
                       : (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0))
            return i;
    }
    return -1;
}

static int parse_args(const struct cli_command *cmd, int argc, char **argv, struct cli_args *a);

/* On any outcome but CLI_GO_ON the positional array is freed here, so callers
 * only free on the path where they go on. */
int cli_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_args *a) {
    int rc = parse_args(cmd, argc, argv, a);
    if (rc != CLI_GO_ON) cli_args_free(a);
    return rc;
}

static int parse_args(const struct cli_command *cmd, int argc, char **argv, struct cli_args *a) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->positional = calloc((size_t)argc + 1, sizeof(char *));
    if (!a->positional) return cli_usage_error(cmd, "out of memory");
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (only_positional || arg[0] != '-' || arg[1] == 0) {
            a->positional[a->n_positional++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = true;
            continue;
        }
        const char *name;
        size_t len;
        const char *inline_val = NULL;
        char short_name = 0;
        if (arg[1] == '-') {
            name = arg + 2;
            const char *eq = strchr(name, '=');
            len = eq ? (size_t)(eq - name) : strlen(name);
            if (eq) inline_val = eq + 1;
        } else {
            if (arg[2] != 0) return cli_usage_error(cmd, "unknown option '%s'", arg);
            short_name = arg[1];
            name = arg + 1;
            len = 1;
        }
        const struct cli_opt *opt = NULL;
        int idx = find_opt(cmd->opts, name, len, short_name);
        bool common = false;
        if (idx >= 0) {
            opt = &cmd->opts[idx];
        } else {
            idx = find_opt(common_opts, name, len, short_name);
            if (idx < 0) return cli_usage_error(cmd, "unknown option '%s'", arg);
            opt = &common_opts[idx];
            common = true;
        }
        const char *val = NULL;
        if (opt->arg) {
            if (inline_val)
                val = inline_val;
            else if (i + 1 < argc)
                val = argv[++i];
            else
                return cli_usage_error(cmd, "option --%s needs a value (%s)", opt->name, opt->arg);
        } else if (inline_val) {
            return cli_usage_error(cmd, "option --%s takes no value", opt->name);
        }
        if (!common) {
            a->values[idx] = val;
            a->counts[idx]++;
            continue;
        }
        if (strcmp(opt->name, "help") == 0) {
            cli_print_help(cmd);
            return 0;
        } else if (strcmp(opt->name, "quiet") == 0) {
            log_set_level(LOG_ERROR);
        } else if (strcmp(opt->name, "verbose") == 0) {
            log_set_level(LOG_DEBUG);
        } else if (strcmp(opt->name, "threads") == 0) {
            char *end;
            errno = 0;
            long t = strtol(val, &end, 10);
            if (errno || *end || t < 1 || t > 1024)
                return cli_usage_error(cmd, "--threads must be an integer from 1 to 1024, got '%s'",
                                       val);
            a->threads = (int)t;
        }
    }
    if (a->n_positional < cmd->min_positional)
        return cli_usage_error(cmd, "expected at least %d argument%s, got %d", cmd->min_positional,
                               cmd->min_positional == 1 ? "" : "s", a->n_positional);
    if (cmd->max_positional >= 0 && a->n_positional > cmd->max_positional)
        return cli_usage_error(cmd, "expected at most %d argument%s, got %d ('%s')",
                               cmd->max_positional, cmd->max_positional == 1 ? "" : "s",
                               a->n_positional, a->positional[cmd->max_positional]);
    cli_apply_threads(a->threads);
    return CLI_GO_ON;
}

static int opt_index(const struct cli_args *a, const char *name) {
    for (int i = 0; a->cmd->opts && a->cmd->opts[i].name; i++)
        if (strcmp(a->cmd->opts[i].name, name) == 0) return i;
    return -1;
}

const char *cli_value(const struct cli_args *a, const char *name) {
    int i = opt_index(a, name);
    return i >= 0 ? a->values[i] : NULL;
}

bool cli_flag(const struct cli_args *a, const char *name) {
    int i = opt_index(a, name);
    return i >= 0 && a->counts[i] > 0;
}

int cli_int(const struct cli_args *a, const char *name, long long def, long long lo, long long hi,
            long long *out) {
    const char *v = cli_value(a, name);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) {
        cli_usage_error(a->cmd, "--%s must be an integer from %lld to %lld, got '%s'", name, lo, hi,
                        v);
        return -1;
    }
    *out = x;
    return 0;
}

int cli_double(const struct cli_args *a, const char *name, double def, double *out) {
    const char *v = cli_value(a, name);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || end == v) {
        cli_usage_error(a->cmd, "--%s must be a number, got '%s'", name, v);
        return -1;
    }
    *out = x;
    return 0;
}

void cli_args_free(struct cli_args *a) {
    free(a->positional);
    a->positional = NULL;
}
