/* The admin API under /admin/: bearer admin_key (constant-time), off (404)
 * without one. GET /admin/keys/NAME shows a key's windows; GET
 * /admin/quota/NAME, POST /admin/quota/NAME/reset and POST
 * /admin/quota/NAME/delta {"tokens":N} read, reset and adjust its quota. */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

struct worker;
struct http_req;

#include <stdbool.h>

/* The admin key, checked before a body is read. False after answering. */
bool admin_head(struct worker *w, struct http_req *req);
void admin_handle(struct worker *w, struct http_req *req);

#endif
