/* The request-head parser: what it accepts and every framing it refuses;
 * and a head handler that decides later (http_req_hold / http_req_release). */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK_WITH_LISTEN
#include "check.h"
#include "sluice/errors.h"
#include "sluice/http.h"

static int parse(const char *head, struct http_req *req, const char **why)
{
    memset(req, 0, sizeof(*req));
    req->head = strdup(head);
    int rc = http_parse_head(req, strlen(head), why);
    return rc;
}

static void test_valid(void)
{
    struct http_req req;
    const char *why = NULL;
    int rc = parse("POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
                   "Authorization: Bearer k\r\nX-Empty:\r\nX-Pad:   v  \r\n\r\n",
                   &req, &why);
    CHECK(rc == 0);
    CHECK(sl_str_eq(req.method, "POST"));
    CHECK(sl_str_eq(req.path, "/v1/chat/completions"));
    CHECK(sl_str_eq(req.query, "x=1"));
    CHECK(req.minor == 1 && req.keepalive);
    CHECK(req.content_length == 12 && !req.chunked);
    const struct sl_str *v = http_header(&req, "AUTHORIZATION");
    CHECK(v && sl_str_eq(*v, "Bearer k"));
    v = http_header(&req, "x-pad");
    CHECK(v && sl_str_eq(*v, "v"));
    v = http_header(&req, "x-empty");
    CHECK(v && v->len == 0);
    CHECK(http_header(&req, "missing") == NULL);
    free(req.head);

    rc = parse("POST /v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n",
               &req, &why);
    CHECK(rc == 0 && req.chunked && !req.keepalive);
    free(req.head);

    rc = parse("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &req, &why);
    CHECK(rc == 0 && req.minor == 0 && req.keepalive);
    free(req.head);
    rc = parse("GET /healthz HTTP/1.0\r\n\r\n", &req, &why);
    CHECK(rc == 0 && !req.keepalive);
    free(req.head);
    rc = parse("POST /v1/x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
               &req, &why);
    CHECK(rc == 0 && req.expect_continue);
    free(req.head);
}

struct bad {
    const char *head;
    int err;
    const char *why;
};

static void test_rejections(void)
{
    static const struct bad cases[] = {
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
          ERR_BAD_HTTP, "more than one Content-Length" },
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n", ERR_BAD_HTTP,
          "malformed header name" },
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", ERR_BAD_HTTP,
          "invalid Content-Length" },
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", ERR_BAD_HTTP,
          "invalid Content-Length" },
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
          ERR_BAD_HTTP, "unsupported Transfer-Encoding" },
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
          ERR_BAD_HTTP, "both Transfer-Encoding and Content-Length" },
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
          ERR_BAD_HTTP, "more than one Transfer-Encoding" },
        { "POST /v1/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ERR_BAD_HTTP,
          "not allowed in HTTP/1.0" },
        { "POST /v1/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", ERR_BAD_HTTP, "missing Host" },
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", ERR_BAD_HTTP, "more than one Host" },
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n", ERR_BAD_HTTP,
          "obsolete header line folding" },
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nX-A: a\x01" "b\r\n\r\n", ERR_BAD_HTTP, "control character" },
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", ERR_BAD_HTTP, "malformed header name" },
        { "POST /v1/x HTTP/2.0\r\nHost: a\r\n\r\n", ERR_HTTP_VERSION, "only HTTP/1.0 and HTTP/1.1" },
        { "POST /v1/x FOO/1.1\r\nHost: a\r\n\r\n", ERR_BAD_HTTP, "malformed HTTP version" },
        { "POST  /v1/x HTTP/1.1\r\nHost: a\r\n\r\n", ERR_BAD_HTTP, "malformed request line" },
        { "POST http://evil/v1/x HTTP/1.1\r\nHost: a\r\n\r\n", ERR_BAD_HTTP, "absolute path" },
        { "POST /v1/../admin HTTP/1.1\r\nHost: a\r\n\r\n", ERR_BAD_HTTP, "dot segment" },
        { "POST /v1/%2e%2E/admin HTTP/1.1\r\nHost: a\r\n\r\n", ERR_BAD_HTTP, "dot segment" },
        { "POST /v1/./x HTTP/1.1\r\nHost: a\r\n\r\n", ERR_BAD_HTTP, "dot segment" },
        { "POST /v1/a\\b HTTP/1.1\r\nHost: a\r\n\r\n", ERR_BAD_HTTP, "percent-encoded" },
        { "PO(ST /v1/x HTTP/1.1\r\nHost: a\r\n\r\n", ERR_BAD_HTTP, "malformed request method" },
        { "POST /v1/x HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", ERR_EXPECTATION,
          "unsupported Expect" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_req req;
        const char *why = "";
        int rc = parse(cases[i].head, &req, &why);
        if (rc != cases[i].err || !strstr(why, cases[i].why))
            fprintf(stderr, "  case %zu: rc=%d why=%s\n", i, rc, why);
        CHECK(rc == (int)cases[i].err);
        CHECK(strstr(why, cases[i].why) != NULL);
        free(req.head);
    }
}

