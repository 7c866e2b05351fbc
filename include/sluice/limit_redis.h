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

#endif
