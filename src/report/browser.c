/* browser.c: one feature-browser page per SAE (see html.h).
 *
 * Inputs per SAE, all optional: examples/<sae>.h5 (features, density, maximum
 * activation, windows), explanations/, simulations/ and scores/<sae>.jsonl
 * (the interp stages' records; last line of a feature wins) and the LLM cache
 * entries the records point to. The feature list is the examples file's
 * sampled features, or the score file's features when there is no examples
 * file. Records are kept as cJSON (a few KB per feature) while the page is
 * written, then freed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "extract/examples.h"
#include "io/atomic.h"
#include "io/jsonl.h"
#include "llm/cache.h"
#include "report/html.h"
#include "report/html_assets.h"
#include "util/error.h"
#include "util/log.h"

struct fview {
    int32_t id;
    int ex_index; /* index in the examples' features, or -1 */
    cJSON *expl, *sim, *score;
};

struct page {
    const struct report_data *d;
    const struct rep_sae *sae;
    struct examples ex;
    bool have_ex;
    int n;
    struct fview *f; /* [n] in sample order */
    int *by_id;      /* [n] indices of f sorted by id */
    const struct render_vocab *vocab;
    int *vocab_map;    /* token id -> page vocabulary index, -1 */
    int n_vocab_ids;   /* size of vocab_map */
    int32_t *page_ids; /* page vocabulary index -> token id */
    int n_page_vocab;
    char *cache_dir;
};

void report_sae_page_name(const char *sae_name, char *buf, size_t n) {
    size_t k = 0;
    for (const char *c = sae_name; *c && k + 6 < n; c++) {
        char x = *c;
        bool ok = (x >= 'a' && x <= 'z') || (x >= 'A' && x <= 'Z') || (x >= '0' && x <= '9') ||
                  x == '.' || x == '_' || x == '-';
        buf[k++] = ok ? x : '_';
    }
    snprintf(buf + k, n - k, ".html");
}

static char *exp_path(const struct report_data *d, const char *kind, const char *name,
                      const char *ext) {
    size_t n = strlen(d->exp_dir) + strlen(kind) + strlen(name) + strlen(ext) + 4;
    char *p = xmalloc(n);
    if (p) snprintf(p, n, "%s/%s/%s%s", d->exp_dir, kind, name, ext);
    return p;
}

int report_sae_has_page(const struct report_data *d, int i) {
    return d->dict[i].has_scores || examples_is_complete(d->dict[i].examples_path, NULL);
}

/* ---------------------------------------------------------------------------
 * Loading.
 */

static int cmp_by_id(const void *a, const void *b, void *ctx) {
    const struct fview *f = ctx;
    int32_t x = f[*(const int *)a].id, y = f[*(const int *)b].id;
    return (x > y) - (x < y);
}

static int build_index(struct page *p) {
    p->by_id = xmalloc(sizeof(int) * (size_t)(p->n ? p->n : 1));
    if (!p->by_id) return -1;
    for (int i = 0; i < p->n; i++)
        p->by_id[i] = i;
    qsort_r(p->by_id, (size_t)p->n, sizeof(int), cmp_by_id, p->f);
    return 0;
}

