/* extract.c: the extraction stage's driver: settings, the model-backed activation
 * source, the streaming pass over several SAEs, and the file-level job with its
 * skip/restart rules. The design (one pass, shared forward, bounded memory) is
 * described in extract.h; the window logic lives in collect.c.
 */
#include "extract/extract.h"

#include <cblas.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "sae/metrics.h"
#include "sae/sae_io.h"
#include "util/error.h"
#include "util/log.h"
#include "util/sha256.h"

/* ---------------------------------------------------------------------------
 * Settings.
 */
void extract_settings_default(struct extract_settings *s) {
    *s = (struct extract_settings){
        .n_features = 200, .top_k = 30, .window = 64, .offset = 48, .n_random = 10,
        .n_quantile = 0, .quantile_bands = 5, .n_explain = 10, .n_score_top = 10, .seed = 0,
        .max_tokens = 0, .context = 128, .batch = 0, .prepend_bos = true,
    };
}

void extract_settings_free(struct extract_settings *s) {
    free(s->features);
    s->features = NULL;
    s->n_explicit = 0;
}

int extract_settings_from_config(const struct config *cfg, struct extract_settings *s) {
    extract_settings_default(s);
    s->n_features = (int)cfg_int(cfg, "extract.n_features");
    s->top_k = (int)cfg_int(cfg, "extract.top_k");
    s->window = (int)cfg_int(cfg, "extract.window");
    s->offset = (int)cfg_int(cfg, "extract.offset");
    s->n_random = (int)cfg_int(cfg, "extract.n_random");
    s->n_quantile = (int)cfg_int(cfg, "extract.n_quantile");
    s->quantile_bands = (int)cfg_int(cfg, "extract.quantile_bands");
    s->batch = (int)cfg_int(cfg, "extract.batch");
    s->max_tokens = cfg_int(cfg, "extract.tokens");
    s->n_explain = (int)cfg_int(cfg, "interp.n_explain");
    s->n_score_top = (int)cfg_int(cfg, "interp.n_score_top");
    s->seed = (uint64_t)cfg_int(cfg, "seed");
    s->context = (int)cfg_int(cfg, "data.context");
    s->prepend_bos = cfg_bool(cfg, "data.prepend_bos");
    s->alive_from_sae = strcmp(cfg_str(cfg, "extract.alive_from"), "sae") == 0;
    int n = cfg_list_len(cfg, "extract.features");
    if (n > 0) {
        s->features = xmalloc((size_t)n * sizeof *s->features);
        if (!s->features) return -1;
        const cJSON *it;
        int i = 0;
        cJSON_ArrayForEach(it, cfg_node(cfg, "extract.features")) s->features[i++] =
            (int32_t)it->valuedouble;
        s->n_explicit = n;
    }
    return 0;
}

int extract_settings_parse_features(struct extract_settings *s, const char *list) {
    int cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    int32_t *f = xmalloc((size_t)cap * sizeof *f);
    if (!f) return -1;
    int n = 0;
    const char *p = list;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(f);
            return err_set("features: expected comma-separated feature ids, got '%s'", list);
        }
        f[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        free(f);
        return err_set("features: the list is empty");
    }
    free(s->features);
    s->features = f;
    s->n_explicit = n;
    return 0;
}

static void collect_params_of(const struct extract_settings *s, const struct extract_source *src,
                              struct collect_params *p) {
    *p = (struct collect_params){
        .T = src->T, .r0 = src->r0, .n_seq = src->n_seq, .window = s->window,
        .offset = s->offset, .top_k = s->top_k, .n_random = s->n_random,
        .n_quantile = s->n_quantile, .quantile_bands = s->quantile_bands,
        .n_explain = s->n_explain, .n_score_top = s->n_score_top,
        .n_features = s->n_features, .features = s->features, .n_explicit = s->n_explicit,
        .seed = s->seed,
    };
}

/* ---------------------------------------------------------------------------
 * The streaming pass.
 */

