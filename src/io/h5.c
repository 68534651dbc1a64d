/* h5.c: thin HDF5 helpers with our error style (see h5.h).
 *
 * HDF5 prints its own error stack by default; h5_init turns that off so that the
 * only message a user sees is ours, naming the file (when the caller prefixes it)
 * and the dataset or attribute.
 */
#include "io/h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

void h5_init(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

hid_t h5_create(const char *path) {
    h5_init();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) err_set("%s: cannot create HDF5 file", path);
    return f;
}

hid_t h5_open_ro(const char *path) {
    h5_init();
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        err_errno("%s: cannot open", path);
        return -1;
    }
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0) {
        err_set("%s: not an HDF5 file (or truncated/corrupt)", path);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) err_set("%s: cannot open HDF5 file (truncated or corrupt?)", path);
    return f;
}

int h5_close(hid_t file) {
    if (file < 0) return 0;
    if (H5Fclose(file) < 0) return err_set("cannot close HDF5 file (write error?)");
    return 0;
}

int h5_exists(hid_t loc, const char *name) {
    /* H5Lexists needs every intermediate link to exist: walk the path. */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf; (p = strchr(p, '/')); p++) {
        *p = 0;
        if (buf[0] && H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return 0;
        *p = '/';
    }
    return H5Lexists(loc, buf, H5P_DEFAULT) > 0;
}

