/* The in-process limiter: the windows, quotas, budgets and slots of one
 * node, shared by all its workers under a lock. It decides alone without
 * [redis], and while Redis is down with on_error = local (seeded from what
 * Redis last reported). */
#ifndef SLUICE_LIMIT_LOCAL_H
#define SLUICE_LIMIT_LOCAL_H

#include <stddef.h>

#include "sluice/limit_core.h"

struct lim_local;
struct lim_local *lim_local_new(int64_t window_ms);
void lim_local_free(struct lim_local *l);
/* Owner records kept in the process at most (LIM_LOCAL_OWNERS_MAX; tests
 * lower it): past it, expired ones are swept, then new records are dropped
 * with a warning rather than let memory grow without end. */
#define LIM_LOCAL_OWNERS_MAX (1 << 20)
void lim_local_owners_max(struct lim_local *l, size_t max);
/* End users counted in the process at most (LIM_LOCAL_USERS_MAX; tests lower
 * it): at it, idle users' entries are dropped (nothing in their windows, no
 * slot, no spend); if none is, a new user's request is not admitted (the
 * decision is `unavailable`), with a warning, rather than counted nowhere. */
#define LIM_LOCAL_USERS_MAX (1 << 20)
void lim_local_users_max(struct lim_local *l, size_t max);
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

/* The operations table over a struct lim_local (self). */
extern const struct lim_ops lim_local_ops;

#endif
