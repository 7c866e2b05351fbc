/* Reply pool: replies built from it equal hiredis's own for random RESP fed in
 * random pieces; nodes are reused; partial replies and a pool freed while
 * replies live are freed completely (ASan checks the leaks). */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "sluice/redis_reply.h"
#include "reply_same.h"
#include "sluice/util.h"

static void gen_bulk(struct sl_buf *b, size_t len)
{
    sl_buf_printf(b, "$%zu\r\n", len);
    for (size_t i = 0; i < len; i++) {
        char c = check_below(8) == 0 ? "\0\r\n\x80\xff"[check_below(5)] : (char)('a' + check_below(26));
        sl_buf_append(b, &c, 1);
    }
    sl_buf_appends(b, "\r\n");
}

/* One random RESP value; arrays nest up to depth 3 (hiredis allows 7). */
static void gen_value(struct sl_buf *b, int depth)
{
    switch (check_below(depth < 3 ? 8 : 6)) {
    case 0:
        sl_buf_printf(b, ":%lld\r\n", (long long)check_rand());
        break;
    case 1:
        sl_buf_printf(b, ":%lld\r\n", (long long)check_below(100000) - 50000);
        break;
    case 2:
        gen_bulk(b, check_below(4) == 0 ? 40 + check_below(200) : check_below(50));
        break;
    case 3:
        sl_buf_appends(b, check_below(2) ? "$-1\r\n" : "*-1\r\n");
        break;
    case 4:
        sl_buf_appends(b, check_below(2) ? "+OK\r\n" : "+QUEUED status that is a little longer than forty\r\n");
        break;
    case 5:
        sl_buf_appends(b, check_below(2) ? "-NOSCRIPT No matching script. Please use EVAL.\r\n" : "-ERR x\r\n");
        break;
    default: {
        size_t n = check_below(4) == 0 ? check_below(40) : check_below(17);
        sl_buf_printf(b, "*%zu\r\n", n);
        for (size_t i = 0; i < n; i++)
            gen_value(b, depth + 1);
    }
    }
}

/* Feeds bytes in random pieces and collects the replies. */
static size_t read_all(redisReader *rd, const struct sl_buf *b, void **out, size_t max)
{
    size_t n = 0, pos = 0;
    while (pos < b->len) {
        size_t want = 1 + check_below(64); /* SL_MIN evaluates its arguments twice */
        size_t piece = SL_MIN(b->len - pos, want);
        redisReaderFeed(rd, b->data + pos, piece);
        pos += piece;
        void *reply;
        while (n < max && redisReaderGetReply(rd, &reply) == REDIS_OK && reply)
            out[n++] = reply;
    }
    return n;
}

static void test_same_as_hiredis(void)
{
    struct reply_pool *pool = reply_pool_new();
    redisReader *ours = redisReaderCreate();
    redisReader *theirs = redisReaderCreate();
    reply_pool_attach(pool, ours);
    int mismatches = 0;
    size_t total = 0;
    for (int round = 0; round < 300; round++) {
        struct sl_buf b = { 0 };
        size_t values = 1 + check_below(20);
        for (size_t i = 0; i < values; i++)
            gen_value(&b, 0);
        void *a[32], *c[32];
        size_t na = read_all(ours, &b, a, 32), nc = read_all(theirs, &b, c, 32);
        CHECK(na == values && nc == values);
        for (size_t i = 0; i < SL_MIN(na, nc); i++)
            if (!same(a[i], c[i]))
                mismatches++;
        total += na;
        for (size_t i = 0; i < na; i++)
            ours->fn->freeObject(a[i]);
        for (size_t i = 0; i < nc; i++)
            freeReplyObject(c[i]);
        CHECK(reply_pool_live(pool) == 0);
        sl_buf_free(&b);
    }
    CHECK(mismatches == 0);
    CHECK(total > 3000);
    CHECK(reply_pool_spare(pool) > 0 && reply_pool_spare(pool) <= 1024);
    redisReaderFree(ours);
    redisReaderFree(theirs);
    reply_pool_free(pool);
}

