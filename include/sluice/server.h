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

struct api_call {
    struct cJSON *root; /* owned; cJSON_Delete when done; NULL if read without cJSON */
    enum api_endpoint endpoint;
    const char *model; /* points into root or model_text */
    size_t model_len;
    bool stream;
    bool client_include_usage; /* stream_options.include_usage as the client sent it */
    int64_t estimate;          /* the prompt's tokens, estimated (tokens.h) */
    char model_text[257];
};

/* The http_handler for every client request; arg is the worker. */
void srv_handle(struct http_req *req, void *arg);

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
