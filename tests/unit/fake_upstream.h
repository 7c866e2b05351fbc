/* An upstream inside the test's own process: libevent's evhttp on a loopback
 * port, on the test's event loop. What it answers is chosen by path:
 *   /v1/chat/completions  200, a chat completion with usage
 *   /v1/limited           429 with Retry-After: 7
 *   /v1/broken            500 with an error body
 *   /v1/silent            never answers (the request is kept until the end)
 * It remembers the last request's Authorization header and body. */
#ifndef SLUICE_TEST_FAKE_UPSTREAM_H
#define SLUICE_TEST_FAKE_UPSTREAM_H

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>

struct fake_upstream {
    struct evhttp *http;
    int port;
    int requests;
    char authorization[256];
    char body[4096];
};

static const char fake_chat[] =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-4o\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hello\"},"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,"
    "\"total_tokens\":8}}";

static void fake_answer(struct evhttp_request *req, void *arg)
{
    struct fake_upstream *f = arg;
    f->requests++;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    snprintf(f->authorization, sizeof(f->authorization), "%s", auth ? auth : "");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    n = n < sizeof(f->body) - 1 ? n : sizeof(f->body) - 1;
    evbuffer_copyout(in, f->body, n);
    f->body[n] = '\0';
    const char *path = evhttp_request_get_uri(req);
    if (strstr(path, "/silent"))
        return; /* kept: evhttp frees it when the server goes */
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (strstr(path, "/limited")) {
        evhttp_add_header(h, "Retry-After", "7");
        evbuffer_add_printf(out, "{\"error\":{\"message\":\"slow down\",\"type\":\"requests\"}}");
        evhttp_send_reply(req, 429, "Too Many Requests", out);
    } else if (strstr(path, "/broken")) {
        evbuffer_add_printf(out, "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}");
        evhttp_send_reply(req, 500, "Internal Server Error", out);
    } else {
        evbuffer_add(out, fake_chat, sizeof(fake_chat) - 1);
        evhttp_send_reply(req, 200, "OK", out);
    }
    evbuffer_free(out);
}

static inline void fake_upstream_start(struct fake_upstream *f, struct event_base *base)
{
    memset(f, 0, sizeof(*f));
    f->http = evhttp_new(base);
    evhttp_set_gencb(f->http, fake_answer, f);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &len);
    f->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static inline void fake_upstream_stop(struct fake_upstream *f)
{
    evhttp_free(f->http);
}

#endif
