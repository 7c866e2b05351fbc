/* The limiter a worker calls: Redis when configured and reachable, else what
 * [redis] on_error says (the in-process windows, allow, or deny); without
 * [redis], the in-process windows. Also the x-ratelimit-* headers. */
#include "sluice/limit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sluice/config.h"
#include "sluice/util.h"

atomic_ulong lim_redis_errors;
atomic_ulong lim_degraded;

int64_t lim_window_ms(void)
{
    const char *v = getenv("SLUICE_WINDOW_MS");
    int64_t ms;
    if (v && sl_parse_int(v, &ms) && ms >= LIM_BUCKETS && ms <= 3600000)
        return ms;
    return 60000;
}

static int64_t lease_ms;

static void read_lease_ms(void)
{
    const char *v = getenv("SLUICE_LEASE_MS");
    int64_t ms;
    lease_ms = v && sl_parse_int(v, &ms) && ms >= 300 && ms <= 3600000 ? ms : 30000;
}

int64_t lim_lease_ms(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_lease_ms); /* read once: every leased request asks */
    return lease_ms;
}

static atomic_llong last_lease;
static uint64_t node_id;

static void make_node_id(void)
{
    if (getrandom(&node_id, sizeof(node_id), 0) != (ssize_t)sizeof(node_id))
        node_id = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
}

int64_t lim_lease_new(void)
{
    return atomic_fetch_add(&last_lease, 1) + 1;
}

void lim_lease_name(int64_t lease, char out[LIM_LEASE_NAME])
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_node_id);
    snprintf(out, LIM_LEASE_NAME, "%016llx-%lld", (unsigned long long)node_id, (long long)lease);
}

static int64_t clock_offset_s;

static void read_clock_offset(void)
{
    const char *v = getenv("SLUICE_CLOCK_OFFSET_S");
    int64_t s;
    clock_offset_s = v && sl_parse_int(v, &s) ? s : 0;
}

int64_t lim_clock_offset_s(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_clock_offset); /* the environment is read once */
    return clock_offset_s;
}

void lim_period(int kind, int64_t now_ms, char id[LIM_PERIOD_ID], int64_t *reset_ms)
{
    int64_t off = lim_clock_offset_s();
    time_t secs = (time_t)(now_ms / 1000 + off);
    int64_t day = (int64_t)(secs >= 0 ? secs / 86400 : (secs - 86399) / 86400);
    if (kind == QUOTA_PERIOD_DAY) {
        snprintf(id, LIM_PERIOD_ID, "d%lld", (long long)day);
        *reset_ms = ((day + 1) * 86400 - off) * 1000 - now_ms;
    } else if (kind == QUOTA_PERIOD_WEEK) { /* ISO: from Monday; day 0 was a Thursday */
        int64_t monday = day - ((day + 3) % 7 + 7) % 7;
        snprintf(id, LIM_PERIOD_ID, "w%lld", (long long)monday);
        *reset_ms = ((monday + 7) * 86400 - off) * 1000 - now_ms;
    } else if (kind == QUOTA_PERIOD_MONTH) {
        struct tm tm;
        gmtime_r(&secs, &tm);
        snprintf(id, LIM_PERIOD_ID, "m%d", (tm.tm_year + 1900) * 100 + tm.tm_mon + 1);
        struct tm next = { .tm_year = tm.tm_mon == 11 ? tm.tm_year + 1 : tm.tm_year,
                           .tm_mon = (tm.tm_mon + 1) % 12, .tm_mday = 1 };
        *reset_ms = ((int64_t)timegm(&next) - off) * 1000 - now_ms;
    } else {
        snprintf(id, LIM_PERIOD_ID, "total");
        *reset_ms = -1;
    }
}

int64_t lim_period_end_s(int64_t reset_ms, int64_t wall_now_ms)
{
    return (wall_now_ms + reset_ms + 500) / 1000;
}

static struct lim_team team_of(const struct cfg_team *t)
{
    struct lim_team lt = { .rpm = t->rpm,
                           .input_tpm = t->input_tpm,
                           .output_tpm = t->output_tpm,
                           .budget = t->budget,
                           .budget_period = t->budget_period,
                           .max_inflight = t->max_inflight };
    snprintf(lt.name, sizeof(lt.name), "%s", t->name);
    return lt;
}

struct lim_limits lim_limits_of(const struct cfg_key *k)
{
    struct lim_limits lim = { .rpm = k->rpm,
                              .input_tpm = k->input_tpm,
                              .output_tpm = k->output_tpm,
                              .quota = k->quota,
                              .quota_period = k->quota_period,
                              .budget = k->budget,
                              .budget_period = k->budget_period,
                              .shadow = k->mode == KEY_MODE_SHADOW,
                              .max_inflight = k->max_inflight };
    if (k->team)
        lim.team = team_of(k->team);
    return lim;
}

struct lim_limits lim_team_limits_of(const struct cfg_team *t)
{
    return (struct lim_limits){ .team = team_of(t) };
}

