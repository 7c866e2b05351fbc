/* libFuzzer target: bytes from Redis as the limiter reads them: hiredis's
 * RESP reader building its replies from sluice's reply pool (redis_reply.h),
 * then the limit script's decisions read out of them (limit_redis.h). What
 * must hold: the pool builds the same replies as hiredis's own allocator,
 * fed in pieces, except that it refuses an array too large (REPLY_ARRAY_MAX)
 * where hiredis's own would try to allocate it; every node goes back to the
 * pool; a decision read from any reply names a dimension sluice knows. */
#include <hiredis/hiredis.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/limit_redis.h"
#include "sluice/log.h"
#include "sluice/redis_reply.h"
#include "../unit/reply_same.h"

static void decisions(const redisReply *r)
{
    struct lim_decision d;
    if (lim_redis_read_decision(r, &d))
        FUZZ_ASSERT((unsigned)d.dim <= LIM_DIM_LAST);
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            decisions(r->element[i]);
}

static struct reply_pool *pool;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(LOG_OFF);
    if (!pool)
        pool = reply_pool_new();
    redisReader *ours = redisReaderCreate(), *theirs = redisReaderCreate();
    reply_pool_attach(pool, ours);
    size_t pos = 0, piece = 1;
    bool failed_ours = false, failed_theirs = false;
    while (pos < size && !failed_ours && !failed_theirs) {
        size_t n = piece < size - pos ? piece : size - pos;
        piece = piece * 3 % 67 + 1;
        failed_ours = redisReaderFeed(ours, (const char *)data + pos, n) != REDIS_OK;
        failed_theirs = redisReaderFeed(theirs, (const char *)data + pos, n) != REDIS_OK;
        pos += n;
        for (;;) {
            void *a = NULL, *b = NULL;
            size_t refused = reply_pool_refused(pool);
            failed_ours = failed_ours || redisReaderGetReply(ours, &a) != REDIS_OK;
            if (reply_pool_refused(pool) != refused) { /* an array too large: ours fails, */
                FUZZ_ASSERT(failed_ours && !a);    /* and hiredis's own is not asked to */
                failed_theirs = true;                /* allocate it (it might not fail) */
                break;
            }
            failed_theirs = failed_theirs || redisReaderGetReply(theirs, &b) != REDIS_OK;
            FUZZ_ASSERT(failed_ours == failed_theirs);
            FUZZ_ASSERT(!a == !b);
            if (a) {
                FUZZ_ASSERT(same(a, b));
                decisions(a);
                ours->fn->freeObject(a);
                freeReplyObject(b);
            }
            if (!a || failed_ours)
                break;
        }
    }
    redisReaderFree(ours);
    redisReaderFree(theirs);
    FUZZ_ASSERT(reply_pool_live(pool) == 0);
    return 0;
}
