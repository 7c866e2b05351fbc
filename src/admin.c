/* Admin endpoints. A request that waits for Redis keeps its generation and
 * survives its client leaving: the answer is dropped then. */
#include "sluice/admin.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/admin_keys.h"
#include "sluice/auth.h"
#include "sluice/config.h"
#include "sluice/enduser.h"
#include "sluice/generation.h"
#include "sluice/http.h"
#include "sluice/keys.h"
#include "sluice/limit.h"
#include "sluice/status.h"
#include "sluice/util.h"
#include "sluice/worker-t.h"

struct admin_req {
    struct http_req *req; /* NULL once the client left */
    struct generation *gen;
    const struct cfg_key *key;   /* the key asked about, or */
    const struct cfg_team *team; /* the team */
    struct rt_key *rt;           /* the key's record, when it is a runtime key (referenced) */
    int64_t last_used;
    enum lim_counter which;      /* counter requests */
    char user[EU_MAX + 1];       /* the end user asked about (/admin/users) */
    struct limiter *limiter;     /* the worker's, for requests of more than one step */
};

static const char json_ct[] = "Content-Type: application/json\r\n";

#define ADMIN_MAX_BODY (64 * 1024) /* admin bodies are small: a key's settings */

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

/* An amount of tokens, or of micro-dollars as USD (a JSON number, 6 decimals). */
static void amount_json(struct sl_buf *b, const char *name, int64_t v, bool money)
{
    char text[32];
    if (money)
        sl_fmt_money(v, text);
    else
        text[sl_fmt_int(v, text)] = '\0';
    sl_buf_printf(b, "\"%s\":%s,", name, text);
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
    keys_unref(a->rt);
    gen_unref(a->gen);
    free(a);
}

/* Answers with {"key":"NAME", <fill>} (or "team") once the limiter's state is read. */
static void answer(struct admin_req *a, const struct lim_decision *d,
                   void (*fill)(struct sl_buf *b, const struct admin_req *a,
                                const struct lim_decision *d))
{
    if (!a->req || d->unavailable)
        return admin_done(a, NULL);
    struct sl_buf b = { 0 };
    const char *name = a->key ? a->key->name : a->team->name;
    sl_buf_appends(&b, a->key ? "{\"key\":" : "{\"team\":");
    sl_buf_json_string(&b, name, strlen(name));
    fill(&b, a, d);
    sl_buf_appends(&b, "}\n");
    admin_done(a, &b);
    sl_buf_free(&b);
}

static struct admin_req *admin_req_new(struct worker *w, struct http_req *req,
                                       const struct cfg_key *k, const struct cfg_team *t)
{
    struct admin_req *a = sl_calloc(1, sizeof(*a));
    a->req = req;
    a->gen = gen_ref(w->gen);
    a->key = k;
    a->team = t;
    req->owner = a;
    req->on_abort = on_abort;
    return a;
}

/* ---- quotas and budgets ---------------------------------------------------------- */

static const char *const period_words[] = { "none", "day", "month", "total", "week" };

/* What one counter's limit is and its period, for the key or team asked about. */
static void counter_limit(const struct admin_req *a, enum lim_counter which, int64_t *limit,
                          int *period)
{
    if (which == LIM_QUOTA) {
        *limit = a->key->quota;
        *period = a->key->quota_period;
    } else if (which == LIM_BUDGET) {
        *limit = a->key->budget;
        *period = a->key->budget_period;
    } else if (which == LIM_USER_BUDGET) {
        *limit = a->key->users.budget;
        *period = a->key->users.budget_period;
    } else if (which == LIM_TEAM_USER_BUDGET) {
        const struct cfg_team *t = a->team ? a->team : a->key->team;
        *limit = t->users.budget;
        *period = t->users.budget_period;
    } else {
        const struct cfg_team *t = a->team ? a->team : a->key->team;
        *limit = t->budget;
        *period = t->budget_period;
    }
}

/* "period", "period_id", used (tokens) or spent (USD), the limit, what is
 * left, and when the period ends. */
