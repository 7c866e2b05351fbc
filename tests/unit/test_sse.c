/* SSE framing: events come out whole however the bytes are split. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sluice/sse.h"

struct collected {
    struct sl_buf all; /* events joined by '|' */
    int n;
};

static void collect(const char *ev, size_t len, void *arg)
{
    struct collected *c = arg;
    sl_buf_append(&c->all, ev, len);
    sl_buf_append(&c->all, "|", 1);
    c->n++;
}

/* Feeds text in pieces of `step` bytes. */
static void feed_split(const char *text, size_t step, struct collected *c)
{
    struct sse_parser p;
    sse_init(&p, 1 << 20);
    size_t len = strlen(text);
    for (size_t i = 0; i < len; i += step)
        sse_feed(&p, text + i, SL_MIN(step, len - i), collect, c);
    sse_flush(&p, collect, c);
    sse_free(&p);
}

static void test_splits(void)
{
    const char *text = "data: {\"a\":1}\n\nevent: x\ndata: two\n\ndata: [DONE]\n\n";
    const char *want = "data: {\"a\":1}\n\n|event: x\ndata: two\n\n|data: [DONE]\n\n|";
    for (size_t step = 1; step <= strlen(text); step++) {
        struct collected c = { 0 };
        feed_split(text, step, &c);
        CHECK(c.n == 3);
        CHECK_STR(c.all.data, want);
        sl_buf_free(&c.all);
    }
}

static void test_line_endings(void)
{
    const char *crlf = "data: a\r\n\r\ndata: b\r\n\r\n";
    for (size_t step = 1; step <= strlen(crlf); step++) {
        struct collected c = { 0 };
        feed_split(crlf, step, &c);
        CHECK(c.n == 2);
        CHECK_STR(c.all.data, "data: a\r\n\r\n|data: b\r\n\r\n|");
        sl_buf_free(&c.all);
    }
    struct collected c = { 0 };
    feed_split("data: a\r\rdata: b\n\n", 3, &c);
    CHECK(c.n == 2);
    sl_buf_free(&c.all);
}

static void test_unterminated_and_blank(void)
{
    struct collected c = { 0 };
    feed_split("\n\ndata: a\n\ndata: partial", 4, &c);
    CHECK(c.n == 2);
    CHECK_STR(c.all.data, "data: a\n\n|data: partial|");
    sl_buf_free(&c.all);
}

static void test_runaway_event(void)
{
    struct sse_parser p;
    struct collected c = { 0 };
    sse_init(&p, 16);
    sse_feed(&p, "data: 0123456789abcdefghij", 26, collect, &c);
    CHECK(c.n == 1); /* passed on rather than buffered without end */
    sse_free(&p);
    sl_buf_free(&c.all);
}

static void test_event_data(void)
{
    struct sl_str d;
    struct sl_buf scratch = { 0 };
    const char *ev = "event: x\ndata: {\"a\":1}\n\n";
    CHECK(sse_event_data(ev, strlen(ev), &d, &scratch));
    CHECK(sl_str_eq(d, "{\"a\":1}"));
    ev = "data:first\r\ndata: second\r\n\r\n";
    CHECK(sse_event_data(ev, strlen(ev), &d, &scratch));
    CHECK(sl_str_eq(d, "first\nsecond"));
    ev = "data\n\n";
    CHECK(sse_event_data(ev, strlen(ev), &d, &scratch) && d.len == 0);
    ev = ": comment\nevent: ping\n\n";
    CHECK(!sse_event_data(ev, strlen(ev), &d, &scratch));
    ev = "database: no\n\n";
    CHECK(!sse_event_data(ev, strlen(ev), &d, &scratch));
    sl_buf_free(&scratch);
}

int main(void)
{
    test_splits();
    test_line_endings();
    test_unterminated_and_blank();
    test_runaway_event();
    test_event_data();
    return check_done();
}
