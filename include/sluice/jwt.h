/* JSON Web Tokens (RFC 7519) signed with a public key (RFC 7515: compact
 * JWS), and the JSON Web Key Sets that hold those keys (RFC 7517): parsed
 * and checked with OpenSSL. RS256, ES256 and EdDSA (Ed25519) only; a token
 * whose alg is none, an HMAC or anything not allowed is refused before any
 * key is looked at, and a key is used only for the algorithm of its type
 * (an RSA key never checks an ES256 or HS256 signature). Every input may be
 * hostile: sizes are bounded, nothing is trusted before the signature is. */
#ifndef SLUICE_JWT_H
#define SLUICE_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum jwt_alg { JWT_RS256 = 1, JWT_ES256 = 2, JWT_EDDSA = 4 };
#define JWT_ALGS_ALL (JWT_RS256 | JWT_ES256 | JWT_EDDSA)

#define JWT_MAX 8192      /* bytes of a token */
#define JWT_KID_MAX 128   /* bytes of a key id */
#define JWT_CLAIM_MAX 256 /* bytes of a claim sluice copies (user, team, iss) */
#define JWKS_MAX_KEYS 64
#define JWKS_MAX_BYTES (256 * 1024)

/* Encodes len bytes as base64url without padding into out (room for
 * len * 4 / 3 + 3 bytes), NUL-terminated; the characters written. Tokens
 * are only read here: the tests and the fuzz target sign with it. */
size_t jwt_b64url(const void *in, size_t len, char *out);

/* "RS256", "ES256" or "EdDSA" -> its bit; 0 for any other name. */
int jwt_alg_of(const char *name);

struct evp_pkey_st;
struct jwk {
    char kid[JWT_KID_MAX + 1]; /* "" when the key has none */
    int alg;                   /* the one algorithm this key checks */
    struct evp_pkey_st *pkey;
};

/* A key set: the keys sluice can use, in the set's order (others skipped). */
struct jwks {
    struct jwk keys[JWKS_MAX_KEYS];
    int n;
};

/* Parses a JWKS document ({"keys":[...]}): RSA (2048 bits or more), EC
 * P-256 and OKP Ed25519 keys meant for signatures; keys of other types,
 * curves or uses are skipped. false (why) if the document is not a key set
 * or has no usable key. */
bool jwks_parse(const char *text, size_t len, struct jwks *out, char *why, size_t whylen);
void jwks_free(struct jwks *set);

/* What a checked token says. */
struct jwt_claims {
    int alg;
    char kid[JWT_KID_MAX + 1];
    int64_t exp, nbf; /* seconds; nbf 0 when absent */
    char user[JWT_CLAIM_MAX + 1];
    /* the team claim's values (a string, or the strings of an array), NUL-separated */
    char teams[1024];
    int nteams;
};

/* What a token is checked against. */
struct jwt_rules {
    int algs;             /* allowed JWT_* bits */
    const char *issuer;   /* NULL: not checked */
    const char *audience; /* NULL: not checked; else aud (a string or an array) must hold it */
    int64_t leeway_s;
    const char *user_claim; /* required, a string */
    const char *team_claim; /* NULL: none */
};

enum jwt_result {
    JWT_OK,
    JWT_MALFORMED,     /* not three base64url parts of JSON objects, or too long */
    JWT_ALG_REFUSED,   /* none, HMAC, or an algorithm not allowed */
    JWT_UNKNOWN_KID,   /* no key of the set has its kid (or, without kid, its type) */
    JWT_BAD_SIGNATURE,
    JWT_EXPIRED,       /* exp (+ leeway) passed, or no exp */
    JWT_NOT_YET,       /* nbf (- leeway) in the future */
    JWT_BAD_ISSUER,
    JWT_BAD_AUDIENCE,
    JWT_NO_USER,       /* the user claim is missing or not a string */
};

/* Checks a compact JWS against the key set and the rules at `now_s`: the
 * header and alg first, then the signature, then the claims. JWT_OK with
 * *out filled; else the first thing that fails, and why (for a 401). */
enum jwt_result jwt_check(const char *token, size_t len, const struct jwks *set,
                          const struct jwt_rules *rules, int64_t now_s, struct jwt_claims *out,
                          char *why, size_t whylen);
/* Whether a bearer credential has a JWT's shape (three dot-separated
 * base64url parts, the first a JSON object's encoding). */
bool jwt_shaped(const char *token, size_t len);

#endif