static struct fview *find_feature(const struct page *p, int32_t id) {
    int lo = 0, hi = p->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        int32_t x = p->f[p->by_id[mid]].id;
        if (x == id) return &p->f[p->by_id[mid]];
        if (x < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

struct rec_ctx {
    struct page *p;
    int which; /* 0 explanation, 1 simulation, 2 score */
};

static int take_record(const cJSON *o, int line_no, void *vctx) {
    (void)line_no;
    struct rec_ctx *c = vctx;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "feature");
    if (!cJSON_IsNumber(id)) return err_set("feature: expected an integer");
    struct fview *f = find_feature(c->p, (int32_t)id->valuedouble);
    if (!f) return 0; /* not a sampled feature of this examples file: ignored */
    cJSON **slot = c->which == 0 ? &f->expl : c->which == 1 ? &f->sim : &f->score;
    cJSON *copy = cJSON_Duplicate(o, 1);
    if (!copy) return err_set("out of memory");
    cJSON_Delete(*slot);
    *slot = copy;
    return 0;
}

static int load_records(struct page *p, const char *kind, int which) {
    char *path = exp_path(p->d, kind, p->sae->name, ".jsonl");
    if (!path) return -1;
    struct rec_ctx c = {p, which};
    int rc = file_exists(path) ? jsonl_read(path, 1, take_record, &c, NULL) : 0;
    free(path);
    return rc;
}

static int load_page(struct page *p) {
    const struct rep_dict *r = &p->d->dict[p->sae - p->d->sweep.saes];
    if (examples_is_complete(r->examples_path, NULL)) { /* an unfinished extract is missing */
        if (examples_load(r->examples_path, &p->ex) != 0) return -1;
        p->have_ex = true;
        p->n = p->ex.n_features;
    } else {
        p->n = r->set.n;
    }
    p->f = xcalloc((size_t)(p->n ? p->n : 1), sizeof *p->f);
    if (!p->f) return -1;
    for (int i = 0; i < p->n; i++) {
        p->f[i].id = p->have_ex ? p->ex.features[i] : r->set.f[i].feature;
        p->f[i].ex_index = p->have_ex ? i : -1;
    }
    if (build_index(p) != 0) return -1;
    if (load_records(p, "explanations", 0) != 0 || load_records(p, "simulations", 1) != 0 ||
        load_records(p, "scores", 2) != 0)
        return -1;
    size_t n = strlen(p->d->exp_dir) + 16;
    p->cache_dir = xmalloc(n);
    if (!p->cache_dir) return -1;
    snprintf(p->cache_dir, n, "%s/llm-cache", p->d->exp_dir);
    return 0;
}

static void free_page(struct page *p) {
    for (int i = 0; p->f && i < p->n; i++) {
        cJSON_Delete(p->f[i].expl);
        cJSON_Delete(p->f[i].sim);
        cJSON_Delete(p->f[i].score);
    }
    free(p->f);
    free(p->by_id);
    free(p->vocab_map);
    free(p->page_ids);
    free(p->cache_dir);
    if (p->have_ex) examples_free(&p->ex);
}

/* ---------------------------------------------------------------------------
 * JSON writing helpers (straight into the page buffer).
 */
static void j_num(struct sbuf *b, double v, const char *fmt) {
    if (isfinite(v))
        sbuf_printf(b, fmt, v);
    else
        sbuf_add(b, "null");
}

static void j_str(struct sbuf *b, const char *s) {
    if (s)
        sbuf_json_str(b, s);
    else
        sbuf_add(b, "null");
}

static const char *rec_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double rec_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Page vocabulary index of a token id (added on first use). */
static int page_token(struct page *p, int32_t id) {
    if (id < 0 || id >= p->n_vocab_ids) return -1;
    if (p->vocab_map[id] < 0) {
        p->vocab_map[id] = p->n_page_vocab;
        p->page_ids[p->n_page_vocab++] = id;
    }
    return p->vocab_map[id];
}

/* Density and maximum activation of a feature (NaN without an examples file). */
static double density_of(const struct page *p, const struct fview *f) {
    return f->ex_index >= 0 && f->id >= 0 && f->id < p->ex.d_sae ? p->ex.density[f->id] : NAN;
}

static double max_act_of(const struct page *p, const struct fview *f) {
    return f->ex_index >= 0 && f->id >= 0 && f->id < p->ex.d_sae ? p->ex.max_activation[f->id]
                                                                 : NAN;
}

static const cJSON *find_window(const cJSON *rec, const char *split, double source) {
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(rec, "windows"), *w;
    cJSON_ArrayForEach(w, ws) {
        const char *s = rec_str(w, "split");
        if (s && strcmp(s, split) == 0 && rec_num(w, "source") == source) return w;
    }
    return NULL;
}

/* The exact request and reply of a cache entry, as {"model", "msgs", "reply"};
 * "null" when the entry is absent or unreadable. */
static void j_cache_entry(struct sbuf *b, const char *cache_dir, const char *key) {
    char *path = key && strlen(key) == 64 ? llm_cache_path(cache_dir, key) : NULL;
    size_t n;
    char *text = path && file_exists(path) ? read_file_all(path, 64u << 20, &n) : NULL;
    cJSON *e = text ? cJSON_Parse(text) : NULL;
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(e, "request");
    const char *resp = rec_str(e, "response"), *stored_key = rec_str(e, "key");
    if (!req || !resp || !stored_key || strcmp(stored_key, key) != 0) {
        sbuf_add(b, "null");
    } else {
        sbuf_add(b, "{\"model\":");
        j_str(b, rec_str(req, "model"));
        sbuf_add(b, ",\"msgs\":[");
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(req, "messages"), *m;
        int k = 0;
        cJSON_ArrayForEach(m, msgs) {
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
            char *other = cJSON_IsString(content) ? NULL : cJSON_Print(content);
            sbuf_add(b, k++ ? ",[" : "[");
            j_str(b, rec_str(m, "role"));
            sbuf_add(b, ",");
            j_str(b, cJSON_IsString(content) ? content->valuestring : other);
            sbuf_add(b, "]");
            free(other);
        }
        const char *prompt = rec_str(req, "prompt"); /* completions (echo logprobs) */
        if (prompt) {
            sbuf_add(b, k ? ",[\"prompt\"," : "[\"prompt\",");
            j_str(b, prompt);
            sbuf_add(b, "]");
        }
        sbuf_add(b, "],\"reply\":");
        cJSON *r = cJSON_Parse(resp);
        const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "choices"), 0);
        const char *content =
            rec_str(cJSON_GetObjectItemCaseSensitive(choice, "message"), "content");
        if (!content) content = rec_str(choice, "text");
        j_str(b, content ? content : resp); /* the verbatim body when it has no content */
        cJSON_Delete(r);
        sbuf_add(b, "}");
    }
    cJSON_Delete(e);
    free(text);
    free(path);
}

