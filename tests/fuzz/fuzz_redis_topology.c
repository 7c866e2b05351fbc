/* libFuzzer target: what Redis servers tell the client about where the data
 * lives, as redis_client.c reads it: CLUSTER SLOTS and a sentinel's master
 * address from RESP bytes (hiredis's reader), a +switch-master message, a
 * MOVED or ASK error; and the [redis] url the same bytes would be. What must
 * hold: whatever is taken names a slot range within 0..16383, a port within
 * 1..65535 and a host name that is not empty and fits; anything else is
 * refused, never half read. */
#include <hiredis/hiredis.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/log.h"
#include "sluice/redis_client.h"
#include "sluice/redis_reply.h"
#include "sluice/redis_url.h"

static void host_ok(const struct redis_host *h)
{
    FUZZ_ASSERT(h->port >= 1 && h->port <= 65535);
    FUZZ_ASSERT(h->name[0] && memchr(h->name, '\0', sizeof(h->name)));
}

static void replies(const redisReply *r, int depth)
{
    struct redis_host h;
    unsigned from, to;
    if (rcli_master_addr(r, &h))
        host_ok(&h);
    if (r->type != REDIS_REPLY_ARRAY || depth > 4)
        return;
    for (size_t i = 0; i < r->elements; i++) {
        memset(&h, 0, sizeof(h));
        if (rcli_slot_range(r->element[i], "seed.example", &from, &to, &h)) {
            FUZZ_ASSERT(from <= to && to < 16384);
            host_ok(&h);
        }
        replies(r->element[i], depth + 1);
    }
}

static void url(const char *s)
{
    struct redis_url u;
    const char *why = NULL;
    if (!redis_url_parse(s, &u, &why)) {
        FUZZ_ASSERT(why && *why);
        return;
    }
    FUZZ_ASSERT(u.nhosts >= 0 && u.nhosts <= REDIS_URL_HOSTS);
    FUZZ_ASSERT(u.nhosts > 0 || u.path[0]);
    for (int i = 0; i < u.nhosts; i++)
        host_ok(&u.hosts[i]);
    FUZZ_ASSERT(u.form != REDIS_SENTINEL || u.master[0]);
    FUZZ_ASSERT(u.db >= 0 && u.db <= 1000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(LOG_OFF);
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    url(s);
    unsigned slot;
    struct redis_host h;
    if (rcli_parse_redirect(s, &slot, &h)) {
        FUZZ_ASSERT(slot < 16384);
        host_ok(&h);
    }
    if (rcli_parse_switch(s, "mymaster", &h))
        host_ok(&h);
    /* the client's connections read through the reply pool, as the limiter's:
     * a few header bytes cannot make it allocate gigabytes */
    static struct reply_pool *pool;
    if (!pool)
        pool = reply_pool_new();
    redisReader *reader = redisReaderCreate();
    reply_pool_attach(pool, reader);
    if (redisReaderFeed(reader, (const char *)data, size) == REDIS_OK) {
        void *reply = NULL;
        while (redisReaderGetReply(reader, &reply) == REDIS_OK && reply) {
            replies(reply, 0);
            reader->fn->freeObject(reply);
            reply = NULL;
        }
    }
    redisReaderFree(reader);
    FUZZ_ASSERT(reply_pool_live(pool) == 0);
    free(s);
    return 0;
}
