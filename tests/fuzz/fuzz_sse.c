/* libFuzzer target: an upstream's event stream (sse.h), cut into reads at
 * places the input's first byte chooses. What must hold: whatever the cuts,
 * the same events come out as when the stream is read in one piece (a CR LF
 * split across reads included); with a cap on an event's length, no byte
 * comes out twice; each event's data and usage can be read. */
#include <string.h>

#include "fuzz.h"
#include "sluice/log.h"
#include "sluice/sse.h"
#include "sluice/tokens.h"

struct seen {
    struct sl_buf events; /* each event's length, then its bytes */
    size_t bytes;
    struct sl_buf scratch;
};

static void on_event(const char *event, size_t len, void *arg)
{
    struct seen *s = arg;
    FUZZ_ASSERT(len > 0);
    sl_buf_append(&s->events, &len, sizeof(len));
    sl_buf_append(&s->events, event, len);
    s->bytes += len;
    struct sl_str d;
    if (sse_event_data(event, len, &d, &s->scratch)) {
        FUZZ_ASSERT(d.len <= len || d.p == s->scratch.data);
        struct tok_usage u = { 0 };
        tok_usage_from_sse_data(d.p, d.len, &u);
    }
}

/* Reads the stream in pieces of 1 to 61 bytes (cut == 0: in one piece). */
static void read_stream(const char *stream, size_t len, unsigned cut, size_t max_event,
                        struct seen *s)
{
    struct sse_parser p;
    sse_init(&p, max_event);
    for (size_t pos = 0; pos < len;) {
        size_t piece = cut ? 1 + (cut = cut * 29 + 7) % 61 : len;
        if (piece > len - pos)
            piece = len - pos;
        sse_feed(&p, stream + pos, piece, on_event, s);
        pos += piece;
    }
    sse_flush(&p, on_event, s);
    sse_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    log_set_level(LOG_OFF);
    unsigned cut = data[0] | 1u;
    const char *stream = (const char *)data + 1;
    size_t len = size - 1;

    struct seen whole = { { 0 }, 0, { 0 } }, cut_up = { { 0 }, 0, { 0 } }, capped = { { 0 }, 0, { 0 } };
    read_stream(stream, len, 0, 0, &whole);
    read_stream(stream, len, cut, 0, &cut_up);
    FUZZ_ASSERT(whole.events.len == cut_up.events.len);
    FUZZ_ASSERT(!whole.events.len || memcmp(whole.events.data, cut_up.events.data, whole.events.len) == 0);
    FUZZ_ASSERT(whole.bytes <= len);
    read_stream(stream, len, cut, 16 + data[0] % 64, &capped);
    FUZZ_ASSERT(capped.bytes <= len);
    sl_buf_free(&whole.events);
    sl_buf_free(&cut_up.events);
    sl_buf_free(&capped.events);
    sl_buf_free(&whole.scratch);
    sl_buf_free(&cut_up.scratch);
    sl_buf_free(&capped.scratch);
    return 0;
}