static void test_dots_allowed_inside_names(void)
{
    struct http_req req;
    const char *why = NULL;
    CHECK(parse("POST /v1/models/gpt-4.1..mini HTTP/1.1\r\nHost: a\r\n\r\n", &req, &why) == 0);
    free(req.head);
}

/* X-Request-Id: the client's when it is 1-128 of [A-Za-z0-9._:-], else 32 hex made here. */
static void test_request_id(void)
{
    static const struct {
        const char *value;
        bool kept;
    } cases[] = {
        { "req-1", true }, { "a.b_c:d-E9", true }, { "abc<script>", false }, { "", false },
        { "two words", false }, { "caf\xc3\xa9", false }, { "a/b", false }, { "%41", false },
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        char head[256];
        snprintf(head, sizeof(head), "GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Request-Id: %s\r\n\r\n",
                 cases[i].value);
        struct http_req req;
        const char *why;
        CHECK(parse(head, &req, &why) == 0);
        const char *id = http_request_id(&req);
        if (cases[i].kept) {
            CHECK_STR(id, cases[i].value);
        } else {
            CHECK(strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32);
        }
        CHECK(http_request_id(&req) == id); /* the same on every call */
        free(req.head);
    }
    char longest[HTTP_REQUEST_ID_MAX + 2];
    memset(longest, 'x', sizeof(longest));
    CHECK(http_request_id_valid(longest, HTTP_REQUEST_ID_MAX));
    CHECK(!http_request_id_valid(longest, HTTP_REQUEST_ID_MAX + 1));
    /* none sent: made here, different each time */
    struct http_req a, b;
    const char *why;
    CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &a, &why) == 0);
    CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &b, &why) == 0);
    CHECK(strcmp(http_request_id(&a), http_request_id(&b)) != 0);
    free(a.head);
    free(b.head);
}

/* ---- a head handler that holds the request ---- */

static struct http_req *held;
static int handled, aborted;
static char handled_body[64];

static bool hold_head(struct http_req *req, void *arg)
{
    (void)arg;
    held = req;
    req->on_abort = NULL;
    http_req_hold(req);
    return true;
}

static void on_held_abort(struct http_req *req)
{
    (void)req;
    aborted++;
    held = NULL;
}

static void handle(struct http_req *req, void *arg)
{
    (void)arg;
    handled++;
    snprintf(handled_body, sizeof(handled_body), "%.*s", (int)req->body.len, req->body.data);
    http_respond(req, 200, "", 0, "ok", 2);
}

static int connect_to(int port)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(c, (struct sockaddr *)&a, sizeof(a)))
        perror("connect");
    return c;
}

