/* A worker thread: it serves on the sockets it is given, takes a new
 * generation without dropping a request, and stops (draining) when asked. */
#include <arpa/inet.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define CHECK_WITH_CONFIG
#define CHECK_WITH_LISTEN
#include "check.h"
#include "sluice/generation.h"
#include "sluice/http.h"
#include "sluice/limit_local.h"
#include "sluice/worker.h"


/* One request from this (the main) thread; the answer's status, 0 if none. */
static int get(int port, const char *path)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = { 5, 0 };
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    char req[256], answer[4096] = "";
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                     path);
    if (connect(c, (struct sockaddr *)&a, sizeof(a)) == 0 && write(c, req, (size_t)n) == n)
        if (read(c, answer, sizeof(answer) - 1) < 0)
            answer[0] = '\0';
    close(c);
    return strncmp(answer, "HTTP/1.1 ", 9) == 0 ? atoi(answer + 9) : 0;
}

int main(void)
{
    evthread_use_pthreads();
    const char *conf = "[backend a]\nurl = http://127.0.0.1:9/v1\n[key k]\nkey = sk-worker-unit-01\n";
    struct generation *g = gen_new(check_load_config(conf, NULL), NULL);
    struct lim_local *local = lim_local_new(60000);
    int port, fd = check_listen(&port), kind = HTTP_LISTENER_API;
    bool tls = false;
    struct worker *w = worker_new(0, g, local, &fd, &kind, &tls, 1);
    CHECK(w != NULL && worker_start(w) == 0);
    CHECK(get(port, "/healthz") == 200);
    CHECK(get(port, "/nowhere") == 404);
    struct generation *g2 = gen_new(check_load_config(conf, NULL), g); /* a reload */
    worker_set_generation(w, g2);
    for (int i = 0; i < 100 && w->gen != g2; i++)
        usleep(10000);
    CHECK(w->gen == g2); /* taken by the worker's own loop */
    CHECK(get(port, "/healthz") == 200);
    worker_request_stop(w);
    worker_join(w);
    CHECK(get(port, "/healthz") == 0); /* no longer accepting */
    worker_free(w);
    gen_unref(g2);
    gen_unref(g);
    lim_local_free(local);
    return check_done();
}
