/* GET /v1/models and /v1/models/{id}: the models a key may call. Backends
 * that list their models give those names; a `models = *` backend gives what
 * its upstream lists at GET {url}/models, fetched by sluice and kept for the
 * backend's models_cache, per worker (no locks, at most one fetch per worker
 * and backend at a time is not promised: a second request may fetch too).
 * Everything is merged, deduplicated and filtered by the key's allow-list. */
#include "sluice/generation.h"
#include "sluice/models.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/auth.h"
#include "sluice/config.h"
#include "sluice/forward.h"
#include "sluice/http.h"
#include "sluice/keys.h"
#include "sluice/keystore.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/upstream.h"
#include "sluice/worker-t.h"

#define FETCH_TIMEOUT_MS 10000 /* a models list that takes longer is not waited for */

/* One backend's upstream list, as last fetched. */
struct upstream_list {
    char *backend; /* its name: lists outlive reloads that keep the name */
    char **ids;
    int n;
    int64_t fetched_ms; /* 0: never */
    struct upstream_list *next;
};

struct models_request;

struct models_cache {
    struct upstream_list *lists;
    struct models_request *running; /* requests waiting for fetches */
};

struct models_cache *models_cache_new(void)
{
    return sl_calloc(1, sizeof(struct models_cache));
}

static void list_clear(struct upstream_list *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->ids[i]);
    free(l->ids);
    l->ids = NULL;
    l->n = 0;
}

static void request_free(struct models_request *mr);

void models_cache_free(struct models_cache *c)
{
    if (!c)
        return;
    while (c->running)
        request_free(c->running); /* its client is gone already (worker shutdown) */
    while (c->lists) {
        struct upstream_list *l = c->lists;
        c->lists = l->next;
        list_clear(l);
        free(l->backend);
        free(l);
    }
    free(c);
}

static struct upstream_list *list_for(struct models_cache *c, const char *backend)
{
    for (struct upstream_list *l = c->lists; l; l = l->next)
        if (strcmp(l->backend, backend) == 0)
            return l;
    struct upstream_list *l = sl_calloc(1, sizeof(*l));
    l->backend = sl_strdup(backend);
    l->next = c->lists;
    c->lists = l;
    return l;
}

/* ---- one request ------------------------------------------------------------ */

struct fetch {
    struct models_request *mr;
    int backend;
    struct up_transfer *xfer;
    struct curl_slist *headers;
    char *url;
    struct sl_buf body;
};

struct models_request {
    struct models_request *prev, *next; /* in the cache's running list */
    struct worker *w;
    struct http_req *req; /* NULL once the client left */
    struct generation *gen;
    const struct cfg_key *key;
    struct rt_key *rt; /* a runtime key's record (key is &rt->k), referenced */
    char *id; /* /v1/models/{id}, or NULL for the list */
    struct fetch *fetches;
    int nfetches, running;
};

static void answer(struct models_request *mr);

/* A *-backend's list, read from OpenAI's {"data":[{"id":...}]}. */
static bool parse_list(const char *body, size_t len, struct upstream_list *out)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsArray(data)) {
        cJSON_Delete(root);
        return false;
    }
    list_clear(out);
    const cJSON *m;
    cJSON_ArrayForEach(m, data) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (!cJSON_IsString(id) || !id->valuestring[0] || strlen(id->valuestring) > 256)
            continue;
        out->ids = sl_realloc(out->ids, sizeof(char *) * (size_t)(out->n + 1));
        out->ids[out->n++] = sl_strdup(id->valuestring);
    }
    cJSON_Delete(root);
    return true;
}

static void fetch_free(struct fetch *f)
{
    if (f->xfer)
        up_cancel(f->xfer);
    curl_slist_free_all(f->headers);
    free(f->url);
    sl_buf_free(&f->body);
}

static void request_free(struct models_request *mr)
{
    struct models_cache *c = mr->w->models;
    if (mr->prev)
        mr->prev->next = mr->next;
    else if (c->running == mr)
        c->running = mr->next;
    if (mr->next)
        mr->next->prev = mr->prev;
    for (int i = 0; i < mr->nfetches; i++)
        fetch_free(&mr->fetches[i]);
    free(mr->fetches);
    free(mr->id);
    keys_unref(mr->rt);
    gen_unref(mr->gen);
    free(mr);
}

