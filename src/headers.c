/* The header lists of headers.h, each declared once. Names are compared
 * length first: this runs for every header of every request and response. */
#include "sluice/headers.h"

#include <string.h>
#include <strings.h>


struct pattern {
    const char *name; /* lower case */
    size_t len;
    bool prefix; /* matches any name that starts with it */
};

#define NAME(s) { s, sizeof(s) - 1, false }
#define PREFIX(s) { s, sizeof(s) - 1, true }

/* What OpenAI's SDKs and tracing send that an upstream may use. */
static const struct pattern forwarded[] = {
    NAME("accept"),      NAME("user-agent"), NAME("openai-beta"), NAME("idempotency-key"),
    PREFIX("x-stainless-"), NAME("traceparent"), NAME("tracestate"), NAME("baggage"),
    NAME("x-client-request-id"), NAME("anthropic-version"), NAME("anthropic-beta"),
};

static const struct pattern never_forwarded[] = {
    /* the client's credentials and its standing at the upstream's account */
    NAME("authorization"), NAME("api-key"), NAME("x-api-key"), NAME("proxy-authorization"),
    NAME("cookie"), NAME("openai-organization"), NAME("openai-project"),
    /* proxy trails: who the client is is not the upstream's business */
    NAME("forwarded"), PREFIX("x-forwarded-"), NAME("x-real-ip"), NAME("via"),
    /* sluice sets these, or they belong to one connection */
    NAME("x-request-id"), NAME("host"), NAME("content-length"), NAME("transfer-encoding"), NAME("content-type"),
    NAME("accept-encoding"), NAME("connection"), NAME("keep-alive"), NAME("proxy-connection"),
    NAME("te"), NAME("trailer"), NAME("upgrade"), NAME("expect"),
};

static const struct pattern not_relayed[] = {
    /* hop-by-hop and framing sluice sets */
    NAME("connection"), NAME("keep-alive"), NAME("proxy-connection"), NAME("transfer-encoding"),
    NAME("content-length"), NAME("upgrade"), NAME("te"), NAME("trailer"), NAME("date"),
    NAME("server"),
    /* the backend account's own limits: the client gets its key's instead */
    PREFIX("x-ratelimit-"), PREFIX("anthropic-ratelimit-"),
    /* the upstream's cookies are for the gateway's account, not the client */
    NAME("set-cookie"),
    /* sluice's own goes back; the upstream's as x-upstream-request-id */
    NAME("x-request-id"),
};

static bool matches(struct sl_str name, const struct pattern *p)
{
    if (p->prefix ? name.len < p->len : name.len != p->len)
        return false;
    return ((unsigned char)name.p[0] | 0x20) == (unsigned char)p->name[0] &&
           strncasecmp(name.p, p->name, p->len) == 0;
}

static bool in(struct sl_str name, const struct pattern *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (matches(name, &list[i]))
            return true;
    return false;
}

/* A forward_headers entry: a name, or a prefix ending in '*'. */
static bool extra_matches(struct sl_str name, const char *entry)
{
    size_t n = strlen(entry);
    bool prefix = n && entry[n - 1] == '*';
    struct pattern p = { entry, prefix ? n - 1 : n, prefix };
    return p.len && (prefix ? name.len >= p.len : name.len == p.len) &&
           strncasecmp(name.p, p.name, p.len) == 0;
}

bool hdr_never_forwarded(struct sl_str name)
{
    return name.len && in(name, never_forwarded, SL_ARRAY_LEN(never_forwarded));
}

bool hdr_forwarded(struct sl_str name, char *const *extra, int nextra)
{
    if (!name.len)
        return false;
    if (in(name, forwarded, SL_ARRAY_LEN(forwarded)))
        return true; /* the allow-list and the never-list do not meet (unit test) */
    for (int i = 0; i < nextra; i++)
        if (extra_matches(name, extra[i]))
            return !hdr_never_forwarded(name);
    return false;
}

bool hdr_not_relayed(struct sl_str name)
{
    return name.len && in(name, not_relayed, SL_ARRAY_LEN(not_relayed));
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

void hdr_allow_list(const char *const **names, size_t *n)
{
    static const char *list[SL_ARRAY_LEN(forwarded)];
    for (size_t i = 0; i < SL_ARRAY_LEN(forwarded); i++)
        list[i] = forwarded[i].name;
    *names = list;
    *n = SL_ARRAY_LEN(forwarded);
}
