/* cmd_inspect.c: `autointerp inspect FILE...`: say what a file is and what it holds.
 *
 * The kind is found from content, not the name alone: HDF5 by its signature
 * (then token datasets, SAE files and example files by their "format" attribute,
 * anything else as a generic tree of groups, datasets and attributes),
 * safetensors by a header that parses, JSON configs by validating them, JSONL by
 * line, a model directory by config.json + model.safetensors, llama2.c .bin files
 * by trying the model and tokenizer readers. Every reader is the one the stages
 * use, so inspect also answers "would autointerp accept this file?": a file the
 * stages would reject gets the same error here, with exit code 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>

#include "cli/cli.h"
#include "config/config.h"
#include "io/atomic.h"
#include "io/h5.h"
#include "io/jsonl.h"
#include "io/safetensors.h"
#include "model/lm.h"
#include "tok/dataset.h"
#include "tok/tokenizer.h"
#include "util/error.h"

static const struct cli_opt opts[] = {
    {"head", 'n', "N", "items to show from lists and token streams (default 12)"},
    {0},
};

static const struct cli_command cmd = {
    .name = "inspect",
    .summary = "summarise any file autointerp reads or writes",
    .usage = "autointerp inspect [options] FILE...",
    .description =
        "Recognises token datasets, SAE and example files (HDF5), safetensors, GPT-2 model\n"
        "directories, llama2.c models and tokenizers, GPT-2 tokenizer directories, configs\n"
        "and JSONL results. A file autointerp would reject gets the reader's error.",
    .opts = opts,
    .min_positional = 1,
    .max_positional = -1,
};

static long long head_n = 12;

static const char *h5_type_name(hid_t t) {
    switch (H5Tget_class(t)) {
    case H5T_INTEGER: {
        size_t sz = H5Tget_size(t);
        int sign = H5Tget_sign(t) == H5T_SGN_2;
        static char buf[16];
        snprintf(buf, sizeof buf, "%s%zu", sign ? "int" : "uint", sz * 8);
        return buf;
    }
    case H5T_FLOAT: return H5Tget_size(t) == 4 ? "float32" : "float64";
    case H5T_STRING: return "string";
    default: return "other";
    }
}

static void print_attrs(hid_t obj, int indent) {
    H5O_info_t info;
    if (H5Oget_info(obj, &info) < 0) return;
    for (hsize_t i = 0; i < info.num_attrs; i++) {
        hid_t a = H5Aopen_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0) continue;
        char name[256];
        H5Aget_name(a, sizeof name, name);
        hid_t t = H5Aget_type(a);
        H5T_class_t cls = H5Tget_class(t);
        H5Tclose(t);
        H5Aclose(a);
        printf("%*s@%s = ", indent, "", name);
        if (cls == H5T_STRING) {
            char *s = NULL;
            if (h5_get_attr_str(obj, name, &s) == 0) {
                size_t len = strlen(s);
                char *nl = strchr(s, '\n');
                if (nl || len > 100)
                    printf("\"%.*s...\" (%zu chars)\n", (int)(nl ? nl - s : 100), s, len);
                else
                    printf("\"%s\"\n", s);
            } else
                printf("?\n");
            free(s);
        } else if (cls == H5T_INTEGER) {
            int64_t v = 0;
            h5_get_attr_i64(obj, name, &v);
            printf("%lld\n", (long long)v);
        } else if (cls == H5T_FLOAT) {
            double v = 0;
            h5_get_attr_f64(obj, name, &v);
            printf("%.6g\n", v);
        } else
            printf("(non-scalar)\n");
    }
}

static herr_t visit_cb(hid_t root, const char *name, const H5O_info_t *info, void *ud) {
    (void)ud;
    if (strcmp(name, ".") == 0) return 0;
    int depth = 0;
    for (const char *c = name; *c; c++) depth += *c == '/';
    if (info->type == H5O_TYPE_GROUP) {
        printf("  %*s%s/\n", depth * 2, "", strrchr(name, '/') ? strrchr(name, '/') + 1 : name);
        hid_t g = H5Gopen2(root, name, H5P_DEFAULT);
        if (g >= 0) {
            print_attrs(g, depth * 2 + 4);
            H5Gclose(g);
        }
    } else if (info->type == H5O_TYPE_DATASET) {
        hid_t ds = H5Dopen2(root, name, H5P_DEFAULT);
        if (ds < 0) return 0;
        hid_t sp = H5Dget_space(ds), t = H5Dget_type(ds);
        hsize_t dims[8];
        int nd = H5Sget_simple_extent_ndims(sp);
        if (nd > 8) nd = 8;
        H5Sget_simple_extent_dims(sp, dims, NULL);
        printf("  %*s%s  %s [", depth * 2, "", strrchr(name, '/') ? strrchr(name, '/') + 1 : name,
               h5_type_name(t));
        for (int i = 0; i < nd; i++) printf("%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
        printf("]\n");
        print_attrs(ds, depth * 2 + 4);
        H5Tclose(t);
        H5Sclose(sp);
        H5Dclose(ds);
    }
    return 0;
}

static int inspect_token_dataset(const char *path) {
    struct token_dataset d;
    if (token_dataset_open(&d, path) != 0) return -1;
    printf("%s: token dataset\n", path);
    printf("  tokenizer   %s (vocab %lld, eot %lld, bos %lld)\n", d.tokenizer,
           (long long)d.vocab_size, (long long)d.eot_id, (long long)d.bos_id);
    printf("  tokens      %lld in %lld documents\n", (long long)d.n_tokens, (long long)d.n_documents);
    int64_t n = d.n_tokens < head_n ? d.n_tokens : head_n;
    int32_t *ids = xmalloc((size_t)(n ? n : 1) * sizeof *ids);
    int rc = ids ? token_dataset_read(&d, 0, n, ids) : -1;
    if (rc == 0) {
        printf("  first ids  ");
        for (int64_t i = 0; i < n; i++) printf(" %d", ids[i]);
        printf("\n");
    }
    free(ids);
    token_dataset_close(&d);
    return rc;
}

static int inspect_hdf5(const char *path) {
    hid_t f = h5_open_ro(path);
    if (f < 0) return -1;
    char *format = NULL;
    if (h5_has_attr(f, "format")) h5_get_attr_str(f, "format", &format);
    if (format && strcmp(format, "autointerp-tokens") == 0) {
        free(format);
        h5_close(f);
        return inspect_token_dataset(path);
    }
    printf("%s: HDF5%s%s\n", path, format ? ", format " : "", format ? format : "");
    free(format);
    print_attrs(f, 2);
    H5Ovisit(f, H5_INDEX_NAME, H5_ITER_INC, visit_cb, NULL);
    h5_close(f);
    return 0;
}

static int inspect_safetensors(const char *path) {
    struct st_file st;
    if (st_open(&st, path) != 0) return -1;
    int64_t total = 0;
    for (int i = 0; i < st.n_tensors; i++) total += st_numel(&st.tensors[i]);
    printf("%s: safetensors, %d tensors, %lld parameters\n", path, st.n_tensors, (long long)total);
    for (int i = 0; i < st.n_tensors && i < head_n * 4; i++) {
        const struct st_tensor *t = &st.tensors[i];
        printf("  %-40s %-4s [", t->name, st_dtype_name(t->dtype));
        for (int k = 0; k < t->ndim; k++) printf("%s%lld", k ? ", " : "", (long long)t->shape[k]);
        printf("]\n");
    }
    if (st.n_tensors > head_n * 4) printf("  ... %lld more\n", (long long)(st.n_tensors - head_n * 4));
    for (int i = 0; i < st.n_meta; i++) printf("  metadata %s = %s\n", st.meta_keys[i], st.meta_values[i]);
    st_close(&st);
    return 0;
}

static void print_lm(const struct lm *lm) {
    const struct lm_config *c = &lm->cfg;
    printf("  architecture %s: %d layers, d_model %d, %d heads (%d kv), d_ff %d, vocab %d, "
           "context %d, norm eps %g, %s classifier\n",
           c->arch == LM_GPT2 ? "GPT-2" : "Llama", c->n_layer, c->d_model, c->n_head, c->n_kv_head,
           c->d_ff, c->vocab_size, c->max_seq, c->norm_eps, c->shared_classifier ? "tied" : "separate");
}

static int inspect_model(const char *path) {
    struct lm *lm = NULL;
    if (lm_load(path, &lm) != 0) return -1;
    printf("%s: language model\n", path);
    print_lm(lm);
    lm_free(lm);
    return 0;
}

static int inspect_tokenizer(const char *path) {
    struct tokenizer *tok = tokenizer_load(path);
    if (!tok) return -1;
    printf("%s: %s tokenizer, vocab %d, eot %d, bos %d\n", path, tokenizer_name(tok),
           tokenizer_vocab_size(tok), tokenizer_eot_id(tok), tokenizer_bos_id(tok));
    tokenizer_free(tok);
    return 0;
}

struct jsonl_count {
    long lines;
    long failures;
    char first_keys[512];
};

static int count_line(const cJSON *obj, int line_no, void *ctx) {
    (void)line_no;
    struct jsonl_count *c = ctx;
    if (c->lines++ == 0) {
        const cJSON *it;
        size_t n = 0;
        cJSON_ArrayForEach(it, obj) {
            int w = snprintf(c->first_keys + n, sizeof c->first_keys - n, "%s%s", n ? ", " : "", it->string);
            if (w < 0 || (size_t)w >= sizeof c->first_keys - n) break;
            n += (size_t)w;
        }
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, "failure");
    if (f && !cJSON_IsNull(f)) c->failures++;
    return 0;
}

static int inspect_jsonl(const char *path) {
    struct jsonl_count c = {0};
    int torn = 0;
    if (jsonl_read(path, 0, count_line, &c, &torn) != 0) return -1;
    printf("%s: JSONL, %ld records%s, %ld with a failure\n", path, c.lines,
           torn ? " (+1 torn last line, skipped)" : "", c.failures);
    if (c.lines) printf("  keys: %s\n", c.first_keys);
    return 0;
}

static int inspect_json(const char *path, const char *text) {
    cJSON *root = json_parse_named(text, path);
    if (!root) return -1;
    bool looks_config = cJSON_GetObjectItemCaseSensitive(root, "experiment") != NULL;
    cJSON_Delete(root);
    if (looks_config) {
        struct config cfg;
        if (config_load(&cfg, path) != 0) return -1;
        char hex[65] = "";
        config_hash(&cfg, hex);
        printf("%s: experiment config '%s', valid, hash %.16s\n", path, cfg_str(&cfg, "experiment"), hex);
        printf("  model %s; SAE types", cfg_str(&cfg, "model.path")[0] ? cfg_str(&cfg, "model.path") : "(trained by lm-train)");
        const cJSON *t;
        cJSON_ArrayForEach(t, cfg_node(&cfg, "sae.types")) printf(" %s", t->valuestring);
        printf(" at %d layer(s), ratio %lld; explainer %s, simulator %s (%s)\n",
               cfg_list_len(&cfg, "sae.layers"), cfg_int(&cfg, "sae.ratio"),
               cfg_str(&cfg, "explainer.provider"), cfg_str(&cfg, "simulator.provider"),
               cfg_str(&cfg, "simulator.mode"));
        config_free(&cfg);
        return 0;
    }
    printf("%s: JSON\n%s\n", path, text);
    return 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int inspect_one(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return err_errno("%s: cannot open", path);
    if (S_ISDIR(st.st_mode)) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s/model.safetensors", path);
        if (file_exists(buf)) return inspect_model(path);
        snprintf(buf, sizeof buf, "%s/encoder.json", path);
        char buf2[4096];
        snprintf(buf2, sizeof buf2, "%s/vocab.json", path);
        if (file_exists(buf) || file_exists(buf2)) return inspect_tokenizer(path);
        return err_set("%s: a directory, but neither a model (model.safetensors) nor a tokenizer "
                       "(encoder.json or vocab.json)",
                       path);
    }
    FILE *f = fopen(path, "rb");
    if (!f) return err_errno("%s: cannot open", path);
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (got == 8 && memcmp(magic, "\x89HDF\r\n\x1a\n", 8) == 0) return inspect_hdf5(path);
    if (ends_with(path, ".safetensors")) return inspect_safetensors(path);
    if (ends_with(path, ".jsonl")) return inspect_jsonl(path);
    if (ends_with(path, ".bin")) {
        if (inspect_model(path) == 0) return 0;
        char model_err[ERR_MSG_MAX];
        snprintf(model_err, sizeof model_err, "%s", err_msg());
        if (inspect_tokenizer(path) == 0) return 0;
        return err_set("%s: neither a llama2.c model (%s) nor a tokenizer (%s)", path, model_err,
                       err_msg());
    }
    if (ends_with(path, ".h5") || ends_with(path, ".hdf5"))
        return err_set("%s: not an HDF5 file (bad signature; truncated or corrupt?)", path);
    size_t len;
    char *text = read_file_all(path, 64u << 20, &len);
    if (!text) return -1;
    int rc;
    if (ends_with(path, ".json")) {
        rc = inspect_json(path, text);
    } else {
        long lines = 0;
        for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
        printf("%s: text, %zu bytes, %ld lines\n", path, len, lines);
        rc = 0;
    }
    free(text);
    return rc;
}

int cmd_inspect(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    if (cli_int(&a, "head", 12, 1, 1000000, &head_n) != 0) {
        cli_args_free(&a);
        return 2;
    }
    rc = 0;
    for (int i = 0; i < a.n_positional; i++)
        if (inspect_one(a.positional[i]) != 0) rc = cli_fail();
    cli_args_free(&a);
    return rc;
}
