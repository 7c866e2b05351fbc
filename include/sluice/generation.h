/* A generation is one loaded config with what is derived from it (key
 * table, pool). Requests hold a reference to the generation they started on,
 * so a reload never pulls it away; the last reference frees it. */
#ifndef SLUICE_GENERATION_H
#define SLUICE_GENERATION_H

#include <stdatomic.h>
#include <stdint.h>

struct config;
struct auth_table;
struct pool;

struct generation {
    atomic_int refs;
    uint64_t id; /* unique for the process's life: tells generations apart, addresses may not */
    struct config *cfg;
    struct auth_table *auth;
    struct pool *pool;
    struct http_share **key_shares; /* cfg->keys[i]'s part of max_buffered */
    atomic_llong *key_used;         /* when cfg->keys[i]'s use was last noted (keystore_used) */
};

/* Takes the config's reference; prev (may be NULL) is the generation it
 * replaces, whose breaker states carry over. */
struct generation *gen_new(struct config *cfg, struct generation *prev);
struct generation *gen_ref(struct generation *g);
void gen_unref(struct generation *g);

#endif
