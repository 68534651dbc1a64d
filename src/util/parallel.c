/* parallel.c: contiguous-range parallel loops over pthreads (see parallel.h). */
#include "util/parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>

static int fixed_threads;

/* OpenBLAS's pthreads build keeps its worker threads spinning on sched_yield for
 * about 0.1 s after each threaded call, so during our own loops they would take
 * a share of the cores from our threads (measured on 2 cores: up to 1.7 times
 * the GPT-2 attention time). blas_thread_shutdown_ (exported by OpenBLAS for
 * its fork handling) ends them; the next threaded BLAS call starts them again
 * (tens of microseconds). Weak: other BLAS libraries lack it. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

static void quiet_blas(void) {
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}

void parallel_set_threads(int n) { fixed_threads = n > 0 ? n : 0; }

int parallel_threads(void) {
    int n = fixed_threads ? fixed_threads : openblas_get_num_threads();
    if (n < 1) n = 1;
    return n > PARALLEL_MAX_THREADS ? PARALLEL_MAX_THREADS : n;
}

struct range {
    void (*fn)(void *, int, size_t, size_t);
    void *ctx;
    int thread;
    size_t begin, end;
};

static void *run_range(void *arg) {
    struct range *r = arg;
    r->fn(r->ctx, r->thread, r->begin, r->end);
    return NULL;
}

void parallel_for(size_t n, size_t min_per_thread,
                  void (*fn)(void *ctx, int thread, size_t begin, size_t end), void *ctx) {
    size_t nt = (size_t)parallel_threads();
    if (min_per_thread < 1) min_per_thread = 1;
    if (nt > n / min_per_thread) nt = n / min_per_thread;
    if (nt <= 1) {
        if (n) fn(ctx, 0, 0, n);
        return;
    }
    struct range r[PARALLEL_MAX_THREADS];
    pthread_t tid[PARALLEL_MAX_THREADS];
    int started[PARALLEL_MAX_THREADS] = {0};
    for (size_t t = 0; t < nt; t++)
        r[t] = (struct range){fn, ctx, (int)t, n * t / nt, n * (t + 1) / nt};
    quiet_blas();
    // ranges 1.. on new threads, range 0 on this one; a failed create runs inline
    for (size_t t = 1; t < nt; t++) started[t] = pthread_create(&tid[t], NULL, run_range, &r[t]) == 0;
    run_range(&r[0]);
    for (size_t t = 1; t < nt; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else run_range(&r[t]);
    }
}

struct items {
    void (*fn)(void *, int, size_t);
    void *ctx;
    size_t n;
    atomic_size_t next;
};

struct item_worker {
    struct items *it;
    int thread;
};

static void *run_items(void *arg) {
    struct item_worker *w = arg;
    struct items *it = w->it;
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&it->next, 1, memory_order_relaxed);
        if (i >= it->n) break;
        it->fn(it->ctx, w->thread, i);
    }
    return NULL;
}

void parallel_blas_items(size_t n, int max_threads, void (*fn)(void *ctx, int thread, size_t i),
                         void *ctx) {
    int blas = openblas_get_num_threads();
    size_t nt = (size_t)parallel_threads();
    if (max_threads < 1) max_threads = 1;
    if (nt > (size_t)max_threads) nt = (size_t)max_threads;
    if (nt > n) nt = n;
    if (nt <= 1) {
        for (size_t i = 0; i < n; i++) fn(ctx, 0, i);
        return;
    }
    struct items it = {fn, ctx, n, 0};
    struct item_worker w[PARALLEL_MAX_THREADS];
    pthread_t tid[PARALLEL_MAX_THREADS];
    int started[PARALLEL_MAX_THREADS] = {0};
    openblas_set_num_threads(1);
    quiet_blas();
    for (size_t t = 0; t < nt; t++) w[t] = (struct item_worker){&it, (int)t};
    // a thread that cannot be created leaves its share to the others
    for (size_t t = 1; t < nt; t++)
        started[t] = pthread_create(&tid[t], NULL, run_items, &w[t]) == 0;
    run_items(&w[0]);
    for (size_t t = 1; t < nt; t++)
        if (started[t]) pthread_join(tid[t], NULL);
    openblas_set_num_threads(blas);
}