static void j_window(struct page *p, struct sbuf *b, int64_t w, const struct fview *f,
                     struct report_page_stats *st) {
    const struct examples *ex = &p->ex;
    static const char *const split_names[] = {"explain", "top", "random", "quantile"};
    int split = ex->win_split[w];
    const char *sname = split < 4 ? split_names[split] : "?";
    sbuf_printf(b, "[%d,%d,[", split, ex->win_rank[w]);
    const int32_t *tok = ex->win_tokens + w * ex->window;
    const float *act = ex->win_acts + w * ex->window;
    for (int t = 0; t < ex->window; t++) {
        int k = page_token(p, tok[t]);
        sbuf_printf(b, t ? ",%d" : "%d", k);
    }
    sbuf_add(b, "],[");
    for (int t = 0; t < ex->window; t++) {
        if (t) sbuf_addc(b, ',');
        if (act[t] == 0)
            sbuf_addc(b, '0');
        else
            j_num(b, act[t], "%.3g");
    }
    sbuf_add(b, "],");
    const cJSON *sw = split ? find_window(f->sim, sname, (double)ex->win_source[w]) : NULL;
    const cJSON *pred = cJSON_GetObjectItemCaseSensitive(sw, "predicted");
    if (cJSON_IsArray(pred)) {
        sbuf_add(b, "[");
        const cJSON *v;
        int k = 0;
        cJSON_ArrayForEach(v, pred) {
            if (k++) sbuf_addc(b, ',');
            j_num(b, cJSON_IsNumber(v) ? v->valuedouble : NAN, "%.3g");
        }
        sbuf_add(b, "]");
    } else {
        sbuf_add(b, "null");
    }
    const cJSON *cw = split ? find_window(f->score, sname, (double)ex->win_source[w]) : NULL;
    sbuf_add(b, ",");
    j_num(b, rec_num(cw, "correlation"), "%.4g");
    sbuf_add(b, ",");
    j_str(b, sw && rec_str(sw, "reason") ? rec_str(sw, "reason") : NULL);
    sbuf_add(b, ",");
    if (sw && rec_str(sw, "request_sha256"))
        j_cache_entry(b, p->cache_dir, rec_str(sw, "request_sha256"));
    else
        sbuf_add(b, "null");
    sbuf_add(b, "]");
    st->n_windows++;
    st->n_tokens += ex->window;
}

