/* plots.h: the report's SVG plots (drawn with report/svg.h).
 *
 *   pareto_L<layer>.svg         L0 against CE-loss increase, one series per SAE
 *                               type, points joined in L0 order, hover = SAE
 *                               name; log axes when a metric spans 10x or more
 *   scores.svg                  mean score per SAE with its BCa CI as error bar
 *   score_hist.svg              one histogram of scores per SAE ([-1, 1], 20 bins)
 *   geometry_self_L<layer>.svg  nearest-other-direction cosine, one panel per SAE
 *   geometry_cross_L<layer>.svg highest cosine to the other dictionary, one panel
 *                               per direction (from -> to) of the matched pairs
 *                               and of SAEs differing only in seed (the tables
 *                               hold every cross-type pair)
 * Plots whose data do not exist (no scores yet, geometry skipped) are not
 * listed, and report.md / index.html embed only what report_plot_list gives.
 */
#ifndef AUTOINTERP_REPORT_PLOTS_H
#define AUTOINTERP_REPORT_PLOTS_H

#include "report/analysis.h"
#include "report/sbuf.h"

enum rep_plot_kind { PLOT_PARETO, PLOT_SCORES, PLOT_SCORE_HIST, PLOT_GEOM_SELF, PLOT_GEOM_CROSS };

struct rep_plot {
    enum rep_plot_kind kind;
    int layer;     /* for the per-layer plots */
    char file[64]; /* "pareto_L6.svg" */
    char title[160];
};

/* The plots this report has (*out malloc'd). */
int report_plot_list(const struct report_data *d, struct rep_plot **out, int *n);

/* One plot's SVG document. */
int report_plot_svg(const struct report_data *d, const struct rep_plot *p, struct sbuf *out);

/* Colour of an SAE type (legend and markers). */
const char *report_type_color(int type);

/* Write every listed plot into dir (which must exist). */
int report_write_plots(const struct report_data *d, const char *dir);

#endif
