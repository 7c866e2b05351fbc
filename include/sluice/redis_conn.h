/* One connection to one Redis server, on sluice's own transport: a TCP or
 * unix socket, or TLS through OpenSSL (Debian's hiredis 0.14 has none), on
 * the worker's libevent loop; hiredis's reader parses the replies. Commands
 * are given in RESP, sent together at the end of the loop pass that queued
 * them and answered in order. AUTH (an ACL user or a password) and SELECT
 * go first; the connection is up when they are answered. Any failure closes
 * it with a named reason: every pending callback gets NULL, then the state
 * callback hears why. */
#ifndef SLUICE_REDIS_CONN_H
#define SLUICE_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redisReply;
struct reply_pool;
struct ssl_ctx_st;
struct rconn;

enum rconn_err {
    RC_OK,
    RC_RESOLVE,  /* the host name did not resolve */
    RC_CONNECT,  /* refused, unreachable, or the socket failed */
    RC_TLS,      /* the handshake failed (the certificate, the name, the protocol) */
    RC_AUTH,     /* AUTH or SELECT refused */
    RC_CLOSED,   /* the server closed the connection */
    RC_PROTOCOL, /* a reply that is not RESP, or one nobody asked for */
    RC_TIMEOUT,  /* not up within connect_timeout_ms, or (the owner's word) a call timed out */
    RC_DROPPED,  /* the owner closed it (a call timed out, a failover) */
};

/* The reason's words for the log. */
const char *rconn_err_name(enum rconn_err e);

struct rconn_opts {
    const char *host; /* or path */
    int port;
    const char *path; /* a unix socket */
    const char *user, *password; /* AUTH when password is set (user: an ACL user) */
    int db;                      /* SELECT when not 0 */
    struct ssl_ctx_st *tls;      /* NULL: plain; else TLS with the host as SNI and checked name */
    int64_t connect_timeout_ms;
};

/* A reply, or NULL when the connection failed before it came. The reply is
 * freed when the callback returns. */
typedef void (*rconn_reply_cb)(struct rconn *c, struct redisReply *rep, void *arg);
/* up: AUTH and SELECT answered. !up: closed, with why (then the owner frees
 * the connection, at once or later; it takes no more commands). */
typedef void (*rconn_state_cb)(struct rconn *c, bool up, enum rconn_err why, const char *detail,
                               void *arg);
/* A reply no command waits for: a pub/sub message. Without it such a reply
 * is a protocol error. */
typedef void (*rconn_push_cb)(struct rconn *c, struct redisReply *rep, void *arg);

/* Starts connecting. Commands may be queued at once; they go after AUTH and
 * SELECT. replies may be NULL (hiredis's own allocation). */
struct rconn *rconn_new(struct event_base *base, const struct rconn_opts *o,
                        struct reply_pool *replies, rconn_state_cb state, rconn_push_cb push,
                        void *arg);
/* Every pending callback gets NULL, then the connection is freed; no state
 * callback. Safe inside the connection's own callbacks. */
void rconn_free(struct rconn *c);
/* Closes it as failed: the pending callbacks get NULL, the state callback
 * hears why. */
void rconn_drop(struct rconn *c, enum rconn_err why);
/* Takes no more commands, and closes (the state callback hears
 * RC_DROPPED) once the commands sent are answered, or within_ms from now:
 * a stalled server's late replies are read and dropped rather than cut. */
void rconn_retire(struct rconn *c, int64_t within_ms);
bool rconn_up(const struct rconn *c);
/* The server's address as connected to, "host:port" or the socket's path. */
const char *rconn_where(const struct rconn *c);

/* Queues one command in RESP. False (and cb is not called) when the
 * connection is closed. cb may be NULL when no reply is wanted. */
bool rconn_send(struct rconn *c, const char *resp, size_t len, rconn_reply_cb cb, void *arg);
/* The same from arguments (lens may be NULL for C strings). */
bool rconn_sendv(struct rconn *c, int argc, const char *const *argv, const size_t *lens,
                 rconn_reply_cb cb, void *arg);
/* Appends one bulk string ("$len\r\nbytes\r\n") to b: commands in RESP. */
struct sl_buf;
void rconn_bulk(struct sl_buf *b, const char *s, size_t len);

/* Commands sent and not yet answered. */
size_t rconn_pending(const struct rconn *c);

#endif
