/* A minimal test harness: CHECK records a failure and goes on; check_done()
 * prints "N passed, N failed" and returns the exit status. */
#ifndef SLUICE_CHECK_H
#define SLUICE_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

/* Random inputs from a fixed xorshift sequence: the same every run. */
static uint64_t check_rng = 88172645463325252ULL;

static inline uint64_t check_rand(void)
{
    check_rng ^= check_rng << 13;
    check_rng ^= check_rng >> 7;
    check_rng ^= check_rng << 17;
    return check_rng;
}

/* 0 <= result < n */
static inline size_t check_below(size_t n)
{
    return (size_t)(check_rand() % n);
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ && b_ && strcmp(a_, b_) == 0) {                                                     \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: check failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__,         \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                       \
        }                                                                                          \
    } while (0)

#ifdef CHECK_WITH_REDIS
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* A loopback TCP port nothing listens on now. */
static int check_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* A redis-server on 127.0.0.1:port without persistence, with password (NULL:
 * none); it dies with the test, however the test ends. */
static pid_t check_start_redis(int port, const char *password)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", password ? "--requirepass" : (char *)NULL, password,
               (char *)NULL);
        _exit(127);
    }
    return pid;
}
#endif

#ifdef CHECK_WITH_CONFIG
#include <stdlib.h>
#include <unistd.h>

#include "sluice/config.h"

/* Writes text to a temporary file and loads it; errors go to stderr. */
static struct config *check_load_config(const char *text, struct cfg_errors *errs)
{
    char path[] = "/tmp/sluice-test-XXXXXX";
    int fd = mkstemp(path);
    if (write(fd, text, strlen(text)) < 0)
        perror("write");
    close(fd);
    struct cfg_errors local = { 0 };
    struct config *c = cfg_load(path, errs ? errs : &local);
    for (int i = 0; !errs && i < local.n; i++)
        fprintf(stderr, "%s\n", local.lines[i]);
    cfg_errors_free(&local);
    unlink(path);
    return c;
}
#endif

#ifdef CHECK_WITH_REQUEST
#include "sluice/http.h"

/* A client request as http.c would hand it over: method, path, query and
 * headers ("Name: value", NULL-terminated) point into static text; body is
 * copied into the request's buffer. */
static void check_request(struct http_req *req, const char *method, const char *path,
                          const char *query, const char *const *headers, const char *body)
{
    memset(req, 0, sizeof(*req));
    req->method = (struct sl_str){ method, strlen(method) };
    req->path = (struct sl_str){ path, strlen(path) };
    req->query = (struct sl_str){ query ? query : "", query ? strlen(query) : 0 };
    for (int i = 0; headers && headers[i] && i < HTTP_MAX_HEADERS; i++) {
        const char *colon = strchr(headers[i], ':');
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        req->headers[i].name = (struct sl_str){ headers[i], (size_t)(colon - headers[i]) };
        req->headers[i].value = (struct sl_str){ v, strlen(v) };
        req->nheaders = i + 1;
    }
    if (body)
        sl_buf_append(&req->body, body, strlen(body));
}
#endif

#ifdef CHECK_WITH_LISTEN
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* A listening non-blocking socket on a free loopback port (*port). */
static int check_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16) ||
        getsockname(fd, (struct sockaddr *)&a, &len))
        perror("listen");
    *port = ntohs(a.sin_port);
    return fd;
}
#endif

static int check_done(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
