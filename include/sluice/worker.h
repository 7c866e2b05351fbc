/* A worker is one event-loop thread: its own event_base, client listener,
 * curl multi (and later Redis connection). A generation is one loaded config
 * with what is derived from it (key table, pool); requests hold a reference
 * to the generation they started on, so a reload never pulls it away. */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sluice/limit.h"
#include <stdbool.h>

struct config;
struct auth_table;
struct pool;
struct event_base;
struct event;
struct http_server;
struct up_multi;
struct sl_request;

struct generation {
    atomic_int refs;
    uint64_t id; /* unique for the process's life: tells generations apart, addresses may not */
    struct config *cfg;
    struct auth_table *auth;
    struct pool *pool;
};

/* Takes the config's reference; prev (may be NULL) is the generation it
 * replaces, whose breaker states carry over. */
struct generation *gen_new(struct config *cfg, struct generation *prev);
struct generation *gen_ref(struct generation *g);
void gen_unref(struct generation *g);

struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct http_server *http;
    struct up_multi *up;
    struct models_cache *models; /* upstream model lists (models.c) */
    struct tel_exporter *tel;    /* spans for [telemetry] (telemetry.h) */
    struct limiter limiter;
    struct generation *gen; /* for new requests; owned reference */
    struct event *stop_ev;  /* activated from the main thread */
    struct event *reload_ev; /* likewise: takes `pending` as the new generation */
    pthread_mutex_t pending_lock;
    struct generation *pending;
    atomic_llong heartbeat_ms; /* last time the loop ran, for the watchdog */
    struct event *heartbeat_ev;
    struct event *spend_ev; /* worker 0: refreshes the budget gauges (spend.h) */
    struct event *drain_ev; /* polls for the end of in-flight requests */
    int64_t drain_deadline_ms;
    atomic_bool stop_requested;
    struct sl_request *spare_requests; /* finished request structs, for reuse (proxy.c) */
    int nspare_requests;
};

/* Creates a worker listening on the given sockets (their ownership passes;
 * tls[i]: socket i is a tls listener);
 * local is the node's in-process limiter, shared by all workers. */
struct worker *worker_new(int id, struct generation *gen, struct lim_local *local, const int *fds,
                          const int *kinds, const bool *tls, int nfds);
int worker_start(struct worker *w);
/* Asks the worker to stop accepting and finish in-flight requests within
 * shutdown_timeout; safe from any thread. */
void worker_request_stop(struct worker *w);
/* Hands the worker a new generation (a reference is taken); safe from any thread. */
void worker_set_generation(struct worker *w, struct generation *g);
void worker_join(struct worker *w);
void worker_free(struct worker *w);

#endif
