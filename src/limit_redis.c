/* Rate-limit windows in Redis: hiredis's async API on the worker's libevent
 * loop, one connection per worker. Scripts run by EVALSHA (SHA-1 computed
 * here); a NOSCRIPT answer (restart, SCRIPT FLUSH, failover) is retried once
 * with EVAL, which loads the script again. hiredis has no per-command
 * timeout, so every call carries its own timer: a call that is not answered
 * within [redis] timeout fails, and the connection is dropped and re-made
 * with backoff. While it is down, calls fail at once (no waiting). */
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/limit.h"
#include "sluice/log.h"
#include "sluice/util.h"

extern const char lua_limits[];

enum { OP_ADMIT, OP_SETTLE, OP_PEEK, OP_QPEEK, OP_QRESET, OP_QADD };
static const char *const op_modes[] = { "admit", "settle", "peek", "qpeek", "qreset", "qadd" };
enum state { R_DOWN, R_CONNECTING, R_UP };

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

struct redis_url {
    char host[256];
    int port;
    char path[256]; /* unix socket */
    char user[128];
    char password[256];
    int db;
};

struct lim_redis {
    struct event_base *base;
    struct redis_url url;
    int64_t timeout_ms;
    int64_t window_ms, bucket_ms;
    int worker_id;
    redisAsyncContext *ac;
    enum state state;
    bool closing;
    bool reported_down; /* the last state change logged was "down" */
    int64_t backoff_ms;
    struct event *reconnect_ev;
    struct event *drop_ev; /* drops a stuck connection outside hiredis callbacks */
    char sha[41];
};

struct op {
    struct lim_redis *r;
    struct event *timer;
    int kind;
    bool answered; /* the caller has its answer (reply, error or timeout) */
    bool resent;   /* NOSCRIPT already handled once */
    lim_redis_cb cb;
    void *arg;
    int argc;
    char *argv[24];
    size_t argvlen[24];
};

/* ---- URL ----------------------------------------------------------------------- */

static bool parse_url(const char *url, struct redis_url *u, const char **why)
{
    memset(u, 0, sizeof(*u));
    u->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || n >= sizeof(u->path)) {
            *why = "unix:// needs a socket path";
            return false;
        }
        memcpy(u->path, p, n);
        if (q && strncmp(q, "?db=", 4) == 0)
            u->db = atoi(q + 4);
        return true;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        *why = "must be redis://[user:password@]host[:port][/db] or unix:///path";
        return false;
    }
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : 0;
        const char *pw = colon ? colon + 1 : p;
        size_t plen = (size_t)(at - pw);
        if (ulen >= sizeof(u->user) || plen >= sizeof(u->password)) {
            *why = "user or password too long";
            return false;
        }
        memcpy(u->user, p, ulen);
        memcpy(u->password, pw, plen);
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    size_t hlen = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = memchr(p, ':', hlen);
    size_t nlen = colon ? (size_t)(colon - p) : hlen;
    if (nlen == 0 || nlen >= sizeof(u->host)) {
        *why = "missing host";
        return false;
    }
    memcpy(u->host, p, nlen);
    if (colon) {
        int64_t port;
        char buf[8] = { 0 };
        size_t plen = hlen - nlen - 1;
        if (plen == 0 || plen >= sizeof(buf)) {
            *why = "bad port";
            return false;
        }
        memcpy(buf, colon + 1, plen);
        if (!sl_parse_int(buf, &port) || port < 1 || port > 65535) {
            *why = "bad port";
            return false;
        }
        u->port = (int)port;
    }
    if (slash && slash[1]) {
        int64_t db;
        if (!sl_parse_int(slash + 1, &db) || db < 0 || db > 1000) {
            *why = "bad database number";
            return false;
        }
        u->db = (int)db;
    }
    return true;
}

bool lim_redis_url_ok(const char *url, const char **why)
{
    struct redis_url u;
    return parse_url(url, &u, why);
}

/* ---- connection ------------------------------------------------------------------ */

