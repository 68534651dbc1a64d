/* metrics.c: evaluation of an SAE on held-out tokens (definitions in metrics.h).
 *
 * Batches are always full: a final partial batch is padded with copies of its
 * first window and only the real rows enter any statistic (rows are
 * sequence-major and sequences do not interact, so padding changes nothing).
 * Sums are kept in double; the explained variance uses Σ‖x‖² − N‖x̄‖².
 */
#include "sae/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "sae/kl.h"
#include "sae/train.h"
#include "util/error.h"
#include "util/log.h"

void sae_metrics_free(struct sae_metrics *m) {
    free(m->downstream_layers);
    free(m->mse_downstream);
    free(m->feature_density);
    memset(m, 0, sizeof *m);
}

struct evaluator {
    const struct sae *s;
    const struct lm *lm;
    const struct sae_eval_opts *o;
    struct lm_acts *orig, *spliced;
    struct kl_chunker kl;
    struct kl_totals kt;
    struct sae_codes codes;
    struct sae_work work;
    int32_t *tokens, *targets; /* (B,T) */
    int64_t *counts;           /* (d_sae) tokens on which each feature fired */
    double *sum_x;             /* (C) */
    double sum_x2, sse, nnz;
    int64_t n_rows;
};

static void evaluator_free(struct evaluator *e) {
    lm_acts_free(e->orig);
    lm_acts_free(e->spliced);
    kl_chunker_free(&e->kl);
    sae_codes_free(&e->codes);
    sae_work_free(&e->work);
    free(e->tokens);
    free(e->targets);
    free(e->counts);
    free(e->sum_x);
}

static int evaluator_init(struct evaluator *e, const struct sae *s, const struct lm *lm,
                          const struct sae_eval_opts *o, struct sae_metrics *m) {
    memset(e, 0, sizeof *e);
    e->s = s;
    e->lm = lm;
    e->o = o;
    int nl = lm->cfg.n_layer, C = lm->cfg.d_model;
    if (o->layer < 0 || o->layer >= nl)
        return err_set("SAE layer %d: the model has blocks 0..%d", o->layer, nl - 1);
    if (s->d_in != C)
        return err_set("SAE d_in %d does not match the model's d_model %d", s->d_in, C);
    if (o->batch < 1 || o->context < 2) return err_set("batch and context must be positive");
    size_t BT = (size_t)o->batch * o->context;
    e->orig = lm_acts_new(lm, o->batch, o->context, false);
    e->spliced = lm_acts_new(lm, o->batch, o->context, false);
    e->tokens = xmalloc(BT * sizeof *e->tokens);
    e->targets = xmalloc(BT * sizeof *e->targets);
    e->counts = xcalloc((size_t)s->d_sae, sizeof *e->counts);
    e->sum_x = xcalloc((size_t)C, sizeof *e->sum_x);
    m->n_downstream = nl - o->layer;
    m->downstream_layers = xcalloc((size_t)m->n_downstream, sizeof *m->downstream_layers);
    m->mse_downstream = xcalloc((size_t)m->n_downstream, sizeof *m->mse_downstream);
    m->feature_density = xcalloc((size_t)s->d_sae, sizeof *m->feature_density);
    if (!e->orig || !e->spliced || !e->tokens || !e->targets || !e->counts || !e->sum_x ||
        !m->downstream_layers || !m->mse_downstream || !m->feature_density ||
        kl_chunker_init(&e->kl, lm) < 0 || sae_work_init(&e->work, s) < 0)
        return -1;
    for (int k = 0; k < m->n_downstream; k++) m->downstream_layers[k] = o->layer + 1 + k;
    return 0;
}

