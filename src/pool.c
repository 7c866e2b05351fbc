/* Priority groups, the balance strategies and the circuit breakers: one per
 * (backend, model), which the model's failures move, and one per backend,
 * which connection-level failures (and calls without a model) move; a
 * backend takes a model's request while both let it. All state is under one mutex, so every worker sees the same breakers; the
 * critical sections are a few dozen instructions per candidate. In-flight
 * counts are atomics in cells shared with the pools of older generations. */
#include "sluice/pool.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/util.h"

struct breaker {
    enum breaker_state state;
    int64_t open_until; /* ms, while open */
    bool probe_in_flight;
    bool tripped;      /* has opened since the pool was made: its gauge is shown */
    int64_t *failures; /* ring of the last breaker_failures failure times */
    int64_t nfail, next;
};

/* Whose breaker it is, for the log lines: the backend, and the model or NULL. */
struct breaker_of {
    const char *backend, *model;
};

/* Requests open at one backend, counted across config generations. */
struct slots {
    atomic_int inflight;
    atomic_int refs;
};

/* What the pool knows of one backend besides its breaker. */
struct backend_state {
    int64_t current;   /* smooth WRR running weight */
    double est_us;     /* peak-EWMA time to first byte, as of stamp_us */
    int64_t stamp_us;  /* 0: never observed */
    int64_t requests_left, requests_reset; /* the upstream's own word (reset: ms, 0 = none) */
    int64_t tokens_left, tokens_reset;
    struct slots *slots;
};

/* The candidates of one model name: backends listing it, and those with `*`,
 * each with the breaker of that (backend, model) pair. */
struct model_entry {
    const char *name; /* borrowed from the config */
    int *backends;
    struct breaker *br; /* [n], made once the index is complete */
    int n;
};

struct pool {
    const struct config *cfg; /* borrowed: the pool lives and dies with its config */
    pthread_mutex_t lock;
    struct backend_state *be;
    struct breaker *br;
    struct sl_names index;     /* model name -> position in entries */
    struct model_entry *entries; /* sl_grow */
    int nentries;
    int *any; /* backends with models = *: the candidates of every other name */
    int nany;
    struct model_entry other; /* names no backend or [model] lists: one breaker set, on `*` */
    uint64_t rng; /* xorshift64, for the latency strategy's two choices */
};

int64_t pool_now_ms(void)
{
    return sl_now_ms();
}

/* ---- the model index ---- */

static struct model_entry *entry_of(const struct pool *p, const char *name, size_t len)
{
    int i = sl_names_find(&p->index, name, len);
    return i < 0 ? NULL : &p->entries[i];
}

static void index_add(struct pool *p, const char *name, int backend)
{
    struct model_entry *e = entry_of(p, name, strlen(name));
    if (!e) {
        p->entries = sl_grow(p->entries, sizeof(*p->entries), p->nentries);
        e = &p->entries[p->nentries];
        *e = (struct model_entry){ name, sl_calloc((size_t)p->cfg->nbackends, sizeof(int)), NULL, 0 };
        sl_names_add(&p->index, name, strlen(name), p->nentries++, NULL);
    }
    if (e->n == 0 || e->backends[e->n - 1] != backend) /* a name listed twice */
        e->backends[e->n++] = backend;
}

/* Each name's candidates in backend order: its own and the `*` backends. */
static void index_build(struct pool *p)
{
    const struct config *c = p->cfg;
    p->any = sl_calloc((size_t)c->nbackends + 1, sizeof(int));
    for (int i = 0; i < c->nbackends; i++) {
        const struct cfg_models *m = &c->backends[i].models;
        if (m->any) {
            p->any[p->nany++] = i;
            for (int k = 0; k < p->nentries; k++) /* every name seen so far */
                index_add(p, p->entries[k].name, i);
            continue;
        }
        for (int j = 0; j < m->n; j++) {
            bool fresh = !entry_of(p, m->names[j], strlen(m->names[j]));
            index_add(p, m->names[j], i);
            if (fresh) { /* the `*` backends before it serve it too, in order */
                struct model_entry *e = entry_of(p, m->names[j], strlen(m->names[j]));
                int own = e->backends[0];
                e->n = 0;
                for (int k = 0; k < p->nany; k++)
                    e->backends[e->n++] = p->any[k];
                e->backends[e->n++] = own;
            }
        }
    }
}

