/* The parsed API call's own rules: endpoints by path, output counts, plain
 * API paths and safe path segments. */
#include "sluice/api_call.h"

#include <string.h>

#include "sluice/http.h"
#include "sluice/util.h"

enum api_endpoint api_endpoint_of(const char *path, size_t len)
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
    if (sl_str_eq(p, "/v1/messages"))
        return API_MESSAGES;
    if (sl_str_eq(p, "/v1/messages/count_tokens"))
        return API_COUNT_TOKENS;
    return API_OTHER;
}

/* POSTs by exact path (or by family: the path or below it). */
#define PATH(p) p, sizeof(p) - 1

/* stateless: running it twice stores nothing (resend_unanswered = stateless
 * may send it once more); chat completions and responses ask the body's store. */
static const struct endpoint {
    const char *path;
    size_t len;
    bool family;
    enum api_kind kind;
    enum api_unit unit;
    bool stateless;
} post_endpoints[] = {
    { PATH("/v1/chat/completions"), false, API_KIND_USAGE, API_UNIT_REQUEST, true },
    { PATH("/v1/completions"), false, API_KIND_USAGE, API_UNIT_REQUEST, true },
    { PATH("/v1/embeddings"), false, API_KIND_USAGE, API_UNIT_REQUEST, true },
    { PATH("/v1/responses"), false, API_KIND_USAGE, API_UNIT_REQUEST, true },
    { PATH("/v1/messages"), false, API_KIND_USAGE, API_UNIT_REQUEST, true },
    { PATH("/v1/messages/count_tokens"), false, API_KIND_FREE, API_UNIT_REQUEST, true },
    { PATH("/v1/images/generations"), false, API_KIND_PER_REQUEST, API_UNIT_IMAGE, false },
    { PATH("/v1/images/edits"), false, API_KIND_PER_REQUEST, API_UNIT_IMAGE, false },
    { PATH("/v1/images/variations"), false, API_KIND_PER_REQUEST, API_UNIT_IMAGE, false },
    { PATH("/v1/audio/speech"), false, API_KIND_PER_REQUEST, API_UNIT_CHARACTER, true },
    { PATH("/v1/audio/transcriptions"), false, API_KIND_PER_REQUEST, API_UNIT_REQUEST, true },
    { PATH("/v1/audio/translations"), false, API_KIND_PER_REQUEST, API_UNIT_REQUEST, true },
    { PATH("/v1/moderations"), false, API_KIND_PER_REQUEST, API_UNIT_REQUEST, true },
    { PATH("/v1/files"), true, API_KIND_FREE, API_UNIT_REQUEST, false },
    { PATH("/v1/uploads"), true, API_KIND_FREE, API_UNIT_REQUEST, false },
};

/* Stored resources and lists: reading or removing them is free, and so is
 * cancelling a job (POST .../cancel). */
static const struct prefix {
    const char *path;
    size_t len;
} stored_families[] = {
    { PATH("/v1/models") },     { PATH("/v1/files") },      { PATH("/v1/uploads") },
    { PATH("/v1/batches") },    { PATH("/v1/vector_stores") }, { PATH("/v1/containers") },
    { PATH("/v1/fine_tuning") }, { PATH("/v1/assistants") }, { PATH("/v1/threads") },
    { PATH("/v1/evals") },      { PATH("/v1/conversations") }, { PATH("/v1/responses") },
    { PATH("/v1/chat/completions") },
};

static bool in_family(struct sl_str path, const char *prefix, size_t n)
{
    return path.len >= n && memcmp(path.p, prefix, n) == 0 && (path.len == n || path.p[n] == '/');
}

enum api_kind api_kind_of(struct sl_str method, struct sl_str path, enum api_unit *unit)
{
    *unit = API_UNIT_REQUEST;
    bool post = sl_str_eq(method, "POST");
    if (post) {
        for (size_t i = 0; i < SL_ARRAY_LEN(post_endpoints); i++) {
            const struct endpoint *e = &post_endpoints[i];
            if (e->family ? in_family(path, e->path, e->len)
                          : path.len == e->len && memcmp(path.p, e->path, e->len) == 0) {
                *unit = e->unit;
                return e->kind;
            }
        }
    }
    bool read = !post || (path.len > 7 && memcmp(path.p + path.len - 7, "/cancel", 7) == 0);
    for (size_t i = 0; read && i < SL_ARRAY_LEN(stored_families); i++)
        if (in_family(path, stored_families[i].path, stored_families[i].len))
            return API_KIND_FREE;
    return API_KIND_UNKNOWN;
}

