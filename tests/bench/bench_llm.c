/* bench_llm.c: LLM client throughput against a server with a fixed latency.
 *
 * Usage: bench_llm BASE_URL LATENCY_MS N CONCURRENCY CACHE_DIR
 * Runs N chat requests three ways: without a cache (pure transport), with a
 * cache being filled (one fsync'd file per reply, written inside the loop), and
 * again from that cache. Prints wall time against the ideal N/C x latency and
 * the client's CPU time per request (getrusage: user + system of this process;
 * the server is another process).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "llm/llm.h"
#include "util/error.h"
#include "util/log.h"

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

struct run {
    double wall, cpu;
    long long ok, http_calls, cache_hits;
};

static int run_once(const struct llm_endpoint_config *cfg, int n, const char *tag,
                    struct run *out) {
    struct llm_message *msgs = calloc((size_t)n, sizeof *msgs);
    struct llm_request *reqs = calloc((size_t)n, sizeof *reqs);
    char **texts = calloc((size_t)n, sizeof *texts);
    for (int i = 0; i < n; i++) {
        texts[i] = malloc(96);
        snprintf(texts[i], 96, "[[tag:%s%d]] Explain feature %d in one sentence.", tag, i, i);
        msgs[i] = (struct llm_message){"user", texts[i]};
        reqs[i] = (struct llm_request){.messages = &msgs[i], .n_messages = 1};
    }
    struct llm_client *c = llm_client_new(cfg);
    if (!c) return -1;
    double cpu0 = cpu_seconds(), t0 = now_seconds();
    int rc = llm_run_batch(c, reqs, n, NULL, NULL);
    out->wall = now_seconds() - t0;
    out->cpu = cpu_seconds() - cpu0;
    const struct llm_stats *s = llm_client_stats(c);
    out->ok = s->ok;
    out->http_calls = s->http_calls;
    out->cache_hits = s->cache_hits;
    llm_client_free(c);
    for (int i = 0; i < n; i++) {
        llm_result_free(&reqs[i].result);
        free(texts[i]);
    }
    free(texts);
    free(reqs);
    free(msgs);
    return rc;
}

static void report(const char *what, const struct run *r, int n, double ideal) {
    printf(
        "%-22s wall %6.3f s  ideal %5.2f s  ratio %5.2f  ok %lld/%d  http %lld  cache hits %lld  "
        "client CPU %.3f s (%.3f ms/request)\n",
        what, r->wall, ideal, ideal > 0 ? r->wall / ideal : 0, r->ok, n, r->http_calls,
        r->cache_hits, r->cpu, 1000.0 * r->cpu / n);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s BASE_URL LATENCY_MS N CONCURRENCY CACHE_DIR\n", argv[0]);
        return 2;
    }
    log_set_level(LOG_ERROR);
    double latency = atof(argv[2]) / 1000.0;
    int n = atoi(argv[3]), conc = atoi(argv[4]);
    struct llm_endpoint_config cfg;
    llm_endpoint_config_init(&cfg);
    cfg.base_url = argv[1];
    cfg.model = "bench-model";
    cfg.concurrency = conc;
    cfg.max_tokens = 64;
    double ideal = n * latency / conc; /* N/C x L; whole rounds would be ceil(N/C) x L */
    printf("llm client: %d chat requests at concurrency %d, server latency %.0f ms\n", n, conc,
           latency * 1000);
    struct run r;
    if (run_once(&cfg, n, "a", &r) != 0) goto fail;
    report("no cache", &r, n, ideal);
    int status = r.wall / ideal <= 1.2 ? 0 : 1;
    cfg.cache_dir = argv[5];
    if (run_once(&cfg, n, "b", &r) != 0) goto fail;
    report("filling the cache", &r, n, ideal);
    if (run_once(&cfg, n, "b", &r) != 0) goto fail;
    report("rerun from the cache", &r, n, 0);
    printf("target: no-cache wall within 1.2x of ideal: %s\n", status == 0 ? "met" : "MISSED");
    return 0;
fail:
    fprintf(stderr, "bench_llm: %s\n", err_msg());
    return 1;
}
