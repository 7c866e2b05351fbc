/* Key digest table and constant-time comparison. */
#include "sluice/auth.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/keys.h"

struct auth_table {
    const struct config *cfg; /* borrowed: the table lives and dies with its config */
    size_t mask;
    int *slots; /* index into cfg->keys, -1 = empty */
};

static size_t slot_of(const uint8_t digest[32], size_t mask)
{
    uint64_t h;
    memcpy(&h, digest, sizeof(h));
    return (size_t)h & mask;
}

struct auth_table *auth_build(const struct config *cfg)
{
    struct auth_table *t = sl_calloc(1, sizeof(*t));
    size_t size = 8;
    while (size < (size_t)cfg->nkeys * 2)
        size *= 2;
    t->cfg = cfg;
    t->mask = size - 1;
    t->slots = sl_malloc(size * sizeof(int));
    for (size_t i = 0; i < size; i++)
        t->slots[i] = -1;
    for (int k = 0; k < cfg->nkeys; k++) {
        size_t s = slot_of(cfg->keys[k].digest, t->mask);
        while (t->slots[s] >= 0)
            s = (s + 1) & t->mask;
        t->slots[s] = k;
    }
    return t;
}

void auth_free(struct auth_table *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t);
}

enum auth_presented auth_presented_key(const struct http_req *req, struct sl_str *out)
{
    const struct http_header *found = NULL;
    for (int i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (!sl_str_caseeq(h->name, "authorization") && !sl_str_caseeq(h->name, "api-key") &&
            !sl_str_caseeq(h->name, "x-api-key"))
            continue;
        if (found)
            return AUTH_SEVERAL;
        found = h;
    }
    if (!found)
        return AUTH_NONE;
    struct sl_str k = found->value;
    if (sl_str_caseeq(found->name, "authorization")) {
        if (!sl_str_casestarts(k, "bearer "))
            return AUTH_NONE;
        k = (struct sl_str){ k.p + 7, k.len - 7 };
        while (k.len && (*k.p == ' ' || *k.p == '\t')) {
            k.p++;
            k.len--;
        }
    }
    *out = k;
    return k.len > 0 ? AUTH_ONE : AUTH_NONE;
}

bool auth_digest_matches(const uint8_t digest[32], const char *secret, size_t len)
{
    uint8_t d[32];
    sl_sha256(secret, len, d);
    return CRYPTO_memcmp(d, digest, 32) == 0;
}

const struct cfg_key *auth_lookup(const struct auth_table *t, const char *secret, size_t len)
{
    uint8_t d[32];
    sl_sha256(secret, len, d);
    return auth_lookup_digest(t, d);
}

const struct cfg_key *auth_lookup_digest(const struct auth_table *t, const uint8_t d[32])
{
    for (size_t s = slot_of(d, t->mask); t->slots[s] >= 0; s = (s + 1) & t->mask) {
        const struct cfg_key *k = &t->cfg->keys[t->slots[s]];
        if (CRYPTO_memcmp(k->digest, d, 32) == 0)
            return k;
    }
    return NULL;
}

const char *auth_refusal(const struct cfg_key *key, const struct rt_key *rt, int64_t now_s)
{
    if (key->expires_at && now_s >= key->expires_at)
        return "This API key has expired (key expired).";
    return rt && rt->disabled ? "This API key is disabled." : NULL;
}