// Load windows [w0, w0+nb) (padding the batch with window w0) and their targets.
static int load_batch(struct evaluator *e, const struct token_dataset *d, int64_t w0, int nb,
                      int bos) {
    int B = e->o->batch, T = e->o->context;
    for (int b = 0; b < B; b++) {
        int32_t *t = e->tokens + (size_t)b * T;
        if (sae_read_window(d, w0 + (b < nb ? b : 0), T, bos, t) < 0) return -1;
        for (int i = 0; i < T; i++) e->targets[(size_t)b * T + i] = i < T - 1 ? t[i + 1] : -1;
    }
    return 0;
}

static double sq_diff(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return s;
}

static int eval_batch(struct evaluator *e, int nb, struct sae_metrics *m) {
    const struct lm *lm = e->lm;
    int L = e->o->layer, nl = lm->cfg.n_layer, C = lm->cfg.d_model;
    int N = e->o->batch * e->o->context, n = nb * e->o->context;
    if (lm_embed(lm, e->orig, e->tokens) < 0 || lm_blocks_forward(lm, e->orig, 0, nl) < 0 ||
        lm_final_norm(lm, e->orig) < 0)
        return -1;
    const float *x = e->orig->resid[L];
    float *xhat = e->spliced->resid[L];
    if (sae_encode(e->s, &e->work, x, N, &e->codes) < 0 ||
        sae_decode(e->s, &e->work, &e->codes, xhat) < 0 ||
        lm_blocks_forward(lm, e->spliced, L, nl) < 0 || lm_final_norm(lm, e->spliced) < 0)
        return -1;
    if (kl_compare(&e->kl, e->orig->lnf, e->spliced->lnf, n, e->targets, 0, NULL, &e->kt) < 0)
        return -1;
    for (int64_t i = 0; i < e->codes.row_ptr[n]; i++) e->counts[e->codes.col[i]]++;
    e->nnz += (double)e->codes.row_ptr[n];
    size_t nc = (size_t)n * C;
    e->sse += sq_diff(xhat, x, nc);
    for (size_t i = 0; i < nc; i++) {
        e->sum_x[i % C] += x[i];
        e->sum_x2 += (double)x[i] * x[i];
    }
    for (int k = 0; k < m->n_downstream; k++) {
        int l = L + 1 + k;
        m->mse_downstream[k] += sq_diff(e->spliced->resid[l], e->orig->resid[l], nc);
    }
    e->n_rows += n;
    return 0;
}

static void finish(struct evaluator *e, struct sae_metrics *m) {
    int C = e->lm->cfg.d_model;
    double N = (double)e->n_rows, nc = N * C;
    m->n_tokens = e->n_rows;
    m->d_sae = e->s->d_sae;
    m->l0 = e->nnz / N;
    m->ce_orig = e->kt.ce_orig_sum / (double)e->kt.n_ce;
    m->ce_sae = e->kt.ce_sae_sum / (double)e->kt.n_ce;
    m->ce_increase = m->ce_sae - m->ce_orig;
    m->kl = e->kt.kl_sum / (double)e->kt.n_rows;
    m->mse = e->sse / nc;
    double mean_sq = 0;
    for (int i = 0; i < C; i++) mean_sq += e->sum_x[i] * e->sum_x[i] / N;
    double sst = e->sum_x2 - mean_sq;
    m->explained_variance = sst > 0 ? 1 - e->sse / sst : NAN;
    for (int k = 0; k < m->n_downstream; k++) m->mse_downstream[k] /= nc;
    memset(m->hist, 0, sizeof m->hist);
    for (int j = 0; j < e->s->d_sae; j++) {
        double dens = (double)e->counts[j] / N;
        m->feature_density[j] = dens;
        if (e->counts[j] == 0) {
            m->dead++;
            continue;
        }
        m->alive++;
        int bin = (int)floor((log10(dens) - SAE_DENSITY_LO) / SAE_DENSITY_STEP);
        if (bin < 0) bin = 0;
        if (bin >= SAE_DENSITY_BINS) bin = SAE_DENSITY_BINS - 1; // density 1 joins the top bin
        m->hist[bin]++;
    }
    m->alive_fraction = (double)m->alive / e->s->d_sae;
}

