/* Rate limits per key: requests, input tokens and output tokens per sliding
 * window (60 s), a token quota and a money budget per calendar period, and
 * the same windows and budget once more for the key's team. Kept in Redis
 * (limit_redis.c, lua/) so all nodes share one set of counters, or
 * in-process (limit_local.c). Both implement the same bucketed window
 * (docs/limits.md): one call on the way in checks every dimension of key and
 * team and reserves, all or nothing; one on the way out records real usage. */
#ifndef SLUICE_LIMIT_H
#define SLUICE_LIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct cfg_redis;
struct sl_buf;

#define LIM_BUCKETS 60   /* buckets per window */
#define LIM_RING 64      /* ring slots: more than the 61 buckets a window can touch */

enum lim_dim {
    LIM_DIM_NONE = 0,
    LIM_DIM_REQUESTS = 1,
    LIM_DIM_INPUT = 2,
    LIM_DIM_OUTPUT = 3,
    LIM_DIM_QUOTA = 4,
    LIM_DIM_BUDGET = 5,
    LIM_DIM_TEAM_REQUESTS = 6,
    LIM_DIM_TEAM_INPUT = 7,
    LIM_DIM_TEAM_OUTPUT = 8,
    LIM_DIM_TEAM_BUDGET = 9,
    LIM_DIM_INFLIGHT = 10,      /* max_inflight: requests open at once */
    LIM_DIM_TEAM_INFLIGHT = 11,
};
#define LIM_NAME 65 /* a key's or team's name and its NUL (CFG_NAME_MAX + 1) */
enum lim_where { LIM_NOWHERE, LIM_LOCAL, LIM_REDIS }; /* where an admission was recorded */

/* A team's limits; every key of the team counts against them too. */
struct lim_team {
    char name[LIM_NAME]; /* "" = the key has no team */
    int64_t rpm, input_tpm, output_tpm;
    int64_t budget; /* micro-dollars per period; 0 = none */
    int budget_period;
    int64_t max_inflight; /* 0 = no cap */
};

struct lim_limits {
    int64_t rpm, input_tpm, output_tpm; /* 0 = unlimited */
    int64_t quota;                      /* tokens per period; 0 = none */
    int quota_period;                   /* enum quota_period */
    int64_t budget;                     /* micro-dollars per period; 0 = none */
    int budget_period;
    bool shadow; /* count, but never refuse */
    int64_t max_inflight; /* requests open at once, across nodes; 0 = no cap */
    struct lim_team team;
};

#define LIM_PERIOD_ID 24 /* "d20419", "w20416", "m202611", "total" */

/* A counter per calendar period: a quota (tokens) or a budget (micro-dollars). */
struct lim_count {
    int64_t used;     /* in the current period, this request's reservation included */
    int64_t reset_ms; /* until the period ends; -1 for "total" */
    char period[LIM_PERIOD_ID];
};
enum lim_counter { LIM_QUOTA, LIM_BUDGET, LIM_TEAM_BUDGET };

/* The answer to an admission, and the ticket its settlement needs. */
struct lim_decision {
    bool admitted; /* in shadow mode also when dim says what would have refused */
    bool unavailable; /* Redis unreachable and on_error = deny */
    enum lim_dim dim; /* the dimension that refused */
    int64_t limit, used, requested;
    int64_t retry_ms; /* when the refused request would fit; -1 = never */
    int64_t used_requests, used_input, used_output; /* in the window, this request included */
    int64_t reset_requests_ms, reset_input_ms, reset_output_ms;
    int64_t used_quota;     /* in the current period, this request's reservation included */
    int64_t quota_reset_ms; /* until the period ends; -1 for "total" */
    char period[LIM_PERIOD_ID];
    struct lim_count budget, team_budget;
    int64_t team_requests, team_input, team_output; /* the team's windows */
    enum lim_where where;
    int64_t bucket;         /* the admission's bucket */
    int64_t input_reserved; /* the estimate reserved */
    int64_t spend_reserved; /* micro-dollars reserved in the budgets */
    int64_t used_inflight, team_inflight; /* requests open, this one included */
    int64_t lease; /* the slot max_inflight gave this request (0: none): settlement frees it */
};

/* What settles an admitted request (lim_settle). */
struct lim_usage {
    int64_t input_delta; /* real prompt tokens minus the reservation */
    int64_t output;      /* completion tokens */
    bool release;        /* undo the request itself: it was never forwarded */
    int64_t quota_delta; /* tokens, to the admission's quota period */
    int64_t spend_delta; /* micro-dollars, to the admission's budget periods */
};

/* The counter `which` of a decision. */
struct lim_count lim_count_of(const struct lim_decision *d, enum lim_counter which);

typedef void (*lim_cb)(const struct lim_decision *d, void *arg);