static size_t on_data(struct up_transfer *t, const char *data, size_t len, void *arg)
{
    (void)t;
    struct fetch *f = arg;
    if (f->body.len + len > (4u << 20))
        return 0; /* a model list is not that large */
    sl_buf_append(&f->body, data, len);
    return len;
}

static void on_done(struct up_transfer *t, enum up_end how, void *arg)
{
    struct fetch *f = arg;
    struct models_request *mr = f->mr;
    const struct cfg_backend *be = &mr->gen->cfg->backends[f->backend];
    struct upstream_list *l = list_for(mr->w->models, be->name);
    int status = how == UP_ANSWERED ? up_status(t) : 0;
    if (status == 200 && parse_list(f->body.data, f->body.len, l))
        l->fetched_ms = sl_now_ms();
    else /* the last good list stays; the next request tries again */
        log_warn("backend %s: its model list could not be fetched (status %d%s%s); %s", be->name,
                 status, status ? "" : ", ", status ? "" : up_error(t),
                 l->fetched_ms ? "the last one is used" : "its models are not listed");
    f->xfer = NULL; /* freed by the upstream module after this */
    if (--mr->running == 0) {
        if (mr->req)
            answer(mr);
        request_free(mr);
    }
}

/* A GET: sending it again is harmless. */
static const struct up_callbacks fetch_cb = { up_ignore_headers, on_data, on_done,
                                              up_resend_always };

static void on_client_abort(struct http_req *req)
{
    struct models_request *mr = req->owner;
    mr->req = NULL; /* the fetches go on: their lists are worth keeping */
}

/* GET {url}/models with the backend's credential (azure: /openai/models). */
static bool start_fetch(struct models_request *mr, int backend)
{
    const struct cfg_backend *be = &mr->gen->cfg->backends[backend];
    struct fetch *f = &mr->fetches[mr->nfetches];
    *f = (struct fetch){ mr, backend, NULL, NULL, NULL, { 0 } };
    struct sl_buf url = { 0 }, cred = { 0 };
    if (be->type == BACKEND_AZURE)
        sl_buf_printf(&url, "%s/openai/models?api-version=%s", be->url, be->api_version);
    else
        sl_buf_printf(&url, "%s/models", be->url);
    f->url = url.data;
    f->headers = curl_slist_append(NULL, "Accept: application/json");
    if (be->type == BACKEND_ANTHROPIC)
        f->headers = curl_slist_append(f->headers, FWD_ANTHROPIC_VERSION);
    if (be->api_key) {
        sl_buf_printf(&cred, "%s%s", fwd_credential_header(be), be->api_key);
        f->headers = curl_slist_append(f->headers, cred.data);
        explicit_bzero(cred.data, cred.len);
        sl_buf_free(&cred);
    }
    struct up_request ur = { .method = UP_GET,
                             .url = f->url,
                             .headers = f->headers,
                             .connect_timeout_ms = (long)be->connect_timeout_ms,
                             .timeout_ms = (long)SL_MIN(be->timeout_ms, FETCH_TIMEOUT_MS),
                             .keepalive_s = (long)(be->keepalive_timeout_ms / 1000),
                             .ca_file = be->ca_file,
                             .client_cert = be->client_cert,
                             .client_key = be->client_key,
                             .insecure = !be->tls_verify };
    f->xfer = up_start(mr->w->up, &ur, &fetch_cb, f);
    if (!f->xfer) {
        fetch_free(f);
        return false;
    }
    mr->nfetches++;
    mr->running++;
    return true;
}

/* ---- the answer --------------------------------------------------------------- */