hid_t h5_group(hid_t loc, const char *name) {
    if (h5_exists(loc, name)) {
        hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
        if (g < 0) err_set("cannot open group '%s'", name);
        return g;
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2(loc, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    if (g < 0) err_set("cannot create group '%s'", name);
    return g;
}

int h5_write(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *dims,
             const void *data) {
    /* The readers (h5_shape, h5_read) handle at most 8 dimensions, and so does
     * the chunk shape below. */
    if (ndim < 0 || ndim > 8)
        return err_set("dataset '%s': rank %d is not supported (at most 8)", name, ndim);
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    if (space < 0) return err_set("dataset '%s': cannot create dataspace", name);
    hsize_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= dims[i];
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    /* Large datasets are chunked along the first dimension so row reads are cheap.
     * A chunk holds whole rows and at most 512 KiB whatever the element size, so
     * it stays inside HDF5's default 1 MiB chunk cache: a chunk bigger than the
     * cache would be re-read from disk on every small row read. */
    size_t esize = H5Tget_size(type);
    if (ndim >= 1 && numel * esize > (1u << 20) && dims[0] > 1) {
        hsize_t chunk[8];
        hsize_t row_bytes = numel / dims[0] * esize;
        hsize_t rows = (1u << 19) / (row_bytes ? row_bytes : 1);
        if (rows < 1) rows = 1;
        if (rows > dims[0]) rows = dims[0];
        chunk[0] = rows;
        for (int i = 1; i < ndim; i++) chunk[i] = dims[i];
        H5Pset_chunk(dcpl, ndim, chunk);
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(loc, name, type, space, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    if (ds < 0) {
        H5Sclose(space);
        return err_set("dataset '%s': cannot create (exists already?)", name);
    }
    int rc = 0;
    if (numel > 0 && H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = err_set("dataset '%s': write failed", name);
    H5Dclose(ds);
    H5Sclose(space);
    return rc;
}

int h5_write_f32(hid_t loc, const char *name, int ndim, const hsize_t *dims, const float *data) {
    return h5_write(loc, name, H5T_NATIVE_FLOAT, ndim, dims, data);
}

int h5_shape(hid_t loc, const char *name, int max_dims, int *ndim, hsize_t *dims) {
    if (!h5_exists(loc, name)) return err_set("dataset '%s' is missing", name);
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return err_set("'%s' is not a readable dataset", name);
    hid_t space = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(space);
    int rc = 0;
    if (nd < 0 || nd > max_dims)
        rc = err_set("dataset '%s': rank %d is not supported (at most %d)", name, nd, max_dims);
    else {
        H5Sget_simple_extent_dims(space, dims, NULL);
        *ndim = nd;
    }
    H5Sclose(space);
    H5Dclose(ds);
    return rc;
}

/* HDF5 converts a number with the bit layout its file declares, unchecked: a
 * precision of 0 or bits placed past the type's size crash its converter. So
 * a file's integer or float type must describe bits inside its bytes. */
static int numeric_layout_ok(hid_t ft) {
    size_t size = H5Tget_size(ft), prec = H5Tget_precision(ft), bits = 8 * size;
    int off = H5Tget_offset(ft);
    if (size < 1 || size > 16 || prec < 1 || off < 0 || (size_t)off + prec > bits) return 0;
    if (H5Tget_class(ft) != H5T_FLOAT) return 1;
    size_t spos, epos, esize, mpos, msize;
    if (H5Tget_fields(ft, &spos, &epos, &esize, &mpos, &msize) < 0) return 0;
    return spos < bits && esize >= 1 && epos + esize <= bits && msize >= 1 && mpos + msize <= bits;
}

/* A shape is only a claim: a few kilobytes of file can declare a chunked dataset
 * of 2^34 elements whose chunks were never written (HDF5 then reads fill
 * values), and reading it whole would allocate and touch all of that. Every
 * writer here writes each element and none compresses, so a numeric dataset
 * must store at least the bytes its shape implies; a compressed one (another
 * tool's) may store less, but not beyond deflate's ratio of about 1000:1. */
static int check_stored(hid_t ds, const char *name, hsize_t numel) {
    hid_t ft = H5Dget_type(ds);
    if (ft < 0) return err_set("dataset '%s': cannot read its type", name);
    H5T_class_t cls = H5Tget_class(ft);
    size_t fsize = H5Tget_size(ft);
    int layout_ok = cls != H5T_INTEGER && cls != H5T_FLOAT ? 1 : numeric_layout_ok(ft);
    H5Tclose(ft);
    if (!layout_ok) return err_set("dataset '%s': its number type is malformed", name);
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) return 0;
    hid_t dcpl = H5Dget_create_plist(ds);
    int n_filters = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
    if (dcpl >= 0) H5Pclose(dcpl);
    double need = (double)numel * (double)fsize / (n_filters > 0 ? 1100.0 : 1.0);
    hsize_t stored = H5Dget_storage_size(ds);
    if ((double)stored < need)
        return err_set("dataset '%s': its shape holds %llu elements but the file stores only %llu "
                       "bytes of them (truncated or corrupt file?)",
                       name, (unsigned long long)numel, (unsigned long long)stored);
    return 0;
}

int h5_read(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *expect,
            hsize_t *dims_out, void **out) {
    *out = NULL;
    int nd;
    hsize_t dims[8];
    if (h5_shape(loc, name, 8, &nd, dims) != 0) return -1;
    if (nd != ndim) return err_set("dataset '%s': expected rank %d, got %d", name, ndim, nd);
    hsize_t numel = 1;
    for (int i = 0; i < nd; i++) {
        if (expect && expect[i] && expect[i] != dims[i])
            return err_set("dataset '%s': dimension %d is %llu, expected %llu", name, i,
                           (unsigned long long)dims[i], (unsigned long long)expect[i]);
        if (__builtin_mul_overflow(numel, dims[i], &numel))
            return err_set("dataset '%s': its shape's element count overflows 64 bits", name);
        if (dims_out) dims_out[i] = dims[i];
    }
    size_t esize = H5Tget_size(type), bytes;
    if (__builtin_mul_overflow(numel, esize, &bytes))
        return err_set("dataset '%s': %llu elements of %zu bytes overflow the address space", name,
                       (unsigned long long)numel, esize);
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return err_set("'%s' is not a readable dataset", name);
    if (check_stored(ds, name, numel) != 0) {
        H5Dclose(ds);
        return -1;
    }
    void *buf = xmalloc(bytes);
    if (!buf) {
        H5Dclose(ds);
        return err_prefix("dataset '%s'", name);
    }
    if (numel > 0 && H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        H5Dclose(ds);
        free(buf);
        return err_set("dataset '%s': read failed (truncated or corrupt file?)", name);
    }
    H5Dclose(ds);
    *out = buf;
    return 0;
}

int h5_read_rows(hid_t loc, const char *name, hid_t type, hsize_t row0, hsize_t n_rows,
                 void *out) {
    int nd;
    hsize_t dims[8];
    if (h5_shape(loc, name, 8, &nd, dims) != 0) return -1;
    if (nd < 1) return err_set("dataset '%s' is a scalar, expected rows", name);
    if (row0 > dims[0] || n_rows > dims[0] - row0)
        return err_set("dataset '%s': rows %llu..%llu out of range (it has %llu)", name,
                       (unsigned long long)row0, (unsigned long long)(row0 + n_rows),
                       (unsigned long long)dims[0]);
    if (n_rows == 0) return 0;
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return err_set("'%s' is not a readable dataset", name);
    hid_t ft = H5Dget_type(ds);
    H5T_class_t cls = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    int layout_ok = ft >= 0 && (cls != H5T_INTEGER && cls != H5T_FLOAT ? 1 : numeric_layout_ok(ft));
    if (ft >= 0) H5Tclose(ft);
    if (!layout_ok) {
        H5Dclose(ds);
        return err_set("dataset '%s': its number type is malformed", name);
    }
    hid_t fspace = H5Dget_space(ds);
    hsize_t start[8] = {0}, count[8];
    start[0] = row0;
    count[0] = n_rows;
    for (int i = 1; i < nd; i++) count[i] = dims[i];
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t mspace = H5Screate_simple(nd, count, NULL);
    herr_t st = H5Dread(ds, type, mspace, fspace, H5P_DEFAULT, out);
    H5Sclose(mspace);
    H5Sclose(fspace);
    H5Dclose(ds);
    if (st < 0) return err_set("dataset '%s': read failed (truncated or corrupt file?)", name);
    return 0;
}

static int attr_write(hid_t loc, const char *name, hid_t type, const void *value) {
    if (H5Aexists(loc, name) > 0) H5Adelete(loc, name);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0 || H5Awrite(a, type, value) < 0) rc = err_set("attribute '%s': write failed", name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return rc;
}

/* Fixed-length, NUL-terminated: the bytes live in the attribute message itself.
 * A variable-length string would go to the file's global heap, whose reader
 * (H5HG_read) trusts lengths from the file and is where corrupt files made
 * libhdf5 1.10 hang or crash (the fuzzer's libhdf5_* inputs). */
int h5_attr_str(hid_t loc, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = attr_write(loc, name, t, value);
    H5Tclose(t);
    return rc;
}

int h5_attr_i64(hid_t loc, const char *name, int64_t value) {
    return attr_write(loc, name, H5T_NATIVE_INT64, &value);
}

int h5_attr_f64(hid_t loc, const char *name, double value) {
    return attr_write(loc, name, H5T_NATIVE_DOUBLE, &value);
}

int h5_has_attr(hid_t loc, const char *name) { return H5Aexists(loc, name) > 0; }

static hid_t attr_open(hid_t loc, const char *name) {
    if (H5Aexists(loc, name) <= 0) {
        err_set("attribute '%s' is missing", name);
        return -1;
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) {
        err_set("attribute '%s': cannot open", name);
        return -1;
    }
    /* Our attributes are single values: reading an array into one would make
     * H5Aread write past it (a corrupt or foreign file). */
    hid_t space = H5Aget_space(a);
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (space >= 0) H5Sclose(space);
    if (n != 1) {
        H5Aclose(a);
        err_set("attribute '%s': expected a single value, got %lld", name, (long long)n);
        return -1;
    }
    return a;
}

int h5_get_attr_str(hid_t loc, const char *name, char **out) {
    *out = NULL;
    hid_t a = attr_open(loc, name);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    int rc = 0;
    if (H5Tget_class(ft) != H5T_STRING) {
        rc = err_set("attribute '%s': expected a string", name);
    } else if (H5Tis_variable_str(ft) > 0) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5Tget_cset(ft)); /* HDF5 will not convert between ASCII and UTF-8 */
        char *s = NULL;
        if (H5Aread(a, t, &s) < 0 || !s)
            rc = err_set("attribute '%s': read failed", name);
        else {
            *out = xstrdup(s);
            H5free_memory(s);
            if (!*out) rc = -1;
        }
        H5Tclose(t);
    } else {
        size_t n = H5Tget_size(ft);
        char *s = xcalloc(n + 1, 1);
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, n + 1);
        H5Tset_cset(t, H5Tget_cset(ft));
        if (!s || H5Aread(a, t, s) < 0) {
            free(s);
            rc = err_set("attribute '%s': read failed", name);
        } else
            *out = s;
        H5Tclose(t);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

static int attr_read_num(hid_t loc, const char *name, hid_t type, void *out) {
    hid_t a = attr_open(loc, name);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(ft);
    int layout_ok = numeric_layout_ok(ft);
    H5Tclose(ft);
    int rc = 0;
    if (cls != H5T_INTEGER && cls != H5T_FLOAT)
        rc = err_set("attribute '%s': expected a number", name);
    else if (!layout_ok)
        rc = err_set("attribute '%s': its number type is malformed", name);
    else if (H5Aread(a, type, out) < 0)
        rc = err_set("attribute '%s': read failed", name);
    H5Aclose(a);
    return rc;
}

int h5_get_attr_i64(hid_t loc, const char *name, int64_t *out) {
    return attr_read_num(loc, name, H5T_NATIVE_INT64, out);
}

int h5_get_attr_f64(hid_t loc, const char *name, double *out) {
    return attr_read_num(loc, name, H5T_NATIVE_DOUBLE, out);
}
