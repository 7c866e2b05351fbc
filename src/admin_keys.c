/* Runtime keys through the admin API: make, list, change, rotate, revoke;
 * who may; the audit record of each change. */
#include "sluice/admin_keys.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/api_read.h"
#include "sluice/auth.h"
#include "sluice/config.h"
#include "sluice/generation.h"
#include "sluice/http.h"
#include "sluice/keys.h"
#include "sluice/keystore.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/worker-t.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000

static const char json_ct[] = "Content-Type: application/json\r\n";

bool admin_identify(const struct config *cfg, const struct http_req *req, struct admin_who *who)
{
    struct sl_str secret;
    memset(who, 0, sizeof(*who));
    if (auth_presented_key(req, &secret) != AUTH_ONE)
        return false;
    uint8_t d[32];
    sl_sha256(secret.p, secret.len, d);
    bool found = false;
    if (cfg->server.admin_enabled && CRYPTO_memcmp(cfg->server.admin_digest, d, 32) == 0) {
        snprintf(who->id, sizeof(who->id), "admin");
        found = true;
    }
    for (int i = 0; i < cfg->nteams; i++) { /* every team compared: the time says nothing */
        const struct cfg_team *t = &cfg->teams[i];
        if (t->admin_enabled && CRYPTO_memcmp(t->admin_digest, d, 32) == 0 && !found) {
            who->team = t;
            snprintf(who->id, sizeof(who->id), "team:%s", t->name);
            found = true;
        }
    }
    return found;
}

/* ---- the audit ------------------------------------------------------------------ */

/* One line in audit_log and one in the log: when, who, what, which key, the
 * fields the change named (never a value: a value could be a secret put in
 * the wrong field). */
static void audit(struct worker *w, const struct admin_who *who, const char *action,
                  const char *name, const struct keys_change *c)
{
    struct sl_buf fields = { 0 };
    sl_buf_appends(&fields, "[");
    int n = 0;
    for (int i = 0; c && i < c->nset; i++)
        sl_buf_printf(&fields, "%s\"%s\"", n++ ? "," : "", c->opts[i]);
    if (c && c->disabled >= 0)
        sl_buf_printf(&fields, "%s\"disabled\"", n++ ? "," : "");
    if (c && c->metadata)
        sl_buf_printf(&fields, "%s\"metadata\"", n++ ? "," : "");
    if (strcmp(action, "rotate") == 0)
        sl_buf_printf(&fields, "%s\"key\"", n++ ? "," : "");
    sl_buf_appends(&fields, "]");
    log_info("admin action=%s key=%s by=%s fields=%s", action, name, who->id, fields.data);
    mx_admin_change(action);
    const char *path = w->gen->cfg->server.audit_log;
    if (!path) {
        sl_buf_free(&fields);
        return;
    }
    char when[21];
    sl_fmt_time(sl_wall_us() / 1000000, when);
    struct sl_buf line = { 0 };
    sl_buf_printf(&line, "{\"time\":\"%s\",\"admin\":", when);
    sl_buf_json_string(&line, who->id, strlen(who->id));
    sl_buf_printf(&line, ",\"action\":\"%s\",\"key\":", action);
    sl_buf_json_string(&line, name, strlen(name));
    sl_buf_printf(&line, ",\"fields\":%s}\n", fields.data);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, line.data, line.len) != (ssize_t)line.len)
        log_error("audit_log %s: cannot write the record of %s %s", path, action, name);
    if (fd >= 0)
        close(fd);
    sl_buf_free(&line);
    sl_buf_free(&fields);
}

/* ---- an admin call that waits for the key store ------------------------------ */

enum op_kind { OP_GET, OP_CREATE, OP_UPDATE, OP_ROTATE, OP_DELETE, OP_LIST };

struct page_query {
    char team[CFG_NAME_MAX + 1];
    char cursor[CFG_NAME_MAX + 1];
    int limit;
};


struct admin_op {
    struct worker *w;
    struct http_req *req;   /* NULL once the client left */
    struct generation *gen; /* referenced: the config the op reads */
    struct admin_who who;
    enum op_kind kind;
    struct keys_change change;
    int64_t grace_s;
    struct rt_key *k;                  /* the record being written */
    char secret[KEYS_SECRET_LEN + 1];  /* a new one, shown once */
    admin_key_view_fn view;            /* OP_GET: where the key goes */
    struct page_query pq;              /* OP_LIST */
};

