/* Signing keys of the identity provider ([auth] jwks) and the check of a
 * JWT bearer token against them (docs/auth.md). One store per process: the
 * key set from a file (read at start and at each reload) or from an https
 * URL, fetched with libcurl on worker 0's loop at start, every
 * jwks_refresh, and when a token names a key id the set lacks (at most once
 * per JWKS_REFETCH_MS; that request may wait for the fetch, JV_REFETCHING);
 * the last good set is kept while the provider cannot be reached. Each worker keeps the tokens it has checked until they expire,
 * so a repeated token costs a hash lookup, not a signature check. */
#ifndef SLUICE_JWKS_H
#define SLUICE_JWKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/enduser.h"

struct cfg_auth;
struct config;
struct event_base;
struct up_multi;
struct jwks_store;
struct jwks_cache;

#define JWKS_REFETCH_MS 10000 /* an unknown kid asks for the set again at most this often */
#define JWKS_RETRY_MS 5000    /* after a failed fetch, the next try (or jwks_refresh if sooner) */

struct jwks_store *jwks_store_new(void);
void jwks_store_free(struct jwks_store *s);
/* [auth] of a configuration, at start and at each reload: a file is read
 * now (false with why if it cannot be, or holds no key: at start an error, at
 * a reload the previous set stays); a URL is fetched by the attached worker
 * (a new URL drops the old set). Without [auth], no set. */
bool jwks_store_configure(struct jwks_store *s, const struct cfg_auth *a, char *why, size_t n);
/* The worker whose loop fetches a URL's set; detach before that loop ends. */
void jwks_store_attach(struct jwks_store *s, struct event_base *base, struct up_multi *up);
void jwks_store_detach(struct jwks_store *s);
/* Keys in the set now (0: none yet). */
int jwks_store_keys(struct jwks_store *s);
/* An event (of any worker's loop) made active each time a fetch ends, and
 * its removal (before it is freed). */
struct event;
void jwks_store_watch(struct jwks_store *s, struct event *ev);
void jwks_store_unwatch(struct jwks_store *s, struct event *ev);

struct jwks_cache *jwks_cache_new(void);
void jwks_cache_free(struct jwks_cache *c);

/* Who a good token names. */
struct jwt_user {
    char user[EU_MAX + 1];
    char team[65]; /* the first team_claim value that names a [team]; "" none */
    int64_t exp;
};

enum jwks_verdict {
    JV_OK,
    JV_REFUSED,     /* 401, why says the reason */
    JV_UNAVAILABLE, /* no key set yet (the URL not fetched): try again shortly */
    JV_REFETCHING,  /* its kid is not in the set, which is being fetched again: the
                       request may wait for the watchers' wake (jwks_store_watch) */
};

/* Checks a bearer token that is shaped as a JWT (jwt_shaped) under cfg's
 * [auth], at now_s: from the worker's cache (a token seen before, until its
 * exp, under the same generation `gen_id`; found by a hash, compared whole),
 * else signature and claims. */
enum jwks_verdict jwks_check(struct jwks_store *s, struct jwks_cache *c, const struct config *cfg,
                             uint64_t gen_id, const char *token, size_t len, int64_t now_s,
                             struct jwt_user *out, char *why, size_t whylen);

#endif