static void connect_now(struct lim_redis *r);

static void schedule_reconnect(struct lim_redis *r)
{
    if (r->closing)
        return;
    r->backoff_ms = r->backoff_ms ? SL_MIN(r->backoff_ms * 2, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
    struct timeval tv = { (time_t)(r->backoff_ms / 1000), (suseconds_t)(r->backoff_ms % 1000) * 1000 };
    evtimer_add(r->reconnect_ev, &tv);
}

static void report_down(struct lim_redis *r, const char *why)
{
    if (r->reported_down)
        return;
    r->reported_down = true;
    log_warn("worker %d: redis %s unreachable (%s); limits follow on_error until it is back",
             r->worker_id, r->url.path[0] ? r->url.path : r->url.host, why);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct lim_redis *r = ac->data;
    if (status != REDIS_OK) {
        r->ac = NULL; /* hiredis frees it */
        r->state = R_DOWN;
        report_down(r, ac->errstr);
        schedule_reconnect(r);
        return;
    }
    r->state = R_UP;
    r->backoff_ms = 0;
    if (r->reported_down || r->worker_id == 0)
        log_info("worker %d: redis %s connected", r->worker_id,
                 r->url.path[0] ? r->url.path : r->url.host);
    r->reported_down = false;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct lim_redis *r = ac->data;
    r->ac = NULL;
    r->state = R_DOWN;
    if (r->closing)
        return;
    report_down(r, status == REDIS_OK ? "connection closed" : ac->errstr);
    schedule_reconnect(r);
}

static void check_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        struct lim_redis *r = ac->data;
        log_error("worker %d: redis setup failed: %s", r->worker_id, rep->str);
        redisAsyncDisconnect(ac);
    }
}

static void connect_now(struct lim_redis *r)
{
    redisAsyncContext *ac = r->url.path[0] ? redisAsyncConnectUnix(r->url.path)
                                           : redisAsyncConnect(r->url.host, r->url.port);
    if (!ac || ac->err) {
        report_down(r, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    ac->data = r;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (r->url.password[0]) {
        if (r->url.user[0])
            redisAsyncCommand(ac, check_setup_reply, NULL, "AUTH %s %s", r->url.user, r->url.password);
        else
            redisAsyncCommand(ac, check_setup_reply, NULL, "AUTH %s", r->url.password);
    }
    if (r->url.db)
        redisAsyncCommand(ac, check_setup_reply, NULL, "SELECT %d", r->url.db);
    /* Loaded ahead of any EVALSHA on this connection: a NOSCRIPT retry would
     * otherwise let a later call overtake the one retried. */
    redisAsyncCommand(ac, check_setup_reply, NULL, "SCRIPT LOAD %s", lua_limits);
    r->ac = ac;
    r->state = R_CONNECTING;
}

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

static void drop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lim_redis *r = arg;
    if (r->ac && r->state != R_DOWN) {
        report_down(r, "a call timed out");
        redisAsyncDisconnect(r->ac); /* pending calls fail; on_disconnect reconnects */
    }
}

static void sha1_hex(const char *text, char out[41])
{
    uint8_t d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)text, strlen(text), d);
    sl_hex(d, sizeof(d), out);
}

struct lim_redis *lim_redis_new(struct event_base *base, const struct cfg_redis *cfg,
                                int64_t window_ms, int worker_id)
{
    struct lim_redis *r = sl_calloc(1, sizeof(*r));
    const char *why;
    if (!parse_url(cfg->url, &r->url, &why)) { /* validated at load; kept for safety */
        free(r);
        return NULL;
    }
    r->base = base;
    r->timeout_ms = cfg->timeout_ms;
    r->window_ms = window_ms;
    r->bucket_ms = SL_MAX(window_ms / LIM_BUCKETS, 1);
    r->worker_id = worker_id;
    r->reconnect_ev = evtimer_new(base, reconnect_cb, r);
    r->drop_ev = event_new(base, -1, 0, drop_cb, r);
    sha1_hex(lua_limits, r->sha);
    connect_now(r);
    return r;
}

