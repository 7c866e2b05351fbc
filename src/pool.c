/* Priority groups, smooth weighted round-robin and a circuit breaker per
 * backend. All state is under one mutex, so every worker sees the same
 * breakers; the critical sections are a few dozen instructions. */
#include "sluice/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/util.h"

struct breaker {
    enum breaker_state state;
    int64_t open_until; /* ms, while open */
    bool probe_in_flight;
    int64_t *failures; /* ring of the last breaker_failures failure times */
    int64_t nfail, next;
};

struct pool {
    const struct config *cfg; /* borrowed: the pool lives and dies with its config */
    pthread_mutex_t lock;
    int64_t *current; /* smooth WRR running weight per backend */
    struct breaker *br;
};

int64_t pool_now_ms(void)
{
    return sl_now_ms();
}

/* A reload keeps what the old pool knew about a backend of the same name:
 * an open breaker stays open. Failure counts start afresh. */
static void carry_over(struct pool *p, int i, struct pool *prev)
{
    const char *name = p->cfg->backends[i].name;
    for (int j = 0; j < prev->cfg->nbackends; j++) {
        if (strcmp(prev->cfg->backends[j].name, name) != 0)
            continue;
        pthread_mutex_lock(&prev->lock);
        p->current[i] = prev->current[j];
        p->br[i].state = prev->br[j].state;
        p->br[i].open_until = prev->br[j].open_until;
        p->br[i].probe_in_flight = false;
        pthread_mutex_unlock(&prev->lock);
        return;
    }
}

struct pool *pool_new(const struct config *cfg, struct pool *prev)
{
    struct pool *p = sl_calloc(1, sizeof(*p));
    p->cfg = cfg;
    pthread_mutex_init(&p->lock, NULL);
    p->current = sl_calloc((size_t)cfg->nbackends, sizeof(int64_t));
    p->br = sl_calloc((size_t)cfg->nbackends, sizeof(struct breaker));
    for (int i = 0; i < cfg->nbackends; i++) {
        p->br[i].failures = sl_calloc((size_t)cfg->backends[i].breaker_failures, sizeof(int64_t));
        if (prev)
            carry_over(p, i, prev);
    }
    return p;
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->cfg->nbackends; i++)
        free(p->br[i].failures);
    free(p->br);
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

/* Open breakers whose time is up become half-open. Under the lock; each
 * transition is logged once, where it happens. */
static void advance(const struct pool *p, int i, int64_t now)
{
    struct breaker *b = &p->br[i];
    if (b->state == BREAKER_OPEN && now >= b->open_until) {
        b->state = BREAKER_HALF_OPEN;
        b->probe_in_flight = false;
        log_info("breaker backend=%s open->half_open", p->cfg->backends[i].name);
    }
}

static bool available(const struct pool *p, int i, int64_t now)
{
    struct breaker *b = &p->br[i];
    advance(p, i, now);
    return b->state == BREAKER_CLOSED || (b->state == BREAKER_HALF_OPEN && !b->probe_in_flight);
}

struct pool_pick pool_pick(struct pool *p, const char *model, size_t len, struct pool_tried *tried)
{
    const struct config *c = p->cfg;
    struct pool_pick pick = { -1, false };
    int64_t now = pool_now_ms();
    pthread_mutex_lock(&p->lock);
    /* The lowest priority number that has an available, untried backend. */
    int64_t prio = -1;
    for (int i = 0; i < c->nbackends; i++) {
        const struct cfg_backend *be = &c->backends[i];
        if (!is_tried(tried, i) && (prio < 0 || be->priority < prio) &&
            cfg_models_match(&be->models, model, len) && available(p, i, now))
            prio = be->priority;
    }
    if (prio >= 0) {
        int64_t total = 0;
        for (int i = 0; i < c->nbackends; i++) {
            const struct cfg_backend *be = &c->backends[i];
            if (be->priority != prio || is_tried(tried, i) ||
                !cfg_models_match(&be->models, model, len) || !available(p, i, now))
                continue;
            p->current[i] += be->weight;
            total += be->weight;
            if (pick.backend < 0 || p->current[i] > p->current[pick.backend])
                pick.backend = i;
        }
        p->current[pick.backend] -= total;
        struct breaker *b = &p->br[pick.backend];
        if (b->state == BREAKER_HALF_OPEN) {
            b->probe_in_flight = true;
            pick.probe = true;
        }
        tried->bits[pick.backend / 64] |= 1ULL << (pick.backend % 64);
    }
    pthread_mutex_unlock(&p->lock);
    return pick;
}

