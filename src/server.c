/* Routing of client requests and validation of API bodies. Everything under
 * /v1/ is the proxy's; the rest is answered here. */
#include "sluice/server.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sluice/admin.h"
#include "sluice/auth.h"
#include "sluice/chat_body.h"
#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/limit.h"
#include "sluice/metrics.h"
#include "sluice/models.h"
#include "sluice/multipart.h"
#include "sluice/pool.h"
#include "sluice/proxy.h"
#include "sluice/tokens.h"
#include "sluice/util.h"
#include "sluice/worker.h"

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
    bool redis_up = !w->limiter.redis || lim_redis_up(w->limiter.redis);
    bool redis_ok = redis_up || g->cfg->redis.on_error != REDIS_ON_ERROR_DENY;
    bool backend_ok = false;
    for (int i = 0; i < g->cfg->nbackends && !backend_ok; i++)
        backend_ok = pool_state(g->pool, i) != BREAKER_OPEN;
    char body[128];
    snprintf(body, sizeof(body), "{\"status\":\"%s\",\"redis\":\"%s\",\"backends\":\"%s\"}\n",
             redis_ok && backend_ok ? "ready" : "not ready",
             !w->limiter.redis ? "not configured" : redis_up ? "up" : "down",
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
    mx_render(&out, w->gen);
    http_respond(req, 200, ct, sizeof(ct) - 1, out.data, out.len);
    sl_buf_free(&out);
}

/* ---- API paths ----------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Letters, digits and - . _ ~ : (a table: this runs over every API path). */
static const bool segment_char[256] = {
    SL_ALNUM_CHARS, ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1, [':'] = 1,
};

bool srv_safe_segment(const char *p, size_t len)
{
    if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!segment_char[(unsigned char)p[i]])
            return false;
    return true;
}

bool srv_plain_api_path(struct http_req *req)
{
    char *p = (char *)req->path.p;
    size_t n = req->path.len;
    if (memchr(p, '%', n)) {
        /* Decoded in place: the path is the request's own copy of its head,
         * and decoding never makes it longer. */
        size_t out = 0;
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            if (c == '%') {
                int hi = i + 2 < n ? hex_value(p[i + 1]) : -1;
                int lo = hi >= 0 ? hex_value(p[i + 2]) : -1;
                if (lo < 0)
                    return false;
                c = (char)(hi * 16 + lo);
                i += 2;
            }
            p[out++] = c;
        }
        req->path.len = n = out;
    }
    if (n < 5 || n > SRV_MAX_API_PATH || memcmp(p, "/v1/", 4) != 0)
        return false;
    size_t seg = 4;
    for (size_t i = 4; i < n; i++) {
        if (p[i] == '/') {
            if (!srv_safe_segment(p + seg, i - seg))
                return false;
            seg = i + 1;
        } else if (!segment_char[(unsigned char)p[i]]) {
            return false;
        }
    }
    return srv_safe_segment(p + seg, n - seg);
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

/* With admin_listen set, the operator endpoints are served only there, and
 * only they (and /healthz) are; without it, everything is on listen. */
static bool served_here(const struct worker *w, const struct http_req *req)
{
    if (!w->gen->cfg->server.admin_listen.n || sl_str_eq(req->path, "/healthz"))
        return true;
    struct sl_str p = req->path;
    bool operator = sl_str_eq(p, "/metrics") || sl_str_eq(p, "/readyz") ||
                    (p.len > 7 && memcmp(p.p, "/admin/", 7) == 0);
    return operator == (req->listener == HTTP_LISTENER_OPERATOR);
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
    bool api = path.len >= 4 && memcmp(path.p, "/v1/", 4) == 0;
    if (api && !srv_plain_api_path(req)) {
        not_a_plain_path(req);
        return false;
    }
    if (api && !(is_models_path(req->path) && is_get(req))) {
        if (srv_is_upload(req))
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

/* ---- validation ------------------------------------------------------------- */

static enum api_endpoint endpoint_of(const char *path, size_t len)
{
    struct sl_str p = { path, len };
    if (sl_str_eq(p, "/v1/chat/completions"))
        return API_CHAT;
    if (sl_str_eq(p, "/v1/completions"))
        return API_COMPLETIONS;
    if (sl_str_eq(p, "/v1/embeddings"))
        return API_EMBEDDINGS;
    if (sl_str_eq(p, "/v1/responses"))
        return API_RESPONSES;
    return API_OTHER;
}

#define FAIL(field, ...)                                                                           \
    do {                                                                                           \
        snprintf(msg, msglen, __VA_ARGS__);                                                        \
        *param = (field);                                                                          \
        return ERR_BAD_REQUEST;                                                                    \
    } while (0)

static bool is_integer(const cJSON *n)
{
    return cJSON_IsNumber(n) && n->valuedouble == (double)(long long)n->valuedouble;
}

void srv_count_output(struct api_call *call, bool is_n, int64_t value)
{
    value = SL_MIN(value, 1000000000); /* beyond any model; keeps products in range */
    if (is_n)
        call->choices = value;
    else
        call->max_tokens = SL_MAX(call->max_tokens, value);
}

/* Optional non-negative integer fields. */
static int check_counts(const cJSON *root, struct api_call *call, char *msg, size_t msglen,
                        const char **param)
{
    static const char *const names[] = { "max_tokens", "max_completion_tokens",
                                         "max_output_tokens", "n" };
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, names[i]);
        if (!v || cJSON_IsNull(v))
            continue;
        if (!is_integer(v) || v->valuedouble < 0)
            FAIL(names[i], "'%s' must be a non-negative integer.", names[i]);
        srv_count_output(call, i == 3, (int64_t)SL_MIN(v->valuedouble, 1e12));
    }
    return 0;
}

