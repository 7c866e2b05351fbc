/* What an attempt sends upstream: the URL for the backend, the client's
 * headers by the allow-list (headers.c) with the backend's own (credential,
 * organization, project, traceparent), and the body as the client sent it or
 * as sluice's copy with one member set (docs/design.md, "Upstream transfers"). */
#include "sluice/forward.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/api_call.h"
#include "sluice/config.h"
#include "sluice/headers.h"
#include "sluice/http.h"
#include "sluice/json_edit.h"
#include "sluice/util.h"
#include "sluice/xlate.h"

/* The body's forms (struct fwd_body). */

bool fwd_ask_for_usage(struct fwd_body *b, const struct api_call *c)
{
    if (!c->stream || c->client_include_usage ||
        (c->endpoint != API_CHAT && c->endpoint != API_COMPLETIONS))
        return false;
    cJSON *opts = cJSON_GetObjectItemCaseSensitive(c->root, "stream_options");
    cJSON *copy = cJSON_IsObject(opts) ? cJSON_Duplicate(opts, 1) : cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(copy, "include_usage");
    cJSON_AddTrueToObject(copy, "include_usage");
    char *value = cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    bool asked = json_set_member(b->client.p, b->client.len, "stream_options", value, &b->usage);
    free(value);
    return asked;
}

void fwd_rename_model(struct fwd_body *b, const struct api_call *c, const char *upstream,
                      size_t len)
{
    b->model.len = 0;
    b->xlate_model.len = 0;
    if (c->body != API_BODY_JSON || (len == c->model_len && memcmp(upstream, c->model, len) == 0))
        return;
    struct sl_buf value = { 0 };
    sl_buf_json_string(&value, upstream, len);
    struct sl_str base = b->usage.len ? (struct sl_str){ b->usage.data, b->usage.len } : b->client;
    json_set_member(base.p, base.len, "model", value.data, &b->model);
    if (b->xlate.len)
        json_set_member(b->xlate.data, b->xlate.len, "model", value.data, &b->xlate_model);
    sl_buf_free(&value);
}

struct sl_str fwd_body_sent(const struct fwd_body *b, bool translated)
{
    if (translated)
        return b->xlate_model.len ? (struct sl_str){ b->xlate_model.data, b->xlate_model.len }
                                  : (struct sl_str){ b->xlate.data, b->xlate.len };
    if (b->cont.len)
        return (struct sl_str){ b->cont.data, b->cont.len };
    if (b->model.len)
        return (struct sl_str){ b->model.data, b->model.len };
    if (b->usage.len)
        return (struct sl_str){ b->usage.data, b->usage.len };
    return b->client;
}

void fwd_body_free(struct fwd_body *b)
{
    sl_buf_free(&b->usage);
    sl_buf_free(&b->model);
    sl_buf_free(&b->cont);
    sl_buf_free(&b->xlate);
    sl_buf_free(&b->xlate_model);
}

bool fwd_continuation(struct fwd_body *b, const char *said, size_t len)
{
    struct sl_str sent = fwd_body_sent(b, false);
    cJSON *root = cJSON_ParseWithLength(sent.p, sent.len);
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    struct sl_buf text = { 0 }; /* the assistant's message, read back by cJSON: unescaped once */
    sl_buf_appends(&text, "{\"role\":\"assistant\",\"content\":\"");
    sl_buf_append(&text, said, len);
    sl_buf_appends(&text, "\"}");
    cJSON *msg = cJSON_ParseWithLength(text.data, text.len);
    sl_buf_free(&text);
    if (!cJSON_IsArray(msgs) || !msg) {
        cJSON_Delete(msg);
        cJSON_Delete(root);
        return false;
    }
    cJSON_AddItemToArray(msgs, msg);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "continue_final_message");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "add_generation_prompt");
    cJSON_AddBoolToObject(root, "continue_final_message", true);
    cJSON_AddBoolToObject(root, "add_generation_prompt", false);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!out)
        return false;
    b->cont.len = 0;
    sl_buf_appends(&b->cont, out);
    free(out);
    return true;
}