/* Features per encoder block: about 4 MB of pre-activations, so a block is still
 * in cache when the collector scans it right after the sgemm. */
static int block_features(int N, int d_sae) {
    int nb = (1 << 20) / (N > 0 ? N : 1);
    nb = nb < 64 ? 64 : nb;
    nb -= nb % 16;
    return nb > d_sae ? d_sae : nb;
}

/* The encoder rows of the features a collector will sample, gathered. */
struct sub_encoder {
    const int32_t *features; /* the collector's sample */
    int n;
    float *W; /* (n, d_in) */
};

static int sub_encoder_init(struct sub_encoder *e, const struct extract_sae *sae,
                            const struct collector *c) {
    e->features = collector_sample(c, &e->n);
    e->W = xmalloc(((size_t)e->n * sae->d_in + 1) * sizeof *e->W);
    if (!e->W) return -1;
    for (int j = 0; j < e->n; j++)
        memcpy(e->W + (size_t)j * sae->d_in, sae->W_enc + (size_t)e->features[j] * sae->d_in,
               (size_t)sae->d_in * sizeof *e->W);
    return 0;
}

int extract_stream(const struct extract_settings *s, const struct extract_source *src,
                   const struct extract_sae *saes, int n, struct examples *out,
                   struct collect_stats *stats, double *seconds) {
    struct collect_params p;
    collect_params_of(s, src, &p);
    struct collector **col = xcalloc((size_t)n, sizeof *col);
    struct sub_encoder *sub = xcalloc((size_t)n, sizeof *sub);
    if (!col || !sub) {
        free(col);
        free(sub);
        return -1;
    }
    int rc = 0, B = src->max_batch, N = B * src->T, nb_max = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        p.known_alive = saes[i].known_alive;
        rc = collector_new(&p, saes[i].d_sae, &col[i]);
        if (rc == 0 && saes[i].known_alive) rc = sub_encoder_init(&sub[i], &saes[i], col[i]);
        if (rc != 0) err_prefix("%s", saes[i].name);
        int nb = saes[i].known_alive ? sub[i].n : block_features(N, saes[i].d_sae);
        if (nb > nb_max) nb_max = nb;
    }
    float *blk = rc == 0 ? xmalloc(((size_t)nb_max * N + 1) * sizeof *blk) : NULL;
    if (!blk) rc = -1;
    double t0 = now_seconds();
    struct progress prog;
    progress_begin(&prog, "extract", "tok", (double)(src->n_seq * (src->T - src->r0)));
    for (int64_t seq0 = 0; rc == 0 && seq0 < src->n_seq; seq0 += B) {
        int b = src->n_seq - seq0 < B ? (int)(src->n_seq - seq0) : B, Nb = b * src->T;
        rc = src->forward(src->ctx, seq0, b);
        for (int i = 0; i < n && rc == 0; i++) {
            const struct extract_sae *sae = &saes[i];
            const float *x = src->hook(src->ctx, sae->resid_index); /* (Nb, d_in) */
            rc = collector_batch(col[i], seq0, b);
            if (sae->known_alive) { /* only the sampled features' rows */
                if (rc == 0 && sub[i].n > 0) {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, sub[i].n, Nb, sae->d_in,
                                1.0f, sub[i].W, sae->d_in, x, sae->d_in, 0.0f, blk, Nb);
                    rc = collector_rows(col[i], sub[i].features, sub[i].n, blk, sae->b_enc);
                }
                if (rc != 0) err_prefix("%s", sae->name);
                continue;
            }
            int nb = block_features(N, sae->d_sae);
            for (int f0 = 0; f0 < sae->d_sae && rc == 0; f0 += nb) {
                int nf = sae->d_sae - f0 < nb ? sae->d_sae - f0 : nb;
                // blk (nf, Nb) = W_enc[f0:f0+nf] (nf, d_in) · xᵀ (d_in, Nb)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nf, Nb, sae->d_in, 1.0f,
                            sae->W_enc + (size_t)f0 * sae->d_in, sae->d_in, x, sae->d_in, 0.0f,
                            blk, Nb);
                rc = collector_block(col[i], f0, nf, blk, sae->b_enc);
            }
            if (rc != 0) err_prefix("%s", sae->name);
        }
        progress_update(&prog, (double)((seq0 + b) * (src->T - src->r0)));
    }
    progress_end(&prog, (double)(src->n_seq * (src->T - src->r0)));
    if (seconds) *seconds = now_seconds() - t0;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = collector_finish(col[i], src->read_tokens, src->ctx, &out[i]);
        if (rc != 0) err_prefix("%s", saes[i].name);
        if (stats) collector_get_stats(col[i], &stats[i]);
    }
    for (int i = 0; i < n; i++) {
        collector_free(col[i]);
        free(sub[i].W);
    }
    free(col);
    free(sub);
    free(blk);
    return rc;
}

