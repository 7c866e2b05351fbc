/* GET /v1/models and GET /v1/models/{id}: the models a key may call, the
 * lists of `models = *` backends fetched from their upstreams and kept per
 * worker for the backend's models_cache. */
#ifndef SLUICE_MODELS_H
#define SLUICE_MODELS_H

struct worker;
struct http_req;
struct models_cache;

struct models_cache *models_cache_new(void);
/* Stops the fetches still running (before the worker's curl multi goes). */
void models_cache_free(struct models_cache *c);

void models_handle(struct worker *w, struct http_req *req);

#endif
