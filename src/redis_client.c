/* The Redis of the limits in its three forms (redis_client.h).
 *
 * Every data server is a node: an address, a connection, a backoff. One
 * server: node 0, reconnected with backoff. Sentinel: node 0 is wherever the
 * sentinels say the master is; it is asked again whenever node 0 is lost,
 * when a sentinel announces +switch-master, and when the server says it is
 * a replica (ROLE at connect, READONLY on a write). Cluster: a node per
 * master of the slot map (CLUSTER SLOTS from any node that answers), the
 * map read again when a MOVED arrives or a node is lost. */
#include "sluice/redis_client.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/log.h"
#include "sluice/redis_url.h"
#include "sluice/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define NODES_MAX 64
#define SLOTS 16384
#define REFRESH_MIN_MS 100
#define RETIRED_MAX 8 /* a cluster's map is read at most this often */

struct node {
    struct rcli *cli;
    struct redis_host addr;
    struct rconn *conn;
    bool up;
    int64_t backoff_ms;
    struct event *retry_ev;
};

struct rcli {
    struct event_base *base;
    struct redis_url url;
    struct ssl_ctx_st *tls;
    int64_t timeout_ms;
    int worker_id;
    struct reply_pool *replies;
    void (*prepare)(struct rconn *c, void *arg);
    void *arg;
    bool closing;
    bool reported_down;
    struct node *nodes[NODES_MAX];
    int nnodes;
    uint8_t slot_node[SLOTS]; /* cluster: index + 1 into nodes, 0 unknown */
    bool map_known;
    /* discovery: the sentinel asked for the master, or the node asked for the slot map */
    struct rconn *disc;
    int disc_i;
    int64_t disc_backoff_ms;
    struct event *disc_ev;
    int64_t last_refresh_ms;
    /* sentinel: the +switch-master subscription */
    struct rconn *watch;
    int watch_i;
    struct event *watch_ev;
    /* the owner's subscription */
    struct rconn *sub;
    char channel[128];
    rconn_push_cb sub_cb;
    void *sub_arg;
    struct event *sub_ev;
    /* connections given up on, still reading their late replies */
    struct rconn *retired[RETIRED_MAX];
    int nretired;
};

static int64_t backoff_next(int64_t *b)
{
    *b = *b ? SL_MIN(*b * 2, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
    return *b;
}

static void timer_in(struct event *ev, int64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(ev, &tv);
}

static const char *form_name(const struct rcli *cli)
{
    return cli->url.form == REDIS_SENTINEL ? "redis (sentinel)"
           : cli->url.form == REDIS_CLUSTER ? "redis (cluster)"
                                            : "redis";
}

static void report_down(struct rcli *cli, const char *where, enum rconn_err why, const char *detail)
{
    if (cli->reported_down)
        return;
    cli->reported_down = true;
    log_warn("worker %d: %s %s unreachable (%s%s%s); limits follow on_error until it is back",
             cli->worker_id, form_name(cli), where, rconn_err_name(why), detail ? ": " : "",
             detail ? detail : "");
}

static void sub_start(struct rcli *cli);

/* A data node is up: the owner's subscription follows it. */
static void report_up(struct rcli *cli, const char *where)
{
    if (!cli->sub)
        sub_start(cli);
    if (cli->reported_down || cli->worker_id == 0)
        log_info("worker %d: %s %s connected", cli->worker_id, form_name(cli), where);
    cli->reported_down = false;
}

static struct rconn_opts conn_opts(const struct rcli *cli, const struct redis_host *h, bool data)
{
    struct rconn_opts o = {
        .host = h->name,
        .port = h->port,
        .tls = cli->tls,
        .connect_timeout_ms = SL_MAX(cli->timeout_ms, 1000),
    };
    if (cli->url.path[0] && data)
        o.path = cli->url.path;
    if (data) { /* the sentinels take no credentials: they are the data nodes' */
        o.user = cli->url.user;
        o.password = cli->url.password;
        o.db = cli->url.db;
    }
    return o;
}

static void discover(struct rcli *cli);
static void discover_later(struct rcli *cli);

/* ---- data nodes ---- */

static void node_connect(struct node *n);

static void node_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct node *n = arg;
    if (n->cli->url.form == REDIS_SENTINEL)
        discover(n->cli); /* the master may have moved */
    else
        node_connect(n);
}

