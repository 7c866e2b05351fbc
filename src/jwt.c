/* JWTs and JWKS, checked with OpenSSL (jwt.h). */
#include "sluice/jwt.h"

#include <cjson/cJSON.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/api_read.h"
#include "sluice/util.h"

int jwt_alg_of(const char *name)
{
    if (strcmp(name, "RS256") == 0)
        return JWT_RS256;
    if (strcmp(name, "ES256") == 0)
        return JWT_ES256;
    if (strcmp(name, "EdDSA") == 0)
        return JWT_EDDSA;
    return 0;
}

/* ---- base64url (RFC 4648 section 5, no padding) ---- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

size_t jwt_b64url(const void *in, size_t len, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = in;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = abc[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[o++] = abc[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return o;
}

/* Decodes len characters into out (room for len * 3 / 4 + 1 bytes); the
 * byte count, or -1 for a character outside the alphabet or a length no
 * encoding has. */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    long n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n;
}

/* A member's base64url value decoded into out (at most max bytes); its length or -1. */
static long member_bytes(const cJSON *obj, const char *name, unsigned char *out, size_t max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(v))
        return -1;
    size_t len = strlen(v->valuestring);
    if (len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > max) /* the bytes it decodes to */
        return -1;
    return b64url_decode(v->valuestring, len, out);
}

