/* parallel.h: split a loop over independent items across threads.
 *
 * The non-BLAS work of the SAE (sparse decoder and gradients, Adam, the KL rows)
 * and of the model is elementwise, per row or per feature, so it splits into
 * contiguous ranges with no shared writes. Each range is computed exactly as
 * the serial loop would, so the results do not depend on the number of threads.
 * Threads are created per call (tens of microseconds, against milliseconds of
 * work per call); the count follows OpenBLAS's (--threads), so BLAS and these
 * loops never oversubscribe. OpenBLAS's pthreads build keeps its idle worker
 * threads spinning on sched_yield for about 0.1 s after each threaded call,
 * which would take a share of the cores from ours, so both loops first end
 * them (OpenBLAS starts them again at its next threaded call).
 *
 * parallel_blas_items is for loops whose items make BLAS calls too small to
 * thread well (the model's attention backward: sgemms per block of 64 query
 * rows of one (batch, head)): instead of every small sgemm waking and joining
 * OpenBLAS's threads, whole items go to our threads and each calls
 * single-threaded sgemm. OpenBLAS splits a product over rows and columns, never
 * over the inner dimension, but which elements land on its edge kernels depends
 * on the split, so an item's bits can differ between single- and multi-threaded
 * BLAS; they do not depend on which of our threads runs it, nor on how many.
 */
#ifndef AUTOINTERP_UTIL_PARALLEL_H
#define AUTOINTERP_UTIL_PARALLEL_H

#include <stddef.h>

#define PARALLEL_MAX_THREADS 64

/* Threads to use: openblas_get_num_threads() (or the parallel_set_threads
 * count), capped at PARALLEL_MAX_THREADS. */
int parallel_threads(void);

/* Use n threads for these loops from now on instead of OpenBLAS's count; n <= 0
 * follows OpenBLAS again. For tests that vary our split while BLAS stays
 * single-threaded. Not thread-safe: call it between parallel loops. */
void parallel_set_threads(int n);

/* fn(ctx, thread, begin, end) over [0, n) in at most parallel_threads() contiguous
 * ranges, at least min_per_thread items each (small loops stay serial). thread
 * is the range's index (0-based), for per-thread scratch. Runs serially if a
 * thread cannot be created. */
void parallel_for(size_t n, size_t min_per_thread,
                  void (*fn)(void *ctx, int thread, size_t begin, size_t end), void *ctx);

/* fn(ctx, thread, i) for every i in [0, n), items handed out one at a time (in
 * order, to whichever thread is free) to at most min(max_threads,
 * parallel_threads()) threads; thread (0-based) indexes per-thread scratch.
 * Meanwhile OpenBLAS is set to one thread, so BLAS calls inside fn run on the
 * calling thread; its count is restored before returning. With one thread (or
 * one item) the items run in order on this thread and BLAS keeps its threads.
 * Not reentrant, and BLAS calls made by other threads meanwhile also run
 * single-threaded (the thread count is global to OpenBLAS). */
void parallel_blas_items(size_t n, int max_threads, void (*fn)(void *ctx, int thread, size_t i),
                         void *ctx);

#endif
