/* geometry.h: how the directions of a dictionary sit relative to each other
 * and to another dictionary (the paper's third result: e2e dictionaries have
 * fewer near-duplicate directions and differ from local ones).
 *
 * A dictionary is a decoder matrix D, float32, row-major (n, d): n = d_sae
 * directions of dimension d = d_model. Rows need not be unit norm; every
 * cosine is dot(a_i, b_j) / (|a_i| |b_j|), computed in float32 by cblas_sgemm
 * and scaled afterwards, so D is never copied. A zero row is an error.
 *
 * Memory: the n x n (or na x nb) similarity matrix is never materialised. The
 * rows of A are taken block_rows at a time, the rows of B block_cols at a time,
 * and each (block_rows, block_cols) tile of A Bᵀ is reduced to a running
 * maximum per row of A before the next tile overwrites it. Defaults: 1024 x
 * 8192 floats = 32 MiB of scratch, whatever n is (a 46,080 x 768 dictionary
 * needs its own 135 MiB plus that). Each row block is independent of the
 * others: a caller who wants to split the work across processes can call the
 * *_rows variants on disjoint row ranges. Parallelism inside one call comes
 * from OpenBLAS's threads in sgemm, which is where ~all the time goes
 * (2 n² d flops).
 *
 * Results are clamped to [-1, 1] (float rounding can give 1.0000001 for
 * duplicate directions). Ties in the maximum keep the lowest index.
 */
#ifndef AUTOINTERP_STATS_GEOMETRY_H
#define AUTOINTERP_STATS_GEOMETRY_H

#include <stddef.h>

#define GEOM_DEFAULT_BLOCK_ROWS 1024
#define GEOM_DEFAULT_BLOCK_COLS 8192

struct geom_opts {
    size_t block_rows; /* 0: GEOM_DEFAULT_BLOCK_ROWS */
    size_t block_cols; /* 0: GEOM_DEFAULT_BLOCK_COLS */
};

/* (a) For every direction i of D (n, d): cos_out[i] = max over j != i of
 * cos(D_i, D_j); nn_out[i] (may be NULL) = that j. n >= 2. opts may be NULL. */
int geom_nearest_self(const float *D, size_t n, size_t d, const struct geom_opts *opts,
                      float *cos_out, size_t *nn_out);

/* (b) For every direction i of A (na, d): cos_out[i] = max over j of
 * cos(A_i, B_j) with B (nb, d); nn_out[i] (may be NULL) = that j. */
int geom_nearest_cross(const float *A, size_t na, const float *B, size_t nb, size_t d,
                       const struct geom_opts *opts, float *cos_out, size_t *nn_out);

/* The same for rows [row_begin, row_end) of D or A only; cos_out and nn_out are
 * indexed from row_begin (they have row_end - row_begin entries). */
int geom_nearest_self_rows(const float *D, size_t n, size_t d, size_t row_begin, size_t row_end,
                           const struct geom_opts *opts, float *cos_out, size_t *nn_out);
int geom_nearest_cross_rows(const float *A, size_t na, const float *B, size_t nb, size_t d,
                            size_t row_begin, size_t row_end, const struct geom_opts *opts,
                            float *cos_out, size_t *nn_out);

/* Summary of n values (e.g. the cos_out of the calls above): quantiles by
 * linear interpolation between order statistics (numpy's default), sd with
 * n - 1 (0 when n == 1). Non-finite values are an error. */
struct geom_summary {
    size_t n;
    double mean, sd, min, q05, q25, median, q75, q95, max;
};
int geom_summarize(const float *v, size_t n, struct geom_summary *out);

/* Histogram of v over [lo, hi] in n_bins equal bins: bin k holds
 * lo + k w <= v < lo + (k+1) w with w = (hi - lo) / n_bins, and the last bin
 * also holds v == hi. Values below lo or above hi are not binned but counted in
 * *n_below / *n_above (either may be NULL only if no value falls there;
 * otherwise it is an error, so nothing is dropped silently). Typical ranges:
 * [-1, 1] for cosines, [0, 1] for nearest-neighbour maxima. */
int geom_histogram(const float *v, size_t n, double lo, double hi, size_t n_bins, size_t *counts,
                   size_t *n_below, size_t *n_above);

#endif
