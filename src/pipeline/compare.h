/* compare.h: what changed between two runs of the same experiment (nightly jobs).
 *
 * Reads <dir>/report/summary.json (schema autointerp-report-summary v1) and
 * <dir>/manifest.json of a previous and a current run and writes a short
 * Markdown diff: per SAE the mean score with its BCa CI then and now, the
 * failure rate then and now, and the LLM cost of both runs. It flags:
 *   - the current run did not finish (manifest status other than "ok"),
 *   - a failure rate (failed / sampled features of an SAE) above a threshold,
 *   - a score that moved beyond its CI: the new mean outside the old 95% CI or
 *     the old mean outside the new one,
 *   - an SAE present before and missing now.
 * Any flag makes the comparison "regressed" (the CLI exits 3 on it).
 */
#ifndef AUTOINTERP_PIPELINE_COMPARE_H
#define AUTOINTERP_PIPELINE_COMPARE_H

#include <stdbool.h>
#include <stdio.h>

struct compare_result {
    int n_flags;
    int n_saes_compared;
};

/* prev_dir may be NULL (first night): then only the current run is checked. */
int compare_runs(const char *prev_dir, const char *cur_dir, double max_failure_rate, FILE *out,
                 struct compare_result *res);

#endif
