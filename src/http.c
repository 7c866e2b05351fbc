/* HTTP/1.1 server side on libevent events. libevent's evhttp is not used
 * because its parser cannot be made strict enough (it splits header lines at
 * NUL, keeps "Content-Length :" as another header, accepts any
 * Transfer-Encoding and has no total deadlines); here every byte of the head
 * is checked before a request reaches a handler, and bad framing closes the
 * connection. Nor are bufferevents used: they ask the kernel how much is
 * readable before every read and wait for writability before every write;
 * here a response is written at once, and EPOLLOUT is watched only while
 * the socket is full (as nginx does). On a tls listener the same reads and
 * writes go through the connection's SSL (conn_recv, conn_send); the
 * handshake happens in the first reads, under the header deadline. */
#include "sluice/http.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sluice/log.h"

enum conn_state {
    CONN_IDLE,     /* between requests: keepalive deadline */
    CONN_HEAD,     /* reading request line + headers: header deadline */
    CONN_BODY,     /* reading the body: body deadline */
    CONN_HELD,     /* the head handler is still deciding (http_req_hold): nothing more is parsed */
    CONN_HANDLING, /* a handler owns the request */
    CONN_CLOSING,  /* flushing the last response, then close */
};

enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_CRLF, CH_TRAILER };

struct http_conn {
    struct http_server *srv;
    evutil_socket_t fd;
    struct evbuffer *in, *out;
    struct event *rev;    /* readable; persistent while reading */
    struct event *wev;    /* writable; added only while output waits (send_timeout) */
    struct event *timer;  /* head/body/keepalive deadline */
    struct event *resume; /* parses pipelined input after a response */
    struct event *reaper; /* frees the connection after a failed write */
    bool reading, writing, dead;
    enum conn_state state;
    struct http_req *req;
    size_t head_scanned;  /* bytes of input already checked for the end of head */
    bool lingering;       /* our side is shut down; draining the client's */
    bool held_keepalive;  /* CONN_HELD: the request's keepalive, once it goes on */
    int listener;         /* the kind of listener it was accepted on */
    SSL *ssl;             /* on a tls listener */
    bool tls_read_wants_write; /* a TLS read waits for the socket to take a write */
    enum chunk_state chunk;
    int64_t chunk_left;
    struct http_conn *prev, *next;
};

/* The accept callback's argument: the server, and what this listener is for. */
struct listener_ctx {
    struct http_server *srv;
    int kind;
    bool tls;
};

struct http_server {
    struct event_base *base;
    struct http_limits limits;
    http_handler handler;
    http_head_handler head_handler;
    void *arg;
    struct evconnlistener **listeners;
    struct listener_ctx **listener_ctxs; /* each listener's accept argument */
    int nlisteners;
    bool accept_paused; /* at max_connections: new ones wait in the kernel's backlog */
    bool request_ids;   /* X-Request-Id on every response */
    struct http_conn *conns; /* all open connections */
    int busy;
    int nconns;
    uint64_t accepted;
    SSL_CTX *tls; /* for new connections on tls listeners (a reference of its own) */
    struct http_req *spare_reqs; /* freed requests, kept for the next ones */
    int nspare;
};

#define SPARE_REQS_MAX 256

/* Request-body bytes held by every server (worker) of the process. */
static atomic_llong buffered;

struct http_share {
    atomic_llong held; /* body bytes of the requests given this share */
    struct http_share *next;
    char name[];
};

#define SHARE_BUCKETS 65536 /* 100,000 keys: about 1.5 names a bucket */
static struct http_share *shares[SHARE_BUCKETS];
static pthread_mutex_t shares_lock = PTHREAD_MUTEX_INITIALIZER;

#define OUTPUT_LOW_MARK (16 * 1024)
#define CHUNK_LINE_MAX 1024
#define READ_CHUNK (16 * 1024)

static void conn_process(struct http_conn *c);
static void conn_free(struct http_conn *c);
static void conn_flush(struct http_conn *c);

/* ---- character classes --------------------------------------------------- */

/* RFC 9110 tchar: letters, digits and !#$%&'*+-.^_`|~ (a table: every
 * header name's every byte is checked). */
static const bool tchar[256] = {
    SL_ALNUM_CHARS, ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
};

static bool is_tchar(unsigned char ch)
{
    return tchar[ch];
}

/* field-value: VCHAR, obs-text, SP, HTAB. */
static bool is_value_char(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* Whether every byte of [c, end) is a field value's: eight at a time where
 * none is below 0x20 or 0x7f (a long token is most of a request's head),
 * byte by byte where one is (HTAB is allowed). */
static bool value_chars(const char *c, const char *end)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    for (; end - c >= 8; c += 8) {
        uint64_t w, del;
        memcpy(&w, c, 8);
        del = w ^ (ones * 0x7f);
        bool odd = (((w - ones * 0x20) & ~w) | ((del - ones) & ~del)) & highs;
        for (int i = 0; odd && i < 8; i++)
            if (!is_value_char((unsigned char)c[i]))
                return false;
    }
    for (; c < end; c++)
        if (!is_value_char((unsigned char)*c))
            return false;
    return true;
}

/* Path characters we forward: RFC 3986 pchar and '/', no '\\' or '#'. */
static bool is_path_char(unsigned char ch)
{
    static const char extra[] = "-._~!$&'()*+,;=:@/%";
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr(extra, ch));
}

/* ---- head parsing --------------------------------------------------------- */

static bool has_dot_segment(struct sl_str path)
{
    /* Decode %2e so "/v1/%2e%2e/x" cannot climb out of the upstream's base. */
    char seg[4];
    size_t n = 0;
    for (size_t i = 0; i <= path.len; i++) {
        if (i == path.len || path.p[i] == '/') {
            if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return true;
            n = 0;
            continue;
        }
        char ch = path.p[i];
        if (ch == '%' && i + 2 < path.len && path.p[i + 1] == '2' &&
            (path.p[i + 2] == 'e' || path.p[i + 2] == 'E')) {
            ch = '.';
            i += 2;
        }
        if (n < sizeof(seg))
            seg[n] = ch;
        n++;
    }
    return false;
}

