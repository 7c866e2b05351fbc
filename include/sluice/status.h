/* GET /admin/status: an HTML page in the manner of HAProxy's stats page,
 * refreshed in place from GET /admin/status.json (status.c). */
#ifndef SLUICE_STATUS_H
#define SLUICE_STATUS_H

#include <stdbool.h>

struct worker;
struct http_req;

/* Whether the request is for the status page or its JSON; then it is answered. */
bool status_handle(struct worker *w, struct http_req *req);

#endif
