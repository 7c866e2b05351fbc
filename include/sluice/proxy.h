/* The life of one API request: authenticate, validate, choose a backend,
 * forward, relay (whole or streamed), account, log. */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

struct worker;
struct http_req;

/* POST /v1/... */
void proxy_handle(struct worker *w, struct http_req *req);
/* GET /v1/models and GET /v1/models/{model} */
void proxy_models(struct worker *w, struct http_req *req);

#endif
