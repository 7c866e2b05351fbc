/* Backend selection, circuit breakers (per backend and model, and per
 * backend for its connection) and what each backend can take now.
 * Among the backends that serve a model (an index built per config: the
 * candidates of one model, not every backend), were not yet tried for this
 * request, are available (breaker closed, or half-open with its probe slot
 * free) and are not full (max_inflight open, or the upstream's own
 * x-ratelimit-remaining-* at zero until its reset), the lowest priority group
 * that has one wins; within it the [server] balance strategy chooses:
 * smooth weighted round-robin (as nginx's upstream module), least in-flight
 * per unit of weight, or peak-EWMA latency with two random choices (as
 * Finagle's and Linkerd's). One pool per node, shared by all workers under a
 * mutex. A backend's rpm/tpm windows are the limiter's (proxy.c asks it
 * after the pick); docs/pool.md. */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/outcome.h"

struct config;
struct pool;

#define POOL_MAX_BACKENDS 256
#define POOL_MAX_OPEN_MS (10 * 60 * 1000) /* longest an upstream's Retry-After may open a breaker */
#define POOL_INFLIGHT_WAIT_MS 1000        /* Retry-After when max_inflight is what is full */

enum breaker_state { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF_OPEN = 2 };

/* Backends already tried by one request. */
struct pool_tried {
    uint64_t bits[POOL_MAX_BACKENDS / 64];
};

/* What a pick hands over; report() or unpick() needs it back. */
struct pool_pick {
    int backend; /* -1: none available */
    bool probe;  /* this request is the probe of the backend's half-open breaker */
    /* With backend -1: ms until the first candidate passed over as full may
     * take requests again; -1 when none was full. */
    int64_t full_ms;
    int model, slot;  /* whose (backend, model) breaker judges it; -1: the backend's alone */
    bool probe_model; /* the probe of that pair's half-open breaker */
};

/* prev (may be NULL): the pool of the config being replaced; breakers,
 * round-robin and latency state of backends with the same name carry over,
 * and their in-flight counts are shared (requests of the old config still
 * hold slots). */
struct pool *pool_new(const struct config *cfg, struct pool *prev);
void pool_free(struct pool *p);

/* A backend for the model; it holds one in-flight slot until report() or
 * unpick(). tokens: what the request may use (prompt and the output it may
 * generate), for the upstream's own remaining-tokens. */
struct pool_pick pool_pick(struct pool *p, const char *model, size_t len, int64_t tokens,
                           struct pool_tried *tried);
/* That one backend (the stateful one), if available, not full and not yet
 * tried; its own breaker alone judges it. */
struct pool_pick pool_pick_backend(struct pool *p, int backend, int64_t tokens,
                                   struct pool_tried *tried);
/* The backend of an earlier pick, for the same model, once more (tried or
 * not), if its breakers let it through and it is not full. */
struct pool_pick pool_pick_again(struct pool *p, const struct pool_pick *last, int64_t tokens,
                                 struct pool_tried *tried);
/* A pick given back unused (its deployment windows were full): its slot and
 * probe are freed, no verdict. */
void pool_unpick(struct pool *p, const struct pool_pick *pick);
/* Milliseconds until that backend's breaker half-opens (0 if not open). */
int64_t pool_backend_available_ms(struct pool *p, int backend);
/* The outcome of an attempt, which ends its pick: its verdict (outcome.h)
 * moves the breaker, its label names the reason when that opens it (logged
 * at info, as every transition is). retry_after_ms >= 0 (an upstream's
 * Retry-After, with breaker_retry_after = yes) opens the breaker at once for
 * that long. */
void pool_report(struct pool *p, const struct pool_pick *pick, enum up_outcome outcome,
                 int64_t retry_after_ms);
/* A response head came after ttfb_us: the latency estimate's sample. */
void pool_observe(struct pool *p, int backend, int64_t ttfb_us);
/* What an upstream's x-ratelimit-remaining-* / -reset-* headers said; -1 where absent. */
struct pool_upstream_limits {
    int64_t remaining_requests, requests_reset_ms;
    int64_t remaining_tokens, tokens_reset_ms;
};
void pool_upstream_said(struct pool *p, int backend, const struct pool_upstream_limits *u);
/* Whether any backend serves the model at all. */
bool pool_serves(const struct pool *p, const char *model, size_t len);
/* Milliseconds until the first breaker of a backend serving the model half-opens. */
int64_t pool_next_available_ms(struct pool *p, const char *model, size_t len);
/* The state of the backend's own breaker (connection-level failures, calls
 * without a model). */
enum breaker_state pool_state(struct pool *p, int backend);
/* The state of the (backend, model) pair's breaker (closed if the backend
 * does not serve the model). */
enum breaker_state pool_pair_state(struct pool *p, int backend, const char *model, size_t len);
/* The (backend, model) breakers that have opened since the pool was made:
 * up to max of them in out; returns how many there are. */
struct pool_model_breaker {
    int backend;
    const char *model; /* "*": the names no backend or [model] section lists */
    enum breaker_state state;
    int64_t open_left_ms;
};
int pool_model_breakers(struct pool *p, struct pool_model_breaker *out, int max);
/* Requests open at the backend from this node (every config generation). */
int pool_inflight(struct pool *p, int backend);

/* Test hook: the pool's clock in ms (monotonic). */
int64_t pool_now_ms(void);

#endif
