/* safetensors.c: reading and writing the safetensors format (see safetensors.h).
 *
 * Reading maps the whole file read-only and never copies tensor data: st_file
 * keeps the mapping and each st_tensor is a (dtype, shape, byte range) view into
 * it. Because a safetensors file is often downloaded from somewhere else, the
 * header is treated as hostile: before any tensor byte is touched we check the
 * length prefix against the file size and a 100 MB cap, parse the JSON (a NUL-
 * terminated copy, so cJSON can never run past the header), and check every
 * entry (known dtype, shape of non-negative integers whose product does not
 * overflow, offsets inside the data section that match the shape exactly, no
 * duplicate names, no two tensors sharing bytes). After st_open succeeds, any
 * tensor can be read without further bounds checks.
 *
 * Deliberate leniency: gaps between tensors and trailing bytes after the last
 * one are accepted (the reference implementation insists on a contiguous data
 * section, but a gap cannot make a read go wrong), and empty tensors may sit at
 * any offset. Unknown fields inside an entry are ignored; a duplicated required
 * field is not.
 *
 * Writing builds the header by hand (integers printed as integers, names JSON-
 * escaped, "__metadata__" first like the reference writer), pads it with spaces
 * to a multiple of 8 bytes so the data section stays 8-byte aligned, and writes
 * F32 data in the order given through an atomic temporary file.
 *
 * All multi-byte values in the format are little-endian; this file assumes a
 * little-endian host (checked at compile time) so F32 data is copied directly.
 */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic.h"
#include "util/error.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* Largest integer a JSON number (a double in cJSON) holds exactly: 2^53. */
#define ST_MAX_EXACT_INT 9007199254740992.0

static const struct {
    const char *name;
    enum st_dtype dtype;
    size_t size;
} DTYPES[] = {
    {"F32", ST_F32, 4}, {"F16", ST_F16, 2},   {"BF16", ST_BF16, 2}, {"F64", ST_F64, 8},
    {"I64", ST_I64, 8}, {"I32", ST_I32, 4},   {"I16", ST_I16, 2},   {"I8", ST_I8, 1},
    {"U8", ST_U8, 1},   {"BOOL", ST_BOOL, 1},
};
#define N_DTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

const char *st_dtype_name(enum st_dtype d) {
    for (int i = 0; i < N_DTYPES; i++)
        if (DTYPES[i].dtype == d) return DTYPES[i].name;
    return "?";
}

size_t st_dtype_size(enum st_dtype d) {
    for (int i = 0; i < N_DTYPES; i++)
        if (DTYPES[i].dtype == d) return DTYPES[i].size;
    return 0;
}

static int dtype_from_name(const char *s, enum st_dtype *out) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(DTYPES[i].name, s) == 0) {
            *out = DTYPES[i].dtype;
            return 0;
        }
    return -1;
}

int64_t st_numel(const struct st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

/* "[3,4]" into buf (cut to fit). */
static const char *shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* numel × esize without overflow; a zero dimension makes the product 0 whatever
 * the other dimensions are. */
static int byte_count(const int64_t *shape, int ndim, size_t esize, uint64_t *out) {
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) {
            *out = 0;
            return 0;
        }
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return -1;
    if (__builtin_mul_overflow(n, (uint64_t)esize, &n)) return -1;
    *out = n;
    return 0;
}

/* ---------------------------------------------------------------- reading */

static const char *json_kind(const cJSON *v) {
    if (!v) return "nothing";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "an invalid value";
}

/* A JSON number that is a non-negative integer exactly representable. `what`
 * names the field for the message ("shape[1]"). */
static int json_uint(const cJSON *v, const char *what, uint64_t *out) {
    if (!cJSON_IsNumber(v))
        return err_set("%s must be a non-negative integer, got %s", what, json_kind(v));
    double d = v->valuedouble;
    if (d < 0 || d != floor(d))
        return err_set("%s must be a non-negative integer, got %.17g", what, d);
    if (d > ST_MAX_EXACT_INT) return err_set("%s is too large (%.17g)", what, d);
    *out = (uint64_t)d;
    return 0;
}

