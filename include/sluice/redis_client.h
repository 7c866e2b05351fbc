/* The Redis of the limits in whichever form [redis] url names: one server,
 * the master a Sentinel names (followed on failover, never a replica), or a
 * Redis Cluster's slot owners (the slot map read from the cluster, MOVED
 * and ASK followed). It owns the connections (redis_conn.h), reconnects
 * with backoff, and says when Redis is down and back; its owner (the Redis
 * limiter) writes the commands and reads the replies. One per worker. */
#ifndef SLUICE_REDIS_CLIENT_H
#define SLUICE_REDIS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/redis_conn.h"

struct event_base;
struct redis_url;
struct rcli;

struct rcli_opts {
    const struct redis_url *url;
    struct ssl_ctx_st *tls; /* rediss: the client context (tls_client_new); referenced */
    int64_t timeout_ms;     /* [redis] timeout: connecting takes up to max(it, 1 s) */
    int worker_id;          /* for the log */
    struct reply_pool *replies;
    /* A data connection is up: queue what must go before any caller's
     * command on it (SCRIPT LOAD, TIME). */
    void (*prepare)(struct rconn *c, void *arg);
    void *arg;
};

struct rcli *rcli_new(struct event_base *base, const struct rcli_opts *o);
void rcli_free(struct rcli *cli);

/* Up: a master is connected (for a cluster: the slot map is known). */
bool rcli_up(const struct rcli *cli);

/* The connection to send a command on whose keys share the hash tag of
 * key (len bytes), or NULL while the server that owns it is not up. */
struct rconn *rcli_conn(struct rcli *cli, const char *key, size_t len);

/* The Redis Cluster slot of a key: CRC16 of its hash tag, mod 16384. */
unsigned rcli_slot(const char *key, size_t len);

/* What an error reply asks of the caller. */
enum rcli_redirect {
    RCLI_NONE,  /* an error of the command: fail it */
    RCLI_RETRY, /* MOVED (the map is updated), or the master changed: send again on *to */
    RCLI_ASK,   /* ASK: send ASKING then the command on *to, once */
};
enum rcli_redirect rcli_redirected(struct rcli *cli, struct rconn *from, const char *err,
                                   struct rconn **to);

/* A call on c was given up (timeout): c is dropped and made again. */
void rcli_drop(struct rcli *cli, struct rconn *c);

/* Messages of channel on a connection of their own, resubscribed after
 * every reconnect (the caller catches up on what it missed). */
void rcli_subscribe(struct rcli *cli, const char *channel, rconn_push_cb cb, void *arg);

#endif
