/* The identity provider's keys and JWT checks with a per-worker cache (jwks.h). */
#include "sluice/jwks.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/jwt.h"
#include "sluice/log.h"
#include "sluice/upstream.h"
#include "sluice/util.h"

/* A key set, shared by the checks that use it (the store holds one reference). */
struct key_set {
    atomic_int refs;
    struct jwks keys;
};

struct jwks_store {
    pthread_mutex_t lock; /* the set and the source */
    struct key_set *set;  /* NULL: none yet */
    char *source;         /* the file or URL; NULL without [auth] */
    char *ca_file;
    bool url;
    int64_t refresh_ms;
    int64_t last_ask_ms; /* the last refetch an unknown kid asked for */
    bool fetching_now;   /* a fetch is under way */
    struct event **watchers; /* made active when a fetch ends (sl_grow) */
    int nwatchers;
    /* the fetching worker's (attached): */
    struct up_multi *up;
    struct event *fetch_ev; /* made active to fetch now (from any thread) */
    struct event *timer_ev; /* the next fetch */
    struct up_transfer *xfer;
    char *fetching; /* the URL being fetched */
    struct sl_buf body;
    bool too_big;
};

static void set_unref(struct key_set *k)
{
    if (k && atomic_fetch_sub(&k->refs, 1) == 1) {
        jwks_free(&k->keys);
        free(k);
    }
}

/* Replaces the set (taking new's reference). Under the lock. */
static void set_swap(struct jwks_store *s, struct key_set *new_set)
{
    struct key_set *old = s->set;
    s->set = new_set;
    set_unref(old);
}

static struct key_set *set_new(const char *text, size_t len, char *why, size_t n)
{
    struct key_set *k = sl_calloc(1, sizeof(*k));
    atomic_init(&k->refs, 1);
    if (!jwks_parse(text, len, &k->keys, why, n)) {
        free(k);
        return NULL;
    }
    return k;
}