int sae_evaluate(const struct sae *s, const struct lm *lm, const struct token_dataset *data,
                 const struct sae_eval_opts *o, struct sae_metrics *m) {
    memset(m, 0, sizeof *m);
    struct evaluator e;
    int rc = evaluator_init(&e, s, lm, o, m);
    int bos = o->prepend_bos && data->bos_id >= 0 ? (int)data->bos_id : -1;
    int64_t n_win = sae_n_windows(data, o->context, bos);
    if (o->n_tokens > 0) {
        int64_t want = (o->n_tokens + o->context - 1) / o->context;
        if (want < n_win) n_win = want;
    }
    if (rc == 0 && n_win < 1)
        rc = err_set("%s: %lld tokens do not fill one window of %d", data->path,
                     (long long)data->n_tokens, o->context);
    struct progress pr;
    if (rc == 0) progress_begin(&pr, "evaluate", "tok", (double)n_win * o->context);
    for (int64_t w = 0; rc == 0 && w < n_win; w += o->batch) {
        int nb = n_win - w < o->batch ? (int)(n_win - w) : o->batch;
        if (load_batch(&e, data, w, nb, bos) < 0 || eval_batch(&e, nb, m) < 0) rc = -1;
        else progress_update(&pr, (double)(w + nb) * o->context);
    }
    if (rc == 0) {
        progress_end(&pr, (double)n_win * o->context);
        finish(&e, m);
    }
    evaluator_free(&e);
    if (rc < 0) {
        sae_metrics_free(m);
        return err_prefix("SAE evaluation on %s", data->path);
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Storage.
 */
#define METRIC_F64(X)                                                                          \
    X(l0) X(alive_fraction) X(ce_orig) X(ce_sae) X(ce_increase) X(kl) X(mse)                   \
        X(explained_variance)
#define METRIC_I64(X) X(alive) X(dead) X(n_tokens) X(d_sae)

static void density_edges(double *edges) {
    for (int i = 0; i <= SAE_DENSITY_BINS; i++) edges[i] = SAE_DENSITY_LO + i * SAE_DENSITY_STEP;
}

int sae_metrics_write(hid_t file, const struct sae_metrics *m) {
    hid_t g = h5_group(file, "metrics");
    if (g < 0) return err_prefix("metrics");
    int rc = 0;
#define WF(name)                                                                               \
    if (rc == 0) rc = h5_attr_f64(g, #name, m->name);
#define WI(name)                                                                               \
    if (rc == 0) rc = h5_attr_i64(g, #name, m->name);
    METRIC_F64(WF)
    METRIC_I64(WI)
#undef WF
#undef WI
    hsize_t nd = (hsize_t)m->n_downstream, ns = (hsize_t)m->d_sae, nb = SAE_DENSITY_BINS,
            ne = SAE_DENSITY_BINS + 1;
    double edges[SAE_DENSITY_BINS + 1];
    density_edges(edges);
    if (rc == 0) rc = h5_write(g, "mse_downstream", H5T_NATIVE_DOUBLE, 1, &nd, m->mse_downstream);
    if (rc == 0)
        rc = h5_write(g, "downstream_layers", H5T_NATIVE_INT64, 1, &nd, m->downstream_layers);
    if (rc == 0) rc = h5_write(g, "feature_density", H5T_NATIVE_DOUBLE, 1, &ns, m->feature_density);
    if (rc == 0) rc = h5_write(g, "density_hist", H5T_NATIVE_INT64, 1, &nb, m->hist);
    if (rc == 0) rc = h5_write(g, "density_bin_edges", H5T_NATIVE_DOUBLE, 1, &ne, edges);
    H5Gclose(g);
    return rc < 0 ? err_prefix("metrics") : 0;
}

int sae_metrics_read(hid_t file, struct sae_metrics *m) {
    memset(m, 0, sizeof *m);
    if (!h5_exists(file, "metrics")) return err_set("group /metrics is missing");
    hid_t g = h5_group(file, "metrics");
    if (g < 0) return -1;
    int rc = 0;
#define RF(name)                                                                               \
    if (rc == 0) rc = h5_get_attr_f64(g, #name, &m->name);
#define RI(name)                                                                               \
    if (rc == 0) rc = h5_get_attr_i64(g, #name, &m->name);
    METRIC_F64(RF)
    METRIC_I64(RI)
#undef RF
#undef RI
    hsize_t dims[8];
    int64_t *hist = NULL;
    hsize_t nb = SAE_DENSITY_BINS, ns = (hsize_t)m->d_sae;
    if (rc == 0)
        rc = h5_read(g, "mse_downstream", H5T_NATIVE_DOUBLE, 1, NULL, dims,
                     (void **)&m->mse_downstream);
    if (rc == 0) {
        m->n_downstream = (int)dims[0];
        hsize_t nd = dims[0];
        rc = h5_read(g, "downstream_layers", H5T_NATIVE_INT64, 1, &nd, NULL,
                     (void **)&m->downstream_layers);
    }
    if (rc == 0)
        rc = h5_read(g, "feature_density", H5T_NATIVE_DOUBLE, 1, &ns, NULL,
                     (void **)&m->feature_density);
    if (rc == 0 && (rc = h5_read(g, "density_hist", H5T_NATIVE_INT64, 1, &nb, NULL,
                                 (void **)&hist)) == 0)
        memcpy(m->hist, hist, sizeof m->hist);
    free(hist);
    H5Gclose(g);
    if (rc < 0) {
        sae_metrics_free(m);
        return err_prefix("metrics");
    }
    return 0;
}

int sae_metrics_save(const char *path, const struct sae_metrics *m) {
    char *tmp = atomic_tmp_path(path);
    if (!tmp) return err_prefix("%s", path);
    int rc = file_copy(path, tmp);
    hid_t f = rc == 0 ? H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT) : -1;
    if (rc == 0 && f < 0) rc = err_set("cannot open a copy of it for writing");
    if (rc == 0 && h5_exists(f, "metrics") && H5Ldelete(f, "metrics", H5P_DEFAULT) < 0)
        rc = err_set("cannot replace its /metrics");
    if (rc == 0) rc = sae_metrics_write(f, m);
    if (f >= 0 && H5Fclose(f) < 0 && rc == 0) rc = err_set("closing the copy failed");
    if (rc == 0) rc = atomic_rename(tmp, path);
    if (rc != 0) unlink(tmp);
    free(tmp);
    return rc < 0 ? err_prefix("%s", path) : 0;
}

static void add_num(cJSON *o, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

cJSON *sae_metrics_json(const struct sae_metrics *m) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
#define JF(name) add_num(o, #name, m->name);
#define JI(name) cJSON_AddNumberToObject(o, #name, (double)m->name);
    METRIC_F64(JF)
    METRIC_I64(JI)
#undef JF
#undef JI
    cJSON *ds = cJSON_AddObjectToObject(o, "mse_downstream");
    for (int k = 0; ds && k < m->n_downstream; k++) {
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)m->downstream_layers[k]);
        add_num(ds, key, m->mse_downstream[k]);
    }
    cJSON *h = cJSON_AddObjectToObject(o, "density_hist");
    double edges[SAE_DENSITY_BINS + 1];
    density_edges(edges);
    if (h) {
        cJSON_AddItemToObject(h, "log10_edges", cJSON_CreateDoubleArray(edges, SAE_DENSITY_BINS + 1));
        cJSON *c = cJSON_AddArrayToObject(h, "counts");
        for (int i = 0; c && i < SAE_DENSITY_BINS; i++)
            cJSON_AddItemToArray(c, cJSON_CreateNumber((double)m->hist[i]));
    }
    return o;
}
