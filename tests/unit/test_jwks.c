/* jwks.c: the key store read from a file, the check of a token through it,
 * the worker's cache (a repeated token is not checked again; its exp still
 * holds; a new generation starts it over), an unknown kid with a file (no
 * fetch to wait for: refused), and no set yet (unavailable). */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/config.h"
#include "sluice/jwks.h"
#include "sluice/jwt.h"

static EVP_PKEY *ed;

static void write_set(const char *path, const char *kid)
{
    unsigned char raw[32];
    size_t len = sizeof(raw);
    char x[64];
    EVP_PKEY_get_raw_public_key(ed, raw, &len);
    jwt_b64url(raw, 32, x);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"%s\",\"x\":\"%s\"}]}", kid, x);
    fclose(f);
}

static char *token(const char *kid, const char *sub, long long exp)
{
    static char tok[2048];
    char head[128], claims[256];
    snprintf(head, sizeof(head), "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", kid);
    snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"aud\":\"sluice\",\"exp\":%lld,\"groups\":[\"x\",\"t1\"]}", sub, exp);
    size_t n = jwt_b64url(head, strlen(head), tok);
    tok[n++] = '.';
    n += jwt_b64url(claims, strlen(claims), tok + n);
    unsigned char sig[64];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestSignInit(ctx, NULL, NULL, NULL, ed);
    EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)tok, n);
    EVP_MD_CTX_free(ctx);
    tok[n++] = '.';
    jwt_b64url(sig, siglen, tok + n);
    return tok;
}

int main(void)
{
    ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char path[] = "/tmp/test-jwks-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_set(path, "k1");
    char text[1024];
    snprintf(text, sizeof(text),
             "[server]\nlisten = 127.0.0.1:9\n[backend b]\nurl = http://127.0.0.1:9/v1\n"
             "[team t1]\n[key p]\nkey = sk-profile-key-000000001\n"
             "[auth]\njwks = %s\naudience = sluice\nteam_claim = groups\nkey_profile = p\n",
             path);
    struct config *cfg = check_load_config(text, NULL);
    CHECK(cfg != NULL);
    if (cfg) {
        struct jwks_store *s = jwks_store_new();
        struct jwks_cache *c = jwks_cache_new();
        struct jwt_user who;
        char why[300];
        long long now = (long long)time(NULL);
        const char *t = token("k1", "ann", now + 600);
        size_t n = strlen(t);
        /* no set yet */
        CHECK(jwks_check(s, c, cfg, 1, t, n, now, &who, why, sizeof(why)) == JV_UNAVAILABLE);
        CHECK(jwks_store_configure(s, &cfg->auth, why, sizeof(why)) && jwks_store_keys(s) == 1);
        CHECK(jwks_check(s, c, cfg, 1, t, n, now, &who, why, sizeof(why)) == JV_OK);
        CHECK(strcmp(who.user, "ann") == 0 && strcmp(who.team, "t1") == 0 && who.exp == now + 600);
        /* the key leaves the set: the cached token still passes until its exp (+ leeway) ... */
        write_set(path, "k2");
        CHECK(jwks_store_configure(s, &cfg->auth, why, sizeof(why)));
        CHECK(jwks_check(s, c, cfg, 1, t, n, now, &who, why, sizeof(why)) == JV_OK);
        CHECK(jwks_check(s, c, cfg, 1, t, n, now + 630, &who, why, sizeof(why)) == JV_REFUSED);
        /* ... and a new generation checks it anew: k1 is unknown now (a file: no refetch) */
        CHECK(jwks_check(s, c, cfg, 2, t, n, now, &who, why, sizeof(why)) == JV_REFUSED);
        CHECK(strstr(why, "unknown key id") != NULL);
        const char *t2 = token("k2", "bo", now + 600);
        CHECK(jwks_check(s, c, cfg, 2, t2, strlen(t2), now, &who, why, sizeof(why)) == JV_OK);
        /* a token that differs by one byte is not the cached one */
        char copy[2048];
        strcpy(copy, t2);
        copy[strlen(copy) - 2] ^= 1;
        CHECK(jwks_check(s, c, cfg, 2, copy, strlen(copy), now, &who, why, sizeof(why)) == JV_REFUSED);
        /* a file that cannot be read leaves the set as it was */
        remove(path);
        CHECK(!jwks_store_configure(s, &cfg->auth, why, sizeof(why)) && jwks_store_keys(s) == 1);
        jwks_cache_free(c);
        jwks_store_free(s);
        cfg_unref(cfg);
    }
    EVP_PKEY_free(ed);
    return check_done();
}