bool api_stateless(const struct api_call *call, struct sl_str method, struct sl_str path)
{
    if (!sl_str_eq(method, "POST") || call->stateful)
        return false;
    if (call->endpoint == API_RESPONSES) /* stored unless the body says store: false */
        return call->store == 0;
    if ((call->endpoint == API_CHAT || call->endpoint == API_COMPLETIONS) && call->store == 1)
        return false; /* a stored completion */
    for (size_t i = 0; i < SL_ARRAY_LEN(post_endpoints); i++) {
        const struct endpoint *e = &post_endpoints[i];
        if (!e->family && path.len == e->len && memcmp(path.p, e->path, e->len) == 0)
            return e->stateless;
    }
    return false;
}

/* Families whose second segment is a stored resource's id; the ones with a
 * list (GET of the family itself) and a creation (POST to it). Fine-tuned
 * models (ft:...) belong to whoever made the job. */
static const struct family {
    const char *path;
    size_t len;
    bool list, create;
} families[] = {
    { PATH("/v1/files"), true, true },          { PATH("/v1/uploads"), false, true },
    { PATH("/v1/batches"), true, true },        { PATH("/v1/vector_stores"), true, true },
    { PATH("/v1/containers"), true, true },     { PATH("/v1/assistants"), true, true },
    { PATH("/v1/threads"), false, true },       { PATH("/v1/evals"), true, true },
    { PATH("/v1/conversations"), false, true }, { PATH("/v1/responses"), false, false },
    { PATH("/v1/chat/completions"), true, false }, { PATH("/v1/fine_tuning/jobs"), true, true },
    { PATH("/v1/models"), false, false },
};

void api_resource_of(struct sl_str method, struct sl_str path, struct api_resource *res)
{
    memset(res, 0, sizeof(*res));
    for (size_t i = 0; i < SL_ARRAY_LEN(families); i++) {
        const struct family *f = &families[i];
        if (!in_family(path, f->path, f->len))
            continue;
        size_t n = f->len;
        if (path.len == n) { /* the family itself */
            if (f->list && sl_str_eq(method, "GET"))
                res->what = API_RES_LIST;
            else if (f->create && sl_str_eq(method, "POST"))
                res->what = API_RES_CREATE;
            return;
        }
        const char *id = path.p + n + 1, *end = memchr(id, '/', path.len - n - 1);
        size_t len = end ? (size_t)(end - id) : path.len - n - 1;
        if (i == SL_ARRAY_LEN(families) - 1 && (len < 3 || memcmp(id, "ft:", 3) != 0))
            return; /* a base model is nobody's */
        if (f->create && len == 4 && memcmp(id, "runs", 4) == 0 && !end &&
            sl_str_eq(method, "POST")) { /* POST /v1/threads/runs: a thread and its run */
            res->what = API_RES_CREATE;
            return;
        }
        if (len == 0 || memchr(id, '\0', len))
            return; /* not a plain path (api_plain_path refuses it before) */
        if (len > API_RES_ID_MAX)
            len = API_RES_ID_MAX; /* longer than any id: its cut matches no record */
        memcpy(res->id, id, len);
        res->what = API_RES_ONE;
        res->deletes = !end && sl_str_eq(method, "DELETE");
        return;
    }
}

void api_count_output(struct api_call *call, bool is_n, int64_t value)
{
    value = SL_MIN(value, 1000000000); /* beyond any model; keeps products in range */
    if (is_n)
        call->choices = value;
    else
        call->max_tokens = SL_MAX(call->max_tokens, value);
}

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

bool api_safe_segment(const char *p, size_t len)
{
    if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!segment_char[(unsigned char)p[i]])
            return false;
    return true;
}

bool api_plain_path(struct http_req *req)
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
    if (n < 5 || n > API_MAX_PATH || memcmp(p, "/v1/", 4) != 0)
        return false;
    size_t seg = 4;
    for (size_t i = 4; i < n; i++) {
        if (p[i] == '/') {
            if (!api_safe_segment(p + seg, i - seg))
                return false;
            seg = i + 1;
        } else if (!segment_char[(unsigned char)p[i]]) {
            return false;
        }
    }
    return api_safe_segment(p + seg, n - seg);
}