bool lim_unlimited(const struct lim_limits *lim)
{
    return !lim->rpm && !lim->input_tpm && !lim->output_tpm && !lim->quota && !lim->budget &&
           !lim->max_inflight && !lim->team.name[0];
}

struct lim_count lim_count_of(const struct lim_decision *d, enum lim_counter which)
{
    if (which == LIM_BUDGET)
        return d->budget;
    if (which == LIM_TEAM_BUDGET)
        return d->team_budget;
    struct lim_count c = { d->used_quota, d->quota_reset_ms, { 0 } };
    memcpy(c.period, d->period, sizeof(c.period));
    return c;
}

enum pending_kind { P_ADMIT, P_PEEK, P_COUNT };

struct pending {
    struct limiter *l;
    char *key;
    struct lim_limits lim;
    int64_t cost;  /* the input cost, or the amount of a counter op */
    int64_t spend; /* micro-dollars to reserve */
    lim_cb cb;
    void *arg;
    enum pending_kind kind;
    enum lim_counter counter;
    enum lim_quota_op op;
};

/* In-process: the decision without Redis. */
static void decide_locally(const struct pending *p, struct lim_decision *d)
{
    if (p->kind == P_PEEK)
        lim_local_peek(p->l->local, p->key, &p->lim, d);
    else if (p->kind == P_COUNT)
        lim_local_count(p->l->local, p->key, &p->lim, p->counter, p->op, p->cost, d);
    else
        lim_local_admit(p->l->local, p->key, &p->lim, p->cost, p->spend, d);
}

/* Redis is down or failed: apply on_error. Reads (peek, quota) follow
 * local; allow and deny apply to admissions. */
static void fallback(const struct pending *p)
{
    struct lim_decision d = { 0 };
    if (p->kind == P_ADMIT)
        atomic_fetch_add(&lim_degraded, 1);
    if (p->l->on_error == REDIS_ON_ERROR_LOCAL) {
        decide_locally(p, &d);
    } else if (p->l->on_error == REDIS_ON_ERROR_ALLOW && p->kind == P_ADMIT) {
        d.admitted = true;
        d.where = LIM_NOWHERE;
    } else {
        d.unavailable = true;
        d.retry_ms = 1000;
    }
    p->cb(&d, p->arg);
}

static void redis_answered(bool ok, const struct lim_decision *d, void *arg)
{
    struct pending *p = arg;
    if (ok) {
        struct lim_decision copy = *d;
        bool admitted = d->admitted && p->kind == P_ADMIT;
        copy.input_reserved = admitted ? p->cost : 0;
        copy.spend_reserved = admitted ? p->spend : 0;
        if (p->l->on_error == REDIS_ON_ERROR_LOCAL && admitted)
            lim_local_seed(p->l->local, p->key, &p->lim, d); /* where a Redis outage starts from */
        p->cb(&copy, p->arg);
    } else {
        fallback(p);
    }
    free(p->key);
    free(p);
}

/* Redis if configured and up, else in-process or on_error. */
static void dispatch(struct pending *p)
{
    struct limiter *l = p->l;
    if (l->redis && lim_redis_up(l->redis)) {
        if (p->kind == P_PEEK)
            lim_redis_peek(l->redis, p->key, &p->lim, redis_answered, p);
        else if (p->kind == P_COUNT)
            lim_redis_count(l->redis, p->key, &p->lim, p->counter, p->op, p->cost,
                            redis_answered, p);
        else
            lim_redis_admit(l->redis, p->key, &p->lim, p->cost, p->spend, redis_answered, p);
        return;
    }
    struct lim_decision d;
    if (l->redis) {
        fallback(p);
    } else {
        decide_locally(p, &d);
        p->cb(&d, p->arg);
    }
    free(p->key);
    free(p);
}

static struct pending *pending_new(struct limiter *l, enum pending_kind kind, const char *key,
                                   const struct lim_limits *lim, int64_t cost, lim_cb cb, void *arg)
{
    struct pending *p = sl_calloc(1, sizeof(*p));
    *p = (struct pending){ .l = l,      .key = sl_strdup(key), .lim = *lim, .cost = cost,
                           .cb = cb,    .arg = arg,            .kind = kind };
    return p;
}

void lim_admit(struct limiter *l, const char *key, const struct lim_limits *lim, int64_t cost,
               int64_t spend, lim_cb cb, void *arg)
{
    if (lim_unlimited(lim)) {
        struct lim_decision d = { .admitted = true, .where = LIM_NOWHERE };
        cb(&d, arg);
        return;
    }
    struct pending *p = pending_new(l, P_ADMIT, key, lim, cost, cb, arg);
    p->spend = spend;
    dispatch(p);
}

void lim_peek(struct limiter *l, const char *key, const struct lim_limits *lim, lim_cb cb,
              void *arg)
{
    dispatch(pending_new(l, P_PEEK, key, lim, 0, cb, arg));
}