static void op_abort(struct http_req *req)
{
    struct admin_op *op = req->owner;
    op->req = NULL; /* the store's answer frees op */
}

static void op_attach(struct admin_op *op, struct http_req *req)
{
    op->req = req;
    req->owner = op;
    req->on_abort = op_abort;
}

static struct admin_op *op_new(struct worker *w, struct http_req *req, const struct admin_who *who,
                               enum op_kind kind)
{
    struct admin_op *op = sl_calloc(1, sizeof(*op));
    op->w = w;
    op->req = req;
    op->gen = gen_ref(w->gen);
    op->who = *who;
    if (who->team) /* the generation keeps the team alive */
        op->who.team = cfg_find_team(op->gen->cfg, who->team->name);
    op->kind = kind;
    op->change.disabled = -1;
    op_attach(op, req);
    return op;
}

/* The request, if the client is still there, let go of by op: the caller
 * answers it (which may free it). */
static struct http_req *op_detach(struct admin_op *op)
{
    struct http_req *req = op->req;
    if (req) {
        req->owner = NULL;
        req->on_abort = NULL;
    }
    op->req = NULL;
    return req;
}

/* The op is over: freed, its request (if any) let go of and returned. */
static struct http_req *op_end(struct admin_op *op)
{
    struct http_req *req = op_detach(op);
    OPENSSL_cleanse(op->secret, sizeof(op->secret));
    keys_change_free(&op->change);
    keys_unref(op->k);
    gen_unref(op->gen);
    free(op);
    return req;
}

/* ---- finding and showing keys ------------------------------------------------------ */

static bool team_sees(const struct admin_who *who, const struct cfg_key *k)
{
    return !who->team || k->team == who->team;
}

static void view_members(const struct cfg_key *k, const struct rt_key *rt, int64_t last_used,
                         struct sl_buf *out)
{
    sl_buf_appends(out, "\"name\":");
    sl_buf_json_string(out, k->name, strlen(k->name));
    sl_buf_printf(out, ",\"source\":\"%s\",", rt ? "runtime" : "config");
    keys_settings_json(k, out);
    if (rt)
        keys_runtime_json(rt, out);
    if (last_used) {
        char when[21];
        sl_fmt_time(last_used, when);
        sl_buf_printf(out, "\"last_used_at\":\"%s\",", when);
    } else {
        sl_buf_appends(out, "\"last_used_at\":null,");
    }
}

void admin_keys_view(const struct cfg_key *k, const struct rt_key *rt, int64_t last_used,
                     struct sl_buf *out)
{
    view_members(k, rt, last_used, out);
}

static void respond(struct http_req *req, int status, struct sl_buf *b)
{
    http_respond(req, status, json_ct, sizeof(json_ct) - 1, b->data, b->len);
    sl_buf_free(b);
}

/* A view as a whole object: {members} with the last comma dropped. */
static void close_object(struct sl_buf *b)
{
    if (b->len && b->data[b->len - 1] == ',')
        b->len--;
    sl_buf_appends(b, "}");
}

/* ---- making and changing ----------------------------------------------------------- */

static bool store_ready(struct worker *w, struct http_req *req)
{
    if (keystore_on(w->keys, &w->limiter))
        return true;
    http_send_error(req, ERR_NOT_IMPLEMENTED,
                    "Runtime keys need somewhere to live: set [server] state_dir (or [redis]).",
                    NULL, NULL);
    return false;
}

static void store_failed(struct http_req *req, enum ks_result r)
{
    if (r == KS_EXISTS)
        http_send_error(req, ERR_CONFLICT, "A key of that name exists.", "name", NULL);
    else if (r == KS_MISSING)
        http_send_error(req, ERR_NOT_FOUND, "No key of that name.", NULL, NULL);
    else
        http_send_error(req, ERR_KEY_STORE,
                        "Runtime keys cannot be read or written right now; nothing was changed.",
                        NULL, "Retry-After: 1\r\n");
}

