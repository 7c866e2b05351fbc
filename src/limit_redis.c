/* Rate-limit windows in Redis, on the worker's libevent loop through the
 * Redis client (redis_client.h: one server, Sentinel or Cluster, plain or
 * TLS). Scripts run by EVALSHA (SHA-1 computed here), loaded on every new
 * connection ahead of any call; a NOSCRIPT answer (SCRIPT FLUSH) is retried
 * once with EVAL. Every call carries its own timer: a call that is not
 * answered within [redis] timeout fails, and its connection is dropped and
 * made again. While Redis is down, calls fail at once (no waiting). */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/config.h"
#include "sluice/limit_redis.h"
#include "sluice/limit_script.h"
#include "sluice/log.h"
#include "sluice/redis_client.h"
#include "sluice/redis_reply.h"
#include "sluice/redis_url.h"
#include "sluice/tls.h"
#include "sluice/util.h"

extern const char lua_limits[];

enum { OP_BATCH, OP_CPEEK, OP_CRESET, OP_CADD };
enum { SCOPE_SPIKE = 8, SCOPE_TEAM_SPIKE = 16 }; /* the script's scopes past enum lim_scope */
static const char *const op_modes[] = { "batch", "cpeek", "creset", "cadd" };

/* A Cluster's redirections of one call: MOVED and ASK followed at once
 * REDIRECTS_NOW times; after that, and on TRYAGAIN (a slot moving with some
 * of the call's keys), the call waits TRYAGAIN_WAIT_MS before each of at
 * most TRYAGAIN_MAX more tries (its timeout ends them sooner). Deciding
 * without Redis meanwhile would not be exact. */
#define REDIRECTS_NOW 2
#define TRYAGAIN_MAX 20
#define TRYAGAIN_WAIT_MS 5

struct sub {
    lim_reply_cb cb;
    void *arg;
};

struct lim_redis {
    struct event_base *base;
    struct redis_url url;
    int64_t timeout_ms;
    int64_t window_ms, bucket_ms;
    int64_t lease_ms;
    int worker_id;
    struct rcli *cli;
    bool closing;
    struct event *flush_ev; /* sends the queued batches at the end of the loop pass */
    struct call *queue, **queue_tail;
    /* Settlements waiting for their key's next call (at most HOLD_MS): a
     * settlement alone would cost Redis a call of its own. */
    struct call *held;
    int nheld;
    struct event *hold_ev;
    struct call *free; /* spare calls */
    int nfree;
    struct sl_buf resp; /* a call's command in RESP */
    struct reply_pool *replies; /* every connection's reply objects */
    char sha[41];
    /* The script as a function library, loaded once per connection: FCALL
     * runs it without remaking its helpers on every call. A Redis without
     * functions (before 7.0), or a user not allowed them, gets EVALSHA. */
    char *library;
    char fname[24]; /* sluice_ and 16 hex digits of the script's SHA-1 */
    bool no_functions;
    /* Redis's clock minus ours (us), from TIME at each connection and every
     * CLOCK_REFRESH_MS: admissions carry their deadline in Redis's clock. */
    int64_t clock_offset_us;
    bool clock_known;
    int64_t time_sent_us;
    struct event *clock_ev;
    struct sub sub; /* the channel's listener */
};

#define CLOCK_REFRESH_MS 30000

atomic_ulong lim_redis_errors;
const char *const lim_redis_result_names[LR_N] = { "ok", "error", "timeout", "down",
                                                   "moved", "ask", "tryagain" };
atomic_ulong lim_redis_calls[LR_N];
const double lim_redis_bounds[LR_BUCKETS] = { 0.0001, 0.00025, 0.0005, 0.001,
                                              0.0025, 0.005,   0.01,   0.1 };
atomic_ulong lim_redis_call_buckets[LR_BUCKETS + 1];
atomic_ulong lim_redis_call_us;

static void count_call(enum lim_redis_result r)
{
    atomic_fetch_add_explicit(&lim_redis_calls[r], 1, memory_order_relaxed);
}

/* An answered call's time. */
static void time_call(int64_t sent_us)
{
    int64_t us = sl_now_us() - sent_us;
    int b = 0;
    while (b < LR_BUCKETS && (double)us > lim_redis_bounds[b] * 1e6)
        b++;
    atomic_fetch_add_explicit(&lim_redis_call_buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&lim_redis_call_us, (unsigned long)SL_MAX(us, 0), memory_order_relaxed);
}

/* ---- connections ------------------------------------------------------------------ */

static void check_setup_reply(struct rconn *c, struct redisReply *rep, void *arg)
{
    struct lim_redis *r = arg;
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        log_error("worker %d: redis %s setup failed: %s", r->worker_id, rconn_where(c), rep->str);
        rconn_drop(c, RC_PROTOCOL);
    }
}

/* TIME's answer: the offset of Redis's clock from ours, taken at the middle
 * of the round trip (its error is at most half of it). */
static void time_reply(struct rconn *c, struct redisReply *rep, void *arg)
{
    (void)c;
    struct lim_redis *r = arg;
    int64_t now = sl_wall_us(), secs, micros;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING ||
        !sl_parse_int(rep->element[0]->str, &secs) || !sl_parse_int(rep->element[1]->str, &micros))
        return; /* the connection is failing: its calls fail too */
    r->clock_offset_us = secs * 1000000 + micros - (r->time_sent_us + now) / 2;
    r->clock_known = true;
}

static void ask_time(struct lim_redis *r, struct rconn *c)
{
    r->time_sent_us = sl_wall_us();
    const char *argv[] = { "TIME" };
    rconn_sendv(c, 1, argv, NULL, time_reply, r);
}

static void clock_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lim_redis *r = arg;
    struct rconn *c = rcli_conn(r->cli, "", 0);
    if (c)
        ask_time(r, c);
    struct timeval tv = { CLOCK_REFRESH_MS / 1000, 0 };
    evtimer_add(r->clock_ev, &tv);
}

/* Functions refused (an older Redis, or an ACL without them): EVALSHA from now on. */
static void no_functions(struct lim_redis *r, const char *why)
{
    if (!r->no_functions)
        log_info("worker %d: redis: no functions (%s); the limits script runs by EVALSHA",
                 r->worker_id, why);
    r->no_functions = true;
}

/* Redis before 7.0 knows neither FUNCTION nor FCALL; an ACL may refuse either. */
static bool functions_refused(const char *err)
{
    return strncmp(err, "ERR unknown command", 19) == 0 ||
           (strncmp(err, "NOPERM", 6) == 0 && (strstr(err, "'fcall'") || strstr(err, "'function")));
}

static void library_reply(struct rconn *c, struct redisReply *rep, void *arg)
{
    struct lim_redis *r = arg;
    if (!rep || rep->type != REDIS_REPLY_ERROR || strstr(rep->str, "already exists"))
        return; /* loaded, here or by another worker or node */
    if (functions_refused(rep->str))
        no_functions(r, rep->str);
    else
        check_setup_reply(c, rep, arg);
}

/* A new connection: the library and the script are loaded ahead of any
 * call on it (a retry after "not found" would otherwise let a later call
 * overtake the one retried), and the clock is read. */
static void prepare(struct rconn *c, void *arg)
{
    struct lim_redis *r = arg;
    if (!r->no_functions) {
        const char *load[] = { "FUNCTION", "LOAD", r->library };
        rconn_sendv(c, 3, load, NULL, library_reply, r);
    }
    const char *argv[] = { "SCRIPT", "LOAD", lua_limits };
    rconn_sendv(c, 3, argv, NULL, check_setup_reply, r);
    ask_time(r, c);
}

