/* The router: which handler answers a client request (SPEC.md's HTTP
 * interface). Everything under /v1/ is the proxy's; the rest is answered here
 * or by the admin, status and models handlers. */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <stdbool.h>

struct http_req;

/* The http_head_handler: checks an API path and, for a request with a body,
 * the credential of whoever may send one (an API key for POST /v1/..., the
 * admin key for /admin/...) before any of it is read. Any other request with
 * a body is answered from its head. arg is the worker. */
bool srv_head(struct http_req *req, void *arg);
/* The http_handler for every client request; arg is the worker. */
void srv_handle(struct http_req *req, void *arg);

#endif
