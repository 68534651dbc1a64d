/* examples.c: reading and writing the examples file (layout in examples.h).
 *
 * Writing goes to a temporary sibling, sets `complete = 1` as the very last
 * attribute, closes, and renames over the final path (src/io/atomic.h), so a
 * killed writer leaves either the previous file or a stray *.tmp.* that no reader
 * opens. Loading refuses anything that is not a finished file of this format, and
 * checks every shape and index range before handing the arrays out, so the
 * interpretation stages can index them without further checks.
 */
#include "extract/examples.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/h5.h"
#include "util/error.h"

void examples_free(struct examples *ex) {
    if (!ex) return;
    free(ex->path);
    free(ex->sae_name);
    free(ex->sae_path);
    free(ex->model_path);
    free(ex->tokens_path);
    free(ex->tokenizer);
    free(ex->alive_from);
    free(ex->density);
    free(ex->max_activation);
    free(ex->features);
    free(ex->win_feature);
    free(ex->win_split);
    free(ex->win_rank);
    free(ex->win_source);
    free(ex->win_tokens);
    free(ex->win_acts);
    memset(ex, 0, sizeof *ex);
}

void examples_feature_windows(const struct examples *ex, int feature_index, int64_t *first,
                              int64_t *count) {
    /* Windows are sorted by feature index: binary search for the first one. */
    int64_t lo = 0, hi = ex->n_windows;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (ex->win_feature[mid] < feature_index) lo = mid + 1;
        else hi = mid;
    }
    int64_t end = lo;
    while (end < ex->n_windows && ex->win_feature[end] == feature_index) end++;
    *first = lo;
    *count = end - lo;
}

/* ---------------------------------------------------------------------------
 * Writing.
 */
static const char *or_empty(const char *s) { return s ? s : ""; }

static int write_attrs(hid_t f, const struct examples *ex) {
    struct {
        const char *name;
        int64_t v;
    } ints[] = {
        {"format_version", EXAMPLES_FORMAT_VERSION},
        {"window", ex->window},
        {"offset", ex->offset},
        {"top_k", ex->top_k},
        {"n_random", ex->n_random},
        {"n_quantile", ex->n_quantile},
        {"n_explain", ex->n_explain},
        {"n_score_top", ex->n_score_top},
        {"seed", ex->seed},
        {"n_tokens_scanned", ex->n_tokens_scanned},
        {"d_sae", ex->d_sae},
        {"n_alive", ex->n_alive},
    };
    if (h5_attr_str(f, "format", EXAMPLES_FORMAT) || h5_attr_str(f, "sae", or_empty(ex->sae_name)) ||
        h5_attr_str(f, "sae_path", or_empty(ex->sae_path)) ||
        h5_attr_str(f, "model_path", or_empty(ex->model_path)) ||
        h5_attr_str(f, "tokens_path", or_empty(ex->tokens_path)) ||
        h5_attr_str(f, "tokenizer", or_empty(ex->tokenizer)) ||
        h5_attr_str(f, "alive_from", ex->alive_from ? ex->alive_from : "pass"))
        return -1;
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if (h5_attr_i64(f, ints[i].name, ints[i].v)) return -1;
    return 0;
}

static int write_data(hid_t f, const struct examples *ex) {
    hsize_t d_sae = (hsize_t)ex->d_sae, nf = (hsize_t)ex->n_features;
    hsize_t nw = (hsize_t)ex->n_windows, w2[2] = {nw, (hsize_t)ex->window};
    if (h5_write(f, "density", H5T_NATIVE_DOUBLE, 1, &d_sae, ex->density) ||
        h5_write(f, "max_activation", H5T_NATIVE_FLOAT, 1, &d_sae, ex->max_activation) ||
        h5_write(f, "features", H5T_NATIVE_INT32, 1, &nf, ex->features) ||
        h5_write(f, "windows/feature", H5T_NATIVE_INT32, 1, &nw, ex->win_feature) ||
        h5_write(f, "windows/split", H5T_NATIVE_UINT8, 1, &nw, ex->win_split) ||
        h5_write(f, "windows/rank", H5T_NATIVE_INT32, 1, &nw, ex->win_rank) ||
        h5_write(f, "windows/source", H5T_NATIVE_INT64, 1, &nw, ex->win_source) ||
        h5_write(f, "windows/tokens", H5T_NATIVE_INT32, 2, w2, ex->win_tokens) ||
        h5_write(f, "windows/acts", H5T_NATIVE_FLOAT, 2, w2, ex->win_acts))
        return -1;
    return 0;
}

