/* Runtime keys: API keys made, changed, rotated and revoked through the
 * admin API (admin_keys.c) instead of the configuration file. A key's
 * record holds its settings as [key NAME] option lines would (checked by
 * config.c's own rules), its secret's SHA-256 (and during a rotation's grace
 * the old one's), when it was made and changed, its expiry, whether it is
 * disabled, and free-form metadata. This module is the record: made from an
 * admin request's JSON body, stored as JSON, turned into the struct cfg_key
 * the proxy uses. Where records live and how a node finds them is
 * keystore.h. */
#ifndef SLUICE_KEYS_H
#define SLUICE_KEYS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"

struct sl_buf;
struct http_share;

#define KEYS_SECRET_PREFIX "sk-sluice-"
#define KEYS_SECRET_LEN 53      /* the prefix and 43 base62 digits (32 random bytes) */
#define KEYS_MAX_SETTINGS 24    /* every [key] option, each once */
#define KEYS_MAX_METADATA 4096  /* bytes of metadata JSON */
#define KEYS_MAX_GRACE_S (30LL * 86400)

struct rt_key {
    atomic_int refs;
    struct cfg_key k;          /* what the proxy reads; k.team points into cfg */
    struct config *cfg;        /* referenced: the config k was built against */
    struct http_share *share;  /* its part of max_buffered (http.h) */
    int64_t created_at, updated_at; /* seconds since the epoch */
    atomic_llong used_at;      /* when this node last noted its use (keystore_used) */
    bool disabled;
    uint8_t old_digest[32];    /* the secret before the last rotation, */
    int64_t old_until;         /* valid until then (seconds); 0 = none */
    char created_by[80];       /* the admin identity that made it */
    char *metadata;            /* a JSON object's text */
    int nset;                  /* the settings as given: option names and values */
    char *opts[KEYS_MAX_SETTINGS];
    char *vals[KEYS_MAX_SETTINGS];
};

struct rt_key *keys_ref(struct rt_key *k);
void keys_unref(struct rt_key *k);

/* A fresh secret (sk-sluice- and 43 base62 digits of 32 random bytes from
 * OpenSSL) into out[KEYS_SECRET_LEN + 1]; its SHA-256 into digest. */
bool keys_new_secret(char out[KEYS_SECRET_LEN + 1], uint8_t digest[32]);

/* What an admin request may say about a key: its settings (JSON values:
 * numbers, strings, a list of model names; null clears one), "disabled",
 * "expires_at" (RFC 3339 or null), "metadata" (an object). */
struct keys_change {
    int nset;
    char *opts[KEYS_MAX_SETTINGS];
    char *vals[KEYS_MAX_SETTINGS]; /* NULL: back to the default */
    int disabled;                  /* -1 unchanged, 0, 1 */
    char *metadata;                /* NULL: unchanged */
    bool has_name;
    char name[CFG_NAME_MAX + 1];
};
void keys_change_free(struct keys_change *c);

/* Reads an admin request's body: a JSON object of at most max bytes, each
 * member once, every member known. False with a message (and the member it
 * is about in *param, or NULL) for anything else. */
bool keys_change_parse(const char *body, size_t len, struct keys_change *out, char *msg,
                       size_t msglen, const char **param);

/* A new record: `base` with `c` applied (base NULL: a new key named
 * c->name), built and checked against cfg. NULL with the problem in msg. */
struct rt_key *keys_apply(const struct config *cfg, const struct rt_key *base,
                          const struct keys_change *c, char *msg, size_t msglen);
/* The same record built again against another config (after a reload): NULL
 * if it no longer holds (its team is gone), with the reason in msg. */
struct rt_key *keys_rebind(const struct config *cfg, const struct rt_key *k, char *msg,
                           size_t msglen);

/* The stored form (one JSON object) and back. Parsing checks everything
 * again against cfg: a record changed on disk or in Redis is read by the
 * same rules. */
void keys_record_json(const struct rt_key *k, struct sl_buf *out);
struct rt_key *keys_record_parse(const struct config *cfg, const char *json, size_t len,
                                 char *msg, size_t msglen);

/* The admin view of a key's settings: "team", each setting as a JSON value
 * of its type, "expires_at", "disabled", "metadata", "created_at" ...
 * (members only, each followed by a comma). A file key shows its own. */
void keys_settings_json(const struct cfg_key *k, struct sl_buf *out);
void keys_runtime_json(const struct rt_key *k, struct sl_buf *out);

/* Whether the key's limits stay within its team's (a team admin may not
 * give more): false with the first one over in msg. */
bool keys_within_team(const struct cfg_key *k, char *msg, size_t msglen);

#endif
