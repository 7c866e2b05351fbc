/* Admin endpoints. A request that waits for Redis keeps its generation and
 * survives its client leaving: the answer is dropped then. */
#include "sluice/admin.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static struct admin_req *admin_req_new(struct worker *w, struct http_req *req,
                                       const struct cfg_key *k);

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

/* Ends an admin request: answers with body, or with 503 when body is NULL
 * (the limiter's state could not be read); drops the answer if the client
 * left meanwhile. */
static void admin_done(struct admin_req *a, const struct sl_buf *body)
{
    if (a->req) {
        a->req->owner = NULL;
        if (body)
            http_respond(a->req, 200, json_ct, sizeof(json_ct) - 1, body->data, body->len);
        else
            http_send_error(a->req, ERR_LIMITER_DOWN,
                            "Redis is unreachable; the limiter's state cannot be read.", NULL,
                            "Retry-After: 1\r\n");
    }
    gen_unref(a->gen);
    free(a);
}

/* {"key":"NAME", ... : every admin answer starts so. */
static void open_key_json(struct sl_buf *b, const struct cfg_key *k)
{
    sl_buf_appends(b, "{\"key\":");
    sl_buf_json_string(b, k->name, strlen(k->name));
}

/* Answers with {"key":"NAME", <fill>} once the limiter's state is read. */
static void answer_key(struct admin_req *a, const struct lim_decision *d,
                       void (*fill)(struct sl_buf *b, const struct cfg_key *k,
                                    const struct lim_decision *d))
{
    if (!a->req || d->unavailable)
        return admin_done(a, NULL);
    struct sl_buf b = { 0 };
    open_key_json(&b, a->key);
    fill(&b, a->key, d);
    sl_buf_appends(&b, "}\n");
    admin_done(a, &b);
    sl_buf_free(&b);
}

static void key_view_json(struct sl_buf *b, const struct cfg_key *k, const struct lim_decision *d)
{
    sl_buf_printf(b, ",\"source\":\"%s\",\"window_ms\":%lld,",
                  d->where == LIM_REDIS ? "redis" : "local", (long long)lim_window_ms());
    window_json(b, "requests", k->rpm, d->used_requests, d->reset_requests_ms, false);
    window_json(b, "input_tokens", k->input_tpm, d->used_input, d->reset_input_ms, false);
    window_json(b, "output_tokens", k->output_tpm, d->used_output, d->reset_output_ms, true);
}

static void key_view_ready(const struct lim_decision *d, void *arg)
{
    answer_key(arg, d, key_view_json);
}

static struct admin_req *admin_req_new(struct worker *w, struct http_req *req,
                                       const struct cfg_key *k)
{
    struct admin_req *a = sl_calloc(1, sizeof(*a));
    a->req = req;
    a->gen = gen_ref(w->gen);
    a->key = k;
    req->owner = a;
    req->on_abort = on_abort;
    return a;
}

static const struct cfg_key *find_key(struct worker *w, struct sl_str name)
{
    char *n = sl_strndup(name.p, name.len);
    const struct cfg_key *k = cfg_find_key(w->gen->cfg, n);
    free(n);
    return k;
}

static void key_view(struct worker *w, struct http_req *req, const struct cfg_key *k)
{
    struct lim_limits lim = lim_limits_of(k);
    lim_peek(&w->limiter, k->name, &lim, key_view_ready, admin_req_new(w, req, k));
}

/* ---- quotas ---------------------------------------------------------------- */

static const char *const period_words[] = { "none", "day", "month", "total" };