static void counter_json(struct sl_buf *b, const struct admin_req *a, enum lim_counter which,
                         const struct lim_count *c)
{
    int64_t limit;
    int period;
    counter_limit(a, which, &limit, &period);
    bool money = which != LIM_QUOTA;
    sl_buf_printf(b, "\"period\":\"%s\",\"period_id\":\"%s\",", period_words[period], c->period);
    amount_json(b, money ? "spent" : "used", c->used, money);
    if (limit) {
        amount_json(b, money ? "budget" : "quota", limit, money);
        amount_json(b, "remaining", SL_MAX(limit - c->used, 0), money);
    } else {
        sl_buf_printf(b, "\"%s\":null,\"remaining\":null,", money ? "budget" : "quota");
    }
    if (c->reset_ms < 0) {
        sl_buf_appends(b, "\"reset_ms\":null,\"resets_at\":null");
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    time_t at = (time_t)lim_period_end_s(c->reset_ms,
                                         (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    struct tm tm;
    char when[32];
    gmtime_r(&at, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    sl_buf_printf(b, "\"reset_ms\":%lld,\"resets_at\":\"%s\"", (long long)c->reset_ms, when);
}

static void counter_fill(struct sl_buf *b, const struct admin_req *a, const struct lim_decision *d)
{
    sl_buf_appends(b, ",");
    struct lim_count c = lim_count_of(d, a->which);
    counter_json(b, a, a->which, &c);
}

static void counter_ready(const struct lim_decision *d, void *arg)
{
    answer(arg, d, counter_fill);
}

/* {"tokens": N} (a whole number) or {"usd": X} (at most 6 decimals):
 * positive uses more, negative gives back. */
static bool parse_delta(const struct http_req *req, bool money, int64_t *amount, const char **why)
{
    const char *field = money ? "usd" : "tokens";
    cJSON *root = cJSON_ParseWithLength(req->body.data, req->body.len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, field);
    double scaled = t && cJSON_IsNumber(t) ? t->valuedouble * (money ? 1e6 : 1) : 0.5;
    bool in_range = scaled <= 1e15 && scaled >= -1e15;
    int64_t whole = in_range ? (int64_t)(scaled + (scaled < 0 ? -0.5 : 0.5)) : 0;
    double off = scaled - (double)whole;
    bool ok = false;
    if (!cJSON_IsObject(root))
        *why = money ? "The body must be a JSON object: {\"usd\": X}."
                     : "The body must be a JSON object: {\"tokens\": N}.";
    else if (!t)
        *why = money ? "Missing required parameter: 'usd'." : "Missing required parameter: 'tokens'.";
    else if (!cJSON_IsNumber(t) || !in_range || off > (money ? 1e-3 : 0) ||
             off < (money ? -1e-3 : 0))
        *why = money ? "'usd' must be a number between -1e9 and 1e9 with at most 6 decimals."
                     : "'tokens' must be a whole number between -1e15 and 1e15.";
    else {
        *amount = whole;
        ok = true;
    }
    cJSON_Delete(root);
    return ok;
}

/* NAME[/reset|/delta] of a counter: GET reads it, POST .../reset sets it to
 * 0, POST .../delta adds to it. */
static void counter_route(struct worker *w, struct http_req *req, struct sl_str rest,
                          enum lim_counter which)
{
    const char *slash = memchr(rest.p, '/', rest.len);
    struct sl_str name = { rest.p, slash ? (size_t)(slash - rest.p) : rest.len };
    struct sl_str action = slash ? (struct sl_str){ slash + 1, rest.len - name.len - 1 }
                                 : (struct sl_str){ "", 0 };
    const struct config *cfg = w->gen->cfg;
    char *n = sl_strndup(name.p, name.len);
    const struct cfg_key *k = which == LIM_TEAM_BUDGET ? NULL : cfg_find_key(cfg, n);
    const struct cfg_team *t = which == LIM_TEAM_BUDGET ? cfg_find_team(cfg, n) : NULL;
    free(n);
    if (!k && !t)
        return http_send_error(req, ERR_NOT_FOUND,
                               which == LIM_TEAM_BUDGET ? "No team of that name."
                                                        : "No key of that name.",
                               NULL, NULL);
    enum lim_quota_op op;
    int64_t amount = 0;
    const char *why;
    bool money = which != LIM_QUOTA;
    if (action.len == 0) {
        if (!sl_str_eq(req->method, "GET"))
            return http_send_error(req, ERR_METHOD, "Use GET.", NULL, "Allow: GET\r\n");
        op = LIM_QUOTA_READ;
    } else if (sl_str_eq(action, "reset") || sl_str_eq(action, "delta")) {
        if (!sl_str_eq(req->method, "POST"))
            return http_send_error(req, ERR_METHOD, "Use POST.", NULL, "Allow: POST\r\n");
        if (which == LIM_QUOTA && !k->quota)
            return http_send_error(req, ERR_BAD_REQUEST, "This key has no quota.", NULL, NULL);
        if ((which == LIM_BUDGET && !k->budget) || (t && !t->budget))
            return http_send_error(req, ERR_BAD_REQUEST,
                                   t ? "This team has no budget." : "This key has no budget.",
                                   NULL, NULL);
        op = action.p[0] == 'r' ? LIM_QUOTA_RESET : LIM_QUOTA_ADD;
        if (op == LIM_QUOTA_ADD && !parse_delta(req, money, &amount, &why))
            return http_send_error(req, ERR_BAD_REQUEST, why, money ? "usd" : "tokens", NULL);
    } else {
        return http_send_error(req, ERR_NOT_FOUND, "Unknown action (reset or delta).", NULL, NULL);
    }
    struct lim_limits lim = k ? lim_limits_of(k) : lim_team_limits_of(t);
    struct admin_req *a = admin_req_new(w, req, k, t);
    a->which = which;
    lim_count(&w->limiter, k ? k->name : "", &lim, which, op, amount, counter_ready, a);
}

/* ---- keys ---------------------------------------------------------------------- */

static void key_view_json(struct sl_buf *b, const struct admin_req *a,
                          const struct lim_decision *d)
{
    const struct cfg_key *k = a->key;
    sl_buf_appends(b, ",");
    admin_keys_view(k, a->rt, a->last_used, b);
    sl_buf_printf(b, "\"limiter\":\"%s\",\"window_ms\":%lld,",
                  d->where == LIM_REDIS ? "redis" : "local", (long long)lim_window_ms());
    window_json(b, "requests", k->rpm, d->used_requests, d->reset_requests_ms, false);
    window_json(b, "input_tokens", k->input_tpm, d->used_input, d->reset_input_ms, false);
    window_json(b, "output_tokens", k->output_tpm, d->used_output, d->reset_output_ms, false);
    sl_buf_appends(b, "\"spend\":{");
    counter_json(b, a, LIM_BUDGET, &d->budget);
    sl_buf_appends(b, "}");
}

static void key_view_ready(const struct lim_decision *d, void *arg)
{
    answer(arg, d, key_view_json);
}

/* GET /admin/keys/NAME, the key found: where its windows and spend stand. */
static void key_view(struct worker *w, struct http_req *req, struct generation *gen,
                     const struct cfg_key *k, struct rt_key *rt, int64_t last_used)
{
    struct lim_limits lim = lim_limits_of(k);
    struct admin_req *a = admin_req_new(w, req, k, NULL);
    gen_unref(a->gen); /* the one k lives in */
    a->gen = gen_ref(gen);
    a->rt = rt;
    a->last_used = last_used;
    lim_peek(&w->limiter, k->name, &lim, key_view_ready, a);
}

/* ---- end users ------------------------------------------------------------------ */

/* One scope of a user's limits (the key's user_*, or the team's): the
 * windows, the requests in flight and the budget. */
static void user_scope_json(struct sl_buf *b, const struct admin_req *a,
                            const struct cfg_user_limits *u, const struct lim_user_use *use,
                            enum lim_counter which)
{
    const char *names[3] = { "requests", "input_tokens", "output_tokens" };
    const int64_t limits[3] = { u->rpm, u->input_tpm, u->output_tpm };
    const int64_t used[3] = { use->requests, use->input, use->output };
    sl_buf_appends(b, "{");
    for (int i = 0; i < 3; i++) {
        sl_buf_printf(b, "\"%s\":{\"limit\":%lld,\"used\":%lld,", names[i], (long long)limits[i],
                      (long long)used[i]);
        if (limits[i])
            sl_buf_printf(b, "\"remaining\":%lld},", (long long)SL_MAX(limits[i] - used[i], 0));
        else
            sl_buf_appends(b, "\"remaining\":null},");
    }
    sl_buf_printf(b, "\"inflight\":{\"limit\":%lld,\"used\":%lld},\"spend\":{",
                  (long long)u->max_inflight, (long long)use->inflight);
    counter_json(b, a, which, &use->budget);
    sl_buf_appends(b, "}}");
}

static void user_view_json(struct sl_buf *b, const struct admin_req *a,
                           const struct lim_decision *d)
{
    const struct cfg_key *k = a->key;
    const struct cfg_team *t = a->team;
    sl_buf_appends(b, ",\"user\":");
    sl_buf_json_string(b, a->user, strlen(a->user));
    sl_buf_printf(b, ",\"limiter\":\"%s\",\"window_ms\":%lld,\"per_key\":",
                  d->where == LIM_REDIS ? "redis" : "local", (long long)lim_window_ms());
    user_scope_json(b, a, &k->users, &d->user, LIM_USER_BUDGET);
    sl_buf_appends(b, ",\"team\":");
    if (!t) {
        sl_buf_appends(b, "null,\"per_team\":null");
        return;
    }
    sl_buf_json_string(b, t->name, strlen(t->name));
    sl_buf_appends(b, ",\"per_team\":");
    user_scope_json(b, a, &t->users, &d->team_user, LIM_TEAM_USER_BUDGET);
}

static void user_view_ready(const struct lim_decision *d, void *arg)
{
    answer(arg, d, user_view_json);
}

static struct lim_limits user_limits_of(const struct admin_req *a)
{
    struct lim_limits lim = lim_limits_for(a->key, a->team);
    memcpy(lim.user, a->user, sizeof(lim.user));
    return lim;
}

/* A budget reset done: the team's per-user budget next if it has one, then the view. */
static void user_reset_done(const struct lim_decision *d, void *arg)
{
    struct admin_req *a = arg;
    if (!a->req || d->unavailable)
        return admin_done(a, NULL);
    struct lim_limits lim = user_limits_of(a);
    if (a->which == LIM_USER_BUDGET && a->team && a->team->users.budget) {
        a->which = LIM_TEAM_USER_BUDGET;
        return lim_count(a->limiter, a->key->name, &lim, LIM_TEAM_USER_BUDGET, LIM_QUOTA_RESET,
                         0, user_reset_done, a);
    }
    lim_peek(a->limiter, a->key->name, &lim, user_view_ready, a);
}

/* key=NAME and the optional team=NAME of a query (names plain); false if bad. */
static bool query_names(struct sl_str q, char key[CFG_NAME_MAX + 1], char team[CFG_NAME_MAX + 1])
{
    key[0] = team[0] = '\0';
    while (q.len) {
        const char *amp = memchr(q.p, '&', q.len);
        struct sl_str part = { q.p, amp ? (size_t)(amp - q.p) : q.len };
        q = amp ? (struct sl_str){ amp + 1, q.len - part.len - 1 } : (struct sl_str){ "", 0 };
        char *out = part.len > 4 && memcmp(part.p, "key=", 4) == 0    ? key
                    : part.len > 5 && memcmp(part.p, "team=", 5) == 0 ? team
                                                                      : NULL;
        size_t skip = out == key ? 4 : 5;
        if (!out || part.len - skip > CFG_NAME_MAX)
            return false;
        memcpy(out, part.p + skip, part.len - skip);
        out[part.len - skip] = '\0';
    }
    return key[0] != '\0';
}

/* GET /admin/users/ID?key=NAME[&team=NAME]: where the end user's windows, slots and
 * budgets stand under the key's user_* and its team's; POST
 * /admin/users/ID/budget/reset?key=NAME sets the user's budgets to 0. */
static void users_route(struct worker *w, struct http_req *req, struct sl_str rest)
{
    static const char reset[] = "/budget/reset";
    size_t rlen = sizeof(reset) - 1;
    bool is_reset = rest.len > rlen && memcmp(rest.p + rest.len - rlen, reset, rlen) == 0;
    struct sl_str id = { rest.p, is_reset ? rest.len - rlen : rest.len };
    if (!eu_valid(id.p, id.len))
        return http_send_error(req, ERR_NOT_FOUND,
                               "A user id is 1 to 128 letters, digits or . _ - @ : + | = /.", NULL,
                               NULL);
    char name[CFG_NAME_MAX + 1], team[CFG_NAME_MAX + 1];
    if (!query_names(req->query, name, team))
        return http_send_error(req, ERR_BAD_REQUEST,
                               "Name the key whose user_* limits to read: ?key=NAME (and, for a JWT "
                               "user counted in another team than the key's, &team=NAME).",
                               "key", NULL);
    const struct cfg_key *k = cfg_find_key(w->gen->cfg, name);
    const struct cfg_team *t = team[0] ? cfg_find_team(w->gen->cfg, team) : k ? k->team : NULL;
    if (!k || (team[0] && !t))
        return http_send_error(req, ERR_NOT_FOUND, k ? "No team of that name." : "No key of that name.",
                               NULL, NULL);
    const char *method = is_reset ? "POST" : "GET";
    if (!sl_str_eq(req->method, method))
        return http_send_error(req, ERR_METHOD, is_reset ? "Use POST." : "Use GET.", NULL,
                               is_reset ? "Allow: POST\r\n" : "Allow: GET\r\n");
    bool team_budget = t && t->users.budget;
    if (is_reset && !k->users.budget && !team_budget)
        return http_send_error(req, ERR_BAD_REQUEST,
                               "Neither this key nor its team has a user_budget.", NULL, NULL);
    struct admin_req *a = admin_req_new(w, req, k, t);
    a->limiter = &w->limiter;
    memcpy(a->user, id.p, id.len);
    a->user[id.len] = '\0';
    struct lim_limits lim = user_limits_of(a);
    if (!is_reset)
        return lim_peek(&w->limiter, k->name, &lim, user_view_ready, a);
    a->which = k->users.budget ? LIM_USER_BUDGET : LIM_TEAM_USER_BUDGET;
    lim_count(&w->limiter, k->name, &lim, a->which, LIM_QUOTA_RESET, 0, user_reset_done, a);
}

/* Whether any admin key is set: the operator's or a team's. */
static bool admin_on(const struct config *cfg)
{
    bool on = cfg->server.admin_enabled;
    for (int i = 0; i < cfg->nteams && !on; i++)
        on = cfg->teams[i].admin_enabled;
    return on;
}

bool admin_head(struct worker *w, struct http_req *req)
{
    const struct config *cfg = w->gen->cfg;
    if (!admin_on(cfg)) {
        http_send_error(req, ERR_NOT_FOUND, "The admin API is off (no admin_key).", NULL, NULL);
        return false;
    }
    struct admin_who who;
    if (!admin_identify(cfg, req, &who)) {
        http_send_error(req, ERR_INVALID_API_KEY, "Incorrect or missing admin key.", NULL, NULL);
        return false;
    }
    req->body_limit = ADMIN_MAX_BODY;
    return true;
}

void admin_handle(struct worker *w, struct http_req *req)
{
    if (status_handle(w, req)) /* the status page has its own access rule */
        return;
    if (!admin_head(w, req))
        return;
    struct admin_who who;
    admin_identify(w->gen->cfg, req, &who);
    struct sl_str p = req->path;
    struct sl_str rest;
    if (sl_str_eq(p, "/admin/keys"))
        return admin_keys_collection(w, req, &who);
    if (sl_str_after(p, "/admin/keys/", &rest)) {
        const char *slash = memchr(rest.p, '/', rest.len);
        struct sl_str name = { rest.p, slash ? (size_t)(slash - rest.p) : rest.len };
        struct sl_str action = slash ? (struct sl_str){ slash + 1, rest.len - name.len - 1 }
                                     : (struct sl_str){ "", 0 };
        if (!action.len && sl_str_eq(req->method, "GET"))
            return admin_keys_get(w, req, &who, name, key_view);
        return admin_keys_change(w, req, &who, name, action);
    }
    if (who.team)
        return http_send_error(req, ERR_PERMISSION,
                               "A team's admin key manages only its team's keys (/admin/keys).",
                               NULL, NULL);
    if (sl_str_after(p, "/admin/quota/", &rest))
        return counter_route(w, req, rest, LIM_QUOTA);
    if (sl_str_after(p, "/admin/budgets/keys/", &rest))
        return counter_route(w, req, rest, LIM_BUDGET);
    if (sl_str_after(p, "/admin/budgets/teams/", &rest))
        return counter_route(w, req, rest, LIM_TEAM_BUDGET);
    if (sl_str_after(p, "/admin/users/", &rest))
        return users_route(w, req, rest);
    http_send_error(req, ERR_NOT_FOUND, "Unknown admin endpoint.", NULL, NULL);
}
