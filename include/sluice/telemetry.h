/* Traces over OTLP/HTTP with JSON encoding ([telemetry], telemetry.c): one
 * trace per request, W3C trace context continued from the client and sent
 * upstream, spans batched per worker and posted through the worker's curl
 * multi handle. The queue is bounded: a full one drops spans and counts
 * them, it never blocks or grows. */
#ifndef SLUICE_TELEMETRY_H
#define SLUICE_TELEMETRY_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct up_multi;
struct http_req;
struct cfg_telemetry;

/* A request's place in its trace. */
struct tel_ctx {
    uint8_t trace_id[16];
    uint8_t parent_id[8]; /* the client's span; all zero without one */
    uint8_t span_id[8];   /* sluice's server span for the request */
    bool has_parent;
    bool sampled;
};

/* Continues the client's traceparent (version 00, valid ids) or starts a
 * trace; sampled as the client's flag says, else by sample_ratio (parts per
 * million) of the trace id. */
void tel_context(const struct http_req *req, int64_t sample_ppm, struct tel_ctx *out);
void tel_new_span_id(uint8_t out[8]);
/* "traceparent: 00-<trace>-<span>-<flags>" for a request sent upstream by span. */
void tel_traceparent_header(const struct tel_ctx *c, const uint8_t span[8], char out[80]);

enum tel_kind { TEL_INTERNAL = 1, TEL_SERVER = 2, TEL_CLIENT = 3 };
enum tel_type { TEL_STR, TEL_INT, TEL_DOUBLE, TEL_BOOL };

struct tel_attr {
    const char *key;
    enum tel_type type;
    const char *s;
    int64_t i;
    double d;
};

struct tel_span {
    const char *name;
    enum tel_kind kind;
    const uint8_t *span_id, *parent_id; /* parent NULL: the trace's root here */
    int64_t start_us, end_us;           /* wall clock, microseconds since the epoch */
    bool error;                         /* status ERROR, else UNSET */
    const struct tel_attr *attrs;
    int nattrs;
};

struct tel_exporter;
struct tel_exporter *tel_exporter_new(struct event_base *base, struct up_multi *up);
/* Queues a request's spans (one trace), if the exporter has room for them all. */
void tel_export(struct tel_exporter *e, const struct cfg_telemetry *cfg, const struct tel_ctx *c,
                const struct tel_span *spans, int n);
void tel_exporter_free(struct tel_exporter *e);
/* Spans dropped (queue full or export failed), and exported, by every worker. */
uint64_t tel_dropped(void);
uint64_t tel_exported(void);

#endif