/* Turns the loop for about ms milliseconds; what the client can read then, appended to out. */
static void turn(struct event_base *base, int c, char *out, size_t cap, int ms)
{
    for (int i = 0; i < ms; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        struct pollfd p = { .fd = c, .events = POLLIN };
        if (poll(&p, 1, 1) > 0) {
            size_t have = strlen(out);
            ssize_t r = read(c, out + have, cap - 1 - have);
            if (r > 0)
                out[have + (size_t)r] = '\0';
        }
    }
}

static void test_held_head(void)
{
    struct event_base *base = event_base_new();
    struct http_limits limits = { .max_header_size = 32768, .max_body_size = 1 << 20,
                                  .header_timeout_ms = 5000, .body_timeout_ms = 5000,
                                  .keepalive_timeout_ms = 5000, .send_timeout_ms = 5000,
                                  .max_connections = 64 };
    struct http_server *srv = http_server_new(base, &limits, handle, NULL);
    http_server_set_head_handler(srv, hold_head);
    int port;
    int fd = check_listen(&port);
    http_server_listen(srv, fd, HTTP_LISTENER_API, false);
    static const char req[] = "POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    char out[4096] = "";

    /* held: the body is there but not read, nothing handled, nothing answered */
    int c = connect_to(port);
    CHECK(write(c, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1);
    turn(base, c, out, sizeof(out), 50);
    CHECK(held != NULL && handled == 0 && out[0] == '\0');
    CHECK(held && held->body.len == 0);
    /* released: the body is read and the request handled */
    http_req_release(held);
    turn(base, c, out, sizeof(out), 50);
    CHECK(handled == 1 && strcmp(handled_body, "hello") == 0);
    CHECK(strncmp(out, "HTTP/1.1 200", 12) == 0 && strstr(out, "\r\n\r\nok"));
    close(c);

    /* answered while held: the body is never read, the connection closes after the answer */
    held = NULL;
    out[0] = '\0';
    c = connect_to(port);
    CHECK(write(c, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1);
    turn(base, c, out, sizeof(out), 50);
    CHECK(held != NULL);
    if (held)
        http_send_error(held, ERR_INVALID_API_KEY, "no", NULL, NULL);
    turn(base, c, out, sizeof(out), 50);
    CHECK(handled == 1 && strncmp(out, "HTTP/1.1 401", 12) == 0);
    CHECK(strstr(out, "Connection: close") != NULL);
    close(c);

    /* the client leaves while held: on_abort runs, the request is gone */
    held = NULL;
    c = connect_to(port);
    CHECK(write(c, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1);
    turn(base, c, out, sizeof(out), 50);
    CHECK(held != NULL);
    if (held)
        held->on_abort = on_held_abort;
    close(c);
    turn(base, -1, out, sizeof(out), 50);
    CHECK(aborted == 1 && held == NULL && handled == 1);

    http_server_free(srv);
    event_base_free(base);
}

/* Every byte value at every place of a long header value (the check goes
 * eight bytes at a time): refused exactly when it is a control character
 * other than HTAB, or DEL. */
static void test_value_bytes_everywhere(void)
{
    char head[256];
    for (int at = 0; at < 40; at++) {
        for (int b = 1; b < 256; b++) {
            if (b == '\r' || b == '\n')
                continue;
            char value[48];
            memset(value, 'a', 41);
            value[41] = '\0';
            value[at] = (char)b;
            snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a\r\nX-V: %s\r\n\r\n", value);
            struct http_req req;
            const char *why = NULL;
            int rc = parse(head, &req, &why);
            bool ok = b == '\t' || (b >= 0x20 && b != 0x7f);
            if (ok ? rc != 0 : rc != ERR_BAD_HTTP)
                fprintf(stderr, "byte %d at %d: %d\n", b, at, rc);
            CHECK(ok ? rc == 0 : rc == ERR_BAD_HTTP);
            free(req.head);
        }
    }
}

int main(void)
{
    test_value_bytes_everywhere();
    test_held_head();
    test_valid();
    test_rejections();
    test_dots_allowed_inside_names();
    test_request_id();
    return check_done();
}