static void sha1_hex(const char *text, char out[41])
{
    uint8_t d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)text, strlen(text), d);
    sl_hex(d, sizeof(d), out);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg);
static void hold_cb(evutil_socket_t fd, short what, void *arg);
static void send_held(struct lim_redis *r, bool now);
static void drop_queue(struct lim_redis *r);
static void free_list(struct call *c);

struct lim_redis *lim_redis_new(struct event_base *base, const struct cfg_redis *cfg,
                                int64_t window_ms, int worker_id)
{
    struct lim_redis *r = sl_calloc(1, sizeof(*r));
    const char *why;
    if (!redis_url_parse(cfg->url, &r->url, &why)) { /* validated at load; kept for safety */
        free(r);
        return NULL;
    }
    struct ssl_ctx_st *tls = NULL;
    if (r->url.tls) {
        char err[512];
        tls = tls_client_new(cfg->ca_file, cfg->client_cert, cfg->client_key, cfg->tls_verify,
                             err, sizeof(err));
        if (!tls) /* checked at load; a file changed since then */
            log_error("worker %d: redis TLS: %s", worker_id, err);
    }
    r->base = base;
    r->timeout_ms = cfg->timeout_ms;
    r->window_ms = window_ms;
    r->bucket_ms = SL_MAX(window_ms / LIM_BUCKETS, 1);
    r->lease_ms = lim_lease_ms();
    r->worker_id = worker_id;
    r->flush_ev = event_new(base, -1, 0, flush_cb, r);
    r->hold_ev = evtimer_new(base, hold_cb, r);
    r->clock_ev = evtimer_new(base, clock_cb, r);
    struct timeval tv = { CLOCK_REFRESH_MS / 1000, 0 };
    evtimer_add(r->clock_ev, &tv);
    r->queue_tail = &r->queue;
    r->replies = reply_pool_new();
    sha1_hex(lua_limits, r->sha);
    snprintf(r->fname, sizeof(r->fname), "sluice_%.16s", r->sha);
    size_t len = strlen(lua_limits) + 96;
    r->library = sl_malloc(len);
    snprintf(r->library, len, "#!lua name=%s\nlocal FUNCTION_NAME = '%s'\n%s", r->fname, r->fname,
             lua_limits);
    struct rcli_opts o = { .url = &r->url, .tls = tls, .timeout_ms = r->timeout_ms,
                           .worker_id = worker_id, .replies = r->replies, .prepare = prepare,
                           .arg = r };
    if (!r->url.tls || tls)
        r->cli = rcli_new(base, &o);
    tls_ctx_free(tls); /* the client holds its own reference */
    return r;
}

void lim_redis_free(struct lim_redis *r)
{
    if (!r)
        return;
    send_held(r, true); /* written before the connections close (rcli_free writes what it can) */
    r->closing = true;
    rcli_free(r->cli); /* pending calls get their failure now */
    drop_queue(r);
    event_free(r->flush_ev);
    event_free(r->hold_ev);
    event_free(r->clock_ev);
    free_list(r->free);
    sl_buf_free(&r->resp);
    reply_pool_free(r->replies);
    free(r->library);
    free(r);
}

bool lim_redis_up(const struct lim_redis *r)
{
    return r->cli && rcli_up(r->cli);
}

/* ---- calls -----------------------------------------------------------------------
 *
 * Admissions, peeks and settlements are queued per key and sent at the end
 * of the loop pass that made them (flush_ev): all of one key's operations of
 * that pass go in one script call, which does them in order, atomically. At
 * low load a call carries one operation and costs no extra round trip; under
 * load one call carries many, and Redis reads and writes each scope once per
 * call instead of once per operation. A settlement with no call of its key
 * to go with waits for the key's next admission or peek, at most HOLD_MS
 * (held): in steady state a request costs Redis one call. One that frees a
 * max_inflight slot is not held: another request may be waiting for it. Quota and budget
 * operations of the admin API are sent alone, after every held settlement. */

#define BATCH_MAX 32
#define HOLD_MS 20 /* the longest a settlement waits for its key's next call */
#define HELD_MAX 64 /* keys with settlements held: more go with this loop pass (a bounded scan) */
#define FREE_CALLS 16

struct pend { /* one queued operation */
    char kind; /* LS_OP_ADMIT, LS_OP_PEEK, LS_OP_SETTLE or LS_OP_RENEW */
    lim_answer cb;
    void *arg;
    int64_t cost, spend; /* admit */
    bool force;          /* admit: shadow mode, recorded even when refused */
    int64_t bucket;      /* settle: the admission's */
    struct lim_usage usage; /* settle */
    int64_t lease; /* admit, settle, renew: the max_inflight slot (0: none) */
    char period[5][LIM_PERIOD_ID]; /* settle: the quota's, the budget's, the team budget's,
                                      the user's per key and per team */
};

struct call {
    struct lim_redis *r;
    struct call *next; /* in r->queue until flushed, or in r->free */
    struct event *timer;
    int kind; /* OP_BATCH or a counter op */
    bool answered; /* the callers have their answers (reply, error or timeout) */
    bool resent;   /* NOSCRIPT already handled once */
    int redirects; /* MOVED and ASK followed */
    int tries;     /* TRYAGAIN waited out */
    struct rconn *conn; /* where it was sent, while it waits */
    struct event *retry_ev; /* TRYAGAIN: sent again shortly */
    int64_t sent_us; /* when it was first sent (sl_now_us) */
    bool retrying; /* waiting on retry_ev, on no connection */
    char key[(CFG_NAME_MAX + 1)];
    struct lim_limits lim;
    enum lim_counter which; /* counter ops */
    int64_t amount;         /* OP_CADD */
    lim_answer cb;        /* counter ops */
    void *arg;
    int n;
    int64_t deadline_ms; /* when the timer gives up, in Redis's clock (0: unknown) */
    struct pend ops[BATCH_MAX];
    int argc;
    size_t script_args; /* where the arguments after EVALSHA's sha begin in text */
    struct sl_buf text; /* the arguments in RESP ("$len\r\nbytes\r\n" each) */
};

static struct call *call_new(struct lim_redis *r, int kind, const char *key,
                             const struct lim_limits *lim)
{
    struct call *c = r->free;
    if (c) {
        r->free = c->next;
        r->nfree--;
    } else {
        c = sl_malloc(sizeof(*c));
        c->text = (struct sl_buf){ 0 };
        c->timer = NULL;
        c->retry_ev = NULL;
    }
    c->r = r;
    c->next = NULL;
    c->kind = kind;
    c->answered = c->resent = c->retrying = false;
    c->redirects = c->tries = 0;
    c->conn = NULL;
    snprintf(c->key, sizeof(c->key), "%s", key);
    c->lim = *lim;
    c->which = LIM_QUOTA;
    c->amount = 0;
    c->cb = NULL;
    c->arg = NULL;
    c->n = 0;
    c->argc = 0;
    c->text.len = 0;
    return c;
}

static void call_destroy(struct call *c)
{
    if (c->timer)
        event_free(c->timer);
    if (c->retry_ev)
        event_free(c->retry_ev);
    sl_buf_free(&c->text);
    free(c);
}

/* Back to the spare list, or freed. */
static void call_free(struct call *c)
{
    struct lim_redis *r = c->r;
    if (c->timer)
        evtimer_del(c->timer);
    if (c->retry_ev)
        evtimer_del(c->retry_ev);
    if (r->nfree < FREE_CALLS && !r->closing) {
        c->next = r->free;
        r->free = c;
        r->nfree++;
        return;
    }
    call_destroy(c);
}