/* The option a config message is about ("rpm: ..." -> "rpm"), in param. */
static const char *param_of(const char *msg, char *param, size_t n)
{
    const char *colon = strchr(msg, ':');
    size_t len = colon ? (size_t)(colon - msg) : 0;
    if (!len || len >= n)
        return NULL;
    memcpy(param, msg, len);
    param[len] = '\0';
    return cfg_key_option(param) ? param : NULL;
}

/* A team's admin may name only its own team and give only what it has. */
static bool team_allows(const struct admin_who *who, const struct rt_key *k, struct http_req *req)
{
    char msg[256];
    if (!who->team)
        return true;
    if (k->k.team != who->team) {
        http_send_error(req, ERR_PERMISSION, "A team's admin key manages only that team's keys.",
                        "team", NULL);
        return false;
    }
    if (!keys_within_team(&k->k, msg, sizeof(msg))) {
        char p[32];
        http_send_error(req, ERR_PERMISSION, msg, param_of(msg, p, sizeof(p)), NULL);
        return false;
    }
    return true;
}

/* Reads the body into c; false after answering 400. */
static bool read_change(struct http_req *req, struct keys_change *c)
{
    char msg[256];
    const char *param;
    if (!keys_change_parse(req->body.data, req->body.len, c, msg, sizeof(msg), &param)) {
        http_send_error(req, ERR_BAD_REQUEST, msg, param, NULL);
        return false;
    }
    return true;
}

/* c applied to prev (NULL: a new key), checked; NULL after answering. */
static struct rt_key *changed(const struct config *cfg, struct http_req *req,
                              const struct admin_who *who, const struct rt_key *prev,
                              const struct keys_change *c)
{
    char msg[256], p[32];
    struct rt_key *k = keys_apply(cfg, prev, c, msg, sizeof(msg));
    if (!k) {
        http_send_error(req, ERR_BAD_REQUEST, msg, param_of(msg, p, sizeof(p)), NULL);
        return NULL;
    }
    int64_t now = sl_wall_us() / 1000000;
    if (k->k.expires_at && k->k.expires_at <= now &&
        (!prev || k->k.expires_at != prev->k.expires_at)) {
        http_send_error(req, ERR_BAD_REQUEST, "'expires_at' is in the past.", "expires_at", NULL);
        keys_unref(k);
        return NULL;
    }
    if (!team_allows(who, k, req)) {
        keys_unref(k);
        return NULL;
    }
    k->updated_at = now;
    return k;
}

static void answer_key(struct http_req *req, int status, const struct rt_key *k,
                       const char *secret)
{
    struct sl_buf b = { 0 };
    sl_buf_appends(&b, "{");
    if (secret)
        sl_buf_printf(&b, "\"key\":\"%s\",", secret);
    view_members(&k->k, k, 0, &b);
    close_object(&b);
    sl_buf_appends(&b, "\n");
    respond(req, status, &b);
}

static const char *const op_actions[] = { [OP_CREATE] = "create", [OP_UPDATE] = "update",
                                          [OP_ROTATE] = "rotate", [OP_DELETE] = "delete" };

/* The store has written (or not) what op asked. */
static void op_written(enum ks_result r, void *arg)
{
    struct admin_op *op = arg;
    if (r == KS_OK) /* done, whether or not the client is still there */
        audit(op->w, &op->who, op_actions[op->kind], op->k->k.name,
              op->kind == OP_CREATE || op->kind == OP_UPDATE ? &op->change : NULL);
    struct http_req *req = op_detach(op);
    if (req && r != KS_OK) {
        store_failed(req, r);
    } else if (req && op->kind == OP_DELETE) {
        struct sl_buf b = { 0 };
        sl_buf_appends(&b, "{\"name\":");
        sl_buf_json_string(&b, op->k->k.name, strlen(op->k->k.name));
        sl_buf_appends(&b, ",\"deleted\":true}\n");
        respond(req, 200, &b);
    } else if (req) {
        answer_key(req, op->kind == OP_CREATE ? 201 : 200, op->k,
                   op->secret[0] ? op->secret : NULL);
    }
    op_end(op);
}

