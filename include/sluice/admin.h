/* The admin API under /admin/: bearer admin_key (constant-time), off (404)
 * without one. GET /admin/keys/NAME shows a key's windows. */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

struct worker;
struct http_req;

void admin_handle(struct worker *w, struct http_req *req);

#endif
