/* Request records: the access log line and the usage log (usage.h). The
 * usage log's writer thread takes whole batches from a bounded buffer, so
 * workers only copy a line under a mutex. */
#include "sluice/usage.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/log.h"

#define USAGE_QUEUE_MAX (16u << 20) /* bytes waiting for the disk before records drop */

static void rfc3339(int64_t us, char out[32])
{
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(us / 1000 % 1000));
}

static void field_str(struct sl_buf *b, const char *name, const char *v)
{
    sl_buf_printf(b, ",\"%s\":", name);
    sl_buf_json_string(b, v, strlen(v));
}

void usage_json(const struct usage_record *u, struct sl_buf *b)
{
    char when[32], cost[32];
    rfc3339(u->end_us, when);
    sl_fmt_money(u->cost, cost);
    sl_buf_printf(b, "{\"time\":\"%s\"", when);
    field_str(b, "key", u->key);
    field_str(b, "team", u->team);
    field_str(b, "user", u->user ? u->user : "-");
    field_str(b, "model", u->model);
    field_str(b, "served_model", u->served_model);
    field_str(b, "backend", u->backend);
    sl_buf_printf(b, ",\"status\":%d", u->status);
    field_str(b, "end", u->end);
    field_str(b, "outcome", u->outcome);
    sl_buf_printf(b, ",\"attempts\":%d,\"stream\":%s", u->attempts, u->stream ? "true" : "false");
    sl_buf_printf(b, ",\"input_tokens\":%lld,\"cached_tokens\":%lld,\"cache_write_tokens\":%lld,"
                     "\"output_tokens\":%lld",
                  (long long)u->input_tokens, (long long)u->cached_tokens, (long long)u->cache_write_tokens,
                  (long long)u->output_tokens);
    sl_buf_printf(b, ",\"cost_usd\":%s,\"ttfb_ms\":%.1f,\"duration_ms\":%.1f,\"queued_ms\":%.0f",
                  cost, u->ttfb_ms, u->duration_ms, u->queued_ms);
    field_str(b, "path", u->path);
    if (u->request_id)
        field_str(b, "request_id", u->request_id);
    sl_buf_append(b, "}", 1);
}

/* A value for the text line: printable ASCII without spaces ('?' else),
 * at most max bytes (0: all). */
static void text_value(struct sl_buf *b, const char *name, const char *v, size_t max)
{
    sl_buf_printf(b, " %s=", name);
    size_t start = b->len, n = strlen(v);
    sl_buf_append(b, v, max && n > max ? max : n);
    for (size_t i = start; i < b->len; i++)
        if (b->data[i] <= 0x20 || b->data[i] >= 0x7f)
            b->data[i] = '?';
}

void usage_access_line(const struct usage_record *u, enum access_format f, struct sl_buf *b)
{
    if (f == ACCESS_JSON) {
        usage_json(u, b);
        return;
    }
    char when[32], cost[32];
    rfc3339(u->end_us, when);
    sl_fmt_money(u->cost, cost);
    sl_buf_printf(b, "%s info access", when);
    text_value(b, "key", u->key, 0);
    text_value(b, "team", u->team, 0);
    text_value(b, "user", u->user ? u->user : "-", 0);
    text_value(b, "model", u->model, 64);
    text_value(b, "served_model", u->served_model, 64);
    text_value(b, "backend", u->backend, 0);
    sl_buf_printf(b, " status=%d end=%s attempts=%d outcome=%s stream=%d", u->status, u->end,
                  u->attempts, u->outcome, u->stream);
    sl_buf_printf(b, " prompt_tokens=%lld completion_tokens=%lld cost_usd=%s ttfb_ms=%.1f "
                  "duration_ms=%.1f queued_ms=%.0f",
                  (long long)u->input_tokens, (long long)u->output_tokens, cost, u->ttfb_ms,
                  u->duration_ms, u->queued_ms);
    text_value(b, "path", u->path, 0);
    if (u->request_id)
        text_value(b, "request_id", u->request_id, 0);
}

