/* The worker's type, apart from its thread functions (worker.h), as HAProxy
 * keeps *-t.h apart: handlers and services read a worker's parts (its event
 * base, curl multi, limiter, generation) without depending on the module that
 * starts threads and wires the router in. */
#ifndef SLUICE_WORKER_T_H
#define SLUICE_WORKER_T_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/limit.h"

struct event_base;
struct event;
struct generation;
struct http_server;
struct up_multi;
struct sl_request;
struct models_cache;
struct tel_exporter;
struct keystore;
struct jwks_store;
struct jwks_cache;
struct jwt_wait;

struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct http_server *http;
    struct up_multi *up;
    struct models_cache *models; /* upstream model lists (models.c) */
    struct tel_exporter *tel;    /* spans for [telemetry] (telemetry.h) */
    struct limiter limiter;
    struct keystore *keys;  /* runtime keys (keystore.h): the node's, borrowed */
    struct jwks_store *jwks; /* the identity provider's keys (jwks.h): the node's, borrowed */
    struct jwks_cache *jwt_cache; /* the JWTs this worker has checked */
    struct jwt_wait *jwt_waiting; /* requests held while the key set is fetched again */
    struct event *jwt_wake;       /* made active by the key store when a fetch ends */
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

#endif
