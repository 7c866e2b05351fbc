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

/* The parsers of what Redis tells the client, exposed for the fuzz target:
 * one element of CLUSTER SLOTS ([start, end, [ip, port, id], replicas...];
 * an empty ip is the asked node's), SENTINEL get-master-addr-by-name's
 * [ip, port], a +switch-master message ("NAME old-ip old-port new-ip
 * new-port") for master, and a MOVED or ASK error ("MOVED 3999
 * 127.0.0.1:6381"). False for anything else. */
struct redisReply;
struct redis_host;
bool rcli_slot_range(const struct redisReply *r, const char *asked, unsigned *from, unsigned *to,
                     struct redis_host *master);
bool rcli_master_addr(const struct redisReply *rep, struct redis_host *addr);
bool rcli_parse_switch(const char *msg, const char *master, struct redis_host *to);
bool rcli_parse_redirect(const char *err, unsigned *slot, struct redis_host *h);

/* A call on c was given up (timeout): c is dropped and made again. */
void rcli_drop(struct rcli *cli, struct rconn *c);

/* Messages of channel on a connection of their own, resubscribed after
 * every reconnect (the caller catches up on what it missed). */
void rcli_subscribe(struct rcli *cli, const char *channel, rconn_push_cb cb, void *arg);

#endif