static const char *member_str(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- keys ---- */

static EVP_PKEY *pkey_from(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *rsa_key(const cJSON *k)
{
    unsigned char n[1024], e[16];
    long nlen = member_bytes(k, "n", n, sizeof(n)), elen = member_bytes(k, "e", e, sizeof(e));
    if (nlen < 256 || elen < 1) /* 2048 bits at least */
        return NULL;
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (bn && be && bld && BN_num_bits(bn) >= 2048 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pkey = pkey_from("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

static EVP_PKEY *ec_key(const cJSON *k)
{
    const char *crv = member_str(k, "crv");
    unsigned char point[65], x[40], y[40];
    if (!crv || strcmp(crv, "P-256") != 0 || member_bytes(k, "x", x, sizeof(x)) != 32 ||
        member_bytes(k, "y", y, sizeof(y)) != 32)
        return NULL;
    point[0] = 0x04; /* uncompressed */
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)))
        pkey = pkey_from("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    if (pkey) { /* the point must be on the curve */
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!ctx || EVP_PKEY_public_check(ctx) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        EVP_PKEY_CTX_free(ctx);
    }
    return pkey;
}

static EVP_PKEY *okp_key(const cJSON *k)
{
    const char *crv = member_str(k, "crv");
    unsigned char x[40];
    if (!crv || strcmp(crv, "Ed25519") != 0 || member_bytes(k, "x", x, sizeof(x)) != 32)
        return NULL;
    return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, 32);
}

/* One key of the set: its algorithm by its type, and the key; false to skip it. */
static bool key_of(const cJSON *k, struct jwk *out)
{
    const char *kty = member_str(k, "kty"), *use = member_str(k, "use"),
               *alg = member_str(k, "alg"), *kid = member_str(k, "kid");
    if (!kty || (use && strcmp(use, "sig") != 0) || (kid && strlen(kid) > JWT_KID_MAX))
        return false;
    if (strcmp(kty, "RSA") == 0) {
        out->alg = JWT_RS256;
        out->pkey = rsa_key(k);
    } else if (strcmp(kty, "EC") == 0) {
        out->alg = JWT_ES256;
        out->pkey = ec_key(k);
    } else if (strcmp(kty, "OKP") == 0) {
        out->alg = JWT_EDDSA;
        out->pkey = okp_key(k);
    } else {
        return false;
    }
    if (out->pkey && alg && jwt_alg_of(alg) != out->alg) { /* a key names its one algorithm */
        EVP_PKEY_free(out->pkey);
        out->pkey = NULL;
    }
    snprintf(out->kid, sizeof(out->kid), "%s", kid ? kid : "");
    return out->pkey != NULL;
}

bool jwks_parse(const char *text, size_t len, struct jwks *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    if (len > JWKS_MAX_BYTES) {
        snprintf(why, whylen, "the key set is larger than %d bytes", JWKS_MAX_BYTES);
        return false;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(root, "keys");
    if (!cJSON_IsArray(keys)) {
        snprintf(why, whylen, "not a JSON Web Key Set (an object with a \"keys\" array)");
        cJSON_Delete(root);
        return false;
    }
    const cJSON *k;
    cJSON_ArrayForEach(k, keys)
    {
        if (out->n == JWKS_MAX_KEYS)
            break;
        if (cJSON_IsObject(k) && key_of(k, &out->keys[out->n]))
            out->n++;
    }
    cJSON_Delete(root);
    if (!out->n)
        snprintf(why, whylen, "no usable signing key (RSA of 2048 bits or more, EC P-256, Ed25519)");
    return out->n > 0;
}

void jwks_free(struct jwks *set)
{
    for (int i = 0; i < set->n; i++)
        EVP_PKEY_free(set->keys[i].pkey);
    set->n = 0;
}

/* ---- signatures ---- */

/* ES256's signature is R || S, 32 bytes each; OpenSSL wants DER. */
static size_t es256_der(const unsigned char *sig, unsigned char *der, size_t max)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
    size_t n = 0;
    if (s && r && ss && ECDSA_SIG_set0(s, r, ss)) {
        r = ss = NULL; /* owned by s now */
        int len = i2d_ECDSA_SIG(s, NULL);
        if (len > 0 && (size_t)len <= max) {
            unsigned char *p = der;
            n = (size_t)i2d_ECDSA_SIG(s, &p);
        }
    }
    BN_free(r);
    BN_free(ss);
    ECDSA_SIG_free(s);
    return n;
}

static bool signature_ok(const struct jwk *k, const char *signed_part, size_t signed_len,
                         const unsigned char *sig, size_t siglen)
{
    unsigned char der[80];
    if (k->alg == JWT_ES256) {
        if (siglen != 64 || !(siglen = es256_der(sig, der, sizeof(der))))
            return false;
        sig = der;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx &&
              EVP_DigestVerifyInit(ctx, NULL, k->alg == JWT_EDDSA ? NULL : EVP_sha256(), NULL,
                                   k->pkey) == 1 &&
              EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)signed_part, signed_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* ---- tokens ---- */

struct parts {
    const char *p[3];
    size_t len[3];
};

static bool split(const char *token, size_t len, struct parts *out)
{
    if (len == 0 || len > JWT_MAX)
        return false;
    const char *at = token, *end = token + len;
    for (int i = 0; i < 3; i++) {
        const char *dot = i < 2 ? memchr(at, '.', (size_t)(end - at)) : end;
        if (!dot)
            return false;
        out->p[i] = at;
        out->len[i] = (size_t)(dot - at);
        at = dot + 1;
    }
    return out->len[0] && out->len[1] && out->len[2] && !memchr(out->p[2], '.', out->len[2]);
}

bool jwt_shaped(const char *token, size_t len)
{
    struct parts ps;
    return len > 3 && memcmp(token, "eyJ", 3) == 0 && split(token, len, &ps);
}

/* A part decoded and parsed: a JSON object with no member given twice, or NULL. */
static cJSON *json_part(const char *p, size_t len)
{
    unsigned char buf[JWT_MAX];
    long n = b64url_decode(p, len, buf);
    if (n <= 0)
        return NULL;
    cJSON *root = cJSON_ParseWithLength((const char *)buf, (size_t)n);
    if (!cJSON_IsObject(root) || api_repeated_member(root)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

#define FAIL(code, ...)                                                                            \
    do {                                                                                           \
        snprintf(why, whylen, __VA_ARGS__);                                                        \
        return code;                                                                               \
    } while (0)

/* A key that may check the token: of its algorithm, and of its kid when it names one. */
static bool key_fits(const struct jwk *k, const struct jwt_claims *c)
{
    return k->alg == c->alg && (!c->kid[0] || strcmp(k->kid, c->kid) == 0);
}

/* The header: an allowed alg, and a key that may check it. */
static enum jwt_result header_check(const cJSON *h, const struct jwks *set, int algs,
                                    struct jwt_claims *out, char *why, size_t whylen)
{
    const char *alg = member_str(h, "alg"), *kid = member_str(h, "kid");
    const cJSON *crit = cJSON_GetObjectItemCaseSensitive(h, "crit");
    out->alg = alg ? jwt_alg_of(alg) : 0;
    if (!out->alg || !(out->alg & algs))
        FAIL(JWT_ALG_REFUSED, "the token's algorithm is not accepted (%s)",
             alg ? "only RS256, ES256 or EdDSA as configured" : "none given");
    if (crit)
        FAIL(JWT_MALFORMED, "the token has critical header parameters sluice does not know");
    if (kid && strlen(kid) > JWT_KID_MAX)
        FAIL(JWT_MALFORMED, "the token's key id is too long");
    snprintf(out->kid, sizeof(out->kid), "%s", kid ? kid : "");
    for (int i = 0; i < set->n; i++)
        if (key_fits(&set->keys[i], out))
            return JWT_OK;
    FAIL(JWT_UNKNOWN_KID, "unknown key id%s", kid ? "" : " (none given, and no key of its algorithm)");
}

static bool aud_holds(const cJSON *aud, const char *want)
{
    if (cJSON_IsString(aud))
        return strcmp(aud->valuestring, want) == 0;
    if (!cJSON_IsArray(aud))
        return false;
    for (const cJSON *a = aud->child; a; a = a->next)
        if (cJSON_IsString(a) && strcmp(a->valuestring, want) == 0)
            return true;
    return false;
}

/* A NumericDate claim (seconds, maybe with a fraction): false if absent or not a number. */
static bool time_claim(const cJSON *c, const char *name, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, name);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e13)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

static void team_values(const cJSON *c, const char *name, struct jwt_claims *out)
{
    const cJSON *v = name ? cJSON_GetObjectItemCaseSensitive(c, name) : NULL;
    const cJSON *one = v;
    size_t at = 0;
    bool array = cJSON_IsArray(v);
    if (array)
        one = v->child;
    for (; one && out->nteams < 32; one = array ? one->next : NULL) {
        size_t n = cJSON_IsString(one) ? strlen(one->valuestring) : 0;
        if (n && n <= JWT_CLAIM_MAX && at + n + 1 <= sizeof(out->teams)) {
            memcpy(out->teams + at, one->valuestring, n + 1);
            at += n + 1;
            out->nteams++;
        }
    }
}

static enum jwt_result claims_check(const cJSON *c, const struct jwt_rules *r, int64_t now,
                                    struct jwt_claims *out, char *why, size_t whylen)
{
    if (!time_claim(c, "exp", &out->exp))
        FAIL(JWT_EXPIRED, "the token has no expiry (exp)");
    if (now >= out->exp + r->leeway_s) /* valid only before exp (RFC 7519 4.1.4) */
        FAIL(JWT_EXPIRED, "the token expired");
    if (cJSON_GetObjectItemCaseSensitive(c, "nbf") && !time_claim(c, "nbf", &out->nbf))
        FAIL(JWT_MALFORMED, "the token's nbf is not a time");
    if (out->nbf && now < out->nbf - r->leeway_s)
        FAIL(JWT_NOT_YET, "the token is not valid yet (nbf)");
    const char *iss = member_str(c, "iss");
    if (r->issuer && (!iss || strcmp(iss, r->issuer) != 0))
        FAIL(JWT_BAD_ISSUER, "the token's issuer is not the one configured");
    if (r->audience && !aud_holds(cJSON_GetObjectItemCaseSensitive(c, "aud"), r->audience))
        FAIL(JWT_BAD_AUDIENCE, "the token's audience (aud) is not this gateway's");
    const char *user = member_str(c, r->user_claim);
    if (!user || !*user || strlen(user) > JWT_CLAIM_MAX)
        FAIL(JWT_NO_USER, "the token has no user claim (%.64s)", r->user_claim);
    memcpy(out->user, user, strlen(user) + 1);
    team_values(c, r->team_claim, out);
    return JWT_OK;
}

enum jwt_result jwt_check(const char *token, size_t len, const struct jwks *set,
                          const struct jwt_rules *rules, int64_t now_s, struct jwt_claims *out,
                          char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    struct parts ps;
    if (!split(token, len, &ps))
        FAIL(JWT_MALFORMED, "not a JWT (three base64url parts separated by dots)");
    cJSON *h = json_part(ps.p[0], ps.len[0]);
    if (!h)
        FAIL(JWT_MALFORMED, "the token's header is not a JSON object");
    enum jwt_result res = header_check(h, set, rules->algs, out, why, whylen);
    cJSON_Delete(h);
    if (res != JWT_OK)
        return res;
    unsigned char sig[JWT_MAX];
    long siglen = b64url_decode(ps.p[2], ps.len[2], sig);
    bool good = false; /* by its kid's key; without a kid, by any key of its algorithm */
    for (int i = 0; i < set->n && !good && siglen > 0; i++)
        good = key_fits(&set->keys[i], out) &&
               signature_ok(&set->keys[i], ps.p[0], ps.len[0] + 1 + ps.len[1], sig, (size_t)siglen);
    if (!good)
        FAIL(JWT_BAD_SIGNATURE, "bad signature");
    cJSON *c = json_part(ps.p[1], ps.len[1]);
    if (!c)
        FAIL(JWT_MALFORMED, "the token's claims are not a JSON object");
    res = claims_check(c, rules, now_s, out, why, whylen);
    cJSON_Delete(c);
    return res;
}
