/* The limiter's words, shared by the two limiters (limit_local.c keeps the
 * windows in-process, limit_redis.c in Redis) and by the facade a worker
 * calls (limit.h): limits, dimensions, decisions and settlements, periods,
 * the window's clock, leases, and the operations table each limiter fills.
 * Both implement the same bucketed window (docs/limits.md): one call on the
 * way in checks every dimension of key and team and reserves, all or
 * nothing; one on the way out records real usage. */
#ifndef SLUICE_LIMIT_CORE_H
#define SLUICE_LIMIT_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LIM_BUCKETS 60   /* buckets per window */
#define LIM_RING 64      /* ring slots: more than the 61 buckets a window can touch */

/* The limiter's dimensions, declared once: the code (also lua/limits.lua's),
 * the metric label (sluice_rate_limited_total{dimension}), what a refusal's
 * message calls it, whether it is the team's, and whether waiting
 * (queue_timeout) can fix a refusal on it: the windows and the slots, never a
 * spent quota or budget. */
#define LIM_DIMS(X)                                                                                \
    X(NONE, 0, "", "", false, false)                                                               \
    X(REQUESTS, 1, "requests", "requests per minute", false, true)                                 \
    X(INPUT, 2, "input_tokens", "input tokens per minute", false, true)                            \
    X(OUTPUT, 3, "output_tokens", "output tokens per minute", false, true)                         \
    X(QUOTA, 4, "quota", "quota", false, false)                                                    \
    X(BUDGET, 5, "budget", "budget", false, false)                                                 \
    X(TEAM_REQUESTS, 6, "team_requests", "requests per minute", true, true)                        \
    X(TEAM_INPUT, 7, "team_input_tokens", "input tokens per minute", true, true)                   \
    X(TEAM_OUTPUT, 8, "team_output_tokens", "output tokens per minute", true, true)                \
    X(TEAM_BUDGET, 9, "team_budget", "budget", true, false)                                        \
    X(INFLIGHT, 10, "inflight", "requests open at once", false, true)                              \
    X(TEAM_INFLIGHT, 11, "team_inflight", "requests open at once", true, true)                     \
    X(USER_REQUESTS, 12, "user_requests", "requests per minute", false, true)                      \
    X(USER_INPUT, 13, "user_input_tokens", "input tokens per minute", false, true)                 \
    X(USER_OUTPUT, 14, "user_output_tokens", "output tokens per minute", false, true)              \
    X(USER_BUDGET, 15, "user_budget", "budget", false, false)                                      \
    X(USER_INFLIGHT, 16, "user_inflight", "requests open at once", false, true)                    \
    X(TEAM_USER_REQUESTS, 17, "team_user_requests", "requests per minute", true, true)             \
    X(TEAM_USER_INPUT, 18, "team_user_input_tokens", "input tokens per minute", true, true)        \
    X(TEAM_USER_OUTPUT, 19, "team_user_output_tokens", "output tokens per minute", true, true)     \
    X(TEAM_USER_BUDGET, 20, "team_user_budget", "budget", true, false)                             \
    X(TEAM_USER_INFLIGHT, 21, "team_user_inflight", "requests open at once", true, true)            \
    X(SPIKE, 22, "spike_arrest", "spike arrest", false, true)                                      \
    X(TEAM_SPIKE, 23, "team_spike_arrest", "spike arrest", true, true)

enum lim_dim {
#define LIM_DIM_ENUM(name, code, label, text, team, waitable) LIM_DIM_##name = code,
    LIM_DIMS(LIM_DIM_ENUM)
#undef LIM_DIM_ENUM
};

#define LIM_DIM_LAST LIM_DIM_TEAM_SPIKE

struct lim_dim_info {
    const char *label, *text;
    bool team, waitable;
};
/* The row of LIM_DIMS for d. */
const struct lim_dim_info *lim_dim_info(enum lim_dim d);
/* Whether d is one of an end user's (user_*: of the key or of the team). */
bool lim_dim_user(enum lim_dim d);
/* The dimension of a counter's or a budget's refusal: money, not tokens. */
bool lim_dim_budget(enum lim_dim d);
/* How a refusal's message names a quota period (enum quota_period): "today
 * (UTC)", "this month (UTC)", ... */
const char *lim_period_text(int kind);
#define LIM_NAME 65 /* a key's or team's name and its NUL (CFG_NAME_MAX + 1) */
enum lim_where { LIM_NOWHERE, LIM_LOCAL, LIM_REDIS }; /* where an admission was recorded */

/* A team's limits; every key of the team counts against them too. */
struct lim_team {
    char name[LIM_NAME]; /* "" = the key has no team */
    int64_t rpm, input_tpm, output_tpm;
    int64_t budget; /* micro-dollars per period; 0 = none */
    int budget_period;
    int64_t max_inflight; /* 0 = no cap */
    int64_t spike_us, spike_burst; /* spike arrest: requests at least spike_us apart; 0 = none */
};

#define LIM_USER 129 /* an end user's id and its NUL (EU_MAX + 1) */

/* An end user's own limits (user_* of a key, or of a team): each user counts
 * alone, in the key's (or the team's) name. */
struct lim_user {
    int64_t rpm, input_tpm, output_tpm;
    int64_t budget; /* micro-dollars per period; 0 = none */
    int budget_period;
    int64_t max_inflight;
};

