/* One Redis connection on sluice's own transport (redis_conn.h). Plain
 * libevent events on the socket, as http.c's connections: a read event that
 * stays armed, a write event armed only while output waits, and a flush
 * event that sends what a loop pass queued in one write. */
#include "sluice/redis_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/redis_reply.h"
#include "sluice/util.h"

#define READ_CHUNK 16384

enum cstate { C_CONNECTING, C_HANDSHAKE, C_SETUP, C_UP, C_CLOSED };

struct waiter {
    rconn_reply_cb cb;
    void *arg;
};

struct rconn {
    struct event_base *base;
    int fd;
    SSL *ssl;
    enum cstate st;
    struct event *rd, *wr, *flush_ev, *timer;
    bool write_armed;
    bool read_wants_write; /* SSL_read asked for the socket to be writable */
    struct sl_buf out;
    size_t out_off;
    redisReader *reader;
    struct waiter *q; /* a ring of the commands sent, oldest at head */
    size_t head, len, cap;
    int setup_left; /* AUTH and SELECT replies still to come */
    rconn_state_cb state;
    rconn_push_cb push;
    void *arg;
    bool retiring; /* takes no more commands; closes once the last is answered */
    int busy;      /* inside one of our callbacks */
    bool free_me;  /* rconn_free was called while busy */
    char where[300];
    char host[256];
    struct ssl_ctx_st *tls; /* NULL: plain */
    enum rconn_err why; /* a socket that never opened, and its reason */
    char detail[128];
    struct addrinfo *ai, *ai_next; /* the addresses to try, and the next */
    bool ai_ours;                  /* ai is a unix socket's, made here (not getaddrinfo's) */
};

const char *rconn_err_name(enum rconn_err e)
{
    static const char *const names[] = {
        [RC_OK] = "ok",
        [RC_RESOLVE] = "cannot resolve the host",
        [RC_CONNECT] = "cannot connect",
        [RC_TLS] = "TLS handshake failed",
        [RC_AUTH] = "authentication refused",
        [RC_CLOSED] = "connection closed",
        [RC_PROTOCOL] = "protocol error",
        [RC_TIMEOUT] = "timed out",
        [RC_DROPPED] = "dropped",
    };
    return (unsigned)e < SL_ARRAY_LEN(names) ? names[e] : "error";
}

/* ---- the queue of commands waiting for their replies ---- */

static void q_push(struct rconn *c, rconn_reply_cb cb, void *arg)
{
    if (c->len == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        struct waiter *q = sl_malloc(cap * sizeof(*q));
        for (size_t i = 0; i < c->len; i++)
            q[i] = c->q[(c->head + i) % c->cap];
        free(c->q);
        c->q = q;
        c->head = 0;
        c->cap = cap;
    }
    c->q[(c->head + c->len) % c->cap] = (struct waiter){ cb, arg };
    c->len++;
}

static struct waiter q_pop(struct rconn *c)
{
    struct waiter w = c->q[c->head];
    c->head = (c->head + 1) % c->cap;
    c->len--;
    return w;
}

static bool do_write(struct rconn *c);

/* ---- closing ---- */

static void destroy(struct rconn *c)
{
    if (c->rd) {
        event_free(c->rd);
        event_free(c->wr);
    }
    if (c->ai_ours)
        free(c->ai);
    else if (c->ai)
        freeaddrinfo(c->ai);
    event_free(c->flush_ev);
    event_free(c->timer);
    if (c->reader)
        redisReaderFree(c->reader);
    sl_buf_free(&c->out);
    free(c->q);
    free(c);
}

static void leave(struct rconn *c)
{
    if (--c->busy == 0 && c->free_me)
        destroy(c);
}

