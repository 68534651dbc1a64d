/* limits.c: rate windows, backoff and budget arithmetic (see limits.h). */
#include "llm/limits.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

void llm_rate_init(struct llm_rate *r, double window_s, double rpm, double tpm) {
    memset(r, 0, sizeof *r);
    r->window_s = window_s;
    r->rpm = rpm;
    r->tpm = tpm;
}

void llm_rate_free(struct llm_rate *r) {
    free(r->ev);
    memset(r, 0, sizeof *r);
}

static struct llm_rate_event *at(struct llm_rate *r, int i) {
    return &r->ev[(r->head + i) % r->cap];
}

static void prune(struct llm_rate *r, double now) {
    while (r->n > 0 && at(r, 0)->t <= now - r->window_s) {
        r->head = (r->head + 1) % r->cap;
        r->n--;
        r->first_id++;
    }
}

double llm_rate_wait(struct llm_rate *r, double now, long tokens) {
    if (r->rpm <= 0 && r->tpm <= 0) return 0;
    prune(r, now);
    double wait = 0;
    if (r->rpm > 0 && r->n >= (int)r->rpm) {
        /* the oldest start that must leave the window first */
        double w = at(r, r->n - (int)r->rpm)->t + r->window_s - now;
        if (w > wait) wait = w;
    }
    if (r->tpm > 0 && r->n > 0) {
        double sum = tokens;
        for (int i = 0; i < r->n; i++)
            sum += at(r, i)->tokens;
        /* drop the oldest starts until the rest plus this one fit (or none is left) */
        for (int i = 0; i < r->n && sum > r->tpm; i++) {
            sum -= at(r, i)->tokens;
            double w = at(r, i)->t + r->window_s - now;
            if (w > wait) wait = w;
        }
    }
    return wait > 0 ? wait : 0;
}

long long llm_rate_record(struct llm_rate *r, double now, long tokens) {
    if (r->rpm <= 0 && r->tpm <= 0) return -1;
    prune(r, now);
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 64;
        struct llm_rate_event *ev = xmalloc(sizeof *ev * (size_t)cap);
        if (!ev) return -1; /* out of memory: the start goes unrecorded */
        for (int i = 0; i < r->n; i++)
            ev[i] = *at(r, i);
        free(r->ev);
        r->ev = ev;
        r->cap = cap;
        r->head = 0;
    }
    *at(r, r->n) = (struct llm_rate_event){now, tokens};
    r->n++;
    return r->first_id + r->n - 1;
}

void llm_rate_settle(struct llm_rate *r, long long id, long tokens) {
    if (id < r->first_id || id >= r->first_id + r->n) return;
    at(r, (int)(id - r->first_id))->tokens = tokens;
}

uint64_t llm_rng_next(uint64_t *s) {
    /* splitmix64: enough for jitter, no shared state with rand() */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double llm_backoff_ms(int attempt, long base_ms, long max_ms, uint64_t *rng) {
    double d =
        (double)base_ms * ldexp(1.0, attempt > 1 ? (attempt - 1 > 40 ? 40 : attempt - 1) : 0);
    if (d > (double)max_ms) d = (double)max_ms;
    double u = (double)(llm_rng_next(rng) >> 11) / 9007199254740992.0; /* [0,1) */
    return d / 2 + u * d / 2;
}

bool llm_budget_fits(const struct llm_budget *b, long tokens, double cost, char *why,
                     size_t why_cap) {
    if (b->max_requests > 0 && b->requests + 1 > b->max_requests) {
        snprintf(why, why_cap, "max_requests %lld reached", b->max_requests);
        return false;
    }
    if (b->max_tokens > 0 && b->tokens + b->reserved_tokens + tokens > b->max_tokens) {
        snprintf(why, why_cap,
                 "max_tokens %lld would be passed (spent %lld, %lld reserved in flight, "
                 "this request may use %ld)",
                 b->max_tokens, b->tokens, b->reserved_tokens, tokens);
        return false;
    }
    if (b->max_cost_usd > 0 && b->cost_usd + b->reserved_cost_usd + cost > b->max_cost_usd) {
        snprintf(why, why_cap,
                 "max_cost_usd %.4f would be passed (spent %.4f, %.4f reserved in flight, "
                 "this request may cost %.4f)",
                 b->max_cost_usd, b->cost_usd, b->reserved_cost_usd, cost);
        return false;
    }
    return true;
}

void llm_budget_reserve(struct llm_budget *b, long tokens, double cost) {
    b->requests++;
    b->reserved_tokens += tokens;
    b->reserved_cost_usd += cost;
}

void llm_budget_settle(struct llm_budget *b, long reserved_tokens, double reserved_cost,
                       long used_tokens, double used_cost) {
    b->reserved_tokens -= reserved_tokens;
    b->reserved_cost_usd -= reserved_cost;
    if (b->reserved_cost_usd < 1e-12) b->reserved_cost_usd = 0; /* rounding drift */
    if (b->reserved_tokens < 0) b->reserved_tokens = 0;
    b->tokens += used_tokens;
    b->cost_usd += used_cost;
}