static void free_list(struct call *c)
{
    while (c) {
        struct call *next = c->next;
        call_destroy(c);
        c = next;
    }
}

/* Every caller of the call gets ok=false. */
static void fail_call(struct call *c)
{
    if (c->answered)
        return;
    c->answered = true;
    if (c->kind != OP_BATCH) {
        atomic_fetch_add(&lim_redis_errors, 1);
        c->cb(false, NULL, c->arg);
        return;
    }
    atomic_fetch_add(&lim_redis_errors, (unsigned long)c->n);
    for (int i = 0; i < c->n; i++)
        if (c->ops[i].cb)
            c->ops[i].cb(false, NULL, c->ops[i].arg);
}

static void call_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct call *c = arg;
    count_call(LR_TIMEOUT);
    fail_call(c);
    if (c->retrying) { /* no connection holds it */
        call_free(c);
        return;
    }
    rcli_drop(c->r->cli, c->conn); /* its reply callback gets NULL and frees the call */
}

/* ---- arguments ---- */

static void arg_mem(struct call *c, const char *s, size_t len)
{
    rconn_bulk(&c->text, s, len);
    c->argc++;
}

static void arg_str(struct call *c, const char *s)
{
    arg_mem(c, s, strlen(s));
}

static void arg_int(struct call *c, int64_t v)
{
    char d[24];
    arg_mem(c, d, sl_fmt_int(v, d));
}

/* Redis key names. A key's counters share its name's hash tag, or its
 * team's when it has one, so that the key's and the team's counters are in
 * one Cluster slot: sluice:{KEY}:r, or sluice:{TEAM}:k:KEY:r and the team's
 * sluice:{TEAM}:t:r. An end user's follow the key's or the team's, with
 * "u", the id's length and the id: sluice:{KEY}:u5:alice:r,
 * sluice:{TEAM}:t:u5:alice:r. A name is the prefix and one letter: r, i, o
 * (windows), q (quota), b (budget) or f (max_inflight slots). */
enum { WHOSE_KEY, WHOSE_TEAM, WHOSE_USER, WHOSE_TEAM_USER, WHOSE_N };
struct names {
    char name[WHOSE_N][2 * LIM_NAME + LIM_USER + 32];
    size_t len[WHOSE_N];
};

static size_t put_str(char *out, const char *s)
{
    size_t n = strlen(s);
    memcpy(out, s, n);
    return n;
}

/* The user's prefix: the key's or the team's, then u<length>:<id>: */
static void user_name(struct names *n, int whose, int of, const char *user)
{
    char *p = n->name[whose];
    memcpy(p, n->name[of], n->len[of]);
    p += n->len[of];
    *p++ = 'u';
    size_t len = strlen(user);
    p += sl_fmt_int((int64_t)len, p);
    *p++ = ':';
    memcpy(p, user, len);
    p += len;
    *p++ = ':';
    n->len[whose] = (size_t)(p - n->name[whose]);
}

static void names_of(const struct call *c, struct names *n)
{
    const char *team = c->lim.team.name;
    char *p = n->name[WHOSE_KEY];
    p += put_str(p, "sluice:{");
    p += put_str(p, team[0] ? team : c->key);
    p += put_str(p, team[0] ? "}:k:" : "}:");
    if (team[0]) {
        p += put_str(p, c->key);
        *p++ = ':';
    }
    n->len[WHOSE_KEY] = (size_t)(p - n->name[WHOSE_KEY]);
    p = n->name[WHOSE_TEAM];
    p += put_str(p, "sluice:{");
    p += put_str(p, team);
    p += put_str(p, "}:t:");
    n->len[WHOSE_TEAM] = (size_t)(p - n->name[WHOSE_TEAM]);
    if (c->lim.user[0]) {
        user_name(n, WHOSE_USER, WHOSE_KEY, c->lim.user);
        user_name(n, WHOSE_TEAM_USER, WHOSE_TEAM, c->lim.user);
    }
}

static void arg_name(struct call *c, struct names *n, int whose, char what)
{
    char *name = n->name[whose];
    size_t len = n->len[whose];
    name[len] = what;
    arg_mem(c, name, len + 1);
}

static void arg_lease(struct call *c, int64_t lease)
{
    char name[LIM_LEASE_NAME] = "-";
    if (lease)
        lim_lease_name(lease, name);
    arg_str(c, name);
}

static void arg_period(struct call *c, const char *id)
{
    arg_str(c, id[0] ? id : "-");
}

/* One argument of an operation, by its name in limit_script.h. */
static void admit_arg(struct call *c, const struct pend *o, enum ls_admit_arg a)
{
    switch (a) {
    case LS_A_COST:
        return arg_int(c, o->cost);
    case LS_A_FORCE:
        return arg_int(c, o->force);
    case LS_A_SPEND:
        return arg_int(c, o->spend);
    case LS_A_LEASE:
        return arg_lease(c, o->lease);
    case LS_A_DEADLINE:
    case LS_NADMIT_ARGS:
        return arg_int(c, c->deadline_ms);
    }
}

static void settle_arg(struct call *c, const struct pend *o, enum ls_settle_arg a)
{
    const struct lim_usage *u = &o->usage;
    switch (a) {
    case LS_S_BUCKET:
        return arg_int(c, o->bucket);
    case LS_S_INPUT_DELTA:
        return arg_int(c, u->input_delta);
    case LS_S_OUTPUT:
        return arg_int(c, u->output);
    case LS_S_RELEASE:
        return arg_int(c, u->release);
    case LS_S_QUOTA_DELTA:
        return arg_int(c, u->quota_delta);
    case LS_S_QUOTA_PERIOD:
        return arg_period(c, o->period[0]);
    case LS_S_SPEND_DELTA:
        return arg_int(c, u->spend_delta);
    case LS_S_BUDGET_PERIOD:
        return arg_period(c, o->period[1]);
    case LS_S_TEAM_BUDGET_PERIOD:
        return arg_period(c, o->period[2]);
    case LS_S_USER_BUDGET_PERIOD:
        return arg_period(c, o->period[3]);
    case LS_S_TEAM_USER_BUDGET_PERIOD:
        return arg_period(c, o->period[4]);
    case LS_S_LEASE:
    case LS_NSETTLE_ARGS:
        return arg_lease(c, o->lease);
    }
}

static void op_args(struct call *c, const struct pend *o)
{
    arg_mem(c, &o->kind, 1);
    if (o->kind == LS_OP_ADMIT)
        for (int a = 0; a < LS_NADMIT_ARGS; a++)
            admit_arg(c, o, (enum ls_admit_arg)a);
    else if (o->kind == LS_OP_SETTLE)
        for (int a = 0; a < LS_NSETTLE_ARGS; a++)
            settle_arg(c, o, (enum ls_settle_arg)a);
    else if (o->kind == LS_OP_RENEW)
        arg_lease(c, o->lease); /* LS_RENEW_ARGS: the lease alone */
}

/* The key names of a batch, in LS_KEYS_SOLO's or LS_KEYS_TEAM's order, then
 * the user's scopes' (LS_KEYS_USER, LS_KEYS_TEAM_USER) where the call has them. */