void lim_count(struct limiter *l, const char *key, const struct lim_limits *lim,
               enum lim_counter which, enum lim_quota_op op, int64_t amount, lim_cb cb, void *arg)
{
    struct pending *p = pending_new(l, P_COUNT, key, lim, amount, cb, arg);
    p->counter = which;
    p->op = op;
    dispatch(p);
}

void lim_settle(struct limiter *l, const struct lim_decision *t, const char *key,
                const struct lim_limits *lim, const struct lim_usage *u)
{
    if (!t->admitted || (!u->input_delta && !u->output && !u->release && !u->quota_delta &&
                         !u->spend_delta && !t->lease))
        return;
    if (t->where == LIM_LOCAL)
        lim_local_settle(l->local, key, lim, t, u);
    else if (t->where == LIM_REDIS && l->redis)
        lim_redis_settle(l->redis, key, lim, t, u);
}

void lim_renew(struct limiter *l, const struct lim_decision *t, const char *key,
               const struct lim_limits *lim)
{
    if (t->admitted && t->lease && t->where == LIM_REDIS && l->redis)
        lim_redis_renew(l->redis, key, lim, t);
}

/* The x-ratelimit header lines are written into one stack buffer, then
 * appended at once: they go on every limited response. */
struct hline {
    char text[1100]; /* five sets of at most 181 bytes, and the inflight pair (< 100) */
    size_t len;
};

static void put(struct hline *h, const char *s, size_t n)
{
    memcpy(h->text + h->len, s, n);
    h->len += n;
}

#define PUT_LIT(h, lit) put((h), (lit), sizeof(lit) - 1)

static void put_int(struct hline *h, int64_t v)
{
    h->len += sl_fmt_int(v, h->text + h->len);
}

/* OpenAI's duration format: "20ms", "1.5s", "1m0s". */
static void put_duration(struct hline *h, int64_t ms)
{
    if (ms < 1000) {
        put_int(h, SL_MAX(ms, 0));
        PUT_LIT(h, "ms");
        return;
    }
    int64_t minutes = ms / 60000, rest = ms % 60000;
    if (minutes) {
        put_int(h, minutes);
        PUT_LIT(h, "m");
    }
    put_int(h, rest / 1000);
    int64_t frac = rest % 1000;
    if (frac) { /* up to three decimals, trailing zeros dropped */
        char d[4] = { '.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10), (char)('0' + frac % 10) };
        size_t n = 4;
        while (d[n - 1] == '0')
            n--;
        put(h, d, n);
    }
    PUT_LIT(h, "s");
}

/* At most 181 bytes: two lines of 37 + 20 + 2 (the longest name, the
 * longest int64) and a reset line of 33 + 28 + 2. */
static void put_amount(struct hline *h, int64_t v, bool money)
{
    if (money)
        h->len += sl_fmt_money(v, h->text + h->len);
    else
        put_int(h, v);
}

static void header_set(struct hline *h, const char *what, int64_t limit, int64_t used,
                       int64_t reset_ms, bool money)
{
    size_t wlen = strlen(what);
    PUT_LIT(h, "x-ratelimit-limit-");
    put(h, what, wlen);
    PUT_LIT(h, ": ");
    put_amount(h, limit, money);
    PUT_LIT(h, "\r\nx-ratelimit-remaining-");
    put(h, what, wlen);
    PUT_LIT(h, ": ");
    put_amount(h, SL_MAX(limit - used, 0), money);
    PUT_LIT(h, "\r\nx-ratelimit-reset-");
    put(h, what, wlen);
    PUT_LIT(h, ": ");
    put_duration(h, reset_ms);
    PUT_LIT(h, "\r\n");
}

void lim_headers(const struct lim_decision *d, const struct lim_limits *lim, struct sl_buf *out)
{
    if (!d->admitted || d->where == LIM_NOWHERE)
        return;
    struct hline h;
    h.len = 0;
    if (lim->rpm)
        header_set(&h, "requests", lim->rpm, d->used_requests, d->reset_requests_ms, false);
    if (lim->input_tpm)
        header_set(&h, "tokens", lim->input_tpm, d->used_input, d->reset_input_ms, false);
    if (lim->output_tpm)
        header_set(&h, "output-tokens", lim->output_tpm, d->used_output, d->reset_output_ms,
                   false);
    if (lim->quota)
        header_set(&h, "quota", lim->quota, d->used_quota, SL_MAX(d->quota_reset_ms, 0), false);
    if (lim->budget)
        header_set(&h, "budget", lim->budget, d->budget.used, SL_MAX(d->budget.reset_ms, 0),
                   true);
    if (lim->max_inflight) { /* no reset: a slot frees when a request ends */
        PUT_LIT(&h, "x-ratelimit-limit-inflight: ");
        put_int(&h, lim->max_inflight);
        PUT_LIT(&h, "\r\nx-ratelimit-remaining-inflight: ");
        put_int(&h, SL_MAX(lim->max_inflight - d->used_inflight, 0));
        PUT_LIT(&h, "\r\n");
    }
    sl_buf_append(out, h.text, h.len);
}