/* The server said what it is: a master may take the callers' commands. */
static void role_reply(struct rconn *c, struct redisReply *rep, void *arg)
{
    struct node *n = arg;
    if (!rep || n->conn != c)
        return;
    bool master = rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
                  rep->element[0]->type == REDIS_REPLY_STRING &&
                  strcmp(rep->element[0]->str, "master") == 0;
    if (!master) {
        log_warn("worker %d: redis %s is not a master; asking the sentinels again",
                 n->cli->worker_id, rconn_where(c));
        rconn_drop(c, RC_DROPPED);
        return;
    }
    n->up = true;
    n->backoff_ms = 0;
    report_up(n->cli, rconn_where(c));
}

static void node_state(struct rconn *c, bool up, enum rconn_err why, const char *detail, void *arg)
{
    struct node *n = arg;
    struct rcli *cli = n->cli;
    if (up) {
        if (cli->prepare)
            cli->prepare(c, cli->arg);
        if (cli->url.form == REDIS_SENTINEL) { /* writes never go to a replica */
            const char *argv[] = { "ROLE" };
            rconn_sendv(c, 1, argv, NULL, role_reply, n);
            return;
        }
        n->up = true;
        n->backoff_ms = 0;
        report_up(cli, rconn_where(c));
        return;
    }
    if (n->conn != c) { /* a retired connection, closed at last */
        for (int i = 0; i < cli->nretired; i++)
            if (cli->retired[i] == c)
                cli->retired[i] = cli->retired[--cli->nretired];
        rconn_free(c);
        return;
    }
    n->up = false;
    n->conn = NULL;
    rconn_free(c);
    if (cli->closing)
        return;
    report_down(cli, rconn_where(c), why, detail);
    timer_in(n->retry_ev, backoff_next(&n->backoff_ms));
    if (cli->url.form == REDIS_CLUSTER)
        discover_later(cli); /* a failover moves its slots */
}

static void node_connect(struct node *n)
{
    struct rcli *cli = n->cli;
    if (n->conn || cli->closing)
        return;
    struct rconn_opts o = conn_opts(cli, &n->addr, true);
    n->conn = rconn_new(cli->base, &o, cli->replies, node_state, NULL, n);
}

static struct node *node_new(struct rcli *cli, const struct redis_host *addr)
{
    struct node *n = sl_calloc(1, sizeof(*n));
    n->cli = cli;
    n->addr = *addr;
    n->retry_ev = evtimer_new(cli->base, node_retry_cb, n);
    return n;
}

static void node_free(struct node *n)
{
    if (!n)
        return;
    event_free(n->retry_ev);
    if (n->conn)
        rconn_free(n->conn);
    free(n);
}

/* Node 0 now at addr (a sentinel's answer): connected there, or left as is. */
static void master_at(struct rcli *cli, const struct redis_host *addr)
{
    struct node *n = cli->nodes[0];
    bool same = strcmp(n->addr.name, addr->name) == 0 && n->addr.port == addr->port;
    if (n->conn && same)
        return;
    if (!same && n->addr.name[0])
        log_info("worker %d: redis master moved from %s:%d to %s:%d", cli->worker_id,
                 n->addr.name, n->addr.port, addr->name, addr->port);
    if (n->conn) {
        struct rconn *old = n->conn;
        n->conn = NULL;
        n->up = false;
        rconn_free(old); /* its calls fail now; nothing of it is retried on the old master */
    }
    evtimer_del(n->retry_ev);
    n->addr = *addr;
    node_connect(n);
}

/* ---- discovery: a sentinel's master, or the cluster's slot map ---- */

static const struct redis_host *disc_host(const struct rcli *cli, int i)
{
    return &cli->url.hosts[i % cli->url.nhosts];
}

static void disc_done(struct rcli *cli, bool ok)
{
    struct rconn *c = cli->disc;
    cli->disc = NULL;
    if (c)
        rconn_free(c);
    if (ok) {
        cli->disc_backoff_ms = 0;
        return;
    }
    cli->disc_i++;
    if (cli->disc_i % cli->url.nhosts == 0) /* every host tried: wait */
        timer_in(cli->disc_ev, backoff_next(&cli->disc_backoff_ms));
    else
        event_active(cli->disc_ev, EV_TIMEOUT, 0);
}

