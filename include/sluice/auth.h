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
/* Why a key found for a client may not be used now, or NULL: past its
 * expires_at, or (a runtime key, rt) disabled. */
struct rt_key;
const char *auth_refusal(const struct cfg_key *key, const struct rt_key *rt, int64_t now_s);
/* Constant-time check of a presented secret against a configured digest. */
bool auth_digest_matches(const uint8_t digest[32], const char *secret, size_t len);

#endif
