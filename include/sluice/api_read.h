/* Reading and checking the API call a /v1 request makes (api_call.h). */
#ifndef SLUICE_API_READ_H
#define SLUICE_API_READ_H

#include <stdbool.h>
#include <stddef.h>

struct api_call;
struct http_req;
struct cJSON;

/* Reads any /v1 API request (but GET /v1/models): its body kind, the model
 * it names (JSON "model", or a multipart form's model field), whether it
 * goes to the stateful backend (GET and DELETE, stored resources, calls
 * without a model; docs/http.md), and its prompt estimate. Returns 0 or an
 * error, as api_validate. */
int api_read_call(const struct http_req *req, struct api_call *call, char *msg, size_t msglen,
                  const char **param);
/* A multipart/form-data upload (the larger max_upload_size applies). */
bool api_is_upload(const struct http_req *req);

/* Parses and checks a POST /v1/... body and estimates its prompt. Returns 0,
 * or an error with a message in msg and the offending field in *param (or
 * NULL). A chat body of the common shape is read in one pass (chat_body.h);
 * any other body goes through cJSON. */
int api_validate(const char *path, size_t path_len, const char *body, size_t len,
                 struct api_call *call, char *msg, size_t msglen, const char **param);
/* The cJSON path alone (the tests hold the one-pass reader to it). */
int api_validate_tree(const char *path, size_t path_len, const char *body, size_t len,
                      struct api_call *call, char *msg, size_t msglen, const char **param);

/* A member name some object of the tree gives twice (compared unescaped, at
 * any depth), or NULL: such a body is refused wherever sluice reads one. */
const char *api_repeated_member(const struct cJSON *root);

#endif
