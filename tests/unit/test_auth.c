/* Key lookup by digest, and where a presented key is read from. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/auth.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/log.h"

static struct config *load(const char *text)
{
    return check_load_config(text, NULL);
}

static void test_lookup(void)
{
    /* sha256("sk-team-b-secret") */
    struct config *c = load("[backend a]\nurl = http://x/v1\n"
                            "[key a]\nkey = sk-team-a-secret\n"
                            "[key b]\nkey = sha256:4dd1a5d7d2a7c0d0ff3d6ddf1b0e4b0f4a2d5b1e1c2f3a4b5c6d7e8f90a1b2c3\n"
                            "[key c]\nkey = sk-team-c-secret\n");
    CHECK(c != NULL);
    if (!c)
        return;
    struct auth_table *t = auth_build(c);
    const struct cfg_key *k = auth_lookup(t, "sk-team-a-secret", 16);
    CHECK(k && strcmp(k->name, "a") == 0);
    k = auth_lookup(t, "sk-team-c-secret", 16);
    CHECK(k && strcmp(k->name, "c") == 0);
    CHECK(auth_lookup(t, "sk-team-a-secreT", 16) == NULL);
    CHECK(auth_lookup(t, "sk-team-a-secret", 15) == NULL);
    CHECK(auth_lookup(t, "", 0) == NULL);
    CHECK(auth_digest_matches(c->keys[0].digest, "sk-team-a-secret", 16));
    CHECK(!auth_digest_matches(c->keys[0].digest, "sk-team-a-secre", 15));
    auth_free(t);
    cfg_unref(c);
}

static void test_many_keys(void)
{
    struct sl_buf text = { 0 };
    sl_buf_appends(&text, "[backend a]\nurl = http://x/v1\n");
    for (int i = 0; i < 500; i++)
        sl_buf_printf(&text, "[key k%d]\nkey = client-key-number-%d\n", i, i);
    struct config *c = load(text.data);
    sl_buf_free(&text);
    CHECK(c && c->nkeys == 500);
    if (!c)
        return;
    struct auth_table *t = auth_build(c);
    int found = 0;
    for (int i = 0; i < 500; i++) {
        char secret[64], name[16];
        snprintf(secret, sizeof(secret), "client-key-number-%d", i);
        snprintf(name, sizeof(name), "k%d", i);
        const struct cfg_key *k = auth_lookup(t, secret, strlen(secret));
        found += k && strcmp(k->name, name) == 0;
    }
    CHECK(found == 500);
    CHECK(auth_lookup(t, "client-key-number-500", 21) == NULL);
    auth_free(t);
    cfg_unref(c);
}

/* What auth_presented_key makes of a head; the key into out. -1: bad head. */
static int presented_kind(const char *head, char *out)
{
    struct http_req req;
    memset(&req, 0, sizeof(req));
    req.head = strdup(head);
    const char *why;
    int kind = -1;
    struct sl_str k = { 0 };
    if (http_parse_head(&req, strlen(head), &why) == 0)
        kind = (int)auth_presented_key(&req, &k);
    if (kind == AUTH_ONE)
        snprintf(out, 64, "%.*s", (int)k.len, k.p);
    free(req.head);
    return kind;
}

static int presented(const char *head, char *out)
{
    return presented_kind(head, out) == AUTH_ONE;
}

static void test_presented(void)
{
    char k[64];
    CHECK(presented("POST /v1/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer abc\r\n\r\n", k));
    CHECK_STR(k, "abc");
    CHECK(presented("POST /v1/x HTTP/1.1\r\nHost: a\r\nauthorization: bearer   xyz\r\n\r\n", k));
    CHECK_STR(k, "xyz");
    CHECK(presented("POST /v1/x HTTP/1.1\r\nHost: a\r\napi-key: az\r\n\r\n", k));
    /* Exactly one credential, or none is taken. */
    CHECK(!presented("POST /v1/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer a\r\n"
                     "Authorization: Bearer b\r\n\r\n", k));
    CHECK(!presented("POST /v1/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer a\r\n"
                     "api-key: a\r\n\r\n", k));
    CHECK(!presented("POST /v1/x HTTP/1.1\r\nHost: a\r\nx-api-key: a\r\napi-key: b\r\n\r\n", k));
    CHECK(!presented("POST /v1/x HTTP/1.1\r\nHost: a\r\nAuthorization: Basic YTpi\r\n\r\n", k));
    CHECK(presented_kind("POST /v1/x HTTP/1.1\r\nHost: a\r\napi-key: a\r\nAuthorization: Bearer a\r\n"
                         "\r\n", k) == AUTH_SEVERAL);
    CHECK(presented_kind("POST /v1/x HTTP/1.1\r\nHost: a\r\n\r\n", k) == AUTH_NONE);
    CHECK(presented_kind("POST /v1/x HTTP/1.1\r\nHost: a\r\napi-key: \r\n\r\n", k) == AUTH_NONE);
    CHECK_STR(k, "az");
    CHECK(presented("POST /v1/x HTTP/1.1\r\nHost: a\r\nX-Api-Key: xk\r\n\r\n", k));
    CHECK_STR(k, "xk");
    CHECK(!presented("POST /v1/x HTTP/1.1\r\nHost: a\r\nAuthorization: Basic abc\r\n\r\n", k));
    CHECK(!presented("POST /v1/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \r\n\r\n", k));
    CHECK(!presented("POST /v1/x HTTP/1.1\r\nHost: a\r\n\r\n", k));
}

int main(void)
{
    log_set_level(LOG_ERROR);
    test_lookup();
    test_many_keys();
    test_presented();
    return check_done();
}