static int parse_request_line(struct http_req *req, char **pos, char *end, const char **why)
{
    char *p = *pos, *eol = memchr(p, '\r', (size_t)(end - p));
    if (!eol) {
        *why = "malformed request line";
        return ERR_BAD_HTTP;
    }
    char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1) {
        *why = "malformed request line";
        return ERR_BAD_HTTP;
    }
    for (char *m = p; m < sp1; m++) {
        if (!is_tchar((unsigned char)*m)) {
            *why = "malformed request method";
            return ERR_BAD_HTTP;
        }
    }
    req->method = (struct sl_str){ p, (size_t)(sp1 - p) };
    req->target = (struct sl_str){ sp1 + 1, (size_t)(sp2 - sp1 - 1) };
    struct sl_str version = { sp2 + 1, (size_t)(eol - sp2 - 1) };
    if (sl_str_eq(version, "HTTP/1.1")) {
        req->minor = 1;
    } else if (sl_str_eq(version, "HTTP/1.0")) {
        req->minor = 0;
    } else if (version.len == 8 && memcmp(version.p, "HTTP/", 5) == 0) {
        *why = "only HTTP/1.0 and HTTP/1.1 are supported";
        return ERR_HTTP_VERSION;
    } else {
        *why = "malformed HTTP version";
        return ERR_BAD_HTTP;
    }
    if (req->target.p[0] != '/') {
        *why = "request target must be an absolute path";
        return ERR_BAD_HTTP;
    }
    const char *q = memchr(req->target.p, '?', req->target.len);
    req->path = (struct sl_str){ req->target.p, q ? (size_t)(q - req->target.p) : req->target.len };
    req->query = q ? (struct sl_str){ q + 1, req->target.len - req->path.len - 1 }
                   : (struct sl_str){ "", 0 };
    for (size_t i = 0; i < req->path.len; i++) {
        if (!is_path_char((unsigned char)req->path.p[i])) {
            *why = "request path contains a character that must be percent-encoded";
            return ERR_BAD_HTTP;
        }
    }
    for (size_t i = 0; i < req->query.len; i++) {
        unsigned char ch = (unsigned char)req->query.p[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '#') {
            *why = "request query contains a character that must be percent-encoded";
            return ERR_BAD_HTTP;
        }
    }
    if (has_dot_segment(req->path)) {
        *why = "request path contains a dot segment";
        return ERR_BAD_HTTP;
    }
    *pos = eol + 2;
    return 0;
}

static bool parse_content_length(struct sl_str v, int64_t *out)
{
    if (v.len == 0 || v.len > 18)
        return false;
    int64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return false;
        n = n * 10 + (v.p[i] - '0');
    }
    *out = n;
    return true;
}

/* Connection: close / keep-alive, as a comma-separated token list. */
static void parse_connection(struct http_req *req, struct sl_str v)
{
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t start = i;
        while (i < v.len && v.p[i] != ',' && v.p[i] != ' ' && v.p[i] != '\t')
            i++;
        struct sl_str tok = { v.p + start, i - start };
        if (sl_str_caseeq(tok, "close"))
            req->keepalive = false;
        else if (sl_str_caseeq(tok, "keep-alive") && req->minor == 0)
            req->keepalive = true;
    }
}

/* The framing rules that keep a request from meaning two things to two parsers. */
static int check_framing(struct http_req *req, const char **why)
{
    int hosts = 0, lengths = 0, encodings = 0;
    req->content_length = -1;
    req->keepalive = req->minor == 1;
    for (int i = 0; i < req->nheaders; i++) {
        struct http_header *h = &req->headers[i];
        if (sl_str_caseeq(h->name, "host")) {
            hosts++;
        } else if (sl_str_caseeq(h->name, "content-length")) {
            if (++lengths > 1) {
                *why = "more than one Content-Length header";
                return ERR_BAD_HTTP;
            }
            if (!parse_content_length(h->value, &req->content_length)) {
                *why = "invalid Content-Length";
                return ERR_BAD_HTTP;
            }
        } else if (sl_str_caseeq(h->name, "transfer-encoding")) {
            encodings++;
            if (!sl_str_caseeq(h->value, "chunked")) {
                *why = "unsupported Transfer-Encoding (only chunked is accepted)";
                return ERR_BAD_HTTP;
            }
            req->chunked = true;
        } else if (sl_str_caseeq(h->name, "connection")) {
            parse_connection(req, h->value);
        } else if (sl_str_caseeq(h->name, "expect")) {
            if (!sl_str_caseeq(h->value, "100-continue")) {
                *why = "unsupported Expect value";
                return ERR_EXPECTATION;
            }
            req->expect_continue = req->minor == 1;
        }
    }
    if (encodings > 1) {
        *why = "more than one Transfer-Encoding header";
        return ERR_BAD_HTTP;
    }
    if (req->chunked && (lengths || req->minor == 0)) {
        *why = req->minor == 0 ? "Transfer-Encoding is not allowed in HTTP/1.0"
                               : "both Transfer-Encoding and Content-Length";
        return ERR_BAD_HTTP;
    }
    if (req->minor == 1 && hosts != 1) {
        *why = hosts ? "more than one Host header" : "missing Host header";
        return ERR_BAD_HTTP;
    }
    if (hosts > 1) {
        *why = "more than one Host header";
        return ERR_BAD_HTTP;
    }
    return 0;
}

