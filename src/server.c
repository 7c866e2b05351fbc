/* Routing of client requests. Everything under /v1/ is the proxy's; the
 * rest is answered here or by the admin, status and models handlers. */
#include "sluice/generation.h"
#include "sluice/server.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

#include "sluice/admin.h"
#include "sluice/api_call.h"
#include "sluice/api_read.h"
#include "sluice/auth.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/keystore.h"
#include "sluice/limit.h"
#include "sluice/metrics.h"
#include "sluice/models.h"
#include "sluice/pool.h"
#include "sluice/proxy.h"
#include "sluice/util.h"
#include "sluice/worker-t.h"

static const char json_ct[] = "Content-Type: application/json\r\n";

static void respond_json(struct http_req *req, int status, const char *json)
{
    http_respond(req, status, json_ct, sizeof(json_ct) - 1, json, strlen(json));
}

static bool is_get(const struct http_req *req)
{
    return sl_str_eq(req->method, "GET") || sl_str_eq(req->method, "HEAD");
}

static void method_not_allowed(struct http_req *req, const char *allow)
{
    char msg[96], hdr[64];
    snprintf(msg, sizeof(msg), "Method %.*s is not allowed here; use %s.", (int)SL_MIN(req->method.len, 16),
             req->method.p, allow);
    snprintf(hdr, sizeof(hdr), "Allow: %s\r\n", allow);
    http_send_error(req, ERR_METHOD, msg, NULL, hdr);
}

/* Ready: Redis (if configured) answers, and some backend's breaker is not
 * open. A Redis outage makes a node unready only with on_error = deny: with
 * local or allow every node goes on serving, and a load balancer must not
 * drain them all at once. */
static void readyz(struct worker *w, struct http_req *req)
{
    struct generation *g = w->gen;
    bool configured = lim_shared_configured(&w->limiter);
    bool redis_up = !configured || lim_shared_up(&w->limiter);
    bool redis_ok = redis_up || g->cfg->redis.on_error != REDIS_ON_ERROR_DENY;
    bool backend_ok = false;
    for (int i = 0; i < g->cfg->nbackends && !backend_ok; i++)
        backend_ok = pool_state(g->pool, i) != BREAKER_OPEN;
    char body[128];
    snprintf(body, sizeof(body), "{\"status\":\"%s\",\"redis\":\"%s\",\"backends\":\"%s\"}\n",
             redis_ok && backend_ok ? "ready" : "not ready",
             !configured ? "not configured" : redis_up ? "up" : "down",
             backend_ok ? "available" : "all open");
    respond_json(req, redis_ok && backend_ok ? 200 : 503, body);
}

static void metrics(struct worker *w, struct http_req *req)
{
    static const char ct[] = "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n";
    const struct cfg_server *srv = &w->gen->cfg->server;
    struct sl_str secret;
    if (srv->metrics_protected && (auth_presented_key(req, &secret) != AUTH_ONE ||
                                   !auth_digest_matches(srv->metrics_digest, secret.p, secret.len)))
        return http_send_error(req, ERR_INVALID_API_KEY, "Incorrect or missing metrics key.", NULL,
                               "WWW-Authenticate: Bearer realm=\"sluice metrics\"\r\n");
    struct sl_buf out = { 0 };
    mx_render(&out, w->gen, keystore_count(w->keys));
    http_respond(req, 200, ct, sizeof(ct) - 1, out.data, out.len);
    sl_buf_free(&out);
}

static void not_a_plain_path(struct http_req *req)
{
    http_send_error(req, ERR_BAD_REQUEST,
                    "The request path is not a plain /v1 path: after percent-decoding, each "
                    "segment must be letters, digits, '-', '_', '.', '~' or ':', and not '.' or "
                    "'..'.",
                    NULL, NULL);
}

static void not_found(struct http_req *req)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "Unknown request URL: %.*s %.*s.", (int)SL_MIN(req->method.len, 16),
             req->method.p, (int)SL_MIN(req->path.len, 100), req->path.p);
    http_send_error(req, ERR_NOT_FOUND, msg, NULL, NULL);
}

static bool is_operator_path(struct sl_str p)
{
    return sl_str_eq(p, "/metrics") || sl_str_eq(p, "/readyz") ||
           (p.len > 7 && memcmp(p.p, "/admin/", 7) == 0);
}

