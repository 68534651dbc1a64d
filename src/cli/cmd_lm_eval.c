/* cmd_lm_eval.c: `autointerp lm-eval`: how well a model predicts a token dataset.
 *
 * Cuts the dataset into consecutive non-overlapping windows of --context tokens,
 * runs them --batch at a time through lm_batch_ce (positions 0..T-2 of each
 * window predict the next token) and reports mean CE, perplexity and tokens/s.
 * --dump writes the first batch's tokens, logits and chosen hook activations to
 * HDF5, which is how the other stages and the tests check what the model sees.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/atomic.h"
#include "io/h5.h"
#include "model/lm.h"
#include "tok/dataset.h"
#include "util/error.h"
#include "util/log.h"

static const struct cli_opt opts[] = {
    {"model", 'm', "PATH", "GPT-2 directory (config.json + model.safetensors) or llama2.c .bin"},
    {"tokens", 't', "FILE.h5", "token dataset from `autointerp tokenize`"},
    {"context", 0, "T", "tokens per window (default: the model's maximum, at most 1024)"},
    {"batch", 0, "B", "windows per forward pass (default 4)"},
    {"max-tokens", 0, "N", "stop after N tokens of windows (default: the whole dataset)"},
    {"dump", 0, "OUT.h5", "write the first batch's tokens, logits and hook activations"},
    {"hooks", 0, "LIST", "hooks to dump, comma-separated (blocks.2.hook_resid_pre,...)"},
    {0},
};

static const struct cli_command cmd = {
    .name = "lm-eval",
    .summary = "mean next-token CE, perplexity and speed of a model on a token dataset",
    .usage = "autointerp lm-eval --model PATH --tokens FILE.h5 [options]",
    .description = "Windows of --context tokens, consecutive and non-overlapping, from the start\n"
                   "of the dataset; within each window every position but the last predicts the\n"
                   "next token. Prints one table on stdout.",
    .opts = opts,
    .min_positional = 0,
    .max_positional = 0,
};

struct hooks {
    int n;
    char **names;
    int *index;
};

static int parse_hooks(const struct lm *lm, const char *list, struct hooks *h) {
    memset(h, 0, sizeof *h);
    if (!list) return 0;
    char *copy = xstrdup(list);
    if (!copy) return -1;
    int cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    h->names = xcalloc((size_t)cap, sizeof *h->names);
    h->index = xcalloc((size_t)cap, sizeof *h->index);
    int rc = h->names && h->index ? 0 : -1;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); rc == 0 && tok;
         tok = strtok_r(NULL, ",", &save)) {
        int idx = lm_hook_index(lm, tok);
        if (idx < 0) {
            rc = err_prefix("--hooks");
            break;
        }
        h->names[h->n] = xstrdup(tok);
        h->index[h->n++] = idx;
    }
    free(copy);
    return rc;
}

static void hooks_free(struct hooks *h) {
    for (int i = 0; i < h->n; i++) free(h->names[i]);
    free(h->names);
    free(h->index);
}

/* tokens (B,T) int32, logits (B,T,V) float32, one (B,T,C) dataset per hook. */
static int write_dump(const char *path, const struct lm *lm, struct lm_acts *acts,
                      const int32_t *tokens, const struct hooks *h) {
    int B = acts->B, T = acts->T, C = lm->cfg.d_model, V = lm->cfg.vocab_size;
    size_t n_logits = (size_t)B * T * V;
    if (n_logits > ((size_t)1 << 29))
        return err_set("--dump: %d x %d x %d logits is over 2 GB: use a smaller --batch or "
                       "--context",
                       B, T, V);
    float *logits = xmalloc(n_logits * sizeof *logits);
    if (!logits) return -1;
    int rc = lm_unembed(lm, acts->lnf, B * T, logits);
    char *tmp = rc == 0 ? atomic_tmp_path(path) : NULL;
    hid_t f = tmp ? h5_create(tmp) : -1;
    if (f < 0) rc = -1;
    hsize_t d2[2] = {(hsize_t)B, (hsize_t)T}, d3[3] = {(hsize_t)B, (hsize_t)T, (hsize_t)V};
    if (rc == 0) rc = h5_write(f, "tokens", H5T_NATIVE_INT32, 2, d2, tokens);
    if (rc == 0) rc = h5_write_f32(f, "logits", 3, d3, logits);
    d3[2] = (hsize_t)C;
    if (rc == 0 && h->n > 0) {
        hid_t g = h5_group(f, "hooks");
        if (g < 0) rc = -1;
        for (int i = 0; rc == 0 && i < h->n; i++)
            rc = h5_write_f32(g, h->names[i], 3, d3, acts->resid[h->index[i]]);
        if (g >= 0) H5Gclose(g);
    }
    if (rc == 0) rc = h5_attr_str(f, "model", lm->path);
    if (f >= 0 && h5_close(f) < 0) rc = -1;
    if (rc == 0) rc = atomic_rename(tmp, path);
    if (rc < 0) {
        if (tmp) remove(tmp);
        err_prefix("%s", path);
    }
    free(tmp);
    free(logits);
    return rc;
}

