/* jwt.c: keys made with OpenSSL here (RSA 2048, EC P-256, Ed25519), their
 * JWKS, tokens signed with them; every refusal of jwt.h's list, and the
 * attacks: alg none, HS256 signed with the RSA key's public bytes, a key of
 * one type asked to check another's algorithm, a signature moved between
 * tokens, duplicate members. */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sluice/jwt.h"
#include "sluice/util.h"

static void b64url(const unsigned char *in, size_t len, char *out)
{
    jwt_b64url(in, len, out);
}

static void b64url_str(const char *s, char *out)
{
    b64url((const unsigned char *)s, strlen(s), out);
}

static void bn_b64(const BIGNUM *bn, char *out)
{
    unsigned char buf[600];
    int n = BN_bn2bin(bn, buf);
    b64url(buf, (size_t)n, out);
}

/* The key's public half as a JWK, with kid. */
static void jwk_of(EVP_PKEY *k, const char *kid, char *out, size_t max)
{
    char a[800], b[800];
    if (EVP_PKEY_is_a(k, "RSA")) {
        BIGNUM *n = NULL, *e = NULL;
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n);
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e);
        bn_b64(n, a);
        bn_b64(e, b);
        snprintf(out, max, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"}", kid, a, b);
        BN_free(n);
        BN_free(e);
    } else if (EVP_PKEY_is_a(k, "EC")) {
        unsigned char pt[65];
        size_t len = 0;
        EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &len);
        b64url(pt + 1, 32, a);
        b64url(pt + 33, 32, b);
        snprintf(out, max, "{\"kty\":\"EC\",\"kid\":\"%s\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", kid, a, b);
    } else {
        unsigned char raw[32];
        size_t len = sizeof(raw);
        EVP_PKEY_get_raw_public_key(k, raw, &len);
        b64url(raw, 32, a);
        snprintf(out, max, "{\"kty\":\"OKP\",\"kid\":\"%s\",\"crv\":\"Ed25519\",\"x\":\"%s\"}", kid, a);
    }
}

/* header.claims.signature, signed by k (ES256: R || S). */
static char *sign(EVP_PKEY *k, const char *header, const char *claims)
{
    static char tok[8192];
    char h[1024], c[2048];
    b64url_str(header, h);
    b64url_str(claims, c);
    int n = snprintf(tok, sizeof(tok), "%s.%s", h, c);
    unsigned char sig[600];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ed = EVP_PKEY_is_a(k, "ED25519");
    EVP_DigestSignInit(ctx, NULL, ed ? NULL : EVP_sha256(), NULL, k);
    EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)tok, (size_t)n);
    EVP_MD_CTX_free(ctx);
    if (EVP_PKEY_is_a(k, "EC")) { /* DER -> R || S */
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
        memset(sig, 0, 64);
        BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
        ECDSA_SIG_free(es);
        siglen = 64;
    }
    tok[n++] = '.';
    b64url(sig, siglen, tok + n);
    return tok;
}

static EVP_PKEY *rsa, *ec, *ed, *rsa2;
static struct jwks set;
static const int64_t NOW = 1800000000;

static const struct jwt_rules rules = { .algs = JWT_ALGS_ALL, .issuer = "https://idp.test/",
                                        .audience = "sluice", .leeway_s = 30,
                                        .user_claim = "sub", .team_claim = "groups" };

static char claims[1024];
static const char *good_claims(void)
{
    snprintf(claims, sizeof(claims),
             "{\"iss\":\"https://idp.test/\",\"aud\":[\"other\",\"sluice\"],\"sub\":\"ann@x.io\","
             "\"exp\":%lld,\"nbf\":%lld,\"groups\":[\"eng\",\"platform\"]}",
             (long long)NOW + 600, (long long)NOW - 10);
    return claims;
}

static enum jwt_result check(const char *tok, struct jwt_claims *c)
{
    char why[200];
    enum jwt_result r = jwt_check(tok, strlen(tok), &set, &rules, NOW, c, why, sizeof(why));
    if (r != JWT_OK)
        fprintf(stderr, "  (refused: %s)\n", why);
    return r;
}

