/* limits.h: the pacing rules of the client: rate windows, backoff, budgets.
 *
 * Kept apart from the transfer loop so each rule is a small pure function of
 * the clock that a unit test can drive with made-up times.
 *
 * Rate window: every request start is recorded with its token estimate; a start
 * is allowed when the last window_s seconds hold fewer than rpm starts and their
 * tokens plus the new estimate stay within tpm (or the window is empty, so one
 * huge request still runs). Estimates are replaced by actual usage on reply.
 */
#ifndef AUTOINTERP_LLM_LIMITS_H
#define AUTOINTERP_LLM_LIMITS_H

#include <stdint.h>

#include "llm/llm.h"

struct llm_rate_event {
    double t;    /* start, monotonic seconds */
    long tokens; /* estimate, then actual */
};

struct llm_rate {
    double window_s, rpm, tpm; /* rpm/tpm 0 = unlimited */
    struct llm_rate_event *ev; /* ring buffer, oldest at head */
    long long first_id;        /* id of ev[head] */
    int head, n, cap;
};

void llm_rate_init(struct llm_rate *r, double window_s, double rpm, double tpm);
void llm_rate_free(struct llm_rate *r);
/* Seconds to wait before a request estimated at `tokens` may start (0 = now). */
double llm_rate_wait(struct llm_rate *r, double now, long tokens);
/* Record a start; returns its id for llm_rate_settle (-1 when limits are off). */
long long llm_rate_record(struct llm_rate *r, double now, long tokens);
/* Replace the estimate of start `id` by the actual count (if still in window). */
void llm_rate_settle(struct llm_rate *r, long long id, long tokens);

/* Backoff before attempt `attempt` + 1 (attempt >= 1 failed ones so far):
 * uniform in [d/2, d], d = min(max_ms, base_ms * 2^(attempt-1)). */
double llm_backoff_ms(int attempt, long base_ms, long max_ms, uint64_t *rng);
uint64_t llm_rng_next(uint64_t *state);

/* Budget: does a request with these estimates fit now? When not, *why gets a
 * sentence naming the cap ("max_tokens_total 5000 (spent 4800, 120 reserved)"). */
bool llm_budget_fits(const struct llm_budget *b, long tokens, double cost, char *why,
                     size_t why_cap);
void llm_budget_reserve(struct llm_budget *b, long tokens, double cost);
/* Release a reservation and charge what was used (0 when the attempt got no reply). */
void llm_budget_settle(struct llm_budget *b, long reserved_tokens, double reserved_cost,
                       long used_tokens, double used_cost);

#endif
