/* The life of one API request: authenticate, validate, choose a backend,
 * forward, relay (whole or streamed), account, log. */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include <stdbool.h>

struct worker;
struct http_req;

/* POST /v1/... once its head is in: the client's key. False after answering
 * (401, or 400 for several credentials). */
bool proxy_head(struct worker *w, struct http_req *req);
/* POST /v1/... with its body. */
void proxy_handle(struct worker *w, struct http_req *req);
/* Frees the request structs the worker keeps for reuse; after its last request ended. */
void proxy_worker_free(struct worker *w);

#endif