int http_parse_head(struct http_req *req, size_t len, const char **why)
{
    char *p = req->head, *end = req->head + len;
    /* The caller found CRLFCRLF at the end; bytes were already checked for NUL
     * and bare LF. */
    int rc = parse_request_line(req, &p, end, why);
    if (rc)
        return rc;
    req->nheaders = 0;
    while (p < end) {
        char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol || eol + 1 >= end || eol[1] != '\n') {
            *why = "malformed header line";
            return ERR_BAD_HTTP;
        }
        if (eol == p)
            break; /* the empty line */
        if (*p == ' ' || *p == '\t') {
            *why = "obsolete header line folding";
            return ERR_BAD_HTTP;
        }
        char *colon = p;
        while (colon < eol && is_tchar((unsigned char)*colon))
            colon++;
        if (colon == p || colon == eol || *colon != ':') {
            *why = "malformed header name (no space is allowed before ':')";
            return ERR_BAD_HTTP;
        }
        char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (!value_chars(v, ve)) {
            *why = "control character in a header value";
            return ERR_BAD_HTTP;
        }
        if (req->nheaders == HTTP_MAX_HEADERS) {
            *why = "too many header fields";
            return ERR_HEAD_TOO_LARGE;
        }
        req->headers[req->nheaders++] = (struct http_header){
            { p, (size_t)(colon - p) }, { v, (size_t)(ve - v) }
        };
        p = eol + 2;
    }
    return check_framing(req, why);
}

const struct sl_str *http_header(const struct http_req *req, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < req->nheaders; i++)
        if (req->headers[i].name.len == n && strncasecmp(req->headers[i].name.p, name, n) == 0)
            return &req->headers[i].value;
    return NULL;
}

/* ---- responses ------------------------------------------------------------ */

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

/* "Date: ...\r\n", formatted at most once a second per thread. */
static const char *date_header(void)
{
    static __thread time_t last;
    static __thread char buf[48];
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        last = now;
    }
    return buf;
}

bool http_request_id_valid(const char *p, size_t len)
{
    if (len == 0 || len > HTTP_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == ':' || ch == '-'))
            return false;
    }
    return true;
}

/* 32 hex digits: a random 64-bit start per thread, then a counter through
 * splitmix64 — unique across nodes and restarts, no system call per id. */
static void new_request_id(char out[HTTP_REQUEST_ID_MAX + 1])
{
    static _Thread_local uint64_t state;
    static const char hex[] = "0123456789abcdef";
    if (!state && getrandom(&state, sizeof(state), 0) != (ssize_t)sizeof(state))
        state = (uint64_t)sl_wall_us() ^ ((uint64_t)getpid() << 32);
    for (int half = 0; half < 2; half++) {
        uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        for (int i = 0; i < 16; i++)
            out[half * 16 + i] = hex[(z >> (60 - 4 * i)) & 15];
    }
    out[32] = '\0';
}

const char *http_request_id(struct http_req *req)
{
    if (!req->request_id[0]) {
        const struct sl_str *v = http_header(req, "x-request-id");
        if (v && http_request_id_valid(v->p, v->len)) {
            memcpy(req->request_id, v->p, v->len);
            req->request_id[v->len] = '\0';
            req->request_id_sent = true;
        } else {
            new_request_id(req->request_id);
        }
    }
    return req->request_id;
}

static void write_status_and_headers(struct http_req *req, int status, const char *headers,
                                     size_t hlen, const char *framing)
{
    struct evbuffer *out = req->conn->out;
    bool ids = req->conn->srv->request_ids;
    char line[512] = "HTTP/1.x ";
    size_t n = 9;
    line[7] = (char)('0' + req->minor);
    n += sl_fmt_int(status, line + n);
    const char *parts[] = { " ", http_reason(status), "\r\n", date_header(), framing,
                            !req->keepalive    ? "Connection: close\r\n"
                            : req->minor == 0 ? "Connection: keep-alive\r\n"
                                              : "",
                            ids ? "X-Request-Id: " : "", ids ? http_request_id(req) : "",
                            ids ? "\r\n" : "" };
    for (size_t i = 0; i < SL_ARRAY_LEN(parts); i++) {
        size_t len = SL_MIN(strlen(parts[i]), sizeof(line) - n);
        memcpy(line + n, parts[i], len);
        n += len;
    }
    evbuffer_add(out, line, n);
    if (headers && hlen)
        evbuffer_add(out, headers, hlen);
    evbuffer_add(out, "\r\n", 2);
    req->status = status;
}

/* A request struct, zeroed but for its header array: from the server's spare
 * list (a fresh one is past malloc's fast sizes, so each cost ~2k instructions). */
static struct http_req *req_new(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    struct http_req *req = srv->spare_reqs;
    if (req) {
        SL_SPARE_UNPOISON(req, sizeof(*req));
        srv->spare_reqs = req->next_spare;
        srv->nspare--;
    } else {
        req = sl_malloc(sizeof(*req));
    }
    memset(req, 0, offsetof(struct http_req, headers));
    req->conn = c;
    req->listener = c->listener;
    req->minor = 1; /* until the request line says otherwise, for error replies */
    return req;
}

static void req_free(struct http_req *req)
{
    struct http_server *srv = req->conn->srv;
    if (req->checked_ref)
        req->checked_unref(req->checked_ref);
    if (req->body_charged) {
        atomic_fetch_sub(&buffered, req->body_charged);
        if (req->share)
            atomic_fetch_sub(&req->share->held, req->body_charged);
    }
    free(req->head);
    sl_buf_free(&req->body);
    if (srv->nspare >= SPARE_REQS_MAX) {
        free(req);
        return;
    }
    req->next_spare = srv->spare_reqs;
    srv->spare_reqs = req;
    srv->nspare++;
    SL_SPARE_POISON(req, sizeof(*req));
}

static void arm_timer(struct http_conn *c, int64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
    evtimer_add(c->timer, &tv);
}

#define LINGER_MS 2000

/* Output is flushed: half-close and keep reading (and discarding) for a
 * moment, so a client still sending its body receives our answer instead of
 * a reset. */
static void conn_linger(struct http_conn *c)
{
    if (c->dead)
        return; /* the reaper frees it */
    c->lingering = true;
    if (c->ssl)
        SSL_shutdown(c->ssl); /* close_notify; the client's is not waited for */
    shutdown(c->fd, SHUT_WR);
    arm_timer(c, LINGER_MS);
}

