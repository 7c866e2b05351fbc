/* The status page (status.h). status.json reads every backend's breaker
 * from the pool, its attempts and time to first byte from the metrics, and
 * the live windows of the busiest keys (at most STATUS_KEYS) and their
 * teams from the limiter, with one peek per key, all at once; the answer
 * goes when the last peek is back. The page is one HTML file with its
 * style and script inline: no external assets. */
#include "sluice/generation.h"
#include "sluice/status.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/auth.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/keystore.h"
#include "sluice/limit.h"
#include "sluice/metrics.h"
#include "sluice/pool.h"
#include "sluice/util.h"
#include "sluice/waitq.h"
#include "sluice/worker-t.h"

#define STATUS_KEYS 50

extern const char status_html[];

static int64_t started_us;

__attribute__((constructor)) static void status_start(void)
{
    started_us = sl_now_us();
}

/* ---- access ----------------------------------------------------------------- */

/* The admin key from Authorization: Bearer KEY, or from Basic (any user,
 * the key as password) so a browser can log in. */
static bool presented_admin_key(const struct http_req *req, const uint8_t digest[32])
{
    struct sl_str secret;
    if (auth_presented_key(req, &secret) == AUTH_ONE)
        return auth_digest_matches(digest, secret.p, secret.len);
    const struct sl_str *h = http_header(req, "authorization");
    if (!h || h->len < 7 || strncasecmp(h->p, "basic ", 6) != 0 || h->len - 6 > 1024)
        return false;
    unsigned char plain[800];
    int n = EVP_DecodeBlock(plain, (const unsigned char *)h->p + 6, (int)(h->len - 6));
    if (n <= 0)
        return false;
    while (n > 0 && plain[n - 1] == '\0' && h->p[h->len - 1] == '=')
        n--; /* EVP_DecodeBlock counts the padding as zero bytes */
    const unsigned char *colon = memchr(plain, ':', (size_t)n);
    bool ok = colon && auth_digest_matches(digest, (const char *)colon + 1,
                                           (size_t)(n - (colon + 1 - plain)));
    explicit_bzero(plain, sizeof(plain));
    return ok;
}

/* The page and its JSON show key names and spend: only with the admin key,
 * on any listener (without admin_key they are off). */
static bool allowed(struct worker *w, struct http_req *req)
{
    const struct cfg_server *srv = &w->gen->cfg->server;
    if (!srv->admin_enabled) {
        http_send_error(req, ERR_NOT_FOUND,
                        "The status page is off: it needs an admin_key ([server] admin_key).", NULL,
                        NULL);
        return false;
    }
    if (!presented_admin_key(req, srv->admin_digest)) {
        http_send_error(req, ERR_INVALID_API_KEY, "Incorrect or missing admin key.", NULL,
                        "WWW-Authenticate: Basic realm=\"sluice status\", charset=\"UTF-8\"\r\n");
        return false;
    }
    return true;
}

/* ---- status.json ---------------------------------------------------------------- */

struct status_req {
    struct http_req *req; /* NULL once the client left */
    struct worker *w;
    struct generation *gen;
    int n, pending;
    int keys[STATUS_KEYS];
    uint64_t requests[STATUS_KEYS];
    struct lim_decision d[STATUS_KEYS];
    struct status_slot {
        struct status_req *s;
        int i;
    } slots[STATUS_KEYS];
};

static const char *const states[] = { "closed", "open", "half-open" };

static void node_json(struct sl_buf *b, struct worker *w)
{
    const struct config *c = w->gen->cfg;
    bool redis = lim_shared_configured(&w->limiter);
    sl_buf_printf(b, "\"node\":{\"version\":\"%s\",\"uptime_s\":%lld,\"limiter\":\"%s\",", SLUICE_VERSION,
                  (long long)((sl_now_us() - started_us) / 1000000), redis ? "redis" : "in-process");
    sl_buf_printf(b,
                  "\"redis\":\"%s\",\"inflight\":%ld,\"queued\":%ld,\"keys\":%d,"
                  "\"runtime_keys\":%ld,\"teams\":%d,",
                  !redis ? "not configured" : lim_shared_up(&w->limiter) ? "up" : "down",
                  mx_inflight_now(), waitq_count(), c->nkeys, keystore_count(w->keys), c->nteams);
    sl_buf_printf(b, "\"window_ms\":%lld,\"time_ms\":%lld}", (long long)lim_window_ms(),
                  (long long)(sl_wall_us() / 1000));
}