void lim_redis_free(struct lim_redis *r)
{
    if (!r)
        return;
    r->closing = true;
    if (r->ac)
        redisAsyncFree(r->ac); /* pending calls get their failure now */
    event_free(r->reconnect_ev);
    event_free(r->drop_ev);
    free(r);
}

bool lim_redis_up(const struct lim_redis *r)
{
    return r->state == R_UP;
}

/* ---- calls ----------------------------------------------------------------------- */

static void op_free(struct op *op)
{
    event_free(op->timer);
    for (int i = 0; i < op->argc; i++)
        free(op->argv[i]);
    free(op);
}

static void fail_op(struct op *op)
{
    if (op->answered)
        return;
    op->answered = true;
    atomic_fetch_add(&lim_redis_errors, 1);
    if (op->cb)
        op->cb(false, NULL, op->arg);
}

static void op_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct op *op = arg;
    struct lim_redis *r = op->r;
    fail_op(op);
    event_active(r->drop_ev, EV_READ, 0); /* the op is freed when hiredis lets go of it */
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

static int send_op(struct op *op)
{
    return redisAsyncCommandArgv(op->r->ac, on_reply, op, op->argc, (const char **)op->argv,
                                 op->argvlen);
}

/* The script's reply: n integers, then the period id as a string. */
static bool reply_ints(const redisReply *rep, size_t n, int64_t *v, char period[LIM_PERIOD_ID])
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n + 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (rep->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
        v[i] = rep->element[i]->integer;
    }
    const redisReply *id = rep->element[n];
    if (id->type != REDIS_REPLY_STRING || id->len >= LIM_PERIOD_ID)
        return false;
    memcpy(period, id->str, id->len);
    period[id->len] = '\0';
    return true;
}

static bool parse_quota(const redisReply *rep, struct lim_decision *d)
{
    int64_t v[2];
    memset(d, 0, sizeof(*d));
    if (!reply_ints(rep, 2, v, d->period))
        return false;
    d->used_quota = v[0];
    d->quota_reset_ms = v[1];
    d->where = LIM_REDIS;
    return true;
}

static bool parse_decision(const redisReply *rep, struct lim_decision *d)
{
    int64_t v[15];
    char period[LIM_PERIOD_ID];
    if (!reply_ints(rep, 15, v, period))
        return false;
    memset(d, 0, sizeof(*d));
    memcpy(d->period, period, sizeof(period));
    d->used_quota = v[13];
    d->quota_reset_ms = v[14];
    d->admitted = v[0] == 1;
    d->dim = (enum lim_dim)v[1];
    d->limit = v[2];
    d->used = v[3];
    d->requested = v[4];
    d->retry_ms = v[5];
    d->bucket = v[6];
    d->used_requests = v[7];
    d->reset_requests_ms = v[8];
    d->used_input = v[9];
    d->reset_input_ms = v[10];
    d->used_output = v[11];
    d->reset_output_ms = v[12];
    d->where = LIM_REDIS;
    return true;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct op *op = priv;
    redisReply *rep = reply;
    struct lim_redis *r = op->r;
    if (rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0 &&
        !op->resent && !op->answered && r->ac) {
        op->resent = true;
        free(op->argv[0]);
        free(op->argv[1]);
        op->argv[0] = sl_strdup("EVAL");
        op->argv[1] = sl_strdup(lua_limits);
        op->argvlen[0] = 4;
        op->argvlen[1] = strlen(lua_limits);
        if (send_op(op) == REDIS_OK)
            return;
    }
    if (!op->answered) {
        struct lim_decision d;
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            if (rep)
                log_warn("worker %d: redis script error: %s", r->worker_id, rep->str);
            fail_op(op);
        } else if (op->kind != OP_SETTLE &&
                   !(op->kind >= OP_QPEEK ? parse_quota(rep, &d) : parse_decision(rep, &d))) {
            log_warn("worker %d: redis: unexpected reply from the limits script", r->worker_id);
            fail_op(op);
        } else {
            op->answered = true;
            if (op->cb)
                op->cb(true, &d, op->arg);
        }
    }
    op_free(op);
}

