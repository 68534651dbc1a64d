/* cmd_explain.c: `autointerp explain`, and the driver the three interpretation
 * commands (explain, simulate, score) share.
 *
 * A thin shell over src/interp/interp.h: settings come from the defaults (the
 * builtin explainer and simulator), or from a config (--config, the form the
 * pipeline uses), then from options, which win. The run directory (--out)
 * holds examples/, explanations/, simulations/ and scores/ as `autointerp run`
 * lays them out; with a config it defaults to <results_dir>/<experiment> and
 * the examples files to those of the config's sweep in its examples/.
 *
 * Exit status: 0 when every SAE was processed (individual features may have
 * failed: they are recorded and counted), 1 when a stage stopped (a local
 * error, or the LLM batch was stopped by 401/402/403/404, a budget cap or a
 * deadline: what finished is kept and a rerun continues), 2 on usage errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "extract/extract.h"
#include "interp/interp.h"
#include "io/atomic.h"
#include "pipeline/pipeline.h"
#include "util/error.h"

static const struct cli_opt opts[] = {
    {"config", 'c', "FILE", "take settings and paths from an experiment config"},
    {"out", 'o', "DIR", "run directory holding explanations/ etc. (default with --config: "
                        "<results_dir>/<experiment>)"},
    {"tokenizer", 't', "PATH", "tokenizer of the examples (default: data.tokenizer)"},
    {"prompts", 0, "DIR", "prompt template directory (default: prompts)"},
    {"provider", 0, "NAME", "builtin or openai"},
    {"base-url", 0, "URL", "OpenAI-compatible API root, e.g. http://127.0.0.1:8080/v1"},
    {"model", 'm', "NAME", "model name sent to the server"},
    {"api-key-env", 0, "VAR", "environment variable holding the API key"},
    {"concurrency", 0, "N", "requests in flight"},
    {"max-features", 0, "N", "only the first N sampled features of each SAE"},
    {"retry-failed", 0, NULL, "redo features whose last result is a failure"},
    {"no-cache", 0, NULL, "do not read or write the LLM response cache"},
    {"cache", 0, "DIR", "LLM response cache directory"},
    {0},
};

static const struct cli_command cmd = {
    .name = "explain",
    .summary = "explain each sampled feature from its top-activating windows",
    .usage = "autointerp explain -t TOKENIZER -o RUN_DIR [options] EXAMPLES.h5...\n"
             "       autointerp explain --config FILE [options] [EXAMPLES.h5...]",
    .description =
        "For every sampled feature of each examples file (one per SAE), shows the explain\n"
        "windows to the explainer as token<TAB>activation lines (activations scaled to\n"
        "0..10) with the templates of --prompts, and records one explanation per feature\n"
        "in RUN_DIR/explanations/<sae>.jsonl as soon as it arrives. Features already\n"
        "explained with the same request are skipped, so an interrupted run continues\n"
        "where it stopped. The builtin provider works offline.",
    .opts = opts,
    .min_positional = 0,
    .max_positional = -1,
};

/* ---- options shared by the three commands ---- */

struct interp_cli {
    struct cli_args a;
    struct config cfg;
    bool have_cfg;
    struct interp_settings s;
    struct llm_budget budget;
    char run_dir[4096];
    const char *tokenizer;
    char **listed;
    int n_listed;
};

static int apply_endpoint(struct interp_cli *x, struct interp_endpoint *e) {
    struct cli_args *a = &x->a;
    const char *provider = cli_value(a, "provider");
    if (provider) {
        if (strcmp(provider, "builtin") != 0 && strcmp(provider, "openai") != 0)
            return cli_usage_error(a->cmd, "--provider must be builtin or openai, got '%s'", provider);
        e->builtin = strcmp(provider, "builtin") == 0;
    }
    const char *v;
    if ((v = cli_value(a, "base-url")) && interp_settings_set(&x->s, &e->llm.base_url, v) != 0) return 1;
    if ((v = cli_value(a, "model")) && interp_settings_set(&x->s, &e->llm.model, v) != 0) return 1;
    if ((v = cli_value(a, "api-key-env")) && interp_settings_set(&x->s, &e->llm.api_key_env, v) != 0)
        return 1;
    long long n;
    if (cli_int(a, "concurrency", e->llm.concurrency, 1, 1024, &n) != 0) return 2;
    e->llm.concurrency = (int)n;
    if (cli_flag(a, "no-cache")) e->llm.cache_dir = NULL;
    if ((v = cli_value(a, "cache")) && interp_settings_set(&x->s, &e->llm.cache_dir, v) != 0) return 1;
    return 0;
}