static void quota_json(struct sl_buf *b, const struct cfg_key *k, const struct lim_decision *d)
{
    sl_buf_printf(b, ",\"period\":\"%s\",\"period_id\":\"%s\",\"used\":%lld,",
                  period_words[k->quota_period], d->period, (long long)d->used_quota);
    if (k->quota)
        sl_buf_printf(b, "\"quota\":%lld,\"remaining\":%lld,", (long long)k->quota,
                      (long long)SL_MAX(k->quota - d->used_quota, 0));
    else
        sl_buf_appends(b, "\"quota\":null,\"remaining\":null,");
    if (d->quota_reset_ms < 0) {
        sl_buf_appends(b, "\"reset_ms\":null,\"resets_at\":null");
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    time_t at = (time_t)lim_period_end_s(d->quota_reset_ms,
                                         (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    struct tm tm;
    char when[32];
    gmtime_r(&at, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    sl_buf_printf(b, "\"reset_ms\":%lld,\"resets_at\":\"%s\"", (long long)d->quota_reset_ms, when);
}

static void quota_ready(const struct lim_decision *d, void *arg)
{
    answer_key(arg, d, quota_json);
}

/* {"tokens": N}: a whole number, positive (use more) or negative (give back). */
static bool parse_delta(const struct http_req *req, int64_t *tokens, const char **why)
{
    cJSON *root = cJSON_ParseWithLength(req->body.data, req->body.len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    bool ok = false;
    if (!cJSON_IsObject(root))
        *why = "The body must be a JSON object: {\"tokens\": N}.";
    else if (!t)
        *why = "Missing required parameter: 'tokens'.";
    else if (!cJSON_IsNumber(t) || t->valuedouble != (double)(long long)t->valuedouble ||
             t->valuedouble > 1e15 || t->valuedouble < -1e15)
        *why = "'tokens' must be a whole number between -1e15 and 1e15.";
    else {
        *tokens = (int64_t)t->valuedouble;
        ok = true;
    }
    cJSON_Delete(root);
    return ok;
}

/* /admin/quota/NAME[/reset|/delta] */
static void quota_route(struct worker *w, struct http_req *req, struct sl_str rest)
{
    const char *slash = memchr(rest.p, '/', rest.len);
    struct sl_str name = { rest.p, slash ? (size_t)(slash - rest.p) : rest.len };
    struct sl_str action = slash ? (struct sl_str){ slash + 1, rest.len - name.len - 1 }
                                 : (struct sl_str){ "", 0 };
    const struct cfg_key *k = find_key(w, name);
    if (!k)
        return http_send_error(req, ERR_NOT_FOUND, "No key of that name.", NULL, NULL);
    enum lim_quota_op op;
    int64_t tokens = 0;
    const char *why;
    if (action.len == 0) {
        if (!sl_str_eq(req->method, "GET"))
            return http_send_error(req, ERR_METHOD, "Use GET.", NULL, "Allow: GET\r\n");
        op = LIM_QUOTA_READ;
    } else if (sl_str_eq(action, "reset") || sl_str_eq(action, "delta")) {
        if (!sl_str_eq(req->method, "POST"))
            return http_send_error(req, ERR_METHOD, "Use POST.", NULL, "Allow: POST\r\n");
        if (!k->quota)
            return http_send_error(req, ERR_BAD_REQUEST, "This key has no quota.", NULL, NULL);
        op = action.p[0] == 'r' ? LIM_QUOTA_RESET : LIM_QUOTA_ADD;
        if (op == LIM_QUOTA_ADD && !parse_delta(req, &tokens, &why))
            return http_send_error(req, ERR_BAD_REQUEST, why, "tokens", NULL);
    } else {
        return http_send_error(req, ERR_NOT_FOUND, "Unknown quota action (reset or delta).", NULL, NULL);
    }
    struct lim_limits lim = lim_limits_of(k);
    lim_quota(&w->limiter, k->name, &lim, op, tokens, quota_ready, admin_req_new(w, req, k));
}

bool admin_head(struct worker *w, struct http_req *req)
{
    const struct cfg_server *srv = &w->gen->cfg->server;
    if (!srv->admin_enabled) {
        http_send_error(req, ERR_NOT_FOUND, "The admin API is off (no admin_key).", NULL, NULL);
        return false;
    }
    struct sl_str secret;
    if (auth_presented_key(req, &secret) != AUTH_ONE ||
        !auth_digest_matches(srv->admin_digest, secret.p, secret.len)) {
        http_send_error(req, ERR_INVALID_API_KEY, "Incorrect or missing admin key.", NULL, NULL);
        return false;
    }
    return true;
}

void admin_handle(struct worker *w, struct http_req *req)
{
    if (!admin_head(w, req))
        return;
    struct sl_str p = req->path;
    static const char keys[] = "/admin/keys/", quota[] = "/admin/quota/";
    if (p.len > sizeof(keys) - 1 && memcmp(p.p, keys, sizeof(keys) - 1) == 0) {
        if (!sl_str_eq(req->method, "GET"))
            return http_send_error(req, ERR_METHOD, "Use GET.", NULL, "Allow: GET\r\n");
        const struct cfg_key *k =
            find_key(w, (struct sl_str){ p.p + sizeof(keys) - 1, p.len - sizeof(keys) + 1 });
        if (!k)
            return http_send_error(req, ERR_NOT_FOUND, "No key of that name.", NULL, NULL);
        return key_view(w, req, k);
    }
    if (p.len > sizeof(quota) - 1 && memcmp(p.p, quota, sizeof(quota) - 1) == 0)
        return quota_route(w, req, (struct sl_str){ p.p + sizeof(quota) - 1, p.len - sizeof(quota) + 1 });
    http_send_error(req, ERR_NOT_FOUND, "Unknown admin endpoint.", NULL, NULL);
}
