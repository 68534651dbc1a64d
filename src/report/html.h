/* html.h: the static HTML report and its feature browser.
 *
 * <out>/index.html: the sweep table (each SAE linking to its page), the
 * Pareto plots, per-SAE scores with CIs, matched pairs and geometry, with the
 * SVG plots inlined. <out>/sae/<file>.html: one page per SAE that has an
 * examples file or a score file, listing its sampled features in a table
 * (sortable by feature id, score, density and maximum activation; filterable
 * by explanation text); a click on a row opens the feature: its explanation,
 * its score or why it has none, density, maximum activation, the explain
 * windows and the scored windows with each token's activation as colour
 * intensity and the simulator's prediction beside the truth, and the exact
 * prompt and reply of the explanation, read from the LLM cache entry named by
 * the explain record's request_sha256 (the cache stores the request body and
 * the response only: no header, so never a key). A simulation window record
 * that carries its own request_sha256 gets its prompt and reply the same way.
 *
 * Self-contained: one file per page, inline CSS and JavaScript, plots inlined,
 * no fonts, images or scripts from anywhere; a Content-Security-Policy meta tag
 * (default-src 'none') makes the browser refuse any fetch even if one crept in.
 * Links between pages are relative.
 *
 * Escaping: every dataset or LLM string in the markup goes through sbuf_xml;
 * the per-feature data sit in a <script type="application/json"> element,
 * written by sbuf_json_str, which writes <, > and & as \u003c, \u003e, \u0026,
 * so no text can end the element; the page's script builds the feature views
 * with createElement / textContent only (never innerHTML). A window holding
 * "<script>" or an explanation holding markup shows as that text.
 *
 * Size: the page holds every window of every sampled feature once: tokens as
 * indices into a page-local vocabulary, activations with 3 significant digits,
 * predictions as given. For 200 features x 40 windows x 64 tokens that is
 * about 5-7 MB; the table is plain HTML, and a feature's windows are built only
 * when it is opened, so the page is usable as soon as it is parsed
 * (tests/unit/test_report_html.c measures both on that size).
 *
 * Tokens are shown with the tokenizer given (report settings: data.tokenizer):
 * render.h's display strings with "␣" shown as a space; without a tokenizer, as
 * "#<id>".
 */
#ifndef AUTOINTERP_REPORT_HTML_H
#define AUTOINTERP_REPORT_HTML_H

#include <stddef.h>

#include "interp/render.h"
#include "report/analysis.h"
#include "report/sbuf.h"

/* File name of an SAE's page inside <out>/sae/: the name with every byte
 * outside [A-Za-z0-9._-] replaced by '_', plus ".html". */
void report_sae_page_name(const char *sae_name, char *buf, size_t n);

/* 1 when SAE i gets a page (it has an examples or a score file). */
int report_sae_has_page(const struct report_data *d, int i);

/* One SAE's page. vocab may be NULL (tokens shown by id). */
struct report_page_stats {
    int n_features, n_windows;
    long n_tokens;
    size_t bytes;
};
int report_sae_page(const struct report_data *d, int i, const struct render_vocab *vocab,
                    struct sbuf *out, struct report_page_stats *st);

/* index.html. */
int report_index_html(const struct report_data *d, struct sbuf *out);

/* Everything: index.html and sae/<file>.html. tokenizer may be NULL or "". */
int report_write_html(const struct report_data *d, const char *out_dir, const char *tokenizer);

#endif