static int apply_mode(struct interp_cli *x) {
    struct cli_args *a = &x->a;
    const char *mode = cli_value(a, "mode"), *api = cli_value(a, "logprobs-api");
    if (mode) {
        if (sim_mode_parse(mode, &x->s.mode) != 0) return cli_usage_error(a->cmd, "%s", err_msg());
        x->s.simulator.builtin = x->s.mode == SIM_BUILTIN;
    } else if (cli_value(a, "provider")) {
        if (x->s.simulator.builtin) x->s.mode = SIM_BUILTIN;
        else if (x->s.mode == SIM_BUILTIN) x->s.mode = SIM_JSON;
    }
    if (api) {
        if (strcmp(api, "chat") != 0 && strcmp(api, "completions") != 0)
            return cli_usage_error(a->cmd, "--logprobs-api must be chat or completions, got '%s'", api);
        x->s.logprobs_api = strcmp(api, "chat") == 0 ? LOGPROBS_CHAT : LOGPROBS_COMPLETIONS;
    }
    long long n;
    if (cli_int(a, "top-logprobs", x->s.top_logprobs, 1, 20, &n) != 0) return 2;
    x->s.top_logprobs = (int)n;
    return 0;
}

static int apply_options(struct interp_cli *x, enum interp_stage stage) {
    struct cli_args *a = &x->a;
    const char *v;
    if ((v = cli_value(a, "prompts")) && interp_settings_set(&x->s, &x->s.prompts_dir, v) != 0) return 1;
    long long n;
    if (cli_int(a, "max-features", 0, 0, 1LL << 30, &n) != 0) return 2;
    x->s.max_features = (int)n;
    x->s.retry_failed = cli_flag(a, "retry-failed");
    int rc = 0;
    if (stage == INTERP_EXPLAIN) rc = apply_endpoint(x, &x->s.explainer);
    if (stage == INTERP_SIMULATE) rc = apply_endpoint(x, &x->s.simulator);
    if (rc == 0 && stage == INTERP_SIMULATE) rc = apply_mode(x);
    if ((v = cli_value(a, "tokenizer"))) x->tokenizer = v;
    if ((v = cli_value(a, "out"))) snprintf(x->run_dir, sizeof x->run_dir, "%s", v);
    return rc;
}

static int load_config(struct interp_cli *x, const char *path) {
    if (config_load(&x->cfg, path) != 0) return -1;
    x->have_cfg = true;
    interp_settings_free(&x->s);
    if (interp_settings_from_config(&x->cfg, &x->s) != 0) return -1;
    snprintf(x->run_dir, sizeof x->run_dir, "%s/%s", cfg_str(&x->cfg, "results_dir"),
             cfg_str(&x->cfg, "experiment"));
    if (*cfg_str(&x->cfg, "data.tokenizer")) x->tokenizer = cfg_str(&x->cfg, "data.tokenizer");
    x->budget = (struct llm_budget){.max_requests = cfg_int(&x->cfg, "budget.max_requests"),
                                    .max_tokens = cfg_int(&x->cfg, "budget.max_tokens"),
                                    .max_cost_usd = cfg_num(&x->cfg, "budget.max_cost_usd")};
    x->s.budget = &x->budget;
    return 0;
}

/* The examples file of every SAE of the config's sweep, in plan order (as `run`
 * takes them): <run_dir>/examples/<sae name>.h5. */
