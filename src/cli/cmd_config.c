/* cmd_config.c: `autointerp config check|schema|hash`.
 *
 * check prints the fully resolved config (every default filled in) so that what a
 * run will do is visible before it starts; schema prints the reference table the
 * README carries, straight from the one table in src/config/schema.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "interp/interp.h"
#include "interp/prompts.h"

static const struct cli_opt opts[] = {{0}};

static const struct cli_command cmd = {
    .name = "config",
    .summary = "check a config and print it fully resolved",
    .usage = "autointerp config check FILE | config hash FILE | config schema",
    .description =
        "check   validate FILE strictly (unknown keys, types, ranges, relations), load its\n"
        "        prompt templates (stderr names their directory) and print the resolved\n"
        "        config with every default filled in\n"
        "hash    print the SHA-256 of the canonical resolved config (what runs record)\n"
        "schema  print every key with its type, default and meaning (Markdown)",
    .opts = opts,
    .min_positional = 1,
    .max_positional = 2,
};

static void print_schema(void) {
    int n;
    const struct cfg_entry *s = config_schema(&n);
    printf("| key | type | default | meaning |\n|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        char type[96];
        if (s[i].type == CFG_ENUM || s[i].type == CFG_ENUM_LIST)
            snprintf(type, sizeof type, "%s: %s", cfg_type_name(s[i].type), s[i].choices);
        else
            snprintf(type, sizeof type, "%s", cfg_type_name(s[i].type));
        printf("| `%s` | %s | `%s` | %s |\n", s[i].key, type, s[i].def, s[i].doc);
    }
}

/* The prompt templates a run of cfg would use load and pass their checks; says
 * on stderr which directory that is. */
static int check_prompts(const struct config *cfg) {
    struct interp_settings s;
    struct prompt_set ps;
    if (interp_settings_from_config(cfg, &s) != 0) return cli_fail();
    int rc = prompt_set_load(&ps, s.prompts_dir);
    interp_settings_free(&s);
    if (rc != 0) return cli_fail();
    fprintf(stderr, "prompts: %s (set sha256 %.12s)\n", ps.dir, ps.sha256);
    prompt_set_free(&ps);
    return 0;
}

int cmd_config(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    const char *action = a.positional[0];
    if (strcmp(action, "schema") == 0) {
        if (a.n_positional != 1) rc = cli_usage_error(&cmd, "schema takes no file");
        else print_schema();
        cli_args_free(&a);
        return rc == CLI_GO_ON ? 0 : rc;
    }
    if (strcmp(action, "check") != 0 && strcmp(action, "hash") != 0) {
        rc = cli_usage_error(&cmd, "unknown action '%s' (check, hash or schema)", action);
        cli_args_free(&a);
        return rc;
    }
    if (a.n_positional != 2) {
        rc = cli_usage_error(&cmd, "%s needs a config FILE", action);
        cli_args_free(&a);
        return rc;
    }
    struct config cfg;
    if (config_load(&cfg, a.positional[1]) != 0) {
        cli_args_free(&a);
        return cli_fail();
    }
    rc = 0;
    if (strcmp(action, "check") == 0) {
        char *json = config_to_json(&cfg);
        if (json) printf("%s\n", json);
        else rc = cli_fail();
        free(json);
        if (rc == 0) rc = check_prompts(&cfg);
    } else {
        char hex[65];
        if (config_hash(&cfg, hex) == 0) printf("%s\n", hex);
        else rc = cli_fail();
    }
    config_free(&cfg);
    cli_args_free(&a);
    return rc;
}
