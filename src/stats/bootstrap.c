/* bootstrap.c: resampled means, percentile and BCa intervals, pooled-null
 * p-values. The formulas and the conventions are in bootstrap.h.
 *
 * The hot loop is resample_sum: n index draws and n loads from an array that
 * sits in L1, so the cost is the generator (GSL's mt19937 costs about 8 ns a
 * word here), and each word is made to give several indices (see struct
 * sampler). The B statistics live in one array of doubles; each interval
 * endpoint is an order statistic (or the interpolation of two) found by
 * selection in O(B), a few passes over the array instead of a sort.
 */
#include "stats/bootstrap.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_rng.h>
#include <gsl/gsl_sort.h>
#include <stddef.h>
#include <gsl/gsl_statistics_double.h>

#include "util/error.h"

/* A stream of uniform indices in [0, n) drawn from one generator.
 *
 * Two 32-bit mt19937 outputs make a 64-bit word w, which yields `digits`
 * indices: the base-n digits of v = floor(w n^d / 2^64), read off by repeated
 * multiplication of the fractional part (w n = i1 2^64 + f1, f1 n = i2 2^64 +
 * f2, ...), so that v = i1 n^(d-1) + ... + id and the last remainder is
 * w n^d mod 2^64. The word is rejected when that remainder is below
 * 2^64 mod n^d (Lemire), which makes v exactly uniform on [0, n^d) and so the d
 * digits independent and uniform. d is the largest power with n^d <= 2^64
 * whose rejection rate is at most 1/16 (n = 200: d = 8, 2.9% rejected; n = 400:
 * d = 7, 2.3%), so a generator call buys 3.5-4 indices instead of one. */
#define SAMPLER_MAX_DIGITS 64
typedef unsigned __int128 u128;
struct sampler {
    gsl_rng *rng;
    uint64_t n;
    uint64_t reject_below; /* 2^64 mod n^digits */
    int digits;
};

static void sampler_init(struct sampler *s, gsl_rng *rng, size_t n) {
    const u128 two64 = (u128)1 << 64;
    s->rng = rng;
    s->n = n;
    s->digits = 1;
    s->reject_below = (uint64_t)(two64 % n);
    u128 p = n;
    for (int d = 1; d <= SAMPLER_MAX_DIGITS && p <= two64; d++, p *= n) {
        u128 rej = two64 % p;
        if (rej <= two64 / 16) {
            s->digits = d;
            s->reject_below = (uint64_t)rej;
        }
        if (p > two64 / n) break;
    }
}

/* Fill idx[0..n) with uniform indices; idx has room for n + SAMPLER_MAX_DIGITS
 * (a word's digits are written before the word is accepted or rejected). */
static void draw_indices(uint32_t *idx, size_t n, const struct sampler *s) {
    const int d = s->digits;
    const uint64_t nn = s->n;
    size_t k = 0;
    while (k < n) {
        uint64_t f = (uint64_t)(uint32_t)gsl_rng_get(s->rng) << 32;
        f |= (uint32_t)gsl_rng_get(s->rng);
        for (int j = 0; j < d; j++) {
            u128 m = (u128)f * nn;
            idx[k + (size_t)j] = (uint32_t)(m >> 64);
            f = (uint64_t)m;
        }
        if (f >= s->reject_below) k += (size_t)d;
    }
}

/* Sum of n values of x drawn with replacement (x has s->n values); idx is
 * scratch of n + SAMPLER_MAX_DIGITS entries. Four partial sums break the
 * dependency chain of the additions. */
static double resample_sum(const double *x, size_t n, const struct sampler *s, uint32_t *idx) {
    draw_indices(idx, n, s);
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[idx[i]];
        s1 += x[idx[i + 1]];
        s2 += x[idx[i + 2]];
        s3 += x[idx[i + 3]];
    }
    for (; i < n; i++) s0 += x[idx[i]];
    return (s0 + s1) + (s2 + s3);
}