/* Closes the socket, fails the waiting commands, and (notify) tells the owner. */
static void close_conn(struct rconn *c, enum rconn_err why, const char *detail, bool notify)
{
    if (c->st == C_CLOSED)
        return;
    c->st = C_CLOSED;
    c->busy++;
    if (c->rd) {
        event_del(c->rd);
        event_del(c->wr);
    }
    event_del(c->flush_ev);
    event_del(c->timer);
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    ERR_clear_error();
    while (c->len) {
        struct waiter w = q_pop(c);
        if (w.cb)
            w.cb(c, NULL, w.arg);
    }
    if (notify)
        c->state(c, false, why, detail, c->arg);
    leave(c);
}

void rconn_free(struct rconn *c)
{
    if (!c)
        return;
    c->busy++;
    if (c->st == C_UP && c->out.len > c->out_off && !c->write_armed)
        do_write(c); /* what is queued goes out if the socket takes it now (no waiting) */
    close_conn(c, RC_DROPPED, NULL, false);
    c->free_me = true;
    leave(c);
}

void rconn_drop(struct rconn *c, enum rconn_err why)
{
    close_conn(c, why, NULL, true);
}

void rconn_retire(struct rconn *c, int64_t within_ms)
{
    if (c->st == C_CLOSED || c->retiring)
        return;
    c->retiring = true;
    if (!c->len) {
        close_conn(c, RC_DROPPED, NULL, true);
        return;
    }
    struct timeval tv = { (time_t)(within_ms / 1000), (suseconds_t)(within_ms % 1000) * 1000 };
    evtimer_add(c->timer, &tv);
}

bool rconn_up(const struct rconn *c)
{
    return c->st == C_UP && !c->retiring;
}

const char *rconn_where(const struct rconn *c)
{
    return c->where;
}

size_t rconn_pending(const struct rconn *c)
{
    return c->len;
}

/* ---- replies ---- */

static void free_reply(struct rconn *c, void *reply)
{
    if (c->reader->fn && c->reader->fn->freeObject)
        c->reader->fn->freeObject(reply);
}

static void setup_reply(struct rconn *c, redisReply *rep, void *arg)
{
    (void)arg;
    if (!rep || c->st == C_CLOSED)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        close_conn(c, RC_AUTH, rep->str, true);
        return;
    }
    if (--c->setup_left == 0 && c->st == C_SETUP) {
        c->st = C_UP;
        event_del(c->timer);
        c->state(c, true, RC_OK, NULL, c->arg);
    }
}

/* Every whole reply the reader holds, each to the command it answers. */
static void take_replies(struct rconn *c)
{
    while (c->st != C_CLOSED) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            close_conn(c, RC_PROTOCOL, c->reader->errstr, true);
            return;
        }
        if (!reply)
            return;
        if (c->len) {
            struct waiter w = q_pop(c);
            if (w.cb)
                w.cb(c, reply, w.arg);
            if (c->retiring && !c->len) {
                free_reply(c, reply);
                close_conn(c, RC_DROPPED, NULL, true);
                return;
            }
        } else if (c->push) {
            c->push(c, reply, c->arg);
        } else {
            free_reply(c, reply);
            close_conn(c, RC_PROTOCOL, "a reply no command asked for", true);
            return;
        }
        free_reply(c, reply);
    }
}

/* ---- the socket ---- */

static void arm_write(struct rconn *c)
{
    if (!c->write_armed) {
        c->write_armed = true;
        event_add(c->wr, NULL);
    }
}

static void tls_failed(struct rconn *c, enum rconn_err why)
{
    char detail[256] = "";
    unsigned long e = ERR_get_error();
    long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    if (v != X509_V_OK)
        snprintf(detail, sizeof(detail), "certificate: %s", X509_verify_cert_error_string(v));
    else if (e)
        ERR_error_string_n(e, detail, sizeof(detail));
    close_conn(c, why, detail[0] ? detail : NULL, true);
}