/* The current request is answered: free it, then close or wait for the next. */
static void conn_finish(struct http_conn *c)
{
    struct http_req *req = c->req;
    bool keep = req->keepalive;
    if (c->state == CONN_HANDLING)
        c->srv->busy--;
    c->req = NULL;
    req_free(req);
    if (!keep) {
        c->state = CONN_CLOSING;
        evtimer_del(c->timer);
        /* conn_write_cb lingers once the output is flushed. */
        if (evbuffer_get_length(c->out) == 0)
            conn_linger(c);
        return;
    }
    c->state = CONN_IDLE;
    c->head_scanned = 0;
    arm_timer(c, c->srv->limits.keepalive_timeout_ms);
    if (evbuffer_get_length(c->in) > 0 || !c->reading)
        event_active(c->resume, EV_READ, 0);
}

/* "Content-Length: N\r\n" into out[48]. */
static void content_length(char *out, size_t len)
{
    memcpy(out, "Content-Length: ", 16);
    size_t n = 16 + sl_fmt_int((int64_t)len, out + 16);
    memcpy(out + n, "\r\n", 3);
}

void http_respond(struct http_req *req, int status, const char *headers, size_t hlen,
                  const void *body, size_t blen)
{
    char framing[48];
    content_length(framing, blen);
    write_status_and_headers(req, status, headers, hlen, framing);
    if (blen && !sl_str_eq(req->method, "HEAD"))
        evbuffer_add(req->conn->out, body, blen);
    req->bytes_out += blen;
    conn_flush(req->conn);
    conn_finish(req->conn);
}

void http_respond_evbuffer(struct http_req *req, int status, const char *headers, size_t hlen,
                           struct evbuffer *body)
{
    size_t blen = evbuffer_get_length(body);
    char framing[48];
    content_length(framing, blen);
    write_status_and_headers(req, status, headers, hlen, framing);
    if (sl_str_eq(req->method, "HEAD"))
        evbuffer_drain(body, blen);
    else
        evbuffer_add_buffer(req->conn->out, body);
    req->bytes_out += blen;
    conn_flush(req->conn);
    conn_finish(req->conn);
}

void http_send_error(struct http_req *req, enum sl_error e, const char *message,
                     const char *param, const char *headers)
{
    size_t len;
    char *json = err_json_in(req->dialect, e, message, param, &len);
    struct sl_buf h = { 0 };
    sl_buf_appends(&h, "Content-Type: application/json\r\n");
    if (headers)
        sl_buf_appends(&h, headers);
    http_respond(req, err_status(e, req->dialect), h.data, h.len, json, len);
    sl_buf_free(&h);
    free(json);
}

void http_stream_begin(struct http_req *req, int status, const char *headers, size_t hlen)
{
    req->streaming = true;
    if (req->minor == 0)
        req->keepalive = false; /* close-delimited */
    write_status_and_headers(req, status, headers, hlen,
                             req->minor == 1 ? "Transfer-Encoding: chunked\r\n" : "");
    conn_flush(req->conn);
}

void http_stream_queue(struct http_req *req, const void *data, size_t len)
{
    if (!len)
        return;
    struct evbuffer *out = req->conn->out;
    if (req->minor == 1) {
        static const char hex[] = "0123456789abcdef";
        char size[24], *p = size + sizeof(size);
        *--p = '\n';
        *--p = '\r';
        size_t v = len;
        do
            *--p = hex[v & 15];
        while (v >>= 4);
        evbuffer_add(out, p, (size_t)(size + sizeof(size) - p));
        evbuffer_add(out, data, len);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, data, len);
    }
    req->bytes_out += len;
    if (!req->conn->dead) /* written at the end of this loop pass (conn_write_cb) */
        event_active(req->conn->wev, EV_WRITE, 0);
}

void http_stream_write(struct http_req *req, const void *data, size_t len)
{
    http_stream_queue(req, data, len);
    conn_flush(req->conn);
}

void http_stream_end(struct http_req *req)
{
    if (req->minor == 1)
        evbuffer_add(req->conn->out, "0\r\n\r\n", 5);
    conn_flush(req->conn);
    conn_finish(req->conn);
}

void http_stream_abort(struct http_req *req)
{
    req->keepalive = false;
    conn_finish(req->conn);
}

size_t http_pending_output(const struct http_req *req)
{
    return evbuffer_get_length(req->conn->out);
}

/* ---- reading a request ---------------------------------------------------- */

/* An error while the request is still being read: answer and close. */
static void fail_request_with(struct http_conn *c, enum sl_error e, const char *why,
                              const char *headers)
{
    if (!c->req)
        c->req = req_new(c);
    c->req->keepalive = false;
    evtimer_del(c->timer);
    log_debug("client request rejected: %s", why);
    http_send_error(c->req, e, why, NULL, headers);
}

static void fail_request(struct http_conn *c, enum sl_error e, const char *why)
{
    fail_request_with(c, e, why, NULL);
}

/* The body's buffer grew to cap bytes: charge max_buffered for it. A large
 * body may use 7/8 of it, a small one all of it; the bodies of one share
 * (one key's) max_buffered_share, or one body alone of any size. False after
 * answering 503. */
static bool charge_body(struct http_conn *c, int64_t cap)
{
    struct http_req *req = c->req;
    const struct http_limits *lim = &c->srv->limits;
    int64_t more = cap - req->body_charged, max = lim->max_buffered;
    if (more <= 0)
        return true;
    int64_t now = atomic_fetch_add(&buffered, more) + more;
    req->body_charged += more; /* given back by req_free, refused or not */
    if (req->share) {
        int64_t held = atomic_fetch_add(&req->share->held, more) + more;
        int64_t share_max = lim->max_buffered_share ? lim->max_buffered_share : max / 4;
        if (share_max && held > share_max && held > req->body_charged) {
            fail_request_with(c, ERR_OVERLOADED,
                              "This key's requests hold as many bodies as one key may "
                              "(max_buffered_per_key); try again shortly.",
                              "Retry-After: 1\r\n");
            return false;
        }
    }
    if (!max || now <= (cap > HTTP_SMALL_BODY ? max - max / 8 : max))
        return true;
    fail_request_with(c, ERR_OVERLOADED,
                      "The gateway holds as many request bodies as it may (max_buffered); try "
                      "again shortly.",
                      "Retry-After: 1\r\n");
    return false;
}