static void key_args(struct call *c, struct names *names, int scopes)
{
#define KEY_ARG(name, letter, whose) arg_name(c, names, whose, letter);
#define ONE(name, letter, whose) +1
    int user = (scopes & LIM_SCOPE_USER) ? 0 LS_KEYS_USER(ONE) : 0;
    int team_user = (scopes & LIM_SCOPE_TEAM_USER) ? 0 LS_KEYS_TEAM_USER(ONE) : 0;
    int spike = (scopes & SCOPE_SPIKE) ? 0 LS_KEYS_SPIKE(ONE) : 0;
    int team_spike = (scopes & SCOPE_TEAM_SPIKE) ? 0 LS_KEYS_TEAM_SPIKE(ONE) : 0;
    int more = user + team_user + spike + team_spike;
    if (scopes & 1) {
        arg_int(c, (0 LS_KEYS_TEAM(ONE)) + more);
        LS_KEYS_TEAM(KEY_ARG)
    } else {
        arg_int(c, (0 LS_KEYS_SOLO(ONE)) + more);
        LS_KEYS_SOLO(KEY_ARG)
    }
    if (user) {
        LS_KEYS_USER(KEY_ARG)
    }
    if (team_user) {
        LS_KEYS_TEAM_USER(KEY_ARG)
    }
    if (spike) {
        LS_KEYS_SPIKE(KEY_ARG)
    }
    if (team_spike) {
        LS_KEYS_TEAM_SPIKE(KEY_ARG)
    }
#undef ONE
#undef KEY_ARG
}

/* The counter `which` of lim: its scope in names, and its period kind. */
static int counter_whose(const struct lim_limits *lim, enum lim_counter which, int *period)
{
    switch (which) {
    case LIM_QUOTA:
        *period = lim->quota_period;
        return WHOSE_KEY;
    case LIM_BUDGET:
        *period = lim->budget_period;
        return WHOSE_KEY;
    case LIM_TEAM_BUDGET:
        *period = lim->team.budget_period;
        return WHOSE_TEAM;
    case LIM_USER_BUDGET:
        *period = lim->key_user.budget_period;
        return WHOSE_USER;
    case LIM_TEAM_USER_BUDGET:
    default:
        *period = lim->team_user.budget_period;
        return WHOSE_TEAM_USER;
    }
}

/* One counter alone (the admin API): COUNT_ARGS. */
static void count_args(struct call *c, struct names *names)
{
    struct lim_redis *r = c->r;
    const struct lim_limits *lim = &c->lim;
    int period = 0;
    int whose = counter_whose(lim, c->which, &period);
    arg_int(c, 1);
    arg_name(c, names, whose, c->which == LIM_QUOTA ? 'q' : 'b');
    int64_t v[LS_NCOUNT_ARGS] = {
        [LS_CARG_BUCKET_MS] = r->bucket_ms,
        [LS_CARG_WINDOW_MS] = r->window_ms,
        [LS_CARG_PERIOD] = period,
        [LS_CARG_CLOCK_OFFSET] = lim_clock_offset_s(),
        [LS_CARG_AMOUNT] = c->amount,
    };
    for (int a = 0; a < LS_NCOUNT_ARGS; a++) {
        if (a == LS_CARG_MODE)
            arg_str(c, op_modes[c->kind]);
        else
            arg_int(c, v[a]);
    }
}

/* The script's scopes of a call (limit_script.h: 1 team, 2 and 4 the user's,
 * 8 and 16 the spike arrests). */
static int scopes_of(const struct lim_limits *lim)
{
    return (lim->team.name[0] ? 1 : 0) |
           (lim_user_scope(lim, LIM_SCOPE_USER) ? LIM_SCOPE_USER : 0) |
           (lim_user_scope(lim, LIM_SCOPE_TEAM_USER) ? LIM_SCOPE_TEAM_USER : 0) |
           (lim->spike_us ? SCOPE_SPIKE : 0) |
           (lim->team.name[0] && lim->team.spike_us ? SCOPE_TEAM_SPIKE : 0);
}

/* Every batch argument's number, by its name in limit_script.h. */
static void batch_values(const struct call *c, int scopes, int64_t v[LS_NARGS_ALL])
{
    const struct lim_redis *r = c->r;
    const struct lim_limits *lim = &c->lim;
    const struct lim_team *t = &lim->team;
    const struct lim_user *u = &lim->key_user, *tu = &lim->team_user;
    const int64_t all[LS_NARGS_ALL] = {
        [LS_ARG_BUCKET_MS] = r->bucket_ms,
        [LS_ARG_WINDOW_MS] = r->window_ms,
        [LS_ARG_RPM] = lim->rpm,
        [LS_ARG_INPUT_TPM] = lim->input_tpm,
        [LS_ARG_OUTPUT_TPM] = lim->output_tpm,
        [LS_ARG_QUOTA] = lim->quota,
        [LS_ARG_QUOTA_PERIOD] = lim->quota_period,
        [LS_ARG_CLOCK_OFFSET] = lim_clock_offset_s(),
        [LS_ARG_BUDGET] = lim->budget,
        [LS_ARG_BUDGET_PERIOD] = lim->budget_period,
        [LS_ARG_MAX_INFLIGHT] = lim->max_inflight,
        [LS_ARG_LEASE_MS] = r->lease_ms,
        [LS_ARG_SCOPES] = scopes,
        [LS_ARG_TEAM_RPM] = t->rpm,
        [LS_ARG_TEAM_INPUT_TPM] = t->input_tpm,
        [LS_ARG_TEAM_OUTPUT_TPM] = t->output_tpm,
        [LS_ARG_TEAM_BUDGET] = t->budget,
        [LS_ARG_TEAM_BUDGET_PERIOD] = t->budget_period,
        [LS_ARG_TEAM_MAX_INFLIGHT] = t->max_inflight,
        [LS_ARG_USER_RPM] = u->rpm,
        [LS_ARG_USER_INPUT_TPM] = u->input_tpm,
        [LS_ARG_USER_OUTPUT_TPM] = u->output_tpm,
        [LS_ARG_USER_BUDGET] = u->budget,
        [LS_ARG_USER_BUDGET_PERIOD] = u->budget_period,
        [LS_ARG_USER_MAX_INFLIGHT] = u->max_inflight,
        [LS_ARG_TEAM_USER_RPM] = tu->rpm,
        [LS_ARG_TEAM_USER_INPUT_TPM] = tu->input_tpm,
        [LS_ARG_TEAM_USER_OUTPUT_TPM] = tu->output_tpm,
        [LS_ARG_TEAM_USER_BUDGET] = tu->budget,
        [LS_ARG_TEAM_USER_BUDGET_PERIOD] = tu->budget_period,
        [LS_ARG_TEAM_USER_MAX_INFLIGHT] = tu->max_inflight,
        [LS_ARG_SPIKE_US] = lim->spike_us,
        [LS_ARG_SPIKE_BURST] = lim->spike_burst,
        [LS_ARG_TEAM_SPIKE_US] = t->spike_us,
        [LS_ARG_TEAM_SPIKE_BURST] = t->spike_burst,
    };
    memcpy(v, all, sizeof(all));
}

/* EVALSHA of lua/limits.lua: the command, the key names and the arguments,
 * by limit_script.h's lists. */
