/* libFuzzer target: JWTs and key sets (jwt.h). The first byte picks what the
 * rest is: (0) a JWKS document; (1) a token, checked against a set of real
 * keys made at start (RSA 2048, EC P-256, Ed25519); (2) a token's claims
 * (any bytes), signed here with the Ed25519 key under a good header. What
 * must hold: nothing crashes or leaks; a parsed set has 1 to JWKS_MAX_KEYS
 * keys, each with a key and one algorithm; a token signed by a key of the
 * set is never refused for its signature, key id or algorithm; and a token
 * accepted names a user and has not expired. */
#include <openssl/evp.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/jwt.h"
#include "sluice/log.h"

static const int64_t NOW = 1800000000;
static struct jwks set;
static EVP_PKEY *ed;

static void b64url(const unsigned char *in, size_t len, char *out)
{
    jwt_b64url(in, len, out);
}

static void init(void)
{
    ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char raw[32], pt[65];
    size_t len = sizeof(raw), plen = 0;
    EVP_PKEY_get_raw_public_key(ed, raw, &len);
    EVP_PKEY_get_octet_string_param(ec, "pub", pt, sizeof(pt), &plen);
    char x[64], ex[64], ey[64], text[1024];
    b64url(raw, 32, x);
    b64url(pt + 1, 32, ex);
    b64url(pt + 33, 32, ey);
    snprintf(text, sizeof(text),
             "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"d1\",\"x\":\"%s\"},"
             "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"e1\",\"x\":\"%s\",\"y\":\"%s\"}]}",
             x, ex, ey);
    char why[200];
    FUZZ_ASSERT(jwks_parse(text, strlen(text), &set, why, sizeof(why)) && set.n == 2);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

static const struct jwt_rules rules = { .algs = JWT_ALGS_ALL, .issuer = "i", .audience = "a",
                                        .leeway_s = 30, .user_claim = "sub",
                                        .team_claim = "groups" };

static void check_token(const char *tok, size_t len, bool signed_here)
{
    struct jwt_claims c;
    char why[256];
    enum jwt_result r = jwt_check(tok, len, &set, &rules, NOW, &c, why, sizeof(why));
    FUZZ_ASSERT(strlen(why) < sizeof(why));
    if (signed_here)
        FUZZ_ASSERT(r != JWT_BAD_SIGNATURE && r != JWT_UNKNOWN_KID && r != JWT_ALG_REFUSED);
    if (r == JWT_OK) {
        FUZZ_ASSERT(c.user[0] && strlen(c.user) <= JWT_CLAIM_MAX);
        FUZZ_ASSERT(NOW < c.exp + rules.leeway_s);
        FUZZ_ASSERT(c.nteams >= 0 && c.nteams <= 32);
    }
}

/* The claims signed with the Ed25519 key, under {"alg":"EdDSA","kid":"d1"}. */
static void signed_claims(const uint8_t *data, size_t size)
{
    static char tok[3 * JWT_MAX];
    if (size > JWT_MAX / 2)
        return;
    b64url((const unsigned char *)"{\"alg\":\"EdDSA\",\"kid\":\"d1\"}", 26, tok);
    size_t n = strlen(tok);
    tok[n++] = '.';
    b64url(data, size, tok + n);
    n = strlen(tok);
    unsigned char sig[64];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FUZZ_ASSERT(EVP_DigestSignInit(ctx, NULL, NULL, NULL, ed) == 1 &&
                EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)tok, n) == 1);
    EVP_MD_CTX_free(ctx);
    tok[n++] = '.';
    b64url(sig, siglen, tok + n);
    n = strlen(tok);
    if (n <= JWT_MAX && size > 0)
        check_token(tok, n, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        log_set_level(LOG_OFF);
        init();
        ready = true;
    }
    if (size < 1)
        return 0;
    const char *rest = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 3) {
    case 0: {
        struct jwks s;
        char why[256];
        if (jwks_parse(rest, len, &s, why, sizeof(why))) {
            FUZZ_ASSERT(s.n >= 1 && s.n <= JWKS_MAX_KEYS);
            for (int i = 0; i < s.n; i++)
                FUZZ_ASSERT(s.keys[i].pkey && (s.keys[i].alg == JWT_RS256 ||
                                               s.keys[i].alg == JWT_ES256 ||
                                               s.keys[i].alg == JWT_EDDSA));
            jwks_free(&s);
        }
        break;
    }
    case 1:
        check_token(rest, len, false);
        break;
    default:
        signed_claims(data + 1, len);
    }
    return 0;
}