/* A decision's reply (16 elements) takes its nodes from the spare list once warm. */
static void test_nodes_reused(void)
{
    struct reply_pool *pool = reply_pool_new();
    redisReader *rd = redisReaderCreate();
    reply_pool_attach(pool, rd);
    struct sl_buf b = { 0 };
    sl_buf_appends(&b, "*16\r\n");
    for (int i = 0; i < 15; i++)
        sl_buf_printf(&b, ":%d\r\n", i * 1000 - 3);
    sl_buf_appends(&b, "$7\r\nm202611\r\n");
    for (int round = 0; round < 3; round++) {
        void *reply = NULL;
        redisReaderFeed(rd, b.data, b.len);
        CHECK(redisReaderGetReply(rd, &reply) == REDIS_OK && reply);
        redisReply *r = reply;
        CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 16);
        CHECK(r->element[14]->integer == 13997 && strcmp(r->element[15]->str, "m202611") == 0);
        CHECK(reply_pool_live(pool) == 17);
        CHECK(reply_pool_spare(pool) == 0); /* from round 1 on: all 17 reused */
        rd->fn->freeObject(reply);
        CHECK(reply_pool_live(pool) == 0 && reply_pool_spare(pool) == 17);
    }
    sl_buf_free(&b);
    redisReaderFree(rd);
    reply_pool_free(pool);
}

/* A reply cut off mid-array is freed with the reader; a pool freed while a
 * reply lives goes when that reply does. */
static void test_partial_and_late_free(void)
{
    struct reply_pool *pool = reply_pool_new();
    redisReader *rd = redisReaderCreate();
    reply_pool_attach(pool, rd);
    const char *partial = "*3\r\n:1\r\n*2\r\n$60\r\n0123456789012345678901234567890123456789"
                          "01234567890123456789\r\n";
    redisReaderFeed(rd, partial, strlen(partial));
    void *reply = NULL;
    CHECK(redisReaderGetReply(rd, &reply) == REDIS_OK && reply == NULL);
    CHECK(reply_pool_live(pool) == 4);
    redisReaderFree(rd);
    CHECK(reply_pool_live(pool) == 0);

    rd = redisReaderCreate();
    reply_pool_attach(pool, rd);
    const char *whole = "*2\r\n-ERR a long error message that does not fit in the node\r\n$2\r\nok\r\n";
    redisReaderFeed(rd, whole, strlen(whole));
    CHECK(redisReaderGetReply(rd, &reply) == REDIS_OK && reply);
    reply_pool_free(pool); /* the reply keeps the pool */
    redisReply *r = reply;
    CHECK(r->element[0]->type == REDIS_REPLY_ERROR && strncmp(r->element[0]->str, "ERR a long", 10) == 0);
    rd->fn->freeObject(reply); /* frees the pool too */
    redisReaderFree(rd);
}

/* A few header bytes cannot make gigabytes (fuzz_resp found *330685477):
 * an array past REPLY_ARRAY_MAX, or past REPLY_ELEMS_MAX slots alive, fails
 * the reader; what is alive stays counted right. */
static void test_huge_arrays_refused(void)
{
    struct reply_pool *pool = reply_pool_new();
    redisReader *rd = redisReaderCreate();
    reply_pool_attach(pool, rd);
    const char *huge = "*1\r\n*330685477\r\n";
    redisReaderFeed(rd, huge, strlen(huge));
    void *reply = NULL;
    CHECK(redisReaderGetReply(rd, &reply) == REDIS_ERR && !reply && reply_pool_refused(pool) == 1);
    redisReaderFree(rd);
    CHECK(reply_pool_live(pool) == 0);

    /* arrays each allowed, together past the total: the one past it is refused */
    rd = redisReaderCreate();
    reply_pool_attach(pool, rd);
    int fit = REPLY_ELEMS_MAX / REPLY_ARRAY_MAX;
    struct sl_buf b = { 0 };
    sl_buf_printf(&b, "*%d\r\n", fit + 1);
    for (int i = 0; i < fit; i++) {
        sl_buf_printf(&b, "*%d\r\n", REPLY_ARRAY_MAX);
        for (int j = 0; j < REPLY_ARRAY_MAX; j++)
            sl_buf_append(&b, ":1\r\n", 4);
    }
    sl_buf_printf(&b, "*%d\r\n", REPLY_ARRAY_MAX);
    redisReaderFeed(rd, b.data, b.len);
    CHECK(redisReaderGetReply(rd, &reply) == REDIS_ERR && !reply && reply_pool_refused(pool) == 2);
    redisReaderFree(rd);
    CHECK(reply_pool_live(pool) == 0);
    sl_buf_free(&b);
    /* and once they are freed, the same arrays fit again */
    rd = redisReaderCreate();
    reply_pool_attach(pool, rd);
    const char *ok = "*3\r\n:1\r\n:2\r\n:3\r\n";
    redisReaderFeed(rd, ok, strlen(ok));
    CHECK(redisReaderGetReply(rd, &reply) == REDIS_OK && reply);
    rd->fn->freeObject(reply);
    redisReaderFree(rd);
    reply_pool_free(pool);
}

int main(void)
{
    test_same_as_hiredis();
    test_huge_arrays_refused();
    test_nodes_reused();
    test_partial_and_late_free();
    return check_done();
}
