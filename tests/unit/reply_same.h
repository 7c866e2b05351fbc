/* Whether two hiredis replies are equal, deeply: the reply pool's against
 * hiredis's own (test_redis_reply.c and tests/fuzz/fuzz_resp.c). */
#ifndef SLUICE_TEST_REPLY_SAME_H
#define SLUICE_TEST_REPLY_SAME_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <string.h>

static bool same(const redisReply *a, const redisReply *b)
{
    if (!a || !b || a->type != b->type)
        return false;
    switch (a->type) {
    case REDIS_REPLY_INTEGER:
        return a->integer == b->integer;
    case REDIS_REPLY_NIL:
        return true;
    case REDIS_REPLY_ARRAY:
        if (a->elements != b->elements)
            return false;
        for (size_t i = 0; i < a->elements; i++)
            if (!same(a->element[i], b->element[i]))
                return false;
        return true;
    default:
        return a->len == b->len && memcmp(a->str, b->str, a->len) == 0 && a->str[a->len] == '\0';
    }
}

#endif