/* The names of [model] sections and what they send upstream, served by the
 * `*` backends, get breakers of their own too. */
static void index_name(struct pool *p, const char *name)
{
    if (!name || entry_of(p, name, strlen(name)) || !p->nany)
        return;
    for (int k = 0; k < p->nany; k++)
        index_add(p, name, p->any[k]);
}

static void index_models(struct pool *p)
{
    const struct config *c = p->cfg;
    for (int m = 0; m < c->nmodels; m++) {
        const struct cfg_model *cm = &c->models[m];
        index_name(p, cm->name);
        index_name(p, cm->upstream);
        for (int j = 0; j < cm->fallbacks.n; j++)
            index_name(p, cm->fallbacks.names[j]);
        for (int j = 0; j < cm->context_fallbacks.n; j++)
            index_name(p, cm->context_fallbacks.names[j]);
    }
}

static void breakers_new(struct pool *p, struct model_entry *e)
{
    e->br = sl_calloc((size_t)SL_MAX(e->n, 1), sizeof(*e->br));
    for (int k = 0; k < e->n; k++)
        e->br[k].failures =
            sl_calloc((size_t)p->cfg->backends[e->backends[k]].breaker_failures, sizeof(int64_t));
}

static void breakers_free(struct model_entry *e)
{
    for (int k = 0; e->br && k < e->n; k++)
        free(e->br[k].failures);
    free(e->br);
}

/* The candidates of a model, in backend order, with their breakers. */
static struct model_entry *candidates(struct pool *p, const char *model, size_t len)
{
    struct model_entry *e = entry_of(p, model, len);
    return e ? e : &p->other;
}

/* ---- life ---- */

static void carry_breaker(struct breaker *to, const struct breaker *from)
{
    to->state = from->state;
    to->open_until = from->open_until;
    to->tripped = from->tripped;
    to->probe_in_flight = false;
}

/* A reload keeps what the old pool knew about a backend of the same name: an
 * open breaker stays open, the latency estimate and the upstream's word stay,
 * and the in-flight cell is shared. Failure counts start afresh. */
static bool carry_over(struct pool *p, int i, struct pool *prev)
{
    const char *name = p->cfg->backends[i].name;
    for (int j = 0; j < prev->cfg->nbackends; j++) {
        if (strcmp(prev->cfg->backends[j].name, name) != 0)
            continue;
        pthread_mutex_lock(&prev->lock);
        p->be[i] = prev->be[j];
        atomic_fetch_add(&p->be[i].slots->refs, 1);
        carry_breaker(&p->br[i], &prev->br[j]);
        pthread_mutex_unlock(&prev->lock);
        return true;
    }
    return false;
}

/* A reload keeps the open breakers of (backend, model) pairs of the same names. */
static void carry_over_models(struct pool *p, struct model_entry *e, struct pool *prev)
{
    struct model_entry *old = e == &p->other ? &prev->other : entry_of(prev, e->name, strlen(e->name));
    if (!old)
        return;
    pthread_mutex_lock(&prev->lock);
    for (int k = 0; k < e->n; k++) {
        const char *name = p->cfg->backends[e->backends[k]].name;
        for (int j = 0; j < old->n; j++)
            if (strcmp(prev->cfg->backends[old->backends[j]].name, name) == 0)
                carry_breaker(&e->br[k], &old->br[j]);
    }
    pthread_mutex_unlock(&prev->lock);
}

