/* The limiter a worker calls: the shared limiter (Redis) when configured and
 * reachable, else what [redis] on_error says (the in-process windows, allow,
 * or deny); without [redis], the in-process windows. Each is called through
 * its operations table. Also the x-ratelimit-* headers. */
#include "sluice/limit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/limit_local.h"
#include "sluice/log.h"
#include "sluice/util.h"

atomic_ulong lim_degraded;

static struct lim_user user_of(const struct cfg_user_limits *u)
{
    return (struct lim_user){ .rpm = u->rpm,
                              .input_tpm = u->input_tpm,
                              .output_tpm = u->output_tpm,
                              .budget = u->budget,
                              .budget_period = u->budget_period,
                              .max_inflight = u->max_inflight };
}

/* spike_arrest's spacing: 60 s over the requests per minute (0: none). */
static int64_t spike_us(int64_t per_min)
{
    return per_min ? 60000000 / per_min : 0;
}

static struct lim_team team_of(const struct cfg_team *t)
{
    struct lim_team lt = { .rpm = t->rpm,
                           .input_tpm = t->input_tpm,
                           .output_tpm = t->output_tpm,
                           .budget = t->budget,
                           .budget_period = t->budget_period,
                           .max_inflight = t->max_inflight,
                           .spike_us = spike_us(t->spike_per_min),
                           .spike_burst = t->spike_burst };
    snprintf(lt.name, sizeof(lt.name), "%s", t->name);
    return lt;
}

struct lim_limits lim_limits_of(const struct cfg_key *k)
{
    return lim_limits_for(k, k->team);
}

struct lim_limits lim_limits_for(const struct cfg_key *k, const struct cfg_team *t)
{
    struct lim_limits lim = { .rpm = k->rpm,
                              .input_tpm = k->input_tpm,
                              .output_tpm = k->output_tpm,
                              .quota = k->quota,
                              .quota_period = k->quota_period,
                              .budget = k->budget,
                              .budget_period = k->budget_period,
                              .shadow = k->mode == KEY_MODE_SHADOW,
                              .max_inflight = k->max_inflight,
                              .spike_us = spike_us(k->spike_per_min),
                              .spike_burst = k->spike_burst,
                              .key_user = user_of(&k->users) };
    if (t) {
        lim.team = team_of(t);
        lim.team_user = user_of(&t->users);
    }
    return lim;
}