static bool host_from(const redisReply *ip, const redisReply *port, const char *fallback,
                      struct redis_host *h)
{
    if (ip->type != REDIS_REPLY_STRING || ip->len >= sizeof(h->name) ||
        memchr(ip->str, '\0', ip->len)) /* a name cut short by a NUL is not the name */
        return false;
    int64_t p = 0;
    if (port->type == REDIS_REPLY_INTEGER)
        p = port->integer;
    else if (port->type != REDIS_REPLY_STRING || !sl_parse_int(port->str, &p))
        return false;
    if (p < 1 || p > 65535)
        return false;
    snprintf(h->name, sizeof(h->name), "%s", ip->len ? ip->str : fallback);
    h->port = (int)p;
    return h->name[0] != '\0';
}

bool rcli_master_addr(const struct redisReply *rep, struct redis_host *addr)
{
    return rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
           host_from(rep->element[0], rep->element[1], "", addr) && addr->name[0];
}

static void master_reply(struct rconn *c, struct redisReply *rep, void *arg)
{
    struct rcli *cli = arg;
    if (c != cli->disc)
        return;
    struct redis_host addr;
    if (!rep || !rcli_master_addr(rep, &addr)) {
        if (rep)
            log_warn("worker %d: sentinel %s does not know master %s", cli->worker_id,
                     rconn_where(c), cli->url.master);
        return disc_done(cli, false);
    }
    disc_done(cli, true);
    master_at(cli, &addr);
}

static struct node *node_at(struct rcli *cli, const struct redis_host *addr, bool add)
{
    for (int i = 0; i < cli->nnodes; i++) {
        struct node *n = cli->nodes[i];
        if (n->addr.port == addr->port && strcmp(n->addr.name, addr->name) == 0) {
            if (add && !n->conn && !evtimer_pending(n->retry_ev, NULL))
                node_connect(n); /* left when it owned no slot; named again */
            return n;
        }
    }
    if (!add || cli->nnodes == NODES_MAX)
        return NULL;
    struct node *n = node_new(cli, addr);
    cli->nodes[cli->nnodes++] = n;
    node_connect(n);
    return n;
}

static int node_index(const struct rcli *cli, const struct node *n)
{
    for (int i = 0; i < cli->nnodes; i++)
        if (cli->nodes[i] == n)
            return i;
    return -1;
}

bool rcli_slot_range(const struct redisReply *r, const char *asked, unsigned *from, unsigned *to,
                     struct redis_host *master)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_ARRAY || r->element[2]->elements < 2 ||
        !host_from(r->element[2]->element[0], r->element[2]->element[1], asked, master))
        return false;
    long long a = r->element[0]->integer, b = r->element[1]->integer;
    if (a < 0 || b >= SLOTS || a > b)
        return false;
    *from = (unsigned)a;
    *to = (unsigned)b;
    return true;
}

/* CLUSTER SLOTS: [[start, end, [ip, port, id], replicas…], …]. */
static bool read_slots(struct rcli *cli, const redisReply *rep, const char *asked)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0)
        return false;
    uint8_t map[SLOTS] = { 0 };
    for (size_t i = 0; i < rep->elements; i++) {
        struct redis_host addr;
        unsigned from, to;
        if (!rcli_slot_range(rep->element[i], asked, &from, &to, &addr))
            return false;
        struct node *n = node_at(cli, &addr, true);
        if (!n)
            return false;
        memset(map + from, node_index(cli, n) + 1, (size_t)(to - from + 1));
    }
    memcpy(cli->slot_node, map, sizeof(map));
    cli->map_known = true;
    /* a node that owns no slot now (a failed master, a removed one) is left alone */
    bool owns[NODES_MAX] = { false };
    for (int s = 0; s < SLOTS; s++)
        if (map[s])
            owns[map[s] - 1] = true;
    for (int i = 0; i < cli->nnodes; i++) {
        struct node *n = cli->nodes[i];
        if (owns[i])
            continue;
        evtimer_del(n->retry_ev);
        n->backoff_ms = 0;
        if (n->conn) {
            struct rconn *c = n->conn;
            n->conn = NULL;
            n->up = false;
            rconn_free(c);
        }
    }
    return true;
}

