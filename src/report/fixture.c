/* fixture.c: a synthetic experiment on disk (see fixture.h). */
#include "report/fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extract/examples.h"
#include "io/atomic.h"
#include "llm/cache.h"
#include "llm/request.h"
#include "report/inputs.h"
#include "report/sbuf.h"
#include "sae/sae.h"
#include "sae/sae_io.h"
#include "util/error.h"

static const double fx_lambda[3][2] = {{1, 4}, {0.1, 0.5}, {1, 5}};
static const double fx_l0[3][2] = {{80, 30}, {25, 10}, {40, 15}};
static const double fx_ce[3][2] = {{0.05, 0.2}, {0.06, 0.15}, {0.045, 0.12}};
static const double fx_mean[3] = {0.30, 0.33, 0.40};

void report_fixture_metrics(int layer, int type, int k, double *lambda, double *l0,
                            double *ce_increase) {
    double s = 1 + 0.1 * layer;
    *lambda = fx_lambda[type][k];
    *l0 = fx_l0[type][k] * s;
    *ce_increase = fx_ce[type][k] * s;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s) {
    return ((double)(splitmix(s) >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(uint64_t *s) {
    double u = uniform(s), v = uniform(s);
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static void sae_name(char *buf, size_t n, int layer, int type, double lambda, int seed) {
    snprintf(buf, n, "L%d-%s-lam%g-s%d", layer, rep_type_name(type), lambda, seed);
}

static int write_scores(const char *path, int type, int n_features, uint64_t rng) {
    struct sbuf b;
    sbuf_init(&b);
    for (int k = 0; k < n_features; k++) {
        int id = 7 * k + 3;
        double x = fmax(-1, fmin(1, fx_mean[type] + 0.2 * normal(&rng)));
        if (k == 0)
            sbuf_printf(
                &b,
                "{\"feature\":%d,\"feature_index\":%d,\"status\":\"failed\",\"score\":null,"
                "\"reason\":\"http_5xx\",\"detail\":\"server said 503\",\"explanation\":null}\n",
                id, k);
        if (k % 17 == 5)
            sbuf_printf(&b,
                        "{\"feature\":%d,\"feature_index\":%d,\"status\":\"failed\",\"score\":null,"
                        "\"reason\":\"wrong_count\",\"detail\":\"expected 64 values, got 63\","
                        "\"failed_stage\":\"simulate\",\"explanation\":\"the token <b>\"}\n",
                        id, k);
        else if (k % 23 == 11)
            sbuf_printf(
                &b,
                "{\"feature\":%d,\"feature_index\":%d,\"status\":\"no_score\",\"score\":null,"
                "\"reason\":\"constant_simulation\",\"explanation\":\"nothing\"}\n",
                id, k);
        else
            sbuf_printf(
                &b,
                "{\"feature\":%d,\"feature_index\":%d,\"status\":\"scored\",\"score\":%.17g,"
                "\"r2\":%.17g,\"reason\":null,\"explanation\":\"feature %d fires on \\\"x\\\"\"}\n",
                id, k, x, x * x, id);
    }
    int rc = sbuf_write_file(&b, path);
    sbuf_free(&b);
    return rc;
}

static int write_sae(const char *path, const char *name, int type, int layer, double lambda,
                     int d_in, int d_sae, uint64_t seed) {
    struct sae s;
    if (sae_new(&s, d_in, d_sae) != 0) return -1;
    int rc = sae_init(&s, seed);
    if (rc == 0 && type == REP_LOCAL) /* near-duplicates: direction 2j+1 ~ direction 2j */
        for (int j = 0; j + 1 < d_sae / 4; j += 2)
            for (int i = 0; i < d_in; i++)
                s.p.W_dec[(size_t)(j + 1) * d_in + i] =
                    s.p.W_dec[(size_t)j * d_in + i] * 1.01f + (i == j % d_in ? 0.01f : 0);
    sae_refresh_norms(&s);
    char hook[64];
    snprintf(hook, sizeof hook, "blocks.%d.hook_resid_pre", layer);
    struct sae_meta m = {.name = (char *)name,
                         .type = (char *)rep_type_name(type),
                         .hook_name = hook,
                         .model_path = "",
                         .config = "{}",
                         .spec_hash = "fixture",
                         .layer = layer,
                         .ratio = d_sae / d_in,
                         .d_in = d_in,
                         .d_sae = d_sae,
                         .seed = (int64_t)seed,
                         .lambda = lambda,
                         .kl_coeff = 1};
    if (rc == 0) rc = sae_file_write(path, &s, &m, NULL, NULL);
    sae_free(&s);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Inputs of the feature browser (html_inputs).
 */
static const char *const fixture_words[] = {" the",
                                            " cat",
                                            " sat",
                                            " on",
                                            " mat",
                                            " dog",
                                            ".",
                                            "\n",
                                            " a",
                                            " big",
                                            FIXTURE_SCRIPT_TOKEN,
                                            "</script>",
                                            " alert(1)",
                                            " &",
                                            " <b>bold</b>",
                                            " na\xC3\xAFve",
                                            " \xF0\x9F\x98\x80",
                                            " \"quoted\"",
                                            " it's",
                                            " run"};
#define N_WORDS ((int)(sizeof fixture_words / sizeof *fixture_words))
#define FIRST_WORD 259 /* after <unk> <s> </s> and the 256 byte tokens */

void report_fixture_tokenizer_path(const struct report_fixture *f, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s/fixture-tokenizer.bin", f->results_dir, f->experiment);
}

static void put_token(struct sbuf *b, float score, const char *s, int len) {
    sbuf_addn(b, (const char *)&score, 4);
    sbuf_addn(b, (const char *)&len, 4);
    sbuf_addn(b, s, (size_t)len);
}

static int write_tokenizer(const char *path) {
    struct sbuf b;
    sbuf_init(&b);
    int32_t max_len = 32;
    sbuf_addn(&b, (const char *)&max_len, 4);
    put_token(&b, 0, "<unk>", 5);
    put_token(&b, 0, "\n<s>\n", 5);
    put_token(&b, 0, "\n</s>\n", 6);
    for (int i = 0; i < 256; i++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", i);
        put_token(&b, 0, t, 6);
    }
    for (int i = 0; i < N_WORDS; i++)
        put_token(&b, (float)-i, fixture_words[i], (int)strlen(fixture_words[i]));
    int rc = sbuf_write_file(&b, path);
    sbuf_free(&b);
    return rc;
}

struct html_dims {
    int n_features, T, n_explain, n_top, n_random;
};

/* Windows of feature k: explain, score-top, random; acts peak at position T/2
 * in the top-activating ones and are mostly zero in random ones. */
static int write_examples(const char *path, const char *name, const struct html_dims *h,
                          uint64_t rng) {
    int per = h->n_explain + h->n_top + h->n_random, T = h->T, n = h->n_features;
    int64_t nw = (int64_t)n * per;
    struct examples ex = {.sae_name = (char *)name,
                          .sae_path = "",
                          .model_path = "",
                          .tokens_path = "",
                          .tokenizer = "llama2c",
                          .window = T,
                          .offset = T / 2,
                          .top_k = h->n_explain + h->n_top,
                          .n_random = h->n_random,
                          .n_explain = h->n_explain,
                          .n_score_top = h->n_top,
                          .seed = 0,
                          .n_tokens_scanned = 100000,
                          .d_sae = 7 * n + 3,
                          .n_alive = n,
                          .n_features = n,
                          .n_windows = nw};
    ex.density = calloc((size_t)ex.d_sae, sizeof *ex.density);
    ex.max_activation = calloc((size_t)ex.d_sae, sizeof *ex.max_activation);
    ex.features = calloc((size_t)n, sizeof *ex.features);
    ex.win_feature = calloc((size_t)nw, sizeof *ex.win_feature);
    ex.win_split = calloc((size_t)nw, sizeof *ex.win_split);
    ex.win_rank = calloc((size_t)nw, sizeof *ex.win_rank);
    ex.win_source = calloc((size_t)nw, sizeof *ex.win_source);
    ex.win_tokens = calloc((size_t)(nw * T), sizeof *ex.win_tokens);
    ex.win_acts = calloc((size_t)(nw * T), sizeof *ex.win_acts);
    int rc = (!ex.density || !ex.max_activation || !ex.features || !ex.win_feature ||
              !ex.win_split || !ex.win_rank || !ex.win_source || !ex.win_tokens || !ex.win_acts)
                 ? err_set("out of memory")
                 : 0;
    for (int k = 0; k < n && rc == 0; k++) {
        int id = 7 * k + 3;
        ex.features[k] = id;
        float peak = (float)(1 + 9 * uniform(&rng));
        ex.max_activation[id] = peak;
        ex.density[id] = pow(10, -1 - 4 * uniform(&rng));
        for (int w = 0; w < per; w++) {
            int64_t i = (int64_t)k * per + w;
            int split = w < h->n_explain              ? SPLIT_EXPLAIN
                        : w < h->n_explain + h->n_top ? SPLIT_SCORE_TOP
                                                      : SPLIT_SCORE_RANDOM;
            ex.win_feature[i] = k;
            ex.win_split[i] = (uint8_t)split;
            ex.win_rank[i] = split == SPLIT_EXPLAIN     ? w
                             : split == SPLIT_SCORE_TOP ? w - h->n_explain
                                                        : -1;
            ex.win_source[i] = (int64_t)k * 100000 + w * T;
            for (int t = 0; t < T; t++) {
                int32_t tok = FIRST_WORD + (int32_t)(splitmix(&rng) % N_WORDS);
                if (k % 3 == 0 && t % 7 == 3) tok = 3 + 'x';         /* a byte token */
                if (w == 0 && t == T / 2 - 1) tok = FIRST_WORD + 10; /* "<script>" */
                float a = 0;
                if (split != SPLIT_SCORE_RANDOM || t == T / 3) {
                    double dist = fabs((double)(t - T / 2));
                    a = (float)(peak * (1.0 - 0.1 * ex.win_rank[i] / per) * exp(-dist / 2));
                    if (a < 0.05f * peak) a = 0;
                }
                ex.win_tokens[i * T + t] = tok;
                ex.win_acts[i * T + t] = a;
            }
        }
    }
    if (rc == 0) rc = examples_write(path, &ex);
    free(ex.density), free(ex.max_activation), free(ex.features), free(ex.win_feature);
    free(ex.win_split), free(ex.win_rank), free(ex.win_source), free(ex.win_tokens);
    free(ex.win_acts);
    return rc;
}

static const char *fx_explanation(int k, char *buf, size_t n) {
    if (k == 1) return FIXTURE_HTML_EXPLANATION;
    snprintf(buf, n, "the token \" cat\" (%d%%), mostly right after \" the\"", 40 + k % 50);
    return buf;
}

/* One explain record plus the llm-cache entry its request_sha256 points to. */
static int write_explanations(const char *dir, const char *name, int n_features) {
    char path[2400], cache[2400], ebuf[160];
    snprintf(path, sizeof path, "%s/explanations/%s.jsonl", dir, name);
    snprintf(cache, sizeof cache, "%s/llm-cache", dir);
    struct sbuf b;
    sbuf_init(&b);
    int rc = 0;
    for (int k = 0; k < n_features && rc == 0; k++) {
        const char *e = fx_explanation(k, ebuf, sizeof ebuf);
        struct sbuf req, resp;
        sbuf_init(&req);
        sbuf_init(&resp);
        sbuf_add(&req,
                 "{\"model\":\"fixture-model\",\"messages\":[{\"role\":\"system\",\"content\":"
                 "\"You explain what makes a neuron fire.\"},{\"role\":\"user\",\"content\":");
        char user[256];
        snprintf(user, sizeof user,
                 "Feature %d.\n\xE2\x90\xA3the\t0\n\xE2\x90\xA3"
                 "cat\t10\n<script>\t3\n",
                 7 * k + 3);
        sbuf_json_str(&req, user);
        sbuf_add(&req, "}],\"temperature\":0}");
        sbuf_add(&resp,
                 "{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                 "\"content\":");
        sbuf_json_str(&resp, e);
        sbuf_add(&resp, "},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":50,"
                        "\"completion_tokens\":9}}");
        char key[65];
        llm_request_key("POST", "/chat/completions", sbuf_str(&req), key);
        rc = llm_cache_put(cache, key, "POST", "/chat/completions", sbuf_str(&req), sbuf_str(&resp),
                           resp.len);
        sbuf_printf(&b,
                    "{\"feature\":%d,\"feature_index\":%d,\"sae\":\"%s\",\"status\":\"ok\","
                    "\"explanation\":",
                    7 * k + 3, k, name);
        sbuf_json_str(&b, e);
        sbuf_printf(&b,
                    ",\"reason\":null,\"detail\":null,\"provider\":\"openai\",\"model\":"
                    "\"fixture-model\",\"request_sha256\":\"%s\",\"n_windows\":6}\n",
                    key);
        sbuf_free(&req);
        sbuf_free(&resp);
    }
    if (rc == 0) rc = sbuf_write_file(&b, path);
    sbuf_free(&b);
    return rc;
}

/* Predictions: the truth scaled to 0..10 with some noise, per scored window. */
static int write_simulations(const char *dir, const char *name, const struct html_dims *h,
                             uint64_t rng) {
    char path[2400];
    snprintf(path, sizeof path, "%s/simulations/%s.jsonl", dir, name);
    struct sbuf b;
    sbuf_init(&b);
    int n_scored = h->n_top + h->n_random;
    for (int k = 0; k < h->n_features; k++) {
        sbuf_printf(&b,
                    "{\"feature\":%d,\"feature_index\":%d,\"sae\":\"%s\",\"status\":\"ok\","
                    "\"mode\":\"json\",\"windows\":[",
                    7 * k + 3, k, name);
        for (int w = 0; w < n_scored; w++) {
            bool top = w < h->n_top;
            sbuf_printf(&b,
                        "%s{\"split\":\"%s\",\"rank\":%d,\"source\":%d,\"n_tokens\":%d,"
                        "\"status\":\"ok\",\"predicted\":[",
                        w ? "," : "", top ? "top" : "random", top ? w : -1,
                        k * 100000 + (h->n_explain + w) * h->T, h->T);
            for (int t = 0; t < h->T; t++) {
                int v = abs(t - h->T / 2) < 3 && top ? 10 - 3 * abs(t - h->T / 2) : 0;
                if (uniform(&rng) < 0.1) v = (int)(splitmix(&rng) % 11);
                sbuf_printf(&b, "%s%d", t ? "," : "", v);
            }
            sbuf_add(&b, "]}");
        }
        sbuf_add(&b, "]}\n");
    }
    int rc = sbuf_write_file(&b, path);
    sbuf_free(&b);
    return rc;
}

static int write_html_inputs(const char *dir, const char *name, const struct html_dims *h,
                             uint64_t rng) {
    char path[2400];
    snprintf(path, sizeof path, "%s/examples/%s.h5", dir, name);
    if (write_examples(path, name, h, rng) != 0) return -1;
    if (write_explanations(dir, name, h->n_features) != 0) return -1;
    return write_simulations(dir, name, h, rng ^ 0x5555);
}

int report_fixture_write(const struct report_fixture *f) {
    int n_layers = f->n_layers ? f->n_layers : 1, n_seeds = f->n_seeds ? f->n_seeds : 1;
    int n_features = f->n_features ? f->n_features : 200;
    int d_in = f->d_in ? f->d_in : 16, d_sae = f->d_sae ? f->d_sae : 64;
    char dir[2048], path[2400], name[96];
    snprintf(dir, sizeof dir, "%s/%s", f->results_dir, f->experiment);
    snprintf(path, sizeof path, "%s/saes", dir);
    if (mkdir_p(path) != 0) return -1;
    snprintf(path, sizeof path, "%s/scores", dir);
    if (!f->no_scores && mkdir_p(path) != 0) return -1;
    struct html_dims hd = {.n_features = n_features,
                           .T = f->window ? f->window : 16,
                           .n_explain = f->n_explain ? f->n_explain : 6,
                           .n_top = f->n_score_top ? f->n_score_top : 3,
                           .n_random = f->n_random ? f->n_random : 3};
    if (f->html_inputs) {
        static const char *const sub[] = {"examples", "explanations", "simulations"};
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, sub[i]);
            if (mkdir_p(path) != 0) return -1;
        }
        report_fixture_tokenizer_path(f, path, sizeof path);
        if (write_tokenizer(path) != 0) return -1;
    }
    int n_total = n_layers * n_seeds * 6, idx = 0, rc = 0;
    struct sbuf b;
    sbuf_init(&b);
    sbuf_add(&b, "{\n  \"experiment\": ");
    sbuf_json_str(&b, f->experiment);
    sbuf_add(&b, ",\n  \"saes\": [");
    for (int li = 0; li < n_layers && rc == 0; li++)
        for (int t = 0; t < 3 && rc == 0; t++)
            for (int k = 0; k < 2 && rc == 0; k++)
                for (int s = 0; s < n_seeds && rc == 0; s++, idx++) {
                    int layer = li + 1;
                    double lambda, l0, ce;
                    report_fixture_metrics(layer, t, k, &lambda, &l0, &ce);
                    sae_name(name, sizeof name, layer, t, lambda, s);
                    snprintf(path, sizeof path, "%s/saes/%s.h5", dir, name);
                    sbuf_printf(
                        &b,
                        "%s\n    {\"name\": \"%s\", \"type\": \"%s\", \"layer\": %d, "
                        "\"lambda\": %g, \"seed\": %d, \"ratio\": %d, \"d_sae\": %d, "
                        "\"l0\": %.17g, \"alive\": %d, \"alive_fraction\": %.17g, "
                        "\"dead\": %d, \"ce_orig\": 3.5, \"ce_sae\": %.17g, "
                        "\"ce_increase\": %.17g, \"kl\": null, \"explained_variance\": 0.9, "
                        "\"mse\": 0.01, \"file\": \"%s\"}",
                        idx ? "," : "", name, rep_type_name(t), layer, lambda, s, d_sae / d_in,
                        d_sae, l0, d_sae - 3 * idx, (double)(d_sae - 3 * idx) / d_sae, 3 * idx,
                        3.5 + ce, ce, path);
                    if (f->sae_files)
                        rc = write_sae(path, name, t, layer, lambda, d_in, d_sae,
                                       f->seed + 1000 * (uint64_t)idx + (uint64_t)s);
                    if (rc == 0 && !f->no_scores && idx < n_total - f->skip_scores_of) {
                        snprintf(path, sizeof path, "%s/scores/%s.jsonl", dir, name);
                        rc = write_scores(path, t, n_features, f->seed * 7919 + (uint64_t)idx);
                        if (rc == 0 && f->html_inputs)
                            rc = write_html_inputs(dir, name, &hd, f->seed * 31 + (uint64_t)idx);
                    }
                }
    sbuf_add(&b, "\n  ]\n}\n");
    snprintf(path, sizeof path, "%s/saes/sweep.json", dir);
    if (rc == 0) rc = sbuf_write_file(&b, path);
    sbuf_free(&b);
    return rc == 0 ? n_total : -1;
}
