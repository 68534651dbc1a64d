/* bootstrap.h: descriptive statistics and bootstrap confidence intervals for
 * the report stage (per-dictionary mean interpretability score, and the
 * difference of means between two dictionaries with a p-value).
 *
 * What it owns. The statistic is always a mean (or a difference of two means),
 * so a bootstrap resample costs n index draws and a sum: no per-resample sort,
 * no per-resample allocation. Every interval endpoint is the quantile of the
 * B resampled statistics with linear interpolation between order statistics
 * at (B - 1) q (numpy's default `percentile` rule, also GSL's
 * gsl_stats_quantile_from_sorted_data), found by selection rather than a sort.
 *
 * Intervals, following scipy.stats.bootstrap (1.10) so results can be checked
 * against it:
 *   alpha = (1 - level) / 2
 *   percentile: [q(alpha), q(1 - alpha)] of the bootstrap distribution.
 *   BCa (Efron & Tibshirani 14.3, 15.4):
 *     z0 = Phi^-1( (#{t* < t} + #{t* <= t}) / (2B) )   (ties count half)
 *     a  = (1/6) sum_j sum_i U_ji^3 / n_j^3 / (sum_j sum_i U_ji^2 / n_j^2)^(3/2)
 *          with U_ji = (n_j - 1)(mean_i theta_(j,-i) - theta_(j,-i)), the jackknife
 *          over sample j with the other samples left whole (one sample: j = 1).
 *     alpha_k = Phi(z0 + (z0 + z_k) / (1 - a (z0 + z_k))), z_k = Phi^-1(alpha), Phi^-1(1-alpha)
 *     interval = [q(alpha_1), q(alpha_2)].
 *   For a mean the jackknife has a closed form, U_i = x_i - mean (and for the
 *   subtracted sample of a difference, U_i = mean - x_i); bootstrap.c uses it.
 *
 * Two-sample p-value (pooled-null bootstrap): pool a and b, draw na and nb
 * values with replacement from the pool, d* = mean(a*) - mean(b*);
 *   p = (#{|d*| >= |d|} + 1) / (B + 1)
 * two-sided, with the +1 correction so p is never 0 (its floor is 1/(B+1)).
 * "|d*| >= |d|" allows a relative slack of 1e-12 so that resamples equal to the
 * observed difference up to summation rounding count as extreme.
 *
 * Randomness: gsl_rng_mt19937 throughout. The B resamples are cut into chunks
 * of BOOT_CHUNK; chunk c is drawn from a generator seeded with
 * boot_chunk_seed(opts->seed, c) (a hash of the low 32 bits of the seed, which
 * is all GSL uses, and c). Chunks are shared among n_threads threads, and as each
 * chunk has its own generator and its own slice of the output, the result
 * depends only on (data, seed, B, level), not on the thread count or machine.
 * The result records the seed, B and level it used. Pairs of generator outputs
 * are turned into several indices (the base-n digits of an exactly uniform
 * integer, see struct sampler in bootstrap.c), so a resample of n = 200 values
 * costs about 52 generator calls, not 200.
 *
 * Degenerate input: n < 2, a non-finite value, B == 1 or a level outside (0,1)
 * is an error (err_set, return -1) naming the index or field. Constant data
 * (every bootstrap statistic equals the estimate) is not an error: the result
 * has degenerate = 1 and every endpoint equal to the estimate, se = z0 = a = 0
 * (scipy returns NaN for BCa there). BCa is undefined when the observed
 * statistic lies outside the whole bootstrap distribution (z0 infinite; not
 * seen with non-constant data and B in the thousands): that is an error too.
 * No field of a successful result is NaN.
 *
 * Threads: every function is reentrant (no global state; err_* is
 * thread-local). gsl_rng_alloc reports out-of-memory through GSL's error
 * handler, which aborts unless the program called gsl_set_error_handler_off().
 */
#ifndef AUTOINTERP_STATS_BOOTSTRAP_H
#define AUTOINTERP_STATS_BOOTSTRAP_H