static void slots_reply(struct rconn *c, struct redisReply *rep, void *arg)
{
    struct rcli *cli = arg;
    if (c != cli->disc)
        return;
    char asked[256];
    snprintf(asked, sizeof(asked), "%s", disc_host(cli, cli->disc_i)->name);
    bool ok = rep && read_slots(cli, rep, asked);
    if (rep && !ok)
        log_warn("worker %d: redis %s gave no usable slot map%s%s", cli->worker_id,
                 rconn_where(c), rep->type == REDIS_REPLY_ERROR ? ": " : "",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "");
    disc_done(cli, ok);
}

static void disc_state(struct rconn *c, bool up, enum rconn_err why, const char *detail, void *arg)
{
    struct rcli *cli = arg;
    if (c != cli->disc)
        return;
    if (up) {
        if (cli->url.form == REDIS_SENTINEL) {
            const char *argv[] = { "SENTINEL", "get-master-addr-by-name", cli->url.master };
            rconn_sendv(c, 3, argv, NULL, master_reply, cli);
        } else {
            const char *argv[] = { "CLUSTER", "SLOTS" };
            rconn_sendv(c, 2, argv, NULL, slots_reply, cli);
        }
        return;
    }
    if (!rcli_up(cli)) /* a seed or sentinel down while Redis answers is not an outage */
        report_down(cli, rconn_where(c), why, detail);
    disc_done(cli, false);
}

/* Asks a sentinel, or a node of the cluster, in turn. */
static void discover(struct rcli *cli)
{
    if (cli->disc || cli->closing)
        return;
    evtimer_del(cli->disc_ev);
    cli->last_refresh_ms = sl_now_ms();
    const struct redis_host *h = disc_host(cli, cli->disc_i);
    /* a cluster's map from a node it already named, else from the seeds */
    struct rconn_opts o = conn_opts(cli, h, cli->url.form == REDIS_CLUSTER);
    cli->disc = rconn_new(cli->base, &o, cli->replies, disc_state, NULL, cli);
}

static void discover_later(struct rcli *cli)
{
    if (cli->disc || cli->closing || evtimer_pending(cli->disc_ev, NULL))
        return;
    int64_t since = sl_now_ms() - cli->last_refresh_ms;
    timer_in(cli->disc_ev, since >= REFRESH_MIN_MS ? 0 : REFRESH_MIN_MS - since);
}

static void disc_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    discover(arg);
}

/* ---- sentinel: +switch-master ---- */

static void watch_start(struct rcli *cli);

bool rcli_parse_switch(const char *msg, const char *master, struct redis_host *to)
{
    char name[128], oldip[256], newip[256];
    int oldport, newport;
    if (sscanf(msg, "%127s %255s %d %255s %d", name, oldip, &oldport, newip, &newport) != 5 ||
        strcmp(name, master) != 0 || newport < 1 || newport > 65535)
        return false;
    to->port = newport;
    memcpy(to->name, newip, sizeof(newip));
    return true;
}

static void watch_message(struct rconn *c, struct redisReply *rep, void *arg)
{
    struct rcli *cli = arg;
    (void)c;
    /* ["message", "+switch-master", "NAME old-ip old-port new-ip new-port"] */
    struct redis_host addr;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[2]->type != REDIS_REPLY_STRING ||
        strcmp(rep->element[0]->str, "message") != 0 ||
        !rcli_parse_switch(rep->element[2]->str, cli->url.master, &addr))
        return;
    master_at(cli, &addr);
}

static void watch_state(struct rconn *c, bool up, enum rconn_err why, const char *detail, void *arg)
{
    struct rcli *cli = arg;
    (void)why;
    (void)detail;
    if (up) {
        const char *argv[] = { "SUBSCRIBE", "+switch-master" };
        rconn_sendv(c, 2, argv, NULL, NULL, NULL); /* its confirmation arrives as a push */
        return;
    }
    if (c == cli->watch)
        cli->watch = NULL;
    rconn_free(c);
    if (cli->closing)
        return;
    cli->watch_i++;
    timer_in(cli->watch_ev, BACKOFF_MAX_MS / 2);
}

