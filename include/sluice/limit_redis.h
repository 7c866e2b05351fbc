/* The limiter in Redis, one connection per worker: lua/limits.lua decides
 * every dimension of a key and its team in one atomic call, so all nodes
 * share one set of counters. Calls of one loop pass for one key travel in
 * one script call. */
#ifndef SLUICE_LIMIT_REDIS_H
#define SLUICE_LIMIT_REDIS_H

#include <stdatomic.h>

#include "sluice/limit_core.h"

struct event_base;
struct cfg_redis;

struct lim_redis;
struct lim_redis *lim_redis_new(struct event_base *base, const struct cfg_redis *cfg,
                                int64_t window_ms, int worker_id);
void lim_redis_free(struct lim_redis *r);
bool lim_redis_up(const struct lim_redis *r);
/* Everything else (admit, peek, count, settle, renew) through the
 * operations table over a struct lim_redis (self). */
extern const struct lim_ops lim_redis_ops;

/* Reads one decision of the script's reply (limit_script.h: REPLY, or
 * COMPACT_REPLY for a key without budget or team); false if the reply is not
 * one. Exposed for the RESP fuzz target. */
struct redisReply;
bool lim_redis_read_decision(const struct redisReply *rep, struct lim_decision *d);

/* Redis calls that failed or timed out, all workers. */
extern atomic_ulong lim_redis_errors;

/* Every script call's end, all workers (sluice_redis_calls_total{result}):
 * answered, an error, timed out, no connection to send it on; and the
 * redirections a Cluster's calls followed on the way. */
enum lim_redis_result { LR_OK, LR_ERROR, LR_TIMEOUT, LR_DOWN, LR_MOVED, LR_ASK, LR_TRYAGAIN, LR_N };
extern const char *const lim_redis_result_names[LR_N];
extern atomic_ulong lim_redis_calls[LR_N];
/* sluice_redis_call_duration_seconds: answered calls by upper bound (the
 * last: above every bound), and the sum of their times in microseconds. */
#define LR_BUCKETS 8
extern const double lim_redis_bounds[LR_BUCKETS];
extern atomic_ulong lim_redis_call_buckets[LR_BUCKETS + 1];
extern atomic_ulong lim_redis_call_us;

#endif