/* The one child of obj named key; a second copy is an error (cJSON keeps both). */
static const cJSON *unique_field(const cJSON *obj, const char *key) {
    const cJSON *found = NULL;
    const cJSON *c;
    cJSON_ArrayForEach(c, obj) {
        if (!c->string || strcmp(c->string, key) != 0) continue;
        if (found) {
            err_set("field '%s' appears twice", key);
            return NULL;
        }
        found = c;
    }
    if (!found) err_set("missing '%s'", key);
    return found;
}

static int parse_shape(const cJSON *v, struct st_tensor *t) {
    if (!cJSON_IsArray(v))
        return err_set("shape must be an array of integers, got %s", json_kind(v));
    int n = cJSON_GetArraySize(v);
    if (n > ST_MAX_DIMS)
        return err_set("shape has %d dimensions, at most %d are supported", n, ST_MAX_DIMS);
    t->ndim = n;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, v) {
        char what[32];
        snprintf(what, sizeof what, "shape[%d]", i);
        uint64_t u;
        if (json_uint(d, what, &u) != 0) return -1;
        t->shape[i++] = (int64_t)u;
    }
    return 0;
}

static int parse_offsets(const cJSON *v, struct st_tensor *t, size_t data_len) {
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
        return err_set("data_offsets must be an array [begin, end], got %s", json_kind(v));
    if (json_uint(cJSON_GetArrayItem(v, 0), "data_offsets[0]", &t->begin) != 0) return -1;
    if (json_uint(cJSON_GetArrayItem(v, 1), "data_offsets[1]", &t->end) != 0) return -1;
    if (t->begin > t->end)
        return err_set("data_offsets [%llu, %llu): begin is after end",
                       (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > data_len)
        return err_set("data_offsets [%llu, %llu) run past the end of the data section (%zu bytes; "
                       "truncated file?)",
                       (unsigned long long)t->begin, (unsigned long long)t->end, data_len);
    return 0;
}

/* One header entry into t (t->name already set). Messages are relative to the
 * tensor; st_open adds the file and tensor name. */
static int parse_tensor(const cJSON *entry, struct st_tensor *t, size_t data_len) {
    if (!cJSON_IsObject(entry))
        return err_set("expected an object with dtype, shape and data_offsets, got %s",
                       json_kind(entry));
    const cJSON *dtype = unique_field(entry, "dtype");
    if (!dtype) return -1;
    if (!cJSON_IsString(dtype)) return err_set("dtype must be a string, got %s", json_kind(dtype));
    if (dtype_from_name(dtype->valuestring, &t->dtype) != 0)
        return err_set("unknown dtype '%.40s' (known: F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL)",
                       dtype->valuestring);
    const cJSON *shape = unique_field(entry, "shape");
    if (!shape || parse_shape(shape, t) != 0) return -1;
    const cJSON *offsets = unique_field(entry, "data_offsets");
    if (!offsets || parse_offsets(offsets, t, data_len) != 0) return -1;
    char sbuf[256];
    uint64_t need;
    if (byte_count(t->shape, t->ndim, st_dtype_size(t->dtype), &need) != 0)
        return err_set("shape %s %s is too large (its byte size overflows 64 bits)",
                       shape_str(t->shape, t->ndim, sbuf, sizeof sbuf), st_dtype_name(t->dtype));
    if (t->end - t->begin != need)
        return err_set("data_offsets [%llu, %llu) but shape %s %s needs %llu bytes",
                       (unsigned long long)t->begin, (unsigned long long)t->end,
                       shape_str(t->shape, t->ndim, sbuf, sizeof sbuf), st_dtype_name(t->dtype),
                       (unsigned long long)need);
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Duplicate keys by sorting a copy of the pointers: a hostile header can hold
 * millions of keys, so no quadratic scan. */
static int check_unique_keys(char *const *keys, int n) {
    if (n < 2) return 0;
    const char **v = xmalloc((size_t)n * sizeof *v);
    if (!v) return -1;
    memcpy(v, keys, (size_t)n * sizeof *v);
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++)
        if (strcmp(v[i - 1], v[i]) == 0)
            rc = err_set("__metadata__ key '%.200s' appears twice", v[i]);
    free(v);
    return rc;
}

static int parse_metadata(struct st_file *f, const cJSON *meta) {
    if (!cJSON_IsObject(meta))
        return err_set("__metadata__ must be an object of strings, got %s", json_kind(meta));
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = xcalloc((size_t)n, sizeof(char *));
    f->meta_values = xcalloc((size_t)n, sizeof(char *));
    if (!f->meta_keys || !f->meta_values) return -1;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        if (!cJSON_IsString(kv))
            return err_set("__metadata__ key '%.200s': expected a string value, got %s", kv->string,
                           json_kind(kv));
        char *k = xstrdup(kv->string), *v = xstrdup(kv->valuestring);
        if (!k || !v) {
            free(k);
            free(v);
            return -1;
        }
        f->meta_keys[f->n_meta] = k;
        f->meta_values[f->n_meta] = v;
        f->n_meta++;
    }
    return check_unique_keys(f->meta_keys, f->n_meta);
}