/* ---------------------------------------------------------------------------
 * The model-backed source.
 */
struct lm_source {
    const struct lm *lm;
    const struct token_dataset *d;
    struct lm_acts *acts;
    int32_t *tok; /* (B, T) model input */
    int T, r0, L, B, max_resid;
    int64_t bos;
};

static int lm_src_forward(void *ctx, int64_t seq0, int B) {
    struct lm_source *ls = ctx;
    if (!ls->acts || ls->acts->B != B) { /* only the last, shorter batch reallocates */
        lm_acts_free(ls->acts);
        ls->acts = lm_acts_new(ls->lm, B, ls->T, false);
        if (!ls->acts) return -1;
    }
    for (int b = 0; b < B; b++) {
        int32_t *row = ls->tok + (size_t)b * ls->T;
        if (ls->r0) row[0] = (int32_t)ls->bos;
        if (token_dataset_read(ls->d, (seq0 + b) * ls->L, ls->L, row + ls->r0) != 0) return -1;
    }
    if (lm_embed(ls->lm, ls->acts, ls->tok) != 0 ||
        lm_blocks_forward(ls->lm, ls->acts, 0, ls->max_resid) != 0)
        return -1;
    return 0;
}

static const float *lm_src_hook(void *ctx, int resid_index) {
    struct lm_source *ls = ctx;
    return ls->acts->resid[resid_index];
}

static int lm_src_read_tokens(void *ctx, int64_t pos, int n, int32_t *out) {
    struct lm_source *ls = ctx;
    return token_dataset_read(ls->d, pos, n, out);
}

int extract_lm_source_open(struct extract_source *src, const struct lm *lm,
                           const struct token_dataset *d, const struct extract_settings *s,
                           int max_resid_index) {
    memset(src, 0, sizeof *src);
    int T = s->context;
    if (T < 2 || T > lm->cfg.max_seq)
        return err_set("data.context: %d must be between 2 and the model's %d positions", T,
                       lm->cfg.max_seq);
    if (d->vocab_size > lm->cfg.vocab_size)
        return err_set("%s: vocabulary of %lld tokens exceeds the model's %d", d->path,
                       (long long)d->vocab_size, lm->cfg.vocab_size);
    struct lm_source *ls = xcalloc(1, sizeof *ls);
    if (!ls) return -1;
    ls->lm = lm;
    ls->d = d;
    ls->T = T;
    ls->r0 = s->prepend_bos && d->bos_id >= 0 ? 1 : 0;
    ls->bos = d->bos_id;
    ls->L = T - ls->r0;
    ls->max_resid = max_resid_index;
    ls->B = s->batch > 0 ? s->batch : (2048 + T - 1) / T;
    int64_t avail = d->n_tokens;
    if (s->max_tokens > 0 && s->max_tokens < avail) avail = s->max_tokens;
    int64_t n_seq = avail / ls->L;
    if (n_seq < 1) {
        int L = ls->L;
        free(ls);
        return err_set("%s: %lld tokens, fewer than one sequence of %d", d->path,
                       (long long)avail, L);
    }
    if (ls->B > n_seq) ls->B = (int)n_seq;
    ls->tok = xmalloc((size_t)ls->B * T * sizeof *ls->tok);
    if (!ls->tok) {
        free(ls);
        return -1;
    }
    *src = (struct extract_source){
        .ctx = ls, .T = T, .r0 = ls->r0, .n_seq = n_seq, .max_batch = ls->B,
        .forward = lm_src_forward, .hook = lm_src_hook, .read_tokens = lm_src_read_tokens,
    };
    return 0;
}

