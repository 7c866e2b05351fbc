/* [redis] url: the forms sluice connects to. */
#include "sluice/redis_url.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/util.h"

bool redis_url_parse(const char *url, struct redis_url *u, const char **why)
{
    memset(u, 0, sizeof(*u));
    u->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strchr(p, '?');
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
    if (strncmp(url, "redis://", 8) != 0) {
        *why = "must be redis://[user:password@]host[:port][/db] or unix:///path";
        return false;
    }
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : 0;
        const char *pw = colon ? colon + 1 : p;
        size_t plen = (size_t)(at - pw);
        if (ulen >= sizeof(u->user) || plen >= sizeof(u->password)) {
            *why = "user or password too long";
            return false;
        }
        memcpy(u->user, p, ulen);
        memcpy(u->password, pw, plen);
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    size_t hlen = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = memchr(p, ':', hlen);
    size_t nlen = colon ? (size_t)(colon - p) : hlen;
    if (nlen == 0 || nlen >= sizeof(u->host)) {
        *why = "missing host";
        return false;
    }
    memcpy(u->host, p, nlen);
    if (colon) {
        int64_t port;
        char buf[8] = { 0 };
        size_t plen = hlen - nlen - 1;
        if (plen == 0 || plen >= sizeof(buf)) {
            *why = "bad port";
            return false;
        }
        memcpy(buf, colon + 1, plen);
        if (!sl_parse_int(buf, &port) || port < 1 || port > 65535) {
            *why = "bad port";
            return false;
        }
        u->port = (int)port;
    }
    if (slash && slash[1]) {
        int64_t db;
        if (!sl_parse_int(slash + 1, &db) || db < 0 || db > 1000) {
            *why = "bad database number";
            return false;
        }
        u->db = (int)db;
    }
    return true;
}