static void args_build(struct call *c)
{
    int scopes = scopes_of(&c->lim);
    struct names names;
    names_of(c, &names);
    arg_str(c, c->r->no_functions ? "EVALSHA" : "FCALL");
    arg_str(c, c->r->no_functions ? c->r->sha : c->r->fname);
    c->script_args = c->text.len;
    if (c->kind != OP_BATCH)
        return count_args(c, &names);
    key_args(c, &names, scopes);
    int64_t v[LS_NARGS_ALL];
    batch_values(c, scopes, v);
    /* each scope's arguments only when the call has it */
    static const int from[] = { LS_ARG_TEAM_RPM, LS_ARG_USER_RPM, LS_ARG_TEAM_USER_RPM,
                                LS_ARG_SPIKE_US, LS_ARG_TEAM_SPIKE_US, LS_NARGS_ALL };
    for (int a = 0; a < LS_ARG_TEAM_RPM; a++) {
        if (a == LS_ARG_MODE)
            arg_str(c, op_modes[OP_BATCH]);
        else
            arg_int(c, v[a]);
    }
    for (int s = 0; s < 5; s++)
        if (scopes & (1 << s))
            for (int a = from[s]; a < from[s + 1]; a++)
                arg_int(c, v[a]);
    arg_int(c, c->n);
    for (int i = 0; i < c->n; i++)
        op_args(c, &c->ops[i]);
}

/* ---- replies ---- */

static void on_reply(struct rconn *conn, struct redisReply *rep, void *arg);
static bool send_call(struct call *c, struct rconn *conn);

static struct rconn *conn_for(struct call *c)
{
    const char *tag = c->lim.team.name[0] ? c->lim.team.name : c->key;
    return c->r->cli ? rcli_conn(c->r->cli, tag, strlen(tag)) : NULL;
}

/* TRYAGAIN's wait is over: the call goes to the slot's owner as the map now says. */
static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct call *c = arg;
    c->retrying = false;
    if (!send_call(c, conn_for(c))) {
        count_call(LR_DOWN);
        fail_call(c);
        call_free(c);
    }
}

/* FCALL or EVALSHA with the arguments, or after "not found" the script
 * itself (EVAL), on conn; false if it is closed. */
static bool send_call(struct call *c, struct rconn *conn)
{
    struct sl_buf *b = &c->r->resp;
    b->len = 0;
    sl_buf_append(b, "*", 1);
    sl_buf_int(b, c->argc);
    sl_buf_append(b, "\r\n", 2);
    if (c->resent) {
        rconn_bulk(b, "EVAL", 4);
        rconn_bulk(b, lua_limits, strlen(lua_limits));
        sl_buf_append(b, c->text.data + c->script_args, c->text.len - c->script_args);
    } else {
        sl_buf_append(b, c->text.data, c->text.len);
    }
    c->conn = conn;
    return conn && rconn_send(conn, b->data, b->len, on_reply, c);
}

/* A reply's slots (limit_script.h): a period id rather than a number, and
 * whether the compact reply has it. */
struct slot {
    bool text, compact;
};
#define SLOT_ROW(NAME, name, text, compact) { text, compact },
static const struct slot decision_slots[LS_NREPLY] = { LS_REPLY(SLOT_ROW) };
static const struct slot count_slots[LS_NCOUNT_REPLY] = { LS_COUNT_REPLY(SLOT_ROW) };
#undef SLOT_ROW
#define ONE_COMPACT(NAME, name, text, compact) +(compact)
enum { NCOMPACT_REPLY = 0 LS_REPLY(ONE_COMPACT) };
#undef ONE_COMPACT

/* The reply's slots by name: numbers into v, period ids into ids; a compact
 * reply leaves the slots it lacks 0 (or ""). */
static bool reply_slots(const redisReply *rep, const struct slot *slots, int n, bool compact,
                        int64_t *v, char (*ids)[LIM_PERIOD_ID])
{
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        v[i] = 0;
        ids[i][0] = '\0';
        if (compact && !slots[i].compact)
            continue;
        const redisReply *e = rep->element[k++];
        if (slots[i].text) {
            if (e->type != REDIS_REPLY_STRING || e->len >= LIM_PERIOD_ID)
                return false;
            memcpy(ids[i], e->str, e->len);
            ids[i][e->len] = '\0';
        } else if (e->type == REDIS_REPLY_INTEGER) {
            v[i] = e->integer;
        } else {
            return false;
        }
    }
    return true;
}

static void count_from(struct lim_count *c, int64_t used, int64_t reset_ms,
                       const char period[LIM_PERIOD_ID])
{
    c->used = used;
    c->reset_ms = reset_ms;
    memcpy(c->period, period, LIM_PERIOD_ID);
}

static bool parse_count(const redisReply *rep, enum lim_counter which, struct lim_decision *d)
{
    int64_t v[LS_NCOUNT_REPLY];
    char ids[LS_NCOUNT_REPLY][LIM_PERIOD_ID];
    memset(d, 0, sizeof(*d));
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != LS_NCOUNT_REPLY ||
        !reply_slots(rep, count_slots, LS_NCOUNT_REPLY, false, v, ids))
        return false;
    struct lim_count *c = which == LIM_BUDGET        ? &d->budget
                          : which == LIM_TEAM_BUDGET ? &d->team_budget
                          : which == LIM_USER_BUDGET ? &d->user.budget
                                                     : &d->team_user.budget;
    if (which == LIM_QUOTA) {
        d->used_quota = v[LS_C_USED];
        d->quota_reset_ms = v[LS_C_RESET_MS];
        memcpy(d->period, ids[LS_C_PERIOD], LIM_PERIOD_ID);
    } else {
        count_from(c, v[LS_C_USED], v[LS_C_RESET_MS], ids[LS_C_PERIOD]);
    }
    d->where = LIM_REDIS;
    return true;
}

/* A decision: REPLY, or COMPACT_REPLY for a key without budget or team. */
bool lim_redis_read_decision(const struct redisReply *rep, struct lim_decision *d)
{
    int64_t v[LS_NREPLY];
    char ids[LS_NREPLY][LIM_PERIOD_ID];
    if (rep->type != REDIS_REPLY_ARRAY ||
        (rep->elements != LS_NREPLY && rep->elements != NCOMPACT_REPLY))
        return false;
    if (!reply_slots(rep, decision_slots, LS_NREPLY, rep->elements == NCOMPACT_REPLY, v, ids))
        return false;
    if (v[LS_R_DIMENSION] < LIM_DIM_NONE || v[LS_R_DIMENSION] > LIM_DIM_LAST)
        return false; /* not the script's */
    memset(d, 0, sizeof(*d));
    d->admitted = v[LS_R_ADMITTED] == 1;
    d->dim = (enum lim_dim)v[LS_R_DIMENSION];
    d->limit = v[LS_R_LIMIT];
    d->used = v[LS_R_USED];
    d->requested = v[LS_R_REQUESTED];
    d->retry_ms = v[LS_R_RETRY_MS];
    d->bucket = v[LS_R_BUCKET];
    d->used_requests = v[LS_R_USED_REQUESTS];
    d->reset_requests_ms = v[LS_R_RESET_REQUESTS_MS];
    d->used_input = v[LS_R_USED_INPUT];
    d->reset_input_ms = v[LS_R_RESET_INPUT_MS];
    d->used_output = v[LS_R_USED_OUTPUT];
    d->reset_output_ms = v[LS_R_RESET_OUTPUT_MS];
    d->used_quota = v[LS_R_USED_QUOTA];
    d->quota_reset_ms = v[LS_R_QUOTA_RESET_MS];
    memcpy(d->period, ids[LS_R_QUOTA_PERIOD], LIM_PERIOD_ID);
    count_from(&d->budget, v[LS_R_SPENT], v[LS_R_BUDGET_RESET_MS], ids[LS_R_BUDGET_PERIOD]);
    d->team_requests = v[LS_R_TEAM_REQUESTS];
    d->team_input = v[LS_R_TEAM_INPUT];
    d->team_output = v[LS_R_TEAM_OUTPUT];
    count_from(&d->team_budget, v[LS_R_TEAM_SPENT], v[LS_R_TEAM_BUDGET_RESET_MS],
               ids[LS_R_TEAM_BUDGET_PERIOD]);
    d->used_inflight = v[LS_R_SLOTS];
    d->team_inflight = v[LS_R_TEAM_SLOTS];
    d->user = (struct lim_user_use){ .requests = v[LS_R_USER_REQUESTS],
                                     .input = v[LS_R_USER_INPUT],
                                     .output = v[LS_R_USER_OUTPUT],
                                     .inflight = v[LS_R_USER_SLOTS] };
    count_from(&d->user.budget, v[LS_R_USER_SPENT], v[LS_R_USER_BUDGET_RESET_MS],
               ids[LS_R_USER_BUDGET_PERIOD]);
    d->team_user = (struct lim_user_use){ .requests = v[LS_R_TEAM_USER_REQUESTS],
                                          .input = v[LS_R_TEAM_USER_INPUT],
                                          .output = v[LS_R_TEAM_USER_OUTPUT],
                                          .inflight = v[LS_R_TEAM_USER_SLOTS] };
    count_from(&d->team_user.budget, v[LS_R_TEAM_USER_SPENT], v[LS_R_TEAM_USER_BUDGET_RESET_MS],
               ids[LS_R_TEAM_USER_BUDGET_PERIOD]);
    d->where = LIM_REDIS;
    return true;
}