/* The operator endpoints answer only a Host in admin_hosts, or an IP address:
 * a page that rebinds its own DNS name to this node cannot read them. */
static bool operator_host_ok(const struct worker *w, const struct http_req *req)
{
    const struct cfg_models *hosts = &w->gen->cfg->server.admin_hosts;
    const struct sl_str *h = http_header(req, "host");
    if (hosts->any)
        return true;
    if (!h || h->len == 0 || h->len > 255)
        return false;
    char host[256];
    memcpy(host, h->p, h->len);
    host[h->len] = '\0';
    if (host[0] == '[') /* [v6]:port */
        return strchr(host, ']') != NULL;
    char *colon = strchr(host, ':');
    if (colon)
        *colon = '\0';
    struct in_addr v4;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return true;
    for (int i = 0; i < hosts->n; i++)
        if (strcasecmp(hosts->names[i], host) == 0)
            return true;
    return false;
}

/* With admin_listen set, the operator endpoints are served only there, and
 * only they (and /healthz) are; without it, everything is on listen. */
static bool served_here(const struct worker *w, const struct http_req *req)
{
    if (!w->gen->cfg->server.admin_listen.n || sl_str_eq(req->path, "/healthz"))
        return true;
    return is_operator_path(req->path) == (req->listener == HTTP_LISTENER_OPERATOR);
}

static bool is_models_path(struct sl_str path)
{
    return path.len >= 10 && memcmp(path.p, "/v1/models", 10) == 0 &&
           (path.len == 10 || path.p[10] == '/');
}

bool srv_head(struct http_req *req, void *arg)
{
    struct worker *w = arg;
    struct sl_str path = req->path;
    if (!served_here(w, req)) {
        not_found(req);
        return false;
    }
    if (is_operator_path(path) && !operator_host_ok(w, req)) {
        http_send_error(req, ERR_MISDIRECTED,
                        "This Host is not one the operator endpoints answer ([server] "
                        "admin_hosts).",
                        NULL, NULL);
        return false;
    }
    bool api = path.len >= 4 && memcmp(path.p, "/v1/", 4) == 0;
    if (api) /* Anthropic's callers get sluice's answers in their shape */
        req->dialect = (unsigned char)api_endpoint_dialect(api_endpoint_of(path.p, path.len));
    if (api && !api_plain_path(req)) {
        not_a_plain_path(req);
        return false;
    }
    if (api && !(is_models_path(req->path) && is_get(req))) {
        if (api_is_upload(req))
            req->body_limit = w->gen->cfg->server.max_upload_size;
        return proxy_head(w, req);
    }
    bool body = req->chunked || req->content_length > 0;
    if (path.len > 7 && memcmp(path.p, "/admin/", 7) == 0)
        return !body || admin_head(w, req);
    if (!body)
        return true;
    srv_handle(req, arg); /* nothing here reads a body: answered from the head alone */
    return false;
}

void srv_handle(struct http_req *req, void *arg)
{
    struct worker *w = arg;
    struct sl_str path = req->path; /* an API path is plain: srv_head checked it */
    if (sl_str_eq(path, "/healthz") || sl_str_eq(path, "/readyz") || sl_str_eq(path, "/metrics")) {
        if (!is_get(req))
            return method_not_allowed(req, "GET, HEAD");
        if (path.p[1] == 'h')
            return respond_json(req, 200, "{\"status\":\"ok\"}\n");
        return path.p[1] == 'r' ? readyz(w, req) : metrics(w, req);
    }
    if (is_models_path(path) && (is_get(req) || path.len == 10)) {
        if (!is_get(req))
            return method_not_allowed(req, "GET");
        return models_handle(w, req);
    }
    if (path.len > 7 && memcmp(path.p, "/admin/", 7) == 0)
        return admin_handle(w, req);
    if (path.len > 4 && memcmp(path.p, "/v1/", 4) == 0) { /* plain, checked above */
        if (!sl_str_eq(req->method, "POST") && !sl_str_eq(req->method, "GET") &&
            !sl_str_eq(req->method, "DELETE"))
            return method_not_allowed(req, "GET, POST, DELETE");
        return proxy_handle(w, req);
    }
    not_found(req);
}
