/* safetensors.h: read and write the safetensors format.
 *
 * Layout: u64 little-endian header length N, then N bytes of JSON mapping each
 * tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to
 * the byte after the header) plus an optional "__metadata__" string map, then the
 * data. Reading maps the file and validates everything before any tensor is
 * touched: header size (at most 100 MB), JSON shape, known dtype, offsets in range,
 * sorted and non-overlapping, size = product(shape) × dtype size, no duplicate
 * names. F32, F16 and BF16 read into float32; the writer writes F32.
 */
#ifndef AUTOINTERP_IO_SAFETENSORS_H
#define AUTOINTERP_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)

enum st_dtype { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL };

struct st_tensor {
    char *name;
    enum st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end; /* byte offsets into the data section */
};

struct st_file {
    char *path;
    int n_tensors;
    struct st_tensor *tensors;
    char **meta_keys, **meta_values; /* "__metadata__" entries */
    int n_meta;
    const unsigned char *data; /* start of the data section inside the mapping */
    size_t data_len;
    void *map;
    size_t map_len;
};

/* Open and validate; errors name the file and the tensor or field. */
int st_open(struct st_file *f, const char *path);
void st_close(struct st_file *f);

const struct st_tensor *st_find(const struct st_file *f, const char *name);
int64_t st_numel(const struct st_tensor *t);
const char *st_dtype_name(enum st_dtype d);

/* Added by the io area: raw access and helpers. */
size_t st_dtype_size(enum st_dtype d); /* bytes per element */
const void *st_tensor_data(const struct st_file *f, const struct st_tensor *t); /* in the map */
const char *st_meta(const struct st_file *f, const char *key); /* NULL when absent */
float st_f16_to_f32(uint16_t h); /* exact, incl. subnormals, inf, nan */
float st_bf16_to_f32(uint16_t h);

/* Convert a float tensor (F32/F16/BF16/F64) into out[numel]. */
int st_read_f32(const struct st_file *f, const struct st_tensor *t, float *out);

struct st_write_tensor {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
};

/* Write F32 tensors (and optional metadata pairs) atomically to path. */
int st_write_f32(const char *path, const struct st_write_tensor *tensors, int n,
                 const char *const *meta_keys, const char *const *meta_values, int n_meta);

#endif