struct pool *pool_new(const struct config *cfg, struct pool *prev)
{
    struct pool *p = sl_calloc(1, sizeof(*p));
    p->cfg = cfg;
    pthread_mutex_init(&p->lock, NULL);
    p->be = sl_calloc((size_t)cfg->nbackends, sizeof(*p->be));
    p->br = sl_calloc((size_t)cfg->nbackends, sizeof(struct breaker));
    p->rng = (uint64_t)sl_now_us() | 1;
    for (int i = 0; i < cfg->nbackends; i++) {
        p->br[i].failures = sl_calloc((size_t)cfg->backends[i].breaker_failures, sizeof(int64_t));
        if (!prev || !carry_over(p, i, prev)) {
            p->be[i].slots = sl_calloc(1, sizeof(struct slots));
            atomic_init(&p->be[i].slots->refs, 1);
        }
    }
    index_build(p);
    index_models(p);
    p->other = (struct model_entry){ "*", p->any, NULL, p->nany };
    for (int k = 0; k < p->nentries; k++)
        breakers_new(p, &p->entries[k]);
    breakers_new(p, &p->other);
    for (int k = 0; prev && k <= p->nentries; k++)
        carry_over_models(p, k < p->nentries ? &p->entries[k] : &p->other, prev);
    return p;
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->cfg->nbackends; i++) {
        free(p->br[i].failures);
        if (atomic_fetch_sub(&p->be[i].slots->refs, 1) == 1)
            free(p->be[i].slots);
    }
    for (int k = 0; k < p->nentries; k++) {
        breakers_free(&p->entries[k]);
        free(p->entries[k].backends);
    }
    breakers_free(&p->other);
    free(p->entries);
    sl_names_free(&p->index);
    free(p->any);
    free(p->br);
    free(p->be);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static bool is_tried(const struct pool_tried *t, int i)
{
    return (t->bits[i / 64] >> (i % 64)) & 1;
}

static void mark_tried(struct pool_tried *t, int i)
{
    t->bits[i / 64] |= 1ULL << (i % 64);
}

bool pool_serves(const struct pool *p, const char *model, size_t len)
{
    const struct model_entry *e = entry_of(p, model, len);
    return e ? e->n > 0 : p->nany > 0;
}

/* ---- availability ---- */

/* An open breaker whose time is up becomes half-open. Under the lock; each
 * transition is logged once, where it happens. */
static void advance(struct breaker *b, struct breaker_of who, int64_t now)
{
    if (b->state == BREAKER_OPEN && now >= b->open_until) {
        b->state = BREAKER_HALF_OPEN;
        b->probe_in_flight = false;
        log_info("breaker backend=%s%s%s open->half_open", who.backend, who.model ? " model=" : "",
                 who.model ? who.model : "");
    }
}

static bool lets_through(struct breaker *b, struct breaker_of who, int64_t now)
{
    advance(b, who, now);
    return b->state == BREAKER_CLOSED || (b->state == BREAKER_HALF_OPEN && !b->probe_in_flight);
}

static struct breaker_of whose(const struct pool *p, int i, const struct model_entry *e)
{
    return (struct breaker_of){ p->cfg->backends[i].name, e ? e->name : NULL };
}

/* Candidate k of e (or backend i alone when e is NULL) may take a request:
 * the backend's breaker and the pair's both let it through. */
static bool available(const struct pool *p, int i, struct model_entry *e, int k, int64_t now)
{
    if (!lets_through(&p->br[i], whose(p, i, NULL), now))
        return false;
    return !e || lets_through(&e->br[k], whose(p, i, e), now);
}

/* ms until the breaker lets requests through again (0: now or half-open). */
static int64_t open_left(struct breaker *b, struct breaker_of who, int64_t now)
{
    advance(b, who, now);
    return b->state == BREAKER_OPEN ? SL_MAX(b->open_until - now, 0) : 0;
}

/* 0 if the backend can take a request of `tokens` now, else the ms until it
 * may (its upstream's reset, or POOL_INFLIGHT_WAIT_MS for max_inflight). */
static int64_t full_for(const struct pool *p, int i, int64_t tokens, int64_t now)
{
    const struct backend_state *s = &p->be[i];
    int64_t wait = 0;
    if (s->requests_reset > now && s->requests_left <= 0)
        wait = s->requests_reset - now;
    if (s->tokens_reset > now && s->tokens_left < SL_MAX(tokens, 1))
        wait = SL_MAX(wait, s->tokens_reset - now);
    int64_t cap = p->cfg->backends[i].max_inflight;
    if (!wait && cap && atomic_load(&s->slots->inflight) >= cap)
        wait = POOL_INFLIGHT_WAIT_MS;
    return wait;
}

/* Takes an in-flight slot, unless max_inflight is reached (by another pool
 * generation since full_for looked). */
static bool take_slot(const struct pool *p, int i)
{
    atomic_int *n = &p->be[i].slots->inflight;
    int64_t cap = p->cfg->backends[i].max_inflight;
    int v = atomic_load(n);
    do
        if (cap && v >= cap)
            return false;
    while (!atomic_compare_exchange_weak(n, &v, v + 1));
    return true;
}

static void note_full(struct pool_pick *pick, int64_t wait)
{
    if (pick->full_ms < 0 || wait < pick->full_ms)
        pick->full_ms = wait;
}