static void create(struct worker *w, struct http_req *req, const struct admin_who *who)
{
    struct keys_change c;
    if (!store_ready(w, req) || !read_change(req, &c))
        return;
    if (!c.has_name) {
        keys_change_free(&c);
        return http_send_error(req, ERR_BAD_REQUEST, "Missing required parameter: 'name'.", "name",
                               NULL);
    }
    if (cfg_find_key(w->gen->cfg, c.name)) {
        keys_change_free(&c);
        return http_send_error(req, ERR_CONFLICT,
                               "A key of that name is in the configuration file.", "name", NULL);
    }
    bool has_team = false;
    for (int i = 0; i < c.nset; i++)
        has_team |= strcmp(c.opts[i], "team") == 0;
    if (who->team && !has_team) { /* a team's admin makes the team's keys */
        c.opts[c.nset] = sl_strdup("team");
        c.vals[c.nset++] = sl_strdup(who->team->name);
    }
    struct rt_key *k = changed(w->gen->cfg, req, who, NULL, &c);
    if (!k) {
        keys_change_free(&c);
        return;
    }
    struct admin_op *op = op_new(w, req, who, OP_CREATE);
    op->change = c;
    op->k = k;
    if (!keys_new_secret(op->secret, k->k.digest)) {
        req = op_end(op);
        return http_send_error(req, ERR_INTERNAL, "No randomness for a secret.", NULL, NULL);
    }
    k->created_at = k->updated_at;
    snprintf(k->created_by, sizeof(k->created_by), "%s", who->id);
    keystore_create(w->keys, &w->limiter, k, op_written, op);
}

/* {"grace": "24h"} or {"grace": seconds}; an empty body is no grace. */
static bool read_grace(struct http_req *req, int64_t *grace_s)
{
    *grace_s = 0;
    if (!req->body.len)
        return true;
    cJSON *root = cJSON_ParseWithLength(req->body.data, req->body.len);
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "grace");
    int64_t ms = -1;
    bool only = cJSON_IsObject(root) && !api_repeated_member(root) &&
                (!root->child || (g && !g->next && root->child == g));
    if (only && !g)
        ms = 0;
    else if (only && cJSON_IsString(g) && !sl_parse_duration_ms(g->valuestring, &ms))
        ms = -1;
    else if (only && cJSON_IsNumber(g) && g->valuedouble >= 0 && g->valuedouble <= 1e9)
        ms = (int64_t)g->valuedouble * 1000;
    cJSON_Delete(root);
    if (ms < 0 || ms > KEYS_MAX_GRACE_S * 1000) {
        http_send_error(req, ERR_BAD_REQUEST,
                        "The body may only give 'grace': a duration such as \"24h\" of at most "
                        "30 days.",
                        "grace", NULL);
        return false;
    }
    *grace_s = ms / 1000;
    return true;
}

/* The key an op is about, as the store has it now: the change made and written. */
static void op_found(enum ks_result r, struct rt_key *prev, int64_t last_used, void *arg)
{
    struct admin_op *op = arg;
    struct http_req *req = op_detach(op); /* answers below may free it */
    const struct config *cfg = op->gen->cfg;
    const struct cfg_key *file = cfg_find_key(cfg, op->change.name);
    const struct cfg_key *k = file ? file : prev ? &prev->k : NULL;
    struct worker *w = op->w;
    if (!req || r != KS_OK || !k || !team_sees(&op->who, k)) {
        if (req && r != KS_OK)
            store_failed(req, r);
        else if (req)
            http_send_error(req, ERR_NOT_FOUND, "No key of that name.", NULL, NULL);
        keys_unref(prev);
        return (void)op_end(op);
    }
    if (file && prev) { /* shadowed by the file's key of that name: never used */
        keys_unref(prev);
        prev = NULL;
    }
    if (op->kind == OP_GET) {
        admin_key_view_fn view = op->view;
        struct generation *gen = gen_ref(op->gen); /* the view's key lives in it */
        op_end(op);
        view(w, req, gen, k, prev, last_used);
        return gen_unref(gen);
    }
    if (file) {
        op_end(op);
        return http_send_error(req, ERR_CONFLICT,
                               "This key is in the configuration file: change it there.", NULL,
                               NULL);
    }
    if (op->kind == OP_DELETE) {
        op->k = prev;
        op_attach(op, req);
        return keystore_delete(w->keys, &w->limiter, prev, op_written, op);
    }
    op->k = changed(cfg, req, &op->who, prev, &op->change);
    if (op->k && op->kind == OP_ROTATE && !keys_new_secret(op->secret, op->k->k.digest)) {
        keys_unref(op->k);
        op->k = NULL;
        http_send_error(req, ERR_INTERNAL, "No randomness for a secret.", NULL, NULL);
    }
    if (op->k && op->kind == OP_ROTATE) {
        memset(op->k->old_digest, 0, 32);
        op->k->old_until = 0;
        if (op->grace_s) {
            memcpy(op->k->old_digest, prev->k.digest, 32);
            op->k->old_until = op->k->updated_at + op->grace_s;
        }
    }
    keys_unref(prev);
    if (!op->k) /* answered */
        return (void)op_end(op);
    op_attach(op, req);
    keystore_replace(w->keys, &w->limiter, op->k, op_written, op);
}