void extract_lm_source_close(struct extract_source *src) {
    struct lm_source *ls = src->ctx;
    if (ls) {
        lm_acts_free(ls->acts);
        free(ls->tok);
        free(ls);
    }
    memset(src, 0, sizeof *src);
}

/* ---------------------------------------------------------------------------
 * The job: files in, files out.
 */
char *extract_output_path(const char *out_dir, const char *sae_path) {
    const char *base = strrchr(sae_path, '/');
    base = base ? base + 1 : sae_path;
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".h5") == 0) n -= 3;
    size_t len = strlen(out_dir) + n + 8;
    char *p = xmalloc(len);
    if (p) snprintf(p, len, "%s/%.*s.h5", out_dir, (int)n, base);
    return p;
}

/* "path size mtime" of a file, or of the files inside a model directory. */
static void sig_append(struct sha256_ctx *h, const char *path) {
    const char *inside[] = {"", "/config.json", "/model.safetensors"};
    struct stat st;
    int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    for (int i = is_dir ? 1 : 0; i < (is_dir ? 3 : 1); i++) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s%s", path, inside[i]);
        struct stat fs = {0};
        stat(buf, &fs);
        char line[4300];
        int k = snprintf(line, sizeof line, "%s %lld %lld.%09ld\n", buf, (long long)fs.st_size,
                         (long long)fs.st_mtim.tv_sec, (long)fs.st_mtim.tv_nsec);
        sha256_update(h, line, (size_t)k);
    }
}

static void inputs_hash(const struct extract_settings *s, const struct extract_job *job,
                        const char *sae_path, char hex[SHA256_HEX_CHARS]) {
    struct sha256_ctx h;
    sha256_init(&h);
    char buf[512];
    int k = snprintf(buf, sizeof buf,
                     "extract v1 n_features=%d top_k=%d window=%d offset=%d n_random=%d "
                     "n_quantile=%d bands=%d n_explain=%d n_score_top=%d seed=%llu "
                     "max_tokens=%lld context=%d bos=%d%s features=",
                     s->n_features, s->top_k, s->window, s->offset, s->n_random, s->n_quantile,
                     s->quantile_bands, s->n_explain, s->n_score_top, (unsigned long long)s->seed,
                     (long long)s->max_tokens, s->context, (int)s->prepend_bos,
                     /* only when set, so that outputs made before the option stay complete */
                     s->alive_from_sae ? " alive_from=sae" : "");
    sha256_update(&h, buf, (size_t)k);
    for (int i = 0; i < s->n_explicit; i++) {
        k = snprintf(buf, sizeof buf, "%d,", s->features[i]);
        sha256_update(&h, buf, (size_t)k);
    }
    sha256_update(&h, "\n", 1);
    sig_append(&h, job->model_path);
    sig_append(&h, job->tokens_path);
    sig_append(&h, sae_path);
    uint8_t d[SHA256_DIGEST_BYTES];
    sha256_final(&h, d);
    sha256_to_hex(d, hex);
}