static double plain_sum(const double *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

static int check_sample(const char *name, const double *x, size_t n) {
    if (!x) return err_set("%s: expected an array of scores, got NULL", name);
    if (n < 2) return err_set("%s: need at least 2 scores for a bootstrap, got %zu", name, n);
    if (n > UINT32_MAX) return err_set("%s: at most 2^32-1 scores, got %zu", name, n);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return err_set("%s[%zu]: expected a finite score, got %g", name, i, x[i]);
    return 0;
}

static int is_constant(const double *x, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (x[i] != x[0]) return 0;
    return 1;
}

/* Apply defaults and validate; fills the echo fields of out. */
static int resolve_opts(const struct boot_opts *opts, struct boot_ci *out) {
    memset(out, 0, sizeof *out);
    out->n_resamples = opts && opts->n_resamples ? opts->n_resamples : BOOT_DEFAULT_RESAMPLES;
    out->level = opts && opts->level != 0.0 ? opts->level : BOOT_DEFAULT_LEVEL;
    out->seed = opts ? opts->seed : 0;
    out->n_threads = opts ? opts->n_threads : 0;
    if (!(out->level > 0.0 && out->level < 1.0))
        return err_set("bootstrap: level must be in (0,1), got %g", out->level);
    if (out->n_resamples > SIZE_MAX / (4 * sizeof(double)))
        return err_set("bootstrap: n_resamples %zu is too large for memory", out->n_resamples);
    return 0;
}

static gsl_rng *rng_new(unsigned long seed) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!r) {
        err_set("bootstrap: cannot allocate a gsl_rng_mt19937");
        return NULL;
    }
    gsl_rng_set(r, seed);
    return r;
}

static void set_degenerate(struct boot_ci *out, double value) {
    out->estimate = value;
    out->pct_lo = out->pct_hi = out->bca_lo = out->bca_hi = value;
    out->se = out->z0 = out->accel = 0.0;
    out->degenerate = 1;
}

/* Jackknife acceleration from the per-sample sums of U^2 / n^2 and U^3 / n^3. */
static void accel_terms(const double *x, size_t n, double sign, double *num, double *den) {
    if (!x || n < 2) return; /* no jackknife: contributes nothing */
    double mean = plain_sum(x, n) / (double)n, s2 = 0.0, s3 = 0.0;
    for (size_t i = 0; i < n; i++) {
        double u = sign * (x[i] - mean); /* (n-1)(mean of leave-one-outs - leave-i-out) */
        s2 += u * u;
        s3 += u * u * u;
    }
    double nn = (double)n;
    *num += s3 / (nn * nn * nn);
    *den += s2 / (nn * nn);
}

static double accel_from_terms(double num, double den) {
    if (!(den > 0.0)) return 0.0;
    return num / (6.0 * pow(den, 1.5));
}

double boot_accel_mean(const double *x, size_t n) {
    double num = 0.0, den = 0.0;
    accel_terms(x, n, 1.0, &num, &den);
    return accel_from_terms(num, den);
}

double boot_accel_diff(const double *a, size_t na, const double *b, size_t nb) {
    double num = 0.0, den = 0.0;
    accel_terms(a, na, 1.0, &num, &den);
    accel_terms(b, nb, -1.0, &num, &den); /* b is subtracted: its jackknife moves the other way */
    return accel_from_terms(num, den);
}

/* Rearrange t[0..n) so that t[k] is the value a full sort would put there,
 * with nothing larger before it and nothing smaller after it (Hoare's
 * selection with a median-of-three pivot; expected O(n)). */
static void select_kth(double *t, size_t n, size_t k) {
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, kk = (ptrdiff_t)k;
    while (lo < hi) {
        double a = t[lo], b = t[lo + (hi - lo) / 2], c = t[hi];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (t[i] < pivot) i++;
            while (t[j] > pivot) j--;
            if (i <= j) {
                double tmp = t[i];
                t[i++] = t[j];
                t[j--] = tmp;
            }
        }
        /* t[lo..j] <= pivot <= t[i..hi], and everything strictly between is == pivot */
        if (kk <= j)
            hi = j;
        else if (kk >= i)
            lo = i;
        else
            return;
    }
}

