/* libcurl transfers on the event loop, against an upstream in this process:
 * a whole answer and its headers, Retry-After, each way a transfer ends
 * (answered, connection refused, timed out, refused by the data callback),
 * and a cancel before the answer. */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "fake_upstream.h"
#include "sluice/upstream.h"

struct seen {
    int status, done;
    enum up_end how;
    char body[8192];
    size_t len;
    int64_t retry_after_ms;
    double ttfb;
    bool refuse;
};

static void on_headers(struct up_transfer *t, void *arg)
{
    struct seen *s = arg;
    s->status = up_status(t);
    s->retry_after_ms = up_retry_after_ms(t);
}

static size_t on_data(struct up_transfer *t, const char *data, size_t len, void *arg)
{
    (void)t;
    struct seen *s = arg;
    if (s->refuse)
        return 0;
    memcpy(s->body + s->len, data, len < sizeof(s->body) - s->len ? len : 0);
    s->len += len;
    return len;
}

static void on_done(struct up_transfer *t, enum up_end how, void *arg)
{
    struct seen *s = arg;
    s->how = how;
    s->ttfb = up_ttfb(t);
    s->done = 1;
}

static const struct up_callbacks cb = { on_headers, on_data, on_done, up_resend_always };

static struct seen run(struct event_base *base, struct up_multi *m, const char *url,
                       long timeout_ms, bool refuse)
{
    struct seen s = { .refuse = refuse };
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer upstream-key");
    struct up_request r = { .method = UP_POST, .url = url, .headers = h, .body = "{}", .body_len = 2,
                            .connect_timeout_ms = 1000, .timeout_ms = timeout_ms,
                            .keepalive_s = 60 };
    struct up_transfer *t = up_start(m, &r, &cb, &s);
    CHECK(t != NULL);
    for (int i = 0; i < 5000 && !s.done; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(200);
    curl_slist_free_all(h);
    return s;
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd); /* bound once, now nobody listens there */
    return ntohs(a.sin_port);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct event_base *base = event_base_new();
    struct up_multi *m = up_multi_new(base);
    struct fake_upstream f;
    fake_upstream_start(&f, base);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", f.port);
    struct seen s = run(base, m, url, 5000, false);
    CHECK(s.done && s.how == UP_ANSWERED && s.status == 200);
    CHECK(s.len == sizeof(fake_chat) - 1 && memcmp(s.body, fake_chat, s.len) == 0);
    CHECK(strcmp(f.authorization, "Bearer upstream-key") == 0 && strcmp(f.body, "{}") == 0);
    CHECK(s.ttfb > 0 && s.retry_after_ms == -1);
    s = run(base, m, url, 5000, false); /* again: the kept-alive connection */
    CHECK(s.how == UP_ANSWERED && f.requests == 2);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/limited", f.port);
    s = run(base, m, url, 5000, false);
    CHECK(s.how == UP_ANSWERED && s.status == 429 && s.retry_after_ms == 7000);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", f.port);
    s = run(base, m, url, 5000, true);
    CHECK(s.how == UP_REFUSED);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/silent", f.port);
    s = run(base, m, url, 300, false);
    CHECK(s.how == UP_TIMEOUT && s.status == 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", closed_port());
    s = run(base, m, url, 5000, false);
    CHECK(s.how == UP_CONNECT_FAILED);
    /* a transfer cancelled before its answer: no callback, nothing leaks */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/silent", f.port);
    struct seen c = { 0 };
    struct up_request r = { .method = UP_GET, .url = url, .connect_timeout_ms = 1000,
                            .timeout_ms = 5000, .keepalive_s = 60 };
    struct up_transfer *t = up_start(m, &r, &cb, &c);
    for (int i = 0; i < 50; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(200);
    up_cancel(t);
    CHECK(!c.done);
    up_multi_free(m);
    fake_upstream_stop(&f);
    event_base_free(base);
    curl_global_cleanup();
    return check_done();
}
