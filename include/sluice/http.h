/* HTTP/1.1 towards clients, on libevent bufferevents. A strict parser (one
 * Content-Length, Transfer-Encoding only "chunked", Host required, no NUL or
 * bare LF, no obs-fold, tokens for header names), total deadlines for the
 * head and the body, size caps, keep-alive and pipelining, 100-continue, and
 * responses either whole (Content-Length) or streamed (chunked) with
 * back-pressure. What a request means is the handler's business. */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/errors.h"
#include "sluice/util.h"

struct event_base;
struct evbuffer;
struct http_conn;
struct http_server;

struct http_header {
    struct sl_str name, value;
};

struct http_limits {
    int64_t max_header_size;
    int64_t max_body_size;
    int64_t header_timeout_ms;
    int64_t body_timeout_ms;
    int64_t keepalive_timeout_ms;
    int64_t send_timeout_ms;
    int64_t max_connections; /* this server's client connections at once; 0 = no cap */
    int64_t max_buffered;    /* request-body bytes held by every server of the process; 0 = none */
    int64_t max_buffered_share; /* what the bodies given one share may hold; 0 = max_buffered / 4 */
};

/* A named part of max_buffered (one API key's, say): the bodies of the
 * requests given it hold at most max_buffered_share together, so one client's
 * flood leaves the rest for others. One share per name, kept for the
 * process's life: a request keeps its own across reloads. */
struct http_share;
struct http_share *http_share_named(const char *name);

/* Bodies larger than this may use only 7/8 of max_buffered: the last eighth
 * is kept for ordinary requests, so a flood of uploads cannot lock them out. */
#define HTTP_SMALL_BODY (64 * 1024)

#define HTTP_MAX_HEADERS 100
#define HTTP_REQUEST_ID_MAX 128

struct http_req {
    struct http_conn *conn;
    struct sl_str method, target, path, query; /* point into head */
    int minor;                                  /* HTTP/1.minor */
    int listener;                               /* the kind of listener it came in on */
    int nheaders; /* headers[0..nheaders) */
    char *head; /* owned copy of the request line and headers */
    struct sl_buf body;
    bool keepalive;
    bool expect_continue;
    int64_t content_length; /* -1: chunked or none */
    bool chunked;
    int64_t start_us; /* first byte of this request */

    /* Response side. */
    int status;
    bool streaming;
    uint64_t bytes_out;

    /* Left by the head handler for the request handler; http.c never reads them. */
    const void *checked_key;
    uint64_t checked_generation;
    void *checked_ref;                 /* what keeps checked_key alive, if anything: */
    void (*checked_unref)(void *ref);  /* released by it when the request is freed */
    bool checked_jwt;                  /* the credential was a JWT (jwks.h): who it names: */
    char checked_user[129];            /* the end user (EU_MAX + 1) */
    char checked_team[65];             /* a [team] from its team claim; "" none */
    char request_id[HTTP_REQUEST_ID_MAX + 1]; /* http_request_id's; "" until first asked */
    bool request_id_sent; /* it is the client's own X-Request-Id */
    int64_t body_charged; /* bytes of max_buffered this request's body holds */
    struct http_share *share; /* which also holds them, if any (http_req_share) */
    int64_t body_limit;   /* max_body_size, unless the head handler allows more (uploads) */
    bool held;            /* the head handler decides later (http_req_hold) */
    unsigned char dialect; /* enum sl_dialect: the shape http_send_error answers in */

    /* Set by the handler that keeps the request beyond its call. */
    void *owner;
    void (*on_abort)(struct http_req *req); /* client gone; req is freed right after */
    void (*on_drain)(struct http_req *req); /* buffered output fell below the low mark */

    struct http_req *next_spare; /* http.c's list of structs kept for reuse */
    /* Last: a reused struct is zeroed up to here (3 kB of headers are not). */
    struct http_header headers[HTTP_MAX_HEADERS];
};

/* Called once per complete request. The handler answers with http_respond*
 * or http_stream_*; either now or later from another event. */
typedef void (*http_handler)(struct http_req *req, void *arg);
/* Called once a request's head is parsed, before any of its body is read.
 * Returns true to go on; false after answering the request itself
 * (http_respond*, http_send_error). A request that has a body is then closed
 * after that answer, the body never read (what arrives meanwhile is drained
 * for a moment, so the client reads the answer rather than a reset). */
typedef bool (*http_head_handler)(struct http_req *req, void *arg);