static void j_feature(struct page *p, struct sbuf *b, const struct fview *f,
                      struct report_page_stats *st) {
    sbuf_printf(b, "{\"id\":%d,\"x\":", f->id);
    const char *expl = rec_str(f->expl, "explanation");
    if (!expl) expl = rec_str(f->score, "explanation");
    j_str(b, expl);
    sbuf_add(b, ",\"xs\":");
    j_str(b, rec_str(f->expl, "status"));
    sbuf_add(b, ",\"xr\":");
    j_str(b, rec_str(f->expl, "reason"));
    sbuf_add(b, ",\"xd\":");
    j_str(b, rec_str(f->expl, "detail"));
    sbuf_add(b, ",\"st\":");
    j_str(b, rec_str(f->score, "status"));
    sbuf_add(b, ",\"sc\":");
    j_num(b, rec_num(f->score, "score"), "%.17g");
    sbuf_add(b, ",\"re\":");
    j_str(b, rec_str(f->score, "reason"));
    sbuf_add(b, ",\"de\":");
    j_str(b, rec_str(f->score, "detail"));
    sbuf_add(b, ",\"fs\":");
    j_str(b, rec_str(f->score, "failed_stage"));
    sbuf_add(b, ",\"ss\":");
    j_str(b, rec_str(f->sim, "status"));
    sbuf_add(b, ",\"sr\":");
    j_str(b, rec_str(f->sim, "reason"));
    sbuf_add(b, ",\"d\":");
    j_num(b, density_of(p, f), "%.4g");
    sbuf_add(b, ",\"m\":");
    j_num(b, max_act_of(p, f), "%.4g");
    sbuf_add(b, ",\"prov\":");
    j_str(b, rec_str(f->expl, "provider"));
    sbuf_add(b, ",\"w\":[");
    if (f->ex_index >= 0) {
        int64_t first, count;
        examples_feature_windows(&p->ex, f->ex_index, &first, &count);
        for (int64_t w = first; w < first + count; w++) {
            if (w > first) sbuf_addc(b, ',');
            j_window(p, b, w, f, st);
        }
    }
    sbuf_add(b, "],\"p\":");
    const char *key = rec_str(f->expl, "request_sha256");
    if (key)
        j_cache_entry(b, p->cache_dir, key);
    else
        sbuf_add(b, "null");
    sbuf_add(b, "}");
    st->n_features++;
}

/* The page vocabulary: display strings, with "␣" shown as a space. */
static void j_vocab(struct page *p, struct sbuf *b) {
    sbuf_add(b, "[");
    for (int k = 0; k < p->n_page_vocab; k++) {
        if (k) sbuf_addc(b, ',');
        int32_t id = p->page_ids[k];
        const char *s = p->vocab ? render_token(p->vocab, id) : NULL;
        if (!s) {
            char buf[24];
            snprintf(buf, sizeof buf, "#%d", id);
            sbuf_json_str(b, buf);
            continue;
        }
        struct sbuf t;
        sbuf_init(&t);
        for (const char *c = s; *c;) {
            if (strncmp(c, RENDER_SPACE, 3) == 0)
                sbuf_addc(&t, ' '), c += 3;
            else
                sbuf_addc(&t, *c++);
        }
        sbuf_json_str(b, sbuf_str(&t));
        sbuf_free(&t);
    }
    sbuf_add(b, "]");
}

/* ---------------------------------------------------------------------------
 * The page.
 */
static void html_num(struct sbuf *b, double v, const char *fmt) {
    if (isfinite(v))
        sbuf_printf(b, fmt, v);
    else
        sbuf_add(b, "–");
}

static void table_row(struct page *p, struct sbuf *b, int i) {
    const struct fview *f = &p->f[i];
    double score = rec_num(f->score, "score");
    double dens = density_of(p, f), mx = max_act_of(p, f);
    const char *st = rec_str(f->score, "status");
    const char *expl = rec_str(f->expl, "explanation");
    if (!expl) expl = rec_str(f->score, "explanation");
    sbuf_printf(b, "<tr class=\"feature\" data-i=\"%d\" data-id=\"%d\"", i, f->id);
    sbuf_add(b, " data-score=\"");
    html_num(b, score, "%.17g");
    sbuf_add(b, "\" data-density=\"");
    html_num(b, dens, "%.17g");
    sbuf_add(b, "\" data-max=\"");
    html_num(b, mx, "%.17g");
    sbuf_printf(b, "\"><td>%d</td><td class=\"num\">", f->id);
    html_num(b, score, "%.3f");
    sbuf_add(b, "</td><td>");
    sbuf_xml(b, st ? st : "not scored yet");
    const char *why = rec_str(f->score, "reason");
    if (why && st && strcmp(st, "scored") != 0) {
        sbuf_add(b, ": ");
        sbuf_xml(b, why);
    }
    sbuf_add(b, "</td><td class=\"num\">");
    html_num(b, dens, "%.3g");
    sbuf_add(b, "</td><td class=\"num\">");
    html_num(b, mx, "%.3g");
    sbuf_add(b, "</td><td class=\"expl\">");
    if (expl)
        sbuf_xml(b, expl);
    else
        sbuf_add(b, "<i>no explanation</i>");
    sbuf_add(b, "</td></tr>\n");
}