/* The f-quantile of t[0..B) by linear interpolation between order statistics
 * ((B - 1) f, numpy's default and GSL's gsl_stats_quantile_from_sorted_data),
 * without sorting: two selections. Reorders t. */
static double quantile_select(double *t, size_t B, double f) {
    double index = f * (double)(B - 1);
    size_t lhs = (size_t)index;
    double delta = index - (double)lhs;
    select_kth(t, B, lhs);
    if (lhs == B - 1) return t[lhs];
    double next = t[lhs + 1];
    for (size_t i = lhs + 2; i < B; i++) next = t[i] < next ? t[i] : next;
    return (1.0 - delta) * t[lhs] + delta * next;
}

int boot_intervals(double *theta_b, size_t B, double estimate, double accel, double level,
                   struct boot_ci *out) {
    if (B < 2) return err_set("bootstrap: need at least 2 resamples, got %zu", B);
    if (!(level > 0.0 && level < 1.0)) return err_set("bootstrap: level must be in (0,1), got %g", level);
    double lo = theta_b[0], hi = theta_b[0];
    size_t below = 0, at_or_below = 0;
    for (size_t k = 0; k < B; k++) {
        double t = theta_b[k];
        lo = t < lo ? t : lo;
        hi = t > hi ? t : hi;
        below += t < estimate;
        at_or_below += t <= estimate;
    }
    out->estimate = estimate;
    if (lo == hi) {
        set_degenerate(out, lo);
        out->estimate = estimate;
        return 0;
    }
    out->degenerate = 0;
    out->se = gsl_stats_sd(theta_b, 1, B);
    double alpha = (1.0 - level) / 2.0;
    double frac = (double)(below + at_or_below) / (2.0 * (double)B);
    if (frac <= 0.0 || frac >= 1.0)
        return err_set("bootstrap: BCa undefined: the observed statistic %g lies %s every one of "
                       "the %zu bootstrap statistics",
                       estimate, frac <= 0.0 ? "below" : "above", B);
    double z0 = gsl_cdf_ugaussian_Pinv(frac), za = gsl_cdf_ugaussian_Pinv(alpha);
    double num1 = z0 + za, num2 = z0 - za;
    double a1 = gsl_cdf_ugaussian_P(z0 + num1 / (1.0 - accel * num1));
    double a2 = gsl_cdf_ugaussian_P(z0 + num2 / (1.0 - accel * num2));
    if (!isfinite(a1) || !isfinite(a2))
        return err_set("bootstrap: BCa undefined (z0 %g, acceleration %g)", z0, accel);
    out->z0 = z0;
    out->accel = accel;
    out->pct_lo = quantile_select(theta_b, B, alpha);
    out->pct_hi = quantile_select(theta_b, B, 1.0 - alpha);
    out->bca_lo = quantile_select(theta_b, B, a1);
    out->bca_hi = quantile_select(theta_b, B, a2);
    return 0;
}


/* What one bootstrap statistic is made of: theta = mean of na draws from the
 * npa values pa, minus (when pb is not NULL) the mean of nb draws from the npb
 * values pb. One sample: (x, n, n). Difference: (a, na, na) - (b, nb, nb).
 * Pooled null: (pool, N, na) - (pool, N, nb). */
struct resample_plan {
    const double *pa;
    size_t npa, na;
    const double *pb;
    size_t npb, nb;
};

uint32_t boot_chunk_seed(unsigned long seed, size_t chunk) {
    /* splitmix64's finaliser over (low 32 bits of seed, chunk): a bijection of
     * the pair, so distinct chunks of one call never share a generator seed
     * unless the 32-bit truncation collides. */
    uint64_t z = ((uint64_t)(seed & 0xffffffffUL) << 32 | (uint64_t)(chunk & 0xffffffffu));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    return (uint32_t)(z >> 32);
}

/* One worker fills chunks first, first + step, ... of theta. */
struct fill_job {
    const struct resample_plan *plan;
    unsigned long seed;
    size_t B, first, step;
    double *theta;
    int rc;
    char err[ERR_MSG_MAX];
};

