/* Admin endpoints. A request that waits for Redis keeps its generation and
 * survives its client leaving: the answer is dropped then. */
#include "sluice/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/auth.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/limit.h"
#include "sluice/util.h"
#include "sluice/worker.h"

struct admin_req {
    struct http_req *req; /* NULL once the client left */
    struct generation *gen;
    const struct cfg_key *key;
};

static const char json_ct[] = "Content-Type: application/json\r\n";

static void on_abort(struct http_req *req)
{
    struct admin_req *a = req->owner;
    a->req = NULL; /* the limiter's callback frees it */
}

static void window_json(struct sl_buf *b, const char *name, int64_t limit, int64_t used,
                        int64_t reset_ms, bool last)
{
    sl_buf_printf(b, "\"%s\":{\"limit\":%lld,\"used\":%lld,", name, (long long)limit, (long long)used);
    if (limit)
        sl_buf_printf(b, "\"remaining\":%lld,", (long long)SL_MAX(limit - used, 0));
    else
        sl_buf_appends(b, "\"remaining\":null,");
    sl_buf_printf(b, "\"reset_ms\":%lld}%s", (long long)reset_ms, last ? "" : ",");
}

static void key_view_ready(const struct lim_decision *d, void *arg)
{
    struct admin_req *a = arg;
    if (a->req) {
        if (d->unavailable) {
            a->req->owner = NULL;
            http_send_error(a->req, ERR_LIMITER_DOWN, "Redis is unreachable; the key's windows cannot be read.",
                            NULL, "Retry-After: 1\r\n");
        } else {
            const struct cfg_key *k = a->key;
            struct sl_buf b = { 0 };
            sl_buf_appends(&b, "{\"key\":");
            sl_buf_json_string(&b, k->name, strlen(k->name));
            sl_buf_printf(&b, ",\"source\":\"%s\",\"window_ms\":%lld,",
                          d->where == LIM_REDIS ? "redis" : "local", (long long)lim_window_ms());
            window_json(&b, "requests", k->rpm, d->used_requests, d->reset_requests_ms, false);
            window_json(&b, "input_tokens", k->input_tpm, d->used_input, d->reset_input_ms, false);
            window_json(&b, "output_tokens", k->output_tpm, d->used_output, d->reset_output_ms, true);
            sl_buf_appends(&b, "}\n");
            a->req->owner = NULL;
            http_respond(a->req, 200, json_ct, sizeof(json_ct) - 1, b.data, b.len);
            sl_buf_free(&b);
        }
    }
    gen_unref(a->gen);
    free(a);
}

static void key_view(struct worker *w, struct http_req *req, struct sl_str name)
{
    char *n = sl_strndup(name.p, name.len);
    const struct cfg_key *k = cfg_find_key(w->gen->cfg, n);
    free(n);
    if (!k)
        return http_send_error(req, ERR_NOT_FOUND, "No key of that name.", NULL, NULL);
    struct admin_req *a = sl_calloc(1, sizeof(*a));
    a->req = req;
    a->gen = gen_ref(w->gen);
    a->key = k;
    req->owner = a;
    req->on_abort = on_abort;
    struct lim_limits lim = { k->rpm, k->input_tpm, k->output_tpm };
    lim_peek(&w->limiter, k->name, &lim, key_view_ready, a);
}

void admin_handle(struct worker *w, struct http_req *req)
{
    const struct cfg_server *srv = &w->gen->cfg->server;
    if (!srv->admin_enabled)
        return http_send_error(req, ERR_NOT_FOUND, "The admin API is off (no admin_key).", NULL, NULL);
    struct sl_str secret;
    if (!auth_presented_key(req, &secret) ||
        !auth_digest_matches(srv->admin_digest, secret.p, secret.len))
        return http_send_error(req, ERR_INVALID_API_KEY, "Incorrect or missing admin key.", NULL, NULL);
    struct sl_str p = req->path;
    static const char keys[] = "/admin/keys/";
    if (p.len > sizeof(keys) - 1 && memcmp(p.p, keys, sizeof(keys) - 1) == 0) {
        if (!sl_str_eq(req->method, "GET"))
            return http_send_error(req, ERR_METHOD, "Use GET.", NULL, "Allow: GET\r\n");
        return key_view(w, req, (struct sl_str){ p.p + sizeof(keys) - 1, p.len - sizeof(keys) + 1 });
    }
    http_send_error(req, ERR_NOT_FOUND, "Unknown admin endpoint.", NULL, NULL);
}
