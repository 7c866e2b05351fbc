/* Config generations: built on the main thread at start and at each reload,
 * referenced by workers and requests, freed by the last reference. */
#include "sluice/generation.h"

#include <stdlib.h>

#include "sluice/auth.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/pool.h"
#include "sluice/util.h"

struct generation *gen_new(struct config *cfg, struct generation *prev)
{
    static atomic_ullong last_id;
    struct generation *g = sl_calloc(1, sizeof(*g));
    atomic_init(&g->refs, 1);
    g->id = atomic_fetch_add(&last_id, 1) + 1;
    g->cfg = cfg;
    g->auth = auth_build(cfg);
    g->pool = pool_new(cfg, prev ? prev->pool : NULL);
    g->key_shares = sl_calloc((size_t)cfg->nkeys + 1, sizeof(*g->key_shares));
    for (int i = 0; i < cfg->nkeys; i++)
        g->key_shares[i] = http_share_named(cfg->keys[i].name);
    g->key_used = sl_calloc((size_t)cfg->nkeys + 1, sizeof(*g->key_used));
    return g;
}

struct generation *gen_ref(struct generation *g)
{
    atomic_fetch_add(&g->refs, 1);
    return g;
}

void gen_unref(struct generation *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    pool_free(g->pool);
    free(g->key_shares);
    free(g->key_used);
    auth_free(g->auth);
    cfg_unref(g->cfg);
    free(g);
}