/* Answers the call's callers; false if the reply is not the script's. */
static bool answer(struct call *c, const redisReply *rep)
{
    struct lim_decision d[BATCH_MAX];
    if (c->kind != OP_BATCH) {
        if (!parse_count(rep, c->which, &d[0]))
            return false;
        c->answered = true;
        c->cb(true, &d[0], c->arg);
        return true;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != (size_t)c->n)
        return false;
    for (int i = 0; i < c->n; i++) {
        const struct pend *o = &c->ops[i];
        if (o->kind != LS_OP_SETTLE && o->kind != LS_OP_RENEW &&
            !lim_redis_read_decision(rep->element[i], &d[i]))
            return false;
        if (o->kind == LS_OP_ADMIT && d[i].admitted)
            d[i].lease = o->lease;
    }
    c->answered = true;
    for (int i = 0; i < c->n; i++)
        if (c->ops[i].cb)
            c->ops[i].cb(true, &d[i], c->ops[i].arg);
    return true;
}

/* The call goes again in TRYAGAIN_WAIT_MS, where the slot map then says. */
static bool retry_later(struct call *c)
{
    if (!c->retry_ev)
        c->retry_ev = evtimer_new(c->r->base, retry_cb, c);
    c->retrying = true;
    c->conn = NULL;
    struct timeval tv = { 0, TRYAGAIN_WAIT_MS * 1000 };
    evtimer_add(c->retry_ev, &tv);
    return true;
}

/* An error reply that asks for the call again: the function or script not
 * there (or functions refused) on the same connection, MOVED or ASK on
 * another. True if it was sent again. */
static bool resend(struct call *c, struct rconn *conn, const redisReply *rep)
{
    if (c->answered || !rep || rep->type != REDIS_REPLY_ERROR || c->r->closing)
        return false;
    bool refused = functions_refused(rep->str);
    if (refused)
        no_functions(c->r, rep->str);
    bool gone = strncmp(rep->str, "ERR Function not found", 22) == 0; /* FUNCTION FLUSH */
    if (gone) {
        const char *load[] = { "FUNCTION", "LOAD", c->r->library };
        rconn_sendv(conn, 3, load, NULL, library_reply, c->r);
    }
    if (!c->resent && (refused || gone || strncmp(rep->str, "NOSCRIPT", 8) == 0)) {
        c->resent = true;
        return send_call(c, conn);
    }
    struct rconn *to = NULL;
    enum rcli_redirect how = RCLI_NONE;
    bool tryagain = strncmp(rep->str, "TRYAGAIN", 8) == 0;
    if (!tryagain)
        how = rcli_redirected(c->r->cli, conn, rep->str, &to);
    if (how != RCLI_NONE)
        count_call(how == RCLI_ASK ? LR_ASK : LR_MOVED);
    else if (tryagain)
        count_call(LR_TRYAGAIN);
    else
        return false;
    /* the first redirections at once; then, as a slot's move settles (its
     * nodes learn the new owner one by one), a short wait before each */
    if (how != RCLI_NONE && ++c->redirects <= REDIRECTS_NOW) {
        if (how == RCLI_ASK) {
            const char *argv[] = { "ASKING" };
            rconn_sendv(to, 1, argv, NULL, NULL, NULL);
        }
        return send_call(c, to);
    }
    if (++c->tries > TRYAGAIN_MAX)
        return false;
    return retry_later(c);
}

static void on_reply(struct rconn *conn, struct redisReply *rep, void *arg)
{
    struct call *c = arg;
    struct lim_redis *r = c->r;
    if (resend(c, conn, rep))
        return;
    if (!c->answered) {
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            count_call(rep ? LR_ERROR : LR_DOWN);
            if (rep)
                log_warn("worker %d: redis script error: %s", r->worker_id, rep->str);
            fail_call(c);
        } else if (count_call(LR_OK), time_call(c->sent_us), !answer(c, rep)) {
            log_warn("worker %d: redis: unexpected reply from the limits script", r->worker_id);
            fail_call(c);
        }
    }
    call_free(c);
}

/* ---- sending ---- */

static void send_now(struct call *c)
{
    struct lim_redis *r = c->r;
    /* The moment call_timeout gives up, in Redis's clock: an admission run
     * later (a paused or stalled Redis) must not take what sluice already
     * decided without it. */
    c->deadline_ms =
        r->clock_known ? (sl_wall_us() + r->clock_offset_us) / 1000 + r->timeout_ms : 0;
    args_build(c);
    c->sent_us = sl_now_us();
    if (!send_call(c, conn_for(c))) {
        count_call(LR_DOWN);
        fail_call(c);
        call_free(c);
        return;
    }
    if (!c->timer)
        c->timer = evtimer_new(r->base, call_timeout, c);
    struct timeval tv = { (time_t)(r->timeout_ms / 1000), (suseconds_t)(r->timeout_ms % 1000) * 1000 };
    evtimer_add(c->timer, &tv);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lim_redis *r = arg;
    struct call *c = r->queue;
    r->queue = NULL;
    r->queue_tail = &r->queue;
    while (c) {
        struct call *next = c->next;
        c->next = NULL;
        send_now(c);
        c = next;
    }
}

/* The batches not sent yet fail (lim_redis_free). */
static void drop_queue(struct lim_redis *r)
{
    struct call *c = r->queue;
    r->queue = NULL;
    r->queue_tail = &r->queue;
    while (c) {
        struct call *next = c->next;
        fail_call(c);
        call_free(c);
        c = next;
    }
}

static bool same_user(const struct lim_user *a, const struct lim_user *b)
{
    return a->rpm == b->rpm && a->input_tpm == b->input_tpm && a->output_tpm == b->output_tpm &&
           a->budget == b->budget && a->budget_period == b->budget_period &&
           a->max_inflight == b->max_inflight;
}

