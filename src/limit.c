/* The limiter a worker calls: Redis when configured and reachable, else what
 * [redis] on_error says (the in-process windows, allow, or deny); without
 * [redis], the in-process windows. Also the x-ratelimit-* headers. */
#include "sluice/limit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/util.h"

atomic_ulong lim_redis_errors;

int64_t lim_window_ms(void)
{
    const char *v = getenv("SLUICE_WINDOW_MS");
    int64_t ms;
    if (v && sl_parse_int(v, &ms) && ms >= LIM_BUCKETS && ms <= 3600000)
        return ms;
    return 60000;
}

bool lim_unlimited(const struct lim_limits *lim)
{
    return !lim->rpm && !lim->input_tpm && !lim->output_tpm;
}

struct pending {
    struct limiter *l;
    char *key;
    struct lim_limits lim;
    int64_t cost;
    lim_cb cb;
    void *arg;
    bool peek;
};

/* Redis is down or failed: apply on_error. */
static void fallback(struct limiter *l, const char *key, const struct lim_limits *lim,
                     int64_t cost, lim_cb cb, void *arg, bool peek)
{
    struct lim_decision d = { 0 };
    switch (l->on_error) {
    case REDIS_ON_ERROR_LOCAL:
        if (peek)
            lim_local_peek(l->local, key, lim, &d);
        else
            lim_local_admit(l->local, key, lim, cost, &d);
        break;
    case REDIS_ON_ERROR_ALLOW:
        d.admitted = true;
        d.where = LIM_NOWHERE;
        break;
    default:
        d.unavailable = true;
        d.retry_ms = 1000;
        break;
    }
    cb(&d, arg);
}

static void redis_answered(bool ok, const struct lim_decision *d, void *arg)
{
    struct pending *p = arg;
    if (ok) {
        struct lim_decision copy = *d;
        copy.input_reserved = d->admitted && !p->peek ? p->cost : 0;
        p->cb(&copy, p->arg);
    } else {
        fallback(p->l, p->key, &p->lim, p->cost, p->cb, p->arg, p->peek);
    }
    free(p->key);
    free(p);
}

void lim_admit(struct limiter *l, const char *key, const struct lim_limits *lim, int64_t cost,
               lim_cb cb, void *arg)
{
    if (lim_unlimited(lim)) {
        struct lim_decision d = { .admitted = true, .where = LIM_NOWHERE };
        cb(&d, arg);
        return;
    }
    if (!l->redis) {
        struct lim_decision d;
        lim_local_admit(l->local, key, lim, cost, &d);
        cb(&d, arg);
        return;
    }
    if (!lim_redis_up(l->redis))
        return fallback(l, key, lim, cost, cb, arg, false);
    struct pending *p = sl_calloc(1, sizeof(*p));
    *p = (struct pending){ l, sl_strdup(key), *lim, cost, cb, arg, false };
    lim_redis_admit(l->redis, key, lim, cost, redis_answered, p);
}

void lim_peek(struct limiter *l, const char *key, const struct lim_limits *lim, lim_cb cb,
              void *arg)
{
    if (!l->redis || !lim_redis_up(l->redis)) {
        if (l->redis && l->on_error != REDIS_ON_ERROR_LOCAL) {
            struct lim_decision d = { .unavailable = true };
            return cb(&d, arg);
        }
        struct lim_decision d;
        lim_local_peek(l->local, key, lim, &d);
        return cb(&d, arg);
    }
    struct pending *p = sl_calloc(1, sizeof(*p));
    *p = (struct pending){ l, sl_strdup(key), *lim, 0, cb, arg, true };
    lim_redis_peek(l->redis, key, lim, redis_answered, p);
}

void lim_settle(struct limiter *l, const struct lim_decision *t, const char *key,
                const struct lim_limits *lim, int64_t input_delta, int64_t output, bool release)
{
    if (!t->admitted || (!input_delta && !output && !release))
        return;
    if (t->where == LIM_LOCAL)
        lim_local_settle(l->local, key, lim, t->bucket, input_delta, output, release);
    else if (t->where == LIM_REDIS && l->redis)
        lim_redis_settle(l->redis, key, lim, t->bucket, input_delta, output, release);
}

/* OpenAI's duration format: "20ms", "1.5s", "1m0s". */
static void format_duration(int64_t ms, char *out, size_t n)
{
    if (ms < 1000) {
        snprintf(out, n, "%lldms", (long long)SL_MAX(ms, 0));
        return;
    }
    int64_t minutes = ms / 60000, rest = ms % 60000;
    char secs[32];
    snprintf(secs, sizeof(secs), "%lld.%03lld", (long long)(rest / 1000), (long long)(rest % 1000));
    char *end = secs + strlen(secs);
    while (end[-1] == '0')
        *--end = '\0';
    if (end[-1] == '.')
        end[-1] = '\0';
    if (minutes)
        snprintf(out, n, "%lldm%ss", (long long)minutes, secs);
    else
        snprintf(out, n, "%ss", secs);
}

static void header_set(struct sl_buf *out, const char *what, int64_t limit, int64_t used,
                       int64_t reset_ms)
{
    char reset[48];
    format_duration(reset_ms, reset, sizeof(reset));
    sl_buf_printf(out,
                  "x-ratelimit-limit-%s: %lld\r\nx-ratelimit-remaining-%s: %lld\r\n"
                  "x-ratelimit-reset-%s: %s\r\n",
                  what, (long long)limit, what, (long long)SL_MAX(limit - used, 0), what, reset);
}

void lim_headers(const struct lim_decision *d, const struct lim_limits *lim, struct sl_buf *out)
{
    if (!d->admitted || d->where == LIM_NOWHERE)
        return;
    if (lim->rpm)
        header_set(out, "requests", lim->rpm, d->used_requests, d->reset_requests_ms);
    if (lim->input_tpm)
        header_set(out, "tokens", lim->input_tpm, d->used_input, d->reset_input_ms);
    if (lim->output_tpm)
        header_set(out, "output-tokens", lim->output_tpm, d->used_output, d->reset_output_ms);
}