/* Sends what waits in out; false if the connection failed. */
static bool do_write(struct rconn *c)
{
    while (c->out_off < c->out.len) {
        size_t left = c->out.len - c->out_off;
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int k = SSL_write(c->ssl, c->out.data + c->out_off, (int)SL_MIN(left, 1 << 30));
            if (k <= 0) {
                int err = SSL_get_error(c->ssl, k);
                if (err == SSL_ERROR_WANT_WRITE) {
                    arm_write(c);
                    return true;
                }
                if (err == SSL_ERROR_WANT_READ)
                    return true; /* the read event retries */
                tls_failed(c, RC_CLOSED);
                return false;
            }
            n = k;
        } else {
            n = send(c->fd, c->out.data + c->out_off, left, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    arm_write(c);
                    return true;
                }
                close_conn(c, RC_CLOSED, strerror(errno), true);
                return false;
            }
        }
        c->out_off += (size_t)n;
    }
    c->out.len = c->out_off = 0;
    return true;
}

/* Reads what the socket has; false if the connection failed. */
static bool do_read(struct rconn *c)
{
    char buf[READ_CHUNK];
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int k = SSL_read(c->ssl, buf, sizeof(buf));
            if (k <= 0) {
                int err = SSL_get_error(c->ssl, k);
                if (err == SSL_ERROR_WANT_READ)
                    return true;
                if (err == SSL_ERROR_WANT_WRITE) {
                    c->read_wants_write = true;
                    arm_write(c);
                    return true;
                }
                if (err == SSL_ERROR_ZERO_RETURN)
                    close_conn(c, RC_CLOSED, NULL, true);
                else
                    tls_failed(c, RC_CLOSED);
                return false;
            }
            n = k;
        } else {
            n = recv(c->fd, buf, sizeof(buf), 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return true;
            if (n <= 0) {
                close_conn(c, RC_CLOSED, n < 0 ? strerror(errno) : NULL, true);
                return false;
            }
        }
        if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
            close_conn(c, RC_PROTOCOL, c->reader->errstr, true);
            return false;
        }
        take_replies(c);
        if (c->st == C_CLOSED)
            return false;
        if (!c->ssl && (size_t)n < sizeof(buf))
            return true; /* drained: the next readable event brings more */
    }
}

static void start_talking(struct rconn *c)
{
    c->st = c->setup_left ? C_SETUP : C_UP;
    event_add(c->rd, NULL);
    if (c->st == C_UP) {
        event_del(c->timer);
        c->state(c, true, RC_OK, NULL, c->arg);
        if (c->st == C_CLOSED)
            return;
    }
    do_write(c);
}

static void handshake(struct rconn *c)
{
    ERR_clear_error();
    int k = SSL_connect(c->ssl);
    if (k == 1) {
        if (c->write_armed) {
            event_del(c->wr);
            c->write_armed = false;
        }
        start_talking(c);
        return;
    }
    int err = SSL_get_error(c->ssl, k);
    if (err == SSL_ERROR_WANT_READ) {
        event_add(c->rd, NULL);
        return;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        arm_write(c);
        return;
    }
    tls_failed(c, RC_TLS);
}

static bool is_ip(const char *host)
{
    struct in6_addr a;
    return inet_pton(AF_INET, host, &a) == 1 || inet_pton(AF_INET6, host, &a) == 1;
}

/* The socket is connected: TLS begins, or the commands go. */
static void connected(struct rconn *c, struct ssl_ctx_st *tls)
{
    if (!tls) {
        start_talking(c);
        return;
    }
    c->ssl = SSL_new(tls);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        tls_failed(c, RC_TLS);
        return;
    }
    if (c->host[0]) {
        bool ip = is_ip(c->host);
        if (!ip)
            SSL_set_tlsext_host_name(c->ssl, c->host);
        X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
        if (ip)
            X509_VERIFY_PARAM_set1_ip_asc(param, c->host);
        else
            X509_VERIFY_PARAM_set1_host(param, c->host, 0);
    }
    c->st = C_HANDSHAKE;
    handshake(c);
}