static void fill_chunk(const struct resample_plan *p, const struct sampler *sa,
                       const struct sampler *sb, uint32_t *idx, double *theta, size_t count) {
    for (size_t k = 0; k < count; k++) {
        theta[k] = resample_sum(p->pa, p->na, sa, idx) / (double)p->na;
        if (p->pb) theta[k] -= resample_sum(p->pb, p->nb, sb, idx) / (double)p->nb;
    }
}

static void *fill_worker(void *arg) {
    struct fill_job *job = arg;
    const struct resample_plan *p = job->plan;
    size_t most = p->na > p->nb ? p->na : p->nb;
    uint32_t *idx = xmalloc((most + SAMPLER_MAX_DIGITS) * sizeof *idx);
    gsl_rng *rng = idx ? rng_new(0) : NULL;
    if (!rng) {
        free(idx);
        job->rc = -1;
        snprintf(job->err, sizeof job->err, "%s", err_msg()); /* err_* is thread-local */
        return NULL;
    }
    struct sampler sa, sb;
    sampler_init(&sa, rng, p->npa);
    sampler_init(&sb, rng, p->pb ? p->npb : 2);
    size_t n_chunks = (job->B + BOOT_CHUNK - 1) / BOOT_CHUNK;
    for (size_t c = job->first; c < n_chunks; c += job->step) {
        gsl_rng_set(rng, boot_chunk_seed(job->seed, c));
        size_t start = c * BOOT_CHUNK, count = job->B - start < BOOT_CHUNK ? job->B - start : BOOT_CHUNK;
        fill_chunk(p, &sa, &sb, idx, job->theta + start, count);
    }
    gsl_rng_free(rng);
    free(idx);
    job->rc = 0;
    return NULL;
}

static int resolve_threads(int n_threads, size_t B) {
    if (n_threads <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = online > 0 ? (int)online : 1;
    }
    if (n_threads > BOOT_MAX_THREADS) n_threads = BOOT_MAX_THREADS;
    size_t n_chunks = (B + BOOT_CHUNK - 1) / BOOT_CHUNK;
    if ((size_t)n_threads > n_chunks) n_threads = (int)n_chunks;
    return n_threads;
}

/* theta[0..B): chunk c (BOOT_CHUNK resamples) comes from a gsl_rng_mt19937
 * seeded with boot_chunk_seed(seed, c), whichever thread runs it, so the result
 * does not depend on n_threads. */
static int fill_distribution(const struct resample_plan *p, unsigned long seed, int n_threads,
                             size_t B, double *theta) {
    int T = resolve_threads(n_threads, B);
    struct fill_job jobs[BOOT_MAX_THREADS];
    pthread_t tid[BOOT_MAX_THREADS];
    int started[BOOT_MAX_THREADS] = {0};
    for (int t = 0; t < T; t++) {
        jobs[t] = (struct fill_job){.plan = p, .seed = seed, .B = B, .first = (size_t)t, .step = (size_t)T,
                                    .theta = theta, .rc = -1};
        if (t > 0) started[t] = pthread_create(&tid[t], NULL, fill_worker, &jobs[t]) == 0;
    }
    fill_worker(&jobs[0]);
    int rc = jobs[0].rc;
    for (int t = 1; t < T; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else fill_worker(&jobs[t]); /* no thread available: do its chunks here */
        if (jobs[t].rc && rc == 0) {
            rc = -1;
            err_set("%s", jobs[t].err);
        }
    }
    if (jobs[0].rc) err_set("%s", jobs[0].err);
    return rc;
}

int boot_mean_ci(const double *x, size_t n, const struct boot_opts *opts, struct boot_ci *out) {
    if (resolve_opts(opts, out) || check_sample("scores", x, n)) return -1;
    double estimate = plain_sum(x, n) / (double)n;
    if (is_constant(x, n)) {
        set_degenerate(out, x[0]);
        return 0;
    }
    size_t B = out->n_resamples;
    double *theta = xmalloc(B * sizeof *theta);
    if (!theta) return -1;
    struct resample_plan plan = {x, n, n, NULL, 0, 0};
    int rc = fill_distribution(&plan, out->seed, out->n_threads, B, theta);
    if (rc == 0) rc = boot_intervals(theta, B, estimate, boot_accel_mean(x, n), out->level, out);
    free(theta);
    return rc;
}