static void test_good_tokens(void)
{
    struct jwt_claims c;
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\",\"typ\":\"JWT\"}", good_claims()), &c) == JWT_OK);
    CHECK(strcmp(c.user, "ann@x.io") == 0 && c.nteams == 2 && strcmp(c.teams, "eng") == 0 &&
          strcmp(c.teams + 4, "platform") == 0 && c.exp == NOW + 600 && c.alg == JWT_RS256);
    CHECK(check(sign(ec, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", good_claims()), &c) == JWT_OK);
    CHECK(check(sign(ed, "{\"alg\":\"EdDSA\",\"kid\":\"d1\"}", good_claims()), &c) == JWT_OK);
    /* no kid: any key of the algorithm */
    CHECK(check(sign(ec, "{\"alg\":\"ES256\"}", good_claims()), &c) == JWT_OK);
    CHECK(jwt_shaped(sign(ed, "{\"alg\":\"EdDSA\"}", good_claims()), strlen(sign(ed, "{\"alg\":\"EdDSA\"}", good_claims()))));
    CHECK(!jwt_shaped("sk-plain-api-key", 16) && !jwt_shaped("a.b", 3));
}

static void test_refusals(void)
{
    struct jwt_claims c;
    char body[1024];
    /* alg none, with or without a signature */
    char h[200], cl[1500], tok[4096];
    b64url_str("{\"alg\":\"none\"}", h);
    b64url_str(good_claims(), cl);
    snprintf(tok, sizeof(tok), "%s.%s.", h, cl);
    CHECK(check(tok, &c) == JWT_MALFORMED); /* an empty signature part */
    snprintf(tok, sizeof(tok), "%s.%s.AAAA", h, cl);
    CHECK(check(tok, &c) == JWT_ALG_REFUSED);
    /* HS256 "signed" with the RSA key's public bytes (the classic confusion) */
    char hs[200];
    b64url_str("{\"alg\":\"HS256\",\"kid\":\"r1\"}", hs);
    int n = snprintf(tok, sizeof(tok), "%s.%s", hs, cl);
    unsigned char mac[32];
    unsigned int maclen = 0;
    char jwk[2000];
    jwk_of(rsa, "r1", jwk, sizeof(jwk));
    HMAC(EVP_sha256(), jwk, (int)strlen(jwk), (unsigned char *)tok, (size_t)n, mac, &maclen);
    tok[n++] = '.';
    b64url(mac, maclen, tok + n);
    CHECK(check(tok, &c) == JWT_ALG_REFUSED);
    /* an algorithm the rules leave out */
    struct jwt_rules rs_only = rules;
    rs_only.algs = JWT_RS256;
    char why[200];
    const char *t = sign(ed, "{\"alg\":\"EdDSA\",\"kid\":\"d1\"}", good_claims());
    CHECK(jwt_check(t, strlen(t), &set, &rs_only, NOW, &c, why, sizeof(why)) == JWT_ALG_REFUSED);
    /* ES256 claimed, RSA key's kid: no EC key of that id */
    CHECK(check(sign(ec, "{\"alg\":\"ES256\",\"kid\":\"r1\"}", good_claims()), &c) == JWT_UNKNOWN_KID);
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"gone\"}", good_claims()), &c) == JWT_UNKNOWN_KID);
    /* signed by a key that is not in the set, under a kid that is */
    CHECK(check(sign(rsa2, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", good_claims()), &c) == JWT_BAD_SIGNATURE);
    /* claims changed after signing */
    char *good = sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", good_claims());
    char copy[8192];
    strcpy(copy, good);
    char *dot = strchr(copy, '.');
    dot[5] ^= 1;
    CHECK(check(copy, &c) != JWT_OK);
    /* times, issuer, audience, user */
    snprintf(body, sizeof(body), "{\"iss\":\"https://idp.test/\",\"aud\":\"sluice\",\"sub\":\"a\",\"exp\":%lld}", (long long)NOW - 31);
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\"}", body), &c) == JWT_EXPIRED);
    snprintf(body, sizeof(body), "{\"iss\":\"https://idp.test/\",\"aud\":\"sluice\",\"sub\":\"a\",\"exp\":%lld}", (long long)NOW - 29);
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\"}", body), &c) == JWT_OK); /* within the leeway */
    snprintf(body, sizeof(body), "{\"iss\":\"https://idp.test/\",\"aud\":\"sluice\",\"sub\":\"a\"}");
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\"}", body), &c) == JWT_EXPIRED); /* no exp at all */
    snprintf(body, sizeof(body), "{\"iss\":\"https://idp.test/\",\"aud\":\"sluice\",\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}", (long long)NOW + 600, (long long)NOW + 31);
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\"}", body), &c) == JWT_NOT_YET);
    snprintf(body, sizeof(body), "{\"iss\":\"https://evil.test/\",\"aud\":\"sluice\",\"sub\":\"a\",\"exp\":%lld}", (long long)NOW + 600);
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\"}", body), &c) == JWT_BAD_ISSUER);
    snprintf(body, sizeof(body), "{\"iss\":\"https://idp.test/\",\"aud\":[\"x\"],\"sub\":\"a\",\"exp\":%lld}", (long long)NOW + 600);
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\"}", body), &c) == JWT_BAD_AUDIENCE);
    snprintf(body, sizeof(body), "{\"iss\":\"https://idp.test/\",\"aud\":\"sluice\",\"sub\":7,\"exp\":%lld}", (long long)NOW + 600);
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\"}", body), &c) == JWT_NO_USER);
    /* a member given twice: the token is not read two ways */
    snprintf(body, sizeof(body), "{\"iss\":\"https://idp.test/\",\"aud\":\"sluice\",\"sub\":\"a\",\"sub\":\"b\",\"exp\":%lld}", (long long)NOW + 600);
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\"}", body), &c) == JWT_MALFORMED);
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\",\"alg\":\"none\"}", good_claims()), &c) == JWT_MALFORMED);
    CHECK(check(sign(rsa, "{\"alg\":\"RS256\",\"crit\":[\"exp\"]}", good_claims()), &c) == JWT_MALFORMED);
    CHECK(check("a.b.c", &c) == JWT_MALFORMED && check("eyJ.e30.", &c) == JWT_MALFORMED);
}