static void watch_start(struct rcli *cli)
{
    if (cli->watch || cli->closing)
        return;
    struct rconn_opts o = conn_opts(cli, disc_host(cli, cli->watch_i), false);
    cli->watch = rconn_new(cli->base, &o, cli->replies, watch_state, watch_message, cli);
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    watch_start(arg);
}

/* ---- the owner's subscription ---- */

static void sub_push(struct rconn *c, struct redisReply *rep, void *arg)
{
    struct rcli *cli = arg;
    if (cli->sub_cb)
        cli->sub_cb(c, rep, cli->sub_arg);
}

static void sub_state(struct rconn *c, bool up, enum rconn_err why, const char *detail, void *arg)
{
    struct rcli *cli = arg;
    (void)why;
    (void)detail;
    if (up) {
        const char *argv[] = { "SUBSCRIBE", cli->channel };
        rconn_sendv(c, 2, argv, NULL, NULL, NULL);
        return;
    }
    if (c == cli->sub)
        cli->sub = NULL;
    rconn_free(c);
    if (!cli->closing)
        timer_in(cli->sub_ev, BACKOFF_MAX_MS / 2);
}

/* On the master (or the cluster's first node): messages published anywhere
 * reach every node of a cluster and every replica. */
static void sub_start(struct rcli *cli)
{
    if (cli->sub || cli->closing || !cli->sub_cb)
        return;
    struct node *n = NULL;
    for (int i = 0; i < cli->nnodes && !n; i++)
        if (cli->nodes[i]->up)
            n = cli->nodes[i];
    if (!n)
        return; /* the first node up starts it */
    struct rconn_opts o = conn_opts(cli, &n->addr, true);
    cli->sub = rconn_new(cli->base, &o, cli->replies, sub_state, sub_push, cli);
}

static void sub_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sub_start(arg);
}

void rcli_subscribe(struct rcli *cli, const char *channel, rconn_push_cb cb, void *arg)
{
    snprintf(cli->channel, sizeof(cli->channel), "%s", channel);
    cli->sub_cb = cb;
    cli->sub_arg = arg;
    sub_start(cli);
}

/* ---- the client ---- */

struct rcli *rcli_new(struct event_base *base, const struct rcli_opts *o)
{
    struct rcli *cli = sl_calloc(1, sizeof(*cli));
    cli->base = base;
    cli->url = *o->url;
    cli->tls = o->tls;
    if (cli->tls)
        SSL_CTX_up_ref(cli->tls);
    cli->timeout_ms = o->timeout_ms;
    cli->worker_id = o->worker_id;
    cli->replies = o->replies;
    cli->prepare = o->prepare;
    cli->arg = o->arg;
    cli->disc_ev = evtimer_new(base, disc_cb, cli);
    cli->watch_ev = evtimer_new(base, watch_cb, cli);
    cli->sub_ev = evtimer_new(base, sub_cb, cli);
    if (cli->url.form == REDIS_SINGLE) {
        struct redis_host none = { 0 };
        cli->nodes[cli->nnodes++] = node_new(cli, cli->url.nhosts ? &cli->url.hosts[0] : &none);
        node_connect(cli->nodes[0]);
    } else if (cli->url.form == REDIS_SENTINEL) {
        struct redis_host none = { 0 };
        cli->nodes[cli->nnodes++] = node_new(cli, &none);
        discover(cli);
        watch_start(cli);
    } else {
        discover(cli);
    }
    return cli;
}

void rcli_free(struct rcli *cli)
{
    if (!cli)
        return;
    cli->closing = true;
    for (int i = 0; i < cli->nretired; i++)
        rconn_free(cli->retired[i]);
    for (int i = 0; i < cli->nnodes; i++)
        node_free(cli->nodes[i]);
    rconn_free(cli->disc);
    rconn_free(cli->watch);
    rconn_free(cli->sub);
    event_free(cli->disc_ev);
    event_free(cli->watch_ev);
    event_free(cli->sub_ev);
    if (cli->tls)
        SSL_CTX_free(cli->tls);
    free(cli);
}