static int check_pair(const double *a, size_t na, const double *b, size_t nb) {
    if (check_sample("a", a, na) || check_sample("b", b, nb)) return -1;
    if (na + nb > UINT32_MAX) return err_set("bootstrap: at most 2^32-1 pooled scores");
    return 0;
}

int boot_diff_ci(const double *a, size_t na, const double *b, size_t nb,
                 const struct boot_opts *opts, struct boot_ci *out) {
    if (resolve_opts(opts, out) || check_pair(a, na, b, nb)) return -1;
    double estimate = plain_sum(a, na) / (double)na - plain_sum(b, nb) / (double)nb;
    if (is_constant(a, na) && is_constant(b, nb)) {
        set_degenerate(out, a[0] - b[0]);
        return 0;
    }
    size_t B = out->n_resamples;
    double *theta = xmalloc(B * sizeof *theta);
    if (!theta) return -1;
    struct resample_plan plan = {a, na, na, b, nb, nb};
    int rc = fill_distribution(&plan, out->seed, out->n_threads, B, theta);
    if (rc == 0) rc = boot_intervals(theta, B, estimate, boot_accel_diff(a, na, b, nb), out->level, out);
    free(theta);
    return rc;
}

int boot_pvalue_pooled(const double *a, size_t na, const double *b, size_t nb,
                       const struct boot_opts *opts, double *p_out, size_t *n_extreme) {
    struct boot_ci o;
    if (resolve_opts(opts, &o) || check_pair(a, na, b, nb)) return -1;
    if (!p_out) return err_set("bootstrap: p_out is NULL");
    size_t B = o.n_resamples;
    double observed = fabs(plain_sum(a, na) / (double)na - plain_sum(b, nb) / (double)nb);
    double *theta = xmalloc(B * sizeof *theta);
    double *pool = xmalloc((na + nb) * sizeof *pool);
    if (!theta || !pool) {
        free(theta);
        free(pool);
        return -1;
    }
    memcpy(pool, a, na * sizeof *pool);
    memcpy(pool + na, b, nb * sizeof *pool);
    struct resample_plan plan = {pool, na + nb, na, pool, na + nb, nb};
    int rc = fill_distribution(&plan, o.seed, o.n_threads, B, theta);
    free(pool);
    if (rc) {
        free(theta);
        return -1;
    }
    double cut = observed - 1e-12 * observed; /* rounding slack, see bootstrap.h */
    size_t count = 0;
    for (size_t k = 0; k < B; k++) count += fabs(theta[k]) >= cut;
    free(theta);
    *p_out = (double)(count + 1) / (double)(B + 1);
    if (n_extreme) *n_extreme = count;
    return 0;
}

int boot_compare_means(const double *a, size_t na, const double *b, size_t nb,
                       const struct boot_opts *opts, struct boot_compare *out) {
    memset(out, 0, sizeof *out);
    if (boot_diff_ci(a, na, b, nb, opts, &out->diff)) return -1;
    struct boot_opts po = {.n_resamples = out->diff.n_resamples,
                           .level = out->diff.level,
                           .seed = out->diff.seed ^ BOOT_PVALUE_SEED_XOR,
                           .n_threads = out->diff.n_threads};
    out->p_seed = po.seed;
    return boot_pvalue_pooled(a, na, b, nb, &po, &out->p_value, &out->n_extreme);
}

int stats_describe(const double *x, size_t n, struct stats_desc *out) {
    if (check_sample("scores", x, n)) return -1;
    double *sorted = xmalloc(n * sizeof *sorted);
    if (!sorted) return -1;
    memcpy(sorted, x, n * sizeof *sorted);
    gsl_sort(sorted, 1, n);
    out->n = n;
    out->mean = gsl_stats_mean(x, 1, n);
    out->sd = gsl_stats_sd_m(x, 1, n, out->mean);
    out->median = gsl_stats_median_from_sorted_data(sorted, 1, n);
    out->min = sorted[0];
    out->max = sorted[n - 1];
    free(sorted);
    return 0;
}