static int cmp_name(const void *a, const void *b) {
    const struct st_tensor *x = *(const struct st_tensor *const *)a;
    const struct st_tensor *y = *(const struct st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_range(const void *a, const void *b) {
    const struct st_tensor *x = *(const struct st_tensor *const *)a;
    const struct st_tensor *y = *(const struct st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* No name twice and no byte claimed by two tensors (empty tensors claim none). */
static int check_names_and_overlaps(const struct st_file *f) {
    if (f->n_tensors < 2) return 0;
    const struct st_tensor **v = xmalloc((size_t)f->n_tensors * sizeof *v);
    if (!v) return -1;
    for (int i = 0; i < f->n_tensors; i++)
        v[i] = &f->tensors[i];
    int rc = 0;
    qsort(v, (size_t)f->n_tensors, sizeof *v, cmp_name);
    for (int i = 1; i < f->n_tensors && rc == 0; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0)
            rc = err_set("tensor '%.200s' appears twice in the header", v[i]->name);
    qsort(v, (size_t)f->n_tensors, sizeof *v, cmp_range);
    const struct st_tensor *prev = NULL;
    for (int i = 0; i < f->n_tensors && rc == 0; i++) {
        if (v[i]->begin == v[i]->end) continue;
        if (prev && prev->end > v[i]->begin)
            rc =
                err_set("tensors '%.200s' [%llu, %llu) and '%.200s' [%llu, %llu) overlap",
                        prev->name, (unsigned long long)prev->begin, (unsigned long long)prev->end,
                        v[i]->name, (unsigned long long)v[i]->begin, (unsigned long long)v[i]->end);
        prev = v[i];
    }
    free(v);
    return rc;
}

/* Parse the JSON header text (hdr[0..n), NUL-terminated) into f. */
static int parse_header(struct st_file *f, const char *hdr, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)hdr[i];
        if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return err_set("header is not valid JSON (control byte 0x%02x at offset %zu)", c, i);
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, n, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - hdr) : 0;
        return err_set("header is not valid JSON (error near byte %zu of %zu: '%.30s')", at, n,
                       end ? end : "");
    }
    int rc = 0;
    while (end && *end && strchr(" \t\r\n", *end))
        end++;
    if (end && *end)
        rc =
            err_set("header is not valid JSON (trailing bytes at offset %zu)", (size_t)(end - hdr));
    else if (!cJSON_IsObject(root))
        rc = err_set("header must be a JSON object, got %s", json_kind(root));
    int n_entries = rc == 0 ? cJSON_GetArraySize(root) : 0;
    if (rc == 0) {
        f->tensors = xcalloc((size_t)n_entries, sizeof *f->tensors);
        if (!f->tensors) rc = -1;
    }
    const cJSON *e;
    int seen_meta = 0;
    for (e = rc == 0 ? root->child : NULL; e && rc == 0; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta++)
                rc = err_set("__metadata__ appears twice in the header");
            else
                rc = parse_metadata(f, e);
            continue;
        }
        struct st_tensor *t = &f->tensors[f->n_tensors];
        t->name = xstrdup(e->string);
        if (!t->name) rc = -1;
        f->n_tensors++;
        if (rc == 0 && parse_tensor(e, t, f->data_len) != 0)
            rc = err_prefix("tensor '%.200s'", t->name);
    }
    if (rc == 0) rc = check_names_and_overlaps(f);
    cJSON_Delete(root);
    return rc;
}