struct http_share *http_share_named(const char *name)
{
    size_t len = strlen(name);
    struct http_share **bucket = &shares[sl_hash(name, len) % SHARE_BUCKETS], *s;
    pthread_mutex_lock(&shares_lock);
    for (s = *bucket; s && strcmp(s->name, name) != 0; s = s->next)
        ;
    if (!s) { /* kept for the process's life: requests may hold it past any reload */
        s = sl_calloc(1, sizeof(*s) + len + 1);
        memcpy(s->name, name, len + 1);
        s->next = *bucket;
        *bucket = s;
    }
    pthread_mutex_unlock(&shares_lock);
    return s;
}

void http_req_share(struct http_req *req, struct http_share *share)
{
    if (!req->share && !req->body_charged)
        req->share = share;
}

int64_t http_buffered_bytes(void)
{
    return atomic_load(&buffered);
}

/* Looks for the end of the head in the input, checking each byte once for NUL
 * and bare LF. Returns the head length, 0 if incomplete, -1 after failing. */
static ssize_t find_head_end(struct http_conn *c, struct evbuffer *in)
{
    size_t avail = evbuffer_get_length(in);
    size_t limit = (size_t)c->srv->limits.max_header_size;
    size_t scan = SL_MIN(avail, limit + 4);
    const unsigned char *p = evbuffer_pullup(in, (ssize_t)scan);
    for (size_t i = c->head_scanned; i < scan; i++) { /* line by line, each checked for NUL */
        const unsigned char *lf = memchr(p + i, '\n', scan - i);
        size_t to = lf ? (size_t)(lf - p) : scan;
        if (memchr(p + i, '\0', to - i)) {
            fail_request(c, ERR_BAD_HTTP, "NUL byte in the request head");
            return -1;
        }
        if (!lf)
            break;
        i = to;
        if (i == 0 || p[i - 1] != '\r') {
            fail_request(c, ERR_BAD_HTTP, "bare LF in the request head (lines end in CRLF)");
            return -1;
        }
        if (i >= 3 && p[i - 2] == '\n' && p[i - 3] == '\r') {
            if (i + 1 > limit) {
                fail_request(c, ERR_HEAD_TOO_LARGE, "request header section too large");
                return -1;
            }
            return (ssize_t)(i + 1);
        }
    }
    c->head_scanned = scan;
    if (avail > limit) {
        fail_request(c, ERR_HEAD_TOO_LARGE, "request header section too large");
        return -1;
    }
    return 0;
}

/* False after failing (max_buffered). */
static bool start_body(struct http_conn *c)
{
    struct http_req *req = c->req;
    c->state = CONN_BODY;
    c->chunk = CH_SIZE;
    arm_timer(c, c->srv->limits.body_timeout_ms);
    if (req->content_length > 0) {
        if (!charge_body(c, req->content_length + 1))
            return false;
        sl_buf_reserve(&req->body, (size_t)req->content_length);
    }
    if (req->expect_continue && (req->chunked || req->content_length > 0)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        evbuffer_add(c->out, cont, sizeof(cont) - 1);
        conn_flush(c);
    }
    return true;
}

static int after_head(struct http_conn *c);

/* Returns 1 when the head is parsed, 0 to wait, -1 after failing. */
static int read_head(struct http_conn *c, struct evbuffer *in)
{
    if (c->state == CONN_IDLE) {
        if (evbuffer_get_length(in) == 0)
            return 0;
        /* Tolerate the CRLF some clients send after a POST body (RFC 9112 2.2). */
        const unsigned char *p;
        while ((p = evbuffer_pullup(in, 2)) && p[0] == '\r' && p[1] == '\n')
            evbuffer_drain(in, 2);
        if (evbuffer_get_length(in) == 0)
            return 0;
        c->state = CONN_HEAD;
        c->head_scanned = 0;
        arm_timer(c, c->srv->limits.header_timeout_ms);
    }
    ssize_t len = find_head_end(c, in);
    if (len <= 0)
        return (int)len;

    struct http_req *req = req_new(c);
    req->start_us = sl_now_us();
    req->head = sl_malloc((size_t)len);
    evbuffer_remove(in, req->head, (size_t)len);
    c->req = req;
    const char *why = NULL;
    int rc = http_parse_head(req, (size_t)len, &why);
    if (rc) {
        new_request_id(req->request_id); /* none of a head that did not parse */
        fail_request(c, rc, why);
        return -1;
    }
    req->body_limit = c->srv->limits.max_body_size;
    if (c->srv->head_handler) {
        bool keep = req->keepalive;
        if (req->chunked || req->content_length > 0)
            req->keepalive = false; /* answered now, the body stays unread: close after it */
        if (!c->srv->head_handler(req, c->srv->arg))
            return -1; /* answered and freed */
        if (req->held) { /* decided later: http_req_release or an answer */
            c->state = CONN_HELD;
            c->held_keepalive = keep;
            return 0;
        }
        req->keepalive = keep;
    }
    return after_head(c);
}

/* The head is accepted: the body's size checked, its reading begun. 1, or
 * -1 after failing. */
static int after_head(struct http_conn *c)
{
    if (c->req->content_length > c->req->body_limit) {
        fail_request(c, ERR_BODY_TOO_LARGE, "request body too large");
        return -1;
    }
    return start_body(c) ? 1 : -1;
}

void http_req_hold(struct http_req *req)
{
    req->held = true;
}

