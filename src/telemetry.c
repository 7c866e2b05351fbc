/* OTLP/HTTP JSON traces (telemetry.h). A worker's exporter keeps the spans
 * of finished requests as JSON text, up to max_queue spans, and posts them
 * to <otlp_endpoint>/v1/traces in one request a second (or as soon as 512
 * wait) through the worker's own curl multi handle: the loop never waits,
 * one export is in flight at a time, and what does not fit is dropped and
 * counted in sluice_trace_spans_dropped_total. */
#include "sluice/telemetry.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/http.h"
#include "sluice/log.h"
#include "sluice/upstream.h"
#include "sluice/util.h"

#define BATCH_SPANS 512
#define EXPORT_TIMEOUT_MS 10000

static atomic_ullong dropped, exported;

uint64_t tel_dropped(void)
{
    return atomic_load(&dropped);
}

uint64_t tel_exported(void)
{
    return atomic_load(&exported);
}

/* ---- trace context ------------------------------------------------------------ */

/* A lowercase hex digit's value (W3C trace context allows no other), or -1. */
static int hexval(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static bool unhex(const char *s, size_t n, uint8_t *out)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        int v = hi * 16 + lo;
        out[i] = (uint8_t)v;
        nonzero |= v != 0;
    }
    return nonzero; /* all-zero ids are invalid */
}

static void hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void tel_new_span_id(uint8_t out[8])
{
    do
        arc4random_buf(out, 8);
    while (!(out[0] | out[1] | out[2] | out[3] | out[4] | out[5] | out[6] | out[7]));
}

void tel_context(const struct http_req *req, int64_t sample_ppm, struct tel_ctx *out)
{
    memset(out, 0, sizeof(*out));
    const struct sl_str *tp = http_header(req, "traceparent");
    /* 00-<32 hex>-<16 hex>-<2 hex>: 55 characters */
    if (tp && tp->len == 55 && memcmp(tp->p, "00-", 3) == 0 && tp->p[35] == '-' &&
        tp->p[52] == '-' && unhex(tp->p + 3, 16, out->trace_id) &&
        unhex(tp->p + 36, 8, out->parent_id)) {
        int flags = hexval(tp->p[53]) * 16 + hexval(tp->p[54]);
        if (hexval(tp->p[53]) >= 0 && hexval(tp->p[54]) >= 0) {
            out->has_parent = true;
            out->sampled = flags & 1;
        }
    }
    if (!out->has_parent) {
        memset(out->parent_id, 0, sizeof(out->parent_id));
        do
            arc4random_buf(out->trace_id, sizeof(out->trace_id));
        while (!out->trace_id[0] && !out->trace_id[15]);
        /* TraceIdRatioBased: the id's low 8 bytes against the ratio */
        uint64_t low = 0;
        for (int i = 8; i < 16; i++)
            low = (low << 8) | out->trace_id[i];
        out->sampled = sample_ppm >= 1000000 ||
                       (double)low < (double)sample_ppm / 1e6 * 18446744073709551616.0;
    }
    tel_new_span_id(out->span_id);
}

void tel_traceparent_header(const struct tel_ctx *c, const uint8_t span[8], char out[80])
{
    char t[33], s[17];
    hex(c->trace_id, 16, t);
    hex(span, 8, s);
    snprintf(out, 80, "traceparent: 00-%s-%s-%s", t, s, c->sampled ? "01" : "00");
}

/* ---- the exporter ------------------------------------------------------------- */

struct tel_exporter {
    struct event_base *base;
    struct up_multi *up;
    struct event *timer;
    struct sl_buf queue; /* spans as JSON objects, comma separated */
    int queued;
    struct sl_buf body;  /* the export in flight */
    int sending;         /* its spans */
    struct up_transfer *xfer;
    struct curl_slist *headers;
    char *url, *service;
    int64_t max_queue, flush_ms;
    int64_t warned_ms;
};

static void flush(struct tel_exporter *e);