static bool connect_next(struct rconn *c);

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rconn *c = arg;
    c->busy++;
    if (c->st == C_HANDSHAKE)
        handshake(c);
    else if (c->st == C_SETUP || c->st == C_UP) {
        if (do_read(c) && c->out.len > c->out_off && !c->write_armed)
            do_write(c); /* an SSL_write that wanted to read first */
    }
    leave(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rconn *c = arg;
    c->busy++;
    c->write_armed = false;
    if (c->st == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            snprintf(c->detail, sizeof(c->detail), "%s", strerror(err));
            if (!connect_next(c)) /* refused on this address: the host's next, if any */
                close_conn(c, RC_CONNECT, c->detail, true);
        } else {
            connected(c, c->tls);
        }
    } else if (c->st == C_HANDSHAKE) {
        handshake(c);
    } else if (c->st == C_SETUP || c->st == C_UP) {
        bool ok = true;
        if (c->read_wants_write) {
            c->read_wants_write = false;
            ok = do_read(c);
        }
        if (ok)
            do_write(c);
    }
    leave(c);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rconn *c = arg;
    c->busy++;
    if ((c->st == C_SETUP || c->st == C_UP) && !c->write_armed)
        do_write(c);
    leave(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rconn *c = arg;
    c->busy++;
    if (c->st != C_UP || c->retiring)
        close_conn(c, c->retiring ? RC_DROPPED : RC_TIMEOUT,
                   c->retiring ? NULL : "not connected within the connect timeout", true);
    leave(c);
}

/* The next address of the host's to try (a name may resolve to ::1 and
 * 127.0.0.1, and the server listen on one): a non-blocking socket
 * connecting to it, its events made; false when none is left. */
static bool connect_next(struct rconn *c)
{
    if (c->rd) {
        event_free(c->rd);
        event_free(c->wr);
        c->rd = c->wr = NULL;
        c->write_armed = false;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    while (c->fd < 0 && c->ai_next) {
        const struct addrinfo *a = c->ai_next;
        c->ai_next = a->ai_next;
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (a->ai_family != AF_UNIX) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS &&
            errno != EAGAIN) {
            snprintf(c->detail, sizeof(c->detail), "%s", strerror(errno));
            close(fd);
            continue;
        }
        c->fd = fd;
    }
    if (c->fd < 0)
        return false;
    c->rd = event_new(c->base, c->fd, EV_READ | EV_PERSIST, on_read, c);
    c->wr = event_new(c->base, c->fd, EV_WRITE, on_write, c);
    arm_write(c); /* writable once connected */
    return true;
}

/* The addresses to try: the socket's path, or what the host resolves to. */
static bool resolve(struct rconn *c, const struct rconn_opts *o)
{
    if (o->path) {
        struct addrinfo *a = sl_calloc(1, sizeof(*a) + sizeof(struct sockaddr_un));
        struct sockaddr_un *sa = (struct sockaddr_un *)(a + 1);
        sa->sun_family = AF_UNIX;
        snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", o->path);
        *a = (struct addrinfo){ .ai_family = AF_UNIX, .ai_socktype = SOCK_STREAM,
                                .ai_addr = (struct sockaddr *)sa, .ai_addrlen = sizeof(*sa) };
        c->ai = c->ai_next = a;
        c->ai_ours = true;
        return true;
    }
    char port[8];
    snprintf(port, sizeof(port), "%d", o->port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    int rc = getaddrinfo(o->host, port, &hints, &c->ai);
    if (rc != 0) {
        c->ai = NULL;
        c->why = RC_RESOLVE;
        snprintf(c->detail, sizeof(c->detail), "%s", gai_strerror(rc));
        return false;
    }
    c->ai_next = c->ai;
    return true;
}

/* Fails a connection that never opened from the loop, not inside rconn_new. */
static void open_failed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rconn *c = arg;
    c->busy++;
    close_conn(c, c->why, c->detail[0] ? c->detail : NULL, true);
    leave(c);
}