static int list_examples(struct interp_cli *x) {
    char **saes;
    int n;
    if (pipeline_sae_files(&x->cfg, &saes, &n) != 0) return -1;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/examples", x->run_dir);
    x->listed = calloc((size_t)n + 1, sizeof *x->listed);
    int rc = x->listed ? 0 : err_set("out of memory");
    for (int i = 0; rc == 0 && i < n; i++) {
        x->listed[i] = extract_output_path(dir, saes[i]);
        if (!x->listed[i]) rc = -1;
        else x->n_listed++;
        if (rc == 0 && !file_exists(x->listed[i]))
            rc = err_set("%s: this SAE of the sweep has no examples yet: run `autointerp extract "
                         "--config CONFIG` first, or name examples files",
                         x->listed[i]);
    }
    pipeline_paths_free(saes, n);
    if (rc == 0 && n == 0) rc = err_set("the config's sweep has no SAEs");
    return rc;
}

/* ---- output ---- */

static const char *verb(enum interp_stage stage) {
    return stage == INTERP_EXPLAIN ? "explained" : stage == INTERP_SIMULATE ? "simulated" : "scored";
}

static void print_counts(const char *label, enum interp_stage stage, const struct interp_counts *c) {
    printf("%-24s %d %s", label, c->n_ok, verb(stage));
    if (stage == INTERP_SCORE) printf(", %d no score", c->n_no_score);
    printf(", %d failed, %d done before, %d pending (of %d)", c->n_failed, c->n_done_before,
           c->n_pending, c->n_features);
    for (int i = 0; i < c->n_reasons; i++)
        printf("%s%s %d%s", i == 0 ? " [" : ", ", c->reasons[i].name, c->reasons[i].n,
               i + 1 == c->n_reasons ? "]" : "");
    printf("\n");
}

static void print_llm(const struct llm_stats *l) {
    if (l->requests == 0) return;
    printf("llm: %lld requests, %lld HTTP calls, %lld retries, %lld cache hits, %lld prompt + "
           "%lld completion tokens, $%.4f\n",
           l->requests, l->http_calls, l->retries, l->cache_hits, l->prompt_tokens,
           l->completion_tokens, l->cost_usd);
}

static int run(struct interp_cli *x, enum interp_stage stage) {
    const char *const *files = (const char *const *)x->a.positional;
    int n = x->a.n_positional;
    if (n == 0) {
        if (!x->have_cfg) return cli_usage_error(x->a.cmd, "give at least one examples file (or --config)");
        if (list_examples(x) != 0) return cli_fail();
        files = (const char *const *)x->listed;
        n = x->n_listed;
    }
    if (!x->run_dir[0]) return cli_usage_error(x->a.cmd, "--out is required (or --config)");
    struct interp_counts *per = calloc((size_t)n, sizeof *per), total;
    if (!per) return cli_fail();
    struct interp_job job = {files, n, x->tokenizer, x->run_dir};
    int rc = interp_run(stage, &x->s, &job, per, &total);
    for (int i = 0; i < n; i++) {
        if (per[i].n_features == 0 && i > 0) break;
        char *name = interp_sae_name(files[i]);
        print_counts(name ? name : files[i], stage, &per[i]);
        free(name);
    }
    if (n > 1) print_counts("total", stage, &total);
    print_llm(&total.llm);
    free(per);
    return rc == 0 ? 0 : cli_fail();
}

int interp_command(int stage, const struct cli_command *c, int argc, char **argv) {
    struct interp_cli x;
    memset(&x, 0, sizeof x);
    int rc = cli_parse(c, argc, argv, &x.a);
    if (rc != CLI_GO_ON) return rc;
    interp_settings_default(&x.s);
    const char *cfg_path = cli_value(&x.a, "config");
    if (cfg_path && load_config(&x, cfg_path) != 0) rc = cli_fail();
    else {
        rc = apply_options(&x, (enum interp_stage)stage);
        if (rc == 1) rc = cli_fail();
        if (rc == 0) rc = run(&x, (enum interp_stage)stage);
    }
    for (int i = 0; i < x.n_listed; i++) free(x.listed[i]);
    free(x.listed);
    interp_settings_free(&x.s);
    if (x.have_cfg) config_free(&x.cfg);
    cli_args_free(&x.a);
    return rc;
}

int cmd_explain(int argc, char **argv) { return interp_command(INTERP_EXPLAIN, &cmd, argc, argv); }
