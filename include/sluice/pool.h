/* Backend selection: among the backends that serve a model and were not yet
 * tried for this request, the lowest priority group that has one; within a
 * group, smooth weighted round-robin (as nginx's upstream module does). One
 * pool per node, shared by all workers. */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct pool;

#define POOL_MAX_BACKENDS 256

/* Backends already tried by one request. */
struct pool_tried {
    uint64_t bits[POOL_MAX_BACKENDS / 64];
};

struct pool *pool_new(const struct config *cfg);
void pool_free(struct pool *p);

/* Index of the backend to try next, or -1. */
int pool_pick(struct pool *p, const char *model, size_t len, struct pool_tried *tried);
/* Whether any backend serves the model at all. */
bool pool_serves(const struct pool *p, const char *model, size_t len);

#endif
