/* Reading an API call from a client request: the body's kind, the model it
 * names, whether it goes to the stateful backend, its validation and prompt
 * estimate, in one reading that everything after it decides from. */
#include "sluice/api_read.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/api_call.h"
#include "sluice/chat_body.h"
#include "sluice/errors.h"
#include "sluice/http.h"
#include "sluice/multipart.h"
#include "sluice/tokens.h"
#include "sluice/util.h"

#define FAIL(field, ...)                                                                           \
    do {                                                                                           \
        snprintf(msg, msglen, __VA_ARGS__);                                                        \
        *param = (field);                                                                          \
        return ERR_BAD_REQUEST;                                                                    \
    } while (0)

/* A whole number an int64 holds (casting anything larger is undefined). */
static bool is_integer(const cJSON *n)
{
    double v = cJSON_IsNumber(n) ? n->valuedouble : 0.5;
    return v >= -9223372036854775808.0 && v < 9223372036854775808.0 && v == floor(v);
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
        api_count_output(call, i == 3, (int64_t)SL_MIN(v->valuedouble, 1e12));
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

/* Content blocks: objects, each with a string type. */
static bool is_blocks(const cJSON *v)
{
    const cJSON *b;
    if (!cJSON_IsArray(v))
        return false;
    cJSON_ArrayForEach(b, v) {
        if (!cJSON_IsObject(b) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(b, "type")))
            return false;
    }
    return true;
}

/* Anthropic's Messages API (and its count_tokens): messages of role user or
 * assistant with content as text or blocks, a system prompt as text or
 * blocks, tools as a list, and max_tokens where it generates. */
static int check_anthropic(const cJSON *root, const struct api_call *call, char *msg,
                           size_t msglen, const char **param)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!msgs)
        FAIL("messages", "messages: Field required");
    if (!cJSON_IsArray(msgs))
        FAIL("messages", "messages: Input should be a valid list");
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role) ||
            (strcmp(role->valuestring, "user") != 0 && strcmp(role->valuestring, "assistant") != 0))
            FAIL("messages", "messages.%d: each message is an object whose role is 'user' or "
                             "'assistant'", i);
        if (!cJSON_IsString(content) && !is_blocks(content))
            FAIL("messages", "messages.%d.content: a string or a list of content blocks (objects "
                             "with a type)", i);
        i++;
    }
    const cJSON *system = cJSON_GetObjectItemCaseSensitive(root, "system");
    if (system && !cJSON_IsString(system) && !is_blocks(system))
        FAIL("system", "system: a string or a list of text blocks");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    if (tools && !cJSON_IsArray(tools))
        FAIL("tools", "tools: Input should be a valid list");
    const cJSON *max = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    if (call->endpoint == API_MESSAGES && (!max || cJSON_IsNull(max)))
        FAIL("max_tokens", "max_tokens: Field required");
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
        for (size_t i = 0; i < call->model_len; i++)
            if ((unsigned char)call->model[i] < 0x20 || call->model[i] == 0x7f)
                FAIL("model", "'model' must not contain control characters.");
    }

    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
    if (stream && !cJSON_IsNull(stream) && !cJSON_IsBool(stream))
        FAIL("stream", "'stream' must be a boolean.");
    call->stream = cJSON_IsTrue(stream);
    const cJSON *store = cJSON_GetObjectItemCaseSensitive(root, "store");
    call->store = cJSON_IsBool(store) ? (signed char)cJSON_IsTrue(store) : -1;
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
    case API_MESSAGES:
    case API_COUNT_TOKENS:
        return check_anthropic(root, call, msg, msglen, param);
    case API_OTHER:
        return 0;
    }
    return 0;
}

/* Whether the JSON text escapes a NUL (\\u0000) anywhere: cJSON ends the
 * string there, so what sluice read would not be what the upstream reads. */