struct jwks_store *jwks_store_new(void)
{
    struct jwks_store *s = sl_calloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

void jwks_store_free(struct jwks_store *s)
{
    if (!s)
        return;
    jwks_store_detach(s);
    set_unref(s->set);
    free(s->watchers);
    free(s->source);
    free(s->ca_file);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static struct key_set *read_file(const char *path, char *why, size_t n)
{
    FILE *f = fopen(path, "rb");
    char *text = f ? sl_malloc(JWKS_MAX_BYTES + 1) : NULL;
    size_t len = f ? fread(text, 1, JWKS_MAX_BYTES + 1, f) : 0;
    if (f)
        fclose(f);
    if (!text) {
        snprintf(why, n, "cannot read %s", path);
        return NULL;
    }
    char inner[200];
    struct key_set *k = set_new(text, len, inner, sizeof(inner));
    if (!k)
        snprintf(why, n, "%s: %s", path, inner);
    free(text);
    return k;
}

bool jwks_store_configure(struct jwks_store *s, const struct cfg_auth *a, char *why, size_t n)
{
    const char *src = a->enabled ? a->jwks : NULL;
    bool url = src && strncmp(src, "https://", 8) == 0;
    struct key_set *loaded = NULL;
    if (src && !url && !(loaded = read_file(src, why, n)))
        return false;
    pthread_mutex_lock(&s->lock);
    bool changed = !same(src, s->source);
    if (loaded || changed)
        set_swap(s, loaded); /* a file's set now; a new URL's when fetched */
    free(s->source);
    free(s->ca_file);
    s->source = src ? sl_strdup(src) : NULL;
    s->ca_file = a->enabled && a->ca_file ? sl_strdup(a->ca_file) : NULL;
    s->url = url;
    s->refresh_ms = a->jwks_refresh_ms;
    struct event *ev = s->fetch_ev;
    pthread_mutex_unlock(&s->lock);
    if (loaded)
        log_info("auth: %d signing keys from %s", loaded->keys.n, src);
    if (url && changed && ev)
        event_active(ev, EV_READ, 0);
    return true;
}

int jwks_store_keys(struct jwks_store *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->set ? s->set->keys.n : 0;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ---- fetching a URL's set (the attached worker's loop) ---- */

static void fetch_cb(evutil_socket_t fd, short what, void *arg);

static void schedule(struct jwks_store *s, int64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(s->timer_ev, &tv);
}

static size_t on_data(struct up_transfer *t, const char *data, size_t len, void *arg)
{
    (void)t;
    struct jwks_store *s = arg;
    if (s->body.len + len > JWKS_MAX_BYTES) {
        s->too_big = true;
        return 0;
    }
    sl_buf_append(&s->body, data, len);
    return len;
}

static void on_done(struct up_transfer *t, enum up_end how, void *arg)
{
    struct jwks_store *s = arg;
    int status = up_status(t);
    char why[300] = "";
    struct key_set *k = NULL;
    if (how != UP_ANSWERED || status != 200)
        snprintf(why, sizeof(why), "%s",
                 s->too_big ? "the key set is too large"
                 : how != UP_ANSWERED ? (up_error(t)[0] ? up_error(t) : "no answer")
                                      : "not 200");
    else
        k = set_new(s->body.data ? s->body.data : "", s->body.len, why, sizeof(why));
    s->xfer = NULL;
    pthread_mutex_lock(&s->lock);
    s->fetching_now = false;
    bool current = same(s->fetching, s->source);
    int kept = s->set ? s->set->keys.n : 0;
    if (k && current)
        set_swap(s, k);
    int64_t refresh = s->refresh_ms;
    pthread_mutex_unlock(&s->lock);
    if (k && current)
        log_info("auth: %d signing keys from %s", k->keys.n, s->fetching);
    else if (k)
        set_unref(k); /* the source changed meanwhile */
    else
        log_warn("auth: fetching %s failed (status %d: %s); keeping the last good set (%d keys)",
                 s->fetching, status, why, kept);
    schedule(s, k ? refresh : SL_MIN(JWKS_RETRY_MS, refresh));
    pthread_mutex_lock(&s->lock); /* requests held for this fetch are checked again */
    for (int i = 0; i < s->nwatchers; i++)
        event_active(s->watchers[i], EV_READ, 0);
    pthread_mutex_unlock(&s->lock);
}

void jwks_store_watch(struct jwks_store *s, struct event *ev)
{
    pthread_mutex_lock(&s->lock);
    s->watchers = sl_grow(s->watchers, sizeof(*s->watchers), s->nwatchers);
    s->watchers[s->nwatchers++] = ev;
    pthread_mutex_unlock(&s->lock);
}

void jwks_store_unwatch(struct jwks_store *s, struct event *ev)
{
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->nwatchers; i++)
        if (s->watchers[i] == ev)
            s->watchers[i--] = s->watchers[--s->nwatchers];
    pthread_mutex_unlock(&s->lock);
}

static const struct up_callbacks fetch_callbacks = {
    .on_headers = up_ignore_headers,
    .on_data = on_data,
    .on_done = on_done,
    .on_resend = up_resend_always,
};

static void fetch_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct jwks_store *s = arg;
    if (s->xfer)
        return; /* one at a time; its end schedules the next */
    pthread_mutex_lock(&s->lock);
    bool url = s->url;
    s->fetching_now = url;
    free(s->fetching);
    s->fetching = url ? sl_strdup(s->source) : NULL;
    char *ca = s->ca_file ? sl_strdup(s->ca_file) : NULL;
    pthread_mutex_unlock(&s->lock);
    if (!url) {
        free(ca);
        return;
    }
    s->body.len = 0;
    s->too_big = false;
    struct up_request r = { .method = UP_GET, .url = s->fetching, .connect_timeout_ms = 5000,
                            .timeout_ms = 10000, .keepalive_s = 60, .ca_file = ca };
    s->xfer = up_start(s->up, &r, &fetch_callbacks, s);
    free(ca); /* curl copies its options */
    if (!s->xfer) {
        pthread_mutex_lock(&s->lock);
        s->fetching_now = false;
        pthread_mutex_unlock(&s->lock);
        schedule(s, JWKS_RETRY_MS);
    }
}

void jwks_store_attach(struct jwks_store *s, struct event_base *base, struct up_multi *up)
{
    s->up = up;
    s->timer_ev = evtimer_new(base, fetch_cb, s);
    struct event *ev = event_new(base, -1, 0, fetch_cb, s);
    pthread_mutex_lock(&s->lock);
    s->fetch_ev = ev;
    pthread_mutex_unlock(&s->lock);
    event_active(ev, EV_READ, 0); /* the first fetch, as the loop starts */
}

void jwks_store_detach(struct jwks_store *s)
{
    if (s->xfer)
        up_cancel(s->xfer);
    s->xfer = NULL;
    pthread_mutex_lock(&s->lock);
    struct event *ev = s->fetch_ev;
    s->fetch_ev = NULL;
    pthread_mutex_unlock(&s->lock);
    if (ev)
        event_free(ev);
    if (s->timer_ev)
        event_free(s->timer_ev);
    s->timer_ev = NULL;
    free(s->fetching);
    s->fetching = NULL;
    sl_buf_free(&s->body);
}

/* An unknown kid: the set fetched again, at most once per JWKS_REFETCH_MS.
 * Whether a fetch is asked for now or under way (the token may wait for it). */
static bool ask_refetch(struct jwks_store *s)
{
    int64_t now = sl_now_ms();
    pthread_mutex_lock(&s->lock);
    struct event *ev = s->url && now - s->last_ask_ms >= JWKS_REFETCH_MS ? s->fetch_ev : NULL;
    if (ev) {
        s->last_ask_ms = now;
        s->fetching_now = true; /* from now: the fetch may start a moment later */
    }
    bool coming = s->fetching_now && s->fetch_ev;
    pthread_mutex_unlock(&s->lock);
    if (ev)
        event_active(ev, EV_READ, 0);
    return coming;
}

/* ---- the per-worker cache of checked tokens ---- */