void http_req_release(struct http_req *req)
{
    struct http_conn *c = req->conn;
    if (c->state != CONN_HELD || c->req != req)
        return;
    req->held = false;
    req->keepalive = c->held_keepalive;
    c->state = CONN_HEAD;
    if (after_head(c) > 0)
        event_active(c->resume, EV_READ, 0); /* the body that came meanwhile */
}

static bool body_append(struct http_conn *c, struct evbuffer *in, size_t n)
{
    struct http_req *req = c->req;
    if ((int64_t)(req->body.len + n) > req->body_limit) {
        fail_request(c, ERR_BODY_TOO_LARGE, "request body too large");
        return false;
    }
    sl_buf_reserve(&req->body, n);
    if (!charge_body(c, (int64_t)req->body.cap))
        return false;
    evbuffer_remove(in, req->body.data + req->body.len, n);
    req->body.len += n;
    req->body.data[req->body.len] = '\0';
    return true;
}

/* Reads one CRLF-terminated line of a chunked body into line[]. Returns its
 * length, -2 if incomplete, -1 after failing. */
static ssize_t chunk_line(struct http_conn *c, struct evbuffer *in, char *line)
{
    size_t avail = evbuffer_get_length(in);
    struct evbuffer_ptr eol = evbuffer_search(in, "\n", 1, NULL);
    if (eol.pos < 0) {
        if (avail > CHUNK_LINE_MAX) {
            fail_request(c, ERR_BAD_HTTP, "chunk header line too long");
            return -1;
        }
        return -2;
    }
    size_t n = (size_t)eol.pos + 1;
    if (n > CHUNK_LINE_MAX) {
        fail_request(c, ERR_BAD_HTTP, "chunk header line too long");
        return -1;
    }
    evbuffer_remove(in, line, n);
    if (n < 2 || line[n - 2] != '\r' || memchr(line, '\0', n)) {
        fail_request(c, ERR_BAD_HTTP, "malformed chunk framing");
        return -1;
    }
    line[n - 2] = '\0';
    return (ssize_t)(n - 2);
}

/* Decodes as much of a chunked body as is buffered. 1 = complete, 0 = more
 * needed, -1 = failed. */
static int read_chunked(struct http_conn *c, struct evbuffer *in)
{
    char line[CHUNK_LINE_MAX + 1];
    for (;;) {
        switch (c->chunk) {
        case CH_SIZE: {
            ssize_t n = chunk_line(c, in, line);
            if (n < 0)
                return n == -2 ? 0 : -1;
            int64_t size = 0;
            ssize_t i = 0;
            for (; i < n && i < 15; i++) {
                int d = line[i] >= '0' && line[i] <= '9'   ? line[i] - '0'
                        : line[i] >= 'a' && line[i] <= 'f' ? line[i] - 'a' + 10
                        : line[i] >= 'A' && line[i] <= 'F' ? line[i] - 'A' + 10
                                                           : -1;
                if (d < 0)
                    break;
                size = size * 16 + d;
            }
            if (i == 0 || (i < n && line[i] != ';' && line[i] != ' ' && line[i] != '\t')) {
                fail_request(c, ERR_BAD_HTTP, "malformed chunk size");
                return -1;
            }
            if (size > c->req->body_limit) {
                fail_request(c, ERR_BODY_TOO_LARGE, "request body too large");
                return -1;
            }
            c->chunk_left = size;
            c->chunk = size ? CH_DATA : CH_TRAILER;
            break;
        }
        case CH_DATA: {
            size_t avail = evbuffer_get_length(in);
            if (!avail)
                return 0;
            size_t n = SL_MIN(avail, (size_t)c->chunk_left);
            if (!body_append(c, in, n))
                return -1;
            c->chunk_left -= (int64_t)n;
            if (c->chunk_left == 0)
                c->chunk = CH_DATA_CRLF;
            break;
        }
        case CH_DATA_CRLF: {
            if (evbuffer_get_length(in) < 2)
                return 0;
            char crlf[2];
            evbuffer_remove(in, crlf, 2);
            if (crlf[0] != '\r' || crlf[1] != '\n') {
                fail_request(c, ERR_BAD_HTTP, "chunk data not followed by CRLF");
                return -1;
            }
            c->chunk = CH_SIZE;
            break;
        }
        case CH_TRAILER: {
            ssize_t n = chunk_line(c, in, line);
            if (n < 0)
                return n == -2 ? 0 : -1;
            if (n == 0)
                return 1; /* trailers are read and dropped */
            break;
        }
        }
    }
}

/* 1 when the body is complete. */
static int read_body(struct http_conn *c, struct evbuffer *in)
{
    struct http_req *req = c->req;
    if (req->chunked)
        return read_chunked(c, in);
    int64_t want = SL_MAX(req->content_length, 0) - (int64_t)req->body.len;
    size_t n = SL_MIN(evbuffer_get_length(in), (size_t)want);
    if (n && !body_append(c, in, n))
        return -1;
    return (int64_t)n == want ? 1 : 0;
}

static void dispatch(struct http_conn *c)
{
    evtimer_del(c->timer);
    c->state = CONN_HANDLING;
    c->srv->busy++;
    if (!c->req->body.data) { /* handlers may rely on a NUL-terminated body */
        sl_buf_reserve(&c->req->body, 0);
        c->req->body.data[0] = '\0';
    }
    c->srv->handler(c->req, c->srv->arg);
}

/* Runs the state machine over whatever input is buffered. */
static void conn_process(struct http_conn *c)
{
    struct evbuffer *in = c->in;
    if (c->dead)
        return; /* the reaper frees it */
    if (!c->reading && !c->dead && c->state != CONN_HANDLING && c->state != CONN_HELD) {
        event_add(c->rev, NULL); /* the backlog that paused reading is being served */
        c->reading = true;
        if (c->ssl && SSL_pending(c->ssl) > 0) /* already decrypted: no readiness will say so */
            event_active(c->rev, EV_READ, 0);
    }
    for (;;) {
        int rc;
        switch (c->state) {
        case CONN_IDLE:
        case CONN_HEAD:
            rc = read_head(c, in);
            if (rc <= 0)
                return;
            break;
        case CONN_BODY:
            rc = read_body(c, in);
            if (rc <= 0)
                return;
            dispatch(c);
            return; /* pipelined requests wait until this one is answered */
        case CONN_HELD:
        case CONN_HANDLING:
            return;
        case CONN_CLOSING:
            evbuffer_drain(in, evbuffer_get_length(in));
            return;
        }
    }
}

