/* interp.h: the explain, simulate and score stages (Bills et al. 2023 protocol).
 *
 * For one SAE, from its examples file (src/extract/examples.h):
 *
 *   explain   per sampled feature, its explain-split windows are shown to the
 *             explainer as "token<TAB>activation" lines (activations scaled to
 *             integers floor(10·a/max), max over the shown windows; plus a
 *             zeros-filtered view with context when few tokens are active),
 *             and the reply is cleaned into one explanation (reply.h).
 *   simulate  per explained feature and per scored window (score-top, then
 *             score-random, then score-quantile; the first n of each split in
 *             rank order), the simulator sees the explanation and the window's
 *             tokens only and predicts 0..10 per token, in one of three modes:
 *             json (structured output), logprobs (expected value over the
 *             digits' probabilities; chat or completions-with-echo), builtin.
 *   score     Pearson correlation of true and predicted activations over all
 *             scored windows of a feature, per window and per split (score.h).
 *
 * Each stage appends one JSONL line per feature as soon as that feature is
 * finished (a killed run keeps every finished line), and first reads what an
 * earlier run left: a feature is done when its last line carries the same
 * request_sha256 / input_sha256 as the work it would do now (same prompts,
 * model, settings, examples and upstream results), and either succeeded or
 * failed (a failed one is redone only with retry_failed). Requests that were
 * never sent (the run was stopped: a 401/402, a budget cap, a deadline) write
 * no line, so the next run simply does them. Record layouts: explain.c,
 * simulate.c, score_stage.c (and the lead's report reads the score lines).
 *
 * Library code: no printing; counts come back in struct interp_counts, and a
 * stopped LLM batch makes the stage return -1 with err_msg saying why, after
 * recording everything that did finish.
 */
#ifndef AUTOINTERP_INTERP_INTERP_H
#define AUTOINTERP_INTERP_INTERP_H

#include <stdbool.h>

#include "config/config.h"
#include "extract/examples.h"
#include "interp/render.h"
#include "llm/llm.h"

enum sim_mode { SIM_JSON = 0, SIM_LOGPROBS = 1, SIM_BUILTIN = 2 };
enum logprobs_api { LOGPROBS_CHAT = 0, LOGPROBS_COMPLETIONS = 1 };

const char *sim_mode_name(enum sim_mode m);          /* "json", "logprobs", "builtin" */
int sim_mode_parse(const char *s, enum sim_mode *m); /* -1 with err_msg when unknown */

/* One role's endpoint: the builtin provider, or any OpenAI-compatible server. */
struct interp_endpoint {
    bool builtin;
    struct llm_endpoint_config llm; /* strings borrowed from the settings' store */
};

struct interp_settings {
    const char *prompts_dir;       /* template directory (prompts.h) */
    int n_explain;                 /* explain windows shown per feature */
    int n_score_top, n_score_random, n_score_quantile; /* scored windows per split */
    int max_explanation_bytes;     /* longer replies are failures */
    double sparse_threshold;       /* zeros-filtered view when active fraction < this */
    int sparse_context;            /* tokens of context before each active token */
    enum sim_mode mode;
    enum logprobs_api logprobs_api;
    int top_logprobs;              /* alternatives per position in logprobs mode */
    struct interp_endpoint explainer, simulator;
    bool retry_failed;             /* redo features whose last line is a failure */
    int max_features;              /* 0 = every sampled feature, else the first N */
    struct llm_budget *budget;     /* a run-wide budget shared by both roles, or NULL */
    char **store;                  /* strings owned by the settings */
    int n_store;
};

/* Defaults as in src/config/schema.c (builtin explainer and simulator). */
void interp_settings_default(struct interp_settings *s);
/* From a resolved config: interp.*, explainer.*, simulator.*; the LLM cache
 * goes to <results_dir>/<experiment>/llm-cache when interp.cache is true. */
int interp_settings_from_config(const struct config *cfg, struct interp_settings *s);
void interp_settings_free(struct interp_settings *s);
/* Keep a copy of value in the settings and point *field at it. */
int interp_settings_set(struct interp_settings *s, const char **field, const char *value);

#define INTERP_MAX_REASONS 32

struct interp_reason {
    char name[48]; /* failure category: "wrong_count", "http_5xx", "constant_simulation" ... */
    int n;
};

struct interp_counts {
    int n_features;      /* features considered (sampled, after max_features) */
    int n_done_before;   /* already done by an earlier run, skipped */
    int n_ok;            /* explained / simulated / scored by this call */
    int n_no_score;      /* score: a constant vector (reasons say which) */
    int n_failed;        /* recorded as failures by this call */
    int n_pending;       /* not done and not recorded: never sent (run stopped),
                            or their input is missing (no explanation yet) */
    struct interp_reason reasons[INTERP_MAX_REASONS]; /* failures, no-scores and pending */
    int n_reasons;
    struct llm_stats llm; /* requests, tokens, cost, cache hits of this call */
};

void interp_counts_add_reason(struct interp_counts *c, const char *name);

/* The SAE name of an examples file: its base name without ".h5" (malloc'd). */
char *interp_sae_name(const char *examples_path);
/* <run_dir>/<kind>/<sae>.jsonl with kind "explanations", "simulations" or
 * "scores", the layout `autointerp run` uses (malloc'd). */
char *interp_output_path(const char *run_dir, const char *kind, const char *sae);

/* The stages. ex is one SAE's examples; vocab renders its token ids. */
int interp_explain(const struct interp_settings *s, const struct examples *ex,
                   const struct render_vocab *vocab, const char *out_path,
                   struct interp_counts *c);
int interp_simulate(const struct interp_settings *s, const struct examples *ex,
                    const struct render_vocab *vocab, const char *explanations_path,
                    const char *out_path, struct interp_counts *c);
int interp_score(const struct interp_settings *s, const struct examples *ex,
                 const char *explanations_path, const char *simulations_path,
                 const char *out_path, struct interp_counts *c);

/* A stage over several SAEs: loads each examples file (and the tokenizer
 * once, for explain and simulate), runs the stage with the paths of
 * interp_output_path under run_dir (directories created), and sums the
 * counts into *total; per_sae (may be NULL) gets each SAE's counts. Stops at
 * the first SAE whose stage fails. */
enum interp_stage { INTERP_EXPLAIN, INTERP_SIMULATE, INTERP_SCORE };
struct interp_job {
    const char *const *examples; /* examples .h5 files, one per SAE */
    int n_examples;
    const char *tokenizer;       /* tokenizer path (explain, simulate) */
    const char *run_dir;
};
int interp_run(enum interp_stage stage, const struct interp_settings *s,
               const struct interp_job *job, struct interp_counts *per_sae,
               struct interp_counts *total);

#endif
