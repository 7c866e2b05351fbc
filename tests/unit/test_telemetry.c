/* W3C trace context: a client's valid traceparent is continued (its trace,
 * its span as parent, its sampled flag), anything else starts a trace sampled
 * by sample_ratio; the header sent upstream names the given span. */
#define CHECK_WITH_REQUEST
#include "check.h"
#include "sluice/telemetry.h"

static void context(const char *traceparent, int64_t ppm, struct tel_ctx *out)
{
    char line[128];
    snprintf(line, sizeof(line), "traceparent: %s", traceparent);
    const char *headers[] = { line, NULL };
    struct http_req req;
    check_request(&req, "POST", "/v1/chat/completions", NULL, traceparent ? headers : NULL, NULL);
    tel_context(&req, ppm, out);
}

int main(void)
{
    struct tel_ctx c;
    context("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", 0, &c);
    CHECK(c.has_parent && c.sampled);
    CHECK(c.trace_id[0] == 0x0a && c.trace_id[15] == 0x9c && c.parent_id[0] == 0xb7);
    char out[80];
    uint8_t span[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    tel_traceparent_header(&c, span, out);
    CHECK_STR(out, "traceparent: 00-0af7651916cd43dd8448eb211c80319c-0102030405060708-01");
    CHECK(memcmp(c.span_id, "\0\0\0\0\0\0\0\0", 8) != 0); /* sluice's own server span */
    context("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", 1000000, &c);
    CHECK(c.has_parent && !c.sampled); /* the client's flag decides */
    const char *bad[] = { "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                          "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
                          "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz",
                          "00-xyz", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        context(bad[i], 1000000, &c);
        CHECK(!c.has_parent && c.sampled);
        CHECK(memcmp(c.parent_id, "\0\0\0\0\0\0\0\0", 8) == 0);
    }
    int sampled = 0;
    for (int i = 0; i < 2000; i++) { /* a ratio of 0.25 */
        context(NULL, 250000, &c);
        sampled += c.sampled;
    }
    CHECK(sampled > 400 && sampled < 600);
    context(NULL, 0, &c);
    CHECK(!c.sampled);
    return check_done();
}