static int check_messages(const cJSON *root, char *msg, size_t msglen, const char **param)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!msgs)
        FAIL("messages", "Missing required parameter: 'messages'.");
    if (!cJSON_IsArray(msgs))
        FAIL("messages", "'messages' must be an array.");
    if (cJSON_GetArraySize(msgs) == 0)
        FAIL("messages", "'messages' must contain at least one message.");
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role))
            FAIL("messages", "'messages[%d]' must be an object with a string 'role'.", i);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (content && !cJSON_IsString(content) && !cJSON_IsArray(content) && !cJSON_IsNull(content))
            FAIL("messages", "'messages[%d].content' must be a string or an array.", i);
        i++;
    }
    return 0;
}

static bool is_text_or_list(const cJSON *v)
{
    return cJSON_IsString(v) || cJSON_IsArray(v);
}

/* Checks by endpoint; the body is a parsed object. */
static int check_body(const cJSON *root, struct api_call *call, char *msg, size_t msglen,
                      const char **param)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if ((!model || cJSON_IsNull(model)) && call->endpoint == API_OTHER)
        model = NULL; /* a call that names no model: it goes to the stateful backend */
    else if (!model)
        FAIL("model", "Missing required parameter: 'model'.");
    else if (!cJSON_IsString(model) || !model->valuestring[0])
        FAIL("model", "'model' must be a non-empty string.");
    if (model) {
        call->model = model->valuestring;
        call->model_len = strlen(model->valuestring);
        if (call->model_len > 256)
            FAIL("model", "'model' is longer than 256 characters.");
    }

    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
    if (stream && !cJSON_IsNull(stream) && !cJSON_IsBool(stream))
        FAIL("stream", "'stream' must be a boolean.");
    call->stream = cJSON_IsTrue(stream);
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (opts && !cJSON_IsNull(opts)) {
        if (!cJSON_IsObject(opts))
            FAIL("stream_options", "'stream_options' must be an object.");
        const cJSON *inc = cJSON_GetObjectItemCaseSensitive(opts, "include_usage");
        if (inc && !cJSON_IsBool(inc))
            FAIL("stream_options.include_usage", "'stream_options.include_usage' must be a boolean.");
        call->client_include_usage = cJSON_IsTrue(inc);
    }
    int rc = check_counts(root, call, msg, msglen, param);
    if (rc)
        return rc;

    const cJSON *v;
    switch (call->endpoint) {
    case API_CHAT:
        return check_messages(root, msg, msglen, param);
    case API_COMPLETIONS:
        v = cJSON_GetObjectItemCaseSensitive(root, "prompt");
        if (!v)
            FAIL("prompt", "Missing required parameter: 'prompt'.");
        if (!is_text_or_list(v))
            FAIL("prompt", "'prompt' must be a string or an array.");
        return 0;
    case API_EMBEDDINGS:
        v = cJSON_GetObjectItemCaseSensitive(root, "input");
        if (!v)
            FAIL("input", "Missing required parameter: 'input'.");
        if (!is_text_or_list(v))
            FAIL("input", "'input' must be a string or an array.");
        return 0;
    case API_RESPONSES:
        v = cJSON_GetObjectItemCaseSensitive(root, "input");
        if (v && !is_text_or_list(v))
            FAIL("input", "'input' must be a string or an array.");
        return 0;
    case API_OTHER:
        return 0;
    }
    return 0;
}

int srv_validate_tree(const char *path, size_t path_len, const char *body, size_t len,
                      struct api_call *call, char *msg, size_t msglen, const char **param)
{
    memset(call, 0, sizeof(*call));
    *param = NULL;
    call->endpoint = endpoint_of(path, path_len);
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        FAIL(NULL, "We could not parse the JSON body of your request. The body must be a JSON "
                   "object.");
    }
    call->root = root;
    int rc = check_body(root, call, msg, msglen, param);
    if (!rc)
        call->estimate = tok_estimate_prompt(call, len);
    return rc;
}

/* Resources that live on one upstream account (docs/http.md): every call
 * about them goes to the stateful backend, whatever model it names. */