/* The queue is posted flush_interval after its first span at the latest. */
static void arm_timer(struct tel_exporter *e)
{
    if (evtimer_pending(e->timer, NULL))
        return;
    struct timeval tv = { (time_t)(e->flush_ms / 1000), (suseconds_t)(e->flush_ms % 1000 * 1000) };
    evtimer_add(e->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush(arg);
}

struct tel_exporter *tel_exporter_new(struct event_base *base, struct up_multi *up)
{
    struct tel_exporter *e = sl_calloc(1, sizeof(*e));
    e->base = base;
    e->up = up;
    e->timer = evtimer_new(base, on_timer, e);
    e->headers = curl_slist_append(NULL, "Content-Type: application/json");
    e->headers = curl_slist_append(e->headers, "Expect:");
    return e;
}

void tel_exporter_free(struct tel_exporter *e)
{
    if (!e)
        return;
    if (e->xfer)
        up_cancel(e->xfer);
    atomic_fetch_add(&dropped, (unsigned long long)(e->queued + (e->xfer ? e->sending : 0)));
    event_free(e->timer);
    sl_buf_free(&e->queue);
    sl_buf_free(&e->body);
    curl_slist_free_all(e->headers);
    free(e->url);
    free(e->service);
    free(e);
}

static void warn_failed(struct tel_exporter *e, int status, const char *why)
{
    int64_t now = sl_now_ms();
    if (e->warned_ms && now - e->warned_ms < 60000)
        return; /* once a minute: a down collector must not flood the log */
    e->warned_ms = now;
    log_warn("telemetry: export to %s failed (%s%s%d); spans are dropped meanwhile", e->url, why,
             status ? ", status " : "", status);
}

static size_t on_data(struct up_transfer *t, const char *data, size_t len, void *arg)
{
    (void)t;
    (void)data;
    (void)arg;
    return len; /* the collector's answer is not needed */
}

static void on_done(struct up_transfer *t, enum up_end how, void *arg)
{
    struct tel_exporter *e = arg;
    int status = how == UP_ANSWERED ? up_status(t) : 0;
    if (status >= 200 && status <= 299) {
        atomic_fetch_add(&exported, (unsigned long long)e->sending);
    } else {
        atomic_fetch_add(&dropped, (unsigned long long)e->sending);
        warn_failed(e, status, status ? "answered" : up_error(t));
    }
    e->xfer = NULL;
    e->sending = 0;
    if (e->queued >= BATCH_SPANS)
        flush(e);
    else if (e->queued) /* what came while this one was out goes at its time */
        arm_timer(e);
}

/* Sent twice at worst, a batch is taken twice: no harm to a trace. */
static const struct up_callbacks export_cb = { up_ignore_headers, on_data, on_done,
                                               up_resend_always };

static void flush(struct tel_exporter *e)
{
    if (!e->queued || e->xfer || !e->url)
        return; /* the one in flight ends by calling here again when a batch waits */
    evtimer_del(e->timer);
    e->body.len = 0;
    sl_buf_appends(&e->body, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    sl_buf_appends(&e->body, "{\"key\":\"service.name\",\"value\":{\"stringValue\":");
    sl_buf_json_string(&e->body, e->service, strlen(e->service));
    sl_buf_appends(&e->body, "}},{\"key\":\"service.version\",\"value\":{\"stringValue\":\"" SLUICE_VERSION
                             "\"}},{\"key\":\"telemetry.sdk.name\",\"value\":{\"stringValue\":\"sluice\"}}]},"
                             "\"scopeSpans\":[{\"scope\":{\"name\":\"sluice\",\"version\":\"" SLUICE_VERSION
                             "\"},\"spans\":[");
    sl_buf_append(&e->body, e->queue.data, e->queue.len);
    sl_buf_appends(&e->body, "]}]}]}");
    e->sending = e->queued;
    e->queued = 0;
    e->queue.len = 0;
    struct up_request ur = { .method = UP_POST,
                             .url = e->url,
                             .headers = e->headers,
                             .body = e->body.data,
                             .body_len = e->body.len,
                             .connect_timeout_ms = 2000,
                             .timeout_ms = EXPORT_TIMEOUT_MS,
                             .keepalive_s = 4 };
    e->xfer = up_start(e->up, &ur, &export_cb, e);
    if (!e->xfer) {
        atomic_fetch_add(&dropped, (unsigned long long)e->sending);
        e->sending = 0;
    }
}

static void attr_json(struct sl_buf *b, const struct tel_attr *a)
{
    sl_buf_appends(b, "{\"key\":");
    sl_buf_json_string(b, a->key, strlen(a->key));
    switch (a->type) {
    case TEL_STR:
        sl_buf_appends(b, ",\"value\":{\"stringValue\":");
        sl_buf_json_string(b, a->s, strlen(a->s));
        sl_buf_appends(b, "}}");
        break;
    case TEL_INT: /* int64 is a JSON string in OTLP/JSON */
        sl_buf_printf(b, ",\"value\":{\"intValue\":\"%lld\"}}", (long long)a->i);
        break;
    case TEL_DOUBLE:
        sl_buf_printf(b, ",\"value\":{\"doubleValue\":%.6f}}", a->d);
        break;
    case TEL_BOOL:
        sl_buf_printf(b, ",\"value\":{\"boolValue\":%s}}", a->i ? "true" : "false");
        break;
    }
}

static void span_json(struct sl_buf *b, const struct tel_ctx *c, const struct tel_span *s)
{
    char trace[33], id[17], parent[17];
    hex(c->trace_id, 16, trace);
    hex(s->span_id, 8, id);
    sl_buf_printf(b, "{\"traceId\":\"%s\",\"spanId\":\"%s\",", trace, id);
    if (s->parent_id) {
        hex(s->parent_id, 8, parent);
        sl_buf_printf(b, "\"parentSpanId\":\"%s\",", parent);
    }
    sl_buf_appends(b, "\"name\":");
    sl_buf_json_string(b, s->name, strlen(s->name));
    sl_buf_printf(b, ",\"kind\":%d,\"startTimeUnixNano\":\"%lld000\",\"endTimeUnixNano\":\"%lld000\","
                     "\"attributes\":[",
                  (int)s->kind, (long long)s->start_us, (long long)SL_MAX(s->end_us, s->start_us));
    for (int i = 0; i < s->nattrs; i++) {
        if (i)
            sl_buf_append(b, ",", 1);
        attr_json(b, &s->attrs[i]);
    }
    sl_buf_printf(b, "],\"status\":{\"code\":%d}}", s->error ? 2 : 0);
}

/* The collector's address and resource as the config in force says. */
static void configure(struct tel_exporter *e, const struct cfg_telemetry *cfg)
{
    size_t n = strlen(cfg->otlp_endpoint);
    if (!e->url || strncmp(e->url, cfg->otlp_endpoint, n) != 0 || strcmp(e->url + n, "/v1/traces")) {
        free(e->url);
        e->url = sl_malloc(n + 11);
        memcpy(e->url, cfg->otlp_endpoint, n);
        memcpy(e->url + n, "/v1/traces", 11);
    }
    if (!e->service || strcmp(e->service, cfg->service_name) != 0) {
        free(e->service);
        e->service = sl_strdup(cfg->service_name);
    }
    e->max_queue = cfg->max_queue;
    e->flush_ms = cfg->flush_ms;
}

void tel_export(struct tel_exporter *e, const struct cfg_telemetry *cfg, const struct tel_ctx *c,
                const struct tel_span *spans, int n)
{
    configure(e, cfg);
    if (e->queued + n > e->max_queue) { /* full: dropped, never waited for */
        atomic_fetch_add(&dropped, (unsigned long long)n);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (e->queued + i)
            sl_buf_append(&e->queue, ",", 1);
        span_json(&e->queue, c, &spans[i]);
    }
    e->queued += n;
    if (e->queued >= BATCH_SPANS)
        flush(e);
    else
        arm_timer(e);
}