static bool escapes_nul(const char *body, size_t len)
{
    for (const char *p = body, *end = body + len; (p = memchr(p, '\\', (size_t)(end - p)));) {
        size_t run = 0;
        while (p + run < end && p[run] == '\\')
            run++;
        p += run;
        if (run % 2 && end - p >= 5 && memcmp(p, "u0000", 5) == 0)
            return true;
    }
    return false;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* A member name an object of the tree has twice (names as cJSON unescaped
 * them), or NULL. Small objects by comparison, large ones sorted. */
static const char *repeated_member(const cJSON *item, int depth);

const char *api_repeated_member(const cJSON *root)
{
    return repeated_member(root, 0);
}

static const char *repeated_member(const cJSON *item, int depth)
{
    if (depth > 64)
        return NULL; /* cJSON's own nesting limit is lower */
    int n = 0;
    for (const cJSON *c = item->child; c; c = c->next)
        n++;
    if (cJSON_IsObject(item) && n > 1) {
        const cJSON *small[16], **all = n <= 16 ? small : sl_malloc((size_t)n * sizeof(*all));
        int k = 0;
        for (const cJSON *c = item->child; c; c = c->next)
            all[k++] = c;
        qsort(all, (size_t)n, sizeof(*all), by_name);
        const char *dup = NULL;
        for (int i = 1; i < n && !dup; i++)
            if (strcmp(all[i - 1]->string, all[i]->string) == 0)
                dup = all[i]->string;
        if (all != small)
            free(all);
        if (dup)
            return dup;
    }
    for (const cJSON *c = item->child; c; c = c->next) {
        const char *dup = repeated_member(c, depth + 1);
        if (dup)
            return dup;
    }
    return NULL;
}

int api_validate_tree(const char *path, size_t path_len, const char *body, size_t len,
                      struct api_call *call, char *msg, size_t msglen, const char **param)
{
    memset(call, 0, sizeof(*call));
    *param = NULL;
    call->endpoint = api_endpoint_of(path, path_len);
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        FAIL(NULL, "We could not parse the JSON body of your request. The body must be a JSON "
                   "object.");
    }
    call->root = root;
    if (escapes_nul(body, len))
        FAIL(NULL, "The request body escapes a NUL character (\\u0000): sluice does not forward "
                   "a body that parsers read differently.");
    const char *dup = repeated_member(root, 0);
    if (dup) {
        snprintf(msg, msglen,
                 "The request body gives the member '%.64s' twice in one object; send each "
                 "member once.",
                 dup);
        *param = NULL;
        return ERR_BAD_REQUEST;
    }
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

bool api_is_upload(const struct http_req *req)
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
    if (f == MP_REPEATED)
        FAIL("model", "The multipart/form-data body gives 'model' more than once; send it once.");
    call->body = API_BODY_MULTIPART;
    struct sl_str purpose; /* a file's: what the stateful backend keeps it for */
    if (mp_field(req->body.data, req->body.len, boundary, blen, "purpose", &purpose) == MP_REPEATED)
        FAIL("purpose", "The multipart/form-data body gives 'purpose' more than once; send it once.");
    if (call->unit == API_UNIT_IMAGE) { /* an image edit or variation: n of them */
        struct sl_str n;
        enum mp_found fn = mp_field(req->body.data, req->body.len, boundary, blen, "n", &n);
        if (fn == MP_REPEATED)
            FAIL("n", "The multipart/form-data body gives 'n' more than once; send it once.");
        int64_t v = 0;
        for (size_t i = 0; fn == MP_FOUND && i < n.len && v <= 1000000; i++)
            v = n.p[i] >= '0' && n.p[i] <= '9' ? v * 10 + (n.p[i] - '0') : INT64_MAX;
        if (fn == MP_FOUND && (n.len == 0 || v > 1000000))
            FAIL("n", "'n' must be a whole number.");
        call->choices = v;
    }
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

/* How many units a call priced per request uses (api_call.h). */
static int64_t count_units(const struct api_call *call)
{
    if (call->unit == API_UNIT_IMAGE)
        return SL_MAX(call->choices, 1);
    if (call->unit != API_UNIT_CHARACTER)
        return 1;
    const cJSON *input = call->root ? cJSON_GetObjectItemCaseSensitive(call->root, "input") : NULL;
    int64_t chars = 0; /* code points: the bytes that do not continue one */
    for (const char *p = cJSON_IsString(input) ? input->valuestring : ""; *p; p++)
        chars += ((unsigned char)*p & 0xC0) != 0x80;
    return chars;
}

static int read_call(const struct http_req *req, struct api_call *call, enum api_unit unit,
                     char *msg, size_t msglen, const char **param)
{
    call->unit = unit; /* multipart images read their n */
    call->endpoint = api_endpoint_of(req->path.p, req->path.len);
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
        e = api_validate(req->path.p, req->path.len, req->body.data, req->body.len, call, msg,
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

int api_read_call(const struct http_req *req, struct api_call *call, char *msg, size_t msglen,
                  const char **param)
{
    memset(call, 0, sizeof(*call));
    *param = NULL;
    enum api_unit unit;
    enum api_kind kind = api_kind_of(req->method, req->path, &unit);
    int e = read_call(req, call, unit, msg, msglen, param);
    call->kind = kind;
    call->unit = unit;
    call->units = count_units(call);
    return e;
}

int api_validate(const char *path, size_t path_len, const char *body, size_t len,
                 struct api_call *call, char *msg, size_t msglen, const char **param)
{
    *param = NULL;
    if (!sl_utf8_valid(body, len)) { /* JSON is UTF-8 (RFC 8259); neither cJSON nor the scanner checks */
        memset(call, 0, sizeof(*call));
        FAIL(NULL, "The request body is not valid UTF-8.");
    }
    enum api_endpoint e = api_endpoint_of(path, path_len);
    if (e == API_CHAT && chat_body_scan(body, len, call))
        return 0;
    if (e == API_MESSAGES && messages_body_scan(body, len, call))
        return 0;
    return api_validate_tree(path, path_len, body, len, call, msg, msglen, param);
}
