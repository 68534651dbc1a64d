/* pipeline.h: `autointerp run CONFIG`: every stage in order, resumable.
 *
 *   tokenize → lm-train (when model.path is empty) → train → extract →
 *   explain → simulate → score → report
 *
 * A run lives in <results_dir>/<experiment>/:
 *   config.json        the resolved config of the latest run
 *   manifest.json      config hash, program version and commit, library versions,
 *                      host, per-stage status and wall time, LLM requests, tokens,
 *                      cost and failures (rewritten atomically after each stage)
 *   stages/<stage>.json  the stamp of each finished stage: its input hash and
 *                      outputs
 *   data/ model/ saes/ examples/ explanations/ simulations/ scores/ report/
 *   llm-cache/         responses keyed by request hash (no key material)
 *
 * Skipping: a stage's input hash is the SHA-256 of its stage name, the config
 * keys it depends on, the content hashes of the input files it reads that do
 * not come from an earlier stage, and the input hash of the stage before it (so
 * a change upstream invalidates everything after it). A stage whose stamp has
 * the same hash and whose outputs all exist is skipped. Inside a stage, work is
 * resumable at a finer grain (SAE checkpoints, per-SAE example files, one JSONL
 * line per feature and the response cache), so a run killed at any point loses
 * at most the unit in flight and pays no LLM request twice.
 */
#ifndef AUTOINTERP_PIPELINE_PIPELINE_H
#define AUTOINTERP_PIPELINE_PIPELINE_H

#include <stdbool.h>

#include "config/config.h"

struct pipeline_opts {
    bool force;            /* ignore stamps (stages still reuse their own finished units) */
    const char *until;     /* stop after this stage (NULL = all) */
    const char *version, *commit; /* recorded in the manifest (the CLI knows them) */
    int threads;           /* recorded; 0 = default */
};

struct pipeline_stage_report {
    const char *name;
    const char *status; /* "ran", "skipped", "failed", "not reached" */
    double seconds;
};

/* Runs the pipeline; fills *n_stages reports (static storage, valid until the
 * next call). The experiment directory is created. */
int pipeline_run(const struct config *cfg, const struct pipeline_opts *opts,
                 const struct pipeline_stage_report **reports, int *n_stages);

/* <results_dir>/<experiment> (malloc'd). */
char *pipeline_exp_dir(const struct config *cfg);

/* Where a run of cfg keeps what the config leaves empty, so that each stage's
 * own command finds what `run` made: model.path, else <exp>/model (lm-train's
 * output); data.train_tokens / data.eval_tokens, else <exp>/data/train.h5 and
 * <exp>/data/eval.h5. */
#define PIPELINE_PATH_MAX 4096
struct pipeline_paths {
    char model[PIPELINE_PATH_MAX], train_tokens[PIPELINE_PATH_MAX], eval_tokens[PIPELINE_PATH_MAX];
    bool model_from_run; /* model.path was empty */
};
int pipeline_paths(const struct config *cfg, struct pipeline_paths *p);
/* For a stage's own command: each path asked for (model, train, eval) that the
 * config left empty must exist already; else an error naming the key, the
 * default and the `run` stage that makes it. */
int pipeline_paths_require(const struct config *cfg, const struct pipeline_paths *p, bool model,
                           bool train, bool eval);

/* The SAE files of cfg's sweep, in plan order (<results_dir>/<experiment>/saes/
 * <name>.h5, whether trained yet or not): what `run` extracts and interprets.
 * Free with pipeline_paths_free. */
int pipeline_sae_files(const struct config *cfg, char ***paths, int *n);
void pipeline_paths_free(char **paths, int n);

/* Content hash of a file, or of a directory's regular files (sorted by name;
 * checkpoints and temporary files excluded). */
int hash_path(const char *path, char hex[65]);

#endif