struct pool_pick pool_pick_backend(struct pool *p, int backend, struct pool_tried *tried)
{
    struct pool_pick pick = { -1, false };
    int64_t now = pool_now_ms();
    pthread_mutex_lock(&p->lock);
    if (!is_tried(tried, backend) && available(p, backend, now)) {
        pick.backend = backend;
        if (p->br[backend].state == BREAKER_HALF_OPEN) {
            p->br[backend].probe_in_flight = true;
            pick.probe = true;
        }
        tried->bits[backend / 64] |= 1ULL << (backend % 64);
    }
    pthread_mutex_unlock(&p->lock);
    return pick;
}

int64_t pool_backend_available_ms(struct pool *p, int backend)
{
    int64_t now = pool_now_ms();
    pthread_mutex_lock(&p->lock);
    advance(p, backend, now);
    const struct breaker *b = &p->br[backend];
    int64_t wait = b->state == BREAKER_OPEN ? b->open_until - now : 0;
    pthread_mutex_unlock(&p->lock);
    return SL_MAX(wait, 0);
}

static void trip(struct breaker *b, const struct cfg_backend *be, int64_t now,
                 int64_t retry_after_ms, enum up_outcome why)
{
    int64_t ms = be->breaker_trip_ms;
    if (retry_after_ms >= 0 && be->breaker_retry_after)
        ms = SL_MIN(SL_MAX(retry_after_ms, 1), POOL_MAX_OPEN_MS);
    if (b->state != BREAKER_OPEN) /* a late failure may push an open breaker's time on */
        log_info("breaker backend=%s %s->open reason=%s open_ms=%lld", be->name,
                 b->state == BREAKER_CLOSED ? "closed" : "half_open", up_outcome_info(why)->label,
                 (long long)ms);
    b->state = BREAKER_OPEN;
    b->open_until = now + ms;
    b->probe_in_flight = false;
    b->nfail = 0;
}

void pool_report(struct pool *p, const struct pool_pick *pick, enum up_outcome outcome,
                 int64_t retry_after_ms)
{
    if (pick->backend < 0)
        return;
    const struct cfg_backend *be = &p->cfg->backends[pick->backend];
    struct breaker *b = &p->br[pick->backend];
    enum up_verdict verdict = up_outcome_info(outcome)->verdict;
    int64_t now = pool_now_ms();
    pthread_mutex_lock(&p->lock);
    if (verdict == VERDICT_NEUTRAL) {
        if (pick->probe)
            b->probe_in_flight = false;
    } else if (verdict == VERDICT_SUCCESS) {
        if (pick->probe || b->state == BREAKER_HALF_OPEN) {
            if (b->state != BREAKER_CLOSED)
                log_info("breaker backend=%s %s->closed", be->name,
                         b->state == BREAKER_OPEN ? "open" : "half_open");
            b->state = BREAKER_CLOSED;
            b->probe_in_flight = false;
            b->nfail = 0;
        }
    } else if (pick->probe || b->state == BREAKER_HALF_OPEN) {
        trip(b, be, now, retry_after_ms, outcome); /* the probe failed */
    } else if (b->state == BREAKER_CLOSED) {
        int64_t cap = be->breaker_failures;
        b->failures[b->next] = now;
        b->next = (b->next + 1) % cap;
        b->nfail = SL_MIN(b->nfail + 1, cap);
        /* The oldest of the last `cap` failures is at failures[next] once full. */
        bool enough = b->nfail == cap && now - b->failures[b->next % cap] < be->breaker_window_ms;
        if (enough || (retry_after_ms >= 0 && be->breaker_retry_after))
            trip(b, be, now, retry_after_ms, outcome);
    }
    pthread_mutex_unlock(&p->lock);
}

int64_t pool_next_available_ms(struct pool *p, const char *model, size_t len)
{
    int64_t now = pool_now_ms(), best = -1;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->cfg->nbackends; i++) {
        if (!cfg_models_match(&p->cfg->backends[i].models, model, len))
            continue;
        struct breaker *b = &p->br[i];
        advance(p, i, now);
        int64_t wait = b->state == BREAKER_OPEN ? b->open_until - now : 0;
        if (best < 0 || wait < best)
            best = wait;
    }
    pthread_mutex_unlock(&p->lock);
    return SL_MAX(best, 0);
}

enum breaker_state pool_state(struct pool *p, int backend)
{
    pthread_mutex_lock(&p->lock);
    advance(p, backend, pool_now_ms());
    enum breaker_state s = p->br[backend].state;
    pthread_mutex_unlock(&p->lock);
    return s;
}
