/* The limiter a worker calls: rate limits per key (requests, input and
 * output tokens per sliding window), a token quota and a money budget per
 * calendar period, max_inflight slots, and the same once more for the key's
 * team, decided in one call. The shared limiter (Redis) when configured and
 * reachable, else what [redis] on_error says (the in-process windows, allow,
 * or deny); without [redis], the in-process windows. Both sit behind one
 * operations table (limit_core.h). Also the x-ratelimit-* headers. */
#ifndef SLUICE_LIMIT_H
#define SLUICE_LIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/limit_core.h"

struct sl_buf;
struct cfg_key;
struct cfg_team;

/* A limiter and its state. */
struct lim_backend {
    const struct lim_ops *ops; /* NULL: none */
    void *self;
};

struct lim_debts;

struct limiter {
    struct lim_backend local;  /* the node's in-process windows (self borrowed: node-wide) */
    struct lim_backend shared; /* the one all nodes share (Redis); ops NULL without [redis] */
    int on_error;              /* enum redis_on_error: what to do while shared is down */
    struct lim_debts *debts;   /* admitted in-process while shared was down (on_error = local) */
};

/* What an outage admitted in-process is carried to the shared limiter when
 * it is back: each admission recorded there (as shadow mode records, even
 * past the limit), so the window after an outage counts what the node let
 * through during it. At most LIM_DEBTS_MAX per worker; the oldest beyond
 * that are dropped. */
#define LIM_DEBTS_MAX 65536
void lim_debts_free(struct limiter *l);
/* Admissions waiting to be carried. */
size_t lim_debts_waiting(const struct limiter *l);

/* Whether a shared limiter is configured, and whether it answers. */
bool lim_shared_configured(const struct limiter *l);
bool lim_shared_up(const struct limiter *l);

struct lim_limits lim_limits_of(const struct cfg_key *k);
/* The same, counted in team t instead of the key's own (a JWT's team; NULL none). */
struct lim_limits lim_limits_for(const struct cfg_key *k, const struct cfg_team *t);
/* The limits of a team alone (key name "", for the team's budget operations). */
struct lim_limits lim_team_limits_of(const struct cfg_team *t);
/* Decides: `cost` prompt tokens and `spend` micro-dollars reserved; cb runs
 * before return when no Redis round trip is needed. */
void lim_admit(struct limiter *l, const char *key, const struct lim_limits *lim, int64_t cost,
               int64_t spend, lim_cb cb, void *arg);
/* Records the real usage of an admitted request: input corrected by
 * input_delta, output added, and with release the request itself undone;
 * the quota and budgets of the admission's periods changed by the deltas. */
void lim_settle(struct limiter *l, const struct lim_decision *ticket, const char *key,
                const struct lim_limits *lim, const struct lim_usage *u);
/* Keeps an open request's max_inflight slot (ticket->lease) alive: a request
 * calls it every lim_lease_ms() / 3 while it runs. Redis only (an in-process
 * slot dies with the process). */
void lim_renew(struct limiter *l, const struct lim_decision *ticket, const char *key,
               const struct lim_limits *lim);
/* Reads, resets or adds to a counter of the current period: the key's quota
 * or budget, or (LIM_TEAM_BUDGET) its team's budget. The answer has it in
 * lim_count_of(d, which) (or unavailable). */
void lim_count(struct limiter *l, const char *key, const struct lim_limits *lim,
               enum lim_counter which, enum lim_quota_op op, int64_t amount, lim_cb cb, void *arg);

/* The key's windows as they stand, from where admissions are decided now
 * (Redis, or in-process when Redis is down and on_error = local). */
void lim_peek(struct limiter *l, const char *key, const struct lim_limits *lim, lim_cb cb,
              void *arg);

/* Stored resources' owner records, where the limits live (Redis, or the
 * process). A lookup while Redis is configured but down fails (ok=false):
 * ownership is never guessed. A record made then is lost (logged). */
void lim_owners(struct limiter *l, const char *const *ids, int n, lim_owners_cb cb, void *arg);
void lim_own(struct limiter *l, const char *id, const char *owner, int64_t ttl_s);
/* The same, and done runs once the record is written (ok=false if it was not). */
void lim_own_then(struct limiter *l, const char *id, const char *owner, int64_t ttl_s,
                  lim_done_cb done, void *arg);

/* One plain command to the shared limiter's Redis (runtime keys,
 * keystore.h): cb at the reply, or with ok=false at once without [redis] or
 * while it is down, or at the limiter's timeout. */
void lim_command(struct limiter *l, int argc, const char **argv, const size_t *lens,
                 lim_reply_cb cb, void *arg);
/* Messages of a Redis channel to cb (ok true, the message), on a
 * connection of its own; nothing without [redis]. */
void lim_subscribe(struct limiter *l, const char *channel, lim_reply_cb cb, void *arg);

/* x-ratelimit-* header lines for an admitted request (budget in USD); for
 * an Anthropic caller, its rpm, input_tpm and output_tpm as Anthropic's
 * anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}
 * (reset: an RFC 3339 time), the rest as x-ratelimit-*. */
void lim_headers(const struct lim_decision *d, const struct lim_limits *lim, bool anthropic,
                 struct sl_buf *out);

/* Admissions decided without Redis while it was configured (on_error). */
extern atomic_ulong lim_degraded;

#endif
