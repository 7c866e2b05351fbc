/* libFuzzer target: a client connection's bytes, as the HTTP server reads
 * them — request heads, Content-Length and chunked bodies, pipelining,
 * Expect: 100-continue, a head handler's refusal and streamed answers. The
 * bytes go over a real loopback connection to a real http_server; the client
 * half-closes and the loop runs until the server has closed it. Every request
 * is answered or refused, nothing crashes, leaks or hangs (-timeout). The
 * connection is a Unix socket (an abstract name, nothing on disk): the
 * server reads it as it reads TCP, and 10,000 connections a second leave no
 * TIME_WAIT behind to run out of loopback ports. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "sluice/http.h"
#include "sluice/log.h"

static struct event_base *base;
static struct http_server *srv;
static struct sockaddr_un addr;
static socklen_t addr_len;

static void handle(struct http_req *req, void *arg)
{
    (void)arg;
    char text[64];
    int n = snprintf(text, sizeof(text), "%zu\n", req->body.len);
    if (req->path.len >= 7 && memcmp(req->path.p, "/stream", 7) == 0) {
        http_stream_begin(req, 200, "Content-Type: text/plain\r\n", 26);
        http_stream_write(req, text, (size_t)n);
        http_stream_queue(req, req->body.data, req->body.len);
        return http_stream_end(req);
    }
    if (req->path.len >= 6 && memcmp(req->path.p, "/abort", 6) == 0) {
        http_stream_begin(req, 200, NULL, 0);
        return http_stream_abort(req);
    }
    http_respond(req, 200, "Content-Type: text/plain\r\n", 26, text, (size_t)n);
}

/* Refuses /refuse before its body is read; lets uploads be larger. */
static bool head(struct http_req *req, void *arg)
{
    (void)arg;
    if (req->path.len >= 7 && memcmp(req->path.p, "/refuse", 7) == 0) {
        http_send_error(req, ERR_BAD_REQUEST, "refused", NULL, NULL);
        return false;
    }
    return true;
}

static void start(void)
{
    log_set_level(LOG_OFF);
    base = event_base_new();
    struct http_limits limits = {
        .max_header_size = 8192, .max_body_size = 16384, .header_timeout_ms = 5000,
        .body_timeout_ms = 5000, .keepalive_timeout_ms = 5000, .send_timeout_ms = 5000,
        .max_connections = 16, .max_buffered = 1 << 20,
    };
    srv = http_server_new(base, &limits, handle, NULL);
    http_server_set_head_handler(srv, head);
    http_server_send_request_ids(srv);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    addr.sun_family = AF_UNIX;
    int n = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "sluice-fuzz-http-%d", (int)getpid());
    addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, addr_len) != 0 || listen(fd, 64) != 0 ||
        http_server_listen(srv, fd, HTTP_LISTENER_API, false) != 0) {
        perror("fuzz_http: listen");
        abort();
    }
}

/* Reads (and drops) what the server sent; false once it has closed. */
static bool drain(int fd)
{
    char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base)
        start();
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, addr_len) != 0) {
        perror("fuzz_http: connect");
        abort();
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    if (size == 0)
        shutdown(fd, SHUT_WR);
    size_t sent = 0;
    bool open = true;
    /* A loop pass per step; the server's deadlines are seconds, so a
     * connection it keeps open past 100,000 passes is a hang. */
    for (int pass = 0; open && pass < 100000; pass++) {
        if (sent < size) {
            ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                sent = size; /* the server closed: it refused what it read */
            if (sent == size)
                shutdown(fd, SHUT_WR);
        }
        event_base_loop(base, EVLOOP_NONBLOCK);
        open = drain(fd);
    }
    if (open) {
        fprintf(stderr, "fuzz_http: the server kept the connection open\n");
        abort();
    }
    close(fd);
    /* The server frees its side once it reads the close: a connection still
     * open after that is one it lost track of. */
    for (int pass = 0; pass < 100000 && http_server_connections(srv) > 0; pass++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    if (http_server_connections(srv) > 0) {
        fprintf(stderr, "fuzz_http: the server kept a connection the client closed\n");
        abort();
    }
    return 0;
}
