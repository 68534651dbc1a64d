/* geometry.c: nearest-neighbour cosine similarities within and across
 * dictionaries, by tiles of sgemm reduced on the fly (see geometry.h).
 *
 * Per tile (R rows of A, C rows of B), `tile` is (R, C) = A_blk B_blkᵀ. Each
 * tile row is scaled by 1/|B_j| and reduced to its maximum in one vectorisable
 * pass (eight independent running maxima); only when that beats the row's best
 * so far is the row scanned again for the index. Scaling by 1/|A_i| is left to
 * the end (it is positive, so it does not change which j wins).
 */
#include "stats/geometry.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <gsl/gsl_sort_float.h>
#include <gsl/gsl_statistics_float.h>

#include "util/error.h"

/* inv[i] = 1 / |M_i| for rows [begin, end) of M (n, d), written from inv[0]. */
static int inv_norms(const char *name, const float *M, size_t d, size_t begin, size_t end,
                     float *inv) {
    for (size_t i = begin; i < end; i++) {
        const float *row = M + i * d;
        double ss = 0.0;
        for (size_t k = 0; k < d; k++) ss += (double)row[k] * row[k];
        if (!isfinite(ss)) return err_set("%s row %zu: expected finite values", name, i);
        if (ss == 0.0) return err_set("%s row %zu: zero vector has no direction", name, i);
        inv[i - begin] = (float)(1.0 / sqrt(ss));
    }
    return 0;
}

/* Scale row[0..C) by inv[0..C) in place and return the maximum. */
static float scale_and_max(float *row, const float *inv, size_t C) {
    float m[8];
    for (int l = 0; l < 8; l++) m[l] = -INFINITY;
    size_t c = 0;
    for (; c + 8 <= C; c += 8)
        for (int l = 0; l < 8; l++) {
            float v = row[c + l] * inv[c + l];
            row[c + l] = v;
            m[l] = v > m[l] ? v : m[l];
        }
    float best = -INFINITY;
    for (; c < C; c++) {
        float v = row[c] * inv[c];
        row[c] = v;
        best = v > best ? v : best;
    }
    for (int l = 0; l < 8; l++) best = m[l] > best ? m[l] : best;
    return best;
}

/* The work shared by the self and cross entry points. */
struct nn_job {
    const float *A, *B;
    size_t nb, d;
    size_t row_begin, row_end;
    int self; /* A == B: exclude j == i */
    size_t block_rows, block_cols;
};

static void reduce_tile(const struct nn_job *job, float *tile, size_t i0, size_t R, size_t j0,
                        size_t C, const float *inv_b, float *best, size_t *arg) {
    for (size_t r = 0; r < R; r++) {
        float *row = tile + r * C;
        size_t i = i0 + r;
        if (job->self && i >= j0 && i < j0 + C) row[i - j0] = -INFINITY;
        float m = scale_and_max(row, inv_b + j0, C);
        size_t o = i - job->row_begin;
        if (m > best[o]) {
            size_t c = 0;
            while (row[c] != m) c++;
            best[o] = m;
            arg[o] = j0 + c;
        }
    }
}

static int nearest(const struct nn_job *job, float *cos_out, size_t *nn_out) {
    size_t n_rows = job->row_end - job->row_begin, R0 = job->block_rows, C0 = job->block_cols;
    if (R0 > n_rows) R0 = n_rows;
    if (C0 > job->nb) C0 = job->nb;
    float *inv_a = xmalloc(n_rows * sizeof *inv_a);
    float *inv_b = xmalloc(job->nb * sizeof *inv_b);
    float *tile = xmalloc(R0 * C0 * sizeof *tile);
    size_t *arg = xmalloc(n_rows * sizeof *arg);
    int rc = -1;
    if (!inv_a || !inv_b || !tile || !arg) goto done;
    if (inv_norms(job->self ? "D" : "A", job->A, job->d, job->row_begin, job->row_end, inv_a) ||
        inv_norms(job->self ? "D" : "B", job->B, job->d, 0, job->nb, inv_b))
        goto done;
    for (size_t o = 0; o < n_rows; o++) {
        cos_out[o] = -INFINITY;
        arg[o] = SIZE_MAX;
    }
    for (size_t i0 = job->row_begin; i0 < job->row_end; i0 += R0) {
        size_t R = job->row_end - i0 < R0 ? job->row_end - i0 : R0;
        for (size_t j0 = 0; j0 < job->nb; j0 += C0) {
            size_t C = job->nb - j0 < C0 ? job->nb - j0 : C0;
            // tile is (R, C) = A[i0:i0+R] (R, d) · B[j0:j0+C]ᵀ (d, C)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)C, (int)job->d, 1.0f,
                        job->A + i0 * job->d, (int)job->d, job->B + j0 * job->d, (int)job->d, 0.0f,
                        tile, (int)C);
            reduce_tile(job, tile, i0, R, j0, C, inv_b, cos_out, arg);
        }
    }
    for (size_t o = 0; o < n_rows; o++) {
        if (arg[o] == SIZE_MAX) {
            err_set("geometry: row %zu: no finite similarity (dot products overflow float?)",
                    job->row_begin + o);
            goto done;
        }
        float c = cos_out[o] * inv_a[o];
        cos_out[o] = c > 1.0f ? 1.0f : c < -1.0f ? -1.0f : c;
        if (nn_out) nn_out[o] = arg[o];
    }
    rc = 0;
