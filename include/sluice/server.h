/* The HTTP interface of SPEC.md: routes, and validation of API request
 * bodies before anything is reserved or forwarded. */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/errors.h"

struct http_req;
struct cJSON;

enum api_endpoint { API_CHAT, API_COMPLETIONS, API_EMBEDDINGS, API_RESPONSES, API_OTHER };
enum api_body { API_BODY_JSON, API_BODY_MULTIPART, API_BODY_NONE };

struct api_call {
    struct cJSON *root; /* owned; cJSON_Delete when done; NULL if read without cJSON */
    enum api_endpoint endpoint;
    const char *model; /* points into root or model_text */
    size_t model_len;
    bool stream;
    bool client_include_usage; /* stream_options.include_usage as the client sent it */
    int64_t estimate;          /* the prompt's tokens, estimated (tokens.h) */
    int64_t max_tokens; /* the largest of max_tokens, max_completion_tokens and
                           max_output_tokens; 0 = none given */
    int64_t choices;    /* n; 0 = not given */
    enum api_body body;        /* what is forwarded: JSON, multipart as it came, or nothing */
    bool stateful;             /* goes to the stateful backend: no model, or a stored resource */
    char model_text[257];
};

/* Takes one of the body's counts (max_tokens, max_completion_tokens,
 * max_output_tokens, n) into the call. */
void srv_count_output(struct api_call *call, bool is_n, int64_t value);

#define SRV_MAX_API_PATH 255 /* longest /v1 path accepted (an OpenAI path is far shorter) */

/* The http_head_handler: checks an API path and, for a request with a body,
 * the credential of whoever may send one (an API key for POST /v1/..., the
 * admin key for /admin/...) before any of it is read. Any other request with
 * a body is answered from its head. arg is the worker. */
bool srv_head(struct http_req *req, void *arg);
/* The http_handler for every client request; arg is the worker. */
void srv_handle(struct http_req *req, void *arg);

/* A path segment an upstream cannot resolve elsewhere: letters, digits, '-',
 * '_', '.', '~', ':', and not "." or "..". Also the test for a model name
 * that goes into a URL. */
bool srv_safe_segment(const char *p, size_t len);
/* Percent-decodes an API path in place, then checks it is /v1/ followed by
 * safe segments only (no empty one). False: refuse it, forward nothing. */
bool srv_plain_api_path(struct http_req *req);

/* Reads any /v1 API request (but GET /v1/models): its body kind, the model
 * it names (JSON "model", or a multipart form's model field), whether it
 * goes to the stateful backend (GET and DELETE, stored resources, calls
 * without a model; docs/http.md), and its prompt estimate. Returns 0 or an
 * error, as srv_validate. */
int srv_read_call(const struct http_req *req, struct api_call *call, char *msg, size_t msglen,
                  const char **param);
/* A multipart/form-data upload (the larger max_upload_size applies). */
bool srv_is_upload(const struct http_req *req);

/* Parses and checks a POST /v1/... body and estimates its prompt. Returns 0,
 * or an error with a message in msg and the offending field in *param (or
 * NULL). A chat body of the common shape is read in one pass (chat_body.h);
 * any other body goes through cJSON. */
int srv_validate(const char *path, size_t path_len, const char *body, size_t len,
                 struct api_call *call, char *msg, size_t msglen, const char **param);
/* The cJSON path alone (the tests hold the one-pass reader to it). */
int srv_validate_tree(const char *path, size_t path_len, const char *body, size_t len,
                      struct api_call *call, char *msg, size_t msglen, const char **param);

#endif