/* Map the file and check the length prefix; sets f->map, data, data_len. */
static int map_file(struct st_file *f, uint64_t *hdr_len) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_errno("cannot open");
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return err_errno("cannot stat");
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set("not a regular file");
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return err_set("file is %zu bytes, too short to hold the 8-byte header length "
                       "(truncated or not a safetensors file)",
                       size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);
    if (map == MAP_FAILED) {
        errno = saved;
        return err_errno("cannot map %zu bytes", size);
    }
    f->map = map;
    f->map_len = size;
    uint64_t n;
    memcpy(&n, map, 8);
    if (n > ST_MAX_HEADER_BYTES)
        return err_set("header length %llu bytes is over the %u MB limit (corrupt file or not "
                       "safetensors)",
                       (unsigned long long)n, ST_MAX_HEADER_BYTES / 1000000u);
    if (n > size - 8)
        return err_set("header length %llu bytes is larger than the file allows (%zu bytes after "
                       "the length; truncated?)",
                       (unsigned long long)n, size - 8);
    *hdr_len = n;
    f->data = (const unsigned char *)map + 8 + n;
    f->data_len = size - 8 - (size_t)n;
    return 0;
}

int st_open(struct st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = xstrdup(path);
    if (!f->path) return -1;
    uint64_t hdr_len = 0;
    int rc = map_file(f, &hdr_len);
    if (rc == 0) {
        /* A private NUL-terminated copy: the parser never sees the data section. */
        char *hdr = xmalloc((size_t)hdr_len + 1);
        if (!hdr)
            rc = -1;
        else {
            memcpy(hdr, (const char *)f->map + 8, (size_t)hdr_len);
            hdr[hdr_len] = 0;
            rc = parse_header(f, hdr, (size_t)hdr_len);
            free(hdr);
        }
    }
    if (rc != 0) {
        err_prefix("%s", path);
        st_close(f);
        return -1;
    }
    return 0;
}

void st_close(struct st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    if (f->map) munmap(f->map, f->map_len);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const struct st_tensor *st_find(const struct st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const struct st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

const void *st_tensor_data(const struct st_file *f, const struct st_tensor *t) {
    return f->data + t->begin;
}

/* IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0x1f) { /* inf, or nan keeping its payload */
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) { /* normal: rebias 15 -> 127 */
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else { /* zero or subnormal: mant × 2^-24, exact in float */
        float m = (float)mant * 0x1p-24f;
        memcpy(&bits, &m, 4);
        bits |= sign;
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

/* bfloat16 is the top half of a float32. */
float st_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

int st_read_f32(const struct st_file *f, const struct st_tensor *t, float *out) {
    const unsigned char *p = f->data + t->begin;
    size_t n = (size_t)st_numel(t);
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(out, p, n * 4);
        return 0;
    case ST_F16:
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
        }
        return 0;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        return 0;
    default:
        return err_set("%s: tensor '%.200s': dtype %s is not a floating-point type", f->path,
                       t->name, st_dtype_name(t->dtype));
    }
}

/* ---------------------------------------------------------------- writing */

struct sbuf {
    char *p;
    size_t n, cap;
    int failed;
};

static void sb_grow(struct sbuf *b, size_t more) {
    if (b->failed || b->n + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1)
        cap *= 2;
    char *p = xrealloc(b->p, cap);
    if (!p) {
        b->failed = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    sb_grow(b, (size_t)need);
    if (b->failed) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

/* A JSON string literal; bytes >= 0x80 pass through (names are UTF-8). */
static void sb_json_str(struct sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c < 0x20)
            sb_printf(b, "\\u%04x", c);
        else
            sb_printf(b, "%c", c);
    }
    sb_printf(b, "\"");
}

static int check_write_args(const struct st_write_tensor *tensors, int n,
                            const char *const *meta_keys, const char *const *meta_values,
                            int n_meta) {
    if (n < 0 || n_meta < 0) return err_set("negative tensor or metadata count");
    for (int i = 0; i < n; i++) {
        const struct st_write_tensor *t = &tensors[i];
        if (!t->name || !*t->name) return err_set("tensor %d has no name", i);
        if (strcmp(t->name, "__metadata__") == 0)
            return err_set("'__metadata__' is reserved and cannot name a tensor");
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS)
            return err_set("tensor '%.200s': %d dimensions (0..%d allowed)", t->name, t->ndim,
                           ST_MAX_DIMS);
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0)
                return err_set("tensor '%.200s': shape[%d] is negative (%lld)", t->name, d,
                               (long long)t->shape[d]);
        uint64_t bytes = 0;
        if (byte_count(t->shape, t->ndim, 4, &bytes) != 0)
            return err_set("tensor '%.200s': byte size overflows", t->name);
        if (bytes && !t->data) return err_set("tensor '%.200s': data is NULL", t->name);
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0)
                return err_set("tensor '%.200s' is given twice", t->name);
    }
    for (int i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i]) return err_set("metadata entry %d is NULL", i);
        for (int j = 0; j < i; j++)
            if (strcmp(meta_keys[j], meta_keys[i]) == 0)
                return err_set("metadata key '%.200s' is given twice", meta_keys[i]);
    }
    return 0;
}