#define CACHE_SLOTS 4096 /* a power of two; a full table starts again empty */
#define CACHE_TOKEN_MAX 4096 /* longer tokens are checked every time */

/* A token is found by a fast hash of it and then compared whole: a token
 * whose hash matches a cached one's is never taken for it. */
struct cached {
    uint64_t hash;
    struct jwt_user who;
    size_t len;
    char token[]; /* the token itself */
};

struct jwks_cache {
    uint64_t gen_id;
    int n;
    struct cached *slots[CACHE_SLOTS];
};

struct jwks_cache *jwks_cache_new(void)
{
    return sl_calloc(1, sizeof(struct jwks_cache));
}

static void cache_clear(struct jwks_cache *c)
{
    for (int i = 0; i < CACHE_SLOTS; i++) {
        free(c->slots[i]);
        c->slots[i] = NULL;
    }
    c->n = 0;
}

void jwks_cache_free(struct jwks_cache *c)
{
    if (!c)
        return;
    cache_clear(c);
    free(c);
}

/* The entry for a token (linear probing), or the empty slot it would take. */
static struct cached **cache_find(struct jwks_cache *c, uint64_t h, const char *tok, size_t len)
{
    size_t i = (size_t)h & (CACHE_SLOTS - 1);
    for (struct cached *e; (e = c->slots[i]); i = (i + 1) & (CACHE_SLOTS - 1))
        if (e->hash == h && e->len == len && memcmp(e->token, tok, len) == 0)
            break;
    return &c->slots[i];
}

static void cache_put(struct jwks_cache *c, uint64_t h, const char *tok, size_t len,
                      const struct jwt_user *who)
{
    if (len > CACHE_TOKEN_MAX)
        return;
    if (c->n >= CACHE_SLOTS / 2)
        cache_clear(c); /* tokens are short-lived: starting again costs one check each */
    struct cached **at = cache_find(c, h, tok, len);
    if (*at) {
        (*at)->who = *who;
        return;
    }
    struct cached *e = sl_malloc(sizeof(*e) + len);
    e->hash = h;
    e->who = *who;
    e->len = len;
    memcpy(e->token, tok, len);
    *at = e;
    c->n++;
}

/* ---- the check ---- */

static struct key_set *set_ref(struct jwks_store *s)
{
    pthread_mutex_lock(&s->lock);
    struct key_set *k = s->set;
    if (k)
        atomic_fetch_add(&k->refs, 1);
    pthread_mutex_unlock(&s->lock);
    return k;
}

/* Who the claims name: a user id sluice can key limits on, and a team. */
static bool user_of(const struct config *cfg, const struct jwt_claims *cl, struct jwt_user *out,
                    char *why, size_t n)
{
    size_t len = strlen(cl->user);
    if (!eu_valid(cl->user, len)) {
        snprintf(why, n, "the token's user (%s) is not 1 to %d letters, digits or . _ - @ : + | = /",
                 cfg->auth.user_claim, EU_MAX);
        return false;
    }
    memcpy(out->user, cl->user, len + 1);
    out->team[0] = '\0';
    const char *t = cl->teams;
    for (int i = 0; i < cl->nteams && !out->team[0]; i++, t += strlen(t) + 1)
        if (strlen(t) < sizeof(out->team) && cfg_find_team(cfg, t))
            memcpy(out->team, t, strlen(t) + 1);
    out->exp = cl->exp;
    return true;
}

enum jwks_verdict jwks_check(struct jwks_store *s, struct jwks_cache *c, const struct config *cfg,
                             uint64_t gen_id, const char *token, size_t len, int64_t now_s,
                             struct jwt_user *out, char *why, size_t whylen)
{
    const struct cfg_auth *a = &cfg->auth;
    uint64_t h = sl_hash(token, len);
    if (c->gen_id != gen_id) { /* a reload may have changed the rules */
        cache_clear(c);
        c->gen_id = gen_id;
    }
    struct cached **hit = cache_find(c, h, token, len);
    if (*hit && now_s < (*hit)->who.exp + a->leeway_ms / 1000) {
        *out = (*hit)->who;
        return JV_OK;
    }
    struct key_set *k = set_ref(s);
    if (!k) {
        snprintf(why, whylen, "the identity provider's signing keys are not loaded yet");
        return JV_UNAVAILABLE;
    }
    struct jwt_rules rules = { .algs = a->algs, .issuer = a->issuer, .audience = a->audience,
                               .leeway_s = a->leeway_ms / 1000, .user_claim = a->user_claim,
                               .team_claim = a->team_claim };
    struct jwt_claims cl;
    enum jwt_result r = jwt_check(token, len, &k->keys, &rules, now_s, &cl, why, whylen);
    set_unref(k);
    if (r == JWT_UNKNOWN_KID && ask_refetch(s))
        return JV_REFETCHING;
    if (r != JWT_OK || !user_of(cfg, &cl, out, why, whylen))
        return JV_REFUSED;
    cache_put(c, h, token, len, out);
    return JV_OK;
}
