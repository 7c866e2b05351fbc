/* Priority groups and smooth weighted round-robin over the backends of one
 * config. The round-robin state is shared by all workers under a mutex. */
#include "sluice/pool.h"

#include <pthread.h>
#include <stdlib.h>

#include "sluice/config.h"
#include "sluice/util.h"

struct pool {
    const struct config *cfg; /* borrowed: the pool lives and dies with its config */
    pthread_mutex_t lock;
    int64_t *current; /* smooth WRR running weight per backend */
};

struct pool *pool_new(const struct config *cfg)
{
    struct pool *p = sl_calloc(1, sizeof(*p));
    p->cfg = cfg;
    pthread_mutex_init(&p->lock, NULL);
    p->current = sl_calloc((size_t)cfg->nbackends, sizeof(int64_t));
    return p;
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p->current);
    free(p);
}

static bool is_tried(const struct pool_tried *t, int i)
{
    return (t->bits[i / 64] >> (i % 64)) & 1;
}

bool pool_serves(const struct pool *p, const char *model, size_t len)
{
    for (int i = 0; i < p->cfg->nbackends; i++)
        if (cfg_models_match(&p->cfg->backends[i].models, model, len))
            return true;
    return false;
}

int pool_pick(struct pool *p, const char *model, size_t len, struct pool_tried *tried)
{
    const struct config *c = p->cfg;
    /* The lowest priority number among eligible backends. */
    int64_t prio = -1;
    for (int i = 0; i < c->nbackends; i++) {
        const struct cfg_backend *be = &c->backends[i];
        if (!is_tried(tried, i) && cfg_models_match(&be->models, model, len) &&
            (prio < 0 || be->priority < prio))
            prio = be->priority;
    }
    if (prio < 0)
        return -1;
    int best = -1;
    int64_t total = 0;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < c->nbackends; i++) {
        const struct cfg_backend *be = &c->backends[i];
        if (be->priority != prio || is_tried(tried, i) ||
            !cfg_models_match(&be->models, model, len))
            continue;
        p->current[i] += be->weight;
        total += be->weight;
        if (best < 0 || p->current[i] > p->current[best])
            best = i;
    }
    p->current[best] -= total;
    pthread_mutex_unlock(&p->lock);
    tried->bits[best / 64] |= 1ULL << (best % 64);
    return best;
}