/* Looks the key up (the file's, else the store's), then goes on with op. */
static void find_then(struct admin_op *op, struct sl_str name)
{
    snprintf(op->change.name, sizeof(op->change.name), "%.*s",
             (int)SL_MIN(name.len, CFG_NAME_MAX), name.p);
    if (name.len > CFG_NAME_MAX || !cfg_name_valid(op->change.name))
        return op_found(KS_OK, NULL, 0, op);
    keystore_get(op->w->keys, &op->w->limiter, op->gen->cfg, op->change.name, op_found, op);
}

void admin_keys_get(struct worker *w, struct http_req *req, const struct admin_who *who,
                    struct sl_str name, admin_key_view_fn view)
{
    struct admin_op *op = op_new(w, req, who, OP_GET);
    op->view = view;
    find_then(op, name);
}

void admin_keys_change(struct worker *w, struct http_req *req, const struct admin_who *who,
                       struct sl_str name, struct sl_str action)
{
    bool rot = sl_str_eq(action, "rotate");
    if (action.len && !rot)
        return http_send_error(req, ERR_NOT_FOUND, "Unknown action (rotate).", NULL, NULL);
    if (rot && !sl_str_eq(req->method, "POST"))
        return http_send_error(req, ERR_METHOD, "Use POST.", NULL, "Allow: POST\r\n");
    if (!rot && !sl_str_eq(req->method, "PATCH") && !sl_str_eq(req->method, "DELETE"))
        return http_send_error(req, ERR_METHOD, "Use GET, PATCH or DELETE.", NULL,
                               "Allow: GET, PATCH, DELETE\r\n");
    if (!store_ready(w, req))
        return;
    struct keys_change c = { .disabled = -1 };
    int64_t grace = 0;
    bool patch = sl_str_eq(req->method, "PATCH");
    if ((patch && !read_change(req, &c)) || (rot && !read_grace(req, &grace)))
        return;
    if (patch && c.has_name &&
        (name.len != strlen(c.name) || memcmp(name.p, c.name, name.len) != 0)) {
        keys_change_free(&c);
        return http_send_error(req, ERR_BAD_REQUEST,
                               "A key's name cannot change; make a new key instead.", "name", NULL);
    }
    struct admin_op *op = op_new(w, req, who, rot ? OP_ROTATE : patch ? OP_UPDATE : OP_DELETE);
    op->change = c;
    op->grace_s = grace;
    find_then(op, name);
}

/* ---- the list ----------------------------------------------------------------------- */

