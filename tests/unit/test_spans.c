/* A finished request's spans: the server span, the limiter's when the
 * limiter was asked, one per attempt traced; nothing when the trace is not
 * sampled or telemetry is off. Counted by what an exporter that never got to
 * post drops when it is freed. */
#include <event2/event.h>

#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/config.h"
#include "sluice/spans.h"
#include "sluice/telemetry.h"
#include "sluice/upstream.h"

/* The spans one request makes, as the exporter counts them. */
static uint64_t spans_of(struct event_base *base, struct up_multi *up, const struct span_request *r)
{
    struct tel_exporter *e = tel_exporter_new(base, up);
    uint64_t before = tel_dropped();
    spans_export(e, r);
    tel_exporter_free(e); /* what was queued and never posted counts as dropped */
    return tel_dropped() - before;
}

int main(void)
{
    struct config *c = check_load_config("[telemetry]\notlp_endpoint = http://127.0.0.1:9\n"
                                         "flush_interval = 60s\n"
                                         "[backend a]\nurl = http://127.0.0.1:9/v1\n"
                                         "[backend b]\nurl = http://127.0.0.1:9/v1\n",
                                         NULL);
    CHECK(c != NULL);
    struct event_base *base = event_base_new();
    struct up_multi *up = up_multi_new(base);
    struct tel_ctx trace = { .sampled = true };
    struct lim_decision ticket = { .admitted = true, .where = LIM_LOCAL };
    struct span_attempt tries[2] = { { .backend = 0, .start_us = 1, .end_us = 2,
                                       .outcome = UP_OUTCOME_ERROR_STATUS, .status = 503 },
                                     { .backend = 1, .start_us = 3, .end_us = 0,
                                       .outcome = UP_OUTCOME_SUCCESS, .status = 200 } };
    struct span_request r = { .cfg = c, .trace = &trace, .method = "POST",
                              .path = "/v1/chat/completions", .model = "gpt-4o", .key = "k",
                              .end = "responded", .status = 200, .attempts = 2, .start_us = 1,
                              .admit_start_us = 1, .admit_end_us = 2, .ticket = &ticket,
                              .traced = tries, .ntraced = 2 };
    CHECK(spans_of(base, up, &r) == 4); /* server, limiter, two attempts */
    r.admit_end_us = 0; /* the limiter was never asked */
    r.ntraced = 0;
    CHECK(spans_of(base, up, &r) == 1);
    trace.sampled = false;
    CHECK(spans_of(base, up, &r) == 0);
    trace.sampled = true;
    r.path = "/v1/files/file-1"; /* no GenAI operation, no model: still its server span */
    r.model = NULL;
    CHECK(spans_of(base, up, &r) == 1);
    struct config *off = check_load_config("[backend a]\nurl = http://127.0.0.1:9/v1\n", NULL);
    r.cfg = off;
    CHECK(spans_of(base, up, &r) == 0);
    up_multi_free(up);
    event_base_free(base);
    cfg_unref(c);
    cfg_unref(off);
    return check_done();
}