static void page_header(struct page *p, struct sbuf *b) {
    const struct rep_sae *s = p->sae;
    const struct rep_dict *r = &p->d->dict[s - p->d->sweep.saes];
    sbuf_add(b,
             "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n" HTML_CSP
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    sbuf_xml(b, s->name);
    sbuf_add(b, " · features</title>\n<style>" HTML_CSS "</style></head>\n<body>\n"
                "<nav><a href=\"../index.html\">← report</a></nav>\n<h1>");
    sbuf_xml(b, s->name);
    sbuf_add(b, "</h1>\n<p class=\"meta\">");
    sbuf_xml(b, s->type_name);
    sbuf_printf(b, ", layer %d, λ %g, L0 ", s->layer, s->lambda);
    html_num(b, s->l0, "%.1f");
    sbuf_add(b, ", CE increase ");
    html_num(b, s->ce_increase, "%.4f");
    if (r->has_ci)
        sbuf_printf(b, "; mean score %.3f, %g%% CI (BCa) [%.3f, %.3f], %d scored", r->desc.mean,
                    100 * r->ci.level, r->ci.bca_lo, r->ci.bca_hi, r->n_scored);
    else if (!r->has_scores)
        sbuf_add(b, "; scores: not yet computed");
    sbuf_printf(b, "; %d sampled features%s.</p>\n", p->n,
                p->have_ex ? "" : " (no examples file: windows not shown)");
}

int report_sae_page(const struct report_data *d, int i, const struct render_vocab *vocab,
                    struct sbuf *b, struct report_page_stats *st) {
    memset(st, 0, sizeof *st);
    struct page p = {.d = d, .sae = &d->sweep.saes[i], .vocab = vocab};
    int rc = load_page(&p);
    if (rc == 0 && p.have_ex) {
        int32_t mx = 0;
        for (int64_t k = 0; k < p.ex.n_windows * p.ex.window; k++)
            mx = p.ex.win_tokens[k] > mx ? p.ex.win_tokens[k] : mx;
        p.n_vocab_ids = mx + 1;
        p.vocab_map = xmalloc(sizeof(int) * (size_t)p.n_vocab_ids);
        p.page_ids = xmalloc(sizeof(int32_t) * (size_t)p.n_vocab_ids);
        if (!p.vocab_map || !p.page_ids)
            rc = -1;
        else
            memset(p.vocab_map, 0xFF, sizeof(int) * (size_t)p.n_vocab_ids);
    }
    if (rc != 0) {
        free_page(&p);
        return err_prefix("page of %s", p.sae->name);
    }
    page_header(&p, b);
    sbuf_add(b, "<p class=\"help\">Click a feature to see its windows (token colour = "
                "activation relative to the feature's maximum; blue = the simulator's "
                "prediction, 0..10), its explanation and the exact prompt and reply.</p>\n"
                "<p><label>Filter explanations: <input id=\"filter\" type=\"search\" "
                "placeholder=\"text in the explanation\"></label> <span id=\"count\"></span></p>\n"
                "<table id=\"features\"><thead><tr>"
                "<th><button data-key=\"id\">feature</button></th>"
                "<th><button data-key=\"score\">score</button></th><th>status</th>"
                "<th><button data-key=\"density\">density</button></th>"
                "<th><button data-key=\"max\">max act.</button></th>"
                "<th>explanation</th></tr></thead>\n<tbody>\n");
    for (int k = 0; k < p.n; k++)
        table_row(&p, b, k);
    sbuf_add(b, "</tbody></table>\n<script type=\"application/json\" id=\"data\">{\"sae\":");
    sbuf_json_str(b, p.sae->name);
    sbuf_printf(b, ",\"T\":%d,\"f\":[", p.have_ex ? p.ex.window : 0);
    for (int k = 0; k < p.n; k++) {
        if (k) sbuf_add(b, ",\n");
        j_feature(&p, b, &p.f[k], st);
    }
    sbuf_add(b, "],\"vocab\":");
    j_vocab(&p, b);
    sbuf_add(b, "}</script>\n<script>" HTML_BROWSER_JS "</script>\n</body></html>\n");
    free_page(&p);
    st->bytes = b->len;
    return sbuf_ok(b);
}