/* One model in OpenAI's shape, or Anthropic's (type, display_name, created_at). */
static void model_entry(struct sl_buf *b, const char *name, bool anthropic, bool first)
{
    if (!first)
        sl_buf_append(b, ",", 1);
    sl_buf_appends(b, anthropic ? "{\"type\":\"model\",\"id\":" : "{\"id\":");
    sl_buf_json_string(b, name, strlen(name));
    if (anthropic) {
        sl_buf_appends(b, ",\"display_name\":");
        sl_buf_json_string(b, name, strlen(name));
        sl_buf_appends(b, ",\"created_at\":\"1970-01-01T00:00:00Z\"}");
    } else {
        sl_buf_appends(b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"sluice\"}");
    }
}

/* The names, in order of first appearance, without repeats: found through a
 * hash index, so an upstream listing 20,000 ids costs 20,000 lookups, not
 * 200 million comparisons. */
struct names {
    const char **v;
    int n;
    struct sl_names seen;
};

static void add_name(struct names *ns, const char *name)
{
    if (!sl_names_add(&ns->seen, name, strlen(name), ns->n, NULL))
        return; /* already there */
    ns->v = sl_grow(ns->v, sizeof(char *), ns->n);
    ns->v[ns->n++] = name;
}

/* What the key may call: [model] names (aliases and models with fallbacks
 * answer even when no backend lists the name itself), names listed by
 * backends, then those the upstreams of * backends list, then names the key
 * lists that a * backend serves. */
static void collect(struct models_request *mr, struct names *ns)
{
    const struct config *c = mr->gen->cfg;
    const struct cfg_models *allowed = &mr->key->models;
    for (int i = 0; i < c->nmodels; i++) {
        const struct cfg_model *m = &c->models[i];
        const char *up = m->upstream ? m->upstream : m->name;
        if (cfg_models_match(allowed, m->name, strlen(m->name)) &&
            (m->fallbacks.n || pool_serves(mr->gen->pool, up, strlen(up))))
            add_name(ns, m->name);
    }
    for (int i = 0; i < c->nbackends; i++) {
        const struct cfg_models *m = &c->backends[i].models;
        for (int j = 0; j < m->n; j++)
            if (cfg_models_match(allowed, m->names[j], strlen(m->names[j])))
                add_name(ns, m->names[j]);
    }
    for (int i = 0; i < c->nbackends; i++) {
        if (!c->backends[i].models.any)
            continue;
        const struct upstream_list *l = list_for(mr->w->models, c->backends[i].name);
        for (int j = 0; j < l->n; j++)
            if (cfg_models_match(allowed, l->ids[j], strlen(l->ids[j])))
                add_name(ns, l->ids[j]);
    }
    for (int j = 0; j < allowed->n; j++)
        if (pool_serves(mr->gen->pool, allowed->names[j], strlen(allowed->names[j])))
            add_name(ns, allowed->names[j]);
}