static void queue_setup(struct rconn *c, const struct rconn_opts *o)
{
    if (o->password && o->password[0]) {
        const char *argv[3] = { "AUTH" };
        int argc = 1;
        if (o->user && o->user[0])
            argv[argc++] = o->user;
        argv[argc++] = o->password;
        rconn_sendv(c, argc, argv, NULL, setup_reply, NULL);
        c->setup_left++;
    }
    if (o->db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", o->db);
        const char *argv[2] = { "SELECT", db };
        rconn_sendv(c, 2, argv, NULL, setup_reply, NULL);
        c->setup_left++;
    }
}

struct rconn *rconn_new(struct event_base *base, const struct rconn_opts *o,
                        struct reply_pool *replies, rconn_state_cb state, rconn_push_cb push,
                        void *arg)
{
    struct rconn *c = sl_calloc(1, sizeof(*c));
    c->base = base;
    c->state = state;
    c->push = push;
    c->arg = arg;
    c->tls = o->tls;
    c->reader = redisReaderCreate();
    if (replies)
        reply_pool_attach(replies, c->reader);
    if (o->path)
        snprintf(c->where, sizeof(c->where), "%s", o->path);
    else
        snprintf(c->where, sizeof(c->where), strchr(o->host, ':') ? "[%s]:%d" : "%s:%d", o->host,
                 o->port);
    if (!o->path)
        snprintf(c->host, sizeof(c->host), "%s", o->host);
    c->fd = -1;
    c->flush_ev = event_new(base, -1, 0, on_flush, c);
    c->timer = evtimer_new(base, on_timer, c);
    c->st = C_CONNECTING;
    queue_setup(c, o);
    c->why = RC_CONNECT;
    if (!resolve(c, o) || !connect_next(c)) {
        /* the owner hears it from the loop, as every other failure */
        event_free(c->timer);
        c->timer = evtimer_new(base, open_failed, c);
        event_active(c->timer, EV_TIMEOUT, 0);
        return c;
    }
    int64_t ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 1000;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(c->timer, &tv);
    arm_write(c); /* writable once connected */
    return c;
}

bool rconn_send(struct rconn *c, const char *resp, size_t len, rconn_reply_cb cb, void *arg)
{
    if (c->st == C_CLOSED || c->retiring)
        return false;
    if (c->out_off && c->out_off == c->out.len)
        c->out.len = c->out_off = 0;
    sl_buf_append(&c->out, resp, len);
    q_push(c, cb, arg);
    if ((c->st == C_SETUP || c->st == C_UP) && !c->write_armed)
        event_active(c->flush_ev, EV_WRITE, 0);
    return true;
}

/* One bulk string in RESP, written here: hiredis's own formatting went
 * through sdscatfmt and cost more than the rest of a limiter call. */
void rconn_bulk(struct sl_buf *b, const char *s, size_t len)
{
    sl_buf_reserve(b, len + 32);
    char *p = b->data + b->len;
    *p++ = '$';
    if (len < 100) { /* nearly every argument: one or two digits, written here */
        if (len >= 10)
            *p++ = (char)('0' + len / 10);
        *p++ = (char)('0' + len % 10);
    } else {
        p += sl_fmt_int((int64_t)len, p);
    }
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, s, len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    *p = '\0';
    b->len = (size_t)(p - b->data);
}

bool rconn_sendv(struct rconn *c, int argc, const char *const *argv, const size_t *lens,
                 rconn_reply_cb cb, void *arg)
{
    struct sl_buf b = { 0 };
    sl_buf_append(&b, "*", 1);
    sl_buf_int(&b, argc);
    sl_buf_append(&b, "\r\n", 2);
    for (int i = 0; i < argc; i++)
        rconn_bulk(&b, argv[i], lens ? lens[i] : strlen(argv[i]));
    bool ok = rconn_send(c, b.data, b.len, cb, arg);
    sl_buf_free(&b);
    return ok;
}
