/* The parsed API call: what sluice read of a /v1 request (its endpoint, the
 * model it names, whether it streams, its prompt estimate and output counts),
 * and the rules of a plain API path. Everything that reads a request decides
 * from this one reading (api_read.h fills it). */
#ifndef SLUICE_API_CALL_H
#define SLUICE_API_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/util.h"

struct cJSON;
struct http_req;

enum api_endpoint {
    API_CHAT,
    API_COMPLETIONS,
    API_EMBEDDINGS,
    API_RESPONSES,
    API_MESSAGES,     /* Anthropic's Messages API, /v1/messages */
    API_COUNT_TOKENS, /* its /v1/messages/count_tokens */
    API_OTHER
};

/* The dialect of the API an endpoint belongs to (errors.h enum sl_dialect):
 * 1 for Anthropic's Messages API, 0 for OpenAI's. */
static inline int api_endpoint_dialect(enum api_endpoint e)
{
    return e == API_MESSAGES || e == API_COUNT_TOKENS;
}
enum api_body { API_BODY_JSON, API_BODY_MULTIPART, API_BODY_NONE };

/* What sluice can account for of a call: the one table of /v1 endpoints it
 * knows (api_kind_of, docs/http.md "Endpoints"). */
enum api_kind {
    API_KIND_UNKNOWN,     /* no reader: refused for keys with token limits, quotas or budgets,
                             unless in passthrough_paths (then charged as one request) */
    API_KIND_USAGE,       /* chat, completions, embeddings, responses: the usage is read */
    API_KIND_PER_REQUEST, /* images, audio, moderations: request_price per unit */
    API_KIND_FREE,        /* files, uploads, models, reads and removals of stored resources */
};
enum api_unit {
    API_UNIT_REQUEST,   /* one per call */
    API_UNIT_IMAGE,     /* n, default 1 */
    API_UNIT_CHARACTER, /* of the input (speech), at the input price per 1M */
};

struct api_call {
    struct cJSON *root; /* owned; cJSON_Delete when done; NULL if read without cJSON */
    enum api_endpoint endpoint;
    const char *model; /* points into root or model_text */
    size_t model_len;
    bool stream;
    bool client_include_usage; /* stream_options.include_usage as the client sent it */
    signed char store;         /* "store": 1 true, 0 false, -1 not given (or null) */
    int64_t estimate;          /* the prompt's tokens, estimated (tokens.h) */
    int64_t max_tokens; /* the largest of max_tokens, max_completion_tokens and
                           max_output_tokens; 0 = none given */
    int64_t choices;    /* n; 0 = not given */
    enum api_body body;        /* what is forwarded: JSON, multipart as it came, or nothing */
    bool stateful;             /* goes to the stateful backend: no model, or a stored resource */
    enum api_kind kind;
    enum api_unit unit;
    int64_t units; /* API_KIND_PER_REQUEST: how many of unit */
    char model_text[257];
};

/* The endpoint a /v1 path names (API_OTHER for any other path). */
enum api_endpoint api_endpoint_of(const char *path, size_t len);
/* What a call of this method on this (plain) /v1 path is, and its unit. */
enum api_kind api_kind_of(struct sl_str method, struct sl_str path, enum api_unit *unit);

/* Whether running this call twice stores nothing: chat completions and
 * completions without store: true, responses with store: false, embeddings,
 * moderations, audio (resend_unanswered = stateless, docs/pool.md). */
bool api_stateless(const struct api_call *call, struct sl_str method, struct sl_str path);

/* The stored resource a call is about (docs/http.md "Stored resources"):
 * one by its id, a family's list, or the creation of one (its id comes in
 * the answer). */
enum api_res { API_RES_NONE, API_RES_ONE, API_RES_LIST, API_RES_CREATE };
#define API_RES_ID_MAX 128
struct api_resource {
    enum api_res what;
    bool deletes;                 /* DELETE of the one named: its record goes with it */
    char id[API_RES_ID_MAX + 1];  /* API_RES_ONE: the id in the path */
};
void api_resource_of(struct sl_str method, struct sl_str path, struct api_resource *res);

/* Takes one of the body's counts (max_tokens, max_completion_tokens,
 * max_output_tokens, n) into the call. */
void api_count_output(struct api_call *call, bool is_n, int64_t value);

#define API_MAX_PATH 255 /* longest /v1 path accepted (an OpenAI path is far shorter) */

/* A path segment an upstream cannot resolve elsewhere: letters, digits, '-',
 * '_', '.', '~', ':', and not "." or "..". Also the test for a model name
 * that goes into a URL. */
bool api_safe_segment(const char *p, size_t len);
/* Percent-decodes an API path in place, then checks it is /v1/ followed by
 * safe segments only (no empty one). False: refuse it, forward nothing. */
bool api_plain_path(struct http_req *req);

#endif