static bool same_limits(const struct lim_limits *a, const struct lim_limits *b)
{
    const struct lim_team *at = &a->team, *bt = &b->team;
    return a->rpm == b->rpm && a->input_tpm == b->input_tpm && a->output_tpm == b->output_tpm &&
           a->quota == b->quota && a->quota_period == b->quota_period &&
           a->budget == b->budget && a->budget_period == b->budget_period &&
           a->shadow == b->shadow && a->max_inflight == b->max_inflight &&
           at->max_inflight == bt->max_inflight && strcmp(at->name, bt->name) == 0 &&
           at->rpm == bt->rpm &&
           at->input_tpm == bt->input_tpm && at->output_tpm == bt->output_tpm &&
           at->budget == bt->budget && at->budget_period == bt->budget_period &&
           strcmp(a->user, b->user) == 0 && same_user(&a->key_user, &b->key_user) &&
           same_user(&a->team_user, &b->team_user) && a->spike_us == b->spike_us &&
           a->spike_burst == b->spike_burst && at->spike_us == bt->spike_us &&
           at->spike_burst == bt->spike_burst;
}

static struct call *find_call(struct call *list, const char *key, const struct lim_limits *lim)
{
    struct call *c = NULL;
    for (struct call *q = list; q; q = q->next)
        if (q->n < BATCH_MAX && strcmp(q->key, key) == 0 && same_limits(&q->lim, lim))
            c = q;
    return c;
}

static void queue_call(struct lim_redis *r, struct call *c)
{
    if (!r->queue)
        event_active(r->flush_ev, EV_READ, 0);
    c->next = NULL;
    *r->queue_tail = c;
    r->queue_tail = &c->next;
}

/* The held settlements go now, or in this loop pass's calls. */
static void send_held(struct lim_redis *r, bool now)
{
    struct call *c = r->held;
    r->held = NULL;
    r->nheld = 0;
    while (c) {
        struct call *next = c->next;
        if (now) {
            c->next = NULL;
            send_now(c);
        } else {
            queue_call(r, c);
        }
        c = next;
    }
}

static void hold_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_held(arg, false);
}

/* Queues one operation in the key's batch of this loop pass; a settlement
 * with no such batch is held for the key's next one. An admission or peek
 * takes its key's held settlements along, ahead of it. */
static void enqueue(struct lim_redis *r, const char *key, const struct lim_limits *lim,
                    const struct pend *o)
{
    if (!lim_redis_up(r)) {
        atomic_fetch_add(&lim_redis_errors, 1);
        if (o->cb)
            o->cb(false, NULL, o->arg);
        return;
    }
    struct call *c = find_call(r->queue, key, lim);
    if (!c && o->kind == LS_OP_SETTLE && !o->lease) { /* a slot to free goes at once */
        c = find_call(r->held, key, lim);
        if (!c) {
            c = call_new(r, OP_BATCH, key, lim);
            c->next = r->held;
            r->held = c;
            if (++r->nheld >= HELD_MAX) {
                c->ops[c->n++] = *o;
                send_held(r, false);
                return;
            }
            if (!evtimer_pending(r->hold_ev, NULL)) {
                struct timeval tv = { 0, HOLD_MS * 1000 };
                evtimer_add(r->hold_ev, &tv);
            }
        }
    } else if (!c) {
        c = find_call(r->held, key, lim);
        if (c) { /* out of the held list, into this pass's */
            struct call **p = &r->held;
            while (*p != c)
                p = &(*p)->next;
            *p = c->next;
            r->nheld--;
        } else {
            c = call_new(r, OP_BATCH, key, lim);
        }
        queue_call(r, c);
    }
    c->ops[c->n++] = *o;
}

static void redis_admit(void *self, const char *key, const struct lim_limits *lim, int64_t cost,
                        int64_t spend, lim_answer cb, void *arg)
{
    struct lim_redis *r = self;
    struct pend o = { .kind = LS_OP_ADMIT, .cb = cb, .arg = arg, .cost = cost,
                      .force = lim->shadow, .spend = spend };
    if (lim_takes_slot(lim)) /* the slot's name, before Redis decides */
        o.lease = lim_lease_new();
    enqueue(r, key, lim, &o);
}

static void redis_peek(void *self, const char *key, const struct lim_limits *lim, lim_answer cb,
                       void *arg)
{
    struct lim_redis *r = self;
    struct pend o = { .kind = LS_OP_PEEK, .cb = cb, .arg = arg };
    enqueue(r, key, lim, &o);
}

static void redis_settle(void *self, const char *key, const struct lim_limits *lim,
                         const struct lim_decision *ticket, const struct lim_usage *u)
{
    struct lim_redis *r = self;
    struct pend o = { .kind = LS_OP_SETTLE, .bucket = ticket->bucket, .usage = *u,
                      .lease = ticket->lease };
    memcpy(o.period[0], ticket->period, LIM_PERIOD_ID);
    memcpy(o.period[1], ticket->budget.period, LIM_PERIOD_ID);
    memcpy(o.period[2], ticket->team_budget.period, LIM_PERIOD_ID);
    memcpy(o.period[3], ticket->user.budget.period, LIM_PERIOD_ID);
    memcpy(o.period[4], ticket->team_user.budget.period, LIM_PERIOD_ID);
    enqueue(r, key, lim, &o);
}

/* Extends the ticket's lease by lease_ms from now. */
static void redis_renew(void *self, const char *key, const struct lim_limits *lim,
                        const struct lim_decision *ticket)
{
    struct lim_redis *r = self;
    struct pend o = { .kind = LS_OP_RENEW, .lease = ticket->lease };
    enqueue(r, key, lim, &o);
}

static void redis_count(void *self, const char *key, const struct lim_limits *lim,
                        enum lim_counter which, enum lim_quota_op op, int64_t amount,
                        lim_answer cb, void *arg)
{
    struct lim_redis *r = self;
    int kind = op == LIM_QUOTA_RESET ? OP_CRESET : op == LIM_QUOTA_ADD ? OP_CADD : OP_CPEEK;
    send_held(r, true); /* first: the counter as every settlement made so far left it */
    struct call *c = call_new(r, kind, key, lim);
    c->which = which;
    c->amount = amount;
    c->cb = cb;
    c->arg = arg;
    send_now(c);
}

/* ---- the operations table over a struct lim_redis ---- */

static bool redis_up(const void *self)
{
    return lim_redis_up(self);
}

/* ---- owners of stored resources: plain commands ---- */

/* sluice:own:{ID}: one record per resource, in the id's own Cluster slot. */
#define OWN_PREFIX "sluice:own:{"

/* The owners of n ids: one MGET. */
struct owners_call {
    lim_owners_cb cb;
    void *arg;
};

static void owners_replied(bool ok, const redisReply *rep, void *arg)
{
    struct owners_call *q = arg;
    ok = ok && rep->type == REDIS_REPLY_ARRAY && rep->elements <= LIM_OWNERS_MAX;
    const char **owners = sl_calloc(ok ? rep->elements + 1 : 1, sizeof(*owners));
    for (size_t i = 0; ok && i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        ok = e->type == REDIS_REPLY_NIL || e->type == REDIS_REPLY_STRING;
        owners[i] = e->type == REDIS_REPLY_STRING ? e->str : NULL;
    }
    if (!ok && rep)
        atomic_fetch_add(&lim_redis_errors, 1);
    q->cb(ok, ok ? owners : NULL, q->arg);
    free(owners);
    free(q);
}

static void redis_command(void *self, int argc, const char **argv, const size_t *lens,
                          lim_reply_cb cb, void *arg);

/* A cluster's lookup: one GET per record (their slots differ), the answer
 * when the last is in. */
struct owners_gather {
    lim_owners_cb cb;
    void *arg;
    int n, left;
    bool ok;
    char **owners;
};