/* Remove "<out>.tmp.*" left by a killed writer: nothing ever reads them. */
static void remove_stale_temps(const char *out) {
    char *copy = xstrdup(out);
    if (!copy) return;
    char *slash = strrchr(copy, '/');
    const char *dir = slash ? copy : ".", *base = slash ? slash + 1 : copy;
    if (slash) *slash = 0;
    DIR *dh = opendir(dir);
    size_t bl = strlen(base);
    struct dirent *e;
    while (dh && (e = readdir(dh))) {
        if (strncmp(e->d_name, base, bl) != 0 || strncmp(e->d_name + bl, ".tmp.", 5) != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) log_info("extract: removed stale %s", path);
    }
    if (dh) closedir(dh);
    free(copy);
}

struct job_sae {
    const char *path;
    char *out;
    char hash[SHA256_HEX_CHARS];
    struct sae sae;
    struct sae_meta meta;
    bool loaded;
    uint8_t *known_alive; /* alive_from "sae": from the file's metrics, or NULL */
    int64_t known_tokens; /* the tokens those metrics were measured on */
};

/* The alive features of an SAE file's evaluation metrics; NULL (with a warning)
 * when the file has none or they do not match the SAE. */
static uint8_t *alive_from_metrics(struct job_sae *j) {
    hid_t f = h5_open_ro(j->path);
    struct sae_metrics m = {0};
    int rc = f < 0 ? -1 : sae_metrics_read(f, &m);
    if (f >= 0) h5_close(f);
    if (rc == 0 && m.d_sae != j->sae.d_sae)
        rc = err_set("metrics cover %lld features, the SAE has %d", (long long)m.d_sae,
                     j->sae.d_sae);
    uint8_t *alive = rc == 0 ? xmalloc((size_t)j->sae.d_sae) : NULL;
    if (!alive) {
        log_warn("extract: %s: no usable evaluation metrics (%s): every feature is encoded "
                 "(extract.alive_from \"pass\")",
                 j->path, err_msg());
        sae_metrics_free(&m);
        return NULL;
    }
    for (int k = 0; k < j->sae.d_sae; k++) alive[k] = m.feature_density[k] > 0;
    j->known_tokens = m.n_tokens;
    sae_metrics_free(&m);
    return alive;
}

static int load_saes(const struct extract_settings *s, const struct lm *lm, struct job_sae *js,
                     int n, struct extract_sae *es, int *max_resid) {
    *max_resid = 0;
    for (int i = 0; i < n; i++) {
        if (sae_file_read(js[i].path, &js[i].sae, &js[i].meta) != 0) return -1;
        js[i].loaded = true;
        int r = lm_hook_index(lm, js[i].meta.hook_name);
        if (r < 0) return err_prefix("%s", js[i].path);
        if (js[i].sae.d_in != lm->cfg.d_model)
            return err_set("%s: d_in %d does not match the model's d_model %d", js[i].path,
                           js[i].sae.d_in, lm->cfg.d_model);
        es[i] = (struct extract_sae){
            .name = js[i].meta.name, .resid_index = r, .d_in = js[i].sae.d_in,
            .d_sae = js[i].sae.d_sae, .W_enc = js[i].sae.p.W_enc, .b_enc = js[i].sae.p.b_enc,
        };
        if (s->alive_from_sae && !s->features) {
            js[i].known_alive = alive_from_metrics(&js[i]);
            es[i].known_alive = js[i].known_alive;
        }
        if (r > *max_resid) *max_resid = r;
    }
    return 0;
}

static int write_outputs(const struct extract_job *job, const struct token_dataset *d,
                         struct job_sae *js, struct examples *ex, int n) {
    for (int i = 0; i < n; i++) {
        ex[i].sae_name = xstrdup(js[i].meta.name);
        ex[i].sae_path = xstrdup(js[i].path);
        ex[i].model_path = xstrdup(job->model_path);
        ex[i].tokens_path = xstrdup(job->tokens_path);
        ex[i].tokenizer = xstrdup(d->tokenizer ? d->tokenizer : "");
        if (js[i].known_alive) {
            char from[64];
            snprintf(from, sizeof from, "sae metrics over %lld tokens",
                     (long long)js[i].known_tokens);
            ex[i].alive_from = xstrdup(from);
            if (!ex[i].alive_from) return -1;
        }
        if (!ex[i].sae_name || !ex[i].sae_path || !ex[i].model_path || !ex[i].tokens_path ||
            !ex[i].tokenizer)
            return -1;
        if (examples_write_extra(js[i].out, &ex[i], js[i].hash) != 0) return -1;
        log_info("extract: wrote %s (%d features, %lld windows, %d of %d alive)", js[i].out,
                 ex[i].n_features, (long long)ex[i].n_windows, ex[i].n_alive, ex[i].d_sae);
    }
    return 0;
}