bool rcli_up(const struct rcli *cli)
{
    if (cli->url.form == REDIS_CLUSTER)
        return cli->map_known;
    return cli->nodes[0]->up;
}

/* CRC16-CCITT (XModem), as Redis Cluster's key hash. */
static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

unsigned rcli_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
        if (close && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    return crc16(key, len) & (SLOTS - 1);
}

struct rconn *rcli_conn(struct rcli *cli, const char *key, size_t len)
{
    struct node *n;
    if (cli->url.form != REDIS_CLUSTER) {
        n = cli->nodes[0];
    } else {
        unsigned idx = cli->slot_node[rcli_slot(key, len)];
        if (!idx)
            return NULL;
        n = cli->nodes[idx - 1];
    }
    return n->up ? n->conn : NULL;
}

static struct node *node_of(struct rcli *cli, const struct rconn *c)
{
    for (int i = 0; i < cli->nnodes; i++)
        if (cli->nodes[i]->conn == c)
            return cli->nodes[i];
    return NULL;
}

/* The node's calls go to a new connection; the stalled one is retired (its
 * late replies read and dropped, as hiredis's graceful disconnect did). */
void rcli_drop(struct rcli *cli, struct rconn *c)
{
    struct node *n = node_of(cli, c);
    if (!n)
        return;
    n->conn = NULL;
    n->up = false;
    report_down(cli, rconn_where(c), RC_TIMEOUT, "a call timed out");
    timer_in(n->retry_ev, backoff_next(&n->backoff_ms));
    if (cli->nretired == RETIRED_MAX) { /* the oldest is cut */
        rconn_free(cli->retired[0]);
        cli->retired[0] = cli->retired[--cli->nretired];
    }
    cli->retired[cli->nretired++] = c;
    rconn_retire(c, SL_MAX(5 * cli->timeout_ms, 1000));
}

bool rcli_parse_redirect(const char *err, unsigned *slot, struct redis_host *h)
{
    const char *sp = strchr(err, ' ');
    if (!sp)
        return false;
    char addr[300];
    if (sscanf(sp + 1, "%u %299s", slot, addr) != 2 || *slot >= SLOTS)
        return false;
    char *colon = strrchr(addr, ':');
    if (!colon || colon == addr)
        return false;
    *colon = '\0';
    char *host = addr;
    size_t len = strlen(addr);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') { /* [::1]:6381 */
        host[len - 1] = '\0';
        host++;
        len -= 2;
    }
    if (!len)
        return false;
    int64_t port;
    if (!sl_parse_int(colon + 1, &port) || port < 1 || port > 65535 || len >= sizeof(h->name))
        return false;
    memcpy(h->name, host, len + 1);
    h->port = (int)port;
    return true;
}

enum rcli_redirect rcli_redirected(struct rcli *cli, struct rconn *from, const char *err,
                                   struct rconn **to)
{
    *to = NULL;
    if (strncmp(err, "READONLY", 8) == 0 && cli->url.form == REDIS_SENTINEL) {
        log_warn("worker %d: redis %s became a replica; asking the sentinels again",
                 cli->worker_id, rconn_where(from));
        if (cli->nodes[0]->conn == from)
            rconn_drop(from, RC_DROPPED);
        return RCLI_NONE;
    }
    bool moved = strncmp(err, "MOVED ", 6) == 0, ask = strncmp(err, "ASK ", 4) == 0;
    if (cli->url.form != REDIS_CLUSTER || (!moved && !ask))
        return RCLI_NONE;
    unsigned slot;
    struct redis_host h;
    if (!rcli_parse_redirect(err, &slot, &h))
        return RCLI_NONE;
    struct node *n = node_at(cli, &h, true);
    if (!n)
        return RCLI_NONE;
    if (moved) {
        cli->slot_node[slot] = (uint8_t)(node_index(cli, n) + 1);
        discover_later(cli); /* the rest of the map has likely changed too */
    }
    if (!n->up)
        return RCLI_NONE;
    *to = n->conn;
    return moved ? RCLI_RETRY : RCLI_ASK;
}