static bool stateful_path(struct sl_str path)
{
    static const char *const prefixes[] = {
        "/v1/files",     "/v1/batches",     "/v1/uploads",    "/v1/vector_stores",
        "/v1/containers", "/v1/fine_tuning", "/v1/assistants", "/v1/threads",
        "/v1/evals",     "/v1/conversations", "/v1/responses/", "/v1/chat/completions/",
        "/v1/models/",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(prefixes); i++) {
        size_t n = strlen(prefixes[i]);
        if (path.len >= n && memcmp(path.p, prefixes[i], n) == 0 &&
            (prefixes[i][n - 1] == '/' || path.len == n || path.p[n] == '/'))
            return true;
    }
    return false;
}

/* application/json, or any type ending in +json. */
static bool is_json_type(struct sl_str ct)
{
    const char *semi = memchr(ct.p, ';', ct.len);
    size_t n = semi ? (size_t)(semi - ct.p) : ct.len;
    while (n && (ct.p[n - 1] == ' ' || ct.p[n - 1] == '\t'))
        n--;
    struct sl_str type = { ct.p, n };
    return sl_str_caseeq(type, "application/json") ||
           (n >= 5 && strncasecmp(ct.p + n - 5, "+json", 5) == 0);
}

bool srv_is_upload(const struct http_req *req)
{
    const struct sl_str *ct = http_header(req, "content-type");
    return ct && mp_is_form(*ct);
}

/* A multipart/form-data body: forwarded as it is; its `model` field, if
 * any, routes it. */
static int read_multipart(const struct http_req *req, const struct sl_str *ct,
                          struct api_call *call, char *msg, size_t msglen, const char **param)
{
    char boundary[MP_BOUNDARY_MAX + 1];
    size_t blen;
    if (!mp_boundary(*ct, boundary, &blen))
        FAIL(NULL, "A multipart/form-data body needs a boundary parameter in its Content-Type.");
    struct sl_str model;
    enum mp_found f = mp_field(req->body.data, req->body.len, boundary, blen, "model", &model);
    if (f == MP_MALFORMED)
        FAIL(NULL, "The multipart/form-data body could not be read with its boundary.");
    call->body = API_BODY_MULTIPART;
    if (f == MP_FOUND) {
        if (model.len == 0 || model.len >= sizeof(call->model_text))
            FAIL("model", "'model' must be a non-empty string of at most 256 characters.");
        if (!sl_utf8_valid(model.p, model.len))
            FAIL("model", "'model' is not valid UTF-8.");
        memcpy(call->model_text, model.p, model.len);
        call->model_text[model.len] = '\0';
        call->model = call->model_text;
        call->model_len = model.len;
    }
    return 0;
}

int srv_read_call(const struct http_req *req, struct api_call *call, char *msg, size_t msglen,
                  const char **param)
{
    memset(call, 0, sizeof(*call));
    *param = NULL;
    call->endpoint = endpoint_of(req->path.p, req->path.len);
    /* the four generating endpoints are exact paths, never a stored resource */
    bool stateful = call->endpoint == API_OTHER && stateful_path(req->path);
    if (!sl_str_eq(req->method, "POST")) { /* GET, DELETE: reads and removals of stored things */
        call->body = API_BODY_NONE;
        call->stateful = true;
        return 0;
    }
    const struct sl_str *ct = http_header(req, "content-type");
    int e = 0;
    if (ct && mp_is_form(*ct)) {
        e = read_multipart(req, ct, call, msg, msglen, param);
    } else if (req->body.len == 0 && call->endpoint == API_OTHER) {
        call->body = API_BODY_NONE; /* POST /v1/batches/{id}/cancel and the like */
    } else if (ct && !is_json_type(*ct)) {
        snprintf(msg, msglen,
                 "sluice forwards JSON and multipart/form-data bodies; this one is %.*s.",
                 (int)SL_MIN(ct->len, 64), ct->p);
        return ERR_UNSUPPORTED_MEDIA;
    } else {
        e = srv_validate(req->path.p, req->path.len, req->body.data, req->body.len, call, msg,
                         msglen, param);
        call->body = API_BODY_JSON;
    }
    if (e)
        return e;
    call->stateful = stateful || !call->model;
    if (call->stateful || call->body != API_BODY_JSON)
        call->estimate = 0; /* nothing a prompt estimate can read */
    return 0;
}

int srv_validate(const char *path, size_t path_len, const char *body, size_t len,
                 struct api_call *call, char *msg, size_t msglen, const char **param)
{
    *param = NULL;
    if (!sl_utf8_valid(body, len)) { /* JSON is UTF-8 (RFC 8259); neither cJSON nor the scanner checks */
        memset(call, 0, sizeof(*call));
        FAIL(NULL, "The request body is not valid UTF-8.");
    }
    if (endpoint_of(path, path_len) == API_CHAT && chat_body_scan(body, len, call))
        return 0;
    return srv_validate_tree(path, path_len, body, len, call, msg, msglen, param);
}