/* Stop reading once a pipelined backlog reaches this while a request is handled. */
static size_t read_limit(const struct http_conn *c)
{
    return (size_t)c->srv->limits.max_header_size + 65536;
}

/* A TLS failure, for the debug log (a scanner's or a misconfigured
 * client's handshake is not worth more). */
static void tls_log_failure(int err)
{
    unsigned long e = ERR_get_error();
    char reason[256] = "connection closed";
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    else if (err == SSL_ERROR_SYSCALL && errno)
        snprintf(reason, sizeof(reason), "%s", strerror(errno));
    ERR_clear_error();
    log_debug("TLS: %s", reason);
}

/* recv, or SSL_read on a tls listener: > 0 bytes, 0 at the end or on an
 * error, -1 with errno EAGAIN when nothing can be read now. */
static ssize_t conn_recv(struct http_conn *c, void *buf, size_t len)
{
    if (!c->ssl)
        return recv(c->fd, buf, len, 0);
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, (int)len);
    if (n > 0) {
        if (SSL_pending(c->ssl) > 0) /* decrypted bytes the socket no longer signals */
            event_active(c->rev, EV_READ, 0);
        return n;
    }
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        if (err == SSL_ERROR_WANT_WRITE && !c->tls_read_wants_write) {
            c->tls_read_wants_write = true; /* conn_write_cb reads again */
            event_add(c->wev, NULL);
        }
        errno = EAGAIN;
        return -1;
    }
    if (err != SSL_ERROR_ZERO_RETURN)
        tls_log_failure(err);
    return 0;
}

/* Writes from the head of the output: evbuffer_write, or one TLS record of
 * up to 16 KB (head and body coalesced) on a tls listener. As
 * evbuffer_write: bytes written, or -1 with errno EAGAIN when the socket is
 * full, or another errno on failure. */
static int conn_send(struct http_conn *c)
{
    if (!c->ssl)
        return evbuffer_write(c->out, c->fd);
    size_t len = SL_MIN(evbuffer_get_length(c->out), (size_t)16384);
    unsigned char *data = evbuffer_pullup(c->out, (ssize_t)len);
    ERR_clear_error();
    int n = SSL_write(c->ssl, data, (int)len);
    if (n > 0) {
        evbuffer_drain(c->out, (size_t)n);
        return n;
    }
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        errno = EAGAIN; /* a write waiting for a read retries at the next flush */
        return -1;
    }
    tls_log_failure(err);
    errno = EPIPE;
    return -1;
}

/* One recv per readiness: a short read means nothing more is waiting. */
static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct http_conn *c = arg;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(c->in, READ_CHUNK, &v, 1) < 1)
        return conn_free(c);
    ssize_t n = conn_recv(c, v.iov_base, SL_MIN(v.iov_len, (size_t)READ_CHUNK));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        return conn_free(c); /* EOF or error: whatever was going on is over */
    v.iov_len = (size_t)n;
    evbuffer_commit_space(c->in, &v, 1);
    if ((c->state == CONN_HANDLING || c->state == CONN_HELD) &&
        evbuffer_get_length(c->in) >= read_limit(c)) {
        event_del(c->rev);
        c->reading = false;
    }
    conn_process(c);
}

static void conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_process(arg);
}

static void conn_reaper_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_free(arg);
}

/* Writes what is queued now; waits for EPOLLOUT only if the socket is full.
 * A write error marks the connection dead and frees it from the loop, never
 * under the caller's feet. */
static void conn_flush(struct http_conn *c)
{
    if (c->dead)
        return;
    while (evbuffer_get_length(c->out) > 0) {
        int n = conn_send(c);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        c->dead = true;
        event_del(c->rev);
        event_del(c->wev);
        event_active(c->reaper, EV_READ, 0);
        return;
    }
    bool pending = evbuffer_get_length(c->out) > 0 || c->tls_read_wants_write;
    if (pending) { /* (re)armed on every flush: send_timeout counts from the last progress */
        int64_t ms = c->srv->limits.send_timeout_ms;
        struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
        event_add(c->wev, &tv);
        c->writing = true;
    } else if (c->writing) {
        event_del(c->wev);
        c->writing = false;
    }
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct http_conn *c = arg;
    if (what & EV_TIMEOUT) {
        log_debug("client did not read its response within send_timeout");
        return conn_free(c);
    }
    if (c->tls_read_wants_write) { /* the TLS read that waited for this goes on */
        c->tls_read_wants_write = false;
        event_active(c->rev, EV_READ, 0);
    }
    conn_flush(c);
    if (c->dead)
        return;
    if (c->state == CONN_CLOSING) {
        if (!c->lingering && evbuffer_get_length(c->out) == 0)
            conn_linger(c);
        return;
    }
    if (c->state == CONN_HANDLING && c->req && c->req->on_drain &&
        evbuffer_get_length(c->out) <= OUTPUT_LOW_MARK)
        c->req->on_drain(c->req);
}

/* Deadline for idle, head or body. */
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_conn *c = arg;
    if (c->state == CONN_HELD && c->req->on_abort) /* the decision came too late */
        c->req->on_abort(c->req);
    if (c->state == CONN_HEAD || c->state == CONN_BODY || c->state == CONN_HELD)
        fail_request(c, ERR_REQUEST_TIMEOUT,
                     c->state == CONN_HEAD ? "request headers not received in time"
                                           : "request body not received in time");
    else
        conn_free(c);
}

static void set_accepting(struct http_server *srv, bool on)
{
    srv->accept_paused = !on;
    for (int i = 0; i < srv->nlisteners; i++)
        (on ? evconnlistener_enable : evconnlistener_disable)(srv->listeners[i]);
}