/* The list in OpenAI's shape, or Anthropic's (one page: has_more false). */
static void model_list(struct sl_buf *b, const struct names *ns, bool anthropic)
{
    sl_buf_appends(b, anthropic ? "{\"data\":[" : "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < ns->n; i++)
        model_entry(b, ns->v[i], anthropic, i == 0);
    sl_buf_appends(b, "]");
    if (anthropic) {
        sl_buf_appends(b, ",\"has_more\":false,\"first_id\":");
        if (ns->n)
            sl_buf_json_string(b, ns->v[0], strlen(ns->v[0]));
        else
            sl_buf_appends(b, "null");
        sl_buf_appends(b, ",\"last_id\":");
        if (ns->n)
            sl_buf_json_string(b, ns->v[ns->n - 1], strlen(ns->v[ns->n - 1]));
        else
            sl_buf_appends(b, "null");
    }
    sl_buf_appends(b, "}");
}

static void answer(struct models_request *mr)
{
    static const char json_ct[] = "Content-Type: application/json\r\n";
    struct names ns = { NULL, 0, { 0 } };
    collect(mr, &ns);
    struct http_req *req = mr->req;
    mr->req = NULL;
    req->owner = NULL;
    req->on_abort = NULL;
    /* Anthropic's SDKs send anthropic-version: they get its list and errors */
    bool anthropic = http_header(req, "anthropic-version") != NULL;
    if (anthropic)
        req->dialect = DIALECT_ANTHROPIC;
    struct sl_buf b = { 0 };
    if (mr->id) {
        int found = sl_names_find(&ns.seen, mr->id, strlen(mr->id));
        if (found < 0) {
            free(ns.v);
            sl_names_free(&ns.seen);
            return http_send_error(req, ERR_MODEL_NOT_FOUND,
                                   "The model does not exist or you do not have access to it.",
                                   "model", NULL);
        }
        model_entry(&b, ns.v[found], anthropic, true);
    } else {
        model_list(&b, &ns, anthropic);
    }
    sl_buf_append(&b, "\n", 1);
    http_respond(req, 200, json_ct, sizeof(json_ct) - 1, b.data, b.len);
    sl_buf_free(&b);
    free(ns.v);
    sl_names_free(&ns.seen);
}

static void models_for_key(struct worker *w, struct http_req *req, const struct cfg_key *key,
                           struct rt_key *rt);

/* No usable key: answered (401, or 503 when it cannot be checked now). */
static void refuse(struct http_req *req, enum ks_found found)
{
    if (found == KS_BUSY || found == KS_DOWN || found == KS_PENDING)
        return http_send_error(req, found == KS_BUSY ? ERR_KEYS_BUSY : ERR_KEY_STORE,
                               "The API key cannot be checked right now; try again shortly.",
                               NULL, "Retry-After: 1\r\n");
    http_send_error(req, ERR_INVALID_API_KEY, "Incorrect or missing API key.", NULL, NULL);
}

static void key_fetched(enum ks_found found, struct rt_key *rt, struct http_req *req, void *arg)
{
    if (found != KS_FOUND)
        return refuse(req, found);
    models_for_key(arg, req, &rt->k, rt);
}

void models_handle(struct worker *w, struct http_req *req)
{
    struct sl_str secret;
    if (auth_presented_key(req, &secret) != AUTH_ONE)
        return refuse(req, KS_UNKNOWN);
    uint8_t digest[32];
    sl_sha256(secret.p, secret.len, digest);
    const struct cfg_key *key = auth_lookup_digest(w->gen->auth, digest);
    if (key)
        return models_for_key(w, req, key, NULL);
    struct rt_key *rt = NULL;
    enum ks_found found = keystore_find(w->keys, &w->limiter, w->gen->cfg, digest, &rt);
    if (found == KS_FOUND)
        return models_for_key(w, req, &rt->k, rt);
    if (found != KS_PENDING)
        return refuse(req, found);
    keystore_fetch_for(w->keys, &w->limiter, w->gen->cfg, digest, req, key_fetched, w);
}

/* The models the key may call (rt: its record if it is a runtime key, referenced). */
static void models_for_key(struct worker *w, struct http_req *req, const struct cfg_key *key,
                           struct rt_key *rt)
{
    const char *why = auth_refusal(key, rt, sl_wall_us() / 1000000);
    if (why) {
        keys_unref(rt);
        return http_send_error(req, ERR_INVALID_API_KEY, why, NULL, NULL);
    }
    const struct config *c = w->gen->cfg;
    struct models_request *mr = sl_calloc(1, sizeof(*mr));
    mr->w = w;
    mr->req = req;
    mr->gen = gen_ref(w->gen);
    mr->key = key;
    mr->rt = rt;
    if (req->path.len > 11) /* /v1/models/{id}: the path is plain (srv_head) */
        mr->id = sl_strndup(req->path.p + 11, req->path.len - 11);
    mr->fetches = sl_calloc((size_t)c->nbackends, sizeof(struct fetch));
    int64_t now = sl_now_ms();
    for (int i = 0; i < c->nbackends; i++) {
        const struct cfg_backend *be = &c->backends[i];
        const struct upstream_list *l = list_for(w->models, be->name);
        if (be->models.any && (!l->fetched_ms || now - l->fetched_ms >= be->models_cache_ms))
            start_fetch(mr, i);
    }
    if (mr->running) {
        req->owner = mr;
        req->on_abort = on_client_abort;
        mr->next = w->models->running;
        if (mr->next)
            mr->next->prev = mr;
        w->models->running = mr;
        return; /* answered when the last fetch ends */
    }
    answer(mr);
    request_free(mr);
}
