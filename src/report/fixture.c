/* fixture.c: a synthetic experiment on disk (see fixture.h). */
#include "report/fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
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
                    }
                }
    sbuf_add(&b, "\n  ]\n}\n");
    snprintf(path, sizeof path, "%s/saes/sweep.json", dir);
    if (rc == 0) rc = sbuf_write_file(&b, path);
    sbuf_free(&b);
    return rc == 0 ? n_total : -1;
}
