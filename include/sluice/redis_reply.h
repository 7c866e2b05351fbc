/* hiredis reply objects from a free list. hiredis's own reader callocs every
 * integer, string and array of a reply and frees each after the callback: 16
 * objects per admission. A reply pool hands out the same redisReply layout
 * (hiredis itself reads type and str of a spontaneous error) from nodes kept
 * for reuse, with short strings and small arrays inside the node. */
#ifndef SLUICE_REDIS_REPLY_H
#define SLUICE_REDIS_REPLY_H

#include <hiredis/read.h>
#include <stddef.h>

struct reply_pool;

/* An array reply longer than this, or one that would take the arrays alive
 * past REPLY_ELEMS_MAX slots, is refused: the reader fails (the connection is
 * dropped) rather than allocate what a few header bytes ask for. sluice's
 * longest reply is an MGET of LIM_OWNERS_MAX owners. */
#define REPLY_ARRAY_MAX 65536
#define REPLY_ELEMS_MAX (1 << 20)

struct reply_pool *reply_pool_new(void);
/* Replies still alive keep the pool until the last one is freed. */
void reply_pool_free(struct reply_pool *p);
/* The reader builds its replies from the pool (and frees them into it). */
void reply_pool_attach(struct reply_pool *p, redisReader *reader);
/* Nodes kept for reuse, and nodes handed out and not yet freed. */
size_t reply_pool_spare(const struct reply_pool *p);
size_t reply_pool_live(const struct reply_pool *p);
/* Arrays refused as too large. */
size_t reply_pool_refused(const struct reply_pool *p);

#endif