int examples_write_extra(const char *path, const struct examples *ex, const char *inputs_hash) {
    char *tmp = atomic_tmp_path(path);
    if (!tmp) return err_prefix("%s", path);
    hid_t f = h5_create(tmp);
    if (f < 0) {
        free(tmp);
        return err_prefix("%s", path);
    }
    int rc = write_attrs(f, ex);
    if (rc == 0 && inputs_hash) rc = h5_attr_str(f, "inputs_hash", inputs_hash);
    if (rc == 0) rc = write_data(f, ex);
    /* Last, so that a file cut short anywhere above has no complete flag. */
    if (rc == 0) rc = h5_attr_i64(f, "complete", 1);
    if (h5_close(f) != 0) rc = -1;
    if (rc == 0) rc = atomic_rename(tmp, path);
    if (rc != 0) {
        unlink(tmp);
        err_prefix("%s", path);
    }
    free(tmp);
    return rc;
}

int examples_write(const char *path, const struct examples *ex) {
    return examples_write_extra(path, ex, NULL);
}

/* ---------------------------------------------------------------------------
 * Loading.
 */
static int get_int(hid_t f, const char *name, int64_t lo, int64_t hi, int64_t *out) {
    if (h5_get_attr_i64(f, name, out) != 0) return -1;
    if (*out < lo || *out > hi)
        return err_set("attribute '%s': expected %lld..%lld, got %lld", name, (long long)lo,
                       (long long)hi, (long long)*out);
    return 0;
}

static int load_attrs(hid_t f, struct examples *ex) {
    char *format = NULL;
    int64_t v, complete = 0;
    if (h5_get_attr_str(f, "format", &format) != 0) return -1;
    int bad = strcmp(format, EXAMPLES_FORMAT) != 0;
    if (bad) err_set("not an examples file: format is '%s', expected '%s'", format, EXAMPLES_FORMAT);
    free(format);
    if (bad) return -1;
    if (!h5_has_attr(f, "complete") || h5_get_attr_i64(f, "complete", &complete) != 0 ||
        complete != 1)
        return err_set("incomplete file (no complete = 1 attribute): an interrupted extract? "
                       "run it again");
    if (get_int(f, "format_version", 1, 1000, &v)) return -1;
    if (v != EXAMPLES_FORMAT_VERSION)
        return err_set("format_version %lld is not supported (expected %d)", (long long)v,
                       EXAMPLES_FORMAT_VERSION);
    if (h5_get_attr_str(f, "sae", &ex->sae_name) || h5_get_attr_str(f, "sae_path", &ex->sae_path) ||
        h5_get_attr_str(f, "model_path", &ex->model_path) ||
        h5_get_attr_str(f, "tokens_path", &ex->tokens_path) ||
        h5_get_attr_str(f, "tokenizer", &ex->tokenizer) ||
        (h5_has_attr(f, "alive_from") && h5_get_attr_str(f, "alive_from", &ex->alive_from)))
        return -1;
    struct {
        const char *name;
        int *dst;
        int64_t lo, hi;
    } ints[] = {
        {"window", &ex->window, 1, 1 << 20},   {"offset", &ex->offset, 0, 1 << 20},
        {"top_k", &ex->top_k, 0, INT32_MAX},   {"n_random", &ex->n_random, 0, INT32_MAX},
        {"n_quantile", &ex->n_quantile, 0, INT32_MAX},
        {"n_explain", &ex->n_explain, 0, INT32_MAX},
        {"n_score_top", &ex->n_score_top, 0, INT32_MAX},
        {"d_sae", &ex->d_sae, 1, INT32_MAX},   {"n_alive", &ex->n_alive, 0, INT32_MAX},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        if (get_int(f, ints[i].name, ints[i].lo, ints[i].hi, &v)) return -1;
        *ints[i].dst = (int)v;
    }
    if (ex->offset >= ex->window)
        return err_set("attribute 'offset' (%d) must be less than 'window' (%d)", ex->offset,
                       ex->window);
    if (ex->n_alive > ex->d_sae)
        return err_set("attribute 'n_alive' (%d) exceeds 'd_sae' (%d)", ex->n_alive, ex->d_sae);
    if (h5_get_attr_i64(f, "seed", &ex->seed) ||
        get_int(f, "n_tokens_scanned", 0, INT64_MAX, &ex->n_tokens_scanned))
        return -1;
    return 0;
}

