/* The request-head parser: what it accepts and every framing it refuses. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
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

int main(void)
{
    test_valid();
    test_rejections();
    test_dots_allowed_inside_names();
    test_request_id();
    return check_done();
}