struct http_server *http_server_new(struct event_base *base, const struct http_limits *limits,
                                    http_handler handler, void *arg);
void http_server_set_head_handler(struct http_server *srv, http_head_handler head);
/* Every response of this server carries X-Request-Id (http_request_id). */
void http_server_send_request_ids(struct http_server *srv);
/* What a listener is for; its requests carry it (http_req.listener). */
enum { HTTP_LISTENER_API = 0, HTTP_LISTENER_OPERATOR = 1 };
/* Starts accepting on a socket that listens already (ownership of fd
 * passes; its backlog stays the one it was given); with tls, its
 * connections speak TLS with the context of http_server_set_tls. */
int http_server_listen(struct http_server *srv, int fd, int kind, bool tls);
/* The TLS context new connections on tls listeners take (tls.h; the server
 * and each connection hold a reference of their own). */
struct ssl_ctx_st;
void http_server_set_tls(struct http_server *srv, struct ssl_ctx_st *ctx);
void http_server_set_limits(struct http_server *srv, const struct http_limits *limits);
/* Stops accepting; open connections stay until their requests end. */
void http_server_stop_accepting(struct http_server *srv);
/* Connections with a request in progress. */
int http_server_busy(const struct http_server *srv);
/* Open client connections (busy, flushing or idle). */
int http_server_connections(const struct http_server *srv);
/* Request-body bytes held by every server of the process. */
int64_t http_buffered_bytes(void);
/* From the head handler, before it returns true: the decision comes later
 * (a key looked up in Redis). Nothing more of the connection is parsed
 * until http_req_release lets the request go on (its body is read, then the
 * request handler runs), or the request is answered (http_send_error: it is
 * not read further). on_abort, if set, runs if the client leaves or the
 * header deadline passes meanwhile; the request is freed right after. */
void http_req_hold(struct http_req *req);
void http_req_release(struct http_req *req);

/* From the head handler: the request's body counts against share too. The
 * first share given stays (a reload checking the key again changes nothing). */
void http_req_share(struct http_req *req, struct http_share *share);
/* Connections accepted since start. */
uint64_t http_server_accepted(const struct http_server *srv);
/* Closes idle keep-alive connections (drain on shutdown). */
void http_server_close_idle(struct http_server *srv);
void http_server_free(struct http_server *srv);

/* The request's id: the client's X-Request-Id when it is 1-128 characters
 * of [A-Za-z0-9._:-], else 32 hex digits made here (another value could
 * inject markup or log lines wherever an id is shown). The same on every
 * call. */
const char *http_request_id(struct http_req *req);
/* Whether a client's X-Request-Id value may be used as it is. */
bool http_request_id_valid(const char *p, size_t len);

/* Value of the first header with this name (case-insensitive), or NULL. */
const struct sl_str *http_header(const struct http_req *req, const char *name);

/* A complete response. headers are "Name: value\r\n" lines (may be NULL);
 * Content-Length, Date and Connection are added here. The request is
 * finished and freed: do not touch req afterwards. */
void http_respond(struct http_req *req, int status, const char *headers, size_t hlen,
                  const void *body, size_t blen);
/* Same, taking the body's bytes out of an evbuffer without copying. */
void http_respond_evbuffer(struct http_req *req, int status, const char *headers, size_t hlen,
                           struct evbuffer *body);
/* The one place sluice's own errors are sent (OpenAI's JSON shape). */
void http_send_error(struct http_req *req, enum sl_error e, const char *message,
                     const char *param, const char *headers);

/* A streamed response: chunked on HTTP/1.1, close-delimited on 1.0. */
void http_stream_begin(struct http_req *req, int status, const char *headers, size_t hlen);
void http_stream_write(struct http_req *req, const void *data, size_t len);
/* The same, written at the end of the current loop pass: the pieces queued
 * meanwhile (curl hands over one upstream chunk at a time) go out in one write. */
void http_stream_queue(struct http_req *req, const void *data, size_t len);
/* Ends the stream; req is freed. */
void http_stream_end(struct http_req *req);
/* Ends a stream abnormally: no terminating chunk, the connection is closed. */
void http_stream_abort(struct http_req *req);
/* Bytes queued for the client but not yet written. */
size_t http_pending_output(const struct http_req *req);

const char *http_reason(int status);

/* Exposed for unit tests: parses the request line and headers in
 * req->head[0..len) and validates framing. Returns 0, or an sl_error with a
 * message in *why. */
int http_parse_head(struct http_req *req, size_t len, const char **why);

#endif
