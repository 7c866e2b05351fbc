/* In-process sliding windows: the same bucketed algorithm as lua/admit.lua
 * and lua/settle.lua, for a single node (no [redis]) and for on_error =
 * local. One entry per key name, kept across reloads; each entry has its own
 * mutex, so workers contend only on the same key. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/limit.h"
#include "sluice/util.h"

struct window {
    int64_t first;  /* oldest bucket still counted; valid when total > 0 */
    int64_t newest; /* newest bucket written */
    int64_t total;
    int64_t ring[LIM_RING];
};

/* The last state Redis reported for a key (on_error = local): while Redis is
 * down, local decisions count it as if it had all come in the bucket it was
 * reported in. It leaves the window no earlier than the admissions it sums
 * did, so a node never admits more than the limit in any window. */
struct seed {
    int64_t bucket;
    int64_t used[3];
    char period[LIM_PERIOD_ID];
    int64_t quota;
};

struct entry {
    char *name;
    pthread_mutex_t lock;
    struct window win[3]; /* requests, input, output */
    char period[LIM_PERIOD_ID]; /* the quota period `quota_used` belongs to */
    int64_t quota_used;
    struct seed seed;
    struct entry *next;
};

#define NSLOTS 1024

struct lim_local {
    int64_t window_ms, bucket_ms;
    pthread_mutex_t table_lock;
    struct entry *slots[NSLOTS];
};

struct lim_local *lim_local_new(int64_t window_ms)
{
    struct lim_local *l = sl_calloc(1, sizeof(*l));
    l->window_ms = window_ms;
    l->bucket_ms = SL_MAX(window_ms / LIM_BUCKETS, 1);
    pthread_mutex_init(&l->table_lock, NULL);
    return l;
}

void lim_local_free(struct lim_local *l)
{
    if (!l)
        return;
    for (int i = 0; i < NSLOTS; i++) {
        struct entry *e = l->slots[i], *next;
        for (; e; e = next) {
            next = e->next;
            pthread_mutex_destroy(&e->lock);
            free(e->name);
            free(e);
        }
    }
    pthread_mutex_destroy(&l->table_lock);
    free(l);
}

static struct entry *entry_for(struct lim_local *l, const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    pthread_mutex_lock(&l->table_lock);
    struct entry **slot = &l->slots[h % NSLOTS], *e = *slot;
    while (e && strcmp(e->name, name) != 0)
        e = e->next;
    if (!e) {
        e = sl_calloc(1, sizeof(*e));
        e->name = sl_strdup(name);
        pthread_mutex_init(&e->lock, NULL);
        e->next = *slot;
        *slot = e;
    }
    pthread_mutex_unlock(&l->table_lock);
    return e;
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
    if (w->total == 0) {
        w->first = oldest;
        return 0;
    }
    if (oldest - w->first >= LIM_RING) {
        memset(w->ring, 0, sizeof(w->ring));
        w->total = 0;
    } else {
        for (int64_t b = w->first; b < oldest; b++) {
            w->total -= w->ring[b % LIM_RING];
            w->ring[b % LIM_RING] = 0;
        }
    }
    w->first = oldest;
    return w->total;
}

static void add(struct window *w, int64_t bucket, int64_t amount)
{
    w->ring[bucket % LIM_RING] += amount;
    w->total += amount;
    if (bucket > w->newest)
        w->newest = bucket;
}

/* Milliseconds until `need` of what is in the window has left it. */
static int64_t free_after(const struct lim_local *l, const struct window *w, int64_t need,
                          int64_t oldest, int64_t cur, int64_t now)
{
    int64_t freed = 0;
    for (int64_t b = oldest; b <= cur; b++) {
        freed += w->ring[b % LIM_RING];
        if (freed >= need)
            return b * l->bucket_ms + l->window_ms - now;
    }
    return l->window_ms;
}

