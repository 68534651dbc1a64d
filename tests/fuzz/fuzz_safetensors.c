/* fuzz_safetensors.c: the safetensors reader on a file written from the input.
 *
 * st_open validates the whole header before any tensor is touched; after it
 * succeeds every tensor must be readable without further checks, so the
 * harness converts every floating-point tensor and sums every integer one.
 */
#include "fuzz_common.h"

#include "io/safetensors.h"

int fuzz_safetensors(const uint8_t *data, size_t size) {
    err_clear();
    const char *path = fuzz_write("input.st", data, size);
    struct st_file f;
    int rc = st_open(&f, path);
    if (rc != 0) return fuzz_outcome(rc, "st_open");
    for (int i = 0; i < f.n_tensors; i++) {
        const struct st_tensor *t = &f.tensors[i];
        FUZZ_CHECK(st_find(&f, t->name) != NULL, "tensor '%s' not found by name", t->name);
        int64_t n = st_numel(t);
        FUZZ_CHECK(n >= 0 && (uint64_t)n * st_dtype_size(t->dtype) == t->end - t->begin,
                   "tensor '%s': numel %lld does not match its byte range", t->name, (long long)n);
        if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64) {
            float *out = malloc((size_t)(n ? n : 1) * sizeof *out);
            FUZZ_CHECK(out != NULL, "malloc");
            FUZZ_CHECK(st_read_f32(&f, t, out) == 0, "st_read_f32: %s", err_msg());
            free(out);
        } else {
            const unsigned char *p = st_tensor_data(&f, t);
            unsigned sum = 0;
            for (uint64_t b = 0; b < t->end - t->begin; b++)
                sum += p[b];
            (void)sum;
            float dummy;
            FUZZ_CHECK(st_read_f32(&f, t, &dummy) == -1, "integer tensor read as float");
        }
    }
    for (int i = 0; i < f.n_meta; i++)
        FUZZ_CHECK(st_meta(&f, f.meta_keys[i]) != NULL, "metadata key lost");
    st_close(&f);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_safetensors(data, size);
    return 0;
}
#endif