#include <stddef.h>
#include <stdint.h>

#define BOOT_DEFAULT_RESAMPLES 100000
#define BOOT_DEFAULT_LEVEL 0.95
#define BOOT_CHUNK 8192      /* resamples per generator stream */
#define BOOT_MAX_THREADS 64

struct boot_opts {
    size_t n_resamples; /* B; 0 means BOOT_DEFAULT_RESAMPLES */
    double level;       /* confidence level in (0,1); 0 means BOOT_DEFAULT_LEVEL */
    unsigned long seed; /* gsl_rng_mt19937 seed, recorded by the caller */
    int n_threads;      /* 0: one per online CPU; the result does not depend on it */
};

/* mean, median (midpoint of the two middle values for even n) and standard
 * deviation with n - 1 in the denominator; n >= 2, finite values. */
struct stats_desc {
    size_t n;
    double mean, median, sd, min, max;
};
int stats_describe(const double *x, size_t n, struct stats_desc *out);

struct boot_ci {
    double estimate;       /* observed statistic: mean(x) or mean(a) - mean(b) */
    double se;             /* bootstrap standard error: sd (B - 1) of the B statistics */
    double pct_lo, pct_hi; /* percentile interval */
    double bca_lo, bca_hi; /* BCa interval */
    double z0, accel;      /* BCa bias correction and acceleration */
    int degenerate;        /* 1: constant data, every endpoint == estimate */
    size_t n_resamples;    /* what was used (defaults applied) */
    double level;
    unsigned long seed;
    int n_threads; /* as requested (0: automatic) */
};

/* 95% (opts->level) CI of the mean of x (n values). opts may be NULL (defaults,
 * seed 0). */
int boot_mean_ci(const double *x, size_t n, const struct boot_opts *opts, struct boot_ci *out);

/* CI of mean(a) - mean(b), a and b independent and resampled separately. */
int boot_diff_ci(const double *a, size_t na, const double *b, size_t nb,
                 const struct boot_opts *opts, struct boot_ci *out);

/* Pooled-null two-sided p-value for mean(a) - mean(b) (formula above), with a
 * generator seeded from opts->seed. n_extreme (may be NULL) gets the count. */
int boot_pvalue_pooled(const double *a, size_t na, const double *b, size_t nb,
                       const struct boot_opts *opts, double *p_out, size_t *n_extreme);

/* The whole matched-pair comparison: CI of the difference with opts->seed and
 * the p-value with p_seed = opts->seed ^ BOOT_PVALUE_SEED_XOR (a separate
 * stream, so the CI and the p-value are not built from the same draws). */
#define BOOT_PVALUE_SEED_XOR 0x9E3779B9UL
struct boot_compare {
    struct boot_ci diff;
    double p_value;
    size_t n_extreme;
    unsigned long p_seed;
};
int boot_compare_means(const double *a, size_t na, const double *b, size_t nb,
                       const struct boot_opts *opts, struct boot_compare *out);

/* Lower-level pieces, exposed for tests and for callers with their own
 * bootstrap distribution. */

/* Jackknife acceleration of the mean of x, and of mean(a) - mean(b) (scipy's
 * multi-sample rule). Returns 0 when the jackknife has no spread (constant
 * data, or fewer than 2 values). */
double boot_accel_mean(const double *x, size_t n);
double boot_accel_diff(const double *a, size_t na, const double *b, size_t nb);

/* The 32-bit seed of the generator of chunk `chunk` (see Randomness above). */
uint32_t boot_chunk_seed(unsigned long seed, size_t chunk);

/* Fill the interval fields of out (se, pct_*, bca_*, z0, accel, degenerate)
 * from the B bootstrap statistics theta_b (REORDERED in place), the
 * observed statistic and the acceleration. Fails when BCa is undefined (the
 * observed statistic lies outside the bootstrap distribution). */
int boot_intervals(double *theta_b, size_t B, double estimate, double accel, double level,
                   struct boot_ci *out);

#endif