struct lim_limits {
    int64_t rpm, input_tpm, output_tpm; /* 0 = unlimited */
    int64_t quota;                      /* tokens per period; 0 = none */
    int quota_period;                   /* enum quota_period */
    int64_t budget;                     /* micro-dollars per period; 0 = none */
    int budget_period;
    bool shadow; /* count, but never refuse */
    int64_t max_inflight; /* requests open at once, across nodes; 0 = no cap */
    int64_t spike_us, spike_burst; /* spike arrest (a GCRA): at least spike_us apart, spike_burst
                                      ahead of that; 0 = none */
    struct lim_team team;
    char user[LIM_USER];      /* the request's end user; "" = none (then no user_* applies) */
    struct lim_user key_user; /* the key's user_* limits, per user of the key */
    struct lim_user team_user; /* the team's user_* limits, per user of the team */
};

/* Whether the limits count the end user per key (LIM_SCOPE_USER) or per team. */
enum lim_scope { LIM_SCOPE_USER = 2, LIM_SCOPE_TEAM_USER = 4 };
bool lim_user_scope(const struct lim_limits *lim, enum lim_scope s);
/* Whether an admission under lim takes a max_inflight slot (of any scope). */
bool lim_takes_slot(const struct lim_limits *lim);

#define LIM_PERIOD_ID 24 /* "d20419", "w20416", "m202611", "total" */

/* A counter per calendar period: a quota (tokens) or a budget (micro-dollars). */
struct lim_count {
    int64_t used;     /* in the current period, this request's reservation included */
    int64_t reset_ms; /* until the period ends; -1 for "total" */
    char period[LIM_PERIOD_ID];
};
enum lim_counter { LIM_QUOTA, LIM_BUDGET, LIM_TEAM_BUDGET, LIM_USER_BUDGET, LIM_TEAM_USER_BUDGET };

/* What one end user has used under one scope's limits (of the key, or of the team). */
struct lim_user_use {
    int64_t requests, input, output; /* in the window, this request included */
    int64_t inflight;                /* requests open, this one included */
    struct lim_count budget;
};

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
    struct lim_user_use user, team_user; /* the end user's, per key and per team */
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
/* A limiter's answer; ok=false when it could not decide (Redis failed or
 * timed out). */
typedef void (*lim_answer)(bool ok, const struct lim_decision *d, void *arg);

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

bool lim_unlimited(const struct lim_limits *lim);

/* Owners of stored resources (docs/http.md "Stored resources"): ok=false when
 * the limiter could not answer; owners[i] is the record of ids[i], NULL if
 * none. Both point into the caller's or the limiter's memory for the call only. */
typedef void (*lim_owners_cb)(bool ok, const char *const *owners, void *arg);
typedef void (*lim_done_cb)(bool ok, void *arg);
#define LIM_OWNERS_MAX 10000 /* ids in one lookup (a list of files holds up to 10,000) */

/* One limiter, as the facade (limit.h) calls it: the in-process windows
 * (lim_local_ops) or Redis (lim_redis_ops). `self` is the limiter's own
 * state. Answers may come before the call returns (in-process) or later
 * (Redis). */
/* A plain Redis command's reply (hiredis's, valid during the call), or
 * ok=false with reply NULL: not sent, an error reply, or no answer in time. */
struct redisReply;
typedef void (*lim_reply_cb)(bool ok, const struct redisReply *reply, void *arg);

struct lim_ops {
    enum lim_where where; /* what its decisions record, so settlement returns to it */
    bool (*up)(const void *self);
    void (*admit)(void *self, const char *key, const struct lim_limits *lim, int64_t cost,
                  int64_t spend, lim_answer cb, void *arg);
    /* The windows as they stand, recording nothing. */
    void (*peek)(void *self, const char *key, const struct lim_limits *lim, lim_answer cb,
                 void *arg);
    void (*count)(void *self, const char *key, const struct lim_limits *lim,
                  enum lim_counter which, enum lim_quota_op op, int64_t amount, lim_answer cb,
                  void *arg);
    void (*settle)(void *self, const char *key, const struct lim_limits *lim,
                   const struct lim_decision *ticket, const struct lim_usage *u);
    /* Extends the ticket's lease by lim_lease_ms() from now; NULL where a slot
     * dies with the process anyway. */
    void (*renew)(void *self, const char *key, const struct lim_limits *lim,
                  const struct lim_decision *ticket);
    /* The owner records of n ids. */
    void (*owners)(void *self, const char *const *ids, int n, lim_owners_cb cb, void *arg);
    /* Records id's owner (ttl_s 0: until removed), or removes it (owner NULL);
     * done (may be NULL) runs once it is written, ok=false if it was not. */
    void (*own)(void *self, const char *id, const char *owner, int64_t ttl_s, lim_done_cb done,
                void *arg);
    /* One plain command, with the limiter's deadline (Redis only: runtime
     * keys, keystore.h). */
    void (*command)(void *self, int argc, const char **argv, const size_t *lens, lim_reply_cb cb,
                    void *arg);
    /* Every message of channel to cb, on a connection of its own made again
     * after each loss (Redis only: runtime keys' changes). */
    void (*subscribe)(void *self, const char *channel, lim_reply_cb cb, void *arg);
};

#endif
