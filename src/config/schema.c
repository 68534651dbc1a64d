/* schema.c: every key an experiment config may hold, with type, range, default
 * and documentation. This table is the one place defaults live; the README's
 * config reference is printed from it (`autointerp config schema`).
 *
 * Defaults follow Braun et al. 2024 where the paper fixes a value (Adam lr 5e-4,
 * warmup then cosine decay to 10%, kl_coeff 0.5, ~200 features per dictionary,
 * 100,000 bootstrap resamples) and the Bills et al. 2023 protocol for the
 * interpretability part; sizes that depend on the model (ratio, token budgets)
 * have defaults for small models and are set explicitly in the ready configs.
 */
#include "config/config.h"

#define BIG 1e18
#define NONE 0, 0, NULL

static const struct cfg_entry schema[] = {
    /* run */
    {"experiment", CFG_STR, "\"\"", NONE,
     "name of the run; results go to <results_dir>/<experiment>/ (letters, digits, . _ -)"},
    {"results_dir", CFG_PATH, "\"results\"", NONE, "where experiments are written"},
    {"seed", CFG_INT, "0", 0, 4294967295.0, NULL, "master seed; every stage derives its own from it"},
    {"threads", CFG_INT, "0", 0, 1024, NULL, "BLAS threads (0 = all cores)"},

    /* data */
    {"data.tokenizer", CFG_PATH, "\"\"", NONE,
     "GPT-2 tokenizer directory (encoder.json + vocab.bpe, or vocab.json + merges.txt) or a "
     "llama2.c tokenizer .bin"},
    {"data.train_text", CFG_STR_LIST, "[]", NONE,
     "text files tokenized for model and SAE training (split into documents at "
     "data.separator)"},
    {"data.eval_text", CFG_STR_LIST, "[]", NONE,
     "text files for evaluation and feature extraction; empty = hold out data.eval_fraction "
     "of the training documents"},
    {"data.separator", CFG_STR, "\"<|endoftext|>\"", NONE,
     "document separator inside text files (\"\\n%\\n\" for fortune files)"},
    {"data.eval_fraction", CFG_NUM, "0.1", 0.001, 0.5, NULL,
     "fraction of training documents held out for evaluation when eval_text is empty"},
    {"data.train_tokens", CFG_PATH, "\"\"", NONE,
     "an existing token dataset (.h5) to use instead of tokenizing train_text"},
    {"data.eval_tokens", CFG_PATH, "\"\"", NONE,
     "an existing token dataset (.h5) to use instead of eval_text"},
    {"data.context", CFG_INT, "128", 2, 1 << 20, NULL,
     "tokens per sequence for SAE training, evaluation and extraction"},
    {"data.prepend_bos", CFG_BOOL, "true", NONE,
     "start each sequence with BOS when the tokenizer has one (Llama)"},

    /* model */
    {"model.path", CFG_PATH, "\"\"", NONE,
     "subject model: GPT-2 directory (config.json + model.safetensors) or llama2.c .bin; empty "
     "= train one with model.train"},
    {"model.train.n_layer", CFG_INT, "4", 1, 96, NULL, "lm-train: blocks"},
    {"model.train.n_embd", CFG_INT, "128", 8, 16384, NULL, "lm-train: residual width"},
    {"model.train.n_head", CFG_INT, "4", 1, 256, NULL, "lm-train: attention heads (divides n_embd)"},
    {"model.train.context", CFG_INT, "128", 8, 8192, NULL, "lm-train: n_positions and training length"},
    {"model.train.batch", CFG_INT, "16", 1, 4096, NULL, "lm-train: sequences per step"},
    {"model.train.steps", CFG_INT, "2000", 1, 1e9, NULL, "lm-train: optimiser steps (upper bound)"},
    {"model.train.minutes", CFG_NUM, "0", 0, 1e6, NULL,
     "lm-train: stop after this many minutes (0 = no time limit)"},
    {"model.train.lr", CFG_NUM, "0.001", 1e-8, 1, NULL, "lm-train: peak learning rate (AdamW)"},
    {"model.train.warmup_steps", CFG_INT, "100", 0, 1e9, NULL, "lm-train: linear warmup steps"},
    {"model.train.weight_decay", CFG_NUM, "0.1", 0, 10, NULL, "lm-train: AdamW decay on matrices"},
    {"model.train.clip", CFG_NUM, "1.0", 0, 1e6, NULL, "lm-train: gradient-norm clip (0 = none)"},
    {"model.train.eval_every", CFG_INT, "100", 1, 1e9, NULL, "lm-train: validation every N steps"},
    {"model.train.eval_tokens", CFG_INT, "16384", 0, 1e12, NULL,
     "lm-train: held-out tokens per validation (0 = the whole held-out part)"},
    {"model.train.checkpoint_every", CFG_INT, "200", 1, 1e9, NULL, "lm-train: checkpoint every N steps"},

    /* sae */
    {"sae.layers", CFG_INT_LIST, "[1]", 0, 1000, NULL,
     "blocks whose hook_resid_pre the SAEs read (one sweep per layer)"},
    {"sae.types", CFG_ENUM_LIST, "[\"local\", \"e2e\", \"e2e_ds\"]", 0, 0, "local|e2e|e2e_ds",
     "settings to train: local MSE, end-to-end KL, end-to-end + downstream MSE"},
    {"sae.ratio", CFG_INT, "50", 1, 1024, NULL, "dictionary size = ratio x d_model (paper: 60 GPT-2, 50 small)"},
    {"sae.local.lambdas", CFG_NUM_LIST, "[1, 4, 10, 30]", 0, 1e6, NULL,
     "sparsity coefficients of the local sweep"},
    {"sae.e2e.lambdas", CFG_NUM_LIST, "[0.1, 0.5, 2]", 0, 1e6, NULL,
     "sparsity coefficients of the e2e sweep"},
    {"sae.e2e_ds.lambdas", CFG_NUM_LIST, "[1, 5, 20]", 0, 1e6, NULL,
     "sparsity coefficients of the e2e+ds sweep"},
    {"sae.e2e_ds.kl_coeff", CFG_NUM, "0.5", 0, 1e6, NULL, "e2e+ds: weight of the KL term"},
    {"sae.e2e_ds.ds_coeff", CFG_NUM, "2.5", 0, 1e6, NULL,
     "e2e+ds: total weight of the downstream MSE terms, split evenly over later hooks"},
    {"sae.seeds", CFG_INT_LIST, "[0]", 0, 4294967295.0, NULL,
     "one SAE per seed for each (type, lambda); several seeds allow cross-seed geometry"},
    {"sae.train_tokens", CFG_INT, "2000000", 1, 1e13, NULL, "training tokens per SAE"},
    {"sae.batch", CFG_INT, "16", 1, 65536, NULL, "sequences per optimiser step (before accumulation)"},
    {"sae.grad_accum", CFG_INT, "1", 1, 4096, NULL, "micro-batches accumulated per optimiser step"},
    {"sae.lr", CFG_NUM, "0.0005", 1e-9, 1, NULL, "peak learning rate (Adam)"},
    {"sae.warmup_fraction", CFG_NUM, "0.05", 0, 1, NULL, "linear warmup as a fraction of the steps"},
    {"sae.min_lr_fraction", CFG_NUM, "0.1", 0, 1, NULL, "cosine decay ends at this fraction of lr"},
    {"sae.clip", CFG_NUM, "1.0", 0, 1e6, NULL, "gradient-norm clip (paper: 10 GPT-2, 1 tiny models; 0 = none)"},
    {"sae.checkpoint_every", CFG_INT, "200", 1, 1e9, NULL, "checkpoint every N optimiser steps"},
    {"sae.eval_tokens", CFG_INT, "200000", 1, 1e12, NULL, "held-out tokens for SAE metrics"},

    /* extract */
    {"extract.n_features", CFG_INT, "200", 1, 1e7, NULL,
     "alive features sampled per dictionary (fewer, with a warning, if fewer are alive)"},
    {"extract.features", CFG_INT_LIST, "[]", 0, 1e9, NULL, "explicit feature ids instead of sampling"},
    {"extract.tokens", CFG_INT, "0", 0, 1e13, NULL, "evaluation tokens scanned (0 = the whole eval set)"},
    {"extract.alive_from", CFG_ENUM, "\"pass\"", 0, 0, "pass|sae",
     "where the alive set to sample from comes from: pass = this pass (every feature encoded, "
     "density and maximum of all), sae = the SAE file's evaluation metrics (only the sampled "
     "features and 10% spares encoded, the sample being those that also fire in this pass: "
     "about 1.8x faster at GPT-2-small size)"},
    {"extract.window", CFG_INT, "64", 2, 4096, NULL, "tokens per example window"},
    {"extract.offset", CFG_INT, "48", 0, 4095, NULL,
     "position of the maximum-activating token inside its window"},
    {"extract.top_k", CFG_INT, "30", 1, 100000, NULL,
     "top-activating windows kept per feature (explain set + held-out top set)"},
    {"extract.n_random", CFG_INT, "10", 0, 100000, NULL, "random windows per feature for scoring"},
    {"extract.n_quantile", CFG_INT, "0", 0, 100000, NULL,
     "activation-quantile windows per feature for scoring (0 = none)"},
    {"extract.quantile_bands", CFG_INT, "5", 1, 1000, NULL,
     "equal-count bands of a feature's nonzero activations the quantile windows are spread over"},
    {"extract.batch", CFG_INT, "0", 0, 65536, NULL,
     "sequences per forward pass during extraction (0 = about 2048 tokens)"},

    /* interpretability protocol */
    {"interp.prompts", CFG_PATH, "\"prompts\"", NONE, "prompt template directory (the default, when absent from the working directory, is the copy beside the binary: ../prompts or ../share/autointerp/prompts)"},
    {"interp.n_explain", CFG_INT, "10", 1, 1000, NULL, "top windows shown to the explainer"},
    {"interp.n_score_top", CFG_INT, "10", 0, 1000, NULL, "held-out top windows the simulator scores"},
    {"interp.n_score_random", CFG_INT, "10", 0, 1000, NULL, "random windows the simulator scores"},
    {"interp.n_score_quantile", CFG_INT, "0", 0, 1000, NULL, "quantile windows the simulator scores"},
    {"interp.max_explanation_bytes", CFG_INT, "400", 10, 100000, NULL,
     "longer explanations are recorded as failures"},
    {"interp.sparse_threshold", CFG_NUM, "0.2", 0, 1, NULL,
     "add a zeros-filtered view to the explainer prompt when fewer than this fraction of the "
     "shown tokens are active"},
    {"interp.sparse_context", CFG_INT, "3", 0, 64, NULL,
     "tokens of context shown before each active token in the zeros-filtered view"},
    {"interp.cache", CFG_BOOL, "true", NONE,
     "cache LLM responses in <results_dir>/<experiment>/llm-cache (a rerun pays nothing twice)"},

    /* explainer and simulator endpoints */
#define ENDPOINT(role, prov, model_def)                                                          \
    {role ".provider", CFG_ENUM, prov, 0, 0, "builtin|openai",                                   \
     "builtin (offline baseline) or openai (any OpenAI-compatible server)"},                     \
        {role ".base_url", CFG_STR, "\"https://api.openai.com/v1\"", NONE,                       \
         "API base URL (vLLM, llama.cpp server, Ollama, OpenRouter: their /v1 URL)"},            \
        {role ".model", CFG_STR, model_def, NONE, "model name sent to the server"},              \
        {role ".api_key_env", CFG_STR, "\"\"", NONE,                                             \
         "environment variable holding the API key (empty = no key; keys are never read "        \
         "from configs)"},                                                                       \
        {role ".headers", CFG_STR_MAP, "{}", NONE, "extra HTTP headers"},                        \
        {role ".temperature", CFG_NUM, "0", 0, 2, NULL, "sampling temperature"},                 \
        {role ".max_tokens", CFG_INT, "400", 1, 1e6, NULL, "completion token limit"},            \
        {role ".seed", CFG_INT, "-1", -1, 4294967295.0, NULL, "request seed (-1 = none sent)"},  \
        {role ".concurrency", CFG_INT, "8", 1, 1024, NULL, "requests in flight"},                \
        {role ".timeout_ms", CFG_INT, "120000", 100, 1e8, NULL, "per-request timeout"},          \
        {role ".max_retries", CFG_INT, "6", 0, 100, NULL, "retries of 429/5xx/timeouts"},        \
        {role ".rpm", CFG_NUM, "0", 0, 1e9, NULL, "requests per minute limit (0 = none)"},       \
        {role ".tpm", CFG_NUM, "0", 0, 1e12, NULL, "tokens per minute limit (0 = none)"},        \
        {role ".price_prompt", CFG_NUM, "0", 0, 1e6, NULL, "USD per million prompt tokens"},     \
        {role ".price_completion", CFG_NUM, "0", 0, 1e6, NULL,                                   \
         "USD per million completion tokens"}
    ENDPOINT("explainer", "\"builtin\"", "\"builtin-explainer\""),
    ENDPOINT("simulator", "\"builtin\"", "\"builtin-simulator\""),
#undef ENDPOINT
    {"simulator.mode", CFG_ENUM, "\"builtin\"", 0, 0, "json|logprobs|builtin",
     "json: a list of numbers per window (any chat model); logprobs: expected value of 0..10 "
     "from token probabilities; builtin: offline"},
    {"simulator.top_logprobs", CFG_INT, "20", 1, 20, NULL, "logprobs mode: alternatives per token"},
    {"simulator.logprobs_api", CFG_ENUM, "\"chat\"", 0, 0, "chat|completions",
     "logprobs mode: chat (the json reply's per-token top_logprobs; OpenAI, llama.cpp) or "
     "completions (prompt logprobs via echo; vLLM)"},

    /* budget */
    {"budget.max_requests", CFG_INT, "0", 0, 1e12, NULL, "stop cleanly after this many requests (0 = none)"},
    {"budget.max_tokens", CFG_INT, "0", 0, 1e15, NULL, "stop cleanly after this many tokens (0 = none)"},
    {"budget.max_cost_usd", CFG_NUM, "0", 0, 1e9, NULL, "stop cleanly at this cost (0 = none)"},

    /* report */
    {"report.resamples", CFG_INT, "100000", 100, 1e8, NULL, "bootstrap resamples"},
    {"report.level", CFG_NUM, "0.95", 0.5, 0.9999, NULL, "confidence level"},
    {"report.seed", CFG_INT, "0", 0, 4294967295.0, NULL, "bootstrap RNG seed (recorded)"},
    {"report.pairs", CFG_PAIR_LIST, "[]", NONE,
     "pinned comparisons [[sae_a, sae_b], ...]; empty = closest in L0 and in CE increase"},
    {"report.geometry", CFG_BOOL, "true", NONE,
     "dictionary geometry (reads every SAE decoder; `report --no-geometry` also turns it off)"},
    {"report.html", CFG_BOOL, "true", NONE,
     "index.html and the feature pages (`report --no-html` also turns them off)"},
};

const struct cfg_entry *config_schema(int *n) {
    *n = (int)(sizeof schema / sizeof *schema);
    return schema;
}
