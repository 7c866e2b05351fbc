/* Which headers cross the gateway, and the scrubbing of a backend credential. */
#include <stdlib.h>

#include "check.h"
#include "sluice/config.h"
#include "sluice/headers.h"

static struct sl_str s(const char *p)
{
    return (struct sl_str){ p, strlen(p) };
}

static void test_forwarded(void)
{
    char *names[] = { "x-team", "x-acme-*", "cookie" };
    CHECK(hdr_forwarded(s("Accept"), NULL, 0));
    CHECK(hdr_forwarded(s("OpenAI-Beta"), NULL, 0));
    CHECK(hdr_forwarded(s("X-Stainless-Retry-Count"), NULL, 0));
    CHECK(hdr_forwarded(s("traceparent"), NULL, 0));
    CHECK(!hdr_forwarded(s("X-Stainless"), NULL, 0)); /* the prefix is "x-stainless-" */
    CHECK(!hdr_forwarded(s("X-Team"), NULL, 0));
    CHECK(hdr_forwarded(s("X-Team"), names, 3));
    CHECK(hdr_forwarded(s("x-acme-route"), names, 3));
    CHECK(!hdr_forwarded(s("x-acme"), names, 3));
    /* never, whatever the backend lists */
    CHECK(!hdr_forwarded(s("Cookie"), names, 3));
    CHECK(!hdr_forwarded(s("OpenAI-Organization"), names, 3));
    CHECK(!hdr_forwarded(s("X-Forwarded-For"), names, 3));
    CHECK(!hdr_forwarded(s("Authorization"), names, 3));
    CHECK(!hdr_forwarded(s("Content-Length"), names, 3));
    CHECK(hdr_never_forwarded(s("x-forwarded-proto")));
    CHECK(!hdr_never_forwarded(s("x-forwarded")));
    CHECK(!hdr_forwarded(s(""), names, 3));
    /* hdr_forwarded trusts the allow-list without looking at the never-list: they must not meet */
    const char *const *allowed;
    size_t n;
    hdr_allow_list(&allowed, &n);
    CHECK(n >= 9);
    for (size_t i = 0; i < n; i++) {
        CHECK(!hdr_never_forwarded(s(allowed[i])));
        char longer[64];
        snprintf(longer, sizeof(longer), "%sx", allowed[i]); /* what a prefix entry admits */
        CHECK(!hdr_never_forwarded(s(longer)));
    }
}

static void test_relayed(void)
{
    CHECK(hdr_not_relayed(s("Transfer-Encoding")));
    CHECK(hdr_not_relayed(s("x-ratelimit-remaining-requests")));
    CHECK(hdr_not_relayed(s("Set-Cookie")));
    CHECK(hdr_not_relayed(s("x-request-id"))); /* sluice's goes back (as x-upstream-request-id) */
    CHECK(hdr_never_forwarded(s("X-Request-Id"))); /* sluice sends its own */
    CHECK(!hdr_forwarded(s("x-request-id"), NULL, 0));
    CHECK(!hdr_not_relayed(s("openai-processing-ms")));
}

static void test_scrub(void)
{
    char text[] = "a sk-secret-123 b sk-secret-123sk-secret-123 sk-secret-12";
    CHECK(hdr_scrub(text, strlen(text), "sk-secret-123", 13));
    CHECK_STR(text, "a ************* b ************************** sk-secret-12");
    CHECK(!hdr_scrub(text, strlen(text), "sk-secret-123", 13));
    char short_key[] = "x marks x";
    CHECK(!hdr_scrub(short_key, strlen(short_key), "x", 1)); /* too short to tell from text */
    CHECK_STR(short_key, "x marks x");
    /* Random texts: no occurrence is left, nothing else changes. */
    for (int round = 0; round < 2000; round++) {
        char buf[200], orig[200];
        size_t n = 1 + check_below(sizeof(buf) - 1);
        for (size_t i = 0; i < n; i++)
            buf[i] = "abk-"[check_below(4)];
        memcpy(orig, buf, n);
        const char *secret = "abab-k-a";
        hdr_scrub(buf, n, secret, 8);
        CHECK(!memmem(buf, n, secret, 8));
        for (size_t i = 0; i < n; i++)
            if (buf[i] != orig[i] && buf[i] != '*')
                CHECK(0);
    }
}

int main(void)
{
    test_forwarded();
    test_relayed();
    test_scrub();
    return check_done();
}
