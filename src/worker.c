/* Worker threads. Each worker runs its own event loop; the main thread only
 * handles signals and asks workers to stop. */
#include "sluice/worker.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/auth.h"
#include "sluice/config.h"
#include "sluice/generation.h"
#include "sluice/http.h"
#include "sluice/jwks.h"
#include "sluice/limit_local.h"
#include "sluice/keystore.h"
#include "sluice/limit_redis.h"
#include "sluice/log.h"
#include "sluice/models.h"
#include "sluice/pool.h"
#include "sluice/proxy.h"
#include "sluice/server.h"
#include "sluice/spend.h"
#include "sluice/telemetry.h"
#include "sluice/upstream.h"
#include "sluice/util.h"

/* Client connections per worker: max_connections shared out, or half the
 * descriptors (the other half is for upstream connections, Redis, logs). */
static int64_t connections_per_worker(const struct config *c)
{
    int64_t total = c->server.max_connections;
    if (!total) {
        struct rlimit rl;
        total = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                    ? ((int64_t)rl.rlim_cur - 64) / 2
                    : 10000;
    }
    int64_t workers = c->server.workers ? c->server.workers : sysconf(_SC_NPROCESSORS_ONLN);
    workers = SL_MAX(workers, 1);
    return SL_MAX((total + workers - 1) / workers, 16);
}

static struct http_limits limits_of(const struct config *c)
{
    return (struct http_limits){
        .max_connections = connections_per_worker(c),
        .max_buffered = c->server.max_buffered,
        .max_buffered_share = c->server.max_buffered_per_key,
        .max_header_size = c->server.max_header_size,
        .max_body_size = c->server.max_body_size,
        .header_timeout_ms = c->server.header_timeout_ms,
        .body_timeout_ms = c->server.body_timeout_ms,
        .keepalive_timeout_ms = c->server.keepalive_timeout_ms,
        .send_timeout_ms = c->server.send_timeout_ms,
    };
}

#define DRAIN_POLL_MS 20

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    /* Done when every connection is closed: requests answered and their last
     * bytes flushed (idle ones are closed on each pass). */
    http_server_close_idle(w->http);
    if (http_server_connections(w->http) == 0) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    if (sl_now_ms() >= w->drain_deadline_ms) {
        log_warn("worker %d: shutdown_timeout reached with %d requests in flight; closing them",
                 w->id, http_server_busy(w->http));
        event_base_loopbreak(w->base);
        return;
    }
    struct timeval tv = { 0, DRAIN_POLL_MS * 1000 };
    evtimer_add(w->drain_ev, &tv);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    http_server_stop_accepting(w->http);
    event_del(w->heartbeat_ev); /* the loop must end once the connections are gone */
    if (w->spend_ev)
        event_del(w->spend_ev);
    w->drain_deadline_ms = sl_now_ms() + w->gen->cfg->server.shutdown_timeout_ms;
    drain_cb(-1, 0, w);
}

static bool same_redis(const struct cfg_redis *a, const struct cfg_redis *b)
{
    return a->enabled == b->enabled && a->timeout_ms == b->timeout_ms &&
           (!a->enabled || (strcmp(a->url, b->url) == 0 && sl_streq0(a->ca_file, b->ca_file) &&
                            sl_streq0(a->client_cert, b->client_cert) &&
                            sl_streq0(a->client_key, b->client_key) &&
                            a->tls_verify == b->tls_verify));
}

/* Runs in the worker's thread: new requests start on the new generation;
 * requests in flight keep theirs. */
/* The worker's connection to the limiter all nodes share: Redis with
 * [redis], else none. */
static struct lim_backend shared_limiter(struct worker *w, const struct generation *g)
{
    if (!g->cfg->redis.enabled)
        return (struct lim_backend){ NULL, NULL };
    return (struct lim_backend){ &lim_redis_ops,
                                 lim_redis_new(w->base, &g->cfg->redis, lim_window_ms(), w->id) };
}

static void reload_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    pthread_mutex_lock(&w->pending_lock);
    struct generation *g = w->pending;
    w->pending = NULL;
    pthread_mutex_unlock(&w->pending_lock);
    if (!g)
        return;
    struct generation *old = w->gen;
    w->gen = g;
    struct http_limits limits = limits_of(g->cfg);
    http_server_set_limits(w->http, &limits);
    if (g->cfg->tls) /* new certificates for new connections; a config without any keeps the old */
        http_server_set_tls(w->http, g->cfg->tls);
    w->limiter.on_error = g->cfg->redis.on_error;
    if (!same_redis(&old->cfg->redis, &g->cfg->redis)) {
        lim_redis_free(w->limiter.shared.self);
        w->limiter.shared = shared_limiter(w, g);
        keystore_rewatch(w->keys, &w->limiter); /* the change channel, on the new Redis */
    }
    gen_unref(old);
}

