/* [redis] url: the forms sluice connects to. */
#include "sluice/redis_url.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/util.h"

static bool parse_unix(const char *p, struct redis_url *u, const char **why)
{
    const char *q = strchr(p, '?');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n == 0 || n >= sizeof(u->path)) {
        *why = "unix:// needs a socket path";
        return false;
    }
    memcpy(u->path, p, n);
    if (q && strncmp(q, "?db=", 4) == 0)
        u->db = atoi(q + 4);
    return true;
}

/* host[:port] of len bytes; the port defaults to 6379 (26379 for a sentinel). */
static bool parse_host(const char *p, size_t len, struct redis_host *h, int def_port, const char **why)
{
    const char *colon = memchr(p, ':', len);
    size_t nlen = colon ? (size_t)(colon - p) : len;
    if (nlen == 0 || nlen >= sizeof(h->name)) {
        *why = "missing host";
        return false;
    }
    memcpy(h->name, p, nlen);
    h->name[nlen] = '\0';
    h->port = def_port;
    if (!colon)
        return true;
    int64_t port;
    char buf[8] = { 0 };
    size_t plen = len - nlen - 1;
    if (plen == 0 || plen >= sizeof(buf)) {
        *why = "bad port";
        return false;
    }
    memcpy(buf, colon + 1, plen);
    if (!sl_parse_int(buf, &port) || port < 1 || port > 65535) {
        *why = "bad port";
        return false;
    }
    h->port = (int)port;
    return true;
}

static bool parse_db(const char *s, struct redis_url *u, const char **why)
{
    int64_t db;
    if (!*s)
        return true;
    if (!sl_parse_int(s, &db) || db < 0 || db > 1000) {
        *why = "bad database number";
        return false;
    }
    u->db = (int)db;
    return true;
}

/* user:password@ up to the last '@'; the first ':' splits them. */
static const char *parse_userinfo(const char *p, struct redis_url *u, const char **why)
{
    const char *at = strrchr(p, '@');
    if (!at)
        return p;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    size_t ulen = colon ? (size_t)(colon - p) : 0;
    const char *pw = colon ? colon + 1 : p;
    size_t plen = (size_t)(at - pw);
    if (ulen >= sizeof(u->user) || plen >= sizeof(u->password)) {
        *why = "user or password too long";
        return NULL;
    }
    memcpy(u->user, p, ulen);
    memcpy(u->password, pw, plen);
    return at + 1;
}

static const struct {
    const char *scheme;
    enum redis_form form;
    bool tls;
} schemes[] = {
    { "redis://", REDIS_SINGLE, false },          { "rediss://", REDIS_SINGLE, true },
    { "redis+sentinel://", REDIS_SENTINEL, false }, { "rediss+sentinel://", REDIS_SENTINEL, true },
    { "redis+cluster://", REDIS_CLUSTER, false },  { "rediss+cluster://", REDIS_CLUSTER, true },
};

/* The comma-separated hosts up to '/' or the end. */
static bool parse_hosts(const char *p, size_t len, struct redis_url *u, const char **why)
{
    int def_port = u->form == REDIS_SENTINEL ? 26379 : 6379;
    while (len) {
        const char *comma = memchr(p, ',', len);
        size_t n = comma ? (size_t)(comma - p) : len;
        if (u->nhosts == REDIS_URL_HOSTS) {
            *why = "more than 16 hosts";
            return false;
        }
        if (!parse_host(p, n, &u->hosts[u->nhosts++], def_port, why))
            return false;
        if (u->form == REDIS_SINGLE && comma) {
            *why = "one host (a list is for redis+sentinel:// or redis+cluster://)";
            return false;
        }
        p += n + (comma ? 1 : 0);
        len -= n + (comma ? 1 : 0);
        if (comma && !len) {
            *why = "missing host";
            return false;
        }
    }
    if (!u->nhosts)
        *why = "missing host";
    return u->nhosts > 0;
}

/* After the hosts: /db, /MASTER[/db] for a sentinel, nothing for a cluster. */
static bool parse_path(const char *s, struct redis_url *u, const char **why)
{
    if (u->form == REDIS_SINGLE)
        return parse_db(s, u, why);
    if (u->form == REDIS_CLUSTER) {
        if (*s)
            *why = "a cluster has no database number";
        return !*s;
    }
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(u->master)) {
        *why = "redis+sentinel:// needs the master's name: …/MASTER[/db]";
        return false;
    }
    memcpy(u->master, s, n);
    return parse_db(slash ? slash + 1 : "", u, why);
}

bool redis_url_parse(const char *url, struct redis_url *u, const char **why)
{
    memset(u, 0, sizeof(*u));
    if (strncmp(url, "unix://", 7) == 0)
        return parse_unix(url + 7, u, why);
    const char *p = NULL;
    for (size_t i = 0; i < SL_ARRAY_LEN(schemes) && !p; i++)
        if (strncmp(url, schemes[i].scheme, strlen(schemes[i].scheme)) == 0) {
            p = url + strlen(schemes[i].scheme);
            u->form = schemes[i].form;
            u->tls = schemes[i].tls;
        }
    if (!p) {
        *why = "must be redis://[user:password@]host[:port][/db], rediss://…, "
               "redis+sentinel://host[:port],…/MASTER[/db], redis+cluster://host[:port],… "
               "or unix:///path";
        return false;
    }
    p = parse_userinfo(p, u, why);
    if (!p)
        return false;
    const char *slash = strchr(p, '/');
    size_t hlen = slash ? (size_t)(slash - p) : strlen(p);
    return parse_hosts(p, hlen, u, why) && parse_path(slash ? slash + 1 : "", u, why);
}