struct owners_one {
    struct owners_gather *g;
    int i;
};

static void owner_got(bool ok, const redisReply *rep, void *arg)
{
    struct owners_one *one = arg;
    struct owners_gather *g = one->g;
    if (!ok || (rep->type != REDIS_REPLY_NIL && rep->type != REDIS_REPLY_STRING))
        g->ok = false;
    else if (rep->type == REDIS_REPLY_STRING)
        g->owners[one->i] = sl_strdup(rep->str);
    free(one);
    if (--g->left)
        return;
    g->cb(g->ok, g->ok ? (const char **)g->owners : NULL, g->arg);
    for (int i = 0; i < g->n; i++)
        free(g->owners[i]);
    free(g->owners);
    free(g);
}

static void owners_apart(struct lim_redis *r, const char *const *keys, int n, lim_owners_cb cb,
                         void *arg)
{
    struct owners_gather *g = sl_calloc(1, sizeof(*g));
    *g = (struct owners_gather){ cb, arg, n, n, true, sl_calloc((size_t)n + 1, sizeof(char *)) };
    for (int i = 0; i < n; i++) {
        struct owners_one *one = sl_malloc(sizeof(*one));
        *one = (struct owners_one){ g, i };
        const char *argv[] = { "GET", keys[i] };
        redis_command(r, 2, argv, NULL, owner_got, one);
    }
}

static void redis_owners(void *self, const char *const *ids, int n, lim_owners_cb cb, void *arg)
{
    n = SL_MIN(n, LIM_OWNERS_MAX);
    const char *argv[LIM_OWNERS_MAX + 1] = { "MGET" };
    char *keys[LIM_OWNERS_MAX];
    for (int i = 0; i < n; i++) {
        size_t len = strlen(ids[i]);
        keys[i] = sl_malloc(len + sizeof(OWN_PREFIX) + 1);
        memcpy(keys[i], OWN_PREFIX, sizeof(OWN_PREFIX) - 1);
        memcpy(keys[i] + sizeof(OWN_PREFIX) - 1, ids[i], len);
        memcpy(keys[i] + sizeof(OWN_PREFIX) - 1 + len, "}", 2);
        argv[i + 1] = keys[i];
    }
    struct lim_redis *r = self;
    if (r->url.form == REDIS_CLUSTER && n > 1) /* each record in its own slot */
        owners_apart(r, argv + 1, n, cb, arg);
    else {
        struct owners_call *q = sl_malloc(sizeof(*q));
        *q = (struct owners_call){ cb, arg };
        redis_command(self, n + 1, argv, NULL, owners_replied, q);
    }
    for (int i = 0; i < n; i++)
        free(keys[i]);
}

/* A record being written: done runs at the reply, or at the timeout. */
struct own_call {
    lim_done_cb done; /* may be NULL */
    void *arg;
    char id[];
};

static void own_replied(bool ok, const redisReply *rep, void *arg)
{
    (void)rep;
    struct own_call *q = arg;
    if (!ok)
        log_warn("redis: the owner record of %s was not written", q->id);
    if (q->done)
        q->done(ok, q->arg);
    free(q);
}

static void redis_own(void *self, const char *id, const char *owner, int64_t ttl_s,
                      lim_done_cb done, void *arg)
{
    char key[256], ttl[24];
    snprintf(key, sizeof(key), OWN_PREFIX "%s}", id);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
    const char *argv[5] = { owner ? "SET" : "DEL", key, owner, "EX", ttl };
    int argc = !owner ? 2 : ttl_s ? 5 : 3;
    size_t len = strlen(id);
    struct own_call *q = sl_calloc(1, sizeof(*q) + len + 1);
    q->done = done;
    q->arg = arg;
    memcpy(q->id, id, len + 1);
    redis_command(self, argc, argv, NULL, own_replied, q);
}

/* ---- plain commands (runtime keys) ---- */

struct cmd_call {
    struct lim_redis *r;
    lim_reply_cb cb; /* NULL once answered */
    void *arg;
    struct rconn *conn;
    struct event *timer;
};

static void cmd_answer(struct cmd_call *q, bool ok, const redisReply *rep)
{
    lim_reply_cb cb = q->cb;
    q->cb = NULL;
    if (!ok)
        atomic_fetch_add(&lim_redis_errors, 1);
    if (cb)
        cb(ok, ok ? rep : NULL, q->arg);
}

static void cmd_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cmd_call *q = arg;
    cmd_answer(q, false, NULL);
    rcli_drop(q->r->cli, q->conn); /* cmd_reply gets NULL and frees q */
}

static void cmd_reply(struct rconn *conn, struct redisReply *rep, void *arg)
{
    (void)conn;
    struct cmd_call *q = arg;
    if (q->cb) /* unless the timeout answered */
        cmd_answer(q, rep && rep->type != REDIS_REPLY_ERROR, rep);
    if (q->timer)
        event_free(q->timer);
    free(q);
}

/* The key a command's slot comes from: EVAL's first key (or, with none, its
 * first argument with a {hash tag}: the runtime keys' scripts), else the
 * command's first argument. */
static const char *command_key(int argc, const char **argv, size_t *len, const size_t *lens)
{
    int at = 1;
    if (argc > 3 && (strcasecmp(argv[0], "EVAL") == 0 || strcasecmp(argv[0], "EVALSHA") == 0)) {
        at = 3;
        if (strcmp(argv[2], "0") == 0) /* keys named in the arguments: the first hash tag's slot */
            for (at = 3; at < argc && !strchr(argv[at], '{'); at++)
                ;
    }
    if (at >= argc) {
        *len = 0;
        return "";
    }
    *len = lens ? lens[at] : strlen(argv[at]);
    return argv[at];
}

static void redis_command(void *self, int argc, const char **argv, const size_t *lens,
                          lim_reply_cb cb, void *arg)
{
    struct lim_redis *r = self;
    struct cmd_call *q = sl_calloc(1, sizeof(*q));
    size_t klen;
    const char *key = command_key(argc, argv, &klen, lens);
    *q = (struct cmd_call){ r, cb, arg, r->cli ? rcli_conn(r->cli, key, klen) : NULL, NULL };
    if (!q->conn ||
        !rconn_sendv(q->conn, argc, (const char *const *)argv, lens, cmd_reply, q)) {
        cmd_answer(q, false, NULL);
        free(q);
        return;
    }
    q->timer = evtimer_new(r->base, cmd_timeout, q);
    struct timeval tv = { (time_t)(r->timeout_ms / 1000), (suseconds_t)(r->timeout_ms % 1000) * 1000 };
    evtimer_add(q->timer, &tv);
}

/* ---- a channel's messages (runtime keys' changes) ---- */

static void sub_push(struct rconn *c, struct redisReply *rep, void *arg)
{
    (void)c;
    const struct sub *s = arg;
    s->cb(true, rep, s->arg);
}

static void redis_subscribe(void *self, const char *channel, lim_reply_cb cb, void *arg)
{
    struct lim_redis *r = self;
    if (!r->cli)
        return;
    r->sub = (struct sub){ cb, arg };
    rcli_subscribe(r->cli, channel, sub_push, &r->sub);
}

const struct lim_ops lim_redis_ops = {
    .where = LIM_REDIS,
    .up = redis_up,
    .admit = redis_admit,
    .peek = redis_peek,
    .count = redis_count,
    .settle = redis_settle,
    .renew = redis_renew,
    .owners = redis_owners,
    .own = redis_own,
    .command = redis_command,
    .subscribe = redis_subscribe,
};
