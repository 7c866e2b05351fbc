/* Client authentication: the presented key is hashed with SHA-256 and looked
 * up by digest in an open-addressing table; the final comparison is constant
 * time. The plain key is never stored, logged or echoed. */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/util.h"

struct config;
struct cfg_key;
struct http_req;

struct auth_table;

struct auth_table *auth_build(const struct config *cfg);
void auth_free(struct auth_table *t);

enum auth_presented {
    AUTH_NONE,    /* no credential, an empty one, or Authorization without Bearer */
    AUTH_ONE,     /* exactly one: *out is it */
    AUTH_SEVERAL, /* more than one credential header: refused, never guessed between */
};
/* The key from exactly one of Authorization: Bearer, api-key or x-api-key. */
enum auth_presented auth_presented_key(const struct http_req *req, struct sl_str *out);
/* The configured key for a presented secret, or NULL. */
const struct cfg_key *auth_lookup(const struct auth_table *t, const char *secret, size_t len);
/* The same by the secret's SHA-256. */
const struct cfg_key *auth_lookup_digest(const struct auth_table *t, const uint8_t digest[32]);
/* The key a client presented, by its secret's digest: the file's (t), else
 * a runtime key (ks; *rt then holds a reference, and the key is &(*rt)->k).
 * NULL when there is none, or it expired, or it is disabled: *err and *msg
 * say which (401, or 503 when unknown keys' lookups are used up). */
struct keystore;
struct rt_key;
const struct cfg_key *auth_client_key(const struct auth_table *t, struct keystore *ks,
                                      const struct config *cfg, const uint8_t digest[32],
                                      int64_t now_s, struct rt_key **rt, int *err,
                                      const char **msg);
/* Constant-time check of a presented secret against a configured digest. */
bool auth_digest_matches(const uint8_t digest[32], const char *secret, size_t len);

#endif