/* Window length: 60 s, or SLUICE_WINDOW_MS for tests (docs/testing.md). */
int64_t lim_window_ms(void);
/* Seconds added to the clock for quota periods: SLUICE_CLOCK_OFFSET_S (tests). */
int64_t lim_clock_offset_s(void);
/* The current quota period's id and the ms until it ends (-1 for total). */
void lim_period(int kind, int64_t now_ms, char id[LIM_PERIOD_ID], int64_t *reset_ms);
/* The Unix second a period ends, from a decision's reset_ms and the wall clock (ms) now.
 * Periods end on whole seconds, so the sum is rounded to the nearest one: the decision
 * may have been made on another clock reading or on Redis. */
int64_t lim_period_end_s(int64_t reset_ms, int64_t wall_now_ms);

/* max_inflight slots are leases: in Redis each expires lease_ms after it was
 * taken or last renewed (lim_renew, every third of it while the request
 * runs), so the slots of a node that died free themselves. 30 s, or
 * SLUICE_LEASE_MS for tests (docs/testing.md). */
int64_t lim_lease_ms(void);
/* A new lease, unique within the process; lim_lease_name makes it unique
 * across nodes (a random node id and the number). */
int64_t lim_lease_new(void);
#define LIM_LEASE_NAME 40
void lim_lease_name(int64_t lease, char out[LIM_LEASE_NAME]);

/* Quota and budget operations of the admin API. */
enum lim_quota_op { LIM_QUOTA_READ, LIM_QUOTA_RESET, LIM_QUOTA_ADD };

/* ---- in-process windows, shared by all workers of a node ---- */
struct lim_local;
struct lim_local *lim_local_new(int64_t window_ms);
void lim_local_free(struct lim_local *l);
void lim_local_admit(struct lim_local *l, const char *key, const struct lim_limits *lim,
                     int64_t cost, int64_t spend, struct lim_decision *out);
/* The windows as they stand, recording nothing (used_*, reset_*). */
void lim_local_peek(struct lim_local *l, const char *key, const struct lim_limits *lim,
                    struct lim_decision *out);
void lim_local_settle(struct lim_local *l, const char *key, const struct lim_limits *lim,
                      const struct lim_decision *ticket, const struct lim_usage *u);
void lim_local_count(struct lim_local *l, const char *key, const struct lim_limits *lim,
                     enum lim_counter which, enum lim_quota_op op, int64_t amount,
                     struct lim_decision *out);
/* What Redis last reported for a key and its team (windows, quota, budgets):
 * local decisions while Redis is down start from it (on_error = local). */
void lim_local_seed(struct lim_local *l, const char *key, const struct lim_limits *lim,
                    const struct lim_decision *d);

/* ---- Redis, one connection per worker ---- */
struct lim_redis;
struct lim_redis *lim_redis_new(struct event_base *base, const struct cfg_redis *cfg,
                                int64_t window_ms, int worker_id);
void lim_redis_free(struct lim_redis *r);
bool lim_redis_up(const struct lim_redis *r);
/* cb gets ok=false when Redis failed or timed out. */
typedef void (*lim_redis_cb)(bool ok, const struct lim_decision *d, void *arg);
void lim_redis_admit(struct lim_redis *r, const char *key, const struct lim_limits *lim,
                     int64_t cost, int64_t spend, lim_redis_cb cb, void *arg);
void lim_redis_peek(struct lim_redis *r, const char *key, const struct lim_limits *lim,
                    lim_redis_cb cb, void *arg);
void lim_redis_settle(struct lim_redis *r, const char *key, const struct lim_limits *lim,
                      const struct lim_decision *ticket, const struct lim_usage *u);
/* Extends the ticket's lease by lease_ms from now. */
void lim_redis_renew(struct lim_redis *r, const char *key, const struct lim_limits *lim,
                     const struct lim_decision *ticket);
void lim_redis_count(struct lim_redis *r, const char *key, const struct lim_limits *lim,
                     enum lim_counter which, enum lim_quota_op op, int64_t amount,
                     lim_redis_cb cb, void *arg);

/* ---- the limiter a worker uses ---- */
struct limiter {
    struct lim_local *local; /* borrowed: node-wide */
    struct lim_redis *redis; /* NULL without [redis] */
    int on_error;            /* enum redis_on_error */
};

struct cfg_key;
struct cfg_team;
struct lim_limits lim_limits_of(const struct cfg_key *k);
/* The limits of a team alone (key name "", for the team's budget operations). */
struct lim_limits lim_team_limits_of(const struct cfg_team *t);
bool lim_unlimited(const struct lim_limits *lim);
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

/* x-ratelimit-* header lines for an admitted request (budget in USD). */
void lim_headers(const struct lim_decision *d, const struct lim_limits *lim, struct sl_buf *out);

/* Redis calls that failed or timed out, all workers. */
extern atomic_ulong lim_redis_errors;
/* Admissions decided without Redis while it was configured (on_error). */
extern atomic_ulong lim_degraded;

#endif
