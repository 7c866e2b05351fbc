/* The header lists of headers.h, each declared once. */
#include "sluice/headers.h"

#include <string.h>
#include <strings.h>

#include "sluice/config.h"

/* What OpenAI's SDKs and tracing send that an upstream may use. */
static const char *const forwarded[] = {
    "accept",          "user-agent",  "openai-beta",  "idempotency-key", "x-stainless-*",
    "traceparent",     "tracestate",  "baggage",      "x-request-id",    "x-client-request-id",
};

static const char *const never_forwarded[] = {
    /* the client's credentials and its standing at the upstream's account */
    "authorization", "api-key", "x-api-key", "proxy-authorization", "cookie",
    "openai-organization", "openai-project",
    /* proxy trails: who the client is is not the upstream's business */
    "forwarded", "x-forwarded-*", "x-real-ip", "via",
    /* sluice sets these, or they belong to one connection */
    "host", "content-length", "transfer-encoding", "content-type", "accept-encoding",
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect",
};

static const char *const not_relayed[] = {
    /* hop-by-hop and framing sluice sets */
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length",
    "upgrade", "te", "trailer", "date", "server",
    /* the backend account's own limits: the client gets its key's instead */
    "x-ratelimit-*",
    /* the upstream's cookies are for the gateway's account, not the client */
    "set-cookie",
};

static bool matches(struct sl_str name, const char *pattern)
{
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '*')
        return name.len >= n - 1 && strncasecmp(name.p, pattern, n - 1) == 0;
    return name.len == n && strncasecmp(name.p, pattern, n) == 0;
}

static bool in(struct sl_str name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (matches(name, list[i]))
            return true;
    return false;
}

bool hdr_never_forwarded(struct sl_str name)
{
    return in(name, never_forwarded, SL_ARRAY_LEN(never_forwarded));
}

bool hdr_forwarded(struct sl_str name, const struct cfg_models *extra)
{
    if (hdr_never_forwarded(name))
        return false;
    if (in(name, forwarded, SL_ARRAY_LEN(forwarded)))
        return true;
    return extra && in(name, (const char *const *)extra->names, (size_t)extra->n);
}

bool hdr_not_relayed(struct sl_str name)
{
    return in(name, not_relayed, SL_ARRAY_LEN(not_relayed));
}

bool hdr_scrub(char *p, size_t len, const char *secret, size_t secret_len)
{
    if (secret_len < HDR_MIN_SECRET)
        return false;
    bool found = false;
    char *end = p + len, *hit;
    while ((hit = memmem(p, (size_t)(end - p), secret, secret_len))) {
        memset(hit, '*', secret_len);
        p = hit + secret_len;
        found = true;
    }
    return found;
}