static void conn_free(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    if (c->req) {
        if (c->state == CONN_HANDLING)
            srv->busy--;
        if ((c->state == CONN_HANDLING || c->state == CONN_HELD) && c->req->on_abort)
            c->req->on_abort(c->req);
        req_free(c->req);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    if (srv->accept_paused && srv->nconns < srv->limits.max_connections)
        set_accepting(srv, true);
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->timer);
    event_free(c->resume);
    event_free(c->reaper);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    SSL_free(c->ssl);
    evutil_closesocket(c->fd);
    free(c);
}

/* ---- accepting -------------------------------------------------------------- */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    (void)l;
    (void)sa;
    (void)len;
    const struct listener_ctx *ctx = arg;
    struct http_server *srv = ctx->srv;
    SSL *ssl = NULL;
    if (ctx->tls) {
        ssl = srv->tls ? SSL_new(srv->tls) : NULL;
        if (!ssl || SSL_set_fd(ssl, fd) != 1) {
            log_error("TLS listener without a usable TLS context; connection closed");
            SSL_free(ssl);
            evutil_closesocket(fd);
            return;
        }
        SSL_set_accept_state(ssl);
    }
    srv->accepted++;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct http_conn *c = sl_calloc(1, sizeof(*c));
    c->srv = srv;
    c->fd = fd;
    c->listener = ctx->kind;
    c->ssl = ssl;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->rev = event_new(srv->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    c->wev = event_new(srv->base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
    c->timer = evtimer_new(srv->base, conn_timer_cb, c);
    c->resume = event_new(srv->base, -1, 0, conn_resume_cb, c);
    c->reaper = event_new(srv->base, -1, 0, conn_reaper_cb, c);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    if (srv->limits.max_connections && srv->nconns >= srv->limits.max_connections)
        set_accepting(srv, false); /* the next ones wait in the listen backlog */
    c->state = CONN_IDLE;
    event_add(c->rev, NULL);
    c->reading = true;
    arm_timer(c, srv->limits.header_timeout_ms);
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evconnlistener_enable(arg);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)arg;
    log_error("accept failed: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    /* Out of descriptors: pause accepting for a moment rather than spin. */
    evconnlistener_disable(l);
    struct timeval tv = { 0, 100000 };
    event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, accept_resume_cb, l, &tv);
}

struct http_server *http_server_new(struct event_base *base, const struct http_limits *limits,
                                    http_handler handler, void *arg)
{
    struct http_server *srv = sl_calloc(1, sizeof(*srv));
    srv->base = base;
    srv->limits = *limits;
    srv->handler = handler;
    srv->arg = arg;
    return srv;
}

void http_server_set_head_handler(struct http_server *srv, http_head_handler head)
{
    srv->head_handler = head;
}

void http_server_send_request_ids(struct http_server *srv)
{
    srv->request_ids = true;
}

void http_server_set_tls(struct http_server *srv, struct ssl_ctx_st *ctx)
{
    SSL_CTX_up_ref(ctx); /* the server's own reference: it outlives the config's */
    SSL_CTX_free(srv->tls);
    srv->tls = ctx;
}

int http_server_listen(struct http_server *srv, int fd, int kind, bool tls)
{
    struct listener_ctx *ctx = sl_malloc(sizeof(*ctx));
    *ctx = (struct listener_ctx){ srv, kind, tls };
    /* Backlog 0: the socket listens already, with the backlog its maker
     * chose (main.c's 4096); -1 would make libevent listen() again with 128. */
    struct evconnlistener *l =
        evconnlistener_new(srv->base, accept_cb, ctx, LEV_OPT_CLOSE_ON_FREE, 0, fd);
    if (!l) {
        free(ctx);
        return -1;
    }
    evconnlistener_set_error_cb(l, accept_error_cb);
    srv->listeners = sl_realloc(srv->listeners, sizeof(*srv->listeners) * (size_t)(srv->nlisteners + 1));
    srv->listener_ctxs =
        sl_realloc(srv->listener_ctxs, sizeof(*srv->listener_ctxs) * (size_t)(srv->nlisteners + 1));
    srv->listener_ctxs[srv->nlisteners] = ctx;
    srv->listeners[srv->nlisteners++] = l;
    if (srv->accept_paused)
        evconnlistener_disable(l);
    return 0;
}

void http_server_set_limits(struct http_server *srv, const struct http_limits *limits)
{
    srv->limits = *limits;
    bool full = limits->max_connections && srv->nconns >= limits->max_connections;
    if (full != srv->accept_paused)
        set_accepting(srv, !full);
}

void http_server_stop_accepting(struct http_server *srv)
{
    for (int i = 0; i < srv->nlisteners; i++) {
        evconnlistener_free(srv->listeners[i]);
        free(srv->listener_ctxs[i]);
    }
    free(srv->listeners);
    free(srv->listener_ctxs);
    srv->listeners = NULL;
    srv->listener_ctxs = NULL;
    srv->nlisteners = 0;
}

int http_server_busy(const struct http_server *srv)
{
    return srv->busy;
}

int http_server_connections(const struct http_server *srv)
{
    return srv->nconns;
}

uint64_t http_server_accepted(const struct http_server *srv)
{
    return srv->accepted;
}

void http_server_close_idle(struct http_server *srv)
{
    struct http_conn *c = srv->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state == CONN_IDLE)
            conn_free(c);
        else if (c->req)
            c->req->keepalive = false;
    }
}

void http_server_free(struct http_server *srv)
{
    if (!srv)
        return;
    http_server_stop_accepting(srv);
    while (srv->conns)
        conn_free(srv->conns);
    while (srv->spare_reqs) {
        struct http_req *req = srv->spare_reqs;
        SL_SPARE_UNPOISON(req, sizeof(*req));
        srv->spare_reqs = req->next_spare;
        free(req);
    }
    SSL_CTX_free(srv->tls);
    free(srv);
}