done:
    free(arg);
    free(tile);
    free(inv_b);
    free(inv_a);
    return rc;
}

static int fill_job(struct nn_job *job, const struct geom_opts *opts) {
    job->block_rows = opts && opts->block_rows ? opts->block_rows : GEOM_DEFAULT_BLOCK_ROWS;
    job->block_cols = opts && opts->block_cols ? opts->block_cols : GEOM_DEFAULT_BLOCK_COLS;
    if (job->d == 0) return err_set("geometry: d_model must be positive");
    if (job->d > INT32_MAX || job->block_rows > INT32_MAX || job->block_cols > INT32_MAX)
        return err_set("geometry: d_model and block sizes must fit in an int (BLAS)");
    if (job->row_begin > job->row_end)
        return err_set("geometry: row range [%zu, %zu) is empty or reversed", job->row_begin, job->row_end);
    return 0;
}

int geom_nearest_self_rows(const float *D, size_t n, size_t d, size_t row_begin, size_t row_end,
                           const struct geom_opts *opts, float *cos_out, size_t *nn_out) {
    if (!D || !cos_out) return err_set("geometry: D and cos_out must not be NULL");
    if (n < 2) return err_set("geometry: a dictionary needs at least 2 directions for a nearest other one, got %zu", n);
    if (row_end > n) return err_set("geometry: row range end %zu exceeds d_sae %zu", row_end, n);
    struct nn_job job = {.A = D, .B = D, .nb = n, .d = d, .row_begin = row_begin, .row_end = row_end, .self = 1};
    if (fill_job(&job, opts)) return -1;
    return nearest(&job, cos_out, nn_out);
}

int geom_nearest_self(const float *D, size_t n, size_t d, const struct geom_opts *opts,
                      float *cos_out, size_t *nn_out) {
    return geom_nearest_self_rows(D, n, d, 0, n, opts, cos_out, nn_out);
}

int geom_nearest_cross_rows(const float *A, size_t na, const float *B, size_t nb, size_t d,
                            size_t row_begin, size_t row_end, const struct geom_opts *opts,
                            float *cos_out, size_t *nn_out) {
    if (!A || !B || !cos_out) return err_set("geometry: A, B and cos_out must not be NULL");
    if (na == 0 || nb == 0) return err_set("geometry: both dictionaries need directions (got %zu and %zu)", na, nb);
    if (row_end > na) return err_set("geometry: row range end %zu exceeds A's d_sae %zu", row_end, na);
    struct nn_job job = {.A = A, .B = B, .nb = nb, .d = d, .row_begin = row_begin, .row_end = row_end, .self = 0};
    if (fill_job(&job, opts)) return -1;
    return nearest(&job, cos_out, nn_out);
}

int geom_nearest_cross(const float *A, size_t na, const float *B, size_t nb, size_t d,
                       const struct geom_opts *opts, float *cos_out, size_t *nn_out) {
    return geom_nearest_cross_rows(A, na, B, nb, d, 0, na, opts, cos_out, nn_out);
}

int geom_summarize(const float *v, size_t n, struct geom_summary *out) {
    if (!v || n == 0) return err_set("geometry: summary of an empty set of values");
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return err_set("geometry: value %zu is not finite (%g)", i, (double)v[i]);
    float *s = xmalloc(n * sizeof *s);
    if (!s) return -1;
    memcpy(s, v, n * sizeof *s);
    gsl_sort_float(s, 1, n);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += s[i];
    out->n = n;
    out->mean = sum / (double)n;
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += ((double)s[i] - out->mean) * ((double)s[i] - out->mean);
    out->sd = n > 1 ? sqrt(ss / (double)(n - 1)) : 0.0;
    out->min = s[0];
    out->max = s[n - 1];
    out->q05 = gsl_stats_float_quantile_from_sorted_data(s, 1, n, 0.05);
    out->q25 = gsl_stats_float_quantile_from_sorted_data(s, 1, n, 0.25);
    out->median = gsl_stats_float_quantile_from_sorted_data(s, 1, n, 0.5);
    out->q75 = gsl_stats_float_quantile_from_sorted_data(s, 1, n, 0.75);
    out->q95 = gsl_stats_float_quantile_from_sorted_data(s, 1, n, 0.95);
    free(s);
    return 0;
}

int geom_histogram(const float *v, size_t n, double lo, double hi, size_t n_bins, size_t *counts,
                   size_t *n_below, size_t *n_above) {
    if (!(lo < hi) || !isfinite(lo) || !isfinite(hi))
        return err_set("histogram: need finite lo < hi, got [%g, %g]", lo, hi);
    if (n_bins == 0 || !counts) return err_set("histogram: need at least one bin");
    memset(counts, 0, n_bins * sizeof *counts);
    size_t below = 0, above = 0;
    double w = (hi - lo) / (double)n_bins;
    for (size_t i = 0; i < n; i++) {
        double x = v[i];
        if (isnan(x)) return err_set("histogram: value %zu is NaN", i);
        if (x < lo) {
            below++;
        } else if (x > hi) {
            above++;
        } else {
            size_t k = (size_t)((x - lo) / w);
            counts[k < n_bins ? k : n_bins - 1]++;
        }
    }
    if ((below && !n_below) || (above && !n_above))
        return err_set("histogram: %zu values below %g and %zu above %g fall outside the bins", below, lo,
                       above, hi);
    if (n_below) *n_below = below;
    if (n_above) *n_above = above;
    return 0;
}