static int load_data(hid_t f, struct examples *ex) {
    hsize_t dims[2], d_sae = (hsize_t)ex->d_sae;
    if (h5_read(f, "density", H5T_NATIVE_DOUBLE, 1, &d_sae, NULL, (void **)&ex->density) ||
        h5_read(f, "max_activation", H5T_NATIVE_FLOAT, 1, &d_sae, NULL,
                (void **)&ex->max_activation) ||
        h5_read(f, "features", H5T_NATIVE_INT32, 1, NULL, dims, (void **)&ex->features))
        return -1;
    ex->n_features = (int)dims[0];
    if (h5_read(f, "windows/feature", H5T_NATIVE_INT32, 1, NULL, dims, (void **)&ex->win_feature))
        return -1;
    ex->n_windows = (int64_t)dims[0];
    hsize_t nw[1] = {dims[0]}, nw2[2] = {dims[0], (hsize_t)ex->window};
    /* h5_read treats an expected 0 as "any": check the window count by hand. */
    hsize_t got[2];
    const char *one_d[] = {"windows/split", "windows/rank", "windows/source"};
    hid_t types[] = {H5T_NATIVE_UINT8, H5T_NATIVE_INT32, H5T_NATIVE_INT64};
    void **dst[] = {(void **)&ex->win_split, (void **)&ex->win_rank, (void **)&ex->win_source};
    for (int i = 0; i < 3; i++) {
        if (h5_read(f, one_d[i], types[i], 1, nw, got, dst[i])) return -1;
        if ((int64_t)got[0] != ex->n_windows)
            return err_set("dataset '%s': %llu windows, expected %lld", one_d[i],
                           (unsigned long long)got[0], (long long)ex->n_windows);
    }
    const char *two_d[] = {"windows/tokens", "windows/acts"};
    hid_t types2[] = {H5T_NATIVE_INT32, H5T_NATIVE_FLOAT};
    void **dst2[] = {(void **)&ex->win_tokens, (void **)&ex->win_acts};
    for (int i = 0; i < 2; i++) {
        if (h5_read(f, two_d[i], types2[i], 2, nw2, got, dst2[i])) return -1;
        if ((int64_t)got[0] != ex->n_windows || got[1] != (hsize_t)ex->window)
            return err_set("dataset '%s': shape [%llu, %llu], expected [%lld, %d]", two_d[i],
                           (unsigned long long)got[0], (unsigned long long)got[1],
                           (long long)ex->n_windows, ex->window);
    }
    return 0;
}

static int check_ranges(const struct examples *ex) {
    for (int i = 0; i < ex->n_features; i++)
        if (ex->features[i] < 0 || ex->features[i] >= ex->d_sae)
            return err_set("dataset 'features': entry %d is %d, outside 0..%d", i, ex->features[i],
                           ex->d_sae - 1);
    for (int64_t w = 0; w < ex->n_windows; w++) {
        if (ex->win_feature[w] < 0 || ex->win_feature[w] >= ex->n_features)
            return err_set("dataset 'windows/feature': entry %lld is %d, outside 0..%d",
                           (long long)w, ex->win_feature[w], ex->n_features - 1);
        if (w > 0 && ex->win_feature[w] < ex->win_feature[w - 1])
            return err_set("dataset 'windows/feature': not sorted at entry %lld", (long long)w);
        if (ex->win_split[w] > SPLIT_SCORE_QUANTILE)
            return err_set("dataset 'windows/split': entry %lld is %d, expected 0..3", (long long)w,
                           ex->win_split[w]);
        if (ex->win_source[w] < 0)
            return err_set("dataset 'windows/source': entry %lld is negative", (long long)w);
    }
    return 0;
}

int examples_load(const char *path, struct examples *ex) {
    memset(ex, 0, sizeof *ex);
    hid_t f = h5_open_ro(path);
    if (f < 0) return -1; /* the message names the path */
    int rc = load_attrs(f, ex);
    if (rc == 0) rc = load_data(f, ex);
    if (rc == 0) rc = check_ranges(ex);
    h5_close(f);
    if (rc == 0) {
        ex->path = xstrdup(path);
        if (!ex->path) rc = -1;
    }
    if (rc != 0) {
        examples_free(ex);
        return err_prefix("%s", path);
    }
    return 0;
}

int examples_is_complete(const char *path, const char *inputs_hash) {
    if (!file_exists(path)) return 0;
    hid_t f = h5_open_ro(path);
    if (f < 0) {
        err_clear();
        return 0;
    }
    int64_t complete = 0;
    int ok = h5_has_attr(f, "complete") && h5_get_attr_i64(f, "complete", &complete) == 0 &&
             complete == 1;
    if (ok && inputs_hash) {
        char *h = NULL;
        ok = h5_has_attr(f, "inputs_hash") && h5_get_attr_str(f, "inputs_hash", &h) == 0 &&
             strcmp(h, inputs_hash) == 0;
        free(h);
    }
    h5_close(f);
    err_clear();
    return ok;
}