struct eval_opts {
    const char *model, *tokens, *dump, *hooks;
    long long context, batch, max_tokens;
};

static int run(const struct eval_opts *o) {
    struct lm *lm = NULL;
    struct token_dataset d;
    struct lm_acts *acts = NULL;
    int32_t *buf = NULL;
    struct hooks h = {0};
    bool opened = false;
    int rc = lm_load(o->model, &lm);
    if (rc == 0) rc = token_dataset_open(&d, o->tokens);
    opened = rc == 0;
    if (rc == 0 && d.vocab_size > lm->cfg.vocab_size)
        rc = err_set("%s: vocab_size %lld is larger than the model's %d (%s)", o->tokens,
                     (long long)d.vocab_size, lm->cfg.vocab_size, o->model);
    int T = 0, B = (int)o->batch;
    if (rc == 0) {
        T = o->context ? (int)o->context : lm->cfg.max_seq < 1024 ? lm->cfg.max_seq : 1024;
        if (T > lm->cfg.max_seq || T < 2)
            rc = err_set("--context %d: the model takes 2 to %d tokens", T, lm->cfg.max_seq);
    }
    if (rc == 0) rc = parse_hooks(lm, o->hooks, &h);
    if (rc == 0) {
        acts = lm_acts_new(lm, B, T, false);
        buf = xmalloc((size_t)B * T * sizeof *buf);
        if (!acts || !buf) rc = -1;
    }
    int64_t limit = rc == 0 ? d.n_tokens : 0;
    if (o->max_tokens > 0 && o->max_tokens < limit) limit = o->max_tokens;
    int64_t n_windows = T > 0 ? limit / T : 0, n_pred = 0, n_seen = 0; /* T is 0 after an error */
    if (rc == 0 && n_windows < 1)
        rc = err_set("%s: %lld tokens make no window of %d", o->tokens, (long long)limit, T);
    double ce_sum = 0, t0 = now_seconds();
    struct progress pr;
    if (rc == 0) progress_begin(&pr, "lm-eval", "tok", (double)n_windows * T);
    for (int64_t w = 0; rc == 0 && w < n_windows; w += B) {
        int nb = n_windows - w < B ? (int)(n_windows - w) : B;
        if (nb < B) { /* a last, smaller batch */
            lm_acts_free(acts);
            acts = lm_acts_new(lm, nb, T, false);
            if (!acts) {
                rc = -1;
                break;
            }
        }
        rc = token_dataset_read(&d, w * T, (int64_t)nb * T, buf);
        double s = 0;
        int64_t n = 0;
        if (rc == 0) rc = lm_batch_ce(lm, acts, buf, &s, &n);
        if (rc == 0 && w == 0 && o->dump) rc = write_dump(o->dump, lm, acts, buf, &h);
        ce_sum += s;
        n_pred += n;
        n_seen += (int64_t)nb * T;
        if (rc == 0) progress_update(&pr, (double)n_seen);
    }
    double secs = now_seconds() - t0;
    if (rc == 0) {
        progress_end(&pr, (double)n_seen);
        double ce = ce_sum / (double)n_pred;
        printf("model        %s (%s, %d layers, d_model %d, vocab %d)\n", o->model,
               lm->cfg.arch == LM_GPT2 ? "gpt2" : "llama", lm->cfg.n_layer, lm->cfg.d_model,
               lm->cfg.vocab_size);
        printf("tokens       %s (%lld tokens)\n", o->tokens, (long long)d.n_tokens);
        printf("windows      %lld x %d tokens, batch %d\n", (long long)n_windows, T, B);
        printf("predicted    %lld\n", (long long)n_pred);
        printf("mean CE      %.4f nats/token\n", ce);
        printf("perplexity   %.3f\n", exp(ce));
        printf("throughput   %.0f tokens/s (%.2f s)\n", secs > 0 ? (double)n_seen / secs : 0.0,
               secs);
        if (o->dump) printf("dump         %s\n", o->dump);
    }
    hooks_free(&h);
    free(buf);
    lm_acts_free(acts);
    if (opened) token_dataset_close(&d);
    lm_free(lm);
    return rc;
}

int cmd_lm_eval(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    struct eval_opts o = {.model = cli_value(&a, "model"), .tokens = cli_value(&a, "tokens"),
                          .dump = cli_value(&a, "dump"), .hooks = cli_value(&a, "hooks")};
    if (!o.model || !o.tokens)
        rc = cli_usage_error(&cmd, "--model and --tokens are required");
    else if (o.hooks && !o.dump)
        rc = cli_usage_error(&cmd, "--hooks needs --dump");
    else if (cli_int(&a, "context", 0, 0, 1 << 20, &o.context) < 0 ||
             cli_int(&a, "batch", 4, 1, 1 << 16, &o.batch) < 0 ||
             cli_int(&a, "max-tokens", 0, 0, (long long)1 << 50, &o.max_tokens) < 0)
        rc = 2;
    else
        rc = run(&o) < 0 ? cli_fail() : 0;
    cli_args_free(&a);
    return rc;
}