/* ---- strategies: one of n candidates (n >= 1), all in one priority group ---- */

static int choose_weighted(struct pool *p, const int *c, int n)
{
    int64_t total = 0;
    int best = c[0];
    for (int k = 0; k < n; k++) {
        int i = c[k];
        p->be[i].current += p->cfg->backends[i].weight;
        total += p->cfg->backends[i].weight;
        if (p->be[i].current > p->be[best].current)
            best = i;
    }
    p->be[best].current -= total;
    return best;
}

/* The fewest open requests per unit of weight; among equals, weighted
 * round-robin (which moves only there, so it owes nothing to the others). */
static int choose_least_inflight(struct pool *p, const int *c, int n)
{
    int tied[POOL_MAX_BACKENDS], nt = 1;
    tied[0] = c[0];
    int64_t best_load = atomic_load(&p->be[c[0]].slots->inflight);
    int64_t best_w = p->cfg->backends[c[0]].weight;
    for (int k = 1; k < n; k++) {
        int i = c[k];
        int64_t w = p->cfg->backends[i].weight, load = atomic_load(&p->be[i].slots->inflight);
        /* load / w against best_load / best_w */
        if (load * best_w < best_load * w) {
            nt = 0;
            best_load = load;
            best_w = w;
        } else if (load * best_w > best_load * w) {
            continue;
        }
        tied[nt++] = i;
    }
    return nt == 1 ? tied[0] : choose_weighted(p, tied, nt);
}

static uint64_t next_random(struct pool *p)
{
    uint64_t x = p->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return p->rng = x;
}

/* The latency estimate now: it fades towards 0 while no answer refreshes it,
 * so an idle backend's cost falls until it is tried again. */
static double estimate_now(const struct pool *p, int i, int64_t now_us)
{
    const struct backend_state *s = &p->be[i];
    if (!s->stamp_us)
        return 0;
    double tau = (double)p->cfg->server.balance_decay_ms * 1000.0;
    return s->est_us * exp(-(double)(now_us - s->stamp_us) / tau);
}

/* One candidate at random by weight, other than `not`. */
static int weighted_random(struct pool *p, const int *c, int n, int not)
{
    int64_t total = 0;
    for (int k = 0; k < n; k++)
        if (c[k] != not)
            total += p->cfg->backends[c[k]].weight;
    int64_t r = (int64_t)(next_random(p) % (uint64_t)total);
    for (int k = 0; k < n; k++) {
        if (c[k] == not)
            continue;
        r -= p->cfg->backends[c[k]].weight;
        if (r < 0)
            return c[k];
    }
    return c[n - 1];
}

/* Peak-EWMA with two random choices: of two candidates drawn by weight, the
 * one with the lower estimate x (open requests + 1) per unit of weight. */
static int choose_latency(struct pool *p, const int *c, int n)
{
    if (n == 1)
        return c[0];
    int a = weighted_random(p, c, n, -1), b = weighted_random(p, c, n, a);
    int64_t now = sl_now_us();
    double ca = (estimate_now(p, a, now) + 1.0) * (atomic_load(&p->be[a].slots->inflight) + 1) /
                (double)p->cfg->backends[a].weight;
    double cb = (estimate_now(p, b, now) + 1.0) * (atomic_load(&p->be[b].slots->inflight) + 1) /
                (double)p->cfg->backends[b].weight;
    return cb < ca ? b : a;
}

static int choose(struct pool *p, const int *c, int n)
{
    switch (p->cfg->server.balance) {
    case BALANCE_LATENCY:
        return choose_latency(p, c, n);
    case BALANCE_LEAST_INFLIGHT:
        return choose_least_inflight(p, c, n);
    default:
        return choose_weighted(p, c, n);
    }
}

/* ---- picks ---- */

static void hand_over(struct pool *p, struct pool_pick *pick, int i, struct model_entry *e, int k,
                      struct pool_tried *tried)
{
    pick->backend = i;
    pick->model = e ? (e == &p->other ? p->nentries : (int)(e - p->entries)) : -1;
    pick->slot = k;
    struct breaker *b = &p->br[i];
    if (b->state == BREAKER_HALF_OPEN) {
        b->probe_in_flight = true;
        pick->probe = true;
    }
    if (e && e->br[k].state == BREAKER_HALF_OPEN) {
        e->br[k].probe_in_flight = true;
        pick->probe_model = true;
    }
    mark_tried(tried, i);
}

