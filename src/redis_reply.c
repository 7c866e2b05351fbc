/* Reply objects for hiredis's reader from a per-limiter free list (redis_reply.h). */
#include "sluice/redis_reply.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/util.h"

#define INLINE_TEXT 40  /* the period id and short errors fit */
#define INLINE_ELEMS 16 /* a decision is 16 elements */
#define SPARE_MAX 1024

struct node {
    redisReply r; /* first: hiredis and the callbacks see a redisReply */
    struct reply_pool *pool;
    struct node *next; /* in the free list */
    union {
        char text[INLINE_TEXT];
        redisReply *elems[INLINE_ELEMS];
    } in;
};

struct reply_pool {
    struct node *spare;
    size_t nspare, live;
    size_t elems;   /* array slots allocated outside the nodes, in live replies */
    size_t refused; /* arrays refused as too large */
    bool closed; /* reply_pool_free was called; the last live node frees it */
};

static void drop_spare(struct reply_pool *p)
{
    while (p->spare) {
        struct node *n = p->spare;
        p->spare = n->next;
        free(n);
    }
    p->nspare = 0;
}

static redisReply *node_new(const redisReadTask *task, int type)
{
    struct reply_pool *p = task->privdata;
    struct node *n = p->spare;
    if (n) {
        p->spare = n->next;
        p->nspare--;
    } else {
        n = sl_malloc(sizeof(*n));
        n->pool = p;
    }
    p->live++;
    memset(&n->r, 0, sizeof(n->r));
    n->r.type = type;
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = &n->r;
    }
    return &n->r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r = node_new(task, task->type);
    struct node *n = (struct node *)r;
    r->str = len < INLINE_TEXT ? n->in.text : sl_malloc(len + 1);
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}

static void *create_array(const redisReadTask *task, int elements)
{
    struct reply_pool *p = task->privdata;
    size_t count = elements > 0 ? (size_t)elements : 0;
    if (count > REPLY_ARRAY_MAX || (count > INLINE_ELEMS && p->elems + count > REPLY_ELEMS_MAX)) {
        p->refused++; /* a few header bytes must not make gigabytes: the reader fails */
        return NULL;
    }
    redisReply *r = node_new(task, REDIS_REPLY_ARRAY);
    struct node *n = (struct node *)r;
    r->elements = count;
    if (count > INLINE_ELEMS)
        p->elems += count;
    if (count) {
        r->element = count <= INLINE_ELEMS ? n->in.elems : sl_malloc(count * sizeof(redisReply *));
        memset(r->element, 0, count * sizeof(redisReply *)); /* a partial reply is freed too */
    }
    return r;
}

static void *create_integer(const redisReadTask *task, long long value)
{
    redisReply *r = node_new(task, REDIS_REPLY_INTEGER);
    r->integer = value;
    return r;
}

static void *create_nil(const redisReadTask *task)
{
    return node_new(task, REDIS_REPLY_NIL);
}

static void free_object(void *obj)
{
    if (!obj)
        return;
    struct node *n = obj;
    redisReply *r = &n->r;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++)
            free_object(r->element[i]);
        if (r->elements > INLINE_ELEMS) {
            n->pool->elems -= r->elements;
            free(r->element);
        }
    } else if (r->str && r->str != n->in.text) {
        free(r->str);
    }
    struct reply_pool *p = n->pool;
    p->live--;
    if (p->closed || p->nspare >= SPARE_MAX) {
        free(n);
        if (p->closed && !p->live)
            free(p);
        return;
    }
    n->next = p->spare;
    p->spare = n;
    p->nspare++;
}

static redisReplyObjectFunctions functions = { create_string, create_array, create_integer,
                                               create_nil, free_object };

struct reply_pool *reply_pool_new(void)
{
    return sl_calloc(1, sizeof(struct reply_pool));
}

void reply_pool_free(struct reply_pool *p)
{
    if (!p)
        return;
    drop_spare(p);
    if (p->live)
        p->closed = true;
    else
        free(p);
}

void reply_pool_attach(struct reply_pool *p, redisReader *reader)
{
    reader->fn = &functions;
    reader->privdata = p;
}

size_t reply_pool_spare(const struct reply_pool *p)
{
    return p->nspare;
}

size_t reply_pool_live(const struct reply_pool *p)
{
    return p->live;
}

size_t reply_pool_refused(const struct reply_pool *p)
{
    return p->refused;
}
