/* parallel.h: split a loop over independent items across threads.
 *
 * The non-BLAS work of the SAE (sparse decoder and gradients, Adam, the KL rows)
 * and of the model is elementwise, per row or per feature, so it splits into
 * contiguous ranges with no shared writes. Each range is computed exactly as
 * the serial loop would, so the results do not depend on the number of threads.
 * Threads are created per call (tens of microseconds, against milliseconds of
 * work per call); the count follows OpenBLAS's (--threads), so BLAS and these
 * loops never oversubscribe.
 */
#ifndef AUTOINTERP_UTIL_PARALLEL_H
#define AUTOINTERP_UTIL_PARALLEL_H

#include <stddef.h>

#define PARALLEL_MAX_THREADS 64

/* Threads to use: openblas_get_num_threads(), capped at PARALLEL_MAX_THREADS. */
int parallel_threads(void);

/* fn(ctx, thread, begin, end) over [0, n) in at most parallel_threads() contiguous
 * ranges, at least min_per_thread items each (small loops stay serial). thread
 * is the range's index (0-based), for per-thread scratch. Runs serially if a
 * thread cannot be created. */
void parallel_for(size_t n, size_t min_per_thread,
                  void (*fn)(void *ctx, int thread, size_t begin, size_t end), void *ctx);

#endif
