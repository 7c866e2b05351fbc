/* A finished request's trace ([telemetry]): its server span with the
 * OpenTelemetry GenAI attributes, the limiter's span, and a client span per
 * upstream attempt (whose id the upstream got as its traceparent's parent),
 * handed to the worker's exporter (telemetry.h). */
#ifndef SLUICE_SPANS_H
#define SLUICE_SPANS_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/limit_core.h"
#include "sluice/outcome.h"

struct config;
struct tel_ctx;
struct tel_exporter;

#define SPANS_MAX_ATTEMPTS 16 /* attempts traced per request */

/* One upstream attempt as its span shows it. Times are monotonic (sl_now_us). */
struct span_attempt {
    int backend;
    int64_t start_us, end_us; /* end 0: still running when the request ended */
    enum up_outcome outcome;
    int status;
    uint8_t span_id[8]; /* sent upstream as the traceparent's parent */
};

/* What the trace says of a request; NULL strings are left out. */
struct span_request {
    const struct config *cfg; /* the request's: its telemetry settings, backend names */
    const struct tel_ctx *trace;
    const char *method, *path, *model, *served_model, *key, *team, *backend, *end;
    const char *user; /* the end user (enduser.h): user.id */
    int status, attempts;
    bool stream, usage_seen;
    int64_t input_tokens, output_tokens;
    int64_t cost; /* micro-dollars */
    int64_t start_us;
    int64_t admit_start_us, admit_end_us; /* the first admission's call to the limiter; 0: none */
    const struct lim_decision *ticket;    /* its answer */
    int64_t queued_ms;
    const struct span_attempt *traced; /* the attempts traced, in order */
    int ntraced;
};

/* The request's spans to the exporter, if telemetry is on and the trace sampled. */
void spans_export(struct tel_exporter *e, const struct span_request *sr);

#endif