#define SHOWN_MODEL_BREAKERS 256

/* The backend's (backend, model) breakers that have opened: "models":[...]. */
static void model_breakers_json(struct sl_buf *b, int backend, const struct pool_model_breaker *mb,
                                int n)
{
    sl_buf_appends(b, ",\"models\":[");
    bool first = true;
    for (int k = 0; k < n; k++) {
        if (mb[k].backend != backend)
            continue;
        sl_buf_appends(b, first ? "{\"model\":" : ",{\"model\":");
        sl_buf_json_string(b, mb[k].model, strlen(mb[k].model));
        sl_buf_printf(b, ",\"state\":\"%s\",\"open_left_ms\":%lld}", states[mb[k].state],
                      (long long)mb[k].open_left_ms);
        first = false;
    }
    sl_buf_appends(b, "]");
}

static void backends_json(struct sl_buf *b, struct worker *w)
{
    const struct config *c = w->gen->cfg;
    struct pool_model_breaker *mb = sl_malloc(SHOWN_MODEL_BREAKERS * sizeof(*mb));
    int nmb = SL_MIN(pool_model_breakers(w->gen->pool, mb, SHOWN_MODEL_BREAKERS), SHOWN_MODEL_BREAKERS);
    sl_buf_appends(b, ",\"backends\":[");
    for (int i = 0; i < c->nbackends; i++) {
        const struct cfg_backend *be = &c->backends[i];
        struct mx_backend_stats st;
        mx_backend_stats(be->name, &st);
        enum breaker_state state = pool_state(w->gen->pool, i);
        sl_buf_appends(b, i ? ",{\"name\":" : "{\"name\":");
        sl_buf_json_string(b, be->name, strlen(be->name));
        sl_buf_printf(b, ",\"priority\":%lld,\"weight\":%lld,\"state\":\"%s\",\"open_left_ms\":%lld,",
                      (long long)be->priority, (long long)be->weight, states[state],
                      (long long)(state == BREAKER_OPEN ? pool_backend_available_ms(w->gen->pool, i) : 0));
        sl_buf_printf(b, "\"inflight\":%d,\"max_inflight\":%lld,\"attempts\":%llu,\"failures\":%llu,",
                      pool_inflight(w->gen->pool, i), (long long)be->max_inflight,
                      (unsigned long long)st.attempts, (unsigned long long)st.failures);
        sl_buf_printf(b, "\"ttfb_p50_ms\":%.1f,\"ttfb_p99_ms\":%.1f", st.ttfb_p50 * 1000,
                      st.ttfb_p99 * 1000);
        model_breakers_json(b, i, mb, nmb);
        sl_buf_appends(b, "}");
    }
    sl_buf_appends(b, "]");
    free(mb);
}

static void window_json(struct sl_buf *b, const char *name, int64_t limit, int64_t used)
{
    sl_buf_printf(b, ",\"%s\":{\"limit\":%lld,\"used\":%lld}", name, (long long)limit,
                  (long long)used);
}

/* The three windows of a key or team: limits and what is used of them. */
static void windows_json(struct sl_buf *b, const int64_t limit[3], const int64_t used[3])
{
    window_json(b, "requests", limit[0], used[0]);
    window_json(b, "input_tokens", limit[1], used[1]);
    window_json(b, "output_tokens", limit[2], used[2]);
}

static void money_json(struct sl_buf *b, const char *name, int64_t limit, int64_t used)
{
    char l[32], u[32];
    sl_fmt_money(limit, l);
    sl_fmt_money(used, u);
    sl_buf_printf(b, ",\"%s\":{\"limit\":%s,\"used\":%s}", name, l, u);
}