struct lim_limits lim_team_limits_of(const struct cfg_team *t)
{
    return (struct lim_limits){ .team = team_of(t) };
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

/* The answer of the limiter that decided; frees p. */
static void answered(const struct pending *p, const struct lim_decision *d)
{
    p->cb(d, p->arg);
    free(p->key);
    free((void *)p);
}

/* Asks a limiter what p asks; cb gets the answer (with p). */
static void ask(const struct lim_backend *b, struct pending *p, lim_answer cb)
{
    if (p->kind == P_PEEK)
        b->ops->peek(b->self, p->key, &p->lim, cb, p);
    else if (p->kind == P_COUNT)
        b->ops->count(b->self, p->key, &p->lim, p->counter, p->op, p->cost, cb, p);
    else
        b->ops->admit(b->self, p->key, &p->lim, p->cost, p->spend, cb, p);
}

static void local_answered(bool ok, const struct lim_decision *d, void *arg)
{
    (void)ok; /* the in-process windows always decide */
    answered(arg, d);
}

/* ---- what an outage admitted, carried to the shared limiter ---- */

#define DEBT_RETRY_MS 200 /* a failed carry is tried again after this */

struct debt {
    struct limiter *l;
    char *key;
    struct lim_limits lim;
    int64_t cost, spend;
};

struct lim_debts {
    struct debt *v;
    size_t head, n; /* a ring of LIM_DEBTS_MAX */
    unsigned long dropped;
    int64_t next_pay_ms; /* not before (a carry failed) */
};

/* Queues one debt (its key is taken); the oldest goes when the ring is full. */
static void debt_push(struct limiter *l, const struct debt *debt)
{
    if (!l->debts) {
        l->debts = sl_calloc(1, sizeof(*l->debts));
        l->debts->v = sl_calloc(LIM_DEBTS_MAX, sizeof(struct debt));
    }
    struct lim_debts *ds = l->debts;
    if (ds->n == LIM_DEBTS_MAX) {
        free(ds->v[ds->head].key);
        ds->head = (ds->head + 1) % LIM_DEBTS_MAX;
        ds->n--;
        if (ds->dropped++ == 0)
            log_warn("limits: more than %d admissions during the Redis outage; the oldest will "
                     "not be carried to Redis", LIM_DEBTS_MAX);
    }
    ds->v[(ds->head + ds->n++) % LIM_DEBTS_MAX] = *debt;
}

static void debt_add(struct limiter *l, const struct pending *p)
{
    struct debt d = { l, sl_strdup(p->key), p->lim, p->cost, p->spend };
    /* recorded, not decided: no slot is taken, and the record is made even past the limit */
    d.lim.shadow = true;
    d.lim.max_inflight = d.lim.team.max_inflight = 0;
    d.lim.key_user.max_inflight = d.lim.team_user.max_inflight = 0;
    debt_push(l, &d);
}

/* A debt carried, or back in the queue if the call failed (a Cluster whose
 * shard is still down while the others answer). */
static void debt_paid(bool ok, const struct lim_decision *d, void *arg)
{
    (void)d;
    struct debt *debt = arg;
    if (ok) {
        free(debt->key);
    } else {
        debt_push(debt->l, debt);
        debt->l->debts->next_pay_ms = sl_now_ms() + DEBT_RETRY_MS;
    }
    free(debt);
}

/* The shared limiter is back: every debt is sent, in order, in its batches,
 * ahead of the admission that found it back. False while a failed carry
 * waits to be tried again. */
static bool debts_pay(struct limiter *l)
{
    struct lim_debts *ds = l->debts;
    const struct lim_backend *b = &l->shared;
    if (sl_now_ms() < ds->next_pay_ms)
        return false;
    log_info("limits: Redis is back; carrying %zu admissions made in-process during the outage",
             ds->n);
    size_t n = ds->n;
    struct debt *all = sl_malloc(n * sizeof(*all));
    for (size_t i = 0; i < n; i++)
        all[i] = ds->v[(ds->head + i) % LIM_DEBTS_MAX];
    ds->head = ds->n = 0;
    ds->dropped = 0;
    for (size_t i = 0; i < n; i++) {
        struct debt *d = sl_malloc(sizeof(*d));
        *d = all[i];
        b->ops->admit(b->self, d->key, &d->lim, d->cost, d->spend, debt_paid, d);
    }
    free(all);
    return true;
}

size_t lim_debts_waiting(const struct limiter *l)
{
    return l->debts ? l->debts->n : 0;
}

void lim_debts_free(struct limiter *l)
{
    struct lim_debts *ds = l->debts;
    if (!ds)
        return;
    for (size_t i = 0; i < ds->n; i++)
        free(ds->v[(ds->head + i) % LIM_DEBTS_MAX].key);
    free(ds->v);
    free(ds);
    l->debts = NULL;
}

static void outage_answered(bool ok, const struct lim_decision *d, void *arg)
{
    struct pending *p = arg;
    if (ok && d->admitted && !d->unavailable)
        debt_add(p->l, p);
    answered(p, d);
}

/* The shared limiter is down or failed: apply on_error. Reads (peek, quota)
 * follow local; allow and deny apply to admissions. */
static void fallback(struct pending *p)
{
    if (p->kind == P_ADMIT)
        atomic_fetch_add(&lim_degraded, 1);
    if (p->l->on_error == REDIS_ON_ERROR_LOCAL)
        return ask(&p->l->local, p, p->kind == P_ADMIT ? outage_answered : local_answered);
    struct lim_decision d = { 0 };
    if (p->l->on_error == REDIS_ON_ERROR_ALLOW && p->kind == P_ADMIT) {
        d.admitted = true;
        d.where = LIM_NOWHERE;
    } else {
        d.unavailable = true;
        d.retry_ms = 1000;
    }
    answered(p, &d);
}

static void shared_answered(bool ok, const struct lim_decision *d, void *arg)
{
    struct pending *p = arg;
    if (!ok)
        return fallback(p);
    struct lim_decision copy = *d;
    bool admitted = d->admitted && p->kind == P_ADMIT;
    copy.input_reserved = admitted ? p->cost : 0;
    copy.spend_reserved = admitted ? p->spend : 0;
    if (p->l->on_error == REDIS_ON_ERROR_LOCAL && admitted)
        lim_local_seed(p->l->local.self, p->key, &p->lim, d); /* where an outage starts from */
    answered(p, &copy);
}

bool lim_shared_configured(const struct limiter *l)
{
    return l->shared.ops != NULL;
}

bool lim_shared_up(const struct limiter *l)
{
    return l->shared.ops && l->shared.ops->up(l->shared.self);
}

/* The shared limiter if configured and up, else in-process or on_error. */
static void dispatch(struct pending *p)
{
    struct limiter *l = p->l;
    if (!l->shared.ops)
        return ask(&l->local, p, local_answered);
    if (l->shared.ops->up(l->shared.self)) {
        /* Redis must not decide before it has what the outage admitted */
        if (l->debts && l->debts->n && !debts_pay(l))
            return fallback(p);
        return ask(&l->shared, p, shared_answered);
    }
    fallback(p);
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

/* Where the owner records live: Redis when configured (up or not), else the process. */
static const struct lim_backend *owners_home(const struct limiter *l)
{
    return l->shared.ops ? &l->shared : &l->local;
}

void lim_owners(struct limiter *l, const char *const *ids, int n, lim_owners_cb cb, void *arg)
{
    const struct lim_backend *b = owners_home(l);
    if (!b->ops->up(b->self))
        return cb(false, NULL, arg);
    b->ops->owners(b->self, ids, n, cb, arg);
}

void lim_own_then(struct limiter *l, const char *id, const char *owner, int64_t ttl_s,
                  lim_done_cb done, void *arg)
{
    const struct lim_backend *b = owners_home(l);
    if (!b->ops->up(b->self)) {
        log_warn("redis is down: the owner record of %s was not %s", id, owner ? "made" : "removed");
        if (done)
            done(false, arg);
        return;
    }
    b->ops->own(b->self, id, owner, ttl_s, done, arg);
}

void lim_command(struct limiter *l, int argc, const char **argv, const size_t *lens,
                 lim_reply_cb cb, void *arg)
{
    const struct lim_backend *b = &l->shared;
    if (!b->ops || !b->ops->command || !b->ops->up(b->self))
        return cb(false, NULL, arg);
    b->ops->command(b->self, argc, argv, lens, cb, arg);
}

void lim_subscribe(struct limiter *l, const char *channel, lim_reply_cb cb, void *arg)
{
    const struct lim_backend *b = &l->shared;
    if (b->ops && b->ops->subscribe)
        b->ops->subscribe(b->self, channel, cb, arg);
}

void lim_own(struct limiter *l, const char *id, const char *owner, int64_t ttl_s)
{
    lim_own_then(l, id, owner, ttl_s, NULL, NULL);
}

/* The limiter that recorded an admission (its ticket's `where`), or NULL. */
static const struct lim_backend *recorded_by(const struct limiter *l, const struct lim_decision *t)
{
    if (l->local.ops && t->where == l->local.ops->where)
        return &l->local;
    if (l->shared.ops && t->where == l->shared.ops->where)
        return &l->shared;
    return NULL;
}

void lim_settle(struct limiter *l, const struct lim_decision *t, const char *key,
                const struct lim_limits *lim, const struct lim_usage *u)
{
    if (!t->admitted || (!u->input_delta && !u->output && !u->release && !u->quota_delta &&
                         !u->spend_delta && !t->lease))
        return;
    const struct lim_backend *b = recorded_by(l, t);
    if (b)
        b->ops->settle(b->self, key, lim, t, u);
}

void lim_renew(struct limiter *l, const struct lim_decision *t, const char *key,
               const struct lim_limits *lim)
{
    const struct lim_backend *b = t->admitted && t->lease ? recorded_by(l, t) : NULL;
    if (b && b->ops->renew)
        b->ops->renew(b->self, key, lim, t);
}

/* The x-ratelimit header lines are written into one stack buffer, then
 * appended at once: they go on every limited response. */
struct hline {
    char text[1400]; /* five sets of at most 181 bytes (Anthropic's: 3 of at most 220),
                        and the inflight pair (< 100) */
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

/* Anthropic's: anthropic-ratelimit-{what}-limit, -remaining, and -reset as
 * the RFC 3339 time the window has room again (at most 220 bytes). */
static void header_set_anthropic(struct hline *h, const char *what, int64_t limit, int64_t used,
                                 int64_t reset_ms, int64_t now_ms)
{
    size_t wlen = strlen(what);
    char at[21];
    const int64_t century_ms = 100LL * 366 * 86400 * 1000; /* a reset past it is "never" */
    sl_fmt_time((now_ms + SL_MIN(SL_MAX(reset_ms, 0), century_ms) + 999) / 1000, at);
    PUT_LIT(h, "anthropic-ratelimit-");
    put(h, what, wlen);
    PUT_LIT(h, "-limit: ");
    put_int(h, limit);
    PUT_LIT(h, "\r\nanthropic-ratelimit-");
    put(h, what, wlen);
    PUT_LIT(h, "-remaining: ");
    put_int(h, SL_MAX(limit - used, 0));
    PUT_LIT(h, "\r\nanthropic-ratelimit-");
    put(h, what, wlen);
    PUT_LIT(h, "-reset: ");
    put(h, at, strlen(at));
    PUT_LIT(h, "\r\n");
}

void lim_headers(const struct lim_decision *d, const struct lim_limits *lim, bool anthropic,
                 struct sl_buf *out)
{
    if (!d->admitted || d->where == LIM_NOWHERE)
        return;
    struct hline h;
    h.len = 0;
    if (anthropic) {
        int64_t now_ms = sl_wall_us() / 1000;
        if (lim->rpm)
            header_set_anthropic(&h, "requests", lim->rpm, d->used_requests,
                                 d->reset_requests_ms, now_ms);
        if (lim->input_tpm)
            header_set_anthropic(&h, "input-tokens", lim->input_tpm, d->used_input,
                                 d->reset_input_ms, now_ms);
        if (lim->output_tpm)
            header_set_anthropic(&h, "output-tokens", lim->output_tpm, d->used_output,
                                 d->reset_output_ms, now_ms);
    } else {
        if (lim->rpm)
            header_set(&h, "requests", lim->rpm, d->used_requests, d->reset_requests_ms, false);
        if (lim->input_tpm)
            header_set(&h, "tokens", lim->input_tpm, d->used_input, d->reset_input_ms, false);
        if (lim->output_tpm)
            header_set(&h, "output-tokens", lim->output_tpm, d->used_output,
                       d->reset_output_ms, false);
    }
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