/* The header JSON, space-padded to a multiple of 8 bytes. */
static int build_header(struct sbuf *b, const struct st_write_tensor *tensors, int n,
                        const char *const *meta_keys, const char *const *meta_values, int n_meta) {
    sb_printf(b, "{");
    if (n_meta > 0) {
        sb_printf(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_printf(b, ",");
            sb_json_str(b, meta_keys[i]);
            sb_printf(b, ":");
            sb_json_str(b, meta_values[i]);
        }
        sb_printf(b, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const struct st_write_tensor *t = &tensors[i];
        uint64_t bytes = 0;
        byte_count(t->shape, t->ndim, 4, &bytes); /* checked already */
        if (i || n_meta > 0) sb_printf(b, ",");
        sb_json_str(b, t->name);
        sb_printf(b, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++)
            sb_printf(b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        sb_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                  (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    sb_printf(b, "}");
    while (!b->failed && b->n % 8)
        sb_printf(b, " ");
    if (b->failed) return -1;
    if (b->n > ST_MAX_HEADER_BYTES)
        return err_set("header would be %zu bytes, over the %u MB limit", b->n,
                       ST_MAX_HEADER_BYTES / 1000000u);
    return 0;
}

int st_write_f32(const char *path, const struct st_write_tensor *tensors, int n,
                 const char *const *meta_keys, const char *const *meta_values, int n_meta) {
    if (check_write_args(tensors, n, meta_keys, meta_values, n_meta) != 0)
        return err_prefix("%s", path);
    struct sbuf hdr = {0};
    if (build_header(&hdr, tensors, n, meta_keys, meta_values, n_meta) != 0) {
        free(hdr.p);
        return err_prefix("%s", path);
    }
    struct atomic_file af;
    if (atomic_open(&af, path) != 0) {
        free(hdr.p);
        return -1;
    }
    uint64_t len = hdr.n;
    int ok = fwrite(&len, 8, 1, af.fp) == 1 && fwrite(hdr.p, 1, hdr.n, af.fp) == hdr.n;
    for (int i = 0; i < n && ok; i++) {
        uint64_t bytes = 0;
        byte_count(tensors[i].shape, tensors[i].ndim, 4, &bytes);
        if (bytes) ok = fwrite(tensors[i].data, 1, (size_t)bytes, af.fp) == bytes;
    }
    free(hdr.p);
    if (!ok) {
        err_errno("%s: write failed", path);
        atomic_abort(&af);
        return -1;
    }
    return atomic_commit(&af);
}