static struct model_entry *entry_at(struct pool *p, int model)
{
    return model < 0 ? NULL : model == p->nentries ? &p->other : &p->entries[model];
}

#define NO_PICK { -1, false, -1, -1, -1, false }

struct pool_pick pool_pick(struct pool *p, const char *model, size_t len, int64_t tokens,
                           struct pool_tried *tried)
{
    const struct config *c = p->cfg;
    struct pool_pick pick = NO_PICK;
    int ok[POOL_MAX_BACKENDS], slot[POOL_MAX_BACKENDS], nok = 0;
    struct model_entry *e = candidates(p, model, len);
    int64_t now = pool_now_ms(), prio = -1;
    pthread_mutex_lock(&p->lock);
    /* The candidates that can take it now, and the lowest priority among them. */
    for (int k = 0; k < e->n; k++) {
        int i = e->backends[k];
        if (is_tried(tried, i) || !available(p, i, e, k, now))
            continue;
        int64_t wait = full_for(p, i, tokens, now);
        if (wait) {
            note_full(&pick, wait);
            continue;
        }
        slot[i] = k;
        ok[nok++] = i;
        if (prio < 0 || c->backends[i].priority < prio)
            prio = c->backends[i].priority;
    }
    while (nok) {
        int group[POOL_MAX_BACKENDS], ng = 0;
        for (int k = 0; k < nok; k++)
            if (c->backends[ok[k]].priority == prio)
                group[ng++] = ok[k];
        int i = choose(p, group, ng);
        if (take_slot(p, i)) {
            hand_over(p, &pick, i, e, slot[i], tried);
            break;
        }
        note_full(&pick, POOL_INFLIGHT_WAIT_MS); /* filled meanwhile: the next one */
        int kept = 0;
        prio = -1;
        for (int k = 0; k < nok; k++)
            if (ok[k] != i) {
                ok[kept++] = ok[k];
                if (prio < 0 || c->backends[ok[k]].priority < prio)
                    prio = c->backends[ok[k]].priority;
            }
        nok = kept;
    }
    pthread_mutex_unlock(&p->lock);
    return pick;
}

/* Takes backend i for candidate k of e (e NULL: the backend alone). */
static struct pool_pick pick_one(struct pool *p, int i, struct model_entry *e, int k,
                                 int64_t tokens, struct pool_tried *tried)
{
    struct pool_pick pick = NO_PICK;
    int64_t now = pool_now_ms();
    pthread_mutex_lock(&p->lock);
    if (!is_tried(tried, i) && available(p, i, e, k, now)) {
        int64_t wait = full_for(p, i, tokens, now);
        if (wait)
            note_full(&pick, wait);
        else if (take_slot(p, i))
            hand_over(p, &pick, i, e, k, tried);
        else
            note_full(&pick, POOL_INFLIGHT_WAIT_MS);
    }
    pthread_mutex_unlock(&p->lock);
    return pick;
}

struct pool_pick pool_pick_backend(struct pool *p, int backend, int64_t tokens,
                                   struct pool_tried *tried)
{
    return pick_one(p, backend, NULL, -1, tokens, tried);
}

struct pool_pick pool_pick_again(struct pool *p, const struct pool_pick *last, int64_t tokens,
                                 struct pool_tried *tried)
{
    int i = last->backend;
    tried->bits[i / 64] &= ~(1ULL << (i % 64));
    return pick_one(p, i, entry_at(p, last->model), last->slot, tokens, tried);
}

void pool_unpick(struct pool *p, const struct pool_pick *pick)
{
    if (pick->backend < 0)
        return;
    atomic_fetch_sub(&p->be[pick->backend].slots->inflight, 1);
    if (pick->probe || pick->probe_model) {
        pthread_mutex_lock(&p->lock);
        if (pick->probe)
            p->br[pick->backend].probe_in_flight = false;
        if (pick->probe_model)
            entry_at(p, pick->model)->br[pick->slot].probe_in_flight = false;
        pthread_mutex_unlock(&p->lock);
    }
}

int64_t pool_backend_available_ms(struct pool *p, int backend)
{
    int64_t now = pool_now_ms();
    pthread_mutex_lock(&p->lock);
    int64_t wait = open_left(&p->br[backend], whose(p, backend, NULL), now);
    pthread_mutex_unlock(&p->lock);
    return wait;
}

