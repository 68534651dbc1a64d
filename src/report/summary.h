/* summary.h: summary.json, the machine-readable result of a report.
 *
 * Nightly jobs diff this file between runs, so its shape is a contract: keys
 * are only ever added within a schema_version; renaming, removing or changing
 * the meaning of a key bumps it. Numbers that do not exist (a metric not
 * measured, a CI that could not be formed) are null, never NaN or absent.
 * Arrays keep the sweep's order; pairs keep the order of report/pairs.h.
 *
 * schema "autointerp-report-summary", schema_version 1:
 *
 * {
 *   "schema": "autointerp-report-summary", "schema_version": 1,
 *   "generator": "autointerp <version>",
 *   "experiment": "<name>",
 *   "inputs": {"sweep": "<path>" | null,          null: no sweep table yet
 *              "scores_dir": "<path>", "examples_dir": "<path>"},
 *   "bootstrap": {"resamples": B, "level": 0.95, "seed": <master seed>,
 *                 "intervals": ["percentile", "bca"],
 *                 "p_value": "pooled_null_two_sided", "seed_rule":
 *                 "(seed + fnv1a32(key)) mod 2^32; key = SAE name or 'a|b'"},
 *   "status": {"sweep": "ok" | "missing", "scores": "ok" | "partial" | "not_computed",
 *              "geometry": "ok" | "partial" | "skipped" | "not_computed"},
 *   "saes": [{
 *       "name", "type" ("local"|"e2e"|"e2e_ds"), "layer", "lambda", "seed",
 *       "metrics": {"l0", "alive", "alive_fraction", "d_sae", "ce_orig", "ce_sae",
 *                   "ce_increase", "kl", "explained_variance", "mse"},
 *       "scores": {
 *           "status": "ok" | "not_computed",
 *           "n_sampled", "n_results", "n_scored", "n_no_score", "n_failed",  (ints; null if
 * not_computed) "no_score_reasons": {"<reason>": count, ...}, "failed_reasons": {"<reason>": count,
 * ...}, "mean", "median", "sd", "min", "max",           (null with < 2 scores) "ci": null |
 * {"estimate", "se", "percentile": [lo, hi], "bca": [lo, hi], "z0", "accel", "degenerate" (bool),
 * "resamples", "level", "seed"}, "note": "<why something is missing>" | null, "histogram": {"lo":
 * -1, "hi": 1, "counts": [20 ints]}
 *       }
 *   }],
 *   "pairs": [{
 *       "criterion": "l0" | "ce_increase" | "pinned",
 *       "a": "<name>", "b": "<name>", "layer_a", "layer_b", "type_a", "type_b",
 *       "l0": [a, b], "ce_increase": [a, b], "alive": [a, b], "lambda": [a, b],
 *       "log_ratio": {"l0": log(b/a), "ce_increase": log(b/a)},
 *       "gap": |log ratio| of the criterion (pinned: of ce_increase),
 *       "mean_a", "mean_b", "n_a", "n_b",
 *       "difference": null | {"estimate": mean_b - mean_a, "se",
 *                             "percentile": [lo, hi], "bca": [lo, hi],
 *                             "p_value", "n_extreme", "resamples", "level",
 *                             "seed", "p_seed"},
 *       "note": "<why no difference>" | null
 *   }],
 *   "geometry": {
 *       "status": "ok" | "partial" | "skipped" | "not_computed",
 *       "note": "<SAEs left out and why>" | null,
 *       "histogram": {"lo": 0, "hi": 1, "bins": 50},
 *       "entries": [{
 *           "kind": "self" | "cross_type" | "cross_seed",
 *           "sae": "<name>",      directions of this dictionary ...
 *           "other": "<name>" | null,   ... compared with this one (null: itself)
 *           "n", "mean", "sd", "min", "q05", "q25", "median", "q75", "q95", "max",
 *           "counts": [50 ints], "below": n < 0, "above": n > 1
 *       }]
 *   },
 *   "timing": {"statistics_seconds", "geometry_seconds"}
 * }
 */
#ifndef AUTOINTERP_REPORT_SUMMARY_H
#define AUTOINTERP_REPORT_SUMMARY_H

#include <cjson/cJSON.h>

#include "report/analysis.h"

#define REPORT_SUMMARY_SCHEMA "autointerp-report-summary"
#define REPORT_SUMMARY_VERSION 1

/* The summary as a cJSON tree (caller deletes), and written to path. */
cJSON *report_summary_json(const struct report_data *d);
int report_write_summary(const struct report_data *d, const char *path);

/* Overall statuses, shared with the Markdown and HTML writers. */
const char *report_scores_status(const struct report_data *d); /* ok|partial|not_computed */
const char *
report_geometry_status(const struct report_data *d); /* ok|partial|skipped|not_computed */

#endif
