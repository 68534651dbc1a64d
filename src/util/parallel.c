/* parallel.c: contiguous-range parallel loops over pthreads (see parallel.h). */
#include "util/parallel.h"

#include <cblas.h>
#include <pthread.h>

int parallel_threads(void) {
    int n = openblas_get_num_threads();
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
    // ranges 1.. on new threads, range 0 on this one; a failed create runs inline
    for (size_t t = 1; t < nt; t++) started[t] = pthread_create(&tid[t], NULL, run_range, &r[t]) == 0;
    run_range(&r[0]);
    for (size_t t = 1; t < nt; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else run_range(&r[t]);
    }
}