/* ---- what attempts tell ---- */

static void trip(struct breaker *b, struct breaker_of who, const struct cfg_backend *be,
                 int64_t now, int64_t retry_after_ms, enum up_outcome why)
{
    int64_t ms = be->breaker_trip_ms;
    if (retry_after_ms >= 0 && be->breaker_retry_after)
        ms = SL_MIN(SL_MAX(retry_after_ms, 1), POOL_MAX_OPEN_MS);
    if (b->state != BREAKER_OPEN) /* a late failure may push an open breaker's time on */
        log_info("breaker backend=%s%s%s %s->open reason=%s open_ms=%lld", who.backend,
                 who.model ? " model=" : "", who.model ? who.model : "",
                 b->state == BREAKER_CLOSED ? "closed" : "half_open", up_outcome_info(why)->label,
                 (long long)ms);
    b->state = BREAKER_OPEN;
    b->open_until = now + ms;
    b->probe_in_flight = false;
    b->tripped = true;
    b->nfail = 0;
}

/* One breaker's verdict on an attempt (probe: the attempt was its probe). */
static void judge(struct breaker *b, struct breaker_of who, const struct cfg_backend *be,
                  bool probe, enum up_verdict verdict, enum up_outcome outcome,
                  int64_t retry_after_ms, int64_t now)
{
    if (verdict == VERDICT_NEUTRAL) {
        if (probe)
            b->probe_in_flight = false;
    } else if (verdict == VERDICT_SUCCESS) {
        if (probe || b->state == BREAKER_HALF_OPEN) {
            if (b->state != BREAKER_CLOSED)
                log_info("breaker backend=%s%s%s %s->closed", who.backend, who.model ? " model=" : "",
                         who.model ? who.model : "", b->state == BREAKER_OPEN ? "open" : "half_open");
            b->state = BREAKER_CLOSED;
            b->probe_in_flight = false;
            b->nfail = 0;
        }
    } else if (probe || b->state == BREAKER_HALF_OPEN) {
        trip(b, who, be, now, retry_after_ms, outcome); /* the probe failed */
    } else if (b->state == BREAKER_CLOSED) {
        int64_t cap = be->breaker_failures;
        b->failures[b->next] = now;
        b->next = (b->next + 1) % cap;
        b->nfail = SL_MIN(b->nfail + 1, cap);
        /* The oldest of the last `cap` failures is at failures[next] once full. */
        bool enough = b->nfail == cap && now - b->failures[b->next % cap] < be->breaker_window_ms;
        if (enough || (retry_after_ms >= 0 && be->breaker_retry_after))
            trip(b, who, be, now, retry_after_ms, outcome);
    }
}

/* Failures of the connection itself (none made, or closed before any answer)
 * or of the backend's own credential: the backend cannot serve any model. */
static bool backend_level(enum up_outcome o)
{
    return o == UP_OUTCOME_CONNECT_FAILED || o == UP_OUTCOME_CONNECT_TIMEOUT ||
           o == UP_OUTCOME_TLS_FAILED || o == UP_OUTCOME_NO_ANSWER ||
           o == UP_OUTCOME_AUTH_REJECTED;
}

void pool_report(struct pool *p, const struct pool_pick *pick, enum up_outcome outcome,
                 int64_t retry_after_ms)
{
    if (pick->backend < 0)
        return;
    int i = pick->backend;
    const struct cfg_backend *be = &p->cfg->backends[i];
    enum up_verdict verdict = up_outcome_info(outcome)->verdict;
    int64_t now = pool_now_ms();
    atomic_fetch_sub(&p->be[i].slots->inflight, 1);
    pthread_mutex_lock(&p->lock);
    struct model_entry *e = entry_at(p, pick->model);
    if (!e || backend_level(outcome)) {
        judge(&p->br[i], whose(p, i, NULL), be, pick->probe, verdict, outcome, retry_after_ms, now);
        if (e) /* the model was never asked: its probe slot is free again */
            judge(&e->br[pick->slot], whose(p, i, e), be, pick->probe_model, VERDICT_NEUTRAL,
                  outcome, -1, now);
    } else {
        /* the connection worked: a success for the backend, the verdict for the model */
        judge(&p->br[i], whose(p, i, NULL), be, pick->probe,
              verdict == VERDICT_NEUTRAL ? VERDICT_NEUTRAL : VERDICT_SUCCESS, outcome, -1, now);
        judge(&e->br[pick->slot], whose(p, i, e), be, pick->probe_model, verdict, outcome,
              retry_after_ms, now);
    }
    pthread_mutex_unlock(&p->lock);
}