static int run_pass(const struct extract_settings *s, const struct extract_job *job,
                    struct job_sae *js, int n, struct extract_summary *sum) {
    struct lm *lm = NULL;
    struct token_dataset d = {0};
    struct extract_source src = {0};
    struct extract_sae *es = xcalloc((size_t)n, sizeof *es);
    struct examples *ex = xcalloc((size_t)n, sizeof *ex);
    int rc = es && ex ? 0 : -1, max_resid = 0, d_open = 0;
    if (rc == 0) rc = lm_load(job->model_path, &lm);
    if (rc == 0) rc = token_dataset_open(&d, job->tokens_path);
    d_open = rc == 0;
    if (rc == 0) rc = load_saes(s, lm, js, n, es, &max_resid);
    if (rc == 0) rc = extract_lm_source_open(&src, lm, &d, s, max_resid);
    double secs = 0;
    if (rc == 0) {
        for (int i = 0; i < n; i++) remove_stale_temps(js[i].out);
        log_info("extract: %d SAE(s), %lld sequences of %d tokens, batch %d", n,
                 (long long)src.n_seq, src.T - src.r0, src.max_batch);
        rc = extract_stream(s, &src, es, n, ex, NULL, &secs);
    }
    if (rc == 0) rc = write_outputs(job, &d, js, ex, n);
    if (rc == 0 && sum) {
        sum->n_written += n;
        sum->n_tokens = src.n_seq * (src.T - src.r0);
        sum->seconds = secs;
    }
    extract_lm_source_close(&src);
    for (int i = 0; ex && i < n; i++) examples_free(&ex[i]);
    free(ex);
    free(es);
    if (d_open) token_dataset_close(&d);
    lm_free(lm);
    return rc;
}

int extract_run(const struct extract_settings *s, const struct extract_job *job,
                struct extract_summary *sum) {
    if (sum) memset(sum, 0, sizeof *sum);
    if (job->n_saes < 1) return err_set("extract: no SAE files given");
    if (mkdir_p(job->out_dir) != 0) return -1;
    struct job_sae *js = xcalloc((size_t)job->n_saes, sizeof *js);
    if (!js) return -1;
    int n = 0, rc = 0;
    for (int i = 0; i < job->n_saes && rc == 0; i++) {
        struct job_sae *j = &js[n];
        j->path = job->sae_paths[i];
        j->out = extract_output_path(job->out_dir, j->path);
        if (!j->out) {
            rc = -1;
            break;
        }
        for (int k = 0; k < n; k++)
            if (strcmp(js[k].out, j->out) == 0)
                rc = err_set("%s and %s would both write %s", js[k].path, j->path, j->out);
        inputs_hash(s, job, j->path, j->hash);
        if (rc == 0 && !job->force && examples_is_complete(j->out, j->hash)) {
            log_info("extract: %s is complete for these inputs: skipped", j->out);
            if (sum) sum->n_skipped++;
            free(j->out);
            j->out = NULL;
            continue;
        }
        n++;
    }
    if (rc == 0 && n > 0) rc = run_pass(s, job, js, n, sum);
    for (int i = 0; i < job->n_saes; i++) {
        free(js[i].out);
        if (js[i].loaded) {
            sae_free(&js[i].sae);
            sae_meta_free(&js[i].meta);
        }
        free(js[i].known_alive);
    }
    free(js);
    return rc;
}