static void test_sets(void)
{
    struct jwks s;
    char why[200];
    CHECK(!jwks_parse("{\"keys\":[]}", 11, &s, why, sizeof(why)) && strstr(why, "no usable"));
    CHECK(!jwks_parse("[]", 2, &s, why, sizeof(why)));
    /* a 1024-bit RSA key, an enc key, a P-384 key, an alg that does not fit the type: skipped */
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    char a[2000], b[2000], text[6000];
    jwk_of(small, "small", a, sizeof(a));
    jwk_of(ed, "d1", b, sizeof(b));
    b[strlen(b) - 1] = '\0';
    snprintf(text, sizeof(text),
             "{\"keys\":[%s,{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"},"
             "%s,\"alg\":\"RS256\"},{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}",
             a, b);
    CHECK(!jwks_parse(text, strlen(text), &s, why, sizeof(why)));
    /* an EC point not on the curve */
    snprintf(text, sizeof(text), "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}",
             "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    CHECK(!jwks_parse(text, strlen(text), &s, why, sizeof(why)));
    /* coordinates longer than the curve's (once a stack overflow, found by fuzz_jwt) */
    snprintf(text, sizeof(text), "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"AA\"},"
             "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}]}",
             "Ad25519AES-128-OxCrfV_S1TyWQHOcccccccccccccccccccccccAQAB", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    CHECK(!jwks_parse(text, strlen(text), &s, why, sizeof(why)));
    EVP_PKEY_free(small);
}

int main(void)
{
    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char r[2000], e[600], d[300], text[4000], why[200];
    jwk_of(rsa, "r1", r, sizeof(r));
    jwk_of(ec, "e1", e, sizeof(e));
    jwk_of(ed, "d1", d, sizeof(d));
    snprintf(text, sizeof(text), "{\"keys\":[%s,%s,%s]}", r, e, d);
    CHECK(jwks_parse(text, strlen(text), &set, why, sizeof(why)) && set.n == 3);
    test_good_tokens();
    test_refusals();
    test_sets();
    jwks_free(&set);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa2);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ed);
    return check_done();
}