/* team=, cursor=, limit= of the query (names plain: no %-escapes); false if bad. */
static bool read_query(struct sl_str q, struct page_query *pq)
{
    memset(pq, 0, sizeof(*pq));
    pq->limit = PAGE_DEFAULT;
    while (q.len) {
        const char *amp = memchr(q.p, '&', q.len);
        struct sl_str part = { q.p, amp ? (size_t)(amp - q.p) : q.len };
        q = amp ? (struct sl_str){ amp + 1, q.len - part.len - 1 } : (struct sl_str){ "", 0 };
        const char *eq = memchr(part.p, '=', part.len);
        if (!eq)
            return false;
        struct sl_str k = { part.p, (size_t)(eq - part.p) };
        char v[CFG_NAME_MAX + 1];
        size_t vlen = part.len - k.len - 1;
        if (vlen > CFG_NAME_MAX)
            return false;
        memcpy(v, eq + 1, vlen);
        v[vlen] = '\0';
        int64_t n;
        if (sl_str_eq(k, "team") && cfg_name_valid(v))
            memcpy(pq->team, v, vlen + 1);
        else if (sl_str_eq(k, "cursor") && cfg_name_valid(v))
            memcpy(pq->cursor, v, vlen + 1);
        else if (sl_str_eq(k, "limit") && sl_parse_int(v, &n) && n >= 1 && n <= PAGE_MAX)
            pq->limit = (int)n;
        else
            return false;
    }
    return true;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool in_team(const struct cfg_key *k, const char *team)
{
    return !*team || (k->team && strcmp(k->team->name, team) == 0);
}

/* A page: the file's keys and the store's after the cursor, merged in name
 * order, limit names looked at, those of the team (if asked) shown. */
static void listed(int nrt, struct rt_key **rt, void *arg)
{
    struct admin_op *op = arg;
    struct http_req *req = op_detach(op);
    const struct config *cfg = op->gen->cfg;
    const struct page_query *pq = &op->pq;
    if (req && nrt < 0)
        store_failed(req, KS_IO);
    if (!req || nrt < 0) {
        op_end(op);
        return;
    }
    const char **file = sl_malloc(sizeof(*file) * (size_t)(cfg->nkeys + 1));
    int nfile = 0;
    for (int i = 0; i < cfg->nkeys; i++)
        if (strcmp(cfg->keys[i].name, pq->cursor) > 0)
            file[nfile++] = cfg->keys[i].name;
    qsort(file, (size_t)nfile, sizeof(*file), by_name);
    struct sl_buf b = { 0 };
    sl_buf_appends(&b, "{\"object\":\"list\",\"data\":[");
    int looked = 0, shown = 0, fi = 0, ri = 0;
    const char *last = NULL;
    while ((fi < nfile || ri < nrt) && looked < pq->limit) {
        bool from_file = ri >= nrt || (fi < nfile && strcmp(file[fi], rt[ri]->k.name) <= 0);
        const struct rt_key *r = from_file ? NULL : rt[ri++];
        const struct cfg_key *k = from_file ? cfg_find_key(cfg, file[fi++]) : &r->k;
        last = k->name;
        looked++;
        if (r && cfg_find_key(cfg, k->name))
            continue; /* shadowed by the file's key of that name: never used */
        if (!in_team(k, pq->team))
            continue;
        sl_buf_appends(&b, shown++ ? ",{" : "{");
        view_members(k, r, 0, &b);
        close_object(&b);
    }
    bool more = fi < nfile || ri < nrt;
    sl_buf_printf(&b, "],\"has_more\":%s,\"next_cursor\":", more ? "true" : "false");
    if (more && last)
        sl_buf_json_string(&b, last, strlen(last));
    else
        sl_buf_appends(&b, "null");
    sl_buf_appends(&b, "}\n");
    for (int i = 0; i < nrt; i++)
        keys_unref(rt[i]);
    free(rt);
    free(file);
    respond(req, 200, &b);
    op_end(op);
}

static void list(struct worker *w, struct http_req *req, const struct admin_who *who)
{
    struct page_query pq;
    if (!read_query(req->query, &pq))
        return http_send_error(req, ERR_BAD_REQUEST,
                               "The query may give team=NAME, cursor=NAME and limit=1..1000.", NULL,
                               NULL);
    if (who->team)
        snprintf(pq.team, sizeof(pq.team), "%s", who->team->name);
    struct admin_op *op = op_new(w, req, who, OP_LIST);
    op->pq = pq;
    keystore_page(w->keys, &w->limiter, op->gen->cfg, pq.cursor, pq.limit + 1, listed, op);
}

void admin_keys_collection(struct worker *w, struct http_req *req, const struct admin_who *who)
{
    if (sl_str_eq(req->method, "POST"))
        return create(w, req, who);
    if (sl_str_eq(req->method, "GET"))
        return list(w, req, who);
    http_send_error(req, ERR_METHOD, "Use GET or POST.", NULL, "Allow: GET, POST\r\n");
}
