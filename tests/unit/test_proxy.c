/* A request's whole life in process: the router, the proxy, the in-process
 * limiter and a libcurl transfer to an upstream on the same loop. The answer
 * and its x-ratelimit headers, the backend's credential instead of the
 * client's, a 429 from the limiter, an upstream error passed through, and
 * failover from a backend that refuses connections. */
#include "fake_upstream.h"
#include "serve.h"

#define KEY "Authorization: Bearer sk-proxy-unit-key-0001\r\nContent-Type: application/json\r\n"
#define CHAT "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    /* The upstream runs on the served loop, made with the config that names
     * it: a free port first, the upstream on it once the loop is there. */
    char conf[1024];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || getsockname(fd, (struct sockaddr *)&a, &len))
        perror("bind");
    close(fd);
    int port = ntohs(a.sin_port);
    struct fake_upstream f;
    snprintf(conf, sizeof(conf),
             "[backend dead]\nurl = http://127.0.0.1:9/v1\napi_key = dead-key\npriority = 1\n"
             "[backend up]\nurl = http://127.0.0.1:%d/v1\napi_key = upstream-secret\n"
             "priority = 2\n"
             "[key k]\nkey = sk-proxy-unit-key-0001\nrpm = 3\n",
             port);
    struct served *s = serve(conf);
    CHECK(s != NULL);
    memset(&f, 0, sizeof(f));
    f.http = evhttp_new(s->w.base);
    evhttp_set_gencb(f.http, fake_answer, &f);
    CHECK(evhttp_bind_socket(f.http, "127.0.0.1", (ev_uint16_t)port) == 0);

    CHECK(ask(s, "POST", "/v1/chat/completions", KEY, CHAT) == 200);
    CHECK(strstr(s->body, "\"content\":\"hello\"") != NULL);
    CHECK(strstr(s->answer, "x-ratelimit-limit-requests: 3\r\n") != NULL);
    CHECK(strstr(s->answer, "x-ratelimit-remaining-requests: 2\r\n") != NULL);
    CHECK(strcmp(f.authorization, "Bearer upstream-secret") == 0); /* never the client's key */
    CHECK(strcmp(f.body, CHAT) == 0);                              /* the body as it came */
    CHECK(ask(s, "POST", "/v1/broken", KEY, "{\"model\":\"gpt-4o\"}") == 500);
    CHECK(strstr(s->body, "\"boom\"") != NULL); /* the upstream's error, passed through, */
    CHECK(ask(s, "POST", "/v1/chat/completions", KEY, CHAT) == 200);
    CHECK(ask(s, "POST", "/v1/chat/completions", KEY, CHAT) == 429); /* rpm = 3 */
    CHECK(strstr(s->body, "\"rate_limit_exceeded\"") && strstr(s->answer, "Retry-After: "));
    CHECK(f.requests == 4); /* after the 500 was sent to the same backend once more */
    evhttp_free(f.http);
    serve_end(s);
    curl_global_cleanup();
    return check_done();
}
