/* h5.h: the few HDF5 operations the project needs, with errors in our style.
 *
 * HDF5's own error printing is switched off (h5_init); every failure becomes an
 * err_set message naming the file and dataset. Files are created at a temporary
 * path and committed with atomic_rename by the caller, so a half-written file is
 * never taken as complete. Datasets are written whole (optionally chunked and
 * compressed when large); attributes are scalar strings (fixed-length UTF-8,
 * so our files never use the global heap), int64s or doubles. Readers accept
 * variable-length strings too (h5py writes those, and so did we before).
 *
 * Every file opened for reading is untrusted: libhdf5 1.10 can crash, hang or
 * allocate gigabytes on a corrupt one. h5_open_ro therefore first reads all of
 * the file's metadata in a fork()ed child (under an address-space limit and a
 * timeout) and opens the file itself only when that child succeeded; see h5.c.
 *
 *   AUTOINTERP_H5_CHECK_SECONDS   the child's time limit, default 30; 0 turns
 *                                 the check off (only for trusted files).
 */
#ifndef AUTOINTERP_IO_H5_H
#define AUTOINTERP_IO_H5_H

#include <hdf5.h>
#include <stdint.h>

void h5_init(void);

hid_t h5_create(const char *path); /* truncates; returns <0 on error */
/* Checks the signature, then h5_check_file, then opens read-only. */
hid_t h5_open_ro(const char *path);
int h5_close(hid_t file);

/* The untrusted-file check alone: 0 when a child process read every object,
 * attribute and dataset layout of path without an HDF5 error, a crash or
 * running out of time; else -1 with "<path>: corrupt HDF5 file: <what>".
 * Files that passed are remembered (device, inode, size, times) and not
 * checked again while unchanged. No other thread may be inside libhdf5 during
 * the call, and the file must not be open for writing in this process. */
int h5_check_file(const char *path);
/* For tests: how many check children this process started, and forgetting
 * which files passed. */
long h5_check_forks(void);
void h5_check_forget(void);

/* Groups: create (or open if present) "a/b" style paths. */
hid_t h5_group(hid_t loc, const char *name);
int h5_exists(hid_t loc, const char *name);

/* Write a dataset of ndim dims. type is one of the H5T_NATIVE_* ids. */
int h5_write(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *dims,
             const void *data);
int h5_write_f32(hid_t loc, const char *name, int ndim, const hsize_t *dims, const float *data);

/* Read a whole dataset converted to `type` into a malloc'd buffer. Checks that its
 * rank is ndim (and dims[i] equals expect[i] where expect[i] != 0); dims_out gets
 * the shape. */
int h5_read(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *expect,
            hsize_t *dims_out, void **out);
/* Read rows [row0, row0+n_rows) of a dataset (first dimension) into out, which
 * holds n_rows × (product of the other dims) elements of `type`. */
int h5_read_rows(hid_t loc, const char *name, hid_t type, hsize_t row0, hsize_t n_rows, void *out);
/* Shape of a dataset without reading it. */
int h5_shape(hid_t loc, const char *name, int max_dims, int *ndim, hsize_t *dims);

int h5_attr_str(hid_t loc, const char *name, const char *value);
int h5_attr_i64(hid_t loc, const char *name, int64_t value);
int h5_attr_f64(hid_t loc, const char *name, double value);
/* Getters; *out of the string getter is malloc'd. Missing attribute → error. */
int h5_get_attr_str(hid_t loc, const char *name, char **out);
int h5_get_attr_i64(hid_t loc, const char *name, int64_t *out);
int h5_get_attr_f64(hid_t loc, const char *name, double *out);
int h5_has_attr(hid_t loc, const char *name);

#endif