/* ---- the usage log --------------------------------------------------------- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stopping;
    struct sl_buf queue; /* lines waiting for the writer */
    char *path;          /* wanted; NULL: no usage log */
    bool reopen;         /* the writer opens path again before its next write */
    uint64_t dropped;
    int fd;
} ul = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .fd = -1 };

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            log_error("usage log: write failed: %s", strerror(errno));
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void *writer_main(void *arg)
{
    (void)arg;
    struct sl_buf batch = { 0 };
    pthread_mutex_lock(&ul.lock);
    for (;;) {
        while (!ul.stopping && !ul.reopen && (ul.queue.len == 0 || ul.fd < 0))
            pthread_cond_wait(&ul.wake, &ul.lock);
        if (ul.reopen) {
            ul.reopen = false;
            char *path = ul.path ? sl_strdup(ul.path) : NULL;
            pthread_mutex_unlock(&ul.lock);
            int fd = path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640) : -1;
            if (path && fd < 0)
                log_error("usage log: cannot open %s: %s", path, strerror(errno));
            free(path);
            pthread_mutex_lock(&ul.lock);
            if (ul.fd >= 0)
                close(ul.fd);
            ul.fd = fd;
            continue;
        }
        if (ul.queue.len && ul.fd >= 0) { /* take the whole queue: one write for many records */
            struct sl_buf t = batch;
            batch = ul.queue;
            ul.queue = t;
            ul.queue.len = 0;
            int fd = ul.fd;
            pthread_mutex_unlock(&ul.lock);
            write_all(fd, batch.data, batch.len);
            batch.len = 0;
            pthread_mutex_lock(&ul.lock);
            continue;
        }
        if (ul.stopping)
            break;
    }
    pthread_mutex_unlock(&ul.lock);
    sl_buf_free(&batch);
    return NULL;
}

bool usage_log_set(const char *path)
{
    pthread_mutex_lock(&ul.lock);
    free(ul.path);
    ul.path = path ? sl_strdup(path) : NULL;
    ul.reopen = true;
    bool start = path && !ul.running;
    if (start)
        ul.running = true;
    pthread_cond_signal(&ul.wake);
    pthread_mutex_unlock(&ul.lock);
    if (start && pthread_create(&ul.thread, NULL, writer_main, NULL) != 0) {
        log_error("usage log: cannot start its writer thread");
        pthread_mutex_lock(&ul.lock);
        ul.running = false;
        pthread_mutex_unlock(&ul.lock);
        return false;
    }
    return true;
}

void usage_log_write(const struct usage_record *u)
{
    struct sl_buf line = { 0 };
    usage_json(u, &line);
    sl_buf_append(&line, "\n", 1);
    pthread_mutex_lock(&ul.lock);
    if (!ul.path || !ul.running) {
        /* no usage log */
    } else if (ul.queue.len + line.len > USAGE_QUEUE_MAX) {
        ul.dropped++;
    } else {
        sl_buf_append(&ul.queue, line.data, line.len);
        pthread_cond_signal(&ul.wake);
    }
    pthread_mutex_unlock(&ul.lock);
    sl_buf_free(&line);
}

uint64_t usage_log_dropped(void)
{
    pthread_mutex_lock(&ul.lock);
    uint64_t n = ul.dropped;
    pthread_mutex_unlock(&ul.lock);
    return n;
}

void usage_log_close(void)
{
    pthread_mutex_lock(&ul.lock);
    bool running = ul.running;
    ul.stopping = true;
    pthread_cond_signal(&ul.wake);
    pthread_mutex_unlock(&ul.lock);
    if (running) { /* a writer stuck on a dead disk or a full pipe does not hold up the exit */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        if (pthread_timedjoin_np(ul.thread, NULL, &until) != 0) {
            log_error("usage log: the writer is still blocked after 5 s; exiting without it");
            return;
        }
    }
    if (ul.fd >= 0)
        close(ul.fd);
    ul.fd = -1;
    ul.running = ul.stopping = false;
    free(ul.path);
    ul.path = NULL;
    sl_buf_free(&ul.queue);
}