static void add_arg(struct op *op, const char *s)
{
    op->argv[op->argc] = sl_strdup(s);
    op->argvlen[op->argc] = strlen(s);
    op->argc++;
}

static void add_int(struct op *op, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    add_arg(op, buf);
}

/* EVALSHA of lua/limits.lua on the key's three hashes (sluice:{name}:r|i|o)
 * and quota prefix (sluice:{name}:q), with the arguments every call shares. */
static struct op *op_new(struct lim_redis *r, int kind, const char *key,
                         const struct lim_limits *lim, lim_redis_cb cb, void *arg)
{
    struct op *op = sl_calloc(1, sizeof(*op));
    op->r = r;
    op->kind = kind;
    op->cb = cb;
    op->arg = arg;
    add_arg(op, "EVALSHA");
    add_arg(op, r->sha);
    add_arg(op, "4");
    static const char dims[4] = { 'r', 'i', 'o', 'q' };
    for (int d = 0; d < 4; d++) {
        char name[160];
        snprintf(name, sizeof(name), "sluice:{%s}:%c", key, dims[d]);
        add_arg(op, name);
    }
    add_int(op, r->bucket_ms);
    add_int(op, r->window_ms);
    add_arg(op, op_modes[kind]);
    add_int(op, lim->rpm);
    add_int(op, lim->input_tpm);
    add_int(op, lim->output_tpm);
    add_int(op, lim->quota);
    add_int(op, lim->quota_period);
    add_int(op, lim_clock_offset_s());
    return op;
}

static void op_start(struct op *op)
{
    struct lim_redis *r = op->r;
    if (r->state != R_UP || send_op(op) != REDIS_OK) {
        fail_op(op);
        op_free(op);
        return;
    }
    op->timer = evtimer_new(r->base, op_timeout, op);
    struct timeval tv = { (time_t)(r->timeout_ms / 1000), (suseconds_t)(r->timeout_ms % 1000) * 1000 };
    evtimer_add(op->timer, &tv);
}

void lim_redis_admit(struct lim_redis *r, const char *key, const struct lim_limits *lim,
                     int64_t cost, lim_redis_cb cb, void *arg)
{
    struct op *op = op_new(r, OP_ADMIT, key, lim, cb, arg);
    add_int(op, cost);
    add_int(op, lim->shadow ? 1 : 0);
    op_start(op);
}

void lim_redis_peek(struct lim_redis *r, const char *key, const struct lim_limits *lim,
                    lim_redis_cb cb, void *arg)
{
    op_start(op_new(r, OP_PEEK, key, lim, cb, arg));
}

void lim_redis_settle(struct lim_redis *r, const char *key, const struct lim_limits *lim,
                      const struct lim_decision *ticket, int64_t input_delta, int64_t output,
                      bool release, int64_t quota_delta)
{
    struct op *op = op_new(r, OP_SETTLE, key, lim, NULL, NULL);
    add_int(op, ticket->bucket);
    add_int(op, input_delta);
    add_int(op, output);
    add_int(op, release ? 1 : 0);
    add_int(op, quota_delta);
    add_arg(op, ticket->period[0] ? ticket->period : "none");
    op_start(op);
}

void lim_redis_quota(struct lim_redis *r, const char *key, const struct lim_limits *lim,
                     enum lim_quota_op what, int64_t tokens, lim_redis_cb cb, void *arg)
{
    int kind = what == LIM_QUOTA_RESET ? OP_QRESET : what == LIM_QUOTA_ADD ? OP_QADD : OP_QPEEK;
    struct op *op = op_new(r, kind, key, lim, cb, arg);
    if (what == LIM_QUOTA_ADD)
        add_int(op, tokens);
    op_start(op);
}