/* Peak-EWMA: a sample above the (faded) estimate replaces it at once; one
 * below moves it by the share of the decay time since the last sample. */
void pool_observe(struct pool *p, int backend, int64_t ttfb_us)
{
    if (p->cfg->server.balance != BALANCE_LATENCY || backend < 0)
        return;
    int64_t now = sl_now_us();
    double rtt = (double)SL_MAX(ttfb_us, 0);
    pthread_mutex_lock(&p->lock);
    struct backend_state *s = &p->be[backend];
    double tau = (double)p->cfg->server.balance_decay_ms * 1000.0;
    double decay = s->stamp_us ? exp(-(double)(now - s->stamp_us) / tau) : 0.0;
    if (!s->stamp_us || rtt > s->est_us * decay)
        s->est_us = rtt;
    else
        s->est_us = s->est_us * decay + rtt * (1.0 - decay);
    s->stamp_us = now;
    pthread_mutex_unlock(&p->lock);
}

void pool_upstream_said(struct pool *p, int backend, const struct pool_upstream_limits *u)
{
    int64_t now = pool_now_ms();
    pthread_mutex_lock(&p->lock);
    struct backend_state *s = &p->be[backend];
    if (u->remaining_requests >= 0 && u->requests_reset_ms >= 0) {
        s->requests_left = u->remaining_requests;
        s->requests_reset = now + u->requests_reset_ms;
    }
    if (u->remaining_tokens >= 0 && u->tokens_reset_ms >= 0) {
        s->tokens_left = u->remaining_tokens;
        s->tokens_reset = now + u->tokens_reset_ms;
    }
    pthread_mutex_unlock(&p->lock);
}

int64_t pool_next_available_ms(struct pool *p, const char *model, size_t len)
{
    struct model_entry *e = candidates(p, model, len);
    int64_t now = pool_now_ms(), best = -1;
    pthread_mutex_lock(&p->lock);
    for (int k = 0; k < e->n; k++) {
        int i = e->backends[k];
        int64_t wait = SL_MAX(open_left(&p->br[i], whose(p, i, NULL), now),
                              open_left(&e->br[k], whose(p, i, e), now));
        if (best < 0 || wait < best)
            best = wait;
    }
    pthread_mutex_unlock(&p->lock);
    return SL_MAX(best, 0);
}

enum breaker_state pool_state(struct pool *p, int backend)
{
    pthread_mutex_lock(&p->lock);
    struct breaker *b = &p->br[backend];
    advance(b, whose(p, backend, NULL), pool_now_ms());
    enum breaker_state s = b->state;
    pthread_mutex_unlock(&p->lock);
    return s;
}

enum breaker_state pool_pair_state(struct pool *p, int backend, const char *model, size_t len)
{
    struct model_entry *e = candidates(p, model, len);
    enum breaker_state s = BREAKER_CLOSED;
    pthread_mutex_lock(&p->lock);
    for (int k = 0; k < e->n; k++)
        if (e->backends[k] == backend) {
            advance(&e->br[k], whose(p, backend, e), pool_now_ms());
            s = e->br[k].state;
        }
    pthread_mutex_unlock(&p->lock);
    return s;
}

int pool_model_breakers(struct pool *p, struct pool_model_breaker *out, int max)
{
    int n = 0;
    int64_t now = pool_now_ms();
    pthread_mutex_lock(&p->lock);
    for (int m = 0; m <= p->nentries; m++) {
        struct model_entry *e = m < p->nentries ? &p->entries[m] : &p->other;
        for (int k = 0; k < e->n; k++) {
            struct breaker *b = &e->br[k];
            int i = e->backends[k];
            int64_t left = open_left(b, whose(p, i, e), now);
            if (!b->tripped)
                continue;
            if (n < max)
                out[n] = (struct pool_model_breaker){ i, e->name, b->state, left };
            n++;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

int pool_inflight(struct pool *p, int backend)
{
    return atomic_load(&p->be[backend].slots->inflight);
}