/* ---- headers ---- */

const char *fwd_credential_header(const struct cfg_backend *be)
{
    return be->type == BACKEND_AZURE       ? "api-key: "
           : be->type == BACKEND_ANTHROPIC ? "x-api-key: "
                                           : "Authorization: Bearer ";
}

/* Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1). */
static bool named_in_connection(const struct http_req *req, struct sl_str name)
{
    const struct sl_str *conn = http_header(req, "connection");
    if (!conn)
        return false;
    const char *p = conn->p, *end = conn->p + conn->len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',' && *p != ' ')
            p++;
        if ((size_t)(p - s) == name.len && strncasecmp(s, name.p, name.len) == 0)
            return true;
    }
    return false;
}

/* One line, NUL-terminated, into the block's text. */
static void header_text(struct sl_buf *text, int *n, const char *a, size_t alen, const char *b,
                        size_t blen)
{
    sl_buf_append(text, a, alen);
    sl_buf_append(text, b, blen);
    sl_buf_append(text, "", 1);
    (*n)++;
}

/* The request's headers for curl as one allocation: the list nodes, then
 * their text (curl only reads the list). Freed with fwd_headers_free. */
struct curl_slist *fwd_headers(const struct http_req *req, const struct cfg_backend *be,
                               enum api_body kind, size_t body_len, const char *traceparent)
{
    struct sl_buf text = { 0 };
    int n = 0;
    bool accept = false;
    sl_buf_reserve(&text, 256);
    bool tracing = traceparent != NULL; /* our traceparent replaces the client's */
    for (int i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (!hdr_forwarded(h->name, be->forward_headers.names, be->forward_headers.n) ||
            named_in_connection(req, h->name) ||
            (tracing && sl_str_caseeq(h->name, "traceparent")))
            continue;
        accept = accept || sl_str_caseeq(h->name, "accept");
        sl_buf_append(&text, h->name.p, h->name.len);
        header_text(&text, &n, ": ", 2, h->value.p, h->value.len);
    }
    if (!accept)
        header_text(&text, &n, "Accept:", 7, "", 0); /* not curl's default "*\/\*" */
    if (kind == API_BODY_JSON) {
        header_text(&text, &n, "Content-Type: application/json", 30, "", 0);
    } else if (kind == API_BODY_MULTIPART) { /* its boundary: the body goes as it came */
        const struct sl_str *ct = http_header(req, "content-type");
        header_text(&text, &n, "Content-Type: ", 14, ct->p, ct->len);
    }
    /* No 100-continue round trip. curl (7.69 and later; sluice needs 7.80)
     * asks for one only above 1 MiB, and each line on the list costs a
     * comparison for every header curl looks for. */
    if (body_len > 1024 * 1024)
        header_text(&text, &n, "Expect:", 7, "", 0);
    if (tracing)
        header_text(&text, &n, traceparent, strlen(traceparent), "", 0);
    /* The client's id, when valid (http_request_id). One sluice made is not
     * sent: each header costs curl ~3k instructions, and the upstream's own
     * id comes back (x-upstream-request-id) to find the call by. */
    if (req->request_id_sent)
        header_text(&text, &n, "X-Request-Id: ", 14, req->request_id, strlen(req->request_id));
    if (be->organization)
        header_text(&text, &n, "OpenAI-Organization: ", 21, be->organization,
                    strlen(be->organization));
    if (be->project)
        header_text(&text, &n, "OpenAI-Project: ", 16, be->project, strlen(be->project));
    if (be->type == BACKEND_ANTHROPIC && !http_header(req, "anthropic-version"))
        header_text(&text, &n, FWD_ANTHROPIC_VERSION, sizeof(FWD_ANTHROPIC_VERSION) - 1, "", 0);
    if (be->api_key) {
        const char *name = fwd_credential_header(be);
        header_text(&text, &n, name, strlen(name), be->api_key, strlen(be->api_key));
    }
    struct curl_slist *list = sl_malloc((size_t)n * sizeof(*list) + text.len);
    char *p = memcpy((char *)(list + n), text.data, text.len);
    for (int i = 0; i < n; i++) {
        list[i].data = p;
        list[i].next = i + 1 < n ? &list[i + 1] : NULL;
        p += strlen(p) + 1;
    }
    explicit_bzero(text.data, text.len); /* the backend's credential */
    sl_buf_free(&text);
    return list;
}