static int64_t reset_after(const struct lim_local *l, const struct window *w, int64_t now)
{
    return w->total > 0 ? SL_MAX(w->newest * l->bucket_ms + l->window_ms - now, 0) : 0;
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

void lim_local_seed(struct lim_local *l, const char *key, const struct lim_decision *d)
{
    struct entry *e = entry_for(l, key);
    int64_t now = now_ms();
    pthread_mutex_lock(&e->lock);
    e->seed = (struct seed){ floor_div(now, l->bucket_ms),
                             { d->used_requests, d->used_input, d->used_output },
                             { 0 },
                             d->used_quota };
    memcpy(e->seed.period, d->period, sizeof(e->seed.period));
    pthread_mutex_unlock(&e->lock);
}

/* The entry's quota counter for the current period (a new period starts at 0). */
static int64_t *quota_counter(struct entry *e, const struct lim_limits *lim, int64_t now,
                              struct lim_decision *out)
{
    lim_period(lim->quota_period, now, out->period, &out->quota_reset_ms);
    if (strcmp(e->period, out->period) != 0) {
        memcpy(e->period, out->period, sizeof(e->period));
        e->quota_used = 0;
    }
    return &e->quota_used;
}

void lim_local_admit(struct lim_local *l, const char *key, const struct lim_limits *lim,
                     int64_t cost, struct lim_decision *out)
{
    struct entry *e = entry_for(l, key);
    int64_t now = now_ms();
    int64_t cur = floor_div(now, l->bucket_ms);
    int64_t oldest = oldest_bucket(l, now);
    const int64_t limits[3] = { lim->rpm, lim->input_tpm, lim->output_tpm };
    const int64_t wants[3] = { 1, cost, 0 };
    memset(out, 0, sizeof(*out));
    out->where = LIM_LOCAL;
    out->bucket = cur;

    pthread_mutex_lock(&e->lock);
    int64_t used[3];
    for (int d = 0; d < 3; d++)
        used[d] = trim(&e->win[d], oldest) + seeded(e, d, oldest);
    int64_t *quota_used = quota_counter(e, lim, now, out);
    int64_t quota_seed = e->seed.quota && strcmp(e->seed.period, out->period) == 0 ? e->seed.quota : 0;
    for (int d = 0; d < 3 && !out->dim; d++) {
        if (!limits[d])
            continue;
        bool over = d == 2 ? used[d] >= limits[d] : used[d] + wants[d] > limits[d];
        if (!over)
            continue;
        out->dim = (enum lim_dim)(d + 1);
        out->limit = limits[d];
        out->used = used[d];
        out->requested = wants[d];
        int64_t need = d == 2 ? used[d] - limits[d] + 1 : used[d] + wants[d] - limits[d];
        if (d != 2 && wants[d] > limits[d])
            out->retry_ms = -1;
        else if (seeded(e, d, oldest)) /* conservative: when the seed has gone as well */
            out->retry_ms = SL_MAX(seed_expires(l, e, oldest, now),
                                   free_after(l, &e->win[d], SL_MAX(need - seeded(e, d, oldest), 1),
                                              oldest, cur, now));
        else
            out->retry_ms = free_after(l, &e->win[d], need, oldest, cur, now);
    }
    if (!out->dim && lim->quota && quota_seed + *quota_used + cost > lim->quota) {
        out->dim = LIM_DIM_QUOTA;
        out->limit = lim->quota;
        out->used = quota_seed + *quota_used;
        out->requested = cost;
        out->retry_ms = -1;
    }
    if (out->dim && !lim->shadow) {
        out->used_quota = quota_seed + *quota_used;
        pthread_mutex_unlock(&e->lock);
        return;
    }
    if (lim->rpm)
        add(&e->win[0], cur, 1);
    if (lim->input_tpm && cost)
        add(&e->win[1], cur, cost);
    if (lim->quota)
        *quota_used += cost;
    out->used_quota = quota_seed + *quota_used;
    out->admitted = true;
    out->input_reserved = cost;
    out->used_requests = e->win[0].total + seeded(e, 0, oldest);
    out->used_input = e->win[1].total + seeded(e, 1, oldest);
    out->used_output = e->win[2].total + seeded(e, 2, oldest);
    out->reset_requests_ms = reset_after(l, &e->win[0], now);
    out->reset_input_ms = reset_after(l, &e->win[1], now);
    out->reset_output_ms = reset_after(l, &e->win[2], now);
    pthread_mutex_unlock(&e->lock);
}

void lim_local_peek(struct lim_local *l, const char *key, const struct lim_limits *lim,
                    struct lim_decision *out)
{
    (void)lim;
    struct entry *e = entry_for(l, key);
    int64_t now = now_ms();
    int64_t oldest = oldest_bucket(l, now);
    memset(out, 0, sizeof(*out));
    out->admitted = true;
    out->where = LIM_LOCAL;
    pthread_mutex_lock(&e->lock);
    out->used_requests = trim(&e->win[0], oldest) + seeded(e, 0, oldest);
    out->used_input = trim(&e->win[1], oldest) + seeded(e, 1, oldest);
    out->used_output = trim(&e->win[2], oldest) + seeded(e, 2, oldest);
    out->reset_requests_ms = reset_after(l, &e->win[0], now);
    out->reset_input_ms = reset_after(l, &e->win[1], now);
    out->reset_output_ms = reset_after(l, &e->win[2], now);
    pthread_mutex_unlock(&e->lock);
}

void lim_local_quota(struct lim_local *l, const char *key, const struct lim_limits *lim,
                     enum lim_quota_op op, int64_t tokens, struct lim_decision *out)
{
    struct entry *e = entry_for(l, key);
    memset(out, 0, sizeof(*out));
    out->where = LIM_LOCAL;
    pthread_mutex_lock(&e->lock);
    int64_t *used = quota_counter(e, lim, now_ms(), out);
    if (op == LIM_QUOTA_RESET)
        *used = 0;
    else if (op == LIM_QUOTA_ADD)
        *used = SL_MAX(*used + tokens, 0);
    out->used_quota = *used;
    pthread_mutex_unlock(&e->lock);
}

void lim_local_settle(struct lim_local *l, const char *key, const struct lim_limits *lim,
                      const struct lim_decision *ticket, int64_t input_delta, int64_t output,
                      bool release, int64_t quota_delta)
{
    int64_t bucket = ticket->bucket;
    struct entry *e = entry_for(l, key);
    int64_t now = now_ms();
    int64_t cur = floor_div(now, l->bucket_ms);
    int64_t oldest = oldest_bucket(l, now);
    pthread_mutex_lock(&e->lock);
    for (int d = 0; d < 3; d++)
        trim(&e->win[d], oldest);
    if (bucket >= oldest) { /* the reservation is still in the window: correct it there */
        struct window *in = &e->win[1];
        if (lim->input_tpm && input_delta) {
            int64_t delta = SL_MAX(input_delta, -in->ring[bucket % LIM_RING]);
            in->ring[bucket % LIM_RING] += delta;
            in->total += delta;
        }
        struct window *rq = &e->win[0];
        if (release && lim->rpm && rq->ring[bucket % LIM_RING] > 0) {
            rq->ring[bucket % LIM_RING]--;
            rq->total--;
        }
    }
    if (lim->output_tpm && output > 0)
        add(&e->win[2], cur, output);
    /* The admission's period only: a reset or a new period since then wins. */
    if (lim->quota && quota_delta && strcmp(e->period, ticket->period) == 0)
        e->quota_used = SL_MAX(e->quota_used + quota_delta, 0);
    pthread_mutex_unlock(&e->lock);
}
