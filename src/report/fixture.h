/* fixture.h: a synthetic experiment for the report's tests and benchmark.
 *
 * Why in the library: the unit tests, the benchmark (tests/bench/bench_report.c)
 * and the Python references all need the same experiment on disk, built from
 * nothing, in milliseconds. It writes, under <results_dir>/<experiment>/:
 *
 *   saes/sweep.json     per layer and seed, six SAEs with fixed metrics:
 *                         local  λ 1: L0 80, CE inc 0.050   λ 4:   L0 30, CE inc 0.200
 *                         e2e    λ 0.1: L0 25, CE inc 0.060 λ 0.5: L0 10, CE inc 0.150
 *                         e2e_ds λ 1: L0 40, CE inc 0.045   λ 5:   L0 15, CE inc 0.120
 *                       (alive = d_sae - 3·index, L0 and CE scaled by 1 + 0.1·layer)
 *   scores/<sae>.jsonl  n_features features in the score stage's record layout:
 *                       scores ~ Normal(mean by type: local 0.30, e2e 0.33, e2e_ds
 *                       0.40; sd 0.2) clipped to [-1, 1], from a seeded splitmix64;
 *                       feature k (k = 0, 1, ...; ids 7k + 3) fails with reason
 *                       "wrong_count" when k % 17 == 5, gets no score
 *                       ("constant_simulation") when k % 23 == 11, and feature 0
 *                       appears twice (a failed line, then the scored line that wins).
 *   saes/<sae>.h5       (sae_files) real SAE files, d_in x d_sae, random decoder
 *                       from sae_init; local SAEs also get near-duplicate directions.
 *
 * With html_inputs, also what the feature browser shows (for SAEs with scores):
 *   fixture-tokenizer.bin  a llama2.c tokenizer: <unk> <s> </s>, the 256 byte
 *                       tokens, then FIXTURE_WORDS (including "<script>" and
 *                       other markup, so escaping is exercised)
 *   examples/<sae>.h5   the sampled features (ids 7k + 3, density, max
 *                       activation) and per feature n_explain explain, n_score_top
 *                       score-top and n_random random windows of `window` tokens;
 *                       feature k's explain window 0 holds the token "<script>"
 *   explanations/<sae>.jsonl  the explain stage's records (provider "openai"),
 *                       feature k = 1 explained as "<b>bold</b> & <script>...";
 *                       each with request_sha256 and a matching llm-cache entry
 *   llm-cache/<ab>/<key>.json the exact request (system + user message) and reply
 *   simulations/<sae>.jsonl   predictions 0..10 for every scored window
 *
 * Fields not set (0) take the defaults in brackets.
 */
#ifndef AUTOINTERP_REPORT_FIXTURE_H
#define AUTOINTERP_REPORT_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct report_fixture {
    const char *results_dir, *experiment;
    int n_layers;       /* [1] layers 1, 2, ... */
    int n_seeds;        /* [1] seeds 0, 1, ... */
    int n_features;     /* [200] per SAE */
    bool no_scores;     /* write no score files */
    int skip_scores_of; /* this many SAEs (from the end) get no score file */
    bool sae_files;
    int d_in, d_sae; /* [16, 64] */
    uint64_t seed;
    bool html_inputs;
    int window;                           /* [16] tokens per window */
    int n_explain, n_score_top, n_random; /* [6, 3, 3] windows per feature */
};

/* The explanation of feature index 1, and the token planted in windows. */
#define FIXTURE_HTML_EXPLANATION "<b>bold</b> & <script>alert(1)</script>"
#define FIXTURE_SCRIPT_TOKEN "<script>"

/* <results_dir>/<experiment>/fixture-tokenizer.bin */
void report_fixture_tokenizer_path(const struct report_fixture *f, char *buf, size_t n);

/* Writes the experiment; returns the number of SAEs, or -1. */
int report_fixture_write(const struct report_fixture *f);

/* The fixed metrics and score mean of sweep entry i (layer index li, type t,
 * lambda index k) as written, for tests that check numbers. */
void report_fixture_metrics(int layer, int type, int k, double *lambda, double *l0,
                            double *ce_increase);

#endif