static void keys_json(struct sl_buf *b, const struct status_req *s)
{
    const struct config *c = s->gen->cfg;
    sl_buf_appends(b, ",\"keys\":[");
    bool first = true;
    for (int i = 0; i < s->n; i++) {
        const struct cfg_key *k = &c->keys[s->keys[i]];
        const struct lim_decision *d = &s->d[i];
        if (d->unavailable)
            continue;
        sl_buf_appends(b, first ? "{\"name\":" : ",{\"name\":");
        first = false;
        sl_buf_json_string(b, k->name, strlen(k->name));
        sl_buf_appends(b, ",\"team\":");
        if (k->team)
            sl_buf_json_string(b, k->team->name, strlen(k->team->name));
        else
            sl_buf_appends(b, "null");
        sl_buf_printf(b, ",\"answered\":%llu", (unsigned long long)s->requests[i]);
        windows_json(b, (int64_t[]){ k->rpm, k->input_tpm, k->output_tpm },
                     (int64_t[]){ d->used_requests, d->used_input, d->used_output });
        window_json(b, "quota", k->quota, d->used_quota);
        money_json(b, "budget_usd", k->budget, d->budget.used);
        sl_buf_appends(b, "}");
    }
    /* Each team once, as the peek of its first listed key saw it. */
    sl_buf_appends(b, "],\"teams\":[");
    first = true;
    for (int i = 0; i < s->n; i++) {
        const struct cfg_team *t = c->keys[s->keys[i]].team;
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = c->keys[s->keys[j]].team == t && !s->d[j].unavailable;
        if (!t || seen || s->d[i].unavailable)
            continue;
        const struct lim_decision *d = &s->d[i];
        sl_buf_appends(b, first ? "{\"name\":" : ",{\"name\":");
        first = false;
        sl_buf_json_string(b, t->name, strlen(t->name));
        windows_json(b, (int64_t[]){ t->rpm, t->input_tpm, t->output_tpm },
                     (int64_t[]){ d->team_requests, d->team_input, d->team_output });
        money_json(b, "budget_usd", t->budget, d->team_budget.used);
        sl_buf_appends(b, "}");
    }
    sl_buf_appends(b, "]");
}

static void status_done(struct status_req *s)
{
    if (s->req) {
        static const char hdrs[] = "Content-Type: application/json\r\nCache-Control: no-store\r\n";
        struct sl_buf b = { 0 };
        sl_buf_appends(&b, "{");
        node_json(&b, s->w);
        backends_json(&b, s->w);
        keys_json(&b, s);
        sl_buf_appends(&b, "}\n");
        s->req->owner = NULL;
        s->req->on_abort = NULL;
        http_respond(s->req, 200, hdrs, sizeof(hdrs) - 1, b.data, b.len);
        sl_buf_free(&b);
    }
    gen_unref(s->gen);
    free(s);
}

static void peeked(const struct lim_decision *d, void *arg)
{
    struct status_slot *slot = arg;
    struct status_req *s = slot->s;
    s->d[slot->i] = *d;
    if (--s->pending == 0)
        status_done(s);
}

static void on_abort(struct http_req *req)
{
    struct status_req *s = req->owner;
    s->req = NULL; /* the last peek frees it */
}

static void status_json(struct worker *w, struct http_req *req)
{
    struct status_req *s = sl_calloc(1, sizeof(*s));
    s->req = req;
    s->w = w;
    s->gen = gen_ref(w->gen);
    req->owner = s;
    req->on_abort = on_abort;
    const struct config *c = s->gen->cfg;
    s->n = mx_busiest_keys(c, STATUS_KEYS, s->keys, s->requests);
    s->pending = s->n + 1; /* the loop's own share: peeks may answer at once */
    for (int i = 0; i < s->n; i++) {
        const struct cfg_key *k = &c->keys[s->keys[i]];
        struct lim_limits lim = lim_limits_of(k);
        s->slots[i] = (struct status_slot){ s, i };
        lim_peek(&w->limiter, k->name, &lim, peeked, &s->slots[i]);
    }
    if (--s->pending == 0)
        status_done(s);
}

bool status_handle(struct worker *w, struct http_req *req)
{
    bool page = sl_str_eq(req->path, "/admin/status");
    if (!page && !sl_str_eq(req->path, "/admin/status.json"))
        return false;
    if (!allowed(w, req))
        return true;
    if (!sl_str_eq(req->method, "GET") && !sl_str_eq(req->method, "HEAD")) {
        http_send_error(req, ERR_METHOD, "Use GET.", NULL, "Allow: GET, HEAD\r\n");
        return true;
    }
    if (page) {
        static const char hdrs[] =
            "Content-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n"
            "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; connect-src 'self'; img-src data:\r\n"
            "X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n";
        http_respond(req, 200, hdrs, sizeof(hdrs) - 1, status_html, strlen(status_html));
        return true;
    }
    status_json(w, req);
    return true;
}
