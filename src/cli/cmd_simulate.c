/* cmd_simulate.c: `autointerp simulate`: predict activations from explanations.
 *
 * Option handling and the run loop are shared with explain (interp_command in
 * cmd_explain.c); this file holds the command's options and help.
 */
#include "cli/cli.h"
#include "interp/interp.h"

static const struct cli_opt opts[] = {
    {"config", 'c', "FILE", "take settings and paths from an experiment config"},
    {"out", 'o', "DIR", "run directory holding explanations/ and simulations/ (default with "
                        "--config: <results_dir>/<experiment>)"},
    {"tokenizer", 't', "PATH", "tokenizer of the examples (default: data.tokenizer)"},
    {"prompts", 0, "DIR", "prompt template directory (default: prompts)"},
    {"mode", 0, "MODE", "json, logprobs or builtin (builtin needs no server)"},
    {"logprobs-api", 0, "API", "logprobs mode: chat (default) or completions (echo; vLLM)"},
    {"top-logprobs", 0, "N", "logprobs mode: alternatives per position (1..20, default 20)"},
    {"provider", 0, "NAME", "builtin or openai"},
    {"base-url", 0, "URL", "OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1"},
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
    .name = "simulate",
    .summary = "predict every scored window's activations from the explanations",
    .usage = "autointerp simulate -t TOKENIZER -o RUN_DIR [options] EXAMPLES.h5...\n"
             "       autointerp simulate --config FILE [options] [EXAMPLES.h5...]",
    .description =
        "For every explained feature, the simulator sees the explanation and the tokens of\n"
        "each held-out window (score-top, score-random, score-quantile) and predicts an\n"
        "activation 0..10 per token; it never sees a true activation. Modes: json (the\n"
        "model returns a list of integers, validated: exactly one per token, each 0..10),\n"
        "logprobs (expected value over the probabilities of 0..10 at each token, from\n"
        "chat top_logprobs or from prompt logprobs with echo), builtin (offline baseline).\n"
        "Results go to RUN_DIR/simulations/<sae>.jsonl, one line per feature; features\n"
        "already simulated with the same requests are skipped.",
    .opts = opts,
    .min_positional = 0,
    .max_positional = -1,
};

int cmd_simulate(int argc, char **argv) { return interp_command(INTERP_SIMULATE, &cmd, argc, argv); }