void fwd_headers_free(struct curl_slist *list)
{
    if (!list)
        return;
    size_t n = 1;
    while (list[n - 1].next)
        n++;
    const char *last = list[n - 1].data;
    explicit_bzero(list, (size_t)(last + strlen(last) + 1 - (const char *)list));
    free(list);
}

/* ---- the URL ---- */

/* A query parameter's name, percent-decoded and lowercased, into out. */
static void param_name(const char *p, size_t len, char *out, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < len && p[i] != '=' && k + 1 < n; i++) {
        char c = p[i];
        if (c == '%' && i + 2 < len && isxdigit((unsigned char)p[i + 1]) &&
            isxdigit((unsigned char)p[i + 2])) {
            char hex[3] = { p[i + 1], p[i + 2], 0 };
            c = (char)strtol(hex, NULL, 16);
            i += 2;
        }
        out[k++] = (char)tolower((unsigned char)c);
    }
    out[k] = '\0';
}

/* The client's query after sluice's own Azure parameters: every parameter
 * but api-version and api-key, which only the backend's settings give. */
static void azure_client_query(struct sl_buf *url, struct sl_str query)
{
    const char *p = query.p, *end = query.p + query.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        size_t len = amp ? (size_t)(amp - p) : (size_t)(end - p);
        char name[32];
        param_name(p, len, name, sizeof(name));
        if (len && strcmp(name, "api-version") != 0 && strcmp(name, "api-key") != 0) {
            sl_buf_append(url, "&", 1);
            sl_buf_append(url, p, len);
        }
        p += len + 1;
    }
}

/* openai: base + path after /v1 (+ query). azure: base +
 * /openai/deployments/{deployment}/... ?api-version=... (+ the client's query). */
char *fwd_url(const struct http_req *req, const struct cfg_backend *be, bool stateful,
              const char *upstream_model, int xl)
{
    struct sl_str rest = { req->path.p + 3, req->path.len - 3 }; /* after "/v1" */
    struct sl_str query = req->query;
    if (xl == XL_MESSAGES_TO_CHAT)
        rest = (struct sl_str){ "/chat/completions", 17 };
    else if (xl == XL_CHAT_TO_MESSAGES)
        rest = (struct sl_str){ "/messages", 9 };
    if (xl > XL_NONE)
        query = (struct sl_str){ "", 0 };
    struct sl_buf url = { 0 };
    sl_buf_appends(&url, be->url);
    if (be->type == BACKEND_AZURE && stateful) { /* the account's: /openai/files, ... */
        sl_buf_printf(&url, "/openai%.*s?api-version=%s", (int)rest.len, rest.p, be->api_version);
        azure_client_query(&url, query);
    } else if (be->type == BACKEND_AZURE) {
        const char *dep = be->deployment ? be->deployment : upstream_model;
        char *esc = curl_easy_escape(NULL, dep, 0);
        sl_buf_printf(&url, "/openai/deployments/%s%.*s?api-version=%s", esc, (int)rest.len,
                      rest.p, be->api_version);
        curl_free(esc);
        azure_client_query(&url, query);
    } else {
        sl_buf_append(&url, rest.p, rest.len);
        if (query.len) {
            sl_buf_append(&url, "?", 1);
            sl_buf_append(&url, query.p, query.len);
        }
    }
    return url.data;
}
