/* Backend selection and circuit breakers. Among the backends that serve a
 * model, were not yet tried for this request and are available (breaker
 * closed, or half-open with its probe slot free), the lowest priority group
 * that has one wins; within it, smooth weighted round-robin (as nginx's
 * upstream module). One pool per node, shared by all workers under a mutex. */
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

enum breaker_state { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF_OPEN = 2 };

/* Backends already tried by one request. */
struct pool_tried {
    uint64_t bits[POOL_MAX_BACKENDS / 64];
};

/* What a pick hands over; report() needs it back. */
struct pool_pick {
    int backend; /* -1: none available */
    bool probe;  /* this request is the half-open probe */
};

/* prev (may be NULL): the pool of the config being replaced; breakers and
 * round-robin state of backends with the same name carry over. */
struct pool *pool_new(const struct config *cfg, struct pool *prev);
void pool_free(struct pool *p);

struct pool_pick pool_pick(struct pool *p, const char *model, size_t len, struct pool_tried *tried);
/* That one backend (the stateful one), if available and not yet tried. */
struct pool_pick pool_pick_backend(struct pool *p, int backend, struct pool_tried *tried);
/* Milliseconds until that backend's breaker half-opens (0 if not open). */
int64_t pool_backend_available_ms(struct pool *p, int backend);
/* The outcome of an attempt: its verdict (outcome.h) moves the breaker, its
 * label names the reason when that opens it (logged at info, as every
 * transition is). retry_after_ms >= 0 (an upstream's Retry-After, with
 * breaker_retry_after = yes) opens the breaker at once for that long. */
void pool_report(struct pool *p, const struct pool_pick *pick, enum up_outcome outcome,
                 int64_t retry_after_ms);
/* Whether any backend serves the model at all. */
bool pool_serves(const struct pool *p, const char *model, size_t len);
/* Milliseconds until the first breaker of a backend serving the model half-opens. */
int64_t pool_next_available_ms(struct pool *p, const char *model, size_t len);
enum breaker_state pool_state(struct pool *p, int backend);

/* Test hook: the pool's clock in ms (monotonic). */
int64_t pool_now_ms(void);

#endif
