/* SSE event framing per the WHATWG EventSource parsing rules. */
#include "sluice/sse.h"

#include <stdlib.h>
#include <string.h>

void sse_init(struct sse_parser *p, size_t max_event)
{
    memset(p, 0, sizeof(*p));
    p->max_event = max_event;
}

void sse_free(struct sse_parser *p)
{
    sl_buf_free(&p->pending);
}

/* Scans buf[0..len) for complete events, calling cb for each; returns the
 * number of bytes consumed. A CR at the very end is left unconsumed because
 * an LF may follow in the next read. */
static size_t scan_events(const char *buf, size_t len, sse_event_cb cb, void *arg)
{
    size_t event_start = 0, line_start = 0, i = 0;
    while (i < len) {
        char ch = buf[i];
        if (ch != '\n' && ch != '\r') {
            i++;
            continue;
        }
        size_t eol_len = 1;
        if (ch == '\r') {
            if (i + 1 == len)
                break; /* CR LF may be split across reads */
            if (buf[i + 1] == '\n')
                eol_len = 2;
        }
        bool blank = i == line_start;
        i += eol_len;
        line_start = i;
        if (blank && i - event_start > eol_len) {
            cb(buf + event_start, i - event_start, arg);
            event_start = i;
        } else if (blank) {
            event_start = i; /* a stray blank line between events is dropped */
        }
    }
    return event_start;
}

void sse_feed(struct sse_parser *p, const char *data, size_t len, sse_event_cb cb, void *arg)
{
    if (p->pending.len == 0) {
        size_t used = scan_events(data, len, cb, arg);
        if (used < len)
            sl_buf_append(&p->pending, data + used, len - used);
    } else {
        sl_buf_append(&p->pending, data, len);
        size_t used = scan_events(p->pending.data, p->pending.len, cb, arg);
        if (used) {
            memmove(p->pending.data, p->pending.data + used, p->pending.len - used);
            p->pending.len -= used;
        }
    }
    /* A runaway event is passed on as it is rather than buffered without end. */
    if (p->max_event && p->pending.len > p->max_event) {
        cb(p->pending.data, p->pending.len, arg);
        p->pending.len = 0;
    }
}

void sse_flush(struct sse_parser *p, sse_event_cb cb, void *arg)
{
    if (p->pending.len)
        cb(p->pending.data, p->pending.len, arg);
    p->pending.len = 0;
}

bool sse_event_data(const char *event, size_t len, struct sl_str *out, struct sl_buf *scratch)
{
    int found = 0;
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && event[i] != '\n' && event[i] != '\r')
            i++;
        size_t end = i;
        if (i < len && event[i] == '\r' && i + 1 < len && event[i + 1] == '\n')
            i++;
        i++;
        const char *line = event + start, *line_end = event + end, *v;
        if (end - start >= 5 && memcmp(line, "data:", 5) == 0) {
            v = line + 5;
            if (v < line_end && *v == ' ')
                v++;
        } else if (end - start == 4 && memcmp(line, "data", 4) == 0) {
            v = line_end; /* a field name alone has an empty value */
        } else {
            continue;
        }
        size_t vlen = (size_t)(line_end - v);
        if (found == 0) {
            *out = (struct sl_str){ v, vlen };
        } else {
            if (found == 1) {
                scratch->len = 0;
                sl_buf_append(scratch, out->p, out->len);
            }
            sl_buf_append(scratch, "\n", 1);
            sl_buf_append(scratch, v, vlen);
            *out = (struct sl_str){ scratch->data, scratch->len };
        }
        found++;
    }
    return found > 0;
}
