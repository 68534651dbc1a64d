/* report.c: the report stage's entry point (see report.h): settings, then
 * collect (analysis.c), then every writer. */
#include "report/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "report/analysis.h"
#include "report/html.h"
#include "report/plots.h"
#include "report/sbuf.h"
#include "report/summary.h"
#include "report/tables.h"
#include "util/error.h"
#include "util/log.h"

void report_settings_default(struct report_settings *s) {
    memset(s, 0, sizeof *s);
    s->results_dir = "results";
    s->resamples = BOOT_DEFAULT_RESAMPLES;
    s->level = BOOT_DEFAULT_LEVEL;
    s->geometry = true;
    s->html = true;
}

int report_settings_from_config(const struct config *cfg, struct report_settings *s) {
    report_settings_default(s);
    s->results_dir = cfg_str(cfg, "results_dir");
    s->experiment = cfg_str(cfg, "experiment");
    s->resamples = (size_t)cfg_int(cfg, "report.resamples");
    s->level = cfg_num(cfg, "report.level");
    s->seed = (unsigned long)cfg_int(cfg, "report.seed");
    s->tokenizer = cfg_str(cfg, "data.tokenizer");
    s->geometry = cfg_bool(cfg, "report.geometry");
    s->html = cfg_bool(cfg, "report.html");
    const cJSON *pairs = cfg_node(cfg, "report.pairs");
    int n = cJSON_GetArraySize(pairs);
    if (n > 0) {
        s->pinned = xcalloc((size_t)(2 * n), sizeof *s->pinned);
        if (!s->pinned) return -1;
        for (int k = 0; k < n; k++) {
            const cJSON *p = cJSON_GetArrayItem(pairs, k);
            /* the schema guarantees [string, string] */
            s->pinned[2 * k] = cJSON_GetArrayItem(p, 0)->valuestring;
            s->pinned[2 * k + 1] = cJSON_GetArrayItem(p, 1)->valuestring;
        }
        s->n_pinned = n;
    }
    if (!s->experiment[0]) {
        report_settings_free(s);
        return err_set("experiment: must be set for the report (results go to "
                       "<results_dir>/<experiment>/report)");
    }
    return 0;
}

void report_settings_free(struct report_settings *s) {
    free(s->pinned);
    s->pinned = NULL;
    s->n_pinned = 0;
}

static int sub_dir(char *buf, size_t n, const char *dir, const char *name) {
    if ((size_t)snprintf(buf, n, "%s/%s", dir, name) >= n) return err_set("%s: path too long", dir);
    return mkdir_p(buf);
}

int report_run(const struct report_settings *s, struct report_outcome *out) {
    memset(out, 0, sizeof *out);
    double t0 = now_seconds();
    struct report_data d;
    if (report_collect(s, &d) != 0) return -1;
    int rc = 0;
    if (s->out_dir)
        snprintf(out->out_dir, sizeof out->out_dir, "%s", s->out_dir);
    else
        snprintf(out->out_dir, sizeof out->out_dir, "%s/report", d.exp_dir);
    char tables[1100], plots[1100], path[1100];
    rc = mkdir_p(out->out_dir);
    if (rc == 0) rc = sub_dir(tables, sizeof tables, out->out_dir, "tables");
    if (rc == 0) rc = sub_dir(plots, sizeof plots, out->out_dir, "plots");
    if (rc == 0) rc = report_write_csv(&d, tables);
    if (rc == 0) rc = report_write_plots(&d, plots);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/summary.json", out->out_dir);
        rc = report_write_summary(&d, path);
    }
    if (rc == 0 && s->html) rc = report_write_html(&d, out->out_dir, s->tokenizer);
    if (rc == 0) {
        struct sbuf b;
        sbuf_init(&b);
        snprintf(path, sizeof path, "%s/report.md", out->out_dir);
        rc = report_markdown(&d, "plots", &b);
        if (rc == 0) rc = sbuf_write_file(&b, path);
        sbuf_free(&b);
    }
    out->n_saes = d.sweep.n;
    out->n_with_scores = d.n_with_scores;
    out->n_pairs = d.n_pairs;
    for (int i = 0; i < d.n_pairs; i++)
        out->n_compared += d.pairs[i].compared;
    out->n_geometry = d.n_geom;
    out->sweep_missing = !d.have_sweep;
    report_data_free(&d);
    out->seconds = now_seconds() - t0;
    if (rc != 0) return err_prefix("report in %s", out->out_dir);
    return 0;
}
