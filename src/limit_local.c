/* In-process sliding windows, quotas, budgets and teams: the same algorithm
 * as lua/limits.lua, for a single node (no [redis]) and for on_error =
 * local. One entry per key name, kept across reloads; each entry has its own
 * mutex, so workers contend only on the same key. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/limit_local.h"
#include "sluice/log.h"
#include "sluice/util.h"

/* A window's LIM_RING slots follow it, each 2, 4 or 8 bytes wide: as narrow
 * as the largest count it has held allows, widened when a count would not
 * fit. Most keys' buckets fit 16 bits, so 100,000 busy keys take a quarter of
 * the memory 64-bit slots would; every width is exact. */
struct window {
    int64_t first;  /* oldest bucket still counted; valid when total > 0 */
    int64_t newest; /* newest bucket written */
    int64_t total;
    int64_t width; /* bytes per slot */
};

/* The last state Redis reported for a key or team (on_error = local): while
 * Redis is down, local decisions count it as if it had all come in the bucket
 * it was reported in. It leaves the window no earlier than the admissions it
 * sums did, so a node never admits more than the limit in any window. */
struct seed {
    int64_t bucket;
    int64_t used[3];
    struct counter {
        char period[LIM_PERIOD_ID];
        int64_t used;
    } quota, budget;
};

/* A key's, or (name "@TEAM") a team's, state. */
struct entry {
    char *name;
    pthread_mutex_t lock;
    struct window *win[3]; /* requests, input, output; each made when it is first
                              counted in (an entry Redis only seeds has none) */
    struct counter quota;  /* tokens in the period `quota.period` */
    struct counter budget; /* micro-dollars in the period `budget.period` */
    int64_t inflight;      /* requests holding a max_inflight slot */
    int64_t tat_us;        /* spike arrest: the next request's theoretical arrival (monotonic us) */
    struct seed seed;
    /* an end user's entry (users): */
    struct entry *chain; /* in its bucket of l->users */
    int refs;            /* decisions holding it (under table_lock); 0: it may be dropped */
};

/* A stored resource's owner (lim_ops.own), in a chained hash table. */
struct owner_rec {
    struct owner_rec *next;
    int64_t expires_ms; /* 0: never */
    char *owner;
    char id[];
};

struct lim_local {
    int64_t window_ms, bucket_ms;
    pthread_mutex_t owners_lock;
    struct owner_rec **owners; /* nbuckets chains */
    size_t nbuckets, nowners, owners_max;
    int64_t owners_full_said_ms; /* when the last "full" warning was logged */
    pthread_mutex_t table_lock;
    struct entry **entries; /* in creation order (sl_grow) */
    int nentries;
    struct sl_names index; /* name -> position in entries: O(1) with 100,000 keys */
    /* End users' entries: as many as clients name, so bounded (users_max) and
     * dropped once idle (nothing in their windows, no slot, no spend). */
    struct entry **users; /* nusers_buckets chains */
    size_t nuser_buckets, nusers, users_max;
    int64_t users_full_said_ms;
};

struct lim_local *lim_local_new(int64_t window_ms)
{
    struct lim_local *l = sl_calloc(1, sizeof(*l));
    l->window_ms = window_ms;
    l->bucket_ms = SL_MAX(window_ms / LIM_BUCKETS, 1);
    pthread_mutex_init(&l->table_lock, NULL);
    pthread_mutex_init(&l->owners_lock, NULL);
    l->owners_max = LIM_LOCAL_OWNERS_MAX;
    l->users_max = LIM_LOCAL_USERS_MAX;
    return l;
}

static void entry_free(struct entry *e)
{
    pthread_mutex_destroy(&e->lock);
    for (int d = 0; d < 3; d++)
        free(e->win[d]);
    free(e->name);
    free(e);
}

void lim_local_users_max(struct lim_local *l, size_t max)
{
    l->users_max = max;
}

void lim_local_free(struct lim_local *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->nentries; i++)
        entry_free(l->entries[i]);
    free(l->entries);
    sl_names_free(&l->index);
    for (size_t b = 0; b < l->nuser_buckets; b++)
        for (struct entry *e = l->users[b], *next; e; e = next) {
            next = e->chain;
            entry_free(e);
        }
    free(l->users);
    for (size_t b = 0; b < l->nbuckets; b++)
        for (struct owner_rec *o = l->owners[b], *next; o; o = next) {
            next = o->next;
            free(o->owner);
            free(o);
        }
    free(l->owners);
    pthread_mutex_destroy(&l->owners_lock);
    pthread_mutex_destroy(&l->table_lock);
    free(l);
}

static struct entry *entry_for(struct lim_local *l, const char *name)
{
    size_t len = strlen(name);
    pthread_mutex_lock(&l->table_lock);
    int i = sl_names_find(&l->index, name, len);
    struct entry *e;
    if (i >= 0) {
        e = l->entries[i];
    } else {
        e = sl_calloc(1, sizeof(*e));
        e->name = sl_strdup(name);
        pthread_mutex_init(&e->lock, NULL);
        l->entries = sl_grow(l->entries, sizeof(*l->entries), l->nentries);
        l->entries[l->nentries] = e;
        sl_names_add(&l->index, e->name, len, l->nentries++, NULL);
    }
    pthread_mutex_unlock(&l->table_lock);
    return e;
}

