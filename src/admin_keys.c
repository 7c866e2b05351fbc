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
    mx_runtime_keys(keystore_count(w->keys));
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

/* ---- finding and showing keys ------------------------------------------------------ */

static bool team_sees(const struct admin_who *who, const struct cfg_key *k)
{
    return !who->team || k->team == who->team;
}

bool admin_keys_find(struct worker *w, struct http_req *req, const struct admin_who *who,
                     struct sl_str name, const struct cfg_key **k, struct rt_key **rt)
{
    const struct config *cfg = w->gen->cfg;
    char n[CFG_NAME_MAX + 1];
    snprintf(n, sizeof(n), "%.*s", (int)SL_MIN(name.len, CFG_NAME_MAX), name.p);
    *rt = NULL;
    *k = name.len <= CFG_NAME_MAX ? cfg_find_key(cfg, n) : NULL;
    if (!*k && name.len <= CFG_NAME_MAX && keystore_get(w->keys, cfg, n, rt) == KS_OK)
        *k = &(*rt)->k;
    if (*k && team_sees(who, *k))
        return true;
    keys_unref(*rt); /* another team's is as good as none */
    *rt = NULL;
    http_send_error(req, ERR_NOT_FOUND, "No key of that name.", NULL, NULL);
    return false;
}

void admin_keys_view(struct worker *w, const struct cfg_key *k, const struct rt_key *rt,
                     struct sl_buf *out)
{
    sl_buf_appends(out, "\"name\":");
    sl_buf_json_string(out, k->name, strlen(k->name));
    sl_buf_printf(out, ",\"source\":\"%s\",", rt ? "runtime" : "config");
    keys_settings_json(k, out);
    if (rt)
        keys_runtime_json(rt, out);
    int64_t used = keystore_last_used(w->keys, k->name);
    if (used) {
        char when[21];
        sl_fmt_time(used, when);
        sl_buf_printf(out, "\"last_used_at\":\"%s\",", when);
    } else {
        sl_buf_appends(out, "\"last_used_at\":null,");
    }
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
    if (keystore_on(w->keys))
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
                        "Runtime keys cannot be written right now; nothing was changed.", NULL,
                        "Retry-After: 1\r\n");
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
static struct rt_key *changed(struct worker *w, struct http_req *req, const struct admin_who *who,
                              const struct rt_key *prev, const struct keys_change *c)
{
    char msg[256], p[32];
    struct rt_key *k = keys_apply(w->gen->cfg, prev, c, msg, sizeof(msg));
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

static void answer_key(struct worker *w, struct http_req *req, int status, const struct rt_key *k,
                       const char *secret)
{
    struct sl_buf b = { 0 };
    sl_buf_appends(&b, "{");
    if (secret)
        sl_buf_printf(&b, "\"key\":\"%s\",", secret);
    admin_keys_view(w, &k->k, k, &b);
    close_object(&b);
    sl_buf_appends(&b, "\n");
    respond(req, status, &b);
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
    struct rt_key *k = changed(w, req, who, NULL, &c);
    char secret[KEYS_SECRET_LEN + 1];
    if (k && !keys_new_secret(secret, k->k.digest)) {
        keys_unref(k);
        k = NULL;
        http_send_error(req, ERR_INTERNAL, "No randomness for a secret.", NULL, NULL);
    }
    if (!k) {
        keys_change_free(&c);
        return;
    }
    k->created_at = k->updated_at;
    snprintf(k->created_by, sizeof(k->created_by), "%s", who->id);
    enum ks_result r = keystore_create(w->keys, k);
    if (r == KS_OK) {
        audit(w, who, "create", k->k.name, &c);
        answer_key(w, req, 201, k, secret);
    } else {
        store_failed(req, r);
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    keys_change_free(&c);
    keys_unref(k);
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

static void rotate(struct worker *w, struct http_req *req, const struct admin_who *who,
                   struct rt_key *prev)
{
    int64_t grace;
    if (!read_grace(req, &grace))
        return;
    struct keys_change none = { .disabled = -1 };
    struct rt_key *k = changed(w, req, who, prev, &none);
    if (!k)
        return;
    char secret[KEYS_SECRET_LEN + 1];
    if (!keys_new_secret(secret, k->k.digest)) {
        keys_unref(k);
        return http_send_error(req, ERR_INTERNAL, "No randomness for a secret.", NULL, NULL);
    }
    memset(k->old_digest, 0, 32);
    k->old_until = 0;
    if (grace) {
        memcpy(k->old_digest, prev->k.digest, 32);
        k->old_until = k->updated_at + grace;
    }
    enum ks_result r = keystore_replace(w->keys, prev, k);
    if (r == KS_OK) {
        audit(w, who, "rotate", k->k.name, NULL);
        answer_key(w, req, 200, k, secret);
    } else {
        store_failed(req, r);
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    keys_unref(k);
}

static void update(struct worker *w, struct http_req *req, const struct admin_who *who,
                   struct rt_key *prev)
{
    struct keys_change c;
    if (!read_change(req, &c))
        return;
    if (c.has_name && strcmp(c.name, prev->k.name) != 0) {
        keys_change_free(&c);
        return http_send_error(req, ERR_BAD_REQUEST,
                               "A key's name cannot change; make a new key instead.", "name", NULL);
    }
    struct rt_key *k = changed(w, req, who, prev, &c);
    if (k) {
        enum ks_result r = keystore_replace(w->keys, prev, k);
        if (r == KS_OK) {
            audit(w, who, "update", k->k.name, &c);
            answer_key(w, req, 200, k, NULL);
        } else {
            store_failed(req, r);
        }
        keys_unref(k);
    }
    keys_change_free(&c);
}

static void revoke_key(struct worker *w, struct http_req *req, const struct admin_who *who,
                   struct rt_key *k)
{
    enum ks_result r = keystore_delete(w->keys, k);
    if (r != KS_OK)
        return store_failed(req, r);
    audit(w, who, "delete", k->k.name, NULL);
    struct sl_buf b = { 0 };
    sl_buf_appends(&b, "{\"name\":");
    sl_buf_json_string(&b, k->k.name, strlen(k->k.name));
    sl_buf_appends(&b, ",\"deleted\":true}\n");
    respond(req, 200, &b);
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
    const struct cfg_key *k;
    struct rt_key *rt;
    if (!admin_keys_find(w, req, who, name, &k, &rt))
        return;
    if (!rt)
        return http_send_error(req, ERR_CONFLICT,
                               "This key is in the configuration file: change it there.", NULL,
                               NULL);
    if (rot)
        rotate(w, req, who, rt);
    else if (sl_str_eq(req->method, "PATCH"))
        update(w, req, who, rt);
    else
        revoke_key(w, req, who, rt);
    keys_unref(rt);
}

/* ---- the list ----------------------------------------------------------------------- */

struct page_query {
    char team[CFG_NAME_MAX + 1];
    char cursor[CFG_NAME_MAX + 1];
    int limit;
};

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

static void list(struct worker *w, struct http_req *req, const struct admin_who *who)
{
    struct page_query pq;
    if (!read_query(req->query, &pq))
        return http_send_error(req, ERR_BAD_REQUEST,
                               "The query may give team=NAME, cursor=NAME and limit=1..1000.", NULL,
                               NULL);
    if (who->team)
        snprintf(pq.team, sizeof(pq.team), "%s", who->team->name);
    const struct config *cfg = w->gen->cfg;
    const char **file = sl_malloc(sizeof(*file) * (size_t)(cfg->nkeys + 1));
    int nfile = 0;
    for (int i = 0; i < cfg->nkeys; i++)
        if (strcmp(cfg->keys[i].name, pq.cursor) > 0)
            file[nfile++] = cfg->keys[i].name;
    qsort(file, (size_t)nfile, sizeof(*file), by_name);
    char **rt_names;
    int nrt = keystore_names(w->keys, pq.cursor, 1 << 30, &rt_names);
    nrt = SL_MAX(nrt, 0);
    struct sl_buf b = { 0 };
    sl_buf_appends(&b, "{\"object\":\"list\",\"data\":[");
    int shown = 0, fi = 0, ri = 0;
    const char *looked = NULL; /* the last name taken: both lists go in name order */
    while ((fi < nfile || ri < nrt) && shown < pq.limit) {
        bool from_file = ri >= nrt || (fi < nfile && strcmp(file[fi], rt_names[ri]) <= 0);
        const char *name = from_file ? file[fi++] : rt_names[ri++];
        looked = name;
        if (!from_file && cfg_find_key(cfg, name))
            continue; /* shadowed by the file's key of that name: never used */
        const struct cfg_key *k = from_file ? cfg_find_key(cfg, name) : NULL;
        struct rt_key *rt = NULL;
        if (!from_file && keystore_get(w->keys, cfg, name, &rt) == KS_OK)
            k = &rt->k;
        if (k && in_team(k, pq.team)) {
            sl_buf_appends(&b, shown++ ? ",{" : "{");
            admin_keys_view(w, k, rt, &b);
            close_object(&b);
        }
        keys_unref(rt);
    }
    bool more = fi < nfile || ri < nrt;
    sl_buf_printf(&b, "],\"has_more\":%s,\"next_cursor\":", more ? "true" : "false");
    if (more && looked)
        sl_buf_json_string(&b, looked, strlen(looked));
    else
        sl_buf_appends(&b, "null");
    sl_buf_appends(&b, "}\n");
    for (int i = 0; i < nrt; i++)
        free(rt_names[i]);
    free(rt_names);
    free(file);
    respond(req, 200, &b);
}

void admin_keys_collection(struct worker *w, struct http_req *req, const struct admin_who *who)
{
    if (sl_str_eq(req->method, "POST"))
        return create(w, req, who);
    if (sl_str_eq(req->method, "GET"))
        return list(w, req, who);
    http_send_error(req, ERR_METHOD, "Use GET or POST.", NULL, "Allow: GET, POST\r\n");
}
