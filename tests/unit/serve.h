/* An in-process worker for the handlers' unit tests: the router (server.c)
 * on a loopback port of its own, with a generation, the in-process limiter,
 * a curl multi and a models cache, all on one event loop that the test turns
 * while it waits for each answer. No threads, no other process. */
#ifndef SLUICE_TEST_SERVE_H
#define SLUICE_TEST_SERVE_H

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK_WITH_CONFIG
#define CHECK_WITH_LISTEN
#include "check.h"
#include "sluice/generation.h"
#include "sluice/http.h"
#include "sluice/limit_local.h"
#include "sluice/models.h"
#include "sluice/proxy.h"
#include "sluice/server.h"
#include "sluice/upstream.h"
#include "sluice/worker-t.h"

struct served {
    struct worker w;
    int port;
    char answer[65536]; /* the last answer: status line, headers and body */
    int status;
    const char *body; /* into answer */
};

/* Serves the config text; NULL if it does not load. */
static struct served *serve(const char *conf)
{
    struct config *cfg = check_load_config(conf, NULL);
    if (!cfg)
        return NULL;
    struct served *s = calloc(1, sizeof(*s));
    struct worker *w = &s->w;
    w->base = event_base_new();
    w->gen = gen_new(cfg, NULL);
    w->up = up_multi_new(w->base);
    w->models = models_cache_new();
    w->limiter.local = (struct lim_backend){ &lim_local_ops, lim_local_new(60000) };
    struct http_limits limits = { .max_header_size = 32768, .max_body_size = 1 << 20,
                                  .header_timeout_ms = 5000, .body_timeout_ms = 5000,
                                  .keepalive_timeout_ms = 5000, .send_timeout_ms = 5000,
                                  .max_connections = 64 };
    w->http = http_server_new(w->base, &limits, srv_handle, w);
    http_server_set_head_handler(w->http, srv_head);
    http_server_send_request_ids(w->http);
    int fd = check_listen(&s->port);
    http_server_listen(w->http, fd, HTTP_LISTENER_API, false);
    return s;
}

/* Sends one request (its whole text) and turns the loop until the answer is
 * complete (the server closes: "Connection: close" is added) or 5 s pass;
 * returns its status, 0 if none. */
static int ask(struct served *s, const char *method, const char *path, const char *headers,
               const char *body)
{
    char req[8192];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n%s",
                     method, path, headers ? headers : "", body ? strlen(body) : 0,
                     body ? body : "");
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)s->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(c, (struct sockaddr *)&a, sizeof(a)) || write(c, req, (size_t)n) != n)
        perror("connect");
    size_t got = 0;
    for (int turns = 0; turns < 5000; turns++) {
        event_base_loop(s->w.base, EVLOOP_NONBLOCK);
        struct pollfd p = { .fd = c, .events = POLLIN };
        if (poll(&p, 1, 1) <= 0)
            continue;
        ssize_t r = read(c, s->answer + got, sizeof(s->answer) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(c);
    s->answer[got] = '\0';
    s->status = strncmp(s->answer, "HTTP/1.1 ", 9) == 0 ? atoi(s->answer + 9) : 0;
    const char *blank = strstr(s->answer, "\r\n\r\n");
    s->body = blank ? blank + 4 : "";
    return s->status;
}

static void serve_end(struct served *s)
{
    struct worker *w = &s->w;
    http_server_free(w->http);
    proxy_worker_free(w); /* the request structs kept for reuse */
    models_cache_free(w->models);
    up_multi_free(w->up);
    lim_local_free(w->limiter.local.self);
    gen_unref(w->gen);
    event_base_free(w->base);
    free(s);
}

#endif