static struct window *window_new(int64_t width)
{
    struct window *w = sl_calloc(1, sizeof(*w) + LIM_RING * (size_t)width);
    w->width = width;
    return w;
}

static int64_t slot(const struct window *w, int64_t b)
{
    size_t i = (size_t)(b % LIM_RING);
    switch (w->width) {
    case 2: return ((const uint16_t *)(w + 1))[i];
    case 4: return ((const uint32_t *)(w + 1))[i];
    default: return ((const int64_t *)(w + 1))[i];
    }
}

/* Stores v (0 or more, and fitting the width) in bucket b's slot. */
static void slot_put(struct window *w, int64_t b, int64_t v)
{
    size_t i = (size_t)(b % LIM_RING);
    switch (w->width) {
    case 2: ((uint16_t *)(w + 1))[i] = (uint16_t)v; break;
    case 4: ((uint32_t *)(w + 1))[i] = (uint32_t)v; break;
    default: ((int64_t *)(w + 1))[i] = v; break;
    }
}

/* Stores v in bucket b's slot of *wp, made (16 bits wide) or widened first
 * when it does not hold v; under the entry's lock. */
static void slot_set(struct window **wp, int64_t b, int64_t v)
{
    struct window *w = *wp;
    int64_t max = !w ? -1 : w->width == 2 ? UINT16_MAX : w->width == 4 ? UINT32_MAX : INT64_MAX;
    if (v > max) {
        struct window *wide = window_new(v <= UINT16_MAX ? 2 : v <= UINT32_MAX ? 4 : 8);
        if (w) {
            wide->first = w->first;
            wide->newest = w->newest;
            wide->total = w->total;
            for (int64_t i = 0; i < LIM_RING; i++)
                slot_put(wide, i, slot(w, i));
            free(w);
        } else {
            wide->first = wide->newest = b;
        }
        *wp = w = wide;
    }
    slot_put(w, b, v);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* The window is the last LIM_BUCKETS buckets, the current one included
 * (lua/limits.lua): bucket b counts until b * bucket_ms + window_ms, so no
 * wait is longer than the window. */
static int64_t oldest_bucket(const struct lim_local *l, int64_t now)
{
    return floor_div(now - l->window_ms, l->bucket_ms) + 1;
}

/* Drops the buckets older than `oldest`; returns what is left in the window. */
static int64_t trim(struct window *w, int64_t oldest)
{
    if (!w)
        return 0;
    if (w->total == 0) {
        w->first = oldest;
        return 0;
    }
    if (oldest - w->first >= LIM_RING) {
        memset(w + 1, 0, LIM_RING * (size_t)w->width);
        w->total = 0;
    } else {
        for (int64_t b = w->first; b < oldest; b++) {
            w->total -= slot(w, b);
            slot_put(w, b, 0);
        }
    }
    w->first = oldest;
    return w->total;
}

/* Counts amount (0 or more) in the bucket; makes the window if need be. */
static void add(struct window **wp, int64_t bucket, int64_t amount)
{
    slot_set(wp, bucket, (*wp ? slot(*wp, bucket) : 0) + amount);
    struct window *w = *wp;
    w->total += amount;
    if (bucket > w->newest)
        w->newest = bucket;
}

/* Milliseconds until `need` of what is in the window has left it. */
static int64_t free_after(const struct lim_local *l, const struct window *w, int64_t need,
                          int64_t oldest, int64_t cur, int64_t now)
{
    int64_t freed = 0;
    for (int64_t b = oldest; w && b <= cur; b++) {
        freed += slot(w, b);
        if (freed >= need)
            return b * l->bucket_ms + l->window_ms - now;
    }
    return l->window_ms;
}

static int64_t reset_after(const struct lim_local *l, const struct window *w, int64_t now)
{
    return w && w->total > 0 ? SL_MAX(w->newest * l->bucket_ms + l->window_ms - now, 0) : 0;
}

/* What the seed still adds to dimension d. */
static int64_t seeded(const struct entry *e, int d, int64_t oldest)
{
    return e->seed.bucket >= oldest ? e->seed.used[d] : 0;
}

/* Milliseconds until the seed has left the window (0 if it has). */
static int64_t seed_expires(const struct lim_local *l, const struct entry *e, int64_t oldest,
                            int64_t now)
{
    return e->seed.bucket >= oldest ? e->seed.bucket * l->bucket_ms + l->window_ms - now : 0;
}

/* ---- scopes: the key, its team, and the end user per key and per team ---- */

/* One scope's limits, as an admission checks them. */
struct scope_limits {
    bool on;
    int64_t win[3]; /* rpm, input_tpm, output_tpm */
    int64_t budget;
    int budget_period;
    int64_t max_inflight;
    int64_t spike_us, spike_burst; /* spike arrest (key and team only) */
};

enum { SC_KEY, SC_TEAM, SC_USER, SC_TEAM_USER, SC_N };

/* Each scope's dimensions: its first window's, its budget's, its slots'. */
static const struct {
    enum lim_dim first, budget, inflight;
    enum lim_counter counter;
} scope_dims[SC_N] = {
    { LIM_DIM_REQUESTS, LIM_DIM_BUDGET, LIM_DIM_INFLIGHT, LIM_BUDGET },
    { LIM_DIM_TEAM_REQUESTS, LIM_DIM_TEAM_BUDGET, LIM_DIM_TEAM_INFLIGHT, LIM_TEAM_BUDGET },
    { LIM_DIM_USER_REQUESTS, LIM_DIM_USER_BUDGET, LIM_DIM_USER_INFLIGHT, LIM_USER_BUDGET },
    { LIM_DIM_TEAM_USER_REQUESTS, LIM_DIM_TEAM_USER_BUDGET, LIM_DIM_TEAM_USER_INFLIGHT,
      LIM_TEAM_USER_BUDGET },
};

static struct scope_limits user_limits(const struct lim_user *u, bool on)
{
    return (struct scope_limits){ .on = on,
                                  .win = { u->rpm, u->input_tpm, u->output_tpm },
                                  .budget = u->budget,
                                  .budget_period = u->budget_period,
                                  .max_inflight = u->max_inflight };
}

static struct scope_limits scope_limits_of(const struct lim_limits *lim, int s)
{
    const struct lim_team *t = &lim->team;
    switch (s) {
    case SC_KEY:
        return (struct scope_limits){ .on = true,
                                      .win = { lim->rpm, lim->input_tpm, lim->output_tpm },
                                      .budget = lim->budget,
                                      .budget_period = lim->budget_period,
                                      .max_inflight = lim->max_inflight,
                                      .spike_us = lim->spike_us,
                                      .spike_burst = lim->spike_burst };
    case SC_TEAM:
        return (struct scope_limits){ .on = t->name[0] != '\0',
                                      .win = { t->rpm, t->input_tpm, t->output_tpm },
                                      .budget = t->budget,
                                      .budget_period = t->budget_period,
                                      .max_inflight = t->max_inflight,
                                      .spike_us = t->spike_us,
                                      .spike_burst = t->spike_burst };
    case SC_USER:
        return user_limits(&lim->key_user, lim_user_scope(lim, LIM_SCOPE_USER));
    default:
        return user_limits(&lim->team_user, lim_user_scope(lim, LIM_SCOPE_TEAM_USER));
    }
}

/* ---- end users' entries: bounded, dropped when idle ---- */

/* Nothing in its windows (as of `oldest`), no slot, no spend, no seed that
 * still counts: dropping it loses nothing. Under table_lock, refs 0. */
static bool entry_idle(struct entry *e, int64_t oldest)
{
    if (e->refs || e->inflight || e->budget.used || e->seed.budget.used || e->seed.bucket >= oldest)
        return false;
    for (int d = 0; d < 3; d++)
        if (trim(e->win[d], oldest) > 0)
            return false;
    return true;
}

/* Drops the idle entries. Under table_lock. */
static void users_sweep(struct lim_local *l)
{
    int64_t oldest = oldest_bucket(l, now_ms());
    for (size_t b = 0; b < l->nuser_buckets; b++)
        for (struct entry **at = &l->users[b]; *at;) {
            struct entry *e = *at;
            if (entry_idle(e, oldest)) {
                *at = e->chain;
                entry_free(e);
                l->nusers--;
            } else {
                at = &e->chain;
            }
        }
}

static void users_grow(struct lim_local *l)
{
    size_t n = l->nuser_buckets ? 2 * l->nuser_buckets : 1024;
    struct entry **t = sl_calloc(n, sizeof(*t));
    for (size_t b = 0; b < l->nuser_buckets; b++)
        for (struct entry *e = l->users[b], *next; e; e = next) {
            next = e->chain;
            size_t i = sl_hash(e->name, strlen(e->name)) & (n - 1);
            e->chain = t[i];
            t[i] = e;
        }
    free(l->users);
    l->users = t;
    l->nuser_buckets = n;
}

/* An end user's entry, held (refs) until user_put; made if need be. NULL
 * when users_max entries are held and none is idle (warned once a minute). */
static struct entry *user_get(struct lim_local *l, const char *name)
{
    size_t len = strlen(name);
    pthread_mutex_lock(&l->table_lock);
    uint64_t h = sl_hash(name, len);
    struct entry *e = NULL;
    if (l->nuser_buckets)
        for (e = l->users[h & (l->nuser_buckets - 1)]; e && strcmp(e->name, name) != 0;)
            e = e->chain;
    if (!e && l->nusers >= l->users_max)
        users_sweep(l);
    if (!e && l->nusers < l->users_max) {
        if (l->nusers >= l->nuser_buckets)
            users_grow(l);
        e = sl_calloc(1, sizeof(*e));
        e->name = sl_strdup(name);
        pthread_mutex_init(&e->lock, NULL);
        size_t i = h & (l->nuser_buckets - 1);
        e->chain = l->users[i];
        l->users[i] = e;
        l->nusers++;
    }
    int64_t now = now_ms();
    bool say = !e && now - l->users_full_said_ms >= 60000;
    if (e)
        e->refs++;
    else if (say)
        l->users_full_said_ms = now;
    size_t held = l->nusers;
    pthread_mutex_unlock(&l->table_lock);
    if (say)
        log_warn("in-process limiter: %zu end users are counted and none is idle; requests of new "
                 "users are refused until some are", held);
    return e;
}

static void user_put(struct lim_local *l, struct entry *e)
{
    pthread_mutex_lock(&l->table_lock);
    e->refs--;
    pthread_mutex_unlock(&l->table_lock);
}

/* A scope's entry: the key's under its name; a team's behind '@', which no
 * key name holds; an end user's behind \1 (per key) or \2 (per team), the
 * key's or team's name, \1 and the id (no name or id holds a control
 * character), held until scope_put. NULL when the scope is off, or (*full)
 * when no more users can be counted. */
static struct entry *scope_entry(struct lim_local *l, const char *key, const struct lim_limits *lim,
                                 int s, bool on, bool *full)
{
    if (!on)
        return NULL;
    if (s == SC_KEY)
        return entry_for(l, key);
    char name[LIM_NAME + LIM_USER + 4];
    if (s == SC_TEAM) {
        snprintf(name, sizeof(name), "@%s", lim->team.name);
        return entry_for(l, name);
    }
    snprintf(name, sizeof(name), "%c%s\1%s", s == SC_USER ? 1 : 2,
             s == SC_USER ? key : lim->team.name, lim->user);
    struct entry *e = user_get(l, name);
    if (!e && full)
        *full = true;
    return e;
}

static void scope_put(struct lim_local *l, int s, struct entry *e)
{
    if (e && s >= SC_USER)
        user_put(l, e);
}

/* The windows, budgets and slots one decision reports for a scope. */
struct scope_use {
    int64_t used[3], reset_ms[3];
    int64_t inflight;
    struct lim_count budget;
};

static void use_out(struct lim_decision *out, int s, const struct scope_use *u)
{
    switch (s) {
    case SC_KEY:
        out->used_requests = u->used[0];
        out->used_input = u->used[1];
        out->used_output = u->used[2];
        out->reset_requests_ms = u->reset_ms[0];
        out->reset_input_ms = u->reset_ms[1];
        out->reset_output_ms = u->reset_ms[2];
        out->used_inflight = u->inflight;
        out->budget = u->budget;
        return;
    case SC_TEAM:
        out->team_requests = u->used[0];
        out->team_input = u->used[1];
        out->team_output = u->used[2];
        out->team_inflight = u->inflight;
        out->team_budget = u->budget;
        return;
    default: {
        struct lim_user_use *o = s == SC_USER ? &out->user : &out->team_user;
        *o = (struct lim_user_use){ .requests = u->used[0], .input = u->used[1],
                                    .output = u->used[2], .inflight = u->inflight,
                                    .budget = u->budget };
    }
    }
}

/* What a decision reported for a scope (the seed's source). */
static struct scope_use use_in(const struct lim_decision *d, int s)
{
    switch (s) {
    case SC_KEY:
        return (struct scope_use){ .used = { d->used_requests, d->used_input, d->used_output },
                                   .budget = d->budget };
    case SC_TEAM:
        return (struct scope_use){ .used = { d->team_requests, d->team_input, d->team_output },
                                   .budget = d->team_budget };
    default: {
        const struct lim_user_use *u = s == SC_USER ? &d->user : &d->team_user;
        return (struct scope_use){ .used = { u->requests, u->input, u->output },
                                   .budget = u->budget };
    }
    }
}

void lim_local_seed(struct lim_local *l, const char *key, const struct lim_limits *lim,
                    const struct lim_decision *d)
{
    int64_t bucket = floor_div(now_ms(), l->bucket_ms);
    for (int s = 0; s < SC_N; s++) {
        struct scope_limits sl = scope_limits_of(lim, s);
        struct entry *e = scope_entry(l, key, lim, s, sl.on, NULL);
        if (!e)
            continue;
        struct scope_use u = use_in(d, s);
        pthread_mutex_lock(&e->lock);
        e->seed = (struct seed){ .bucket = bucket,
                                 .used = { u.used[0], u.used[1], u.used[2] },
                                 .budget.used = u.budget.used };
        memcpy(e->seed.budget.period, u.budget.period, LIM_PERIOD_ID);
        if (s == SC_KEY) {
            e->seed.quota.used = d->used_quota;
            memcpy(e->seed.quota.period, d->period, LIM_PERIOD_ID);
        }
        pthread_mutex_unlock(&e->lock);
        scope_put(l, s, e);
    }
}

/* The counter of the current period of `kind` (a new period starts at 0), and
 * in *out the period, the time until it ends and what is used in it, the
 * seed's part included. */
static struct counter *counter_now(struct counter *c, const struct counter *seed, int kind,
                                   int64_t now, struct lim_count *out)
{
    lim_period(kind, now, out->period, &out->reset_ms);
    if (strcmp(c->period, out->period) != 0) {
        memcpy(c->period, out->period, sizeof(c->period));
        c->used = 0;
    }
    out->used = c->used + (strcmp(seed->period, out->period) == 0 ? seed->used : 0);
    return c;
}

/* Adds to the counter while it counts the admission's period (a new period
 * since then wins; a reset does not, as in lua/limits.lua). Never below 0. */
static void counter_settle(struct counter *c, const char *period, int64_t delta)
{
    if (delta && strcmp(c->period, period) == 0)
        c->used = SL_MAX(c->used + delta, 0);
}

/* One scope of a decision: its entry (locked), limits, windows as the
 * admission finds them, and budget. */
struct view {
    struct entry *e; /* NULL: the scope is off */
    struct scope_limits lim;
    int64_t used[3];
    struct counter *b; /* the budget (NULL: none) */
    struct lim_count budget;
};

/* Whether the windows refuse `wants`; the refusal (dimension first + d) in out. */
static bool windows_refuse(const struct lim_local *l, const struct view *v,
                           const int64_t wants[3], int64_t oldest, int64_t cur, int64_t now,
                           int first, struct lim_decision *out)
{
    const struct entry *e = v->e;
    for (int d = 0; d < 3; d++) {
        int64_t limit = v->lim.win[d], used = v->used[d];
        if (!limit)
            continue;
        bool over = d == 2 ? used >= limit : used + wants[d] > limit;
        if (!over)
            continue;
        out->dim = (enum lim_dim)(first + d);
        out->limit = limit;
        out->used = used;
        out->requested = wants[d];
        int64_t need = d == 2 ? used - limit + 1 : used + wants[d] - limit;
        if (d != 2 && wants[d] > limit)
            out->retry_ms = -1;
        else if (seeded(e, d, oldest)) /* conservative: when the seed has gone as well */
            out->retry_ms = SL_MAX(seed_expires(l, e, oldest, now),
                                   free_after(l, e->win[d], SL_MAX(need - seeded(e, d, oldest), 1),
                                              oldest, cur, now));
        else
            out->retry_ms = free_after(l, e->win[d], need, oldest, cur, now);
        return true;
    }
    return false;
}

/* Spike arrest (a GCRA, as lua/limits.lua): refused while the next arrival
 * time is more than spike_burst spacings away; Retry-After exact. */
static bool spike_refuses(const struct view *v, int64_t now_us, enum lim_dim dim,
                          struct lim_decision *out)
{
    int64_t gap = v->lim.spike_us;
    if (!gap)
        return false;
    int64_t tat = SL_MAX(v->e->tat_us, now_us), tau = gap * v->lim.spike_burst;
    if (tat - now_us <= tau)
        return false;
    *out = (struct lim_decision){ .dim = dim, .limit = v->lim.spike_burst + 1,
                                  .used = (tat - now_us + gap - 1) / gap, .requested = 1,
                                  .retry_ms = (tat - tau - now_us + 999) / 1000,
                                  .where = out->where, .bucket = out->bucket };
    return true;
}

/* Whether a quota or budget refuses `want`. */
static bool counter_refuses(int64_t limit, const struct lim_count *c, int64_t want,
                            enum lim_dim dim, struct lim_decision *out)
{
    if (!limit || c->used + want <= limit)
        return false;
    *out = (struct lim_decision){ .dim = dim, .limit = limit, .used = c->used, .requested = want,
                                  .retry_ms = -1, .where = out->where, .bucket = out->bucket };
    return true;
}

static void record(struct window **wp, int64_t limit, int64_t bucket, int64_t amount)
{
    if (limit && amount)
        add(wp, bucket, amount);
}

/* max_inflight: refused when every slot is taken; a refused request can
 * only wait for one to free, so Retry-After is 1 s. */
static bool inflight_refuses(int64_t limit, int64_t open, enum lim_dim dim,
                             struct lim_decision *out)
{
    if (!limit || open < limit)
        return false;
    *out = (struct lim_decision){ .dim = dim, .limit = limit, .used = open, .requested = 1,
                                  .retry_ms = 1000, .where = out->where, .bucket = out->bucket };
    return true;
}

/* Adds an admission's reservation to a counter it has (c NULL: none) and to its report n. */
static void charge(struct counter *c, struct lim_count *n, int64_t amount)
{
    if (!c)
        return;
    c->used += amount;
    n->used += amount;
}

/* One decision's view of a key, its team and its user, under their locks. */
struct deciding {
    struct lim_local *l;
    const struct lim_limits *lim;
    int64_t now, cur, oldest;
    int64_t now_us; /* spike arrest's clock (monotonic) */
    int64_t wants[3]; /* requests, input, output of this request */
    struct view v[SC_N];
    struct counter *q; /* the key's quota (NULL: none) */
    struct lim_count quota;
};

static void view_open(struct deciding *x, int s, struct entry *e, struct scope_limits sl)
{
    struct view *v = &x->v[s];
    v->e = e;
    v->lim = sl;
    if (!e)
        return;
    for (int d = 0; d < 3; d++)
        v->used[d] = trim(e->win[d], x->oldest) + seeded(e, d, x->oldest);
    if (sl.budget)
        v->b = counter_now(&e->budget, &e->seed.budget, sl.budget_period, x->now, &v->budget);
}

/* The first dimension that refuses: the spike arrests (key, team), then
 * the key's windows, quota and budget,
 * then the team's, the user's per key and per team, then the slots (as
 * lua/limits.lua); false if none does. */
static bool refuses(struct deciding *x, int64_t cost, int64_t spend, struct lim_decision *out)
{
    const struct lim_limits *lim = x->lim;
    if ((x->v[SC_KEY].e && spike_refuses(&x->v[SC_KEY], x->now_us, LIM_DIM_SPIKE, out)) ||
        (x->v[SC_TEAM].e && spike_refuses(&x->v[SC_TEAM], x->now_us, LIM_DIM_TEAM_SPIKE, out)))
        return true;
    for (int s = 0; s < SC_N; s++) {
        const struct view *v = &x->v[s];
        if (!v->e)
            continue;
        if (windows_refuse(x->l, v, x->wants, x->oldest, x->cur, x->now, scope_dims[s].first,
                           out) ||
            (s == SC_KEY && counter_refuses(lim->quota, &x->quota, cost, LIM_DIM_QUOTA, out)) ||
            counter_refuses(v->lim.budget, &v->budget, spend, scope_dims[s].budget, out))
            return true;
    }
    for (int s = 0; s < SC_N; s++)
        if (x->v[s].e && inflight_refuses(x->v[s].lim.max_inflight, x->v[s].e->inflight,
                                          scope_dims[s].inflight, out))
            return true;
    return false;
}

/* The admission recorded: the request and its input in the windows (output
 * comes at settlement), the quota and budgets charged, a slot taken. */
static void record_admission(struct deciding *x, int64_t cost, int64_t spend,
                             struct lim_decision *out)
{
    charge(x->q, &x->quota, cost);
    for (int s = 0; s < SC_N; s++) {
        struct view *v = &x->v[s];
        if (!v->e)
            continue;
        for (int d = 0; d < 2; d++)
            record(&v->e->win[d], v->lim.win[d], x->cur, x->wants[d]);
        charge(v->b, &v->budget, spend);
        v->e->inflight += v->lim.max_inflight ? 1 : 0;
        if (v->lim.spike_us)
            v->e->tat_us = SL_MAX(v->e->tat_us, x->now_us) + v->lim.spike_us;
    }
    if (lim_takes_slot(x->lim))
        out->lease = lim_lease_new();
    out->input_reserved = cost;
    out->spend_reserved = spend;
}

/* Every scope as it stands now, into the decision (the windows only when admitted). */
static void report(struct deciding *x, bool admitted, struct lim_decision *out)
{
    out->admitted = admitted;
    for (int s = 0; s < SC_N; s++) {
        const struct view *v = &x->v[s];
        struct scope_use u = { .budget = v->budget };
        if (v->e && admitted)
            for (int d = 0; d < 3; d++) {
                const struct window *w = v->e->win[d];
                u.used[d] = (w ? w->total : 0) + seeded(v->e, d, x->oldest);
                u.reset_ms[d] = reset_after(x->l, w, x->now);
            }
        if (v->e)
            u.inflight = v->e->inflight;
        use_out(out, s, &u);
    }
}

static void decide(struct lim_local *l, const char *key, const struct lim_limits *lim,
                   int64_t cost, int64_t spend, bool peek, struct lim_decision *out)
{
    struct deciding x = { .l = l, .lim = lim, .now = now_ms(), .now_us = sl_now_us(),
                          .wants = { 1, cost, 0 } };
    x.cur = floor_div(x.now, l->bucket_ms);
    x.oldest = oldest_bucket(l, x.now);
    struct entry *e[SC_N];
    struct scope_limits sl[SC_N];
    bool full = false;
    for (int s = 0; s < SC_N; s++) {
        sl[s] = scope_limits_of(lim, s);
        e[s] = scope_entry(l, key, lim, s, sl[s].on, &full);
    }
    memset(out, 0, sizeof(*out));
    out->where = LIM_LOCAL;
    out->bucket = x.cur;
    if (full) { /* the user cannot be counted: never admitted uncounted */
        for (int s = 0; s < SC_N; s++)
            scope_put(l, s, e[s]);
        out->unavailable = true;
        return;
    }

    /* Always the key's lock first, then its team's, then the user's: no two
     * admissions wait on each other. */
    for (int s = 0; s < SC_N; s++)
        if (e[s])
            pthread_mutex_lock(&e[s]->lock);
    for (int s = 0; s < SC_N; s++)
        view_open(&x, s, e[s], sl[s]);
    if (lim->quota)
        x.q = counter_now(&e[SC_KEY]->quota, &e[SC_KEY]->seed.quota, lim->quota_period, x.now,
                          &x.quota);
    bool refused = !peek && refuses(&x, cost, spend, out);
    if (!peek && (!refused || lim->shadow))
        record_admission(&x, cost, spend, out);
    report(&x, !refused || lim->shadow, out);
    for (int s = SC_N - 1; s >= 0; s--)
        if (e[s]) {
            pthread_mutex_unlock(&e[s]->lock);
            scope_put(l, s, e[s]);
        }
    out->used_quota = x.quota.used;
    out->quota_reset_ms = x.quota.reset_ms;
    memcpy(out->period, x.quota.period, sizeof(out->period));
}

void lim_local_admit(struct lim_local *l, const char *key, const struct lim_limits *lim,
                     int64_t cost, int64_t spend, struct lim_decision *out)
{
    decide(l, key, lim, cost, spend, false, out);
}

void lim_local_peek(struct lim_local *l, const char *key, const struct lim_limits *lim,
                    struct lim_decision *out)
{
    decide(l, key, lim, 0, 0, true, out);
}

void lim_local_count(struct lim_local *l, const char *key, const struct lim_limits *lim,
                     enum lim_counter which, enum lim_quota_op op, int64_t amount,
                     struct lim_decision *out)
{
    int s = which == LIM_QUOTA ? SC_KEY : 0;
    while (which != LIM_QUOTA && scope_dims[s].counter != which)
        s++;
    struct scope_limits sl = scope_limits_of(lim, s);
    bool full = false;
    struct entry *e = scope_entry(l, key, lim, s, true, &full);
    memset(out, 0, sizeof(*out));
    out->where = LIM_LOCAL;
    if (!e) {
        out->unavailable = true;
        return;
    }
    struct counter *c = which == LIM_QUOTA ? &e->quota : &e->budget;
    struct counter *seed = which == LIM_QUOTA ? &e->seed.quota : &e->seed.budget;
    int kind = which == LIM_QUOTA ? lim->quota_period : sl.budget_period;
    struct lim_count n;
    pthread_mutex_lock(&e->lock);
    counter_now(c, seed, kind, now_ms(), &n);
    if (op == LIM_QUOTA_RESET) {
        c->used = 0;
        seed->used = 0;
    } else if (op == LIM_QUOTA_ADD) {
        c->used = SL_MAX(c->used + amount, 0);
    }
    if (op != LIM_QUOTA_READ)
        counter_now(c, seed, kind, now_ms(), &n);
    pthread_mutex_unlock(&e->lock);
    scope_put(l, s, e);
    if (which == LIM_QUOTA) {
        out->used_quota = n.used;
        out->quota_reset_ms = n.reset_ms;
        memcpy(out->period, n.period, sizeof(out->period));
    } else {
        use_out(out, s, &(struct scope_use){ .budget = n });
    }
}

/* Corrects one entry's windows for a settled request. */
static void settle_windows(struct entry *e, const int64_t lim[3], int64_t bucket, int64_t oldest,
                           int64_t cur, const struct lim_usage *u)
{
    for (int d = 0; d < 3; d++)
        trim(e->win[d], oldest);
    if (bucket >= oldest) { /* the reservation is still in the window: correct it there */
        if (lim[1] && u->input_delta && e->win[1]) {
            int64_t held = slot(e->win[1], bucket);
            int64_t delta = SL_MAX(u->input_delta, -held);
            slot_set(&e->win[1], bucket, held + delta);
            e->win[1]->total += delta;
        }
        struct window *rq = e->win[0];
        if (u->release && lim[0] && rq && slot(rq, bucket) > 0) {
            slot_put(rq, bucket, slot(rq, bucket) - 1);
            rq->total--;
        }
    }
    if (lim[2] && u->output > 0)
        add(&e->win[2], cur, u->output);
}

void lim_local_settle(struct lim_local *l, const char *key, const struct lim_limits *lim,
                      const struct lim_decision *ticket, const struct lim_usage *u)
{
    int64_t now = now_ms();
    int64_t cur = floor_div(now, l->bucket_ms);
    int64_t oldest = oldest_bucket(l, now);
    for (int s = 0; s < SC_N; s++) {
        struct scope_limits sl = scope_limits_of(lim, s);
        struct entry *e = scope_entry(l, key, lim, s, sl.on, NULL);
        if (!e)
            continue;
        pthread_mutex_lock(&e->lock);
        settle_windows(e, sl.win, ticket->bucket, oldest, cur, u);
        if (s == SC_KEY && lim->quota)
            counter_settle(&e->quota, ticket->period, u->quota_delta);
        if (sl.budget)
            counter_settle(&e->budget, lim_count_of(ticket, scope_dims[s].counter).period,
                           u->spend_delta);
        if (ticket->lease && sl.max_inflight && e->inflight > 0)
            e->inflight--;
        pthread_mutex_unlock(&e->lock);
        scope_put(l, s, e);
    }
}

/* ---- the operations table: the in-process windows answer at once ---- */

static bool local_up(const void *self)
{
    (void)self;
    return true;
}

static void local_admit(void *self, const char *key, const struct lim_limits *lim, int64_t cost,
                        int64_t spend, lim_answer cb, void *arg)
{
    struct lim_decision d;
    lim_local_admit(self, key, lim, cost, spend, &d);
    cb(true, &d, arg);
}

static void local_peek(void *self, const char *key, const struct lim_limits *lim, lim_answer cb,
                       void *arg)
{
    struct lim_decision d;
    lim_local_peek(self, key, lim, &d);
    cb(true, &d, arg);
}

static void local_count(void *self, const char *key, const struct lim_limits *lim,
                        enum lim_counter which, enum lim_quota_op op, int64_t amount,
                        lim_answer cb, void *arg)
{
    struct lim_decision d;
    lim_local_count(self, key, lim, which, op, amount, &d);
    cb(true, &d, arg);
}

static void local_settle(void *self, const char *key, const struct lim_limits *lim,
                         const struct lim_decision *ticket, const struct lim_usage *u)
{
    lim_local_settle(self, key, lim, ticket, u);
}

/* ---- owners of stored resources ---- */

/* The record of id, unlinked first when it has expired. Under owners_lock. */
static struct owner_rec **owner_slot(struct lim_local *l, const char *id, int64_t now_ms)
{
    if (!l->nbuckets)
        return NULL;
    struct owner_rec **at = &l->owners[sl_hash(id, strlen(id)) & (l->nbuckets - 1)];
    while (*at) {
        struct owner_rec *o = *at;
        if (o->expires_ms && o->expires_ms <= now_ms) { /* gone upstream too: forget it */
            *at = o->next;
            free(o->owner);
            free(o);
            l->nowners--;
            continue;
        }
        if (strcmp(o->id, id) == 0)
            return at;
        at = &o->next;
    }
    return at;
}

static void owners_grow(struct lim_local *l)
{
    size_t n = l->nbuckets ? l->nbuckets * 2 : 1024;
    struct owner_rec **t = sl_calloc(n, sizeof(*t));
    for (size_t b = 0; b < l->nbuckets; b++)
        for (struct owner_rec *o = l->owners[b], *next; o; o = next) {
            next = o->next;
            struct owner_rec **head = &t[sl_hash(o->id, strlen(o->id)) & (n - 1)];
            o->next = *head;
            *head = o;
        }
    free(l->owners);
    l->owners = t;
    l->nbuckets = n;
}

static void local_owners(void *self, const char *const *ids, int n, lim_owners_cb cb, void *arg)
{
    struct lim_local *l = self;
    n = SL_MIN(n, LIM_OWNERS_MAX);
    const char **found = sl_calloc((size_t)n + 1, sizeof(*found));
    char **copies = sl_calloc((size_t)n + 1, sizeof(*copies));
    int64_t now = sl_wall_us() / 1000;
    pthread_mutex_lock(&l->owners_lock);
    for (int i = 0; i < n; i++) {
        struct owner_rec **at = owner_slot(l, ids[i], now);
        copies[i] = at && *at ? sl_strdup((*at)->owner) : NULL; /* another thread may remove it */
        found[i] = copies[i];
    }
    pthread_mutex_unlock(&l->owners_lock);
    cb(true, found, arg);
    for (int i = 0; i < n; i++)
        free(copies[i]);
    free(copies);
    free(found);
}

void lim_local_owners_max(struct lim_local *l, size_t max)
{
    l->owners_max = max;
}

/* Full: the expired records go (one sweep); false if it is full still. Under owners_lock. */
static bool owners_room(struct lim_local *l, int64_t now)
{
    if (l->nowners < l->owners_max)
        return true;
    for (size_t b = 0; b < l->nbuckets; b++)
        for (struct owner_rec **at = &l->owners[b]; *at;)
            if ((*at)->expires_ms && (*at)->expires_ms <= now) {
                struct owner_rec *o = *at;
                *at = o->next;
                free(o->owner);
                free(o);
                l->nowners--;
            } else {
                at = &(*at)->next;
            }
    if (l->nowners < l->owners_max)
        return true;
    if (now - l->owners_full_said_ms >= 60000) {
        l->owners_full_said_ms = now;
        log_warn("%zu owner records of stored resources held in process: new ones are not kept "
                 "(what they name is nobody's through sluice); with [redis] they live there",
                 l->nowners);
    }
    return false;
}

static void local_own(void *self, const char *id, const char *owner, int64_t ttl_s,
                      lim_done_cb done, void *arg)
{
    struct lim_local *l = self;
    int64_t now = sl_wall_us() / 1000;
    pthread_mutex_lock(&l->owners_lock);
    if (owner && !owners_room(l, now)) {
        pthread_mutex_unlock(&l->owners_lock);
        if (done)
            done(false, arg);
        return;
    }
    if (owner && l->nowners >= l->nbuckets * 2)
        owners_grow(l);
    struct owner_rec **at = owner_slot(l, id, now);
    if (at && *at) { /* replaced or removed */
        struct owner_rec *o = *at;
        *at = o->next;
        free(o->owner);
        free(o);
        l->nowners--;
    }
    if (owner) {
        size_t len = strlen(id);
        struct owner_rec *o = sl_malloc(sizeof(*o) + len + 1);
        memcpy(o->id, id, len + 1);
        o->owner = sl_strdup(owner);
        o->expires_ms = ttl_s ? now + ttl_s * 1000 : 0;
        o->next = *at;
        *at = o;
        l->nowners++;
    }
    pthread_mutex_unlock(&l->owners_lock);
    if (done)
        done(true, arg);
}

const struct lim_ops lim_local_ops = {
    .where = LIM_LOCAL,
    .up = local_up,
    .admit = local_admit,
    .peek = local_peek,
    .count = local_count,
    .settle = local_settle,
    .renew = NULL, /* an in-process slot dies with the process */
    .owners = local_owners,
    .own = local_own,
};
