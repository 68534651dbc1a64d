/* tables.h: report.md and the CSV tables.
 *
 * report.md follows the paper's tables: the sweep (Tables 2/3: lambda, L0,
 * alive, CE increase per SAE), the per-SAE interpretability scores with both
 * bootstrap CIs, the matched pairs (Table 4: difference of means b - a, CIs,
 * p-value, with both SAEs' L0 and CE increase and the gap), and the geometry
 * summaries, with the SVG plots embedded as images. Missing parts say so in a
 * sentence ("scores: not yet computed").
 *
 * CSV files (RFC 4180, header line, strings quoted, numbers %.10g, empty for a
 * missing number), in <out>/tables/:
 *   sweep.csv     name,type,layer,lambda,seed,l0,alive,alive_fraction,d_sae,
 *                 ce_orig,ce_sae,ce_increase,kl,explained_variance,mse
 *   scores.csv    name,type,layer,status,n_sampled,n_results,n_scored,n_no_score,
 *                 n_failed,mean,median,sd,min,max,se,pct_lo,pct_hi,bca_lo,bca_hi,
 *                 resamples,level,seed,note
 *   failures.csv  name,status,reason,count       (no_score and failed, by reason)
 *   pairs.csv     criterion,layer,a,b,type_a,type_b,l0_a,l0_b,ce_increase_a,
 *                 ce_increase_b,log_ratio_l0,log_ratio_ce,gap,mean_a,mean_b,n_a,
 *                 n_b,diff,se,pct_lo,pct_hi,bca_lo,bca_hi,p_value,seed,p_seed,note
 *   geometry.csv  kind,sae,other,n,mean,sd,min,q05,q25,median,q75,q95,max,below,above
 */
#ifndef AUTOINTERP_REPORT_TABLES_H
#define AUTOINTERP_REPORT_TABLES_H

#include "report/analysis.h"
#include "report/sbuf.h"

/* Sweep indices in display order: layer, type (local, e2e, e2e_ds), lambda,
 * seed. idx has d->sweep.n entries. */
void report_display_order(const struct report_data *d, int *idx);

/* Distinct layers of the sweep, ascending (malloc'd; *n may be 0). */
int *report_layers(const struct report_data *d, int *n);

/* report.md text; plots_dir is the relative directory of the SVGs ("plots"). */
int report_markdown(const struct report_data *d, const char *plots_dir, struct sbuf *out);

/* Write the five CSV files into dir (which must exist). */
int report_write_csv(const struct report_data *d, const char *dir);

#endif