void worker_set_generation(struct worker *w, struct generation *g)
{
    pthread_mutex_lock(&w->pending_lock);
    if (w->pending)
        gen_unref(w->pending);
    w->pending = gen_ref(g);
    pthread_mutex_unlock(&w->pending_lock);
    event_active(w->reload_ev, EV_READ, 0);
}

#define HEARTBEAT_MS 1000

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    atomic_store(&w->heartbeat_ms, sl_now_ms());
}

static void spend_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    spend_refresh(arg);
}

struct worker *worker_new(int id, struct generation *gen, struct lim_local *local, const int *fds,
                          const int *kinds, const bool *tls, int nfds)
{
    struct worker *w = sl_calloc(1, sizeof(*w));
    w->id = id;
    w->gen = gen_ref(gen);
    /* The changelist folds a delete and re-add of one fd within a loop turn
     * into one epoll_ctl; curl re-registers its sockets on every transfer. */
    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base) {
        free(w);
        return NULL;
    }
    struct http_limits limits = limits_of(gen->cfg);
    w->http = http_server_new(w->base, &limits, srv_handle, w);
    http_server_set_head_handler(w->http, srv_head);
    http_server_send_request_ids(w->http);
    for (int i = 0; i < nfds; i++)
        http_server_listen(w->http, fds[i], kinds[i], tls[i]);
    if (gen->cfg->tls)
        http_server_set_tls(w->http, gen->cfg->tls);
    w->up = up_multi_new(w->base);
    w->tel = tel_exporter_new(w->base, w->up);
    w->models = models_cache_new();
    w->jwt_cache = jwks_cache_new();
    w->limiter.local = (struct lim_backend){ &lim_local_ops, local };
    w->limiter.on_error = gen->cfg->redis.on_error;
    w->limiter.shared = shared_limiter(w, gen);
    w->stop_ev = event_new(w->base, -1, 0, stop_cb, w);
    w->drain_ev = evtimer_new(w->base, drain_cb, w);
    w->reload_ev = event_new(w->base, -1, 0, reload_cb, w);
    pthread_mutex_init(&w->pending_lock, NULL);
    atomic_init(&w->heartbeat_ms, sl_now_ms());
    w->heartbeat_ev = event_new(w->base, -1, EV_PERSIST, heartbeat_cb, w);
    struct timeval tv = { HEARTBEAT_MS / 1000, (HEARTBEAT_MS % 1000) * 1000 };
    event_add(w->heartbeat_ev, &tv);
    if (id == 0) { /* one worker reads the budgets for the whole node */
        w->spend_ev = event_new(w->base, -1, EV_PERSIST, spend_cb, w);
        struct timeval every = { SPEND_REFRESH_MS / 1000, (SPEND_REFRESH_MS % 1000) * 1000 };
        event_add(w->spend_ev, &every);
    }
    return w;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

int worker_start(struct worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w);
}

void worker_request_stop(struct worker *w)
{
    if (!atomic_exchange(&w->stop_requested, true))
        event_active(w->stop_ev, EV_READ, 0);
}

void worker_join(struct worker *w)
{
    pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    http_server_free(w->http); /* aborts what is left, which cancels its transfers */
    lim_redis_free(w->limiter.shared.self); /* answers admissions still waiting */
    lim_debts_free(&w->limiter);
    models_cache_free(w->models);     /* before the curl multi its fetches run on */
    tel_exporter_free(w->tel);        /* likewise its export */
    up_multi_free(w->up);
    proxy_worker_free(w);
    jwks_cache_free(w->jwt_cache);
    event_free(w->stop_ev);
    event_free(w->drain_ev);
    event_free(w->reload_ev);
    event_free(w->heartbeat_ev);
    if (w->spend_ev)
        event_free(w->spend_ev);
    if (w->pending)
        gen_unref(w->pending);
    pthread_mutex_destroy(&w->pending_lock);
    event_base_free(w->base);
    gen_unref(w->gen);
    free(w);
}
