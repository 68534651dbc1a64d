/* llm_fixture.h: what the LLM client tests share (header-only, see testserver.h).
 *
 * A fixture owns a scratch directory, at most one running test server, one
 * client and a batch of requests whose texts carry "[[tag:rN]]" (so the server
 * log and the replies can be matched to requests) and optional fault
 * directives. llm_fx_teardown releases all of it and stops the server even
 * when the test failed half-way.
 */
#ifndef AUTOINTERP_LLM_FIXTURE_H
#define AUTOINTERP_LLM_FIXTURE_H

#include "testserver.h"
#include "testutil.h"

#include <string.h>

#include "llm/llm.h"
#include "util/error.h"

struct llm_fx {
    char *dir;
    struct test_server srv;
    struct llm_client *c;
    struct llm_endpoint_config cfg;
    struct llm_request *reqs;
    struct llm_message *msgs;
    char **texts;
    int n;
    int *done_count; /* on_done calls per index */
    int done_total;
};

static inline int llm_fx_setup(void **state) {
    struct llm_fx *fx = calloc(1, sizeof *fx);
    fx->dir = test_tmpdir("llm");
    *state = fx;
    return 0;
}

static inline void llm_fx_free_reqs(struct llm_fx *fx) {
    for (int i = 0; i < fx->n; i++) {
        llm_result_free(&fx->reqs[i].result);
        free(fx->texts[i]);
    }
    free(fx->reqs);
    free(fx->msgs);
    free(fx->texts);
    free(fx->done_count);
    fx->reqs = NULL;
    fx->msgs = NULL;
    fx->texts = NULL;
    fx->done_count = NULL;
    fx->n = 0;
    fx->done_total = 0;
}

static inline int llm_fx_teardown(void **state) {
    struct llm_fx *fx = *state;
    test_server_stop(&fx->srv);
    llm_client_free(fx->c);
    llm_fx_free_reqs(fx);
    test_rmtree(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

/* Start the server (extra args NULL-terminated) and fill fx->cfg for it with
 * test-friendly defaults: quick backoff, short timeouts. */
static inline void llm_fx_server(struct llm_fx *fx, const char *const *extra) {
    assert_int_equal(test_server_start(&fx->srv, fx->dir, extra), 0);
    llm_endpoint_config_init(&fx->cfg);
    fx->cfg.base_url = fx->srv.base_url;
    fx->cfg.model = "test-model";
    fx->cfg.backoff_base_ms = 20;
    fx->cfg.backoff_max_ms = 200;
    fx->cfg.timeout_ms = 5000;
    fx->cfg.max_retries = 4;
}

static inline void llm_fx_client(struct llm_fx *fx) {
    llm_client_free(fx->c);
    fx->c = llm_client_new(&fx->cfg);
    if (!fx->c) fail_msg("llm_client_new: %s", err_msg());
}

/* n chat requests; text i is "[[tag:<prefix>i]] <directive(i)> question i". */
typedef const char *(*llm_fx_directive_fn)(int i);
static inline void llm_fx_requests(struct llm_fx *fx, int n, const char *prefix,
                                   llm_fx_directive_fn directive) {
    llm_fx_free_reqs(fx);
    fx->n = n;
    fx->reqs = calloc((size_t)n, sizeof *fx->reqs);
    fx->msgs = calloc((size_t)n, sizeof *fx->msgs);
    fx->texts = calloc((size_t)n, sizeof *fx->texts);
    fx->done_count = calloc((size_t)n, sizeof *fx->done_count);
    for (int i = 0; i < n; i++) {
        const char *d = directive ? directive(i) : "";
        size_t len = strlen(prefix) + strlen(d) + 64;
        fx->texts[i] = malloc(len);
        snprintf(fx->texts[i], len, "[[tag:%s%d]] %s question number %d", prefix, i, d, i);
        fx->msgs[i] = (struct llm_message){"user", fx->texts[i]};
        fx->reqs[i].api = LLM_API_CHAT;
        fx->reqs[i].messages = &fx->msgs[i];
        fx->reqs[i].n_messages = 1;
    }
}

/* on_done that counts calls per index (ctx = the fixture). */
static inline int llm_fx_on_done(struct llm_request *req, int index, void *ctx) {
    struct llm_fx *fx = ctx;
    (void)req;
    fx->done_count[index]++;
    fx->done_total++;
    return 0;
}

/* Every request reached on_done exactly once. */
static inline void llm_fx_assert_each_done_once(const struct llm_fx *fx) {
    for (int i = 0; i < fx->n; i++)
        if (fx->done_count[i] != 1)
            fail_msg("request %d: on_done called %d times", i, fx->done_count[i]);
    assert_int_equal(fx->done_total, fx->n);
}

static inline int llm_fx_count_status(const struct llm_fx *fx, enum llm_status st) {
    int k = 0;
    for (int i = 0; i < fx->n; i++)
        k += fx->reqs[i].result.status == st;
    return k;
}

/* The tag the fixture gave request i. */
static inline const char *llm_fx_tag(const char *prefix, int i) {
    static char buf[64];
    snprintf(buf, sizeof buf, "%s%d", prefix, i);
    return buf;
}

#endif
